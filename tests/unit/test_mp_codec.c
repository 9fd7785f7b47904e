/*
 * Unit tests of the MsgPack:1 wire layer (pluginserver-bridge/mp_codec.c):
 * the exact bytes of every request kind, worked out by hand from the
 * msgpack spec and cross-checked with msgpack-c's own unpacker; values
 * there and back between jansson and msgpack; raw bodies as bin; the
 * multi-map normalisation of section 5.4; the Step method table; the
 * streaming reader fed a byte at a time and in big chunks, with
 * notifications ahead of a response; hostile input (truncated messages,
 * huge declared lengths and counts, nesting bombs, wrong envelopes, ext
 * types, non-str map keys, NaN); the event-result helpers; and jansson
 * allocation failures while decoding.
 */
#include "mp_codec.h"

#include <math.h>
#include <msgpack.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bytes.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* msgpack-c's unpacker must read exactly one whole object from the bytes:
 * an independent check that what we pack is msgpack. */
static void assert_msgpack_c_reads(const void *p, size_t n)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, p, n, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, n);
    msgpack_unpacked_destroy(&u);
}

/* Packs a JSON text with sl_mp_value_put and checks the bytes. */
static void assert_put(const char *json_text, const char *hex)
{
    SB_DECL(out);
    json_t *v = jparse(json_text);
    sl_mp_err_t err;
    if (sl_mp_value_put(&out, v, NULL, &err) != SL_OK)
        fail_msg("value_put %s: %s", json_text, err.msg);
    assert_bytes(out.p, out.len, hex);
    assert_msgpack_c_reads(out.p, out.len);
    json_decref(v);
    sl_sb_dispose(&out);
}

/* Decodes hex bytes as one value and compares with a JSON text. */
static void assert_decode(const char *hex, const char *json_text)
{
    uint8_t b[1024];
    size_t n = unhex(hex, b, sizeof(b));
    json_t *v;
    size_t used;
    sl_mp_err_t err;
    if (sl_mp_value_decode(b, n, NULL, &v, &used, &err) != SL_OK)
        fail_msg("decode %s: %s", hex, err.msg);
    assert_int_equal(used, n);
    assert_json(v, json_text);
    json_decref(v);
}

/* Decodes hex bytes as one value and expects an error code whose message
 * contains `words`. */
static void assert_decode_fails(const char *hex, const sl_mp_limits_t *lim, int want,
                                const char *words)
{
    uint8_t b[1024];
    size_t n = unhex(hex, b, sizeof(b));
    json_t *v = NULL;
    size_t used = 12345;
    sl_mp_err_t err = {{0}};
    int rc = sl_mp_value_decode(b, n, lim, &v, &used, &err);
    if (rc != want)
        fail_msg("decode %s: rc %d, want %d (%s)", hex, rc, want, err.msg);
    assert_null(v);
    assert_int_equal(used, 12345);
    if (words && !strstr(err.msg, words))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, words);
}

#define MAX_MSGS 16

/* Feeds n bytes to r in pieces of `chunk` bytes, taking every message;
 * every call must return SL_OK or SL_AGAIN. Returns the messages taken. */
static size_t feed_chunks(sl_mp_reader_t *r, const uint8_t *p, size_t n, size_t chunk,
                          sl_mp_msg_t *msgs)
{
    size_t count = 0;
    for (size_t off = 0; off < n;) {
        size_t k = SL_MIN(chunk, n - off);
        const uint8_t *q = p + off;
        off += k;
        while (k > 0) {
            size_t used = 0;
            sl_mp_msg_t m;
            sl_mp_err_t err;
            int rc = sl_mp_reader_feed(r, q, k, &used, &m, &err);
            if (rc == SL_AGAIN) {
                assert_int_equal(used, k);
                break;
            }
            if (rc != SL_OK)
                fail_msg("feed: rc %d: %s", rc, err.msg);
            assert_true(used > 0 && used <= k);
            assert_true(count < MAX_MSGS);
            msgs[count++] = m;
            q += used;
            k -= used;
        }
    }
    return count;
}

/* Feeds hex bytes to a new reader in one piece and expects an error whose
 * message contains `words`; the reader keeps failing afterwards. */
static void assert_feed_fails(const char *hex, const sl_mp_limits_t *lim, int want,
                              const char *words)
{
    uint8_t b[1024];
    size_t n = unhex(hex, b, sizeof(b));
    sl_mp_reader_t *r = sl_mp_reader_new(lim);
    assert_non_null(r);
    size_t used = 777;
    sl_mp_msg_t m = {.kind = 0};
    sl_mp_err_t err = {{0}};
    int rc = sl_mp_reader_feed(r, b, n, &used, &m, &err);
    if (rc != want)
        fail_msg("feed %s: rc %d, want %d (%s)", hex, rc, want, err.msg);
    assert_int_equal(used, 777);
    assert_int_equal(m.kind, 0);
    if (words && !strstr(err.msg, words))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, words);
    /* Sticky: even good bytes now fail with the same message. */
    uint8_t ok[] = {0x93, 0x02, 0xa1, 'x', 0xc0};
    sl_mp_err_t err2 = {{0}};
    assert_int_equal(sl_mp_reader_feed(r, ok, sizeof(ok), &used, &m, &err2), want);
    assert_string_equal(err.msg, err2.msg);
    /* A reset makes the reader usable again. */
    sl_mp_reader_reset(r);
    assert_int_equal(sl_mp_reader_pending(r), 0);
    assert_int_equal(sl_mp_reader_feed(r, ok, sizeof(ok), &used, &m, &err2), SL_OK);
    assert_int_equal(m.kind, SL_MP_NOTIFICATION);
    sl_mp_msg_dispose(&m);
    sl_mp_reader_free(r);
}

/* ------------------------------------------------------------------------ */
/* Requests: exact bytes                                                     */

