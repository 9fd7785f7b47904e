/*
 * Unit tests of the plugin engine's chains (dataplane/engine.c): Kong's
 * execution order, the eight scope ranks with and without a consumer, chain
 * sharing between routes, disabled and unknown instances, and the consumer
 * and credential lookups behind the PDK. Documents go through the real
 * declarative loader (defaults filled, ids derived) and the real generation
 * builder, with the real native plugins' configure().
 */
#include "declarative.h"
#include "engine.h"
#include "gen.h"
#include "pdk.h"
#include "plugins.h"
#include "proxy-t.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SVC "11111111-1111-4111-8111-111111111111"
#define RT "22222222-2222-4222-8222-222222222222"
#define RT2 "22222222-2222-4222-8222-333333333333"
#define ALICE "33333333-3333-4333-8333-333333333333"
#define BOB "44444444-4444-4444-8444-444444444444"

static int setup(void **state)
{
    (void)state;
    sl_errors_t errs;
    sl_errors_init(&errs);
    assert_int_equal(sl_plugins_enable("bundled", &errs), SL_OK);
    sl_plugins_install_lookup();
    sl_errors_dispose(&errs);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_plugins_reset();
    return 0;
}

/* Loads a declarative document (single quotes for double quotes) and
 * builds a generation from it; the generation (NULL on failure) and every
 * error in errs. */
static sl_gen_t *try_build(const char *text, sl_errors_t *errs)
{
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_t *doc = NULL;
    sl_gen_t *g = NULL;
    if (sl_declarative_load_string(s, strlen(s), &doc, errs) != SL_OK ||
        sl_gen_build(doc, 1, &g, errs) != SL_OK)
        g = NULL;
    json_decref(doc);
    free(s);
    return g;
}

/* A generation that must build; fails the test with the errors otherwise. */
static sl_gen_t *build(const char *text)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_gen_t *g = try_build(text, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  %s\n", errs.items[i]);
    assert_non_null(g);
    sl_errors_dispose(&errs);
    return g;
}

/* The errors a document gets, joined. */
static char *build_errors(const char *text)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_gen_unref(try_build(text, &errs));
    size_t len = 1;
    for (size_t i = 0; i < errs.n; i++)
        len += strlen(errs.items[i]) + 1;
    char *out = calloc(1, len);
    for (size_t i = 0; i < errs.n; i++) {
        strcat(out, errs.items[i]);
        strcat(out, "\n");
    }
    sl_errors_dispose(&errs);
    return out;
}

static const sl_route_t *route_named(const sl_gen_t *g, const char *name)
{
    for (size_t i = 0; i < g->nroutes; i++)
        if (g->routes[i].name && !strcmp(g->routes[i].name, name))
            return &g->routes[i];
    fail_msg("no route %s", name);
    return NULL;
}

/* A request on route `rn` with consumer `cid` (NULL: none), as the engine
 * sees it through the PDK. */
static void fake_request(sl_req_t *r, sl_gen_t *g, const char *rn, const char *cid)
{
    memset(r, 0, sizeof(*r));
    r->gen = g;
    r->route = route_named(g, rn);
    r->svc = r->route->service;
    r->consumer = cid ? sl_engine_consumer(g, cid) : NULL;
    if (cid)
        assert_non_null(r->consumer);
}

/* The id of the rate-limiting instance that applies, or "" for none. */
static const char *winner(sl_gen_t *g, const char *rn, const char *cid)
{
    sl_req_t r;
    fake_request(&r, g, rn, cid);
    const struct sl_chain_s *c = r.route->chain;
    for (size_t i = 0; i < sl_engine_chain_len(c); i++) {
        if (strcmp(sl_engine_chain_plugin(c, i)->name, "rate-limiting"))
            continue;
        const sl_plugin_inst_t *x = sl_engine_resolve((sl_pdk_t *)&r, c, i);
        return x ? x->id : "";
    }
    return "";
}

/* ------------------------------------------------------------------------ */

