/*
 * page.h - the HTML page frame and the form plumbing that the people's
 * pages (web.c) and the admin console (admin_web.c) share.
 *
 * Owns: starting a page (locale, the anonymous CSRF cookie and field,
 * server name, the language switch), catalog texts for a page (a
 * missing key fails the page rather than show the key, D1), rendering
 * a template into the response, the 500 fallback, the shared answers
 * (message page, 400/403/429/503 pages), reading a form body with the
 * JSON body cap, the anonymous-form check of API.md 10.2, the web-form
 * rate limit, and writing one cookie with the request's Secure flag.
 * Must never: put a value into a page except through the template
 * layer's escaping, decide which session a page needs (its callers
 * do), or set a cookie without Secure over HTTPS.
 */
#ifndef VS_PAGE_H
#define VS_PAGE_H

#include <stdbool.h>

#include "ratelimit.h"
#include "request.h"
#include "router.h"
#include "template.h"

#define VS_LOCALE_COOKIE "verstak_locale"

/* One page being built: values go into d, texts come from tpl's
 * catalogs in locale. */
struct vs_page {
	struct vs_ctx *c;
	const struct vs_tpl_set *tpl;
	const char *locale;
	struct vs_tdata *d;
	bool failed;	/* a catalog key was missing: never show the page */
};

/* Starts a page; false (a 500 already written) when it cannot. */
bool vs_page_begin(struct vs_ctx *c, struct vs_page *p);
void vs_page_free(struct vs_page *p);
/* The catalog text of key in the page's locale ("" and the page marked
 * failed when missing). */
const char *vs_page_tr(struct vs_page *p, const char *key);
void vs_page_title(struct vs_page *p, const char *key);
void vs_page_flash_error(struct vs_page *p, const char *key);
void vs_page_flash_ok(struct vs_page *p, const char *key);
/* A stored timestamp for people: name = the raw value (for a <time>
 * element's datetime attribute), name_h = "2026-01-31 14:05 UTC", or
 * the raw value when it does not parse. */
void vs_page_set_time(struct vs_tdata *d, const char *name, const char *raw);
/* Renders template name with status into the response and frees p. */
void vs_page_send(struct vs_page *p, int status, const char *name);

/* The template-free 500 page (drops headers written so far). */
void vs_page_internal(struct vs_ctx *c);
/* Cache-Control: no-store. */
void vs_page_no_store(struct vs_ctx *c);
/* A message page: title and text are catalog keys; link (with the text
 * of link_key) may be NULL. */
void vs_page_message(struct vs_ctx *c, int status, const char *title_key,
		     const char *text_key, const char *link,
		     const char *link_key);
/* A store failure on a page: the 503 "try again" page with Retry-After
 * for a locked database, else the 500. Rolls back an open transaction. */
void vs_page_db_fail(struct vs_ctx *c, bool busy);
/* The 400 page for a form that does not parse. */
void vs_page_bad_request(struct vs_ctx *c);
/* The 403 page for a failed anonymous CSRF check. */
void vs_page_csrf_refused(struct vs_ctx *c);
/* The localized 429 page with Retry-After. */
void vs_page_rate_limited(struct vs_ctx *c, long retry_after);

enum vs_form_rc { VS_FORM_OK = 0, VS_FORM_TOO_LARGE, VS_FORM_BAD };
/* Reads the body (capped at max_json_body) and parses it as
 * application/x-www-form-urlencoded into form (zeroed by the caller;
 * free it with vs_kvlist_free in every case). */
enum vs_form_rc vs_form_read(struct vs_ctx *c, struct vs_kvlist *form);
/* A form value, "" when absent. */
const char *vs_form_field(const struct vs_kvlist *form, const char *name);
/* Reads the form and runs the anonymous CSRF check (API.md 10.2),
 * answering a parse error with the 400 page and a failed check with the
 * 403 page; false when it answered. */
bool vs_page_anon_form(struct vs_ctx *c, struct vs_kvlist *form);
/* Web-form rate limit; false when refused (429 page) or failed
 * (500/503 page). */
bool vs_page_rate_limit(struct vs_ctx *c, const struct vs_rl_action *a,
			const char *account);

/* One Set-Cookie (API.md 11) with Secure when the request came over
 * HTTPS. same_site NULL = none (logout's clearing cookies). */
bool vs_page_cookie(struct vs_ctx *c, const char *name, const char *value,
		    const char *path, long max_age, bool http_only,
		    const char *same_site);

#endif
