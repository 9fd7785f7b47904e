/*
 * Unit tests of the ProtoBuf:1 wire layer (pluginserver-bridge/pb_codec.c):
 * the byte-level trace of the protocol reference (2.7) rebuilt and parsed
 * exactly, frames cut from input arriving a byte at a time, oversized and
 * garbage frames, every wrapper type there and back, the Struct/Value
 * conversion and its bounds (including nesting bombs protobuf-c would
 * recurse into), the callback loop of an event over scripted frames
 * (answers, kong.response.exit, unknown methods, a sequence mismatch), the
 * method table against the proto's service Kong, start_instance's config
 * JSON, and allocation failures in protobuf-c and jansson.
 */
#include "pb_codec.h"

#include <math.h>
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

static const sl_pb_frame_t *only_frame(const sl_sb_t *sb, sl_pb_frame_t *f)
{
    assert_int_equal(sl_pb_frame_decode(sb->p, sb->len, SL_PB_FRAME_MAX_DEFAULT, f, NULL), SL_OK);
    assert_int_equal(f->size, sb->len);
    return f;
}

/* Encodes v with sl_pb_put_json and checks the payload bytes. */
static void assert_put_json(sl_pb_type_t t, const char *json_text, const char *hex)
{
    SB_DECL(out);
    json_t *v = json_text ? jparse(json_text) : NULL;
    sl_pb_err_t err;
    int rc = sl_pb_put_json(&out, t, v, NULL, &err);
    if (rc != SL_OK)
        fail_msg("put_json: %s", err.msg);
    sl_pb_frame_t f;
    only_frame(&out, &f);
    assert_bytes(f.p, f.len, hex);
    json_decref(v);
    sl_sb_dispose(&out);
}

/* Encodes a jansson value as type t, decodes the payload back and compares
 * the JSON the decoder gives with want. */
static void roundtrip_json(sl_pb_type_t t, const char *in, const char *want)
{
    SB_DECL(out);
    json_t *v = jparse(in);
    sl_pb_err_t err;
    int rc = sl_pb_put_json(&out, t, v, NULL, &err);
    if (rc != SL_OK)
        fail_msg("put_json %s: %s", in, err.msg);
    sl_pb_frame_t f;
    only_frame(&out, &f);
    sl_pb_arg_t a;
    rc = sl_pb_arg_decode(t, f.p, f.len, NULL, NULL, &a, &err);
    if (rc != SL_OK)
        fail_msg("arg_decode %s: %s", in, err.msg);
    assert_json(a.json, want);
    sl_pb_arg_dispose(&a);
    json_decref(v);
    sl_sb_dispose(&out);
}

/* Packs a protobuf-c message into buf. */
static size_t pack(const void *msg, uint8_t *buf, size_t cap)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    assert_true(n <= cap);
    return protobuf_c_message_pack(msg, buf);
}

/* ------------------------------------------------------------------------ */
/* Driving an event over a byte stream                                       */

/* Answers one PDK call; returns false for a terminal call. */
typedef void (*answer_fn)(void *state, const sl_pb_call_t *call, sl_sb_t *out);

struct drive {
    sl_pb_event_t ev;
    sl_sb_t out; /* what the gateway wrote, frames concatenated */
    uint8_t *in; /* bytes received and not yet consumed */
    size_t in_len;
    size_t frames; /* frames fed */
    int rc;        /* the last feed's result */
};

/*
 * Delivers stream to the event `chunk` bytes at a time, as reads would,
 * cutting frames with sl_pb_frame_decode and feeding each. Stops at
 * SL_DONE, a terminal call or an error; returns the last feed's result.
 */
static int drive_stream(struct drive *d, const uint8_t *stream, size_t n, size_t chunk,
                        answer_fn answer, void *state)
{
    d->in = malloc(n + 1);
    d->in_len = 0;
    d->rc = SL_AGAIN;
    for (size_t off = 0; off < n && d->rc >= 0 && d->rc != SL_DONE;) {
        size_t k = SL_MIN(chunk, n - off);
        memcpy(d->in + d->in_len, stream + off, k);
        d->in_len += k;
        off += k;
        for (;;) {
            sl_pb_frame_t f;
            int rc = sl_pb_frame_decode(d->in, d->in_len, SL_PB_FRAME_MAX_DEFAULT, &f, NULL);
            if (rc == SL_AGAIN)
                break;
            assert_int_equal(rc, SL_OK);
            sl_pb_call_t call;
            d->frames++;
            d->rc = sl_pb_event_feed(&d->ev, f.p, f.len, &call);
            if (d->rc == SL_OK) {
                answer(state, &call, &d->out);
                if (!(call.method->flags & SL_PB_M_TERMINAL))
                    assert_int_equal(sl_pb_event_answered(&d->ev), SL_OK);
            }
            memmove(d->in, d->in + f.size, d->in_len - f.size);
            d->in_len -= f.size;
            if (d->rc < 0 || d->rc == SL_DONE || d->ev.state == SL_PB_EV_EXITED)
                break;
        }
        if (d->ev.state == SL_PB_EV_EXITED)
            break;
    }
    free(d->in);
    d->in = NULL;
    return d->rc;
}

/* ------------------------------------------------------------------------ */
/* 2.7: the byte-level trace                                                 */

/* The server's side of the handle_event trace: frames 2, 3, 5, 6, 8, 9. */
static const char *const trace_server = "17 00 00 00"
                                        "\"kong.request.get_header\""
                                        "06 00 00 00 0a 04 68 6f 73 74"
                                        "18 00 00 00"
                                        "\"kong.response.set_header\""
                                        "2e 00 00 00 0a 0f"
                                        "\"x-hello-from-go\""
                                        "12 1b 1a 19"
                                        "\"Go says hi to example.com\""
                                        "00 00 00 00"
                                        "02 00 00 00 08 08";

/* The gateway's side after the call: frames 4 and 7. */
static const char *const trace_answers = "0d 00 00 00 0a 0b"
                                         "\"example.com\""
                                         "00 00 00 00";

struct trace_state {
    int calls;
};

static void trace_answer(void *state, const sl_pb_call_t *call, sl_sb_t *out)
{
    struct trace_state *ts = state;
    sl_pb_arg_t a;
    sl_pb_err_t err;
    assert_int_equal(
        sl_pb_arg_decode(call->method->in, call->arg, call->arg_len, NULL, NULL, &a, &err), SL_OK);
    if (ts->calls == 0) {
        assert_int_equal(call->method->id, SL_PB_M_REQUEST_GET_HEADER);
        assert_int_equal(a.type, SL_PB_T_STRING);
        assert_int_equal(a.v.str.len, 4);
        assert_memory_equal(a.v.str.p, "host", 4);
        sl_pb_put_string(out, "example.com", 11);
    } else {
        assert_int_equal(ts->calls, 1);
        assert_int_equal(call->method->id, SL_PB_M_RESPONSE_SET_HEADER);
        assert_int_equal(call->method->out, SL_PB_T_EMPTY);
        assert_int_equal(a.v.key.len, 15);
        assert_memory_equal(a.v.key.p, "x-hello-from-go", 15);
        assert_json(a.json, "\"Go says hi to example.com\"");
        sl_pb_put_empty(out);
    }
    sl_pb_arg_dispose(&a);
    ts->calls++;
}

static void test_trace_handle_event(void **state)
{
    (void)state;
    uint8_t stream[512];
    size_t n = unhex(trace_server, stream, sizeof(stream));
    /* Whole, then in every chunk size down to one byte at a time. */
    size_t chunks[] = {n, 64, 7, 3, 2, 1};
    for (size_t i = 0; i < SL_ARRAY_LEN(chunks); i++) {
        struct drive d;
        memset(&d, 0, sizeof(d));
        char st[16];
        sl_sb_init(&d.out, st, sizeof(st));
        sl_pb_event_start(&d.ev, &d.out, 8, 7, "access");
        /* Frame 1. */
        assert_bytes(d.out.p, d.out.len,
                     "0f 00 00 00 08 08 a2 02 0a 08 07 12 06 61 63 63 65 73 73");
        d.out.len = 0;
        struct trace_state ts = {0};
        assert_int_equal(drive_stream(&d, stream, n, chunks[i], trace_answer, &ts), SL_DONE);
        assert_int_equal(ts.calls, 2);
        assert_int_equal(d.frames, 6);
        assert_int_equal(d.ev.calls, 2);
        assert_int_equal(d.ev.state, SL_PB_EV_DONE);
        /* Frames 4 and 7. */
        assert_bytes(d.out.p, d.out.len, trace_answers);
        sl_sb_dispose(&d.out);
    }
}

