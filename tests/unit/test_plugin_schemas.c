/*
 * Unit tests of the bundled plugins' descriptors (common/plugin_schemas.c):
 * the registry itself (order, priorities, phases), and for every plugin the
 * defaults an empty config receives, bad values reported with Kong's
 * messages at their nested paths in `fields`, the entity checks on config
 * fields, and the scopes a plugin refuses. Plugin entities go through the
 * plugins entity schema, as the declarative loader and the Admin API do.
 */
#include "entities.h"
#include "plugins.h"
#include "schema.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define CONSUMER_ID "8c2b1b0e-3c7a-4f5e-9a51-2f8f7e3b6d41"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static const sl_schema_t *bundled_lookup(const char *name)
{
    const sl_plugin_info_t *p = sl_bundled_plugin(name);
    return p ? p->schema : NULL;
}

static int setup(void **state)
{
    (void)state;
    sl_entities_set_plugin_lookup(bundled_lookup);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_entities_set_plugin_lookup(NULL);
    return 0;
}

/* Test inputs are written with single quotes; none needs a real one. */
static json_t *parse(const char *text)
{
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t err;
    json_t *j = json_loads(s, 0, &err);
    if (j == NULL)
        fprintf(stderr, "bad test input %s: %s\n", s, err.text);
    free(s);
    assert_non_null(j);
    return j;
}

struct check {
    int rc;
    json_t *entity;
    json_t *fields;
};

static struct check run(const char *text)
{
    struct check c;
    c.entity = parse(text);
    c.fields = json_object();
    c.rc = sl_schema_validate(sl_entity_schema("plugins"), c.entity, "", NULL, c.fields);
    return c;
}

static void done(struct check *c)
{
    json_decref(c->entity);
    json_decref(c->fields);
}

static void dump(const char *what, const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(stderr, "  %s: %s\n", what, s ? s : "(null)");
    free(s);
}

/* The value at a path such as "config.key_names[1]" or "config.redis.port". */
static const json_t *at(const json_t *root, const char *path)
{
    const json_t *cur = root;
    const char *p = path;
    while (*p && cur) {
        size_t n = strcspn(p, ".[");
        if (n) {
            cur = json_object_getn(cur, p, n);
            p += n;
        }
        while (*p == '[' && cur) {
            char *end;
            size_t i = strtoul(p + 1, &end, 10);
            cur = json_array_get(cur, i);
            p = end + 1;
        }
        if (*p == '.')
            p++;
    }
    return cur;
}

/* Validates text, expecting success; returns the filled entity. */
static json_t *valid(const char *text)
{
    struct check c = run(text);
    if (c.rc != SL_OK)
        dump("unexpected errors", c.fields);
    assert_int_equal(c.rc, SL_OK);
    json_decref(c.fields);
    return c.entity;
}

/* Validates text, expecting msg at path of `fields`. */
static void expect_field(const char *text, const char *path, const char *msg)
{
    struct check c = run(text);
    const json_t *e = at(c.fields, path);
    if (c.rc == SL_OK || !json_is_string(e) || strcmp(json_string_value(e), msg) != 0) {
        fprintf(stderr, "  input: %s\n  want %s: %s\n", text, path, msg);
        dump("fields", c.fields);
    }
    assert_int_equal(c.rc, SL_ERR_INVALID);
    assert_true(json_is_string(e));
    assert_string_equal(json_string_value(e), msg);
    done(&c);
}

/* Validates text, expecting exactly these entity-level messages, in order. */
static void expect_entity(const char *text, ...)
{
    struct check c = run(text);
    const json_t *list = json_object_get(c.fields, "@entity");
    va_list ap;
    va_start(ap, text);
    size_t i = 0;
    bool ok = c.rc == SL_ERR_INVALID && json_is_array(list);
    for (const char *m; (m = va_arg(ap, const char *)) != NULL; i++) {
        const json_t *e = json_array_get(list, i);
        if (!json_is_string(e) || strcmp(json_string_value(e), m) != 0) {
            fprintf(stderr, "  want @entity[%zu]: %s\n", i, m);
            ok = false;
        }
    }
    va_end(ap);
    if (json_array_size(list) != i)
        ok = false;
    if (!ok) {
        fprintf(stderr, "  input: %s\n", text);
        dump("fields", c.fields);
    }
    assert_true(ok);
    done(&c);
}

static void assert_str_at(const json_t *j, const char *path, const char *want)
{
    const json_t *v = at(j, path);
    if (!json_is_string(v))
        dump(path, v);
    assert_true(json_is_string(v));
    assert_string_equal(json_string_value(v), want);
}

