/*
 * UTF-8 validation (RFC 3629), fed piece by piece.
 *
 * The exact check is a byte automaton whose states are "how far into which
 * kind of sequence": the second byte of E0, ED, F0 and F4 sequences has a
 * narrower range than 80..BF (that is where overlongs, surrogates and values
 * over U+10FFFF are cut off), so those get states of their own and every
 * impossible byte leads straight to the error state. Around it, the fast
 * paths skip ASCII runs in blocks and take whole code points at once, and
 * leave the automaton what they cannot decide alone: sequences split
 * between pieces, and errors. Long pieces go to the AVX2 kernel when the
 * CPU has it (utf8_avx2.c).
 */
#include <string.h>

#include "kaze/utf8.h"
#include "proto/utf8_internal.h"

#if KZ_HAVE_SSE2
#include <emmintrin.h>
#endif

/*
 * Byte classes: 0 ASCII, 1 80..8F, 2 90..9F, 3 A0..BF, 4 C2..DF, 5 E0,
 * 6 E1..EC and EE..EF, 7 ED, 8 F0, 9 F1..F3, 10 F4, 11 never in UTF-8.
 */
static const uint8_t byte_class[256] = {
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 20 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 30 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 40 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 50 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 60 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 70 */
    1,  1,  1, 1, 1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  /* 80 */
    2,  2,  2, 2, 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 90 */
    3,  3,  3, 3, 3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* A0 */
    3,  3,  3, 3, 3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* B0 */
    11, 11, 4, 4, 4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* C0 */
    4,  4,  4, 4, 4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* D0 */
    5,  6,  6, 6, 6,  6,  6,  6,  6,  6,  6,  6,  6,  7,  6,  6,  /* E0 */
    8,  9,  9, 9, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, /* F0 */
};

/*
 * States: 0 boundary; 1 one continuation byte left; 2 two left; 3 after E0
 * (A0..BF next); 4 after ED (80..9F next); 5 three left; 6 after F0 (90..BF
 * next); 7 after F4 (80..8F next); 8 error, which no byte leaves. Rows have
 * 16 entries so that a lookup is a shift and an add.
 */
enum { S_ERR = KZ__UTF8_REJECT, N_STATES = KZ__UTF8_REJECT + 1 };
#define E S_ERR
static const uint8_t next_state[N_STATES * 16] = {
    /* ASC 80 90 A0 C2 E0 E1 ED F0 F1 F4 bad */
    0, E, E, E, 1, 3, 2, 4, 6, 5, 7, E, E, E, E, E, /* 0 */
    E, 0, 0, 0, E, E, E, E, E, E, E, E, E, E, E, E, /* 1 */
    E, 1, 1, 1, E, E, E, E, E, E, E, E, E, E, E, E, /* 2 */
    E, E, E, 1, E, E, E, E, E, E, E, E, E, E, E, E, /* 3 */
    E, 1, 1, E, E, E, E, E, E, E, E, E, E, E, E, E, /* 4 */
    E, 2, 2, 2, E, E, E, E, E, E, E, E, E, E, E, E, /* 5 */
    E, E, 2, 2, E, E, E, E, E, E, E, E, E, E, E, E, /* 6 */
    E, 2, E, E, E, E, E, E, E, E, E, E, E, E, E, E, /* 7 */
    E, E, E, E, E, E, E, E, E, E, E, E, E, E, E, E, /* 8 */
};
#undef E

static inline uint32_t step(uint32_t s, uint8_t b)
{
    return next_state[s * 16 + byte_class[b]];
}

static inline int fail(kz_utf8_state *state)
{
    *state = S_ERR;
    return KZ_ERR_INVALID_UTF8;
}

int kz__utf8_feed_bytes(kz_utf8_state *state, const uint8_t *data, size_t len)
{
    uint32_t s = *state;
    /* Also a state out of range, from a caller that ignored an error. */
    if (s >= S_ERR)
        return fail(state);
    for (size_t i = 0; i < len; i++) {
        s = step(s, data[i]);
        if (s == S_ERR)
            return fail(state);
    }
    *state = s;
    return KZ_OK;
}

#define HIGH_BITS 0x8080808080808080u

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Returns the first byte at or after p that is not ASCII, or end. */
static inline const uint8_t *skip_ascii_word(const uint8_t *p, const uint8_t *end)
{
    while (end - p >= 16 && ((load64(p) | load64(p + 8)) & HIGH_BITS) == 0)
        p += 16;
    while (end - p >= 8 && (load64(p) & HIGH_BITS) == 0)
        p += 8;
    while (p < end && *p < 0x80)
        p++;
    return p;
}

