/*
 * test_sync.c - unit tests for src/sync.c: push decoding and request
 * checks in the contract's order (SYNC.md 2.2, API.md 1.4), storage and
 * sequences (S1-S5), D5 duplicates, advisory conflicts, tombstones,
 * idempotency replay, blob references (SYNC.md 6), all-or-nothing
 * pushes, pull paging (P1-P5, D41 snapshot), verbatim round trips, D40,
 * the query plans, and a full pull of the reference's fixture database.
 *
 * Must never: touch the fixture in place (tests work on copies in
 * mkdtemp directories).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "sync.h"
#include "db.h"
#include "json.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef VS_FIXTURE_DIR
#define VS_FIXTURE_DIR "tests/fixtures"
#endif
#define FIXTURE_DB VS_FIXTURE_DIR "/go-datadir-v2/data/server.db"
#define FIXTURE_MANIFEST VS_FIXTURE_DIR "/go-datadir-v2/manifest.json"

#define U_ALICE "5d150cf980a83f75394f4a1b"
#define U_BOB "ea7c7ebb74028c683a1a4aac"
#define SHA_A "6eeee0377a3cda356e32e9953a36fe366b2082cb68a6b5532e8d0ad146562d68"
#define SHA_B "a764aa3230967ff5050fa1c1b6dff2829275e3f34820424ea01910926ceaa9d7"

/* Alice's two devices in vault-a, her device in vault-b, Bob in vault-a
 * (the same vault name, another user: another scope). */
static const struct vs_scope SC_A1 = { U_ALICE, "vault-a", "dev_a1" };
static const struct vs_scope SC_A2 = { U_ALICE, "vault-a", "dev_a2" };
static const struct vs_scope SC_AB = { U_ALICE, "vault-b", "dev_a3" };
static const struct vs_scope SC_B = { U_BOB, "vault-a", "dev_b1" };

/* ------------------------------------------------------------------ */
/* Fixture and helpers                                                */
/* ------------------------------------------------------------------ */

static char tmpdir[64];
static struct vs_db db;
static struct vs_limits lim;

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/vs_test_sync_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
rm_tmpdir(void)
{
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

static void
default_limits(void)
{
	memset(&lim, 0, sizeof(lim));
	lim.max_json_body = 2 << 20;
	lim.max_push_operations = 100;
	lim.max_payload_json = 256 << 10;
	lim.max_pull_page = 100;
}

static void
exec_ok(const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db.h, sql, NULL, NULL, &msg);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
}

static void
open_db(void)
{
	char err[256] = "";

	ck_assert_msg(vs_db_open(&db, tmpdir, err, sizeof(err)) == VS_DB_OK,
		      "open: %s", err);
}

static void
seed_rows(void)
{
	exec_ok("INSERT INTO server_users (id, username, email, password_hash,"
		" confirmed, created_at) VALUES"
		" ('" U_ALICE "', 'alice', 'alice@example.org', 'unused', 1,"
		"  '2026-01-01T00:00:00Z'),"
		" ('" U_BOB "', 'bob', 'bob@example.org', 'unused', 1,"
		"  '2026-01-01T00:00:00Z')");
	exec_ok("INSERT INTO server_devices (id, name, api_key, user_id,"
		" vault_id, created_at) VALUES"
		" ('dev_a1', 'a1', 'disabled:dev_a1', '" U_ALICE "', 'vault-a',"
		"  '2026-01-01T00:00:00Z'),"
		" ('dev_a2', 'a2', 'disabled:dev_a2', '" U_ALICE "', 'vault-a',"
		"  '2026-01-01T00:00:00Z'),"
		" ('dev_a3', 'a3', 'disabled:dev_a3', '" U_ALICE "', 'vault-b',"
		"  '2026-01-01T00:00:00Z'),"
		" ('dev_b1', 'b1', 'disabled:dev_b1', '" U_BOB "', 'vault-a',"
		"  '2026-01-01T00:00:00Z')");
	/* SHA_A is Alice's in vault-a (100 bytes); SHA_B only in her
	 * vault-b and in Bob's vault-a. */
	exec_ok("INSERT INTO server_blob_refs (user_id, vault_id, sha256, size,"
		" created_at, last_accessed) VALUES"
		" ('" U_ALICE "', 'vault-a', '" SHA_A "', 100,"
		"  '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'),"
		" ('" U_ALICE "', 'vault-b', '" SHA_B "', 50,"
		"  '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'),"
		" ('" U_BOB "', 'vault-a', '" SHA_B "', 50,"
		"  '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')");
}

static void
setup(void)
{
	char err[256] = "";

	default_limits();
	make_tmpdir();
	open_db();
	ck_assert_msg(vs_db_migrate(&db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
	seed_rows();
}

static void
teardown(void)
{
	vs_db_close(&db);
	rm_tmpdir();
}

/* One answer: status, raw body (NUL-terminated copy), parsed body. */
struct reply {
	int status;
	char *raw;
	size_t len;
	cJSON *j;
	char headers[256];
};

static void
reply_free(struct reply *r)
{
	free(r->raw);
	cJSON_Delete(r->j);
	memset(r, 0, sizeof(*r));
}

typedef void (*sync_fn)(struct vs_db *, const struct vs_limits *,
			const struct vs_scope *, const char *, size_t,
			struct vs_response *);

static struct reply
call(sync_fn fn, const struct vs_scope *sc, const char *body, size_t len)
{
	struct vs_response res;
	struct reply r;

	memset(&r, 0, sizeof(r));
	vs_res_init(&res);
	fn(&db, &lim, sc, body, len, &res);
	ck_assert(!res.body.oom);
	ck_assert_ptr_nonnull(res.content_type);
	ck_assert_str_eq(res.content_type, "application/json");
	ck_assert_int_eq(db.tx_depth, 0);	/* never left open */
	r.status = res.status;
	r.len = res.body.len;
	r.raw = malloc(r.len + 1);
	ck_assert_ptr_nonnull(r.raw);
	memcpy(r.raw, res.body.len ? res.body.data : "", r.len);
	r.raw[r.len] = '\0';
	snprintf(r.headers, sizeof(r.headers), "%s",
		 res.headers.len ? res.headers.data : "");
	r.j = cJSON_ParseWithLength(r.raw, r.len);
	ck_assert_msg(r.j != NULL, "answer is not JSON: %.200s", r.raw);
	vs_res_free(&res);
	return r;
}

static struct reply
push_raw(const struct vs_scope *sc, const char *body)
{
	return call(vs_sync_push, sc, body, strlen(body));
}

static struct reply
pull_raw(const struct vs_scope *sc, const char *body)
{
	return call(vs_sync_pull, sc, body, strlen(body));
}

static struct reply
pull(const struct vs_scope *sc, long long since, long long page_limit)
{
	char body[128];

	snprintf(body, sizeof(body),
		 "{\"since_sequence\":%lld,\"page_limit\":%lld}", since,
		 page_limit);
	return pull_raw(sc, body);
}

/* An op object; NULL strings are left out. */
static cJSON *
op_new(const char *op_id, const char *etype, const char *eid,
       const char *otype, const char *payload, long long last_seen)
{
	cJSON *o = cJSON_CreateObject();

	if (op_id)
		cJSON_AddStringToObject(o, "op_id", op_id);
	if (etype)
		cJSON_AddStringToObject(o, "entity_type", etype);
	if (eid)
		cJSON_AddStringToObject(o, "entity_id", eid);
	if (otype)
		cJSON_AddStringToObject(o, "op_type", otype);
	if (payload)
		cJSON_AddStringToObject(o, "payload_json", payload);
	cJSON_AddNumberToObject(o, "client_sequence", 7);
	cJSON_AddNumberToObject(o, "last_seen_server_seq", (double)last_seen);
	cJSON_AddStringToObject(o, "created_at", "2026-11-20T10:00:00Z");
	return o;
}

static cJSON *
note_op(const char *op_id)
{
	return op_new(op_id, "note", op_id, "create", "{}", 0);
}

static cJSON *
file_op(const char *op_id, const char *payload)
{
	return op_new(op_id, "file", op_id, "create", payload, 0);
}

/* Pushes the ops (NULL-terminated, taken over) with an optional key. */
static struct reply
push_ops_key(const struct vs_scope *sc, const char *key, ...)
{
	cJSON *root = cJSON_CreateObject(), *arr, *op;
	struct reply r;
	va_list ap;
	char *body;

	cJSON_AddStringToObject(root, "device_id", "spoofed-device");
	if (key)
		cJSON_AddStringToObject(root, "idempotency_key", key);
	arr = cJSON_AddArrayToObject(root, "ops");
	va_start(ap, key);
	while ((op = va_arg(ap, cJSON *)) != NULL)
		cJSON_AddItemToArray(arr, op);
	va_end(ap);
	body = cJSON_PrintUnformatted(root);
	ck_assert_ptr_nonnull(body);
	r = push_raw(sc, body);
	free(body);
	cJSON_Delete(root);
	return r;
}

#define push_ops(sc, ...) push_ops_key(sc, NULL, __VA_ARGS__, (cJSON *)NULL)
#define push_ops_k(sc, key, ...) \
	push_ops_key(sc, key, __VA_ARGS__, (cJSON *)NULL)

static const char *
jstr(const cJSON *o, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsString(f), "field %s is not a string", name);
	return f->valuestring;
}

static long long
jint(const cJSON *o, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsNumber(f), "field %s is not a number", name);
	return (long long)f->valuedouble;
}

static void
assert_err_ctx(const struct reply *r, int status, const char *code,
	       const char *msg, const char *ctx)
{
	ck_assert_msg(r->status == status, "%s: status %d, want %d: %s", ctx,
		      r->status, status, r->raw);
	ck_assert_msg(cJSON_GetArraySize(r->j) == 2, "%s: %s", ctx, r->raw);
	ck_assert_msg(strcmp(jstr(r->j, "code"), code) == 0,
		      "%s: code %s, want %s", ctx, jstr(r->j, "code"), code);
	ck_assert_msg(strcmp(jstr(r->j, "error"), msg) == 0,
		      "%s: error \"%s\", want \"%s\"", ctx,
		      jstr(r->j, "error"), msg);
}

#define assert_err(r, st, code, msg) assert_err_ctx(r, st, code, msg, #r)

/* Pushes body and checks the error answer; frees everything. */
static void
push_expect(const struct vs_scope *sc, const char *body, int status,
	    const char *code, const char *msg)
{
	struct reply r = push_raw(sc, body);

	assert_err_ctx(&r, status, code, msg, body);
	reply_free(&r);
}

static void
pull_expect(const struct vs_scope *sc, const char *body, int status,
	    const char *code, const char *msg)
{
	struct reply r = pull_raw(sc, body);

	assert_err_ctx(&r, status, code, msg, body);
	reply_free(&r);
}

/* accepted equals want (NULL-terminated), count too. */
static void
assert_accepted(const struct reply *r, const char *const *want)
{
	const cJSON *acc;
	int n = 0;

	ck_assert_msg(r->status == 200, "status %d: %s", r->status, r->raw);
	acc = cJSON_GetObjectItemCaseSensitive(r->j, "accepted");
	ck_assert(cJSON_IsArray(acc));
	while (want[n] != NULL)
		n++;
	ck_assert_msg(cJSON_GetArraySize(acc) == n, "accepted: %s", r->raw);
	for (int i = 0; i < n; i++) {
		const cJSON *e = cJSON_GetArrayItem(acc, i);

		ck_assert(cJSON_IsString(e));
		ck_assert_str_eq(e->valuestring, want[i]);
	}
	ck_assert_int_eq(jint(r->j, "count"), n);
	ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r->j,
								 "conflicts")));
	ck_assert_int_eq(cJSON_GetArraySize(r->j), 3);
}

#define ACC(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const cJSON *
conflicts_of(const struct reply *r)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(r->j, "conflicts");

	ck_assert(cJSON_IsArray(c));
	return c;
}

/* One integer from a query with an optional text parameter. */
static long long
q_int(const char *sql, const char *param)
{
	sqlite3_stmt *st = NULL;
	long long v = -1;
	int rc;

	ck_assert_msg(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL) ==
		      SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db.h));
	if (param)
		ck_assert_int_eq(sqlite3_bind_text(st, 1, param, -1,
						   SQLITE_TRANSIENT), SQLITE_OK);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -2 :
			sqlite3_column_int64(st, 0);
	else
		ck_assert_int_eq(rc, SQLITE_DONE);
	sqlite3_finalize(st);
	return v;
}

/* One text value (malloc'd, NULL when no row or NULL). */
static char *
q_text(const char *sql, const char *param)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;
	int rc;

	ck_assert_msg(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL) ==
		      SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db.h));
	if (param)
		ck_assert_int_eq(sqlite3_bind_text(st, 1, param, -1,
						   SQLITE_TRANSIENT), SQLITE_OK);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		int n = sqlite3_column_bytes(st, 0);

		v = malloc((size_t)n + 1);
		ck_assert_ptr_nonnull(v);
		memcpy(v, t, (size_t)n);
		v[n] = '\0';
	} else if (rc != SQLITE_ROW) {
		ck_assert_int_eq(rc, SQLITE_DONE);
	}
	sqlite3_finalize(st);
	return v;
}

static long long
op_seq(const char *op_id)
{
	return q_int("SELECT server_sequence FROM server_ops WHERE op_id = ?",
		     op_id);
}

static long long
count_of(const char *table)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", table);
	return q_int(sql, NULL);
}

/* Everything a push could change. */
struct snapshot {
	long long ops, revs, tombs, idem, counter;
};

static struct snapshot
snap(void)
{
	struct snapshot s = {
		count_of("server_ops"), count_of("server_revisions"),
		count_of("server_tombstones"),
		count_of("server_idempotency_keys"),
		q_int("SELECT COALESCE((SELECT seq FROM sqlite_sequence"
		      " WHERE name = 'server_revisions'), 0)", NULL),
	};
	return s;
}