static void assert_num_at(const json_t *j, const char *path, double want)
{
    const json_t *v = at(j, path);
    if (!json_is_number(v) || json_number_value(v) != want)
        dump(path, v);
    assert_true(json_is_number(v));
    assert_true(json_number_value(v) == want);
}

static void assert_int_at(const json_t *j, const char *path, json_int_t want)
{
    const json_t *v = at(j, path);
    if (!json_is_integer(v))
        dump(path, v);
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), want);
}

static void assert_bool_at(const json_t *j, const char *path, bool want)
{
    const json_t *v = at(j, path);
    if (!json_is_boolean(v))
        dump(path, v);
    assert_true(json_is_boolean(v));
    assert_int_equal(json_is_true(v), want);
}

static void assert_null_at(const json_t *j, const char *path)
{
    const json_t *v = at(j, path);
    if (!json_is_null(v))
        dump(path, v);
    assert_true(json_is_null(v));
}

/* The value at path equals the JSON text want (single quotes allowed). */
static void assert_json_at(const json_t *j, const char *path, const char *want)
{
    json_t *w = parse(want);
    const json_t *v = at(j, path);
    if (!json_equal(v, w))
        dump(path, v);
    assert_true(json_equal(v, w));
    json_decref(w);
}

/* ------------------------------------------------------------------------ */
/* The registry                                                              */

static void test_registry(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int priority;
        unsigned phases;
    } want[] = {
        {"acl", 950, SL_PHASE_ACCESS},
        {"basic-auth", 1100, SL_PHASE_ACCESS},
        {"correlation-id", 100001, SL_PHASE_ACCESS | SL_PHASE_HEADER_FILTER},
        {"cors", 2000, SL_PHASE_ACCESS | SL_PHASE_HEADER_FILTER},
        {"file-log", 9, SL_PHASE_LOG},
        {"http-log", 12, SL_PHASE_LOG},
        {"ip-restriction", 990, SL_PHASE_ACCESS | SL_PHASE_PREREAD},
        {"jwt", 1450, SL_PHASE_ACCESS},
        {"key-auth", 1250, SL_PHASE_ACCESS},
        {"prometheus", 13, SL_PHASE_LOG},
        {"rate-limiting", 910, SL_PHASE_ACCESS},
        {"request-size-limiting", 951, SL_PHASE_ACCESS},
        {"request-transformer", 801, SL_PHASE_ACCESS},
        {"response-transformer", 800, SL_PHASE_HEADER_FILTER | SL_PHASE_BODY_FILTER},
    };
    size_t n = 0;
    while (sl_bundled_plugins[n])
        n++;
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++) {
        const sl_plugin_info_t *p = sl_bundled_plugins[i];
        assert_string_equal(p->name, want[i].name);
        assert_int_equal(p->priority, want[i].priority);
        assert_int_equal(p->phases, want[i].phases);
        assert_string_equal(p->version, SL_BUNDLED_PLUGIN_VERSION);
        assert_null(p->server);
        assert_non_null(p->schema);
        assert_non_null(sl_schema_field(p->schema, NULL, "config"));
        assert_ptr_equal(sl_bundled_plugin(want[i].name), p);
        if (i > 0)
            assert_true(strcmp(sl_bundled_plugins[i - 1]->name, p->name) < 0);
    }
    assert_null(sl_bundled_plugin("no-such-plugin"));
    assert_null(sl_bundled_plugin(""));
}

static void test_unknown_plugin(void **state)
{
    (void)state;
    expect_field("{'name':'bot-detection'}", "name",
                 "plugin 'bot-detection' not enabled; add it to the 'plugins' configuration "
                 "property");
    expect_field("{'name':'key-auth','config':'x'}", "config", "expected a record");
    expect_field("{'name':'key-auth','config':null}", "config", "required field missing");
    expect_field("{'name':'key-auth','config':{'key_name':['a']}}", "config.key_name",
                 "unknown field");
}

/* Kong's typedefs.no_consumer: auth plugins (and cors, which runs before
 * them) cannot be scoped to a consumer; the others can. */
