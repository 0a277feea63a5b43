/*
 * db.c - the store: this process's one SQLite connection on
 * <data>/server.db (see db.h).
 *
 * Owns: creating the file with mode 0640 (D27), the connection pragmas,
 * our own busy handler, transactions, the prepared-statement cache and
 * the schema (creation and the migration of DATA.md 4.4, plus the vs_*
 * soft-state tables).
 *
 * Must never: log a bound value or a row (they may be secrets), change
 * the mode of an existing file, alter a server_* table beyond DATA.md
 * 4.4, or report SQLITE_BUSY as anything but VS_DB_BUSY.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* clock_gettime, nanosleep, fchmod, O_CLOEXEC */
#endif
#include "db.h"
#include "log.h"
#include "util.h"
#include "walbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Error text for callers                                             */
/* ------------------------------------------------------------------ */

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

enum vs_db_status
vs_db_status_of(struct vs_db *db, int rc, const char *ctx)
{
	const char *msg = (db != NULL && db->h != NULL) ?
		sqlite3_errmsg(db->h) : sqlite3_errstr(rc);

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return VS_DB_OK;
	case SQLITE_BUSY:
		/* Contention, not a fault: callers answer 503. */
		vs_log_warn("db: %s: database busy", ctx);
		return VS_DB_BUSY;
	default:
		/* SQLite's messages name tables and columns, never values. */
		vs_log_error("db: %s: %s (%d): %s", ctx, sqlite3_errstr(rc),
			     rc, msg);
		return VS_DB_ERROR;
	}
}

/* ------------------------------------------------------------------ */
/* Busy handler                                                       */
/* ------------------------------------------------------------------ */

/*
 * Why our own handler instead of PRAGMA busy_timeout: SQLite's built-in
 * one sleeps on a fixed schedule (1, 2, 5, 10 ... 100 ms), so every
 * worker queued behind a short write transaction oversleeps it by
 * milliseconds, and all of them wake in lockstep. Write transactions
 * here last well under a millisecond, so we poll with short, jittered,
 * slowly growing sleeps and stop after a total budget.
 */
#define BUSY_FIRST_MIN_US 50
#define BUSY_FIRST_SPAN_US 50
#define BUSY_CAP_US 2000

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: jitter only, so no need for a CSPRNG. */
static uint64_t
rng_next(struct vs_db *db)
{
	uint64_t x = db->busy_rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	db->busy_rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void
sleep_us(unsigned us)
{
	struct timespec req = {
		.tv_sec = (time_t)(us / 1000000u),
		.tv_nsec = (long)(us % 1000000u) * 1000L,
	};

	while (nanosleep(&req, &req) != 0 && errno == EINTR)
		;
}

static int
busy_handler(void *arg, int count)
{
	struct vs_db *db = arg;
	uint64_t now = mono_ns();
	uint64_t budget_ns = (uint64_t)db->busy_budget_ms * 1000000u;
	uint64_t elapsed, left_us;
	unsigned mean, us;

	if (count == 0) {	/* a new wait begins */
		db->busy_start_ns = now;
		db->busy_sleep_us = BUSY_FIRST_MIN_US +
			(unsigned)(rng_next(db) % BUSY_FIRST_SPAN_US);
	}
	elapsed = now - db->busy_start_ns;
	if (elapsed >= budget_ns)
		return 0;	/* give up: the caller sees SQLITE_BUSY */
	mean = db->busy_sleep_us;
	/* Uniform in [mean/2, 3*mean/2]: waiters drift apart. */
	us = mean / 2 + (unsigned)(rng_next(db) % (mean + 1u));
	left_us = (budget_ns - elapsed) / 1000u + 1u;
	if (us > left_us)
		us = (unsigned)left_us;
	db->busy_retries++;
	sleep_us(us);
	mean += mean / 4 + 1;	/* grow slowly: ~15 steps to the cap */
	db->busy_sleep_us = mean > BUSY_CAP_US ? BUSY_CAP_US : mean;
	return 1;
}

void
vs_db_set_busy_budget_ms(struct vs_db *db, unsigned ms)
{
	db->busy_budget_ms = ms ? ms : VS_DB_BUSY_BUDGET_MS;
}

/* ------------------------------------------------------------------ */
/* Opening and closing                                                */
/* ------------------------------------------------------------------ */

/*
 * D27: SQLite would create the file with the process umask (0644 on most
 * systems), and the -wal/-shm files copy the database file's mode. So we
 * create it ourselves, exclusively, and force 0640 with fchmod (a umask
 * can only narrow open()'s mode). An existing file is left as it is.
 */
static bool
create_db_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);

	const char *what = "create";

	if (fd < 0) {
		if (errno == EEXIST)
			return true;
		goto fail;
	}
	if (fchmod(fd, 0640) != 0) {
		int e = errno;

		what = "chmod";
		(void)close(fd);
		errno = e;
		goto fail;
	}
	if (close(fd) == 0)
		return true;
	what = "close";
fail:
	set_err(err, errlen, "cannot %s %s: %s", what, path, strerror(errno));
	vs_log_error("db: cannot %s %s: %s", what, path, strerror(errno));
	return false;
}

static enum vs_db_status
open_fail(struct vs_db *db, int rc, const char *what, char *err,
	  size_t errlen)
{
	enum vs_db_status st = vs_db_status_of(db, rc, what);

	set_err(err, errlen, "%s: %s", what,
		db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
	return st == VS_DB_OK ? VS_DB_ERROR : st;
}

/* journal_mode answers with the mode now in force; anything but "wal"
 * (e.g. a read-only directory) means concurrent workers would block. */
static enum vs_db_status
set_wal(struct vs_db *db, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *mode;
	bool wal;
	int rc;

	rc = sqlite3_prepare_v2(db->h, "PRAGMA journal_mode=WAL", -1, &st,
				NULL);
	if (rc != SQLITE_OK)
		return open_fail(db, rc, "journal_mode", err, errlen);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		enum vs_db_status s = open_fail(db, rc, "journal_mode", err,
						errlen);
		(void)sqlite3_finalize(st);
		return s;
	}
	mode = sqlite3_column_text(st, 0);
	wal = mode != NULL && sqlite3_stricmp((const char *)mode, "wal") == 0;
	if (!wal) {
		const char *m = mode ? (const char *)mode : "(null)";

		set_err(err, errlen, "journal_mode is %s, not wal", m);
		vs_log_error("db: journal_mode is %s, not wal", m);
	}
	(void)sqlite3_finalize(st);	/* a completed pragma: nothing to report */
	return wal ? VS_DB_OK : VS_DB_ERROR;
}

