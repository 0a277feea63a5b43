/*
 * test_blobs.c - unit tests for src/blobs.c and src/gc.c through the
 * route table with a real app (config, database, blobs/ in a temp data
 * directory) and a fake FastCGI body source: uploads fed in odd chunk
 * sizes, the body ending early (408, D25), limits and quotas with
 * blobs/ unchanged, dedup, the D24 repair, the download hand-off to
 * nginx (X-Accel-Redirect, no Content-Length of our own) and every
 * download refusal, and garbage collection (D13): grace period,
 * referenced content kept, stray files, temp uploads, and an upload
 * that attaches between GC's two transactions.
 *
 * Must never: leave its temp directory behind or touch the fixture.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "app.h"
#include "blobs.h"
#include "gc.h"
#include "json.h"
#include "request.h"
#include "response.h"
#include "router.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#define U_ALICE "aaaaaaaaaaaaaaaaaaaaaaaa"
#define U_BOB "bbbbbbbbbbbbbbbbbbbbbbbb"
#define MAX_BLOB 4096
#define MAX_VAULT 6000
#define MAX_USER 9000

static char tmpdir[64];
static struct vs_app app;

/* ------------------------------------------------------------------ */
/* Fixture                                                            */
/* ------------------------------------------------------------------ */

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
exec_ok(const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(app.db.h, sql, NULL, NULL, &msg);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
}

