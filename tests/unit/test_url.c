/* ws:// URLs: every accepted and refused form, the Host header, the target. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/client.h"
#include "helpers.h"

struct want {
    bool tls;
    const char *host;
    bool ipv6;
    uint16_t port;
    bool port_explicit;
    const char *target; /* as kz_url_target() writes it */
    const char *path;
    const char *query;
};

static void assert_str(struct kz_str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    if (s.len != 0)
        assert_memory_equal(s.ptr, want, s.len);
}

/* Parses `text` from a guard-page buffer, so an over-read faults. */
static void accept(const char *text, struct want w)
{
    size_t len = strlen(text);
    uint8_t *buf = kzt_guard_copy(text, len);
    struct kz_url u;
    int rc = kz_url_parse((const char *)buf, len, &u);
    if (rc != KZ_OK)
        fail_msg("refused %s: %d", text, rc);
    assert_int_equal(u.tls, w.tls);
    assert_str(u.host, w.host);
    assert_int_equal(u.host_is_ipv6, w.ipv6);
    assert_int_equal(u.port, w.port);
    assert_int_equal(u.port_explicit, w.port_explicit);
    assert_str(u.path, w.path);
    assert_str(u.query, w.query);
    char target[256];
    assert_int_equal(kz_url_target(&u, target, sizeof(target)), (int)strlen(w.target));
    assert_string_equal(target, w.target);
    /* Every span points into the text. */
    assert_true(u.host.ptr >= (const char *)buf && u.host.ptr + u.host.len <= (char *)buf + len);
    assert_true(u.target.ptr >= (const char *)buf &&
                u.target.ptr + u.target.len == (char *)buf + len);
    kzt_guard_free(buf, len);
}

static void refuse(const char *text)
{
    size_t len = strlen(text);
    uint8_t *buf = kzt_guard_copy(text, len);
    struct kz_url u;
    int rc = kz_url_parse((const char *)buf, len, &u);
    if (rc != KZ_ERR_INVALID_ARGUMENT)
        fail_msg("accepted %s: %d", text, rc);
    kzt_guard_free(buf, len);
}

static void schemes(void **state)
{
    accept("ws://example.com", (struct want){false, "example.com", false, 80, false, "/", "", ""});
    accept("wss://example.com", (struct want){true, "example.com", false, 443, false, "/", "", ""});
    accept("http://example.com/",
           (struct want){false, "example.com", false, 80, false, "/", "/", ""});
    accept("https://example.com/",
           (struct want){true, "example.com", false, 443, false, "/", "/", ""});
    accept("WS://example.com", (struct want){false, "example.com", false, 80, false, "/", "", ""});
    accept("WsS://example.com", (struct want){true, "example.com", false, 443, false, "/", "", ""});
    accept("HTTPS://example.com",
           (struct want){true, "example.com", false, 443, false, "/", "", ""});
    refuse("ftp://example.com");
    refuse("wsx://example.com");
    refuse("w://example.com");
    refuse("://example.com");
    refuse("ws:example.com");
    refuse("ws:/example.com");
    refuse("example.com");
    refuse("example.com:80");
    refuse("");
}

