/*
 * test_template.c - unit tests for src/template.c: escaping, the tag
 * syntax (values, catalog texts, sections, inverted sections, lists,
 * partials, comments, standalone lines), the load-time checks that keep
 * a broken template or a missing text from ever being served, and the
 * real templates/ rendered with a hostile value in every field, and
 * no code the CSP would block in any template file or rendered page.
 *
 * Must never: write outside its mkdtemp directory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "template.h"
#include "util.h"

#include <check.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VS_SOURCE_TEMPLATE_DIR
#define VS_SOURCE_TEMPLATE_DIR "templates"
#endif

#define HOSTILE "<script>alert(1)</script>&\"'"
#define HOSTILE_ESC "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"

/* ------------------------------------------------------------------ */
/* A scratch template directory                                       */
/* ------------------------------------------------------------------ */

static char dir[64];

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
put(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

static void
setup(void)
{
	char sub[128];

	strcpy(dir, "/tmp/vs_test_template_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/i18n", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	put("i18n/en.txt", "# test\ngreet.hello = Hello & <welcome>\n"
	    "greet.bye = Bye\n");
	put("i18n/ru.txt", "greet.hello = Привет\ngreet.bye = Пока\n");
}

static void
teardown(void)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Loads the scratch set; the caller frees it. */
static struct vs_tpl_set *
load_ok(void)
{
	char err[512];
	struct vs_tpl_set *set = vs_tpl_load(dir, err, sizeof(err));

	ck_assert_msg(set != NULL, "load failed: %s", err);
	return set;
}

/* Expects loading to fail with a message containing want. */
static void
load_fails(const char *want)
{
	char err[512] = "";
	struct vs_tpl_set *set = vs_tpl_load(dir, err, sizeof(err));

	ck_assert_msg(set == NULL, "load should have failed (%s)", want);
	ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'",
		      err, want);
}

/* Renders name with d into a fresh string (caller frees). */
static char *
render(const struct vs_tpl_set *set, const char *name, const char *locale,
       const struct vs_tdata *d)
{
	struct vs_buf b;

	vs_buf_init(&b);
	ck_assert_msg(vs_tpl_render(set, name, locale, d, &b), "render %s", name);
	ck_assert_ptr_nonnull(b.data);
	return b.data;
}

/* ------------------------------------------------------------------ */
/* Escaping                                                           */
/* ------------------------------------------------------------------ */

START_TEST(test_escape)
{
	struct vs_buf b;

	vs_buf_init(&b);
	ck_assert(vs_html_escape(&b, HOSTILE));
	ck_assert_str_eq(b.data, HOSTILE_ESC);
	vs_buf_reset(&b);
	ck_assert(vs_html_escape(&b, "plain текст ✓"));
	ck_assert_str_eq(b.data, "plain текст ✓");
	vs_buf_reset(&b);
	/* Invalid UTF-8 (a lone continuation byte, an overlong '<', a
	 * truncated sequence) becomes U+FFFD, never a raw byte. */
	ck_assert(vs_html_escape(&b, "a\x80" "b\xc0\xbc" "c\xe2\x82"));
	ck_assert_str_eq(b.data, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"
			 "c\xef\xbf\xbd\xef\xbf\xbd");
	vs_buf_reset(&b);
	ck_assert(vs_html_escape(&b, ""));
	ck_assert_uint_eq(b.len, 0);
	vs_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Syntax                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_values_and_texts)
{
	struct vs_tpl_set *set;
	struct vs_tdata *d = vs_td_new();
	char *out;

	put("page.html", "<p title=\"{{v}}\">{{v}}</p>{{t:greet.hello}}|"
	    "{{missing}}|{{! a comment }}end");
	set = load_ok();
	vs_td_str(d, "v", HOSTILE);
	out = render(set, "page", "en", d);
	ck_assert_str_eq(out, "<p title=\"" HOSTILE_ESC "\">" HOSTILE_ESC
			 "</p>Hello &amp; &lt;welcome&gt;||end");
	free(out);
	out = render(set, "page", "ru", d);
	ck_assert_ptr_nonnull(strstr(out, "Привет"));
	free(out);
	/* An unknown locale reads as English. */
	out = render(set, "page", "de", d);
	ck_assert_ptr_nonnull(strstr(out, "Hello"));
	free(out);
	/* Replacing a value keeps one. */
	vs_td_str(d, "v", "x");
	vs_td_printf(d, "v", "%d-%s", 7, "y");
	out = render(set, "page", "en", d);
	ck_assert_ptr_nonnull(strstr(out, ">7-y<"));
	free(out);
	vs_td_free(d);
	vs_tpl_free(set);
}
END_TEST

START_TEST(test_sections_and_lists)
{
	struct vs_tpl_set *set;
	struct vs_tdata *d = vs_td_new(), *it;
	char *out;

	put("list.html", "{{#flag}}F{{/flag}}{{^flag}}!F{{/flag}}"
	    "{{#s}}S={{s}}{{/s}}{{^s}}noS{{/s}}"
	    "[{{#items}}({{name}}/{{outer}}{{#on}}+{{/on}}){{/items}}]"
	    "{{^items}}empty{{/items}}");
	set = load_ok();
	vs_td_bool(d, "flag", true);
	vs_td_str(d, "s", "");
	vs_td_str(d, "outer", "O");
	vs_td_list(d, "items");
	out = render(set, "list", "en", d);
	ck_assert_str_eq(out, "FnoS[]empty");
	free(out);

	vs_td_bool(d, "flag", false);
	vs_td_str(d, "s", "<v>");
	it = vs_td_item(d, "items");
	vs_td_str(it, "name", "a&b");
	vs_td_bool(it, "on", true);
	it = vs_td_item(d, "items");
	vs_td_str(it, "name", "c");
	/* An item's value shadows the outer one of the same name. */
	vs_td_str(it, "outer", "inner");
	ck_assert(vs_td_ok(d));
	out = render(set, "list", "en", d);
	ck_assert_str_eq(out, "!FS=&lt;v&gt;[(a&amp;b/O+)(c/inner)]");
	free(out);
	vs_td_free(d);
	vs_tpl_free(set);
}
END_TEST

START_TEST(test_partials_and_standalone_lines)
{
	struct vs_tpl_set *set;
	struct vs_tdata *d = vs_td_new();
	char *out;

	put("_part.html", "<h1>{{title}}</h1>\n");
	put("page.html", "{{>_part}}\n<ul>\n  {{#on}}\n  <li>x</li>\n  {{/on}}\n"
	    "  {{! dropped with its line }}\n</ul>\n");
	set = load_ok();
	ck_assert(vs_tpl_exists(set, "page"));
	ck_assert(vs_tpl_exists(set, "_part"));
	ck_assert(!vs_tpl_exists(set, "nope"));
	vs_td_str(d, "title", "<T>");
	vs_td_bool(d, "on", true);
	out = render(set, "page", "en", d);
	ck_assert_str_eq(out, "<h1>&lt;T&gt;</h1>\n<ul>\n  <li>x</li>\n</ul>\n");
	free(out);
	vs_td_free(d);
	vs_tpl_free(set);
}
END_TEST

START_TEST(test_wrong_kinds_fail_render)
{
	struct vs_tpl_set *set;
	struct vs_tdata *d = vs_td_new();
	struct vs_buf b;

	put("page.html", "{{items}}");
	set = load_ok();
	vs_td_item(d, "items");
	vs_buf_init(&b);
	ck_assert(!vs_tpl_render(set, "page", "en", d, &b));
	ck_assert(!vs_tpl_render(set, "absent", "en", d, &b));
	ck_assert(!vs_tpl_render(set, "page", "en", NULL, &b));
	vs_buf_free(&b);
	vs_td_free(d);
	vs_tpl_free(set);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Load-time checks                                                   */
/* ------------------------------------------------------------------ */

START_TEST(test_no_raw_output_tag)
{
	/* Mustache's unescaped forms do not exist here: they do not load. */
	put("page.html", "{{{v}}}");
	load_fails("malformed tag");
	put("page.html", "{{&v}}");
	load_fails("malformed tag");
}
END_TEST

START_TEST(test_load_errors)
{
	put("page.html", "{{#a}}x");
	load_fails("not closed");
	put("page.html", "{{#a}}x{{/b}}");
	load_fails("unexpected closing tag");
	put("page.html", "{{/a}}");
	load_fails("unexpected closing tag");
	put("page.html", "{{v");
	load_fails("unclosed tag");
	put("page.html", "{{ }}");
	load_fails("malformed tag");
	put("page.html", "{{a b}}");
	load_fails("malformed tag");
	put("page.html", "{{>nope}}");
	load_fails("unknown partial nope");
	put("page.html", "{{t:greet.absent}}");
	load_fails("greet.absent is missing");
	put("page.html", "{{t:nodot}}");
	load_fails("malformed translation key");
	/* A key present in one catalog only stops the whole set. */
	put("page.html", "{{t:greet.hello}}");
	put("i18n/ru.txt", "greet.hello = Привет\n");
	load_fails("greet.bye");
}
END_TEST

START_TEST(test_missing_dir)
{
	char err[512];

	ck_assert_ptr_null(vs_tpl_load("/nonexistent/templates", err, sizeof(err)));
	ck_assert(err[0] != '\0');
}
END_TEST

START_TEST(test_partial_recursion_is_bounded)
{
	struct vs_tpl_set *set;
	struct vs_tdata *d = vs_td_new();
	struct vs_buf b;

	put("loop.html", "x{{>loop}}");
	set = load_ok();
	vs_buf_init(&b);
	ck_assert(!vs_tpl_render(set, "loop", "en", d, &b));
	vs_buf_free(&b);
	vs_td_free(d);
	vs_tpl_free(set);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The real templates                                                 */
/* ------------------------------------------------------------------ */

/* Collects the names used as {{name}} or {{#name}} in the real
 * templates, so every one can be given a hostile value. */
struct names {
	char v[256][64];
	size_t n;
};

static void
add_name(struct names *ns, const char *s, size_t len)
{
	if (len == 0 || len >= sizeof(ns->v[0]))
		return;
	for (size_t i = 0; i < ns->n; i++)
		if (strlen(ns->v[i]) == len && strncmp(ns->v[i], s, len) == 0)
			return;
	ck_assert_uint_lt(ns->n, 256);
	memcpy(ns->v[ns->n], s, len);
	ns->v[ns->n][len] = '\0';
	ns->n++;
}

static void
scan_file(struct names *ns, const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[65536];
	size_t n;
	const char *p;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	for (p = strstr(buf, "{{"); p != NULL; p = strstr(p + 2, "{{")) {
		const char *s = p + 2, *e = strstr(s, "}}");
		if (e == NULL)
			break;
		if (*s == '#' || *s == '^')
			s++;
		if (*s == '!' || *s == '>' || *s == '/' || strncmp(s, "t:", 2) == 0)
			continue;
		add_name(ns, s, (size_t)(e - s));
	}
}

/* ------------------------------------------------------------------ */
/* CSP (API.md 1.7): no inline script, style or event handler          */
/* ------------------------------------------------------------------ */

static bool
attr_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

/* Whether the tag text [s, e) (without '<' and '>') has an attribute
 * named name or, when name is NULL, one starting with "on". */
static bool
tag_has_attr(const char *s, const char *e, const char *name)
{
	for (const char *p = s; p < e; p++) {
		const char *a, *q;

		if (p == s || (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n' &&
			       p[-1] != '"' && p[-1] != '\''))
			continue;
		a = p;
		for (q = a; q < e && attr_char(*q); q++)
			;
		if (q == a)
			continue;
		while (q < e && (*q == ' ' || *q == '\t'))
			q++;
		if (q >= e || *q != '=')
			continue;
		if (name == NULL ? (a[0] == 'o' || a[0] == 'O') &&
				   (a[1] == 'n' || a[1] == 'N') && a + 2 < q &&
				   attr_char(a[2])
				 : (size_t)(q - a) >= strlen(name) &&
				   strncasecmp(a, name, strlen(name)) == 0 &&
				   !attr_char(a[strlen(name)]))
			return true;
	}
	return false;
}

/* What in html the page's CSP would block, or NULL: <style>, style="",
 * on*="" handlers, javascript: URLs, or a <script> that is not an empty
 * element with src. *at gets the offending tag. */
static const char *
inline_code(const char *html, const char **at)
{
	*at = html;
	if ((*at = strcasestr(html, "<style")) != NULL)
		return "<style> element";
	if ((*at = strcasestr(html, "javascript:")) != NULL)
		return "javascript: URL";
	for (const char *p = strchr(html, '<'); p != NULL;
	     p = strchr(p + 1, '<')) {
		const char *e;

		if (!((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z')))
			continue;
		*at = p;
		e = strchr(p, '>');
		if (e == NULL)
			return "unterminated tag";
		if (tag_has_attr(p + 1, e, NULL))
			return "event handler attribute";
		if (tag_has_attr(p + 1, e, "style"))
			return "style attribute";
		if (strncasecmp(p, "<script", 7) == 0 && !attr_char(p[7])) {
			if (!tag_has_attr(p + 1, e, "src"))
				return "inline script";
			if (strncasecmp(e, "></script>", 10) != 0)
				return "script with content";
		}
	}
	*at = NULL;
	return NULL;
}

static void
assert_no_inline_code(const char *html, const char *what)
{
	const char *at, *why = inline_code(html, &at);

	ck_assert_msg(why == NULL, "%s: %s at %.60s", what, why, at);
}

START_TEST(test_csp_checker_catches)
{
	static const char *const ok[] = {
		"<p>one=1 onion</p>",
		"<script src=\"/static/app.js\" defer></script>",
		"<a href=\"/x\" class=\"b\" data-on=\"1\">on</a>",
	};
	static const char *const bad[] = {
		"<body onload=\"x()\">", "<a href=x ONCLICK = 'y'>",
		"<div style=\"color:red\">", "<style>p{}</style>",
		"<script>alert(1)</script>", "<script src=/a.js>x</script>",
		"<a href=\"javascript:x\">",
	};
	const char *at;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_no_inline_code(ok[i], ok[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(inline_code(bad[i], &at) != NULL, "not caught: %s",
			      bad[i]);
}
END_TEST

/* Every file under templates/, as written (partials included). */
START_TEST(test_template_files_have_no_inline_code)
{
	char path[512];
	struct dirent *de;
	DIR *dh = opendir(VS_SOURCE_TEMPLATE_DIR);
	int files = 0;

	ck_assert_ptr_nonnull(dh);
	while ((de = readdir(dh)) != NULL) {
		size_t l = strlen(de->d_name);
		char *text;
		FILE *f;
		long n;

		if (l <= 5 || strcmp(de->d_name + l - 5, ".html") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", VS_SOURCE_TEMPLATE_DIR,
			 de->d_name);
		f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
		n = ftell(f);
		ck_assert_int_ge(n, 0);
		ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
		text = malloc((size_t)n + 1);
		ck_assert_ptr_nonnull(text);
		ck_assert_uint_eq(fread(text, 1, (size_t)n, f), (size_t)n);
		text[n] = '\0';
		ck_assert_int_eq(fclose(f), 0);
		assert_no_inline_code(text, path);
		free(text);
		files++;
	}
	closedir(dh);
	ck_assert_int_gt(files, 10);
}
END_TEST

START_TEST(test_real_templates_escape_every_value)
{
	static const char *const pages[] = {
		"home", "register", "login", "dashboard", "forgot", "reset",
		"confirm", "message", "404", "admin_login", "admin_dashboard",
	};
	char err[512], path[512];
	struct vs_tpl_set *set = vs_tpl_load(VS_SOURCE_TEMPLATE_DIR, err,
					     sizeof(err));
	struct names ns = { .n = 0 };
	struct dirent *de;
	DIR *dh;

	ck_assert_msg(set != NULL, "templates: %s", err);
	dh = opendir(VS_SOURCE_TEMPLATE_DIR);
	ck_assert_ptr_nonnull(dh);
	while ((de = readdir(dh)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 5 && strcmp(de->d_name + l - 5, ".html") == 0) {
			snprintf(path, sizeof(path), "%s/%s",
				 VS_SOURCE_TEMPLATE_DIR, de->d_name);
			scan_file(&ns, path);
		}
	}
	closedir(dh);
	ck_assert_uint_gt(ns.n, 10);
	for (size_t pi = 0; pi < sizeof(pages) / sizeof(pages[0]); pi++) {
		for (int li = 0; li < 2; li++) {
			struct vs_tdata *d = vs_td_new(), *it;
			char *out;

			for (size_t i = 0; i < ns.n; i++)
				vs_td_str(d, ns.v[i], HOSTILE);
			/* Lists get one hostile item; the section flags
			 * stay truthy strings so every branch renders. */
			vs_td_list(d, "devices");
			it = vs_td_item(d, "devices");
			for (size_t i = 0; i < ns.n; i++)
				vs_td_str(it, ns.v[i], HOSTILE);
			out = render(set, pages[pi], li ? "ru" : "en", d);
			ck_assert_msg(strstr(out, "<script>alert") == NULL,
				      "%s: raw value in output", pages[pi]);
			ck_assert_msg(strstr(out, "&\"'") == NULL,
				      "%s: unescaped quote", pages[pi]);
			ck_assert_msg(strstr(out, HOSTILE_ESC) != NULL,
				      "%s: value not shown", pages[pi]);
			/* CSP: no inline script, style or handler. */
			assert_no_inline_code(out, pages[pi]);
			ck_assert_ptr_nonnull(strstr(out, "<html lang=\"" HOSTILE_ESC));
			free(out);
			vs_td_free(d);
		}
	}
	vs_tpl_free(set);
}
END_TEST

START_TEST(test_template_dir_env)
{
	char *d;

	ck_assert_int_eq(setenv("VERSTAK_TEMPLATE_DIR", "/some/where", 1), 0);
	d = vs_template_dir();
	ck_assert_str_eq(d, "/some/where");
	free(d);
	ck_assert_int_eq(unsetenv("VERSTAK_TEMPLATE_DIR"), 0);
	d = vs_template_dir();
	ck_assert_ptr_nonnull(d);
	free(d);
}
END_TEST

static Suite *
template_suite(void)
{
	Suite *s = suite_create("template");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_escape);
	tcase_add_test(tc, test_values_and_texts);
	tcase_add_test(tc, test_sections_and_lists);
	tcase_add_test(tc, test_partials_and_standalone_lines);
	tcase_add_test(tc, test_wrong_kinds_fail_render);
	tcase_add_test(tc, test_no_raw_output_tag);
	tcase_add_test(tc, test_load_errors);
	tcase_add_test(tc, test_missing_dir);
	tcase_add_test(tc, test_partial_recursion_is_bounded);
	tcase_add_test(tc, test_csp_checker_catches);
	tcase_add_test(tc, test_template_files_have_no_inline_code);
	tcase_add_test(tc, test_real_templates_escape_every_value);
	tcase_add_test(tc, test_template_dir_env);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(template_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
