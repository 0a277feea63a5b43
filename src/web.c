/*
 * web.c - see web.h.
 *
 * Every page goes through vs_page_begin() (locale, anonymous CSRF token,
 * the frame's values) and vs_page_send() (template render into the body);
 * handlers only add their own values, each of which the template layer
 * escapes. Flash texts are catalog keys translated here.
 */
#include "web.h"
#include "page.h"
#include "accounts.h"
#include "csrf.h"
#include "health.h"
#include "locale.h"
#include "log.h"
#include "password.h"
#include "ratelimit.h"
#include "session.h"
#include "template.h"
#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOCALE_COOKIE_MAX_AGE 31536000L
#define SESSION_COOKIE_MAX_AGE 86400L

void
vs_web_not_found(struct vs_ctx *c)
{
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "notFound.title");
	vs_page_send(&p, 404, "404");
}

static void
method_not_allowed(struct vs_ctx *c, const char *allow)
{
	vs_res_method_not_allowed(c->res, allow, false);
}

static char *
trimmed_dup(const char *s)
{
	char *t = strdup(s);
	return t != NULL ? vs_trim(t) : NULL;
}

/* ------------------------------------------------------------------ */
/* Cookies (API.md 11)                                                */
/* ------------------------------------------------------------------ */

static bool
set_cookie(struct vs_ctx *c, const char *name, const char *value,
	   long max_age, bool http_only, const char *same_site)
{
	return vs_page_cookie(c, name, value, "/", max_age, http_only,
			      same_site);
}

static bool
set_session_cookies(struct vs_ctx *c, const char *token, const char *csrf)
{
	return set_cookie(c, VS_USER_SESSION_COOKIE, token,
			  SESSION_COOKIE_MAX_AGE, true, "Lax") &&
	       set_cookie(c, VS_CSRF_COOKIE, csrf, SESSION_COOKIE_MAX_AGE,
			  false, "Strict");
}

/* Logout: empty values, Max-Age=0, no SameSite, HttpOnly only on the
 * session cookie. */
static bool
clear_session_cookies(struct vs_ctx *c)
{
	return set_cookie(c, VS_USER_SESSION_COOKIE, "", 0, true, NULL) &&
	       set_cookie(c, VS_CSRF_COOKIE, "", 0, false, NULL);
}

/* ------------------------------------------------------------------ */
/* Home and result pages                                              */
/* ------------------------------------------------------------------ */

void
vs_handle_home(struct vs_ctx *c)
{
	struct vs_health h;
	struct vs_page p;

	vs_health_check(c->app, &h);
	if (!h.database_reachable || !h.blob_storage_writable) {
		vs_page_message(c, 503, "home.unavailableTitle",
			     "home.unavailableText", NULL, NULL);
		return;
	}
	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "home.title");
	vs_page_send(&p, 200, "home");
}

void
vs_handle_register_result(struct vs_ctx *c)
{
	vs_page_message(c, 200, "register.resultTitle", "register.resultText",
		     "/login", "nav.login");
}

void
vs_handle_forgot_sent(struct vs_ctx *c)
{
	vs_page_message(c, 200, "forgot.sentTitle", "forgot.sentText", "/login",
		     "nav.login");
}

void
vs_handle_reset_done(struct vs_ctx *c)
{
	vs_page_no_store(c);
	if (strcmp(c->req->method, "GET") != 0) {
		method_not_allowed(c, "GET");
		return;
	}
	vs_page_message(c, 200, "reset.doneTitle", "reset.doneText", "/login",
		     "nav.login");
}

void
vs_handle_confirm_result(struct vs_ctx *c)
{
	vs_page_no_store(c);
	if (strcmp(c->req->method, "GET") != 0) {
		method_not_allowed(c, "GET");
		return;
	}
	vs_page_message(c, 200, "confirm.resultTitle", "confirm.resultText",
		     "/login", "nav.login");
}

