/*
 * Unit tests of the ProtoBuf:1 PDK calls (dataplane/pdk_rpc.c) on a request
 * object built by hand, as tests/unit/test_pdk.c builds it, with a real
 * generation for consumers, routes, services and upstreams. Arguments are
 * made from JSON by the codec (or taken byte for byte from the protocol
 * reference's trace); answers are checked as exact bytes or decoded by the
 * output type. Every method answers one frame of its output type (but
 * kong.response.exit, which answers none); refused calls answer the zero
 * value and log a warn line naming the method; arguments that do not
 * decode fail the call with nothing appended.
 */
#include "pdk_rpc.h"
#include "declarative.h"
#include "log.h"
#include "proxy-t.h"

#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bytes.h"
#include "pdk_request.h"

#define SVC "11111111-1111-4111-8111-111111111111"
#define RT "22222222-2222-4222-8222-222222222222"
#define ALICE "33333333-3333-4333-8333-333333333333"
#define NOBODY "55555555-5555-4555-8555-555555555555"

/* ------------------------------------------------------------------------ */
/* The request (as test_pdk.c) and a generation                              */

struct fixture {
    sl_dp_conf_t conf;
    sl_worker_t w;
    sl_conn_t c;
    sl_req_t r;
    sl_h1_header_t hs[4];
};

static sl_gen_t *gen;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    pdk_request_init(&f->conf, &f->w, &f->c, &f->r, f->hs, "/a/b?q=a%20b&flag&q=2", "/a/b",
                     "q=a%20b&flag&q=2");
    f->r.gen = gen;
    if (truncate(test_log_path, 0) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->r.body_buf)
        evbuffer_free(f->r.body_buf);
    if (f->r.resp_body)
        evbuffer_free(f->r.resp_body);
    sl_arena_dispose(&f->r.arena);
    free(f);
    return 0;
}

#define P(f) ((sl_pdk_t *)&(f)->r)

