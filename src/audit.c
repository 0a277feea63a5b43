/*
 * audit.c - the audit trail (see audit.h, DATA.md 7).
 *
 * Owns: the one INSERT into server_audit_log, with '' for absent
 * user/device/ip/message and created_at written explicitly in the
 * section-5 format (the column default would be datetime('now'), which
 * is not that format).
 * Also the console's read side: the newest rows and their severity.
 * Must never: log the row it writes, build a message from request input
 * (callers pass fixed texts), or open a transaction when the caller
 * already holds one.
 */
#include "audit.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char sql_recent[] =
	"SELECT id, event_type, user_id, device_id, ip, message, created_at"
	" FROM server_audit_log ORDER BY id DESC LIMIT ?1";

static const char sql_audit[] =
	"INSERT INTO server_audit_log"
	" (event_type, user_id, device_id, ip, message, created_at)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

static const char *
or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* The INSERT itself, inside whatever transaction is open. */
static enum vs_db_status
insert_row(struct vs_db *db, const char *const vals[6])
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_audit);
	enum vs_db_status s;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	for (int i = 0; i < 6; i++) {
		rc = sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_STATIC);
		if (rc != SQLITE_OK)
			return vs_db_status_of(db, rc, "audit bind");
	}
	rc = sqlite3_step(st);
	s = rc == SQLITE_DONE ? VS_DB_OK : vs_db_status_of(db, rc, "audit");
	if (rc == SQLITE_ROW)	/* cannot happen for an INSERT */
		s = VS_DB_ERROR;
	(void)sqlite3_reset(st);	/* repeats rc, handled above */
	return s;
}

enum vs_db_status
vs_audit(struct vs_db *db, const char *event, const char *user_id,
	 const char *device_id, const char *ip, const char *message)
{
	char now[VS_TS_LEN];
	const char *vals[6];
	enum vs_db_status s;

	if (event == NULL || *event == '\0') {
		vs_log_error("audit: empty event type");
		return VS_DB_ERROR;
	}
	vs_now_ts(now);
	vals[0] = event;
	vals[1] = or_empty(user_id);
	vals[2] = or_empty(device_id);
	vals[3] = or_empty(ip);
	vals[4] = or_empty(message);
	vals[5] = now;
	/* Inside the caller's transaction the row commits or rolls back
	 * with the change it records. */
	if (db->tx_depth > 0)
		return insert_row(db, vals);
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return s;
	s = insert_row(db, vals);
	if (s != VS_DB_OK) {
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);
}

void
vs_audit_rows_free(struct vs_audit_row *r, size_t n)
{
	for (size_t i = 0; r != NULL && i < n; i++) {
		free(r[i].event_type);
		free(r[i].user_id);
		free(r[i].device_id);
		free(r[i].ip);
		free(r[i].message);
		free(r[i].created_at);
	}
	free(r);
}

static bool
read_audit_row(sqlite3_stmt *st, struct vs_audit_row *r)
{
	char **cols[] = { &r->event_type, &r->user_id, &r->device_id, &r->ip,
			  &r->message, &r->created_at };
	bool ok = true;

	r->id = sqlite3_column_int64(st, 0);
	for (int i = 0; i < (int)(sizeof(cols) / sizeof(cols[0])); i++) {
		const unsigned char *t = sqlite3_column_text(st, i + 1);
		*cols[i] = strdup(t != NULL ? (const char *)t : "");
		ok = ok && *cols[i] != NULL;
	}
	return ok;
}

enum vs_db_status
vs_audit_recent(struct vs_db *db, int limit, struct vs_audit_row **out,
		size_t *n)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_recent);
	struct vs_audit_row *rows;
	enum vs_db_status s = VS_DB_OK;
	size_t count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (limit <= 0)
		return VS_DB_OK;
	if (st == NULL)
		return VS_DB_ERROR;
	rows = calloc((size_t)limit, sizeof(*rows));
	if (rows == NULL) {
		vs_log_error("audit: out of memory");
		return VS_DB_ERROR;
	}
	rc = sqlite3_bind_int(st, 1, limit);
	if (rc != SQLITE_OK) {
		free(rows);
		return vs_db_status_of(db, rc, "recent audit bind");
	}
	while (count < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* count first: a half-read row is freed with the rest */
		if (!read_audit_row(st, &rows[count++])) {
			vs_log_error("audit: out of memory");
			s = VS_DB_ERROR;
			break;
		}
	}
	if (s == VS_DB_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		s = vs_db_status_of(db, rc, "recent audit");
	(void)sqlite3_reset(st);
	if (s != VS_DB_OK) {
		vs_audit_rows_free(rows, count);
		return s;
	}
	if (count == 0) {
		free(rows);
		rows = NULL;
	}
	*out = rows;
	*n = count;
	return VS_DB_OK;
}

const char *
vs_audit_severity(const char *t)
{
	if (t == NULL)
		return "info";
	if (strstr(t, "failed") != NULL || strstr(t, "error") != NULL)
		return "error";
	if (strstr(t, "rate_limit") != NULL || strstr(t, "revoked") != NULL ||
	    strstr(t, "blocked") != NULL)
		return "warning";
	return "info";
}
