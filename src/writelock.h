/*
 * writelock.h - a queue in front of SQLite's write lock, shared by every
 * process that opens the same server.db.
 *
 * SQLite's lock is a non-blocking file lock: a waiting writer can only
 * sleep and retry, so after a commit the lock often sits idle while the
 * next writer is still asleep, and who wins is luck. Writers of this
 * server first take a process-shared, robust pthread mutex in a small
 * POSIX shared-memory object named after the database file's device and
 * inode: the kernel wakes one waiter the moment the holder unlocks, a
 * holder that dies releases it (EOWNERDEAD), and the wait is bounded.
 *
 * The same object carries the durable watermark of the operation log:
 * the highest server sequence known to be on stable storage. Writers
 * commit without an fsync under the lock and sync the WAL after letting
 * go of it (db.h), so several commits share one fsync; until that sync
 * has returned, a committed op must stay invisible to pull, or a device
 * could advance its cursor past an op that a power cut takes back.
 *
 * Owns: the shared object, the mutex and the watermark. Must never: replace SQLite's
 * own locking (BEGIN IMMEDIATE still decides; other programs writing the
 * database do not know this mutex and are handled by the busy handler).
 */
#ifndef VS_WRITELOCK_H
#define VS_WRITELOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vs_wlock_shared;

struct vs_wlock {
	struct vs_wlock_shared *shm;   /* NULL: not available, never taken */
	bool held;
};

/* Opens (creating if needed) the queue for the database at db_path.
 * Failure is logged and leaves w unusable but harmless. */
void vs_wlock_open(struct vs_wlock *w, const char *db_path);
void vs_wlock_close(struct vs_wlock *w);
/* Waits at most timeout_ms; false when it did not get the mutex (the
 * caller goes on and lets SQLite's busy handling decide). */
bool vs_wlock_acquire(struct vs_wlock *w, unsigned timeout_ms);
void vs_wlock_release(struct vs_wlock *w);

/* The durable watermark; INT64_MAX when there is no shared object (then
 * every commit is synced before the lock is released: all is durable). */
int64_t vs_wlock_durable_seq(const struct vs_wlock *w);
/* Raises the watermark to seq (never lowers it). Only for a sequence
 * whose commit, and every commit before it, has been synced. */
void vs_wlock_raise_durable_seq(struct vs_wlock *w, int64_t seq);

/*
 * Shared WAL syncs. A writer takes a generation with vs_wlock_note_commit
 * once its COMMIT has returned (before it lets go of the queue), then
 * calls vs_wlock_sync with it: when a sync that began after that commit
 * has ended, or is running, the writer relies on it (waiting for the
 * running one) instead of issuing its own fsync; otherwise fn syncs and
 * covers every commit numbered so far. Unlike a queue of syncs, nobody
 * ever waits for a sync that began before its commit: one that would
 * not cover it. gen 0 always syncs (and still covers what it can).
 * vs_wlock_commit_gen reads the newest generation: a writer whose push
 * another process committed (combine.h) uses it after seeing the answer.
 * fn returns false on failure, which marks the storage failed for all.
 *
 * Why a generation read from the counter is safe for another process's
 * commit: it was numbered after its own COMMIT returned, and any commit
 * it depends on (one whose rows its transaction saw) returned before
 * that; so a sync whose claim reaches the number also began after both.
 * A writer that only saw rows (an idempotent replay, no commit of its
 * own after them) must sync with gen 0: the commit it saw may not be
 * numbered yet.
 */
typedef bool (*vs_wlock_sync_fn)(void *arg);
uint64_t vs_wlock_note_commit(struct vs_wlock *w);
uint64_t vs_wlock_commit_gen(const struct vs_wlock *w);
/* The highest generation an fsync that ended well covered (tests). */
uint64_t vs_wlock_synced_gen(const struct vs_wlock *w);
bool vs_wlock_sync(struct vs_wlock *w, uint64_t gen, vs_wlock_sync_fn fn,
		   void *arg);
/* Removes the shared object of the database at db_path. Only when no
 * process has the database open (tests, after their last close): a
 * process still mapping the old object would no longer share the queue
 * or the watermark with the ones that come after. */
bool vs_wlock_unlink(const char *db_path);

/*
 * A failed fsync (of the WAL or of a blob directory) is sticky for every
 * process of the server: Linux reports such an error once and then marks
 * the unwritten pages clean, so a later fsync that succeeds proves
 * nothing about them. From then on no write is acknowledged and the
 * watermark stays where it is, until vs_wlock_reset at the next start
 * (the stack's launcher, or `migrate` before spawn-fcgi's workers).
 */
bool vs_wlock_storage_failed(const struct vs_wlock *w);
void vs_wlock_mark_storage_failed(struct vs_wlock *w);
/* Forgets the watermark and the failure: only while no worker runs.
 * Workers publish the watermark again from the database (sync.c). */
void vs_wlock_reset(struct vs_wlock *w);

/* The name of a shared object of kind ("wlock4", "combine2"...) for the
 * database at db_path: one per database file (device, inode) and user,
 * so two data directories never share one and a copied file does not
 * inherit the original's. */
bool vs_shm_name(const char *db_path, const char *kind, char *name,
		 size_t size);

/* Maps the shared object name (created 0600 and sized if new). init
 * runs under an exclusive flock on the object, so exactly one process
 * initialises it; it returns false when the object cannot be used. */
typedef bool (*vs_shm_init_fn)(void *p);
void *vs_shm_map(const char *name, size_t size, vs_shm_init_fn init);

#endif
