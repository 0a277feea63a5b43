/*
 * blobs.c - see blobs.h.
 *
 * Upload, in one pass over the body: the multipart parser (multipart.c)
 * hands the file part's content here in place; each span is counted
 * against max_blob_bytes, hashed (SHA-256) and written to
 * blobs/.upload-<random>. Only after the body ended cleanly is the temp
 * file fsynced and closed; then ONE write transaction checks the scope's
 * reference, the quotas, puts the file in place (rename) and inserts the
 * rows, so concurrent uploads of the same content cannot both charge
 * quota or race the file into place (SYNC.md 7). The rename's directory
 * is fsynced after the commit, outside the write lock, and before the
 * answer: like the WAL's own fsync (db.c), nothing is acknowledged
 * before it is durable, but other writers do not wait for the disk.
 * Every way out removes the temp file if it is still there.
 *
 * Why the temp file is not nginx's own request-body file: nginx sends
 * the body over FastCGI, not its path, so the bytes must pass through
 * the worker anyway, which is where the hash is computed.
 *
 * Stalls (D25): nginx streams an upload's body to a worker of the
 * upload pool as the client sends it (nginxconf.c), and the worker's
 * reads carry a progress deadline (worker.c: 60 s without a byte). A
 * read that fails, by that deadline or because nginx gave up, ends the
 * upload with 408 request_timeout, never 500, and the temp file is
 * removed. A slow but moving upload never hits the deadline.
 *
 * Download: the worker only checks; nginx sends the file from the
 * internal location /_verstak_blobs/ (Content-Length, Last-Modified,
 * Range, conditional requests, sendfile), so a download costs the
 * worker one short request whatever the blob's size.
 */
#include "blobs.h"
#include "handler.h"
#include "log.h"
#include "multipart.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define ROUTE_PREFIX "/api/v1/blobs/"
#define ACCEL_PREFIX "/_verstak_blobs/"
/* Body read size. One request at a time per worker, so one static
 * buffer; its size bounds the worker's memory for any upload. */
#define READ_CHUNK (256u << 10)
/* The whole body may exceed the blob by this much (API.md 3.8 step 1). */
#define BODY_SLACK (1 << 20)
/* Temp-file bytes between two write-behind requests (start_writeback). */
#define WRITEBACK_STEP (256 << 10)
/* last_accessed is rewritten at most this often per reference. */
#define ACCESS_REFRESH_SECONDS 60

static char read_buf[READ_CHUNK];

/* ------------------------------------------------------------------ */
/* SQL                                                                */
/* ------------------------------------------------------------------ */

static const char SQL_REF[] =
	"SELECT size, last_accessed FROM server_blob_refs"
	" WHERE user_id = ?1 AND vault_id = ?2 AND sha256 = ?3";
/* What our uploads added, in the user's scopes and in this one: a few
 * rows, one per vault of the user (see the note at quota_ok). */
static const char SQL_ADDED[] =
	"SELECT COALESCE(SUM(bytes), 0),"
	" COALESCE(SUM(CASE WHEN vault_id = ?2 THEN bytes ELSE 0 END), 0)"
	" FROM vs_blob_ref_added WHERE user_id = ?1";
static const char SQL_ADDED_GROW[] =
	"INSERT INTO vs_blob_ref_added (user_id, vault_id, bytes)"
	" VALUES (?1, ?2, ?3) ON CONFLICT (user_id, vault_id)"
	" DO UPDATE SET bytes = bytes + excluded.bytes";
/* Both quota sums in one pass over the user's references (the scope is
 * a subset). O(references): see the note at quota_ok. */
static const char SQL_USAGE[] =
	"SELECT COALESCE(SUM(size), 0),"
	" COALESCE(SUM(CASE WHEN vault_id = ?2 THEN size ELSE 0 END), 0)"
	" FROM server_blob_refs WHERE user_id = ?1";
static const char SQL_BLOB_ADD[] =
	"INSERT OR IGNORE INTO server_blobs (sha256, size, created_at)"
	" VALUES (?1, ?2, ?3)";
static const char SQL_REF_ADD[] =
	"INSERT INTO server_blob_refs (user_id, vault_id, sha256, size,"
	" created_at, last_accessed) VALUES (?1, ?2, ?3, ?4, ?5, ?5)";
static const char SQL_REF_TOUCH[] =
	"UPDATE server_blob_refs SET last_accessed = ?4"
	" WHERE user_id = ?1 AND vault_id = ?2 AND sha256 = ?3";
