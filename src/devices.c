/*
 * devices.c - see devices.h.
 */
#include "devices.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* last_seen is refreshed at most this often per device, so that pulls
 * and `me` calls do not turn into a database write each (D38). */
#define LAST_SEEN_REFRESH_SECONDS 60

#define DEVICE_COLUMNS \
	"id, name, user_id, vault_id, client_version, last_seen, revoked_at, created_at"

static const char sql_by_token[] =
	"SELECT " DEVICE_COLUMNS " FROM server_devices WHERE token_hash = ?1";
static const char sql_by_legacy_key[] =
	"SELECT " DEVICE_COLUMNS " FROM server_devices "
	"WHERE api_key = ?1 AND legacy_api_key = 1";
static const char sql_by_id[] =
	"SELECT " DEVICE_COLUMNS " FROM server_devices WHERE id = ?1";
static const char sql_insert[] =
	"INSERT INTO server_devices (id, name, api_key, token_hash, token_prefix, "
	"token_suffix, legacy_api_key, user_id, vault_id, client_version, last_ip, "
	"last_seen, revoked_at, created_at) "
	"VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11, NULL, ?12)";
static const char sql_link[] =
	"INSERT OR IGNORE INTO server_user_devices (user_id, device_id) VALUES (?1, ?2)";
static const char sql_revoke[] =
	"UPDATE server_devices SET revoked_at = ?2 "
	"WHERE id = ?1 AND (revoked_at IS NULL OR revoked_at = '')";
static const char sql_drop_sessions[] =
	"DELETE FROM server_sessions WHERE scope = 'device' AND subject_id = ?1";
static const char sql_touch[] =
	"UPDATE server_devices SET last_seen = ?2 WHERE id = ?1";
static const char sql_owner[] =
	"SELECT blocked FROM server_users WHERE id = ?1";
static const char sql_recent[] =
	"SELECT d.id, d.name, u.username, d.vault_id, d.client_version,"
	" d.last_seen, d.revoked_at, d.created_at"
	" FROM server_devices d LEFT JOIN server_users u ON u.id = d.user_id"
	" ORDER BY d.created_at DESC, d.id DESC LIMIT ?1";

void
vs_device_free(struct vs_device *d)
{
	free(d->id);
	free(d->name);
	free(d->user_id);
	free(d->vault_id);
	free(d->client_version);
	free(d->last_seen);
	free(d->revoked_at);
	free(d->created_at);
	free(d->scope_vault);
	memset(d, 0, sizeof(*d));
}

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return strdup(t == NULL ? "" : (const char *)t);
}

static bool
read_row(sqlite3_stmt *st, struct vs_device *d)
{
	size_t n;

	d->id = col_dup(st, 0);
	d->name = col_dup(st, 1);
	d->user_id = col_dup(st, 2);
	d->vault_id = col_dup(st, 3);
	d->client_version = col_dup(st, 4);
	d->last_seen = col_dup(st, 5);
	d->revoked_at = col_dup(st, 6);
	d->created_at = col_dup(st, 7);
	if (!d->id || !d->name || !d->user_id || !d->vault_id ||
	    !d->client_version || !d->last_seen || !d->revoked_at ||
	    !d->created_at)
		return false;
	if (d->vault_id[0] != '\0') {
		d->scope_vault = strdup(d->vault_id);
	} else {
		n = strlen(d->user_id) + sizeof("legacy:");
		d->scope_vault = malloc(n);
		if (d->scope_vault != NULL)
			snprintf(d->scope_vault, n, "legacy:%s", d->user_id);
	}
	return d->scope_vault != NULL;
}

static enum vs_db_status
find_one(struct vs_db *db, const char *sql, const char *arg,
	 struct vs_device *d, bool *found)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*found = false;
	memset(d, 0, sizeof(*d));
	if (st == NULL)
		return VS_DB_ERROR;
	if (sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC) != SQLITE_OK)
		return vs_db_status_of(db, SQLITE_ERROR, "device lookup bind");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*found = true;
		if (!read_row(st, d)) {
			vs_device_free(d);
			*found = false;
			s = VS_DB_ERROR;
		}
	} else if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "device lookup");
	}
	sqlite3_reset(st);
	return s;
}

enum vs_db_status
vs_device_find_credential(struct vs_db *db, const char *credential,
			  struct vs_device *d, bool *found)
{
	char hash[65];
	enum vs_db_status s;

	vs_sha256_hex(credential, strlen(credential), hash);
	s = find_one(db, sql_by_token, hash, d, found);
	if (s != VS_DB_OK || *found)
		return s;
	/* Older plaintext keys; "disabled:" placeholders carry flag 0 and
	 * can never match here. */
	return find_one(db, sql_by_legacy_key, credential, d, found);
}

enum vs_db_status
vs_device_find_id(struct vs_db *db, const char *id, struct vs_device *d,
		  bool *found)
{
	return find_one(db, sql_by_id, id, d, found);
}

static enum vs_db_status
step_done(struct vs_db *db, sqlite3_stmt *st, const char *ctx)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? VS_DB_OK : vs_db_status_of(db, rc, ctx);
}

