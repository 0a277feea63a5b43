/*
 * test_users.c - unit tests for src/users.c and src/audit.c: login
 * lookup (D29), the credential order (D28), the user-name and e-mail
 * rules (D29, API.md 13.4), creation with the D29 "taken" rules, the
 * DATA.md 8 deletion cascade, and logins against the reference's
 * fixture database.
 *
 * Must never: touch the fixture in place (it is copied into a mkdtemp
 * directory), or hash more passwords than needed (bcrypt is slow).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "audit.h"
#include "db.h"
#include "password.h"
#include "users.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VS_FIXTURE_DIR
#define VS_FIXTURE_DIR "tests/fixtures"
#endif
#define FIXTURE_DB VS_FIXTURE_DIR "/go-datadir-v2/data/server.db"

#define RIGHT_PW "right-password-1"

/* Computed once in main() (forked tests inherit it): one bcrypt run. */
static char right_hash[64];

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static char tmpdir[64];
static struct vs_db db;

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/vs_test_users_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
open_db(void)
{
	char err[256];

	ck_assert_msg(vs_db_open(&db, tmpdir, err, sizeof(err)) == VS_DB_OK,
		      "open: %s", err);
	ck_assert_msg(vs_db_migrate(&db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
}

static void
setup(void)
{
	make_tmpdir();
	open_db();
}

static void
teardown(void)
{
	vs_db_close(&db);
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

static void
exec_sql(const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db.h, sql, NULL, NULL, &err);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
	sqlite3_free(err);
}

static long long
count(const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long n;

	ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int64(st, 0);
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	return n;
}

/* Creates a user through vs_user_insert in its own transaction. */
static enum vs_user_create_rc
add(const char *name, const char *email, bool confirmed, char id[25])
{
	enum vs_user_create_rc rc;

	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	rc = vs_user_insert(&db, name, email, right_hash, confirmed, id);
	if (rc == VS_UC_OK)
		ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	else
		vs_db_rollback(&db);
	return rc;
}

static void
add_ok(const char *name, const char *email, bool confirmed, char id[25])
{
	ck_assert_int_eq(add(name, email, confirmed, id), VS_UC_OK);
}

static void
set_blocked(const char *id, bool blocked)
{
	bool found = false;

	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_user_set_blocked(&db, id, blocked, &found),
			 VS_DB_OK);
	ck_assert(found);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
}

static enum vs_cred
cred(const char *login, const char *pw, char id_out[64])
{
	struct vs_user u;
	enum vs_cred c = vs_user_check_credentials(&db, login, pw, &u);

	if (id_out != NULL)
		snprintf(id_out, 64, "%s", u.id ? u.id : "");
	vs_user_free(&u);
	return c;
}

/* ------------------------------------------------------------------ */
/* Lookup (D29)                                                       */
/* ------------------------------------------------------------------ */

START_TEST(test_name_beats_email)
{
	struct vs_user u;
	bool found;

	/* Rows the reference could create: A's name is B's e-mail. */
	exec_sql("INSERT INTO server_users (id, username, email, password_hash,"
		 " confirmed, blocked, created_at) VALUES"
		 " ('bbbb', 'userb', 'b@example.com', 'unused', 1, 0,"
		 "  '2024-01-01T00:00:00Z'),"
		 " ('aaaa', 'b@example.com', 'a@example.com', 'unused', 1, 0,"
		 "  '2024-01-02T00:00:00Z')");
	ck_assert_int_eq(vs_user_find_login(&db, "b@example.com", &u, &found),
			 VS_DB_OK);
	ck_assert(found);
	ck_assert_str_eq(u.id, "aaaa");
	vs_user_free(&u);
	/* Not an exact name: the e-mail step, lowercased, finds B. */
	ck_assert_int_eq(vs_user_find_login(&db, "B@Example.COM", &u, &found),
			 VS_DB_OK);
	ck_assert(found);
	ck_assert_str_eq(u.id, "bbbb");
	ck_assert_str_eq(u.username, "userb");
	ck_assert_str_eq(u.last_seen, "");
	vs_user_free(&u);
}
END_TEST

START_TEST(test_email_lookup_case)
{
	struct vs_user u;
	char id[25];
	bool found;

	add_ok("Bob", "bob@example.org", true, id);
	ck_assert_int_eq(vs_user_find_login(&db, "BOB@Example.ORG", &u,
					    &found), VS_DB_OK);
	ck_assert(found);
	ck_assert_str_eq(u.id, id);
	vs_user_free(&u);
	/* User names are exact and case-sensitive. */
	ck_assert_int_eq(vs_user_find_login(&db, "Bob", &u, &found), VS_DB_OK);
	ck_assert(found);
	vs_user_free(&u);
	ck_assert_int_eq(vs_user_find_login(&db, "bob", &u, &found), VS_DB_OK);
	ck_assert(!found);
	ck_assert_ptr_null(u.id);
	ck_assert_int_eq(vs_user_find_username(&db, "bob@example.org", &u,
					       &found), VS_DB_OK);
	ck_assert(!found);
	ck_assert_int_eq(vs_user_find_id(&db, id, &u, &found), VS_DB_OK);
	ck_assert(found);
	ck_assert_str_eq(u.email, "bob@example.org");
	vs_user_free(&u);
	ck_assert_int_eq(vs_user_find_id(&db, "nope", &u, &found), VS_DB_OK);
	ck_assert(!found);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Credentials (D28)                                                  */
/* ------------------------------------------------------------------ */

START_TEST(test_credentials)
{
	char ok_id[25], blk_id[25], unc_id[25], got[64];

	add_ok("okuser", "ok@example.org", true, ok_id);
	add_ok("blocked", "blk@example.org", true, blk_id);
	add_ok("unconf", "unc@example.org", false, unc_id);
	set_blocked(blk_id, true);

	ck_assert_int_eq(cred("ghost", RIGHT_PW, got), VS_CRED_INVALID);
	ck_assert_str_eq(got, "");	/* unknown: no user */
	ck_assert_int_eq(cred("okuser", "wrong-password", got),
			 VS_CRED_INVALID);
	ck_assert_str_eq(got, ok_id);	/* known: id for the audit */
	ck_assert_int_eq(cred("blocked", "wrong-password", NULL),
			 VS_CRED_INVALID);
	ck_assert_int_eq(cred("blocked", RIGHT_PW, got), VS_CRED_BLOCKED);
	ck_assert_str_eq(got, blk_id);
	ck_assert_int_eq(cred("unconf", "wrong-password", NULL),
			 VS_CRED_INVALID);
	ck_assert_int_eq(cred("unconf", RIGHT_PW, got), VS_CRED_UNCONFIRMED);
	ck_assert_str_eq(got, unc_id);
	ck_assert_int_eq(cred("okuser", RIGHT_PW, got), VS_CRED_OK);
	ck_assert_str_eq(got, ok_id);
	ck_assert_int_eq(cred("OK@example.org", RIGHT_PW, NULL), VS_CRED_OK);
	ck_assert_int_eq(cred("", RIGHT_PW, NULL), VS_CRED_INVALID);
}
END_TEST

START_TEST(test_unused_hash_never_matches)
{
	exec_sql("INSERT INTO server_users (id, username, email, password_hash,"
		 " confirmed, blocked, created_at) VALUES"
		 " ('seed1', 'seeded', 's@example.org', 'unused', 1, 0,"
		 "  '2024-01-01T00:00:00Z'),"
		 " ('seed2', 'empty', 'e@example.org', '', 1, 0,"
		 "  '2024-01-01T00:00:00Z')");
	ck_assert_int_eq(cred("seeded", "unused", NULL), VS_CRED_INVALID);
	ck_assert_int_eq(cred("seeded", "", NULL), VS_CRED_INVALID);
	ck_assert_int_eq(cred("empty", "", NULL), VS_CRED_INVALID);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Creation and the D29 "taken" rules                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_insert)
{
	struct vs_user u;
	char id[25];
	bool found;

	add_ok("alice", "alice@example.org", false, id);
	ck_assert_uint_eq(strlen(id), 24);
	ck_assert(vs_is_lower_hex(id, 24));
	ck_assert_int_eq(vs_user_find_id(&db, id, &u, &found), VS_DB_OK);
	ck_assert(found);
	ck_assert_str_eq(u.username, "alice");
	ck_assert_str_eq(u.email, "alice@example.org");
	ck_assert_str_eq(u.password_hash, right_hash);
	ck_assert(!u.confirmed);
	ck_assert(!u.blocked);
	ck_assert_str_eq(u.last_seen, "");
	ck_assert_uint_eq(strlen(u.created_at), VS_TS_LEN - 1);
	ck_assert_int_eq(u.created_at[VS_TS_LEN - 2], 'Z');
	vs_user_free(&u);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_users WHERE"
			       " last_seen IS NULL"), 1);
}
END_TEST