static long long
count(const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;

	ck_assert_int_eq(sqlite3_prepare_v2(app.db.h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
add_device(const char *id, const char *user, const char *vault,
	   const char *token)
{
	char hash[65], sql[512];

	vs_sha256_hex(token, strlen(token), hash);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO server_devices (id, name, api_key, token_hash,"
		 " user_id, vault_id, created_at) VALUES ('%s', '%s',"
		 " 'disabled:%s', '%s', %s%s%s, '%s', '2026-01-01T00:00:00Z')",
		 id, id, id, hash, user ? "'" : "", user ? user : "NULL",
		 user ? "'" : "", vault);
	exec_ok(sql);
}

static void
setup(void)
{
	char err[256] = "", path[128];
	FILE *f;

	strcpy(tmpdir, "/tmp/vs_test_blobs_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/config.yml", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "limits:\n    max_blob_bytes: %d\n"
		"    max_vault_blob_bytes: %d\n    max_user_blob_bytes: %d\n",
		MAX_BLOB, MAX_VAULT, MAX_USER);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(vs_app_open(&app, tmpdir, true, err, sizeof(err)), "%s", err);
	exec_ok("INSERT INTO server_users (id, username, email, password_hash,"
		" confirmed, created_at) VALUES"
		" ('" U_ALICE "', 'alice', 'a@example.org', 'x', 1, '2026-01-01T00:00:00Z'),"
		" ('" U_BOB "', 'bob', 'b@example.org', 'x', 1, '2026-01-01T00:00:00Z')");
	add_device("dev_a1", U_ALICE, "v1", "tok-a1");
	add_device("dev_a2", U_ALICE, "v1", "tok-a2");
	add_device("dev_a3", U_ALICE, "v2", "tok-a3");
	add_device("dev_a4", U_ALICE, "v3", "tok-a4");
	add_device("dev_b1", U_BOB, "v1", "tok-b1");
	add_device("dev_nu", NULL, "", "tok-nouser");
}

static void
teardown(void)
{
	vs_app_close(&app);
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* Fake request source                                                */
/* ------------------------------------------------------------------ */

struct fake {
	const char *params[24];
	const char *body;
	size_t len, off, chunk;
	size_t fail_at;          /* read error once this much was read */
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
	struct fake *f = ctx;
	size_t k = f->len - f->off;

	if (f->fail_at != 0 && f->off >= f->fail_at)
		return -1;
	if (k > n)
		k = n;
	if (k > f->chunk)
		k = f->chunk;
	if (f->fail_at != 0 && k > f->fail_at - f->off)
		k = f->fail_at - f->off;
	memcpy(buf, f->body + f->off, k);
	f->off += k;
	return (ssize_t)k;
}

struct call {
	const char *method, *uri, *token, *ctype, *clen;
	const char *body;
	size_t len, chunk, fail_at;
};

/* Routes one request like the worker does; caller frees res. */
static void
do_call(const struct call *k, struct vs_response *res)
{
	char auth[96];
	struct fake f;
	size_t i = 0;
	struct vs_request_source src = { fake_param, fake_read, &f };
	struct vs_request req;
	struct vs_ctx c;

	memset(&f, 0, sizeof(f));
	f.params[i++] = "REQUEST_METHOD";
	f.params[i++] = k->method;
	f.params[i++] = "REQUEST_URI";
	f.params[i++] = k->uri;
	f.params[i++] = "REMOTE_ADDR";
	f.params[i++] = "192.0.2.1";
	if (k->token != NULL) {
		snprintf(auth, sizeof(auth), "Bearer %s", k->token);
		f.params[i++] = "HTTP_AUTHORIZATION";
		f.params[i++] = auth;
	}
	if (k->ctype != NULL) {
		f.params[i++] = "CONTENT_TYPE";
		f.params[i++] = k->ctype;
	}
	if (k->clen != NULL) {
		f.params[i++] = "CONTENT_LENGTH";
		f.params[i++] = k->clen;
	}
	f.body = k->body;
	f.len = k->len;
	f.chunk = k->chunk ? k->chunk : 65536;
	f.fail_at = k->fail_at;
	ck_assert(vs_request_init(&req, &src, NULL, 0));
	vs_res_init(res);
	c.app = &app;
	c.req = &req;
	c.res = res;
	vs_route(&c);
	ck_assert_int_eq(app.db.tx_depth, 0);
	vs_request_drain(&req, 1 << 30);
	vs_request_free(&req);
}

#define BND "----vsTestBoundary"
#define CT_OK "multipart/form-data; boundary=" BND

/* A one-part body: name="file", the filename, the content. */
static char *
form(const char *content, size_t len, const char *disp, size_t *out_len)
{
	char head[256];
	int h = snprintf(head, sizeof(head),
			 "--" BND "\r\nContent-Disposition: %s\r\n"
			 "Content-Type: application/octet-stream\r\n\r\n", disp);
	static const char tail[] = "\r\n--" BND "--\r\n";
	char *b = malloc((size_t)h + len + sizeof(tail));

	ck_assert_ptr_nonnull(b);
	memcpy(b, head, (size_t)h);
	memcpy(b + h, content, len);
	memcpy(b + (size_t)h + len, tail, sizeof(tail));
	*out_len = (size_t)h + len + sizeof(tail) - 1;
	return b;
}

static void
fill(char *buf, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (char)(seed >> 16);
	}
}

/* Uploads content as token; returns the status, sha filled on 200. */
static int
upload_as(const char *token, const char *content, size_t len, size_t chunk,
	  char sha[65], struct vs_response *res)
{
	size_t blen;
	char *body = form(content, len, "form-data; name=\"file\"; filename=\"f\"", &blen);
	struct call k = { "POST", "/api/v1/blobs/", token, CT_OK, NULL, body,
			  blen, chunk, 0 };
	int status;

	do_call(&k, res);
	status = res->status;
	if (status == 200 && sha != NULL) {
		cJSON *v = NULL;
		ck_assert_int_eq(vs_json_parse(res->body.data, res->body.len, &v),
				 VS_JSON_OK);
		snprintf(sha, 65, "%s",
			 cJSON_GetObjectItem(v, "sha256")->valuestring);
		ck_assert_int_eq((long long)cJSON_GetObjectItem(v, "size")->valuedouble,
				 (long long)len);
		cJSON_Delete(v);
	}
	free(body);
	return status;
}

static void
expect_error(const struct vs_response *res, int status, const char *code,
	     const char *msg)
{
	cJSON *v = NULL;

	ck_assert_int_eq(res->status, status);
	ck_assert_int_eq(vs_json_parse(res->body.data, res->body.len, &v), VS_JSON_OK);
	ck_assert_str_eq(cJSON_GetObjectItem(v, "code")->valuestring, code);
	if (msg != NULL)
		ck_assert_str_eq(cJSON_GetObjectItem(v, "error")->valuestring, msg);
	cJSON_Delete(v);
}

/* Every path under blobs/, sorted, one per line. */
static void
list_into(const char *dir, const char *rel, struct vs_buf *out)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);

	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n; i++) {
		char sub[512], subrel[256];
		struct stat st;

		if (strcmp(names[i]->d_name, ".") != 0 &&
		    strcmp(names[i]->d_name, "..") != 0) {
			snprintf(sub, sizeof(sub), "%s/%s", dir, names[i]->d_name);
			snprintf(subrel, sizeof(subrel), "%s%s", rel, names[i]->d_name);
			vs_buf_printf(out, "%s\n", subrel);
			if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
				strcat(subrel, "/");
				list_into(sub, subrel, out);
			}
		}
		free(names[i]);
	}
	free(names);
}

static char *
listing(void)
{
	struct vs_buf b;

	vs_buf_init(&b);
	vs_buf_puts(&b, "");
	list_into(app.blobs_dir, "", &b);
	return b.data;
}

static char *
blob_file(const char *sha)
{
	char *p = vs_blob_path(app.blobs_dir, sha);

	ck_assert_ptr_nonnull(p);
	return p;
}

