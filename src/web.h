/*
 * web.h - the server-rendered HTML pages for people (API.md 5): home,
 * register, login, dashboard, forgot, reset, logout, locale, the result
 * and error pages, and the HTML 404.
 *
 * Owns: the user session cookies of API.md 11 (set at login, cleared
 * at logout), the people's form flows with their flashes, and the HTML
 * 404 page. The page frame and the shared 400/403/429/503 answers are
 * page.c's.
 * Must never: put request or stored data into a page except through
 * the template layer's escaping, answer JSON where the contract wants
 * a page (or the reverse), or set a cookie without Secure over HTTPS.
 */
#ifndef VS_WEB_H
#define VS_WEB_H

#include <stdbool.h>

#include "request.h"
#include "router.h"

/* The localized HTML 404 page. */
void vs_web_not_found(struct vs_ctx *c);

/* GET /api/v1/auth/confirm (the form; nothing is confirmed) and its
 * form POST (API.md 4.2). */
void vs_web_confirm_page(struct vs_ctx *c);
void vs_web_confirm_form(struct vs_ctx *c);

/* Handlers (API.md 5). */
void vs_handle_home(struct vs_ctx *c);
void vs_handle_register_page(struct vs_ctx *c);
void vs_handle_register_result(struct vs_ctx *c);
void vs_handle_login_page(struct vs_ctx *c);
void vs_handle_dashboard(struct vs_ctx *c);
void vs_handle_forgot_page(struct vs_ctx *c);
void vs_handle_forgot_sent(struct vs_ctx *c);
void vs_handle_reset_page(struct vs_ctx *c);
void vs_handle_reset_done(struct vs_ctx *c);
void vs_handle_confirm_result(struct vs_ctx *c);
void vs_handle_logout(struct vs_ctx *c);
void vs_handle_locale(struct vs_ctx *c);

#endif
