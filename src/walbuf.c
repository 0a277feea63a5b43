/*
 * walbuf.c - see walbuf.h.
 *
 * Two kinds of file go through here. A main database file is a struct
 * wb_db: our fields, then (at REAL_OFFSET) the file of the VFS below;
 * every call goes straight to that file, but the database's shared-memory
 * barrier and its release of the WAL write lock first flush the WAL
 * buffer of the same connection. A WAL file is a struct wb_file laid out
 * the same way. Every other file (journals, temp files) is the VFS
 * below's own file object, opened in place.
 *
 * The invariant that makes the buffer safe: it holds data only while its
 * connection holds the WAL write lock, and is empty before SQLite makes
 * a new WAL index header visible to others. SQLite publishes a commit by
 * writing the wal-index header around an xShmBarrier of the database
 * file, and releases the write lock with an xShmLock unlock of lock 0,
 * after a commit and after a rollback alike: both flush here. Neither
 * call can return an error, so a flush failing there marks the WAL file
 * failed: its next sync (the one that would make the commit durable
 * before it is acknowledged, db.c) and every later write fail.
 *
 * The common path reports errors normally: the page that completes a
 * commit frame (a FRAME_HDR-byte header whose bytes 4..7 hold the
 * database size, in the WAL format of sqlite.org/fileformat2.html) is
 * flushed in its own xWrite, so a full disk fails the COMMIT itself.
 * Reads, syncs, size queries, truncation, file-control calls and the
 * close flush first as well.
 *
 * A WAL whose database was not opened through this VFS (no pairing) is
 * written through, unbuffered.
 */
#include "walbuf.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FRAME_HDR 24
/* One write of the VFS below may not be longer than SQLite ever writes
 * at once: its unix VFS masks a write's length with 0x1ffff. 64 KiB,
 * the largest page, holds 15 frames of 4 KiB: a one-op push's commit. */
#define BUF_CAP ((size_t)64 << 10)
/* Several VFS objects can be stacked over different VFSes (tests). */
#define MAX_VFS 4
#define MAX_(a, b) ((a) > (b) ? (a) : (b))
#define REAL_OFFSET ((MAX_(sizeof(struct wb_file), sizeof(struct wb_db)) + \
		      15u) & ~(size_t)15u)
/* Lock 0 of the wal-index is WAL_WRITE_LOCK (SQLite's wal.c). */
#define WAL_WRITE_LOCK_SLOT 0
/* How much of the WAL is mapped. Mapped pages count in the worker's
 * RSS (page cache, shared, but counted) and stay mapped, so this bounds
 * what the mapping adds to it. SQLite restarts the WAL from its start
 * after a checkpoint at 1000 frames (~4 MiB), so nearly every frame read
 * lies below; frames beyond, while a checkpoint lags, are read below.
 * Dropping the mapped pages instead (madvise) was measured: re-faulting
 * them cost a third of the 100-op push rate on this VM. */
#define WAL_MAP_MAX ((sqlite3_int64)4 << 20)

struct wb_vfs {
	sqlite3_vfs base;
	sqlite3_vfs *below;
	char name[64];
};

struct wb_db;

struct wb_file {
	sqlite3_file base;
	sqlite3_file *real;	/* the VFS below's file, inside our memory */
	struct wb_db *db;	/* its database file; NULL: write through */
	unsigned char *buf;	/* gathered writes; NULL: write through */
	size_t len;
	sqlite3_int64 off;	/* file offset of buf[0] */
	bool commit_pending;	/* buf ends with a commit frame's header */
	bool no_buf;		/* malloc failed once: stay unbuffered */
	bool failed;		/* a flush that could not report failed */
	/* Reads from a read-only shared mapping of the file (see
	 * wal_read): map is NULL when there is none. known is a size the
	 * file is known to have reached since it was last measured. */
	const unsigned char *map;
	int map_fd;
	sqlite3_int64 known;
};

struct wb_db {
	sqlite3_file base;
	sqlite3_file *real;
	const char *zname;	/* the name SQLite opened it by */
	struct wb_file *wal;	/* its open WAL, or NULL */
	struct wb_db *next;	/* the open databases of this process */
};

