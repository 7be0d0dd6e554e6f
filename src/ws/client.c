/*
 * The client: one logical connection to one URL across reconnections.
 *
 * An attempt goes RESOLVING (a host name, in resolve.c's thread; an IP
 * literal is taken at once) → CONNECTING (each address in turn) → PROXY
 * (CONNECT through an HTTP proxy, if one is set) → HANDSHAKE (the upgrade
 * request out, the answer judged) → OPEN, where the socket is handed to a
 * kz_conn on the client's context (a kz_server without a listener), which
 * does everything else exactly as for a server connection, in the client
 * role. When the connection is lost, or an attempt fails, the client either
 * WAITs for the backoff delay and tries again, or ENDs.
 *
 * One timer serves every state: the connect deadline (resolving, connecting
 * and the proxy together), the handshake deadline, or the backoff delay.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "kaze/client.h"
#include "kaze/tcp.h"
#include "ws/resolve.h"
#include "ws/ws_internal.h"

#define KZ_HS_RESP_MAX_LINES 64

enum cl_state {
    CL_IDLE = 0,   /* not started, or ended */
    CL_RESOLVING,  /* waiting for the resolver thread */
    CL_CONNECTING, /* TCP connect in progress */
    CL_PROXY,      /* CONNECT sent or being sent; reading the proxy's answer */
    CL_TLS,        /* the TLS handshake (wss://) */
    CL_HANDSHAKE,  /* upgrade request sent or being sent; reading the answer */
    CL_OPEN,       /* a kz_conn has the socket */
    CL_WAITING,    /* backoff delay before the next attempt */
    CL_ENDING,     /* stopped; on_end comes once the last connection is gone */
};

/* A message kz_client_send accepted while not open. */
struct offline_msg {
    struct offline_msg *next;
    size_t len;
    uint8_t op;
    uint8_t data[];
};

struct kz_client {
    struct kz_server *ctx; /* allocator, limits, callbacks, buffers; no listener */
    struct kz_loop *loop;
    struct kz_client_callbacks cb;
    struct kz_client_config cfg; /* strings and arrays point into `copies` */
    void *user;
    char *copies; /* one block: URL, proxy, origin, subprotocols, headers */
    struct kz_url url;
    struct kz_proxy proxy;
    bool use_proxy;
    struct kz_str *protocols; /* cfg.subprotocols as kz_str */
    char offer[KZ_PMD_ELEMENT_MAX];
    SSL_CTX *tls_ctx; /* wss:// only */
    bool host_is_ip;

    enum cl_state state;
    bool stopping; /* the application closed: no reconnection */
    struct kz_timer timer;
    struct kz_defer end_defer;
    uint32_t attempt; /* attempts since the last open */
    struct kz_backoff backoff;
    uint32_t (*random)(void *ud);
    void *random_ud;

    /* The attempt in progress. */
    struct kz_resolve *resolving;
    SSL *ssl; /* wss://: this attempt's TLS session */
    struct addrinfo *addrs, *next_addr;
    struct kz_io io;
    char *hs; /* the request or CONNECT going out, then the answer coming in */
    size_t hs_cap;
    size_t hs_out, hs_sent; /* going out: bytes to send, bytes sent */
    size_t hs_len;          /* coming in: bytes of the answer so far */
    char key[KZ_HS_KEY_LEN + 1];
    char where[96]; /* the address being tried, for error details */

    struct kz_conn *conn;
    int subprotocol; /* index in cfg.subprotocols, -1 for none */
    uint16_t close_code;

    struct offline_msg *offline_head, *offline_tail;
    size_t offline_bytes;
};

static void start_attempt(struct kz_client *cl);
static void on_timer(struct kz_loop *loop, struct kz_timer *t);

/* ------------------------------------------------------------------------
 * Configuration
 */

static const uint16_t default_no_reconnect[] = {1002, 1003, 1007, 1008, 1009, 1010};

void kz_client_config_default(struct kz_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_message_size = 1u << 20;
    cfg->max_header_size = KZ_HS_MAX_HEADER_SIZE_DEFAULT;
    cfg->max_buffered = 1u << 20;
    cfg->backpressure = KZ_BP_CLOSE;
    cfg->connect_timeout_ms = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->ping_interval_ms = 30000;
    cfg->pong_timeout_ms = 15000;
    cfg->close_timeout_ms = 5000;
    kz_pmd_offer_default(&cfg->deflate_offer);
    cfg->deflate_level = 1;
    cfg->deflate_mem_level = 8;
    cfg->deflate_min_size = 64;
    cfg->tls_handshake_timeout_ms = 10000;
    kz_backoff_config_default(&cfg->backoff);
    cfg->no_reconnect_codes = default_no_reconnect;
    cfg->num_no_reconnect_codes = sizeof(default_no_reconnect) / sizeof(default_no_reconnect[0]);
}

