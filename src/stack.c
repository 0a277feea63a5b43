/*
 * stack.c - see stack.h. The local-stack supervisor: a private nginx in
 * front of two pools of FastCGI workers, each sharing one listening unix
 * socket: the worker pool for every route, and the upload pool for blob
 * uploads (whose bodies nginx streams as they arrive, so a slow client
 * holds an upload worker, never a sync worker).
 *
 * Owns: <data>/run/ (nginx.conf, pid, logs, temp dirs, fcgi.sock,
 * upl.sock), the listening sockets (kept open here so a
 * replacement worker inherits the very same queue), the worker and nginx
 * child processes, their
 * replacement when they die, and the ordered stop: nginx drains first,
 * then the workers finish their request, then mail senders the workers
 * detached (adopted here as subreaper) get a short grace, and
 * everything is reaped.
 *
 * Must never: serve a request or open the database; busy-loop when
 * children keep dying; return while a child it started is still alive;
 * block signals it needs (everything it waits for goes through
 * sigtimedwait on a blocked set, so no handler races exist).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* close_range, pipe2, strsignal, SOCK_CLOEXEC, prctl */
#endif
#include "stack.h"
#include "log.h"
#include "nginxconf.h"
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FCGI_BACKLOG 1024
#define START_WAIT_MS 10000      /* nginx must accept within this */
#define STOP_GRACE_MS 20000      /* DATA.md 2: in-flight requests, 20 s */
#define KILL_WAIT_MS 5000        /* after SIGKILL, reaping is quick */
/* Mail senders the workers detached (smtp.c) and that we adopted as
 * subreaper: at a stop they get this long to finish their dialogue (it
 * is bounded at 30 s by itself), then they are stopped, so a stop never
 * leaves a process of the server behind. */
#define ADOPTED_GRACE_MS 5000
#define RESPAWN_WINDOW_MS 1000   /* at most RESPAWN_MAX respawns per window */
#define RESPAWN_MAX 10
#define HOLD_MIN_MS 1000         /* back-off when the limit is hit ... */
#define HOLD_MAX_MS 30000        /* ... doubling up to this */
#define NGINX_QUICK_DEATH_MS 5000

/* Temp directories nginx.conf names (see nginxconf.c). nginx would create
 * the last component itself; making them here gives them our mode. */
static const char *const temp_dirs[] = {
	"tmp", "tmp/client_body", "tmp/fastcgi", "tmp/proxy", "tmp/uwsgi",
	"tmp/scgi",
};

struct stack {
	const struct vs_stack_opts *o;
	char *run_dir, *sock_path, *conf_path, *err_path, *pid_path;
	char *upload_sock_path;
	char *blobs_dir;
	char listen[300];        /* "host:port" or "[v6]:port" */
	char started_env[32];    /* VERSTAK_STARTED_AT value */
	int listen_fd;           /* the worker pool's socket */
	int upload_fd;           /* the upload pool's socket */
	int lock_fd;             /* flock on run/stack.lock while we run */
	bool locked;
	pid_t self;
	/* slots 0..workers-1: the worker pool; then the upload pool.
	 * slot = 0: empty, to be respawned */
	pid_t *workers;
	pid_t nginx;             /* 0: not running */
	char **worker_argv;      /* prepared before any fork */
	char **upload_argv;      /* the same with --upload-pool */
	char *wrapper_copy;      /* storage of the split wrapper words */
	/* worker respawn limiter */
	long long window_start, hold_until;
	int window_count, hold_ms;
	/* nginx restart back-off */
	long long nginx_started, nginx_restart_at;
	int nginx_backoff_ms;
	bool up;                 /* announced; from now on nginx is restarted */
	bool stopping;
	sigset_t sigs, old_mask;
	struct sigaction old_pipe;
};

/* ---- setup ------------------------------------------------------------ */

/* fds 0-2 must be open before any socket is created: a socket landing on
 * fd 0 would be inherited wrongly by nginx, and logs need fd 2. */
static bool
ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		int nfd = open("/dev/null", O_RDWR);
		if (nfd < 0)
			return false;
		if (nfd != fd) {
			close(nfd);
			return false;
		}
	}
	return true;
}

static bool
opts_ok(const struct vs_stack_opts *o)
{
	if (o->self_exe == NULL || o->self_exe[0] != '/' ||
	    o->data_dir == NULL || o->data_dir[0] != '/') {
		vs_log_error("stack: self_exe and data_dir must be absolute paths");
		return false;
	}
	if (o->listen_host == NULL || o->listen_host[0] == '\0' ||
	    o->listen_port < 1 || o->listen_port > 65535) {
		vs_log_error("stack: invalid listen address");
		return false;
	}
	if (o->workers < 1 || o->workers > 4096 || o->upload_workers < 1 ||
	    o->upload_workers > 4096) {
		vs_log_error("stack: worker counts must be between 1 and 4096");
		return false;
	}
	if (o->upload_stall_seconds < 1) {
		vs_log_error("stack: the upload stall limit must be positive");
		return false;
	}
	if (o->nginx_path == NULL || o->static_dir == NULL ||
	    o->max_body_bytes <= 0) {
		vs_log_error("stack: nginx path, static dir and body limit are required");
		return false;
	}
	return true;
}