static struct wb_vfs vfs_tab[MAX_VFS];
/* One list per process; SQLite's core calls the VFS from the thread
 * that uses the connection, and this server has one thread. */
static struct wb_db *open_dbs;
static unsigned long writes_below;
/* A failure no caller could see (vs_walbuf_io_failed). */
static bool io_failed;

bool
vs_walbuf_io_failed(void)
{
	return io_failed;
}

unsigned long
vs_walbuf_writes_below(void)
{
	return writes_below;
}

/* ------------------------------------------------------------------ */
/* WAL file methods                                                   */
/* ------------------------------------------------------------------ */

static void saw_size(struct wb_file *f, sqlite3_int64 end);

static int
below_write(struct wb_file *f, const void *p, int n, sqlite3_int64 off)
{
	int rc;

	writes_below++;
	rc = f->real->pMethods->xWrite(f->real, p, n, off);
	if (rc == SQLITE_OK)
		saw_size(f, off + n);
	return rc;
}

/* Writes out what is gathered. The buffer is emptied either way: after
 * an error its frames belong to a commit that fails with that error. */
static int
flush(struct wb_file *f)
{
	int rc = SQLITE_OK;

	if (f->len > 0)
		rc = below_write(f, f->buf, (int)f->len, f->off);
	f->len = 0;
	return rc;
}

static bool
is_commit_header(const void *p, int n)
{
	const unsigned char *h = p;

	return n == FRAME_HDR && (h[4] | h[5] | h[6] | h[7]) != 0;
}

/* For calls that cannot return an error (see the top comment). */
static void
flush_or_fail(struct wb_file *f)
{
	f->commit_pending = false;
	if (flush(f) != SQLITE_OK) {
		f->failed = true;
		io_failed = true;
	}
}

static int
wal_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
	struct wb_file *f = (struct wb_file *)file;
	bool commit_hdr = is_commit_header(p, n);
	int rc;

	if (f->failed)
		return SQLITE_IOERR_WRITE;
	if (f->db == NULL)	/* unpaired: nothing would flush in time */
		return below_write(f, p, n, off);
	if (f->buf == NULL && !f->no_buf) {
		f->buf = malloc(BUF_CAP);
		f->no_buf = f->buf == NULL;
	}
	if (f->buf == NULL || n < 0 || (size_t)n > BUF_CAP) {
		f->commit_pending = false;
		if ((rc = flush(f)) != SQLITE_OK)
			return rc;
		return below_write(f, p, n, off);
	}
	/* Only a write that continues the gathered run joins it. */
	if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len ||
			   f->len + (size_t)n > BUF_CAP)) {
		if ((rc = flush(f)) != SQLITE_OK) {
			f->commit_pending = false;
			return rc;
		}
	}
	if (f->len == 0)
		f->off = off;
	memcpy(f->buf + f->len, p, (size_t)n);
	f->len += (size_t)n;
	if (commit_hdr) {
		f->commit_pending = true;
		return SQLITE_OK;
	}
	if (f->commit_pending) {
		/* The commit frame is complete: it goes out now, and its
		 * error, if any, is the commit's. */
		f->commit_pending = false;
		return flush(f);
	}
	return SQLITE_OK;
}

/* Tells the mapping that the file is at least end bytes long. */
static void
saw_size(struct wb_file *f, sqlite3_int64 end)
{
	if (end > f->known)
		f->known = end;
}

/*
 * A read of a frame costs a system call, and a writer reads many: each
 * commit of another process empties SQLite's page cache, so a 100-op
 * push reads some fifty pages back, mostly from the WAL, while it holds
 * the write lock. Where the bytes are inside the file, they are copied
 * from a shared mapping of it instead (the page cache, coherent with
 * every write(2) to the file). Why the file is long enough: SQLite only
 * reads frames that the wal-index it read under its locks lists, and
 * those were written before that index was published; it measures the
 * file (wal_file_size refreshes known) before it reads anything else,
 * e.g. when it recovers a wal-index. Beyond known, or with no mapping,
 * the read goes below as before.
 */
