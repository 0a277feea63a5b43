/*
 * test_db.c - unit tests for src/db.c: file creation and modes (D27),
 * pragmas, the schema of DATA.md 4.2/4.3 against the reference's fixture
 * database, the 4.4 migration (fixture untouched, legacy layout, D36,
 * idempotence), transactions, the statement cache and busy handling.
 *
 * Must never: touch the fixture in place (tests work on copies in
 * mkdtemp directories).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw, clock_gettime, nanosleep */
#endif
#include "db.h"
#include "util.h"
#include "writelock.h"
#include "test_rm.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef VS_FIXTURE_DIR
#define VS_FIXTURE_DIR "tests/fixtures"
#endif
#define FIXTURE_DB VS_FIXTURE_DIR "/go-datadir-v2/data/server.db"

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static char tmpdir[64];

static void
make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/vs_test_db_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
rm_tmpdir(void)
{
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

/* tmpdir/name in a static buffer (tests are single-threaded here). */
static const char *
tpath(const char *name)
{
	static char buf[4][256];
	static int n;
	char *b = buf[n++ % 4];

	snprintf(b, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return b;
}

static void
copy_file(const char *src, const char *dst, mode_t mode)
{
	char chunk[8192];
	ssize_t r;
	int in = open(src, O_RDONLY), out;

	ck_assert_msg(in >= 0, "open %s: %s", src, strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_int_ge(out, 0);
	while ((r = read(in, chunk, sizeof(chunk))) > 0)
		ck_assert(vs_write_all(out, chunk, (size_t)r));
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(close(in), 0);
	ck_assert_int_eq(fchmod(out, mode), 0);
	ck_assert_int_eq(close(out), 0);
}

static mode_t
file_mode(const char *path)
{
	struct stat st;

	ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path,
		      strerror(errno));
	return st.st_mode & 07777;
}

static sqlite3 *
raw_open(const char *path)
{
	sqlite3 *h = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE |
			 SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_busy_timeout(h, 5000), SQLITE_OK);
	return h;
}

static void
raw_close(sqlite3 *h)
{
	ck_assert_int_eq(sqlite3_close(h), SQLITE_OK);
}

static void
exec_ok(sqlite3 *h, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
}

/* Appends every row of sql: each value with a type tag, | between
 * columns, newline between rows. */
static void
dump_query(sqlite3 *h, const char *sql, struct vs_buf *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	ck_assert_msg(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK,
		      "%s: %s", sql, sqlite3_errmsg(h));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			int t = sqlite3_column_type(st, i);

			if (t == SQLITE_NULL) {
				vs_buf_puts(out, "N|");
			} else if (t == SQLITE_BLOB) {
				const unsigned char *p = sqlite3_column_blob(st, i);
				int n = sqlite3_column_bytes(st, i);

				vs_buf_puts(out, "B:");
				for (int k = 0; k < n; k++)
					vs_buf_printf(out, "%02x", p[k]);
				vs_buf_puts(out, "|");
			} else {
				vs_buf_printf(out, "%d:%s|", t,
				    (const char *)sqlite3_column_text(st, i));
			}
		}
		vs_buf_puts(out, "\n");
	}
	ck_assert_msg(rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(h));
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	ck_assert(!out->oom);
}

/* Every row of every server_* table and sqlite_sequence, the sql of
 * every object that is not ours, and user_version. malloc'd. */
static char *
dump_db(sqlite3 *h)
{
	struct vs_buf out, names;
	char sql[256];

	vs_buf_init(&out);
	vs_buf_init(&names);
	dump_query(h, "SELECT name FROM sqlite_master WHERE type = 'table'"
		   " AND (name LIKE 'server\\_%' ESCAPE '\\'"
		   " OR name = 'sqlite_sequence') ORDER BY name", &names);
	for (char *line = names.data, *nl; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		ck_assert_ptr_nonnull(nl);
		*nl = '\0';
		/* "3:name|" */
		line[strlen(line) - 1] = '\0';
		snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY rowid",
			 line + 2);
		vs_buf_printf(&out, "== %s\n", line + 2);
		dump_query(h, sql, &out);
	}
	vs_buf_puts(&out, "== schema\n");
	dump_query(h, "SELECT type, name, tbl_name, sql FROM sqlite_master"
		   " WHERE name NOT LIKE 'vs\\_%' ESCAPE '\\'"
		   " AND tbl_name NOT LIKE 'vs\\_%' ESCAPE '\\' ORDER BY name",
		   &out);
	dump_query(h, "PRAGMA user_version", &out);
	vs_buf_free(&names);
	ck_assert(!out.oom);
	return out.data;
}

/* Like ck_assert_str_eq for long texts: check's messages are limited,
 * so report only the neighbourhood of the first difference. */
static void
assert_same_text(const char *a, const char *b)
{
	size_t i = 0;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	while (a[i] != '\0' && a[i] == b[i])
		i++;
	if (a[i] == b[i])
		return;
	i = i > 80 ? i - 80 : 0;
	ck_assert_msg(0, "texts differ near offset %zu:\n--- a\n%.200s\n"
		      "--- b\n%.200s", i, a + i, b + i);
}

static char *
dump_path(const char *path)
{
	sqlite3 *h = raw_open(path);
	char *d = dump_db(h);

	raw_close(h);
	return d;
}

/* The first column of the first row as a malloc'd string, NULL if none. */
static char *
q_str(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *st = NULL;
	char *r = NULL;
	int rc;

	ck_assert_msg(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK,
		      "%s: %s", sql, sqlite3_errmsg(h));
	rc = sqlite3_step(st);
	ck_assert(rc == SQLITE_ROW || rc == SQLITE_DONE);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		r = strdup((const char *)sqlite3_column_text(st, 0));
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	return r;
}

static long long
q_int(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long v;

	ck_assert_msg(sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK,
		      "%s: %s", sql, sqlite3_errmsg(h));
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	return v;
}

/* Asserts that sql's first column equals want (NULL = SQL NULL/no row). */
static void
assert_str(sqlite3 *h, const char *sql, const char *want)
{
	char *got = q_str(h, sql);

	if (want == NULL)
		ck_assert_msg(got == NULL, "%s: got %s, want NULL", sql, got);
	else
		ck_assert_msg(got != NULL && strcmp(got, want) == 0,
			      "%s: got %s, want %s", sql, got ? got : "NULL",
			      want);
	free(got);
}

