/*
 * The event loop: io watchers, the safety of a batch, timers on an injected
 * clock, defers, asyncs from another thread, signals, and allocation
 * failures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "kaze/loop.h"

/* ------------------------------------------------------------------------
 * Helpers
 */

struct fake_clock {
    uint64_t ms;
};

static uint64_t fake_now(void *ud)
{
    return ((struct fake_clock *)ud)->ms;
}

static void nonblocking_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void close_pair(int sv[2])
{
    close(sv[0]);
    close(sv[1]);
}

static void put(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void drain(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

/* An io watcher that records its calls. */
struct probe {
    struct kz_io io;
    int calls;
    unsigned last;
};

static void probe_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct probe *p = KZ_CONTAINER_OF(io, struct probe, io);
    p->calls++;
    p->last = events;
}

/* Runs one non-blocking iteration and returns how often `p` was called. */
static int calls_in_one_iteration(struct kz_loop *loop, struct probe *p)
{
    int before = p->calls;
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    return p->calls - before;
}

/* A log of which callbacks ran, in order. */
struct trace {
    char log[64];
    size_t len;
};

static void trace_add(struct trace *tr, char c)
{
    assert_true(tr->len + 1 < sizeof(tr->log));
    tr->log[tr->len++] = c;
    tr->log[tr->len] = '\0';
}

/* ------------------------------------------------------------------------
 * io watchers
 */

static void io_read_and_write_readiness(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    int sv[2];
    nonblocking_pair(sv);
    struct probe p = {0};
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], KZ_IO_READ, probe_cb), KZ_OK);
    assert_true(kz_loop_alive(loop));
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);

    put(sv[1], "x");
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(p.last, KZ_IO_READ);
    /* Level-triggered: unread data reports again. */
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    drain(sv[0]);
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);

    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_READ | KZ_IO_WRITE), KZ_OK);
    assert_int_equal(p.io.events, KZ_IO_READ | KZ_IO_WRITE);
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(p.last, KZ_IO_WRITE);
    put(sv[1], "y");
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(p.last, KZ_IO_READ | KZ_IO_WRITE);
    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_WRITE), KZ_OK);
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(p.last, KZ_IO_WRITE);

    kz_io_stop(loop, &p.io);
    kz_io_stop(loop, &p.io); /* a second stop does nothing */
    assert_false(kz_loop_alive(loop));
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);
    /* A stopped io can start again, on another descriptor too. */
    assert_int_equal(kz_io_start(loop, &p.io, sv[1], KZ_IO_WRITE, probe_cb), KZ_OK);
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    kz_io_stop(loop, &p.io);
    close_pair(sv);
    kz_loop_free(loop);
}

static void zero_events_pause_a_started_watcher(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    int sv[2];
    nonblocking_pair(sv);
    struct probe p = {0};
    /* Started paused: nothing registered, but the loop is alive. */
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], 0, probe_cb), KZ_OK);
    assert_true(kz_loop_alive(loop));
    put(sv[1], "x");
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);
    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_READ), KZ_OK);
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(kz_io_set_events(loop, &p.io, 0), KZ_OK);
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);
    /* Paused over a hang-up: epoll would report it even with an empty mask. */
    close(sv[1]);
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);
    assert_true(kz_loop_alive(loop));
    kz_io_stop(loop, &p.io);
    close(sv[0]);
    kz_loop_free(loop);
}

/*
 * White-box: once its descriptor is closed, any epoll_ctl on the watcher
 * fails with EBADF, so success shows that no system call was made.
 */
static void unchanged_events_make_no_system_call(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    int sv[2];
    nonblocking_pair(sv);
    struct probe p = {0};
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], KZ_IO_READ, probe_cb), KZ_OK);
    close(sv[0]);
    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_READ), KZ_OK);
    errno = 0;
    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_WRITE), KZ_ERR_SYSTEM);
    assert_int_equal(errno, EBADF);
    assert_int_equal(p.io.events, KZ_IO_READ); /* unchanged after the failure */
    kz_io_stop(loop, &p.io);
    assert_false(kz_loop_alive(loop));
    close(sv[1]);
    kz_loop_free(loop);
}

