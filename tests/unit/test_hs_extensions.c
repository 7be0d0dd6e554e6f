/*
 * Header lists and the Sec-WebSocket-Extensions grammar (RFC 6455 §9.1):
 * iteration over several header lines, every well-formed shape browsers
 * and libraries send, and every malformed one. Header values sit in
 * buffers that end at a guard page, so reading one byte too far faults.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/handshake.h"
#include "helpers.h"

#define MAX_LINES 8

/* Header lines whose names and values each end at a guard page. */
struct lines {
    struct kz_header h[MAX_LINES];
    size_t n;
};

static struct kz_str guarded(const char *s)
{
    size_t len = strlen(s);
    struct kz_str out = {(const char *)kzt_guard_copy(s, len), len};
    return out;
}

static void add(struct lines *l, const char *name, const char *value)
{
    assert_true(l->n < MAX_LINES);
    l->h[l->n].name = guarded(name);
    l->h[l->n].value = guarded(value);
    l->n++;
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++) {
        kzt_guard_free((uint8_t *)l->h[i].name.ptr, l->h[i].name.len);
        kzt_guard_free((uint8_t *)l->h[i].value.ptr, l->h[i].value.len);
    }
    l->n = 0;
}

static void str_is(struct kz_str s, const char *expected)
{
    assert_non_null(s.ptr);
    assert_int_equal(s.len, strlen(expected));
    assert_memory_equal(s.ptr, expected, s.len);
}

/* ------------------------------------------------------------------------
 * Plain lists and lookups
 */

static void header_lookup(void **state)
{
    struct lines l = {0};
    add(&l, "Host", "a.example");
    add(&l, "X-Dup", "first");
    add(&l, "x-dup", "second");
    str_is(kz_hs_header(l.h, l.n, "host"), "a.example");
    str_is(kz_hs_header(l.h, l.n, "X-DUP"), "first");
    struct kz_str none = kz_hs_header(l.h, l.n, "X-Absent");
    assert_null(none.ptr);
    assert_int_equal(none.len, 0);
    /* A prefix of a name is another name. */
    assert_null(kz_hs_header(l.h, l.n, "Hos").ptr);
    assert_null(kz_hs_header(l.h, 0, "Host").ptr);
    lines_free(&l);
}

static void list_over_several_lines(void **state)
{
    struct lines l = {0};
    add(&l, "Connection", " keep-alive ,, Upgrade\t");
    add(&l, "Host", "h");
    add(&l, "connection", ",");
    add(&l, "CONNECTION", "close , x-last");
    static const char *const expected[] = {"keep-alive", "Upgrade", "close", "x-last"};
    struct kz_hs_iter it = {0, 0};
    struct kz_str item;
    for (size_t i = 0; i < 4; i++) {
        assert_true(kz_hs_list_next(l.h, l.n, "Connection", &it, &item));
        str_is(item, expected[i]);
    }
    assert_false(kz_hs_list_next(l.h, l.n, "Connection", &it, &item));
    /* The end is sticky. */
    assert_false(kz_hs_list_next(l.h, l.n, "Connection", &it, &item));

    struct kz_hs_iter none = {0, 0};
    assert_false(kz_hs_list_next(l.h, l.n, "Upgrade", &none, &item));
    lines_free(&l);
}

static void list_has(void **state)
{
    struct lines l = {0};
    add(&l, "Upgrade", "h2c, WebSocket");
    add(&l, "Connection", "keep-alive");
    add(&l, "Connection", "upgrade");
    assert_true(kz_hs_list_has(l.h, l.n, "upgrade", "websocket"));
    assert_true(kz_hs_list_has(l.h, l.n, "Upgrade", "H2C"));
    assert_true(kz_hs_list_has(l.h, l.n, "Connection", "Upgrade"));
    assert_false(kz_hs_list_has(l.h, l.n, "Upgrade", "web"));
    assert_false(kz_hs_list_has(l.h, l.n, "Upgrade", "websockets"));
    assert_false(kz_hs_list_has(l.h, l.n, "Connection", "close"));
    assert_false(kz_hs_list_has(l.h, l.n, "Origin", "x"));
    lines_free(&l);

    /* An element is the whole text between commas, not a word of it. */
    add(&l, "Upgrade", "web socket");
    assert_false(kz_hs_list_has(l.h, l.n, "Upgrade", "socket"));
    assert_true(kz_hs_list_has(l.h, l.n, "Upgrade", "web socket"));
    lines_free(&l);
}

/* ------------------------------------------------------------------------
 * Extensions
 */

/* Reads every extension of `l` into ext[], returning the count or the error. */
static int read_all(const struct lines *l, struct kz_ext_offer *ext, size_t cap)
{
    struct kz_hs_iter it = {0, 0};
    size_t n = 0;
    for (;;) {
        struct kz_ext_offer tmp;
        int r = kz_hs_next_extension(l->h, l->n, &it, &tmp);
        if (r <= 0)
            return r < 0 ? r : (int)n;
        assert_true(n < cap);
        ext[n++] = tmp;
    }
}

