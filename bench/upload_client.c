/*
 * upload_client.c - load generator for blob uploads (bench/blobs.py).
 *
 * Why not wrk: its Lua script has to build every unique 1 MiB body as a
 * new Lua string (two copies, a hash and a garbage collection per
 * request), which on a 2-core machine costs more CPU than the server
 * spends on the upload, so wrk measured itself. Here the body is one
 * random buffer sent with writev behind a 32-byte prefix that makes the
 * content of every request unique: the kernel copies the bytes once, as
 * it would for any real client.
 *
 * Usage: upload_client HOST PORT TOKEN CONNECTIONS SECONDS SIZE
 * Prints one JSON object: requests, seconds, rps, p50_ms, p99_ms,
 * non2xx, errors. A measurement tool: it asserts nothing.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BOUNDARY "----verstakUploadBench9f3Kq"
#define PREFIX_LEN 32
#define MAX_SAMPLES (1u << 20)

static const char *g_host, *g_token;
static int g_port;
static size_t g_size;
static double g_end;
static unsigned char *g_base;	/* g_size random bytes */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static double *g_lat;		/* milliseconds */
static size_t g_n, g_non2xx, g_errors;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
dial(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		return -1;
	sa.sin_port = htons((uint16_t)g_port);
	if (inet_pton(AF_INET, g_host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int
send_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Reads one response; returns its status, or -1 when the connection
 * broke. Bodies are small JSON answers. */
static int
read_response(int fd, char *buf, size_t cap)
{
	size_t len = 0, need = 0;
	char *end = NULL;
	int status;

	for (;;) {
		ssize_t r;

		if (end != NULL && len >= need)
			break;
		if (len == cap)
			return -1;
		r = read(fd, buf + len, cap - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		if (end == NULL) {
			char *cl;

			buf[len < cap ? len : cap - 1] = '\0';
			end = memmem(buf, len, "\r\n\r\n", 4);
			if (end == NULL)
				continue;
			cl = strcasestr(buf, "\r\nContent-Length:");
			need = (size_t)(end + 4 - buf) +
				(cl != NULL && cl < end ?
				 strtoul(cl + 17, NULL, 10) : 0);
		}
	}
	if (sscanf(buf, "HTTP/1.%*c %d", &status) != 1)
		return -1;
	return status;
}

static void *
run(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	char head[1024], part[256], prefix[PREFIX_LEN + 1], resp[4096];
	static const char tail[] = "\r\n--" BOUNDARY "--\r\n";
	double *lat = malloc(sizeof(double) * 65536);
	size_t n = 0, non2xx = 0, errors = 0, cap = 65536;
	unsigned long counter = 0;
	unsigned rnd;
	int fd = -1;

	if (lat == NULL)
		return NULL;
	rnd = (unsigned)time(NULL) ^ (id * 2654435761u) ^ (unsigned)getpid();
	snprintf(part, sizeof(part),
		 "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"file\";"
		 " filename=\"bench.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n");
	while (now_s() < g_end) {
		size_t body = strlen(part) + g_size + sizeof(tail) - 1;
		struct iovec iov[5];
		double t0;
		int hl, st;

		if (fd < 0 && (fd = dial()) < 0) {
			errors++;
			usleep(10000);
			continue;
		}
		snprintf(prefix, sizeof(prefix), "%08x%08x%016lx", id, rnd,
			 ++counter);
		hl = snprintf(head, sizeof(head),
			      "POST /api/v1/blobs/ HTTP/1.1\r\nHost: %s:%d\r\n"
			      "Authorization: Bearer %s\r\n"
			      "Content-Type: multipart/form-data; boundary=" BOUNDARY "\r\n"
			      "Content-Length: %zu\r\n\r\n",
			      g_host, g_port, g_token, body);
		iov[0] = (struct iovec){ head, (size_t)hl };
		iov[1] = (struct iovec){ part, strlen(part) };
		iov[2] = (struct iovec){ prefix, PREFIX_LEN };
		iov[3] = (struct iovec){ g_base + PREFIX_LEN, g_size - PREFIX_LEN };
		iov[4] = (struct iovec){ (void *)tail, sizeof(tail) - 1 };
		t0 = now_s();
		if (send_all(fd, iov, 5) != 0 ||
		    (st = read_response(fd, resp, sizeof(resp))) < 0) {
			errors++;
			close(fd);
			fd = -1;
			continue;
		}
		if (st < 200 || st > 299)
			non2xx++;
		if (n == cap) {
			double *more = realloc(lat, sizeof(double) * cap * 2);

			if (more == NULL)
				break;
			lat = more;
			cap *= 2;
		}
		lat[n++] = (now_s() - t0) * 1000.0;
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&g_mu);
	for (size_t i = 0; i < n && g_n < MAX_SAMPLES; i++)
		g_lat[g_n++] = lat[i];
	g_non2xx += non2xx;
	g_errors += errors;
	pthread_mutex_unlock(&g_mu);
	free(lat);
	return NULL;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	pthread_t th[256];
	unsigned conns;
	double secs, t0, elapsed;
	FILE *ur;

	if (argc != 7) {
		fprintf(stderr, "usage: %s HOST PORT TOKEN CONNECTIONS SECONDS SIZE\n",
			argv[0]);
		return 2;
	}
	g_host = argv[1];
	g_port = atoi(argv[2]);
	g_token = argv[3];
	conns = (unsigned)atoi(argv[4]);
	secs = atof(argv[5]);
	g_size = strtoul(argv[6], NULL, 10);
	if (conns == 0 || conns > 256 || g_size <= PREFIX_LEN) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	g_base = malloc(g_size);
	g_lat = malloc(sizeof(double) * MAX_SAMPLES);
	ur = fopen("/dev/urandom", "rb");
	if (g_base == NULL || g_lat == NULL || ur == NULL ||
	    fread(g_base, 1, g_size, ur) != g_size) {
		fprintf(stderr, "cannot prepare the body\n");
		return 1;
	}
	fclose(ur);
	t0 = now_s();
	g_end = t0 + secs;
	for (unsigned i = 0; i < conns; i++)
		if (pthread_create(&th[i], NULL, run, (void *)(uintptr_t)(i + 1)) != 0) {
			fprintf(stderr, "cannot start a thread\n");
			return 1;
		}
	for (unsigned i = 0; i < conns; i++)
		pthread_join(th[i], NULL);
	elapsed = now_s() - t0;
	qsort(g_lat, g_n, sizeof(double), cmp);
	printf("{\"requests\": %zu, \"seconds\": %.3f, \"rps\": %.1f, "
	       "\"p50_ms\": %.2f, \"p99_ms\": %.2f, \"non2xx\": %zu, \"errors\": %zu}\n",
	       g_n, elapsed, (double)g_n / elapsed,
	       g_n ? g_lat[g_n / 2] : 0.0,
	       g_n ? g_lat[(size_t)((double)g_n * 0.99)] : 0.0,
	       g_non2xx, g_errors);
	free(g_lat);
	free(g_base);
	return 0;
}
