/*
 * Frame parser: every rule of RFC 6455 §5, fed whole, one byte at a time,
 * at every split point and in pseudo-random chunks, in frames mode and in
 * messages mode, with each parser input ending at a guard page.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/frame.h"
#include "proto/frame_parser.h"
#include "helpers.h"

/* ------------------------------------------------------------------------
 * Building inputs
 */

static const uint8_t key0[4] = {0x37, 0xfa, 0x21, 0x3d};

#define WIRE_CAP (1u << 18)
static uint8_t wire[WIRE_CAP];
static size_t wire_len;

static void w_reset(void)
{
    wire_len = 0;
}

/* Appends raw bytes given in hex. */
static void w_hex(const char *hex)
{
    wire_len += kzt_hex(hex, wire + wire_len, WIRE_CAP - wire_len);
}

/*
 * Appends a frame with the shortest length encoding. `b0` is the first
 * header byte as on the wire (FIN | RSV | opcode); the payload is masked
 * with key0 when `masked`.
 */
static void w_frame(uint8_t b0, bool masked, const void *payload, size_t len)
{
    assert_true(wire_len + KZ_FRAME_HEADER_MAX + len <= WIRE_CAP);
    uint8_t *o = wire + wire_len;
    size_t n = 0;
    uint8_t m = masked ? 0x80 : 0;
    o[n++] = b0;
    if (len < 126) {
        o[n++] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        o[n++] = m | 126;
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    } else {
        o[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            o[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (masked) {
        memcpy(o + n, key0, 4);
        n += 4;
    }
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        o[n + i] = (uint8_t)(src[i] ^ (masked ? key0[i & 3] : 0));
    wire_len += n + len;
}

/* Server role receives masked frames: the usual case in these tests. */
static void w_masked(uint8_t b0, const char *payload)
{
    w_frame(b0, true, payload, strlen(payload));
}

/* ------------------------------------------------------------------------
 * Expected events and the harness
 */

struct xev {
    enum kz_event_type type; /* KZ_EV_MESSAGE stands for DATA pieces too */
    uint8_t opcode;
    uint8_t rsv;
    uint16_t code;    /* CLOSE */
    const void *data; /* MESSAGE, PING, PONG: payload; CLOSE: reason */
    size_t len;
};

/* clang-format off */
#define TEXT(s)     {KZ_EV_MESSAGE, KZ_OP_TEXT, 0, 0, s, sizeof(s) - 1}
#define BIN(p, n)   {KZ_EV_MESSAGE, KZ_OP_BINARY, 0, 0, p, n}
#define PING(s)     {KZ_EV_PING, KZ_OP_PING, 0, 0, s, sizeof(s) - 1}
#define PONG(s)     {KZ_EV_PONG, KZ_OP_PONG, 0, 0, s, sizeof(s) - 1}
#define CLOSE(c, s) {KZ_EV_CLOSE, KZ_OP_CLOSE, 0, c, s, sizeof(s) - 1}
#define NX(a)       (sizeof(a) / sizeof((a)[0]))
/* clang-format on */

/* An event as recorded: DATA pieces are joined into one message. */
struct rec {
    enum kz_event_type type;
    uint8_t opcode, rsv;
    uint16_t code;
    uint8_t *data;
    size_t len;
};

#define MAX_REC 64

struct run {
    struct rec ev[MAX_REC];
    size_t n;
    int err;         /* 0 or the error the parser died of */
    size_t err_at;   /* input bytes fed when the error came */
    size_t leftover; /* bytes left unconsumed at the end */
    bool in_message;
    /* frames mode: the message being joined */
    uint8_t *acc;
    size_t acc_len, acc_cap;
    bool acc_open;
    uint8_t acc_op, acc_rsv;
};

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ev[i].data);
    free(r->acc);
    memset(r, 0, sizeof(*r));
}

static void push(struct run *r, enum kz_event_type type, uint8_t op, uint8_t rsv, uint16_t code,
                 const void *data, size_t len)
{
    assert_true(r->n < MAX_REC);
    struct rec *e = &r->ev[r->n++];
    e->type = type;
    e->opcode = op;
    e->rsv = rsv;
    e->code = code;
    e->data = malloc(len + 1);
    assert_non_null(e->data);
    if (len)
        memcpy(e->data, data, len);
    e->len = len;
}

static void record(struct run *r, const struct kz_event *ev)
{
    switch (ev->type) {
    case KZ_EV_DATA:
        /* `first` exactly on a message's first piece, one type throughout. */
        assert_int_equal(ev->first, !r->acc_open);
        assert_true(ev->frame_end || !ev->fin);
        assert_true(ev->opcode == KZ_OP_TEXT || ev->opcode == KZ_OP_BINARY);
        if (r->acc_open) {
            assert_int_equal(ev->opcode, r->acc_op);
            assert_int_equal(ev->rsv, r->acc_rsv);
        }
        r->acc_open = true;
        r->acc_op = ev->opcode;
        r->acc_rsv = ev->rsv;
        if (r->acc_len + ev->len > r->acc_cap) {
            r->acc_cap = (r->acc_len + ev->len) * 2;
            r->acc = realloc(r->acc, r->acc_cap);
            assert_non_null(r->acc);
        }
        if (ev->len)
            memcpy(r->acc + r->acc_len, ev->data, ev->len);
        r->acc_len += ev->len;
        if (ev->fin) {
            push(r, KZ_EV_MESSAGE, r->acc_op, r->acc_rsv, 0, r->acc, r->acc_len);
            r->acc_len = 0;
            r->acc_open = false;
        }
        break;
    case KZ_EV_MESSAGE:
        push(r, KZ_EV_MESSAGE, ev->opcode, ev->rsv, 0, ev->data, ev->len);
        break;
    case KZ_EV_PING:
    case KZ_EV_PONG:
        push(r, ev->type, ev->opcode, 0, 0, ev->data, ev->len);
        break;
    case KZ_EV_CLOSE:
        push(r, ev->type, ev->opcode, 0, ev->close_code, ev->close_reason.ptr,
             ev->close_reason.len);
        break;
    default:
        fail_msg("unexpected event type %d", ev->type);
    }
}

static bool within(const uint8_t *p, size_t len, const uint8_t *lo, const uint8_t *hi)
{
    return p && p >= lo && p <= hi && len <= (size_t)(hi - p);
}

/*
 * Feeds `in` to a new parser in chunks that end at ends[0..nends), the way
 * a connection does: unconsumed bytes stay, the next chunk is appended, and
 * the parser sees the whole as one buffer ending at a guard page.
 */
static void feed(const struct kz_parser_config *cfg, const uint8_t *in, size_t len,
                 const size_t *ends, size_t nends, struct run *r)
{
    memset(r, 0, sizeof(*r));
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_parser *p = kz_parser_new(cfg, &fa.alloc);
    assert_non_null(p);
    uint8_t pending[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    size_t npend = 0, fed = 0;
    /* One guarded region per run; each buffer is placed to end at the guard. */
    size_t cap = len + sizeof(pending) + 1;
    uint8_t *zero = calloc(1, cap);
    assert_non_null(zero);
    uint8_t *region = kzt_guard_copy(zero, cap);
    free(zero);
    for (size_t c = 0; c < nends && !r->err; c++) {
        size_t end = ends[c];
        size_t total = npend + (end - fed);
        uint8_t *g = region + cap - total;
        memcpy(g, pending, npend);
        memcpy(g + npend, in + fed, end - fed);
        fed = end;
        size_t off = 0;
        for (;;) {
            struct kz_event ev;
            memset(&ev, 0xA5, sizeof(ev));
            ptrdiff_t n = kz_parser_parse(p, g + off, total - off, &ev);
            if (n < 0) {
                r->err = (int)n;
                r->err_at = end;
                /* Dead: the same answer again, whatever the input. */
                struct kz_event ev2;
                assert_int_equal(kz_parser_parse(p, g + off, total - off, &ev2), n);
                assert_int_equal(kz_parser_parse(p, NULL, 0, &ev2), n);
                assert_int_equal(ev2.type, KZ_EV_NONE);
                break;
            }
            assert_true((size_t)n <= total - off);
            if (ev.type != KZ_EV_NONE) {
                bool in_input = within(ev.data, ev.len, g + off, g + total);
                bool in_own = p->mbuf && within(ev.data, ev.len, p->mbuf, p->mbuf + p->mcap);
                assert_true(in_input || in_own);
                if (ev.type == KZ_EV_CLOSE)
                    assert_true(within((const uint8_t *)ev.close_reason.ptr, ev.close_reason.len,
                                       ev.data, ev.data + ev.len));
            }
            off += (size_t)n;
            if (ev.type == KZ_EV_NONE)
                break;
            record(r, &ev);
        }
        if (!r->err) {
            npend = total - off;
            /* The most a caller ever keeps: a header and a control payload. */
            assert_true(npend <= sizeof(pending));
            memcpy(pending, g + off, npend);
        }
    }
    r->leftover = npend;
    r->in_message = kz_parser_in_message(p);
    kzt_guard_free(region, cap);
    kz_parser_free(p);
    assert_int_equal(fa.live, 0);
}

struct expect {
    const struct xev *ev;
    size_t nev;
    int err;        /* 0: no error */
    int close_code; /* what kz_err_close_code(err) must give */
    size_t fail_at; /* input bytes needed to see the error; 0 = all */
    size_t leftover;
};

static void compare(const struct run *r, const struct expect *x, const char *how)
{
    if (r->err != x->err)
        fail_msg("%s: error %d, expected %d", how, r->err, x->err);
    if (r->n != x->nev)
        fail_msg("%s: %zu events, expected %zu", how, r->n, x->nev);
    for (size_t i = 0; i < r->n; i++) {
        const struct rec *e = &r->ev[i];
        const struct xev *w = &x->ev[i];
        if (e->type != w->type || e->opcode != w->opcode || e->rsv != w->rsv ||
            e->code != w->code || e->len != w->len || memcmp(e->data, w->data, w->len) != 0)
            fail_msg("%s: event %zu differs (type %d/%d op %d/%d len %zu/%zu)", how, i, e->type,
                     w->type, e->opcode, w->opcode, e->len, w->len);
    }
    if (!x->err && r->leftover != x->leftover)
        fail_msg("%s: %zu bytes left over, expected %zu", how, r->leftover, x->leftover);
}

/* The chunk that holds input byte fail_at - 1 is the one that must fail. */
static void check_fail_point(const struct run *r, const struct expect *x, const size_t *ends,
                             size_t nends, size_t len, const char *how)
{
    if (!x->err)
        return;
    size_t need = x->fail_at ? x->fail_at : len;
    for (size_t i = 0; i < nends; i++) {
        if (ends[i] >= need) {
            if (r->err_at != ends[i])
                fail_msg("%s: failed after %zu bytes, expected after %zu", how, r->err_at, ends[i]);
            return;
        }
    }
    fail_msg("%s: fail point beyond the input", how);
}

static void run_one(const struct kz_parser_config *cfg, const uint8_t *in, size_t len,
                    const size_t *ends, size_t nends, const struct expect *x, const char *how)
{
    struct run r;
    feed(cfg, in, len, ends, nends, &r);
    compare(&r, x, how);
    check_fail_point(&r, x, ends, nends, len, how);
    run_free(&r);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/*
 * The harness: the wire as built, against `x`, in both modes, whole, one
 * byte at a time, split in two at every point (a sample of points for
 * large inputs), and in a few pseudo-random chunkings.
 */
static void check_wire(const struct kz_parser_config *base, const struct expect *x)
{
    if (x->err)
        assert_int_equal(kz_err_close_code(x->err), x->close_code);
    const uint8_t *in = wire;
    size_t len = wire_len;
    size_t *ends = malloc((len + 2) * sizeof(*ends));
    assert_non_null(ends);
    char how[96];
    for (int mode = 0; mode < 2; mode++) {
        struct kz_parser_config cfg = *base;
        cfg.mode = mode ? KZ_PARSE_MESSAGES : KZ_PARSE_FRAMES;
        const char *mname = mode ? "messages" : "frames";

        ends[0] = len;
        snprintf(how, sizeof(how), "%s, whole", mname);
        run_one(&cfg, in, len, ends, 1, x, how);

        for (size_t i = 0; i < len; i++)
            ends[i] = i + 1;
        snprintf(how, sizeof(how), "%s, bytewise", mname);
        run_one(&cfg, in, len, ends, len, x, how);

        for (size_t k = 1; k < len; k++) {
            if (len > 2048 && k > 64 && k < len - 64 && k % 997 != 0)
                continue;
            ends[0] = k;
            ends[1] = len;
            snprintf(how, sizeof(how), "%s, split at %zu", mname, k);
            run_one(&cfg, in, len, ends, 2, x, how);
        }

        for (uint32_t seed = 1; seed <= 8; seed++) {
            uint32_t s = seed;
            size_t n = 0, at = 0;
            while (at < len) {
                at += 1 + lcg(&s) % (seed * 3);
                if (at > len)
                    at = len;
                ends[n++] = at;
            }
            snprintf(how, sizeof(how), "%s, random chunks %u", mname, (unsigned)seed);
            run_one(&cfg, in, len, ends, n, x, how);
        }
    }
    free(ends);
}

static struct kz_parser_config server_cfg(void)
{
    struct kz_parser_config cfg;
    kz_parser_config_default(&cfg, KZ_ROLE_SERVER);
    return cfg;
}

static struct kz_parser_config client_cfg(void)
{
    struct kz_parser_config cfg;
    kz_parser_config_default(&cfg, KZ_ROLE_CLIENT);
    return cfg;
}

#define EXPECT_EVENTS(cfg, evs)                                                                    \
    do {                                                                                           \
        struct expect x_ = {evs, NX(evs), 0, 0, 0, 0};                                             \
        struct kz_parser_config c_ = (cfg);                                                        \
        check_wire(&c_, &x_);                                                                      \
    } while (0)

/* Events (possibly none), then `err` once `at` input bytes are in (0 = all). */
static void expect_error(struct kz_parser_config cfg, const struct xev *evs, size_t nev, int err,
                         int close_code, size_t at)
{
    struct expect x = {evs, nev, err, close_code, at, 0};
    check_wire(&cfg, &x);
}

/* ------------------------------------------------------------------------
 * RFC 6455 §5.7 examples
 */

static void rfc_unmasked_hello(void **state)
{
    (void)state;
    w_reset();
    w_hex("81 05 48 65 6c 6c 6f");
    static const struct xev evs[] = {TEXT("Hello")};
    EXPECT_EVENTS(client_cfg(), evs);
}

static void rfc_masked_hello(void **state)
{
    (void)state;
    w_reset();
    w_hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
    static const struct xev evs[] = {TEXT("Hello")};
    EXPECT_EVENTS(server_cfg(), evs);
}

static void rfc_fragmented_hello(void **state)
{
    (void)state;
    w_reset();
    w_hex("01 03 48 65 6c");
    w_hex("80 02 6c 6f");
    static const struct xev evs[] = {TEXT("Hello")};
    EXPECT_EVENTS(client_cfg(), evs);
}

static void rfc_ping_and_masked_pong(void **state)
{
    (void)state;
    /* The ping comes to a client unmasked; the pong comes back masked. */
    w_reset();
    w_hex("89 05 48 65 6c 6c 6f");
    static const struct xev ping[] = {PING("Hello")};
    EXPECT_EVENTS(client_cfg(), ping);
    w_reset();
    w_hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58");
    static const struct xev pong[] = {PONG("Hello")};
    EXPECT_EVENTS(server_cfg(), pong);
}

static uint8_t big[65536];

static void fill_big(void)
{
    uint32_t s = 7;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)lcg(&s);
}

static void rfc_256_byte_binary(void **state)
{
    (void)state;
    fill_big();
    w_reset();
    w_hex("82 7E 0100");
    memcpy(wire + wire_len, big, 256);
    wire_len += 256;
    const struct xev evs[] = {BIN(big, 256)};
    EXPECT_EVENTS(client_cfg(), evs);
}

static void rfc_64k_binary(void **state)
{
    (void)state;
    fill_big();
    w_reset();
    w_hex("82 7F 0000000000010000");
    memcpy(wire + wire_len, big, 65536);
    wire_len += 65536;
    const struct xev evs[] = {BIN(big, 65536)};
    EXPECT_EVENTS(client_cfg(), evs);
}

static void masked_64k_binary(void **state)
{
    (void)state;
    fill_big();
    w_reset();
    w_frame(0x82, true, big, 65536);
    const struct xev evs[] = {BIN(big, 65536)};
    EXPECT_EVENTS(server_cfg(), evs);
}

/* Frames mode hands out pieces that say where frames and messages end. */
static void frames_mode_piece_flags(void **state)
{
    (void)state;
    w_reset();
    w_hex("01 03 48 65 6c");
    w_hex("89 00");
    w_hex("80 02 6c 6f");
    struct kz_parser_config cfg = client_cfg();
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    uint8_t *g = kzt_guard_copy(wire, wire_len);
    struct kz_event ev;
    size_t off = 0;
    ptrdiff_t n = kz_parser_parse(p, g, wire_len, &ev);
    assert_int_equal(n, 5);
    assert_int_equal(ev.type, KZ_EV_DATA);
    assert_true(ev.first && ev.frame_end && !ev.fin);
    assert_int_equal(ev.opcode, KZ_OP_TEXT);
    assert_ptr_equal(ev.data, g + 2);
    assert_true(kz_parser_in_message(p));
    off += (size_t)n;
    n = kz_parser_parse(p, g + off, wire_len - off, &ev);
    assert_int_equal(n, 2);
    assert_int_equal(ev.type, KZ_EV_PING);
    assert_int_equal(ev.len, 0);
    assert_true(kz_parser_in_message(p));
    off += (size_t)n;
    /* Only part of the last frame: a piece that ends neither frame nor message. */
    n = kz_parser_parse(p, g + off, 3, &ev);
    assert_int_equal(n, 3);
    assert_int_equal(ev.type, KZ_EV_DATA);
    assert_true(!ev.first && !ev.frame_end && !ev.fin);
    assert_int_equal(ev.opcode, KZ_OP_TEXT);
    assert_int_equal(ev.len, 1);
    assert_memory_equal(ev.data, "l", 1);
    off += (size_t)n;
    n = kz_parser_parse(p, g + off, wire_len - off, &ev);
    assert_int_equal(n, 1);
    assert_int_equal(ev.type, KZ_EV_DATA);
    assert_true(!ev.first && ev.frame_end && ev.fin);
    assert_memory_equal(ev.data, "o", 1);
    assert_false(kz_parser_in_message(p));
    off += (size_t)n;
    n = kz_parser_parse(p, g + off, wire_len - off, &ev);
    assert_int_equal(n, 0);
    assert_int_equal(ev.type, KZ_EV_NONE);
    kzt_guard_free(g, wire_len);
    kz_parser_free(p);
}

/* A header alone is consumed; the payload follows as it comes. */
static void frames_mode_header_then_payload(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x82, "abcdefgh");
    struct kz_parser_config cfg = server_cfg();
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    uint8_t *g = kzt_guard_copy(wire, wire_len);
    struct kz_event ev;
    /* Five bytes of a six-byte header: nothing consumed. */
    assert_int_equal(kz_parser_parse(p, g, 5, &ev), 0);
    assert_int_equal(ev.type, KZ_EV_NONE);
    assert_int_equal(kz_parser_parse(p, g, 6, &ev), 6);
    assert_int_equal(ev.type, KZ_EV_NONE);
    assert_true(kz_parser_in_message(p));
    assert_int_equal(kz_parser_parse(p, g + 6, 3, &ev), 3);
    assert_int_equal(ev.type, KZ_EV_DATA);
    assert_true(ev.first && !ev.frame_end);
    assert_memory_equal(ev.data, "abc", 3);
    assert_int_equal(kz_parser_parse(p, g + 9, 5, &ev), 5);
    assert_true(!ev.first && ev.frame_end && ev.fin);
    assert_memory_equal(ev.data, "defgh", 5);
    kzt_guard_free(g, wire_len);
    kz_parser_free(p);
}

/* Messages mode reports a whole single frame where it lies. */
static void messages_mode_zero_copy(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x81, "Hello");
    struct kz_parser_config cfg = server_cfg();
    cfg.mode = KZ_PARSE_MESSAGES;
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_parser *p = kz_parser_new(&cfg, &fa.alloc);
    assert_non_null(p);
    assert_int_equal(fa.count, 1); /* the parser, nothing else */
    uint8_t *g = kzt_guard_copy(wire, wire_len);
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(p, g, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    assert_ptr_equal(ev.data, g + 6);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    assert_int_equal(fa.count, 1);
    kzt_guard_free(g, wire_len);
    kz_parser_free(p);
    assert_int_equal(fa.live, 0);
}

/* ------------------------------------------------------------------------
 * Rules, one error each
 */

static void rsv_without_extension(void **state)
{
    (void)state;
    for (unsigned bit = 1; bit <= 4; bit <<= 1) {
        w_reset();
        w_masked((uint8_t)(0x81 | bit << 4), "Hi");
        expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_RSV, 1002, 1);
    }
}

