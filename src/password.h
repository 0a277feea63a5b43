/*
 * password.h - bcrypt through libcrypt (libxcrypt), and the password
 * policy of API.md 13.5.
 *
 * Owns: hashing new passwords ($2a$, cost 10, as the reference writes),
 * verifying $2a$/$2b$/$2y$ hashes in constant time, the dummy comparison
 * for unknown users, and the 8..72 byte policy (D30).
 * Must never: log or keep a password, or accept a non-bcrypt stored value.
 */
#ifndef VS_PASSWORD_H
#define VS_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define VS_BCRYPT_COST 10
#define VS_PW_MIN 8
#define VS_PW_MAX 72

enum vs_pw_policy { VS_PW_OK = 0, VS_PW_TOO_SHORT, VS_PW_TOO_LONG };

enum vs_pw_policy vs_password_policy(const char *pw);
/* Hashes pw into out (at least 64 bytes; a bcrypt hash is 60 chars).
 * Fails for a password over VS_PW_MAX bytes rather than truncating it. */
bool vs_password_hash(const char *pw, char *out, size_t outlen);
/* True when pw matches the stored bcrypt hash. Non-bcrypt values never match. */
bool vs_password_verify(const char *pw, const char *hash);
/* Burns the same time as a verification, for unknown users (D28). */
void vs_password_dummy(const char *pw);

#endif