static int
wal_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	if (rc != SQLITE_OK)
		return rc;
	if (f->map != NULL && n > 0 && off >= 0 && off + n <= WAL_MAP_MAX) {
		struct stat st;

		if (off + n > f->known && fstat(f->map_fd, &st) == 0)
			f->known = (sqlite3_int64)st.st_size;
		if (off + n <= f->known) {
			memcpy(p, f->map + off, (size_t)n);
			return SQLITE_OK;
		}
	}
	return f->real->pMethods->xRead(f->real, p, n, off);
}

static void
unmap_wal(struct wb_file *f)
{
	if (f->map != NULL)
		(void)munmap((void *)f->map, WAL_MAP_MAX);
	if (f->map_fd >= 0)
		(void)close(f->map_fd);
	f->map = NULL;
	f->map_fd = -1;
}

/* Maps the WAL that SQLite just opened as name, if the same file can be
 * opened again read-only; without it reads simply go below. */
static void
map_wal(struct wb_file *f, const char *name)
{
	struct stat st;
	void *m;

	f->map = NULL;
	f->map_fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (f->map_fd >= 0 && f->map_fd < 3) {
		/* a closed standard descriptor: never reuse its number */
		int hi = fcntl(f->map_fd, F_DUPFD_CLOEXEC, 3);

		(void)close(f->map_fd);
		f->map_fd = hi;
	}
	if (f->map_fd < 0)
		return;
	if (fstat(f->map_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		unmap_wal(f);
		return;
	}
	/* Address space only: pages are touched as frames are read. */
	m = mmap(NULL, WAL_MAP_MAX, PROT_READ, MAP_SHARED, f->map_fd, 0);
	if (m == MAP_FAILED) {
		unmap_wal(f);
		return;
	}
	f->map = m;
	f->known = (sqlite3_int64)st.st_size;
}

static int
wal_close(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f), rc2 = f->real->pMethods->xClose(f->real);

	unmap_wal(f);
	if (f->db != NULL)
		f->db->wal = NULL;
	f->db = NULL;
	free(f->buf);
	f->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	if (rc != SQLITE_OK)
		return rc;
	if (size < f->known)
		f->known = size;
	return f->real->pMethods->xTruncate(f->real, size);
}

static int
wal_sync(sqlite3_file *file, int flags)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	if (f->failed)
		return SQLITE_IOERR_FSYNC;	/* what it should cover is lost */
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xSync(f->real, flags);
	if (rc != SQLITE_OK) {
		/* Linux reports a failed fsync once: a later one of the same
		 * file would succeed without the lost pages. SQLite's own
		 * checkpoint ignores this result, so it is kept here. */
		f->failed = true;
		io_failed = true;
	}
	return rc;
}

static int
wal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	if (rc != SQLITE_OK)
		return rc;
	rc = f->real->pMethods->xFileSize(f->real, size);
	if (rc == SQLITE_OK)
		f->known = *size;	/* another process may have cut it */
	return rc;
}

static int
wal_lock(sqlite3_file *file, int level)
{
	struct wb_file *f = (struct wb_file *)file;

	return f->real->pMethods->xLock(f->real, level);
}

static int
wal_unlock(sqlite3_file *file, int level)
{
	struct wb_file *f = (struct wb_file *)file;

	return f->real->pMethods->xUnlock(f->real, level);
}

static int
wal_check_reserved(sqlite3_file *file, int *out)
{
	struct wb_file *f = (struct wb_file *)file;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int
wal_file_control(sqlite3_file *file, int op, void *arg)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc :
		f->real->pMethods->xFileControl(f->real, op, arg);
}

static int
wal_sector_size(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;

	return f->real->pMethods->xSectorSize(f->real);
}

