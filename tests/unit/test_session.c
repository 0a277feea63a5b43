/*
 * test_session.c - unit tests for src/session.c and src/csrf.c:
 * sessions stored only as hashes, 24 h absolute expiry (expired rows
 * deleted when met), scope separation (a user token never validates as
 * admin), the once-a-minute last_seen refresh, deletion of one or all
 * of a subject's sessions (and users.c's D10 helper on the same rows);
 * the session-bound CSRF check with the Origin rules (API.md 10.1) and
 * the anonymous form token (10.2), including the cookies it sets.
 *
 * Must never: touch anything outside its mkdtemp directory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "csrf.h"
#include "db.h"
#include "request.h"
#include "response.h"
#include "session.h"
#include "users.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];
static struct vs_db db;
static time_t fake_now;

static time_t
clock_fake(void)
{
	return fake_now;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
setup(void)
{
	char err[256];

	strcpy(tmpdir, "/tmp/vs_test_session_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_msg(vs_db_open(&db, tmpdir, err, sizeof(err)) == VS_DB_OK,
		      "open: %s", err);
	ck_assert_msg(vs_db_migrate(&db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
	fake_now = 1700000000;
	vs_session_set_clock(clock_fake);
}

static void
teardown(void)
{
	vs_session_set_clock(NULL);
	vs_db_close(&db);
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* One integer from a query with up to one text parameter. */
static long long
count(const char *sql, const char *p1)
{
	sqlite3_stmt *st;
	long long v;

	ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL), SQLITE_OK);
	if (p1 != NULL)
		ck_assert_int_eq(sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC),
				 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
text_of(const char *sql, const char *p1, char *out, size_t n)
{
	sqlite3_stmt *st;

	ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

/* ------------------------------------------------------------------ */
/* Sessions                                                           */
/* ------------------------------------------------------------------ */

START_TEST(test_create_stores_hashes_only)
{
	char tok[65], csrf[65], th[65], ch[65], buf[128];

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, csrf),
			 VS_DB_OK);
	ck_assert_uint_eq(strlen(tok), 64);
	ck_assert_uint_eq(strlen(csrf), 64);
	ck_assert(vs_is_lower_hex(tok, 64) && vs_is_lower_hex(csrf, 64));
	ck_assert_str_ne(tok, csrf);
	vs_sha256_hex(tok, 64, th);
	vs_sha256_hex(csrf, 64, ch);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions", NULL), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions WHERE "
			       "token_hash = ?1", th), 1);
	text_of("SELECT csrf_hash FROM server_sessions WHERE token_hash = ?1",
		th, buf, sizeof(buf));
	ck_assert_str_eq(buf, ch);
	/* Neither plaintext is anywhere in the row. */
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions WHERE "
			       "instr(token_hash || csrf_hash || subject_id, ?1) > 0",
			       tok), 0);
	text_of("SELECT scope || ' ' || subject_id || ' ' || created_at || ' ' ||"
		" last_seen || ' ' || expires_at FROM server_sessions"
		" WHERE token_hash = ?1", th, buf, sizeof(buf));
	ck_assert_str_eq(buf, "user u1 2023-11-14T22:13:20Z 2023-11-14T22:13:20Z"
			 " 2023-11-15T22:13:20Z");
}
END_TEST

START_TEST(test_validate_and_scope)
{
	char tok[65], csrf[65];
	struct vs_session s;
	bool valid = true;

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, csrf),
			 VS_DB_OK);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	ck_assert_str_eq(s.subject_id, "u1");
	ck_assert(s.scope == VS_SCOPE_USER);
	ck_assert(vs_session_csrf_matches(&s, csrf));
	ck_assert(!vs_session_csrf_matches(&s, tok));
	ck_assert(!vs_session_csrf_matches(&s, ""));
	ck_assert(!vs_session_csrf_matches(&s, NULL));
	vs_session_free(&s);

	/* A user token is never an admin session, nor the reverse. */
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_ADMIN, "admin", tok, csrf),
			 VS_DB_OK);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	ck_assert_str_eq(s.subject_id, "admin");
	vs_session_free(&s);

	/* Malformed and unknown tokens. */
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, NULL, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, "abc", &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	tok[0] = tok[0] == 'a' ? 'b' : 'a';
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	for (int i = 0; i < 64; i++)
		tok[i] = 'A';
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
}
END_TEST

