/*
 * libFuzzer target: sl_gen_build_hashed, and behind it the resolution of
 * services, routes, upstreams and targets into a generation and the router
 * built from the routes. In hybrid mode the document comes from the control
 * plane over the network and is not schema-validated first, so any JSON
 * object must either build a generation that is safe to serve or be rejected
 * with messages.
 *
 * The input is parsed as JSON (with \u0000 allowed, inputs over 1 MiB are
 * skipped); objects are built. Invariants checked (abort on violation, so
 * libFuzzer and the gcc replay both report it; leaks are AddressSanitizer's
 * to report):
 *   - the return code is SL_OK or SL_ERR_INVALID;
 *   - on SL_ERR_INVALID: at least one non-empty message and *out untouched;
 *   - on SL_OK: no message, and a generation holding one reference, the given
 *     version and hash, the document and a router;
 *   - nservices and nupstreams are the sizes of their arrays, nroutes is at
 *     most that of "routes";
 *   - every route's service is NULL or inside services[0..nservices), its
 *     redirect code one of Kong's (426, 301, 302, 307, 308), path_handling 0
 *     or 1 and its protocols only http/https;
 *   - every service's upstream is NULL or inside upstreams[0..nupstreams); it
 *     has a non-empty host, a path that is NULL or starts with '/', non-zero
 *     timeouts, non-negative retries, and its host, path and Host header hold
 *     no byte that would split or corrupt the request head (CTL, space);
 *   - every upstream's targets have a non-empty host and a weight > 0, its
 *     wheel is empty exactly when it has no targets and only names targets,
 *     and when the weights divided by their GCD fit the wheel's 65536 slots,
 *     it names each target exactly that many times;
 *   - a request made of each route's first method, host, path and header
 *     values routes without error to a route of the generation, with
 *     captures inside the request path, and its upstream path is computed
 *     (or is too long); when the route has a plain host and path and no
 *     header conditions, the request is sure to match it, so some route
 *     (it or one that outranks it) must be found.
 */
#include "fuzz_check.h"
#include "gen.h"
#include "log.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A value *out can never hold, to see that errors leave it untouched. */
#define SENTINEL ((sl_gen_t *)(uintptr_t)0x5eed)

#define MAX_INPUT (1u << 20)
#define HASH "0123456789abcdef0123456789abcdef"
#define WHEEL_SLOTS 65536 /* the most a round-robin wheel holds */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void dump_errors(const sl_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "  error: %s\n", errs->items[i]);
}

