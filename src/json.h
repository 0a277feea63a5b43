/*
 * json.h - JSON in and out, in the one shape every route uses.
 *
 * Input (API.md 1.4): one JSON value per body; a second value is
 * "trailing_json", anything malformed "invalid_json". Field readers apply
 * the contract's typing: null reads as empty/zero, a wrong JSON type is
 * invalid_json, integers are 64-bit and integral.
 * Output: string escaping as the reference does it (<, >, & as \u003c...,
 * U+2028/2029 escaped, invalid UTF-8 replaced by U+FFFD), so every body we
 * write is valid JSON whatever bytes a client stored.
 *
 * Must never: decide HTTP status or talk to FastCGI; callers map the
 * result to the contract's error codes.
 */
#ifndef VS_JSON_H
#define VS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "util.h"

enum vs_json_rc {
	VS_JSON_OK = 0,
	VS_JSON_INVALID,   /* 400 invalid_json */
	VS_JSON_TRAILING,  /* 400 trailing_json */
};

/* Parses exactly one JSON value from body[0..len). On VS_JSON_OK *out is
 * the value (never NULL; a literal null is returned as a cJSON null, which
 * the field readers treat as an empty object). Caller frees with
 * cJSON_Delete. */
enum vs_json_rc vs_json_parse(const char *body, size_t len, cJSON **out);

/* The value must be an object or null, else invalid_json. */
bool vs_json_is_object_or_null(const cJSON *v);

/* Field readers: return false when the field has the wrong JSON type.
 * Absent or null fields give "" / 0. The string stays owned by the tree. */
bool vs_json_str(const cJSON *obj, const char *name, const char **out);
bool vs_json_int(const cJSON *obj, const char *name, int64_t *out);
/* Reads an integer from a number node (not a field). */
bool vs_json_node_int(const cJSON *node, int64_t *out);

/* Appends s as a quoted, escaped JSON string. */
bool vs_json_put_str(struct vs_buf *b, const char *s);
bool vs_json_put_strn(struct vs_buf *b, const char *s, size_t n);

/* True when s[0..n) is one valid JSON value (no trailing data), by the
 * reference's rules (Go's encoding/json.Valid). */
bool vs_json_valid(const char *s, size_t n);
/* The tree of s[0..n), which vs_json_valid accepted: lone surrogate
 * escapes, valid there but refused by cJSON, are read as U+FFFD. NULL
 * only without memory or past cJSON's nesting limit (1000 levels). */
cJSON *vs_json_parse_valid(const char *s, size_t n);

#endif
