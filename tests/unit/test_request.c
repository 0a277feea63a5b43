/*
 * test_request.c - unit tests for src/request.c: method, path and query
 * from the FastCGI parameters, query and form decoding, cookies, path
 * cleaning, client IP and HTTPS behind trusted proxies (API.md 1.8, D17),
 * CIDR parsing, and capped body reading through a fake source that hands
 * out the body a few bytes at a time.
 *
 * Runs under ASan as well: every request is freed with vs_request_free
 * and every list with vs_kvlist_free, so a leak in request.c fails.
 */
#include "request.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------ */
/* Fake request source                                                */
/* ------------------------------------------------------------------ */

struct fake {
	const char *const *params;  /* name, value, ..., NULL */
	const char *body;
	size_t body_len;
	size_t pos;
	size_t chunk;               /* bytes per read (0 = 7) */
	bool fail;                  /* return -1 once pos reaches fail_at */
	size_t fail_at;
	unsigned reads;
	unsigned reads_after_eof;
};

static const char *
fake_param(void *ctx, const char *name)
{
	const struct fake *f = ctx;

	for (size_t i = 0; f->params != NULL && f->params[i] != NULL; i += 2)
		if (strcmp(f->params[i], name) == 0)
			return f->params[i + 1];
	return NULL;
}

static ssize_t
fake_read(void *ctx, char *buf, size_t n)
{
	struct fake *f = ctx;
	size_t chunk = f->chunk ? f->chunk : 7, m;

	f->reads++;
	if (f->fail && f->pos >= f->fail_at)
		return -1;
	if (f->pos >= f->body_len) {
		f->reads_after_eof++;
		return 0;
	}
	m = f->body_len - f->pos;
	if (m > chunk)
		m = chunk;
	if (m > n)
		m = n;
	if (f->fail && f->pos + m > f->fail_at)
		m = f->fail_at - f->pos;
	memcpy(buf, f->body + f->pos, m);
	f->pos += m;
	return (ssize_t)m;
}

struct harness {
	struct fake f;
	struct vs_request_source src;
	struct vs_request r;
};

static void
h_setup(struct harness *h, const char *const *params)
{
	memset(h, 0, sizeof(*h));
	h->f.params = params;
	h->src.param = fake_param;
	h->src.read = fake_read;
	h->src.ctx = &h->f;
}

/* Initialises a request from params with the given trusted proxies. */
static void
h_init(struct harness *h, const char *const *params,
       const struct vs_cidr *trusted, size_t nt)
{
	h_setup(h, params);
	ck_assert(vs_request_init(&h->r, &h->src, trusted, nt));
}

static void
h_body(struct harness *h, const char *body, size_t len)
{
	h->f.body = body;
	h->f.body_len = len;
}

static void
h_free(struct harness *h)
{
	vs_request_free(&h->r);
}

/* The client IP / HTTPS a request resolves to. */
static void
client(const char *const *params, const char *const *cidrs, const char *want_ip,
       bool want_https)
{
	struct vs_cidr t[8];
	size_t nt = 0;
	struct harness h;

	for (; cidrs != NULL && cidrs[nt] != NULL; nt++) {
		ck_assert(nt < 8);
		ck_assert_msg(vs_cidr_parse(cidrs[nt], &t[nt]), "cidr %s",
			      cidrs[nt]);
	}
	h_init(&h, params, t, nt);
	ck_assert_str_eq(h.r.client_ip, want_ip);
	ck_assert_msg(h.r.https == want_https, "https = %d, want %d",
		      h.r.https, want_https);
	h_free(&h);
}

/* ------------------------------------------------------------------ */
/* Method, path, query                                                */
/* ------------------------------------------------------------------ */

START_TEST(test_init_with_query)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/api/v1/health?x=1&y=two",
		"QUERY_STRING", "x=1&y=two",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.method, "GET");
	ck_assert_str_eq(h.r.raw_path, "/api/v1/health");
	ck_assert_str_eq(h.r.path, "/api/v1/health");
	ck_assert_str_eq(h.r.query, "x=1&y=two");
	ck_assert_str_eq(vs_request_query(&h.r, "x"), "1");
	ck_assert_str_eq(vs_request_query(&h.r, "y"), "two");
	ck_assert_ptr_null(vs_request_query(&h.r, "z"));
	ck_assert(!h.r.body_read);
	ck_assert_ptr_null(h.r.body);
	h_free(&h);
}
END_TEST

START_TEST(test_init_without_query)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "POST",
		"REQUEST_URI", "/api/client/pair",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.method, "POST");
	ck_assert_str_eq(h.r.path, "/api/client/pair");
	ck_assert_str_eq(h.r.raw_path, "/api/client/pair");
	ck_assert_ptr_nonnull(h.r.query);
	ck_assert_str_eq(h.r.query, "");
	ck_assert_uint_eq(h.r.params.n, 0);
	h_free(&h);
}
END_TEST

START_TEST(test_init_empty_query_mark)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/a?",
		"QUERY_STRING", "",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.raw_path, "/a");
	ck_assert_str_eq(h.r.path, "/a");
	ck_assert_str_eq(h.r.query, "");
	h_free(&h);
}
END_TEST

