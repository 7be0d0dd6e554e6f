/*
 * fuzz_utf8: every UTF-8 path against a reference that knows nothing of
 * byte ranges. The reference is built from the definition: the valid
 * encodings are exactly what the encoder below produces for the scalar
 * values (U+0000..U+10FFFF without the surrogates), so a prefix is
 * possible if some encoding starts with it, and the first impossible byte
 * is where the text stops being a prefix of a concatenation of encodings.
 *
 * Input: byte 0 picks how the text (the rest) is cut into pieces. Checked:
 * the one-call validators, each path fed the pieces (the failing call must
 * be the one that holds the first impossible byte), all paths taking turns
 * piece by piece, and a byte-by-byte feed whose failing index must be the
 * reference's. Any disagreement aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kaze/utf8.h"
#include "proto/utf8_internal.h"
#include "../support/utf8_encode.h"

/*
 * Bit sets over byte strings of length 1..3: is_prefix[m] holds the first m
 * bytes of every encoding, is_whole[m] every encoding of exactly m bytes.
 * Four-byte strings are too many for a bit set; they are checked by
 * encoding every candidate code point (see whole4).
 */
static uint8_t *is_prefix[4], *is_whole[4];

static size_t key(const uint8_t *s, size_t m)
{
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        k = k << 8 | s[i];
    return k;
}

static void set_bit(uint8_t *set, size_t k)
{
    set[k >> 3] |= (uint8_t)(1u << (k & 7));
}

static int get_bit(const uint8_t *set, size_t k)
{
    return set[k >> 3] >> (k & 7) & 1;
}

static void build_reference(void)
{
    for (size_t m = 1; m <= 3; m++) {
        is_prefix[m] = calloc((size_t)1 << (8 * m - 3), 1);
        is_whole[m] = calloc((size_t)1 << (8 * m - 3), 1);
        if (!is_prefix[m] || !is_whole[m])
            abort();
    }
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        uint8_t e[4];
        size_t n = kzt_utf8_encode(cp, e);
        for (size_t m = 1; m <= n && m <= 3; m++)
            set_bit(is_prefix[m], key(e, m));
        if (n <= 3)
            set_bit(is_whole[n], key(e, n));
    }
}

/* Is s[0..4) the encoding of some scalar value? Any such value is >= U+10000. */
static int whole4(const uint8_t *s)
{
    uint32_t cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
                  (uint32_t)(s[2] & 0x3F) << 6 | (uint32_t)(s[3] & 0x3F);
    uint8_t e[4];
    return cp <= 0x10FFFF && kzt_utf8_encode(cp, e) == 4 && memcmp(e, s, 4) == 0;
}

enum { REF_VALID, REF_INCOMPLETE, REF_INVALID };

/* The reference: *bad is the index of the first impossible byte. */
static int reference(const uint8_t *p, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        size_t m = 1;
        for (;;) {
            if (i + m > n)
                return REF_INCOMPLETE;
            int prefix = m <= 3 ? get_bit(is_prefix[m], key(p + i, m)) : whole4(p + i);
            if (!prefix) {
                *bad = i + m - 1;
                return REF_INVALID;
            }
            if (m == 4 || get_bit(is_whole[m], key(p + i, m)))
                break;
            m++;
        }
        i += m;
    }
    return REF_VALID;
}

typedef int (*feed_fn)(kz_utf8_state *, const uint8_t *, size_t);

struct path {
    const char *name;
    feed_fn feed;
};

static struct path paths[8];
static size_t npaths;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    build_reference();
    paths[npaths++] = (struct path){"bytes", kz__utf8_feed_bytes};
    paths[npaths++] = (struct path){"word", kz__utf8_feed_word};
#if KZ_HAVE_SSE2
    paths[npaths++] = (struct path){"sse2", kz__utf8_feed_sse2};
#endif
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        paths[npaths++] = (struct path){"avx2", kz__utf8_feed_avx2};
#endif
    paths[npaths++] = (struct path){"public", kz_utf8_feed};
    return 0;
}

static void disagree(const char *what, const char *path, size_t at, size_t n)
{
    fprintf(stderr, "fuzz_utf8: %s (%s) at %zu of %zu\n", what, path, at, n);
    abort();
}

/* Piece sizes: byte 0's low 2 bits pick the scale (up to 4, 40, 130 or 400), the rest a seed. */
struct splitter {
    uint32_t x, scale;
};

static size_t next_piece(struct splitter *s, size_t left)
{
    s->x = s->x * 1103515245u + 12345u;
    size_t c = (s->x >> 16) % s->scale;
    return c < left ? c : left;
}

/*
 * Feeds p[0..n) in pieces; path_index < npaths uses that path for every
 * piece, npaths makes them take turns. Checks the outcome against want/bad.
 */
static void feed_pieces(const uint8_t *p, size_t n, uint8_t how, size_t path_index, int want,
                        size_t bad)
{
    static const uint32_t scales[4] = {5, 41, 131, 401};
    struct splitter s = {how, scales[how & 3]};
    kz_utf8_state st = KZ_UTF8_ACCEPT;
    size_t pos = 0, k = 0;
    while (pos < n) {
        const struct path *path = &paths[path_index < npaths ? path_index : k++ % npaths];
        size_t c = next_piece(&s, n - pos);
        int r = path->feed(&st, p + pos, c);
        int holds_bad = want == REF_INVALID && bad >= pos && bad < pos + c;
        if (r != KZ_OK) {
            if (r != KZ_ERR_INVALID_UTF8 || !holds_bad)
                disagree("rejected a piece without the first impossible byte", path->name, pos, n);
            if (kz_utf8_finish(st) != KZ_ERR_INVALID_UTF8)
                disagree("finish accepted after an error", path->name, pos, n);
            return;
        }
        if (holds_bad)
            disagree("accepted the first impossible byte", path->name, bad, n);
        pos += c;
    }
    if ((kz_utf8_finish(st) == KZ_OK) != (want == REF_VALID))
        disagree("finish disagrees", "pieces", n, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t how = data[0];
    const uint8_t *text = data + 1;
    size_t n = size - 1;
    size_t bad = 0;
    int want = reference(text, n, &bad);

    if (kz_utf8_valid(text, n) != (want == REF_VALID))
        disagree("kz_utf8_valid", "public", 0, n);
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2() && kz__utf8_valid_avx2(text, n) != (want == REF_VALID))
        disagree("kz__utf8_valid_avx2", "avx2", 0, n);
#endif
    for (size_t i = 0; i <= npaths; i++)
        feed_pieces(text, n, how, i, want, bad);

    /* Whole, then byte by byte: the failing byte must be the reference's. */
    for (size_t i = 0; i < npaths; i++) {
        kz_utf8_state st = KZ_UTF8_ACCEPT;
        int r = paths[i].feed(&st, text, n);
        if ((r == KZ_OK) != (want != REF_INVALID))
            disagree("whole text", paths[i].name, 0, n);
        if (r == KZ_OK && (st == KZ_UTF8_ACCEPT) != (want == REF_VALID))
            disagree("state at the end", paths[i].name, n, n);

        st = KZ_UTF8_ACCEPT;
        size_t j = 0;
        while (j < n && paths[i].feed(&st, text + j, 1) == KZ_OK)
            j++;
        if (j < n ? want != REF_INVALID || j != bad : want == REF_INVALID)
            disagree("byte-by-byte failing index", paths[i].name, j, n);
    }
    return 0;
}