static void
set_mtime(const char *path, time_t t)
{
	struct utimbuf u = { t, t };

	ck_assert_int_eq(utime(path, &u), 0);
}

/* ------------------------------------------------------------------ */
/* Upload                                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_upload_streams_in_any_chunks)
{
	static const size_t chunks[] = { 1, 7, 100, 4096, 1 << 20 };
	char content[3000], sha[65], want[65];
	struct vs_response res;
	struct stat st;
	char *path;

	fill(content, sizeof(content), 1);
	vs_sha256_hex(content, sizeof(content), want);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(*chunks); i++) {
		ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content),
					   chunks[i], sha, &res), 200);
		ck_assert_str_eq(sha, want);
		ck_assert_str_eq(res.content_type, "application/json");
		vs_res_free(&res);
	}
	path = blob_file(want);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, (long long)sizeof(content));
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	free(path);
	/* one file, one row, one reference */
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 1);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blob_refs"), 1);
	path = listing();
	ck_assert_ptr_null(strstr(path, ".upload-"));
	free(path);
}
END_TEST

START_TEST(test_dedup_across_scopes_and_quota_charge)
{
	char content[2500], sha[65];
	struct vs_response res;

	fill(content, sizeof(content), 2);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	ck_assert_int_eq(upload_as("tok-b1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	ck_assert_int_eq(upload_as("tok-a3", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 1);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blob_refs"), 3);
	/* alice now has 5000 bytes: a third vault would pass the vault
	 * quota (6000) but not the user quota (9000) */
	fill(content, sizeof(content), 3);
	ck_assert_int_eq(upload_as("tok-a4", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	fill(content, sizeof(content), 4);
	ck_assert_int_eq(upload_as("tok-a4", content, sizeof(content), 0, sha, &res), 413);
	expect_error(&res, 413, "quota_exceeded", "blob quota exceeded");
	vs_res_free(&res);
	/* the same content again in a scope that has it is not charged */
	fill(content, sizeof(content), 3);
	ck_assert_int_eq(upload_as("tok-a4", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
}
END_TEST

/* Uploads 2500 bytes made from seed as token, which must succeed. */
static void
upload_ok(const char *token, unsigned seed)
{
	char content[2500], sha[65];
	struct vs_response res;

	fill(content, sizeof(content), seed);
	ck_assert_int_eq(upload_as(token, content, sizeof(content), 0, sha,
				   &res), 200);
	vs_res_free(&res);
}

/* SQL that sums a user's referenced bytes, and where it ran. */
static int sums_in_write, sums_outside;

static int
trace_sums(unsigned type, void *ctx, void *p, void *x)
{
	sqlite3_stmt *st = p;
	const char *sql = sqlite3_sql(st);

	(void)ctx;
	(void)x;
	if (type == SQLITE_TRACE_STMT && sql != NULL &&
	    strstr(sql, "SUM(size)") != NULL) {
		if (sqlite3_txn_state(app.db.h, NULL) == SQLITE_TXN_WRITE)
			sums_in_write++;
		else
			sums_outside++;
	}
	return 0;
}

/* The quota sums read every reference of the user: they run before the
 * write lock, never under it, while nothing changes in between. */
START_TEST(test_quota_sums_outside_the_write_lock)
{
	ck_assert_int_eq(sqlite3_trace_v2(app.db.h, SQLITE_TRACE_STMT,
					  trace_sums, NULL), SQLITE_OK);
	upload_ok("tok-a1", 30);
	upload_ok("tok-a1", 31);
	upload_ok("tok-a3", 32);
	ck_assert_int_eq(sums_outside, 3);
	ck_assert_int_eq(sums_in_write, 0);
	/* The same content again in its scope: nothing is charged, so
	 * nothing is summed. */
	upload_ok("tok-a3", 32);
	ck_assert_int_eq(sums_outside, 3);
	ck_assert_int_eq(sums_in_write, 0);
	/* What the new references added, per scope, not the repeat. */
	ck_assert_int_eq(count("SELECT bytes FROM vs_blob_ref_added"
			       " WHERE user_id = '" U_ALICE "' AND vault_id = 'v1'"),
			 5000);
	ck_assert_int_eq(count("SELECT bytes FROM vs_blob_ref_added"
			       " WHERE user_id = '" U_ALICE "' AND vault_id = 'v2'"),
			 2500);
	(void)sqlite3_trace_v2(app.db.h, 0, NULL, NULL);
}
END_TEST

static int hook_runs;
static const char *between_user, *between_token;

/* Another upload of the same user, committed between the early sums
 * and the write lock of the upload that calls this. */
static void
upload_in_between(struct vs_db *db, const char *user)
{
	ck_assert(!db->wlock.held);
	ck_assert_int_eq(db->tx_depth, 0);
	ck_assert_str_eq(user, between_user);
	vs_blobs_test_hook = NULL;	/* once */
	hook_runs++;
	upload_ok(between_token, 41 + (unsigned)hook_runs);
}

/* token uploads new content while user's upload by between commits
 * between its early quota sums and its write lock: refused. */
static void
refused_after_upload_between(const char *user, const char *between,
			     const char *token, unsigned seed)
{
	char content[2500], sha[65];
	struct vs_response res;
	int runs = hook_runs;

	between_user = user;
	between_token = between;
	vs_blobs_test_hook = upload_in_between;
	fill(content, sizeof(content), seed);
	ck_assert_int_eq(upload_as(token, content, sizeof(content), 0, sha,
				   &res), 413);
	expect_error(&res, 413, "quota_exceeded", "blob quota exceeded");
	vs_res_free(&res);
	vs_blobs_test_hook = NULL;
	ck_assert_int_eq(hook_runs, runs + 1);
}

START_TEST(test_quota_sees_an_upload_between_its_reads)
{
	/* alice: 2500 bytes in v1 and 2500 in v3, 5000 of her 9000. The
	 * early sums say 5000, which would leave room for 2500 more; the
	 * upload in between (v2) brings her to 7500, which does not (v1
	 * itself would have room: 5000 of 6000). */
	upload_ok("tok-a1", 42);
	upload_ok("tok-a4", 43);
	refused_after_upload_between(U_ALICE, "tok-a3", "tok-a1", 44);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blob_refs"
			       " WHERE user_id = '" U_ALICE "'"), 3);
	ck_assert_int_eq(count("SELECT COALESCE(SUM(size), 0) FROM server_blob_refs"
			       " WHERE user_id = '" U_ALICE "'"), 7500);

	/* The same in one vault: bob has 2500 of v1's 6000; the upload in
	 * between brings v1 to 5000, so this one would pass his own total
	 * (7500 of 9000) but not the vault's. */
	upload_ok("tok-b1", 45);
	refused_after_upload_between(U_BOB, "tok-b1", "tok-b1", 46);
	ck_assert_int_eq(count("SELECT COALESCE(SUM(size), 0) FROM server_blob_refs"
			       " WHERE user_id = '" U_BOB "'"), 5000);
}
END_TEST

START_TEST(test_limits_leave_nothing)
{
	char content[MAX_BLOB + 1], sha[65];
	struct vs_response res;
	char *before = listing(), *after;
	struct call k = { "POST", "/api/v1/blobs/", "tok-a1", CT_OK, "99999999",
			  "x", 1, 0, 0 };

	fill(content, sizeof(content), 5);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 1000, sha, &res), 413);
	expect_error(&res, 413, "blob_too_large", "blob is too large");
	vs_res_free(&res);
	/* exactly the limit is fine... but fills the vault quota next */
	ck_assert_int_eq(upload_as("tok-a1", content, MAX_BLOB, 1000, sha, &res), 200);
	vs_res_free(&res);
	free(before);
	before = listing();
	ck_assert_int_eq(upload_as("tok-a1", content + 1, MAX_BLOB, 1000, sha, &res), 413);
	expect_error(&res, 413, "quota_exceeded", NULL);
	vs_res_free(&res);
	/* a declared body over the cap is refused unread */
	do_call(&k, &res);
	expect_error(&res, 413, "blob_too_large", NULL);
	vs_res_free(&res);
	after = listing();
	ck_assert_str_eq(before, after);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blob_refs"), 1);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_body_ends_early_is_408)
{
	char content[4000];
	size_t blen;
	char *body, *before = listing(), *after;
	struct vs_response res;
	struct call k;

	fill(content, sizeof(content), 6);
	body = form(content, sizeof(content), "form-data; name=file; filename=x", &blen);
	k = (struct call){ "POST", "/api/v1/blobs/", "tok-a1", CT_OK, NULL, body,
			   blen, 500, 2100 };
	do_call(&k, &res);
	expect_error(&res, 408, "request_timeout", NULL);
	vs_res_free(&res);
	/* a body that simply stops (no close delimiter) is malformed */
	k.fail_at = 0;
	k.len = 2100;
	do_call(&k, &res);
	expect_error(&res, 400, "invalid_multipart", "invalid multipart request");
	vs_res_free(&res);
	after = listing();
	ck_assert_str_eq(before, after);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 0);
	free(before);
	free(after);
	free(body);
}
END_TEST

