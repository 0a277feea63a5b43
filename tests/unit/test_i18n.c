/*
 * test_i18n.c - unit tests for src/i18n.c and src/locale.c: the en and
 * ru catalogs hold identical key sets with no empty text; every key a
 * template uses ({{t:key}}) and every key the C code names (flash and
 * message keys in src/web.c, page.c, accounts.c and admin_web.c) exists
 * in both; the catalog parser's refusals; and the locale rules of
 * API.md 14.
 *
 * Must never: depend on the build directory (it reads the source tree
 * through VS_SOURCE_TEMPLATE_DIR).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "i18n.h"
#include "locale.h"
#include "template.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VS_SOURCE_TEMPLATE_DIR
#define VS_SOURCE_TEMPLATE_DIR "templates"
#endif
#define I18N_DIR VS_SOURCE_TEMPLATE_DIR "/i18n"
#define SRC_DIR VS_SOURCE_TEMPLATE_DIR "/../src"

static struct vs_i18n cat;

static void
setup(void)
{
	char err[512];

	ck_assert_msg(vs_i18n_load(&cat, I18N_DIR, err, sizeof(err)),
		      "catalogs: %s", err);
}

static void
teardown(void)
{
	vs_i18n_free(&cat);
}

/* ------------------------------------------------------------------ */
/* The shipped catalogs                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_identical_key_sets)
{
	const struct vs_catalog *en = &cat.cat[0], *ru = &cat.cat[1];

	ck_assert_uint_gt(en->n, 50);
	ck_assert_uint_eq(en->n, ru->n);
	/* Both are sorted: the same keys means the same sequence. */
	for (size_t i = 0; i < en->n; i++) {
		ck_assert_str_eq(en->e[i].key, ru->e[i].key);
		ck_assert_msg(en->e[i].text[0] != '\0', "empty en %s", en->e[i].key);
		ck_assert_msg(ru->e[i].text[0] != '\0', "empty ru %s", ru->e[i].key);
		ck_assert(vs_i18n_has(&cat, en->e[i].key));
	}
}
END_TEST

START_TEST(test_contract_keys_exist)
{
	/* Keys API.md 5 and 14 name (flashes and redirects). */
	static const char *const keys[] = {
		"error.invalidCredentials", "user.deviceRevoked",
		"error.allFieldsRequired", "error.invalidUsername",
		"error.invalidEmail", "error.passwordInvalid",
		"error.accountTaken", "error.emailRequired",
		"error.passwordMismatch",
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		ck_assert_msg(vs_i18n_has(&cat, keys[i]), "missing %s", keys[i]);
		/* A text is never its own key (D1). */
		ck_assert_str_ne(vs_i18n_get(&cat, "en", keys[i]), keys[i]);
		ck_assert_str_ne(vs_i18n_get(&cat, "ru", keys[i]), keys[i]);
	}
	ck_assert_str_ne(vs_i18n_get(&cat, "en", "user.deviceRevoked"),
			 vs_i18n_get(&cat, "ru", "user.deviceRevoked"));
	ck_assert_ptr_null(vs_i18n_get(&cat, "en", "no.such"));
}
END_TEST

static void
key_exists(const char *key, void *arg)
{
	int *count = arg;

	ck_assert_msg(vs_i18n_has(&cat, key), "template key %s missing", key);
	(*count)++;
}

START_TEST(test_template_keys_exist)
{
	char err[512];
	struct vs_tpl_set *set = vs_tpl_load(VS_SOURCE_TEMPLATE_DIR, err,
					     sizeof(err));
	int count = 0;

	ck_assert_msg(set != NULL, "templates: %s", err);
	vs_tpl_each_key(set, key_exists, &count);
	ck_assert_int_gt(count, 40);
	vs_tpl_free(set);
}
END_TEST

/* Is ns (len bytes) the namespace (text before the first dot) of some
 * catalog key? */
