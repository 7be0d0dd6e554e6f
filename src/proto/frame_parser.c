/*
 * Push parser for RFC 6455 §5 frames.
 *
 * The parser never keeps bytes of its own except a message being gathered in
 * messages mode. A frame header is read straight from the caller's buffer,
 * and only once it is whole; a control frame only once it is whole (at most
 * 139 bytes stay with the caller). Data payload is unmasked in place and
 * handed out as it arrives, so frames mode never copies or allocates.
 *
 * Header checks run in a fixed order (first byte, second byte, extended
 * length, size limits) and each runs as soon as the bytes it needs are
 * present. The first error is therefore the same however the input is cut.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/frame_parser.h"

/*
 * A message buffer that grew past this is freed once its message has been
 * handed out, so an idle connection does not sit on a large allocation.
 */
#define KZP_KEEP_MAX (64u * 1024u)
/* The first allocation: small messages then never need a second one. */
#define KZP_MIN_CAP 1024u

#define KZP_DEFAULT_LIMIT (16u * 1024u * 1024u)

static void *std_malloc(size_t size, void *ud)
{
    (void)ud;
    return malloc(size);
}

static void *std_realloc(void *ptr, size_t size, void *ud)
{
    (void)ud;
    return realloc(ptr, size);
}

static void std_free(void *ptr, void *ud)
{
    (void)ud;
    free(ptr);
}

static const struct kz_allocator std_alloc = {std_malloc, std_realloc, std_free, NULL};

/* kz_parser_new() keeps the allocator copy next to the parser it serves. */
struct parser_box {
    struct kz_parser p;
    struct kz_allocator a;
};

void kz_parser_config_default(struct kz_parser_config *cfg, enum kz_role role)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->role = role;
    cfg->mode = KZ_PARSE_FRAMES;
    cfg->max_frame_size = KZP_DEFAULT_LIMIT;
    cfg->max_message_size = KZP_DEFAULT_LIMIT;
    cfg->rsv_allowed = 0;
    cfg->skip_utf8 = false;
}

int kz_parser_init(struct kz_parser *p, const struct kz_parser_config *cfg,
                   const struct kz_allocator *alloc)
{
    struct kz_parser_config def;
    if (!cfg) {
        kz_parser_config_default(&def, KZ_ROLE_SERVER);
        cfg = &def;
    }
    if ((unsigned)cfg->role > KZ_ROLE_CLIENT || (unsigned)cfg->mode > KZ_PARSE_MESSAGES ||
        cfg->rsv_allowed > (KZ_RSV1 | KZ_RSV2 | KZ_RSV3))
        return KZ_ERR_INVALID_ARGUMENT;
    if (alloc && (!alloc->malloc || !alloc->free))
        return KZ_ERR_INVALID_ARGUMENT;
    memset(p, 0, sizeof(*p));
    p->alloc = alloc ? alloc : &std_alloc;
    p->max_frame = cfg->max_frame_size ? cfg->max_frame_size : UINT64_MAX;
    p->max_msg = cfg->max_message_size ? cfg->max_message_size : UINT64_MAX;
    p->cfg = (uint8_t)((cfg->role == KZ_ROLE_CLIENT ? KZP_CFG_CLIENT : 0) |
                       (cfg->mode == KZ_PARSE_MESSAGES ? KZP_CFG_MESSAGES : 0) |
                       (cfg->skip_utf8 ? KZP_CFG_SKIP_UTF8 : 0));
    p->rsv_allowed = (uint8_t)cfg->rsv_allowed;
    return KZ_OK;
}

static void drop_buffer(struct kz_parser *p)
{
    if (p->mbuf)
        p->alloc->free(p->mbuf, p->alloc->ud);
    p->mbuf = NULL;
    p->mlen = 0;
    p->mcap = 0;
}

void kz_parser_deinit(struct kz_parser *p)
{
    drop_buffer(p);
}

struct kz_parser *kz_parser_new(const struct kz_parser_config *cfg,
                                const struct kz_allocator *alloc)
{
    const struct kz_allocator *a = alloc ? alloc : &std_alloc;
    if (!a->malloc || !a->free)
        return NULL;
    struct parser_box *b = a->malloc(sizeof(*b), a->ud);
    if (!b)
        return NULL;
    b->a = *a;
    if (kz_parser_init(&b->p, cfg, &b->a) != KZ_OK) {
        b->a.free(b, b->a.ud);
        return NULL;
    }
    return &b->p;
}

