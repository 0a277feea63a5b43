/*
 * stats.c - see stats.h.
 *
 * One SELECT of scalar subqueries inside one read transaction: every
 * figure comes from the same snapshot. Timestamps are compared as
 * strings, as DATA.md 5 says the servers do (the section-5 format
 * orders lexically).
 */
#include "stats.h"
#include "json.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TEMP_PREFIX ".upload-"

/* Column order = the integer fields of struct vs_stats up to
 * audit_events, then blob_bytes and the two strings. ?1 = now - 24 h,
 * ?2 = now. NOT IN over the reference table (sha256 is NOT NULL there)
 * lets SQLite build its lookup once instead of scanning per blob. */
static const char sql_stats[] =
	"SELECT"
	" (SELECT count(*) FROM server_users),"
	" (SELECT count(*) FROM server_users WHERE confirmed = 1 AND blocked = 0),"
	" (SELECT count(*) FROM server_users WHERE blocked = 1),"
	" (SELECT count(*) FROM server_users WHERE confirmed = 0),"
	" (SELECT count(*) FROM server_devices"
	"   WHERE revoked_at IS NULL OR revoked_at = ''),"
	" (SELECT count(*) FROM server_devices"
	"   WHERE revoked_at IS NOT NULL AND revoked_at <> ''),"
	" (SELECT count(*) FROM (SELECT DISTINCT user_id, vault_id"
	"   FROM server_devices WHERE user_id IS NOT NULL AND user_id <> ''"
	"   AND vault_id IS NOT NULL AND vault_id <> '')),"
	" (SELECT count(*) FROM server_ops),"
	" (SELECT count(*) FROM server_ops WHERE pushed_at >= ?1),"
	" (SELECT count(*) FROM server_blobs),"
	" (SELECT count(*) FROM server_blob_refs),"
	" (SELECT count(*) FROM server_blobs"
	"   WHERE sha256 NOT IN (SELECT sha256 FROM server_blob_refs)),"
	" (SELECT count(*) FROM server_sessions WHERE expires_at <= ?2),"
	" (SELECT count(*) FROM server_email_tokens WHERE expires_at <= ?2),"
	" (SELECT count(*) FROM server_audit_log),"
	" (SELECT coalesce(sum(size), 0) FROM server_blobs),"
	" (SELECT coalesce(max(last_seen), '') FROM server_devices"
	"   WHERE last_seen IS NOT NULL AND last_seen <> ''),"
	" (SELECT coalesce(max(created_at), '') FROM server_audit_log"
	"   WHERE event_type = 'retention_cleanup')";

void
vs_stats_free(struct vs_stats *s)
{
	if (s == NULL)
		return;
	free(s->last_sync_activity);
	free(s->last_cleanup_at);
	memset(s, 0, sizeof(*s));
}

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return strdup(t != NULL ? (const char *)t : "");
}

/* Reads the one row of sql_stats into s; an SQLite result code. */
static int
read_row(sqlite3_stmt *st, struct vs_stats *s)
{
	int64_t *ints[] = {
		&s->users, &s->active_users, &s->blocked_users,
		&s->unconfirmed_users, &s->active_devices, &s->revoked_devices,
		&s->vaults, &s->operations, &s->operations_24h, &s->blobs,
		&s->blob_references, &s->orphan_blobs, &s->expired_sessions,
		&s->expired_email_tokens, &s->audit_events, &s->blob_bytes,
	};
	const int n = (int)(sizeof(ints) / sizeof(ints[0]));
	int rc = sqlite3_step(st);

	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? SQLITE_ERROR : rc;
	for (int i = 0; i < n; i++)
		*ints[i] = sqlite3_column_int64(st, i);
	s->last_sync_activity = col_dup(st, n);
	s->last_cleanup_at = col_dup(st, n + 1);
	if (s->last_sync_activity == NULL || s->last_cleanup_at == NULL)
		return SQLITE_NOMEM;
	return SQLITE_OK;
}