static void test_request_bytes(void **state)
{
    (void)state;
    SB_DECL(out);
    sl_mp_err_t err;

    /* [0, 1, "plugin.StartInstance", [{"Name": "hello", "Config": "{\"a\":1}"}]]:
     * fixarray 4, fixint 0, fixint 1, fixstr 20, fixarray 1, fixmap 2. */
    sl_mp_call_start_instance(&out, 1, "hello", "{\"a\":1}", 7);
    assert_bytes(out.p, out.len,
                 "94 00 01 b4 \"plugin.StartInstance\" 91 82 a4 \"Name\" a5 \"hello\" "
                 "a6 \"Config\" a7 7b 22 61 22 3a 31 7d"); /* {"a":1} */
    assert_msgpack_c_reads(out.p, out.len);

    /* [0, 2, "plugin.CloseInstance", [3]] */
    out.len = 0;
    sl_mp_call_close_instance(&out, 2, 3);
    assert_bytes(out.p, out.len, "94 00 02 b4 \"plugin.CloseInstance\" 91 03");

    /* msgid 300 is a uint16 (cd 01 2c); instance id 0 a fixint. */
    out.len = 0;
    sl_mp_call_handle_event(&out, 300, 0, "access");
    assert_bytes(out.p, out.len,
                 "94 00 cd 01 2c b2 \"plugin.HandleEvent\" 91 82 aa \"InstanceId\" 00 "
                 "a9 \"EventName\" a6 \"access\"");
    assert_msgpack_c_reads(out.p, out.len);

    /* msgid 70000 is a uint32; a large instance id a uint64. */
    out.len = 0;
    sl_mp_call_handle_event(&out, 70000, (int64_t)1 << 40, "log");
    assert_bytes(out.p, out.len,
                 "94 00 ce 00 01 11 70 b2 \"plugin.HandleEvent\" 91 82 aa \"InstanceId\" "
                 "cf 00 00 01 00 00 00 00 00 a9 \"EventName\" a3 \"log\"");

    /* A Step with every JSON type in Data: 1.5 is float64 3f f8 00.., -1
     * a negative fixint, null nil, true c3. */
    out.len = 0;
    json_t *d = jparse("{\"a\": [1, -1, 1.5, null, true, false, \"x\"]}");
    assert_int_equal(sl_mp_call_step(&out, 4, SL_MP_STEP, 7, d, NULL, &err), SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 04 ab \"plugin.Step\" 91 82 a7 \"EventId\" 07 a4 \"Data\" "
                 "81 a1 \"a\" 97 01 ff cb 3f f8 00 00 00 00 00 00 c0 c3 c2 a1 \"x\"");
    assert_msgpack_c_reads(out.p, out.len);
    json_decref(d);

    /* Data NULL is nil. */
    out.len = 0;
    assert_int_equal(sl_mp_call_step(&out, 5, SL_MP_STEP_CONSUMER, 8, NULL, NULL, &err), SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 05 b3 \"plugin.StepConsumer\" 91 82 a7 \"EventId\" 08 a4 \"Data\" c0");

    /* StepError carries the error text. */
    out.len = 0;
    sl_mp_call_step_error(&out, 6, 7, "boom", 4);
    assert_bytes(out.p, out.len,
                 "94 00 06 b0 \"plugin.StepError\" 91 82 a7 \"EventId\" 07 a4 \"Data\" "
                 "a4 \"boom\"");

    /* A raw body as bin 8, NUL and 0xff included. */
    out.len = 0;
    sl_mp_call_step_bin(&out, 7, 7, "\0\xff", 2);
    assert_bytes(out.p, out.len,
                 "94 00 07 ab \"plugin.Step\" 91 82 a7 \"EventId\" 07 a4 \"Data\" c4 02 00 ff");
    assert_msgpack_c_reads(out.p, out.len);

    /* An empty body is an empty bin, not nil. */
    out.len = 0;
    sl_mp_call_step_bin(&out, 7, 7, NULL, 0);
    assert_bytes(out.p, out.len,
                 "94 00 07 ab \"plugin.Step\" 91 82 a7 \"EventId\" 07 a4 \"Data\" c4 00");

    /* Any method with a JSON param. */
    out.len = 0;
    json_t *p = jparse("{}");
    assert_int_equal(sl_mp_call(&out, 9, "plugin.GetStatus", p, NULL, &err), SL_OK);
    assert_bytes(out.p, out.len, "94 00 09 b0 \"plugin.GetStatus\" 91 80");
    json_decref(p);

    /* Requests append: two in a row decode as two. */
    out.len = 0;
    sl_mp_call_close_instance(&out, 1, 1);
    size_t first = out.len;
    sl_mp_call_close_instance(&out, 2, 2);
    json_t *v;
    size_t used;
    assert_int_equal(sl_mp_value_decode(out.p, out.len, NULL, &v, &used, &err), SL_OK);
    assert_int_equal(used, first);
    assert_json(v, "[0, 1, \"plugin.CloseInstance\", [1]]");
    json_decref(v);
    assert_int_equal(sl_mp_value_decode(out.p + first, out.len - first, NULL, &v, &used, &err),
                     SL_OK);
    assert_json(v, "[0, 2, \"plugin.CloseInstance\", [2]]");
    json_decref(v);
    sl_sb_dispose(&out);
}