void kz_parser_free(struct kz_parser *p)
{
    if (!p)
        return;
    struct parser_box *b = (struct parser_box *)p;
    struct kz_allocator a = b->a;
    kz_parser_deinit(p);
    a.free(b, a.ud);
}

void kz_parser_reset(struct kz_parser *p)
{
    p->err = 0;
    p->st = 0;
    p->remaining = 0;
    p->msg_len = 0;
    p->utf8 = KZ_UTF8_ACCEPT;
    p->mask_off = 0;
    p->msg_op = 0;
    p->msg_rsv = 0;
    p->mlen = 0;
    if (p->mcap > KZP_KEEP_MAX)
        drop_buffer(p);
}

bool kz_parser_in_message(const struct kz_parser *p)
{
    return (p->st & KZP_ST_IN_MSG) != 0;
}

static ptrdiff_t fail(struct kz_parser *p, int err)
{
    p->err = (int16_t)err;
    return err;
}

/* Makes room for `need` bytes of message, growing by doubling. */
static int reserve(struct kz_parser *p, size_t need)
{
    /*
     * Never beyond what the message may hold; and at its final frame the
     * exact size is known, so do not overshoot it.
     */
    uint64_t limit = (p->st & KZP_ST_FIN) ? p->msg_len : p->max_msg;
    if (limit > SIZE_MAX)
        limit = SIZE_MAX;
    size_t cap = p->mcap > limit / 2 ? (size_t)limit : p->mcap * 2;
    if (cap < KZP_MIN_CAP)
        cap = KZP_MIN_CAP;
    if (cap > limit)
        cap = (size_t)limit;
    if (cap < need)
        cap = need;
    const struct kz_allocator *a = p->alloc;
    uint8_t *nb;
    if (p->mbuf && a->realloc) {
        nb = a->realloc(p->mbuf, cap, a->ud);
        if (!nb)
            return KZ_ERR_NOMEM;
    } else {
        nb = a->malloc(cap, a->ud);
        if (!nb)
            return KZ_ERR_NOMEM;
        if (p->mbuf) {
            memcpy(nb, p->mbuf, p->mlen);
            a->free(p->mbuf, a->ud);
        }
    }
    p->mbuf = nb;
    p->mcap = cap;
    return KZ_OK;
}

/* Messages mode: appends `n` payload bytes, unmasking them on the copy. */
static int gather(struct kz_parser *p, const uint8_t *src, size_t n)
{
    size_t need = p->mlen + n;
    if (need > p->mcap) {
        int rc = reserve(p, need);
        if (rc != KZ_OK)
            return rc;
    }
    uint8_t *dst = p->mbuf + p->mlen;
    if (p->cfg & KZP_CFG_CLIENT)
        memcpy(dst, src, n);
    else
        p->mask_off = (uint8_t)(kz_mask_copy(dst, src, n, p->key, p->mask_off) & 3);
    if ((p->st & KZP_ST_UTF8) && kz_utf8_feed(&p->utf8, dst, n) != KZ_OK)
        return KZ_ERR_INVALID_UTF8;
    p->mlen = need;
    return KZ_OK;
}

static void end_message(struct kz_parser *p)
{
    p->st &= (uint8_t) ~(KZP_ST_IN_MSG | KZP_ST_FIRST | KZP_ST_UTF8 | KZP_ST_FIN);
    p->msg_len = 0;
}

static void message_event(struct kz_parser *p, struct kz_event *ev, uint8_t *data, size_t len)
{
    *ev = (struct kz_event){
        .type = KZ_EV_MESSAGE,
        .opcode = p->msg_op,
        .rsv = p->msg_rsv,
        .first = true,
        .frame_end = true,
        .fin = true,
        .data = data,
        .len = len,
    };
    end_message(p);
}

/*
 * Messages mode, final frame done: hands out the gathered message. The
 * buffer keeps its bytes until the next call (the event points there);
 * mlen is already 0 so that the next call may reuse or free it.
 * `here` stands in for the data pointer of an empty message, which may
 * have no buffer at all.
 */
static ptrdiff_t gathered_message(struct kz_parser *p, struct kz_event *ev, uint8_t *here,
                                  size_t pos)
{
    if ((p->st & KZP_ST_UTF8) && kz_utf8_finish(p->utf8) != KZ_OK)
        return fail(p, KZ_ERR_INVALID_UTF8);
    message_event(p, ev, p->mlen ? p->mbuf : here, p->mlen);
    p->mlen = 0;
    return (ptrdiff_t)pos;
}

