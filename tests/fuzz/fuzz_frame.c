/*
 * libFuzzer target for the frame parser. The first three input bytes pick a
 * configuration and a chunking; the rest is the byte stream. The stream goes
 * through parsers in both roles and both modes, whole, one byte at a time,
 * split in two, and in pseudo-random chunks, the way a connection feeds it
 * (unconsumed bytes kept and the next chunk appended). Every run must agree:
 * same events (frames-mode pieces joined into messages), same final error,
 * the error raised by the chunk that holds the same offending byte, and the
 * same bytes left over. Each call is checked on its own too: consumed never
 * exceeds the input, event pointers lie in the input or the parser's own
 * buffer, and after an error the parser keeps returning it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kaze/frame.h"
#include "proto/frame_parser.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_frame: check failed at line %d: %s\n", __LINE__, #c);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define KEEP_MAX (KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX)

struct rec {
    uint8_t type, opcode, rsv;
    uint16_t code;
    size_t off, len; /* into outcome.bytes */
};

struct outcome {
    struct rec *ev;
    size_t n, cap;
    uint8_t *bytes;
    size_t nbytes, bytes_cap;
    int err;
    size_t err_at;
    size_t leftover;
    /* frames mode: the message being joined (control frames may come between its pieces) */
    bool open;
    uint8_t open_op, open_rsv;
    uint8_t *acc;
    size_t acc_len, acc_cap;
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    CHECK(q != NULL);
    return q;
}

static void add_bytes(struct outcome *o, const uint8_t *d, size_t n)
{
    if (o->nbytes + n > o->bytes_cap) {
        o->bytes_cap = (o->nbytes + n) * 2 + 64;
        o->bytes = xrealloc(o->bytes, o->bytes_cap);
    }
    if (n)
        memcpy(o->bytes + o->nbytes, d, n);
    o->nbytes += n;
}

static void add_event(struct outcome *o, uint8_t type, uint8_t op, uint8_t rsv, uint16_t code,
                      size_t off)
{
    if (o->n == o->cap) {
        o->cap = o->cap * 2 + 16;
        o->ev = xrealloc(o->ev, o->cap * sizeof(*o->ev));
    }
    o->ev[o->n++] = (struct rec){type, op, rsv, code, off, o->nbytes - off};
}

static void record(struct outcome *o, const struct kz_event *ev)
{
    switch (ev->type) {
    case KZ_EV_DATA:
        CHECK(ev->first == !o->open);
        CHECK(ev->frame_end || !ev->fin);
        CHECK(ev->opcode == KZ_OP_TEXT || ev->opcode == KZ_OP_BINARY);
        if (o->open) {
            CHECK(ev->opcode == o->open_op && ev->rsv == o->open_rsv);
        } else {
            o->open = true;
            o->open_op = ev->opcode;
            o->open_rsv = ev->rsv;
            o->acc_len = 0;
        }
        if (o->acc_len + ev->len > o->acc_cap) {
            o->acc_cap = (o->acc_len + ev->len) * 2 + 64;
            o->acc = xrealloc(o->acc, o->acc_cap);
        }
        if (ev->len)
            memcpy(o->acc + o->acc_len, ev->data, ev->len);
        o->acc_len += ev->len;
        if (ev->fin) {
            size_t off = o->nbytes;
            add_bytes(o, o->acc, o->acc_len);
            add_event(o, KZ_EV_MESSAGE, o->open_op, o->open_rsv, 0, off);
            o->open = false;
        }
        break;
    case KZ_EV_MESSAGE:
        CHECK(ev->opcode == KZ_OP_TEXT || ev->opcode == KZ_OP_BINARY);
        add_bytes(o, ev->data, ev->len);
        add_event(o, KZ_EV_MESSAGE, ev->opcode, ev->rsv, 0, o->nbytes - ev->len);
        break;
    case KZ_EV_PING:
    case KZ_EV_PONG:
        CHECK(ev->len <= KZ_CONTROL_PAYLOAD_MAX);
        add_bytes(o, ev->data, ev->len);
        add_event(o, (uint8_t)ev->type, ev->opcode, 0, 0, o->nbytes - ev->len);
        break;
    case KZ_EV_CLOSE:
        CHECK(ev->len <= KZ_CONTROL_PAYLOAD_MAX);
        CHECK(ev->close_code == KZ_CLOSE_NO_STATUS ? ev->len == 0
                                                   : kz_close_code_valid(ev->close_code));
        CHECK(kz_utf8_valid((const uint8_t *)ev->close_reason.ptr, ev->close_reason.len));
        add_bytes(o, (const uint8_t *)ev->close_reason.ptr, ev->close_reason.len);
        add_event(o, KZ_EV_CLOSE, ev->opcode, 0, ev->close_code, o->nbytes - ev->close_reason.len);
        break;
    default:
        CHECK(0);
    }
}

static bool within(const uint8_t *p, size_t len, const uint8_t *lo, const uint8_t *hi)
{
    return p && p >= lo && p <= hi && len <= (size_t)(hi - p);
}

