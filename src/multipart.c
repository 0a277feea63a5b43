/*
 * multipart.c - see multipart.h.
 *
 * The parser is a state machine over bytes, but content is never looked
 * at byte by byte: in a part's body it searches each chunk for the whole
 * delimiter ("\r\n--boundary") with memmem and hands everything before it
 * to the caller as one span. A delimiter split between two chunks is
 * remembered only as the number of its bytes already matched: those bytes
 * are, by definition, a prefix of the delimiter, so if the match fails
 * they are re-emitted from the delimiter string itself and nothing of the
 * input has to be kept. This works because the delimiter's first byte (CR,
 * or LF in LF mode) occurs nowhere else in it (a boundary has no control
 * characters), so a failed match can only restart at the failing byte.
 *
 * Leniency follows Go's mime/multipart (the reference server's parser):
 * preamble lines are skipped, white space may follow a boundary, a
 * malformed Content-Disposition reads as "no name" rather than an error.
 */
#include "multipart.h"

#include <string.h>
#include <strings.h>

enum state {
	S_PRE_LINE,       /* start of a preamble line; matching "--B" */
	S_PRE_SKIP,       /* the rest of a preamble line */
	S_PRE_AFTER,      /* "--B" at a line start */
	S_PRE_LWSP,       /* "--B" and white space */
	S_PRE_CR,         /* "--B" [LWSP] CR */
	S_PRE_DASH,       /* "--B-" */
	S_PRE_FINAL,      /* "--B--" [LWSP]: no part at all */
	S_PRE_FINAL_CR,
	S_HEADERS,        /* a part's header block */
	S_BODY,           /* part content */
	S_DELIM_AFTER,    /* a whole delimiter matched in content */
	S_DELIM_LWSP,
	S_DELIM_CR,
	S_FINAL_DASH,     /* delimiter and "-" */
	S_FINAL,          /* close delimiter [LWSP] */
	S_FINAL_CR,
	S_DONE,           /* epilogue: ignored */
};

/* ------------------------------------------------------------------ */
/* Media-type values: Content-Type and Content-Disposition            */
/* ------------------------------------------------------------------ */

#define MAX_WANTED 4

/* A parsed header value: its (lowercase) type and the parameters the
 * caller listed in want, decoded into store. */
struct media {
	char type[64];
	const char *const *want;     /* lowercase names, NULL-terminated */
	const char *val[MAX_WANTED]; /* NULL when absent */
	char *store;
	size_t store_len, store_cap;
};

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	       c == '\f';
}

