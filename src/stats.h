/*
 * stats.h - the server statistics object of API.md 15, for the admin
 * console (GET /admin/api/stats, the dashboard, later diagnostics.json).
 *
 * Owns: the read-only queries behind every count (one read transaction,
 * so the numbers agree with each other; bound parameters only), the two
 * file-system figures (the size of server.db, the temp uploads directly
 * in blobs/), and the object's JSON form with the contract's names.
 * Must never: write to the database or the file system, read an op
 * payload, or put a path, token or secret into the object.
 */
#ifndef VS_STATS_H
#define VS_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "db.h"
#include "util.h"

struct vs_stats {
	int64_t users;
	int64_t active_users;        /* confirmed and not blocked */
	int64_t blocked_users;
	int64_t unconfirmed_users;
	int64_t active_devices;      /* revoked_at NULL or '' */
	int64_t revoked_devices;
	int64_t vaults;              /* distinct (user_id, vault_id) of devices */
	int64_t operations;
	int64_t operations_24h;      /* pushed_at within the last 24 h (D34) */
	int64_t blobs;
	int64_t blob_references;
	int64_t orphan_blobs;        /* server_blobs rows no reference names */
	int64_t temp_uploads;        /* blobs/.upload-* entries */
	int64_t expired_sessions;    /* expires_at <= now */
	int64_t expired_email_tokens;
	int64_t audit_events;
	int64_t database_bytes;      /* server.db, main file only */
	int64_t blob_bytes;          /* sum of server_blobs.size (D38) */
	char *last_sync_activity;    /* newest device last_seen, or "" */
	char *last_cleanup_at;       /* newest retention_cleanup row, or "" */
};

/* Collects every figure as of now (0 = time(NULL)); database_bytes is
 * the size of db's file, blobs_dir is <data>/blobs. On success s is filled and
 * must be freed; on failure it is zeroed. A file-system figure that
 * cannot be read is 0 (logged), never a failure. */
enum vs_db_status vs_stats_collect(struct vs_db *db, const char *blobs_dir,
				   time_t now, struct vs_stats *s);
void vs_stats_free(struct vs_stats *s);

/* Appends the §15 object (no newline). False on out of memory. */
bool vs_stats_json(const struct vs_stats *s, struct vs_buf *out);

#endif
