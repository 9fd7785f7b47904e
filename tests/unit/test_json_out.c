/*
 * Unit tests of the control plane's compact JSON writer
 * (controlplane/json_out.c): its output must equal jansson's
 * json_dumps(v, JSON_COMPACT) byte for byte, since stored entities written by
 * either are compared as bytes.
 */
#include "json_out.h"

#include "errors.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void same_as_jansson(json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t len = 0;
    char *got = sl_json_out_dup(v, &len);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(want);
    free(got);
}

static void test_documents(void **state)
{
    static const char *const docs[] = {
        "{}",
        "[]",
        "{\"a\":[],\"b\":{},\"c\":null,\"d\":true,\"e\":false}",
        "{\"z\":1,\"a\":2,\"m\":{\"y\":[1,2,{\"x\":\"\"}]}}",
        "[0,-1,9223372036854775807,-9223372036854775808]",
        "[0.0,-0.0,0.1,1.5,1e300,-1e-300,1e-7,123456789012345678.0,3.14159265358979,1e22,2.5e-5]",
        "[\"plain\",\"q\\\"uote\",\"back\\\\slash\",\"/slash\",\"\\b\\f\\n\\r\\t\"]",
        "[\"\\u0001\\u001f\\u007f\",\"caf\\u00e9\",\"\\u20ac\",\"\\ud83d\\ude00\",\"mixed "
        "\\u00e9\\n\"]",
        "{\"k\\\"ey\":\"v\",\"\\u00e9\":1,\"\\n\":2}",
        "{\"service\":{\"id\":\"9b2c3d4e-0000-4000-8000-000000000001\"},\"paths\":[\"/a\",\"/b\"],"
        "\"created_at\":1700000000,\"updated_at\":1700000000.5,\"tags\":null}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_error_t err;
        json_t *v = json_loads(docs[i], JSON_DECODE_ANY, &err);
        assert_non_null(v);
        same_as_jansson(v);
        json_decref(v);
    }
}

static void test_scalars_and_nul(void **state)
{
    json_t *v = json_stringn("a\0b", 3);
    same_as_jansson(v);
    json_decref(v);
    v = json_object();
    json_object_setn_new(v, "k\0x", 3, json_integer(1));
    same_as_jansson(v);
    json_decref(v);
    double reals[] = {1.0, 100.0, 1e16, 1e17, 123.456, 5e-324, 1.7976931348623157e308, -2.0};
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        v = json_real(reals[i]);
        same_as_jansson(v);
        json_decref(v);
    }
}

static void test_invalid(void **state)
{
    /* jansson refuses invalid UTF-8 when dumping; so do we */
    json_t *v = json_stringn_nocheck("\xc3(", 2);
    assert_null(sl_json_out_dup(v, NULL));
    assert_null(json_dumps(v, JSON_ENCODE_ANY));
    json_decref(v);
    v = json_stringn_nocheck("\xed\xa0\x80", 3); /* a surrogate */
    assert_null(sl_json_out_dup(v, NULL));
    json_decref(v);
    assert_null(sl_json_out_dup(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_scalars_and_nul),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