static int
wal_device_characteristics(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* Version 1: SQLite maps and locks shared memory through the database
 * file, never through the WAL file. */
static const sqlite3_io_methods wal_methods = {
	1,
	wal_close,
	wal_read,
	wal_write,
	wal_truncate,
	wal_sync,
	wal_file_size,
	wal_lock,
	wal_unlock,
	wal_check_reserved,
	wal_file_control,
	wal_sector_size,
	wal_device_characteristics,
	NULL, NULL, NULL, NULL, NULL, NULL,
};

/* ------------------------------------------------------------------ */
/* Database file methods: the VFS below's, plus the two flush points   */
/* ------------------------------------------------------------------ */

#define DR(file) (((struct wb_db *)(file))->real)

static int
db_close(sqlite3_file *file)
{
	struct wb_db *d = (struct wb_db *)file;

	for (struct wb_db **pp = &open_dbs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	if (d->wal != NULL)
		d->wal->db = NULL;	/* SQLite closes the WAL first anyway */
	d->wal = NULL;
	return d->real->pMethods->xClose(d->real);
}

static int
db_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
	return DR(file)->pMethods->xRead(DR(file), p, n, off);
}

static int
db_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
	return DR(file)->pMethods->xWrite(DR(file), p, n, off);
}

static int
db_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	return DR(file)->pMethods->xTruncate(DR(file), size);
}

static int
db_sync(sqlite3_file *file, int flags)
{
	int rc = DR(file)->pMethods->xSync(DR(file), flags);

	/* A checkpoint's sync of the database: its pages may be lost while
	 * the WAL that held them is about to be reused. */
	if (rc != SQLITE_OK)
		io_failed = true;
	return rc;
}

static int
db_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	return DR(file)->pMethods->xFileSize(DR(file), size);
}

static int
db_lock(sqlite3_file *file, int level)
{
	return DR(file)->pMethods->xLock(DR(file), level);
}

static int
db_unlock(sqlite3_file *file, int level)
{
	return DR(file)->pMethods->xUnlock(DR(file), level);
}

static int
db_check_reserved(sqlite3_file *file, int *out)
{
	return DR(file)->pMethods->xCheckReservedLock(DR(file), out);
}

static int
db_file_control(sqlite3_file *file, int op, void *arg)
{
	return DR(file)->pMethods->xFileControl(DR(file), op, arg);
}

static int
db_sector_size(sqlite3_file *file)
{
	return DR(file)->pMethods->xSectorSize(DR(file));
}

static int
db_device_characteristics(sqlite3_file *file)
{
	return DR(file)->pMethods->xDeviceCharacteristics(DR(file));
}

static int
db_shm_map(sqlite3_file *file, int pg, int sz, int extend,
	   void volatile **pp)
{
	return DR(file)->pMethods->xShmMap(DR(file), pg, sz, extend, pp);
}

/* Releasing the WAL write lock (after a commit or a rollback): nothing
 * of this connection may stay buffered once another may write. */
static int
db_shm_lock(sqlite3_file *file, int ofst, int n, int flags)
{
	struct wb_db *d = (struct wb_db *)file;

	if (d->wal != NULL && (flags & SQLITE_SHM_UNLOCK) != 0 &&
	    (flags & SQLITE_SHM_EXCLUSIVE) != 0 &&
	    ofst <= WAL_WRITE_LOCK_SLOT && ofst + n > WAL_WRITE_LOCK_SLOT)
		flush_or_fail(d->wal);
	return d->real->pMethods->xShmLock(d->real, ofst, n, flags);
}

/* SQLite makes a new wal-index header valid after this barrier: every
 * frame it may name must be in the file by then. */
static void
db_shm_barrier(sqlite3_file *file)
{
	struct wb_db *d = (struct wb_db *)file;

	if (d->wal != NULL)
		flush_or_fail(d->wal);
	d->real->pMethods->xShmBarrier(d->real);
}

static int
db_shm_unmap(sqlite3_file *file, int del)
{
	return DR(file)->pMethods->xShmUnmap(DR(file), del);
}

static int
db_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **pp)
{
	return DR(file)->pMethods->xFetch(DR(file), off, n, pp);
}

static int
db_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	return DR(file)->pMethods->xUnfetch(DR(file), off, p);
}

/* Version 3 (shared memory and mapped pages) over a version-3 file,
 * version 2 (shared memory only) over a version-2 one. */
#define DB_METHODS(version)						\
	{ version, db_close, db_read, db_write, db_truncate, db_sync,	\
	  db_file_size, db_lock, db_unlock, db_check_reserved,		\
	  db_file_control, db_sector_size, db_device_characteristics,	\
	  db_shm_map, db_shm_lock, db_shm_barrier, db_shm_unmap,		\
	  version >= 3 ? db_fetch : NULL, version >= 3 ? db_unfetch : NULL }
