/*
 * test_nginxconf.c - unit tests of the generated nginx.conf: the values
 * that matter are in it, unsafe paths are refused, and the real nginx
 * (VS_NGINX, default /usr/sbin/nginx) accepts the file with `nginx -t`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nginxconf.h"
#include "util.h"

static char tmpdir[64];
static char run_dir[128], sock[160], upload_sock[160], static_dir[128],
	blobs_dir[128];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vs-nginxconf-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(run_dir, sizeof(run_dir), "%s/run", tmpdir);
	snprintf(sock, sizeof(sock), "%s/run/fcgi.sock", tmpdir);
	snprintf(upload_sock, sizeof(upload_sock), "%s/run/upl.sock",
		 tmpdir);
	snprintf(static_dir, sizeof(static_dir), "%s/static", tmpdir);
	snprintf(blobs_dir, sizeof(blobs_dir), "%s/blobs", tmpdir);
	ck_assert(vs_mkdir_p(run_dir, 0750));
	ck_assert(vs_mkdir_p(static_dir, 0750));
	ck_assert(vs_mkdir_p(blobs_dir, 0750));
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
teardown(void)
{
	(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct vs_nginx_params
params(void)
{
	struct vs_nginx_params p = {
		.run_dir = run_dir, .listen = "127.0.0.1:47732",
		.fcgi_socket = sock, .upload_socket = upload_sock,
		.static_dir = static_dir,
		.blobs_dir = blobs_dir, .max_body_bytes = 269484032LL,
		.worker_processes = 2, .upload_stall_seconds = 60,
	};
	return p;
}

static bool
renders(const struct vs_nginx_params *p)
{
	struct vs_buf b;
	bool ok;

	vs_buf_init(&b);
	ok = vs_nginx_render(p, &b);
	vs_buf_free(&b);
	return ok;
}

static void
assert_contains(const char *hay, const char *needle)
{
	ck_assert_msg(strstr(hay, needle) != NULL, "missing in nginx.conf: %s",
		      needle);
}

START_TEST(test_values)
{
	struct vs_nginx_params p = params();
	struct vs_buf b;
	char want[512];

	vs_buf_init(&b);
	ck_assert(vs_nginx_render(&p, &b));
	assert_contains(b.data, "daemon off;\n");
	assert_contains(b.data, "worker_processes 2;\n");
	assert_contains(b.data, "listen 127.0.0.1:47732;\n");
	assert_contains(b.data, "client_max_body_size 269484032;\n");
	assert_contains(b.data, "large_client_header_buffers 4 16k;");
	assert_contains(b.data, "worker_connections 1024;");
	assert_contains(b.data, "server_tokens off;");
	assert_contains(b.data, "gzip off;");
	assert_contains(b.data, "fastcgi_keep_conn off;");
	assert_contains(b.data, "fastcgi_intercept_errors off;");
	assert_contains(b.data, "fastcgi_param HTTPS $https if_not_empty;");
	assert_contains(b.data, "fastcgi_param REMOTE_ADDR $remote_addr;");
	assert_contains(b.data, "internal;");
	assert_contains(b.data, "X-Frame-Options \"DENY\" always;");
	assert_contains(b.data,
		"'{\"error\":\"request body is too large\","
		"\"code\":\"request_too_large\"}\\n'");
	assert_contains(b.data,
		"return 502 '{\"error\":\"service unavailable\","
		"\"code\":\"internal_error\"}\\n'");
	snprintf(want, sizeof(want), "fastcgi_pass unix:%s;\n", sock);
	assert_contains(b.data, want);
	/* uploads (POST under /api/v1/blobs/): the upload pool, streamed,
	 * nginx's body timeout after the worker's 60 s stall limit */
	snprintf(want, sizeof(want),
		 "map $request_method $vs_blob_pool {\n"
		 "        POST unix:%s;\n"
		 "        default unix:%s;\n", upload_sock, sock);
	assert_contains(b.data, want);
	assert_contains(b.data,
		"location /api/v1/blobs/ {\n"
		"            fastcgi_pass $vs_blob_pool;\n"
		"            fastcgi_request_buffering off;\n"
		"            client_body_buffer_size 256k;\n"
		"            client_body_timeout 75s;\n");
	snprintf(want, sizeof(want), "alias %s/;", static_dir);
	assert_contains(b.data, want);
	snprintf(want, sizeof(want), "alias %s/;", blobs_dir);
	assert_contains(b.data, want);
	snprintf(want, sizeof(want), "pid %s/nginx.pid;", run_dir);
	assert_contains(b.data, want);
	snprintf(want, sizeof(want), "client_body_temp_path %s/tmp/", run_dir);
	assert_contains(b.data, want);
	/* a private nginx never writes to the system locations */
	ck_assert_ptr_null(strstr(b.data, "/var/"));
	ck_assert_ptr_null(strstr(b.data, "include "));
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_ipv6_and_auto)
{
	struct vs_nginx_params p = params();
	struct vs_buf b;

	p.listen = "[::1]:47732";
	p.worker_processes = 0;
	vs_buf_init(&b);
	ck_assert(vs_nginx_render(&p, &b));
	assert_contains(b.data, "listen [::1]:47732;\n");
	assert_contains(b.data, "worker_processes auto;\n");
	vs_buf_free(&b);
}
END_TEST

