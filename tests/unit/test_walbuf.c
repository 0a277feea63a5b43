/*
 * test_walbuf.c - unit tests for src/walbuf.c, the VFS that gathers a
 * WAL commit's writes into one.
 *
 * The VFS under test is stacked on a counting, fault-injecting VFS of
 * this file ("vs-test-fault", itself over SQLite's default), so the
 * tests see exactly which writes reach the file and can make them fail.
 * A second connection, and SQLite's own VFS, read what was written: the
 * point is that nothing changes for readers, crash recovery or the file
 * format, only the number of system calls.
 *
 * Must never: leave files behind (every test works in its own mkdtemp
 * directory and removes it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp */
#endif
#include "walbuf.h"

#include <check.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULT_VFS "vs-test-fault"
#define WALBUF_OVER_FAULT VS_WALBUF_VFS "-" FAULT_VFS

/* ------------------------------------------------------------------ */
/* A counting, failing VFS under the one under test                   */
/* ------------------------------------------------------------------ */

static sqlite3_vfs *base_vfs;
static sqlite3_vfs fault_vfs;
static unsigned long wal_writes;	/* xWrite calls on WAL files */
static bool fail_wal_writes;		/* they answer SQLITE_IOERR_WRITE */
static unsigned long wal_reads;		/* xRead calls on WAL files */
static bool fail_wal_syncs;		/* they answer SQLITE_IOERR_FSYNC */

struct ff_file {
	sqlite3_file base;
	sqlite3_file *real;
	bool wal;
};

#define FF_REAL(f) ((sqlite3_file *)((char *)(f) + sizeof(struct ff_file) + 16))
#define R(f) (((struct ff_file *)(f))->real)

static int
ff_close(sqlite3_file *f)
{
	return R(f)->pMethods->xClose(R(f));
}

static int
ff_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	if (((struct ff_file *)f)->wal)
		wal_reads++;
	return R(f)->pMethods->xRead(R(f), p, n, off);
}

static int
ff_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	if (((struct ff_file *)f)->wal) {
		wal_writes++;
		if (fail_wal_writes)
			return SQLITE_IOERR_WRITE;
	}
	return R(f)->pMethods->xWrite(R(f), p, n, off);
}

static int
ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return R(f)->pMethods->xTruncate(R(f), size);
}

static int
ff_sync(sqlite3_file *f, int flags)
{
	if (((struct ff_file *)f)->wal && fail_wal_syncs)
		return SQLITE_IOERR_FSYNC;
	return R(f)->pMethods->xSync(R(f), flags);
}

static int
ff_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return R(f)->pMethods->xFileSize(R(f), size);
}

static int
ff_lock(sqlite3_file *f, int l)
{
	return R(f)->pMethods->xLock(R(f), l);
}

static int
ff_unlock(sqlite3_file *f, int l)
{
	return R(f)->pMethods->xUnlock(R(f), l);
}

static int
ff_reserved(sqlite3_file *f, int *out)
{
	return R(f)->pMethods->xCheckReservedLock(R(f), out);
}

static int
ff_fcntl(sqlite3_file *f, int op, void *arg)
{
	return R(f)->pMethods->xFileControl(R(f), op, arg);
}

static int
ff_sector(sqlite3_file *f)
{
	return R(f)->pMethods->xSectorSize(R(f));
}

static int
ff_devchar(sqlite3_file *f)
{
	return R(f)->pMethods->xDeviceCharacteristics(R(f));
}

static int
ff_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
	return R(f)->pMethods->xShmMap(R(f), pg, sz, extend, pp);
}

static int
ff_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return R(f)->pMethods->xShmLock(R(f), off, n, flags);
}

static void
ff_shm_barrier(sqlite3_file *f)
{
	R(f)->pMethods->xShmBarrier(R(f));
}

static int
ff_shm_unmap(sqlite3_file *f, int del)
{
	return R(f)->pMethods->xShmUnmap(R(f), del);
}

/* Version 2: the shared-memory calls, no memory-mapped pages. */
static const sqlite3_io_methods ff_methods = {
	2, ff_close, ff_read, ff_write, ff_truncate, ff_sync, ff_size,
	ff_lock, ff_unlock, ff_reserved, ff_fcntl, ff_sector, ff_devchar,
	ff_shm_map, ff_shm_lock, ff_shm_barrier, ff_shm_unmap, NULL, NULL,
};