/* JSON text with single quotes for double quotes, parsed. */
static json_t *jq(const char *text)
{
    char *s = strdup(text);
    for (char *c = s; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    if (!v)
        fail_msg("bad JSON in the test: %s: %s", s, e.text);
    free(s);
    return v;
}

static const char *sq(const char *text)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s", text);
    for (char *c = buf; *c; c++)
        if (*c == '\'')
            *c = '"';
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Calling                                                                   */

static uint8_t answer[65536];
static size_t answer_len;

/* Performs method id with n bytes of argument; returns its code, with the
 * one frame it appended in answer/answer_len (checked to be one whole
 * frame), or nothing appended on an error or an exit. */
static int call_raw(struct fixture *f, sl_pb_method_id_t id, const void *arg, size_t n)
{
    char st[16];
    sl_sb_t out;
    sl_sb_init(&out, st, sizeof(st));
    sl_pb_err_t err = {{0}};
    int rc = sl_pdk_rpc_pb(P(f), sl_pb_method_get(id), arg, n, &out, &err);
    if (rc == SL_OK) {
        sl_pb_frame_t fr;
        assert_int_equal(sl_pb_frame_decode(out.p, out.len, SL_PB_FRAME_MAX_DEFAULT, &fr, NULL),
                         SL_OK);
        assert_int_equal(fr.size, out.len);
        assert_true(fr.len <= sizeof(answer));
        memcpy(answer, fr.p, fr.len);
        answer_len = fr.len;
    } else {
        assert_int_equal(out.len, 0);
        if (rc != SL_DONE)
            assert_true(err.msg[0] != '\0');
    }
    sl_sb_dispose(&out);
    return rc;
}

/* The same with the argument made from JSON (single quotes; NULL: none)
 * as the method's input type. */
static int call(struct fixture *f, sl_pb_method_id_t id, const char *json)
{
    if (!json)
        return call_raw(f, id, NULL, 0);
    json_t *v = jq(json);
    char st[64];
    sl_sb_t b;
    sl_sb_init(&b, st, sizeof(st));
    assert_int_equal(sl_pb_put_json(&b, sl_pb_method_get(id)->in, v, NULL, NULL), SL_OK);
    json_decref(v);
    int rc = call_raw(f, id, b.p + SL_PB_FRAME_HEAD, b.len - SL_PB_FRAME_HEAD);
    sl_sb_dispose(&b);
    return rc;
}

/* Asserts the answer's payload is these bytes. */
static void assert_answer(const char *hex)
{
    uint8_t want[4096];
    size_t n = unhex(hex, want, sizeof(want));
    if (n != answer_len || memcmp(want, answer, n)) {
        fprintf(stderr, "got :");
        for (size_t i = 0; i < answer_len; i++)
            fprintf(stderr, " %02x", answer[i]);
        fprintf(stderr, "\n");
        fail_msg("answer differs from %s", hex);
    }
}

/* Asks and checks the answer's bytes. */
static void ask(struct fixture *f, sl_pb_method_id_t id, const char *json, const char *hex)
{
    assert_int_equal(call(f, id, json), SL_OK);
    assert_answer(hex);
}

/* The answer decoded as the method's output type, as JSON text (sorted). */
static const char *answer_json(sl_pb_method_id_t id)
{
    ProtobufCMessage *m;
    const ProtobufCMessageDescriptor *d = sl_pb_type_descriptor(sl_pb_method_get(id)->out);
    assert_int_equal(sl_pb_decode(d, answer, answer_len, NULL, NULL, &m, NULL), SL_OK);
    json_t *j;
    assert_int_equal(sl_pb_message_to_json(m, NULL, &j, NULL), SL_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    return dump(j);
}

/* Asks and returns the decoded answer. */
static const char *ask_json(struct fixture *f, sl_pb_method_id_t id, const char *json)
{
    assert_int_equal(call(f, id, json), SL_OK);
    return answer_json(id);
}

/* ------------------------------------------------------------------------ */
/* Scalars out                                                               */

static void test_string_and_number_getters(void **state)
{
    struct fixture *f = *state;
    ask(f, SL_PB_M_REQUEST_GET_METHOD, NULL, "0a 03 \"GET\"");
    ask(f, SL_PB_M_REQUEST_GET_HOST, NULL, "0a 0b \"example.com\"");
    ask(f, SL_PB_M_REQUEST_GET_SCHEME, NULL, "0a 04 \"http\"");
    ask(f, SL_PB_M_REQUEST_GET_PATH_WITH_QUERY, NULL, "0a 15 \"/a/b?q=a%20b&flag&q=2\"");
    ask(f, SL_PB_M_REQUEST_GET_RAW_QUERY, NULL, "0a 10 \"q=a%20b&flag&q=2\"");
    ask(f, SL_PB_M_CLIENT_GET_IP, NULL, "0a 09 \"192.0.2.7\"");
    ask(f, SL_PB_M_NGINX_GET_SUBSYSTEM, NULL, "0a 04 \"http\"");
    ask(f, SL_PB_M_NGINX_GET_TLS1_VERSION_STR, NULL, ""); /* nil */
    /* Int: 40000 and 8000 as varints */
    ask(f, SL_PB_M_CLIENT_GET_PORT, NULL, "08 c0 b8 02");
    ask(f, SL_PB_M_REQUEST_GET_PORT, NULL, "08 c0 3e");
    ask(f, SL_PB_M_RESPONSE_GET_STATUS, NULL, "");
    /* Number */
    ask(f, SL_PB_M_REQUEST_GET_HTTP_VERSION, NULL, "09 9a 99 99 99 99 99 f1 3f"); /* 1.1 */
    assert_int_equal(call(f, SL_PB_M_NGINX_REQ_START_TIME, NULL), SL_OK);
    double t;
    assert_int_equal(answer_len, 9);
    memcpy(&t, answer + 1, 8);
    assert_true(t > 1700000000.1234 && t < 1700000000.1236);
    /* the node id is a UUID */
    assert_int_equal(call(f, SL_PB_M_NODE_GET_ID, NULL), SL_OK);
    assert_int_equal(answer_len, 2 + 36);
}

static void test_lookups_by_name(void **state)
{
    struct fixture *f = *state;
    /* the trace of the reference (2.7): String{v="host"} */
    uint8_t arg[] = {0x0a, 0x04, 'h', 'o', 's', 't'};
    assert_int_equal(call_raw(f, SL_PB_M_REQUEST_GET_HEADER, arg, sizeof(arg)), SL_OK);
    assert_answer("0a 10 \"Example.COM:8000\"");
    ask(f, SL_PB_M_REQUEST_GET_HEADER, "'X-MULTI'", "0a 03 \"one\"");
    ask(f, SL_PB_M_REQUEST_GET_HEADER, "'x-none'", ""); /* nil: go-pdk reads "" */
    ask(f, SL_PB_M_REQUEST_GET_QUERY_ARG, "'q'", "0a 03 \"a b\"");
    ask(f, SL_PB_M_REQUEST_GET_QUERY_ARG, "'flag'", "0a 00"); /* present, no value */
    ask(f, SL_PB_M_NGINX_GET_VAR, "'request_method'", "0a 03 \"GET\"");
    ask(f, SL_PB_M_NGINX_GET_VAR, "'no_such_variable'", "");
    ask(f, SL_PB_M_RESPONSE_GET_HEADER, "'x-none'", "");
    ask(f, SL_PB_M_IP_IS_TRUSTED, "'192.0.2.7'", "");
    assert_int_equal(sl_parse_cidr("192.0.2.0/24", &f->conf.trusted[0]), SL_OK);
    f->conf.ntrusted = 1;
    ask(f, SL_PB_M_IP_IS_TRUSTED, "'192.0.2.7'", "08 01");
    ask(f, SL_PB_M_IP_IS_TRUSTED, "'not an address'", "");
}

/* ------------------------------------------------------------------------ */
/* Tables out                                                                */

static void test_headers_and_query_tables(void **state)
{
    struct fixture *f = *state;
    const char *all = "{\"accept\":\"*/*\",\"host\":\"Example.COM:8000\",\"x-multi\":[\"one\","
                      "\"two\"]}";
    assert_string_equal(ask_json(f, SL_PB_M_REQUEST_GET_HEADERS, "100"), all);
    /* -1 is the default, as go-pdk maps it */
    assert_string_equal(ask_json(f, SL_PB_M_REQUEST_GET_HEADERS, "-1"), all);
    assert_string_equal(ask_json(f, SL_PB_M_REQUEST_GET_HEADERS, "2"),
                        "{\"host\":\"Example.COM:8000\",\"x-multi\":\"one\"}");
    /* out of Kong's bounds: refused, the zero value */
    ask(f, SL_PB_M_REQUEST_GET_HEADERS, "0", "");
    assert_true(
        test_logged("kong.request.get_headers refused: max must be between 1 and 1000, got 0"));
    ask(f, SL_PB_M_RESPONSE_GET_HEADERS, "1001", "");
    assert_true(test_logged("kong.response.get_headers refused"));
    /* bare arguments are true in the Struct */
    assert_string_equal(ask_json(f, SL_PB_M_REQUEST_GET_QUERY, "100"),
                        "{\"flag\":true,\"q\":[\"a b\",\"2\"]}");
    /* no upstream response yet */
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_HEADERS, "100", "");
    assert_true(test_logged("kong.service.response.get_headers refused"));
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_STATUS, NULL, "");
    sl_h1_header_t up[] = {{SL_STR("X-Up"), SL_STR("1")}, {SL_STR("Server"), SL_STR("u")}};
    f->r.source = "service";
    f->r.status = 201;
    f->r.resp_headers = up;
    f->r.nresp_headers = 2;
    assert_string_equal(ask_json(f, SL_PB_M_SERVICE_RESPONSE_GET_HEADERS, "100"),
                        "{\"server\":\"u\",\"x-up\":\"1\"}");
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_HEADER, "'x-up'", "0a 01 \"1\"");
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_STATUS, NULL, "08 c9 01");
}

