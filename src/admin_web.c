/*
 * admin_web.c - see admin_web.h.
 *
 * Identity: an admin is an entry of config.yml's admin list, re-read
 * whenever the file changes (vs_config_refresh_admins), so removing an
 * admin or giving it a new password by any means ends its sessions at
 * its next request. An admin session's CSRF token is derived from its
 * token and the admin's password hash (vs_session_create_bound), which
 * is how a session remembers the hash it was made with without a new
 * column in server_sessions.
 *
 * Every answer here carries Cache-Control: no-store (API.md 1.7), set
 * first and again last, because a store failure page drops the headers
 * written before it.
 */
#include "admin_web.h"
#include "audit.h"
#include "config.h"
#include "csrf.h"
#include "devices.h"
#include "handler.h"
#include "health.h"
#include "log.h"
#include "mail.h"
#include "page.h"
#include "password.h"
#include "ratelimit.h"
#include "stats.h"
#include "version.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_COOKIE_MAX_AGE 86400L
#define RECENT_ROWS 5
/* The dashboard warns above this many rows in server_ops. */
#define MANY_OPERATIONS INT64_C(100000)

static void
no_store(struct vs_ctx *c)
{
	vs_page_no_store(c);
}

/* 405 for the console's routes (registered as ANY_METHOD so that this
 * answer is no-store too); true when it answered. */
static bool
wrong_method(struct vs_ctx *c, const char *allow)
{
	if (vs_method_allowed(allow, c->req->method))
		return false;
	vs_res_method_not_allowed(c->res, allow, false);
	return true;
}

/* ------------------------------------------------------------------ */
/* Identity and sessions                                              */
/* ------------------------------------------------------------------ */

/* Brings the admin list up to date with config.yml; false (logged)
 * when the file cannot be read: nobody is an admin until it can. */
static bool
refresh_admins(struct vs_ctx *c)
{
	char err[512];

	if (vs_config_refresh_admins(&c->app->cfg, err, sizeof(err)))
		return true;
	vs_log_error("admin: cannot re-read the administrators: %s", err);
	return false;
}

static bool
is_entry_of(const struct vs_admin *a, const char *username)
{
	return a->username != NULL && a->password_hash != NULL &&
	       strcmp(a->username, username) == 0;
}

/* Does the session still belong to an admin of config.yml with the
 * password hash it was made with? */
static bool
binding_holds(const struct vs_config *cfg, const struct vs_session *s,
	      const char *token)
{
	for (size_t i = 0; i < cfg->eff.n_admins; i++) {
		const struct vs_admin *a = &cfg->eff.admins[i];

		if (is_entry_of(a, s->subject_id) &&
		    vs_session_bound_to(s, token, a->password_hash))
			return true;
	}
	return false;
}

enum vs_db_status
vs_admin_session(struct vs_ctx *c, struct vs_session *s, bool *valid)
{
	const char *tok = vs_request_cookie(c->req, VS_ADMIN_SESSION_COOKIE);
	enum vs_db_status st;
	bool ok = false;

	*valid = false;
	st = vs_session_validate(&c->app->db, VS_SCOPE_ADMIN, tok, s, &ok);
	if (st != VS_DB_OK || !ok)
		return st;
	if (!refresh_admins(c)) {
		vs_session_free(s);
		return VS_DB_ERROR;
	}
	if (!binding_holds(&c->app->cfg, s, tok)) {
		/* D31: its admin left config.yml or has a new password; the
		 * session is over for good, not just for this request. */
		if (vs_session_delete(&c->app->db, tok) != VS_DB_OK)
			vs_log_warn("admin: could not delete an orphaned session");
		vs_session_free(s);
		return VS_DB_OK;
	}
	vs_session_touch(&c->app->db, s);
	*valid = true;
	return VS_DB_OK;
}

/* The config.yml entry whose password matches, among every entry with
 * exactly this user name (DATA.md 3); NULL when none. An unknown name
 * costs the same bcrypt run as a known one. */
static const struct vs_admin *
check_admin(const struct vs_config *cfg, const char *username,
	    const char *password)
{
	const struct vs_admin *hit = NULL;
	bool seen = false;

	for (size_t i = 0; i < cfg->eff.n_admins; i++) {
		const struct vs_admin *a = &cfg->eff.admins[i];

		if (!is_entry_of(a, username))
			continue;
		seen = true;
		if (hit == NULL && vs_password_verify(password, a->password_hash))
			hit = a;
	}
	if (!seen)
		vs_password_dummy(password);
	return hit;
}

