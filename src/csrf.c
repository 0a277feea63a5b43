/*
 * csrf.c - see csrf.h.
 */
#include "csrf.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

bool
vs_is_form_content(const char *ct)
{
	static const char form[] = "application/x-www-form-urlencoded";
	static const char multi[] = "multipart/form-data";

	return ct != NULL &&
	       (strncasecmp(ct, form, sizeof(form) - 1) == 0 ||
		strncasecmp(ct, multi, sizeof(multi) - 1) == 0);
}

struct origin {
	char scheme[16];
	char hostport[256];
};

/* Parses "scheme://[userinfo@]host[:port][/...]" into lowercase scheme
 * and host[:port]; false when there is no scheme or no host ("null",
 * "example.com", "http://"). */
static bool
parse_origin(const char *s, struct origin *o)
{
	const char *sep = strstr(s, "://"), *host, *end, *at;
	size_t n;

	if (sep == NULL || sep == s || (size_t)(sep - s) >= sizeof(o->scheme))
		return false;
	for (const char *p = s; p < sep; p++) {
		char ch = *p;
		bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
		if (!alpha && (p == s || !((ch >= '0' && ch <= '9') ||
					   ch == '+' || ch == '-' || ch == '.')))
			return false;
	}
	n = (size_t)(sep - s);
	for (size_t i = 0; i < n; i++)
		o->scheme[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ?
				      s[i] - 'A' + 'a' : s[i]);
	o->scheme[n] = '\0';
	host = sep + 3;
	end = host + strcspn(host, "/?#");
	/* Userinfo is not part of the origin's host. */
	at = memchr(host, '@', (size_t)(end - host));
	while (at != NULL) {
		host = at + 1;
		at = memchr(host, '@', (size_t)(end - host));
	}
	n = (size_t)(end - host);
	if (n == 0 || n >= sizeof(o->hostport) || host[0] == ':')
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)host[i] <= 0x20 || (unsigned char)host[i] >= 0x7f)
			return false;
	memcpy(o->hostport, host, n);
	o->hostport[n] = '\0';
	return true;
}

static bool
blank(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if (*s != ' ' && *s != '\t')
			return false;
	return true;
}

bool
vs_origin_allowed(const struct vs_request *r, const char *public_url)
{
	struct origin o, want;

	if (blank(r->origin))
		return true;
	if (!parse_origin(r->origin, &o))
		return false;
	if (public_url != NULL && *public_url != '\0') {
		/* A public_url that does not parse admits nothing: failing
		 * closed is the only safe reading of a broken setting. */
		if (!parse_origin(public_url, &want))
			return false;
		return strcmp(o.scheme, want.scheme) == 0 &&
		       strcasecmp(o.hostport, want.hostport) == 0;
	}
	return strcmp(o.scheme, r->https ? "https" : "http") == 0 &&
	       r->host != NULL && strcasecmp(o.hostport, r->host) == 0;
}

enum vs_csrf
vs_csrf_check(const struct vs_request *r, const struct vs_session *s,
	      const char *public_url, const struct vs_kvlist *form, bool form_ok)
{
	const char *cookie = vs_request_cookie(r, VS_CSRF_COOKIE);
	const char *cand = vs_request_param(r, VS_CSRF_HEADER);
	bool match;

	if (cookie == NULL || *cookie == '\0')
		return VS_CSRF_REQUIRED;
	if ((cand == NULL || *cand == '\0') &&
	    vs_is_form_content(r->content_type)) {
		if (!form_ok)
			return VS_CSRF_BAD_FORM;
		cand = form != NULL ? vs_kv_get(form, VS_CSRF_FIELD) : NULL;
	}
	if (cand == NULL || *cand == '\0')
		return VS_CSRF_INVALID;
	/* Both comparisons always run: which one failed is not revealed
	 * by timing either. */
	match = vs_ct_streq(cand, cookie);
	match = vs_session_csrf_matches(s, cand) && match;
	if (!match)
		return VS_CSRF_INVALID;
	if (!vs_origin_allowed(r, public_url))
		return VS_CSRF_ORIGIN;
	return VS_CSRF_OK;
}

void
vs_csrf_answer(struct vs_response *res, enum vs_csrf rc)
{
	switch (rc) {
	case VS_CSRF_OK:
		return;
	case VS_CSRF_REQUIRED:
		vs_res_error(res, 403, "csrf_invalid", "CSRF token is required");
		return;
	case VS_CSRF_INVALID:
		vs_res_error(res, 403, "csrf_invalid", "CSRF token is invalid");
		return;
	case VS_CSRF_ORIGIN:
		vs_res_error(res, 403, "csrf_invalid",
			     "request origin is not allowed");
		return;
	case VS_CSRF_BAD_FORM:
		vs_res_error(res, 400, "invalid_request", "invalid form");
		return;
	}
}

/* A cookie value we can put back into a form and compare: 1..MAX
 * visible ASCII bytes (escaping in the page handles the rest). */
static bool
usable_anon(const char *v)
{
	size_t n;

	if (v == NULL)
		return false;
	n = strlen(v);
	if (n == 0 || n > VS_ANON_CSRF_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
			return false;
	return true;
}

bool
vs_csrf_anon_token(const struct vs_request *r, struct vs_response *res,
		   char *out)
{
	const char *have = vs_request_cookie(r, VS_ANON_CSRF_COOKIE);
	struct vs_cookie ck;

	if (usable_anon(have)) {
		snprintf(out, VS_ANON_CSRF_MAX + 1, "%s", have);
		return true;
	}
	if (!vs_random_hex(32, out)) {
		vs_log_error("csrf: random generator failed");
		out[0] = '\0';
		return false;
	}
	memset(&ck, 0, sizeof(ck));
	ck.name = VS_ANON_CSRF_COOKIE;
	ck.value = out;
	ck.path = "/";
	ck.max_age = 86400;
	ck.http_only = true;
	ck.secure = r->https;
	ck.same_site = "Strict";
	return vs_res_cookie(res, &ck);
}

bool
vs_csrf_anon_ok(const struct vs_request *r, const char *field,
		const char *public_url)
{
	const char *cookie = vs_request_cookie(r, VS_ANON_CSRF_COOKIE);
	bool match;

	if (cookie == NULL || *cookie == '\0')
		return false;
	match = field != NULL && vs_ct_streq(field, cookie);
	return vs_origin_allowed(r, public_url) && match;
}
