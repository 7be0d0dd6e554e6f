/*
 * kaze/deflate.h — permessage-deflate (RFC 7692) without I/O: negotiating
 * the extension in the opening handshake, and compressing and inflating
 * message payloads with zlib.
 *
 * A compressed message has RSV1 set on its first frame; its payload, across
 * all its frames, is one raw DEFLATE stream ending in an empty stored block
 * whose last four bytes (00 00 ff ff) are left off on the wire (§7.2.1).
 * The frame parser leaves such payloads alone (struct kz_parser_config's
 * rsv_allowed = KZ_RSV1): the connection feeds them to a kz_inflater, which
 * puts the tail back, bounds the inflated size and hands out plain bytes,
 * which are then checked as UTF-8 if the message is text.
 */
#ifndef KAZE_DEFLATE_H
#define KAZE_DEFLATE_H

#include "kaze/common.h"
#include "kaze/handshake.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Negotiation (RFC 7692 §5, §7.1)
 */

/* Room for the longest answer kz_pmd_negotiate writes, with its NUL. */
#define KZ_PMD_ELEMENT_MAX 160

/* The parameters in force on one connection once the handshake is done. */
struct kz_pmd_params {
    bool server_no_context_takeover; /* the server resets its compressor after each message */
    bool client_no_context_takeover; /* the client resets its compressor after each message */
    uint8_t server_max_window_bits;  /* LZ77 window of the server's compressor, 8..15 */
    uint8_t client_max_window_bits;  /* LZ77 window of the client's compressor, 8..15 */
};

/* What a server is willing to agree to. kz_pmd_policy_default() fills it. */
struct kz_pmd_policy {
    bool enabled;
    /*
     * Our own compressor's window (9..15; 8 is sent as 9, since zlib cannot
     * make a raw 8-bit window). Smaller windows cost less memory per
     * connection. We answer server_max_window_bits when below 15 or when
     * the client asked for less.
     */
    uint8_t server_max_window_bits;
    /* Reset our compressor after each message (always answered when set). */
    bool server_no_context_takeover;
    /* Ask the client to reset its compressor after each message. */
    bool client_no_context_takeover;
    /*
     * The largest window we accept for the client's compressor, i.e. for our
     * inflater (8..15). Below 15 it is only possible if the client offered
     * client_max_window_bits; an offer without it is then declined.
     */
    uint8_t client_max_window_bits;
};

/* Enabled, windows 15, context takeover both ways: what browsers expect. */
KZ_EXPORT void kz_pmd_policy_default(struct kz_pmd_policy *pol);

/*
 * Server side. Reads the client's permessage-deflate offers from the
 * request's Sec-WebSocket-Extensions headers, in order of preference, and
 * takes the first one that is valid and that `pol` can accept. An invalid
 * offer (an unknown parameter, a parameter twice, a window outside 8..15, a
 * value where none belongs: §7) is declined, and the next offer is tried
 * (§5). A disabled policy returns 0 without reading the header.
 * On success writes the response's extension element (e.g.
 * "permessage-deflate; client_max_window_bits=15") NUL-terminated into `resp`
 * (`cap` bytes; KZ_PMD_ELEMENT_MAX always suffice), fills `out`, and returns 1. Returns 0
 * if no offer was acceptable (the connection goes on without compression),
 * KZ_ERR_HS_BAD_EXTENSIONS if the header breaks the §9.1 grammar,
 * KZ_ERR_BUFFER_TOO_SMALL, or KZ_ERR_INVALID_ARGUMENT (NULL, or a policy
 * window outside 8..15).
 */
KZ_EXPORT int kz_pmd_negotiate(const struct kz_hs_request *req, const struct kz_pmd_policy *pol,
                               struct kz_pmd_params *out, char *resp, size_t cap);

/* What a client offers. */
struct kz_pmd_offer {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    uint8_t server_max_window_bits;   /* 0: not offered (the server may use 15) */
    uint8_t client_max_window_bits;   /* 0: not offered; 15 with no value is written as bare */
    bool client_max_window_bits_bare; /* offer "client_max_window_bits" with no value (window 0 or
                                         15) */
};

/* Chromium's offer: "permessage-deflate; client_max_window_bits". */
KZ_EXPORT void kz_pmd_offer_default(struct kz_pmd_offer *offer);

/*
 * Client side. Writes the offer as a Sec-WebSocket-Extensions value,
 * NUL-terminated. Returns its length, KZ_ERR_BUFFER_TOO_SMALL or
 * KZ_ERR_INVALID_ARGUMENT (a window outside 8..15).
 */
KZ_EXPORT int kz_pmd_write_offer(char *out, size_t cap, const struct kz_pmd_offer *offer);

/*
 * Client side. Judges the server's Sec-WebSocket-Extensions answer against
 * what was offered (§7.1): returns 1 and fills `out` if the server accepted
 * permessage-deflate with valid parameters, 0 if it did not answer it, or
 * KZ_ERR_HS_RESP_EXTENSION (a malformed answer, an unknown or repeated
 * parameter, a window outside 8..15, server_max_window_bits larger than
 * offered, client_max_window_bits when the offer did not have it, an offered
 * server_no_context_takeover or server_max_window_bits left unanswered, or
 * the extension twice), or KZ_ERR_INVALID_ARGUMENT.
 */