/* Frames mode: one piece of payload, already unmasked and fed to UTF-8. */
static ptrdiff_t data_event(struct kz_parser *p, struct kz_event *ev, uint8_t *data, size_t len,
                            bool frame_end, size_t pos)
{
    bool fin = frame_end && (p->st & KZP_ST_FIN);
    if (fin && (p->st & KZP_ST_UTF8) && kz_utf8_finish(p->utf8) != KZ_OK)
        return fail(p, KZ_ERR_INVALID_UTF8);
    *ev = (struct kz_event){
        .type = KZ_EV_DATA,
        .opcode = p->msg_op,
        .rsv = p->msg_rsv,
        .first = (p->st & KZP_ST_FIRST) != 0,
        .frame_end = frame_end,
        .fin = fin,
        .data = data,
        .len = len,
        .remaining = p->remaining,
    };
    p->st &= (uint8_t)~KZP_ST_FIRST;
    if (fin)
        end_message(p);
    return (ptrdiff_t)pos;
}

static ptrdiff_t control_event(struct kz_parser *p, struct kz_event *ev, unsigned op, uint8_t *data,
                               size_t len, size_t pos)
{
    *ev = (struct kz_event){
        .opcode = (uint8_t)op,
        .data = data,
        .len = len,
    };
    if (op == KZ_OP_PING) {
        ev->type = KZ_EV_PING;
    } else if (op == KZ_OP_PONG) {
        ev->type = KZ_EV_PONG;
    } else {
        int rc = kz_close_parse(data, len, &ev->close_code, &ev->close_reason);
        if (rc != KZ_OK) {
            ev->type = KZ_EV_NONE;
            return fail(p, rc);
        }
        ev->type = KZ_EV_CLOSE;
    }
    return (ptrdiff_t)pos;
}

static uint64_t load_be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

