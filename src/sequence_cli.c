/*
 * sequence_cli.c - `verstak-sync-server sequence show|advance`, the
 * operator's tool after restoring an older copy of server.db (sync.h).
 *
 * Owns: the command line of the two subcommands and their output.
 * Must never: touch the operation log itself (sync.c does, in one write
 * transaction), or create a data directory that does not exist.
 */
#include "sequence_cli.h"
#include "app.h"
#include "log.h"
#include "sync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int
usage(void)
{
	fprintf(stderr,
		"usage: verstak-sync-server sequence show --data DIR\n"
		"       verstak-sync-server sequence advance --data DIR --by N\n"
		"\n"
		"show     the highest operation sequence this server has issued\n"
		"advance  move the sequence counter N past it, after restoring an\n"
		"         older copy of server.db: devices hold cursors from the\n"
		"         newer log, and pull answers them 409 cursor_ahead until\n"
		"         new operations are numbered above every such cursor.\n"
		"         Choose N larger than the number of operations pushed\n"
		"         since the backup was taken (when unsure, 1000000).\n");
	return 2;
}

static bool
parse_by(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 ||
	    v > VS_SYNC_ADVANCE_MAX)
		return false;
	*out = (int64_t)v;
	return true;
}

static const char *
db_problem(enum vs_db_status s)
{
	return s == VS_DB_BUSY ? "the database is busy; try again" :
		"database error (see the log above)";
}

int
vs_sequence_cli(int argc, char **argv)
{
	const char *data = NULL, *cmd = argc > 2 ? argv[2] : "";
	bool advance = strcmp(cmd, "advance") == 0;
	int64_t by = 0, before, after;
	enum vs_db_status s;
	struct vs_app app;
	struct stat sb;
	char err[512], dbfile[4096];

	vs_log_set_tag("verstak-sequence");
	if (!advance && strcmp(cmd, "show") != 0)
		return usage();
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--data") == 0 && i + 1 < argc && data == NULL)
			data = argv[++i];
		else if (advance && strcmp(argv[i], "--by") == 0 && i + 1 < argc &&
			 by == 0) {
			if (!parse_by(argv[++i], &by)) {
				fprintf(stderr, "verstak-sync-server sequence: --by"
					" takes a whole number from 1 to %" PRId64 "\n",
					VS_SYNC_ADVANCE_MAX);
				return 2;
			}
		} else {
			return usage();
		}
	}
	if (data == NULL || (advance && by == 0))
		return usage();
	/* Only an existing server's data: a mistyped --data must not get
	 * a fresh database that then reports sequence 0. */
	if (snprintf(dbfile, sizeof(dbfile), "%s/server.db", data) >=
	    (int)sizeof(dbfile) || stat(dbfile, &sb) != 0 ||
	    !S_ISREG(sb.st_mode)) {
		fprintf(stderr, "verstak-sync-server sequence: no server.db in %s\n",
			data);
		return 1;
	}
	if (!vs_app_open(&app, data, false, err, sizeof(err))) {
		fprintf(stderr, "verstak-sync-server sequence: %s\n", err);
		vs_app_close(&app);
		return 1;
	}
	if (advance) {
		s = vs_sync_advance(&app.db, by, &before, &after);
		if (s == VS_DB_OK)
			printf("sequence advanced from %" PRId64 " to %" PRId64
			       "; the next operation gets %" PRId64 "\n",
			       before, after, after + 1);
	} else {
		s = vs_sync_issued(&app.db, &before);
		if (s == VS_DB_OK)
			printf("highest sequence issued: %" PRId64 "\n", before);
	}
	vs_app_close(&app);
	if (s != VS_DB_OK) {
		fprintf(stderr, "verstak-sync-server sequence: %s\n", db_problem(s));
		return 1;
	}
	return 0;
}