static void
format_listen(struct stack *s)
{
	const char *h = s->o->listen_host;
	bool v6 = strchr(h, ':') != NULL && h[0] != '[';

	snprintf(s->listen, sizeof(s->listen), v6 ? "[%s]:%d" : "%s:%d", h,
		 s->o->listen_port);
}

static bool
make_paths(struct stack *s)
{
	s->run_dir = vs_path_join(s->o->data_dir, "run");
	s->blobs_dir = vs_path_join(s->o->data_dir, "blobs");
	if (s->run_dir == NULL || s->blobs_dir == NULL)
		return false;
	s->sock_path = vs_path_join(s->run_dir, "fcgi.sock");
	/* No longer than "fcgi.sock": both must fit sun_path (108 bytes),
	 * and a longer name would cut the data directory paths allowed. */
	s->upload_sock_path = vs_path_join(s->run_dir, "upl.sock");
	s->conf_path = vs_path_join(s->run_dir, "nginx.conf");
	s->err_path = vs_path_join(s->run_dir, "error.log");
	s->pid_path = vs_path_join(s->run_dir, "nginx.pid");
	return s->sock_path != NULL && s->upload_sock_path != NULL &&
	       s->conf_path != NULL &&
	       s->err_path != NULL && s->pid_path != NULL;
}

/* argv for a worker: [wrapper words...] self_exe --fcgi-worker --data DIR;
 * an upload worker's also says --upload-pool (its log tag, and what ps
 * shows). */
static bool
make_worker_argv(struct stack *s)
{
	const char *w = s->o->worker_wrapper;
	size_t n = 0, words = 0;
	char *save = NULL, *tok;

	if (w != NULL) {
		s->wrapper_copy = strdup(w);
		if (s->wrapper_copy == NULL)
			return false;
		for (const char *p = w; *p != '\0'; p++)
			if (*p != ' ' && (p == w || p[-1] == ' '))
				words++;
	}
	s->worker_argv = calloc(words + 5, sizeof(char *));
	s->upload_argv = calloc(words + 6, sizeof(char *));
	if (s->worker_argv == NULL || s->upload_argv == NULL)
		return false;
	if (s->wrapper_copy != NULL)
		for (tok = strtok_r(s->wrapper_copy, " ", &save); tok != NULL;
		     tok = strtok_r(NULL, " ", &save))
			s->worker_argv[n++] = tok;
	s->worker_argv[n++] = (char *)s->o->self_exe;
	s->worker_argv[n++] = (char *)"--fcgi-worker";
	s->worker_argv[n++] = (char *)"--data";
	s->worker_argv[n++] = (char *)s->o->data_dir;
	s->worker_argv[n] = NULL;
	memcpy(s->upload_argv, s->worker_argv, n * sizeof(char *));
	s->upload_argv[n] = (char *)"--upload-pool";
	s->upload_argv[n + 1] = NULL;
	return true;
}

static bool
make_run_dirs(struct stack *s)
{
	if (!vs_mkdir_p(s->run_dir, 0750)) {
		vs_log_error("cannot create %s: %s", s->run_dir, strerror(errno));
		return false;
	}
	for (size_t i = 0; i < sizeof(temp_dirs) / sizeof(temp_dirs[0]); i++) {
		char *d = vs_path_join(s->run_dir, temp_dirs[i]);
		bool ok = d != NULL && (mkdir(d, 0700) == 0 || errno == EEXIST);
		if (!ok)
			vs_log_error("cannot create %s/%s: %s", s->run_dir,
				     temp_dirs[i], strerror(errno));
		free(d);
		if (!ok)
			return false;
	}
	return true;
}

static int
nginx_worker_processes(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	/* nginx is event driven: a few processes saturate the worker pool. */
	if (n < 1)
		return 1;
	return n > 4 ? 4 : (int)n;
}

/* Renders nginx.conf and puts it in place atomically (temp + rename), so a
 * reload or a concurrent `nginx -t` never reads half a file. */
static bool
write_nginx_conf(struct stack *s)
{
	struct vs_nginx_params p = {
		.run_dir = s->run_dir, .listen = s->listen,
		.fcgi_socket = s->sock_path,
		.upload_socket = s->upload_sock_path,
		.upload_stall_seconds = s->o->upload_stall_seconds,
		.static_dir = s->o->static_dir,
		.blobs_dir = s->blobs_dir, .max_body_bytes = s->o->max_body_bytes,
		.worker_processes = nginx_worker_processes(),
	};
	struct vs_buf b;
	char *tmp = vs_path_join(s->run_dir, ".nginx.conf.XXXXXX");
	bool ok = false;
	int fd = -1;

	vs_buf_init(&b);
	if (tmp == NULL || !vs_nginx_render(&p, &b)) {
		vs_log_error("cannot render nginx.conf (a path contains quotes, "
			     "';', '$', '#', braces, white space or is not absolute)");
		goto out;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		vs_log_error("cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (!vs_write_all(fd, b.data, b.len) || fsync(fd) != 0) {
		vs_log_error("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		vs_log_error("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, s->conf_path) != 0) {
		vs_log_error("cannot rename %s to %s: %s", tmp, s->conf_path,
			     strerror(errno));
		goto out;
	}
	ok = true;
out:
	if (fd >= 0)
		close(fd);
	if (!ok && tmp != NULL)
		unlink(tmp);
	free(tmp);
	vs_buf_free(&b);
	return ok;
}

/* One stack per data directory (DATA.md 1). The kernel drops the lock
 * when we exit, however we exit, so it is never stale. */
static bool
take_run_lock(struct stack *s)
{
	char *path = vs_path_join(s->run_dir, "stack.lock");

	if (path == NULL)
		return false;
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		vs_log_error("cannot open %s: %s", path, strerror(errno));
		free(path);
		return false;
	}
	free(path);
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			vs_log_error("another server is running on %s",
				     s->o->data_dir);
		else
			vs_log_error("flock: %s", strerror(errno));
		return false;
	}
	s->locked = true;
	return true;
}

