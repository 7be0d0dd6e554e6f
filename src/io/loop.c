/*
 * The loop core: iterations, time, io watchers, timers, defers, asyncs and
 * signals. The poller backend is behind io/poll.h, the timer heap behind
 * io/timer_heap.h.
 *
 * Safety of a batch. epoll hands back a batch of pointers to io watchers;
 * a callback early in the batch may stop (and free) a watcher whose event
 * comes later. Before dispatching, the loop writes into each watcher its
 * position in the batch (`pending`); kz_io_stop uses it to clear that
 * entry, so a stopped watcher is never called and never dereferenced. This
 * costs one store per event and makes stop O(1), with no table indexed by
 * descriptor and no scan of the batch.
 */
#include "kaze/loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "io/poll.h"
#include "io/timer_heap.h"

/*
 * Events taken from the kernel per epoll_wait. Large enough that a busy
 * server rarely needs a second call to drain what is ready; the cost is
 * memory per loop (16 bytes here and 12 in the backend per entry).
 */
enum { LOOP_BATCH = 1024 };

struct kz_loop {
    struct kz_allocator alloc; /* the caller's, or the C library's */
    struct kz_poll *poll;
    uint64_t (*clock)(void *ud);
    void *clock_ud;
    uint64_t now;
    struct kz_timer_heap timers;
    struct kz_defer defers; /* sentinel of the circular queue */
    uint32_t ios;           /* started io watchers, for kz_loop_alive */
    bool stop;
    bool running; /* inside an iteration: refuse re-entry */
    struct kz_poll_event batch[LOOP_BATCH];
};

/* ------------------------------------------------------------------------
 * Allocation and time
 */

static void *libc_malloc(size_t size, void *ud)
{
    return malloc(size);
}

static void *libc_realloc(void *ptr, size_t size, void *ud)
{
    return realloc(ptr, size);
}

static void libc_free(void *ptr, void *ud)
{
    free(ptr);
}

static const struct kz_allocator libc_allocator = {libc_malloc, libc_realloc, libc_free, NULL};

static uint64_t monotonic_ms(void *ud)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* close() that keeps the errno of the failure being reported. */
static void close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

/* ------------------------------------------------------------------------
 * The loop
 */

struct kz_loop *kz_loop_new(const struct kz_allocator *alloc)
{
    const struct kz_allocator *a = alloc ? alloc : &libc_allocator;
    if (!a->malloc || !a->free) {
        errno = EINVAL;
        return NULL;
    }
    struct kz_loop *loop = a->malloc(sizeof(*loop), a->ud);
    if (!loop) {
        errno = ENOMEM;
        return NULL;
    }
    /* The batch is written by every wait before it is read: no need to clear 16 KB. */
    memset(loop, 0, offsetof(struct kz_loop, batch));
    loop->alloc = *a;
    loop->poll = kz_poll_new(&loop->alloc, LOOP_BATCH);
    if (!loop->poll) {
        int saved = errno;
        a->free(loop, a->ud);
        errno = saved;
        return NULL;
    }
    loop->clock = monotonic_ms;
    loop->now = monotonic_ms(NULL);
    kz_timer_heap_init(&loop->timers);
    loop->defers.next = loop->defers.prev = &loop->defers;
    return loop;
}

void kz_loop_free(struct kz_loop *loop)
{
    if (!loop)
        return;
    struct kz_allocator a = loop->alloc;
    kz_poll_free(loop->poll, &a);
    kz_timer_heap_destroy(&loop->timers, &a);
    a.free(loop, a.ud);
}

uint64_t kz_loop_now(const struct kz_loop *loop)
{
    return loop->now;
}

void kz_loop_update_time(struct kz_loop *loop)
{
    uint64_t t = loop->clock(loop->clock_ud);
    if (t > loop->now)
        loop->now = t;
}