static void test_trace_commands(void **state)
{
    (void)state;
    sl_pb_err_t err;
    SB_DECL(out);

    /* cmd_get_plugin_names, sequence 2; go-pdk answers a zero-length frame. */
    sl_pb_call_get_plugin_names(&out, 2);
    assert_bytes(out.p, out.len, "05 00 00 00 08 02 fa 01 00");
    assert_int_equal(sl_pb_return_parse("", 0, 2, SL_PB_RETURN_ANY, NULL, NULL, &err), SL_DECLINED);
    assert_non_null(strstr(err.msg, "does not implement"));

    /* cmd_start_instance, sequence 4. */
    const char *conf = "{\"message\":\"hi\",\"__seq__\":7}";
    size_t cl = strlen(conf);
    out.len = 0;
    sl_pb_call_start_instance(&out, 4, "go-hello", conf, cl);
    char hex[512];
    snprintf(hex, sizeof(hex), "%02zx 00 00 00 08 04 8a 02 %02zx 0a 08 \"go-hello\" 12 %02zx",
             2 + 3 + 10 + 2 + cl, 10 + 2 + cl, cl);
    size_t head = unhex(hex, (uint8_t[64]){0}, 64);
    assert_bytes(out.p, head, hex);
    assert_int_equal(out.len, head + cl);
    assert_memory_equal(out.p + head, conf, cl);

    /* Its reply: instance_status{name "go-hello", instance_id 7, started_at}. */
    uint8_t reply[64];
    size_t rn =
        unhex("08 04 8a 02 12 0a 08 \"go-hello\" 10 07 20 80 e2 cf aa 06", reply, sizeof(reply));
    sl_pb_return_t *r = NULL;
    assert_int_equal(sl_pb_return_parse(reply, rn, 4,
                                        KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS,
                                        NULL, &r, &err),
                     SL_OK);
    assert_int_equal(r->sequence, 4);
    assert_non_null(r->instance_status);
    assert_string_equal(r->instance_status->name, "go-hello");
    assert_int_equal(r->instance_status->instance_id, 7);
    assert_int_equal(r->instance_status->started_at, 1700000000);
    assert_null(r->instance_status->config);
    sl_pb_return_free(r, NULL);

    /* The derived encodings, and the two commands Kong never sends. */
    out.len = 0;
    sl_pb_call_close_instance(&out, 6, 7);
    assert_bytes(out.p, out.len, "07 00 00 00 08 06 9a 02 02 08 07");
    out.len = 0;
    sl_pb_call_get_instance_status(&out, 4, 7);
    assert_bytes(out.p, out.len, "07 00 00 00 08 04 92 02 02 08 07");
    out.len = 0;
    sl_pb_call_get_plugin_info(&out, 2, "x");
    assert_bytes(out.p, out.len, "08 00 00 00 08 02 82 02 03 0a 01 78");
    sl_sb_dispose(&out);
}