static void
open_db(struct vs_db *db)
{
	char err[256] = "";

	ck_assert_msg(vs_db_open(db, tmpdir, err, sizeof(err)) == VS_DB_OK,
		      "open: %s", err);
}

static void
migrate_db(struct vs_db *db)
{
	char err[256] = "";

	ck_assert_msg(vs_db_migrate(db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
}

static void
open_migrated(struct vs_db *db)
{
	open_db(db);
	migrate_db(db);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* DATA.md 4.3, spelled out independently of db.c                      */
/* ------------------------------------------------------------------ */

static const struct {
	const char *name, *table, *cols;
} named_indexes[] = {
	{ "idx_server_ops_sequence", "server_ops", "server_sequence" },
	{ "idx_server_ops_entity", "server_ops", "entity_type,entity_id" },
	{ "idx_server_ops_idempotency", "server_ops", "idempotency_key" },
	{ "idx_server_ops_scope_sequence", "server_ops",
	  "user_id,vault_id,server_sequence" },
	{ "idx_server_devices_api_key", "server_devices", "api_key" },
	{ "idx_server_devices_user", "server_devices", "user_id" },
	{ "idx_server_devices_scope", "server_devices", "user_id,vault_id" },
	{ "idx_server_users_username", "server_users", "username" },
	{ "idx_server_users_email", "server_users", "email" },
	{ "idx_server_audit_log_event", "server_audit_log", "event_type" },
	{ "idx_server_audit_log_created", "server_audit_log", "created_at" },
	{ "idx_server_blob_refs_scope", "server_blob_refs",
	  "user_id,vault_id,sha256" },
	{ "idx_server_blob_refs_user", "server_blob_refs", "user_id,sha256" },
	{ "idx_server_sessions_expiry", "server_sessions", "expires_at" },
	{ "idx_server_sessions_subject", "server_sessions",
	  "scope,subject_id" },
};

static const char *const server_tables[] = {
	"server_users", "server_devices", "server_user_devices",
	"server_ops", "server_revisions", "server_tombstones",
	"server_idempotency_keys", "server_email_tokens", "server_sessions",
	"server_blobs", "server_blob_refs", "server_audit_log",
	"server_smtp_config",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void
assert_named_indexes(sqlite3 *h)
{
	char sql[512];

	for (size_t i = 0; i < N(named_indexes); i++) {
		snprintf(sql, sizeof(sql), "SELECT tbl_name FROM sqlite_master"
			 " WHERE type = 'index' AND name = '%s'",
			 named_indexes[i].name);
		assert_str(h, sql, named_indexes[i].table);
		snprintf(sql, sizeof(sql), "SELECT group_concat(name, ',')"
			 " FROM (SELECT name FROM pragma_index_info('%s')"
			 " ORDER BY seqno)", named_indexes[i].name);
		assert_str(h, sql, named_indexes[i].cols);
		snprintf(sql, sizeof(sql), "SELECT \"unique\" FROM"
			 " pragma_index_list('%s') WHERE name = '%s'",
			 named_indexes[i].table, named_indexes[i].name);
		assert_str(h, sql, "0");
	}
}

static char *
table_info_of(sqlite3 *h, const char *table)
{
	struct vs_buf out;
	char sql[256];

	vs_buf_init(&out);
	snprintf(sql, sizeof(sql), "SELECT name, type, \"notnull\","
		 " dflt_value, pk FROM pragma_table_info('%s') ORDER BY cid",
		 table);
	dump_query(h, sql, &out);
	return out.data;
}

/* ------------------------------------------------------------------ */
/* Fresh database                                                     */
/* ------------------------------------------------------------------ */

START_TEST(test_fresh_schema_matches_reference)
{
	struct vs_db db;
	sqlite3 *ref;
	char *a, *b;

	make_tmpdir();
	open_migrated(&db);
	copy_file(FIXTURE_DB, tpath("ref.db"), 0600);
	ref = raw_open(tpath("ref.db"));

	for (size_t i = 0; i < N(server_tables); i++) {
		a = table_info_of(ref, server_tables[i]);
		b = table_info_of(db.h, server_tables[i]);
		ck_assert_msg(a != NULL && strlen(a) > 0, "%s missing in ref",
			      server_tables[i]);
		ck_assert_msg(b != NULL && strcmp(a, b) == 0,
			      "%s: table_info differs:\nref:\n%s\nours:\n%s",
			      server_tables[i], a, b ? b : "");
		free(a);
		free(b);
	}
	/* Stronger: the stored declarations are the reference's, byte for
	 * byte, so the reference's own layout checks see its own schema. */
	{
		const char *q = "SELECT type, name, tbl_name, sql FROM"
			" sqlite_master WHERE name NOT LIKE 'vs\\_%' ESCAPE '\\'"
			" AND tbl_name NOT LIKE 'vs\\_%' ESCAPE '\\'"
			" ORDER BY name";
		struct vs_buf x, y;

		vs_buf_init(&x);
		vs_buf_init(&y);
		dump_query(ref, q, &x);
		dump_query(db.h, q, &y);
		assert_same_text(x.data, y.data);
		vs_buf_free(&x);
		vs_buf_free(&y);
	}
	assert_named_indexes(db.h);
	assert_str(db.h, "PRAGMA journal_mode", "wal");
	assert_str(db.h, "PRAGMA foreign_keys", "1");
	/* With the shared writer queue, commits run at NORMAL and are
	 * synced after the lock is released (db.c); without it, FULL. */
	assert_str(db.h, "PRAGMA synchronous",
		   db.wlock.shm != NULL ? "1" : "2");
	ck_assert(db.sync_after_commit == (db.wlock.shm != NULL));
	ck_assert_int_eq(vs_db_sync(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_user_version(&db), 2);
	/* Our soft-state tables and extra index. */
	ck_assert_int_eq(q_int(db.h, "SELECT count(*) FROM sqlite_master"
		" WHERE name IN ('vs_rate_buckets', 'vs_one_time_secrets',"
		" 'vs_leases', 'vs_idx_devices_token_hash',"
		" 'vs_idx_rate_buckets_window_end', 'vs_blob_ref_added',"
		" 'vs_idx_blob_refs_sha256')"), 7);
	ck_assert_int_eq(q_int(db.h, "SELECT count(*) FROM sqlite_master"
		" WHERE name LIKE '%aside%'"), 0);
	raw_close(ref);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_fresh_file_modes)
{
	struct vs_db db;

	umask(022);
	make_tmpdir();
	open_migrated(&db);
	/* A write so that the WAL certainly exists while we look. */
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO server_smtp_config"
		" (key, value) VALUES ('smtp_host', '')"), VS_DB_OK);
	ck_assert_int_eq(file_mode(tpath("server.db")), 0640);
	ck_assert_int_eq(file_mode(tpath("server.db-wal")), 0640);
	ck_assert_int_eq(file_mode(tpath("server.db-shm")), 0640);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_existing_mode_kept)
{
	struct vs_db db;
	int fd;

	umask(0);
	make_tmpdir();
	fd = open(tpath("server.db"), O_WRONLY | O_CREAT | O_EXCL, 0604);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(close(fd), 0);
	open_migrated(&db);
	ck_assert_int_eq(file_mode(tpath("server.db")), 0604);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_open_errors)
{
	struct vs_db db;
	char err[256] = "";
	int fd;

	make_tmpdir();
	ck_assert_int_eq(vs_db_open(&db, tpath("missing"), err, sizeof(err)),
			 VS_DB_ERROR);
	ck_assert_str_ne(err, "");
	ck_assert_ptr_null(db.h);

	fd = open(tpath("server.db"), O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert(vs_write_all(fd, "this is not a database, not at all....",
			       38));
	ck_assert_int_eq(close(fd), 0);
	err[0] = '\0';
	ck_assert_int_eq(vs_db_open(&db, tmpdir, err, sizeof(err)),
			 VS_DB_ERROR);
	ck_assert_str_ne(err, "");
	rm_tmpdir();
}
END_TEST

START_TEST(test_migrate_twice_idempotent)
{
	struct vs_db db;
	char *a, *b;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_int_eq(vs_db_exec(&db,
		"INSERT INTO server_users (id, username, email, password_hash,"
		" created_at) VALUES ('u1', 'alice', 'a@x', 'unused',"
		" '2024-01-01T00:00:00Z');"
		"INSERT INTO server_devices (id, name, api_key, user_id,"
		" vault_id, created_at) VALUES ('d1', 'n', 'disabled:d1', 'u1',"
		" 'v1', '2024-01-01T00:00:00Z');"
		"INSERT INTO server_revisions (op_id, device_id)"
		" VALUES ('o1', 'd1')"), VS_DB_OK);
	a = dump_db(db.h);
	migrate_db(&db);
	migrate_db(&db);
	b = dump_db(db.h);
	assert_same_text(a, b);
	free(a);
	free(b);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ */
/* The reference's database                                           */
/* ------------------------------------------------------------------ */

START_TEST(test_fixture_unchanged)
{
	struct vs_db db;
	char *before, *after;

	make_tmpdir();
	copy_file(FIXTURE_DB, tpath("server.db"), 0600);
	before = dump_path(tpath("server.db"));
	ck_assert_ptr_nonnull(strstr(before, "== server_ops\n"));
	ck_assert_ptr_nonnull(strstr(before, "== sqlite_sequence\n"));

	open_migrated(&db);
	ck_assert_int_eq(vs_db_user_version(&db), 2);
	migrate_db(&db);
	vs_db_close(&db);

	after = dump_path(tpath("server.db"));
	assert_same_text(before, after);
	ck_assert_int_eq(file_mode(tpath("server.db")), 0600);
	free(before);
	free(after);
	rm_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Legacy layout                                                      */
/* ------------------------------------------------------------------ */

static void
build_legacy(const char *path)
{
	sqlite3 *h = raw_open(path);

	exec_ok(h,
		"CREATE TABLE server_users (id TEXT PRIMARY KEY,"
		" username TEXT NOT NULL UNIQUE, email TEXT NOT NULL UNIQUE,"
		" password_hash TEXT NOT NULL,"
		" confirmed INTEGER NOT NULL DEFAULT 0,"
		" blocked INTEGER NOT NULL DEFAULT 0, last_seen TEXT,"
		" created_at TEXT NOT NULL);"
		"CREATE TABLE server_devices (id TEXT PRIMARY KEY,"
		" name TEXT NOT NULL, api_key TEXT NOT NULL UNIQUE,"
		" token_hash TEXT, token_prefix TEXT, token_suffix TEXT,"
		" client_version TEXT, last_ip TEXT, last_seen TEXT,"
		" revoked_at TEXT, created_at TEXT NOT NULL);"
		"CREATE TABLE server_user_devices (user_id TEXT NOT NULL,"
		" device_id TEXT NOT NULL, PRIMARY KEY (user_id, device_id));"
		"CREATE TABLE server_ops (op_id TEXT PRIMARY KEY,"
		" server_sequence INTEGER, device_id TEXT NOT NULL,"
		" entity_type TEXT NOT NULL, entity_id TEXT NOT NULL,"
		" op_type TEXT NOT NULL, payload_json TEXT NOT NULL,"
		" idempotency_key TEXT, client_sequence INTEGER DEFAULT 0,"
		" last_seen_server_seq INTEGER DEFAULT 0,"
		" created_at TEXT NOT NULL,"
		" pushed_at TEXT NOT NULL DEFAULT (datetime('now')));"
		"CREATE TABLE server_tombstones (entity_type TEXT NOT NULL,"
		" entity_id TEXT NOT NULL, op_id TEXT NOT NULL,"
		" deleted_at TEXT NOT NULL,"
		" PRIMARY KEY (entity_type, entity_id));"
		"CREATE TABLE server_idempotency_keys ("
		" idempotency_key TEXT PRIMARY KEY,"
		" response_json TEXT NOT NULL, created_at TEXT NOT NULL);"
		"CREATE TABLE server_email_tokens (token TEXT PRIMARY KEY,"
		" user_id TEXT NOT NULL, purpose TEXT NOT NULL,"
		" expires_at TEXT NOT NULL, created_at TEXT NOT NULL);"
		"CREATE TABLE server_revisions ("
		" id INTEGER PRIMARY KEY AUTOINCREMENT,"
		" op_id TEXT NOT NULL, device_id TEXT NOT NULL);");
	exec_ok(h,
		"INSERT INTO server_users (id, username, email, password_hash,"
		" created_at) VALUES"
		" ('u1', 'alice', 'a@x', 'unused', '2023-01-01T00:00:00Z'),"
		" ('u2', 'bob', 'b@x', 'unused', '2023-01-01T00:00:00Z');"
		/* d1: one link, plaintext key. d2: two links, placeholder.
		 * d3: no link, plaintext key. d5: one link, placeholder. */
		"INSERT INTO server_devices (id, name, api_key, created_at)"
		" VALUES ('d1', 'one', 'key-one', '2023-01-01T00:00:00Z'),"
		" ('d2', 'two', 'disabled:d2', '2023-01-01T00:00:00Z'),"
		" ('d3', 'three', 'key_three', '2023-01-01T00:00:00Z'),"
		" ('d5', 'five', 'disabled:d5', '2023-01-01T00:00:00Z');"
		"INSERT INTO server_user_devices VALUES ('u1', 'd1'),"
		" ('u1', 'd2'), ('u2', 'd2'), ('u2', 'd5');"
		"INSERT INTO server_revisions (op_id, device_id) VALUES"
		" ('o1', 'd1'), ('o2', 'd2'), ('o3', 'd5');"
		"INSERT INTO server_ops (op_id, server_sequence, device_id,"
		" entity_type, entity_id, op_type, payload_json,"
		" idempotency_key, created_at, pushed_at) VALUES"
		" ('o1', 1, 'd1', 'note', 'n1', 'delete', '', '', '',"
		"  '2023-01-02T00:00:00Z'),"
		" ('o2', 2, 'd2', 'note', 'n2', 'delete', '', 'k', '',"
		"  '2023-01-02T00:00:00Z'),"
		" ('o3', 3, 'd5', 'file', 'f1', 'delete', '{}', '', '',"
		"  '2023-01-02T00:00:00Z');"
		"INSERT INTO server_tombstones VALUES"
		" ('note', 'n1', 'o1', '2023-01-02T00:00:00Z'),"
		" ('note', 'n2', 'o2', '2023-01-02T00:00:00Z'),"
		" ('note', 'n3', 'gone', '2023-01-02T00:00:00Z'),"
		" ('file', 'f1', 'o3', '2023-01-02T00:00:00Z');"
		"INSERT INTO server_idempotency_keys VALUES"
		" ('k', '{\"accepted\":[]}', '2023-01-02T00:00:00Z');"
		"INSERT INTO server_email_tokens VALUES"
		" ('abc', 'u1', 'confirm', '2023-01-03T00:00:00Z',"
		"  '2023-01-01T00:00:00Z'),"
		" ('tok2', 'u2', 'reset', '2023-01-01T01:00:00Z',"
		"  '2023-01-01T00:00:00Z');");
	raw_close(h);
}

START_TEST(test_legacy_migration)
{
	struct vs_db db;
	char hash2[65], sql[256], *info, *a, *b;

	make_tmpdir();
	build_legacy(tpath("server.db"));
	open_migrated(&db);
	ck_assert_int_eq(vs_db_user_version(&db), 2);

	/* 2.1 + 2.3: columns appended, nullable TEXT / the flag. */
	info = table_info_of(db.h, "server_devices");
	ck_assert_msg(strstr(info,
		"3:legacy_api_key|3:INTEGER|1:1|3:0|1:0|\n"
		"3:user_id|3:TEXT|1:0|N|1:0|\n"
		"3:vault_id|3:TEXT|1:0|N|1:0|\n") != NULL ||
		strstr(info,
		"3:user_id|3:TEXT|1:0|N|1:0|\n"
		"3:vault_id|3:TEXT|1:0|N|1:0|\n"
		"3:legacy_api_key|3:INTEGER|1:1|3:0|1:0|\n") != NULL,
		"devices columns:\n%s", info);
	free(info);
	info = table_info_of(db.h, "server_ops");
	ck_assert_ptr_nonnull(strstr(info,
		"3:pushed_at|3:TEXT|1:1|3:datetime('now')|1:0|\n"
		"3:user_id|3:TEXT|1:0|N|1:0|\n"
		"3:vault_id|3:TEXT|1:0|N|1:0|\n"));
	free(info);

	/* 2.2: only devices with exactly one link get an owner. */
	assert_str(db.h, "SELECT user_id FROM server_devices WHERE id='d1'", "u1");
	assert_str(db.h, "SELECT user_id FROM server_devices WHERE id='d2'", NULL);
	assert_str(db.h, "SELECT user_id FROM server_devices WHERE id='d3'", NULL);
	assert_str(db.h, "SELECT user_id FROM server_devices WHERE id='d5'", "u2");

	/* 2.3: plaintext keys promoted, placeholders not. */
	assert_str(db.h, "SELECT group_concat(id || '=' || legacy_api_key)"
		   " FROM (SELECT * FROM server_devices ORDER BY id)",
		   "d1=1,d2=0,d3=1,d5=0");

	/* 2.4: hashed tokens, plaintext gone. */
	assert_str(db.h, "SELECT user_id FROM server_email_tokens WHERE"
		   " token_hash = 'ba7816bf8f01cfea414140de5dae2223b00361a396"
		   "177a9cb410ff61f20015ad'", "u1");
	vs_sha256_hex("tok2", 4, hash2);
	snprintf(sql, sizeof(sql), "SELECT purpose || ' ' || expires_at ||"
		 " ' ' || created_at FROM server_email_tokens"
		 " WHERE token_hash = '%s' AND user_id = 'u2'", hash2);
	assert_str(db.h, sql, "reset 2023-01-01T01:00:00Z 2023-01-01T00:00:00Z");
	ck_assert_int_eq(q_int(db.h, "SELECT count(*) FROM server_email_tokens"),
			 2);
	ck_assert_int_eq(q_int(db.h, "SELECT count(*) FROM"
		" pragma_table_info('server_email_tokens') WHERE name='token'"),
		0);

	/* 2.5: op scope from the device; unknown owner stays unscoped. */
	assert_str(db.h, "SELECT group_concat(op_id || '=' ||"
		   " ifnull(user_id, '-') || '/' || ifnull(vault_id, '-'))"
		   " FROM (SELECT * FROM server_ops ORDER BY op_id)",
		   "o1=u1/legacy:u1,o2=-/-,o3=u2/legacy:u2");

	/* 2.6: scoped tombstones; unscoped and orphaned ones dropped. */
	assert_str(db.h, "SELECT group_concat(name || pk, ',') FROM"
		   " (SELECT name, pk FROM pragma_table_info('server_tombstones')"
		   " ORDER BY cid)", "user_id1,vault_id2,entity_type3,"
		   "entity_id4,op_id0,deleted_at0");
	assert_str(db.h, "SELECT group_concat(user_id || '/' || vault_id ||"
		   " '/' || entity_type || '/' || entity_id || '/' || op_id ||"
		   " '/' || deleted_at, ',') FROM (SELECT * FROM"
		   " server_tombstones ORDER BY op_id)",
		   "u1/legacy:u1/note/n1/o1/2023-01-02T00:00:00Z,"
		   "u2/legacy:u2/file/f1/o3/2023-01-02T00:00:00Z");

	/* 2.7: the global replay cache is discarded. */
	ck_assert_int_eq(q_int(db.h,
		"SELECT count(*) FROM server_idempotency_keys"), 0);
	assert_str(db.h, "SELECT group_concat(name || pk, ',') FROM"
		   " (SELECT name, pk FROM"
		   " pragma_table_info('server_idempotency_keys') ORDER BY cid)",
		   "user_id1,vault_id2,idempotency_key3,response_json0,"
		   "created_at0");

	/* 1 + 2.8: every named index, missing tables created, nothing left
	 * aside, the untouched tables keep their data. */
	assert_named_indexes(db.h);
	for (size_t i = 0; i < N(server_tables); i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master"
			 " WHERE type = 'table' AND name = '%s'",
			 server_tables[i]);
		ck_assert_int_eq(q_int(db.h, sql), 1);
	}
	ck_assert_int_eq(q_int(db.h, "SELECT count(*) FROM sqlite_master"
		" WHERE name LIKE '%aside%'"), 0);
	ck_assert_int_eq(q_int(db.h, "SELECT seq FROM sqlite_sequence"
		" WHERE name = 'server_revisions'"), 3);
	assert_str(db.h, "PRAGMA journal_mode", "wal");

	/* Idempotent: a second run changes nothing. */
	a = dump_db(db.h);
	migrate_db(&db);
	b = dump_db(db.h);
	assert_same_text(a, b);
	free(a);
	free(b);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_op_scope_from_device_vault)
{
	struct vs_db db;

	make_tmpdir();
	open_migrated(&db);
	/* Current layout, but ops with empty scope (NOT NULL allows ''). */
	ck_assert_int_eq(vs_db_exec(&db,
		"INSERT INTO server_devices (id, name, api_key, user_id,"
		" vault_id, created_at) VALUES"
		" ('dv', 'n', 'disabled:dv', 'u9', 'v9', ''),"
		" ('dw', 'n', 'disabled:dw', 'u8', '', ''),"
		" ('dx', 'n', 'disabled:dx', '', NULL, '');"
		"INSERT INTO server_ops (op_id, user_id, vault_id, device_id,"
		" entity_type, entity_id, op_type, payload_json, created_at)"
		" VALUES ('a', '', '', 'dv', 't', 'e', 'upsert', '', ''),"
		" ('b', '', '', 'dw', 't', 'e', 'upsert', '', ''),"
		" ('c', 'ux', '', 'dv', 't', 'e', 'upsert', '', ''),"
		" ('d', '', '', 'dx', 't', 'e', 'upsert', '', ''),"
		" ('e', 'uy', 'vy', 'dv', 't', 'e', 'upsert', '', '')"),
		VS_DB_OK);
	migrate_db(&db);
	assert_str(db.h, "SELECT group_concat(op_id || '=' || user_id || '/'"
		   " || vault_id) FROM (SELECT * FROM server_ops ORDER BY op_id)",
		   "a=u9/v9,b=u8/legacy:u8,c=ux/v9,d=/,e=uy/vy");
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_d36_no_repeated_promotion)
{
	struct vs_db db;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_int_eq(vs_db_exec(&db,
		"INSERT INTO server_devices (id, name, api_key, legacy_api_key,"
		" user_id, created_at) VALUES ('dk', 'tool', 'k', 0, 'u1',"
		" '2024-01-01T00:00:00Z')"), VS_DB_OK);
	vs_db_close(&db);
	open_migrated(&db);	/* a restart */
	assert_str(db.h, "SELECT legacy_api_key FROM server_devices"
		   " WHERE id = 'dk'", "0");
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Transactions and the statement cache                               */
/* ------------------------------------------------------------------ */

START_TEST(test_transactions)
{
	struct vs_db db;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_int_eq(db.tx_depth, 0);

	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(db.tx_depth, 1);
	ck_assert(!sqlite3_get_autocommit(db.h));
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_ERROR); /* nested */
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO server_smtp_config"
		" VALUES ('smtp_host', 'a')"), VS_DB_OK);
	vs_db_rollback(&db);
	ck_assert_int_eq(db.tx_depth, 0);
	ck_assert(sqlite3_get_autocommit(db.h));
	ck_assert_int_eq(q_int(db.h,
		"SELECT count(*) FROM server_smtp_config"), 0);

	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO server_smtp_config"
		" VALUES ('smtp_host', 'b')"), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_int_eq(db.tx_depth, 0);
	assert_str(db.h, "SELECT value FROM server_smtp_config", "b");

	ck_assert_int_eq(vs_db_begin_read(&db), VS_DB_OK);
	ck_assert_int_eq(db.tx_depth, 1);
	assert_str(db.h, "SELECT value FROM server_smtp_config", "b");
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);

	/* Misuse and errors are errors, not busy. */
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_ERROR);
	vs_db_rollback(&db);	/* harmless without a transaction */
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO no_such_table"
		" VALUES (1)"), VS_DB_ERROR);
	ck_assert_int_eq(vs_db_status_of(&db, SQLITE_BUSY, "test"), VS_DB_BUSY);
	ck_assert_int_eq(vs_db_status_of(&db, SQLITE_DONE, "test"), VS_DB_OK);
	ck_assert_int_eq(vs_db_status_of(&db, SQLITE_CONSTRAINT, "test"),
			 VS_DB_ERROR);

	/* A failed commit (deferred constraint) leaves no transaction. */
	ck_assert_int_eq(vs_db_exec(&db, "CREATE TEMP TABLE p (id INTEGER"
		" PRIMARY KEY); CREATE TEMP TABLE c (pid INTEGER REFERENCES"
		" p(id) DEFERRABLE INITIALLY DEFERRED)"), VS_DB_OK);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO c VALUES (7)"), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_ERROR);
	ck_assert_int_eq(db.tx_depth, 0);
	ck_assert(sqlite3_get_autocommit(db.h));
	ck_assert_int_eq(q_int(db.h, "SELECT count(*) FROM c"), 0);

	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