START_TEST(test_insert_taken)
{
	char id[25];

	add_ok("alice", "alice@example.org", true, id);
	add_ok("eve@example.org", "eve-real@example.org", true, id);
	/* Same name, same e-mail. */
	ck_assert_int_eq(add("alice", "other@example.org", true, id),
			 VS_UC_TAKEN);
	ck_assert_str_eq(id, "");
	ck_assert_int_eq(add("alice2", "alice@example.org", true, id),
			 VS_UC_TAKEN);
	/* D29: new name = existing e-mail (also in another case). */
	ck_assert_int_eq(add("alice@example.org", "x@example.org", true, id),
			 VS_UC_TAKEN);
	ck_assert_int_eq(add("Alice@Example.org", "x@example.org", true, id),
			 VS_UC_TAKEN);
	/* D29: new e-mail = existing name. */
	ck_assert_int_eq(add("frank", "eve@example.org", true, id),
			 VS_UC_TAKEN);
	/* Names are case-sensitive: "Alice" is a different name. */
	add_ok("Alice", "alice2@example.org", true, id);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_users"), 3);
}
END_TEST

START_TEST(test_insert_needs_tx)
{
	char id[25];

	ck_assert_int_eq(vs_user_insert(&db, "x", "x@example.org", right_hash,
					true, id), VS_UC_ERROR);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_users"), 0);
}
END_TEST

