/*
 * sync.c - the push/pull engine (SYNC.md 2, 3 and 6).
 *
 * Owns: decoding and checking push and pull bodies in the contract's
 * order, every statement on server_ops, server_revisions,
 * server_tombstones and server_idempotency_keys, the blob-reference
 * lookups of file ops in server_blob_refs, and the JSON answers of both
 * routes.
 *
 * Must never: take the scope from the request body; allocate a sequence
 * any other way than by inserting into server_revisions inside the
 * BEGIN IMMEDIATE transaction that stores the op (S1, S2); scan a whole
 * vault to find conflicts; answer a push as a success before its
 * transaction committed; or store part of a push (all or nothing).
 */
#include "sync.h"
#include "json.h"
#include "log.h"
#include "util.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* SQL                                                                */
/* ------------------------------------------------------------------ */

/*
 * Conflict scan: an index lookup on the entity, never a walk of the
 * vault. INDEXED BY pins the plan: left alone, SQLite picks
 * idx_server_ops_scope_sequence without statistics (a range over the
 * whole vault past L) and, with ANALYZE statistics, may walk
 * idx_server_ops_sequence to avoid sorting. The index is part of the
 * schema (DATA.md 4.3) and recreated at every start, so it exists.
 *
 * The entity index has no scope: a path every user has (README.md, a
 * daily note) holds every tenant's ops of it, and a scan over all of
 * them, inside the write lock, took 3 ms at 20,000 such ops. ?7 bounds
 * it to the index's tail: the rowid of the first op numbered after L
 * (SQL_FIRST_AFTER). Ops get increasing rowids and increasing sequences
 * in the same transaction, so every op numbered after L has a rowid at
 * least that, and the scan reads only what was pushed since L, by
 * anyone, on that path. An extra index with the scope in it would make
 * the scan exact but cost every push another index entry (-13 % for
 * 100-op batches, measured).
 */
const char vs_sync_sql_conflicts[] =
	"SELECT op_id, device_id, op_type, server_sequence"
	" FROM server_ops INDEXED BY idx_server_ops_entity"
	" WHERE entity_type = ?1 AND entity_id = ?2 AND rowid >= ?7"
	" AND user_id = ?3 AND vault_id = ?4 AND device_id <> ?5"
	" AND server_sequence > ?6 AND op_type <> 'delete'"
	" ORDER BY server_sequence";

/* The first op numbered after ?1 (idx_server_ops_sequence). */
static const char SQL_FIRST_AFTER[] =
	"SELECT rowid FROM server_ops WHERE server_sequence > ?1"
	" ORDER BY server_sequence LIMIT 1";

/* The scope maximum as one probe into the scope index, at the durable
 * watermark (?3, see writelock.h): ops above it are committed but not
 * yet fsynced, and pull never shows them. */
const char vs_sync_sql_pull_max[] =
	"SELECT server_sequence FROM server_ops"
	" WHERE user_id = ?1 AND vault_id = ?2"
	" AND server_sequence IS NOT NULL AND server_sequence <= ?3"
	" ORDER BY server_sequence DESC LIMIT 1";

const char vs_sync_sql_pull_page[] =
	"SELECT op_id, server_sequence, device_id, entity_type, entity_id,"
	" op_type, payload_json, created_at FROM server_ops"
	" WHERE user_id = ?1 AND vault_id = ?2"
	" AND server_sequence IS NOT NULL AND server_sequence > ?3"
	" AND server_sequence <= ?5"
	" ORDER BY server_sequence LIMIT ?4";

/* The highest sequence of every scope (idx_server_ops_sequence). */
static const char SQL_TOP_SEQUENCE[] =
	"SELECT max(server_sequence) FROM server_ops";

/* The highest sequence ever issued: the revisions counter, which
 * AUTOINCREMENT never lets go back, or a stored op's if a migrated
 * database has one above it. */
static const char SQL_ISSUED[] =
	"SELECT max(coalesce((SELECT seq FROM sqlite_sequence"
	" WHERE name = 'server_revisions'), 0),"
	" coalesce((SELECT max(server_sequence) FROM server_ops), 0))";
static const char SQL_COUNTER_SET[] =
	"UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'server_revisions'";
static const char SQL_COUNTER_ADD[] =
	"INSERT INTO sqlite_sequence (name, seq) VALUES ('server_revisions', ?1)";

static const char SQL_BLOB_REF[] =
	"SELECT size FROM server_blob_refs"
	" WHERE user_id = ?1 AND vault_id = ?2 AND sha256 = ?3";

static const char SQL_IDEM_GET[] =
	"SELECT response_json FROM server_idempotency_keys"
	" WHERE user_id = ?1 AND vault_id = ?2 AND idempotency_key = ?3";

static const char SQL_IDEM_PUT[] =
	"INSERT INTO server_idempotency_keys"
	" (user_id, vault_id, idempotency_key, response_json, created_at)"
	" VALUES (?1, ?2, ?3, ?4, ?5)";

static const char SQL_OP_OWNER[] =
	"SELECT user_id, vault_id FROM server_ops WHERE op_id = ?1";

static const char SQL_REVISION[] =
	"INSERT INTO server_revisions (op_id, device_id) VALUES (?1, ?2)";

static const char SQL_OP_INSERT[] =
	"INSERT INTO server_ops (op_id, server_sequence, user_id, vault_id,"
	" device_id, entity_type, entity_id, op_type, payload_json,"
	" idempotency_key, client_sequence, last_seen_server_seq, created_at,"
	" pushed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
	" ?12, ?13, ?14)";

static const char SQL_TOMBSTONE[] =
	"INSERT OR REPLACE INTO server_tombstones"
	" (user_id, vault_id, entity_type, entity_id, op_id, deleted_at)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

/* A byte string that need not be NUL-terminated where it is used. */
struct str {
	const char *s;
	size_t n;
};

#define LIT(b, s) vs_buf_append((b), (s), sizeof(s) - 1)

/* A client-visible error: fixed texts only, never request input. */
struct sync_err {
	int status;
	const char *code;
	const char *msg;
};

static const struct sync_err E_INVALID_JSON =
	{ 400, "invalid_json", "invalid JSON request" };
static const struct sync_err E_TRAILING_JSON =
	{ 400, "trailing_json", "request must contain one JSON value" };
static const struct sync_err E_TOO_MANY =
	{ 413, "too_many_operations", "too many operations in one push" };
static const struct sync_err E_DEVICE_ID_LONG =
	{ 400, "field_too_long", "device_id is too long" };
static const struct sync_err E_IDEM_KEY_LONG =
	{ 400, "field_too_long", "idempotency_key is too long" };
