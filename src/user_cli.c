/*
 * user_cli.c - the `user` subcommand (see user_cli.h).
 *
 * Owns: parsing `user add|confirm|block|unblock|list|delete`, reading a
 * new password from a file or standard input, and running each change
 * as one short write transaction together with its audit row, exactly
 * as the admin console would (DATA.md 7, 8).
 *
 * Must never: accept a password from argv, echo, print or log a
 * password, hold a transaction across bcrypt or terminal input, or print
 * control characters from stored names to the terminal.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* fileno, tcgetattr */
#endif
#include "user_cli.h"
#include "audit.h"
#include "cliopt.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "password.h"
#include "users.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define PROG "verstak-sync-server user"
/* Enough for any policy-conforming password plus a newline; larger
 * input is refused rather than silently cut. */
#define PASS_READ_MAX 4096

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

enum cmd { CMD_ADD, CMD_CONFIRM, CMD_BLOCK, CMD_UNBLOCK, CMD_DELETE, CMD_LIST };

static const char *const cmd_names[] = {
	"add", "confirm", "block", "unblock", "delete", "list",
};

struct opts {
	enum cmd cmd;
	const char *data, *username, *email, *password_file, *id;
	bool password_stdin, confirmed, json;
};

/* Which commands accept an option (bit per enum cmd). */
#define ALL_CMDS 0x3fu
#define BIT(c) (1u << (c))
#define TARGET_CMDS (BIT(CMD_CONFIRM) | BIT(CMD_BLOCK) | BIT(CMD_UNBLOCK) | \
		     BIT(CMD_DELETE))

#define OSTR(n, field, c) VS_CLIOPT_STR(struct opts, n, field, c)
#define OFLAG(n, field, c) VS_CLIOPT_FLAG(struct opts, n, field, c)

static const struct vs_cliopt optdefs[] = {
	OSTR("data", data, ALL_CMDS),
	OSTR("username", username, BIT(CMD_ADD) | TARGET_CMDS),
	OSTR("email", email, BIT(CMD_ADD)),
	OSTR("password-file", password_file, BIT(CMD_ADD)),
	OSTR("id", id, TARGET_CMDS),
	OFLAG("password-stdin", password_stdin, BIT(CMD_ADD)),
	OFLAG("confirmed", confirmed, BIT(CMD_ADD)),
	OFLAG("json", json, BIT(CMD_LIST)),
};

static void
usage(FILE *f)
{
	fputs("usage: verstak-sync-server user add --data DIR --username NAME"
	      " --email EMAIL\n"
	      "           (--password-file FILE | --password-stdin)"
	      " [--confirmed]\n"
	      "       verstak-sync-server user confirm|block|unblock|delete"
	      " --data DIR\n"
	      "           (--id ID | --username NAME)\n"
	      "       verstak-sync-server user list --data DIR [--json]\n"
	      "\n"
	      "The password is read from FILE or standard input (one trailing"
	      " newline is\nremoved), never from the command line: 8 to 72"
	      " bytes.\n"
	      "Exit status: 0 done, 1 failed, 2 usage error.\n", f);
}

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Prints the problem and the usage text on stderr; returns 2. */
static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	usage(stderr);
	return 2;
}

static bool
parse_cmd(const char *s, enum cmd *c)
{
	for (size_t i = 0; i < sizeof(cmd_names) / sizeof(cmd_names[0]); i++)
		if (strcmp(s, cmd_names[i]) == 0) {
			*c = (enum cmd)i;
			return true;
		}
	return false;
}

/* Parses "--name value", "--name=value" and "--flag"; returns 0 when
 * the options are fine, else the exit status (2, or -1 for --help). */
static int
parse_opts(int argc, char **argv, struct opts *o)
{
	char err[256];

	switch (vs_cliopt_parse(argc, argv, 3, optdefs,
				sizeof(optdefs) / sizeof(optdefs[0]), BIT(o->cmd),
				o, err, sizeof(err))) {
	case VS_CLIOPT_OK:
		return 0;
	case VS_CLIOPT_HELP:
		return -1;
	case VS_CLIOPT_ERROR:
		break;
	}
	return usage_error("%s", err);
}

