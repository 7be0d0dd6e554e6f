/* Frame writer: headers, control frames, and a round trip through the parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/frame.h"
#include "helpers.h"

static const uint8_t rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

static void header_sizes(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        size_t size;
    } cases[] = {
        {0, 2},     {1, 2},      {125, 2},         {126, 4},        {127, 4},
        {65535, 4}, {65536, 10}, {1ull << 32, 10}, {INT64_MAX, 10},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(kz_frame_header_size(cases[i].len, false), cases[i].size);
        assert_int_equal(kz_frame_header_size(cases[i].len, true), cases[i].size + 4);
    }
}

static void header_7bit_boundary(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX];
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 125, NULL), 2);
    assert_memory_equal(out, "\x82\x7d", 2);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 0, NULL), 2);
    assert_memory_equal(out, "\x82\x00", 2);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 126, NULL), 4);
    assert_memory_equal(out, "\x82\x7e\x00\x7e", 4);
}

static void header_16bit_boundary(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX];
    assert_int_equal(kz_frame_write_header(out, KZ_OP_TEXT, false, 0, 65535, NULL), 4);
    assert_memory_equal(out, "\x01\x7e\xff\xff", 4);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_TEXT, false, 0, 65536, NULL), 10);
    assert_memory_equal(out, "\x01\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

static void header_64bit_limits(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX];
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, INT64_MAX, NULL), 10);
    assert_memory_equal(out, "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 0x0102030405060708ull, NULL),
                     10);
    assert_memory_equal(out, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
    /* The top bit is reserved: the writer refuses rather than send it. */
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 1ull << 63, NULL), 0);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, UINT64_MAX, NULL), 0);
}

static void header_bits(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX];
    assert_int_equal(kz_frame_write_header(out, KZ_OP_CONTINUATION, false, 0, 3, NULL), 2);
    assert_memory_equal(out, "\x00\x03", 2);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_TEXT, true, KZ_RSV1, 3, NULL), 2);
    assert_memory_equal(out, "\xc1\x03", 2);
    assert_int_equal(
        kz_frame_write_header(out, KZ_OP_TEXT, false, KZ_RSV1 | KZ_RSV2 | KZ_RSV3, 3, NULL), 2);
    assert_memory_equal(out, "\x71\x03", 2);
    assert_int_equal(kz_frame_write_header(out, 0xF, true, KZ_RSV3, 0, NULL), 2);
    assert_memory_equal(out, "\x9f\x00", 2);
    assert_int_equal(kz_frame_write_header(out, 16, true, 0, 3, NULL), 0);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_TEXT, true, 8, 3, NULL), 0);
}

static void header_masked(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX];
    assert_int_equal(kz_frame_write_header(out, KZ_OP_TEXT, true, 0, 5, rfc_key), 6);
    assert_memory_equal(out, "\x81\x85\x37\xfa\x21\x3d", 6);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 256, rfc_key), 8);
    assert_memory_equal(out, "\x82\xfe\x01\x00\x37\xfa\x21\x3d", 8);
    assert_int_equal(kz_frame_write_header(out, KZ_OP_BINARY, true, 0, 65536, rfc_key), 14);
    assert_memory_equal(out, "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d", 14);
}

/* RFC 6455 §5.7: a masked "Hello", built as a client would send it. */
static void rfc_masked_hello(void **state)
{
    (void)state;
    uint8_t out[32];
    size_t n = kz_frame_write_header(out, KZ_OP_TEXT, true, 0, 5, rfc_key);
    kz_mask_copy(out + n, (const uint8_t *)"Hello", 5, rfc_key, 0);
    uint8_t want[11];
    assert_int_equal(kzt_hex("81 85 37 fa 21 3d 7f 9f 4d 51 58", want, sizeof(want)), 11);
    assert_int_equal(n + 5, 11);
    assert_memory_equal(out, want, 11);
}

static void rfc_ping_and_pong(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    uint8_t want[16];
    size_t wn = kzt_hex("89 05 48 65 6c 6c 6f", want, sizeof(want));
    assert_int_equal(kz_frame_write_ping(out, sizeof(out), (const uint8_t *)"Hello", 5, NULL),
                     (int)wn);
    assert_memory_equal(out, want, wn);
    wn = kzt_hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58", want, sizeof(want));
    assert_int_equal(kz_frame_write_pong(out, sizeof(out), (const uint8_t *)"Hello", 5, rfc_key),
                     (int)wn);
    assert_memory_equal(out, want, wn);
}

