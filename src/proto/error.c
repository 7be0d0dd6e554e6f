/* Error names and the close code each protocol error calls for. */
#include "kaze/common.h"

const char *kz_strerror(int err)
{
    switch (err) {
    case KZ_OK:
        return "success";
    case KZ_ERR_NOMEM:
        return "out of memory";
    case KZ_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case KZ_ERR_PARTIAL:
        return "more input is needed";
    case KZ_ERR_BUFFER_TOO_SMALL:
        return "output buffer too small";
    case KZ_ERR_CRYPTO:
        return "the crypto library failed";
    case KZ_ERR_SYSTEM:
        return "a system call failed";
    case KZ_ERR_CLOSED:
        return "already closed";
    case KZ_ERR_BACKPRESSURE:
        return "the peer's send queue is full";
    case KZ_ERR_TIMEOUT:
        return "timed out";
    case KZ_ERR_RESOLVE:
        return "host name not resolved";
    case KZ_ERR_CONNECT:
        return "TCP connection failed";
    case KZ_ERR_TLS:
        return "TLS handshake failed";

    case KZ_ERR_HS_MALFORMED:
        return "malformed HTTP request";
    case KZ_ERR_HS_HTTP_VERSION:
        return "HTTP/1.1 or later is required";
    case KZ_ERR_HS_METHOD:
        return "the WebSocket handshake must use GET";
    case KZ_ERR_HS_TOO_LARGE:
        return "request header block too large";
    case KZ_ERR_HS_TOO_MANY_HEADERS:
        return "too many request header lines";
    case KZ_ERR_HS_NO_HOST:
        return "missing or repeated Host header";
    case KZ_ERR_HS_NO_UPGRADE:
        return "Upgrade header does not name websocket";
    case KZ_ERR_HS_NO_CONNECTION:
        return "Connection header does not name Upgrade";
    case KZ_ERR_HS_BAD_KEY:
        return "Sec-WebSocket-Key is not base64 of 16 bytes";
    case KZ_ERR_HS_NO_VERSION:
        return "missing Sec-WebSocket-Version";
    case KZ_ERR_HS_VERSION:
        return "unsupported Sec-WebSocket-Version (13 is supported)";
    case KZ_ERR_HS_BAD_EXTENSIONS:
        return "malformed Sec-WebSocket-Extensions";
    case KZ_ERR_HS_BAD_PROTOCOLS:
        return "malformed Sec-WebSocket-Protocol";
    case KZ_ERR_HS_BAD_TARGET:
        return "request target is not a path";
    case KZ_ERR_HS_BODY:
        return "an upgrade request must not carry a body";

    case KZ_ERR_HS_RESP_MALFORMED:
        return "malformed HTTP response";
    case KZ_ERR_HS_RESP_STATUS:
        return "the server did not answer 101 Switching Protocols";
    case KZ_ERR_HS_RESP_UPGRADE:
        return "response Upgrade header is not websocket";
    case KZ_ERR_HS_RESP_CONNECTION:
        return "response Connection header lacks Upgrade";
    case KZ_ERR_HS_RESP_ACCEPT:
        return "wrong or missing Sec-WebSocket-Accept";
    case KZ_ERR_HS_RESP_SUBPROTOCOL:
        return "the server chose a subprotocol that was not offered";
    case KZ_ERR_HS_RESP_EXTENSION:
        return "the server chose an extension that was not offered";
    case KZ_ERR_HS_RESP_TOO_LARGE:
        return "response header block too large";

    case KZ_ERR_PROXY:
        return "the HTTP proxy refused the tunnel";
    case KZ_ERR_PROTO_RSV:
        return "reserved bit set without a negotiated extension";
    case KZ_ERR_PROTO_OPCODE:
        return "reserved opcode";
    case KZ_ERR_PROTO_CONTROL_TOO_LONG:
        return "control frame payload over 125 bytes";
    case KZ_ERR_PROTO_CONTROL_FRAGMENTED:
        return "fragmented control frame";
    case KZ_ERR_PROTO_UNEXPECTED_CONTINUATION:
        return "continuation frame without a message";
    case KZ_ERR_PROTO_EXPECTED_CONTINUATION:
        return "new message before the previous one ended";
    case KZ_ERR_PROTO_LENGTH:
        return "invalid payload length encoding";
    case KZ_ERR_PROTO_UNMASKED:
        return "client frame is not masked";
    case KZ_ERR_PROTO_MASKED:
        return "server frame is masked";
    case KZ_ERR_PROTO_CLOSE_PAYLOAD:
        return "close frame payload of one byte";
    case KZ_ERR_PROTO_CLOSE_CODE:
        return "invalid close code";
    case KZ_ERR_INFLATE:
        return "compressed message is not a valid DEFLATE stream";
    case KZ_ERR_INVALID_UTF8:
        return "invalid UTF-8 in text";
    case KZ_ERR_FRAME_TOO_BIG:
        return "frame exceeds the size limit";
    case KZ_ERR_MESSAGE_TOO_BIG:
        return "message exceeds the size limit";
    }
    return "unknown error";
}

int kz_err_close_code(int err)
{
    if (err == KZ_ERR_INVALID_UTF8 || err == KZ_ERR_INFLATE)
        return 1007;
    if (err == KZ_ERR_FRAME_TOO_BIG || err == KZ_ERR_MESSAGE_TOO_BIG)
        return 1009;
    if (err <= -200 && err > -300)
        return 1002;
    if (err == KZ_ERR_NOMEM)
        return 1011;
    return 0;
}
