/*
 * session.c - see session.h.
 *
 * Expiry is decided in C on parsed timestamps rather than by comparing
 * strings in SQL, so a row written by another tool in any RFC 3339 form
 * still expires on time; a row whose expiry cannot be parsed is treated
 * as expired.
 */
#include "session.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* last_seen is refreshed at most this often (as devices.c does, D38):
 * a dashboard reload must not become a database write each time. */
#define LAST_SEEN_REFRESH_SECONDS 60

static time_t (*clock_fn)(void);

void
vs_session_set_clock(time_t (*now)(void))
{
	clock_fn = now;
}

static time_t
now_time(void)
{
	return clock_fn != NULL ? clock_fn() : time(NULL);
}

static const char sql_insert[] =
	"INSERT INTO server_sessions (token_hash, csrf_hash, scope, subject_id,"
	" expires_at, created_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
static const char sql_find[] =
	"SELECT csrf_hash, subject_id, expires_at, created_at, last_seen"
	" FROM server_sessions WHERE token_hash = ?1 AND scope = ?2";
static const char sql_delete[] =
	"DELETE FROM server_sessions WHERE token_hash = ?1";
static const char sql_delete_subject[] =
	"DELETE FROM server_sessions WHERE scope = ?1 AND subject_id = ?2";
static const char sql_touch[] =
	"UPDATE server_sessions SET last_seen = ?2 WHERE token_hash = ?1";

const char *
vs_scope_name(enum vs_scope scope)
{
	return scope == VS_SCOPE_ADMIN ? "admin" : "user";
}

void
vs_session_free(struct vs_session *s)
{
	if (s == NULL)
		return;
	free(s->subject_id);
	memset(s, 0, sizeof(*s));
}

static bool
bind_texts(struct vs_db *db, sqlite3_stmt *st, const char *const *v, int n,
	   const char *ctx)
{
	for (int i = 0; i < n; i++) {
		int rc = sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
		if (rc != SQLITE_OK) {
			(void)vs_db_status_of(db, rc, ctx);
			return false;
		}
	}
	return true;
}

/* Runs a statement without result rows. */
static enum vs_db_status
exec_texts(struct vs_db *db, const char *sql, const char *const *v, int n,
	   const char *ctx)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql);
	enum vs_db_status s;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	if (!bind_texts(db, st, v, n, ctx)) {
		sqlite3_clear_bindings(st);
		return VS_DB_ERROR;
	}
	rc = sqlite3_step(st);
	s = rc == SQLITE_DONE ? VS_DB_OK : vs_db_status_of(db, rc, ctx);
	(void)sqlite3_reset(st);	/* repeats rc, handled above */
	sqlite3_clear_bindings(st);	/* hashes must not linger */
	return s;
}

/* One write in the caller's transaction, or in its own. */
static enum vs_db_status
write_texts(struct vs_db *db, const char *sql, const char *const *v, int n,
	    const char *ctx)
{
	enum vs_db_status s;

	if (db->tx_depth > 0)
		return exec_texts(db, sql, v, n, ctx);
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return s;
	s = exec_texts(db, sql, v, n, ctx);
	if (s != VS_DB_OK) {
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);
}

/* Stores the session of token and csrf (both 64 hex, already made). */
static enum vs_db_status
insert_session(struct vs_db *db, enum vs_scope scope, const char *subject,
	       const char *token, const char *csrf)
{
	char th[65], ch[65], now[VS_TS_LEN], exp[VS_TS_LEN];
	const char *v[6];
	time_t t = now_time();

	vs_sha256_hex(token, VS_SESSION_TOKEN_HEX, th);
	vs_sha256_hex(csrf, VS_SESSION_TOKEN_HEX, ch);
	vs_timestamp(t, now);
	vs_timestamp(t + VS_SESSION_TTL_SECONDS, exp);
	v[0] = th;
	v[1] = ch;
	v[2] = vs_scope_name(scope);
	v[3] = subject;
	v[4] = exp;
	v[5] = now;
	return write_texts(db, sql_insert, v, 6, "session insert");
}

