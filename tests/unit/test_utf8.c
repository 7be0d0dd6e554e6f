/*
 * UTF-8 validation: every path (the byte automaton, the word and SSE2 ASCII
 * skips, AVX2 when the CPU has it, and the public dispatch) against a
 * reference written from the RFC 3629 grammar, whole and in every kind of
 * split. A split must fail in exactly the call that delivers the first
 * byte that cannot be part of valid UTF-8.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/utf8.h"
#include "proto/utf8_internal.h"
#include "helpers.h"
#include "../support/utf8_encode.h"

typedef int (*feed_fn)(kz_utf8_state *, const uint8_t *, size_t);

struct path {
    const char *name;
    feed_fn feed;
};

/* The paths this machine can run; returns how many. */
static size_t get_paths(struct path *out)
{
    size_t n = 0;
    out[n++] = (struct path){"bytes", kz__utf8_feed_bytes};
    out[n++] = (struct path){"word", kz__utf8_feed_word};
#if KZ_HAVE_SSE2
    out[n++] = (struct path){"sse2", kz__utf8_feed_sse2};
#endif
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        out[n++] = (struct path){"avx2", kz__utf8_feed_avx2};
#endif
    out[n++] = (struct path){"public", kz_utf8_feed};
    return n;
}

#define MAX_PATHS 8

/* ---- reference ------------------------------------------------------- */

enum ref { REF_VALID, REF_INCOMPLETE, REF_INVALID };

/*
 * RFC 3629 §4 as written: the lead byte decides the length and the range
 * of the second byte; all later bytes are 80..BF. *bad is the index of the
 * first byte that breaks the grammar.
 */
static enum ref ref_utf8(const uint8_t *p, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t more;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b <= 0x7F) {
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            more = 1;
        } else if (b == 0xE0) {
            more = 2;
            lo = 0xA0;
        } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
            more = 2;
        } else if (b == 0xED) {
            more = 2;
            hi = 0x9F;
        } else if (b == 0xF0) {
            more = 3;
            lo = 0x90;
        } else if (b >= 0xF1 && b <= 0xF3) {
            more = 3;
        } else if (b == 0xF4) {
            more = 3;
            hi = 0x8F;
        } else {
            *bad = i;
            return REF_INVALID;
        }
        for (size_t j = 1; j <= more; j++) {
            if (i + j == n)
                return REF_INCOMPLETE;
            uint8_t c = p[i + j];
            uint8_t min = j == 1 ? lo : 0x80, max = j == 1 ? hi : 0xBF;
            if (c < min || c > max) {
                *bad = i + j;
                return REF_INVALID;
            }
        }
        i += more + 1;
    }
    return REF_VALID;
}

static uint64_t rng_state = 1; /* never 0: xorshift would stay there */

static uint32_t rnd(void)
{
    /* xorshift64*: reproducible from the seed each test sets */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Random valid text of exactly `len` bytes: ASCII, 2-, 3- and 4-byte code points. */
static void random_text(uint8_t *out, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        switch (rnd() % 4) {
        case 0:
            cp = rnd() % 0x80;
            break;
        case 1:
            cp = 0x80 + rnd() % (0x800 - 0x80);
            break;
        case 2:
            do
                cp = 0x800 + rnd() % (0x10000 - 0x800);
            while (cp >= 0xD800 && cp <= 0xDFFF);
            break;
        default:
            cp = 0x10000 + rnd() % (0x110000 - 0x10000);
            break;
        }
        uint8_t buf[4];
        size_t n = kzt_utf8_encode(cp, buf);
        if (n > len - i)
            n = kzt_utf8_encode(rnd() % 0x80, buf);
        memcpy(out + i, buf, n);
        i += n;
    }
}

/* ---- checking a text through every path and split --------------------- */

/*
 * Splits: 0 whole, 1..SPLIT_FIXED fixed chunk sizes, then random sizes,
 * then random sizes with the path changing at every chunk.
 */
static const size_t chunk_sizes[] = {1,  2,  3,  4,  5,  7,  8,  15,  16,
                                     17, 31, 32, 33, 63, 64, 65, 100, 200};
#define N_FIXED  (sizeof chunk_sizes / sizeof chunk_sizes[0])
#define N_SPLITS (1 + N_FIXED + 2)