#if KZ_HAVE_SSE2
static inline const uint8_t *skip_ascii_sse2(const uint8_t *p, const uint8_t *end)
{
    while (end - p >= 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(a, b));
        if (m != 0) {
            m = (unsigned)_mm_movemask_epi8(a) | (unsigned)_mm_movemask_epi8(b) << 16;
            return p + __builtin_ctz(m);
        }
        p += 32;
    }
    if (end - p >= 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)p));
        if (m != 0)
            return p + __builtin_ctz(m);
        p += 16;
    }
    while (p < end && *p < 0x80)
        p++;
    return p;
}
#endif

/*
 * The length of the valid sequence at p if it is complete, else 0 (and the
 * automaton decides). p[0] is not ASCII; 4 bytes must be readable. Checking
 * a whole code point with independent compares beats stepping the
 * automaton through it, whose every step waits for the one before.
 */
static inline size_t whole_sequence(const uint8_t *p)
{
    uint32_t b0 = p[0], b1 = p[1], lo = 0x80, hi = 0xBF;
    if (b0 - 0xC2 <= 0xDF - 0xC2)
        return (b1 & 0xC0) == 0x80 ? 2 : 0;
    if (b0 - 0xE0 <= 0xEF - 0xE0) {
        lo = b0 == 0xE0 ? 0xA0 : lo; /* overlong below */
        hi = b0 == 0xED ? 0x9F : hi; /* surrogates above */
        return b1 - lo <= hi - lo && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (b0 - 0xF0 <= 0xF4 - 0xF0) {
        lo = b0 == 0xF0 ? 0x90 : lo; /* overlong below */
        hi = b0 == 0xF4 ? 0x8F : hi; /* over U+10FFFF above */
        return b1 - lo <= hi - lo && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/*
 * At a boundary, ASCII runs go to `skip` and whole code points to
 * whole_sequence(); the automaton takes the rest: sequences cut by the end
 * of the piece or carried in from the last one, and errors. Inlined with a
 * constant `skip`, so each caller gets its own loop.
 */
static inline int feed_skipping(kz_utf8_state *state, const uint8_t *p, size_t len,
                                const uint8_t *(*skip)(const uint8_t *, const uint8_t *))
{
    uint32_t s = *state;
    if (s >= S_ERR)
        return fail(state);
    if (len == 0)
        return KZ_OK; /* p may be NULL, and NULL + 0 is undefined */
    const uint8_t *end = p + len;
    while (p < end) {
        if (s == 0) {
            if (*p < 0x80) {
                p = skip(p, end);
                continue;
            }
            size_t n = end - p >= 4 ? whole_sequence(p) : 0;
            if (n != 0) {
                p += n;
                continue;
            }
        }
        s = step(s, *p++);
        if (s == S_ERR)
            return fail(state);
    }
    *state = s;
    return KZ_OK;
}

int kz__utf8_feed_word(kz_utf8_state *state, const uint8_t *data, size_t len)
{
    return feed_skipping(state, data, len, skip_ascii_word);
}

#if KZ_HAVE_SSE2
int kz__utf8_feed_sse2(kz_utf8_state *state, const uint8_t *data, size_t len)
{
    return feed_skipping(state, data, len, skip_ascii_sse2);
}
#endif

int kz__utf8_feed_scalar(kz_utf8_state *state, const uint8_t *data, size_t len)
{
#if KZ_HAVE_SSE2
    return kz__utf8_feed_sse2(state, data, len);
#else
    return kz__utf8_feed_word(state, data, len);
#endif
}

int kz_utf8_feed(kz_utf8_state *state, const uint8_t *data, size_t len)
{
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        return kz__utf8_feed_avx2(state, data, len);
#endif
    return kz__utf8_feed_scalar(state, data, len);
}

int kz_utf8_finish(kz_utf8_state state)
{
    return state == KZ_UTF8_ACCEPT ? KZ_OK : KZ_ERR_INVALID_UTF8;
}

bool kz_utf8_valid(const uint8_t *data, size_t len)
{
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        return kz__utf8_valid_avx2(data, len);
#endif
    kz_utf8_state s = KZ_UTF8_ACCEPT;
    return kz__utf8_feed_scalar(&s, data, len) == KZ_OK && s == KZ_UTF8_ACCEPT;
}
