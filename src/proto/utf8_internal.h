/*
 * utf8_internal.h — the individual code paths behind kz_utf8_feed() and
 * kz_mask_copy(), so that unit tests, the fuzzer and the benchmark can run
 * every one of them on any machine, not only the one dispatch would pick.
 *
 * Every kz__utf8_feed_* has exactly the contract of kz_utf8_feed(), including
 * the rejection in the call that delivers the first impossible byte, and they
 * share one state encoding, so a text may be fed through a mix of them. Every
 * kz__mask_copy_* has the contract of kz_mask_copy() (dst may equal src).
 */
#ifndef KAZE_PROTO_UTF8_INTERNAL_H
#define KAZE_PROTO_UTF8_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "kaze/utf8.h"

/* The AVX2 paths are built for x86-64 only, where SSE2 is always there beneath them. */
#if defined(__x86_64__)
#define KZ_HAVE_X86 1
#else
#define KZ_HAVE_X86 0
#endif

/* SSE2 is part of the x86-64 baseline; on 32-bit x86 only if the build says so. */
#if defined(__SSE2__)
#define KZ_HAVE_SSE2 1
#else
#define KZ_HAVE_SSE2 0
#endif

/* Asked at every call: the answer is cached by libgcc, and no global of ours changes. */
static inline bool kz__cpu_has_avx2(void)
{
#if KZ_HAVE_X86
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

/* The state after an error; every path stores it, so a later call fails too. */
#define KZ__UTF8_REJECT 8u

/* The automaton alone, one byte per step: the slow path every other one must match. */
int kz__utf8_feed_bytes(kz_utf8_state *state, const uint8_t *data, size_t len);

/* The automaton with ASCII runs skipped a uint64_t word at a time (any architecture). */
int kz__utf8_feed_word(kz_utf8_state *state, const uint8_t *data, size_t len);

#if KZ_HAVE_SSE2
/* The automaton with ASCII runs skipped 16 bytes at a time. */
int kz__utf8_feed_sse2(kz_utf8_state *state, const uint8_t *data, size_t len);
#endif

/* The best path without AVX2 on this architecture: SSE2 where present, else words. */
int kz__utf8_feed_scalar(kz_utf8_state *state, const uint8_t *data, size_t len);

#if KZ_HAVE_X86
/*
 * Only when kz__cpu_has_avx2(). kz__utf8_valid_avx2() checks a whole text
 * (it must start and end at code point boundaries); kz__utf8_feed_avx2()
 * wraps it for pieces, with the scalar automaton on both ends.
 */
bool kz__utf8_valid_avx2(const uint8_t *data, size_t len);
int kz__utf8_feed_avx2(kz_utf8_state *state, const uint8_t *data, size_t len);
#endif

size_t kz__mask_copy_word(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                          size_t offset);
#if KZ_HAVE_SSE2
size_t kz__mask_copy_sse2(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                          size_t offset);
#endif
#if KZ_HAVE_X86
/* Only when kz__cpu_has_avx2(). */
size_t kz__mask_copy_avx2(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                          size_t offset);
#endif

#endif