static size_t next_chunk(size_t split, size_t remaining)
{
    size_t c;
    if (split == 0)
        c = remaining;
    else if (split <= N_FIXED)
        c = chunk_sizes[split - 1];
    else
        c = rnd() % 150;
    return c < remaining ? c : remaining;
}

/*
 * Feeds p[0..n) through `paths` (the chunk k uses paths[k % npaths]) with
 * the given split and checks the outcome against the reference.
 */
static void check_split(const struct path *paths, size_t npaths, const uint8_t *p, size_t n,
                        size_t split)
{
    size_t bad = 0;
    enum ref want = ref_utf8(p, n, &bad);
    kz_utf8_state st = KZ_UTF8_ACCEPT;
    size_t pos = 0, k = 0;
    do {
        const struct path *path = &paths[k++ % npaths];
        size_t c = next_chunk(split, n - pos);
        int r = path->feed(&st, p + pos, c);
        if (r != KZ_OK) {
            if (r != KZ_ERR_INVALID_UTF8)
                fail_msg("%s: returned %d", path->name, r);
            if (want != REF_INVALID || bad < pos || bad >= pos + c)
                fail_msg("%s split %zu: failed on [%zu,%zu) of %zu, reference %d at %zu",
                         path->name, split, pos, pos + c, n, (int)want, bad);
            assert_int_equal(kz_utf8_finish(st), KZ_ERR_INVALID_UTF8);
            return;
        }
        if (want == REF_INVALID && bad >= pos && bad < pos + c)
            fail_msg("%s split %zu: accepted [%zu,%zu) of %zu, invalid at %zu", path->name, split,
                     pos, pos + c, n, bad);
        pos += c;
    } while (pos < n);
    if (want == REF_INVALID)
        fail_msg("accepted an invalid text of %zu bytes", n);
    assert_int_equal(kz_utf8_finish(st), want == REF_VALID ? KZ_OK : KZ_ERR_INVALID_UTF8);
}

static void check_valid_fns(const uint8_t *p, size_t n)
{
    size_t bad;
    bool want = ref_utf8(p, n, &bad) == REF_VALID;
    assert_int_equal(kz_utf8_valid(p, n), want);
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        assert_int_equal(kz__utf8_valid_avx2(p, n), want);
#endif
}

/* Every path alone in every split, all paths mixed, and the one-call validators. */
static void check_text(const uint8_t *p, size_t n)
{
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    for (size_t i = 0; i < np; i++)
        for (size_t split = 0; split < N_SPLITS - 1; split++)
            check_split(&paths[i], 1, p, n, split);
    check_split(paths, np, p, n, N_SPLITS - 1);
    check_valid_fns(p, n);
}

/* The same, on a copy that ends at a guard page. */
static void check_guarded(const uint8_t *p, size_t n)
{
    uint8_t *g = kzt_guard_copy(p, n);
    check_text(g, n);
    kzt_guard_free(g, n);
}

/* ---- tests ------------------------------------------------------------ */

static void valid_texts(void **state)
{
    static const char *const texts[] = {
        "",
        "Hello, world",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* κόσμε */
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",         /* 日本語 */
        "\xf0\x9f\x98\x80 \xf0\x9f\x8e\x89",            /* emoji */
        "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xb8\x96\xe7\x95\x8c!",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        check_guarded((const uint8_t *)texts[i], strlen(texts[i]));
        assert_true(kz_utf8_valid((const uint8_t *)texts[i], strlen(texts[i])));
    }
    kz_utf8_state st = KZ_UTF8_ACCEPT;
    assert_int_equal(kz_utf8_feed(&st, NULL, 0), KZ_OK);
    assert_true(kz_utf8_valid(NULL, 0));
}