/* ---- the FastCGI listening socket ------------------------------------ */

static bool
sock_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		vs_log_error("socket path %s is too long for a unix socket "
			     "(max %zu bytes): use a shorter data directory path",
			     path, sizeof(sa->sun_path) - 1);
		return false;
	}
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return true;
}

/* A socket left by a crashed stack is removed; one that still accepts
 * means another stack serves this data directory, which must not happen
 * (DATA.md 1: one server per directory at a time). */
static bool
clear_stale_socket(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd;
	bool live;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return true;
		vs_log_error("cannot stat %s: %s", path, strerror(errno));
		return false;
	}
	if (!sock_addr(path, &sa))
		return false;
	if (S_ISSOCK(st.st_mode)) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			vs_log_error("socket: %s", strerror(errno));
			return false;
		}
		live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (live) {
			vs_log_error("%s accepts connections: another server is "
				     "running on this data directory", path);
			return false;
		}
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		vs_log_error("cannot remove stale %s: %s", path, strerror(errno));
		return false;
	}
	return true;
}

/* A pool's socket is created here, once, and survives every worker: a
 * replacement worker inherits the same queue, so no connection waiting in
 * the backlog is lost when a worker dies. Mode 0600: only this account
 * (and so the private nginx) may connect. */
static bool
open_fcgi_socket(const char *path, int *fdp)
{
	struct sockaddr_un sa;
	mode_t old;
	int rc;

	if (!sock_addr(path, &sa))
		return false;
	*fdp = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*fdp < 0) {
		vs_log_error("socket: %s", strerror(errno));
		return false;
	}
	old = umask(0177);
	rc = bind(*fdp, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc != 0) {
		vs_log_error("bind %s: %s", path, strerror(errno));
		return false;
	}
	if (chmod(path, 0600) != 0) {
		vs_log_error("chmod %s: %s", path, strerror(errno));
		return false;
	}
	if (listen(*fdp, FCGI_BACKLOG) != 0) {
		vs_log_error("listen %s: %s", path, strerror(errno));
		return false;
	}
	return true;
}

/* ---- the public TCP address ------------------------------------------ */

static bool
resolve_listen(const struct stack *s, struct sockaddr_storage *ss,
	       socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[16];
	const char *h = s->o->listen_host;
	size_t hl = strlen(h);
	int rc;

	/* "[::1]" -> "::1" */
	if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, sizeof(port), "%d", s->o->listen_port);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		vs_log_error("cannot resolve listen host %s: %s", host,
			     gai_strerror(rc));
		return false;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

/* A wildcard address is probed through loopback. */
static void
probe_target(struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		if (in->sin_addr.s_addr == htonl(INADDR_ANY))
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
			in6->sin6_addr = in6addr_loopback;
	}
}

/* Fails early with a clear message when the port is taken: otherwise our
 * readiness probe could reach whoever holds it while nginx gives up. */
static bool check_port_free_quiet(const struct stack *s);

/* Whether process pid has path open (path as /proc shows it). */
static bool
has_open(long pid, const char *path)
{
	char dir[64], link[96], target[PATH_MAX];
	struct dirent *e;
	bool found = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
	if ((d = opendir(dir)) == NULL)
		return false;
	while (!found && (e = readdir(d)) != NULL) {
		ssize_t n;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		snprintf(link, sizeof(link), "%s/%.20s", dir, e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			found = strcmp(target, path) == 0;
		}
	}
	(void)closedir(d);
	return found;
}

static bool
is_nginx(long pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	(void)fclose(f);
	return strncmp(comm, "nginx", 5) == 0;
}

/*
 * nginx processes left by an earlier stack on this directory: an nginx
 * master killed with SIGKILL leaves its workers serving the port, and a
 * restart would find it taken. We hold the run lock, so no live stack
 * owns this directory: any nginx with our error.log open is stale.
 */
