/*
 * Unit tests of the declarative loader (common/declarative.c) and, through
 * it, of the entity schemas and the YAML reader: defaults, nesting,
 * references, Kong-compatible deterministic ids, every validation rule with
 * its exact path and message, format migration, and input bounds.
 */
#include "declarative.h"
#include "entities.h"
#include "uuid.h"
#include "yaml_json.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

struct result {
    int rc;
    json_t *out;
    sl_errors_t errs;
};

static struct result load(const char *text)
{
    struct result r = {0};
    sl_errors_init(&r.errs);
    r.rc = sl_declarative_load_string(text, strlen(text), &r.out, &r.errs);
    return r;
}

static void dispose(struct result *r)
{
    json_decref(r->out);
    sl_errors_dispose(&r->errs);
}

static void dump_errors(const struct result *r)
{
    for (size_t i = 0; i < r->errs.n; i++)
        fprintf(stderr, "  error: %s\n", r->errs.items[i]);
}

static bool has_error(const struct result *r, const char *want)
{
    for (size_t i = 0; i < r->errs.n; i++)
        if (strcmp(r->errs.items[i], want) == 0)
            return true;
    return false;
}

static bool has_error_prefix(const struct result *r, const char *want)
{
    for (size_t i = 0; i < r->errs.n; i++)
        if (strncmp(r->errs.items[i], want, strlen(want)) == 0)
            return true;
    return false;
}

#define LOAD_OK(r, text)                                                                           \
    do {                                                                                           \
        (r) = load(text);                                                                          \
        if ((r).rc != SL_OK)                                                                       \
            dump_errors(&(r));                                                                     \
        assert_int_equal((r).rc, SL_OK);                                                           \
        assert_int_equal((r).errs.n, 0);                                                           \
    } while (0)

/* Loads text, expecting failure with (at least) the given error. */
static void expect_error(const char *text, const char *want)
{
    struct result r = load(text);
    if (r.rc != SL_ERR_INVALID || !has_error(&r, want)) {
        fprintf(stderr, "expected error: %s\n", want);
        dump_errors(&r);
    }
    assert_int_equal(r.rc, SL_ERR_INVALID);
    assert_true(has_error(&r, want));
    assert_null(r.out);
    dispose(&r);
}

static json_t *entity(const struct result *r, const char *table, size_t i)
{
    json_t *e = json_array_get(json_object_get(r->out, table), i);
    assert_non_null(e);
    return e;
}

