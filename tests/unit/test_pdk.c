/*
 * Unit tests of the C PDK (dataplane/pdk.c) on a request object built by
 * hand: header reads and edits as the upstream will see them, query
 * arguments (decoding, removal, tables), the upstream overrides, response
 * header operations and what header_filter reads back, exits, kong.ctx and
 * the nginx ctx with any value, the forwarded getters under trusted_ips,
 * kong.ip, kong.node, nginx variables, set_status by phase, the service
 * target, log messages, and the refusal of fields that would split a
 * message.
 */
#include "pdk.h"
#include "log.h"
#include "proxy-t.h"
#include "uuid.h"

#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pdk_request.h"

struct fixture {
    sl_dp_conf_t conf;
    sl_worker_t w;
    sl_conn_t c;
    sl_req_t r;
    sl_h1_header_t hs[4];
    sl_route_t route;
    sl_service_t svc;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    pdk_request_init(&f->conf, &f->w, &f->c, &f->r, f->hs,
                     "/a//b?q=a%20b+c&flag&q=second&empty=&x%41=1", "/a//b",
                     "q=a%20b+c&flag&q=second&empty=&x%41=1");
    f->c.serial = 42;
    f->c.nreq = 3;
    *state = f;
    return 0;
}

/* Routes the fixture's request: service path /up, route stripping "/a"
 * of the normalised path "/a/b". */
static void route_it(struct fixture *f)
{
    f->svc.path = "/up";
    f->svc.host_header = "backend.internal:8080";
    f->route.service = &f->svc;
    f->route.strip_path = true;
    f->route.protocols = SL_PROTO_HTTP | SL_PROTO_HTTPS;
    f->r.route = &f->route;
    f->r.svc = &f->svc;
    f->r.npath = "/a/b";
    f->r.npath_len = 4;
    f->r.m.prefix_len = 2;
    f->r.m.path = SL_STR("/a");
}

static void trust(struct fixture *f, const char *cidr)
{
    assert_int_equal(sl_parse_cidr(cidr, &f->conf.trusted[f->conf.ntrusted]), SL_OK);
    f->conf.ntrusted++;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sl_arena_dispose(&f->r.arena);
    free(f);
    return 0;
}

#define P(f) ((sl_pdk_t *)&(f)->r)

static void test_request_reads(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    assert_str(sl_pdk_request_get_method(P(f)), "GET");
    assert_str(sl_pdk_request_get_host(P(f)), "example.com");
    assert_int_equal(sl_pdk_request_get_port(P(f)), 8000);
    assert_int_equal(sl_pdk_request_get_http_version(P(f)), 11);
    assert_true(sl_pdk_request_get_header(P(f), "X-MULTI", &v));
    assert_str(v, "one");
    assert_false(sl_pdk_request_get_header(P(f), "x-none", &v));
    assert_int_equal(sl_pdk_request_header_count(P(f)), 4);
    sl_str_t n;
    assert_true(sl_pdk_request_header_at(P(f), 2, &n, &v));
    assert_str(n, "x-multi");
    assert_str(v, "two");
    assert_false(sl_pdk_request_header_at(P(f), 4, &n, &v));
    assert_string_equal(sl_pdk_client_get_ip(P(f)), "192.0.2.7");
    /* not a trusted peer: its X-Real-IP is not believed */
    assert_string_equal(sl_pdk_client_get_forwarded_ip(P(f)), "192.0.2.7");
}

static void test_query_arguments(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    assert_true(sl_pdk_request_get_query_arg(P(f), "q", &v));
    assert_str(v, "a b c"); /* %20 and '+' are spaces; the first occurrence wins */
    assert_true(sl_pdk_request_get_query_arg(P(f), "flag", &v));
    assert_str(v, "");
    assert_true(sl_pdk_request_get_query_arg(P(f), "xA", &v)); /* the name is decoded too */
    assert_str(v, "1");
    assert_false(sl_pdk_request_get_query_arg(P(f), "missing", &v));

    sl_pdk_service_request_clear_query_arg(P(f), "q");
    assert_str(sl_pdk_request_get_raw_query(P(f)), "flag&empty=&x%41=1");
    assert_false(sl_pdk_request_get_query_arg(P(f), "q", &v));
    sl_pdk_service_request_clear_query_arg(P(f), "xA");
    assert_str(sl_pdk_request_get_raw_query(P(f)), "flag&empty=");
}

static void test_request_header_edits(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    sl_pdk_service_request_set_header(P(f), "X-Multi", "three");
    assert_int_equal(sl_pdk_request_header_count(P(f)), 3);
    assert_true(sl_pdk_request_get_header(P(f), "x-multi", &v));
    assert_str(v, "three");
    for (int i = 0; i < 40; i++) /* past the first capacity */
        sl_pdk_service_request_add_header(P(f), "X-Many", "v");
    assert_int_equal(sl_pdk_request_header_count(P(f)), 43);
    sl_pdk_service_request_clear_header(P(f), "x-many");
    sl_pdk_service_request_clear_header(P(f), "accept");
    assert_int_equal(sl_pdk_request_header_count(P(f)), 2);
    /* Host is the upstream Host, not another field */
    sl_pdk_service_request_set_header(P(f), "host", "backend.internal");
    assert_str(f->r.up_host, "backend.internal");
    assert_int_equal(sl_pdk_request_header_count(P(f)), 2);
    assert_true(sl_pdk_request_get_header(P(f), "Host", &v));
    assert_str(v, "backend.internal");
    sl_pdk_service_request_clear_header(P(f), "host");
    assert_null(f->r.up_host.p);
    assert_int_equal(sl_pdk_request_header_count(P(f)), 1);
}