static void test_trace_payloads(void **state)
{
    (void)state;
    uint8_t b[256];
    size_t n;
    sl_pb_arg_t a;
    sl_pb_err_t err;

    /* kong.log.err("x", 1, true): a ListValue; Go ints arrive as doubles
     * and come out as JSON integers. */
    const char *log_err = "0a 03 1a 01 78 0a 09 11 00 00 00 00 00 00 f0 3f 0a 02 20 01";
    n = unhex(log_err, b, sizeof(b));
    const sl_pb_method_t *m = sl_pb_method_find("kong.log.err", 12);
    assert_non_null(m);
    assert_int_equal(m->in, SL_PB_T_LIST_VALUE);
    assert_int_equal(sl_pb_arg_decode(m->in, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_json(a.json, "[\"x\", 1, true]");
    assert_true(json_is_integer(json_array_get(a.json, 1)));
    sl_pb_arg_dispose(&a);
    assert_put_json(SL_PB_T_LIST_VALUE, "[\"x\", 1.0, true]", log_err);
    assert_put_json(SL_PB_T_LIST_VALUE, "[\"x\", 1, true]", log_err);

    /* kong.request.get_headers(-1): go-pdk sends Int{100}. */
    n = unhex("08 64", b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_INT, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_int_equal(a.v.i, 100);
    assert_null(a.json);
    sl_pb_arg_dispose(&a);
    SB_DECL(out);
    sl_pb_put_int(&out, 100);
    assert_bytes(out.p, out.len, "02 00 00 00 08 64");

    /* kong.response.exit(403, "nope", {"X-A": ["1","2"]}). */
    const char *exit_hex = "08 93 03 12 04 6e 6f 70 65 1a 15 0a 13 0a 03 58 2d 41 12 0c 32 0a 0a "
                           "03 1a 01 31 0a 03 1a 01 32";
    n = unhex(exit_hex, b, sizeof(b));
    m = sl_pb_method_find("kong.response.exit", 18);
    assert_non_null(m);
    assert_true(m->flags & SL_PB_M_TERMINAL);
    assert_int_equal(sl_pb_arg_decode(m->in, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_int_equal(a.v.exit.status, 403);
    assert_int_equal(a.v.exit.body.len, 4);
    assert_memory_equal(a.v.exit.body.p, "nope", 4);
    assert_json(a.json, "{\"X-A\": [\"1\", \"2\"]}");
    sl_pb_arg_dispose(&a);
    /* The same bytes from JSON (as a test server would build them). */
    assert_put_json(SL_PB_T_EXIT_ARGS,
                    "{\"status\": 403, \"body\": \"nope\", \"headers\": {\"X-A\": [\"1\", \"2\"]}}",
                    exit_hex);

    /* Frame 6's KV and frame 3's String, from JSON. */
    assert_put_json(SL_PB_T_KV,
                    "{\"k\": \"x-hello-from-go\", \"v\": \"Go says hi to example.com\"}",
                    "0a 0f \"x-hello-from-go\" 12 1b 1a 19 \"Go says hi to example.com\"");
    assert_put_json(SL_PB_T_STRING, "\"host\"", "0a 04 \"host\"");
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* Framing                                                                   */

static void test_frame_edges(void **state)
{
    (void)state;
    uint8_t b[64];
    sl_pb_frame_t f = {(const uint8_t *)"x", 99, 99};
    sl_pb_err_t err;
    size_t size = 12345;

    /* Fewer than 4 bytes: nothing consumed, nothing written. */
    size_t n = unhex("05 00 00", b, sizeof(b));
    for (size_t i = 0; i <= n; i++) {
        assert_int_equal(sl_pb_frame_decode(b, i, 100, &f, &err), SL_AGAIN);
        assert_int_equal(sl_pb_frame_peek(b, i, 100, &size, &err), SL_AGAIN);
    }
    assert_int_equal(f.len, 99);
    assert_int_equal(size, 12345);

    /* A header, the payload arriving byte by byte. */
    n = unhex("05 00 00 00 08 02 fa 01 00 ff", b, sizeof(b));
    assert_int_equal(sl_pb_frame_peek(b, 4, 100, &size, &err), SL_OK);
    assert_int_equal(size, 9);
    for (size_t i = 4; i < 9; i++)
        assert_int_equal(sl_pb_frame_decode(b, i, 100, &f, &err), SL_AGAIN);
    assert_int_equal(f.len, 99);
    assert_int_equal(sl_pb_frame_decode(b, n, 100, &f, &err), SL_OK);
    assert_ptr_equal(f.p, b + 4);
    assert_int_equal(f.len, 5);
    assert_int_equal(f.size, 9);

    /* Zero-length frames are legal, back to back. */
    n = unhex("00 00 00 00 00 00 00 00 01 00 00 00 2a", b, sizeof(b));
    size_t off = 0;
    size_t lens[3], k = 0;
    while (off < n && sl_pb_frame_decode(b + off, n - off, 100, &f, &err) == SL_OK) {
        lens[k++] = f.len;
        off += f.size;
    }
    assert_int_equal(k, 3);
    assert_int_equal(lens[0], 0);
    assert_int_equal(lens[1], 0);
    assert_int_equal(lens[2], 1);
    assert_int_equal(off, n);
    assert_int_equal(sl_pb_frame_decode(b, 4, 0, &f, &err), SL_OK); /* max 0: empty only */

    /* Oversized: refused from the header alone, before any payload is
     * buffered; the limit itself is accepted. */
    f.len = 99;
    n = unhex("00 00 00 40", b, sizeof(b)); /* 1 GiB */
    assert_int_equal(sl_pb_frame_decode(b, n, SL_PB_FRAME_MAX_DEFAULT, &f, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "1073741824 bytes"));
    assert_int_equal(sl_pb_frame_peek(b, n, SL_PB_FRAME_MAX_DEFAULT, &size, &err), SL_ERR_TOO_BIG);
    n = unhex("ff ff ff ff", b, sizeof(b));
    assert_int_equal(sl_pb_frame_decode(b, n, SL_PB_FRAME_MAX_DEFAULT, &f, &err), SL_ERR_TOO_BIG);
    n = unhex("10 00 00 00", b, sizeof(b));
    assert_int_equal(sl_pb_frame_decode(b, n, 15, &f, NULL), SL_ERR_TOO_BIG);
    assert_int_equal(sl_pb_frame_decode(b, n, 16, &f, NULL), SL_AGAIN);
    assert_int_equal(f.len, 99);
    assert_int_equal(size, 9);

    /* Writing: an empty frame, raw bytes, a payload larger than the
     * buffer's first storage. */
    SB_DECL(out);
    sl_pb_frame_put(&out, NULL, 0);
    sl_pb_frame_put_msg(&out, NULL);
    sl_pb_frame_put(&out, "ab", 2);
    assert_bytes(out.p, out.len, "00 00 00 00 00 00 00 00 02 00 00 00 61 62");
    out.len = 0;
    size_t big = 70000;
    char *p = malloc(big);
    memset(p, 'z', big);
    sl_pb_put_bytes(&out, p, big);
    assert_int_equal(sl_pb_frame_decode(out.p, out.len, SL_PB_FRAME_MAX_DEFAULT, &f, NULL), SL_OK);
    assert_int_equal(f.len, 1 + 3 + big);
    assert_bytes(out.p, 8, "74 11 01 00 0a f0 a2 04");
    free(p);
    sl_sb_dispose(&out);
}

static void test_garbage(void **state)
{
    (void)state;
    sl_pb_err_t err;
    uint8_t b[256];
    /* Payloads that are no protobuf message: truncated fields, bad keys,
     * groups, lengths past the end, a known field with the wrong wire type. */
    static const char *const bad[] = {
        "0a",                               /* key, no length */
        "0a 05 61",                         /* length past the end */
        "00",                               /* field number 0 */
        "0b 0c",                            /* a group */
        "ff ff ff ff ff ff ff ff ff ff ff", /* an endless varint */
        "09 00 00",                         /* a truncated fixed64 */
        "0d 00",                            /* a truncated fixed32 */
        "08 ff",                            /* a truncated varint */
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        size_t n = unhex(bad[i], b, sizeof(b));
        for (int t = 0; t < SL_PB_T_COUNT; t++) {
            sl_pb_arg_t a;
            int rc = sl_pb_arg_decode((sl_pb_type_t)t, b, n, NULL, NULL, &a, &err);
            assert_int_equal(rc, SL_ERR_INVALID);
        }
        assert_int_equal(sl_pb_return_parse(b, n, 2, SL_PB_RETURN_ANY, NULL, NULL, &err),
                         SL_ERR_INVALID);
    }
    /* A known message field sent as a varint. */
    size_t n = unhex("10 01", b, sizeof(b));
    sl_pb_arg_t a;
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_KV, b, n, NULL, NULL, &a, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "not a valid KV"));

    /* Random bytes: whatever the outcome, no crash and no leak. */
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        n = 1 + (size_t)(rand_r(&seed) % 64);
        for (size_t i = 0; i < n; i++)
            b[i] = (uint8_t)rand_r(&seed);
        for (int t = 0; t < SL_PB_T_COUNT; t++) {
            if (sl_pb_arg_decode((sl_pb_type_t)t, b, n, NULL, NULL, &a, &err) == SL_OK)
                sl_pb_arg_dispose(&a);
        }
        sl_pb_return_t *r;
        if (sl_pb_return_parse(b, n, 2, SL_PB_RETURN_ANY, NULL, &r, &err) == SL_OK)
            sl_pb_return_free(r, NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* Wrapper types                                                             */

static void decode_ok(sl_pb_type_t t, const sl_sb_t *out, sl_pb_arg_t *a)
{
    sl_pb_frame_t f;
    sl_pb_err_t err;
    only_frame(out, &f);
    int rc = sl_pb_arg_decode(t, f.p, f.len, NULL, NULL, a, &err);
    if (rc != SL_OK)
        fail_msg("decode %s: %s", sl_pb_type_name(t), err.msg);
}

static void test_scalar_wrappers(void **state)
{
    (void)state;
    SB_DECL(out);
    sl_pb_arg_t a;

    /* String: the empty one is a zero-length frame (proto3 default). */
    static const char *const strs[] = {"", "host", "ünïcödé", "a\"b\\c"};
    for (size_t i = 0; i < SL_ARRAY_LEN(strs); i++) {
        out.len = 0;
        sl_pb_put_string(&out, strs[i], strlen(strs[i]));
        decode_ok(SL_PB_T_STRING, &out, &a);
        assert_int_equal(a.v.str.len, strlen(strs[i]));
        assert_memory_equal(a.v.str.p, strs[i], a.v.str.len);
        sl_pb_arg_dispose(&a);
    }
    out.len = 0;
    sl_pb_put_string(&out, "", 0);
    assert_bytes(out.p, out.len, "00 00 00 00");
    /* Bytes that are not UTF-8 become U+FFFD, so that Go can decode them. */
    out.len = 0;
    sl_pb_put_string(&out,
                     "a\xff"
                     "b\xc3",
                     4);
    assert_bytes(out.p, out.len, "0a 00 00 00 0a 08 61 ef bf bd 62 ef bf bd");

    /* Int, including the sign-extended negatives. */
    static const int32_t ints[] = {0, 1, 100, -1, 300, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < SL_ARRAY_LEN(ints); i++) {
        out.len = 0;
        sl_pb_put_int(&out, ints[i]);
        decode_ok(SL_PB_T_INT, &out, &a);
        assert_int_equal(a.v.i, ints[i]);
        sl_pb_arg_dispose(&a);
    }
    out.len = 0;
    sl_pb_put_int(&out, -1);
    assert_bytes(out.p, out.len, "0b 00 00 00 08 ff ff ff ff ff ff ff ff ff 01");
    out.len = 0;
    sl_pb_put_int(&out, 0);
    assert_bytes(out.p, out.len, "00 00 00 00");

    /* Number (kong.nginx.req_start_time, get_http_version). */
    static const double nums[] = {0.0, 1.5, 1.1, -2.0, 1700000000.123, 1e300};
    for (size_t i = 0; i < SL_ARRAY_LEN(nums); i++) {
        out.len = 0;
        sl_pb_put_number(&out, nums[i]);
        decode_ok(SL_PB_T_NUMBER, &out, &a);
        assert_true(a.v.num == nums[i]);
        sl_pb_arg_dispose(&a);
    }
    out.len = 0;
    sl_pb_put_number(&out, 1.0);
    assert_bytes(out.p, out.len, "09 00 00 00 09 00 00 00 00 00 00 f0 3f");
    out.len = 0;
    sl_pb_put_number(&out, -0.0);
    decode_ok(SL_PB_T_NUMBER, &out, &a);
    assert_true(a.v.num == 0.0 && signbit(a.v.num));
    sl_pb_arg_dispose(&a);

    /* Bool. */
    out.len = 0;
    sl_pb_put_bool(&out, true);
    assert_bytes(out.p, out.len, "02 00 00 00 08 01");
    decode_ok(SL_PB_T_BOOL, &out, &a);
    assert_true(a.v.b);
    sl_pb_arg_dispose(&a);
    out.len = 0;
    sl_pb_put_bool(&out, false);
    assert_bytes(out.p, out.len, "00 00 00 00");
    decode_ok(SL_PB_T_BOOL, &out, &a);
    assert_false(a.v.b);
    sl_pb_arg_dispose(&a);

    /* ByteString keeps every byte, NULs included; String is wire-identical,
     * so go-pdk's String for set_raw_body decodes as ByteString. */
    out.len = 0;
    sl_pb_put_bytes(&out, "a\0b\xff", 4);
    decode_ok(SL_PB_T_BYTE_STRING, &out, &a);
    assert_int_equal(a.v.bytes.len, 4);
    assert_memory_equal(a.v.bytes.p, "a\0b\xff", 4);
    sl_pb_arg_dispose(&a);
    out.len = 0;
    sl_pb_put_string(&out, "body", 4);
    decode_ok(SL_PB_T_BYTE_STRING, &out, &a);
    assert_memory_equal(a.v.bytes.p, "body", 4);
    sl_pb_arg_dispose(&a);
    out.len = 0;
    sl_pb_put_bytes(&out, NULL, 0);
    decode_ok(SL_PB_T_BYTE_STRING, &out, &a);
    assert_int_equal(a.v.bytes.len, 0);
    assert_non_null(a.v.bytes.p);
    sl_pb_arg_dispose(&a);

    /* The wrappers from bare JSON values, and refused mismatches. */
    assert_put_json(SL_PB_T_STRING, "\"\"", "");
    assert_put_json(SL_PB_T_INT, "-1", "08 ff ff ff ff ff ff ff ff ff 01");
    assert_put_json(SL_PB_T_NUMBER, "1", "09 00 00 00 00 00 00 f0 3f");
    assert_put_json(SL_PB_T_BOOL, "true", "08 01");
    assert_put_json(SL_PB_T_BYTE_STRING, "\"ab\"", "0a 02 61 62");
    assert_put_json(SL_PB_T_STRING, "{\"v\": \"x\"}", "0a 01 78");
    assert_put_json(SL_PB_T_EMPTY, "[1, 2]", "");
    assert_put_json(SL_PB_T_STRING, NULL, "");
    sl_pb_err_t err;
    json_t *j = json_integer(5);
    out.len = 0;
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_STRING, j, NULL, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "String cannot be made from a number"));
    assert_int_equal(out.len, 0);
    json_decref(j);
    j = json_real(1.5);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_INT, j, NULL, &err), SL_ERR_INVALID);
    json_decref(j);
    j = json_integer((json_int_t)INT32_MAX + 1);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_INT, j, NULL, &err), SL_ERR_INVALID);
    json_decref(j);
    assert_int_equal(out.len, 0);
    sl_sb_dispose(&out);
}