static const char *str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static json_int_t num(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *fk(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(json_object_get(obj, key), "id");
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void uuid5(const char *table, const char *name, char out[37])
{
    char ns[37];
    assert_int_equal(sl_uuid_v5("fd02801f-0957-4a15-a55a-c8d9606f30b5", table, strlen(table), ns),
                     SL_OK);
    assert_int_equal(sl_uuid_v5(ns, name, strlen(name), out), SL_OK);
}

/* Drops created_at/updated_at everywhere so two loads compare equal. */
static void strip_timestamps(json_t *doc)
{
    const char *k;
    json_t *list;
    json_object_foreach(doc, k, list)
    {
        for (size_t i = 0; json_is_array(list) && i < json_array_size(list); i++) {
            json_object_del(json_array_get(list, i), "created_at");
            json_object_del(json_array_get(list, i), "updated_at");
        }
    }
}

/* A self-signed EC certificate and its key, as PEM. */
static void make_cert(bool ca, char **cert_pem, char **key_pem)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"example.com", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    if (ca) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "CA:TRUE");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *cert_pem = strndup(p, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &p);
    *key_pem = strndup(p, (size_t)n);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* A JSON document holding the given certificate fields. */
static char *cert_doc(const char *table, const char *fields_fmt, ...)
{
    char *fields;
    va_list ap;
    va_start(ap, fields_fmt);
    assert_true(vasprintf(&fields, fields_fmt, ap) >= 0);
    va_end(ap);
    char *doc;
    assert_true(asprintf(&doc, "{\"_format_version\":\"3.0\",\"%s\":[%s]}", table, fields) >= 0);
    free(fields);
    return doc;
}

static char *json_quote(const char *s)
{
    json_t *j = json_string(s);
    char *q = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    return q;
}

/* ------------------------------------------------------------------------ */
/* UUIDs                                                                     */

static void test_uuid(void **state)
{
    (void)state;
    char out[37];
    /* RFC 4122 / Python's uuid5(NAMESPACE_DNS, "python.org") */
    assert_int_equal(sl_uuid_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org", 10, out),
                     SL_OK);
    assert_string_equal(out, "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    assert_int_equal(sl_uuid_v5("not-a-uuid", "x", 1, out), SL_ERR_INVALID);

    char a[37], b[37];
    sl_uuid_v4(a);
    sl_uuid_v4(b);
    assert_true(sl_uuid_valid(a));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);

    assert_true(sl_uuid_valid("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"));
    assert_false(sl_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430c"));
    assert_false(sl_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430c88"));
    assert_false(sl_uuid_valid("6ba7b810x9dad-11d1-80b4-00c04fd430c8"));
    assert_false(sl_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430cg"));
    assert_false(sl_uuid_valid(NULL));
}

/* ------------------------------------------------------------------------ */
/* Services                                                                  */

static void test_url_expansion(void **state)
{
    (void)state;
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\n"
               "services:\n"
               "- {name: a, url: 'http://orders.internal:8080/v1?x=1#frag'}\n"
               "- {name: b, url: 'https://secure.example.com'}\n"
               "- {name: c, url: 'grpcs://g.example.com:9000'}\n"
               "- {name: d, url: 'http://10.0.0.1', path: /ignored}\n"
               "- {name: e, url: 'http://[::1]:81/x'}\n");
    json_t *a = entity(&r, "services", 0);
    assert_string_equal(str(a, "protocol"), "http");
    assert_string_equal(str(a, "host"), "orders.internal");
    assert_int_equal(num(a, "port"), 8080);
    assert_string_equal(str(a, "path"), "/v1");
    assert_null(json_object_get(a, "url"));

    json_t *b = entity(&r, "services", 1);
    assert_string_equal(str(b, "protocol"), "https");
    assert_int_equal(num(b, "port"), 443);
    assert_true(json_is_null(json_object_get(b, "path")));

    json_t *c = entity(&r, "services", 2);
    assert_string_equal(str(c, "protocol"), "grpcs");
    assert_int_equal(num(c, "port"), 9000);

    json_t *d = entity(&r, "services", 3);
    assert_int_equal(num(d, "port"), 80);
    assert_true(json_is_null(json_object_get(d, "path"))); /* the url wins, as in Kong */

    json_t *e = entity(&r, "services", 4);
    assert_string_equal(str(e, "host"), "::1");
    assert_int_equal(num(e, "port"), 81);
    dispose(&r);

    expect_error("_format_version: '3.0'\nservices:\n- url: 42\n",
                 "services[0].url: expected a string");
    expect_error("_format_version: '3.0'\nservices:\n- url: 'http://h:abc/'\n",
                 "services[0].port: expected an integer");
    expect_error("_format_version: '3.0'\nservices:\n- url: '/just/a/path'\n",
                 "services[0].host: required field missing");
}

static void test_service_defaults(void **state)
{
    (void)state;
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\nservices:\n- host: example.com\n");
    json_t *s = entity(&r, "services", 0);
    assert_string_equal(str(s, "protocol"), "http");
    assert_int_equal(num(s, "port"), 80);
    assert_int_equal(num(s, "retries"), 5);
    assert_int_equal(num(s, "connect_timeout"), 60000);
    assert_int_equal(num(s, "write_timeout"), 60000);
    assert_int_equal(num(s, "read_timeout"), 60000);
    assert_true(json_is_true(json_object_get(s, "enabled")));
    const char *nulls[] = {
        "name",           "path", "tags", "client_certificate", "tls_verify", "tls_verify_depth",
        "ca_certificates"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(*nulls); i++)
        assert_true(json_is_null(json_object_get(s, nulls[i])));
    assert_true(sl_uuid_valid(str(s, "id")));
    assert_true(num(s, "created_at") > 1600000000);
    assert_int_equal(num(s, "created_at"), num(s, "updated_at"));
    /* every array is present, and nothing else */
    size_t n = 0;
    for (; sl_declarative_tables[n]; n++)
        assert_true(json_is_array(json_object_get(r.out, sl_declarative_tables[n])));
    assert_int_equal(n, 13);
    assert_int_equal(json_object_size(r.out), 1 + n);
    assert_string_equal(str(r.out, "_format_version"), "3.0");
    dispose(&r);
}

static void test_route_defaults(void **state)
{
    (void)state;
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\nroutes:\n- paths: [/a]\n"
               "- protocols: [grpc]\n  paths: [/g]\n"
               "- protocols: [tcp]\n  destinations: [{port: 99}]\n");
    json_t *a = entity(&r, "routes", 0);
    json_t *want = json_loads("[\"http\",\"https\"]", 0, NULL);
    assert_true(json_equal(json_object_get(a, "protocols"), want));
    json_decref(want);
    assert_true(json_is_true(json_object_get(a, "strip_path")));
    assert_true(json_is_false(json_object_get(a, "preserve_host")));
    assert_true(json_is_true(json_object_get(a, "request_buffering")));
    assert_true(json_is_true(json_object_get(a, "response_buffering")));
    assert_int_equal(num(a, "regex_priority"), 0);
    assert_int_equal(num(a, "https_redirect_status_code"), 426);
    assert_string_equal(str(a, "path_handling"), "v0");
    assert_true(json_is_null(json_object_get(a, "service")));
    assert_true(json_is_null(json_object_get(a, "methods")));
    /* grpc routes do not strip the path by default */
    assert_true(json_is_false(json_object_get(entity(&r, "routes", 1), "strip_path")));
    /* nested records get their defaults too */
    json_t *dst = json_array_get(json_object_get(entity(&r, "routes", 2), "destinations"), 0);
    assert_true(json_is_null(json_object_get(dst, "ip")));
    assert_int_equal(num(dst, "port"), 99);
    dispose(&r);

    LOAD_OK(r, "_format_version: '3.0'\nroutes:\n- {paths: [/a], path_handling: v1, "
               "protocols: [https, https, http]}\n");
    assert_string_equal(str(entity(&r, "routes", 0), "path_handling"), "v1");
    want = json_loads("[\"https\",\"http\"]", 0, NULL); /* sets drop repeats */
    assert_true(json_equal(json_object_get(entity(&r, "routes", 0), "protocols"), want));
    json_decref(want);
    dispose(&r);
}

/* ------------------------------------------------------------------------ */
/* Nesting, references, ids                                                  */

static const char *nested_doc = "_format_version: '3.0'\n"
                                "services:\n"
                                "- name: svc\n"
                                "  host: example.com\n"
                                "  routes:\n"
                                "  - name: r1\n"
                                "    paths: [/a]\n"
                                "    plugins:\n"
                                "    - name: rate-limiting\n"
                                "      config: {minute: 5}\n"
                                "  plugins:\n"
                                "  - name: key-auth\n"
                                "consumers:\n"
                                "- username: alice\n"
                                "  keyauth_credentials: [{key: k1}]\n"
                                "  basicauth_credentials: [{username: alice, password: pw}]\n"
                                "  jwt_secrets: [{key: iss}]\n"
                                "  acls: [{group: gold}]\n"
                                "  plugins: [{name: request-termination}]\n"
                                "upstreams:\n"
                                "- name: up.internal\n"
                                "  targets: [{target: 10.0.0.1}, {target: 'b.internal:81'}]\n";

static void test_nesting_and_fks(void **state)
{
    (void)state;
    struct result r;
    LOAD_OK(r, nested_doc);
    json_t *svc = entity(&r, "services", 0), *route = entity(&r, "routes", 0);
    assert_string_equal(fk(route, "service"), str(svc, "id"));
    assert_null(json_object_get(svc, "routes"));
    assert_null(json_object_get(svc, "plugins"));
    assert_null(json_object_get(route, "plugins"));

    assert_int_equal(json_array_size(json_object_get(r.out, "plugins")), 3);
    json_t *rl = entity(&r, "plugins", 0), *ka = entity(&r, "plugins", 1),
           *rt = entity(&r, "plugins", 2);
    assert_string_equal(str(rl, "name"), "rate-limiting");
    assert_string_equal(fk(rl, "route"), str(route, "id"));
    assert_true(json_is_null(json_object_get(rl, "service")));
    assert_int_equal(num(json_object_get(rl, "config"), "minute"), 5);
    assert_string_equal(str(ka, "name"), "key-auth");
    assert_string_equal(fk(ka, "service"), str(svc, "id"));
    assert_true(json_is_object(json_object_get(ka, "config")));
    json_t *alice = entity(&r, "consumers", 0);
    assert_string_equal(fk(rt, "consumer"), str(alice, "id"));

    const char *creds[] = {"keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(fk(entity(&r, creds[i], 0), "consumer"), str(alice, "id"));
    json_t *up = entity(&r, "upstreams", 0);
    assert_string_equal(fk(entity(&r, "targets", 0), "upstream"), str(up, "id"));
    assert_string_equal(str(entity(&r, "targets", 0), "target"), "10.0.0.1:8000");
    assert_string_equal(str(entity(&r, "targets", 1), "target"), "b.internal:81");
    assert_int_equal(num(entity(&r, "targets", 0), "weight"), 100);
    assert_true(json_is_real(json_object_get(entity(&r, "targets", 0), "created_at")));
    dispose(&r);
}

static void test_references(void **state)
{
    (void)state;
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\n"
               "services:\n"
               "- {name: by-name, host: a.example.com}\n"
               "- {id: 6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4, host: b.example.com}\n"
               "routes:\n"
               "- {name: r1, service: by-name, paths: [/1]}\n"
               "- {name: r2, service: 6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4, paths: [/2]}\n"
               "- {name: r3, service: {id: 6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4}, paths: [/3]}\n"
               "- {name: r4, service: {name: by-name}, paths: [/4]}\n"
               "consumers: [{username: bob}]\n"
               "keyauth_credentials: [{consumer: bob, key: bob-key}]\n"
               "plugins:\n"
               "- {name: acl, route: r1, service: by-name, consumer: bob}\n"
               "upstreams: [{name: up1}]\n"
               "targets: [{upstream: up1, target: '10.0.0.1:80'}]\n");
    const char *named = str(entity(&r, "services", 0), "id");
    assert_string_equal(fk(entity(&r, "routes", 0), "service"), named);
    assert_string_equal(fk(entity(&r, "routes", 1), "service"),
                        "6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4");
    assert_string_equal(fk(entity(&r, "routes", 2), "service"),
                        "6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4");
    assert_string_equal(fk(entity(&r, "routes", 3), "service"), named);
    assert_string_equal(str(entity(&r, "services", 1), "id"),
                        "6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4");
    json_t *p = entity(&r, "plugins", 0);
    assert_string_equal(fk(p, "route"), str(entity(&r, "routes", 0), "id"));
    assert_string_equal(fk(p, "service"), named);
    assert_string_equal(fk(p, "consumer"), str(entity(&r, "consumers", 0), "id"));
    assert_string_equal(fk(entity(&r, "keyauth_credentials", 0), "consumer"),
                        str(entity(&r, "consumers", 0), "id"));
    assert_string_equal(fk(entity(&r, "targets", 0), "upstream"),
                        str(entity(&r, "upstreams", 0), "id"));
    dispose(&r);

    expect_error("_format_version: '3.0'\nroutes:\n- {paths: [/a], service: missing}\n",
                 "routes[0].service: invalid reference 'missing' (no such entry in 'services')");
    expect_error("_format_version: '3.0'\nroutes:\n"
                 "- {paths: [/a], service: {id: 6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4}}\n",
                 "routes[0].service: invalid reference '{\"id\":\"6b4f1e4e-58b6-4d0c-8a34-"
                 "5ed5a5c9c2f4\"}' (no such entry in 'services')");
    expect_error("_format_version: '3.0'\ntargets:\n- {upstream: nope, target: a.com}\n",
                 "targets[0].upstream: invalid reference 'nope' (no such entry in 'upstreams')");
    expect_error("_format_version: '3.0'\ntargets:\n- {target: a.com}\n",
                 "targets[0].upstream: required field missing");
    expect_error("_format_version: '3.0'\nkeyauth_credentials:\n- {key: k}\n",
                 "keyauth_credentials[0].consumer: required field missing");
    expect_error("_format_version: '3.0'\nroutes:\n- {paths: [/a], service: 12}\n",
                 "routes[0].service: expected a string");
    expect_error("_format_version: '3.0'\n"
                 "services:\n- name: a\n  host: a.com\n"
                 "- name: b\n  host: b.com\n  routes:\n  - {paths: [/x], service: a}\n",
                 "services[1].routes[0].service: references another entity than the one it is "
                 "nested in (services[1]); leave it out");
}

static void test_deterministic_ids(void **state)
{
    (void)state;
    struct result a, b;
    LOAD_OK(a, nested_doc);
    LOAD_OK(b, nested_doc);
    strip_timestamps(a.out);
    strip_timestamps(b.out);
    /* generated secrets (the jwt secret) differ; everything else is equal */
    json_object_del(entity(&a, "jwt_secrets", 0), "secret");
    json_object_del(entity(&b, "jwt_secrets", 0), "secret");
    assert_true(json_equal(a.out, b.out));

    /* ids are Kong's: uuid_v5(uuid_v5(ns, table), endpoint or cache key) */
    char svc[37], route[37], want[37], name[256], up[37], consumer[37];
    uuid5("services", "svc", svc);
    assert_string_equal(str(entity(&a, "services", 0), "id"), svc);
    uuid5("routes", "r1", route);
    assert_string_equal(str(entity(&a, "routes", 0), "id"), route);
    snprintf(name, sizeof(name), "plugins:*:rate-limiting:%s::", route);
    uuid5("plugins", name, want);
    assert_string_equal(str(entity(&a, "plugins", 0), "id"), want);
    snprintf(name, sizeof(name), "plugins:*:key-auth::%s:", svc);
    uuid5("plugins", name, want);
    assert_string_equal(str(entity(&a, "plugins", 1), "id"), want);
    uuid5("consumers", "alice", consumer);
    assert_string_equal(str(entity(&a, "consumers", 0), "id"), consumer);
    uuid5("basicauth_credentials", "basicauth_credentials:*:alice", want);
    assert_string_equal(str(entity(&a, "basicauth_credentials", 0), "id"), want);
    snprintf(name, sizeof(name), "acls:*:%s:gold", consumer);
    uuid5("acls", name, want);
    assert_string_equal(str(entity(&a, "acls", 0), "id"), want);
    uuid5("upstreams", "up.internal", up);
    snprintf(name, sizeof(name), "targets:*:%s:10.0.0.1", up);
    uuid5("targets", name, want);
    assert_string_equal(str(entity(&a, "targets", 0), "id"), want);
    dispose(&a);
    dispose(&b);

    /* different names, different ids; unnamed entities are stable too */
    const char *doc = "_format_version: '3.0'\nservices:\n- {name: one, host: h}\n"
                      "- {name: two, host: h}\n- {host: h}\n- {host: h}\n- {host: other}\n";
    LOAD_OK(a, doc);
    LOAD_OK(b, doc);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(str(entity(&a, "services", i), "id"),
                            str(entity(&b, "services", i), "id"));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(str(entity(&a, "services", i), "id"),
                                    str(entity(&a, "services", j), "id"));
    }
    dispose(&a);
    dispose(&b);

    /* a top-level plugin's cache key uses the reference as written */
    LOAD_OK(a, "_format_version: '3.0'\nroutes: [{name: r, paths: [/]}]\n"
               "plugins: [{name: cors, route: r}]\n");
    uuid5("plugins", "plugins:*:cors:r::", want);
    assert_string_equal(str(entity(&a, "plugins", 0), "id"), want);
    dispose(&a);
}

static void test_yaml_and_json_identical(void **state)
{
    (void)state;
    const char *json = "{\"_format_version\": \"3.0\", \"services\": [{\"name\": \"svc\", "
                       "\"url\": \"https://example.com:8443/api\", \"tags\": [\"a\", \"b\"], "
                       "\"routes\": [{\"name\": \"r\", \"paths\": [\"/x\", \"~/y/\\\\d+$\"], "
                       "\"methods\": [\"GET\"], \"headers\": {\"x-v\": [\"1\"]}, "
                       "\"regex_priority\": 2, \"strip_path\": false}]}], "
                       "\"consumers\": [{\"username\": \"u\", \"basicauth_credentials\": "
                       "[{\"username\": \"u\", \"password\": \"p\"}]}]}";
    const char *yaml = "_format_version: \"3.0\"\n"
                       "services:\n"
                       "- name: svc\n"
                       "  url: https://example.com:8443/api\n"
                       "  tags: [a, b]\n"
                       "  routes:\n"
                       "  - name: r\n"
                       "    paths:\n"
                       "    - /x\n"
                       "    - ~/y/\\d+$\n"
                       "    methods: [GET]\n"
                       "    headers:\n"
                       "      x-v: ['1']\n"
                       "    regex_priority: 2\n"
                       "    strip_path: false\n"
                       "consumers:\n"
                       "- username: u\n"
                       "  basicauth_credentials:\n"
                       "  - {username: u, password: p}\n";
    struct result a, b;
    LOAD_OK(a, json);
    LOAD_OK(b, yaml);
    strip_timestamps(a.out);
    strip_timestamps(b.out);
    if (!json_equal(a.out, b.out)) {
        char *x = json_dumps(a.out, JSON_INDENT(1)), *y = json_dumps(b.out, JSON_INDENT(1));
        fprintf(stderr, "JSON:\n%s\nYAML:\n%s\n", x, y);
        free(x);
        free(y);
    }
    assert_true(json_equal(a.out, b.out));
    dispose(&a);
    dispose(&b);
}

/* ------------------------------------------------------------------------ */
/* Validation rules                                                          */

struct rule {
    const char *doc; /* everything after the _format_version line */
    const char *error;
};

static const struct rule rules[] = {
    /* services */
    {"services: [{host: 'bad host'}]", "services[0].host: invalid value: bad host"},
    {"services: [{host: 'a.com:80'}]", "services[0].host: must not have a port"},
    {"services: [{name: svc}]", "services[0].host: required field missing"},
    {"services: [{host: a.com, port: 70000}]",
     "services[0].port: value should be between 0 and 65535"},
    {"services: [{host: a.com, port: '80'}]", "services[0].port: expected an integer"},
    {"services: [{host: a.com, port: 80.5}]", "services[0].port: expected an integer"},
    {"services: [{host: a.com, retries: 40000}]",
     "services[0].retries: value should be between 0 and 32767"},
    {"services: [{host: a.com, connect_timeout: 0}]",
     "services[0].connect_timeout: value should be between 1 and 2147483646"},
    {"services: [{host: a.com, protocol: ftp}]",
     "services[0].protocol: expected one of: grpc, grpcs, http, https, tcp, tls, "
     "tls_passthrough, udp"},
    {"services: [{host: a.com, path: x}]", "services[0].path: should start with: /"},
    {"services: [{host: a.com, path: /a//b}]", "services[0].path: must not have empty segments"},
    {"services: [{host: a.com, path: '/a b'}]",
     "services[0].path: invalid path: '/a b' (characters outside of the reserved list of RFC "
     "3986 found)"},
    {"services: [{host: a.com, path: '/a%2'}]",
     "services[0].path: invalid url-encoded value: '%2'"},
    {"services: [{host: a.com, protocol: tcp, path: /x}]", "services[0].path: value must be null"},
    {"services: [{host: a.com, protocol: tcp, path: /x}]",
     "services[0]: failed conditional validation given value of field 'protocol'"},
    {"services: [{host: a.com, tls_verify: true}]", "services[0].tls_verify: value must be null"},
    {"services: [{host: a.com, protocol: https, tls_verify_depth: 65}]",
     "services[0].tls_verify_depth: value should be between 0 and 64"},
    {"services: [{host: a.com, protocol: https, ca_certificates: [nope]}]",
     "services[0].ca_certificates[0]: expected a valid UUID"},
    {"services: [{host: a.com, name: 'a b'}]",
     "services[0].name: invalid value 'a b': the only accepted ascii characters are "
     "alphanumerics or ., -, _, and ~"},
    {"services: [{host: a.com, name: ''}]", "services[0].name: length must be at least 1"},
    {"services: [{host: a.com, tags: ['a,b']}]",
     "services[0].tags[0]: invalid tag 'a,b': expected printable ascii (except `,` and `/`) or "
     "valid utf-8 sequences"},
    {"services: [{host: a.com, enabled: 'yes'}]", "services[0].enabled: expected a boolean"},
    {"services: [{host: a.com, id: 12}]", "services[0].id: expected a string"},
    {"services: [{host: a.com, id: not-a-uuid}]", "services[0].id: expected a valid UUID"},
    {"services: [{host: a.com, bogus: 1}]", "services[0].bogus: unknown field"},
    {"services: [{host: a.com, created_at: -5}]",
     "services[0].created_at: expected a valid timestamp"},
    {"services: [42]", "services[0]: expected a record"},
    {"services: {host: a.com}", "services: expected an array"},
    /* routes */
    {"routes: [{protocols: [http]}]",
     "routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is "
     "'http'"},
    {"routes: [{}]",
     "routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when "
     "'protocols' is 'https'"},
    {"routes: [{protocols: [grpc]}]",
     "routes[0]: must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"},
    {"routes: [{protocols: [grpcs]}]",
     "routes[0]: must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is "
     "'grpcs'"},
    {"routes: [{protocols: [tcp]}]",
     "routes[0]: must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', "
     "'tls' or 'udp'"},
    {"routes: [{protocols: [tls_passthrough], sources: [{ip: 10.0.0.1}]}]",
     "routes[0]: must set snis when 'protocols' is 'tls_passthrough'"},
    {"routes: [{protocols: [http, tcp], paths: [/]}]",
     "routes[0].protocols: these sets are mutually exclusive: ('http', 'https'), ('tcp', "
     "'tls', 'udp')"},
    {"routes: [{protocols: [tls, tls_passthrough], snis: [a.com]}]",
     "routes[0].protocols: these sets are mutually exclusive: ('tcp', 'tls', 'udp'), "
     "('tls_passthrough')"},
    {"routes: [{protocols: [], paths: [/]}]", "routes[0].protocols: length must be at least 1"},
    {"routes: [{protocols: [ftp], paths: [/]}]", "routes[0].protocols: unknown type: ftp"},
    {"routes: [{protocols: [http, ftp], paths: [/]}]",
     "routes[0].protocols[1]: expected one of: grpc, grpcs, http, https, tcp, tls, "
     "tls_passthrough, udp"},
    {"routes: [{protocols: null, paths: [/]}]", "routes[0].protocols: required field missing"},
    {"routes: [{paths: [foo]}]",
     "routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)"},
    {"routes: [{paths: [/ok, '']}]", "routes[0].paths[1]: length must be at least 1"},
    {"routes: [{paths: [/ok, 5]}]", "routes[0].paths[1]: expected a string"},
    {"routes: [{paths: [/foo//bar]}]", "routes[0].paths[0]: must not have empty segments"},
    {"routes: [{paths: ['~/users/(foo/profile']}]",
     "routes[0].paths[0]: invalid regex: '/users/(foo/profile' (PCRE returned: pcre2_compile() "
     "failed: missing closing parenthesis in \"/users/(foo/profile\")"},
    {"routes: [{paths: ['/some%2Gwords']}]",
     "routes[0].paths[0]: invalid url-encoded value: '%2G'"},
    {"routes: [{paths: ['/a/./b']}]",
     "routes[0].paths[0]: non-normalized path, consider use '/a/b' instead"},
    {"routes: [{paths: ['/%c3%A4']}]",
     "routes[0].paths[0]: non-normalized path, consider use '/\xc3\xa4' instead"},
    {"routes: [{paths: [/], methods: [get]}]", "routes[0].methods[0]: invalid value: get"},
    {"routes: [{hosts: ['*example.com']}]",
     "routes[0].hosts[0]: invalid wildcard: must be placed at leftmost or rightmost label"},
    {"routes: [{hosts: ['*.example.*']}]",
     "routes[0].hosts[0]: invalid wildcard: must have at most one wildcard"},
    {"routes: [{hosts: [example-.org]}]", "routes[0].hosts[0]: invalid hostname: example-.org"},
    {"routes: [{hosts: ['example.com:1000000']}]", "routes[0].hosts[0]: invalid port number"},
    {"routes: [{headers: {Host: [a.com]}}]",
     "routes[0].headers: cannot contain 'host' header, which must be specified in the 'hosts' "
     "attribute"},
    {"routes: [{headers: {'x y': [a]}}]",
     "routes[0].headers: bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and "
     "'-'"},
    {"routes: [{headers: {x-a: [1]}}]", "routes[0].headers.x-a[0]: expected a string"},
    {"routes: [{headers: {x-a: 'v'}}]", "routes[0].headers.x-a: expected an array"},
    {"routes: [{paths: [/], https_redirect_status_code: 404}]",
     "routes[0].https_redirect_status_code: expected one of: 426, 301, 302, 307, 308"},
    {"routes: [{paths: [/], path_handling: v2}]",
     "routes[0].path_handling: expected one of: v0, v1"},
    {"routes: [{paths: [/], regex_priority: x}]", "routes[0].regex_priority: expected an integer"},
    {"routes: [{protocols: [tcp, udp], snis: [a.com]}]", "routes[0].snis: length must be 0"},
    {"routes: [{protocols: [tcp, udp], snis: [a.com]}]",
     "routes[0]: 'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or "
     "'tls_passthrough'"},
    {"routes: [{protocols: [https], snis: ['10.0.0.1']}]", "routes[0].snis[0]: must not be an IP"},
    {"routes: [{protocols: [https], snis: ['a.com:443']}]",
     "routes[0].snis[0]: must not have a port"},
    {"routes: [{protocols: [https], snis: ['a.*.com']}]",
     "routes[0].snis[0]: wildcard must be leftmost or rightmost character"},
    {"routes: [{protocols: [tcp], sources: [{ip: 'x.x.x.x'}]}]",
     "routes[0].sources[0].ip: invalid ip or cidr range: 'x.x.x.x'"},
    {"routes: [{protocols: [tcp], sources: [{ip: '10.0.0.0/33'}]}]",
     "routes[0].sources[0].ip: invalid ip or cidr range: '10.0.0.0/33'"},
    {"routes: [{protocols: [tcp], sources: [{ip: 10.0.0.1, port: 70000}]}]",
     "routes[0].sources[0].port: value should be between 0 and 65535"},
    {"routes: [{protocols: [tcp], sources: [{}]}]",
     "routes[0].sources[0]: at least one of these fields must be non-empty: 'ip', 'port'"},
    {"routes: [{protocols: [tcp], sources: [{ip: 10.0.0.1}], paths: [/]}]",
     "routes[0].paths: cannot set 'paths' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' "
     "or 'udp'"},
    {"routes: [{protocols: [tcp], sources: [{ip: 10.0.0.1}], methods: [GET]}]",
     "routes[0].methods: cannot set 'methods' when 'protocols' is 'tcp', 'tls', "
     "'tls_passthrough' or 'udp'"},
    {"routes: [{paths: [/], sources: [{ip: 10.0.0.1}]}]",
     "routes[0].sources: cannot set 'sources' when 'protocols' is 'http' or 'https'"},
    {"routes: [{protocols: [grpc], paths: [/], methods: [GET]}]",
     "routes[0].methods: cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"},
    {"routes: [{protocols: [grpc], paths: [/], strip_path: true}]",
     "routes[0].strip_path: cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"},
    {"routes: [{paths: [/], expression: 'http.path == \"/\"'}]",
     "routes[0].expression: unknown field"},
    /* consumers */
    {"consumers: [{tags: [x]}]",
     "consumers[0]: at least one of these fields must be non-empty: 'custom_id', 'username'"},
    {"consumers: [{username: ''}]", "consumers[0].username: length must be at least 1"},
    /* plugins */
    {"plugins: [{config: {}}]", "plugins[0].name: required field missing"},
    {"plugins: [{name: cors, config: 5}]", "plugins[0].config: expected a record"},
    {"plugins: [{name: cors, protocols: [ftp]}]",
     "plugins[0].protocols[0]: expected one of: grpc, grpcs, http, https, tcp, tls, "
     "tls_passthrough, udp"},
    {"plugins: [{name: cors, enabled: 1}]", "plugins[0].enabled: expected a boolean"},
    {"plugins: [{name: cors, instance_name: 'a/b'}]",
     "plugins[0].instance_name: invalid value 'a/b': the only accepted ascii characters are "
     "alphanumerics or ., -, _, and ~"},
    /* upstreams and targets */
    {"upstreams: [{name: 10.0.0.1}]",
     "upstreams[0].name: Invalid name ('10.0.0.1'); no ip addresses allowed"},
    {"upstreams: [{name: 'a.com:80'}]",
     "upstreams[0].name: Invalid name ('a.com:80'); no port allowed"},
    {"upstreams: [{name: 'a b'}]",
     "upstreams[0].name: Invalid name ('a b'); must be a valid hostname"},
    {"upstreams: [{slots: 5}]", "upstreams[0].name: required field missing"},
    {"upstreams: [{name: u, slots: 5}]",
     "upstreams[0].slots: value should be between 10 and 65536"},
    {"upstreams: [{name: u, algorithm: random}]",
     "upstreams[0].algorithm: expected one of: consistent-hashing, least-connections, "
     "round-robin, latency"},
    {"upstreams: [{name: u, hash_on: header}]",
     "upstreams[0].hash_on_header: required field missing"},
    {"upstreams: [{name: u, hash_on: header}]",
     "upstreams[0]: failed conditional validation given value of field 'hash_on'"},
    {"upstreams: [{name: u, hash_on: ip, hash_fallback: ip}]",
     "upstreams[0].hash_fallback: expected one of: none, consumer, header, cookie, path, "
     "query_arg, uri_capture"},
    {"upstreams: [{name: u, hash_on: header, hash_on_header: a, hash_fallback: header, "
     "hash_fallback_header: a}]",
     "upstreams[0]: values of these fields must be distinct: 'hash_on_header', "
     "'hash_fallback_header'"},
    {"upstreams: [{name: u, hash_on: cookie, hash_on_cookie: 'a b'}]",
     "upstreams[0].hash_on_cookie: bad cookie name 'a b', allowed characters are A-Z, a-z, 0-9, "
     "'_', and '-'"},
    {"upstreams: [{name: u, healthchecks: {active: {concurrency: 0}}}]",
     "upstreams[0].healthchecks.active.concurrency: value should be between 1 and 2147483648"},
    {"upstreams: [{name: u, healthchecks: {passive: {unhealthy: {http_statuses: [99]}}}}]",
     "upstreams[0].healthchecks.passive.unhealthy.http_statuses[0]: value should be between 100 "
     "and 999"},
    {"upstreams: [{name: u, healthchecks: {threshold: 101}}]",
     "upstreams[0].healthchecks.threshold: value should be between 0 and 100"},
    {"upstreams: [{name: u, healthchecks: {bogus: 1}}]",
     "upstreams[0].healthchecks.bogus: unknown field"},
    {"upstreams: [{name: u, targets: [{target: 'a b'}]}]",
     "upstreams[0].targets[0].target: Invalid target ('a b'); not a valid hostname or ip address"},
    {"upstreams: [{name: u, targets: [{target: 'a.com', weight: -1}]}]",
     "upstreams[0].targets[0].weight: value should be between 0 and 65535"},
    {"upstreams: [{name: u, targets: [{weight: 1}]}]",
     "upstreams[0].targets[0].target: required field missing"},
    /* certificates and snis */
    {"certificates: [{cert: nope, key: nope}]", "certificates[0].cert: invalid certificate: "
                                                "x509.new: no start line"},
    {"certificates: [{}]", "certificates[0].cert: required field missing"},
    {"snis: [{name: a.com}]", "snis[0].certificate: required field missing"},
    {"ca_certificates: [{}]", "ca_certificates[0].cert: required field missing"},
    /* credentials */
    {"consumers: [{username: u, basicauth_credentials: [{username: u}]}]",
     "consumers[0].basicauth_credentials[0].password: required field missing"},
    {"consumers: [{username: u, acls: [{}]}]",
     "consumers[0].acls[0].group: required field missing"},
    {"consumers: [{username: u, jwt_secrets: [{algorithm: XX256}]}]",
     "consumers[0].jwt_secrets[0].algorithm: expected one of: HS256, HS384, HS512, RS256, RS384, "
     "RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA"},
    {"consumers: [{username: u, jwt_secrets: [{algorithm: RS256}]}]",
     "consumers[0].jwt_secrets[0].rsa_public_key: required field missing"},
    {"consumers: [{username: u, jwt_secrets: [{algorithm: RS256, rsa_public_key: x}]}]",
     "consumers[0].jwt_secrets[0].rsa_public_key: invalid key"},
    {"consumers: [{username: u, keyauth_credentials: [{key: k, ttl: -1}]}]",
     "consumers[0].keyauth_credentials[0].ttl: value should be between 0 and 100000000"},
    {"consumers: [{username: u, keyauth_credentials: [{key: k, _comment: 5}]}]",
     "consumers[0].keyauth_credentials[0]._comment: expected a string"},
};

static void test_validation_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rules) / sizeof(*rules); i++) {
        char *doc;
        assert_true(asprintf(&doc, "_format_version: '3.0'\n%s\n", rules[i].doc) >= 0);
        expect_error(doc, rules[i].error);
        free(doc);
    }
}

