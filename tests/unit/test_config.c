/*
 * test_config.c - unit tests for src/config.c (DATA.md 2 and 3, D4, D26).
 *
 * Every test works in its own mkdtemp directory (the fixture config.yml
 * is copied there first) and never touches the source tree.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

#ifndef VS_FIXTURE_DIR
#define VS_FIXTURE_DIR "tests/fixtures"
#endif

#define FIXTURE_CONFIG VS_FIXTURE_DIR "/go-datadir-v2/data/config.yml"
#define FIXTURE_HASH "$2a$10$6hxaqw/FM91JbBqMfHohz.cxx9s57A.bzFaRS/Rcp.0GiBLdi7bIq"

static char tmpdir[64];
static char err[512];

/* ---- helpers ----------------------------------------------------- */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	/* Restore write permission in case a test removed it. */
	chmod(path, 0700);
	return remove(path);
}

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vs-test-config-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	err[0] = '\0';
}

static void
teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
path_in(const char *name)
{
	char *p = vs_path_join(tmpdir, name);

	ck_assert_ptr_nonnull(p);
	return p;
}

/* Whole file as a NUL-terminated string (NULL when absent). */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct vs_buf b;
	char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	vs_buf_init(&b);
	ck_assert(vs_buf_append(&b, "", 0));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		ck_assert(vs_buf_append(&b, chunk, n));
	ck_assert_int_eq(ferror(f), 0);
	fclose(f);
	return b.data;
}

static void
write_text(const char *name, const char *text)
{
	char *p = path_in(name);
	FILE *f = fopen(p, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	ck_assert_int_eq(fclose(f), 0);
	free(p);
}

static char *
config_text(void)
{
	char *p = path_in("config.yml");
	char *t = slurp(p);

	free(p);
	return t;
}

static void
copy_fixture(void)
{
	char *t = slurp(FIXTURE_CONFIG);

	ck_assert_msg(t != NULL, "fixture %s missing", FIXTURE_CONFIG);
	write_text("config.yml", t);
	free(t);
}

static void
load_ok(struct vs_config *cfg)
{
	ck_assert_msg(vs_config_load(cfg, tmpdir, err, sizeof(err)),
		      "load failed: %s", err);
}

/* Loads config.yml made of text and expects failure. */
static void
load_fails(const char *text)
{
	struct vs_config cfg;

	write_text("config.yml", text);
	err[0] = '\0';
	ck_assert_msg(!vs_config_load(&cfg, tmpdir, err, sizeof(err)),
		      "loaded: %s", text);
	ck_assert_msg(err[0] != '\0', "no reason given");
	vs_config_free(&cfg);
}

static size_t
count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static size_t
strv_count(char **v)
{
	size_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

static void
replace(char **field, const char *value)
{
	free(*field);
	*field = value == NULL ? NULL : strdup(value);
	ck_assert(value == NULL || *field != NULL);
}

static void
check_default_limits(const struct vs_settings *e)
{
	ck_assert_int_eq(e->limits.max_json_body, 2097152);
	ck_assert_int_eq(e->limits.max_push_operations, 100);
	ck_assert_int_eq(e->limits.max_payload_json, 262144);
	ck_assert_int_eq(e->limits.max_pull_page, 100);
	ck_assert_int_eq(e->limits.max_blob_bytes, 268435456);
	ck_assert_int_eq(e->limits.max_vault_blob_bytes, 4294967296LL);
	ck_assert_int_eq(e->limits.max_user_blob_bytes, 8589934592LL);
	ck_assert_int_eq(e->retention.idempotency_hours, 24);
	ck_assert_int_eq(e->retention.audit_days, 90);
	ck_assert_int_eq(e->retention.temp_upload_hours, 24);
}

/* ---- loading ----------------------------------------------------- */

START_TEST(test_fixture_loads)
{
	struct vs_config cfg;
	struct stat before, after;
	char *p;

	copy_fixture();
	p = path_in("config.yml");
	ck_assert_int_eq(stat(p, &before), 0);
	load_ok(&cfg);
	ck_assert(cfg.file_exists);
	ck_assert_str_eq(cfg.path, p);
	ck_assert_int_eq(cfg.file.port, 47732);
	ck_assert_str_eq(cfg.file.listen, "127.0.0.1:48150");
	ck_assert_str_eq(cfg.eff.listen, "127.0.0.1:48150");
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:48150");
	ck_assert_ptr_null(cfg.file.trusted_proxies);
	ck_assert_uint_eq(strv_count(cfg.eff.trusted_proxies), 0);
	ck_assert_ptr_null(cfg.file.public_url);
	ck_assert_str_eq(cfg.eff.public_url, "");
	ck_assert(!cfg.eff.development_token_logging);
	ck_assert_str_eq(cfg.eff.default_locale, "en");
	ck_assert(cfg.eff.allow_registration);
	ck_assert(cfg.file.allow_registration);
	ck_assert_str_eq(cfg.eff.server_name, "Verstak Sync Server");
	check_default_limits(&cfg.eff);
	check_default_limits(&cfg.file);
	ck_assert_uint_eq(cfg.file.n_admins, 1);
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	ck_assert_str_eq(cfg.eff.admins[0].username, "admin");
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, FIXTURE_HASH);
	vs_config_free(&cfg);
	/* Loading writes nothing. */
	ck_assert_int_eq(stat(p, &after), 0);
	ck_assert_int_eq(before.st_mtime, after.st_mtime);
	ck_assert_int_eq(before.st_ino, after.st_ino);
	ck_assert_uint_eq(count_entries(tmpdir, ""), 1);
	free(p);
}
END_TEST

/* Our writer reproduces the reference's file byte for byte. */
START_TEST(test_fixture_save_identical)
{
	struct vs_config cfg;
	char *orig = slurp(FIXTURE_CONFIG), *saved;

	ck_assert_ptr_nonnull(orig);
	copy_fixture();
	load_ok(&cfg);
	ck_assert_msg(vs_config_save(&cfg, err, sizeof(err)), "%s", err);
	saved = config_text();
	ck_assert_str_eq(saved, orig);
	vs_config_free(&cfg);
	free(orig);
	free(saved);
}
END_TEST

START_TEST(test_absent_file_defaults)
{
	struct vs_config cfg;

	load_ok(&cfg);
	ck_assert(!cfg.file_exists);
	ck_assert_int_eq(cfg.file.port, 0);
	ck_assert_ptr_null(cfg.file.listen);
	ck_assert_ptr_null(cfg.file.server_name);
	ck_assert_int_eq(cfg.file.limits.max_json_body, 0);
	ck_assert(cfg.file.allow_registration);
	ck_assert_uint_eq(cfg.file.n_admins, 0);
	ck_assert_int_eq(cfg.eff.port, 47732);
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	ck_assert_str_eq(cfg.eff.default_locale, "en");
	ck_assert_str_eq(cfg.eff.server_name, "Verstak Sync Server");
	ck_assert_str_eq(cfg.eff.public_url, "");
	ck_assert(cfg.eff.allow_registration);
	ck_assert(!cfg.eff.development_token_logging);
	ck_assert_uint_eq(strv_count(cfg.eff.trusted_proxies), 0);
	check_default_limits(&cfg.eff);
	vs_config_free(&cfg);
	/* Nothing was written. */
	ck_assert_uint_eq(count_entries(tmpdir, ""), 0);
	/* vs_config_free is idempotent. */
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_missing_data_dir_defaults)
{
	struct vs_config cfg;
	char *missing = path_in("not/there");

	ck_assert_msg(vs_config_load(&cfg, missing, err, sizeof(err)), "%s",
		      err);
	ck_assert(!cfg.file_exists);
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	vs_config_free(&cfg);
	ck_assert_uint_eq(count_entries(tmpdir, ""), 0);
	free(missing);
}
END_TEST

START_TEST(test_empty_file_defaults)
{
	static const char *const texts[] = { "", "# only a comment\n", "---\n",
		"~\n" };
	struct vs_config cfg;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		write_text("config.yml", texts[i]);
		load_ok(&cfg);
		ck_assert(cfg.file_exists);
		ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
		ck_assert(cfg.eff.allow_registration);
		check_default_limits(&cfg.eff);
		vs_config_free(&cfg);
	}
}
END_TEST