static void ping_limits(void **state)
{
    (void)state;
    uint8_t payload[KZ_CONTROL_PAYLOAD_MAX + 1];
    memset(payload, 'p', sizeof(payload));
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX + 1];
    /* 125 bytes is the largest control payload: still a 7-bit length. */
    assert_int_equal(kz_frame_write_ping(out, sizeof(out), payload, 125, NULL), 127);
    assert_memory_equal(out, "\x89\x7d", 2);
    assert_memory_equal(out + 2, payload, 125);
    assert_int_equal(kz_frame_write_ping(out, sizeof(out), payload, 126, NULL),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_frame_write_pong(out, sizeof(out), payload, 126, rfc_key),
                     KZ_ERR_INVALID_ARGUMENT);
    /* An exact fit works; one byte less does not, and nothing is written. */
    assert_int_equal(kz_frame_write_pong(out, 131, payload, 125, rfc_key), 131);
    uint8_t zero[130] = {0};
    uint8_t *small = kzt_guard_copy(zero, sizeof(zero));
    assert_int_equal(kz_frame_write_pong(small, 130, payload, 125, rfc_key),
                     KZ_ERR_BUFFER_TOO_SMALL);
    kzt_guard_free(small, 130);
    /* An empty ping needs no payload pointer. */
    assert_int_equal(kz_frame_write_ping(out, sizeof(out), NULL, 0, NULL), 2);
    assert_memory_equal(out, "\x89\x00", 2);
    assert_int_equal(kz_frame_write_ping(out, 5, NULL, 0, rfc_key), KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_frame_write_ping(out, 6, NULL, 0, rfc_key), 6);
    assert_memory_equal(out, "\x89\x80\x37\xfa\x21\x3d", 6);
}

static void close_without_code(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 0, NULL, 0, NULL), 2);
    assert_memory_equal(out, "\x88\x00", 2);
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 0, "x", 1, NULL),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_frame_write_close(out, 1, 0, NULL, 0, NULL), KZ_ERR_BUFFER_TOO_SMALL);
}

static void close_with_reason(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1000, NULL, 0, NULL), 4);
    assert_memory_equal(out, "\x88\x02\x03\xe8", 4);
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 4001, "bye", 3, NULL), 7);
    assert_memory_equal(out, "\210\005\017\241bye", 7);
    /* Masked: the code is masked with the reason, as one payload. */
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1001, "bye", 3, rfc_key), 11);
    uint8_t want[11] = {0x88, 0x85, 0x37, 0xfa, 0x21, 0x3d};
    const uint8_t plain[5] = {0x03, 0xe9, 'b', 'y', 'e'};
    for (int i = 0; i < 5; i++)
        want[6 + i] = plain[i] ^ rfc_key[i & 3];
    assert_memory_equal(out, want, 11);
}

static void close_longest_reason(void **state)
{
    (void)state;
    char reason[KZ_CLOSE_REASON_MAX + 1];
    memset(reason, 'r', sizeof(reason));
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1000, reason, 123, rfc_key), 131);
    assert_memory_equal(out, "\x88\xfd", 2);
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1000, reason, 124, NULL),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_frame_write_close(out, 130, 1000, reason, 123, rfc_key),
                     KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_frame_write_close(out, 126, 1000, reason, 123, NULL),
                     KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_frame_write_close(out, 127, 1000, reason, 123, NULL), 127);
}

static void close_refuses_bad_codes(void **state)
{
    (void)state;
    static const uint16_t bad[] = {1, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(kz_frame_write_close(out, sizeof(out), bad[i], NULL, 0, NULL),
                         KZ_ERR_INVALID_ARGUMENT);
        assert_int_equal(kz_frame_write_close(out, sizeof(out), bad[i], "x", 1, NULL),
                         KZ_ERR_INVALID_ARGUMENT);
    }
}

