/*
 * csrf.h - cross-site request forgery defences (API.md 10).
 *
 * Owns: the session-bound check of 10.1 (csrf_token cookie, X-CSRF-Token
 * header or csrf_token form field, the session's csrf_hash, all compared
 * in constant time) with its JSON answers; the Origin check; and the
 * anonymous form token of 10.2 (verstak_locale_csrf cookie, hidden
 * locale_csrf field), including setting that cookie on a render.
 * Must never: read a request body (callers hand in the parsed form),
 * store the anonymous token server-side, or log a token.
 */
#ifndef VS_CSRF_H
#define VS_CSRF_H

#include <stdbool.h>
#include <stddef.h>

#include "request.h"
#include "response.h"
#include "session.h"

#define VS_CSRF_COOKIE "csrf_token"
#define VS_CSRF_HEADER "HTTP_X_CSRF_TOKEN"
#define VS_CSRF_FIELD "csrf_token"
#define VS_ANON_CSRF_COOKIE "verstak_locale_csrf"
#define VS_ANON_CSRF_FIELD "locale_csrf"
#define VS_ANON_CSRF_MAX 128

enum vs_csrf {
	VS_CSRF_OK = 0,
	VS_CSRF_REQUIRED,   /* 403 csrf_invalid "CSRF token is required" */
	VS_CSRF_INVALID,    /* 403 csrf_invalid "CSRF token is invalid" */
	VS_CSRF_ORIGIN,     /* 403 csrf_invalid "request origin is not allowed" */
	VS_CSRF_BAD_FORM,   /* 400 invalid_request "invalid form" */
};

/* Does the request's Content-Type start with
 * application/x-www-form-urlencoded or multipart/form-data? */
bool vs_is_form_content(const char *content_type);

/* The Origin check of 10.1: a blank Origin passes; otherwise scheme and
 * host[:port] must equal public_url's when set, else the request's own
 * scheme (HTTPS flag) and Host. */
bool vs_origin_allowed(const struct vs_request *r, const char *public_url);

/* The session-bound check (10.1, after the session check). form is the
 * parsed body when the request is a form and it parsed (form_ok); when
 * form_ok is false and the field would be needed, VS_CSRF_BAD_FORM. */
enum vs_csrf vs_csrf_check(const struct vs_request *r,
			   const struct vs_session *s, const char *public_url,
			   const struct vs_kvlist *form, bool form_ok);
/* Writes the JSON answer for a failed check. */
void vs_csrf_answer(struct vs_response *res, enum vs_csrf rc);

/* The anonymous token for a page's forms (10.2): the request's
 * verstak_locale_csrf cookie, or a fresh 64-hex one that is also set as
 * the cookie. out holds VS_ANON_CSRF_MAX + 1 bytes. False on RNG or
 * memory failure. */
bool vs_csrf_anon_token(const struct vs_request *r, struct vs_response *res,
			char *out);
/* The anonymous POST check: cookie present and non-empty, Origin
 * allowed, field equal to the cookie (constant time). */
bool vs_csrf_anon_ok(const struct vs_request *r, const char *field,
		     const char *public_url);

#endif
