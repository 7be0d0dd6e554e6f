/*
 * kaze/loop.h — the event loop that the WebSocket server and client run on:
 * file descriptor watchers (epoll, level-triggered), timers, deferred
 * callbacks, cross-thread wake-ups and signals.
 *
 * Watchers are intrusive. Each `struct kz_io`, `kz_timer`, `kz_defer`,
 * `kz_async` and `kz_signal` is a plain struct that its owner embeds in its
 * own struct (a connection, a server) and recovers in the callback with
 * KZ_CONTAINER_OF. The loop never allocates per watcher and never owns a
 * watcher: the owner keeps it alive while it is started and may free it as
 * soon as it is stopped. A zeroed watcher is a stopped watcher, so owners
 * allocated with calloc (or `= {0}`) need no init call.
 *
 * Callbacks. Every callback runs on the thread that runs the loop. From any
 * callback of a loop you may start, stop, restart and free any watcher of
 * that loop, including the one whose callback is running and watchers whose
 * events arrived in the same batch: a watcher stopped before its turn in the
 * batch is not called. You may call kz_loop_stop. You may not call
 * kz_loop_run, kz_loop_run_once or kz_loop_free from a callback of the same
 * loop.
 *
 * One iteration of the loop:
 *   1. wait in epoll_wait, no longer than the earliest timer deadline (and
 *      not at all if a defer is queued or the loop was asked to stop);
 *   2. update the cached time (kz_loop_now);
 *   3. call io callbacks for the ready descriptors;
 *   4. call timers whose deadline has passed, earliest first, ties in the
 *      order they were started;
 *   5. call the defers queued so far, in the order they were queued.
 * In steady state an iteration makes one system call, epoll_wait; reading
 * the clock goes through the vDSO.
 *
 * A loop is not thread-safe: only kz_async_send may be called from another
 * thread. Run one loop per thread.
 */
#ifndef KAZE_LOOP_H
#define KAZE_LOOP_H

#include <stddef.h>
#include "kaze/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The struct of type `type` whose member `member` is at `ptr`: how a callback
 * gets from its watcher back to the struct that embeds it.
 */
#define KZ_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct kz_loop;

/* ------------------------------------------------------------------------
 * The loop
 */

/*
 * Creates a loop that allocates through `alloc` (NULL: malloc). The
 * allocator struct is copied. The loop allocates twice here (itself, about
 * 16 KB, and its poller, about 12 KB) and afterwards only to grow the timer
 * heap. Returns NULL if memory runs out (errno is ENOMEM), `alloc` lacks
 * malloc or free (EINVAL) or epoll_create1 fails (errno says why).
 */
KZ_EXPORT struct kz_loop *kz_loop_new(const struct kz_allocator *alloc);

/*
 * Frees the loop and its epoll descriptor. Stop every watcher first (the
 * loop does not close the descriptors of io watchers; asyncs and signals
 * close theirs in their stop function). Not from a callback of this loop.
 * NULL is ignored.
 */
KZ_EXPORT void kz_loop_free(struct kz_loop *loop);

/*
 * Runs iterations until kz_loop_stop is called or nothing keeps the loop
 * alive (see kz_loop_alive). Returns KZ_OK, or KZ_ERR_SYSTEM if epoll_wait
 * fails for a reason other than EINTR (errno says why; the loop can still be
 * run again or freed). A stop requested before the call makes it return at
 * once. Not from a callback of this loop (KZ_ERR_INVALID_ARGUMENT).
 */
KZ_EXPORT int kz_loop_run(struct kz_loop *loop);

/*
 * Runs one iteration, waiting at most `timeout_ms` for I/O (negative: as
 * long as the next timer allows; 0: do not wait). It never waits when
 * nothing keeps the loop alive, a defer is queued or a stop is requested.
 * A wait cut short by a signal (EINTR) counts as an iteration with no I/O.
 * Returns KZ_OK, KZ_ERR_SYSTEM (epoll_wait failed, errno set) or
 * KZ_ERR_INVALID_ARGUMENT when called from a callback of this loop. A stop
 * requested during the iteration stays requested: kz_loop_run called next
 * returns at once (and clears it).
 */
