/*
 * router.c - see router.h. The table below is the single list of every
 * route the worker answers; nginx passes everything except /static/ here.
 */
#include "router.h"
#include "accounts.h"
#include "admin_web.h"
#include "blobs.h"
#include "client.h"
#include "health.h"
#include "web.h"

#include <stdlib.h>
#include <string.h>

static const struct vs_route routes[] = {
	{ "/api/v1/health", 0, "GET", vs_handle_health },
	{ "/readyz", 0, "GET", vs_handle_health },
	{ "/livez", 0, "GET", vs_handle_livez },
	/* Desktop client routes (API.md 3). */
	{ "/api/client/pair", VS_RT_LEGACY405, "POST", vs_handle_pair },
	{ "/api/auth/test", VS_RT_LEGACY405, "POST", vs_handle_auth_test },
	{ "/api/client/me", 0, "GET", vs_handle_me },
	{ "/api/client/revoke-current", VS_RT_LEGACY405, "POST",
	  vs_handle_revoke_current },
	{ "/api/client/revoke-device", VS_RT_LEGACY405, "POST",
	  vs_handle_revoke_device },
	{ "/api/v1/device/register", VS_RT_LEGACY405, "POST",
	  vs_handle_device_register },
	{ "/api/v1/sync/push", VS_RT_GROUP_COMMIT, "POST", vs_handle_push },
	{ "/api/v1/sync/pull", 0, "POST", vs_handle_pull },
	/* Blobs (API.md 3.8): auth before the method, so the handler
	 * checks the method itself. */
	{ "/api/v1/blobs/", VS_RT_SUBTREE | VS_RT_ANY_METHOD, "GET, POST",
	  vs_handle_blobs },
	/* User account JSON API (API.md 4). */
	{ "/api/v1/auth/register", 0, "POST", vs_handle_api_register },
	{ "/api/v1/auth/confirm", 0, "GET, POST", vs_handle_api_confirm },
	{ "/api/v1/auth/login", 0, "POST", vs_handle_api_login },
	{ "/api/v1/auth/forgot", 0, "POST", vs_handle_api_forgot },
	{ "/api/v1/auth/reset", 0, "POST", vs_handle_api_reset },
	{ "/api/v1/user/devices", 0, "GET", vs_handle_user_devices },
	{ "/api/v1/user/devices/", VS_RT_SUBTREE, "POST",
	  vs_handle_user_device_action },
	/* Web pages (API.md 5). The ANY_METHOD ones answer their own 405:
	 * /register is a 404 for every method while registration is off,
	 * and the no-store pages keep no-store on their 405 too. */
	{ "/", 0, "GET", vs_handle_home },
	{ "/register", VS_RT_ANY_METHOD, "GET, POST", vs_handle_register_page },
	{ "/register/result", 0, "GET", vs_handle_register_result },
	{ "/login", 0, "GET, POST", vs_handle_login_page },
	{ "/dashboard", 0, "GET", vs_handle_dashboard },
	{ "/forgot", 0, "GET, POST", vs_handle_forgot_page },
	{ "/forgot/sent", 0, "GET", vs_handle_forgot_sent },
	{ "/reset", VS_RT_ANY_METHOD, "GET, POST", vs_handle_reset_page },
	{ "/reset/done", VS_RT_ANY_METHOD, "GET", vs_handle_reset_done },
	{ "/confirm/result", VS_RT_ANY_METHOD, "GET", vs_handle_confirm_result },
	{ "/logout", 0, "POST", vs_handle_logout },
	{ "/locale", 0, "POST", vs_handle_locale },
	/* Admin console (API.md 7). ANY_METHOD: the handlers answer their
	 * own 405 so that it carries no-store like every /admin answer;
	 * the Allow lists are still the ones named here. */
	{ "/admin", VS_RT_ANY_METHOD, "GET", vs_handle_admin_root },
	{ "/admin/login", VS_RT_ANY_METHOD, "GET, POST", vs_handle_admin_login },
	{ "/admin/logout", VS_RT_ANY_METHOD, "POST", vs_handle_admin_logout },
	{ "/admin/dashboard", VS_RT_ANY_METHOD, "GET",
	  vs_handle_admin_dashboard },
	{ "/admin/api/stats", VS_RT_ANY_METHOD, "GET",
	  vs_handle_admin_api_stats },
};
static const size_t n_routes = sizeof(routes) / sizeof(routes[0]);

/* Subtree roots that redirect to their slash form when requested without
 * it (API.md 1.6): only those without an exact route of their own
 * (/api/v1/user/devices, /admin/api/keys and /admin/api/users have one). */