static void test_uri_captures(void **state)
{
    struct fixture *f = *state;
    ask(f, SL_PB_M_REQUEST_GET_URI_CAPTURES, NULL, "");
    f->r.route = &gen->routes[0];
    f->r.m.regex = true;
    f->r.m.ncaptures = 2;
    f->r.m.captures[0] = (sl_router_capture_t){NULL, 1, SL_STR("a")};
    f->r.m.captures[1] = (sl_router_capture_t){"id", 1, SL_STR("a")};
    /* unnamed: repeated bytes (field 1); named: map entries (field 2) */
    ask(f, SL_PB_M_REQUEST_GET_URI_CAPTURES, NULL, "0a 01 \"a\" 12 07 0a 02 \"id\" 12 01 \"a\"");
}

static void test_memory_stats(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(call(f, SL_PB_M_NODE_GET_MEMORY_STATS, NULL), SL_OK);
    ProtobufCMessage *m;
    assert_int_equal(sl_pb_decode(&kong_plugin_protocol__memory_stats__descriptor, answer,
                                  answer_len, NULL, NULL, &m, NULL),
                     SL_OK);
    const KongPluginProtocol__MemoryStats *ms = (const KongPluginProtocol__MemoryStats *)m;
    /* go-pdk dereferences these without a nil check */
    assert_non_null(ms->lua_shared_dicts);
    assert_non_null(ms->lua_shared_dicts->kong);
    assert_non_null(ms->lua_shared_dicts->kong_db_cache);
    assert_int_equal(ms->n_workers_lua_vms, 1);
    assert_int_equal(ms->workers_lua_vms[0]->pid, getpid());
    assert_true(ms->workers_lua_vms[0]->http_allocated_gc > 0);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_ctx_values(void **state)
{
    struct fixture *f = *state;
    /* KV in, Empty out; Value back */
    ask(f, SL_PB_M_CTX_SHARED_SET, "{'k':'obj','v':{'a':[1,true,'x'],'n':null}}", "");
    assert_string_equal(ask_json(f, SL_PB_M_CTX_SHARED_GET, "'obj'"),
                        "{\"a\":[1,true,\"x\"],\"n\":null}");
    ask(f, SL_PB_M_CTX_SHARED_SET, "{'k':'s','v':'text'}", "");
    assert_string_equal(sl_pdk_ctx_shared_get(P(f), "s"), "text");
    ask(f, SL_PB_M_CTX_SHARED_GET, "'s'", "1a 04 \"text\"");
    ask(f, SL_PB_M_CTX_SHARED_GET, "'never'", ""); /* nil */
    ask(f, SL_PB_M_CTX_SHARED_SET, "{'k':'s','v':null}", "");
    ask(f, SL_PB_M_CTX_SHARED_GET, "'s'", "");
    /* ngx.ctx: KV in, an empty String out; separate from kong.ctx.shared */
    ask(f, SL_PB_M_NGINX_SET_CTX, "{'k':'obj','v':2.5}", "");
    ask(f, SL_PB_M_NGINX_GET_CTX, "'obj'", "11 00 00 00 00 00 00 04 40");
    assert_string_equal(ask_json(f, SL_PB_M_CTX_SHARED_GET, "'obj'"),
                        "{\"a\":[1,true,\"x\"],\"n\":null}");
}

/* ------------------------------------------------------------------------ */
/* Setters                                                                   */

static void test_header_setters(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    /* the trace of the reference (2.7): KV{k="x-hello-from-go", v="Go says hi to example.com"} */
    uint8_t arg[64];
    size_t n = unhex("0a 0f \"x-hello-from-go\" 12 1b 1a 19 \"Go says hi to example.com\"", arg,
                     sizeof(arg));
    assert_int_equal(call_raw(f, SL_PB_M_RESPONSE_SET_HEADER, arg, n), SL_OK);
    assert_answer("");
    assert_true(sl_pdk_response_get_header(P(f), "X-Hello-From-Go", &v));
    assert_str(v, "Go says hi to example.com");

    /* numbers and booleans as Lua's tostring; arrays one field each */
    ask(f, SL_PB_M_RESPONSE_SET_HEADER, "{'k':'X-N','v':2}", "");
    ask(f, SL_PB_M_RESPONSE_ADD_HEADER, "{'k':'X-N','v':true}", "");
    ask(f, SL_PB_M_RESPONSE_ADD_HEADER, "{'k':'X-N','v':['a','b']}", "");
    assert_string_equal(ask_json(f, SL_PB_M_RESPONSE_GET_HEADERS, "100"),
                        "{\"x-hello-from-go\":\"Go says hi to example.com\",\"x-n\":[\"2\","
                        "\"true\",\"a\",\"b\"]}");
    ask(f, SL_PB_M_RESPONSE_SET_HEADER, "{'k':'X-N','v':['c','d']}", "");
    ask(f, SL_PB_M_RESPONSE_CLEAR_HEADER, "'x-hello-from-go'", "");
    assert_string_equal(ask_json(f, SL_PB_M_RESPONSE_GET_HEADERS, "100"),
                        "{\"x-n\":[\"c\",\"d\"]}");
    ask(f, SL_PB_M_RESPONSE_SET_HEADER, "{'k':'X-N','v':[]}", ""); /* clears */
    assert_string_equal(ask_json(f, SL_PB_M_RESPONSE_GET_HEADERS, "100"), "{}");

    /* refused: nothing changes, the zero value, a warn line naming the method */
    ask(f, SL_PB_M_RESPONSE_SET_HEADER, "{'k':'bad name','v':'x'}", "");
    assert_true(test_logged("[warn]"));
    assert_true(test_logged("kong.response.set_header refused: invalid header name \"bad name\""));
    ask(f, SL_PB_M_RESPONSE_ADD_HEADER, "{'k':'X-A','v':'a\\r\\nX-Forged: 1'}", "");
    assert_true(test_logged("kong.response.add_header refused: invalid value for header \"X-A\""));
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_HEADER, "{'k':'X-A'}", ""); /* nil */
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_HEADER, "{'k':'X-A','v':{'t':1}}", "");
    ask(f, SL_PB_M_SERVICE_REQUEST_ADD_HEADER, "{'k':'X-A','v':['ok',1]}", "");
    assert_true(test_logged("kong.service.request.add_header refused"));
    ask(f, SL_PB_M_SERVICE_REQUEST_CLEAR_HEADER, "'a:b'", "");
    assert_true(test_logged("kong.service.request.clear_header refused"));
    assert_string_equal(ask_json(f, SL_PB_M_RESPONSE_GET_HEADERS, "100"), "{}");
    assert_false(sl_pdk_request_get_header(P(f), "x-a", &v));
    assert_int_equal(sl_pdk_request_header_count(P(f)), 4);

    /* the request going upstream */
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_HEADER, "{'k':'X-Multi','v':['3','4']}", "");
    ask(f, SL_PB_M_SERVICE_REQUEST_ADD_HEADER, "{'k':'X-Multi','v':5}", "");
    ask(f, SL_PB_M_SERVICE_REQUEST_CLEAR_HEADER, "'accept'", "");
    assert_string_equal(ask_json(f, SL_PB_M_REQUEST_GET_HEADERS, "100"),
                        "{\"host\":\"Example.COM:8000\",\"x-multi\":[\"3\",\"4\",\"5\"]}");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_HEADER, "{'k':'host','v':'backend.internal'}", "");
    assert_str(f->r.up_host, "backend.internal");
}

