/* Close codes (RFC 6455 §7.4) and close-frame payload parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/frame.h"
#include "helpers.h"

/* The registry, written as a list rather than as the ranges close.c tests. */
static bool in_registry(uint32_t c)
{
    static const uint32_t defined[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                       1009, 1010, 1011, 1012, 1013, 1014};
    for (size_t i = 0; i < sizeof(defined) / sizeof(defined[0]); i++)
        if (defined[i] == c)
            return true;
    return c / 1000 == 3 || c / 1000 == 4; /* libraries and applications */
}

static void code_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint32_t code;
        bool valid;
    } cases[] = {
        {0, false},          {999, false},
        {1000, true},        {1001, true},
        {1002, true},        {1003, true},
        {1004, false},       {1005, false},
        {1006, false},       {1007, true},
        {1011, true},        {1014, true},
        {1015, false},       {1016, false},
        {2000, false},       {2999, false},
        {3000, true},        {3999, true},
        {4000, true},        {4999, true},
        {5000, false},       {65535, false},
        {65536, false},      {65536 + 1000, false},
        {UINT32_MAX, false}, {0x10000u + 3000u, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (kz_close_code_valid(cases[i].code) != cases[i].valid)
            fail_msg("code %u: expected %s", (unsigned)cases[i].code,
                     cases[i].valid ? "valid" : "invalid");
    }
}

static void every_code_matches_the_registry(void **state)
{
    (void)state;
    for (uint32_t c = 0; c < 70000; c++)
        if (kz_close_code_valid(c) != in_registry(c))
            fail_msg("code %u disagrees with the registry", (unsigned)c);
}

static void parse_empty_payload(void **state)
{
    (void)state;
    uint8_t *buf = kzt_guard_copy("", 0);
    uint16_t code = 0;
    struct kz_str reason = {NULL, 99};
    assert_int_equal(kz_close_parse(buf, 0, &code, &reason), KZ_OK);
    assert_int_equal(code, 1005);
    assert_non_null(reason.ptr);
    assert_int_equal(reason.len, 0);
    kzt_guard_free(buf, 0);
}

static void parse_one_byte_payload(void **state)
{
    (void)state;
    uint8_t *buf = kzt_guard_copy("\x03", 1);
    uint16_t code = 0;
    struct kz_str reason;
    int rc = kz_close_parse(buf, 1, &code, &reason);
    assert_int_equal(rc, KZ_ERR_PROTO_CLOSE_PAYLOAD);
    assert_int_equal(kz_err_close_code(rc), 1002);
    kzt_guard_free(buf, 1);
}

static void parse_code_only(void **state)
{
    (void)state;
    uint8_t *buf = kzt_guard_copy("\x03\xe8", 2);
    uint16_t code = 0;
    struct kz_str reason = {NULL, 99};
    assert_int_equal(kz_close_parse(buf, 2, &code, &reason), KZ_OK);
    assert_int_equal(code, 1000);
    assert_int_equal(reason.len, 0);
    kzt_guard_free(buf, 2);
}

static void parse_code_and_reason(void **state)
{
    (void)state;
    const char wire[] = "\x0f\xa0going \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    size_t len = sizeof(wire) - 1;
    uint8_t *buf = kzt_guard_copy(wire, len);
    uint16_t code = 0;
    struct kz_str reason;
    assert_int_equal(kz_close_parse(buf, len, &code, &reason), KZ_OK);
    assert_int_equal(code, 4000);
    /* The reason is borrowed from the payload, not copied. */
    assert_ptr_equal(reason.ptr, (const char *)buf + 2);
    assert_int_equal(reason.len, len - 2);
    assert_memory_equal(reason.ptr, wire + 2, len - 2);
    kzt_guard_free(buf, len);
}

static void parse_longest_reason(void **state)
{
    (void)state;
    uint8_t wire[KZ_CONTROL_PAYLOAD_MAX];
    wire[0] = 0x03;
    wire[1] = 0xe9;
    memset(wire + 2, 'r', sizeof(wire) - 2);
    uint8_t *buf = kzt_guard_copy(wire, sizeof(wire));
    uint16_t code = 0;
    struct kz_str reason;
    assert_int_equal(kz_close_parse(buf, sizeof(wire), &code, &reason), KZ_OK);
    assert_int_equal(code, 1001);
    assert_int_equal(reason.len, KZ_CLOSE_REASON_MAX);
    kzt_guard_free(buf, sizeof(wire));
}

static void parse_invalid_codes(void **state)
{
    (void)state;
    static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t wire[4] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i], 'o', 'k'};
        for (size_t len = 2; len <= 4; len += 2) {
            uint8_t *buf = kzt_guard_copy(wire, len);
            uint16_t code = 0;
            struct kz_str reason;
            int rc = kz_close_parse(buf, len, &code, &reason);
            if (rc != KZ_ERR_PROTO_CLOSE_CODE)
                fail_msg("code %u len %zu: got %d", bad[i], len, rc);
            assert_int_equal(kz_err_close_code(rc), 1002);
            kzt_guard_free(buf, len);
        }
    }
}

static void parse_invalid_reason(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x03\xe8\xff", 3},             /* never valid */
        {"\x03\xe8ok\xc0\xaf", 6},       /* overlong '/' */
        {"\x03\xe8\xed\xa0\x80", 5},     /* surrogate */
        {"\x03\xe8\xce", 3},             /* ends inside a code point */
        {"\x03\xe8\xf4\x90\x80\x80", 6}, /* above U+10FFFF */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *buf = kzt_guard_copy(bad[i].bytes, bad[i].len);
        uint16_t code = 0;
        struct kz_str reason;
        int rc = kz_close_parse(buf, bad[i].len, &code, &reason);
        if (rc != KZ_ERR_INVALID_UTF8)
            fail_msg("case %zu: got %d", i, rc);
        assert_int_equal(kz_err_close_code(rc), 1007);
        kzt_guard_free(buf, bad[i].len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(code_boundaries),      cmocka_unit_test(every_code_matches_the_registry),
        cmocka_unit_test(parse_empty_payload),  cmocka_unit_test(parse_one_byte_payload),
        cmocka_unit_test(parse_code_only),      cmocka_unit_test(parse_code_and_reason),
        cmocka_unit_test(parse_longest_reason), cmocka_unit_test(parse_invalid_codes),
        cmocka_unit_test(parse_invalid_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