START_TEST(test_init_percent_decoded)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/caf%C3%A9/a%20b/%2Fx+y?q=%41",
		"QUERY_STRING", "q=%41",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.raw_path, "/caf%C3%A9/a%20b/%2Fx+y");
	/* '+' is not a space in a path. */
	ck_assert_str_eq(h.r.path, "/caf\xc3\xa9/a b//x+y");
	ck_assert_str_eq(vs_request_query(&h.r, "q"), "A");
	h_free(&h);
}
END_TEST

START_TEST(test_init_document_uri_fallback)
{
	static const char *const p1[] = {
		"REQUEST_METHOD", "GET",
		"DOCUMENT_URI", "/livez",
		NULL,
	};
	static const char *const p2[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "",
		"DOCUMENT_URI", "/readyz",
		NULL,
	};
	static const char *const p3[] = {
		"REQUEST_URI", "/preferred",
		"DOCUMENT_URI", "/ignored",
		NULL,
	};
	struct harness h;

	h_init(&h, p1, NULL, 0);
	ck_assert_str_eq(h.r.path, "/livez");
	ck_assert_str_eq(h.r.raw_path, "/livez");
	h_free(&h);
	h_init(&h, p2, NULL, 0);
	ck_assert_str_eq(h.r.path, "/readyz");
	h_free(&h);
	h_init(&h, p3, NULL, 0);
	ck_assert_str_eq(h.r.path, "/preferred");
	/* No REQUEST_METHOD: empty, never NULL. */
	ck_assert_ptr_nonnull(h.r.method);
	ck_assert_str_eq(h.r.method, "");
	h_free(&h);
}
END_TEST

START_TEST(test_init_nothing_at_all)
{
	static const char *const p[] = { NULL };
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.method, "");
	ck_assert_str_eq(h.r.path, "/");
	ck_assert_str_eq(h.r.query, "");
	ck_assert_str_eq(h.r.content_type, "");
	ck_assert_str_eq(h.r.authorization, "");
	ck_assert_str_eq(h.r.host, "");
	ck_assert_str_eq(h.r.origin, "");
	ck_assert_str_eq(h.r.accept_language, "");
	ck_assert_str_eq(h.r.client_ip, "unknown");
	ck_assert(!h.r.https);
	ck_assert_uint_eq(h.r.cookies.n, 0);
	h_free(&h);
}
END_TEST

START_TEST(test_init_relative_uri)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "a/b", NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.path, "/a/b");
	h_free(&h);
}
END_TEST

START_TEST(test_init_query_params)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/q?a=1&b=x%20y&c=+&d",
		"QUERY_STRING", "a=1&b=x%20y&c=+&d",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(vs_request_query(&h.r, "a"), "1");
	ck_assert_str_eq(vs_request_query(&h.r, "b"), "x y");
	ck_assert_str_eq(vs_request_query(&h.r, "c"), " ");
	ck_assert_str_eq(vs_request_query(&h.r, "d"), "");
	ck_assert_ptr_null(vs_request_query(&h.r, "e"));
	ck_assert_uint_eq(h.r.params.n, 4);
	h_free(&h);
}
END_TEST

START_TEST(test_init_bad_query_param)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/q?a=1&b=%zz",
		"QUERY_STRING", "a=1&b=%zz",
		NULL,
	};
	struct harness h;

	/* A malformed parameter reads as absent; the request still parses. */
	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(vs_request_query(&h.r, "a"), "1");
	ck_assert_ptr_null(vs_request_query(&h.r, "b"));
	h_free(&h);
}
END_TEST

START_TEST(test_init_malformed_path_escape)
{
	static const char *const p1[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "/a%zzb?x=1",
		"QUERY_STRING", "x=1", NULL,
	};
	static const char *const p2[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "/a%00b", NULL,
	};
	static const char *const p3[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "/trailing%", NULL,
	};
	struct harness h;

	h_init(&h, p1, NULL, 0);
	ck_assert_str_eq(h.r.raw_path, "/a%zzb");
	ck_assert_str_eq(h.r.path, "/a%zzb");
	ck_assert_str_eq(vs_request_query(&h.r, "x"), "1");
	h_free(&h);
	h_init(&h, p2, NULL, 0);
	ck_assert_str_eq(h.r.path, "/a%00b");
	h_free(&h);
	h_init(&h, p3, NULL, 0);
	ck_assert_str_eq(h.r.path, "/trailing%");
	h_free(&h);
}
END_TEST