/* ------------------------------------------------------------------ */
/* Register                                                           */
/* ------------------------------------------------------------------ */

static void
register_form(struct vs_ctx *c, int status, const char *flash,
	      const char *username, const char *email)
{
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "register.title");
	if (flash != NULL)
		vs_page_flash_error(&p, flash);
	vs_td_str(p.d, "username", username);
	vs_td_str(p.d, "email", email);
	vs_td_printf(p.d, "pw_min", "%d", VS_PW_MIN);
	/* Shows the entered name back: no caching of this page. */
	if (username != NULL && *username != '\0')
		vs_page_no_store(c);
	vs_page_send(&p, status, "register");
}

/* The POST steps after CSRF, in the contract's order. */
static void
register_submit(struct vs_ctx *c, const struct vs_kvlist *form)
{
	char *name = trimmed_dup(vs_form_field(form, "username"));
	char *email_in = trimmed_dup(vs_form_field(form, "email"));
	const char *pw = vs_form_field(form, "password");
	char email[256];
	const char *flash = NULL;
	enum vs_acct r;

	if (name == NULL || email_in == NULL) {
		vs_page_internal(c);
		goto out;
	}
	if (*name == '\0' || *email_in == '\0' || *pw == '\0')
		flash = "error.allFieldsRequired";
	else if (!vs_username_valid(name))
		flash = "error.invalidUsername";
	else if (!vs_email_normalize(email_in, email, sizeof(email)))
		flash = "error.invalidEmail";
	if (flash != NULL) {
		register_form(c, 200, flash, name, email_in);
		goto out;
	}
	if (!vs_page_rate_limit(c, &VS_RL_REGISTER, email))
		goto out;
	if (vs_password_policy(pw) != VS_PW_OK) {
		register_form(c, 200, "error.passwordInvalid", name, email_in);
		goto out;
	}
	r = vs_acct_register(c, name, email, pw, vs_acct_locale(c));
	if (r == VS_ACCT_TAKEN)
		register_form(c, 200, "error.accountTaken", name, email_in);
	else if (r != VS_ACCT_OK)
		vs_page_db_fail(c, r == VS_ACCT_BUSY);
	else
		vs_res_redirect(c->res, 303, "/register/result");
out:
	free(name);
	free(email_in);
}

void
vs_handle_register_page(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };

	if (!c->app->cfg.eff.allow_registration) {
		vs_web_not_found(c);
		return;
	}
	if (strcmp(c->req->method, "GET") == 0) {
		register_form(c, 200, NULL, "", "");
		return;
	}
	if (strcmp(c->req->method, "POST") != 0) {
		method_not_allowed(c, "GET, POST");
		return;
	}
	if (vs_page_anon_form(c, &form))
		register_submit(c, &form);
	vs_kvlist_free(&form);
}

/* ------------------------------------------------------------------ */
/* Login                                                              */
/* ------------------------------------------------------------------ */

static void
login_form(struct vs_ctx *c, int status, const char *flash, const char *login)
{
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "login.title");
	if (flash != NULL)
		vs_page_flash_error(&p, flash);
	vs_td_str(p.d, "login", login);
	if (login != NULL && *login != '\0')
		vs_page_no_store(c);
	vs_page_send(&p, status, "login");
}

