/*
 * The client: one logical connection to one URL across reconnections.
 *
 * Each attempt (client_attempt.c) ends OPEN, with the socket handed to a
 * kz_conn on the client's context (a kz_server without a listener), which
 * does everything else exactly as for a server connection, in the client
 * role; or it fails. When the connection is lost, or an attempt fails, the
 * client either WAITs for the backoff delay and tries again, or ENDs.
 *
 * One timer serves every state: the connect deadline (resolving, connecting
 * and the proxy together), the TLS and upgrade deadlines, or the backoff
 * delay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <arpa/inet.h>

#include <openssl/rand.h>

#include "ws/client_internal.h"

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

/* No more attempts. on_end comes at the end of the iteration once no connection is left. */
static void end(struct kz_client *cl)
{
    kz_timer_stop(cl->loop, &cl->timer);
    kz__client_drop_attempt(cl);
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

void kz__client_fail_attempt(struct kz_client *cl, int err, int sys_errno, int status,
                             const char *detail)
{
    kz__client_drop_attempt(cl);
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
    if (cl->state == CL_WAITING)
        kz__client_start_attempt(cl);
    else
        kz__client_attempt_timed_out(cl);
}

void kz__client_timer(struct kz_client *cl, uint32_t ms)
{
    kz_timer_start(cl->loop, &cl->timer, ms, on_timer);
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
    kz__client_start_attempt(cl);
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
    kz__client_drop_attempt(cl);
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
