/*
 * password.c - see password.h. Owns bcrypt hashing and verification
 * through libxcrypt and the 8..72 byte policy (API.md 13.5, D30).
 *
 * Must never: log, keep or return a password; accept a stored value that
 * is not a bcrypt hash ($2a$/$2b$/$2y$, 60 chars); compare hashes with a
 * time that depends on their content; leave password-derived state in
 * freed memory.
 */
#include "password.h"
#include "util.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#if !defined(CRYPT_GENSALT_IMPLEMENTS_AUTO_ENTROPY)
#error "libxcrypt with automatic salt entropy (rbytes == NULL) is required"
#endif

/* Length of every bcrypt hash: "$2a$" + "NN$" + 22 salt + 31 digest. */
#define BCRYPT_LEN 60

/* A valid cost-10 hash of a random password nobody knows (generated once
 * and thrown away); vs_password_dummy verifies against it so that an
 * unknown user costs the same bcrypt work as a known one (D28). */
static const char dummy_hash[] =
	"$2a$10$mcOWPOz0kWBvCEm.3TK1ze7Pv6bN8vp/7QN8fimygV3/F5yW.uoiu";

enum vs_pw_policy
vs_password_policy(const char *pw)
{
	size_t n = pw == NULL ? 0 : strlen(pw);

	if (n < VS_PW_MIN)
		return VS_PW_TOO_SHORT;
	if (n > VS_PW_MAX)
		return VS_PW_TOO_LONG;
	return VS_PW_OK;
}

/* True for the bcrypt variants the reference writes or accepts. The
 * shape check keeps "unused", "" and other placeholders from ever
 * reaching crypt (which would happily hash with DES or MD5). */
static bool
is_bcrypt(const char *hash)
{
	if (hash == NULL || strlen(hash) != BCRYPT_LEN)
		return false;
	return strncmp(hash, "$2a$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0 ||
	       strncmp(hash, "$2y$", 4) == 0;
}

/* crypt_data holds the key schedule derived from the password; it is
 * ~32 KiB, so it lives on the heap and is wiped before it is freed. */
static struct crypt_data *
cd_new(void)
{
	return calloc(1, sizeof(struct crypt_data));
}

static void
cd_free(struct crypt_data *cd)
{
	if (cd == NULL)
		return;
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
}

/* Runs bcrypt; returns the output inside cd, or NULL on any failure
 * (libxcrypt signals failure by NULL or, in some builds, by "*0"/"*1"). */
static const char *
run_crypt(const char *pw, const char *setting, struct crypt_data *cd)
{
	const char *out = crypt_rn(pw, setting, cd, (int)sizeof(*cd));

	if (out == NULL || out[0] == '*')
		return NULL;
	return out;
}

bool
vs_password_hash(const char *pw, char *out, size_t outlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *h;
	bool ok = false;

	/* Refuse rather than silently hash only the first 72 bytes (D30);
	 * callers are expected to have applied the policy already. */
	if (pw == NULL || strlen(pw) > VS_PW_MAX || out == NULL ||
	    outlen < BCRYPT_LEN + 1)
		return false;
	if (crypt_gensalt_rn("$2a$", VS_BCRYPT_COST, NULL, 0, salt,
			     (int)sizeof(salt)) == NULL ||
	    strncmp(salt, "$2a$10$", 7) != 0)
		return false;
	cd = cd_new();
	if (cd == NULL)
		return false;
	h = run_crypt(pw, salt, cd);
	if (h != NULL && strlen(h) == BCRYPT_LEN && strncmp(h, salt, 7) == 0) {
		memcpy(out, h, BCRYPT_LEN + 1);
		ok = true;
	}
	cd_free(cd);
	return ok;
}

bool
vs_password_verify(const char *pw, const char *hash)
{
	struct crypt_data *cd;
	const char *h;
	bool ok;

	if (pw == NULL || !is_bcrypt(hash))
		return false;
	cd = cd_new();
	if (cd == NULL)
		return false;
	/* bcrypt itself ignores bytes past 72: this is what lets hashes
	 * written by the reference (which allowed longer passwords) keep
	 * verifying (DATA.md 5, D30). */
	h = run_crypt(pw, hash, cd);
	ok = h != NULL && vs_ct_streq(h, hash);
	cd_free(cd);
	return ok;
}

void
vs_password_dummy(const char *pw)
{
	/* The result is irrelevant; only the work matters. */
	(void)vs_password_verify(pw != NULL ? pw : "", dummy_hash);
}
