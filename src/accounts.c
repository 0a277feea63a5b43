/*
 * accounts.c - see accounts.h. server_users is users.c's: the lookup by
 * exact e-mail for "forgot" (vs_user_find_login would try user names
 * first, D29) and the password update of a token reset go through it.
 */
#include "accounts.h"
#include "audit.h"
#include "csrf.h"
#include "devices.h"
#include "handler.h"
#include "json.h"
#include "locale.h"
#include "log.h"
#include "mail.h"
#include "page.h"
#include "password.h"
#include "web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* E-mail tokens (server_email_tokens)                                */
/* ------------------------------------------------------------------ */

static const char sql_token_insert[] =
	"INSERT INTO server_email_tokens (token_hash, user_id, purpose,"
	" expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)";
static const char sql_token_find[] =
	"SELECT user_id, expires_at FROM server_email_tokens"
	" WHERE token_hash = ?1 AND purpose = ?2";
/* "Only if expires_at is unchanged" (API.md 4.5): a token another
 * request already used or replaced does not count. */
static const char sql_token_use[] =
	"DELETE FROM server_email_tokens WHERE token_hash = ?1 AND purpose = ?2"
	" AND expires_at = ?3";
static const char sql_token_drop_resets[] =
	"DELETE FROM server_email_tokens WHERE user_id = ?1 AND purpose = 'reset'";
static const char sql_devices[] =
	"SELECT d.id, d.name, d.vault_id, d.client_version, d.last_seen,"
	" d.revoked_at, d.created_at"
	" FROM server_user_devices l JOIN server_devices d ON d.id = l.device_id"
	" WHERE l.user_id = ?1 ORDER BY d.created_at DESC, d.id";

/* Runs sql with up to three text parameters (NULL ends the list) and no
 * result rows; *changes (optional) gets the changed-row count. */
static enum vs_db_status
exec3(struct vs_db *db, const char *sql, const char *a, const char *b,
      const char *c3, int *changes, const char *ctx)
{
	const char *v[3] = { a, b, c3 };
	sqlite3_stmt *st = vs_db_stmt(db, sql);
	enum vs_db_status s;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	for (int i = 0; i < 3 && v[i] != NULL; i++) {
		rc = sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
		if (rc != SQLITE_OK)
			return vs_db_status_of(db, rc, ctx);
	}
	rc = sqlite3_step(st);
	s = rc == SQLITE_DONE ? VS_DB_OK : vs_db_status_of(db, rc, ctx);
	if (s == VS_DB_OK && changes != NULL)
		*changes = sqlite3_changes(db->h);
	(void)sqlite3_reset(st);	/* repeats rc, handled above */
	sqlite3_clear_bindings(st);
	return s;
}

/* Issues a token for user_id (inside the caller's transaction). */
static enum vs_db_status
token_issue(struct vs_db *db, const char *user_id, const char *purpose,
	    long ttl, char token[VS_EMAIL_TOKEN_HEX + 1])
{
	char hash[65], now[VS_TS_LEN], exp[VS_TS_LEN];
	sqlite3_stmt *st;
	const char *v[5];
	enum vs_db_status s;
	time_t t = time(NULL);
	int rc;

	if (!vs_random_hex(VS_EMAIL_TOKEN_HEX / 2, token)) {
		vs_log_error("accounts: random generator failed");
		return VS_DB_ERROR;
	}
	vs_sha256_hex(token, VS_EMAIL_TOKEN_HEX, hash);
	vs_timestamp(t, now);
	vs_timestamp(t + ttl, exp);
	v[0] = hash;
	v[1] = user_id;
	v[2] = purpose;
	v[3] = exp;
	v[4] = now;
	st = vs_db_stmt(db, sql_token_insert);
	if (st == NULL)
		return VS_DB_ERROR;
	for (int i = 0; i < 5; i++) {
		rc = sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
		if (rc != SQLITE_OK)
			return vs_db_status_of(db, rc, "token bind");
	}
	rc = sqlite3_step(st);
	s = rc == SQLITE_DONE ? VS_DB_OK : vs_db_status_of(db, rc, "token insert");
	(void)sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return s;
}