static void test_table_and_string_setters(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    /* Struct in */
    ask(f, SL_PB_M_RESPONSE_SET_HEADERS, "{'X-B':['1','2'],'X-C':'3'}", "");
    assert_string_equal(ask_json(f, SL_PB_M_RESPONSE_GET_HEADERS, "100"),
                        "{\"x-b\":[\"1\",\"2\"],\"x-c\":\"3\"}");
    ask(f, SL_PB_M_RESPONSE_SET_HEADERS, "{'X-D':'4','X-E':{'t':1}}", "");
    assert_true(test_logged("kong.response.set_headers refused: invalid headers"));
    assert_false(sl_pdk_response_get_header(P(f), "x-d", &v));
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_HEADERS, "{'X-Up':'u'}", "");
    assert_true(sl_pdk_request_get_header(P(f), "x-up", &v));
    assert_str(v, "u");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_QUERY, "{'b':true,'a':['1','x y'],'c':false}", "");
    assert_str(sl_pdk_request_get_raw_query(P(f)), "a=1&a=x%20y&b");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_QUERY, "{'a':{'t':1}}", "");
    assert_true(test_logged("kong.service.request.set_query refused"));
    assert_str(sl_pdk_request_get_raw_query(P(f)), "a=1&a=x%20y&b");

    /* String in, Empty out */
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_METHOD, "'POST'", "");
    assert_str(f->r.up_method, "POST");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_PATH, "'/other'", "");
    assert_str(f->r.up_path, "/other");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_RAW_QUERY, "'x=1'", "");
    assert_str(sl_pdk_request_get_raw_query(P(f)), "x=1");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_SCHEME, "'http'", "");
    ask(f, SL_PB_M_SERVICE_REQUEST_SET_SCHEME, "'ftp'", "");
    assert_true(test_logged("kong.service.request.set_scheme refused"));

    /* ByteString in: every byte, a NUL included */
    f->r.body_done = true;
    uint8_t raw[] = {0x0a, 0x03, 'a', 0x00, 'b'};
    assert_int_equal(call_raw(f, SL_PB_M_SERVICE_REQUEST_SET_RAW_BODY, raw, sizeof(raw)), SL_OK);
    assert_answer("");
    assert_int_equal(evbuffer_get_length(f->r.body_buf), 3);
    assert_memory_equal(evbuffer_pullup(f->r.body_buf, -1), "a\0b", 3);
    /* ... which get_raw_body now reads (RawBodyResult content) */
    ask(f, SL_PB_M_REQUEST_GET_RAW_BODY, NULL, "0a 03 61 00 62");
}

