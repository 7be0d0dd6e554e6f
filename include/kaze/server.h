/*
 * kaze/server.h — a WebSocket server on a kz_loop: the opening handshake,
 * whole messages, the close handshake, heartbeats, and a write path that
 * corks, queues and bounds what each connection may hold.
 *
 * One server runs on one loop (one thread). To use every core, run one loop
 * per thread, each with its own server listening on the same port with
 * `reuseport` (the kernel spreads connections across them).
 *
 * Connections. A `struct kz_conn` is created when a TCP connection is
 * accepted and is valid until the on_close callback returns (or, for a
 * connection refused during its handshake, until the refusal is sent; such
 * a connection never reaches on_open or on_close). Every callback runs on
 * the loop's thread; every kz_conn_* function must be called from it.
 *
 * Buffers. The payload given to on_message points into the server's read
 * buffer or into the connection's reassembly buffer and is valid only
 * during the callback. Functions that send copy what they need before they
 * return (or take a reference, for kz_msg), so the caller's buffer is free
 * again at once.
 *
 * Writes made during one loop iteration are corked and leave together in
 * one writev at the end of the iteration; what the kernel does not take is
 * queued, counted in kz_conn_buffered(), and on_drain is called when the
 * queue empties.
 */
#ifndef KAZE_SERVER_H
#define KAZE_SERVER_H

#include "kaze/common.h"
#include "kaze/deflate.h"
#include "kaze/frame.h"
#include "kaze/handshake.h"
#include "kaze/loop.h"
#include "kaze/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kz_server;
struct kz_conn;

/* What to do with a message that would take a connection over max_buffered. */
enum kz_backpressure {
    KZ_BP_CLOSE = 0,           /* fail the connection with 1008 (policy violation) */
    KZ_BP_DROP = 1,            /* refuse the message (KZ_ERR_BACKPRESSURE), keep the connection */
    KZ_BP_CLOSE_TRY_AGAIN = 2, /* fail the connection with 1013 (try again later) */
};

/* How a server compresses what it sends on connections that negotiated permessage-deflate. */
enum kz_deflate_mode {
    /*
     * A compressor per connection, keeping its LZ77 window from message to
     * message (best ratio; the window costs memory per connection).
     */
    KZ_DEFLATE_DEDICATED = 0,
    /*
     * One compressor per server (per thread), reset after every message:
     * the server negotiates server_no_context_takeover, and a connection
     * holds no compressor at all. Broadcasts are compressed once.
     */
    KZ_DEFLATE_SHARED = 1,
};

/*
 * Limits and timeouts. kz_server_config_default() gives safe values; every
 * field may be changed. Times are in milliseconds; 0 disables a timeout.
 */
struct kz_server_config {
    size_t max_message_size;           /* default 1 MiB; a bigger message closes with 1009 */
    size_t max_frame_size;             /* default = max_message_size */
    size_t max_header_size;            /* handshake request head; default 8 KiB (then 431) */
    size_t max_connections;            /* default 100000; beyond, new connections get 503 */
    size_t max_buffered;               /* bytes queued for one peer; default 1 MiB */
    enum kz_backpressure backpressure; /* default KZ_BP_CLOSE */
    uint32_t handshake_timeout_ms;     /* default 10 s: the request must be complete by then */
    uint32_t
        idle_timeout_ms; /* default 0 (off): close 1001 after this long with nothing received */
    uint32_t ping_interval_ms; /* default 30 s: ping a peer silent for this long */
    uint32_t pong_timeout_ms;  /* default 15 s: drop a peer that does not answer the ping */
    uint32_t close_timeout_ms; /* default 5 s: wait for the peer's close reply */
    /*
     * permessage-deflate (RFC 7692). Off by default in the library
     * (deflate.enabled = false); kaze echo turns it on. What the server
     * agrees to is `deflate`; how it compresses is below.
     */
    struct kz_pmd_policy deflate;
    enum kz_deflate_mode deflate_mode; /* default KZ_DEFLATE_DEDICATED */
    uint8_t deflate_level;             /* zlib level 1..9; default 1 (fast, still good on text) */
    uint8_t deflate_mem_level;         /* zlib memLevel 1..9; default 8; lower saves memory */
    size_t deflate_min_size;           /* shorter messages go uncompressed; default 64 */
    /*
     * wss://: the certificates to present (kaze/tls.h), or NULL for plain
     * ws://. Not owned: it must outlive the server. The TLS handshake has
     * its own deadline, after which the upgrade request has
     * handshake_timeout_ms.
     */
    struct kz_tls_server *tls;
    uint32_t tls_handshake_timeout_ms; /* default 10 s */
};

