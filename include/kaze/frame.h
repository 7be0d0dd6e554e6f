/*
 * kaze/frame.h — RFC 6455 §5 framing without I/O: a push parser that reads
 * frames out of the caller's buffer, a writer that builds frame headers into
 * the caller's buffer, masking, and close-frame payloads.
 *
 * Nothing here performs I/O, keeps global state or allocates on the hot
 * path. The parser allocates only in message mode, and only to reassemble a
 * message that arrived in pieces.
 */
#ifndef KAZE_FRAME_H
#define KAZE_FRAME_H

#include "kaze/common.h"
#include "kaze/utf8.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest frame header: 2 + 8 (64-bit length) + 4 (masking key). */
#define KZ_FRAME_HEADER_MAX 14
/* The largest payload of a control frame (ping, pong, close). */
#define KZ_CONTROL_PAYLOAD_MAX 125
/* The largest close reason: a control payload less the 2-byte code. */
#define KZ_CLOSE_REASON_MAX 123

/* RSV bits as they sit in the first header byte, shifted down: RSV1 = 4. */
#define KZ_RSV1 0x4u
#define KZ_RSV2 0x2u
#define KZ_RSV3 0x1u

/* ------------------------------------------------------------------------
 * Close codes (RFC 6455 §7.4, IANA "WebSocket Close Code Number Registry")
 */
enum kz_close_code {
    KZ_CLOSE_NORMAL = 1000,
    KZ_CLOSE_GOING_AWAY = 1001,
    KZ_CLOSE_PROTOCOL_ERROR = 1002,
    KZ_CLOSE_UNSUPPORTED = 1003,
    KZ_CLOSE_NO_STATUS = 1005, /* never on the wire: "the close frame had no code" */
    KZ_CLOSE_ABNORMAL = 1006,  /* never on the wire: "the connection dropped" */
    KZ_CLOSE_INVALID_DATA = 1007,
    KZ_CLOSE_POLICY = 1008,
    KZ_CLOSE_TOO_BIG = 1009,
    KZ_CLOSE_EXTENSION = 1010,
    KZ_CLOSE_INTERNAL_ERROR = 1011,
    KZ_CLOSE_SERVICE_RESTART = 1012,
    KZ_CLOSE_TRY_AGAIN_LATER = 1013,
    KZ_CLOSE_BAD_GATEWAY = 1014,
    KZ_CLOSE_TLS_HANDSHAKE = 1015, /* never on the wire */
};

/*
 * True if `code` may appear in a close frame on the wire, sent or received:
 * 1000–1003, 1007–1014 and 3000–4999. 0–999, 1004–1006, 1015, 1016–2999 and
 * 5000 up may not (1005, 1006 and 1015 are only for reporting).
 */
KZ_EXPORT bool kz_close_code_valid(uint32_t code);

/*
 * Parses a close frame's payload (already unmasked). An empty payload gives
 * *code = 1005 and an empty reason. Otherwise the first two bytes are the
 * code, which must be valid, and the rest a UTF-8 reason; *reason points
 * into `payload`. Returns KZ_OK, KZ_ERR_PROTO_CLOSE_PAYLOAD (one byte),
 * KZ_ERR_PROTO_CLOSE_CODE or KZ_ERR_INVALID_UTF8.
 */
KZ_EXPORT int kz_close_parse(const uint8_t *payload, size_t len, uint16_t *code,
                             struct kz_str *reason);

/* ------------------------------------------------------------------------
 * Masking (RFC 6455 §5.3)
 */

/*
 * XORs `len` bytes in place with the 4-byte `key`, starting at byte `offset`
 * of the key's cycle (the number of payload bytes of this frame already
 * masked, so that a payload can be masked in pieces). Returns the offset to
 * pass for the next piece. Word-at-a-time, SSE2 or AVX2 (chosen at run time).
 */
KZ_EXPORT size_t kz_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* As kz_mask(), but reads `src` and writes the masked bytes to `dst`. */
KZ_EXPORT size_t kz_mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                              size_t offset);