struct token_row {
	char user_id[256];
	char expires_at[64];
	bool found;
};

static enum vs_db_status
token_find(struct vs_db *db, const char *token, const char *purpose,
	   struct token_row *row)
{
	char hash[65];
	sqlite3_stmt *st = vs_db_stmt(db, sql_token_find);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	memset(row, 0, sizeof(*row));
	/* Only our own token shape can match: no query for anything else. */
	if (strlen(token) != VS_EMAIL_TOKEN_HEX ||
	    !vs_is_lower_hex(token, VS_EMAIL_TOKEN_HEX))
		return VS_DB_OK;
	if (st == NULL)
		return VS_DB_ERROR;
	vs_sha256_hex(token, VS_EMAIL_TOKEN_HEX, hash);
	if (sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "token bind");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *u = sqlite3_column_text(st, 0);
		const unsigned char *e = sqlite3_column_text(st, 1);
		snprintf(row->user_id, sizeof(row->user_id), "%s",
			 u != NULL ? (const char *)u : "");
		snprintf(row->expires_at, sizeof(row->expires_at), "%s",
			 e != NULL ? (const char *)e : "");
		row->found = true;
	} else if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "token lookup");
	}
	(void)sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return s;
}

/* Expiry per API.md 4.2 ("now after expires_at") and 4.5 ("now not
 * before expires_at"); an unreadable expiry counts as expired. */
static bool
token_expired(const char *expires_at, bool at_expiry_counts)
{
	time_t exp, now = time(NULL);

	if (!vs_parse_ts(expires_at, &exp))
		return true;
	return at_expiry_counts ? now >= exp : now > exp;
}

static enum vs_acct
acct_of(enum vs_db_status s)
{
	return s == VS_DB_OK ? VS_ACCT_OK :
	       s == VS_DB_BUSY ? VS_ACCT_BUSY : VS_ACCT_ERROR;
}

/* Ends a write transaction: commit on VS_ACCT_OK, else roll back. */
static enum vs_acct
finish(struct vs_db *db, enum vs_acct r)
{
	if (r != VS_ACCT_OK) {
		vs_db_rollback(db);
		return r;
	}
	return acct_of(vs_db_commit(db));
}

/* ------------------------------------------------------------------ */
/* Account operations                                                 */
/* ------------------------------------------------------------------ */

const char *
vs_acct_locale(const struct vs_ctx *c)
{
	return vs_locale_pick(vs_request_cookie(c->req, "verstak_locale"),
			      c->req->accept_language,
			      c->app->cfg.eff.default_locale);
}

static void
send_mail(struct vs_ctx *c, enum vs_mail_kind kind, const char *to,
	  const char *locale, const char *token)
{
	/* The answer to the client is the same whatever happens to the
	 * mail (API.md 13.2); the mail module logs its own failures. */
	if (!vs_mail_send_token(c->app, kind, to, locale, token))
		vs_log_warn("a %s mail could not be handed over",
			    kind == VS_MAIL_CONFIRM ? "confirmation" : "reset");
}

enum vs_acct
vs_acct_register(struct vs_ctx *c, const char *username, const char *email,
		 const char *password, const char *locale)
{
	struct vs_db *db = &c->app->db;
	char hash[64], id[25], token[VS_EMAIL_TOKEN_HEX + 1];
	enum vs_db_status s;
	enum vs_acct r = VS_ACCT_OK;

	/* bcrypt before the write lock: ~60 ms that other workers would
	 * otherwise wait out. */
	if (!vs_password_hash(password, hash, sizeof(hash)))
		return VS_ACCT_ERROR;
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return acct_of(s);
	switch (vs_user_insert(db, username, email, hash, false, id)) {
	case VS_UC_OK:
		break;
	case VS_UC_TAKEN:
		r = VS_ACCT_TAKEN;
		break;
	case VS_UC_BUSY:
		r = VS_ACCT_BUSY;
		break;
	case VS_UC_ERROR:
		r = VS_ACCT_ERROR;
		break;
	}
	if (r == VS_ACCT_OK)
		r = acct_of(token_issue(db, id, "confirm",
					VS_CONFIRM_TTL_SECONDS, token));
	r = finish(db, r);
	if (r == VS_ACCT_OK)
		send_mail(c, VS_MAIL_CONFIRM, email, locale, token);
	memset(token, 0, sizeof(token));
	return r;
}