static void hangup_arrives_as_read_and_write(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
    struct probe p = {0};
    /* A pipe's read end is never writable: WRITE can only come from the hang-up. */
    assert_int_equal(kz_io_start(loop, &p.io, pfd[0], KZ_IO_READ | KZ_IO_WRITE, probe_cb), KZ_OK);
    assert_int_equal(calls_in_one_iteration(loop, &p), 0);
    close(pfd[1]);
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(p.last, KZ_IO_READ | KZ_IO_WRITE);
    /* Only what was asked for is delivered. */
    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_READ), KZ_OK);
    assert_int_equal(calls_in_one_iteration(loop, &p), 1);
    assert_int_equal(p.last, KZ_IO_READ);
    kz_io_stop(loop, &p.io);
    close(pfd[0]);
    kz_loop_free(loop);
}

static void io_start_rejects_bad_arguments(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    int sv[2];
    nonblocking_pair(sv);
    struct probe p = {0};
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], 4, probe_cb), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_io_start(loop, &p.io, -1, KZ_IO_READ, probe_cb), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_io_set_events(loop, &p.io, KZ_IO_READ), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], KZ_IO_READ, probe_cb), KZ_OK);
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], KZ_IO_READ, probe_cb),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_io_set_events(loop, &p.io, 8), KZ_ERR_INVALID_ARGUMENT);
    kz_io_stop(loop, &p.io);
    /* epoll refuses regular files: the error is reported and the io stays stopped. */
    char path[] = "/tmp/kz-test-loop-XXXXXX";
    int file = mkostemp(path, O_CLOEXEC);
    assert_true(file >= 0);
    unlink(path);
    errno = 0;
    assert_int_equal(kz_io_start(loop, &p.io, file, KZ_IO_READ, probe_cb), KZ_ERR_SYSTEM);
    assert_int_equal(errno, EPERM);
    assert_false(kz_loop_alive(loop));
    close(file);
    close_pair(sv);
    kz_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * The safety of a batch
 */

/* Two watchers, both readable before the iteration: one batch holds both. */
struct rivals;

struct rival {
    struct kz_io io;
    struct rivals *pair;
    struct kz_io *other;
};

struct rivals {
    struct kz_loop *loop;
    struct rival a, b;
    int sa[2], sb[2];
    int calls;
    void (*act)(struct kz_loop *loop, struct kz_io *other);
};

static void rival_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct rival *me = KZ_CONTAINER_OF(io, struct rival, io);
    me->pair->calls++;
    me->pair->act(loop, me->other);
}

static void stop_other(struct kz_loop *loop, struct kz_io *other)
{
    kz_io_stop(loop, other);
}

static void narrow_other(struct kz_loop *loop, struct kz_io *other)
{
    assert_int_equal(kz_io_set_events(loop, other, KZ_IO_WRITE), KZ_OK);
}

static void rivals_setup(struct rivals *r, struct kz_loop *loop,
                         void (*act)(struct kz_loop *, struct kz_io *))
{
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    r->act = act;
    r->a.pair = r->b.pair = r;
    r->a.other = &r->b.io;
    r->b.other = &r->a.io;
    nonblocking_pair(r->sa);
    nonblocking_pair(r->sb);
    put(r->sa[1], "a");
    put(r->sb[1], "b");
    assert_int_equal(kz_io_start(loop, &r->a.io, r->sa[0], KZ_IO_READ, rival_cb), KZ_OK);
    assert_int_equal(kz_io_start(loop, &r->b.io, r->sb[0], KZ_IO_READ, rival_cb), KZ_OK);
}

static void rivals_teardown(struct rivals *r)
{
    kz_io_stop(r->loop, &r->a.io);
    kz_io_stop(r->loop, &r->b.io);
    close_pair(r->sa);
    close_pair(r->sb);
}