static void test_fields_that_would_split_a_message_are_refused(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    sl_pdk_service_request_set_header(P(f), "X-Evil", "a\r\nInjected: yes");
    sl_pdk_service_request_set_header(P(f), "Bad Name", "v");
    sl_pdk_service_request_set_header(P(f), "X-Tab", "a\tb"); /* a tab is fine */
    assert_false(sl_pdk_request_get_header(P(f), "x-evil", &v));
    assert_false(sl_pdk_request_get_header(P(f), "bad name", &v));
    assert_true(sl_pdk_request_get_header(P(f), "x-tab", &v));
    sl_pdk_response_set_header(P(f), "X-Resp", "line\nbreak");
    assert_int_equal(f->r.nresp_ops, 0);
    sl_pdk_service_request_set_path(P(f), "/with space");
    sl_pdk_service_request_set_path(P(f), "relative");
    assert_null(f->r.up_path.p);
    sl_pdk_service_request_set_path(P(f), "/ok");
    assert_str(f->r.up_path, "/ok");
    sl_pdk_service_request_set_method(P(f), "GET\r\n");
    assert_null(f->r.up_method.p);
    sl_pdk_service_request_set_raw_query(P(f), "a=1 b");
    assert_null(f->r.up_query.p);
}

static void test_response_headers(void **state)
{
    struct fixture *f = *state;
    sl_h1_header_t up[] = {
        {SL_STR("Content-Type"), SL_STR("text/plain")},
        {SL_STR("X-Up"), SL_STR("1")},
        {SL_STR("X-Up"), SL_STR("2")},
    };
    f->r.resp_headers = up;
    f->r.nresp_headers = 3;
    f->r.status = 200;
    sl_str_t n, v;
    assert_true(sl_pdk_response_get_header(P(f), "x-up", &v));
    assert_str(v, "1");
    assert_int_equal(sl_pdk_response_header_count(P(f)), 3);

    sl_pdk_response_add_header(P(f), "X-Up", "3");
    sl_pdk_response_set_header(P(f), "X-New", "a");
    sl_pdk_response_clear_header(P(f), "content-type");
    assert_false(sl_pdk_response_get_header(P(f), "content-type", &v));
    assert_true(sl_pdk_response_get_header(P(f), "x-new", &v));
    assert_str(v, "a");
    /* upstream X-Up twice, the added one, X-New */
    assert_int_equal(sl_pdk_response_header_count(P(f)), 4);
    assert_true(sl_pdk_response_header_at(P(f), 2, &n, &v));
    assert_str(n, "X-Up");
    assert_str(v, "3");
    assert_true(sl_pdk_response_header_at(P(f), 3, &n, &v));
    assert_str(n, "X-New");
    assert_false(sl_pdk_response_header_at(P(f), 4, &n, &v));

    sl_pdk_response_set_header(P(f), "X-Up", "only");
    assert_int_equal(sl_pdk_response_header_count(P(f)), 2);
    assert_true(sl_pdk_response_get_header(P(f), "x-up", &v));
    assert_str(v, "only");
    assert_int_equal(sl_pdk_response_get_status(P(f)), 200);
    assert_string_equal(sl_pdk_response_get_source(P(f)), "error");
}

static void test_exit(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    assert_int_equal(sl_pdk_response_exit_message(P(f), 401, "No \"key\""), SL_PLUGIN_EXIT);
    assert_int_equal(f->r.exit_status, 401);
    assert_memory_equal(f->r.exit_body, "{\"message\":\"No \\\"key\\\"\"}", f->r.exit_body_len);
    assert_true(sl_pdk_response_get_header(P(f), "content-type", &v));
    assert_str(v, "application/json; charset=utf-8");
    assert_int_equal(sl_pdk_response_get_status(P(f)), 401);
    assert_string_equal(sl_pdk_response_get_source(P(f)), "exit");
    /* a status out of range is a 500 without a body */
    assert_int_equal(sl_pdk_response_exit(P(f), 99, "x", 1), SL_PLUGIN_EXIT);
    assert_int_equal(f->r.exit_status, 500);
    assert_null(f->r.exit_body);
}

static void test_ctx(void **state)
{
    struct fixture *f = *state;
    assert_null(sl_pdk_ctx_shared_get(P(f), "k"));
    sl_pdk_ctx_shared_set(P(f), "k", "v1");
    sl_pdk_ctx_shared_set(P(f), "k", "v2");
    assert_string_equal(sl_pdk_ctx_shared_get(P(f), "k"), "v2");
    sl_pdk_ctx_shared_set(P(f), "k", NULL);
    assert_null(sl_pdk_ctx_shared_get(P(f), "k"));
    /* outside a handler kong.ctx.plugin is a scratch slot */
    void **slot = sl_pdk_ctx_plugin(P(f));
    assert_non_null(slot);
    assert_null(*slot);
}

