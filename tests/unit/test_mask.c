/*
 * Masking: every path (words, SSE2, AVX2 when the CPU has it, and the
 * public dispatch), in place and copying, against a byte-by-byte reference,
 * at every length, key phase and alignment, with buffers that end at a
 * guard page and sentinels before them, so that a stray access shows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/frame.h"
#include "proto/utf8_internal.h"
#include "helpers.h"

typedef size_t (*mask_fn)(uint8_t *, const uint8_t *, size_t, const uint8_t[4], size_t);

struct path {
    const char *name;
    mask_fn copy;
};

static size_t public_in_place(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                              size_t offset)
{
    if (dst != src)
        memcpy(dst, src, len);
    return kz_mask(dst, len, key, offset);
}

static size_t get_paths(struct path *out)
{
    size_t n = 0;
    out[n++] = (struct path){"word", kz__mask_copy_word};
#if KZ_HAVE_SSE2
    out[n++] = (struct path){"sse2", kz__mask_copy_sse2};
#endif
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        out[n++] = (struct path){"avx2", kz__mask_copy_avx2};
#endif
    out[n++] = (struct path){"public copy", kz_mask_copy};
    out[n++] = (struct path){"public in place", public_in_place};
    return n;
}

#define MAX_PATHS 8

static void ref_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                     size_t offset)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] ^ key[(offset + i) % 4];
}

static uint64_t rng_state = 1; /* never 0: xorshift would stay there */

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)rnd();
}

static void rfc6455_example(void **state)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    static const uint8_t masked[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    for (size_t j = 0; j < np; j++) {
        uint8_t *src = kzt_guard_copy("Hello", 5);
        uint8_t *dst = kzt_guard_copy("xxxxx", 5);
        assert_int_equal(paths[j].copy(dst, src, 5, key, 0), 5);
        assert_memory_equal(dst, masked, 5);
        assert_int_equal(paths[j].copy(src, src, 5, key, 0), 5);
        assert_memory_equal(src, masked, 5);
        assert_int_equal(paths[j].copy(src, src, 5, key, 0), 5);
        assert_memory_equal(src, "Hello", 5);
        kzt_guard_free(src, 5);
        kzt_guard_free(dst, 5);
    }
    uint8_t frame[5];
    memcpy(frame, masked, 5);
    assert_int_equal(kz_mask(frame, 5, key, 0), 5);
    assert_memory_equal(frame, "Hello", 5);
}

/* Offsets beyond 3 count payload bytes already masked: only their value mod 4 matters. */
static const size_t offsets[] = {0, 1, 2, 3, 4, 5, 6, 7, 1001, SIZE_MAX - 2};

static void every_length_and_offset(void **state)
{
    static const uint8_t key[4] = {0xa1, 0x5b, 0x3c, 0xe7};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    uint8_t src[301], want[301], back[301];
    fill_random(src, sizeof src);
    for (size_t len = 0; len <= 300; len++) {
        uint8_t *in = kzt_guard_copy(src, len);
        uint8_t *out = kzt_guard_copy(src, len);
        for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
            ref_mask(want, src, len, key, offsets[o]);
            for (size_t j = 0; j < np; j++) {
                memset(out, 0, len);
                assert_int_equal(paths[j].copy(out, in, len, key, offsets[o]), offsets[o] + len);
                if (len > 0 && memcmp(out, want, len) != 0)
                    fail_msg("%s: len %zu offset %zu", paths[j].name, len, offsets[o]);
                assert_memory_equal(in, src, len);
                /* Masking twice with the same key and offset gives the data back. */
                paths[j].copy(out, out, len, key, offsets[o]);
                if (len > 0)
                    assert_memory_equal(out, src, len);
                ref_mask(back, want, len, key, offsets[o]);
                if (len > 0)
                    assert_memory_equal(back, src, len);
            }
        }
        kzt_guard_free(in, len);
        kzt_guard_free(out, len);
    }
    assert_int_equal(kz_mask(NULL, 0, key, 3), 3);
    assert_int_equal(kz_mask_copy(NULL, NULL, 0, key, 2), 2);
}

/*
 * Every source and destination alignment: the data lies `gap` bytes before
 * the end of a buffer that ends at a guard page (gap 0: a read past the
 * end faults), and sentinel bytes on both sides must stay as they were.
 */
