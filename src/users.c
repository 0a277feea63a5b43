/*
 * users.c - the user accounts store (see users.h).
 *
 * Owns: every SQL statement on server_users, the login lookup (exact
 * user name, then lowercased e-mail: D29), the credential check in the
 * order of API.md 3.1 steps 8-10 with D28, the user-name and e-mail
 * rules for new accounts (D29, API.md 13.4), the D29 "taken" rules, and
 * the user-deletion cascade of DATA.md 8.
 *
 * Must never: log or bind a password (only hashes reach SQL), tell an
 * unknown user from a wrong password by timing or result, start or end
 * a transaction (writes run in the caller's BEGIN IMMEDIATE), or touch
 * server_blobs rows or blob files (blob GC owns them, D13).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* strdup, strncasecmp, inet_pton */
#endif
#include "users.h"
#include "log.h"
#include "password.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Rows                                                               */
/* ------------------------------------------------------------------ */

/* Column list by name: migrated databases may order columns differently
 * (DATA.md 4.2), so never SELECT *. */
#define USER_COLS \
	"id, username, email, password_hash, confirmed, blocked, last_seen," \
	" created_at"

void
vs_user_free(struct vs_user *u)
{
	if (u == NULL)
		return;
	free(u->id);
	free(u->username);
	free(u->email);
	if (u->password_hash != NULL) {
		/* A hash is not a secret, but there is no reason to leave
		 * it lying around in freed memory either. */
		memset(u->password_hash, 0, strlen(u->password_hash));
		free(u->password_hash);
	}
	free(u->last_seen);
	free(u->created_at);
	memset(u, 0, sizeof(*u));
}

/* Column text as a malloc'd string; NULL columns become "". */
static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return strdup(t != NULL ? (const char *)t : "");
}

/* Fills u from a row of USER_COLS; false on out of memory. */
static bool
user_from_row(sqlite3_stmt *st, struct vs_user *u)
{
	memset(u, 0, sizeof(*u));
	u->id = col_dup(st, 0);
	u->username = col_dup(st, 1);
	u->email = col_dup(st, 2);
	u->password_hash = col_dup(st, 3);
	u->confirmed = sqlite3_column_int(st, 4) != 0;
	u->blocked = sqlite3_column_int(st, 5) != 0;
	u->last_seen = col_dup(st, 6);
	u->created_at = col_dup(st, 7);
	if (u->id && u->username && u->email && u->password_hash &&
	    u->last_seen && u->created_at)
		return true;
	vs_user_free(u);
	vs_log_error("users: out of memory");
	return false;
}

/* ------------------------------------------------------------------ */
/* Statement helpers                                                  */
/* ------------------------------------------------------------------ */

/* Binds text to ?idx; logs and returns false on failure. */
static bool
bind_text(struct vs_db *db, sqlite3_stmt *st, int idx, const char *v,
	  const char *ctx)
{
	int rc = sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC);

	if (rc == SQLITE_OK)
		return true;
	(void)vs_db_status_of(db, rc, ctx);
	return false;
}

/* Runs a statement with up to two text parameters and no result rows;
 * *changes (optional) receives the number of rows it changed. */
static enum vs_db_status
exec2(struct vs_db *db, const char *sql, const char *p1, const char *p2,
      int *changes, const char *ctx)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql);
	enum vs_db_status s;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	if (!bind_text(db, st, 1, p1, ctx) ||
	    (p2 != NULL && !bind_text(db, st, 2, p2, ctx)))
		return VS_DB_ERROR;
	rc = sqlite3_step(st);
	s = rc == SQLITE_DONE ? VS_DB_OK :
		(rc == SQLITE_ROW ? VS_DB_ERROR : vs_db_status_of(db, rc, ctx));
	if (rc == SQLITE_ROW)
		vs_log_error("users: %s: unexpected result row", ctx);
	if (s == VS_DB_OK && changes != NULL)
		*changes = sqlite3_changes(db->h);
	(void)sqlite3_reset(st);	/* repeats rc, handled above */
	return s;
}

/* Writes belong in the caller's BEGIN IMMEDIATE (db.h): refusing here
 * turns a forgotten transaction into a visible error, not a race. */