static void test_consumer_scoping(void **state)
{
    (void)state;
#define SCOPED "'consumer':{'id':'" CONSUMER_ID "'}"
    static const char *const refused[] = {
        "{'name':'key-auth'," SCOPED "}", "{'name':'basic-auth'," SCOPED "}",
        "{'name':'jwt'," SCOPED "}",      "{'name':'acl'," SCOPED ",'config':{'allow':['a']}}",
        "{'name':'cors'," SCOPED "}",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        expect_field(refused[i], "consumer", "value must be null");
    json_t *e = valid("{'name':'key-auth','consumer':null}");
    assert_null_at(e, "consumer");
    json_decref(e);
    e = valid("{'name':'rate-limiting'," SCOPED ",'config':{'minute':10}}");
    assert_str_at(e, "consumer.id", CONSUMER_ID);
    json_decref(e);
#undef SCOPED
}

/* typedefs.protocols_http for most plugins; the plain protocols set (with
 * its http-only default) for the loggers, prometheus and
 * request-transformer. */
static void test_protocols(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'key-auth'}");
    assert_json_at(e, "protocols", "['grpc','grpcs','http','https']");
    json_decref(e);
    expect_field("{'name':'key-auth','protocols':['http','tcp']}", "protocols[1]",
                 "expected one of: grpc, grpcs, http, https");
    expect_field("{'name':'rate-limiting','protocols':['tls'],'config':{'second':1}}",
                 "protocols[0]", "expected one of: grpc, grpcs, http, https");
    e = valid("{'name':'file-log','protocols':['tcp','udp'],'config':{'path':'/tmp/x.log'}}");
    assert_json_at(e, "protocols", "['tcp','udp']");
    json_decref(e);
    e = valid("{'name':'prometheus'}");
    assert_json_at(e, "protocols", "['grpc','grpcs','http','https']");
    json_decref(e);
    e = valid("{'name':'request-transformer','protocols':['tls']}");
    json_decref(e);
}

/* ------------------------------------------------------------------------ */
/* Authentication                                                            */

static void test_key_auth(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'key-auth'}");
    assert_json_at(e, "config.key_names", "['apikey']");
    assert_bool_at(e, "config.hide_credentials", false);
    assert_bool_at(e, "config.key_in_header", true);
    assert_bool_at(e, "config.key_in_query", true);
    assert_bool_at(e, "config.key_in_body", false);
    assert_bool_at(e, "config.run_on_preflight", true);
    assert_null_at(e, "config.anonymous");
    assert_null_at(e, "config.realm");
    assert_bool_at(e, "enabled", true);
    json_decref(e);

    expect_field("{'name':'key-auth','config':{'key_names':['apikey','bad name']}}",
                 "config.key_names[1]",
                 "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
    expect_field("{'name':'key-auth','config':{'key_names':['']}}", "config.key_names[0]",
                 "length must be at least 1");
    expect_field("{'name':'key-auth','config':{'key_names':null}}", "config.key_names",
                 "required field missing");
    expect_field("{'name':'key-auth','config':{'key_in_body':'yes'}}", "config.key_in_body",
                 "expected a boolean");
}

static void test_basic_auth(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'basic-auth'}");
    assert_str_at(e, "config.realm", "service");
    assert_bool_at(e, "config.hide_credentials", false);
    assert_null_at(e, "config.anonymous");
    json_decref(e);

    expect_field("{'name':'basic-auth','config':{'realm':null}}", "config.realm",
                 "required field missing");
    expect_field("{'name':'basic-auth','config':{'anonymous':''}}", "config.anonymous",
                 "length must be at least 1");
}

static void test_jwt(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'jwt'}");
    assert_json_at(e, "config.uri_param_names", "['jwt']");
    assert_json_at(e, "config.cookie_names", "[]");
    assert_json_at(e, "config.header_names", "['authorization']");
    assert_str_at(e, "config.key_claim_name", "iss");
    assert_bool_at(e, "config.secret_is_base64", false);
    assert_bool_at(e, "config.run_on_preflight", true);
    assert_num_at(e, "config.maximum_expiration", 0);
    assert_null_at(e, "config.claims_to_verify");
    json_decref(e);

    e = valid("{'name':'jwt','config':{'claims_to_verify':['exp','nbf','exp'],"
              "'maximum_expiration':3600}}");
    assert_json_at(e, "config.claims_to_verify", "['exp','nbf']");
    json_decref(e);

    expect_field("{'name':'jwt','config':{'claims_to_verify':['exp','iat']}}",
                 "config.claims_to_verify[1]", "expected one of: exp, nbf");
    expect_field("{'name':'jwt','config':{'maximum_expiration':31536001}}",
                 "config.maximum_expiration", "value should be between 0 and 31536000");

    /* a maximum expiration needs "exp" verified (a null list is let through,
     * as Kong does) */
    const char *bad = "{'name':'jwt','config':{'maximum_expiration':60,"
                      "'claims_to_verify':['nbf']}}";
    expect_field(bad, "config.claims_to_verify", "expected to contain: exp");
    expect_entity(bad,
                  "failed conditional validation given value of field "
                  "'config.maximum_expiration'",
                  NULL);
    e = valid("{'name':'jwt','config':{'maximum_expiration':60}}");
    json_decref(e);
    e = valid("{'name':'jwt','config':{'maximum_expiration':0,'claims_to_verify':['nbf']}}");
    json_decref(e);
}