static void test_argument_messages(void **state)
{
    (void)state;
    uint8_t b[512];
    size_t n;
    sl_pb_arg_t a;
    sl_pb_err_t err;

    /* KV with each kind of value, and without one (nil). */
    KongPluginProtocol__Value v = KONG_PLUGIN_PROTOCOL__VALUE__INIT;
    KongPluginProtocol__KV kv = KONG_PLUGIN_PROTOCOL__KV__INIT;
    kv.k = "key";
    n = pack(&kv, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_KV, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_string_equal(a.v.key.p, "key");
    assert_true(json_is_null(a.json));
    sl_pb_arg_dispose(&a);
    kv.v = &v;
    v.kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_NUMBER_VALUE;
    v.number_value = 2.5;
    n = pack(&kv, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_KV, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_json(a.json, "2.5");
    sl_pb_arg_dispose(&a);
    v.kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_NULL_VALUE;
    n = pack(&kv, b, sizeof(b));
    assert_bytes(b, n, "0a 03 \"key\" 12 02 08 00"); /* null_value is 08 00, not empty */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_KV, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_true(json_is_null(a.json));
    sl_pb_arg_dispose(&a);
    roundtrip_json(SL_PB_T_KV, "{\"k\": \"a\", \"v\": {\"x\": [1, \"y\", null, false]}}",
                   "{\"x\": [1, \"y\", null, false]}");

    /* ExitArgs without headers or body: ExitStatus(204). */
    KongPluginProtocol__ExitArgs x = KONG_PLUGIN_PROTOCOL__EXIT_ARGS__INIT;
    x.status = 204;
    n = pack(&x, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_EXIT_ARGS, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_int_equal(a.v.exit.status, 204);
    assert_int_equal(a.v.exit.body.len, 0);
    assert_null(a.json);
    sl_pb_arg_dispose(&a);

    /* Target, ConsumerSpec. */
    KongPluginProtocol__Target t = KONG_PLUGIN_PROTOCOL__TARGET__INIT;
    t.host = "10.0.0.1";
    t.port = 8443;
    n = pack(&t, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_TARGET, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_string_equal(a.v.target.host.p, "10.0.0.1");
    assert_int_equal(a.v.target.host.len, 8);
    assert_int_equal(a.v.target.port, 8443);
    sl_pb_arg_dispose(&a);
    KongPluginProtocol__ConsumerSpec cs = KONG_PLUGIN_PROTOCOL__CONSUMER_SPEC__INIT;
    cs.id = "alice";
    cs.by_username = 1;
    n = pack(&cs, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_CONSUMER_SPEC, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_string_equal(a.v.consumer_spec.id.p, "alice");
    assert_true(a.v.consumer_spec.by_username);
    sl_pb_arg_dispose(&a);

    /* AuthenticateArgs: both, one, none. */
    KongPluginProtocol__Consumer c = KONG_PLUGIN_PROTOCOL__CONSUMER__INIT;
    KongPluginProtocol__AuthenticatedCredential cr =
        KONG_PLUGIN_PROTOCOL__AUTHENTICATED_CREDENTIAL__INIT;
    KongPluginProtocol__AuthenticateArgs aa = KONG_PLUGIN_PROTOCOL__AUTHENTICATE_ARGS__INIT;
    char *tags[] = {"t1", "t2"};
    c.id = "c-id";
    c.username = "alice";
    c.created_at = 1700000000;
    c.n_tags = 2;
    c.tags = tags;
    cr.id = "cred";
    cr.consumer_id = "c-id";
    aa.consumer = &c;
    aa.credential = &cr;
    n = pack(&aa, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_AUTHENTICATE_ARGS, b, n, NULL, NULL, &a, &err),
                     SL_OK);
    assert_string_equal(a.v.auth.consumer->username, "alice");
    assert_string_equal(a.v.auth.credential->consumer_id, "c-id");
    assert_json(a.json, "{\"consumer\": {\"id\": \"c-id\", \"created_at\": 1700000000, "
                        "\"username\": \"alice\", \"custom_id\": \"\", \"tags\": [\"t1\", \"t2\"]},"
                        " \"credential\": {\"id\": \"cred\", \"consumer_id\": \"c-id\"}}");
    sl_pb_arg_dispose(&a);
    aa.consumer = NULL;
    n = pack(&aa, b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_AUTHENTICATE_ARGS, b, n, NULL, NULL, &a, &err),
                     SL_OK);
    assert_null(a.v.auth.consumer);
    assert_non_null(a.v.auth.credential);
    assert_json(a.json, "{\"credential\": {\"id\": \"cred\", \"consumer_id\": \"c-id\"}}");
    sl_pb_arg_dispose(&a);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_AUTHENTICATE_ARGS, "", 0, NULL, NULL, &a, &err),
                     SL_OK);
    assert_null(a.v.auth.consumer);
    assert_null(a.v.auth.credential);
    assert_json(a.json, "{}");
    sl_pb_arg_dispose(&a);

    /* Empty: zero bytes, or unknown fields that are skipped. */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_EMPTY, "", 0, NULL, NULL, &a, &err), SL_OK);
    sl_pb_arg_dispose(&a);
    n = unhex("08 01 12 01 61", b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_EMPTY, b, n, NULL, NULL, &a, &err), SL_OK);
    sl_pb_arg_dispose(&a);
    /* A String with a NUL stops there (protobuf-c's C string). */
    n = unhex("0a 03 61 00 62", b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_STRING, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_int_equal(a.v.str.len, 1);
    sl_pb_arg_dispose(&a);
}

static void test_struct_value(void **state)
{
    (void)state;
    /* Struct and Value both ways, every JSON type. */
    const char *doc =
        "{\"s\": \"x\", \"n\": -3, \"f\": 0.25, \"t\": true, \"u\": false, \"z\": null,"
        " \"o\": {\"a\": {}, \"b\": []}, \"l\": [[], [1, [2]], {\"k\": \"v\"}],"
        " \"\": \"empty key\", \"ü\": \"\"}";
    roundtrip_json(SL_PB_T_STRUCT, doc, doc);
    roundtrip_json(SL_PB_T_VALUE, doc, doc);
    roundtrip_json(SL_PB_T_VALUE, "null", "null");
    roundtrip_json(SL_PB_T_VALUE, "\"s\"", "\"s\"");
    roundtrip_json(SL_PB_T_VALUE, "[]", "[]");
    roundtrip_json(SL_PB_T_LIST_VALUE, "[1, \"a\", [true]]", "[1, \"a\", [true]]");
    /* Integral doubles become integers, others stay reals; beyond 2^53 a
     * double is not an exact integer any more. */
    roundtrip_json(SL_PB_T_VALUE, "[2.0, 2.5, -0.0, 9007199254740992, 1e300]",
                   "[2, 2.5, 0, 9007199254740992, 1e300]");
    roundtrip_json(SL_PB_T_VALUE, "18014398509481984", "18014398509481984.0");

    /* Exact bytes: an empty Struct is an empty payload; a null Value is
     * 08 00; nil is a zero-length frame. */
    assert_put_json(SL_PB_T_STRUCT, "{}", "");
    assert_put_json(SL_PB_T_VALUE, "null", "08 00");
    assert_put_json(SL_PB_T_VALUE, "{}", "2a 00");
    assert_put_json(SL_PB_T_VALUE, NULL, "");
    assert_put_json(SL_PB_T_STRUCT, "{\"a\": \"b\"}", "0a 08 0a 01 61 12 03 1a 01 62");

    /* Shapes that cannot make the message at all. */
    SB_DECL(out);
    sl_pb_err_t err;
    json_t *arr = jparse("[1]");
    json_t *obj = jparse("{}");
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_STRUCT, arr, NULL, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "Struct cannot be made from an array"));
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_LIST_VALUE, obj, NULL, &err), SL_ERR_INVALID);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_ROUTE, arr, NULL, &err), SL_ERR_INVALID);
    assert_int_equal(out.len, 0);
    json_decref(arr);
    json_decref(obj);

    /* What JSON cannot hold is refused on the way in. */
    uint8_t b[64];
    size_t n;
    sl_pb_arg_t a;
    n = unhex("11 00 00 00 00 00 00 f8 7f", b, sizeof(b)); /* NaN */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, b, n, NULL, NULL, &a, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "no JSON form"));
    n = unhex("11 00 00 00 00 00 00 f0 7f", b, sizeof(b)); /* +inf */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, b, n, NULL, NULL, &a, &err), SL_ERR_INVALID);
    n = unhex("1a 02 c3 28", b, sizeof(b)); /* a string that is not UTF-8 */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, b, n, NULL, NULL, &a, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "not UTF-8"));
    n = unhex("0a 07 0a 01 ff 12 02 08 00", b, sizeof(b)); /* a key that is not UTF-8 */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_STRUCT, b, n, NULL, NULL, &a, &err), SL_ERR_INVALID);
    /* A Value without a kind, a map entry without a value: null. */
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, "", 0, NULL, NULL, &a, &err), SL_OK);
    assert_true(json_is_null(a.json));
    sl_pb_arg_dispose(&a);
    n = unhex("0a 03 0a 01 61", b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_STRUCT, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_json(a.json, "{\"a\": null}");
    sl_pb_arg_dispose(&a);
    /* A repeated key: the last one wins, as in a protobuf map. */
    n = unhex("0a 08 0a 01 61 12 03 1a 01 31 0a 08 0a 01 61 12 03 1a 01 32", b, sizeof(b));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_STRUCT, b, n, NULL, NULL, &a, &err), SL_OK);
    assert_json(a.json, "{\"a\": \"2\"}");
    sl_pb_arg_dispose(&a);
    sl_sb_dispose(&out);
}

/* Nested arrays d deep: [[[...]]] holding 1. */
static json_t *nested_array(unsigned d)
{
    json_t *j = json_integer(1);
    for (unsigned i = 0; i < d; i++) {
        json_t *a = json_array();
        json_array_append_new(a, j);
        j = a;
    }
    return j;
}

