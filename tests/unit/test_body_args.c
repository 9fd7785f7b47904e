/*
 * Unit tests of dataplane/plugins/body_args.c, the readers and writers of
 * request bodies and query strings as Kong's plugins see them: form and
 * query arguments (ngx.decode_args / encode_args), multipart/form-data
 * (lua-multipart's decoder and tostring), the Content-Type readings of
 * kong.request.get_body and request-transformer, and cjson-like JSON
 * writing. Table-driven; allocations go to a request arena built by hand.
 */
#include "plugins/body_args.h"
#include "proxy-t.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct fixture {
    sl_conn_t c;
    sl_req_t r;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->r.c = &f->c;
    sl_arena_init(&f->r.arena);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sl_arena_dispose(&f->r.arena);
    free(f);
    return 0;
}

#define P(f) ((sl_pdk_t *)&(f)->r)

static sl_str_t str(const char *s)
{
    return (sl_str_t){s, strlen(s)};
}

static void assert_str(sl_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

/* ---------------------------------------------------------------- form args */

/* Each argument as "name=v1|v2" ("name" alone for one flag, "!" marks a
 * flag among values), joined by spaces. */
static void describe(const sl_args_t *a, char *out, size_t n)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < a->n; i++) {
        const sl_arg_t *arg = &a->v[i];
        k +=
            (size_t)snprintf(out + k, n - k, "%s%.*s", i ? " " : "", (int)arg->name_len, arg->name);
        for (size_t j = 0; j < arg->nvals; j++) {
            const sl_arg_val_t *v = &arg->vals[j];
            if (v->flag && arg->nvals == 1)
                break;
            k += (size_t)snprintf(out + k, n - k, "%s%.*s", j ? "|" : "=",
                                  v->flag ? 1 : (int)v->len, v->flag ? "!" : v->p);
        }
    }
}

static void test_args_decode(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *raw, *want;
    } cases[] = {
        {"", ""},
        {"a=1", "a=1"},
        {"a=1&b=2&a=3", "a=1|3 b=2"},
        {"flag&a=", "flag a="},
        {"a+b=c+d&%41%42=%zz%4", "a b=c d AB=zz"},
        {"=x&&b=1&", "b=1"},
        {"a=b=c", "a=b=c"},
        {"a&a=1", "a=!|1"},
        {"%=1&a%2=2", "a=2"}, /* an unfinished escape is dropped */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_args_t a;
        char got[256];
        sl_args_decode(P(f), str(cases[i].raw), &a);
        describe(&a, got, sizeof(got));
        assert_string_equal(got, cases[i].want);
    }
}

static void test_args_decode_bound(void **state)
{
    struct fixture *f = *state;
    char raw[2000];
    size_t k = 0;
    for (int i = 0; i < 150; i++)
        k += (size_t)snprintf(raw + k, sizeof(raw) - k, "%sk%d=v", i ? "&" : "", i);
    sl_args_t a;
    sl_args_decode(P(f), (sl_str_t){raw, k}, &a);
    assert_int_equal(a.n, SL_ARGS_MAX);
    assert_non_null(sl_args_find(&a, "k99", 3));
    assert_null(sl_args_find(&a, "k100", 4));
}

static void test_args_encode(void **state)
{
    struct fixture *f = *state;
    sl_args_t a;
    sl_args_decode(P(f), str("z=1&flag&a=x+y%2F~&a=2&e="), &a);
    size_t n;
    assert_string_equal(sl_args_encode(P(f), &a, false, &n), "z=1&flag&a=x%20y%2F~&a=2&e=");
    assert_int_equal(n, strlen("z=1&flag&a=x%20y%2F~&a=2&e="));
    assert_string_equal(sl_args_encode(P(f), &a, true, NULL), "a=x%20y%2F~&a=2&e=&flag&z=1");
    sl_args_remove(&a, sl_args_find(&a, "a", 1));
    sl_arg_push(P(f), sl_args_add(P(f), &a, "n", 1), (sl_arg_val_t){"v", 1, false});
    assert_string_equal(sl_args_encode(P(f), &a, false, NULL), "z=1&flag&e=&n=v");
    sl_args_decode(P(f), str(""), &a);
    assert_string_equal(sl_args_encode(P(f), &a, true, NULL), "");
}

/* ---------------------------------------------------------------- multipart */