static void test_all_errors_reported(void **state)
{
    (void)state;
    struct result r = load("_format_version: '3.0'\n"
                           "services:\n"
                           "- host: a.com\n"
                           "  port: -1\n"
                           "  routes:\n"
                           "  - paths: [/ok, bad]\n"
                           "  - paths: ['/x', '~/(']\n"
                           "- name: 'n n'\n");
    assert_int_equal(r.rc, SL_ERR_INVALID);
    assert_true(has_error(&r, "services[0].port: value should be between 0 and 65535"));
    assert_true(has_error(
        &r,
        "services[0].routes[0].paths[1]: should start with: / (fixed path) or ~/ (regex path)"));
    assert_true(has_error_prefix(&r, "services[0].routes[1].paths[1]: invalid regex: '/('"));
    assert_true(has_error(&r, "services[1].host: required field missing"));
    assert_true(has_error_prefix(&r, "services[1].name: invalid value 'n n'"));
    assert_int_equal(r.errs.n, 5);
    dispose(&r);
}

/* ------------------------------------------------------------------------ */
/* Top level, formats, bounds                                                */

static void test_top_level(void **state)
{
    (void)state;
    expect_error("services: []\n", "_format_version: required field missing");
    expect_error("_format_version: '4.0'\n", "_format_version: expected one of: 1.1, 2.1, 3.0");
    expect_error("_format_version: 3.0\n", "_format_version: expected a string");
    expect_error("_format_version: '3.0'\n_transform: maybe\n", "_transform: expected a boolean");
    expect_error("_format_version: '3.0'\nservises: []\n", "servises: unknown field");
    expect_error("_format_version: '3.0'\nvaults: []\n",
                 "vaults: entities of type 'vaults' are not supported by Sluice");
    expect_error("- a\n- b\n", "declarative config must be a mapping with _format_version and "
                               "lists of entities at the top level");

    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\n_comment: hello\n_ignore: [1]\n_transform: true\n"
               "services:\n- host: a.com\n  _comment: the a service\n");
    assert_int_equal(json_array_size(json_object_get(r.out, "services")), 1);
    assert_null(json_object_get(entity(&r, "services", 0), "_comment"));
    dispose(&r);
    LOAD_OK(r, "_format_version: '3.0'\n");
    assert_int_equal(json_array_size(json_object_get(r.out, "routes")), 0);
    dispose(&r);
    LOAD_OK(r, "{\"_format_version\": \"3.0\", \"services\": null}");
    dispose(&r);
}

