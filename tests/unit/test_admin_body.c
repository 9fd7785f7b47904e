/*
 * Unit tests of the Admin API body decoder (controlplane/admin_body.c):
 * JSON with its depth bound, form-urlencoded keys (dotted, [], [n],
 * repeated), multipart/form-data, percent-decoding and schema-driven type
 * inference.
 */
#include "admin_body.h"
#include "admin_int.h"
#include "entities.h"
#include "util-t.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static json_t *parse(const char *ctype, const char *body, int want_rc, sl_body_kind_t want_kind)
{
    json_t *out = NULL;
    sl_body_kind_t kind = SL_BODY_EMPTY;
    char err[256] = "";
    int rc = sl_admin_body_parse(ctype, body, strlen(body), &out, &kind, err, sizeof(err));
    assert_int_equal(rc, want_rc);
    if (rc == SL_OK)
        assert_int_equal(kind, want_kind);
    else
        assert_null(out);
    return out;
}

static void assert_json(const json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "got:  %s\nwant: %s\n", g, want_text);
        free(g);
        fail();
    }
    json_decref(want);
}

static void test_json(void **state)
{
    (void)state;
    json_t *o =
        parse("application/json; charset=utf-8", "{\"a\":[1,{\"b\":null}]}", SL_OK, SL_BODY_JSON);
    assert_json(o, "{\"a\":[1,{\"b\":null}]}");
    json_decref(o);
    o = parse(NULL, "{\"x\":1}", SL_OK, SL_BODY_UNKNOWN);
    json_decref(o);
    o = parse(NULL, "", SL_OK, SL_BODY_EMPTY);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
    o = parse("application/x-www-form-urlencoded", "", SL_OK, SL_BODY_EMPTY);
    json_decref(o);
    parse("application/json", "", SL_ERR_INVALID, SL_BODY_JSON);
    const char *bad[] = {"{", "{\"a\":}", "nul", "{\"a\":1}}", "\xff"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse("application/json", bad[i], SL_ERR_INVALID, SL_BODY_JSON);
}

static void test_json_depth(void **state)
{
    (void)state;
    char buf[512];
    size_t n = 0;
    for (int i = 0; i < SL_ADMIN_JSON_MAX_DEPTH; i++)
        buf[n++] = '[';
    for (int i = 0; i < SL_ADMIN_JSON_MAX_DEPTH; i++)
        buf[n++] = ']';
    buf[n] = '\0';
    json_t *o = parse("application/json", buf, SL_OK, SL_BODY_JSON);
    json_decref(o);
    memmove(buf + 1, buf, n + 1);
    buf[0] = '[';
    strcat(buf, "]");
    parse("application/json", buf, SL_ERR_INVALID, SL_BODY_JSON);
}

static void test_form_keys(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *want;
    } cases[] = {
        {"a=1&b=x+y", "{\"a\":\"1\",\"b\":\"x y\"}"},
        {"config.minute=5&config.policy=local",
         "{\"config\":{\"minute\":\"5\",\"policy\":\"local\"}}"},
        {"paths[]=/a&paths[]=/b", "{\"paths\":[\"/a\",\"/b\"]}"},
        {"paths=/a&paths=/b&paths=/c", "{\"paths\":[\"/a\",\"/b\",\"/c\"]}"},
        {"paths[2]=/b&paths[1]=/a", "{\"paths\":[\"/a\",\"/b\"]}"},
        {"service.id=abc", "{\"service\":{\"id\":\"abc\"}}"},
        {"a.b.c=1&a.b.d=2", "{\"a\":{\"b\":{\"c\":\"1\",\"d\":\"2\"}}}"},
        {"k%5B%5D=%2Fx&k%5B%5D=y", "{\"k\":[\"/x\",\"y\"]}"},
        {"empty=&flag", "{\"empty\":\"\",\"flag\":\"\"}"},
        {"headers.x-a[]=1&headers.x-a[]=2", "{\"headers\":{\"x-a\":[\"1\",\"2\"]}}"},
        {"arr[1].name=a&arr[2].name=b", "{\"arr\":[{\"name\":\"a\"},{\"name\":\"b\"}]}"},
        {"&&a=1&", "{\"a\":\"1\"}"},
        {"pct=%zz%41", "{\"pct\":\"%zzA\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = parse("application/x-www-form-urlencoded", cases[i].body, SL_OK, SL_BODY_FORM);
        assert_json(o, cases[i].want);
        json_decref(o);
    }
}

static void test_form_conflicts(void **state)
{
    (void)state;
    const char *bad[] = {"a=1&a.b=2", "a.b=1&a=2", "a[x]=1", "=1", "a..b=1", "a[99999]=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse("application/x-www-form-urlencoded", bad[i], SL_ERR_INVALID, SL_BODY_FORM);
}

/* Percent-decoding yields arbitrary bytes. A key or value that is not UTF-8
 * used to make jansson free the container it was given while the decoder went
 * on using it (a use after free, then an endless loop for "key[1]=" forms);
 * the same decoder reads query strings. Found by tests/fuzz/fuzz_admin_body.c. */
static void test_form_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "%FF[1]=x",  "name%C3[2]=*",     "%FF=x",    "a=%FF",         "a[]=%C3",
        "a.%FF.b=1", "a[1].%ED%A0%80=1", "%C0%AF=1", "ok=1&%F5%80=2", "a=%F4%90%80%80",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *o = parse("application/x-www-form-urlencoded", bodies[i], SL_ERR_INVALID, 0);
        assert_null(o);
        json_t *q = json_object();
        assert_int_equal(sl_admin_form_urlencoded(bodies[i], strlen(bodies[i]), q), SL_ERR_INVALID);
        json_decref(q);
    }
    /* multipart: the field name and the value */
    const char *mp = "--B\r\nContent-Disposition: form-data; name=\"n\xff[1]\"\r\n\r\nv\r\n--B--";
    assert_null(parse("multipart/form-data; boundary=B", mp, SL_ERR_INVALID, 0));
    mp = "--B\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n\xc3\r\n--B--";
    assert_null(parse("multipart/form-data; boundary=B", mp, SL_ERR_INVALID, 0));
    /* valid UTF-8, encoded or raw, still decodes */
    json_t *o = parse("application/x-www-form-urlencoded", "n%C3%A9[1]=%E2%82%AC&t=\xc3\xa9", SL_OK,
                      SL_BODY_FORM);
    assert_json(o, "{\"n\u00e9\":[\"\u20ac\"],\"t\":\"\u00e9\"}");
    json_decref(o);
}

