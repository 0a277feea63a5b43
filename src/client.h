/*
 * client.h - the desktop client's routes (API.md 3): pairing, credential
 * test, `me`, revocation, legacy enrolment, and the HTTP side of push and
 * pull (the log itself is sync.c's).
 *
 * Owns: each route's order of checks, status codes and answer fields.
 * Must never: take a user or vault from a request body for sync (the
 * scope comes from the device token), or echo request input in errors.
 */
#ifndef VS_CLIENT_H
#define VS_CLIENT_H

#include "router.h"

void vs_handle_pair(struct vs_ctx *c);
void vs_handle_auth_test(struct vs_ctx *c);
void vs_handle_me(struct vs_ctx *c);
void vs_handle_revoke_current(struct vs_ctx *c);
void vs_handle_revoke_device(struct vs_ctx *c);
void vs_handle_device_register(struct vs_ctx *c);
void vs_handle_push(struct vs_ctx *c);
void vs_handle_pull(struct vs_ctx *c);

#endif