/* The wire form of a Value holding d nested lists around an empty Value:
 * each level is Value{list_value: ListValue{values: [inner]}}. Written
 * backwards from the innermost, so that each level costs a few bytes. */
static uint8_t *nested_value_wire(unsigned d, size_t *len)
{
    size_t cap = 16 + (size_t)d * 8, pos = cap;
    uint8_t *buf = malloc(cap);
    for (unsigned i = 0; i < d; i++) {
        for (int k = 0; k < 2; k++) { /* ListValue.values (0a), then Value.list_value (32) */
            uint8_t v[10];
            size_t vn = 0;
            for (size_t x = cap - pos;; x >>= 7) {
                v[vn++] = (uint8_t)(x >= 0x80 ? (x & 0x7f) | 0x80 : x);
                if (x < 0x80)
                    break;
            }
            pos -= vn;
            memcpy(buf + pos, v, vn);
            buf[--pos] = k == 0 ? 0x0a : 0x32;
        }
    }
    *len = cap - pos;
    memmove(buf, buf + pos, *len);
    return buf;
}

static void test_bounds(void **state)
{
    (void)state;
    SB_DECL(out);
    sl_pb_err_t err;
    sl_pb_arg_t a;

    /* JSON to protobuf: depth. */
    json_t *j = nested_array(SL_PB_DEPTH_DEFAULT);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_VALUE, j, NULL, &err), SL_OK);
    sl_pb_frame_t f;
    only_frame(&out, &f);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, f.p, f.len, NULL, NULL, &a, &err), SL_OK);
    assert_true(json_equal(a.json, j));
    sl_pb_arg_dispose(&a);
    /* The same bytes with a lower limit: refused on the way in. */
    sl_pb_limits_t low = {10, 1000};
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, f.p, f.len, &low, NULL, &a, &err),
                     SL_ERR_TOO_BIG);
    json_decref(j);
    out.len = 0;
    j = nested_array(SL_PB_DEPTH_DEFAULT + 1);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_VALUE, j, NULL, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "deeper than 64 levels"));
    assert_int_equal(out.len, 0);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_LIST_VALUE, j, NULL, &err), SL_ERR_TOO_BIG);
    json_decref(j);
    j = jparse("{\"a\": {\"b\": {\"c\": 1}}}");
    sl_pb_limits_t three = {3, 1000}, two = {2, 1000};
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_STRUCT, j, &three, &err), SL_OK);
    out.len = 0;
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_STRUCT, j, &two, &err), SL_ERR_TOO_BIG);
    json_decref(j);

    /* JSON to protobuf: values. An array and its n elements are n + 1. */
    sl_pb_limits_t ten = {8, 10};
    j = jparse("[1, 2, 3, 4, 5, 6, 7, 8, 9]");
    out.len = 0;
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_LIST_VALUE, j, &ten, &err), SL_OK);
    only_frame(&out, &f);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_LIST_VALUE, f.p, f.len, &ten, NULL, &a, &err), SL_OK);
    sl_pb_arg_dispose(&a);
    json_array_append_new(j, json_integer(10));
    out.len = 0;
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_LIST_VALUE, j, &ten, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "more than 10 values"));
    assert_int_equal(out.len, 0);
    assert_int_equal(sl_pb_put_json(&out, SL_PB_T_LIST_VALUE, j, NULL, &err), SL_OK);
    only_frame(&out, &f);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_LIST_VALUE, f.p, f.len, &ten, NULL, &a, &err),
                     SL_ERR_TOO_BIG);
    json_decref(j);

    /* Protobuf to JSON, wire-built: exactly the limit passes, one more is
     * refused by the conversion; a nesting bomb far beyond it is refused by
     * the scan before protobuf-c would recurse into it. */
    size_t n;
    uint8_t *w = nested_value_wire(SL_PB_DEPTH_DEFAULT, &n);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, w, n, NULL, NULL, &a, &err), SL_OK);
    sl_pb_arg_dispose(&a);
    free(w);
    w = nested_value_wire(SL_PB_DEPTH_DEFAULT + 1, &n);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, w, n, NULL, NULL, &a, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "deeper than 64 levels"));
    free(w);
    w = nested_value_wire(200000, &n);
    assert_true(n > 400000);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, w, n, NULL, NULL, &a, &err), SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "nested deeper than"));
    /* The same bomb inside a KV, an ExitArgs' headers, a Struct. */
    uint8_t *kvw = malloc(n + 16);
    kvw[0] = 0x12;
    size_t o = 1;
    for (size_t v = n;; v >>= 7) {
        kvw[o++] = (uint8_t)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
        if (v < 0x80)
            break;
    }
    memcpy(kvw + o, w, n);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_KV, kvw, o + n, NULL, NULL, &a, &err),
                     SL_ERR_TOO_BIG);
    free(kvw);
    free(w);

    /* Many fields: 300000 empty list elements pass the scan (which is
     * looser), the conversion counts 300001 values; a million fields stop
     * at the scan. */
    n = 300000 * 2;
    w = malloc(1000000 * 2);
    for (size_t i = 0; i < 1000000; i++) {
        w[2 * i] = 0x0a;
        w[2 * i + 1] = 0x00;
    }
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_LIST_VALUE, w, n, NULL, NULL, &a, &err),
                     SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "more than 100000 values"));
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_LIST_VALUE, w, 1000000 * 2, NULL, NULL, &a, &err),
                     SL_ERR_TOO_BIG);
    assert_non_null(strstr(err.msg, "fields"));
    free(w);

    /* max_depth is clamped, so a huge one cannot unbound the recursion. */
    sl_pb_limits_t huge = {1000000000u, 1000000};
    w = nested_value_wire(100000, &n);
    assert_int_equal(sl_pb_arg_decode(SL_PB_T_VALUE, w, n, &huge, NULL, &a, &err), SL_ERR_TOO_BIG);
    free(w);
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* Entities and results                                                      */