START_TEST(test_init_headers)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "POST",
		"REQUEST_URI", "/x",
		"CONTENT_TYPE", "application/json",
		"HTTP_AUTHORIZATION", "Bearer abc",
		"HTTP_HOST", "sync.example.org",
		"HTTP_ORIGIN", "https://sync.example.org",
		"HTTP_ACCEPT_LANGUAGE", "ru-RU,ru;q=0.9",
		"HTTP_X_CSRF_TOKEN", "tok",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(h.r.content_type, "application/json");
	ck_assert_str_eq(h.r.authorization, "Bearer abc");
	ck_assert_str_eq(h.r.host, "sync.example.org");
	ck_assert_str_eq(h.r.origin, "https://sync.example.org");
	ck_assert_str_eq(h.r.accept_language, "ru-RU,ru;q=0.9");
	ck_assert_str_eq(vs_request_param(&h.r, "HTTP_X_CSRF_TOKEN"), "tok");
	ck_assert_ptr_null(vs_request_param(&h.r, "HTTP_X_NOPE"));
	h_free(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Cookies                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_cookies)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "/",
		"HTTP_COOKIE", "a=1; b=\"q\"; csrf_token=x; csrf_token=y",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(vs_request_cookie(&h.r, "a"), "1");
	ck_assert_str_eq(vs_request_cookie(&h.r, "b"), "q");
	ck_assert_str_eq(vs_request_cookie(&h.r, "csrf_token"), "x");
	ck_assert_ptr_null(vs_request_cookie(&h.r, "c"));
	ck_assert_ptr_null(vs_request_cookie(&h.r, "A"));
	h_free(&h);
}
END_TEST

START_TEST(test_cookies_odd)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "/",
		"HTTP_COOKIE",
		"  sp  =  v w  ;novalue; empty=; q=\"; eq=a=b;;=anon; last=z",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_str_eq(vs_request_cookie(&h.r, "sp"), "v w");
	ck_assert_ptr_null(vs_request_cookie(&h.r, "novalue"));
	ck_assert_str_eq(vs_request_cookie(&h.r, "empty"), "");
	/* A lone quote is not a quoted value. */
	ck_assert_str_eq(vs_request_cookie(&h.r, "q"), "\"");
	ck_assert_str_eq(vs_request_cookie(&h.r, "eq"), "a=b");
	ck_assert_ptr_null(vs_request_cookie(&h.r, ""));
	ck_assert_str_eq(vs_request_cookie(&h.r, "last"), "z");
	h_free(&h);
}
END_TEST

START_TEST(test_cookies_empty_header)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET", "REQUEST_URI", "/", "HTTP_COOKIE", "",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_uint_eq(h.r.cookies.n, 0);
	ck_assert_ptr_null(vs_request_cookie(&h.r, "a"));
	h_free(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Forms and decoding                                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_form_parse_ok)
{
	struct vs_kvlist l = { 0 };
	const char *s = "user=J+Doe&pw=p%26ss%3Dw&empty=&flag&u=%D0%AF";

	ck_assert(vs_form_parse(s, strlen(s), &l));
	ck_assert_uint_eq(l.n, 5);
	ck_assert_str_eq(vs_kv_get(&l, "user"), "J Doe");
	ck_assert_str_eq(vs_kv_get(&l, "pw"), "p&ss=w");
	ck_assert_str_eq(vs_kv_get(&l, "empty"), "");
	ck_assert_str_eq(vs_kv_get(&l, "flag"), "");
	ck_assert_str_eq(vs_kv_get(&l, "u"), "\xd0\xaf");
	ck_assert_ptr_null(vs_kv_get(&l, "missing"));
	vs_kvlist_free(&l);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_ptr_null(l.v);
}
END_TEST

START_TEST(test_form_parse_shapes)
{
	struct vs_kvlist l = { 0 };

	ck_assert(vs_form_parse("", 0, &l));
	ck_assert_uint_eq(l.n, 0);
	vs_kvlist_free(&l);

	ck_assert(vs_form_parse("&&a=1&&", 7, &l));
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(vs_kv_get(&l, "a"), "1");
	vs_kvlist_free(&l);

	/* Duplicates: all kept, the first wins on lookup. */
	ck_assert(vs_form_parse("a=1&a=2", 7, &l));
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(vs_kv_get(&l, "a"), "1");
	ck_assert_str_eq(l.v[1].val, "2");
	vs_kvlist_free(&l);

	/* Only the first '=' splits. */
	ck_assert(vs_form_parse("k=a=b", 5, &l));
	ck_assert_str_eq(vs_kv_get(&l, "k"), "a=b");
	vs_kvlist_free(&l);

	/* Empty key. */
	ck_assert(vs_form_parse("=v", 2, &l));
	ck_assert_str_eq(vs_kv_get(&l, ""), "v");
	vs_kvlist_free(&l);

	/* len bounds the input. */
	ck_assert(vs_form_parse("a=1&b=2", 3, &l));
	ck_assert_uint_eq(l.n, 1);
	ck_assert_ptr_null(vs_kv_get(&l, "b"));
	vs_kvlist_free(&l);

	/* Many pairs: the list grows. */
	{
		struct vs_buf b;
		char key[16];
		vs_buf_init(&b);
		for (int i = 0; i < 100; i++)
			vs_buf_printf(&b, "%sk%d=%d", i ? "&" : "", i, i * 3);
		ck_assert(vs_form_parse(b.data, b.len, &l));
		ck_assert_uint_eq(l.n, 100);
		snprintf(key, sizeof(key), "k%d", 99);
		ck_assert_str_eq(vs_kv_get(&l, key), "297");
		vs_kvlist_free(&l);
		vs_buf_free(&b);
	}
}
END_TEST

