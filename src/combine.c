/*
 * combine.c - see combine.h.
 *
 * Slot states, each changed only by compare-and-swap or by the one
 * process that the state names as its owner at that moment:
 *
 *   IDLE --owner--> PENDING --leader--> TAKEN --leader--> DONE | SELF
 *     ^                |                                      |
 *     +----owner-------+ (withdrawn)             owner -------+
 *
 * The request is written before PENDING is published (release) and the
 * answer before DONE or SELF is (release); the other side reads the
 * state with acquire. A leader marks every slot it took before it lets
 * go of the writer queue, so an owner that holds the queue and finds its
 * slot still TAKEN knows that the leader died: it runs the request
 * itself. A leader never takes more than COMBINE_BATCH_MAX requests, so
 * one batch cannot hold the lock for long.
 */
#include "combine.h"
#include "db.h"
#include "log.h"
#include "response.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void (*vs_combine_test_hook)(int n_others);

/* This process's pid, kept by a fork handler: submit checks on every
 * push that its slot was claimed by this process and not inherited
 * through fork, and getpid() would be one system call more each time. */
static pid_t self_pid;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void
refresh_self_pid(void)
{
	self_pid = getpid();
}

static void
init_self_pid(void)
{
	refresh_self_pid();
	/* Without the handler a child would compare against its
	 * parent's pid: then fall back to asking every time. */
	if (pthread_atfork(NULL, NULL, refresh_self_pid) != 0)
		self_pid = 0;
}

static pid_t
my_pid(void)
{
	(void)pthread_once(&self_once, init_self_pid);
	return self_pid != 0 ? self_pid : getpid();
}

#define COMBINE_MAGIC 0x56534331u	/* "VSC1": this layout */
#define COMBINE_BATCH_MAX 16

enum { S_IDLE, S_PENDING, S_TAKEN, S_DONE, S_SELF };

struct slot_data {
	int32_t status;
	uint32_t answer_len;
	int64_t top;
	uint32_t body_len;
	char user[VS_COMBINE_ID_MAX];
	char vault[VS_COMBINE_ID_MAX];
	char device[VS_COMBINE_ID_MAX];
	char body[VS_COMBINE_BODY_MAX];
	char answer[VS_COMBINE_ANSWER_MAX];
};

struct vs_combine_shared {
	volatile uint32_t magic;
	int32_t owner[VS_COMBINE_SLOTS];	/* pid, 0 = free */
	/* A slot's state in the low 32 bits and, while TAKEN, the
	 * leader's pid in the high ones: one word, so whoever sees TAKEN
	 * also sees who took it. Kept apart from the data so a leader's
	 * scan reads a few cache lines, not a page per slot. */
	uint64_t word[VS_COMBINE_SLOTS];
	struct slot_data data[VS_COMBINE_SLOTS];
};

static uint64_t
word_load(struct vs_combine_shared *s, int i)
{
	return __atomic_load_n(&s->word[i], __ATOMIC_ACQUIRE);
}

static uint32_t
state_of(uint64_t w)
{
	return (uint32_t)(w & 0xffffffffu);
}

static int32_t
leader_of(uint64_t w)
{
	return (int32_t)(uint32_t)(w >> 32);
}

static uint32_t
state_load(struct vs_combine_shared *s, int i)
{
	return state_of(word_load(s, i));
}

static void
state_store(struct vs_combine_shared *s, int i, uint32_t v)
{
	__atomic_store_n(&s->word[i], (uint64_t)v, __ATOMIC_RELEASE);
}

