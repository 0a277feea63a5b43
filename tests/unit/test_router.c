/*
 * test_router.c - unit tests for src/router.c and src/response.c: method
 * lists, the route table, 404 JSON/HTML split, 405 with Allow, 301 for
 * non-canonical paths and subtree roots (API.md 1.5, 1.6), /livez, and
 * the response writer: serialisation with the security headers of every
 * response (API.md 1.7), header injection refusal, and the error envelope
 * with its default codes (API.md 1.3).
 *
 * Only routes that need no database are dispatched: the app is a zeroed
 * struct vs_app.
 */
#include "router.h"
#include "json.h"
#include "request.h"
#include "response.h"
#include "util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CSP_VALUE "default-src 'self'; base-uri 'self'; form-action 'self'; " \
	"frame-ancestors 'none'; img-src 'self' data:; script-src 'self'; " \
	"style-src 'self'"

/* ------------------------------------------------------------------ */
/* Fake request source (parameters only; bodies are not read here)    */
/* ------------------------------------------------------------------ */

struct fake {
	const char *const *params;  /* name, value, ..., NULL */
};

static const char *
fake_param(void *ctx, const char *name)
{
	const struct fake *f = ctx;

	for (size_t i = 0; f->params[i] != NULL; i += 2)
		if (strcmp(f->params[i], name) == 0)
			return f->params[i + 1];
	return NULL;
}

static ssize_t
fake_read(void *ctx, char *buf, size_t n)
{
	return 0;
}

/* Routes one request; the caller frees res with vs_res_free. */
static void
route(const char *method, const char *uri, const char *query,
      struct vs_response *res)
{
	const char *params[] = {
		"REQUEST_METHOD", method,
		"REQUEST_URI", uri,
		"QUERY_STRING", query ? query : "",
		"REMOTE_ADDR", "192.0.2.1",
		NULL,
	};
	struct fake f = { params };
	struct vs_request_source src = { fake_param, fake_read, &f };
	struct vs_request req;
	struct vs_app app;
	struct vs_ctx c;

	memset(&app, 0, sizeof(app));
	ck_assert(vs_request_init(&req, &src, NULL, 0));
	vs_res_init(res);
	c.app = &app;
	c.req = &req;
	c.res = res;
	vs_route(&c);
	vs_request_free(&req);
}

/* Parses res's JSON body (must be an object). */
static cJSON *
body_json(const struct vs_response *res)
{
	cJSON *v = NULL;

	ck_assert_ptr_nonnull(res->body.data);
	ck_assert_int_eq(vs_json_parse(res->body.data, res->body.len, &v),
			 VS_JSON_OK);
	ck_assert(cJSON_IsObject(v));
	return v;
}

static const char *
json_field(const cJSON *v, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, name);

	ck_assert_msg(f != NULL && cJSON_IsString(f), "field %s missing", name);
	return f->valuestring;
}

/* Checks an error envelope: exactly {"error": err, "code": code}. */
static void
check_error_body(const struct vs_response *res, const char *err,
		 const char *code)
{
	cJSON *v = body_json(res);

	ck_assert_str_eq(res->content_type, "application/json");
	if (err != NULL)
		ck_assert_str_eq(json_field(v, "error"), err);
	else
		(void)json_field(v, "error");
	ck_assert_str_eq(json_field(v, "code"), code);
	ck_assert_int_eq(cJSON_GetArraySize(v), 2);
	ck_assert_uint_lt(res->body.len, 500);
	cJSON_Delete(v);
}

static bool
has_header_line(const struct vs_response *res, const char *line)
{
	const char *h = res->headers.data ? res->headers.data : "";
	const char *p = h;
	size_t n = strlen(line);

	/* Whole lines only. */
	while ((p = strstr(p, line)) != NULL) {
		if ((p == h || p[-1] == '\n') && strncmp(p + n, "\r\n", 2) == 0)
			return true;
		p++;
	}
	return false;
}

