/*
 * kaze bench: a worker — one event loop on its own thread, driving its
 * share of the connections through connect, the opening handshake, echo
 * traffic and the close handshake.
 *
 * Everything WebSocket comes from libkaze's sans-I/O core: the request and
 * the judgement of the response (kaze/handshake.h), frame headers, masking
 * and the parser for the server's frames (kaze/frame.h). This file only
 * moves bytes.
 *
 * The hot path. A connection keeps `depth` messages in flight: each echo
 * that comes back makes it owe one more. Owed frames are built straight
 * into the connection's output buffer (header, then the payload template
 * masked on the copy, then the sequence tag) and leave in one send() per
 * connection per loop iteration; input is read with one recv() into the
 * worker's big buffer and parsed in place. Nothing is allocated per
 * message, and the clock is read once per send and once per read.
 *
 * Checking. Echoes come back in order on each connection, so the n-th echo
 * must carry message n's tag (in its first 8 bytes; with --deflate, bytes
 * 8..15, inside the JSON), have its length and its opcode. Its round trip
 * is measured against the time its send() was made, kept in a ring of
 * `depth` slots.
 *
 * Compression (--deflate). The connection's offer is judged with
 * kz_pmd_check_response(); each connection then has a kz_deflater for what
 * it sends (the client window and context takeover agreed) and a
 * kz_inflater for what it receives (the server's). A message is written as
 * JSON-like text into the worker's scratch buffer (bench_text_records),
 * compressed, and its compressed bytes masked straight into the output
 * buffer behind a header with RSV1. Echoes with RSV1 are inflated piece by
 * piece as the parser hands them out (the inflater bounds them by the size
 * sent); echoes without it are taken as they are, since servers leave small
 * messages uncompressed. The deflater's and inflater's buffers are kept from
 * message to message, so compression allocates nothing per message either.
 * In connect mode the one exchange a connection makes before idling counts
 * as part of its opening: it holds a slot of --concurrency until the echo is
 * back, and then the deflater and inflater are freed.
 *
 * TLS (wss://). After the TCP connect, an SSL from the run's context (SNI
 * and the name to verify set per connection) makes its handshake on the
 * loop, waiting for whatever SSL_ERROR_WANT_READ/WRITE asks; then the
 * upgrade and the frames go through SSL_read and SSL_write on the same
 * buffers as over TCP: all the frames queued on a connection go in one
 * SSL_write, which seals them into as few records as fit (one record per
 * 16 KiB) and writes each with one write(). Reads take records until the
 * worker's buffer is full or OpenSSL holds nothing more; records OpenSSL
 * has already taken off the socket (read-ahead) do not wake epoll, so the
 * read goes on while SSL_has_pending() says so. A read that must wait for
 * the socket to be writable (SSL_read's WANT_WRITE) or a write that must
 * wait for input (SSL_write's WANT_READ) is remembered, and the interest
 * mask follows it. Nothing is allocated per message: OpenSSL's record
 * buffers live as long as the connection in echo runs. The handshake time
 * counts the TLS handshake; a failed one stops the run with its reason.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "kaze/deflate.h"
#include "kaze/frame.h"
#include "kaze/handshake.h"
#include "kaze/loop.h"
#include "kaze/tcp.h"
#include "bench.h"

/* The largest control frame we send: a masked header and 125 bytes. */
#define CTRL_FRAME_MAX (KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX)
/* Room the data frames leave free in an output buffer, for a pong and the close. */
#define CTRL_RESERVE (2 * CTRL_FRAME_MAX)
/* What the parser may leave unconsumed: a header, or a whole (unmasked) control frame. */
#define CARRY_MAX      (2 + 8 + KZ_CONTROL_PAYLOAD_MAX + 5)
#define HS_BUF_SIZE    KZ_HS_MAX_HEADER_SIZE_DEFAULT
#define HS_MAX_HEADERS 32
/* One recv() takes up to this much: many echoes, or a good piece of a big one. */
#define RBUF_SIZE (256u * 1024u)
/* Data bytes a connection queues at once (at least one whole frame). */
#define OUT_TARGET (256u * 1024u)
/* Fill/send rounds per event when the kernel keeps taking everything (big messages). */
#define PUMP_ROUNDS      8
#define CLOSE_TIMEOUT_MS 5000
#define ERRORS_SHOWN     5
#define TAG_LEN          8
/* Where the tag sits in a compressed run's text: {"seq":"TAGTAGTA","events":[... */
#define TEXT_TAG_OFF 8
/* Our compressor's zlib memLevel: zlib's default. */
#define DEFLATE_MEM_LEVEL 8

enum conn_state {
    C_IDLE = 0,   /* not started */
    C_CONNECTING, /* TCP connect in progress */
    C_TLS,        /* wss://: TLS handshake in progress */
    C_HS_SEND,    /* sending the upgrade request */
    C_HS_RECV,    /* reading the 101 */
    C_OPEN,       /* WebSocket open */
    C_CLOSING,    /* our close frame is queued; waiting for the server's */
    C_DRAIN,      /* close frames exchanged; waiting for the server's FIN */
    C_DONE,       /* socket closed, buffers freed */
};

struct bconn {
    struct kz_io io;
    struct bench_worker *w;
    SSL *ssl; /* wss:// */
    struct kz_parser *parser;
    /* --deflate: the compressor of what we send, the decompressor of what the server sends */
    struct kz_deflater *zout;
    struct kz_inflater *zin;
    uint8_t *out;      /* frames waiting for send(): [out_head, out_tail) */
    uint64_t *sent_at; /* echo mode: send time of each message in flight, a ring */
    char *hs;          /* the handshake's request, then its response; freed once open */
    uint64_t t_start;  /* when connect() began */
    uint64_t rx_len;   /* bytes of the echo being received */
    uint32_t id;
    uint32_t out_head, out_tail, out_cap;
    uint32_t hs_len, hs_sent, hs_req;
    uint32_t owed;   /* messages to send as soon as there is room */
    uint32_t tx_seq; /* messages sent */
    uint32_t rx_seq; /* echoes received */
    uint32_t tx_slot, rx_slot;
    uint8_t state;
    bool we_closed;      /* the close handshake was ours (a clean end), not the server's */
    bool opening;        /* counted in the worker's `connecting` */
    bool exchanging;     /* connect --deflate: the one message is out, its echo not back */
    bool rx_zipped;      /* the echo being received is compressed */
    bool rd_wants_write; /* TLS: SSL_read waits for the socket to be writable */
    bool wr_wants_read;  /* TLS: SSL_write waits for input */
    uint8_t carry_len;
    char key[KZ_HS_KEY_LEN + 1];
    uint8_t rx_tag[TAG_LEN];
    uint8_t carry[CARRY_MAX];
};