static void test_entities(void **state)
{
    (void)state;
    /* A Kong route: headers is a map in Kong and repeated string in the
     * proto (left out), unknown keys ignored, nulls left out. */
    roundtrip_json(SL_PB_T_ROUTE,
                   "{\"id\": \"r1\", \"created_at\": 1700000000, \"updated_at\": 1700000001,"
                   " \"name\": \"route\", \"protocols\": [\"http\", \"https\"],"
                   " \"methods\": null, \"hosts\": [\"example.com\"], \"paths\": [\"/a\"],"
                   " \"headers\": {\"x-a\": [\"1\"]}, \"https_redirect_status_code\": 426,"
                   " \"regex_priority\": 0, \"strip_path\": true, \"preserve_host\": false,"
                   " \"snis\": [], \"sources\": [{\"ip\": \"10.0.0.1\"}], \"tags\": [\"t\"],"
                   " \"service\": {\"id\": \"s1\"}, \"request_buffering\": true}",
                   "{\"id\": \"r1\", \"created_at\": 1700000000, \"updated_at\": 1700000001,"
                   " \"name\": \"route\", \"protocols\": [\"http\", \"https\"], \"methods\": [],"
                   " \"hosts\": [\"example.com\"], \"paths\": [\"/a\"], \"headers\": [],"
                   " \"https_redirect_status_code\": 426, \"regex_priority\": 0,"
                   " \"strip_path\": true, \"preserve_host\": false, \"snis\": [],"
                   " \"sources\": [], \"destinations\": [], \"tags\": [\"t\"],"
                   " \"service\": {\"id\": \"s1\"}}");
    roundtrip_json(SL_PB_T_SERVICE,
                   "{\"id\": \"s1\", \"created_at\": 1, \"updated_at\": 2, \"name\": \"svc\","
                   " \"retries\": 5, \"protocol\": \"http\", \"host\": \"upstream\", \"port\": 80,"
                   " \"path\": null, \"connect_timeout\": 60000, \"write_timeout\": 60000,"
                   " \"read_timeout\": 60000, \"tags\": null, \"client_certificate\": null,"
                   " \"enabled\": true}",
                   "{\"id\": \"s1\", \"created_at\": 1, \"updated_at\": 2, \"name\": \"svc\","
                   " \"retries\": 5, \"protocol\": \"http\", \"host\": \"upstream\", \"port\": 80,"
                   " \"path\": \"\", \"connect_timeout\": 60000, \"write_timeout\": 60000,"
                   " \"read_timeout\": 60000, \"tags\": []}");
    roundtrip_json(SL_PB_T_CONSUMER,
                   "{\"id\": \"c1\", \"created_at\": 1.0, \"username\": \"alice\","
                   " \"custom_id\": null, \"tags\": [\"a\", 1, \"b\"]}",
                   "{\"id\": \"c1\", \"created_at\": 1, \"username\": \"alice\","
                   " \"custom_id\": \"\", \"tags\": [\"a\", \"b\"]}");
    roundtrip_json(SL_PB_T_CREDENTIAL, "{\"id\": \"k1\", \"consumer_id\": \"c1\", \"key\": \"s\"}",
                   "{\"id\": \"k1\", \"consumer_id\": \"c1\"}");
    /* Type mismatches are left out; numbers out of an int32 too. */
    roundtrip_json(SL_PB_T_SERVICE,
                   "{\"id\": 5, \"port\": \"80\", \"retries\": 4294967296, \"tags\": \"x\","
                   " \"client_certificate\": \"c\", \"read_timeout\": 1.5}",
                   "{\"id\": \"\", \"created_at\": 0, \"updated_at\": 0, \"name\": \"\","
                   " \"retries\": 0, \"protocol\": \"\", \"host\": \"\", \"port\": 0,"
                   " \"path\": \"\", \"connect_timeout\": 0, \"write_timeout\": 0,"
                   " \"read_timeout\": 0, \"tags\": []}");
    /* nil: a zero-length frame (go-pdk gets a zero Consumer). */
    assert_put_json(SL_PB_T_CONSUMER, NULL, "");
    assert_put_json(SL_PB_T_CREDENTIAL, "{\"id\": \"k\"}", "0a 01 6b");

    /* MemoryStats: the nested messages always, even for nil and {}. */
    assert_put_json(SL_PB_T_MEMORY_STATS, NULL, "0a 04 0a 00 12 00");
    assert_put_json(SL_PB_T_MEMORY_STATS, "{}", "0a 04 0a 00 12 00");
    assert_put_json(SL_PB_T_MEMORY_STATS, "{\"lua_shared_dicts\": {}, \"workers_lua_vms\": []}",
                    "0a 04 0a 00 12 00");
    assert_put_json(SL_PB_T_MEMORY_STATS,
                    "{\"lua_shared_dicts\": {\"kong\": {\"allocated_slabs\": 1, \"capacity\": 2}},"
                    " \"workers_lua_vms\": [{\"pid\": 7, \"http_allocated_gc\": 300}]}",
                    "0a 08 0a 04 08 01 10 02 12 00 12 05 08 ac 02 10 07");
    roundtrip_json(SL_PB_T_MEMORY_STATS,
                   "{\"lua_shared_dicts\": {}, \"workers_lua_vms\": [{\"pid\": 7,"
                   " \"http_allocated_gc\": 3000000}]}",
                   "{\"lua_shared_dicts\": {\"kong\": {\"allocated_slabs\": 0, \"capacity\": 0},"
                   " \"kong_db_cache\": {\"allocated_slabs\": 0, \"capacity\": 0}},"
                   " \"workers_lua_vms\": [{\"http_allocated_gc\": 3000000, \"pid\": 7}]}");

    /* UriCapturesResult: the sl_pdk shape; named is a map<string, bytes>. */
    roundtrip_json(SL_PB_T_URI_CAPTURES_RESULT,
                   "{\"unnamed\": [\"c1\", \"\"], \"named\": {\"version\": \"c1\"}}",
                   "{\"unnamed\": [\"c1\", \"\"], \"named\": {\"version\": \"c1\"}}");
    assert_put_json(SL_PB_T_URI_CAPTURES_RESULT, "{\"unnamed\": [], \"named\": {}}", "");
    assert_put_json(SL_PB_T_URI_CAPTURES_RESULT, "{\"named\": {\"a\": \"b\", \"n\": 1}}",
                    "12 06 0a 01 61 12 01 62");

    /* RawBodyResult: each member of the oneof, the empty body present. */
    SB_DECL(out);
    sl_pb_put_raw_body(&out, SL_PB_RAW_CONTENT, "", 0);
    assert_bytes(out.p, out.len, "02 00 00 00 0a 00");
    sl_pb_arg_t a;
    decode_ok(SL_PB_T_RAW_BODY_RESULT, &out, &a);
    assert_json(a.json, "{\"content\": \"\"}");
    sl_pb_arg_dispose(&a);
    out.len = 0;
    sl_pb_put_raw_body(&out, SL_PB_RAW_CONTENT, "body", 4);
    assert_bytes(out.p, out.len, "06 00 00 00 0a 04 \"body\"");
    out.len = 0;
    sl_pb_put_raw_body(&out, SL_PB_RAW_FILEPATH, "/tmp/b", 6);
    assert_bytes(out.p, out.len, "08 00 00 00 12 06 \"/tmp/b\"");
    decode_ok(SL_PB_T_RAW_BODY_RESULT, &out, &a);
    assert_json(a.json, "{\"body_filepath\": \"/tmp/b\"}");
    sl_pb_arg_dispose(&a);
    out.len = 0;
    sl_pb_put_raw_body(&out, SL_PB_RAW_ERROR, "too big", 7);
    assert_bytes(out.p, out.len, "09 00 00 00 1a 07 \"too big\"");
    /* From JSON, the lowest-numbered member given wins. */
    assert_put_json(SL_PB_T_RAW_BODY_RESULT, "{\"error\": \"e\", \"content\": \"c\"}", "0a 01 63");
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* The event state machine                                                   */

static void feed_hex(sl_pb_event_t *ev, const char *hex, int want, sl_pb_call_t *call)
{
    /* call->arg points into the frame fed last: it must outlive this call. */
    static uint8_t b[256];
    size_t n = unhex(hex, b, sizeof(b));
    sl_pb_call_t dummy;
    int rc = sl_pb_event_feed(ev, b, n, call ? call : &dummy);
    if (rc != want)
        fail_msg("feed %s: %d (%s), wanted %d", hex, rc, ev->err.msg, want);
}

static void feed_str(sl_pb_event_t *ev, const char *s, int want, sl_pb_call_t *call)
{
    sl_pb_call_t dummy;
    int rc = sl_pb_event_feed(ev, s, strlen(s), call ? call : &dummy);
    if (rc != want)
        fail_msg("feed \"%s\": %d (%s), wanted %d", s, rc, ev->err.msg, want);
}

static void test_event_script(void **state)
{
    (void)state;
    SB_DECL(out);
    sl_pb_event_t ev;
    sl_pb_call_t call;
    sl_pb_arg_t a;

    /* get_method (Empty argument), set_header, then exit: terminal. */
    sl_pb_event_start(&ev, &out, 10, 3, "rewrite");
    assert_int_equal(ev.state, SL_PB_EV_METHOD);
    feed_str(&ev, "kong.request.get_method", SL_AGAIN, NULL);
    assert_int_equal(ev.state, SL_PB_EV_ARG);
    feed_hex(&ev, "", SL_OK, &call);
    assert_int_equal(call.method->id, SL_PB_M_REQUEST_GET_METHOD);
    assert_int_equal(call.arg_len, 0);
    assert_int_equal(call.method->in, SL_PB_T_EMPTY);
    assert_int_equal(ev.state, SL_PB_EV_ANSWER);
    /* The server must wait for the answer. */
    sl_pb_event_t copy = ev;
    feed_str(&copy, "kong.request.get_path", SL_ERR_INVALID, NULL);
    assert_int_equal(copy.state, SL_PB_EV_FAILED);
    assert_non_null(strstr(copy.err.msg, "before its call to kong.request.get_method"));
    sl_pb_put_string(&out, "GET", 3);
    assert_int_equal(sl_pb_event_answered(&ev), SL_OK);
    assert_int_equal(sl_pb_event_answered(&ev), SL_ERR_INVALID);
    assert_int_equal(ev.state, SL_PB_EV_METHOD);

    feed_str(&ev, "kong.response.exit", SL_AGAIN, NULL);
    feed_hex(&ev, "08 93 03 12 04 6e 6f 70 65", SL_OK, &call);
    assert_int_equal(call.method->id, SL_PB_M_RESPONSE_EXIT);
    assert_true(call.method->flags & SL_PB_M_TERMINAL);
    assert_int_equal(ev.state, SL_PB_EV_EXITED);
    assert_int_equal(ev.calls, 2);
    assert_int_equal(
        sl_pb_arg_decode(call.method->in, call.arg, call.arg_len, NULL, NULL, &a, NULL), SL_OK);
    assert_int_equal(a.v.exit.status, 403);
    sl_pb_arg_dispose(&a);
    /* Never answered; anything after it is out of turn. */
    assert_int_equal(sl_pb_event_answered(&ev), SL_ERR_INVALID);
    feed_hex(&ev, "", SL_ERR_INVALID, NULL);
    assert_non_null(strstr(ev.err.msg, "kong.response.exit"));
    assert_int_equal(ev.state, SL_PB_EV_FAILED);

    /* A sequence mismatch after the end marker. */
    out.len = 0;
    sl_pb_event_start(&ev, &out, 8, 7, "access");
    feed_hex(&ev, "", SL_AGAIN, NULL);
    assert_int_equal(ev.state, SL_PB_EV_RETURN);
    feed_hex(&ev, "08 0a", SL_ERR_INVALID, NULL);
    assert_int_equal(ev.state, SL_PB_EV_FAILED);
    assert_non_null(strstr(ev.err.msg, "sequence 10 to call 8"));

    /* The right sequence, then nothing more may come. */
    sl_pb_event_start(&ev, &out, 8, 7, "access");
    feed_hex(&ev, "", SL_AGAIN, NULL);
    feed_hex(&ev, "08 08", SL_DONE, NULL);
    assert_int_equal(ev.state, SL_PB_EV_DONE);
    assert_int_equal(ev.calls, 0);
    feed_hex(&ev, "", SL_ERR_INVALID, NULL);

    /* Two end markers; garbage in place of the RpcReturn. */
    sl_pb_event_start(&ev, &out, 8, 7, "access");
    feed_hex(&ev, "", SL_AGAIN, NULL);
    feed_hex(&ev, "", SL_ERR_INVALID, NULL);
    assert_non_null(strstr(ev.err.msg, "two end markers"));
    sl_pb_event_start(&ev, &out, 8, 7, "access");
    feed_hex(&ev, "", SL_AGAIN, NULL);
    feed_hex(&ev, "ff ff", SL_ERR_INVALID, NULL);
    /* An RpcReturn carrying a result is still accepted, as Kong only
     * checks the sequence. */
    sl_pb_event_start(&ev, &out, 8, 7, "access");
    feed_hex(&ev, "", SL_AGAIN, NULL);
    feed_hex(&ev, "08 08 fa 01 00", SL_DONE, NULL);

    /* Unknown methods: named in the error, bytes escaped. */
    sl_pb_event_start(&ev, &out, 12, 7, "access");
    feed_str(&ev, "kong.response.set_raw_body", SL_ERR_NOT_FOUND, NULL);
    assert_non_null(strstr(ev.err.msg, "\"kong.response.set_raw_body\""));
    assert_int_equal(ev.state, SL_PB_EV_FAILED);
    sl_pb_event_start(&ev, &out, 12, 7, "access");
    feed_hex(&ev, "6b 00 ff 22", SL_ERR_NOT_FOUND, NULL);
    assert_non_null(strstr(ev.err.msg, "\"k\\x00\\xff\\x22\""));
    /* A name longer than any method, and a long binary one, cut in the
     * message. */
    char longname[2000];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    sl_pb_event_start(&ev, &out, 12, 7, "access");
    feed_str(&ev, longname, SL_ERR_NOT_FOUND, NULL);
    assert_non_null(strstr(ev.err.msg, "aaa...\""));
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* The method table                                                          */

/* Kong's rule (2.5): "Kong." .. rpc, "_" -> ".", "_" between a lower-case
 * letter (and its digits) and an upper-case one, lower-cased. */
static void derive_name(const char *rpc, char *out, size_t cap)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "Kong.%s", rpc);
    size_t o = 0;
    for (size_t i = 0; tmp[i]; i++) {
        char ch = tmp[i];
        if (ch == '_')
            ch = '.';
        if (ch >= 'A' && ch <= 'Z' && i > 0) {
            size_t j = i;
            while (j > 0 && tmp[j - 1] >= '0' && tmp[j - 1] <= '9')
                j--;
            if (j > 0 && tmp[j - 1] >= 'a' && tmp[j - 1] <= 'z') {
                assert_true(o + 1 < cap);
                out[o++] = '_';
            }
        }
        assert_true(o + 1 < cap);
        out[o++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    out[o] = '\0';
}

static void test_method_table(void **state)
{
    (void)state;
    assert_int_equal(SL_PB_M_COUNT, 74);
    const ProtobufCServiceDescriptor *svc = &kong_plugin_protocol__kong__descriptor;
    assert_int_equal(svc->n_methods, 74);

    unsigned terminal = 0, snapshot = 0;
    for (unsigned i = 0; i < SL_PB_M_COUNT; i++) {
        const sl_pb_method_t *m = sl_pb_method_get((sl_pb_method_id_t)i);
        assert_int_equal(m->id, i);
        assert_true(strlen(m->name) <= SL_PB_METHOD_NAME_MAX);
        assert_true(strncmp(m->name, "kong.", 5) == 0);
        if (i > 0)
            assert_true(strcmp(sl_pb_method_get((sl_pb_method_id_t)(i - 1))->name, m->name) < 0);
        assert_ptr_equal(sl_pb_method_find(m->name, strlen(m->name)), m);
        assert_true((unsigned)m->in < SL_PB_T_COUNT);
        assert_true((unsigned)m->out < SL_PB_T_COUNT);
        assert_non_null(sl_pb_type_descriptor(m->in));
        assert_non_null(sl_pb_type_descriptor(m->out));
        terminal += (m->flags & SL_PB_M_TERMINAL) != 0;
        snapshot += (m->flags & SL_PB_M_LOG_SNAPSHOT) != 0;
    }
    assert_int_equal(terminal, 1);
    assert_int_equal(snapshot, 13);

    /* Every rpc of the proto's service: its wire name by Kong's rule (or
     * the MethodName option of the two Ctx rpcs) is in the table with the
     * rpc's input and output types. */
    for (unsigned i = 0; i < svc->n_methods; i++) {
        const ProtobufCMethodDescriptor *md = &svc->methods[i];
        char name[128];
        if (strcmp(md->name, "Ctx_SetShared") == 0)
            snprintf(name, sizeof(name), "kong.ctx.shared.set");
        else if (strcmp(md->name, "Ctx_GetShared") == 0)
            snprintf(name, sizeof(name), "kong.ctx.shared.get");
        else
            derive_name(md->name, name, sizeof(name));
        const sl_pb_method_t *m = sl_pb_method_find(name, strlen(name));
        if (!m)
            fail_msg("%s (%s) is not in the table", name, md->name);
        assert_string_equal(m->rpc, md->name);
        assert_ptr_equal(sl_pb_type_descriptor(m->in), md->input);
        assert_ptr_equal(sl_pb_type_descriptor(m->out), md->output);
    }
    char name[128];
    derive_name("Nginx_GetTls1VersionStr", name, sizeof(name));
    assert_string_equal(name, "kong.nginx.get_tls1_version_str");

    /* A few by hand, against section 4. */
    const sl_pb_method_t *m = sl_pb_method_find("kong.service.set_upstream", 25);
    assert_int_equal(m->in, SL_PB_T_STRING);
    assert_int_equal(m->out, SL_PB_T_BOOL);
    m = sl_pb_method_find("kong.service.response.get_raw_body", 34);
    assert_int_equal(m->out, SL_PB_T_BYTE_STRING);
    m = sl_pb_method_find("kong.nginx.set_ctx", 18);
    assert_int_equal(m->in, SL_PB_T_KV);
    assert_int_equal(m->out, SL_PB_T_STRING);
    m = sl_pb_method_find("kong.client.get_credential", 26);
    assert_int_equal(m->out, SL_PB_T_CREDENTIAL);
    assert_string_equal(sl_pb_type_name(m->out), "AuthenticatedCredential");
    m = sl_pb_method_find("kong.log.set_serialize_value", 28);
    assert_int_equal(m->in, SL_PB_T_KV);

    /* Unknown names. */
    assert_null(sl_pb_method_find("", 0));
    assert_null(sl_pb_method_find("kong", 4));
    assert_null(sl_pb_method_find("kong.request.get_heade", 22));
    assert_null(sl_pb_method_find("kong.request.get_headerx", 24));
    assert_null(sl_pb_method_find("kong.request.get_header\0", 24));
    assert_null(sl_pb_method_find("Kong.request.get_header", 23));
    assert_null(sl_pb_method_find("kong.response.set_raw_body", 26));
    assert_null(sl_pb_method_find("kong.ctx.set_shared", 19));
    assert_null(sl_pb_method_find("zzzz", 4));
    /* A prefix of the name given is a method, the name is longer. */
    assert_null(sl_pb_method_find("kong.log.err.x", 14));
    assert_non_null(sl_pb_method_find("kong.log.err.x", 12));
}

/* ------------------------------------------------------------------------ */
/* start_instance's config                                                   */

static void test_config_json(void **state)
{
    (void)state;
    json_t *conf = jparse("{\"message\": \"hi\", \"tags\": [], \"opt\": null, \"n\": 1.5,"
                          " \"nested\": {\"list\": []}}");
    sl_pb_instance_conf_t c = {.config = conf, .seq = 5, .plugin_id = "p-1", .key = "k"};
    char *text;
    size_t len;
    sl_pb_err_t err;
    assert_int_equal(sl_pb_config_json(&c, &text, &len, &err), SL_OK);
    assert_int_equal(len, strlen(text));
    /* Compact, empty arrays as []. */
    assert_null(strchr(text, ' '));
    assert_non_null(strstr(text, "\"tags\":[]"));
    assert_non_null(strstr(text, "\"list\":[]"));
    json_t *j = jparse(text);
    assert_json(j, "{\"message\": \"hi\", \"tags\": [], \"opt\": null, \"n\": 1.5,"
                   " \"nested\": {\"list\": []}, \"__seq__\": 5, \"__plugin_id\": \"p-1\","
                   " \"__key__\": \"k\", \"route_id\": null, \"service_id\": null,"
                   " \"consumer_id\": null, \"plugin_instance_name\": null}");
    json_decref(j);
    /* The caller's config is not changed. */
    assert_int_equal(json_object_size(conf), 5);
    assert_null(json_object_get(conf, "__seq__"));

    /* It travels as CmdStartInstance.config. */
    SB_DECL(out);
    sl_pb_call_start_instance(&out, 2, "go-hello", text, len);
    sl_pb_frame_t f;
    only_frame(&out, &f);
    KongPluginProtocol__RpcCall *call = kong_plugin_protocol__rpc_call__unpack(NULL, f.len, f.p);
    assert_non_null(call);
    assert_int_equal(call->call_case, KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_START_INSTANCE);
    assert_string_equal(call->cmd_start_instance->name, "go-hello");
    assert_int_equal(call->cmd_start_instance->config.len, len);
    assert_memory_equal(call->cmd_start_instance->config.data, text, len);
    kong_plugin_protocol__rpc_call__free_unpacked(call, NULL);
    free(text);

    /* Every key, a config key overridden, the largest __seq__. */
    json_t *conf2 = jparse("{\"__seq__\": \"user\", \"route_id\": 1}");
    sl_pb_instance_conf_t c2 = {.config = conf2,
                                .seq = INT32_MAX,
                                .plugin_id = "p",
                                .ws_id = "ws",
                                .key = "plugins:x",
                                .route_id = "r",
                                .service_id = "s",
                                .consumer_id = "c",
                                .instance_name = "inst"};
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_OK);
    j = jparse(text);
    assert_json(j, "{\"__seq__\": 2147483647, \"__plugin_id\": \"p\", \"__ws_id\": \"ws\","
                   " \"__key__\": \"plugins:x\", \"route_id\": \"r\", \"service_id\": \"s\","
                   " \"consumer_id\": \"c\", \"plugin_instance_name\": \"inst\"}");
    json_decref(j);
    free(text);

    /* Refusals. */
    text = (char *)"untouched";
    c2.seq = 0;
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "__seq__ 0"));
    c2.seq = (int64_t)INT32_MAX + 1;
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_ERR_INVALID);
    c2.seq = 1;
    c2.plugin_id = NULL;
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "__plugin_id"));
    c2.plugin_id = "p";
    c2.route_id = "\xff";
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "route_id"));
    json_t *arr = jparse("[]");
    c2.route_id = NULL;
    c2.config = arr;
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_ERR_INVALID);
    c2.config = NULL;
    assert_int_equal(sl_pb_config_json(&c2, &text, &len, &err), SL_ERR_INVALID);
    assert_string_equal(text, "untouched");
    json_decref(arr);
    json_decref(conf2);
    json_decref(conf);
    sl_sb_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* RpcReturn results                                                         */