static void boundary_code_points(void **state)
{
    static const uint32_t valid[] = {0x0,     0x7F,    0x80,    0x7FF,    0x800,   0xFFF,  0x1000,
                                     0xCFFF,  0xD000,  0xD7FF,  0xE000,   0xFFFD,  0xFFFF, 0x10000,
                                     0x3FFFF, 0x40000, 0xFFFFF, 0x100000, 0x10FFFF};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        uint8_t buf[4];
        size_t n = kzt_utf8_encode(valid[i], buf);
        size_t bad;
        assert_int_equal(ref_utf8(buf, n, &bad), REF_VALID);
        assert_true(kz_utf8_valid(buf, n));
        check_guarded(buf, n);
    }
    /* The encoder's output for surrogates and U+110000 is what must be refused. */
    static const uint32_t invalid[] = {0xD800, 0xDB7F, 0xDC00, 0xDFFF, 0x110000, 0x1FFFFF};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        uint8_t buf[4];
        size_t n = kzt_utf8_encode(invalid[i], buf);
        assert_false(kz_utf8_valid(buf, n));
        check_guarded(buf, n);
    }
}

struct bad_case {
    const char *hex;
    size_t bad; /* index of the first impossible byte */
};

static void invalid_classes(void **state)
{
    static const struct bad_case cases[] = {
        {"c0 80", 0},
        {"c1 bf", 0},
        {"c0 41", 0}, /* C0, C1 */
        {"e0 80 80", 1},
        {"e0 9f bf", 1},
        {"e0 9f", 1}, /* overlong 3 */
        {"f0 80 80 80", 1},
        {"f0 8f bf bf", 1}, /* overlong 4 */
        {"ed a0 80", 1},
        {"ed bf bf", 1},
        {"ed af bf", 1}, /* surrogates */
        {"f4 90 80 80", 1},
        {"f4 bf bf bf", 1}, /* > U+10FFFF */
        {"f5 80 80 80", 0},
        {"f7 bf bf bf", 0},
        {"f8 88 80 80 80", 0},
        {"fc 84 80 80 80 80", 0},
        {"fe", 0},
        {"ff", 0},
        {"80", 0},
        {"bf", 0},
        {"41 80", 1}, /* stray */
        {"c2 80 80", 2},
        {"e1 80 80 80", 3},
        {"f1 80 80 80 80", 4},
        {"c2 41", 1},
        {"e1 41", 1},
        {"e1 80 41", 2}, /* lead, then ASCII */
        {"f1 41", 1},
        {"f1 80 41", 2},
        {"f1 80 80 41", 3},
        {"c2 c2 80", 1},
        {"e1 e1 80 80", 1},
        {"f1 80 f1 80 80 80", 2},
        {"ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64", 12},
        {"ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80 65 64 69 74 65 64", 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[64];
        size_t n = kzt_hex(cases[i].hex, buf, sizeof buf), bad = SIZE_MAX;
        assert_int_equal(ref_utf8(buf, n, &bad), REF_INVALID);
        assert_int_equal(bad, cases[i].bad);
        assert_false(kz_utf8_valid(buf, n));
        check_guarded(buf, n);
    }
}

static void truncated_sequences(void **state)
{
    static const char *const cases[] = {"c2",       "df",       "e0 a0",       "e1",
                                        "ed 9f",    "ef bf",    "f0 90",       "f1",
                                        "f3 bf bf", "f4 8f bf", "41 42 e2 82", "ce ba f4"};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[16];
        size_t n = kzt_hex(cases[i], buf, sizeof buf);
        assert_false(kz_utf8_valid(buf, n));
        for (size_t j = 0; j < np; j++) {
            kz_utf8_state st = KZ_UTF8_ACCEPT;
            assert_int_equal(paths[j].feed(&st, buf, n), KZ_OK);
            assert_int_not_equal(st, KZ_UTF8_ACCEPT);
            assert_int_equal(kz_utf8_finish(st), KZ_ERR_INVALID_UTF8);
        }
        check_guarded(buf, n);
    }
}