/* The CSRF token of a bound session: HMAC-SHA-256 keyed with bind over
 * the session token. Anyone holding it learns nothing of the token. */
static bool
bound_csrf(const char *token, const char *bind, char out[65])
{
	return vs_hmac_sha256_hex(bind, strlen(bind), token,
				  VS_SESSION_TOKEN_HEX, out);
}

static enum vs_db_status
create(struct vs_db *db, enum vs_scope scope, const char *subject,
       const char *bind, char token[VS_SESSION_TOKEN_HEX + 1],
       char csrf[VS_SESSION_TOKEN_HEX + 1])
{
	enum vs_db_status s;
	bool ok;

	token[0] = csrf[0] = '\0';
	if (subject == NULL || *subject == '\0' ||
	    (bind != NULL && *bind == '\0'))
		return VS_DB_ERROR;
	ok = vs_random_hex(32, token);
	if (ok)
		ok = bind != NULL ? bound_csrf(token, bind, csrf)
				  : vs_random_hex(32, csrf);
	if (!ok) {
		vs_log_error("sessions: random generator failed");
		memset(token, 0, VS_SESSION_TOKEN_HEX + 1);
		memset(csrf, 0, VS_SESSION_TOKEN_HEX + 1);
		return VS_DB_ERROR;
	}
	s = insert_session(db, scope, subject, token, csrf);
	if (s != VS_DB_OK) {
		memset(token, 0, VS_SESSION_TOKEN_HEX + 1);
		memset(csrf, 0, VS_SESSION_TOKEN_HEX + 1);
	}
	return s;
}

enum vs_db_status
vs_session_create(struct vs_db *db, enum vs_scope scope, const char *subject,
		  char token[VS_SESSION_TOKEN_HEX + 1],
		  char csrf[VS_SESSION_TOKEN_HEX + 1])
{
	return create(db, scope, subject, NULL, token, csrf);
}

enum vs_db_status
vs_session_create_bound(struct vs_db *db, enum vs_scope scope,
			const char *subject, const char *bind,
			char token[VS_SESSION_TOKEN_HEX + 1],
			char csrf[VS_SESSION_TOKEN_HEX + 1])
{
	if (bind == NULL) {
		token[0] = csrf[0] = '\0';
		return VS_DB_ERROR;
	}
	return create(db, scope, subject, bind, token, csrf);
}

bool
vs_session_bound_to(const struct vs_session *s, const char *token,
		    const char *bind)
{
	char csrf[65], h[65];
	bool ok;

	if (s == NULL || token == NULL || bind == NULL || *bind == '\0' ||
	    s->csrf_hash[0] == '\0' || strlen(token) != VS_SESSION_TOKEN_HEX)
		return false;
	if (!bound_csrf(token, bind, csrf))
		return false;
	vs_sha256_hex(csrf, VS_SESSION_TOKEN_HEX, h);
	ok = vs_ct_streq(h, s->csrf_hash);
	memset(csrf, 0, sizeof(csrf));
	return ok;
}

static void
copy_ts(char out[VS_TS_LEN], const unsigned char *t)
{
	snprintf(out, VS_TS_LEN, "%s", t != NULL ? (const char *)t : "");
}

