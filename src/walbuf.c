/*
 * walbuf.c - see walbuf.h.
 *
 * A WAL file opened through this VFS is a struct wb_file: our fields,
 * then (at REAL_OFFSET) the file of the VFS below. Every other file is
 * the VFS below's own file object, opened in place, so its calls never
 * pass through here. The buffer is taken on the first write of a WAL
 * file; without memory the file simply writes through.
 *
 * A frame header is FRAME_HDR bytes whose bytes 4..7 hold the database
 * size in pages for a commit frame and zero otherwise (the WAL format of
 * sqlite.org/fileformat2.html); the page that follows a commit header
 * ends the commit and flushes the buffer.
 */
#include "walbuf.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_HDR 24
/* One write of the VFS below may not be longer than SQLite ever writes
 * at once: its unix VFS masks a write's length with 0x1ffff. 64 KiB,
 * the largest page, holds 15 frames of 4 KiB: a one-op push's commit. */
#define BUF_CAP ((size_t)64 << 10)
/* Several VFS objects can be stacked over different VFSes (tests). */
#define MAX_VFS 4
#define REAL_OFFSET ((sizeof(struct wb_file) + 15u) & ~(size_t)15u)

struct wb_vfs {
	sqlite3_vfs base;
	sqlite3_vfs *below;
	char name[64];
};

struct wb_file {
	sqlite3_file base;
	sqlite3_file *real;	/* the VFS below's file, inside our memory */
	unsigned char *buf;	/* gathered writes; NULL: write through */
	size_t len;
	sqlite3_int64 off;	/* file offset of buf[0] */
	bool commit_pending;	/* buf ends with a commit frame's header */
	bool no_buf;		/* malloc failed once: stay unbuffered */
};

static struct wb_vfs vfs_tab[MAX_VFS];
static unsigned long writes_below;

unsigned long
vs_walbuf_writes_below(void)
{
	return writes_below;
}

/* ------------------------------------------------------------------ */
/* WAL file methods                                                   */
/* ------------------------------------------------------------------ */

static int
below_write(struct wb_file *f, const void *p, int n, sqlite3_int64 off)
{
	writes_below++;
	return f->real->pMethods->xWrite(f->real, p, n, off);
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

static int
wal_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
	struct wb_file *f = (struct wb_file *)file;
	bool commit_hdr = is_commit_header(p, n);
	int rc;

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

static int
wal_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xRead(f->real, p, n, off);
}

static int
wal_close(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f), rc2 = f->real->pMethods->xClose(f->real);

	free(f->buf);
	f->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc :
		f->real->pMethods->xTruncate(f->real, size);
}

static int
wal_sync(sqlite3_file *file, int flags)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int
wal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = flush(f);

	return rc != SQLITE_OK ? rc :
		f->real->pMethods->xFileSize(f->real, size);
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
/* VFS methods: open wraps WAL files, the rest go to the VFS below     */
/* ------------------------------------------------------------------ */

static sqlite3_vfs *
below(sqlite3_vfs *v)
{
	return ((struct wb_vfs *)v)->below;
}

static int
wb_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags,
	int *out_flags)
{
	struct wb_file *f = (struct wb_file *)file;
	sqlite3_vfs *b = below(v);
	int rc;

	if ((flags & SQLITE_OPEN_WAL) == 0)
		return b->xOpen(b, name, file, flags, out_flags);
	memset(f, 0, sizeof(*f));
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