static const struct sync_err E_PAYLOAD_LARGE =
	{ 413, "payload_too_large", "operation payload is too large" };
static const struct sync_err E_INVALID_PAYLOAD =
	{ 400, "invalid_payload", "operation payload_json must be valid JSON" };
static const struct sync_err E_NEGATIVE_SEQ =
	{ 400, "invalid_operation", "operation sequences must be non-negative" };
static const struct sync_err E_INLINE_BINARY =
	{ 400, "inline_binary_forbidden",
	  "binary file payload must reference a blob" };
static const struct sync_err E_BAD_BLOB_REF =
	{ 400, "invalid_blob_reference", "invalid blob reference" };
static const struct sync_err E_BLOB_NOT_OWNED =
	{ 400, "blob_not_owned", "blob must be uploaded before its operation" };
static const struct sync_err E_BLOB_SIZE =
	{ 400, "invalid_blob_reference",
	  "blob size does not match uploaded content" };
static const struct sync_err E_OP_ID_CONFLICT =
	{ 409, "op_id_conflict", "op_id already used in another scope" };
static const struct sync_err E_CURSOR_AHEAD =
	{ 409, "cursor_ahead",
	  "since_sequence is beyond every sequence this server has issued" };
static const struct sync_err E_PULL_NEGATIVE =
	{ 400, "invalid_request",
	  "sequence and page_limit must be non-negative" };

static void
answer_err(struct vs_response *res, const struct sync_err *e)
{
	vs_res_error(res, e->status, e->code, e->msg);
}

/* Maps a JSON decoding failure to its contract error. */
static const struct sync_err *
json_err(enum vs_json_rc rc)
{
	return rc == VS_JSON_TRAILING ? &E_TRAILING_JSON : &E_INVALID_JSON;
}

/* Answers a failed SQLite call: 503 when the lock could not be had
 * (the client retries), 500 for anything else (logged by db.c). */
static void
answer_db_failure(struct vs_db *db, struct vs_response *res, int rc,
		  const char *ctx)
{
	if (vs_db_status_of(db, rc, ctx) == VS_DB_BUSY) {
		vs_res_busy(res);
		return;
	}
	if (rc == SQLITE_ROW || rc == SQLITE_DONE || rc == SQLITE_OK)
		vs_log_error("sync: %s: unexpected result %d", ctx, rc);
	vs_res_internal(res);
}

static void
answer_db_status(struct vs_response *res, enum vs_db_status s)
{
	if (s == VS_DB_BUSY)
		vs_res_busy(res);
	else
		vs_res_internal(res);
}

/* Decimal text of v; out holds at least 21 bytes. Returns the length. */
static size_t
fmt_i64(char *out, int64_t v)
{
	char tmp[24];
	size_t n = 0, len;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		tmp[n++] = '-';
	len = n;
	for (size_t i = 0; i < len; i++)
		out[i] = tmp[len - 1 - i];
	return len;
}

static bool
put_i64(struct vs_buf *b, int64_t v)
{
	char num[24];

	return vs_buf_append(b, num, fmt_i64(num, v));
}

/*
 * Length of the white-space rune at s (n bytes left), 0 if none. The
 * set is Go's unicode.IsSpace, which the reference's strings.TrimSpace
 * uses to decide that a field is blank.
 */
static size_t
space_rune_len(const unsigned char *s, size_t n)
{
	if (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r'))
		return 1;
	if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
		return 2;		/* U+0085, U+00A0 */
	if (n < 3)
		return 0;
	if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80)
		return 3;		/* U+1680 */
	if (s[0] == 0xe2 && s[1] == 0x80 &&
	    ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 ||
	     s[2] == 0xa9 || s[2] == 0xaf))
		return 3;		/* U+2000-200A, U+2028, U+2029, U+202F */
	if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f)
		return 3;		/* U+205F */
	if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)
		return 3;		/* U+3000 */
	return 0;
}

static bool
is_blank(struct str v)
{
	const unsigned char *s = (const unsigned char *)v.s;
	size_t i = 0;

	while (i < v.n) {
		size_t k = space_rune_len(s + i, v.n - i);

		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

static bool
str_eq(struct str a, struct str b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.s, b.s, a.n) == 0);
}

static struct str
str_of(const char *s)
{
	struct str v = { s != NULL ? s : "", s != NULL ? strlen(s) : 0 };

	return v;
}

/* Sequential parameter binding with a sticky error, so a statement's
 * bindings read as a list and are checked once. */
struct binder {
	sqlite3_stmt *st;
	int idx;
	int rc;
};

static struct binder
binder_of(sqlite3_stmt *st)
{
	struct binder b = { st, 0, SQLITE_OK };

	return b;
}

static void
bind_str(struct binder *b, struct str v)
{
	b->idx++;
	if (b->rc == SQLITE_OK)
		/* STATIC: every value outlives the step that uses it. */
		b->rc = sqlite3_bind_text64(b->st, b->idx, v.s, v.n,
					    SQLITE_STATIC, SQLITE_UTF8);
}

static void
bind_i64(struct binder *b, int64_t v)
{
	b->idx++;
	if (b->rc == SQLITE_OK)
		b->rc = sqlite3_bind_int64(b->st, b->idx, v);
}

/*
 * A text column; NULL (possible in migrated databases) reads as "".
 * Returns false only when SQLite could not produce the text (OOM).
 */
static bool
col_str(sqlite3_stmt *st, int i, struct str *out)
{
	const unsigned char *t;

	out->s = "";
	out->n = 0;
	t = sqlite3_column_text(st, i);
	if (t == NULL)	/* SQL NULL, or no memory to convert the value */
		return sqlite3_errcode(sqlite3_db_handle(st)) != SQLITE_NOMEM;
	out->s = (const char *)t;
	out->n = (size_t)sqlite3_column_bytes(st, i);
	return true;
}

/* ------------------------------------------------------------------ */
/* Push: decoded request                                              */
/* ------------------------------------------------------------------ */

/* The four identifying strings of an op, in the order they are checked. */
enum { F_OP_ID, F_ENTITY_TYPE, F_ENTITY_ID, F_OP_TYPE, N_FIELDS };

static const struct op_field {
	const char *name;
	size_t max;
	struct sync_err blank;
	struct sync_err too_long;
} op_fields[N_FIELDS] = {
	{ "op_id", 128,
	  { 400, "invalid_operation", "op_id is required" },
	  { 400, "field_too_long", "op_id is too long" } },
	{ "entity_type", 64,
	  { 400, "invalid_operation", "entity_type is required" },
	  { 400, "field_too_long", "entity_type is too long" } },
	{ "entity_id", 4096,
	  { 400, "invalid_operation", "entity_id is required" },
	  { 400, "field_too_long", "entity_id is too long" } },
	{ "op_type", 64,
	  { 400, "invalid_operation", "op_type is required" },
	  { 400, "field_too_long", "op_type is too long" } },
};