static bool
in_tx(struct vs_db *db, const char *ctx)
{
	if (db->tx_depth > 0)
		return true;
	vs_log_error("users: %s called outside a write transaction", ctx);
	return false;
}

/* Looks up at most one user with a one-parameter USER_COLS query. */
static enum vs_db_status
find_one(struct vs_db *db, const char *sql, const char *key,
	 struct vs_user *u, bool *found, const char *ctx)
{
	sqlite3_stmt *st;
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*found = false;
	memset(u, 0, sizeof(*u));
	if (key == NULL)
		return VS_DB_OK;
	st = vs_db_stmt(db, sql);
	if (st == NULL || !bind_text(db, st, 1, key, ctx))
		return VS_DB_ERROR;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (user_from_row(st, u))
			*found = true;
		else
			s = VS_DB_ERROR;
	} else if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, ctx);
	}
	(void)sqlite3_reset(st);	/* ends the read; rc handled above */
	return s;
}

/* ASCII lowercase copy (e-mails are stored ASCII-lowercased, and the
 * login's e-mail step compares against that); NULL on OOM. */
static char *
ascii_lower_dup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL) {
		vs_log_error("users: out of memory");
		return NULL;
	}
	for (char *p = d; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}

/* ------------------------------------------------------------------ */
/* Lookups                                                            */
/* ------------------------------------------------------------------ */

/* "ORDER BY rowid LIMIT 1": databases migrated from old layouts may lack
 * the UNIQUE constraints; the oldest row then wins, deterministically. */
static const char sql_by_username[] =
	"SELECT " USER_COLS " FROM server_users WHERE username = ?1"
	" ORDER BY rowid LIMIT 1";
static const char sql_by_email[] =
	"SELECT " USER_COLS " FROM server_users WHERE email = ?1"
	" ORDER BY rowid LIMIT 1";
static const char sql_by_id[] =
	"SELECT " USER_COLS " FROM server_users WHERE id = ?1";

enum vs_db_status
vs_user_find_username(struct vs_db *db, const char *name, struct vs_user *u,
		      bool *found)
{
	return find_one(db, sql_by_username, name, u, found, "user by name");
}

enum vs_db_status
vs_user_find_id(struct vs_db *db, const char *id, struct vs_user *u,
		bool *found)
{
	return find_one(db, sql_by_id, id, u, found, "user by id");
}

enum vs_db_status
vs_user_find_login(struct vs_db *db, const char *login, struct vs_user *u,
		   bool *found)
{
	enum vs_db_status s;
	char *lower;

	/* D29: an exact user name always wins over an e-mail, so a user
	 * whose name equals another account's e-mail cannot make the
	 * result depend on row order. */
	s = vs_user_find_username(db, login, u, found);
	if (s != VS_DB_OK || *found || login == NULL)
		return s;
	lower = ascii_lower_dup(login);
	if (lower == NULL)
		return VS_DB_ERROR;
	s = find_one(db, sql_by_email, lower, u, found, "user by email");
	free(lower);
	return s;
}

/* ------------------------------------------------------------------ */
/* Credentials (API.md 3.1 steps 8-10, D28)                           */
/* ------------------------------------------------------------------ */

/* Same shape test password.c applies: only bcrypt values are hashes. */
static bool
bcrypt_shaped(const char *h)
{
	return h != NULL && strlen(h) == 60 &&
	       (strncmp(h, "$2a$", 4) == 0 || strncmp(h, "$2b$", 4) == 0 ||
		strncmp(h, "$2y$", 4) == 0);
}

static bool
password_matches(const char *pw, const char *hash)
{
	if (!bcrypt_shaped(hash)) {
		/* "unused" and other placeholders never match; burn the
		 * bcrypt time anyway so such accounts do not answer
		 * faster than real ones. */
		vs_password_dummy(pw);
		return false;
	}
	return vs_password_verify(pw, hash);
}

