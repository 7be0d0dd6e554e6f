/*
 * kaze/handshake.h — the opening handshake of RFC 6455 §4 without I/O.
 *
 * Server side: kz_hs_parse_request() parses the client's HTTP/1.1 request as
 * its bytes arrive; kz_hs_check_request() says whether it is a valid
 * WebSocket upgrade and, if not, which error (kz_hs_err_status() maps it to
 * the HTTP status); kz_hs_write_response() builds the 101 answer and
 * kz_hs_write_refusal() any other.
 *
 * Client side: kz_hs_client_key() makes a fresh key, kz_hs_write_request()
 * builds the request, kz_hs_parse_response() and kz_hs_check_response() read
 * and judge the server's answer, with a distinct error for each failure.
 *
 * Nothing is copied: every struct kz_str filled in here points into the
 * buffer that was parsed, and is valid while that buffer is unchanged.
 * SHA-1, base64 and random bytes come from OpenSSL's libcrypto.
 */
#ifndef KAZE_HANDSHAKE_H
#define KAZE_HANDSHAKE_H

#include "kaze/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default bound on a request's or response's header block, in bytes. */
#define KZ_HS_MAX_HEADER_SIZE_DEFAULT 8192
/* Length of a Sec-WebSocket-Key (base64 of 16 bytes) and of an Accept value. */
#define KZ_HS_KEY_LEN    24
#define KZ_HS_ACCEPT_LEN 28

/* One header line: name and value with surrounding white space removed. */
struct kz_header {
    struct kz_str name;
    struct kz_str value;
};

/*
 * A parsed request. Before parsing, the caller sets `headers` to an array of
 * `max_headers` entries (32 is plenty for browsers); the parser fills every
 * other field. The well-known headers are also found by name for
 * convenience: an absent one has ptr == NULL; `dup_mask` tells which of them
 * appeared more than once (bits KZ_HS_SEEN_*), since several of them must
 * be unique.
 */
struct kz_hs_request {
    struct kz_str method;
    struct kz_str target; /* as sent */
    struct kz_str path;   /* target without the query, "/" at least */
    struct kz_str query;  /* after '?', without it; len 0 if none */
    int http_minor;       /* HTTP/1.x: x */
    struct kz_str host;
    struct kz_str origin;
    struct kz_str key;
    struct kz_str version;
    struct kz_str cookie;
    struct kz_str authorization;
    unsigned dup_mask;
    struct kz_header *headers;
    size_t max_headers;
    size_t num_headers;
};

#define KZ_HS_SEEN_HOST    0x1u
#define KZ_HS_SEEN_KEY     0x2u
#define KZ_HS_SEEN_VERSION 0x4u
#define KZ_HS_SEEN_ORIGIN  0x8u

/*
 * Parses an HTTP/1.1 request head from `buf`, which holds `len` bytes
 * received so far; `prev_len` is the `len` of the previous call on the same
 * buffer (0 the first time), so that bytes already searched are not searched
 * again. Lines may end in CRLF or LF; obsolete line folding is refused.
 * Returns:
 *   > 0  the size of the header block (the bytes after it, if any, are
 *        WebSocket frames or a body, not part of the handshake);
 *   KZ_ERR_PARTIAL  the block has not ended yet: call again with more;
 *   KZ_ERR_HS_TOO_LARGE  no end within `max_size` bytes (431);
 *   KZ_ERR_HS_TOO_MANY_HEADERS  more lines than req->max_headers (431);
 *   KZ_ERR_HS_MALFORMED  not HTTP syntax (400).
 */
KZ_EXPORT int kz_hs_parse_request(const char *buf, size_t len, size_t prev_len, size_t max_size,
                                  struct kz_hs_request *req);

/*
 * Judges a parsed request as a WebSocket upgrade (RFC 6455 §4.2.1), in this
 * order: KZ_ERR_HS_METHOD, KZ_ERR_HS_HTTP_VERSION, KZ_ERR_HS_BAD_TARGET,
 * KZ_ERR_HS_NO_HOST, KZ_ERR_HS_NO_UPGRADE, KZ_ERR_HS_NO_CONNECTION,
 * KZ_ERR_HS_BODY, KZ_ERR_HS_NO_VERSION / KZ_ERR_HS_VERSION,
 * KZ_ERR_HS_BAD_KEY, KZ_ERR_HS_BAD_PROTOCOLS, KZ_ERR_HS_BAD_EXTENSIONS;
 * KZ_OK if none applies. Upgrade and Connection are case-insensitive token
 * lists and may be spread over several lines.
 */
