/*
 * Frame writer (RFC 6455 §5.2): headers for data frames, whole frames for
 * control messages. Everything goes into the caller's buffer.
 */
#include <string.h>

#include "kaze/frame.h"

size_t kz_frame_header_size(uint64_t len, bool masked)
{
    size_t n = 2;
    if (len > 0xFFFF)
        n += 8;
    else if (len >= 126)
        n += 2;
    return masked ? n + 4 : n;
}

size_t kz_frame_write_header(uint8_t *out, unsigned opcode, bool fin, unsigned rsv, uint64_t len,
                             const uint8_t *mask_key)
{
    if (opcode > 0xF || rsv > 0x7 || len >> 63)
        return 0;
    out[0] = (uint8_t)((fin ? 0x80u : 0) | rsv << 4 | opcode);
    uint8_t mask_bit = mask_key ? 0x80 : 0;
    size_t n;
    /* The receiver rejects anything but the shortest form (§5.2). */
    if (len < 126) {
        out[1] = (uint8_t)(mask_bit | len);
        n = 2;
    } else if (len <= 0xFFFF) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mask_bit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask_key) {
        memcpy(out + n, mask_key, 4);
        n += 4;
    }
    return n;
}

/* Header, then the payload copied (and masked on the way) behind it. */
static int write_control(uint8_t *out, size_t cap, unsigned opcode, const uint8_t *payload,
                         size_t len, const uint8_t *mask_key)
{
    if (len > KZ_CONTROL_PAYLOAD_MAX)
        return KZ_ERR_INVALID_ARGUMENT;
    if (cap < kz_frame_header_size(len, mask_key != NULL) + len)
        return KZ_ERR_BUFFER_TOO_SMALL;
    size_t n = kz_frame_write_header(out, opcode, true, 0, len, mask_key);
    if (len == 0)
        return (int)n;
    if (mask_key)
        kz_mask_copy(out + n, payload, len, mask_key, 0);
    else
        memcpy(out + n, payload, len);
    return (int)(n + len);
}

int kz_frame_write_ping(uint8_t *out, size_t cap, const uint8_t *payload, size_t len,
                        const uint8_t *mask_key)
{
    return write_control(out, cap, KZ_OP_PING, payload, len, mask_key);
}

int kz_frame_write_pong(uint8_t *out, size_t cap, const uint8_t *payload, size_t len,
                        const uint8_t *mask_key)
{
    return write_control(out, cap, KZ_OP_PONG, payload, len, mask_key);
}

int kz_frame_write_close(uint8_t *out, size_t cap, uint16_t code, const char *reason,
                         size_t reason_len, const uint8_t *mask_key)
{
    if (code == 0) {
        if (reason_len != 0)
            return KZ_ERR_INVALID_ARGUMENT;
        return write_control(out, cap, KZ_OP_CLOSE, NULL, 0, mask_key);
    }
    if (!kz_close_code_valid(code) || reason_len > KZ_CLOSE_REASON_MAX)
        return KZ_ERR_INVALID_ARGUMENT;
    if (reason_len && !kz_utf8_valid((const uint8_t *)reason, reason_len))
        return KZ_ERR_INVALID_UTF8;
    size_t len = 2 + reason_len;
    if (cap < kz_frame_header_size(len, mask_key != NULL) + len)
        return KZ_ERR_BUFFER_TOO_SMALL;
    size_t n = kz_frame_write_header(out, KZ_OP_CLOSE, true, 0, len, mask_key);
    out[n] = (uint8_t)(code >> 8);
    out[n + 1] = (uint8_t)code;
    if (reason_len)
        memcpy(out + n + 2, reason, reason_len);
    if (mask_key)
        kz_mask(out + n, len, mask_key, 0);
    return (int)(n + len);
}