enum vs_db_status
vs_device_create(struct vs_db *db, const struct vs_new_device *nd,
		 char id[29], char token[VS_TOKEN_HEX + 1])
{
	char hash[65], api_key[sizeof("disabled:") + 28], prefix[9], suffix[5];
	char now[VS_TS_LEN];
	sqlite3_stmt *st;
	enum vs_db_status s;

	memcpy(id, "dev_", 4);
	if (!vs_random_hex(12, id + 4) || !vs_random_hex(32, token))
		return VS_DB_ERROR;
	vs_sha256_hex(token, VS_TOKEN_HEX, hash);
	snprintf(api_key, sizeof(api_key), "disabled:%s", id);
	memcpy(prefix, token, 8);
	prefix[8] = '\0';
	memcpy(suffix, token + VS_TOKEN_HEX - 4, 5);
	vs_now_ts(now);

	st = vs_db_stmt(db, sql_insert);
	if (st == NULL)
		return VS_DB_ERROR;
	if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, nd->name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, api_key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 5, prefix, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 6, suffix, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 7, nd->user_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 8, nd->vault_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 9, nd->client_version, -1, SQLITE_STATIC) != SQLITE_OK ||
	    (nd->last_ip != NULL
	     ? sqlite3_bind_text(st, 10, nd->last_ip, -1, SQLITE_STATIC)
	     : sqlite3_bind_null(st, 10)) != SQLITE_OK ||
	    (nd->set_last_seen
	     ? sqlite3_bind_text(st, 11, now, -1, SQLITE_STATIC)
	     : sqlite3_bind_null(st, 11)) != SQLITE_OK ||
	    sqlite3_bind_text(st, 12, now, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_clear_bindings(st);
		return vs_db_status_of(db, SQLITE_ERROR, "device insert bind");
	}
	s = step_done(db, st, "device insert");
	sqlite3_clear_bindings(st);	/* the token hash must not linger */
	if (s != VS_DB_OK)
		return s;
	st = vs_db_stmt(db, sql_link);
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, nd->user_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC) != SQLITE_OK)
		return VS_DB_ERROR;
	return step_done(db, st, "device link");
}

enum vs_db_status
vs_device_revoke(struct vs_db *db, const char *id)
{
	char now[VS_TS_LEN];
	sqlite3_stmt *st;
	enum vs_db_status s;

	vs_now_ts(now);
	st = vs_db_stmt(db, sql_revoke);
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC) != SQLITE_OK)
		return VS_DB_ERROR;
	s = step_done(db, st, "device revoke");
	if (s != VS_DB_OK)
		return s;
	st = vs_db_stmt(db, sql_drop_sessions);
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK)
		return VS_DB_ERROR;
	return step_done(db, st, "device sessions");
}

void
vs_device_touch(struct vs_db *db, struct vs_device *d)
{
	time_t now = time(NULL), seen;
	char ts[VS_TS_LEN];
	sqlite3_stmt *st;
	char *copy;

	if (d->last_seen[0] != '\0' && vs_parse_ts(d->last_seen, &seen) &&
	    seen <= now && now - seen < LAST_SEEN_REFRESH_SECONDS)
		return;
	vs_timestamp(now, ts);
	st = vs_db_stmt(db, sql_touch);
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, d->id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, ts, -1, SQLITE_STATIC) != SQLITE_OK ||
	    step_done(db, st, "device last_seen") != VS_DB_OK) {
		/* Bookkeeping only: the request itself goes on. */
		vs_log_warn("could not refresh a device's last_seen");
		return;
	}
	copy = strdup(ts);
	if (copy != NULL) {
		free(d->last_seen);
		d->last_seen = copy;
	}
}

enum vs_db_status
vs_device_owner_blocked(struct vs_db *db, const char *user_id, bool *blocked,
			bool *found)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_owner);
	enum vs_db_status s = VS_DB_OK;
	int rc;

	*blocked = false;
	*found = false;
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, user_id, -1, SQLITE_STATIC) != SQLITE_OK)
		return VS_DB_ERROR;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*found = true;
		*blocked = sqlite3_column_int(st, 0) != 0;
	} else if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "device owner");
	}
	sqlite3_reset(st);
	return s;
}

void
vs_device_summaries_free(struct vs_device_summary *d, size_t n)
{
	for (size_t i = 0; d != NULL && i < n; i++) {
		free(d[i].id);
		free(d[i].name);
		free(d[i].user);
		free(d[i].vault_id);
		free(d[i].client_version);
		free(d[i].last_seen);
		free(d[i].revoked_at);
		free(d[i].created_at);
	}
	free(d);
}

static bool
read_summary(sqlite3_stmt *st, struct vs_device_summary *d)
{
	char **cols[] = { &d->id, &d->name, &d->user, &d->vault_id,
			  &d->client_version, &d->last_seen, &d->revoked_at,
			  &d->created_at };
	bool ok = true;

	for (int i = 0; i < (int)(sizeof(cols) / sizeof(cols[0])); i++) {
		*cols[i] = col_dup(st, i);
		ok = ok && *cols[i] != NULL;
	}
	return ok;
}

enum vs_db_status
vs_device_recent(struct vs_db *db, int limit, struct vs_device_summary **out,
		 size_t *n)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_recent);
	struct vs_device_summary *rows;
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
		vs_log_error("devices: out of memory");
		return VS_DB_ERROR;
	}
	rc = sqlite3_bind_int(st, 1, limit);
	if (rc != SQLITE_OK) {
		free(rows);
		return vs_db_status_of(db, rc, "recent devices bind");
	}
	while (count < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* count first: a half-read row is freed with the rest */
		if (!read_summary(st, &rows[count++])) {
			vs_log_error("devices: out of memory");
			s = VS_DB_ERROR;
			break;
		}
	}
	if (s == VS_DB_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		s = vs_db_status_of(db, rc, "recent devices");
	sqlite3_reset(st);
	if (s != VS_DB_OK) {
		vs_device_summaries_free(rows, count);
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
