/*
 * permessage-deflate negotiation (RFC 7692 §5, §7.1): the server's answer
 * to every parameter with and without values, to the offers real clients
 * send, to invalid offers (declined, the next one tried) and to broken
 * headers; the client's offer strings and every way a server's answer is
 * refused; and round trips offer -> negotiate -> check_response over every
 * offer and policy. Requests and responses are parsed from text that ends
 * at a guard page, and output buffers end at one too.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/deflate.h"
#include "helpers.h"

#define MAX_HEADERS 32

/* One Sec-WebSocket-Extensions header line. */
#define X(v) "Sec-WebSocket-Extensions: " v "\r\n"

/* Default offers, as these clients send them. */
#define CHROMIUM "permessage-deflate; client_max_window_bits"
#define FIREFOX  "permessage-deflate"
#define NODE_WS  "permessage-deflate; client_max_window_bits"
/* websockets (Python) 10.x: ClientPerMessageDeflateFactory's defaults. */
#define PY_DEFAULT "permessage-deflate; client_max_window_bits"
/*
 * websockets configured as in its compression guide (11), and with the
 * windows its server defaults to (12), which is also its server's answer.
 */
#define PY_11 "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"
#define PY_12 "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"

/* ------------------------------------------------------------------------
 * Parsing heads
 */

/* A request or response head, parsed from a copy that ends at a guard page. */
struct head {
    uint8_t *buf;
    size_t len;
    struct kz_header headers[MAX_HEADERS];
    struct kz_hs_request req;
    struct kz_hs_response resp;
};

static void head_request(struct head *h, const char *lines)
{
    char text[4096];
    int n = snprintf(text, sizeof(text),
                     "GET /chat HTTP/1.1\r\n"
                     "Host: server.example.com\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s\r\n",
                     lines);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    h->len = (size_t)n;
    h->buf = kzt_guard_copy(text, h->len);
    memset(&h->req, 0, sizeof(h->req));
    h->req.headers = h->headers;
    h->req.max_headers = MAX_HEADERS;
    assert_int_equal(kz_hs_parse_request((const char *)h->buf, h->len, 0,
                                         KZ_HS_MAX_HEADER_SIZE_DEFAULT, &h->req),
                     n);
}

static void head_response(struct head *h, const char *lines)
{
    char text[4096];
    int n = snprintf(text, sizeof(text),
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                     "%s\r\n",
                     lines);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    h->len = (size_t)n;
    h->buf = kzt_guard_copy(text, h->len);
    memset(&h->resp, 0, sizeof(h->resp));
    h->resp.headers = h->headers;
    h->resp.max_headers = MAX_HEADERS;
    assert_int_equal(kz_hs_parse_response((const char *)h->buf, h->len, 0,
                                          KZ_HS_MAX_HEADER_SIZE_DEFAULT, &h->resp),
                     n);
}

static void head_free(struct head *h)
{
    kzt_guard_free(h->buf, h->len);
    h->buf = NULL;
}

/* ------------------------------------------------------------------------
 * Server helpers
 */

#define RESP_CAP 160

static struct kz_pmd_policy policy(uint8_t server_bits, uint8_t client_bits, bool snct, bool cnct)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    pol.server_max_window_bits = server_bits;
    pol.client_max_window_bits = client_bits;
    pol.server_no_context_takeover = snct;
    pol.client_no_context_takeover = cnct;
    return pol;
}

/* Negotiates over a request with the header lines `lines`. */
static int negotiate(const struct kz_pmd_policy *pol, const char *lines, struct kz_pmd_params *out,
                     char *resp, size_t cap)
{
    struct head h;
    head_request(&h, lines);
    int r = kz_pmd_negotiate(&h.req, pol, out, resp, cap);
    head_free(&h);
    return r;
}

static void params_are(const struct kz_pmd_params *p, bool snct, bool cnct, int server_bits,
                       int client_bits)
{
    assert_int_equal(p->server_no_context_takeover, snct);
    assert_int_equal(p->client_no_context_takeover, cnct);
    assert_int_equal(p->server_max_window_bits, server_bits);
    assert_int_equal(p->client_max_window_bits, client_bits);
}

/* The offer in `lines` is accepted with the answer `expected` and these parameters. */
static void accepts(const struct kz_pmd_policy *pol, const char *lines, const char *expected,
                    bool snct, bool cnct, int server_bits, int client_bits)
{
    char resp[RESP_CAP];
    struct kz_pmd_params p;
    memset(&p, 0xa5, sizeof(p));
    int r = negotiate(pol, lines, &p, resp, sizeof(resp));
    if (r != 1)
        fail_msg("offer [%s]: %d, expected an answer [%s]", lines, r, expected);
    assert_string_equal(resp, expected);
    params_are(&p, snct, cnct, server_bits, client_bits);
}

/* No offer in `lines` is acceptable: 0, and neither output is touched. */
static void declines(const struct kz_pmd_policy *pol, const char *lines)
{
    char resp[RESP_CAP];
    memset(resp, '#', sizeof(resp));
    struct kz_pmd_params p, untouched;
    memset(&p, 0xa5, sizeof(p));
    untouched = p;
    int r = negotiate(pol, lines, &p, resp, sizeof(resp));
    if (r != 0)
        fail_msg("offer [%s]: %d, expected a decline", lines, r);
    assert_int_equal(resp[0], '#');
    assert_memory_equal(&p, &untouched, sizeof(p));
}

/* ------------------------------------------------------------------------
 * Server: policies and real clients
 */

static void policy_defaults(void **state)
{
    struct kz_pmd_policy pol;
    memset(&pol, 0x5a, sizeof(pol));
    kz_pmd_policy_default(&pol);
    assert_true(pol.enabled);
    assert_int_equal(pol.server_max_window_bits, 15);
    assert_int_equal(pol.client_max_window_bits, 15);
    assert_false(pol.server_no_context_takeover);
    assert_false(pol.client_no_context_takeover);
    kz_pmd_policy_default(NULL);
}

