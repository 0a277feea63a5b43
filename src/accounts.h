/*
 * accounts.h - the user account JSON API (API.md 4) and the account
 * operations the web pages share with it.
 *
 * Owns: registration (user + confirm token in one transaction, then the
 * mail), confirmation, forgot (reset token + mail for an existing
 * address only), token reset (new hash, all reset tokens and all user
 * sessions gone in one transaction, D10), the e-mail token rows
 * (server_email_tokens: 48-hex tokens stored as SHA-256, confirm 48 h,
 * reset 1 h), the user-session lookup, the user's device list, and the
 * JSON handlers of /api/v1/auth/... and /api/v1/user/devices[/...].
 * Must never: store or log a token or password in clear, reveal whether
 * an e-mail address exists, or hold the write lock while bcrypt runs.
 */
#ifndef VS_ACCOUNTS_H
#define VS_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>

#include "router.h"
#include "session.h"
#include "users.h"

#define VS_EMAIL_TOKEN_HEX 48
#define VS_CONFIRM_TTL_SECONDS (48 * 60 * 60)
#define VS_RESET_TTL_SECONDS (60 * 60)
#define VS_USER_SESSION_COOKIE "user_session"

enum vs_acct {
	VS_ACCT_OK = 0,
	VS_ACCT_TAKEN,          /* register: user name or e-mail taken (D29) */
	VS_ACCT_INVALID_TOKEN,  /* unknown token (or lost a race) */
	VS_ACCT_EXPIRED,        /* token past its expiry */
	VS_ACCT_ERROR,
	VS_ACCT_BUSY,
};

/* The request's locale (cookie, Accept-Language, default), for mails. */
const char *vs_acct_locale(const struct vs_ctx *c);

/* Creates an unconfirmed user with a confirm token (one transaction) and
 * sends the confirmation mail in locale. username trimmed and valid,
 * email normalised, password within policy. */
enum vs_acct vs_acct_register(struct vs_ctx *c, const char *username,
			      const char *email, const char *password,
			      const char *locale);
/* When a user has exactly this (lowercased) e-mail: a reset token and
 * the reset mail. VS_ACCT_OK either way. */
enum vs_acct vs_acct_forgot(struct vs_ctx *c, const char *email,
			    const char *locale);
/* Confirms the account of a confirm token and deletes the token. */
enum vs_acct vs_acct_confirm(struct vs_ctx *c, const char *token);
/* Is this a live reset token? (GET /reset; nothing changes.) */
enum vs_acct vs_acct_reset_check(struct vs_ctx *c, const char *token);
/* API.md 4.5 step 6 with the new password (within policy). */
enum vs_acct vs_acct_reset(struct vs_ctx *c, const char *token,
			   const char *new_password);

/* The signed-in user of the request's user_session cookie: *valid false
 * when there is no usable session, or its user is gone or blocked. On
 * success s and u are filled (free both) and last_seen refreshed. */
enum vs_db_status vs_acct_session_user(struct vs_ctx *c, struct vs_session *s,
				       struct vs_user *u, bool *valid);

struct vs_user_device {
	char *id, *name, *vault_id, *client_version, *last_seen, *revoked_at,
	     *created_at;
};
/* The user's linked devices, newest created_at first. */
enum vs_db_status vs_acct_devices(struct vs_db *db, const char *user_id,
				  struct vs_user_device **out, size_t *n);
void vs_acct_devices_free(struct vs_user_device *d, size_t n);

/* Handlers (API.md 4). */
void vs_handle_api_register(struct vs_ctx *c);
void vs_handle_api_confirm(struct vs_ctx *c);
void vs_handle_api_login(struct vs_ctx *c);
void vs_handle_api_forgot(struct vs_ctx *c);
void vs_handle_api_reset(struct vs_ctx *c);
void vs_handle_user_devices(struct vs_ctx *c);
void vs_handle_user_device_action(struct vs_ctx *c);

#endif