static void
kill_stale_nginx(const struct stack *s)
{
	char target[PATH_MAX];
	struct dirent *e;
	int killed = 0;
	DIR *d;

	if (realpath(s->err_path, target) == NULL || (d = opendir("/proc")) == NULL)
		return;	/* no earlier run, or nothing to look at */
	while ((e = readdir(d)) != NULL) {
		long pid;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = atol(e->d_name);
		if (pid == (long)getpid() || !is_nginx(pid) || !has_open(pid, target))
			continue;
		if (kill((pid_t)pid, SIGKILL) == 0)
			killed++;
	}
	(void)closedir(d);
	if (killed == 0)
		return;
	vs_log_warn("stopped %d nginx process%s left running by an earlier,"
		    " crashed run", killed, killed == 1 ? "" : "es");
	/* Their sockets close as they exit, a moment after the signal. */
	for (int i = 0; i < 40 && !check_port_free_quiet(s); i++)
		(void)nanosleep(&(struct timespec){ 0, 50000000L }, NULL);
}

static bool
port_free(const struct stack *s, bool quiet)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, rc;

	if (!resolve_listen(s, &ss, &len))
		return false;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		vs_log_error("socket: %s", strerror(errno));
		return false;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	rc = bind(fd, (struct sockaddr *)&ss, len);
	if (rc != 0 && !quiet)
		vs_log_error("cannot listen on %s: %s", s->listen, strerror(errno));
	close(fd);
	return rc == 0;
}

static bool
check_port_free(const struct stack *s)
{
	return port_free(s, false);
}

static bool
check_port_free_quiet(const struct stack *s)
{
	return port_free(s, true);
}

static bool
port_accepts(const struct stack *s)
{
	struct sockaddr_storage ss;
	struct pollfd pfd;
	socklen_t len;
	int fd, err = 0;
	socklen_t elen = sizeof(err);
	bool ok = false;

	if (!resolve_listen(s, &ss, &len))
		return false;
	probe_target(&ss);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		ok = true;
	} else if (errno == EINPROGRESS) {
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, 500) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0)
			ok = err == 0;
	}
	close(fd);
	return ok;
}

/* ---- children --------------------------------------------------------- */

static void
close_fds_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = lowfd; fd < max; fd++)
		close(fd);
}

/* Runs in every child right after fork: die with the supervisor (even if
 * it is SIGKILLed), leave the terminal's process group so a Ctrl-C reaches
 * only the supervisor (which then stops everyone in order), and undo the
 * supervisor's signal setup, which exec would otherwise partly keep. */
static void
child_setup(const struct stack *s)
{
	sigset_t none;

	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
		_exit(127);
	if (getppid() != s->self)   /* the supervisor died before prctl */
		_exit(127);
	(void)setpgid(0, 0);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)signal(sig, SIG_DFL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static int
n_slots(const struct stack *s)
{
	return s->o->workers + s->o->upload_workers;
}

static pid_t
spawn_worker(struct stack *s, int slot)
{
	bool upload = slot >= s->o->workers;
	int fd = upload ? s->upload_fd : s->listen_fd;
	char **argv = upload ? s->upload_argv : s->worker_argv;
	pid_t pid = fork();

	if (pid < 0) {
		vs_log_error("fork (worker): %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		/* as the child does; whichever runs first wins, the other
		 * call fails harmlessly */
		(void)setpgid(pid, pid);
		return pid;
	}
	child_setup(s);
	/* The FastCGI convention: the listening socket is fd 0. */
	if (dup2(fd, 0) < 0 || fcntl(0, F_SETFD, 0) != 0) {
		vs_log_error("worker: dup2: %s", strerror(errno));
		_exit(127);
	}
	close_fds_from(3);
	if (setenv("VERSTAK_STARTED_AT", s->started_env, 1) != 0)
		_exit(127);
	if (s->o->worker_wrapper != NULL)
		execvp(argv[0], argv);
	else
		execv(argv[0], argv);
	vs_log_error("cannot execute %s: %s", argv[0], strerror(errno));
	_exit(127);
}

static void
describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)),
			 WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "stopped with status 0x%x", (unsigned)status);
}

/* Runs `nginx -t` once with its output captured, so a broken
 * configuration fails the start with nginx's own explanation. */
