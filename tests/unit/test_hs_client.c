/*
 * The client's half of the handshake: fresh keys, the upgrade request
 * (built, parsed back by the server's parser and accepted by its judge),
 * and the judgement of the server's answer, each failure with its own code
 * and in the documented order. Every response is parsed whole, one byte at
 * a time and at every split point.
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

static const char rfc_key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void fresh_keys(void **state)
{
    char a[KZ_HS_KEY_LEN + 1], b[KZ_HS_KEY_LEN + 1];
    memset(a, '#', sizeof(a));
    assert_int_equal(kz_hs_client_key(a), KZ_OK);
    assert_int_equal(kz_hs_client_key(b), KZ_OK);
    assert_int_equal(strlen(a), KZ_HS_KEY_LEN);
    assert_string_equal(a + 22, "==");
    for (int i = 0; i < 22; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", a[i]));
    /* 128 random bits: two equal keys mean the randomness is broken. */
    assert_string_not_equal(a, b);
    assert_int_equal(kz_hs_client_key(NULL), KZ_ERR_INVALID_ARGUMENT);
}

static void minimal_request_bytes(void **state)
{
    struct kz_hs_client_request r = {.host = {"example.com", 11}};
    static const char expected[] = "GET / HTTP/1.1\r\n"
                                   "Host: example.com\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n"
                                   "\r\n";
    char out[512];
    int n = kz_hs_write_request(out, sizeof(out), &r, rfc_key);
    assert_int_equal(n, (int)strlen(expected));
    assert_memory_equal(out, expected, (size_t)n);
}

static void full_request_round_trip(void **state)
{
    char key[KZ_HS_KEY_LEN + 1];
    assert_int_equal(kz_hs_client_key(key), KZ_OK);
    struct kz_str protos[] = {{"v2.kaze", 7}, {"chat", 4}, {"superchat", 9}};
    struct kz_header extra[] = {
        {{"Authorization", 13}, {"Bearer abc.def", 14}},
        {{"Cookie", 6}, {"a=1; b=2", 8}},
        {{"User-Agent", 10}, {"kaze/0.1", 8}},
    };
    struct kz_hs_client_request r = {
        .host = {"server.example.com:8080", 23},
        .target = {"/chat?room=1", 12},
        .origin = {"https://example.com", 19},
        .protocols = protos,
        .num_protocols = 3,
        .extensions = {"permessage-deflate; client_max_window_bits", 42},
        .extra_headers = extra,
        .num_extra_headers = 3,
    };
    char out[1024];
    int n = kz_hs_write_request(out, sizeof(out), &r, key);
    assert_true(n > 0);
    out[n] = '\0';

    struct parsed p;
    assert_int_equal(parse_req(&p, out), n);
    assert_int_equal(kz_hs_check_request(&p.req), KZ_OK);
    str_is(p.req.method, "GET");
    str_is(p.req.path, "/chat");
    str_is(p.req.query, "room=1");
    str_is(p.req.host, "server.example.com:8080");
    str_is(p.req.origin, "https://example.com");
    str_is(p.req.key, key);
    str_is(p.req.version, "13");
    str_is(p.req.authorization, "Bearer abc.def");
    str_is(p.req.cookie, "a=1; b=2");
    str_is(kz_hs_header(p.req.headers, p.req.num_headers, "User-Agent"), "kaze/0.1");

    struct kz_hs_iter it = {0, 0};
    struct kz_str item;
    for (size_t i = 0; i < 3; i++) {
        assert_true(kz_hs_list_next(p.req.headers, p.req.num_headers, "Sec-WebSocket-Protocol", &it,
                                    &item));
        assert_int_equal(item.len, protos[i].len);
        assert_memory_equal(item.ptr, protos[i].ptr, item.len);
    }
    assert_false(
        kz_hs_list_next(p.req.headers, p.req.num_headers, "Sec-WebSocket-Protocol", &it, &item));
    struct kz_hs_iter eit = {0, 0};
    struct kz_ext_offer ext;
    assert_int_equal(kz_hs_next_extension(p.req.headers, p.req.num_headers, &eit, &ext), 1);
    str_is(ext.name, "permessage-deflate");

    /* The server's answer to it passes the client's judge. */
    struct kz_hs_accept acc = {.subprotocol = {"chat", 4},
                               .extensions = {"permessage-deflate", 18}};
    char answer[512];
    int an = kz_hs_write_response(answer, sizeof(answer), &p.req, &acc);
    assert_true(an > 0);
    answer[an] = '\0';
    struct parsed resp;
    assert_int_equal(parse_resp(&resp, answer), an);
    struct kz_str chosen;
    assert_int_equal(kz_hs_check_response(&resp.resp, key, &r, &chosen), KZ_OK);
    str_is(chosen, "chat");
    parsed_free(&resp);
    parsed_free(&p);

    /* Every buffer short of the request is refused. */
    for (size_t cap = 0; cap < (size_t)n; cap++) {
        char *small = out_buffer(cap);
        assert_int_equal(kz_hs_write_request(small, cap, &r, key), KZ_ERR_BUFFER_TOO_SMALL);
        kzt_guard_free((uint8_t *)small, cap);
    }
    char *exact = out_buffer((size_t)n);
    assert_int_equal(kz_hs_write_request(exact, (size_t)n, &r, key), n);
    assert_memory_equal(exact, out, (size_t)n);
    kzt_guard_free((uint8_t *)exact, (size_t)n);
}

