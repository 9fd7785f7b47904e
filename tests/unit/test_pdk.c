/*
 * Unit tests of the C PDK (dataplane/pdk.c) on a request object built by
 * hand: header reads and edits as the upstream will see them, query
 * arguments (decoding, removal), the upstream overrides, response header
 * operations and what header_filter reads back, exits, kong.ctx, and the
 * refusal of fields that would split a message.
 */
#include "pdk.h"
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
    sl_h1_header_t hs[4];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->c.peer_ip, sizeof(f->c.peer_ip), "192.0.2.7");
    f->c.peer_port = 40000;
    f->c.local_port = 8000;
    f->r.c = &f->c;
    sl_arena_init(&f->r.arena);
    f->hs[0] = (sl_h1_header_t){SL_STR("Host"), SL_STR("Example.COM:8000")};
    f->hs[1] = (sl_h1_header_t){SL_STR("X-Multi"), SL_STR("one")};
    f->hs[2] = (sl_h1_header_t){SL_STR("x-multi"), SL_STR("two")};
    f->hs[3] = (sl_h1_header_t){SL_STR("Accept"), SL_STR("*/*")};
    f->r.h.headers = f->hs;
    f->r.h.num_headers = 4;
    f->r.h.method = SL_STR("GET");
    f->r.h.path = SL_STR("/a//b");
    f->r.h.query = SL_STR("q=a%20b+c&flag&q=second&empty=&x%41=1");
    f->r.h.host = SL_STR("Example.COM:8000");
    f->r.h.minor_version = 1;
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

static void assert_str(sl_str_t s, const char *want)
{
    char *got = strndup(s.p ? s.p : "", s.len);
    assert_string_equal(got, want);
    free(got);
}

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