START_TEST(test_multipart_refusals)
{
	static const struct {
		const char *ctype, *body, *msg;
	} cases[] = {
		{ NULL, "x", "invalid multipart request" },
		{ "text/plain", "x", "invalid multipart request" },
		{ "multipart/form-data", "x", "invalid multipart request" },
		{ CT_OK, "--" BND "--\r\n", "file field is required" },
		{ CT_OK, "", "invalid multipart request" },
		{ CT_OK, "--" BND "\r\nbroken header\r\n\r\nx\r\n--" BND "--\r\n",
		  "invalid multipart request" },
		{ CT_OK, "--" BND "\r\nContent-Disposition: form-data; name=other;"
		  " filename=a\r\n\r\nx\r\n--" BND "--\r\n",
		  "exactly one file field is required" },
		{ CT_OK, "--" BND "\r\nContent-Disposition: form-data; name=file\r\n"
		  "\r\nx\r\n--" BND "--\r\n", "exactly one file field is required" },
		{ CT_OK, "--" BND "\r\n\r\nx\r\n--" BND "--\r\n",
		  "exactly one file field is required" },
		{ CT_OK, "--" BND "\r\nContent-Disposition: form-data; name=file;"
		  " filename=a\r\n\r\nx\r\n--" BND "\r\nContent-Disposition: form-data;"
		  " name=more\r\n\r\ny\r\n--" BND "--\r\n",
		  "exactly one file field is required" },
	};
	char *before = listing(), *after;

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct call k = { "POST", "/api/v1/blobs/anything/ignored",
				  "tok-a1", cases[i].ctype, NULL, cases[i].body,
				  strlen(cases[i].body), 3, 0 };
		struct vs_response res;

		do_call(&k, &res);
		expect_error(&res, 400, "invalid_multipart", cases[i].msg);
		vs_res_free(&res);
	}
	after = listing();
	ck_assert_str_eq(before, after);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 0);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_reupload_repairs_d24)
{
	char content[3000], sha[65];
	struct vs_response res;
	struct stat st;
	char *path;
	int fd;

	fill(content, sizeof(content), 7);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	path = blob_file(sha);
	/* truncated */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, (long long)sizeof(content));
	/* missing, with its directories */
	ck_assert_int_eq(unlink(path), 0);
	path[strlen(path) - 65] = '\0';
	ck_assert_int_eq(rmdir(path), 0);
	free(path);
	ck_assert_int_eq(upload_as("tok-a2", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	path = blob_file(sha);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, (long long)sizeof(content));
	free(path);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blob_refs"), 1);
}
END_TEST