static void rsv_not_claimed(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.rsv_allowed = KZ_RSV1;
    w_reset();
    w_masked(0xA2, "x"); /* RSV2 */
    expect_error(cfg, NULL, 0, KZ_ERR_PROTO_RSV, 1002, 1);
    w_reset();
    w_masked(0x92, "x"); /* RSV3 */
    expect_error(cfg, NULL, 0, KZ_ERR_PROTO_RSV, 1002, 1);
}

static void rsv_on_continuation(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.rsv_allowed = KZ_RSV1;
    w_reset();
    w_masked(0x41, "ab");
    size_t at = wire_len + 1;
    w_masked(0xC0, "cd");
    expect_error(cfg, NULL, 0, KZ_ERR_PROTO_RSV, 1002, at);
}

static void rsv_on_control(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.rsv_allowed = KZ_RSV1 | KZ_RSV2 | KZ_RSV3;
    w_reset();
    w_masked(0xC9, "ping");
    expect_error(cfg, NULL, 0, KZ_ERR_PROTO_RSV, 1002, 1);
}

/* An RSV bit an extension claimed: reported, and the bytes are not UTF-8 checked. */
static void rsv_claimed_by_extension(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.rsv_allowed = KZ_RSV1;
    w_reset();
    w_frame(0x41, true, "\xf2\x48\xcd", 3);
    w_frame(0x80, true, "\xc9\xff", 2);
    w_masked(0x81, "plain");
    static const struct xev evs[] = {
        {KZ_EV_MESSAGE, KZ_OP_TEXT, KZ_RSV1, 0, "\xf2\x48\xcd\xc9\xff", 5},
        TEXT("plain"),
    };
    EXPECT_EVENTS(cfg, evs);
}