/* Reads the row for hash in scope; *found says whether there was one. */
static enum vs_db_status
find_row(struct vs_db *db, const char *hash, enum vs_scope scope,
	 struct vs_session *s, bool *found)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_find);
	const char *v[2] = { hash, vs_scope_name(scope) };
	enum vs_db_status r = VS_DB_OK;
	int rc;

	*found = false;
	if (st == NULL)
		return VS_DB_ERROR;
	if (!bind_texts(db, st, v, 2, "session lookup"))
		return VS_DB_ERROR;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *csrf = sqlite3_column_text(st, 0);
		const unsigned char *sub = sqlite3_column_text(st, 1);

		snprintf(s->csrf_hash, sizeof(s->csrf_hash), "%s",
			 csrf != NULL ? (const char *)csrf : "");
		s->subject_id = strdup(sub != NULL ? (const char *)sub : "");
		copy_ts(s->expires_at, sqlite3_column_text(st, 2));
		copy_ts(s->created_at, sqlite3_column_text(st, 3));
		copy_ts(s->last_seen, sqlite3_column_text(st, 4));
		if (s->subject_id == NULL) {
			vs_log_error("sessions: out of memory");
			r = VS_DB_ERROR;
		} else {
			*found = true;
		}
	} else if (rc != SQLITE_DONE) {
		r = vs_db_status_of(db, rc, "session lookup");
	}
	(void)sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r;
}

enum vs_db_status
vs_session_validate(struct vs_db *db, enum vs_scope scope, const char *token,
		    struct vs_session *s, bool *valid)
{
	enum vs_db_status r;
	bool found = false;
	time_t exp;
	const char *v[1];

	*valid = false;
	memset(s, 0, sizeof(*s));
	/* Anything but a well-formed token cannot be one of ours: no query. */
	if (token == NULL || strlen(token) != VS_SESSION_TOKEN_HEX ||
	    !vs_is_lower_hex(token, VS_SESSION_TOKEN_HEX))
		return VS_DB_OK;
	s->scope = scope;
	vs_sha256_hex(token, VS_SESSION_TOKEN_HEX, s->token_hash);
	r = find_row(db, s->token_hash, scope, s, &found);
	if (r != VS_DB_OK || !found) {
		vs_session_free(s);
		return r;
	}
	if (vs_parse_ts(s->expires_at, &exp) && now_time() < exp) {
		*valid = true;
		return VS_DB_OK;
	}
	/* Expired (or unreadable): delete it now rather than wait for the
	 * retention run. A failure here does not change the answer. */
	v[0] = s->token_hash;
	if (write_texts(db, sql_delete, v, 1, "expired session") != VS_DB_OK)
		vs_log_warn("could not delete an expired session");
	vs_session_free(s);
	return VS_DB_OK;
}

void
vs_session_touch(struct vs_db *db, struct vs_session *s)
{
	time_t now = now_time(), seen;
	char ts[VS_TS_LEN];
	const char *v[2];

	if (s->last_seen[0] != '\0' && vs_parse_ts(s->last_seen, &seen) &&
	    seen <= now && now - seen < LAST_SEEN_REFRESH_SECONDS)
		return;
	vs_timestamp(now, ts);
	v[0] = s->token_hash;
	v[1] = ts;
	if (write_texts(db, sql_touch, v, 2, "session last_seen") != VS_DB_OK) {
		vs_log_warn("could not refresh a session's last_seen");
		return;
	}
	memcpy(s->last_seen, ts, VS_TS_LEN);
}

enum vs_db_status
vs_session_delete(struct vs_db *db, const char *token)
{
	char hash[65];
	const char *v[1] = { hash };

	if (token == NULL)
		return VS_DB_OK;
	vs_sha256_hex(token, strlen(token), hash);
	return write_texts(db, sql_delete, v, 1, "session delete");
}

enum vs_db_status
vs_session_delete_subject(struct vs_db *db, enum vs_scope scope,
			  const char *subject)
{
	const char *v[2] = { vs_scope_name(scope), subject };

	if (subject == NULL)
		return VS_DB_ERROR;
	return write_texts(db, sql_delete_subject, v, 2, "subject sessions");
}

bool
vs_session_csrf_matches(const struct vs_session *s, const char *candidate)
{
	char h[65];

	if (candidate == NULL || *candidate == '\0' || s->csrf_hash[0] == '\0')
		return false;
	vs_sha256_hex(candidate, strlen(candidate), h);
	return vs_ct_streq(h, s->csrf_hash);
}