static void test_returns(void **state)
{
    (void)state;
    uint8_t b[512];
    size_t n;
    sl_pb_return_t *r;
    sl_pb_err_t err;

    KongPluginProtocol__RpcReturn ret = KONG_PLUGIN_PROTOCOL__RPC_RETURN__INIT;
    KongPluginProtocol__PluginNames names = KONG_PLUGIN_PROTOCOL__PLUGIN_NAMES__INIT;
    char *nv[] = {"go-hello", "go-log"};
    names.n_names = 2;
    names.names = nv;
    ret.sequence = 2;
    ret.return_case = KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_PLUGIN_NAMES;
    ret.plugin_names = &names;
    n = pack(&ret, b, sizeof(b));
    assert_int_equal(sl_pb_return_parse(b, n, 2,
                                        KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_PLUGIN_NAMES, NULL,
                                        &r, &err),
                     SL_OK);
    assert_int_equal(r->plugin_names->n_names, 2);
    assert_string_equal(r->plugin_names->names[1], "go-log");
    sl_pb_return_free(r, NULL);
    /* Another result than the one expected; another sequence. */
    assert_int_equal(sl_pb_return_parse(b, n, 2,
                                        KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS,
                                        NULL, &r, &err),
                     SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "with plugin_names, expected instance_status"));
    assert_int_equal(sl_pb_return_parse(b, n, 4, SL_PB_RETURN_ANY, NULL, &r, &err), SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "sequence 2 to call 4"));

    KongPluginProtocol__PluginInfo info = KONG_PLUGIN_PROTOCOL__PLUGIN_INFO__INIT;
    char *phases[] = {"access", "log"};
    info.name = "go-hello";
    info.updated_at = 1;
    info.loaded_at = 2;
    info.n_phases = 2;
    info.phases = phases;
    info.version = "0.2";
    info.priority = 1;
    info.schema = "{}";
    ret.sequence = 4;
    ret.return_case = KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_PLUGIN_INFO;
    ret.plugin_info = &info;
    n = pack(&ret, b, sizeof(b));
    assert_int_equal(sl_pb_return_parse(b, n, 4,
                                        KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_PLUGIN_INFO, NULL,
                                        &r, &err),
                     SL_OK);
    assert_string_equal(r->plugin_info->phases[0], "access");
    assert_int_equal(r->plugin_info->priority, 1);
    sl_pb_return_free(r, NULL);

    /* instance_status with a config Value; close_instance's "---" name. */
    KongPluginProtocol__InstanceStatus st = KONG_PLUGIN_PROTOCOL__INSTANCE_STATUS__INIT;
    KongPluginProtocol__Value v = KONG_PLUGIN_PROTOCOL__VALUE__INIT;
    v.kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_STRING_VALUE;
    v.string_value = "cfg";
    st.name = "---";
    st.instance_id = 7;
    st.config = &v;
    st.started_at = 1700000000;
    ret.sequence = 6;
    ret.return_case = KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS;
    ret.instance_status = &st;
    n = pack(&ret, b, sizeof(b));
    assert_int_equal(sl_pb_return_parse(b, n, 6,
                                        KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS,
                                        NULL, &r, &err),
                     SL_OK);
    assert_string_equal(r->instance_status->name, "---");
    assert_string_equal(r->instance_status->config->string_value, "cfg");
    sl_pb_return_free(r, NULL);

    /* handle_event's return: a sequence only. */
    n = unhex("08 08", b, sizeof(b));
    assert_int_equal(sl_pb_return_parse(b, n, 8, KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN__NOT_SET,
                                        NULL, NULL, &err),
                     SL_OK);
    assert_int_equal(sl_pb_return_parse(b, n, 8,
                                        KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS,
                                        NULL, NULL, &err),
                     SL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "with no result"));
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                       */

