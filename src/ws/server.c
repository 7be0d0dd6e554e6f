/*
 * The server: configuration, the listening socket, accepting, and the pass
 * at the end of every loop iteration that flushes corked output and frees
 * the connections that died during the iteration.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws/ws_internal.h"

/* Connections accepted per readiness event, so one busy listener cannot starve the rest. */
#define KZ_ACCEPT_BATCH 64
/* How long the listener rests after running out of file descriptors. */
#define KZ_ACCEPT_PAUSE_MS 100

static void *default_malloc(size_t n, void *ud)
{
    (void)ud;
    return malloc(n);
}

static void *default_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return realloc(p, n);
}

static void default_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

void *kz__alloc(struct kz_server *s, size_t n)
{
    return s->alloc.malloc(n, s->alloc.ud);
}

void *kz__realloc(struct kz_server *s, void *p, size_t old, size_t n)
{
    if (s->alloc.realloc)
        return s->alloc.realloc(p, n, s->alloc.ud);
    void *q = s->alloc.malloc(n, s->alloc.ud);
    if (q && p) {
        memcpy(q, p, old < n ? old : n);
        s->alloc.free(p, s->alloc.ud);
    }
    return q;
}

void kz__free(struct kz_server *s, void *p)
{
    if (p)
        s->alloc.free(p, s->alloc.ud);
}

void kz_server_config_default(struct kz_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_message_size = 1u << 20;
    cfg->max_frame_size = 0;
    cfg->max_header_size = KZ_HS_MAX_HEADER_SIZE_DEFAULT;
    cfg->max_connections = 100000;
    cfg->max_buffered = 1u << 20;
    cfg->backpressure = KZ_BP_CLOSE;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 0;
    cfg->ping_interval_ms = 30000;
    cfg->pong_timeout_ms = 15000;
    cfg->close_timeout_ms = 5000;
    kz_pmd_policy_default(&cfg->deflate);
    cfg->deflate.enabled = false;
    cfg->deflate_mode = KZ_DEFLATE_DEDICATED;
    cfg->deflate_level = 1;
    cfg->deflate_mem_level = 8;
    cfg->deflate_min_size = 64;
    cfg->tls = NULL;
    cfg->tls_handshake_timeout_ms = 10000;
}

static void end_of_iteration(struct kz_loop *loop, struct kz_defer *d)
{
    struct kz_server *s = KZ_CONTAINER_OF(d, struct kz_server, defer);
    while (s->flush_list) {
        struct kz_conn *c = s->flush_list;
        s->flush_list = c->flush_next;
        c->flags &= (uint8_t)~KZ_CF_FLUSH_QUEUED;
        if (c->state == KZ_CONN_DEAD)
            kz__conn_free(c);
        else
            kz__conn_flush(c);
    }
    while (s->dead_list) {
        struct kz_conn *c = s->dead_list;
        s->dead_list = c->flush_next;
        kz__conn_free(c);
    }
}

void kz__server_kick(struct kz_server *s)
{
    kz_defer(s->loop, &s->defer, end_of_iteration);
}

static void resume_accept(struct kz_loop *loop, struct kz_timer *t)
{
    struct kz_server *s = KZ_CONTAINER_OF(t, struct kz_server, accept_pause);
    if (!s->shutting_down && s->listener.fd >= 0)
        kz_io_set_events(loop, &s->listener, KZ_IO_READ);
}

/* Over max_connections: a short 503 written straight away, then closed. */
static void turn_away(int fd)
{
    char out[256];
    int n = kz_hs_write_refusal(out, sizeof(out), 503, "too many connections");
    if (n > 0 && send(fd, out, (size_t)n, MSG_NOSIGNAL) < 0) {
        /* best effort: the peer is refused either way */
    }
    close(fd);
}

static void on_accept(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct kz_server *s = KZ_CONTAINER_OF(io, struct kz_server, listener);
    for (int i = 0; i < KZ_ACCEPT_BATCH; i++) {
        int fd = kz_tcp_accept(io->fd, NULL, NULL);
        if (fd == KZ_ERR_PARTIAL)
            return;
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                kz_io_set_events(loop, io, 0);
                kz_timer_start(loop, &s->accept_pause, KZ_ACCEPT_PAUSE_MS, resume_accept);
            }
            return;
        }
        if (s->conn_count >= s->cfg.max_connections && !s->cfg.tls)
            turn_away(fd);
        else if (s->conn_count >= s->cfg.max_connections)
            close(fd); /* a 503 would have to wait for a TLS handshake: not worth it when full */
        else
            kz__conn_start(s, fd);
    }
}