static void reserved_opcodes(void **state)
{
    (void)state;
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof(ops); i++) {
        w_reset();
        w_masked((uint8_t)(0x80 | ops[i]), "x");
        expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_OPCODE, 1002, 1);
    }
    /* Also in the middle of a fragmented message. */
    w_reset();
    w_masked(0x01, "ab");
    size_t at = wire_len + 1;
    w_masked(0x83, "x");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_OPCODE, 1002, at);
}

static void control_too_long(void **state)
{
    (void)state;
    uint8_t payload[126];
    memset(payload, 'p', sizeof(payload));
    for (unsigned op = 8; op <= 10; op++) {
        w_reset();
        w_frame((uint8_t)(0x80 | op), true, payload, 126);
        expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_CONTROL_TOO_LONG, 1002, 2);
    }
    w_reset();
    w_hex("89 ff 00 00 00 00 00 00 00 01");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_CONTROL_TOO_LONG, 1002, 2);
    /* 125 is fine. */
    w_reset();
    w_frame(0x89, true, payload, 125);
    const struct xev evs[] = {{KZ_EV_PING, KZ_OP_PING, 0, 0, payload, 125}};
    EXPECT_EVENTS(server_cfg(), evs);
}

static void control_fragmented(void **state)
{
    (void)state;
    for (unsigned op = 8; op <= 10; op++) {
        w_reset();
        w_masked((uint8_t)op, "");
        expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_CONTROL_FRAGMENTED, 1002, 1);
    }
}

