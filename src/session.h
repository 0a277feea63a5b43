/*
 * session.h - browser and API sessions (server_sessions, API.md 12,
 * DATA.md 4.2).
 *
 * Owns: creating a session (64-hex token and 64-hex CSRF token, both
 * stored only as SHA-256; 24 h absolute lifetime), validating a token
 * for one scope (a user token never validates as admin or the reverse;
 * an expired row is deleted when met), the throttled last_seen refresh,
 * deleting one session or all of a subject's sessions, and binding a
 * session to a secret of its subject (admin sessions, D31).
 * Must never: store, log or return a stored token in clear (only the
 * caller that created it holds the plaintext), extend a session's
 * lifetime, or decide HTTP answers.
 */
#ifndef VS_SESSION_H
#define VS_SESSION_H

#include <stdbool.h>
#include <time.h>

#include "db.h"
#include "util.h"

#define VS_SESSION_TOKEN_HEX 64
#define VS_SESSION_TTL_SECONDS (24 * 60 * 60)

enum vs_scope { VS_SCOPE_USER, VS_SCOPE_ADMIN };

struct vs_session {
	enum vs_scope scope;
	char token_hash[65];
	char csrf_hash[65];
	char *subject_id;          /* user id or admin user name */
	char expires_at[VS_TS_LEN];
	char created_at[VS_TS_LEN];
	char last_seen[VS_TS_LEN];
};

void vs_session_free(struct vs_session *s);

/* "user" or "admin". */
const char *vs_scope_name(enum vs_scope scope);

/* Creates a session for subject and hands back its token and CSRF token
 * (64 hex each, NUL-terminated). Runs inside the caller's write
 * transaction when one is open, else in its own. */
enum vs_db_status vs_session_create(struct vs_db *db, enum vs_scope scope,
				    const char *subject,
				    char token[VS_SESSION_TOKEN_HEX + 1],
				    char csrf[VS_SESSION_TOKEN_HEX + 1]);

/* A session bound to a secret of its subject (admin sessions: the
 * admin's password hash, D31). The CSRF token is derived from the
 * session token and bind (HMAC-SHA-256) instead of drawn at random; the
 * row still holds only the SHA-256 of each, as DATA.md 4.2 says, so the
 * reference server reads it like any other. bind must be non-empty. */
enum vs_db_status vs_session_create_bound(struct vs_db *db, enum vs_scope scope,
					  const char *subject, const char *bind,
					  char token[VS_SESSION_TOKEN_HEX + 1],
					  char csrf[VS_SESSION_TOKEN_HEX + 1]);
/* Was s (validated from token) created bound to bind? False for an
 * unbound session (random CSRF token) and for any other bind value, so
 * replacing the secret ends every session made with the old one. */
bool vs_session_bound_to(const struct vs_session *s, const char *token,
			 const char *bind);

/* Looks token up in scope. *valid false for a malformed, unknown,
 * other-scope or expired token (an expired row is deleted). On success
 * s is filled and must be freed. */
enum vs_db_status vs_session_validate(struct vs_db *db, enum vs_scope scope,
				      const char *token, struct vs_session *s,
				      bool *valid);

/* Refreshes last_seen when it is a minute old or more; failures are
 * logged, never fatal (bookkeeping only). */
void vs_session_touch(struct vs_db *db, struct vs_session *s);

/* Deletes the session with this token (any scope; a no-op when gone).
 * Caller's transaction if one is open, else its own. */
enum vs_db_status vs_session_delete(struct vs_db *db, const char *token);
/* Deletes every session of subject in scope. */
enum vs_db_status vs_session_delete_subject(struct vs_db *db,
					    enum vs_scope scope,
					    const char *subject);

/* Does candidate's SHA-256 equal the session's csrf_hash (constant
 * time)? */
bool vs_session_csrf_matches(const struct vs_session *s, const char *candidate);

/* Test hook: the clock sessions use (NULL = time()). */
void vs_session_set_clock(time_t (*now)(void));

#endif
