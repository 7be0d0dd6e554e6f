/*
 * Encodes one code point as UTF-8, the plain textbook way, for the tests,
 * fuzzers and benchmarks that build texts to feed the validator. `out` has
 * room for 4 bytes; returns how many were written. No validity check: the
 * caller picks code points (surrogates included, when it wants invalid text).
 */
#ifndef KZ_TEST_UTF8_ENCODE_H
#define KZ_TEST_UTF8_ENCODE_H

#include <stddef.h>
#include <stdint.h>

static inline size_t kzt_utf8_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

#endif
