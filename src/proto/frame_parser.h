/*
 * The frame parser's state, for code inside libkaze that embeds a parser in
 * a larger struct (a connection) instead of allocating it with
 * kz_parser_new(). Not installed; the public API is kaze/frame.h.
 */
#ifndef KZ_PROTO_FRAME_PARSER_H
#define KZ_PROTO_FRAME_PARSER_H

#include "kaze/frame.h"

/*
 * The first 56 bytes are all a frames-mode parser uses; the last three
 * fields exist for messages mode. The parser keeps a pointer to the
 * allocator, not a copy: whoever embeds the parser owns the allocator and
 * keeps it alive at least as long as the parser (kz_parser_new() stores it
 * in the same allocation).
 */
struct kz_parser {
    const struct kz_allocator *alloc; /* never NULL once initialised */
    uint64_t max_frame;               /* UINT64_MAX when the config said 0 (no limit) */
    uint64_t max_msg;                 /* likewise */
    uint64_t remaining;               /* payload bytes of the current data frame still to come */
    uint64_t msg_len;                 /* bytes of the open message, including the current frame */
    kz_utf8_state utf8;               /* validator state across the pieces of a text message */
    uint8_t key[4];                   /* masking key of the current data frame */
    int16_t err;                      /* 0, or the error that killed the parser */
    uint8_t cfg;                      /* KZP_CFG_* */
    uint8_t rsv_allowed;              /* RSV bits an extension claimed */
    uint8_t st;                       /* KZP_ST_* */
    uint8_t mask_off;                 /* position in the key cycle, 0..3 */
    uint8_t msg_op;                   /* KZ_OP_TEXT or KZ_OP_BINARY of the open message */
    uint8_t msg_rsv;                  /* RSV bits of the open message's first frame */
    /* messages mode: the message being gathered */
    uint8_t *mbuf;
    size_t mlen;
    size_t mcap;
};

/* kz_parser.cfg */
#define KZP_CFG_CLIENT    0x01u
#define KZP_CFG_MESSAGES  0x02u
#define KZP_CFG_SKIP_UTF8 0x04u

/* kz_parser.st */
#define KZP_ST_PAYLOAD 0x01u /* inside a data frame's payload */
#define KZP_ST_IN_MSG  0x02u /* a data message has begun and not ended */
#define KZP_ST_FIN     0x04u /* the current data frame ends its message */
#define KZP_ST_UTF8    0x08u /* the open message is validated as UTF-8 */
#define KZP_ST_FIRST   0x10u /* no piece of the open message handed out yet */

/*
 * Initialises a parser in memory the caller owns. `cfg` NULL means
 * kz_parser_config_default(KZ_ROLE_SERVER); `alloc` NULL means malloc, else
 * it must outlive the parser (it is not copied). Returns KZ_OK or
 * KZ_ERR_INVALID_ARGUMENT (role or mode out of range, an RSV mask above 7).
 * Allocates nothing.
 */
int kz_parser_init(struct kz_parser *p, const struct kz_parser_config *cfg,
                   const struct kz_allocator *alloc);

/*
 * Frees the message buffer; the memory of `p` itself stays the caller's.
 * (kz_parser_free() is only for parsers made by kz_parser_new().)
 * kz_parser_init() may be called again afterwards.
 */
void kz_parser_deinit(struct kz_parser *p);

#endif
