/*
 * kaze/common.h — what every layer of libkaze shares: error codes, the
 * allocator that the library takes from its user, and small value types.
 *
 * Errors. Every function that can fail returns a negative `enum kz_err`
 * (or a negative count). Codes are grouped by hundreds so that the group
 * tells the caller what to do:
 *   -1   .. -99   general (memory, arguments, buffers, "need more input")
 *   -100 .. -149  opening handshake, a client's request is refused (the
 *                 server answers with an HTTP status, kz_hs_err_status())
 *   -150 .. -199  opening handshake, a server's response is refused
 *                 (the client fails the connection)
 *   -200 .. -299  a peer broke RFC 6455 framing rules: the connection
 *                 must be failed with the close code kz_err_close_code()
 *                 gives (1002, 1007 or 1009)
 * kz_strerror() names each code in one short English sentence.
 */
#ifndef KAZE_COMMON_H
#define KAZE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KZ_VERSION_MAJOR  0
#define KZ_VERSION_MINOR  1
#define KZ_VERSION_PATCH  0
#define KZ_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define KZ_EXPORT __attribute__((visibility("default")))
#else
#define KZ_EXPORT
#endif

enum kz_err {
    KZ_OK = 0,

    /* general */
    KZ_ERR_NOMEM = -1,            /* the allocator returned NULL */
    KZ_ERR_INVALID_ARGUMENT = -2, /* a caller passed a value the API forbids */
    KZ_ERR_PARTIAL = -3,          /* not an error: more input is needed */
    KZ_ERR_BUFFER_TOO_SMALL = -4, /* the output buffer cannot hold the result */
    KZ_ERR_CRYPTO = -5,           /* OpenSSL failed (random bytes, digest) */
    KZ_ERR_SYSTEM = -6,           /* a system call failed: errno says why */
    KZ_ERR_CLOSED = -7,           /* the object is closed or closing: nothing more is accepted */
    KZ_ERR_BACKPRESSURE = -8,     /* refused: the peer's queue is over its limit */
    KZ_ERR_TIMEOUT = -9,          /* a deadline passed (connect, handshake) */
    KZ_ERR_RESOLVE = -10,         /* the host name could not be resolved */
    KZ_ERR_CONNECT = -11,         /* the TCP connection could not be made: errno says why */
    KZ_ERR_TLS = -12,             /* the TLS handshake failed (certificate, protocol) */

    /* handshake: a client's request is refused */
    KZ_ERR_HS_MALFORMED = -100,        /* not a parsable HTTP/1.1 request: 400 */
    KZ_ERR_HS_HTTP_VERSION = -101,     /* HTTP version below 1.1: 400 */
    KZ_ERR_HS_METHOD = -102,           /* method other than GET: 405 */
    KZ_ERR_HS_TOO_LARGE = -103,        /* header block over the limit: 431 */
    KZ_ERR_HS_TOO_MANY_HEADERS = -104, /* more header lines than the array holds: 431 */
    KZ_ERR_HS_NO_HOST = -105,          /* Host missing or repeated: 400 */
    KZ_ERR_HS_NO_UPGRADE = -106,       /* no "websocket" in Upgrade: 400 */
    KZ_ERR_HS_NO_CONNECTION = -107,    /* no "Upgrade" in Connection: 400 */
    KZ_ERR_HS_BAD_KEY = -108,        /* Sec-WebSocket-Key missing, repeated or not 16 bytes: 400 */
    KZ_ERR_HS_NO_VERSION = -109,     /* Sec-WebSocket-Version missing: 426 */
    KZ_ERR_HS_VERSION = -110,        /* Sec-WebSocket-Version is not 13: 426 */
    KZ_ERR_HS_BAD_EXTENSIONS = -111, /* Sec-WebSocket-Extensions breaks the grammar: 400 */
    KZ_ERR_HS_BAD_PROTOCOLS = -112,  /* Sec-WebSocket-Protocol is not a token list: 400 */
    KZ_ERR_HS_BAD_TARGET = -113,     /* request target is not an origin-form path: 400 */
    KZ_ERR_HS_BODY = -114,           /* the request announces a body: 400 */

