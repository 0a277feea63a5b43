/*
 * util.h - small, dependency-free helpers shared by every module:
 * timestamps in the contract's format, hex, CSPRNG values, SHA-256 of
 * secrets, constant-time comparison, growable byte buffers and careful
 * file-system primitives (write-all, fsync of a directory, mkdir -p).
 *
 * Nothing here knows about HTTP, SQL or configuration.
 */
#ifndef VS_UTIL_H
#define VS_UTIL_H

#include <stddef.h>
#include <string.h>
#include <stdint.h>
#include <stdbool.h>
#include <time.h>
#include <sys/types.h>

/* "YYYY-MM-DDTHH:MM:SSZ" plus NUL. */
#define VS_TS_LEN 21
void vs_timestamp(time_t t, char out[VS_TS_LEN]);
void vs_now_ts(char out[VS_TS_LEN]);
/* Milliseconds of CLOCK_MONOTONIC: for deadlines and durations. */
long long vs_mono_ms(void);
/* Parses any RFC 3339 value; returns false when it is not one. */
bool vs_parse_ts(const char *s, time_t *out);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void vs_hex(const unsigned char *in, size_t n, char *out);
/* n random bytes as 2n lowercase hex chars (out holds 2n+1). false on RNG failure. */
bool vs_random_hex(size_t nbytes, char *out);
/* SHA-256 of s (as text) in lowercase hex (65 bytes). */
void vs_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA-256 of msg under key in lowercase hex (65 bytes); false
 * (out all 'x', never matching a stored value) if libcrypto fails. */
bool vs_hmac_sha256_hex(const void *key, size_t keylen, const void *msg,
			size_t msglen, char out[65]);
/* Constant-time equality of two strings (length leaks, content does not). */
bool vs_ct_streq(const char *a, const char *b);
bool vs_is_lower_hex(const char *s, size_t len);

/* Growable byte buffer; always NUL-terminated after a successful append. */
struct vs_buf {
	char *data;
	size_t len;
	size_t cap;
	bool oom;	/* sticky: an allocation failed; contents are incomplete */
};
void vs_buf_init(struct vs_buf *b);
void vs_buf_free(struct vs_buf *b);
void vs_buf_reset(struct vs_buf *b);
/* Grows the buffer for extra more bytes plus the NUL; the slow path of
 * vs_buf_reserve, which callers use instead. */
bool vs_buf_grow(struct vs_buf *b, size_t extra);

/* Room for extra more bytes plus a NUL. Inline: JSON pages make
 * thousands of small appends, and the common case is one compare. */
static inline bool
vs_buf_reserve(struct vs_buf *b, size_t extra)
{
	if (!b->oom && extra < b->cap - b->len)
		return true;
	return vs_buf_grow(b, extra);
}

static inline bool
vs_buf_append(struct vs_buf *b, const void *p, size_t n)
{
	if (!vs_buf_reserve(b, n))
		return false;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}
bool vs_buf_puts(struct vs_buf *b, const char *s);
bool vs_buf_printf(struct vs_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes all of buf to fd, retrying on EINTR and short writes. */
bool vs_write_all(int fd, const void *buf, size_t len);
/* fsync of a directory (after a rename or create inside it). */
bool vs_fsync_dir(const char *dir);
/* mkdir -p with mode for every directory it creates. */
bool vs_mkdir_p(const char *path, mode_t mode);
/* Joins dir and name into a malloc'd string ("dir/name"); NULL on OOM. */
char *vs_path_join(const char *dir, const char *name);
/* Trims ASCII white space in place; returns s. */
char *vs_trim(char *s);
/* Where a directory of shipped files (templates, static) is, in order:
 * the environment variable env_name; <prefix>/share/verstak-sync-server/
 * <sub> when this program runs as <prefix>/bin/... (an installed tree or
 * scripts/build.sh's ./build/bin); the configured install path; the
 * source tree (make check). malloc'd; NULL on OOM. */
char *vs_find_share_dir(const char *env_name, const char *sub,
			const char *installed, const char *source);
/* strdup that returns NULL for NULL. */
char *vs_strdup0(const char *s);

#endif