/* Feeds `in` in chunks ending at ends[0..nends). */
static void feed(const struct kz_parser_config *cfg, const uint8_t *in, const size_t *ends,
                 size_t nends, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    struct kz_parser p;
    CHECK(kz_parser_init(&p, cfg, NULL) == KZ_OK);
    uint8_t pending[KEEP_MAX];
    size_t npend = 0, fed = 0, consumed = 0;
    for (size_t c = 0; c < nends && !o->err; c++) {
        size_t end = ends[c];
        size_t total = npend + (end - fed);
        /* An exact-size heap block, so ASan sees any read past the end. */
        uint8_t *buf = malloc(total ? total : 1);
        CHECK(buf != NULL);
        memcpy(buf, pending, npend);
        memcpy(buf + npend, in + fed, end - fed);
        fed = end;
        size_t off = 0;
        for (;;) {
            struct kz_event ev;
            ptrdiff_t n = kz_parser_parse(&p, buf + off, total - off, &ev);
            if (n < 0) {
                o->err = (int)n;
                o->err_at = end;
                CHECK(kz_err_close_code(o->err) != 0);
                CHECK(ev.type == KZ_EV_NONE);
                struct kz_event ev2;
                CHECK(kz_parser_parse(&p, buf + off, total - off, &ev2) == n);
                CHECK(kz_parser_parse(&p, buf, total, &ev2) == n);
                break;
            }
            CHECK((size_t)n <= total - off);
            if (ev.type != KZ_EV_NONE) {
                CHECK(within(ev.data, ev.len, buf + off, buf + total) ||
                      (p.mbuf && within(ev.data, ev.len, p.mbuf, p.mbuf + p.mcap)));
                if (ev.type == KZ_EV_CLOSE)
                    CHECK(within((const uint8_t *)ev.close_reason.ptr, ev.close_reason.len, ev.data,
                                 ev.data + ev.len));
            }
            off += (size_t)n;
            consumed += (size_t)n;
            if (ev.type == KZ_EV_NONE)
                break;
            record(o, &ev);
        }
        if (!o->err) {
            npend = total - off;
            CHECK(npend <= KEEP_MAX);
            memcpy(pending, buf + off, npend);
            /* Every byte fed was either consumed or is kept. */
            CHECK(consumed + npend == fed);
            /* Inside a payload every byte is taken. */
            CHECK(!(p.st & KZP_ST_PAYLOAD) || npend == 0);
        }
        free(buf);
    }
    o->leftover = npend;
    kz_parser_deinit(&p);
}

static void outcome_free(struct outcome *o)
{
    free(o->ev);
    free(o->bytes);
    free(o->acc);
}

static void same(const struct outcome *a, const struct outcome *b)
{
    CHECK(a->err == b->err);
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct rec *x = &a->ev[i], *y = &b->ev[i];
        CHECK(x->type == y->type && x->opcode == y->opcode && x->rsv == y->rsv &&
              x->code == y->code && x->len == y->len);
        CHECK(x->len == 0 || memcmp(a->bytes + x->off, b->bytes + y->off, x->len) == 0);
    }
    if (!a->err)
        CHECK(a->leftover == b->leftover);
}

/* The chunk that fails must be the one holding the byte that failed bytewise. */
static void fails_at(const struct outcome *o, const struct outcome *bytewise, const size_t *ends,
                     size_t nends)
{
    if (!o->err)
        return;
    for (size_t i = 0; i < nends; i++) {
        if (ends[i] >= bytewise->err_at) {
            CHECK(o->err_at == ends[i]);
            return;
        }
    }
    CHECK(0);
}

static const uint64_t limits[4] = {0, 16, 300, 70000};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const uint8_t *in = data + 3;
    size_t len = size - 3;
    size_t *ends = malloc((len + 2) * sizeof(*ends));
    CHECK(ends != NULL);

    for (int role = 0; role < 2; role++) {
        struct outcome per_mode[2];
        for (int mode = 0; mode < 2; mode++) {
            struct kz_parser_config cfg;
            kz_parser_config_default(&cfg, role ? KZ_ROLE_CLIENT : KZ_ROLE_SERVER);
            cfg.mode = mode ? KZ_PARSE_MESSAGES : KZ_PARSE_FRAMES;
            cfg.rsv_allowed = data[0] & 7u;
            cfg.skip_utf8 = (data[0] & 8u) != 0;
            cfg.max_frame_size = limits[(data[0] >> 4) & 3];
            cfg.max_message_size = limits[(data[0] >> 6) & 3];

            struct outcome whole, bytewise, other;
            ends[0] = len;
            feed(&cfg, in, ends, 1, &whole);

            for (size_t i = 0; i < len; i++)
                ends[i] = i + 1;
            feed(&cfg, in, ends, len, &bytewise);
            same(&whole, &bytewise);
            ends[0] = len;
            fails_at(&whole, &bytewise, ends, 1);

            if (len > 1) {
                size_t k = 1 + ((size_t)data[1] << 8 | data[2]) % (len - 1);
                ends[0] = k;
                ends[1] = len;
                feed(&cfg, in, ends, 2, &other);
                same(&whole, &other);
                fails_at(&other, &bytewise, ends, 2);
                outcome_free(&other);
            }

            uint32_t s = (uint32_t)data[1] << 8 | data[2] | 1u;
            size_t n = 0, at = 0;
            while (at < len) {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                at += 1 + s % (1u + data[1] % 40u);
                ends[n++] = at < len ? at : len;
            }
            feed(&cfg, in, ends, n, &other);
            same(&whole, &other);
            fails_at(&other, &bytewise, ends, n);
            outcome_free(&other);

            outcome_free(&bytewise);
            per_mode[mode] = whole;
        }
        /* Frames mode, joined, says what messages mode says. */
        same(&per_mode[0], &per_mode[1]);
        outcome_free(&per_mode[0]);
        outcome_free(&per_mode[1]);
    }
    free(ends);
    return 0;
}