static void request_refuses_bad_values(void **state)
{
    struct kz_str good_protos[] = {{"chat", 4}};
    struct kz_str spaced[] = {{"a b", 3}};
    struct kz_str comma[] = {{"a,b", 3}};
    struct kz_str empty[] = {{"", 0}};
    struct kz_str twice[] = {{"chat", 4}, {"chat", 4}};
    struct kz_header crlf[] = {{{"Cookie", 6}, {"a\r\nX: y", 7}}};
    struct kz_header badname[] = {{{"Bad:Name", 8}, {"v", 1}}};
    const struct kz_hs_client_request bad[] = {
        {.host = {"", 0}},
        {.host = {NULL, 0}},
        {.host = {"a\r\nb", 4}},
        {.host = {"a\nb", 3}},
        {.host = {"h", 1}, .target = {"chat", 4}},
        {.host = {"h", 1}, .target = {"/a b", 4}},
        {.host = {"h", 1}, .target = {"/a\r\n", 4}},
        {.host = {"h", 1}, .target = {"http://h/", 9}},
        {.host = {"h", 1}, .origin = {"o\r\n", 3}},
        {.host = {"h", 1}, .protocols = spaced, .num_protocols = 1},
        {.host = {"h", 1}, .protocols = comma, .num_protocols = 1},
        {.host = {"h", 1}, .protocols = empty, .num_protocols = 1},
        {.host = {"h", 1}, .protocols = twice, .num_protocols = 2},
        {.host = {"h", 1}, .protocols = NULL, .num_protocols = 1},
        {.host = {"h", 1}, .extensions = {"x\r\n", 3}},
        {.host = {"h", 1}, .extra_headers = crlf, .num_extra_headers = 1},
        {.host = {"h", 1}, .extra_headers = badname, .num_extra_headers = 1},
    };
    char out[1024];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = kz_hs_write_request(out, sizeof(out), &bad[i], rfc_key);
        if (r != KZ_ERR_INVALID_ARGUMENT)
            fail_msg("case %zu: %d", i, r);
    }
    struct kz_hs_client_request ok = {
        .host = {"h", 1}, .protocols = good_protos, .num_protocols = 1};
    assert_true(kz_hs_write_request(out, sizeof(out), &ok, rfc_key) > 0);
    assert_int_equal(kz_hs_write_request(out, sizeof(out), NULL, rfc_key), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_request(out, sizeof(out), &ok, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_request(NULL, 10, &ok, rfc_key), KZ_ERR_INVALID_ARGUMENT);
    /* A key that is not one. */
    assert_int_equal(kz_hs_write_request(out, sizeof(out), &ok, "dGhlIHNhbXBsZSBub25jZQ=A"),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_write_request(out, sizeof(out), &ok, "dGhlIHNhbXBsZSBub25j\r\n=="),
                     KZ_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------
 * Judging responses
 */

#define STATUS "HTTP/1.1 101 Switching Protocols\r\n"
#define UPG    "Upgrade: websocket\r\n"
#define CONN   "Connection: Upgrade\r\n"
#define ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static const struct kz_str offered_protocols[] = {{"chat", 4}, {"superchat", 9}};
static const struct kz_hs_client_request offer = {
    .host = {"server.example.com", 18},
    .protocols = offered_protocols,
    .num_protocols = 2,
    .extensions = {"permessage-deflate; client_max_window_bits, x-kaze-trace", 56},
};
static const struct kz_hs_client_request bare_offer = {.host = {"server.example.com", 18}};

/* Parses `text` every way (it must parse) and judges it against `o`. */
static int judge(const char *text, const struct kz_hs_client_request *o, char *chosen,
                 size_t chosen_cap)
{
    struct parsed p;
    int rc = parse_resp(&p, text);
    if (rc <= 0)
        fail_msg("parse: %d for\n%s", rc, text);
    struct kz_str sub = {"junk", 4};
    int err = kz_hs_check_response(&p.resp, rfc_key, o, &sub);
    if (err == KZ_OK && chosen != NULL) {
        assert_true(sub.len < chosen_cap);
        memcpy(chosen, sub.ptr != NULL ? sub.ptr : "", sub.len);
        chosen[sub.len] = '\0';
    }
    if (err != KZ_OK) {
        /* On failure no subprotocol is reported. */
        assert_int_equal(sub.len, 0);
    }
    parsed_free(&p);
    return err;
}

static void rfc_response_accepted(void **state)
{
    char chosen[32];
    assert_int_equal(judge(STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n", &offer,
                           chosen, sizeof(chosen)),
                     KZ_OK);
    assert_string_equal(chosen, "chat");
    /* No subprotocol chosen: empty. */
    assert_int_equal(judge(STATUS UPG CONN ACCEPT "\r\n", &offer, chosen, sizeof(chosen)), KZ_OK);
    assert_string_equal(chosen, "");
    assert_int_equal(judge(STATUS UPG CONN ACCEPT "\r\n", &bare_offer, chosen, sizeof(chosen)),
                     KZ_OK);
    assert_int_equal(judge(STATUS UPG CONN ACCEPT "\r\n", NULL, chosen, sizeof(chosen)), KZ_OK);

    /* The chosen subprotocol may be ignored. */
    struct parsed p;
    assert_true(parse_resp(&p, STATUS UPG CONN ACCEPT "\r\n") > 0);
    assert_int_equal(kz_hs_check_response(&p.resp, rfc_key, &offer, NULL), KZ_OK);
    parsed_free(&p);
}

static void well_formed_responses(void **state)
{
    static const char *const cases[] = {
        STATUS "Upgrade: WebSocket\r\n" CONN ACCEPT "\r\n",
        STATUS UPG "Connection: keep-alive, upgrade\r\n" ACCEPT "\r\n",
        STATUS UPG "Connection: keep-alive\r\nConnection: Upgrade\r\n" ACCEPT "\r\n",
        STATUS UPG CONN "Sec-WebSocket-Accept:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n\r\n",
        "HTTP/1.1 101\r\n" UPG CONN ACCEPT "\r\n",
        "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n\n",
        STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: superchat\r\n\r\n",
        STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate; "
                               "server_no_context_takeover; client_max_window_bits=10\r\n\r\n",
        STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: PerMessage-Deflate, x-kaze-trace\r\n\r\n",
        STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                               "Sec-WebSocket-Extensions: x-kaze-trace\r\n\r\n",
        STATUS UPG CONN ACCEPT "Set-Cookie: a=1\r\nServer: kaze\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int err = judge(cases[i], &offer, NULL, 0);
        if (err != KZ_OK)
            fail_msg("case %zu: %d (%s)", i, err, kz_strerror(err));
    }
}

struct error_case {
    const char *text;
    const struct kz_hs_client_request *offer;
    int err;
};

static void each_error(void **state)
{
    static const struct error_case cases[] = {
        {"HTTP/1.1 200 OK\r\n" UPG CONN ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_STATUS},
        {"HTTP/1.1 401 Unauthorized\r\n\r\n", &offer, KZ_ERR_HS_RESP_STATUS},
        {"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n", &offer, KZ_ERR_HS_RESP_STATUS},
        {"HTTP/1.1 100 Continue\r\n\r\n", &offer, KZ_ERR_HS_RESP_STATUS},
        {STATUS CONN ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_UPGRADE},
        {STATUS "Upgrade: h2c\r\n" CONN ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_UPGRADE},
        {STATUS "Upgrade: websocket, h2c\r\n" CONN ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_UPGRADE},
        {STATUS "Upgrade:\r\n" CONN ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_UPGRADE},
        {STATUS UPG ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_CONNECTION},
        {STATUS UPG "Connection: close\r\n" ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_CONNECTION},
        {STATUS UPG "Connection: keep-alive\r\n" ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_CONNECTION},
        {STATUS UPG CONN "\r\n", &offer, KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN "Sec-WebSocket-Accept:\r\n\r\n", &offer, KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN ACCEPT ACCEPT "\r\n", &offer, KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: megachat\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: Chat\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n", &bare_offer,
         KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat\r\n\r\n", NULL,
         KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat\r\n"
                                "Sec-WebSocket-Protocol: chat\r\n\r\n",
         &offer, KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol:\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: x-unknown\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate, x-unknown\r\n\r\n",
         &offer, KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", &bare_offer,
         KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", NULL,
         KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate;\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions:\r\n\r\n", &offer,
         KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Extensions: permessage-deflate; a=\"b c\"\r\n\r\n",
         &offer, KZ_ERR_HS_RESP_EXTENSION},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int err = judge(cases[i].text, cases[i].offer, NULL, 0);
        if (err != cases[i].err)
            fail_msg("case %zu: %d (%s), expected %d", i, err, kz_strerror(err), cases[i].err);
    }
}

static void malformed_offer_offers_nothing(void **state)
{
    struct kz_hs_client_request broken = {
        .host = {"h", 1},
        .extensions = {"permessage-deflate;", 19},
    };
    assert_int_equal(judge(STATUS UPG CONN ACCEPT
                           "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                           &broken, NULL, 0),
                     KZ_ERR_HS_RESP_EXTENSION);
}

/* Mending one failure at a time reveals the next, in the documented order. */
static void errors_in_documented_order(void **state)
{
#define BAD_REST "Sec-WebSocket-Protocol: nope\r\nSec-WebSocket-Extensions: x-nope\r\n\r\n"
    static const struct error_case steps[] = {
        {"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: close\r\n" BAD_REST, &offer,
         KZ_ERR_HS_RESP_STATUS},
        {STATUS "Upgrade: h2c\r\nConnection: close\r\n" BAD_REST, &offer, KZ_ERR_HS_RESP_UPGRADE},
        {STATUS UPG "Connection: close\r\n" BAD_REST, &offer, KZ_ERR_HS_RESP_CONNECTION},
        {STATUS UPG CONN BAD_REST, &offer, KZ_ERR_HS_RESP_ACCEPT},
        {STATUS UPG CONN ACCEPT BAD_REST, &offer, KZ_ERR_HS_RESP_SUBPROTOCOL},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat\r\n"
                                "Sec-WebSocket-Extensions: x-nope\r\n\r\n",
         &offer, KZ_ERR_HS_RESP_EXTENSION},
        {STATUS UPG CONN ACCEPT "Sec-WebSocket-Protocol: chat\r\n"
                                "Sec-WebSocket-Extensions: x-kaze-trace\r\n\r\n",
         &offer, KZ_OK},
    };
#undef BAD_REST
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        int err = judge(steps[i].text, steps[i].offer, NULL, 0);
        if (err != steps[i].err)
            fail_msg("step %zu: %d (%s), expected %d", i, err, kz_strerror(err), steps[i].err);
    }
}

static void check_arguments(void **state)
{
    struct kz_hs_response resp = {.status = 101};
    struct kz_str sub = {"junk", 4};
    assert_int_equal(kz_hs_check_response(NULL, rfc_key, &offer, &sub), KZ_ERR_INVALID_ARGUMENT);
    assert_null(sub.ptr);
    assert_int_equal(kz_hs_check_response(&resp, NULL, &offer, NULL), KZ_ERR_INVALID_ARGUMENT);
    resp.num_headers = 2;
    assert_int_equal(kz_hs_check_response(&resp, rfc_key, &offer, NULL), KZ_ERR_INVALID_ARGUMENT);
}

static void refusal_is_a_status_error(void **state)
{
    /* What our server sends on a bad version is a status failure here. */
    char out[256];
    int n = kz_hs_write_refusal(out, sizeof(out), 426, NULL);
    assert_true(n > 0);
    struct parsed p;
    assert_true(parse_every_way(&p, true, out, (size_t)n, MAX_HEADERS, 8192) > 0);
    assert_int_equal(p.resp.status, 426);
    assert_int_equal(kz_hs_check_response(&p.resp, rfc_key, &offer, NULL), KZ_ERR_HS_RESP_STATUS);
    parsed_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fresh_keys),
        cmocka_unit_test(minimal_request_bytes),
        cmocka_unit_test(full_request_round_trip),
        cmocka_unit_test(request_refuses_bad_values),
        cmocka_unit_test(rfc_response_accepted),
        cmocka_unit_test(well_formed_responses),
        cmocka_unit_test(each_error),
        cmocka_unit_test(malformed_offer_offers_nothing),
        cmocka_unit_test(errors_in_documented_order),
        cmocka_unit_test(check_arguments),
        cmocka_unit_test(refusal_is_a_status_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