static void test_acl(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'acl','config':{'allow':['admins']}}");
    assert_json_at(e, "config.allow", "['admins']");
    assert_null_at(e, "config.deny");
    assert_bool_at(e, "config.hide_groups_header", false);
    assert_bool_at(e, "config.always_use_authenticated_groups", false);
    json_decref(e);

    expect_entity("{'name':'acl'}",
                  "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  NULL);
    expect_entity("{'name':'acl','config':{'allow':[],'deny':[]}}",
                  "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  NULL);
    expect_entity("{'name':'acl','config':{'allow':['a'],'deny':['b']}}",
                  "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  NULL);
    expect_field("{'name':'acl','config':{'deny':['a',1]}}", "config.deny[1]", "expected a string");
}

/* ------------------------------------------------------------------------ */
/* Traffic control                                                           */

static void test_rate_limiting_defaults(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'rate-limiting','config':{'minute':5}}");
    assert_num_at(e, "config.minute", 5);
    assert_null_at(e, "config.second");
    assert_null_at(e, "config.year");
    assert_str_at(e, "config.limit_by", "consumer");
    assert_str_at(e, "config.policy", "local");
    assert_bool_at(e, "config.fault_tolerant", true);
    assert_bool_at(e, "config.hide_client_headers", false);
    assert_num_at(e, "config.error_code", 429);
    assert_str_at(e, "config.error_message", "API rate limit exceeded");
    assert_num_at(e, "config.sync_rate", -1);
    assert_null_at(e, "config.header_name");
    assert_null_at(e, "config.path");
    assert_null_at(e, "config.redis.host");
    assert_int_at(e, "config.redis.port", 6379);
    assert_int_at(e, "config.redis.timeout", 2000);
    assert_int_at(e, "config.redis.database", 0);
    assert_bool_at(e, "config.redis.ssl", false);
    assert_bool_at(e, "config.redis.ssl_verify", false);
    assert_null_at(e, "config.redis.username");
    assert_null_at(e, "config.redis.password");
    assert_null_at(e, "config.redis.server_name");
    json_decref(e);

    /* the cluster policy is Kong's; the data plane refuses it later */
    e = valid("{'name':'rate-limiting','config':{'hour':100,'policy':'cluster'}}");
    json_decref(e);
    e = valid("{'name':'rate-limiting','config':{'second':1,'policy':'redis','sync_rate':0.5,"
              "'redis':{'host':'redis.internal','password':'','server_name':'redis.internal'}}}");
    assert_str_at(e, "config.redis.password", "");
    assert_int_at(e, "config.redis.port", 6379);
    json_decref(e);
}

static void test_rate_limiting_errors(void **state)
{
    (void)state;
    expect_entity("{'name':'rate-limiting'}",
                  "at least one of these fields must be non-empty: 'config.second', "
                  "'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'",
                  NULL);
    expect_field("{'name':'rate-limiting','config':{'second':0}}", "config.second",
                 "value must be greater than 0");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'error_code':-1}}",
                 "config.error_code", "value must be greater than 0");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'policy':'memcached'}}",
                 "config.policy", "expected one of: local, cluster, redis");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'limit_by':'route'}}",
                 "config.limit_by",
                 "expected one of: consumer, credential, ip, service, header, path");
    expect_field("{'name':'rate-limiting','config':{'second':10,'minute':5}}", "config",
                 "The limit for minute(5.0) cannot be lower than the limit for second(10.0)");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'sync_rate':1}}", "config",
                 "sync_rate can only be used with the redis policy");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'sync_rate':0.01,"
                 "'policy':'redis','redis':{'host':'r'}}}",
                 "config", "sync_rate must be greater than 0.02, or -1 to disable");

    /* the redis record and its typedefs */
    expect_field("{'name':'rate-limiting','config':{'minute':5,'redis':null}}", "config.redis",
                 "required field missing");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'redis':{'port':70000}}}",
                 "config.redis.port", "value should be between 0 and 65535");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'redis':{'host':'bad host'}}}",
                 "config.redis.host", "invalid value: bad host");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'redis':{'host':'r.local:6379'}}}",
                 "config.redis.host", "must not have a port");
    expect_field("{'name':'rate-limiting','config':{'minute':5,"
                 "'redis':{'server_name':'10.0.0.1'}}}",
                 "config.redis.server_name", "must not be an IP");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'redis':{'timeout':-1}}}",
                 "config.redis.timeout", "value should be between 0 and 2147483646");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'redis':{'color':'red'}}}",
                 "config.redis.color", "unknown field");

    /* header_name and path typedefs */
    expect_field("{'name':'rate-limiting','config':{'minute':5,'header_name':'x y'}}",
                 "config.header_name",
                 "bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'path':'api'}}", "config.path",
                 "should start with: /");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'path':'/a//b'}}", "config.path",
                 "must not have empty segments");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'path':'/a b'}}", "config.path",
                 "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 "
                 "found)");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'path':'/a%zz'}}", "config.path",
                 "invalid url-encoded value: '%zz'");
    expect_field("{'name':'rate-limiting','config':{'minute':5,'path':'/a%%41'}}", "config.path",
                 "invalid url-encoded value: '%__'");
}