KZ_EXPORT void kz_server_config_default(struct kz_server_config *cfg);

/*
 * The server's answer to an upgrade request, filled in by on_upgrade. It
 * starts as "accept, no subprotocol, no user data".
 */
struct kz_upgrade {
    int status;                /* 0 or 101: accept; 400..599: refuse with this status */
    const char *reason;        /* refusal body (NUL-terminated), or NULL for the status phrase */
    struct kz_str subprotocol; /* must be one the client offered (kz_upgrade_pick_protocol) */
    void *user;                /* the connection's user data from now on */
};

/*
 * Picks the client's first offered subprotocol that is in `supported`
 * (`n` NUL-terminated names), as RFC 6455 §1.9's "chat, superchat" example
 * asks, and sets it in `up`. Returns true if one was picked.
 */
KZ_EXPORT bool kz_upgrade_pick_protocol(struct kz_upgrade *up, const struct kz_hs_request *req,
                                        const char *const *supported, size_t n);

struct kz_server_callbacks {
    /*
     * A complete, valid upgrade request (malformed ones are refused before
     * this, with 400/405/426/431). Inspect path, query, Origin, cookies,
     * any header; fill `up` to accept or refuse. NULL accepts everything.
     * `req` and its strings are valid during the call only.
     */
    void (*on_upgrade)(struct kz_conn *c, const struct kz_hs_request *req, struct kz_upgrade *up);
    /* The 101 is queued; the connection is open for sending. */
    void (*on_open)(struct kz_conn *c);
    /* A whole message, KZ_OP_TEXT (valid UTF-8) or KZ_OP_BINARY. */
    void (*on_message)(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len);
    /* A pong arrived (to our ping, or unsolicited). */
    void (*on_pong)(struct kz_conn *c, const uint8_t *data, size_t len);
    /* The queue that had built up for this peer has been written out. */
    void (*on_drain)(struct kz_conn *c);
    /*
     * The connection is closed: the code and reason of the close (the
     * peer's, if it closed; ours, if we failed or closed it; 1006 if the
     * TCP connection dropped without a close frame). Called exactly once
     * for every opened connection, as soon as the application can do nothing
     * more with it (sends return KZ_ERR_CLOSED); the library may still be
     * finishing the TCP close. Do not use `c` after this returns: it is
     * freed by the end of the loop iteration, or later once its close
     * handshake ends.
     */
    void (*on_close)(struct kz_conn *c, uint16_t code, struct kz_str reason);
    /*
     * A TLS handshake failed (`detail` says why: a protocol or cipher
     * mismatch, a client that rejected our certificate, plain HTTP sent to
     * this TLS port — which is answered with a 400 that says so). The
     * connection is closed after this returns; it never reaches on_open.
     * For logging; NULL is fine.
     */
    void (*on_tls_error)(struct kz_conn *c, const char *detail);
};

/*
 * Creates a server on `loop` with `cfg` (NULL: defaults) and `cb` (copied;
 * on_message is required). `alloc` NULL means malloc. `user` is the
 * server's user data (kz_server_user). Returns NULL if memory runs out or
 * `cb` lacks on_message.
 */
KZ_EXPORT struct kz_server *kz_server_new(struct kz_loop *loop, const struct kz_server_config *cfg,
                                          const struct kz_server_callbacks *cb, void *user,
                                          const struct kz_allocator *alloc);