static void test_status_target_and_upstream(void **state)
{
    struct fixture *f = *state;
    /* Int in */
    ask(f, SL_PB_M_RESPONSE_SET_STATUS, "404", "");
    ask(f, SL_PB_M_RESPONSE_SET_STATUS, "99", "");
    assert_true(test_logged("kong.response.set_status refused"));
    f->r.phase = SL_PHASE_HEADER_FILTER;
    ask(f, SL_PB_M_RESPONSE_SET_STATUS, "503", "");
    assert_int_equal(f->r.filter_status, 503);
    ask(f, SL_PB_M_RESPONSE_GET_STATUS, NULL, "08 f7 03");

    /* Target in */
    ask(f, SL_PB_M_SERVICE_SET_TARGET, "{'host':'10.0.0.5','port':8080}", "");
    assert_str(f->r.target_host, "10.0.0.5");
    assert_int_equal(f->r.target_port, 8080);
    ask(f, SL_PB_M_SERVICE_SET_TARGET, "{'host':'svc.local','port':65536}", "");
    assert_true(test_logged("kong.service.set_target refused"));
    assert_str(f->r.target_host, "10.0.0.5");

    /* String in, Bool out (Kong >= 3.7) */
    ask(f, SL_PB_M_SERVICE_SET_UPSTREAM, "'My-Up'", "08 01");
    assert_ptr_equal(f->r.pdk_upstream, &gen->upstreams[0]);
    assert_null(f->r.target_host.p);
    ask(f, SL_PB_M_SERVICE_SET_UPSTREAM, "'missing'", "");
    assert_true(test_logged("kong.service.set_upstream refused: no such upstream"));
}

/* ------------------------------------------------------------------------ */
/* kong.log                                                                  */

static void test_log(void **state)
{
    struct fixture *f = *state;
    /* kong.log.err("x", 1, true) as go-pdk sends it (2.7) */
    uint8_t arg[64];
    size_t n =
        unhex("0a 03 1a 01 78 0a 09 11 00 00 00 00 00 00 f0 3f 0a 02 20 01", arg, sizeof(arg));
    assert_int_equal(call_raw(f, SL_PB_M_LOG_ERR, arg, n), SL_OK);
    assert_answer("");
    assert_true(test_logged("[error]"));
    assert_true(test_logged("x1true\n"));
    ask(f, SL_PB_M_LOG_WARN, "['w=',1.5,null,{'k':[2]}]", "");
    assert_true(test_logged("w=1.5nil{\"k\":[2]}"));
    ask(f, SL_PB_M_LOG_DEBUG, "['hidden-message']", ""); /* below the level */
    assert_false(test_logged("hidden-message"));

    /* kong.log.serialize: JSON text in a String */
    ask(f, SL_PB_M_LOG_SET_SERIALIZE_VALUE, "{'k':'my.field','v':'v1'}", "");
    ask(f, SL_PB_M_LOG_SET_SERIALIZE_VALUE, "{'k':'num','v':2}", "");
    ask(f, SL_PB_M_LOG_SET_SERIALIZE_VALUE, "{'k':'','v':2}", "");
    assert_true(test_logged("kong.log.set_serialize_value refused"));
    assert_int_equal(call(f, SL_PB_M_LOG_SERIALIZE, NULL), SL_OK);
    ProtobufCMessage *m;
    assert_int_equal(sl_pb_decode(&kong_plugin_protocol__string__descriptor, answer, answer_len,
                                  NULL, NULL, &m, NULL),
                     SL_OK);
    json_t *o = json_loads(((KongPluginProtocol__String *)m)->v, 0, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "my"), "field")),
                        "v1");
    assert_string_equal(json_string_value(json_object_get(o, "num")), "2");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "request"), "id")),
                        "0123456789abcdef0123456789abcdef");
    json_decref(o);
}

/* ------------------------------------------------------------------------ */
/* Consumers, credentials, routes, services                                  */