/* The conditional checks: their field error lands inside config, their
 * entity error names the dotted field, both as in Kong. */
static void test_rate_limiting_conditionals(void **state)
{
    (void)state;
    const char *no_host = "{'name':'rate-limiting','config':{'minute':5,'policy':'redis'}}";
    expect_field(no_host, "config.redis.host", "required field missing");
    expect_entity(no_host, "failed conditional validation given value of field 'config.policy'",
                  NULL);

    const char *no_port = "{'name':'rate-limiting','config':{'minute':5,'policy':'redis',"
                          "'redis':{'host':'r','port':null,'timeout':null}}}";
    expect_field(no_port, "config.redis.port", "required field missing");
    expect_field(no_port, "config.redis.timeout", "required field missing");
    expect_entity(no_port, "failed conditional validation given value of field 'config.policy'",
                  "failed conditional validation given value of field 'config.policy'", NULL);

    const char *no_header = "{'name':'rate-limiting','config':{'minute':5,'limit_by':'header'}}";
    expect_field(no_header, "config.header_name", "required field missing");
    expect_entity(no_header, "failed conditional validation given value of field 'config.limit_by'",
                  NULL);

    const char *no_path = "{'name':'rate-limiting','config':{'minute':5,'limit_by':'path'}}";
    expect_field(no_path, "config.path", "required field missing");
    expect_entity(no_path, "failed conditional validation given value of field 'config.limit_by'",
                  NULL);

    json_t *e = valid("{'name':'rate-limiting','config':{'minute':5,'limit_by':'path',"
                      "'path':'/v1/orders'}}");
    json_decref(e);
}