static void stopped_watcher_in_batch_is_not_called(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct rivals r;
    rivals_setup(&r, loop, stop_other);
    /* Whichever comes first stops the other, whose event is already in the batch. */
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(r.calls, 1);
    /* The survivor is still readable and still called; the stopped one is not. */
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(r.calls, 2);
    rivals_teardown(&r);
    assert_false(kz_loop_alive(loop));
    kz_loop_free(loop);
}

static void close_other(struct kz_loop *loop, struct kz_io *other)
{
    int fd = other->fd;
    assert_int_equal(kz_io_close(loop, other), 0);
    assert_int_equal(other->fd, -1);
    assert_int_equal(fcntl(fd, F_GETFD), -1); /* the descriptor is gone */
    assert_int_equal(errno, EBADF);
}

static void closed_watcher_in_batch_is_not_called(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct rivals r;
    rivals_setup(&r, loop, close_other);
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(r.calls, 1);
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(r.calls, 2); /* only the survivor, again */
    /* One of the read ends is closed already: stop the survivor, close the rest. */
    bool a_alive = r.a.io.fd >= 0;
    assert_int_equal(kz_io_close(loop, a_alive ? &r.a.io : &r.b.io), 0);
    assert_false(kz_loop_alive(loop));
    close(r.sa[1]); /* the write ends stay ours */
    close(r.sb[1]);
    kz_loop_free(loop);
}

static void narrowed_watcher_in_batch_gets_only_what_it_wants(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct rivals r;
    rivals_setup(&r, loop, narrow_other);
    /* The second one's READ event is pending, but it now wants only WRITE. */
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(r.calls, 1);
    rivals_teardown(&r);
    kz_loop_free(loop);
}

/* Owners on the heap that free each other from their callbacks. */
struct owner {
    struct kz_io io;
    int sv[2];
    struct owner *other;
    int *calls;
};

static void owner_free(struct kz_loop *loop, struct owner *o)
{
    kz_io_stop(loop, &o->io);
    close_pair(o->sv);
    free(o);
}

static void owner_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct owner *o = KZ_CONTAINER_OF(io, struct owner, io);
    (*o->calls)++;
    owner_free(loop, o->other);
    owner_free(loop, o);
}

static void owner_freed_in_callback(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    int calls = 0;
    struct owner *x = calloc(1, sizeof(*x));
    struct owner *y = calloc(1, sizeof(*y));
    assert_non_null(x);
    assert_non_null(y);
    x->other = y;
    y->other = x;
    x->calls = y->calls = &calls;
    nonblocking_pair(x->sv);
    nonblocking_pair(y->sv);
    put(x->sv[1], "x");
    put(y->sv[1], "y");
    assert_int_equal(kz_io_start(loop, &x->io, x->sv[0], KZ_IO_READ, owner_cb), KZ_OK);
    assert_int_equal(kz_io_start(loop, &y->io, y->sv[0], KZ_IO_READ, owner_cb), KZ_OK);
    /* The first callback frees both; the second event must not touch freed memory. */
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(calls, 1);
    assert_false(kz_loop_alive(loop));
    kz_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * Timers
 */

struct tick {
    struct kz_timer t;
    char name;
    struct trace *tr;
    int restarts; /* how many more times the callback restarts the timer */
    uint64_t every;
};

static void tick_cb(struct kz_loop *loop, struct kz_timer *t)
{
    struct tick *k = KZ_CONTAINER_OF(t, struct tick, t);
    assert_false(kz_timer_active(t));
    trace_add(k->tr, k->name);
    if (k->restarts > 0) {
        k->restarts--;
        assert_int_equal(kz_timer_start(loop, t, k->every, tick_cb), KZ_OK);
    }
}

static struct kz_loop *fake_loop(struct fake_clock *clock, uint64_t start)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    clock->ms = start;
    kz_loop_set_clock(loop, fake_now, clock);
    assert_int_equal(kz_loop_now(loop), start);
    return loop;
}

/* Moves the fake clock and runs one iteration that does not block. */
static void step_to(struct kz_loop *loop, struct fake_clock *clock, uint64_t ms)
{
    clock->ms = ms;
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(kz_loop_now(loop), ms);
}