struct bench_worker {
    struct bench_shared *sh;
    const struct bench_opts *o;
    unsigned index;
    struct kz_loop *loop;
    struct kz_async wake;
    struct kz_timer close_timer;
    pthread_t thread;
    bool thread_started;
    struct bconn *conns;
    size_t n;
    size_t next;       /* the next connection to start */
    size_t connecting; /* handshakes in progress */
    size_t live;       /* connections with an open socket */
    size_t concurrency;
    bool sending;  /* echo traffic is on */
    bool closing;  /* closing (or aborting): no new connections, no new messages */
    bool finished; /* every connection is done: the thread may end */
    unsigned errors_shown;
    size_t nready; /* connections open (connect --deflate: and done with their exchange) */
    uint8_t opcode;
    uint32_t frame_len; /* header + payload of one message (--deflate: the most it can be) */
    uint32_t out_cap;
    uint32_t ring;  /* slots of a connection's sent_at ring */
    size_t tag_off; /* where the sequence tag sits in a message */
    size_t tag_len; /* its bytes that fit in a message (8, or fewer in tiny ones) */
    size_t zbound;  /* --deflate: the most a compressed message may take */
    struct kz_parser_config pcfg;
    struct kz_hs_client_request req;
    struct bench_rng rng;
    uint8_t *rbuf;
    uint8_t *payload; /* the payload template, unmasked */
    uint8_t *text;    /* --deflate: a message's text, before it is compressed */
    struct bench_text gen;
    struct bench_stats st;
};

static void conn_drop(struct bconn *c);
static void conn_pump(struct bconn *c);
static void on_io(struct kz_loop *loop, struct kz_io *io, unsigned events);

/* ------------------------------------------------------------------------
 * Errors
 */

/* kz_strerror(rc), with errno's text when a system call failed. */
static const char *err_text(int rc, char *buf, size_t cap)
{
    if (rc == KZ_ERR_SYSTEM)
        snprintf(buf, cap, "%s: %s", kz_strerror(rc), strerror(errno));
    else
        snprintf(buf, cap, "%s", kz_strerror(rc));
    return buf;
}

/* A connection could not be set up: the whole run fails. */
__attribute__((format(printf, 2, 3))) static void conn_fatal(struct bconn *c, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bench_fail(c->w->sh, "connection %u to %s: %s", c->id, c->w->o->host_header, msg);
    conn_drop(c);
}

/*
 * Something went wrong on an open connection (a wrong echo, a protocol
 * error, a reset): counted, shown for the first few, and the connection
 * dropped. The run goes on with the others.
 */
__attribute__((format(printf, 2, 3))) static void conn_error(struct bconn *c, const char *fmt, ...)
{
    struct bench_worker *w = c->w;
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Still opening (connect --deflate's one exchange): as fatal as a failed handshake. */
    if (c->opening) {
        conn_fatal(c, "%s", msg);
        return;
    }
    w->st.errors++;
    if (w->errors_shown < ERRORS_SHOWN) {
        w->errors_shown++;
        fprintf(stderr, "kaze bench: connection %u: %s\n", c->id, msg);
    }
    conn_drop(c);
}

/* ------------------------------------------------------------------------
 * Connection lifetime
 */

static void worker_check_done(struct bench_worker *w)
{
    if (w->closing && w->live == 0) {
        w->finished = true;
        kz_timer_stop(w->loop, &w->close_timer);
    }
}

static void conn_free_buffers(struct bconn *c)
{
    free(c->hs);
    kz_parser_free(c->parser);
    free(c->out);
    free(c->sent_at);
    kz_deflater_free(c->zout);
    kz_inflater_free(c->zin);
    c->hs = NULL;
    c->parser = NULL;
    c->out = NULL;
    c->sent_at = NULL;
    c->zout = NULL;
    c->zin = NULL;
}

/* Closes the socket and frees what the connection holds; idempotent. */
static void conn_drop(struct bconn *c)
{
    struct bench_worker *w = c->w;
    if (c->state == C_IDLE || c->state == C_DONE)
        return;
    if (c->opening)
        w->connecting--;
    c->opening = false;
    int fd = c->io.fd;
    kz_io_stop(w->loop, &c->io);
    /* No close_notify: the server closes first, as in RFC 6455, or the connection failed. */
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(fd);
    conn_free_buffers(c);
    c->state = C_DONE;
    w->live--;
    if (w->live == 0 && !w->closing)
        bench_fail(w->sh, "every connection of thread %u failed (see above)", w->index);
    worker_check_done(w);
}

/* False if the connection had to be dropped (and, before it was open, the run failed). */
static bool conn_set_events(struct bconn *c, unsigned events)
{
    if (kz_io_set_events(c->w->loop, &c->io, events) == KZ_OK)
        return true;
    if (c->state < C_OPEN)
        conn_fatal(c, "epoll_ctl: %s", strerror(errno));
    else
        conn_error(c, "epoll_ctl: %s", strerror(errno));
    return false;
}

static void conn_start(struct bconn *c)
{
    struct bench_worker *w = c->w;
    c->t_start = bench_now_ns();
    if (w->st.first_start_ns == 0)
        w->st.first_start_ns = c->t_start;
    char e[200];
    int fd = kz_tcp_connect((const struct sockaddr *)&w->o->addr, w->o->addr_len);
    if (fd < 0) {
        bench_fail(w->sh, "connection %u to %s: connect: %s", c->id, w->o->host_header,
                   err_text(fd, e, sizeof(e)));
        return;
    }
    int rc = kz_io_start(w->loop, &c->io, fd, KZ_IO_WRITE, on_io);
    if (rc != KZ_OK) {
        bench_fail(w->sh, "connection %u: watching the socket: %s", c->id,
                   err_text(rc, e, sizeof(e)));
        close(fd);
        return;
    }
    c->state = C_CONNECTING;
    c->opening = true;
    w->connecting++;
    w->live++;
}

static bool run_aborted(const struct bench_worker *w)
{
    return atomic_load_explicit(&w->sh->phase, memory_order_relaxed) == PHASE_ABORT;
}

/* Starts connections until `concurrency` handshakes are in progress. */
static void worker_start_more(struct bench_worker *w)
{
    while (w->connecting < w->concurrency && w->next < w->n && !w->closing && !run_aborted(w))
        conn_start(&w->conns[w->next++]);
}

/* ------------------------------------------------------------------------
 * TLS reads and writes
 *
 * Both return the bytes moved (> 0), 0 at the end of the stream (the
 * server's close_notify, or its FIN), TLS_WAIT when the call must be made
 * again once the socket is ready (rd_wants_write / wr_wants_read say
 * which way when it is not the obvious one), or TLS_FAILED with the reason
 * in `why`.
 */

#define TLS_WAIT   (-1)
#define TLS_FAILED (-2)

static int clamp_int(size_t len)
{
    return len > (size_t)INT32_MAX ? INT32_MAX : (int)len;
}

static ssize_t tls_read(struct bconn *c, void *buf, size_t len, char *why, size_t cap)
{
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, clamp_int(len));
    c->rd_wants_write = false;
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return TLS_WAIT;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->rd_wants_write = true;
        return TLS_WAIT;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    bench_tls_error(c->ssl, e, why, cap);
    return TLS_FAILED;
}