static void test_load_consumer(void **state)
{
    struct fixture *f = *state;
    /* ConsumerSpec in, Consumer out: the configured entity */
    ask_json(f, SL_PB_M_CLIENT_LOAD_CONSUMER, "{'id':'" ALICE "'}");
    json_t *c = jq(answer_json(SL_PB_M_CLIENT_LOAD_CONSUMER));
    assert_string_equal(json_string_value(json_object_get(c, "id")), ALICE);
    assert_string_equal(json_string_value(json_object_get(c, "username")), "alice");
    assert_string_equal(json_string_value(json_object_get(c, "custom_id")), "c-1");
    assert_string_equal(dump(json_incref(json_object_get(c, "tags"))), "[\"t1\"]");
    json_decref(c);
    /* by username only when asked; Kong raises for an id that is not a UUID */
    ask(f, SL_PB_M_CLIENT_LOAD_CONSUMER, "{'id':'alice'}", "");
    assert_true(test_logged("kong.client.load_consumer refused: cannot load a consumer with an id "
                            "that is not a uuid"));
    assert_int_equal(call(f, SL_PB_M_CLIENT_LOAD_CONSUMER, "{'id':'alice','by_username':true}"),
                     SL_OK);
    assert_non_null(strstr(answer_json(SL_PB_M_CLIENT_LOAD_CONSUMER), "\"id\":\"" ALICE "\""));
    ask(f, SL_PB_M_CLIENT_LOAD_CONSUMER, "{'id':'" NOBODY "','by_username':true}", "");
}

static void test_authenticate(void **state)
{
    struct fixture *f = *state;
    ask(f, SL_PB_M_CLIENT_GET_CONSUMER, NULL, "");
    ask(f, SL_PB_M_CLIENT_GET_CREDENTIAL, NULL, "");
    /* AuthenticateArgs in: a configured consumer is the configured one */
    ask(f, SL_PB_M_CLIENT_AUTHENTICATE,
        "{'consumer':{'id':'" ALICE "'},'credential':{'id':'cred-1','consumer_id':'" ALICE "'}}",
        "");
    assert_ptr_equal(f->r.consumer, sl_pdk_client_load_consumer(P(f), ALICE));
    assert_ptr_equal(f->r.credential->consumer, f->r.consumer);
    assert_non_null(
        strstr(ask_json(f, SL_PB_M_CLIENT_GET_CONSUMER, NULL), "\"username\":\"alice\""));
    /* AuthenticatedCredential out, byte for byte */
    ask(f, SL_PB_M_CLIENT_GET_CREDENTIAL, NULL, "0a 06 \"cred-1\" 12 24 \"" ALICE "\"");
    /* Kong's auth plugins' headers are not added */
    sl_str_t v;
    assert_false(sl_pdk_request_get_header(P(f), "x-consumer-id", &v));

    /* a consumer of the plugin's own making */
    ask(f, SL_PB_M_CLIENT_AUTHENTICATE,
        "{'consumer':{'id':'" NOBODY "','username':'zed','created_at':5}}", "");
    assert_null(f->r.credential);
    assert_string_equal(f->r.consumer->username, "zed");
    assert_null(f->r.consumer->custom_id);
    assert_string_equal(
        ask_json(f, SL_PB_M_CLIENT_GET_CONSUMER, NULL),
        sq("{'created_at':0,'custom_id':'','id':'" NOBODY "','tags':[],'username':'zed'}"));
    /* a credential alone */
    ask(f, SL_PB_M_CLIENT_AUTHENTICATE, "{'credential':{'id':'c2','consumer_id':'" ALICE "'}}", "");
    assert_null(f->r.consumer);
    assert_ptr_equal(f->r.credential->consumer, sl_pdk_client_load_consumer(P(f), ALICE));
    /* neither: Kong raises */
    ask(f, SL_PB_M_CLIENT_AUTHENTICATE, "{}", "");
    assert_true(
        test_logged("kong.client.authenticate refused: either credential or consumer must be "
                    "provided"));
    assert_non_null(f->r.credential);
}

static void test_router(void **state)
{
    struct fixture *f = *state;
    ask(f, SL_PB_M_ROUTER_GET_ROUTE, NULL, "");
    ask(f, SL_PB_M_ROUTER_GET_SERVICE, NULL, "");
    ask(f, SL_PB_M_CLIENT_GET_PROTOCOL, "true", "");
    assert_true(test_logged("kong.client.get_protocol refused: No active route found"));
    f->r.route = &gen->routes[0];
    f->r.svc = f->r.route->service;
    ask(f, SL_PB_M_CLIENT_GET_PROTOCOL, "true", "0a 04 \"http\"");

    json_t *r = jq(ask_json(f, SL_PB_M_ROUTER_GET_ROUTE, NULL));
    assert_string_equal(json_string_value(json_object_get(r, "id")), RT);
    assert_string_equal(json_string_value(json_object_get(r, "name")), "r");
    assert_string_equal(dump(json_incref(json_object_get(r, "paths"))), "[\"/a\"]");
    assert_string_equal(dump(json_incref(json_object_get(r, "protocols"))), "[\"http\",\"https\"]");
    assert_string_equal(dump(json_incref(json_object_get(r, "service"))), "{\"id\":\"" SVC "\"}");
    assert_true(json_is_true(json_object_get(r, "strip_path")));
    assert_int_equal(json_integer_value(json_object_get(r, "regex_priority")), 3);
    /* Kong's route.headers is a map: the proto's repeated string cannot
     * hold it, and it is left out (lua-protobuf drops it too) */
    assert_string_equal(dump(json_incref(json_object_get(r, "headers"))), "[]");
    json_decref(r);

    json_t *s = jq(ask_json(f, SL_PB_M_ROUTER_GET_SERVICE, NULL));
    assert_string_equal(json_string_value(json_object_get(s, "id")), SVC);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "s");
    assert_string_equal(json_string_value(json_object_get(s, "host")), "127.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(s, "port")), 9);
    assert_string_equal(json_string_value(json_object_get(s, "protocol")), "http");
    assert_string_equal(json_string_value(json_object_get(s, "path")), "/up");
    assert_int_equal(json_integer_value(json_object_get(s, "connect_timeout")), 60000);
    json_decref(s);
}

