/*
 * users.h - the user accounts store (server_users and what hangs off a
 * user: devices links, sessions, tokens, ops on deletion).
 *
 * Owns: every SQL statement on server_users; finding a user by login
 * (exact user name first, then lowercased e-mail, D29); the credential
 * check shared by pair, auth/test, device/register and login (password
 * verified before the account state is revealed, a dummy bcrypt run for
 * unknown users, D28); creating users with the D29 name/e-mail rules;
 * confirm, block, unblock, list, and delete with the DATA.md 8 cascade.
 *
 * Must never: log a password or hash, or decide HTTP status codes.
 */
#ifndef VS_USERS_H
#define VS_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

struct vs_user {
	char *id;
	char *username;
	char *email;
	char *password_hash;
	bool confirmed;
	bool blocked;
	char *last_seen;   /* "" when NULL */
	char *created_at;
};

void vs_user_free(struct vs_user *u);

/* Looks a user up by login: exact user name, else e-mail = lowercase(login).
 * *found says whether one was found. */
enum vs_db_status vs_user_find_login(struct vs_db *db, const char *login,
				     struct vs_user *u, bool *found);
enum vs_db_status vs_user_find_id(struct vs_db *db, const char *id,
				  struct vs_user *u, bool *found);
/* Exact, case-sensitive user-name lookup (no e-mail fallback), for the
 * command line's --username. */
enum vs_db_status vs_user_find_username(struct vs_db *db, const char *name,
					struct vs_user *u, bool *found);

enum vs_cred {
	VS_CRED_OK = 0,
	VS_CRED_INVALID,      /* unknown user or wrong password: 401 */
	VS_CRED_BLOCKED,      /* right password, blocked: 403 "account blocked" */
	VS_CRED_UNCONFIRMED,  /* right password, unconfirmed: 403 "email not confirmed" */
	VS_CRED_ERROR,        /* database error: 500 */
	VS_CRED_BUSY,         /* database locked past the budget: 503 */
};

/* Credential check in the contract's order (API.md 3.1 steps 8-10). On
 * VS_CRED_OK/BLOCKED/UNCONFIRMED/INVALID-with-known-user, u is filled
 * (u->id non-NULL) so callers can audit with the user id. */
enum vs_cred vs_user_check_credentials(struct vs_db *db, const char *login,
				       const char *password, struct vs_user *u);

/* User-name rule for new names (D29): trimmed by the caller, 1..128
 * bytes, no control characters. */
bool vs_username_valid(const char *name);
/* E-mail normalisation (API.md 13.4): trims, checks, lowercases into
 * out (at least 255 bytes). False when invalid. */
bool vs_email_normalize(const char *in, char *out, size_t outlen);

enum vs_user_create_rc {
	VS_UC_OK = 0,
	VS_UC_TAKEN,          /* user name or e-mail taken, incl. D29 cross collisions */
	VS_UC_ERROR,
	VS_UC_BUSY,
};
/* Inserts a user (new 24-hex id into id_out, 25 bytes) inside the
 * caller's write transaction. email must be normalised, hash bcrypt. */
enum vs_user_create_rc vs_user_insert(struct vs_db *db, const char *username,
				      const char *email, const char *hash,
				      bool confirmed, char id_out[25]);

/* Single-row updates in the caller's transaction; *found false when the
 * id does not exist. */
enum vs_db_status vs_user_set_confirmed(struct vs_db *db, const char *id, bool *found);
enum vs_db_status vs_user_set_blocked(struct vs_db *db, const char *id,
				      bool blocked, bool *found);
enum vs_db_status vs_user_touch_last_seen(struct vs_db *db, const char *id,
					  const char *ts);
/* Deletes the user's `user` sessions (scope 'user', subject = id) in the
 * caller's transaction: blocking, password changes (D10), deletion. */
enum vs_db_status vs_user_delete_sessions(struct vs_db *db, const char *id);
/* Replaces the password hash (caller's write transaction); *found false
 * when the id does not exist. Callers end the sessions too (D10). */
enum vs_db_status vs_user_set_password_hash(struct vs_db *db, const char *id,
					    const char *hash, bool *found);
/* The id of the user whose stored e-mail is exactly email (already
 * lowercased): "forgot" matches addresses only, never user names. */
enum vs_db_status vs_user_id_by_email(struct vs_db *db, const char *email,
				      char *id, size_t idlen, bool *found);
/* Deletes the user and everything DATA.md 8 lists, in the caller's
 * transaction; *found false when the id does not exist. */
enum vs_db_status vs_user_delete_cascade(struct vs_db *db, const char *id,
					 bool *found);

/* Calls fn for each user ordered by created_at, username. */
enum vs_db_status vs_user_each(struct vs_db *db,
			       void (*fn)(const struct vs_user *u, void *arg),
			       void *arg);

#endif
