/*
 * router.h - maps (method, path) to a handler, API.md 1.5 and 1.6.
 *
 * Owns: the route table, exact and subtree matching, 301 for
 * non-canonical paths and for subtree roots without their slash, the two
 * 405 styles (generic with Allow; the legacy client routes' "POST
 * required", also with Allow: POST, D42), and the JSON/HTML 404 split.
 * Must never: parse bodies or touch SQL; handlers do their own work.
 */
#ifndef VS_ROUTER_H
#define VS_ROUTER_H

#include "app.h"
#include "request.h"
#include "response.h"

struct vs_ctx {
	struct vs_app *app;
	struct vs_request *req;
	struct vs_response *res;
};

typedef void (*vs_handler)(struct vs_ctx *c);

enum {
	VS_RT_SUBTREE = 1,    /* path ends in '/', matches everything below */
	VS_RT_LEGACY405 = 2,  /* 405 body "POST required" */
	VS_RT_ANY_METHOD = 4, /* the handler checks the method itself */
	VS_RT_GROUP_COMMIT = 8, /* the worker may group its commits (worker.c) */
};

struct vs_route {
	const char *path;
	unsigned flags;
	const char *allow;    /* "GET", "POST", "GET, POST" */
	vs_handler fn;
};

/* Finds the route for a cleaned path; NULL if none. */
const struct vs_route *vs_route_find(const char *path);
/* True if method is one of the comma-separated list in allow. */
bool vs_method_allowed(const char *allow, const char *method);
/* Whether a request with this method and raw REQUEST_URI goes to a
 * VS_RT_GROUP_COMMIT route. Asked by the worker before the request is
 * parsed: a path that is not already canonical answers false. */
bool vs_route_groups_commits(const char *method, const char *uri);
/* Dispatches one request, filling c->res. */
void vs_route(struct vs_ctx *c);

#endif