static void
check_redirect(const char *method, const char *uri, const char *query,
	       const char *location)
{
	struct vs_response res;
	char line[256];

	route(method, uri, query, &res);
	ck_assert_msg(res.status == 301, "%s %s -> %d, want 301", method, uri,
		      res.status);
	snprintf(line, sizeof(line), "Location: %s", location);
	ck_assert_msg(has_header_line(&res, line), "%s %s: headers %s, want %s",
		      method, uri, res.headers.data ? res.headers.data : "",
		      line);
	ck_assert_uint_eq(res.body.len, 0);
	vs_res_free(&res);
}

static size_t
count_substr(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* ------------------------------------------------------------------ */
/* Method lists and the route table                                   */
/* ------------------------------------------------------------------ */

START_TEST(test_method_allowed)
{
	ck_assert(vs_method_allowed("GET, POST", "GET"));
	ck_assert(vs_method_allowed("GET, POST", "POST"));
	ck_assert(!vs_method_allowed("GET, POST", "PUT"));
	ck_assert(!vs_method_allowed("GET, POST", "HEAD"));
	ck_assert(!vs_method_allowed("GET, POST", ""));
	ck_assert(!vs_method_allowed("GET, POST", "POS"));
	ck_assert(!vs_method_allowed("GET, POST", "GET, POST"));
	ck_assert(!vs_method_allowed("GET, POST", "get"));
	ck_assert(vs_method_allowed("GET", "GET"));
	ck_assert(!vs_method_allowed("GET", "GE"));
	ck_assert(!vs_method_allowed("GET", "GETS"));
	ck_assert(!vs_method_allowed("GET", "HEAD"));
	ck_assert(vs_method_allowed("POST, DELETE", "DELETE"));
	ck_assert(vs_method_allowed("POST,DELETE", "DELETE"));
	ck_assert(!vs_method_allowed("", "GET"));
	ck_assert(!vs_method_allowed("", ""));
}
END_TEST

START_TEST(test_route_find)
{
	const struct vs_route *r;

	r = vs_route_find("/api/v1/health");
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->path, "/api/v1/health");
	ck_assert_str_eq(r->allow, "GET");
	ck_assert_ptr_nonnull(r->fn);
	r = vs_route_find("/readyz");
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->path, "/readyz");
	ck_assert_str_eq(r->allow, "GET");
	r = vs_route_find("/livez");
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->path, "/livez");
	ck_assert_str_eq(r->allow, "GET");
	/* The health endpoints share a handler; livez has its own. */
	ck_assert(vs_route_find("/readyz")->fn ==
		  vs_route_find("/api/v1/health")->fn);
	ck_assert(vs_route_find("/livez")->fn !=
		  vs_route_find("/readyz")->fn);

	ck_assert_ptr_null(vs_route_find("/nope"));
	ck_assert_ptr_null(vs_route_find("/api/nope"));
	ck_assert_ptr_null(vs_route_find("/api/v1/health/"));
	ck_assert_ptr_null(vs_route_find("/api/v1/healthz"));
	ck_assert_ptr_null(vs_route_find("/api/v1/healt"));
	ck_assert_ptr_null(vs_route_find("/LIVEZ"));
	ck_assert_ptr_null(vs_route_find("/livez/"));
	ck_assert_ptr_nonnull(vs_route_find("/"));	/* the home page */
	ck_assert_ptr_null(vs_route_find(""));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Dispatch                                                           */
/* ------------------------------------------------------------------ */

/* The worker asks this before parsing a request: only a push, on its
 * canonical path, may wait behind parked answers (worker.c). */
START_TEST(test_route_groups_commits)
{
	ck_assert(vs_route_groups_commits("POST", "/api/v1/sync/push"));
	ck_assert(vs_route_groups_commits("POST", "/api/v1/sync/push?x=1"));
	ck_assert(!vs_route_groups_commits("GET", "/api/v1/sync/push"));
	ck_assert(!vs_route_groups_commits("POST", "/api/v1/sync/pull"));
	ck_assert(!vs_route_groups_commits("POST", "/api/v1/sync/push/"));
	ck_assert(!vs_route_groups_commits("POST", "/api/v1/sync//push"));
	ck_assert(!vs_route_groups_commits("POST", "/api/v1/blobs/"));
	ck_assert(!vs_route_groups_commits("POST", "/api/client/pair"));
	ck_assert(!vs_route_groups_commits(NULL, "/api/v1/sync/push"));
	ck_assert(!vs_route_groups_commits("POST", NULL));
}
END_TEST