/* Per-command requirements after parsing. */
static int
check_opts(const struct opts *o)
{
	if (o->data == NULL || o->data[0] == '\0')
		return usage_error("%s", "--data DIR is required");
	switch (o->cmd) {
	case CMD_ADD:
		if (o->username == NULL || o->email == NULL)
			return usage_error("%s", "add needs --username and"
					   " --email");
		if ((o->password_file != NULL) == o->password_stdin)
			return usage_error("%s", "add needs exactly one of"
					   " --password-file and"
					   " --password-stdin");
		break;
	case CMD_LIST:
		break;
	default:
		if ((o->id != NULL) == (o->username != NULL))
			return usage_error("%s", "give exactly one of --id and"
					   " --username");
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                             */
/* ------------------------------------------------------------------ */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
}

/* Stored names may predate the D29 rules: control bytes are shown as
 * '?' so they cannot drive the terminal. */
static void
put_safe(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s, f);
}

static void
say_user(const char *what, const struct vs_user *u, const char *tail)
{
	printf("%s user %s (", what, u->id);
	put_safe(stdout, u->username);
	printf(")%s\n", tail);
}

/* stdout may be a closed pipe or a full disk: the status must say so. */
static int
finish_output(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fail("cannot write the output: %s", strerror(errno));
		return 1;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Password input                                                     */
/* ------------------------------------------------------------------ */

/* Reads all of fd into buf (NUL-terminated); false when unreadable or
 * larger than the buffer. */
static bool
read_all(int fd, char *buf, size_t cap, size_t *len)
{
	*len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + *len, cap - 1 - *len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("cannot read the password: %s", strerror(errno));
			return false;
		}
		if (n == 0)
			break;
		*len += (size_t)n;
		if (*len == cap - 1) {
			fail("%s", "the password input is too large");
			return false;
		}
	}
	buf[*len] = '\0';
	return true;
}

/* A terminal: prompt on stderr, no echo, one line. */
static bool
read_tty(char *buf, size_t cap, size_t *len)
{
	struct termios old, quiet;
	bool echo_off, ok = true;

	fputs("Password: ", stderr);
	fflush(stderr);
	echo_off = tcgetattr(STDIN_FILENO, &old) == 0;
	if (echo_off) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
	}
	*len = 0;
	while (*len < cap - 1) {
		char c;
		ssize_t n = read(STDIN_FILENO, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("cannot read the password: %s", strerror(errno));
			ok = false;
			break;
		}
		if (n == 0 || c == '\n')
			break;
		buf[(*len)++] = c;
	}
	buf[*len] = '\0';
	if (echo_off)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputs("\n", stderr);
	return ok;
}

/* Reads the new password; removes one trailing newline ("\n" or
 * "\r\n") and nothing else, since spaces may be part of it. */
static bool
read_password(const struct opts *o, char *buf, size_t cap)
{
	size_t len = 0;
	bool ok;

	if (o->password_file != NULL) {
		int fd = open(o->password_file, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fail("cannot open the password file: %s",
			     strerror(errno));
			return false;
		}
		ok = read_all(fd, buf, cap, &len);
		(void)close(fd);	/* read-only: nothing to lose */
	} else if (isatty(STDIN_FILENO)) {
		ok = read_tty(buf, cap, &len);
	} else {
		ok = read_all(STDIN_FILENO, buf, cap, &len);
	}
	if (!ok)
		return false;
	if (strlen(buf) != len) {
		fail("%s", "the password contains a NUL byte");
		return false;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		buf[--len] = '\0';
		if (len > 0 && buf[len - 1] == '\r')
			buf[--len] = '\0';
	}
	return true;
}

/* Policy (API.md 13.5), then bcrypt: outside any transaction. */
static bool
hash_new_password(const struct opts *o, char *hash, size_t hashlen)
{
	char pw[PASS_READ_MAX];
	bool ok = false;

	if (!read_password(o, pw, sizeof(pw)))
		goto out;
	switch (vs_password_policy(pw)) {
	case VS_PW_TOO_SHORT:
		fail("password too short (PASSWORD_TOO_SHORT): at least %d"
		     " bytes", VS_PW_MIN);
		goto out;
	case VS_PW_TOO_LONG:
		fail("password too long (PASSWORD_TOO_LONG): at most %d"
		     " bytes", VS_PW_MAX);
		goto out;
	case VS_PW_OK:
		break;
	}
	ok = vs_password_hash(pw, hash, hashlen);
	if (!ok)
		fail("%s", "cannot hash the password");
out:
	OPENSSL_cleanse(pw, sizeof(pw));
	return ok;
}

/* ------------------------------------------------------------------ */
/* Database                                                           */
/* ------------------------------------------------------------------ */

/* Opens and migrates DIR/server.db. The directory must exist: a typo
 * in --data should not create an empty database somewhere. */