START_TEST(test_nonpositive_limits_default)
{
	struct vs_config cfg;

	write_text("config.yml",
		   "port: 0\n"
		   "limits:\n"
		   "    max_json_body: 0\n"
		   "    max_push_operations: -5\n"
		   "    max_payload_json: -1\n"
		   "    max_pull_page: 7\n"
		   "    max_blob_bytes: 0\n"
		   "    max_vault_blob_bytes: -4294967296\n"
		   "    max_user_blob_bytes: 0\n"
		   "retention:\n"
		   "    idempotency_hours: 0\n"
		   "    audit_days: -1\n"
		   "    temp_upload_hours: 3\n");
	load_ok(&cfg);
	ck_assert_int_eq(cfg.eff.port, 47732);
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	ck_assert_int_eq(cfg.eff.limits.max_json_body, 2097152);
	ck_assert_int_eq(cfg.eff.limits.max_push_operations, 100);
	ck_assert_int_eq(cfg.eff.limits.max_payload_json, 262144);
	ck_assert_int_eq(cfg.eff.limits.max_pull_page, 7);
	ck_assert_int_eq(cfg.eff.limits.max_blob_bytes, 268435456);
	ck_assert_int_eq(cfg.eff.limits.max_vault_blob_bytes, 4294967296LL);
	ck_assert_int_eq(cfg.eff.limits.max_user_blob_bytes, 8589934592LL);
	ck_assert_int_eq(cfg.eff.retention.idempotency_hours, 24);
	ck_assert_int_eq(cfg.eff.retention.audit_days, 90);
	ck_assert_int_eq(cfg.eff.retention.temp_upload_hours, 3);
	/* The file copy keeps what the file said. */
	ck_assert_int_eq(cfg.file.limits.max_push_operations, -5);
	ck_assert_int_eq(cfg.file.limits.max_json_body, 0);
	ck_assert_int_eq(cfg.file.retention.audit_days, -1);
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_port_builds_listen)
{
	struct vs_config cfg;

	write_text("config.yml", "port: 8080\n");
	load_ok(&cfg);
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:8080");
	vs_config_free(&cfg);

	write_text("config.yml", "port: -3\nlisten: \"\"\n");
	load_ok(&cfg);
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	vs_config_free(&cfg);

	/* YAML integer spellings. */
	write_text("config.yml",
		   "port: 0x1F90\nlimits:\n    max_blob_bytes: 1_000_000\n");
	load_ok(&cfg);
	ck_assert_int_eq(cfg.eff.port, 8080);
	ck_assert_int_eq(cfg.eff.limits.max_blob_bytes, 1000000);
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_web_normalisation)
{
	struct vs_config cfg;

	write_text("config.yml",
		   "web:\n"
		   "    default_locale: de\n"
		   "    server_name: \"   \"\n");
	load_ok(&cfg);
	ck_assert_str_eq(cfg.eff.default_locale, "en");
	ck_assert_str_eq(cfg.file.default_locale, "de");
	ck_assert_str_eq(cfg.eff.server_name, "Verstak Sync Server");
	ck_assert(cfg.eff.allow_registration);
	vs_config_free(&cfg);

	write_text("config.yml",
		   "web:\n"
		   "    default_locale: ru\n"
		   "    allow_registration: false\n"
		   "    server_name: Team Sync\n");
	load_ok(&cfg);
	ck_assert_str_eq(cfg.eff.default_locale, "ru");
	ck_assert(!cfg.eff.allow_registration);
	ck_assert(!cfg.file.allow_registration);
	ck_assert_str_eq(cfg.eff.server_name, "Team Sync");
	vs_config_free(&cfg);

	/* A null value reads as absent: registration stays allowed. */
	write_text("config.yml",
		   "listen:\nweb:\n    allow_registration:\n"
		   "development_token_logging: yes\n");
	load_ok(&cfg);
	ck_assert(cfg.eff.allow_registration);
	ck_assert(cfg.eff.development_token_logging);
	ck_assert_ptr_null(cfg.file.listen);
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_unknown_keys_ignored)
{
	struct vs_config cfg;

	write_text("config.yml",
		   "future_key: {a: 1}\n"
		   "web:\n"
		   "    extra: [1, 2]\n"
		   "    server_name: S\n"
		   "limits:\n"
		   "    max_things: 3\n"
		   "admin:\n"
		   "    - username: a\n"
		   "      password_hash: h\n"
		   "      role: owner\n");
	load_ok(&cfg);
	ck_assert_str_eq(cfg.eff.server_name, "S");
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	ck_assert_str_eq(cfg.eff.admins[0].username, "a");
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, "h");
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_yaml_syntax_error)
{
	load_fails("port: 1\nlisten: [unclosed\n");
	ck_assert_msg(strstr(err, "config.yml") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "line ") != NULL, "%s", err);

	load_fails("web:\n    server_name: a\n  bad: indent\n");
	ck_assert_msg(strstr(err, "line 3") != NULL, "%s", err);

	load_fails("listen: \"unterminated\n");
	ck_assert_msg(strstr(err, "line ") != NULL, "%s", err);

	/* Invalid UTF-8 is a reader error. */
	load_fails("web:\n    server_name: \xff\xfe\n");
	ck_assert_msg(strstr(err, "config.yml") != NULL, "%s", err);
}
END_TEST