#define DEVICE_ID_MAX 128
#define IDEM_KEY_MAX 128

struct push_op {
	struct str f[N_FIELDS];
	struct str payload;
	struct str created_at;
	int64_t client_seq;
	int64_t last_seen;
	/* The parsed payload of a file op, kept from the validity check
	 * for the blob-reference check (NULL when there is none). */
	cJSON *file_payload;
};

struct push_req {
	cJSON *root;
	struct str device_id;
	struct str idem_key;
	struct push_op *ops;
	size_t n_ops;
};

static void
push_req_free(struct push_req *r)
{
	for (size_t i = 0; r->ops != NULL && i < r->n_ops; i++)
		cJSON_Delete(r->ops[i].file_payload);
	free(r->ops);
	cJSON_Delete(r->root);
}

/* A string field: absent or null = "", another type = invalid_json. */
static bool
get_str(const cJSON *obj, const char *name, struct str *out)
{
	const char *s;

	if (!vs_json_str(obj, name, &s))
		return false;
	*out = str_of(s);
	return true;
}

/*
 * One element of ops. A null element reads as an empty op (as the
 * reference's decoder does), so it fails the "op_id is required" check
 * rather than the JSON decoding.
 */
static bool
decode_op(const cJSON *node, struct push_op *op)
{
	if (!vs_json_is_object_or_null(node))
		return false;
	for (int i = 0; i < N_FIELDS; i++)
		if (!get_str(node, op_fields[i].name, &op->f[i]))
			return false;
	return get_str(node, "payload_json", &op->payload) &&
	       get_str(node, "created_at", &op->created_at) &&
	       vs_json_int(node, "client_sequence", &op->client_seq) &&
	       vs_json_int(node, "last_seen_server_seq", &op->last_seen);
}

/* API.md 1.4 for a push body. NULL = decoded; on error r may be
 * partly filled and is freed by the caller either way. */