static void test_order_is_priority_then_name_descending(void **state)
{
    (void)state;
    sl_gen_t *g = build("{'_format_version':'3.0',"
                        "'services':[{'name':'s','url':'http://127.0.0.1:9','routes':["
                        "{'name':'r','paths':['/']}]}],"
                        "'plugins':["
                        "{'name':'rate-limiting','route':'r','config':{'minute':5}},"
                        "{'name':'key-auth','service':'s'},"
                        "{'name':'cors'},"
                        "{'name':'acl','route':'r','config':{'allow':['a']}},"
                        "{'name':'correlation-id'},"
                        "{'name':'request-transformer'},"
                        "{'name':'response-transformer'}]}");
    const struct sl_chain_s *c = route_named(g, "r")->chain;
    const char *want[] = {
        "correlation-id",      "cors", "key-auth", "acl", "rate-limiting", "request-transformer",
        "response-transformer"};
    assert_int_equal(sl_engine_chain_len(c), SL_ARRAY_LEN(want));
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++)
        assert_string_equal(sl_engine_chain_plugin(c, i)->name, want[i]);
    sl_gen_unref(g);
}

/* The document with rate-limiting instances of ranks `from`..8 (Kong's
 * ranks: 1 route+service+consumer ... 8 global); instance ids name their
 * rank. */
static sl_gen_t *ranked(int from)
{
    static const char *inst[] = {
        "",
        "{'id':'00000000-0000-4000-8000-000000000001','name':'rate-limiting','route':'r',"
        "'service':'s','consumer':'alice','config':{'minute':1}}",
        "{'id':'00000000-0000-4000-8000-000000000002','name':'rate-limiting','route':'r',"
        "'consumer':'alice','config':{'minute':2}}",
        "{'id':'00000000-0000-4000-8000-000000000003','name':'rate-limiting','service':'s',"
        "'consumer':'alice','config':{'minute':3}}",
        "{'id':'00000000-0000-4000-8000-000000000004','name':'rate-limiting','route':'r',"
        "'service':'s','config':{'minute':4}}",
        "{'id':'00000000-0000-4000-8000-000000000005','name':'rate-limiting','consumer':'alice',"
        "'config':{'minute':5}}",
        "{'id':'00000000-0000-4000-8000-000000000006','name':'rate-limiting','route':'r',"
        "'config':{'minute':6}}",
        "{'id':'00000000-0000-4000-8000-000000000007','name':'rate-limiting','service':'s',"
        "'config':{'minute':7}}",
        "{'id':'00000000-0000-4000-8000-000000000008','name':'rate-limiting',"
        "'config':{'minute':8}}",
    };
    char doc[8192];
    int n = snprintf(doc, sizeof(doc),
                     "{'_format_version':'3.0',"
                     "'consumers':[{'id':'" ALICE "','username':'alice'},"
                     "{'id':'" BOB "','username':'bob'}],"
                     "'services':[{'id':'" SVC "','name':'s','url':'http://127.0.0.1:9',"
                     "'routes':[{'id':'" RT "','name':'r','paths':['/r']},"
                     "{'id':'" RT2 "','name':'other','paths':['/o']}]}],"
                     "'plugins':[");
    for (int k = from; k <= 8; k++)
        n += snprintf(doc + n, sizeof(doc) - (size_t)n, "%s%s", k > from ? "," : "", inst[k]);
    snprintf(doc + n, sizeof(doc) - (size_t)n, "]}");
    return build(doc);
}

static const char *rank_id(int k)
{
    static char buf[40];
    snprintf(buf, sizeof(buf), "00000000-0000-4000-8000-00000000000%d", k);
    return buf;
}

static void test_scope_precedence_matrix(void **state)
{
    (void)state;
    /* With alice authenticated the best remaining rank wins; without a
     * consumer (or with bob) only the ranks without a consumer count. */
    static const int no_consumer[9] = {0, 4, 4, 4, 4, 6, 6, 7, 8};
    for (int from = 1; from <= 8; from++) {
        sl_gen_t *g = ranked(from);
        assert_string_equal(winner(g, "r", ALICE), rank_id(from));
        assert_string_equal(winner(g, "r", NULL), rank_id(no_consumer[from]));
        assert_string_equal(winner(g, "r", BOB), rank_id(no_consumer[from]));
        sl_gen_unref(g);
    }
}

static void test_other_routes_of_the_service(void **state)
{
    (void)state;
    /* Route "other" shares the service but not the route: service+consumer
     * (3) and the service (7) apply, route-scoped ones never. */
    sl_gen_t *g = ranked(1);
    assert_string_equal(winner(g, "other", ALICE), rank_id(3));
    assert_string_equal(winner(g, "other", NULL), rank_id(7));
    sl_gen_unref(g);
    g = ranked(4);
    assert_string_equal(winner(g, "other", ALICE), rank_id(5));
    assert_string_equal(winner(g, "other", NULL), rank_id(7));
    sl_gen_unref(g);
}