enum vs_cred
vs_user_check_credentials(struct vs_db *db, const char *login,
			  const char *password, struct vs_user *u)
{
	enum vs_db_status s;
	bool found = false;

	if (password == NULL)
		password = "";
	s = vs_user_find_login(db, login, u, &found);
	if (s != VS_DB_OK)
		return s == VS_DB_BUSY ? VS_CRED_BUSY : VS_CRED_ERROR;
	if (!found) {
		/* D28: an unknown user costs one bcrypt run like a known
		 * one, so timing does not reveal which logins exist. */
		vs_password_dummy(password);
		return VS_CRED_INVALID;
	}
	/* D28: the password first; the account state is revealed only
	 * to someone who knows it. */
	if (!password_matches(password, u->password_hash))
		return VS_CRED_INVALID;
	if (u->blocked)
		return VS_CRED_BLOCKED;
	if (!u->confirmed)
		return VS_CRED_UNCONFIRMED;
	return VS_CRED_OK;
}

/* ------------------------------------------------------------------ */
/* User-name rule (D29)                                               */
/* ------------------------------------------------------------------ */

/* Decodes one UTF-8 sequence at s (n bytes left); returns its length,
 * or 0 if it is malformed (overlong, surrogate, > U+10FFFF, truncated). */
static size_t
utf8_decode(const unsigned char *s, size_t n, unsigned long *cp)
{
	size_t len;
	unsigned long c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2; c = s[0] & 0x1fu; min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3; c = s[0] & 0x0fu; min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4; c = s[0] & 0x07u; min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3fu);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

#define USERNAME_MAX 128