START_TEST(test_route_api_404_json)
{
	struct vs_response res;

	route("GET", "/api/nope", NULL, &res);
	ck_assert_int_eq(res.status, 404);
	check_error_body(&res, "not found", "not_found");
	ck_assert_ptr_null(strstr(res.body.data, "<"));
	vs_res_free(&res);

	/* Any method, deep paths: still JSON under /api/. */
	route("DELETE", "/api/v1/nothing/here", NULL, &res);
	ck_assert_int_eq(res.status, 404);
	check_error_body(&res, "not found", "not_found");
	vs_res_free(&res);
}
END_TEST

START_TEST(test_route_html_404)
{
	struct vs_response res;

	route("GET", "/nope", NULL, &res);
	ck_assert_int_eq(res.status, 404);
	ck_assert_str_eq(res.content_type, "text/html; charset=utf-8");
	ck_assert_ptr_nonnull(res.body.data);
	ck_assert_ptr_nonnull(strstr(res.body.data, "<html"));
	ck_assert_ptr_null(strstr(res.body.data, "<script>"));	/* inline */
	ck_assert_ptr_null(strstr(res.body.data, "style="));
	vs_res_free(&res);

	/* "/admin/" (with slash) is an unmatched path; so is "/api". */
	route("GET", "/admin/", NULL, &res);
	ck_assert_int_eq(res.status, 404);
	ck_assert_str_eq(res.content_type, "text/html; charset=utf-8");
	vs_res_free(&res);
	route("GET", "/api", NULL, &res);
	ck_assert_int_eq(res.status, 404);
	ck_assert_str_eq(res.content_type, "text/html; charset=utf-8");
	vs_res_free(&res);
}
END_TEST

START_TEST(test_route_405)
{
	struct vs_response res;

	route("POST", "/api/v1/health", NULL, &res);
	ck_assert_int_eq(res.status, 405);
	ck_assert(has_header_line(&res, "Allow: GET"));
	check_error_body(&res, "method not allowed", "method_not_allowed");
	vs_res_free(&res);

	/* HEAD is not implied by GET (API.md 1.5). */
	route("HEAD", "/livez", NULL, &res);
	ck_assert_int_eq(res.status, 405);
	ck_assert(has_header_line(&res, "Allow: GET"));
	check_error_body(&res, "method not allowed", "method_not_allowed");
	vs_res_free(&res);

	route("", "/readyz", NULL, &res);
	ck_assert_int_eq(res.status, 405);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_route_405_client_routes)
{
	static const char *const legacy[] = {
		"/api/client/pair", "/api/auth/test",
		"/api/client/revoke-current", "/api/client/revoke-device",
		"/api/v1/device/register",
	};
	static const char *const sync[] = {
		"/api/v1/sync/push", "/api/v1/sync/pull",
	};
	struct vs_response res;

	/* API.md 1.5: the legacy client routes keep "POST required" and
	 * send Allow: POST as every 405 must (D42). The handlers are not
	 * reached, so no database is needed. */
	for (size_t i = 0; i < sizeof(legacy) / sizeof(*legacy); i++) {
		route("GET", legacy[i], NULL, &res);
		ck_assert_msg(res.status == 405, "GET %s -> %d", legacy[i],
			      res.status);
		ck_assert(has_header_line(&res, "Allow: POST"));
		check_error_body(&res, "POST required", "method_not_allowed");
		vs_res_free(&res);
	}
	/* API.md 3.7: push and pull use the generic 405. */
	for (size_t i = 0; i < sizeof(sync) / sizeof(*sync); i++) {
		route("PUT", sync[i], NULL, &res);
		ck_assert_msg(res.status == 405, "PUT %s -> %d", sync[i],
			      res.status);
		ck_assert(has_header_line(&res, "Allow: POST"));
		check_error_body(&res, "method not allowed",
				 "method_not_allowed");
		vs_res_free(&res);
	}
}
END_TEST