KZ_EXPORT int kz_loop_run_once(struct kz_loop *loop, int timeout_ms);

/*
 * Asks kz_loop_run to return once the current iteration is done: the rest
 * of the current batch, the due timers and the queued defers still run.
 * Meant for callbacks of this loop; to stop a loop from another thread,
 * send it an async whose callback calls this.
 */
KZ_EXPORT void kz_loop_stop(struct kz_loop *loop);

/*
 * True while something keeps the loop alive: a started io watcher (even one
 * whose events are 0), a started timer, a queued defer, a started async or
 * signal (each is an io watcher inside).
 */
KZ_EXPORT bool kz_loop_alive(const struct kz_loop *loop);

/*
 * The loop's time in milliseconds: the monotonic clock (or the clock given
 * to kz_loop_set_clock) as read when the current iteration's wait returned.
 * Cheap: no clock is read. Timer deadlines are measured from this value.
 */
KZ_EXPORT uint64_t kz_loop_now(const struct kz_loop *loop);

/*
 * Reads the clock into the cached time now, for a callback that ran long
 * and wants the timers it starts to count from the present. The cached time
 * never goes backwards, even if an injected clock does.
 */
KZ_EXPORT void kz_loop_update_time(struct kz_loop *loop);

/*
 * Replaces the loop's clock: `now_ms(ud)` must return non-decreasing
 * milliseconds. NULL restores CLOCK_MONOTONIC. Meant for tests that drive
 * timeouts and backoff without sleeping; set it before starting timers,
 * since deadlines already set stay in the old clock's terms. The cached time
 * is updated at once. `ud` must stay valid while the clock is in use.
 */
KZ_EXPORT void kz_loop_set_clock(struct kz_loop *loop, uint64_t (*now_ms)(void *ud), void *ud);

/*
 * How long the next iteration would wait, in milliseconds, measured from
 * kz_loop_now: -1 for no limit (no timer started), 0 if a defer is queued, a
 * timer is due, a stop is requested or nothing keeps the loop alive, else
 * the time to the earliest deadline (capped at INT_MAX). For embedding the
 * loop in another one, and for tests.
 */
KZ_EXPORT int kz_loop_timeout(const struct kz_loop *loop);

/* ------------------------------------------------------------------------
 * I/O watchers
 */

enum {
    KZ_IO_READ = 1u,  /* readable, or a hang-up or error happened */
    KZ_IO_WRITE = 2u, /* writable, or a hang-up or error happened */
};

struct kz_io;

/*
 * Called with the events that are ready, limited to those requested (never
 * 0). EPOLLERR and EPOLLHUP arrive as both KZ_IO_READ and KZ_IO_WRITE (as
 * far as requested): the handler notices the condition when it reads or
 * writes. Level-triggered: the callback comes again next iteration while
 * the condition holds.
 */
typedef void (*kz_io_cb)(struct kz_loop *loop, struct kz_io *io, unsigned events);

/*
 * An io watcher, embedded by its owner. `fd` and `events` may be read
 * (`events` is what is requested now); change them only through the
 * functions below. The other fields belong to the loop.
 */
struct kz_io {
    kz_io_cb cb;
    int fd;
    uint32_t pending; /* private: 1 + position in the loop's current batch, 0 if none */
    uint8_t events;   /* requested events, KZ_IO_READ | KZ_IO_WRITE */
    uint8_t active;   /* private: nonzero between kz_io_start and kz_io_stop */
};

/*
 * Starts watching `fd` for `events` (KZ_IO_READ, KZ_IO_WRITE, both or 0 for
 * "started but paused", which registers nothing with the kernel yet). The
 * io must be stopped (zeroed or kz_io_stop'ed); the descriptor stays the
 * owner's and must stay open until kz_io_stop. Returns KZ_OK,
 * KZ_ERR_INVALID_ARGUMENT (io already started, unknown event bits, fd < 0)
 * or KZ_ERR_SYSTEM (epoll_ctl failed: errno says why, e.g. EPERM for a
 * regular file); on error the io stays stopped.
 */