/*
 * Listens on `host`:`port` (see kz_tcp_listen: numeric host or NULL for
 * all, port 0 for a free one, `reuseport` to share the port between the
 * servers of several threads). `bound_port` (may be NULL) receives the
 * port. The listener has TCP_DEFER_ACCEPT: the kernel hands over a
 * connection once the client has sent its first bytes, and the server reads
 * them at once, without waiting for epoll; a client that connects and says
 * nothing costs the server nothing. Returns KZ_OK or a negative kz_err
 * (errno set for KZ_ERR_SYSTEM).
 */
KZ_EXPORT int kz_server_listen(struct kz_server *s, const char *host, uint16_t port, bool reuseport,
                               uint16_t *bound_port);

/*
 * Starts a graceful shutdown: stops accepting, refuses handshakes in
 * progress, and closes every open connection with 1001 (going away).
 * The loop runs on until the close handshakes end (or time out); then
 * the server holds nothing that keeps the loop alive.
 */
KZ_EXPORT void kz_server_shutdown(struct kz_server *s);

/*
 * Frees the server. Connections still open are dropped without a close
 * handshake (on_close gets 1006); prefer kz_server_shutdown and running
 * the loop until it is idle. Not from a callback of this server.
 */
KZ_EXPORT void kz_server_free(struct kz_server *s);

KZ_EXPORT void *kz_server_user(const struct kz_server *s);

/* Open connections (after the handshake) and connections in all states. */
KZ_EXPORT size_t kz_server_open_count(const struct kz_server *s);
KZ_EXPORT size_t kz_server_conn_count(const struct kz_server *s);

/* ------------------------------------------------------------------------
 * Connections
 */

/*
 * Sends a message (KZ_OP_TEXT or KZ_OP_BINARY). Text must be UTF-8 (not
 * checked here: the application vouches). The bytes are copied before the
 * call returns. Returns KZ_OK, KZ_ERR_CLOSED (the close handshake has
 * begun), KZ_ERR_BACKPRESSURE (dropped: over max_buffered with KZ_BP_DROP;
 * with the closing policies the connection is failed instead and
 * KZ_ERR_CLOSED is returned), KZ_ERR_INVALID_ARGUMENT or KZ_ERR_NOMEM.
 */
KZ_EXPORT int kz_conn_send(struct kz_conn *c, enum kz_opcode op, const void *data, size_t len);

/* Sends a ping (payload at most 125 bytes). Same returns as kz_conn_send. */
KZ_EXPORT int kz_conn_ping(struct kz_conn *c, const void *data, size_t len);

/*
 * Starts the close handshake with `code` (kz_close_code_valid, or 0 for a
 * close frame without a code) and a UTF-8 `reason` of at most 123 bytes.
 * Nothing more can be sent afterwards; on_close follows when the peer
 * answers or the close timeout passes. Returns KZ_OK, KZ_ERR_CLOSED
 * (already closing) or KZ_ERR_INVALID_ARGUMENT / KZ_ERR_INVALID_UTF8.
 */
KZ_EXPORT int kz_conn_close(struct kz_conn *c, uint16_t code, const char *reason,
                            size_t reason_len);

/* Bytes queued for the peer that the kernel has not taken yet. */
KZ_EXPORT size_t kz_conn_buffered(const struct kz_conn *c);

KZ_EXPORT void *kz_conn_user(const struct kz_conn *c);
KZ_EXPORT void kz_conn_set_user(struct kz_conn *c, void *user);
KZ_EXPORT struct kz_server *kz_conn_server(const struct kz_conn *c);

/* ------------------------------------------------------------------------
 * Shared messages: encode once, send to many
 */

struct kz_msg;

/*
 * Encodes a server-to-client frame once (header and payload, copied) in a
 * reference-counted block, which kz_conn_send_msg queues on as many
 * connections as needed without copying it again. Returns NULL if memory
 * runs out. The caller holds one reference.
 */
KZ_EXPORT struct kz_msg *kz_msg_new(struct kz_server *s, enum kz_opcode op, const void *data,
                                    size_t len);
KZ_EXPORT void kz_msg_unref(struct kz_msg *m);

/* Queues a shared message on `c` (takes its own reference). As kz_conn_send. */
KZ_EXPORT int kz_conn_send_msg(struct kz_conn *c, struct kz_msg *m);

#ifdef __cplusplus
}
#endif
#endif
