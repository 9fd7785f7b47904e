/*
 * Unit tests of the router (dataplane/router.c): Kong traditional_compatible
 * matching and priorities, capture reporting, constructor errors, upstream
 * path joining (Kong's own fixture table for v0 and v1), a 10,000-route table
 * checked against a brute-force reference, and concurrent matching.
 */
#include "router.h"

#include "util.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>

#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ------------------------------------------------------------- fixtures */

#define MAXN 4

struct header_def {
    const char *name;
    const char *values[MAXN];
};

struct route_def {
    const char *name; /* becomes spec.data */
    const char *hosts[MAXN];
    const char *paths[MAXN];
    const char *methods[MAXN];
    struct header_def headers[MAXN];
    unsigned protocols;
    int64_t regex_priority;
};

struct kv {
    const char *name;
    const char *value;
};

struct test_req {
    const char *method;
    const char *path;
    const char *host;
    unsigned scheme; /* 0: http */
    struct kv headers[MAXN];
};

static size_t count(const char *const *v, size_t max)
{
    size_t n = 0;
    while (n < max && v[n] != NULL)
        n++;
    return n;
}

/* Turns defs into specs (header arrays allocated into *hdrs). */
static sl_route_spec_t *make_specs(const struct route_def *defs, size_t n,
                                   sl_route_header_spec_t **hdrs)
{
    sl_route_spec_t *specs = calloc(n ? n : 1, sizeof(*specs));
    sl_route_header_spec_t *h = calloc(n ? n * MAXN : 1, sizeof(*h));

    for (size_t i = 0; i < n; i++) {
        const struct route_def *d = &defs[i];
        sl_route_spec_t *s = &specs[i];

        s->hosts = (const char **)d->hosts;
        s->nhosts = count(d->hosts, MAXN);
        s->paths = (const char **)d->paths;
        s->npaths = count(d->paths, MAXN);
        s->methods = (const char **)d->methods;
        s->nmethods = count(d->methods, MAXN);
        s->headers = &h[i * MAXN];
        for (size_t j = 0; j < MAXN && d->headers[j].name != NULL; j++) {
            h[i * MAXN + j].name = d->headers[j].name;
            h[i * MAXN + j].values = (const char **)d->headers[j].values;
            h[i * MAXN + j].nvalues = count(d->headers[j].values, MAXN);
            s->nheaders++;
        }
        s->protocols = d->protocols;
        s->regex_priority = d->regex_priority;
        s->data = (void *)d->name;
    }
    *hdrs = h;
    return specs;
}

static sl_router_t *build(const struct route_def *defs, size_t n)
{
    sl_route_header_spec_t *hdrs;
    sl_route_spec_t *specs = make_specs(defs, n, &hdrs);
    sl_router_t *r = NULL;
    char err[256];
    int rc = sl_router_new(specs, n, &r, err, sizeof(err));

    if (rc != SL_OK)
        print_error("sl_router_new: %s\n", err);
    assert_int_equal(rc, SL_OK);
    free(specs);
    free(hdrs);
    return r;
}

static size_t get_header_cb(void *ud, const char *name, sl_str_t *out, size_t max)
{
    const struct test_req *q = ud;
    size_t n = 0;

    /* The router promises lowercase names. */
    for (const char *c = name; *c; c++)
        assert_false(*c >= 'A' && *c <= 'Z');
    for (size_t i = 0; i < MAXN && q->headers[i].name != NULL; i++) {
        if (strcasecmp(q->headers[i].name, name) != 0)
            continue;
        if (n < max)
            out[n] = (sl_str_t){q->headers[i].value, strlen(q->headers[i].value)};
        n++;
    }
    return n;
}

static sl_router_req_t make_req(const struct test_req *q)
{
    sl_router_req_t r;
    const char *method = q->method ? q->method : "GET";
    const char *host = q->host ? q->host : "";

    r.method = (sl_str_t){method, strlen(method)};
    r.path = (sl_str_t){q->path, strlen(q->path)};
    r.host = (sl_str_t){host, strlen(host)};
    r.scheme = q->scheme ? q->scheme : SL_PROTO_HTTP;
    r.get_header = get_header_cb;
    r.ud = (void *)q;
    return r;
}

static int route_count(const struct route_def *defs, size_t max)
{
    int n = 0;
    while ((size_t)n < max && defs[n].name != NULL)
        n++;
    return n;
}

/* ------------------------------------------------------------ match table */

#define HTTPS SL_PROTO_HTTPS
#define HTTP SL_PROTO_HTTP

/* Designated-initializer shorthands for the tables. */
#define R(name_, ...)                                                                              \
    {                                                                                              \
        .name = (name_), __VA_ARGS__                                                               \
    }
#define RQ(method_, path_, ...)                                                                    \
    {                                                                                              \
        .method = (method_), .path = (path_), __VA_ARGS__                                          \
    }
#define ROUTES(...)                                                                                \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }
#define MC(title_, routes_, req_, want_, ...)                                                      \
    {                                                                                              \
        .title = (title_), .routes = routes_, .req = req_, .want = (want_), __VA_ARGS__            \
    }

struct match_case {
    const char *title;
    struct route_def routes[6];
    struct test_req req;
    const char *want; /* route name; NULL: no match (404) */
    bool mismatch;
    const char *want_path; /* when set, the matched configured path */
    size_t want_prefix;    /* checked with want_path */
};