START_TEST(test_type_errors)
{
	load_fails("port: abc\n");
	ck_assert_msg(strstr(err, "line 1") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "port") != NULL, "%s", err);
	load_fails("port: \"80\"\n");
	load_fails("port: 99999999999999999999999\n");
	load_fails("web: 5\n");
	load_fails("web:\n    allow_registration: maybe\n");
	ck_assert_msg(strstr(err, "line 2") != NULL, "%s", err);
	load_fails("limits:\n    max_json_body: 1.5\n");
	load_fails("admin: someone\n");
	load_fails("admin:\n    - just-a-name\n");
	load_fails("listen: [a, b]\n");
	load_fails("trusted_proxies: 10.0.0.1\n");
	load_fails("- a\n- b\n");
	load_fails("just a scalar\n");
	load_fails("port: 1\nport: 2\n");
	ck_assert_msg(strstr(err, "already defined") != NULL, "%s", err);
}
END_TEST

START_TEST(test_config_is_directory)
{
	struct vs_config cfg;
	char *p = path_in("config.yml");

	ck_assert_int_eq(mkdir(p, 0700), 0);
	ck_assert(!vs_config_load(&cfg, tmpdir, err, sizeof(err)));
	ck_assert_msg(strstr(err, "regular file") != NULL, "%s", err);
	vs_config_free(&cfg);
	free(p);
}
END_TEST

/* ---- trusted proxies --------------------------------------------- */