static void unexpected_continuation(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x80, "lo");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_UNEXPECTED_CONTINUATION, 1002, 1);
    /* After a complete message too. */
    w_reset();
    w_masked(0x01, "Hel");
    w_masked(0x80, "lo");
    size_t at = wire_len + 1;
    w_masked(0x80, "!");
    static const struct xev evs[] = {TEXT("Hello")};
    expect_error(server_cfg(), evs, NX(evs), KZ_ERR_PROTO_UNEXPECTED_CONTINUATION, 1002, at);
}

static void expected_continuation(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x01, "Hel");
    size_t at = wire_len + 1;
    w_masked(0x81, "lo");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_EXPECTED_CONTINUATION, 1002, at);
    w_reset();
    w_masked(0x02, "Hel");
    at = wire_len + 1;
    w_masked(0x02, "lo");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_EXPECTED_CONTINUATION, 1002, at);
}

static void length_16_not_minimal(void **state)
{
    (void)state;
    w_reset();
    w_hex("82 7e 00 7d"); /* 125 in the 16-bit form */
    expect_error(client_cfg(), NULL, 0, KZ_ERR_PROTO_LENGTH, 1002, 4);
    w_reset();
    w_hex("82 fe 00 00 01 02 03 04"); /* 0, masked, to a server */
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_LENGTH, 1002, 4);
}