static ssize_t tls_write(struct bconn *c, const void *buf, size_t len, char *why, size_t cap)
{
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf, clamp_int(len));
    c->wr_wants_read = false;
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE)
        return TLS_WAIT;
    if (e == SSL_ERROR_WANT_READ) {
        c->wr_wants_read = true;
        return TLS_WAIT;
    }
    bench_tls_error(c->ssl, e, why, cap);
    return TLS_FAILED;
}

/* ------------------------------------------------------------------------
 * Opening handshake
 */

/* The upgrade request over TLS; true once it is all written. */
static bool conn_hs_send_tls(struct bconn *c)
{
    while (c->hs_sent < c->hs_req) {
        char why[300];
        ssize_t n = tls_write(c, c->hs + c->hs_sent, c->hs_req - c->hs_sent, why, sizeof(why));
        if (n == TLS_WAIT) {
            conn_set_events(c, c->wr_wants_read ? KZ_IO_READ : KZ_IO_WRITE);
            return false;
        }
        if (n < 0) {
            conn_fatal(c, "sending the handshake: %s", why);
            return false;
        }
        c->hs_sent += (uint32_t)n;
    }
    return true;
}

static void conn_hs_send(struct bconn *c)
{
    if (c->ssl) {
        if (!conn_hs_send_tls(c))
            return;
    }
    while (c->hs_sent < c->hs_req) {
        ssize_t n = send(c->io.fd, c->hs + c->hs_sent, c->hs_req - c->hs_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_set_events(c, KZ_IO_WRITE);
                return;
            }
            conn_fatal(c, "sending the handshake: %s", strerror(errno));
            return;
        }
        c->hs_sent += (uint32_t)n;
    }
    c->state = C_HS_RECV;
    c->hs_len = 0;
    conn_set_events(c, KZ_IO_READ);
}

/* The transport is ready (TCP, and TLS for wss://): the upgrade request goes out. */
static void conn_upgrade(struct bconn *c)
{
    struct bench_worker *w = c->w;
    int rc;
    c->hs = malloc(HS_BUF_SIZE);
    if (!c->hs) {
        conn_fatal(c, "%s", kz_strerror(KZ_ERR_NOMEM));
        return;
    }
    rc = kz_hs_client_key(c->key);
    if (rc != KZ_OK) {
        conn_fatal(c, "handshake key: %s", kz_strerror(rc));
        return;
    }
    int n = kz_hs_write_request(c->hs, HS_BUF_SIZE, &w->req, c->key);
    if (n < 0) {
        conn_fatal(c, "writing the handshake request: %s", kz_strerror(n));
        return;
    }
    c->hs_req = (uint32_t)n;
    c->hs_sent = 0;
    c->state = C_HS_SEND;
    conn_hs_send(c);
}

/* "TLSv1.3, TLS_AES_256_GCM_SHA384, x25519, server key EC prime256v1 (256 bits)" */
static void tls_describe(SSL *ssl, char *buf, size_t cap)
{
    int len = snprintf(buf, cap, "%s, %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
    int group = SSL_get_negotiated_group(ssl);
    const char *gname = group > 0 ? SSL_group_to_name(ssl, group) : NULL;
    if (gname && len > 0 && (size_t)len < cap)
        len += snprintf(buf + len, cap - (size_t)len, ", %s", gname);
    X509 *cert = SSL_get0_peer_certificate(ssl);
    EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
    if (key && len > 0 && (size_t)len < cap) {
        char curve[64] = "";
        size_t clen = 0;
        if (EVP_PKEY_get_group_name(key, curve, sizeof(curve), &clen) != 1)
            curve[0] = '\0';
        snprintf(buf + len, cap - (size_t)len, ", server key %s%s%s (%d bits)",
                 EVP_PKEY_get0_type_name(key), curve[0] ? " " : "", curve, EVP_PKEY_get_bits(key));
    }
    ERR_clear_error();
}

/* Advances the TLS handshake; once it is done, the upgrade follows. */
static void conn_tls_step(struct bconn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        struct bench_worker *w = c->w;
        if (!w->st.tls_agreed[0])
            tls_describe(c->ssl, w->st.tls_agreed, sizeof(w->st.tls_agreed));
        conn_upgrade(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        conn_set_events(c, e == SSL_ERROR_WANT_READ ? KZ_IO_READ : KZ_IO_WRITE);
        return;
    }
    char why[300];
    conn_fatal(c, "TLS handshake: %s", bench_tls_error(c->ssl, e, why, sizeof(why)));
}

/* wss://: an SSL for the connection, SNI for a name, the name or address to verify. */
static void conn_tls_start(struct bconn *c)
{
    const struct bench_opts *o = c->w->o;
    SSL *ssl = SSL_new(c->w->sh->tls);
    bool ok = ssl && SSL_set_fd(ssl, c->io.fd) == 1;
    /* RFC 6066: SNI carries host names, never address literals. */
    if (ok && !o->tls_name_is_ip)
        ok = SSL_set_tlsext_host_name(ssl, o->tls_name) == 1;
    if (ok && !o->tls_insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = o->tls_name_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, o->tls_name) == 1
                               : SSL_set1_host(ssl, o->tls_name) == 1;
    }
    if (!ok) {
        char why[300];
        SSL_free(ssl);
        conn_fatal(c, "setting up TLS: %s", bench_tls_error(NULL, SSL_ERROR_SSL, why, sizeof(why)));
        return;
    }
    SSL_set_connect_state(ssl);
    c->ssl = ssl;
    c->state = C_TLS;
    conn_tls_step(c);
}

static void conn_connected(struct bconn *c)
{
    char e[200];
    int rc = kz_tcp_connect_result(c->io.fd);
    if (rc != KZ_OK) {
        conn_fatal(c, "connect: %s", err_text(rc, e, sizeof(e)));
        return;
    }
    if (c->w->sh->tls)
        conn_tls_start(c);
    else
        conn_upgrade(c);
}

static void conn_input(struct bconn *c, uint8_t *buf, size_t len);

/* The connection is all the way open: it no longer counts as a handshake in progress. */
static void conn_ready(struct bconn *c)
{
    struct bench_worker *w = c->w;
    c->opening = false;
    w->connecting--;
    if (++w->nready == w->n)
        atomic_fetch_add(&w->sh->ready, 1);
    worker_start_more(w);
}

