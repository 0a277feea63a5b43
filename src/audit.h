/*
 * audit.h - the audit trail (server_audit_log, DATA.md 7).
 * Owns: inserting audit rows with '' for absent user/device/ip and the
 * section-5 timestamp. Must never: put request input or secrets into a
 * message (messages are short fixed texts, plus a device name where the
 * contract says so).
 */
#ifndef VS_AUDIT_H
#define VS_AUDIT_H

#include "db.h"

/* Inserts one row; runs inside the caller's transaction if one is open,
 * otherwise in its own. NULL user/device/ip are written as ''. */
enum vs_db_status vs_audit(struct vs_db *db, const char *event,
			   const char *user_id, const char *device_id,
			   const char *ip, const char *message);

#endif
