/*
 * audit.h - the audit trail (server_audit_log, DATA.md 7).
 * Owns: inserting audit rows with '' for absent user/device/ip and the
 * section-5 timestamp, reading the newest rows for the console, and
 * the console's severity label of an event type. Must never: put request input or secrets into a
 * message (messages are short fixed texts, plus a device name where the
 * contract says so).
 */
#ifndef VS_AUDIT_H
#define VS_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

/* Inserts one row; runs inside the caller's transaction if one is open,
 * otherwise in its own. NULL user/device/ip are written as ''. */
enum vs_db_status vs_audit(struct vs_db *db, const char *event,
			   const char *user_id, const char *device_id,
			   const char *ip, const char *message);

/* One audit row as stored; strings are "" for NULL. */
struct vs_audit_row {
	int64_t id;
	char *event_type, *user_id, *device_id, *ip, *message, *created_at;
};
/* The newest limit rows (highest id first). *out is NULL when there
 * are none. */
enum vs_db_status vs_audit_recent(struct vs_db *db, int limit,
				  struct vs_audit_row **out, size_t *n);
void vs_audit_rows_free(struct vs_audit_row *r, size_t n);

/* DATA.md 7: "error" when the type contains "failed" or "error";
 * "warning" when it contains "rate_limit", "revoked" or "blocked";
 * else "info". */
const char *vs_audit_severity(const char *event_type);

#endif