static const struct match_case match_cases[] = {
    /* each field alone */
    MC("method alone", ROUTES(R("r", .methods = {"GET", "HEAD"})), RQ("HEAD", "/x"), "r"),
    MC("method mismatch", ROUTES(R("r", .methods = {"GET"})), RQ("POST", "/x"), NULL),
    MC("method is case-sensitive", ROUTES(R("r", .methods = {"GET"})), RQ("get", "/x"), NULL),
    MC("host alone", ROUTES(R("r", .hosts = {"example.com"})),
       RQ("GET", "/", .host = "example.com"), "r"),
    MC("host case-insensitive", ROUTES(R("r", .hosts = {"Example.COM"})),
       RQ("GET", "/", .host = "eXample.com"), "r"),
    MC("host other", ROUTES(R("r", .hosts = {"example.com"})),
       RQ("GET", "/", .host = "example.org"), NULL),
    MC("host empty request host", ROUTES(R("r", .hosts = {"example.com"})),
       RQ("GET", "/", .host = ""), NULL),
    MC("path alone", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/foo"), "r", .mismatch = false,
       .want_path = "/foo", .want_prefix = 4),
    MC("header alone", ROUTES(R("r", .headers = {{"X-Version", {"v1", "v2"}}})),
       RQ("GET", "/", .headers = {{"x-version", "V2"}}), "r"),
    MC("header missing", ROUTES(R("r", .headers = {{"x-version", {"v1"}}})), RQ("GET", "/"), NULL),
    MC("header other value", ROUTES(R("r", .headers = {{"x-version", {"v1"}}})),
       RQ("GET", "/", .headers = {{"x-version", "v3"}}), NULL),
    MC("header any of repeated values", ROUTES(R("r", .headers = {{"x-tag", {"blue"}}})),
       RQ("GET", "/", .headers = {{"x-tag", "red"}, {"X-Tag", "BLUE"}}), "r"),
    MC("every header must be present", ROUTES(R("r", .headers = {{"x-a", {"1"}}, {"x-b", {"2"}}})),
       RQ("GET", "/", .headers = {{"x-a", "1"}}), NULL),
    MC("every header present", ROUTES(R("r", .headers = {{"x-a", {"1"}}, {"x-b", {"2"}}})),
       RQ("GET", "/", .headers = {{"x-b", "2"}, {"x-a", "1"}}), "r"),
    MC("header regex", ROUTES(R("r", .headers = {{"user-agent", {"~*iphone|ipad"}}})),
       RQ("GET", "/", .headers = {{"user-agent", "Mozilla/5.0 (iPhone; CPU)"}}), "r"),
    MC("header regex no match", ROUTES(R("r", .headers = {{"user-agent", {"~*^curl/\\d"}}})),
       RQ("GET", "/", .headers = {{"user-agent", "Wget/1.0"}}), NULL),
    MC("header regex case-insensitive",
       ROUTES(R("r", .headers = {{"user-agent", {"~*^CURL/\\d"}}})),
       RQ("GET", "/", .headers = {{"user-agent", "curl/8.1"}}), "r"),
    /* hosts and ports */
    MC("host without port, request with port", ROUTES(R("r", .hosts = {"example.com"})),
       RQ("GET", "/", .host = "example.com:8080"), "r"),
    MC("host with port, same port", ROUTES(R("r", .hosts = {"example.com:8080"})),
       RQ("GET", "/", .host = "example.com:8080"), "r"),
    MC("host with port, other port", ROUTES(R("r", .hosts = {"example.com:8080"})),
       RQ("GET", "/", .host = "example.com:8081"), NULL),
    MC("host with port, request without port (http=80)",
       ROUTES(R("r", .hosts = {"example.com:8080"})), RQ("GET", "/", .host = "example.com"), NULL),
    MC("host :80, request without port over http", ROUTES(R("r", .hosts = {"example.com:80"})),
       RQ("GET", "/", .host = "example.com"), "r"),
    MC("host :443, request without port over https", ROUTES(R("r", .hosts = {"example.com:443"})),
       RQ("GET", "/", .host = "example.com", .scheme = HTTPS), "r"),
    MC("host :443, request without port over http", ROUTES(R("r", .hosts = {"example.com:443"})),
       RQ("GET", "/", .host = "example.com", .scheme = HTTP), NULL),
    MC("ipv6 host with port", ROUTES(R("r", .hosts = {"[::1]:8080"})),
       RQ("GET", "/", .host = "[::1]:8080"), "r"),
    MC("ipv6 host without port", ROUTES(R("r", .hosts = {"[::1]"})),
       RQ("GET", "/", .host = "[::1]:9"), "r"),
    MC("malformed request port", ROUTES(R("r", .hosts = {"example.com"})),
       RQ("GET", "/", .host = "example.com:x"), NULL),
    MC("several hosts", ROUTES(R("r", .hosts = {"a.test", "b.test"})),
       RQ("GET", "/", .host = "b.test"), "r"),
    /* wildcards */
    MC("left wildcard one label", ROUTES(R("r", .hosts = {"*.example.com"})),
       RQ("GET", "/", .host = "api.example.com"), "r"),
    MC("left wildcard several labels", ROUTES(R("r", .hosts = {"*.example.com"})),
       RQ("GET", "/", .host = "a.b.example.com"), "r"),
    MC("left wildcard not the bare domain", ROUTES(R("r", .hosts = {"*.example.com"})),
       RQ("GET", "/", .host = "example.com"), NULL),
    MC("left wildcard needs the dot", ROUTES(R("r", .hosts = {"*.example.com"})),
       RQ("GET", "/", .host = "badexample.com"), NULL),
    MC("left wildcard needs a label", ROUTES(R("r", .hosts = {"*.example.com"})),
       RQ("GET", "/", .host = ".example.com"), NULL),
    MC("left wildcard case-insensitive", ROUTES(R("r", .hosts = {"*.Example.com"})),
       RQ("GET", "/", .host = "API.EXAMPLE.COM:8000"), "r"),
    MC("right wildcard", ROUTES(R("r", .hosts = {"example.*"})),
       RQ("GET", "/", .host = "example.org"), "r"),
    MC("right wildcard several labels", ROUTES(R("r", .hosts = {"example.*"})),
       RQ("GET", "/", .host = "example.co.uk"), "r"),
    MC("right wildcard not a suffix match", ROUTES(R("r", .hosts = {"example.*"})),
       RQ("GET", "/", .host = "www.example.org"), NULL),
    MC("right wildcard needs a label", ROUTES(R("r", .hosts = {"example.*"})),
       RQ("GET", "/", .host = "example."), NULL),
    MC("wildcard with port", ROUTES(R("r", .hosts = {"*.example.com:8443"})),
       RQ("GET", "/", .host = "a.example.com:8443"), "r"),
    MC("wildcard with port, default port differs", ROUTES(R("r", .hosts = {"*.example.com:8443"})),
       RQ("GET", "/", .host = "a.example.com", .scheme = HTTPS), NULL),
    MC("right wildcard with port", ROUTES(R("r", .hosts = {"example.*:443"})),
       RQ("GET", "/", .host = "example.net", .scheme = HTTPS), "r"),
    /* paths */
    MC("prefix matches itself", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/foo"), "r"),
    MC("prefix matches longer segment", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/foobar"),
       "r", .mismatch = false, .want_path = "/foo", .want_prefix = 4),
    MC("prefix matches subpath", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/foo/bar"), "r"),
    MC("prefix shorter request", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/fo"), NULL),
    MC("prefix not in the middle", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/bar/foo"), NULL),
    MC("prefix is case-sensitive", ROUTES(R("r", .paths = {"/foo"})), RQ("GET", "/FOO"), NULL),
    MC("regex anchored at start", ROUTES(R("r", .paths = {"~/b"})), RQ("GET", "/a/b"), NULL),
    MC("regex not anchored at end", ROUTES(R("r", .paths = {"~/api/v\\d"})),
       RQ("GET", "/api/v1/users"), "r", .mismatch = false, .want_path = "~/api/v\\d",
       .want_prefix = 7),
    MC("regex with $", ROUTES(R("r", .paths = {"~/users/\\d+$"})), RQ("GET", "/users/42/x"), NULL),
    MC("regex with $ matching", ROUTES(R("r", .paths = {"~/users/\\d+$"})), RQ("GET", "/users/42"),
       "r", .mismatch = false, .want_path = "~/users/\\d+$", .want_prefix = 9),
    MC("regex alternation", ROUTES(R("r", .paths = {"~/(?:a|b)/x", "~/c|/d"})), RQ("GET", "/d/e"),
       "r"),
    MC("regex optional literal", ROUTES(R("r", .paths = {"~/items?/\\d"})), RQ("GET", "/item/1"),
       "r"),
    MC("regex escaped literal", ROUTES(R("r", .paths = {"~/v1\\.0/x"})), RQ("GET", "/v1.0/x"), "r"),
    MC("regex escaped literal no match", ROUTES(R("r", .paths = {"~/v1\\.0/x"})),
       RQ("GET", "/v1a0/x"), NULL),
    MC("regex caseless option", ROUTES(R("r", .paths = {"~(?i)/abc"})), RQ("GET", "/ABC"), "r"),
    /* combined fields */
    MC("all fields match",
       ROUTES(R("r", .hosts = {"api.test"}, .paths = {"/v1"}, .methods = {"PUT"},
                .headers = {{"x-env", {"prod"}}})),
       RQ("PUT", "/v1/things", .host = "api.test", .headers = {{"x-env", "prod"}}), "r"),
    MC("all but method",
       ROUTES(R("r", .hosts = {"api.test"}, .paths = {"/v1"}, .methods = {"PUT"},
                .headers = {{"x-env", {"prod"}}})),
       RQ("GET", "/v1/things", .host = "api.test", .headers = {{"x-env", "prod"}}), NULL),
    MC("all but header",
       ROUTES(R("r", .hosts = {"api.test"}, .paths = {"/v1"}, .methods = {"PUT"},
                .headers = {{"x-env", {"prod"}}})),
       RQ("PUT", "/v1/things", .host = "api.test", .headers = {{"x-env", "dev"}}), NULL),
    MC("all but host", ROUTES(R("r", .hosts = {"api.test"}, .paths = {"/v1"}, .methods = {"PUT"})),
       RQ("PUT", "/v1/things", .host = "web.test"), NULL),
    MC("all but path", ROUTES(R("r", .hosts = {"api.test"}, .paths = {"/v1"}, .methods = {"PUT"})),
       RQ("PUT", "/v2/things", .host = "api.test"), NULL),
    /* priority */
    MC("longest prefix wins",
       ROUTES(R("short", .paths = {"/a"}), R("long", .paths = {"/a/b"}),
              R("other", .paths = {"/a/c"})),
       RQ("GET", "/a/b/c"), "long", .mismatch = false, .want_path = "/a/b", .want_prefix = 4),
    MC("longest prefix wins, declared first",
       ROUTES(R("long", .paths = {"/a/b"}), R("short", .paths = {"/a"})), RQ("GET", "/a/b/c"),
       "long"),
    MC("shorter prefix when the longer does not match",
       ROUTES(R("short", .paths = {"/a"}), R("long", .paths = {"/a/b"})), RQ("GET", "/a/x"),
       "short"),
    MC("regex beats a longer prefix",
       ROUTES(R("prefix", .paths = {"/users/123/profile"}), R("regex", .paths = {"~/users/\\d+"})),
       RQ("GET", "/users/123/profile"), "regex"),
    MC("regex_priority orders regexes",
       ROUTES(R("low", .paths = {"~/users/\\d+"}, .regex_priority = 1),
              R("high", .paths = {"~/users/"}, .regex_priority = 5),
              R("mid", .paths = {"~/users"}, .regex_priority = 3)),
       RQ("GET", "/users/7"), "high"),
    MC("negative regex_priority loses to zero",
       ROUTES(R("neg", .paths = {"~/x"}, .regex_priority = -1), R("zero", .paths = {"~/x/y"})),
       RQ("GET", "/x/y"), "zero"),
    MC("more negative regex_priority loses",
       ROUTES(R("m5", .paths = {"~/x"}, .regex_priority = -5),
              R("m2", .paths = {"~/x/y"}, .regex_priority = -2)),
       RQ("GET", "/x/y"), "m2"),
    MC("regex_priority ignored for prefix paths",
       ROUTES(R("a", .paths = {"/p"}, .regex_priority = 100), R("b", .paths = {"/p/q"})),
       RQ("GET", "/p/q"), "b"),
    MC("more fields beat fewer",
       ROUTES(R("paths-only", .paths = {"/a/b/c/d"}),
              R("method+path", .paths = {"/"}, .methods = {"GET"})),
       RQ("GET", "/a/b/c/d"), "method+path"),
    MC("host route beats host-less with same other fields",
       ROUTES(R("nohost", .paths = {"/api/long/path"}),
              R("host", .hosts = {"x.test"}, .paths = {"/"})),
       RQ("GET", "/api/long/path", .host = "x.test"), "host"),
    MC("plain host beats wildcard host",
       ROUTES(R("wild", .hosts = {"*.example.com"}, .paths = {"/x/long"}),
              R("plain", .hosts = {"api.example.com"}, .paths = {"/x"})),
       RQ("GET", "/x/long", .host = "api.example.com"), "plain"),
    MC("mixed plain and wildcard hosts is not plain-hosts-only",
       ROUTES(R("mixed", .hosts = {"api.example.com", "*.example.com"}, .paths = {"/x/long"}),
              R("plain", .hosts = {"api.example.com"}, .paths = {"/x"})),
       RQ("GET", "/x/long", .host = "api.example.com"), "plain"),
    MC("wildcard host with more fields beats plain host",
       ROUTES(R("plain", .hosts = {"api.example.com"}),
              R("wild", .hosts = {"*.example.com"}, .paths = {"/"}, .methods = {"GET"})),
       RQ("GET", "/x", .host = "api.example.com"), "wild"),
    MC("host-less with more fields beats plain host",
       ROUTES(R("plain", .hosts = {"api.example.com"}, .paths = {"/x"}),
              R("nohost", .paths = {"/"}, .methods = {"GET"}, .headers = {{"x-a", {"1"}}})),
       RQ("GET", "/x", .host = "api.example.com", .headers = {{"x-a", "1"}}), "nohost"),
    MC("right wildcard loses to plain host",
       ROUTES(R("wild", .hosts = {"example.*"}), R("plain", .hosts = {"example.org"})),
       RQ("GET", "/", .host = "example.org"), "plain"),
    MC("more headers win",
       ROUTES(R("one", .paths = {"/x/longer/path"}, .headers = {{"x-a", {"1"}}}),
              R("two", .paths = {"/"}, .headers = {{"x-a", {"1"}}, {"x-b", {"2"}}})),
       RQ("GET", "/x/longer/path", .headers = {{"x-a", "1"}, {"x-b", "2"}}), "two"),
    MC("header count beats regex",
       ROUTES(R("regex", .paths = {"~/x"}, .headers = {{"x-a", {"1"}}}),
              R("two", .paths = {"/"}, .headers = {{"x-a", {"1"}}, {"x-b", {"2"}}})),
       RQ("GET", "/x", .headers = {{"x-a", "1"}, {"x-b", "2"}}), "two"),
    MC("higher candidate failing a condition falls back",
       ROUTES(R("two", .paths = {"/"}, .headers = {{"x-a", {"1"}}, {"x-b", {"2"}}}),
              R("one", .paths = {"/x"}, .headers = {{"x-a", {"1"}}})),
       RQ("GET", "/x", .headers = {{"x-a", "1"}, {"x-b", "3"}}), "one"),
    MC("tie: earlier spec wins",
       ROUTES(R("first", .paths = {"/tie"}), R("second", .paths = {"/tie"})), RQ("GET", "/tie"),
       "first"),
    MC("tie between regexes: earlier spec wins",
       ROUTES(R("first", .paths = {"~/t"}), R("second", .paths = {"~/ti"})), RQ("GET", "/tie"),
       "first"),
    MC("each path has its own priority",
       ROUTES(R("many", .paths = {"/a", "/api/v1"}), R("mid", .paths = {"/api"})),
       RQ("GET", "/api/v1/x"), "many", .mismatch = false, .want_path = "/api/v1", .want_prefix = 7),
    MC("each path has its own priority (short one)",
       ROUTES(R("many", .paths = {"/a", "/api/v1"}), R("mid", .paths = {"/api"})),
       RQ("GET", "/api/x"), "mid"),
    MC("mixed regex and prefix paths",
       ROUTES(R("mixed", .paths = {"/m", "~/r/\\d"}), R("prefix", .paths = {"/r/1/long"})),
       RQ("GET", "/r/1/long"), "mixed", .mismatch = false, .want_path = "~/r/\\d",
       .want_prefix = 4),
    MC("wildcard and exact hosts of one route",
       ROUTES(R("r", .hosts = {"a.test", "*.b.test"}, .paths = {"/p"}), R("s", .paths = {"/"})),
       RQ("GET", "/p", .host = "x.b.test"), "r"),
    MC("route without paths reports empty path", ROUTES(R("r", .hosts = {"a.test"})),
       RQ("GET", "/anything", .host = "a.test"), "r", .mismatch = false, .want_path = "",
       .want_prefix = 0),
    /* protocols */
    MC("https-only route over http: mismatch",
       ROUTES(R("tls", .paths = {"/s"}, .protocols = HTTPS)), RQ("GET", "/s", .scheme = HTTP),
       "tls", .mismatch = true),
    MC("https-only route over https", ROUTES(R("tls", .paths = {"/s"}, .protocols = HTTPS)),
       RQ("GET", "/s", .scheme = HTTPS), "tls"),
    MC("http-only route over https: no match",
       ROUTES(R("plain", .protocols = HTTP, .paths = {"/"})), RQ("GET", "/", .scheme = HTTPS),
       NULL),
    MC("an https-only route shadows a lower one over http (Kong redirects)",
       ROUTES(R("tls", .paths = {"/s/long"}, .protocols = HTTPS), R("any", .paths = {"/s"})),
       RQ("GET", "/s/long", .scheme = HTTP), "tls", .mismatch = true),
    MC("over http, a higher route for both schemes wins over an https-only one",
       ROUTES(R("tls", .paths = {"/s"}, .protocols = HTTPS), R("any", .paths = {"/s/long"})),
       RQ("GET", "/s/long", .scheme = HTTP), "any"),
    MC("best mismatch reported",
       ROUTES(R("tls-low", .paths = {"/s"}, .protocols = HTTPS),
              R("tls-high", .paths = {"/s/long"}, .protocols = HTTPS)),
       RQ("GET", "/s/long", .scheme = HTTP), "tls-high", .mismatch = true),
    MC("mismatch needs the other fields",
       ROUTES(R("tls", .paths = {"/s"}, .methods = {"POST"}, .protocols = HTTPS)),
       RQ("GET", "/s", .scheme = HTTP), NULL),
    /* nothing */
    MC("no routes", ROUTES(R(NULL)), RQ("GET", "/"), NULL),
    MC("404 among several", ROUTES(R("a", .paths = {"/a"}), R("b", .hosts = {"b.test"})),
       RQ("GET", "/c", .host = "c.test"), NULL),

};

static void test_match_table(void **state)
{
    (void)state;
    int failures = 0;

    for (size_t i = 0; i < SL_ARRAY_LEN(match_cases); i++) {
        const struct match_case *c = &match_cases[i];
        int n = route_count(c->routes, SL_ARRAY_LEN(c->routes));
        sl_router_t *r = build(c->routes, (size_t)n);
        sl_router_req_t req = make_req(&c->req);
        sl_router_match_t m;
        int rc = sl_router_match(r, &req, &m);
        const char *got = rc == SL_OK ? m.data : NULL;

        if ((got == NULL) != (c->want == NULL) || (got && strcmp(got, c->want) != 0)) {
            print_error("case '%s': want %s, got %s\n", c->title, c->want ? c->want : "404",
                        got ? got : "404");
            failures++;
        } else if (got && m.protocol_mismatch != c->mismatch) {
            print_error("case '%s': protocol_mismatch %d\n", c->title, m.protocol_mismatch);
            failures++;
        } else if (got && c->want_path &&
                   (m.path.len != strlen(c->want_path) ||
                    memcmp(m.path.p, c->want_path, m.path.len) != 0 ||
                    m.prefix_len != c->want_prefix)) {
            print_error("case '%s': path '%.*s' prefix_len %zu\n", c->title, (int)m.path.len,
                        m.path.p, m.prefix_len);
            failures++;
        }
        sl_router_free(r);
    }
    assert_int_equal(failures, 0);
}

static void test_empty_router(void **state)
{
    (void)state;
    sl_router_t *r = NULL;
    struct test_req q = RQ("GET", "/", .host = "a.test");
    sl_router_req_t req = make_req(&q);
    sl_router_match_t m;

    assert_int_equal(sl_router_new(NULL, 0, &r, NULL, 0), SL_OK);
    assert_int_equal(sl_router_match(r, &req, &m), SL_DECLINED);
    sl_router_free(r);
    sl_router_free(NULL);
}

/* 100 nested prefixes on one request path: more candidate lists than the
 * router merges at once, so it has to settle them in batches. */
static void test_deep_nesting(void **state)
{
    (void)state;
    enum { DEPTH = 100 };
    static char paths[DEPTH][2 * DEPTH + 2];
    static char names[DEPTH][16];
    struct route_def *defs = calloc(DEPTH, sizeof(*defs));
    char req_path[2 * DEPTH + 8] = "";
    sl_router_match_t m;

    for (int k = 0; k < DEPTH; k++) {
        for (int j = 0; j <= k; j++)
            memcpy(paths[k] + 2 * j, "/x", 3);
        snprintf(names[k], sizeof(names[k]), "d%d", k);
        defs[k].name = names[k];
        defs[k].paths[0] = paths[k];
        /* the deeper half only takes POST */
        if (k >= 60)
            defs[k].methods[0] = "POST";
        strcat(req_path, "/x");
    }
    sl_router_t *r = build(defs, DEPTH);

    struct test_req q = RQ("POST", req_path);
    sl_router_req_t req = make_req(&q);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_string_equal(m.data, "d99");

    /* GET: every POST route fails, the longest GET prefix (d59) wins. */
    q.method = "GET";
    req = make_req(&q);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_string_equal(m.data, "d59");

    /* A path 70 levels deep. */
    req_path[2 * 70] = '\0';
    q.method = "POST";
    req = make_req(&q);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_string_equal(m.data, "d69");
    sl_router_free(r);
    free(defs);
}

/* --------------------------------------------------------------- captures */

static void test_captures(void **state)
{
    (void)state;
    static const struct route_def defs[] = {
        {"users", .paths = {"~/users/(?<id>\\d+)/(\\w+)"}},
        {"opt", .paths = {"~/a(/b)?(?<tail>/c)"}},
    };
    sl_router_t *r = build(defs, 2);
    sl_router_match_t m;

    struct test_req q1 = RQ("GET", "/users/42/profile/x");
    sl_router_req_t req = make_req(&q1);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_string_equal(m.data, "users");
    assert_true(m.regex);
    assert_int_equal(m.prefix_len, strlen("/users/42/profile"));
    assert_int_equal(m.ncaptures, 3);
    assert_null(m.captures[0].name);
    assert_int_equal(m.captures[0].index, 1);
    assert_int_equal(m.captures[0].value.len, 2);
    assert_memory_equal(m.captures[0].value.p, "42", 2);
    assert_true(m.captures[0].value.p == q1.path + 7); /* points into the request */
    assert_string_equal(m.captures[1].name, "id");
    assert_int_equal(m.captures[1].index, 1);
    assert_memory_equal(m.captures[1].value.p, "42", 2);
    assert_null(m.captures[2].name);
    assert_int_equal(m.captures[2].index, 2);
    assert_int_equal(m.captures[2].value.len, 7);
    assert_memory_equal(m.captures[2].value.p, "profile", 7);

    /* An unset group is left out; numbering still follows the pattern. */
    struct test_req q2 = RQ("GET", "/a/c/d");
    req = make_req(&q2);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_string_equal(m.data, "opt");
    assert_int_equal(m.ncaptures, 2);
    assert_null(m.captures[0].name);
    assert_int_equal(m.captures[0].index, 2);
    assert_string_equal(m.captures[1].name, "tail");
    assert_int_equal(m.captures[1].index, 2);
    assert_memory_equal(m.captures[1].value.p, "/c", 2);
    sl_router_free(r);

    /* Prefix matches have no captures. */
    static const struct route_def p[] = {{"p", .paths = {"/users"}}};
    r = build(p, 1);
    req = make_req(&q1);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_false(m.regex);
    assert_int_equal(m.ncaptures, 0);
    assert_int_equal(m.prefix_len, 6);
    sl_router_free(r);

    /* Captures beyond SL_ROUTER_MAX_CAPTURES entries are dropped. */
    static const struct route_def many[] = {
        {"many", .paths = {"~/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)(m)(n)(o)(p)(q)(r)(s)"}}};
    r = build(many, 1);
    struct test_req q3 = RQ("GET", "/abcdefghijklmnopqrs");
    req = make_req(&q3);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_int_equal(m.ncaptures, SL_ROUTER_MAX_CAPTURES);
    assert_int_equal(m.captures[15].index, 16);
    sl_router_free(r);
}

/* --------------------------------------------------------------- priority */

static void test_priority_values(void **state)
{
    (void)state;
    const char *hosts[] = {"api.test"};
    const char *wild[] = {"*.api.test"};
    const char *methods[] = {"GET"};
    const char *vals[] = {"1"};
    sl_route_header_spec_t hdrs[3] = {{"a", vals, 1}, {"b", vals, 1}, {"c", vals, 1}};
    sl_route_spec_t s;

    memset(&s, 0, sizeof(s));
    s.hosts = hosts;
    s.nhosts = 1;
    assert_true(sl_router_priority(&s, "/foo") == ((UINT64_C(2) << 61) | (UINT64_C(1) << 60) | 4));
    assert_true(sl_router_priority(&s, NULL) == ((UINT64_C(1) << 61) | (UINT64_C(1) << 60)));

    s.hosts = wild;
    assert_true(sl_router_priority(&s, "/foo") == ((UINT64_C(2) << 61) | 4));

    memset(&s, 0, sizeof(s));
    s.regex_priority = 7;
    assert_true(sl_router_priority(&s, "~/x") ==
                ((UINT64_C(1) << 61) | (UINT64_C(1) << 51) | (UINT64_C(7) << 19)));
    /* regex_priority only counts for regex paths */
    assert_true(sl_router_priority(&s, "/xyz") == ((UINT64_C(1) << 61) | 4));
    /* clamped to the 32 bits of its field */
    s.regex_priority = -3;
    assert_true(sl_router_priority(&s, "~/x") == ((UINT64_C(1) << 61) | (UINT64_C(1) << 51)));
    s.regex_priority = INT64_C(1) << 40;
    assert_true(sl_router_priority(&s, "~/x") ==
                ((UINT64_C(1) << 61) | (UINT64_C(1) << 51) | (UINT64_C(0xFFFFFFFF) << 19)));

    memset(&s, 0, sizeof(s));
    s.methods = methods;
    s.nmethods = 1;
    s.headers = hdrs;
    s.nheaders = 3;
    assert_true(sl_router_priority(&s, "/") == ((UINT64_C(3) << 61) | (UINT64_C(3) << 52) | 1));
    s.hosts = hosts;
    s.nhosts = 1;
    assert_true(sl_router_priority(&s, "/ab") ==
                ((UINT64_C(4) << 61) | (UINT64_C(1) << 60) | (UINT64_C(3) << 52) | 3));
}

/* ----------------------------------------------------------------- errors */

struct error_case {
    const char *title;
    struct route_def routes[5];
    const char *want; /* exact message */
};

static const struct error_case error_cases[] = {
    {"invalid path regex",
     {R("a", .paths = {"/a"}), R("b"), R("c"), R("d", .paths = {"~/("})},
     "spec 3: paths[0]: invalid regex '~/(' : missing closing parenthesis at offset 2"},
    {"invalid regex in a later path",
     {{"a", .paths = {"/ok", "~/[a-"}}},
     "spec 0: paths[1]: invalid regex '~/[a-' : missing terminating ] for character class at "
     "offset 4"},
    {"invalid header regex",
     {{"a", .headers = {{"x-a", {"~*(x"}}}}},
     "spec 0: headers[0].values[0]: invalid regex '~*(x' : missing closing parenthesis at "
     "offset 2"},
    {"wildcard in the middle",
     {{"a", .hosts = {"api.*.test"}}},
     "spec 0: hosts[0]: 'api.*.test': a wildcard must be the whole leftmost or rightmost label "
     "(\"*.example.com\", \"example.*\")"},
    {"two wildcards", {{"a", .hosts = {"ok.test", "*.example.*"}}}, NULL},
    {"bad port",
     {{"a", .hosts = {"example.com:99999"}}},
     "spec 0: hosts[0]: 'example.com:99999' is not a valid host[:port]"},
    {"empty host", {{"a", .hosts = {""}}}, "spec 0: hosts[0]: '' is not a valid host[:port]"},
    {"empty path", {{"a", .paths = {""}}}, "spec 0: paths[0]: must be a non-empty string"},
    {"header without values",
     {{"a", .headers = {{"x-a", {NULL}}}}},
     "spec 0: headers[0] (x-a): needs at least one value"},
};

static void test_errors(void **state)
{
    (void)state;

    for (size_t i = 0; i < SL_ARRAY_LEN(error_cases); i++) {
        const struct error_case *c = &error_cases[i];
        int n = route_count(c->routes, SL_ARRAY_LEN(c->routes));
        sl_route_header_spec_t *hdrs;
        sl_route_spec_t *specs = make_specs(c->routes, (size_t)n, &hdrs);
        sl_router_t *r = (sl_router_t *)0x1;
        char err[256];

        /* "b".."c" above are empty routes: give them a path so they are valid */
        for (int k = 0; k < n; k++) {
            static const char *root[] = {"/"};
            if (specs[k].nhosts + specs[k].npaths + specs[k].nmethods + specs[k].nheaders == 0) {
                specs[k].paths = root;
                specs[k].npaths = 1;
            }
        }
        int rc = sl_router_new(specs, (size_t)n, &r, err, sizeof(err));
        if (rc != SL_ERR_INVALID)
            print_error("case '%s': rc %d\n", c->title, rc);
        assert_int_equal(rc, SL_ERR_INVALID);
        assert_true(r == (sl_router_t *)0x1); /* untouched */
        if (c->want != NULL)
            assert_string_equal(err, c->want);
        else
            assert_true(strstr(err, "spec 0: hosts[1]") == err);
        free(specs);
        free(hdrs);
    }
}

/* ---------------------------------------------------------- upstream path */

enum { F = 0, T = 1, BOTH = 2 };
enum { V0 = 0, V1 = 1, VBOTH = 2 };

struct path_case {
    const char *service_path; /* NULL: none ("/") */
    const char *route_path;   /* NULL: the route matches on host only */
    int strip;
    int handling;
    const char *request;
    const char *want;
};

/* Kong's spec/fixtures/router_path_handling_tests.lua (3.x), then the table of
 * kong-compat.md section 5.5 and a few edge cases of our own. */
static const struct path_case path_cases[] = {
    {"/", "/", BOTH, VBOTH, "/", "/"},
    {"/", "/", BOTH, VBOTH, "/route", "/route"},
    {"/", "/", BOTH, VBOTH, "/route/", "/route/"},
    {"/", "/", BOTH, VBOTH, "/routereq", "/routereq"},
    {"/", "/", BOTH, VBOTH, "/route/req", "/route/req"},
    {"/", "/route", F, VBOTH, "/route", "/route"},
    {"/", "/route", F, VBOTH, "/route/", "/route/"},
    {"/", "/route", F, VBOTH, "/routereq", "/routereq"},
    {"/", "/route", T, VBOTH, "/route", "/"},
    {"/", "/route", T, VBOTH, "/route/", "/"},
    {"/", "/route", T, VBOTH, "/routereq", "/req"},
    {"/", "/route/", F, VBOTH, "/route/", "/route/"},
    {"/", "/route/", F, VBOTH, "/route/req", "/route/req"},
    {"/", "/route/", T, VBOTH, "/route/", "/"},
    {"/", "/route/", T, VBOTH, "/route/req", "/req"},
    {"/srv", "/rou", F, V0, "/roureq", "/srv/roureq"},
    {"/srv", "/rou", F, V1, "/roureq", "/srvroureq"},
    {"/srv", "/rou", T, V0, "/roureq", "/srv/req"},
    {"/srv", "/rou", T, V1, "/roureq", "/srvreq"},
    {"/srv/", "/rou", F, VBOTH, "/rou", "/srv/rou"},
    {"/srv/", "/rou", T, V0, "/rou", "/srv"},
    {"/srv/", "/rou", T, V1, "/rou", "/srv/"},
    {"/service", "/", BOTH, VBOTH, "/", "/service"},
    {"/service", "/", BOTH, V0, "/route", "/service/route"},
    {"/service", "/", BOTH, V1, "/route", "/serviceroute"},
    {"/service", "/", BOTH, V0, "/route/", "/service/route/"},
    {"/service", "/", BOTH, V1, "/route/", "/serviceroute/"},
    {"/service", "/", BOTH, V0, "/routereq", "/service/routereq"},
    {"/service", "/", BOTH, V1, "/routereq", "/serviceroutereq"},
    {"/service", "/", BOTH, V0, "/route/req", "/service/route/req"},
    {"/service", "/", BOTH, V1, "/route/req", "/serviceroute/req"},
    {"/service", "/route", F, V0, "/route", "/service/route"},
    {"/service", "/route", F, V1, "/route", "/serviceroute"},
    {"/service", "/route", F, V0, "/route/", "/service/route/"},
    {"/service", "/route", F, V1, "/route/", "/serviceroute/"},
    {"/service", "/route", F, V0, "/routereq", "/service/routereq"},
    {"/service", "/route", F, V1, "/routereq", "/serviceroutereq"},
    {"/service", "/route", T, VBOTH, "/route", "/service"},
    {"/service", "/route", T, VBOTH, "/route/", "/service/"},
    {"/service", "/route", T, V0, "/routereq", "/service/req"},
    {"/service", "/route", T, V1, "/routereq", "/servicereq"},
    {"/service", "/route/", F, V0, "/route/", "/service/route/"},
    {"/service", "/route/", F, V1, "/route/", "/serviceroute/"},
    {"/service", "/route/", F, V0, "/route/req", "/service/route/req"},
    {"/service", "/route/", F, V1, "/route/req", "/serviceroute/req"},
    {"/service", "/route/", T, V0, "/route/", "/service/"},
    {"/service", "/route/", T, V1, "/route/", "/service"},
    {"/service", "/route/", T, V0, "/route/req", "/service/req"},
    {"/service", "/route/", T, V1, "/route/req", "/servicereq"},
    {"/service/", "/", BOTH, VBOTH, "/route/", "/service/route/"},
    {"/service/", "/", BOTH, VBOTH, "/", "/service/"},
    {"/service/", "/", BOTH, VBOTH, "/route", "/service/route"},
    {"/service/", "/", BOTH, VBOTH, "/routereq", "/service/routereq"},
    {"/service/", "/", BOTH, VBOTH, "/route/req", "/service/route/req"},
    {"/service/", "/route", F, VBOTH, "/route", "/service/route"},
    {"/service/", "/route", F, VBOTH, "/route/", "/service/route/"},
    {"/service/", "/route", F, VBOTH, "/routereq", "/service/routereq"},
    {"/service/", "/route", T, V0, "/route", "/service"},
    {"/service/", "/route", T, V1, "/route", "/service/"},
    {"/service/", "/route", T, VBOTH, "/route/", "/service/"},
    {"/service/", "/route", T, VBOTH, "/routereq", "/service/req"},
    {"/service/", "/route/", F, VBOTH, "/route/", "/service/route/"},
    {"/service/", "/route/", F, VBOTH, "/route/req", "/service/route/req"},
    {"/service/", "/route/", T, VBOTH, "/route/", "/service/"},
    {"/service/", "/route/", T, VBOTH, "/route/req", "/service/req"},
    /* routes matching on host only */
    {"/", NULL, BOTH, VBOTH, "/", "/"},
    {"/", NULL, BOTH, VBOTH, "/route", "/route"},
    {"/", NULL, BOTH, VBOTH, "/route/", "/route/"},
    {"/service", NULL, BOTH, VBOTH, "/", "/service"},
    {"/service", NULL, BOTH, V0, "/route", "/service/route"},
    {"/service", NULL, BOTH, V1, "/route", "/serviceroute"},
    {"/service", NULL, BOTH, V0, "/route/", "/service/route/"},
    {"/service", NULL, BOTH, V1, "/route/", "/serviceroute/"},
    {"/service/", NULL, BOTH, VBOTH, "/", "/service/"},
    {"/service/", NULL, BOTH, VBOTH, "/route", "/service/route"},
    {"/service/", NULL, BOTH, VBOTH, "/route/", "/service/route/"},

    /* kong-compat.md 5.5 */
    {"/s", "/fv0", T, V0, "/fv0req", "/s/req"},
    {"/s", "/fv0", T, V1, "/fv0req", "/sreq"},
    {"/s", "/fv0", F, V0, "/fv0req", "/s/fv0req"},
    {"/s", "/fv0", F, V1, "/fv0req", "/sfv0req"},
    {"/s", "/fv0", T, VBOTH, "/fv0/req", "/s/req"},
    {"/s", "/fv0", F, V0, "/fv0/req", "/s/fv0/req"},
    {"/s", "/fv0", F, V1, "/fv0/req", "/sfv0/req"},
    {"/s/", "/fv0", T, VBOTH, "/fv0req", "/s/req"},
    {NULL, "/api", T, VBOTH, "/api/users", "/users"},
    {NULL, "/api", T, VBOTH, "/api", "/"},
    {"/s", "/api", T, VBOTH, "/api/", "/s/"},

    /* the query string is not part of the path */
    {"/api", "/billing/v1", T, V0, "/billing/v1/invoices/42?status=paid", "/api/invoices/42"},
    {"/api", "/billing/v1", F, V0, "/billing/v1?x=1", "/api/billing/v1"},
    {"/api", "/billing/v1", T, V0, "/billing/v1?", "/api"},
    /* regex: the postfix is what follows the match */
    {"/v2", "~/reports/\\d{4}", T, VBOTH, "/reports/2026/q3", "/v2/q3"},
    {"/v2", "~/reports/\\d{4}", T, V0, "/reports/2026", "/v2"},
    {"/v2", "~/reports/\\d{4}", F, V0, "/reports/2026/q3", "/v2/reports/2026/q3"},
    {"/v2/", "~/r/(?<id>\\d+)", T, VBOTH, "/r/12abc", "/v2/abc"},
    /* leading ./ ../ and lone . .. are stripped from the postfix */
    {"/s", "/foo", T, V0, "/foo./bar", "/s/bar"},
    {"/s", "/foo", T, V0, "/foo../bar", "/s/bar"},
    {"/s", "/foo", T, V0, "/foo.", "/s"},
    {"/s", "/foo", T, V0, "/foo..", "/s"},
    {"/s", "/foo", T, V1, "/foo../bar", "/sbar"},
    {"/s", "/foo", T, V0, "/foo.../bar", "/s/.../bar"},
    /* no service path */
    {NULL, "/ledger", F, V0, "/ledger/entries/9", "/ledger/entries/9"},
    {NULL, "/notify", T, V0, "/notify", "/"},
};

static int run_path_case(const struct path_case *c, bool strip, int handling)
{
    struct route_def def = R("r");
    sl_router_t *r;
    sl_router_match_t m;
    char out[256];
    char path[256];
    const char *q;

    if (c->route_path != NULL)
        def.paths[0] = c->route_path;
    else
        def.hosts[0] = "example.com";
    r = build(&def, 1);

    /* The router sees the path without the query. */
    q = strchr(c->request, '?');
    snprintf(path, sizeof(path), "%.*s", (int)(q ? q - c->request : (long)strlen(c->request)),
             c->request);
    struct test_req tq = RQ("GET", path, .host = "example.com");
    sl_router_req_t req = make_req(&tq);
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);

    sl_str_t full = {c->request, strlen(c->request)};
    int rc = sl_router_upstream_path(c->service_path, full, &m, strip, handling, out, sizeof(out));
    sl_router_free(r);
    if (rc != SL_OK || strcmp(out, c->want) != 0) {
        print_error("service %s route %s strip %d v%d request %s: want %s, got %s\n",
                    c->service_path ? c->service_path : "(none)",
                    c->route_path ? c->route_path : "(none)", strip, handling, c->request, c->want,
                    rc == SL_OK ? out : "(error)");
        return 1;
    }
    return 0;
}

static void test_upstream_path_table(void **state)
{
    (void)state;
    int failures = 0, runs = 0;

    for (size_t i = 0; i < SL_ARRAY_LEN(path_cases); i++) {
        const struct path_case *c = &path_cases[i];
        for (int s = 0; s <= 1; s++) {
            if (c->strip != BOTH && c->strip != s)
                continue;
            for (int v = 0; v <= 1; v++) {
                if (c->handling != VBOTH && c->handling != v)
                    continue;
                failures += run_path_case(c, s == 1, v);
                runs++;
            }
        }
    }
    assert_true(runs > 150);
    assert_int_equal(failures, 0);
}

static void test_upstream_path_edges(void **state)
{
    (void)state;
    char out[8];
    sl_router_match_t m = {.path = SL_STR("/api"), .prefix_len = 4};

    /* Exactly fitting, then one byte short: the output is left untouched. */
    assert_int_equal(sl_router_upstream_path("/abc", SL_STR("/api/xy"), &m, true, 0, out, 8),
                     SL_OK);
    assert_string_equal(out, "/abc/xy");
    memcpy(out, "keep", 5);
    assert_int_equal(sl_router_upstream_path("/abcd", SL_STR("/api/xy"), &m, true, 0, out, 8),
                     SL_ERR_TOO_BIG);
    assert_string_equal(out, "keep");
    assert_int_equal(sl_router_upstream_path("/", SL_STR("/"), &m, true, 0, out, 0),
                     SL_ERR_TOO_BIG);

    /* No match given: treated as a route without paths. */
    assert_int_equal(sl_router_upstream_path(NULL, SL_STR("/x"), NULL, true, 0, out, 8), SL_OK);
    assert_string_equal(out, "/x");
    /* An empty service path is "/". */
    assert_int_equal(sl_router_upstream_path("", SL_STR("/api/q"), &m, true, 0, out, 8), SL_OK);
    assert_string_equal(out, "/q");
}

/* --------------------------------------------------- 10,000 routes vs brute */

#define BIG_N 10000

struct big_table {
    struct route_def defs[BIG_N];
    char strings[BIG_N][4][64];
    pcre2_code *re[BIG_N][MAXN]; /* reference regexes */
};

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(rng_state >> 33);
}

static const char *const big_methods[] = {"GET", "POST", "PUT", "DELETE"};

/* A mixed table: 400 hosts (a few wildcards), 10% host-less routes, paths of
 * several depths, 5% regexes, some methods, headers and https-only routes. */
static void big_table_init(struct big_table *t)
{
    rng_state = 42;
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < BIG_N; i++) {
        struct route_def *d = &t->defs[i];
        char(*s)[64] = t->strings[i];
        uint32_t kind = rnd() % 100;
        uint32_t h = rnd() % 400;

        snprintf(s[0], 64, "r%d", i);
        d->name = s[0];
        if (kind < 10) {
            /* host-less */
        } else if (kind < 13) {
            snprintf(s[1], 64, "*.w%u.example.com", h % 20);
            d->hosts[0] = s[1];
        } else if (kind < 14) {
            snprintf(s[1], 64, "h%u.*", h % 20);
            d->hosts[0] = s[1];
        } else if (kind < 16) {
            snprintf(s[1], 64, "h%u.example.com:8080", h);
            d->hosts[0] = s[1];
        } else {
            snprintf(s[1], 64, "h%u.example.com", h);
            d->hosts[0] = s[1];
        }
        uint32_t pk = rnd() % 100;
        uint32_t a = rnd() % 50, b = rnd() % 8;
        if (pk < 5) {
            snprintf(s[2], 64, "~/svc%u/items/(?<id>\\d+)(/v%u)?$", a, b);
            d->regex_priority = (int64_t)(rnd() % 5) - 2;
        } else if (pk < 35) {
            snprintf(s[2], 64, "/svc%u", a);
        } else if (pk < 75) {
            snprintf(s[2], 64, "/svc%u/items", a);
        } else if (pk < 97) {
            snprintf(s[2], 64, "/svc%u/items/%u", a, b);
        }
        if (s[2][0] != '\0')
            d->paths[0] = s[2];
        if (rnd() % 10 == 0)
            d->methods[0] = big_methods[rnd() % 4];
        if (rnd() % 20 == 0) {
            d->headers[0].name = "X-Env";
            d->headers[0].values[0] = rnd() % 2 ? "prod" : "~*^stag";
        }
        if (rnd() % 25 == 0)
            d->protocols = SL_PROTO_HTTPS;
        if (d->hosts[0] == NULL && d->paths[0] == NULL && d->methods[0] == NULL &&
            d->headers[0].name == NULL) {
            snprintf(s[2], 64, "/svc%u/items/%u/x", a, b);
            d->paths[0] = s[2];
        }
        for (int p = 0; p < MAXN && d->paths[p]; p++) {
            if (d->paths[p][0] != '~')
                continue;
            int ec;
            PCRE2_SIZE eo;
            t->re[i][p] = pcre2_compile((PCRE2_SPTR)d->paths[p] + 1, PCRE2_ZERO_TERMINATED,
                                        PCRE2_ANCHORED, &ec, &eo, NULL);
        }
    }
}

static void big_table_dispose(struct big_table *t)
{
    for (int i = 0; i < BIG_N; i++)
        for (int p = 0; p < MAXN; p++)
            pcre2_code_free(t->re[i][p]);
}

/* The reference: every route, every path, the plainest possible code. */
static bool ref_host(const char *pat, const char *host, unsigned scheme)
{
    char p[128], h[128];
    unsigned pport = 0, hport = scheme == SL_PROTO_HTTPS ? 443 : 80;
    char *c;

    snprintf(p, sizeof(p), "%s", pat);
    snprintf(h, sizeof(h), "%s", host);
    if ((c = strchr(p, ':')) != NULL) {
        *c = '\0';
        pport = (unsigned)atoi(c + 1);
    }
    if ((c = strchr(h, ':')) != NULL) {
        *c = '\0';
        hport = (unsigned)atoi(c + 1);
    }
    if (pport != 0 && pport != hport)
        return false;
    size_t pl = strlen(p), hl = strlen(h);
    if (p[0] == '*') /* ".example.com" suffix with something before */
        return hl > pl - 1 && strcasecmp(h + hl - (pl - 1), p + 1) == 0;
    if (p[pl - 1] == '*') /* "h1." prefix with something after */
        return hl > pl - 1 && strncasecmp(h, p, pl - 1) == 0;
    return strcasecmp(p, h) == 0;
}

static bool ref_headers(const struct route_def *d, const struct test_req *q)
{
    for (int i = 0; i < MAXN && d->headers[i].name; i++) {
        bool found = false;
        for (int j = 0; j < MAXN && q->headers[j].name; j++) {
            if (strcasecmp(q->headers[j].name, d->headers[i].name) != 0)
                continue;
            for (int k = 0; k < MAXN && d->headers[i].values[k]; k++) {
                const char *v = d->headers[i].values[k];
                if (v[0] == '~' && v[1] == '*')
                    found |= strncasecmp(q->headers[j].value, v + 3, strlen(v + 3)) == 0;
                else
                    found |= strcasecmp(q->headers[j].value, v) == 0;
            }
        }
        if (!found)
            return false;
    }
    return true;
}

/* Returns the winning route index (or -1) and whether it is a mismatch. Every
 * big-table route has at most one path. */
static int ref_match(const struct big_table *t, const sl_route_spec_t *specs,
                     const struct test_req *q, bool *mismatch)
{
    pcre2_match_data *md = pcre2_match_data_create(32, NULL);
    int best = -1;
    uint64_t bprio = 0;
    int64_t brp = 0;
    *mismatch = false;
    unsigned scheme = q->scheme ? q->scheme : SL_PROTO_HTTP;

    for (int i = 0; i < BIG_N; i++) {
        const struct route_def *d = &t->defs[i];
        const char *path = d->paths[0];
        unsigned protos = d->protocols ? d->protocols : (SL_PROTO_HTTP | SL_PROTO_HTTPS);
        /* Kong: an https-only route matches http too (to redirect it); an
         * http-only one does not match https. */
        bool redirect = !(protos & scheme) && scheme == SL_PROTO_HTTP && (protos & SL_PROTO_HTTPS);
        if (!(protos & scheme) && !redirect)
            continue;
        int64_t rp = 0;

        if (d->methods[0] && strcmp(d->methods[0], q->method) != 0)
            continue;
        if (d->hosts[0] && !ref_host(d->hosts[0], q->host, scheme))
            continue;
        if (!ref_headers(d, q))
            continue;
        if (path && path[0] == '~') {
            if (pcre2_match(t->re[i][0], (PCRE2_SPTR)q->path, strlen(q->path), 0, 0, md, NULL) < 0)
                continue;
            rp = d->regex_priority;
        } else if (path && strncmp(q->path, path, strlen(path)) != 0) {
            continue;
        }
        uint64_t prio = sl_router_priority(&specs[i], path);
        if (best < 0 || prio > bprio || (prio == bprio && rp > brp)) {
            best = i;
            bprio = prio;
            brp = rp;
            *mismatch = redirect;
        }
    }
    pcre2_match_data_free(md);
    return best;
}

/* A request aimed at route i (with some noise so near misses happen). */
static void aim_request(const struct big_table *t, int i, struct test_req *q, char *host,
                        char *path)
{
    const struct route_def *d = &t->defs[i];
    uint32_t noise = rnd() % 8;

    memset(q, 0, sizeof(*q));
    q->method = d->methods[0] ? d->methods[0] : big_methods[rnd() % 4];
    q->scheme = rnd() % 3 == 0 ? SL_PROTO_HTTPS : SL_PROTO_HTTP;
    if (d->hosts[0] == NULL)
        snprintf(host, 64, "h%u.example.com", rnd() % 400);
    else if (d->hosts[0][0] == '*')
        snprintf(host, 64, "x%u%s", rnd() % 3, d->hosts[0] + 1);
    else if (strchr(d->hosts[0], '*'))
        snprintf(host, 64, "%.*sorg", (int)strlen(d->hosts[0]) - 1, d->hosts[0]);
    else
        snprintf(host, 64, "%s", d->hosts[0]);
    if (noise == 0)
        host[0] = 'z';
    if (noise == 1 && strchr(host, ':') == NULL)
        strcat(host, ":8080");
    q->host = host;

    const char *p = d->paths[0] ? d->paths[0] : "/svc1/items/3";
    if (p[0] == '~') {
        unsigned a = 0;
        sscanf(p, "~/svc%u", &a);
        snprintf(path, 128, "/svc%u/items/%u%s", a, rnd() % 1000, noise == 2 ? "/v3" : "");
    } else {
        snprintf(path, 128, "%s%s", p, noise == 3 ? "" : (noise == 4 ? "x" : "/more/1"));
    }
    if (noise == 5)
        path[1] = 'X';
    q->path = path;
    if (d->headers[0].name != NULL && noise != 6) {
        q->headers[0].name = "x-env";
        q->headers[0].value = d->headers[0].values[0][0] == '~' ? "Staging" : "PROD";
    }
}

static void test_big_table(void **state)
{
    (void)state;
    struct big_table *t = malloc(sizeof(*t));
    sl_route_header_spec_t *hdrs;
    sl_route_spec_t *specs;
    sl_router_t *r = NULL;
    char err[256];
    int failures = 0, matched = 0, mism = 0;

    big_table_init(t);
    specs = make_specs(t->defs, BIG_N, &hdrs);
    assert_int_equal(sl_router_new(specs, BIG_N, &r, err, sizeof(err)), SL_OK);

    for (int k = 0; k < 600; k++) {
        struct test_req q;
        char host[64], path[128];
        sl_router_match_t m;
        bool ref_mism;

        aim_request(t, (int)(rnd() % BIG_N), &q, host, path);
        sl_router_req_t req = make_req(&q);
        int rc = sl_router_match(r, &req, &m);
        int want = ref_match(t, specs, &q, &ref_mism);
        const char *got = rc == SL_OK ? m.data : NULL;
        const char *wname = want >= 0 ? t->defs[want].name : NULL;

        if ((got == NULL) != (wname == NULL) || (got && strcmp(got, wname) != 0) ||
            (got && m.protocol_mismatch != ref_mism)) {
            print_error("%s %s%s (%s): want %s%s, got %s%s\n", q.method, host, path,
                        q.scheme == SL_PROTO_HTTPS ? "https" : "http", wname ? wname : "404",
                        ref_mism ? " (mismatch)" : "", got ? got : "404",
                        got && m.protocol_mismatch ? " (mismatch)" : "");
            failures++;
        }
        matched += got != NULL;
        mism += got != NULL && m.protocol_mismatch;
    }
    /* The table exercises both outcomes. */
    assert_true(matched > 300);
    assert_true(matched < 600);
    assert_int_equal(failures, 0);

    /* A route added last, more specific than everything, still wins. */
    sl_router_free(r);
    struct route_def *last = &t->defs[BIG_N - 1];
    memset(last, 0, sizeof(*last));
    last->name = "winner";
    last->hosts[0] = "h7.example.com";
    last->paths[0] = "~/svc3/items/\\d+";
    last->methods[0] = "GET";
    last->headers[0].name = "x-special";
    last->headers[0].values[0] = "1";
    last->headers[1].name = "x-other";
    last->headers[1].values[0] = "2";
    free(specs);
    free(hdrs);
    specs = make_specs(t->defs, BIG_N, &hdrs);
    assert_int_equal(sl_router_new(specs, BIG_N, &r, err, sizeof(err)), SL_OK);
    struct test_req q = RQ("GET", "/svc3/items/12", .host = "h7.example.com",
                           .headers = {{"x-special", "1"}, {"x-other", "2"}});
    sl_router_req_t req = make_req(&q);
    sl_router_match_t m;
    assert_int_equal(sl_router_match(r, &req, &m), SL_OK);
    assert_string_equal(m.data, "winner");

    sl_router_free(r);
    free(specs);
    free(hdrs);
    big_table_dispose(t);
    free(t);
}

/* ------------------------------------------------------------ concurrency */

static const struct route_def thread_defs[] = {
    {"users", .paths = {"~/users/(?<id>\\d+)$"}},
    {"orders", .hosts = {"*.shop.test"}, .paths = {"~/orders/(\\w+)"}},
    {"static", .paths = {"/static"}},
};

struct thread_arg {
    const sl_router_t *r;
    int id;
    int errors;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;

    for (int i = 0; i < 5000; i++) {
        char path[64], host[64];
        int which = (i + a->id) % 3;
        if (which == 0)
            snprintf(path, sizeof(path), "/users/%d", i * 7 + a->id);
        else if (which == 1)
            snprintf(path, sizeof(path), "/orders/o%dt%d", i, a->id);
        else
            snprintf(path, sizeof(path), "/static/%d.css", i);
        snprintf(host, sizeof(host), "t%d.shop.test", a->id);
        struct test_req q = RQ("GET", path, .host = host);
        sl_router_req_t req = make_req(&q);
        sl_router_match_t m;
        if (sl_router_match(a->r, &req, &m) != SL_OK ||
            strcmp(m.data, thread_defs[which].name) != 0) {
            a->errors++;
            continue;
        }
        /* The capture must be this request's, not another thread's. */
        if (which != 2 && (m.ncaptures == 0 || m.captures[0].value.p < path ||
                           m.captures[0].value.p + m.captures[0].value.len > path + strlen(path)))
            a->errors++;
    }
    return NULL;
}

static void test_concurrent_match(void **state)
{
    (void)state;
    sl_router_t *r = build(thread_defs, SL_ARRAY_LEN(thread_defs));
    pthread_t th[4];
    struct thread_arg args[4];

    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){r, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].errors, 0);
    }
    sl_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),         cmocka_unit_test(test_empty_router),
        cmocka_unit_test(test_deep_nesting),        cmocka_unit_test(test_captures),
        cmocka_unit_test(test_priority_values),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_upstream_path_table), cmocka_unit_test(test_upstream_path_edges),
        cmocka_unit_test(test_big_table),           cmocka_unit_test(test_concurrent_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
