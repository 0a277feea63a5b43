/*
 * admin_cli.h - administrator bootstrap from the command line and the
 * environment (DATA.md 2): --admin-user with one password source, and
 * VERSTAK_BOOTSTRAP_ADMIN_USER / _PASSWORD / VERSTAK_REQUIRE_ADMIN.
 *
 * Owns: reading the password (argv, file or stdin, trimmed), hashing it,
 * storing it in config.yml, and ending the replaced admin's sessions (D31).
 * Must never: echo or log a password.
 */
#ifndef VS_ADMIN_CLI_H
#define VS_ADMIN_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "db.h"
#include "options.h"

/* Sets the admin named on the command line, or the bootstrap admin from
 * the environment when config.yml has none. *changed_user receives a
 * malloc'd copy of the admin whose password was set (NULL if none), whose
 * sessions the caller ends once the database is open. */
bool vs_admin_bootstrap(struct vs_config *cfg, const struct vs_options *o,
			char **changed_user, char *err, size_t errlen);

/* Deletes every admin session of username (one write transaction). */
bool vs_admin_drop_sessions(struct vs_db *db, const char *username);

#endif
