/*
 * smtp_cli.h - the `smtp` subcommand: mail settings from the command
 * line, safe while the server runs (one short BEGIN IMMEDIATE write).
 *
 *   verstak-sync-server smtp set --data DIR [--host H] [--port P]
 *       [--user U] [--pass-file F | --pass-stdin]
 *       [--security none|starttls|tls] [--from ADDR] [--server-url URL]
 *   verstak-sync-server smtp show --data DIR
 *   verstak-sync-server smtp test --data DIR [--to ADDR]
 *
 * Owns: option parsing and checking, writing the given keys of
 * server_smtp_config (DATA.md 6) with the smtp_settings_updated audit
 * row, printing the settings without the password, and the synchronous
 * test mail with its smtp_test_passed / smtp_test_failed audit row
 * (DATA.md 7).
 * Must never: take the password from argv, print or log it, or hold a
 * transaction while mail is being sent.
 *
 * Exit status: 0 done, 1 failed (message on stderr), 2 usage error.
 */
#ifndef VS_SMTP_CLI_H
#define VS_SMTP_CLI_H

/* argv[0] is the program, argv[1] is "smtp". */
int vs_smtp_cli(int argc, char **argv);

#endif
