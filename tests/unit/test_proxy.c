/* HTTP proxies: the proxy's URL, no_proxy, the CONNECT bytes, the reply. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/client.h"
#include "kaze/handshake.h"
#include "helpers.h"

static void assert_str(struct kz_str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    if (s.len != 0)
        assert_memory_equal(s.ptr, want, s.len);
}

/* ------------------------------------------------------------------------
 * kz_proxy_parse
 */

static void accept(const char *text, const char *host, uint16_t port, const char *userinfo)
{
    size_t len = strlen(text);
    uint8_t *buf = kzt_guard_copy(text, len);
    struct kz_proxy p;
    int rc = kz_proxy_parse((const char *)buf, len, &p);
    if (rc != KZ_OK)
        fail_msg("refused %s: %d", text, rc);
    assert_str(p.host, host);
    assert_int_equal(p.port, port);
    assert_str(p.userinfo, userinfo);
    kzt_guard_free(buf, len);
}

static void refuse(const char *text)
{
    size_t len = strlen(text);
    uint8_t *buf = kzt_guard_copy(text, len);
    struct kz_proxy p;
    int rc = kz_proxy_parse((const char *)buf, len, &p);
    if (rc != KZ_ERR_INVALID_ARGUMENT)
        fail_msg("accepted %s: %d", text, rc);
    kzt_guard_free(buf, len);
}

static void parse_forms(void **state)
{
    accept("http://proxy.example:3128", "proxy.example", 3128, "");
    accept("http://proxy.example:3128/", "proxy.example", 3128, "");
    accept("HTTP://Proxy.Example", "Proxy.Example", 80, "");
    accept("http://user:pass@proxy:8080", "proxy", 8080, "user:pass");
    accept("http://user@proxy:8080", "proxy", 8080, "user");
    accept("http://u:p%40ss@proxy:8080", "proxy", 8080, "u:p%40ss");
    accept("user:pass@proxy:1", "proxy", 1, "user:pass");
    accept("proxy:3128", "proxy", 3128, "");
    accept("proxy", "proxy", 80, "");
    accept("10.1.2.3:65535", "10.1.2.3", 65535, "");
    accept("http://[::1]:3128", "::1", 3128, "");
    accept("[2001:db8::2]:8080", "2001:db8::2", 8080, "");
    accept("http://u:p@[::1]", "::1", 80, "u:p");
    accept("[::1]", "::1", 80, "");
}