struct kz_server *kz_server_new(struct kz_loop *loop, const struct kz_server_config *cfg,
                                const struct kz_server_callbacks *cb, void *user,
                                const struct kz_allocator *alloc)
{
    return kz__server_new(loop, cfg, cb, user, alloc, KZ_READ_BUF_SIZE, KZ_CORK_SIZE);
}

struct kz_server *kz__server_new(struct kz_loop *loop, const struct kz_server_config *cfg,
                                 const struct kz_server_callbacks *cb, void *user,
                                 const struct kz_allocator *alloc, size_t rbuf_size,
                                 size_t cork_size)
{
    if (!loop || !cb || !cb->on_message)
        return NULL;
    struct kz_allocator a = {default_malloc, default_realloc, default_free, NULL};
    if (alloc)
        a = *alloc;
    struct kz_server *s = a.malloc(sizeof(*s), a.ud);
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->alloc = a;
    s->loop = loop;
    s->cb = *cb;
    s->user = user;
    s->listener.fd = -1;
    if (cfg)
        s->cfg = *cfg;
    else
        kz_server_config_default(&s->cfg);
    s->rbuf_size = rbuf_size;
    s->cork_size = cork_size;
    if (s->cfg.max_header_size == 0 || s->cfg.max_header_size > rbuf_size / 2)
        s->cfg.max_header_size = rbuf_size / 2;
    if (s->cfg.max_frame_size == 0 || s->cfg.max_frame_size > s->cfg.max_message_size)
        s->cfg.max_frame_size = s->cfg.max_message_size;
    s->rbuf = kz__alloc(s, rbuf_size);
    s->cork = kz__alloc(s, cork_size);
    s->sha1 = kz_sha1_new(); /* NULL is fine: accept keys then use EVP_sha1() */
    if (!s->rbuf || !s->cork) {
        kz_sha1_free(s->sha1);
        kz__free(s, s->rbuf);
        kz__free(s, s->cork);
        a.free(s, a.ud);
        return NULL;
    }
    return s;
}

int kz_server_listen(struct kz_server *s, const char *host, uint16_t port, bool reuseport,
                     uint16_t *bound_port)
{
    if (s->listener.fd >= 0)
        return KZ_ERR_INVALID_ARGUMENT;
    int fd = kz_tcp_listen(host, port, 0, reuseport, bound_port);
    if (fd < 0)
        return fd;
    /* A WebSocket client speaks first: accept once its request is here. */
    uint32_t first_ms = s->cfg.tls ? s->cfg.tls_handshake_timeout_ms : s->cfg.handshake_timeout_ms;
    int secs = first_ms ? (int)(first_ms / 1000) + 1 : 10;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs));
    int rc = kz_io_start(s->loop, &s->listener, fd, KZ_IO_READ, on_accept);
    if (rc != KZ_OK) {
        int saved = errno;
        close(fd);
        errno = saved;
        s->listener.fd = -1;
        return rc;
    }
    return KZ_OK;
}

static void stop_listening(struct kz_server *s)
{
    kz_timer_stop(s->loop, &s->accept_pause);
    if (s->listener.fd >= 0) {
        int fd = s->listener.fd;
        kz_io_stop(s->loop, &s->listener);
        close(fd);
        s->listener.fd = -1;
    }
}

void kz_server_shutdown(struct kz_server *s)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    stop_listening(s);
    for (struct kz_conn *c = s->conns; c; c = c->next)
        kz__conn_going_away(c);
}

void kz_server_free(struct kz_server *s)
{
    if (!s)
        return;
    stop_listening(s);
    for (struct kz_conn *c = s->conns; c; c = c->next)
        kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "server freed");
    while (s->conns)
        kz__conn_free(s->conns);
    s->flush_list = s->dead_list = NULL;
    kz_defer_cancel(s->loop, &s->defer);
    kz__server_pool_free(s);
    for (unsigned i = 0; i < s->msg_cache_len; i++)
        kz__free(s, s->msg_cache[i]);
    kz__free(s, s->rbuf);
    kz__free(s, s->cork);
    kz_sha1_free(s->sha1);
    kz_deflater_free(s->shared_tx);
    s->alloc.free(s, s->alloc.ud);
}

void *kz_server_user(const struct kz_server *s)
{
    return s->user;
}

size_t kz_server_open_count(const struct kz_server *s)
{
    return s->open_count;
}

size_t kz_server_conn_count(const struct kz_server *s)
{
    return s->conn_count;
}