static const char SQL_IN_USE[] =
	"SELECT EXISTS (SELECT 1 FROM server_blobs WHERE sha256 = ?1)"
	" OR EXISTS (SELECT 1 FROM server_blob_refs WHERE sha256 = ?1)";

/* ------------------------------------------------------------------ */
/* Paths and small helpers                                            */
/* ------------------------------------------------------------------ */

bool
vs_blob_hash_ok(const char *s)
{
	return vs_is_lower_hex(s, 64);
}

char *
vs_blob_path(const char *blobs_dir, const char *sha)
{
	size_t dl = strlen(blobs_dir), n = dl + 1 + 3 + 3 + 64 + 1;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s/%.2s/%.2s/%s", blobs_dir, sha, sha + 2, sha);
	return p;
}

/* Errors that mean "the disk cannot take it" rather than a bug. */
static bool
storage_errno(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EIO || e == EFBIG ||
	       e == EROFS;
}

static void
answer_io(struct vs_ctx *c, int e, const char *what)
{
	vs_log_error("blobs: %s: %s", what, strerror(e));
	if (storage_errno(e))
		vs_res_error(c->res, 507, "insufficient_storage",
			     "insufficient storage");
	else
		vs_res_internal(c->res);
}

static void
answer_multipart(struct vs_ctx *c, const char *msg)
{
	vs_res_error(c->res, 400, "invalid_multipart", msg);
}

static bool
bind_scope(sqlite3_stmt *st, const char *user, const char *vault,
	   const char *sha)
{
	return sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC) == SQLITE_OK &&
	       sqlite3_bind_text(st, 2, vault, -1, SQLITE_STATIC) == SQLITE_OK &&
	       (sha == NULL ||
		sqlite3_bind_text(st, 3, sha, -1, SQLITE_STATIC) == SQLITE_OK);
}

/* Runs a statement that returns no row. */
static enum vs_db_status
step_done(struct vs_db *db, sqlite3_stmt *st, const char *ctx)
{
	int rc = sqlite3_step(st);
	enum vs_db_status s = rc == SQLITE_DONE ? VS_DB_OK :
			      vs_db_status_of(db, rc == SQLITE_ROW ? SQLITE_ERROR : rc, ctx);

	sqlite3_reset(st);
	return s;
}

/* The scope's reference: *found, its size and last_accessed (copied
 * into la, "" when NULL). */
static enum vs_db_status
scope_ref(struct vs_db *db, const char *user, const char *vault,
	  const char *sha, bool *found, int64_t *size, char la[VS_TS_LEN + 16])
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_REF);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*found = false;
	la[0] = '\0';
	if (st == NULL)
		return VS_DB_ERROR;
	if (!bind_scope(st, user, vault, sha))
		return vs_db_status_of(db, SQLITE_ERROR, "blob ref bind");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 1);
		*found = true;
		*size = sqlite3_column_int64(st, 0);
		if (t != NULL)
			snprintf(la, VS_TS_LEN + 16, "%s", (const char *)t);
	} else if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "blob ref");
	}
	sqlite3_reset(st);
	return s;
}

enum vs_db_status
vs_blob_in_use(struct vs_db *db, const char *sha, bool *in_use)
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_IN_USE);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*in_use = true;	/* when in doubt, keep the file */
	if (st == NULL)
		return VS_DB_ERROR;
	if (sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "blob in use bind");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*in_use = sqlite3_column_int(st, 0) != 0;
	else
		s = vs_db_status_of(db, rc == SQLITE_DONE ? SQLITE_ERROR : rc,
				    "blob in use");
	sqlite3_reset(st);
	return s;
}

/* ------------------------------------------------------------------ */
/* Upload: receiving the body                                         */
/* ------------------------------------------------------------------ */

/* How receiving ended; the callbacks set the ones they cause. */
enum outcome {
	OUT_OK = 0,
	OUT_NO_PARTS,      /* 400 "file field is required" */
	OUT_MALFORMED,     /* 400 "invalid multipart request" */
	OUT_NOT_FILE,      /* 400 "exactly one file field is required" */
	OUT_SECOND_PART,   /* 400 "exactly one file field is required" */
	OUT_TOO_LARGE,     /* 413 blob_too_large */
	OUT_TIMEOUT,       /* 408: the body stopped coming */
	OUT_IO,            /* 507 or 500 by errno */
	OUT_INTERNAL,      /* 500 */
};