static void test_path_with_query_and_forwarded_getters(void **state)
{
    struct fixture *f = *state;
    sl_str_t v;
    assert_str(sl_pdk_request_get_path_with_query(P(f)),
               "/a//b?q=a%20b+c&flag&q=second&empty=&x%41=1");
    /* an absolute-form target: $request_uri starts at the path */
    f->r.h.absolute_form = true;
    f->r.h.authority = SL_STR("example.com");
    f->r.h.target = SL_STR("http://example.com/a//b?x=1");
    f->r.h.query = SL_STR("x=1");
    assert_str(sl_pdk_request_get_path_with_query(P(f)), "/a//b?x=1");

    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Proto", "HTTPS");
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Host", "user@Proxy.Example:8443");
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Port", "99999");
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Path", "/orig//path");
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Prefix", "/pre");
    /* not a trusted peer: its own values */
    assert_str(sl_pdk_request_get_forwarded_scheme(P(f)), "http");
    assert_str(sl_pdk_request_get_forwarded_host(P(f)), "example.com");
    assert_int_equal(sl_pdk_request_get_forwarded_port(P(f)), 8000);
    assert_str(sl_pdk_request_get_forwarded_path(P(f)), "/a//b"); /* no npath: raw */
    assert_false(sl_pdk_request_get_forwarded_prefix(P(f), &v));

    f->c.trusted = true;
    assert_str(sl_pdk_request_get_forwarded_scheme(P(f)), "https");
    assert_str(sl_pdk_request_get_forwarded_host(P(f)), "proxy.example");
    /* X-Forwarded-Port out of range: the port of X-Forwarded-Host */
    assert_int_equal(sl_pdk_request_get_forwarded_port(P(f)), 8443);
    sl_pdk_service_request_set_header(P(f), "X-Forwarded-Port", " 9443 ");
    assert_int_equal(sl_pdk_request_get_forwarded_port(P(f)), 9443);
    assert_str(sl_pdk_request_get_forwarded_path(P(f)), "/orig//path");
    assert_true(sl_pdk_request_get_forwarded_prefix(P(f), &v));
    assert_str(v, "/pre");

    /* a trusted peer without the fields: the stripped prefix of the route */
    sl_pdk_service_request_clear_header(P(f), "x-forwarded-prefix");
    assert_false(sl_pdk_request_get_forwarded_prefix(P(f), &v));
    route_it(f);
    assert_true(sl_pdk_request_get_forwarded_prefix(P(f), &v));
    assert_str(v, "/a");
    f->route.strip_path = false;
    assert_false(sl_pdk_request_get_forwarded_prefix(P(f), &v));
}

static void test_client_forwarded_address_and_port(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *real_ip;
        const char *ip;
        int port;
    } cases[] = {
        {"198.51.100.9", "198.51.100.9", 0}, /* no port: Kong's nil */
        {"198.51.100.9:5555", "198.51.100.9", 5555},
        {"[2001:db8::1]:80", "2001:db8::1", 80},
        {"2001:db8::2", "2001:db8::2", 0},
        {"[2001:db8::3]", "192.0.2.7", 40000}, /* brackets need a port */
        {"198.51.100.9:0", "192.0.2.7", 40000},
        {"198.51.100.9:70000", "192.0.2.7", 40000},
        {"not-an-address", "192.0.2.7", 40000},
        {"", "192.0.2.7", 40000},
    };
    assert_int_equal(sl_pdk_client_get_forwarded_port(P(f)), 40000);
    sl_pdk_service_request_set_header(P(f), "X-Real-IP", "198.51.100.9:5555");
    /* an untrusted peer's X-Real-IP changes nothing */
    assert_string_equal(sl_pdk_client_get_forwarded_ip(P(f)), "192.0.2.7");
    assert_int_equal(sl_pdk_client_get_forwarded_port(P(f)), 40000);
    f->c.trusted = true;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_pdk_service_request_set_header(P(f), "X-Real-IP", cases[i].real_ip);
        assert_string_equal(sl_pdk_client_get_forwarded_ip(P(f)), cases[i].ip);
        assert_int_equal(sl_pdk_client_get_forwarded_port(P(f)), cases[i].port);
        assert_string_equal(sl_pdk_client_get_ip(P(f)), "192.0.2.7");
        assert_int_equal(sl_pdk_client_get_port(P(f)), 40000);
    }
}

static void test_client_get_protocol(void **state)
{
    struct fixture *f = *state;
    const char *err = NULL;
    assert_null(sl_pdk_client_get_protocol(P(f), false, &err));
    assert_string_equal(err, "No active route found");
    route_it(f);
    f->route.protocols = SL_PROTO_HTTPS;
    assert_string_equal(sl_pdk_client_get_protocol(P(f), false, NULL), "https");
    f->route.protocols = SL_PROTO_HTTP;
    assert_string_equal(sl_pdk_client_get_protocol(P(f), true, NULL), "http");
    f->route.protocols = SL_PROTO_HTTP | SL_PROTO_HTTPS;
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Proto", "HTTPS");
    /* untrusted, or not allowed to look at terminated TLS: http */
    assert_string_equal(sl_pdk_client_get_protocol(P(f), true, NULL), "http");
    f->c.trusted = true;
    assert_string_equal(sl_pdk_client_get_protocol(P(f), false, NULL), "http");
    assert_string_equal(sl_pdk_client_get_protocol(P(f), true, NULL), "https");
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-Proto", "http");
    err = NULL;
    assert_null(sl_pdk_client_get_protocol(P(f), true, &err));
    assert_string_equal(err, "Only one X-Forwarded-Proto header allowed");
}

