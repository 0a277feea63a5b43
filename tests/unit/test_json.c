/*
 * test_json.c - unit tests for src/json.c: one-value framing of request
 * bodies (API.md 1.4: invalid_json vs trailing_json), the typed field
 * readers, and the string writer's escaping (API.md 1.2: <, >, & and
 * U+2028/2029 escaped, invalid UTF-8 replaced by U+FFFD), checked both
 * byte for byte and by re-parsing the output with cJSON.
 *
 * Bodies are copied into exactly-sized heap buffers without a trailing
 * NUL, so AddressSanitizer catches any read past the given length.
 */
#include "json.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

/* Parses s[0..len) from an unterminated heap copy. */
static enum vs_json_rc
parse_n(const char *s, size_t len, cJSON **out)
{
	char *copy = malloc(len > 0 ? len : 1);
	enum vs_json_rc rc;

	ck_assert_ptr_nonnull(copy);
	if (len > 0)
		memcpy(copy, s, len);
	rc = vs_json_parse(copy, len, out);
	free(copy);
	return rc;
}

static enum vs_json_rc
parse_s(const char *s, cJSON **out)
{
	return parse_n(s, strlen(s), out);
}

/* Expects rc and, on failure, a NULL output. */
static void
expect_rc(const char *s, enum vs_json_rc want)
{
	cJSON *v = (cJSON *)&v;	/* poison: must be overwritten */
	enum vs_json_rc rc = parse_s(s, &v);

	ck_assert_msg(rc == want, "parse(\"%s\") = %d, want %d", s, rc, want);
	if (rc == VS_JSON_OK)
		ck_assert_ptr_nonnull(v);
	else
		ck_assert_ptr_null(v);
	cJSON_Delete(rc == VS_JSON_OK ? v : NULL);
}

static bool
valid_n(const char *s, size_t n)
{
	char *copy = malloc(n > 0 ? n : 1);
	bool ok;

	ck_assert_ptr_nonnull(copy);
	if (n > 0)
		memcpy(copy, s, n);
	ok = vs_json_valid(copy, n);
	free(copy);
	return ok;
}

static cJSON *
must_parse(const char *s)
{
	cJSON *v = NULL;

	ck_assert_int_eq(parse_s(s, &v), VS_JSON_OK);
	ck_assert_ptr_nonnull(v);
	return v;
}

/* Encodes in[0..n) and checks the exact output and that cJSON reads it
 * back as `decoded` (NUL-free expectations only). */
static void
check_put(const char *in, size_t n, const char *want, const char *decoded)
{
	struct vs_buf b;
	cJSON *v;

	vs_buf_init(&b);
	ck_assert(vs_json_put_strn(&b, in, n));
	ck_assert_msg(strcmp(b.data, want) == 0, "encoded as %s, want %s",
		      b.data, want);
	ck_assert_uint_eq(b.len, strlen(want));
	ck_assert(vs_json_valid(b.data, b.len));
	v = cJSON_Parse(b.data);
	ck_assert_ptr_nonnull(v);
	ck_assert(cJSON_IsString(v));
	ck_assert_str_eq(v->valuestring, decoded);
	cJSON_Delete(v);
	vs_buf_free(&b);
}

static void
check_put_s(const char *in, const char *want, const char *decoded)
{
	check_put(in, strlen(in), want, decoded);
}

/* ------------------------------------------------------------------ */
/* vs_json_parse                                                      */
/* ------------------------------------------------------------------ */

START_TEST(test_parse_object)
{
	cJSON *v = NULL;

	ck_assert_int_eq(parse_s("{}", &v), VS_JSON_OK);
	ck_assert(cJSON_IsObject(v));
	ck_assert_ptr_null(v->child);
	cJSON_Delete(v);

	v = must_parse(" \t\r\n{\"a\":1,\"b\":\"x\"}\r\n");
	ck_assert(cJSON_IsObject(v));
	ck_assert_int_eq(cJSON_GetObjectItem(v, "a")->valueint, 1);
	cJSON_Delete(v);
}
END_TEST