KZ_EXPORT int kz_pmd_check_response(const struct kz_header *headers, size_t num_headers,
                                    const struct kz_pmd_offer *offer, struct kz_pmd_params *out);

/* ------------------------------------------------------------------------
 * Compression (RFC 7692 §7.2)
 */

/*
 * One direction's compressor. `window_bits` 9..15 (8 is taken as 9),
 * `level` 0..9 (zlib's; 1 is fast and still good on text), `mem_level`
 * 1..9 (zlib's; 8 is its default, lower uses less memory). With
 * `no_context_takeover` the LZ77 window is reset after each message and
 * zlib's state is released between messages, so an idle connection holds
 * none of it.
 */
struct kz_deflater;

struct kz_deflate_config {
    uint8_t window_bits;
    uint8_t level;
    uint8_t mem_level;
    bool no_context_takeover;
};

KZ_EXPORT struct kz_deflater *kz_deflater_new(const struct kz_deflate_config *cfg,
                                              const struct kz_allocator *alloc);
KZ_EXPORT void kz_deflater_free(struct kz_deflater *d);

/*
 * Compresses one whole message payload. On success *out points to the
 * compressed bytes, with the 00 00 ff ff tail already removed, in a buffer
 * the deflater owns, valid until the next call on `d` (or kz_deflater_trim);
 * returns KZ_OK. Returns KZ_ERR_NOMEM (the deflater stays usable) or
 * KZ_ERR_INVALID_ARGUMENT (NULL with a nonzero length). An empty payload
 * compresses to the single byte 00 (§7.2.3.6).
 */
KZ_EXPORT int kz_deflate_message(struct kz_deflater *d, const uint8_t *in, size_t len,
                                 const uint8_t **out, size_t *out_len);

/*
 * Gives back what an idle deflater need not hold: its output buffer, and
 * zlib's whole state when there is no context takeover. The next message
 * allocates again. Call it once the compressed bytes have been copied out.
 */
KZ_EXPORT void kz_deflater_trim(struct kz_deflater *d);

/* Bytes of memory the deflater holds now (zlib's state and its buffer). */
KZ_EXPORT size_t kz_deflater_memory(const struct kz_deflater *d);

/*
 * One direction's decompressor. `window_bits` 8..15 is the peer's
 * negotiated window (8 is inflated with 9, which zlib accepts for 8-bit
 * streams); `max_message` bounds the inflated size of one message (0: no
 * bound). With `no_context_takeover` the peer resets its window after each
 * message, so ours is released between messages.
 */
struct kz_inflater;

struct kz_inflate_config {
    uint8_t window_bits;
    bool no_context_takeover;
    uint64_t max_message;
};

KZ_EXPORT struct kz_inflater *kz_inflater_new(const struct kz_inflate_config *cfg,
                                              const struct kz_allocator *alloc);
KZ_EXPORT void kz_inflater_free(struct kz_inflater *i);

/*
 * Inflates the next piece of a compressed message's payload, as the frame
 * parser delivers it; `fin` says this piece ends the message (then the
 * 00 00 ff ff tail is put back and the message's stream is flushed). The
 * inflated bytes are appended to a buffer the inflater owns, which grows
 * with the message but never beyond `max_message`; *out and *out_len give
 * the new bytes of this call (for UTF-8 checking as they come), and
 * kz_inflater_message() the whole message so far. After a call with `fin`
 * the message is complete; the next call starts a new one. Buffers stay
 * valid until the next call on `i` or kz_inflater_trim().
 * Returns KZ_OK; KZ_ERR_MESSAGE_TOO_BIG when the inflated size would pass
 * the bound (detected before the memory is allocated: a decompression bomb
 * costs no more than the bound); KZ_ERR_INFLATE when the bytes are not a
 * valid DEFLATE stream; KZ_ERR_NOMEM. After an error the inflater is dead
 * until kz_inflater_reset().
 */
KZ_EXPORT int kz_inflate_piece(struct kz_inflater *i, const uint8_t *in, size_t len, bool fin,
                               const uint8_t **out, size_t *out_len);

/* The whole message inflated so far (after `fin`: the complete message). */
KZ_EXPORT void kz_inflater_message(const struct kz_inflater *i, const uint8_t **data, size_t *len);

/*
 * Gives back what an idle inflater need not hold: the message buffer, and
 * zlib's state and window when there is no context takeover. Call it once
 * a complete message has been delivered.
 */
KZ_EXPORT void kz_inflater_trim(struct kz_inflater *i);

/* Forgets any partial message, and the window too; revives a dead inflater. */
KZ_EXPORT void kz_inflater_reset(struct kz_inflater *i);

/* Bytes of memory the inflater holds now (zlib's state, window and output). */
KZ_EXPORT size_t kz_inflater_memory(const struct kz_inflater *i);

#ifdef __cplusplus
}
#endif
#endif
