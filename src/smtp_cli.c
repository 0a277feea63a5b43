/*
 * smtp_cli.c - the `smtp` subcommand (see smtp_cli.h).
 *
 * Owns: parsing `smtp set|show|test`, validating what is stored (the
 * same rules mail.c and smtp.c apply when sending), the one write
 * transaction of `set` with its audit row, and reporting the test mail.
 *
 * Must never: accept a password from argv, print or log a password,
 * store an empty password over a stored one, hold a transaction while
 * the test mail is sent, or print control characters from stored
 * values to the terminal.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* tcgetattr */
#endif
#include "smtp_cli.h"
#include "app.h"
#include "audit.h"
#include "cliopt.h"
#include "db.h"
#include "log.h"
#include "mail.h"
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

#define PROG "verstak-sync-server smtp"
/* A longer password input is refused rather than silently cut. */
#define PASS_READ_MAX 4096

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

enum cmd { CMD_SET, CMD_SHOW, CMD_TEST };

static const char *const cmd_names[] = { "set", "show", "test" };

struct opts {
	enum cmd cmd;
	const char *data, *host, *port, *user, *pass_file, *security, *from,
		*server_url, *to;
	bool pass_stdin;
};

#define BIT(c) (1u << (c))

#define OSTR(n, field, c) VS_CLIOPT_STR(struct opts, n, field, c)
#define OFLAG(n, field, c) VS_CLIOPT_FLAG(struct opts, n, field, c)

static const struct vs_cliopt optdefs[] = {
	OSTR("data", data, BIT(CMD_SET) | BIT(CMD_SHOW) | BIT(CMD_TEST)),
	OSTR("host", host, BIT(CMD_SET)),
	OSTR("port", port, BIT(CMD_SET)),
	OSTR("user", user, BIT(CMD_SET)),
	OSTR("pass-file", pass_file, BIT(CMD_SET)),
	OFLAG("pass-stdin", pass_stdin, BIT(CMD_SET)),
	OSTR("security", security, BIT(CMD_SET)),
	OSTR("from", from, BIT(CMD_SET)),
	OSTR("server-url", server_url, BIT(CMD_SET)),
	OSTR("to", to, BIT(CMD_TEST)),
};

static void
usage(FILE *f)
{
	fputs("usage: verstak-sync-server smtp set --data DIR [--host H]"
	      " [--port P] [--user U]\n"
	      "           [--pass-file F | --pass-stdin]"
	      " [--security none|starttls|tls]\n"
	      "           [--from ADDR] [--server-url URL]\n"
	      "       verstak-sync-server smtp show --data DIR\n"
	      "       verstak-sync-server smtp test --data DIR [--to ADDR]\n"
	      "\n"
	      "set stores only the settings given; an empty value clears one"
	      " (an empty\npassword keeps the stored one). The password is"
	      " read from F or standard\ninput (one trailing newline is"
	      " removed), never from the command line.\n"
	      "test sends the test mail now (to smtp_from unless --to is"
	      " given).\n"
	      "Exit status: 0 done, 1 failed, 2 usage error.\n", f);
}

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

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

/* "--name value", "--name=value" and "--flag"; 0 when fine, else the
 * exit status (2, or -1 for --help). */
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