/* --deflate: a compressor and a decompressor as agreed in the handshake. */
static bool conn_setup_deflate(struct bconn *c, const struct kz_pmd_params *pmd)
{
    struct bench_worker *w = c->w;
    const struct bench_opts *o = w->o;
    struct kz_deflate_config dc = {
        .window_bits = pmd->client_max_window_bits,
        .level = o->deflate_level,
        .mem_level = DEFLATE_MEM_LEVEL,
        .no_context_takeover = pmd->client_no_context_takeover,
    };
    /* An echo that inflates to more than was sent is wrong: stop inflating there. */
    struct kz_inflate_config ic = {
        .window_bits = pmd->server_max_window_bits,
        .no_context_takeover = pmd->server_no_context_takeover,
        .max_message = o->size ? o->size : 1,
    };
    c->zout = kz_deflater_new(&dc, NULL);
    c->zin = kz_inflater_new(&ic, NULL);
    if (!c->zout || !c->zin) {
        conn_fatal(c, "setting up compression: %s", kz_strerror(KZ_ERR_NOMEM));
        return false;
    }
    if (!w->st.pmd_seen) {
        w->st.pmd_seen = true;
        w->st.pmd = *pmd;
    }
    return true;
}

/*
 * The 101 is good: from here on the connection speaks frames. `pmd` is what
 * permessage-deflate agreed to (NULL without --deflate).
 */
static void conn_opened(struct bconn *c, const char *extra, size_t extra_len,
                        const struct kz_pmd_params *pmd)
{
    struct bench_worker *w = c->w;
    uint64_t now = bench_now_ns();
    bench_hist_add(&w->st.hs, now - c->t_start);
    w->st.opened++;
    w->st.last_open_ns = now;
    /* Frames that came with the 101 are parsed from the worker's buffer like any others. */
    memcpy(w->rbuf, extra, extra_len);
    free(c->hs);
    c->hs = NULL;
    c->state = C_OPEN;

    c->parser = kz_parser_new(&w->pcfg, NULL);
    c->out = malloc(w->out_cap);
    c->out_cap = w->out_cap;
    if (w->ring)
        c->sent_at = calloc(w->ring, sizeof(*c->sent_at));
    if (!c->parser || !c->out || (w->ring && !c->sent_at)) {
        conn_fatal(c, "%s", kz_strerror(KZ_ERR_NOMEM));
        return;
    }
    if (pmd && !conn_setup_deflate(c, pmd))
        return;
    if (!conn_set_events(c, KZ_IO_READ))
        return;
    if (w->o->mode == BENCH_CONNECT && w->o->deflate) {
        /* One compressed message out and back before the connection counts as open. */
        c->exchanging = true;
        c->owed = 1;
    } else {
        conn_ready(c);
    }
    if (extra_len)
        conn_input(c, w->rbuf, extra_len);
    if (c->state != C_DONE && (extra_len || c->owed))
        conn_pump(c);
}

/* --deflate: the server's answer to our offer. False (and the run failed) unless it accepted. */
static bool conn_check_deflate(struct bconn *c, const struct kz_hs_response *resp,
                               struct kz_pmd_params *pmd)
{
    const struct bench_opts *o = c->w->o;
    int rc = kz_pmd_check_response(resp->headers, resp->num_headers, &o->pmd, pmd);
    if (rc == 1)
        return true;
    struct kz_str ext = kz_hs_header(resp->headers, resp->num_headers, "Sec-WebSocket-Extensions");
    if (rc == 0 && ext.len == 0)
        conn_fatal(c,
                   "the server did not accept permessage-deflate (--deflate): it answered "
                   "no Sec-WebSocket-Extensions to \"%s\"",
                   o->deflate_offer);
    else if (rc == 0)
        conn_fatal(c,
                   "the server did not accept permessage-deflate (--deflate): it answered "
                   "\"%.*s\" to \"%s\"",
                   (int)ext.len, ext.ptr, o->deflate_offer);
    else
        conn_fatal(c, "handshake: %s: the server answered \"%.*s\" to \"%s\"", kz_strerror(rc),
                   (int)ext.len, ext.ptr, o->deflate_offer);
    return false;
}

/* Reads more of the server's answer; the bytes read, or 0 for none now (or the run failed). */
static size_t conn_hs_read(struct bconn *c)
{
    char *at = c->hs + c->hs_len;
    size_t room = HS_BUF_SIZE - c->hs_len;
    ssize_t n;
    if (c->ssl) {
        char why[300];
        n = tls_read(c, at, room, why, sizeof(why));
        if (n == TLS_WAIT) {
            conn_set_events(c, c->rd_wants_write ? KZ_IO_WRITE : KZ_IO_READ);
            return 0;
        }
        if (n == TLS_FAILED) {
            conn_fatal(c, "reading the handshake response: %s", why);
            return 0;
        }
    } else {
        n = recv(c->io.fd, at, room, 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                conn_fatal(c, "reading the handshake response: %s", strerror(errno));
            return 0;
        }
    }
    if (n == 0) {
        conn_fatal(c, "the server closed the connection during the handshake");
        return 0;
    }
    return (size_t)n;
}

/*
 * Judges the answer once `prev` bytes of it had been looked at before.
 * True if it is not whole yet; false once it was taken or refused.
 */
static bool conn_hs_judge(struct bconn *c, size_t prev)
{
    struct bench_worker *w = c->w;
    struct kz_header headers[HS_MAX_HEADERS];
    struct kz_hs_response resp = {.headers = headers, .max_headers = HS_MAX_HEADERS};
    int r = kz_hs_parse_response(c->hs, c->hs_len, prev, HS_BUF_SIZE, &resp);
    if (r == KZ_ERR_PARTIAL && c->hs_len == HS_BUF_SIZE)
        r = KZ_ERR_HS_RESP_TOO_LARGE;
    if (r == KZ_ERR_PARTIAL)
        return true;
    if (r < 0) {
        conn_fatal(c, "handshake: %s", kz_strerror(r));
        return false;
    }
    int rc = kz_hs_check_response(&resp, c->key, &w->req, NULL);
    if (rc == KZ_ERR_HS_RESP_STATUS) {
        conn_fatal(c, "handshake: %s (got %d %.*s)", kz_strerror(rc), resp.status,
                   (int)resp.reason.len, resp.reason.ptr);
        return false;
    }
    if (rc != KZ_OK) {
        conn_fatal(c, "handshake: %s", kz_strerror(rc));
        return false;
    }
    struct kz_pmd_params pmd;
    if (w->o->deflate && !conn_check_deflate(c, &resp, &pmd))
        return false;
    conn_opened(c, c->hs + r, c->hs_len - (size_t)r, w->o->deflate ? &pmd : NULL);
    return false;
}

static void conn_read(struct bconn *c);

static void conn_hs_recv(struct bconn *c)
{
    for (;;) {
        size_t prev = c->hs_len;
        size_t n = conn_hs_read(c);
        if (n == 0)
            return;
        c->hs_len += (uint32_t)n;
        if (conn_hs_judge(c, prev)) {
            /* TLS: the rest may be in a record OpenSSL holds already, which epoll cannot tell. */
            if (c->ssl && SSL_has_pending(c->ssl))
                continue;
            return;
        }
        break;
    }
    /* Frames that came in records after the 101's are read now, for the same reason. */
    if (c->ssl && c->state >= C_OPEN && c->state != C_DONE && SSL_has_pending(c->ssl)) {
        conn_read(c);
        if (c->state != C_DONE)
            conn_pump(c);
    }
}

