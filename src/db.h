/*
 * db.h - the store: one SQLite connection per process on <data>/server.db.
 *
 * Owns: opening (file created 0640 before SQLite sees it, D27), the
 * pragmas (WAL, foreign_keys, synchronous, busy handling), durability
 * of every write commit before it is answered (vs_db_sync), the busy
 * handler, transactions (writes always BEGIN IMMEDIATE), the prepared
 * statement cache, and the schema: creation and the idempotent migration
 * to user_version 2 (DATA.md 4.4), plus this server's own soft-state
 * tables (names never start with "server_").
 *
 * Must never: alter a server_* table's shape beyond DATA.md 4.4, run a
 * write outside a transaction that took the write lock up front, or show
 * SQLITE_BUSY to a client as an internal error.
 *
 * Other modules keep their own SQL text and use vs_db_stmt() to get a
 * cached, reset statement for it.
 */
#ifndef VS_DB_H
#define VS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "combine.h"
#include "writelock.h"

#define VS_SCHEMA_VERSION 2

struct vs_stmt_slot {
	const char *sql;        /* key: pointer to a static SQL string */
	sqlite3_stmt *stmt;
};

struct vs_db {
	sqlite3 *h;
	char *path;
	struct vs_stmt_slot *slots;
	size_t n_slots, cap_slots;
	int tx_depth;           /* 0 = no transaction open */
	bool tx_write;          /* the open transaction is BEGIN IMMEDIATE */
	bool sync_after_commit; /* NORMAL + vs_db_sync (see db.c) */
	bool durable_seq_known; /* sync.c published the watermark once */
	struct vs_wlock wlock;  /* queue of this server's writers */
	struct vs_combine combine; /* commit combining (combine.h) */
	unsigned busy_retries;  /* statistics: busy-handler invocations */
	/* Busy handler state (db.c): how long one lock wait may last, when
	 * the current wait began, the next mean sleep, the jitter PRNG. */
	unsigned busy_budget_ms;
	uint64_t busy_start_ns;
	unsigned busy_sleep_us;
	uint64_t busy_rng;
	/* Deferred syncs (vs_db_defer_begin): what the held-back answers
	 * wait for. pending_force: one of them needs an fsync of its own
	 * (gen 0); else pending_gen is the highest generation to cover. */
	bool may_defer;
	bool deferring;
	bool pending;
	bool pending_force;
	uint64_t pending_gen;
	int64_t pending_top;
	unsigned long deferrals;	/* how many times anything was deferred */
};

/* Default total time one lock acquisition may wait before VS_DB_BUSY. */
#define VS_DB_BUSY_BUDGET_MS 10000

enum vs_db_status {
	VS_DB_OK = 0,
	VS_DB_BUSY,     /* lock not obtained within the busy budget */
	VS_DB_ERROR,    /* anything else: logged by the db module */
};

/* Opens <data_dir>/server.db, creating it with mode 0640 if absent, and
 * applies the connection pragmas. Does not create or migrate the schema. */
enum vs_db_status vs_db_open(struct vs_db *db, const char *data_dir,
			     char *err, size_t errlen);
void vs_db_close(struct vs_db *db);

/* Changes the busy budget (tests use a short one); 0 = the default. */
void vs_db_set_busy_budget_ms(struct vs_db *db, unsigned ms);

/* Creates missing tables and indexes and migrates to user_version 2
 * (DATA.md 4.4); a no-op on a current database. Run once at startup by
 * the launcher or a CLI command, not by every worker. */
enum vs_db_status vs_db_migrate(struct vs_db *db, char *err, size_t errlen);

/* Reads PRAGMA user_version; -1 when the database does not answer. */
int vs_db_user_version(struct vs_db *db);

/* Transactions. begin_write = BEGIN IMMEDIATE (retried on busy);
 * begin_read = BEGIN DEFERRED (one snapshot for several SELECTs). */
enum vs_db_status vs_db_begin_write(struct vs_db *db);
enum vs_db_status vs_db_begin_read(struct vs_db *db);
/* A write transaction's commit returns only once it is on stable
 * storage (vs_db_sync), or, deferred, once vs_db_settle is owed; read
 * transactions just end. */
enum vs_db_status vs_db_commit(struct vs_db *db);
/* Makes every transaction committed so far, by any process, durable
 * (an fsync of the WAL; a no-op at FULL). */
enum vs_db_status vs_db_sync(struct vs_db *db);
/* Makes durable every commit whose result this process has seen numbered
 * (vs_db_commit_keep_queue numbers its commit before any answer leaves):
 * may share a running fsync of another writer instead of its own. */
enum vs_db_status vs_db_sync_seen(struct vs_db *db);
/*
 * Deferred syncs: the worker's group commit (worker.c). A worker that can
 * hold an answer back sets may_defer for the request; the handler brackets
 * its writes with vs_db_defer_begin/_end. In between, the fsync a commit
 * or vs_db_sync* would make, and the watermark vs_db_publish_durable would
 * raise, are only recorded, and the worker must not send the answer
 * before vs_db_settle has made them durable: several requests' commits
 * then share one fsync. Without may_defer both calls change nothing.
 */
void vs_db_defer_begin(struct vs_db *db);
void vs_db_defer_end(struct vs_db *db);
/* Whether an answer of this process waits for vs_db_settle. */
bool vs_db_has_pending(const struct vs_db *db);
/* Grows each time a sync or a watermark is deferred: a request whose
 * handling changed it must wait for the settle, others need not. */
unsigned long vs_db_deferrals(const struct vs_db *db);
/* Syncs what was deferred (one fsync, or a share of another writer's)
 * and publishes the watermark; on failure nothing is published and every
 * held-back answer must become an error. */
enum vs_db_status vs_db_settle(struct vs_db *db);
/* Raises the shared durable watermark (writelock.h) to top: now, or at
 * vs_db_settle when this request's syncs are deferred. */
void vs_db_publish_durable(struct vs_db *db, int64_t top);
/* After a failed fsync of data a commit depends on (the WAL, a blob's
 * directory): every process refuses writes from now on (writelock.h). */
void vs_db_storage_failed(struct vs_db *db);
/* At start-up, before any worker runs: forget the shared watermark and
 * an earlier storage failure. */
void vs_db_reset_shared(struct vs_db *db);
void vs_db_rollback(struct vs_db *db);

/* For commit combining (combine.h) only. A savepoint inside the open
 * write transaction, ended by keeping or undoing what was done since. */
enum vs_db_status vs_db_savepoint(struct vs_db *db);
enum vs_db_status vs_db_savepoint_end(struct vs_db *db, bool keep);
/* Commits the write transaction but keeps the writer queue and does not
 * sync: the caller hands out answers, then vs_db_release_queue and
 * vs_db_sync. On failure the transaction is rolled back (queue kept). */
enum vs_db_status vs_db_commit_keep_queue(struct vs_db *db);
void vs_db_release_queue(struct vs_db *db);

/* A cached prepared statement for a static SQL string (keyed by pointer),
 * reset and with bindings cleared. NULL on error (logged). */
sqlite3_stmt *vs_db_stmt(struct vs_db *db, const char *sql);

/* Runs SQL without results (schema, pragmas). */
enum vs_db_status vs_db_exec(struct vs_db *db, const char *sql);

/* Maps a sqlite result code to a vs_db_status, logging errors with ctx. */
enum vs_db_status vs_db_status_of(struct vs_db *db, int rc, const char *ctx);

#endif
