/*
 * test_multipart.c - unit tests for src/multipart.c: the Content-Type
 * check (quoted and unquoted boundaries, wrong types), preamble and
 * epilogue, CRLF and bare-LF delimiters, delimiters and near-delimiters
 * split across chunks at every position, white space after a boundary,
 * header folding and limits, Content-Disposition parameters (quoted,
 * escaped, RFC 2231, missing, not form-data), a second part, no part,
 * truncated bodies, callback aborts, and random binary content fed in
 * random chunk sizes.
 *
 * Must never: depend on anything but the parser (no files, no database).
 */
#include "multipart.h"
#include "util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CT "multipart/form-data; boundary=XyZ"

/* ------------------------------------------------------------------ */
/* A recording of the callbacks                                       */
/* ------------------------------------------------------------------ */

struct rec {
	struct vs_buf log;      /* "B<name>|<filename>;" and "E<0|1>;" */
	struct vs_buf data[4];  /* content of each part */
	int parts;
	int stop_at_begin;      /* abort on this part's begin (1-based) */
	size_t stop_after;      /* abort once this much content arrived */
	size_t total;
};

static void
rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	vs_buf_init(&r->log);
	for (int i = 0; i < 4; i++)
		vs_buf_init(&r->data[i]);
}

static void
rec_free(struct rec *r)
{
	vs_buf_free(&r->log);
	for (int i = 0; i < 4; i++)
		vs_buf_free(&r->data[i]);
}

static int
cb_begin(void *ud, const struct vs_mp_part *p)
{
	struct rec *r = ud;

	r->parts++;
	vs_buf_printf(&r->log, "B%s|%s;", p->name, p->filename);
	return r->parts == r->stop_at_begin;
}

static int
cb_data(void *ud, const char *d, size_t n)
{
	struct rec *r = ud;

	ck_assert_uint_gt(n, 0);
	ck_assert_int_ge(r->parts, 1);
	if (r->parts <= 4)
		vs_buf_append(&r->data[r->parts - 1], d, n);
	r->total += n;
	return r->stop_after != 0 && r->total >= r->stop_after;
}

static int
cb_end(void *ud, bool last)
{
	struct rec *r = ud;

	vs_buf_printf(&r->log, "E%d;", last ? 1 : 0);
	return 0;
}

static const struct vs_mp_callbacks cbs = { cb_begin, cb_data, cb_end };

/* Feeds body in chunks of `chunk` bytes (0 = at once), then finishes. */
static enum vs_mp_rc
run_chunked(const char *ct, const char *body, size_t len, size_t chunk,
	    struct rec *r)
{
	static struct vs_mp p;
	enum vs_mp_rc rc = VS_MP_OK;

	ck_assert(vs_mp_init(&p, ct, &cbs, r));
	if (chunk == 0)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len && rc == VS_MP_OK; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		rc = vs_mp_feed(&p, body + off, n);
	}
	return rc == VS_MP_OK ? vs_mp_finish(&p) : rc;
}

/* Feeds body as two pieces split at `at`. */
static enum vs_mp_rc
run_split(const char *ct, const char *body, size_t len, size_t at,
	  struct rec *r)
{
	static struct vs_mp p;
	enum vs_mp_rc rc;

	ck_assert(vs_mp_init(&p, ct, &cbs, r));
	rc = vs_mp_feed(&p, body, at);
	if (rc == VS_MP_OK)
		rc = vs_mp_feed(&p, body + at, len - at);
	return rc == VS_MP_OK ? vs_mp_finish(&p) : rc;
}