static void
assert_unchanged(struct snapshot a)
{
	struct snapshot b = snap();

	ck_assert_int_eq(a.ops, b.ops);
	ck_assert_int_eq(a.revs, b.revs);
	ck_assert_int_eq(a.tombs, b.tombs);
	ck_assert_int_eq(a.idem, b.idem);
	ck_assert_int_eq(a.counter, b.counter);
}

static bool
is_ts(const char *s)
{
	time_t t;

	return s != NULL && strlen(s) == 20 && s[4] == '-' && s[10] == 'T' &&
	       s[19] == 'Z' && vs_parse_ts(s, &t) &&
	       labs((long)(t - time(NULL))) < 120;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A string of n copies of c (malloc'd). */
static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ------------------------------------------------------------------ */
/* Push: JSON decoding (API.md 1.4)                                   */
/* ------------------------------------------------------------------ */

START_TEST(test_push_invalid_json)
{
	static const char *const bodies[] = {
		"", "   ", "{", "{\"ops\":[}", "nul", "{}x", "{\"a\":1,}",
		/* top level must be an object or null */
		"[]", "[1]", "\"x\"", "1", "true",
		/* ops must be an array of objects */
		"{\"ops\":{}}", "{\"ops\":\"x\"}", "{\"ops\":1}",
		"{\"ops\":[1]}", "{\"ops\":[\"a\"]}", "{\"ops\":[[]]}",
		"{\"ops\":[true]}",
		/* top-level fields of the wrong type */
		"{\"device_id\":1}", "{\"idempotency_key\":true}",
		"{\"idempotency_key\":{}}",
		/* op fields of the wrong type */
		"{\"ops\":[{\"op_id\":1}]}",
		"{\"ops\":[{\"entity_type\":[]}]}",
		"{\"ops\":[{\"entity_id\":{}}]}",
		"{\"ops\":[{\"op_type\":false}]}",
		"{\"ops\":[{\"payload_json\":{\"a\":1}}]}",
		"{\"ops\":[{\"created_at\":5}]}",
		"{\"ops\":[{\"client_sequence\":\"1\"}]}",
		"{\"ops\":[{\"client_sequence\":1.5}]}",
		"{\"ops\":[{\"last_seen_server_seq\":1e300}]}",
		"{\"ops\":[{\"last_seen_server_seq\":9223372036854775808}]}",
		"{\"ops\":[{\"client_sequence\":true}]}",
	};

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		push_expect(&SC_A1, bodies[i], 400, "invalid_json",
			    "invalid JSON request");
	ck_assert_int_eq(count_of("server_ops"), 0);
}
END_TEST

START_TEST(test_push_trailing_json)
{
	struct reply r;

	push_expect(&SC_A1, "{} {}", 400, "trailing_json",
		    "request must contain one JSON value");
	push_expect(&SC_A1, "{\"ops\":[]}[1]", 400, "trailing_json",
		    "request must contain one JSON value");
	/* malformed trailing part: invalid_json */
	push_expect(&SC_A1, "{} {", 400, "invalid_json",
		    "invalid JSON request");
	/* trailing white space is fine */
	r = push_raw(&SC_A1, " {} \n\t");
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
}
END_TEST

START_TEST(test_push_empty_forms)
{
	static const char *const bodies[] = {
		"null", "{}", "{\"ops\":null}", "{\"ops\":[]}",
		"{\"device_id\":null,\"idempotency_key\":null,\"ops\":null}",
		"{\"unknown\":[1,2,{}]}",
	};

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct reply r = push_raw(&SC_A1, bodies[i]);

		ck_assert_int_eq(r.status, 200);
		/* D6: [] for empty arrays, and the newline after the body */
		ck_assert_str_eq(r.raw,
			"{\"accepted\":[],\"count\":0,\"conflicts\":[]}\n");
		reply_free(&r);
	}
	ck_assert_int_eq(count_of("server_ops"), 0);
	ck_assert_int_eq(count_of("server_idempotency_keys"), 0);
}
END_TEST

START_TEST(test_push_null_fields)
{
	struct reply r;

	/* A null element reads as an empty op (the reference's decoder). */
	push_expect(&SC_A1, "{\"ops\":[null]}", 400, "invalid_operation",
		    "op_id is required");
	/* null strings and integers read as "" and 0 */
	r = push_raw(&SC_A1, "{\"ops\":[{\"op_id\":\"n1\",\"entity_type\":"
		     "\"note\",\"entity_id\":\"e\",\"op_type\":\"create\","
		     "\"payload_json\":null,\"created_at\":null,"
		     "\"client_sequence\":null,\"last_seen_server_seq\":null}]}");
	assert_accepted(&r, ACC("n1"));
	reply_free(&r);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " op_id = 'n1' AND payload_json = ''"
			       " AND created_at = '' AND client_sequence = 0"
			       " AND last_seen_server_seq = 0", NULL), 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Push: request checks (SYNC.md 2.2 step 4)                          */
/* ------------------------------------------------------------------ */

/* {"ops":[<op>]} with one field of a valid op replaced (value is raw
 * JSON; NULL = field left out). */
static char *
body_with(const char *field, const char *value)
{
	static const char *const names[] = {
		"op_id", "entity_type", "entity_id", "op_type", "payload_json",
		"client_sequence", "last_seen_server_seq", "created_at",
	};
	static const char *const values[] = {
		"\"op-1\"", "\"note\"", "\"e-1\"", "\"create\"", "\"{}\"", "1",
		"0", "\"2026-01-01T00:00:00Z\"",
	};
	struct vs_buf b;
	bool first = true;

	vs_buf_init(&b);
	vs_buf_puts(&b, "{\"ops\":[{");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *v = strcmp(names[i], field) == 0 ? value : values[i];

		if (v == NULL)
			continue;
		vs_buf_printf(&b, "%s\"%s\":%s", first ? "" : ",", names[i], v);
		first = false;
	}
	vs_buf_puts(&b, "}]}");
	ck_assert(!b.oom);
	return b.data;
}

static void
field_expect(const char *field, const char *value, int status,
	     const char *code, const char *msg)
{
	char *body = body_with(field, value);

	push_expect(&SC_A1, body, status, code, msg);
	free(body);
}

static void
field_ok(const char *field, const char *value)
{
	char *body = body_with(field, value);
	struct reply r = push_raw(&SC_A1, body);

	ck_assert_msg(r.status == 200, "%s: %s", body, r.raw);
	reply_free(&r);
	free(body);
	exec_ok("DELETE FROM server_ops");
}

START_TEST(test_push_field_checks)
{
	static const struct { const char *name; size_t max; } f[] = {
		{ "op_id", 128 }, { "entity_type", 64 },
		{ "entity_id", 4096 }, { "op_type", 64 },
	};
	/* Go's unicode.IsSpace: ASCII white space, NEL, NBSP, U+2000-200A,
	 * U+3000 and friends all count as blank. */
	static const char *const blanks[] = {
		NULL, "null", "\"\"", "\" \"", "\" \\t\\n\\r\\u000b\\f \"",
		"\"\\u00a0\"", "\"\\u0085\"", "\"\\u3000\\u2003\\u200a\"",
		"\"\\u1680\\u2028\\u2029\\u202f\\u205f\"",
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		char req[64], toolong[64], *v;

		snprintf(req, sizeof(req), "%s is required", f[i].name);
		snprintf(toolong, sizeof(toolong), "%s is too long", f[i].name);
		for (size_t k = 0; k < sizeof(blanks) / sizeof(blanks[0]); k++)
			field_expect(f[i].name, blanks[k], 400,
				     "invalid_operation", req);
		/* exactly the limit is fine, one byte more is not */
		v = repeat('x', f[i].max + 2);
		v[0] = '"';
		v[f[i].max + 1] = '"';
		field_ok(f[i].name, v);
		free(v);
		v = repeat('x', f[i].max + 3);
		v[0] = '"';
		v[f[i].max + 2] = '"';
		field_expect(f[i].name, v, 400, "field_too_long", toolong);
		/* lengths are bytes as sent: white space counts */
		v[1] = ' ';
		field_expect(f[i].name, v, 400, "field_too_long", toolong);
		free(v);
		/* a non-space character that is not ASCII is not blank */
		field_ok(f[i].name, "\"\\u00e9\"");
		/* U+200B (zero width space) is not white space for Go */
		field_ok(f[i].name, "\"\\u200b\"");
	}
	/* multi-byte: 43 x "é" (2 bytes) = 86 > 64 bytes */
	{
		struct vs_buf b;

		vs_buf_init(&b);
		vs_buf_puts(&b, "\"");
		for (int i = 0; i < 43; i++)
			vs_buf_puts(&b, "\xc3\xa9");
		vs_buf_puts(&b, "\"");
		field_expect("op_type", b.data, 400, "field_too_long",
			     "op_type is too long");
		vs_buf_free(&b);
	}
	ck_assert_int_eq(count_of("server_ops"), 0);
}
END_TEST

START_TEST(test_push_payload_checks)
{
	static const char *const invalid[] = {
		"\"{\"", "\"nope\"", "\" \"", "\"{} {}\"", "\"{\\\"a\\\":1,}\"",
		"\"[1,]\"", "\"'x'\"", "\"{\\\"a\\\"}\"",
	};
	static const char *const valid_non_file[] = {
		"\"\"", "\"1\"", "\"\\\"s\\\"\"", "\"[1]\"", "\"null\"",
		"\"  {\\\"a\\\" : 1}  \"",
	};

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		field_expect("payload_json", invalid[i], 400, "invalid_payload",
			     "operation payload_json must be valid JSON");
	for (size_t i = 0; i < sizeof(valid_non_file) /
	     sizeof(valid_non_file[0]); i++)
		field_ok("payload_json", valid_non_file[i]);

	/* max_payload_json: 16 bytes fine, 17 not (even invalid JSON) */
	lim.max_payload_json = 16;
	field_ok("payload_json", "\"{\\\"a\\\":\\\"12345678\\\"}\"");
	field_expect("payload_json", "\"{\\\"a\\\":\\\"1234567890\\\"}\"",
		     413, "payload_too_large", "operation payload is too large");
	field_expect("payload_json", "\"{{{{{{{{{{{{{{{{{\"", 413,
		     "payload_too_large", "operation payload is too large");

	/* negative sequences */
	field_expect("client_sequence", "-1", 400, "invalid_operation",
		     "operation sequences must be non-negative");
	field_expect("last_seen_server_seq", "-9223372036854775807", 400,
		     "invalid_operation",
		     "operation sequences must be non-negative");
	field_ok("client_sequence", "4611686018427387904");
	field_ok("last_seen_server_seq", "0");
	ck_assert_int_eq(count_of("server_ops"), 0);
}
END_TEST

START_TEST(test_push_top_level_checks)
{
	char body[512], *d128 = repeat('d', 128), *d129 = repeat('d', 129);
	struct reply r;

	snprintf(body, sizeof(body), "{\"device_id\":\"%s\"}", d129);
	push_expect(&SC_A1, body, 400, "field_too_long",
		    "device_id is too long");
	snprintf(body, sizeof(body), "{\"idempotency_key\":\"%s\"}", d129);
	push_expect(&SC_A1, body, 400, "field_too_long",
		    "idempotency_key is too long");
	/* device_id is checked before idempotency_key */
	snprintf(body, sizeof(body),
		 "{\"idempotency_key\":\"%s\",\"device_id\":\"%s\"}", d129,
		 d129);
	push_expect(&SC_A1, body, 400, "field_too_long",
		    "device_id is too long");
	/* ... and both before the ops */
	snprintf(body, sizeof(body),
		 "{\"idempotency_key\":\"%s\",\"ops\":[{}]}", d129);
	push_expect(&SC_A1, body, 400, "field_too_long",
		    "idempotency_key is too long");
	/* 128 bytes are fine */
	snprintf(body, sizeof(body),
		 "{\"idempotency_key\":\"%s\",\"device_id\":\"%s\"}", d128,
		 d128);
	r = push_raw(&SC_A1, body);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	free(d128);
	free(d129);
}
END_TEST

START_TEST(test_push_too_many_operations)
{
	struct reply r;
	char body[512], *d129 = repeat('d', 129);

	lim.max_push_operations = 3;
	r = push_ops(&SC_A1, note_op("o1"), note_op("o2"), note_op("o3"));
	assert_accepted(&r, ACC("o1", "o2", "o3"));
	reply_free(&r);
	r = push_ops(&SC_A1, note_op("o4"), note_op("o5"), note_op("o6"),
		     note_op("o7"));
	assert_err(&r, 413, "too_many_operations",
		   "too many operations in one push");
	reply_free(&r);
	/* beats bad fields and a too long device_id */
	snprintf(body, sizeof(body),
		 "{\"device_id\":\"%s\",\"ops\":[{},{},{},{}]}", d129);
	push_expect(&SC_A1, body, 413, "too_many_operations",
		    "too many operations in one push");
	/* but decoding comes first: a wrong type anywhere is invalid_json */
	push_expect(&SC_A1, "{\"ops\":[{},{},{},{\"op_id\":1}]}", 400,
		    "invalid_json", "invalid JSON request");
	ck_assert_int_eq(count_of("server_ops"), 3);
	free(d129);
}
END_TEST

