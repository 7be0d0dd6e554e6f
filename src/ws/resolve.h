/*
 * Host name resolution that does not block the loop: getaddrinfo runs in a
 * short-lived helper thread and its answer comes back through a kz_async.
 * Private to src/ws (the client uses it).
 */
#ifndef KZ_WS_RESOLVE_H
#define KZ_WS_RESOLVE_H

#include <netdb.h>

#include "kaze/loop.h"

struct kz_resolve;

/*
 * Called on the loop's thread with getaddrinfo's result: `rc` 0 and `res`
 * (the caller's now: freeaddrinfo it), or an EAI_* code and NULL.
 */
typedef void (*kz_resolve_cb)(void *ud, int rc, struct addrinfo *res);

/*
 * Starts resolving `host` (TCP, any family) for `port`. Returns the job, or
 * NULL with errno set (no memory, no thread, no eventfd). The job block is
 * allocated with malloc rather than the injected allocator: the thread may
 * outlive whoever started it, and frees the block itself then.
 */
struct kz_resolve *kz__resolve_start(struct kz_loop *loop, const char *host, size_t host_len,
                                     uint16_t port, kz_resolve_cb cb, void *ud);

/* Gives up on the job: its callback will not be called. Not after the callback ran. */
void kz__resolve_cancel(struct kz_resolve *r);

#endif