static void test_bad_syntax(void **state)
{
    (void)state;
    struct result r = load("_format_version: '3.0'\nservices:\n- name: a\n   host: b\n");
    assert_int_equal(r.rc, SL_ERR_INVALID);
    assert_int_equal(r.errs.n, 1);
    assert_true(has_error_prefix(&r, "invalid YAML at line 4, column 8:"));
    dispose(&r);

    r = load("{\"_format_version\": \"3.0\",\n \"services\": [}\n");
    assert_int_equal(r.rc, SL_ERR_INVALID);
    assert_true(has_error_prefix(&r, "invalid JSON at line 2,"));
    dispose(&r);

    expect_error("{\"_format_version\": \"3.0\", \"_format_version\": \"3.0\"}",
                 "invalid JSON at line 1, column 44: duplicate object key near "
                 "'\"_format_version\"'");
    expect_error("_format_version: '3.0'\nservices: []\nservices: []\n",
                 "invalid YAML at line 3: duplicate key 'services'");
    expect_error("_format_version: '3.0'\n---\n_format_version: '3.0'\n",
                 "invalid YAML at line 2: only one YAML document is allowed in a file");
    expect_error("_format_version: '3.0'\nservices:\n- host: *nope\n",
                 "invalid YAML at line 3: unknown anchor 'nope'");
    expect_error("_format_version: '3.0'\nx: .inf\n",
                 "invalid YAML at line 2: '.inf' cannot be represented in JSON");
}