void kz_loop_set_clock(struct kz_loop *loop, uint64_t (*now_ms)(void *ud), void *ud)
{
    loop->clock = now_ms ? now_ms : monotonic_ms;
    loop->clock_ud = now_ms ? ud : NULL;
    /* A new clock starts a new time line: no clamping against the old one. */
    loop->now = loop->clock(loop->clock_ud);
}

static bool defers_queued(const struct kz_loop *loop)
{
    return loop->defers.next != &loop->defers;
}

bool kz_loop_alive(const struct kz_loop *loop)
{
    return loop->ios > 0 || loop->timers.len > 0 || defers_queued(loop);
}

void kz_loop_stop(struct kz_loop *loop)
{
    loop->stop = true;
}

int kz_loop_timeout(const struct kz_loop *loop)
{
    if (loop->stop || defers_queued(loop) || !kz_loop_alive(loop))
        return 0;
    const struct kz_timer *t = kz_timer_heap_min(&loop->timers);
    if (!t)
        return -1;
    if (t->deadline <= loop->now)
        return 0;
    uint64_t wait = t->deadline - loop->now;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

static void dispatch_io(struct kz_loop *loop, int n)
{
    struct kz_poll_event *ev = loop->batch;
    for (int i = 0; i < n; i++)
        ((struct kz_io *)ev[i].ptr)->pending = (uint32_t)i + 1;
    for (int i = 0; i < n; i++) {
        struct kz_io *io = ev[i].ptr;
        if (!io)
            continue; /* stopped by an earlier callback of this batch */
        io->pending = 0;
        /* An earlier callback may have narrowed what this watcher wants. */
        unsigned events = ev[i].events & io->events;
        if (events)
            io->cb(loop, io, events);
    }
}

/*
 * Fires the timers due at the start of this phase. Timers (re)started by a
 * callback here carry a seq at or past `first_new` and, having deadlines no
 * earlier than `now`, sort after every older due timer: stopping at the
 * first of them keeps a timer that restarts itself with delay 0 from
 * spinning the phase forever.
 */
static void run_timers(struct kz_loop *loop)
{
    uint64_t now = loop->now;
    uint64_t first_new = loop->timers.next_seq;
    struct kz_timer *t;
    while ((t = kz_timer_heap_min(&loop->timers)) && t->deadline <= now && t->seq < first_new) {
        kz_timer_heap_remove(&loop->timers, t);
        t->cb(loop, t);
    }
}

/*
 * Runs the defers queued before this phase. They move to a local queue
 * first, so defers queued by these callbacks wait for the next iteration,
 * while kz_defer_cancel still works on those not yet run (unlinking needs
 * only the neighbours).
 */
static void run_defers(struct kz_loop *loop)
{
    struct kz_defer *q = &loop->defers;
    if (q->next == q)
        return;
    struct kz_defer due;
    due.next = q->next;
    due.prev = q->prev;
    due.next->prev = &due;
    due.prev->next = &due;
    q->next = q->prev = q;
    while (due.next != &due) {
        struct kz_defer *d = due.next;
        kz_defer_cancel(loop, d);
        d->cb(loop, d);
    }
}

static int iterate(struct kz_loop *loop, int max_wait)
{
    if (loop->timers.len && !defers_queued(loop))
        kz_loop_update_time(loop); /* callbacks of the last iteration took time */
    int timeout = kz_loop_timeout(loop);
    if (max_wait >= 0 && (timeout < 0 || timeout > max_wait))
        timeout = max_wait;
    int n = kz_poll_wait(loop->poll, loop->batch, timeout);
    if (n < 0)
        return n;
    kz_loop_update_time(loop);
    dispatch_io(loop, n);
    run_timers(loop);
    run_defers(loop);
    return KZ_OK;
}

int kz_loop_run_once(struct kz_loop *loop, int timeout_ms)
{
    if (loop->running)
        return KZ_ERR_INVALID_ARGUMENT;
    loop->running = true;
    int rc = iterate(loop, timeout_ms);
    loop->running = false;
    return rc;
}

int kz_loop_run(struct kz_loop *loop)
{
    if (loop->running)
        return KZ_ERR_INVALID_ARGUMENT;
    int rc = KZ_OK;
    loop->running = true;
    while (rc == KZ_OK && !loop->stop && kz_loop_alive(loop))
        rc = iterate(loop, -1);
    loop->running = false;
    loop->stop = false;
    return rc;
}

/* ------------------------------------------------------------------------
 * I/O watchers
 */

static bool valid_events(unsigned events)
{
    return (events & ~(unsigned)(KZ_IO_READ | KZ_IO_WRITE)) == 0;
}

int kz_io_start(struct kz_loop *loop, struct kz_io *io, int fd, unsigned events, kz_io_cb cb)
{
    if (io->active || fd < 0 || !cb || !valid_events(events))
        return KZ_ERR_INVALID_ARGUMENT;
    /* Paused watchers stay out of the kernel: epoll reports hang-ups even for mask 0. */
    if (events && kz_poll_add(loop->poll, fd, events, io) != KZ_OK)
        return KZ_ERR_SYSTEM;
    io->cb = cb;
    io->fd = fd;
    io->pending = 0;
    io->events = (uint8_t)events;
    io->active = 1;
    loop->ios++;
    return KZ_OK;
}

int kz_io_set_events(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    if (events == io->events && io->active)
        return KZ_OK;
    if (!io->active || !valid_events(events))
        return KZ_ERR_INVALID_ARGUMENT;
    int rc;
    if (!events)
        rc = kz_poll_remove(loop->poll, io->fd);
    else if (!io->events)
        rc = kz_poll_add(loop->poll, io->fd, events, io);
    else
        rc = kz_poll_modify(loop->poll, io->fd, events, io);
    if (rc != KZ_OK)
        return rc;
    io->events = (uint8_t)events;
    return KZ_OK;
}

/* Forgets the watcher; `unregister` says whether the kernel must be told. */
static void io_detach(struct kz_loop *loop, struct kz_io *io, bool unregister)
{
    if (!io->active)
        return;
    /* Failure means the descriptor is already gone, and its registration with it. */
    if (unregister && io->events)
        (void)kz_poll_remove(loop->poll, io->fd);
    if (io->pending) {
        loop->batch[io->pending - 1].ptr = NULL;
        io->pending = 0;
    }
    io->active = 0;
    loop->ios--;
}

void kz_io_stop(struct kz_loop *loop, struct kz_io *io)
{
    io_detach(loop, io, true);
}

int kz_io_close(struct kz_loop *loop, struct kz_io *io)
{
    int fd = io->fd;
    /* close() drops the registration with the file's last reference: no epoll_ctl needed. */
    io_detach(loop, io, false);
    io->fd = -1;
    return fd >= 0 ? close(fd) : 0;
}

/* ------------------------------------------------------------------------
 * Timers
 */

int kz_timer_start(struct kz_loop *loop, struct kz_timer *t, uint64_t delay_ms, kz_timer_cb cb)
{
    if (!cb)
        return KZ_ERR_INVALID_ARGUMENT;
    uint64_t deadline = loop->now + delay_ms;
    if (deadline < loop->now)
        deadline = UINT64_MAX; /* "never", without wrapping into the past */
    int rc = kz_timer_heap_schedule(&loop->timers, &loop->alloc, t, deadline);
    if (rc == KZ_OK)
        t->cb = cb;
    return rc;
}

void kz_timer_stop(struct kz_loop *loop, struct kz_timer *t)
{
    kz_timer_heap_remove(&loop->timers, t);
}

bool kz_timer_active(const struct kz_timer *t)
{
    return t->index != 0;
}

/* ------------------------------------------------------------------------
 * Defers
 */

void kz_defer(struct kz_loop *loop, struct kz_defer *d, kz_defer_cb cb)
{
    if (d->next)
        return;
    struct kz_defer *q = &loop->defers;
    d->cb = cb;
    d->next = q;
    d->prev = q->prev;
    q->prev->next = d;
    q->prev = d;
}

void kz_defer_cancel(struct kz_loop *loop, struct kz_defer *d)
{
    if (!d->next)
        return;
    d->prev->next = d->next;
    d->next->prev = d->prev;
    d->next = d->prev = NULL;
}

bool kz_defer_queued(const struct kz_defer *d)
{
    return d->next != NULL;
}

/* ------------------------------------------------------------------------
 * Async
 */

/*
 * The eventfd is drained before `pending` is cleared: a send that lands
 * after the drain either finds pending still set (and this callback serves
 * it) or writes again (and wakes the next iteration). No send is lost.
 */
static void on_async(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct kz_async *a = KZ_CONTAINER_OF(io, struct kz_async, io);
    uint64_t count;
    if (read(io->fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
        return; /* EAGAIN: the wake-up was already consumed */
    if (!__atomic_exchange_n(&a->pending, 0u, __ATOMIC_ACQ_REL))
        return;
    a->cb(loop, a);
}

int kz_async_start(struct kz_loop *loop, struct kz_async *a, kz_async_cb cb)
{
    if (a->io.active || !cb)
        return KZ_ERR_INVALID_ARGUMENT;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return KZ_ERR_SYSTEM;
    a->cb = cb;
    __atomic_store_n(&a->pending, 0u, __ATOMIC_RELAXED);
    int rc = kz_io_start(loop, &a->io, fd, KZ_IO_READ, on_async);
    if (rc != KZ_OK)
        close_keep_errno(fd);
    return rc;
}

int kz_async_send(struct kz_async *a)
{
    if (__atomic_exchange_n(&a->pending, 1u, __ATOMIC_ACQ_REL))
        return KZ_OK; /* a wake-up is already on its way */
    uint64_t one = 1;
    for (;;) {
        if (write(a->io.fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            return KZ_OK;
        if (errno == EAGAIN)
            return KZ_OK; /* the counter is saturated: the loop is woken anyway */
        if (errno != EINTR)
            break;
    }
    /* Nothing was written: let the next send try again. */
    int saved = errno;
    __atomic_store_n(&a->pending, 0u, __ATOMIC_RELEASE);
    errno = saved;
    return KZ_ERR_SYSTEM;
}

void kz_async_stop(struct kz_loop *loop, struct kz_async *a)
{
    if (!a->io.active)
        return;
    int fd = a->io.fd;
    kz_io_stop(loop, &a->io);
    close(fd);
}

/* ------------------------------------------------------------------------
 * Signals
 */

/*
 * One signal per readiness: the watcher may be stopped or freed by its
 * callback, so nothing touches it afterwards; level triggering brings the
 * next signal in the next iteration.
 */
static void on_signal(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct kz_signal *s = KZ_CONTAINER_OF(io, struct kz_signal, io);
    struct signalfd_siginfo info;
    if (read(io->fd, &info, sizeof(info)) != (ssize_t)sizeof(info))
        return; /* EAGAIN: another reader of the same signal took it */
    s->cb(loop, s);
}

int kz_signal_start(struct kz_loop *loop, struct kz_signal *s, int signo, kz_signal_cb cb)
{
    if (s->io.active || !cb || signo == SIGKILL || signo == SIGSTOP)
        return KZ_ERR_INVALID_ARGUMENT;
    sigset_t set;
    sigemptyset(&set);
    if (sigaddset(&set, signo) != 0)
        return KZ_ERR_INVALID_ARGUMENT;
    int err = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (err != 0) {
        errno = err;
        return KZ_ERR_SYSTEM;
    }
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return KZ_ERR_SYSTEM;
    s->cb = cb;
    s->signo = signo;
    int rc = kz_io_start(loop, &s->io, fd, KZ_IO_READ, on_signal);
    if (rc != KZ_OK)
        close_keep_errno(fd);
    return rc;
}

void kz_signal_stop(struct kz_loop *loop, struct kz_signal *s)
{
    if (!s->io.active)
        return;
    int fd = s->io.fd;
    kz_io_stop(loop, &s->io);
    close(fd);
}