/* from and to are states; TAKEN carries the pid of leader. */
static bool
state_cas(struct vs_combine_shared *s, int i, uint32_t from, uint32_t to,
	  int32_t leader)
{
	uint64_t want = from;
	uint64_t next = (uint64_t)to |
			(to == S_TAKEN ? (uint64_t)(uint32_t)leader << 32 : 0);

	return __atomic_compare_exchange_n(&s->word[i], &want, next, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static bool
pid_dead(int32_t pid)
{
	return pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH);
}

/* ------------------------------------------------------------------ */
/* The shared table                                                   */
/* ------------------------------------------------------------------ */

/* vs_shm_init_fn of the table: run under the object's flock. */
static bool
init_table(void *p)
{
	struct vs_combine_shared *s = p;

	if (s->magic != COMBINE_MAGIC) {
		memset(s->owner, 0, sizeof(s->owner));
		memset(s->word, 0, sizeof(s->word));
		__sync_synchronize();
		s->magic = COMBINE_MAGIC;
	}
	return true;
}

/* The table's name carries its size and a protocol version, so a server
 * of another layout or protocol (an upgrade while the old workers still
 * run) never maps this one. Version 2: a leader numbers its commit in
 * the writer queue's object before it answers (writelock.h), and a
 * follower relies on that number; a version-1 leader does not. */
static bool
table_name(const char *db_path, char *name, size_t size)
{
	char kind[32];

	snprintf(kind, sizeof(kind), "combine2-%zx",
		 sizeof(struct vs_combine_shared));
	return vs_shm_name(db_path, kind, name, size);
}

/* A free slot, or one whose owner has died and that no leader holds. */
static int
claim_slot(struct vs_combine_shared *s, int32_t me)
{
	for (int i = 0; i < VS_COMBINE_SLOTS; i++) {
		int32_t o = __atomic_load_n(&s->owner[i], __ATOMIC_ACQUIRE);
		uint32_t st;

		if (o != 0 && !pid_dead(o))
			continue;
		if (o != 0) {
			uint64_t w = word_load(s, i);

			st = state_of(w);
			if (st == S_PENDING &&
			    !state_cas(s, i, S_PENDING, S_IDLE, 0))
				continue;	/* a leader took it meanwhile */
			/* Taken by a leader that died as well (a worker that
			 * died leading its own batch leaves its slot so). */
			if (st == S_TAKEN &&
			    (!pid_dead(leader_of(w)) ||
			     !__atomic_compare_exchange_n(&s->word[i], &w,
							  (uint64_t)S_IDLE,
							  false,
							  __ATOMIC_ACQ_REL,
							  __ATOMIC_ACQUIRE)))
				continue;
		}
		if (__atomic_compare_exchange_n(&s->owner[i], &o, me, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			state_store(s, i, S_IDLE);
			return i;
		}
	}
	return -1;
}

void
vs_combine_open(struct vs_combine *cb, const char *db_path)
{
	const char *env = getenv("VERSTAK_COMBINE");
	char name[112];

	memset(cb, 0, sizeof(*cb));
	cb->slot = -1;
	if (env != NULL && strcmp(env, "0") == 0)
		return;
	if (!table_name(db_path, name, sizeof(name)))
		return;
	cb->shm = vs_shm_map(name, sizeof(*cb->shm), init_table);
	if (cb->shm == NULL) {
		vs_log_warn("db: no shared commit table (%s); committing alone",
			    strerror(errno));
		return;
	}
	cb->pid = my_pid();
	cb->slot = claim_slot(cb->shm, cb->pid);
	if (cb->slot < 0)
		vs_log_warn("db: every commit-table slot is in use; committing alone");
}

void
vs_combine_reset(struct vs_combine *cb)
{
	if (cb->shm == NULL)
		return;
	memset(cb->shm->word, 0, sizeof(cb->shm->word));
	memset(cb->shm->owner, 0, sizeof(cb->shm->owner));
	__sync_synchronize();
	if (cb->slot >= 0)
		cb->slot = claim_slot(cb->shm, cb->pid);
}

void
vs_combine_close(struct vs_combine *cb)
{
	if (cb->shm == NULL)
		return;
	if (cb->ran_for_others > 0 || cb->answered_by_others > 0)
		vs_log_info("commit combining: led %llu batches with %llu"
			    " pushes of other workers; %llu of ours were"
			    " committed by another",
			    (unsigned long long)cb->led,
			    (unsigned long long)cb->ran_for_others,
			    (unsigned long long)cb->answered_by_others);
	if (cb->slot >= 0 && cb->pid == my_pid()) {
		int32_t me = cb->pid;

		/* Only an idle slot is ours to give back: submit never
		 * returns with it in another state. */
		if (state_load(cb->shm, cb->slot) == S_IDLE)
			(void)__atomic_compare_exchange_n(&cb->shm->owner[cb->slot],
							  &me, 0, false,
							  __ATOMIC_ACQ_REL,
							  __ATOMIC_ACQUIRE);
	}
	(void)munmap(cb->shm, sizeof(*cb->shm));
	memset(cb, 0, sizeof(*cb));
	cb->slot = -1;
}

bool
vs_combine_unlink(const char *db_path)
{
	char name[112];

	if (!table_name(db_path, name, sizeof(name)))
		return false;
	return shm_unlink(name) == 0 || errno == ENOENT;
}

int
vs_combine_pending(const struct vs_combine *cb)
{
	int n = 0;

	if (cb->shm == NULL)
		return 0;
	for (int i = 0; i < VS_COMBINE_SLOTS; i++)
		n += state_load(cb->shm, i) == S_PENDING;
	return n;
}

/* ------------------------------------------------------------------ */
/* Requests and answers in slots                                      */
/* ------------------------------------------------------------------ */

static bool
copy_id(char *dst, const char *src)
{
	size_t n = strlen(src);

	if (n >= VS_COMBINE_ID_MAX)
		return false;
	memcpy(dst, src, n + 1);
	return true;
}

static bool
put_request(struct slot_data *d, const struct vs_combine_item *it)
{
	if (it->len > VS_COMBINE_BODY_MAX || !copy_id(d->user, it->user) ||
	    !copy_id(d->vault, it->vault) || !copy_id(d->device, it->device))
		return false;
	memcpy(d->body, it->body, it->len);
	d->body_len = (uint32_t)it->len;
	return true;
}

static void
item_of(const struct slot_data *d, struct vs_combine_item *it)
{
	it->user = d->user;
	it->vault = d->vault;
	it->device = d->device;
	it->body = d->body;
	it->len = d->body_len;
}

/* Only plain JSON answers travel through a slot; anything else (extra
 * headers, a 5xx, a huge replay) is left to its owner. */
static bool
answer_fits(const struct vs_response *res)
{
	return res->content_type != NULL &&
	       strcmp(res->content_type, "application/json") == 0 &&
	       res->headers.len == 0 && !res->body.oom && !res->headers.oom &&
	       res->body.len <= VS_COMBINE_ANSWER_MAX &&
	       res->status >= 200 && res->status < 500;
}

static void
put_answer(struct slot_data *d, const struct vs_response *res)
{
	d->status = res->status;
	d->answer_len = (uint32_t)res->body.len;
	if (res->body.len > 0)
		memcpy(d->answer, res->body.data, res->body.len);
}

static bool
take_answer(const struct slot_data *d, struct vs_response *res)
{
	vs_res_json(res, d->status);
	return vs_buf_append(&res->body, d->answer, d->answer_len);
}

/* ------------------------------------------------------------------ */
/* Leading a batch                                                    */
/* ------------------------------------------------------------------ */

/* Runs one request in its own savepoint. *fits: its answer may travel
 * through a slot (when it does not, its changes are undone and its
 * owner runs it again alone). */
static enum vs_combine_step
run_one(struct vs_db *db, const struct vs_combine_item *it, vs_combine_fn fn,
	void *arg, struct vs_response *res, int64_t *top, bool must_fit,
	bool *fits)
{
	enum vs_combine_step step;
	int64_t item_top = 0;
	bool keep;

	*fits = true;
	if (vs_db_savepoint(db) != VS_DB_OK)
		return VS_COMBINE_FAIL;
	step = fn(arg, db, it, res, &item_top);
	if (step == VS_COMBINE_FAIL)
		return step;
	keep = step == VS_COMBINE_KEEP;
	if (must_fit && !answer_fits(res))
		*fits = keep = false;
	if (vs_db_savepoint_end(db, keep) != VS_DB_OK)
		return VS_COMBINE_FAIL;
	/* The batch's top feeds the durable watermark: it must never name
	 * a sequence whose rows were rolled back (ROLLBACK TO hands the
	 * number out again, to a commit that is not yet synced). A kept
	 * item reports what it allocated, an undone one only what was
	 * committed before it; one handed back reports nothing. */
	if (*fits && item_top > *top)
		*top = item_top;
	return step;
}

/* A leader's verdict on a slot it took: only while the slot is still
 * taken by this leader (an owner that gave up waiting may have taken it
 * back; a late verdict must not overwrite its next request). */
static void
verdict(struct vs_combine_shared *s, int i, int32_t leader, uint32_t v)
{
	uint64_t want = (uint64_t)S_TAKEN | (uint64_t)(uint32_t)leader << 32;

	(void)__atomic_compare_exchange_n(&s->word[i], &want, (uint64_t)v,
					  false, __ATOMIC_ACQ_REL,
					  __ATOMIC_ACQUIRE);
}

/* Gives every taken slot back to its owner to run alone. */
static void
hand_back(struct vs_combine_shared *s, int32_t leader, const int *idx, int n)
{
	for (int k = 0; k < n; k++)
		verdict(s, idx[k], leader, S_SELF);
}

static enum vs_combine_rc
lead(struct vs_combine *cb, struct vs_db *db, const struct vs_combine_item *it,
     vs_combine_fn fn, void *arg, struct vs_response *res, int64_t *top)
{
	struct vs_combine_shared *s = cb->shm;
	int idx[COMBINE_BATCH_MAX];
	bool fit[COMBINE_BATCH_MAX];
	int64_t batch_top = 0;
	int n = 0;
	bool fits;

	/* Ours alone while we hold the queue: no one else reads it. */
	__atomic_store_n(&s->word[cb->slot],
			 (uint64_t)S_TAKEN | (uint64_t)(uint32_t)cb->pid << 32,
			 __ATOMIC_RELEASE);
	if (vs_db_begin_write(db) != VS_DB_OK)
		goto alone;	/* begin released the queue */
	if (run_one(db, it, fn, arg, res, &batch_top, false, &fits) ==
	    VS_COMBINE_FAIL)
		goto abandon;
	for (int i = 0; i < VS_COMBINE_SLOTS && n < COMBINE_BATCH_MAX - 1; i++) {
		struct vs_combine_item other;
		struct vs_response r;
		enum vs_combine_step step;

		if (i == cb->slot || state_load(s, i) != S_PENDING ||
		    !state_cas(s, i, S_PENDING, S_TAKEN, cb->pid))
			continue;
		idx[n] = i;
		item_of(&s->data[i], &other);
		vs_res_init(&r);
		step = run_one(db, &other, fn, arg, &r, &batch_top, true,
			       &fit[n]);
		if (step != VS_COMBINE_FAIL && fit[n])
			put_answer(&s->data[i], &r);
		vs_res_free(&r);
		n++;
		if (step == VS_COMBINE_FAIL)
			goto abandon;
	}
	if (vs_combine_test_hook != NULL)
		vs_combine_test_hook(n);
	if (vs_db_commit_keep_queue(db) != VS_DB_OK) {
		/* Rolled back: nothing of the batch was stored. */
		hand_back(s, cb->pid, idx, n);
		vs_db_release_queue(db);
		goto alone_unlocked;
	}
	for (int k = 0; k < n; k++) {
		s->data[idx[k]].top = batch_top;
		verdict(s, idx[k], cb->pid, fit[k] ? S_DONE : S_SELF);
	}
	state_store(s, cb->slot, S_IDLE);
	vs_db_release_queue(db);
	cb->led++;
	cb->ran_for_others += (uint64_t)n;
	*top = batch_top;
	return VS_COMBINE_DONE;

abandon:
	/* A database failure inside the batch: undo it all and let every
	 * request run alone, where its failure is answered as usual. */
	hand_back(s, cb->pid, idx, n);
	vs_db_rollback(db);
	goto alone_unlocked;
alone:
	/* begin refused: it let the queue go, except when it refused for
	 * an earlier storage failure, which it checks first. */
	vs_db_release_queue(db);
alone_unlocked:
	state_store(s, cb->slot, S_IDLE);
	vs_res_reset(res);
	return VS_COMBINE_SELF;
}

/* Without the queue (its wait timed out) while a leader has our slot:
 * wait for its verdict, its death, or the end of a second wait as long
 * as the first. Returns the verdict, or IDLE once the slot is ours again
 * (taken back from a leader that died or took too long: its verdict,
 * should it still come, is refused by verdict()'s compare). */
static uint32_t
await_leader(struct vs_combine_shared *s, int slot, unsigned budget_ms)
{
	const struct timespec nap = { 0, 200000 };	/* 0.2 ms */
	uint64_t w;

	for (unsigned long i = 0; state_of(w = word_load(s, slot)) == S_TAKEN;
	     i++) {
		if ((pid_dead(leader_of(w)) || i >= budget_ms * 5ul) &&
		    __atomic_compare_exchange_n(&s->word[slot], &w,
						(uint64_t)S_IDLE, false,
						__ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return S_IDLE;
		(void)nanosleep(&nap, NULL);
	}
	return state_of(w);
}

enum vs_combine_rc
vs_combine_submit(struct vs_combine *cb, struct vs_db *db,
		  const struct vs_combine_item *it, vs_combine_fn fn, void *arg,
		  struct vs_response *res, int64_t *top)
{
	struct vs_combine_shared *s = cb->shm;
	struct slot_data *d;
	uint32_t st;
	bool got;

	*top = 0;
	if (s == NULL || cb->slot < 0 || cb->pid != my_pid() ||
	    db->tx_depth != 0 || db->wlock.shm == NULL || db->wlock.held ||
	    vs_wlock_storage_failed(&db->wlock))
		return VS_COMBINE_SELF;
	d = &s->data[cb->slot];
	if (!put_request(d, it))
		return VS_COMBINE_SELF;
	state_store(s, cb->slot, S_PENDING);

	got = vs_wlock_acquire(&db->wlock, db->busy_budget_ms);
	if (!got) {
		if (state_cas(s, cb->slot, S_PENDING, S_IDLE, 0))
			return VS_COMBINE_SELF;
		st = await_leader(s, cb->slot, db->busy_budget_ms);
	} else {
		st = state_load(s, cb->slot);
	}
	if (st == S_DONE) {
		bool ok = take_answer(d, res);

		*top = d->top;
		state_store(s, cb->slot, S_IDLE);
		if (got)
			vs_wlock_release(&db->wlock);
		if (!ok) {
			/* Committed, but the answer cannot be built; the
			 * client's retry is answered as a duplicate. */
			vs_res_internal(res);
		}
		cb->answered_by_others++;
		return VS_COMBINE_DONE;
	}
	if (st == S_SELF || !got) {
		/* Handed back, or taken back (while we had no queue) from
		 * a leader that died or took too long: run it alone. */
		state_store(s, cb->slot, S_IDLE);
		if (got)
			vs_wlock_release(&db->wlock);
		return VS_COMBINE_SELF;
	}
	/* PENDING: no one took it; TAKEN under the queue: its leader
	 * died before handing it back. Either way we lead. */
	return lead(cb, db, it, fn, arg, res, top);
}