int kz_client_config_proxy_from_env(struct kz_client_config *cfg, const char *url_text,
                                    const char *http_proxy, const char *https_proxy,
                                    const char *no_proxy)
{
    struct kz_url url;
    if (!url_text || kz_url_parse(url_text, strlen(url_text), &url) != KZ_OK)
        return KZ_ERR_INVALID_ARGUMENT;
    cfg->proxy = kz_proxy_select(&url, http_proxy, https_proxy, no_proxy);
    return KZ_OK;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

/* Copies `s` (n bytes) to *at, NUL-terminates it, and moves *at on. */
static char *put(char **at, const char *s, size_t n)
{
    char *p = *at;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    *at += n + 1;
    return p;
}

/*
 * Copies everything cfg points to into one block, so the caller's strings
 * and arrays need not outlive kz_client_new.
 */
static int copy_config(struct kz_client *cl, const char *url, const struct kz_client_config *cfg)
{
    size_t n = slen(url) + 1 + slen(cfg->proxy) + 1 + slen(cfg->origin) + 1;
    n += slen(cfg->tls_ca_file) + 1;
    n +=
        cfg->num_subprotocols * sizeof(struct kz_str) + cfg->num_headers * sizeof(struct kz_header);
    n += cfg->num_no_reconnect_codes * sizeof(uint16_t) + 2 * sizeof(void *);
    for (size_t i = 0; i < cfg->num_subprotocols; i++)
        n += slen(cfg->subprotocols[i]) + 1 + sizeof(char *);
    for (size_t i = 0; i < cfg->num_headers; i++)
        n += cfg->headers[i].name.len + cfg->headers[i].value.len + 2;
    char *block = kz__alloc(cl->ctx, n);
    if (!block)
        return KZ_ERR_NOMEM;
    cl->copies = block;
    /* Arrays first (aligned at the block's start), then the strings. */
    char *at = block;
    struct kz_str *protocols = (struct kz_str *)(void *)at;
    at += cfg->num_subprotocols * sizeof(struct kz_str);
    const char **names = (const char **)(void *)at;
    at += cfg->num_subprotocols * sizeof(char *);
    struct kz_header *headers = (struct kz_header *)(void *)at;
    at += cfg->num_headers * sizeof(struct kz_header);
    uint16_t *codes = (uint16_t *)(void *)at;
    at += cfg->num_no_reconnect_codes * sizeof(uint16_t);
    if (cfg->num_no_reconnect_codes)
        memcpy(codes, cfg->no_reconnect_codes, cfg->num_no_reconnect_codes * sizeof(uint16_t));

    cl->cfg = *cfg;
    char *u = put(&at, url, slen(url));
    cl->cfg.proxy = cfg->proxy ? put(&at, cfg->proxy, slen(cfg->proxy)) : NULL;
    cl->cfg.origin = cfg->origin ? put(&at, cfg->origin, slen(cfg->origin)) : NULL;
    cl->cfg.tls_ca_file =
        cfg->tls_ca_file ? put(&at, cfg->tls_ca_file, slen(cfg->tls_ca_file)) : NULL;
    for (size_t i = 0; i < cfg->num_subprotocols; i++) {
        names[i] = put(&at, cfg->subprotocols[i], slen(cfg->subprotocols[i]));
        protocols[i] = (struct kz_str){names[i], strlen(names[i])};
    }
    for (size_t i = 0; i < cfg->num_headers; i++) {
        const struct kz_header *h = &cfg->headers[i];
        headers[i].name = (struct kz_str){put(&at, h->name.ptr, h->name.len), h->name.len};
        headers[i].value = (struct kz_str){put(&at, h->value.ptr, h->value.len), h->value.len};
    }
    cl->cfg.subprotocols = names;
    cl->cfg.headers = headers;
    cl->cfg.no_reconnect_codes = codes;
    cl->protocols = protocols;
    return kz_url_parse(u, strlen(u), &cl->url) == KZ_OK ? KZ_OK : KZ_ERR_INVALID_ARGUMENT;
}

/* The client's side of the server callbacks its connections run with. */
static void tr_open(struct kz_conn *c);
static void tr_close(struct kz_conn *c, uint16_t code, struct kz_str reason);
static void conn_freed(struct kz_server *s);

static uint32_t csprng32(void *ud)
{
    (void)ud;
    uint32_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1 && getrandom(&v, sizeof(v), 0) < 0)
        v = 0x9e3779b9u; /* no randomness at all: the delay is still bounded */
    return v;
}