static void test_multipart_boundary(void **state)
{
    (void)state;
    static const struct {
        const char *ct, *want; /* NULL: none */
    } cases[] = {
        {"multipart/form-data; boundary=abc", "abc"},
        {"multipart/form-data;boundary=abc", "abc"},
        {"multipart/form-data; boundary=\"a b\"", "\"a"}, /* %S+ stops at the space */
        {"multipart/form-data; boundary=\"abc\"", "abc"},
        {"multipart/form-data; boundary='abc'", "abc"},
        {"multipart/form-data; boundary=abc; charset=x", "abc;"},
        {"multipart/form-data; charset=x; boundary=q", "q"},
        {"multipart/form-data; Boundary=abc", NULL},
        {"multipart/form-data, boundary=abc", NULL},
        {"multipart/form-data; boundary=", NULL},
        {"multipart/form-data; boundary=\"\"", NULL},
        {"multipart/form-data", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_str_t b = {NULL, 0};
        bool ok = sl_multipart_boundary(str(cases[i].ct), &b);
        if (!cases[i].want) {
            if (ok)
                fail_msg("%s: boundary '%.*s', want none", cases[i].ct, (int)b.len, b.p);
            continue;
        }
        assert_true(ok);
        assert_str(b, cases[i].want);
    }
}

/* Each part as name=value (headers counted in brackets), joined by spaces. */
static void describe_parts(const sl_multipart_t *m, char *out, size_t n)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < m->n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%.*s[%zu]=%.*s", i ? " " : "",
                              (int)m->parts[i].name.len, m->parts[i].name.p, m->parts[i].nheaders,
                              (int)m->parts[i].value.len, m->parts[i].value.p);
}

static void test_multipart_decode(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"", ""},
        {"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
         "--B\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\ntwo\r\nlines\r\n--B--\r\n",
         "a[1]=1 b[1]=two\r\nlines"},
        /* a file: two header lines; the value keeps blank lines inside it */
        {"--B\r\ncontent-disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\n"
         "Content-Type: text/plain\r\n\r\n\r\nx\n\r\n--B--",
         "f[2]=\r\nx\n"},
        /* the last part without a closing boundary keeps everything */
        {"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nopen\r\n", "a[1]=open\r\n"},
        /* LF line ends: the value starts at the first line that is no header */
        {"--B\nContent-Disposition: form-data; name=\"a\"\n\nv\n--B--\n", "a[1]=v"},
        /* parts without a name, and a preamble, are dropped */
        {"preamble\r\n--B\r\nX-Other: 1\r\n\r\nnameless\r\n--B\r\n"
         "Content-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\n",
         "a[1]=1"},
        /* lua-multipart's reading of the name: quotes dropped by position, a
         * piece that looks like a header ignored */
        {"--B\r\nContent-Disposition: form-data; name=abc\r\n\r\n1\r\n--B--", "b[1]=1"},
        {"--B\r\nContent-Disposition: form-data; name=\"a:b\"\r\n\r\n1\r\n--B--", ""},
        {"--B\r\nContent-Disposition: form-data; NAME=\"a\"; filename=\"n\"\r\n\r\n1\r\n--B--",
         "a[1]=1"},
        /* a line that starts with --B is a boundary, whatever follows */
        {"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--Bxyz\r\n"
         "Content-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--B--",
         "a[1]=1 a[1]=2"},
        /* no value at all */
        {"--B\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--B--", "e[1]="},
        {"--B\r\nContent-Disposition: form-data; name=\"e\"\r\n--B--", "e[1]="},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sl_multipart_t m;
        char got[512];
        sl_multipart_decode(P(f), str(cases[i].body), SL_STR("B"), &m);
        describe_parts(&m, got, sizeof(got));
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, got, cases[i].want);
    }
    sl_multipart_t m;
    sl_multipart_decode(P(f), str("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1"),
                        (sl_str_t){NULL, 0}, &m);
    assert_int_equal(m.n, 0);
}

static void test_multipart_edit_and_encode(void **state)
{
    struct fixture *f = *state;
    sl_multipart_t m;
    sl_multipart_decode(
        P(f),
        str("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
            "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n"
            "Content-Type: text/plain\r\n\r\ndata\r\n"
            "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--B--\r\n"),
        SL_STR("B"), &m);
    assert_int_equal(sl_multipart_count(&m, "a", 1), 2);
    assert_str(sl_multipart_get(&m, "a", 1)->value, "1");
    sl_multipart_set_simple(P(f), &m, "a", 1, "one", 3); /* the first a, in place */
    sl_multipart_set_simple(P(f), &m, "new", 3, "n", 1); /* appended */
    size_t n;
    assert_string_equal(
        sl_multipart_encode(P(f), &m, &n),
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n"
        "Content-Type: text/plain\r\n\r\ndata\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"new\"\r\n\r\nn\r\n--B--\r\n");
    sl_multipart_delete(&m, "a", 1); /* every a */
    sl_multipart_delete(&m, "f", 1);
    assert_string_equal(
        sl_multipart_encode(P(f), &m, &n),
        "--B\r\nContent-Disposition: form-data; name=\"new\"\r\n\r\nn\r\n--B--\r\n");
    sl_multipart_delete(&m, "new", 3);
    assert_string_equal(sl_multipart_encode(P(f), &m, &n), "");
    assert_int_equal(n, 0);
}

/* ---------------------------------------------------------------- types, JSON */

