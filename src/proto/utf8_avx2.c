/*
 * UTF-8 validation with AVX2, after the idea of Keiser and Lemire,
 * "Validating UTF-8 in less than one instruction per byte" (2021).
 *
 * Almost every error shows in a pair of adjacent bytes: what the previous
 * byte is (its high nibble says ASCII, continuation or lead of which
 * length; its low nibble tells E0 from ED, F0 from F4 and so on) and what
 * kind the current byte is (its high nibble). Each error kind gets a bit;
 * three 16-entry tables, indexed by those three nibbles with vpshufb, each
 * say which kinds the nibble is compatible with, and their AND is the set of
 * errors the pair shows. The one thing a pair cannot show is a 3rd or 4th
 * byte: whether a continuation after a continuation is legal depends on the
 * bytes two and three back, which are compared separately. All 32 bytes
 * are checked at once, and a block of 64 ASCII bytes is skipped.
 *
 * The kernel accepts only whole texts; this file's wrapper turns it into an
 * incremental validator by letting the scalar automaton finish a sequence
 * carried over from the last piece and check the incomplete end of this one.
 */
#include <string.h>

#include "kaze/utf8.h"
#include "proto/utf8_internal.h"

#if KZ_HAVE_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

/* Error kinds, one bit each, named for the pair (previous byte, current byte). */
#define TOO_SHORT   0x01 /* lead, then not a continuation */
#define TOO_LONG    0x02 /* ASCII, then a continuation */
#define OVERLONG_3  0x04 /* E0, then 80..9F */
#define TOO_LARGE   0x08 /* F4..FF, then 90..BF */
#define SURROGATE   0x10 /* ED, then A0..BF */
#define OVERLONG_2  0x20 /* C0 or C1, then a continuation */
#define LARGE_OR_OL 0x40 /* F0 or F5..FF, then 80..8F (overlong or too large) */
#define TWO_CONTS   0x80 /* continuation, then continuation: legal only as 3rd/4th byte */

/* Bits that do not depend on the previous byte's low nibble. */
#define ANY_LOW (TOO_SHORT | TOO_LONG | TWO_CONTS)

#define CONT_ANY (TOO_LONG | TWO_CONTS | OVERLONG_2)

/* clang-format off */
#define T16(...) { __VA_ARGS__, __VA_ARGS__ }
#define SPLAT(x) T16(x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x)
/* clang-format on */

/*
 * The constants, each a full vector (the 16-entry tables twice, since
 * vpshufb looks up within each 128-bit lane). Loaded from memory rather
 * than built from immediates, so that when registers run short the
 * compiler reloads them instead of rebuilding them with shuffles.
 */
static const struct {
    uint8_t prev_hi[32], prev_lo[32], cur_hi[32];
    uint8_t low_nibble[32], third_bias[32], fourth_bias[32], top_bit[32], lead_limit[32];
} K __attribute__((aligned(32))) = {
    /* by the previous byte's high nibble: 0-7 ASCII, 8-B continuation, C-F leads */
    .prev_hi = T16(TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,
                   TWO_CONTS, TWO_CONTS, TWO_CONTS, TWO_CONTS, TOO_SHORT | OVERLONG_2, TOO_SHORT,
                   TOO_SHORT | OVERLONG_3 | SURROGATE, TOO_SHORT | TOO_LARGE | LARGE_OR_OL),
    /* by the previous byte's low nibble: which of C0/C1, E0, ED, F0, F4..FF it may be */
    .prev_lo = T16(ANY_LOW | OVERLONG_2 | OVERLONG_3 | LARGE_OR_OL, ANY_LOW | OVERLONG_2, ANY_LOW,
                   ANY_LOW, ANY_LOW | TOO_LARGE, ANY_LOW | TOO_LARGE | LARGE_OR_OL,
                   ANY_LOW | TOO_LARGE | LARGE_OR_OL, ANY_LOW | TOO_LARGE | LARGE_OR_OL,
                   ANY_LOW | TOO_LARGE | LARGE_OR_OL, ANY_LOW | TOO_LARGE | LARGE_OR_OL,
                   ANY_LOW | TOO_LARGE | LARGE_OR_OL, ANY_LOW | TOO_LARGE | LARGE_OR_OL,
                   ANY_LOW | TOO_LARGE | LARGE_OR_OL, ANY_LOW | TOO_LARGE | LARGE_OR_OL | SURROGATE,
                   ANY_LOW | TOO_LARGE | LARGE_OR_OL, ANY_LOW | TOO_LARGE | LARGE_OR_OL),
    /* by the current byte's high nibble: 8 is 80..8F, 9 is 90..9F, A-B A0..BF */
    .cur_hi = T16(TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,
                  TOO_SHORT, CONT_ANY | OVERLONG_3 | LARGE_OR_OL, CONT_ANY | OVERLONG_3 | TOO_LARGE,
                  CONT_ANY | TOO_LARGE | SURROGATE, CONT_ANY | TOO_LARGE | SURROGATE, TOO_SHORT,
                  TOO_SHORT, TOO_SHORT, TOO_SHORT),
    .low_nibble = SPLAT(0x0F),
    .third_bias = SPLAT(0xE0 - 0x80),
    .fourth_bias = SPLAT(0xF0 - 0x80),
    .top_bit = SPLAT(0x80),
    /* a lead this close to the end of 32 bytes needs bytes past them */
    .lead_limit = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,     0xFF,     0xFF,    0xFF,
                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,     0xFF,     0xFF,    0xFF,
                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1},
};
#undef SPLAT
#undef T16

