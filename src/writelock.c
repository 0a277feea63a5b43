/*
 * writelock.c - see writelock.h.
 *
 * The shared object lives in /dev/shm (shm_open), so a reboot clears it:
 * a mutex word left "locked" by a process of an earlier boot can never
 * outlive that boot. Initialisation is serialised with flock on the
 * object itself (vs_shm_map) and marked by a magic value written after
 * the mutex.
 */
#include "writelock.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>

#define WLOCK_MAGIC 0x56534c34u	/* "VSL4": layout and mutex type */
/* How long a writer waits for another's fsync that covers its commit
 * before it syncs itself: that fsync started first, so it normally ends
 * first; the bound only matters when its process died inside it. */
#define SYNC_WAIT_MS 200

struct vs_wlock_shared {
	pthread_mutex_t mutex;
	volatile uint32_t magic;
	/* The durable watermark (writelock.h); 0 in a new object. Only
	 * touched with __atomic builtins, like storage_failed. */
	int64_t durable_seq;
	int32_t storage_failed;	/* sticky: an fsync of ours failed */
	/* Shared WAL syncs (vs_wlock_sync). A commit's generation is
	 * handed out after its COMMIT returned, so a sync that reads
	 * commit_gen = G before it starts covers every generation <= G.
	 * sync_started: the highest G of a sync that began; synced: of
	 * one that ended well. done_seq changes after each sync that
	 * ends (the futex word); waiters counts who sleeps on it. */
	uint64_t commit_gen;
	uint64_t sync_started;
	uint64_t synced;
	uint32_t done_seq;
	uint32_t waiters;
};

static bool
init_shared(struct vs_wlock_shared *s)
{
	pthread_mutexattr_t a;
	bool ok;

	if (pthread_mutexattr_init(&a) != 0)
		return false;
	/* ERRORCHECK: a second connection of the same thread asking for the
	 * queue gets EDEADLK at once instead of waiting out its timeout. */
	ok = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0 &&
	     pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0 &&
	     pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK) == 0 &&
	     pthread_mutex_init(&s->mutex, &a) == 0;
	(void)pthread_mutexattr_destroy(&a);
	if (ok) {
		__sync_synchronize();
		s->magic = WLOCK_MAGIC;
	}
	return ok;
}

void *
vs_shm_map(const char *name, size_t size, vs_shm_init_fn init)
{
	void *p = NULL;
	struct stat st;
	int fd;

	fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	if (flock(fd, LOCK_EX) != 0)
		goto out;
	/* tmpfs allocates pages as they are touched: parts of the object
	 * no one writes cost nothing. */
	if (fstat(fd, &st) != 0 ||
	    ((size_t)st.st_size < size && ftruncate(fd, (off_t)size) != 0))
		goto unlock;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		p = NULL;
		goto unlock;
	}
	if (!init(p)) {
		(void)munmap(p, size);
		p = NULL;
	}
unlock:
	(void)flock(fd, LOCK_UN);
out:
	(void)close(fd);	/* the mapping stays valid */
	return p;
}

/* vs_shm_init_fn of the writer queue. */
static bool
init_queue(void *p)
{
	struct vs_wlock_shared *s = p;

	return s->magic == WLOCK_MAGIC || init_shared(s);
}

bool
vs_shm_name(const char *db_path, const char *kind, char *name, size_t size)
{
	struct stat st;
	int n;

	if (stat(db_path, &st) != 0)
		return false;
	n = snprintf(name, size, "/verstak-%s-%llx-%llx-%lu", kind,
		     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		     (unsigned long)getuid());
	return n > 0 && (size_t)n < size;
}

/* The object's name: one per database file (device, inode) and user. */
static bool
shared_name(const char *db_path, char *name, size_t size)
{
	return vs_shm_name(db_path, "wlock4", name, size);
}

void
vs_wlock_open(struct vs_wlock *w, const char *db_path)
{
	char name[96];

	memset(w, 0, sizeof(*w));
	if (!shared_name(db_path, name, sizeof(name)))
		return;
	w->shm = vs_shm_map(name, sizeof(*w->shm), init_queue);
	if (w->shm == NULL)
		vs_log_warn("db: no shared writer queue (%s); waiting on SQLite alone",
			    strerror(errno));
}

void
vs_wlock_close(struct vs_wlock *w)
{
	if (w->shm == NULL)
		return;
	vs_wlock_release(w);
	(void)munmap(w->shm, sizeof(*w->shm));
	memset(w, 0, sizeof(*w));
}

bool
vs_wlock_acquire(struct vs_wlock *w, unsigned timeout_ms)
{
	struct timespec until;
	int rc;

	if (w->shm == NULL || w->held)
		return w->held;
	if (clock_gettime(CLOCK_REALTIME, &until) != 0)
		return false;
	until.tv_sec += timeout_ms / 1000u;
	until.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	rc = pthread_mutex_timedlock(&w->shm->mutex, &until);
	if (rc == EOWNERDEAD) {
		/* The holder died mid-transaction; SQLite rolled its
		 * transaction back, so the mutex guards nothing stale. */
		rc = pthread_mutex_consistent(&w->shm->mutex);
	}
	w->held = rc == 0;
	return w->held;
}

void
vs_wlock_release(struct vs_wlock *w)
{
	if (w->shm != NULL && w->held) {
		(void)pthread_mutex_unlock(&w->shm->mutex);
		w->held = false;
	}
}

