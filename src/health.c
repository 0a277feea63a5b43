/*
 * health.c - see health.h.
 */
#include "health.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The probe creates and removes a file; doing that on every health call
 * would turn a read-only endpoint into disk writes (D38). */
#define PROBE_CACHE_SECONDS 5

static bool
probe_blobs(const char *blobs_dir)
{
	char name[8 + 32 + 1] = ".health-";
	char *path;
	int fd;
	bool ok;

	if (!vs_random_hex(16, name + 8))
		return false;
	path = vs_path_join(blobs_dir, name);
	if (path == NULL)
		return false;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	ok = fd >= 0;
	if (fd >= 0) {
		if (close(fd) != 0)
			ok = false;
		if (unlink(path) != 0)
			ok = false;
	} else {
		vs_log_warn("health: blobs/ is not writable: %s", strerror(errno));
	}
	free(path);
	return ok;
}

void
vs_health_check(struct vs_app *app, struct vs_health *h)
{
	time_t now = time(NULL);
	int v = vs_db_user_version(&app->db);

	h->database_reachable = v >= 0;
	h->schema_version = v >= 0 ? v : 0;
	if (app->probe_at == 0 || now - app->probe_at >= PROBE_CACHE_SECONDS ||
	    now < app->probe_at) {
		app->probe_ok = probe_blobs(app->blobs_dir);
		app->probe_at = now;
	}
	h->blob_storage_writable = app->probe_ok;
}

void
vs_handle_health(struct vs_ctx *c)
{
	struct vs_health h;
	char ts[VS_TS_LEN];
	bool ok;
	long long uptime;

	vs_health_check(c->app, &h);
	ok = h.database_reachable && h.blob_storage_writable;
	vs_now_ts(ts);
	uptime = (long long)(time(NULL) - c->app->started_at);
	if (uptime < 0)
		uptime = 0;
	vs_res_json(c->res, ok ? 200 : 503);
	vs_buf_printf(&c->res->body,
		      "{\"status\":\"%s\",\"version\":\"%s\",\"build_commit\":",
		      ok ? "ok" : "degraded", vs_version());
	vs_json_put_str(&c->res->body, vs_build_commit());
	vs_buf_printf(&c->res->body,
		      ",\"uptime_seconds\":%lld,\"database_reachable\":%s,"
		      "\"blob_storage_writable\":%s,\"schema_version\":%d,"
		      "\"server_time\":\"%s\"}\n",
		      uptime, h.database_reachable ? "true" : "false",
		      h.blob_storage_writable ? "true" : "false",
		      h.schema_version, ts);
}

void
vs_handle_livez(struct vs_ctx *c)
{
	char ts[VS_TS_LEN];

	vs_now_ts(ts);
	vs_res_json(c->res, 200);
	vs_buf_printf(&c->res->body,
		      "{\"status\":\"ok\",\"server_time\":\"%s\"}\n", ts);
}