START_TEST(test_form_parse_rejects)
{
	static const char *const bad[] = {
		"a=1;b=2", ";", "a=%zz", "a=%4", "a=%", "%=1", "a=%00",
		"a%00=1", "a=1&b=%G0",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct vs_kvlist l = { 0 };
		ck_assert_msg(!vs_form_parse(bad[i], strlen(bad[i]), &l),
			      "accepted %s", bad[i]);
		vs_kvlist_free(&l);	/* whatever parsed before is freed */
	}
}
END_TEST

START_TEST(test_url_decode)
{
	char *p;

	p = vs_url_decode("a%2Fb%2fc", 9, false);
	ck_assert_str_eq(p, "a/b/c");
	free(p);
	p = vs_url_decode("a+b", 3, false);
	ck_assert_str_eq(p, "a+b");
	free(p);
	p = vs_url_decode("a+b", 3, true);
	ck_assert_str_eq(p, "a b");
	free(p);
	p = vs_url_decode("%2B", 3, true);
	ck_assert_str_eq(p, "+");
	free(p);
	p = vs_url_decode("%c3%A9", 6, false);
	ck_assert_str_eq(p, "\xc3\xa9");
	free(p);
	p = vs_url_decode("", 0, true);
	ck_assert_str_eq(p, "");
	free(p);
	/* len bounds the input. */
	p = vs_url_decode("abc%41", 3, false);
	ck_assert_str_eq(p, "abc");
	free(p);
	ck_assert_ptr_null(vs_url_decode("%41", 2, false));
	ck_assert_ptr_null(vs_url_decode("%", 1, false));
	ck_assert_ptr_null(vs_url_decode("%4", 2, false));
	ck_assert_ptr_null(vs_url_decode("%g1", 3, false));
	ck_assert_ptr_null(vs_url_decode("%1g", 3, false));
	ck_assert_ptr_null(vs_url_decode("x%00y", 5, false));
	ck_assert_ptr_null(vs_url_decode("x\0y", 3, false));
	ck_assert_ptr_null(vs_url_decode("%%41", 4, false));
}
END_TEST