/* ------------------------------------------------------------------------
 * Output: frames built in place, sent in one call
 */

/* The first bytes of message `seq`: its number as 8 letters 'a'..'p' (valid UTF-8 as text). */
static void seq_tag(uint32_t seq, uint8_t tag[TAG_LEN])
{
    for (int i = 0; i < TAG_LEN; i++)
        tag[i] = (uint8_t)('a' + ((seq >> (4 * i)) & 15));
}

static void next_mask_key(struct bench_worker *w, uint8_t key[4])
{
    uint64_t r = bench_rng_next(&w->rng);
    memcpy(key, &r, 4);
}

/* Moves the unsent bytes to the front, making room at the back. */
static void conn_compact(struct bconn *c)
{
    if (c->out_head == 0)
        return;
    memmove(c->out, c->out + c->out_head, c->out_tail - c->out_head);
    c->out_tail -= c->out_head;
    c->out_head = 0;
}

/* Builds message number tx_seq at `p`: header, masked template, masked tag. Returns its size. */
static size_t conn_write_plain(struct bconn *c, uint8_t *p)
{
    struct bench_worker *w = c->w;
    size_t size = w->o->size;
    uint8_t key[4];
    next_mask_key(w, key);
    size_t hl = kz_frame_write_header(p, w->opcode, true, 0, size, key);
    uint8_t *d = p + hl;
    kz_mask_copy(d, w->payload, size, key, 0);
    uint8_t tag[TAG_LEN];
    seq_tag(c->tx_seq, tag);
    size_t n = size < TAG_LEN ? size : TAG_LEN;
    for (size_t i = 0; i < n; i++)
        d[i] = tag[i] ^ key[i & 3];
    return w->frame_len;
}

/*
 * --deflate: the text of message `seq` into w->text, `size` bytes:
 * {"seq":"TAGTAGTA","events":[{record},{record},... cut where the size ends.
 */
static void worker_write_text(struct bench_worker *w, uint32_t seq)
{
    static const char head[] = "{\"seq\":\"";
    static const char events[] = "\",\"events\":[";
    uint8_t *p = w->text;
    memcpy(p, head, TEXT_TAG_OFF);
    seq_tag(seq, p + TEXT_TAG_OFF);
    p += TEXT_TAG_OFF + TAG_LEN;
    memcpy(p, events, sizeof(events) - 1);
    p += sizeof(events) - 1;
    bench_text_records(&w->gen, p, w->text + w->o->size);
}

/*
 * --deflate: writes message tx_seq's text, compresses it, and builds the
 * frame at `p` (header with RSV1, compressed bytes masked on the copy).
 * Returns its size, or 0 if the connection had to be dropped.
 */
static size_t conn_write_zipped(struct bconn *c, uint8_t *p)
{
    struct bench_worker *w = c->w;
    size_t size = w->o->size;
    worker_write_text(w, c->tx_seq);
    const uint8_t *z;
    size_t zlen;
    int rc = kz_deflate_message(c->zout, w->text, size, &z, &zlen);
    if (rc != KZ_OK) {
        conn_error(c, "compressing message %u: %s", c->tx_seq, kz_strerror(rc));
        return 0;
    }
    if (zlen > w->zbound) {
        conn_error(c, "message %u compressed to %zu bytes, over the %zu reserved for it", c->tx_seq,
                   zlen, w->zbound);
        return 0;
    }
    uint8_t key[4];
    next_mask_key(w, key);
    size_t hl = kz_frame_write_header(p, w->opcode, true, KZ_RSV1, zlen, key);
    kz_mask_copy(p + hl, z, zlen, key, 0);
    w->st.z_sent_msgs++;
    w->st.z_sent_plain += size;
    w->st.z_sent_wire += zlen;
    return hl + zlen;
}

/*
 * Queues as many owed messages as fit, all stamped with `now` (room is
 * judged by the largest a frame can be). False if the connection was dropped.
 */
static bool conn_fill(struct bconn *c, uint64_t now)
{
    struct bench_worker *w = c->w;
    uint32_t limit = c->out_cap - CTRL_RESERVE;
    if (c->out_tail + w->frame_len > limit)
        conn_compact(c);
    while (c->owed && c->out_tail + w->frame_len <= limit) {
        uint8_t *p = c->out + c->out_tail;
        size_t n = w->o->deflate ? conn_write_zipped(c, p) : conn_write_plain(c, p);
        if (n == 0)
            return false;
        c->out_tail += (uint32_t)n;
        c->sent_at[c->tx_slot] = now;
        if (++c->tx_slot == w->ring)
            c->tx_slot = 0;
        c->tx_seq++;
        c->owed--;
    }
    return true;
}

/*
 * TLS: what is queued, in one SSL_write per record (partial writes: each
 * call seals and writes at most 16 KiB). A write that has to wait keeps its
 * bytes at out_head, to be offered again (OpenSSL allows them to have moved
 * and more to follow); false if the connection was dropped.
 */
__attribute__((noinline)) static bool conn_flush_tls(struct bconn *c)
{
    while (c->out_head < c->out_tail) {
        char why[300];
        ssize_t n = tls_write(c, c->out + c->out_head, c->out_tail - c->out_head, why, sizeof(why));
        if (n == TLS_WAIT)
            break;
        if (n < 0) {
            conn_error(c, "TLS write: %s", why);
            return false;
        }
        c->out_head += (uint32_t)n;
    }
    if (c->out_head == c->out_tail)
        c->out_head = c->out_tail = 0;
    return true;
}

/* Sends what is queued; false if the connection was dropped. */
static bool conn_flush(struct bconn *c)
{
    if (c->ssl)
        return conn_flush_tls(c);
    while (c->out_head < c->out_tail) {
        ssize_t n = send(c->io.fd, c->out + c->out_head, c->out_tail - c->out_head, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_error(c, "send: %s", strerror(errno));
            return false;
        }
        c->out_head += (uint32_t)n;
        /* A short send means the socket buffer is full: the next try would only fail. */
        if (c->out_head < c->out_tail)
            break;
    }
    if (c->out_head == c->out_tail)
        c->out_head = c->out_tail = 0;
    return true;
}

static bool conn_can_send(const struct bconn *c)
{
    return (c->w->sending || c->exchanging) && c->state == C_OPEN;
}

/*
 * Ask for KZ_IO_WRITE only while something waits for room in the socket:
 * output (unless TLS must read before it can write again: then input
 * wakes the write), or a TLS read that has to write first.
 */
static void conn_update_events(struct bconn *c)
{
    unsigned ev = KZ_IO_READ;
    bool out = c->out_head != c->out_tail || (c->owed && conn_can_send(c));
    if ((out && !c->wr_wants_read) || c->rd_wants_write)
        ev |= KZ_IO_WRITE;
    conn_set_events(c, ev);
}