static bool
nginx_config_test(struct stack *s)
{
	char out[4096];
	size_t used = 0;
	int pfd[2], status;
	pid_t pid;
	ssize_t n;

	if (access(s->o->nginx_path, X_OK) != 0) {
		vs_log_error("nginx not found at %s: %s (Debian: apt-get install "
			     "nginx-light)", s->o->nginx_path, strerror(errno));
		return false;
	}
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		vs_log_error("pipe: %s", strerror(errno));
		return false;
	}
	pid = fork();
	if (pid < 0) {
		vs_log_error("fork (nginx -t): %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return false;
	}
	if (pid == 0) {
		child_setup(s);
		if (dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
			_exit(127);
		close_fds_from(3);
		execl(s->o->nginx_path, s->o->nginx_path, "-t", "-q", "-p",
		      s->run_dir, "-c", s->conf_path, "-e", s->err_path,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* Read to EOF (so nginx never blocks on a full pipe), keep the head. */
	for (;;) {
		char chunk[512];
		size_t room = sizeof(out) - 1 - used;

		n = read(pfd[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if ((size_t)n < room)
			room = (size_t)n;
		memcpy(out + used, chunk, room);
		used += room;
	}
	close(pfd[0]);
	out[used] = '\0';
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			vs_log_error("waitpid (nginx -t): %s", strerror(errno));
			return false;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	vs_log_error("nginx configuration test failed (%s):", s->conf_path);
	for (char *save = NULL, *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		vs_log_error("  %s", line);
	return false;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Logs what nginx appended to error.log since `from` (at most the last
 * 2 KiB), e.g. "bind() ... Address already in use". */
static void
log_nginx_errors(const struct stack *s, off_t from)
{
	char buf[2048];
	off_t size = file_size(s->err_path);
	ssize_t n;
	int fd;

	if (size <= from)
		return;
	if (size - from > (off_t)sizeof(buf) - 1)
		from = size - (off_t)sizeof(buf) + 1;
	fd = open(s->err_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		vs_log_error("nginx: %s", line);
}

static bool
start_nginx(struct stack *s)
{
	pid_t pid = fork();
	int null;

	if (pid < 0) {
		vs_log_error("fork (nginx): %s", strerror(errno));
		return false;
	}
	if (pid == 0) {
		child_setup(s);
		null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0)
			_exit(127);
		close_fds_from(3);
		execl(s->o->nginx_path, s->o->nginx_path, "-p", s->run_dir, "-c",
		      s->conf_path, "-e", s->err_path, (char *)NULL);
		vs_log_error("cannot execute %s: %s", s->o->nginx_path,
			     strerror(errno));
		_exit(127);
	}
	/* Also set here: kill(-pgid) must work even before the child ran. */
	(void)setpgid(pid, pid);
	s->nginx = pid;
	s->nginx_started = vs_mono_ms();
	return true;
}

/* nginx writes its pid file after binding its sockets: that file naming
 * our child, plus a successful connect, means it is really ours that
 * listens. */
static bool
nginx_pidfile_is(const struct stack *s, pid_t pid)
{
	char buf[32];
	ssize_t n;
	int fd = open(s->pid_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strtol(buf, NULL, 10) == (long)pid;
}

/* ---- signals and reaping --------------------------------------------- */

/* Waits up to timeout_ms (< 0: 60 s) for one of the blocked signals;
 * returns it, or 0 on timeout. */
static int
wait_signal(const struct stack *s, long long timeout_ms)
{
	struct timespec ts;
	siginfo_t info;
	int sig;

	if (timeout_ms < 0 || timeout_ms > 60000)
		timeout_ms = 60000;
	ts.tv_sec = (time_t)(timeout_ms / 1000);
	ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
	sig = sigtimedwait(&s->sigs, &info, &ts);
	if (sig < 0) {
		if (errno != EAGAIN && errno != EINTR)
			vs_log_warn("sigtimedwait: %s", strerror(errno));
		return 0;
	}
	return sig;
}

static int
worker_slot(const struct stack *s, pid_t pid)
{
	for (int i = 0; s->workers != NULL && i < n_slots(s); i++)
		if (s->workers[i] == pid)
			return i;
	return -1;
}

static void
nginx_died(struct stack *s, pid_t pid, const char *how)
{
	long long now = vs_mono_ms();

	s->nginx = 0;
	/* Its own workers may outlive a killed master: clear the group. */
	if (kill(-pid, SIGKILL) != 0 && errno != ESRCH)
		vs_log_warn("kill nginx group %d: %s", (int)pid, strerror(errno));
	if (s->stopping || !s->up) {   /* start-up reports it itself */
		vs_log_info("nginx %d %s", (int)pid, how);
		return;
	}
	if (now - s->nginx_started < NGINX_QUICK_DEATH_MS) {
		s->nginx_restart_at = now + s->nginx_backoff_ms;
		s->nginx_backoff_ms = s->nginx_backoff_ms * 2 > HOLD_MAX_MS ?
				      HOLD_MAX_MS : s->nginx_backoff_ms * 2;
	} else {
		s->nginx_restart_at = now;
		s->nginx_backoff_ms = HOLD_MIN_MS;
	}
	vs_log_error("nginx %d %s; restarting it in %lld ms (see %s)", (int)pid,
		     how, s->nginx_restart_at - now, s->err_path);
}

/* Collects every exited child (SIGCHLD coalesces, so loop) and marks its
 * slot empty; replacements happen in respawn_workers. As a child
 * subreaper this also collects orphaned nginx worker processes. */
static void
reap_children(struct stack *s)
{
	char how[96];
	int status, slot;
	pid_t pid;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0)
			return;
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ECHILD)
				vs_log_warn("waitpid: %s", strerror(errno));
			return;
		}
		describe_status(status, how, sizeof(how));
		if (pid == s->nginx) {
			nginx_died(s, pid, how);
		} else if ((slot = worker_slot(s, pid)) >= 0) {
			s->workers[slot] = 0;
			if (s->stopping)
				vs_log_info("worker %d %s", (int)pid, how);
			else
				vs_log_warn("worker %d %s; replacing", (int)pid, how);
		}
	}
}

/* At most RESPAWN_MAX replacements per RESPAWN_WINDOW_MS; when workers
 * die faster (a crash loop), hold off, doubling the pause each time the
 * limit is hit again, so a broken worker never makes us spin. */
static bool
respawn_allowed(struct stack *s, long long now)
{
	if (now < s->hold_until)
		return false;
	if (now - s->window_start >= RESPAWN_WINDOW_MS) {
		if (s->window_count < RESPAWN_MAX)
			s->hold_ms = HOLD_MIN_MS;
		s->window_start = now;
		s->window_count = 0;
	}
	if (s->window_count >= RESPAWN_MAX) {
		s->hold_until = now + s->hold_ms;
		vs_log_error("workers are dying too fast (%d replaced within "
			     "%d ms); pausing replacements for %d ms",
			     s->window_count, RESPAWN_WINDOW_MS, s->hold_ms);
		s->hold_ms = s->hold_ms * 2 > HOLD_MAX_MS ? HOLD_MAX_MS :
							    s->hold_ms * 2;
		s->window_start = s->hold_until;
		s->window_count = 0;
		return false;
	}
	s->window_count++;
	return true;
}

static void
respawn_workers(struct stack *s)
{
	long long now = vs_mono_ms();
	pid_t pid;

	for (int i = 0; i < n_slots(s) && !s->stopping; i++) {
		if (s->workers[i] != 0)
			continue;
		if (!respawn_allowed(s, now))
			return;
		pid = spawn_worker(s, i);
		if (pid > 0) {
			s->workers[i] = pid;
			vs_log_info("worker %d started", (int)pid);
		}
	}
}

static void
restart_nginx_if_due(struct stack *s)
{
	if (s->stopping || s->nginx != 0 || s->nginx_restart_at == 0 ||
	    vs_mono_ms() < s->nginx_restart_at)
		return;
	s->nginx_restart_at = 0;
	if (start_nginx(s))
		vs_log_info("nginx restarted (pid %d)", (int)s->nginx);
	else
		s->nginx_restart_at = vs_mono_ms() + HOLD_MIN_MS;
}

/* How long the supervision loop may sleep before something is due. */
static long long
next_timeout(const struct stack *s)
{
	long long now = vs_mono_ms(), t = -1;

	for (int i = 0; i < n_slots(s); i++) {
		if (s->workers[i] == 0) {
			long long due = s->hold_until > now ? s->hold_until :
				s->window_start + RESPAWN_WINDOW_MS;
			t = due > now ? due - now : 0;
			break;
		}
	}
	if (s->nginx == 0 && s->nginx_restart_at != 0) {
		long long n = s->nginx_restart_at > now ?
			      s->nginx_restart_at - now : 0;
		if (t < 0 || n < t)
			t = n;
	}
	/* never 0 in a loop that could not make progress: 10 ms floor */
	return t >= 0 && t < 10 ? 10 : t;
}

/* ---- stopping --------------------------------------------------------- */

static bool
workers_alive(const struct stack *s)
{
	for (int i = 0; s->workers != NULL && i < n_slots(s); i++)
		if (s->workers[i] > 0)
			return true;
	return false;
}

static bool
nginx_alive(const struct stack *s)
{
	return s->nginx > 0;
}

/* Reaps until alive() is false or the time is up. A second SIGINT or
 * SIGTERM cuts the grace period short. */
static bool
wait_until_gone(struct stack *s, bool (*alive)(const struct stack *),
		long long ms)
{
	long long deadline = vs_mono_ms() + ms;
	int sig;

	reap_children(s);
	while (alive(s)) {
		long long left = deadline - vs_mono_ms();
		if (left <= 0)
			return false;
		sig = wait_signal(s, left);
		if (sig == SIGCHLD) {
			reap_children(s);
		} else if (sig == SIGINT || sig == SIGTERM) {
			vs_log_warn("second stop signal: not waiting any longer");
			deadline = vs_mono_ms();
		}
	}
	return true;
}

/* SIGTERM goes to the worker itself (it finishes its request); SIGKILL
 * to its whole process group, so nothing a worker started survives. */
static void
signal_workers(const struct stack *s, int sig)
{
	for (int i = 0; s->workers != NULL && i < n_slots(s); i++) {
		pid_t pid = s->workers[i];

		if (pid <= 0)
			continue;
		if (kill(sig == SIGKILL ? -pid : pid, sig) != 0 && errno != ESRCH)
			vs_log_warn("kill worker %d: %s", (int)pid,
				    strerror(errno));
	}
}


/* The parent pid of a process, from /proc/<pid>/stat ("pid (comm) state
 * ppid ..."; comm may hold spaces and parentheses, so after the last
 * ')'), or -1. */
static pid_t
parent_of(long pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;
	long pp;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %*c %ld", &pp) != 1)
		return -1;
	return (pid_t)pp;
}

/* Whether pid runs the same program file as this process: our workers'
 * mail senders are forks of a worker. Children we did not start (we may
 * have been exec'ed by a script that started others first) are never
 * ours to stop. */
static bool
runs_our_binary(pid_t pid)
{
	char path[64], exe[PATH_MAX], self[PATH_MAX];
	ssize_t n, m;

	snprintf(path, sizeof(path), "/proc/%ld/exe", (long)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	m = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0 || m <= 0)
		return false;
	exe[n] = self[m] = '\0';
	return strcmp(exe, self) == 0;
}

/* The process group to signal for an adopted sender: the session its
 * intermediate parent made with setsid (smtp.c), holding the sender and
 * its dialogue child, or 0 when pid is in no such group of its own. The
 * kernel keeps a group's id from being reused while the group exists. */
static pid_t
sender_group(pid_t pid)
{
	pid_t g = getpgid(pid);

	if (g <= 0 || g == getpgrp() || getsid(pid) != g)
		return 0;
	return g;
}

/* Sends sig to every child of ours that is neither nginx nor a worker
 * but runs our binary: mail senders orphaned to us as subreaper. The
 * sender's whole group gets the signal, its dialogue child included:
 * signalled alone, the sender would die and leave the dialogue child to
 * run out its own deadline. Returns how many there were. */
static int
signal_adopted(const struct stack *s, int sig)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (d == NULL) {
		vs_log_warn("cannot list /proc: %s", strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		pid_t pid;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)atol(e->d_name);
		if (parent_of(pid) != s->self || pid == s->nginx ||
		    worker_slot(s, pid) >= 0 || !runs_our_binary(pid))
			continue;
		pid_t g = sender_group(pid);

		if (kill(g > 0 ? -g : pid, sig) == 0)
			n++;
	}
	(void)closedir(d);
	return n;
}

static bool
adopted_alive(const struct stack *s)
{
	return signal_adopted(s, 0) > 0;	/* signal 0: only checks */
}

/* After nginx and the workers: what they left running (a mail still
 * being sent) gets a short grace, then SIGTERM, then SIGKILL. */
static void
stop_adopted(struct stack *s)
{
	static const int sigs[] = { SIGTERM, SIGKILL };

	reap_children(s);
	if (!adopted_alive(s))
		return;
	vs_log_info("waiting up to %d s for mail still being sent",
		    ADOPTED_GRACE_MS / 1000);
	if (wait_until_gone(s, adopted_alive, ADOPTED_GRACE_MS))
		return;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		int n = signal_adopted(s, sigs[i]);

		if (n > 0)
			vs_log_warn("stopping %d leftover process%s (%s)", n,
				    n == 1 ? "" : "es", strsignal(sigs[i]));
		if (wait_until_gone(s, adopted_alive, KILL_WAIT_MS))
			return;
	}
}

/* nginx first (SIGQUIT: stop accepting, finish in-flight requests), so
 * no new request reaches a worker; then the workers (SIGTERM: finish the
 * current request, exit). Anything over its grace period is killed. */
static void
stop_all(struct stack *s)
{
	s->stopping = true;
	if (s->nginx > 0) {
		vs_log_info("stopping nginx %d", (int)s->nginx);
		if (kill(s->nginx, SIGQUIT) != 0 && errno != ESRCH)
			vs_log_warn("kill nginx: %s", strerror(errno));
		if (!wait_until_gone(s, nginx_alive, STOP_GRACE_MS)) {
			vs_log_warn("nginx %d did not stop in time; killing it",
				    (int)s->nginx);
			if (kill(-s->nginx, SIGKILL) != 0 && errno != ESRCH)
				vs_log_warn("kill nginx: %s", strerror(errno));
			(void)wait_until_gone(s, nginx_alive, KILL_WAIT_MS);
		}
	}
	if (workers_alive(s)) {
		vs_log_info("stopping %d workers", n_slots(s));
		signal_workers(s, SIGTERM);
		if (!wait_until_gone(s, workers_alive, STOP_GRACE_MS)) {
			vs_log_warn("workers did not stop in time; killing them");
			signal_workers(s, SIGKILL);
			(void)wait_until_gone(s, workers_alive, KILL_WAIT_MS);
		}
	}
	/* Orphans handed to us as subreaper: detached mail senders. */
	stop_adopted(s);
}

/* ---- main flow -------------------------------------------------------- */

static bool
setup_signals(struct stack *s)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };

	sigemptyset(&s->sigs);
	sigaddset(&s->sigs, SIGCHLD);
	sigaddset(&s->sigs, SIGINT);
	sigaddset(&s->sigs, SIGTERM);
	sigaddset(&s->sigs, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &s->sigs, &s->old_mask) != 0) {
		vs_log_error("sigprocmask: %s", strerror(errno));
		return false;
	}
	/* A vanished reader of our stdout must not kill the supervisor. */
	if (sigaction(SIGPIPE, &ign, &s->old_pipe) != 0) {
		vs_log_error("sigaction: %s", strerror(errno));
		(void)sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
		return false;
	}
	/* Orphaned nginx workers (their master killed) come to us. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		vs_log_warn("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	return true;
}

static void
restore_signals(struct stack *s)
{
	(void)sigaction(SIGPIPE, &s->old_pipe, NULL);
	(void)sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
}

/* Returns true once nginx listens; false if it died, did not come up in
 * time, or a stop signal arrived (*stop set). */
