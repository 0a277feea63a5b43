/*
 * client.c - see client.h.
 */
#include "client.h"
#include "audit.h"
#include "devices.h"
#include "handler.h"
#include "json.h"
#include "log.h"
#include "password.h"
#include "sync.h"
#include "users.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Byte limits of API.md 3.1 step 7. */
#define MAX_LOGIN 320
#define MAX_DEVICE_NAME 128
#define MAX_CLIENT_VERSION 256
#define MAX_VAULT_ID 256

static void
invalid_json(struct vs_ctx *c)
{
	vs_res_error(c->res, 400, "invalid_json", "invalid JSON request");
}

/* Reads the named string fields of obj; false (answered) on a wrong type. */
static bool
fields(struct vs_ctx *c, const cJSON *obj, const char *const *names,
       const char **out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!vs_json_str(obj, names[i], &out[i])) {
			invalid_json(c);
			return false;
		}
	}
	return true;
}

/* Trimmed copy of s (malloc'd); NULL on OOM. */
static char *
trimmed(const char *s)
{
	char *t = strdup(s);
	return t == NULL ? NULL : vs_trim(t);
}

/* Answers a failed credential check (steps 8-10); audits for pairing. */
static void
credential_refused(struct vs_ctx *c, enum vs_cred cr, const struct vs_user *u,
		   bool audit)
{
	const char *msg = NULL;

	switch (cr) {
	case VS_CRED_INVALID:
		msg = u->id != NULL ? "pair: wrong password" : "pair: user not found";
		vs_res_error(c->res, 401, "unauthorized", "invalid credentials");
		break;
	case VS_CRED_BLOCKED:
		msg = "pair: user blocked";
		vs_res_error(c->res, 403, "forbidden", "account blocked");
		break;
	case VS_CRED_UNCONFIRMED:
		msg = "pair: email not confirmed";
		vs_res_error(c->res, 403, "forbidden", "email not confirmed");
		break;
	case VS_CRED_BUSY:
		vs_res_busy(c->res);
		return;
	default:
		vs_res_internal(c->res);
		return;
	}
	if (audit && vs_audit(&c->app->db, "device_auth_failed",
			      u->id != NULL ? u->id : "", "",
			      c->req->client_ip, msg) != VS_DB_OK)
		vs_log_warn("could not write an audit row");
}

/* Vault rules shared by pair and device/register: trimmed, non-empty,
 * not in the reserved legacy: namespace. */