static void close_refuses_bad_utf8(void **state)
{
    (void)state;
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1000, "a\xff", 2, NULL),
                     KZ_ERR_INVALID_UTF8);
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1000, "\xce", 1, NULL),
                     KZ_ERR_INVALID_UTF8);
    assert_int_equal(kz_frame_write_close(out, sizeof(out), 1000, "\xce\xba", 2, NULL), 6);
}

/* ---- round trip: frames from the writer, through the parser ---- */

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static size_t rnd_len(void)
{
    static const size_t edges[] = {0, 1, 2, 3, 4, 5, 124, 125, 126, 127, 65535, 65536, 65537};
    if (rnd() % 3 == 0)
        return edges[rnd() % (sizeof(edges) / sizeof(edges[0]))];
    return rnd() % 600;
}

struct expect {
    enum kz_event_type type;
    uint8_t opcode;
    uint8_t *data; /* owned copy of the payload */
    size_t len;
};

#define MAX_EXPECT 64

struct script {
    uint8_t *wire;
    size_t wire_len, wire_cap;
    struct expect ev[MAX_EXPECT];
    size_t nev;
};

static void grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    *p = realloc(*p, c);
    assert_non_null(*p);
    *cap = c;
}

static void append(struct script *s, const uint8_t *bytes, size_t n)
{
    grow(&s->wire, &s->wire_cap, s->wire_len + n);
    memcpy(s->wire + s->wire_len, bytes, n);
    s->wire_len += n;
}

static void expect(struct script *s, enum kz_event_type type, uint8_t opcode, const uint8_t *data,
                   size_t len)
{
    assert_true(s->nev < MAX_EXPECT);
    struct expect *x = &s->ev[s->nev++];
    x->type = type;
    x->opcode = opcode;
    x->data = malloc(len + 1);
    assert_non_null(x->data);
    if (len)
        memcpy(x->data, data, len);
    x->len = len;
}

/* Appends one data frame written by the writer, masked if `masked`. */
static void emit_frame(struct script *s, unsigned op, bool fin, const uint8_t *payload, size_t len,
                       bool masked)
{
    uint8_t key[4];
    for (int i = 0; i < 4; i++)
        key[i] = (uint8_t)rnd();
    grow(&s->wire, &s->wire_cap, s->wire_len + KZ_FRAME_HEADER_MAX + len);
    size_t n = kz_frame_write_header(s->wire + s->wire_len, op, fin, 0, len, masked ? key : NULL);
    assert_int_equal(n, kz_frame_header_size(len, masked));
    s->wire_len += n;
    if (masked)
        kz_mask_copy(s->wire + s->wire_len, payload, len, key, 0);
    else if (len)
        memcpy(s->wire + s->wire_len, payload, len);
    s->wire_len += len;
}