START_TEST(test_push_check_order)
{
	static const struct {
		const char *body;
		int status;
		const char *code, *msg;
	} cases[] = {
		/* within one op: the field order, then payload, then seqs */
		{ "{\"ops\":[{\"op_id\":\" \",\"entity_type\":\"" \
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]}",
		  400, "invalid_operation", "op_id is required" },
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"\",\"op_type\":\"\",\"payload_json\":\"{\"," \
		  "\"client_sequence\":-1}]}",
		  400, "invalid_operation", "entity_id is required" },
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"e\",\"payload_json\":\"{\"}]}",
		  400, "invalid_operation", "op_type is required" },
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"e\",\"op_type\":\"c\",\"payload_json\":\"{\"," \
		  "\"client_sequence\":-1}]}",
		  400, "invalid_payload",
		  "operation payload_json must be valid JSON" },
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"e\",\"op_type\":\"c\"," \
		  "\"payload_json\":\"{\\\"x\\\":\\\"0123456789abcdef\\\"}\"," \
		  "\"last_seen_server_seq\":-1}]}",
		  413, "payload_too_large", "operation payload is too large" },
		/* op 1's payload error beats op 2's blank id */
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"e\",\"op_type\":\"c\",\"payload_json\":\"[\"}," \
		  "{\"op_id\":\"\"}]}",
		  400, "invalid_payload",
		  "operation payload_json must be valid JSON" },
		/* op 1's negative sequence beats op 2's oversized payload */
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"e\",\"op_type\":\"c\",\"client_sequence\":-5}," \
		  "{\"op_id\":\"b\",\"entity_type\":\"t\",\"entity_id\":\"e\"," \
		  "\"op_type\":\"c\"," \
		  "\"payload_json\":\"{\\\"x\\\":\\\"0123456789abcdef\\\"}\"}]}",
		  400, "invalid_operation",
		  "operation sequences must be non-negative" },
		/* a good op 1 does not hide op 2's error */
		{ "{\"ops\":[{\"op_id\":\"a\",\"entity_type\":\"t\"," \
		  "\"entity_id\":\"e\",\"op_type\":\"c\"}," \
		  "{\"op_id\":\"b\",\"entity_type\":\"\"}]}",
		  400, "invalid_operation", "entity_type is required" },
	};

	lim.max_payload_json = 16;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		push_expect(&SC_A1, cases[i].body, cases[i].status,
			    cases[i].code, cases[i].msg);
	ck_assert_int_eq(count_of("server_ops"), 0);
}
END_TEST

/* Request checks need no database: they answer even while another
 * connection holds the write lock; a valid push then gets 503. */
START_TEST(test_push_checks_without_db_and_busy)
{
	sqlite3 *other = NULL;
	char path[128];
	struct reply r;

	snprintf(path, sizeof(path), "%s/server.db", tmpdir);
	ck_assert_int_eq(sqlite3_open(path, &other), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL,
				      NULL), SQLITE_OK);
	vs_db_set_busy_budget_ms(&db, 50);

	push_expect(&SC_A1, "{\"ops\":[{}]}", 400, "invalid_operation",
		    "op_id is required");
	push_expect(&SC_A1, "[", 400, "invalid_json", "invalid JSON request");
	r = push_ops(&SC_A1, note_op("busy-1"));
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(strstr(r.headers, "Retry-After"));
	reply_free(&r);
	/* pull reads a WAL snapshot: not blocked by a writer */
	r = pull(&SC_A1, 0, 0);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);

	ck_assert_int_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(other), SQLITE_OK);
	r = push_ops(&SC_A1, note_op("busy-1"));
	assert_accepted(&r, ACC("busy-1"));
	reply_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Push: storage, sequences, duplicates                               */
/* ------------------------------------------------------------------ */

START_TEST(test_push_stores_ops)
{
	struct reply r;
	cJSON *o;
	char *s;

	o = op_new(" op x ", " note ", " Docs/a b.md ", "update",
		   " {\"k\": [1, 2]} ", 0);
	cJSON_ReplaceItemInObject(o, "client_sequence",
				  cJSON_CreateNumber(42));
	cJSON_ReplaceItemInObject(o, "created_at",
				  cJSON_CreateString(" whenever "));
	r = push_ops(&SC_A1, o, note_op("op-2"), note_op("op-3"));
	assert_accepted(&r, ACC(" op x ", "op-2", "op-3"));
	ck_assert_int_eq(cJSON_GetArraySize(conflicts_of(&r)), 0);
	reply_free(&r);

	/* stored verbatim (not trimmed), with the authenticated device */
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
		" op_id = ' op x ' AND entity_type = ' note '"
		" AND entity_id = ' Docs/a b.md ' AND op_type = 'update'"
		" AND payload_json = ' {\"k\": [1, 2]} '"
		" AND created_at = ' whenever ' AND client_sequence = 42"
		" AND last_seen_server_seq = 0 AND idempotency_key = ''"
		" AND user_id = '" U_ALICE "' AND vault_id = 'vault-a'"
		" AND device_id = 'dev_a1'", NULL), 1);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " device_id <> 'dev_a1'", NULL), 0);
	s = q_text("SELECT pushed_at FROM server_ops WHERE op_id = 'op-2'",
		   NULL);
	ck_assert_msg(is_ts(s), "pushed_at %s", s ? s : "(null)");
	free(s);
	/* S1: each sequence is the server_revisions id for that op */
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops o"
		" JOIN server_revisions r ON r.id = o.server_sequence"
		" AND r.op_id = o.op_id AND r.device_id = 'dev_a1'", NULL), 3);
	ck_assert_int_eq(count_of("server_revisions"), 3);
	/* S4: request order */
	ck_assert_int_lt(op_seq(" op x "), op_seq("op-2"));
	ck_assert_int_lt(op_seq("op-2"), op_seq("op-3"));
	ck_assert_int_eq(count_of("server_tombstones"), 0);
}
END_TEST

START_TEST(test_sequences_global_and_never_reused)
{
	struct reply r;
	long long last = 0;
	const struct vs_scope *scopes[] = { &SC_A1, &SC_B, &SC_AB, &SC_A2 };
	char id[32];

	for (int i = 0; i < 12; i++) {
		snprintf(id, sizeof(id), "g-%d", i);
		r = push_ops(scopes[i % 4], note_op(id));
		assert_accepted(&r, ACC(id));
		reply_free(&r);
		/* S3: one global counter, strictly increasing */
		ck_assert_int_gt(op_seq(id), last);
		last = op_seq(id);
	}
	/* Deleting a user's rows (as user deletion does) never lets the
	 * counter go back (AUTOINCREMENT). */
	exec_ok("DELETE FROM server_ops");
	exec_ok("DELETE FROM server_revisions");
	r = push_ops(&SC_A1, note_op("after-delete"));
	reply_free(&r);
	ck_assert_int_eq(op_seq("after-delete"), last + 1);
}
END_TEST

START_TEST(test_d5_same_scope_duplicates)
{
	struct reply r;
	long long s1;
	struct snapshot before;

	r = push_ops(&SC_A1, note_op("op-1"));
	assert_accepted(&r, ACC("op-1"));
	reply_free(&r);
	s1 = op_seq("op-1");
	before = snap();

	/* resend (lost response): accepted, nothing stored */
	r = push_ops(&SC_A1, note_op("op-1"));
	ck_assert_str_eq(r.raw,
		"{\"accepted\":[\"op-1\"],\"count\":1,\"conflicts\":[]}\n");
	reply_free(&r);
	assert_unchanged(before);
	ck_assert_int_eq(op_seq("op-1"), s1);

	/* another device of the same scope: the same scope */
	r = push_ops(&SC_A2, op_new("op-1", "other", "x", "delete", "", 0));
	assert_accepted(&r, ACC("op-1"));
	reply_free(&r);
	assert_unchanged(before);	/* no tombstone either */

	/* repeats inside one request are listed once */
	r = push_ops(&SC_A1, note_op("op-2"), note_op("op-1"), note_op("op-2"),
		     note_op("op-3"), note_op("op-1"));
	assert_accepted(&r, ACC("op-2", "op-1", "op-3"));
	reply_free(&r);
	ck_assert_int_eq(count_of("server_ops"), 3);
	ck_assert_int_eq(count_of("server_revisions"), 3);

	/* pull shows op-1 once, with its first sequence */
	r = pull(&SC_A1, 0, 0);
	{
		const cJSON *ops = cJSON_GetObjectItem(r.j, "ops");

		ck_assert_int_eq(cJSON_GetArraySize(ops), 3);
		ck_assert_str_eq(jstr(cJSON_GetArrayItem(ops, 0), "op_id"),
				 "op-1");
		ck_assert_int_eq(jint(cJSON_GetArrayItem(ops, 0),
				      "server_sequence"), s1);
	}
	reply_free(&r);
}
END_TEST

START_TEST(test_d5_other_scope_conflict)
{
	struct reply r;
	struct snapshot before;

	r = push_ops(&SC_A1, note_op("op-1"));
	reply_free(&r);
	before = snap();

	/* another user: 409, and none of that request's ops stored */
	r = push_ops(&SC_B, note_op("b-1"), note_op("b-2"), note_op("op-1"),
		     note_op("b-3"));
	assert_err(&r, 409, "op_id_conflict",
		   "op_id already used in another scope");
	reply_free(&r);
	assert_unchanged(before);
	ck_assert_int_eq(op_seq("b-1"), -1);

	/* the same user in another vault is another scope too */
	r = push_ops(&SC_AB, op_new("ab-1", "x", "y", "delete", "", 0),
		     note_op("op-1"));
	assert_err(&r, 409, "op_id_conflict",
		   "op_id already used in another scope");
	reply_free(&r);
	assert_unchanged(before);

	/* with an idempotency key: nothing stored under it either */
	r = push_ops_k(&SC_B, "k-409", note_op("op-1"));
	ck_assert_int_eq(r.status, 409);
	reply_free(&r);
	assert_unchanged(before);

	/* Bob can still push his own ops afterwards */
	r = push_ops(&SC_B, note_op("b-1"));
	assert_accepted(&r, ACC("b-1"));
	reply_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Conflicts                                                          */
/* ------------------------------------------------------------------ */

static void
assert_conflict(const cJSON *c, const char *op_id, const char *device,
		const char *op_type, long long seq, const char *etype,
		const char *eid)
{
	ck_assert_int_eq(cJSON_GetArraySize(c), 6);
	ck_assert_str_eq(jstr(c, "op_id"), op_id);
	ck_assert_str_eq(jstr(c, "device_id"), device);
	ck_assert_str_eq(jstr(c, "op_type"), op_type);
	ck_assert_int_eq(jint(c, "server_sequence"), seq);
	ck_assert_str_eq(jstr(c, "entity_type"), etype);
	ck_assert_str_eq(jstr(c, "entity_id"), eid);
}

START_TEST(test_conflicts)
{
	struct reply r;
	long long s1, s2, s4;
	const cJSON *c;

	/* history of file e1 in vault-a, mostly by device a2 */
	r = push_ops(&SC_A2, op_new("h1", "file", "e1", "create", "", 0),
		     op_new("h2", "file", "e1", "update", "", 0),
		     op_new("h3", "file", "e1", "delete", "", 0),
		     op_new("h4", "file", "e1", "move", "", 0),
		     op_new("h5", "file", "e2", "update", "", 0),
		     op_new("h6", "folder", "e1", "update", "", 0),
		     op_new("h7", "file", "E1", "update", "", 0));
	reply_free(&r);
	/* own device, other scopes: never reported */
	r = push_ops(&SC_A1, op_new("own", "file", "e1", "update", "", 0));
	reply_free(&r);
	r = push_ops(&SC_B, op_new("bob", "file", "e1", "update", "", 0));
	reply_free(&r);
	r = push_ops(&SC_AB, op_new("vb", "file", "e1", "update", "", 0));
	reply_free(&r);
	s1 = op_seq("h1");
	s2 = op_seq("h2");
	s4 = op_seq("h4");

	/* L = 0: no scan at all */
	r = push_ops(&SC_A1, op_new("p0", "file", "e1", "update", "", 0));
	assert_accepted(&r, ACC("p0"));
	ck_assert_int_eq(cJSON_GetArraySize(conflicts_of(&r)), 0);
	reply_free(&r);

	/* L = s1: h2 and h4 (newer than L, other device, not delete) */
	r = push_ops(&SC_A1, op_new("p1", "file", "e1", "update", "", s1));
	assert_accepted(&r, ACC("p1"));
	c = conflicts_of(&r);
	ck_assert_int_eq(cJSON_GetArraySize(c), 2);
	assert_conflict(cJSON_GetArrayItem(c, 0), "h2", "dev_a2", "update",
			s2, "file", "e1");
	assert_conflict(cJSON_GetArrayItem(c, 1), "h4", "dev_a2", "move", s4,
			"file", "e1");
	reply_free(&r);

	/* strictly newer than L */
	r = push_ops(&SC_A1, op_new("p2", "file", "e1", "update", "", s4));
	ck_assert_int_eq(cJSON_GetArraySize(conflicts_of(&r)), 0);
	reply_free(&r);

	/* the duplicate p1 is scanned again (and still accepted); a second
	 * op on e2 follows in request order */
	r = push_ops(&SC_A1, op_new("p1", "file", "e1", "update", "", s2),
		     op_new("p3", "file", "e2", "create", "", 1));
	assert_accepted(&r, ACC("p1", "p3"));
	c = conflicts_of(&r);
	ck_assert_int_eq(cJSON_GetArraySize(c), 2);
	assert_conflict(cJSON_GetArrayItem(c, 0), "h4", "dev_a2", "move", s4,
			"file", "e1");
	assert_conflict(cJSON_GetArrayItem(c, 1), "h5", "dev_a2", "update",
			op_seq("h5"), "file", "e2");
	reply_free(&r);

	/* device a2 sees a1's ops as conflicts, never its own */
	r = push_ops(&SC_A2, op_new("q1", "file", "e1", "update", "", s4));
	c = conflicts_of(&r);
	ck_assert_int_eq(cJSON_GetArraySize(c), 4);
	assert_conflict(cJSON_GetArrayItem(c, 0), "own", "dev_a1", "update",
			op_seq("own"), "file", "e1");
	assert_conflict(cJSON_GetArrayItem(c, 1), "p0", "dev_a1", "update",
			op_seq("p0"), "file", "e1");
	ck_assert_str_eq(jstr(cJSON_GetArrayItem(c, 2), "op_id"), "p1");
	ck_assert_str_eq(jstr(cJSON_GetArrayItem(c, 3), "op_id"), "p2");
	reply_free(&r);
}
END_TEST

START_TEST(test_conflict_query_uses_entity_index)
{
	char sql[1024];
	sqlite3_stmt *st = NULL;
	struct vs_buf plan;
	int rc, round;

	for (round = 0; round < 2; round++) {
		if (round == 1) {
			/* a big vault with statistics must not change it */
			exec_ok("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
				" SELECT i + 1 FROM n WHERE i < 3000)"
				" INSERT INTO server_ops (op_id, server_sequence,"
				" user_id, vault_id, device_id, entity_type,"
				" entity_id, op_type, payload_json, created_at)"
				" SELECT 'x' || i, i, '" U_ALICE "', 'vault-a',"
				" 'dev_a2', 'file', 'f' || (i % 7), 'update',"
				" '', '' FROM n");
			exec_ok("ANALYZE");
		}
		vs_buf_init(&plan);
		snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s",
			 vs_sync_sql_conflicts);
		ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL),
				 SQLITE_OK);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			vs_buf_printf(&plan, "%s\n",
				      (const char *)sqlite3_column_text(st, 3));
		ck_assert_int_eq(rc, SQLITE_DONE);
		sqlite3_finalize(st);
		ck_assert_msg(strstr(plan.data,
			"SEARCH server_ops USING INDEX idx_server_ops_entity"
			" (entity_type=? AND entity_id=? AND rowid>?)") != NULL,
			"plan: %s", plan.data);
		ck_assert_msg(strstr(plan.data, "SCAN server_ops") == NULL,
			      "plan: %s", plan.data);
		ck_assert_msg(strstr(plan.data, "scope_sequence") == NULL,
			      "plan: %s", plan.data);
		vs_buf_free(&plan);
	}
	/* and the scan still answers correctly on the big vault */
	{
		struct reply r = push_ops(&SC_A1,
			op_new("big", "file", "f3", "update", "", 2990));
		const cJSON *c = conflicts_of(&r);

		/* i in 2991..3000 with i % 7 == 3: 2992, 2999 */
		ck_assert_int_eq(cJSON_GetArraySize(c), 2);
		ck_assert_int_eq(jint(cJSON_GetArrayItem(c, 0),
				      "server_sequence"), 2992);
		ck_assert_int_eq(jint(cJSON_GetArrayItem(c, 1),
				      "server_sequence"), 2999);
		reply_free(&r);
	}
}
END_TEST

