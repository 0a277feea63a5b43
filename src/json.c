/*
 * json.c - see json.h. Parsing is cJSON's; what this file adds is the
 * contract's framing (one value, trailing data, typed fields) and a
 * writer whose escaping matches the reference byte for byte on valid
 * UTF-8 and stays valid JSON on invalid input.
 */
#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static size_t
skip_ws(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
			   s[i] == '\r'))
		i++;
	return i;
}

/* Length of the JSON number at s[0..n) (RFC 8259 grammar), 0 if the run
 * of number characters there is not exactly one. */
static size_t
number_len(const char *s, size_t n)
{
	size_t i = 0;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return 0;
	if (i < n && s[i] == '.') {
		if (++i >= n || s[i] < '0' || s[i] > '9')
			return 0;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return 0;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	/* What follows must not continue the number (cJSON would have
	 * read "01" or "1." as one number). */
	if (i < n && strchr("0123456789+-.eE", s[i]) != NULL)
		return 0;
	return i;
}

/* JSON allows no raw byte below 0x20 except the four white-space ones
 * between tokens; cJSON is laxer (it skips any byte <= 0x20 as white
 * space and accepts control characters inside strings). */
static bool
json_bytes_ok(const char *s, size_t n)
{
	bool in_str = false, esc = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (in_str) {
			if (c < 0x20)
				return false;
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t len = number_len(s + i, n - i);
			if (len == 0)
				return false;
			i += len - 1;
		} else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' &&
			   c != '\r') {
			return false;
		}
	}
	return true;
}

/* True when s[0..n) starts (after white space) with a complete value. */
static bool
starts_with_value(const char *s, size_t n)
{
	const char *end = NULL;
	cJSON *v;
	bool ok;

	/* s is already past JSON white space: a control byte here is debris. */
	if (n == 0 || (unsigned char)s[0] < 0x20)
		return false;
	v = cJSON_ParseWithLengthOpts(s, n, &end, 0);
	ok = v != NULL && json_bytes_ok(s, (size_t)(end - s));
	cJSON_Delete(v);
	return ok;
}

enum vs_json_rc
vs_json_parse(const char *body, size_t len, cJSON **out)
{
	const char *end = NULL;
	cJSON *v;
	size_t used, rest;

	*out = NULL;
	if (body == NULL || skip_ws(body, 0, len) == len)
		return VS_JSON_INVALID;
	/* Only the first value's bytes are checked strictly; the second
	 * value after it just has to start well. */
	v = cJSON_ParseWithLengthOpts(body, len, &end, 0);
	if (v != NULL && !json_bytes_ok(body, (size_t)(end - body))) {
		cJSON_Delete(v);
		return VS_JSON_INVALID;
	}
	if (v == NULL)
		return VS_JSON_INVALID;
	used = (size_t)(end - body);
	rest = skip_ws(body, used, len);
	if (rest < len) {
		/* Something follows. A well-formed second value is the
		 * "trailing" error; debris is just invalid JSON. */
		bool second = starts_with_value(body + rest, len - rest);
		cJSON_Delete(v);
		return second ? VS_JSON_TRAILING : VS_JSON_INVALID;
	}
	*out = v;
	return VS_JSON_OK;
}

/*
 * Validation without a tree (payload_json of every pushed op, up to
 * max_payload_json bytes): one pass, no allocation, the grammar of RFC
 * 8259 with the reference's (Go's encoding/json.Valid) choices where the
 * RFC leaves room: bytes >= 0x80 in strings are not checked as UTF-8, a
 * \u escape of a lone surrogate is accepted, and arrays and objects nest
 * at most VALID_MAX_DEPTH deep.
 */
#define VALID_MAX_DEPTH 10000

static size_t
valid_string(const char *s, size_t i, size_t n)
{
	/* s[i] is the opening quote; returns the index after the closing
	 * one, or 0 when the string is malformed. */
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"')
			return i + 1;
		if (c < 0x20)
			return 0;
		if (c != '\\')
			continue;
		if (++i >= n)
			return 0;
		if (s[i] == 'u') {
			for (int k = 1; k <= 4; k++)
				if (i + (size_t)k >= n ||
				    !isxdigit((unsigned char)s[i + (size_t)k]))
					return 0;
			i += 4;
		} else if (strchr("\"\\/bfnrt", s[i]) == NULL || s[i] == '\0') {
			return 0;
		}
	}
	return 0;
}

static size_t
valid_literal(const char *s, size_t i, size_t n)
{
	static const char *const lits[] = { "true", "false", "null" };

	for (size_t k = 0; k < 3; k++) {
		size_t len = strlen(lits[k]);

		if (n - i >= len && memcmp(s + i, lits[k], len) == 0)
			return i + len;
	}
	return 0;
}

/* An object member's key and colon at s[i]: the index of its value, or
 * 0 when they are malformed (0 is never the index of a member). */