static void parse_refusals(void **state)
{
    refuse("");
    refuse("https://proxy:443");
    refuse("socks5://proxy:1080");
    refuse("socks5h://proxy:1080");
    refuse("socks://proxy");
    refuse("ftp://proxy");
    refuse("://proxy");
    refuse("http://");
    refuse("http:///");
    refuse(":3128");
    refuse("proxy:");
    refuse("proxy:0");
    refuse("proxy:65536");
    refuse("proxy:-1");
    refuse("proxy:31 28");
    refuse("proxy:3128x");
    refuse("proxy:3128/path");
    refuse("proxy:3128//");
    refuse("proxy 3128");
    refuse(" proxy:3128");
    refuse("pro_xy:3128");
    refuse("::1:3128");
    refuse("[::1:3128");
    refuse("[proxy]:3128");
    refuse("http://@proxy");
    refuse("http://a@b@proxy");
    refuse("http://us er:p@proxy");
    refuse("http://u:p%4@proxy");
    refuse("http://u:p%zz@proxy");
    refuse("http://u:p%0d%0aX:y@proxy");
    refuse("http://u:p%00@proxy");
    refuse("http://u:p\r\n@proxy");
    refuse("http://proxy\r\n:80");

    struct kz_proxy p;
    assert_int_equal(kz_proxy_parse(NULL, 4, &p), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_parse("proxy", 5, NULL), KZ_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------
 * kz_proxy_select
 */

static const char HP[] = "http://hp:3128";
static const char SP[] = "http://sp:3128";

/* The proxy chosen for `target` with `no_proxy`, as HP, SP or NULL. */
static const char *pick(const char *target, const char *no_proxy)
{
    struct kz_url u;
    if (kz_url_parse(target, strlen(target), &u) != KZ_OK)
        fail_msg("bad url %s", target);
    return kz_proxy_select(&u, HP, SP, no_proxy);
}

static void select_by_scheme(void **state)
{
    struct kz_url u;
    assert_int_equal(kz_url_parse("ws://example.com", 16, &u), KZ_OK);
    assert_ptr_equal(kz_proxy_select(&u, HP, SP, NULL), HP);
    assert_ptr_equal(kz_proxy_select(&u, NULL, SP, NULL), NULL);
    assert_ptr_equal(kz_proxy_select(&u, "", SP, NULL), NULL);
    assert_int_equal(kz_url_parse("wss://example.com", 17, &u), KZ_OK);
    assert_ptr_equal(kz_proxy_select(&u, HP, SP, NULL), SP);
    assert_ptr_equal(kz_proxy_select(&u, HP, NULL, NULL), NULL);
    assert_ptr_equal(kz_proxy_select(&u, HP, "", ""), NULL);
    assert_ptr_equal(kz_proxy_select(&u, HP, SP, ""), SP);
    assert_ptr_equal(kz_proxy_select(NULL, HP, SP, NULL), NULL);
}

static void no_proxy_names(void **state)
{
    /* "example.com", ".example.com" and "*.example.com" all cover the domain. */
    static const char *forms[] = {"example.com", ".example.com", "*.example.com", "EXAMPLE.COM",
                                  ".Example.Com"};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        assert_ptr_equal(pick("ws://example.com/", forms[i]), NULL);
        assert_ptr_equal(pick("ws://Example.COM/", forms[i]), NULL);
        assert_ptr_equal(pick("wss://api.example.com/", forms[i]), NULL);
        assert_ptr_equal(pick("wss://a.b.example.com/", forms[i]), NULL);
        assert_ptr_equal(pick("ws://badexample.com/", forms[i]), HP);
        assert_ptr_equal(pick("ws://example.com.evil/", forms[i]), HP);
        assert_ptr_equal(pick("ws://example.org/", forms[i]), HP);
        assert_ptr_equal(pick("ws://com/", forms[i]), HP);
    }
    /* A longer entry does not cover its parent. */
    assert_ptr_equal(pick("ws://example.com/", "api.example.com"), HP);
    assert_ptr_equal(pick("ws://localhost:8080/", "localhost"), NULL);
}

static void no_proxy_lists(void **state)
{
    assert_ptr_equal(pick("ws://example.com/", "*"), NULL);
    assert_ptr_equal(pick("wss://[::1]/", "*"), NULL);
    assert_ptr_equal(pick("ws://example.com/", " * "), NULL);
    assert_ptr_equal(pick("ws://example.com/", "a.org,*"), NULL);
    /* "*" only as a whole entry. */
    assert_ptr_equal(pick("ws://example.com/", "*x"), HP);
    assert_ptr_equal(pick("ws://example.com/", "*:80"), HP);
    /* White space and empty entries are ignored. */
    assert_ptr_equal(pick("ws://example.com/", " a.org ,\texample.com\t, b.org"), NULL);
    assert_ptr_equal(pick("ws://b.org/", "a.org,,  ,b.org,"), NULL);
    assert_ptr_equal(pick("ws://c.org/", "a.org,,  ,b.org,"), HP);
    assert_ptr_equal(pick("ws://c.org/", ",, ,"), HP);
    assert_ptr_equal(pick("ws://c.org/", "."), HP);
    assert_ptr_equal(pick("ws://c.org/", "*."), HP);
}

static void no_proxy_ports(void **state)
{
    assert_ptr_equal(pick("ws://example.com/", "example.com:80"), NULL);
    assert_ptr_equal(pick("ws://example.com/", "example.com:443"), HP);
    assert_ptr_equal(pick("wss://example.com/", "example.com:443"), NULL);
    assert_ptr_equal(pick("wss://api.example.com/", ".example.com:443"), NULL);
    assert_ptr_equal(pick("ws://example.com:8080/", "example.com:8080"), NULL);
    assert_ptr_equal(pick("ws://example.com:8081/", "example.com:8080"), HP);
    assert_ptr_equal(pick("ws://example.com/", "example.com:"), HP);
    assert_ptr_equal(pick("ws://example.com/", "example.com:8x"), HP);
    assert_ptr_equal(pick("ws://example.com/", "example.com:0"), HP);
    assert_ptr_equal(pick("ws://example.com/", "example.com:80,"), NULL);
}

static void no_proxy_addresses(void **state)
{
    assert_ptr_equal(pick("ws://10.0.0.1/", "10.0.0.1"), NULL);
    assert_ptr_equal(pick("ws://10.0.0.1/", "10.0.0.1:80"), NULL);
    assert_ptr_equal(pick("ws://10.0.0.1/", "10.0.0.1:81"), HP);
    assert_ptr_equal(pick("ws://10.0.0.1/", "0.0.1"), HP);
    assert_ptr_equal(pick("ws://10.0.0.1/", ".0.0.1"), HP);
    assert_ptr_equal(pick("ws://10.0.0.12/", "10.0.0.1"), HP);
    assert_ptr_equal(pick("ws://[::1]/", "::1"), NULL);
    assert_ptr_equal(pick("ws://[::1]/", "[::1]"), NULL);
    assert_ptr_equal(pick("ws://[::1]:9001/", "[::1]:9001"), NULL);
    assert_ptr_equal(pick("ws://[::1]:9001/", "[::1]:9002"), HP);
    assert_ptr_equal(pick("ws://[::1]/", "[::1"), HP);
    assert_ptr_equal(pick("ws://[::1]/", "[::1]x"), HP);
    assert_ptr_equal(pick("ws://[::1]/", "::2"), HP);
    assert_ptr_equal(pick("ws://[2001:DB8::1]/", "2001:db8::1"), NULL);
}

/* ------------------------------------------------------------------------
 * kz_proxy_write_connect
 */

static struct kz_str S(const char *s) {
    return (struct kz_str){s, strlen(s)};
}

/* Writes the CONNECT for `proxy_text`, checks it byte for byte and the bound. */
static void
connect_is(const char *proxy_text, const char *host, uint16_t port, const char *want)
{
    struct kz_proxy p;
    assert_int_equal(kz_proxy_parse(proxy_text, strlen(proxy_text), &p), KZ_OK);
    char out[512];
    memset(out, '#', sizeof(out));
    size_t n = strlen(want);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S(host), port), (int)n);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], '#'); /* nothing past the end, not even a NUL */
    /* Exactly n bytes are enough; one fewer is not. */
    assert_int_equal(kz_proxy_write_connect(out, n, &p, S(host), port), (int)n);
    assert_int_equal(kz_proxy_write_connect(out, n - 1, &p, S(host), port),
                     KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_proxy_write_connect(NULL, 0, &p, S(host), port), KZ_ERR_BUFFER_TOO_SMALL);
}