/* The UNIQUE constraint is mapped to "taken" when a row appears that
 * the SELECT could not see. A temporary trigger plays the other writer:
 * it inserts the same user name just before our row. */
START_TEST(test_insert_unique_constraint)
{
	char id[25];

	exec_sql("CREATE TEMP TRIGGER racer BEFORE INSERT ON server_users"
		 " WHEN NEW.id <> 'racer' BEGIN"
		 " INSERT INTO server_users (id, username, email, password_hash,"
		 " confirmed, blocked, created_at) VALUES ('racer', NEW.username,"
		 " 'racer@example.org', 'unused', 1, 0, 'x'); END");
	ck_assert_int_eq(add("racy", "racy@example.org", true, id),
			 VS_UC_TAKEN);
	ck_assert_str_eq(id, "");
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_users"), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Rules                                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_email_normalize)
{
	static const struct { const char *in, *out; } valid[] = {
		{ "A@B.example", "a@b.example" },
		{ " x@y.z ", "x@y.z" },
		{ "\tUser.Name+tag@Sub.Example.ORG\n", "user.name+tag@sub.example.org" },
		{ "o'neil_{x}@ex-ample.com", "o'neil_{x}@ex-ample.com" },
		{ "admin@localhost", "admin@localhost" },
		{ "a@[192.0.2.1]", "a@[192.0.2.1]" },
		{ "a@[IPv6:2001:db8::1]", "a@[ipv6:2001:db8::1]" },
	};
	static const char *const invalid[] = {
		"", "   ", "no-at-sign", "a@b@c.d", "Name <a@b.c>", "<a@b.c>",
		"a@b.c\r\nBcc: x@y.z", "a b@c.d", "a@b .c", "a@", "@b.c",
		".a@b.c", "a.@b.c", "a..b@c.d", "a@b..c", "a@.b.c", "a@b.c.",
		"a@-b.c", "a@b-.c", "a@b_c.d", "\"quoted\"@b.c",
		"\"a b\"@c.d", "a(comment)@b.c", "a@b.c (x)", "a@[1.2.3]",
		"a@[IPv6:zz::1]", "a@[]", "jos\xc3\xa9@b.c", "a@\xc3\xa9.c",
		"a\x7f@b.c",
	};
	char out[256], big[400];

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		ck_assert_msg(vs_email_normalize(valid[i].in, out, sizeof(out)),
			      "should be valid: %s", valid[i].in);
		ck_assert_str_eq(out, valid[i].out);
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		ck_assert_msg(!vs_email_normalize(invalid[i], out, sizeof(out)),
			      "should be invalid: %s", invalid[i]);
	/* Length: 254 bytes pass, 255 fail (labels kept <= 63). */
	memset(big, 0, sizeof(big));
	strcpy(big, "a@");
	for (int i = 0; i < 4; i++)
		strcat(big, i ? ".bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
			      : "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	/* 2 + 63 + 3 * 63 = 254 */
	ck_assert_uint_eq(strlen(big), 254);
	ck_assert(vs_email_normalize(big, out, sizeof(out)));
	big[1] = 'a';
	memmove(big + 1, big, strlen(big) + 1);	/* 255 bytes */
	ck_assert_uint_eq(strlen(big), 255);
	ck_assert(!vs_email_normalize(big, out, sizeof(out)));
	/* Local part over 64 bytes. */
	memset(big, 'l', 65);
	strcpy(big + 65, "@b.c");
	ck_assert(!vs_email_normalize(big, out, sizeof(out)));
	ck_assert(vs_email_normalize(big + 1, out, sizeof(out)));  /* 64 */
	/* Output buffer too small. */
	ck_assert(!vs_email_normalize("a@b.c", out, 5));
	ck_assert(vs_email_normalize("a@b.c", out, 6));
	ck_assert(!vs_email_normalize(NULL, out, sizeof(out)));
}
END_TEST

START_TEST(test_username_valid)
{
	char name[200];

	ck_assert(vs_username_valid("alice"));
	ck_assert(vs_username_valid("Alice Smith"));
	ck_assert(vs_username_valid("b@example.com"));
	ck_assert(vs_username_valid("\xd0\x9c\xd0\xb0\xd1\x80\xd0\xb8\xd1\x8f"));
	ck_assert(!vs_username_valid(""));
	ck_assert(!vs_username_valid(NULL));
	ck_assert(!vs_username_valid("a\nb"));
	ck_assert(!vs_username_valid("a\tb"));
	ck_assert(!vs_username_valid("a\x7f"));
	ck_assert(!vs_username_valid("a\rb"));
	ck_assert(!vs_username_valid("\x1b[31m"));
	ck_assert(!vs_username_valid("a\xc2\x85" "b"));	/* C1 NEL */
	ck_assert(!vs_username_valid("a\xff"));		/* not UTF-8 */
	ck_assert(!vs_username_valid(" padded "));	/* untrimmed */
	memset(name, 'n', sizeof(name));
	name[128] = '\0';
	ck_assert(vs_username_valid(name));
	name[128] = 'n';
	name[129] = '\0';
	ck_assert(!vs_username_valid(name));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Updates                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_updates)
{
	struct vs_user u;
	char id[25];
	bool found;

	add_ok("carol", "carol@example.org", false, id);
	/* Writes outside a transaction are refused. */
	ck_assert_int_eq(vs_user_set_confirmed(&db, id, &found), VS_DB_ERROR);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_user_set_confirmed(&db, id, &found), VS_DB_OK);
	ck_assert(found);
	ck_assert_int_eq(vs_user_set_confirmed(&db, id, &found), VS_DB_OK);
	ck_assert(found);	/* already confirmed still matches */
	ck_assert_int_eq(vs_user_set_confirmed(&db, "nope", &found), VS_DB_OK);
	ck_assert(!found);
	ck_assert_int_eq(vs_user_set_blocked(&db, "nope", true, &found),
			 VS_DB_OK);
	ck_assert(!found);
	ck_assert_int_eq(vs_user_set_blocked(&db, id, true, &found), VS_DB_OK);
	ck_assert(found);
	ck_assert_int_eq(vs_user_touch_last_seen(&db, id,
						 "2025-02-03T04:05:06Z"),
			 VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_int_eq(vs_user_find_id(&db, id, &u, &found), VS_DB_OK);
	ck_assert(u.confirmed);
	ck_assert(u.blocked);
	ck_assert_str_eq(u.last_seen, "2025-02-03T04:05:06Z");
	vs_user_free(&u);
	set_blocked(id, false);
	ck_assert_int_eq(vs_user_find_id(&db, id, &u, &found), VS_DB_OK);
	ck_assert(!u.blocked);
	vs_user_free(&u);
}
END_TEST

START_TEST(test_delete_sessions)
{
	exec_sql("INSERT INTO server_sessions VALUES"
		 " ('h1', 'c', 'user', 'u1', 'x', 'x', 'x'),"
		 " ('h2', 'c', 'user', 'u1', 'x', 'x', 'x'),"
		 " ('h3', 'c', 'user', 'u2', 'x', 'x', 'x'),"
		 " ('h4', 'c', 'admin', 'u1', 'x', 'x', 'x')");
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_user_delete_sessions(&db, "u1"), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_sessions"), 2);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_sessions WHERE"
			       " scope = 'admin' AND subject_id = 'u1'"), 1);
}
END_TEST