static void timers_fire_in_deadline_then_start_order(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 1000);
    struct trace tr = {0};
    struct tick a = {.name = 'a', .tr = &tr}, b = {.name = 'b', .tr = &tr};
    struct tick c = {.name = 'c', .tr = &tr}, d = {.name = 'd', .tr = &tr};
    assert_int_equal(kz_timer_start(loop, &a.t, 30, tick_cb), KZ_OK);
    assert_int_equal(kz_timer_start(loop, &b.t, 10, tick_cb), KZ_OK);
    assert_int_equal(kz_timer_start(loop, &c.t, 20, tick_cb), KZ_OK);
    assert_int_equal(kz_timer_start(loop, &d.t, 10, tick_cb), KZ_OK);
    assert_int_equal(b.t.deadline, 1010);
    assert_int_equal(kz_loop_timeout(loop), 10);
    step_to(loop, &clock, 1000);
    step_to(loop, &clock, 1009); /* never early */
    assert_string_equal(tr.log, "");
    step_to(loop, &clock, 1010);
    assert_string_equal(tr.log, "bd"); /* same deadline: start order */
    assert_int_equal(kz_loop_timeout(loop), 10);
    step_to(loop, &clock, 1045); /* late: both due, earliest first */
    assert_string_equal(tr.log, "bdca");
    assert_false(kz_loop_alive(loop));
    kz_loop_free(loop);
}

static void timers_restart_and_stop(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 0);
    struct trace tr = {0};
    struct tick a = {.name = 'a', .tr = &tr}, b = {.name = 'b', .tr = &tr};
    struct tick c = {.name = 'c', .tr = &tr};
    assert_false(kz_timer_active(&a.t));
    assert_int_equal(kz_timer_start(loop, &a.t, 10, tick_cb), KZ_OK);
    assert_int_equal(kz_timer_start(loop, &b.t, 20, tick_cb), KZ_OK);
    assert_int_equal(kz_timer_start(loop, &c.t, 15, tick_cb), KZ_OK);
    assert_true(kz_timer_active(&a.t));
    /* Restarting moves: a now fires after b. */
    assert_int_equal(kz_timer_start(loop, &a.t, 25, tick_cb), KZ_OK);
    kz_timer_stop(loop, &c.t);
    kz_timer_stop(loop, &c.t);
    assert_false(kz_timer_active(&c.t));
    step_to(loop, &clock, 10);
    assert_string_equal(tr.log, "");
    step_to(loop, &clock, 20);
    assert_string_equal(tr.log, "b");
    assert_false(kz_timer_active(&b.t));
    step_to(loop, &clock, 30);
    assert_string_equal(tr.log, "ba");
    /* A stopped timer never fired. */
    step_to(loop, &clock, 100);
    assert_string_equal(tr.log, "ba");
    assert_false(kz_loop_alive(loop));
    kz_loop_free(loop);
}

static void timer_restarts_itself(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 0);
    struct trace tr = {0};
    /* Delay 0 from its own callback: once per iteration, not a spin. */
    struct tick z = {.name = 'z', .tr = &tr, .restarts = 3, .every = 0};
    struct tick p = {.name = 'p', .tr = &tr, .restarts = 2, .every = 5};
    assert_int_equal(kz_timer_start(loop, &z.t, 0, tick_cb), KZ_OK);
    assert_int_equal(kz_timer_start(loop, &p.t, 5, tick_cb), KZ_OK);
    step_to(loop, &clock, 0);
    assert_string_equal(tr.log, "z");
    step_to(loop, &clock, 0);
    assert_string_equal(tr.log, "zz");
    step_to(loop, &clock, 5);
    assert_string_equal(tr.log, "zzzp");
    step_to(loop, &clock, 5);
    assert_string_equal(tr.log, "zzzpz");
    step_to(loop, &clock, 9);
    assert_string_equal(tr.log, "zzzpz");
    step_to(loop, &clock, 10);
    step_to(loop, &clock, 15);
    assert_string_equal(tr.log, "zzzpzpp");
    assert_false(kz_loop_alive(loop));
    kz_loop_free(loop);
}