START_TEST(test_path_clean)
{
	static const char *const cases[][2] = {
		{ "/a//b", "/a/b" },
		{ "/a/./b/", "/a/b/" },
		{ "/a/../../b", "/b" },
		{ "/", "/" },
		{ "/..", "/" },
		{ "/../", "/" },
		{ "/.", "/" },
		{ "/./", "/" },
		{ "//", "/" },
		{ "", "/" },
		{ "/api/v1/health", "/api/v1/health" },
		{ "/static/", "/static/" },
		{ "/a/b/..", "/a" },
		{ "/a/b/../", "/a/" },
		{ "/a/..", "/" },
		{ "/a/b/.", "/a/b" },
		{ "a/b", "/a/b" },
		{ "//a///b//", "/a/b/" },
		{ "/a/.../b", "/a/.../b" },
		{ "/a/..b/.c", "/a/..b/.c" },
		{ "/a/b/c/../../d", "/a/d" },
		{ "/api/v1/blobs/../../../etc/passwd", "/etc/passwd" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *got = vs_path_clean(cases[i][0]);
		ck_assert_ptr_nonnull(got);
		ck_assert_msg(strcmp(got, cases[i][1]) == 0,
			      "clean(%s) = %s, want %s", cases[i][0], got,
			      cases[i][1]);
		free(got);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Client IP and HTTPS (API.md 1.8, D17)                              */
/* ------------------------------------------------------------------ */

START_TEST(test_client_no_trusted_proxies)
{
	static const char *const p[] = {
		"REMOTE_ADDR", "5.6.7.8",
		"HTTP_X_FORWARDED_FOR", "1.1.1.1",
		"HTTP_X_FORWARDED_PROTO", "https",
		NULL,
	};

	client(p, NULL, "5.6.7.8", false);
}
END_TEST

START_TEST(test_client_https_param)
{
	static const char *const on[] = {
		"REMOTE_ADDR", "5.6.7.8", "HTTPS", "on", NULL,
	};
	static const char *const upper[] = {
		"REMOTE_ADDR", "5.6.7.8", "HTTPS", "ON", NULL,
	};
	static const char *const off[] = {
		"REMOTE_ADDR", "5.6.7.8", "HTTPS", "", NULL,
	};

	client(on, NULL, "5.6.7.8", true);
	client(upper, NULL, "5.6.7.8", true);
	client(off, NULL, "5.6.7.8", false);
	/* A trusted peer without X-Forwarded-Proto keeps the TLS flag. */
	client(on, (const char *const[]){ "5.6.7.8", NULL }, "5.6.7.8", true);
}
END_TEST

START_TEST(test_client_untrusted_peer_ignores_headers)
{
	static const char *const p[] = {
		"REMOTE_ADDR", "203.0.113.9",
		"HTTP_X_FORWARDED_FOR", "1.2.3.4",
		"HTTP_X_FORWARDED_PROTO", "https",
		NULL,
	};

	client(p, (const char *const[]){ "127.0.0.1", "10.0.0.0/8", NULL },
	       "203.0.113.9", false);
}
END_TEST

START_TEST(test_client_rightmost_untrusted)
{
	static const char *const p[] = {
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "9.9.9.9, 1.2.3.4",
		NULL,
	};

	client(p, (const char *const[]){ "127.0.0.1", NULL }, "1.2.3.4", false);
}
END_TEST

START_TEST(test_client_skips_trusted_hops)
{
	static const char *const p[] = {
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "1.2.3.4, 127.0.0.1",
		NULL,
	};
	static const char *const spoof[] = {
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "6.6.6.6,1.2.3.4 ,127.0.0.9,10.1.1.1",
		NULL,
	};

	client(p, (const char *const[]){ "127.0.0.0/8", NULL }, "1.2.3.4",
	       false);
	client(spoof, (const char *const[]){ "127.0.0.0/8", "10.0.0.0/8", NULL },
	       "1.2.3.4", false);
}
END_TEST

START_TEST(test_client_all_trusted)
{
	static const char *const p[] = {
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "garbage, 10.0.0.5, 127.0.0.2",
		NULL,
	};

	/* Every valid entry is a proxy: the left-most valid one. */
	client(p, (const char *const[]){ "127.0.0.0/8", "10.0.0.0/8", NULL },
	       "10.0.0.5", false);
}
END_TEST

START_TEST(test_client_garbage_entries)
{
	static const char *const p[] = {
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR",
		"5.5.5.5, not-an-ip, , 300.1.1.1,1.2.3.4:80,[::1], unknown,",
		NULL,
	};
	static const char *const only_garbage[] = {
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "nope, , 999.0.0.1",
		NULL,
	};
	static const char *const empty[] = {
		"REMOTE_ADDR", "127.0.0.1", "HTTP_X_FORWARDED_FOR", "", NULL,
	};
	static const char *const absent[] = { "REMOTE_ADDR", "127.0.0.1", NULL };
	const char *const t[] = { "127.0.0.1", NULL };

	client(p, t, "5.5.5.5", false);
	/* Nothing usable: the peer itself. */
	client(only_garbage, t, "127.0.0.1", false);
	client(empty, t, "127.0.0.1", false);
	client(absent, t, "127.0.0.1", false);
}
END_TEST

START_TEST(test_client_forwarded_proto)
{
	static const char *const https[] = {
		"REMOTE_ADDR", "127.0.0.1", "HTTP_X_FORWARDED_PROTO", " HTTPS ",
		NULL,
	};
	static const char *const http[] = {
		"REMOTE_ADDR", "127.0.0.1", "HTTP_X_FORWARDED_PROTO", "http",
		NULL,
	};
	static const char *const junk[] = {
		"REMOTE_ADDR", "127.0.0.1", "HTTP_X_FORWARDED_PROTO", "httpsx",
		NULL,
	};
	static const char *const list[] = {
		"REMOTE_ADDR", "127.0.0.1", "HTTP_X_FORWARDED_PROTO", "https, http",
		NULL,
	};
	static const char *const untrusted[] = {
		"REMOTE_ADDR", "192.0.2.1", "HTTP_X_FORWARDED_PROTO", " HTTPS ",
		NULL,
	};
	const char *const t[] = { "127.0.0.1", NULL };

	client(https, t, "127.0.0.1", true);
	client(http, t, "127.0.0.1", false);
	client(junk, t, "127.0.0.1", false);
	client(list, t, "127.0.0.1", false);
	client(untrusted, t, "192.0.2.1", false);
	client(https, NULL, "127.0.0.1", false);
}
END_TEST

START_TEST(test_client_ipv6)
{
	static const char *const loop[] = {
		"REMOTE_ADDR", "::1",
		"HTTP_X_FORWARDED_FOR", "2001:DB8::5",
		"HTTP_X_FORWARDED_PROTO", "https",
		NULL,
	};
	static const char *const net[] = {
		"REMOTE_ADDR", "2001:db8:0:1::7",
		"HTTP_X_FORWARDED_FOR", "198.51.100.7, 2001:db8::9",
		NULL,
	};
	static const char *const outside[] = {
		"REMOTE_ADDR", "2001:db9::1",
		"HTTP_X_FORWARDED_FOR", "198.51.100.7",
		NULL,
	};

	client(loop, (const char *const[]){ "::1", NULL }, "2001:db8::5", true);
	/* The IPv4 rule does not cover an IPv6 peer. */
	client(loop, (const char *const[]){ "127.0.0.1", NULL }, "::1", false);
	client(net, (const char *const[]){ "2001:db8::/32", NULL },
	       "198.51.100.7", false);
	client(outside, (const char *const[]){ "2001:db8::/32", NULL },
	       "2001:db9::1", false);
}
END_TEST

START_TEST(test_client_ipv6_canonical)
{
	static const char *const peer[] = {
		"REMOTE_ADDR", "2001:DB8:0:0:0:0:0:1", NULL,
	};
	static const char *const v4[] = { "REMOTE_ADDR", "192.0.2.10", NULL };
	static const char *const nonip[] = { "REMOTE_ADDR", "unix:", NULL };

	client(peer, NULL, "2001:db8::1", false);
	client(v4, NULL, "192.0.2.10", false);
	/* Not an address: kept as reported. */
	client(nonip, NULL, "unix:", false);
}
END_TEST

/* Regression (found in review): IPv4-mapped IPv6 addresses (what a
 * dual-stack socket reports for IPv4 peers) are neither matched against
 * IPv4 trusted proxies nor shown in IPv4 form, unlike the reference. */
START_TEST(test_client_ipv4_mapped)
{
	static const char *const mapped_proxy[] = {
		"REMOTE_ADDR", "::ffff:127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "1.2.3.4",
		NULL,
	};
	static const char *const mapped_client[] = {
		"REMOTE_ADDR", "::ffff:8.8.8.8", NULL,
	};

	client(mapped_proxy, (const char *const[]){ "127.0.0.0/8", NULL },
	       "1.2.3.4", false);
	client(mapped_client, NULL, "8.8.8.8", false);
}
END_TEST

/* Regression (found in review): one malformed query pair hides
 * every pair after it; the reference drops only the bad pair. */
START_TEST(test_init_bad_query_pair_keeps_rest)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "GET",
		"REQUEST_URI", "/q?a=%zz&b=1&c=1;d&e=2",
		"QUERY_STRING", "a=%zz&b=1&c=1;d&e=2",
		NULL,
	};
	struct harness h;

	h_init(&h, p, NULL, 0);
	ck_assert_ptr_null(vs_request_query(&h.r, "a"));
	ck_assert_ptr_null(vs_request_query(&h.r, "c"));
	ck_assert_str_eq(vs_request_query(&h.r, "b"), "1");
	ck_assert_str_eq(vs_request_query(&h.r, "e"), "2");
	h_free(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* CIDR                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_cidr_parse_valid)
{
	struct vs_cidr c;
	unsigned char v4[4] = { 10, 0, 0, 0 };

	ck_assert(vs_cidr_parse("10.0.0.0/8", &c));
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_int_eq(c.prefix, 8);
	ck_assert_mem_eq(c.addr, v4, 4);
	ck_assert(vs_cidr_parse("1.2.3.4", &c));
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_int_eq(c.prefix, 32);
	ck_assert(vs_cidr_parse("0.0.0.0/0", &c));
	ck_assert_int_eq(c.prefix, 0);
	ck_assert(vs_cidr_parse("10.0.0.0/32", &c));
	ck_assert_int_eq(c.prefix, 32);
	ck_assert(vs_cidr_parse("::/0", &c));
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_int_eq(c.prefix, 0);
	ck_assert(vs_cidr_parse("::1", &c));
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_int_eq(c.prefix, 128);
	ck_assert(vs_cidr_parse("2001:db8::/32", &c));
	ck_assert_int_eq(c.prefix, 32);
	ck_assert(vs_cidr_parse("2001:db8::/128", &c));
	ck_assert_int_eq(c.prefix, 128);
}
END_TEST

START_TEST(test_cidr_parse_invalid)
{
	static const char *const bad[] = {
		"10.0.0.0/33", "abc", "1.2.3.4/", "", "/8", "1.2.3.4/-1",
		"1.2.3.4/+8", "1.2.3.4/8x", "1.2.3.4/ 8", "1.2.3.4//8",
		"1.2.3", "256.0.0.0/8", "::1/129", "2001:db8::/", " 1.2.3.4",
		"1.2.3.4 ", "1.2.3.4/99999999999999999999",
		"1111:2222:3333:4444:5555:6666:7777:8888:9999:0000:1111:2222/8",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct vs_cidr c;
		ck_assert_msg(!vs_cidr_parse(bad[i], &c), "accepted \"%s\"",
			      bad[i]);
	}
}
END_TEST

START_TEST(test_cidr_contains)
{
	struct vs_cidr c;

	ck_assert(vs_cidr_parse("10.0.0.0/8", &c));
	ck_assert(vs_cidr_contains(&c, "10.0.0.0"));
	ck_assert(vs_cidr_contains(&c, "10.255.1.1"));
	ck_assert(!vs_cidr_contains(&c, "11.0.0.1"));
	ck_assert(!vs_cidr_contains(&c, "9.255.255.255"));
	ck_assert(!vs_cidr_contains(&c, "::1"));
	ck_assert(!vs_cidr_contains(&c, "junk"));
	ck_assert(!vs_cidr_contains(&c, ""));

	ck_assert(vs_cidr_parse("192.168.1.0/23", &c));
	ck_assert(vs_cidr_contains(&c, "192.168.0.5"));
	ck_assert(vs_cidr_contains(&c, "192.168.1.200"));
	ck_assert(!vs_cidr_contains(&c, "192.168.2.1"));

	ck_assert(vs_cidr_parse("127.0.0.1", &c));
	ck_assert(vs_cidr_contains(&c, "127.0.0.1"));
	ck_assert(!vs_cidr_contains(&c, "127.0.0.2"));

	ck_assert(vs_cidr_parse("0.0.0.0/0", &c));
	ck_assert(vs_cidr_contains(&c, "8.8.8.8"));
	ck_assert(!vs_cidr_contains(&c, "::"));

	ck_assert(vs_cidr_parse("2001:db8::/32", &c));
	ck_assert(vs_cidr_contains(&c, "2001:db8:ffff::1"));
	ck_assert(vs_cidr_contains(&c, "2001:DB8::"));
	ck_assert(!vs_cidr_contains(&c, "2001:db9::1"));
	ck_assert(!vs_cidr_contains(&c, "10.0.0.1"));

	ck_assert(vs_cidr_parse("::/0", &c));
	ck_assert(vs_cidr_contains(&c, "::1"));
	ck_assert(vs_cidr_contains(&c, "fe80::1"));

	ck_assert(vs_cidr_parse("fe80::/10", &c));
	ck_assert(vs_cidr_contains(&c, "febf::1"));
	ck_assert(!vs_cidr_contains(&c, "fec0::1"));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Body                                                               */
/* ------------------------------------------------------------------ */

static const char *const post_params[] = {
	"REQUEST_METHOD", "POST", "REQUEST_URI", "/api/v1/sync/push",
	"CONTENT_TYPE", "application/json", NULL,
};

static char *
pattern(size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)('A' + (i * 7) % 53);
	return p;
}

START_TEST(test_body_under_cap)
{
	char *data = pattern(100);
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 100);
	ck_assert_int_eq(vs_request_read_body(&h.r, 1000), VS_BODY_OK);
	ck_assert(h.r.body_read);
	ck_assert(h.r.body_eof);
	ck_assert_uint_eq(h.r.body_len, 100);
	ck_assert_ptr_nonnull(h.r.body);
	ck_assert_mem_eq(h.r.body, data, 100);
	ck_assert_int_eq(h.r.body[100], '\0');
	ck_assert_uint_eq(h.f.pos, 100);
	ck_assert_uint_ge(h.f.reads, 100 / 7 + 1);
	/* A second call returns the same body without reading. */
	{
		unsigned reads = h.f.reads;
		ck_assert_int_eq(vs_request_read_body(&h.r, 1000), VS_BODY_OK);
		ck_assert_uint_eq(h.f.reads, reads);
		ck_assert_uint_eq(h.r.body_len, 100);
	}
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_body_exactly_cap)
{
	char *data = pattern(100);
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 100);
	ck_assert_int_eq(vs_request_read_body(&h.r, 100), VS_BODY_OK);
	ck_assert_uint_eq(h.r.body_len, 100);
	ck_assert_mem_eq(h.r.body, data, 100);
	ck_assert(h.r.body_eof);
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_body_over_cap)
{
	char *data = pattern(101);
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 101);
	ck_assert_int_eq(vs_request_read_body(&h.r, 100), VS_BODY_TOO_LARGE);
	ck_assert_ptr_null(h.r.body);
	ck_assert(!h.r.body_eof);
	/* Asking again keeps the answer. */
	ck_assert_int_eq(vs_request_read_body(&h.r, 100), VS_BODY_TOO_LARGE);
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_body_far_over_cap_stops_early)
{
	const size_t n = 64 * 1024;
	char *data = pattern(n);
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, n);
	h.f.chunk = 1000;
	ck_assert_int_eq(vs_request_read_body(&h.r, 10), VS_BODY_TOO_LARGE);
	/* It stopped buffering as soon as the cap was passed. */
	ck_assert_uint_lt(h.f.pos, 2000);
	/* Drain consumes the rest. */
	vs_request_drain(&h.r, SIZE_MAX);
	ck_assert_uint_eq(h.f.pos, n);
	ck_assert(h.r.body_eof);
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_body_empty)
{
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, "", 0);
	ck_assert_int_eq(vs_request_read_body(&h.r, 100), VS_BODY_OK);
	ck_assert_ptr_nonnull(h.r.body);
	ck_assert_uint_eq(h.r.body_len, 0);
	ck_assert_str_eq(h.r.body, "");
	ck_assert(h.r.body_eof);
	h_free(&h);

	/* Cap 0 with an empty body is fine too. */
	h_init(&h, post_params, NULL, 0);
	h_body(&h, "", 0);
	ck_assert_int_eq(vs_request_read_body(&h.r, 0), VS_BODY_OK);
	ck_assert_ptr_nonnull(h.r.body);
	h_free(&h);
}
END_TEST

