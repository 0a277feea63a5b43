/*
 * gc.c - see gc.h.
 *
 * Why the file of an unreferenced blob is unlinked in a second write
 * transaction: D13 wants the row deleted and committed first, the file
 * removed after. Between the two an upload of the same content may
 * attach (it finds the file, keeps it, inserts the row again). So the
 * file is only unlinked while holding the write lock, after checking
 * that no row and no reference has appeared; an upload that attaches
 * later finds the file missing and puts its own copy in place (D24).
 * Either way the upload ends with a downloadable blob.
 *
 * Must never: scan a table while holding the write lock. Candidates are
 * found in a read transaction; under the lock each one is checked
 * again by key (vs_idx_blob_refs_sha256).
 */
#include "gc.h"
#include "app.h"
#include "blobs.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Blobs handled per pair of transactions: keeps each lock short. */
#define BATCH 256

/* Candidates, found in a read transaction: the scan reads every row of
 * server_blobs (a probe of vs_idx_blob_refs_sha256 each), ~0.1-0.2 s at
 * 100,000 blobs, which under the write lock would stall every writer. */
static const char SQL_ORPHANS[] =
	"SELECT sha256 FROM server_blobs"
	" WHERE created_at < ?1"
	" AND sha256 NOT IN (SELECT sha256 FROM server_blob_refs)"
	" LIMIT ?2";
/* Under the write lock, each candidate again: still old, still without
 * a reference (an upload may have attached it meanwhile). */
static const char SQL_BLOB_DEL[] =
	"DELETE FROM server_blobs WHERE sha256 = ?1 AND created_at < ?2"
	" AND NOT EXISTS (SELECT 1 FROM server_blob_refs WHERE sha256 = ?1)";

struct batch {
	char sha[BATCH][65];
	size_t n;
};

/* ------------------------------------------------------------------ */
/* Unlinking under the lock                                           */
/* ------------------------------------------------------------------ */

/*
 * Removes the file of each hash in b that nothing uses any more. The
 * caller holds the write lock. Only files whose mtime is before
 * mtime_cutoff are removed when it is non-zero (stray files: one an
 * upload just put in place is never old). Counts into *n and *bytes.
 */
static enum vs_db_status
unlink_unused(struct vs_db *db, const char *blobs_dir, const struct batch *b,
	      time_t mtime_cutoff, int64_t *n, int64_t *bytes, int64_t *errors)
{
	for (size_t i = 0; i < b->n; i++) {
		bool in_use = true;
		enum vs_db_status s = vs_blob_in_use(db, b->sha[i], &in_use);
		char *path;
		struct stat st;

		if (s != VS_DB_OK)
			return s;
		if (in_use || !vs_blob_hash_ok(b->sha[i]))
			continue;
		if ((path = vs_blob_path(blobs_dir, b->sha[i])) == NULL)
			return VS_DB_ERROR;
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (mtime_cutoff == 0 || st.st_mtime < mtime_cutoff)) {
			if (unlink(path) == 0) {
				if (n != NULL)
					(*n)++;
				*bytes += st.st_size;
			} else {
				vs_log_error("gc: cannot remove a blob file: %s",
					     strerror(errno));
				(*errors)++;
			}
		}
		free(path);
	}
	return VS_DB_OK;
}

/* ------------------------------------------------------------------ */
/* Unreferenced rows                                                  */
/* ------------------------------------------------------------------ */

/* Up to BATCH unreferenced rows older than cutoff, read outside the
 * write lock into b (see SQL_ORPHANS). */
static enum vs_db_status
find_orphans(struct vs_db *db, const char *cutoff, struct batch *b)
{
	sqlite3_stmt *st;
	enum vs_db_status s;
	int rc;

	b->n = 0;
	if ((s = vs_db_begin_read(db)) != VS_DB_OK)
		return s;
	st = vs_db_stmt(db, SQL_ORPHANS);
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(st, 2, BATCH) != SQLITE_OK) {
		vs_db_rollback(db);
		return VS_DB_ERROR;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(b->sha[b->n++], 65, "%s", t != NULL ? (const char *)t : "");
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "gc orphans");
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);	/* a read transaction just ends */
}

/* Deletes the rows of b that are still unreferenced and older than
 * cutoff, in one write transaction, committed; b keeps only those. */
static enum vs_db_status
delete_rows(struct vs_db *db, const char *cutoff, struct batch *b)
{
	sqlite3_stmt *st;
	enum vs_db_status s;
	size_t kept = 0;
	int rc;

	if ((s = vs_db_begin_write(db)) != VS_DB_OK)
		return s;
	for (size_t i = 0; i < b->n; i++) {
		st = vs_db_stmt(db, SQL_BLOB_DEL);
		if (st == NULL ||
		    sqlite3_bind_text(st, 1, b->sha[i], -1, SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_bind_text(st, 2, cutoff, -1, SQLITE_STATIC) != SQLITE_OK) {
			s = VS_DB_ERROR;
			goto out;
		}
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			s = vs_db_status_of(db, rc, "gc delete");
			goto out;
		}
		if (sqlite3_changes(db->h) > 0) {
			if (kept != i)
				memcpy(b->sha[kept], b->sha[i], 65);
			kept++;
		}
	}
	b->n = kept;
	return vs_db_commit(db);
out:
	vs_db_rollback(db);
	b->n = 0;
	return s == VS_DB_OK ? VS_DB_ERROR : s;
}