/* The per-connection settings (DATA.md 4.1, with our deviations). */
static const char *const connection_pragmas[] = {
	"PRAGMA foreign_keys=ON",
	/* 2 MiB of page cache per worker. Idle workers wait in epoll with
	 * EPOLLEXCLUSIVE, which wakes the same one first, so at low load
	 * one worker does most writes and its cache stays valid and full:
	 * at 4 MiB that worker's RSS passed 17 MiB (with the WAL mapping,
	 * walbuf.c); at 2 MiB it stays under 15. */
	"PRAGMA cache_size=-2048",
	"PRAGMA temp_store=MEMORY",
	/* No mmap_size: a mapped file truncated by another process (e.g. a
	 * VACUUM run by an operator tool) would SIGBUS the worker. */
};

/*
 * Durability. The reference runs at NORMAL, where an answered write may
 * vanish in a power cut. We answer a write only once the WAL holding it
 * is fsynced. With the shared writer queue (writelock.h) the commit
 * itself runs at NORMAL and sync_gen() fsyncs after the write lock
 * is released: writers no longer queue behind each other's fsync, one
 * fsync covers every commit written before it began, and a writer whose
 * commit an fsync in flight covers waits for it instead of issuing one
 * more (measured: 0.2 fdatasync per single-op push instead of 1 with
 * commit combining at 8 workers). Without the queue
 * there is no shared durable watermark to hide not-yet-synced ops from
 * readers, so FULL syncs inside the commit as usual.
 */
static const char SQL_SYNC_FULL[] = "PRAGMA synchronous=FULL";
static const char SQL_SYNC_NORMAL[] = "PRAGMA synchronous=NORMAL";

static enum vs_db_status
configure(struct vs_db *db, char *err, size_t errlen)
{
	enum vs_db_status st;
	const char *sync_sql;
	int on = 0, rc;

	rc = sqlite3_busy_handler(db->h, busy_handler, db);
	if (rc != SQLITE_OK)
		return open_fail(db, rc, "busy_handler", err, errlen);
	/* Defensive mode forbids schema-corrupting pragmas to any SQL. */
	rc = sqlite3_db_config(db->h, SQLITE_DBCONFIG_DEFENSIVE, 1, &on);
	if (rc != SQLITE_OK)
		return open_fail(db, rc, "defensive", err, errlen);
	st = set_wal(db, err, errlen);
	if (st != VS_DB_OK)
		return st;
	for (size_t i = 0; i < sizeof(connection_pragmas) /
	     sizeof(connection_pragmas[0]); i++) {
		rc = sqlite3_exec(db->h, connection_pragmas[i], NULL, NULL,
				  NULL);
		if (rc != SQLITE_OK)
			return open_fail(db, rc, connection_pragmas[i], err,
					 errlen);
	}
	db->sync_after_commit = db->wlock.shm != NULL;
	sync_sql = db->sync_after_commit ? SQL_SYNC_NORMAL : SQL_SYNC_FULL;
	rc = sqlite3_exec(db->h, sync_sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return open_fail(db, rc, sync_sql, err, errlen);
	return VS_DB_OK;
}

/*
 * Process-wide SQLite settings, made once before the library starts.
 * Debian builds SQLite without lookaside memory, so every row, cursor
 * and record of a statement is a malloc of its own, and with memory
 * statistics on (the default) each one also takes a global mutex and
 * updates counters nothing here reads: -9 % instructions inside the
 * write lock for a 100-op push (callgrind). Too late (something used
 * SQLite before the first open) only costs that speed: a warning, so
 * that it does not go unnoticed, and nothing else.
 */
static void
configure_library(void)
{
	int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);

	if (rc != SQLITE_OK)
		vs_log_warn("db: SQLite's memory statistics stay on: %s",
			    sqlite3_errstr(rc));
}

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

enum vs_db_status
vs_db_open(struct vs_db *db, const char *data_dir, char *err, size_t errlen)
{
	enum vs_db_status st;
	int rc;

	memset(db, 0, sizeof(*db));
	db->busy_budget_ms = VS_DB_BUSY_BUDGET_MS;
	db->busy_rng = (mono_ns() ^ ((uint64_t)getpid() << 32) ^
			(uint64_t)(uintptr_t)db) | 1u;
	db->path = vs_path_join(data_dir, "server.db");
	if (db->path == NULL) {
		set_err(err, errlen, "out of memory");
		return VS_DB_ERROR;
	}
	if (!create_db_file(db->path, err, errlen)) {
		vs_db_close(db);
		return VS_DB_ERROR;
	}
	/* NOMUTEX: one connection per process, used by one thread. No
	 * SQLITE_OPEN_CREATE: the file exists with the right mode by now. */
	vs_wlock_open(&db->wlock, db->path);	/* configure() asks for it */
	vs_combine_open(&db->combine, db->path);
	/* The WAL's writes of a commit go out in one system call
	 * (walbuf.h); without that VFS, SQLite's default does the same
	 * work in more calls. */
	(void)pthread_once(&library_once, configure_library);
	rc = vs_walbuf_register(NULL);
	if (rc != SQLITE_OK)
		vs_log_warn("db: no WAL write gathering: %s", sqlite3_errstr(rc));
	rc = sqlite3_open_v2(db->path, &db->h,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			     rc == SQLITE_OK ? VS_WALBUF_VFS : NULL);
	st = rc == SQLITE_OK ? configure(db, err, errlen) :
		open_fail(db, rc, "open", err, errlen);
	if (st != VS_DB_OK) {
		vs_db_close(db);
		return st;
	}
	return VS_DB_OK;
}

void
vs_db_close(struct vs_db *db)
{
	int rc;

	if (db->h != NULL && db->tx_depth > 0)
		vs_db_rollback(db);
	for (size_t i = 0; i < db->n_slots; i++)
		/* finalize only repeats the last step's error: ignored. */
		(void)sqlite3_finalize(db->slots[i].stmt);
	free(db->slots);
	if (db->h != NULL) {
		rc = sqlite3_close(db->h);
		if (rc != SQLITE_OK) {
			/* Someone else's statement is still open: let
			 * SQLite free the handle once it is finalized. */
			vs_log_error("db: close: %s", sqlite3_errmsg(db->h));
			(void)sqlite3_close_v2(db->h);
		}
	}
	vs_combine_close(&db->combine);
	vs_wlock_close(&db->wlock);
	free(db->path);
	memset(db, 0, sizeof(*db));
}

/* ------------------------------------------------------------------ */
/* Statement cache                                                    */
/* ------------------------------------------------------------------ */