static const struct sync_err *
decode_push(const char *body, size_t len, struct push_req *r)
{
	enum vs_json_rc rc = vs_json_parse(body, len, &r->root);
	const cJSON *ops;
	size_t i = 0;
	const cJSON *node;

	if (rc != VS_JSON_OK)
		return json_err(rc);
	if (!vs_json_is_object_or_null(r->root) ||
	    !get_str(r->root, "device_id", &r->device_id) ||
	    !get_str(r->root, "idempotency_key", &r->idem_key))
		return &E_INVALID_JSON;
	ops = cJSON_IsObject(r->root) ?
		cJSON_GetObjectItem(r->root, "ops") : NULL;
	if (ops == NULL || cJSON_IsNull(ops))
		return NULL;
	if (!cJSON_IsArray(ops))
		return &E_INVALID_JSON;
	r->n_ops = (size_t)cJSON_GetArraySize(ops);
	if (r->n_ops == 0)
		return NULL;
	r->ops = calloc(r->n_ops, sizeof(*r->ops));
	if (r->ops == NULL)
		return NULL;	/* caller sees ops == NULL with n_ops > 0 */
	cJSON_ArrayForEach(node, ops) {
		if (!decode_op(node, &r->ops[i++]))
			return &E_INVALID_JSON;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Push: request checks (SYNC.md 2.2 step 4, no database access)      */
/* ------------------------------------------------------------------ */

static bool
is_file_op(const struct push_op *op)
{
	return op->f[F_ENTITY_TYPE].n == 4 &&
	       memcmp(op->f[F_ENTITY_TYPE].s, "file", 4) == 0;
}

/* The payload must be one JSON value. A file op keeps its parse tree
 * for section 6 so the payload is parsed only once. */
static const struct sync_err *
check_payload(const struct vs_limits *lim, struct push_op *op)
{
	if ((int64_t)op->payload.n > lim->max_payload_json)
		return &E_PAYLOAD_LARGE;
	if (op->payload.n == 0)
		return NULL;
	if (!vs_json_valid(op->payload.s, op->payload.n))
		return &E_INVALID_PAYLOAD;
	if (!is_file_op(op))
		return NULL;
	/* A file op's tree serves the blob check (section 6). Past cJSON's
	 * 1000 levels of nesting there is none: refused, although the
	 * reference allows 10000 (a file op's payload is flat). */
	op->file_payload = vs_json_parse_valid(op->payload.s, op->payload.n);
	return op->file_payload != NULL ? NULL : &E_INVALID_PAYLOAD;
}

/* All checks of one op, in the contract's order. */
static const struct sync_err *
check_op(const struct vs_limits *lim, struct push_op *op)
{
	const struct sync_err *e;

	for (int i = 0; i < N_FIELDS; i++) {
		if (is_blank(op->f[i]))
			return &op_fields[i].blank;
		if (op->f[i].n > op_fields[i].max)
			return &op_fields[i].too_long;
	}
	if ((e = check_payload(lim, op)) != NULL)
		return e;
	if (op->client_seq < 0 || op->last_seen < 0)
		return &E_NEGATIVE_SEQ;
	return NULL;
}

static const struct sync_err *
check_push(const struct vs_limits *lim, struct push_req *r)
{
	const struct sync_err *e;

	if ((int64_t)r->n_ops > lim->max_push_operations)
		return &E_TOO_MANY;
	if (r->device_id.n > DEVICE_ID_MAX)
		return &E_DEVICE_ID_LONG;
	if (r->idem_key.n > IDEM_KEY_MAX)
		return &E_IDEM_KEY_LONG;
	for (size_t i = 0; i < r->n_ops; i++)
		if ((e = check_op(lim, &r->ops[i])) != NULL)
			return e;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Push: the transaction                                              */
/* ------------------------------------------------------------------ */

struct push_ctx {
	struct vs_db *db;
	struct vs_response *res;
	struct push_req *req;
	struct str user, vault, device;
	char now[VS_TS_LEN];
	size_t n_accepted;
	struct vs_buf conflicts;	/* the entries, comma-separated */
	int64_t top_seq;	/* highest sequence committed or allocated */
	int64_t start_top;	/* highest committed when the push began */
	bool replayed;		/* res holds a stored answer */
	/* The conflict scan's bound for last_seen == bound_l: the rowid
	 * of the first op after it, or none (no op after it at all). */
	bool bound_known, bound_none;
	int64_t bound_l, bound_rowid;
};

/* Whether the transaction goes on, or stops with res already written
 * (an error, or the idempotency replay); a stop always rolls back. */
enum flow { GO, STOP };

static enum flow
stop_err(struct push_ctx *c, const struct sync_err *e)
{
	answer_err(c->res, e);
	return STOP;
}

static enum flow
stop_db(struct push_ctx *c, int rc, const char *ctx)
{
	answer_db_failure(c->db, c->res, rc, ctx);
	return STOP;
}

/* A cached statement, or NULL after answering 500 (db.c logged why). */
static sqlite3_stmt *
stmt(struct push_ctx *c, const char *sql)
{
	sqlite3_stmt *st = vs_db_stmt(c->db, sql);

	if (st == NULL)
		vs_res_internal(c->res);
	return st;
}

/* Steps a statement that returns no row. */
static enum flow
exec_bound(struct push_ctx *c, struct binder *b, const char *ctx)
{
	int rc = b->rc;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(b->st);
	return rc == SQLITE_DONE ? GO : stop_db(c, rc, ctx);
}

/*
 * Section 6, JSON part: the blob reference of a file payload. *sha is
 * NULL when the payload references no blob. The types are checked for
 * every field before any value is judged, as the reference decodes the
 * whole payload before looking at it.
 */
static const struct sync_err *
parse_blob_ref(const cJSON *p, const char **sha, int64_t *size)
{
	const cJSON *data, *blob;
	const char *ignored;

	*sha = NULL;
	*size = 0;
	if (!vs_json_is_object_or_null(p))
		return &E_INVALID_PAYLOAD;
	if (cJSON_IsNull(p))
		return NULL;
	data = cJSON_GetObjectItem(p, "dataBase64");
	blob = cJSON_GetObjectItem(p, "blob");
	if (!vs_json_str(p, "dataBase64", &ignored) ||
	    (blob != NULL && !vs_json_is_object_or_null(blob)))
		return &E_INVALID_PAYLOAD;
	if (blob != NULL && cJSON_IsObject(blob) &&
	    (!vs_json_str(blob, "sha256", sha) ||
	     !vs_json_int(blob, "size", size)))
		return &E_INVALID_PAYLOAD;
	if (data != NULL && !cJSON_IsNull(data))
		return &E_INLINE_BINARY;
	if (blob == NULL || cJSON_IsNull(blob)) {
		*sha = NULL;
		return NULL;
	}
	if (strlen(*sha) != 64 || !vs_is_lower_hex(*sha, 64) || *size < 0)
		return &E_BAD_BLOB_REF;
	return NULL;
}

/* Section 6, database part: the blob must be referenced in this scope
 * with the same size. */
static enum flow
check_blob_owned(struct push_ctx *c, const char *sha, int64_t size)
{
	sqlite3_stmt *st = stmt(c, SQL_BLOB_REF);
	struct binder b;
	int rc;

	if (st == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, c->user);
	bind_str(&b, c->vault);
	bind_str(&b, str_of(sha));
	rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
	if (rc == SQLITE_DONE)
		return stop_err(c, &E_BLOB_NOT_OWNED);
	if (rc != SQLITE_ROW)
		return stop_db(c, rc, "blob reference");
	if (sqlite3_column_int64(st, 0) != size)
		return stop_err(c, &E_BLOB_SIZE);
	return GO;
}

static enum flow
check_blob_refs(struct push_ctx *c)
{
	for (size_t i = 0; i < c->req->n_ops; i++) {
		const struct push_op *op = &c->req->ops[i];
		const struct sync_err *e;
		const char *sha;
		int64_t size;

		/* file_payload is set exactly for file ops with a payload. */
		if (op->file_payload == NULL)
			continue;
		if ((e = parse_blob_ref(op->file_payload, &sha, &size)) != NULL)
			return stop_err(c, e);
		if (sha != NULL && check_blob_owned(c, sha, size) == STOP)
			return STOP;
	}
	return GO;
}

/* SYNC.md 2.4: a stored answer for this key in this scope is replayed
 * byte for byte (it may hold the reference's nulls). */
static enum flow
replay_idempotent(struct push_ctx *c)
{
	sqlite3_stmt *st;
	struct binder b;
	struct str stored;
	int rc;

	if (c->req->idem_key.n == 0)
		return GO;
	if ((st = stmt(c, SQL_IDEM_GET)) == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, c->user);
	bind_str(&b, c->vault);
	bind_str(&b, c->req->idem_key);
	rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
	if (rc == SQLITE_DONE)
		return GO;
	if (rc != SQLITE_ROW)
		return stop_db(c, rc, "idempotency lookup");
	if (!col_str(st, 0, &stored))
		return stop_db(c, SQLITE_NOMEM, "idempotency lookup");
	vs_res_json(c->res, 200);
	if (!vs_buf_append(&c->res->body, stored.s, stored.n))
		vs_res_internal(c->res);
	else
		c->replayed = true;
	return STOP;
}

/* The rowid bound of the conflict scan for last_seen l (see
 * vs_sync_sql_conflicts); the ops of one push share their l. */
static enum flow
scan_bound(struct push_ctx *c, int64_t l)
{
	sqlite3_stmt *st;
	int rc;

	if (c->bound_known && c->bound_l == l)
		return GO;
	if ((st = stmt(c, SQL_FIRST_AFTER)) == NULL)
		return STOP;
	rc = sqlite3_bind_int64(st, 1, l);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return stop_db(c, rc, "conflict scan bound");
	c->bound_known = true;
	c->bound_l = l;
	c->bound_none = rc == SQLITE_DONE;
	c->bound_rowid = c->bound_none ? 0 : sqlite3_column_int64(st, 0);
	return GO;
}

/* SYNC.md 2.3 step 1: advisory conflicts of op against stored ops of
 * the same entity in this scope from other devices. */
static enum flow
scan_conflicts(struct push_ctx *c, const struct push_op *op)
{
	struct vs_buf *out = &c->conflicts;
	sqlite3_stmt *st;
	struct binder b;
	int rc;

	if (scan_bound(c, op->last_seen) == STOP)
		return STOP;
	if (c->bound_none)
		return GO;	/* nothing numbered after L: no conflict */
	if ((st = stmt(c, vs_sync_sql_conflicts)) == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, op->f[F_ENTITY_TYPE]);
	bind_str(&b, op->f[F_ENTITY_ID]);
	bind_str(&b, c->user);
	bind_str(&b, c->vault);
	bind_str(&b, c->device);
	bind_i64(&b, op->last_seen);
	bind_i64(&b, c->bound_rowid);
	if (b.rc != SQLITE_OK)
		return stop_db(c, b.rc, "conflict scan");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct str q_op_id, q_device, q_type;

		if (!col_str(st, 0, &q_op_id) || !col_str(st, 1, &q_device) ||
		    !col_str(st, 2, &q_type))
			return stop_db(c, SQLITE_NOMEM, "conflict scan");
		if (out->len > 0)
			LIT(out, ",");
		LIT(out, "{\"op_id\":");
		vs_json_put_strn(out, q_op_id.s, q_op_id.n);
		LIT(out, ",\"device_id\":");
		vs_json_put_strn(out, q_device.s, q_device.n);
		LIT(out, ",\"op_type\":");
		vs_json_put_strn(out, q_type.s, q_type.n);
		LIT(out, ",\"server_sequence\":");
		put_i64(out, sqlite3_column_int64(st, 3));
		LIT(out, ",\"entity_type\":");
		vs_json_put_strn(out, op->f[F_ENTITY_TYPE].s,
				 op->f[F_ENTITY_TYPE].n);
		LIT(out, ",\"entity_id\":");
		vs_json_put_strn(out, op->f[F_ENTITY_ID].s,
				 op->f[F_ENTITY_ID].n);
		LIT(out, "}");
	}
	return rc == SQLITE_DONE ? GO : stop_db(c, rc, "conflict scan");
}

static void
list_accepted(struct push_ctx *c, const struct push_op *op)
{
	if (c->n_accepted++ > 0)
		LIT(&c->res->body, ",");
	vs_json_put_strn(&c->res->body, op->f[F_OP_ID].s, op->f[F_OP_ID].n);
}

/* Whether an earlier op of this request has the same op_id (it was
 * listed then: every op before this one was accepted). */
static bool
listed_before(const struct push_ctx *c, size_t idx)
{
	const struct push_op *ops = c->req->ops;

	for (size_t j = 0; j < idx; j++)
		if (str_eq(ops[j].f[F_OP_ID], ops[idx].f[F_OP_ID]))
			return true;
	return false;
}

/* D5: who already owns this op_id. *found = false when nobody does. */
static enum flow
find_owner(struct push_ctx *c, const struct push_op *op, bool *found,
	   bool *same_scope)
{
	sqlite3_stmt *st = stmt(c, SQL_OP_OWNER);
	struct binder b;
	struct str u, v;
	int rc;

	*found = *same_scope = false;
	if (st == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, op->f[F_OP_ID]);
	rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
	if (rc == SQLITE_DONE)
		return GO;
	if (rc != SQLITE_ROW)
		return stop_db(c, rc, "op lookup");
	if (!col_str(st, 0, &u) || !col_str(st, 1, &v))
		return stop_db(c, SQLITE_NOMEM, "op lookup");
	*found = true;
	*same_scope = str_eq(u, c->user) && str_eq(v, c->vault);
	return GO;
}

/* S1: the sequence is the id of a new server_revisions row. */
static enum flow
allocate_sequence(struct push_ctx *c, const struct push_op *op,
		  int64_t *seq)
{
	sqlite3_stmt *st = stmt(c, SQL_REVISION);
	struct binder b;

	if (st == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, op->f[F_OP_ID]);
	bind_str(&b, c->device);
	if (exec_bound(c, &b, "allocate sequence") == STOP)
		return STOP;
	*seq = sqlite3_last_insert_rowid(c->db->h);
	if (*seq > c->top_seq)
		c->top_seq = *seq;
	return GO;
}

static enum flow
insert_op(struct push_ctx *c, const struct push_op *op, int64_t seq)
{
	sqlite3_stmt *st = stmt(c, SQL_OP_INSERT);
	struct binder b;

	if (st == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, op->f[F_OP_ID]);
	bind_i64(&b, seq);
	bind_str(&b, c->user);
	bind_str(&b, c->vault);
	bind_str(&b, c->device);
	bind_str(&b, op->f[F_ENTITY_TYPE]);
	bind_str(&b, op->f[F_ENTITY_ID]);
	bind_str(&b, op->f[F_OP_TYPE]);
	bind_str(&b, op->payload);
	bind_str(&b, c->req->idem_key);
	bind_i64(&b, op->client_seq);
	bind_i64(&b, op->last_seen);
	bind_str(&b, op->created_at);
	bind_str(&b, str_of(c->now));
	return exec_bound(c, &b, "insert op");
}

static enum flow
write_tombstone(struct push_ctx *c, const struct push_op *op)
{
	sqlite3_stmt *st = stmt(c, SQL_TOMBSTONE);
	struct binder b;

	if (st == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, c->user);
	bind_str(&b, c->vault);
	bind_str(&b, op->f[F_ENTITY_TYPE]);
	bind_str(&b, op->f[F_ENTITY_ID]);
	bind_str(&b, op->f[F_OP_ID]);
	bind_str(&b, str_of(c->now));
	return exec_bound(c, &b, "tombstone");
}

static bool
is_delete(const struct push_op *op)
{
	return op->f[F_OP_TYPE].n == 6 &&
	       memcmp(op->f[F_OP_TYPE].s, "delete", 6) == 0;
}

/* SYNC.md 2.3 for one op. */
static enum flow
process_op(struct push_ctx *c, size_t idx)
{
	const struct push_op *op = &c->req->ops[idx];
	bool found, same_scope;
	int64_t seq;

	if (op->last_seen > 0 && scan_conflicts(c, op) == STOP)
		return STOP;
	if (find_owner(c, op, &found, &same_scope) == STOP)
		return STOP;
	if (found) {
		if (!same_scope)
			return stop_err(c, &E_OP_ID_CONFLICT);
		if (!listed_before(c, idx))
			list_accepted(c, op);
		return GO;
	}
	if (allocate_sequence(c, op, &seq) == STOP ||
	    insert_op(c, op, seq) == STOP ||
	    (is_delete(op) && write_tombstone(c, op) == STOP))
		return STOP;
	list_accepted(c, op);
	return GO;
}

/* Closes the answer and stores it under the idempotency key. The body
 * is the exact compact JSON; the newline is added after the commit. */
static enum flow
finish_answer(struct push_ctx *c)
{
	struct vs_buf *body = &c->res->body;
	sqlite3_stmt *st;
	struct binder b;

	LIT(body, "],\"count\":");
	put_i64(body, (int64_t)c->n_accepted);
	LIT(body, ",\"conflicts\":[");
	if (c->conflicts.len > 0)
		vs_buf_append(body, c->conflicts.data, c->conflicts.len);
	LIT(body, "]}");
	if (body->oom || c->conflicts.oom) {
		vs_log_error("sync: push answer: out of memory");
		vs_res_internal(c->res);
		return STOP;
	}
	if (c->req->idem_key.n == 0)
		return GO;
	if ((st = stmt(c, SQL_IDEM_PUT)) == NULL)
		return STOP;
	b = binder_of(st);
	bind_str(&b, c->user);
	bind_str(&b, c->vault);
	bind_str(&b, c->req->idem_key);
	bind_str(&b, (struct str){ body->data, body->len });
	bind_str(&b, str_of(c->now));
	return exec_bound(c, &b, "store idempotency key");
}

/* The highest sequence committed by anyone, 0 for an empty log. Run
 * under the write lock, it is the newest there is. */
static int
read_top_sequence(struct vs_db *db, int64_t *top)
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_TOP_SEQUENCE);
	int rc;

	*top = 0;
	if (st == NULL)
		return SQLITE_ERROR;	/* db.c logged why */
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*top = sqlite3_column_int64(st, 0);	/* NULL reads 0 */
		return SQLITE_OK;
	}
	return rc;
}

