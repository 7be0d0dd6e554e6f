/*
 * kaze/client.h — WebSocket clients on a kz_loop: connecting (DNS that does
 * not block the loop, IPv4 and IPv6, HTTP proxies with CONNECT), the opening
 * handshake, reconnection with exponential backoff and jitter, and a queue
 * for what is sent while disconnected. Once open, a client connection is a
 * `struct kz_conn` like a server's: the same callbacks, the same send
 * functions (kz_conn_send, kz_conn_ping, kz_conn_close, kz_conn_buffered),
 * the same limits and heartbeat. Every frame it sends is masked with a key
 * from OpenSSL's CSPRNG.
 *
 * The pieces that need no I/O come first (URLs, the backoff schedule, proxy
 * requests and replies); the connection API is at the end.
 */
#ifndef KAZE_CLIENT_H
#define KAZE_CLIENT_H

#include "kaze/common.h"
#include "kaze/deflate.h"
#include "kaze/handshake.h"
#include "kaze/loop.h"
#include "kaze/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * URLs
 */

/*
 * A parsed ws:// or wss:// URL. Every kz_str points into the parsed text.
 * `host` is without brackets for an IPv6 literal (`host_is_ipv6`); `port`
 * is the explicit port or the scheme's default (80, 443); `target` is the
 * path and query as the text has them: empty, or starting with '?', when the
 * URL has no path ("ws://h?x=1"), so kz_url_target() writes the form for the
 * request line ("/?x=1"); a fragment is refused (RFC 6455 §3).
 */
struct kz_url {
    bool tls; /* wss:// */
    struct kz_str host;
    bool host_is_ipv6;
    uint16_t port;
    bool port_explicit;
    struct kz_str target; /* "/chat?room=1"; "" or "?room=1" when there is no path */
    struct kz_str path;   /* "/chat"; len 0 when there is no path */
    struct kz_str query;  /* "room=1", without '?'; len 0 if none */
};

/*
 * Parses `text` (`len` bytes). Schemes are case-insensitive; "http" and
 * "https" are accepted as ws and wss (as browsers do). Refuses, with
 * KZ_ERR_INVALID_ARGUMENT: another scheme, userinfo, an empty or invalid
 * host, a port that is not 1..65535, a fragment, spaces, control
 * characters or bytes over 0x7e (percent-encode them), a bracketed host that
 * is not an IPv6 literal.
 */
KZ_EXPORT int kz_url_parse(const char *text, size_t len, struct kz_url *url);

/*
 * Writes the Host header's value for `url` into `out` (NUL-terminated):
 * the host (bracketed if IPv6) and the port unless it is the scheme's
 * default. Returns the length or KZ_ERR_BUFFER_TOO_SMALL.
 */
KZ_EXPORT int kz_url_host_header(const struct kz_url *url, char *out, size_t cap);

/*
 * Writes the request target for `url` into `out` (NUL-terminated): `target`
 * with a '/' put in front when the URL has no path ("/", "/?x=1"). Returns
 * the length or KZ_ERR_BUFFER_TOO_SMALL.
 */
KZ_EXPORT int kz_url_target(const struct kz_url *url, char *out, size_t cap);

/* ------------------------------------------------------------------------
 * Reconnection schedule: exponential backoff with jitter
 */

struct kz_backoff_config {
    uint32_t initial_ms; /* first delay; default 1000 */
    uint32_t max_ms;     /* cap; default 30000 */
    double factor;       /* growth per failed attempt; default 1.5 */
    double jitter; /* 0..1: each delay is drawn uniformly from [d·(1−jitter), d]; default 0.5 */
};

KZ_EXPORT void kz_backoff_config_default(struct kz_backoff_config *cfg);

/* Where a schedule stands: zero it (or kz_backoff_reset) after a successful open. */
struct kz_backoff {
    uint32_t attempt; /* failed attempts so far */
    double base_ms;   /* the delay before jitter for the next attempt; 0 = initial */
};

KZ_EXPORT void kz_backoff_reset(struct kz_backoff *b);

/*
 * The delay before the next attempt, in milliseconds, and moves the
 * schedule on: base = initial, initial·factor, ... capped at max; the delay
 * is drawn in [base·(1−jitter), base] with `random` (a uniformly random
 * 32-bit value the caller supplies — from OpenSSL in the library, from a
 * fixed sequence in tests), so that a fleet of clients does not reconnect
 * in lockstep.
 */
