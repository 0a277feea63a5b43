/*
 * page.c - see page.h.
 *
 * Every page goes through vs_page_begin() (locale, anonymous CSRF
 * token, the frame's values) and vs_page_send() (template render into
 * the body); handlers only add their own values, each of which the
 * template layer escapes. Flash texts are catalog keys translated here.
 */
#include "page.h"
#include "accounts.h"
#include "csrf.h"
#include "locale.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Shown only when the templates themselves cannot be used. */
static const char fallback_500[] =
	"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	"<title>Error</title></head><body><h1>Internal error</h1>"
	"<p>The page could not be shown. Please try again later.</p>"
	"</body></html>\n";

void
vs_page_internal(struct vs_ctx *c)
{
	vs_buf_reset(&c->res->headers);
	vs_res_html(c->res, 500, fallback_500);
}

void
vs_page_no_store(struct vs_ctx *c)
{
	(void)vs_res_cache_control(c->res, "no-store");
}

const char *
vs_page_tr(struct vs_page *p, const char *key)
{
	const char *t = vs_i18n_get(vs_tpl_i18n(p->tpl), p->locale, key);

	if (t == NULL) {
		/* The unit tests prove every key exists; if one still is
		 * missing, the page fails rather than show a key (D1). */
		vs_log_error("missing catalog text %s", key);
		p->failed = true;
		return "";
	}
	return t;
}

/* The current address for the language switch's "from" field. */
static void
set_from(struct vs_page *p)
{
	const struct vs_request *r = p->c->req;

	if (r->query[0] != '\0')
		vs_td_printf(p->d, "from", "%s?%s", r->raw_path, r->query);
	else
		vs_td_str(p->d, "from", r->raw_path);
}

static void
set_locale_choice(struct vs_page *p)
{
	const char *ck = vs_request_cookie(p->c->req, VS_LOCALE_COOKIE);
	const char *v = ck != NULL ? vs_locale_cookie_value(ck) : "system";

	vs_td_bool(p->d, "sel_en", strcmp(v, "en") == 0);
	vs_td_bool(p->d, "sel_ru", strcmp(v, "ru") == 0);
	vs_td_bool(p->d, "sel_system", strcmp(v, "system") == 0);
}

bool
vs_page_begin(struct vs_ctx *c, struct vs_page *p)
{
	char anon[VS_ANON_CSRF_MAX + 1];

	memset(p, 0, sizeof(*p));
	p->c = c;
	p->tpl = vs_tpl_global();
	p->locale = vs_acct_locale(c);
	p->d = vs_td_new();
	if (p->tpl == NULL || p->d == NULL ||
	    !vs_csrf_anon_token(c->req, c->res, anon)) {
		vs_td_free(p->d);
		p->d = NULL;
		vs_page_internal(c);
		return false;
	}
	vs_td_str(p->d, "lang", p->locale);
	vs_td_str(p->d, "server_name", c->app->cfg.eff.server_name);
	vs_td_str(p->d, "locale_csrf", anon);
	vs_td_bool(p->d, "registration", c->app->cfg.eff.allow_registration);
	set_from(p);
	set_locale_choice(p);
	return true;
}

void
vs_page_free(struct vs_page *p)
{
	vs_td_free(p->d);
	p->d = NULL;
}

void
vs_page_title(struct vs_page *p, const char *key)
{
	vs_td_str(p->d, "title", vs_page_tr(p, key));
}

void
vs_page_flash_error(struct vs_page *p, const char *key)
{
	vs_td_str(p->d, "flash_error", vs_page_tr(p, key));
}

void
vs_page_flash_ok(struct vs_page *p, const char *key)
{
	vs_td_str(p->d, "flash_ok", vs_page_tr(p, key));
}

void
vs_page_send(struct vs_page *p, int status, const char *name)
{
	struct vs_response *res = p->c->res;

	res->status = status;
	res->content_type = "text/html; charset=utf-8";
	vs_buf_reset(&res->body);
	if (p->failed || !vs_tpl_render(p->tpl, name, p->locale, p->d,
					&res->body))
		vs_page_internal(p->c);
	vs_page_free(p);
}

void
vs_page_set_time(struct vs_tdata *d, const char *name, const char *raw)
{
	char human[64], key[64];
	struct tm tm;
	time_t t;

	if (raw == NULL)
		raw = "";
	snprintf(key, sizeof(key), "%s_h", name);
	vs_td_str(d, name, raw);
	if (raw[0] != '\0' && vs_parse_ts(raw, &t) && gmtime_r(&t, &tm) != NULL &&
	    strftime(human, sizeof(human), "%Y-%m-%d %H:%M UTC", &tm) > 0)
		vs_td_str(d, key, human);
	else
		vs_td_str(d, key, raw);
}