static int
ff_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags,
	int *out)
{
	struct ff_file *f = (struct ff_file *)file;
	int rc;

	memset(f, 0, sizeof(*f));
	f->real = FF_REAL(f);
	f->wal = (flags & SQLITE_OPEN_WAL) != 0;
	rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out);
	if (rc != SQLITE_OK) {
		if (f->real->pMethods != NULL)
			(void)f->real->pMethods->xClose(f->real);
		file->pMethods = NULL;
		return rc;
	}
	file->pMethods = &ff_methods;
	return SQLITE_OK;
}

static int
ff_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	return base_vfs->xDelete(base_vfs, name, sync_dir);
}

static int
ff_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return base_vfs->xAccess(base_vfs, name, flags, out);
}

static int
ff_fullpath(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return base_vfs->xFullPathname(base_vfs, name, n, out);
}

static int
ff_random(sqlite3_vfs *v, int n, char *out)
{
	return base_vfs->xRandomness(base_vfs, n, out);
}

static int
ff_sleep(sqlite3_vfs *v, int us)
{
	return base_vfs->xSleep(base_vfs, us);
}

static int
ff_time(sqlite3_vfs *v, double *out)
{
	return base_vfs->xCurrentTime(base_vfs, out);
}

static int
ff_lasterr(sqlite3_vfs *v, int n, char *out)
{
	return base_vfs->xGetLastError(base_vfs, n, out);
}

static void
register_fault_vfs(void)
{
	if (base_vfs != NULL)
		return;
	base_vfs = sqlite3_vfs_find(NULL);
	ck_assert_ptr_nonnull(base_vfs);
	memset(&fault_vfs, 0, sizeof(fault_vfs));
	fault_vfs.iVersion = 1;
	fault_vfs.szOsFile = (int)sizeof(struct ff_file) + 16 + base_vfs->szOsFile;
	fault_vfs.mxPathname = base_vfs->mxPathname;
	fault_vfs.zName = FAULT_VFS;
	fault_vfs.xOpen = ff_open;
	fault_vfs.xDelete = ff_delete;
	fault_vfs.xAccess = ff_access;
	fault_vfs.xFullPathname = ff_fullpath;
	fault_vfs.xRandomness = ff_random;
	fault_vfs.xSleep = ff_sleep;
	fault_vfs.xCurrentTime = ff_time;
	fault_vfs.xGetLastError = ff_lasterr;
	ck_assert_int_eq(sqlite3_vfs_register(&fault_vfs, 0), SQLITE_OK);
	ck_assert_int_eq(vs_walbuf_register(FAULT_VFS), SQLITE_OK);
}

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static char dir[64], dbpath[128];

static void
setup(void)
{
	register_fault_vfs();
	strcpy(dir, "/tmp/vs_test_walbuf_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dbpath, sizeof(dbpath), "%s/t.db", dir);
	wal_writes = 0;
	fail_wal_writes = false;
}

static void
teardown(void)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	char p[160];

	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", dbpath, sfx[i]);
		(void)unlink(p);
		snprintf(p, sizeof(p), "%s/copy.db%s", dir, sfx[i]);
		(void)unlink(p);
	}
	(void)rmdir(dir);
}

static void
copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char chunk[8192];
	size_t n;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
		ck_assert_uint_eq(fwrite(chunk, 1, n, out), n);
	ck_assert_int_eq(fclose(in), 0);
	ck_assert_int_eq(fclose(out), 0);
}

static sqlite3 *
open_db(const char *vfs)
{
	sqlite3 *h = NULL;
	int rc = sqlite3_open_v2(dbpath, &h, SQLITE_OPEN_READWRITE |
				 SQLITE_OPEN_CREATE, vfs);

	ck_assert_msg(rc == SQLITE_OK, "open: %s", sqlite3_errstr(rc));
	sqlite3_busy_timeout(h, 5000);
	return h;
}

static void
exec_ok(sqlite3 *h, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(h, sql, NULL, NULL, &err);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
	sqlite3_free(err);
}