/* The brief's own examples: the second call must be the failing one. */
static void carried_sequence_fails_on_next_call(void **state)
{
    static const char *const cases[][2] = {
        {"ce ba f4", "90"}, {"ed", "a0"},    {"e0", "80"},       {"f0", "8f"},
        {"c2", "41"},       {"e1 80", "41"}, {"f1", "80 80 41"},
    };
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t a[8], b[8];
        size_t na = kzt_hex(cases[i][0], a, sizeof a), nb = kzt_hex(cases[i][1], b, sizeof b);
        /* The same second piece made long enough for the AVX2 path to take it. */
        uint8_t long_b[200];
        memcpy(long_b, b, nb);
        memset(long_b + nb, 'a', sizeof long_b - nb);
        for (size_t j = 0; j < np; j++) {
            kz_utf8_state st = KZ_UTF8_ACCEPT;
            assert_int_equal(paths[j].feed(&st, a, na), KZ_OK);
            assert_int_equal(paths[j].feed(&st, long_b, sizeof long_b), KZ_ERR_INVALID_UTF8);
            st = KZ_UTF8_ACCEPT;
            assert_int_equal(paths[j].feed(&st, a, na), KZ_OK);
            assert_int_equal(paths[j].feed(&st, b, nb), KZ_ERR_INVALID_UTF8);
            /* An error sticks, whatever comes next. */
            assert_int_equal(paths[j].feed(&st, (const uint8_t *)"a", 1), KZ_ERR_INVALID_UTF8);
            assert_int_equal(kz_utf8_finish(st), KZ_ERR_INVALID_UTF8);
        }
    }
}

/*
 * Autobahn 6.4.x: "κόσμε" then a surrogate or a value over U+10FFFF, then
 * "edited", in chunks of every size; also behind a long prefix, so that the
 * AVX2 kernel sees chunks big enough to take and the bad byte lands in its
 * region, in the scalar tail or in the carried head.
 */
static void autobahn_fail_fast(void **state)
{
    static const char *const bads[] = {"\xed\xa0\x80", "\xf4\x90\x80\x80"};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    for (size_t b = 0; b < 2; b++) {
        for (size_t prefix = 0; prefix <= 300; prefix += 100) {
            uint8_t text[512];
            size_t n = 0;
            rng_state = 7 + prefix;
            random_text(text, prefix);
            n = prefix;
            const char *parts[] = {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", bads[b],
                                   "edited"};
            for (size_t k = 0; k < 3; k++) {
                memcpy(text + n, parts[k], strlen(parts[k]));
                n += strlen(parts[k]);
            }
            size_t bad_at = prefix + 12;
            size_t bad;
            assert_int_equal(ref_utf8(text, n, &bad), REF_INVALID);
            assert_int_equal(bad, bad_at);
            for (size_t j = 0; j < np; j++) {
                for (size_t chunk = 1; chunk <= n; chunk++) {
                    kz_utf8_state st = KZ_UTF8_ACCEPT;
                    size_t pos = 0;
                    int r = KZ_OK;
                    while (pos < n) {
                        size_t c = chunk < n - pos ? chunk : n - pos;
                        r = paths[j].feed(&st, text + pos, c);
                        if (r != KZ_OK)
                            break;
                        pos += c;
                    }
                    assert_int_equal(r, KZ_ERR_INVALID_UTF8);
                    if (bad_at < pos || bad_at >= pos + chunk)
                        fail_msg("%s chunk %zu: failed at [%zu, +%zu), bad byte %zu", paths[j].name,
                                 chunk, pos, chunk, bad_at);
                }
            }
        }
    }
}

/* Every start alignment, with the text's last byte just before a guard page. */
static void every_alignment(void **state)
{
    uint8_t text[300];
    rng_state = 11;
    random_text(text, 200);
    /* Valid, a surrogate, a sequence cut short by ASCII, one cut short by the end. */
    static const char *const tails[] = {"ok", "\xed\xa0\x80ok", "\xe2\x82ok", "\xe2\x82"};
    for (size_t t = 0; t < 4; t++) {
        size_t n = 200 + strlen(tails[t]);
        memcpy(text + 200, tails[t], strlen(tails[t]));
        for (size_t pad = 0; pad < 64; pad++) {
            uint8_t buf[400];
            memset(buf, 'a', pad);
            memcpy(buf + pad, text, n);
            check_guarded(buf, pad + n);
            /* And with the start fixed while the end moves. */
            uint8_t *heap = malloc(pad + n);
            assert_non_null(heap);
            memcpy(heap + pad, text, n);
            check_text(heap + pad, n);
            free(heap);
        }
    }
}

#define LONG_LEN (10 * 1024)

static void long_random_text(void **state)
{
    uint8_t *text = malloc(LONG_LEN);
    assert_non_null(text);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        rng_state = seed;
        random_text(text, LONG_LEN);
        size_t bad;
        assert_int_equal(ref_utf8(text, LONG_LEN, &bad), REF_VALID);
        check_guarded(text, LONG_LEN);
    }
    free(text);
}