bool
vs_username_valid(const char *name)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t n, i = 0;

	if (name == NULL)
		return false;
	n = strlen(name);
	if (n == 0 || n > USERNAME_MAX)
		return false;
	/* Callers trim; a space at either end means they did not. */
	if (s[0] == ' ' || s[n - 1] == ' ')
		return false;
	while (i < n) {
		unsigned long cp;
		size_t len = utf8_decode(s + i, n - i, &cp);

		/* Control characters: C0, DEL and C1. Malformed UTF-8 is
		 * refused too: names end up in JSON and HTML. */
		if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			return false;
		i += len;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* E-mail normalisation (API.md 13.4)                                 */
/* ------------------------------------------------------------------ */

/*
 * The accepted form is a bare RFC 5322 addr-spec, ASCII only:
 *   local part: a dot-atom (atext runs separated by single dots), 1..64
 *     bytes (RFC 5321). Quoted local parts are refused: the reference
 *     requires the parsed bare address to equal the input, and Go's
 *     parser unquotes them, so it never accepted one either.
 *   domain: dot-separated labels of letters, digits and hyphens, 1..63
 *     bytes each, not starting or ending with a hyphen (a single label
 *     such as "localhost" is allowed; IDNs must be given as xn--);
 *     or a literal "[d.d.d.d]" / "[IPv6:...]" that inet_pton accepts.
 * Everything else (display names, angle brackets, comments, white space
 * or control characters anywhere, a second '@') is refused.
 */
#define EMAIL_MAX 254
#define LOCAL_MAX 64
#define LABEL_MAX 63

static bool
ascii_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* RFC 5322 atext. */
static bool
atext(unsigned char c)
{
	return ascii_alnum(c) ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
local_part_ok(const char *s, size_t n)
{
	if (n == 0 || n > LOCAL_MAX || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!atext((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static bool
label_ok(const char *s, size_t n)
{
	if (n == 0 || n > LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ascii_alnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool
domain_name_ok(const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		if (!label_ok(s + start, i - start))
			return false;	/* also: empty label, leading dot */
		start = i + 1;
	}
	return true;
}

static bool
domain_literal_ok(const char *s, size_t n)
{
	char inner[EMAIL_MAX + 1];
	unsigned char addr[16];

	if (n < 3 || s[0] != '[' || s[n - 1] != ']')
		return false;
	memcpy(inner, s + 1, n - 2);
	inner[n - 2] = '\0';
	if (strncasecmp(inner, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, inner + 5, addr) == 1;
	return inet_pton(AF_INET, inner, addr) == 1;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == '\v' || c == '\f';
}

bool
vs_email_normalize(const char *in, char *out, size_t outlen)
{
	const char *s, *e, *at;
	size_t n, local_len;

	if (in == NULL || out == NULL)
		return false;
	for (s = in; is_space(*s); s++)
		;
	for (e = s + strlen(s); e > s && is_space(e[-1]); e--)
		;
	n = (size_t)(e - s);
	if (n == 0 || n > EMAIL_MAX || n >= outlen)
		return false;
	/* CR/LF (header injection) and every other non-atext byte fail
	 * the part checks below; exactly one '@' splits the parts. */
	at = memchr(s, '@', n);
	if (at == NULL || memchr(at + 1, '@', (size_t)(e - at - 1)) != NULL)
		return false;
	local_len = (size_t)(at - s);
	if (!local_part_ok(s, local_len))
		return false;
	if (at[1] == '[' ? !domain_literal_ok(at + 1, n - local_len - 1) :
	    !domain_name_ok(at + 1, n - local_len - 1))
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] >= 'A' && s[i] <= 'Z') ?
			(char)(s[i] - 'A' + 'a') : s[i];
	out[n] = '\0';
	return true;
}

/* ------------------------------------------------------------------ */
/* Creating users                                                     */
/* ------------------------------------------------------------------ */

/*
 * D29 "taken": same user name, same e-mail, a new user name equal to an
 * existing e-mail, or a new e-mail equal to an existing user name. The
 * two cross checks ignore ASCII case, because the login's e-mail step
 * lowercases what is typed: a name "B@Example.com" would otherwise
 * shadow the account with e-mail "b@example.com" for anyone typing it
 * that way. (lower(username) cannot use an index; the users table is
 * small and creation is rare and rate-limited.)
 * ?1 new name, ?2 new e-mail (normalised: lowercase), ?3 lower(?1).
 */
static const char sql_taken[] =
	"SELECT 1 FROM server_users WHERE username = ?1 OR email = ?2"
	" OR email = ?1 OR email = ?3 OR lower(username) = ?2 LIMIT 1";

static const char sql_insert[] =
	"INSERT INTO server_users (id, username, email, password_hash,"
	" confirmed, blocked, last_seen, created_at)"
	" VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL, ?6)";

/* *taken = whether a row collides under the D29 rules. */
static enum vs_db_status
check_taken(struct vs_db *db, const char *username, const char *email,
	    bool *taken)
{
	sqlite3_stmt *st;
	enum vs_db_status s = VS_DB_OK;
	char *lname = ascii_lower_dup(username);
	int rc;

	*taken = false;
	if (lname == NULL)
		return VS_DB_ERROR;
	st = vs_db_stmt(db, sql_taken);
	if (st == NULL || !bind_text(db, st, 1, username, "taken") ||
	    !bind_text(db, st, 2, email, "taken") ||
	    !bind_text(db, st, 3, lname, "taken")) {
		free(lname);
		return VS_DB_ERROR;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*taken = true;
	else if (rc != SQLITE_DONE)
		s = vs_db_status_of(db, rc, "taken");
	(void)sqlite3_reset(st);
	free(lname);
	return s;
}

enum vs_user_insert_try { TRY_OK, TRY_TAKEN, TRY_ID_CLASH, TRY_ERROR, TRY_BUSY };

static enum vs_user_insert_try
insert_row(struct vs_db *db, const char *id, const char *username,
	   const char *email, const char *hash, bool confirmed,
	   const char *now)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_insert);
	enum vs_user_insert_try r = TRY_OK;
	int rc, xrc;

	if (st == NULL)
		return TRY_ERROR;
	if (!bind_text(db, st, 1, id, "insert user") ||
	    !bind_text(db, st, 2, username, "insert user") ||
	    !bind_text(db, st, 3, email, "insert user") ||
	    !bind_text(db, st, 4, hash, "insert user") ||
	    !bind_text(db, st, 6, now, "insert user"))
		return TRY_ERROR;
	rc = sqlite3_bind_int(st, 5, confirmed ? 1 : 0);
	if (rc != SQLITE_OK) {
		(void)vs_db_status_of(db, rc, "insert user");
		return TRY_ERROR;
	}
	rc = sqlite3_step(st);
	xrc = sqlite3_extended_errcode(db->h);
	if (rc == SQLITE_DONE)
		r = TRY_OK;
	else if (xrc == SQLITE_CONSTRAINT_PRIMARYKEY)
		r = TRY_ID_CLASH;	/* 96 random bits collided: retry */
	else if (xrc == SQLITE_CONSTRAINT_UNIQUE)
		r = TRY_TAKEN;		/* a race the SELECT could not see */
	else
		r = vs_db_status_of(db, rc, "insert user") == VS_DB_BUSY ?
			TRY_BUSY : TRY_ERROR;
	(void)sqlite3_reset(st);
	return r;
}

#define ID_ATTEMPTS 3

enum vs_user_create_rc
vs_user_insert(struct vs_db *db, const char *username, const char *email,
	       const char *hash, bool confirmed, char id_out[25])
{
	char now[VS_TS_LEN];
	enum vs_db_status s;
	bool taken;

	id_out[0] = '\0';
	if (username == NULL || email == NULL || hash == NULL ||
	    !in_tx(db, "vs_user_insert"))
		return VS_UC_ERROR;
	s = check_taken(db, username, email, &taken);
	if (s != VS_DB_OK)
		return s == VS_DB_BUSY ? VS_UC_BUSY : VS_UC_ERROR;
	if (taken)
		return VS_UC_TAKEN;
	vs_now_ts(now);
	for (int i = 0; i < ID_ATTEMPTS; i++) {
		if (!vs_random_hex(12, id_out)) {
			vs_log_error("users: random generator failed");
			break;
		}
		switch (insert_row(db, id_out, username, email, hash,
				   confirmed, now)) {
		case TRY_OK:
			return VS_UC_OK;
		case TRY_TAKEN:
			id_out[0] = '\0';
			return VS_UC_TAKEN;
		case TRY_ID_CLASH:
			continue;
		case TRY_BUSY:
			id_out[0] = '\0';
			return VS_UC_BUSY;
		case TRY_ERROR:
			break;
		}
		break;
	}
	id_out[0] = '\0';
	return VS_UC_ERROR;
}

/* ------------------------------------------------------------------ */
/* Updates                                                            */
/* ------------------------------------------------------------------ */

static const char sql_confirm[] =
	"UPDATE server_users SET confirmed = 1 WHERE id = ?1";
static const char sql_block[] =
	"UPDATE server_users SET blocked = 1 WHERE id = ?1";
static const char sql_unblock[] =
	"UPDATE server_users SET blocked = 0 WHERE id = ?1";
static const char sql_touch[] =
	"UPDATE server_users SET last_seen = ?2 WHERE id = ?1";
static const char sql_drop_sessions[] =
	"DELETE FROM server_sessions WHERE scope = 'user' AND subject_id = ?1";
static const char sql_set_hash[] =
	"UPDATE server_users SET password_hash = ?2 WHERE id = ?1";
static const char sql_id_by_email[] =
	"SELECT id FROM server_users WHERE email = ?1 ORDER BY rowid LIMIT 1";

/* One-row update; *found = whether the id matched (SQLite counts
 * matched rows, even when the value was already the same). */
static enum vs_db_status
update_one(struct vs_db *db, const char *sql, const char *id,
	   const char *p2, bool *found, const char *ctx)
{
	enum vs_db_status s;
	int changes = 0;

	if (found != NULL)
		*found = false;
	if (id == NULL || !in_tx(db, ctx))
		return VS_DB_ERROR;
	s = exec2(db, sql, id, p2, &changes, ctx);
	if (s == VS_DB_OK && found != NULL)
		*found = changes > 0;
	return s;
}

enum vs_db_status
vs_user_set_confirmed(struct vs_db *db, const char *id, bool *found)
{
	return update_one(db, sql_confirm, id, NULL, found, "confirm user");
}

enum vs_db_status
vs_user_set_blocked(struct vs_db *db, const char *id, bool blocked,
		    bool *found)
{
	return update_one(db, blocked ? sql_block : sql_unblock, id, NULL,
			  found, "block user");
}

enum vs_db_status
vs_user_touch_last_seen(struct vs_db *db, const char *id, const char *ts)
{
	if (ts == NULL)
		return VS_DB_ERROR;
	return update_one(db, sql_touch, id, ts, NULL, "touch user");
}

enum vs_db_status
vs_user_set_password_hash(struct vs_db *db, const char *id, const char *hash,
			  bool *found)
{
	if (hash == NULL)
		return VS_DB_ERROR;
	return update_one(db, sql_set_hash, id, hash, found, "set password");
}

enum vs_db_status
vs_user_id_by_email(struct vs_db *db, const char *email, char *id,
		    size_t idlen, bool *found)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_id_by_email);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*found = false;
	if (st == NULL)
		return VS_DB_ERROR;
	if (sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "user by email");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(id, idlen, "%s", t != NULL ? (const char *)t : "");
		*found = id[0] != '\0';
	} else if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "user by email");
	}
	(void)sqlite3_reset(st);
	return s;
}