static sqlite3_int64
one_int(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 v;

	ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
integrity_ok(sqlite3 *h)
{
	sqlite3_stmt *st = NULL;

	ck_assert_int_eq(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1,
					    &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

/* A table with four indexes, so one row touches five pages. */
static void
make_schema(sqlite3 *h)
{
	exec_ok(h, "PRAGMA journal_mode=WAL");
	exec_ok(h, "PRAGMA synchronous=NORMAL");
	exec_ok(h, "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT,"
		   " c INTEGER, d BLOB)");
	exec_ok(h, "CREATE INDEX t_a ON t(a)");
	exec_ok(h, "CREATE INDEX t_b ON t(b)");
	exec_ok(h, "CREATE INDEX t_c ON t(c)");
	exec_ok(h, "CREATE INDEX t_ac ON t(a, c)");
}

static void
insert_row(sqlite3 *h, int i, int blob_bytes)
{
	sqlite3_stmt *st = NULL;
	char a[32], b[32];

	snprintf(a, sizeof(a), "a-%08d", (i * 7919) % 100003);
	snprintf(b, sizeof(b), "b-%08d", (i * 104729) % 100019);
	ck_assert_int_eq(sqlite3_prepare_v2(h, "INSERT INTO t (a, b, c, d)"
					    " VALUES (?1, ?2, ?3, zeroblob(?4))",
					    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 3, i);
	sqlite3_bind_int(st, 4, blob_bytes);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/* ------------------------------------------------------------------ */
/* Tests                                                              */
/* ------------------------------------------------------------------ */

/* One commit touching several pages: one write below instead of two
 * per page. The same commit without the VFS shows the difference. */
START_TEST(test_commit_is_one_write)
{
	sqlite3 *h = open_db(WALBUF_OVER_FAULT), *plain;
	unsigned long before, ours, theirs;

	make_schema(h);
	for (int i = 0; i < 200; i++)
		insert_row(h, i, 0);
	before = wal_writes;
	insert_row(h, 1000, 0);
	ours = wal_writes - before;
	ck_assert_uint_eq(ours, 1);
	sqlite3_close(h);

	plain = open_db(FAULT_VFS);
	before = wal_writes;
	insert_row(plain, 1001, 0);
	theirs = wal_writes - before;
	/* header + page for each of at least five pages */
	ck_assert_uint_ge(theirs, 10);
	ck_assert_int_eq(one_int(plain, "SELECT count(*) FROM t"), 202);
	integrity_ok(plain);
	sqlite3_close(plain);
}
END_TEST

/* Every commit is visible to another connection at once, whatever its
 * size (some exceed the buffer), and to SQLite's own VFS afterwards. */
START_TEST(test_other_connections_see_every_commit)
{
	sqlite3 *w = open_db(WALBUF_OVER_FAULT), *r, *plain;
	sqlite3_int64 expect_sum = 0;

	make_schema(w);
	r = open_db(WALBUF_OVER_FAULT);
	for (int i = 1; i <= 300; i++) {
		int rows = 1 + i % 7;
		int blob = (i % 50 == 0) ? 700 * 1024 : (i % 3) * 3000;

		exec_ok(w, "BEGIN IMMEDIATE");
		for (int k = 0; k < rows; k++) {
			insert_row(w, i * 10 + k, blob);
			expect_sum += i * 10 + k;
		}
		exec_ok(w, "COMMIT");
		ck_assert_int_eq(one_int(r, "SELECT coalesce(sum(c), 0) FROM t"),
				 expect_sum);
		if (i % 100 == 0)
			exec_ok(w, "PRAGMA wal_checkpoint(TRUNCATE)");
	}
	integrity_ok(r);
	sqlite3_close(r);
	sqlite3_close(w);

	plain = open_db(NULL);
	ck_assert_int_eq(one_int(plain, "SELECT sum(c) FROM t"), expect_sum);
	integrity_ok(plain);
	sqlite3_close(plain);
}
END_TEST

/* A commit whose write fails reports the error and leaves the database
 * as it was for everyone; the connection goes on afterwards. */
START_TEST(test_failed_write_fails_the_commit)
{
	sqlite3 *w = open_db(WALBUF_OVER_FAULT), *r;
	int rc;

	make_schema(w);
	r = open_db(WALBUF_OVER_FAULT);
	for (int i = 0; i < 20; i++)
		insert_row(w, i, 100);
	exec_ok(w, "BEGIN IMMEDIATE");
	insert_row(w, 100, 100);
	insert_row(w, 101, 100);
	fail_wal_writes = true;
	rc = sqlite3_exec(w, "COMMIT", NULL, NULL, NULL);
	fail_wal_writes = false;
	ck_assert_int_eq(rc & 0xff, SQLITE_IOERR);
	if (!sqlite3_get_autocommit(w))
		exec_ok(w, "ROLLBACK");
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t"), 20);
	ck_assert_int_eq(one_int(w, "SELECT count(*) FROM t"), 20);

	insert_row(w, 102, 100);
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t"), 21);
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t WHERE c >= 100"), 1);
	integrity_ok(r);
	integrity_ok(w);
	sqlite3_close(r);
	sqlite3_close(w);
}
END_TEST

/* A transaction larger than the page cache spills frames to the WAL
 * before its commit and reads them back; rolled back, nobody sees them,
 * committed, everybody does. */
START_TEST(test_spilled_transaction)
{
	sqlite3 *w = open_db(WALBUF_OVER_FAULT), *r;

	make_schema(w);
	exec_ok(w, "PRAGMA cache_size=20");
	r = open_db(WALBUF_OVER_FAULT);
	exec_ok(w, "BEGIN IMMEDIATE");
	for (int i = 0; i < 3000; i++)
		insert_row(w, i, 200);
	ck_assert_int_eq(one_int(w, "SELECT count(*) FROM t"), 3000);
	exec_ok(w, "ROLLBACK");
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t"), 0);

	exec_ok(w, "BEGIN IMMEDIATE");
	for (int i = 0; i < 3000; i++)
		insert_row(w, i, 200);
	exec_ok(w, "COMMIT");
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t"), 3000);
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t INDEXED BY t_ac"
				    " WHERE a > ''"), 3000);
	integrity_ok(r);
	sqlite3_close(r);
	sqlite3_close(w);
}
END_TEST

/* A rolled-back transaction that spilled leaves its last frames in the
 * buffer; they go out while it still holds the write lock (on top of
 * nothing anyone uses), never later over frames another connection
 * committed meanwhile. */
START_TEST(test_rollback_leftovers_stay_under_the_lock)
{
	sqlite3 *a = open_db(WALBUF_OVER_FAULT), *b, *plain;

	make_schema(a);
	exec_ok(a, "CREATE TABLE u (id INTEGER PRIMARY KEY, y TEXT)");
	exec_ok(a, "PRAGMA wal_checkpoint(TRUNCATE)");
	exec_ok(a, "PRAGMA cache_size=10");
	b = open_db(WALBUF_OVER_FAULT);
	exec_ok(a, "BEGIN IMMEDIATE");
	for (int i = 0; i < 30; i++)
		insert_row(a, i, 1000);
	exec_ok(a, "ROLLBACK");
	exec_ok(b, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1"
		   " FROM c WHERE i < 40) INSERT INTO u (y)"
		   " SELECT 'B-' || hex(randomblob(1500)) FROM c");
	ck_assert_int_eq(one_int(a, "SELECT count(*) FROM u"), 40);
	ck_assert_int_eq(one_int(a, "SELECT count(*) FROM t"), 0);
	integrity_ok(a);
	integrity_ok(b);
	sqlite3_close(b);
	sqlite3_close(a);
	plain = open_db(NULL);
	ck_assert_int_eq(one_int(plain, "SELECT count(*) FROM u"
				     " WHERE y LIKE 'B-%'"), 40);
	integrity_ok(plain);
	sqlite3_close(plain);
}
END_TEST

/* A commit that changes pages it already spilled rewrites earlier frame
 * headers (new checksums), the commit frame's last. That rewrite is in
 * the file before the commit is published: a crash right after the
 * commit (copying the files without closing anything) recovers every
 * commit, also a later one by another connection. */
START_TEST(test_rewritten_checksums_reach_the_file)
{
	sqlite3 *a = open_db(WALBUF_OVER_FAULT), *b, *c;
	char from[160], to[160];

	exec_ok(a, "PRAGMA journal_mode=WAL");
	exec_ok(a, "PRAGMA synchronous=NORMAL");
	exec_ok(a, "CREATE TABLE s (id INTEGER PRIMARY KEY, x BLOB, n INT)");
	exec_ok(a, "INSERT INTO s (x, n) VALUES (randomblob(100), 0)");
	exec_ok(a, "PRAGMA cache_size=10");
	exec_ok(a, "BEGIN");
	exec_ok(a, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1"
		   " FROM c WHERE i < 60) INSERT INTO s (x, n)"
		   " SELECT randomblob(1000), 0 FROM c");
	exec_ok(a, "UPDATE s SET n = 1");
	exec_ok(a, "COMMIT");
	b = open_db(NULL);
	exec_ok(b, "PRAGMA synchronous=FULL");
	exec_ok(b, "INSERT INTO s (x, n) VALUES (x'00', 100)");
	sqlite3_close(b);
	/* the "crash": the files as they are, without the wal-index */
	copy_file(dbpath, (snprintf(to, sizeof(to), "%s/copy.db", dir), to));
	snprintf(from, sizeof(from), "%s-wal", dbpath);
	snprintf(to, sizeof(to), "%s/copy.db-wal", dir);
	copy_file(from, to);
	snprintf(to, sizeof(to), "%s/copy.db", dir);
	ck_assert_int_eq(sqlite3_open_v2(to, &c, SQLITE_OPEN_READWRITE, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(one_int(c, "SELECT count(*) FROM s"), 62);
	ck_assert_int_eq(one_int(c, "SELECT sum(n) FROM s"), 161);
	integrity_ok(c);
	sqlite3_close(c);
	sqlite3_close(a);
}
END_TEST

/* synchronous=FULL without power-safe overwrite pads a commit up to a
 * sector boundary with copies of its last frame, split around a sync;
 * every padding frame is in the file before a reader may use it. */
START_TEST(test_full_sync_padding)
{
	char uri[200];
	sqlite3 *a = NULL, *r = NULL;
	int fl = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI;

	snprintf(uri, sizeof(uri), "file:%s?psow=0", dbpath);
	ck_assert_int_eq(sqlite3_open_v2(uri, &a, fl, WALBUF_OVER_FAULT), SQLITE_OK);
	exec_ok(a, "PRAGMA journal_mode=WAL");
	exec_ok(a, "PRAGMA synchronous=FULL");
	exec_ok(a, "CREATE TABLE p (id INTEGER PRIMARY KEY, x TEXT)");
	ck_assert_int_eq(sqlite3_open_v2(uri, &r, fl, WALBUF_OVER_FAULT), SQLITE_OK);
	for (int i = 1; i <= 30; i++) {
		exec_ok(a, "INSERT INTO p (x) VALUES (printf('%.*c', 300, 'x'))");
		ck_assert_int_eq(one_int(r, "SELECT count(*) FROM p"), i);
		ck_assert_int_eq(one_int(r, "SELECT sum(length(x)) FROM p"), 300 * i);
	}
	integrity_ok(r);
	sqlite3_close(r);
	sqlite3_close(a);
}
END_TEST

/* Registering again over the same VFS is fine; an unknown one is not. */
/* Another connection's commits are read back from the mapping of the
 * WAL, not with a read below, and each new commit is seen at once. */
START_TEST(test_frames_are_read_through_the_mapping)
{
	sqlite3 *w = open_db(WALBUF_OVER_FAULT), *r;
	sqlite3_int64 sum = 0;
	unsigned long before;

	make_schema(w);
	r = open_db(WALBUF_OVER_FAULT);
	ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t"), 0);
	before = wal_reads;
	for (int i = 1; i <= 50; i++) {
		insert_row(w, i, 2000);
		sum += i;
		/* w's commit emptied r's page cache: r reads its pages
		 * back from frames of the WAL */
		ck_assert_int_eq(one_int(r, "SELECT sum(c) FROM t"), sum);
		ck_assert_int_eq(one_int(r, "SELECT count(*) FROM t"
					    " WHERE a >= 'a-'"), i);
	}
	ck_assert_uint_eq(wal_reads - before, 0);
	integrity_ok(r);
	sqlite3_close(r);
	sqlite3_close(w);
}
END_TEST

/* A WAL cut short by someone else: once SQLite has measured the file,
 * a read beyond its end goes below and is a short read (zero-filled),
 * never a touch of the mapping past the end, which would be SIGBUS. */
START_TEST(test_read_past_a_cut_wal_is_short)
{
	sqlite3_vfs *v = sqlite3_vfs_find(WALBUF_OVER_FAULT);
	char path[600], walpath[620];
	const char *fname;
	FILE *fp;
	sqlite3_file *f;
	unsigned char page[4096], got[4096];
	sqlite3_int64 size = 0;
	int out = 0;

	ck_assert_ptr_nonnull(v);
	snprintf(path, sizeof(path), "%s/cut.db", dir);
	snprintf(walpath, sizeof(walpath), "%s-wal", path);
	/* the unix VFS gives a WAL its database's mode: it must exist */
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fclose(fp), 0);
	fname = sqlite3_create_filename(path, "", walpath, 0, NULL);
	ck_assert_ptr_nonnull(fname);
	f = calloc(1, (size_t)v->szOsFile);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(v->xOpen(v, sqlite3_filename_wal(fname), f,
				  SQLITE_OPEN_WAL | SQLITE_OPEN_CREATE |
				  SQLITE_OPEN_READWRITE, &out), SQLITE_OK);
	for (int i = 0; i < 3; i++) {
		memset(page, 'a' + i, sizeof(page));
		ck_assert_int_eq(f->pMethods->xWrite(f, page, sizeof(page),
						     (sqlite3_int64)i * 4096),
				 SQLITE_OK);
	}
	ck_assert_int_eq(f->pMethods->xRead(f, got, sizeof(got), 8192),
			 SQLITE_OK);
	ck_assert_int_eq(got[0], 'c');
	ck_assert_int_eq(truncate(walpath, 4096), 0);
	ck_assert_int_eq(f->pMethods->xFileSize(f, &size), SQLITE_OK);
	ck_assert_int_eq(size, 4096);
	memset(got, 0x55, sizeof(got));
	ck_assert_int_eq(f->pMethods->xRead(f, got, sizeof(got), 8192),
			 SQLITE_IOERR_SHORT_READ);
	ck_assert_int_eq(got[0], 0);
	ck_assert_int_eq(f->pMethods->xRead(f, got, sizeof(got), 0),
			 SQLITE_OK);
	ck_assert_int_eq(got[4095], 'a');
	ck_assert_int_eq(f->pMethods->xClose(f), SQLITE_OK);
	free(f);
	sqlite3_free_filename(fname);
	ck_assert_int_eq(unlink(walpath), 0);
	ck_assert_int_eq(unlink(path), 0);
}
END_TEST

/* SQLite's own checkpoint drops the result of its WAL fsync. A failure
 * there is kept: the WAL's later syncs fail too (Linux would let the
 * next one succeed without the lost pages), and the process reports
 * it to db.c, which stops acknowledging writes. */
START_TEST(test_a_dropped_sync_failure_is_kept)
{
	sqlite3 *h = open_db(WALBUF_OVER_FAULT);
	sqlite3_file *wal = NULL;

	make_schema(h);
	for (int i = 0; i < 20; i++)
		insert_row(h, i, 0);
	ck_assert(!vs_walbuf_io_failed());
	fail_wal_syncs = true;
	/* the result reaches SQLite here, but not through its automatic
	 * checkpoint, which runs the same code */
	(void)sqlite3_exec(h, "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL,
			   NULL);
	fail_wal_syncs = false;
	ck_assert(vs_walbuf_io_failed());
	ck_assert_int_eq(sqlite3_file_control(h, "main",
					      SQLITE_FCNTL_JOURNAL_POINTER,
					      &wal), SQLITE_OK);
	ck_assert_ptr_nonnull(wal);
	ck_assert_int_ne(wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL),
			 SQLITE_OK);
	sqlite3_close(h);
}
END_TEST

START_TEST(test_register)
{
	ck_assert_int_eq(vs_walbuf_register(FAULT_VFS), SQLITE_OK);
	ck_assert_int_eq(vs_walbuf_register(NULL), SQLITE_OK);
	ck_assert_int_eq(vs_walbuf_register(NULL), SQLITE_OK);
	ck_assert_ptr_nonnull(sqlite3_vfs_find(VS_WALBUF_VFS));
	ck_assert_int_ne(vs_walbuf_register("no-such-vfs"), SQLITE_OK);
	/* not the default: other code keeps SQLite's own VFS */
	ck_assert_str_ne(sqlite3_vfs_find(NULL)->zName, VS_WALBUF_VFS);
}
END_TEST

static Suite *
walbuf_suite(void)
{
	Suite *s = suite_create("walbuf");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_commit_is_one_write);
	tcase_add_test(tc, test_other_connections_see_every_commit);
	tcase_add_test(tc, test_failed_write_fails_the_commit);
	tcase_add_test(tc, test_spilled_transaction);
	tcase_add_test(tc, test_rollback_leftovers_stay_under_the_lock);
	tcase_add_test(tc, test_rewritten_checksums_reach_the_file);
	tcase_add_test(tc, test_full_sync_padding);
	tcase_add_test(tc, test_frames_are_read_through_the_mapping);
	tcase_add_test(tc, test_read_past_a_cut_wal_is_short);
	tcase_add_test(tc, test_a_dropped_sync_failure_is_kept);
	tcase_add_test(tc, test_register);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(walbuf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