KZ_EXPORT uint32_t kz_backoff_next(struct kz_backoff *b, const struct kz_backoff_config *cfg,
                                   uint32_t random);

/* ------------------------------------------------------------------------
 * HTTP proxies (CONNECT, RFC 9110 §9.3.6)
 */

/* A proxy given as "http://[user:pass@]host[:port]" or "host:port". */
struct kz_proxy {
    struct kz_str host;     /* without brackets for IPv6 */
    uint16_t port;          /* 80 when the text gives none */
    struct kz_str userinfo; /* "user:pass" for Basic auth, or empty; %XX not yet decoded */
};

/*
 * Parses a proxy URL ("http://host:port", "http://user:pass@host:port",
 * or a bare "host:port"; a missing port means 80). Returns KZ_OK or
 * KZ_ERR_INVALID_ARGUMENT (another scheme, such as https or socks, which
 * are not supported; an invalid host or port).
 */
KZ_EXPORT int kz_proxy_parse(const char *text, size_t len, struct kz_proxy *proxy);

/*
 * Chooses the proxy for a connection to `url` from the environment-style
 * values given (each may be NULL): `https_proxy` for wss, `http_proxy` for
 * ws (the lower-case names, as curl does; the caller reads getenv), and
 * `no_proxy` (comma-separated host names, domain suffixes with or without a
 * leading dot, "*" for all; matched case-insensitively against the host,
 * with an optional ":port"). Returns the chosen proxy string (one of the
 * arguments) or NULL for a direct connection.
 */
KZ_EXPORT const char *kz_proxy_select(const struct kz_url *url, const char *http_proxy,
                                      const char *https_proxy, const char *no_proxy);

/*
 * Writes the CONNECT request for `host`:`port` (bracketing an IPv6 host),
 * with a Host header and, when `proxy->userinfo` is set, a
 * Proxy-Authorization: Basic header (base64 from OpenSSL of the userinfo
 * with its percent escapes decoded). Writes no NUL. Returns the length,
 * KZ_ERR_BUFFER_TOO_SMALL or KZ_ERR_INVALID_ARGUMENT (an empty host or one
 * with white space or control characters, port 0, userinfo with a control
 * character, a broken escape or an escaped CR, LF or NUL).
 */
KZ_EXPORT int kz_proxy_write_connect(char *out, size_t cap, const struct kz_proxy *proxy,
                                     struct kz_str host, uint16_t port);

/*
 * Reads the proxy's answer to CONNECT as it arrives (same contract as
 * kz_hs_parse_response: `prev_len` of the previous call, KZ_ERR_PARTIAL
 * until the head is complete). Returns the head's size when the proxy
 * answered 2xx (the bytes after it belong to the tunnel), KZ_ERR_PARTIAL,
 * KZ_ERR_PROXY with *status set to the proxy's status (407 means it wants
 * credentials), or KZ_ERR_HS_RESP_MALFORMED / KZ_ERR_HS_RESP_TOO_LARGE.
 */
KZ_EXPORT int kz_proxy_parse_reply(const char *buf, size_t len, size_t prev_len, size_t max_size,
                                   int *status);

/* ------------------------------------------------------------------------
 * Client connections
 *
 * A kz_client is one logical connection to one URL that lives across
 * reconnections: each attempt resolves the host (in a helper thread, for a
 * name; at once, for an IP literal), connects (to each address in turn
 * until one answers; through the proxy if one is set), sends the upgrade
 * request and judges the answer. An open connection is a kz_conn, valid
 * from on_open until on_close returns. When it is lost, and reconnection is
 * on, the next attempt starts after a delay from the backoff schedule.
 *
 * Every callback runs on the loop's thread, and every kz_client_* function
 * must be called from it.
 */

struct kz_client;

/* Why an attempt failed before the connection opened (on_connect_error). */
struct kz_client_error {
    int err;            /* kz_err: KZ_ERR_RESOLVE, KZ_ERR_CONNECT, KZ_ERR_TIMEOUT, KZ_ERR_PROXY,
                           KZ_ERR_TLS, KZ_ERR_HS_RESP_*, KZ_ERR_SYSTEM, KZ_ERR_NOMEM */
    int sys_errno;      /* for KZ_ERR_CONNECT and KZ_ERR_SYSTEM: errno (ECONNREFUSED, ...) */
    int status;         /* the HTTP status of the handshake's or the proxy's answer, or 0 */
    const char *detail; /* NUL-terminated, for people: "connect 127.0.0.1:9: Connection refused" */
};