static void test_body_types(void **state)
{
    (void)state;
    static const struct {
        const char *ct;
        sl_body_type_t strict, loose;
    } cases[] = {
        {"application/json", SL_BODY_JSON, SL_BODY_JSON},
        {"Application/JSON; charset=utf-8", SL_BODY_JSON, SL_BODY_JSON},
        {"application/json-patch+json", SL_BODY_JSON, SL_BODY_JSON},
        {"application/vnd.x+json", SL_BODY_OTHER, SL_BODY_OTHER},
        {"text/x; a=application/json", SL_BODY_OTHER, SL_BODY_JSON},
        {"application/x-www-form-urlencoded;charset=UTF-8", SL_BODY_FORM, SL_BODY_FORM},
        {"multipart/form-data; boundary=x", SL_BODY_MULTIPART, SL_BODY_MULTIPART},
        {"multipart/form-data; boundary=application/json", SL_BODY_MULTIPART, SL_BODY_JSON},
        {"multipart/mixed", SL_BODY_OTHER, SL_BODY_OTHER},
        {"text/plain", SL_BODY_OTHER, SL_BODY_OTHER},
        {"", SL_BODY_OTHER, SL_BODY_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(sl_body_type(str(cases[i].ct)), cases[i].strict);
        assert_int_equal(sl_body_type_loose(str(cases[i].ct)), cases[i].loose);
    }
}

static void test_json(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *in, *out; /* out NULL: not a body table */
    } cases[] = {
        {"{ \"a\" : \"x/y\", \"n\": 0.1, \"i\": 7, \"b\": [true, null] }",
         "{\"a\":\"x\\/y\",\"n\":0.1,\"i\":7,\"b\":[true,null]}"},
        {"[1, 2.5]", "[1,2.5]"},
        {"{\"big\": 123456789012345678901234}", "{\"big\":1.2345678901235e23}"},
        {"{\"s\": \"a\\u0000b\"}", "{\"s\":\"a\\u0000b\"}"},
        {"\"scalar\"", NULL},
        {"12", NULL},
        {"null", NULL},
        {"{\"open\": 1", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = sl_body_json_decode(str(cases[i].in));
        if (!cases[i].out) {
            assert_null(j);
            continue;
        }
        assert_non_null(j);
        size_t n;
        assert_string_equal(sl_body_json_encode(P(f), j, &n), cases[i].out);
        json_decref(j);
    }
}

static void test_lookup(void **state)
{
    struct fixture *f = *state;
    sl_body_t b = {.type = SL_BODY_FORM};
    sl_str_t v;
    sl_args_decode(P(f), str("k=v&dup=1&dup=2&flag&e="), &b.form);
    assert_int_equal(sl_body_lookup(&b, "k", &v), SL_BODY_STRING);
    assert_str(v, "v");
    assert_int_equal(sl_body_lookup(&b, "dup", &v), SL_BODY_TABLE);
    assert_int_equal(sl_body_lookup(&b, "flag", &v), SL_BODY_SCALAR);
    assert_int_equal(sl_body_lookup(&b, "e", &v), SL_BODY_STRING);
    assert_int_equal(sl_body_lookup(&b, "none", &v), SL_BODY_ABSENT);
    sl_body_remove(&b, "k");
    assert_int_equal(sl_body_lookup(&b, "k", &v), SL_BODY_ABSENT);

    sl_body_t j = {.type = SL_BODY_JSON};
    j.json = sl_body_json_decode(str("{\"s\":\"x\",\"o\":{},\"a\":[],\"n\":1,\"z\":null}"));
    assert_int_equal(sl_body_lookup(&j, "s", &v), SL_BODY_STRING);
    assert_str(v, "x");
    assert_int_equal(sl_body_lookup(&j, "o", &v), SL_BODY_TABLE);
    assert_int_equal(sl_body_lookup(&j, "a", &v), SL_BODY_TABLE);
    assert_int_equal(sl_body_lookup(&j, "n", &v), SL_BODY_SCALAR);
    assert_int_equal(sl_body_lookup(&j, "z", &v), SL_BODY_SCALAR);
    assert_int_equal(sl_body_lookup(&j, "none", &v), SL_BODY_ABSENT);
    sl_body_dispose(&j);
    assert_null(j.json);

    sl_body_t m = {.type = SL_BODY_MULTIPART};
    sl_multipart_decode(P(f),
                        str("--B\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv\r\n"
                            "--B\r\nContent-Disposition: form-data; name=\"d\"\r\n\r\n1\r\n"
                            "--B\r\nContent-Disposition: form-data; name=\"d\"\r\n\r\n2\r\n--B--"),
                        SL_STR("B"), &m.mp);
    assert_int_equal(sl_body_lookup(&m, "k", &v), SL_BODY_STRING);
    assert_str(v, "v");
    assert_int_equal(sl_body_lookup(&m, "d", &v), SL_BODY_TABLE);
    sl_body_remove(&m, "d");
    assert_int_equal(sl_body_lookup(&m, "d", &v), SL_BODY_ABSENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_args_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_args_decode_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_args_encode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_edit_and_encode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