static const sqlite3_io_methods db_methods_v2 = DB_METHODS(2);
static const sqlite3_io_methods db_methods_v3 = DB_METHODS(3);

/* ------------------------------------------------------------------ */
/* VFS methods: open wraps databases and WALs, the rest go below       */
/* ------------------------------------------------------------------ */

static sqlite3_vfs *
below(sqlite3_vfs *v)
{
	return ((struct wb_vfs *)v)->below;
}

/* A main database: wrapped when the file below has shared memory
 * (version 2 or 3), otherwise opened in place (it cannot have a WAL). */
static int
open_db(sqlite3_vfs *b, const char *name, sqlite3_file *file, int flags,
	int *out_flags)
{
	struct wb_db *d = (struct wb_db *)file;
	int rc;

	memset(d, 0, sizeof(*d));
	d->real = (sqlite3_file *)((char *)file + REAL_OFFSET);
	rc = b->xOpen(b, name, d->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		if (d->real->pMethods != NULL)
			(void)d->real->pMethods->xClose(d->real);
		file->pMethods = NULL;
		return rc;
	}
	if (d->real->pMethods->iVersion < 2) {
		/* no shared memory, so no WAL either */
		(void)d->real->pMethods->xClose(d->real);
		return b->xOpen(b, name, file, flags, out_flags);
	}
	d->zname = name;
	d->next = open_dbs;
	open_dbs = d;
	file->pMethods = d->real->pMethods->iVersion >= 3 ? &db_methods_v3 :
		&db_methods_v2;
	return SQLITE_OK;
}

/* The database file a WAL belongs to: SQLite derives the WAL's name from
 * the database's, in the same allocation, and hands out the database's
 * own pointer. */
static struct wb_db *
db_of_wal(const char *wal_name)
{
	const char *dbname = sqlite3_filename_database(wal_name);

	for (struct wb_db *d = open_dbs; d != NULL; d = d->next)
		if (d->zname == dbname && d->wal == NULL)
			return d;
	return NULL;
}

static int
wb_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags,
	int *out_flags)
{
	struct wb_file *f = (struct wb_file *)file;
	sqlite3_vfs *b = below(v);
	int rc;

	if ((flags & SQLITE_OPEN_MAIN_DB) != 0 && name != NULL)
		return open_db(b, name, file, flags, out_flags);
	if ((flags & SQLITE_OPEN_WAL) == 0 || name == NULL)
		return b->xOpen(b, name, file, flags, out_flags);
	memset(f, 0, sizeof(*f));
	f->map_fd = -1;
	f->real = (sqlite3_file *)((char *)file + REAL_OFFSET);
	rc = b->xOpen(b, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		/* SQLite only closes what it was handed; the file below
		 * is ours to close if it was left half open. */
		if (f->real->pMethods != NULL)
			(void)f->real->pMethods->xClose(f->real);
		file->pMethods = NULL;
		return rc;
	}
	f->db = db_of_wal(name);
	if (f->db != NULL)
		f->db->wal = f;
	map_wal(f, name);
	file->pMethods = &wal_methods;
	return SQLITE_OK;
}

static int
wb_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	return below(v)->xDelete(below(v), name, sync_dir);
}

static int
wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return below(v)->xAccess(below(v), name, flags, out);
}

static int
wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return below(v)->xFullPathname(below(v), name, n, out);
}

static void *
wb_dlopen(sqlite3_vfs *v, const char *name)
{
	return below(v)->xDlOpen(below(v), name);
}

static void
wb_dlerror(sqlite3_vfs *v, int n, char *msg)
{
	below(v)->xDlError(below(v), n, msg);
}

static void (*wb_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
	return below(v)->xDlSym(below(v), h, sym);
}

static void
wb_dlclose(sqlite3_vfs *v, void *h)
{
	below(v)->xDlClose(below(v), h);
}

static int
wb_randomness(sqlite3_vfs *v, int n, char *out)
{
	return below(v)->xRandomness(below(v), n, out);
}