static void test_yaml_features(void **state)
{
    (void)state;
    struct result r;
    /* anchors and aliases copy; tags and quoting decide types */
    LOAD_OK(r, "_format_version: '3.0'\n"
               "services:\n"
               "- &svc {host: a.com, tags: [t1], retries: !!int '7'}\n"
               "- name: copy\n"
               "  host: b.com\n"
               "  tags: [\"true\", '5', !!str 6, yes]\n");
    assert_int_equal(num(entity(&r, "services", 0), "retries"), 7);
    json_t *tags = json_object_get(entity(&r, "services", 1), "tags");
    assert_string_equal(json_string_value(json_array_get(tags, 0)), "true");
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "5");
    assert_string_equal(json_string_value(json_array_get(tags, 2)), "6");
    assert_string_equal(json_string_value(json_array_get(tags, 3)), "yes");
    dispose(&r);

    LOAD_OK(r, "_format_version: '3.0'\n"
               "upstreams:\n"
               "- name: a\n"
               "  healthchecks: &hc {active: {timeout: 2.5, healthy: {interval: 0x10}}}\n"
               "- name: b\n"
               "  healthchecks: *hc\n");
    for (size_t i = 0; i < 2; i++) {
        json_t *active =
            json_object_get(json_object_get(entity(&r, "upstreams", i), "healthchecks"), "active");
        assert_true(json_real_value(json_object_get(active, "timeout")) == 2.5);
        assert_int_equal(num(json_object_get(active, "healthy"), "interval"), 16);
        assert_int_equal(num(active, "concurrency"), 10);
    }
    dispose(&r);

    /* scalar typing through the YAML reader directly */
    sl_errors_t e;
    sl_errors_init(&e);
    json_t *v = NULL;
    const char *y = "a: ~\nb: null\nc:\nd: True\ne: -12\nf: 0o17\ng: 1e3\nh: '1'\ni: x y\n";
    assert_int_equal(sl_yaml_to_json(y, strlen(y), 8, &v, &e), SL_OK);
    json_t *want = json_loads("{\"a\":null,\"b\":null,\"c\":null,\"d\":true,\"e\":-12,\"f\":15,"
                              "\"g\":1000.0,\"h\":\"1\",\"i\":\"x y\"}",
                              0, NULL);
    assert_true(json_equal(v, want));
    json_decref(want);
    json_decref(v);
    v = NULL;
    assert_int_equal(sl_yaml_to_json("", 0, 8, &v, &e), SL_OK);
    assert_true(json_is_null(v));
    json_decref(v);
    /* the depth bound */
    assert_int_equal(sl_yaml_to_json("[[[[1]]]]", 9, 3, &v, &e), SL_ERR_INVALID);
    assert_string_equal(e.items[0], "invalid YAML at line 1: nesting deeper than 3 levels");
    /* an alias bomb stops at the node budget */
    sl_errors_dispose(&e);
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    assert_int_equal(sl_yaml_to_json(bomb, strlen(bomb), 64, &v, &e), SL_ERR_INVALID);
    assert_true(strstr(e.items[0], "aliases expand to more than") != NULL);
    sl_errors_dispose(&e);
}