START_TEST(test_body_large)
{
	const size_t n = 300 * 1024 + 3;
	char *data = pattern(n);
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, n);
	h.f.chunk = 4093;
	ck_assert_int_eq(vs_request_read_body(&h.r, n), VS_BODY_OK);
	ck_assert_uint_eq(h.r.body_len, n);
	ck_assert_mem_eq(h.r.body, data, n);
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_body_reader_error)
{
	char *data = pattern(100);
	struct harness h;

	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 100);
	h.f.fail = true;
	h.f.fail_at = 14;
	ck_assert_int_eq(vs_request_read_body(&h.r, 1000), VS_BODY_IO);
	ck_assert_ptr_null(h.r.body);
	ck_assert(!h.r.body_eof);
	h_free(&h);

	/* Failing on the very first read. */
	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 100);
	h.f.fail = true;
	h.f.fail_at = 0;
	ck_assert_int_eq(vs_request_read_body(&h.r, 1000), VS_BODY_IO);
	ck_assert_ptr_null(h.r.body);
	/* Draining after an error does not loop forever. */
	vs_request_drain(&h.r, SIZE_MAX);
	ck_assert(h.r.body_eof);
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_drain_rest)
{
	char *data = pattern(500);
	struct harness h;

	/* Drain without reading first: everything is consumed. */
	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 500);
	vs_request_drain(&h.r, SIZE_MAX);
	ck_assert_uint_eq(h.f.pos, 500);
	ck_assert(h.r.body_eof);
	h_free(&h);

	/* After a successful read, drain has nothing left to do. */
	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 500);
	ck_assert_int_eq(vs_request_read_body(&h.r, 1000), VS_BODY_OK);
	{
		unsigned reads = h.f.reads;
		vs_request_drain(&h.r, SIZE_MAX);
		ck_assert_uint_eq(h.f.reads, reads);
	}
	h_free(&h);

	/* The limit bounds how much is drained. */
	h_init(&h, post_params, NULL, 0);
	h_body(&h, data, 500);
	vs_request_drain(&h.r, 100);
	ck_assert_uint_ge(h.f.pos, 100);
	ck_assert_uint_lt(h.f.pos, 500);
	h_free(&h);
	free(data);
}
END_TEST