    /* handshake: a server's response is refused (client role) */
    KZ_ERR_HS_RESP_MALFORMED = -150,   /* not a parsable HTTP/1.1 response */
    KZ_ERR_HS_RESP_STATUS = -151,      /* status is not 101 */
    KZ_ERR_HS_RESP_UPGRADE = -152,     /* Upgrade is not "websocket" */
    KZ_ERR_HS_RESP_CONNECTION = -153,  /* Connection lacks "Upgrade" */
    KZ_ERR_HS_RESP_ACCEPT = -154,      /* Sec-WebSocket-Accept is missing or wrong */
    KZ_ERR_HS_RESP_SUBPROTOCOL = -155, /* a subprotocol that was not offered */
    KZ_ERR_HS_RESP_EXTENSION = -156,   /* an extension that was not offered */
    KZ_ERR_HS_RESP_TOO_LARGE = -157,   /* response header block over the limit */
    KZ_ERR_PROXY = -158,               /* the HTTP proxy refused the CONNECT */

    /* framing: the peer broke RFC 6455 §5 (close with 1002) */
    KZ_ERR_PROTO_RSV = -200,                     /* RSV bit set that no extension claimed */
    KZ_ERR_PROTO_OPCODE = -201,                  /* reserved opcode */
    KZ_ERR_PROTO_CONTROL_TOO_LONG = -202,        /* control frame payload over 125 bytes */
    KZ_ERR_PROTO_CONTROL_FRAGMENTED = -203,      /* control frame without FIN */
    KZ_ERR_PROTO_UNEXPECTED_CONTINUATION = -204, /* continuation with no message open */
    KZ_ERR_PROTO_EXPECTED_CONTINUATION = -205,   /* new data message while one is open */
    KZ_ERR_PROTO_LENGTH = -206,        /* 64-bit length with top bit set, or not minimal */
    KZ_ERR_PROTO_UNMASKED = -207,      /* a client sent an unmasked frame */
    KZ_ERR_PROTO_MASKED = -208,        /* a server sent a masked frame */
    KZ_ERR_PROTO_CLOSE_PAYLOAD = -209, /* close payload of exactly one byte */
    KZ_ERR_PROTO_CLOSE_CODE = -210,    /* close code that may not appear on the wire */

    /* the peer's data is not what its type says (close with 1007) */
    KZ_ERR_INVALID_UTF8 = -250, /* text message or close reason is not UTF-8 */
    KZ_ERR_INFLATE = -251,      /* a compressed message is not a valid DEFLATE stream */

    /* the peer sent more than the limits allow (close with 1009) */
    KZ_ERR_FRAME_TOO_BIG = -260,
    KZ_ERR_MESSAGE_TOO_BIG = -261,
};

/* A short English sentence for an error code; never NULL. */
KZ_EXPORT const char *kz_strerror(int err);

/*
 * The close code a connection must send when the peer caused `err`:
 * 1002 for framing errors, 1007 for invalid UTF-8, 1009 for a size limit,
 * 1011 for a failure of our own (KZ_ERR_NOMEM); 0 for codes that are not
 * about a peer's frames.
 */
KZ_EXPORT int kz_err_close_code(int err);

/*
 * The one allocator the library allocates through. Every object that
 * allocates takes a `const struct kz_allocator *` at construction; NULL means
 * the C library's malloc/realloc/free. The struct is copied, so it need not
 * outlive the call. `realloc` may be NULL, in which case the library uses
 * malloc + copy + free. Returning NULL is always handled: the call fails
 * with KZ_ERR_NOMEM and the object stays valid or freeable as documented.
 */
struct kz_allocator {
    void *(*malloc)(size_t size, void *ud);
    void *(*realloc)(void *ptr, size_t size, void *ud);
    void (*free)(void *ptr, void *ud);
    void *ud;
};

/* A borrowed span of bytes: points into a buffer someone else owns. */
struct kz_str {
    const char *ptr;
    size_t len;
};

/* WebSocket opcodes (RFC 6455 §5.2). */
enum kz_opcode {
    KZ_OP_CONTINUATION = 0x0,
    KZ_OP_TEXT = 0x1,
    KZ_OP_BINARY = 0x2,
    KZ_OP_CLOSE = 0x8,
    KZ_OP_PING = 0x9,
    KZ_OP_PONG = 0xA,
};

/* Which end of the connection this code plays. */
enum kz_role {
    KZ_ROLE_SERVER = 0, /* receives masked frames, sends unmasked ones */
    KZ_ROLE_CLIENT = 1, /* receives unmasked frames, sends masked ones */
};

#ifdef __cplusplus
}
#endif
#endif
