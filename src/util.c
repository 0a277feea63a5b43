/*
 * util.c - see util.h. Pure helpers: no HTTP, no SQL, no configuration.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

void
vs_timestamp(time_t t, char out[VS_TS_LEN])
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, VS_TS_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, VS_TS_LEN, "1970-01-01T00:00:00Z");
}

void
vs_now_ts(char out[VS_TS_LEN])
{
	vs_timestamp(time(NULL), out);
}

long long
vs_mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);	/* cannot fail for it */
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian); avoids timegm's
 * dependence on the process time zone. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

bool
vs_parse_ts(const char *s, time_t *out)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
	const char *p = s;

	if (s == NULL || !parse_digits(&p, 4, &y) || *p++ != '-' ||
	    !parse_digits(&p, 2, &mo) || *p++ != '-' ||
	    !parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return false;
	p++;
	if (!parse_digits(&p, 2, &h) || *p++ != ':' ||
	    !parse_digits(&p, 2, &mi) || *p++ != ':' ||
	    !parse_digits(&p, 2, &se))
		return false;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		p++;
		if (!parse_digits(&p, 2, &oh) || *p++ != ':' ||
		    !parse_digits(&p, 2, &om))
			return false;
	} else {
		return false;
	}
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
					31, 30, 31 };
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || h > 23 ||
	    mi > 59 || se > 60 || oh > 23 || om > 59)
		return false;
	if (d > mdays[mo - 1] + (mo == 2 && y % 4 == 0 &&
				  (y % 100 != 0 || y % 400 == 0)))
		return false;
	int64_t t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
		    h * 3600 + mi * 60 + se;
	t -= sign * (oh * 3600 + om * 60);
	*out = (time_t)t;
	return true;
}

void
vs_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

bool
vs_random_hex(size_t nbytes, char *out)
{
	unsigned char raw[64];

	if (nbytes > sizeof(raw) || RAND_bytes(raw, (int)nbytes) != 1)
		return false;
	vs_hex(raw, nbytes, out);
	OPENSSL_cleanse(raw, sizeof(raw));
	return true;
}

void
vs_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32) {
		/* Cannot happen with a working libcrypto; never return a
		 * value that could match a stored hash. */
		memset(out, 'x', 64);
		out[64] = '\0';
		return;
	}
	vs_hex(md, 32, out);
}

bool
vs_hmac_sha256_hex(const void *key, size_t keylen, const void *msg,
		   size_t msglen, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (keylen > INT_MAX ||
	    HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, md, &mdlen) == NULL ||
	    mdlen != 32) {
		memset(out, 'x', 64);
		out[64] = '\0';
		return false;
	}
	vs_hex(md, 32, out);
	OPENSSL_cleanse(md, sizeof(md));
	return true;
}

bool
vs_ct_streq(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return false;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return false;
	return CRYPTO_memcmp(a, b, la) == 0;
}

bool
vs_is_lower_hex(const char *s, size_t len)
{
	if (s == NULL || strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

void
vs_buf_init(struct vs_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void
vs_buf_free(struct vs_buf *b)
{
	free(b->data);
	vs_buf_init(b);
}

void
vs_buf_reset(struct vs_buf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->data != NULL)
		b->data[0] = '\0';
}

bool
vs_buf_grow(struct vs_buf *b, size_t extra)
{
	size_t need, ncap;
	char *p;

	if (b->oom)
		return false;
	if (extra > SIZE_MAX - b->len - 1)
		goto fail;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	p = realloc(b->data, ncap);
	if (p == NULL)
		goto fail;
	b->data = p;
	b->cap = ncap;
	return true;
fail:
	b->oom = true;
	return false;
}

bool
vs_buf_puts(struct vs_buf *b, const char *s)
{
	return vs_buf_append(b, s, strlen(s));
}

bool
vs_buf_printf(struct vs_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!vs_buf_reserve(b, 64))
		return false;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return false;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (!vs_buf_reserve(b, (size_t)n))
			return false;
		va_start(ap, fmt);
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return false;
		}
	}
	b->len += (size_t)n;
	return true;
}

bool
vs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (n == 0) {
			errno = EIO;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

bool
vs_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = fsync(fd) == 0;
	if (close(fd) != 0)
		ok = false;
	return ok;
}

bool
vs_mkdir_p(const char *path, mode_t mode)
{
	char *p, *s;
	bool ok = true;

	if (path == NULL || *path == '\0')
		return false;
	s = strdup(path);
	if (s == NULL)
		return false;
	for (p = s + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(s, mode) != 0 && errno != EEXIST) {
				ok = false;
				break;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	if (ok) {
		struct stat st;
		ok = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	}
	free(s);
	return ok;
}

char *
vs_path_join(const char *dir, const char *name)
{
	size_t ld = strlen(dir), ln = strlen(name);
	char *p = malloc(ld + ln + 2);

	if (p == NULL)
		return NULL;
	memcpy(p, dir, ld);
	p[ld] = '/';
	memcpy(p + ld + 1, name, ln + 1);
	return p;
}

char *
vs_trim(char *s)
{
	char *start = s, *end;

	while (*start != '\0' && isspace((unsigned char)*start))
		start++;
	end = start + strlen(start);
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	if (start != s)
		memmove(s, start, (size_t)(end - start) + 1);
	return s;
}

static bool
is_dir(const char *p)
{
	struct stat st;
	return p != NULL && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *
vs_find_share_dir(const char *env_name, const char *sub,
		  const char *installed, const char *source)
{
	const char *env = getenv(env_name);
	char self[4096], buf[4096 + 64];
	ssize_t n;

	if (env != NULL && *env != '\0')
		return strdup(env);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash, *dir;
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash != NULL) {
			*slash = '\0';
			/* Only a bin/ directory has a share/ beside it that is
			 * ours: a build directory's neighbour is not. */
			dir = strrchr(self, '/');
			if (dir != NULL && strcmp(dir, "/bin") == 0) {
				snprintf(buf, sizeof(buf),
					 "%s/../share/verstak-sync-server/%s", self, sub);
				if (is_dir(buf))
					return realpath(buf, NULL);
			}
		}
	}
	if (installed != NULL && is_dir(installed))
		return strdup(installed);
	if (source != NULL && is_dir(source))
		return strdup(source);
	snprintf(buf, sizeof(buf), "/usr/share/verstak-sync-server/%s", sub);
	return strdup(buf);
}

char *
vs_strdup0(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}
