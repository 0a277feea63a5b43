/*
 * blobs.h - content-addressed attachment blobs: the /api/v1/blobs/
 * routes (API.md 3.8, SYNC.md 7) and the file layout under blobs/
 * (DATA.md 1: blobs/aa/bb/<sha256>, temp uploads blobs/.upload-*).
 *
 * Owns: streaming an upload to a temp file while hashing it, the limits
 * and quotas, placing the verified file (rename, directory fsync, the
 * D24 repair of a missing or damaged file), the server_blobs and
 * server_blob_refs rows of an upload, and handing a download to nginx
 * (X-Accel-Redirect) after the scope, existence and size checks.
 *
 * Must never: hold a blob in memory (fixed buffers whatever its size),
 * leave a temp file or a half-written file under blobs/ after any
 * failure, write a row before the content is safely on disk, let a path
 * that is not exactly 64 lowercase hex reach the file system, or show
 * one scope's blob to another.
 */
#ifndef VS_BLOBS_H
#define VS_BLOBS_H

#include <stdbool.h>

#include "db.h"
#include "router.h"

/* Temp uploads are named <blobs>/.upload-<32 hex>. */
#define VS_BLOB_TEMP_PREFIX ".upload-"

/* The subtree route /api/v1/blobs/ (every method: auth comes first). */
void vs_handle_blobs(struct vs_ctx *c);

/* True when s is exactly 64 lowercase hex characters. */
bool vs_blob_hash_ok(const char *s);

/* "<blobs_dir>/aa/bb/<sha>" (malloc'd; NULL on OOM). sha must be valid. */
char *vs_blob_path(const char *blobs_dir, const char *sha);

/* Is the content still wanted: a server_blobs row or any reference?
 * Callers hold the write lock, so the answer stays true until commit. */
enum vs_db_status vs_blob_in_use(struct vs_db *db, const char *sha,
				 bool *in_use);

/* Tests only: called by an upload between its early quota read and
 * its write transaction (blobs.c quota_ok), where another upload's
 * commit may land. NULL in the server. */
extern void (*vs_blobs_test_hook)(struct vs_db *db, const char *user);

#endif