struct upload {
	struct vs_ctx *c;
	int64_t max_bytes;
	int64_t size;
	int64_t flushed;       /* bytes handed to writeback so far */
	int fd;                /* the temp file while open, else -1 */
	char *tmp;             /* its path; NULL once gone */
	EVP_MD_CTX *md;
	enum outcome stop;     /* why a callback stopped the parser */
	int err;               /* errno for OUT_IO */
	const char *err_what;
};

static int
io_stop(struct upload *u, int e, const char *what)
{
	u->stop = OUT_IO;
	u->err = e;
	u->err_what = what;
	return 1;
}

/* Creates blobs/.upload-<random> (O_EXCL, 0640) and starts the hash. */
static int
temp_open(struct upload *u)
{
	const char *dir = u->c->app->blobs_dir;
	char rnd[33];
	size_t n = strlen(dir) + sizeof("/" VS_BLOB_TEMP_PREFIX) + sizeof(rnd);

	u->md = EVP_MD_CTX_new();
	u->tmp = malloc(n);
	if (u->md == NULL || u->tmp == NULL || !vs_random_hex(16, rnd) ||
	    EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
		free(u->tmp);
		u->tmp = NULL;
		u->stop = OUT_INTERNAL;
		return 1;
	}
	snprintf(u->tmp, n, "%s/" VS_BLOB_TEMP_PREFIX "%s", dir, rnd);
	u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (u->fd < 0) {
		int e = errno;
		free(u->tmp);
		u->tmp = NULL;
		return io_stop(u, e, "creating a temp upload");
	}
	/* The contract's mode whatever the umask (DATA.md 1). */
	if (fchmod(u->fd, 0640) != 0)
		return io_stop(u, errno, "chmod of a temp upload");
	return 0;
}

static int
on_part_begin(void *ud, const struct vs_mp_part *part)
{
	struct upload *u = ud;

	if (u->fd >= 0) {
		u->stop = OUT_SECOND_PART;
		return 1;
	}
	if (strcmp(part->name, "file") != 0 || part->filename[0] == '\0') {
		u->stop = OUT_NOT_FILE;
		return 1;
	}
	return temp_open(u);
}

/*
 * Write-behind: every WRITEBACK_STEP bytes, ask the kernel to start
 * writing what arrived so far (no wait). The disk then works while the
 * rest of the body streams in, and seal()'s fsync only waits for the
 * tail. Advisory: a failure here is not an error, fsync decides.
 */
static void
start_writeback(struct upload *u)
{
	if (u->size - u->flushed < WRITEBACK_STEP)
		return;
	(void)sync_file_range(u->fd, u->flushed, u->size - u->flushed,
			      SYNC_FILE_RANGE_WRITE);
	u->flushed = u->size;
}

static int
on_part_data(void *ud, const char *data, size_t n)
{
	struct upload *u = ud;

	if ((int64_t)n > u->max_bytes - u->size) {
		u->stop = OUT_TOO_LARGE;
		return 1;
	}
	u->size += (int64_t)n;
	if (EVP_DigestUpdate(u->md, data, n) != 1) {
		u->stop = OUT_INTERNAL;
		return 1;
	}
	if (!vs_write_all(u->fd, data, n))
		return io_stop(u, errno, "writing a temp upload");
	start_writeback(u);
	return 0;
}

static int
on_part_end(void *ud, bool last)
{
	struct upload *u = ud;

	if (last)
		return 0;
	u->stop = OUT_SECOND_PART;
	return 1;
}

static const struct vs_mp_callbacks upload_cb = {
	on_part_begin, on_part_data, on_part_end,
};

/* Feeds the body to the parser until it ends, an error, or the cap. */
static enum outcome
receive(struct upload *u, struct vs_mp *mp)
{
	int64_t cap = u->max_bytes + BODY_SLACK, total = 0;

	for (;;) {
		ssize_t n = vs_request_read_some(u->c->req, read_buf,
						 sizeof(read_buf));
		enum vs_mp_rc rc;

		if (n < 0)
			return OUT_TIMEOUT;
		if (n == 0) {
			rc = vs_mp_finish(mp);
		} else {
			total += n;
			if (total > cap)
				return OUT_TOO_LARGE;
			rc = vs_mp_feed(mp, read_buf, (size_t)n);
		}
		switch (rc) {
		case VS_MP_OK:
			if (n == 0)
				return u->fd >= 0 ? OUT_OK : OUT_MALFORMED;
			break;
		case VS_MP_NO_PARTS:
			return OUT_NO_PARTS;
		case VS_MP_MALFORMED:
			return OUT_MALFORMED;
		case VS_MP_ABORTED:
			return u->stop;
		}
	}
}