/*
 * Limits, timeouts and what to offer. kz_client_config_default() gives safe
 * values; the fields are the server's (kz_server_config) where they mean
 * the same. Strings and arrays are copied by kz_client_new.
 */
struct kz_client_config {
    size_t max_message_size; /* default 1 MiB; a bigger message closes with 1009 */
    size_t max_frame_size;   /* default = max_message_size */
    size_t max_header_size;  /* the server's answer head; default 8 KiB */
    size_t max_buffered;     /* bytes queued for the server; default 1 MiB */
    enum kz_backpressure backpressure;
    uint32_t connect_timeout_ms;   /* DNS, TCP and proxy together; default 10 s */
    uint32_t handshake_timeout_ms; /* from the request sent to the 101; default 10 s */
    uint32_t idle_timeout_ms;      /* default 0 (off) */
    uint32_t ping_interval_ms;     /* default 30 s */
    uint32_t pong_timeout_ms;      /* default 15 s */
    uint32_t close_timeout_ms;     /* default 5 s */

    /* The request. */
    const char *origin;              /* Origin header, or NULL */
    const char *const *subprotocols; /* offered, in preference order */
    size_t num_subprotocols;
    const struct kz_header *headers; /* more headers: Authorization, Cookie, ... */
    size_t num_headers;
    bool deflate;                      /* offer permessage-deflate; default false */
    struct kz_pmd_offer deflate_offer; /* default: kz_pmd_offer_default (as Chromium) */
    uint8_t deflate_level;             /* default 1 */
    uint8_t deflate_mem_level;         /* default 8 */
    size_t deflate_min_size;           /* default 64 */

    /*
     * An HTTP proxy URL ("http://[user:pass@]host[:port]") to tunnel
     * through with CONNECT, or NULL for none. kz_client_config_proxy_from_env
     * fills it from http_proxy / https_proxy / no_proxy.
     */
    const char *proxy;

    /*
     * wss://: the server's certificate is verified against `tls_ca_file`
     * (PEM), or the system's store when NULL, and must be valid for the
     * URL's host (SNI is sent for names). `tls_insecure` skips the
     * verification — for tests against self-signed certificates only.
     */
    const char *tls_ca_file;
    bool tls_insecure;
    uint32_t tls_handshake_timeout_ms; /* default 10 s */

    /* Reconnection. */
    bool reconnect;                   /* default false */
    struct kz_backoff_config backoff; /* default 1 s, ×1.5, 30 s, jitter 0.5 */
    uint32_t max_attempts;            /* failed attempts in a row before giving up; 0: never */
    /*
     * Close codes after which the client does not reconnect: the server
     * said retrying will not help. Default: 1002, 1003, 1007, 1008, 1009,
     * 1010 (protocol, data, policy, size and extension errors). A
     * handshake refused with a 4xx status, or answered invalidly, is not
     * retried either; 5xx, network errors and timeouts are.
     */
    const uint16_t *no_reconnect_codes;
    size_t num_no_reconnect_codes;
    /*
     * Bytes kz_client_send may hold while the client is not open
     * (connecting or waiting to reconnect); they are sent, in order, right
     * after the next handshake, before on_open. Default 0: such sends are
     * refused with KZ_ERR_CLOSED. Beyond the bound: KZ_ERR_BACKPRESSURE.
     */
    size_t offline_queue_max;
};

KZ_EXPORT void kz_client_config_default(struct kz_client_config *cfg);

/*
 * Sets cfg->proxy from the environment-style values (see kz_proxy_select;
 * each may be NULL) for connections to `url_text`. The pointer stored is
 * one of the arguments. Returns KZ_OK or KZ_ERR_INVALID_ARGUMENT (a bad URL).
 */
KZ_EXPORT int kz_client_config_proxy_from_env(struct kz_client_config *cfg, const char *url_text,
                                              const char *http_proxy, const char *https_proxy,
                                              const char *no_proxy);

