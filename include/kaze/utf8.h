/*
 * kaze/utf8.h — UTF-8 validation (RFC 3629) that can be fed a text message
 * piece by piece and fails as soon as a byte makes the text invalid.
 *
 * A code point split across two calls is carried in the state; a sequence
 * that can no longer become valid (an overlong form, a surrogate, a value
 * over U+10FFFF, a stray continuation byte) is rejected in the call that
 * delivers the offending byte, not when the message ends. Long runs are
 * checked 32 bytes at a time with AVX2 when the CPU has it (chosen at run
 * time), otherwise 16 bytes at a time (SSE2 ASCII runs) and a table-driven
 * automaton for the rest.
 */
#ifndef KAZE_UTF8_H
#define KAZE_UTF8_H

#include "kaze/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The validator's state between calls: 0 at a code point boundary. */
typedef uint32_t kz_utf8_state;

#define KZ_UTF8_ACCEPT 0u

/*
 * Validates `len` more bytes of a text that continues from `*state`
 * (start a text with *state = KZ_UTF8_ACCEPT). Returns KZ_OK and updates
 * *state, or KZ_ERR_INVALID_UTF8, after which *state is meaningless.
 * The text is complete and valid only if the last call returned KZ_OK and
 * left *state == KZ_UTF8_ACCEPT (see kz_utf8_finish()).
 */
KZ_EXPORT int kz_utf8_feed(kz_utf8_state *state, const uint8_t *data, size_t len);

/* KZ_OK if the text ended at a code point boundary, else KZ_ERR_INVALID_UTF8. */
KZ_EXPORT int kz_utf8_finish(kz_utf8_state state);

/* Validates a complete text in one call: true if `data` is valid UTF-8. */
KZ_EXPORT bool kz_utf8_valid(const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