/* Every two-piece split and a few chunk sizes give the same result. */
static void
expect_all_splits(const char *ct, const char *body, size_t len,
		  enum vs_mp_rc want, const char *want_log,
		  const char *want_data, size_t want_len)
{
	size_t sizes[] = { 0, 1, 2, 3, 7, 64 };

	for (size_t at = 0; at <= len; at++) {
		struct rec r;
		rec_init(&r);
		ck_assert_msg(run_split(ct, body, len, at, &r) == want,
			      "split at %zu", at);
		ck_assert_str_eq(r.log.data ? r.log.data : "", want_log);
		if (want_data != NULL) {
			ck_assert_uint_eq(r.data[0].len, want_len);
			ck_assert(want_len == 0 ||
				  memcmp(r.data[0].data, want_data, want_len) == 0);
		}
		rec_free(&r);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		struct rec r;
		rec_init(&r);
		ck_assert_msg(run_chunked(ct, body, len, sizes[i], &r) == want,
			      "chunk %zu", sizes[i]);
		ck_assert_str_eq(r.log.data ? r.log.data : "", want_log);
		rec_free(&r);
	}
}

static size_t
len_or_0(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

#define EXPECT(body, rc, log, data) \
	expect_all_splits(CT, body, sizeof(body) - 1, rc, log, data, \
			  len_or_0(data))

/* ------------------------------------------------------------------ */
/* Content-Type                                                       */
/* ------------------------------------------------------------------ */

START_TEST(test_content_type)
{
	static const char *const good[] = {
		"multipart/form-data; boundary=XyZ",
		"multipart/form-data;boundary=XyZ",
		"Multipart/Form-Data; BOUNDARY=XyZ",
		"multipart/form-data; boundary=\"XyZ\"",
		"multipart/form-data; charset=utf-8; boundary=XyZ",
		"  multipart/form-data ; boundary = XyZ ;",
		"multipart/form-data; boundary=\"a b:c\"",
		"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
	};
	static const char *const bad[] = {
		"", "text/plain", "multipart/form-data", "multipart/mixed; boundary=x",
		"multipart/form-data; boundary=", "multipart/form-data; boundary=\"\"",
		"multipart/form-data; boundary=\"unterminated",
		"multipart/form-data; boundary=a; boundary=b",
		"multipart/form-data boundary=x", "multipart/; boundary=x",
		"multipart/form-data; boundary=\"a\x01" "b\"",
		"multipart/form-data; =x; boundary=y",
	};
	struct vs_mp p;
	struct rec r;
	char longb[300];

	rec_init(&r);
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		ck_assert_msg(vs_mp_init(&p, good[i], &cbs, &r), "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		ck_assert_msg(!vs_mp_init(&p, bad[i], &cbs, &r), "%s", bad[i]);
	ck_assert(!vs_mp_init(&p, NULL, &cbs, &r));
	snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%0*d",
		 VS_MP_BOUNDARY_MAX + 1, 0);
	ck_assert(!vs_mp_init(&p, longb, &cbs, &r));
	snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%0*d",
		 VS_MP_BOUNDARY_MAX, 0);
	ck_assert(vs_mp_init(&p, longb, &cbs, &r));
	rec_free(&r);
}
END_TEST

START_TEST(test_quoted_boundary_used)
{
	static const char body[] =
		"--a b:c\r\nContent-Disposition: form-data; name=file; filename=f\r\n"
		"\r\nhello\r\n--a b:c--\r\n";
	expect_all_splits("multipart/form-data; boundary=\"a b:c\"", body,
			  sizeof(body) - 1, VS_MP_OK, "Bfile|f;E1;", "hello", 5);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Structure                                                          */
/* ------------------------------------------------------------------ */

START_TEST(test_simple_part_every_split)
{
	EXPECT("--XyZ\r\n"
	       "Content-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
	       "Content-Type: application/octet-stream\r\n"
	       "\r\n"
	       "hello world\r\n"
	       "--XyZ--\r\n",
	       VS_MP_OK, "Bfile|a.bin;E1;", "hello world");
}
END_TEST

START_TEST(test_empty_content)
{
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n"
	       "\r\n\r\n--XyZ--",
	       VS_MP_OK, "Bfile|x;E1;", "");
}
END_TEST

START_TEST(test_preamble_and_epilogue)
{
	EXPECT("This is a preamble.\r\n--XyZ is not it\r\n--XyZ-x\r\n"
	       "--XyZ  \t\r\n"
	       "Content-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "data\r\n--XyZ--  \r\nepilogue --XyZ\r\n garbage",
	       VS_MP_OK, "Bfile|x;E1;", "data");
}
END_TEST