static void
each_cb(const struct vs_user *u, void *arg)
{
	char *names = arg;

	strcat(names, u->username);
	strcat(names, ",");
}

START_TEST(test_each)
{
	char names[128] = "";

	exec_sql("INSERT INTO server_users (id, username, email, password_hash,"
		 " confirmed, blocked, created_at) VALUES"
		 " ('1', 'zed', 'z@x.org', 'unused', 1, 0, '2024-01-02T00:00:00Z'),"
		 " ('2', 'amy', 'a@x.org', 'unused', 1, 0, '2024-01-02T00:00:00Z'),"
		 " ('3', 'old', 'o@x.org', 'unused', 1, 0, '2023-01-01T00:00:00Z')");
	ck_assert_int_eq(vs_user_each(&db, each_cb, names), VS_DB_OK);
	ck_assert_str_eq(names, "old,amy,zed,");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Deletion cascade (DATA.md 8)                                       */
/* ------------------------------------------------------------------ */

/* One row per table for user id `u`, device dev-<u>, op op-<u>. */
static void
seed_user_rows(const char *u, int seq)
{
	char sql[4096];

	snprintf(sql, sizeof(sql),
		 "INSERT INTO server_users (id, username, email, password_hash,"
		 " confirmed, blocked, created_at) VALUES ('%1$s', 'name-%1$s',"
		 " '%1$s@example.org', 'unused', 1, 0, '2024-01-01T00:00:00Z');"
		 "INSERT INTO server_sessions VALUES ('sess-%1$s', 'c', 'user',"
		 " '%1$s', 'x', 'x', 'x');"
		 "INSERT INTO server_email_tokens VALUES ('tok-%1$s', '%1$s',"
		 " 'confirm', 'x', 'x');"
		 "INSERT INTO server_blob_refs VALUES ('%1$s', 'v', 'blob-%1$s',"
		 " 1, 'x', 'x');"
		 "INSERT INTO server_blob_refs VALUES ('%1$s', 'v', 'shared',"
		 " 1, 'x', 'x');"
		 "INSERT INTO server_idempotency_keys VALUES ('%1$s', 'v', 'k',"
		 " '{}', 'x');"
		 "INSERT INTO server_tombstones VALUES ('%1$s', 'v', 'note',"
		 " 'e', 'op-%1$s', 'x');"
		 "INSERT INTO server_revisions (id, op_id, device_id) VALUES"
		 " (%2$d, 'op-%1$s', 'dev-%1$s');"
		 "INSERT INTO server_ops (op_id, server_sequence, user_id,"
		 " vault_id, device_id, entity_type, entity_id, op_type,"
		 " payload_json, created_at, pushed_at) VALUES ('op-%1$s', %2$d,"
		 " '%1$s', 'v', 'dev-%1$s', 'note', 'e', 'delete', '', '', 'x');"
		 "INSERT INTO server_user_devices VALUES ('%1$s', 'dev-%1$s');"
		 "INSERT INTO server_devices (id, name, api_key, user_id,"
		 " created_at) VALUES ('dev-%1$s', 'n', 'disabled:dev-%1$s',"
		 " '%1$s', 'x');"
		 "INSERT INTO server_audit_log (event_type, user_id, device_id,"
		 " ip, message, created_at) VALUES ('e', '%1$s', '', '', 'm',"
		 " 'x');"
		 "INSERT INTO server_blobs VALUES ('blob-%1$s', 1, 'x');",
		 u, seq);
	exec_sql(sql);
}

/* Rows of user u in every table the cascade covers. */
static long long
rows_of(const char *u)
{
	static const char *const q[] = {
		"SELECT COUNT(*) FROM server_users WHERE id = ?1",
		("SELECT COUNT(*) FROM server_sessions WHERE subject_id = ?1"
		 " AND scope = 'user'"),
		"SELECT COUNT(*) FROM server_email_tokens WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_blob_refs WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_idempotency_keys WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_tombstones WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_revisions WHERE op_id = 'op-' || ?1",
		"SELECT COUNT(*) FROM server_ops WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_user_devices WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_devices WHERE user_id = ?1",
		"SELECT COUNT(*) FROM server_audit_log WHERE user_id = ?1",
	};
	long long n = 0;

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		sqlite3_stmt *st = NULL;

		ck_assert_int_eq(sqlite3_prepare_v2(db.h, q[i], -1, &st, NULL),
				 SQLITE_OK);
		ck_assert_int_eq(sqlite3_bind_text(st, 1, u, -1, SQLITE_STATIC),
				 SQLITE_OK);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		n += sqlite3_column_int64(st, 0);
		ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	}
	return n;
}

