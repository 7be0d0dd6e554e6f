/*
 * The server's half of the handshake: judging requests (every error with
 * its code and HTTP status, in the documented order), the accept key, and
 * the 101 and refusal answers, parsed back by the response parser. Every
 * request is parsed whole, one byte at a time and at every split point.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/handshake.h"
#include "helpers.h"
#include "hs_feed.h"

/* ------------------------------------------------------------------------ */

/* An output buffer of `cap` bytes that ends at a guard page. */
static char *out_buffer(size_t cap)
{
    static const char zeros[4096];
    assert_true(cap <= sizeof(zeros));
    return (char *)kzt_guard_copy(zeros, cap);
}

#define RL    "GET /chat HTTP/1.1\r\n"
#define HOST  "Host: server.example.com\r\n"
#define UPG   "Upgrade: websocket\r\n"
#define CONN  "Connection: Upgrade\r\n"
#define KEY   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER   "Sec-WebSocket-Version: 13\r\n"
#define VALID RL HOST UPG CONN KEY VER "\r\n"

#define RFC_REQUEST                                                                                \
    "GET /chat HTTP/1.1\r\n"                                                                       \
    "Host: server.example.com\r\n"                                                                 \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                              \
    "Origin: http://example.com\r\n"                                                               \
    "Sec-WebSocket-Protocol: chat, superchat\r\n"                                                  \
    "Sec-WebSocket-Version: 13\r\n"                                                                \
    "\r\n"

#define CHROMIUM_REQUEST                                                                           \
    "GET /ws?room=lobby HTTP/1.1\r\n"                                                              \
    "Host: 127.0.0.1:9001\r\n"                                                                     \
    "Connection: Upgrade\r\n"                                                                      \
    "Pragma: no-cache\r\n"                                                                         \
    "Cache-Control: no-cache\r\n"                                                                  \
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "          \
    "Chrome/156.0.0.0 Safari/537.36\r\n"                                                           \
    "Upgrade: websocket\r\n"                                                                       \
    "Origin: http://127.0.0.1:9001\r\n"                                                            \
    "Sec-WebSocket-Version: 13\r\n"                                                                \
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"                                                 \
    "Accept-Language: en-US,en;q=0.9\r\n"                                                          \
    "Cookie: session=4f2a9c; theme=dark\r\n"                                                       \
    "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"                                              \
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"                     \
    "\r\n"

/* Parses `text` every way (it must parse) and judges it. */
static int judge(const char *text)
{
    struct parsed p;
    int rc = parse_req(&p, text);
    if (rc <= 0)
        fail_msg("parse: %d for\n%s", rc, text);
    int err = kz_hs_check_request(&p.req);
    parsed_free(&p);
    return err;
}

static void accept_key_with_fetched_sha1(void **state)
{
    struct kz_sha1 *sha = kz_sha1_new();
    assert_non_null(sha);
    char accept[KZ_HS_ACCEPT_LEN + 1];
    for (int i = 0; i < 3; i++) { /* reusable */
        assert_int_equal(kz_hs_accept_key_with(sha, "dGhlIHNhbXBsZSBub25jZQ==", 24, accept), KZ_OK);
        assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_int_equal(kz_hs_accept_key_with(sha, "x3JJHMbDL1EzLkh9GBhXDw==", 24, accept), KZ_OK);
        assert_string_equal(accept, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }
    assert_int_equal(kz_hs_accept_key_with(sha, "short", 5, accept), KZ_ERR_INVALID_ARGUMENT);
    kz_sha1_free(sha);
    kz_sha1_free(NULL);
}

static void rfc_accept_key(void **state)
{
    char accept[KZ_HS_ACCEPT_LEN + 1];
    memset(accept, '#', sizeof(accept));
    assert_int_equal(kz_hs_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept), KZ_OK);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* A second vector, computed independently with Python's hashlib and base64. */
    assert_int_equal(kz_hs_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, accept), KZ_OK);
    assert_string_equal(accept, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");

    assert_int_equal(kz_hs_accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, accept),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_accept_key("dGhlIHNhbXBsZSBub25jZQ==A", 25, accept),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_accept_key(NULL, 24, accept), KZ_ERR_INVALID_ARGUMENT);
}