START_TEST(test_near_delimiters_are_content)
{
	/* CRs, LFs, dashes and boundary prefixes inside the content, and
	 * "--XyZ" followed by a byte that cannot follow a delimiter. */
	static const char content[] =
		"\r\r\n\n-\r\n--\r\n--X\r\n--Xy\r\n--XyZa\r\n--XyZ\xff\r\n";
	char body[512];
	int n = snprintf(body, sizeof(body),
			 "--XyZ\r\nContent-Disposition: form-data; name=file;"
			 " filename=x\r\n\r\n%s\r\n--XyZ--\r\n", content);

	expect_all_splits(CT, body, (size_t)n, VS_MP_OK, "Bfile|x;E1;",
			  content, sizeof(content) - 1);
}
END_TEST

START_TEST(test_lf_only)
{
	EXPECT("--XyZ\nContent-Disposition: form-data; name=file; filename=x\n\n"
	       "a\r\nb\n--XyZ--\n",
	       VS_MP_OK, "Bfile|x;E1;", "a\r\nb");
	/* In CRLF mode a bare LF before the boundary is content, and a
	 * delimiter line ending in a bare LF is an error. */
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "a\n--XyZ\r\n--XyZ--\r\n",
	       VS_MP_OK, "Bfile|x;E1;", "a\n--XyZ");
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "a\r\n--XyZ\n",
	       VS_MP_MALFORMED, "Bfile|x;", NULL);
}
END_TEST

START_TEST(test_second_part)
{
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "one\r\n--XyZ \r\nContent-Disposition: form-data; name=more\r\n\r\n"
	       "two\r\n--XyZ--\r\n",
	       VS_MP_OK, "Bfile|x;E0;Bmore|;E1;", "one");
}
END_TEST

START_TEST(test_no_parts)
{
	EXPECT("--XyZ--\r\n", VS_MP_NO_PARTS, "", NULL);
	EXPECT("--XyZ--", VS_MP_NO_PARTS, "", NULL);
	EXPECT("preamble\r\n--XyZ-- \r\n", VS_MP_NO_PARTS, "", NULL);
}
END_TEST

START_TEST(test_malformed_and_truncated)
{
	EXPECT("", VS_MP_MALFORMED, "", NULL);
	EXPECT("no boundary at all\r\n", VS_MP_MALFORMED, "", NULL);
	EXPECT("--XyZ\r\n", VS_MP_MALFORMED, "", NULL);
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file\r\n",
	       VS_MP_MALFORMED, "", NULL);
	/* content without a closing delimiter */
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "abc\r\n--Xy",
	       VS_MP_MALFORMED, "Bfile|x;", "abc");
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "abc\r\n--XyZ-",
	       VS_MP_MALFORMED, "Bfile|x;", "abc");
	/* junk after a delimiter, after the close delimiter */
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "abc\r\n--XyZ-x\r\n",
	       VS_MP_MALFORMED, "Bfile|x;", "abc");
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "abc\r\n--XyZ \tx\r\n",
	       VS_MP_MALFORMED, "Bfile|x;", "abc");
	EXPECT("--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
	       "abc\r\n--XyZ--x\r\n",
	       VS_MP_MALFORMED, "Bfile|x;E1;", "abc");
	/* header lines: no colon, empty name, space before the colon,
	 * a continuation with nothing to continue */
	EXPECT("--XyZ\r\nContent-Disposition form-data\r\n\r\nx\r\n--XyZ--\r\n",
	       VS_MP_MALFORMED, "", NULL);
	EXPECT("--XyZ\r\n: x\r\n\r\nx\r\n--XyZ--\r\n", VS_MP_MALFORMED, "", NULL);
	EXPECT("--XyZ\r\nContent-Disposition : form-data\r\n\r\nx\r\n--XyZ--\r\n",
	       VS_MP_MALFORMED, "", NULL);
	EXPECT("--XyZ\r\n folded: x\r\n\r\nx\r\n--XyZ--\r\n",
	       VS_MP_MALFORMED, "", NULL);
}
END_TEST