/* ------------------------------------------------------------------------
 * Writer
 */

/* The size of a frame header for a payload of `len` bytes, masked or not. */
KZ_EXPORT size_t kz_frame_header_size(uint64_t len, bool masked);

/*
 * Writes a frame header into `out` (room for KZ_FRAME_HEADER_MAX bytes) and
 * returns its size. `rsv` is a mask of KZ_RSV1/2/3; `mask_key` is NULL for
 * an unmasked frame (server role), else the 4-byte key the payload must be
 * masked with (kz_mask(), client role). The payload is not touched: send it
 * after the header, e.g. with writev. Lengths use the shortest encoding;
 * `len` must be below 2^63 (returns 0 otherwise, as for an opcode over 15).
 */
KZ_EXPORT size_t kz_frame_write_header(uint8_t *out, unsigned opcode, bool fin, unsigned rsv,
                                       uint64_t len, const uint8_t *mask_key);

/*
 * Writes a whole control frame — header and payload, masked if `mask_key` is
 * not NULL — into `out` (`cap` bytes; KZ_FRAME_HEADER_MAX + 125 always
 * suffice). Return the frame's size, KZ_ERR_INVALID_ARGUMENT if the payload
 * is over 125 bytes, KZ_ERR_BUFFER_TOO_SMALL if it does not fit.
 */
KZ_EXPORT int kz_frame_write_ping(uint8_t *out, size_t cap, const uint8_t *payload, size_t len,
                                  const uint8_t *mask_key);
KZ_EXPORT int kz_frame_write_pong(uint8_t *out, size_t cap, const uint8_t *payload, size_t len,
                                  const uint8_t *mask_key);

/*
 * Writes a close frame. `code` 0 sends an empty payload (no code, no reason:
 * `reason` must be empty); otherwise `code` must satisfy kz_close_code_valid()
 * and `reason` be valid UTF-8 of at most 123 bytes. Returns the frame's size,
 * KZ_ERR_INVALID_ARGUMENT (bad code, reason too long or with a code of 0),
 * KZ_ERR_INVALID_UTF8 or KZ_ERR_BUFFER_TOO_SMALL.
 */
KZ_EXPORT int kz_frame_write_close(uint8_t *out, size_t cap, uint16_t code, const char *reason,
                                   size_t reason_len, const uint8_t *mask_key);

/* ------------------------------------------------------------------------
 * Parser
 */

enum kz_parse_mode {
    /*
     * Data arrives as it comes: each KZ_EV_DATA event is a piece of a frame's
     * payload, unmasked and (for text) validated, pointing into the caller's
     * buffer. Nothing is copied or allocated. The caller reassembles, or
     * streams.
     */
    KZ_PARSE_FRAMES = 0,
    /*
     * Whole messages: one KZ_EV_MESSAGE per data message. A message that is
     * a single frame already whole in the caller's buffer is reported in
     * place (no copy); a fragmented message, or one that arrives over several
     * calls, is gathered in a buffer the parser owns, bounded by
     * max_message_size.
     */
    KZ_PARSE_MESSAGES = 1,
};

struct kz_parser_config {
    enum kz_role role; /* our role: a server requires masked frames */
    enum kz_parse_mode mode;
    uint64_t max_frame_size;   /* largest payload of one data frame; 0 = no limit */
    uint64_t max_message_size; /* largest message (sum of its frames); 0 = no limit */
    /*
     * RSV bits that a negotiated extension claimed (KZ_RSV1 for
     * permessage-deflate). They are allowed on the first frame of a data
     * message only; a text message with any of them set is not UTF-8
     * checked here (its bytes are the extension's, e.g. compressed), and
     * the event carries the bits. 0 (no extension) rejects every RSV bit.
     */
    unsigned rsv_allowed;
    bool skip_utf8; /* true: do not validate text (for a caller that does it itself) */
};