static void length_64_not_minimal(void **state)
{
    (void)state;
    w_reset();
    w_hex("82 7f 00 00 00 00 00 00 ff ff"); /* 65535 in the 64-bit form */
    expect_error(client_cfg(), NULL, 0, KZ_ERR_PROTO_LENGTH, 1002, 10);
    w_reset();
    w_hex("82 7f 00 00 00 00 00 00 00 05");
    expect_error(client_cfg(), NULL, 0, KZ_ERR_PROTO_LENGTH, 1002, 10);
}

static void length_64_top_bit(void **state)
{
    (void)state;
    struct kz_parser_config cfg = client_cfg();
    cfg.max_frame_size = 0;
    cfg.max_message_size = 0;
    w_reset();
    w_hex("82 7f 80 00 00 00 00 00 00 00");
    expect_error(cfg, NULL, 0, KZ_ERR_PROTO_LENGTH, 1002, 10);
    w_reset();
    w_hex("82 7f ff ff ff ff ff ff ff ff");
    expect_error(cfg, NULL, 0, KZ_ERR_PROTO_LENGTH, 1002, 10);
}

/* The largest lengths each form can carry are accepted (no limit set). */
static void length_largest_forms(void **state)
{
    (void)state;
    struct kz_parser_config cfg = client_cfg();
    cfg.max_frame_size = 0;
    cfg.max_message_size = 0;
    uint8_t buf[16];
    size_t n = kzt_hex("82 7f 7f ff ff ff ff ff ff ff", buf, sizeof(buf));
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(p, buf, n, &ev), (ptrdiff_t)n);
    assert_int_equal(ev.type, KZ_EV_NONE);
    assert_true(kz_parser_in_message(p));
    assert_int_equal(p->remaining, INT64_MAX);
    kz_parser_free(p);
}

static void unmasked_to_server(void **state)
{
    (void)state;
    w_reset();
    w_hex("81 05 48 65 6c 6c 6f");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_UNMASKED, 1002, 2);
    w_reset();
    w_hex("89 00");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_UNMASKED, 1002, 2);
}

static void masked_to_client(void **state)
{
    (void)state;
    w_reset();
    w_hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
    expect_error(client_cfg(), NULL, 0, KZ_ERR_PROTO_MASKED, 1002, 2);
}

static void frame_too_big(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.max_frame_size = 100;
    uint8_t payload[300];
    memset(payload, 'x', sizeof(payload));
    w_reset();
    w_frame(0x82, true, payload, 100);
    const struct xev ok[] = {BIN(payload, 100)};
    EXPECT_EVENTS(cfg, ok);
    /* Detected from the header, before any payload (7-bit and 16-bit forms). */
    w_reset();
    w_frame(0x82, true, payload, 101);
    expect_error(cfg, NULL, 0, KZ_ERR_FRAME_TOO_BIG, 1009, 2);
    w_reset();
    w_frame(0x82, true, payload, 300);
    expect_error(cfg, NULL, 0, KZ_ERR_FRAME_TOO_BIG, 1009, 4);
    /* The limit applies to every fragment. */
    w_reset();
    w_frame(0x02, true, payload, 60);
    size_t at = wire_len + 2;
    w_frame(0x80, true, payload, 120);
    expect_error(cfg, NULL, 0, KZ_ERR_FRAME_TOO_BIG, 1009, at);
    /* Control frames are bounded by 125 alone, however small the data limit. */
    cfg.max_frame_size = 4;
    w_reset();
    w_masked(0x89, "12345");
    const struct xev ping[] = {PING("12345")};
    EXPECT_EVENTS(cfg, ping);
}

static void message_too_big(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.max_message_size = 100;
    uint8_t payload[200];
    memset(payload, 'y', sizeof(payload));
    w_reset();
    w_frame(0x02, true, payload, 60);
    w_frame(0x80, true, payload, 40);
    const struct xev ok[] = {BIN(payload, 100)};
    EXPECT_EVENTS(cfg, ok);
    w_reset();
    w_frame(0x02, true, payload, 60);
    w_frame(0x89, true, "p", 1); /* control frames do not count */
    size_t at = wire_len + 2;
    w_frame(0x80, true, payload, 41);
    static const struct xev ping[] = {PING("p")};
    expect_error(cfg, ping, NX(ping), KZ_ERR_MESSAGE_TOO_BIG, 1009, at);
    /* A single frame over the message limit. */
    w_reset();
    w_frame(0x82, true, payload, 101);
    expect_error(cfg, NULL, 0, KZ_ERR_MESSAGE_TOO_BIG, 1009, 2);
    /* The count restarts with each message. */
    w_reset();
    w_frame(0x82, true, payload, 100);
    w_frame(0x82, true, payload, 100);
    const struct xev two[] = {BIN(payload, 100), BIN(payload, 100)};
    EXPECT_EVENTS(cfg, two);
}