/* Splitting a long text in two at every point exercises the AVX2 head and tail logic. */
static void long_text_split_everywhere(void **state)
{
    uint8_t *text = malloc(LONG_LEN);
    assert_non_null(text);
    rng_state = 99;
    random_text(text, LONG_LEN);
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    for (size_t j = 0; j < np; j++) {
        for (size_t cut = 0; cut <= LONG_LEN; cut++) {
            kz_utf8_state st = KZ_UTF8_ACCEPT;
            assert_int_equal(paths[j].feed(&st, text, cut), KZ_OK);
            assert_int_equal(paths[j].feed(&st, text + cut, LONG_LEN - cut), KZ_OK);
            assert_int_equal(kz_utf8_finish(st), KZ_OK);
        }
    }
    free(text);
}

/* Single-byte corruptions of a long valid text, at random and near the ends. */
static void long_text_corruptions(void **state)
{
    uint8_t *text = malloc(LONG_LEN);
    assert_non_null(text);
    rng_state = 1234;
    random_text(text, LONG_LEN);
    uint8_t *g = kzt_guard_copy(text, LONG_LEN);
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    size_t invalid = 0;
    for (size_t round = 0; round < 600; round++) {
        size_t at = round < 100   ? round
                    : round < 200 ? LONG_LEN - 1 - (round - 100)
                                  : rnd() % LONG_LEN;
        uint8_t old = g[at];
        g[at] = (uint8_t)rnd();
        size_t bad;
        invalid += ref_utf8(g, LONG_LEN, &bad) == REF_INVALID;
        for (size_t j = 0; j < np; j++) {
            check_split(&paths[j], 1, g, LONG_LEN, 0);
            check_split(&paths[j], 1, g, LONG_LEN, N_SPLITS - 2);
            check_split(&paths[j], 1, g, LONG_LEN, 15); /* chunks of 64 */
            if (round % 20 == 0)
                check_split(&paths[j], 1, g, LONG_LEN, 1);
        }
        check_split(paths, np, g, LONG_LEN, N_SPLITS - 1);
        check_valid_fns(g, LONG_LEN);
        g[at] = old;
    }
    /* Most random replacements break the text; make sure this test is not vacuous. */
    assert_true(invalid > 300);
    kzt_guard_free(g, LONG_LEN);
    free(text);
}

/* Every 2-byte string, at offsets around the 16-, 32- and 64-byte block edges. */
static void exhaustive_pairs(void **state)
{
    static const size_t offsets[] = {0, 1, 14, 15, 16, 30, 31, 32, 62, 63, 64, 100, 126};
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    uint8_t buf[128];
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        for (unsigned v = 0; v < 0x10000; v++) {
            memset(buf, 'x', sizeof buf);
            buf[offsets[o]] = (uint8_t)(v >> 8);
            buf[offsets[o] + 1] = (uint8_t)v;
            size_t bad;
            enum ref want = ref_utf8(buf, sizeof buf, &bad);
            for (size_t j = 0; j < np; j++) {
                kz_utf8_state st = KZ_UTF8_ACCEPT;
                int r = paths[j].feed(&st, buf, sizeof buf);
                if ((r == KZ_OK) != (want != REF_INVALID) ||
                    (r == KZ_OK && (st == KZ_UTF8_ACCEPT) != (want == REF_VALID)))
                    fail_msg("%s: %02x %02x at %zu", paths[j].name, v >> 8, v & 0xFF, offsets[o]);
            }
            assert_int_equal(kz_utf8_valid(buf, sizeof buf), want == REF_VALID);
        }
    }
}

/*
 * Every 3-byte string that starts with a lead byte, alone and across the
 * AVX2 lane and block edges; and the 4-byte ones that start F0..F7, with
 * every second byte and a byte of each class in the third and fourth place.
 */