/* Steps 6-9 of SYNC.md 2.2 inside the transaction. */
static enum flow
push_in_tx(struct push_ctx *c)
{
	int rc = read_top_sequence(c->db, &c->top_seq);

	if (rc != SQLITE_OK)
		return stop_db(c, rc, "top sequence");
	c->start_top = c->top_seq;
	if (check_blob_refs(c) == STOP || replay_idempotent(c) == STOP)
		return STOP;
	vs_res_json(c->res, 200);
	LIT(&c->res->body, "{\"accepted\":[");
	for (size_t i = 0; i < c->req->n_ops; i++)
		if (process_op(c, i) == STOP)
			return STOP;
	return finish_answer(c);
}

static int
read_issued(struct vs_db *db, int64_t *issued)
{
	sqlite3_stmt *st = vs_db_stmt(db, SQL_ISSUED);
	int rc;

	*issued = 0;
	if (st == NULL)
		return SQLITE_ERROR;	/* db.c logged why */
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*issued = sqlite3_column_int64(st, 0);
		return SQLITE_OK;
	}
	return rc;
}

enum vs_db_status
vs_sync_issued(struct vs_db *db, int64_t *issued)
{
	enum vs_db_status s = vs_db_begin_read(db);
	int rc;

	*issued = 0;
	if (s != VS_DB_OK)
		return s;
	rc = read_issued(db, issued);
	if (rc != SQLITE_OK) {
		s = vs_db_status_of(db, rc, "issued sequence");
		vs_db_rollback(db);
		return s == VS_DB_OK ? VS_DB_ERROR : s;
	}
	return vs_db_commit(db);
}