static bool
open_db(const char *dir, struct vs_db *db)
{
	char err[512];
	struct stat sb;

	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fail("data directory %s does not exist", dir);
		return false;
	}
	if (vs_db_open(db, dir, err, sizeof(err)) != VS_DB_OK) {
		fail("cannot open the database: %s", err);
		return false;
	}
	if (vs_db_migrate(db, err, sizeof(err)) != VS_DB_OK) {
		fail("cannot prepare the database: %s", err);
		vs_db_close(db);
		return false;
	}
	return true;
}

static int
db_failed(struct vs_db *db, enum vs_db_status s)
{
	if (db->tx_depth > 0)
		vs_db_rollback(db);
	fail("%s", s == VS_DB_BUSY ? "the database is busy; try again" :
	     "database error (see the log above)");
	return 1;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */
/* ------------------------------------------------------------------ */

static int
cmd_add(const struct opts *o, struct vs_db *db)
{
	char name[256], email[256], hash[128], id[25];
	enum vs_user_create_rc rc;
	enum vs_db_status s;

	/* The console's rules: trimmed name (D29), normalised e-mail. */
	if (strlen(o->username) >= sizeof(name) ||
	    !vs_username_valid(vs_trim(strcpy(name, o->username)))) {
		fail("%s", "invalid username (1 to 128 bytes, no control"
		     " characters)");
		return 1;
	}
	if (!vs_email_normalize(o->email, email, sizeof(email))) {
		fail("%s", "invalid email");
		return 1;
	}
	if (!hash_new_password(o, hash, sizeof(hash)))
		return 1;
	if (!open_db(o->data, db))
		return 1;
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return db_failed(db, s);
	rc = vs_user_insert(db, name, email, hash, o->confirmed, id);
	if (rc == VS_UC_TAKEN) {
		vs_db_rollback(db);
		fail("%s", "username or email already taken");
		return 1;
	}
	if (rc != VS_UC_OK)
		return db_failed(db, rc == VS_UC_BUSY ? VS_DB_BUSY :
				 VS_DB_ERROR);
	s = vs_audit(db, "user_created", id, "", "", "created by administrator");
	if (s == VS_DB_OK)
		s = vs_db_commit(db);
	if (s != VS_DB_OK)
		return db_failed(db, s);
	printf("%s\n", id);
	return finish_output(0);
}

/* Finds the target of confirm/block/unblock/delete inside the open
 * transaction; 0 when found, else the exit status. */
static int
resolve(const struct opts *o, struct vs_db *db, struct vs_user *u)
{
	enum vs_db_status s;
	bool found = false;

	s = o->id != NULL ? vs_user_find_id(db, o->id, u, &found) :
		vs_user_find_username(db, o->username, u, &found);
	if (s != VS_DB_OK)
		return db_failed(db, s);
	if (!found) {
		vs_db_rollback(db);
		fail("%s", "user not found");
		return 1;
	}
	return 0;
}

/* The change itself; returns the status and says what it did. */
static enum vs_db_status
apply(enum cmd c, struct vs_db *db, const struct vs_user *u,
      const char **done)
{
	enum vs_db_status s = VS_DB_OK;
	bool found;

	switch (c) {
	case CMD_CONFIRM:
		if (u->confirmed) {
			*done = "already confirmed:";
			return VS_DB_OK;
		}
		*done = "confirmed";
		s = vs_user_set_confirmed(db, u->id, &found);
		return s != VS_DB_OK ? s : vs_audit(db, "user_confirmed",
			u->id, "", "", "confirmed by administrator");
	case CMD_BLOCK:
		/* Sessions go even if the flag was already set. */
		s = vs_user_delete_sessions(db, u->id);
		if (s != VS_DB_OK || u->blocked) {
			*done = "already blocked:";
			return s;
		}
		*done = "blocked";
		s = vs_user_set_blocked(db, u->id, true, &found);
		return s != VS_DB_OK ? s : vs_audit(db, "user_block_changed",
			u->id, "", "", "changed by administrator");
	case CMD_UNBLOCK:
		if (!u->blocked) {
			*done = "not blocked:";
			return VS_DB_OK;
		}
		*done = "unblocked";
		s = vs_user_set_blocked(db, u->id, false, &found);
		return s != VS_DB_OK ? s : vs_audit(db, "user_block_changed",
			u->id, "", "", "changed by administrator");
	case CMD_DELETE:
		*done = "deleted";
		s = vs_user_delete_cascade(db, u->id, &found);
		/* After the cascade, which removed the older rows. */
		return s != VS_DB_OK ? s : vs_audit(db, "user_deleted",
			u->id, "", "", "deleted by administrator");
	case CMD_ADD:
	case CMD_LIST:
		break;
	}
	return VS_DB_ERROR;
}

static int
cmd_change(const struct opts *o, struct vs_db *db)
{
	struct vs_user u;
	const char *done = "";
	enum vs_db_status s;
	int rc;

	memset(&u, 0, sizeof(u));
	if (!open_db(o->data, db))
		return 1;
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return db_failed(db, s);
	rc = resolve(o, db, &u);
	if (rc != 0)
		return rc;
	s = apply(o->cmd, db, &u, &done);
	if (s == VS_DB_OK)
		s = vs_db_commit(db);
	if (s != VS_DB_OK) {
		vs_user_free(&u);
		return db_failed(db, s);
	}
	say_user(done, &u, o->cmd == CMD_BLOCK ?
		 "; their web sessions were ended" : "");
	vs_user_free(&u);
	return finish_output(0);
}

struct list_state {
	bool json;
	bool first;
	bool oom;
	struct vs_buf buf;
};

static void
list_json(const struct vs_user *u, struct list_state *ls)
{
	struct vs_buf *b = &ls->buf;
	bool ok;

	ok = vs_buf_puts(b, ls->first ? "[\n  {\"id\":" : ",\n  {\"id\":") &&
	     vs_json_put_str(b, u->id) &&
	     vs_buf_puts(b, ",\"username\":") &&
	     vs_json_put_str(b, u->username) &&
	     vs_buf_puts(b, ",\"email\":") &&
	     vs_json_put_str(b, u->email) &&
	     vs_buf_printf(b, ",\"confirmed\":%s,\"blocked\":%s",
			   u->confirmed ? "true" : "false",
			   u->blocked ? "true" : "false") &&
	     vs_buf_puts(b, ",\"created_at\":") &&
	     vs_json_put_str(b, u->created_at) &&
	     vs_buf_puts(b, "}");
	if (!ok)
		ls->oom = true;
}

static void
list_one(const struct vs_user *u, void *arg)
{
	struct list_state *ls = arg;

	if (ls->json) {
		list_json(u, ls);
	} else {
		printf("%s\t", u->id);
		put_safe(stdout, u->username);
		fputc('\t', stdout);
		put_safe(stdout, u->email);
		printf("\t%s\t%s\t", u->confirmed ? "yes" : "no",
		       u->blocked ? "yes" : "no");
		put_safe(stdout, u->created_at);
		fputc('\n', stdout);
	}
	ls->first = false;
}

static int
cmd_list(const struct opts *o, struct vs_db *db)
{
	struct list_state ls = { .json = o->json, .first = true };
	enum vs_db_status s;

	if (!open_db(o->data, db))
		return 1;
	vs_buf_init(&ls.buf);
	if (!ls.json)
		printf("ID\tUSERNAME\tEMAIL\tCONFIRMED\tBLOCKED\tCREATED_AT\n");
	s = vs_user_each(db, list_one, &ls);
	if (s != VS_DB_OK || ls.oom) {
		vs_buf_free(&ls.buf);
		if (ls.oom)
			fail("%s", "out of memory");
		return s != VS_DB_OK ? db_failed(db, s) : 1;
	}
	if (ls.json) {
		if (!vs_buf_puts(&ls.buf, ls.first ? "[]\n" : "\n]\n")) {
			vs_buf_free(&ls.buf);
			fail("%s", "out of memory");
			return 1;
		}
		fwrite(ls.buf.data, 1, ls.buf.len, stdout);
	}
	vs_buf_free(&ls.buf);
	return finish_output(0);
}

/* ------------------------------------------------------------------ */
/* Entry                                                              */
/* ------------------------------------------------------------------ */

int
vs_user_cli(int argc, char **argv)
{
	struct opts o;
	struct vs_db db;
	int rc;

	memset(&o, 0, sizeof(o));
	memset(&db, 0, sizeof(db));
	if (argc < 3) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0 ||
	    strcmp(argv[2], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (!parse_cmd(argv[2], &o.cmd))
		return usage_error("unknown user command: %s", argv[2]);
	rc = parse_opts(argc, argv, &o);
	if (rc == -1) {
		usage(stdout);
		return 0;
	}
	if (rc == 0)
		rc = check_opts(&o);
	if (rc != 0)
		return rc;
	vs_log_set_tag("verstak-sync-server");
	switch (o.cmd) {
	case CMD_ADD:
		rc = cmd_add(&o, &db);
		break;
	case CMD_LIST:
		rc = cmd_list(&o, &db);
		break;
	default:
		rc = cmd_change(&o, &db);
	}
	if (db.h != NULL)
		vs_db_close(&db);
	return rc;
}