/* Steps of the conflict scan's statement for entity README.md in
 * alice's vault-a after l, with the rowid bound given. */
static long long
scan_steps(long long l, long long bound, int *rows)
{
	sqlite3_stmt *st = NULL;
	long long steps;

	ck_assert_int_eq(sqlite3_prepare_v2(db.h, vs_sync_sql_conflicts, -1,
					    &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, "file", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, "README.md", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, U_ALICE, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, "vault-a", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, "dev_a1", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, l);
	sqlite3_bind_int64(st, 7, bound);
	*rows = 0;
	while (sqlite3_step(st) == SQLITE_ROW)
		(*rows)++;
	steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
	sqlite3_finalize(st);
	return steps;
}

/* A path every tenant has: the scan reads what came after L, not every
 * tenant's history of that path, and still finds exactly the scope's
 * conflicts. */
START_TEST(test_conflict_scan_reads_only_recent_ops)
{
	long long bounded, unbounded, first;
	const cJSON *c;
	struct reply r;
	int rows;

	exec_ok("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
		" SELECT i + 1 FROM n WHERE i < 3000)"
		" INSERT INTO server_ops (op_id, server_sequence, user_id,"
		" vault_id, device_id, entity_type, entity_id, op_type,"
		" payload_json, created_at) SELECT 'o' || i, i, 'user-' || i,"
		" 'v', 'd', 'file', 'README.md', 'update', '', '' FROM n");
	exec_ok("WITH RECURSIVE n(i) AS (SELECT 3001 UNION ALL"
		" SELECT i + 1 FROM n WHERE i < 3005)"
		" INSERT INTO server_ops (op_id, server_sequence, user_id,"
		" vault_id, device_id, entity_type, entity_id, op_type,"
		" payload_json, created_at) SELECT 'a' || i, i, '" U_ALICE "',"
		" 'vault-a', 'dev_a2', 'file', 'README.md', 'update', '', ''"
		" FROM n");
	exec_ok("INSERT INTO server_revisions (id, op_id, device_id)"
		" VALUES (3005, 'a3005', 'dev_a2')");
	r = push_ops(&SC_A1, op_new("mine", "file", "README.md", "update",
				    "", 3002));
	c = conflicts_of(&r);
	ck_assert_int_eq(cJSON_GetArraySize(c), 3);
	ck_assert_int_eq(jint(cJSON_GetArrayItem(c, 0), "server_sequence"), 3003);
	ck_assert_int_eq(jint(cJSON_GetArrayItem(c, 2), "server_sequence"), 3005);
	reply_free(&r);

	first = q_int("SELECT rowid FROM server_ops WHERE server_sequence > 3002"
		      " ORDER BY server_sequence LIMIT 1", NULL);
	bounded = scan_steps(3002, first, &rows);
	ck_assert_int_eq(rows, 3);
	unbounded = scan_steps(3002, 0, &rows);
	ck_assert_int_eq(rows, 3);
	ck_assert_msg(bounded * 50 < unbounded, "%lld vs %lld steps", bounded,
		      unbounded);
}
END_TEST

START_TEST(test_pull_queries_use_scope_index)
{
	const char *sqls[] = { vs_sync_sql_pull_page, vs_sync_sql_pull_max };

	for (size_t i = 0; i < 2; i++) {
		char sql[1024];
		sqlite3_stmt *st = NULL;
		struct vs_buf plan;
		int rc;

		vs_buf_init(&plan);
		snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", sqls[i]);
		ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL),
				 SQLITE_OK);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			vs_buf_printf(&plan, "%s\n",
				      (const char *)sqlite3_column_text(st, 3));
		ck_assert_int_eq(rc, SQLITE_DONE);
		sqlite3_finalize(st);
		ck_assert_msg(strstr(plan.data, "idx_server_ops_scope_sequence")
			      != NULL, "plan: %s", plan.data);
		ck_assert_msg(strstr(plan.data, "TEMP B-TREE") == NULL,
			      "plan: %s", plan.data);
		vs_buf_free(&plan);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Tombstones                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_tombstones)
{
	struct reply r;
	char *s;

	r = push_ops(&SC_A1, op_new("d1", "file", "x.md", "delete", "", 0),
		     op_new("t1", "file", "y.md", "trash", "", 0),
		     op_new("t2", "file", "y.md", "hard-delete", "", 0),
		     op_new("t3", "file", "y.md", "Delete", "", 0),
		     op_new("t4", "file", "y.md", "delete ", "", 0));
	assert_accepted(&r, ACC("d1", "t1", "t2", "t3", "t4"));
	reply_free(&r);
	ck_assert_int_eq(count_of("server_tombstones"), 1);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_tombstones WHERE"
		" user_id = '" U_ALICE "' AND vault_id = 'vault-a'"
		" AND entity_type = 'file' AND entity_id = 'x.md'"
		" AND op_id = 'd1'", NULL), 1);
	s = q_text("SELECT deleted_at FROM server_tombstones", NULL);
	ck_assert_msg(is_ts(s), "deleted_at %s", s ? s : "(null)");
	free(s);

	/* a later delete replaces the row; other scopes get their own */
	r = push_ops(&SC_A2, op_new("d2", "file", "x.md", "delete", "", 0));
	reply_free(&r);
	r = push_ops(&SC_B, op_new("d3", "file", "x.md", "delete", "", 0));
	reply_free(&r);
	ck_assert_int_eq(count_of("server_tombstones"), 2);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_tombstones WHERE"
		" user_id = '" U_ALICE "' AND op_id = 'd2'", NULL), 1);

	/* a duplicate delete writes no tombstone */
	exec_ok("DELETE FROM server_tombstones");
	r = push_ops(&SC_A1, op_new("d1", "file", "x.md", "delete", "", 0));
	assert_accepted(&r, ACC("d1"));
	reply_free(&r);
	ck_assert_int_eq(count_of("server_tombstones"), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Idempotency                                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_idempotency_replay)
{
	struct reply r1, r2;
	struct snapshot before;
	char *stored;

	r1 = push_ops_k(&SC_A1, "key-1", note_op("k1"),
			op_new("k2", "file", "e", "update", "", 0));
	assert_accepted(&r1, ACC("k1", "k2"));
	stored = q_text("SELECT response_json FROM server_idempotency_keys"
			" WHERE user_id = '" U_ALICE "' AND vault_id = 'vault-a'"
			" AND idempotency_key = 'key-1'", NULL);
	ck_assert_ptr_nonnull(stored);
	/* the exact compact JSON, the answer = it plus a newline */
	ck_assert_uint_eq(strlen(stored) + 1, r1.len);
	ck_assert_int_eq(memcmp(stored, r1.raw, strlen(stored)), 0);
	ck_assert_int_eq(r1.raw[r1.len - 1], '\n');
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " idempotency_key = 'key-1'", NULL), 2);
	{
		char *ts = q_text("SELECT created_at FROM"
				  " server_idempotency_keys", NULL);

		ck_assert(is_ts(ts));
		free(ts);
	}
	before = snap();

	/* replay with different ops: the stored bytes, nothing stored */
	r2 = push_ops_k(&SC_A1, "key-1", note_op("k3"), note_op("k4"));
	ck_assert_int_eq(r2.status, 200);
	ck_assert_str_eq(r2.raw, stored);
	reply_free(&r2);
	assert_unchanged(before);
	ck_assert_int_eq(op_seq("k3"), -1);

	/* another device of the same scope replays too */
	r2 = push_ops_k(&SC_A2, "key-1", note_op("k5"));
	ck_assert_str_eq(r2.raw, stored);
	reply_free(&r2);
	assert_unchanged(before);

	/* the request checks still run before the replay */
	push_expect(&SC_A1, "{\"idempotency_key\":\"key-1\",\"ops\":[{}]}",
		    400, "invalid_operation", "op_id is required");

	/* keys are scoped: another vault, another user process normally */
	r2 = push_ops_k(&SC_AB, "key-1", note_op("k6"));
	assert_accepted(&r2, ACC("k6"));
	reply_free(&r2);
	r2 = push_ops_k(&SC_B, "key-1", note_op("k7"));
	assert_accepted(&r2, ACC("k7"));
	reply_free(&r2);
	ck_assert_int_eq(count_of("server_idempotency_keys"), 3);

	/* an empty key stores nothing */
	r2 = push_ops_k(&SC_A1, "", note_op("k8"));
	assert_accepted(&r2, ACC("k8"));
	reply_free(&r2);
	ck_assert_int_eq(count_of("server_idempotency_keys"), 3);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " op_id = 'k8' AND idempotency_key = ''",
			       NULL), 1);
	free(stored);
	reply_free(&r1);
}
END_TEST

START_TEST(test_idempotency_reference_row)
{
	static const char row[] =
		"{\"accepted\":null,\"conflicts\":null,\"count\":0}";
	struct reply r;
	struct snapshot before;

	exec_ok("INSERT INTO server_idempotency_keys (user_id, vault_id,"
		" idempotency_key, response_json, created_at) VALUES"
		" ('" U_ALICE "', 'vault-a', 'ref-key',"
		" '{\"accepted\":null,\"conflicts\":null,\"count\":0}',"
		" '2026-01-01T00:00:00Z')");
	before = snap();
	r = push_ops_k(&SC_A1, "ref-key", note_op("r1"));
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.raw, row);
	reply_free(&r);
	assert_unchanged(before);
}
END_TEST