enum vs_db_status
vs_sync_advance(struct vs_db *db, int64_t by, int64_t *before,
		int64_t *after)
{
	enum vs_db_status s;
	sqlite3_stmt *st;
	int rc;

	*before = *after = 0;
	if (by <= 0 || by > VS_SYNC_ADVANCE_MAX)
		return VS_DB_ERROR;
	if ((s = vs_db_begin_write(db)) != VS_DB_OK)
		return s;
	rc = read_issued(db, before);
	if (rc == SQLITE_OK && *before > INT64_MAX - by) {
		vs_log_error("sync: advancing %lld by %lld would overflow",
			     (long long)*before, (long long)by);
		vs_db_rollback(db);
		return VS_DB_ERROR;
	}
	if (rc == SQLITE_OK) {
		*after = *before + by;
		st = vs_db_stmt(db, SQL_COUNTER_SET);
		rc = st == NULL ? SQLITE_ERROR : sqlite3_bind_int64(st, 1, *after);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc == SQLITE_OK && sqlite3_changes(db->h) == 0) {
		/* No op was ever stored: the counter has no row yet. */
		st = vs_db_stmt(db, SQL_COUNTER_ADD);
		rc = st == NULL ? SQLITE_ERROR : sqlite3_bind_int64(st, 1, *after);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		s = vs_db_status_of(db, rc, "advance sequence");
		vs_db_rollback(db);
		return s == VS_DB_OK ? VS_DB_ERROR : s;
	}
	return vs_db_commit(db);
}

/* Syncs the WAL and raises the durable watermark to top, the highest
 * sequence committed before the sync. seen: every commit up to top was
 * numbered before this process saw it (a combined batch's), so a running
 * fsync of another writer may do; else (a replay of someone's commit,
 * maybe one made outside the queue) this process syncs itself. */
static void
publish_durable(struct vs_db *db, struct vs_response *res, int64_t top,
		bool seen)
{
	enum vs_db_status s = seen ? vs_db_sync_seen(db) : vs_db_sync(db);

	if (s != VS_DB_OK) {
		answer_db_status(res, s);
		return;
	}
	vs_db_publish_durable(db, top);
}

static void
push_execute(struct vs_db *db, const struct vs_scope *sc,
	     struct push_req *req, struct vs_response *res)
{
	struct push_ctx c = {
		.db = db, .res = res, .req = req,
		.user = str_of(sc->user_id), .vault = str_of(sc->vault_id),
		.device = str_of(sc->device_id),
	};
	enum vs_db_status s;

	vs_buf_init(&c.conflicts);
	vs_now_ts(c.now);
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK) {
		answer_db_status(res, s);
		goto out;
	}
	if (push_in_tx(&c) == STOP) {
		/* Errors and the replay alike leave nothing behind. The
		 * replayed ops were committed by another request, maybe
		 * one whose fsync has not returned yet: sync before the
		 * answer claims them. */
		vs_db_rollback(db);
		if (c.replayed)
			publish_durable(db, res, c.top_seq, false);
		goto out;
	}
	/* The commit returns once synced, and with it every commit up
	 * to top_seq (all were written before it): pull may show them. */
	s = vs_db_commit(db);	/* rolls back by itself on failure */
	if (s != VS_DB_OK) {
		answer_db_status(res, s);
		goto out;
	}
	vs_db_publish_durable(db, c.top_seq);
	if (!LIT(&res->body, "\n"))
		/* Committed, but the answer cannot be built; the client's
		 * retry is answered as a same-scope duplicate. */
		vs_res_internal(res);
out:
	vs_buf_free(&c.conflicts);
}

/*
 * Commit combining (combine.h): a push run by whichever worker leads
 * the batch, inside its transaction and a savepoint of its own. The
 * leader's own push comes already decoded; another worker's is decoded
 * again from its slot (it passed the same checks there already, under
 * the same configuration).
 */
struct combine_arg {
	const struct vs_limits *lim;
	const char *own_body;
	struct push_req *own_req;
};