static void
login_submit(struct vs_ctx *c, const struct vs_kvlist *form)
{
	char token[VS_SESSION_TOKEN_HEX + 1], csrf[VS_SESSION_TOKEN_HEX + 1];
	char *login = trimmed_dup(vs_form_field(form, "username"));
	struct vs_user u;
	enum vs_cred cr;
	enum vs_db_status s;

	memset(&u, 0, sizeof(u));
	if (login == NULL) {
		vs_page_internal(c);
		return;
	}
	if (!vs_page_rate_limit(c, &VS_RL_LOGIN, login))
		goto out;
	cr = vs_user_check_credentials(&c->app->db, login,
				       vs_form_field(form, "password"), &u);
	if (cr == VS_CRED_BUSY || cr == VS_CRED_ERROR) {
		vs_page_db_fail(c, cr == VS_CRED_BUSY);
		goto out;
	}
	if (cr != VS_CRED_OK) {
		/* One answer for every failure: the page does not tell an
		 * unknown name from a blocked or unconfirmed account. */
		login_form(c, 401, "error.invalidCredentials", login);
		goto out;
	}
	s = vs_session_create(&c->app->db, VS_SCOPE_USER, u.id, token, csrf);
	if (s != VS_DB_OK) {
		vs_page_db_fail(c, s == VS_DB_BUSY);
		goto out;
	}
	if (!set_session_cookies(c, token, csrf))
		vs_page_internal(c);
	else
		vs_res_redirect(c->res, 303, "/dashboard");
	memset(token, 0, sizeof(token));
	memset(csrf, 0, sizeof(csrf));
out:
	vs_user_free(&u);
	free(login);
}

void
vs_handle_login_page(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };
	struct vs_session s;
	struct vs_user u;
	bool valid = false;
	enum vs_db_status st;

	if (strcmp(c->req->method, "GET") == 0) {
		st = vs_acct_session_user(c, &s, &u, &valid);
		if (st != VS_DB_OK) {
			vs_page_db_fail(c, st == VS_DB_BUSY);
			return;
		}
		if (valid) {
			vs_user_free(&u);
			vs_session_free(&s);
			vs_res_redirect(c->res, 302, "/dashboard");
			return;
		}
		login_form(c, 200, NULL, "");
		return;
	}
	if (vs_page_anon_form(c, &form))
		login_submit(c, &form);
	vs_kvlist_free(&form);
}

/* ------------------------------------------------------------------ */
/* Dashboard                                                          */
/* ------------------------------------------------------------------ */

/* ASCII case-insensitive substring test (device names are free text;
 * folding non-ASCII letters would need a Unicode table). */
static bool
contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	if (n == 0)
		return true;
	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	return false;
}

static bool
device_matches(const struct vs_user_device *d, const char *q)
{
	return contains_ci(d->name, q) || contains_ci(d->vault_id, q) ||
	       contains_ci(d->client_version, q);
}

/* The revoke form's action: the id percent-encoded as a path segment. */
static void
set_revoke_action(struct vs_tdata *it, const char *id)
{
	static const char hex[] = "0123456789ABCDEF";
	struct vs_buf b;

	vs_buf_init(&b);
	vs_buf_puts(&b, "/api/v1/user/devices/");
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL) {
			vs_buf_append(&b, p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			vs_buf_append(&b, e, 3);
		}
	}
	vs_buf_puts(&b, "/revoke");
	/* Out of memory: the item's data is then flagged as incomplete
	 * too, and the page becomes a 500 rather than a broken form. */
	vs_td_str(it, "action", b.oom ? "" : b.data);
	vs_buf_free(&b);
}

static void
add_devices(struct vs_page *p, const struct vs_user_device *d, size_t n,
	    const char *q)
{
	size_t shown = 0;

	vs_td_list(p->d, "devices");
	for (size_t i = 0; i < n; i++) {
		struct vs_tdata *it;

		if (!device_matches(&d[i], q))
			continue;
		it = vs_td_item(p->d, "devices");
		if (it == NULL)
			return;
		vs_td_str(it, "name", d[i].name);
		vs_td_str(it, "vault_id", d[i].vault_id);
		vs_td_str(it, "client_version", d[i].client_version);
		vs_page_set_time(it, "last_seen", d[i].last_seen);
		vs_page_set_time(it, "created_at", d[i].created_at);
		vs_page_set_time(it, "revoked_at", d[i].revoked_at);
		vs_td_bool(it, "revoked", d[i].revoked_at[0] != '\0');
		vs_td_printf(it, "search", "%s %s %s", d[i].name,
			     d[i].vault_id, d[i].client_version);
		set_revoke_action(it, d[i].id);
		shown++;
	}
	vs_td_bool(p->d, "any_devices", n > 0);
	vs_td_bool(p->d, "no_match", n > 0 && shown == 0);
}