static void wait_follows_the_next_deadline(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 500);
    /* Nothing alive: never wait. */
    assert_int_equal(kz_loop_timeout(loop), 0);
    int sv[2];
    nonblocking_pair(sv);
    struct probe p = {0};
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], KZ_IO_READ, probe_cb), KZ_OK);
    assert_int_equal(kz_loop_timeout(loop), -1); /* only I/O can end the wait */
    struct trace tr = {0};
    struct tick a = {.name = 'a', .tr = &tr}, b = {.name = 'b', .tr = &tr};
    assert_int_equal(kz_timer_start(loop, &a.t, 100, tick_cb), KZ_OK);
    assert_int_equal(kz_loop_timeout(loop), 100);
    assert_int_equal(kz_timer_start(loop, &b.t, 40, tick_cb), KZ_OK);
    assert_int_equal(kz_loop_timeout(loop), 40);
    clock.ms = 530;
    assert_int_equal(kz_loop_timeout(loop), 40); /* measured from the cached time */
    kz_loop_update_time(loop);
    assert_int_equal(kz_loop_timeout(loop), 10);
    clock.ms = 550;
    kz_loop_update_time(loop);
    assert_int_equal(kz_loop_timeout(loop), 0);
    kz_timer_stop(loop, &b.t);
    assert_int_equal(kz_loop_timeout(loop), 50);
    /* The cached time never goes back, even if the clock does. */
    clock.ms = 10;
    kz_loop_update_time(loop);
    assert_int_equal(kz_loop_now(loop), 550);
    /* A far deadline is capped, not wrapped. */
    kz_timer_stop(loop, &a.t);
    assert_int_equal(kz_timer_start(loop, &a.t, UINT64_MAX, tick_cb), KZ_OK);
    assert_int_equal(a.t.deadline, UINT64_MAX);
    assert_int_equal(kz_loop_timeout(loop), INT_MAX);
    kz_loop_stop(loop);
    assert_int_equal(kz_loop_timeout(loop), 0);
    assert_int_equal(kz_loop_run(loop), KZ_OK); /* the early stop is consumed */
    assert_int_equal(kz_loop_timeout(loop), INT_MAX);
    kz_timer_stop(loop, &a.t);
    kz_io_stop(loop, &p.io);
    close_pair(sv);
    kz_loop_free(loop);
}

/*
 * Time that passed in callbacks counts: the wait is computed from a fresh
 * clock reading, so a deadline that passed meanwhile does not wait an hour.
 */
static void wait_counts_time_spent_in_callbacks(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 0);
    struct trace tr = {0};
    struct tick a = {.name = 'a', .tr = &tr};
    assert_int_equal(kz_timer_start(loop, &a.t, 3600 * 1000, tick_cb), KZ_OK);
    clock.ms = 3600 * 1000;
    assert_int_equal(kz_loop_run_once(loop, -1), KZ_OK);
    assert_string_equal(tr.log, "a");
    kz_loop_free(loop);
}

static void done_cb(struct kz_loop *loop, struct kz_timer *t)
{
    struct tick *k = KZ_CONTAINER_OF(t, struct tick, t);
    trace_add(k->tr, k->name);
}

