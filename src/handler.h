/*
 * handler.h - what every JSON handler needs besides its own logic: the
 * capped body read and decode of API.md 1.4 with its error answers, the
 * 429 answer with Retry-After, the mapping of store failures to 500/503,
 * and device authentication (API.md 2) with its sync scope.
 *
 * Must never: contain a route's own rules.
 */
#ifndef VS_HANDLER_H
#define VS_HANDLER_H

#include <stdbool.h>
#include <cjson/cJSON.h>

#include "db.h"
#include "devices.h"
#include "ratelimit.h"
#include "router.h"

/* Reads the body, capped at max_json_body; false when refused (413, or
 * 400 invalid_json when the body broke off; answer written). */
bool vs_h_read_body(struct vs_ctx *c);
/* Reads the body (capped at max_json_body) and decodes one JSON object
 * (or null). On failure the error is already answered and false
 * returned; on success *out must be freed with cJSON_Delete. */
bool vs_h_json_body(struct vs_ctx *c, cJSON **out);

/* Answers a store failure: 503 for busy, 500 otherwise. */
void vs_h_db_fail(struct vs_ctx *c, enum vs_db_status s);

/* Runs a rate limit; false when refused or failed (answer written:
 * 429 JSON with Retry-After, or 500/503). */
bool vs_h_rate_limit(struct vs_ctx *c, const struct vs_rl_action *a,
		     const char *account);

/* Device authentication (API.md 2). False when refused (answer written). */
bool vs_h_device_auth(struct vs_ctx *c, struct vs_device *d);
/* Sync scope: false with 403 when the device has no user. */
bool vs_h_require_user(struct vs_ctx *c, const struct vs_device *d);

#endif