/* True when s could go into a request head as is: no CTL, space or DEL. */
static bool head_safe(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

static bool is_route(const sl_gen_t *g, const void *p)
{
    return p >= (const void *)g->routes && p < (const void *)(g->routes + g->nroutes);
}

static unsigned gcd(unsigned a, unsigned b)
{
    while (b) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static void check_upstream(const sl_upstream_t *u)
{
    unsigned g = 0;
    size_t total = 0;

    CHECK(u->targets != NULL);
    for (size_t t = 0; t < u->ntargets; t++) {
        CHECK(u->targets[t].host != NULL && u->targets[t].host[0] != '\0');
        CHECK(u->targets[t].weight > 0);
        g = gcd(g, u->targets[t].weight);
    }
    CHECK((u->wheel_len == 0) == (u->ntargets == 0));
    size_t *seen = calloc(u->ntargets ? u->ntargets : 1, sizeof(size_t));
    CHECK(seen != NULL);
    for (size_t k = 0; k < u->wheel_len; k++) {
        CHECK(u->wheel[k] < u->ntargets);
        seen[u->wheel[k]]++;
    }
    for (size_t t = 0; t < u->ntargets; t++)
        total += u->targets[t].weight / g;
    if (total <= WHEEL_SLOTS) {
        CHECK(u->wheel_len == total);
        for (size_t t = 0; t < u->ntargets; t++)
            CHECK(seen[t] == u->targets[t].weight / g);
    }
    free(seen);
}

static void check_service(const sl_gen_t *g, const sl_service_t *s)
{
    CHECK(s->label != NULL);
    CHECK(s->host != NULL && s->host[0] != '\0' && head_safe(s->host));
    CHECK(s->path == NULL || (s->path[0] == '/' && head_safe(s->path)));
    CHECK(s->host_header != NULL && s->host_header[0] != '\0' && head_safe(s->host_header));
    CHECK(s->upstream == NULL ||
          (s->upstream >= g->upstreams && s->upstream < g->upstreams + g->nupstreams));
    CHECK(s->connect_timeout_ms > 0 && s->read_timeout_ms > 0 && s->write_timeout_ms > 0);
    CHECK(s->retries >= 0);
}

static void check_route(const sl_gen_t *g, const sl_route_t *r)
{
    int code = r->https_redirect_status_code;

    CHECK(r->label != NULL);
    CHECK(r->service == NULL ||
          (r->service >= g->services && r->service < g->services + g->nservices));
    CHECK(code == 426 || code == 301 || code == 302 || code == 307 || code == 308);
    CHECK(r->path_handling == 0 || r->path_handling == 1);
    CHECK((r->protocols & ~(unsigned)(SL_PROTO_HTTP | SL_PROTO_HTTPS)) == 0);
}

/* The first element of a route's array field when it is a string, else NULL. */
static const char *first_string(const json_t *jr, const char *key)
{
    const json_t *a = json_object_get(jr, key);
    return json_is_array(a) ? json_string_value(json_array_get(a, 0)) : NULL;
}

static bool has_http(const json_t *protos)
{
    for (size_t i = 0; i < json_array_size(protos); i++) {
        const char *p = json_string_value(json_array_get(protos, i));
        if (p && (strcmp(p, "http") == 0 || strcmp(p, "https") == 0))
            return true;
    }
    return false;
}

/* Header lookup for a request built from a route: the first value the route
 * lists for the header (without its "~*" when a regex). */
static size_t route_header(void *ud, const char *name, sl_str_t *out, size_t max)
{
    const json_t *hdrs = ud;
    const char *key;
    const json_t *vals;

    json_object_foreach((json_t *)hdrs, key, vals)
    {
        const char *v = json_string_value(json_array_get(vals, 0));
        if (strcasecmp(key, name) != 0 || v == NULL || max == 0)
            continue;
        if (v[0] == '~' && v[1] == '*')
            v += 2;
        out[0] = (sl_str_t){v, strlen(v)};
        return 1;
    }
    return 0;
}

/* Routes a request made of a route's first method, host, path (a regex's
 * text as the path) and header values, and checks the match. A route whose
 * conditions that request surely meets (a plain host and path, no headers)
 * must be found, or one that outranks it. */
static void check_match(const sl_gen_t *g, const json_t *jr)
{
    const char *host = first_string(jr, "hosts");
    const char *path = first_string(jr, "paths");
    const char *method = first_string(jr, "methods");
    const json_t *protos = json_object_get(jr, "protocols");
    const json_t *hdrs = json_object_get(jr, "headers");
    sl_router_match_t m;
    char upath[1024];

    if (json_array_size(protos) > 0 && !has_http(protos))
        return; /* a route for other protocols is not in the router */
    bool sure = host && path && !strchr(host, '*') && path[0] == '/' && !json_object_size(hdrs);
    if (host == NULL || strchr(host, '*'))
        host = "";
    if (path == NULL)
        path = "/";
    else if (path[0] == '~')
        path++;
    if (method == NULL)
        method = "GET";
    sl_router_req_t req = {
        .method = {method, strlen(method)},
        .path = {path, strlen(path)},
        .host = {host, strlen(host)},
        .scheme = SL_PROTO_HTTP,
        .get_header = json_is_object(hdrs) ? route_header : NULL,
        .ud = (void *)hdrs,
    };
    int rc = sl_router_match(g->router, &req, &m);
    CHECK(rc == SL_OK || rc == SL_DECLINED);
    CHECK(rc == SL_OK || !sure);
    if (rc != SL_OK)
        return;
    CHECK(is_route(g, m.data));
    CHECK(m.prefix_len <= req.path.len);
    CHECK(m.ncaptures <= SL_ROUTER_MAX_CAPTURES);
    for (size_t i = 0; i < m.ncaptures; i++) {
        sl_str_t v = m.captures[i].value;
        CHECK(v.p >= req.path.p && v.len <= req.path.len - (size_t)(v.p - req.path.p));
    }
    const sl_route_t *r = m.data;
    const char *spath = r->service ? r->service->path : NULL;
    rc = sl_router_upstream_path(spath, req.path, &m, r->strip_path, r->path_handling, upath,
                                 sizeof(upath));
    CHECK(rc == SL_OK || rc == SL_ERR_TOO_BIG);
    if (rc == SL_OK)
        CHECK(upath[0] == '/' && strlen(upath) < sizeof(upath));
}

static void check_generation(const sl_gen_t *g, json_t *doc)
{
    const json_t *routes = json_object_get(doc, "routes");

    CHECK(atomic_load(&g->refs) == 1);
    CHECK(g->version == 1);
    CHECK(strcmp(g->hash, HASH) == 0);
    CHECK(g->doc == doc);
    CHECK(g->router != NULL);
    CHECK(g->nservices == json_array_size(json_object_get(doc, "services")));
    CHECK(g->nupstreams == json_array_size(json_object_get(doc, "upstreams")));
    CHECK(g->nroutes <= json_array_size(routes));
    for (size_t i = 0; i < g->nupstreams; i++)
        check_upstream(&g->upstreams[i]);
    for (size_t i = 0; i < g->nservices; i++)
        check_service(g, &g->services[i]);
    for (size_t i = 0; i < g->nroutes; i++)
        check_route(g, &g->routes[i]);
    for (size_t i = 0; i < json_array_size(routes); i++)
        check_match(g, json_array_get(routes, i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    sl_log_level = SL_LOG_CRIT; /* skipped routes warn; that is not news here */
    json_t *doc = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }

    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_gen_t *g = SENTINEL;
    int rc = sl_gen_build_hashed(doc, 1, HASH, &g, &errs);
    CHECK(rc == SL_OK || rc == SL_ERR_INVALID);
    if (rc == SL_OK) {
        if (errs.n != 0)
            dump_errors(&errs);
        CHECK(errs.n == 0);
        CHECK(g != NULL && g != SENTINEL);
        check_generation(g, doc);
        sl_gen_unref(g);
    } else {
        CHECK(g == SENTINEL);
        CHECK(errs.n >= 1);
        for (size_t i = 0; i < errs.n; i++)
            CHECK(errs.items[i] != NULL && errs.items[i][0] != '\0');
    }
    sl_errors_dispose(&errs);
    json_decref(doc);
    return 0;
}