static struct vs_stmt_slot *
find_slot(struct vs_db *db, const char *sql)
{
	/* Linear: a few dozen pointer comparisons cost less than a hash. */
	for (size_t i = 0; i < db->n_slots; i++)
		if (db->slots[i].sql == sql)
			return &db->slots[i];
	return NULL;
}

static bool
only_space(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' &&
		    *s != ';')
			return false;
	return true;
}

static struct vs_stmt_slot *
add_slot(struct vs_db *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	const char *tail = NULL;
	int rc;

	if (db->n_slots == db->cap_slots) {
		size_t cap = db->cap_slots ? db->cap_slots * 2 : 32;
		struct vs_stmt_slot *s = realloc(db->slots, cap * sizeof(*s));

		if (s == NULL) {
			vs_log_error("db: statement cache: out of memory");
			return NULL;
		}
		db->slots = s;
		db->cap_slots = cap;
	}
	rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT,
				&stmt, &tail);
	if (rc != SQLITE_OK || stmt == NULL || !only_space(tail)) {
		/* The SQL text is static program text, never a value. */
		vs_log_error("db: prepare \"%.80s\": %s", sql,
			     rc != SQLITE_OK ? sqlite3_errmsg(db->h) :
			     stmt == NULL ? "empty statement" :
			     "more than one statement");
		(void)sqlite3_finalize(stmt);	/* NULL-safe */
		return NULL;
	}
	db->slots[db->n_slots].sql = sql;
	db->slots[db->n_slots].stmt = stmt;
	return &db->slots[db->n_slots++];
}

sqlite3_stmt *
vs_db_stmt(struct vs_db *db, const char *sql)
{
	struct vs_stmt_slot *slot = find_slot(db, sql);

	if (slot == NULL && (slot = add_slot(db, sql)) == NULL)
		return NULL;
	/* reset only repeats the previous step's result, which its caller
	 * has already handled; clear_bindings always succeeds. Clearing
	 * also drops references to secrets bound last time. */
	(void)sqlite3_reset(slot->stmt);
	(void)sqlite3_clear_bindings(slot->stmt);
	return slot->stmt;
}

/* A cached statement left mid-iteration keeps a read transaction (an
 * old snapshot) open; end them at transaction boundaries. */
static void
reset_active(struct vs_db *db)
{
	for (size_t i = 0; i < db->n_slots; i++)
		if (sqlite3_stmt_busy(db->slots[i].stmt))
			(void)sqlite3_reset(db->slots[i].stmt);
}

/* ------------------------------------------------------------------ */
/* Transactions                                                       */
/* ------------------------------------------------------------------ */

static const char SQL_BEGIN_IMMEDIATE[] = "BEGIN IMMEDIATE";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
#define COMMIT_ATTEMPTS 3

/* Steps a cached one-row-less statement and reports its status. */
static enum vs_db_status
step_cached(struct vs_db *db, const char *sql, const char *ctx, int *rcp)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql);
	enum vs_db_status s;
	int rc;

	if (st == NULL) {
		*rcp = SQLITE_NOMEM;
		return VS_DB_ERROR;
	}
	rc = sqlite3_step(st);
	*rcp = rc;
	s = vs_db_status_of(db, rc, ctx);
	(void)sqlite3_reset(st);	/* same result as rc, handled above */
	return s;
}

static enum vs_db_status
begin(struct vs_db *db, const char *sql, const char *ctx)
{
	enum vs_db_status s;
	int rc;

	if (db->tx_depth > 0 || !sqlite3_get_autocommit(db->h)) {
		vs_log_error("db: %s: a transaction is already open", ctx);
		return VS_DB_ERROR;
	}
	reset_active(db);
	s = step_cached(db, sql, ctx, &rc);
	if (s == VS_DB_OK)
		db->tx_depth = 1;
	return s;
}

enum vs_db_status
vs_db_begin_write(struct vs_db *db)
{
	enum vs_db_status s;

	/* Our writers queue on the shared mutex first (writelock.h), so the
	 * next one starts the moment a commit ends instead of whenever its
	 * busy-handler sleep is over. Not getting it within the budget is
	 * not an error: SQLite's lock still decides below. */
	if (vs_wlock_storage_failed(&db->wlock)) {
		vs_log_error("db: write refused: an earlier fsync failed");
		return VS_DB_ERROR;
	}
	if (db->tx_depth == 0)
		(void)vs_wlock_acquire(&db->wlock, db->busy_budget_ms);
	/* IMMEDIATE takes the write lock before the first read, so a
	 * read-then-write never sees a snapshot another writer changed
	 * (that would be SQLITE_BUSY_SNAPSHOT, which no wait can cure). */
	s = begin(db, SQL_BEGIN_IMMEDIATE, "begin write");
	if (s == VS_DB_OK)
		db->tx_write = true;
	else if (db->tx_depth == 0)
		vs_wlock_release(&db->wlock);
	return s;
}

enum vs_db_status
vs_db_begin_read(struct vs_db *db)
{
	return begin(db, SQL_BEGIN, "begin read");
}

/* The WAL's own xSync: what a FULL commit would have called. */
static bool
sync_wal_file(void *arg)
{
	struct vs_db *db = arg;
	sqlite3_file *wal = NULL;
	int rc;

	/* In WAL mode the pager's journal file is the WAL itself; SQLite
	 * keeps it open for the life of the connection. */
	rc = sqlite3_file_control(db->h, "main", SQLITE_FCNTL_JOURNAL_POINTER,
				  &wal);
	if (rc != SQLITE_OK || wal == NULL || wal->pMethods == NULL) {
		vs_log_error("db: sync: no WAL file to sync");
		return false;
	}
	rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
	if (rc != SQLITE_OK) {
		vs_log_error("db: sync: %s", sqlite3_errstr(rc));
		return false;
	}
	return true;
}

/* Makes commit generation gen durable, sharing another writer's fsync
 * when one that covers it has begun (writelock.h); gen 0: sync now. */