/* Builds the owed frames and sends everything queued, in as few calls as the socket allows. */
static void conn_pump(struct bconn *c)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (c->owed && conn_can_send(c) && !conn_fill(c, bench_now_ns()))
            return;
        if (c->out_head == c->out_tail)
            break;
        if (!conn_flush(c))
            return;
        if (c->out_head != c->out_tail || !c->owed || !conn_can_send(c))
            break;
    }
    conn_update_events(c);
}

/* Queues a pong or a close frame; false (and nothing queued) if there is no room. */
static bool conn_queue_control(struct bconn *c, unsigned op, const uint8_t *data, size_t len,
                               uint16_t code)
{
    if (c->out_cap - c->out_tail < CTRL_FRAME_MAX)
        conn_compact(c);
    uint8_t key[4];
    next_mask_key(c->w, key);
    uint8_t *p = c->out + c->out_tail;
    size_t room = c->out_cap - c->out_tail;
    int n = op == KZ_OP_PONG ? kz_frame_write_pong(p, room, data, len, key)
                             : kz_frame_write_close(p, room, code, "", 0, key);
    if (n < 0)
        return false;
    c->out_tail += (uint32_t)n;
    return true;
}

/* ------------------------------------------------------------------------
 * Input
 */

/* connect --deflate: the one exchange is over; the connection idles from here. */
static void conn_exchanged(struct bconn *c)
{
    c->exchanging = false;
    /* What an idle client need not keep: thousands of them would cost gigabytes. */
    kz_deflater_free(c->zout);
    kz_inflater_free(c->zin);
    c->zout = NULL;
    c->zin = NULL;
    conn_ready(c);
}

/* The last echo of message rx_seq has arrived whole: check it and time it. */
static bool conn_echo_done(struct bconn *c, uint64_t now, bool measuring)
{
    struct bench_worker *w = c->w;
    size_t size = w->o->size;
    if (c->rx_seq == c->tx_seq) {
        conn_error(c, "an echo arrived with no message in flight");
        return false;
    }
    if (c->rx_len != size) {
        conn_error(c, "echo %u has %llu bytes; %zu were sent", c->rx_seq,
                   (unsigned long long)c->rx_len, size);
        return false;
    }
    uint8_t tag[TAG_LEN];
    seq_tag(c->rx_seq, tag);
    if (memcmp(c->rx_tag, tag, w->tag_len) != 0) {
        conn_error(c, "echo %u does not carry what message %u carried (lost or reordered)",
                   c->rx_seq, c->rx_seq);
        return false;
    }
    uint64_t sent = c->sent_at[c->rx_slot];
    if (++c->rx_slot == w->ring)
        c->rx_slot = 0;
    c->rx_seq++;
    if (c->exchanging) {
        conn_exchanged(c);
        return true;
    }
    w->st.all_msgs++;
    if (measuring) {
        bench_hist_add(&w->st.lat, now > sent ? now - sent : 0);
        w->st.msgs++;
        w->st.bytes += size;
    }
    if (conn_can_send(c))
        c->owed++;
    return true;
}

/* Takes the next `len` bytes of an echo's payload (inflated): counts them, keeps the tag's. */
static void conn_take(struct bconn *c, const uint8_t *data, size_t len)
{
    size_t off = c->w->tag_off;
    uint64_t at = c->rx_len;
    if (at < off + TAG_LEN && at + len > off) {
        size_t from = at < off ? off - (size_t)at : 0; /* in `data` */
        size_t to = (size_t)at + from - off;           /* in the tag */
        size_t n = len - from < TAG_LEN - to ? len - from : TAG_LEN - to;
        memcpy(c->rx_tag + to, data + from, n);
    }
    c->rx_len += len;
}

/* A piece of an echo (frames mode hands payload out as it arrives). */
static bool conn_data(struct bconn *c, const struct kz_event *ev, uint64_t now, bool measuring)
{
    struct bench_worker *w = c->w;
    if (w->o->mode != BENCH_ECHO && !c->exchanging) {
        conn_error(c, "the server sent a data message on an idle connection");
        return false;
    }
    if (ev->first) {
        c->rx_len = 0;
        c->rx_zipped = (ev->rsv & KZ_RSV1) != 0;
        if (ev->opcode != w->opcode) {
            conn_error(c, "echo %u came back as %s", c->rx_seq,
                       ev->opcode == KZ_OP_TEXT ? "text" : "binary");
            return false;
        }
    }
    const uint8_t *d = ev->data;
    size_t n = ev->len;
    if (c->rx_zipped) {
        w->st.z_echo_wire += ev->len;
        int rc = kz_inflate_piece(c->zin, ev->data, ev->len, ev->fin, &d, &n);
        if (rc != KZ_OK) {
            conn_error(c, "echo %u: %s", c->rx_seq, kz_strerror(rc));
            return false;
        }
    }
    conn_take(c, d, n);
    if (!ev->fin)
        return true;
    if (c->rx_zipped) {
        w->st.z_echo_msgs++;
        w->st.z_echo_plain += c->rx_len;
    } else if (w->o->deflate) {
        w->st.z_echo_raw++;
    }
    return conn_echo_done(c, now, measuring);
}

/* The server's close frame: the answer to ours, or a close of its own. */
static void conn_peer_close(struct bconn *c, const struct kz_event *ev)
{
    if (c->opening) {
        conn_fatal(c, "the server closed the connection (%u %.*s) before the echo came back",
                   ev->close_code, (int)ev->close_reason.len, ev->close_reason.ptr);
        return;
    }
    if (c->state == C_CLOSING) {
        c->we_closed = true;
        c->state = C_DRAIN;
        return;
    }
    c->w->st.errors++;
    if (c->w->errors_shown < ERRORS_SHOWN) {
        c->w->errors_shown++;
        fprintf(stderr, "kaze bench: connection %u: the server closed it (%u %.*s)\n", c->id,
                ev->close_code, (int)ev->close_reason.len, ev->close_reason.ptr);
    }
    /* Answer with its code (none if it sent none), then wait for its FIN. */
    uint16_t code = ev->close_code == KZ_CLOSE_NO_STATUS ? 0 : ev->close_code;
    conn_queue_control(c, KZ_OP_CLOSE, NULL, 0, code);
    c->state = C_DRAIN;
}

/* One parser event; false if the connection is dropped or parsing must stop. */
static bool conn_event(struct bconn *c, const struct kz_event *ev, uint64_t now, bool measuring)
{
    switch (ev->type) {
    case KZ_EV_DATA:
        return conn_data(c, ev, now, measuring);
    case KZ_EV_PING:
        /* With no room, skip it: a later pong answers the latest ping (RFC 6455 §5.5.3). */
        conn_queue_control(c, KZ_OP_PONG, ev->data, ev->len, 0);
        return true;
    case KZ_EV_CLOSE:
        conn_peer_close(c, ev);
        return false;
    default:
        return true;
    }
}

/* Keeps the start of a frame the parser could not use yet, for the next read. */
static bool conn_keep(struct bconn *c, const uint8_t *rest, size_t n)
{
    if (n > sizeof(c->carry)) {
        conn_error(c, "the parser left %zu bytes unconsumed", n);
        return false;
    }
    memcpy(c->carry, rest, n);
    c->carry_len = (uint8_t)n;
    return true;
}