static const char SQL_A[] = "SELECT value FROM server_smtp_config"
	" WHERE key = ?1 OR ?1 IS NULL";
static const char SQL_A_TWIN[] = "SELECT value FROM server_smtp_config"
	" WHERE key = ?1 OR ?1 IS NULL";

/* A failed fsync is sticky for every connection of the database: no
 * write is begun, nothing is synced or published, until the reset that
 * the launcher (or migrate) does before workers start. */
START_TEST(test_storage_failure_is_sticky)
{
	struct vs_db db, other;
	char err[256];

	make_tmpdir();
	open_migrated(&db);
	if (db.wlock.shm == NULL) {
		vs_db_close(&db);
		rm_tmpdir();
		return;	/* no shared object: FULL, nothing to share */
	}
	ck_assert_int_eq(vs_db_open(&other, tmpdir, err, sizeof(err)), VS_DB_OK);
	vs_wlock_raise_durable_seq(&db.wlock, 5);
	vs_db_storage_failed(&db);
	ck_assert(vs_wlock_storage_failed(&other.wlock));
	ck_assert_int_eq(vs_db_begin_write(&other), VS_DB_ERROR);
	ck_assert_int_eq(other.tx_depth, 0);
	ck_assert_int_eq(vs_db_sync(&other), VS_DB_ERROR);
	vs_wlock_raise_durable_seq(&other.wlock, 9);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), 5);
	/* reads go on */
	ck_assert_int_eq(vs_db_begin_read(&other), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&other), VS_DB_OK);

	vs_db_reset_shared(&db);
	ck_assert(!vs_wlock_storage_failed(&other.wlock));
	ck_assert_int_eq(vs_wlock_durable_seq(&other.wlock), 0);
	ck_assert_int_eq(vs_db_begin_write(&other), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&other), VS_DB_OK);
	vs_db_close(&other);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* The first open turns SQLite's memory statistics off before the
 * library starts (db.c configure_library): with them on, every one of
 * the many mallocs of a statement (Debian's SQLite has no lookaside)
 * takes a global mutex. Off, SQLite counts nothing. */
START_TEST(test_memory_statistics_off)
{
	struct vs_db db;
	sqlite3_int64 used = -1, high = -1;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO server_smtp_config"
		" VALUES ('a', '1'), ('b', '2')"), VS_DB_OK);
	ck_assert_int_eq(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used,
					  &high, 0), SQLITE_OK);
	ck_assert_int_eq(used, 0);
	ck_assert_int_eq(high, 0);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_stmt_cache)
{
	struct vs_db db;
	sqlite3_stmt *s1, *s2, *s3;
	static char many[80][48];

	make_tmpdir();
	open_migrated(&db);
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO server_smtp_config"
		" VALUES ('a', '1'), ('b', '2')"), VS_DB_OK);

	s1 = vs_db_stmt(&db, SQL_A);
	ck_assert_ptr_nonnull(s1);
	ck_assert_int_eq(sqlite3_bind_text(s1, 1, "b", -1, SQLITE_STATIC),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(s1), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(s1, 0), "2");
	ck_assert(sqlite3_stmt_busy(s1));

	/* Same pointer: same statement, reset, bindings cleared (NULL
	 * parameter matches every row). */
	s2 = vs_db_stmt(&db, SQL_A);
	ck_assert_ptr_eq(s1, s2);
	ck_assert(!sqlite3_stmt_busy(s2));
	ck_assert_int_eq(sqlite3_step(s2), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_step(s2), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_step(s2), SQLITE_DONE);

	/* Keyed by pointer, not text. */
	s3 = vs_db_stmt(&db, SQL_A_TWIN);
	ck_assert_ptr_nonnull(s3);
	ck_assert_ptr_ne(s1, s3);
	ck_assert_uint_eq(db.n_slots >= 2, 1);

	/* Bad SQL: NULL, nothing cached. */
	{
		size_t n = db.n_slots;

		ck_assert_ptr_null(vs_db_stmt(&db, "SELEKT 1"));
		ck_assert_ptr_null(vs_db_stmt(&db, "SELECT 1; SELECT 2"));
		ck_assert_ptr_null(vs_db_stmt(&db, " "));
		ck_assert_uint_eq(db.n_slots, n);
	}

	/* Growth beyond the first allocation keeps earlier entries. */
	for (int i = 0; i < 80; i++) {
		snprintf(many[i], sizeof(many[i]), "SELECT %d", i);
		ck_assert_ptr_nonnull(vs_db_stmt(&db, many[i]));
	}
	ck_assert_ptr_eq(vs_db_stmt(&db, SQL_A), s1);
	for (int i = 0; i < 80; i++) {
		sqlite3_stmt *s = vs_db_stmt(&db, many[i]);

		ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
		ck_assert_int_eq(sqlite3_column_int(s, 0), i);
	}

	/* A statement left mid-iteration does not outlive a transaction
	 * boundary (it would pin an old snapshot). */
	s1 = vs_db_stmt(&db, SQL_A);
	ck_assert_int_eq(sqlite3_step(s1), SQLITE_ROW);
	ck_assert_int_eq(vs_db_begin_read(&db), VS_DB_OK);
	ck_assert(!sqlite3_stmt_busy(s1));
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);

	vs_db_close(&db);	/* finalizes everything (ASan/LSan check) */
	rm_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Busy handling                                                      */
