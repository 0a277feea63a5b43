/*
 * admin_web.h - the admin console, first slice (API.md 7): sign-in
 * (GET,POST /admin/login), GET /admin, sign-out (POST /admin/logout),
 * the dashboard (GET /admin/dashboard) and GET /admin/api/stats.
 *
 * Owns: the admin session check every console route starts with (an
 * `admin`-scope session whose subject is still an admin in config.yml,
 * bound to that admin's current password hash, D31); the admin cookies
 * of API.md 11 (Path /admin); the admin sign-in flow (anonymous CSRF,
 * rate limit `login` keyed by the user name as typed, exact user name
 * and bcrypt against every config.yml entry of that name); the
 * dashboard's figures, readiness and warnings; the stats JSON; and the
 * console's answers without a session (302 /admin/login for pages, 401
 * JSON for the /admin/api/ routes, D7).
 * Must never: accept a user session (or a token of any other scope) as
 * an admin one, read or touch the user_session cookie, show a token,
 * password hash, SMTP password or op payload, put a value into a page
 * except through the template layer's escaping, or answer an /admin
 * request without Cache-Control: no-store.
 */
#ifndef VS_ADMIN_WEB_H
#define VS_ADMIN_WEB_H

#include <stdbool.h>

#include "router.h"
#include "session.h"

#define VS_ADMIN_SESSION_COOKIE "admin_session"
#define VS_ADMIN_COOKIE_PATH "/admin"

/* The admin signed in with the request's admin_session cookie: *valid
 * false when there is no usable admin session, or its admin has left
 * config.yml or has another password hash now (that session is then
 * deleted, D31). On success s is filled (free it) and last_seen
 * refreshed. VS_DB_ERROR also when config.yml cannot be re-read. */
enum vs_db_status vs_admin_session(struct vs_ctx *c, struct vs_session *s,
				   bool *valid);

/* Handlers (API.md 7.1, 7.4). */
void vs_handle_admin_login(struct vs_ctx *c);
void vs_handle_admin_root(struct vs_ctx *c);
void vs_handle_admin_logout(struct vs_ctx *c);
void vs_handle_admin_dashboard(struct vs_ctx *c);
void vs_handle_admin_api_stats(struct vs_ctx *c);

#endif
