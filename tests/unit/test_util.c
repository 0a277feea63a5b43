/*
 * test_util.c - unit tests for src/util.c: contract timestamps and their
 * RFC 3339 parser, hex and random hex, SHA-256, constant-time string
 * comparison, growable buffers, write-all, mkdir -p, path join and trim.
 *
 * Must never: leave files behind (every file-system test works inside its
 * own mkdtemp directory and removes it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static char tmpdir[64];

static void
make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/vs_test_util_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
rm_tmpdir(void)
{
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

/* The file mode bits of path, or -1 when it does not exist. */
static int
mode_of(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

static bool
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static time_t
ts(const char *s)
{
	time_t t = (time_t)-12345;

	ck_assert_msg(vs_parse_ts(s, &t), "vs_parse_ts rejected \"%s\"", s);
	return t;
}

static void
check_ts_shape(const char *s)
{
	ck_assert_uint_eq(strlen(s), VS_TS_LEN - 1);
	for (size_t i = 0; i < VS_TS_LEN - 1; i++) {
		switch (i) {
		case 4: case 7: ck_assert_int_eq(s[i], '-'); break;
		case 10: ck_assert_int_eq(s[i], 'T'); break;
		case 13: case 16: ck_assert_int_eq(s[i], ':'); break;
		case 19: ck_assert_int_eq(s[i], 'Z'); break;
		default:
			ck_assert_msg(s[i] >= '0' && s[i] <= '9',
				      "non-digit at %zu in %s", i, s);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Timestamps                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_timestamp_epoch)
{
	char out[VS_TS_LEN];

	vs_timestamp(0, out);
	ck_assert_str_eq(out, "1970-01-01T00:00:00Z");
}
END_TEST

START_TEST(test_timestamp_known)
{
	char out[VS_TS_LEN];

	vs_timestamp((time_t)1795574423, out);
	ck_assert_str_eq(out, "2026-11-25T02:40:23Z");
	check_ts_shape(out);
	vs_timestamp((time_t)1709164800, out);
	ck_assert_str_eq(out, "2024-02-29T00:00:00Z");
	vs_timestamp((time_t)-1, out);
	ck_assert_str_eq(out, "1969-12-31T23:59:59Z");
}
END_TEST

START_TEST(test_now_ts_shape)
{
	char out[VS_TS_LEN];
	time_t before = time(NULL), parsed = 0;

	vs_now_ts(out);
	check_ts_shape(out);
	ck_assert(vs_parse_ts(out, &parsed));
	ck_assert(parsed >= before && parsed <= time(NULL));
}
END_TEST

START_TEST(test_timestamp_roundtrip)
{
	static const time_t samples[] = {
		0, 1, 59, 86399, 86400, 951782400 /* 2000-02-29 */,
		1709164800, 1767225600, 1795574423, 4102444799 /* 2099-12-31 */,
	};
	char out[VS_TS_LEN];

	for (size_t i = 0; i < sizeof(samples) / sizeof(*samples); i++) {
		time_t back = 0;
		vs_timestamp(samples[i], out);
		ck_assert(vs_parse_ts(out, &back));
		ck_assert_msg(back == samples[i], "%s -> %lld, want %lld", out,
			      (long long)back, (long long)samples[i]);
	}
}
END_TEST

START_TEST(test_parse_ts_basic)
{
	ck_assert(ts("1970-01-01T00:00:00Z") == 0);
	ck_assert(ts("2026-11-25T02:40:23Z") == 1795574423);
	ck_assert(ts("2024-02-29T00:00:00Z") == 1709164800);
	ck_assert(ts("1969-12-31T23:59:59Z") == -1);
	ck_assert(ts("2026-01-01T00:00:00Z") == 1767225600);
}
END_TEST

START_TEST(test_parse_ts_variants)
{
	const time_t want = 1767225600; /* 2026-01-01T00:00:00Z */

	ck_assert(ts("2026-01-01T00:00:00z") == want);
	ck_assert(ts("2026-01-01t00:00:00Z") == want);
	ck_assert(ts("2026-01-01T00:00:00.5Z") == want);
	ck_assert(ts("2026-01-01T00:00:00.123456789Z") == want);
	ck_assert(ts("2026-01-01T00:00:00+00:00") == want);
	ck_assert(ts("2026-01-01T00:00:00-00:00") == want);
	ck_assert(ts("2026-01-01T03:00:00+03:00") ==
		  ts("2026-01-01T00:00:00Z"));
	ck_assert(ts("2025-12-31T21:30:00-02:30") == want);
	ck_assert(ts("2026-01-01T05:45:00.999+05:45") == want);
	ck_assert(ts("2025-12-31T14:00:00-10:00") == want);
	/* A positive offset is east of UTC: the same wall clock is earlier. */
	ck_assert(ts("2026-01-01T00:00:00+01:00") == want - 3600);
	ck_assert(ts("2026-01-01T00:00:00-01:00") == want + 3600);
}
END_TEST

START_TEST(test_parse_ts_rejects)
{
	static const char *const bad[] = {
		"", "junk", "2026", "2026-01-01", "2026-01-01T", "2026-01-01T00",
		"2026-01-01T00:00", "2026-01-01T00:00Z", "2026-01-01T00:00:00",
		"2026-01-01T00:00:0Z", "2026-01-01T00:00:00.Z",
		"2026-01-01T00:00:00.", "2026-01-01T00:00:00+03",
		"2026-01-01T00:00:00+0300", "2026-01-01T00:00:00+03:0",
		"2026-01-01T00:00:00+3:00", "2026-01-01T00:00:00Zx",
		"2026-01-01T00:00:00Z ", " 2026-01-01T00:00:00Z",
		"2026-01-01X00:00:00Z", "2026/01/01T00:00:00Z",
		"2026-1-01T00:00:00Z", "26-01-01T00:00:00Z",
		"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z",
		"2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z",
		"2026-01-01T00:00:61Z", "2026-01-01T00:00:00+24:00",
		"2026-01-01T00:00:00+00:60", "2026-01-01T00:00:00UTC",
		"2026-01-01T00:00:00.12a3Z", "2O26-01-01T00:00:00Z",
		"2026-01-01T00:00:00Z\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		time_t t = 777;
		ck_assert_msg(!vs_parse_ts(bad[i], &t), "accepted \"%s\"",
			      bad[i]);
	}
	{
		time_t t = 777;
		ck_assert(!vs_parse_ts(NULL, &t));
	}
}
END_TEST

/* Regression (found in review): the day is only checked against 31,
 * so impossible dates are silently normalised into the next month. */
START_TEST(test_parse_ts_impossible_dates)
{
	time_t t;

	ck_assert(!vs_parse_ts("2026-02-30T00:00:00Z", &t));
	ck_assert(!vs_parse_ts("2026-02-29T00:00:00Z", &t));
	ck_assert(!vs_parse_ts("2026-04-31T00:00:00Z", &t));
	ck_assert(vs_parse_ts("2024-02-29T00:00:00Z", &t));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hex, random, SHA-256, comparisons                                  */
/* ------------------------------------------------------------------ */

START_TEST(test_hex)
{
	static const unsigned char in[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
	char out[2 * sizeof(in) + 1];
	char empty[1] = { 'x' };

	vs_hex(in, sizeof(in), out);
	ck_assert_str_eq(out, "00017f80abff");
	vs_hex(in, 0, empty);
	ck_assert_str_eq(empty, "");
}
END_TEST

START_TEST(test_random_hex)
{
	char a[65], b[65], big[129];

	memset(a, 'X', sizeof(a));
	ck_assert(vs_random_hex(32, a));
	ck_assert_uint_eq(strlen(a), 64);
	ck_assert(vs_is_lower_hex(a, 64));
	ck_assert(vs_random_hex(32, b));
	ck_assert(vs_is_lower_hex(b, 64));
	ck_assert_str_ne(a, b);

	ck_assert(vs_random_hex(16, a));
	ck_assert_uint_eq(strlen(a), 32);
	ck_assert(vs_is_lower_hex(a, 32));

	ck_assert(vs_random_hex(64, big));
	ck_assert_uint_eq(strlen(big), 128);
	ck_assert(vs_is_lower_hex(big, 128));
}
END_TEST

START_TEST(test_random_hex_too_many)
{
	char *out = malloc(2 * 65 + 1);

	ck_assert_ptr_nonnull(out);
	ck_assert(!vs_random_hex(65, out));
	free(out);
}
END_TEST

START_TEST(test_sha256_vectors)
{
	char out[65];
	const char *abc_in_longer = "abcdef";

	vs_sha256_hex("", 0, out);
	ck_assert_str_eq(out,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	vs_sha256_hex("abc", 3, out);
	ck_assert_str_eq(out,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* Only len bytes are hashed. */
	vs_sha256_hex(abc_in_longer, 3, out);
	ck_assert_str_eq(out,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	vs_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		      56, out);
	ck_assert_str_eq(out,
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	ck_assert(vs_is_lower_hex(out, 64));
}
END_TEST

START_TEST(test_ct_streq)
{
	ck_assert(vs_ct_streq("secret", "secret"));
	ck_assert(vs_ct_streq("", ""));
	ck_assert(!vs_ct_streq("secret", "secreT"));
	ck_assert(!vs_ct_streq("secret", "Secret"));
	ck_assert(!vs_ct_streq("secret", "secret2"));
	ck_assert(!vs_ct_streq("secret2", "secret"));
	ck_assert(!vs_ct_streq("", "x"));
	ck_assert(!vs_ct_streq(NULL, "x"));
	ck_assert(!vs_ct_streq("x", NULL));
	ck_assert(!vs_ct_streq(NULL, NULL));
	ck_assert(!vs_ct_streq(NULL, ""));
}
END_TEST

START_TEST(test_is_lower_hex)
{
	ck_assert(vs_is_lower_hex("0123456789abcdef", 16));
	ck_assert(vs_is_lower_hex("", 0));
	ck_assert(!vs_is_lower_hex("0123456789ABCDEF", 16));
	ck_assert(!vs_is_lower_hex("abcg", 4));
	ck_assert(!vs_is_lower_hex("ab cd", 5));
	ck_assert(!vs_is_lower_hex("abcd", 3));
	ck_assert(!vs_is_lower_hex("abcd", 5));
	ck_assert(!vs_is_lower_hex(NULL, 0));
	ck_assert(!vs_is_lower_hex("-1", 2));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Buffers                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_buf_init_empty)
{
	struct vs_buf b;

	memset(&b, 0x5a, sizeof(b));
	vs_buf_init(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	ck_assert(!b.oom);
	/* An empty append still yields a NUL-terminated buffer. */
	ck_assert(vs_buf_append(&b, "", 0));
	ck_assert_ptr_nonnull(b.data);
	ck_assert_str_eq(b.data, "");
	vs_buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	vs_buf_free(&b);	/* twice is harmless */
}
END_TEST

START_TEST(test_buf_append_growth)
{
	struct vs_buf b;
	char chunk[1000];
	const size_t total = 100 * 1024;

	vs_buf_init(&b);
	for (size_t off = 0; off < total; off += sizeof(chunk)) {
		size_t n = total - off < sizeof(chunk) ? total - off : sizeof(chunk);
		for (size_t i = 0; i < n; i++)
			chunk[i] = (char)('a' + (off + i) % 26);
		ck_assert(vs_buf_append(&b, chunk, n));
		ck_assert_uint_eq(b.len, off + n);
		ck_assert_int_eq(b.data[b.len], '\0');
		ck_assert(b.cap > b.len);
	}
	ck_assert_uint_eq(b.len, total);
	ck_assert_uint_eq(strlen(b.data), total);
	for (size_t i = 0; i < total; i++)
		ck_assert_int_eq(b.data[i], 'a' + (int)(i % 26));
	ck_assert(!b.oom);
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_buf_puts_binary)
{
	struct vs_buf b;

	vs_buf_init(&b);
	ck_assert(vs_buf_puts(&b, "ab"));
	ck_assert(vs_buf_append(&b, "c\0d", 3));
	ck_assert(vs_buf_puts(&b, "e"));
	ck_assert_uint_eq(b.len, 6);
	ck_assert_mem_eq(b.data, "abc\0de", 7);
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_buf_printf_growth)
{
	struct vs_buf b;
	const size_t big = 100 * 1024;
	char *s = malloc(big + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, 'q', big);
	s[big] = '\0';
	vs_buf_init(&b);
	ck_assert(vs_buf_printf(&b, "<%d>", 42));
	ck_assert_str_eq(b.data, "<42>");
	ck_assert(vs_buf_printf(&b, "[%s]%zu", s, big));
	ck_assert_uint_eq(b.len, 4 + 1 + big + 1 + 6);
	ck_assert_uint_eq(strlen(b.data), b.len);
	ck_assert_mem_eq(b.data, "<42>[qqq", 8);
	ck_assert_str_eq(b.data + 4 + 1 + big, "]102400");
	ck_assert(b.cap > b.len);
	/* Many small writes each keep the buffer terminated. */
	for (int i = 0; i < 5000; i++) {
		size_t before = b.len;
		ck_assert(vs_buf_printf(&b, "%04d,", i));
		ck_assert_uint_eq(b.len, before + 5);
		ck_assert_int_eq(b.data[b.len], '\0');
	}
	ck_assert_str_eq(b.data + b.len - 5, "4999,");
	ck_assert(!b.oom);
	vs_buf_free(&b);
	free(s);
}
END_TEST

START_TEST(test_buf_printf_exact_boundary)
{
	/* Output lengths around the buffer's capacity, to catch an
	 * off-by-one in the "did it fit" test. */
	for (size_t n = 50; n < 600; n++) {
		struct vs_buf b;
		char *s = malloc(n + 1);
		ck_assert_ptr_nonnull(s);
		memset(s, 'z', n);
		s[n] = '\0';
		vs_buf_init(&b);
		ck_assert(vs_buf_puts(&b, "x"));
		ck_assert(vs_buf_printf(&b, "%s", s));
		ck_assert_uint_eq(b.len, n + 1);
		ck_assert_uint_eq(strlen(b.data), n + 1);
		ck_assert_int_eq(b.data[n], 'z');
		vs_buf_free(&b);
		free(s);
	}
}
END_TEST

START_TEST(test_buf_reset)
{
	struct vs_buf b;
	size_t cap;

	vs_buf_init(&b);
	vs_buf_reset(&b);	/* on an empty buffer: no crash */
	ck_assert_uint_eq(b.len, 0);
	ck_assert(vs_buf_puts(&b, "hello world"));
	cap = b.cap;
	vs_buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.data, "");
	ck_assert_uint_eq(b.cap, cap);
	ck_assert(vs_buf_puts(&b, "hi"));
	ck_assert_str_eq(b.data, "hi");
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_buf_oom_sticky)
{
	struct vs_buf b;

	vs_buf_init(&b);
	ck_assert(vs_buf_puts(&b, "abc"));
	/* An impossible reservation fails without touching the contents,
	 * and the failure is remembered until reset. */
	ck_assert(!vs_buf_reserve(&b, SIZE_MAX));
	ck_assert(b.oom);
	ck_assert_str_eq(b.data, "abc");
	ck_assert(!vs_buf_append(&b, "d", 1));
	ck_assert(!vs_buf_printf(&b, "%d", 1));
	ck_assert_uint_eq(b.len, 3);
	vs_buf_reset(&b);
	ck_assert(!b.oom);
	ck_assert(vs_buf_puts(&b, "ok"));
	ck_assert_str_eq(b.data, "ok");
	vs_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* File system                                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_write_all_pipe)
{
	int fds[2];
	char got[32];
	ssize_t n;

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert(vs_write_all(fds[1], "hello, pipe", 11));
	ck_assert(vs_write_all(fds[1], "", 0));
	ck_assert_int_eq(close(fds[1]), 0);
	n = read(fds[0], got, sizeof(got));
	ck_assert_int_eq(n, 11);
	ck_assert_mem_eq(got, "hello, pipe", 11);
	ck_assert_int_eq(read(fds[0], got, sizeof(got)), 0);
	close(fds[0]);
}
END_TEST

START_TEST(test_write_all_file)
{
	const size_t len = 1024 * 1024 + 17;
	char *data = malloc(len), *back = malloc(len);
	char *path;
	int fd;
	size_t got = 0;

	ck_assert_ptr_nonnull(data);
	ck_assert_ptr_nonnull(back);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)(i * 31 + 7);
	make_tmpdir();
	path = vs_path_join(tmpdir, "out.bin");
	ck_assert_ptr_nonnull(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert(vs_write_all(fd, data, len));
	ck_assert_int_eq(close(fd), 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	for (;;) {
		ssize_t n = read(fd, back + got, len - got);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == len) {
			char extra;
			ck_assert_int_eq(read(fd, &extra, 1), 0);
			break;
		}
	}
	close(fd);
	ck_assert_uint_eq(got, len);
	ck_assert_mem_eq(back, data, len);
	free(path);
	free(data);
	free(back);
	rm_tmpdir();
}
END_TEST

START_TEST(test_write_all_bad_fd)
{
	int fds[2];

	ck_assert(!vs_write_all(-1, "x", 1));
	ck_assert_int_eq(pipe(fds), 0);
	/* Writing to the read end fails with EBADF. */
	ck_assert(!vs_write_all(fds[0], "x", 1));
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_mkdir_p_nested)
{
	char *a, *ab, *abc, *withslash;

	umask(022);
	make_tmpdir();
	a = vs_path_join(tmpdir, "a");
	ab = vs_path_join(a, "b");
	abc = vs_path_join(ab, "c");
	ck_assert(vs_mkdir_p(abc, 0750));
	ck_assert(is_dir(a));
	ck_assert(is_dir(ab));
	ck_assert(is_dir(abc));
	ck_assert_int_eq(mode_of(a), 0750);
	ck_assert_int_eq(mode_of(ab), 0750);
	ck_assert_int_eq(mode_of(abc), 0750);
	/* Existing: still true, mode of existing directories untouched. */
	ck_assert(vs_mkdir_p(abc, 0700));
	ck_assert_int_eq(mode_of(abc), 0750);
	ck_assert(vs_mkdir_p(tmpdir, 0700));
	ck_assert(vs_mkdir_p("/", 0755));
	/* A trailing slash and a doubled one are fine. */
	withslash = malloc(strlen(tmpdir) + 16);
	ck_assert_ptr_nonnull(withslash);
	sprintf(withslash, "%s/x//y/", tmpdir);
	ck_assert(vs_mkdir_p(withslash, 0700));
	sprintf(withslash, "%s/x/y", tmpdir);
	ck_assert(is_dir(withslash));
	ck_assert_int_eq(mode_of(withslash), 0700);
	free(withslash);
	free(a);
	free(ab);
	free(abc);
	rm_tmpdir();
}
END_TEST

START_TEST(test_mkdir_p_relative)
{
	char cwd[4096];

	make_tmpdir();
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(tmpdir), 0);
	ck_assert(vs_mkdir_p("rel/one/two", 0755));
	ck_assert(is_dir("rel/one/two"));
	ck_assert_int_eq(chdir(cwd), 0);
	rm_tmpdir();
}
END_TEST

START_TEST(test_mkdir_p_file_in_way)
{
	char *file, *under;
	int fd;

	make_tmpdir();
	file = vs_path_join(tmpdir, "plain");
	ck_assert_ptr_nonnull(file);
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	under = vs_path_join(file, "sub/deeper");
	ck_assert_ptr_nonnull(under);
	ck_assert(!vs_mkdir_p(under, 0700));
	/* The path itself being a regular file is a failure too. */
	ck_assert(!vs_mkdir_p(file, 0700));
	ck_assert(!vs_mkdir_p("", 0700));
	ck_assert(!vs_mkdir_p(NULL, 0700));
	free(file);
	free(under);
	rm_tmpdir();
}
END_TEST

START_TEST(test_fsync_dir)
{
	char *file;
	int fd;

	make_tmpdir();
	ck_assert(vs_fsync_dir(tmpdir));
	file = vs_path_join(tmpdir, "f");
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert(!vs_fsync_dir(file));
	ck_assert(unlink(file) == 0);
	ck_assert(!vs_fsync_dir(file));
	free(file);
	rm_tmpdir();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Strings                                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_path_join)
{
	char *p;

	p = vs_path_join("/var/lib/verstak", "server.db");
	ck_assert_str_eq(p, "/var/lib/verstak/server.db");
	free(p);
	p = vs_path_join("a", "b");
	ck_assert_str_eq(p, "a/b");
	free(p);
	p = vs_path_join("", "x");
	ck_assert_str_eq(p, "/x");
	free(p);
	p = vs_path_join("dir", "");
	ck_assert_str_eq(p, "dir/");
	free(p);
}
END_TEST

START_TEST(test_trim)
{
	char a[] = "  a b \t\n";
	char b[] = "";
	char c[] = " \t\r\n ";
	char d[] = "x";
	char e[] = "lead only   ";
	char f[] = "\v\fboth\v";

	ck_assert_ptr_eq(vs_trim(a), a);
	ck_assert_str_eq(a, "a b");
	ck_assert_str_eq(vs_trim(b), "");
	ck_assert_str_eq(vs_trim(c), "");
	ck_assert_str_eq(vs_trim(d), "x");
	ck_assert_str_eq(vs_trim(e), "lead only");
	ck_assert_str_eq(vs_trim(f), "both");
}
END_TEST

START_TEST(test_strdup0)
{
	const char *src = "value";
	char *p;

	ck_assert_ptr_null(vs_strdup0(NULL));
	p = vs_strdup0(src);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_ne(p, src);
	ck_assert_str_eq(p, "value");
	free(p);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc;

	tc = tcase_create("timestamps");
	tcase_add_test(tc, test_timestamp_epoch);
	tcase_add_test(tc, test_timestamp_known);
	tcase_add_test(tc, test_now_ts_shape);
	tcase_add_test(tc, test_timestamp_roundtrip);
	tcase_add_test(tc, test_parse_ts_basic);
	tcase_add_test(tc, test_parse_ts_variants);
	tcase_add_test(tc, test_parse_ts_rejects);
	tcase_add_test(tc, test_parse_ts_impossible_dates);
	suite_add_tcase(s, tc);

	tc = tcase_create("crypto");
	tcase_add_test(tc, test_hex);
	tcase_add_test(tc, test_random_hex);
	tcase_add_test(tc, test_random_hex_too_many);
	tcase_add_test(tc, test_sha256_vectors);
	tcase_add_test(tc, test_ct_streq);
	tcase_add_test(tc, test_is_lower_hex);
	suite_add_tcase(s, tc);

	tc = tcase_create("buffers");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_buf_init_empty);
	tcase_add_test(tc, test_buf_append_growth);
	tcase_add_test(tc, test_buf_puts_binary);
	tcase_add_test(tc, test_buf_printf_growth);
	tcase_add_test(tc, test_buf_printf_exact_boundary);
	tcase_add_test(tc, test_buf_reset);
	tcase_add_test(tc, test_buf_oom_sticky);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_write_all_pipe);
	tcase_add_test(tc, test_write_all_file);
	tcase_add_test(tc, test_write_all_bad_fd);
	tcase_add_test(tc, test_mkdir_p_nested);
	tcase_add_test(tc, test_mkdir_p_relative);
	tcase_add_test(tc, test_mkdir_p_file_in_way);
	tcase_add_test(tc, test_fsync_dir);
	suite_add_tcase(s, tc);

	tc = tcase_create("strings");
	tcase_add_test(tc, test_path_join);
	tcase_add_test(tc, test_trim);
	tcase_add_test(tc, test_strdup0);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