/* ------------------------------------------------------------------ */

static atomic_int holder_state;	/* 0 starting, 1 holding, 2 done */

static void *
hold_write_lock(void *arg)
{
	sqlite3 *h = raw_open((const char *)arg);

	exec_ok(h, "BEGIN IMMEDIATE");
	exec_ok(h, "INSERT INTO server_smtp_config VALUES ('held', '1')");
	atomic_store(&holder_state, 1);
	sleep_ms(100);
	exec_ok(h, "COMMIT");
	atomic_store(&holder_state, 2);
	raw_close(h);
	return NULL;
}

START_TEST(test_busy_waits_then_succeeds)
{
	struct vs_db db;
	pthread_t th;
	double t0, waited;

	make_tmpdir();
	open_migrated(&db);
	atomic_store(&holder_state, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, hold_write_lock,
					(void *)tpath("server.db")), 0);
	while (atomic_load(&holder_state) == 0)
		sleep_ms(1);
	t0 = now_ms();
	db.busy_retries = 0;
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	waited = now_ms() - t0;
	ck_assert_uint_gt(db.busy_retries, 10);	/* short sleeps, many polls */
	ck_assert_msg(waited >= 50.0 && waited < 2000.0, "waited %.1f ms",
		      waited);
	/* The write lock is ours and we see the other commit. */
	assert_str(db.h, "SELECT value FROM server_smtp_config"
		   " WHERE key = 'held'", "1");
	ck_assert_int_eq(vs_db_exec(&db, "INSERT INTO server_smtp_config"
		" VALUES ('mine', '2')"), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

START_TEST(test_busy_budget_exhausted)
{
	struct vs_db db;
	sqlite3 *other;
	double t0, waited;

	make_tmpdir();
	open_migrated(&db);
	vs_db_set_busy_budget_ms(&db, 200);
	ck_assert_uint_eq(db.busy_budget_ms, 200);
	other = raw_open(tpath("server.db"));
	exec_ok(other, "BEGIN IMMEDIATE");

	t0 = now_ms();
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_BUSY);
	waited = now_ms() - t0;
	ck_assert_msg(waited >= 180.0 && waited < 1500.0, "waited %.1f ms",
		      waited);
	ck_assert_int_eq(db.tx_depth, 0);
	ck_assert(sqlite3_get_autocommit(db.h));

	/* Reads are not blocked by a writer in WAL mode. */
	ck_assert_int_eq(vs_db_begin_read(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_user_version(&db), 2);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);

	exec_ok(other, "COMMIT");
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);

	/* Migration under a held lock reports busy, not an error. */
	exec_ok(other, "BEGIN IMMEDIATE");
	{
		char err[256] = "";

		ck_assert_int_eq(vs_db_migrate(&db, err, sizeof(err)),
				 VS_DB_BUSY);
		ck_assert_str_ne(err, "");
	}
	exec_ok(other, "ROLLBACK");
	raw_close(other);
	vs_db_set_busy_budget_ms(&db, 0);
	ck_assert_uint_eq(db.busy_budget_ms, VS_DB_BUSY_BUDGET_MS);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST


/* ---- shared WAL syncs (writelock.h) -------------------------------- */

/* A child process plays the other writer whose fsync is in flight: its
 * sync function tells the parent it began ('S'), sleeps, says it ended
 * ('E') and returns ok; with die set it exits inside the sync instead. */
struct slow_sync {
	int fd;
	bool ok;
	bool die;
};

static bool
slow_sync_fn(void *arg)
{
	struct slow_sync *ss = arg;
	struct timespec t = { 0, 150 * 1000000L };

	ck_assert_int_eq(write(ss->fd, "S", 1), 1);
	if (ss->die)
		_exit(0);
	(void)nanosleep(&t, NULL);
	ck_assert_int_eq(write(ss->fd, "E", 1), 1);
	return ss->ok;
}

/* The parent's own sync: counts its calls, and records whether the
 * child's sync had already ended when it ran. */
struct own_sync {
	int calls;
	int fd;
	bool child_ended;
};

static bool
own_sync_fn(void *arg)
{
	struct own_sync *os = arg;
	char c;

	os->calls++;
	os->child_ended = read(os->fd, &c, 1) == 1 && c == 'E';
	return true;
}

/* Forks the other writer: it syncs gen (0: whatever is committed now)
 * through its own mapping; returns once its sync has begun. */
static pid_t
start_other_sync(uint64_t gen, bool ok, bool die, int *rfd)
{
	int p[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct vs_db child;
		char err[256];
		struct slow_sync ss = { .fd = p[1], .ok = ok, .die = die };

		close(p[0]);
		if (vs_db_open(&child, tmpdir, err, sizeof(err)) != VS_DB_OK)
			_exit(2);
		_exit(vs_wlock_sync(&child.wlock, gen, slow_sync_fn, &ss) ==
		      ok ? 0 : 3);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(c, 'S');
	ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	*rfd = p[0];
	return pid;
}

static void
reap(pid_t pid, int code)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), code);
}