static bool
is_lwsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool
is_tspecial(char c)
{
	return c != '\0' && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static bool
is_token_char(char c)
{
	unsigned char u = (unsigned char)c;

	return u > 0x20 && u < 0x7f && !is_tspecial(c);
}

static const char *
skip_space(const char *s, const char *end)
{
	while (s < end && is_space(*s))
		s++;
	return s;
}

static const char *
token_end(const char *s, const char *end)
{
	while (s < end && is_token_char(*s))
		s++;
	return s;
}

/* "token" or "token/token", lowercased into m->type. */
static bool
parse_type(const char *s, const char *end, struct media *m)
{
	const char *t = token_end(s, end);
	size_t n;

	if (t == s)
		return false;
	if (t < end) {
		const char *sub;
		if (*t != '/')
			return false;
		sub = t + 1;
		t = token_end(sub, end);
		if (t == sub || t != end)
			return false;
	}
	n = (size_t)(end - s);
	if (n >= sizeof(m->type))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		m->type[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	m->type[n] = '\0';
	return true;
}

/* Appends one byte to the value store (always leaves room for NUL). */
static bool
store_byte(struct media *m, char c)
{
	if (m->store_len + 1 >= m->store_cap)
		return false;
	m->store[m->store_len++] = c;
	return true;
}

/*
 * A quoted-string starting at s (on the opening quote), decoded into the
 * store. A backslash escapes only a tspecial (anything else keeps the
 * backslash: browsers send unescaped Windows paths); CR or LF inside, or
 * a missing closing quote, is an error. Returns the byte after the
 * closing quote, NULL on error.
 */
static const char *
quoted_value(const char *s, const char *end, struct media *m)
{
	for (s++; s < end; s++) {
		char c = *s;
		if (c == '"')
			return s + 1;
		if (c == '\\' && s + 1 < end && is_tspecial(s[1]))
			c = *++s;
		else if (c == '\r' || c == '\n' || c == '\0')
			return NULL;
		if (!store_byte(m, c))
			return NULL;
	}
	return NULL;
}

/* Index of key in m->want, -1 when the caller does not need it. */
static int
wanted(const struct media *m, const char *key, size_t klen)
{
	for (int i = 0; m->want[i] != NULL && i < MAX_WANTED; i++)
		if (strlen(m->want[i]) == klen &&
		    strncasecmp(m->want[i], key, klen) == 0)
			return i;
	return -1;
}

/* One "; key = value" at s. Returns the byte after it, NULL on error;
 * *last set when only a trailing ";" was left. */
static const char *
parse_param(const char *s, const char *end, struct media *m, bool *last)
{
	const char *key, *kend, *vstart;
	size_t mark = m->store_len;
	int w;

	*last = false;
	s = skip_space(s, end);
	if (s == end || *s != ';')
		return NULL;
	s = skip_space(s + 1, end);
	key = s;
	kend = token_end(s, end);
	if (kend == key) {
		*last = s == end;	/* "type;" is accepted */
		return *last ? s : NULL;
	}
	s = skip_space(kend, end);
	if (s == end || *s != '=')
		return NULL;
	s = skip_space(s + 1, end);
	vstart = s;
	if (s < end && *s == '"') {
		s = quoted_value(s, end, m);
		if (s == NULL)
			return NULL;
	} else {
		s = token_end(s, end);
		if (s == vstart)
			return NULL;
		for (const char *c = vstart; c < s; c++)
			if (!store_byte(m, *c))
				return NULL;
	}
	if (m->store_len >= m->store_cap)
		return NULL;
	m->store[m->store_len++] = '\0';
	w = wanted(m, key, (size_t)(kend - key));
	if (w < 0) {
		m->store_len = mark;
		return s;
	}
	if (m->val[w] != NULL && strcmp(m->val[w], m->store + mark) != 0)
		return NULL;	/* differing duplicates are ambiguous */
	m->val[w] = m->store + mark;
	return s;
}

/* Parses `type *(";" key "=" value)`; false on any syntax error. */
static bool
parse_media(const char *s, size_t n, struct media *m)
{
	const char *end = s + n, *semi = memchr(s, ';', n);
	const char *bend = semi != NULL ? semi : end, *bstart = skip_space(s, bend);

	while (bend > bstart && is_space(bend[-1]))
		bend--;
	if (!parse_type(bstart, bend, m))
		return false;
	s = semi != NULL ? semi : end;
	while (skip_space(s, end) < end) {
		bool last;
		s = parse_param(s, end, m, &last);
		if (s == NULL)
			return false;
		if (last)
			break;
	}
	return true;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * RFC 2231 "charset'language'percent-encoded" (only UTF-8 and US-ASCII,
 * as Go's parser), decoded in place. False when it cannot be decoded.
 */
static bool
decode_2231(char *v)
{
	char *q1 = strchr(v, '\''), *q2, *w;

	if (q1 == NULL || q1 == v || (q2 = strchr(q1 + 1, '\'')) == NULL)
		return false;
	if (!((q1 - v == 5 && strncasecmp(v, "utf-8", 5) == 0) ||
	      (q1 - v == 8 && strncasecmp(v, "us-ascii", 8) == 0)))
		return false;
	w = v;
	for (const char *r = q2 + 1; *r != '\0'; r++) {
		if (*r == '%') {
			int hi = hexval(r[1]), lo = hi < 0 ? -1 : hexval(r[2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return false;
			*w++ = (char)(hi * 16 + lo);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return true;
}

/* ------------------------------------------------------------------ */
/* Set-up                                                             */
/* ------------------------------------------------------------------ */

static bool
boundary_ok(const char *b)
{
	size_t n = strlen(b);

	if (n == 0 || n > VS_MP_BOUNDARY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)b[i] < 0x20 || b[i] == 0x7f)
			return false;	/* keeps CR and LF out (see the top) */
	return true;
}

bool
vs_mp_init(struct vs_mp *p, const char *content_type,
	   const struct vs_mp_callbacks *cb, void *ud)
{
	static const char *const want[] = { "boundary", NULL };
	struct media m;

	memset(p, 0, sizeof(*p));
	memset(&m, 0, sizeof(m));
	m.want = want;
	m.store = p->values;
	m.store_cap = sizeof(p->values);
	if (content_type == NULL ||
	    !parse_media(content_type, strlen(content_type), &m) ||
	    strcmp(m.type, "multipart/form-data") != 0 || m.val[0] == NULL ||
	    !boundary_ok(m.val[0]))
		return false;
	memcpy(p->delim, "\r\n--", 4);
	memcpy(p->delim + 4, m.val[0], strlen(m.val[0]) + 1);
	p->delim_len = 4 + strlen(m.val[0]);
	p->cb = cb;
	p->ud = ud;
	p->state = S_PRE_LINE;
	p->rc = VS_MP_OK;
	return true;
}

/* The delimiter in the current line-ending mode. */
static const char *
delim(const struct vs_mp *p)
{
	return p->lf_mode ? p->delim + 1 : p->delim;
}

static size_t
delim_len(const struct vs_mp *p)
{
	return p->lf_mode ? p->delim_len - 1 : p->delim_len;
}

static void
fail(struct vs_mp *p, enum vs_mp_rc rc)
{
	if (p->rc == VS_MP_OK)
		p->rc = rc;
}

static void
emit(struct vs_mp *p, const char *data, size_t n)
{
	if (n > 0 && p->rc == VS_MP_OK && p->cb->part_data(p->ud, data, n) != 0)
		fail(p, VS_MP_ABORTED);
}

static void
begin_headers(struct vs_mp *p)
{
	p->hdr_len = 0;
	p->line_start = 0;
	p->state = S_HEADERS;
}

static void
end_part(struct vs_mp *p, bool last)
{
	if (p->cb->part_end(p->ud, last) != 0)
		fail(p, VS_MP_ABORTED);
	if (last)
		p->state = S_FINAL;
	else
		begin_headers(p);
}

/* ------------------------------------------------------------------ */
/* Part headers                                                       */
/* ------------------------------------------------------------------ */

/*
 * Unfolds the header block in place: one logical header per line,
 * terminated by '\n', CRs dropped, continuation lines joined with one
 * space. The result never outgrows the input. False when a
 * continuation line has nothing to continue.
 */
static bool
unfold(struct vs_mp *p)
{
	size_t r = 0, w = 0, n = p->hdr_len;
	char *h = p->hdr;

	while (r < n) {
		size_t e = r;
		while (e < n && h[e] != '\n')
			e++;
		size_t le = e;
		if (le > r && h[le - 1] == '\r')
			le--;
		if (is_lwsp(h[r])) {
			if (w == 0)
				return false;
			while (r < le && is_lwsp(h[r]))
				r++;
			h[w - 1] = ' ';	/* replaces the previous '\n' */
		}
		memmove(h + w, h + r, le - r);
		w += le - r;
		h[w++] = '\n';
		r = e + 1;
	}
	p->hdr_len = w;
	return true;
}

/* Content-Disposition: name and filename when it is form-data. A value
 * that does not parse reads as absent, as in the reference. */
static void
disposition(struct vs_mp *p, const char *v, size_t n, struct vs_mp_part *part)
{
	static const char *const want[] = { "name", "filename", "filename*",
					    NULL };
	struct media m;

	memset(&m, 0, sizeof(m));
	m.want = want;
	m.store = p->values;
	m.store_cap = sizeof(p->values);
	if (!parse_media(v, n, &m) || strcmp(m.type, "form-data") != 0)
		return;
	if (m.val[0] != NULL)
		part->name = m.val[0];
	if (m.val[2] != NULL && decode_2231((char *)m.val[2]))
		part->filename = m.val[2];
	else if (m.val[1] != NULL)
		part->filename = m.val[1];
}

/* Parses the complete header block and starts the part. */
static void
headers_done(struct vs_mp *p)
{
	struct vs_mp_part part = { "", "" };
	bool seen_cd = false;
	size_t r = 0;

	if (!unfold(p)) {
		fail(p, VS_MP_MALFORMED);
		return;
	}
	while (r < p->hdr_len) {
		const char *line = p->hdr + r;
		const char *nl = memchr(line, '\n', p->hdr_len - r);
		const char *colon = memchr(line, ':', (size_t)(nl - line));
		const char *v, *ve;

		r = (size_t)(nl - p->hdr) + 1;
		if (colon == NULL || colon == line ||
		    token_end(line, colon) != colon ||
		    memchr(line, '\0', (size_t)(nl - line)) != NULL) {
			fail(p, VS_MP_MALFORMED);
			return;
		}
		if (seen_cd || colon - line != 19 ||
		    strncasecmp(line, "content-disposition", 19) != 0)
			continue;
		seen_cd = true;	/* the first one counts */
		v = colon + 1;
		ve = nl;
		while (v < ve && is_lwsp(*v))
			v++;
		while (ve > v && is_lwsp(ve[-1]))
			ve--;
		disposition(p, v, (size_t)(ve - v), &part);
	}
	p->parts++;
	p->state = S_BODY;
	p->matched = 0;
	if (p->cb->part_begin(p->ud, &part) != 0)
		fail(p, VS_MP_ABORTED);
}

/* Collects header lines until the empty one. Returns bytes consumed. */
static size_t
header_bytes(struct vs_mp *p, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && p->rc == VS_MP_OK) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t take = nl != NULL ? (size_t)(nl - (s + i)) + 1 : n - i;
		size_t len;

		if (p->hdr_len + take > sizeof(p->hdr)) {
			fail(p, VS_MP_MALFORMED);	/* header block too large */
			return n;
		}
		memcpy(p->hdr + p->hdr_len, s + i, take);
		p->hdr_len += take;
		i += take;
		if (nl == NULL)
			break;
		len = p->hdr_len - 1 - p->line_start;
		if (len > 0 && p->hdr[p->hdr_len - 2] == '\r')
			len--;
		if (len == 0) {
			p->hdr_len = p->line_start;
			headers_done(p);
			break;
		}
		p->line_start = p->hdr_len;
	}
	return i;
}

/* ------------------------------------------------------------------ */
/* Part content                                                       */
/* ------------------------------------------------------------------ */

/*
 * Scans content for the delimiter. Returns the bytes consumed: up to and
 * including a delimiter (state S_DELIM_AFTER), or all of them (a partial
 * delimiter at the end is remembered in p->matched, not emitted yet).
 */
static size_t
body_bytes(struct vs_mp *p, const char *s, size_t n)
{
	const char *d = delim(p);
	size_t dl = delim_len(p), i = 0, start, k;
	const char *hit;

	if (p->matched > 0) {
		/* A delimiter began at the end of the previous chunk. */
		size_t m = p->matched;
		while (i < n && m < dl && s[i] == d[m]) {
			i++;
			m++;
		}
		if (m == dl) {
			p->matched = 0;
			p->state = S_DELIM_AFTER;
			return i;
		}
		if (i == n) {
			p->matched = m;
			return n;
		}
		/* It was content after all: those bytes equal d[0..m). */
		p->matched = 0;
		emit(p, d, m);
	}
	start = i;
	hit = memmem(s + i, n - i, d, dl);
	if (hit != NULL) {
		emit(p, s + start, (size_t)(hit - (s + start)));
		p->state = S_DELIM_AFTER;
		return (size_t)(hit - s) + dl;
	}
	/* The longest tail of the chunk that is a delimiter prefix. */
	k = n - i >= dl ? n - dl + 1 : i;
	for (; k < n; k++)
		if (s[k] == d[0] && memcmp(s + k, d, n - k) == 0)
			break;
	emit(p, s + start, k - start);
	p->matched = n - k;
	return n;
}

/* The line that follows a delimiter found in content. */
static bool
delim_line_byte(struct vs_mp *p, char c)
{
	switch (p->state) {
	case S_DELIM_AFTER:
		if (c == '-') {
			p->state = S_FINAL_DASH;
		} else if (is_lwsp(c)) {
			p->state = S_DELIM_LWSP;
		} else if (c == '\r') {
			p->state = S_DELIM_CR;
		} else if (c == '\n') {
			if (p->lf_mode)
				end_part(p, false);
			else
				fail(p, VS_MP_MALFORMED);
		} else {
			/* "--boundaryX": not a delimiter, just content. */
			emit(p, delim(p), delim_len(p));
			p->state = S_BODY;
			return false;
		}
		return true;
	case S_DELIM_LWSP:
		if (c == '\r')
			p->state = S_DELIM_CR;
		else if (c == '\n' && p->lf_mode)
			end_part(p, false);
		else if (!is_lwsp(c))
			fail(p, VS_MP_MALFORMED);
		return true;
	case S_DELIM_CR:
		if (c == '\n')
			end_part(p, false);
		else
			fail(p, VS_MP_MALFORMED);
		return true;
	case S_FINAL_DASH:
		if (c == '-')
			end_part(p, true);
		else
			fail(p, VS_MP_MALFORMED);
		return true;
	case S_FINAL:
		if (c == '\r')
			p->state = S_FINAL_CR;
		else if (c == '\n')
			p->state = S_DONE;
		else if (!is_lwsp(c))
			fail(p, VS_MP_MALFORMED);
		return true;
	case S_FINAL_CR:
		if (c == '\n')
			p->state = S_DONE;
		else
			fail(p, VS_MP_MALFORMED);
		return true;
	default:
		return true;
	}
}

/* ------------------------------------------------------------------ */
/* Preamble                                                           */
/* ------------------------------------------------------------------ */

static void
first_delimiter(struct vs_mp *p, bool lf)
{
	p->lf_mode = lf;
	begin_headers(p);
}

/* Not a delimiter line after all: skip to its end. */
static void
pre_skip(struct vs_mp *p, char c)
{
	p->state = c == '\n' ? S_PRE_LINE : S_PRE_SKIP;
	p->matched = 0;
}

static void
preamble_byte(struct vs_mp *p, char c)
{
	const char *dash = p->delim + 2;	/* "--boundary" */
	size_t dash_len = p->delim_len - 2;

	switch (p->state) {
	case S_PRE_LINE:
		if (c == dash[p->matched]) {
			if (++p->matched == dash_len) {
				p->matched = 0;
				p->state = S_PRE_AFTER;
			}
		} else {
			pre_skip(p, c);
		}
		break;
	case S_PRE_AFTER:
	case S_PRE_LWSP:
		if (c == '-' && p->state == S_PRE_AFTER)
			p->state = S_PRE_DASH;
		else if (is_lwsp(c))
			p->state = S_PRE_LWSP;
		else if (c == '\r')
			p->state = S_PRE_CR;
		else if (c == '\n')
			first_delimiter(p, true);
		else
			pre_skip(p, c);
		break;
	case S_PRE_CR:
		if (c == '\n')
			first_delimiter(p, false);
		else
			pre_skip(p, c);
		break;
	case S_PRE_DASH:
		if (c == '-')
			p->state = S_PRE_FINAL;
		else
			pre_skip(p, c);
		break;
	case S_PRE_FINAL:
		if (c == '\r')
			p->state = S_PRE_FINAL_CR;
		else if (c == '\n')
			fail(p, VS_MP_NO_PARTS);
		else if (!is_lwsp(c))
			pre_skip(p, c);
		break;
	case S_PRE_FINAL_CR:
		if (c == '\n')
			fail(p, VS_MP_NO_PARTS);
		else
			pre_skip(p, c);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Driver                                                             */
/* ------------------------------------------------------------------ */

enum vs_mp_rc
vs_mp_feed(struct vs_mp *p, const char *data, size_t n)
{
	size_t i = 0;

	while (i < n && p->rc == VS_MP_OK) {
		const char *nl;

		switch (p->state) {
		case S_BODY:
			i += body_bytes(p, data + i, n - i);
			break;
		case S_HEADERS:
			i += header_bytes(p, data + i, n - i);
			break;
		case S_DONE:
			i = n;
			break;
		case S_PRE_SKIP:
			nl = memchr(data + i, '\n', n - i);
			if (nl == NULL) {
				i = n;
			} else {
				i = (size_t)(nl - data) + 1;
				p->state = S_PRE_LINE;
				p->matched = 0;
			}
			break;
		case S_PRE_LINE:
		case S_PRE_AFTER:
		case S_PRE_LWSP:
		case S_PRE_CR:
		case S_PRE_DASH:
		case S_PRE_FINAL:
		case S_PRE_FINAL_CR:
			preamble_byte(p, data[i++]);
			break;
		default:
			if (delim_line_byte(p, data[i]))
				i++;
			break;
		}
	}
	return p->rc;
}

enum vs_mp_rc
vs_mp_finish(struct vs_mp *p)
{
	if (p->rc != VS_MP_OK)
		return p->rc;
	switch (p->state) {
	case S_DONE:
	case S_FINAL:
		return VS_MP_OK;
	case S_PRE_FINAL:
		fail(p, VS_MP_NO_PARTS);
		return p->rc;
	default:
		fail(p, VS_MP_MALFORMED);
		return p->rc;
	}
}