/* ------------------------------------------------------------------ */
/* Shared answers                                                     */
/* ------------------------------------------------------------------ */

void
vs_page_message(struct vs_ctx *c, int status, const char *title_key,
		const char *text_key, const char *link, const char *link_key)
{
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, title_key);
	vs_td_str(p.d, "text", vs_page_tr(&p, text_key));
	if (link != NULL) {
		vs_td_str(p.d, "link", link);
		vs_td_str(p.d, "link_text", vs_page_tr(&p, link_key));
	}
	vs_page_send(&p, status, "message");
}

void
vs_page_rate_limited(struct vs_ctx *c, long retry_after)
{
	char buf[32];

	vs_page_message(c, 429, "error.rateLimitedTitle",
			"error.rateLimitedText", NULL, NULL);
	snprintf(buf, sizeof(buf), "%ld", retry_after < 1 ? 1 : retry_after);
	(void)vs_res_header(c->res, "Retry-After", buf);
}

void
vs_page_bad_request(struct vs_ctx *c)
{
	vs_page_message(c, 400, "error.badRequestTitle", "error.badRequestText",
			"/", "nav.home");
}

void
vs_page_csrf_refused(struct vs_ctx *c)
{
	vs_page_message(c, 403, "error.forbiddenTitle", "error.csrfText", "/",
			"nav.home");
}

void
vs_page_db_fail(struct vs_ctx *c, bool busy)
{
	if (c->app->db.tx_depth > 0)
		vs_db_rollback(&c->app->db);
	vs_buf_reset(&c->res->headers);
	if (!busy) {
		vs_page_internal(c);
		return;
	}
	vs_page_message(c, 503, "error.busyTitle", "error.busyText", NULL,
			NULL);
	(void)vs_res_header(c->res, "Retry-After", "1");
}

/* ------------------------------------------------------------------ */
/* Forms                                                              */
/* ------------------------------------------------------------------ */

enum vs_form_rc
vs_form_read(struct vs_ctx *c, struct vs_kvlist *form)
{
	size_t cap = (size_t)c->app->cfg.eff.limits.max_json_body;

	switch (vs_request_read_body(c->req, cap)) {
	case VS_BODY_OK:
		break;
	case VS_BODY_TOO_LARGE:
		return VS_FORM_TOO_LARGE;
	case VS_BODY_IO:
		return VS_FORM_BAD;
	}
	if (!vs_form_parse(c->req->body != NULL ? c->req->body : "",
			   c->req->body_len, form))
		return VS_FORM_BAD;
	return VS_FORM_OK;
}

const char *
vs_form_field(const struct vs_kvlist *form, const char *name)
{
	const char *v = vs_kv_get(form, name);
	return v != NULL ? v : "";
}

bool
vs_page_anon_form(struct vs_ctx *c, struct vs_kvlist *form)
{
	if (vs_form_read(c, form) != VS_FORM_OK) {
		vs_page_bad_request(c);
		return false;
	}
	if (!vs_csrf_anon_ok(c->req, vs_kv_get(form, VS_ANON_CSRF_FIELD),
			     c->app->cfg.eff.public_url)) {
		vs_page_csrf_refused(c);
		return false;
	}
	return true;
}

bool
vs_page_rate_limit(struct vs_ctx *c, const struct vs_rl_action *a,
		   const char *account)
{
	long retry = 1;

	switch (vs_rate_limit(&c->app->db, a, c->req->client_ip, account,
			      &retry)) {
	case VS_RL_OK:
		return true;
	case VS_RL_LIMITED:
		vs_page_rate_limited(c, retry);
		return false;
	case VS_RL_BUSY:
		vs_page_db_fail(c, true);
		return false;
	case VS_RL_ERROR:
		break;
	}
	vs_page_db_fail(c, false);
	return false;
}

/* ------------------------------------------------------------------ */
/* Cookies (API.md 11)                                                */
/* ------------------------------------------------------------------ */

bool
vs_page_cookie(struct vs_ctx *c, const char *name, const char *value,
	       const char *path, long max_age, bool http_only,
	       const char *same_site)
{
	struct vs_cookie ck;

	memset(&ck, 0, sizeof(ck));
	ck.name = name;
	ck.value = value;
	ck.path = path;
	ck.max_age = max_age;
	ck.http_only = http_only;
	ck.secure = c->req->https;
	ck.same_site = same_site;
	return vs_res_cookie(c->res, &ck);
}