int64_t
vs_wlock_durable_seq(const struct vs_wlock *w)
{
	if (w->shm == NULL)
		return INT64_MAX;
	return __atomic_load_n(&w->shm->durable_seq, __ATOMIC_ACQUIRE);
}

bool
vs_wlock_storage_failed(const struct vs_wlock *w)
{
	return w->shm != NULL &&
	       __atomic_load_n(&w->shm->storage_failed, __ATOMIC_ACQUIRE) != 0;
}

void
vs_wlock_mark_storage_failed(struct vs_wlock *w)
{
	if (w->shm != NULL)
		__atomic_store_n(&w->shm->storage_failed, 1, __ATOMIC_RELEASE);
}

void
vs_wlock_reset(struct vs_wlock *w)
{
	if (w->shm == NULL)
		return;
	__atomic_store_n(&w->shm->durable_seq, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&w->shm->storage_failed, 0, __ATOMIC_RELEASE);
	/* a process that died waiting left its count behind */
	__atomic_store_n(&w->shm->waiters, 0, __ATOMIC_RELEASE);
}

void
vs_wlock_raise_durable_seq(struct vs_wlock *w, int64_t seq)
{
	int64_t cur;

	if (w->shm == NULL)
		return;
	if (vs_wlock_storage_failed(w))
		return;	/* nothing is known to be durable any more */
	cur = __atomic_load_n(&w->shm->durable_seq, __ATOMIC_RELAXED);
	/* A failed exchange reloads cur; stop once someone else has
	 * published at least as much. */
	while (cur < seq &&
	       !__atomic_compare_exchange_n(&w->shm->durable_seq, &cur, seq,
					    true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED))
		;
}

bool
vs_wlock_unlink(const char *db_path)
{
	char name[96];

	if (!shared_name(db_path, name, sizeof(name)))
		return false;
	return shm_unlink(name) == 0 || errno == ENOENT;
}

uint64_t
vs_wlock_note_commit(struct vs_wlock *w)
{
	if (w->shm == NULL)
		return 0;
	return __atomic_add_fetch(&w->shm->commit_gen, 1, __ATOMIC_SEQ_CST);
}

uint64_t
vs_wlock_commit_gen(const struct vs_wlock *w)
{
	if (w->shm == NULL)
		return 0;
	return __atomic_load_n(&w->shm->commit_gen, __ATOMIC_SEQ_CST);
}

uint64_t
vs_wlock_synced_gen(const struct vs_wlock *w)
{
	if (w->shm == NULL)
		return 0;
	return __atomic_load_n(&w->shm->synced, __ATOMIC_SEQ_CST);
}

static void
raise_u64(uint64_t *p, uint64_t v)
{
	uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);

	while (cur < v &&
	       !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_SEQ_CST,
					    __ATOMIC_RELAXED))
		;
}

/* Sleeps until done_seq moves on from seen or ms pass. A spurious or
 * interrupted wake is harmless: the caller checks again. */
static void
wait_done(struct vs_wlock_shared *s, uint32_t seen, unsigned ms)
{
	struct timespec t = { .tv_sec = ms / 1000u,
			      .tv_nsec = (long)(ms % 1000u) * 1000000L };

	(void)syscall(SYS_futex, &s->done_seq, FUTEX_WAIT, seen, &t, NULL, 0);
}

static void
sync_ended(struct vs_wlock_shared *s, uint64_t claim, bool ok)
{
	if (ok)
		raise_u64(&s->synced, claim);
	(void)__atomic_add_fetch(&s->done_seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) != 0)
		(void)syscall(SYS_futex, &s->done_seq, FUTEX_WAKE, INT32_MAX,
			      NULL, NULL, 0);
}

bool
vs_wlock_sync(struct vs_wlock *w, uint64_t gen, vs_wlock_sync_fn fn,
	      void *arg)
{
	struct vs_wlock_shared *s = w->shm;
	uint64_t deadline = 0;
	uint64_t claim;
	bool ok;

	if (s == NULL)
		return fn(arg);
	for (; gen != 0;) {
		uint32_t seen = __atomic_load_n(&s->done_seq, __ATOMIC_SEQ_CST);
		uint64_t now;

		if (vs_wlock_storage_failed(w))
			return false;
		if (__atomic_load_n(&s->synced, __ATOMIC_SEQ_CST) >= gen)
			return true;	/* a sync that ended covered it */
		if (__atomic_load_n(&s->sync_started, __ATOMIC_SEQ_CST) < gen)
			break;		/* none in flight covers it */
		now = (uint64_t)vs_mono_ms();
		if (deadline == 0)
			deadline = now + SYNC_WAIT_MS;
		else if (now >= deadline)
			break;		/* its process may have died in it */
		(void)__atomic_add_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
		wait_done(s, seen, (unsigned)(deadline - now));
		(void)__atomic_sub_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
	}
	/* Every commit up to claim has returned, so this sync covers it. */
	claim = vs_wlock_commit_gen(w);
	raise_u64(&s->sync_started, claim);
	ok = fn(arg);
	/* Marked before the wake: a waiter must not take the failed
	 * sync's place with one of its own, which Linux, having
	 * reported the error once, would let succeed. */
	if (!ok)
		vs_wlock_mark_storage_failed(w);
	sync_ended(s, claim, ok);
	return ok;
}
