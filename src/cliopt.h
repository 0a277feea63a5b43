/*
 * cliopt.h - the option syntax shared by the CLI subcommands (user,
 * smtp): "--name value", "--name=value" and "--flag", each option
 * accepted only by the subcommands its table entry names.
 *
 * Owns: walking argv into a caller's struct through a table of offsets.
 * Must never: print, exit, or know what an option means.
 */
#ifndef VS_CLIOPT_H
#define VS_CLIOPT_H

#include <stdbool.h>
#include <stddef.h>

struct vs_cliopt {
	const char *name;   /* without the leading "--" */
	bool takes_value;   /* value: a const char * field; else a bool */
	unsigned cmds;      /* bit mask of the subcommands that accept it */
	size_t off;         /* offset of the field in the caller's struct */
};

#define VS_CLIOPT_STR(type, n, field, c) { n, true, c, offsetof(type, field) }
#define VS_CLIOPT_FLAG(type, n, field, c) { n, false, c, offsetof(type, field) }

enum vs_cliopt_rc {
	VS_CLIOPT_OK = 0,
	VS_CLIOPT_HELP,     /* --help or -h */
	VS_CLIOPT_ERROR,    /* err says what is wrong */
};

/* Parses argv[first..argc) for subcommand bit cmdbit into the struct at
 * base. A value option given twice is an error. */
enum vs_cliopt_rc vs_cliopt_parse(int argc, char **argv, int first,
				  const struct vs_cliopt *defs, size_t ndefs,
				  unsigned cmdbit, void *base,
				  char *err, size_t errlen);

#endif