enum vs_acct
vs_acct_forgot(struct vs_ctx *c, const char *email, const char *locale)
{
	struct vs_db *db = &c->app->db;
	char id[256], token[VS_EMAIL_TOKEN_HEX + 1];
	enum vs_db_status s;
	enum vs_acct r;
	bool found = false;

	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return acct_of(s);
	s = vs_user_id_by_email(db, email, id, sizeof(id), &found);
	if (s == VS_DB_OK && found)
		s = token_issue(db, id, "reset", VS_RESET_TTL_SECONDS, token);
	r = finish(db, acct_of(s));
	if (r == VS_ACCT_OK && found)
		send_mail(c, VS_MAIL_RESET, email, locale, token);
	memset(token, 0, sizeof(token));
	return r;
}

enum vs_acct
vs_acct_confirm(struct vs_ctx *c, const char *token)
{
	struct vs_db *db = &c->app->db;
	struct token_row row;
	enum vs_db_status s;
	bool found = false;
	int changes = 0;
	char hash[65];

	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return acct_of(s);
	s = token_find(db, token, "confirm", &row);
	if (s != VS_DB_OK)
		return finish(db, acct_of(s));
	if (!row.found)
		return finish(db, VS_ACCT_INVALID_TOKEN);
	if (token_expired(row.expires_at, false))
		return finish(db, VS_ACCT_EXPIRED);
	vs_sha256_hex(token, strlen(token), hash);
	s = exec3(db, sql_token_use, hash, "confirm", row.expires_at, &changes,
		  "confirm token");
	if (s != VS_DB_OK)
		return finish(db, acct_of(s));
	if (changes == 0)
		return finish(db, VS_ACCT_INVALID_TOKEN);
	s = vs_user_set_confirmed(db, row.user_id, &found);
	if (s != VS_DB_OK)
		return finish(db, acct_of(s));
	/* A token whose user is gone confirms nothing. */
	return finish(db, found ? VS_ACCT_OK : VS_ACCT_INVALID_TOKEN);
}

enum vs_acct
vs_acct_reset_check(struct vs_ctx *c, const char *token)
{
	struct token_row row;
	enum vs_db_status s = token_find(&c->app->db, token, "reset", &row);

	if (s != VS_DB_OK)
		return acct_of(s);
	if (!row.found)
		return VS_ACCT_INVALID_TOKEN;
	return token_expired(row.expires_at, true) ? VS_ACCT_EXPIRED : VS_ACCT_OK;
}

enum vs_acct
vs_acct_reset(struct vs_ctx *c, const char *token, const char *new_password)
{
	struct vs_db *db = &c->app->db;
	char newhash[64], th[65];
	struct token_row row;
	enum vs_db_status s;
	int changes = 0;
	bool found = false;

	if (!vs_password_hash(new_password, newhash, sizeof(newhash)))
		return VS_ACCT_ERROR;
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return acct_of(s);
	s = token_find(db, token, "reset", &row);
	if (s != VS_DB_OK)
		return finish(db, acct_of(s));
	if (!row.found)
		return finish(db, VS_ACCT_INVALID_TOKEN);
	if (token_expired(row.expires_at, true))
		return finish(db, VS_ACCT_EXPIRED);
	vs_sha256_hex(token, strlen(token), th);
	s = exec3(db, sql_token_use, th, "reset", row.expires_at, &changes,
		  "reset token");
	if (s == VS_DB_OK && changes == 0)
		return finish(db, VS_ACCT_INVALID_TOKEN);
	if (s == VS_DB_OK)
		s = vs_user_set_password_hash(db, row.user_id, newhash, &found);
	if (s == VS_DB_OK && !found)
		return finish(db, VS_ACCT_INVALID_TOKEN);
	if (s == VS_DB_OK)
		s = exec3(db, sql_token_drop_resets, row.user_id, NULL, NULL,
			  NULL, "drop reset tokens");
	/* D10: a password change ends every session of the user, in the
	 * same transaction as the change itself. */
	if (s == VS_DB_OK)
		s = vs_user_delete_sessions(db, row.user_id);
	return finish(db, acct_of(s));
}