static enum vs_db_status
collect_rows(struct vs_db *db, const char *blobs_dir, time_t now,
	     int64_t grace, struct vs_gc_report *r)
{
	static struct batch b;	/* 16 KiB: not on the stack */
	char cutoff[VS_TS_LEN];
	enum vs_db_status s;
	size_t found;

	vs_timestamp(now - (time_t)grace, cutoff);
	do {
		if ((s = find_orphans(db, cutoff, &b)) != VS_DB_OK)
			return s;
		found = b.n;
		if (found == 0)
			break;
		if ((s = delete_rows(db, cutoff, &b)) != VS_DB_OK)
			return s;
		r->blobs += (int64_t)b.n;
		if (b.n == 0)
			continue;	/* all attached meanwhile: look again */
		if ((s = vs_db_begin_write(db)) != VS_DB_OK)
			return s;
		s = unlink_unused(db, blobs_dir, &b, 0, NULL, &r->blob_bytes,
				  &r->errors);
		vs_db_rollback(db);	/* nothing written: only the lock */
		if (s != VS_DB_OK)
			return s;
	} while (found == BATCH);
	return VS_DB_OK;
}

/* ------------------------------------------------------------------ */
/* Stray files                                                        */
/* ------------------------------------------------------------------ */

static bool
is_hex2(const char *name)
{
	return vs_is_lower_hex(name, 2);
}

static enum vs_db_status
flush_stray(struct vs_db *db, const char *blobs_dir, struct batch *b,
	    time_t cutoff, struct vs_gc_report *r)
{
	enum vs_db_status s;

	if (b->n == 0)
		return VS_DB_OK;
	if ((s = vs_db_begin_write(db)) != VS_DB_OK)
		return s;
	s = unlink_unused(db, blobs_dir, b, cutoff, &r->stray, &r->stray_bytes,
			  &r->errors);
	vs_db_rollback(db);
	b->n = 0;
	return s;
}

/* Candidates in one blobs/aa/bb directory: named by a hash that fits
 * the directory, regular, older than cutoff. */
static enum vs_db_status
scan_leaf(struct vs_db *db, const char *blobs_dir, const char *leaf,
	  const char *prefix, time_t cutoff, struct batch *b,
	  struct vs_gc_report *r)
{
	DIR *dir = opendir(leaf);
	struct dirent *e;
	enum vs_db_status s = VS_DB_OK;

	if (dir == NULL)
		return VS_DB_OK;
	while (s == VS_DB_OK && (e = readdir(dir)) != NULL) {
		struct stat st;
		char *path;

		if (!vs_blob_hash_ok(e->d_name) ||
		    strncmp(e->d_name, prefix, 4) != 0)
			continue;
		if ((path = vs_path_join(leaf, e->d_name)) == NULL) {
			s = VS_DB_ERROR;
			break;
		}
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_mtime < cutoff) {
			memcpy(b->sha[b->n++], e->d_name, 65);
			if (b->n == BATCH)
				s = flush_stray(db, blobs_dir, b, cutoff, r);
		}
		free(path);
	}
	closedir(dir);
	return s;
}

/* Walks blobs/aa/bb/; the lock is taken per batch, not for the walk. */
static enum vs_db_status
collect_stray(struct vs_db *db, const char *blobs_dir, time_t cutoff,
	      struct vs_gc_report *r)
{
	static struct batch b;
	DIR *top = opendir(blobs_dir);
	struct dirent *e1;
	enum vs_db_status s = VS_DB_OK;

	if (top == NULL) {
		vs_log_error("gc: cannot read %s: %s", blobs_dir, strerror(errno));
		return VS_DB_ERROR;
	}
	b.n = 0;
	while (s == VS_DB_OK && (e1 = readdir(top)) != NULL) {
		char *l1 = is_hex2(e1->d_name) ? vs_path_join(blobs_dir, e1->d_name) : NULL;
		DIR *mid = l1 != NULL ? opendir(l1) : NULL;
		struct dirent *e2;

		while (mid != NULL && s == VS_DB_OK && (e2 = readdir(mid)) != NULL) {
			char prefix[5], *l2;

			if (!is_hex2(e2->d_name))
				continue;
			memcpy(prefix, e1->d_name, 2);	/* both are 2 hex */
			memcpy(prefix + 2, e2->d_name, 2);
			prefix[4] = '\0';
			if ((l2 = vs_path_join(l1, e2->d_name)) == NULL) {
				s = VS_DB_ERROR;
				break;
			}
			s = scan_leaf(db, blobs_dir, l2, prefix, cutoff, &b, r);
			free(l2);
		}
		if (mid != NULL)
			closedir(mid);
		free(l1);
	}
	closedir(top);
	if (s == VS_DB_OK)
		s = flush_stray(db, blobs_dir, &b, cutoff, r);
	return s;
}