static void test_ip_is_trusted(void **state)
{
    struct fixture *f = *state;
    assert_false(sl_pdk_ip_is_trusted(P(f), "10.1.2.3")); /* empty trusted_ips */
    trust(f, "10.0.0.0/8");
    trust(f, "2001:db8::/32");
    assert_true(sl_pdk_ip_is_trusted(P(f), "10.1.2.3"));
    assert_true(sl_pdk_ip_is_trusted(P(f), "::ffff:10.1.2.3")); /* as the proxy matches */
    assert_true(sl_pdk_ip_is_trusted(P(f), "2001:db8::7"));
    assert_false(sl_pdk_ip_is_trusted(P(f), "11.1.2.3"));
    assert_false(sl_pdk_ip_is_trusted(P(f), "2001:db9::7"));
    assert_false(sl_pdk_ip_is_trusted(P(f), "10.1.2.3/8"));
    assert_false(sl_pdk_ip_is_trusted(P(f), "localhost"));
    assert_false(sl_pdk_ip_is_trusted(P(f), NULL));
    trust(f, "0.0.0.0/0");
    assert_false(sl_pdk_ip_is_trusted(P(f), "2001:db9::7"));
    trust(f, "::/0");
    assert_true(sl_pdk_ip_is_trusted(P(f), "2001:db9::7"));
    assert_true(sl_pdk_ip_is_trusted(P(f), "anything")); /* Kong's trust-all shortcut */
}

static void test_node(void **state)
{
    struct fixture *f = *state;
    char dir[] = "/tmp/test_pdk_node.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/node.id", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("3b2a1c4d-5e6f-4a1b-8c2d-9e0f1a2b3c4d\n", fp);
    fclose(fp);

    /* hybrid: the cluster client's id */
    static sl_dp_conf_t hybrid, dbless;
    hybrid.prefix = dir;
    hybrid.hybrid = true;
    f->w.conf = &hybrid;
    assert_string_equal(sl_pdk_node_get_id(P(f)), "3b2a1c4d-5e6f-4a1b-8c2d-9e0f1a2b3c4d");

    /* DB-less without a node.id: one id for the life of the process */
    char other[] = "/tmp/test_pdk_node.XXXXXX";
    assert_non_null(mkdtemp(other));
    dbless.prefix = other;
    f->w.conf = &dbless;
    char first[SL_UUID_STRLEN + 1];
    snprintf(first, sizeof(first), "%s", sl_pdk_node_get_id(P(f)));
    assert_true(sl_uuid_valid(first));
    assert_string_not_equal(first, "3b2a1c4d-5e6f-4a1b-8c2d-9e0f1a2b3c4d");
    assert_string_equal(sl_pdk_node_get_id(P(f)), first);
    unlink(path);
    rmdir(dir);
    rmdir(other);

    assert_true(strlen(sl_pdk_node_get_hostname(P(f))) > 0);
    json_t *m = sl_pdk_node_get_memory_stats(P(f));
    assert_non_null(m);
    assert_true(json_is_object(json_object_get(m, "lua_shared_dicts")));
    json_t *vms = json_object_get(m, "workers_lua_vms");
    assert_int_equal(json_array_size(vms), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vms, 0), "pid")), getpid());
    assert_true(json_integer_value(json_object_get(json_array_get(vms, 0), "http_allocated_gc")) >
                0);
    json_decref(m);
}

static void test_header_and_query_tables(void **state)
{
    struct fixture *f = *state;
    bool truncated = true;
    assert_string_equal(dump(sl_pdk_request_get_headers(P(f), SL_PDK_MAX_DEFAULT, &truncated)),
                        "{\"accept\":\"*/*\",\"host\":\"Example.COM:8000\","
                        "\"x-multi\":[\"one\",\"two\"]}");
    assert_false(truncated);
    assert_string_equal(dump(sl_pdk_request_get_headers(P(f), 2, &truncated)),
                        "{\"host\":\"Example.COM:8000\",\"x-multi\":\"one\"}");
    assert_true(truncated);
    /* Kong's bounds: 1..1000 */
    assert_null(sl_pdk_request_get_headers(P(f), 0, NULL));
    assert_null(sl_pdk_request_get_headers(P(f), 1001, NULL));
    assert_true(test_logged("max_headers must be <= 1000"));

    assert_string_equal(dump(sl_pdk_request_get_query(P(f), 100, &truncated)),
                        "{\"empty\":\"\",\"flag\":true,\"q\":[\"a b c\",\"second\"],\"xA\":\"1\"}");
    assert_false(truncated);
    assert_string_equal(dump(sl_pdk_request_get_query(P(f), 2, &truncated)),
                        "{\"flag\":true,\"q\":\"a b c\"}");
    assert_true(truncated);
    assert_null(sl_pdk_request_get_query(P(f), -1, NULL));
    /* the query as plugins left it; bytes that are not UTF-8 become U+FFFD;
     * an empty name is skipped */
    sl_pdk_service_request_set_raw_query(P(f), "a=%FF&=x&b&a=%C3%A9");
    assert_string_equal(dump(sl_pdk_request_get_query(P(f), 100, NULL)),
                        "{\"a\":[\"\xEF\xBF\xBD\",\"\xC3\xA9\"],\"b\":true}");
    sl_pdk_service_request_set_raw_query(P(f), "");
    assert_string_equal(dump(sl_pdk_request_get_query(P(f), 100, NULL)), "{}");
}