KZ_EXPORT int kz_hs_check_request(const struct kz_hs_request *req);

/*
 * The HTTP status for a handshake error: 400, 405, 426 or 431; 500 for
 * KZ_ERR_NOMEM and other non-handshake codes.
 */
KZ_EXPORT int kz_hs_err_status(int err);

/* ------------------------------------------------------------------------
 * Header lists
 */

/* Where an iteration over a comma-separated list stands; zero it to start. */
struct kz_hs_iter {
    size_t header; /* index of the header line */
    size_t pos;    /* offset in its value */
};

/*
 * Iterates the elements of the comma-separated list formed by every header
 * named `name` (case-insensitive), in order, white space trimmed and empty
 * elements skipped. Returns true and sets *item, or false at the end.
 */
KZ_EXPORT bool kz_hs_list_next(const struct kz_header *headers, size_t num_headers,
                               const char *name, struct kz_hs_iter *it, struct kz_str *item);

/* True if the list named `name` has `token` (case-insensitive). */
KZ_EXPORT bool kz_hs_list_has(const struct kz_header *headers, size_t num_headers, const char *name,
                              const char *token);

/* The value of the first header named `name`, or {NULL, 0}. */
KZ_EXPORT struct kz_str kz_hs_header(const struct kz_header *headers, size_t num_headers,
                                     const char *name);

/* ------------------------------------------------------------------------
 * Extensions (RFC 6455 §9.1)
 *
 *   extension-list = 1#extension
 *   extension      = extension-token *( ";" extension-param )
 *   extension-param = token [ "=" (token | quoted-string) ]
 * A quoted value must be a token once unquoted.
 */

#define KZ_EXT_MAX_PARAMS 8

struct kz_ext_param {
    struct kz_str name;
    struct kz_str value; /* raw: inside the quotes, escapes kept, if quoted */
    bool has_value;
    bool quoted;
};

struct kz_ext_offer {
    struct kz_str name;
    struct kz_ext_param params[KZ_EXT_MAX_PARAMS];
    size_t num_params;
};

/*
 * Reads the next extension from every Sec-WebSocket-Extensions header.
 * Returns 1 and fills *ext, 0 at the end, or KZ_ERR_HS_BAD_EXTENSIONS if the
 * text breaks the grammar or an extension has more than KZ_EXT_MAX_PARAMS
 * parameters.
 */
KZ_EXPORT int kz_hs_next_extension(const struct kz_header *headers, size_t num_headers,
                                   struct kz_hs_iter *it, struct kz_ext_offer *ext);

/*
 * Copies a parameter's value, with quotes and escapes removed, into `dst`
 * (`cap` bytes, NUL-terminated). Returns its length or
 * KZ_ERR_BUFFER_TOO_SMALL.
 */
KZ_EXPORT int kz_ext_param_value(const struct kz_ext_param *param, char *dst, size_t cap);

/* ------------------------------------------------------------------------
 * Server answers
 */

/*
 * Computes Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)), 28
 * characters, written to `out` with a terminating NUL. KZ_OK, or
 * KZ_ERR_INVALID_ARGUMENT if the key is not 24 characters.
 */
KZ_EXPORT int kz_hs_accept_key(const char *key, size_t key_len, char out[KZ_HS_ACCEPT_LEN + 1]);

/*
 * SHA-1 fetched once from OpenSSL. OpenSSL 3 looks a digest up by name on
 * every EVP_sha1() use, which costs more than hashing the 60 bytes of an
 * accept key; a server that answers many handshakes fetches it once and
 * passes it in struct kz_hs_accept. Immutable once made: a thread may share
 * it with others. kz_sha1_new returns NULL if OpenSSL has no SHA-1.
 */
struct kz_sha1;
KZ_EXPORT struct kz_sha1 *kz_sha1_new(void);
KZ_EXPORT void kz_sha1_free(struct kz_sha1 *sha);

/* kz_hs_accept_key() with a fetched SHA-1 (`sha` NULL: as kz_hs_accept_key). */
KZ_EXPORT int kz_hs_accept_key_with(const struct kz_sha1 *sha, const char *key, size_t key_len,
                                    char out[KZ_HS_ACCEPT_LEN + 1]);