/* ------------------------------------------------------------------------
 * UTF-8
 */

static void invalid_utf8_single_frame(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x81, "ok\xff more bytes after");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_INVALID_UTF8, 1007, 6 + 3);
}

/* Autobahn 6.x: a valid code point split across fragments. */
static void utf8_split_across_fragments(void **state)
{
    (void)state;
    /* "κόσμε": split inside the 2-byte ό and inside a 3-byte € added at the end. */
    w_reset();
    w_masked(0x01, "\xce\xba\xe1");
    w_masked(0x00, "\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xe2");
    w_masked(0x00, "\x82");
    w_masked(0x80, "\xac");
    static const struct xev evs[] = {
        TEXT("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xe2\x82\xac")};
    EXPECT_EVENTS(server_cfg(), evs);
}

/* Autobahn 6.4: fail fast, on the first fragment, before the rest arrives. */
static void utf8_fail_fast_in_first_fragment(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x01, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80");
    size_t bad = 6 + 13; /* 0x90, payload byte 12, cannot follow 0xf4 */
    w_masked(0x80, "edited");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_INVALID_UTF8, 1007, bad);
    /* The first fragment alone is enough. */
    w_reset();
    w_masked(0x01, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_INVALID_UTF8, 1007, bad);
}

static void utf8_bad_byte_in_later_fragment(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x01, "ok");
    w_masked(0x89, "");
    w_masked(0x00, "\xc3");
    size_t bad = wire_len + 6 + 1; /* 0x28 cannot follow 0xc3 */
    w_masked(0x80, "\x28");
    static const struct xev ping[] = {PING("")};
    expect_error(server_cfg(), ping, NX(ping), KZ_ERR_INVALID_UTF8, 1007, bad);
}

static void utf8_truncated_at_end(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x01, "ab");
    w_masked(0x80, "\xe2\x82");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_INVALID_UTF8, 1007, 0);
    w_reset();
    w_masked(0x01, "ab\xe2");
    w_masked(0x80, "");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_INVALID_UTF8, 1007, 0);
}

static void utf8_not_checked_when_skipped(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.skip_utf8 = true;
    w_reset();
    w_masked(0x01, "a\xff");
    w_masked(0x80, "\xe2");
    static const struct xev evs[] = {TEXT("a\xff\xe2")};
    EXPECT_EVENTS(cfg, evs);
}

static void binary_is_not_utf8_checked(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x82, "\xff\xfe\xc0");
    static const struct xev evs[] = {BIN("\xff\xfe\xc0", 3)};
    EXPECT_EVENTS(server_cfg(), evs);
}

/* ------------------------------------------------------------------------
 * Empty frames, control frames, close
 */

static void empty_frames(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x81, "");
    w_masked(0x82, "");
    w_masked(0x01, "");
    w_masked(0x00, "");
    w_masked(0x80, "");
    w_masked(0x01, "Hel");
    w_masked(0x80, "");
    static const struct xev evs[] = {TEXT(""), BIN("", 0), TEXT(""), TEXT("Hel")};
    EXPECT_EVENTS(server_cfg(), evs);
}

static void ping_between_fragments(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x01, "fragment1");
    w_masked(0x89, "ping payload");
    w_masked(0x00, "fragment2");
    w_masked(0x8A, "");
    w_masked(0x80, "fragment3");
    static const struct xev evs[] = {PING("ping payload"), PONG(""),
                                     TEXT("fragment1fragment2fragment3")};
    EXPECT_EVENTS(server_cfg(), evs);
}

static void close_frames(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x88, "");
    w_masked(0x88, "\x03\xe8");
    w_masked(0x88, "\x0b\xb8going away \xce\xba");
    static const struct xev evs[] = {CLOSE(1005, ""), CLOSE(1000, ""),
                                     CLOSE(3000, "going away \xce\xba")};
    EXPECT_EVENTS(server_cfg(), evs);
    /* Between fragments of a message. */
    w_reset();
    w_masked(0x01, "a");
    w_masked(0x88, "\x03\xe9");
    static const struct xev mid[] = {CLOSE(1001, "")};
    EXPECT_EVENTS(server_cfg(), mid);
}

static void close_one_byte_payload(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x88, "\x03");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_CLOSE_PAYLOAD, 1002, 0);
}

static void close_invalid_code(void **state)
{
    (void)state;
    static const char *codes[] = {"\x03\xe7", "\x03\xec", "\x03\xed", "\x03\xee",
                                  "\x03\xf7", "\x13\x88", "\x00\x00"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        w_reset();
        w_frame(0x88, true, codes[i], 2);
        expect_error(server_cfg(), NULL, 0, KZ_ERR_PROTO_CLOSE_CODE, 1002, 0);
    }
}

static void close_invalid_reason(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x88, "\003\350bad \xc0\xaf");
    expect_error(server_cfg(), NULL, 0, KZ_ERR_INVALID_UTF8, 1007, 0);
}

/* Valid messages before a bad frame, all in one buffer: every one is reported first. */
static void events_before_error(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x81, "one");
    w_masked(0x89, "two");
    w_masked(0x02, "thr");
    w_masked(0x80, "ee");
    w_masked(0x88, "\x03\xe8");
    size_t at = wire_len + 1;
    w_masked(0x87, "bad");
    static const struct xev evs[] = {TEXT("one"), PING("two"), BIN("three", 5), CLOSE(1000, "")};
    expect_error(server_cfg(), evs, NX(evs), KZ_ERR_PROTO_OPCODE, 1002, at);
}

/* An incomplete frame at the end stays with the caller. */
static void partial_frames_left_over(void **state)
{
    (void)state;
    w_reset();
    w_masked(0x81, "done");
    w_hex("89 85 00 00 00 00 61 62"); /* a ping missing 3 payload bytes */
    static const struct xev evs[] = {TEXT("done")};
    struct expect x = {evs, NX(evs), 0, 0, 0, 8};
    struct kz_parser_config cfg = server_cfg();
    check_wire(&cfg, &x);
    w_reset();
    w_masked(0x81, "done");
    w_hex("82 ff 00 00 00 00"); /* a header missing 8 bytes */
    x.leftover = 6;
    check_wire(&cfg, &x);
}