/* The content is complete: digest, fsync, close. */
static enum outcome
seal(struct upload *u, char sha[65])
{
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	int fd = u->fd;

	if (EVP_DigestFinal_ex(u->md, dg, &len) != 1 || len != 32)
		return OUT_INTERNAL;
	vs_hex(dg, 32, sha);
	if (fsync(fd) != 0) {
		io_stop(u, errno, "fsync of a temp upload");
		return OUT_IO;
	}
	u->fd = -1;
	if (close(fd) != 0) {
		io_stop(u, errno, "closing a temp upload");
		return OUT_IO;
	}
	return OUT_OK;
}

static void
answer_outcome(struct vs_ctx *c, const struct upload *u, enum outcome o)
{
	switch (o) {
	case OUT_OK:
		break;
	case OUT_NO_PARTS:
		answer_multipart(c, "file field is required");
		break;
	case OUT_MALFORMED:
		answer_multipart(c, "invalid multipart request");
		break;
	case OUT_NOT_FILE:
	case OUT_SECOND_PART:
		answer_multipart(c, "exactly one file field is required");
		break;
	case OUT_TOO_LARGE:
		vs_res_error(c->res, 413, "blob_too_large", "blob is too large");
		break;
	case OUT_TIMEOUT:
		vs_log_warn("blobs: upload body ended early (client stalled or gone)");
		vs_res_error(c->res, 408, "request_timeout", "request timed out");
		break;
	case OUT_IO:
		answer_io(c, u->err, u->err_what);
		break;
	case OUT_INTERNAL:
		vs_log_error("blobs: upload failed (out of memory or crypto)");
		vs_res_internal(c->res);
		break;
	}
}

/* Removes whatever is left of the temp file. */
static void
upload_cleanup(struct upload *u)
{
	if (u->fd >= 0)
		(void)close(u->fd);	/* the file goes next: its result is moot */
	if (u->tmp != NULL && unlink(u->tmp) != 0 && errno != ENOENT)
		vs_log_error("blobs: cannot remove a temp upload: %s",
			     strerror(errno));
	free(u->tmp);
	EVP_MD_CTX_free(u->md);
}

/* ------------------------------------------------------------------ */
/* Upload: attaching the verified content                             */
/* ------------------------------------------------------------------ */

struct attach {
	const char *user, *vault, *sha;
	int64_t size;
	char now[VS_TS_LEN];
	bool had_ref;
	bool placed;       /* the temp file was renamed into place */
	bool was_absent;   /* ... where no file was before */
};

/* The user's referenced bytes, in all and in the scope, and what our
 * uploads had added to each by then (vs_blob_ref_added). */
struct usage {
	bool known;
	int64_t user_used, scope_used;
	int64_t user_added, scope_added;
};

void (*vs_blobs_test_hook)(struct vs_db *db, const char *user);

/* The two sums of a user's bytes that sql computes, bound to the
 * scope: in all, and in the scope. */
static enum vs_db_status
two_sums(struct vs_db *db, const char *sql, const struct attach *a,
	 int64_t *user, int64_t *scope)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	if (!bind_scope(st, a->user, a->vault, NULL))
		return vs_db_status_of(db, SQLITE_ERROR, "blob quota bind");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*user = sqlite3_column_int64(st, 0);
		*scope = sqlite3_column_int64(st, 1);
	} else {
		s = vs_db_status_of(db, rc == SQLITE_DONE ? SQLITE_ERROR : rc,
				    "blob quota");
	}
	sqlite3_reset(st);
	return s;
}

static enum vs_db_status
read_usage(struct vs_db *db, const struct attach *a, struct usage *u)
{
	enum vs_db_status s;

	u->known = false;
	s = two_sums(db, SQL_ADDED, a, &u->user_added, &u->scope_added);
	if (s == VS_DB_OK)
		s = two_sums(db, SQL_USAGE, a, &u->user_used, &u->scope_used);
	u->known = s == VS_DB_OK;
	return s;
}