/* ?flash= and ?error= show a message only for the keys the contract
 * names; any other value is ignored. */
static void
dashboard_flash(struct vs_page *p)
{
	const char *f = vs_request_query(p->c->req, "flash");
	const char *e = vs_request_query(p->c->req, "error");

	if (f != NULL && strcmp(f, "user.deviceRevoked") == 0)
		vs_page_flash_ok(p, f);
	if (e != NULL && strcmp(e, "error.invalidCredentials") == 0)
		vs_page_flash_error(p, e);
}

static void
dashboard_render(struct vs_ctx *c, const struct vs_user *u,
		 const struct vs_user_device *d, size_t n)
{
	const char *q = vs_request_query(c->req, "q");
	const char *csrf = vs_request_cookie(c->req, VS_CSRF_COOKIE);
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "dashboard.title");
	vs_td_bool(p.d, "signed_in", true);
	vs_td_str(p.d, "csrf_token", csrf);
	vs_td_str(p.d, "username", u->username);
	vs_td_str(p.d, "email", u->email);
	vs_td_bool(p.d, "confirmed", u->confirmed);
	vs_td_str(p.d, "q", q);
	dashboard_flash(&p);
	add_devices(&p, d, n, q != NULL ? q : "");
	vs_page_send(&p, 200, "dashboard");
}

void
vs_handle_dashboard(struct vs_ctx *c)
{
	struct vs_user_device *d = NULL;
	struct vs_session s;
	struct vs_user u;
	size_t n = 0;
	bool valid = false;
	enum vs_db_status st;

	st = vs_acct_session_user(c, &s, &u, &valid);
	if (st != VS_DB_OK) {
		vs_page_db_fail(c, st == VS_DB_BUSY);
		return;
	}
	if (!valid) {
		vs_res_redirect(c->res, 302, "/login");
		return;
	}
	vs_page_no_store(c);
	st = vs_acct_devices(&c->app->db, u.id, &d, &n);
	if (st != VS_DB_OK)
		vs_page_db_fail(c, st == VS_DB_BUSY);
	else
		dashboard_render(c, &u, d, n);
	vs_acct_devices_free(d, n);
	vs_user_free(&u);
	vs_session_free(&s);
}

/* ------------------------------------------------------------------ */
/* Forgot and reset                                                   */
/* ------------------------------------------------------------------ */

static void
forgot_form(struct vs_ctx *c, int status, const char *flash)
{
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "forgot.title");
	if (flash != NULL)
		vs_page_flash_error(&p, flash);
	vs_page_send(&p, status, "forgot");
}

static void
forgot_submit(struct vs_ctx *c, const struct vs_kvlist *form)
{
	char *email = trimmed_dup(vs_form_field(form, "email"));
	enum vs_acct r;

	if (email == NULL) {
		vs_page_internal(c);
		return;
	}
	for (char *p = email; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (*email == '\0') {
		forgot_form(c, 200, "error.emailRequired");
	} else if (vs_page_rate_limit(c, &VS_RL_FORGOT, email)) {
		r = vs_acct_forgot(c, email, vs_acct_locale(c));
		if (r != VS_ACCT_OK)
			vs_page_db_fail(c, r == VS_ACCT_BUSY);
		else
			vs_res_redirect(c->res, 303, "/forgot/sent");
	}
	free(email);
}

void
vs_handle_forgot_page(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };

	if (strcmp(c->req->method, "GET") == 0) {
		forgot_form(c, 200, NULL);
		return;
	}
	if (vs_page_anon_form(c, &form))
		forgot_submit(c, &form);
	vs_kvlist_free(&form);
}