START_TEST(test_idempotency_after_blob_checks)
{
	struct reply r;

	r = push_ops_k(&SC_A1, "key-b", note_op("n1"));
	reply_free(&r);
	/* section 6 runs before the replay */
	r = push_ops_k(&SC_A1, "key-b", file_op("f1",
		"{\"blob\":{\"sha256\":\"" SHA_B "\",\"size\":50}}"));
	assert_err(&r, 400, "blob_not_owned",
		   "blob must be uploaded before its operation");
	reply_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Blob references (SYNC.md 6)                                        */
/* ------------------------------------------------------------------ */

static void
blob_expect(const char *entity_type, const char *payload, int status,
	    const char *code, const char *msg)
{
	struct reply r = push_ops(&SC_A1,
		op_new("blob-op", entity_type, "p", "update", payload, 0));

	if (status == 200) {
		ck_assert_msg(r.status == 200, "%s: %s", payload, r.raw);
		exec_ok("DELETE FROM server_ops");
	} else {
		assert_err_ctx(&r, status, code, msg, payload);
	}
	reply_free(&r);
}

#define BLOB_OK(p) blob_expect("file", p, 200, NULL, NULL)
#define BAD_PAYLOAD "operation payload_json must be valid JSON"

START_TEST(test_blob_references)
{
	/* owned in this scope with the right size */
	BLOB_OK("{\"path\":\"a.png\",\"blob\":{\"sha256\":\"" SHA_A
		"\",\"size\":100}}");
	/* no blob: inline text, folders, moves, null */
	BLOB_OK("{\"path\":\"a.md\",\"content\":\"hi\"}");
	BLOB_OK("{\"fromPath\":\"a\",\"toPath\":\"b\"}");
	BLOB_OK("{\"blob\":null}");
	BLOB_OK("{\"dataBase64\":null,\"blob\":null}");
	BLOB_OK("null");
	BLOB_OK("{}");
	BLOB_OK("");
	/* only file ops are checked (exactly "file") */
	blob_expect("folder", "{\"blob\":{\"sha256\":\"zz\",\"size\":-1}}",
		    200, NULL, NULL);
	blob_expect("File", "{\"dataBase64\":\"AAAA\"}", 200, NULL, NULL);
	blob_expect("note", "[1]", 200, NULL, NULL);

	/* a lone surrogate escape is valid JSON (Go's rules): accepted,
	 * and the blob reference beside it is still checked */
	BLOB_OK("{\"path\":\"a\\ud800b.png\",\"content\":\"x\"}");
	BLOB_OK("{\"path\":\"\\uDC00.png\",\"blob\":{\"sha256\":\"" SHA_A
		"\",\"size\":100}}");
	blob_expect("file", "{\"path\":\"\\ud800\",\"blob\":{\"sha256\":\""
		    SHA_B "\",\"size\":50}}", 400, "blob_not_owned",
		    "blob must be uploaded before its operation");

	/* owned only in another scope (Alice's vault-b, Bob's vault-a) */
	blob_expect("file", "{\"blob\":{\"sha256\":\"" SHA_B
		    "\",\"size\":50}}", 400, "blob_not_owned",
		    "blob must be uploaded before its operation");
	blob_expect("file", "{\"blob\":{\"sha256\":\"" SHA_A
		    "\",\"size\":99}}", 400, "invalid_blob_reference",
		    "blob size does not match uploaded content");
	blob_expect("file", "{\"blob\":{\"sha256\":\"" SHA_A "\"}}", 400,
		    "invalid_blob_reference",
		    "blob size does not match uploaded content");

	/* malformed references */
	{
		static const char *const bad[] = {
			"{\"blob\":{}}",
			"{\"blob\":{\"sha256\":\"\",\"size\":1}}",
			"{\"blob\":{\"sha256\":\"6EEEE0377A3CDA356E32E9953A36FE366B2082CB68A6B5532E8D0AD146562D68\",\"size\":100}}",
			"{\"blob\":{\"sha256\":\"6eeee0377a3cda356e32e9953a36fe366b2082cb68a6b5532e8d0ad146562d6\",\"size\":100}}",
			"{\"blob\":{\"sha256\":\"6eeee0377a3cda356e32e9953a36fe366b2082cb68a6b5532e8d0ad146562d688\",\"size\":100}}",
			"{\"blob\":{\"sha256\":\"geeee0377a3cda356e32e9953a36fe366b2082cb68a6b5532e8d0ad146562d68\",\"size\":100}}",
			"{\"blob\":{\"sha256\":\"" SHA_A "\",\"size\":-1}}",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			blob_expect("file", bad[i], 400,
				    "invalid_blob_reference",
				    "invalid blob reference");
	}
	/* inline binary */
	blob_expect("file", "{\"dataBase64\":\"AAAA\"}", 400,
		    "inline_binary_forbidden",
		    "binary file payload must reference a blob");
	blob_expect("file", "{\"dataBase64\":\"\"}", 400,
		    "inline_binary_forbidden",
		    "binary file payload must reference a blob");
	blob_expect("file", "{\"dataBase64\":\"AA\",\"blob\":{\"sha256\":\""
		    SHA_A "\",\"size\":100}}", 400, "inline_binary_forbidden",
		    "binary file payload must reference a blob");
	/* not an object, or a field of the wrong type */
	{
		static const char *const bad[] = {
			"[1]", "1", "\"s\"", "true",
			"{\"dataBase64\":5}", "{\"dataBase64\":{}}",
			"{\"blob\":\"x\"}", "{\"blob\":[]}", "{\"blob\":1}",
			"{\"blob\":{\"sha256\":5,\"size\":1}}",
			"{\"blob\":{\"sha256\":\"" SHA_A "\",\"size\":\"100\"}}",
			"{\"blob\":{\"sha256\":\"" SHA_A "\",\"size\":1.5}}",
			/* a type error beats dataBase64 */
			"{\"dataBase64\":\"AA\",\"blob\":{\"size\":\"1\"}}",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			blob_expect("file", bad[i], 400, "invalid_payload",
				    BAD_PAYLOAD);
	}
	/* any op type of a file op is checked */
	{
		struct reply r = push_ops(&SC_A1, op_new("fd", "file", "p",
			"delete", "{\"blob\":{\"sha256\":\"" SHA_B
			"\",\"size\":50}}", 0));

		assert_err(&r, 400, "blob_not_owned",
			   "blob must be uploaded before its operation");
		reply_free(&r);
	}
	ck_assert_int_eq(count_of("server_ops"), 0);
	/* the same reference is fine in the scopes that own it */
	{
		struct reply r = push_ops(&SC_B, file_op("bf",
			"{\"blob\":{\"sha256\":\"" SHA_B "\",\"size\":50}}"));

		assert_accepted(&r, ACC("bf"));
		reply_free(&r);
	}
}
END_TEST

START_TEST(test_blob_checks_before_dedup)
{
	struct reply r;
	struct snapshot before;

	r = push_ops(&SC_A1, note_op("op-1"));
	reply_free(&r);
	before = snap();
	/* Bob's op 1 would be a 409, but section 6 runs first on all ops */
	r = push_ops(&SC_B, note_op("op-1"), file_op("bf",
		"{\"blob\":{\"sha256\":\"" SHA_A "\",\"size\":100}}"));
	assert_err(&r, 400, "blob_not_owned",
		   "blob must be uploaded before its operation");
	reply_free(&r);
	assert_unchanged(before);
}
END_TEST

START_TEST(test_all_or_nothing)
{
	struct reply r;
	struct snapshot before;

	r = push_ops(&SC_B, note_op("bob-op"));
	reply_free(&r);
	before = snap();

	/* op 3 of 5 references an unowned blob */
	r = push_ops_k(&SC_A1, "aon", note_op("a1"),
		       op_new("a2", "file", "x", "delete", "", 0),
		       file_op("a3", "{\"blob\":{\"sha256\":\"" SHA_B
			       "\",\"size\":50}}"),
		       note_op("a4"), note_op("a5"));
	assert_err(&r, 400, "blob_not_owned",
		   "blob must be uploaded before its operation");
	reply_free(&r);
	assert_unchanged(before);

	/* op 4 of 5 is another scope's op_id: ops 1-3 were already
	 * inserted inside the transaction and are rolled back */
	r = push_ops_k(&SC_A1, "aon", note_op("a1"),
		       op_new("a2", "file", "x", "delete", "", 0),
		       note_op("a3"), note_op("bob-op"), note_op("a5"));
	assert_err(&r, 409, "op_id_conflict",
		   "op_id already used in another scope");
	reply_free(&r);
	assert_unchanged(before);
	ck_assert_int_eq(op_seq("a1"), -1);

	/* the same push without the bad op succeeds, sequences continue */
	r = push_ops_k(&SC_A1, "aon", note_op("a1"));
	assert_accepted(&r, ACC("a1"));
	reply_free(&r);
	ck_assert_int_eq(op_seq("a1"), before.counter + 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Pull                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_pull_decode_errors)
{
	static const char *const invalid[] = {
		"", " ", "{", "[]", "1", "\"x\"", "{\"since_sequence\":\"1\"}",
		"{\"since_sequence\":1.5}", "{\"page_limit\":true}",
		"{\"page_limit\":[]}", "{\"since_sequence\":1e19}", "{}x",
	};
	static const char *const fine[] = {
		"{}", "null", "{\"since_sequence\":null,\"page_limit\":null}",
		" {\"other\":1} ", "{\"since_sequence\":0}",
	};

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		pull_expect(&SC_A1, invalid[i], 400, "invalid_json",
			    "invalid JSON request");
	pull_expect(&SC_A1, "{} {}", 400, "trailing_json",
		    "request must contain one JSON value");
	pull_expect(&SC_A1, "{\"since_sequence\":-1}", 400, "invalid_request",
		    "sequence and page_limit must be non-negative");
	pull_expect(&SC_A1, "{\"page_limit\":-1}", 400, "invalid_request",
		    "sequence and page_limit must be non-negative");
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		struct reply r = pull_raw(&SC_A1, fine[i]);

		ck_assert_int_eq(r.status, 200);
		ck_assert_str_eq(r.raw, "{\"ops\":[],\"server_sequence\":0,"
			"\"page_last_sequence\":0,\"has_more\":false}\n");
		reply_free(&r);
	}
}
END_TEST

/* Pushes n notes into sc named prefix-i. */
static void
push_many(const struct vs_scope *sc, const char *prefix, int n)
{
	char id[64];

	for (int done = 0; done < n; ) {
		cJSON *root = cJSON_CreateObject();
		cJSON *arr = cJSON_AddArrayToObject(root, "ops");
		struct reply r;
		char *body;

		for (int k = 0; k < 100 && done < n; k++, done++) {
			snprintf(id, sizeof(id), "%s-%d", prefix, done);
			cJSON_AddItemToArray(arr, note_op(id));
		}
		body = cJSON_PrintUnformatted(root);
		r = push_raw(sc, body);
		ck_assert_int_eq(r.status, 200);
		reply_free(&r);
		free(body);
		cJSON_Delete(root);
	}
}

/* Checks one page's invariants and returns its page_last_sequence. */
static long long
check_page(const struct reply *r, long long since, long long want_max,
	   int want_n, bool want_more)
{
	const cJSON *ops = cJSON_GetObjectItemCaseSensitive(r->j, "ops");
	long long prev = since, last;
	const cJSON *o;

	ck_assert_msg(r->status == 200, "%s", r->raw);
	ck_assert_int_eq(cJSON_GetArraySize(r->j), 4);
	ck_assert_int_eq(jint(r->j, "server_sequence"), want_max);
	ck_assert(cJSON_IsArray(ops));
	ck_assert_int_eq(cJSON_GetArraySize(ops), want_n);
	ck_assert(cJSON_IsBool(cJSON_GetObjectItem(r->j, "has_more")));
	ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(r->j, "has_more")),
			 want_more);
	cJSON_ArrayForEach(o, ops) {
		long long s = jint(o, "server_sequence");

		ck_assert_int_gt(s, prev);	/* P1 */
		prev = s;
		ck_assert_int_eq(cJSON_GetArraySize(o), 8);
	}
	last = jint(r->j, "page_last_sequence");
	ck_assert_int_eq(last, prev);	/* P4, and P5 when empty */
	if (want_more)
		ck_assert_int_gt(last, since);	/* P3 */
	if (want_n > 0)
		ck_assert_int_le(last, want_max);	/* D41 */
	return last;
}

START_TEST(test_pull_paging)
{
	struct reply r;
	long long since = 0, max;
	int seen = 0, pages = 0;

	/* interleave scopes so that vault-a's sequences have gaps */
	push_many(&SC_A1, "a", 100);
	push_many(&SC_B, "b", 30);
	push_many(&SC_A2, "c", 150);
	push_many(&SC_AB, "d", 5);
	max = op_seq("c-149");

	/* default page size, and the cap */
	r = pull(&SC_A1, 0, 0);
	since = check_page(&r, 0, max, 100, true);
	ck_assert_int_eq(since, op_seq("a-99"));
	reply_free(&r);
	r = pull(&SC_A1, 0, 1000);
	check_page(&r, 0, max, 100, true);
	reply_free(&r);
	r = pull(&SC_A1, 0, 7);
	ck_assert_int_eq(check_page(&r, 0, max, 7, true), op_seq("a-6"));
	reply_free(&r);

	/* P2: following the cursor visits every op once */
	since = 0;
	for (;;) {
		const cJSON *ops, *o;
		bool more;

		r = pull(&SC_A1, since, 33);
		ops = cJSON_GetObjectItem(r.j, "ops");
		more = cJSON_IsTrue(cJSON_GetObjectItem(r.j, "has_more"));
		cJSON_ArrayForEach(o, ops) {
			char want[32];

			snprintf(want, sizeof(want), seen < 100 ? "a-%d" :
				 "c-%d", seen < 100 ? seen : seen - 100);
			ck_assert_str_eq(jstr(o, "op_id"), want);
			seen++;
		}
		since = check_page(&r, since, max, cJSON_GetArraySize(ops),
				   more);
		reply_free(&r);
		pages++;
		if (!more)
			break;
	}
	ck_assert_int_eq(seen, 250);
	ck_assert_int_eq(pages, 8);	/* 7 x 33 + 19 */
	ck_assert_int_eq(since, max);

	/* a page that ends exactly at the end has no more */
	r = pull(&SC_A1, op_seq("c-139"), 10);
	ck_assert_int_eq(check_page(&r, op_seq("c-139"), max, 10, false), max);
	reply_free(&r);

	/* P5: empty pages keep since, even beyond the scope's maximum, up
	 * to the highest sequence issued (vault-b's ops came later) */
	r = pull(&SC_A1, max, 0);
	ck_assert_int_eq(check_page(&r, max, max, 0, false), max);
	reply_free(&r);
	r = pull(&SC_A1, op_seq("d-4"), 5);
	ck_assert_int_eq(jint(r.j, "page_last_sequence"), op_seq("d-4"));
	ck_assert_int_eq(jint(r.j, "server_sequence"), max);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r.j, "has_more")));
	reply_free(&r);
	/* beyond every sequence issued: a restored backup (see
	 * test_pull_cursor_ahead_and_advance) */
	pull_expect(&SC_A1, "{\"since_sequence\":999999}", 409, "cursor_ahead",
		    "since_sequence is beyond every sequence this server has issued");
	/* a large cursor keeps every digit */
	{
		int64_t before, after;
		char want[64];

		ck_assert_int_eq(vs_sync_advance(&db, VS_SYNC_ADVANCE_MAX,
						 &before, &after), VS_DB_OK);
		r = pull(&SC_A1, after, 0);
		snprintf(want, sizeof(want), "\"page_last_sequence\":%lld",
			 (long long)after);
		ck_assert_int_gt(after, 1125899906842624LL);
		ck_assert_ptr_nonnull(strstr(r.raw, want));
		ck_assert_int_eq(after - before, 1125899906842624LL);
		reply_free(&r);
	}

	/* other scopes: their own ops and maximum only */
	r = pull(&SC_AB, 0, 0);
	check_page(&r, 0, op_seq("d-4"), 5, false);
	reply_free(&r);
	r = pull(&SC_B, 0, 0);
	check_page(&r, 0, op_seq("b-29"), 30, false);
	ck_assert_str_eq(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(r.j,
		"ops"), 0), "op_id"), "b-0");
	reply_free(&r);
	r = pull(&(struct vs_scope){ U_BOB, "vault-x", "dev_b1" }, 0, 0);
	check_page(&r, 0, 0, 0, false);
	reply_free(&r);
}
END_TEST