static void rfc_request_accepted(void **state)
{
    struct parsed p;
    assert_int_equal(parse_req(&p, RFC_REQUEST), (int)strlen(RFC_REQUEST));
    assert_int_equal(kz_hs_check_request(&p.req), KZ_OK);
    struct kz_hs_iter it = {0, 0};
    struct kz_str proto;
    assert_true(
        kz_hs_list_next(p.req.headers, p.req.num_headers, "Sec-WebSocket-Protocol", &it, &proto));
    str_is(proto, "chat");
    assert_true(
        kz_hs_list_next(p.req.headers, p.req.num_headers, "Sec-WebSocket-Protocol", &it, &proto));
    str_is(proto, "superchat");
    assert_false(
        kz_hs_list_next(p.req.headers, p.req.num_headers, "Sec-WebSocket-Protocol", &it, &proto));
    parsed_free(&p);
}

static void chromium_request_accepted(void **state)
{
    struct parsed p;
    assert_int_equal(parse_req(&p, CHROMIUM_REQUEST), (int)strlen(CHROMIUM_REQUEST));
    assert_int_equal(kz_hs_check_request(&p.req), KZ_OK);
    str_is(p.req.path, "/ws");
    str_is(p.req.query, "room=lobby");
    str_is(p.req.origin, "http://127.0.0.1:9001");
    str_is(p.req.cookie, "session=4f2a9c; theme=dark");
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    assert_int_equal(kz_hs_next_extension(p.req.headers, p.req.num_headers, &it, &ext), 1);
    str_is(ext.name, "permessage-deflate");
    str_is(ext.params[0].name, "client_max_window_bits");
    assert_int_equal(kz_hs_next_extension(p.req.headers, p.req.num_headers, &it, &ext), 0);
    parsed_free(&p);
}

static void well_formed_variants(void **state)
{
    static const char *const cases[] = {
        /* Upgrade and Connection: lists, any case, over several lines */
        RL HOST "Upgrade: WebSocket\r\n" CONN KEY VER "\r\n",
        RL HOST "upgrade: h2c, WEBSOCKET\r\n" CONN KEY VER "\r\n",
        RL HOST "Upgrade: h2c\r\nUpgrade: websocket\r\n" CONN KEY VER "\r\n",
        RL HOST UPG "Connection: keep-alive, Upgrade\r\n" KEY VER "\r\n",
        RL HOST UPG "Connection: upgrade\r\n" KEY VER "\r\n",
        RL HOST UPG "Connection: keep-alive\r\nConnection: UPGRADE\r\n" KEY VER "\r\n",
        RL HOST UPG "Connection: ,Upgrade,\r\n" KEY VER "\r\n",
        /* LF line endings */
        "GET /chat HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: Upgrade\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n",
        /* targets */
        "GET http://server.example.com/chat?x=1 HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n",
        "GET wss://server.example.com HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n",
        "GET / HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n",
        /* a later HTTP/1 minor version */
        "GET /chat HTTP/1.2\r\n" HOST UPG CONN KEY VER "\r\n",
        /* an announced empty body is no body */
        RL HOST UPG CONN KEY VER "Content-Length: 0\r\n\r\n",
        /* keys: any base64 alphabet, the RFC's own non-canonical padding */
        RL HOST UPG CONN "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==\r\n" VER "\r\n",
        RL HOST UPG CONN "Sec-WebSocket-Key: ++++////zzzzAAAA0000+/==\r\n" VER "\r\n",
        RL HOST UPG CONN "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n" VER "\r\n",
        /* subprotocols: one, several, over lines, with empty elements */
        RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: chat\r\n\r\n",
        RL HOST UPG CONN KEY VER
        "Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n\r\n",
        RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: chat, , v2.json.kaze\r\n\r\n",
        /* extensions: several offers, several lines */
        RL HOST UPG CONN KEY VER "Sec-WebSocket-Extensions: permessage-deflate; "
                                 "client_max_window_bits=15, permessage-deflate\r\n"
                                 "Sec-WebSocket-Extensions: x-kaze; level=\"3\"\r\n\r\n",
        /* unknown headers are ignored */
        RL HOST UPG CONN KEY VER "X-Forwarded-For: 10.0.0.1\r\nAuthorization: Basic YTpi\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int err = judge(cases[i]);
        if (err != KZ_OK)
            fail_msg("case %zu: %d (%s)", i, err, kz_strerror(err));
    }
}