/* ------------------------------------------------------------------ */
/* Sessions and devices                                               */
/* ------------------------------------------------------------------ */

enum vs_db_status
vs_acct_session_user(struct vs_ctx *c, struct vs_session *s,
		     struct vs_user *u, bool *valid)
{
	const char *tok = vs_request_cookie(c->req, VS_USER_SESSION_COOKIE);
	enum vs_db_status st;
	bool ok = false, found = false;

	*valid = false;
	memset(u, 0, sizeof(*u));
	st = vs_session_validate(&c->app->db, VS_SCOPE_USER, tok, s, &ok);
	if (st != VS_DB_OK || !ok)
		return st;
	st = vs_user_find_id(&c->app->db, s->subject_id, u, &found);
	if (st != VS_DB_OK || !found || u->blocked) {
		/* Blocking and deletion end sessions; a row edited by
		 * another tool must not keep one alive either. */
		vs_user_free(u);
		vs_session_free(s);
		return st;
	}
	vs_session_touch(&c->app->db, s);
	*valid = true;
	return VS_DB_OK;
}

static char *
col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return strdup(t != NULL ? (const char *)t : "");
}

void
vs_acct_devices_free(struct vs_user_device *d, size_t n)
{
	for (size_t i = 0; d != NULL && i < n; i++) {
		free(d[i].id);
		free(d[i].name);
		free(d[i].vault_id);
		free(d[i].client_version);
		free(d[i].last_seen);
		free(d[i].revoked_at);
		free(d[i].created_at);
	}
	free(d);
}

static bool
read_device(sqlite3_stmt *st, struct vs_user_device *d)
{
	d->id = col(st, 0);
	d->name = col(st, 1);
	d->vault_id = col(st, 2);
	d->client_version = col(st, 3);
	d->last_seen = col(st, 4);
	d->revoked_at = col(st, 5);
	d->created_at = col(st, 6);
	return d->id && d->name && d->vault_id && d->client_version &&
	       d->last_seen && d->revoked_at && d->created_at;
}

enum vs_db_status
vs_acct_devices(struct vs_db *db, const char *user_id,
		struct vs_user_device **out, size_t *n)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_devices);
	struct vs_user_device *v = NULL;
	size_t cap = 0, cnt = 0;
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*out = NULL;
	*n = 0;
	if (st == NULL)
		return VS_DB_ERROR;
	if (sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "devices bind");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct vs_user_device *nv = realloc(v, nc * sizeof(*nv));
			if (nv == NULL) {
				s = VS_DB_ERROR;
				break;
			}
			v = nv;
			cap = nc;
		}
		memset(&v[cnt], 0, sizeof(v[cnt]));
		cnt++;
		if (!read_device(st, &v[cnt - 1])) {
			s = VS_DB_ERROR;
			break;
		}
	}
	if (s == VS_DB_OK && rc != SQLITE_DONE)
		s = vs_db_status_of(db, rc, "devices");
	if (s == VS_DB_ERROR && rc == SQLITE_ROW)
		vs_log_error("accounts: out of memory listing devices");
	(void)sqlite3_reset(st);
	if (s != VS_DB_OK) {
		vs_acct_devices_free(v, cnt);
		return s;
	}
	*out = v;
	*n = cnt;
	return VS_DB_OK;
}

/* ------------------------------------------------------------------ */
/* JSON handlers                                                      */
/* ------------------------------------------------------------------ */

static bool
json_fields(struct vs_ctx *c, const cJSON *obj, const char *const *names,
	    const char **out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!vs_json_str(obj, names[i], &out[i])) {
			vs_res_error(c->res, 400, "invalid_json",
				     "invalid JSON request");
			return false;
		}
	}
	return true;
}