/* Real clock: the loop sleeps until the timer and returns once it fired. */
static void real_timer_fires_and_run_returns(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct trace tr = {0};
    struct tick t = {.name = 't', .tr = &tr};
    uint64_t start = kz_loop_now(loop);
    assert_int_equal(kz_timer_start(loop, &t.t, 20, done_cb), KZ_OK);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_string_equal(tr.log, "t");
    assert_true(kz_loop_now(loop) >= start + 20);
    kz_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * Defers and the order of an iteration
 */

struct job {
    struct kz_defer d;
    char name;
    struct trace *tr;
    struct kz_defer *requeue; /* queued again from this callback, if set */
    struct kz_defer *cancel;  /* cancelled from this callback, if set */
    kz_defer_cb requeue_cb;
};

static void job_cb(struct kz_loop *loop, struct kz_defer *d)
{
    struct job *j = KZ_CONTAINER_OF(d, struct job, d);
    assert_false(kz_defer_queued(d));
    trace_add(j->tr, j->name);
    if (j->requeue) {
        kz_defer(loop, j->requeue, j->requeue_cb);
        j->requeue = NULL;
    }
    if (j->cancel)
        kz_defer_cancel(loop, j->cancel);
}

static void defers_run_in_order_once(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct trace tr = {0};
    struct job a = {.name = 'a', .tr = &tr}, b = {.name = 'b', .tr = &tr};
    struct job c = {.name = 'c', .tr = &tr}, e = {.name = 'e', .tr = &tr};
    a.requeue = &a.d; /* a queues itself again: next iteration */
    a.requeue_cb = job_cb;
    b.cancel = &e.d; /* b cancels e, queued after it */
    kz_defer(loop, &a.d, job_cb);
    kz_defer(loop, &b.d, job_cb);
    kz_defer(loop, &c.d, job_cb);
    kz_defer(loop, &b.d, job_cb); /* already queued: no-op, order unchanged */
    kz_defer(loop, &e.d, job_cb);
    assert_true(kz_defer_queued(&b.d));
    assert_true(kz_loop_alive(loop));
    assert_int_equal(kz_loop_timeout(loop), 0);
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_string_equal(tr.log, "abc");
    assert_false(kz_defer_queued(&e.d));
    /* The re-queued defer waits for the next iteration, which must not block. */
    assert_true(kz_defer_queued(&a.d));
    assert_int_equal(kz_loop_timeout(loop), 0);
    assert_int_equal(kz_loop_run_once(loop, -1), KZ_OK);
    assert_string_equal(tr.log, "abca");
    assert_false(kz_loop_alive(loop));
    /* kz_loop_run runs defers and returns when none is left. */
    kz_defer(loop, &c.d, job_cb);
    kz_defer(loop, &b.d, job_cb);
    kz_defer_cancel(loop, &b.d);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_string_equal(tr.log, "abcac");
    kz_loop_free(loop);
}

/* One of each kind, all ready in the same iteration. */
struct phases {
    struct probe io;
    struct kz_timer timer;
    struct job late;  /* queued by the io callback */
    struct job early; /* queued before the iteration */
    struct trace tr;
};

static void phases_io_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct phases *ph = KZ_CONTAINER_OF(io, struct phases, io.io);
    trace_add(&ph->tr, 'i');
    kz_io_stop(loop, io);
    kz_defer(loop, &ph->late.d, job_cb);
}

static void phases_timer_cb(struct kz_loop *loop, struct kz_timer *t)
{
    struct phases *ph = KZ_CONTAINER_OF(t, struct phases, timer);
    trace_add(&ph->tr, 't');
}

static void iteration_runs_io_then_timers_then_defers(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 0);
    struct phases ph;
    memset(&ph, 0, sizeof(ph));
    ph.early = (struct job){.name = 'e', .tr = &ph.tr};
    ph.late = (struct job){.name = 'l', .tr = &ph.tr};
    int sv[2];
    nonblocking_pair(sv);
    put(sv[1], "x");
    kz_defer(loop, &ph.early.d, job_cb);
    assert_int_equal(kz_timer_start(loop, &ph.timer, 0, phases_timer_cb), KZ_OK);
    assert_int_equal(kz_io_start(loop, &ph.io.io, sv[0], KZ_IO_READ, phases_io_cb), KZ_OK);
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_string_equal(ph.tr.log, "itel");
    assert_false(kz_loop_alive(loop));
    close_pair(sv);
    kz_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * Stopping and re-entry
 */

struct stopper {
    struct kz_timer t;
    int fired;
    int stop_at;
    int reentry_rc;
};

static void stopper_cb(struct kz_loop *loop, struct kz_timer *t)
{
    struct stopper *s = KZ_CONTAINER_OF(t, struct stopper, t);
    s->fired++;
    s->reentry_rc = kz_loop_run_once(loop, 0);
    assert_int_equal(kz_timer_start(loop, t, 0, stopper_cb), KZ_OK);
    if (s->fired == s->stop_at)
        kz_loop_stop(loop);
}