/* ------------------------------------------------------------------------
 * Lifecycle, configuration, memory
 */

static void dead_until_reset(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    w_reset();
    w_masked(0x01, "half");
    w_hex("83");
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(p, wire, 10, &ev), 10);
    assert_int_equal(kz_parser_parse(p, wire + 10, 1, &ev), KZ_ERR_PROTO_OPCODE);
    w_reset();
    w_masked(0x81, "fine");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), KZ_ERR_PROTO_OPCODE);
        assert_int_equal(ev.type, KZ_EV_NONE);
    }
    kz_parser_reset(p);
    assert_false(kz_parser_in_message(p));
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_DATA);
    assert_true(ev.first && ev.fin);
    assert_memory_equal(ev.data, "fine", 4);
    kz_parser_free(p);
}

static void reset_forgets_partial_message(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.mode = KZ_PARSE_MESSAGES;
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    w_reset();
    w_masked(0x01, "old");
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_NONE);
    assert_true(kz_parser_in_message(p));
    kz_parser_reset(p);
    assert_false(kz_parser_in_message(p));
    w_reset();
    w_masked(0x01, "new");
    w_masked(0x80, "!");
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    assert_int_equal(ev.len, 4);
    assert_memory_equal(ev.data, "new!", 4);
    kz_parser_free(p);
}

static void config_defaults_and_validation(void **state)
{
    (void)state;
    struct kz_parser_config cfg;
    memset(&cfg, 0xff, sizeof(cfg));
    kz_parser_config_default(&cfg, KZ_ROLE_CLIENT);
    assert_int_equal(cfg.role, KZ_ROLE_CLIENT);
    assert_int_equal(cfg.mode, KZ_PARSE_FRAMES);
    assert_int_equal(cfg.max_frame_size, 16u << 20);
    assert_int_equal(cfg.max_message_size, 16u << 20);
    assert_int_equal(cfg.rsv_allowed, 0);
    assert_false(cfg.skip_utf8);

    struct kz_parser_config bad = cfg;
    bad.mode = (enum kz_parse_mode)2;
    assert_null(kz_parser_new(&bad, NULL));
    bad = cfg;
    bad.role = (enum kz_role)2;
    assert_null(kz_parser_new(&bad, NULL));
    bad = cfg;
    bad.rsv_allowed = 8;
    assert_null(kz_parser_new(&bad, NULL));

    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 1);
    assert_null(kz_parser_new(&cfg, &fa.alloc));
    assert_int_equal(fa.live, 0);
    kzt_failalloc_init(&fa, 0);
    assert_null(kz_parser_new(&bad, &fa.alloc));
    assert_int_equal(fa.live, 0);
    kz_parser_free(NULL);

    /* NULL config: a server in frames mode. */
    struct kz_parser *p = kz_parser_new(NULL, NULL);
    assert_non_null(p);
    w_reset();
    w_hex("81 05 48 65 6c 6c 6f");
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), KZ_ERR_PROTO_UNMASKED);
    kz_parser_free(p);
}

/* The connection layer embeds the parser: it must stay small. */
static void embedded_parser(void **state)
{
    (void)state;
    assert_true(offsetof(struct kz_parser, mbuf) <= 64);
    struct kz_parser_config cfg = server_cfg();
    cfg.mode = KZ_PARSE_MESSAGES;
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_parser p;
    assert_int_equal(kz_parser_init(&p, &cfg, &fa.alloc), KZ_OK);
    w_reset();
    w_masked(0x02, "gath");
    w_masked(0x80, "ered");
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(&p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    assert_memory_equal(ev.data, "gathered", 8);
    assert_int_equal(fa.live, 1);
    kz_parser_deinit(&p);
    assert_int_equal(fa.live, 0);
    cfg.mode = (enum kz_parse_mode)7;
    assert_int_equal(kz_parser_init(&p, &cfg, NULL), KZ_ERR_INVALID_ARGUMENT);
}

/* A gathered message over 64 KiB does not pin its buffer after delivery. */
static void big_buffer_released(void **state)
{
    (void)state;
    fill_big();
    struct kz_parser_config cfg = server_cfg();
    cfg.mode = KZ_PARSE_MESSAGES;
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_parser *p = kz_parser_new(&cfg, &fa.alloc);
    assert_non_null(p);
    struct kz_event ev;
    /* A small gathered message: its buffer is kept for the next one. */
    w_reset();
    w_masked(0x01, "sm");
    w_masked(0x80, "all");
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    size_t small_cap = p->mcap;
    assert_true(small_cap > 0 && small_cap <= 64 * 1024);
    /* A big one: 40000 + 40000 bytes. */
    w_reset();
    w_frame(0x02, true, big, 40000);
    w_frame(0x80, true, big, 40000);
    w_masked(0x89, "");
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)(wire_len - 6));
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    assert_int_equal(ev.len, 80000);
    assert_memory_equal(ev.data, big, 40000);
    assert_memory_equal(ev.data + 40000, big, 40000);
    assert_true(p->mcap > 64 * 1024);
    assert_true(p->mcap <= 80000);
    assert_int_equal(fa.live, 2);
    /* The next call frees it. */
    assert_int_equal(kz_parser_parse(p, wire + wire_len - 6, 6, &ev), 6);
    assert_int_equal(ev.type, KZ_EV_PING);
    assert_int_equal(p->mcap, 0);
    assert_int_equal(fa.live, 1);
    kz_parser_free(p);
    assert_int_equal(fa.live, 0);
}

