/*
 * combine.h - commit combining: one worker commits the small pushes of
 * several workers in one transaction.
 *
 * A single-op push spends most of its time under the write lock on the
 * transaction itself (BEGIN, the WAL frames of every index page, the
 * commit), not on its op: a 100-op batch holds the lock ~1.2 ms, a
 * one-op push ~0.2 ms. So while one worker holds the lock, the others
 * leave their requests in slots of a shared-memory table; whoever gets
 * the lock next runs every waiting request, each inside its own
 * savepoint, commits once, and leaves each answer in its slot. Each
 * worker then waits for a WAL sync that covers the batch (usually the
 * leader's, writelock.h) and answers its own client: nothing is
 * acknowledged before it is durable.
 *
 * The table is a POSIX shared-memory object next to the writer queue
 * (writelock.h), one slot per process. A leader that dies leaves its
 * slots "taken" behind a mutex that says EOWNERDEAD; their owners run
 * them again, which dedup by op_id and the idempotency key make
 * harmless (nothing of an uncommitted transaction survives it).
 *
 * Owns: the slot table and the leader/follower protocol. Must never:
 * know what a request means (the caller's run function does), answer a
 * request before the transaction holding it committed, or leave a slot
 * taken when the leader lets go of the lock.
 */
#ifndef VS_COMBINE_H
#define VS_COMBINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vs_db;
struct vs_response;
struct vs_combine_shared;

/* Only small pushes are combined: for a 100-op batch the transaction's
 * own cost is small beside its ops, and the leader would have to decode
 * the others' bodies while holding the lock (measured: 100-op batches
 * at 64 connections lost ~10 % when combined, single ops gained 13 %). */
#define VS_COMBINE_SLOTS 64
#define VS_COMBINE_BODY_MAX (8 * 1024)
#define VS_COMBINE_ANSWER_MAX (8 * 1024)
#define VS_COMBINE_ID_MAX 256	/* each scope string, with its NUL */

struct vs_combine {
	struct vs_combine_shared *shm;	/* NULL: combining off */
	int slot;			/* ours, or -1 */
	int32_t pid;			/* the process that claimed it */
	/* Statistics of this process: batches led, requests run for
	 * others, own requests answered by another leader. */
	uint64_t led, ran_for_others, answered_by_others;
};

/* One request as the run function sees it. */
struct vs_combine_item {
	const char *user, *vault, *device;
	const char *body;
	size_t len;
};

enum vs_combine_step {
	VS_COMBINE_KEEP,	/* answered; its changes are committed */
	VS_COMBINE_UNDO,	/* answered; its changes are rolled back */
	VS_COMBINE_FAIL,	/* the database failed: abandon the batch */
};

/* Runs one request inside the open write transaction (a savepoint is
 * open around it) and writes its answer into res. *top: for KEEP the
 * highest sequence it allocated or saw committed; otherwise the highest
 * committed before it (it feeds the durable watermark, and sequences of
 * rolled-back rows are handed out again). */
typedef enum vs_combine_step (*vs_combine_fn)(void *arg, struct vs_db *db,
					      const struct vs_combine_item *it,
					      struct vs_response *res,
					      int64_t *top);

/* Maps the table of the database at db_path and claims a slot. Failure,
 * or VERSTAK_COMBINE=0 in the environment, leaves combining off. */
void vs_combine_open(struct vs_combine *cb, const char *db_path);
void vs_combine_close(struct vs_combine *cb);
/* Frees every slot: only while no worker runs (with the writer queue's
 * reset, at start-up). Slots of workers that died leading a batch would
 * otherwise stay taken until the next boot. */
void vs_combine_reset(struct vs_combine *cb);

enum vs_combine_rc {
	VS_COMBINE_DONE,	/* res holds the answer; sync, then send it */
	VS_COMBINE_SELF,	/* run it alone, the usual way */
};

/* Submits it and waits for its answer, leading a batch when no one
 * else does. On VS_COMBINE_DONE, *top is the sequence to publish once
 * the WAL is synced. */
enum vs_combine_rc vs_combine_submit(struct vs_combine *cb, struct vs_db *db,
				     const struct vs_combine_item *it,
				     vs_combine_fn fn, void *arg,
				     struct vs_response *res, int64_t *top);

bool vs_combine_unlink(const char *db_path);

/* How many slots of the table hold a request waiting for a leader (for
 * tests and monitoring). */
int vs_combine_pending(const struct vs_combine *cb);

/* Tests only: called by a leader after running its batch, before the
 * commit, with the number of other workers' requests in it. */
extern void (*vs_combine_test_hook)(int n_others);

#endif