struct kz_client_callbacks {
    /*
     * The same callbacks as a server's, for the open connection (see
     * kaze/server.h). kz_conn_client() gives the kz_client of a kz_conn;
     * kz_conn_user() gives the client's user data.
     */
    void (*on_open)(struct kz_conn *c);
    void (*on_message)(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len);
    void (*on_pong)(struct kz_conn *c, const uint8_t *data, size_t len);
    void (*on_drain)(struct kz_conn *c);
    void (*on_close)(struct kz_conn *c, uint16_t code, struct kz_str reason);

    /* Attempt `attempt` (1, 2, ... since the last open) starts. */
    void (*on_connecting)(struct kz_client *cl, uint32_t attempt);
    /* The attempt failed before the connection opened. `e` is valid during the call. */
    void (*on_connect_error)(struct kz_client *cl, const struct kz_client_error *e);
    /* The next attempt starts in `delay_ms`. */
    void (*on_reconnect)(struct kz_client *cl, uint32_t attempt, uint32_t delay_ms);
    /*
     * The client has stopped for good: closed by kz_client_close, refused
     * for good, out of attempts, or lost with reconnection off. It does
     * nothing more; free it (from here too) or start it again.
     */
    void (*on_end)(struct kz_client *cl);
};

/*
 * Creates a client for `url` (ws:// or wss://) on `loop`. `cb` is copied; on_message is
 * required. `alloc` NULL means malloc; the resolver's thread allocates with
 * getaddrinfo's own malloc, and its small job block (about 100 bytes plus
 * the host name) with malloc too, since it may outlive the client. `user`
 * is the client's user data (kz_client_user, and kz_conn_user of its
 * connections). Returns NULL on a bad URL, bad proxy or config
 * (KZ_ERR_INVALID_ARGUMENT), CA certificates that cannot be loaded
 * (KZ_ERR_TLS) or no memory; `err` (may be NULL) says which.
 * Nothing happens until kz_client_start.
 */
KZ_EXPORT struct kz_client *kz_client_new(struct kz_loop *loop, const char *url,
                                          const struct kz_client_config *cfg,
                                          const struct kz_client_callbacks *cb, void *user,
                                          const struct kz_allocator *alloc, int *err);

/* Starts the first attempt (or a new one after on_end). KZ_OK or KZ_ERR_INVALID_ARGUMENT if
 * running. */
KZ_EXPORT int kz_client_start(struct kz_client *cl);

/*
 * Sends a message on the open connection, or queues it while the client is
 * connecting or waiting to reconnect (up to offline_queue_max). Returns as
 * kz_conn_send, or KZ_ERR_CLOSED when the client is stopped (or not open
 * with no offline queue), KZ_ERR_BACKPRESSURE when the offline queue is full.
 */
KZ_EXPORT int kz_client_send(struct kz_client *cl, enum kz_opcode op, const void *data, size_t len);

/*
 * Stops the client for good: closes the open connection with `code` and
 * `reason` (as kz_conn_close; on_close follows once the server answers),
 * or abandons the attempt in progress or the wait. No reconnection follows;
 * on_end is called once the connection has closed. Queued offline
 * messages are dropped. Returns KZ_OK, or an error of kz_conn_close.
 */
KZ_EXPORT int kz_client_close(struct kz_client *cl, uint16_t code, const char *reason,
                              size_t reason_len);

/*
 * Frees the client; an open connection is dropped without a close handshake
 * (on_close gets 1006). May be called from on_end, or outside callbacks.
 */
KZ_EXPORT void kz_client_free(struct kz_client *cl);

/* The open connection, or NULL. */
KZ_EXPORT struct kz_conn *kz_client_conn(const struct kz_client *cl);
/* The subprotocol the server chose on the current connection ("" if none). */
KZ_EXPORT const char *kz_client_subprotocol(const struct kz_client *cl);
/* The last connection's close code (0 if none yet). */
KZ_EXPORT uint16_t kz_client_close_code(const struct kz_client *cl);
KZ_EXPORT void *kz_client_user(const struct kz_client *cl);
/* The kz_client a client connection belongs to; NULL for a server's connection. */
KZ_EXPORT struct kz_client *kz_conn_client(const struct kz_conn *c);

/*
 * For tests: the random 32-bit values the backoff's jitter draws (default:
 * OpenSSL's CSPRNG). With the loop's injectable clock (kz_loop_set_clock),
 * a test checks the whole reconnection schedule without sleeping.
 */
KZ_EXPORT void kz_client_set_random(struct kz_client *cl, uint32_t (*random)(void *ud), void *ud);

#ifdef __cplusplus
}
#endif
#endif