static void test_uri_captures(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(dump(sl_pdk_request_get_uri_captures(P(f))),
                        "{\"named\":{},\"unnamed\":[]}");
    route_it(f);
    f->r.m.regex = true;
    f->r.m.ncaptures = 3;
    f->r.m.captures[0] = (sl_router_capture_t){NULL, 1, SL_STR("a")};
    f->r.m.captures[1] = (sl_router_capture_t){"id", 1, SL_STR("a")};
    f->r.m.captures[2] = (sl_router_capture_t){NULL, 3, SL_STR("c")};
    /* group 2 did not take part: an empty string keeps the positions */
    assert_string_equal(dump(sl_pdk_request_get_uri_captures(P(f))),
                        "{\"named\":{\"id\":\"a\"},\"unnamed\":[\"a\",\"\",\"c\"]}");
}

static void assert_var(struct fixture *f, const char *name, const char *want)
{
    sl_str_t v;
    if (!want) {
        assert_false(sl_pdk_nginx_get_var(P(f), name, &v));
        return;
    }
    if (!sl_pdk_nginx_get_var(P(f), name, &v))
        fail_msg("nginx variable %s not found", name);
    char *got = strndup(v.p, v.len);
    if (strcmp(got, want))
        fail_msg("$%s: got '%s', want '%s'", name, got, want);
    free(got);
}

static void test_nginx_get_var(void **state)
{
    struct fixture *f = *state;
    sl_pdk_service_request_add_header(P(f), "Cookie", "a=1; Session=xyz");
    sl_pdk_service_request_add_header(P(f), "cookie", "b=2");
    sl_pdk_service_request_add_header(P(f), "X-Forwarded-For", "203.0.113.1");
    assert_var(f, "request_uri", "/a//b?q=a%20b+c&flag&q=second&empty=&x%41=1");
    assert_var(f, "args", "q=a%20b+c&flag&q=second&empty=&x%41=1");
    assert_var(f, "is_args", "?");
    assert_var(f, "request", "GET /a//b?q=a%20b+c&flag&q=second&empty=&x%41=1 HTTP/1.1");
    assert_var(f, "request_method", "GET");
    assert_var(f, "server_protocol", "HTTP/1.1");
    assert_var(f, "scheme", "http");
    assert_var(f, "https", "");
    assert_var(f, "host", "example.com");
    assert_var(f, "remote_addr", "192.0.2.7");
    assert_var(f, "remote_port", "40000");
    assert_var(f, "realip_remote_addr", "192.0.2.7");
    assert_var(f, "server_addr", "127.0.0.1");
    assert_var(f, "server_port", "8000");
    assert_var(f, "request_id", "0123456789abcdef0123456789abcdef");
    assert_var(f, "kong_request_id", "0123456789abcdef0123456789abcdef");
    assert_var(f, "connection", "42");
    assert_var(f, "connection_requests", "3");
    assert_var(f, "status", "000");
    /* the families */
    assert_var(f, "http_x_multi", "one, two");
    assert_var(f, "HTTP_ACCEPT", NULL); /* family prefixes are lower-case */
    assert_var(f, "http_accept", "*/*");
    assert_var(f, "http_cookie", "a=1; Session=xyz; b=2");
    assert_var(f, "http_none", NULL);
    assert_var(f, "arg_q", "a%20b+c");
    assert_var(f, "arg_Flag", "");
    assert_var(f, "arg_x%41", "1");
    assert_var(f, "arg_none", NULL);
    assert_var(f, "cookie_session", "xyz");
    assert_var(f, "cookie_b", "2");
    assert_var(f, "cookie_c", NULL);
    assert_var(f, "upstream_x_forwarded_for", "203.0.113.1, 192.0.2.7");
    assert_var(f, "upstream_x_forwarded_proto", "http");
    assert_var(f, "upstream_x_forwarded_host", "example.com");
    assert_var(f, "upstream_x_forwarded_port", "8000");
    assert_var(f, "upstream_x_forwarded_prefix", NULL);
    /* unknown names and names not meaningful yet */
    assert_var(f, "no_such_variable", NULL);
    assert_var(f, "ssl_protocol", NULL);
    assert_var(f, "upstream_uri", NULL);
    assert_var(f, "upstream_addr", NULL);
    assert_var(f, "upstream_status", NULL);
    assert_var(f, "request_body", NULL);
    assert_var(f, "", NULL);

    route_it(f);
    assert_var(f, "uri", "/a/b");
    assert_var(f, "upstream_uri", "/up/b?q=a%20b+c&flag&q=second&empty=&x%41=1");
    assert_var(f, "upstream_host", "backend.internal:8080");
    assert_var(f, "upstream_scheme", "http");
    assert_var(f, "upstream_x_forwarded_prefix", "/a");
    sl_pdk_service_request_set_path(P(f), "/other");
    sl_pdk_service_request_set_raw_query(P(f), "");
    sl_pdk_service_request_set_method(P(f), "POST");
    assert_var(f, "upstream_uri", "/other");
    assert_var(f, "args", "");
    assert_var(f, "is_args", "");
    assert_var(f, "request_method", "POST");
    sl_pdk_service_request_set_header(P(f), "Host", "h.example");
    assert_var(f, "upstream_host", "h.example");

    /* after the response: status, sent and upstream fields */
    sl_h1_header_t up[] = {{SL_STR("X-Up"), SL_STR("1")}, {SL_STR("X-Up"), SL_STR("2")}};
    f->r.source = "service";
    f->r.status = 201;
    f->r.resp_headers = up;
    f->r.nresp_headers = 2;
    sl_pdk_response_add_header(P(f), "X-Up", "3");
    assert_var(f, "status", "201");
    assert_var(f, "upstream_status", "201");
    assert_var(f, "upstream_http_x_up", "1, 2");
    assert_var(f, "sent_http_x_up", "1, 2, 3");
    assert_var(f, "sent_http_x_none", NULL);

    /* a trusted peer's X-Real-IP */
    f->c.trusted = true;
    sl_pdk_service_request_set_header(P(f), "X-Real-IP", "198.51.100.9");
    assert_var(f, "remote_addr", "198.51.100.9");
    assert_var(f, "remote_port", ""); /* no port in the field: nginx's empty $remote_port */
    assert_var(f, "realip_remote_port", "40000");
    sl_str_t v;
    assert_true(sl_pdk_nginx_get_var(P(f), "binary_remote_addr", &v));
    assert_int_equal(v.len, 4);
    assert_memory_equal(v.p, "\xc6\x33\x64\x09", 4);
}