START_TEST(test_ref_size_mismatch_is_500)
{
	char content[100], sha[65];
	struct vs_response res;
	char *before, *after;

	fill(content, sizeof(content), 8);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	exec_ok("UPDATE server_blob_refs SET size = 99");
	before = listing();
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 500);
	vs_res_free(&res);
	after = listing();
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Auth, methods, download                                            */
/* ------------------------------------------------------------------ */

static void
get(const char *token, const char *uri, struct vs_response *res)
{
	struct call k = { "GET", uri, token, NULL, NULL, "", 0, 0, 0 };

	do_call(&k, res);
}

START_TEST(test_auth_before_method)
{
	struct vs_response res;
	struct call k = { "DELETE", "/api/v1/blobs/x", NULL, NULL, NULL, "", 0, 0, 0 };
	struct vs_buf head;

	do_call(&k, &res);
	expect_error(&res, 401, "unauthorized", "API key required");
	vs_res_free(&res);
	k.token = "tok-a1";
	k.method = "HEAD";
	do_call(&k, &res);
	expect_error(&res, 405, "method_not_allowed", NULL);
	vs_buf_init(&head);
	ck_assert(vs_res_head(&res, &head));
	ck_assert_ptr_nonnull(strstr(head.data, "\r\nAllow: GET, POST\r\n"));
	vs_buf_free(&head);
	vs_res_free(&res);
	k.token = "tok-nouser";
	do_call(&k, &res);
	expect_error(&res, 403, "forbidden", NULL);
	vs_res_free(&res);
	k.token = "nope";
	do_call(&k, &res);
	expect_error(&res, 401, "unauthorized", "invalid API key");
	vs_res_free(&res);
}
END_TEST

