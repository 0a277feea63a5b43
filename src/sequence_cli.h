/*
 * sequence_cli.h - the `sequence` subcommand (see sequence_cli.c).
 */
#ifndef VS_SEQUENCE_CLI_H
#define VS_SEQUENCE_CLI_H

/* `verstak-sync-server sequence show|advance ...`: the exit status. */
int vs_sequence_cli(int argc, char **argv);

#endif