AVX2 static inline __m256i load(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

struct consts {
    __m256i prev_hi, prev_lo, cur_hi, nib, third, fourth, top, limit;
};

/*
 * Loads the constants into registers. The empty asm hides each value from
 * the optimiser: otherwise GCC, short of registers in the loop, rebuilds
 * splats from immediates there with broadcasts, which compete with the
 * table lookups for the shuffle units; a forgotten value is reloaded.
 */
AVX2 static inline void load_consts(struct consts *c)
{
#define LOAD(field, from)                                                                          \
    c->field = _mm256_load_si256((const __m256i *)(const void *)K.from);                           \
    __asm__("" : "+x"(c->field))
    LOAD(prev_hi, prev_hi);
    LOAD(prev_lo, prev_lo);
    LOAD(cur_hi, cur_hi);
    LOAD(nib, low_nibble);
    LOAD(third, third_bias);
    LOAD(fourth, fourth_bias);
    LOAD(top, top_bit);
    LOAD(limit, lead_limit);
#undef LOAD
}

/*
 * Errors among the 32 bytes at p, each judged with the 3 bytes before it.
 * p[-3..-1] must be readable: loading the earlier bytes again from memory
 * is cheaper than shifting them in across the two lanes of a register.
 */
AVX2 static inline __m256i check32(const struct consts *c, const uint8_t *p)
{
    __m256i cur = load(p), prev1 = load(p - 1);
    __m256i p_hi = _mm256_and_si256(_mm256_srli_epi16(prev1, 4), c->nib);
    __m256i p_lo = _mm256_and_si256(prev1, c->nib);
    __m256i c_hi = _mm256_and_si256(_mm256_srli_epi16(cur, 4), c->nib);
    __m256i found = _mm256_and_si256(_mm256_and_si256(_mm256_shuffle_epi8(c->prev_hi, p_hi),
                                                      _mm256_shuffle_epi8(c->prev_lo, p_lo)),
                                     _mm256_shuffle_epi8(c->cur_hi, c_hi));
    /*
     * The top bit of each byte: is it the 3rd byte of a 3- or 4-byte
     * sequence or the 4th of a 4-byte one (a lead >= E0 two back, >= F0
     * three back)? Saturating subtraction sets the top bit exactly then.
     * Such a byte must show TWO_CONTS and nothing else; any other byte must
     * not show it, so XOR leaves zero only where all is well.
     */
    __m256i third = _mm256_subs_epu8(load(p - 2), c->third);
    __m256i fourth = _mm256_subs_epu8(load(p - 3), c->fourth);
    __m256i must_cont = _mm256_and_si256(_mm256_or_si256(third, fourth), c->top);
    return _mm256_xor_si256(must_cont, found);
}

AVX2 static inline bool ascii64(const uint8_t *p)
{
    return _mm256_movemask_epi8(_mm256_or_si256(load(p), load(p + 32))) == 0;
}

/* Twice as far per branch: a long ASCII run costs little more than reading it. */
AVX2 static inline bool ascii128(const uint8_t *p)
{
    __m256i any = _mm256_or_si256(_mm256_or_si256(load(p), load(p + 32)),
                                  _mm256_or_si256(load(p + 64), load(p + 96)));
    return _mm256_movemask_epi8(any) == 0;
}

/* Before ASCII, the only possible error is a sequence it cuts off: a lead in the 3 bytes before. */
AVX2 static inline bool cut_off_before(const struct consts *c, const uint8_t *p)
{
    __m256i e = _mm256_subs_epu8(load(p - 32), c->limit);
    return !_mm256_testz_si256(e, e);
}

/* The 64 bytes at p, with p[-32..-1] readable. */
AVX2 static inline bool block_valid(const struct consts *c, const uint8_t *p)
{
    if (ascii64(p))
        return !cut_off_before(c, p);
    __m256i e = _mm256_or_si256(check32(c, p), check32(c, p + 32));
    return _mm256_testz_si256(e, e);
}

AVX2 bool kz__utf8_valid_avx2(const uint8_t *data, size_t len)
{
    struct consts c;
    load_consts(&c);
    /*
     * The first and the last block are checked from a copy, with zeros
     * before the text (a text starts as if after ASCII) and after it (a
     * sequence cut off by the end meets ASCII, which shows as TOO_SHORT or
     * as a missing 3rd or 4th byte). The blocks in between read the bytes
     * before them from the text itself.
     */
    uint8_t pad[32 + 64] __attribute__((aligned(32)));
    size_t first = len < 64 ? len : 64;
    memset(pad, 0, sizeof pad);
    if (first > 0)
        memcpy(pad + 32, data, first);
    if (!block_valid(&c, pad + 32))
        return false;
    if (len < 64)
        return true;

    /*
     * Each block's errors are tested at once rather than gathered in one
     * vector: such a vector, carried from block to block, ended up in memory
     * and made every block wait for the one before.
     */
    size_t i = 64;
    while (len - i >= 64) {
        if (ascii64(data + i)) {
            if (cut_off_before(&c, data + i))
                return false;
            i += 64;
            while (len - i >= 128 && ascii128(data + i))
                i += 128;
            continue;
        }
        __m256i e = _mm256_or_si256(check32(&c, data + i), check32(&c, data + i + 32));
        if (!_mm256_testz_si256(e, e))
            return false;
        i += 64;
    }
    memset(pad, 0, sizeof pad);
    memcpy(pad, data + i - 32, 32 + (len - i));
    return block_valid(&c, pad + 32);
}

/* How many bytes the sequence that lead byte `b` (>= 0xC0) begins needs in all. */
static inline size_t seq_len(uint8_t b)
{
    return b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
}

/* Below this many bytes the kernel's setup and padding cost more than it saves. */
#define MIN_KERNEL 64

AVX2 int kz__utf8_feed_avx2(kz_utf8_state *state, const uint8_t *data, size_t len)
{
    if (len < MIN_KERNEL)
        return kz__utf8_feed_scalar(state, data, len);

    /* Finish a sequence carried over from the last piece. */
    size_t head = 0;
    if (*state != KZ_UTF8_ACCEPT) {
        while (head < 3 && (data[head] & 0xC0) == 0x80)
            head++;
        int r = kz__utf8_feed_scalar(state, data, head);
        if (r != KZ_OK)
            return r;
        /* Still inside it: the next byte is not a continuation, let the automaton say so. */
        if (*state != KZ_UTF8_ACCEPT)
            return kz__utf8_feed_scalar(state, data + head, len - head);
    }

    /*
     * Keep a sequence cut off by the end of the piece out of the kernel:
     * find the last byte that is not a continuation among the last three.
     * If it is a lead that needs more bytes than follow it, the tail from
     * there goes to the automaton, which rejects it as early as possible.
     */
    size_t tail = len;
    for (size_t back = 1; back <= 3 && back <= len - head; back++) {
        uint8_t b = data[len - back];
        if ((b & 0xC0) != 0x80) {
            if (b >= 0xC0 && seq_len(b) > back)
                tail = len - back;
            break;
        }
    }
    if (!kz__utf8_valid_avx2(data + head, tail - head)) {
        *state = KZ__UTF8_REJECT;
        return KZ_ERR_INVALID_UTF8;
    }
    return kz__utf8_feed_scalar(state, data + tail, len - tail);
}

#endif
