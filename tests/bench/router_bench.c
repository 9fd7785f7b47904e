/*
 * router_bench: what a match costs with 1 route and with 10,000.
 *
 * Not a test: it prints figures. The 10,000-route table mixes 500 exact
 * hosts (some with a port), leftmost and rightmost wildcard hosts, 10%
 * host-less routes, prefixes of several depths, 5% regex paths, and some
 * methods and headers. Each request kind is timed against the full table and
 * against a router holding only the route it should hit, so the ratio is the
 * price of the table's size.
 *
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Icommon -Idataplane tests/bench/router_bench.c \
 *      dataplane/router.c common/util.c -lpcre2-8 -lpthread -o /tmp/router_bench
 */
#include "router.h"

#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define NROUTES 10000
#define ITERS 200000

struct def {
    char name[16];
    char host[48];
    char path[64];
    const char *method;
    bool header;
};

static struct def defs[NROUTES];
static const char *hosts_of[NROUTES][1];
static const char *paths_of[NROUTES][1];
static const char *methods_of[NROUTES][1];
static const char *env_values[] = {"prod"};
static const sl_route_header_spec_t env_header = {"x-env", env_values, 1};

static uint64_t rng = 7;

static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(rng >> 33);
}

static void make_table(void)
{
    static const char *methods[] = {"GET", "POST", "PUT"};

    for (int i = 0; i < NROUTES; i++) {
        struct def *d = &defs[i];
        uint32_t k = rnd() % 100, h = rnd() % 500, a = rnd() % 40, b = rnd() % 16;

        snprintf(d->name, sizeof(d->name), "r%d", i);
        if (k < 10)
            d->host[0] = '\0';
        else if (k < 13)
            snprintf(d->host, sizeof(d->host), "*.w%u.example.com", h % 50);
        else if (k < 14)
            snprintf(d->host, sizeof(d->host), "app%u.*", h % 50);
        else if (k < 16)
            snprintf(d->host, sizeof(d->host), "h%u.example.com:8443", h);
        else
            snprintf(d->host, sizeof(d->host), "h%u.example.com", h);

        uint32_t p = rnd() % 100;
        if (p < 5)
            snprintf(d->path, sizeof(d->path), "~/api/v%u/users/(?<id>\\d+)/orders/%u$", a, b);
        else if (p < 30)
            snprintf(d->path, sizeof(d->path), "/api/v%u", a);
        else if (p < 70)
            snprintf(d->path, sizeof(d->path), "/api/v%u/users/%u", a, b);
        else
            snprintf(d->path, sizeof(d->path), "/api/v%u/users/%u/orders/%u", a, b, rnd() % 8);
        d->method = rnd() % 10 == 0 ? methods[rnd() % 3] : NULL;
        d->header = rnd() % 20 == 0;
    }
}

static void spec_of(int i, sl_route_spec_t *s)
{
    const struct def *d = &defs[i];

    memset(s, 0, sizeof(*s));
    if (d->host[0] != '\0') {
        hosts_of[i][0] = d->host;
        s->hosts = hosts_of[i];
        s->nhosts = 1;
    }
    paths_of[i][0] = d->path;
    s->paths = paths_of[i];
    s->npaths = 1;
    if (d->method != NULL) {
        methods_of[i][0] = d->method;
        s->methods = methods_of[i];
        s->nmethods = 1;
    }
    if (d->header) {
        s->headers = &env_header;
        s->nheaders = 1;
    }
    s->data = (void *)d->name;
}