static void test_multipart(void **state)
{
    (void)state;
    const char *body = "--B0\r\n"
                       "Content-Disposition: form-data; name=\"name\"\r\n\r\n"
                       "svc\r\n"
                       "--B0\r\n"
                       "Content-Disposition: form-data; name=\"tags[]\"\r\n\r\n"
                       "a\r\n"
                       "--B0\r\n"
                       "Content-Disposition: form-data; name=\"cert\"; filename=\"c.pem\"\r\n"
                       "Content-Type: application/x-pem-file\r\n\r\n"
                       "-----BEGIN X-----\r\nabc\r\n-----END X-----\r\n"
                       "--B0--\r\n";
    json_t *o = parse("multipart/form-data; boundary=B0", body, SL_OK, SL_BODY_FORM);
    assert_json(o, "{\"name\":\"svc\",\"tags\":[\"a\"],"
                   "\"cert\":\"-----BEGIN X-----\\r\\nabc\\r\\n-----END X-----\"}");
    json_decref(o);
    o = parse("multipart/form-data; boundary=\"B0\"", body, SL_OK, SL_BODY_FORM);
    json_decref(o);
    parse("multipart/form-data", body, SL_ERR_INVALID, SL_BODY_FORM);
    parse("multipart/form-data; boundary=B0", "--B0\r\nContent-Disposition: form-data\r\n",
          SL_ERR_INVALID, SL_BODY_FORM);
    parse("multipart/form-data; boundary=ZZ", body, SL_ERR_INVALID, SL_BODY_FORM);
}

static void test_other_kinds(void **state)
{
    (void)state;
    json_t *o = parse("application/yaml", "a: 1\n", SL_OK, SL_BODY_YAML);
    assert_json(o, "{\"config\":\"a: 1\\n\"}");
    json_decref(o);
    o = parse("text/plain", "hello", SL_OK, SL_BODY_UNKNOWN);
    json_decref(o);
}