START_TEST(test_delete_cascade)
{
	bool found = true;

	seed_user_rows("victim", 1);
	seed_user_rows("other", 2);
	/* An admin session whose subject happens to equal the id, and an
	 * audit row without a user: neither belongs to the user. */
	exec_sql("INSERT INTO server_sessions VALUES ('adm', 'c', 'admin',"
		 " 'victim', 'x', 'x', 'x');"
		 "INSERT INTO server_audit_log (event_type, user_id, device_id,"
		 " ip, message, created_at) VALUES ('e', '', '', '', 'm', 'x');");
	ck_assert_int_eq(rows_of("victim"), 12);
	ck_assert_int_eq(rows_of("other"), 12);

	/* Outside a transaction: refused, nothing deleted. */
	ck_assert_int_eq(vs_user_delete_cascade(&db, "victim", &found),
			 VS_DB_ERROR);
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_user_delete_cascade(&db, "nobody", &found),
			 VS_DB_OK);
	ck_assert(!found);
	ck_assert_int_eq(vs_user_delete_cascade(&db, "victim", &found),
			 VS_DB_OK);
	ck_assert(found);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);

	ck_assert_int_eq(rows_of("victim"), 0);
	ck_assert_int_eq(rows_of("other"), 12);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_sessions WHERE"
			       " scope = 'admin'"), 1);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_audit_log WHERE"
			       " user_id = ''"), 1);
	/* server_blobs stay for blob GC (D13); the sequence never goes back. */
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 2);
	ck_assert_int_eq(count("SELECT seq FROM sqlite_sequence WHERE"
			       " name = 'server_revisions'"), 2);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Audit                                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_audit)
{
	sqlite3_stmt *st = NULL;

	/* Own transaction. */
	ck_assert_int_eq(vs_audit(&db, "user_created", "u1", NULL, NULL,
				  "created by administrator"), VS_DB_OK);
	ck_assert_int_eq(db.tx_depth, 0);
	/* The caller's transaction: rolled back with it. */
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_audit(&db, "x", NULL, NULL, NULL, NULL), VS_DB_OK);
	ck_assert_int_eq(db.tx_depth, 1);
	vs_db_rollback(&db);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_audit_log"), 1);
	ck_assert_int_eq(sqlite3_prepare_v2(db.h,
		"SELECT event_type, user_id, device_id, ip, message, created_at"
		" FROM server_audit_log", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "user_created");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "u1");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 2), "");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 3), "");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 4),
			 "created by administrator");
	ck_assert_uint_eq(strlen((const char *)sqlite3_column_text(st, 5)),
			  VS_TS_LEN - 1);
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The reference's fixture                                            */
/* ------------------------------------------------------------------ */