static size_t get_header(void *ud, const char *name, sl_str_t *out, size_t max)
{
    (void)ud;
    if (max > 0 && strcmp(name, "x-env") == 0) {
        out[0] = SL_STR("prod");
        return 1;
    }
    return 0;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Best of nine runs, in ns per match: the minimum is the least disturbed. */
static double time_match(const sl_router_t *r, const sl_router_req_t *req)
{
    double best = 1e30;
    sl_router_match_t m;
    volatile int sink = 0;

    for (int run = 0; run < 9; run++) {
        double t0 = now_ns();
        for (int i = 0; i < ITERS; i++)
            sink += sl_router_match(r, req, &m);
        double dt = (now_ns() - t0) / ITERS;
        if (dt < best)
            best = dt;
    }
    (void)sink;
    return best;
}

/* A request that reaches route i of the table. */
static void request_for(int i, char *host, char *path, sl_router_req_t *req)
{
    const struct def *d = &defs[i];
    unsigned a = 0, b = 0;

    if (d->host[0] == '\0')
        snprintf(host, 64, "nohost.example.net");
    else if (d->host[0] == '*')
        snprintf(host, 64, "x%s", d->host + 1);
    else if (strstr(d->host, ".*") != NULL)
        snprintf(host, 64, "%.*sio", (int)strlen(d->host) - 1, d->host);
    else
        snprintf(host, 64, "%s", d->host);
    if (d->path[0] == '~') {
        sscanf(d->path, "~/api/v%u/users/(?<id>\\d+)/orders/%u", &a, &b);
        snprintf(path, 128, "/api/v%u/users/12345/orders/%u", a, b);
    } else {
        snprintf(path, 128, "%s/details", d->path);
    }
    req->method = d->method ? (sl_str_t){d->method, strlen(d->method)} : SL_STR("GET");
    req->path = (sl_str_t){path, strlen(path)};
    req->host = (sl_str_t){host, strlen(host)};
    req->scheme = SL_PROTO_HTTPS;
    if (strstr(host, ":8443") == NULL && strchr(d->host, ':') != NULL)
        req->scheme = SL_PROTO_HTTP;
    req->get_header = get_header;
    req->ud = NULL;
}

static int find_kind(bool (*pred)(const struct def *))
{
    for (int i = NROUTES - 1; i >= 0; i--)
        if (pred(&defs[i]))
            return i;
    return 0;
}

static bool is_exact_prefix(const struct def *d)
{
    return d->host[0] == 'h' && !strchr(d->host, ':') && d->path[0] == '/' && !d->method &&
           !d->header;
}
static bool is_regex(const struct def *d)
{
    return d->host[0] == 'h' && d->path[0] == '~' && !d->method && !d->header;
}
static bool is_left_wild(const struct def *d)
{
    return d->host[0] == '*' && d->path[0] == '/' && !d->method && !d->header;
}
static bool is_right_wild(const struct def *d)
{
    return d->host[0] == 'a' && !d->method && !d->header;
}
static bool is_hostless(const struct def *d)
{
    return d->host[0] == '\0' && d->path[0] == '/' && !d->method && !d->header;
}
static bool is_with_port(const struct def *d)
{
    return strchr(d->host, ':') != NULL && !d->method && !d->header;
}

int main(void)
{
    static sl_route_spec_t specs[NROUTES];
    struct {
        const char *label;
        bool (*pred)(const struct def *);
    } kinds[] = {
        {"exact host + prefix", is_exact_prefix},
        {"exact host + regex", is_regex},
        {"*.wildcard host", is_left_wild},
        {"wildcard.* host", is_right_wild},
        {"host:port", is_with_port},
        {"no host, prefix", is_hostless},
    };
    sl_router_t *big = NULL;
    char err[256];
    double sum1 = 0, sumn = 0;

    make_table();
    for (int i = 0; i < NROUTES; i++)
        spec_of(i, &specs[i]);
    double t0 = now_ns();
    if (sl_router_new(specs, NROUTES, &big, err, sizeof(err)) != SL_OK) {
        fprintf(stderr, "router_bench: %s\n", err);
        return 1;
    }
    printf("router_bench: built %d routes in %.1f ms\n", NROUTES, (now_ns() - t0) / 1e6);
    printf("%-22s %-14s %10s %12s %7s\n", "request", "winner", "1 route", "10000 routes", "ratio");

    for (size_t k = 0; k < SL_ARRAY_LEN(kinds); k++) {
        int i = find_kind(kinds[k].pred);
        char host[64], path[128];
        sl_router_req_t req;
        sl_router_match_t m;
        sl_router_t *one = NULL;

        request_for(i, host, path, &req);
        if (sl_router_match(big, &req, &m) != SL_OK) {
            fprintf(stderr, "router_bench: %s: no match for %s%s\n", kinds[k].label, host, path);
            return 1;
        }
        const char *winner = m.data;
        if (sl_router_new(&specs[i], 1, &one, err, sizeof(err)) != SL_OK)
            return 1;
        double t1 = time_match(one, &req), tn = time_match(big, &req);
        printf("%-22s %-14s %7.0f ns %9.0f ns %6.2fx\n", kinds[k].label, winner, t1, tn, tn / t1);
        sum1 += t1;
        sumn += tn;
        sl_router_free(one);
    }

    /* A request nothing matches (404). */
    {
        sl_router_req_t req = {SL_STR("GET"),
                               SL_STR("/nothing/here"),
                               SL_STR("nobody.test"),
                               SL_PROTO_HTTP,
                               get_header,
                               NULL};
        sl_router_t *one = NULL;
        if (sl_router_new(&specs[0], 1, &one, err, sizeof(err)) != SL_OK)
            return 1;
        double t1 = time_match(one, &req), tn = time_match(big, &req);
        printf("%-22s %-14s %7.0f ns %9.0f ns %6.2fx\n", "404", "-", t1, tn, tn / t1);
        sl_router_free(one);
    }
    printf("%-22s %-14s %7.0f ns %9.0f ns %6.2fx\n", "mean (matches)", "",
           sum1 / SL_ARRAY_LEN(kinds), sumn / SL_ARRAY_LEN(kinds), sumn / sum1);
    sl_router_free(big);
    return 0;
}