/* A protobuf-c allocator that fails from the nth allocation on. */
struct failing {
    long left;
    long live;
};

static void *failing_alloc(void *data, size_t n)
{
    struct failing *fa = data;
    if (fa->left-- <= 0)
        return NULL;
    fa->live++;
    return malloc(n);
}

static void failing_free(void *data, void *p)
{
    struct failing *fa = data;
    if (p)
        fa->live--;
    free(p);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    uint8_t b[256];
    sl_pb_err_t err;
    sl_pb_arg_t a;
    /* ExitArgs from the trace: a message, a Struct, a ListValue, strings. */
    size_t n = unhex("08 93 03 12 04 6e 6f 70 65 1a 15 0a 13 0a 03 58 2d 41 12 0c 32 0a 0a 03 "
                     "1a 01 31 0a 03 1a 01 32",
                     b, sizeof(b));
    int rc = SL_ERR_NOMEM;
    long k;
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        struct failing fa = {k, 0};
        ProtobufCAllocator alloc = {failing_alloc, failing_free, &fa};
        rc = sl_pb_arg_decode(SL_PB_T_EXIT_ARGS, b, n, NULL, &alloc, &a, &err);
        if (rc == SL_ERR_NOMEM) {
            assert_non_null(strstr(err.msg, "out of memory"));
            assert_int_equal(fa.live, 0);
        } else {
            assert_int_equal(rc, SL_OK);
            assert_true(fa.live > 0);
            sl_pb_arg_dispose(&a);
            assert_int_equal(fa.live, 0);
        }
    }
    assert_true(k > 3);

    /* The same decode with jansson failing: the JSON headers. */
    rc = SL_ERR_NOMEM;
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        json_fail_after(k);
        rc = sl_pb_arg_decode(SL_PB_T_EXIT_ARGS, b, n, NULL, NULL, &a, &err);
        json_set_alloc_funcs(malloc, free);
        if (rc == SL_OK)
            sl_pb_arg_dispose(&a);
        else
            assert_int_equal(rc, SL_ERR_NOMEM);
    }
    assert_true(k > 3);

    /* An entity to JSON, and the config text. */
    KongPluginProtocol__Consumer c = KONG_PLUGIN_PROTOCOL__CONSUMER__INIT;
    char *tags[] = {"a", "b"};
    c.id = "c";
    c.n_tags = 2;
    c.tags = tags;
    n = pack(&c, b, sizeof(b));
    rc = SL_ERR_NOMEM;
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        json_fail_after(k);
        rc = sl_pb_arg_decode(SL_PB_T_CONSUMER, b, n, NULL, NULL, &a, &err);
        json_set_alloc_funcs(malloc, free);
        if (rc == SL_OK)
            sl_pb_arg_dispose(&a);
        else
            assert_int_equal(rc, SL_ERR_NOMEM);
    }
    json_t *conf = jparse("{\"a\": [1, 2], \"b\": \"x\"}");
    sl_pb_instance_conf_t ic = {.config = conf, .seq = 1, .plugin_id = "p", .ws_id = "w"};
    rc = SL_ERR_NOMEM;
    for (k = 0; rc == SL_ERR_NOMEM; k++) {
        char *text;
        size_t len;
        json_fail_after(k);
        rc = sl_pb_config_json(&ic, &text, &len, &err);
        json_set_alloc_funcs(malloc, free);
        if (rc == SL_OK)
            free(text);
        else
            assert_int_equal(rc, SL_ERR_NOMEM);
    }
    assert_true(k > 3);
    json_decref(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_handle_event),
        cmocka_unit_test(test_trace_commands),
        cmocka_unit_test(test_trace_payloads),
        cmocka_unit_test(test_frame_edges),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_scalar_wrappers),
        cmocka_unit_test(test_argument_messages),
        cmocka_unit_test(test_struct_value),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_event_script),
        cmocka_unit_test(test_method_table),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_returns),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
