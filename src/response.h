/*
 * response.h - the response writer every handler uses.
 *
 * Owns: status, headers and body of one response, the contract's JSON
 * error envelope {"error","code"} with default codes per status, 405 with
 * Allow, the JSON-or-HTML 404 split, the security headers every response
 * carries (API.md 1.7), and serialising it all for the front server.
 *
 * Must never: write to FastCGI itself (the worker does), or put an
 * unchecked value into a header (CR/LF are refused).
 */
#ifndef VS_RESPONSE_H
#define VS_RESPONSE_H

#include <stdbool.h>
#include "util.h"

struct vs_request;

struct vs_response {
	int status;
	const char *content_type;  /* static string; NULL = no body type */
	struct vs_buf headers;     /* extra "Name: value\r\n" lines */
	struct vs_buf body;
	/* No Content-Length line: the front server supplies it (a body
	 * handed over with X-Accel-Redirect). */
	bool no_content_length;
};

void vs_res_init(struct vs_response *res);
void vs_res_free(struct vs_response *res);
/* Drops everything written so far (status, headers, body). */
void vs_res_reset(struct vs_response *res);

bool vs_res_header(struct vs_response *res, const char *name, const char *value);

/* Starts a JSON body with this status; the handler appends to res->body. */
void vs_res_json(struct vs_response *res, int status);
/* {"error": msg, "code": code}; code NULL = the status's default code. */
void vs_res_error(struct vs_response *res, int status, const char *code,
		  const char *msg);
/* 500 {"error":"internal error","code":"internal_error"}. */
void vs_res_internal(struct vs_response *res);
/* 503 with Retry-After, for a database that stayed locked. */
void vs_res_busy(struct vs_response *res);
/* Generic 405 with Allow; legacy = the client routes' "POST required". */
void vs_res_method_not_allowed(struct vs_response *res, const char *allow,
			       bool legacy);
/* JSON 404 under /api/, the HTML page elsewhere. */
void vs_res_not_found(struct vs_response *res, const char *path);
void vs_res_redirect(struct vs_response *res, int status, const char *location);
void vs_res_html(struct vs_response *res, int status, const char *html);

/* One Set-Cookie header (API.md 11). Values are limited to the cookie
 * octets of RFC 6265 (no white space, quote, comma, semicolon or
 * backslash); anything else is refused and nothing is written.
 * same_site NULL = no SameSite attribute (as logout's clearing cookies). */
struct vs_cookie {
	const char *name;
	const char *value;
	const char *path;
	long max_age;          /* seconds; 0 = "Max-Age=0" (delete) */
	bool http_only;
	bool secure;           /* the request came over HTTPS (API.md 1.8) */
	const char *same_site; /* "Lax", "Strict" or NULL */
};
bool vs_res_cookie(struct vs_response *res, const struct vs_cookie *ck);
/* Cache-Control (API.md 1.7), replacing none already set. */
bool vs_res_cache_control(struct vs_response *res, const char *value);

const char *vs_status_text(int status);
const char *vs_default_code(int status);

/* Renders the CGI header block (Status line, headers, blank line). */
bool vs_res_head(const struct vs_response *res, struct vs_buf *out);
/* Renders the CGI response (header block and body). */
bool vs_res_serialize(const struct vs_response *res, struct vs_buf *out);

#endif
