/*
 * health.h - operational endpoints (API.md 6): /api/v1/health and
 * /readyz (database reachable, schema version, blobs/ writable) and
 * /livez (no checks).
 * Must never: expose a path or a secret in its answer.
 */
#ifndef VS_HEALTH_H
#define VS_HEALTH_H

#include <stdbool.h>
#include "router.h"

struct vs_health {
	bool database_reachable;
	bool blob_storage_writable;
	int schema_version;
};

/* Runs the checks (the blob probe is cached for a few seconds, D38). */
void vs_health_check(struct vs_app *app, struct vs_health *h);
void vs_handle_health(struct vs_ctx *c);
void vs_handle_livez(struct vs_ctx *c);

#endif