static void stop_from_callback_ends_run(void **state)
{
    struct fake_clock clock;
    struct kz_loop *loop = fake_loop(&clock, 0);
    struct stopper s = {.stop_at = 3};
    assert_int_equal(kz_timer_start(loop, &s.t, 0, stopper_cb), KZ_OK);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(s.fired, 3);
    assert_int_equal(s.reentry_rc, KZ_ERR_INVALID_ARGUMENT);
    /* Still alive; running again picks up where it stopped. */
    assert_true(kz_loop_alive(loop));
    s.stop_at = 5;
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(s.fired, 5);
    kz_timer_stop(loop, &s.t);
    kz_loop_free(loop);
}

static void self_stopping_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct probe *p = KZ_CONTAINER_OF(io, struct probe, io);
    p->calls++;
    drain(io->fd);
    kz_io_stop(loop, io);
}

static void run_returns_when_nothing_is_active(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    assert_false(kz_loop_alive(loop));
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(kz_loop_run_once(loop, -1), KZ_OK); /* does not block either */
    int sv[2];
    nonblocking_pair(sv);
    struct probe p = {0};
    assert_int_equal(kz_io_start(loop, &p.io, sv[0], KZ_IO_READ, self_stopping_cb), KZ_OK);
    put(sv[1], "bye");
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(p.calls, 1);
    close_pair(sv);
    kz_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * Async and signals
 */

struct waker {
    struct kz_async a;
    int calls;
    int payload; /* written by the other thread before its send */
    int seen;
    int send_rc; /* the thread's kz_async_send result, checked by the test */
};

static void waker_cb(struct kz_loop *loop, struct kz_async *a)
{
    struct waker *w = KZ_CONTAINER_OF(a, struct waker, a);
    w->calls++;
    w->seen = w->payload;
    kz_async_stop(loop, a);
}

static void *send_from_thread(void *arg)
{
    struct waker *w = arg;
    w->payload = 42;
    w->send_rc = kz_async_send(&w->a);
    return NULL;
}

static void count_cb(struct kz_loop *loop, struct kz_async *a)
{
    KZ_CONTAINER_OF(a, struct waker, a)->calls++;
}

static void async_wakes_loop_from_another_thread(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct waker w = {0};
    /* Sends before the loop runs coalesce into one callback. */
    assert_int_equal(kz_async_start(loop, &w.a, count_cb), KZ_OK);
    assert_int_equal(kz_async_start(loop, &w.a, count_cb), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_async_send(&w.a), KZ_OK);
    assert_int_equal(kz_async_send(&w.a), KZ_OK);
    assert_int_equal(kz_async_send(&w.a), KZ_OK);
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(kz_loop_run_once(loop, 0), KZ_OK);
    assert_int_equal(w.calls, 1);
    kz_async_stop(loop, &w.a);
    kz_async_stop(loop, &w.a);
    assert_false(kz_loop_alive(loop));

    /* The loop blocks with only the async alive; the thread's send ends it. */
    w.calls = 0;
    assert_int_equal(kz_async_start(loop, &w.a, waker_cb), KZ_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, send_from_thread, &w), 0);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.send_rc, KZ_OK);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.seen, 42);
    assert_false(kz_loop_alive(loop));
    kz_loop_free(loop);
}

struct sigwatch {
    struct kz_signal s;
    int calls;
    int signo;
};

static void sig_cb(struct kz_loop *loop, struct kz_signal *s)
{
    struct sigwatch *w = KZ_CONTAINER_OF(s, struct sigwatch, s);
    w->calls++;
    w->signo = s->signo;
    kz_signal_stop(loop, s);
}

