/* Close codes (RFC 6455 §7.4) and close-frame payloads (§5.5.1). */
#include "kaze/frame.h"

bool kz_close_code_valid(uint32_t code)
{
    /*
     * 1004 is reserved, 1005/1006/1015 only report what happened locally,
     * 1016–2999 belong to future RFCs and 0–999 and 5000 up are not defined
     * at all: none of them may be sent, so none may be accepted either.
     */
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}

int kz_close_parse(const uint8_t *payload, size_t len, uint16_t *code, struct kz_str *reason)
{
    if (len == 0) {
        *code = KZ_CLOSE_NO_STATUS;
        reason->ptr = payload ? (const char *)payload : "";
        reason->len = 0;
        return KZ_OK;
    }
    if (len == 1)
        return KZ_ERR_PROTO_CLOSE_PAYLOAD;
    uint16_t c = (uint16_t)(payload[0] << 8 | payload[1]);
    if (!kz_close_code_valid(c))
        return KZ_ERR_PROTO_CLOSE_CODE;
    if (!kz_utf8_valid(payload + 2, len - 2))
        return KZ_ERR_INVALID_UTF8;
    *code = c;
    reason->ptr = (const char *)payload + 2;
    reason->len = len - 2;
    return KZ_OK;
}