START_TEST(test_download_hands_over_to_nginx)
{
	char content[1234], sha[65], uri[128], want[160];
	struct vs_response res;
	struct vs_buf head;

	fill(content, sizeof(content), 9);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	exec_ok("UPDATE server_blob_refs SET last_accessed = '2020-01-01T00:00:00Z'");
	snprintf(uri, sizeof(uri), "/api/v1/blobs/%s", sha);
	get("tok-a2", uri, &res);	/* another device of the same vault */
	ck_assert_int_eq(res.status, 200);
	ck_assert_uint_eq(res.body.len, 0);
	vs_buf_init(&head);
	ck_assert(vs_res_head(&res, &head));
	ck_assert_ptr_null(strstr(head.data, "Content-Length"));
	ck_assert_ptr_nonnull(strstr(head.data, "Content-Type: application/octet-stream\r\n"));
	snprintf(want, sizeof(want), "X-Accel-Redirect: /_verstak_blobs/%.2s/%.2s/%s\r\n",
		 sha, sha + 2, sha);
	ck_assert_ptr_nonnull(strstr(head.data, want));
	snprintf(want, sizeof(want), "Content-Disposition: attachment; filename=\"%s\"\r\n", sha);
	ck_assert_ptr_nonnull(strstr(head.data, want));
	vs_buf_free(&head);
	vs_res_free(&res);
	/* last_accessed was refreshed */
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blob_refs"
			       " WHERE last_accessed > '2026-01-01'"), 1);
	/* and an error response after a download gets its length back */
	vs_res_init(&res);
	res.no_content_length = true;
	vs_res_error(&res, 404, "x", "y");
	vs_buf_init(&head);
	ck_assert(vs_res_head(&res, &head));
	ck_assert_ptr_nonnull(strstr(head.data, "Content-Length"));
	vs_buf_free(&head);
	vs_res_free(&res);
}
END_TEST

START_TEST(test_download_refusals)
{
	static const char *const bad[] = {
		"/api/v1/blobs/",
		"/api/v1/blobs/abc",
		"/api/v1/blobs/ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		"/api/v1/blobs/abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567890",
		"/api/v1/blobs/abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345678/",
		"/api/v1/blobs/ab/cd/abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		"/api/v1/blobs/%2e%2e",
		"/api/v1/blobs/g" "bcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	};
	char content[500], sha[65], uri[128], *path;
	struct vs_response res;
	int fd;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		get("tok-a1", bad[i], &res);
		if (res.status != 301)	/* %2e%2e is cleaned by the router */
			expect_error(&res, 400, "invalid_blob_hash", "invalid SHA-256");
		vs_res_free(&res);
	}
	fill(content, sizeof(content), 10);
	ck_assert_int_eq(upload_as("tok-a1", content, sizeof(content), 0, sha, &res), 200);
	vs_res_free(&res);
	snprintf(uri, sizeof(uri), "/api/v1/blobs/%s", sha);
	/* other scopes: same user other vault, other user same vault name */
	get("tok-a3", uri, &res);
	expect_error(&res, 404, "blob_not_found", "blob not found");
	vs_res_free(&res);
	get("tok-b1", uri, &res);
	expect_error(&res, 404, "blob_not_found", NULL);
	vs_res_free(&res);
	/* wrong size, not a regular file, missing */
	path = blob_file(sha);
	fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	get("tok-a1", uri, &res);
	expect_error(&res, 500, "blob_unavailable", "blob is unavailable");
	vs_res_free(&res);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(mkdir(path, 0750), 0);
	get("tok-a1", uri, &res);
	expect_error(&res, 500, "blob_unavailable", NULL);
	vs_res_free(&res);
	ck_assert_int_eq(rmdir(path), 0);
	get("tok-a1", uri, &res);
	expect_error(&res, 404, "blob_not_found", NULL);
	vs_res_free(&res);
	free(path);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Garbage collection                                                 */
/* ------------------------------------------------------------------ */

static struct vs_gc_report
gc_at(time_t now, int64_t grace, int64_t temp)
{
	struct vs_gc_opts o = { grace, temp, now };
	struct vs_gc_report r;

	ck_assert_int_eq(vs_gc_run(&app.db, app.blobs_dir, &o, &r), VS_DB_OK);
	ck_assert_int_eq(app.db.tx_depth, 0);
	return r;
}

static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Blob a (300 bytes, seed) referenced by alice and bob, blob b (400
 * bytes, seed + 1) by alice only; then alice is deleted and her
 * references go (DATA.md 8), leaving b unreferenced. */
static void
two_blobs_one_orphaned(unsigned seed, char sha_a[65], char sha_b[65])
{
	char a[300], b[400];
	struct vs_response res;

	fill(a, sizeof(a), seed);
	fill(b, sizeof(b), seed + 1);
	ck_assert_int_eq(upload_as("tok-a1", a, sizeof(a), 0, sha_a, &res), 200);
	vs_res_free(&res);
	ck_assert_int_eq(upload_as("tok-b1", a, sizeof(a), 0, sha_a, &res), 200);
	vs_res_free(&res);
	ck_assert_int_eq(upload_as("tok-a1", b, sizeof(b), 0, sha_b, &res), 200);
	vs_res_free(&res);
	exec_ok("DELETE FROM server_blob_refs WHERE user_id = '" U_ALICE "'");
}

/* What the statements the collector runs cost, split by whether they
 * started inside a write transaction: the most virtual-machine steps
 * one run took there, and full-table-scan steps outside. */
#define SCAN_SLOTS 64
static struct { sqlite3_stmt *st; bool in_write; } scan_seen[SCAN_SLOTS];
static long long max_steps_in_write, scan_steps_outside;

static int
trace_scans(unsigned type, void *ctx, void *p, void *x)
{
	sqlite3_stmt *st = p;
	size_t i;

	(void)ctx;
	(void)x;
	for (i = 0; i < SCAN_SLOTS && scan_seen[i].st != NULL &&
		    scan_seen[i].st != st; i++)
		;
	ck_assert_uint_lt(i, SCAN_SLOTS);
	if (type == SQLITE_TRACE_STMT) {
		scan_seen[i].st = st;
		scan_seen[i].in_write =
			sqlite3_txn_state(app.db.h, NULL) == SQLITE_TXN_WRITE;
	} else if (type == SQLITE_TRACE_PROFILE && scan_seen[i].st == st) {
		long long scans = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
		long long steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);

		if (!scan_seen[i].in_write)
			scan_steps_outside += scans;
		else if (steps > max_steps_in_write)
			max_steps_in_write = steps;
	}
	return 0;
}

