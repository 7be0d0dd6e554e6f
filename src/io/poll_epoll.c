/*
 * The epoll backend of the poller contract (io/poll.h). Level-triggered on
 * purpose: a handler that stops reading early (to cap the bytes per event,
 * or because its peer is slow) is called again next iteration without
 * having to remember that anything is left.
 */
#include "io/poll.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "kaze/loop.h"

struct kz_poll {
    int epfd;
    int max_events;
    struct epoll_event events[]; /* the kernel's batch, translated into the caller's */
};

struct kz_poll *kz_poll_new(const struct kz_allocator *alloc, int max_events)
{
    size_t size = sizeof(struct kz_poll) + (size_t)max_events * sizeof(struct epoll_event);
    struct kz_poll *p = alloc->malloc(size, alloc->ud);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    p->max_events = max_events;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int saved = errno;
        alloc->free(p, alloc->ud);
        errno = saved;
        return NULL;
    }
    return p;
}

void kz_poll_free(struct kz_poll *p, const struct kz_allocator *alloc)
{
    close(p->epfd);
    alloc->free(p, alloc->ud);
}

static uint32_t to_epoll(unsigned events)
{
    return ((events & KZ_IO_READ) ? (uint32_t)EPOLLIN : 0u) |
           ((events & KZ_IO_WRITE) ? (uint32_t)EPOLLOUT : 0u);
}

/* Errors and hang-ups become "both": the handler sees them when it reads or writes. */
static unsigned from_epoll(uint32_t ev)
{
    unsigned out = 0;
    if (ev & EPOLLIN)
        out |= KZ_IO_READ;
    if (ev & EPOLLOUT)
        out |= KZ_IO_WRITE;
    if (ev & (EPOLLERR | EPOLLHUP))
        out |= KZ_IO_READ | KZ_IO_WRITE;
    return out;
}

static int ctl(struct kz_poll *p, int op, int fd, unsigned events, void *ptr)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = ptr};
    return epoll_ctl(p->epfd, op, fd, &ev) == 0 ? KZ_OK : KZ_ERR_SYSTEM;
}

int kz_poll_add(struct kz_poll *p, int fd, unsigned events, void *ptr)
{
    return ctl(p, EPOLL_CTL_ADD, fd, events, ptr);
}

int kz_poll_modify(struct kz_poll *p, int fd, unsigned events, void *ptr)
{
    return ctl(p, EPOLL_CTL_MOD, fd, events, ptr);
}

int kz_poll_remove(struct kz_poll *p, int fd)
{
    return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? KZ_OK : KZ_ERR_SYSTEM;
}

int kz_poll_wait(struct kz_poll *p, struct kz_poll_event *out, int timeout_ms)
{
    int n = epoll_wait(p->epfd, p->events, p->max_events, timeout_ms < 0 ? -1 : timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : KZ_ERR_SYSTEM;
    for (int i = 0; i < n; i++) {
        out[i].ptr = p->events[i].data.ptr;
        out[i].events = from_epoll(p->events[i].events);
    }
    return n;
}