static void test_nginx_misc(void **state)
{
    struct fixture *f = *state;
    assert_null(sl_pdk_nginx_get_tls1_version_str(P(f)));
    assert_string_equal(sl_pdk_nginx_get_subsystem(P(f)), "http");
    assert_true(sl_pdk_nginx_req_start_time(P(f)) > 1700000000.1234 &&
                sl_pdk_nginx_req_start_time(P(f)) < 1700000000.1236);
    assert_int_equal(sl_pdk_request_get_start_time(P(f)), 1700000000123ull);

    /* ngx.ctx is not kong.ctx.shared */
    json_t *n = json_integer(7);
    assert_true(sl_pdk_nginx_set_ctx(P(f), "k", n));
    json_decref(n);
    assert_null(sl_pdk_ctx_shared_get_value(P(f), "k"));
    assert_string_equal(dump(sl_pdk_nginx_get_ctx(P(f), "k")), "7");
    assert_null(sl_pdk_nginx_get_ctx(P(f), "other"));
    assert_true(sl_pdk_nginx_set_ctx(P(f), "k", NULL));
    assert_null(sl_pdk_nginx_get_ctx(P(f), "k"));
}

static void test_ctx_shared_values(void **state)
{
    struct fixture *f = *state;
    json_t *obj = json_pack("{s:i,s:[s,b],s:f}", "n", 1, "l", "x", 1, "r", 0.5);
    assert_true(sl_pdk_ctx_shared_set_value(P(f), "obj", obj));
    /* a copy was stored: changing the original changes nothing */
    json_object_set_new(obj, "n", json_integer(2));
    json_decref(obj);
    assert_string_equal(dump(sl_pdk_ctx_shared_get_value(P(f), "obj")),
                        "{\"l\":[\"x\",true],\"n\":1,\"r\":0.5}");
    /* not a string: the string API does not see it */
    assert_null(sl_pdk_ctx_shared_get(P(f), "obj"));

    /* strings set either way read back either way */
    json_t *s = json_string("text");
    assert_true(sl_pdk_ctx_shared_set_value(P(f), "s", s));
    json_decref(s);
    assert_string_equal(sl_pdk_ctx_shared_get(P(f), "s"), "text");
    sl_pdk_ctx_shared_set(P(f), "t", "plain");
    assert_string_equal(dump(sl_pdk_ctx_shared_get_value(P(f), "t")), "\"plain\"");
    json_t *d = json_real(2.25);
    assert_true(sl_pdk_ctx_shared_set_value(P(f), "t", d));
    json_decref(d);
    assert_null(sl_pdk_ctx_shared_get(P(f), "t"));
    assert_string_equal(dump(sl_pdk_ctx_shared_get_value(P(f), "t")), "2.25");

    /* null unsets */
    json_t *null = json_null();
    assert_true(sl_pdk_ctx_shared_set_value(P(f), "obj", null));
    json_decref(null);
    assert_null(sl_pdk_ctx_shared_get_value(P(f), "obj"));
    assert_null(sl_pdk_ctx_shared_get_value(P(f), "never"));
}

static void test_service_target_and_upstream(void **state)
{
    struct fixture *f = *state;
    sl_gen_t g;
    memset(&g, 0, sizeof(g));
    sl_upstream_t ups[2];
    memset(ups, 0, sizeof(ups));
    ups[0].name = "first";
    ups[1].name = "My-Up";
    g.upstreams = ups;
    g.nupstreams = 2;
    g.upstream_index = json_pack("{s:i,s:i}", "first", 0, "my-up", 1);
    f->r.gen = &g;

    assert_true(sl_pdk_service_set_upstream(P(f), "MY-UP"));
    assert_ptr_equal(f->r.pdk_upstream, &ups[1]);
    assert_false(sl_pdk_service_set_upstream(P(f), "missing"));
    assert_true(test_logged("could not find an Upstream named 'missing'"));
    assert_ptr_equal(f->r.pdk_upstream, &ups[1]); /* unchanged */

    assert_true(sl_pdk_service_set_target(P(f), "10.0.0.5", 8080));
    assert_null(f->r.pdk_upstream);
    assert_str(f->r.target_host, "10.0.0.5");
    assert_int_equal(f->r.target_port, 8080);
    assert_str(f->r.up_host, "10.0.0.5"); /* Kong's $upstream_host */
    assert_false(sl_pdk_service_set_target(P(f), "svc.local", 65536));
    assert_false(sl_pdk_service_set_target(P(f), "svc.local", -1));
    assert_false(sl_pdk_service_set_target(P(f), "bad host", 80));
    assert_false(sl_pdk_service_set_target(P(f), "", 80));
    assert_str(f->r.target_host, "10.0.0.5");
    assert_true(sl_pdk_service_set_target(P(f), "svc.local", 443));
    assert_true(sl_pdk_service_set_upstream(P(f), "first"));
    assert_null(f->r.target_host.p);
    assert_ptr_equal(f->r.pdk_upstream, &ups[0]);
    json_decref(g.upstream_index);
    f->r.gen = NULL;
    assert_false(sl_pdk_service_set_upstream(P(f), "first"));

    assert_true(sl_pdk_service_request_set_scheme(P(f), "https"));
    assert_int_equal(f->r.up_scheme, 1);
    assert_true(sl_pdk_service_request_set_scheme(P(f), "http"));
    assert_int_equal(f->r.up_scheme, -1);
    assert_false(sl_pdk_service_request_set_scheme(P(f), "ftp"));
    assert_true(test_logged("invalid scheme: ftp"));
}

