/*
 * test_password.c - unit tests for src/password.c (API.md 13.5, DATA.md 5,
 * D30): bcrypt $2a$ cost 10, $2a/$2b/$2y verification, the 72-byte rule,
 * and the 8..72 byte policy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "password.h"

#define FIXTURE_HASH "$2a$10$6hxaqw/FM91JbBqMfHohz.cxx9s57A.bzFaRS/Rcp.0GiBLdi7bIq"
#define FIXTURE_PASS "fixture-admin-pass"

/* n bytes of a repeating pattern, NUL-terminated (caller frees). */
static char *
make_pw(size_t n)
{
	char *p = malloc(n + 1);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)('a' + (char)(i % 26));
	p[n] = '\0';
	return p;
}

/* Same hash with another bcrypt prefix ($2a/$2b/$2y compute the same
 * for ordinary passwords). */
static void
with_prefix(char out[61], const char *hash, char variant)
{
	memcpy(out, hash, 61);
	out[2] = variant;
}

START_TEST(test_roundtrip)
{
	char h[64];

	ck_assert(vs_password_hash("correct horse", h, sizeof(h)));
	ck_assert(vs_password_verify("correct horse", h));
	ck_assert(!vs_password_verify("correct horsE", h));
	ck_assert(!vs_password_verify("correct hors", h));
	ck_assert(!vs_password_verify("", h));
	ck_assert(!vs_password_verify(NULL, h));
}
END_TEST

START_TEST(test_format)
{
	char h1[64], h2[64];

	ck_assert(vs_password_hash("password1", h1, sizeof(h1)));
	ck_assert_uint_eq(strlen(h1), 60);
	ck_assert_msg(strncmp(h1, "$2a$10$", 7) == 0, "%s", h1);
	/* A fresh random salt each time. */
	ck_assert(vs_password_hash("password1", h2, sizeof(h2)));
	ck_assert_str_ne(h1, h2);
	ck_assert(vs_password_verify("password1", h2));
	/* Output buffer too small, NULL arguments. */
	ck_assert(!vs_password_hash("password1", h1, 60));
	ck_assert(!vs_password_hash(NULL, h1, sizeof(h1)));
	ck_assert(!vs_password_hash("password1", NULL, 64));
}
END_TEST

START_TEST(test_fixture_hash)
{
	ck_assert(vs_password_verify(FIXTURE_PASS, FIXTURE_HASH));
	ck_assert(!vs_password_verify("fixture-admin-pasS", FIXTURE_HASH));
	ck_assert(!vs_password_verify("another-password", FIXTURE_HASH));
	ck_assert(!vs_password_verify(FIXTURE_PASS "x", FIXTURE_HASH));
}
END_TEST

START_TEST(test_variants_accepted)
{
	char h[61];

	with_prefix(h, FIXTURE_HASH, 'b');
	ck_assert(vs_password_verify(FIXTURE_PASS, h));
	ck_assert(!vs_password_verify("nope-nope", h));
	with_prefix(h, FIXTURE_HASH, 'y');
	ck_assert(vs_password_verify(FIXTURE_PASS, h));
	ck_assert(!vs_password_verify("nope-nope", h));
	/* $2x$ (the buggy pre-2011 variant) is not one we accept. */
	with_prefix(h, FIXTURE_HASH, 'x');
	ck_assert(!vs_password_verify(FIXTURE_PASS, h));
}
END_TEST

START_TEST(test_non_bcrypt_never_matches)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *md5, *sha512;
	char trunc[64];

	ck_assert(!vs_password_verify("unused", "unused"));
	ck_assert(!vs_password_verify("", ""));
	ck_assert(!vs_password_verify("x", NULL));
	ck_assert(!vs_password_verify(NULL, NULL));
	ck_assert(!vs_password_verify("", "*"));
	ck_assert(!vs_password_verify("", "!"));
	/* A real hash of another scheme is still refused. */
	ck_assert_ptr_nonnull(cd);
	sha512 = crypt_rn(FIXTURE_PASS, "$6$saltsalt$", cd, (int)sizeof(*cd));
	ck_assert_ptr_nonnull(sha512);
	ck_assert(!vs_password_verify(FIXTURE_PASS, sha512));
	md5 = crypt_rn(FIXTURE_PASS, "$1$saltsalt$", cd, (int)sizeof(*cd));
	ck_assert_ptr_nonnull(md5);
	ck_assert(!vs_password_verify(FIXTURE_PASS, md5));
	free(cd);
	/* Truncated or extended bcrypt strings. */
	memcpy(trunc, FIXTURE_HASH, 59);
	trunc[59] = '\0';
	ck_assert(!vs_password_verify(FIXTURE_PASS, trunc));
	ck_assert(!vs_password_verify(FIXTURE_PASS, FIXTURE_HASH "x"));
	/* A bcrypt setting (salt only) is not a hash. */
	ck_assert(!vs_password_verify(FIXTURE_PASS, "$2a$10$6hxaqw/FM91JbBqMfHohz."));
}
END_TEST