/*
 * Quotas count logical references (SYNC.md 7): only a new reference is
 * charged, in its vault and in the user's total. The sums read every
 * reference of the user (an index-only scan of vs_idx_blob_refs_usage:
 * ~1.7 ms at 20,000 references, ~12 ms at 100,000), so attach() reads
 * them before it takes the write lock, where they would stall every
 * push. Every upload that adds a reference also adds its size to its
 * scope's row of vs_blob_ref_added, in the same transaction, and
 * nothing else of ours adds references; so under the lock, what those
 * rows grew by since the early read is exactly what was added
 * meanwhile, a lookup of one row per vault of the user. (Removing
 * references, as deleting a user does, only makes the sums too high,
 * never too low.) The totals are soft state (DATA.md 4.5): stale after
 * the reference server ran, which does not matter, as only their
 * growth between the two reads of one upload is used. When the early
 * read failed, the sums are read under the lock as before.
 */
static enum vs_db_status
quota_ok(struct vs_db *db, const struct vs_limits *lim,
	 const struct attach *a, const struct usage *early, bool *ok)
{
	struct usage now;
	enum vs_db_status s;

	*ok = false;
	if (early->known) {
		now = *early;
		s = two_sums(db, SQL_ADDED, a, &now.user_added,
			     &now.scope_added);
		now.user_used += now.user_added - early->user_added;
		now.scope_used += now.scope_added - early->scope_added;
	} else {
		s = read_usage(db, a, &now);
	}
	if (s != VS_DB_OK)
		return s;
	*ok = now.scope_used <= lim->max_vault_blob_bytes - a->size &&
	      now.user_used <= lim->max_user_blob_bytes - a->size;
	return VS_DB_OK;
}

/* Before the write lock: the quota sums (quota_ok), unless the scope
 * already has this blob and no quota will be charged. Best effort: a
 * failure here only means the sums are read under the lock. */
static void
read_usage_early(struct vs_db *db, const struct attach *a, struct usage *u)
{
	char la[VS_TS_LEN + 16];
	int64_t size;
	bool found = false;

	u->known = false;
	if (vs_db_begin_read(db) != VS_DB_OK)
		return;
	if (scope_ref(db, a->user, a->vault, a->sha, &found, &size, la) ==
	    VS_DB_OK && !found)
		(void)read_usage(db, a, u);
	(void)vs_db_commit(db);	/* a read transaction just ends */
	if (vs_blobs_test_hook != NULL)
		vs_blobs_test_hook(db, a->user);
}

/* mkdir that reports whether it created the directory. */
static int
make_dir(const char *path, bool *created)
{
	*created = false;
	if (mkdir(path, 0750) == 0) {
		*created = true;
		return 0;
	}
	return errno == EEXIST ? 0 : errno;
}

/*
 * Makes sure blobs/aa/bb/ exists, durably: a directory created here is
 * fsynced into its parent. Creating a directory is idempotent and the
 * collector never removes one, so this runs before the write lock is
 * taken and keeps two journal commits out of the serialised part.
 * Returns 0 or an errno.
 */
static int
prepare_dirs(const char *blobs_dir, const char *sha, bool *made1, bool *made2)
{
	size_t dl = strlen(blobs_dir);
	char *path = vs_blob_path(blobs_dir, sha);
	int e;

	if (path == NULL)
		return ENOMEM;
	*made1 = *made2 = false;
	path[dl + 3] = '\0';			/* blobs/aa */
	e = make_dir(path, made1);
	if (e == 0 && *made1 && !vs_fsync_dir(blobs_dir))
		e = errno;
	path[dl + 3] = '/';
	path[dl + 6] = '\0';			/* blobs/aa/bb */
	if (e == 0)
		e = make_dir(path, made2);
	path[dl + 3] = '\0';
	if (e == 0 && *made2 && !vs_fsync_dir(path))
		e = errno;
	free(path);
	return e;
}

/*
 * A refused upload leaves blobs/ as it found it: the directories
 * prepare_dirs created go again if they are still empty. An upload that
 * is about to rename into one of them finds it gone and makes it again
 * (place_file), so this cannot break a concurrent upload.
 */
static void
drop_dirs(const char *blobs_dir, const char *sha, bool made1, bool made2)
{
	size_t dl = strlen(blobs_dir);
	char *path = vs_blob_path(blobs_dir, sha);

	if (path == NULL)
		return;
	path[dl + 6] = '\0';
	if (made2)
		(void)rmdir(path);	/* fails harmlessly when not empty */
	path[dl + 3] = '\0';
	if (made1)
		(void)rmdir(path);
	free(path);
}