static void absolute_target_fields(void **state)
{
    struct parsed p;
    assert_true(
        parse_req(&p, "GET ws://h/chat?x=1 HTTP/1.1\r\nHost: h\r\n" UPG CONN KEY VER "\r\n") > 0);
    assert_int_equal(kz_hs_check_request(&p.req), KZ_OK);
    str_is(p.req.path, "/chat");
    str_is(p.req.query, "x=1");
    parsed_free(&p);
}

struct error_case {
    const char *text;
    int err;
    int status;
};

static void each_error(void **state)
{
    /* A list of more subprotocols than a request may offer. */
    static char many[4096];
    char *m = many;
    m += sprintf(m, "%s", RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: p0");
    for (int i = 1; i < 65; i++)
        m += sprintf(m, ", p%d", i);
    sprintf(m, "\r\n\r\n");

    static const struct error_case cases[] = {
        {"POST /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_METHOD, 405},
        {"get /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_METHOD, 405},
        {"GETS /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_METHOD, 405},
        {"GET /chat HTTP/1.0\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_HTTP_VERSION, 400},
        {"GET * HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_BAD_TARGET, 400},
        {"GET chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_BAD_TARGET, 400},
        {"GET ftp://h/chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_BAD_TARGET, 400},
        {"GET http:///chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_BAD_TARGET, 400},
        {"GET h:443 HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_BAD_TARGET, 400},
        {RL UPG CONN KEY VER "\r\n", KZ_ERR_HS_NO_HOST, 400},
        {RL HOST HOST UPG CONN KEY VER "\r\n", KZ_ERR_HS_NO_HOST, 400},
        {RL "Host: a\r\nHost: b\r\n" UPG CONN KEY VER "\r\n", KZ_ERR_HS_NO_HOST, 400},
        {RL "Host:\r\n" UPG CONN KEY VER "\r\n", KZ_ERR_HS_NO_HOST, 400},
        {RL HOST CONN KEY VER "\r\n", KZ_ERR_HS_NO_UPGRADE, 400},
        {RL HOST "Upgrade: h2c\r\n" CONN KEY VER "\r\n", KZ_ERR_HS_NO_UPGRADE, 400},
        {RL HOST "Upgrade: websockets\r\n" CONN KEY VER "\r\n", KZ_ERR_HS_NO_UPGRADE, 400},
        {RL HOST "Upgrade: web socket\r\n" CONN KEY VER "\r\n", KZ_ERR_HS_NO_UPGRADE, 400},
        {RL HOST "Upgrade:\r\n" CONN KEY VER "\r\n", KZ_ERR_HS_NO_UPGRADE, 400},
        {RL HOST UPG KEY VER "\r\n", KZ_ERR_HS_NO_CONNECTION, 400},
        {RL HOST UPG "Connection: keep-alive\r\n" KEY VER "\r\n", KZ_ERR_HS_NO_CONNECTION, 400},
        {RL HOST UPG "Connection: Upgrades\r\n" KEY VER "\r\n", KZ_ERR_HS_NO_CONNECTION, 400},
        {RL HOST UPG "Connection: websocket\r\n" KEY VER "\r\n", KZ_ERR_HS_NO_CONNECTION, 400},
        {RL HOST UPG CONN KEY VER "Transfer-Encoding: chunked\r\n\r\n", KZ_ERR_HS_BODY, 400},
        {RL HOST UPG CONN KEY VER "Transfer-Encoding: identity\r\n\r\n", KZ_ERR_HS_BODY, 400},
        {RL HOST UPG CONN KEY VER "Content-Length: 5\r\n\r\n", KZ_ERR_HS_BODY, 400},
        {RL HOST UPG CONN KEY VER "Content-Length: 0\r\nContent-Length: 1\r\n\r\n", KZ_ERR_HS_BODY,
         400},
        {RL HOST UPG CONN KEY VER "Content-Length:\r\n\r\n", KZ_ERR_HS_BODY, 400},
        {RL HOST UPG CONN KEY VER "Content-Length: 0, 0\r\n\r\n", KZ_ERR_HS_BODY, 400},
        {RL HOST UPG CONN KEY "\r\n", KZ_ERR_HS_NO_VERSION, 426},
        {RL HOST UPG CONN KEY "Sec-WebSocket-Version: 8\r\n\r\n", KZ_ERR_HS_VERSION, 426},
        {RL HOST UPG CONN KEY "Sec-WebSocket-Version: 013\r\n\r\n", KZ_ERR_HS_VERSION, 426},
        {RL HOST UPG CONN KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n", KZ_ERR_HS_VERSION, 426},
        {RL HOST UPG CONN KEY "Sec-WebSocket-Version:\r\n\r\n", KZ_ERR_HS_VERSION, 426},
        {RL HOST UPG CONN KEY VER VER "\r\n", KZ_ERR_HS_VERSION, 426},
        {RL HOST UPG CONN VER "\r\n", KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN KEY KEY VER "\r\n", KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key:\r\n" VER "\r\n", KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ-_\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBu-_5jZQ==\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=A\r\n" VER "\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: chat, chat\r\n\r\n",
         KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: a\r\n\r\n",
         KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: chat superchat\r\n\r\n",
         KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: chat;v=2\r\n\r\n",
         KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: \"chat\"\r\n\r\n",
         KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol:\r\n\r\n", KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: , ,\r\n\r\n", KZ_ERR_HS_BAD_PROTOCOLS,
         400},
        {many, KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Extensions: permessage-deflate;\r\n\r\n",
         KZ_ERR_HS_BAD_EXTENSIONS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Extensions:\r\n\r\n", KZ_ERR_HS_BAD_EXTENSIONS,
         400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Extensions: a; b=\"c d\"\r\n\r\n",
         KZ_ERR_HS_BAD_EXTENSIONS, 400},
        {RL HOST UPG CONN KEY VER "Sec-WebSocket-Extensions: a\r\n"
                                  "Sec-WebSocket-Extensions: b;;\r\n\r\n",
         KZ_ERR_HS_BAD_EXTENSIONS, 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int err = judge(cases[i].text);
        if (err != cases[i].err)
            fail_msg("case %zu: %d (%s), expected %d", i, err, kz_strerror(err), cases[i].err);
        assert_int_equal(kz_hs_err_status(err), cases[i].status);
    }
}

static void sixty_four_protocols_are_fine(void **state)
{
    static char text[4096];
    char *m = text;
    m += sprintf(m, "%s", RL HOST UPG CONN KEY VER "Sec-WebSocket-Protocol: p0");
    for (int i = 1; i < 64; i++)
        m += sprintf(m, ", p%d", i);
    sprintf(m, "\r\n\r\n");
    assert_int_equal(judge(text), KZ_OK);
}

/*
 * Errors come in the documented order: a request broken in every way gives
 * the first error; mending that one gives the next, and so on.
 */
static void errors_in_documented_order(void **state)
{
    static const struct error_case steps[] = {
        {"POST * HTTP/1.0\r\nContent-Length: 3\r\nSec-WebSocket-Key: x\r\n"
         "Sec-WebSocket-Protocol: a a\r\nSec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_METHOD, 405},
        {"GET * HTTP/1.0\r\nContent-Length: 3\r\nSec-WebSocket-Key: x\r\n"
         "Sec-WebSocket-Protocol: a a\r\nSec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_HTTP_VERSION, 400},
        {"GET * HTTP/1.1\r\nContent-Length: 3\r\nSec-WebSocket-Key: x\r\n"
         "Sec-WebSocket-Protocol: a a\r\nSec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_BAD_TARGET, 400},
        {"GET / HTTP/1.1\r\nContent-Length: 3\r\nSec-WebSocket-Key: x\r\n"
         "Sec-WebSocket-Protocol: a a\r\nSec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_NO_HOST, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nSec-WebSocket-Key: x\r\n"
         "Sec-WebSocket-Protocol: a a\r\nSec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_NO_UPGRADE, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nContent-Length: 3\r\n"
         "Sec-WebSocket-Key: x\r\nSec-WebSocket-Protocol: a a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_NO_CONNECTION, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Content-Length: 3\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Protocol: a a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_BODY, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: x\r\nSec-WebSocket-Protocol: a a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_NO_VERSION, 426},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 7\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Protocol: a a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_VERSION, 426},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Protocol: a a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_BAD_KEY, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n" KEY "Sec-WebSocket-Protocol: a a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_BAD_PROTOCOLS, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n" KEY "Sec-WebSocket-Protocol: a\r\n"
         "Sec-WebSocket-Extensions: ;\r\n\r\n",
         KZ_ERR_HS_BAD_EXTENSIONS, 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n" KEY "Sec-WebSocket-Protocol: a\r\n"
         "Sec-WebSocket-Extensions: e\r\n\r\n",
         KZ_OK, 500},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        int err = judge(steps[i].text);
        if (err != steps[i].err)
            fail_msg("step %zu: %d (%s), expected %d", i, err, kz_strerror(err), steps[i].err);
        assert_int_equal(kz_hs_err_status(err), steps[i].status);
    }
}

static void status_for_every_code(void **state)
{
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_MALFORMED), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_HTTP_VERSION), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_METHOD), 405);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_TOO_LARGE), 431);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_TOO_MANY_HEADERS), 431);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_NO_HOST), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_NO_UPGRADE), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_NO_CONNECTION), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_BAD_KEY), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_NO_VERSION), 426);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_VERSION), 426);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_BAD_EXTENSIONS), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_BAD_PROTOCOLS), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_BAD_TARGET), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_BODY), 400);
    assert_int_equal(kz_hs_err_status(KZ_ERR_NOMEM), 500);
    assert_int_equal(kz_hs_err_status(KZ_ERR_CRYPTO), 500);
    assert_int_equal(kz_hs_err_status(KZ_ERR_HS_RESP_STATUS), 500);
    assert_int_equal(kz_hs_err_status(KZ_ERR_PROTO_RSV), 500);
    assert_int_equal(kz_hs_err_status(KZ_OK), 500);
}

