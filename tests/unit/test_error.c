/* Error names and the close code each error maps to. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/common.h"

static void every_code_has_a_name(void **state)
{
    for (int err = 0; err > -300; err--) {
        const char *s = kz_strerror(err);
        assert_non_null(s);
    }
    assert_string_equal(kz_strerror(12345), "unknown error");
    assert_string_not_equal(kz_strerror(KZ_ERR_PROTO_RSV), "unknown error");
    assert_string_not_equal(kz_strerror(KZ_ERR_HS_RESP_EXTENSION), "unknown error");
}

static void close_codes_for_errors(void **state)
{
    assert_int_equal(kz_err_close_code(KZ_ERR_PROTO_RSV), 1002);
    assert_int_equal(kz_err_close_code(KZ_ERR_PROTO_OPCODE), 1002);
    assert_int_equal(kz_err_close_code(KZ_ERR_PROTO_CLOSE_CODE), 1002);
    assert_int_equal(kz_err_close_code(KZ_ERR_PROTO_UNMASKED), 1002);
    assert_int_equal(kz_err_close_code(KZ_ERR_INVALID_UTF8), 1007);
    assert_int_equal(kz_err_close_code(KZ_ERR_FRAME_TOO_BIG), 1009);
    assert_int_equal(kz_err_close_code(KZ_ERR_MESSAGE_TOO_BIG), 1009);
    assert_int_equal(kz_err_close_code(KZ_ERR_NOMEM), 1011);
    assert_int_equal(kz_err_close_code(KZ_ERR_HS_METHOD), 0);
    assert_int_equal(kz_err_close_code(KZ_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_a_name),
        cmocka_unit_test(close_codes_for_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