enum vs_db_status
vs_user_delete_sessions(struct vs_db *db, const char *id)
{
	if (id == NULL || !in_tx(db, "delete user sessions"))
		return VS_DB_ERROR;
	return exec2(db, sql_drop_sessions, id, NULL, NULL,
		     "delete user sessions");
}

/* ------------------------------------------------------------------ */
/* Deletion cascade (DATA.md 8)                                       */
/* ------------------------------------------------------------------ */

/* In DATA.md 8's order, every statement bound to ?1 = the user id.
 * Revision rows go before the ops they are found through. server_blobs
 * and the files stay for blob GC (D13); sqlite_sequence keeps its
 * counter, so sequence numbers never go back. */
static const char *const cascade_sql[] = {
	"DELETE FROM server_sessions WHERE scope = 'user' AND subject_id = ?1",
	"DELETE FROM server_email_tokens WHERE user_id = ?1",
	"DELETE FROM server_blob_refs WHERE user_id = ?1",
	"DELETE FROM server_idempotency_keys WHERE user_id = ?1",
	"DELETE FROM server_tombstones WHERE user_id = ?1",
	("DELETE FROM server_revisions WHERE op_id IN"
	 " (SELECT op_id FROM server_ops WHERE user_id = ?1)"),
	"DELETE FROM server_ops WHERE user_id = ?1",
	"DELETE FROM server_user_devices WHERE user_id = ?1",
	"DELETE FROM server_devices WHERE user_id = ?1",
	"DELETE FROM server_audit_log WHERE user_id = ?1",
	"DELETE FROM server_users WHERE id = ?1",
};

