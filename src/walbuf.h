/*
 * walbuf.h - a SQLite VFS that gathers the writes of a WAL commit into
 * one system call.
 *
 * SQLite appends a commit to the WAL as two writes per page (a 24-byte
 * frame header, then the page), so a one-op push costs some twenty
 * pwrite calls, all made while the database's write lock is held; on a
 * virtual machine each is a trap into the hypervisor's kernel. This VFS
 * sits on top of another one (the default unix VFS in production) and,
 * for WAL files only, keeps consecutive frame writes in a buffer that
 * goes to the file in one write when the commit frame is complete, or
 * before anything that could observe the file: a read, a sync, a size
 * query, a truncation, a file-control call or the close.
 *
 * Why that is safe: other connections find frames only through the
 * wal-index, which SQLite updates after the commit frame's xWrite has
 * returned, and the commit frame is where the buffer is flushed; an
 * error of that flush is the commit's error. Frames that never reach a
 * commit are garbage to SQLite whether they were written or not.
 *
 * It also serves reads of WAL frames from a read-only shared mapping of
 * the file instead of one pread each (walbuf.c says why that is safe).
 * The one cost: an I/O error while the kernel pages a mapped frame in
 * is SIGBUS, not SQLITE_IOERR; the frames read are nearly always the
 * ones just written and still in the page cache, and a worker that dies
 * is replaced.
 *
 * Owns: the VFS object named VS_WALBUF_VFS, its WAL buffers and their
 * mappings. Must never: hold back a commit frame, reorder writes of one
 * file, read a mapped byte past the file's known end, or change anything
 * for files other than WAL files.
 */
#ifndef VS_WALBUF_H
#define VS_WALBUF_H

#include <stdbool.h>

#define VS_WALBUF_VFS "verstak-walbuf"

/*
 * Registers the VFS (not as the default) on top of the VFS named below
 * (NULL: SQLite's default). Idempotent for the same below; returns an
 * SQLite result code.
 */
int vs_walbuf_register(const char *below);

/* True once a WAL flush that could not report its error, or a sync
 * whose result SQLite may drop (its automatic checkpoint's), failed in
 * this process: db.c then treats the storage as failed. */
bool vs_walbuf_io_failed(void);

/* How many WAL writes reached the VFS below, for tests and statistics. */
unsigned long vs_walbuf_writes_below(void);

#endif