struct kz_client *kz_client_new(struct kz_loop *loop, const char *url,
                                const struct kz_client_config *cfg,
                                const struct kz_client_callbacks *cb, void *user,
                                const struct kz_allocator *alloc, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    *err = KZ_ERR_INVALID_ARGUMENT;
    struct kz_client_config defaults;
    if (!cfg) {
        kz_client_config_default(&defaults);
        cfg = &defaults;
    }
    if (!loop || !url || !cb || !cb->on_message || cfg->max_message_size == 0)
        return NULL;
    struct kz_server_config sc;
    kz_server_config_default(&sc);
    sc.max_message_size = cfg->max_message_size;
    sc.max_frame_size = cfg->max_frame_size;
    sc.max_header_size = cfg->max_header_size;
    sc.max_connections = SIZE_MAX;
    sc.max_buffered = cfg->max_buffered;
    sc.backpressure = cfg->backpressure;
    sc.handshake_timeout_ms = cfg->handshake_timeout_ms;
    sc.idle_timeout_ms = cfg->idle_timeout_ms;
    sc.ping_interval_ms = cfg->ping_interval_ms;
    sc.pong_timeout_ms = cfg->pong_timeout_ms;
    sc.close_timeout_ms = cfg->close_timeout_ms;
    sc.deflate_level = cfg->deflate_level ? cfg->deflate_level : 1;
    sc.deflate_mem_level = cfg->deflate_mem_level ? cfg->deflate_mem_level : 8;
    sc.deflate_min_size = cfg->deflate_min_size;
    struct kz_server_callbacks scb = {
        .on_open = tr_open,
        .on_message = cb->on_message,
        .on_pong = cb->on_pong,
        .on_drain = cb->on_drain,
        .on_close = tr_close,
    };
    struct kz_server *ctx =
        kz__server_new(loop, &sc, &scb, NULL, alloc, KZ_CLIENT_READ_BUF_SIZE, KZ_CLIENT_CORK_SIZE);
    if (!ctx) {
        *err = KZ_ERR_NOMEM;
        return NULL;
    }
    ctx->client = true;
    ctx->mask_pos = KZ_MASK_POOL_SIZE; /* drawn at the first frame */
    ctx->conn_freed = conn_freed;
    struct kz_client *cl = kz__alloc(ctx, sizeof(*cl));
    if (!cl) {
        kz_server_free(ctx);
        *err = KZ_ERR_NOMEM;
        return NULL;
    }
    memset(cl, 0, sizeof(*cl));
    ctx->user = cl;
    cl->ctx = ctx;
    cl->loop = loop;
    cl->cb = *cb;
    cl->user = user;
    cl->io.fd = -1;
    cl->subprotocol = -1;
    cl->random = csprng32;
    int rc = copy_config(cl, url, cfg);
    /* The context settled the limits (0 or too large a head limit): the client uses the same. */
    cl->cfg.max_header_size = ctx->cfg.max_header_size;
    cl->cfg.max_message_size = ctx->cfg.max_message_size;
    if (rc == KZ_OK && cl->url.tls) {
        char why[256];
        cl->tls_ctx =
            kz__tls_client_ctx(cl->cfg.tls_ca_file, cl->cfg.tls_insecure, why, sizeof(why));
        if (!cl->tls_ctx)
            rc = KZ_ERR_TLS;
        struct in_addr a4;
        char h[64];
        cl->host_is_ip = cl->url.host_is_ipv6;
        if (!cl->host_is_ip && cl->url.host.len < sizeof(h)) {
            memcpy(h, cl->url.host.ptr, cl->url.host.len);
            h[cl->url.host.len] = '\0';
            cl->host_is_ip = inet_pton(AF_INET, h, &a4) == 1;
        }
    }
    if (rc == KZ_OK && cl->cfg.proxy && cl->cfg.proxy[0]) {
        rc = kz_proxy_parse(cl->cfg.proxy, strlen(cl->cfg.proxy), &cl->proxy);
        cl->use_proxy = rc == KZ_OK;
    }
    if (rc == KZ_OK && cl->cfg.deflate &&
        kz_pmd_write_offer(cl->offer, sizeof(cl->offer), &cl->cfg.deflate_offer) < 0)
        rc = KZ_ERR_INVALID_ARGUMENT;
    if (rc != KZ_OK) {
        if (cl->tls_ctx)
            SSL_CTX_free(cl->tls_ctx);
        kz__free(ctx, cl->copies);
        kz__free(ctx, cl);
        kz_server_free(ctx);
        *err = rc;
        return NULL;
    }
    *err = KZ_OK;
    return cl;
}

/* ------------------------------------------------------------------------
 * Ending, failing, reconnecting
 */

/* Gives back what the attempt in progress holds; the client's state is the caller's. */
static void drop_attempt(struct kz_client *cl)
{
    if (cl->resolving) {
        kz__resolve_cancel(cl->resolving);
        cl->resolving = NULL;
    }
    if (cl->addrs) {
        freeaddrinfo(cl->addrs);
        cl->addrs = cl->next_addr = NULL;
    }
    kz__tls_free(cl->ssl);
    cl->ssl = NULL;
    if (cl->io.fd >= 0) {
        kz_io_close(cl->loop, &cl->io);
        cl->io.fd = -1;
    }
    kz__free(cl->ctx, cl->hs);
    cl->hs = NULL;
    cl->hs_cap = cl->hs_len = cl->hs_out = cl->hs_sent = 0;
}

static void drop_offline(struct kz_client *cl)
{
    while (cl->offline_head) {
        struct offline_msg *m = cl->offline_head;
        cl->offline_head = m->next;
        kz__free(cl->ctx, m);
    }
    cl->offline_tail = NULL;
    cl->offline_bytes = 0;
}

static void run_end(struct kz_loop *loop, struct kz_defer *d)
{
    (void)loop;
    struct kz_client *cl = KZ_CONTAINER_OF(d, struct kz_client, end_defer);
    if (cl->state != CL_ENDING || cl->ctx->conn_count)
        return;
    cl->state = CL_IDLE;
    if (cl->cb.on_end)
        cl->cb.on_end(cl); /* may free cl: nothing after this */
}