static void
reset_form(struct vs_ctx *c, int status, const char *flash, const char *token)
{
	struct vs_page p;

	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "reset.title");
	if (flash != NULL)
		vs_page_flash_error(&p, flash);
	vs_td_str(p.d, "token", token);
	vs_td_printf(p.d, "pw_min", "%d", VS_PW_MIN);
	vs_page_send(&p, status, "reset");
}

static void
reset_get(struct vs_ctx *c)
{
	const char *token = vs_request_query(c->req, "token");
	enum vs_acct r;

	if (token == NULL || *token == '\0') {
		vs_res_redirect(c->res, 302, "/forgot");
		return;
	}
	r = vs_acct_reset_check(c, token);
	if (r == VS_ACCT_OK)
		reset_form(c, 200, NULL, token);
	else if (r == VS_ACCT_INVALID_TOKEN || r == VS_ACCT_EXPIRED)
		vs_res_redirect(c->res, 302, "/forgot");
	else
		vs_page_db_fail(c, r == VS_ACCT_BUSY);
}

static void
reset_submit(struct vs_ctx *c, const struct vs_kvlist *form)
{
	const char *token = vs_form_field(form, "token");
	const char *pw = vs_form_field(form, "password");
	const char *confirm = vs_form_field(form, "confirm");
	enum vs_acct r;

	if (*token == '\0' || *pw == '\0' || *confirm == '\0') {
		reset_form(c, 200, "error.allFieldsRequired", token);
		return;
	}
	if (!vs_page_rate_limit(c, &VS_RL_RESET, NULL))
		return;
	if (vs_password_policy(pw) != VS_PW_OK) {
		reset_form(c, 200, "error.passwordInvalid", token);
		return;
	}
	if (strcmp(pw, confirm) != 0) {
		reset_form(c, 200, "error.passwordMismatch", token);
		return;
	}
	r = vs_acct_reset(c, token, pw);
	if (r == VS_ACCT_OK)
		vs_res_redirect(c->res, 303, "/reset/done");
	else if (r == VS_ACCT_INVALID_TOKEN || r == VS_ACCT_EXPIRED)
		vs_res_redirect(c->res, 302, "/forgot");
	else
		vs_page_db_fail(c, r == VS_ACCT_BUSY);
}

void
vs_handle_reset_page(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };

	/* Every /reset answer, redirects and errors included (API.md 1.7):
	 * the address carries a token. */
	vs_page_no_store(c);
	if (strcmp(c->req->method, "GET") == 0) {
		reset_get(c);
	} else if (strcmp(c->req->method, "POST") != 0) {
		method_not_allowed(c, "GET, POST");
	} else if (vs_page_anon_form(c, &form)) {
		reset_submit(c, &form);
	}
	vs_kvlist_free(&form);
	vs_page_no_store(c);	/* again: a 500/503 answer dropped the headers */
}

/* ------------------------------------------------------------------ */
/* Confirm (GET page and form POST of /api/v1/auth/confirm)            */
/* ------------------------------------------------------------------ */

void
vs_web_confirm_page(struct vs_ctx *c)
{
	const char *token = vs_request_query(c->req, "token");
	struct vs_page p;

	vs_page_no_store(c);
	if (token == NULL || *token == '\0') {
		vs_page_message(c, 400, "confirm.invalidTitle",
			     "confirm.invalidText", "/", "nav.home");
		return;
	}
	if (!vs_page_begin(c, &p))
		return;
	vs_page_title(&p, "confirm.title");
	vs_td_str(p.d, "token", token);
	vs_page_send(&p, 200, "confirm");
}