/* Growth stays within max_message_size. */
static void buffer_bounded_by_limit(void **state)
{
    (void)state;
    struct kz_parser_config cfg = server_cfg();
    cfg.mode = KZ_PARSE_MESSAGES;
    cfg.max_message_size = 1500;
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    uint8_t payload[700];
    memset(payload, 'z', sizeof(payload));
    w_reset();
    w_frame(0x02, true, payload, 700);
    w_frame(0x00, true, payload, 700);
    w_frame(0x80, true, payload, 100);
    struct kz_event ev;
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    assert_int_equal(ev.len, 1500);
    assert_true(p->mcap <= 1500);
    kz_parser_free(p);

    /* At the final frame the message's size is known: no doubling past it. */
    cfg.max_message_size = 0;
    p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    w_reset();
    w_frame(0x02, true, payload, 700);
    w_frame(0x00, true, payload, 300);
    w_frame(0x80, true, payload, 100);
    assert_int_equal(kz_parser_parse(p, wire, wire_len, &ev), (ptrdiff_t)wire_len);
    assert_int_equal(ev.type, KZ_EV_MESSAGE);
    assert_int_equal(ev.len, 1100);
    assert_int_equal(p->mcap, 1100); /* not 2048 */
    kz_parser_free(p);
}

/*
 * Fails each allocation in turn, with and without realloc, while a
 * fragmented message grows through several sizes: each failure is
 * KZ_ERR_NOMEM (1011), sticks, and leaks nothing.
 */
static void nomem_every_allocation(void **state)
{
    (void)state;
    fill_big();
    w_reset();
    w_frame(0x02, true, "x", 1);
    for (int i = 0; i < 6; i++)
        w_frame(0x00, true, big + 1 + i * 1000, 1000);
    w_frame(0x80, true, "y", 1);
    w_masked(0x81, "after");
    for (int with_realloc = 0; with_realloc < 2; with_realloc++) {
        bool succeeded = false;
        for (unsigned long fail = 1; fail < 20 && !succeeded; fail++) {
            struct kzt_failalloc fa;
            kzt_failalloc_init(&fa, fail);
            if (!with_realloc)
                fa.alloc.realloc = NULL;
            struct kz_parser_config cfg = server_cfg();
            cfg.mode = KZ_PARSE_MESSAGES;
            struct kz_parser *p = kz_parser_new(&cfg, &fa.alloc);
            if (!p) {
                assert_int_equal(fail, 1);
                assert_int_equal(fa.live, 0);
                continue;
            }
            /* Feed one frame at a time, as the bytes might come. */
            uint8_t *g = kzt_guard_copy(wire, wire_len);
            size_t off = 0;
            int err = 0;
            int messages = 0;
            while (off < wire_len) {
                struct kz_event ev;
                ptrdiff_t n =
                    kz_parser_parse(p, g + off, wire_len - off < 700 ? wire_len - off : 700, &ev);
                if (n < 0) {
                    err = (int)n;
                    break;
                }
                assert_true(n > 0 || ev.type != KZ_EV_NONE);
                off += (size_t)n;
                if (ev.type == KZ_EV_MESSAGE) {
                    messages++;
                    if (messages == 1) {
                        assert_int_equal(ev.len, 6002);
                        assert_memory_equal(ev.data + 1, big + 1, 6000);
                    }
                }
            }
            if (err) {
                assert_int_equal(err, KZ_ERR_NOMEM);
                assert_int_equal(kz_err_close_code(err), 1011);
                struct kz_event ev;
                assert_int_equal(kz_parser_parse(p, g, wire_len, &ev), KZ_ERR_NOMEM);
                assert_int_equal(messages, 0);
            } else {
                assert_int_equal(messages, 2);
                succeeded = true;
                /* Growing from 1 KiB to 6 KiB takes several allocations. */
                assert_true(fail > 4);
            }
            kzt_guard_free(g, wire_len);
            kz_parser_free(p);
            assert_int_equal(fa.live, 0);
        }
        assert_true(succeeded);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc_unmasked_hello),
        cmocka_unit_test(rfc_masked_hello),
        cmocka_unit_test(rfc_fragmented_hello),
        cmocka_unit_test(rfc_ping_and_masked_pong),
        cmocka_unit_test(rfc_256_byte_binary),
        cmocka_unit_test(rfc_64k_binary),
        cmocka_unit_test(masked_64k_binary),
        cmocka_unit_test(frames_mode_piece_flags),
        cmocka_unit_test(frames_mode_header_then_payload),
        cmocka_unit_test(messages_mode_zero_copy),
        cmocka_unit_test(rsv_without_extension),
        cmocka_unit_test(rsv_not_claimed),
        cmocka_unit_test(rsv_on_continuation),
        cmocka_unit_test(rsv_on_control),
        cmocka_unit_test(rsv_claimed_by_extension),
        cmocka_unit_test(reserved_opcodes),
        cmocka_unit_test(control_too_long),
        cmocka_unit_test(control_fragmented),
        cmocka_unit_test(unexpected_continuation),
        cmocka_unit_test(expected_continuation),
        cmocka_unit_test(length_16_not_minimal),
        cmocka_unit_test(length_64_not_minimal),
        cmocka_unit_test(length_64_top_bit),
        cmocka_unit_test(length_largest_forms),
        cmocka_unit_test(unmasked_to_server),
        cmocka_unit_test(masked_to_client),
        cmocka_unit_test(frame_too_big),
        cmocka_unit_test(message_too_big),
        cmocka_unit_test(invalid_utf8_single_frame),
        cmocka_unit_test(utf8_split_across_fragments),
        cmocka_unit_test(utf8_fail_fast_in_first_fragment),
        cmocka_unit_test(utf8_bad_byte_in_later_fragment),
        cmocka_unit_test(utf8_truncated_at_end),
        cmocka_unit_test(utf8_not_checked_when_skipped),
        cmocka_unit_test(binary_is_not_utf8_checked),
        cmocka_unit_test(empty_frames),
        cmocka_unit_test(ping_between_fragments),
        cmocka_unit_test(close_frames),
        cmocka_unit_test(close_one_byte_payload),
        cmocka_unit_test(close_invalid_code),
        cmocka_unit_test(close_invalid_reason),
        cmocka_unit_test(events_before_error),
        cmocka_unit_test(partial_frames_left_over),
        cmocka_unit_test(dead_until_reset),
        cmocka_unit_test(reset_forgets_partial_message),
        cmocka_unit_test(config_defaults_and_validation),
        cmocka_unit_test(embedded_parser),
        cmocka_unit_test(big_buffer_released),
        cmocka_unit_test(buffer_bounded_by_limit),
        cmocka_unit_test(nomem_every_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