/* Admin sessions (D31): the CSRF token derives from the token and the
 * bound secret, the row holds only hashes, and the session is bound to
 * exactly that secret. */
START_TEST(test_bound_session)
{
	char tok[65], csrf[65], tok2[65], csrf2[65], th[65], ch[65], buf[128];
	struct vs_session s;
	bool valid = false;

	ck_assert_int_eq(vs_session_create_bound(&db, VS_SCOPE_ADMIN, "root",
						 "$2a$10$hash-one", tok, csrf),
			 VS_DB_OK);
	ck_assert(vs_is_lower_hex(tok, 64) && vs_is_lower_hex(csrf, 64));
	ck_assert_str_ne(tok, csrf);
	vs_sha256_hex(tok, 64, th);
	vs_sha256_hex(csrf, 64, ch);
	text_of("SELECT csrf_hash FROM server_sessions WHERE token_hash = ?1",
		th, buf, sizeof(buf));
	ck_assert_str_eq(buf, ch);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions WHERE "
			       "instr(token_hash || csrf_hash || subject_id, ?1) > 0",
			       "hash-one"), 0);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	ck_assert(vs_session_csrf_matches(&s, csrf));
	ck_assert(vs_session_bound_to(&s, tok, "$2a$10$hash-one"));
	ck_assert(!vs_session_bound_to(&s, tok, "$2a$10$hash-two"));
	ck_assert(!vs_session_bound_to(&s, tok, ""));
	ck_assert(!vs_session_bound_to(&s, tok, NULL));
	ck_assert(!vs_session_bound_to(&s, csrf, "$2a$10$hash-one"));
	vs_session_free(&s);

	/* A second session with the same secret gets its own tokens. */
	ck_assert_int_eq(vs_session_create_bound(&db, VS_SCOPE_ADMIN, "root",
						 "$2a$10$hash-one", tok2, csrf2),
			 VS_DB_OK);
	ck_assert_str_ne(tok, tok2);
	ck_assert_str_ne(csrf, csrf2);

	/* An unbound session is bound to nothing. */
	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_ADMIN, "root", tok2, csrf2),
			 VS_DB_OK);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, tok2, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	ck_assert(!vs_session_bound_to(&s, tok2, "$2a$10$hash-one"));
	vs_session_free(&s);

	/* No secret, no session. */
	ck_assert_int_eq(vs_session_create_bound(&db, VS_SCOPE_ADMIN, "root", "",
						 tok2, csrf2), VS_DB_ERROR);
	ck_assert_int_eq(vs_session_create_bound(&db, VS_SCOPE_ADMIN, "root", NULL,
						 tok2, csrf2), VS_DB_ERROR);
	ck_assert_str_eq(tok2, "");
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions", NULL), 3);
}
END_TEST

START_TEST(test_absolute_expiry_deletes)
{
	char tok[65], csrf[65];
	struct vs_session s;
	bool valid = false;

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, csrf),
			 VS_DB_OK);
	/* Use keeps it alive only until 24 h after creation. */
	fake_now += VS_SESSION_TTL_SECONDS - 1;
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	vs_session_touch(&db, &s);
	vs_session_free(&s);
	fake_now += 1;
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions", NULL), 0);
}
END_TEST