static void signal_is_delivered_through_loop(void **state)
{
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct sigwatch w = {0};
    assert_int_equal(kz_signal_start(loop, &w.s, 0, sig_cb), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_signal_start(loop, &w.s, SIGKILL, sig_cb), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_signal_start(loop, &w.s, SIGUSR1, sig_cb), KZ_OK);
    /* Blocked now: raising it cannot kill the test; it waits in the signalfd. */
    sigset_t mask;
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    assert_true(sigismember(&mask, SIGUSR1));
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.signo, SIGUSR1);
    assert_false(kz_loop_alive(loop));
    /* Raised twice while pending, a standard signal is delivered once. */
    w.calls = 0;
    assert_int_equal(kz_signal_start(loop, &w.s, SIGUSR1, sig_cb), KZ_OK);
    assert_int_equal(pthread_kill(pthread_self(), SIGUSR1), 0);
    assert_int_equal(pthread_kill(pthread_self(), SIGUSR1), 0);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(w.calls, 1);
    kz_loop_free(loop);
}

/* ------------------------------------------------------------------------
 * Allocation failures
 */

static void loop_new_fails_cleanly(void **state)
{
    struct kzt_failalloc fa;
    unsigned long fail_at = 1;
    for (;; fail_at++) {
        kzt_failalloc_init(&fa, fail_at);
        errno = 0;
        struct kz_loop *loop = kz_loop_new(&fa.alloc);
        if (loop) {
            kz_loop_free(loop);
            assert_int_equal(fa.live, 0);
            break;
        }
        assert_int_equal(errno, ENOMEM);
        assert_int_equal(fa.live, 0);
    }
    assert_true(fail_at > 1); /* at least one failure was exercised */
    struct kz_allocator no_free = fa.alloc;
    no_free.free = NULL;
    errno = 0;
    assert_null(kz_loop_new(&no_free));
    assert_int_equal(errno, EINVAL);
}

static void timer_heap_growth_failure_leaves_loop_usable(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_loop *loop = kz_loop_new(&fa.alloc);
    assert_non_null(loop);
    struct fake_clock clock = {.ms = 0};
    kz_loop_set_clock(loop, fake_now, &clock);
    struct trace tr = {0};
    struct tick t = {.name = 't', .tr = &tr};
    fa.fail_at = fa.count + 1;
    fa.fail_after = true;
    assert_int_equal(kz_timer_start(loop, &t.t, 5, tick_cb), KZ_ERR_NOMEM);
    assert_false(kz_timer_active(&t.t));
    assert_false(kz_loop_alive(loop));
    /* Memory back: the same timer starts and fires. */
    fa.fail_at = 0;
    assert_int_equal(kz_timer_start(loop, &t.t, 5, tick_cb), KZ_OK);
    step_to(loop, &clock, 5);
    assert_string_equal(tr.log, "t");
    kz_loop_free(loop);
    assert_int_equal(fa.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(io_read_and_write_readiness),
        cmocka_unit_test(zero_events_pause_a_started_watcher),
        cmocka_unit_test(unchanged_events_make_no_system_call),
        cmocka_unit_test(hangup_arrives_as_read_and_write),
        cmocka_unit_test(io_start_rejects_bad_arguments),
        cmocka_unit_test(stopped_watcher_in_batch_is_not_called),
        cmocka_unit_test(closed_watcher_in_batch_is_not_called),
        cmocka_unit_test(narrowed_watcher_in_batch_gets_only_what_it_wants),
        cmocka_unit_test(owner_freed_in_callback),
        cmocka_unit_test(timers_fire_in_deadline_then_start_order),
        cmocka_unit_test(timers_restart_and_stop),
        cmocka_unit_test(timer_restarts_itself),
        cmocka_unit_test(wait_follows_the_next_deadline),
        cmocka_unit_test(wait_counts_time_spent_in_callbacks),
        cmocka_unit_test(real_timer_fires_and_run_returns),
        cmocka_unit_test(defers_run_in_order_once),
        cmocka_unit_test(iteration_runs_io_then_timers_then_defers),
        cmocka_unit_test(stop_from_callback_ends_run),
        cmocka_unit_test(run_returns_when_nothing_is_active),
        cmocka_unit_test(async_wakes_loop_from_another_thread),
        cmocka_unit_test(signal_is_delivered_through_loop),
        cmocka_unit_test(loop_new_fails_cleanly),
        cmocka_unit_test(timer_heap_growth_failure_leaves_loop_usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