static void
copy_fixture(void)
{
	char dst[128], chunk[8192];
	ssize_t r;
	int in, out;

	snprintf(dst, sizeof(dst), "%s/server.db", tmpdir);
	in = open(FIXTURE_DB, O_RDONLY);
	ck_assert_msg(in >= 0, "open %s: %s", FIXTURE_DB, strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0640);
	ck_assert_int_ge(out, 0);
	while ((r = read(in, chunk, sizeof(chunk))) > 0)
		ck_assert(write(out, chunk, (size_t)r) == r);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(close(in), 0);
	ck_assert_int_eq(close(out), 0);
}

static void
fixture_setup(void)
{
	make_tmpdir();
	copy_fixture();
	open_db();
}

START_TEST(test_fixture_logins)
{
	char id[64];

	ck_assert_int_eq(cred("alice", "alice-password-1", id), VS_CRED_OK);
	ck_assert_str_eq(id, "5d150cf980a83f75394f4a1b");
	ck_assert_int_eq(cred("alice@example.org", "alice-password-1", id),
			 VS_CRED_OK);
	ck_assert_str_eq(id, "5d150cf980a83f75394f4a1b");
	ck_assert_int_eq(cred("bob", "bob-password-22", id), VS_CRED_OK);
	ck_assert_str_eq(id, "ea7c7ebb74028c683a1a4aac");
	ck_assert_int_eq(cred("Bob@Example.org", "bob-password-22", NULL),
			 VS_CRED_OK);
	ck_assert_int_eq(cred("carol", "carol-password-3", id),
			 VS_CRED_UNCONFIRMED);
	ck_assert_str_eq(id, "88608416852c378cb5e3759a");
	ck_assert_int_eq(cred("dave", "dave-password-44", id),
			 VS_CRED_BLOCKED);
	ck_assert_str_eq(id, "1bb953ac43cc65e0fab7e9df");
	ck_assert_int_eq(cred("alice", "bob-password-22", NULL),
			 VS_CRED_INVALID);
	ck_assert_int_eq(cred("bob@example.org", "bob-password-2", NULL),
			 VS_CRED_INVALID);
	ck_assert_int_eq(cred("dave", "dave-password-4", NULL),
			 VS_CRED_INVALID);
	ck_assert_int_eq(cred("carol@example.org", "wrong-password", NULL),
			 VS_CRED_INVALID);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
users_suite(void)
{
	Suite *s = suite_create("users");
	TCase *tc = tcase_create("store");
	TCase *fx = tcase_create("fixture");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_name_beats_email);
	tcase_add_test(tc, test_email_lookup_case);
	tcase_add_test(tc, test_credentials);
	tcase_add_test(tc, test_unused_hash_never_matches);
	tcase_add_test(tc, test_insert);
	tcase_add_test(tc, test_insert_taken);
	tcase_add_test(tc, test_insert_needs_tx);
	tcase_add_test(tc, test_insert_unique_constraint);
	tcase_add_test(tc, test_email_normalize);
	tcase_add_test(tc, test_username_valid);
	tcase_add_test(tc, test_updates);
	tcase_add_test(tc, test_delete_sessions);
	tcase_add_test(tc, test_each);
	tcase_add_test(tc, test_delete_cascade);
	tcase_add_test(tc, test_audit);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(fx, fixture_setup, teardown);
	tcase_set_timeout(fx, 60);
	tcase_add_test(fx, test_fixture_logins);
	suite_add_tcase(s, fx);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	if (!vs_password_hash(RIGHT_PW, right_hash, sizeof(right_hash))) {
		fprintf(stderr, "cannot hash the test password\n");
		return 1;
	}
	sr = srunner_create(users_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