static void test_value_bytes(void **state)
{
    (void)state;
    /* Integers take the smallest encoding; positive ones are uints. */
    assert_put("0", "00");
    assert_put("127", "7f");
    assert_put("128", "cc 80");
    assert_put("255", "cc ff");
    assert_put("256", "cd 01 00");
    assert_put("65536", "ce 00 01 00 00");
    assert_put("4294967296", "cf 00 00 00 01 00 00 00 00");
    assert_put("9223372036854775807", "cf 7f ff ff ff ff ff ff ff");
    assert_put("-1", "ff");
    assert_put("-32", "e0");
    assert_put("-33", "d0 df");
    assert_put("-129", "d1 ff 7f");
    assert_put("-32769", "d2 ff ff 7f ff");
    assert_put("-2147483649", "d3 ff ff ff ff 7f ff ff ff");
    assert_put("-9223372036854775808", "d3 80 00 00 00 00 00 00 00");
    /* Reals are always float64, even integral ones. */
    assert_put("2.0", "cb 40 00 00 00 00 00 00 00");
    assert_put("-0.5", "cb bf e0 00 00 00 00 00 00");
    assert_put("null", "c0");
    assert_put("true", "c3");
    assert_put("false", "c2");
    assert_put("\"\"", "a0");
    assert_put("\"\\u00e9\"", "a2 c3 a9");
    assert_put("\"0123456789abcdef0123456789abcde\"", "bf \"0123456789abcdef0123456789abcde\"");
    assert_put("\"0123456789abcdef0123456789abcdef\"",
               "d9 20 \"0123456789abcdef0123456789abcdef\"");
    assert_put("[]", "90");
    assert_put("{}", "80");
    assert_put("[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]",
               "9f 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
    assert_put("[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]",
               "dc 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
    assert_put("{\"k\": {\"\": []}}", "81 a1 \"k\" 81 a0 90");

    /* A str of 256 bytes takes str 16; a bin of 256 bin 16. */
    char big[300];
    memset(big, 'z', sizeof(big));
    json_t *s = json_stringn(big, 256);
    SB_DECL(out);
    assert_int_equal(sl_mp_value_put(&out, s, NULL, NULL), SL_OK);
    assert_int_equal(out.len, 3 + 256);
    assert_bytes(out.p, 3, "da 01 00");
    out.len = 0;
    sl_mp_bin_put(&out, big, 256);
    assert_int_equal(out.len, 3 + 256);
    assert_bytes(out.p, 3, "c5 01 00");
    json_decref(s);
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* Steps: method table, multi-maps, raw bodies                               */

static void test_step_methods(void **state)
{
    (void)state;
    static const struct {
        const char *pdk;
        const char *step;
    } t[] = {
        {"kong.client.get_credential", "plugin.StepCredential"},
        {"kong.client.authenticate", "plugin.StepCredential"},
        {"kong.client.load_consumer", "plugin.StepConsumer"},
        {"kong.client.get_consumer", "plugin.StepConsumer"},
        {"kong.node.get_memory_stats", "plugin.StepMemoryStats"},
        {"kong.router.get_route", "plugin.StepRoute"},
        {"kong.router.get_service", "plugin.StepService"},
        {"kong.request.get_query", "plugin.StepMultiMap"},
        {"kong.request.get_headers", "plugin.StepMultiMap"},
        {"kong.response.get_headers", "plugin.StepMultiMap"},
        {"kong.service.response.get_headers", "plugin.StepMultiMap"},
        {"kong.request.get_header", "plugin.Step"},
        {"kong.request.get_raw_body", "plugin.Step"},
        {"kong.request.get_headersX", "plugin.Step"},
        {"kong.request.get_header", "plugin.Step"},
        {"", "plugin.Step"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(t); i++) {
        sl_mp_step_t s = sl_mp_step_for(t[i].pdk, strlen(t[i].pdk));
        assert_string_equal(sl_mp_step_name(s), t[i].step);
    }
    /* Length-bounded: a prefix of a known name is not that name. */
    assert_int_equal(sl_mp_step_for("kong.router.get_routeX", 21), SL_MP_STEP_ROUTE);
    assert_int_equal(sl_mp_step_for("kong.router.get_route", 20), SL_MP_STEP);
    assert_int_equal(sl_mp_step_for(NULL, 0), SL_MP_STEP);
    assert_string_equal(sl_mp_step_name(SL_MP_STEP_ERROR), "plugin.StepError");

    assert_true(sl_mp_pdk_raw_body("kong.request.get_raw_body", 25));
    assert_true(sl_mp_pdk_raw_body("kong.response.get_raw_body", 26));
    assert_true(sl_mp_pdk_raw_body("kong.service.response.get_raw_body", 34));
    assert_false(sl_mp_pdk_raw_body("kong.service.request.set_raw_body", 33));
    assert_false(sl_mp_pdk_raw_body("kong.request.get_raw_bod", 24));
}

static void assert_multimap(const char *in, const char *want)
{
    json_t *v = jparse(in), *o = NULL;
    char *before = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_int_equal(sl_mp_multimap(v, &o), SL_OK);
    assert_json(o, want);
    /* v is not changed. */
    char *after = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(o);
    json_decref(v);
}

static void test_multimap(void **state)
{
    (void)state;
    assert_multimap(
        "{\"accept\": \"*/*\", \"a\": true, \"x\": [\"1\", \"2\"], \"n\": 3, \"f\": false}",
        "{\"accept\": [\"*/*\"], \"a\": [], \"x\": [\"1\", \"2\"], \"n\": 3, "
        "\"f\": false}");
    assert_multimap("[]", "{}");
    assert_multimap("{}", "{}");
    assert_multimap("[1]", "[1]");
    assert_multimap("\"s\"", "\"s\"");
    assert_multimap("null", "null");

    /* The Step a get_headers result goes out as: normalised, StepMultiMap. */
    SB_DECL(out);
    sl_mp_err_t err;
    json_t *h = jparse("{\"accept\": \"*/*\", \"x\": [\"a\", \"b\"], \"flag\": true}");
    assert_int_equal(
        sl_mp_call_step_result(&out, 5, 7, "kong.request.get_headers", 24, h, NULL, &err), SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 05 b3 \"plugin.StepMultiMap\" 91 82 a7 \"EventId\" 07 a4 \"Data\" "
                 "83 a6 \"accept\" 91 a3 \"*/*\" a1 \"x\" 92 a1 \"a\" a1 \"b\" a4 \"flag\" 90");
    json_decref(h);

    /* An empty query is an empty map, not an empty array. */
    out.len = 0;
    json_t *e = jparse("[]");
    assert_int_equal(
        sl_mp_call_step_result(&out, 5, 7, "kong.request.get_query", 22, e, NULL, &err), SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 05 b3 \"plugin.StepMultiMap\" 91 82 a7 \"EventId\" 07 a4 \"Data\" 80");
    json_decref(e);

    /* A nil result still goes with StepMultiMap, as nil. */
    out.len = 0;
    assert_int_equal(
        sl_mp_call_step_result(&out, 5, 7, "kong.response.get_headers", 25, NULL, NULL, &err),
        SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 05 b3 \"plugin.StepMultiMap\" 91 82 a7 \"EventId\" 07 a4 \"Data\" c0");

    /* The same table under another method is sent as it is. */
    out.len = 0;
    h = jparse("{\"a\": \"1\"}");
    assert_int_equal(sl_mp_call_step_result(&out, 5, 7, "kong.ctx.shared.get", 19, h, NULL, &err),
                     SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 05 ab \"plugin.Step\" 91 82 a7 \"EventId\" 07 a4 \"Data\" 81 a1 \"a\" a1 "
                 "\"1\"");
    json_decref(h);

    /* An entity goes with its Step method. */
    out.len = 0;
    h = jparse("{\"id\": \"r\"}");
    assert_int_equal(sl_mp_call_step_result(&out, 5, 7, "kong.router.get_route", 21, h, NULL, &err),
                     SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 05 b0 \"plugin.StepRoute\" 91 82 a7 \"EventId\" 07 a4 \"Data\" 81 a2 "
                 "\"id\" a1 \"r\"");
    json_decref(h);
    sl_sb_dispose(&out);
}

static void test_raw_body(void **state)
{
    (void)state;
    SB_DECL(out);
    sl_mp_err_t err;
    /* Any bytes, from a jansson string made without the UTF-8 check. */
    json_t *b = json_stringn_nocheck("a\0\xfe", 3);
    assert_int_equal(
        sl_mp_call_step_result(&out, 6, 9, "kong.request.get_raw_body", 25, b, NULL, &err), SL_OK);
    assert_bytes(out.p, out.len,
                 "94 00 06 ab \"plugin.Step\" 91 82 a7 \"EventId\" 09 a4 \"Data\" c4 03 61 00 fe");
    out.len = 0;
    assert_int_equal(
        sl_mp_call_step_result(&out, 6, 9, "kong.service.response.get_raw_body", 34, b, NULL, &err),
        SL_OK);
    assert_bytes(out.p + out.len - 5, 5, "c4 03 61 00 fe");
    /* The same string from another method is a str. */
    out.len = 0;
    assert_int_equal(
        sl_mp_call_step_result(&out, 6, 9, "kong.request.get_header", 23, b, NULL, &err), SL_OK);
    assert_bytes(out.p + out.len - 4, 4, "a3 61 00 fe");
    json_decref(b);
    /* No body: nil. */
    out.len = 0;
    json_t *n = json_null();
    assert_int_equal(
        sl_mp_call_step_result(&out, 6, 9, "kong.response.get_raw_body", 26, n, NULL, &err), SL_OK);
    assert_bytes(out.p + out.len - 1, 1, "c0");

    /* A body there and back: bin decodes to a string of the exact bytes. */
    uint8_t body[1000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7);
    out.len = 0;
    sl_mp_call_step_bin(&out, 1, 2, body, sizeof(body));
    json_t *v;
    size_t used;
    assert_int_equal(sl_mp_value_decode(out.p, out.len, NULL, &v, &used, &err), SL_OK);
    assert_int_equal(used, out.len);
    json_t *data = json_object_get(json_array_get(json_array_get(v, 3), 0), "Data");
    assert_int_equal(json_string_length(data), sizeof(body));
    assert_memory_equal(json_string_value(data), body, sizeof(body));
    json_decref(v);
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* Values there and back                                                     */

static void test_round_trip(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "null",
        "true",
        "0",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "1.25",
        "-1e300",
        "\"\"",
        "\"h\\u00e9llo \\u2603\"",
        "[]",
        "{}",
        "[1, [2, [3, [4, []]]], {\"a\": {\"b\": null}}]",
        "{\"Name\": \"x\", \"Id\": 0, \"Config\": {\"list\": [], \"m\": {}}, \"StartTime\": 1.5}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        SB_DECL(out);
        json_t *v = jparse(cases[i]), *back;
        sl_mp_err_t err;
        size_t used;
        assert_int_equal(sl_mp_value_put(&out, v, NULL, &err), SL_OK);
        assert_msgpack_c_reads(out.p, out.len);
        assert_int_equal(sl_mp_value_decode(out.p, out.len, NULL, &back, &used, &err), SL_OK);
        assert_int_equal(used, out.len);
        if (!json_equal(v, back))
            fail_msg("round trip of %s differs", cases[i]);
        json_decref(back);
        json_decref(v);
        sl_sb_dispose(&out);
    }

    /* Keys and strings with NUL bytes (json_loads takes no NUL in keys). */
    json_t *nul = json_object();
    json_object_setn_new_nocheck(nul, "k\0y", 3, json_stringn("v\0v", 3));
    SB_DECL(nulb);
    json_t *back;
    size_t bused;
    assert_int_equal(sl_mp_value_put(&nulb, nul, NULL, NULL), SL_OK);
    assert_bytes(nulb.p, nulb.len, "81 a3 6b 00 79 a3 76 00 76");
    assert_int_equal(sl_mp_value_decode(nulb.p, nulb.len, NULL, &back, &bused, NULL), SL_OK);
    /* json_equal looks keys up as C strings: compare by hand. */
    void *it = json_object_iter(back);
    assert_non_null(it);
    assert_int_equal(json_object_iter_key_len(it), 3);
    assert_memory_equal(json_object_iter_key(it), "k\0y", 3);
    assert_int_equal(json_string_length(json_object_iter_value(it)), 3);
    assert_memory_equal(json_string_value(json_object_iter_value(it)), "v\0v", 3);
    assert_null(json_object_iter_next(back, it));
    json_decref(back);
    json_decref(nul);
    sl_sb_dispose(&nulb);

    /* What msgpack-c packs, we read: every type it has that we accept. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 10);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int8(&pk, -100);
    msgpack_pack_float(&pk, 0.25f);
    msgpack_pack_double(&pk, 3.5);
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "\xff\x00", 2);
    msgpack_pack_str(&pk, 2);
    msgpack_pack_str_body(&pk, "\xc3\x28", 2); /* not UTF-8 */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "k", 1);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_array(&pk, 0);
    json_t *v;
    size_t used;
    sl_mp_err_t err;
    assert_int_equal(sl_mp_value_decode(sb.data, sb.size, NULL, &v, &used, &err), SL_OK);
    assert_int_equal(used, sb.size);
    assert_int_equal(json_array_size(v), 10);
    assert_true(json_is_real(json_array_get(v, 0)));
    assert_true(json_real_value(json_array_get(v, 0)) == 18446744073709551615.0);
    assert_int_equal(json_integer_value(json_array_get(v, 1)), -100);
    assert_true(json_real_value(json_array_get(v, 2)) == 0.25);
    assert_true(json_real_value(json_array_get(v, 3)) == 3.5);
    assert_int_equal(json_string_length(json_array_get(v, 4)), 2);
    assert_memory_equal(json_string_value(json_array_get(v, 4)), "\xff\x00", 2);
    assert_int_equal(json_string_length(json_array_get(v, 5)), 2);
    assert_memory_equal(json_string_value(json_array_get(v, 5)), "\xc3\x28", 2);
    assert_json(json_array_get(v, 6), "{\"k\": true}");
    assert_true(json_is_null(json_array_get(v, 7)));
    assert_true(json_integer_value(json_array_get(v, 8)) == INT64_MIN);
    assert_json(json_array_get(v, 9), "[]");
    json_decref(v);
    msgpack_sbuffer_destroy(&sb);

    /* Every width of every header, by hand. */
    assert_decode("cc ff", "255");
    assert_decode("cd ff ff", "65535");
    assert_decode("ce ff ff ff ff", "4294967295");
    assert_decode("d0 80", "-128");
    assert_decode("d1 80 00", "-32768");
    assert_decode("d2 80 00 00 00", "-2147483648");
    assert_decode("ca 3f c0 00 00", "1.5");
    assert_decode("d9 01 \"a\"", "\"a\"");
    assert_decode("da 00 01 \"a\"", "\"a\"");
    assert_decode("db 00 00 00 01 \"a\"", "\"a\"");
    assert_decode("c4 01 \"a\"", "\"a\"");
    assert_decode("c5 00 01 \"a\"", "\"a\"");
    assert_decode("c6 00 00 00 01 \"a\"", "\"a\"");
    assert_decode("dc 00 01 01", "[1]");
    assert_decode("dd 00 00 00 01 01", "[1]");
    assert_decode("de 00 01 a1 \"a\" 01", "{\"a\": 1}");
    assert_decode("df 00 00 00 01 a1 \"a\" 01", "{\"a\": 1}");
    /* A repeated key keeps its last value. */
    assert_decode("82 a1 \"a\" 01 a1 \"a\" 02", "{\"a\": 2}");

    /* A value followed by more bytes: only the value is used. */
    uint8_t b[] = {0x91, 0x01, 0x02, 0x03};
    assert_int_equal(sl_mp_value_decode(b, sizeof(b), NULL, &v, &used, &err), SL_OK);
    assert_int_equal(used, 2);
    json_decref(v);
    /* Incomplete: SL_AGAIN at every cut. */
    for (size_t k = 0; k < 2; k++)
        assert_int_equal(sl_mp_value_decode(b, k, NULL, &v, &used, &err), SL_AGAIN);
}

static void test_put_limits(void **state)
{
    (void)state;
    SB_DECL(out);
    sl_mp_err_t err;
    sl_mp_limits_t lim = {.max_depth = 3, .max_nodes = 10, .max_msg = 0};
    sl_sb_addlit(&out, "keep");

    json_t *ok = jparse("[[[1]]]");
    assert_int_equal(sl_mp_value_put(&out, ok, &lim, &err), SL_OK);
    assert_bytes(out.p, out.len, "\"keep\" 91 91 91 01");
    out.len = 4;
    json_t *deep = jparse("[[[[1]]]]");
    assert_int_equal(sl_mp_value_put(&out, deep, &lim, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "deeper than 3"));
    assert_int_equal(out.len, 4);
    /* A Step whose data is refused leaves nothing behind either. */
    assert_int_equal(sl_mp_call_step(&out, 1, SL_MP_STEP, 1, deep, &lim, &err), SL_ERR_TOO_BIG);
    assert_int_equal(out.len, 4);
    assert_int_equal(sl_mp_call(&out, 1, "plugin.X", deep, &lim, &err), SL_ERR_TOO_BIG);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.p, "keep", 4);

    /* Ten values fit ({"a": .., ...}: each key and value counts). */
    json_t *ten = jparse("{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": [1]}");
    assert_int_equal(sl_mp_value_put(&out, ten, &lim, &err), SL_OK);
    json_t *eleven = jparse("{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": [1, 2]}");
    out.len = 4;
    assert_int_equal(sl_mp_value_put(&out, eleven, &lim, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "more than 10 values"));
    assert_int_equal(out.len, 4);

    /* Depth beyond the ceiling is clamped, not trusted. */
    json_t *v = json_integer(1);
    for (int i = 0; i < SL_MP_DEPTH_CEILING + 1; i++) {
        json_t *a = json_array();
        json_array_append_new(a, v);
        v = a;
    }
    sl_mp_limits_t huge = {.max_depth = 100000, .max_nodes = 100000};
    assert_int_equal(sl_mp_value_put(&out, v, &huge, &err), SL_ERR_TOO_BIG);
    json_decref(v);

    json_decref(ok);
    json_decref(deep);
    json_decref(ten);
    json_decref(eleven);
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* The reader                                                                */

/* A notification, then two responses: the Python server's answer to
 * StartInstance and a "no plugin instance" error. */
static const char *const STREAM =
    "93 02 a9 \"serverPid\" cd 30 39 "
    "94 01 01 c0 84 a4 \"Name\" a5 \"hello\" a2 \"Id\" 00 a6 \"Config\" 81 a1 \"m\" a2 \"hi\" "
    "a9 \"StartTime\" cb 41 d9 6c 9f 40 00 00 00 "
    "94 01 02 b5 \"no plugin instance #3\" c0";

static void check_stream(sl_mp_msg_t *m, size_t n)
{
    sl_mp_err_t err;
    assert_int_equal(n, 3);
    assert_int_equal(m[0].kind, SL_MP_NOTIFICATION);
    assert_string_equal(json_string_value(m[0].label), "serverPid");
    assert_int_equal(json_integer_value(m[0].args), 12345);
    assert_int_equal(sl_mp_msg_expect(&m[0], 1, &err), SL_DECLINED);

    assert_int_equal(m[1].kind, SL_MP_RESPONSE);
    assert_int_equal(m[1].msgid, 1);
    assert_null(m[1].error);
    assert_int_equal(sl_mp_msg_expect(&m[1], 1, &err), SL_OK);
    assert_int_equal(sl_mp_msg_expect(&m[1], 2, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "msgid 1 while the gateway waits for 2"));
    int64_t id = -1;
    assert_int_equal(sl_mp_instance_id(m[1].result, &id, &err), SL_OK);
    assert_int_equal(id, 0);
    assert_json(json_object_get(m[1].result, "Config"), "{\"m\": \"hi\"}");
    assert_true(json_is_real(json_object_get(m[1].result, "StartTime")));

    assert_int_equal(m[2].kind, SL_MP_RESPONSE);
    assert_int_equal(m[2].msgid, 2);
    assert_non_null(m[2].error);
    assert_true(json_is_null(m[2].result));
    assert_true(
        sl_mp_is_no_instance(json_string_value(m[2].error), json_string_length(m[2].error)));
    for (size_t i = 0; i < n; i++)
        sl_mp_msg_dispose(&m[i]);
}

static void test_reader_stream(void **state)
{
    (void)state;
    uint8_t b[1024];
    size_t n = unhex(STREAM, b, sizeof(b));
    static const size_t chunks[] = {1, 2, 3, 5, 7, 13, 64, 4096};
    for (size_t c = 0; c < SL_ARRAY_LEN(chunks); c++) {
        sl_mp_reader_t *r = sl_mp_reader_new(NULL);
        sl_mp_msg_t m[MAX_MSGS];
        size_t got = feed_chunks(r, b, n, chunks[c], m);
        assert_int_equal(sl_mp_reader_pending(r), 0);
        check_stream(m, got);
        sl_mp_reader_free(r);
    }

    /* Fed twice over in one piece: six messages, nothing left. */
    uint8_t two[2048];
    memcpy(two, b, n);
    memcpy(two + n, b, n);
    sl_mp_reader_t *r = sl_mp_reader_new(NULL);
    sl_mp_msg_t m[MAX_MSGS];
    size_t got = feed_chunks(r, two, 2 * n, 2 * n, m);
    assert_int_equal(got, 6);
    check_stream(m, 3);
    check_stream(m + 3, 3);

    /* A cut message: pending counts its bytes until the rest arrives. */
    size_t used;
    sl_mp_msg_t one;
    sl_mp_err_t err;
    assert_int_equal(sl_mp_reader_feed(r, b, 5, &used, &one, &err), SL_AGAIN);
    assert_int_equal(used, 5);
    assert_int_equal(sl_mp_reader_pending(r), 5);
    assert_int_equal(sl_mp_reader_feed(r, b + 5, 0, &used, &one, &err), SL_AGAIN);
    assert_int_equal(used, 0);
    assert_int_equal(sl_mp_reader_feed(r, b + 5, n - 5, &used, &one, &err), SL_OK);
    assert_int_equal(used, 15 - 5); /* the notification is 15 bytes */
    assert_int_equal(sl_mp_reader_pending(r), 0);
    assert_int_equal(one.kind, SL_MP_NOTIFICATION);
    sl_mp_msg_dispose(&one);
    sl_mp_reader_free(r);

    /* A message of exactly max_msg bytes passes, one more byte does not,
     * byte by byte as in one piece. */
    uint8_t s[64] = {0x94, 0x01, 0x01, 0xc0, 0xd9, 64 - 6};
    memset(s + 6, 'x', sizeof(s) - 6);
    sl_mp_limits_t lim = {.max_depth = 4, .max_nodes = 10, .max_msg = 64};
    for (size_t chunk = 1; chunk <= 64; chunk += 63) {
        r = sl_mp_reader_new(&lim);
        assert_int_equal(feed_chunks(r, s, sizeof(s), chunk, m), 1);
        assert_int_equal(json_string_length(m[0].result), 58);
        sl_mp_msg_dispose(&m[0]);
        sl_mp_reader_free(r);
    }
    lim.max_msg = 63;
    r = sl_mp_reader_new(&lim);
    /* Refused at the str header, five bytes in: nothing else buffered. */
    assert_int_equal(sl_mp_reader_feed(r, s, 5, &used, &one, &err), SL_AGAIN);
    assert_int_equal(sl_mp_reader_feed(r, s + 5, 1, &used, &one, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "larger than the limit of 63 bytes"));
    assert_true(sl_mp_reader_pending(r) <= 63);
    sl_mp_reader_free(r);
}

static void test_reader_big(void **state)
{
    (void)state;
    /* A response carrying a 1 MiB body as bin, fed in 4 KiB reads then in
     * one piece: the body comes back byte for byte. */
    size_t body = 1u << 20;
    uint8_t *raw = malloc(body);
    for (size_t i = 0; i < body; i++)
        raw[i] = (uint8_t)(i ^ (i >> 8));
    SB_DECL(out);
    sl_sb_addlit(&out, "\x94\x01\x07\xc0");
    sl_mp_bin_put(&out, raw, body);
    sl_mp_msg_t m[MAX_MSGS];
    const size_t chunks[] = {4096, out.len};
    for (size_t c = 0; c < 2; c++) {
        size_t chunk = chunks[c];
        sl_mp_reader_t *r = sl_mp_reader_new(NULL);
        assert_int_equal(feed_chunks(r, (const uint8_t *)out.p, out.len, chunk, m), 1);
        assert_int_equal(m[0].msgid, 7);
        assert_int_equal(json_string_length(m[0].result), body);
        assert_memory_equal(json_string_value(m[0].result), raw, body);
        sl_mp_msg_dispose(&m[0]);
        assert_int_equal(sl_mp_reader_pending(r), 0);
        sl_mp_reader_free(r);
    }
    free(raw);
    sl_sb_dispose(&out);
}

static void test_reader_hostile(void **state)
{
    (void)state;
    sl_mp_limits_t small = {.max_depth = 3, .max_nodes = 10, .max_msg = 1000};

    /* Not msgpack-rpc, told at the first byte. */
    assert_feed_fails("81", NULL, SL_ERR_INVALID, "starts with a map");
    assert_feed_fails("a5", NULL, SL_ERR_INVALID, "starts with a str");
    assert_feed_fails("01", NULL, SL_ERR_INVALID, "starts with an integer");
    assert_feed_fails("c1", NULL, SL_ERR_INVALID, "0xc1");
    assert_feed_fails("92 01 01", NULL, SL_ERR_INVALID, "an array of 2 members");
    assert_feed_fails("95", NULL, SL_ERR_INVALID, "an array of 5 members");

    /* Envelopes of the wrong shape. */
    assert_feed_fails("94 05 01 c0 c0", NULL, SL_ERR_INVALID, "type 5 is neither 1");
    assert_feed_fails("94 00 01 a1 \"m\" 90", NULL, SL_ERR_INVALID, "a request (type 0)");
    assert_feed_fails("94 c3 01 c0 c0", NULL, SL_ERR_INVALID,
                      "the type (the first member) is a "
                      "boolean");
    assert_feed_fails("94 ff 01 c0 c0", NULL, SL_ERR_INVALID, "type -1 is neither");
    assert_feed_fails("93 01 01 c0", NULL, SL_ERR_INVALID, "response has 3 members");
    assert_feed_fails("94 02 a1 \"x\" c0 c0", NULL, SL_ERR_INVALID, "notification has 4 members");
    assert_feed_fails("94 01 a1 \"x\" c0 c0", NULL, SL_ERR_INVALID, "msgid is a string");
    assert_feed_fails("94 01 cb 3f f0 00 00 00 00 00 00 c0 c0", NULL, SL_ERR_INVALID,
                      "msgid is a float");
    assert_feed_fails("94 01 c0 c0 c0", NULL, SL_ERR_INVALID, "msgid is nil");
    assert_feed_fails("94 01 01 05 c0", NULL, SL_ERR_INVALID, "error is an integer");
    assert_feed_fails("94 01 01 90 c0", NULL, SL_ERR_INVALID, "error is an array");
    assert_feed_fails("93 02 05 c0", NULL, SL_ERR_INVALID, "label is an integer");

    /* Ext types, anywhere: fixext, ext 8, inside a map (a timestamp). */
    assert_feed_fails("94 01 01 c0 d4 01 02", NULL, SL_ERR_INVALID, "ext type (0xd4)");
    assert_feed_fails("94 01 01 c0 c7 01 05 00", NULL, SL_ERR_INVALID, "ext type (0xc7)");
    assert_feed_fails("94 01 01 c0 81 a1 \"t\" d6 ff 00 00 00 00", NULL, SL_ERR_INVALID,
                      "byte 7 starts a msgpack ext type (0xd6)");
    /* Even before its bytes arrive. */
    assert_feed_fails("94 01 01 c0 c9", NULL, SL_ERR_INVALID, "ext type (0xc9)");

    /* Map keys that are not str: int, bin, nil, array; the second key. */
    assert_feed_fails("94 01 01 c0 81 01 02", NULL, SL_ERR_INVALID,
                      "map key at byte 5 is an integer, not a str");
    assert_feed_fails("94 01 01 c0 81 c4 01 \"a\" 01", NULL, SL_ERR_INVALID, "is a bin, not a str");
    assert_feed_fails("94 01 01 c0 81 c0 01", NULL, SL_ERR_INVALID, "is nil, not a str");
    assert_feed_fails("94 01 01 c0 81 90 01", NULL, SL_ERR_INVALID, "is an array, not a str");
    assert_feed_fails("94 01 01 c0 82 a1 \"a\" 01 02 03", NULL, SL_ERR_INVALID,
                      "map key at byte 8 is an integer");

    /* Floats that JSON cannot hold. */
    assert_feed_fails("94 01 01 c0 cb 7f f8 00 00 00 00 00 00", NULL, SL_ERR_INVALID,
                      "not a finite number");
    assert_feed_fails("94 01 01 c0 ca 7f 80 00 00", NULL, SL_ERR_INVALID, "not a finite number");

    /* Huge declared lengths and counts: refused at the header, nothing of
     * the announced size allocated. */
    assert_feed_fails("94 01 01 c0 db ff ff ff ff", NULL, SL_ERR_TOO_BIG,
                      "larger than the limit of 16777216 bytes");
    assert_feed_fails("94 01 01 c0 c6 ff ff ff ff", NULL, SL_ERR_TOO_BIG, "larger than the limit");
    assert_feed_fails("94 01 01 c0 dd ff ff ff ff", NULL, SL_ERR_TOO_BIG, "larger than the limit");
    assert_feed_fails("94 01 01 c0 df ff ff ff ff", NULL, SL_ERR_TOO_BIG, "larger than the limit");
    assert_feed_fails("94 01 01 c0 dd 00 10 00 00", NULL, SL_ERR_TOO_BIG,
                      "more than 100000 values");
    assert_feed_fails("dd ff ff ff ff", NULL, SL_ERR_INVALID, "an array of 4294967295 members");
    assert_feed_fails("94 01 01 c0 da 07 d0", &small, SL_ERR_TOO_BIG,
                      "larger than the limit of 1000 bytes");

    /* Depth and node limits, at the edge. */
    uint8_t b[1024];
    size_t n, used;
    sl_mp_msg_t m;
    sl_mp_err_t err;
    sl_mp_reader_t *r = sl_mp_reader_new(&small);
    n = unhex("94 01 01 c0 91 91 91 01", b, sizeof(b));
    assert_int_equal(sl_mp_reader_feed(r, b, n, &used, &m, &err), SL_OK);
    assert_json(m.result, "[[[1]]]");
    sl_mp_msg_dispose(&m);
    n = unhex("94 01 01 c0 95 01 02 03 04 05", b, sizeof(b)); /* 10 values */
    assert_int_equal(sl_mp_reader_feed(r, b, n, &used, &m, &err), SL_OK);
    sl_mp_msg_dispose(&m);
    sl_mp_reader_free(r);
    assert_feed_fails("94 01 01 c0 91 91 91 91 01", &small, SL_ERR_TOO_BIG, "deeper than 3 levels");
    assert_feed_fails("94 01 01 c0 96", &small, SL_ERR_TOO_BIG, "more than 10 values");
    assert_feed_fails("94 01 01 c0 92 91 91 01 92", &small, SL_ERR_TOO_BIG, "more than 10 values");

    /* A nesting bomb under the default limits: 64 levels pass, 65 do not,
     * and 100000 levels are refused as soon as level 65 is read. */
    static uint8_t bomb[100010];
    memcpy(bomb, "\x94\x01\x01\xc0", 4);
    memset(bomb + 4, 0x91, sizeof(bomb) - 4);
    bomb[4 + 64] = 0xc0;
    r = sl_mp_reader_new(NULL);
    assert_int_equal(sl_mp_reader_feed(r, bomb, 4 + 64 + 1, &used, &m, &err), SL_OK);
    sl_mp_msg_dispose(&m);
    bomb[4 + 64] = 0x91;
    assert_int_equal(sl_mp_reader_feed(r, bomb, sizeof(bomb), &used, &m, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "deeper than 64 levels (at byte 68)"));
    sl_mp_reader_free(r);
    /* Maps nest too. */
    for (size_t i = 0; i < 200; i++)
        memcpy(bomb + 4 + 2 * i, "\x81\xa0", 2);
    r = sl_mp_reader_new(NULL);
    assert_int_equal(sl_mp_reader_feed(r, bomb, 4 + 400, &used, &m, &err), SL_ERR_TOO_BIG);
    sl_mp_reader_free(r);

    /* Truncated at every byte: SL_AGAIN, and pending says how much. */
    n = unhex("94 01 01 c0 84 a4 \"Name\" a5 \"hello\" a2 \"Id\" 00 a6 \"Config\" 81 a1 \"m\" a2 "
              "\"hi\" a9 \"StartTime\" cb 41 d9 6c 9f 40 00 00 00",
              b, sizeof(b));
    for (size_t k = 1; k < n; k++) {
        r = sl_mp_reader_new(NULL);
        assert_int_equal(sl_mp_reader_feed(r, b, k, &used, &m, &err), SL_AGAIN);
        assert_int_equal(used, k);
        assert_int_equal(sl_mp_reader_pending(r), k);
        sl_mp_reader_free(r);
    }
}

static void test_value_decode_errors(void **state)
{
    (void)state;
    sl_mp_limits_t lim = {.max_depth = 2, .max_nodes = 5, .max_msg = 100};
    assert_decode_fails("c1", NULL, SL_ERR_INVALID, "0xc1");
    assert_decode_fails("d8 01 00", NULL, SL_ERR_INVALID, "ext type (0xd8)");
    assert_decode_fails("81 01 01", NULL, SL_ERR_INVALID, "map key at byte 1 is an integer");
    assert_decode_fails("91 91 91 01", &lim, SL_ERR_TOO_BIG, "deeper than 2");
    assert_decode_fails("95 01 01 01 01 01", &lim, SL_ERR_TOO_BIG, "more than 5 values");
    assert_decode_fails("c4 65", &lim, SL_ERR_TOO_BIG, "larger than the limit of 100 bytes");
    assert_decode_fails("db 00 00 00 05 \"abc\"", NULL, SL_AGAIN, NULL);
    /* Outside an envelope a scalar is a value. */
    assert_decode("a3 \"abc\"", "\"abc\"");
}

/* ------------------------------------------------------------------------ */
/* The event loop's helpers                                                  */

static void assert_call(const char *result, int want, const char *method, const char *args)
{
    json_t *r = jparse(result);
    sl_mp_pdk_call_t c = {.event_id = -1};
    sl_mp_err_t err;
    int rc = sl_mp_event_result(r, &c, &err);
    if (rc != want)
        fail_msg("%s: rc %d, want %d (%s)", result, rc, want, err.msg);
    assert_int_equal(c.event_id, 3);
    if (rc == SL_OK) {
        assert_int_equal(c.method.len, strlen(method));
        assert_memory_equal(c.method.p, method, c.method.len);
        assert_json(c.args, args);
    } else {
        assert_int_equal(c.method.len, 0);
        assert_null(c.args);
    }
    sl_mp_pdk_call_dispose(&c);
    json_decref(r);
}

static void assert_bad_result(const char *result, const char *words)
{
    json_t *r = jparse(result);
    sl_mp_pdk_call_t c = {.event_id = -1};
    sl_mp_err_t err;
    assert_int_equal(sl_mp_event_result(r, &c, &err), SL_ERR_INVALID);
    assert_int_equal(c.event_id, -1);
    if (!strstr(err.msg, words))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, words);
    json_decref(r);
}

static void test_event_result(void **state)
{
    (void)state;
    assert_call("{\"EventId\": 3, \"Data\": \"ret\"}", SL_DONE, NULL, NULL);
    assert_call("{\"Data\": {\"Method\": \"kong.request.get_header\", \"Args\": [\"x\"]}, "
                "\"EventId\": 3}",
                SL_OK, "kong.request.get_header", "[\"x\"]");
    assert_call("{\"EventId\": 3, \"Data\": {\"Method\": \"kong.response.exit\", \"Args\": [403, "
                "\"no\", {\"X\": \"1\"}]}}",
                SL_OK, "kong.response.exit", "[403, \"no\", {\"X\": \"1\"}]");
    /* A non-array Args is the single argument; none or nil is no argument. */
    assert_call("{\"EventId\": 3, \"Data\": {\"Method\": \"kong.log.err\", \"Args\": \"x\"}}",
                SL_OK, "kong.log.err", "[\"x\"]");
    assert_call("{\"EventId\": 3, \"Data\": {\"Method\": \"m\", \"Args\": {\"a\": 1}}}", SL_OK, "m",
                "[{\"a\": 1}]");
    assert_call("{\"EventId\": 3, \"Data\": {\"Method\": \"m\", \"Args\": false}}", SL_OK, "m",
                "[false]");
    assert_call("{\"EventId\": 3, \"Data\": {\"Method\": \"kong.request.get_path\"}}", SL_OK,
                "kong.request.get_path", "[]");
    assert_call("{\"EventId\": 3, \"Data\": {\"Method\": \"m\", \"Args\": null}}", SL_OK, "m",
                "[]");

    assert_bad_result("[]", "event result is an array, not a map");
    assert_bad_result("null", "event result is nil");
    assert_bad_result("{\"Data\": \"ret\"}", "has no EventId");
    assert_bad_result("{\"EventId\": \"3\", \"Data\": \"ret\"}", "EventId is a string");
    assert_bad_result("{\"EventId\": 3.5, \"Data\": \"ret\"}", "EventId is a float");
    assert_bad_result("{\"EventId\": 3}", "has no Data");
    assert_bad_result("{\"EventId\": 3, \"Data\": \"done\"}", "Data is the string \"done\"");
    assert_bad_result("{\"EventId\": 3, \"Data\": \"ret\\u0000\"}", "\"ret\\x00\"");
    assert_bad_result("{\"EventId\": 3, \"Data\": 5}", "Data is an integer");
    assert_bad_result("{\"EventId\": 3, \"Data\": null}", "Data is nil");
    assert_bad_result("{\"EventId\": 3, \"Data\": {}}", "has no Method");
    assert_bad_result("{\"EventId\": 3, \"Data\": {\"Method\": 1}}", "Method is an integer");
    assert_bad_result("{\"EventId\": 3, \"Data\": {\"Method\": \"\"}}", "is empty");
    assert_bad_result("{\"EventId\": 3, \"Data\": {\"Method\": \"a\\u0000b\"}}", "\"a\\x00b\"");
    char longm[300];
    snprintf(longm, sizeof(longm), "{\"EventId\": 3, \"Data\": {\"Method\": \"%0129d\"}}", 0);
    assert_bad_result(longm, "longer than 128");

    /* StartInstance's Id. */
    int64_t id = -1;
    sl_mp_err_t err;
    json_t *v = jparse("{\"Name\": \"x\", \"Id\": 4, \"Config\": {}, \"StartTime\": 1.5}");
    assert_int_equal(sl_mp_instance_id(v, &id, &err), SL_OK);
    assert_int_equal(id, 4);
    json_decref(v);
    v = jparse("{\"Id\": \"4\"}");
    assert_int_equal(sl_mp_instance_id(v, &id, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "Id is not an integer"));
    json_decref(v);
    v = jparse("{\"Name\": \"x\"}");
    assert_int_equal(sl_mp_instance_id(v, &id, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "no Id"));
    json_decref(v);
    assert_int_equal(sl_mp_instance_id(NULL, &id, &err), SL_ERR_INVALID);
    assert_int_equal(id, 4);
}

static void test_no_instance(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool want;
    } t[] = {
        {"no plugin instance #3", true},     {"No Plugin Instance 0", true},
        {"error: NO PLUGIN INSTANCE", true}, {"instance: no plugin instance", true},
        {"no plugin instanc", false},        {"no plugin  instance", false},
        {"event id 4 not found", false},     {"", false},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(t); i++)
        assert_int_equal(sl_mp_is_no_instance(t[i].s, strlen(t[i].s)), t[i].want);
    assert_false(sl_mp_is_no_instance(NULL, 0));
    /* Bytes, not C strings: a NUL before does not hide it, the length
     * bounds it. */
    assert_true(sl_mp_is_no_instance("x\0no plugin instance", 20));
    assert_false(sl_mp_is_no_instance("no plugin instance", 17));
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                       */

static void test_alloc_failures(void **state)
{
    (void)state;
    uint8_t b[1024];
    size_t n = unhex(STREAM, b, sizeof(b));
    int rc = SL_ERR_NOMEM;
    long k;
    /* The reader converting the three messages: every failure is
     * SL_ERR_NOMEM with a message, and sticky. */
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        sl_mp_reader_t *r = sl_mp_reader_new(NULL);
        sl_mp_msg_t m;
        sl_mp_err_t err;
        size_t off = 0, used, got = 0;
        json_fail_after(k);
        while (off < n) {
            rc = sl_mp_reader_feed(r, b + off, n - off, &used, &m, &err);
            if (rc != SL_OK)
                break;
            off += used;
            got++;
            sl_mp_msg_dispose(&m);
        }
        json_set_alloc_funcs(malloc, free);
        if (rc == SL_ERR_NOMEM) {
            assert_non_null(strstr(err.msg, "out of memory"));
            assert_int_equal(sl_mp_reader_feed(r, b, n, &used, &m, &err), SL_ERR_NOMEM);
        } else {
            assert_int_equal(rc, SL_OK);
            assert_int_equal(got, 3);
        }
        sl_mp_reader_free(r);
    }
    assert_true(k > 5);

    /* Normalising a multi-map and sending it. */
    json_t *h = jparse("{\"a\": \"1\", \"b\": true, \"c\": [\"x\"]}");
    rc = SL_ERR_NOMEM;
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        SB_DECL(out);
        sl_mp_err_t err;
        json_fail_after(k);
        rc = sl_mp_call_step_result(&out, 1, 1, "kong.request.get_headers", 24, h, NULL, &err);
        json_set_alloc_funcs(malloc, free);
        if (rc == SL_ERR_NOMEM)
            assert_int_equal(out.len, 0);
        else
            assert_int_equal(rc, SL_OK);
        sl_sb_dispose(&out);
    }
    assert_true(k > 3);
    json_decref(h);

    /* A single argument wrapped in an array. */
    json_t *res = jparse("{\"EventId\": 1, \"Data\": {\"Method\": \"m\", \"Args\": \"x\"}}");
    rc = SL_ERR_NOMEM;
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        sl_mp_pdk_call_t c;
        sl_mp_err_t err;
        json_fail_after(k);
        rc = sl_mp_event_result(res, &c, &err);
        json_set_alloc_funcs(malloc, free);
        if (rc == SL_OK)
            sl_mp_pdk_call_dispose(&c);
        else
            assert_int_equal(rc, SL_ERR_NOMEM);
    }
    assert_true(k > 1);
    json_decref(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_value_bytes),
        cmocka_unit_test(test_step_methods),
        cmocka_unit_test(test_multimap),
        cmocka_unit_test(test_raw_body),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_put_limits),
        cmocka_unit_test(test_reader_stream),
        cmocka_unit_test(test_reader_big),
        cmocka_unit_test(test_reader_hostile),
        cmocka_unit_test(test_value_decode_errors),
        cmocka_unit_test(test_event_result),
        cmocka_unit_test(test_no_instance),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