static enum vs_combine_step
push_in_batch(void *arg, struct vs_db *db, const struct vs_combine_item *it,
	      struct vs_response *res, int64_t *top)
{
	const struct combine_arg *a = arg;
	struct push_req decoded, *req = a->own_req;
	const struct sync_err *e = NULL;
	enum vs_combine_step step;
	struct push_ctx c = {
		.db = db, .res = res,
		.user = str_of(it->user), .vault = str_of(it->vault),
		.device = str_of(it->device),
	};

	memset(&decoded, 0, sizeof(decoded));
	if (it->body != a->own_body) {
		req = &decoded;
		e = decode_push(it->body, it->len, req);
		if (e == NULL && req->n_ops > 0 && req->ops == NULL) {
			push_req_free(req);
			vs_res_internal(res);
			return VS_COMBINE_FAIL;
		}
		if (e == NULL)
			e = check_push(a->lim, req);
	}
	if (e != NULL) {
		answer_err(res, e);
		push_req_free(&decoded);
		return VS_COMBINE_UNDO;
	}
	c.req = req;
	vs_buf_init(&c.conflicts);
	vs_now_ts(c.now);
	if (push_in_tx(&c) == STOP)
		step = res->status >= 500 ? VS_COMBINE_FAIL : VS_COMBINE_UNDO;
	else
		step = LIT(&res->body, "\n") ? VS_COMBINE_KEEP : VS_COMBINE_FAIL;
	/* Undone, only what was committed before it counts: the sequences
	 * it allocated are rolled back and will be handed out again. */
	*top = step == VS_COMBINE_KEEP ? c.top_seq : c.start_top;
	vs_buf_free(&c.conflicts);
	push_req_free(&decoded);
	return step;
}

/* True when the push was answered by a combined commit. */
static bool
push_combined(struct vs_db *db, const struct vs_limits *lim,
	      const struct vs_scope *sc, const char *body, size_t len,
	      struct push_req *req, struct vs_response *res)
{
	struct combine_arg a = { .lim = lim, .own_body = body, .own_req = req };
	struct vs_combine_item it = {
		.user = sc->user_id, .vault = sc->vault_id,
		.device = sc->device_id, .body = body, .len = len,
	};
	int64_t top;

	if (vs_combine_submit(&db->combine, db, &it, push_in_batch, &a, res,
			      &top) != VS_COMBINE_DONE)
		return false;
	/* Committed by the batch's leader; acknowledged once synced (the
	 * replayed answer of an idempotency key included). */
	publish_durable(db, res, top, true);
	return true;
}

void
vs_sync_push(struct vs_db *db, const struct vs_limits *lim,
	     const struct vs_scope *sc, const char *body, size_t len,
	     struct vs_response *res)
{
	struct push_req req;
	const struct sync_err *e;

	memset(&req, 0, sizeof(req));
	e = decode_push(body, len, &req);
	if (e == NULL && req.n_ops > 0 && req.ops == NULL) {
		vs_log_error("sync: push: out of memory");
		vs_res_internal(res);
		goto out;
	}
	if (e == NULL)
		e = check_push(lim, &req);
	if (e != NULL) {
		answer_err(res, e);
		goto out;
	}
	/* The worker may hold the answer back and sync it together with
	 * its next requests' (vs_db_defer_begin). */
	vs_db_defer_begin(db);
	if (!push_combined(db, lim, sc, body, len, &req, res))
		push_execute(db, sc, &req, res);
	vs_db_defer_end(db);
out:
	push_req_free(&req);
}

/* ------------------------------------------------------------------ */
/* Pull                                                               */
/* ------------------------------------------------------------------ */

/* Bytes reserved per op before the page is read: enough for typical
 * ops, so the body grows at most a few times for large payloads. */
#define PULL_BYTES_PER_OP 512
#define PULL_RESERVE_MAX (1u << 20)

struct pull_page {
	int64_t since;
	int64_t size;
	int64_t max_seq;	/* scope maximum */
	int64_t last_seq;	/* page_last_sequence */
	int64_t durable;	/* nothing above it is shown */
	bool has_more;
};

static const struct sync_err *
decode_pull(const char *body, size_t len, int64_t *since, int64_t *limit)
{
	cJSON *root = NULL;
	enum vs_json_rc rc = vs_json_parse(body, len, &root);
	bool ok;

	if (rc != VS_JSON_OK)
		return json_err(rc);
	ok = vs_json_is_object_or_null(root) &&
	     vs_json_int(root, "since_sequence", since) &&
	     vs_json_int(root, "page_limit", limit);
	cJSON_Delete(root);
	return ok ? NULL : &E_INVALID_JSON;
}

static bool
bind_scope(sqlite3_stmt *st, const struct vs_scope *sc, struct binder *b)
{
	*b = binder_of(st);
	bind_str(b, str_of(sc->user_id));
	bind_str(b, str_of(sc->vault_id));
	return b->rc == SQLITE_OK;
}

/* The scope's highest durable sequence, 0 when it has none. */
static int
read_max_sequence(struct vs_db *db, const struct vs_scope *sc,
		  struct pull_page *pg)
{
	sqlite3_stmt *st = vs_db_stmt(db, vs_sync_sql_pull_max);
	int64_t *max_seq = &pg->max_seq;
	struct binder b;
	int rc;

	*max_seq = 0;
	if (st == NULL)
		return SQLITE_ERROR;	/* db.c logged why */
	if (!bind_scope(st, sc, &b))
		return b.rc;
	bind_i64(&b, pg->durable);
	if (b.rc != SQLITE_OK)
		return b.rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*max_seq = sqlite3_column_int64(st, 0);
		return SQLITE_OK;
	}
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One op object, written straight from the row's column buffers. */
static bool
write_pulled_op(struct vs_buf *out, sqlite3_stmt *st, int64_t seq)
{
#define KEY(s) { s, sizeof(s) - 1 }
	/* Indexed by result column; column 1 is the integer sequence. */
	static const struct str keys[] = {
		KEY("{\"op_id\":"), KEY(",\"server_sequence\":"),
		KEY(",\"device_id\":"), KEY(",\"entity_type\":"),
		KEY(",\"entity_id\":"), KEY(",\"op_type\":"),
		KEY(",\"payload_json\":"), KEY(",\"created_at\":"),
	};
#undef KEY
	struct str v;

	for (int i = 0; i < (int)(sizeof(keys) / sizeof(keys[0])); i++) {
		vs_buf_append(out, keys[i].s, keys[i].n);
		if (i == 1) {
			put_i64(out, seq);
			continue;
		}
		if (!col_str(st, i, &v))
			return false;
		vs_json_put_strn(out, v.s, v.n);
	}
	return LIT(out, "}");
}