/* ------------------------------------------------------------------------ */
/* Bodies                                                                    */

static void test_raw_bodies(void **state)
{
    struct fixture *f = *state;
    /* no body: a present empty content */
    ask(f, SL_PB_M_REQUEST_GET_RAW_BODY, NULL, "0a 00");
    /* a body that was not read: RawBodyResult's error */
    f->r.body_kind = B_LENGTH;
    ask(f, SL_PB_M_REQUEST_GET_RAW_BODY, NULL, "1a 17 \"Can't read request body\"");
    f->r.body_buf = evbuffer_new();
    evbuffer_add(f->r.body_buf, "hello", 5);
    f->r.body_buffered = true;
    ask(f, SL_PB_M_REQUEST_GET_RAW_BODY, NULL, "0a 05 \"hello\"");

    /* the upstream's body, as content (field 1, also ByteString's v) */
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_RAW_BODY, NULL, "");
    assert_true(test_logged("kong.service.response.get_raw_body refused"));
    f->r.resp_body = evbuffer_new();
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_RAW_BODY, NULL, "0a 00");
    evbuffer_add(f->r.resp_body, "up=1", 4);
    ask(f, SL_PB_M_SERVICE_RESPONSE_GET_RAW_BODY, NULL, "0a 04 \"up=1\"");
}

/* ------------------------------------------------------------------------ */
/* kong.response.exit                                                        */

static void test_exit(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    sl_pdk_response_set_header(P(f), "X-Before", "1");
    /* kong.response.exit(403, "nope", {"X-A": ["1","2"]}) as go-pdk sends it (2.7) */
    uint8_t arg[64];
    size_t n = unhex("08 93 03 12 04 6e 6f 70 65 1a 15 0a 13 0a 03 58 2d 41 12 0c 32 0a 0a 03 1a "
                     "01 31 0a 03 1a 01 32",
                     arg, sizeof(arg));
    assert_int_equal(call_raw(f, SL_PB_M_RESPONSE_EXIT, arg, n), SL_DONE);
    assert_int_equal(f->r.exit_status, 403);
    assert_int_equal(f->r.exit_body_len, 4);
    assert_memory_equal(f->r.exit_body, "nope", 4);
    assert_string_equal(dump(sl_pdk_response_get_headers(P(f), 100, NULL)),
                        "{\"x-a\":[\"1\",\"2\"],\"x-before\":\"1\"}");
    assert_string_equal(sl_pdk_response_get_source(P(f)), "exit");

    /* ExitStatus: no body, no headers */
    assert_int_equal(call(f, SL_PB_M_RESPONSE_EXIT, "{'status':204}"), SL_DONE);
    assert_int_equal(f->r.exit_status, 204);
    assert_int_equal(f->r.exit_body_len, 0);
    /* a status out of range, or a bad header: Kong raises, the client gets a 500 */
    assert_int_equal(call(f, SL_PB_M_RESPONSE_EXIT, "{'status':99,'body':'x'}"), SL_DONE);
    assert_int_equal(f->r.exit_status, 500);
    assert_int_equal(f->r.exit_body_len, 0);
    assert_int_equal(
        call(f, SL_PB_M_RESPONSE_EXIT, "{'status':401,'body':'x','headers':{'bad name':'1'}}"),
        SL_DONE);
    assert_int_equal(f->r.exit_status, 500);
    assert_true(test_logged("kong.response.exit refused"));
    assert_false(sl_pdk_response_get_header(P(f), "bad name", &v));
}

/* ------------------------------------------------------------------------ */
/* Arguments that do not decode, and every method                            */

/* Prepends a length-delimited field (tag, then the varint length of
 * buf[*start, end)) before *start. */
static void prepend_field(uint8_t *buf, size_t *start, size_t end, uint8_t tag)
{
    uint8_t v[10];
    size_t k = 0;
    for (size_t len = end - *start; k == 0 || len; len >>= 7)
        v[k++] = (uint8_t)((len & 0x7f) | (len >> 7 ? 0x80 : 0));
    *start -= k;
    memcpy(buf + *start, v, k);
    buf[--*start] = tag;
}

