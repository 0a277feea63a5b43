/*
 * handler.c - see handler.h.
 */
#include "handler.h"
#include "json.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

bool
vs_h_read_body(struct vs_ctx *c)
{
	size_t cap = (size_t)c->app->cfg.eff.limits.max_json_body;

	switch (vs_request_read_body(c->req, cap)) {
	case VS_BODY_OK:
		return true;
	case VS_BODY_TOO_LARGE:
		vs_res_error(c->res, 413, "request_too_large",
			     "request body is too large");
		return false;
	case VS_BODY_IO:
		break;
	}
	/* The front server went away mid-body: nothing sensible arrived. */
	vs_res_error(c->res, 400, "invalid_json", "invalid JSON request");
	return false;
}

bool
vs_h_json_body(struct vs_ctx *c, cJSON **out)
{
	cJSON *v = NULL;

	*out = NULL;
	if (!vs_h_read_body(c))
		return false;
	switch (vs_json_parse(c->req->body, c->req->body_len, &v)) {
	case VS_JSON_OK:
		break;
	case VS_JSON_TRAILING:
		vs_res_error(c->res, 400, "trailing_json",
			     "request must contain one JSON value");
		return false;
	case VS_JSON_INVALID:
		vs_res_error(c->res, 400, "invalid_json", "invalid JSON request");
		return false;
	}
	if (!vs_json_is_object_or_null(v)) {
		cJSON_Delete(v);
		vs_res_error(c->res, 400, "invalid_json", "invalid JSON request");
		return false;
	}
	*out = v;
	return true;
}

void
vs_h_db_fail(struct vs_ctx *c, enum vs_db_status s)
{
	if (c->app->db.tx_depth > 0)
		vs_db_rollback(&c->app->db);
	if (s == VS_DB_BUSY)
		vs_res_busy(c->res);
	else
		vs_res_internal(c->res);
}

bool
vs_h_rate_limit(struct vs_ctx *c, const struct vs_rl_action *a,
		const char *account)
{
	long retry = 1;
	char buf[32];

	switch (vs_rate_limit(&c->app->db, a, c->req->client_ip, account, &retry)) {
	case VS_RL_OK:
		return true;
	case VS_RL_LIMITED:
		vs_res_error(c->res, 429, "rate_limited", "too many attempts");
		snprintf(buf, sizeof(buf), "%ld", retry < 1 ? 1 : retry);
		vs_res_header(c->res, "Retry-After", buf);
		return false;
	case VS_RL_BUSY:
		vs_res_busy(c->res);
		return false;
	case VS_RL_ERROR:
		break;
	}
	vs_res_internal(c->res);
	return false;
}

/* The credential: Authorization without one leading "Bearer " (exact),
 * else the api_key query parameter. */
static const char *
credential_of(const struct vs_request *r)
{
	const char *a = r->authorization;
	const char *q;

	if (strncmp(a, "Bearer ", 7) == 0)
		a += 7;
	if (*a != '\0')
		return a;
	q = vs_request_query(r, "api_key");
	return q == NULL ? "" : q;
}

/* The lookups of device authentication; answers and frees d when the
 * device is refused. */
static bool
device_lookup(struct vs_ctx *c, const char *cred, struct vs_device *d)
{
	bool found = false, blocked = false, user_found = false;
	enum vs_db_status s;

	s = vs_device_find_credential(&c->app->db, cred, d, &found);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		return false;
	}
	if (!found) {
		vs_res_error(c->res, 401, "unauthorized", "invalid API key");
		return false;
	}
	if (d->revoked_at[0] != '\0') {
		vs_res_error(c->res, 401, "unauthorized", "device revoked");
		goto refuse;
	}
	if (d->user_id[0] != '\0') {
		s = vs_device_owner_blocked(&c->app->db, d->user_id, &blocked,
					    &user_found);
		if (s != VS_DB_OK) {
			vs_h_db_fail(c, s);
			goto refuse;
		}
		if (!user_found) {
			/* The contract answers 500 for a device whose user
			 * row is gone. */
			vs_log_error("device %s belongs to a missing user", d->id);
			vs_res_internal(c->res);
			goto refuse;
		}
		if (blocked) {
			vs_res_error(c->res, 403, "forbidden", "user blocked");
			goto refuse;
		}
	}
	return true;
refuse:
	vs_device_free(d);
	return false;
}

bool
vs_h_device_auth(struct vs_ctx *c, struct vs_device *d)
{
	const char *cred = credential_of(c->req);
	struct vs_db *db = &c->app->db;
	enum vs_db_status s;
	bool ok;

	memset(d, 0, sizeof(*d));
	if (*cred == '\0') {
		vs_res_error(c->res, 401, "unauthorized", "API key required");
		return false;
	}
	/* Device and owner are read in one snapshot: one read transaction
	 * (two file locks, one WAL header check) instead of one for each
	 * statement, on every authenticated request. */
	s = vs_db_begin_read(db);
	if (s != VS_DB_OK) {
		vs_h_db_fail(c, s);
		return false;
	}
	ok = device_lookup(c, cred, d);
	if (db->tx_depth > 0 && (s = vs_db_commit(db)) != VS_DB_OK && ok) {
		vs_h_db_fail(c, s);
		vs_device_free(d);
		return false;
	}
	if (!ok)
		return false;
	vs_device_touch(db, d);	/* a write, at most once a minute */
	return true;
}

bool
vs_h_require_user(struct vs_ctx *c, const struct vs_device *d)
{
	if (d->user_id[0] != '\0')
		return true;
	vs_res_error(c->res, 403, "forbidden",
		     "device is not associated with a user");
	return false;
}