static const char sql_exists[] = "SELECT 1 FROM server_users WHERE id = ?1";

static enum vs_db_status
user_exists(struct vs_db *db, const char *id, bool *found)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_exists);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*found = false;
	if (st == NULL || !bind_text(db, st, 1, id, "user exists"))
		return VS_DB_ERROR;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*found = true;
	else if (rc != SQLITE_DONE)
		s = vs_db_status_of(db, rc, "user exists");
	(void)sqlite3_reset(st);
	return s;
}

enum vs_db_status
vs_user_delete_cascade(struct vs_db *db, const char *id, bool *found)
{
	enum vs_db_status s;

	*found = false;
	if (id == NULL || !in_tx(db, "vs_user_delete_cascade"))
		return VS_DB_ERROR;
	s = user_exists(db, id, found);
	if (s != VS_DB_OK || !*found)
		return s;
	for (size_t i = 0; i < sizeof(cascade_sql) / sizeof(cascade_sql[0]);
	     i++) {
		s = exec2(db, cascade_sql[i], id, NULL, NULL, "delete user");
		if (s != VS_DB_OK)
			return s;	/* the caller rolls back */
	}
	return VS_DB_OK;
}

/* ------------------------------------------------------------------ */
/* Listing                                                            */
/* ------------------------------------------------------------------ */

static const char sql_each[] =
	"SELECT " USER_COLS " FROM server_users ORDER BY created_at, username";

enum vs_db_status
vs_user_each(struct vs_db *db, void (*fn)(const struct vs_user *u, void *arg),
	     void *arg)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_each);
	enum vs_db_status s = VS_DB_OK;
	struct vs_user u;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (!user_from_row(st, &u)) {
			s = VS_DB_ERROR;
			break;
		}
		fn(&u, arg);
		vs_user_free(&u);
	}
	if (s == VS_DB_OK && rc != SQLITE_DONE)
		s = vs_db_status_of(db, rc, "list users");
	(void)sqlite3_reset(st);
	return s;
}