/* The collector reads whole tables only outside the write lock: under
 * it, every blob is looked up by key (vs_idx_blob_refs_sha256), so a
 * collection of a large store never stalls the server's writers. With
 * 3,000 other references stored, any scan of them under the lock would
 * take thousands of steps; a lookup by key takes a few dozen. */
START_TEST(test_gc_scans_no_table_under_the_write_lock)
{
	char sha_a[65], sha_b[65];
	struct vs_gc_report r;
	time_t now = time(NULL);

	two_blobs_one_orphaned(13, sha_a, sha_b);
	exec_ok("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
		" WHERE i < 3000) INSERT INTO server_blob_refs (user_id, vault_id,"
		" sha256, size, created_at, last_accessed) SELECT '" U_BOB "', 'v9',"
		" printf('%064x', i), 1, '2026-01-01T00:00:00Z',"
		" '2026-01-01T00:00:00Z' FROM n");
	ck_assert_int_eq(sqlite3_trace_v2(app.db.h,
					  SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE,
					  trace_scans, NULL), SQLITE_OK);
	/* Past the grace period, files included: b's row and file go, a's
	 * stay; both files are checked as possible strays as well. */
	r = gc_at(now + 7200, 3600, 3600);
	(void)sqlite3_trace_v2(app.db.h, 0, NULL, NULL);
	ck_assert_int_eq(r.blobs, 1);
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 1);
	ck_assert_int_gt(scan_steps_outside, 0);	/* the trace works */
	ck_assert_int_gt(max_steps_in_write, 0);
	ck_assert_int_lt(max_steps_in_write, 500);
}
END_TEST

START_TEST(test_gc_orphans_after_grace_only)
{
	char sha_a[65], sha_b[65];
	struct vs_gc_report r;
	time_t now = time(NULL);
	char *pa, *pb;

	two_blobs_one_orphaned(11, sha_a, sha_b);
	pa = blob_file(sha_a);
	pb = blob_file(sha_b);
	/* young orphan: kept */
	r = gc_at(now, 3600, 3600);
	ck_assert_int_eq(r.blobs, 0);
	ck_assert(exists(pb));
	/* past the grace period: b goes, a (Bob's) stays */
	r = gc_at(now + 7200, 3600, 3600);
	ck_assert_int_eq(r.blobs, 1);
	ck_assert_int_eq(r.blob_bytes, 400LL);
	ck_assert(!exists(pb));
	ck_assert(exists(pa));
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 1);
	/* Bob deleted too: now a goes */
	exec_ok("DELETE FROM server_blob_refs");
	r = gc_at(now + 7200, 3600, 3600);
	ck_assert_int_eq(r.blobs, 1);
	ck_assert(!exists(pa));
	ck_assert_int_eq(count("SELECT COUNT(*) FROM server_blobs"), 0);
	free(pa);
	free(pb);
}
END_TEST