START_TEST(test_unreadable_expiry_is_expired)
{
	char tok[65], csrf[65], th[65];
	struct vs_session s;
	bool valid = true;
	sqlite3_stmt *st;

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, csrf),
			 VS_DB_OK);
	vs_sha256_hex(tok, 64, th);
	ck_assert_int_eq(sqlite3_prepare_v2(db.h, "UPDATE server_sessions SET "
					    "expires_at = 'soon' WHERE token_hash = ?1",
					    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, th, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions", NULL), 0);
}
END_TEST

START_TEST(test_touch_is_throttled)
{
	char tok[65], csrf[65], th[65], seen[64];
	struct vs_session s;
	bool valid = false;

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, csrf),
			 VS_DB_OK);
	vs_sha256_hex(tok, 64, th);
	fake_now += 59;
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	vs_session_touch(&db, &s);
	vs_session_free(&s);
	text_of("SELECT last_seen FROM server_sessions WHERE token_hash = ?1",
		th, seen, sizeof(seen));
	ck_assert_str_eq(seen, "2023-11-14T22:13:20Z");
	fake_now += 1;
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	vs_session_touch(&db, &s);
	ck_assert_str_eq(s.last_seen, "2023-11-14T22:14:20Z");
	vs_session_free(&s);
	text_of("SELECT last_seen FROM server_sessions WHERE token_hash = ?1",
		th, seen, sizeof(seen));
	ck_assert_str_eq(seen, "2023-11-14T22:14:20Z");
}
END_TEST

START_TEST(test_delete_one_and_all)
{
	char t1[65], t2[65], t3[65], c[65];
	struct vs_session s;
	bool valid = true;

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", t1, c), VS_DB_OK);
	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", t2, c), VS_DB_OK);
	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u2", t3, c), VS_DB_OK);
	ck_assert_int_eq(vs_session_delete(&db, t1), VS_DB_OK);
	ck_assert_int_eq(vs_session_delete(&db, t1), VS_DB_OK);	/* gone: fine */
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, t1, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(vs_session_delete_subject(&db, VS_SCOPE_USER, "u1"),
			 VS_DB_OK);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, t2, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, t3, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	vs_session_free(&s);
	/* users.c's D10 helper ends the same rows, inside a transaction. */
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_ADMIN, "u2", t1, c), VS_DB_OK);
	ck_assert_int_eq(vs_user_delete_sessions(&db, "u2"), VS_DB_OK);
	ck_assert_int_eq(vs_db_commit(&db), VS_DB_OK);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, t3, &s, &valid),
			 VS_DB_OK);
	ck_assert(!valid);
	/* ... and leaves an admin session of the same name alone. */
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_ADMIN, t1, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	vs_session_free(&s);
}
END_TEST

START_TEST(test_create_inside_rolled_back_tx)
{
	char tok[65], c[65];

	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, c),
			 VS_DB_OK);
	vs_db_rollback(&db);
	ck_assert_int_eq(count("SELECT count(*) FROM server_sessions", NULL), 0);
	ck_assert_int_ne(vs_session_create(&db, VS_SCOPE_USER, "", tok, c),
			 VS_DB_OK);
	ck_assert_str_eq(tok, "");
}
END_TEST

/* ------------------------------------------------------------------ */
/* CSRF                                                               */
/* ------------------------------------------------------------------ */

struct fake {
	const char *const *params;
};

static const char *
fake_param(void *ctx, const char *name)
{
	const struct fake *f = ctx;

	for (size_t i = 0; f->params[i] != NULL; i += 2)
		if (strcmp(f->params[i], name) == 0)
			return f->params[i + 1];
	return NULL;
}

static ssize_t
fake_read(void *ctx, char *buf, size_t n)
{
	return 0;
}

/* A POST with these extra params (name, value pairs, NULL-ended). */
static struct fake fk;
static struct vs_request_source src;
static const char *pbuf[40];

static void
make_req(struct vs_request *r, const char *const *extra)
{
	size_t n = 0;

	pbuf[n++] = "REQUEST_METHOD";
	pbuf[n++] = "POST";
	pbuf[n++] = "REQUEST_URI";
	pbuf[n++] = "/logout";
	pbuf[n++] = "REMOTE_ADDR";
	pbuf[n++] = "192.0.2.1";
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
		pbuf[n++] = extra[i];
	pbuf[n] = NULL;
	fk.params = pbuf;
	src.param = fake_param;
	src.read = fake_read;
	src.ctx = &fk;
	ck_assert(vs_request_init(r, &src, NULL, 0));
}

/* Runs the session check for a request with extra params. */
static enum vs_csrf
check(const struct vs_session *s, const char *public_url,
      const struct vs_kvlist *form, bool form_ok, const char *const *extra)
{
	struct vs_request r;
	enum vs_csrf rc;

	make_req(&r, extra);
	rc = vs_csrf_check(&r, s, public_url, form, form_ok);
	vs_request_free(&r);
	return rc;
}