static void
json_status(struct vs_ctx *c, const char *status)
{
	vs_res_json(c->res, 200);
	vs_buf_puts(&c->res->body, "{\"status\":");
	vs_json_put_str(&c->res->body, status);
	vs_buf_puts(&c->res->body, "}\n");
}

static void
acct_fail(struct vs_ctx *c, enum vs_acct r)
{
	if (r == VS_ACCT_BUSY)
		vs_res_busy(c->res);
	else
		vs_res_internal(c->res);
}

/* Password policy answer (API.md 13.5); true when the password passes. */
static bool
policy_ok(struct vs_ctx *c, const char *pw)
{
	switch (vs_password_policy(pw)) {
	case VS_PW_OK:
		return true;
	case VS_PW_TOO_SHORT:
		vs_res_error(c->res, 400, "invalid_request", "PASSWORD_TOO_SHORT");
		return false;
	case VS_PW_TOO_LONG:
		vs_res_error(c->res, 400, "invalid_request", "PASSWORD_TOO_LONG");
		return false;
	}
	return false;
}

void
vs_handle_api_register(struct vs_ctx *c)
{
	static const char *const names[] = { "username", "email", "password" };
	const char *f[3];
	char email[256], *name = NULL;
	cJSON *body = NULL;
	enum vs_acct r;

	if (!c->app->cfg.eff.allow_registration) {
		vs_res_error(c->res, 403, "registration_disabled",
			     "registration is disabled");
		return;
	}
	if (!vs_h_json_body(c, &body) || !json_fields(c, body, names, f, 3))
		goto out;
	if (f[0][0] == '\0' || f[1][0] == '\0' || f[2][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request",
			     "username, email and password required");
		goto out;
	}
	if ((name = strdup(f[0])) == NULL) {
		vs_res_internal(c->res);
		goto out;
	}
	if (!vs_username_valid(vs_trim(name))) {
		vs_res_error(c->res, 400, "invalid_request", "invalid username");
		goto out;
	}
	if (!vs_email_normalize(f[1], email, sizeof(email))) {
		vs_res_error(c->res, 400, "invalid_request", "invalid email");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_REGISTER, email) || !policy_ok(c, f[2]))
		goto out;
	r = vs_acct_register(c, name, email, f[2], vs_acct_locale(c));
	if (r == VS_ACCT_TAKEN)
		vs_res_error(c->res, 409, "conflict",
			     "username or email already taken");
	else if (r != VS_ACCT_OK)
		acct_fail(c, r);
	else
		json_status(c, "confirmation_sent");
out:
	free(name);
	cJSON_Delete(body);
}