/* ------------------------------------------------------------------ */
/* Cookies (API.md 11: Path /admin)                                   */
/* ------------------------------------------------------------------ */

static bool
set_admin_cookies(struct vs_ctx *c, const char *token, const char *csrf)
{
	return vs_page_cookie(c, VS_ADMIN_SESSION_COOKIE, token,
			      VS_ADMIN_COOKIE_PATH, ADMIN_COOKIE_MAX_AGE, true,
			      "Lax") &&
	       vs_page_cookie(c, VS_CSRF_COOKIE, csrf, VS_ADMIN_COOKIE_PATH,
			      ADMIN_COOKIE_MAX_AGE, false, "Strict");
}

/* Logout: empty values, Max-Age=0, the same path, no SameSite,
 * HttpOnly on the session cookie only. */
static bool
clear_admin_cookies(struct vs_ctx *c)
{
	return vs_page_cookie(c, VS_ADMIN_SESSION_COOKIE, "",
			      VS_ADMIN_COOKIE_PATH, 0, true, NULL) &&
	       vs_page_cookie(c, VS_CSRF_COOKIE, "", VS_ADMIN_COOKIE_PATH, 0,
			      false, NULL);
}

/* ------------------------------------------------------------------ */
/* Page frame                                                         */
/* ------------------------------------------------------------------ */

/* Starts a console page: the admin navigation replaces the people's
 * one; signed_in adds the dashboard link and the sign-out form. */
static bool
admin_page(struct vs_ctx *c, struct vs_page *p, const char *title_key,
	   bool signed_in)
{
	if (!vs_page_begin(c, p))
		return false;
	vs_page_title(p, title_key);
	vs_td_bool(p->d, "admin_area", true);
	vs_td_bool(p->d, "admin_signed_in", signed_in);
	if (signed_in)
		vs_td_str(p->d, "csrf_token",
			  vs_request_cookie(c->req, VS_CSRF_COOKIE));
	return true;
}

/* ------------------------------------------------------------------ */
/* Sign-in                                                            */
/* ------------------------------------------------------------------ */

static void
login_form(struct vs_ctx *c, int status, const char *flash,
	   const char *username)
{
	struct vs_page p;

	if (!admin_page(c, &p, "admin.loginTitle", false))
		return;
	if (flash != NULL)
		vs_page_flash_error(&p, flash);
	vs_td_str(p.d, "username", username);
	vs_page_send(&p, status, "admin_login");
}

static void
login_submit(struct vs_ctx *c, const struct vs_kvlist *form)
{
	char token[VS_SESSION_TOKEN_HEX + 1], csrf[VS_SESSION_TOKEN_HEX + 1];
	const char *name = vs_form_field(form, "username");
	const struct vs_admin *a;
	enum vs_db_status s;

	if (!vs_page_rate_limit(c, &VS_RL_LOGIN, name))
		return;
	if (!refresh_admins(c)) {
		vs_page_internal(c);
		return;
	}
	a = check_admin(&c->app->cfg, name, vs_form_field(form, "password"));
	if (a == NULL) {
		login_form(c, 401, "error.invalidCredentials", name);
		return;
	}
	s = vs_session_create_bound(&c->app->db, VS_SCOPE_ADMIN, a->username,
				    a->password_hash, token, csrf);
	if (s != VS_DB_OK) {
		vs_page_db_fail(c, s == VS_DB_BUSY);
		return;
	}
	if (!set_admin_cookies(c, token, csrf))
		vs_page_internal(c);
	else
		vs_res_redirect(c->res, 303, "/admin/dashboard");
	memset(token, 0, sizeof(token));
	memset(csrf, 0, sizeof(csrf));
}

void
vs_handle_admin_login(struct vs_ctx *c)
{
	struct vs_kvlist form = { 0 };
	struct vs_session s;
	bool valid = false;
	enum vs_db_status st;

	no_store(c);
	if (wrong_method(c, "GET, POST"))
		return;
	if (strcmp(c->req->method, "GET") == 0) {
		st = vs_admin_session(c, &s, &valid);
		if (st != VS_DB_OK)
			vs_page_db_fail(c, st == VS_DB_BUSY);
		else if (valid)
			vs_res_redirect(c->res, 302, "/admin/dashboard");
		else
			login_form(c, 200, NULL, "");
		vs_session_free(&s);
	} else if (vs_page_anon_form(c, &form)) {
		login_submit(c, &form);
	}
	vs_kvlist_free(&form);
	no_store(c);
}