static void test_infer(void **state)
{
    (void)state;
    const sl_schema_t *routes = sl_entity_schema("routes");
    const sl_schema_t *services = sl_entity_schema("services");
    const sl_schema_t *upstreams = sl_entity_schema("upstreams");
    const sl_schema_t *plugins = sl_entity_schema("plugins");
    json_t *o = json_loads("{\"port\":\"8080\",\"enabled\":\"false\",\"retries\":\"x\","
                           "\"tls_verify\":\"1\",\"path\":\"\",\"host\":\"h\"}",
                           0, NULL);
    sl_admin_body_infer(services->fields, NULL, o);
    assert_json(o, "{\"port\":8080,\"enabled\":false,\"retries\":\"x\",\"tls_verify\":\"1\","
                   "\"path\":\"\",\"host\":\"h\"}");
    json_decref(o);

    o = json_loads("{\"paths\":\"/a\",\"methods\":[\"GET\"],\"regex_priority\":\"-3\","
                   "\"headers\":{\"x\":\"1\"},\"unknown\":\"\"}",
                   0, NULL);
    sl_admin_body_infer(routes->fields, NULL, o);
    assert_json(o, "{\"paths\":[\"/a\"],\"methods\":[\"GET\"],\"regex_priority\":-3,"
                   "\"headers\":{\"x\":[\"1\"]},\"unknown\":null}");
    json_decref(o);

    o = json_loads("{\"healthchecks\":{\"active\":{\"timeout\":\"2.5\",\"healthy\":"
                   "{\"http_statuses\":[\"200\",\"302\"]}}}}",
                   0, NULL);
    sl_admin_body_infer(upstreams->fields, NULL, o);
    assert_json(o, "{\"healthchecks\":{\"active\":{\"timeout\":2.5,\"healthy\":"
                   "{\"http_statuses\":[200,302]}}}}");
    json_decref(o);

    /* plugin config has no schema yet: numbers and booleans are guessed */
    o = json_loads("{\"config\":{\"minute\":\"5\",\"on\":\"true\",\"s\":\"abc\","
                   "\"l\":[\"1\",\"x\"]}}",
                   0, NULL);
    sl_admin_body_infer(plugins->fields, NULL, o);
    assert_json(o, "{\"config\":{\"minute\":5,\"on\":true,\"s\":\"abc\",\"l\":[1,\"x\"]}}");
    json_decref(o);
}

static void test_kong_messages(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *want;
    } pretty[] = {
        {"{\"name\":\"x\"}", "{name=\"x\"}"},
        {"{\"b\":1,\"a\":{\"id\":\"u\"},\"c\":null}", "{a={id=\"u\"},b=1,c=null}"},
        {"{\"@referenced_by\":\"routes\",\"end\":true}",
         "{[\"@referenced_by\"]=\"routes\",[\"end\"]=true}"},
        {"[\"a\",[1,2.5]]", "{\"a\",{1,2.5}}"},
        {"{\"q\":\"say \\\"hi\\\"\"}", "{q=\"say \\\"hi\\\"\"}"},
    };
    for (size_t i = 0; i < sizeof(pretty) / sizeof(pretty[0]); i++) {
        json_t *v = json_loads(pretty[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        char *got = sl_admin_lua_pretty(v);
        assert_string_equal(got, pretty[i].want);
        free(got);
        json_decref(v);
    }
    static const struct {
        const char *fields;
        const char *want;
    } msgs[] = {
        {"{\"host\":\"required field missing\"}",
         "schema violation (host: required field missing)"},
        {"{\"port\":\"p\",\"host\":\"h\"}", "2 schema violations (host: h; port: p)"},
        {"{\"@entity\":[\"e1\",\"e2\"],\"a\":\"x\"}", "3 schema violations (e1; e2; a: x)"},
        {"{\"paths\":[null,\"bad\"]}", "schema violation (paths.2: bad)"},
        {"{\"config\":{\"minute\":\"m\",\"hour\":{\"x\":\"y\"}}}",
         "2 schema violations (config.hour: {x=\"y\"}; config.minute: m)"},
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        json_t *v = json_loads(msgs[i].fields, 0, NULL);
        assert_non_null(v);
        char *got = sl_admin_schema_message(v);
        assert_string_equal(got, msgs[i].want);
        free(got);
        json_decref(v);
    }
}

static void test_b64(void **state)
{
    (void)state;
    const char *id = "0b6a4c2e-0000-4000-8000-00000000abcd";
    char *tok = sl_admin_b64(id, strlen(id));
    size_t n = 0;
    char *back = sl_admin_unb64(tok, &n);
    assert_int_equal(n, strlen(id));
    assert_string_equal(back, id);
    free(back);
    free(tok);
    assert_null(sl_admin_unb64("abc", &n));
    assert_null(sl_admin_unb64("", &n));
    assert_null(sl_admin_unb64("!!!!", &n));
}

static void test_url_decode(void **state)
{
    (void)state;
    char *s = sl_admin_url_decode("a%20b+c%2", 9, true);
    assert_string_equal(s, "a b c%2");
    free(s);
    s = sl_admin_url_decode("a+b%2f", 6, false);
    assert_string_equal(s, "a+b/");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_form_keys),
        cmocka_unit_test(test_form_conflicts),
        cmocka_unit_test(test_form_invalid_utf8),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_other_kinds),
        cmocka_unit_test(test_infer),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_kong_messages),
        cmocka_unit_test(test_b64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