START_TEST(test_valid_proxy)
{
	static const char *const good[] = { "10.0.0.1", "10.0.0.0/8",
		"0.0.0.0/0", "192.168.1.0/24", "1.2.3.4/32", "::1", "::/0",
		"fd00::/8", "2001:db8::/128", "::ffff:10.0.0.1",
		"2001:db8::1/64", "10.0.0.0/08" };
	static const char *const bad[] = { "", "not-an-ip", "10.0.0.0/33",
		"::1/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8",
		"10.0.0.0/8/8", "10.0.0", "256.1.1.1", "01.2.3.4",
		" 10.0.0.1", "10.0.0.1 ", "10.0.0.0/ 8", "10.0.0.0/0x8",
		"fe80::1%eth0", "localhost", "10.0.0.0/1000", "*" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(vs_config_valid_proxy(good[i]), "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!vs_config_valid_proxy(bad[i]), "%s", bad[i]);
	ck_assert(!vs_config_valid_proxy(NULL));
}
END_TEST

START_TEST(test_file_proxies)
{
	struct vs_config cfg;

	write_text("config.yml",
		   "trusted_proxies:\n"
		   "    - 10.0.0.0/8\n"
		   "    - \" 192.168.1.1 \"\n"
		   "    - \"\"\n"
		   "    - ::1\n");
	load_ok(&cfg);
	ck_assert_uint_eq(strv_count(cfg.file.trusted_proxies), 4);
	ck_assert_str_eq(cfg.file.trusted_proxies[1], " 192.168.1.1 ");
	ck_assert_uint_eq(strv_count(cfg.eff.trusted_proxies), 3);
	ck_assert_str_eq(cfg.eff.trusted_proxies[0], "10.0.0.0/8");
	ck_assert_str_eq(cfg.eff.trusted_proxies[1], "192.168.1.1");
	ck_assert_str_eq(cfg.eff.trusted_proxies[2], "::1");
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_invalid_file_proxy)
{
	load_fails("trusted_proxies:\n"
		   "    - 10.0.0.0/8\n"
		   "    - not-an-ip\n");
	ck_assert_msg(strstr(err, "not-an-ip") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "line 3") != NULL, "%s", err);
	load_fails("trusted_proxies: [10.0.0.0/33]\n");
	load_fails("trusted_proxies: [\"::1/129\"]\n");
}
END_TEST

/* ---- overrides (DATA.md 2) --------------------------------------- */

static void
listen_with(const char *file, const struct vs_overrides *ov,
	    const char *want)
{
	struct vs_config cfg;

	write_text("config.yml", file);
	load_ok(&cfg);
	ck_assert_msg(vs_config_apply_overrides(&cfg, ov, err, sizeof(err)),
		      "%s", err);
	ck_assert_str_eq(vs_config_listen(&cfg), want);
	vs_config_free(&cfg);
}

START_TEST(test_listen_precedence)
{
	const char *both = "port: 9000\nlisten: 10.0.0.1:9001\n";
	const char *port_only = "port: 9000\n";
	struct vs_overrides ov;

	memset(&ov, 0, sizeof(ov));
	/* 5: port from the file. 4: listen from the file. */
	listen_with(port_only, &ov, "127.0.0.1:9000");
	listen_with(both, &ov, "10.0.0.1:9001");
	listen_with(both, NULL, "10.0.0.1:9001");
	/* 3: VERSTAK_LISTEN beats the file. */
	ov.env_listen = "0.0.0.0:7000";
	listen_with(both, &ov, "0.0.0.0:7000");
	/* 2: --port beats VERSTAK_LISTEN. */
	ov.port = 5555;
	listen_with(both, &ov, "127.0.0.1:5555");
	/* 1: --listen beats everything. */
	ov.listen = "[::1]:6000";
	listen_with(both, &ov, "[::1]:6000");
	/* Empty strings count as not given. */
	memset(&ov, 0, sizeof(ov));
	ov.listen = "";
	ov.env_listen = "";
	listen_with(both, &ov, "10.0.0.1:9001");
}
END_TEST

START_TEST(test_bad_port_override)
{
	struct vs_config cfg;
	struct vs_overrides ov;

	load_ok(&cfg);
	memset(&ov, 0, sizeof(ov));
	ov.port = 70000;
	ck_assert(!vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)));
	ck_assert_msg(strstr(err, "70000") != NULL, "%s", err);
	ov.port = -1;
	ck_assert(!vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)));
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_env_overrides)
{
	struct vs_config cfg;
	struct vs_overrides ov;

	write_text("config.yml",
		   "public_url: https://file.example\n"
		   "trusted_proxies: [10.0.0.1]\n");
	load_ok(&cfg);
	memset(&ov, 0, sizeof(ov));
	ov.env_public_url = "https://env.example";
	ov.env_trusted_proxies = " 10.1.0.0/16, 192.168.0.1 ,,::1,";
	ck_assert_msg(vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)),
		      "%s", err);
	ck_assert_str_eq(cfg.eff.public_url, "https://env.example");
	ck_assert_str_eq(cfg.file.public_url, "https://file.example");
	ck_assert(cfg.public_url_overridden);
	ck_assert_uint_eq(strv_count(cfg.eff.trusted_proxies), 3);
	ck_assert_str_eq(cfg.eff.trusted_proxies[0], "10.1.0.0/16");
	ck_assert_str_eq(cfg.eff.trusted_proxies[1], "192.168.0.1");
	ck_assert_str_eq(cfg.eff.trusted_proxies[2], "::1");
	ck_assert_uint_eq(strv_count(cfg.file.trusted_proxies), 1);
	vs_config_free(&cfg);

	/* A blank VERSTAK_PUBLIC_URL is not an override; others are
	 * trimmed. An empty VERSTAK_TRUSTED_PROXIES list is allowed. */
	load_ok(&cfg);
	memset(&ov, 0, sizeof(ov));
	ov.env_public_url = "   ";
	ov.env_trusted_proxies = " , ";
	ck_assert(vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)));
	ck_assert_str_eq(cfg.eff.public_url, "https://file.example");
	ck_assert(!cfg.public_url_overridden);
	ck_assert_uint_eq(strv_count(cfg.eff.trusted_proxies), 0);
	ov.env_public_url = " https://env.example/ \n";
	ck_assert(vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)));
	ck_assert_str_eq(cfg.eff.public_url, "https://env.example/");
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_invalid_env_proxy)
{
	struct vs_config cfg;
	struct vs_overrides ov;

	write_text("config.yml", "trusted_proxies: [10.0.0.1]\n");
	load_ok(&cfg);
	memset(&ov, 0, sizeof(ov));
	ov.env_trusted_proxies = "10.0.0.2,bogus";
	ov.listen = "0.0.0.0:1";
	ck_assert(!vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)));
	ck_assert_msg(strstr(err, "bogus") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "VERSTAK_TRUSTED_PROXIES") != NULL, "%s",
		      err);
	/* A failed call changes nothing. */
	ck_assert_uint_eq(strv_count(cfg.eff.trusted_proxies), 1);
	ck_assert_str_eq(cfg.eff.trusted_proxies[0], "10.0.0.1");
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:47732");
	vs_config_free(&cfg);
}
END_TEST