/* A restored backup rewinds the log while devices keep newer cursors:
 * pull refuses a cursor beyond every sequence ever issued (instead of
 * showing nothing below it for good), and advancing the counter makes
 * new ops reach such a device. */
START_TEST(test_pull_cursor_ahead_and_advance)
{
	static const char *const ahead =
		"since_sequence is beyond every sequence this server has issued";
	int64_t issued = -1, before = -1, after = -1;
	struct reply r;
	const cJSON *ops;

	ck_assert_int_eq(vs_sync_issued(&db, &issued), VS_DB_OK);
	ck_assert_int_eq(issued, 0);
	pull_expect(&SC_A1, "{\"since_sequence\":1}", 409, "cursor_ahead", ahead);
	push_many(&SC_A1, "r", 5);		/* 1..5 */
	push_many(&SC_B, "b", 3);		/* 6..8, another scope */
	ck_assert_int_eq(vs_sync_issued(&db, &issued), VS_DB_OK);
	ck_assert_int_eq(issued, 8);
	/* above the scope's maximum but issued elsewhere: an empty page */
	r = pull(&SC_A1, 8, 0);
	check_page(&r, 8, 5, 0, false);
	reply_free(&r);
	pull_expect(&SC_A1, "{\"since_sequence\":9}", 409, "cursor_ahead", ahead);
	pull_expect(&SC_A2, "{\"since_sequence\":1000}", 409, "cursor_ahead",
		    ahead);
	ck_assert_int_eq(db.tx_depth, 0);

	ck_assert_int_eq(vs_sync_advance(&db, 100, &before, &after), VS_DB_OK);
	ck_assert_int_eq(before, 8);
	ck_assert_int_eq(after, 108);
	r = pull(&SC_A1, 100, 0);
	check_page(&r, 100, 5, 0, false);
	reply_free(&r);
	push_many(&SC_A2, "n", 1);
	r = pull(&SC_A1, 100, 0);
	check_page(&r, 100, 109, 1, false);
	ops = cJSON_GetObjectItemCaseSensitive(r.j, "ops");
	ck_assert_int_eq(jint(cJSON_GetArrayItem(ops, 0), "server_sequence"), 109);
	reply_free(&r);

	ck_assert_int_eq(vs_sync_advance(&db, 0, &before, &after), VS_DB_ERROR);
	ck_assert_int_eq(vs_sync_advance(&db, -5, &before, &after), VS_DB_ERROR);
	ck_assert_int_eq(vs_sync_advance(&db, VS_SYNC_ADVANCE_MAX + 1, &before,
					 &after), VS_DB_ERROR);
	ck_assert_int_eq(vs_sync_issued(&db, &issued), VS_DB_OK);
	ck_assert_int_eq(issued, 109);
	ck_assert_int_eq(db.tx_depth, 0);
}
END_TEST

START_TEST(test_pull_page_limit_config)
{
	struct reply r;

	push_many(&SC_A1, "a", 25);
	lim.max_pull_page = 10;
	r = pull(&SC_A1, 0, 0);
	check_page(&r, 0, op_seq("a-24"), 10, true);
	reply_free(&r);
	r = pull(&SC_A1, 0, 11);
	check_page(&r, 0, op_seq("a-24"), 10, true);
	reply_free(&r);
	r = pull(&SC_A1, 0, 10);
	check_page(&r, 0, op_seq("a-24"), 10, true);
	reply_free(&r);
	r = pull(&SC_A1, 0, 9);
	check_page(&r, 0, op_seq("a-24"), 9, true);
	reply_free(&r);
	r = pull(&SC_A1, 0, 1);
	ck_assert_int_eq(check_page(&r, 0, op_seq("a-24"), 1, true),
			 op_seq("a-0"));
	reply_free(&r);
	r = pull(&SC_A1, op_seq("a-19"), 0);
	check_page(&r, op_seq("a-19"), op_seq("a-24"), 5, false);
	reply_free(&r);
}
END_TEST

START_TEST(test_pull_null_sequence_invisible)
{
	struct reply r;

	push_many(&SC_A1, "a", 3);
	/* S5: a row without a sequence (newer than all) is never shown and
	 * does not count for the maximum */
	exec_ok("INSERT INTO server_ops (op_id, server_sequence, user_id,"
		" vault_id, device_id, entity_type, entity_id, op_type,"
		" payload_json, created_at) VALUES ('nul', NULL,"
		" '" U_ALICE "', 'vault-a', 'dev_a1', 'note', 'x', 'create',"
		" '', '')");
	r = pull(&SC_A1, 0, 0);
	check_page(&r, 0, op_seq("a-2"), 3, false);
	ck_assert_ptr_null(strstr(r.raw, "\"nul\""));
	reply_free(&r);
}
END_TEST

/* An op committed by another process whose fsync has not returned:
 * the row is there, the durable watermark (writelock.h) is below it. */
static void
commit_unsynced_op(const char *op_id)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "INSERT INTO server_revisions (op_id,"
		 " device_id) VALUES ('%s', 'dev_a2')", op_id);
	exec_ok(sql);
	snprintf(sql, sizeof(sql), "INSERT INTO server_ops (op_id,"
		 " server_sequence, user_id, vault_id, device_id, entity_type,"
		 " entity_id, op_type, payload_json, created_at) VALUES ('%s',"
		 " last_insert_rowid(), '" U_ALICE "', 'vault-a', 'dev_a2',"
		 " 'note', 'n', 'create', '', '')", op_id);
	exec_ok(sql);
}

/* Pull never shows an op above the durable watermark, and the watermark
 * catches up with the next push (of any scope) or a new process. */
START_TEST(test_pull_hides_unsynced_ops)
{
	struct reply r;

	if (db.wlock.shm == NULL)
		return;	/* FULL: nothing is ever committed unsynced */
	push_many(&SC_A1, "a", 2);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), op_seq("a-1"));
	r = pull(&SC_A1, 0, 0);	/* this process's first pull */
	reply_free(&r);
	ck_assert(db.durable_seq_known);
	commit_unsynced_op("late-1");
	ck_assert_int_gt(op_seq("late-1"), op_seq("a-1"));

	r = pull(&SC_A1, 0, 0);
	check_page(&r, 0, op_seq("a-1"), 2, false);
	ck_assert_ptr_null(strstr(r.raw, "late-1"));
	reply_free(&r);
	/* from the cursor too: nothing yet, and the cursor stays */
	r = pull(&SC_A1, op_seq("a-1"), 0);
	check_page(&r, op_seq("a-1"), op_seq("a-1"), 0, false);
	reply_free(&r);

	/* Bob's push syncs the WAL, and with it Alice's op */
	push_many(&SC_B, "b", 1);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), op_seq("b-0"));
	r = pull(&SC_A1, op_seq("a-1"), 0);
	check_page(&r, op_seq("a-1"), op_seq("late-1"), 1, false);
	ck_assert_ptr_nonnull(strstr(r.raw, "\"late-1\""));
	reply_free(&r);

	/* a process's first pull publishes what was there before it */
	commit_unsynced_op("late-2");
	r = pull(&SC_A1, op_seq("late-1"), 0);
	check_page(&r, op_seq("late-1"), op_seq("late-1"), 0, false);
	reply_free(&r);
	db.durable_seq_known = false;
	r = pull(&SC_A1, op_seq("late-1"), 0);
	check_page(&r, op_seq("late-1"), op_seq("late-2"), 1, false);
	reply_free(&r);
	ck_assert(db.durable_seq_known);
}
END_TEST

/* Deferred (the worker's group commit): a push commits, but neither its
 * fsync nor its watermark happens before vs_db_settle; pull keeps its ops
 * hidden until then. A replay's forced sync is deferred too, and a push
 * refused before it wrote anything defers nothing. */
START_TEST(test_deferred_push_publishes_at_settle)
{
	struct reply r;
	unsigned long n;
	int64_t before;

	if (db.wlock.shm == NULL)
		return;
	push_many(&SC_A1, "a", 1);
	r = pull(&SC_A1, 0, 0);	/* the first pull publishes what is there */
	reply_free(&r);
	before = vs_wlock_durable_seq(&db.wlock);
	ck_assert_int_eq(before, op_seq("a-0"));

	db.may_defer = true;
	r = push_ops_k(&SC_A1, "k-d", note_op("d-0"));
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	ck_assert(vs_db_has_pending(&db));
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), before);
	r = pull(&SC_A1, op_seq("a-0"), 0);
	check_page(&r, op_seq("a-0"), op_seq("a-0"), 0, false);
	reply_free(&r);

	n = vs_db_deferrals(&db);
	r = push_ops_k(&SC_A1, "k-d", note_op("d-0"));	/* the replay */
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	ck_assert_uint_gt(vs_db_deferrals(&db), n);
	n = vs_db_deferrals(&db);
	push_expect(&SC_A1, "{} {}", 400, "trailing_json",
		    "request must contain one JSON value");
	ck_assert_uint_eq(vs_db_deferrals(&db), n);
	db.may_defer = false;

	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), before);
	ck_assert_int_eq(vs_db_settle(&db), VS_DB_OK);
	ck_assert(!vs_db_has_pending(&db));
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), op_seq("d-0"));
	r = pull(&SC_A1, op_seq("a-0"), 0);
	check_page(&r, op_seq("a-0"), op_seq("d-0"), 1, false);
	reply_free(&r);
}
END_TEST

/* A replayed answer names ops another request committed: the replay
 * syncs and publishes them before it is sent. */
START_TEST(test_replay_publishes)
{
	struct reply r;
	int64_t top;

	if (db.wlock.shm == NULL)
		return;
	r = push_ops_k(&SC_A1, "k-1", note_op("r-0"));
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	commit_unsynced_op("late-3");
	top = op_seq("late-3");
	ck_assert_int_lt(vs_wlock_durable_seq(&db.wlock), top);
	r = push_ops_k(&SC_A1, "k-1", note_op("r-0"));
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	ck_assert_int_eq(vs_wlock_durable_seq(&db.wlock), top);
}
END_TEST

START_TEST(test_pull_verbatim)
{
	static const char *const payloads[] = {
		"",
		"{\"t\":\"\xc3\xbcn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 \xe2\x9c\x93"
		" \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"}",
		"{\"h\":\"<b>&amp;</b>\"}",
		"  {\"a\" : [1, 2.50, \"x\\ny\\\"z\\\\\"]}\n",
		"{\"u\":\"\\u00e9\\u2028\"}",
	};
	static const char *const created[] = {
		"", "yesterday", "2026-01-01T00:00:00.123+02:00", "<&>",
		"\xe6\x97\xa5",
	};
	const size_t n = sizeof(payloads) / sizeof(payloads[0]);
	struct reply r;
	const cJSON *ops;

	for (size_t i = 0; i < n; i++) {
		char id[16];
		cJSON *o;

		snprintf(id, sizeof(id), "v%zu", i);
		o = op_new(id, "note<&>", "\xe2\x9c\x93 <x>", "create",
			   payloads[i], 0);
		cJSON_ReplaceItemInObject(o, "created_at",
					  cJSON_CreateString(created[i]));
		r = push_ops(&SC_A1, o);
		assert_accepted(&r, ACC(id));
		reply_free(&r);
	}
	r = pull(&SC_A1, 0, 0);
	ops = cJSON_GetObjectItem(r.j, "ops");
	ck_assert_int_eq(cJSON_GetArraySize(ops), (int)n);
	for (size_t i = 0; i < n; i++) {
		const cJSON *o = cJSON_GetArrayItem(ops, (int)i);

		ck_assert_str_eq(jstr(o, "payload_json"), payloads[i]);
		ck_assert_str_eq(jstr(o, "created_at"), created[i]);
		ck_assert_str_eq(jstr(o, "entity_type"), "note<&>");
		ck_assert_str_eq(jstr(o, "entity_id"), "\xe2\x9c\x93 <x>");
		ck_assert_str_eq(jstr(o, "device_id"), "dev_a1");
		ck_assert_str_eq(jstr(o, "op_type"), "create");
	}
	/* <, >, & escaped as the reference does; UTF-8 kept as is */
	ck_assert_ptr_null(strchr(r.raw, '<'));
	ck_assert_ptr_null(strchr(r.raw, '>'));
	ck_assert_ptr_null(strchr(r.raw, '&'));
	ck_assert_ptr_nonnull(strstr(r.raw, "\"entity_type\":\"note\\u003c"
				     "\\u0026\\u003e\""));
	ck_assert_ptr_nonnull(strstr(r.raw, "\xf0\x9f\x98\x80"));
	ck_assert_ptr_nonnull(strstr(r.raw, "\\u2028"));
	ck_assert_int_eq(r.raw[r.len - 1], '\n');
	reply_free(&r);
}
END_TEST