/* No more attempts. on_end comes once no connection of ours is left, at the end of the iteration.
 */
static void end(struct kz_client *cl)
{
    kz_timer_stop(cl->loop, &cl->timer);
    drop_attempt(cl);
    drop_offline(cl);
    cl->state = CL_ENDING;
    if (cl->ctx->conn_count == 0)
        kz_defer(cl->loop, &cl->end_defer, run_end);
}

/* A connection of the context was freed: the last one may be what on_end waited for. */
static void conn_freed(struct kz_server *s)
{
    struct kz_client *cl = s->user;
    if (cl && cl->state == CL_ENDING && s->conn_count == 0)
        kz_defer(cl->loop, &cl->end_defer, run_end);
}

static void schedule_retry(struct kz_client *cl)
{
    if (cl->stopping || !cl->cfg.reconnect ||
        (cl->cfg.max_attempts && cl->attempt >= cl->cfg.max_attempts)) {
        end(cl);
        return;
    }
    uint32_t delay = kz_backoff_next(&cl->backoff, &cl->cfg.backoff, cl->random(cl->random_ud));
    cl->state = CL_WAITING;
    kz_timer_start(cl->loop, &cl->timer, delay, on_timer);
    if (cl->cb.on_reconnect)
        cl->cb.on_reconnect(cl, cl->attempt + 1, delay);
}

/* Whether trying again might help after this failure. */
static bool retryable(int err, int status)
{
    switch (err) {
    case KZ_ERR_RESOLVE:
    case KZ_ERR_CONNECT:
    case KZ_ERR_TIMEOUT:
    case KZ_ERR_SYSTEM:
    case KZ_ERR_NOMEM:
    case KZ_ERR_CLOSED:
        return true;
    case KZ_ERR_PROXY:
    case KZ_ERR_HS_RESP_STATUS:
        return status >= 500; /* 502/503 while a server restarts; a 4xx will say the same again */
    default:
        return false; /* an invalid answer is a server or configuration error */
    }
}

static void fail_attempt(struct kz_client *cl, int err, int sys_errno, int status,
                         const char *detail)
{
    drop_attempt(cl);
    kz_timer_stop(cl->loop, &cl->timer);
    struct kz_client_error e = {err, sys_errno, status, detail ? detail : kz_strerror(err)};
    cl->state = CL_IDLE;
    if (cl->cb.on_connect_error)
        cl->cb.on_connect_error(cl, &e);
    if (cl->state != CL_IDLE)
        return; /* the callback closed or restarted the client */
    if (retryable(err, status))
        schedule_retry(cl);
    else
        end(cl);
}

