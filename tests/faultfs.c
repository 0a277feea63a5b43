/*
 * faultfs.c - an LD_PRELOAD fault injector for the blob tests: makes
 * write() or fsync() fail on files whose path contains a marker
 * (".upload-" by default), as a full or failing disk would.
 *
 * Built by tests/integration/test_blobs.py with
 *   cc -shared -fPIC -o faultfs.so tests/faultfs.c -ldl
 * and preloaded into the whole local stack (nginx included): only files
 * whose path contains the marker are affected, so nginx and the database
 * are left alone.
 *
 * What to inject is read from the file named by VS_FAULT_CTL each time
 * a matching file is opened, so one running stack can go from healthy
 * to failing and back. Its lines (empty or missing file = no fault):
 *   write_after=N     write() fails once N bytes went to the file
 *                     (a write crossing N is cut short at N first)
 *   fsync=1           fsync()/fdatasync() fail
 *   errno=ENOSPC|EIO|EDQUOT   the error to fail with (default ENOSPC)
 *   marker=TEXT       path substring to match (default ".upload-")
 *
 * Must never: change the behaviour of any other file, or of anything
 * when VS_FAULT_CTL is unset.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096

struct plan {
	long long write_after;  /* -1 = writes succeed */
	int fsync_fails;
	int err;
};

/* Per tracked descriptor: the plan in force when it was opened. */
static struct {
	int on;
	long long written;
	struct plan plan;
} fds[MAX_FD];

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*fd_fn)(int);

static void *
next(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (f == NULL)
		abort();	/* a test tool: fail loudly */
	return f;
}

static int
parse_errno(const char *s)
{
	if (strncmp(s, "EIO", 3) == 0)
		return EIO;
	if (strncmp(s, "EDQUOT", 6) == 0)
		return EDQUOT;
	return ENOSPC;
}

/* Reads the control file; 0 when nothing is to be injected for path. */
static int
load_plan(const char *path, struct plan *p)
{
	static open_fn real_open;
	const char *ctl = getenv("VS_FAULT_CTL");
	char buf[512], marker[128] = ".upload-", *save = NULL;
	int fd;
	ssize_t n;

	p->write_after = -1;
	p->fsync_fails = 0;
	p->err = ENOSPC;
	if (ctl == NULL || path == NULL || strstr(path, ctl) != NULL)
		return 0;
	if (real_open == NULL)
		real_open = (open_fn)next("open");
	fd = real_open(ctl, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *l = strtok_r(buf, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "write_after=", 12) == 0)
			p->write_after = atoll(l + 12);
		else if (strncmp(l, "fsync=", 6) == 0)
			p->fsync_fails = atoi(l + 6);
		else if (strncmp(l, "errno=", 6) == 0)
			p->err = parse_errno(l + 6);
		else if (strncmp(l, "marker=", 7) == 0)
			snprintf(marker, sizeof(marker), "%s", l + 7);
	}
	if (strstr(path, marker) == NULL)
		return 0;
	return p->write_after >= 0 || p->fsync_fails;
}

static int
track(int fd, const char *path)
{
	struct plan p;

	if (fd >= 0 && fd < MAX_FD) {
		fds[fd].on = load_plan(path, &p);
		fds[fd].written = 0;
		fds[fd].plan = p;
	}
	return fd;
}

static mode_t
mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int
open(const char *path, int flags, ...)
{
	static open_fn real;
	va_list ap;
	mode_t m;
	int saved, fd;

	va_start(ap, flags);
	m = mode_arg(flags, ap);
	va_end(ap);
	if (real == NULL)
		real = (open_fn)next("open");
	fd = real(path, flags, m);
	saved = errno;
	track(fd, path);
	errno = saved;
	return fd;
}

int
open64(const char *path, int flags, ...)
{
	static open_fn real;
	va_list ap;
	mode_t m;
	int saved, fd;

	va_start(ap, flags);
	m = mode_arg(flags, ap);
	va_end(ap);
	if (real == NULL)
		real = (open_fn)next("open64");
	fd = real(path, flags, m);
	saved = errno;
	track(fd, path);
	errno = saved;
	return fd;
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	static openat_fn real;
	va_list ap;
	mode_t m;
	int saved, fd;

	va_start(ap, flags);
	m = mode_arg(flags, ap);
	va_end(ap);
	if (real == NULL)
		real = (openat_fn)next("openat");
	fd = real(dirfd, path, flags, m);
	saved = errno;
	track(fd, path);
	errno = saved;
	return fd;
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
	static openat_fn real;
	va_list ap;
	mode_t m;
	int saved, fd;

	va_start(ap, flags);
	m = mode_arg(flags, ap);
	va_end(ap);
	if (real == NULL)
		real = (openat_fn)next("openat64");
	fd = real(dirfd, path, flags, m);
	saved = errno;
	track(fd, path);
	errno = saved;
	return fd;
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	static write_fn real;
	ssize_t w;

	if (real == NULL)
		real = (write_fn)next("write");
	if (fd < 0 || fd >= MAX_FD || !fds[fd].on || fds[fd].plan.write_after < 0)
		return real(fd, buf, n);
	if (fds[fd].written >= fds[fd].plan.write_after) {
		errno = fds[fd].plan.err;
		return -1;
	}
	if ((long long)n > fds[fd].plan.write_after - fds[fd].written)
		n = (size_t)(fds[fd].plan.write_after - fds[fd].written);
	w = real(fd, buf, n);
	if (w > 0)
		fds[fd].written += w;
	return w;
}

static int
sync_common(int fd, const char *name, fd_fn *real)
{
	if (*real == NULL)
		*real = (fd_fn)next(name);
	if (fd >= 0 && fd < MAX_FD && fds[fd].on && fds[fd].plan.fsync_fails) {
		errno = fds[fd].plan.err;
		return -1;
	}
	return (*real)(fd);
}

int
fsync(int fd)
{
	static fd_fn real;

	return sync_common(fd, "fsync", &real);
}

int
fdatasync(int fd)
{
	static fd_fn real;

	return sync_common(fd, "fdatasync", &real);
}

int
close(int fd)
{
	static fd_fn real;

	if (real == NULL)
		real = (fd_fn)next("close");
	if (fd >= 0 && fd < MAX_FD)
		fds[fd].on = 0;
	return real(fd);
}