static void real_clients_default_policy(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    accepts(&pol, X(CHROMIUM), "permessage-deflate", false, false, 15, 15);
    accepts(&pol, X(FIREFOX), "permessage-deflate", false, false, 15, 15);
    accepts(&pol, X(NODE_WS), "permessage-deflate", false, false, 15, 15);
    accepts(&pol, X(PY_DEFAULT), "permessage-deflate", false, false, 15, 15);
    /* Asked for, server_max_window_bits is answered; client hints are taken. */
    accepts(&pol, X(PY_11), PY_11, false, false, 11, 11);
    accepts(&pol, X(PY_12), PY_12, false, false, 12, 12);
}

static void real_clients_small_windows(void **state)
{
    /* What websockets' own server asks for. */
    struct kz_pmd_policy pol = policy(12, 12, false, false);
    accepts(&pol, X(CHROMIUM), PY_12, false, false, 12, 12);
    accepts(&pol, X(NODE_WS), PY_12, false, false, 12, 12);
    accepts(&pol, X(PY_DEFAULT), PY_12, false, false, 12, 12);
    accepts(&pol, X(PY_11), PY_11, false, false, 11, 11);
    accepts(&pol, X(PY_12), PY_12, false, false, 12, 12);
    /* Firefox gives no way to bound its window: no compression. */
    declines(&pol, X(FIREFOX));

    /* Only our own window smaller: every client can have it. */
    pol = policy(10, 15, false, false);
    accepts(&pol, X(FIREFOX), "permessage-deflate; server_max_window_bits=10", false, false, 10,
            15);
    accepts(&pol, X(CHROMIUM), "permessage-deflate; server_max_window_bits=10", false, false, 10,
            15);
    accepts(&pol, X(PY_11),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11", false,
            false, 10, 11);

    /* Only the client's window smaller. */
    pol = policy(15, 9, false, false);
    accepts(&pol, X(CHROMIUM), "permessage-deflate; client_max_window_bits=9", false, false, 15, 9);
    accepts(&pol, X(PY_12),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9", false, false,
            12, 9);
    declines(&pol, X(FIREFOX));
}

static void real_clients_no_context_takeover(void **state)
{
    struct kz_pmd_policy pol = policy(15, 15, true, true);
    static const char both[] =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    accepts(&pol, X(CHROMIUM), both, true, true, 15, 15);
    accepts(&pol, X(FIREFOX), both, true, true, 15, 15);
    accepts(&pol, X(NODE_WS), both, true, true, 15, 15);

    pol = policy(15, 15, true, false);
    accepts(&pol, X(FIREFOX), "permessage-deflate; server_no_context_takeover", true, false, 15,
            15);
    pol = policy(15, 15, false, true);
    accepts(&pol, X(FIREFOX), "permessage-deflate; client_no_context_takeover", false, true, 15,
            15);

    /* Everything at once. */
    pol = policy(11, 10, true, true);
    accepts(&pol, X(CHROMIUM),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=11; client_max_window_bits=10",
            true, true, 11, 10);
}

/* ------------------------------------------------------------------------
 * Server: every parameter
 */