START_TEST(test_route_noncanonical_redirect)
{
	check_redirect("GET", "/a//b", NULL, "/a/b");
	check_redirect("GET", "/a//b?x=1", "x=1", "/a/b?x=1");
	check_redirect("GET", "/a/./b/", NULL, "/a/b/");
	check_redirect("GET", "/a/../../b", NULL, "/b");
	check_redirect("GET", "/x/..", NULL, "/");
	check_redirect("GET", "//livez", NULL, "/livez");
	check_redirect("GET", "/api/v1/./health?a=b&c", "a=b&c",
		       "/api/v1/health?a=b&c");
	/* Redirected before the method is looked at. */
	check_redirect("POST", "/a//b", NULL, "/a/b");
	check_redirect("DELETE", "/api//nope", NULL, "/api/nope");
}
END_TEST

START_TEST(test_route_subtree_root_redirect)
{
	check_redirect("GET", "/api/v1/blobs", NULL, "/api/v1/blobs/");
	check_redirect("GET", "/api/v1/blobs?h=1", "h=1", "/api/v1/blobs/?h=1");
	check_redirect("GET", "/static", NULL, "/static/");
	check_redirect("GET", "/admin/vault", NULL, "/admin/vault/");
	check_redirect("POST", "/static", NULL, "/static/");
}
END_TEST

/* Regression (found in review): dot segments written as %2e reach
 * route matching undecoded-clean but decoded-dirty, so a subtree handler
 * would see "/../" in its path. The reference cleans the decoded path
 * and redirects. */
START_TEST(test_route_encoded_dot_segments)
{
	check_redirect("GET", "/api/%2e%2e/livez", NULL, "/livez");
	check_redirect("GET", "/api/v1/%2e%2e/livez", NULL, "/api/livez");
	check_redirect("GET", "/static/%2E%2E/x", NULL, "/x");
}
END_TEST