/*
 * Puts the temp file at blobs/aa/bb/<sha> unless a regular file of the
 * right size is already there; a missing or wrong-sized one is replaced
 * (D24). Runs under the write lock (the collector unlinks only under it
 * too); the caller makes the rename durable (sync_placement) once the
 * lock is released. Returns 0 or an errno.
 */
static int
place_file(const char *blobs_dir, const char *tmp, struct attach *a)
{
	char *path = vs_blob_path(blobs_dir, a->sha);
	struct stat st;
	int e = 0;

	if (path == NULL)
		return ENOMEM;
	if (lstat(path, &st) == 0) {
		if (S_ISREG(st.st_mode) && st.st_size == a->size)
			goto out;	/* intact: keep it, drop the temp */
	} else if (errno != ENOENT) {
		e = errno;
		goto out;
	} else {
		a->was_absent = true;
	}
	if (rename(tmp, path) != 0) {
		e = errno;
		/* the directories vanished since prepare_dirs: once more */
		bool m1, m2;
		if (e == ENOENT &&
		    (e = prepare_dirs(blobs_dir, a->sha, &m1, &m2)) == 0 &&
		    rename(tmp, path) != 0)
			e = errno;
		if (e != 0)
			goto out;
	}
	a->placed = true;
out:
	free(path);
	return e;
}

/*
 * After a failed attach: a file this upload put where none was must not
 * stay as "new blob file" of a failed request, unless by now someone
 * else uses it. Checked under a fresh write lock, as the transaction
 * that placed it is gone. Best effort: a file that stays is an orphan
 * for the collector.
 */
static void
undo_placement(struct vs_ctx *c, const struct attach *a)
{
	struct vs_db *db = &c->app->db;
	bool in_use = true;
	char *path;

	if (!a->placed || !a->was_absent)
		return;
	if (db->tx_depth > 0)
		vs_db_rollback(db);
	if (vs_db_begin_write(db) != VS_DB_OK)
		return;
	if (vs_blob_in_use(db, a->sha, &in_use) == VS_DB_OK && !in_use &&
	    (path = vs_blob_path(c->app->blobs_dir, a->sha)) != NULL) {
		if (unlink(path) != 0 && errno != ENOENT)
			vs_log_error("blobs: cannot remove a placed blob: %s",
				     strerror(errno));
		free(path);
	}
	vs_db_rollback(db);	/* nothing was written */
}

static enum vs_db_status
write_rows(struct vs_db *db, const struct attach *a)
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_BLOB_ADD);
	enum vs_db_status s;

	if (st == NULL)
		return VS_DB_ERROR;
	if (sqlite3_bind_text(st, 1, a->sha, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, a->size) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, a->now, -1, SQLITE_STATIC) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "blob row bind");
	s = step_done(db, st, "blob row");
	if (s != VS_DB_OK)
		return s;
	st = vs_db_stmt(db, a->had_ref ? SQL_REF_TOUCH : SQL_REF_ADD);
	if (st == NULL)
		return VS_DB_ERROR;
	if (!bind_scope(st, a->user, a->vault, a->sha) ||
	    (a->had_ref ?
	     sqlite3_bind_text(st, 4, a->now, -1, SQLITE_STATIC) != SQLITE_OK :
	     (sqlite3_bind_int64(st, 4, a->size) != SQLITE_OK ||
	      sqlite3_bind_text(st, 5, a->now, -1, SQLITE_STATIC) != SQLITE_OK)))
		return vs_db_status_of(db, SQLITE_ERROR, "blob ref bind");
	s = step_done(db, st, "blob ref write");
	if (s != VS_DB_OK || a->had_ref)
		return s;
	/* A new reference: counted for other uploads' early sums. */
	if ((st = vs_db_stmt(db, SQL_ADDED_GROW)) == NULL)
		return VS_DB_ERROR;
	if (!bind_scope(st, a->user, a->vault, NULL) ||
	    sqlite3_bind_int64(st, 3, a->size) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "blob added bind");
	return step_done(db, st, "blob added");
}

/*
 * After the commit: the directory entry of blobs/aa/bb/<sha> reaches the
 * disk before the answer says the blob is stored. Also when this upload
 * found the file already there: the upload that placed it may still be
 * between its commit and this same fsync. Returns 0 or an errno.
 */
static int
sync_placement(const char *blobs_dir, const char *sha)
{
	size_t dl = strlen(blobs_dir);
	char *path = vs_blob_path(blobs_dir, sha);
	int e = 0;

	if (path == NULL)
		return ENOMEM;
	path[dl + 6] = '\0';			/* blobs/aa/bb */
	if (!vs_fsync_dir(path))
		e = errno;
	free(path);
	return e;
}