static void conn_parse(struct bconn *c, uint8_t *buf, size_t len, uint64_t now, bool measuring)
{
    size_t pos = 0;
    while (pos < len) {
        struct kz_event ev;
        ptrdiff_t r = kz_parser_parse(c->parser, buf + pos, len - pos, &ev);
        if (r < 0) {
            conn_error(c, "the server broke the protocol: %s", kz_strerror((int)r));
            return;
        }
        pos += (size_t)r;
        if (ev.type == KZ_EV_NONE) {
            conn_keep(c, buf + pos, len - pos);
            return;
        }
        if (!conn_event(c, &ev, now, measuring))
            return;
    }
}

/* -n mode: adds this batch to the run's total, which may open or close the window. */
static void worker_count(struct bench_worker *w, uint64_t k)
{
    struct bench_shared *sh = w->sh;
    uint64_t prev = atomic_fetch_add_explicit(&sh->received, k, memory_order_relaxed);
    uint64_t total = prev + k;
    if (prev < sh->warm_count && total >= sh->warm_count)
        bench_open_window(sh);
    if (prev < w->o->messages && total >= w->o->messages)
        bench_close_window(sh);
}

static void conn_input(struct bconn *c, uint8_t *buf, size_t len)
{
    struct bench_worker *w = c->w;
    uint64_t now = bench_now_ns();
    bool measuring = atomic_load_explicit(&w->sh->phase, memory_order_relaxed) == PHASE_MEASURE;
    uint64_t before = w->st.all_msgs;
    conn_parse(c, buf, len, now, measuring);
    if (w->o->mode == BENCH_ECHO && w->o->messages && w->st.all_msgs != before)
        worker_count(w, w->st.all_msgs - before);
}

static void conn_eof(struct bconn *c)
{
    if (c->state == C_DRAIN) {
        if (c->we_closed)
            c->w->st.closed_clean++;
        conn_drop(c);
        return;
    }
    conn_error(c, "the server closed the TCP connection without a close frame");
}

/*
 * TLS: takes records into the worker's buffer until it is full or OpenSSL
 * holds no more, parses them, and goes on while OpenSSL still holds some
 * (read ahead, they are off the socket: epoll will not report them).
 * OpenSSL's buffer is finite, so this ends.
 */
__attribute__((noinline)) static void conn_read_tls(struct bconn *c)
{
    struct bench_worker *w = c->w;
    uint8_t *buf = w->rbuf;
    for (;;) {
        size_t have = c->carry_len;
        memcpy(buf, c->carry, have);
        size_t got = 0;
        ssize_t n;
        char why[300];
        do {
            n = tls_read(c, buf + have + got, RBUF_SIZE - have - got, why, sizeof(why));
            if (n > 0)
                got += (size_t)n;
        } while (n > 0 && have + got < RBUF_SIZE && SSL_has_pending(c->ssl));
        if (got) {
            c->carry_len = 0;
            /* After the close frames, whatever still comes is not looked at. */
            if (c->state != C_DRAIN)
                conn_input(c, buf, have + got);
            if (c->state == C_DONE)
                return;
        }
        if (n == 0) {
            conn_eof(c);
            return;
        }
        if (n == TLS_FAILED) {
            conn_error(c, "TLS read: %s", why);
            return;
        }
        if (n == TLS_WAIT || !SSL_has_pending(c->ssl))
            return;
    }
}

static void conn_read(struct bconn *c)
{
    struct bench_worker *w = c->w;
    if (c->ssl) {
        conn_read_tls(c);
        return;
    }
    uint8_t *buf = w->rbuf;
    size_t have = c->carry_len;
    memcpy(buf, c->carry, have);
    ssize_t n = recv(c->io.fd, buf + have, RBUF_SIZE - have, 0);
    if (n == 0) {
        conn_eof(c);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_error(c, "recv: %s", strerror(errno));
        return;
    }
    c->carry_len = 0;
    /* After the close frames, whatever still comes is not looked at. */
    if (c->state != C_DRAIN)
        conn_input(c, buf, have + (size_t)n);
}

static void on_io(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    (void)loop;
    struct bconn *c = KZ_CONTAINER_OF(io, struct bconn, io);
    switch (c->state) {
    case C_CONNECTING:
        conn_connected(c);
        return;
    case C_TLS:
        conn_tls_step(c);
        return;
    case C_HS_SEND:
        conn_hs_send(c);
        return;
    case C_HS_RECV:
        conn_hs_recv(c);
        return;
    default:
        break;
    }
    if ((events & KZ_IO_READ) || (c->rd_wants_write && (events & KZ_IO_WRITE)))
        conn_read(c);
    /* Whatever the input made us owe (echoes, a pong, a close reply) leaves now, in one send. */
    if (c->state != C_DONE)
        conn_pump(c);
}

/* ------------------------------------------------------------------------
 * Phases
 */

static void worker_start_sending(struct bench_worker *w)
{
    w->sending = true;
    for (size_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        if (c->state != C_OPEN)
            continue;
        c->owed = w->o->depth;
        conn_pump(c);
    }
}

static void on_close_timeout(struct kz_loop *loop, struct kz_timer *t)
{
    (void)loop;
    struct bench_worker *w = KZ_CONTAINER_OF(t, struct bench_worker, close_timer);
    for (size_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        if (c->state != C_IDLE && c->state != C_DONE)
            conn_error(c, "no close handshake within %d ms", CLOSE_TIMEOUT_MS);
    }
}

/* Every open connection sends a close frame (1000) after what it has queued. */
static void worker_begin_close(struct bench_worker *w)
{
    w->closing = true;
    w->sending = false;
    for (size_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        if (c->state == C_OPEN) {
            if (!conn_queue_control(c, KZ_OP_CLOSE, NULL, 0, KZ_CLOSE_NORMAL)) {
                conn_error(c, "no room for the close frame");
                continue;
            }
            c->state = C_CLOSING;
            conn_pump(c);
        } else if (c->state != C_IDLE && c->state != C_DONE && c->state < C_OPEN) {
            conn_drop(c);
        }
    }
    if (kz_timer_start(w->loop, &w->close_timer, CLOSE_TIMEOUT_MS, on_close_timeout) != KZ_OK)
        bench_fail(w->sh, "thread %u: %s", w->index, kz_strerror(KZ_ERR_NOMEM));
    worker_check_done(w);
}

static void worker_abort(struct bench_worker *w)
{
    w->closing = true;
    w->sending = false;
    for (size_t i = 0; i < w->n; i++)
        conn_drop(&w->conns[i]);
    kz_timer_stop(w->loop, &w->close_timer);
    w->finished = true;
}