void
vs_web_confirm_form(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };
	const char *token;
	enum vs_acct r;

	if (vs_form_read(c, &form) != VS_FORM_OK) {
		vs_res_error(c->res, 400, "invalid_request", "invalid form");
		goto out;
	}
	if (!vs_csrf_anon_ok(c->req, vs_kv_get(&form, VS_ANON_CSRF_FIELD),
			     c->app->cfg.eff.public_url)) {
		vs_page_csrf_refused(c);
		goto out;
	}
	token = vs_form_field(&form, "token");
	r = *token == '\0' ? VS_ACCT_INVALID_TOKEN : vs_acct_confirm(c, token);
	if (r == VS_ACCT_OK)
		vs_res_redirect(c->res, 303, "/confirm/result");
	else if (r == VS_ACCT_INVALID_TOKEN || r == VS_ACCT_EXPIRED)
		vs_page_message(c, 400, "confirm.invalidTitle",
			     "confirm.invalidText", "/", "nav.home");
	else
		vs_page_db_fail(c, r == VS_ACCT_BUSY);
out:
	vs_kvlist_free(&form);
}

/* ------------------------------------------------------------------ */
/* Logout and locale                                                  */
/* ------------------------------------------------------------------ */

void
vs_handle_logout(struct vs_ctx *c)
{
	const char *tok = vs_request_cookie(c->req, VS_USER_SESSION_COOKIE);
	struct vs_kvlist form = { 0 };
	struct vs_session s;
	bool valid = false, form_ok = true;
	enum vs_db_status st;
	enum vs_csrf cr;

	st = vs_session_validate(&c->app->db, VS_SCOPE_USER, tok, &s, &valid);
	if (st != VS_DB_OK) {
		vs_page_db_fail(c, st == VS_DB_BUSY);
		return;
	}
	if (!valid) {
		vs_res_redirect(c->res, 302, "/login");
		return;
	}
	if (vs_is_form_content(c->req->content_type)) {
		enum vs_form_rc fr = vs_form_read(c, &form);
		if (fr == VS_FORM_TOO_LARGE) {
			vs_res_error(c->res, 413, "request_too_large",
				     "request body is too large");
			goto out;
		}
		form_ok = fr == VS_FORM_OK;
	}
	cr = vs_csrf_check(c->req, &s, c->app->cfg.eff.public_url, &form,
			   form_ok);
	if (cr != VS_CSRF_OK) {
		vs_csrf_answer(c->res, cr);
		goto out;
	}
	st = vs_session_delete(&c->app->db, tok);
	if (st != VS_DB_OK) {
		vs_page_db_fail(c, st == VS_DB_BUSY);
		goto out;
	}
	if (!clear_session_cookies(c))
		vs_page_internal(c);
	else
		vs_res_redirect(c->res, 302, "/login");
out:
	vs_kvlist_free(&form);
	vs_session_free(&s);
}

/* "from" is followed only when it is a path on this site: it starts
 * with one '/', and (beyond the contract's "not //") holds no byte a
 * browser could read as another host ("/\evil") or that cannot go into
 * a header. */
static const char *
safe_from(const char *from)
{
	if (from == NULL || from[0] != '/' || from[1] == '/' || from[1] == '\\')
		return "/";
	for (const unsigned char *p = (const unsigned char *)from; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return "/";
	return from;
}

void
vs_handle_locale(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };
	const char *v;

	if (vs_form_read(c, &form) != VS_FORM_OK) {
		/* The contract's odd status for this one: 200. */
		vs_page_message(c, 200, "error.badRequestTitle",
			     "error.badRequestText", "/", "nav.home");
		goto out;
	}
	if (!vs_csrf_anon_ok(c->req, vs_kv_get(&form, VS_ANON_CSRF_FIELD),
			     c->app->cfg.eff.public_url)) {
		vs_page_csrf_refused(c);
		goto out;
	}
	v = vs_locale_cookie_value(vs_kv_get(&form, "locale"));
	if (!set_cookie(c, VS_LOCALE_COOKIE, v, LOCALE_COOKIE_MAX_AGE, true, "Lax"))
		vs_page_internal(c);
	else
		vs_res_redirect(c->res, 303, safe_from(vs_kv_get(&form, "from")));
out:
	vs_kvlist_free(&form);
}
