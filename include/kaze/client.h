/*
 * kaze/client.h — the client role's pieces that need no I/O: WebSocket URLs,
 * the reconnection schedule, and HTTP proxies (CONNECT). The connection API
 * that drives them on a kz_loop builds on these.
 */
#ifndef KAZE_CLIENT_H
#define KAZE_CLIENT_H

#include "kaze/common.h"

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

#ifdef __cplusplus
}
#endif
#endif