static void test_service_request_tables(void **state)
{
    struct fixture *f = *state;
    json_t *args = json_pack("{s:s,s:[s,s,b],s:b,s:s,s:b,s:i,s:f}", "foo", "hello world", "bar",
                             "baz", "bla", 1, "zzz", 1, "blo", "", "no", 0, "n", 1, "r", 1.5);
    assert_true(sl_pdk_service_request_set_query(P(f), args));
    json_decref(args);
    assert_str(sl_pdk_request_get_raw_query(P(f)),
               "bar=baz&bar=bla&bar&blo=&foo=hello%20world&n=1&r=1.5&zzz");
    args = json_pack("{s:s,s:{s:i}}", "ok", "1", "bad", "x", 1);
    assert_false(sl_pdk_service_request_set_query(P(f), args));
    json_decref(args);
    assert_str(sl_pdk_request_get_raw_query(P(f)),
               "bar=baz&bar=bla&bar&blo=&foo=hello%20world&n=1&r=1.5&zzz");
    args = json_pack("{s:[s,n]}", "a", "x");
    assert_false(sl_pdk_service_request_set_query(P(f), args));
    json_decref(args);
    args = json_pack("{s:s}", "k&=", "v/ü");
    assert_true(sl_pdk_service_request_set_query(P(f), args));
    json_decref(args);
    assert_str(sl_pdk_request_get_raw_query(P(f)), "k%26%3D=v%2F%C3%BC");

    json_t *hs = json_pack("{s:s,s:[s,s],s:i,s:b,s:[]}", "X-B", "b", "X-A", "1", "2", "X-Num", 5,
                           "X-Bool", 0, "Accept");
    assert_true(sl_pdk_service_request_set_headers(P(f), hs));
    json_decref(hs);
    assert_string_equal(dump(sl_pdk_request_get_headers(P(f), 100, NULL)),
                        "{\"host\":\"Example.COM:8000\",\"x-a\":[\"1\",\"2\"],\"x-b\":\"b\","
                        "\"x-bool\":\"false\",\"x-multi\":[\"one\",\"two\"],\"x-num\":\"5\"}");
    /* nothing changes when one entry is bad */
    hs = json_pack("{s:s,s:{}}", "X-C", "c", "X-D");
    assert_false(sl_pdk_service_request_set_headers(P(f), hs));
    json_decref(hs);
    hs = json_pack("{s:s,s:[i]}", "X-C", "c", "X-D", 1);
    assert_false(sl_pdk_service_request_set_headers(P(f), hs));
    json_decref(hs);
    hs = json_pack("{s:s,s:s}", "X-C", "c", "X-D", "a\r\nInjected: 1");
    assert_false(sl_pdk_service_request_set_headers(P(f), hs));
    json_decref(hs);
    sl_str_t v;
    assert_false(sl_pdk_request_get_header(P(f), "x-c", &v));
    /* Host goes to the upstream Host */
    hs = json_pack("{s:s}", "host", "up.example");
    assert_true(sl_pdk_service_request_set_headers(P(f), hs));
    json_decref(hs);
    assert_str(f->r.up_host, "up.example");
    assert_false(sl_pdk_service_request_set_headers(P(f), NULL));
}