START_TEST(test_parse_null)
{
	cJSON *v = NULL;

	ck_assert_int_eq(parse_s("null", &v), VS_JSON_OK);
	ck_assert_ptr_nonnull(v);
	ck_assert(cJSON_IsNull(v));
	ck_assert(vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	expect_rc("  null \n", VS_JSON_OK);
}
END_TEST

START_TEST(test_parse_empty)
{
	cJSON *v = (cJSON *)&v;

	expect_rc("", VS_JSON_INVALID);
	expect_rc(" ", VS_JSON_INVALID);
	expect_rc(" \t\r\n  ", VS_JSON_INVALID);
	ck_assert_int_eq(vs_json_parse(NULL, 0, &v), VS_JSON_INVALID);
	ck_assert_ptr_null(v);
}
END_TEST

START_TEST(test_parse_trailing)
{
	expect_rc("{\"a\":1} {\"b\":2}", VS_JSON_TRAILING);
	expect_rc("{\"a\":1}{\"b\":2}", VS_JSON_TRAILING);
	expect_rc("{\"a\":1}\n[1]\n", VS_JSON_TRAILING);
	expect_rc("{} 1", VS_JSON_TRAILING);
	expect_rc("{} \"s\"", VS_JSON_TRAILING);
	expect_rc("{} null", VS_JSON_TRAILING);
	expect_rc("1 2", VS_JSON_TRAILING);
}
END_TEST

START_TEST(test_parse_trailing_ws_ok)
{
	expect_rc("{\"a\":1}  \n", VS_JSON_OK);
	expect_rc("{\"a\":1}\r\n\t ", VS_JSON_OK);
}
END_TEST

START_TEST(test_parse_trailing_debris)
{
	/* Debris after the value (not itself a JSON value) is invalid_json. */
	expect_rc("{\"a\":1} x", VS_JSON_INVALID);
	expect_rc("{\"a\":1} {", VS_JSON_INVALID);
	expect_rc("{\"a\":1} }", VS_JSON_INVALID);
	expect_rc("{\"a\":1},", VS_JSON_INVALID);
	expect_rc("{\"a\":1} {\"b\":", VS_JSON_INVALID);
	expect_rc("{} nul", VS_JSON_INVALID);
}
END_TEST

START_TEST(test_parse_trailing_nul)
{
	cJSON *v = (cJSON *)&v;

	/* A NUL byte after the value is not white space. */
	ck_assert_int_eq(parse_n("{\"a\":1}\0", 8, &v), VS_JSON_INVALID);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(parse_n("{}\0", 3, &v), VS_JSON_INVALID);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(parse_n("{} \0 ", 4, &v), VS_JSON_INVALID);
	ck_assert_ptr_null(v);
}
END_TEST

/* Regression tests for defects found in review: more than two values,
 * control bytes and malformed numbers. */
START_TEST(test_parse_known_bugs)
{
	cJSON *v = (cJSON *)&v;

	/* API.md 1.4: a second value follows the first -> trailing_json,
	 * whatever comes after that second value. */
	expect_rc("{\"a\":1} {\"b\":2} {\"c\":3}", VS_JSON_TRAILING);
	expect_rc("{} {} x", VS_JSON_TRAILING);
	/* Only space, tab, CR and LF are JSON white space; raw control
	 * characters are invalid everywhere, NUL included. */
	ck_assert_int_eq(parse_n("{}\0{}", 5, &v), VS_JSON_INVALID);
	expect_rc("\x0c{}", VS_JSON_INVALID);
	expect_rc("{\"a\":\x01 1}", VS_JSON_INVALID);
	expect_rc("{\"a\":\"x\x01y\"}", VS_JSON_INVALID);
	/* Leading zeros and a bare trailing dot are not JSON numbers. */
	expect_rc("01", VS_JSON_INVALID);
	expect_rc("1.", VS_JSON_INVALID);
	expect_rc("-01", VS_JSON_INVALID);
	expect_rc("{\"a\":1.e5}", VS_JSON_INVALID);
	expect_rc("[1, 2.]", VS_JSON_INVALID);
	/* ...while valid numbers still parse. */
	expect_rc("[0, -0, 10, -1.5e+3, 2E-2, 0.25]", VS_JSON_OK);
}
END_TEST

START_TEST(test_parse_array_and_scalars)
{
	cJSON *v = must_parse("[1,2]");

	/* The shape is the caller's business. */
	ck_assert(cJSON_IsArray(v));
	ck_assert_int_eq(cJSON_GetArraySize(v), 2);
	ck_assert(!vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	expect_rc("42", VS_JSON_OK);
	expect_rc("\"str\"", VS_JSON_OK);
	expect_rc("true", VS_JSON_OK);
}
END_TEST

START_TEST(test_parse_malformed)
{
	expect_rc("{\"a\":", VS_JSON_INVALID);
	expect_rc("{\"a\"", VS_JSON_INVALID);
	expect_rc("{", VS_JSON_INVALID);
	expect_rc("[1,2", VS_JSON_INVALID);
	expect_rc("{\"a\":1,}", VS_JSON_INVALID);
	expect_rc("{a:1}", VS_JSON_INVALID);
	expect_rc("{'a':1}", VS_JSON_INVALID);
	expect_rc("\"unterminated", VS_JSON_INVALID);
	expect_rc("x", VS_JSON_INVALID);
	expect_rc("nul", VS_JSON_INVALID);
	expect_rc("}", VS_JSON_INVALID);
}
END_TEST

START_TEST(test_parse_respects_len)
{
	cJSON *v = NULL;

	/* Only the first len bytes count. */
	ck_assert_int_eq(parse_n("{}garbage", 2, &v), VS_JSON_OK);
	ck_assert(cJSON_IsObject(v));
	cJSON_Delete(v);
	v = NULL;
	ck_assert_int_eq(parse_n("{\"a\":1}", 6, &v), VS_JSON_INVALID);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(parse_n("{} {}", 3, &v), VS_JSON_OK);
	cJSON_Delete(v);
}
END_TEST

START_TEST(test_parse_large_body)
{
	struct vs_buf b;
	cJSON *v = NULL;

	vs_buf_init(&b);
	vs_buf_puts(&b, "{\"items\":[");
	for (int i = 0; i < 10000; i++)
		vs_buf_printf(&b, "%s{\"i\":%d,\"s\":\"v%d\"}", i ? "," : "", i, i);
	vs_buf_puts(&b, "]}\n");
	ck_assert(!b.oom);
	ck_assert_int_eq(parse_n(b.data, b.len, &v), VS_JSON_OK);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(v, "items")),
			 10000);
	cJSON_Delete(v);
	vs_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Shape and field readers                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_is_object_or_null)
{
	cJSON *v;

	ck_assert(!vs_json_is_object_or_null(NULL));
	v = must_parse("{}");
	ck_assert(vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	v = must_parse("null");
	ck_assert(vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	v = must_parse("[]");
	ck_assert(!vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	v = must_parse("1");
	ck_assert(!vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	v = must_parse("\"{}\"");
	ck_assert(!vs_json_is_object_or_null(v));
	cJSON_Delete(v);
	v = must_parse("false");
	ck_assert(!vs_json_is_object_or_null(v));
	cJSON_Delete(v);
}
END_TEST

START_TEST(test_str_fields)
{
	cJSON *v = must_parse("{\"s\":\"value\",\"n\":null,\"num\":1,"
			      "\"Name\":\"Bob\",\"arr\":[],\"obj\":{},"
			      "\"b\":true,\"empty\":\"\",\"u\":\"\\u00e9\"}");
	const char *out = NULL;

	ck_assert(vs_json_str(v, "s", &out));
	ck_assert_str_eq(out, "value");
	out = NULL;
	ck_assert(vs_json_str(v, "absent", &out));
	ck_assert_str_eq(out, "");
	out = NULL;
	ck_assert(vs_json_str(v, "n", &out));
	ck_assert_str_eq(out, "");
	ck_assert(vs_json_str(v, "empty", &out));
	ck_assert_str_eq(out, "");
	ck_assert(vs_json_str(v, "u", &out));
	ck_assert_str_eq(out, "\xc3\xa9");
	/* Case-insensitive field names, as the reference matches them. */
	ck_assert(vs_json_str(v, "name", &out));
	ck_assert_str_eq(out, "Bob");
	ck_assert(vs_json_str(v, "NAME", &out));
	ck_assert_str_eq(out, "Bob");
	ck_assert(vs_json_str(v, "S", &out));
	ck_assert_str_eq(out, "value");
	/* Wrong JSON types. */
	ck_assert(!vs_json_str(v, "num", &out));
	ck_assert(!vs_json_str(v, "arr", &out));
	ck_assert(!vs_json_str(v, "obj", &out));
	ck_assert(!vs_json_str(v, "b", &out));
	cJSON_Delete(v);
}
END_TEST

START_TEST(test_str_on_null_body)
{
	/* A body that is just null reads as {}. */
	cJSON *v = must_parse("null");
	const char *out = NULL;
	int64_t i = 99;

	ck_assert(vs_json_str(v, "anything", &out));
	ck_assert_str_eq(out, "");
	ck_assert(vs_json_int(v, "anything", &i));
	ck_assert(i == 0);
	cJSON_Delete(v);
	out = NULL;
	ck_assert(vs_json_str(NULL, "x", &out));
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_int_fields)
{
	cJSON *v = must_parse("{\"five\":5,\"neg\":-3,\"zero\":0,\"n\":null,"
			      "\"frac\":1.5,\"str\":\"5\",\"huge\":1e300,"
			      "\"p53\":9007199254740992,\"bool\":true,"
			      "\"arr\":[1],\"Big\":-9007199254740992,"
			      "\"negfrac\":-0.5,\"p63\":9223372036854775808}");
	int64_t out;

	out = 77;
	ck_assert(vs_json_int(v, "absent", &out));
	ck_assert(out == 0);
	out = 77;
	ck_assert(vs_json_int(v, "n", &out));
	ck_assert(out == 0);
	ck_assert(vs_json_int(v, "five", &out));
	ck_assert(out == 5);
	ck_assert(vs_json_int(v, "neg", &out));
	ck_assert(out == -3);
	ck_assert(vs_json_int(v, "zero", &out));
	ck_assert(out == 0);
	ck_assert(vs_json_int(v, "p53", &out));
	ck_assert(out == INT64_C(9007199254740992));
	ck_assert(vs_json_int(v, "big", &out));
	ck_assert(out == INT64_C(-9007199254740992));
	ck_assert(vs_json_int(v, "FIVE", &out));
	ck_assert(out == 5);

	ck_assert(!vs_json_int(v, "frac", &out));
	ck_assert(!vs_json_int(v, "negfrac", &out));
	ck_assert(!vs_json_int(v, "str", &out));
	ck_assert(!vs_json_int(v, "huge", &out));
	ck_assert(!vs_json_int(v, "p63", &out));
	ck_assert(!vs_json_int(v, "bool", &out));
	ck_assert(!vs_json_int(v, "arr", &out));
	cJSON_Delete(v);
}
END_TEST

START_TEST(test_node_int)
{
	cJSON *v = must_parse("[7,-1,2.25,\"7\",null]");
	int64_t out = 1;

	ck_assert(vs_json_node_int(cJSON_GetArrayItem(v, 0), &out));
	ck_assert(out == 7);
	ck_assert(vs_json_node_int(cJSON_GetArrayItem(v, 1), &out));
	ck_assert(out == -1);
	ck_assert(!vs_json_node_int(cJSON_GetArrayItem(v, 2), &out));
	ck_assert(!vs_json_node_int(cJSON_GetArrayItem(v, 3), &out));
	out = 5;
	ck_assert(vs_json_node_int(cJSON_GetArrayItem(v, 4), &out));
	ck_assert(out == 0);
	out = 5;
	ck_assert(vs_json_node_int(NULL, &out));
	ck_assert(out == 0);
	cJSON_Delete(v);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Writer                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_put_plain)
{
	check_put_s("plain text 123", "\"plain text 123\"", "plain text 123");
	check_put_s("", "\"\"", "");
	/* DEL and other printable ASCII pass through. */
	check_put_s("~\x7f/'", "\"~\x7f/'\"", "~\x7f/'");
}
END_TEST

START_TEST(test_put_escapes)
{
	check_put_s("a\"b", "\"a\\\"b\"", "a\"b");
	check_put_s("a\\b", "\"a\\\\b\"", "a\\b");
	check_put_s("l1\nl2", "\"l1\\nl2\"", "l1\nl2");
	check_put_s("\t", "\"\\t\"", "\t");
	check_put_s("\r", "\"\\r\"", "\r");
	check_put_s("\"\\\n\t\r", "\"\\\"\\\\\\n\\t\\r\"", "\"\\\n\t\r");
}
END_TEST

START_TEST(test_put_control)
{
	check_put_s("\x01", "\"\\u0001\"", "\x01");
	check_put_s("a\x1f" "b", "\"a\\u001fb\"", "a\x1f" "b");
	check_put_s("\x08\x0c", "\"\\u0008\\u000c\"", "\x08\x0c");
	check_put_s("\x1b[0m", "\"\\u001b[0m\"", "\x1b[0m");
}
END_TEST

START_TEST(test_put_html)
{
	check_put_s("<>&", "\"\\u003c\\u003e\\u0026\"", "<>&");
	check_put_s("<script>alert(1)</script>",
		    "\"\\u003cscript\\u003ealert(1)\\u003c/script\\u003e\"",
		    "<script>alert(1)</script>");
}
END_TEST

START_TEST(test_put_line_separators)
{
	check_put_s("\xe2\x80\xa8", "\"\\u2028\"", "\xe2\x80\xa8");
	check_put_s("a\xe2\x80\xa9z", "\"a\\u2029z\"", "a\xe2\x80\xa9z");
	/* Neighbouring code points are not escaped. */
	check_put_s("\xe2\x80\xa7\xe2\x80\xaa", "\"\xe2\x80\xa7\xe2\x80\xaa\"",
		    "\xe2\x80\xa7\xe2\x80\xaa");
}
END_TEST

START_TEST(test_put_valid_utf8)
{
	const char *cyr = "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82";
	const char *emoji = "\xf0\x9f\x98\x80";
	const char *max = "\xf4\x8f\xbf\xbf";	/* U+10FFFF */
	const char *mixed = "x\xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xa9y";
	char want[64];

	snprintf(want, sizeof(want), "\"%s\"", cyr);
	check_put_s(cyr, want, cyr);
	snprintf(want, sizeof(want), "\"%s\"", emoji);
	check_put_s(emoji, want, emoji);
	snprintf(want, sizeof(want), "\"%s\"", max);
	check_put_s(max, want, max);
	snprintf(want, sizeof(want), "\"%s\"", mixed);
	check_put_s(mixed, want, mixed);
}
END_TEST

#define FFFD "\xef\xbf\xbd"

START_TEST(test_put_invalid_utf8)
{
	check_put_s("\xff", "\"\\ufffd\"", FFFD);
	check_put_s("a\xffz", "\"a\\ufffdz\"", "a" FFFD "z");
	/* Overlong '/': each byte replaced. */
	check_put_s("\xc0\xaf", "\"\\ufffd\\ufffd\"", FFFD FFFD);
	/* Lone surrogate U+D800 encoded in UTF-8. */
	check_put_s("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"",
		    FFFD FFFD FFFD);
	/* Truncated sequences, at the end and before ASCII. */
	check_put_s("\xe2\x82", "\"\\ufffd\\ufffd\"", FFFD FFFD);
	check_put_s("\xe2\x82x", "\"\\ufffd\\ufffdx\"", FFFD FFFD "x");
	/* Past U+10FFFF. */
	check_put_s("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"",
		    FFFD FFFD FFFD FFFD);
	/* Stray continuation byte, and an invalid lead after valid text. */
	check_put_s("\x80" "ok", "\"\\ufffdok\"", FFFD "ok");
	check_put_s("\xc3\xa9\xf8", "\"\xc3\xa9\\ufffd\"", "\xc3\xa9" FFFD);
}
END_TEST

START_TEST(test_put_str_null_and_append)
{
	struct vs_buf b;

	vs_buf_init(&b);
	ck_assert(vs_buf_puts(&b, "{\"k\":"));
	ck_assert(vs_json_put_str(&b, "v<"));
	ck_assert(vs_buf_puts(&b, ",\"n\":"));
	ck_assert(vs_json_put_str(&b, NULL));
	ck_assert(vs_buf_puts(&b, "}"));
	ck_assert_str_eq(b.data, "{\"k\":\"v\\u003c\",\"n\":\"\"}");
	ck_assert(vs_json_valid(b.data, b.len));
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_put_strn_embedded_nul)
{
	struct vs_buf b;

	vs_buf_init(&b);
	ck_assert(vs_json_put_strn(&b, "a\0b", 3));
	ck_assert_str_eq(b.data, "\"a\\u0000b\"");
	ck_assert_uint_eq(b.len, 10);
	ck_assert(vs_json_valid(b.data, b.len));
	vs_buf_reset(&b);
	/* n shorter than the string: only n bytes are written. */
	ck_assert(vs_json_put_strn(&b, "abcdef", 3));
	ck_assert_str_eq(b.data, "\"abc\"");
	vs_buf_reset(&b);
	/* A multi-byte sequence cut by n is invalid at that point. */
	ck_assert(vs_json_put_strn(&b, "\xc3\xa9", 1));
	ck_assert_str_eq(b.data, "\"\\ufffd\"");
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_put_long_mixed)
{
	/* A long string of every byte value, repeated, to exercise buffer
	 * growth between escapes; the result must re-parse. */
	const size_t n = 256 * 400;
	char *s = malloc(n);
	struct vs_buf b;
	cJSON *v;

	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)(i % 256 == 0 ? 'A' : i % 256);
	vs_buf_init(&b);
	ck_assert(vs_json_put_strn(&b, s, n));
	ck_assert(!b.oom);
	ck_assert_uint_eq(strlen(b.data), b.len);
	ck_assert(vs_json_valid(b.data, b.len));
	v = cJSON_Parse(b.data);
	ck_assert_ptr_nonnull(v);
	ck_assert(cJSON_IsString(v));
	cJSON_Delete(v);
	vs_buf_free(&b);

	/* Long valid text with escapes sprinkled in: exact round trip. */
	for (size_t i = 0; i < n; i++)
		s[i] = "ab<\"\\\ncd"[i % 8];
	s[n - 1] = '\0';
	vs_buf_init(&b);
	ck_assert(vs_json_put_str(&b, s));
	v = cJSON_Parse(b.data);
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v->valuestring, s);
	cJSON_Delete(v);
	vs_buf_free(&b);
	free(s);
}
END_TEST

/* The escape of one ASCII byte, written out the slow way. */
static void
ref_escape(struct vs_buf *b, unsigned char c)
{
	switch (c) {
	case '"': vs_buf_puts(b, "\\\""); break;
	case '\\': vs_buf_puts(b, "\\\\"); break;
	case '\n': vs_buf_puts(b, "\\n"); break;
	case '\r': vs_buf_puts(b, "\\r"); break;
	case '\t': vs_buf_puts(b, "\\t"); break;
	default:
		if (c < 0x20 || c == '<' || c == '>' || c == '&')
			vs_buf_printf(b, "\\u%04x", c);
		else
			vs_buf_append(b, &c, 1);
	}
}

/* Every special byte at every offset of runs longer than the 16-byte
 * blocks the scanner tests at once: the exact output, byte for byte. */
START_TEST(test_put_special_at_every_offset)
{
	static const unsigned char specials[] = {
		'"', '\\', '<', '>', '&', '\n', '\t', 0x01, 0x1f, 0x00, ' ', '~',
		0x7f,
	};

	for (size_t k = 0; k < sizeof(specials); k++) {
		for (size_t len = 1; len <= 40; len++) {
			for (size_t pos = 0; pos < len; pos++) {
				char in[40];
				struct vs_buf got, want;

				for (size_t i = 0; i < len; i++)
					in[i] = (char)('a' + i % 26);
				in[pos] = (char)specials[k];
				if (pos + 17 < len)	/* a second one, a block on */
					in[pos + 17] = (char)specials[k];
				vs_buf_init(&got);
				vs_buf_init(&want);
				vs_buf_puts(&want, "\"");
				for (size_t i = 0; i < len; i++)
					ref_escape(&want, (unsigned char)in[i]);
				vs_buf_puts(&want, "\"");
				ck_assert(vs_json_put_strn(&got, in, len));
				ck_assert_uint_eq(got.len, want.len);
				ck_assert_msg(memcmp(got.data, want.data,
						     got.len) == 0,
					      "byte %u at %zu of %zu: %s",
					      specials[k], pos, len, got.data);
				vs_buf_free(&got);
				vs_buf_free(&want);
			}
		}
	}
	/* A non-ASCII byte ends a plain run too (valid UTF-8 is kept). */
	{
		struct vs_buf b;

		vs_buf_init(&b);
		ck_assert(vs_json_put_str(&b, "abcdefghijklmnopqr\xc3\xa9st"));
		ck_assert_str_eq(b.data, "\"abcdefghijklmnopqr\xc3\xa9st\"");
		vs_buf_reset(&b);
		ck_assert(vs_json_put_str(&b, "abcdefghijklmnopq\xffrs"));
		ck_assert_str_eq(b.data, "\"abcdefghijklmnopq\\ufffdrs\"");
		vs_buf_free(&b);
	}
}
END_TEST

START_TEST(test_put_random_bytes_always_valid)
{
	/* Deterministic pseudo-random byte strings: the output is always
	 * one valid JSON string, whatever the input. */
	uint32_t x = 2463534242u;

	for (int round = 0; round < 2000; round++) {
		unsigned char in[48];
		size_t n = (size_t)(round % 48);
		struct vs_buf b;
		cJSON *v;

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			in[i] = (unsigned char)x;
		}
		vs_buf_init(&b);
		ck_assert(vs_json_put_strn(&b, (const char *)in, n));
		ck_assert(vs_json_valid(b.data, b.len));
		v = cJSON_Parse(b.data);
		ck_assert_ptr_nonnull(v);
		ck_assert(cJSON_IsString(v));
		cJSON_Delete(v);
		for (size_t i = 0; i < b.len; i++) {
			unsigned char c = (unsigned char)b.data[i];
			ck_assert(c >= 0x20);
			ck_assert(c != '<' && c != '>' && c != '&');
		}
		vs_buf_free(&b);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* vs_json_valid                                                      */
/* ------------------------------------------------------------------ */

START_TEST(test_valid)
{
	ck_assert(valid_n("{}", 2));
	ck_assert(valid_n(" [1, {\"a\":null}] \n", 18));
	ck_assert(valid_n("\"s\"", 3));
	ck_assert(valid_n("  1  ", 5));
	ck_assert(valid_n("null", 4));
	ck_assert(!valid_n("", 0));
	ck_assert(!valid_n("   ", 3));
	ck_assert(!valid_n("1 2", 3));
	ck_assert(!valid_n("{} {}", 5));
	ck_assert(!valid_n("{", 1));
	ck_assert(!valid_n("{}x", 3));
	ck_assert(!valid_n("{}\0", 3));
	ck_assert(valid_n("{}x", 2));
	ck_assert(!vs_json_valid(NULL, 0));
}
END_TEST

static bool
valid_s(const char *s)
{
	return valid_n(s, strlen(s));
}

/* The grammar, case by case: what Go's encoding/json.Valid (the
 * reference's check) accepts and refuses. */
START_TEST(test_valid_grammar)
{
	static const char *const ok[] = {
		"0", "-0", "12", "-1.5", "1e5", "1E+5", "2.5e-3", "true", "false",
		"null", "\"\"", "\"a\\\"b\"", "\"\\/\\b\\f\\n\\r\\t\\\\\"",
		"\"\\u00e9\\uD83D\\uDE00\"",
		"\"\\ud800\"",		/* lone surrogate: Go accepts it */
		"\"\xff\xfe\"",		/* bytes are not checked as UTF-8 */
		"\"\xd0\x9f\xd1\x80\xd0\xb8\"",
		"[]", "{}", "[ ]", "{ }", "[1,2,3]", "[[],[[]],{}]",
		"{\"a\":1,\"b\":[true,null],\"c\":{\"d\":\"e\"}}",
		" \t\r\n{ \"a\" : [ 1 , { } ] } \n",
		"{\"\":\"\"}", "[\"a\",\"b\"]", "-0.0e0",
	};
	static const char *const bad[] = {
		"", " ", "+1", "01", "-01", "1.", ".5", "1e", "1e+", "-", "--1",
		"0x10", "1 2", "NaN", "Infinity", "tru", "nul", "nulls", "truefalse",
		"True", "'a'", "\"a", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"",
		"\"a\tb\"", "\"\n\"", "[", "]", "[1,]", "[,1]", "[1 2]", "{",
		"}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "{1:2}", "{\"a\":1,}",
		"{,\"a\":1}", "{\"a\":1 \"b\":2}", "[}", "{]", "[1}", "{\"a\":1]",
		"[1]]", "{}}", "\f{}", "{}\f", "[1,\v2]", "/* */ 1", "1 // c",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(valid_s(ok[i]), "should be valid: %s", ok[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!valid_s(bad[i]), "should be invalid: %s", bad[i]);
	/* a NUL byte is never part of JSON text */
	ck_assert(!valid_n("[1,\0 2]", 6));
	ck_assert(!valid_n("\"a\0\"", 4));
}
END_TEST

/* A tree for what vs_json_valid accepts, lone surrogates included; an
 * escaped backslash before "u" is text, not an escape, and stays. */
#define PV(lit) vs_json_parse_valid((lit), strlen(lit))

START_TEST(test_parse_valid_surrogates)
{
	cJSON *v;

	v = PV("{\"a\":\"x\\ud800y\",\"b\":1}");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(cJSON_GetObjectItem(v, "a")->valuestring,
			 "x\xef\xbf\xbdy");
	ck_assert_int_eq(cJSON_GetObjectItem(v, "b")->valueint, 1);
	cJSON_Delete(v);
	/* a pair stays a pair when nothing else needs replacing */
	v = PV("\"\\uD83D\\uDE00\"");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v->valuestring, "\xf0\x9f\x98\x80");
	cJSON_Delete(v);
	/* "\\ud800" is a backslash and the letters u, d, 8, 0, 0 */
	v = PV("[\"\\\\ud800\",\"\\udfff\"]");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(cJSON_GetArrayItem(v, 0)->valuestring, "\\ud800");
	ck_assert_str_eq(cJSON_GetArrayItem(v, 1)->valuestring, "\xef\xbf\xbd");
	cJSON_Delete(v);
}
END_TEST

/* Nesting up to Go's limit of 10000, and no further; no recursion, so
 * a deep payload cannot exhaust the worker's stack. */
START_TEST(test_valid_depth)
{
	size_t n = 10001;
	char *s = malloc(2 * n + 1);

	ck_assert_ptr_nonnull(s);
	for (size_t d = 9999; d <= n; d++) {
		memset(s, '[', d);
		memset(s + d, ']', d);
		ck_assert_msg(valid_n(s, 2 * d) == (d <= 10000), "depth %zu", d);
	}
	/* objects count the same */
	for (size_t k = 0; k < 3000; k++)
		memcpy(s + 5 * k, "{\"a\":", 5);
	memset(s + 15000, '1', 1);
	memset(s + 15001, '}', 3000);
	ck_assert(valid_n(s, 18001));
	s[18000] = ']';
	ck_assert(!valid_n(s, 18001));
	free(s);
}
END_TEST

/* Every document the writer produces and cJSON prints is valid; cutting
 * any of them short never is (a prefix of one value is not a value,
 * except where the cut leaves a complete number). */
START_TEST(test_valid_agrees_on_generated_documents)
{
	unsigned seed = 12345;

	for (int round = 0; round < 300; round++) {
		cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
		char *text;
		size_t len;

		ck_assert_ptr_nonnull(root);
		ck_assert_ptr_nonnull(arr);
		for (int k = 0; k < 1 + round % 9; k++) {
			char key[16], val[32];

			seed = seed * 1103515245u + 12345u;
			snprintf(key, sizeof(key), "k%u", seed % 1000);
			snprintf(val, sizeof(val), "v\"\\\n\x01%u\xc3\xa9", seed);
			cJSON_AddItemToObject(root, key, cJSON_CreateString(val));
			cJSON_AddItemToArray(arr, cJSON_CreateNumber(
						     (double)(int)(seed % 100000) - 50000.25));
			cJSON_AddItemToArray(arr, (seed & 1) ? cJSON_CreateTrue() :
					     cJSON_CreateNull());
		}
		cJSON_AddItemToObject(root, "list", arr);
		text = (round & 1) ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
		ck_assert_ptr_nonnull(text);
		len = strlen(text);
		ck_assert_msg(valid_n(text, len), "%s", text);
		for (size_t cut = 1; cut < len; cut += 1 + len / 40)
			ck_assert_msg(!valid_n(text, cut), "prefix %zu of %s", cut, text);
		free(text);
		cJSON_Delete(root);
	}
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_test(tc, test_parse_object);
	tcase_add_test(tc, test_put_special_at_every_offset);
	tcase_add_test(tc, test_parse_null);
	tcase_add_test(tc, test_parse_empty);
	tcase_add_test(tc, test_parse_trailing);
	tcase_add_test(tc, test_parse_trailing_ws_ok);
	tcase_add_test(tc, test_parse_trailing_debris);
	tcase_add_test(tc, test_parse_trailing_nul);
	tcase_add_test(tc, test_parse_array_and_scalars);
	tcase_add_test(tc, test_parse_malformed);
	tcase_add_test(tc, test_parse_respects_len);
	tcase_add_test(tc, test_parse_large_body);
	tcase_add_test(tc, test_parse_known_bugs);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_test(tc, test_is_object_or_null);
	tcase_add_test(tc, test_str_fields);
	tcase_add_test(tc, test_str_on_null_body);
	tcase_add_test(tc, test_int_fields);
	tcase_add_test(tc, test_node_int);
	suite_add_tcase(s, tc);

	tc = tcase_create("writer");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_put_plain);
	tcase_add_test(tc, test_put_escapes);
	tcase_add_test(tc, test_put_control);
	tcase_add_test(tc, test_put_html);
	tcase_add_test(tc, test_put_line_separators);
	tcase_add_test(tc, test_put_valid_utf8);
	tcase_add_test(tc, test_put_invalid_utf8);
	tcase_add_test(tc, test_put_str_null_and_append);
	tcase_add_test(tc, test_put_strn_embedded_nul);
	tcase_add_test(tc, test_put_long_mixed);
	tcase_add_test(tc, test_put_random_bytes_always_valid);
	suite_add_tcase(s, tc);

	tc = tcase_create("valid");
	tcase_add_test(tc, test_valid);
	tcase_add_test(tc, test_valid_grammar);
	tcase_add_test(tc, test_parse_valid_surrogates);
	tcase_add_test(tc, test_valid_depth);
	tcase_add_test(tc, test_valid_agrees_on_generated_documents);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
