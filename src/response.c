/*
 * response.c - see response.h.
 */
#include "response.h"
#include "json.h"

#include <stdio.h>
#include <string.h>

#define CSP "default-src 'self'; base-uri 'self'; form-action 'self'; " \
	    "frame-ancestors 'none'; img-src 'self' data:; script-src 'self'; " \
	    "style-src 'self'"

static const char security_headers[] =
	"Content-Security-Policy: " CSP "\r\n"
	"X-Content-Type-Options: nosniff\r\n"
	"Referrer-Policy: same-origin\r\n"
	"X-Frame-Options: DENY\r\n";

/* Until the template layer renders a localized page, the HTML 404 is a
 * fixed document: it contains no request data, so nothing to escape. */
static const char not_found_html[] =
	"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	"<title>Not found</title><link rel=\"stylesheet\" href=\"/static/app.css\">"
	"</head><body><main class=\"page\"><h1>Page not found</h1>"
	"<p>There is nothing at this address.</p><p><a href=\"/\">Home</a></p>"
	"</main></body></html>\n";

void
vs_res_init(struct vs_response *res)
{
	memset(res, 0, sizeof(*res));
	res->status = 200;
	vs_buf_init(&res->headers);
	vs_buf_init(&res->body);
}

void
vs_res_free(struct vs_response *res)
{
	vs_buf_free(&res->headers);
	vs_buf_free(&res->body);
}

void
vs_res_reset(struct vs_response *res)
{
	res->status = 200;
	res->content_type = NULL;
	res->no_content_length = false;
	vs_buf_reset(&res->headers);
	vs_buf_reset(&res->body);
}

static bool
header_safe(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

bool
vs_res_header(struct vs_response *res, const char *name, const char *value)
{
	if (!header_safe(name) || !header_safe(value))
		return false;
	return vs_buf_printf(&res->headers, "%s: %s\r\n", name, value);
}

const char *
vs_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Request Entity Too Large";
	case 416: return "Range Not Satisfiable";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}

const char *
vs_default_code(int status)
{
	switch (status) {
	case 400: return "invalid_request";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 409: return "conflict";
	case 413: return "request_too_large";
	case 429: return "rate_limited";
	default: return "internal_error";
	}
}

void
vs_res_json(struct vs_response *res, int status)
{
	res->status = status;
	res->content_type = "application/json";
	res->no_content_length = false;
	vs_buf_reset(&res->body);
}

void
vs_res_error(struct vs_response *res, int status, const char *code,
	     const char *msg)
{
	vs_res_json(res, status);
	vs_buf_puts(&res->body, "{\"error\":");
	vs_json_put_str(&res->body, msg);
	vs_buf_puts(&res->body, ",\"code\":");
	vs_json_put_str(&res->body, code ? code : vs_default_code(status));
	vs_buf_puts(&res->body, "}\n");
}

void
vs_res_internal(struct vs_response *res)
{
	vs_buf_reset(&res->headers);
	vs_res_error(res, 500, "internal_error", "internal error");
}

void
vs_res_busy(struct vs_response *res)
{
	vs_buf_reset(&res->headers);
	vs_res_error(res, 503, "internal_error", "server busy, try again");
	vs_res_header(res, "Retry-After", "1");
}

void
vs_res_method_not_allowed(struct vs_response *res, const char *allow,
			  bool legacy)
{
	vs_res_error(res, 405, "method_not_allowed",
		     legacy ? "POST required" : "method not allowed");
	vs_res_header(res, "Allow", allow);
}

void
vs_res_html(struct vs_response *res, int status, const char *html)
{
	res->status = status;
	res->content_type = "text/html; charset=utf-8";
	vs_buf_reset(&res->body);
	vs_buf_puts(&res->body, html);
}

/* RFC 6265 cookie-octet, and names as tokens: a value that could end
 * the attribute list early (';'), or split a header, never goes out. */
static bool
cookie_octets(const char *s, bool is_name)
{
	if (*s == '\0')
		return !is_name;
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == ',' ||
		    ch == ';' || ch == '\\' || (is_name && ch == '='))
			return false;
	}
	return true;
}

bool
vs_res_cookie(struct vs_response *res, const struct vs_cookie *ck)
{
	if (ck->name == NULL || ck->value == NULL || ck->path == NULL ||
	    !cookie_octets(ck->name, true) || !cookie_octets(ck->value, false) ||
	    !cookie_octets(ck->path, true) || ck->max_age < 0)
		return false;
	return vs_buf_printf(&res->headers,
			     "Set-Cookie: %s=%s; Path=%s; Max-Age=%ld%s%s%s%s\r\n",
			     ck->name, ck->value, ck->path, ck->max_age,
			     ck->http_only ? "; HttpOnly" : "",
			     ck->secure ? "; Secure" : "",
			     ck->same_site != NULL ? "; SameSite=" : "",
			     ck->same_site != NULL ? ck->same_site : "");
}

bool
vs_res_cache_control(struct vs_response *res, const char *value)
{
	const char *h = res->headers.data;

	if (h != NULL && (strncmp(h, "Cache-Control:", 14) == 0 ||
			  strstr(h, "\nCache-Control:") != NULL))
		return true;
	return vs_res_header(res, "Cache-Control", value);
}

void
vs_res_not_found(struct vs_response *res, const char *path)
{
	if (strncmp(path, "/api/", 5) == 0)
		vs_res_error(res, 404, "not_found", "not found");
	else
		vs_res_html(res, 404, not_found_html);
}

void
vs_res_redirect(struct vs_response *res, int status, const char *location)
{
	res->status = status;
	res->content_type = NULL;
	vs_buf_reset(&res->body);
	if (!vs_res_header(res, "Location", location))
		vs_res_internal(res);
}

bool
vs_res_head(const struct vs_response *res, struct vs_buf *out)
{
	vs_buf_printf(out, "Status: %d %s\r\n", res->status,
		      vs_status_text(res->status));
	vs_buf_puts(out, security_headers);
	if (res->content_type != NULL)
		vs_buf_printf(out, "Content-Type: %s\r\n", res->content_type);
	if (!res->no_content_length)
		vs_buf_printf(out, "Content-Length: %zu\r\n", res->body.len);
	if (res->headers.len > 0)
		vs_buf_append(out, res->headers.data, res->headers.len);
	vs_buf_puts(out, "\r\n");
	return !out->oom;
}

bool
vs_res_serialize(const struct vs_response *res, struct vs_buf *out)
{
	if (!vs_res_head(res, out))
		return false;
	if (res->body.len > 0)
		vs_buf_append(out, res->body.data, res->body.len);
	return !out->oom;
}
