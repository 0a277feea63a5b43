/*
 * test_cliopt.c - the CLI option walker shared by `user` and `smtp`.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cliopt.h"

struct o {
	const char *data, *name;
	bool flag;
};

#define A 1u
#define B 2u
static const struct vs_cliopt defs[] = {
	VS_CLIOPT_STR(struct o, "data", data, A | B),
	VS_CLIOPT_STR(struct o, "name", name, A),
	VS_CLIOPT_FLAG(struct o, "flag", flag, B),
};

static enum vs_cliopt_rc
run(unsigned cmd, struct o *o, char *err, int argc, char **argv)
{
	memset(o, 0, sizeof(*o));
	return vs_cliopt_parse(argc, argv, 1, defs, 3, cmd, o, err, 128);
}

START_TEST(test_values_and_flags)
{
	char *av[] = { "x", "--data", "/d", "--name=n1", NULL };
	char *bv[] = { "x", "--flag", "--data=/e", NULL };
	char err[128];
	struct o o;

	ck_assert_int_eq(run(A, &o, err, 4, av), VS_CLIOPT_OK);
	ck_assert_str_eq(o.data, "/d");
	ck_assert_str_eq(o.name, "n1");
	ck_assert(!o.flag);
	ck_assert_int_eq(run(B, &o, err, 3, bv), VS_CLIOPT_OK);
	ck_assert(o.flag);
	ck_assert_str_eq(o.data, "/e");
	ck_assert_ptr_null(o.name);
}
END_TEST

START_TEST(test_errors)
{
	char *notfor[] = { "x", "--flag", NULL };
	char *twice[] = { "x", "--data", "a", "--data", "b", NULL };
	char *missing[] = { "x", "--data", NULL };
	char *flagval[] = { "x", "--flag=1", NULL };
	char *bare[] = { "x", "data", NULL };
	char *help[] = { "x", "-h", NULL };
	char err[128];
	struct o o;

	ck_assert_int_eq(run(A, &o, err, 2, notfor), VS_CLIOPT_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "unknown option"));
	ck_assert_int_eq(run(A, &o, err, 5, twice), VS_CLIOPT_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "twice"));
	ck_assert_int_eq(run(A, &o, err, 2, missing), VS_CLIOPT_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "needs a value"));
	ck_assert_int_eq(run(B, &o, err, 2, flagval), VS_CLIOPT_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "takes no value"));
	ck_assert_int_eq(run(A, &o, err, 2, bare), VS_CLIOPT_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "unexpected argument"));
	ck_assert_int_eq(run(A, &o, err, 2, help), VS_CLIOPT_HELP);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("cliopt");
	TCase *tc = tcase_create("parse");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_values_and_flags);
	tcase_add_test(tc, test_errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