static size_t
valid_key(const char *s, size_t i, size_t n)
{
	size_t next;

	if (i >= n || s[i] != '"' || (next = valid_string(s, i, n)) == 0)
		return 0;
	i = skip_ws(s, next, n);
	if (i >= n || s[i] != ':')
		return 0;
	return skip_ws(s, i + 1, n);
}

bool
vs_json_valid(const char *s, size_t n)
{
	/* One bit per open container: 1 = object, 0 = array. */
	unsigned char obj_bits[VALID_MAX_DEPTH / 8 + 1];
	size_t depth = 0, i, next;

#define TOP_IS_OBJ() ((obj_bits[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1)
	if (s == NULL)
		return false;
	i = skip_ws(s, 0, n);
	for (;;) {
		/* A value starts at s[i]. */
		if (i >= n)
			return false;
		if (s[i] == '{' || s[i] == '[') {
			unsigned char bit = (unsigned char)(1u << (depth % 8));

			if (depth == VALID_MAX_DEPTH)
				return false;
			if (s[i] == '{')
				obj_bits[depth / 8] |= bit;
			else
				obj_bits[depth / 8] &= (unsigned char)~bit;
			depth++;
			i = skip_ws(s, i + 1, n);
			if (i < n && s[i] == (TOP_IS_OBJ() ? '}' : ']')) {
				depth--;	/* empty: the container is a value */
				i++;
			} else {
				if (TOP_IS_OBJ() && (i = valid_key(s, i, n)) == 0)
					return false;
				continue;	/* its first element */
			}
		} else if (s[i] == '"') {
			if ((next = valid_string(s, i, n)) == 0)
				return false;
			i = next;
		} else if (s[i] == 't' || s[i] == 'f' || s[i] == 'n') {
			if ((next = valid_literal(s, i, n)) == 0)
				return false;
			i = next;
		} else {
			if ((next = number_len(s + i, n - i)) == 0)
				return false;
			i += next;
		}
		/* After a value: the end, or its container ends or goes on. */
		for (;;) {
			i = skip_ws(s, i, n);
			if (depth == 0)
				return i == n;
			if (i >= n)
				return false;
			if (s[i] == (TOP_IS_OBJ() ? '}' : ']')) {
				depth--;
				i++;
				continue;
			}
			if (s[i] != ',')
				return false;
			i = skip_ws(s, i + 1, n);
			if (TOP_IS_OBJ() && (i = valid_key(s, i, n)) == 0)
				return false;
			break;	/* the next element */
		}
	}
#undef TOP_IS_OBJ
}

/* The four hex digits at h name a UTF-16 surrogate (D800-DFFF). */
static bool
hex_is_surrogate(const char *h)
{
	return (h[0] == 'd' || h[0] == 'D') && h[1] != '\0' &&
	       strchr("89abcdefABCDEF", h[1]) != NULL;
}

cJSON *
vs_json_parse_valid(const char *s, size_t n)
{
	cJSON *v = cJSON_ParseWithLength(s, n);
	char *copy;
	bool in_str = false;

	if (v != NULL || memmem(s, n, "\\u", 2) == NULL)
		return v;
	/* cJSON refuses a lone surrogate escape that JSON (and Go) allow;
	 * read every surrogate escape as U+FFFD instead: same length, and
	 * only string contents change. */
	if ((copy = malloc(n)) == NULL)
		return NULL;
	memcpy(copy, s, n);
	for (size_t i = 0; i < n; i++) {
		if (copy[i] == '"') {
			in_str = !in_str;
		} else if (in_str && copy[i] == '\\' && i + 1 < n) {
			if (copy[i + 1] == 'u' && i + 5 < n &&
			    hex_is_surrogate(copy + i + 2))
				memcpy(copy + i + 2, "FFFD", 4);
			i++;	/* the escaped character is not a quote */
		}
	}
	v = cJSON_ParseWithLength(copy, n);
	free(copy);
	return v;
}

bool
vs_json_is_object_or_null(const cJSON *v)
{
	return v != NULL && (cJSON_IsObject(v) || cJSON_IsNull(v));
}

static const cJSON *
field(const cJSON *obj, const char *name)
{
	if (obj == NULL || !cJSON_IsObject(obj))
		return NULL;
	/* Case-insensitive, as the reference matches field names. */
	return cJSON_GetObjectItem(obj, name);
}

bool
vs_json_str(const cJSON *obj, const char *name, const char **out)
{
	const cJSON *f = field(obj, name);

	*out = "";
	if (f == NULL || cJSON_IsNull(f))
		return true;
	if (!cJSON_IsString(f) || f->valuestring == NULL)
		return false;
	*out = f->valuestring;
	return true;
}

bool
vs_json_node_int(const cJSON *f, int64_t *out)
{
	double d;

	*out = 0;
	if (f == NULL || cJSON_IsNull(f))
		return true;
	if (!cJSON_IsNumber(f))
		return false;
	d = f->valuedouble;
	/* 2^63 is exactly representable; anything at or beyond it, or with
	 * a fraction, does not fit an int64. */
	if (!isfinite(d) || floor(d) != d || d >= 9223372036854775808.0 ||
	    d < -9223372036854775808.0)
		return false;
	*out = (int64_t)d;
	return true;
}