START_TEST(test_csrf_session_check)
{
	char tok[65], csrf[65], cookie[128], other[65];
	struct vs_session s;
	struct vs_kvlist form = { 0 }, wrong = { 0 };
	bool valid = false;
	char fbody[128];

	ck_assert_int_eq(vs_session_create(&db, VS_SCOPE_USER, "u1", tok, csrf),
			 VS_DB_OK);
	ck_assert_int_eq(vs_session_validate(&db, VS_SCOPE_USER, tok, &s, &valid),
			 VS_DB_OK);
	ck_assert(valid);
	snprintf(cookie, sizeof(cookie), "csrf_token=%s", csrf);
	snprintf(fbody, sizeof(fbody), "csrf_token=%s&password=x", csrf);
	ck_assert(vs_form_parse(fbody, strlen(fbody), &form));
	ck_assert(vs_random_hex(32, other));
	snprintf(fbody, sizeof(fbody), "csrf_token=%s", other);
	ck_assert(vs_form_parse(fbody, strlen(fbody), &wrong));

	{	/* No cookie. */
		const char *e[] = { "HTTP_X_CSRF_TOKEN", csrf, NULL };
		ck_assert_int_eq(check(&s, "", NULL, true, e), VS_CSRF_REQUIRED);
	}
	{	/* Header equal to cookie and session: passes. */
		const char *e[] = { "HTTP_COOKIE", cookie, "HTTP_X_CSRF_TOKEN",
				    csrf, NULL };
		ck_assert_int_eq(check(&s, "", NULL, true, e), VS_CSRF_OK);
	}
	{	/* Form field when the header is absent. */
		const char *e[] = { "HTTP_COOKIE", cookie, "CONTENT_TYPE",
				    "application/x-www-form-urlencoded", NULL };
		ck_assert_int_eq(check(&s, "", &form, true, e), VS_CSRF_OK);
		ck_assert_int_eq(check(&s, "", &wrong, true, e), VS_CSRF_INVALID);
		ck_assert_int_eq(check(&s, "", NULL, false, e), VS_CSRF_BAD_FORM);
	}
	{	/* A JSON body has no field: nothing to compare. */
		const char *e[] = { "HTTP_COOKIE", cookie, "CONTENT_TYPE",
				    "application/json", NULL };
		ck_assert_int_eq(check(&s, "", &form, true, e), VS_CSRF_INVALID);
	}
	{	/* Cookie and header agree but are not the session's. */
		char oc[128];
		snprintf(oc, sizeof(oc), "csrf_token=%s", other);
		const char *e[] = { "HTTP_COOKIE", oc, "HTTP_X_CSRF_TOKEN",
				    other, NULL };
		ck_assert_int_eq(check(&s, "", NULL, true, e), VS_CSRF_INVALID);
	}
	{	/* Header not equal to the cookie. */
		const char *e[] = { "HTTP_COOKIE", cookie, "HTTP_X_CSRF_TOKEN",
				    other, NULL };
		ck_assert_int_eq(check(&s, "", NULL, true, e), VS_CSRF_INVALID);
	}
	{	/* Origin against Host, and against public_url. */
		const char *ok[] = { "HTTP_COOKIE", cookie, "HTTP_X_CSRF_TOKEN",
				     csrf, "HTTP_HOST", "sync.example:8080",
				     "HTTP_ORIGIN", "http://SYNC.example:8080", NULL };
		const char *bad[] = { "HTTP_COOKIE", cookie, "HTTP_X_CSRF_TOKEN",
				      csrf, "HTTP_HOST", "sync.example",
				      "HTTP_ORIGIN", "http://evil.example", NULL };
		ck_assert_int_eq(check(&s, "", NULL, true, ok), VS_CSRF_OK);
		ck_assert_int_eq(check(&s, "", NULL, true, bad), VS_CSRF_ORIGIN);
		ck_assert_int_eq(check(&s, "https://sync.example:8080/", NULL,
				       true, ok), VS_CSRF_ORIGIN);
		ck_assert_int_eq(check(&s, "HTTP://sync.example:8080/base",
				       NULL, true, ok), VS_CSRF_OK);
	}
	vs_kvlist_free(&form);
	vs_kvlist_free(&wrong);
	vs_session_free(&s);
}
END_TEST