/* A second worker pushing through its own connection. */
static void *
pusher(void *arg)
{
	struct vs_db other;
	char err[256], body[256];
	struct vs_response res;
	int *ok = arg;

	*ok = vs_db_open(&other, tmpdir, err, sizeof(err)) == VS_DB_OK;
	for (int i = 0; *ok && i < 300; i++) {
		int n = snprintf(body, sizeof(body), "{\"ops\":[{\"op_id\":"
			"\"w-%d\",\"entity_type\":\"note\",\"entity_id\":"
			"\"x\",\"op_type\":\"create\"}]}", i);

		vs_res_init(&res);
		vs_sync_push(&other, &lim, &SC_A2, body, (size_t)n, &res);
		*ok = res.status == 200;
		vs_res_free(&res);
	}
	vs_db_close(&other);
	return NULL;
}

/* D41: the maximum and the page come from one snapshot, so with a
 * concurrent pusher server_sequence >= page_last_sequence always. */
START_TEST(test_pull_snapshot_with_concurrent_pushes)
{
	pthread_t th;
	int ok = 0, pulls = 0;
	long long since = 0;

	ck_assert_int_eq(pthread_create(&th, NULL, pusher, &ok), 0);
	while (pulls < 3000 && count_of("server_ops") < 300) {
		struct reply r = pull(&SC_A1, since, 0);
		long long max = jint(r.j, "server_sequence");
		long long last = jint(r.j, "page_last_sequence");
		const cJSON *ops = cJSON_GetObjectItem(r.j, "ops");

		ck_assert_int_eq(r.status, 200);
		if (cJSON_GetArraySize(ops) > 0) {
			ck_assert_msg(max >= last, "max %lld < last %lld",
				      max, last);
			since = last;
		}
		reply_free(&r);
		pulls++;
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert(ok);
	ck_assert_int_eq(count_of("server_ops"), 300);
}
END_TEST

/* D40: a desktop text file of 2 MiB inline, once the limit is raised. */
START_TEST(test_d40_large_text_payload)
{
	size_t n = 2u << 20;
	char *text = malloc(n + 1), *payload;
	struct vs_buf b;
	struct reply r;
	const cJSON *ops;

	ck_assert_ptr_nonnull(text);
	for (size_t i = 0; i < n; i++)
		text[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
	text[n] = '\0';
	vs_buf_init(&b);
	vs_buf_puts(&b, "{\"path\":\"big.md\",\"contentHash\":\"x\","
		    "\"content\":");
	vs_json_put_str(&b, text);
	vs_buf_puts(&b, "}");
	ck_assert(!b.oom);
	payload = b.data;

	/* reference defaults: 413 */
	r = push_ops(&SC_A1, file_op("big", payload));
	assert_err(&r, 413, "payload_too_large",
		   "operation payload is too large");
	reply_free(&r);

	lim.max_payload_json = 16 << 20;
	r = push_ops(&SC_A1, file_op("big", payload));
	assert_accepted(&r, ACC("big"));
	reply_free(&r);
	r = pull(&SC_A1, 0, 0);
	ops = cJSON_GetObjectItem(r.j, "ops");
	ck_assert_int_eq(cJSON_GetArraySize(ops), 1);
	ck_assert(strcmp(jstr(cJSON_GetArrayItem(ops, 0), "payload_json"),
			 payload) == 0);
	reply_free(&r);
	vs_buf_free(&b);
	free(text);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Migrated layout: NULL columns                                      */
/* ------------------------------------------------------------------ */

static void
setup_legacy(void)
{
	char err[256] = "";

	default_limits();
	make_tmpdir();
	open_db();
	/* an older server_ops without NOT NULL constraints or scope */
	exec_ok("CREATE TABLE server_ops (op_id TEXT PRIMARY KEY,"
		" server_sequence INTEGER, device_id TEXT, entity_type TEXT,"
		" entity_id TEXT, op_type TEXT, payload_json TEXT,"
		" idempotency_key TEXT, client_sequence INTEGER DEFAULT 0,"
		" last_seen_server_seq INTEGER DEFAULT 0, created_at TEXT,"
		" pushed_at TEXT)");
	ck_assert_msg(vs_db_migrate(&db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
	seed_rows();
}

START_TEST(test_pull_null_columns)
{
	struct reply r;
	const cJSON *ops, *o;

	exec_ok("INSERT INTO server_revisions (op_id, device_id) VALUES"
		" ('old', 'dev_a2')");
	exec_ok("INSERT INTO server_ops (op_id, server_sequence, user_id,"
		" vault_id) VALUES ('old', 1, '" U_ALICE "', 'vault-a')");
	/* pushing still works on this layout, with a conflict against the
	 * NULL-typed row skipped by the op_type filter */
	r = push_ops(&SC_A1, op_new("new", "note", "e", "create", "{}", 0));
	assert_accepted(&r, ACC("new"));
	reply_free(&r);
	ck_assert_int_eq(op_seq("new"), 2);

	r = pull(&SC_A1, 0, 0);
	check_page(&r, 0, 2, 2, false);
	ops = cJSON_GetObjectItem(r.j, "ops");
	o = cJSON_GetArrayItem(ops, 0);
	ck_assert_str_eq(jstr(o, "op_id"), "old");
	ck_assert_int_eq(jint(o, "server_sequence"), 1);
	ck_assert_str_eq(jstr(o, "device_id"), "");
	ck_assert_str_eq(jstr(o, "entity_type"), "");
	ck_assert_str_eq(jstr(o, "entity_id"), "");
	ck_assert_str_eq(jstr(o, "op_type"), "");
	ck_assert_str_eq(jstr(o, "payload_json"), "");
	ck_assert_str_eq(jstr(o, "created_at"), "");
	reply_free(&r);

	/* a row with a NULL scope is "another scope" for its op_id */
	exec_ok("INSERT INTO server_ops (op_id, server_sequence) VALUES"
		" ('orphan', 3)");
	r = push_ops(&SC_A1, note_op("orphan"));
	assert_err(&r, 409, "op_id_conflict",
		   "op_id already used in another scope");
	reply_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The reference's data directory                                     */
/* ------------------------------------------------------------------ */

static void
copy_file(const char *src, const char *dst)
{
	size_t len;
	char *data = read_file(src, &len);
	int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	ck_assert_int_ge(fd, 0);
	ck_assert(vs_write_all(fd, data, len));
	ck_assert_int_eq(close(fd), 0);
	free(data);
}

static cJSON *manifest;

static void
setup_fixture(void)
{
	char path[128];
	size_t len;
	char *text;

	default_limits();
	make_tmpdir();
	char err[256] = "";

	snprintf(path, sizeof(path), "%s/server.db", tmpdir);
	copy_file(FIXTURE_DB, path);
	open_db();
	/* as every start does: the reference's tables stay as they are,
	 * this server's own indexes and tables are added */
	ck_assert_msg(vs_db_migrate(&db, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
	text = read_file(FIXTURE_MANIFEST, &len);
	manifest = cJSON_ParseWithLength(text, len);
	ck_assert_ptr_nonnull(manifest);
	free(text);
}

static void
teardown_fixture(void)
{
	cJSON_Delete(manifest);
	manifest = NULL;
	teardown();
}

/* The scope of a fixture device, as device authentication derives it. */
static struct vs_scope
fixture_scope(const char *device_name, char **user, char **vault)
{
	const cJSON *dev = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(manifest, "devices"),
		device_name);
	const char *id = jstr(dev, "device_id");
	struct vs_scope sc;

	*user = q_text("SELECT user_id FROM server_devices WHERE id = ?", id);
	*vault = q_text("SELECT COALESCE(NULLIF(vault_id, ''),"
			" 'legacy:' || user_id) FROM server_devices"
			" WHERE id = ?", id);
	ck_assert_ptr_nonnull(*user);
	ck_assert_ptr_nonnull(*vault);
	sc.user_id = *user;
	sc.vault_id = *vault;
	sc.device_id = id;
	return sc;
}

START_TEST(test_fixture_full_pull)
{
	const cJSON *expected = cJSON_GetObjectItemCaseSensitive(manifest,
		"expected_pull");
	const cJSON *dev;
	int devices = 0;

	ck_assert_ptr_nonnull(expected);
	cJSON_ArrayForEach(dev, expected) {
		const cJSON *want_ops = cJSON_GetObjectItem(dev, "ops");
		long long want_max = jint(dev, "server_sequence");
		char *user, *vault;
		struct vs_scope sc = fixture_scope(dev->string, &user, &vault);
		long long since = 0;
		int idx = 0;
		bool more = true;

		while (more) {
			struct reply r = pull(&sc, since, 0);
			const cJSON *ops = cJSON_GetObjectItem(r.j, "ops"), *o;

			more = cJSON_IsTrue(cJSON_GetObjectItem(r.j,
								"has_more"));
			since = check_page(&r, since, want_max,
					   cJSON_GetArraySize(ops), more);
			cJSON_ArrayForEach(o, ops) {
				const cJSON *w = cJSON_GetArrayItem(want_ops,
								    idx++);
				const cJSON *f;

				ck_assert_msg(w != NULL, "%s: extra op %s",
					      dev->string, jstr(o, "op_id"));
				ck_assert_int_eq(cJSON_GetArraySize(o),
						 cJSON_GetArraySize(w));
				cJSON_ArrayForEach(f, w) {
					const cJSON *g = cJSON_GetObjectItem
						(o, f->string);

					ck_assert_msg(cJSON_Compare(f, g, 1),
						"%s op %d field %s differs",
						dev->string, idx, f->string);
				}
			}
			reply_free(&r);
		}
		ck_assert_msg(idx == cJSON_GetArraySize(want_ops),
			      "%s: %d ops, want %d", dev->string, idx,
			      cJSON_GetArraySize(want_ops));
		free(user);
		free(vault);
		devices++;
	}
	ck_assert_int_eq(devices, 4);
}
END_TEST

START_TEST(test_fixture_replay_and_conflicts)
{
	const cJSON *idem = cJSON_GetObjectItem(manifest, "idempotency_key");
	const cJSON *want = cJSON_GetObjectItem(manifest,
						"conflict_push_response");
	char *user, *vault, *stored;
	struct vs_scope sc = fixture_scope(jstr(idem, "device"), &user,
					   &vault);
	struct snapshot before = snap();
	struct reply r;
	cJSON *o;

	/* the reference's stored answer (with "conflicts":null) */
	stored = q_text("SELECT response_json FROM server_idempotency_keys"
			" WHERE idempotency_key = ?", jstr(idem, "key"));
	ck_assert_ptr_nonnull(strstr(stored, "\"conflicts\":null"));
	r = push_ops_k(&sc, jstr(idem, "key"), note_op("fresh-op"));
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.raw, stored);
	reply_free(&r);
	assert_unchanged(before);
	free(stored);
	free(user);
	free(vault);

	/* Re-sending the reference's conflicting push from alice-laptop:
	 * same-scope duplicate, same advisory conflicts as the reference. */
	sc = fixture_scope("alice-laptop", &user, &vault);
	o = op_new("61b366c6-26fb-4259-bb0e-aabd4f864bd8", "file",
		   "Docs/f0/note1.md", "update", "", 1);
	r = push_ops(&sc, o);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(cJSON_Compare(r.j, want, 1), "got %s", r.raw);
	reply_free(&r);
	assert_unchanged(before);
	free(user);
	free(vault);

	/* a new push continues the reference's counter */
	sc = fixture_scope("bob-legacy", &user, &vault);
	r = push_ops(&sc, note_op("after-fixture"));
	assert_accepted(&r, ACC("after-fixture"));
	reply_free(&r);
	ck_assert_int_eq(op_seq("after-fixture"), before.counter + 1);
	free(user);
	free(vault);
}
END_TEST


/* ------------------------------------------------------------------ */
/* Commit combining across processes (combine.h)                      */
/* ------------------------------------------------------------------ */

/* What a pushing child process reports through its pipe. */
struct child_report {
	int status;
	uint64_t led, ran_for_others, answered_by_others;
	size_t len;
	char body[2048];
};

static int die_code;

/* A leader that dies with other workers' requests in its batch, after
 * running them and before the commit. */
static void
die_if_others(int n_others)
{
	if (n_others > 0)
		_exit(die_code);
}

static const char *
one_op_body(char *buf, size_t size, const char *op_id)
{
	snprintf(buf, size,
		 "{\"ops\":[{\"op_id\":\"%s\",\"entity_type\":\"note\","
		 "\"entity_id\":\"Notes/%s.md\",\"op_type\":\"create\","
		 "\"payload_json\":\"{}\",\"client_sequence\":1,"
		 "\"last_seen_server_seq\":0,"
		 "\"created_at\":\"2026-01-01T00:00:00Z\"}]}", op_id, op_id);
	return buf;
}

/* Forks a process that opens its own connection, pushes body (or one
 * op named op_id when body is NULL) and writes a child_report into fd.
 * Exit codes: 0 reported, 2-4 failed before that, die_code when the
 * hook ended it. */
static pid_t
push_child_body(const struct vs_scope *sc, const char *op_id,
		const char *given, bool die, int fd)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct vs_db cdb;
		struct vs_response res;
		struct child_report rep;
		char err[256], body[512];

		if (vs_db_open(&cdb, tmpdir, err, sizeof(err)) != VS_DB_OK)
			_exit(2);
		if (cdb.combine.slot < 0)
			_exit(3);
		if (die)
			vs_combine_test_hook = die_if_others;
		if (given != NULL)
			snprintf(body, sizeof(body), "%s", given);
		else
			one_op_body(body, sizeof(body), op_id);
		vs_res_init(&res);
		vs_sync_push(&cdb, &lim, sc, body, strlen(body), &res);
		memset(&rep, 0, sizeof(rep));
		rep.status = res.status;
		rep.led = cdb.combine.led;
		rep.ran_for_others = cdb.combine.ran_for_others;
		rep.answered_by_others = cdb.combine.answered_by_others;
		rep.len = res.body.len < sizeof(rep.body) ? res.body.len :
			  sizeof(rep.body) - 1;
		memcpy(rep.body, res.body.data ? res.body.data : "", rep.len);
		if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			_exit(4);
		_exit(0);
	}
	return pid;
}

static pid_t
push_child(const struct vs_scope *sc, const char *op_id, bool die, int fd)
{
	return push_child_body(sc, op_id, NULL, die, fd);
}

static void
read_report(int fd, struct child_report *rep)
{
	ck_assert_int_eq(read(fd, rep, sizeof(*rep)), (ssize_t)sizeof(*rep));
	ck_assert_uint_lt(rep->len, sizeof(rep->body));
	rep->body[rep->len] = '\0';
}

/* Waits until n requests sit in the table waiting for a leader. */
static void
await_pending(int n)
{
	for (int i = 0; i < 5000 && vs_combine_pending(&db.combine) < n; i++)
		(void)usleep(1000);
	ck_assert_int_eq(vs_combine_pending(&db.combine), n);
}

static int
exit_code(pid_t pid)
{
	int st = 0;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static enum vs_combine_step
never_run(void *arg, struct vs_db *d, const struct vs_combine_item *it,
	  struct vs_response *res, int64_t *top)
{
	(void)arg; (void)d; (void)it; (void)res; (void)top;
	_exit(5);
}

/* A process forked after its parent opened the table must not submit
 * through the parent's slot (its answer would reach the parent): it
 * commits alone. The process's pid is cached, so this checks that the
 * cache follows fork. */
START_TEST(test_combine_slot_is_not_inherited_by_fork)
{
	pid_t pid;

	ck_assert_int_ge(db.combine.slot, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct vs_combine_item it = {
			.user = U_BOB, .vault = "v", .device = "d",
			.body = "{}", .len = 2,
		};
		struct vs_response res;
		int64_t top;

		vs_res_init(&res);
		_exit(vs_combine_submit(&db.combine, &db, &it, never_run, NULL,
					&res, &top) == VS_COMBINE_SELF ? 0 : 6);
	}
	ck_assert_int_eq(exit_code(pid), 0);
	ck_assert_int_eq(vs_combine_pending(&db.combine), 0);
}
END_TEST

/* Two pushing children made to wait on the writer queue together: the
 * parent holds the queue through a connection of its own until both
 * requests sit in the table, then lets go. */
struct pair_run {
	struct vs_db hold;
	int fd[2][2];
	pid_t pid[2];
};

static void
pair_hold(struct pair_run *p)
{
	char err[256];

	ck_assert_int_eq(vs_db_open(&p->hold, tmpdir, err, sizeof(err)),
			 VS_DB_OK);
	ck_assert(vs_wlock_acquire(&p->hold.wlock, 1000));
	ck_assert_int_eq(pipe(p->fd[0]), 0);
	ck_assert_int_eq(pipe(p->fd[1]), 0);
}

static void
pair_release(struct pair_run *p)
{
	await_pending(2);
	vs_wlock_release(&p->hold.wlock);
}

/* Both children's reports, once both exited normally. */
static void
pair_collect(struct pair_run *p, struct child_report *a,
	     struct child_report *b)
{
	read_report(p->fd[0][0], a);
	read_report(p->fd[1][0], b);
	ck_assert_int_eq(exit_code(p->pid[0]), 0);
	ck_assert_int_eq(exit_code(p->pid[1]), 0);
}

/* Two pushes waiting on the writer queue are committed in one batch by
 * whichever gets the queue first; each gets its own answer, exactly as
 * if it had committed alone, and both ops are stored. */
START_TEST(test_combine_two_pushes_one_commit)
{
	struct pair_run p;
	struct child_report a, b;

	pair_hold(&p);
	p.pid[0] = push_child(&SC_A1, "comb-a", false, p.fd[0][1]);
	p.pid[1] = push_child(&SC_B, "comb-b", false, p.fd[1][1]);
	pair_release(&p);
	pair_collect(&p, &a, &b);

	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(b.status, 200);
	ck_assert_str_eq(a.body, "{\"accepted\":[\"comb-a\"],\"count\":1,\"conflicts\":[]}\n");
	ck_assert_str_eq(b.body, "{\"accepted\":[\"comb-b\"],\"count\":1,\"conflicts\":[]}\n");
	/* One batch: one led it with the other's push in it. */
	ck_assert_uint_eq(a.led + b.led, 1);
	ck_assert_uint_eq(a.ran_for_others + b.ran_for_others, 1);
	ck_assert_uint_eq(a.answered_by_others + b.answered_by_others, 1);
	ck_assert_int_eq(q_int("SELECT COUNT(DISTINCT server_sequence) FROM"
			       " server_ops WHERE op_id IN ('comb-a', 'comb-b')",
			       NULL), 2);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " op_id = 'comb-b' AND user_id = '" U_BOB "'"
			       " AND device_id = 'dev_b1'", NULL), 1);
	ck_assert_int_eq(vs_combine_pending(&db.combine), 0);
	/* Both were answered only after an fsync that covered the batch's
	 * commit, the last one made: one of theirs, or one they waited
	 * for (writelock.h). */
	ck_assert_uint_gt(vs_wlock_commit_gen(&db.wlock), 0);
	ck_assert_uint_ge(vs_wlock_synced_gen(&db.wlock),
			  vs_wlock_commit_gen(&db.wlock));
	vs_db_close(&p.hold);
}
END_TEST

/* In one batch, a push refused inside the transaction (its third
 * op_id is stored in another scope, after its first two were written:
 * whichever push runs first, the refused one allocates the highest
 * sequences)
 * leaves nothing behind and does not disturb the other push, which is
 * stored; the durable watermark never names the refused push's
 * rolled-back sequence, which the next commit reuses. */
START_TEST(test_combine_refusal_stays_in_its_savepoint)
{
	struct pair_run p;
	struct child_report a, b;
	struct reply r;

	r = push_ops(&SC_B, note_op("taken-id"));
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	pair_hold(&p);
	p.pid[0] = push_child_body(&SC_A1, NULL,
		"{\"ops\":[{\"op_id\":\"first-id\",\"entity_type\":\"note\","
		"\"entity_id\":\"first\",\"op_type\":\"create\","
		"\"payload_json\":\"{}\",\"last_seen_server_seq\":0},"
		"{\"op_id\":\"second-id\",\"entity_type\":\"note\","
		"\"entity_id\":\"second\",\"op_type\":\"create\","
		"\"payload_json\":\"{}\",\"last_seen_server_seq\":0},"
		"{\"op_id\":\"taken-id\",\"entity_type\":\"note\","
		"\"entity_id\":\"taken\",\"op_type\":\"create\","
		"\"payload_json\":\"{}\",\"last_seen_server_seq\":0}]}",
		false, p.fd[0][1]);
	p.pid[1] = push_child(&SC_A2, "fine-id", false, p.fd[1][1]);
	pair_release(&p);
	pair_collect(&p, &a, &b);

	ck_assert_int_eq(a.status, 409);
	ck_assert_msg(strstr(a.body, "\"code\":\"op_id_conflict\"") != NULL,
		      "%s", a.body);
	ck_assert_int_eq(b.status, 200);
	ck_assert_str_eq(b.body, "{\"accepted\":[\"fine-id\"],\"count\":1,\"conflicts\":[]}\n");
	ck_assert_uint_eq(a.ran_for_others + b.ran_for_others, 1);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " op_id = 'taken-id'", NULL), 1);	/* Bob's */
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " op_id = 'fine-id' AND device_id = 'dev_a2'",
			       NULL), 1);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE"
			       " op_id IN ('first-id', 'second-id')", NULL), 0);
	ck_assert_int_eq(count_of("server_ops"), 2);
	ck_assert_int_eq(count_of("server_revisions"), 2);
	ck_assert_int_le(vs_wlock_durable_seq(&db.wlock),
			 q_int("SELECT MAX(server_sequence) FROM server_ops",
			       NULL));
	vs_db_close(&p.hold);
}
END_TEST