/* A commit whose number a running sync already covers waits for that
 * sync and issues no fsync of its own. */
START_TEST(test_sync_shares_a_covering_fsync)
{
	struct vs_db db;
	struct own_sync os = { 0 };
	uint64_t gen;
	pid_t pid;

	make_tmpdir();
	open_migrated(&db);
	/* workers refuse to start without it (worker.c) */
	ck_assert_ptr_nonnull(db.wlock.shm);
	gen = vs_wlock_note_commit(&db.wlock);
	ck_assert_uint_gt(gen, 0);
	pid = start_other_sync(0, true, false, &os.fd);	/* claims >= gen */
	ck_assert(vs_wlock_sync(&db.wlock, gen, own_sync_fn, &os));
	ck_assert_int_eq(os.calls, 0);
	{
		char c;	/* it returned only once the covering sync ended */

		ck_assert_int_eq(read(os.fd, &c, 1), 1);
		ck_assert_int_eq(c, 'E');
	}
	reap(pid, 0);
	/* Covered now: no wait and no fsync. */
	ck_assert(vs_wlock_sync(&db.wlock, gen, own_sync_fn, &os));
	ck_assert_int_eq(os.calls, 0);
	close(os.fd);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* A sync that began before the commit cannot cover it: the writer syncs
 * at once, without waiting for it. */
START_TEST(test_sync_never_waits_for_an_older_fsync)
{
	struct vs_db db;
	struct own_sync os = { 0 };
	uint64_t gen;
	pid_t pid;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	pid = start_other_sync(0, true, false, &os.fd);
	gen = vs_wlock_note_commit(&db.wlock);	/* after its claim */
	ck_assert(vs_wlock_sync(&db.wlock, gen, own_sync_fn, &os));
	ck_assert_int_eq(os.calls, 1);
	ck_assert(!os.child_ended);
	reap(pid, 0);
	close(os.fd);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* The covering sync fails: the waiter reports the failure (sticky for
 * all) instead of an fsync of its own, which Linux would let succeed. */
START_TEST(test_sync_failure_reaches_the_waiters)
{
	struct vs_db db;
	struct own_sync os = { 0 };
	uint64_t gen;
	pid_t pid;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	gen = vs_wlock_note_commit(&db.wlock);
	pid = start_other_sync(0, false, false, &os.fd);
	ck_assert(!vs_wlock_sync(&db.wlock, gen, own_sync_fn, &os));
	ck_assert_int_eq(os.calls, 0);
	ck_assert(vs_wlock_storage_failed(&db.wlock));
	ck_assert_int_eq(vs_db_sync_seen(&db), VS_DB_ERROR);
	reap(pid, 0);
	close(os.fd);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* The process of the covering sync dies inside it: the waiter gives up
 * on it after a bounded wait and syncs itself. */
START_TEST(test_sync_outlives_a_dead_syncer)
{
	struct vs_db db;
	struct own_sync os = { 0 };
	uint64_t gen;
	pid_t pid;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	gen = vs_wlock_note_commit(&db.wlock);
	pid = start_other_sync(0, true, true, &os.fd);
	reap(pid, 0);
	ck_assert(vs_wlock_sync(&db.wlock, gen, own_sync_fn, &os));
	ck_assert_int_eq(os.calls, 1);
	ck_assert(!vs_wlock_storage_failed(&db.wlock));
	close(os.fd);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* Each write commit takes a new number once it has returned; a read
 * commit takes none. */
START_TEST(test_write_commits_are_numbered)
{
	struct vs_db db;
	uint64_t g0;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	g0 = vs_wlock_commit_gen(&db.wlock);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_uint_eq(vs_wlock_commit_gen(&db.wlock), g0 + 1);
	ck_assert_int_eq(vs_db_begin_read(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_uint_eq(vs_wlock_commit_gen(&db.wlock), g0 + 1);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit_keep_queue(&db), VS_DB_OK);
	ck_assert_uint_eq(vs_wlock_commit_gen(&db.wlock), g0 + 2);
	vs_db_release_queue(&db);
	ck_assert_int_eq(vs_db_sync_seen(&db), VS_DB_OK);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* ---- deferred syncs (the worker's group commit, db.h) ---------------- */

/* Deferred, commits make no fsync and publish nothing; one settle covers
 * them all and only then raises the watermark. */
START_TEST(test_deferred_commits_wait_for_settle)
{
	struct vs_db db;
	uint64_t g1, g2;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	ck_assert(vs_db_settle(&db) == VS_DB_OK);	/* nothing pending */
	db.may_defer = true;
	vs_db_defer_begin(&db);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	g1 = vs_wlock_commit_gen(&db.wlock);
	ck_assert(vs_db_has_pending(&db));
	ck_assert_uint_lt(vs_wlock_synced_gen(&db.wlock), g1);
	vs_db_publish_durable(&db, 7);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), 0);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	g2 = vs_wlock_commit_gen(&db.wlock);
	ck_assert_uint_gt(g2, g1);
	vs_db_publish_durable(&db, 5);	/* a lower top never lowers it */
	vs_db_defer_end(&db);
	db.may_defer = false;
	ck_assert_uint_lt(vs_wlock_synced_gen(&db.wlock), g1);
	ck_assert_int_eq(vs_db_settle(&db), VS_DB_OK);
	ck_assert(!vs_db_has_pending(&db));
	ck_assert_uint_ge(vs_wlock_synced_gen(&db.wlock), g2);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), 7);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* A sync the handler asks for outright (gen 0: a commit it saw but may
 * not have numbered) is deferred too, and settled by an fsync that
 * covers everything committed by then. */
START_TEST(test_deferred_unconditional_sync)
{
	struct vs_db db;
	uint64_t g;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit_keep_queue(&db), VS_DB_OK);
	vs_db_release_queue(&db);
	g = vs_wlock_commit_gen(&db.wlock);
	db.may_defer = true;
	vs_db_defer_begin(&db);
	ck_assert_int_eq(vs_db_sync(&db), VS_DB_OK);
	vs_db_defer_end(&db);
	ck_assert(vs_db_has_pending(&db));
	ck_assert_uint_lt(vs_wlock_synced_gen(&db.wlock), g);
	ck_assert_int_eq(vs_db_settle(&db), VS_DB_OK);
	ck_assert_uint_ge(vs_wlock_synced_gen(&db.wlock), g);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* Without the worker's leave, the handler's bracket changes nothing: the
 * commit is synced and the watermark raised before it returns. */
START_TEST(test_defer_needs_the_workers_leave)
{
	struct vs_db db;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	vs_db_defer_begin(&db);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert(!vs_db_has_pending(&db));
	ck_assert_uint_ge(vs_wlock_synced_gen(&db.wlock),
			  vs_wlock_commit_gen(&db.wlock));
	vs_db_publish_durable(&db, 3);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), 3);
	vs_db_defer_end(&db);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* Storage that failed while answers were held back: the settle reports
 * the failure and leaves nothing pending. (That it publishes nothing is
 * the writer queue's rule once storage failed: test_storage_failure_is_
 * sticky.) */
START_TEST(test_settle_after_a_storage_failure)
{
	struct vs_db db;

	make_tmpdir();
	open_migrated(&db);
	ck_assert_ptr_nonnull(db.wlock.shm);
	db.may_defer = true;
	vs_db_defer_begin(&db);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	vs_db_publish_durable(&db, 4);
	vs_db_defer_end(&db);
	vs_db_storage_failed(&db);	/* another worker's fsync failed */
	ck_assert_int_eq(vs_db_settle(&db), VS_DB_ERROR);
	ck_assert(!vs_db_has_pending(&db));
	/* nothing left over for the next settle */
	ck_assert_int_eq(vs_db_settle(&db), VS_DB_OK);
	vs_db_reset_shared(&db);
	vs_db_close(&db);
	rm_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_fresh_schema_matches_reference);
	tcase_add_test(tc, test_fresh_file_modes);
	tcase_add_test(tc, test_existing_mode_kept);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_migrate_twice_idempotent);
	tcase_add_test(tc, test_fixture_unchanged);
	tcase_add_test(tc, test_legacy_migration);
	tcase_add_test(tc, test_op_scope_from_device_vault);
	tcase_add_test(tc, test_deferred_commits_wait_for_settle);
	tcase_add_test(tc, test_deferred_unconditional_sync);
	tcase_add_test(tc, test_defer_needs_the_workers_leave);
	tcase_add_test(tc, test_settle_after_a_storage_failure);
	tcase_add_test(tc, test_d36_no_repeated_promotion);
	tcase_add_test(tc, test_transactions);
	tcase_add_test(tc, test_stmt_cache);
	tcase_add_test(tc, test_memory_statistics_off);
	tcase_add_test(tc, test_storage_failure_is_sticky);
	tcase_add_test(tc, test_sync_shares_a_covering_fsync);
	tcase_add_test(tc, test_sync_never_waits_for_an_older_fsync);
	tcase_add_test(tc, test_sync_failure_reaches_the_waiters);
	tcase_add_test(tc, test_sync_outlives_a_dead_syncer);
	tcase_add_test(tc, test_write_commits_are_numbered);
	tcase_add_test(tc, test_busy_waits_then_succeeds);
	tcase_add_test(tc, test_busy_budget_exhausted);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(db_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