static void test_depth_and_size_bounds(void **state)
{
    (void)state;
    char *deep = malloc(200 + 2 * 70);
    strcpy(deep, "{\"_format_version\": \"3.0\", \"_ignore\": ");
    for (int i = 0; i < 70; i++)
        strcat(deep, "[");
    for (int i = 0; i < 70; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    expect_error(deep, "invalid JSON: nesting deeper than 64 levels");
    free(deep);

    struct result r = {0};
    sl_errors_init(&r.errs);
    assert_int_equal(sl_declarative_load_string("x", SL_DECLARATIVE_MAX_BYTES + 1, &r.out, &r.errs),
                     SL_ERR_INVALID);
    assert_true(has_error_prefix(&r, "declarative config is"));
    dispose(&r);

    sl_errors_init(&r.errs);
    assert_int_equal(sl_declarative_load_file("/nonexistent/kong.yml", &r.out, &r.errs), SL_ERR_IO);
    assert_true(has_error_prefix(&r, "/nonexistent/kong.yml: cannot read:"));
    dispose(&r);
}

static void test_migration(void **state)
{
    (void)state;
    const char *versions[] = {"1.1", "2.1"};
    for (size_t i = 0; i < 2; i++) {
        char *doc;
        assert_true(asprintf(&doc,
                             "_format_version: '%s'\n"
                             "services:\n"
                             "- host: a.com\n"
                             "  routes:\n"
                             "  - paths: ['/users/\\d+$', /plain, '/a//b', '/x%%2Ey']\n"
                             "routes:\n"
                             "- paths: ['/v1/(?<id>[^/]+)']\n",
                             versions[i]) >= 0);
        struct result r;
        LOAD_OK(r, doc);
        free(doc);
        json_t *p = json_object_get(entity(&r, "routes", 0), "paths");
        assert_string_equal(json_string_value(json_array_get(p, 0)), "~/users/\\d+$");
        assert_string_equal(json_string_value(json_array_get(p, 1)), "/plain");
        assert_string_equal(json_string_value(json_array_get(p, 2)), "/a/b");
        assert_string_equal(json_string_value(json_array_get(p, 3)), "/x.y");
        p = json_object_get(entity(&r, "routes", 1), "paths");
        assert_string_equal(json_string_value(json_array_get(p, 0)), "~/v1/(?<id>[^/]+)");
        assert_string_equal(str(r.out, "_format_version"), "3.0");
        dispose(&r);
    }
    /* 3.0 takes paths literally: a regex without '~' is a plain prefix */
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\nroutes: [{paths: ['/users/\\d+$']}]\n");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(entity(&r, "routes", 0), "paths"), 0)),
        "/users/\\d+$");
    dispose(&r);
}

static void test_duplicates(void **state)
{
    (void)state;
    expect_error("_format_version: '3.0'\nservices:\n- {name: a, host: a.com}\n"
                 "- {name: a, host: b.com}\n",
                 "services[1].name: uniqueness violation: 'services' entity with name set to 'a' "
                 "already declared");
    expect_error("_format_version: '3.0'\nservices:\n"
                 "- {id: 6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4, host: a.com}\n"
                 "- {id: 6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4, host: b.com}\n",
                 "services[1].id: uniqueness violation: 'services' entity with primary key set to "
                 "'6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4' already declared");
    expect_error("_format_version: '3.0'\nconsumers:\n"
                 "- username: a\n  keyauth_credentials: [{key: same}]\n"
                 "- username: b\n  keyauth_credentials: [{key: same}]\n",
                 "consumers[1].keyauth_credentials[0].key: uniqueness violation: "
                 "'keyauth_credentials' entity with key set to 'same' already declared");
    expect_error("_format_version: '3.0'\nconsumers:\n- {username: a, custom_id: c}\n"
                 "- {username: b, custom_id: c}\n",
                 "consumers[1].custom_id: uniqueness violation: 'consumers' entity with custom_id "
                 "set to 'c' already declared");
    expect_error("_format_version: '3.0'\nroutes:\n- name: r\n  paths: [/]\n"
                 "  plugins: [{name: cors}]\nplugins: [{name: cors, route: r}]\n",
                 "plugins[0].name: uniqueness violation: 'plugins' entity with the same name, "
                 "route, service and consumer as 'cors' already declared");
    expect_error("_format_version: '3.0'\nupstreams:\n- name: u\n"
                 "  targets: [{target: 10.0.0.1}, {target: '10.0.0.1:8000'}]\n",
                 "upstreams[0].targets[1].target: uniqueness violation: 'targets' entity with the "
                 "same upstream and target as '10.0.0.1:8000' already declared");
    expect_error("_format_version: '3.0'\nconsumers:\n- username: a\n"
                 "  acls: [{group: g}, {group: g}]\n",
                 "consumers[0].acls[1].id: uniqueness violation: 'acls' entity with primary key "
                 "set to '4add49ad-f75d-577a-86fb-a51c9e63fd66' already declared");
    expect_error("_format_version: '3.0'\nconsumers:\n- username: a\n"
                 "  acls: [{group: g}]\nacls: [{consumer: a, group: g}]\n",
                 "acls[0].group: uniqueness violation: 'acls' entity with the same consumer and "
                 "group as 'g' already declared");

    /* the same target under two upstreams is fine */
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\nupstreams:\n- {name: u1, targets: [{target: a.com}]}\n"
               "- {name: u2, targets: [{target: a.com}]}\n");
    assert_string_not_equal(str(entity(&r, "targets", 0), "id"),
                            str(entity(&r, "targets", 1), "id"));
    dispose(&r);
}

/* ------------------------------------------------------------------------ */
/* Credentials, certificates                                                 */

static void test_credentials(void **state)
{
    (void)state;
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\nconsumers:\n"
               "- username: alice\n"
               "  basicauth_credentials: [{username: alice, password: s3cret}]\n"
               "  keyauth_credentials: [{}]\n"
               "  jwt_secrets: [{}]\n");
    const char *cid = str(entity(&r, "consumers", 0), "id");
    /* Kong stores sha1(password .. consumer_id) */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n;
    char salted[128], hexed[41];
    snprintf(salted, sizeof(salted), "s3cret%s", cid);
    EVP_Digest(salted, strlen(salted), md, &n, EVP_sha1(), NULL);
    for (unsigned i = 0; i < n; i++)
        sprintf(hexed + 2 * i, "%02x", md[i]);
    assert_string_equal(str(entity(&r, "basicauth_credentials", 0), "password"), hexed);
    /* generated keys and secrets */
    assert_int_equal(strlen(str(entity(&r, "keyauth_credentials", 0), "key")), 32);
    assert_int_equal(strlen(str(entity(&r, "jwt_secrets", 0), "key")), 32);
    assert_int_equal(strlen(str(entity(&r, "jwt_secrets", 0), "secret")), 32);
    assert_string_equal(str(entity(&r, "jwt_secrets", 0), "algorithm"), "HS256");
    assert_true(sl_uuid_valid(str(entity(&r, "keyauth_credentials", 0), "id")));
    dispose(&r);

    /* _transform: false keeps the password as written (an export) */
    LOAD_OK(r, "_format_version: '3.0'\n_transform: false\nconsumers:\n"
               "- username: alice\n"
               "  basicauth_credentials: [{username: alice, password: already-hashed}]\n");
    assert_string_equal(str(entity(&r, "basicauth_credentials", 0), "password"), "already-hashed");
    dispose(&r);
}