/* ------------------------------------------------------------------ */
/* Temp uploads                                                       */
/* ------------------------------------------------------------------ */

/* An upload in progress writes its temp file continuously, so its mtime
 * is always recent: an old one belongs to a dead request. */
void
vs_gc_temps(const char *blobs_dir, time_t cutoff, struct vs_gc_report *r)
{
	size_t plen = strlen(VS_BLOB_TEMP_PREFIX);
	DIR *dir = opendir(blobs_dir);
	struct dirent *e;

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		struct stat st;
		char *path;

		if (strncmp(e->d_name, VS_BLOB_TEMP_PREFIX, plen) != 0 ||
		    (path = vs_path_join(blobs_dir, e->d_name)) == NULL)
			continue;
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_mtime < cutoff) {
			if (unlink(path) == 0) {
				r->temps++;
				r->temp_bytes += st.st_size;
			} else {
				vs_log_error("gc: cannot remove a temp upload: %s",
					     strerror(errno));
				r->errors++;
			}
		}
		free(path);
	}
	closedir(dir);
}

/* ------------------------------------------------------------------ */
/* Entry points                                                       */
/* ------------------------------------------------------------------ */

enum vs_db_status
vs_gc_run(struct vs_db *db, const char *blobs_dir, const struct vs_gc_opts *o,
	  struct vs_gc_report *r)
{
	time_t now = o->now != 0 ? o->now : time(NULL);
	enum vs_db_status s;

	memset(r, 0, sizeof(*r));
	vs_gc_temps(blobs_dir, now - (time_t)o->temp_seconds, r);
	s = collect_rows(db, blobs_dir, now, o->grace_seconds, r);
	if (s == VS_DB_OK)
		s = collect_stray(db, blobs_dir, now - (time_t)o->grace_seconds, r);
	return s;
}

static int
usage(void)
{
	fprintf(stderr, "usage: verstak-sync-server gc --data DIR"
		" [--grace-hours N]\n");
	return 2;
}

static bool
parse_hours(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 ||
	    v > INT64_MAX / 3600)
		return false;
	*out = v;
	return true;
}

static void
print_report(const struct vs_gc_report *r)
{
	printf("unreferenced blobs removed: %" PRId64 " (%" PRId64 " bytes)\n",
	       r->blobs, r->blob_bytes);
	printf("stray blob files removed: %" PRId64 " (%" PRId64 " bytes)\n",
	       r->stray, r->stray_bytes);
	printf("temp uploads removed: %" PRId64 " (%" PRId64 " bytes)\n",
	       r->temps, r->temp_bytes);
	printf("freed: %" PRId64 " bytes\n",
	       r->blob_bytes + r->stray_bytes + r->temp_bytes);
	if (r->errors > 0)
		printf("files that could not be removed: %" PRId64 "\n", r->errors);
}

int
vs_gc_cli(int argc, char **argv)
{
	const char *data = NULL;
	int64_t grace = -1, temp_hours;
	struct vs_gc_opts o;
	struct vs_gc_report r;
	struct vs_app app;
	struct stat sb;
	char err[512];
	enum vs_db_status s;

	vs_log_set_tag("verstak-gc");
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
			data = argv[++i];
		else if (strcmp(argv[i], "--grace-hours") == 0 && i + 1 < argc) {
			if (!parse_hours(argv[++i], &grace))
				return usage();
		} else
			return usage();
	}
	if (data == NULL)
		return usage();
	/* A typo in --data must not create an empty data directory. */
	if (stat(data, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "verstak-sync-server gc: data directory %s does"
			" not exist\n", data);
		return 1;
	}
	if (!vs_app_open(&app, data, true, err, sizeof(err))) {
		fprintf(stderr, "verstak-sync-server gc: %s\n", err);
		vs_app_close(&app);
		return 1;
	}
	temp_hours = app.cfg.eff.retention.temp_upload_hours;
	if (grace < 0)
		grace = temp_hours;
	if (grace < temp_hours) {
		/* D13: never shorter than a temp upload may live. */
		fprintf(stderr, "verstak-sync-server gc: --grace-hours must be at"
			" least retention.temp_upload_hours (%" PRId64 ")\n",
			temp_hours);
		vs_app_close(&app);
		return 2;
	}
	memset(&o, 0, sizeof(o));
	o.grace_seconds = grace * 3600;
	o.temp_seconds = temp_hours * 3600;
	s = vs_gc_run(&app.db, app.blobs_dir, &o, &r);
	print_report(&r);
	vs_app_close(&app);
	if (s != VS_DB_OK) {
		fprintf(stderr, "verstak-sync-server gc: %s\n",
			s == VS_DB_BUSY ? "the database is busy; try again" :
			"database error (see the log above)");
		return 1;
	}
	return r.errors > 0 ? 1 : 0;
}