static enum vs_db_status
sync_gen(struct vs_db *db, uint64_t gen)
{
	if (!db->sync_after_commit)
		return VS_DB_OK;	/* FULL synced inside the commit */
	/* A WAL flush or checkpoint sync of this process failed where
	 * no caller saw it: another writer's fsync cannot vouch for our
	 * commits, nor ours for theirs. */
	if (vs_walbuf_io_failed() && !vs_wlock_storage_failed(&db->wlock)) {
		vs_wlock_mark_storage_failed(&db->wlock);
		vs_log_error("db: a WAL or checkpoint write failed: no write is"
			     " acknowledged any more; check the disk, then"
			     " restart the server");
	}
	if (vs_wlock_storage_failed(&db->wlock))
		return VS_DB_ERROR;	/* logged when it happened */
	if (db->deferring) {
		/* vs_db_settle syncs before the answer leaves. */
		db->pending = true;
		db->deferrals++;
		if (gen == 0)
			db->pending_force = true;
		else if (gen > db->pending_gen)
			db->pending_gen = gen;
		return VS_DB_OK;
	}
	if (!vs_wlock_sync(&db->wlock, gen, sync_wal_file, db)) {
		if (vs_wlock_storage_failed(&db->wlock))
			vs_log_error("db: a WAL fsync failed: no write is"
				     " acknowledged any more; check the disk,"
				     " then restart the server");
		return VS_DB_ERROR;
	}
	return VS_DB_OK;
}

enum vs_db_status
vs_db_sync(struct vs_db *db)
{
	return sync_gen(db, 0);
}

enum vs_db_status
vs_db_sync_seen(struct vs_db *db)
{
	return sync_gen(db, vs_wlock_commit_gen(&db->wlock));
}

void
vs_db_defer_begin(struct vs_db *db)
{
	db->deferring = db->may_defer;
}

void
vs_db_defer_end(struct vs_db *db)
{
	db->deferring = false;
}

bool
vs_db_has_pending(const struct vs_db *db)
{
	return db->pending;
}

unsigned long
vs_db_deferrals(const struct vs_db *db)
{
	return db->deferrals;
}

enum vs_db_status
vs_db_settle(struct vs_db *db)
{
	uint64_t gen = db->pending_force ? 0 : db->pending_gen;
	int64_t top = db->pending_top;
	enum vs_db_status s;

	if (!db->pending)
		return VS_DB_OK;
	db->deferring = false;
	db->pending = db->pending_force = false;
	db->pending_gen = 0;
	db->pending_top = 0;
	/* gen 0 claims every commit numbered by now, so it covers the
	 * recorded generations too. */
	s = sync_gen(db, gen);
	if (s == VS_DB_OK && top > 0)
		vs_wlock_raise_durable_seq(&db->wlock, top);
	return s;
}

void
vs_db_publish_durable(struct vs_db *db, int64_t top)
{
	/* Not pending (FULL, or nothing written): durable already. */
	if (db->deferring && db->pending) {
		if (top > db->pending_top)
			db->pending_top = top;
		db->deferrals++;
		return;
	}
	vs_wlock_raise_durable_seq(&db->wlock, top);
}

void
vs_db_storage_failed(struct vs_db *db)
{
	vs_wlock_mark_storage_failed(&db->wlock);
	vs_log_error("db: an fsync failed: no write is acknowledged any more;"
		     " check the disk, then restart the server");
}

void
vs_db_reset_shared(struct vs_db *db)
{
	vs_wlock_reset(&db->wlock);
	vs_combine_reset(&db->combine);
}

/* Runs COMMIT (retried while busy). On success the transaction is
 * over, the writer queue still held; on failure it is still open. */
static enum vs_db_status
commit_step(struct vs_db *db)
{
	enum vs_db_status s = VS_DB_ERROR;
	int rc = SQLITE_OK;

	if (db->tx_depth == 0) {
		vs_log_error("db: commit without a transaction");
		return VS_DB_ERROR;
	}
	reset_active(db);
	for (int i = 0; i < COMMIT_ATTEMPTS; i++) {
		s = step_cached(db, SQL_COMMIT, "commit", &rc);
		if (s != VS_DB_BUSY)
			break;
	}
	if (s == VS_DB_OK && sqlite3_get_autocommit(db->h)) {
		db->tx_depth = 0;
		db->tx_write = false;
		return VS_DB_OK;
	}
	return s == VS_DB_OK ? VS_DB_ERROR : s;
}

/* Ends the open transaction, if any, keeping the writer queue. */
static void
rollback_keep_queue(struct vs_db *db)
{
	int rc;

	reset_active(db);
	/* SQLite may already have rolled back by itself (e.g. after an I/O
	 * error or SQLITE_FULL); ROLLBACK would then fail. */
	if (!sqlite3_get_autocommit(db->h)) {
		rc = sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			(void)vs_db_status_of(db, rc, "rollback");
	}
	db->tx_depth = 0;
	db->tx_write = false;
}

enum vs_db_status
vs_db_commit(struct vs_db *db)
{
	bool wrote = db->tx_write;
	enum vs_db_status s = commit_step(db);

	if (s == VS_DB_OK) {
		/* Numbered now that COMMIT has returned (writelock.h). */
		uint64_t gen = wrote ? vs_wlock_note_commit(&db->wlock) : 0;

		vs_wlock_release(&db->wlock);
		/* After the release: the next writer goes on while this
		 * fsync runs, and may share it. A failed sync leaves the
		 * commit visible but unacknowledged; the client's retry is
		 * a same-scope duplicate. */
		return wrote ? sync_gen(db, gen) : VS_DB_OK;
	}
	if (db->tx_depth > 0)
		vs_db_rollback(db);
	return s;
}

/*
 * Commit combining (combine.h): the leader commits with the writer queue
 * still held, so it can hand out the answers before anyone else writes,
 * then lets go and syncs like every other writer.
 */
enum vs_db_status
vs_db_commit_keep_queue(struct vs_db *db)
{
	enum vs_db_status s;

	if (!db->tx_write) {
		vs_log_error("db: commit without a write transaction");
		return VS_DB_ERROR;
	}
	s = commit_step(db);
	if (s == VS_DB_OK)
		/* Before any answer is handed out: a worker that sees its
		 * answer and reads the generation finds this one or later. */
		(void)vs_wlock_note_commit(&db->wlock);
	else if (db->tx_depth > 0)
		rollback_keep_queue(db);
	return s;
}

void
vs_db_release_queue(struct vs_db *db)
{
	if (db->tx_depth == 0)
		vs_wlock_release(&db->wlock);
}

static const char SQL_SAVEPOINT[] = "SAVEPOINT vs_item";
static const char SQL_SAVEPOINT_UNDO[] = "ROLLBACK TO vs_item";
static const char SQL_SAVEPOINT_RELEASE[] = "RELEASE vs_item";

enum vs_db_status
vs_db_savepoint(struct vs_db *db)
{
	int rc;

	if (db->tx_depth == 0 || !db->tx_write) {
		vs_log_error("db: savepoint outside a write transaction");
		return VS_DB_ERROR;
	}
	return step_cached(db, SQL_SAVEPOINT, "savepoint", &rc);
}