KZ_EXPORT int kz_io_start(struct kz_loop *loop, struct kz_io *io, int fd, unsigned events,
                          kz_io_cb cb);

/*
 * Changes the requested events of a started io. Makes no system call when
 * `events` equals the current ones, so a connection may call it after every
 * read or write to say what it wants next. 0 pauses the watcher (it stays
 * started and keeps the loop alive). Events already in the current batch
 * are filtered by the new mask. Returns KZ_OK, KZ_ERR_INVALID_ARGUMENT (io
 * not started, unknown bits) or KZ_ERR_SYSTEM (epoll_ctl failed, errno set;
 * the io keeps its old events).
 */
KZ_EXPORT int kz_io_set_events(struct kz_loop *loop, struct kz_io *io, unsigned events);

/*
 * Stops the io: no callback comes after this returns, not even for an event
 * already in the current batch. Call it before closing the descriptor (a
 * descriptor closed first may leave a registration behind when it was
 * dup'ed). Stopping a stopped io does nothing. The io may be freed or
 * restarted afterwards.
 */
KZ_EXPORT void kz_io_stop(struct kz_loop *loop, struct kz_io *io);

/*
 * Stops the io (as kz_io_stop) and closes its descriptor, without the
 * epoll_ctl that kz_io_stop makes: the kernel drops the registration itself
 * when the file's last descriptor closes. Only for a descriptor that was
 * never dup'ed or passed to another process (then kz_io_stop and close).
 * Sets io->fd to -1. Returns close()'s result.
 */
KZ_EXPORT int kz_io_close(struct kz_loop *loop, struct kz_io *io);

/* ------------------------------------------------------------------------
 * Timers
 */

struct kz_timer;
typedef void (*kz_timer_cb)(struct kz_loop *loop, struct kz_timer *t);

/*
 * A one-shot timer, embedded by its owner. `deadline` (loop milliseconds)
 * may be read while the timer is active; the other fields belong to the
 * loop.
 */
struct kz_timer {
    uint64_t deadline;
    uint64_t seq; /* private: start order, breaks ties between equal deadlines */
    kz_timer_cb cb;
    uint32_t index; /* private: 1 + position in the loop's heap, 0 when stopped */
};

/*
 * Starts the timer to fire once, `delay_ms` after kz_loop_now() (outside
 * callbacks, call kz_loop_update_time first if time may have passed since
 * the last iteration, or the timer fires early by that much). Restarting
 * an active timer moves it (and it then counts as started last among timers
 * with the same deadline). A timer started or restarted from a timer
 * callback never fires in the same iteration, even with delay 0, so a
 * callback may restart its own timer. Returns KZ_OK or KZ_ERR_NOMEM (the
 * heap could not grow; the timer is left as it was). A restart never
 * allocates.
 */
KZ_EXPORT int kz_timer_start(struct kz_loop *loop, struct kz_timer *t, uint64_t delay_ms,
                             kz_timer_cb cb);

/* Stops the timer; it will not fire. Stopping a stopped timer does nothing. */
KZ_EXPORT void kz_timer_stop(struct kz_loop *loop, struct kz_timer *t);

/* True between kz_timer_start and the timer firing or being stopped. */
KZ_EXPORT bool kz_timer_active(const struct kz_timer *t);

/* ------------------------------------------------------------------------
 * Defers: run once at the end of the iteration
 */

struct kz_defer;
typedef void (*kz_defer_cb)(struct kz_loop *loop, struct kz_defer *d);

/* A deferred callback, embedded by its owner; every field belongs to the loop. */
struct kz_defer {
    struct kz_defer *next;
    struct kz_defer *prev;
    kz_defer_cb cb;
};