static void on_wake(struct kz_loop *loop, struct kz_async *a)
{
    (void)loop;
    struct bench_worker *w = KZ_CONTAINER_OF(a, struct bench_worker, wake);
    int ph = atomic_load(&w->sh->phase);
    if (ph == PHASE_ABORT) {
        worker_abort(w);
        return;
    }
    if ((ph == PHASE_WARMUP || ph == PHASE_MEASURE) && !w->sending && !w->closing)
        worker_start_sending(w);
    if (ph == PHASE_CLOSE && !w->closing)
        worker_begin_close(w);
}

static void *worker_main(void *arg)
{
    struct bench_worker *w = arg;
    worker_start_more(w);
    while (!w->finished) {
        if (run_aborted(w) && !w->closing)
            worker_abort(w);
        else if (kz_loop_run_once(w->loop, -1) != KZ_OK && errno != EINTR) {
            bench_fail(w->sh, "thread %u: the event loop failed: %s", w->index, strerror(errno));
            worker_abort(w);
        }
    }
    atomic_fetch_add(&w->sh->finished, 1);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Setup
 */

/*
 * The most a compressed message of `n` bytes can take on the wire. zlib
 * stores what does not compress, 5 bytes of block header per block of at
 * least 128 bytes (memLevel 1; 16 K at memLevel 8), plus a few for the
 * final flush; n/16 + 64 is more than any server's echo needs.
 */
static size_t deflate_bound(size_t n)
{
    return n + n / 16 + 64;
}

/*
 * What sending messages needs: echo mode, and connect --deflate's one
 * exchange. Plain payloads are printable ASCII ('A'..'Z' over and over, the
 * tag in front), compressed ones JSON-like text: either is valid UTF-8.
 */
static int worker_init_messages(struct bench_worker *w)
{
    const struct bench_opts *o = w->o;
    unsigned depth = o->mode == BENCH_ECHO ? o->depth : 1;
    size_t wire = o->size;
    w->opcode = o->text ? KZ_OP_TEXT : KZ_OP_BINARY;
    w->ring = depth;
    if (o->deflate) {
        /* Room for the head before the records, and for the last record's overrun. */
        w->text = malloc((o->size > 64 ? o->size : 64) + BENCH_TEXT_SLACK);
        if (!w->text)
            return KZ_ERR_NOMEM;
        int rc = bench_rng_seed(&w->gen.rng);
        if (rc != KZ_OK)
            return rc;
        w->gen.id = (uint64_t)w->index * 1000000000ull + 1;
        w->gen.ts = 1700000000000ull;
        w->tag_off = TEXT_TAG_OFF;
        w->zbound = deflate_bound(o->size);
        wire = w->zbound;
        w->pcfg.rsv_allowed = KZ_RSV1;
    } else {
        w->payload = malloc(o->size ? o->size : 1);
        if (!w->payload)
            return KZ_ERR_NOMEM;
        for (size_t i = 0; i < o->size; i++)
            w->payload[i] = (uint8_t)('A' + i % 26);
    }
    w->tag_len = o->size > w->tag_off ? o->size - w->tag_off : 0;
    if (w->tag_len > TAG_LEN)
        w->tag_len = TAG_LEN;
    w->frame_len = (uint32_t)(kz_frame_header_size(wire, true) + wire);
    uint64_t batch = (uint64_t)w->frame_len * depth;
    if (batch > OUT_TARGET)
        batch = OUT_TARGET;
    if (batch < w->frame_len)
        batch = w->frame_len;
    w->out_cap = (uint32_t)batch + CTRL_RESERVE;
    /*
     * An echo longer than what was sent is caught by the parser's limit
     * (compressed: by the inflater's), which also bounds control frames:
     * keep room for a close or a ping.
     */
    w->pcfg.max_frame_size = wire > KZ_CONTROL_PAYLOAD_MAX ? wire : KZ_CONTROL_PAYLOAD_MAX;
    w->pcfg.max_message_size = w->pcfg.max_frame_size;
    return KZ_OK;
}

static int worker_init(struct bench_worker *w, uint32_t first_id)
{
    const struct bench_opts *o = w->o;
    w->loop = kz_loop_new(NULL);
    w->conns = calloc(w->n, sizeof(*w->conns));
    w->rbuf = malloc(RBUF_SIZE);
    if (!w->loop || !w->conns || !w->rbuf)
        return KZ_ERR_NOMEM;
    for (size_t i = 0; i < w->n; i++) {
        w->conns[i].w = w;
        w->conns[i].id = first_id + (uint32_t)i;
    }
    kz_parser_config_default(&w->pcfg, KZ_ROLE_CLIENT);
    /* Echoes are checked by their tag; validating the text again would only slow the bench. */
    w->pcfg.skip_utf8 = true;
    w->out_cap = CTRL_RESERVE;
    if (o->mode == BENCH_ECHO || o->deflate) {
        int rc = worker_init_messages(w);
        if (rc != KZ_OK)
            return rc;
    }
    w->req.host = (struct kz_str){o->host_header, strlen(o->host_header)};
    w->req.target = (struct kz_str){o->target, strlen(o->target)};
    if (o->deflate)
        w->req.extensions = (struct kz_str){o->deflate_offer, strlen(o->deflate_offer)};
    int rc = bench_rng_seed(&w->rng);
    if (rc != KZ_OK)
        return rc;
    return kz_async_start(w->loop, &w->wake, on_wake);
}

struct bench_worker *bench_worker_new(struct bench_shared *sh, unsigned index, uint32_t first_id,
                                      size_t n, size_t concurrency)
{
    struct bench_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        bench_fail(sh, "%s", kz_strerror(KZ_ERR_NOMEM));
        return NULL;
    }
    w->sh = sh;
    w->o = sh->o;
    w->index = index;
    w->n = n;
    w->concurrency = concurrency ? concurrency : 1;
    int rc = worker_init(w, first_id);
    if (rc != KZ_OK) {
        char e[200];
        bench_fail(sh, "thread %u: setting up: %s", index, err_text(rc, e, sizeof(e)));
        bench_worker_free(w);
        return NULL;
    }
    return w;
}

int bench_worker_start(struct bench_worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        errno = rc;
        return KZ_ERR_SYSTEM;
    }
    w->thread_started = true;
    return KZ_OK;
}

void bench_worker_wake(struct bench_worker *w)
{
    kz_async_send(&w->wake);
}

void bench_worker_join(struct bench_worker *w)
{
    if (w->thread_started)
        pthread_join(w->thread, NULL);
    w->thread_started = false;
}

const struct bench_stats *bench_worker_stats(const struct bench_worker *w)
{
    return &w->st;
}

void bench_worker_free(struct bench_worker *w)
{
    if (!w)
        return;
    if (w->loop) {
        w->closing = true;
        for (size_t i = 0; w->conns && i < w->n; i++)
            conn_drop(&w->conns[i]);
        kz_timer_stop(w->loop, &w->close_timer);
        kz_async_stop(w->loop, &w->wake);
        kz_loop_free(w->loop);
    }
    free(w->conns);
    free(w->rbuf);
    free(w->payload);
    free(w->text);
    free(w);
}