static void hosts(void **state)
{
    accept("ws://a", (struct want){false, "a", false, 80, false, "/", "", ""});
    accept("ws://my-host.Example.COM/x",
           (struct want){false, "my-host.Example.COM", false, 80, false, "/x", "/x", ""});
    accept("ws://example.com./",
           (struct want){false, "example.com.", false, 80, false, "/", "/", ""});
    accept("ws://127.0.0.1:9001/",
           (struct want){false, "127.0.0.1", false, 9001, true, "/", "/", ""});
    accept("ws://[::1]/", (struct want){false, "::1", true, 80, false, "/", "/", ""});
    accept("wss://[2001:db8::1]:8443/chat",
           (struct want){true, "2001:db8::1", true, 8443, true, "/chat", "/chat", ""});
    accept("ws://[::ffff:192.0.2.1]",
           (struct want){false, "::ffff:192.0.2.1", true, 80, false, "/", "", ""});
    refuse("ws://");
    refuse("ws:///chat");
    refuse("ws://:80/");
    refuse("ws://exa_mple.com/");
    refuse("ws://exa mple.com/");
    refuse("ws://a..b/");
    refuse("ws://.a/");
    refuse("ws://a b");
    refuse("ws://[::1/");
    refuse("ws://[]/");
    refuse("ws://[example.com]/");
    refuse("ws://[127.0.0.1]/");
    refuse("ws://[::1]x/");
    refuse("ws://[::1%25eth0]/");
    refuse("ws://::1/");
    refuse("ws://256.1.1.1/");
    refuse("ws://1.2.3/");
    refuse("ws://1.2.3.4.5/");
    /* A label over 63 bytes. */
    refuse("ws://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/");
    accept("ws://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/",
           (struct want){false,
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
                         false, 80, false, "/", "/", ""});
}

static void userinfo_refused(void **state)
{
    refuse("ws://user@example.com/");
    refuse("ws://user:pass@example.com/");
    refuse("ws://@example.com/");
    /* After the authority an '@' is an ordinary path byte. */
    accept("ws://h/a@b", (struct want){false, "h", false, 80, false, "/a@b", "/a@b", ""});
}

static void ports(void **state)
{
    accept("ws://h:1", (struct want){false, "h", false, 1, true, "/", "", ""});
    accept("ws://h:65535/", (struct want){false, "h", false, 65535, true, "/", "/", ""});
    accept("ws://h:80", (struct want){false, "h", false, 80, true, "/", "", ""});
    accept("wss://h:80", (struct want){true, "h", false, 80, true, "/", "", ""});
    accept("ws://h:00080", (struct want){false, "h", false, 80, true, "/", "", ""});
    accept("ws://h:8080?a", (struct want){false, "h", false, 8080, true, "/?a", "", "a"});
    refuse("ws://h:0");
    refuse("ws://h:00000");
    refuse("ws://h:65536");
    refuse("ws://h:99999");
    refuse("ws://h:100000");
    refuse("ws://h:080800");
    refuse("ws://h:");
    refuse("ws://h:/");
    refuse("ws://h:+80");
    refuse("ws://h:-80");
    refuse("ws://h:80x");
    refuse("ws://h:8 0");
    refuse("ws://h:80:81");
    refuse("ws://[::1]:");
    refuse("ws://[::1]:0/");
    refuse("ws://[::1]:65536/");
}

static void targets(void **state)
{
    accept("ws://h/chat", (struct want){false, "h", false, 80, false, "/chat", "/chat", ""});
    accept(
        "ws://h/chat?room=1&x=%20",
        (struct want){false, "h", false, 80, false, "/chat?room=1&x=%20", "/chat", "room=1&x=%20"});
    accept("ws://h?x=1", (struct want){false, "h", false, 80, false, "/?x=1", "", "x=1"});
    accept("ws://h/?", (struct want){false, "h", false, 80, false, "/?", "/", ""});
    accept("ws://h?", (struct want){false, "h", false, 80, false, "/?", "", ""});
    accept("ws://h/a?b?c", (struct want){false, "h", false, 80, false, "/a?b?c", "/a", "b?c"});
    accept("ws://h/a/b//c", (struct want){false, "h", false, 80, false, "/a/b//c", "/a/b//c", ""});

    /* The raw fields for a URL without a path. */
    struct kz_url u;
    assert_int_equal(kz_url_parse("ws://h?x=1", 10, &u), KZ_OK);
    assert_int_equal(u.target.len, 4);
    assert_memory_equal(u.target.ptr, "?x=1", 4);
    assert_int_equal(kz_url_parse("ws://h", 6, &u), KZ_OK);
    assert_int_equal(u.target.len, 0);

    /* kz_url_target's buffer bound: the NUL must fit. */
    char out[8];
    assert_int_equal(kz_url_parse("ws://h?x=1", 10, &u), KZ_OK);
    assert_int_equal(kz_url_target(&u, out, 6), 5);
    assert_string_equal(out, "/?x=1");
    assert_int_equal(kz_url_target(&u, out, 5), KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_url_parse("ws://h", 6, &u), KZ_OK);
    assert_int_equal(kz_url_target(&u, out, 2), 1);
    assert_string_equal(out, "/");
    assert_int_equal(kz_url_target(&u, out, 1), KZ_ERR_BUFFER_TOO_SMALL);
}