START_TEST(test_route_livez)
{
	struct vs_response res;
	cJSON *v;
	time_t t = 0, before = time(NULL);

	route("GET", "/livez", NULL, &res);
	ck_assert_int_eq(res.status, 200);
	ck_assert_str_eq(res.content_type, "application/json");
	v = body_json(&res);
	ck_assert_str_eq(json_field(v, "status"), "ok");
	ck_assert(vs_parse_ts(json_field(v, "server_time"), &t));
	ck_assert_uint_eq(strlen(json_field(v, "server_time")), VS_TS_LEN - 1);
	ck_assert(t >= before - 1 && t <= time(NULL) + 1);
	ck_assert_int_eq(cJSON_GetArraySize(v), 2);
	cJSON_Delete(v);
	vs_res_free(&res);

	/* A percent-encoded path routes by its decoded form. */
	route("GET", "/%6civez", NULL, &res);
	ck_assert_int_eq(res.status, 200);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_route_serialized_redirect)
{
	struct vs_response res;
	struct vs_buf out;

	route("GET", "/static", NULL, &res);
	vs_buf_init(&out);
	ck_assert(vs_res_serialize(&res, &out));
	ck_assert_int_eq(strncmp(out.data, "Status: 301 Moved Permanently\r\n",
				 31), 0);
	ck_assert_ptr_nonnull(strstr(out.data, "\r\nLocation: /static/\r\n"));
	ck_assert_ptr_nonnull(strstr(out.data, "\r\nX-Frame-Options: DENY\r\n"));
	ck_assert_ptr_null(strstr(out.data, "Content-Type:"));
	ck_assert_ptr_nonnull(strstr(out.data, "\r\nContent-Length: 0\r\n"));
	ck_assert_int_eq(strcmp(out.data + out.len - 4, "\r\n\r\n"), 0);
	vs_buf_free(&out);
	vs_res_free(&res);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Response writer                                                    */
/* ------------------------------------------------------------------ */

START_TEST(test_serialize_404)
{
	struct vs_response res;
	struct vs_buf out;
	const char *sep, *body;
	char want[64];
	size_t hlen;
	char *head;

	vs_res_init(&res);
	vs_res_not_found(&res, "/api/x");
	ck_assert(vs_res_header(&res, "X-Extra", "1"));
	vs_buf_init(&out);
	ck_assert(vs_res_serialize(&res, &out));
	ck_assert_uint_eq(strlen(out.data), out.len);
	ck_assert_int_eq(strncmp(out.data, "Status: 404 Not Found\r\n", 23), 0);

	sep = strstr(out.data, "\r\n\r\n");
	ck_assert_ptr_nonnull(sep);
	body = sep + 4;
	ck_assert_uint_eq(out.len - (size_t)(body - out.data), res.body.len);
	ck_assert_mem_eq(body, res.body.data, res.body.len);

	/* The header block, each line ending in CRLF. */
	hlen = (size_t)(sep - out.data) + 2;
	head = strndup(out.data, hlen);
	ck_assert_ptr_nonnull(head);
	ck_assert_uint_eq(count_substr(head,
		"\r\nContent-Security-Policy: " CSP_VALUE "\r\n"), 1);
	ck_assert_uint_eq(count_substr(head,
		"\r\nX-Content-Type-Options: nosniff\r\n"), 1);
	ck_assert_uint_eq(count_substr(head,
		"\r\nReferrer-Policy: same-origin\r\n"), 1);
	ck_assert_uint_eq(count_substr(head, "\r\nX-Frame-Options: DENY\r\n"),
			  1);
	ck_assert_uint_eq(count_substr(head, "Content-Security-Policy:"), 1);
	ck_assert_uint_eq(count_substr(head,
		"\r\nContent-Type: application/json\r\n"), 1);
	snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n",
		 res.body.len);
	ck_assert_uint_eq(count_substr(head, want), 1);
	ck_assert_uint_eq(count_substr(head, "Content-Length:"), 1);
	ck_assert_uint_eq(count_substr(head, "\r\nX-Extra: 1\r\n"), 1);
	/* No bare LF anywhere in the header block. */
	for (size_t i = 0; i < hlen; i++)
		if (head[i] == '\n')
			ck_assert_int_eq(head[i - 1], '\r');
	free(head);
	vs_buf_free(&out);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_serialize_html_and_empty)
{
	struct vs_response res;
	struct vs_buf out;

	vs_res_init(&res);
	vs_res_html(&res, 200, "<p>hi</p>");
	vs_buf_init(&out);
	ck_assert(vs_res_serialize(&res, &out));
	ck_assert_int_eq(strncmp(out.data, "Status: 200 OK\r\n", 16), 0);
	ck_assert_ptr_nonnull(strstr(out.data,
		"\r\nContent-Type: text/html; charset=utf-8\r\n"));
	ck_assert_ptr_nonnull(strstr(out.data, "\r\nContent-Length: 9\r\n"));
	ck_assert_str_eq(out.data + out.len - 13, "\r\n\r\n<p>hi</p>");
	vs_buf_free(&out);

	/* A fresh response: 200, no type, empty body, still the headers. */
	vs_res_reset(&res);
	vs_buf_init(&out);
	ck_assert(vs_res_serialize(&res, &out));
	ck_assert_int_eq(strncmp(out.data, "Status: 200 OK\r\n", 16), 0);
	ck_assert_ptr_null(strstr(out.data, "Content-Type:"));
	ck_assert_ptr_nonnull(strstr(out.data, "\r\nContent-Length: 0\r\n"));
	ck_assert_ptr_nonnull(strstr(out.data,
		"\r\nReferrer-Policy: same-origin\r\n"));
	ck_assert_str_eq(out.data + out.len - 4, "\r\n\r\n");
	vs_buf_free(&out);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_serialize_appends)
{
	struct vs_response res;
	struct vs_buf out;

	vs_res_init(&res);
	vs_res_error(&res, 400, NULL, "bad");
	vs_buf_init(&out);
	ck_assert(vs_buf_puts(&out, "PREFIX"));
	ck_assert(vs_res_serialize(&res, &out));
	ck_assert_int_eq(strncmp(out.data, "PREFIXStatus: 400 Bad Request\r\n",
				 31), 0);
	vs_buf_free(&out);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_header_refuses_crlf)
{
	struct vs_response res;

	vs_res_init(&res);
	ck_assert(vs_res_header(&res, "X-Ok", "value"));
	ck_assert(!vs_res_header(&res, "X-Bad", "a\r\nSet-Cookie: x=1"));
	ck_assert(!vs_res_header(&res, "X-Bad", "a\nb"));
	ck_assert(!vs_res_header(&res, "X-Bad", "a\rb"));
	ck_assert(!vs_res_header(&res, "X-Bad\r\nX-Evil", "v"));
	ck_assert(!vs_res_header(&res, "X-Bad\n", "v"));
	ck_assert_str_eq(res.headers.data, "X-Ok: value\r\n");
	ck_assert(vs_res_header(&res, "X-Empty", ""));
	ck_assert_str_eq(res.headers.data, "X-Ok: value\r\nX-Empty: \r\n");
	vs_res_free(&res);
}
END_TEST