void
vs_handle_admin_root(struct vs_ctx *c)
{
	no_store(c);
	if (!wrong_method(c, "GET"))
		vs_res_redirect(c->res, 302, "/admin/dashboard");
}

/* ------------------------------------------------------------------ */
/* Sign-out                                                           */
/* ------------------------------------------------------------------ */

static void
logout(struct vs_ctx *c)
{
	const char *tok = vs_request_cookie(c->req, VS_ADMIN_SESSION_COOKIE);
	struct vs_kvlist form = { 0 };
	struct vs_session s;
	bool valid = false, form_ok = true;
	enum vs_db_status st;
	enum vs_csrf cr;

	st = vs_admin_session(c, &s, &valid);
	if (st != VS_DB_OK) {
		vs_page_db_fail(c, st == VS_DB_BUSY);
		return;
	}
	if (!valid) {
		vs_res_redirect(c->res, 302, "/admin/login");
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
	if (!clear_admin_cookies(c))
		vs_page_internal(c);
	else
		vs_res_redirect(c->res, 303, "/admin/login");
out:
	vs_kvlist_free(&form);
	vs_session_free(&s);
}

void
vs_handle_admin_logout(struct vs_ctx *c)
{
	no_store(c);
	if (!wrong_method(c, "POST"))
		logout(c);
	no_store(c);
}

/* ------------------------------------------------------------------ */
/* Dashboard                                                          */
/* ------------------------------------------------------------------ */

struct dashboard {
	struct vs_stats stats;
	struct vs_health health;
	bool smtp_host_set;
	struct vs_audit_row *audit;
	size_t n_audit;
	struct vs_device_summary *devices;
	size_t n_devices;
};

static void
dashboard_free(struct dashboard *d)
{
	vs_stats_free(&d->stats);
	vs_audit_rows_free(d->audit, d->n_audit);
	vs_device_summaries_free(d->devices, d->n_devices);
	memset(d, 0, sizeof(*d));
}

/* Reads everything the page shows; on failure d is freed and the
 * status says why (busy or not). */
static enum vs_db_status
dashboard_load(struct vs_ctx *c, struct dashboard *d)
{
	struct vs_smtp_settings smtp;
	enum vs_db_status st;

	memset(d, 0, sizeof(*d));
	vs_health_check(c->app, &d->health);
	st = vs_stats_collect(&c->app->db, c->app->blobs_dir, 0, &d->stats);
	if (st == VS_DB_OK)
		st = vs_audit_recent(&c->app->db, RECENT_ROWS, &d->audit,
				     &d->n_audit);
	if (st == VS_DB_OK)
		st = vs_device_recent(&c->app->db, RECENT_ROWS, &d->devices,
				      &d->n_devices);
	if (st == VS_DB_OK) {
		memset(&smtp, 0, sizeof(smtp));
		if (vs_smtp_settings_load(c->app, &smtp)) {
			d->smtp_host_set = smtp.host[0] != '\0';
			vs_smtp_settings_free(&smtp);
		} else {
			st = VS_DB_ERROR;
		}
	}
	if (st != VS_DB_OK)
		dashboard_free(d);
	return st;
}

static void
add_count(struct vs_page *p, const char *name, const char *label_key,
	  int64_t v)
{
	struct vs_tdata *it = vs_td_item(p->d, "stats");

	if (it == NULL)
		return;	/* d is flagged: the render fails into a 500 */
	vs_td_str(it, "name", name);
	vs_td_str(it, "label", vs_page_tr(p, label_key));
	vs_td_printf(it, "value", "%" PRId64, v);
}

/* Bytes for people: "1.5 MiB" (the exact count stays in the title). */
static void
add_bytes(struct vs_page *p, const char *name, const char *label_key,
	  int64_t v)
{
	static const char *const units[] = { "admin.unitKiB", "admin.unitMiB",
					     "admin.unitGiB", "admin.unitTiB" };
	struct vs_tdata *it = vs_td_item(p->d, "stats");
	double x = (double)v;
	int u = -1;

	if (it == NULL)
		return;
	while (x >= 1024.0 && u + 1 < (int)(sizeof(units) / sizeof(units[0]))) {
		x /= 1024.0;
		u++;
	}
	vs_td_str(it, "name", name);
	vs_td_str(it, "label", vs_page_tr(p, label_key));
	vs_td_printf(it, "exact", "%" PRId64, v);
	if (u < 0)
		vs_td_printf(it, "value", "%" PRId64 " %s", v,
			     vs_page_tr(p, "admin.unitBytes"));
	else
		vs_td_printf(it, "value", "%.1f %s", x, vs_page_tr(p, units[u]));
}

static void
add_text(struct vs_page *p, const char *name, const char *label_key,
	 const char *raw)
{
	struct vs_tdata *it = vs_td_item(p->d, "stats");

	if (it == NULL)
		return;
	vs_td_str(it, "name", name);
	vs_td_str(it, "label", vs_page_tr(p, label_key));
	if (raw == NULL || raw[0] == '\0') {
		vs_td_str(it, "value", vs_page_tr(p, "admin.never"));
		return;
	}
	vs_page_set_time(it, "time", raw);
	vs_td_bool(it, "is_time", true);
}

static void
add_stats(struct vs_page *p, const struct vs_stats *s)
{
	vs_td_list(p->d, "stats");
	add_count(p, "users", "admin.statUsers", s->users);
	add_count(p, "active_users", "admin.statActiveUsers", s->active_users);
	add_count(p, "blocked_users", "admin.statBlockedUsers",
		  s->blocked_users);
	add_count(p, "unconfirmed_users", "admin.statUnconfirmedUsers",
		  s->unconfirmed_users);
	add_count(p, "active_devices", "admin.statActiveDevices",
		  s->active_devices);
	add_count(p, "revoked_devices", "admin.statRevokedDevices",
		  s->revoked_devices);
	add_count(p, "vaults", "admin.statVaults", s->vaults);
	add_count(p, "operations", "admin.statOperations", s->operations);
	add_count(p, "operations_24h", "admin.statOperations24h",
		  s->operations_24h);
	add_count(p, "blobs", "admin.statBlobs", s->blobs);
	add_count(p, "blob_references", "admin.statBlobReferences",
		  s->blob_references);
	add_count(p, "orphan_blobs", "admin.statOrphanBlobs", s->orphan_blobs);
	add_count(p, "temp_uploads", "admin.statTempUploads", s->temp_uploads);
	add_count(p, "expired_sessions", "admin.statExpiredSessions",
		  s->expired_sessions);
	add_count(p, "expired_email_tokens", "admin.statExpiredEmailTokens",
		  s->expired_email_tokens);
	add_count(p, "audit_events", "admin.statAuditEvents", s->audit_events);
	add_bytes(p, "database_bytes", "admin.statDatabaseBytes",
		  s->database_bytes);
	add_bytes(p, "blob_bytes", "admin.statBlobBytes", s->blob_bytes);
	add_text(p, "last_sync_activity", "admin.statLastSync",
		 s->last_sync_activity);
	add_text(p, "last_cleanup_at", "admin.statLastCleanup",
		 s->last_cleanup_at);
}

static void
add_warning(struct vs_page *p, const char *key)
{
	struct vs_tdata *it = vs_td_item(p->d, "warnings");

	if (it != NULL)
		vs_td_str(it, "text", vs_page_tr(p, key));
}

static void
add_readiness(struct vs_page *p, const struct dashboard *d)
{
	bool ready = d->health.database_reachable &&
		     d->health.blob_storage_writable;

	vs_td_bool(p->d, "ready", ready);
	vs_td_bool(p->d, "db_ok", d->health.database_reachable);
	vs_td_bool(p->d, "blobs_ok", d->health.blob_storage_writable);
	vs_td_printf(p->d, "schema_version", "%d", d->health.schema_version);
	vs_td_str(p->d, "version", vs_version());
	vs_td_list(p->d, "warnings");
	if (!ready)
		add_warning(p, "admin.warnDegraded");
	if (!d->smtp_host_set)
		add_warning(p, "admin.warnSmtpUnset");
	if (d->stats.operations > MANY_OPERATIONS)
		add_warning(p, "admin.warnManyOperations");
}

static void
add_audit(struct vs_page *p, const struct dashboard *d)
{
	vs_td_list(p->d, "audit");
	vs_td_bool(p->d, "any_audit", d->n_audit > 0);
	for (size_t i = 0; i < d->n_audit; i++) {
		const struct vs_audit_row *r = &d->audit[i];
		const char *sev = vs_audit_severity(r->event_type);
		struct vs_tdata *it = vs_td_item(p->d, "audit");

		if (it == NULL)
			return;
		vs_page_set_time(it, "created_at", r->created_at);
		vs_td_str(it, "event", r->event_type);
		vs_td_str(it, "severity", sev);
		if (strcmp(sev, "error") == 0)
			vs_td_str(it, "severity_text",
				  vs_page_tr(p, "admin.severityError"));
		else if (strcmp(sev, "warning") == 0)
			vs_td_str(it, "severity_text",
				  vs_page_tr(p, "admin.severityWarning"));
		else
			vs_td_str(it, "severity_text",
				  vs_page_tr(p, "admin.severityInfo"));
		vs_td_str(it, "user_id", r->user_id);
		vs_td_str(it, "device_id", r->device_id);
		vs_td_str(it, "ip", r->ip);
		vs_td_str(it, "message", r->message);
	}
}

static void
add_devices(struct vs_page *p, const struct dashboard *d)
{
	vs_td_list(p->d, "devices");
	vs_td_bool(p->d, "any_devices", d->n_devices > 0);
	for (size_t i = 0; i < d->n_devices; i++) {
		const struct vs_device_summary *r = &d->devices[i];
		struct vs_tdata *it = vs_td_item(p->d, "devices");

		if (it == NULL)
			return;
		vs_td_str(it, "id", r->id);
		vs_td_str(it, "name", r->name);
		vs_td_str(it, "user", r->user);
		vs_td_str(it, "vault_id", r->vault_id);
		vs_td_str(it, "client_version", r->client_version);
		vs_page_set_time(it, "last_seen", r->last_seen);
		vs_page_set_time(it, "created_at", r->created_at);
		vs_td_bool(it, "revoked", r->revoked_at[0] != '\0');
	}
}

static void
dashboard(struct vs_ctx *c)
{
	struct vs_session s;
	struct dashboard d;
	struct vs_page p;
	bool valid = false;
	enum vs_db_status st;

	st = vs_admin_session(c, &s, &valid);
	if (st != VS_DB_OK) {
		vs_page_db_fail(c, st == VS_DB_BUSY);
		return;
	}
	if (!valid) {
		vs_res_redirect(c->res, 302, "/admin/login");
		return;
	}
	st = dashboard_load(c, &d);
	if (st != VS_DB_OK) {
		vs_page_db_fail(c, st == VS_DB_BUSY);
	} else if (admin_page(c, &p, "admin.dashboardTitle", true)) {
		vs_td_str(p.d, "admin_name", s.subject_id);
		add_readiness(&p, &d);
		add_stats(&p, &d.stats);
		add_audit(&p, &d);
		add_devices(&p, &d);
		vs_page_send(&p, 200, "admin_dashboard");
	}
	dashboard_free(&d);
	vs_session_free(&s);
}

void
vs_handle_admin_dashboard(struct vs_ctx *c)
{
	no_store(c);
	if (!wrong_method(c, "GET"))
		dashboard(c);
	no_store(c);
}

/* ------------------------------------------------------------------ */
/* JSON                                                               */
/* ------------------------------------------------------------------ */

void
vs_handle_admin_api_stats(struct vs_ctx *c)
{
	struct vs_session s;
	struct vs_stats stats;
	bool valid = false;
	enum vs_db_status st;

	no_store(c);
	if (wrong_method(c, "GET"))
		return;
	st = vs_admin_session(c, &s, &valid);
	if (st != VS_DB_OK) {
		vs_h_db_fail(c, st);
		goto out;
	}
	if (!valid) {
		/* D7: JSON, never a redirect to a login page. */
		vs_res_error(c->res, 401, "unauthorized", "session required");
		goto out;
	}
	st = vs_stats_collect(&c->app->db, c->app->blobs_dir, 0, &stats);
	if (st != VS_DB_OK) {
		vs_h_db_fail(c, st);
		goto out;
	}
	vs_res_json(c->res, 200);
	if (!vs_stats_json(&stats, &c->res->body) ||
	    !vs_buf_puts(&c->res->body, "\n"))
		vs_res_internal(c->res);
	vs_stats_free(&stats);
out:
	vs_session_free(&s);
	no_store(c);
}
