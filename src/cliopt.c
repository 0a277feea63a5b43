/*
 * cliopt.c - see cliopt.h.
 */
#include "cliopt.h"

#include <stdio.h>
#include <string.h>

static const struct vs_cliopt *
find_opt(const struct vs_cliopt *defs, size_t n, const char *name,
	 size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(defs[i].name) == len &&
		    strncmp(defs[i].name, name, len) == 0)
			return &defs[i];
	return NULL;
}

enum vs_cliopt_rc
vs_cliopt_parse(int argc, char **argv, int first,
		const struct vs_cliopt *defs, size_t ndefs, unsigned cmdbit,
		void *base, char *err, size_t errlen)
{
	for (int i = first; i < argc; i++) {
		const char *arg = argv[i], *eq, *val;
		const struct vs_cliopt *d;
		const char **slot;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
			return VS_CLIOPT_HELP;
		if (strncmp(arg, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument: %s", arg);
			return VS_CLIOPT_ERROR;
		}
		eq = strchr(arg + 2, '=');
		d = find_opt(defs, ndefs, arg + 2,
			     eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
		if (d == NULL || !(d->cmds & cmdbit)) {
			snprintf(err, errlen, "unknown option for this command: %s",
				 arg);
			return VS_CLIOPT_ERROR;
		}
		if (!d->takes_value) {
			if (eq != NULL) {
				snprintf(err, errlen, "%s takes no value", arg);
				return VS_CLIOPT_ERROR;
			}
			*(bool *)(void *)((char *)base + d->off) = true;
			continue;
		}
		if (eq != NULL) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			snprintf(err, errlen, "%s needs a value", arg);
			return VS_CLIOPT_ERROR;
		}
		slot = (const char **)(void *)((char *)base + d->off);
		if (*slot != NULL) {
			snprintf(err, errlen, "option given twice: %s", arg);
			return VS_CLIOPT_ERROR;
		}
		*slot = val;
	}
	return VS_CLIOPT_OK;
}