enum vs_db_status
vs_db_savepoint_end(struct vs_db *db, bool keep)
{
	enum vs_db_status s = VS_DB_OK;
	int rc;

	reset_active(db);
	if (!keep)
		s = step_cached(db, SQL_SAVEPOINT_UNDO, "rollback to savepoint", &rc);
	if (s == VS_DB_OK)
		s = step_cached(db, SQL_SAVEPOINT_RELEASE, "release savepoint", &rc);
	return s;
}

void
vs_db_rollback(struct vs_db *db)
{
	if (db->h == NULL)
		return;
	rollback_keep_queue(db);
	vs_wlock_release(&db->wlock);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

enum vs_db_status
vs_db_exec(struct vs_db *db, const char *sql)
{
	int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);

	return vs_db_status_of(db, rc, "exec");
}

static const char SQL_USER_VERSION[] = "PRAGMA user_version";

int
vs_db_user_version(struct vs_db *db)
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_USER_VERSION);
	int rc, v = -1;

	if (st == NULL)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	else
		(void)vs_db_status_of(db, rc, "user_version");
	(void)sqlite3_reset(st);
	return v;
}

/* ------------------------------------------------------------------ */
/* Schema (DATA.md 4.2/4.3)                                           */
/* ------------------------------------------------------------------ */

/*
 * The declarations are the reference's, byte for byte after "CREATE
 * TABLE": SQLite stores the text from the object name on (dropping IF
 * NOT EXISTS), so a fresh database has the same sqlite_master as one the
 * reference created. Listed in the reference's creation order.
 */
struct schema_obj {
	const char *name;
	const char *table;	/* indexes: the indexed table; NULL for tables */
	const char *cols[3];	/* indexes: the indexed columns */
	bool scope;		/* index left to step 2.8 */
	const char *sql;
};

#define TABLE(n, body) { n, NULL, { NULL }, false, \
	"CREATE TABLE IF NOT EXISTS " n " (\n" body "\n)" }
#define INDEX(n, t, c0, c1, c2, text) { n, t, { c0, c1, c2 }, false, \
	"CREATE INDEX IF NOT EXISTS " n " ON " t "(" text ")" }
#define SCOPE_INDEX(n, t, c0, c1, c2, text) { n, t, { c0, c1, c2 }, true, \
	"CREATE INDEX IF NOT EXISTS " n "\n\t\tON " t "(" text ")" }

static const struct schema_obj schema[] = {
	TABLE("server_users",
	      "    id TEXT PRIMARY KEY,\n"
	      "    username TEXT NOT NULL UNIQUE,\n"
	      "    email TEXT NOT NULL UNIQUE,\n"
	      "    password_hash TEXT NOT NULL,\n"
	      "    confirmed INTEGER NOT NULL DEFAULT 0,\n"
	      "    blocked INTEGER NOT NULL DEFAULT 0,\n"
	      "    last_seen TEXT,\n"
	      "    created_at TEXT NOT NULL"),
	TABLE("server_devices",
	      "    id TEXT PRIMARY KEY,\n"
	      "    name TEXT NOT NULL,\n"
	      "    api_key TEXT NOT NULL UNIQUE,\n"
	      "    token_hash TEXT,\n"
	      "    token_prefix TEXT,\n"
	      "    token_suffix TEXT,\n"
	      "    legacy_api_key INTEGER NOT NULL DEFAULT 0,\n"
	      "    user_id TEXT,\n"
	      "    vault_id TEXT,\n"
	      "    client_version TEXT,\n"
	      "    last_ip TEXT,\n"
	      "    last_seen TEXT,\n"
	      "    revoked_at TEXT,\n"
	      "    created_at TEXT NOT NULL"),
	TABLE("server_user_devices",
	      "    user_id TEXT NOT NULL,\n"
	      "    device_id TEXT NOT NULL,\n"
	      "    PRIMARY KEY (user_id, device_id)"),
	TABLE("server_ops",
	      "    op_id TEXT PRIMARY KEY,\n"
	      "    server_sequence INTEGER,\n"
	      "    user_id TEXT NOT NULL,\n"
	      "    vault_id TEXT NOT NULL,\n"
	      "    device_id TEXT NOT NULL,\n"
	      "    entity_type TEXT NOT NULL,\n"
	      "    entity_id TEXT NOT NULL,\n"
	      "    op_type TEXT NOT NULL,\n"
	      "    payload_json TEXT NOT NULL,\n"
	      "    idempotency_key TEXT,\n"
	      "    client_sequence INTEGER DEFAULT 0,\n"
	      "    last_seen_server_seq INTEGER DEFAULT 0,\n"
	      "    created_at TEXT NOT NULL,\n"
	      "    pushed_at TEXT NOT NULL DEFAULT (datetime('now'))"),
	TABLE("server_tombstones",
	      "    user_id TEXT NOT NULL,\n"
	      "    vault_id TEXT NOT NULL,\n"
	      "    entity_type TEXT NOT NULL,\n"
	      "    entity_id TEXT NOT NULL,\n"
	      "    op_id TEXT NOT NULL,\n"
	      "    deleted_at TEXT NOT NULL,\n"
	      "    PRIMARY KEY (user_id, vault_id, entity_type, entity_id)"),
	TABLE("server_idempotency_keys",
	      "    user_id TEXT NOT NULL,\n"
	      "    vault_id TEXT NOT NULL,\n"
	      "    idempotency_key TEXT NOT NULL,\n"
	      "    response_json TEXT NOT NULL,\n"
	      "    created_at TEXT NOT NULL,\n"
	      "    PRIMARY KEY (user_id, vault_id, idempotency_key)"),
	TABLE("server_email_tokens",
	      "    token_hash TEXT PRIMARY KEY,\n"
	      "    user_id TEXT NOT NULL,\n"
	      "    purpose TEXT NOT NULL,\n"
	      "    expires_at TEXT NOT NULL,\n"
	      "    created_at TEXT NOT NULL"),
	TABLE("server_sessions",
	      "    token_hash TEXT PRIMARY KEY,\n"
	      "    csrf_hash TEXT NOT NULL,\n"
	      "    scope TEXT NOT NULL,\n"
	      "    subject_id TEXT NOT NULL,\n"
	      "    expires_at TEXT NOT NULL,\n"
	      "    created_at TEXT NOT NULL,\n"
	      "    last_seen TEXT NOT NULL"),
	TABLE("server_revisions",
	      "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	      "    op_id TEXT NOT NULL,\n"
	      "    device_id TEXT NOT NULL"),
	TABLE("server_blobs",
	      "    sha256 TEXT PRIMARY KEY,\n"
	      "    size INTEGER NOT NULL,\n"
	      "    created_at TEXT NOT NULL"),
	TABLE("server_blob_refs",
	      "    user_id TEXT NOT NULL,\n"
	      "    vault_id TEXT NOT NULL,\n"
	      "    sha256 TEXT NOT NULL,\n"
	      "    size INTEGER NOT NULL,\n"
	      "    created_at TEXT NOT NULL,\n"
	      "    last_accessed TEXT NOT NULL,\n"
	      "    PRIMARY KEY (user_id, vault_id, sha256)"),
	TABLE("server_audit_log",
	      "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	      "    event_type TEXT NOT NULL,\n"
	      "    user_id TEXT,\n"
	      "    device_id TEXT,\n"
	      "    ip TEXT,\n"
	      "    message TEXT,\n"
	      "    created_at TEXT NOT NULL DEFAULT (datetime('now'))"),
	INDEX("idx_server_ops_sequence", "server_ops",
	      "server_sequence", NULL, NULL, "server_sequence"),
	INDEX("idx_server_ops_entity", "server_ops",
	      "entity_type", "entity_id", NULL, "entity_type, entity_id"),
	INDEX("idx_server_ops_idempotency", "server_ops",
	      "idempotency_key", NULL, NULL, "idempotency_key"),
	INDEX("idx_server_devices_api_key", "server_devices",
	      "api_key", NULL, NULL, "api_key"),
	INDEX("idx_server_devices_user", "server_devices",
	      "user_id", NULL, NULL, "user_id"),
	INDEX("idx_server_users_username", "server_users",
	      "username", NULL, NULL, "username"),
	INDEX("idx_server_users_email", "server_users",
	      "email", NULL, NULL, "email"),
	INDEX("idx_server_audit_log_event", "server_audit_log",
	      "event_type", NULL, NULL, "event_type"),
	INDEX("idx_server_audit_log_created", "server_audit_log",
	      "created_at", NULL, NULL, "created_at"),
	INDEX("idx_server_blob_refs_scope", "server_blob_refs",
	      "user_id", "vault_id", "sha256", "user_id, vault_id, sha256"),
	INDEX("idx_server_blob_refs_user", "server_blob_refs",
	      "user_id", "sha256", NULL, "user_id, sha256"),
	INDEX("idx_server_sessions_expiry", "server_sessions",
	      "expires_at", NULL, NULL, "expires_at"),
	INDEX("idx_server_sessions_subject", "server_sessions",
	      "scope", "subject_id", NULL, "scope, subject_id"),
	TABLE("server_smtp_config",
	      "    key TEXT PRIMARY KEY,\n"
	      "    value TEXT NOT NULL"),
	SCOPE_INDEX("idx_server_ops_scope_sequence", "server_ops",
		    "user_id", "vault_id", "server_sequence",
		    "user_id, vault_id, server_sequence"),
	SCOPE_INDEX("idx_server_devices_scope", "server_devices",
		    "user_id", "vault_id", NULL, "user_id, vault_id"),
};