/*
 * Fills `cfg` with safe defaults for `role`: frames mode, 16 MiB maximum
 * frame and message, no extension, UTF-8 validated.
 */
KZ_EXPORT void kz_parser_config_default(struct kz_parser_config *cfg, enum kz_role role);

enum kz_event_type {
    KZ_EV_NONE = 0, /* nothing complete: keep the unconsumed bytes, add more, call again */
    KZ_EV_DATA,     /* frames mode: a piece of a data frame's payload */
    KZ_EV_MESSAGE,  /* messages mode: a whole data message */
    KZ_EV_PING,
    KZ_EV_PONG,
    KZ_EV_CLOSE,
};

/*
 * One thing the parser found. Pointers point into the buffer passed to the
 * call that produced the event, or (messages mode) into the parser's own
 * buffer, and stay valid until the next call on the parser, or until the
 * caller reuses its buffer, whichever is first.
 */
struct kz_event {
    enum kz_event_type type;
    uint8_t opcode; /* DATA, MESSAGE: KZ_OP_TEXT or KZ_OP_BINARY (of the message) */
    uint8_t rsv;    /* DATA, MESSAGE: RSV bits of the message's first frame */
    bool first;     /* DATA: the first piece of the message */
    bool frame_end; /* DATA: the last piece of this frame */
    bool fin;       /* DATA: the last piece of the message */
    uint8_t *data;  /* payload, unmasked (pings, pongs and close: the whole payload) */
    size_t len;
    uint64_t remaining;  /* DATA: payload bytes of this frame still to come after this piece */
    uint16_t close_code; /* CLOSE: the code, 1005 if the frame had none */
    struct kz_str close_reason; /* CLOSE: the reason, UTF-8, possibly empty */
};

struct kz_parser;

/*
 * Creates a parser. `cfg` NULL means kz_parser_config_default(KZ_ROLE_SERVER);
 * `alloc` NULL means malloc. Returns NULL if memory runs out or `cfg` is
 * invalid (a mode out of range).
 */
KZ_EXPORT struct kz_parser *kz_parser_new(const struct kz_parser_config *cfg,
                                          const struct kz_allocator *alloc);

/* Frees the parser and its message buffer. NULL is a no-op. */
KZ_EXPORT void kz_parser_free(struct kz_parser *p);

/* Forgets any partial frame or message, keeping the configuration. */
KZ_EXPORT void kz_parser_reset(struct kz_parser *p);

/*
 * Parses from `buf` (`len` bytes the caller received). Unmasks payload bytes
 * in place, which is why `buf` is not const. Returns the number of bytes
 * consumed (0..len) and fills *ev:
 *   - ev->type != KZ_EV_NONE: one event; call again with buf + consumed.
 *   - ev->type == KZ_EV_NONE: the bytes [consumed, len) are the start of a
 *     frame header or of a control frame whose payload is not all here (at
 *     most 2 + 8 + 4 + 125 bytes). Keep them, append what arrives next, and
 *     call again with the whole. Consumed bytes are never looked at again.
 * Or returns a negative kz_err: the peer broke the protocol (map it to a
 * close code with kz_err_close_code()), or KZ_ERR_NOMEM in messages mode.
 * The parser is then dead: every later call returns the same error, until
 * kz_parser_reset(). Events before the error were valid and are the
 * caller's to act on (deliver, echo) before failing the connection.
 *
 * Text is validated as its bytes arrive, across frames: a text message fails
 * with KZ_ERR_INVALID_UTF8 in the call that delivers the first byte that
 * cannot be part of valid UTF-8, and at its final frame if it ends mid
 * code point.
 */
KZ_EXPORT ptrdiff_t kz_parser_parse(struct kz_parser *p, uint8_t *buf, size_t len,
                                    struct kz_event *ev);

/* True while a data message has begun and not ended. */
KZ_EXPORT bool kz_parser_in_message(const struct kz_parser *p);

#ifdef __cplusplus
}
#endif
#endif