bool
vs_json_int(const cJSON *obj, const char *name, int64_t *out)
{
	return vs_json_node_int(field(obj, name), out);
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static size_t
utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t len, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		c = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		c = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) ||
	    (len == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Bytes that leave the plain-copy path: controls, '"', '\\', '<', '>',
 * '&' (escaped as the reference does) and every byte >= 0x80 (checked as
 * UTF-8). A table lookup per byte is what makes 100-op pull pages cheap
 * to write; rows are 32 bytes: 0x00-0x1f, ' '-'?', '@'-'_', '`'-DEL, then
 * the four rows of bytes >= 0x80. */
static const unsigned char special[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Writes the escape for one special byte sequence at s[0..n) into out;
 * returns the bytes of input consumed and sets *olen. */
static size_t
escape_one(const unsigned char *s, size_t n, char *out, size_t *olen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c = s[0];
	uint32_t cp;
	size_t len;

	if (c >= 0x80) {
		len = utf8_seq(s, n, &cp);
		if (len == 0) {
			memcpy(out, "\\ufffd", 6);
			*olen = 6;
			return 1;
		}
		if (cp == 0x2028 || cp == 0x2029) {
			memcpy(out, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
			*olen = 6;
		} else {
			memcpy(out, s, len);
			*olen = len;
		}
		return len;
	}
	out[0] = '\\';
	*olen = 2;
	switch (c) {
	case '"': out[1] = '"'; return 1;
	case '\\': out[1] = '\\'; return 1;
	case '\n': out[1] = 'n'; return 1;
	case '\r': out[1] = 'r'; return 1;
	case '\t': out[1] = 't'; return 1;
	default:
		out[1] = 'u'; out[2] = '0'; out[3] = '0';
		out[4] = hex[c >> 4]; out[5] = hex[c & 15];
		*olen = 6;
		return 1;
	}
}

/* Index of the first special byte in s[i..end), or end. With SSE2 (every
 * x86-64) sixteen bytes are tested at once: pulled payloads are mostly
 * long plain runs, and this scan is most of the cost of writing a page. */
static size_t
plain_run_end(const unsigned char *s, size_t i, size_t end)
{
#ifdef __SSE2__
	const __m128i space = _mm_set1_epi8(' '), quote = _mm_set1_epi8('"'),
		amp = _mm_set1_epi8('&'), lt = _mm_set1_epi8('<'),
		gt = _mm_set1_epi8('>'), bsl = _mm_set1_epi8('\\');

	while (end - i >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		/* Signed compare: bytes >= 0x80 are negative, so "v < ' '"
		 * catches the controls and every non-ASCII byte at once. */
		__m128i m = _mm_or_si128(
			_mm_or_si128(_mm_cmpgt_epi8(space, v),
				_mm_cmpeq_epi8(v, quote)),
			_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, amp),
				_mm_cmpeq_epi8(v, lt)), _mm_or_si128(
				_mm_cmpeq_epi8(v, gt), _mm_cmpeq_epi8(v, bsl))));
		int bits = _mm_movemask_epi8(m);

		if (bits != 0)
			return i + (size_t)__builtin_ctz((unsigned)bits);
		i += 16;
	}
#endif
	while (i < end && !special[s[i]])
		i++;
	return i;
}

/* Input is processed in slices so the worst-case reservation (6 output
 * bytes per input byte) stays small even for a 2 MiB payload. */
#define PUT_SLICE 4096

bool
vs_json_put_strn(struct vs_buf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	if (!vs_buf_append(b, "\"", 1))
		return false;
	while (i < n) {
		size_t slice = n - i < PUT_SLICE ? n - i : PUT_SLICE;
		size_t end = i + slice;
		char *out;

		if (!vs_buf_reserve(b, slice * 6 + 8))
			return false;
		out = b->data + b->len;
		while (i < end) {
			size_t start = i, olen;

			i = plain_run_end(s, i, end);
			memcpy(out, s + start, i - start);
			out += i - start;
			if (i == end)
				break;
			if (s[i] == '"' || s[i] == '\\') {
				/* The common case in payloads that are JSON
				 * text themselves. */
				out[0] = '\\';
				out[1] = (char)s[i++];
				out += 2;
				continue;
			}
			/* A UTF-8 sequence may straddle the slice end: let it
			 * see the whole input. */
			i += escape_one(s + i, n - i, out, &olen);
			out += olen;
		}
		b->len = (size_t)(out - b->data);
	}
	return vs_buf_append(b, "\"", 1);
}

bool
vs_json_put_str(struct vs_buf *b, const char *s)
{
	return vs_json_put_strn(b, s == NULL ? "" : s, s == NULL ? 0 : strlen(s));
}