/* Reference check, quota, placement and rows: one write transaction. */
static void
attach(struct vs_ctx *c, struct upload *u, const struct vs_device *d,
       const char *sha)
{
	struct vs_db *db = &c->app->db;
	struct attach a = { d->user_id, d->scope_vault, sha, u->size, "",
			    false, false, false };
	char la[VS_TS_LEN + 16];
	int64_t ref_size = 0;
	struct usage early;
	enum vs_db_status s;
	bool ok;
	int e;

	vs_now_ts(a.now);
	read_usage_early(db, &a, &early);
	if ((s = vs_db_begin_write(db)) != VS_DB_OK) {
		vs_h_db_fail(c, s);
		return;
	}
	s = scope_ref(db, a.user, a.vault, sha, &a.had_ref, &ref_size, la);
	if (s != VS_DB_OK)
		goto db_fail;
	if (a.had_ref && ref_size != a.size) {
		/* Same hash, other size: the stored reference is wrong. */
		vs_log_error("blobs: reference size %lld differs from upload %lld",
			     (long long)ref_size, (long long)a.size);
		vs_db_rollback(db);
		vs_res_internal(c->res);
		return;
	}
	if (!a.had_ref) {
		if ((s = quota_ok(db, &c->app->cfg.eff.limits, &a, &early,
				  &ok)) != VS_DB_OK)
			goto db_fail;
		if (!ok) {
			vs_db_rollback(db);
			vs_res_error(c->res, 413, "quota_exceeded",
				     "blob quota exceeded");
			return;
		}
	}
	e = place_file(c->app->blobs_dir, u->tmp, &a);
	if (a.placed) {
		free(u->tmp);
		u->tmp = NULL;	/* renamed: nothing left to remove */
	}
	if (e != 0) {
		vs_db_rollback(db);
		undo_placement(c, &a);
		answer_io(c, e, "placing a blob");
		return;
	}
	if ((s = write_rows(db, &a)) != VS_DB_OK ||
	    (s = vs_db_commit(db)) != VS_DB_OK)
		goto db_fail;
	if ((e = sync_placement(c->app->blobs_dir, sha)) != 0) {
		/* The rows stand and the file is in place, but a later
		 * fsync that succeeds would not prove the rename reached
		 * the disk: the server stops acknowledging writes. */
		vs_db_storage_failed(db);
		answer_io(c, e, "syncing a blob directory");
		return;
	}
	vs_res_json(c->res, 200);
	vs_buf_printf(&c->res->body, "{\"sha256\":\"%s\",\"size\":%lld}\n", sha,
		      (long long)a.size);
	return;
db_fail:
	vs_h_db_fail(c, s);	/* rolls back, answers 503 or 500 */
	undo_placement(c, &a);
}

/* Content-Length known up front: refuse an over-cap body unread. */
static bool
declared_too_large(const struct vs_request *r, int64_t cap)
{
	const char *cl = vs_request_param(r, "CONTENT_LENGTH");
	char *end;
	long long v;

	if (cl == NULL || *cl == '\0')
		return false;
	errno = 0;
	v = strtoll(cl, &end, 10);
	return *end == '\0' && (errno == ERANGE || v > cap);
}

static void
upload(struct vs_ctx *c, const struct vs_device *d)
{
	struct upload u;
	struct vs_mp mp;
	enum outcome o;
	char sha[65];
	bool made1 = false, made2 = false;

	memset(&u, 0, sizeof(u));
	u.c = c;
	u.fd = -1;
	u.max_bytes = c->app->cfg.eff.limits.max_blob_bytes;
	if (!vs_mp_init(&mp, c->req->content_type, &upload_cb, &u)) {
		answer_multipart(c, "invalid multipart request");
		return;
	}
	if (declared_too_large(c->req, u.max_bytes + BODY_SLACK)) {
		answer_outcome(c, &u, OUT_TOO_LARGE);
		return;
	}
	o = receive(&u, &mp);
	if (o == OUT_OK)
		o = seal(&u, sha);
	if (o == OUT_OK &&
	    (u.err = prepare_dirs(c->app->blobs_dir, sha, &made1, &made2)) != 0) {
		u.err_what = "creating blob directories";
		o = OUT_IO;
	}
	if (o == OUT_OK)
		attach(c, &u, d, sha);
	else
		answer_outcome(c, &u, o);
	if (c->res->status != 200)
		drop_dirs(c->app->blobs_dir, sha, made1, made2);
	upload_cleanup(&u);
}