/* ---- saving ------------------------------------------------------ */

START_TEST(test_allow_registration_false_written)
{
	struct vs_config cfg;
	char *text;

	load_ok(&cfg);
	cfg.file.allow_registration = false;
	ck_assert_msg(vs_config_save(&cfg, err, sizeof(err)), "%s", err);
	vs_config_free(&cfg);
	text = config_text();
	ck_assert_msg(strstr(text, "web:\n    allow_registration: false\n") != NULL,
		      "%s", text);
	ck_assert_msg(strstr(text, "admin: []\n") != NULL, "%s", text);
	free(text);
	load_ok(&cfg);
	ck_assert(!cfg.eff.allow_registration);
	ck_assert(!cfg.file.allow_registration);
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_set_web)
{
	struct vs_config cfg;
	char *text;

	copy_fixture();
	load_ok(&cfg);
	ck_assert_msg(vs_config_set_web(&cfg, "ru", false, "Team: \"Sync\"",
					"https://sync.example", err,
					sizeof(err)), "%s", err);
	ck_assert_str_eq(cfg.eff.default_locale, "ru");
	ck_assert(!cfg.eff.allow_registration);
	ck_assert_str_eq(cfg.eff.public_url, "https://sync.example");
	vs_config_free(&cfg);
	text = config_text();
	ck_assert_msg(strstr(text, "allow_registration: false") != NULL, "%s",
		      text);
	free(text);
	load_ok(&cfg);
	ck_assert_str_eq(cfg.eff.default_locale, "ru");
	ck_assert(!cfg.eff.allow_registration);
	ck_assert_str_eq(cfg.eff.server_name, "Team: \"Sync\"");
	ck_assert_str_eq(cfg.eff.public_url, "https://sync.example");
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	/* Unsupported locale / blank name: file keeps them, eff defaults. */
	ck_assert(vs_config_set_web(&cfg, "xx", true, " ", NULL, err,
				    sizeof(err)));
	ck_assert_str_eq(cfg.eff.default_locale, "en");
	ck_assert_str_eq(cfg.file.default_locale, "xx");
	ck_assert_str_eq(cfg.eff.server_name, "Verstak Sync Server");
	ck_assert_str_eq(cfg.eff.public_url, "");
	ck_assert(cfg.eff.allow_registration);
	vs_config_free(&cfg);
	text = config_text();
	ck_assert_msg(strstr(text, "public_url") == NULL, "%s", text);
	ck_assert_msg(strstr(text, "allow_registration: true") != NULL, "%s",
		      text);
	free(text);
}
END_TEST

/* Workers follow config.yml's admin list (D31): a changed file is read
 * again, only the admins change, and a broken file leaves the lists as
 * they were with an error. */
START_TEST(test_refresh_admins)
{
	struct vs_config cfg;
	char *p;

	write_text("config.yml",
		   "web:\n    server_name: First\nlimits:\n    max_pull_page: 7\n"
		   "admin:\n    - username: a1\n      password_hash: h1\n");
	load_ok(&cfg);
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	/* Unchanged file: nothing to do. */
	ck_assert_msg(vs_config_refresh_admins(&cfg, err, sizeof(err)), "%s", err);
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, "h1");
	/* New hash, a second admin, and other settings that must not move. */
	write_text("config.yml",
		   "web:\n    server_name: Second\nlimits:\n    max_pull_page: 9\n"
		   "admin:\n    - username: a1\n      password_hash: h2\n"
		   "    - username: a2\n      password_hash: h3\n");
	ck_assert_msg(vs_config_refresh_admins(&cfg, err, sizeof(err)), "%s", err);
	ck_assert_uint_eq(cfg.eff.n_admins, 2);
	ck_assert_uint_eq(cfg.file.n_admins, 2);
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, "h2");
	ck_assert_str_eq(cfg.file.admins[1].username, "a2");
	ck_assert_str_eq(cfg.eff.server_name, "First");
	ck_assert_int_eq(cfg.eff.limits.max_pull_page, 7);
	/* A broken file: error, lists untouched. */
	write_text("config.yml", "admin: [\n");
	ck_assert(!vs_config_refresh_admins(&cfg, err, sizeof(err)));
	ck_assert_uint_eq(cfg.eff.n_admins, 2);
	/* Removed file: no admins. */
	p = path_in("config.yml");
	ck_assert_int_eq(unlink(p), 0);
	free(p);
	ck_assert_msg(vs_config_refresh_admins(&cfg, err, sizeof(err)), "%s", err);
	ck_assert_uint_eq(cfg.eff.n_admins, 0);
	ck_assert_uint_eq(cfg.file.n_admins, 0);
	ck_assert_str_eq(cfg.eff.server_name, "First");
	vs_config_free(&cfg);
}
END_TEST