ptrdiff_t kz_parser_parse(struct kz_parser *p, uint8_t *buf, size_t len, struct kz_event *ev)
{
    ev->type = KZ_EV_NONE;
    if (p->err)
        return p->err;
    /* The previous call may have handed out a big gathered message. */
    if (p->mcap > KZP_KEEP_MAX && p->mlen == 0)
        drop_buffer(p);

    const bool client = (p->cfg & KZP_CFG_CLIENT) != 0;
    const bool messages = (p->cfg & KZP_CFG_MESSAGES) != 0;
    size_t pos = 0;
    for (;;) {
        size_t avail = len - pos;
        if (p->st & KZP_ST_PAYLOAD) {
            if (avail == 0)
                return (ptrdiff_t)pos;
            size_t n = p->remaining < avail ? (size_t)p->remaining : avail;
            uint8_t *d = buf + pos;
            pos += n;
            p->remaining -= n;
            bool frame_end = p->remaining == 0;
            if (frame_end)
                p->st &= (uint8_t)~KZP_ST_PAYLOAD;
            if (messages) {
                /* Copied out unmasked: the caller's bytes are left as they came. */
                int rc = gather(p, d, n);
                if (rc != KZ_OK)
                    return fail(p, rc);
                if (!frame_end || !(p->st & KZP_ST_FIN))
                    continue;
                return gathered_message(p, ev, buf + pos, pos);
            }
            if (!client)
                p->mask_off = (uint8_t)(kz_mask(d, n, p->key, p->mask_off) & 3);
            if ((p->st & KZP_ST_UTF8) && kz_utf8_feed(&p->utf8, d, n) != KZ_OK)
                return fail(p, KZ_ERR_INVALID_UTF8);
            return data_event(p, ev, d, n, frame_end, pos);
        }

        /*
         * A header. Nothing is consumed until all of it is here, but each
         * check runs as soon as its bytes are: a peer sending garbage is
         * failed on its first byte, not after we wait for more.
         */
        if (avail == 0)
            return (ptrdiff_t)pos;
        uint8_t *h = buf + pos;
        unsigned op = h[0] & 0x0Fu;
        unsigned rsv = (h[0] >> 4) & 0x7u;
        bool fin = (h[0] & 0x80u) != 0;
        bool in_msg = (p->st & KZP_ST_IN_MSG) != 0;
        if (op & 0x8u) {
            if (op > KZ_OP_PONG)
                return fail(p, KZ_ERR_PROTO_OPCODE);
            if (!fin)
                return fail(p, KZ_ERR_PROTO_CONTROL_FRAGMENTED);
            if (rsv)
                return fail(p, KZ_ERR_PROTO_RSV);
        } else if (op == KZ_OP_CONTINUATION) {
            if (!in_msg)
                return fail(p, KZ_ERR_PROTO_UNEXPECTED_CONTINUATION);
            if (rsv)
                return fail(p, KZ_ERR_PROTO_RSV);
        } else {
            if (op > KZ_OP_BINARY)
                return fail(p, KZ_ERR_PROTO_OPCODE);
            if (in_msg)
                return fail(p, KZ_ERR_PROTO_EXPECTED_CONTINUATION);
            if (rsv & ~(unsigned)p->rsv_allowed)
                return fail(p, KZ_ERR_PROTO_RSV);
        }
        if (avail < 2)
            return (ptrdiff_t)pos;

        bool masked = (h[1] & 0x80u) != 0;
        if (masked == client)
            return fail(p, masked ? KZ_ERR_PROTO_MASKED : KZ_ERR_PROTO_UNMASKED);
        uint64_t plen = h[1] & 0x7Fu;
        size_t hl = masked ? 6 : 2;
        if (plen >= 126) {
            if (op & 0x8u)
                return fail(p, KZ_ERR_PROTO_CONTROL_TOO_LONG);
            if (plen == 126) {
                if (avail < 4)
                    return (ptrdiff_t)pos;
                plen = (uint64_t)h[2] << 8 | h[3];
                if (plen < 126)
                    return fail(p, KZ_ERR_PROTO_LENGTH);
                hl += 2;
            } else {
                if (avail < 10)
                    return (ptrdiff_t)pos;
                plen = load_be64(h + 2);
                if (plen >> 63 || plen <= 0xFFFF)
                    return fail(p, KZ_ERR_PROTO_LENGTH);
                hl += 8;
            }
        }
        /* Control frames have their own bound (125), whatever the data limit. */
        if (plen > p->max_frame && !(op & 0x8u))
            return fail(p, KZ_ERR_FRAME_TOO_BIG);

        if (op & 0x8u) {
            /* Small by now (≤ 125): wait until the whole frame is here. */
            if (avail < hl || avail - hl < plen)
                return (ptrdiff_t)pos;
            uint8_t *d = h + hl;
            if (masked && plen)
                kz_mask(d, (size_t)plen, h + hl - 4, 0);
            pos += hl + (size_t)plen;
            return control_event(p, ev, op, d, (size_t)plen, pos);
        }

        /* msg_len is 0 unless a message is open, so this covers both cases. */
        if (plen > p->max_msg - p->msg_len)
            return fail(p, KZ_ERR_MESSAGE_TOO_BIG);
        if (avail < hl)
            return (ptrdiff_t)pos;

        if (op != KZ_OP_CONTINUATION) {
            p->msg_op = (uint8_t)op;
            p->msg_rsv = (uint8_t)rsv;
            p->utf8 = KZ_UTF8_ACCEPT;
            /* RSV bits mean an extension owns the bytes (e.g. compressed). */
            bool check = op == KZ_OP_TEXT && rsv == 0 && !(p->cfg & KZP_CFG_SKIP_UTF8);
            p->st |= (uint8_t)(KZP_ST_IN_MSG | KZP_ST_FIRST | (check ? KZP_ST_UTF8 : 0));
        }
        if (fin)
            p->st |= KZP_ST_FIN;
        else
            p->st &= (uint8_t)~KZP_ST_FIN;
        p->msg_len += plen;
        if (masked)
            memcpy(p->key, h + hl - 4, 4);
        p->mask_off = 0;
        pos += hl;
        uint8_t *d = buf + pos;
        avail -= hl;

        if (messages) {
            /* Gathering would only copy a message that is already whole here. */
            if (op != KZ_OP_CONTINUATION && fin && plen <= avail) {
                /* A whole single-frame message: hand it out in place. */
                size_t n = (size_t)plen;
                if (masked && n)
                    kz_mask(d, n, p->key, 0);
                if ((p->st & KZP_ST_UTF8) && n && !kz_utf8_valid(d, n))
                    return fail(p, KZ_ERR_INVALID_UTF8);
                message_event(p, ev, d, n);
                return (ptrdiff_t)(pos + n);
            }
            if (plen == 0) {
                if (!fin)
                    continue;
                return gathered_message(p, ev, d, pos);
            }
            p->remaining = plen;
            p->st |= KZP_ST_PAYLOAD;
            continue;
        }
        if (plen == 0)
            return data_event(p, ev, d, 0, true, pos);
        p->remaining = plen;
        p->st |= KZP_ST_PAYLOAD;
    }
}
