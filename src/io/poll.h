/*
 * io/poll.h — the contract between the loop and its poller backend.
 *
 * The loop knows nothing about epoll: it registers a descriptor with a
 * pointer and an event mask (KZ_IO_READ | KZ_IO_WRITE), and waits for a
 * batch of (pointer, events) pairs. poll_epoll.c is the only backend; a
 * kqueue or io_uring backend would implement these six functions and
 * nothing else.
 */
#ifndef KZ_IO_POLL_H
#define KZ_IO_POLL_H

#include "kaze/common.h"

struct kz_poll;

/* One ready descriptor: the pointer given at registration and its events. */
struct kz_poll_event {
    void *ptr;
    unsigned events; /* KZ_IO_READ | KZ_IO_WRITE; errors and hang-ups set both */
};

/*
 * Creates a poller that returns at most `max_events` events per wait.
 * Returns NULL with errno set (ENOMEM when the allocator failed).
 */
struct kz_poll *kz_poll_new(const struct kz_allocator *alloc, int max_events);

/* Closes the poller's descriptor and frees it through the same allocator. */
void kz_poll_free(struct kz_poll *p, const struct kz_allocator *alloc);

/*
 * Registers `fd` (not yet registered) for `events` (nonzero), level-
 * triggered, reporting `ptr`. KZ_OK or KZ_ERR_SYSTEM with errno set.
 */
int kz_poll_add(struct kz_poll *p, int fd, unsigned events, void *ptr);

/* Changes the events (nonzero) of a registered `fd`. KZ_OK or KZ_ERR_SYSTEM. */
int kz_poll_modify(struct kz_poll *p, int fd, unsigned events, void *ptr);

/*
 * Unregisters `fd`. KZ_OK or KZ_ERR_SYSTEM (for example when the descriptor
 * was already closed, which unregistered it).
 */
int kz_poll_remove(struct kz_poll *p, int fd);

/*
 * Waits up to `timeout_ms` (negative: forever) and stores the ready
 * descriptors in `out` (room for the `max_events` given to kz_poll_new).
 * Returns how many, 0 on timeout or EINTR, or KZ_ERR_SYSTEM with errno set.
 */
int kz_poll_wait(struct kz_poll *p, struct kz_poll_event *out, int timeout_ms);

#endif