/* D26: nothing from argv/env reaches the file. */
START_TEST(test_overrides_not_saved)
{
	struct vs_config cfg;
	struct vs_overrides ov;
	char *text;

	write_text("config.yml", "port: 9000\n");
	load_ok(&cfg);
	memset(&ov, 0, sizeof(ov));
	ov.listen = "127.0.0.1:6123";
	ov.port = 6124;
	ov.env_listen = "127.0.0.1:6125";
	ov.env_public_url = "https://env.example";
	ov.env_trusted_proxies = "10.9.9.9";
	ck_assert(vs_config_apply_overrides(&cfg, &ov, err, sizeof(err)));
	ck_assert_msg(vs_config_set_admin(&cfg, "a", FIXTURE_HASH, err,
					  sizeof(err)), "%s", err);
	/* eff keeps the overrides after the change... */
	ck_assert_str_eq(vs_config_listen(&cfg), "127.0.0.1:6123");
	ck_assert_str_eq(cfg.eff.public_url, "https://env.example");
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	/* ...and a web-settings change does not replace the env URL. */
	ck_assert(vs_config_set_web(&cfg, "en", true, "N",
				    "https://file.example", err, sizeof(err)));
	ck_assert_str_eq(cfg.eff.public_url, "https://env.example");
	ck_assert_str_eq(cfg.file.public_url, "https://file.example");
	vs_config_free(&cfg);
	text = config_text();
	ck_assert_msg(strstr(text, "listen") == NULL, "%s", text);
	ck_assert_msg(strstr(text, "612") == NULL, "%s", text);
	ck_assert_msg(strstr(text, "env.example") == NULL, "%s", text);
	ck_assert_msg(strstr(text, "trusted_proxies") == NULL, "%s", text);
	ck_assert_msg(strstr(text, "port: 9000\n") != NULL, "%s", text);
	ck_assert_msg(strstr(text, "    - username: a\n") != NULL, "%s", text);
	free(text);
}
END_TEST

/* Compares two optional strings, treating NULL and "" alike (an empty
 * value is omitted on save and reads back as absent). */
static void
same_str(const char *a, const char *b)
{
	ck_assert_str_eq(a == NULL ? "" : a, b == NULL ? "" : b);
}

static void
same_settings(const struct vs_settings *a, const struct vs_settings *b)
{
	size_t na = strv_count(a->trusted_proxies);

	ck_assert_int_eq(a->port, b->port);
	same_str(a->listen, b->listen);
	ck_assert_uint_eq(na, strv_count(b->trusted_proxies));
	for (size_t i = 0; i < na; i++)
		ck_assert_str_eq(a->trusted_proxies[i], b->trusted_proxies[i]);
	same_str(a->public_url, b->public_url);
	ck_assert(a->development_token_logging == b->development_token_logging);
	same_str(a->default_locale, b->default_locale);
	ck_assert(a->allow_registration == b->allow_registration);
	same_str(a->server_name, b->server_name);
	ck_assert_mem_eq(&a->limits, &b->limits, sizeof(a->limits));
	ck_assert_mem_eq(&a->retention, &b->retention, sizeof(a->retention));
	ck_assert_uint_eq(a->n_admins, b->n_admins);
	for (size_t i = 0; i < a->n_admins; i++) {
		same_str(a->admins[i].username, b->admins[i].username);
		same_str(a->admins[i].password_hash,
			 b->admins[i].password_hash);
	}
}

/* Saves cfg, reloads the file and checks the file copy survived. */
static void
roundtrip(struct vs_config *cfg)
{
	struct vs_config back;

	ck_assert_msg(vs_config_save(cfg, err, sizeof(err)), "%s", err);
	load_ok(&back);
	same_settings(&cfg->file, &back.file);
	vs_config_free(&back);
}

START_TEST(test_roundtrip_all_fields)
{
	struct vs_config cfg;

	load_ok(&cfg);
	cfg.file.port = 1234;
	replace(&cfg.file.listen, "[::]:1235");
	ck_assert(vs_config_set_admin(&cfg, "first", FIXTURE_HASH, err,
				      sizeof(err)));
	ck_assert(vs_config_set_admin(&cfg, "second", "$2b$10$x", err,
				      sizeof(err)));
	cfg.file.trusted_proxies = calloc(4, sizeof(char *));
	ck_assert_ptr_nonnull(cfg.file.trusted_proxies);
	cfg.file.trusted_proxies[0] = strdup("10.0.0.0/8");
	cfg.file.trusted_proxies[1] = strdup("::1");
	cfg.file.trusted_proxies[2] = strdup("192.168.0.1");
	replace(&cfg.file.public_url, "https://sync.example/base?x=1&y=2");
	cfg.file.development_token_logging = true;
	replace(&cfg.file.default_locale, "ru");
	cfg.file.allow_registration = false;
	replace(&cfg.file.server_name, "My Server");
	cfg.file.limits.max_json_body = 1;
	cfg.file.limits.max_push_operations = -2;
	cfg.file.limits.max_user_blob_bytes = 9223372036854775807LL;
	cfg.file.retention.audit_days = 5;
	roundtrip(&cfg);
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_roundtrip_special_strings)
{
	static const char *const specials[] = {
		"a: b # c 'q' \"dq\"", "line1\nline2", "\ttab", "  lead",
		"trail  ", "null", "NULL", "~", "true", "No", "off", "123",
		"-7", "1e5", "0x1F", "0o17", ".inf", "- dash", "? q", "key:",
		"@at", "%pct", "!tag", "*alias", "&anchor", "[x", "{x}", "|",
		">", "`bt", ",c", "#hash", "a #b", "back\\slash", "'single'",
		"\"double\"", "\x01\x1f\x7f", "cr\r\nlf",
		"\xc3\xa9 \xd1\x8e\xd0\xbd\xd0\xb8 \xe2\x9c\x93 \xf0\x9f\x98\x80",
		"nel\xc2\x85x", "ls\xe2\x80\xa8ps\xe2\x80\xa9x", "\xef\xbb\xbf\x62om",
		"\xc2\x80\xc2\x9f c1", "\xef\xbf\xbe", "--- ", "...", "---",
		"a   b", "x: ", "http://h:80/p#frag", "$2a$10$abc/./x",
		"", "y", "=", "2001-12-14",
	};
	struct vs_config cfg;

	load_ok(&cfg);
	ck_assert(vs_config_set_admin(&cfg, "placeholder", "h", err,
				      sizeof(err)));
	for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
		const char *s = specials[i];
		replace(&cfg.file.listen, s);
		replace(&cfg.file.public_url, s);
		replace(&cfg.file.default_locale, s);
		replace(&cfg.file.server_name, s);
		replace(&cfg.file.admins[0].username, s);
		replace(&cfg.file.admins[0].password_hash, s);
		roundtrip(&cfg);
	}
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_invalid_utf8_not_saved)
{
	struct vs_config cfg;
	char *before;

	copy_fixture();
	before = config_text();
	load_ok(&cfg);
	replace(&cfg.file.server_name, "bad \xc3\x28 byte");
	ck_assert(!vs_config_save(&cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "UTF-8") != NULL, "%s", err);
	ck_assert_uint_eq(count_entries(tmpdir, ".config-"), 0);
	vs_config_free(&cfg);
	{
		char *after = config_text();
		ck_assert_str_eq(after, before);
		free(after);
	}
	free(before);
}
END_TEST