static int
wb_sleep(sqlite3_vfs *v, int us)
{
	return below(v)->xSleep(below(v), us);
}

static int
wb_current_time(sqlite3_vfs *v, double *out)
{
	return below(v)->xCurrentTime(below(v), out);
}

static int
wb_last_error(sqlite3_vfs *v, int n, char *out)
{
	return below(v)->xGetLastError(below(v), n, out);
}

static int
wb_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	return below(v)->xCurrentTimeInt64(below(v), out);
}

static int
wb_set_syscall(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr p)
{
	return below(v)->xSetSystemCall(below(v), name, p);
}

static sqlite3_syscall_ptr
wb_get_syscall(sqlite3_vfs *v, const char *name)
{
	return below(v)->xGetSystemCall(below(v), name);
}

static const char *
wb_next_syscall(sqlite3_vfs *v, const char *name)
{
	return below(v)->xNextSystemCall(below(v), name);
}

/* ------------------------------------------------------------------ */
/* Registration                                                       */
/* ------------------------------------------------------------------ */

static void
fill_vfs(struct wb_vfs *w, sqlite3_vfs *b, const char *name)
{
	sqlite3_vfs *v = &w->base;

	memset(w, 0, sizeof(*w));
	w->below = b;
	strncpy(w->name, name, sizeof(w->name) - 1);
	/* No newer version than the VFS below offers, none newer than ours. */
	v->iVersion = b->iVersion < 3 ? b->iVersion : 3;
	v->szOsFile = (int)REAL_OFFSET + b->szOsFile;
	v->mxPathname = b->mxPathname;
	v->zName = w->name;
	v->xOpen = wb_open;
	v->xDelete = wb_delete;
	v->xAccess = wb_access;
	v->xFullPathname = wb_full_pathname;
	v->xDlOpen = b->xDlOpen ? wb_dlopen : NULL;
	v->xDlError = b->xDlError ? wb_dlerror : NULL;
	v->xDlSym = b->xDlSym ? wb_dlsym : NULL;
	v->xDlClose = b->xDlClose ? wb_dlclose : NULL;
	v->xRandomness = wb_randomness;
	v->xSleep = wb_sleep;
	v->xCurrentTime = wb_current_time;
	v->xGetLastError = wb_last_error;
	if (v->iVersion >= 2)
		v->xCurrentTimeInt64 = b->xCurrentTimeInt64 ?
			wb_current_time64 : NULL;
	if (v->iVersion >= 3) {
		v->xSetSystemCall = b->xSetSystemCall ? wb_set_syscall : NULL;
		v->xGetSystemCall = b->xGetSystemCall ? wb_get_syscall : NULL;
		v->xNextSystemCall = b->xNextSystemCall ? wb_next_syscall :
			NULL;
	}
}

static int
register_as(const char *name, const char *below_name)
{
	sqlite3_vfs *b = sqlite3_vfs_find(below_name);
	struct wb_vfs *slot = NULL;

	if (b == NULL)
		return SQLITE_ERROR;
	for (int i = 0; i < MAX_VFS; i++) {
		if (vfs_tab[i].below == NULL) {
			if (slot == NULL)
				slot = &vfs_tab[i];
		} else if (strcmp(vfs_tab[i].name, name) == 0) {
			/* Already there: fine if it sits on the same VFS. */
			return vfs_tab[i].below == b ? SQLITE_OK : SQLITE_MISUSE;
		}
	}
	if (slot == NULL || strlen(name) >= sizeof(slot->name))
		return SQLITE_FULL;
	fill_vfs(slot, b, name);
	return sqlite3_vfs_register(&slot->base, 0);
}

int
vs_walbuf_register(const char *below_name)
{
	char name[64];

	if (below_name == NULL)
		return register_as(VS_WALBUF_VFS, NULL);
	/* Over another VFS (tests): a name of its own. */
	if (strlen(below_name) > sizeof(name) - sizeof(VS_WALBUF_VFS) - 1)
		return SQLITE_MISUSE;
	strcpy(name, VS_WALBUF_VFS "-");
	strcat(name, below_name);
	return register_as(name, below_name);
}