static bool
wait_nginx_ready(struct stack *s, off_t log_mark, bool *stop)
{
	long long deadline = vs_mono_ms() + START_WAIT_MS;
	pid_t pid = s->nginx;
	int sig;

	while (vs_mono_ms() < deadline) {
		reap_children(s);
		if (s->nginx != pid) {
			vs_log_error("nginx exited during start-up (see %s)",
				     s->err_path);
			log_nginx_errors(s, log_mark);
			return false;
		}
		respawn_workers(s);
		if (nginx_pidfile_is(s, pid) && port_accepts(s))
			return true;
		sig = wait_signal(s, 100);
		if (sig == SIGINT || sig == SIGTERM) {
			*stop = true;
			return false;
		}
	}
	vs_log_error("nginx did not accept connections on %s within %d s",
		     s->listen, START_WAIT_MS / 1000);
	log_nginx_errors(s, log_mark);
	return false;
}

static bool
announce(const struct stack *s)
{
	if (printf("verstak-sync-server listening on http://%s (%d workers, "
		   "%d upload workers, data %s)\n", s->listen, s->o->workers,
		   s->o->upload_workers, s->o->data_dir) < 0 ||
	    fflush(stdout) != 0) {
		vs_log_warn("cannot write the start-up line to stdout: %s",
			    strerror(errno));
		return false;
	}
	return true;
}