/* A leader that dies after running another worker's push, before the
 * commit: nothing of its batch is stored, and the other worker, whose
 * slot it had taken, runs its own push and is answered. */
START_TEST(test_combine_leader_dies)
{
	struct pair_run p;
	struct child_report rep;
	struct reply r;
	char err[256];
	int c1, c2;
	bool a_survived;

	die_code = 7;
	pair_hold(&p);
	p.pid[0] = push_child(&SC_A1, "die-a", true, p.fd[0][1]);
	p.pid[1] = push_child(&SC_A2, "die-b", true, p.fd[1][1]);
	pair_release(&p);
	c1 = exit_code(p.pid[0]);
	c2 = exit_code(p.pid[1]);
	/* Exactly one led a batch holding the other's push, and died. */
	ck_assert_msg((c1 == 7 && c2 == 0) || (c1 == 0 && c2 == 7),
		      "exit codes %d %d", c1, c2);
	a_survived = c1 == 0;
	read_report(a_survived ? p.fd[0][0] : p.fd[1][0], &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_uint_eq(rep.answered_by_others, 0);
	ck_assert_uint_eq(rep.led, 1);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops", NULL), 1);
	ck_assert_int_eq(q_int("SELECT COUNT(*) FROM server_ops WHERE op_id = ?1",
			       a_survived ? "die-a" : "die-b"), 1);
	ck_assert_int_eq(count_of("server_revisions"), 1);
	/* The queue the dead leader held is usable again. */
	r = push_ops(&SC_A1, note_op("after-death"));
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	ck_assert_int_eq(vs_combine_pending(&db.combine), 0);
	vs_db_close(&p.hold);

	/* Neither dead process keeps its slot: the leader left its own
	 * taken, under its own pid. Every slot but ours can be claimed. */
	{
		static struct vs_db others[VS_COMBINE_SLOTS - 1];

		for (int i = 0; i < VS_COMBINE_SLOTS - 1; i++) {
			ck_assert_int_eq(vs_db_open(&others[i], tmpdir, err,
						    sizeof(err)), VS_DB_OK);
			ck_assert_msg(others[i].combine.slot >= 0,
				      "no slot for connection %d", i);
		}
		for (int i = 0; i < VS_COMBINE_SLOTS - 1; i++)
			vs_db_close(&others[i]);
	}
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
sync_suite(void)
{
	Suite *s = suite_create("sync");
	TCase *tc = tcase_create("push");
	TCase *tp = tcase_create("pull");
	TCase *tl = tcase_create("legacy");
	TCase *tf = tcase_create("fixture");
	TCase *tm = tcase_create("combine");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_push_invalid_json);
	tcase_add_test(tc, test_push_trailing_json);
	tcase_add_test(tc, test_push_empty_forms);
	tcase_add_test(tc, test_push_null_fields);
	tcase_add_test(tc, test_push_field_checks);
	tcase_add_test(tc, test_push_payload_checks);
	tcase_add_test(tc, test_push_top_level_checks);
	tcase_add_test(tc, test_push_too_many_operations);
	tcase_add_test(tc, test_push_check_order);
	tcase_add_test(tc, test_push_checks_without_db_and_busy);
	tcase_add_test(tc, test_push_stores_ops);
	tcase_add_test(tc, test_sequences_global_and_never_reused);
	tcase_add_test(tc, test_d5_same_scope_duplicates);
	tcase_add_test(tc, test_d5_other_scope_conflict);
	tcase_add_test(tc, test_conflicts);
	tcase_add_test(tc, test_conflict_query_uses_entity_index);
	tcase_add_test(tc, test_conflict_scan_reads_only_recent_ops);
	tcase_add_test(tc, test_tombstones);
	tcase_add_test(tc, test_idempotency_replay);
	tcase_add_test(tc, test_idempotency_reference_row);
	tcase_add_test(tc, test_idempotency_after_blob_checks);
	tcase_add_test(tc, test_blob_references);
	tcase_add_test(tc, test_blob_checks_before_dedup);
	tcase_add_test(tc, test_all_or_nothing);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tp, setup, teardown);
	tcase_set_timeout(tp, 60);
	tcase_add_test(tp, test_pull_decode_errors);
	tcase_add_test(tp, test_pull_queries_use_scope_index);
	tcase_add_test(tp, test_pull_paging);
	tcase_add_test(tp, test_pull_hides_unsynced_ops);
	tcase_add_test(tp, test_replay_publishes);
	tcase_add_test(tp, test_deferred_push_publishes_at_settle);
	tcase_add_test(tp, test_pull_cursor_ahead_and_advance);
	tcase_add_test(tp, test_pull_page_limit_config);
	tcase_add_test(tp, test_pull_null_sequence_invisible);
	tcase_add_test(tp, test_pull_verbatim);
	tcase_add_test(tp, test_d40_large_text_payload);
	tcase_add_test(tp, test_pull_snapshot_with_concurrent_pushes);
	suite_add_tcase(s, tp);

	tcase_add_checked_fixture(tm, setup, teardown);
	tcase_set_timeout(tm, 60);
	tcase_add_test(tm, test_combine_two_pushes_one_commit);
	tcase_add_test(tm, test_combine_refusal_stays_in_its_savepoint);
	tcase_add_test(tm, test_combine_leader_dies);
	tcase_add_test(tm, test_combine_slot_is_not_inherited_by_fork);
	suite_add_tcase(s, tm);

	tcase_add_checked_fixture(tl, setup_legacy, teardown);
	tcase_add_test(tl, test_pull_null_columns);
	suite_add_tcase(s, tl);

	tcase_add_checked_fixture(tf, setup_fixture, teardown_fixture);
	tcase_set_timeout(tf, 60);
	tcase_add_test(tf, test_fixture_full_pull);
	tcase_add_test(tf, test_fixture_replay_and_conflicts);
	suite_add_tcase(s, tf);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sync_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