START_TEST(test_rejects_unsafe)
{
	static const char *const bad[] = {
		"/tmp/a\"b", "/tmp/a'b", "/tmp/a;b", "/tmp/a\nb", "/tmp/a b",
		"/tmp/a{b", "/tmp/a}b", "/tmp/a$b", "/tmp/a#b", "/tmp/a\\b",
		"/tmp/a\tb", "relative/path", "",
	};
	struct vs_nginx_params p;

	ck_assert(renders((p = params(), &p)));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = params();
		p.run_dir = bad[i];
		ck_assert_msg(!renders(&p), "run_dir accepted: %s", bad[i]);
		p = params();
		p.fcgi_socket = bad[i];
		ck_assert_msg(!renders(&p), "socket accepted: %s", bad[i]);
		p = params();
		p.upload_socket = bad[i];
		ck_assert_msg(!renders(&p), "upload socket accepted: %s", bad[i]);
		p = params();
		p.static_dir = bad[i];
		ck_assert_msg(!renders(&p), "static accepted: %s", bad[i]);
		p = params();
		p.blobs_dir = bad[i];
		ck_assert_msg(!renders(&p), "blobs accepted: %s", bad[i]);
	}
	p = params();
	p.listen = "127.0.0.1:80; include /etc/passwd";
	ck_assert(!renders(&p));
	p = params();
	p.listen = "";
	ck_assert(!renders(&p));
	p = params();
	p.fcgi_socket = NULL;
	ck_assert(!renders(&p));
	p = params();
	p.upload_socket = NULL;
	ck_assert(!renders(&p));
	p = params();
	p.upload_stall_seconds = 0;
	ck_assert(!renders(&p));
	p = params();
	p.max_body_bytes = 0;
	ck_assert(!renders(&p));
	ck_assert(!renders(NULL));
}
END_TEST

static const char *
nginx_bin(void)
{
	const char *n = getenv("VS_NGINX");

	return n != NULL && *n != '\0' ? n : "/usr/sbin/nginx";
}

/* Runs nginx -t on conf; returns its exit status (output to log). */
static int
nginx_test(const char *conf, const char *log)
{
	char err[200];
	int status, fd;
	pid_t pid;

	snprintf(err, sizeof(err), "%s/error.log", run_dir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execl(nginx_bin(), nginx_bin(), "-t", "-p", run_dir, "-c", conf,
		      "-e", err, (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void
print_file(const char *path)
{
	char buf[2048];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	while (fgets(buf, sizeof(buf), f) != NULL)
		fprintf(stderr, "  %s", buf);
	fclose(f);
}

START_TEST(test_nginx_accepts)
{
	struct vs_nginx_params p = params();
	struct vs_buf b;
	char conf[200], log[200];
	int fd, rc;

	if (access(nginx_bin(), X_OK) != 0) {
		fprintf(stderr, "SKIP nginx -t: %s not found (set VS_NGINX or "
			"apt-get install nginx-light)\n", nginx_bin());
		return;
	}
	snprintf(log, sizeof(log), "%s/nginx-t.out", tmpdir);
	/* as the stack does: nginx creates only the last component of
	 * each temp path */
	snprintf(conf, sizeof(conf), "%s/tmp", run_dir);
	ck_assert(vs_mkdir_p(conf, 0700));
	snprintf(conf, sizeof(conf), "%s/nginx.conf", run_dir);
	vs_buf_init(&b);
	ck_assert(vs_nginx_render(&p, &b));
	fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert(vs_write_all(fd, b.data, b.len));
	ck_assert_int_eq(close(fd), 0);
	vs_buf_free(&b);
	rc = nginx_test(conf, log);
	if (rc != 0) {
		fprintf(stderr, "nginx -t failed (%d):\n", rc);
		print_file(log);
	}
	ck_assert_int_eq(rc, 0);
}
END_TEST

static Suite *
nginxconf_suite(void)
{
	Suite *s = suite_create("nginxconf");
	TCase *tc = tcase_create("render");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_ipv6_and_auto);
	tcase_add_test(tc, test_rejects_unsafe);
	tcase_add_test(tc, test_nginx_accepts);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(nginxconf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
