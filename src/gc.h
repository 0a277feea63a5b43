/*
 * gc.h - blob garbage collection (DEFECTS D13, DATA.md 8): the code the
 * `gc` command runs and the admin console will call.
 *
 * Owns: finding blobs no reference points to (server_blobs rows without
 * server_blob_refs, older than the grace period), deleting their rows
 * and files; blob files under blobs/aa/bb/ that have neither a row nor a
 * reference (left by an interrupted upload or an older server), past the
 * same grace period; temp uploads (blobs/.upload-*) older than
 * retention.temp_upload_hours; and the report of what was freed.
 *
 * Must never: remove content that a row or any reference still points
 * to, unlink a file without holding the write lock that uploads attach
 * under (so an upload racing the collector always ends with its file in
 * place), touch files it does not recognise, or remove directories.
 */
#ifndef VS_GC_H
#define VS_GC_H

#include <stdint.h>
#include <time.h>

#include "db.h"

struct vs_gc_opts {
	int64_t grace_seconds;   /* unreferenced blobs: older than this */
	int64_t temp_seconds;    /* temp uploads: mtime older than this */
	time_t now;              /* 0 = time(NULL) */
};

struct vs_gc_report {
	int64_t blobs;           /* unreferenced blobs removed (rows) */
	int64_t blob_bytes;      /* ... bytes of their files */
	int64_t stray;           /* files without row or reference removed */
	int64_t stray_bytes;
	int64_t temps;           /* temp uploads removed */
	int64_t temp_bytes;
	int64_t errors;          /* files that could not be removed */
};

/* One collection over <blobs_dir> and db. VS_DB_OK unless the database
 * failed (what was done until then stays done and is reported). */
enum vs_db_status vs_gc_run(struct vs_db *db, const char *blobs_dir,
			    const struct vs_gc_opts *o, struct vs_gc_report *r);

/* Only the temp uploads (blobs/.upload-*) last modified before cutoff;
 * counts go into r (which is not cleared). */
void vs_gc_temps(const char *blobs_dir, time_t cutoff, struct vs_gc_report *r);

/* `verstak-sync-server gc --data DIR [--grace-hours N]`: exit status. */
int vs_gc_cli(int argc, char **argv);

#endif