START_TEST(test_policy_boundaries)
{
	char *p7 = make_pw(7), *p8 = make_pw(8), *p72 = make_pw(72);
	char *p73 = make_pw(73);

	ck_assert_int_eq(vs_password_policy(NULL), VS_PW_TOO_SHORT);
	ck_assert_int_eq(vs_password_policy(""), VS_PW_TOO_SHORT);
	ck_assert_int_eq(vs_password_policy(p7), VS_PW_TOO_SHORT);
	ck_assert_int_eq(vs_password_policy(p8), VS_PW_OK);
	ck_assert_int_eq(vs_password_policy(p72), VS_PW_OK);
	ck_assert_int_eq(vs_password_policy(p73), VS_PW_TOO_LONG);
	/* Bytes, not characters: 4 two-byte letters are 8 bytes. */
	ck_assert_int_eq(vs_password_policy("\xd0\xbf\xd0\xb0\xd1\x80\xd0\xbe"),
			 VS_PW_OK);
	ck_assert_int_eq(vs_password_policy("\xd0\xbf\xd0\xb0\xd1\x80"),
			 VS_PW_TOO_SHORT);
	free(p7);
	free(p8);
	free(p72);
	free(p73);
}
END_TEST

/* D30: a new hash is never made of a longer password (it would be
 * silently truncated), but 72 bytes is fine. */
START_TEST(test_hash_refuses_over_72)
{
	char *p72 = make_pw(72), *p73 = make_pw(73);
	char h[64];

	ck_assert(vs_password_hash(p72, h, sizeof(h)));
	ck_assert(vs_password_verify(p72, h));
	ck_assert(!vs_password_hash(p73, h, sizeof(h)));
	free(p72);
	free(p73);
}
END_TEST

/* DATA.md 5: the reference allowed longer passwords; their hashes keep
 * verifying under bcrypt's own 72-byte rule. */
START_TEST(test_72_byte_rule_kept)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *p100 = make_pw(100), *p72, *p71;
	char setting[CRYPT_GENSALT_OUTPUT_SIZE], hash[64];
	const char *out;

	ck_assert_ptr_nonnull(cd);
	ck_assert_ptr_nonnull(crypt_gensalt_rn("$2a$", 10, NULL, 0, setting,
					       (int)sizeof(setting)));
	out = crypt_rn(p100, setting, cd, (int)sizeof(*cd));
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), 60);
	memcpy(hash, out, 61);
	free(cd);

	ck_assert(vs_password_verify(p100, hash));
	p72 = strndup(p100, 72);
	p71 = strndup(p100, 71);
	ck_assert_ptr_nonnull(p72);
	ck_assert_ptr_nonnull(p71);
	ck_assert(vs_password_verify(p72, hash));
	ck_assert(!vs_password_verify(p71, hash));
	/* Anything after byte 72 is ignored. */
	p100[90] = '#';
	ck_assert(vs_password_verify(p100, hash));
	/* Same under $2b$. */
	hash[2] = 'b';
	ck_assert(vs_password_verify(p72, hash));
	free(p100);
	free(p72);
	free(p71);
}
END_TEST

START_TEST(test_dummy)
{
	/* Only needs to run without failing for any input. */
	vs_password_dummy("whatever");
	vs_password_dummy("");
	vs_password_dummy(NULL);
}
END_TEST

static Suite *
password_suite(void)
{
	Suite *s = suite_create("password");
	TCase *tc = tcase_create("bcrypt");

	/* bcrypt cost 10 under sanitizers takes a while per call. */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_fixture_hash);
	tcase_add_test(tc, test_variants_accepted);
	tcase_add_test(tc, test_non_bcrypt_never_matches);
	tcase_add_test(tc, test_policy_boundaries);
	tcase_add_test(tc, test_hash_refuses_over_72);
	tcase_add_test(tc, test_72_byte_rule_kept);
	tcase_add_test(tc, test_dummy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(password_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