static void every_alignment(void **state)
{
    static const uint8_t key[4] = {0x01, 0x80, 0xff, 0x7e};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    enum { MAXLEN = 200, SIDE = 64, SENT = 0xAA };
    uint8_t data[MAXLEN], want[MAXLEN];
    fill_random(data, sizeof data);
    for (size_t len = 0; len <= MAXLEN; len += len < 70 ? 1 : 13) {
        size_t span = SIDE + len + SIDE;
        uint8_t *buf = malloc(span);
        assert_non_null(buf);
        memset(buf, SENT, span);
        uint8_t *sbuf = kzt_guard_copy(buf, span);
        uint8_t *dbuf = kzt_guard_copy(buf, span);
        free(buf);
        for (size_t gap = 0; gap < SIDE; gap++) {
            size_t dgap = (gap * 7 + 3) % SIDE;
            uint8_t *s = sbuf + span - gap - len, *d = dbuf + span - dgap - len;
            size_t off = (gap + len) % 4;
            ref_mask(want, data, len, key, off);
            for (size_t j = 0; j < np; j++) {
                memset(sbuf, SENT, span);
                memset(dbuf, SENT, span);
                memcpy(s, data, len);
                paths[j].copy(d, s, len, key, off);
                if (len > 0 && memcmp(d, want, len) != 0)
                    fail_msg("%s copy: len %zu gap %zu", paths[j].name, len, gap);
                paths[j].copy(s, s, len, key, off);
                if (len > 0 && memcmp(s, want, len) != 0)
                    fail_msg("%s in place: len %zu gap %zu", paths[j].name, len, gap);
                for (size_t k = 0; k < span; k++) {
                    if ((dbuf + k < d || dbuf + k >= d + len) && dbuf[k] != SENT)
                        fail_msg("%s copy wrote outside: len %zu gap %zu", paths[j].name, len, gap);
                    if ((sbuf + k < s || sbuf + k >= s + len) && sbuf[k] != SENT)
                        fail_msg("%s in place wrote outside: len %zu gap %zu", paths[j].name, len,
                                 gap);
                }
            }
        }
        kzt_guard_free(sbuf, span);
        kzt_guard_free(dbuf, span);
    }
}

/* A payload masked in random pieces, passing each return value on, equals one whole call. */
static void pieces_equal_one_call(void **state)
{
    static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    enum { LEN = 5000 };
    uint8_t *src = malloc(LEN), *whole = malloc(LEN), *pieces = malloc(LEN);
    assert_non_null(src);
    assert_non_null(whole);
    assert_non_null(pieces);
    for (int round = 0; round < 200; round++) {
        size_t len = rnd() % LEN;
        size_t start = rnd() % 4;
        fill_random(src, len);
        ref_mask(whole, src, len, key, start);
        for (size_t j = 0; j < np; j++) {
            size_t pos = 0, off = start;
            bool reduce = round % 2 == 0; /* the caller may pass the offset back mod 4, or not */
            while (pos < len) {
                size_t c = rnd() % 3 == 0 ? rnd() % 8 : rnd() % 300;
                if (c > len - pos)
                    c = len - pos;
                size_t next = paths[j].copy(pieces + pos, src + pos, c, key, off);
                assert_int_equal(next, off + c);
                off = reduce ? next % 4 : next;
                pos += c;
            }
            if (len > 0 && memcmp(pieces, whole, len) != 0)
                fail_msg("%s: round %d len %zu", paths[j].name, round, len);
        }
    }
    free(src);
    free(whole);
    free(pieces);
}

/* Long random buffers at random alignments and offsets, every path against the reference. */
static void random_buffers(void **state)
{
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    enum { LEN = 70000 };
    uint8_t *src = malloc(LEN + 64), *want = malloc(LEN), *got = malloc(LEN + 64);
    assert_non_null(src);
    assert_non_null(want);
    assert_non_null(got);
    for (int round = 0; round < 100; round++) {
        uint8_t key[4];
        fill_random(key, 4);
        size_t len = round < 10 ? LEN - (size_t)round : rnd() % LEN;
        size_t sa = rnd() % 64, da = rnd() % 64, off = rnd();
        fill_random(src + sa, len);
        ref_mask(want, src + sa, len, key, off);
        for (size_t j = 0; j < np; j++) {
            assert_int_equal(paths[j].copy(got + da, src + sa, len, key, off), off + len);
            if (len > 0 && memcmp(got + da, want, len) != 0)
                fail_msg("%s: len %zu", paths[j].name, len);
        }
    }
    free(src);
    free(want);
    free(got);
}

int main(void)
{
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    printf("paths:");
    for (size_t i = 0; i < np; i++)
        printf("%s %s", i ? "," : "", paths[i].name);
    printf("\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc6455_example), cmocka_unit_test(every_length_and_offset),
        cmocka_unit_test(every_alignment), cmocka_unit_test(pieces_equal_one_call),
        cmocka_unit_test(random_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