static void
mode_after_save(mode_t mask)
{
	struct vs_config cfg;
	struct stat st;
	char *p = path_in("config.yml");
	mode_t old = umask(mask);

	load_ok(&cfg);
	ck_assert_msg(vs_config_save(&cfg, err, sizeof(err)), "%s", err);
	umask(old);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == 0640, "mode %o with umask %o",
		      (unsigned)(st.st_mode & 07777), (unsigned)mask);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(count_entries(tmpdir, ".config-"), 0);
	vs_config_free(&cfg);
	free(p);
}

START_TEST(test_mode_0640)
{
	mode_after_save(022);
	mode_after_save(077);
	mode_after_save(0);
	/* Replacing a file with other permissions also ends at 0640. */
	{
		char *p = path_in("config.yml");
		ck_assert_int_eq(chmod(p, 0666), 0);
		free(p);
	}
	mode_after_save(022);
}
END_TEST

/* Points a loaded config at another data directory. */
static void
retarget(struct vs_config *cfg, const char *dir)
{
	replace(&cfg->data_dir, dir);
	free(cfg->path);
	cfg->path = vs_path_join(dir, "config.yml");
	ck_assert_ptr_nonnull(cfg->path);
}

START_TEST(test_failed_save_leaves_nothing)
{
	struct vs_config cfg;
	char *file = path_in("plainfile");
	char *missing = path_in("missing");
	char *cdir = path_in("config.yml");

	write_text("plainfile", "x");
	load_ok(&cfg);
	ck_assert(vs_config_set_admin(&cfg, "keep", "h1", err, sizeof(err)));

	/* Data "directory" that is a regular file. */
	retarget(&cfg, file);
	err[0] = '\0';
	ck_assert(!vs_config_save(&cfg, err, sizeof(err)));
	ck_assert(err[0] != '\0');

	/* Data directory that does not exist. */
	retarget(&cfg, missing);
	err[0] = '\0';
	ck_assert(!vs_config_set_admin(&cfg, "new", "h2", err, sizeof(err)));
	ck_assert(err[0] != '\0');
	/* Memory is unchanged by a failed change. */
	ck_assert_uint_eq(cfg.file.n_admins, 1);
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	ck_assert_str_eq(cfg.eff.admins[0].username, "keep");

	/* The rename fails (config.yml is a directory) after the temp file
	 * was written: the temp file must be gone. */
	retarget(&cfg, tmpdir);
	ck_assert_int_eq(unlink(cdir), 0);
	ck_assert_int_eq(mkdir(cdir, 0700), 0);
	err[0] = '\0';
	ck_assert(!vs_config_set_admin(&cfg, "keep", "h3", err, sizeof(err)));
	ck_assert_msg(strstr(err, "rename") != NULL, "%s", err);
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, "h1");
	ck_assert_uint_eq(count_entries(tmpdir, ".config-"), 0);
	ck_assert_uint_eq(count_entries(tmpdir, ""), 2);
	vs_config_free(&cfg);
	free(file);
	free(missing);
	free(cdir);
}
END_TEST

/* A write error in the temp file (file size limit) removes it and
 * leaves config.yml as it was. */