static void no_context_takeover_offered(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    /* §7.1.1.1: accepting it means answering it. */
    accepts(&pol, X("permessage-deflate; server_no_context_takeover"),
            "permessage-deflate; server_no_context_takeover", true, false, 15, 15);
    /* §7.1.1.2: a promise of the client; acknowledged. */
    accepts(&pol, X("permessage-deflate; client_no_context_takeover"),
            "permessage-deflate; client_no_context_takeover", false, true, 15, 15);
    accepts(&pol, X("permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true,
            true, 15, 15);
    /* Offered and set in the policy: answered once. */
    pol = policy(15, 15, true, true);
    accepts(&pol, X("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true,
            true, 15, 15);
}

static void server_window_offered(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    for (int bits = 9; bits <= 15; bits++) {
        char lines[128], expected[128];
        snprintf(lines, sizeof(lines), X("permessage-deflate; server_max_window_bits=%d"), bits);
        snprintf(expected, sizeof(expected), "permessage-deflate; server_max_window_bits=%d", bits);
        /* Answered even at 15: accepting the parameter means answering it. */
        accepts(&pol, lines, expected, false, false, bits, 15);
    }
    /* The policy's window is smaller still. */
    pol = policy(10, 15, false, false);
    accepts(&pol, X("permessage-deflate; server_max_window_bits=13"),
            "permessage-deflate; server_max_window_bits=10", false, false, 10, 15);
    accepts(&pol, X("permessage-deflate; server_max_window_bits=9"),
            "permessage-deflate; server_max_window_bits=9", false, false, 9, 15);
}

static void server_window_of_eight(void **state)
{
    /* zlib cannot compress with a 256-byte window: an offer demanding it is declined. */
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    declines(&pol, X("permessage-deflate; server_max_window_bits=8"));
    declines(&pol, X("permessage-deflate; server_max_window_bits=\"8\"; client_max_window_bits"));
    accepts(&pol, X("permessage-deflate; server_max_window_bits=8, permessage-deflate"),
            "permessage-deflate", false, false, 15, 15);
    accepts(&pol,
            X("permessage-deflate; server_max_window_bits=8")
                X("permessage-deflate; server_max_window_bits=9"),
            "permessage-deflate; server_max_window_bits=9", false, false, 9, 15);

    /* A policy of 8 is answered, and used, as 9. */
    pol = policy(8, 15, false, false);
    accepts(&pol, X(FIREFOX), "permessage-deflate; server_max_window_bits=9", false, false, 9, 15);
    accepts(&pol, X("permessage-deflate; server_max_window_bits=12"),
            "permessage-deflate; server_max_window_bits=9", false, false, 9, 15);
    declines(&pol, X("permessage-deflate; server_max_window_bits=8"));
}

static void client_window_offered(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    /* A value is the client's own bound: answered so both sides agree on it. */
    for (int bits = 8; bits <= 14; bits++) {
        char lines[128], expected[128];
        snprintf(lines, sizeof(lines), X("permessage-deflate; client_max_window_bits=%d"), bits);
        snprintf(expected, sizeof(expected), "permessage-deflate; client_max_window_bits=%d", bits);
        accepts(&pol, lines, expected, false, false, 15, bits);
    }
    accepts(&pol, X("permessage-deflate; client_max_window_bits=15"), "permessage-deflate", false,
            false, 15, 15);
    accepts(&pol, X("permessage-deflate; client_max_window_bits"), "permessage-deflate", false,
            false, 15, 15);

    /* The policy bounds it further; a smaller hint stays. */
    pol = policy(15, 10, false, false);
    accepts(&pol, X("permessage-deflate; client_max_window_bits"),
            "permessage-deflate; client_max_window_bits=10", false, false, 15, 10);
    accepts(&pol, X("permessage-deflate; client_max_window_bits=12"),
            "permessage-deflate; client_max_window_bits=10", false, false, 15, 10);
    accepts(&pol, X("permessage-deflate; client_max_window_bits=9"),
            "permessage-deflate; client_max_window_bits=9", false, false, 15, 9);
    /* §7.1.2.2: not offered, it may not be answered, so the offer is declined... */
    declines(&pol, X("permessage-deflate"));
    declines(&pol, X("permessage-deflate; server_no_context_takeover"));
    /* ...and the next one taken. */
    accepts(&pol, X("permessage-deflate, permessage-deflate; client_max_window_bits"),
            "permessage-deflate; client_max_window_bits=10", false, false, 15, 10);

    pol = policy(15, 8, false, false);
    accepts(&pol, X(CHROMIUM), "permessage-deflate; client_max_window_bits=8", false, false, 15, 8);
}

static void quoted_and_spaced_values(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    accepts(&pol, X("permessage-deflate; server_max_window_bits=\"10\""),
            "permessage-deflate; server_max_window_bits=10", false, false, 10, 15);
    accepts(&pol, X("permessage-deflate; client_max_window_bits=\"1\\2\""),
            "permessage-deflate; client_max_window_bits=12", false, false, 15, 12);
    accepts(&pol, X("permessage-deflate ;server_max_window_bits = 11 ;\tclient_max_window_bits"),
            "permessage-deflate; server_max_window_bits=11", false, false, 11, 15);
    /* All four parameters, in another order than ours. */
    accepts(&pol,
            X("permessage-deflate; client_max_window_bits=9; server_max_window_bits=13; "
              "client_no_context_takeover; server_no_context_takeover"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=13; client_max_window_bits=9",
            true, true, 13, 9);
}

/* ------------------------------------------------------------------------
 * Server: invalid offers, other extensions, several lines, broken headers
 */

static void invalid_offers_declined(void **state)
{
    static const char *const cases[] = {
        /* unknown parameters (names are compared exactly) */
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; Server_No_Context_Takeover",
        "permessage-deflate; server_max_window_bit=10",
        "permessage-deflate; client_max_window_bits; x-extra",
        /* a value where none belongs */
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover=\"x\"",
        "permessage-deflate; client_no_context_takeover=true",
        /* no value where one is required */
        "permessage-deflate; server_max_window_bits",
        /* windows outside 8..15 or not minimal decimal */
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=0",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=05",
        "permessage-deflate; server_max_window_bits=25",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits=9.0",
        "permessage-deflate; server_max_window_bits=1.",
        "permessage-deflate; server_max_window_bits=115",
        "permessage-deflate; server_max_window_bits=\"16\"",
        "permessage-deflate; server_max_window_bits=\"012\"",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=00",
        "permessage-deflate; client_max_window_bits=1",
        "permessage-deflate; client_max_window_bits=x",
        "permessage-deflate; client_max_window_bits=\"\\1\\6\"",
        /* a parameter twice */
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
    };
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char lines[256];
        /* Alone: declined. */
        snprintf(lines, sizeof(lines), X("%s"), cases[i]);
        declines(&pol, lines);
        /* Followed by a valid offer, in the same header or the next one. */
        snprintf(lines, sizeof(lines), X("%s, permessage-deflate; client_no_context_takeover"),
                 cases[i]);
        accepts(&pol, lines, "permessage-deflate; client_no_context_takeover", false, true, 15, 15);
        snprintf(lines, sizeof(lines), X("%s") X("permessage-deflate; server_max_window_bits=12"),
                 cases[i]);
        accepts(&pol, lines, "permessage-deflate; server_max_window_bits=12", false, false, 12, 15);
    }
    /* The example of the brief: the second offer is taken. */
    accepts(&pol, X("permessage-deflate; foo, permessage-deflate"), "permessage-deflate", false,
            false, 15, 15);
}

static void other_extensions_skipped(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    accepts(&pol, X("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"),
            "permessage-deflate", false, false, 15, 15);
    accepts(&pol, X("foo; server_max_window_bits=10, permessage-deflate"), "permessage-deflate",
            false, false, 15, 15);
    /* The first acceptable offer wins, and the ones after it are not looked at. */
    accepts(&pol,
            X("permessage-deflate; server_max_window_bits=14, permessage-deflate; "
              "server_max_window_bits=9"),
            "permessage-deflate; server_max_window_bits=14", false, false, 14, 15);
    declines(&pol, X("PerMessage-Deflate"));
    declines(&pol, X("permessage-deflate-x, deflate-frame, x-webkit-deflate-frame"));
    declines(&pol, X("permessage_deflate"));
    /* No extension header at all. */
    declines(&pol, "");
    declines(&pol, "X-Other: permessage-deflate\r\n");
}

static void offers_over_several_lines(void **state)
{
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    /* Skipped, declined, skipped, declined, accepted, not looked at. */
    static const char lines[] = "Sec-WebSocket-Extensions: foo, permessage-deflate; bar\r\n"
                                "X-Between: 1\r\n"
                                "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
                                "sec-websocket-extensions: permessage-deflate; "
                                "server_max_window_bits=8, permessage-deflate; "
                                "client_max_window_bits=10\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    accepts(&pol, lines, "permessage-deflate; client_max_window_bits=10", false, false, 15, 10);
    /* Lowercase and uppercase header names are the same header. */
    accepts(&pol, "SEC-WEBSOCKET-EXTENSIONS: " FIREFOX "\r\n", "permessage-deflate", false, false,
            15, 15);
}

static void broken_headers(void **state)
{
    static const char *const cases[] = {
        X("permessage-deflate, ;x"),
        X("permessage-deflate; a=\"b c\""),
        X("permessage-deflate; server_max_window_bits="),
        X("permessage-deflate; server_max_window_bits=\"\""),
        X("permessage-deflate;"),
        X(""),
        /* An acceptable offer first does not hide a broken one after it. */
        X("permessage-deflate") X(""),
        X("permessage-deflate") X("permessage-deflate; ;"),
        X("permessage-deflate, foo bar"),
        /* More parameters than the grammar reader holds. */
        X("permessage-deflate; a; b; c; d; e; f; g; h; i"),
    };
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char resp[RESP_CAP];
        memset(resp, '#', sizeof(resp));
        struct kz_pmd_params p;
        int r = negotiate(&pol, cases[i], &p, resp, sizeof(resp));
        if (r != KZ_ERR_HS_BAD_EXTENSIONS)
            fail_msg("case %zu [%s]: %d", i, cases[i], r);
        assert_int_equal(resp[0], '#');
    }
}

/* ------------------------------------------------------------------------
 * Server: buffers and arguments
 */

static void response_buffer(void **state)
{
    struct kz_pmd_policy pol = policy(15, 14, false, false);
    static const char offer[] =
        X("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
          "server_max_window_bits=15; client_max_window_bits");
    static const char longest[] =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=15; client_max_window_bits=14";
    size_t len = strlen(longest);
    /* The longest answer there is: 128 bytes and a NUL. */
    assert_int_equal(len, 128);

    for (size_t cap = 0; cap <= len + 1; cap++) {
        char *resp = (char *)kzt_guard_copy("################################################"
                                            "################################################"
                                            "################################################",
                                            cap);
        struct kz_pmd_params p;
        memset(&p, 0, sizeof(p));
        int r = negotiate(&pol, offer, &p, cap ? resp : NULL, cap);
        if (cap <= len) {
            assert_int_equal(r, KZ_ERR_BUFFER_TOO_SMALL);
            /* Nothing written, nothing filled. */
            for (size_t i = 0; i < cap; i++)
                assert_int_equal(resp[i], '#');
            params_are(&p, false, false, 0, 0);
        } else {
            assert_int_equal(r, 1);
            assert_string_equal(resp, longest);
            params_are(&p, true, true, 15, 14);
        }
        kzt_guard_free((uint8_t *)resp, cap);
    }

    /* A plausible offer reaches that length against the default policy. */
    static const char both_12[] = "permessage-deflate; server_no_context_takeover; "
                                  "client_no_context_takeover; server_max_window_bits=12; "
                                  "client_max_window_bits=12";
    assert_int_equal(strlen(both_12), 128);
    kz_pmd_policy_default(&pol);
    accepts(&pol,
            X("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=12; client_max_window_bits=12"),
            both_12, true, true, 12, 12);

    /* The shortest one fits in 19 bytes. */
    char small[19];
    struct kz_pmd_params p;
    assert_int_equal(negotiate(&pol, X(FIREFOX), &p, small, sizeof(small)), 1);
    assert_string_equal(small, "permessage-deflate");
    assert_int_equal(negotiate(&pol, X(FIREFOX), &p, small, sizeof(small) - 1),
                     KZ_ERR_BUFFER_TOO_SMALL);
}

static void server_arguments(void **state)
{
    struct head h;
    head_request(&h, X(CHROMIUM));
    struct kz_pmd_policy pol;
    kz_pmd_policy_default(&pol);
    struct kz_pmd_params p;
    char resp[RESP_CAP];

    assert_int_equal(kz_pmd_negotiate(NULL, &pol, &p, resp, sizeof(resp)), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_negotiate(&h.req, NULL, &p, resp, sizeof(resp)),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_negotiate(&h.req, &pol, NULL, resp, sizeof(resp)),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_negotiate(&h.req, &pol, &p, NULL, sizeof(resp)),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_negotiate(&h.req, &pol, &p, NULL, 0), KZ_ERR_BUFFER_TOO_SMALL);

    /* Windows outside 8..15 in the policy. */
    static const uint8_t bad[] = {0, 7, 16, 255};
    for (size_t i = 0; i < sizeof(bad); i++) {
        pol = policy(bad[i], 15, false, false);
        assert_int_equal(kz_pmd_negotiate(&h.req, &pol, &p, resp, sizeof(resp)),
                         KZ_ERR_INVALID_ARGUMENT);
        pol = policy(15, bad[i], false, false);
        assert_int_equal(kz_pmd_negotiate(&h.req, &pol, &p, resp, sizeof(resp)),
                         KZ_ERR_INVALID_ARGUMENT);
    }

    /* Disabled: nothing is accepted, and nothing else is looked at. */
    memset(&pol, 0, sizeof(pol));
    memset(resp, '#', sizeof(resp));
    assert_int_equal(kz_pmd_negotiate(&h.req, &pol, &p, resp, sizeof(resp)), 0);
    assert_int_equal(resp[0], '#');
    head_free(&h);

    /* A request with no header array. */
    struct kz_hs_request empty;
    memset(&empty, 0, sizeof(empty));
    kz_pmd_policy_default(&pol);
    assert_int_equal(kz_pmd_negotiate(&empty, &pol, &p, resp, sizeof(resp)), 0);
    empty.num_headers = 1;
    assert_int_equal(kz_pmd_negotiate(&empty, &pol, &p, resp, sizeof(resp)),
                     KZ_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------
 * Client: offers
 */

static struct kz_pmd_offer offer_of(bool snct, bool cnct, uint8_t server_bits, uint8_t client_bits,
                                    bool bare)
{
    struct kz_pmd_offer o;
    memset(&o, 0, sizeof(o));
    o.server_no_context_takeover = snct;
    o.client_no_context_takeover = cnct;
    o.server_max_window_bits = server_bits;
    o.client_max_window_bits = client_bits;
    o.client_max_window_bits_bare = bare;
    return o;
}

static void offer_is(const struct kz_pmd_offer *o, const char *expected)
{
    char buf[RESP_CAP];
    int r = kz_pmd_write_offer(buf, sizeof(buf), o);
    if (r < 0)
        fail_msg("expected [%s], got %d", expected, r);
    assert_int_equal(r, (int)strlen(expected));
    assert_string_equal(buf, expected);
}

static void offer_strings(void **state)
{
    struct kz_pmd_offer o;
    memset(&o, 0x5a, sizeof(o));
    kz_pmd_offer_default(&o);
    assert_false(o.server_no_context_takeover);
    assert_false(o.client_no_context_takeover);
    assert_int_equal(o.server_max_window_bits, 0);
    assert_int_equal(o.client_max_window_bits, 15);
    assert_true(o.client_max_window_bits_bare);
    offer_is(&o, CHROMIUM);
    kz_pmd_offer_default(NULL);

    o = offer_of(false, false, 0, 0, false);
    offer_is(&o, FIREFOX);
    o = offer_of(false, false, 0, 0, true);
    offer_is(&o, "permessage-deflate; client_max_window_bits");
    o = offer_of(false, false, 12, 12, false);
    offer_is(&o, PY_12);
    o = offer_of(false, false, 0, 15, false);
    offer_is(&o, "permessage-deflate; client_max_window_bits=15");
    o = offer_of(false, false, 8, 8, false);
    offer_is(&o, "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8");
    o = offer_of(false, false, 9, 0, false);
    offer_is(&o, "permessage-deflate; server_max_window_bits=9");
    o = offer_of(true, false, 0, 0, false);
    offer_is(&o, "permessage-deflate; server_no_context_takeover");
    o = offer_of(false, true, 0, 0, false);
    offer_is(&o, "permessage-deflate; client_no_context_takeover");
    o = offer_of(true, true, 10, 15, true);
    offer_is(&o, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                 "server_max_window_bits=10; client_max_window_bits");

    /* Windows outside 8..15, and a bare parameter with a value below 15. */
    static const struct {
        uint8_t server, client;
        bool bare;
    } bad[] = {{7, 0, false}, {16, 0, false}, {0, 7, false}, {0, 16, false},
               {0, 12, true}, {0, 8, true},   {1, 0, false}, {255, 15, true}};
    char buf[RESP_CAP];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o = offer_of(false, false, bad[i].server, bad[i].client, bad[i].bare);
        memset(buf, '#', sizeof(buf));
        assert_int_equal(kz_pmd_write_offer(buf, sizeof(buf), &o), KZ_ERR_INVALID_ARGUMENT);
        assert_int_equal(buf[0], '#');
    }
    assert_int_equal(kz_pmd_write_offer(buf, sizeof(buf), NULL), KZ_ERR_INVALID_ARGUMENT);
    kz_pmd_offer_default(&o);
    assert_int_equal(kz_pmd_write_offer(NULL, 8, &o), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_write_offer(NULL, 0, &o), KZ_ERR_BUFFER_TOO_SMALL);
}

static void offer_buffer(void **state)
{
    struct kz_pmd_offer o = offer_of(true, true, 14, 14, false);
    static const char longest[] = "permessage-deflate; server_no_context_takeover; "
                                  "client_no_context_takeover; server_max_window_bits=14; "
                                  "client_max_window_bits=14";
    size_t len = strlen(longest);
    assert_int_equal(len, 128);
    for (size_t cap = 0; cap <= len + 1; cap++) {
        char *buf = (char *)kzt_guard_copy("################################################"
                                           "################################################"
                                           "################################################",
                                           cap);
        int r = kz_pmd_write_offer(cap ? buf : NULL, cap, &o);
        if (cap <= len) {
            assert_int_equal(r, KZ_ERR_BUFFER_TOO_SMALL);
            for (size_t i = 0; i < cap; i++)
                assert_int_equal(buf[i], '#');
        } else {
            assert_int_equal(r, (int)len);
            assert_string_equal(buf, longest);
        }
        kzt_guard_free((uint8_t *)buf, cap);
    }
}

/* ------------------------------------------------------------------------
 * Client: judging answers
 */

static int check(const struct kz_pmd_offer *o, const char *lines, struct kz_pmd_params *out)
{
    struct head h;
    head_response(&h, lines);
    int r = kz_pmd_check_response(h.resp.headers, h.resp.num_headers, o, out);
    head_free(&h);
    return r;
}

static void answer_accepted(const struct kz_pmd_offer *o, const char *lines, bool snct, bool cnct,
                            int server_bits, int client_bits)
{
    struct kz_pmd_params p;
    memset(&p, 0xa5, sizeof(p));
    int r = check(o, lines, &p);
    if (r != 1)
        fail_msg("answer [%s]: %d, expected acceptance", lines, r);
    params_are(&p, snct, cnct, server_bits, client_bits);
}

static void answers_accepted(void **state)
{
    struct kz_pmd_offer o;
    kz_pmd_offer_default(&o);
    answer_accepted(&o, X("permessage-deflate"), false, false, 15, 15);
    /* What websockets' server answers to it. */
    answer_accepted(&o, X(PY_12), false, false, 12, 12);
    /* Every window is allowed: server_max_window_bits was not offered. */
    for (int bits = 8; bits <= 15; bits++) {
        char lines[128];
        snprintf(lines, sizeof(lines), X("permessage-deflate; server_max_window_bits=%d"), bits);
        answer_accepted(&o, lines, false, false, bits, 15);
        snprintf(lines, sizeof(lines), X("permessage-deflate; client_max_window_bits=%d"), bits);
        answer_accepted(&o, lines, false, false, 15, bits);
    }
    /* §7.1.1.1, §7.1.1.2: both may come unasked. */
    answer_accepted(&o, X("permessage-deflate; server_no_context_takeover"), true, false, 15, 15);
    answer_accepted(&o, X("permessage-deflate; client_no_context_takeover"), false, true, 15, 15);
    answer_accepted(&o,
                    X("permessage-deflate; client_max_window_bits=\"9\"; "
                      "client_no_context_takeover; server_max_window_bits=10; "
                      "server_no_context_takeover"),
                    true, true, 10, 9);
    /* Over several lines, among other extensions. */
    answer_accepted(&o, X("foo") "X-Other: 1\r\n" X("bar; x=1, permessage-deflate"), false, false,
                    15, 15);

    /* Asked for, server_max_window_bits may be answered with less. */
    o = offer_of(false, false, 12, 0, false);
    answer_accepted(&o, X("permessage-deflate; server_max_window_bits=12"), false, false, 12, 15);
    answer_accepted(&o, X("permessage-deflate; server_max_window_bits=9"), false, false, 9, 15);

    /* A client window offered with a value binds the client even unanswered. */
    o = offer_of(false, false, 0, 11, false);
    answer_accepted(&o, X("permessage-deflate"), false, false, 15, 11);
    answer_accepted(&o, X("permessage-deflate; client_max_window_bits=11"), false, false, 15, 11);
    answer_accepted(&o, X("permessage-deflate; client_max_window_bits=8"), false, false, 15, 8);

    /* Bare client_max_window_bits with no window set: the same as Chromium's. */
    o = offer_of(false, false, 0, 0, true);
    answer_accepted(&o, X("permessage-deflate"), false, false, 15, 15);
    answer_accepted(&o, X("permessage-deflate; client_max_window_bits=10"), false, false, 15, 10);

    /* So does client_no_context_takeover. */
    o = offer_of(false, true, 0, 0, false);
    answer_accepted(&o, X("permessage-deflate"), false, true, 15, 15);
    answer_accepted(&o, X("permessage-deflate; client_no_context_takeover"), false, true, 15, 15);

    /* server_no_context_takeover asked for and answered. */
    o = offer_of(true, false, 0, 0, false);
    answer_accepted(&o, X("permessage-deflate; server_no_context_takeover"), true, false, 15, 15);
}

static void answers_absent(void **state)
{
    struct kz_pmd_offer o;
    kz_pmd_offer_default(&o);
    struct kz_pmd_params p, untouched;
    memset(&p, 0xa5, sizeof(p));
    untouched = p;
    assert_int_equal(check(&o, "", &p), 0);
    assert_int_equal(check(&o, X("foo"), &p), 0);
    assert_int_equal(check(&o, X("x-webkit-deflate-frame; no_context_takeover"), &p), 0);
    assert_int_equal(check(&o, "X-Permessage: permessage-deflate\r\n", &p), 0);
    /* As long as our name, but another one. */
    assert_int_equal(check(&o, X("permessage_deflate"), &p), 0);
    assert_int_equal(check(&o, X("permessage-deflatf"), &p), 0);
    assert_memory_equal(&p, &untouched, sizeof(p));
    assert_int_equal(kz_pmd_check_response(NULL, 0, &o, &p), 0);
}

static void answers_refused(void **state)
{
    static const struct {
        struct kz_pmd_offer offer;
        const char *lines;
    } cases[] = {
        /* the extension twice, on one line or two */
        {{false, false, 0, 15, true}, X("permessage-deflate, permessage-deflate")},
        {{false, false, 0, 15, true}, X("permessage-deflate") X("permessage-deflate")},
        {{false, false, 0, 15, true}, X("permessage-deflate; foo, permessage-deflate")},
        /* a name we did not offer as such */
        {{false, false, 0, 15, true}, X("Permessage-Deflate")},
        /* unknown parameters */
        {{false, false, 0, 15, true}, X("permessage-deflate; foo")},
        {{false, false, 0, 15, true}, X("permessage-deflate; Client_Max_Window_Bits=10")},
        /* repeated parameters */
        {{false, false, 0, 15, true},
         X("permessage-deflate; server_no_context_takeover; server_no_context_takeover")},
        {{false, false, 0, 15, true},
         X("permessage-deflate; client_no_context_takeover; client_no_context_takeover")},
        {{false, false, 0, 15, true},
         X("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10")},
        {{false, false, 0, 15, true},
         X("permessage-deflate; client_max_window_bits=10; client_max_window_bits=10")},
        /* values where none belongs, none where one is required */
        {{false, false, 0, 15, true}, X("permessage-deflate; server_no_context_takeover=1")},
        {{false, false, 0, 15, true}, X("permessage-deflate; client_no_context_takeover=\"a\"")},
        {{false, false, 0, 15, true}, X("permessage-deflate; server_max_window_bits")},
        {{false, false, 0, 15, true}, X("permessage-deflate; client_max_window_bits")},
        /* invalid windows */
        {{false, false, 0, 15, true}, X("permessage-deflate; server_max_window_bits=7")},
        {{false, false, 0, 15, true}, X("permessage-deflate; server_max_window_bits=16")},
        {{false, false, 0, 15, true}, X("permessage-deflate; server_max_window_bits=012")},
        {{false, false, 0, 15, true}, X("permessage-deflate; client_max_window_bits=0")},
        {{false, false, 0, 15, true}, X("permessage-deflate; client_max_window_bits=99")},
        /* server_max_window_bits larger than offered, or missing when offered */
        {{false, false, 10, 0, false}, X("permessage-deflate; server_max_window_bits=11")},
        {{false, false, 10, 0, false}, X("permessage-deflate; server_max_window_bits=15")},
        {{false, false, 10, 0, false}, X("permessage-deflate")},
        /* client_max_window_bits not offered, or larger than offered */
        {{false, false, 0, 0, false}, X("permessage-deflate; client_max_window_bits=15")},
        {{false, false, 0, 0, false}, X("permessage-deflate; client_max_window_bits=8")},
        {{false, false, 12, 0, false}, X("permessage-deflate; client_max_window_bits=12")},
        {{false, false, 0, 11, false}, X("permessage-deflate; client_max_window_bits=12")},
        /* server_no_context_takeover offered and not answered */
        {{true, false, 0, 0, false}, X("permessage-deflate")},
        {{true, false, 0, 0, false}, X("permessage-deflate; client_no_context_takeover")},
        /* broken headers, even around or after an acceptable answer */
        {{false, false, 0, 15, true}, X("permessage-deflate; a=\"\"")},
        {{false, false, 0, 15, true}, X("permessage-deflate") X("")},
        {{false, false, 0, 15, true}, X("permessage-deflate, ;")},
        {{false, false, 0, 15, true}, X("foo bar") X("permessage-deflate")},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kz_pmd_params p, untouched;
        memset(&p, 0xa5, sizeof(p));
        untouched = p;
        int r = check(&cases[i].offer, cases[i].lines, &p);
        if (r != KZ_ERR_HS_RESP_EXTENSION)
            fail_msg("case %zu [%s]: %d", i, cases[i].lines, r);
        assert_memory_equal(&p, &untouched, sizeof(p));
    }
}

static void client_arguments(void **state)
{
    struct head h;
    head_response(&h, X("permessage-deflate"));
    struct kz_pmd_offer o;
    kz_pmd_offer_default(&o);
    struct kz_pmd_params p;
    const struct kz_header *hs = h.resp.headers;
    size_t n = h.resp.num_headers;
    assert_int_equal(kz_pmd_check_response(hs, n, &o, &p), 1);
    assert_int_equal(kz_pmd_check_response(NULL, 1, &o, &p), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_check_response(hs, n, NULL, &p), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_pmd_check_response(hs, n, &o, NULL), KZ_ERR_INVALID_ARGUMENT);
    /* An offer that could not have been written. */
    o = offer_of(false, false, 16, 0, false);
    assert_int_equal(kz_pmd_check_response(hs, n, &o, &p), KZ_ERR_INVALID_ARGUMENT);
    o = offer_of(false, false, 0, 10, true);
    assert_int_equal(kz_pmd_check_response(hs, n, &o, &p), KZ_ERR_INVALID_ARGUMENT);
    head_free(&h);
}

/* ------------------------------------------------------------------------
 * Round trips
 */

static uint8_t min_u8(uint8_t a, uint8_t b)
{
    return a < b ? a : b;
}

/*
 * One offer, already parsed in `req`, against one policy: the server
 * accepts exactly when RFC 7692 and zlib allow, with the parameters the
 * rules give, and the client reads the same parameters from the answer.
 * Returns whether it was accepted.
 */
static bool round_trip(const struct kz_pmd_offer *o, const char *offer_text,
                       const struct kz_hs_request *req, const struct kz_pmd_policy *pol)
{
    struct kz_pmd_params got;
    char resp[RESP_CAP];
    int r = kz_pmd_negotiate(req, pol, &got, resp, sizeof(resp));

    bool client_offered = o->client_max_window_bits != 0;
    bool acceptable =
        o->server_max_window_bits != 8 && (client_offered || pol->client_max_window_bits == 15);
    if (r != (acceptable ? 1 : 0))
        fail_msg("[%s] against %u/%u: %d", offer_text, pol->server_max_window_bits,
                 pol->client_max_window_bits, r);
    if (!acceptable)
        return false;

    uint8_t ours = pol->server_max_window_bits < 9 ? 9 : pol->server_max_window_bits;
    uint8_t server_bits =
        o->server_max_window_bits != 0 ? min_u8(o->server_max_window_bits, ours) : ours;
    uint8_t client_bits =
        client_offered ? min_u8(o->client_max_window_bits, pol->client_max_window_bits) : 15;
    params_are(&got, o->server_no_context_takeover || pol->server_no_context_takeover,
               o->client_no_context_takeover || pol->client_no_context_takeover, server_bits,
               client_bits);

    char answer[RESP_CAP + 64];
    snprintf(answer, sizeof(answer), X("%s"), resp);
    struct kz_pmd_params seen;
    int c = check(o, answer, &seen);
    if (c != 1)
        fail_msg("[%s] -> [%s]: %d", offer_text, resp, c);
    assert_memory_equal(&seen, &got, sizeof(seen));
    return true;
}

/* Every offer a client can write, against every policy. */
static void round_trip_every_offer_and_policy(void **state)
{
    /* Client windows: not offered, bare (255 here), or 8..15. */
    static const uint8_t client_offers[] = {0, 255, 8, 9, 10, 11, 12, 13, 14, 15};
    static const uint8_t server_offers[] = {0, 8, 9, 10, 11, 12, 13, 14, 15};
    unsigned accepted = 0, declined = 0;
    for (unsigned flags = 0; flags < 16; flags++) {
        for (size_t si = 0; si < sizeof(server_offers); si++) {
            for (size_t ci = 0; ci < sizeof(client_offers); ci++) {
                bool bare = client_offers[ci] == 255;
                struct kz_pmd_offer o = offer_of(flags & 1, flags & 2, server_offers[si],
                                                 bare ? 15 : client_offers[ci], bare);
                char offer_text[RESP_CAP];
                assert_true(kz_pmd_write_offer(offer_text, sizeof(offer_text), &o) > 0);
                char lines[RESP_CAP + 64];
                snprintf(lines, sizeof(lines), X("%s"), offer_text);
                struct head req;
                head_request(&req, lines);
                for (uint8_t ps = 8; ps <= 15; ps++) {
                    for (uint8_t pc = 8; pc <= 15; pc++) {
                        struct kz_pmd_policy pol = policy(ps, pc, flags & 4, flags & 8);
                        if (round_trip(&o, offer_text, &req.req, &pol))
                            accepted++;
                        else
                            declined++;
                    }
                }
                head_free(&req);
            }
        }
    }
    /* 16 * 9 * 10 offers, 64 policies each. */
    assert_int_equal(accepted + declined, 16 * 9 * 10 * 64);
    assert_true(accepted > declined);
}

/*
 * The default offers of real clients, through a whole handshake: the client's
 * request, the server's 101 with the negotiated element, the client's
 * judgement of that response and then of the element.
 */
static void round_trip_whole_handshake(void **state)
{
    static const char *const offers[] = {CHROMIUM, FIREFOX, PY_11, PY_12};
    const struct kz_pmd_policy policies[] = {
        policy(15, 15, false, false),
        policy(12, 12, false, false),
        policy(10, 15, true, true),
    };
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
        for (size_t j = 0; j < sizeof(policies) / sizeof(policies[0]); j++) {
            struct kz_hs_client_request creq;
            memset(&creq, 0, sizeof(creq));
            creq.host.ptr = "server.example.com";
            creq.host.len = strlen(creq.host.ptr);
            creq.extensions.ptr = offers[i];
            creq.extensions.len = strlen(offers[i]);
            char request[1024];
            int rn = kz_hs_write_request(request, sizeof(request), &creq, key);
            assert_true(rn > 0);

            struct head req;
            req.len = (size_t)rn;
            req.buf = kzt_guard_copy(request, req.len);
            memset(&req.req, 0, sizeof(req.req));
            req.req.headers = req.headers;
            req.req.max_headers = MAX_HEADERS;
            assert_int_equal(kz_hs_parse_request((const char *)req.buf, req.len, 0,
                                                 KZ_HS_MAX_HEADER_SIZE_DEFAULT, &req.req),
                             rn);
            assert_int_equal(kz_hs_check_request(&req.req), KZ_OK);

            struct kz_pmd_params server;
            char element[RESP_CAP];
            int r = kz_pmd_negotiate(&req.req, &policies[j], &server, element, sizeof(element));
            /* Only Firefox's offer cannot meet a policy with a small client window. */
            bool firefox = strcmp(offers[i], FIREFOX) == 0;
            if (firefox && policies[j].client_max_window_bits < 15) {
                assert_int_equal(r, 0);
                head_free(&req);
                continue;
            }
            assert_int_equal(r, 1);

            struct kz_hs_accept acc;
            memset(&acc, 0, sizeof(acc));
            acc.extensions.ptr = element;
            acc.extensions.len = strlen(element);
            char response[1024];
            int an = kz_hs_write_response(response, sizeof(response), &req.req, &acc);
            assert_true(an > 0);
            head_free(&req);

            struct head resp;
            resp.len = (size_t)an;
            resp.buf = kzt_guard_copy(response, resp.len);
            memset(&resp.resp, 0, sizeof(resp.resp));
            resp.resp.headers = resp.headers;
            resp.resp.max_headers = MAX_HEADERS;
            assert_int_equal(kz_hs_parse_response((const char *)resp.buf, resp.len, 0,
                                                  KZ_HS_MAX_HEADER_SIZE_DEFAULT, &resp.resp),
                             an);
            assert_int_equal(kz_hs_check_response(&resp.resp, key, &creq, NULL), KZ_OK);

            /* The client's offer struct that writes this very offer. */
            struct kz_pmd_offer o;
            if (firefox)
                o = offer_of(false, false, 0, 0, false);
            else if (strcmp(offers[i], CHROMIUM) == 0)
                kz_pmd_offer_default(&o);
            else if (strcmp(offers[i], PY_11) == 0)
                o = offer_of(false, false, 11, 11, false);
            else
                o = offer_of(false, false, 12, 12, false);
            char written[RESP_CAP];
            assert_int_equal(kz_pmd_write_offer(written, sizeof(written), &o),
                             (int)strlen(offers[i]));
            assert_string_equal(written, offers[i]);

            struct kz_pmd_params client;
            assert_int_equal(
                kz_pmd_check_response(resp.resp.headers, resp.resp.num_headers, &o, &client), 1);
            assert_memory_equal(&client, &server, sizeof(client));
            head_free(&resp);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(policy_defaults),
        cmocka_unit_test(real_clients_default_policy),
        cmocka_unit_test(real_clients_small_windows),
        cmocka_unit_test(real_clients_no_context_takeover),
        cmocka_unit_test(no_context_takeover_offered),
        cmocka_unit_test(server_window_offered),
        cmocka_unit_test(server_window_of_eight),
        cmocka_unit_test(client_window_offered),
        cmocka_unit_test(quoted_and_spaced_values),
        cmocka_unit_test(invalid_offers_declined),
        cmocka_unit_test(other_extensions_skipped),
        cmocka_unit_test(offers_over_several_lines),
        cmocka_unit_test(broken_headers),
        cmocka_unit_test(response_buffer),
        cmocka_unit_test(server_arguments),
        cmocka_unit_test(offer_strings),
        cmocka_unit_test(offer_buffer),
        cmocka_unit_test(answers_accepted),
        cmocka_unit_test(answers_absent),
        cmocka_unit_test(answers_refused),
        cmocka_unit_test(client_arguments),
        cmocka_unit_test(round_trip_every_offer_and_policy),
        cmocka_unit_test(round_trip_whole_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