static void check_arguments(void **state)
{
    assert_int_equal(kz_hs_check_request(NULL), KZ_ERR_INVALID_ARGUMENT);
    struct kz_hs_request req = {0};
    req.num_headers = 3;
    assert_int_equal(kz_hs_check_request(&req), KZ_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------
 * The 101 answer
 */

static void response_for_rfc_request(void **state)
{
    struct parsed req;
    assert_true(parse_req(&req, RFC_REQUEST) > 0);
    char out[512];
    static const char expected[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                   "\r\n";
    int n = kz_hs_write_response(out, sizeof(out), &req.req, NULL);
    assert_int_equal(n, (int)strlen(expected));
    assert_memory_equal(out, expected, (size_t)n);

    /* With a subprotocol: the RFC's own answer. */
    struct kz_hs_accept acc = {.subprotocol = {"chat", 4}};
    n = kz_hs_write_response(out, sizeof(out), &req.req, &acc);
    assert_true(n > 0);
    out[n] = '\0';
    struct parsed resp;
    assert_int_equal(parse_resp(&resp, out), n);
    assert_int_equal(resp.resp.status, 101);
    str_is(resp.resp.reason, "Switching Protocols");
    const struct kz_header *h = resp.resp.headers;
    size_t nh = resp.resp.num_headers;
    assert_int_equal(nh, 4);
    str_is(kz_hs_header(h, nh, "Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    str_is(kz_hs_header(h, nh, "Sec-WebSocket-Protocol"), "chat");
    assert_true(kz_hs_list_has(h, nh, "Upgrade", "websocket"));
    assert_true(kz_hs_list_has(h, nh, "Connection", "Upgrade"));

    /* The client's judge agrees. */
    struct kz_str protos[] = {{"chat", 4}, {"superchat", 9}};
    struct kz_hs_client_request offer = {.protocols = protos, .num_protocols = 2};
    struct kz_str chosen;
    assert_int_equal(kz_hs_check_response(&resp.resp, "dGhlIHNhbXBsZSBub25jZQ==", &offer, &chosen),
                     KZ_OK);
    str_is(chosen, "chat");
    parsed_free(&resp);
    parsed_free(&req);
}

static void response_with_everything(void **state)
{
    struct parsed req;
    assert_true(parse_req(&req, CHROMIUM_REQUEST) > 0);
    struct kz_header extra[] = {
        {{"Set-Cookie", 10}, {"session=1; HttpOnly", 19}},
        {{"X-Kaze", 6}, {"", 0}},
    };
    struct kz_hs_accept acc = {
        .subprotocol = {"v2.kaze", 7},
        .extensions = {"permessage-deflate; client_max_window_bits=15", 45},
        .extra_headers = extra,
        .num_extra_headers = 2,
    };
    char out[1024];
    int n = kz_hs_write_response(out, sizeof(out), &req.req, &acc);
    assert_true(n > 0);
    out[n] = '\0';
    struct parsed resp;
    assert_int_equal(parse_resp(&resp, out), n);
    const struct kz_header *h = resp.resp.headers;
    size_t nh = resp.resp.num_headers;
    assert_int_equal(nh, 7);
    str_is(kz_hs_header(h, nh, "Sec-WebSocket-Accept"), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    str_is(kz_hs_header(h, nh, "Sec-WebSocket-Protocol"), "v2.kaze");
    str_is(kz_hs_header(h, nh, "Sec-WebSocket-Extensions"),
           "permessage-deflate; client_max_window_bits=15");
    str_is(kz_hs_header(h, nh, "Set-Cookie"), "session=1; HttpOnly");
    str_is(kz_hs_header(h, nh, "X-Kaze"), "");
    parsed_free(&resp);

    /* Every buffer one byte short of the answer is refused. */
    for (size_t cap = 0; cap < (size_t)n; cap++) {
        char *small = out_buffer(cap);
        assert_int_equal(kz_hs_write_response(small, cap, &req.req, &acc), KZ_ERR_BUFFER_TOO_SMALL);
        kzt_guard_free((uint8_t *)small, cap);
    }
    char *exact = out_buffer((size_t)n);
    assert_int_equal(kz_hs_write_response(exact, (size_t)n, &req.req, &acc), n);
    assert_memory_equal(exact, out, (size_t)n);
    kzt_guard_free((uint8_t *)exact, (size_t)n);
    parsed_free(&req);
}

static void response_refuses_bad_values(void **state)
{
    struct parsed req;
    assert_true(parse_req(&req, RFC_REQUEST) > 0);
    char out[1024];
    struct kz_header crlf[] = {{{"Set-Cookie", 10}, {"a\r\nX-Evil: 1", 12}}};
    struct kz_header lf[] = {{{"Set-Cookie", 10}, {"a\nb", 3}}};
    struct kz_header nul[] = {{{"Set-Cookie", 10}, {"a\0b", 3}}};
    struct kz_header badname[] = {{{"Set Cookie", 10}, {"a", 1}}};
    struct kz_header noname[] = {{{"", 0}, {"a", 1}}};
    const struct kz_hs_accept bad[] = {
        {.subprotocol = {"chat\r\n", 6}},
        {.subprotocol = {"a b", 3}},
        {.subprotocol = {"a,b", 3}},
        {.extensions = {"permessage-deflate\r\nX: y", 24}},
        {.extensions = {"x\n", 2}},
        {.extra_headers = crlf, .num_extra_headers = 1},
        {.extra_headers = lf, .num_extra_headers = 1},
        {.extra_headers = nul, .num_extra_headers = 1},
        {.extra_headers = badname, .num_extra_headers = 1},
        {.extra_headers = noname, .num_extra_headers = 1},
        {.extra_headers = NULL, .num_extra_headers = 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = kz_hs_write_response(out, sizeof(out), &req.req, &bad[i]);
        if (r != KZ_ERR_INVALID_ARGUMENT)
            fail_msg("case %zu: %d", i, r);
    }
    assert_int_equal(kz_hs_write_response(out, sizeof(out), NULL, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_response(NULL, 10, &req.req, NULL), KZ_ERR_INVALID_ARGUMENT);
    parsed_free(&req);

    /* A request without a usable key cannot be answered. */
    struct kz_hs_request nokey = {0};
    assert_int_equal(kz_hs_write_response(out, sizeof(out), &nokey, NULL), KZ_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------
 * Refusals
 */

/* Writes a refusal, parses it back and checks its shape; returns its body. */
static void refusal_is(int status, const char *reason, const char *phrase, const char *body)
{
    char out[1024];
    int n = kz_hs_write_refusal(out, sizeof(out), status, reason);
    assert_true(n > 0);
    out[n] = '\0';
    struct parsed p;
    int head = parse_resp(&p, out);
    assert_true(head > 0);
    assert_int_equal(p.resp.status, status);
    assert_int_equal(p.resp.http_minor, 1);
    str_is(p.resp.reason, phrase);
    const struct kz_header *h = p.resp.headers;
    size_t nh = p.resp.num_headers;
    str_is(kz_hs_header(h, nh, "Connection"), "close");
    str_is(kz_hs_header(h, nh, "Content-Type"), "text/plain");
    char length[24];
    snprintf(length, sizeof(length), "%zu", strlen(body) + 1);
    str_is(kz_hs_header(h, nh, "Content-Length"), length);
    if (status == 426)
        str_is(kz_hs_header(h, nh, "Sec-WebSocket-Version"), "13");
    else
        assert_null(kz_hs_header(h, nh, "Sec-WebSocket-Version").ptr);
    if (status == 405)
        str_is(kz_hs_header(h, nh, "Allow"), "GET");
    else
        assert_null(kz_hs_header(h, nh, "Allow").ptr);
    assert_int_equal(nh, 3 + (status == 426) + (status == 405));
    /* The body follows the head: the reason and a newline. */
    assert_int_equal((size_t)(n - head), strlen(body) + 1);
    assert_memory_equal(out + head, body, strlen(body));
    assert_int_equal(out[n - 1], '\n');
    parsed_free(&p);
}

static void refusals(void **state)
{
    static const struct {
        int status;
        const char *phrase;
    } standard[] = {
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
        {418, "Client Error"},
        {499, "Client Error"},
        {502, "Server Error"},
        {599, "Server Error"},
    };
    for (size_t i = 0; i < sizeof(standard) / sizeof(standard[0]); i++) {
        refusal_is(standard[i].status, NULL, standard[i].phrase, standard[i].phrase);
        refusal_is(standard[i].status, "origin not allowed", standard[i].phrase,
                   "origin not allowed");
    }
    refusal_is(400, "", "Bad Request", "");
    /* A reason is a body, and may say anything. */
    refusal_is(403, "line one\r\nline two", "Forbidden", "line one\r\nline two");
}

static void refusal_exact_bytes(void **state)
{
    static const char expected[] = "HTTP/1.1 426 Upgrade Required\r\n"
                                   "Connection: close\r\n"
                                   "Content-Type: text/plain\r\n"
                                   "Content-Length: 17\r\n"
                                   "Sec-WebSocket-Version: 13\r\n"
                                   "\r\n"
                                   "Upgrade Required\n";
    char out[256];
    int n = kz_hs_write_refusal(out, sizeof(out), 426, NULL);
    assert_int_equal(n, (int)strlen(expected));
    assert_memory_equal(out, expected, (size_t)n);

    for (size_t cap = 0; cap < (size_t)n; cap++) {
        char *small = out_buffer(cap);
        assert_int_equal(kz_hs_write_refusal(small, cap, 426, NULL), KZ_ERR_BUFFER_TOO_SMALL);
        kzt_guard_free((uint8_t *)small, cap);
    }
    /* A long reason has a Content-Length of several digits. */
    static char reason[1200];
    memset(reason, 'r', sizeof(reason) - 1);
    static char big[2048];
    n = kz_hs_write_refusal(big, sizeof(big), 400, reason);
    assert_true(n > 0);
    big[n] = '\0';
    assert_non_null(strstr(big, "Content-Length: 1200\r\n"));
}

static void refusal_arguments(void **state)
{
    char out[256];
    assert_int_equal(kz_hs_write_refusal(out, sizeof(out), 399, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_refusal(out, sizeof(out), 600, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_refusal(out, sizeof(out), 101, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_refusal(out, sizeof(out), -400, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_refusal(NULL, 256, 400, NULL), KZ_ERR_INVALID_ARGUMENT);
}

/* Every refusal a failed check leads to parses back with its status. */
static void refusal_for_each_error(void **state)
{
    static const int errors[] = {
        KZ_ERR_HS_MALFORMED, KZ_ERR_HS_METHOD,  KZ_ERR_HS_TOO_LARGE,
        KZ_ERR_HS_VERSION,   KZ_ERR_HS_BAD_KEY, KZ_ERR_NOMEM,
    };
    static const char *const phrases[] = {
        "Bad Request",      "Method Not Allowed", "Request Header Fields Too Large",
        "Upgrade Required", "Bad Request",        "Internal Server Error",
    };
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        refusal_is(kz_hs_err_status(errors[i]), kz_strerror(errors[i]), phrases[i],
                   kz_strerror(errors[i]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc_accept_key),
        cmocka_unit_test(accept_key_with_fetched_sha1),
        cmocka_unit_test(rfc_request_accepted),
        cmocka_unit_test(chromium_request_accepted),
        cmocka_unit_test(well_formed_variants),
        cmocka_unit_test(absolute_target_fields),
        cmocka_unit_test(each_error),
        cmocka_unit_test(sixty_four_protocols_are_fine),
        cmocka_unit_test(errors_in_documented_order),
        cmocka_unit_test(status_for_every_code),
        cmocka_unit_test(check_arguments),
        cmocka_unit_test(response_for_rfc_request),
        cmocka_unit_test(response_with_everything),
        cmocka_unit_test(response_refuses_bad_values),
        cmocka_unit_test(refusals),
        cmocka_unit_test(refusal_exact_bytes),
        cmocka_unit_test(refusal_arguments),
        cmocka_unit_test(refusal_for_each_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
