/*
 * The HTTP head parser of the opening handshake: requests and responses,
 * well-formed and malformed, fed whole, one byte at a time and split at
 * every point, always from buffers that end at a guard page.
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

static void check_rfc_fields(const struct parsed *p)
{
    const struct kz_hs_request *req = &p->req;
    str_is(req->method, "GET");
    str_is(req->target, "/chat");
    str_is(req->path, "/chat");
    assert_null(req->query.ptr);
    assert_int_equal(req->query.len, 0);
    assert_int_equal(req->http_minor, 1);
    str_is(req->host, "server.example.com");
    str_is(req->origin, "http://example.com");
    str_is(req->key, "dGhlIHNhbXBsZSBub25jZQ==");
    str_is(req->version, "13");
    assert_null(req->cookie.ptr);
    assert_null(req->authorization.ptr);
    assert_int_equal(req->dup_mask, 0);
    assert_int_equal(req->num_headers, 7);
    str_is(req->headers[0].name, "Host");
    str_is(req->headers[5].name, "Sec-WebSocket-Protocol");
    str_is(req->headers[5].value, "chat, superchat");
}

static void rfc_request(void **state)
{
    struct parsed p;
    assert_int_equal(parse_req(&p, RFC_REQUEST), (int)strlen(RFC_REQUEST));
    check_rfc_fields(&p);
    parsed_free(&p);
}

/* Replaces every "\r\n" of `text` with "\n". */
static char *lf_only(const char *text)
{
    char *out = malloc(strlen(text) + 1);
    char *o = out;
    for (const char *s = text; *s; s++) {
        if (s[0] == '\r' && s[1] == '\n')
            continue;
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static void lf_line_endings(void **state)
{
    char *text = lf_only(RFC_REQUEST);
    struct parsed p;
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    check_rfc_fields(&p);
    parsed_free(&p);
    free(text);
}

static void mixed_line_endings(void **state)
{
    const char *text = "GET /chat HTTP/1.1\n"
                       "Host: server.example.com\r\n"
                       "Upgrade: websocket\n"
                       "Connection: Upgrade\r\n"
                       "\n";
    struct parsed p;
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    str_is(p.req.host, "server.example.com");
    assert_int_equal(p.req.num_headers, 3);
    str_is(p.headers[2].value, "Upgrade");
    parsed_free(&p);

    /* The last empty line may be LF after CRLF lines, or CRLF after LF. */
    text = "GET / HTTP/1.1\r\nHost: a\r\n\n";
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    parsed_free(&p);
    text = "GET / HTTP/1.1\nHost: a\n\r\n";
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    parsed_free(&p);
}

static void bytes_after_the_head(void **state)
{
    /* A masked text frame right behind the head is not part of it. */
    const char *text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d";
    struct parsed p;
    assert_int_equal(parse_req(&p, text), 27);
    str_is(p.req.host, "a");
    parsed_free(&p);
}

static void no_headers(void **state)
{
    struct parsed p;
    const char *text = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_every_way(&p, false, text, strlen(text), 0, 8192), (int)strlen(text));
    assert_int_equal(p.req.num_headers, 0);
    assert_null(p.req.host.ptr);
    parsed_free(&p);
}

static void query_extraction(void **state)
{
    struct parsed p;
    assert_true(parse_req(&p, "GET /chat?room=1&x=%20 HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    str_is(p.req.target, "/chat?room=1&x=%20");
    str_is(p.req.path, "/chat");
    str_is(p.req.query, "room=1&x=%20");
    parsed_free(&p);

    assert_true(parse_req(&p, "GET /? HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    str_is(p.req.path, "/");
    str_is(p.req.query, "");
    parsed_free(&p);

    assert_true(parse_req(&p, "GET /a/b?c?d HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    str_is(p.req.path, "/a/b");
    str_is(p.req.query, "c?d");
    parsed_free(&p);
}

/* Parses `target` in a request line and checks path and query (NULL: none). */
static void target_splits(const char *target, const char *path, const char *query)
{
    char text[256];
    snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", target);
    struct parsed p;
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    str_is(p.req.target, target);
    if (path == NULL) {
        assert_null(p.req.path.ptr);
    } else {
        str_is(p.req.path, path);
        /* Even a path the target does not spell out points into the buffer. */
        assert_true((const uint8_t *)p.req.path.ptr >= p.buf);
        assert_true((const uint8_t *)p.req.path.ptr + p.req.path.len <= p.buf + p.len);
    }
    if (query == NULL)
        assert_null(p.req.query.ptr);
    else
        str_is(p.req.query, query);
    parsed_free(&p);
}

static void absolute_form_targets(void **state)
{
    target_splits("http://example.com/chat?x=1", "/chat", "x=1");
    target_splits("https://example.com:8443/a/b", "/a/b", NULL);
    target_splits("ws://example.com", "/", NULL);
    target_splits("wss://example.com?q", "/", "q");
    target_splits("HTTP://Example.com/Chat", "/Chat", NULL);
    target_splits("WsS://h/", "/", NULL);
}

static void other_targets_are_only_recorded(void **state)
{
    /* The parser takes them; kz_hs_check_request() refuses them. */
    target_splits("*", NULL, NULL);
    target_splits("chat", NULL, NULL);
    target_splits("ftp://example.com/chat", NULL, NULL);
    target_splits("http://", NULL, NULL);
    target_splits("http:///chat", NULL, NULL);
    target_splits("example.com:443", NULL, NULL);
}

static void values_are_trimmed(void **state)
{
    struct parsed p;
    const char *text = "GET / HTTP/1.1\r\n"
                       "Host: \t example.com \t \r\n"
                       "X-Empty:\r\n"
                       "X-Blank: \t \r\n"
                       "X-Inner: a \t b\r\n"
                       "X-Tight:v\r\n"
                       "X-High: caf\xc3\xa9\r\n"
                       "\r\n";
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    str_is(p.req.host, "example.com");
    str_is(p.headers[1].name, "X-Empty");
    str_is(p.headers[1].value, "");
    str_is(p.headers[2].value, "");
    str_is(p.headers[3].value, "a \t b");
    str_is(p.headers[4].value, "v");
    str_is(p.headers[5].value, "caf\xc3\xa9");
    parsed_free(&p);
}

static void well_known_headers(void **state)
{
    struct parsed p;
    const char *text = "GET / HTTP/1.1\r\n"
                       "HOST: a.example\r\n"
                       "oRiGiN: https://b.example\r\n"
                       "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "SEC-WEBSOCKET-VERSION: 13\r\n"
                       "Cookie: session=abc; theme=dark\r\n"
                       "Authorization: Bearer t0k3n\r\n"
                       "X-Other: z\r\n"
                       "\r\n";
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    str_is(p.req.host, "a.example");
    str_is(p.req.origin, "https://b.example");
    str_is(p.req.key, "dGhlIHNhbXBsZSBub25jZQ==");
    str_is(p.req.version, "13");
    str_is(p.req.cookie, "session=abc; theme=dark");
    str_is(p.req.authorization, "Bearer t0k3n");
    assert_int_equal(p.req.dup_mask, 0);
    str_is(kz_hs_header(p.req.headers, p.req.num_headers, "x-other"), "z");
    assert_null(kz_hs_header(p.req.headers, p.req.num_headers, "X-Absent").ptr);
    parsed_free(&p);
}

static void repeated_headers(void **state)
{
    struct parsed p;
    const char *text = "GET / HTTP/1.1\r\n"
                       "Host: first\r\n"
                       "Host: second\r\n"
                       "Sec-WebSocket-Key: k1\r\n"
                       "Sec-WebSocket-Key: k2\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Version: 8\r\n"
                       "Origin: o1\r\n"
                       "Origin: o2\r\n"
                       "Cookie: c1\r\n"
                       "Cookie: c2\r\n"
                       "Authorization: a1\r\n"
                       "Authorization: a2\r\n"
                       "\r\n";
    assert_int_equal(parse_req(&p, text), (int)strlen(text));
    assert_int_equal(p.req.dup_mask,
                     KZ_HS_SEEN_HOST | KZ_HS_SEEN_KEY | KZ_HS_SEEN_VERSION | KZ_HS_SEEN_ORIGIN);
    str_is(p.req.host, "first");
    str_is(p.req.key, "k1");
    str_is(p.req.version, "13");
    str_is(p.req.origin, "o1");
    str_is(p.req.cookie, "c1");
    str_is(p.req.authorization, "a1");
    parsed_free(&p);

    assert_int_equal(parse_req(&p, "GET / HTTP/1.1\r\nHost: a\r\nOrigin: o\r\nOrigin: o\r\n\r\n"),
                     49);
    assert_int_equal(p.req.dup_mask, KZ_HS_SEEN_ORIGIN);
    parsed_free(&p);
}

static void http_versions(void **state)
{
    struct parsed p;
    assert_true(parse_req(&p, "GET / HTTP/1.0\r\n\r\n") > 0);
    assert_int_equal(p.req.http_minor, 0);
    parsed_free(&p);
    assert_true(parse_req(&p, "GET / HTTP/1.9\r\n\r\n") > 0);
    assert_int_equal(p.req.http_minor, 9);
    parsed_free(&p);
    /* Any token is a method to the parser; only GET passes the check. */
    assert_true(parse_req(&p, "M-SEARCH / HTTP/1.1\r\n\r\n") > 0);
    str_is(p.req.method, "M-SEARCH");
    parsed_free(&p);
}

struct bad_case {
    const char *text;
    size_t len; /* 0: strlen(text) */
};

static void malformed_requests(void **state)
{
    static const struct bad_case cases[] = {
        {"GET  /chat HTTP/1.1\r\n\r\n", 0},
        {"GET /chat  HTTP/1.1\r\n\r\n", 0},
        {"GET /chat HTTP/1.1 \r\n\r\n", 0},
        {" GET /chat HTTP/1.1\r\n\r\n", 0},
        {"GET\t/chat HTTP/1.1\r\n\r\n", 0},
        {"GET /chat\r\n\r\n", 0},
        {"GET /chat \r\n\r\n", 0},
        {"GET\r\n\r\n", 0},
        {"/chat HTTP/1.1\r\n\r\n", 0},
        {"GET /chat HTTP/2.0\r\n\r\n", 0},
        {"GET /chat HTTP/1.10\r\n\r\n", 0},
        {"GET /chat HTTP/1.\r\n\r\n", 0},
        {"GET /chat HTTP/1.x\r\n\r\n", 0},
        {"GET /chat http/1.1\r\n\r\n", 0},
        {"GET /chat HTTP/11\r\n\r\n", 0},
        {"G(T /chat HTTP/1.1\r\n\r\n", 0},
        {"G\xc3\x89T /chat HTTP/1.1\r\n\r\n", 0},
        {"GET /ch\x01t HTTP/1.1\r\n\r\n", 0},
        {"GET /ch\x7ft HTTP/1.1\r\n\r\n", 0},
        {"GET /ch\tat HTTP/1.1\r\n\r\n", 0},
        {"GET /chat\rHTTP/1.1\r\n\r\n", 0},
        {"GET /chat HTTP/1.1\r\r\n\r\n", 0},
        {"GET /ch\0t HTTP/1.1\r\n\r\n", sizeof("GET /ch\0t HTTP/1.1\r\n\r\n") - 1},
        /* an empty request line */
        {"\r\nGET / HTTP/1.1\r\n\r\n", 0},
        {"\n", 0},
        /* header lines */
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nH\xc3\xa9: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\n: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\r\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\r \r\n\r\n", 0},
        {"GET / HTTP/1.1\r\n\rX-A: a\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: \x1f\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", sizeof("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n") - 1},
        {"GET / HTTP/1.1\r\nX-A: a\x0b\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        struct parsed p;
        int rc = parse_every_way(&p, false, cases[i].text, len, MAX_HEADERS,
                                 KZ_HS_MAX_HEADER_SIZE_DEFAULT);
        if (rc != KZ_ERR_HS_MALFORMED)
            fail_msg("case %zu: %d", i, rc);
        parsed_free(&p);
    }
}

/*
 * Values are checked several bytes at a time: put each kind of byte at
 * every position of values of many lengths, so that every lane of a word
 * and every tail length sees it.
 */
static void value_bytes_at_every_position(void **state)
{
    static const struct {
        unsigned char byte;
        bool allowed;
    } kinds[] = {
        {0x00, false}, {0x01, false}, {0x08, false}, {0x09, true}, {0x0b, false},
        {0x0d, false}, {0x1f, false}, {0x20, true},  {0x21, true}, {0x7e, true},
        {0x7f, false}, {0x80, true},  {0xa0, true},  {0xfe, true}, {0xff, true},
    };
    static const char prefix[] = "GET / HTTP/1.1\r\nX-V: ";
    char text[128];
    for (size_t len = 1; len <= 40; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
                size_t n = sizeof(prefix) - 1;
                memcpy(text, prefix, n);
                memset(text + n, 'v', len);
                text[n + pos] = (char)kinds[k].byte;
                memcpy(text + n + len, "\r\n\r\n", 4);
                n += len + 4;
                uint8_t *buf = kzt_guard_copy(text, n);
                struct kz_header h[2];
                struct kz_hs_request req = {.headers = h, .max_headers = 2};
                int rc = kz_hs_parse_request((const char *)buf, n, 0, 8192, &req);
                if (!kinds[k].allowed) {
                    if (rc != KZ_ERR_HS_MALFORMED)
                        fail_msg("byte %#x at %zu of %zu: %d", kinds[k].byte, pos, len, rc);
                } else {
                    assert_int_equal(rc, (int)n);
                    /* White space at either end is trimmed, and only there. */
                    bool blank = kinds[k].byte == 0x09 || kinds[k].byte == 0x20;
                    size_t trimmed = len - (blank && (pos == 0 || pos == len - 1) ? 1 : 0);
                    assert_int_equal(h[0].value.len, trimmed);
                    assert_ptr_equal(h[0].value.ptr, (const char *)buf + sizeof(prefix) - 1 +
                                                         (blank && pos == 0 ? 1 : 0));
                }
                kzt_guard_free(buf, n);
            }
        }
    }
}

static void partial_request(void **state)
{
    struct parsed p;
    assert_int_equal(parse_req(&p, "GET /chat HTTP/1.1\r\nHost: a\r\n"), KZ_ERR_PARTIAL);
    parsed_free(&p);
    assert_int_equal(parse_req(&p, "GET /chat HTTP/1.1\r\nHost: a\r\n\r"), KZ_ERR_PARTIAL);
    parsed_free(&p);
    assert_int_equal(parse_req(&p, ""), KZ_ERR_PARTIAL);
    parsed_free(&p);
    /* Garbage without an end stays partial until the limit. */
    assert_int_equal(parse_req(&p, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), KZ_ERR_PARTIAL);
    parsed_free(&p);
}

/* A request of exactly `size` bytes, padded with an X-Pad header. */
static char *request_of_size(size_t size, bool complete)
{
    const char *head = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const char *tail = complete ? "\r\n\r\n" : "\r\n";
    size_t fixed = strlen(head) + strlen(tail);
    assert_true(size > fixed);
    char *text = malloc(size + 1);
    strcpy(text, head);
    memset(text + strlen(head), 'p', size - fixed);
    strcpy(text + size - strlen(tail), tail);
    assert_int_equal(strlen(text), size);
    return text;
}

static void size_limit_boundary(void **state)
{
    struct parsed p;
    size_t max = KZ_HS_MAX_HEADER_SIZE_DEFAULT;

    char *text = request_of_size(max, true);
    assert_int_equal(parse_every_way(&p, false, text, max, 8, max), (int)max);
    assert_int_equal(p.req.num_headers, 2);
    parsed_free(&p);
    /* The same head under a limit one byte smaller. */
    assert_int_equal(parse_every_way(&p, false, text, max, 8, max - 1), KZ_ERR_HS_TOO_LARGE);
    parsed_free(&p);
    free(text);

    text = request_of_size(max + 1, true);
    assert_int_equal(parse_every_way(&p, false, text, max + 1, 8, max), KZ_ERR_HS_TOO_LARGE);
    parsed_free(&p);
    free(text);

    /* No end yet: partial below the limit, too large once it is reached. */
    text = request_of_size(max - 1, false);
    assert_int_equal(parse_every_way(&p, false, text, max - 1, 8, max), KZ_ERR_PARTIAL);
    parsed_free(&p);
    free(text);
    text = request_of_size(max, false);
    assert_int_equal(parse_every_way(&p, false, text, max, 8, max), KZ_ERR_HS_TOO_LARGE);
    parsed_free(&p);
    free(text);

    /* Small limits behave the same way. */
    const char *small = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_every_way(&p, false, small, 18, 8, 18), 18);
    parsed_free(&p);
    assert_int_equal(parse_every_way(&p, false, small, 18, 8, 17), KZ_ERR_HS_TOO_LARGE);
    parsed_free(&p);
    assert_int_equal(parse_every_way(&p, false, small, 18, 8, 0), KZ_ERR_HS_TOO_LARGE);
    parsed_free(&p);
}

static void too_many_headers(void **state)
{
    struct parsed p;
    size_t len = strlen(RFC_REQUEST);
    assert_int_equal(parse_every_way(&p, false, RFC_REQUEST, len, 7, 8192), (int)len);
    parsed_free(&p);
    assert_int_equal(parse_every_way(&p, false, RFC_REQUEST, len, 6, 8192),
                     KZ_ERR_HS_TOO_MANY_HEADERS);
    parsed_free(&p);
    assert_int_equal(parse_every_way(&p, false, RFC_REQUEST, len, 0, 8192),
                     KZ_ERR_HS_TOO_MANY_HEADERS);
    parsed_free(&p);
}

static void unreliable_prev_len(void **state)
{
    /* A prev_len beyond len is not trusted: the whole buffer is searched. */
    struct kz_header h[8];
    struct kz_hs_request req = {.headers = h, .max_headers = 8};
    size_t len = strlen(RFC_REQUEST);
    uint8_t *buf = kzt_guard_copy(RFC_REQUEST, len);
    assert_int_equal(kz_hs_parse_request((const char *)buf, len, len + 100, 8192, &req), (int)len);
    kzt_guard_free(buf, len);
}

static void invalid_arguments(void **state)
{
    struct kz_hs_request req = {0};
    struct kz_hs_response resp = {0};
    assert_int_equal(kz_hs_parse_request("GET", 3, 0, 8192, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_parse_request(NULL, 3, 0, 8192, &req), KZ_ERR_INVALID_ARGUMENT);
    req.max_headers = 4;
    assert_int_equal(kz_hs_parse_request("GET", 3, 0, 8192, &req), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_parse_response("HTTP", 4, 0, 8192, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_hs_parse_response(NULL, 4, 0, 8192, &resp), KZ_ERR_INVALID_ARGUMENT);
    /* No bytes at all is simply partial. */
    req.max_headers = 0;
    assert_int_equal(kz_hs_parse_request(NULL, 0, 0, 8192, &req), KZ_ERR_PARTIAL);
}

/* ------------------------------------------------------------------------
 * Responses
 */

#define RFC_RESPONSE                                                                               \
    "HTTP/1.1 101 Switching Protocols\r\n"                                                         \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"                                       \
    "Sec-WebSocket-Protocol: chat\r\n"                                                             \
    "\r\n"

static void rfc_response(void **state)
{
    struct parsed p;
    assert_int_equal(parse_resp(&p, RFC_RESPONSE), (int)strlen(RFC_RESPONSE));
    assert_int_equal(p.resp.status, 101);
    assert_int_equal(p.resp.http_minor, 1);
    str_is(p.resp.reason, "Switching Protocols");
    assert_int_equal(p.resp.num_headers, 4);
    str_is(p.headers[2].name, "Sec-WebSocket-Accept");
    str_is(p.headers[2].value, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    parsed_free(&p);

    char *lf = lf_only(RFC_RESPONSE);
    assert_int_equal(parse_resp(&p, lf), (int)strlen(lf));
    assert_int_equal(p.resp.status, 101);
    assert_int_equal(p.resp.num_headers, 4);
    parsed_free(&p);
    free(lf);
}

static void response_status_lines(void **state)
{
    struct parsed p;
    assert_true(parse_resp(&p, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n") > 0);
    assert_int_equal(p.resp.http_minor, 0);
    assert_int_equal(p.resp.status, 404);
    str_is(p.resp.reason, "Not Found");
    parsed_free(&p);

    /* No reason phrase, with or without the space before it. */
    assert_true(parse_resp(&p, "HTTP/1.1 101\r\nUpgrade: websocket\r\n\r\n") > 0);
    assert_int_equal(p.resp.status, 101);
    str_is(p.resp.reason, "");
    parsed_free(&p);
    assert_true(parse_resp(&p, "HTTP/1.1 503 \r\n\r\n") > 0);
    assert_int_equal(p.resp.status, 503);
    str_is(p.resp.reason, "");
    parsed_free(&p);

    assert_true(parse_resp(&p, "HTTP/1.1 200 OK\tfine \xe2\x9c\x93\r\n\r\n") > 0);
    str_is(p.resp.reason, "OK\tfine \xe2\x9c\x93");
    parsed_free(&p);

    /* Bytes after the head are the server's first frames. */
    assert_int_equal(parse_resp(&p, "HTTP/1.1 101 OK\r\n\r\n\x81\x02hi"), 19);
    parsed_free(&p);
}

static void malformed_responses(void **state)
{
    static const char *const cases[] = {
        "HTTP/1.1 10 Short\r\n\r\n",
        "HTTP/1.1 1011 Long\r\n\r\n",
        "HTTP/1.1  101 Two spaces\r\n\r\n",
        "HTTP/1.1 1O1 Letter\r\n\r\n",
        "HTTP/1.1 101Glued\r\n\r\n",
        "HTTP/2 101 Nope\r\n\r\n",
        "HTTP/1.1\r\n\r\n",
        "HTTP/1.1 \r\n\r\n",
        "http/1.1 101 Lower\r\n\r\n",
        "XTTP/1.1 101 X\r\n\r\n",
        "HTTP/1.1 101 Ctl\x01\r\n\r\n",
        "HTTP/1.1 101 Bare\rCR\r\n\r\n",
        "\r\n",
        "HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n",
        "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n folded\r\n\r\n",
        "HTTP/1.1 101 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 101 OK\r\nX: a\x7f\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parsed p;
        int rc = parse_resp(&p, cases[i]);
        if (rc != KZ_ERR_HS_RESP_MALFORMED)
            fail_msg("case %zu: %d", i, rc);
        parsed_free(&p);
    }
}

static void response_limits(void **state)
{
    struct parsed p;
    size_t len = strlen(RFC_RESPONSE);
    assert_int_equal(parse_every_way(&p, true, RFC_RESPONSE, len, 4, len), (int)len);
    parsed_free(&p);
    assert_int_equal(parse_every_way(&p, true, RFC_RESPONSE, len, 4, len - 1),
                     KZ_ERR_HS_RESP_TOO_LARGE);
    parsed_free(&p);
    /* Holding fewer headers than the server sent is the same failure. */
    assert_int_equal(parse_every_way(&p, true, RFC_RESPONSE, len, 3, len),
                     KZ_ERR_HS_RESP_TOO_LARGE);
    parsed_free(&p);
    assert_int_equal(parse_every_way(&p, true, RFC_RESPONSE, len - 1, 4, len), KZ_ERR_PARTIAL);
    parsed_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc_request),
        cmocka_unit_test(lf_line_endings),
        cmocka_unit_test(mixed_line_endings),
        cmocka_unit_test(bytes_after_the_head),
        cmocka_unit_test(no_headers),
        cmocka_unit_test(query_extraction),
        cmocka_unit_test(absolute_form_targets),
        cmocka_unit_test(other_targets_are_only_recorded),
        cmocka_unit_test(values_are_trimmed),
        cmocka_unit_test(well_known_headers),
        cmocka_unit_test(repeated_headers),
        cmocka_unit_test(http_versions),
        cmocka_unit_test(malformed_requests),
        cmocka_unit_test(value_bytes_at_every_position),
        cmocka_unit_test(partial_request),
        cmocka_unit_test(size_limit_boundary),
        cmocka_unit_test(too_many_headers),
        cmocka_unit_test(unreliable_prev_len),
        cmocka_unit_test(invalid_arguments),
        cmocka_unit_test(rfc_response),
        cmocka_unit_test(response_status_lines),
        cmocka_unit_test(malformed_responses),
        cmocka_unit_test(response_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
