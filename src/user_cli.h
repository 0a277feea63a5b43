/*
 * user_cli.h - the `user` subcommand: account administration from the
 * command line, safe while the server runs (short BEGIN IMMEDIATE
 * transactions on the shared WAL database).
 *
 *   verstak-sync-server user add --data DIR --username U --email E
 *       (--password-file F | --password-stdin) [--confirmed]
 *   verstak-sync-server user confirm|block|unblock|delete --data DIR
 *       (--id ID | --username U)
 *   verstak-sync-server user list --data DIR [--json]
 *
 * Owns: option parsing, reading the password (never from argv), the
 * same rules as the admin console (D29 names, API.md 13.4 e-mails, 13.5
 * policy) and the console's audit rows (DATA.md 7).
 * Must never: print or log a password or hash, or take a password from
 * the command line.
 *
 * Exit status: 0 done, 1 failed (message on stderr), 2 usage error.
 */
#ifndef VS_USER_CLI_H
#define VS_USER_CLI_H

/* argv[0] is the program, argv[1] is "user". */
int vs_user_cli(int argc, char **argv);

#endif