static void exhaustive_triples_and_quads(void **state)
{
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    const struct path *fast = &paths[np - 1]; /* the public dispatch */
    uint8_t buf[128];
    static const size_t offsets[] = {0, 30, 62};
    for (size_t o = 0; o < 3; o++) {
        size_t len = offsets[o] == 0 ? 3 : sizeof buf;
        memset(buf, 'x', sizeof buf);
        for (uint32_t v = 0xC00000; v < 0x1000000; v++) {
            buf[offsets[o]] = (uint8_t)(v >> 16);
            buf[offsets[o] + 1] = (uint8_t)(v >> 8);
            buf[offsets[o] + 2] = (uint8_t)v;
            size_t bad;
            bool want = ref_utf8(buf, len, &bad) == REF_VALID;
            kz_utf8_state st = KZ_UTF8_ACCEPT;
            bool got = fast->feed(&st, buf, len) == KZ_OK && st == KZ_UTF8_ACCEPT;
            if (got != want || kz_utf8_valid(buf, len) != want)
                fail_msg("%06x at %zu: want %d", v, offsets[o], want);
            st = KZ_UTF8_ACCEPT;
            if ((paths[0].feed(&st, buf, len) == KZ_OK && st == KZ_UTF8_ACCEPT) != want)
                fail_msg("bytes: %06x at %zu", v, offsets[o]);
        }
    }
    /* Bytes from every class the automaton tells apart, for the 3rd and 4th place. */
    static const uint8_t sample[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                     0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xFF};
    const size_t ns = sizeof sample;
    for (size_t o = 0; o < 3; o++) {
        size_t len = offsets[o] == 0 ? 4 : sizeof buf;
        size_t at = offsets[o] == 0 ? 0 : offsets[o] - 1;
        memset(buf, 'x', sizeof buf);
        for (unsigned v = 0; v < 8 * 256 * ns * ns; v++) {
            buf[at] = (uint8_t)(0xF0 + v / (256 * ns * ns));
            buf[at + 1] = (uint8_t)(v / (ns * ns) % 256);
            buf[at + 2] = sample[v / ns % ns];
            buf[at + 3] = sample[v % ns];
            size_t bad;
            bool want = ref_utf8(buf, len, &bad) == REF_VALID;
            for (size_t j = 0; j < np; j++) {
                kz_utf8_state st = KZ_UTF8_ACCEPT;
                bool got = paths[j].feed(&st, buf, len) == KZ_OK && st == KZ_UTF8_ACCEPT;
                if (got != want)
                    fail_msg("%s: %02x %02x %02x %02x at %zu", paths[j].name, buf[at], buf[at + 1],
                             buf[at + 2], buf[at + 3], at);
            }
            assert_int_equal(kz_utf8_valid(buf, len), want);
        }
    }
}

/* A state that no path produces (a caller that ignored an error) is refused. */
static void garbage_state_is_refused(void **state)
{
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    uint8_t text[128];
    memset(text, 'a', sizeof text);
    for (size_t j = 0; j < np; j++) {
        kz_utf8_state st = 0xFFFFFFFFu;
        assert_int_equal(paths[j].feed(&st, text, sizeof text), KZ_ERR_INVALID_UTF8);
        st = KZ_UTF8_ACCEPT;
        assert_int_equal(paths[j].feed(&st, (const uint8_t *)"\xff", 1), KZ_ERR_INVALID_UTF8);
        assert_int_equal(paths[j].feed(&st, text, sizeof text), KZ_ERR_INVALID_UTF8);
        assert_int_equal(paths[j].feed(&st, text, 0), KZ_ERR_INVALID_UTF8);
    }
}

int main(void)
{
    struct path paths[MAX_PATHS];
    size_t np = get_paths(paths);
    printf("paths:");
    for (size_t i = 0; i < np; i++)
        printf(" %s", paths[i].name);
    printf("\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_texts),
        cmocka_unit_test(boundary_code_points),
        cmocka_unit_test(invalid_classes),
        cmocka_unit_test(truncated_sequences),
        cmocka_unit_test(carried_sequence_fails_on_next_call),
        cmocka_unit_test(autobahn_fail_fast),
        cmocka_unit_test(every_alignment),
        cmocka_unit_test(long_random_text),
        cmocka_unit_test(long_text_split_everywhere),
        cmocka_unit_test(long_text_corruptions),
        cmocka_unit_test(exhaustive_pairs),
        cmocka_unit_test(exhaustive_triples_and_quads),
        cmocka_unit_test(garbage_state_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