#define N_SCHEMA (sizeof(schema) / sizeof(schema[0]))

/* This server's soft state (DATA.md 4.5): never named server_*, always
 * safe to find stale or empty. */
static const char *const own_objects[] = {
	"CREATE TABLE IF NOT EXISTS vs_rate_buckets (\n"
	"    bucket TEXT PRIMARY KEY,\n"
	"    window_start INTEGER NOT NULL,\n"
	"    window_end INTEGER NOT NULL,\n"
	"    count INTEGER NOT NULL,\n"
	"    audited INTEGER NOT NULL DEFAULT 0\n"
	")",
	"CREATE INDEX IF NOT EXISTS vs_idx_rate_buckets_window_end"
	" ON vs_rate_buckets(window_end)",
	"CREATE TABLE IF NOT EXISTS vs_one_time_secrets (\n"
	"    key_hash TEXT PRIMARY KEY,\n"
	"    secret TEXT NOT NULL,\n"
	"    expires_at INTEGER NOT NULL\n"
	")",
	"CREATE TABLE IF NOT EXISTS vs_leases (\n"
	"    name TEXT PRIMARY KEY,\n"
	"    holder TEXT NOT NULL,\n"
	"    expires_at INTEGER NOT NULL\n"
	")",
	/* Device auth looks a token up by hash on every request; the
	 * reference has no index for it (an extra index is harmless). */
	"CREATE INDEX IF NOT EXISTS vs_idx_devices_token_hash"
	" ON server_devices(token_hash)",
	/* Blob quotas sum a user's (and a vault's) referenced bytes inside
	 * the upload's write transaction; a covering index keeps that a
	 * scan of small index entries instead of table rows. */
	"CREATE INDEX IF NOT EXISTS vs_idx_blob_refs_usage"
	" ON server_blob_refs(user_id, vault_id, size)",
	/* Is a blob referenced by anyone (blobs.c vs_blob_in_use, gc.c)?
	 * The reference's indexes all start with user_id, so without this
	 * each answer was a scan of every reference, under the write lock:
	 * 0.9 ms a blob at 100,000 references, 9 ms for one nobody has. */
	"CREATE INDEX IF NOT EXISTS vs_idx_blob_refs_sha256"
	" ON server_blob_refs(sha256)",
	/* Bytes of the references our uploads added, per scope, only ever
	 * growing (blobs.c): the quota sums are read before the write
	 * lock, and under it what these totals grew by since is what was
	 * added meanwhile. Scopes that never uploaded have no row. */
	"CREATE TABLE IF NOT EXISTS vs_blob_ref_added (\n"
	"    user_id TEXT NOT NULL,\n"
	"    vault_id TEXT NOT NULL,\n"
	"    bytes INTEGER NOT NULL,\n"
	"    PRIMARY KEY (user_id, vault_id)\n"
	")",
};

static const struct schema_obj *
schema_find(const char *name)
{
	for (size_t i = 0; i < N_SCHEMA; i++)
		if (strcmp(schema[i].name, name) == 0)
			return &schema[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Table introspection                                                */
/* ------------------------------------------------------------------ */

static const char SQL_TABLE_INFO[] =
	"SELECT name, pk FROM pragma_table_info(?1)";

/* Runs SQL_TABLE_INFO for table; the caller steps it. */
static sqlite3_stmt *
table_info(struct vs_db *db, const char *table)
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_TABLE_INFO);

	if (st == NULL)
		return NULL;
	if (sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC) != SQLITE_OK) {
		(void)vs_db_status_of(db, sqlite3_errcode(db->h),
				      "table_info bind");
		return NULL;
	}
	return st;
}