static int
check_opts(const struct opts *o)
{
	if (o->data == NULL || o->data[0] == '\0')
		return usage_error("%s", "--data DIR is required");
	if (o->cmd != CMD_SET)
		return 0;
	if (o->pass_file != NULL && o->pass_stdin)
		return usage_error("%s", "give at most one of --pass-file and"
				   " --pass-stdin");
	if (o->host == NULL && o->port == NULL && o->user == NULL &&
	    o->pass_file == NULL && !o->pass_stdin && o->security == NULL &&
	    o->from == NULL && o->server_url == NULL)
		return usage_error("%s", "set needs at least one setting");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Values                                                             */
/* ------------------------------------------------------------------ */

/* One setting to store; value is owned. */
struct kv {
	const char *key;
	char *value;
};

static bool
no_controls(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* The trimmed copy of v, or NULL (after a message) when out of memory. */
static char *
trimmed(const char *v)
{
	char *c = strdup(v);

	if (c == NULL)
		fail("%s", "out of memory");
	return c != NULL ? vs_trim(c) : NULL;
}

static bool
valid_host(const char *h)
{
	size_t n = strlen(h);

	return n == 0 || (n <= 253 && strspn(h, "abcdefghijklmnopqrstuvwxyz"
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == n);
}

static bool
valid_port(const char *p)
{
	char *end;
	long n;

	if (*p == '\0')
		return true;
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	n = strtol(p, &end, 10);
	return errno == 0 && *end == '\0' && n >= 1 && n <= 65535;
}

/* Checks one given option; stores the value to write into *out. */
static bool
check_value(const char *key, const char *given, char **out)
{
	char norm[256];
	char *v = trimmed(given), *base;
	bool ok = true;

	if (v == NULL)
		return false;
	if (strcmp(key, "smtp_host") == 0 && !valid_host(v)) {
		fail("%s", "invalid --host: a host name or an IPv4 address");
		ok = false;
	} else if (strcmp(key, "smtp_port") == 0 && !valid_port(v)) {
		fail("%s", "invalid --port: a number from 1 to 65535");
		ok = false;
	} else if (strcmp(key, "smtp_user") == 0 && !no_controls(v)) {
		fail("%s", "invalid --user: control characters");
		ok = false;
	} else if (strcmp(key, "smtp_security") == 0 &&
		   strcmp(v, "none") != 0 && strcmp(v, "starttls") != 0 &&
		   strcmp(v, "tls") != 0) {
		fail("%s", "invalid --security: none, starttls or tls");
		ok = false;
	} else if (strcmp(key, "smtp_from") == 0 && *v != '\0') {
		ok = vs_email_normalize(v, norm, sizeof(norm));
		if (ok)
			strcpy(v, norm);	/* never longer than the input */
		else
			fail("%s", "invalid --from: a bare e-mail address");
	} else if (strcmp(key, "server_url") == 0 && *v != '\0') {
		base = vs_mail_link_base(v, NULL);
		ok = base != NULL;
		free(base);
		if (!ok)
			fail("%s", "invalid --server-url: an absolute http:// or"
			     " https:// address without spaces");
	}
	if (!ok) {
		free(v);
		return false;
	}
	*out = v;
	return true;
}

/* ------------------------------------------------------------------ */
/* Password input                                                     */
/* ------------------------------------------------------------------ */

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

	fputs("SMTP password: ", stderr);
	fflush(stderr);
	echo_off = tcgetattr(STDIN_FILENO, &old) == 0;
	if (echo_off) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
	}
	for (*len = 0; *len < cap - 1;) {
		char c;
		ssize_t n = read(STDIN_FILENO, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("cannot read the password: %s", strerror(errno));
			ok = false;
		}
		if (n <= 0 || c == '\n')
			break;
		buf[(*len)++] = c;
	}
	buf[*len] = '\0';
	if (echo_off)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputs("\n", stderr);
	return ok;
}

/* Reads the password; removes one trailing "\n" or "\r\n" only. */
static bool
read_password(const struct opts *o, char *buf, size_t cap)
{
	size_t len = 0;
	bool ok;

	if (o->pass_file != NULL) {
		int fd = open(o->pass_file, O_RDONLY | O_CLOEXEC);

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

/* ------------------------------------------------------------------ */
/* Database                                                           */
/* ------------------------------------------------------------------ */

/* The directory must exist: a typo in --data should not create an
 * empty data directory somewhere. */
static bool
open_app(const char *dir, struct vs_app *app)
{
	char err[512];
	struct stat sb;

	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fail("data directory %s does not exist", dir);
		return false;
	}
	if (!vs_app_open(app, dir, true, err, sizeof(err))) {
		fail("cannot open the data directory: %s", err);
		return false;
	}
	return true;
}

static const char sql_upsert[] =
	"INSERT INTO server_smtp_config (key, value) VALUES (?1, ?2)"
	" ON CONFLICT(key) DO UPDATE SET value = excluded.value";

static enum vs_db_status
store_kv(struct vs_db *db, const struct kv *kv)
{
	sqlite3_stmt *st = vs_db_stmt(db, sql_upsert);
	enum vs_db_status s;
	int rc;

	if (st == NULL)
		return VS_DB_ERROR;
	rc = sqlite3_bind_text(st, 1, kv->key, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, kv->value, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return vs_db_status_of(db, rc, "smtp settings bind");
	rc = sqlite3_step(st);
	s = rc == SQLITE_DONE ? VS_DB_OK : vs_db_status_of(db, rc,
							     "smtp settings");
	(void)sqlite3_reset(st);	/* repeats rc, handled above */
	/* Drops the statement's reference to a password binding. */
	(void)sqlite3_clear_bindings(st);
	return s;
}

/* All keys and the audit row in one write transaction. */
static bool
store_all(struct vs_db *db, const struct kv *kvs, size_t n)
{
	enum vs_db_status s = vs_db_begin_write(db);

	for (size_t i = 0; s == VS_DB_OK && i < n; i++)
		s = store_kv(db, &kvs[i]);
	if (s == VS_DB_OK)
		s = vs_audit(db, "smtp_settings_updated", "", "", "",
			     "updated by administrator");
	if (s == VS_DB_OK)
		s = vs_db_commit(db);
	if (s != VS_DB_OK) {
		if (db->tx_depth > 0)
			vs_db_rollback(db);
		fail("%s", s == VS_DB_BUSY ? "the database is busy; try again" :
		     "database error (see the log above)");
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */
/* ------------------------------------------------------------------ */

static void
free_kvs(struct kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (kvs[i].value != NULL)
			OPENSSL_cleanse(kvs[i].value, strlen(kvs[i].value));
		free(kvs[i].value);
	}
}

/* Collects the given settings (validated) into kvs; false on error. */
static bool
collect(const struct opts *o, struct kv *kvs, size_t *n)
{
	const struct { const char *key; const char *given; } in[] = {
		{ "smtp_host", o->host }, { "smtp_port", o->port },
		{ "smtp_user", o->user }, { "smtp_security", o->security },
		{ "smtp_from", o->from }, { "server_url", o->server_url },
	};
	char pw[PASS_READ_MAX];
	bool ok = true;

	*n = 0;
	for (size_t i = 0; ok && i < sizeof(in) / sizeof(in[0]); i++) {
		if (in[i].given == NULL)
			continue;
		kvs[*n].key = in[i].key;
		ok = check_value(in[i].key, in[i].given, &kvs[*n].value);
		if (ok)
			(*n)++;
	}
	if (ok && (o->pass_file != NULL || o->pass_stdin)) {
		ok = read_password(o, pw, sizeof(pw));
		/* DATA.md 6: an empty password keeps the stored one. */
		if (ok && pw[0] != '\0') {
			kvs[*n].key = "smtp_pass";
			kvs[*n].value = strdup(pw);
			ok = kvs[*n].value != NULL;
			if (ok)
				(*n)++;
			else
				fail("%s", "out of memory");
		}
		OPENSSL_cleanse(pw, sizeof(pw));
	}
	return ok;
}

static int
cmd_set(const struct opts *o)
{
	struct kv kvs[8];
	struct vs_app app;
	size_t n = 0;
	int rc = 1;

	memset(kvs, 0, sizeof(kvs));
	memset(&app, 0, sizeof(app));
	if (!collect(o, kvs, &n))
		goto out;
	if (n == 0) {
		fail("%s", "nothing to store (an empty password keeps the"
		     " stored one)");
		goto out;
	}
	if (!open_app(o->data, &app) || !store_all(&app.db, kvs, n))
		goto out;
	printf("smtp settings updated:");
	for (size_t i = 0; i < n; i++)
		printf(" %s", kvs[i].key);
	printf("\n");
	rc = 0;
out:
	free_kvs(kvs, n);
	vs_app_close(&app);
	return rc;
}

/* Stored values may come from other tools: control bytes print as '?'. */
static void
put_safe(const char *label, const char *s)
{
	printf("%s: ", label);
	for (; *s != '\0'; s++)
		putchar(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s);
	putchar('\n');
}

static void
show_link_base(const struct vs_app *app, const struct vs_smtp_settings *s)
{
	char *base = vs_mail_link_base(s->server_url, app->cfg.eff.public_url);

	if (base == NULL) {
		printf("link base: none (set server_url or public_url; mails"
		       " with links are not sent)\n");
		return;
	}
	put_safe("link base", base);
	free(base);
}

static int
cmd_show(const struct opts *o)
{
	struct vs_smtp_settings s;
	struct vs_app app;

	memset(&app, 0, sizeof(app));
	if (!open_app(o->data, &app))
		goto fail;
	if (!vs_smtp_settings_load(&app, &s)) {
		fail("%s", "cannot read the smtp settings");
		goto fail;
	}
	put_safe("smtp_host", s.host);
	put_safe("smtp_port", s.port);
	put_safe("smtp_user", s.user);
	printf("smtp_pass: %s\n", s.pass[0] != '\0' ? "(set)" : "(not set)");
	put_safe("smtp_security", s.security[0] != '\0' ? s.security :
		 "(empty: starttls)");
	put_safe("smtp_from", s.from);
	put_safe("server_url", s.server_url);
	show_link_base(&app, &s);
	vs_smtp_settings_free(&s);
	vs_app_close(&app);
	return 0;
fail:
	vs_app_close(&app);
	return 1;
}

static int
cmd_test(const struct opts *o)
{
	struct vs_smtp_settings s;
	struct vs_app app;
	char err[512];
	bool sent;
	enum vs_db_status st;

	memset(&app, 0, sizeof(app));
	if (!open_app(o->data, &app))
		goto fail;
	if (!vs_smtp_settings_load(&app, &s)) {
		fail("%s", "cannot read the smtp settings");
		goto fail;
	}
	err[0] = '\0';
	/* No transaction is open while the mail is under way. */
	sent = vs_mail_send_test(&s, o->to, err, sizeof(err));
	st = vs_audit(&app.db, sent ? "smtp_test_passed" : "smtp_test_failed",
		      "", "", "", "tested by administrator");
	if (sent)
		printf("test mail sent to %s via %s:%s\n",
		       o->to != NULL && *o->to != '\0' ? o->to : s.from,
		       s.host, s.port);
	else
		fail("test mail failed: %s", err);
	if (st != VS_DB_OK)
		fail("%s", "the audit row could not be written");
	vs_smtp_settings_free(&s);
	vs_app_close(&app);
	return sent && st == VS_DB_OK ? 0 : 1;
fail:
	vs_app_close(&app);
	return 1;
}

/* ------------------------------------------------------------------ */
/* Entry                                                              */
/* ------------------------------------------------------------------ */

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

int
vs_smtp_cli(int argc, char **argv)
{
	struct opts o;
	int rc;

	memset(&o, 0, sizeof(o));
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
		return usage_error("unknown smtp command: %s", argv[2]);
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
	case CMD_SET:
		rc = cmd_set(&o);
		break;
	case CMD_SHOW:
		rc = cmd_show(&o);
		break;
	case CMD_TEST:
		rc = cmd_test(&o);
		break;
	}
	return finish_output(rc);
}