static enum vs_db_status
query(struct vs_db *db, time_t now, struct vs_stats *s)
{
	char day_ago[VS_TS_LEN], now_ts[VS_TS_LEN];
	sqlite3_stmt *st;
	enum vs_db_status r;
	int rc;

	vs_timestamp(now - 24 * 60 * 60, day_ago);
	vs_timestamp(now, now_ts);
	r = vs_db_begin_read(db);
	if (r != VS_DB_OK)
		return r;
	st = vs_db_stmt(db, sql_stats);
	if (st == NULL) {
		vs_db_rollback(db);
		return VS_DB_ERROR;
	}
	rc = sqlite3_bind_text(st, 1, day_ago, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, now_ts, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = read_row(st, s);
	(void)sqlite3_reset(st);	/* the step's code is handled above */
	if (rc != SQLITE_OK) {
		r = rc == SQLITE_NOMEM ? VS_DB_ERROR
				       : vs_db_status_of(db, rc, "stats");
		vs_db_rollback(db);
		return r == VS_DB_OK ? VS_DB_ERROR : r;
	}
	return vs_db_commit(db);
}

/* .upload-* entries directly in blobs/ (any type: a temp upload is a
 * file, but an odd entry of that name is still a leftover). */
static int64_t
count_temps(const char *blobs_dir)
{
	DIR *d = opendir(blobs_dir);
	struct dirent *e;
	int64_t n = 0;

	if (d == NULL) {
		vs_log_warn("stats: cannot read the blobs directory: %s",
			    strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, TEMP_PREFIX, sizeof(TEMP_PREFIX) - 1) == 0)
			n++;
	closedir(d);
	return n;
}

static int64_t
file_size(const char *path)
{
	struct stat st;

	if (path == NULL || stat(path, &st) != 0) {
		vs_log_warn("stats: cannot stat the database file: %s",
			    strerror(errno));
		return 0;
	}
	return (int64_t)st.st_size;
}

enum vs_db_status
vs_stats_collect(struct vs_db *db, const char *blobs_dir, time_t now,
		 struct vs_stats *s)
{
	enum vs_db_status r;

	memset(s, 0, sizeof(*s));
	if (now == 0)
		now = time(NULL);
	r = query(db, now, s);
	if (r != VS_DB_OK) {
		vs_stats_free(s);
		return r;
	}
	s->temp_uploads = count_temps(blobs_dir);
	s->database_bytes = file_size(db->path);
	return VS_DB_OK;
}

bool
vs_stats_json(const struct vs_stats *s, struct vs_buf *out)
{
	const struct {
		const char *name;
		int64_t v;
	} ints[] = {
		{ "users", s->users },
		{ "active_users", s->active_users },
		{ "blocked_users", s->blocked_users },
		{ "unconfirmed_users", s->unconfirmed_users },
		{ "active_devices", s->active_devices },
		{ "revoked_devices", s->revoked_devices },
		{ "vaults", s->vaults },
		{ "operations", s->operations },
		{ "operations_24h", s->operations_24h },
		{ "blobs", s->blobs },
		{ "blob_references", s->blob_references },
		{ "orphan_blobs", s->orphan_blobs },
		{ "temp_uploads", s->temp_uploads },
		{ "expired_sessions", s->expired_sessions },
		{ "expired_email_tokens", s->expired_email_tokens },
		{ "audit_events", s->audit_events },
		{ "database_bytes", s->database_bytes },
		{ "blob_bytes", s->blob_bytes },
	};

	vs_buf_puts(out, "{");
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		vs_buf_printf(out, "\"%s\":%" PRId64 ",", ints[i].name,
			      ints[i].v);
	vs_buf_puts(out, "\"last_sync_activity\":");
	vs_json_put_str(out, s->last_sync_activity != NULL ?
			s->last_sync_activity : "");
	vs_buf_puts(out, ",\"last_cleanup_at\":");
	vs_json_put_str(out, s->last_cleanup_at != NULL ?
			s->last_cleanup_at : "");
	vs_buf_puts(out, "}");
	return !out->oom;
}