/* *has = whether table has column col. Returns a SQLite result code. */
static int
column_exists(struct vs_db *db, const char *table, const char *col,
	      bool *has)
{
	sqlite3_stmt *st = table_info(db, table);
	int rc;

	*has = false;
	if (st == NULL)
		return SQLITE_ERROR;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if (name != NULL && sqlite3_stricmp(name, col) == 0)
			*has = true;
	}
	(void)sqlite3_reset(st);	/* same result as rc */
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* *match = whether table's primary key is exactly cols[0..n-1], in that
 * order (PRAGMA table_info's pk is the 1-based position in the key). */
static int
primary_key_is(struct vs_db *db, const char *table,
	       const char *const *cols, int n, bool *match)
{
	sqlite3_stmt *st = table_info(db, table);
	int rc, seen = 0;
	bool ok = true;

	*match = false;
	if (st == NULL)
		return SQLITE_ERROR;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		int pk = sqlite3_column_int(st, 1);

		if (pk == 0)
			continue;
		seen++;
		if (pk > n || name == NULL ||
		    sqlite3_stricmp(name, cols[pk - 1]) != 0)
			ok = false;
	}
	(void)sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return rc;
	*match = ok && seen == n;
	return SQLITE_OK;
}

/* ------------------------------------------------------------------ */
/* Migration (DATA.md 4.4)                                            */
/* ------------------------------------------------------------------ */

struct mig {
	struct vs_db *db;
	char *err;
	size_t errlen;
	const char *step;	/* for error messages: "2.4 email tokens" */
};

static bool
mig_fail(struct mig *m, int rc)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "migration step %s: %s", m->step,
		 m->db->h ? sqlite3_errmsg(m->db->h) : sqlite3_errstr(rc));
	vs_log_error("db: %s", msg);
	set_err(m->err, m->errlen, "%s", msg);
	return false;
}

static bool
mig_exec(struct mig *m, const char *sql)
{
	int rc = sqlite3_exec(m->db->h, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? true : mig_fail(m, rc);
}

static bool
mig_has_column(struct mig *m, const char *table, const char *col,
	       bool *has)
{
	int rc = column_exists(m->db, table, col, has);

	return rc == SQLITE_OK ? true : mig_fail(m, rc);
}

/* Whether every column an index needs exists yet (legacy tables may
 * lack one until step 2.1 adds it). */
static bool
index_columns_exist(struct mig *m, const struct schema_obj *o, bool *all)
{
	*all = true;
	for (size_t c = 0; c < 3 && o->cols[c] != NULL; c++) {
		bool has;

		if (!mig_has_column(m, o->table, o->cols[c], &has))
			return false;
		if (!has)
			*all = false;
	}
	return true;
}

/* Step 1: every missing table and named index; existing tables keep
 * their shape. Scope indexes, and any index whose column a legacy table
 * still lacks, wait for step 2. */
static bool
step_create(struct mig *m)
{
	m->step = "1 create";
	for (size_t i = 0; i < N_SCHEMA; i++) {
		const struct schema_obj *o = &schema[i];
		bool ready = true;

		if (o->scope)
			continue;
		if (o->table != NULL && !index_columns_exist(m, o, &ready))
			return false;
		if (ready && !mig_exec(m, o->sql))
			return false;
	}
	return true;
}

/* 2.1: the scope columns, as plain nullable TEXT. */
static bool
step_scope_columns(struct mig *m)
{
	static const char *const adds[][3] = {
		{ "server_devices", "user_id",
		  "ALTER TABLE server_devices ADD COLUMN user_id TEXT" },
		{ "server_devices", "vault_id",
		  "ALTER TABLE server_devices ADD COLUMN vault_id TEXT" },
		{ "server_ops", "user_id",
		  "ALTER TABLE server_ops ADD COLUMN user_id TEXT" },
		{ "server_ops", "vault_id",
		  "ALTER TABLE server_ops ADD COLUMN vault_id TEXT" },
	};

	m->step = "2.1 scope columns";
	for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++) {
		bool has;

		if (!mig_has_column(m, adds[i][0], adds[i][1], &has))
			return false;
		if (!has && !mig_exec(m, adds[i][2]))
			return false;
	}
	return true;
}

/* 2.2: a device without an owner takes its only linked user. */
static bool
step_device_owner(struct mig *m)
{
	m->step = "2.2 device owners";
	return mig_exec(m,
		"UPDATE server_devices SET user_id = ("
		" SELECT l.user_id FROM server_user_devices l"
		" WHERE l.device_id = server_devices.id)"
		" WHERE COALESCE(user_id, '') = ''"
		" AND (SELECT COUNT(*) FROM server_user_devices l"
		" WHERE l.device_id = server_devices.id) = 1");
}

/* 2.3: legacy_api_key. D36: rows are promoted only here, when the column
 * is new; later rows with the flag 0 stay unusable as keys. substr, not
 * LIKE: LIKE is case-insensitive and treats '_' as a wildcard. */
static bool
step_legacy_key(struct mig *m)
{
	bool has;

	m->step = "2.3 legacy_api_key";
	if (!mig_has_column(m, "server_devices", "legacy_api_key", &has))
		return false;
	if (has)
		return true;
	return mig_exec(m,
		"ALTER TABLE server_devices ADD COLUMN"
		" legacy_api_key INTEGER NOT NULL DEFAULT 0") &&
	       mig_exec(m,
		"UPDATE server_devices SET legacy_api_key = 1"
		" WHERE substr(api_key, 1, 9) <> 'disabled:'");
}

/* SQL function vs_sha256_hex(text): DATA.md 5's hash of a secret, for
 * the one-statement copy of step 2.4. */
static void
sql_sha256_hex(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *text;
	char hex[65];

	if (argc != 1 || sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	text = sqlite3_value_text(argv[0]);
	if (text == NULL) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	vs_sha256_hex(text, (size_t)sqlite3_value_bytes(argv[0]), hex);
	sqlite3_result_text(ctx, hex, 64, SQLITE_TRANSIENT);
}

/* Renaming aside uses our own namespace, so a leftover can be dropped. */
#define ASIDE "vs_migrate_aside"

/* Renames table aside and creates its current declaration. */
static bool
rebuild_begin(struct mig *m, const char *table)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "ALTER TABLE %s RENAME TO " ASIDE, table);
	return mig_exec(m, "DROP TABLE IF EXISTS " ASIDE) &&
	       mig_exec(m, sql) && mig_exec(m, schema_find(table)->sql);
}

/* 2.4: plaintext e-mail tokens become hashed ones. Rows whose token is
 * NULL are dropped (OR IGNORE covers NOT NULL as well). */