static void test_routes_without_instances_share_the_global_chain(void **state)
{
    (void)state;
    sl_gen_t *g = build("{'_format_version':'3.0',"
                        "'services':[{'name':'s','url':'http://127.0.0.1:9','routes':["
                        "{'name':'a','paths':['/a']},{'name':'b','paths':['/b']},"
                        "{'name':'c','paths':['/c']}]}],"
                        "'plugins':[{'name':'correlation-id'},"
                        "{'name':'cors','route':'c'}]}");
    const struct sl_chain_s *a = route_named(g, "a")->chain, *b = route_named(g, "b")->chain,
                            *c = route_named(g, "c")->chain;
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_equal(a, sl_engine_global_chain(g));
    assert_int_equal(sl_engine_chain_len(a), 1);
    assert_ptr_not_equal(a, c);
    assert_int_equal(sl_engine_chain_len(c), 2);
    assert_true(sl_engine_chain_phases(c) & SL_PHASE_HEADER_FILTER);
    sl_gen_unref(g);

    /* No plugins at all: no chain, nothing to run. */
    g = build("{'_format_version':'3.0','services':[{'name':'s','url':'http://127.0.0.1:9',"
              "'routes':[{'name':'a','paths':['/a']}]}]}");
    assert_null(route_named(g, "a")->chain);
    assert_null(sl_engine_global_chain(g));
    sl_gen_unref(g);
}

static void test_disabled_instances_are_ignored(void **state)
{
    (void)state;
    sl_gen_t *g = build("{'_format_version':'3.0',"
                        "'services':[{'name':'s','url':'http://127.0.0.1:9','routes':["
                        "{'name':'r','paths':['/r']}]}],"
                        "'plugins':[{'name':'rate-limiting','route':'r','enabled':false,"
                        "'config':{'minute':1}},"
                        "{'id':'00000000-0000-4000-8000-000000000009','name':'rate-limiting',"
                        "'config':{'minute':9}}]}");
    assert_string_equal(winner(g, "r", NULL), "00000000-0000-4000-8000-000000000009");
    sl_gen_unref(g);
}

static void test_plugins_not_enabled_are_errors(void **state)
{
    (void)state;
    sl_errors_t errs;
    sl_errors_init(&errs);
    assert_int_equal(sl_plugins_enable("key-auth", &errs), SL_OK);
    char *e = build_errors("{'_format_version':'3.0','plugins':[{'name':'cors'}]}");
    assert_non_null(strstr(e, "plugin 'cors' not enabled"));
    free(e);
    assert_int_equal(sl_plugins_enable("bundled", &errs), SL_OK);
    sl_errors_dispose(&errs);
}

static void test_consumer_and_credential_lookups(void **state)
{
    (void)state;
    sl_gen_t *g = build("{'_format_version':'3.0',"
                        "'consumers':[{'id':'" ALICE "','username':'alice','custom_id':'c-1',"
                        "'keyauth_credentials':[{'key':'k-alice'}],"
                        "'acls':[{'group':'admins'},{'group':'dev'}]},"
                        "{'id':'" BOB "','username':'" ALICE "'}]}");
    const sl_consumer_t *a = sl_engine_consumer(g, ALICE);
    assert_non_null(a);
    assert_string_equal(a->username, "alice");
    assert_string_equal(a->custom_id, "c-1");
    assert_int_equal(a->ngroups, 2);
    assert_string_equal(a->groups[0], "admins");
    assert_string_equal(a->groups[1], "dev");
    /* by username; an id wins over a username spelling it */
    assert_ptr_equal(sl_engine_consumer(g, "alice"), a);
    assert_string_equal(sl_engine_consumer(g, BOB)->id, BOB);
    assert_null(sl_engine_consumer(g, "nobody"));
    const sl_credential_t *k = sl_engine_credential(g, "keyauth_credentials", "k-alice");
    assert_non_null(k);
    assert_ptr_equal(k->consumer, a);
    assert_null(sl_engine_credential(g, "keyauth_credentials", "k-bob"));
    assert_null(sl_engine_credential(g, "basicauth_credentials", "k-alice"));
    sl_gen_unref(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_is_priority_then_name_descending),
        cmocka_unit_test(test_scope_precedence_matrix),
        cmocka_unit_test(test_other_routes_of_the_service),
        cmocka_unit_test(test_routes_without_instances_share_the_global_chain),
        cmocka_unit_test(test_disabled_instances_are_ignored),
        cmocka_unit_test(test_plugins_not_enabled_are_errors),
        cmocka_unit_test(test_consumer_and_credential_lookups),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