/* ------------------------------------------------------------------ */
/* Download                                                           */
/* ------------------------------------------------------------------ */

/* Refreshes last_accessed unless it is recent (a download is a read;
 * one write a minute per reference is plenty). Failure is only logged. */
static void
touch_ref(struct vs_db *db, const struct vs_device *d, const char *sha,
	  const char *la)
{
	time_t now = time(NULL), seen;
	char ts[VS_TS_LEN];
	sqlite3_stmt *st;

	if (la[0] != '\0' && vs_parse_ts(la, &seen) && seen <= now &&
	    now - seen < ACCESS_REFRESH_SECONDS)
		return;
	vs_timestamp(now, ts);
	if (vs_db_begin_write(db) != VS_DB_OK)
		goto fail;
	st = vs_db_stmt(db, SQL_REF_TOUCH);
	if (st == NULL || !bind_scope(st, d->user_id, d->scope_vault, sha) ||
	    sqlite3_bind_text(st, 4, ts, -1, SQLITE_STATIC) != SQLITE_OK ||
	    step_done(db, st, "blob last_accessed") != VS_DB_OK ||
	    vs_db_commit(db) != VS_DB_OK)
		goto fail;
	return;
fail:
	if (db->tx_depth > 0)
		vs_db_rollback(db);
	vs_log_warn("blobs: could not refresh last_accessed");
}

static void
blob_unavailable(struct vs_ctx *c)
{
	vs_res_error(c->res, 500, "blob_unavailable", "blob is unavailable");
}

static void
download(struct vs_ctx *c, const struct vs_device *d)
{
	const char *sha = c->req->path + strlen(ROUTE_PREFIX);
	char la[VS_TS_LEN + 16], accel[sizeof(ACCEL_PREFIX) + 72], disp[96];
	int64_t size = 0;
	bool found = false;
	enum vs_db_status s;
	struct stat st;
	char *path;
	int rc;

	/* Nothing but 64 lowercase hex reaches the file system: no
	 * separators, dots or encoded bytes can form another path. */
	if (!vs_blob_hash_ok(sha)) {
		vs_res_error(c->res, 400, "invalid_blob_hash", "invalid SHA-256");
		return;
	}
	s = scope_ref(&c->app->db, d->user_id, d->scope_vault, sha, &found,
		      &size, la);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		return;
	}
	if (!found) {
		vs_res_error(c->res, 404, "blob_not_found", "blob not found");
		return;
	}
	if ((path = vs_blob_path(c->app->blobs_dir, sha)) == NULL) {
		vs_res_internal(c->res);
		return;
	}
	rc = lstat(path, &st);
	free(path);
	if (rc != 0 && (errno == ENOENT || errno == ENOTDIR)) {
		vs_res_error(c->res, 404, "blob_not_found", "blob not found");
		return;
	}
	if (rc != 0 || !S_ISREG(st.st_mode) || st.st_size != size) {
		vs_log_error("blobs: stored blob is %s",
			     rc != 0 ? strerror(errno) :
			     !S_ISREG(st.st_mode) ? "not a regular file" :
			     "of the wrong size");
		blob_unavailable(c);
		return;
	}
	touch_ref(&c->app->db, d, sha, la);
	snprintf(accel, sizeof(accel), ACCEL_PREFIX "%.2s/%.2s/%s", sha,
		 sha + 2, sha);
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", sha);
	c->res->status = 200;
	c->res->content_type = "application/octet-stream";
	c->res->no_content_length = true;	/* nginx sends the file's */
	if (!vs_res_header(c->res, "X-Accel-Redirect", accel) ||
	    !vs_res_header(c->res, "Content-Disposition", disp))
		vs_res_internal(c->res);
}

/* ------------------------------------------------------------------ */
/* Route                                                              */
/* ------------------------------------------------------------------ */

void
vs_handle_blobs(struct vs_ctx *c)
{
	struct vs_device d;

	/* API.md 3.8: authentication and scope before the method. */
	if (!vs_h_device_auth(c, &d))
		return;
	if (vs_h_require_user(c, &d)) {
		if (strcmp(c->req->method, "POST") == 0)
			upload(c, &d);
		else if (strcmp(c->req->method, "GET") == 0)
			download(c, &d);
		else
			vs_res_method_not_allowed(c->res, "GET, POST", false);
	}
	vs_device_free(&d);
}