static void test_ip_restriction(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'ip-restriction','config':{'allow':['10.0.0.0/8','192.0.2.7',"
                      "'2001:db8::/32','::1','fe80::1/128']}}");
    assert_json_at(e, "protocols", "['http','https','tcp','tls','grpc','grpcs']");
    assert_null_at(e, "config.deny");
    assert_null_at(e, "config.status");
    assert_null_at(e, "config.message");
    json_decref(e);
    e = valid("{'name':'ip-restriction','protocols':['tcp','tls_passthrough'],"
              "'config':{'deny':['0.0.0.0/0'],'status':401,'message':'go away'}}");
    json_decref(e);

    expect_entity("{'name':'ip-restriction'}",
                  "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  NULL);
    expect_entity("{'name':'ip-restriction','config':{'allow':[]}}",
                  "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
                  NULL);
    expect_field("{'name':'ip-restriction','config':{'deny':['10.0.0.0/8','10.0.0.0/33']}}",
                 "config.deny[1]", "invalid ip or cidr range: '10.0.0.0/33'");
    expect_field("{'name':'ip-restriction','config':{'allow':['2001:db8::/129']}}",
                 "config.allow[0]", "invalid ip or cidr range: '2001:db8::/129'");
    expect_field("{'name':'ip-restriction','config':{'allow':['10.0.0']}}", "config.allow[0]",
                 "invalid ip or cidr range: '10.0.0'");
    expect_field("{'name':'ip-restriction','config':{'allow':['10.0.0.0/08']}}", "config.allow[0]",
                 "invalid ip or cidr range: '10.0.0.0/08'");
    expect_field("{'name':'ip-restriction','config':{'allow':['a'],'status':'403'}}",
                 "config.status", "expected a number");
    expect_field("{'name':'ip-restriction','protocols':['ws'],'config':{'allow':['::1']}}",
                 "protocols[0]",
                 "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp");
}

static void test_request_size_limiting(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'request-size-limiting'}");
    assert_int_at(e, "config.allowed_payload_size", 128);
    assert_str_at(e, "config.size_unit", "megabytes");
    assert_bool_at(e, "config.require_content_length", false);
    json_decref(e);

    expect_field("{'name':'request-size-limiting','config':{'size_unit':'gigabytes'}}",
                 "config.size_unit", "expected one of: megabytes, kilobytes, bytes");
    expect_field("{'name':'request-size-limiting','config':{'allowed_payload_size':1.5}}",
                 "config.allowed_payload_size", "expected an integer");
}

/* ------------------------------------------------------------------------ */
/* Security and transformations                                              */

static void test_cors(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'cors'}");
    assert_json_at(e, "config.methods",
                   "['GET','HEAD','PUT','PATCH','POST','DELETE','OPTIONS','TRACE','CONNECT']");
    assert_null_at(e, "config.origins");
    assert_null_at(e, "config.headers");
    assert_null_at(e, "config.exposed_headers");
    assert_null_at(e, "config.max_age");
    assert_bool_at(e, "config.credentials", false);
    assert_bool_at(e, "config.private_network", false);
    assert_bool_at(e, "config.preflight_continue", false);
    assert_bool_at(e, "config.allow_origin_absent", true);
    json_decref(e);
    e = valid("{'name':'cors','config':{'origins':['*','https://app.example.com',"
              "'^https://[a-z]+\\\\.example\\\\.org$'],'max_age':3600}}");
    json_decref(e);

    expect_field("{'name':'cors','config':{'origins':['https://a.example.com','(unclosed']}}",
                 "config.origins[1]", "'(unclosed' is not a valid regex");
    expect_field("{'name':'cors','config':{'origins':['**']}}", "config.origins[0]",
                 "'**' is not a valid regex");
    expect_field("{'name':'cors','config':{'methods':['GET','FETCH']}}", "config.methods[1]",
                 "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT");
}

static void test_request_transformer(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'request-transformer'}");
    static const char *const ops[] = {"remove", "rename", "replace", "add", "append"};
    static const char *const parts[] = {"body", "headers", "querystring"};
    char path[64];
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            snprintf(path, sizeof(path), "config.%s.%s", ops[i], parts[j]);
            assert_json_at(e, path, "[]");
        }
    assert_null_at(e, "config.replace.uri");
    assert_null_at(e, "config.http_method");
    json_decref(e);

    e = valid("{'name':'request-transformer','config':{'http_method':'POST',"
              "'remove':{'headers':['x-a','x-b:ignored']},"
              "'rename':{'headers':['x-old:x-new'],'body':['a:b']},"
              "'replace':{'uri':'/v2','headers':['x-v:with spaces: ok']},"
              "'add':{'querystring':['q:$(headers.host)'],'body':['k::v']}}}");
    assert_str_at(e, "config.replace.uri", "/v2");
    json_decref(e);

    expect_field("{'name':'request-transformer','config':{'http_method':'get'}}",
                 "config.http_method", "invalid value: get");
    expect_field("{'name':'request-transformer','config':{'add':{'headers':['x-no-value']}}}",
                 "config.add.headers[0]", "invalid value: x-no-value");
    expect_field("{'name':'request-transformer','config':{'append':{'headers':['ok:1','x y:2']}}}",
                 "config.append.headers[1]", "'x y' is not a valid header");
    expect_field("{'name':'request-transformer','config':{'rename':{'headers':['x-a:b c']}}}",
                 "config.rename.headers[0]", "'b c' is not a valid header");
    expect_field("{'name':'request-transformer','config':{'rename':{'headers':['x-a:']}}}",
                 "config.rename.headers[0]", "'' is not a valid header");
    expect_field("{'name':'request-transformer','config':{'remove':{'headers':[':x']}}}",
                 "config.remove.headers[0]", "'nil' is not a valid header");
    expect_field("{'name':'request-transformer','config':{'add':{'body':['key']}}}",
                 "config.add.body[0]", "key 'key' has no value");
    expect_field("{'name':'request-transformer','config':{'replace':{'querystring':['q:']}}}",
                 "config.replace.querystring[0]", "key 'q' has no value");
    expect_field("{'name':'request-transformer','config':{'add':null}}", "config.add",
                 "required field missing");
}

