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
 * Owns: the shared object and the mutex. Must never: replace SQLite's
 * own locking (BEGIN IMMEDIATE still decides; other programs writing the
 * database do not know this mutex and are handled by the busy handler).
 */
#ifndef VS_WRITELOCK_H
#define VS_WRITELOCK_H

#include <stdbool.h>

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

#endif