static void refused_characters(void **state)
{
    refuse("ws://h/#frag");
    refuse("ws://h#frag");
    refuse("ws://h/a?b#c");
    refuse("ws://h/a b");
    refuse("ws://h/a\tb");
    refuse("ws://h/a\rb");
    refuse("ws://h/a\nb");
    refuse("ws://h/a\x7f");
    refuse("ws://h/caf\xc3\xa9");
    refuse(" ws://h/");
    refuse("ws://h/ ");
    /* An embedded NUL is a control character too. */
    struct kz_url u;
    assert_int_equal(kz_url_parse("ws://h/a\0b", 10, &u), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_url_parse("ws://h\0", 7, &u), KZ_ERR_INVALID_ARGUMENT);
}

static void bad_arguments(void **state)
{
    struct kz_url u;
    assert_int_equal(kz_url_parse(NULL, 3, &u), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_url_parse("ws://h", 6, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_url_parse(NULL, 0, &u), KZ_ERR_INVALID_ARGUMENT);
    /* Only `len` bytes count: a longer string cut at the host is fine. */
    assert_int_equal(kz_url_parse("ws://h/#x", 6, &u), KZ_OK);
    assert_str(u.host, "h");
}

static void host_header_is(const char *text, const char *want)
{
    struct kz_url u;
    char out[128];
    assert_int_equal(kz_url_parse(text, strlen(text), &u), KZ_OK);
    assert_int_equal(kz_url_host_header(&u, out, sizeof(out)), (int)strlen(want));
    assert_string_equal(out, want);
}

static void host_header(void **state)
{
    host_header_is("ws://example.com/chat", "example.com");
    host_header_is("ws://example.com:80/", "example.com");
    host_header_is("ws://example.com:443/", "example.com:443");
    host_header_is("wss://example.com:443/", "example.com");
    host_header_is("wss://example.com:80/", "example.com:80");
    host_header_is("wss://Example.com:8443", "Example.com:8443");
    host_header_is("ws://h:1", "h:1");
    host_header_is("ws://h:65535", "h:65535");
    host_header_is("ws://[::1]/", "[::1]");
    host_header_is("ws://[::1]:9001/", "[::1]:9001");
    host_header_is("wss://[2001:db8::1]:443", "[2001:db8::1]");
    host_header_is("ws://10.0.0.1:8080", "10.0.0.1:8080");

    struct kz_url u;
    char out[32];
    assert_int_equal(kz_url_parse("ws://[::1]:9001", 15, &u), KZ_OK);
    /* "[::1]:9001" is 10 bytes: 11 with the NUL. */
    assert_int_equal(kz_url_host_header(&u, out, 11), 10);
    assert_int_equal(kz_url_host_header(&u, out, 10), KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_url_host_header(&u, NULL, 0), KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_url_host_header(NULL, out, sizeof(out)), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_url_host_header(&u, NULL, 5), KZ_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(schemes),          cmocka_unit_test(hosts),
        cmocka_unit_test(userinfo_refused), cmocka_unit_test(ports),
        cmocka_unit_test(targets),          cmocka_unit_test(refused_characters),
        cmocka_unit_test(bad_arguments),    cmocka_unit_test(host_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