static bool
origin_ok(const char *origin, const char *host, bool https,
	  const char *public_url)
{
	const char *e[] = { "HTTP_ORIGIN", origin, "HTTP_HOST", host,
			    "HTTPS", https ? "on" : "", NULL };
	struct vs_request r;
	bool ok;

	make_req(&r, e);
	ok = vs_origin_allowed(&r, public_url);
	vs_request_free(&r);
	return ok;
}

START_TEST(test_origin_rules)
{
	ck_assert(origin_ok("", "a.example", false, NULL));
	ck_assert(origin_ok("  ", "a.example", false, NULL));
	ck_assert(origin_ok("http://a.example", "a.example", false, NULL));
	ck_assert(origin_ok("http://A.EXAMPLE", "a.example", false, ""));
	ck_assert(!origin_ok("https://a.example", "a.example", false, NULL));
	ck_assert(origin_ok("https://a.example", "a.example", true, NULL));
	ck_assert(!origin_ok("http://a.example", "a.example", true, NULL));
	ck_assert(!origin_ok("null", "a.example", false, NULL));
	ck_assert(!origin_ok("a.example", "a.example", false, NULL));
	ck_assert(!origin_ok("http://", "a.example", false, NULL));
	ck_assert(!origin_ok("http://a.example:81", "a.example", false, NULL));
	ck_assert(!origin_ok("http://a.example.evil", "a.example", false, NULL));
	/* public_url decides when set, whatever Host says. */
	ck_assert(origin_ok("https://sync.example", "internal:8080", false,
			    "https://sync.example/"));
	ck_assert(!origin_ok("http://internal:8080", "internal:8080", false,
			     "https://sync.example"));
	ck_assert(!origin_ok("https://sync.example", "x", false, "not a url"));
}
END_TEST

START_TEST(test_anon_token_and_check)
{
	struct vs_request r;
	struct vs_response res;
	char tok[VS_ANON_CSRF_MAX + 1], cookie[256];

	/* No cookie: a fresh token, set as the cookie (10.2, API.md 11). */
	make_req(&r, NULL);
	vs_res_init(&res);
	ck_assert(vs_csrf_anon_token(&r, &res, tok));
	ck_assert_uint_eq(strlen(tok), 64);
	ck_assert(vs_is_lower_hex(tok, 64));
	ck_assert_ptr_nonnull(res.headers.data);
	snprintf(cookie, sizeof(cookie), "Set-Cookie: verstak_locale_csrf=%s; "
		 "Path=/; Max-Age=86400; HttpOnly; SameSite=Strict\r\n", tok);
	ck_assert_str_eq(res.headers.data, cookie);
	vs_res_free(&res);
	vs_request_free(&r);

	/* Over HTTPS the cookie is Secure. */
	{
		const char *e[] = { "HTTPS", "on", NULL };
		make_req(&r, e);
		vs_res_init(&res);
		ck_assert(vs_csrf_anon_token(&r, &res, tok));
		ck_assert_ptr_nonnull(strstr(res.headers.data,
					     "; HttpOnly; Secure; SameSite=Strict"));
		vs_res_free(&res);
		vs_request_free(&r);
	}
	/* A cookie present: reused, nothing set. */
	snprintf(cookie, sizeof(cookie), "verstak_locale_csrf=%s", "abc123");
	{
		const char *e[] = { "HTTP_COOKIE", cookie, NULL };
		make_req(&r, e);
		vs_res_init(&res);
		ck_assert(vs_csrf_anon_token(&r, &res, tok));
		ck_assert_str_eq(tok, "abc123");
		ck_assert_uint_eq(res.headers.len, 0);
		ck_assert(vs_csrf_anon_ok(&r, "abc123", NULL));
		ck_assert(!vs_csrf_anon_ok(&r, "abc124", NULL));
		ck_assert(!vs_csrf_anon_ok(&r, "", NULL));
		ck_assert(!vs_csrf_anon_ok(&r, NULL, NULL));
		vs_res_free(&res);
		vs_request_free(&r);
	}
	{	/* Right field, foreign Origin: refused. */
		const char *e[] = { "HTTP_COOKIE", cookie, "HTTP_HOST", "a.example",
				    "HTTP_ORIGIN", "http://b.example", NULL };
		make_req(&r, e);
		ck_assert(!vs_csrf_anon_ok(&r, "abc123", NULL));
		vs_request_free(&r);
	}
	{	/* No cookie: refused even with a field. */
		make_req(&r, NULL);
		ck_assert(!vs_csrf_anon_ok(&r, "abc123", NULL));
		vs_request_free(&r);
	}
}
END_TEST