START_TEST(test_failed_write_leaves_nothing)
{
	struct vs_config cfg;
	struct rlimit old, small = { 16, 16 };
	char *before, *after;
	void (*oldsig)(int);
	bool ok;

	copy_fixture();
	before = config_text();
	load_ok(&cfg);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	oldsig = signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	err[0] = '\0';
	ok = vs_config_set_admin(&cfg, "admin", "other", err, sizeof(err));
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	ck_assert(!ok);
	ck_assert_msg(strstr(err, "write") != NULL, "%s", err);
	ck_assert_uint_eq(count_entries(tmpdir, ".config-"), 0);
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, FIXTURE_HASH);
	after = config_text();
	ck_assert_str_eq(after, before);
	vs_config_free(&cfg);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_set_admin_replace_append)
{
	struct vs_config cfg;
	const char *h2 = "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234";

	copy_fixture();
	load_ok(&cfg);
	ck_assert(vs_config_set_admin(&cfg, "admin", h2, err, sizeof(err)));
	ck_assert_uint_eq(cfg.file.n_admins, 1);
	ck_assert_uint_eq(cfg.eff.n_admins, 1);
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, h2);
	ck_assert_str_eq(cfg.file.admins[0].password_hash, h2);
	/* Case-sensitive: "Admin" is someone else. */
	ck_assert(vs_config_set_admin(&cfg, "Admin", FIXTURE_HASH, err,
				      sizeof(err)));
	ck_assert_uint_eq(cfg.eff.n_admins, 2);
	ck_assert_str_eq(cfg.eff.admins[1].username, "Admin");
	ck_assert_str_eq(cfg.file.admins[1].password_hash, FIXTURE_HASH);
	vs_config_free(&cfg);

	load_ok(&cfg);
	ck_assert_uint_eq(cfg.file.n_admins, 2);
	ck_assert_str_eq(cfg.eff.admins[0].username, "admin");
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, h2);
	ck_assert_str_eq(cfg.eff.admins[1].username, "Admin");
	/* The rest of the file is kept. */
	ck_assert_str_eq(cfg.file.listen, "127.0.0.1:48150");
	ck_assert_int_eq(cfg.file.limits.max_blob_bytes, 268435456);
	ck_assert(!vs_config_set_admin(&cfg, "", h2, err, sizeof(err)));
	ck_assert(!vs_config_set_admin(&cfg, "x", "", err, sizeof(err)));
	ck_assert(!vs_config_set_admin(&cfg, NULL, h2, err, sizeof(err)));
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_set_admin_duplicates)
{
	struct vs_config cfg;

	write_text("config.yml",
		   "admin:\n"
		   "    - username: a\n"
		   "      password_hash: old1\n"
		   "    - username: b\n"
		   "      password_hash: keep\n"
		   "    - username: a\n"
		   "      password_hash: old2\n");
	load_ok(&cfg);
	ck_assert(vs_config_set_admin(&cfg, "a", "new", err, sizeof(err)));
	ck_assert_uint_eq(cfg.eff.n_admins, 3);
	ck_assert_str_eq(cfg.eff.admins[0].password_hash, "new");
	ck_assert_str_eq(cfg.eff.admins[1].password_hash, "keep");
	ck_assert_str_eq(cfg.eff.admins[2].password_hash, "new");
	vs_config_free(&cfg);
	load_ok(&cfg);
	ck_assert_str_eq(cfg.file.admins[0].password_hash, "new");
	ck_assert_str_eq(cfg.file.admins[2].password_hash, "new");
	vs_config_free(&cfg);
}
END_TEST

START_TEST(test_set_admin_creates_file)
{
	struct vs_config cfg;
	char *text;

	load_ok(&cfg);
	ck_assert(vs_config_set_admin(&cfg, "root", FIXTURE_HASH, err,
				      sizeof(err)));
	vs_config_free(&cfg);
	text = config_text();
	ck_assert_str_eq(text,
			 "web:\n"
			 "    allow_registration: true\n"
			 "admin:\n"
			 "    - username: root\n"
			 "      password_hash: " FIXTURE_HASH "\n");
	free(text);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *load = tcase_create("load");
	TCase *proxy = tcase_create("proxies");
	TCase *ov = tcase_create("overrides");
	TCase *save = tcase_create("save");
	TCase *all[] = { load, proxy, ov, save };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_add_checked_fixture(all[i], setup, teardown);
		tcase_set_timeout(all[i], 30);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(load, test_fixture_loads);
	tcase_add_test(load, test_absent_file_defaults);
	tcase_add_test(load, test_missing_data_dir_defaults);
	tcase_add_test(load, test_empty_file_defaults);
	tcase_add_test(load, test_nonpositive_limits_default);
	tcase_add_test(load, test_port_builds_listen);
	tcase_add_test(load, test_web_normalisation);
	tcase_add_test(load, test_unknown_keys_ignored);
	tcase_add_test(load, test_yaml_syntax_error);
	tcase_add_test(load, test_type_errors);
	tcase_add_test(load, test_config_is_directory);
	tcase_add_test(proxy, test_valid_proxy);
	tcase_add_test(proxy, test_file_proxies);
	tcase_add_test(proxy, test_invalid_file_proxy);
	tcase_add_test(ov, test_listen_precedence);
	tcase_add_test(ov, test_bad_port_override);
	tcase_add_test(ov, test_env_overrides);
	tcase_add_test(ov, test_invalid_env_proxy);
	tcase_add_test(save, test_fixture_save_identical);
	tcase_add_test(save, test_allow_registration_false_written);
	tcase_add_test(save, test_set_web);
	tcase_add_test(save, test_overrides_not_saved);
	tcase_add_test(save, test_roundtrip_all_fields);
	tcase_add_test(save, test_roundtrip_special_strings);
	tcase_add_test(save, test_invalid_utf8_not_saved);
	tcase_add_test(save, test_mode_0640);
	tcase_add_test(save, test_failed_save_leaves_nothing);
	tcase_add_test(save, test_failed_write_leaves_nothing);
	tcase_add_test(save, test_set_admin_replace_append);
	tcase_add_test(save, test_set_admin_duplicates);
	tcase_add_test(save, test_set_admin_creates_file);
	tcase_add_test(save, test_refresh_admins);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0;
}