static const char *const subtree_roots[] = {
	"/static/", "/api/v1/blobs/", "/admin/vault/",
};

const struct vs_route *
vs_route_find(const char *path)
{
	const struct vs_route *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < n_routes; i++) {
		const struct vs_route *r = &routes[i];
		size_t len = strlen(r->path);
		if (!(r->flags & VS_RT_SUBTREE)) {
			if (strcmp(path, r->path) == 0)
				return r;
		} else if (strncmp(path, r->path, len) == 0 && len > best_len) {
			best = r;
			best_len = len;
		}
	}
	return best;
}

bool
vs_route_groups_commits(const char *method, const char *uri)
{
	char path[64];
	size_t n;
	const struct vs_route *r;

	if (method == NULL || uri == NULL)
		return false;
	n = strcspn(uri, "?");
	if (n >= sizeof(path))
		return false;
	memcpy(path, uri, n);
	path[n] = '\0';
	r = vs_route_find(path);
	return r != NULL && (r->flags & VS_RT_GROUP_COMMIT) &&
	       !(r->flags & VS_RT_SUBTREE) && vs_method_allowed(r->allow, method);
}

bool
vs_method_allowed(const char *allow, const char *method)
{
	size_t mlen = strlen(method);
	const char *p = allow;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == mlen && strncmp(p, method, n) == 0)
			return true;
		if (end == NULL)
			break;
		p = end + 1;
		while (*p == ' ')
			p++;
	}
	return false;
}

static void
redirect_keep_query(struct vs_ctx *c, const char *path)
{
	struct vs_buf loc;

	vs_buf_init(&loc);
	vs_buf_puts(&loc, path);
	if (c->req->query[0] != '\0') {
		vs_buf_puts(&loc, "?");
		vs_buf_puts(&loc, c->req->query);
	}
	if (loc.oom)
		vs_res_internal(c->res);
	else
		vs_res_redirect(c->res, 301, loc.data);
	vs_buf_free(&loc);
}

/* JSON under /api/, the localized page elsewhere. */
static void
not_found(struct vs_ctx *c, const char *path)
{
	if (strncmp(path, "/api/", 5) == 0)
		vs_res_not_found(c->res, path);
	else
		vs_web_not_found(c);
}

static bool
subtree_root_redirect(struct vs_ctx *c)
{
	size_t plen = strlen(c->req->path);

	for (size_t i = 0; i < sizeof(subtree_roots) / sizeof(*subtree_roots); i++) {
		const char *root = subtree_roots[i];
		if (strlen(root) == plen + 1 &&
		    strncmp(root, c->req->path, plen) == 0) {
			redirect_keep_query(c, root);
			return true;
		}
	}
	return false;
}

/* A path that can go into Location as it is (printable ASCII, nothing
 * that would change its meaning once re-parsed as a URL). */
static bool
location_safe(const char *p)
{
	for (; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
		    strchr("%?#\"\\", *p) != NULL)
			return false;
	return true;
}

void
vs_route(struct vs_ctx *c)
{
	const struct vs_route *r;
	char *clean;

	/* Non-canonical paths are answered with their cleaned form, as the
	 * reference's router does; this also keeps "/a/../b" from reaching
	 * a handler under a name it did not ask for. The raw path is
	 * compared so that an encoded slash (%2F) is not mistaken for one. */
	clean = vs_path_clean(c->req->raw_path);
	if (clean == NULL) {
		vs_res_internal(c->res);
		return;
	}
	if (strcmp(clean, c->req->raw_path) != 0) {
		redirect_keep_query(c, clean);
		free(clean);
		return;
	}
	free(clean);
	/* Dot segments or doubled slashes that only appear after decoding
	 * (%2e%2e, %2F) must not reach a handler: redirect like the
	 * reference when the cleaned decoded path needs no escaping, else 404. */
	clean = vs_path_clean(c->req->path);
	if (clean == NULL) {
		vs_res_internal(c->res);
		return;
	}
	if (strcmp(clean, c->req->path) != 0) {
		if (location_safe(clean))
			redirect_keep_query(c, clean);
		else
			not_found(c, clean);
		free(clean);
		return;
	}
	free(clean);

	r = vs_route_find(c->req->path);
	if (r == NULL) {
		if (!subtree_root_redirect(c))
			not_found(c, c->req->path);
		return;
	}
	if (!(r->flags & VS_RT_ANY_METHOD) &&
	    !vs_method_allowed(r->allow, c->req->method)) {
		vs_res_method_not_allowed(c->res, r->allow,
					  (r->flags & VS_RT_LEGACY405) != 0);
		return;
	}
	r->fn(c);
}