static bool
step_email_tokens(struct mig *m)
{
	bool has;
	int rc;

	m->step = "2.4 email tokens";
	if (!mig_has_column(m, "server_email_tokens", "token_hash", &has))
		return false;
	if (has)
		return true;
	rc = sqlite3_create_function_v2(m->db->h, "vs_sha256_hex", 1,
		SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY,
		NULL, sql_sha256_hex, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return mig_fail(m, rc);
	return rebuild_begin(m, "server_email_tokens") &&
	       mig_exec(m,
		"INSERT OR IGNORE INTO server_email_tokens"
		" (token_hash, user_id, purpose, expires_at, created_at)"
		" SELECT vs_sha256_hex(token), user_id, purpose, expires_at,"
		" created_at FROM " ASIDE) &&
	       mig_exec(m, "DROP TABLE " ASIDE);
}

/* 2.5: op scope from the pushing device: its user, then its vault or
 * the legacy vault of that user. */
static bool
step_op_scope(struct mig *m)
{
	m->step = "2.5 op scope";
	return mig_exec(m,
		"UPDATE server_ops SET user_id = ("
		" SELECT d.user_id FROM server_devices d"
		" WHERE d.id = server_ops.device_id)"
		" WHERE COALESCE(user_id, '') = ''"
		" AND EXISTS (SELECT 1 FROM server_devices d"
		" WHERE d.id = server_ops.device_id"
		" AND COALESCE(d.user_id, '') <> '')") &&
	       mig_exec(m,
		"UPDATE server_ops SET vault_id = COALESCE(("
		" SELECT NULLIF(d.vault_id, '') FROM server_devices d"
		" WHERE d.id = server_ops.device_id), 'legacy:' || user_id)"
		" WHERE COALESCE(vault_id, '') = ''"
		" AND COALESCE(user_id, '') <> ''");
}

/* 2.6: tombstones keyed by entity only get the scope of their op. */
static bool
step_tombstones(struct mig *m)
{
	static const char *const key[] = {
		"user_id", "vault_id", "entity_type", "entity_id" };
	bool ok;
	int rc;

	m->step = "2.6 tombstones";
	rc = primary_key_is(m->db, "server_tombstones", key, 4, &ok);
	if (rc != SQLITE_OK)
		return mig_fail(m, rc);
	if (ok)
		return true;
	return rebuild_begin(m, "server_tombstones") &&
	       mig_exec(m,
		"INSERT OR IGNORE INTO server_tombstones"
		" (user_id, vault_id, entity_type, entity_id, op_id,"
		" deleted_at)"
		" SELECT o.user_id, o.vault_id, t.entity_type, t.entity_id,"
		" t.op_id, t.deleted_at FROM " ASIDE " t"
		" JOIN server_ops o ON o.op_id = t.op_id"
		" WHERE COALESCE(o.user_id, '') <> ''"
		" AND COALESCE(o.vault_id, '') <> ''") &&
	       mig_exec(m, "DROP TABLE " ASIDE);
}

/* 2.7: a global replay cache is discarded, never replayed across
 * scopes. */
static bool
step_idempotency(struct mig *m)
{
	static const char *const key[] = {
		"user_id", "vault_id", "idempotency_key" };
	bool ok;
	int rc;

	m->step = "2.7 idempotency keys";
	rc = primary_key_is(m->db, "server_idempotency_keys", key, 3, &ok);
	if (rc != SQLITE_OK)
		return mig_fail(m, rc);
	if (ok)
		return true;
	return mig_exec(m, "DROP TABLE server_idempotency_keys") &&
	       mig_exec(m, schema_find("server_idempotency_keys")->sql);
}

/* 2.8: the scope indexes, plus any index step 1 deferred because a
 * legacy table lacked its column (IF NOT EXISTS: others are no-ops). */
static bool
step_indexes(struct mig *m)
{
	m->step = "2.8 indexes";
	for (size_t i = 0; i < N_SCHEMA; i++)
		if (schema[i].table != NULL && !mig_exec(m, schema[i].sql))
			return false;
	return true;
}

static bool
step_own_objects(struct mig *m)
{
	m->step = "own tables";
	for (size_t i = 0; i < sizeof(own_objects) / sizeof(own_objects[0]);
	     i++)
		if (!mig_exec(m, own_objects[i]))
			return false;
	return true;
}

/* 2.9: written only when different, so a current database sees no
 * write at all here. */
static bool
step_version(struct mig *m)
{
	int v = vs_db_user_version(m->db);

	m->step = "2.9 user_version";
	if (v < 0)
		return mig_fail(m, SQLITE_ERROR);
	if (v == VS_SCHEMA_VERSION)
		return true;
	if (v > VS_SCHEMA_VERSION)
		vs_log_warn("db: user_version %d is newer than %d; setting %d"
			    " as DATA.md 4.4 requires", v, VS_SCHEMA_VERSION,
			    VS_SCHEMA_VERSION);
	return mig_exec(m, "PRAGMA user_version = 2");
}

static bool
migrate_steps(struct mig *m)
{
	return step_scope_columns(m) && step_device_owner(m) &&
	       step_legacy_key(m) && step_email_tokens(m) &&
	       step_op_scope(m) && step_tombstones(m) &&
	       step_idempotency(m) && step_indexes(m) &&
	       step_own_objects(m) && step_version(m);
}

/* Runs one step function in its own write transaction. */
static enum vs_db_status
in_write_tx(struct mig *m, bool (*fn)(struct mig *), const char *what)
{
	enum vs_db_status s = vs_db_begin_write(m->db);

	if (s != VS_DB_OK) {
		set_err(m->err, m->errlen, "migration %s: %s", what,
			s == VS_DB_BUSY ? "database busy" :
			"cannot begin a transaction");
		return s;
	}
	if (!fn(m)) {
		vs_db_rollback(m->db);
		return VS_DB_ERROR;
	}
	s = vs_db_commit(m->db);
	if (s != VS_DB_OK)
		set_err(m->err, m->errlen, "migration %s: commit failed%s",
			what, s == VS_DB_BUSY ? " (busy)" : "");
	return s;
}

enum vs_db_status
vs_db_migrate(struct vs_db *db, char *err, size_t errlen)
{
	struct mig m = { .db = db, .err = err, .errlen = errlen, .step = "" };
	enum vs_db_status s;

	if (db->h == NULL) {
		set_err(err, errlen, "database not open");
		return VS_DB_ERROR;
	}
	/* Step 1 gets its own transaction only so that two instances
	 * starting together do not interleave; step 2 must be one. */
	s = in_write_tx(&m, step_create, "step 1");
	if (s != VS_DB_OK)
		return s;
	return in_write_tx(&m, migrate_steps, "step 2");
}