static void
supervise(struct stack *s)
{
	for (;;) {
		int sig = wait_signal(s, next_timeout(s));

		if (sig == SIGINT || sig == SIGTERM) {
			vs_log_info("received %s; stopping", strsignal(sig));
			return;
		}
		if (sig == SIGHUP && s->nginx > 0) {
			vs_log_info("SIGHUP: reloading nginx");
			if (kill(s->nginx, SIGHUP) != 0)
				vs_log_warn("kill nginx: %s", strerror(errno));
		}
		reap_children(s);
		respawn_workers(s);
		restart_nginx_if_due(s);
	}
}

static bool
start_workers(struct stack *s)
{
	for (int i = 0; i < n_slots(s); i++) {
		pid_t pid = spawn_worker(s, i);
		if (pid < 0)
			return false;
		s->workers[i] = pid;
	}
	return true;
}

static bool
prepare(struct stack *s)
{
	struct sockaddr_un sa;

	if (!ensure_std_fds()) {
		vs_log_error("cannot open /dev/null for missing standard fds");
		return false;
	}
	format_listen(s);
	snprintf(s->started_env, sizeof(s->started_env), "%lld",
		 (long long)time(NULL));
	s->workers = calloc((size_t)n_slots(s), sizeof(pid_t));
	if (s->workers == NULL || !make_paths(s) || !make_worker_argv(s)) {
		vs_log_error("out of memory");
		return false;
	}
	if (geteuid() == 0)
		vs_log_warn("running as root: nginx and the workers keep root; "
			    "use an unprivileged account");
	/* The socket path must fit sun_path; the checks that another stack
	 * owns this directory or the port come before anything in run/ is
	 * rewritten under a running nginx. */
	if (!sock_addr(s->sock_path, &sa) ||
	    !sock_addr(s->upload_sock_path, &sa) || !make_run_dirs(s) ||
	    !take_run_lock(s))
		return false;
	kill_stale_nginx(s);
	return clear_stale_socket(s->sock_path) &&
	       clear_stale_socket(s->upload_sock_path) &&
	       check_port_free(s) && write_nginx_conf(s) &&
	       nginx_config_test(s) &&
	       open_fcgi_socket(s->sock_path, &s->listen_fd) &&
	       open_fcgi_socket(s->upload_sock_path, &s->upload_fd);
}