static void test_response_transformer(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'response-transformer'}");
    assert_json_at(e, "config.remove", "{'json':[],'headers':[]}");
    assert_json_at(e, "config.rename", "{'json':[],'headers':[]}");
    assert_json_at(e, "config.replace", "{'json':[],'json_types':[],'headers':[]}");
    assert_json_at(e, "config.add", "{'json':[],'json_types':[],'headers':[]}");
    assert_json_at(e, "config.append", "{'json':[],'json_types':[],'headers':[]}");
    json_decref(e);
    e = valid("{'name':'response-transformer','config':{'add':{'json':['a:1'],"
              "'json_types':['number'],'headers':['x-a:any value']},"
              "'rename':{'json':['old:new'],'headers':['x-a:x-b']},"
              "'remove':{'headers':['anything goes']}}}");
    json_decref(e);

    expect_field("{'name':'response-transformer','config':{'add':{'json_types':['object']}}}",
                 "config.add.json_types[0]", "expected one of: boolean, number, string");
    expect_field("{'name':'response-transformer','config':{'replace':{'headers':['x-a']}}}",
                 "config.replace.headers[0]", "invalid value: x-a");
    expect_field("{'name':'response-transformer','config':{'append':{'json':[':v']}}}",
                 "config.append.json[0]", "invalid value: :v");
    expect_field("{'name':'response-transformer','config':{'rename':{'headers':['x-a:x!']}}}",
                 "config.rename.headers[0]", "'x!' is not a valid header");
}

static void test_correlation_id(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'correlation-id'}");
    assert_str_at(e, "config.header_name", "Kong-Request-ID");
    assert_str_at(e, "config.generator", "uuid#counter");
    assert_bool_at(e, "config.echo_downstream", false);
    json_decref(e);

    expect_field("{'name':'correlation-id','config':{'generator':'random'}}", "config.generator",
                 "expected one of: uuid, uuid#counter, tracker");
    expect_field("{'name':'correlation-id','config':{'generator':null}}", "config.generator",
                 "required field missing");
    expect_field("{'name':'correlation-id','config':{'header_name':''}}", "config.header_name",
                 "length must be at least 1");
}

/* ------------------------------------------------------------------------ */
/* Observability                                                             */

static void test_prometheus(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'prometheus'}");
    static const char *const flags[] = {
        "config.per_consumer",    "config.status_code_metrics", "config.ai_metrics",
        "config.latency_metrics", "config.bandwidth_metrics",   "config.upstream_health_metrics",
        "config.wasm_metrics"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        assert_bool_at(e, flags[i], false);
    assert_int_equal(json_object_size(json_object_get(e, "config")), 7);
    json_decref(e);

    expect_field("{'name':'prometheus','config':{'per_consumer':'yes'}}", "config.per_consumer",
                 "expected a boolean");
}

static void test_file_log(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'file-log','config':{'path':'/var/log/kong/access.log'}}");
    assert_bool_at(e, "config.reopen", false);
    assert_null_at(e, "config.custom_fields_by_lua");
    json_decref(e);
    e = valid("{'name':'file-log','config':{'path':'/tmp/a.log',"
              "'custom_fields_by_lua':{'route':'return nil'}}}");
    assert_str_at(e, "config.custom_fields_by_lua.route", "return nil");
    json_decref(e);

    expect_field("{'name':'file-log'}", "config.path", "required field missing");
    expect_field("{'name':'file-log','config':{'path':'/tmp/*.log'}}", "config.path",
                 "not a valid filename");
    expect_field("{'name':'file-log','config':{'path':'/tmp/a`b`'}}", "config.path",
                 "not a valid filename");
    expect_field("{'name':'file-log','config':{'path':''}}", "config.path", "not a valid filename");
    expect_field("{'name':'file-log','config':{'path':7}}", "config.path", "expected a string");
    expect_field("{'name':'file-log','config':{'path':'/tmp/a','custom_fields_by_lua':{'':'x'}}}",
                 "config.custom_fields_by_lua", "length must be at least 1");
}