START_TEST(test_redirect_refuses_crlf)
{
	struct vs_response res;

	vs_res_init(&res);
	vs_res_redirect(&res, 302, "/next\r\nSet-Cookie: a=b");
	ck_assert_int_eq(res.status, 500);
	ck_assert_ptr_null(strstr(res.headers.data ? res.headers.data : "",
				  "Set-Cookie"));
	check_error_body(&res, "internal error", "internal_error");
	vs_res_free(&res);

	vs_res_init(&res);
	vs_res_redirect(&res, 303, "/done");
	ck_assert_int_eq(res.status, 303);
	ck_assert_ptr_null(res.content_type);
	ck_assert(has_header_line(&res, "Location: /done"));
	vs_res_free(&res);
}
END_TEST

START_TEST(test_error_default_codes)
{
	static const struct {
		int status;
		const char *code;
	} cases[] = {
		{ 400, "invalid_request" }, { 401, "unauthorized" },
		{ 403, "forbidden" }, { 404, "not_found" },
		{ 405, "method_not_allowed" }, { 409, "conflict" },
		{ 413, "request_too_large" }, { 429, "rate_limited" },
		{ 500, "internal_error" }, { 503, "internal_error" },
		{ 410, "internal_error" }, { 418, "internal_error" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct vs_response res;

		ck_assert_str_eq(vs_default_code(cases[i].status), cases[i].code);
		vs_res_init(&res);
		vs_res_error(&res, cases[i].status, NULL, "some message");
		ck_assert_int_eq(res.status, cases[i].status);
		check_error_body(&res, "some message", cases[i].code);
		vs_res_free(&res);
	}
}
END_TEST

START_TEST(test_error_explicit_code_and_escaping)
{
	struct vs_response res;

	vs_res_init(&res);
	vs_res_html(&res, 200, "<p>discarded</p>");
	vs_res_error(&res, 400, "invalid_json", "invalid JSON request");
	ck_assert_int_eq(res.status, 400);
	check_error_body(&res, "invalid JSON request", "invalid_json");
	vs_res_error(&res, 400, "x", "a \"quoted\" <b>\n");
	check_error_body(&res, "a \"quoted\" <b>\n", "x");
	ck_assert_ptr_null(strstr(res.body.data, "<b>"));
	vs_res_free(&res);
}
END_TEST

START_TEST(test_error_bodies_small)
{
	struct vs_response res;

	vs_res_init(&res);
	vs_res_internal(&res);
	ck_assert_int_eq(res.status, 500);
	check_error_body(&res, "internal error", "internal_error");
	vs_res_free(&res);

	vs_res_init(&res);
	vs_res_busy(&res);
	ck_assert_int_eq(res.status, 503);
	ck_assert(has_header_line(&res, "Retry-After: 1"));
	check_error_body(&res, NULL, "internal_error");
	vs_res_free(&res);

	vs_res_init(&res);
	vs_res_method_not_allowed(&res, "GET, POST", false);
	ck_assert_int_eq(res.status, 405);
	ck_assert(has_header_line(&res, "Allow: GET, POST"));
	check_error_body(&res, "method not allowed", "method_not_allowed");
	vs_res_free(&res);

	/* Legacy client routes: "POST required", and Allow: POST (D42). */
	vs_res_init(&res);
	vs_res_method_not_allowed(&res, "POST", true);
	ck_assert_int_eq(res.status, 405);
	ck_assert(has_header_line(&res, "Allow: POST"));
	check_error_body(&res, "POST required", "method_not_allowed");
	vs_res_free(&res);

	vs_res_init(&res);
	vs_res_not_found(&res, "/api/v1/x");
	check_error_body(&res, "not found", "not_found");
	vs_res_free(&res);
}
END_TEST

START_TEST(test_internal_drops_headers)
{
	struct vs_response res;

	vs_res_init(&res);
	ck_assert(vs_res_header(&res, "Set-Cookie", "s=1"));
	vs_res_json(&res, 200);
	vs_buf_puts(&res.body, "{\"partial\":");
	vs_res_internal(&res);
	ck_assert_int_eq(res.status, 500);
	ck_assert_uint_eq(res.headers.len, 0);
	check_error_body(&res, "internal error", "internal_error");
	vs_res_free(&res);
}
END_TEST

START_TEST(test_res_reset)
{
	struct vs_response res;

	vs_res_init(&res);
	ck_assert_int_eq(res.status, 200);
	ck_assert_ptr_null(res.content_type);
	vs_res_error(&res, 403, NULL, "forbidden");
	ck_assert(vs_res_header(&res, "X-A", "b"));
	vs_res_reset(&res);
	ck_assert_int_eq(res.status, 200);
	ck_assert_ptr_null(res.content_type);
	ck_assert_uint_eq(res.headers.len, 0);
	ck_assert_uint_eq(res.body.len, 0);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_status_text)
{
	ck_assert_str_eq(vs_status_text(200), "OK");
	ck_assert_str_eq(vs_status_text(301), "Moved Permanently");
	ck_assert_str_eq(vs_status_text(404), "Not Found");
	ck_assert_str_eq(vs_status_text(405), "Method Not Allowed");
	ck_assert_str_eq(vs_status_text(413), "Request Entity Too Large");
	ck_assert_str_eq(vs_status_text(429), "Too Many Requests");
	ck_assert_str_eq(vs_status_text(503), "Service Unavailable");
	ck_assert_ptr_nonnull(vs_status_text(299));
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc;

	tc = tcase_create("table");
	tcase_add_test(tc, test_method_allowed);
	tcase_add_test(tc, test_route_find);
	suite_add_tcase(s, tc);

	tc = tcase_create("dispatch");
	tcase_add_test(tc, test_route_api_404_json);
	tcase_add_test(tc, test_route_html_404);
	tcase_add_test(tc, test_route_405);
	tcase_add_test(tc, test_route_405_client_routes);
	tcase_add_test(tc, test_route_noncanonical_redirect);
	tcase_add_test(tc, test_route_subtree_root_redirect);
	tcase_add_test(tc, test_route_encoded_dot_segments);
	tcase_add_test(tc, test_route_livez);
	tcase_add_test(tc, test_route_serialized_redirect);
	suite_add_tcase(s, tc);

	tc = tcase_create("response");
	tcase_add_test(tc, test_serialize_404);
	tcase_add_test(tc, test_serialize_html_and_empty);
	tcase_add_test(tc, test_serialize_appends);
	tcase_add_test(tc, test_header_refuses_crlf);
	tcase_add_test(tc, test_redirect_refuses_crlf);
	tcase_add_test(tc, test_error_default_codes);
	tcase_add_test(tc, test_error_explicit_code_and_escaping);
	tcase_add_test(tc, test_error_bodies_small);
	tcase_add_test(tc, test_internal_drops_headers);
	tcase_add_test(tc, test_route_groups_commits);
	tcase_add_test(tc, test_res_reset);
	tcase_add_test(tc, test_status_text);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(router_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