/*
 * Queues `cb` to run once after this iteration's I/O and timers: the place
 * to flush corked writes and to free closed connections, when no event of
 * the batch can point at them any more. Defers run in the order they were
 * queued. Queuing a queued defer does nothing (its first callback stays).
 * A defer queued from a deferred callback runs in the next iteration, whose
 * wait does not block. The defer is unqueued before its callback runs, so
 * the callback may free it or queue it again.
 */
KZ_EXPORT void kz_defer(struct kz_loop *loop, struct kz_defer *d, kz_defer_cb cb);

/* Unqueues the defer if it is queued; its callback will not run. */
KZ_EXPORT void kz_defer_cancel(struct kz_loop *loop, struct kz_defer *d);

/* True while the defer is queued. */
KZ_EXPORT bool kz_defer_queued(const struct kz_defer *d);

/* ------------------------------------------------------------------------
 * Async: wake a loop from another thread
 */

struct kz_async;
typedef void (*kz_async_cb)(struct kz_loop *loop, struct kz_async *a);

/* An async handle, embedded by its owner; every field belongs to the loop. */
struct kz_async {
    struct kz_io io; /* watches an eventfd */
    kz_async_cb cb;
    unsigned pending; /* set by senders, cleared by the loop (atomically) */
};

/*
 * Starts the async on `loop` (creating an eventfd). Returns KZ_OK,
 * KZ_ERR_INVALID_ARGUMENT (already started) or KZ_ERR_SYSTEM (eventfd or
 * epoll_ctl failed, errno set). The async keeps the loop alive until
 * stopped.
 */
KZ_EXPORT int kz_async_start(struct kz_loop *loop, struct kz_async *a, kz_async_cb cb);

/*
 * Makes the async's callback run soon on its loop's thread. Callable from
 * any thread, and from signal handlers (it only does an atomic exchange and
 * a write). Sends coalesce: several sends before the callback runs give one
 * callback, and everything a thread wrote before its send is visible to the
 * callback. Returns KZ_OK or KZ_ERR_SYSTEM (the write failed, errno set).
 * The async must be started and must not be stopped or freed while another
 * thread may still send to it.
 */
KZ_EXPORT int kz_async_send(struct kz_async *a);

/* Stops the async and closes its eventfd. Stopping a stopped async does nothing. */
KZ_EXPORT void kz_async_stop(struct kz_loop *loop, struct kz_async *a);

/* ------------------------------------------------------------------------
 * Signals, through signalfd
 */

struct kz_signal;
typedef void (*kz_signal_cb)(struct kz_loop *loop, struct kz_signal *s);

/* A signal watcher, embedded by its owner; `signo` may be read. */
struct kz_signal {
    struct kz_io io; /* watches a signalfd */
    kz_signal_cb cb;
    int signo;
};

/*
 * Delivers `signo` to `cb` through the loop, once per signal read from the
 * signalfd (the kernel merges repeats of a standard signal that is already
 * pending). A signalfd only sees signals that are blocked, and a signal not
 * blocked in some thread is delivered to that thread the classic way
 * instead: block it in every thread, which is easiest done by blocking it in
 * the main thread before any other thread starts (new threads inherit the
 * mask). This function blocks it in the calling thread and leaves it
 * blocked after stop. Process-directed signals (kill, a terminal's ^C) reach
 * the watcher whichever thread they were meant for; a signal sent to one
 * particular other thread (pthread_kill, tgkill) is only seen by a
 * signalfd read in that thread, so send those to the loop's own thread. Watch each signal from one
 * watcher only: two signalfds for one signal share its deliveries. Returns KZ_OK,
 * KZ_ERR_INVALID_ARGUMENT (already started, bad signal number) or
 * KZ_ERR_SYSTEM (signalfd or epoll_ctl failed, errno set).
 */
KZ_EXPORT int kz_signal_start(struct kz_loop *loop, struct kz_signal *s, int signo,
                              kz_signal_cb cb);

/* Stops the watcher and closes its signalfd; the signal stays blocked. */
KZ_EXPORT void kz_signal_stop(struct kz_loop *loop, struct kz_signal *s);

#ifdef __cplusplus
}
#endif
#endif
