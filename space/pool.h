/* space/pool.h: a fixed set of worker threads running queued jobs, for the data space's
 * executor (space_db_execute() is thread-safe), so queries run off the event loop. A bounded
 * FIFO queue: a full queue is refused, never grown. Not for: I/O or anything that needs the
 * loop; jobs report back by their own means (e.g. a pipe or a locked queue the loop drains). */
#ifndef SPACE_POOL_H
#define SPACE_POOL_H
#include <stddef.h>

#include "base/err.h"

typedef struct space_pool space_pool;

/* A job: runs once on a pool thread with the |arg| given to space_pool_submit(). */
typedef void (*space_job_fn)(void *arg);

#define SPACE_POOL_MAX_THREADS 256

/* Starts |threads| (1..SPACE_POOL_MAX_THREADS) workers sharing a queue of at most |queue_cap|
 * (>= 1) waiting jobs into |*out| (caller frees with space_pool_free()). On failure |*out| is
 * untouched and no thread is left running. Returns 0, BG_ERR_INVAL (a bound) or BG_ERR_NOMEM
 * (memory or threads). */
int space_pool_new(space_pool **out, unsigned threads, size_t queue_cap);

/* Queues |fn|(|arg|) to run on some pool thread; |arg| is the caller's until the job runs. Any
 * thread, pool threads included. Returns 0, BG_ERR_AGAIN (the queue is full: retry later or
 * refuse the request) or BG_ERR_SHUTDOWN (space_pool_free() has started; the job will not
 * run). */
int space_pool_submit(space_pool *p, space_job_fn fn, void *arg);

/* Number of worker threads of |p|. */
unsigned space_pool_threads(const space_pool *p);

/* Refuses new jobs, runs every job already queued, joins the workers and frees |p|. Blocks
 * until then; must not be called from a pool job. NULL is a no-op. */
void space_pool_free(space_pool *p);

#endif /* SPACE_POOL_H */