START_TEST(test_header_block_limit)
{
	size_t pad = VS_MP_HEADER_MAX;
	char *body = malloc(pad + 200);
	struct rec r;
	size_t n;

	ck_assert_ptr_nonnull(body);
	n = (size_t)sprintf(body, "--XyZ\r\nX-Pad: ");
	memset(body + n, 'a', pad);
	n += pad;
	n += (size_t)sprintf(body + n, "\r\n\r\nx\r\n--XyZ--\r\n");
	rec_init(&r);
	ck_assert_int_eq(run_chunked(CT, body, n, 100, &r), VS_MP_MALFORMED);
	ck_assert_int_eq(r.parts, 0);
	rec_free(&r);
	free(body);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Content-Disposition                                                */
/* ------------------------------------------------------------------ */

static void
expect_disposition(const char *headers, const char *want_log)
{
	char body[1024];
	int n = snprintf(body, sizeof(body), "--XyZ\r\n%s\r\nx\r\n--XyZ--\r\n",
			 headers);
	struct rec r;

	rec_init(&r);
	ck_assert_int_eq(run_chunked(CT, body, (size_t)n, 0, &r), VS_MP_OK);
	ck_assert_msg(strcmp(r.log.data, want_log) == 0, "%s: got %s want %s",
		      headers, r.log.data, want_log);
	rec_free(&r);
}

START_TEST(test_disposition_params)
{
	expect_disposition("Content-Disposition: form-data; name=file; filename=a\r\n",
			   "Bfile|a;E1;");
	expect_disposition("content-disposition:FORM-DATA;NAME=\"file\";FILENAME=\"a b\"\r\n",
			   "Bfile|a b;E1;");
	/* escaped quote and backslash; unneeded escapes kept (MSIE paths) */
	expect_disposition("Content-Disposition: form-data; name=\"file\";"
			   " filename=\"q\\\"x\\\\y\\z\"\r\n",
			   "Bfile|q\"x\\y\\z;E1;");
	/* RFC 2231 wins over the plain parameter */
	expect_disposition("Content-Disposition: form-data; name=file;"
			   " filename=\"plain\"; filename*=UTF-8''%e2%82%ac.txt\r\n",
			   "Bfile|\xe2\x82\xac.txt;E1;");
	/* folded over two lines */
	expect_disposition("Content-Disposition: form-data;\r\n  name=file;\r\n"
			   "\tfilename=f\r\n", "Bfile|f;E1;");
	/* the first Content-Disposition counts */
	expect_disposition("Content-Disposition: form-data; name=file; filename=a\r\n"
			   "Content-Disposition: form-data; name=other\r\n",
			   "Bfile|a;E1;");
	/* no filename, empty filename */
	expect_disposition("Content-Disposition: form-data; name=file\r\n", "Bfile|;E1;");
	expect_disposition("Content-Disposition: form-data; name=file; filename=\"\"\r\n",
			   "Bfile|;E1;");
	/* missing, other type, unparsable: no name */
	expect_disposition("Content-Type: text/plain\r\n", "B|;E1;");
	expect_disposition("", "B|;E1;");
	expect_disposition("Content-Disposition: attachment; name=file; filename=a\r\n",
			   "B|;E1;");
	expect_disposition("Content-Disposition: form-data; name=\"file\r\n", "B|;E1;");
	expect_disposition("Content-Disposition: form-data; name=file; name=other\r\n",
			   "B|;E1;");
	expect_disposition("Content-Disposition: form-data; name=file filename=a\r\n",
			   "B|;E1;");
	/* an undecodable filename* falls back to the plain one */
	expect_disposition("Content-Disposition: form-data; name=file; filename=a;"
			   " filename*=latin1''b\r\n", "Bfile|a;E1;");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Callbacks                                                          */
/* ------------------------------------------------------------------ */

START_TEST(test_abort_is_sticky)
{
	static const char body[] =
		"--XyZ\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n"
		"0123456789\r\n--XyZ--\r\n";
	static struct vs_mp p;
	struct rec r;

	rec_init(&r);
	r.stop_at_begin = 1;
	ck_assert_int_eq(run_chunked(CT, body, sizeof(body) - 1, 0, &r),
			 VS_MP_ABORTED);
	ck_assert_uint_eq(r.total, 0);
	rec_free(&r);

	rec_init(&r);
	r.stop_after = 3;
	ck_assert(vs_mp_init(&p, CT, &cbs, &r));
	ck_assert_int_eq(vs_mp_feed(&p, body, 70), VS_MP_ABORTED);
	ck_assert_int_eq(vs_mp_feed(&p, body + 70, sizeof(body) - 71),
			 VS_MP_ABORTED);
	ck_assert_int_eq(vs_mp_finish(&p), VS_MP_ABORTED);
	rec_free(&r);
}
END_TEST

/* Random binary content (many CRs, LFs and dashes) in random chunks. */
START_TEST(test_random_content_random_chunks)
{
	static const char alphabet[] = "\r\n-XyZ\r\n-ab";
	size_t clen = 200000;
	char *content = malloc(clen), *body = malloc(clen + 256);
	unsigned seed = 12345;
	size_t n, off;

	ck_assert(content != NULL && body != NULL);
	for (int round = 0; round < 20; round++) {
		static struct vs_mp p;
		struct rec r;
		enum vs_mp_rc rc = VS_MP_OK;

		for (size_t i = 0; i < clen; i++) {
			seed = seed * 1103515245u + 12345u;
			content[i] = (round & 1) ?
				(char)(seed >> 16) :
				alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		n = (size_t)sprintf(body, "--XyZ\r\nContent-Disposition: form-data;"
				    " name=file; filename=r\r\n\r\n");
		memcpy(body + n, content, clen);
		n += clen;
		n += (size_t)sprintf(body + n, "\r\n--XyZ--\r\n");
		/* the content must not contain the delimiter itself */
		if (memmem(content, clen, "\r\n--XyZ", 7) != NULL)
			continue;
		rec_init(&r);
		ck_assert(vs_mp_init(&p, CT, &cbs, &r));
		for (off = 0; off < n && rc == VS_MP_OK;) {
			size_t k;
			seed = seed * 1103515245u + 12345u;
			k = 1 + (seed >> 16) % 9000;
			if (k > n - off)
				k = n - off;
			rc = vs_mp_feed(&p, body + off, k);
			off += k;
		}
		ck_assert_int_eq(rc, VS_MP_OK);
		ck_assert_int_eq(vs_mp_finish(&p), VS_MP_OK);
		ck_assert_str_eq(r.log.data, "Bfile|r;E1;");
		ck_assert_uint_eq(r.data[0].len, clen);
		ck_assert(memcmp(r.data[0].data, content, clen) == 0);
		rec_free(&r);
	}
	free(content);
	free(body);
}
END_TEST

static Suite *
multipart_suite(void)
{
	Suite *s = suite_create("multipart");
	TCase *tc = tcase_create("parser");

	tcase_add_test(tc, test_content_type);
	tcase_add_test(tc, test_quoted_boundary_used);
	tcase_add_test(tc, test_simple_part_every_split);
	tcase_add_test(tc, test_empty_content);
	tcase_add_test(tc, test_preamble_and_epilogue);
	tcase_add_test(tc, test_near_delimiters_are_content);
	tcase_add_test(tc, test_lf_only);
	tcase_add_test(tc, test_second_part);
	tcase_add_test(tc, test_no_parts);
	tcase_add_test(tc, test_malformed_and_truncated);
	tcase_add_test(tc, test_header_block_limit);
	tcase_add_test(tc, test_disposition_params);
	tcase_add_test(tc, test_abort_is_sticky);
	tcase_add_test(tc, test_random_content_random_chunks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(multipart_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