START_TEST(test_request_free_everything)
{
	static const char *const p[] = {
		"REQUEST_METHOD", "POST",
		"REQUEST_URI", "/a%20b?x=1&y=2&z",
		"QUERY_STRING", "x=1&y=2&z",
		"HTTP_COOKIE", "s=1; t=2; u=\"3\"",
		"REMOTE_ADDR", "127.0.0.1",
		"HTTP_X_FORWARDED_FOR", "1.2.3.4",
		NULL,
	};
	struct vs_cidr t;
	char *data = pattern(64);
	struct harness h;

	ck_assert(vs_cidr_parse("127.0.0.1", &t));
	h_init(&h, p, &t, 1);
	h_body(&h, data, 64);
	ck_assert_int_eq(vs_request_read_body(&h.r, 64), VS_BODY_OK);
	ck_assert_uint_eq(h.r.params.n, 3);
	ck_assert_uint_eq(h.r.cookies.n, 3);
	ck_assert_str_eq(h.r.client_ip, "1.2.3.4");
	vs_request_free(&h.r);
	ck_assert_ptr_null(h.r.path);
	ck_assert_ptr_null(h.r.raw_path);
	ck_assert_ptr_null(h.r.body);
	ck_assert_ptr_null(h.r.params.v);
	ck_assert_ptr_null(h.r.cookies.v);
	/* Freeing a freed (zeroed) request is harmless. */
	vs_request_free(&h.r);
	free(data);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
request_suite(void)
{
	Suite *s = suite_create("request");
	TCase *tc;

	tc = tcase_create("init");
	tcase_add_test(tc, test_init_with_query);
	tcase_add_test(tc, test_init_without_query);
	tcase_add_test(tc, test_init_empty_query_mark);
	tcase_add_test(tc, test_init_percent_decoded);
	tcase_add_test(tc, test_init_document_uri_fallback);
	tcase_add_test(tc, test_init_nothing_at_all);
	tcase_add_test(tc, test_init_relative_uri);
	tcase_add_test(tc, test_init_query_params);
	tcase_add_test(tc, test_init_bad_query_param);
	tcase_add_test(tc, test_init_malformed_path_escape);
	tcase_add_test(tc, test_init_headers);
	tcase_add_test(tc, test_init_bad_query_pair_keeps_rest);
	suite_add_tcase(s, tc);

	tc = tcase_create("cookies");
	tcase_add_test(tc, test_cookies);
	tcase_add_test(tc, test_cookies_odd);
	tcase_add_test(tc, test_cookies_empty_header);
	suite_add_tcase(s, tc);

	tc = tcase_create("decoding");
	tcase_add_test(tc, test_form_parse_ok);
	tcase_add_test(tc, test_form_parse_shapes);
	tcase_add_test(tc, test_form_parse_rejects);
	tcase_add_test(tc, test_url_decode);
	tcase_add_test(tc, test_path_clean);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	tcase_add_test(tc, test_client_no_trusted_proxies);
	tcase_add_test(tc, test_client_https_param);
	tcase_add_test(tc, test_client_untrusted_peer_ignores_headers);
	tcase_add_test(tc, test_client_rightmost_untrusted);
	tcase_add_test(tc, test_client_skips_trusted_hops);
	tcase_add_test(tc, test_client_all_trusted);
	tcase_add_test(tc, test_client_garbage_entries);
	tcase_add_test(tc, test_client_forwarded_proto);
	tcase_add_test(tc, test_client_ipv6);
	tcase_add_test(tc, test_client_ipv6_canonical);
	tcase_add_test(tc, test_client_ipv4_mapped);
	suite_add_tcase(s, tc);

	tc = tcase_create("cidr");
	tcase_add_test(tc, test_cidr_parse_valid);
	tcase_add_test(tc, test_cidr_parse_invalid);
	tcase_add_test(tc, test_cidr_contains);
	suite_add_tcase(s, tc);

	tc = tcase_create("body");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_body_under_cap);
	tcase_add_test(tc, test_body_exactly_cap);
	tcase_add_test(tc, test_body_over_cap);
	tcase_add_test(tc, test_body_far_over_cap_stops_early);
	tcase_add_test(tc, test_body_empty);
	tcase_add_test(tc, test_body_large);
	tcase_add_test(tc, test_body_reader_error);
	tcase_add_test(tc, test_drain_rest);
	tcase_add_test(tc, test_request_free_everything);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(request_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