static void connect_bytes(void **state)
{
    connect_is("proxy:3128", "example.com", 443,
               "CONNECT example.com:443 HTTP/1.1\r\n"
               "Host: example.com:443\r\n"
               "\r\n");
    connect_is("proxy:3128", "h", 80,
               "CONNECT h:80 HTTP/1.1\r\n"
               "Host: h:80\r\n"
               "\r\n");
    connect_is("proxy", "2001:db8::1", 65535,
               "CONNECT [2001:db8::1]:65535 HTTP/1.1\r\n"
               "Host: [2001:db8::1]:65535\r\n"
               "\r\n");
    connect_is("http://Aladdin:open%20sesame@proxy:3128", "example.com", 443,
               "CONNECT example.com:443 HTTP/1.1\r\n"
               "Host: example.com:443\r\n"
               "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
               "\r\n");
    /* base64 padding: one, two and no '='. */
    connect_is("http://u:p%40ss@proxy", "h", 1,
               "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n"
               "Proxy-Authorization: Basic dTpwQHNz\r\n\r\n");
    connect_is("http://u:pass@proxy", "h", 1,
               "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n"
               "Proxy-Authorization: Basic dTpwYXNz\r\n\r\n");
    connect_is("http://u:pas@proxy", "h", 1,
               "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n"
               "Proxy-Authorization: Basic dTpwYXM=\r\n\r\n");
    connect_is("http://u:pa@proxy", "h", 1,
               "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n"
               "Proxy-Authorization: Basic dTpwYQ==\r\n\r\n");
}