static void test_certificates(void **state)
{
    (void)state;
    char *cert, *key, *cert2, *key2, *ca, *cakey;
    make_cert(false, &cert, &key);
    make_cert(false, &cert2, &key2);
    make_cert(true, &ca, &cakey);
    char *qc = json_quote(cert), *qk = json_quote(key), *qk2 = json_quote(key2),
         *qca = json_quote(ca);

    struct result r;
    char *doc = cert_doc("certificates",
                         "{\"cert\": %s, \"key\": %s, \"snis\": [{\"name\": \"api.example.com\"}, "
                         "{\"name\": \"*.example.org\"}]}",
                         qc, qk);
    LOAD_OK(r, doc);
    free(doc);
    json_t *c = entity(&r, "certificates", 0);
    assert_true(sl_uuid_valid(str(c, "id")));
    assert_true(json_is_null(json_object_get(c, "cert_alt")));
    assert_string_equal(fk(entity(&r, "snis", 0), "certificate"), str(c, "id"));
    assert_string_equal(str(entity(&r, "snis", 1), "name"), "*.example.org");
    char want[37];
    uuid5("snis", "api.example.com", want);
    assert_string_equal(str(entity(&r, "snis", 0), "id"), want);
    char *id1 = strdup(str(c, "id"));
    dispose(&r);
    /* a certificate's id comes from its content: stable across loads */
    doc = cert_doc("certificates", "{\"cert\": %s, \"key\": %s}", qc, qk);
    LOAD_OK(r, doc);
    free(doc);
    assert_string_equal(str(entity(&r, "certificates", 0), "id"), id1);
    free(id1);
    dispose(&r);

    doc = cert_doc("certificates", "{\"cert\": %s, \"key\": %s}", qc, qk2);
    expect_error(doc, "certificates[0]: certificate does not match key");
    free(doc);
    doc = cert_doc("certificates", "{\"cert\": \"garbage\", \"key\": %s}", qk);
    struct result bad = load(doc);
    free(doc);
    assert_true(has_error_prefix(&bad, "certificates[0].cert: invalid certificate: x509.new: "));
    dispose(&bad);
    doc = cert_doc("certificates", "{\"cert\": %s, \"key\": %s, \"cert_alt\": %s}", qc, qk, qc);
    expect_error(doc, "certificates[0]: all or none of these fields must be set: 'cert_alt', "
                      "'key_alt'");
    free(doc);

    /* CA certificates: digest computed, CA constraint required */
    doc = cert_doc("ca_certificates", "{\"cert\": %s}", qca);
    LOAD_OK(r, doc);
    free(doc);
    assert_int_equal(strlen(str(entity(&r, "ca_certificates", 0), "cert_digest")), 64);
    dispose(&r);
    doc = cert_doc("ca_certificates", "{\"cert\": %s}", qc);
    expect_error(doc, "ca_certificates[0]: certificate does not appear to be a CA because it is "
                      "missing the \"CA\" basic constraint");
    free(doc);

    /* services reference certificates by id */
    doc =
        cert_doc("certificates",
                 "{\"id\": \"6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4\", \"cert\": %s, \"key\": %s}], "
                 "\"services\": [{\"host\": \"a.com\", \"protocol\": \"https\", "
                 "\"client_certificate\": \"6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4\"}",
                 qc, qk);
    LOAD_OK(r, doc);
    free(doc);
    assert_string_equal(fk(entity(&r, "services", 0), "client_certificate"),
                        "6b4f1e4e-58b6-4d0c-8a34-5ed5a5c9c2f4");
    dispose(&r);

    free(qc);
    free(qk);
    free(qk2);
    free(qca);
    free(cert);
    free(key);
    free(cert2);
    free(key2);
    free(ca);
    free(cakey);
}

/* ------------------------------------------------------------------------ */
/* Scale                                                                     */

static void test_big_file(void **state)
{
    (void)state;
    const size_t n = 10000;
    size_t cap = n * 96 + 256, len = 0;
    char *doc = malloc(cap);
    len += (size_t)snprintf(doc + len, cap - len,
                            "_format_version: '3.0'\nservices:\n- name: s\n  host: a.com\n"
                            "  routes:\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(
            doc + len, cap - len,
            "  - {name: r%zu, paths: [/p%zu, '~/re%zu/\\d+'], methods: [GET]}\n", i, i, i);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct result r;
    LOAD_OK(r, doc);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("      10000 routes loaded in %.3f s\n", secs);
    assert_int_equal(json_array_size(json_object_get(r.out, "routes")), n);
    assert_string_equal(str(entity(&r, "routes", n - 1), "name"), "r9999");
    dispose(&r);
    free(doc);
}

/* ------------------------------------------------------------------------ */
/* Found by fuzzing (tests/fuzz/fuzz_declarative.c, fuzz_yaml.c)             */

/* An alias copies its anchor's nesting to wherever it lands, so a chain of
 * aliases could nest far past the depth limit (and past what the recursive
 * walks over the document may assume). */
static void test_alias_depth(void **state)
{
    (void)state;
    sl_errors_t e;
    sl_errors_init(&e);
    json_t *v = NULL;
    const char *ok = "a: &a [[1]]\nb: *a\n";
    assert_int_equal(sl_yaml_to_json(ok, strlen(ok), 3, &v, &e), SL_OK);
    json_decref(v);
    const char *deep = "a: &a [[1]]\nb: [*a]\n";
    assert_int_equal(sl_yaml_to_json(deep, strlen(deep), 3, &v, &e), SL_ERR_INVALID);
    assert_string_equal(e.items[0], "invalid YAML at line 2: nesting deeper than 3 levels");
    sl_errors_dispose(&e);

    /* each anchor wraps the previous one in 60 more levels */
    size_t cap = 200 * 140, len = 0;
    char *doc = malloc(cap);
    len += (size_t)snprintf(doc + len, cap - len, "_format_version: '3.0'\n_ignore:\n");
    for (int i = 0; i < 150; i++) {
        len += (size_t)snprintf(doc + len, cap - len, "- &a%d ", i);
        for (int j = 0; j < 60; j++)
            doc[len++] = '[';
        if (i > 0)
            len += (size_t)snprintf(doc + len, cap - len, "*a%d", i - 1);
        for (int j = 0; j < 60; j++)
            doc[len++] = ']';
        doc[len++] = '\n';
    }
    doc[len] = '\0';
    expect_error(doc, "invalid YAML at line 4: nesting deeper than 64 levels");
    free(doc);
}

/* YAML's "\0" escape put NUL bytes into strings that the validators read as C
 * strings: this host was "a" to the hostname check and "a\0.com" in the
 * document. JSON input already refused \u0000. */
static void test_nul_in_yaml(void **state)
{
    (void)state;
    expect_error("_format_version: '3.0'\nservices:\n- name: \"nul\\0inside\"\n"
                 "  host: \"a\\x00.com\"\n",
                 "invalid YAML at line 3: a value contains a NUL character (\\0); remove it");
    expect_error("_format_version: '3.0'\nservices:\n- host: a.com\n  tags: [\"t\\u0000\"]\n",
                 "invalid YAML at line 4: a value contains a NUL character (\\0); remove it");
    expect_error("_format_version: '3.0'\n\"x\\0\": 1\n",
                 "invalid YAML at line 2: a value contains a NUL character (\\0); remove it");
    expect_error("{\"_format_version\": \"3.0\", \"_comment\": \"\\u0000\"}",
                 "invalid JSON at line 1, column 47: \\u0000 is not allowed without "
                 "JSON_ALLOW_NUL near '\"\\u0000\"'");
}

/* The alias budget counted nodes only: one long string aliased many times
 * took gigabytes from a file of a few megabytes. */