static void
close_socket(int fd, const char *path)
{
	if (fd < 0)
		return;
	close(fd);
	if (path != NULL && unlink(path) != 0 && errno != ENOENT)
		vs_log_warn("cannot remove %s: %s", path, strerror(errno));
}

static void
cleanup(struct stack *s)
{
	close_socket(s->listen_fd, s->sock_path);
	close_socket(s->upload_fd, s->upload_sock_path);
	/* run/ is ours only while we hold the lock: never touch the files of
	 * another stack that refused us. */
	if (s->locked && unlink(s->pid_path) != 0 && errno != ENOENT)
		vs_log_warn("cannot remove %s: %s", s->pid_path, strerror(errno));
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->run_dir);
	free(s->blobs_dir);
	free(s->sock_path);
	free(s->upload_sock_path);
	free(s->conf_path);
	free(s->err_path);
	free(s->pid_path);
	free(s->workers);
	free(s->worker_argv);
	free(s->upload_argv);
	free(s->wrapper_copy);
}

int
vs_stack_run(const struct vs_stack_opts *o)
{
	struct stack s = { .o = o, .listen_fd = -1, .upload_fd = -1,
			   .lock_fd = -1,
			   .hold_ms = HOLD_MIN_MS,
			   .nginx_backoff_ms = HOLD_MIN_MS };
	bool stop = false, ok = false;
	off_t mark;

	if (o == NULL || !opts_ok(o))
		return 2;
	s.self = getpid();
	if (!setup_signals(&s))
		return 1;
	if (prepare(&s) && start_workers(&s)) {
		mark = file_size(s.err_path);
		if (start_nginx(&s) && wait_nginx_ready(&s, mark, &stop)) {
			ok = s.up = true;
			vs_log_info("nginx %d, %d workers and %d upload workers "
				    "running", (int)s.nginx, o->workers,
				    o->upload_workers);
			(void)announce(&s);
			supervise(&s);
		}
	}
	stop_all(&s);
	cleanup(&s);
	restore_signals(&s);
	if (ok || stop) {
		vs_log_info("stopped");
		return 0;
	}
	return 1;
}