/* A ListValue holding a list holding a list ... depth times, then null. */
static size_t nested_lists(uint8_t *buf, size_t cap, int depth)
{
    size_t start = cap;
    buf[--start] = 0x00; /* Value{null_value} */
    buf[--start] = 0x08;
    for (int i = 0; i < depth; i++) {
        prepend_field(buf, &start, cap, 0x0a); /* ListValue.values */
        prepend_field(buf, &start, cap, 0x32); /* Value.list_value */
    }
    prepend_field(buf, &start, cap, 0x0a);
    memmove(buf, buf + start, cap - start);
    return cap - start;
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    static const struct {
        sl_pb_method_id_t id;
        const char *hex;
    } cases[] = {
        {SL_PB_M_REQUEST_GET_HEADER, "ff ff ff"},     /* not a message */
        {SL_PB_M_REQUEST_GET_HEADER, "0a 05 \"ab\""}, /* truncated */
        {SL_PB_M_REQUEST_GET_HEADERS, "08"},          /* truncated varint */
        {SL_PB_M_REQUEST_GET_METHOD, "ff ff ff"},     /* garbage where Empty is */
        {SL_PB_M_RESPONSE_SET_HEADER, "0a 01 \"a\" 12 02 1a"},
        {SL_PB_M_CTX_SHARED_SET, "0a 01 \"k\" 12 09 11 00 00 00 00 00 00 f8 7f"}, /* NaN */
        {SL_PB_M_SERVICE_REQUEST_SET_HEADERS, "0a 04 0a 02 \"x\""},               /* bad Struct */
        {SL_PB_M_LOG_ERR, "0a 05 32 03 0a 01"},             /* bad ListValue */
        {SL_PB_M_CLIENT_AUTHENTICATE, "0a 03 0a 05 \"a\""}, /* bad Consumer */
        {SL_PB_M_SERVICE_SET_TARGET, "10"},                 /* Target */
        {SL_PB_M_CLIENT_LOAD_CONSUMER, "0a 05 \"a\""},      /* ConsumerSpec */
        {SL_PB_M_RESPONSE_EXIT, "08 93 03 12 09 \"nope\""}, /* ExitArgs */
    };
    size_t n;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        uint8_t arg[64];
        n = unhex(cases[i].hex, arg, sizeof(arg));
        int rc = call_raw(f, cases[i].id, arg, n);
        if (rc != SL_ERR_INVALID)
            fail_msg("%s with %s: %d", sl_pb_method_get(cases[i].id)->name, cases[i].hex, rc);
    }
    assert_int_equal(f->r.exit_status, 0);
    assert_int_equal(f->r.nresp_ops, 0);

    /* nested beyond the limits: not an argument either */
    static uint8_t bomb[4096];
    n = nested_lists(bomb, sizeof(bomb), 200);
    assert_int_equal(call_raw(f, SL_PB_M_LOG_ERR, bomb, n), SL_ERR_INVALID);
}

/* Each of the 74 methods, with a zero-length argument (every field at its
 * default) on a routed request: one frame of its output type, and
 * kong.response.exit none. */
static void test_every_method_answers(void **state)
{
    struct fixture *f = *state;
    f->r.route = &gen->routes[0];
    f->r.svc = f->r.route->service;
    for (unsigned id = 0; id < SL_PB_M_COUNT; id++) {
        const sl_pb_method_t *m = sl_pb_method_get(id);
        int rc = call_raw(f, id, NULL, 0);
        if (id == SL_PB_M_RESPONSE_EXIT) {
            assert_int_equal(rc, SL_DONE);
            continue;
        }
        if (rc != SL_OK)
            fail_msg("%s: %d", m->name, rc);
        ProtobufCMessage *msg;
        if (sl_pb_decode(sl_pb_type_descriptor(m->out), answer, answer_len, NULL, NULL, &msg,
                         NULL) != SL_OK)
            fail_msg("%s: the answer is not a %s", m->name, sl_pb_type_name(m->out));
        protobuf_c_message_free_unpacked(msg, NULL);
    }
}

static int group_setup(void **state)
{
    (void)state;
    const char *doc =
        "{'_format_version':'3.0',"
        "'services':[{'id':'" SVC "','name':'s','url':'http://127.0.0.1:9/up',"
        "'routes':[{'id':'" RT "','name':'r','paths':['/a'],'regex_priority':3,"
        "'headers':{'x-h':['1']}}]}],"
        "'upstreams':[{'name':'my-up'}],"
        "'consumers':[{'id':'" ALICE "','username':'alice','custom_id':'c-1','tags':['t1']}]}";
    json_t *d = NULL;
    sl_errors_t errs;
    sl_errors_init(&errs);
    const char *s = sq(doc);
    if (sl_declarative_load_string(s, strlen(s), &d, &errs) != SL_OK ||
        sl_gen_build(d, 1, &gen, &errs) != SL_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "  %s\n", errs.items[i]);
        return -1;
    }
    json_decref(d);
    sl_errors_dispose(&errs);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sl_gen_unref(gen);
    return 0;
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_string_and_number_getters),
        T(test_lookups_by_name),
        T(test_headers_and_query_tables),
        T(test_uri_captures),
        T(test_memory_stats),
        T(test_ctx_values),
        T(test_header_setters),
        T(test_table_and_string_setters),
        T(test_status_target_and_upstream),
        T(test_log),
        T(test_load_consumer),
        T(test_authenticate),
        T(test_router),
        T(test_raw_bodies),
        T(test_exit),
        T(test_bad_arguments),
        T(test_every_method_answers),
    };
    if (!test_log_open("test_pdk_rpc_log"))
        return 1;
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    test_log_remove();
    return rc;
}