static void connect_refusals(void **state)
{
    struct kz_proxy p = {S("proxy"), 3128, {NULL, 0}};
    char out[512];
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), NULL, S("h"), 80),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(NULL, 5, &p, S("h"), 80), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S(""), 80),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, (struct kz_str){NULL, 0}, 80),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S("h"), 0),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S("h\r\nX: y"), 80),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S("h\n"), 80),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S("a b"), 80),
                     KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, (struct kz_str){"h\0", 2}, 80),
                     KZ_ERR_INVALID_ARGUMENT);
    /* Userinfo set by hand: raw CR/LF, escaped CR/LF, broken escapes. */
    static const char *bad_users[] = {"u:p\r\n", "u:p\n", "u:%0d%0a", "u:%0A",
                                      "u:%00",   "u:%",   "u:%4",     "u:%g0"};
    for (size_t i = 0; i < sizeof(bad_users) / sizeof(bad_users[0]); i++) {
        p.userinfo = S(bad_users[i]);
        assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S("h"), 80),
                         KZ_ERR_INVALID_ARGUMENT);
    }
    p.userinfo = (struct kz_str){NULL, 3};
    assert_int_equal(kz_proxy_write_connect(out, sizeof(out), &p, S("h"), 80),
                     KZ_ERR_INVALID_ARGUMENT);
    /* A raw space is allowed in hand-set userinfo: base64 carries it. */
    p.userinfo = S("Aladdin:open sesame");
    int n = kz_proxy_write_connect(out, sizeof(out), &p, S("h"), 80);
    assert_true(n > 0);
    assert_non_null(memmem(out, (size_t)n, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n", 36));
}

/* ------------------------------------------------------------------------
 * kz_proxy_parse_reply
 */

/* The reply in a guard-page buffer of exactly its size. */
static int reply(const char *text, size_t max_size, int *status)
{
    size_t len = strlen(text);
    uint8_t *buf = kzt_guard_copy(text, len);
    int rc = kz_proxy_parse_reply((const char *)buf, len, 0, max_size, status);
    kzt_guard_free(buf, len);
    return rc;
}

static void reply_statuses(void **state)
{
    int status = -1;
    const char *ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    assert_int_equal(reply(ok, 8192, &status), (int)strlen(ok));
    assert_int_equal(status, 200);

    const char *ok10 = "HTTP/1.0 200 OK\r\nProxy-Agent: test\r\n\r\n";
    assert_int_equal(reply(ok10, 8192, &status), (int)strlen(ok10));
    assert_int_equal(status, 200);

    const char *lf = "HTTP/1.1 204 No Content\n\n";
    assert_int_equal(reply(lf, 8192, &status), (int)strlen(lf));
    assert_int_equal(status, 204);

    status = -1;
    assert_int_equal(reply("HTTP/1.1 299 Fine\r\n\r\n", 8192, &status), 21);
    assert_int_equal(status, 299);

    assert_int_equal(reply("HTTP/1.1 407 Proxy Authentication Required\r\n"
                           "Proxy-Authenticate: Basic realm=\"proxy\"\r\n"
                           "Content-Length: 0\r\n\r\n",
                           8192, &status),
                     KZ_ERR_PROXY);
    assert_int_equal(status, 407);
    assert_int_equal(reply("HTTP/1.1 502 Bad Gateway\r\n\r\nbody", 8192, &status), KZ_ERR_PROXY);
    assert_int_equal(status, 502);
    assert_int_equal(reply("HTTP/1.1 199 Odd\r\n\r\n", 8192, &status), KZ_ERR_PROXY);
    assert_int_equal(status, 199);
    assert_int_equal(reply("HTTP/1.1 300 Moved\r\n\r\n", 8192, &status), KZ_ERR_PROXY);
    assert_int_equal(status, 300);
    assert_int_equal(reply("HTTP/1.1 101 Switching Protocols\r\n\r\n", 8192, &status),
                     KZ_ERR_PROXY);
    assert_int_equal(status, 101);
    /* status may be NULL. */
    assert_int_equal(reply(ok, 8192, NULL), (int)strlen(ok));
    assert_int_equal(reply("HTTP/1.1 403 Forbidden\r\n\r\n", 8192, NULL), KZ_ERR_PROXY);
}

static void reply_with_tunnel_bytes(void **state)
{
    /* Whatever follows the head is the tunnel's: the size excludes it. */
    const char *text = "HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01\x02\x00";
    int status = 0;
    assert_int_equal(reply(text, 8192, &status), 19);
    assert_int_equal(status, 200);
}

/*
 * Feeds the reply one byte more each time, from a guard-page buffer, with
 * the previous length as kz_hs_parse_response's contract asks.
 */
static void byte_by_byte(const char *text, int want_final, int want_status)
{
    size_t total = strlen(text);
    size_t head =
        strstr(text, "\r\n\r\n") != NULL ? (size_t)(strstr(text, "\r\n\r\n") - text) + 4 : total;
    size_t prev = 0;
    for (size_t n = 1; n <= total; n++) {
        uint8_t *buf = kzt_guard_copy(text, n);
        int status = -1;
        int rc = kz_proxy_parse_reply((const char *)buf, n, prev, 8192, &status);
        kzt_guard_free(buf, n);
        if (n < head) {
            if (rc != KZ_ERR_PARTIAL)
                fail_msg("%zu bytes: %d", n, rc);
            assert_int_equal(status, -1);
            prev = n;
            continue;
        }
        /* The head is complete exactly at its last byte; a caller stops here. */
        assert_int_equal(n, head);
        assert_int_equal(rc, want_final);
        assert_int_equal(status, want_status);
        break;
    }
    /* The whole text at once, tunnel bytes and all, gives the same answer. */
    int status = -1;
    assert_int_equal(kz_proxy_parse_reply(text, total, 0, 8192, &status), want_final);
    assert_int_equal(status, want_status);
}

static void reply_partial(void **state)
{
    byte_by_byte("HTTP/1.1 200 Connection established\r\nVia: 1.1 proxy\r\n\r\nTLS", 55, 200);
    byte_by_byte("HTTP/1.1 407 Proxy Authentication Required\r\n"
                 "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
                 KZ_ERR_PROXY, 407);
    byte_by_byte("HTTP/1.1 502 Bad Gateway\r\n\r\n", KZ_ERR_PROXY, 502);
    int status = -1;
    assert_int_equal(kz_proxy_parse_reply("", 0, 0, 8192, &status), KZ_ERR_PARTIAL);
    assert_int_equal(status, -1);
}

static void reply_too_large(void **state)
{
    int status = -1;
    char big[512];
    size_t n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Pad: %0200d\r\n\r\n", 0);
    assert_int_equal(reply(big, 100, &status), KZ_ERR_HS_RESP_TOO_LARGE);
    assert_int_equal(reply(big, n, &status), (int)n);
    assert_int_equal(reply(big, n - 1, &status), KZ_ERR_HS_RESP_TOO_LARGE);
    /* No end yet but already over the bound. */
    assert_int_equal(reply("HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaa", 20, &status),
                     KZ_ERR_HS_RESP_TOO_LARGE);

    /* More header lines than the parser's array holds (32). */
    char many[2048];
    size_t len = (size_t)snprintf(many, sizeof(many), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 32; i++)
        len += (size_t)snprintf(many + len, sizeof(many) - len, "X-%d: v\r\n", i);
    memcpy(many + len, "\r\n", 3);
    assert_int_equal(reply(many, 8192, &status), (int)len + 2);
    memcpy(many + len, "X-last: v\r\n\r\n", 14);
    assert_int_equal(reply(many, 8192, &status), KZ_ERR_HS_RESP_TOO_LARGE);
}

static void reply_malformed(void **state)
{
    static const char *bad[] = {
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "SSH-2.0-OpenSSH_9.0\r\n\r\n",
        "200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int status = -1;
        int rc = reply(bad[i], 8192, &status);
        if (rc != KZ_ERR_HS_RESP_MALFORMED)
            fail_msg("case %zu: %d", i, rc);
    }
    int status;
    assert_int_equal(kz_proxy_parse_reply(NULL, 5, 0, 8192, &status), KZ_ERR_INVALID_ARGUMENT);
}

/* The pieces together: URL, environment, proxy, CONNECT, reply. */
static void whole_flow(void **state)
{
    const char *target = "wss://[2001:db8::7]:9443/live?ch=1";
    struct kz_url u;
    assert_int_equal(kz_url_parse(target, strlen(target), &u), KZ_OK);
    const char *chosen =
        kz_proxy_select(&u, "http://plain:3128", "http://bob:s3cret@secure:8443", "localhost");
    assert_string_equal(chosen, "http://bob:s3cret@secure:8443");
    struct kz_proxy p;
    assert_int_equal(kz_proxy_parse(chosen, strlen(chosen), &p), KZ_OK);
    assert_str(p.host, "secure");
    assert_int_equal(p.port, 8443);
    char out[256];
    int n = kz_proxy_write_connect(out, sizeof(out), &p, u.host, u.port);
    const char *want = "CONNECT [2001:db8::7]:9443 HTTP/1.1\r\n"
                       "Host: [2001:db8::7]:9443\r\n"
                       "Proxy-Authorization: Basic Ym9iOnMzY3JldA==\r\n"
                       "\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(out, want, strlen(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_forms),
        cmocka_unit_test(parse_refusals),
        cmocka_unit_test(select_by_scheme),
        cmocka_unit_test(no_proxy_names),
        cmocka_unit_test(no_proxy_lists),
        cmocka_unit_test(no_proxy_ports),
        cmocka_unit_test(no_proxy_addresses),
        cmocka_unit_test(connect_bytes),
        cmocka_unit_test(connect_refusals),
        cmocka_unit_test(reply_statuses),
        cmocka_unit_test(reply_with_tunnel_bytes),
        cmocka_unit_test(reply_partial),
        cmocka_unit_test(reply_too_large),
        cmocka_unit_test(reply_malformed),
        cmocka_unit_test(whole_flow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