static bool
is_namespace(const char *ns, size_t len)
{
	const struct vs_catalog *en = &cat.cat[0];

	for (size_t i = 0; i < en->n; i++)
		if (strncmp(en->e[i].key, ns, len) == 0 && en->e[i].key[len] == '.')
			return true;
	return false;
}

static bool
ident(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_';
}

/* Checks every "<namespace>.<name>" inside the string literals of a C
 * file: a key the code names but the catalogs lack fails here, at build
 * time, rather than as a blank on a page. Returns how many it checked. */
static int
scan_code(const char *file)
{
	char path[512], *buf;
	FILE *f;
	size_t n;
	int checked = 0;
	bool in_str = false;

	snprintf(path, sizeof(path), "%s/%s", SRC_DIR, file);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	buf = malloc(1 << 20);
	ck_assert_ptr_nonnull(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	for (size_t i = 0; i < n; i++) {
		if (!in_str) {
			/* Skip preprocessor lines ("locale.h" is not a
			 * key), comments and character literals. */
			if (buf[i] == '#' && (i == 0 || buf[i - 1] == '\n')) {
				char *e = strchr(buf + i, '\n');
				i = e ? (size_t)(e - buf) : n;
			} else if (buf[i] == '/' && buf[i + 1] == '*') {
				char *e = strstr(buf + i + 2, "*/");
				i = e ? (size_t)(e - buf) + 1 : n;
			} else if (buf[i] == '\'') {
				i += buf[i + 1] == '\\' ? 3 : 2;
			} else if (buf[i] == '"') {
				in_str = true;
			}
			continue;
		}
		if (buf[i] == '\\') {
			i++;
			continue;
		}
		if (buf[i] == '"') {
			in_str = false;
			continue;
		}
		if (ident(buf[i]) && !ident(buf[i - 1]) && buf[i - 1] != '.') {
			size_t s = i, dot, e;
			while (ident(buf[i]))
				i++;
			dot = i;
			if (buf[dot] != '.' || !is_namespace(buf + s, dot - s)) {
				i--;
				continue;
			}
			e = dot + 1;
			while (ident(buf[e]) || (buf[e] == '.' && ident(buf[e + 1])))
				e++;
			{
				char key[128];
				snprintf(key, sizeof(key), "%.*s", (int)(e - s), buf + s);
				ck_assert_msg(vs_i18n_has(&cat, key),
					      "%s names key %s, missing from a catalog",
					      file, key);
				checked++;
			}
			i = e - 1;
		}
	}
	free(buf);
	return checked;
}

START_TEST(test_code_keys_exist)
{
	ck_assert_int_gt(scan_code("web.c"), 30);
	ck_assert_int_gt(scan_code("accounts.c"), 0);
	ck_assert_int_gt(scan_code("page.c"), 5);
	ck_assert_int_gt(scan_code("admin_web.c"), 30);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Parser                                                             */
/* ------------------------------------------------------------------ */

static void
parse_fails(const char *text, const char *want)
{
	struct vs_catalog c;
	char err[256] = "";

	ck_assert(!vs_catalog_parse(&c, text, strlen(text), "t.txt", err,
				    sizeof(err)));
	ck_assert_msg(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);
}

START_TEST(test_parser)
{
	struct vs_catalog c;
	char err[256];
	const char *text = "# comment\n\n  a.b =  x = y \r\nz.q=1\nlast.one = no newline";
	struct vs_i18n two;

	ck_assert(vs_catalog_parse(&c, text, strlen(text), "t", err, sizeof(err)));
	ck_assert_uint_eq(c.n, 3);
	memset(&two, 0, sizeof(two));
	two.cat[0] = c;
	ck_assert_str_eq(vs_i18n_get(&two, "en", "a.b"), "x = y");
	ck_assert_str_eq(vs_i18n_get(&two, "en", "z.q"), "1");
	ck_assert_str_eq(vs_i18n_get(&two, "en", "last.one"), "no newline");
	vs_catalog_free(&c);

	parse_fails("a.b\n", "missing '='");
	parse_fails("a.b = 1\na.b = 2\n", "duplicate key a.b");
	parse_fails("a.b = \n", "empty text");
	parse_fails("nodot = x\n", "malformed key");
	parse_fails("a..b = x\n", "malformed key");
	parse_fails("a b.c = x\n", "malformed key");
	ck_assert(!vs_i18n_key_shaped(".a"));
	ck_assert(!vs_i18n_key_shaped("a."));
	ck_assert(vs_i18n_key_shaped("error.invalidCredentials"));
}
END_TEST

START_TEST(test_missing_catalog_dir)
{
	struct vs_i18n i;
	char err[256];

	ck_assert(!vs_i18n_load(&i, "/nonexistent", err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "en.txt"));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Locale (API.md 14)                                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_locale_rules)
{
	ck_assert_str_eq(vs_locale_default(NULL), "en");
	ck_assert_str_eq(vs_locale_default("ru"), "ru");
	ck_assert_str_eq(vs_locale_default("de"), "en");

	/* Accept-Language: header order, q-values ignored. */
	ck_assert_str_eq(vs_locale_from_accept("ru-RU,ru;q=0.9,en;q=0.8"), "ru");
	ck_assert_str_eq(vs_locale_from_accept("de-DE, en;q=0.1, ru;q=0.9"), "en");
	ck_assert_str_eq(vs_locale_from_accept(" EN-gb "), "en");
	ck_assert_str_eq(vs_locale_from_accept("fr;q=1, RU"), "ru");
	ck_assert_ptr_null(vs_locale_from_accept("rus, english, de"));
	ck_assert_ptr_null(vs_locale_from_accept(""));
	ck_assert_ptr_null(vs_locale_from_accept(NULL));
	ck_assert_ptr_null(vs_locale_from_accept("*"));

	/* Cookie ru/en wins; system defers to the header; other values
	 * and no header fall back to the default. */
	ck_assert_str_eq(vs_locale_pick("ru", "en", "en"), "ru");
	ck_assert_str_eq(vs_locale_pick("en", "ru", "ru"), "en");
	ck_assert_str_eq(vs_locale_pick("system", "ru", "en"), "ru");
	ck_assert_str_eq(vs_locale_pick("system", "", "ru"), "ru");
	ck_assert_str_eq(vs_locale_pick("bogus", "ru", "en"), "en");
	ck_assert_str_eq(vs_locale_pick("bogus", "en", "ru"), "ru");
	ck_assert_str_eq(vs_locale_pick(NULL, "ru-RU", "en"), "ru");
	ck_assert_str_eq(vs_locale_pick(NULL, "de", "ru"), "ru");
	ck_assert_str_eq(vs_locale_pick(NULL, NULL, "xx"), "en");

	ck_assert_str_eq(vs_locale_cookie_value("ru"), "ru");
	ck_assert_str_eq(vs_locale_cookie_value("en"), "en");
	ck_assert_str_eq(vs_locale_cookie_value("system"), "system");
	ck_assert_str_eq(vs_locale_cookie_value("de"), "system");
	ck_assert_str_eq(vs_locale_cookie_value(NULL), "system");
	ck_assert(vs_locale_supported("en") && vs_locale_supported("ru"));
	ck_assert(!vs_locale_supported("EN") && !vs_locale_supported(NULL));
}
END_TEST

static Suite *
i18n_suite(void)
{
	Suite *s = suite_create("i18n");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_identical_key_sets);
	tcase_add_test(tc, test_contract_keys_exist);
	tcase_add_test(tc, test_template_keys_exist);
	tcase_add_test(tc, test_code_keys_exist);
	tcase_add_test(tc, test_parser);
	tcase_add_test(tc, test_missing_catalog_dir);
	tcase_add_test(tc, test_locale_rules);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(i18n_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