START_TEST(test_csrf_answers)
{
	struct vs_response res;

	vs_res_init(&res);
	vs_csrf_answer(&res, VS_CSRF_REQUIRED);
	ck_assert_int_eq(res.status, 403);
	ck_assert_str_eq(res.body.data,
			 "{\"error\":\"CSRF token is required\",\"code\":\"csrf_invalid\"}\n");
	vs_csrf_answer(&res, VS_CSRF_INVALID);
	ck_assert_str_eq(res.body.data,
			 "{\"error\":\"CSRF token is invalid\",\"code\":\"csrf_invalid\"}\n");
	vs_csrf_answer(&res, VS_CSRF_ORIGIN);
	ck_assert_str_eq(res.body.data,
			 "{\"error\":\"request origin is not allowed\",\"code\":\"csrf_invalid\"}\n");
	vs_csrf_answer(&res, VS_CSRF_BAD_FORM);
	ck_assert_int_eq(res.status, 400);
	ck_assert(vs_is_form_content("application/x-www-form-urlencoded; charset=UTF-8"));
	ck_assert(vs_is_form_content("multipart/form-data; boundary=x"));
	ck_assert(!vs_is_form_content("application/json"));
	vs_res_free(&res);
}
END_TEST

START_TEST(test_cookie_writer)
{
	struct vs_response res;
	struct vs_cookie ck = { "user_session", "ab", "/", 86400, true, true, "Lax" };

	vs_res_init(&res);
	ck_assert(vs_res_cookie(&res, &ck));
	ck_assert_str_eq(res.headers.data, "Set-Cookie: user_session=ab; Path=/; "
			 "Max-Age=86400; HttpOnly; Secure; SameSite=Lax\r\n");
	vs_res_reset(&res);
	ck.value = "";
	ck.max_age = 0;
	ck.secure = false;
	ck.same_site = NULL;
	ck.http_only = false;
	ck.name = "csrf_token";
	ck_assert(vs_res_cookie(&res, &ck));
	ck_assert_str_eq(res.headers.data,
			 "Set-Cookie: csrf_token=; Path=/; Max-Age=0\r\n");
	vs_res_reset(&res);
	ck.value = "a;b";
	ck_assert(!vs_res_cookie(&res, &ck));
	ck.value = "a\r\nX: y";
	ck_assert(!vs_res_cookie(&res, &ck));
	ck.value = "ok";
	ck.name = "a=b";
	ck_assert(!vs_res_cookie(&res, &ck));
	ck_assert_uint_eq(res.headers.len, 0);
	ck_assert(vs_res_cache_control(&res, "no-store"));
	ck_assert(vs_res_cache_control(&res, "no-store"));
	ck_assert_str_eq(res.headers.data, "Cache-Control: no-store\r\n");
	vs_res_free(&res);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_stores_hashes_only);
	tcase_add_test(tc, test_validate_and_scope);
	tcase_add_test(tc, test_bound_session);
	tcase_add_test(tc, test_absolute_expiry_deletes);
	tcase_add_test(tc, test_unreadable_expiry_is_expired);
	tcase_add_test(tc, test_touch_is_throttled);
	tcase_add_test(tc, test_delete_one_and_all);
	tcase_add_test(tc, test_create_inside_rolled_back_tx);
	tcase_add_test(tc, test_csrf_session_check);
	tcase_add_test(tc, test_origin_rules);
	tcase_add_test(tc, test_anon_token_and_check);
	tcase_add_test(tc, test_csrf_answers);
	tcase_add_test(tc, test_cookie_writer);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