static void on_timer(struct kz_loop *loop, struct kz_timer *t)
{
    (void)loop;
    struct kz_client *cl = KZ_CONTAINER_OF(t, struct kz_client, timer);
    char detail[160];
    switch (cl->state) {
    case CL_WAITING:
        start_attempt(cl);
        break;
    case CL_RESOLVING:
    case CL_CONNECTING:
    case CL_PROXY:
        snprintf(detail, sizeof(detail), "connecting to %s: timed out", cl->where);
        fail_attempt(cl, KZ_ERR_TIMEOUT, 0, 0, detail);
        break;
    case CL_TLS:
        snprintf(detail, sizeof(detail), "TLS with %s: no handshake in time", cl->where);
        fail_attempt(cl, KZ_ERR_TIMEOUT, 0, 0, detail);
        break;
    case CL_HANDSHAKE:
        snprintf(detail, sizeof(detail), "handshake with %s: no answer in time", cl->where);
        fail_attempt(cl, KZ_ERR_TIMEOUT, 0, 0, detail);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------
 * The open connection
 */

static bool code_listed(const struct kz_client *cl, uint16_t code)
{
    for (size_t i = 0; i < cl->cfg.num_no_reconnect_codes; i++)
        if (cl->cfg.no_reconnect_codes[i] == code)
            return true;
    return false;
}

static void tr_open(struct kz_conn *c)
{
    struct kz_client *cl = c->srv->user;
    cl->conn = c;
    cl->state = CL_OPEN;
    cl->attempt = 0;
    kz_backoff_reset(&cl->backoff);
    /* What the application sent while we were away goes first, in order. */
    while (cl->offline_head && c->state == KZ_CONN_OPEN) {
        struct offline_msg *m = cl->offline_head;
        if (kz_conn_send(c, (enum kz_opcode)m->op, m->data, m->len) != KZ_OK)
            break; /* kept for the next connection */
        cl->offline_head = m->next;
        cl->offline_bytes -= m->len;
        kz__free(cl->ctx, m);
    }
    if (!cl->offline_head)
        cl->offline_tail = NULL;
    if (cl->cb.on_open && c->state == KZ_CONN_OPEN)
        cl->cb.on_open(c);
}

static void tr_close(struct kz_conn *c, uint16_t code, struct kz_str reason)
{
    struct kz_client *cl = c->srv->user;
    if (cl->conn == c)
        cl->conn = NULL;
    cl->close_code = code;
    if (cl->cb.on_close)
        cl->cb.on_close(c, code, reason);
    if (cl->state != CL_OPEN)
        return; /* the callback closed, restarted or stopped the client */
    cl->state = CL_IDLE;
    if (code_listed(cl, code))
        end(cl);
    else
        schedule_retry(cl);
}

/* ------------------------------------------------------------------------
 * The attempt: resolve, connect, proxy, handshake
 */

static void wait_for(struct kz_client *cl, unsigned events);
static void after_tunnel(struct kz_client *cl);
static void on_io(struct kz_loop *loop, struct kz_io *io, unsigned events);

/* Sends what is left of cl->hs; true when all of it has gone. */
static bool send_pending(struct kz_client *cl)
{
    while (cl->hs_sent < cl->hs_out) {
        ssize_t n;
        if (cl->ssl) {
            unsigned want = KZ_IO_WRITE;
            n = kz__tls_write(cl->ssl, cl->hs + cl->hs_sent, cl->hs_out - cl->hs_sent, &want);
            if (n == -1) {
                wait_for(cl, want);
                return false;
            }
            if (n == -2) {
                errno = EPIPE;
                n = -1;
            }
        } else {
            n = send(cl->io.fd, cl->hs + cl->hs_sent, cl->hs_out - cl->hs_sent, MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_for(cl, KZ_IO_WRITE);
                return false;
            }
            char detail[160];
            int e = errno;
            snprintf(detail, sizeof(detail), "sending to %s: %s", cl->where, strerror(e));
            fail_attempt(cl, KZ_ERR_CONNECT, e, 0, detail);
            return false;
        }
        cl->hs_sent += (size_t)n;
    }
    cl->hs_out = cl->hs_sent = cl->hs_len = 0;
    wait_for(cl, KZ_IO_READ);
    return true;
}

/*
 * Reads more of an answer into cl->hs. Returns the bytes now held, or -1
 * when the attempt failed (the caller returns) or nothing came yet.
 */
static ssize_t receive(struct kz_client *cl, const char *what)
{
    if (cl->hs_len == cl->hs_cap) {
        fail_attempt(cl, cl->state == CL_PROXY ? KZ_ERR_PROXY : KZ_ERR_HS_RESP_TOO_LARGE, 0, 0,
                     NULL);
        return -1;
    }
    ssize_t n;
    if (cl->ssl) {
        unsigned want = KZ_IO_READ;
        n = kz__tls_read(cl->ssl, cl->hs + cl->hs_len, cl->hs_cap - cl->hs_len, &want);
        if (n == -1) {
            wait_for(cl, want);
            return -1;
        }
        if (n == -2) {
            errno = ECONNRESET;
            n = -1;
        }
    } else {
        do
            n = recv(cl->io.fd, cl->hs + cl->hs_len, cl->hs_cap - cl->hs_len, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
    }
    if (n <= 0) {
        char detail[160];
        int e = n < 0 ? errno : 0;
        snprintf(detail, sizeof(detail), "%s %s: connection closed during the %s", what, cl->where,
                 n < 0 ? strerror(e) : "answer");
        fail_attempt(cl, KZ_ERR_CLOSED, e, 0, detail);
        return -1;
    }
    cl->hs_len += (size_t)n;
    return (ssize_t)cl->hs_len;
}

static void send_upgrade(struct kz_client *cl)
{
    char host[300], target[8192];
    int hn = kz_url_host_header(&cl->url, host, sizeof(host));
    int tn = kz_url_target(&cl->url, target, sizeof(target));
    if (hn < 0 || tn < 0 || kz_hs_client_key(cl->key) != KZ_OK) {
        fail_attempt(cl, hn < 0 || tn < 0 ? KZ_ERR_INVALID_ARGUMENT : KZ_ERR_CRYPTO, 0, 0, NULL);
        return;
    }
    struct kz_hs_client_request req = {
        .host = {host, (size_t)hn},
        .target = {target, (size_t)tn},
        .origin = {cl->cfg.origin, slen(cl->cfg.origin)},
        .protocols = cl->protocols,
        .num_protocols = cl->cfg.num_subprotocols,
        .extensions = {cl->offer, cl->cfg.deflate ? strlen(cl->offer) : 0},
        .extra_headers = cl->cfg.headers,
        .num_extra_headers = cl->cfg.num_headers,
    };
    int n = kz_hs_write_request(cl->hs, cl->hs_cap, &req, cl->key);
    if (n < 0) {
        fail_attempt(cl, n, 0, 0,
                     n == KZ_ERR_BUFFER_TOO_SMALL ? "upgrade request larger than max_header_size"
                                                  : "invalid header, subprotocol or URL");
        return;
    }
    cl->state = CL_HANDSHAKE;
    if (cl->cfg.handshake_timeout_ms)
        kz_timer_start(cl->loop, &cl->timer, cl->cfg.handshake_timeout_ms, on_timer);
    else
        kz_timer_stop(cl->loop, &cl->timer);
    cl->hs_out = (size_t)n;
    cl->hs_sent = 0;
    send_pending(cl);
}

static void read_upgrade_answer(struct kz_client *cl)
{
    size_t prev = cl->hs_len;
    ssize_t have = receive(cl, "handshake with");
    if (have < 0)
        return;
    struct kz_header lines[KZ_HS_RESP_MAX_LINES];
    struct kz_hs_response resp = {.headers = lines, .max_headers = KZ_HS_RESP_MAX_LINES};
    int head = kz_hs_parse_response(cl->hs, (size_t)have, prev, cl->cfg.max_header_size, &resp);
    if (head == KZ_ERR_PARTIAL)
        return;
    char detail[200];
    if (head < 0) {
        snprintf(detail, sizeof(detail), "handshake with %s: %s", cl->where, kz_strerror(head));
        fail_attempt(cl, head, 0, 0, detail);
        return;
    }
    struct kz_hs_client_request offered = {
        .protocols = cl->protocols,
        .num_protocols = cl->cfg.num_subprotocols,
        .extensions = {cl->offer, cl->cfg.deflate ? strlen(cl->offer) : 0},
    };
    struct kz_str proto = {NULL, 0};
    int rc = kz_hs_check_response(&resp, cl->key, &offered, &proto);
    struct kz_pmd_params pmd;
    int agreed = 0;
    if (rc == KZ_OK && cl->cfg.deflate) {
        agreed =
            kz_pmd_check_response(resp.headers, resp.num_headers, &cl->cfg.deflate_offer, &pmd);
        if (agreed < 0)
            rc = agreed;
    }
    if (rc != KZ_OK) {
        if (rc == KZ_ERR_HS_RESP_STATUS)
            snprintf(detail, sizeof(detail), "handshake with %s: status %d %.*s", cl->where,
                     resp.status, (int)(resp.reason.len < 80 ? resp.reason.len : 80),
                     resp.reason.ptr ? resp.reason.ptr : "");
        else
            snprintf(detail, sizeof(detail), "handshake with %s: %s", cl->where, kz_strerror(rc));
        fail_attempt(cl, rc, 0, resp.status, detail);
        return;
    }
    cl->subprotocol = -1;
    for (size_t i = 0; proto.len && i < cl->cfg.num_subprotocols; i++)
        if (cl->protocols[i].len == proto.len &&
            !memcmp(cl->protocols[i].ptr, proto.ptr, proto.len))
            cl->subprotocol = (int)i;
    /* The socket goes to a kz_conn; what came behind the 101 goes with it. */
    int fd = cl->io.fd;
    kz_io_stop(cl->loop, &cl->io);
    cl->io.fd = -1;
    SSL *ssl = cl->ssl;
    cl->ssl = NULL;
    kz_timer_stop(cl->loop, &cl->timer);
    char *hs = cl->hs;
    cl->hs = NULL;
    size_t early = (size_t)have - (size_t)head;
    cl->state = CL_OPEN; /* tr_open confirms it; a failure below undoes it */
    struct kz_conn *c = kz__conn_adopt(cl->ctx, fd, ssl, agreed == 1 ? &pmd : NULL, cl->user,
                                       (const uint8_t *)hs + head, early);
    kz__free(cl->ctx, hs);
    if (!c && cl->state == CL_OPEN && !cl->conn) {
        cl->state = CL_HANDSHAKE;
        fail_attempt(cl, KZ_ERR_NOMEM, 0, 0, NULL);
    }
}

/* Advances the TLS handshake; the upgrade request follows it. */
static void tls_step(struct kz_client *cl)
{
    unsigned want = KZ_IO_READ;
    bool plain = false;
    char err[256], detail[400];
    int rc = kz__tls_handshake(cl->ssl, &want, &plain, err, sizeof(err));
    if (rc == 0) {
        wait_for(cl, want);
        return;
    }
    if (rc < 0) {
        snprintf(detail, sizeof(detail), "TLS with %s: %s", cl->where, err);
        /* A hang-up may be a server restarting (worth retrying); a refused certificate is not. */
        fail_attempt(cl, rc == KZ_ERR_CLOSED ? KZ_ERR_CLOSED : KZ_ERR_TLS, 0, 0, detail);
        return;
    }
    send_upgrade(cl);
}

/* The TCP connection (or the proxy's tunnel) is up: TLS for wss://, then the upgrade. */
static void after_tunnel(struct kz_client *cl)
{
    if (!cl->tls_ctx) {
        send_upgrade(cl);
        return;
    }
    cl->ssl = kz__tls_client_ssl(cl->tls_ctx, cl->io.fd, cl->url.host.ptr, cl->url.host.len,
                                 cl->host_is_ip);
    if (!cl->ssl) {
        fail_attempt(cl, KZ_ERR_NOMEM, 0, 0, "could not set up TLS");
        return;
    }
    cl->state = CL_TLS;
    if (cl->cfg.tls_handshake_timeout_ms)
        kz_timer_start(cl->loop, &cl->timer, cl->cfg.tls_handshake_timeout_ms, on_timer);
    tls_step(cl);
}

static void send_connect(struct kz_client *cl)
{
    int n = kz_proxy_write_connect(cl->hs, cl->hs_cap, &cl->proxy, cl->url.host, cl->url.port);
    if (n < 0) {
        fail_attempt(cl, n, 0, 0, "invalid proxy credentials or target");
        return;
    }
    cl->state = CL_PROXY;
    cl->hs_out = (size_t)n;
    cl->hs_sent = 0;
    send_pending(cl);
}

static void read_proxy_answer(struct kz_client *cl)
{
    size_t prev = cl->hs_len;
    ssize_t have = receive(cl, "proxy");
    if (have < 0)
        return;
    int status = 0;
    int head = kz_proxy_parse_reply(cl->hs, (size_t)have, prev, cl->cfg.max_header_size, &status);
    if (head == KZ_ERR_PARTIAL)
        return;
    if (head < 0) {
        char detail[200];
        if (head == KZ_ERR_PROXY)
            snprintf(detail, sizeof(detail), "proxy %s refused CONNECT: %d%s", cl->where, status,
                     status == 407 ? " (proxy authentication required)" : "");
        else
            snprintf(detail, sizeof(detail), "proxy %s: %s", cl->where, kz_strerror(head));
        fail_attempt(cl, KZ_ERR_PROXY, 0, status, detail);
        return;
    }
    if ((size_t)have > (size_t)head) {
        /* A server does not speak before the upgrade request: nothing may follow the 200. */
        fail_attempt(cl, KZ_ERR_PROXY, 0, status, "proxy sent data before the tunnel was used");
        return;
    }
    after_tunnel(cl);
}

static void describe(struct kz_client *cl, const struct sockaddr *sa)
{
    char ip[64] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(cl->where, sizeof(cl->where), "%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(cl->where, sizeof(cl->where), "[%s]:%u", ip, port);
    }
}

/* Starts a connect to the next address; fails the attempt when none is left. */
static void connect_next(struct kz_client *cl, int last_errno)
{
    while (cl->next_addr) {
        struct addrinfo *ai = cl->next_addr;
        cl->next_addr = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        describe(cl, ai->ai_addr);
        int fd = kz_tcp_connect(ai->ai_addr, ai->ai_addrlen);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (kz_io_start(cl->loop, &cl->io, fd, KZ_IO_WRITE, on_io) != KZ_OK) {
            last_errno = errno;
            close(fd);
            cl->io.fd = -1;
            continue;
        }
        cl->state = CL_CONNECTING;
        return;
    }
    char detail[200];
    snprintf(detail, sizeof(detail), "connect %s: %s", cl->where,
             last_errno ? strerror(last_errno) : "no address");
    fail_attempt(cl, KZ_ERR_CONNECT, last_errno, 0, detail);
}

static void on_connected(struct kz_client *cl)
{
    if (kz_tcp_connect_result(cl->io.fd) != KZ_OK) {
        int e = errno;
        kz_io_close(cl->loop, &cl->io);
        cl->io.fd = -1;
        connect_next(cl, e);
        return;
    }
    freeaddrinfo(cl->addrs); /* connected: the other addresses are not needed */
    cl->addrs = cl->next_addr = NULL;
    if (cl->use_proxy)
        send_connect(cl);
    else
        after_tunnel(cl);
}

static void on_io(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    (void)loop;
    struct kz_client *cl = KZ_CONTAINER_OF(io, struct kz_client, io);
    switch (cl->state) {
    case CL_CONNECTING:
        on_connected(cl);
        break;
    case CL_PROXY:
        if (cl->hs_sent < cl->hs_out)
            send_pending(cl);
        else if (events & KZ_IO_READ)
            read_proxy_answer(cl);
        break;
    case CL_TLS:
        tls_step(cl);
        break;
    case CL_HANDSHAKE:
        if (cl->hs_sent < cl->hs_out)
            send_pending(cl);
        else if (events & KZ_IO_READ)
            read_upgrade_answer(cl);
        break;
    default:
        break;
    }
}

static void wait_for(struct kz_client *cl, unsigned events)
{
    if (cl->io.fd >= 0 && cl->io.events != events)
        kz_io_set_events(cl->loop, &cl->io, events);
}

static void on_resolved(void *ud, int rc, struct addrinfo *res)
{
    struct kz_client *cl = ud;
    cl->resolving = NULL;
    if (rc != 0) {
        char detail[200];
        snprintf(detail, sizeof(detail), "resolving %s: %s", cl->where, gai_strerror(rc));
        fail_attempt(cl, KZ_ERR_RESOLVE, 0, 0, detail);
        return;
    }
    cl->addrs = cl->next_addr = res;
    connect_next(cl, 0);
}

static void start_attempt(struct kz_client *cl)
{
    cl->attempt++;
    cl->state = CL_RESOLVING;
    if (cl->cb.on_connecting)
        cl->cb.on_connecting(cl, cl->attempt);
    if (cl->state != CL_RESOLVING)
        return; /* the callback closed the client */
    cl->hs_cap = cl->cfg.max_header_size + 1024;
    cl->hs = kz__alloc(cl->ctx, cl->hs_cap);
    if (!cl->hs) {
        fail_attempt(cl, KZ_ERR_NOMEM, 0, 0, NULL);
        return;
    }
    if (cl->cfg.connect_timeout_ms)
        kz_timer_start(cl->loop, &cl->timer, cl->cfg.connect_timeout_ms, on_timer);
    struct kz_str host = cl->use_proxy ? cl->proxy.host : cl->url.host;
    uint16_t port = cl->use_proxy ? cl->proxy.port : cl->url.port;
    snprintf(cl->where, sizeof(cl->where), "%s%.*s:%u", cl->use_proxy ? "proxy " : "",
             (int)(host.len < 64 ? host.len : 64), host.ptr, (unsigned)port);
    /* An IP literal needs no resolver thread. */
    char name[256], service[8];
    if (host.len >= sizeof(name)) {
        fail_attempt(cl, KZ_ERR_RESOLVE, 0, 0, "host name too long");
        return;
    }
    memcpy(name, host.ptr, host.len);
    name[host.len] = '\0';
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    if (getaddrinfo(name, service, &hints, &res) == 0) {
        cl->addrs = cl->next_addr = res;
        connect_next(cl, 0);
        return;
    }
    cl->resolving = kz__resolve_start(cl->loop, host.ptr, host.len, port, on_resolved, cl);
    if (!cl->resolving)
        fail_attempt(cl, KZ_ERR_SYSTEM, errno, 0, "could not start the resolver thread");
}

/* ------------------------------------------------------------------------
 * The application's calls
 */

int kz_client_start(struct kz_client *cl)
{
    if (cl->state != CL_IDLE)
        return KZ_ERR_INVALID_ARGUMENT;
    kz_defer_cancel(cl->loop, &cl->end_defer);
    cl->stopping = false;
    cl->attempt = 0;
    kz_backoff_reset(&cl->backoff);
    start_attempt(cl);
    return KZ_OK;
}

int kz_client_send(struct kz_client *cl, enum kz_opcode op, const void *data, size_t len)
{
    if (op != KZ_OP_TEXT && op != KZ_OP_BINARY)
        return KZ_ERR_INVALID_ARGUMENT;
    if (cl->conn)
        return kz_conn_send(cl->conn, op, data, len);
    if (cl->stopping || cl->state == CL_IDLE || cl->state == CL_ENDING ||
        cl->cfg.offline_queue_max == 0)
        return KZ_ERR_CLOSED;
    if (len > cl->cfg.offline_queue_max - cl->offline_bytes ||
        cl->offline_bytes > cl->cfg.offline_queue_max)
        return KZ_ERR_BACKPRESSURE;
    struct offline_msg *m = kz__alloc(cl->ctx, sizeof(*m) + len);
    if (!m)
        return KZ_ERR_NOMEM;
    m->next = NULL;
    m->len = len;
    m->op = (uint8_t)op;
    if (len)
        memcpy(m->data, data, len);
    if (cl->offline_tail)
        cl->offline_tail->next = m;
    else
        cl->offline_head = m;
    cl->offline_tail = m;
    cl->offline_bytes += len;
    return KZ_OK;
}

int kz_client_close(struct kz_client *cl, uint16_t code, const char *reason, size_t reason_len)
{
    cl->stopping = true;
    drop_offline(cl);
    if (cl->conn) {
        int rc = kz_conn_close(cl->conn, code, reason, reason_len);
        return rc == KZ_ERR_CLOSED ? KZ_OK : rc; /* already closing: it ends all the same */
    }
    if (cl->state == CL_IDLE || cl->state == CL_ENDING)
        return KZ_ERR_CLOSED;
    end(cl);
    return KZ_OK;
}

void kz_client_free(struct kz_client *cl)
{
    if (!cl)
        return;
    struct kz_server *ctx = cl->ctx;
    kz_timer_stop(cl->loop, &cl->timer);
    kz_defer_cancel(cl->loop, &cl->end_defer);
    drop_attempt(cl);
    drop_offline(cl);
    cl->state = CL_IDLE;
    cl->cb.on_close = NULL; /* dropping the connection reports nothing more */
    cl->stopping = true;
    ctx->user = NULL;
    ctx->cb.on_close = NULL;
    if (cl->tls_ctx)
        SSL_CTX_free(cl->tls_ctx);
    kz__free(ctx, cl->copies);
    kz__free(ctx, cl);
    kz_server_free(ctx);
}

struct kz_conn *kz_client_conn(const struct kz_client *cl)
{
    return cl->conn;
}

const char *kz_client_subprotocol(const struct kz_client *cl)
{
    return cl->subprotocol >= 0 ? cl->cfg.subprotocols[cl->subprotocol] : "";
}

uint16_t kz_client_close_code(const struct kz_client *cl)
{
    return cl->close_code;
}

void *kz_client_user(const struct kz_client *cl)
{
    return cl->user;
}

struct kz_client *kz_conn_client(const struct kz_conn *c)
{
    return c->srv->client ? c->srv->user : NULL;
}

void kz_client_set_random(struct kz_client *cl, uint32_t (*random)(void *ud), void *ud)
{
    cl->random = random ? random : csprng32;
    cl->random_ud = ud;
}