static void test_http_log_defaults(void **state)
{
    (void)state;
    json_t *e = valid("{'name':'http-log','config':{'http_endpoint':'http://logs.internal/in'}}");
    assert_str_at(e, "config.method", "POST");
    assert_str_at(e, "config.content_type", "application/json");
    assert_num_at(e, "config.timeout", 10000);
    assert_num_at(e, "config.keepalive", 60000);
    assert_null_at(e, "config.retry_count");
    assert_null_at(e, "config.queue_size");
    assert_null_at(e, "config.flush_timeout");
    assert_null_at(e, "config.headers");
    assert_null_at(e, "config.custom_fields_by_lua");
    assert_int_at(e, "config.queue.max_batch_size", 1);
    assert_num_at(e, "config.queue.max_coalescing_delay", 1);
    assert_int_at(e, "config.queue.max_entries", 10000);
    assert_null_at(e, "config.queue.max_bytes");
    assert_num_at(e, "config.queue.max_retry_time", 60);
    assert_num_at(e, "config.queue.initial_retry_delay", 0.01);
    assert_num_at(e, "config.queue.max_retry_delay", 60);
    assert_int_at(e, "config.queue.concurrency_limit", 1);
    assert_json_at(e, "protocols", "['grpc','grpcs','http','https']");
    json_decref(e);

    e = valid("{'name':'http-log','config':{'http_endpoint':'https://u:p@[::1]:8443/x?y#z',"
              "'headers':{'X-Env':'prod'},'queue':{'max_batch_size':100,'concurrency_limit':-1},"
              "'content_type':'application/json; charset=utf-8'}}");
    assert_int_at(e, "config.queue.max_batch_size", 100);
    assert_num_at(e, "config.queue.max_retry_delay", 60);
    json_decref(e);
}

static void test_http_log_errors(void **state)
{
    (void)state;
    expect_field("{'name':'http-log'}", "config.http_endpoint", "required field missing");
    expect_field("{'name':'http-log','config':{'http_endpoint':'logs.internal/in'}}",
                 "config.http_endpoint", "missing host in url");
    expect_field("{'name':'http-log','config':{'http_endpoint':'logs.internal:9000'}}",
                 "config.http_endpoint", "missing host in url");
    expect_field("{'name':'http-log','config':{'http_endpoint':'//logs.internal/in'}}",
                 "config.http_endpoint", "missing scheme in url");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x','method':'GET'}}",
                 "config.method", "expected one of: POST, PUT, PATCH");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x',"
                 "'queue':{'max_batch_size':0}}}",
                 "config.queue.max_batch_size", "value should be between 1 and 1000000");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x',"
                 "'queue':{'concurrency_limit':4}}}",
                 "config.queue.concurrency_limit", "expected one of: -1, 1");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x',"
                 "'queue':{'initial_retry_delay':0}}}",
                 "config.queue.initial_retry_delay", "value should be between 0 and 1000000");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x','queue':null}}",
                 "config.queue", "required field missing");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x','timeout':'1s'}}",
                 "config.timeout", "expected a number");

    /* headers: names Kong sets itself are refused, then the name is checked */
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x','headers':{'HOST':'a'}}}",
                 "config.headers", "cannot contain 'Host' header");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x',"
                 "'headers':{'content-length':'1'}}}",
                 "config.headers", "cannot contain 'Content-Length' header");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x',"
                 "'headers':{'Content-Type':'text/plain'}}}",
                 "config.headers", "cannot contain 'Content-Type' header");
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://x',"
                 "'headers':{'X Bad':'1'}}}",
                 "config.headers",
                 "bad header name 'X Bad', allowed characters are A-Z, a-z, 0-9, '_', and '-'");

    /* credentials in the URL and an Authorization header are one too many */
    expect_field("{'name':'http-log','config':{'http_endpoint':'http://bob:pw@logs.internal/',"
                 "'headers':{'authorization':'Basic eA=='}}}",
                 "config",
                 "specifying both an 'Authorization' header and user info in 'http_endpoint' is "
                 "not allowed");
    json_t *e = valid("{'name':'http-log','config':{'http_endpoint':'http://logs.internal/',"
                      "'headers':{'Authorization':'Bearer t'}}}");
    json_decref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_unknown_plugin),
        cmocka_unit_test(test_consumer_scoping),
        cmocka_unit_test(test_protocols),
        cmocka_unit_test(test_key_auth),
        cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_acl),
        cmocka_unit_test(test_rate_limiting_defaults),
        cmocka_unit_test(test_rate_limiting_errors),
        cmocka_unit_test(test_rate_limiting_conditionals),
        cmocka_unit_test(test_ip_restriction),
        cmocka_unit_test(test_request_size_limiting),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_request_transformer),
        cmocka_unit_test(test_response_transformer),
        cmocka_unit_test(test_correlation_id),
        cmocka_unit_test(test_prometheus),
        cmocka_unit_test(test_file_log),
        cmocka_unit_test(test_http_log_defaults),
        cmocka_unit_test(test_http_log_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
