/*
 * Masking (RFC 6455 §5.3): byte i of a frame's payload is XORed with byte
 * i mod 4 of the key. Each path XORs whole words (8, 16 or 32 bytes) with
 * the key repeated to that width, starting from the key rotated to where
 * the piece begins; a word is a multiple of 4 bytes, so the rotation stays
 * right from word to word. The head up to an aligned destination and the
 * tail go through the next narrower path, so no path touches a byte
 * outside the piece.
 */
#include <string.h>

#include "kaze/frame.h"
#include "proto/utf8_internal.h"

#if KZ_HAVE_SSE2
#include <emmintrin.h>
#endif
#if KZ_HAVE_X86
#include <immintrin.h>
#endif

/* The 4 key bytes as they line up with payload byte `pos` and the 3 after it. */
static inline uint32_t key_at(const uint8_t key[4], size_t pos)
{
    uint8_t k[4];
    for (size_t j = 0; j < 4; j++)
        k[j] = key[(pos + j) & 3];
    uint32_t w;
    memcpy(&w, k, sizeof w);
    return w;
}

static inline void mask_bytes(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                              size_t pos)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] ^ key[(pos + i) & 3];
}

/* Bytes from p up to the next multiple of `align`, at most len. */
static inline size_t to_align(const uint8_t *p, size_t align, size_t len)
{
    size_t n = (align - ((uintptr_t)p & (align - 1))) & (align - 1);
    return n < len ? n : len;
}

size_t kz__mask_copy_word(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                          size_t offset)
{
    if (len == 0)
        return offset;
    size_t i = to_align(dst, 8, len);
    mask_bytes(dst, src, i, key, offset);
    uint32_t k32 = key_at(key, offset + i);
    /* The same 4 bytes twice, whatever the byte order. */
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    mask_bytes(dst + i, src + i, len - i, key, offset + i);
    return offset + len;
}

#if KZ_HAVE_SSE2
size_t kz__mask_copy_sse2(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                          size_t offset)
{
    if (len < 16)
        return kz__mask_copy_word(dst, src, len, key, offset);
    size_t i = to_align(dst, 16, len);
    mask_bytes(dst, src, i, key, offset);
    const __m128i k = _mm_set1_epi32((int)key_at(key, offset + i));
    for (; len - i >= 64; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_store_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, k));
        _mm_store_si128((__m128i *)(void *)(dst + i + 16), _mm_xor_si128(b, k));
        _mm_store_si128((__m128i *)(void *)(dst + i + 32), _mm_xor_si128(c, k));
        _mm_store_si128((__m128i *)(void *)(dst + i + 48), _mm_xor_si128(d, k));
    }
    for (; len - i >= 16; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm_store_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, k));
    }
    kz__mask_copy_word(dst + i, src + i, len - i, key, offset + i);
    return offset + len;
}
#endif

#if KZ_HAVE_X86
__attribute__((target("avx2"))) size_t kz__mask_copy_avx2(uint8_t *dst, const uint8_t *src,
                                                          size_t len, const uint8_t key[4],
                                                          size_t offset)
{
    if (len < 64)
        return kz__mask_copy_sse2(dst, src, len, key, offset);
    size_t i = to_align(dst, 32, len);
    kz__mask_copy_sse2(dst, src, i, key, offset);
    const __m256i k = _mm256_set1_epi32((int)key_at(key, offset + i));
    for (; len - i >= 128; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 96));
        _mm256_store_si256((__m256i *)(void *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_store_si256((__m256i *)(void *)(dst + i + 32), _mm256_xor_si256(b, k));
        _mm256_store_si256((__m256i *)(void *)(dst + i + 64), _mm256_xor_si256(c, k));
        _mm256_store_si256((__m256i *)(void *)(dst + i + 96), _mm256_xor_si256(d, k));
    }
    for (; len - i >= 32; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        _mm256_store_si256((__m256i *)(void *)(dst + i), _mm256_xor_si256(a, k));
    }
    kz__mask_copy_sse2(dst + i, src + i, len - i, key, offset + i);
    return offset + len;
}
#endif

/*
 * Short pieces (most WebSocket messages are) go word by word from the start,
 * unaligned: aligning first would cost more than it saves.
 */
static inline size_t mask_short(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                                size_t offset)
{
    uint32_t k32 = key_at(key, offset);
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    if (len - i >= 4) {
        uint32_t w;
        memcpy(&w, src + i, 4);
        w ^= k32;
        memcpy(dst + i, &w, 4);
        i += 4;
    }
    mask_bytes(dst + i, src + i, len - i, key, offset + i);
    return offset + len;
}

size_t kz_mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                    size_t offset)
{
    if (len <= 64)
        return mask_short(dst, src, len, key, offset);
#if KZ_HAVE_X86
    if (kz__cpu_has_avx2())
        return kz__mask_copy_avx2(dst, src, len, key, offset);
#endif
#if KZ_HAVE_SSE2
    return kz__mask_copy_sse2(dst, src, len, key, offset);
#else
    return kz__mask_copy_word(dst, src, len, key, offset);
#endif
}

size_t kz_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
    return kz_mask_copy(data, data, len, key, offset);
}