/* Writes the page's ops (the scalar fields follow them, see
 * append_trailer) and sets has_more and last_seq. Returns a SQLite
 * result code. */
static int
read_page(struct vs_db *db, const struct vs_scope *sc,
	  struct pull_page *pg, struct vs_buf *out)
{
	sqlite3_stmt *st = vs_db_stmt(db, vs_sync_sql_pull_page);
	struct binder b;
	int64_t n = 0;
	int rc;

	pg->last_seq = pg->since;
	pg->has_more = false;
	if (st == NULL)
		return SQLITE_ERROR;	/* db.c logged why */
	if (!bind_scope(st, sc, &b))
		return b.rc;
	bind_i64(&b, pg->since);
	/* One row more than the page tells whether another page exists. */
	bind_i64(&b, pg->size < INT64_MAX ? pg->size + 1 : -1);
	bind_i64(&b, pg->durable);
	if (b.rc != SQLITE_OK)
		return b.rc;
	LIT(out, "{\"ops\":[");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 1);

		if (n == pg->size) {
			pg->has_more = true;
			break;
		}
		if (n++ > 0)
			LIT(out, ",");
		if (!write_pulled_op(out, st, seq))
			return SQLITE_NOMEM;
		pg->last_seq = seq;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	LIT(out, "]");
	return SQLITE_OK;
}

/* The scalar fields go after the ops: their values are only known once
 * the page has been read, and key order is not significant (API.md 1.2),
 * so the page is never moved to make room in front of it. */
static bool
append_trailer(struct vs_buf *body, const struct pull_page *pg)
{
	char t[128];
	size_t n = 0;

	memcpy(t + n, ",\"server_sequence\":", 19);
	n += 19;
	n += fmt_i64(t + n, pg->max_seq);
	memcpy(t + n, ",\"page_last_sequence\":", 22);
	n += 22;
	n += fmt_i64(t + n, pg->last_seq);
	memcpy(t + n, pg->has_more ? ",\"has_more\":true}\n" :
	       ",\"has_more\":false}\n", pg->has_more ? 18 : 19);
	n += pg->has_more ? 18 : 19;
	return !body->oom && vs_buf_append(body, t, n);
}

static int64_t
page_size(const struct vs_limits *lim, int64_t page_limit)
{
	if (page_limit == 0 || page_limit > lim->max_pull_page)
		return lim->max_pull_page;
	return page_limit;
}

/*
 * Once per process, before its first pull: whatever was committed before
 * this process started (by a worker that died before publishing, or by
 * another server on the same files) is made durable and published, so
 * the watermark can never stay below an op nobody will publish.
 */
static enum vs_db_status
init_durable(struct vs_db *db)
{
	enum vs_db_status s;
	int64_t top;
	int rc;

	if (db->wlock.shm == NULL || vs_wlock_storage_failed(&db->wlock)) {
		/* FULL: all is durable; after a failed fsync nothing new
		 * is, and pull keeps showing what was before. */
		db->durable_seq_known = true;
		return VS_DB_OK;
	}
	s = vs_db_begin_read(db);
	if (s != VS_DB_OK)
		return s;
	rc = read_top_sequence(db, &top);
	if (rc != SQLITE_OK) {
		s = vs_db_status_of(db, rc, "top sequence");
		vs_db_rollback(db);
		return s == VS_DB_OK ? VS_DB_ERROR : s;
	}
	s = vs_db_commit(db);
	if (s == VS_DB_OK)
		s = vs_db_sync(db);
	if (s != VS_DB_OK)
		return s;
	vs_wlock_raise_durable_seq(&db->wlock, top);
	db->durable_seq_known = true;
	return VS_DB_OK;
}

void
vs_sync_pull(struct vs_db *db, const struct vs_limits *lim,
	     const struct vs_scope *sc, const char *body, size_t len,
	     struct vs_response *res)
{
	struct pull_page pg = { 0 };
	const struct sync_err *e;
	enum vs_db_status s;
	int64_t limit = 0;
	size_t reserve;
	int rc;

	e = decode_pull(body, len, &pg.since, &limit);
	if (e == NULL && (pg.since < 0 || limit < 0))
		e = &E_PULL_NEGATIVE;
	if (e != NULL) {
		answer_err(res, e);
		return;
	}
	pg.size = page_size(lim, limit);
	vs_res_json(res, 200);
	reserve = pg.size > (int64_t)(PULL_RESERVE_MAX / PULL_BYTES_PER_OP) ?
		PULL_RESERVE_MAX : 256 + (size_t)pg.size * PULL_BYTES_PER_OP;
	(void)vs_buf_reserve(&res->body, reserve);	/* oom checked below */

	/* The watermark is read before the snapshot starts: every op at or
	 * below it was committed before, so the snapshot holds them all. */
	if (!db->durable_seq_known && (s = init_durable(db)) != VS_DB_OK) {
		answer_db_status(res, s);
		return;
	}
	pg.durable = vs_wlock_durable_seq(&db->wlock);
	/* D41: the maximum and the page come from one snapshot, so the
	 * answer never shows a page beyond its own server_sequence. */
	s = vs_db_begin_read(db);
	if (s != VS_DB_OK) {
		answer_db_status(res, s);
		return;
	}
	rc = read_max_sequence(db, sc, &pg);
	if (rc == SQLITE_OK && pg.since > pg.max_seq) {
		/* A cursor comes from this scope's own pages, so it is never
		 * above the scope's maximum, unless the log went back: a
		 * restored backup. The reference then shows nothing until
		 * new ops pass the cursor, and the device skips every op
		 * numbered below it, silently and for good. */
		int64_t issued = 0;

		rc = read_issued(db, &issued);
		if (rc == SQLITE_OK && pg.since > issued) {
			vs_db_rollback(db);
			vs_log_warn("sync: pull from %lld, beyond the highest"
				    " sequence issued (%lld): restored from a"
				    " backup? see `sequence advance`",
				    (long long)pg.since, (long long)issued);
			answer_err(res, &E_CURSOR_AHEAD);
			return;
		}
	}
	if (rc == SQLITE_OK)
		rc = read_page(db, sc, &pg, &res->body);
	if (rc != SQLITE_OK) {
		answer_db_failure(db, res, rc, "pull");
		vs_db_rollback(db);
		return;
	}
	s = vs_db_commit(db);
	if (s != VS_DB_OK) {
		answer_db_status(res, s);
		return;
	}
	if (!append_trailer(&res->body, &pg)) {
		vs_log_error("sync: pull answer: out of memory");
		vs_res_internal(res);
	}
}