START_TEST(test_gc_upload_between_transactions)
{
	char a[300], sha[65], uri[128];
	struct vs_response res;
	struct vs_gc_report r;
	time_t now = time(NULL);
	char *pa;

	fill(a, sizeof(a), 13);
	ck_assert_int_eq(upload_as("tok-a1", a, sizeof(a), 0, sha, &res), 200);
	vs_res_free(&res);
	pa = blob_file(sha);
	/* GC's first transaction has run: rows gone, file still there.
	 * Bob uploads the same content now. */
	exec_ok("DELETE FROM server_blob_refs");
	exec_ok("DELETE FROM server_blobs");
	ck_assert_int_eq(upload_as("tok-b1", a, sizeof(a), 0, sha, &res), 200);
	vs_res_free(&res);
	/* GC's second step must leave the file (and so must any later run) */
	r = gc_at(now + 7200, 3600, 3600);
	ck_assert_int_eq(r.blobs + r.stray, 0);
	ck_assert(exists(pa));
	/* The other order: GC removed the file first; the upload puts its
	 * own copy in place. */
	exec_ok("DELETE FROM server_blob_refs");
	exec_ok("UPDATE server_blobs SET created_at = '2000-01-01T00:00:00Z'");
	r = gc_at(now, 3600, 3600);
	ck_assert_int_eq(r.blobs, 1);
	ck_assert(!exists(pa));
	ck_assert_int_eq(upload_as("tok-b1", a, sizeof(a), 0, sha, &res), 200);
	vs_res_free(&res);
	snprintf(uri, sizeof(uri), "/api/v1/blobs/%s", sha);
	get("tok-b1", uri, &res);
	ck_assert_int_eq(res.status, 200);
	vs_res_free(&res);
	ck_assert(exists(pa));
	free(pa);
}
END_TEST

START_TEST(test_gc_stray_and_temp_files)
{
	static const char stray[] =
		"abcd000000000000000000000000000000000000000000000000000000000000";
	static const char reffed[] =
		"abcd111111111111111111111111111111111111111111111111111111111111";
	char path[512], dir[256];
	struct vs_gc_report r;
	time_t now = time(NULL), old = now - 100000;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/ab/cd", app.blobs_dir);
	ck_assert(vs_mkdir_p(dir, 0750));
	/* an old stray, a young stray, a referenced file without a row,
	 * a file with another name, old and young temp uploads, a probe */
	const char *files[][2] = {
		{ "ab/cd/", stray }, { "ab/cd/", reffed },
		{ "ab/cd/", "abcd0000000000000000000000000000000000000000000000000000000000001" },
		{ "ab/cd/", "notes.txt" }, { "", ".upload-old" }, { "", ".upload-new" },
		{ "", ".health-x" }, { "ab/", "cd0000000000000000000000000000000000000000000000000000000000000000" },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
		snprintf(path, sizeof(path), "%s/%s%s", app.blobs_dir, files[i][0],
			 files[i][1]);
		f = fopen(path, "w");
		ck_assert_ptr_nonnull(f);
		fputs("12345", f);
		fclose(f);
		if (strcmp(files[i][1], ".upload-new") != 0)
			set_mtime(path, old);
	}
	exec_ok("INSERT INTO server_blob_refs VALUES ('" U_BOB "', 'v1', '"
		"abcd111111111111111111111111111111111111111111111111111111111111"
		"', 5, 'x', 'x')");
	r = gc_at(now, 3600, 3600);
	ck_assert_int_eq(r.stray, 1);
	ck_assert_int_eq(r.stray_bytes, 5);
	ck_assert_int_eq(r.temps, 1);
	ck_assert_int_eq(r.temp_bytes, 5);
	ck_assert_int_eq(r.errors, 0);
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
		bool gone = i == 0 || strcmp(files[i][1], ".upload-old") == 0;
		snprintf(path, sizeof(path), "%s/%s%s", app.blobs_dir, files[i][0],
			 files[i][1]);
		ck_assert_msg(exists(path) == !gone, "%s", path);
	}
	/* a young stray stays until it is old */
	snprintf(path, sizeof(path), "%s/ab/cd/%s", app.blobs_dir, stray);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	r = gc_at(now, 3600, 3600);
	ck_assert_int_eq(r.stray, 0);
	ck_assert(exists(path));
}
END_TEST

static Suite *
blobs_suite(void)
{
	Suite *s = suite_create("blobs");
	TCase *tc = tcase_create("upload");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_upload_streams_in_any_chunks);
	tcase_add_test(tc, test_dedup_across_scopes_and_quota_charge);
	tcase_add_test(tc, test_quota_sums_outside_the_write_lock);
	tcase_add_test(tc, test_quota_sees_an_upload_between_its_reads);
	tcase_add_test(tc, test_limits_leave_nothing);
	tcase_add_test(tc, test_body_ends_early_is_408);
	tcase_add_test(tc, test_multipart_refusals);
	tcase_add_test(tc, test_reupload_repairs_d24);
	tcase_add_test(tc, test_ref_size_mismatch_is_500);
	suite_add_tcase(s, tc);

	tc = tcase_create("download");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_auth_before_method);
	tcase_add_test(tc, test_download_hands_over_to_nginx);
	tcase_add_test(tc, test_download_refusals);
	suite_add_tcase(s, tc);

	tc = tcase_create("gc");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_gc_orphans_after_grace_only);
	tcase_add_test(tc, test_gc_scans_no_table_under_the_write_lock);
	tcase_add_test(tc, test_gc_upload_between_transactions);
	tcase_add_test(tc, test_gc_stray_and_temp_files);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(blobs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