static bool
vault_ok(struct vs_ctx *c, const char *vault)
{
	if (vault[0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request", "vault_id required");
		return false;
	}
	if (strncmp(vault, "legacy:", 7) == 0) {
		vs_res_error(c->res, 400, "invalid_request",
			     "vault_id uses reserved prefix");
		return false;
	}
	return true;
}

static bool
length_ok(struct vs_ctx *c, const char *v, size_t max, const char *msg)
{
	if (strlen(v) <= max)
		return true;
	vs_res_error(c->res, 400, "invalid_request", msg);
	return false;
}

/* One transaction: device, link, the owner's last_seen when pairing,
 * and the audit row. */
static enum vs_db_status
create_device(struct vs_ctx *c, const struct vs_new_device *nd, bool pairing,
	      char id[29], char token[VS_TOKEN_HEX + 1], char now[VS_TS_LEN])
{
	struct vs_db *db = &c->app->db;
	enum vs_db_status s;
	struct vs_buf msg;

	vs_now_ts(now);
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return s;
	s = vs_device_create(db, nd, id, token);
	if (s == VS_DB_OK && pairing)
		s = vs_user_touch_last_seen(db, nd->user_id, now);
	if (s == VS_DB_OK && pairing) {
		vs_buf_init(&msg);
		vs_buf_printf(&msg, "device paired: %s", nd->name);
		s = msg.oom ? VS_DB_ERROR
			    : vs_audit(db, "device_paired", nd->user_id, id,
				       c->req->client_ip, msg.data);
		vs_buf_free(&msg);
	}
	if (s != VS_DB_OK) {
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);
}

void
vs_handle_pair(struct vs_ctx *c)
{
	static const char *const names[] = {
		"login", "password", "device_name", "client_version", "vault_id",
	};
	const char *f[5];
	cJSON *body = NULL;
	char *vault = NULL, id[29], token[VS_TOKEN_HEX + 1], now[VS_TS_LEN];
	struct vs_user u;
	struct vs_new_device nd;
	enum vs_cred cr;
	enum vs_db_status s;

	memset(&u, 0, sizeof(u));
	if (!vs_h_json_body(c, &body) || !fields(c, body, names, f, 5))
		goto out;
	if (f[0][0] == '\0' || f[1][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request",
			     "login and password required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_PAIR, f[0]))
		goto out;
	if ((vault = trimmed(f[4])) == NULL) {
		vs_res_internal(c->res);
		goto out;
	}
	if (!vault_ok(c, vault))
		goto out;
	if (f[2][0] == '\0')
		f[2] = "unknown";
	if (!length_ok(c, f[0], MAX_LOGIN, "login is too long") ||
	    !length_ok(c, f[2], MAX_DEVICE_NAME, "device name is too long") ||
	    !length_ok(c, f[3], MAX_CLIENT_VERSION, "client version is too long") ||
	    !length_ok(c, vault, MAX_VAULT_ID, "vault id is too long"))
		goto out;
	cr = vs_user_check_credentials(&c->app->db, f[0], f[1], &u);
	if (cr != VS_CRED_OK) {
		credential_refused(c, cr, &u, true);
		goto out;
	}
	nd.user_id = u.id;
	nd.vault_id = vault;
	nd.name = f[2];
	nd.client_version = f[3];
	nd.last_ip = c->req->client_ip;
	nd.set_last_seen = true;
	s = create_device(c, &nd, true, id, token, now);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		goto out;
	}
	vs_res_json(c->res, 200);
	vs_buf_puts(&c->res->body, "{\"user_id\":");
	vs_json_put_str(&c->res->body, u.id);
	vs_buf_printf(&c->res->body,
		      ",\"device_id\":\"%s\",\"device_token\":\"%s\","
		      "\"server_time\":\"%s\",\"initial_sync_cursor\":0}\n",
		      id, token, now);
	memset(token, 0, sizeof(token));
out:
	free(vault);
	vs_user_free(&u);
	cJSON_Delete(body);
}

void
vs_handle_auth_test(struct vs_ctx *c)
{
	static const char *const names[] = { "username", "password" };
	const char *f[2];
	cJSON *body = NULL;
	struct vs_user u;
	enum vs_cred cr;

	memset(&u, 0, sizeof(u));
	if (!vs_h_json_body(c, &body) || !fields(c, body, names, f, 2))
		goto out;
	if (f[0][0] == '\0' || f[1][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request",
			     "username and password required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_AUTH_TEST, f[0]))
		goto out;
	cr = vs_user_check_credentials(&c->app->db, f[0], f[1], &u);
	if (cr != VS_CRED_OK) {
		credential_refused(c, cr, &u, false);
		goto out;
	}
	vs_res_json(c->res, 200);
	vs_buf_puts(&c->res->body, "{\"status\":\"ok\"}\n");
out:
	vs_user_free(&u);
	cJSON_Delete(body);
}

void
vs_handle_me(struct vs_ctx *c)
{
	struct vs_device d;
	struct vs_user u;
	bool found = false;
	enum vs_db_status s = VS_DB_OK;
	struct vs_buf *b = &c->res->body;

	memset(&u, 0, sizeof(u));
	if (!vs_h_device_auth(c, &d))
		return;
	if (d.user_id[0] != '\0')
		s = vs_user_find_id(&c->app->db, d.user_id, &u, &found);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		goto out;
	}
	vs_res_json(c->res, 200);
	vs_buf_puts(b, "{\"device_id\":");
	vs_json_put_str(b, d.id);
	vs_buf_puts(b, ",\"user_id\":");
	vs_json_put_str(b, d.user_id);
	vs_buf_puts(b, ",\"username\":");
	vs_json_put_str(b, found ? u.username : "");
	vs_buf_puts(b, ",\"device_name\":");
	vs_json_put_str(b, d.name);
	vs_buf_puts(b, ",\"client_version\":");
	vs_json_put_str(b, d.client_version);
	vs_buf_puts(b, ",\"last_seen\":");
	vs_json_put_str(b, d.last_seen);
	vs_buf_puts(b, ",\"revoked_at\":\"\",\"created_at\":");
	vs_json_put_str(b, d.created_at);
	vs_buf_puts(b, "}\n");
out:
	vs_user_free(&u);
	vs_device_free(&d);
}

/* Revokes target in one transaction with its audit row. */
static enum vs_db_status
revoke(struct vs_ctx *c, const char *user_id, const char *target,
       const char *message)
{
	struct vs_db *db = &c->app->db;
	enum vs_db_status s = vs_db_begin_write(db);

	if (s != VS_DB_OK)
		return s;
	s = vs_device_revoke(db, target);
	if (s == VS_DB_OK)
		s = vs_audit(db, "device_revoked", user_id, target,
			     c->req->client_ip, message);
	if (s != VS_DB_OK) {
		vs_db_rollback(db);
		return s;
	}
	return vs_db_commit(db);
}

static void
revoked_ok(struct vs_ctx *c)
{
	vs_res_json(c->res, 200);
	vs_buf_puts(&c->res->body, "{\"status\":\"revoked\"}\n");
}

void
vs_handle_revoke_current(struct vs_ctx *c)
{
	struct vs_device d;
	enum vs_db_status s;

	if (!vs_h_device_auth(c, &d))
		return;
	/* The body is ignored: the desktop sends none. */
	s = revoke(c, d.user_id, d.id, "device revoked by user");
	if (s != VS_DB_OK)
		vs_h_db_fail(c, s);
	else
		revoked_ok(c);
	vs_device_free(&d);
}

void
vs_handle_revoke_device(struct vs_ctx *c)
{
	static const char *const names[] = { "device_id", "password" };
	const char *f[2];
	struct vs_device d, target;
	struct vs_user u;
	cJSON *body = NULL;
	bool found = false;
	enum vs_db_status s;

	memset(&u, 0, sizeof(u));
	memset(&target, 0, sizeof(target));
	if (!vs_h_device_auth(c, &d))
		return;
	if (!vs_h_require_user(c, &d) || !vs_h_json_body(c, &body) ||
	    !fields(c, body, names, f, 2))
		goto out;
	if (f[0][0] == '\0' || f[1][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request",
			     "device_id and password required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_AUTH_TEST, d.user_id))
		goto out;
	s = vs_user_find_id(&c->app->db, d.user_id, &u, &found);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		goto out;
	}
	if (!found) {
		vs_res_error(c->res, 403, "forbidden", "access denied");
		goto out;
	}
	if (!vs_password_verify(f[1], u.password_hash)) {
		vs_res_error(c->res, 403, "forbidden", "wrong password");
		goto out;
	}
	s = vs_device_find_id(&c->app->db, f[0], &target, &found);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		goto out;
	}
	if (!found) {
		vs_res_error(c->res, 404, "not_found", "device not found");
		goto out;
	}
	if (strcmp(target.user_id, d.user_id) != 0) {
		vs_res_error(c->res, 403, "forbidden",
			     "device does not belong to you");
		goto out;
	}
	s = revoke(c, d.user_id, target.id, "device revoked via API");
	if (s != VS_DB_OK)
		vs_h_db_fail(c, s);
	else
		revoked_ok(c);
out:
	cJSON_Delete(body);
	vs_user_free(&u);
	vs_device_free(&target);
	vs_device_free(&d);
}

void
vs_handle_device_register(struct vs_ctx *c)
{
	static const char *const names[] = {
		"name", "username", "password", "vault_id",
	};
	const char *f[4];
	cJSON *body = NULL;
	char *vault = NULL, id[29], token[VS_TOKEN_HEX + 1], now[VS_TS_LEN];
	struct vs_user u;
	struct vs_new_device nd;
	enum vs_cred cr;
	enum vs_db_status s;

	memset(&u, 0, sizeof(u));
	if (!vs_h_json_body(c, &body) || !fields(c, body, names, f, 4))
		goto out;
	if (f[0][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request", "name required");
		goto out;
	}
	if (f[1][0] == '\0' || f[2][0] == '\0') {
		/* 401, not 400: the reference's quirk, kept. */
		vs_res_error(c->res, 401, "unauthorized",
			     "username and password required");
		goto out;
	}
	if (!vs_h_rate_limit(c, &VS_RL_DEVICE_REGISTER, f[1]))
		goto out;
	if (!length_ok(c, f[1], MAX_LOGIN, "login is too long") ||
	    !length_ok(c, f[0], MAX_DEVICE_NAME, "device name is too long") ||
	    !length_ok(c, f[3], MAX_VAULT_ID, "vault id is too long"))
		goto out;
	if (f[3][0] == '\0') {
		vs_res_error(c->res, 400, "invalid_request", "vault_id required");
		goto out;
	}
	if ((vault = trimmed(f[3])) == NULL) {
		vs_res_internal(c->res);
		goto out;
	}
	if (!vault_ok(c, vault))
		goto out;
	cr = vs_user_check_credentials(&c->app->db, f[1], f[2], &u);
	if (cr != VS_CRED_OK) {
		credential_refused(c, cr, &u, false);
		goto out;
	}
	nd.user_id = u.id;
	nd.vault_id = vault;
	nd.name = f[0];
	nd.client_version = "";
	nd.last_ip = NULL;
	nd.set_last_seen = false;
	s = create_device(c, &nd, false, id, token, now);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		goto out;
	}
	vs_res_json(c->res, 200);
	vs_buf_printf(&c->res->body,
		      "{\"device_id\":\"%s\",\"device_token\":\"%s\"}\n", id, token);
	memset(token, 0, sizeof(token));
out:
	free(vault);
	vs_user_free(&u);
	cJSON_Delete(body);
}

/* Push and pull share everything up to the engine call. */
static void
sync_route(struct vs_ctx *c, bool push)
{
	struct vs_device d;
	struct vs_scope sc;

	if (!vs_h_device_auth(c, &d))
		return;
	if (!vs_h_require_user(c, &d) || !vs_h_read_body(c))
		goto out;
	sc.user_id = d.user_id;
	sc.vault_id = d.scope_vault;
	sc.device_id = d.id;
	if (push)
		vs_sync_push(&c->app->db, &c->app->cfg.eff.limits, &sc,
			     c->req->body, c->req->body_len, c->res);
	else
		vs_sync_pull(&c->app->db, &c->app->cfg.eff.limits, &sc,
			     c->req->body, c->req->body_len, c->res);
out:
	vs_device_free(&d);
}

void
vs_handle_push(struct vs_ctx *c)
{
	sync_route(c, true);
}

void
vs_handle_pull(struct vs_ctx *c)
{
	sync_route(c, false);
}
