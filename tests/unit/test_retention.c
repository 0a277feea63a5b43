/*
 * test_retention.c - unit tests for src/retention.c: what the cleanup
 * deletes and what it must never touch (DATA.md 8), batches, temp
 * uploads, the blob collector of scheduled runs, and the lease that lets
 * one process at a time run the schedule (D14).
 *
 * Must never: leave files behind (each test has its own mkdtemp data
 * directory, removed at teardown).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "db.h"
#include "retention.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* 2026-12-01T12:00:00Z */
#define NOW ((time_t)1796126400)

static char tmpdir[64], blobs[96];
static struct vs_db db;
static const struct vs_retention cfg = { 24, 90, 24 };

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
setup(void)
{
	char err[256];

	strcpy(tmpdir, "/tmp/vs_test_retention_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_msg(vs_db_open(&db, tmpdir, err, sizeof(err)) == VS_DB_OK,
		      "open: %s", err);
	ck_assert_msg(vs_db_migrate(&db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
	snprintf(blobs, sizeof(blobs), "%s/blobs", tmpdir);
	ck_assert_int_eq(mkdir(blobs, 0750), 0);
}

static void
teardown(void)
{
	vs_db_close(&db);
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void
exec_ok(const char *sql)
{
	char *err = NULL;

	ck_assert_msg(sqlite3_exec(db.h, sql, NULL, NULL, &err) == SQLITE_OK,
		      "%s: %s", sql, err ? err : "?");
}

static long long
count(const char *sql)
{
	sqlite3_stmt *st;
	long long v;

	ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* A timestamp `secs` from NOW, in the section-5 format. */
static const char *
at(long long secs)
{
	static char buf[8][VS_TS_LEN];
	static int n;
	char *b = buf[n++ % 8];

	vs_timestamp(NOW + (time_t)secs, b);
	return b;
}

static void
insertf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
insertf(const char *fmt, ...)
{
	char sql[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	exec_ok(sql);
}

static void
touch(const char *name, long long age_s)
{
	char path[160];
	struct timeval tv[2];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", blobs, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("partial", f);
	ck_assert_int_eq(fclose(f), 0);
	tv[0].tv_sec = tv[1].tv_sec = NOW - (time_t)age_s;
	tv[0].tv_usec = tv[1].tv_usec = 0;
	ck_assert_int_eq(utimes(path, tv), 0);
}

static bool
exists(const char *name)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s", blobs, name);
	return access(path, F_OK) == 0;
}

/* Expired and live rows of every kind, and rows that never expire. */
static void
seed(void)
{
	insertf("INSERT INTO server_sessions VALUES ('s-old','c','user','u1','%s','%s','%s')",
		at(-1), at(-86401), at(-100));
	insertf("INSERT INTO server_sessions VALUES ('s-now','c','admin','a','%s','%s','%s')",
		at(0), at(-86400), at(-100));
	insertf("INSERT INTO server_sessions VALUES ('s-live','c','user','u1','%s','%s','%s')",
		at(60), at(-86340), at(-10));
	insertf("INSERT INTO server_email_tokens VALUES ('t-old','u1','confirm','%s','%s')",
		at(-5), at(-172805));
	insertf("INSERT INTO server_email_tokens VALUES ('t-live','u1','reset','%s','%s')",
		at(3000), at(-600));
	insertf("INSERT INTO server_idempotency_keys VALUES ('u1','v','k-old','{}','%s')",
		at(-24 * 3600 - 1));
	insertf("INSERT INTO server_idempotency_keys VALUES ('u1','v','k-edge','{}','%s')",
		at(-24 * 3600));
	insertf("INSERT INTO server_idempotency_keys VALUES ('u1','v','k-new','{}','%s')",
		at(-60));
	insertf("INSERT INTO server_audit_log (event_type, user_id, device_id, ip,"
		" message, created_at) VALUES ('login_failed','','','','x','%s')",
		at(-90LL * 86400 - 1));
	insertf("INSERT INTO server_audit_log (event_type, user_id, device_id, ip,"
		" message, created_at) VALUES ('login_failed','','','','x','%s')",
		at(-89LL * 86400));
	/* never pruned, however old */
	insertf("INSERT INTO server_ops (op_id, server_sequence, user_id, vault_id,"
		" device_id, entity_type, entity_id, op_type, payload_json,"
		" created_at, pushed_at) VALUES ('op1', 1, 'u1', 'v', 'd', 'file',"
		" 'a', 'create', '{}', '2000-01-01T00:00:00Z', '2000-01-01T00:00:00Z')");
	insertf("INSERT INTO server_tombstones VALUES ('u1','v','file','a','op1',"
		" '2000-01-01T00:00:00Z')");
	insertf("INSERT INTO server_blobs VALUES ('%064d', 7, '2000-01-01T00:00:00Z')", 1);
	insertf("INSERT INTO server_blob_refs (user_id, vault_id, sha256, size,"
		" created_at, last_accessed) VALUES ('u1','v','%064d',7,"
		" '2000-01-01T00:00:00Z','2000-01-01T00:00:00Z')", 1);
}

START_TEST(test_deletes_exactly_what_expired)
{
	struct vs_retention_report r;

	seed();
	touch(".upload-old", 24 * 3600 + 60);
	touch(".upload-new", 60);
	touch("notes.txt", 10 * 86400);	/* not ours: never touched */
	ck_assert_int_eq(vs_retention_run(&db, blobs, &cfg, NOW, false, &r),
			 VS_DB_OK);
	ck_assert_int_eq(r.sessions, 2);	/* expires_at <= now */
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions"
			       " WHERE token_hash = 's-live'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions"), 1);
	ck_assert_int_eq(r.email_tokens, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_email_tokens"
			       " WHERE token_hash = 't-live'"), 1);
	ck_assert_int_eq(r.idempotency, 1);	/* strictly older than 24 h */
	ck_assert_int_eq(count("SELECT count(*) FROM server_idempotency_keys"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM server_idempotency_keys"
			       " WHERE idempotency_key = 'k-old'"), 0);
	ck_assert_int_eq(r.audit, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_audit_log"), 1);
	ck_assert_int_eq(r.gc.temps, 1);
	ck_assert(!exists(".upload-old"));
	ck_assert(exists(".upload-new"));
	ck_assert(exists("notes.txt"));
	/* never pruned; without the collector even an orphan-free blob row
	 * stays (it is referenced anyway) */
	ck_assert_int_eq(count("SELECT count(*) FROM server_ops"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_tombstones"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_blobs"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_blob_refs"), 1);
	ck_assert_int_eq(db.tx_depth, 0);

	/* a second run finds nothing */
	ck_assert_int_eq(vs_retention_run(&db, blobs, &cfg, NOW, false, &r),
			 VS_DB_OK);
	ck_assert_int_eq(r.sessions + r.email_tokens + r.idempotency + r.audit +
			 r.gc.temps, 0);
}
END_TEST

/* Retentions longer than the epoch is old keep everything (a cut-off
 * before 1970 has no four-digit year and would compare wrongly). */
START_TEST(test_huge_retention_keeps_everything)
{
	static const struct vs_retention forever = {
		10000000, 500000, 100000000 };
	struct vs_retention_report r;

	seed();
	touch(".upload-old", 30LL * 86400);
	ck_assert_int_eq(vs_retention_run(&db, blobs, &forever, NOW, true, &r),
			 VS_DB_OK);
	ck_assert_int_eq(r.idempotency, 0);
	ck_assert_int_eq(r.audit, 0);
	ck_assert_int_eq(r.gc.temps, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM server_idempotency_keys"), 3);
	ck_assert_int_eq(count("SELECT count(*) FROM server_audit_log"), 2);
	ck_assert(exists(".upload-old"));
	ck_assert_int_eq(r.sessions, 2);	/* expiry is not a retention */
}
END_TEST

/* More rows than one batch: all go, each batch its own transaction. */
START_TEST(test_batches)
{
	struct vs_retention_report r;

	exec_ok("BEGIN");
	for (int i = 0; i < 1234; i++)
		insertf("INSERT INTO server_audit_log (event_type, user_id,"
			" device_id, ip, message, created_at) VALUES"
			" ('x','','','','m','%s')", at(-100LL * 86400 - i));
	exec_ok("COMMIT");
	insertf("INSERT INTO server_audit_log (event_type, user_id, device_id,"
		" ip, message, created_at) VALUES ('y','','','','m','%s')", at(-5));
	ck_assert_int_eq(vs_retention_run(&db, blobs, &cfg, NOW, false, &r),
			 VS_DB_OK);
	ck_assert_int_eq(r.audit, 1234);
	ck_assert_int_eq(count("SELECT count(*) FROM server_audit_log"), 1);
}
END_TEST

/* A scheduled run also collects blobs nobody references. */
START_TEST(test_with_gc_collects_unreferenced_blobs)
{
	struct vs_retention_report r;
	char dir[160], path[240];
	char sha[65];
	FILE *f;

	memset(sha, 'a', 64);
	sha[64] = '\0';
	snprintf(dir, sizeof(dir), "%s/aa", blobs);
	ck_assert_int_eq(mkdir(dir, 0750), 0);
	snprintf(dir, sizeof(dir), "%s/aa/aa", blobs);
	ck_assert_int_eq(mkdir(dir, 0750), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, sha);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("1234567", f);
	ck_assert_int_eq(fclose(f), 0);
	insertf("INSERT INTO server_blobs VALUES ('%s', 7, '%s')", sha,
		at(-3 * 86400));
	seed();	/* its referenced blob stays */
	ck_assert_int_eq(vs_retention_run(&db, blobs, &cfg, NOW, true, &r),
			 VS_DB_OK);
	ck_assert_int_eq(r.gc.blobs, 1);
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_blobs"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_blob_refs"), 1);
	ck_assert_int_eq(r.sessions, 2);
}
END_TEST

/* The lease: one run per interval, whoever asks. */
START_TEST(test_claim)
{
	bool due = false;

	ck_assert_int_eq(vs_retention_claim(&db, NOW, 3600, &due), VS_DB_OK);
	ck_assert(due);
	ck_assert_int_eq(count("SELECT expires_at FROM vs_leases"
			       " WHERE name = 'retention'"), (long long)NOW + 3600);
	ck_assert_int_eq(vs_retention_claim(&db, NOW + 10, 3600, &due), VS_DB_OK);
	ck_assert(!due);
	ck_assert_int_eq(vs_retention_claim(&db, NOW + 3599, 3600, &due), VS_DB_OK);
	ck_assert(!due);
	ck_assert_int_eq(vs_retention_claim(&db, NOW + 3600, 3600, &due), VS_DB_OK);
	ck_assert(due);
	ck_assert_int_eq(count("SELECT expires_at FROM vs_leases"
			       " WHERE name = 'retention'"), (long long)NOW + 7200);
	ck_assert_int_eq(count("SELECT count(*) FROM vs_leases"), 1);
	ck_assert_int_eq(db.tx_depth, 0);
}
END_TEST

/* Two connections, as two workers: only one of them gets the run. */
START_TEST(test_claim_two_processes)
{
	struct vs_db other;
	bool a = false, b = false;
	char err[256];

	ck_assert_int_eq(vs_db_open(&other, tmpdir, err, sizeof(err)), VS_DB_OK);
	ck_assert_int_eq(vs_retention_claim(&other, NOW, 60, &a), VS_DB_OK);
	ck_assert_int_eq(vs_retention_claim(&db, NOW, 60, &b), VS_DB_OK);
	ck_assert(a != b);
	ck_assert(a);
	vs_db_close(&other);
}
END_TEST

static Suite *
retention_suite(void)
{
	Suite *s = suite_create("retention");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_deletes_exactly_what_expired);
	tcase_add_test(tc, test_huge_retention_keeps_everything);
	tcase_add_test(tc, test_batches);
	tcase_add_test(tc, test_with_gc_collects_unreferenced_blobs);
	tcase_add_test(tc, test_claim);
	tcase_add_test(tc, test_claim_two_processes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(retention_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