static void test_alias_text_bomb(void **state)
{
    (void)state;
    size_t big = 1u << 20, n = 70;
    char *doc = malloc(big + n * 4 + 64);
    size_t len = (size_t)sprintf(doc, "a: &a '");
    memset(doc + len, 'x', big);
    len += big;
    len += (size_t)sprintf(doc + len, "'\nb: [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(doc + len, "%s*a", i ? "," : "");
    len += (size_t)sprintf(doc + len, "]\n");
    sl_errors_t e;
    sl_errors_init(&e);
    json_t *v = NULL;
    assert_int_equal(sl_yaml_to_json(doc, len, 8, &v, &e), SL_ERR_INVALID);
    assert_string_equal(e.items[0],
                        "invalid YAML at line 2: aliases expand to more than 67108864 bytes of "
                        "text");
    sl_errors_dispose(&e);
    free(doc);
    /* within the budget, copies are still made */
    const char *few = "a: &a 'xyz'\nb: [*a, *a]\n";
    assert_int_equal(sl_yaml_to_json(few, strlen(few), 8, &v, &e), SL_OK);
    assert_string_equal(json_string_value(json_array_get(json_object_get(v, "b"), 1)), "xyz");
    json_decref(v);
}

/* Sets were de-duplicated pairwise: a few hundred thousand tags took hours
 * (and as many identical ones, minutes of memmove). */
static void test_large_sets(void **state)
{
    (void)state;
    const size_t n = 300000;
    size_t cap = n * 20 + 128, len = 0;
    char *doc = malloc(cap);
    len +=
        (size_t)snprintf(doc, cap, "_format_version: '3.0'\nservices:\n- host: a.com\n  tags: [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(doc + len, cap - len, "t%zu,t%zu,", i, i / 2);
    len += (size_t)snprintf(doc + len, cap - len, "t0]\n");
    struct result r;
    LOAD_OK(r, doc);
    json_t *tags = json_object_get(entity(&r, "services", 0), "tags");
    assert_int_equal(json_array_size(tags), n);
    for (size_t i = 0; i < n; i += 9999) {
        char want[32];
        snprintf(want, sizeof(want), "t%zu", i);
        assert_string_equal(json_string_value(json_array_get(tags, i)), want);
    }
    dispose(&r);
    free(doc);

    /* first of each kept, in order; json_equal's notion of equal */
    LOAD_OK(
        r,
        "_format_version: '3.0'\nroutes:\n- paths: [/]\n  methods: [GET, POST, GET, PUT, POST]\n");
    json_t *m = json_object_get(entity(&r, "routes", 0), "methods");
    assert_int_equal(json_array_size(m), 3);
    assert_string_equal(json_string_value(json_array_get(m, 2)), "PUT");
    dispose(&r);
    /* 1, 1.0, 0.0, '1' and x remain (-0.0 equals 0.0): three type errors */
    r = load("_format_version: '3.0'\nservices:\n- host: a.com\n"
             "  tags: [1, 1.0, 0.0, -0.0, '1', 1, x]\n");
    assert_int_equal(r.rc, SL_ERR_INVALID);
    assert_int_equal(r.errs.n, 3);
    assert_true(has_error(&r, "services[0].tags[0]: expected a string"));
    assert_true(has_error(&r, "services[0].tags[1]: expected a string"));
    assert_true(has_error(&r, "services[0].tags[2]: expected a string"));
    dispose(&r);
}

/* Path normalisation measured the rest of the path at every segment, so a
 * long path with a dot segment took minutes to check. */
static void test_long_path_normalize(void **state)
{
    (void)state;
    const size_t n = 2000000;
    char *path = malloc(2 * n + 3);
    for (size_t i = 0; i < n; i++)
        memcpy(path + 2 * i, "/a", 2);
    memcpy(path + 2 * n, "/.", 3);
    char *out = sl_route_path_normalize(path, true);
    assert_int_equal(strlen(out), 2 * n + 1);
    assert_memory_equal(out, path, 2 * n + 1);
    free(out);
    free(path);
}

/* ------------------------------------------------------------------------ */
/* The schema engine as the Admin API uses it                                */

static void test_schema_fields_shape(void **state)
{
    (void)state;
    const sl_schema_t *routes = sl_entity_schema("routes");
    assert_non_null(routes);
    assert_string_equal(sl_entity_endpoint_key(routes), "name");
    assert_true(sl_entity_endpoint_key_unique(routes));
    assert_string_equal(sl_entity_endpoint_key(sl_entity_schema("consumers")), "username");
    assert_string_equal(sl_entity_endpoint_key(sl_entity_schema("plugins")), "instance_name");
    assert_string_equal(sl_entity_endpoint_key(sl_entity_schema("targets")), "target");
    assert_false(sl_entity_endpoint_key_unique(sl_entity_schema("targets")));
    assert_string_equal(sl_entity_endpoint_key(sl_entity_schema("keyauth_credentials")), "key");
    assert_string_equal(sl_entity_endpoint_key(sl_entity_schema("jwt_secrets")), "key");
    assert_string_equal(sl_entity_endpoint_key(sl_entity_schema("basicauth_credentials")),
                        "username");
    assert_null(sl_entity_schema("nope"));

    json_t *route =
        json_loads("{\"paths\": [\"/ok\", \"bad\"], \"protocols\": [\"http\"], "
                   "\"service\": {\"id\": \"x\"}, \"sources\": [{\"ip\": \"1.2.3.4\"}], "
                   "\"zzz\": 1}",
                   0, NULL);
    json_t *fields = json_object();
    sl_errors_t flat;
    sl_errors_init(&flat);
    assert_int_equal(sl_schema_validate(routes, route, "", &flat, fields), SL_ERR_INVALID);
    json_t *want =
        json_loads("{\"paths\": [null, \"should start with: / (fixed path) or ~/ (regex path)\"],"
                   " \"service\": {\"id\": \"expected a valid UUID\"},"
                   " \"sources\": \"cannot set 'sources' when 'protocols' is 'http' or 'https'\","
                   " \"zzz\": \"unknown field\"}",
                   0, NULL);
    if (!json_equal(fields, want)) {
        char *s = json_dumps(fields, 0);
        fprintf(stderr, "fields: %s\n", s);
        free(s);
    }
    assert_true(json_equal(fields, want));
    assert_int_equal(flat.n, 4);
    assert_string_equal(flat.items[0], "service.id: expected a valid UUID");
    assert_string_equal(flat.items[1], "sources: cannot set 'sources' when 'protocols' is 'http' "
                                       "or 'https'");
    assert_string_equal(flat.items[2],
                        "paths[1]: should start with: / (fixed path) or ~/ (regex path)");
    assert_string_equal(flat.items[3], "zzz: unknown field");
    json_decref(want);
    json_decref(fields);
    json_decref(route);
    sl_errors_dispose(&flat);

    /* entity-level errors go under "@entity"; a valid entity gets an id */
    json_t *consumer = json_loads("{}", 0, NULL);
    fields = json_object();
    assert_int_equal(
        sl_schema_validate(sl_entity_schema("consumers"), consumer, NULL, NULL, fields),
        SL_ERR_INVALID);
    want = json_loads("{\"@entity\": [\"at least one of these fields must be non-empty: "
                      "'custom_id', 'username'\"]}",
                      0, NULL);
    assert_true(json_equal(fields, want));
    json_decref(want);
    json_decref(fields);
    json_object_set_new(consumer, "username", json_string("carol"));
    assert_int_equal(sl_schema_validate(sl_entity_schema("consumers"), consumer, NULL, NULL, NULL),
                     SL_OK);
    assert_true(sl_uuid_valid(str(consumer, "id")));
    json_decref(consumer);
}

static const sl_field_t only_config_fields[] = {
    {.name = "config", .type = SL_FT_RECORD, .flags = SL_F_REQUIRED, .record = NULL},
    {.name = NULL},
};
static const sl_field_t rl_config_fields[] = {
    {.name = "minute", .type = SL_FT_INTEGER, .def = SL_DEF_INT, .def_int = 10},
    {.name = NULL},
};
static const sl_schema_t rl_config = {.fields = rl_config_fields};
static const sl_field_t rl_fields[] = {
    {.name = "config", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &rl_config},
    {.name = NULL},
};
static const sl_schema_t rl_subschema = {.name = "rate-limiting", .fields = rl_fields};

static const sl_schema_t *lookup_plugin(const char *name)
{
    (void)only_config_fields;
    return strcmp(name, "rate-limiting") == 0 ? &rl_subschema : NULL;
}

static void test_plugin_lookup(void **state)
{
    (void)state;
    sl_entities_set_plugin_lookup(lookup_plugin);
    struct result r;
    LOAD_OK(r, "_format_version: '3.0'\nplugins: [{name: rate-limiting}]\n");
    assert_int_equal(num(json_object_get(entity(&r, "plugins", 0), "config"), "minute"), 10);
    dispose(&r);
    expect_error("_format_version: '3.0'\nplugins: [{name: rate-limiting, config: {hour: 1}}]\n",
                 "plugins[0].config.hour: unknown field");
    expect_error("_format_version: '3.0'\nplugins: [{name: nope}]\n",
                 "plugins[0].name: plugin 'nope' not enabled; add it to the 'plugins' "
                 "configuration property");
    sl_entities_set_plugin_lookup(NULL);
}

static void test_uri_normalize(void **state)
{
    (void)state;
    static const char *cases[][3] = {
        {"/a/b/../c", "/a/c", "1"},
        {"/a/./b", "/a/b", "1"},
        {"/a//b", "/a/b", "1"},
        {"/a//b", "/a//b", "0"},
        {"/..", "/", "1"},
        {"/%41%2f", "/A%2F", "1"},
        {"/a/b/..", "/a/", "1"},
        {"/x%20y", "/x y", "1"},
        {"", "", "1"},
        {"/", "/", "1"},
        {"/a/../../b", "/b", "1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *out = sl_route_path_normalize(cases[i][0], cases[i][2][0] == '1');
        assert_string_equal(out, cases[i][1]);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_url_expansion),
        cmocka_unit_test(test_service_defaults),
        cmocka_unit_test(test_route_defaults),
        cmocka_unit_test(test_nesting_and_fks),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_deterministic_ids),
        cmocka_unit_test(test_yaml_and_json_identical),
        cmocka_unit_test(test_validation_rules),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_top_level),
        cmocka_unit_test(test_bad_syntax),
        cmocka_unit_test(test_yaml_features),
        cmocka_unit_test(test_depth_and_size_bounds),
        cmocka_unit_test(test_migration),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_certificates),
        cmocka_unit_test(test_big_file),
        cmocka_unit_test(test_alias_depth),
        cmocka_unit_test(test_nul_in_yaml),
        cmocka_unit_test(test_alias_text_bomb),
        cmocka_unit_test(test_large_sets),
        cmocka_unit_test(test_long_path_normalize),
        cmocka_unit_test(test_schema_fields_shape),
        cmocka_unit_test(test_plugin_lookup),
        cmocka_unit_test(test_uri_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
