/*
 * admin_cli.c - see admin_cli.h.
 */
#include "admin_cli.h"
#include "log.h"
#include "password.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define PASS_MAX_READ 4096

/* Reads at most PASS_MAX_READ bytes from fd into buf (NUL-terminated). */
static bool
read_secret_fd(int fd, char *buf, size_t cap, char *err, size_t errlen)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "cannot read the password: %s",
				 strerror(errno));
			return false;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap - 1) {
			snprintf(err, errlen, "the password input is too long");
			return false;
		}
	}
	buf[len] = '\0';
	return true;
}

static bool
read_password(const struct vs_options *o, char *buf, size_t cap, char *err,
	      size_t errlen)
{
	if (o->admin_pass != NULL) {
		if (strlen(o->admin_pass) >= cap) {
			snprintf(err, errlen, "the password is too long");
			return false;
		}
		strcpy(buf, o->admin_pass);
	} else if (o->admin_pass_file != NULL) {
		int fd = open(o->admin_pass_file, O_RDONLY | O_CLOEXEC);
		bool ok;
		if (fd < 0) {
			snprintf(err, errlen, "cannot open %s: %s",
				 o->admin_pass_file, strerror(errno));
			return false;
		}
		ok = read_secret_fd(fd, buf, cap, err, errlen);
		close(fd);
		if (!ok)
			return false;
	} else if (!read_secret_fd(STDIN_FILENO, buf, cap, err, errlen)) {
		return false;
	}
	vs_trim(buf);
	if (buf[0] == '\0') {
		snprintf(err, errlen, "the administrator password is empty");
		return false;
	}
	return true;
}

static bool
set_admin(struct vs_config *cfg, const char *user, const char *pass,
	  char **changed_user, char *err, size_t errlen)
{
	char hash[128];

	if (strlen(pass) > VS_PW_MAX) {
		/* bcrypt reads only 72 bytes; refusing beats silently
		 * accepting every password with the same prefix (D30). */
		snprintf(err, errlen, "the administrator password is longer than %d bytes",
			 VS_PW_MAX);
		return false;
	}
	if (!vs_password_hash(pass, hash, sizeof(hash))) {
		snprintf(err, errlen, "cannot hash the password");
		return false;
	}
	if (!vs_config_set_admin(cfg, user, hash, err, errlen))
		return false;
	*changed_user = strdup(user);
	if (*changed_user == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	vs_log_info("administrator %s set in config.yml", user);
	return true;
}

static bool
blank(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

bool
vs_admin_bootstrap(struct vs_config *cfg, const struct vs_options *o,
		   char **changed_user, char *err, size_t errlen)
{
	char pass[PASS_MAX_READ];
	const char *env_pass, *env_user, *require;
	bool ok;

	*changed_user = NULL;
	if (o->admin_user != NULL) {
		if (!read_password(o, pass, sizeof(pass), err, errlen))
			return false;
		ok = set_admin(cfg, o->admin_user, pass, changed_user, err, errlen);
		OPENSSL_cleanse(pass, sizeof(pass));
		return ok;
	}
	if (cfg->file.n_admins > 0)
		return true;	/* bootstrap never resets an existing admin */
	env_pass = getenv("VERSTAK_BOOTSTRAP_ADMIN_PASSWORD");
	if (env_pass != NULL && *env_pass != '\0') {
		if (strlen(env_pass) < 12 || blank(env_pass)) {
			snprintf(err, errlen, "VERSTAK_BOOTSTRAP_ADMIN_PASSWORD must have at least 12 characters");
			return false;
		}
		env_user = getenv("VERSTAK_BOOTSTRAP_ADMIN_USER");
		if (env_user == NULL || *env_user == '\0')
			env_user = "admin";
		return set_admin(cfg, env_user, env_pass, changed_user, err, errlen);
	}
	require = getenv("VERSTAK_REQUIRE_ADMIN");
	if (require != NULL && strcmp(require, "1") == 0) {
		snprintf(err, errlen, "no administrator in config.yml and VERSTAK_BOOTSTRAP_ADMIN_PASSWORD is not set (VERSTAK_REQUIRE_ADMIN=1)");
		return false;
	}
	return true;
}

static const char sql_drop_admin_sessions[] =
	"DELETE FROM server_sessions WHERE scope = 'admin' AND subject_id = ?1";

bool
vs_admin_drop_sessions(struct vs_db *db, const char *username)
{
	sqlite3_stmt *st;
	int rc;

	if (vs_db_begin_write(db) != VS_DB_OK)
		return false;
	st = vs_db_stmt(db, sql_drop_admin_sessions);
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC) != SQLITE_OK) {
		vs_db_rollback(db);
		return false;
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		vs_db_status_of(db, rc, "drop admin sessions");
		vs_db_rollback(db);
		return false;
	}
	return vs_db_commit(db) == VS_DB_OK;
}