/* The line read_value() parsed, kept until the next call: ext[] points into it. */
static struct lines last_value;

/* Parses one header value; returns the count or the error. */
static int read_value(const char *value, struct kz_ext_offer *ext, size_t cap)
{
    lines_free(&last_value);
    add(&last_value, "Sec-WebSocket-Extensions", value);
    return read_all(&last_value, ext, cap);
}

static int free_last_value(void **state)
{
    lines_free(&last_value);
    return 0;
}

static void param_is(const struct kz_ext_param *p, const char *name, const char *value)
{
    str_is(p->name, name);
    if (value == NULL) {
        assert_false(p->has_value);
        return;
    }
    assert_true(p->has_value);
    char buf[64];
    assert_int_equal(kz_ext_param_value(p, buf, sizeof(buf)), (int)strlen(value));
    assert_string_equal(buf, value);
}

static void chromium_offer(void **state)
{
    struct lines l = {0};
    add(&l, "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
    struct kz_ext_offer ext[4];
    assert_int_equal(read_all(&l, ext, 4), 1);
    str_is(ext[0].name, "permessage-deflate");
    assert_int_equal(ext[0].num_params, 1);
    param_is(&ext[0].params[0], "client_max_window_bits", NULL);
    assert_false(ext[0].params[0].quoted);
    lines_free(&l);
}

static void several_offers_in_one_header(void **state)
{
    struct kz_ext_offer ext[4];
    assert_int_equal(read_value("permessage-deflate; client_max_window_bits=15; "
                                "server_no_context_takeover, permessage-deflate, x-webkit",
                                ext, 4),
                     3);
    str_is(ext[0].name, "permessage-deflate");
    assert_int_equal(ext[0].num_params, 2);
    param_is(&ext[0].params[0], "client_max_window_bits", "15");
    param_is(&ext[0].params[1], "server_no_context_takeover", NULL);
    str_is(ext[1].name, "permessage-deflate");
    assert_int_equal(ext[1].num_params, 0);
    str_is(ext[2].name, "x-webkit");
}

static void offers_over_several_headers(void **state)
{
    /* §9.1: "foo" and "bar; baz=2" on two lines equal "foo, bar; baz=2". */
    struct lines l = {0};
    add(&l, "Sec-WebSocket-Extensions", "foo");
    add(&l, "Host", "h");
    add(&l, "sec-websocket-extensions", "bar; baz=2");
    struct kz_ext_offer split[4], joined[4];
    assert_int_equal(read_all(&l, split, 4), 2);
    assert_int_equal(read_value("foo, bar; baz=2", joined, 4), 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(split[i].name.len, joined[i].name.len);
        assert_memory_equal(split[i].name.ptr, joined[i].name.ptr, split[i].name.len);
        assert_int_equal(split[i].num_params, joined[i].num_params);
    }
    param_is(&split[1].params[0], "baz", "2");
    lines_free(&l);

    /* The RFC's own example, unfolded. */
    assert_int_equal(read_value("mux; max-channels=4; flow-control, deflate-stream", split, 4), 2);
    str_is(split[0].name, "mux");
    param_is(&split[0].params[0], "max-channels", "4");
    param_is(&split[0].params[1], "flow-control", NULL);
    str_is(split[1].name, "deflate-stream");

    /* No header at all: no extension, no error. */
    add(&l, "Host", "h");
    assert_int_equal(read_all(&l, split, 4), 0);
    lines_free(&l);
}

static void white_space_and_empty_elements(void **state)
{
    struct kz_ext_offer ext[4];
    assert_int_equal(read_value("foo ; a = 1 ;b\t;\tc=\"x\" , bar", ext, 4), 2);
    assert_int_equal(ext[0].num_params, 3);
    param_is(&ext[0].params[0], "a", "1");
    param_is(&ext[0].params[1], "b", NULL);
    param_is(&ext[0].params[2], "c", "x");
    str_is(ext[1].name, "bar");

    /* 1#extension lets empty elements through, as long as one is there. */
    assert_int_equal(read_value(", foo", ext, 4), 1);
    assert_int_equal(read_value("foo ,", ext, 4), 1);
    assert_int_equal(read_value("foo,,bar", ext, 4), 2);
    assert_int_equal(read_value(" , foo , , bar , ", ext, 4), 2);
}

static void quoted_values(void **state)
{
    struct kz_ext_offer ext[2];
    assert_int_equal(read_value("foo; bar=\"baz\"; q=\"b\\az\"; e=\"\\1\\5\"", ext, 2), 1);
    assert_int_equal(ext[0].num_params, 3);
    assert_true(ext[0].params[0].quoted);
    str_is(ext[0].params[0].value, "baz");
    param_is(&ext[0].params[0], "bar", "baz");
    /* The raw value keeps the escapes; the copy drops them. */
    str_is(ext[0].params[1].value, "b\\az");
    param_is(&ext[0].params[1], "q", "baz");
    param_is(&ext[0].params[2], "e", "15");
    assert_int_equal(read_value("permessage-deflate; client_max_window_bits=\"10\"", ext, 2), 1);
    param_is(&ext[0].params[0], "client_max_window_bits", "10");
}

static void parameter_limit(void **state)
{
    struct kz_ext_offer ext[2];
    assert_int_equal(read_value("x; a; b; c; d; e; f; g; h", ext, 2), 1);
    assert_int_equal(ext[0].num_params, KZ_EXT_MAX_PARAMS);
    param_is(&ext[0].params[7], "h", NULL);
    assert_int_equal(read_value("x; a; b; c; d; e; f; g; h; i", ext, 2), KZ_ERR_HS_BAD_EXTENSIONS);
}

static void malformed_extensions(void **state)
{
    static const char *const cases[] = {
        /* no element at all */
        "",
        ",",
        " , ,\t",
        /* a missing token */
        ";foo",
        "foo;",
        "foo; ",
        "foo;;bar",
        "foo; =1",
        "\"foo\"",
        "foo, \"bar\"",
        "foo, ;a",
        /* "=" without a value */
        "foo; a=",
        "foo; a= ",
        "foo; a=;b",
        "foo; a=, bar",
        "foo=1",
        /* bad quoted strings */
        "foo; a=\"",
        "foo; a=\"b",
        "foo; a=\"b\\\"",
        "foo; a=\"\"",
        "foo; a=\"b\"c",
        "foo; a=\"b\" c",
        /* quoted values that are not tokens once unescaped */
        "foo; a=\"b c\"",
        "foo; a=\"b,c\"",
        "foo; a=\"b;c\"",
        "foo; a=\"\\ \"",
        "foo; a=\"b\\\"c\"",
        "foo; a=\"caf\xc3\xa9\"",
        /* other separators where a token or a comma belongs */
        "foo bar",
        "foo; a b",
        "foo; a=b c",
        "foo; a==b",
        "foo; a=b=c",
        "foo/bar",
        "f\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kz_ext_offer ext[4];
        int r = read_value(cases[i], ext, 4);
        if (r != KZ_ERR_HS_BAD_EXTENSIONS)
            fail_msg("case %zu (%s): %d", i, cases[i], r);
    }
}

static void malformed_second_header(void **state)
{
    /* The first offer is read; the empty line after it is an error. */
    struct lines l = {0};
    add(&l, "Sec-WebSocket-Extensions", "foo");
    add(&l, "Sec-WebSocket-Extensions", "");
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    assert_int_equal(kz_hs_next_extension(l.h, l.n, &it, &ext), 1);
    str_is(ext.name, "foo");
    assert_int_equal(kz_hs_next_extension(l.h, l.n, &it, &ext), KZ_ERR_HS_BAD_EXTENSIONS);
    /* It stays an error. */
    assert_int_equal(kz_hs_next_extension(l.h, l.n, &it, &ext), KZ_ERR_HS_BAD_EXTENSIONS);
    lines_free(&l);
}

static void param_value_copies(void **state)
{
    struct kz_ext_offer ext[1];
    assert_int_equal(read_value("x; plain=abc; q=\"a\\bc\"; bare", ext, 1), 1);
    const struct kz_ext_param *plain = &ext[0].params[0];
    const struct kz_ext_param *quoted = &ext[0].params[1];
    const struct kz_ext_param *bare = &ext[0].params[2];
    char buf[8];

    /* Exactly enough room: the value and its NUL. */
    assert_int_equal(kz_ext_param_value(plain, buf, 4), 3);
    assert_string_equal(buf, "abc");
    assert_int_equal(kz_ext_param_value(quoted, buf, 4), 3);
    assert_string_equal(buf, "abc");

    /* One byte short: refused, and the buffer is not touched. */
    memset(buf, '#', sizeof(buf));
    assert_int_equal(kz_ext_param_value(plain, buf, 3), KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(kz_ext_param_value(quoted, buf, 3), KZ_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(buf[0], '#');
    assert_int_equal(kz_ext_param_value(plain, NULL, 0), KZ_ERR_BUFFER_TOO_SMALL);

    /* A parameter without a value copies as "". */
    assert_int_equal(kz_ext_param_value(bare, buf, 1), 0);
    assert_string_equal(buf, "");
    assert_int_equal(kz_ext_param_value(bare, NULL, 0), KZ_ERR_BUFFER_TOO_SMALL);

    assert_int_equal(kz_ext_param_value(NULL, buf, 8), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_ext_param_value(plain, NULL, 8), KZ_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_lookup),
        cmocka_unit_test(list_over_several_lines),
        cmocka_unit_test(list_has),
        cmocka_unit_test(chromium_offer),
        cmocka_unit_test(several_offers_in_one_header),
        cmocka_unit_test(offers_over_several_headers),
        cmocka_unit_test(white_space_and_empty_elements),
        cmocka_unit_test(quoted_values),
        cmocka_unit_test(parameter_limit),
        cmocka_unit_test(malformed_extensions),
        cmocka_unit_test(malformed_second_header),
        cmocka_unit_test(param_value_copies),
    };
    return cmocka_run_group_tests(tests, NULL, free_last_value);
}