static void
confirm_json(struct vs_ctx *c)
{
	static const char *const names[] = { "token" };
	const char *f[1];
	cJSON *body = NULL;
	enum vs_acct r;

	if (!vs_h_json_body(c, &body) || !json_fields(c, body, names, f, 1))
		goto out;
	if (f[0][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request", "token required");
		goto out;
	}
	r = vs_acct_confirm(c, f[0]);
	switch (r) {
	case VS_ACCT_OK:
		json_status(c, "confirmed");
		break;
	case VS_ACCT_INVALID_TOKEN:
	case VS_ACCT_TAKEN:
		vs_res_error(c->res, 400, "invalid_request",
			     "invalid or expired token");
		break;
	case VS_ACCT_EXPIRED:
		vs_res_error(c->res, 400, "invalid_request", "token expired");
		break;
	default:
		acct_fail(c, r);
	}
out:
	cJSON_Delete(body);
}

static bool
starts_with_ci(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	return s != NULL && strncasecmp(s, prefix, n) == 0;
}

void
vs_handle_api_confirm(struct vs_ctx *c)
{
	if (strcmp(c->req->method, "GET") == 0)
		vs_web_confirm_page(c);
	else if (starts_with_ci(c->req->content_type, "application/json"))
		confirm_json(c);
	else
		vs_web_confirm_form(c);
}

/* Last login time and the new session, one transaction. */
static enum vs_db_status
login_session(struct vs_ctx *c, const char *user_id,
	      char token[VS_SESSION_TOKEN_HEX + 1],
	      char csrf[VS_SESSION_TOKEN_HEX + 1])
{
	struct vs_db *db = &c->app->db;
	char now[VS_TS_LEN];
	enum vs_db_status s = vs_db_begin_write(db);

	if (s != VS_DB_OK)
		return s;
	vs_now_ts(now);
	s = vs_user_touch_last_seen(db, user_id, now);
	if (s == VS_DB_OK)
		s = vs_session_create(db, VS_SCOPE_USER, user_id, token, csrf);
	if (s != VS_DB_OK) {
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);
}

void
vs_handle_api_login(struct vs_ctx *c)
{
	static const char *const names[] = { "username", "password" };
	char token[VS_SESSION_TOKEN_HEX + 1], csrf[VS_SESSION_TOKEN_HEX + 1];
	const char *f[2];
	cJSON *body = NULL;
	struct vs_user u;
	enum vs_db_status s;

	memset(&u, 0, sizeof(u));
	if (!vs_h_json_body(c, &body) || !json_fields(c, body, names, f, 2))
		goto out;
	if (f[0][0] == '\0' || f[1][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request",
			     "username and password required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_LOGIN, f[0]))
		goto out;
	switch (vs_user_check_credentials(&c->app->db, f[0], f[1], &u)) {
	case VS_CRED_OK:
		break;
	case VS_CRED_INVALID:
		vs_res_error(c->res, 401, "unauthorized", "invalid credentials");
		goto out;
	case VS_CRED_BLOCKED:
		vs_res_error(c->res, 403, "forbidden", "account blocked");
		goto out;
	case VS_CRED_UNCONFIRMED:
		vs_res_error(c->res, 403, "forbidden", "email not confirmed");
		goto out;
	case VS_CRED_BUSY:
		vs_res_busy(c->res);
		goto out;
	case VS_CRED_ERROR:
		vs_res_internal(c->res);
		goto out;
	}
	s = login_session(c, u.id, token, csrf);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		goto out;
	}
	/* Only the token: the CSRF token is for browsers (API.md 4.3). */
	vs_res_json(c->res, 200);
	vs_buf_printf(&c->res->body, "{\"token\":\"%s\",\"user_id\":", token);
	vs_json_put_str(&c->res->body, u.id);
	vs_buf_puts(&c->res->body, "}\n");
	memset(token, 0, sizeof(token));
	memset(csrf, 0, sizeof(csrf));
out:
	vs_user_free(&u);
	cJSON_Delete(body);
}

void
vs_handle_api_forgot(struct vs_ctx *c)
{
	static const char *const names[] = { "email" };
	const char *f[1];
	char *email = NULL;
	cJSON *body = NULL;
	enum vs_acct r;

	if (!vs_h_json_body(c, &body) || !json_fields(c, body, names, f, 1))
		goto out;
	if (f[0][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request", "email required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_FORGOT, f[0]))
		goto out;
	/* Forgot only trims and lowercases (API.md 13.4). */
	if ((email = strdup(f[0])) == NULL) {
		vs_res_internal(c->res);
		goto out;
	}
	vs_trim(email);
	for (char *p = email; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	r = vs_acct_forgot(c, email, vs_acct_locale(c));
	if (r != VS_ACCT_OK)
		acct_fail(c, r);
	else
		json_status(c, "if email exists, reset link sent");
out:
	free(email);
	cJSON_Delete(body);
}

void
vs_handle_api_reset(struct vs_ctx *c)
{
	static const char *const names[] = { "token", "new_password" };
	const char *f[2];
	cJSON *body = NULL;
	enum vs_acct r;

	if (!vs_h_json_body(c, &body) || !json_fields(c, body, names, f, 2))
		goto out;
	if (f[0][0] == '\0' || f[1][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request",
			     "token and new_password required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_RESET, NULL) || !policy_ok(c, f[1]))
		goto out;
	r = vs_acct_reset(c, f[0], f[1]);
	switch (r) {
	case VS_ACCT_OK:
		json_status(c, "password reset");
		break;
	case VS_ACCT_INVALID_TOKEN:
	case VS_ACCT_TAKEN:
		vs_res_error(c->res, 400, "invalid_request",
			     "invalid or expired token");
		break;
	case VS_ACCT_EXPIRED:
		vs_res_error(c->res, 400, "invalid_request", "token expired");
		break;
	default:
		acct_fail(c, r);
	}
out:
	cJSON_Delete(body);
}

static void
put_device(struct vs_buf *b, const struct vs_user_device *d)
{
	vs_buf_puts(b, "{\"id\":");
	vs_json_put_str(b, d->id);
	vs_buf_puts(b, ",\"name\":");
	vs_json_put_str(b, d->name);
	vs_buf_puts(b, ",\"client_version\":");
	vs_json_put_str(b, d->client_version);
	vs_buf_puts(b, ",\"last_seen\":");
	vs_json_put_str(b, d->last_seen);
	vs_buf_puts(b, ",\"revoked_at\":");
	vs_json_put_str(b, d->revoked_at);
	vs_buf_puts(b, ",\"created_at\":");
	vs_json_put_str(b, d->created_at);
	vs_buf_puts(b, "}");
}

void
vs_handle_user_devices(struct vs_ctx *c)
{
	struct vs_session s;
	struct vs_user u;
	struct vs_user_device *d = NULL;
	size_t n = 0;
	bool valid = false;
	enum vs_db_status st;

	st = vs_acct_session_user(c, &s, &u, &valid);
	if (st != VS_DB_OK) {
		vs_h_db_fail(c, st);
		return;
	}
	if (!valid) {
		vs_res_error(c->res, 401, "unauthorized", "session required");
		return;
	}
	st = vs_acct_devices(&c->app->db, u.id, &d, &n);
	if (st != VS_DB_OK) {
		vs_h_db_fail(c, st);
	} else {
		vs_res_json(c->res, 200);
		vs_buf_puts(&c->res->body, "[");
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				vs_buf_puts(&c->res->body, ",");
			put_device(&c->res->body, &d[i]);
		}
		vs_buf_puts(&c->res->body, "]\n");
	}
	vs_acct_devices_free(d, n);
	vs_user_free(&u);
	vs_session_free(&s);
}

/* ------------------------------------------------------------------ */
/* POST /api/v1/user/devices/{id}/revoke (API.md 4.7)                 */
/* ------------------------------------------------------------------ */

#define DEVICES_PREFIX "/api/v1/user/devices/"

/* The device id of ".../{id}/revoke" (a trailing '/' of the id part
 * removed), malloc'd; NULL when the path does not end in /revoke. */
static char *
revoke_target(const char *path)
{
	const char *rest = path + strlen(DEVICES_PREFIX);
	size_t n = strlen(rest);
	static const char suffix[] = "revoke";
	size_t sl = sizeof(suffix) - 1;

	if (n < sl || strcmp(rest + n - sl, suffix) != 0)
		return NULL;
	if (n == sl)
		return strdup("");	/* ".../devices/revoke": no id */
	if (rest[n - sl - 1] != '/')
		return NULL;
	n -= sl + 1;
	if (n > 0 && rest[n - 1] == '/')
		n--;
	return strndup(rest, n);
}

static void
revoke_form_back(struct vs_ctx *c, const char *query)
{
	vs_res_redirect(c->res, 303, query);
}

/* Revokes target with its audit row, one transaction. */
static enum vs_db_status
revoke_device(struct vs_ctx *c, const char *user_id, const char *device_id)
{
	struct vs_db *db = &c->app->db;
	enum vs_db_status s = vs_db_begin_write(db);

	if (s != VS_DB_OK)
		return s;
	s = vs_device_revoke(db, device_id);
	if (s == VS_DB_OK)
		s = vs_audit(db, "device_revoked", user_id, device_id,
			     c->req->client_ip, "device revoked from web dashboard");
	if (s != VS_DB_OK) {
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);
}

/* Reads the password of the form or the JSON body; false = answered. */
static bool
revoke_password(struct vs_ctx *c, bool form_mode, const struct vs_kvlist *form,
		cJSON **body, const char **pw)
{
	static const char *const names[] = { "password" };

	if (form_mode) {
		*pw = vs_kv_get(form, "password");
		if (*pw == NULL)
			*pw = "";
		return true;
	}
	return vs_h_json_body(c, body) && json_fields(c, *body, names, pw, 1);
}

/* Steps 6-8 of 4.7: the password, the rate limit, the check. */
static bool
revoke_authorised(struct vs_ctx *c, bool form_mode, const struct vs_user *u,
		  const char *pw)
{
	static const char bad[] = "/dashboard?error=error.invalidCredentials";
	long retry = 1;

	if (*pw == '\0') {
		if (form_mode)
			revoke_form_back(c, bad);
		else
			vs_res_error(c->res, 400, "invalid_request",
				     "password required");
		return false;
	}
	if (form_mode) {
		switch (vs_rate_limit(&c->app->db, &VS_RL_AUTH_TEST,
				      c->req->client_ip, u->id, &retry)) {
		case VS_RL_OK:
			break;
		case VS_RL_LIMITED:
			vs_page_rate_limited(c, retry);
			return false;
		case VS_RL_BUSY:
			vs_res_busy(c->res);
			return false;
		case VS_RL_ERROR:
			vs_res_internal(c->res);
			return false;
		}
	} else if (!vs_h_rate_limit(c, &VS_RL_AUTH_TEST, u->id)) {
		return false;
	}
	if (!vs_password_verify(pw, u->password_hash)) {
		if (form_mode)
			revoke_form_back(c, bad);
		else
			vs_res_error(c->res, 403, "forbidden", "wrong password");
		return false;
	}
	return true;
}

/* Steps 9-11: ownership, the revocation, the answer. */
static void
revoke_finish(struct vs_ctx *c, bool form_mode, const struct vs_user *u,
	      const char *target)
{
	struct vs_device d;
	bool found = false;
	enum vs_db_status s;

	s = vs_device_find_id(&c->app->db, target, &d, &found);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		return;
	}
	if (!found) {
		vs_res_error(c->res, 404, "not_found", "device not found");
		return;
	}
	if (strcmp(d.user_id, u->id) != 0) {
		vs_res_error(c->res, 403, "forbidden",
			     "device does not belong to you");
	} else if ((s = revoke_device(c, u->id, d.id)) != VS_DB_OK) {
		vs_h_db_fail(c, s);
	} else if (form_mode) {
		revoke_form_back(c, "/dashboard?flash=user.deviceRevoked");
	} else {
		json_status(c, "revoked");
	}
	vs_device_free(&d);
}

void
vs_handle_user_device_action(struct vs_ctx *c)
{
	bool form_mode = starts_with_ci(c->req->content_type,
					"application/x-www-form-urlencoded");
	struct vs_kvlist form = { 0 };
	bool form_ok = true, valid = false;
	struct vs_session s;
	struct vs_user u;
	cJSON *body = NULL;
	const char *pw = NULL;
	char *target = NULL;
	enum vs_db_status st;
	enum vs_csrf cr;

	st = vs_acct_session_user(c, &s, &u, &valid);
	if (st != VS_DB_OK) {
		vs_h_db_fail(c, st);
		return;
	}
	if (!valid) {
		if (form_mode)
			vs_res_redirect(c->res, 302, "/login");
		else
			vs_res_error(c->res, 401, "unauthorized",
				     "session required");
		return;
	}
	/* The form is read before the CSRF check, which may need its
	 * csrf_token field; reading a body changes nothing. */
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
	if ((target = revoke_target(c->req->path)) == NULL) {
		vs_res_error(c->res, 404, "not_found", "not found");
		goto out;
	}
	if (form_mode && !form_ok) {
		vs_res_error(c->res, 400, "invalid_request", "invalid form");
		goto out;
	}
	if (!revoke_password(c, form_mode, &form, &body, &pw) ||
	    !revoke_authorised(c, form_mode, &u, pw))
		goto out;
	revoke_finish(c, form_mode, &u, target);
out:
	free(target);
	cJSON_Delete(body);
	vs_kvlist_free(&form);
	vs_user_free(&u);
	vs_session_free(&s);
}
