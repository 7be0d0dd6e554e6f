/*
 * getaddrinfo in a helper thread. The job block is shared by the thread and
 * the loop: a mutex guards the handover, and whichever side lets go last
 * frees it. The thread wakes the loop only while the loop side still wants
 * the answer; once the loop side cancels (under the mutex), no wake-up can
 * come, so it may stop the async at once.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/resolve.h"

struct kz_resolve {
    pthread_mutex_t mu;
    int refs;       /* 2 while the thread runs and the loop side waits */
    bool cancelled; /* the loop side let go: do not wake it */
    struct kz_loop *loop;
    struct kz_async async;
    kz_resolve_cb cb;
    void *ud;
    int rc;
    struct addrinfo *res;
    char port[8];
    char host[];
};

static void release(struct kz_resolve *r)
{
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    if (r->res)
        freeaddrinfo(r->res);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void *resolve_thread(void *arg)
{
    struct kz_resolve *r = arg;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(r->host, r->port, &hints, &res);
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    r->res = rc == 0 ? res : NULL;
    if (!r->cancelled)
        kz_async_send(&r->async);
    pthread_mutex_unlock(&r->mu);
    release(r);
    return NULL;
}

static void on_answer(struct kz_loop *loop, struct kz_async *a)
{
    struct kz_resolve *r = KZ_CONTAINER_OF(a, struct kz_resolve, async);
    kz_async_stop(loop, a);
    pthread_mutex_lock(&r->mu);
    r->cancelled = true;
    int rc = r->rc;
    struct addrinfo *res = r->res;
    r->res = NULL;
    pthread_mutex_unlock(&r->mu);
    kz_resolve_cb cb = r->cb;
    void *ud = r->ud;
    release(r);
    cb(ud, rc, res);
}

struct kz_resolve *kz__resolve_start(struct kz_loop *loop, const char *host, size_t host_len,
                                     uint16_t port, kz_resolve_cb cb, void *ud)
{
    struct kz_resolve *r = calloc(1, sizeof(*r) + host_len + 1);
    if (!r)
        return NULL;
    memcpy(r->host, host, host_len);
    snprintf(r->port, sizeof(r->port), "%u", (unsigned)port);
    r->loop = loop;
    r->cb = cb;
    r->ud = ud;
    r->refs = 2;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    if (kz_async_start(loop, &r->async, on_answer) != KZ_OK) {
        int saved = errno;
        pthread_mutex_destroy(&r->mu);
        free(r);
        errno = saved;
        return NULL;
    }
    /* The thread takes no signals: they stay with the threads that expect them. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256u * 1024u);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &attr, resolve_thread, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        kz_async_stop(loop, &r->async);
        pthread_mutex_destroy(&r->mu);
        free(r);
        errno = rc;
        return NULL;
    }
    return r;
}

void kz__resolve_cancel(struct kz_resolve *r)
{
    pthread_mutex_lock(&r->mu);
    r->cancelled = true;
    pthread_mutex_unlock(&r->mu);
    kz_async_stop(r->loop, &r->async);
    release(r);
}