/* Random messages of random fragments, pings between some fragments, then a close. */
static void build_script(struct script *s, bool masked)
{
    memset(s, 0, sizeof(*s));
    uint8_t *msg = NULL;
    size_t msg_cap = 0;
    size_t messages = 1 + rnd() % 6;
    for (size_t m = 0; m < messages; m++) {
        unsigned op = rnd() % 2 ? KZ_OP_TEXT : KZ_OP_BINARY;
        size_t frames = 1 + rnd() % 3;
        size_t msg_len = 0;
        for (size_t f = 0; f < frames; f++) {
            size_t len = rnd_len();
            grow(&msg, &msg_cap, msg_len + len + 1);
            uint8_t *pl = msg + msg_len;
            for (size_t i = 0; i < len; i++)
                pl[i] = op == KZ_OP_TEXT ? (uint8_t)(' ' + rnd() % 95) : (uint8_t)rnd();
            msg_len += len;
            emit_frame(s, f == 0 ? op : KZ_OP_CONTINUATION, f + 1 == frames, pl, len, masked);
            if (f + 1 < frames && rnd() % 3 == 0) {
                /* A ping between fragments, as §5.4 allows. */
                size_t plen = rnd() % 126;
                uint8_t ping[KZ_CONTROL_PAYLOAD_MAX];
                for (size_t i = 0; i < plen; i++)
                    ping[i] = (uint8_t)rnd();
                uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
                uint8_t key[4] = {(uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd(), 1};
                int n = kz_frame_write_ping(out, sizeof(out), ping, plen, masked ? key : NULL);
                assert_int_equal(n, (int)(kz_frame_header_size(plen, masked) + plen));
                append(s, out, (size_t)n);
                expect(s, KZ_EV_PING, KZ_OP_PING, ping, plen);
            }
        }
        expect(s, KZ_EV_MESSAGE, (uint8_t)op, msg, msg_len);
    }
    free(msg);
    uint8_t out[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX];
    uint8_t key[4] = {9, 8, 7, 6};
    int n = kz_frame_write_close(out, sizeof(out), 1000, "done", 4, masked ? key : NULL);
    assert_int_equal(n, masked ? 12 : 8);
    append(s, out, (size_t)n);
    expect(s, KZ_EV_CLOSE, KZ_OP_CLOSE, (const uint8_t *)"\003\350done", 6);
}

static void free_script(struct script *s)
{
    for (size_t i = 0; i < s->nev; i++)
        free(s->ev[i].data);
    free(s->wire);
}

/* Runs the script's wire through a parser and compares every event. */
static void check_script(const struct script *s, enum kz_role role, enum kz_parse_mode mode)
{
    struct kz_parser_config cfg;
    kz_parser_config_default(&cfg, role);
    cfg.mode = mode;
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    assert_non_null(p);
    uint8_t *wire = kzt_guard_copy(s->wire, s->wire_len);
    size_t pos = 0, ei = 0, total = 0;
    for (size_t i = 0; i < s->nev; i++)
        total += s->ev[i].len;
    uint8_t *msg = malloc(total + 1);
    assert_non_null(msg);
    size_t msg_len = 0;
    for (;;) {
        struct kz_event ev;
        ptrdiff_t n = kz_parser_parse(p, wire + pos, s->wire_len - pos, &ev);
        assert_true(n >= 0);
        pos += (size_t)n;
        if (ev.type == KZ_EV_NONE) {
            assert_int_equal(pos, s->wire_len);
            break;
        }
        if (ev.type == KZ_EV_DATA) {
            if (ev.len)
                memcpy(msg + msg_len, ev.data, ev.len);
            msg_len += ev.len;
            if (!ev.fin)
                continue;
            ev.type = KZ_EV_MESSAGE;
            ev.data = msg;
            ev.len = msg_len;
            msg_len = 0;
        }
        assert_true(ei < s->nev);
        const struct expect *x = &s->ev[ei++];
        assert_int_equal(ev.type, x->type);
        assert_int_equal(ev.opcode, x->opcode);
        assert_int_equal(ev.len, x->len);
        if (x->len)
            assert_memory_equal(ev.data, x->data, x->len);
        if (ev.type == KZ_EV_CLOSE) {
            assert_int_equal(ev.close_code, 1000);
            assert_int_equal(ev.close_reason.len, 4);
            assert_memory_equal(ev.close_reason.ptr, "done", 4);
        }
    }
    assert_int_equal(ei, s->nev);
    free(msg);
    kzt_guard_free(wire, s->wire_len);
    kz_parser_free(p);
}

static void round_trip_random_frames(void **state)
{
    (void)state;
    rng_state = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 300; iter++) {
        for (int masked = 0; masked < 2; masked++) {
            struct script s;
            build_script(&s, masked);
            enum kz_role role = masked ? KZ_ROLE_SERVER : KZ_ROLE_CLIENT;
            check_script(&s, role, KZ_PARSE_FRAMES);
            check_script(&s, role, KZ_PARSE_MESSAGES);
            free_script(&s);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_sizes),
        cmocka_unit_test(header_7bit_boundary),
        cmocka_unit_test(header_16bit_boundary),
        cmocka_unit_test(header_64bit_limits),
        cmocka_unit_test(header_bits),
        cmocka_unit_test(header_masked),
        cmocka_unit_test(rfc_masked_hello),
        cmocka_unit_test(rfc_ping_and_pong),
        cmocka_unit_test(ping_limits),
        cmocka_unit_test(close_without_code),
        cmocka_unit_test(close_with_reason),
        cmocka_unit_test(close_longest_reason),
        cmocka_unit_test(close_refuses_bad_codes),
        cmocka_unit_test(close_refuses_bad_utf8),
        cmocka_unit_test(round_trip_random_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