/* What the server chose when it accepts. Empty fields are left out. */
struct kz_hs_accept {
    struct kz_str subprotocol;             /* one of the offered ones, or empty */
    struct kz_str extensions;              /* Sec-WebSocket-Extensions value, or empty */
    const struct kz_header *extra_headers; /* e.g. Set-Cookie */
    size_t num_extra_headers;
    const struct kz_sha1 *sha1; /* optional: a fetched SHA-1 to compute the accept value with */
};

/*
 * Writes the 101 Switching Protocols response for a request that passed
 * kz_hs_check_request(). `acc` may be NULL (no subprotocol, no extension).
 * Returns the number of bytes written or KZ_ERR_BUFFER_TOO_SMALL.
 */
KZ_EXPORT int kz_hs_write_response(char *out, size_t cap, const struct kz_hs_request *req,
                                   const struct kz_hs_accept *acc);

/*
 * Writes a complete refusal: status line, `Connection: close`, a plain-text
 * body (`reason`, or the status's own phrase if NULL) with its
 * Content-Length; 426 adds `Sec-WebSocket-Version: 13` and 405 adds
 * `Allow: GET`. `status` is 400..599. Returns the size, KZ_ERR_BUFFER_TOO_SMALL
 * or KZ_ERR_INVALID_ARGUMENT.
 */
KZ_EXPORT int kz_hs_write_refusal(char *out, size_t cap, int status, const char *reason);

/* ------------------------------------------------------------------------
 * Client side
 */

/* Writes a fresh key (16 random bytes from OpenSSL, base64) and a NUL. */
KZ_EXPORT int kz_hs_client_key(char out[KZ_HS_KEY_LEN + 1]);

struct kz_hs_client_request {
    struct kz_str host;             /* Host header: "example.com" or "example.com:8080" */
    struct kz_str target;           /* path and query; empty means "/" */
    struct kz_str origin;           /* optional */
    const struct kz_str *protocols; /* offered subprotocols, in preference order */
    size_t num_protocols;
    struct kz_str extensions;              /* Sec-WebSocket-Extensions offer, or empty */
    const struct kz_header *extra_headers; /* Authorization, Cookie, ... */
    size_t num_extra_headers;
};

/*
 * Writes the GET request with `key` (from kz_hs_client_key()). Returns its
 * size, KZ_ERR_BUFFER_TOO_SMALL, or KZ_ERR_INVALID_ARGUMENT (no host, a
 * subprotocol that is not a token, a CR or LF in any value).
 */
KZ_EXPORT int kz_hs_write_request(char *out, size_t cap, const struct kz_hs_client_request *r,
                                  const char key[KZ_HS_KEY_LEN]);

struct kz_hs_response {
    int http_minor;
    int status;
    struct kz_str reason;
    struct kz_header *headers; /* set by the caller, as for requests */
    size_t max_headers;
    size_t num_headers;
};

/*
 * Parses a response head; the same contract as kz_hs_parse_request(), with
 * KZ_ERR_HS_RESP_MALFORMED and KZ_ERR_HS_RESP_TOO_LARGE as its errors.
 */
KZ_EXPORT int kz_hs_parse_response(const char *buf, size_t len, size_t prev_len, size_t max_size,
                                   struct kz_hs_response *resp);

/*
 * Judges the server's answer to the request made with `key` and `offered`:
 * KZ_ERR_HS_RESP_STATUS, KZ_ERR_HS_RESP_UPGRADE, KZ_ERR_HS_RESP_CONNECTION,
 * KZ_ERR_HS_RESP_ACCEPT, KZ_ERR_HS_RESP_SUBPROTOCOL (one that was not
 * offered, or several), KZ_ERR_HS_RESP_EXTENSION (one that was not offered,
 * or a malformed header); KZ_OK if it is a valid 101. `*subprotocol` (may be
 * NULL) receives the chosen subprotocol, empty if none.
 */
KZ_EXPORT int kz_hs_check_response(const struct kz_hs_response *resp, const char key[KZ_HS_KEY_LEN],
                                   const struct kz_hs_client_request *offered,
                                   struct kz_str *subprotocol);

#ifdef __cplusplus
}
#endif
#endif