static void test_response_tables(void **state)
{
    struct fixture *f = *state;
    sl_h1_header_t up[] = {
        {SL_STR("Content-Type"), SL_STR("text/plain")},
        {SL_STR("X-Up"), SL_STR("1")},
    };
    f->r.resp_headers = up;
    f->r.nresp_headers = 2;
    json_t *hs = json_pack("{s:[s,s],s:s,s:b,s:[]}", "X-R", "1", "2", "Transfer-Encoding",
                           "chunked", "X-S", 1, "content-type");
    assert_true(sl_pdk_response_set_headers(P(f), hs));
    json_decref(hs);
    assert_true(test_logged("manually setting Transfer-Encoding. Ignored."));
    bool truncated = true;
    assert_string_equal(dump(sl_pdk_response_get_headers(P(f), 100, &truncated)),
                        "{\"x-r\":[\"1\",\"2\"],\"x-s\":\"true\",\"x-up\":\"1\"}");
    assert_false(truncated);
    assert_string_equal(dump(sl_pdk_response_get_headers(P(f), 2, &truncated)),
                        "{\"x-r\":\"1\",\"x-up\":\"1\"}");
    assert_true(truncated);
    assert_null(sl_pdk_response_get_headers(P(f), 0, NULL));
    hs = json_pack("{s:s,s:s}", "X-T", "t", "Bad Name", "v");
    assert_false(sl_pdk_response_set_headers(P(f), hs));
    json_decref(hs);
    sl_str_t v;
    assert_false(sl_pdk_response_get_header(P(f), "x-t", &v));

    /* the upstream's fields: in header_filter of a response it gave */
    assert_null(sl_pdk_service_response_get_headers(P(f), 100, NULL));
    assert_int_equal(sl_pdk_service_response_get_status(P(f)), 0);
    f->r.source = "service";
    f->r.status = 200;
    assert_string_equal(dump(sl_pdk_service_response_get_headers(P(f), 100, NULL)),
                        "{\"content-type\":\"text/plain\",\"x-up\":\"1\"}");
    assert_true(sl_pdk_service_response_get_header(P(f), "X-UP", &v));
    assert_str(v, "1");
    assert_int_equal(sl_pdk_service_response_get_status(P(f)), 200);
    /* a response held whole: its copy, also once header_filter is over */
    sl_h1_header_t held[] = {{SL_STR("X-Held"), SL_STR("h")}};
    f->r.resp_headers = NULL;
    f->r.nresp_headers = 0;
    f->r.held_headers = held;
    f->r.nheld_headers = 1;
    f->r.held_status = 203;
    f->r.resp_body = evbuffer_new();
    assert_string_equal(dump(sl_pdk_service_response_get_headers(P(f), 100, NULL)),
                        "{\"x-held\":\"h\"}");
    assert_int_equal(sl_pdk_service_response_get_status(P(f)), 203);
    evbuffer_free(f->r.resp_body);
    f->r.resp_body = NULL;
}

static void test_response_set_status_by_phase(void **state)
{
    struct fixture *f = *state;
    f->r.status = 200;
    /* access: accepted, replaced by what answers */
    assert_true(sl_pdk_response_set_status(P(f), 404));
    assert_int_equal(f->r.status_override, 0);
    assert_int_equal(f->r.filter_status, 0);
    assert_false(sl_pdk_response_set_status(P(f), 600));
    assert_false(sl_pdk_response_set_status(P(f), 99));
    /* response: only over a held response */
    f->r.phase = SL_PHASE_RESPONSE;
    assert_false(sl_pdk_response_set_status(P(f), 418));
    f->r.resp_body = evbuffer_new();
    assert_true(sl_pdk_response_set_status(P(f), 418));
    assert_int_equal(f->r.status_override, 418);
    assert_int_equal(sl_pdk_response_get_status(P(f)), 418);
    evbuffer_free(f->r.resp_body);
    f->r.resp_body = NULL;
    /* header_filter: the head about to go out */
    f->r.phase = SL_PHASE_HEADER_FILTER;
    f->r.status = 200;
    assert_true(sl_pdk_response_set_status(P(f), 503));
    assert_int_equal(f->r.filter_status, 503);
    assert_int_equal(sl_pdk_response_get_status(P(f)), 503);
    /* log: too late */
    f->r.phase = SL_PHASE_LOG;
    assert_false(sl_pdk_response_set_status(P(f), 200));
    assert_true(test_logged("set_status(200) refused: headers have already been sent"));
}

static void test_log_functions(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sl_pdk_log_level("alert"), SL_LOG_CRIT);
    assert_int_equal(sl_pdk_log_level("crit"), SL_LOG_CRIT);
    assert_int_equal(sl_pdk_log_level("err"), SL_LOG_ERROR);
    assert_int_equal(sl_pdk_log_level("warn"), SL_LOG_WARN);
    assert_int_equal(sl_pdk_log_level("notice"), SL_LOG_NOTICE);
    assert_int_equal(sl_pdk_log_level("info"), SL_LOG_INFO);
    assert_int_equal(sl_pdk_log_level("debug"), SL_LOG_DEBUG);
    assert_int_equal(sl_pdk_log_level("inspect"), -1);
    assert_int_equal(sl_pdk_log_level(NULL), -1);

    const char msg[] = "line one\nforged [crit] line\x01 end";
    sl_pdk_log_message(P(f), SL_LOG_ERROR, msg, sizeof(msg) - 1);
    assert_true(test_logged("line one\\nforged [crit] line\\x01 end"));
    json_t *args = json_pack("[s,i,f,b,n,{s:i}]", "x=", 1, 1.5, 1, "k", 2);
    sl_pdk_log_values(P(f), SL_LOG_WARN, args);
    json_decref(args);
    assert_true(test_logged("x=11.5truenil{\"k\":2}"));
    /* below the log level: nothing */
    sl_pdk_log_message(P(f), SL_LOG_DEBUG, "hidden-message", 14);
    assert_false(test_logged("hidden-message"));
    /* long messages are cut */
    char *big = malloc(10000);
    memset(big, 'z', 10000);
    sl_pdk_log_message(P(f), SL_LOG_ERROR, big, 10000);
    free(big);
    char want[1810];
    memset(want, 'z', 1796);
    memcpy(want + 1796, "...\n", 5);
    assert_true(test_logged(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_header_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_that_would_split_a_message_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_response_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_with_query_and_forwarded_getters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_forwarded_address_and_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_get_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_is_trusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_and_query_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uri_captures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nginx_get_var, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nginx_misc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_shared_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_target_and_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_request_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_set_status_by_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_functions, setup, teardown),
    };
    if (!test_log_open("test_pdk_log"))
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    test_log_remove();
    return rc;
}
