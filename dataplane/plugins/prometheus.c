/*
 * prometheus.c: the prometheus plugin (Kong 3.10's
 * kong/plugins/prometheus, handler.lua and exporter.lua), PRIORITY 13,
 * log phase; its metrics are rendered on the status listener's /metrics
 * next to the sluice_* ones (status.c calls sl_prometheus_render).
 *
 * Per request (log phase), for requests that have a service, as Kong:
 *   kong_http_requests_total{service,route,code,source,workspace,consumer}
 *       with config.status_code_metrics
 *   kong_kong_latency_ms, kong_upstream_latency_ms, kong_request_latency_ms
 *       {service,route,workspace} histograms with Kong's buckets, with
 *       config.latency_metrics (upstream latency only when a response
 *       came from upstream)
 *   kong_bandwidth_bytes{service,route,direction,workspace,consumer}
 *       with config.bandwidth_metrics
 * The service label is the service's name (or host), the route's its name
 * (or id), source "service" or "kong", workspace "default", and consumer
 * the consumer's username with config.per_consumer (else empty). These
 * flags are false by default in Kong 3.x: a bare prometheus plugin counts
 * nothing per request.
 *
 * Per scrape, whenever the configuration has an enabled prometheus plugin:
 * kong_nginx_connections_total{node_id,subsystem,state} (accepted, handled,
 * total, active), kong_nginx_requests_total, kong_datastore_reachable
 * (always 1: a DB-less node has no database to lose), kong_node_info,
 * kong_nginx_metric_errors_total, and with some instance's
 * config.upstream_health_metrics kong_upstream_target_health (every target
 * "healthchecks_off": this data plane runs no health checks). With no
 * prometheus plugin configured no kong_* metric is rendered. node_id is
 * drawn at random once per process.
 *
 * Threads. Each worker thread writes only its own series tables (allocated
 * on its first request, registered once under a mutex), with relaxed
 * atomics and no locks; a slot is published with a release store after its
 * label key is written, as in metrics.c. The status listener's thread reads
 * every worker's tables at scrape time and merges series with equal labels.
 * Series live as long as the process, as in Kong; a table that is full
 * counts what it cannot label in kong_metrics_dropped_total (a sluice
 * addition, rendered only when non-zero).
 */
#include "dp_conf.h"
#include "log.h"
#include "metrics.h"
#include "pdk.h"
#include "plugin.h"
#include "strbuf.h"
#include "util.h"
#include "uuid.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kong 3.10's exporter.lua buckets (milliseconds). */
static const double kong_buckets[] = {1,  2,   5,   7,   10,  15,   20,   30,  50,
                                      75, 100, 200, 500, 750, 1000, 3000, 6000};
static const double upstream_buckets[] = {25,   50,   80,   100,   250,   400,  700,
                                          1000, 2000, 5000, 10000, 30000, 60000};
#define NKB SL_ARRAY_LEN(kong_buckets)
#define NUB SL_ARRAY_LEN(upstream_buckets)

struct prometheus {
    bool per_consumer, status_code_metrics, latency_metrics, bandwidth_metrics;
    bool upstream_health_metrics;
};

/* ------------------------------------------------------------------------ */
/* Series tables                                                             */

/* The values of one series of each family. A histogram is its buckets
 * (not cumulative; the last is +Inf), its count and its sum. */
enum { V_REQUESTS = 1 };
enum { V_INGRESS, V_EGRESS, V_BANDWIDTH };
enum {
    V_KONG = 0,
    V_KONG_COUNT = NKB + 1,
    V_KONG_SUM,
    V_UP,
    V_UP_COUNT = V_UP + NUB + 1,
    V_UP_SUM,
    V_REQ,
    V_REQ_COUNT = V_REQ + NUB + 1,
    V_REQ_SUM,
    V_LATENCY
};

enum family { F_REQUESTS, F_BANDWIDTH, F_LATENCY, NFAMILIES };
static const size_t family_values[NFAMILIES] = {V_REQUESTS, V_BANDWIDTH, V_LATENCY};

#define SLOTS 4096
#define PROBES 32
#define SEP '\x1f' /* between label values in a key */

struct slot {
    atomic_int used; /* 0 empty, 1 published */
    uint64_t hash;
    char *key; /* owned; label values joined by SEP */
    atomic_uint_fast64_t v[];
};

struct table {
    size_t slot_size;
    unsigned char *slots; /* SLOTS * slot_size bytes */
};

struct worker_tables {
    struct worker_tables *next;
    struct table t[NFAMILIES];
    atomic_uint_fast64_t dropped;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct worker_tables *registry; /* every worker's tables, for scrapes */
static _Thread_local struct worker_tables *mine;

static struct slot *slot_at(const struct table *t, size_t i)
{
    return (struct slot *)(t->slots + i * t->slot_size);
}

static struct worker_tables *my_tables(void)
{
    if (mine)
        return mine;
    struct worker_tables *w = sl_xcalloc(1, sizeof(*w));
    for (int f = 0; f < NFAMILIES; f++) {
        w->t[f].slot_size = sizeof(struct slot) + family_values[f] * sizeof(atomic_uint_fast64_t);
        w->t[f].slot_size = (w->t[f].slot_size + 7) & ~(size_t)7;
        w->t[f].slots = sl_xcalloc(SLOTS, w->t[f].slot_size);
    }
    pthread_mutex_lock(&registry_mu);
    w->next = registry;
    registry = w;
    pthread_mutex_unlock(&registry_mu);
    mine = w;
    return w;
}

/* The series of key in this worker's table, created when new; NULL (and
 * counted) when the table has no room for it. Owning worker only. */
static struct slot *series(struct worker_tables *w, enum family f, const char *key, size_t len)
{
    struct table *t = &w->t[f];
    uint64_t h = sl_hash(key, len);
    for (unsigned probe = 0; probe < PROBES; probe++) {
        struct slot *s = slot_at(t, (h + probe) % SLOTS);
        if (!atomic_load_explicit(&s->used, memory_order_relaxed)) {
            s->hash = h;
            s->key = sl_xstrndup(key, len);
            atomic_store_explicit(&s->used, 1, memory_order_release);
            return s;
        }
        if (s->hash == h && !strcmp(s->key, key))
            return s;
    }
    atomic_fetch_add_explicit(&w->dropped, 1, memory_order_relaxed);
    return NULL;
}

static void add(struct slot *s, size_t i, uint64_t n)
{
    atomic_fetch_add_explicit(&s->v[i], n, memory_order_relaxed);
}

/* Counts one observation of v (ms) in the histogram starting at value base. */
static void observe(struct slot *s, size_t base, const double *bounds, size_t nb, int64_t v)
{
    size_t b = 0;
    while (b < nb && (double)v > bounds[b])
        b++;
    add(s, base + b, 1);
    add(s, base + nb + 1, 1);
    add(s, base + nb + 2, (uint64_t)v);
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    (void)instance_id;
    if (!json_is_object(config)) {
        snprintf(err, errlen, "config: expected an object");
        return NULL;
    }
    static const char *const flags[] = {
        "per_consumer",      "status_code_metrics",     "latency_metrics",
        "bandwidth_metrics", "upstream_health_metrics", "ai_metrics",
        "wasm_metrics"};
    bool val[SL_ARRAY_LEN(flags)];
    for (size_t i = 0; i < SL_ARRAY_LEN(flags); i++) {
        const json_t *v = json_object_get(config, flags[i]);
        if (v && !json_is_null(v) && !json_is_boolean(v)) {
            snprintf(err, errlen, "config.%s: expected a boolean", flags[i]);
            return NULL;
        }
        val[i] = json_is_true(v);
    }
    struct prometheus *c = sl_xcalloc(1, sizeof(*c));
    c->per_consumer = val[0];
    c->status_code_metrics = val[1];
    c->latency_metrics = val[2];
    c->bandwidth_metrics = val[3];
    c->upstream_health_metrics = val[4];
    return c;
}

static void dispose(void *conf)
{
    free(conf);
}

/* ------------------------------------------------------------------------ */
/* Log                                                                       */

/* Appends a label value to a key; SEP inside a value becomes '_'. */
static void key_part(sl_sb_t *b, const char *v)
{
    size_t start = b->len;
    sl_sb_adds(b, v ? v : "");
    for (size_t i = start; i < b->len; i++)
        if (b->p[i] == SEP)
            b->p[i] = '_';
}

static int64_t int_at(const json_t *o, const char *a, const char *b, int64_t def)
{
    const json_t *v = json_object_get(json_object_get(o, a), b);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

static int on_log(sl_pdk_t *p, void *conf)
{
    const struct prometheus *c = conf;
    const sl_service_t *svc = sl_pdk_router_get_service(p);
    if (!svc)
        return SL_PLUGIN_CONTINUE; /* Kong records nothing for a request without a service */
    if (!c->status_code_metrics && !c->latency_metrics && !c->bandwidth_metrics)
        return SL_PLUGIN_CONTINUE;
    const sl_route_t *route = sl_pdk_router_get_route(p);
    const char *service_name = svc->name ? svc->name : svc->host;
    const char *route_name = route ? (route->name ? route->name : route->id) : "";
    const sl_consumer_t *consumer = c->per_consumer ? sl_pdk_client_get_consumer(p) : NULL;
    const char *consumer_name = consumer && consumer->username ? consumer->username : "";
    struct worker_tables *w = my_tables();

    char store[512];
    sl_sb_t k;
    sl_sb_init(&k, store, sizeof(store));
    key_part(&k, service_name);
    sl_sb_add(&k, (char[]){SEP}, 1);
    key_part(&k, route_name);
    size_t sr_len = k.len; /* "service SEP route" */

    if (c->status_code_metrics) {
        char code[16];
        snprintf(code, sizeof(code), "%c%d%c%s%c", SEP, sl_pdk_response_get_status(p), SEP,
                 !strcmp(sl_pdk_response_get_source(p), "service") ? "service" : "kong", SEP);
        k.len = sr_len;
        sl_sb_adds(&k, code);
        key_part(&k, consumer_name);
        sl_sb_add(&k, "", 1);
        struct slot *s = series(w, F_REQUESTS, k.p, k.len - 1);
        if (s)
            add(s, 0, 1);
    }
    if (c->latency_metrics || c->bandwidth_metrics) {
        /* Kong reads these from kong.log.serialize(); so do we. */
        json_t *msg = sl_pdk_log_serialize(p);
        if (c->bandwidth_metrics) {
            int64_t in = int_at(msg, "request", "size", 0);
            int64_t out = int_at(msg, "response", "size", 0);
            k.len = sr_len;
            sl_sb_add(&k, (char[]){SEP}, 1);
            key_part(&k, consumer_name);
            sl_sb_add(&k, "", 1);
            struct slot *s = (in > 0 || out > 0) ? series(w, F_BANDWIDTH, k.p, k.len - 1) : NULL;
            if (s && in > 0)
                add(s, V_INGRESS, (uint64_t)in);
            if (s && out > 0)
                add(s, V_EGRESS, (uint64_t)out);
        }
        if (c->latency_metrics) {
            k.len = sr_len;
            sl_sb_add(&k, "", 1);
            struct slot *s = series(w, F_LATENCY, k.p, k.len - 1);
            int64_t req = int_at(msg, "latencies", "request", -1);
            int64_t up = int_at(msg, "latencies", "proxy", -1);
            int64_t kong = int_at(msg, "latencies", "kong", -1);
            if (s && req >= 0)
                observe(s, V_REQ, upstream_buckets, NUB, req);
            if (s && up >= 0)
                observe(s, V_UP, upstream_buckets, NUB, up);
            if (s && kong >= 0)
                observe(s, V_KONG, kong_buckets, NKB, kong);
        }
        json_decref(msg);
    }
    sl_sb_dispose(&k);
    return SL_PLUGIN_CONTINUE;
}

/* ------------------------------------------------------------------------ */
/* Rendering (status listener thread)                                        */

/* One series as merged over the workers. */
struct merged {
    const char *key;
    uint64_t *v;
};

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct merged *)a)->key, ((const struct merged *)b)->key);
}

/* Collects every worker's series of a family, summed by key and sorted.
 * Called with registry_mu held (the keys stay valid: slots are never
 * freed). */
static struct merged *merge(enum family f, size_t *count)
{
    size_t nv = family_values[f], n = 0, cap = 64;
    struct merged *all = sl_xmalloc(cap * sizeof(*all));
    for (struct worker_tables *w = registry; w; w = w->next) {
        for (size_t i = 0; i < SLOTS; i++) {
            struct slot *s = slot_at(&w->t[f], i);
            if (!atomic_load_explicit(&s->used, memory_order_acquire))
                continue;
            if (n == cap) {
                cap *= 2;
                all = sl_xrealloc(all, cap * sizeof(*all));
            }
            all[n].key = s->key;
            all[n].v = sl_xmalloc(nv * sizeof(uint64_t));
            for (size_t j = 0; j < nv; j++)
                all[n].v[j] = atomic_load_explicit(&s->v[j], memory_order_relaxed);
            n++;
        }
    }
    qsort(all, n, sizeof(*all), by_key);
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (out && !strcmp(all[out - 1].key, all[i].key)) {
            for (size_t j = 0; j < nv; j++)
                all[out - 1].v[j] += all[i].v[j];
            free(all[i].v);
        } else {
            all[out++] = all[i];
        }
    }
    *count = out;
    return all;
}

static void free_merged(struct merged *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].v);
    free(m);
}

/* A label value, escaped as the Prometheus text format wants. */
static void label_value(struct evbuffer *out, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c == '\\' || c == '"')
            evbuffer_add_printf(out, "\\%c", c);
        else if (c == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, &c, 1);
    }
}

/* Writes name="value" for the i-th label value of a key. */
static void key_label(struct evbuffer *out, const char *name, const char *key, int i)
{
    const char *s = key;
    for (; i > 0 && s; i--) {
        s = strchr(s, SEP);
        s = s ? s + 1 : NULL;
    }
    const char *end = s ? strchr(s, SEP) : NULL;
    size_t n = s ? (end ? (size_t)(end - s) : strlen(s)) : 0;
    evbuffer_add_printf(out, "%s=\"", name);
    label_value(out, s ? s : "", n);
    evbuffer_add(out, "\"", 1);
}

/* Kong's prometheus.lua bucket labels are zero-padded to the widest bound,
 * with one decimal ("00025.0"): the width of that text. */
static int bucket_width(const double *bounds, size_t nb)
{
    int order = 1;
    for (size_t i = 0; i < nb; i++)
        order = SL_MAX(order, snprintf(NULL, 0, "%.0f", bounds[i]));
    return order + 2;
}

static void render_histogram(struct evbuffer *out, const char *name, const char *help,
                             const struct merged *m, size_t n, size_t base, const double *bounds,
                             size_t nb)
{
    int width = bucket_width(bounds, nb);
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < n; i++) {
        uint64_t count = m[i].v[base + nb + 1];
        if (!count)
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b <= nb; b++) {
            cum += m[i].v[base + b];
            char le[32];
            if (b < nb)
                snprintf(le, sizeof(le), "%0*.1f", width, bounds[b]);
            else
                snprintf(le, sizeof(le), "+Inf");
            evbuffer_add_printf(out, "%s_bucket{", name);
            key_label(out, "service", m[i].key, 0);
            evbuffer_add(out, ",", 1);
            key_label(out, "route", m[i].key, 1);
            evbuffer_add_printf(out, ",workspace=\"default\",le=\"%s\"} %llu\n", le,
                                (unsigned long long)cum);
        }
        static const char *const tails[] = {"count", "sum"};
        for (int t = 0; t < 2; t++) {
            evbuffer_add_printf(out, "%s_%s{", name, tails[t]);
            key_label(out, "service", m[i].key, 0);
            evbuffer_add(out, ",", 1);
            key_label(out, "route", m[i].key, 1);
            evbuffer_add_printf(out, ",workspace=\"default\"} %llu\n",
                                (unsigned long long)m[i].v[base + nb + 1 + t]);
        }
    }
}

/* What the configuration asks of the exporter: whether a prometheus
 * plugin is there at all, and whether one wants upstream health. */
static void configured(const sl_gen_t *g, bool *present, bool *health)
{
    *present = *health = false;
    const json_t *plugins = g ? json_object_get(g->doc, "plugins") : NULL;
    size_t i;
    const json_t *pv;
    json_array_foreach(plugins, i, pv)
    {
        const json_t *name = json_object_get(pv, "name");
        if (!json_is_string(name) || strcmp(json_string_value(name), "prometheus") != 0 ||
            json_is_false(json_object_get(pv, "enabled")))
            continue;
        *present = true;
        if (json_is_true(json_object_get(json_object_get(pv, "config"), "upstream_health_metrics")))
            *health = true;
    }
}

static pthread_once_t node_once = PTHREAD_ONCE_INIT;
static char node_id[SL_UUID_STRLEN + 1];

static void draw_node_id(void)
{
    sl_uuid_v4(node_id);
}

static void render_node(struct evbuffer *out, sl_metrics_t *const *all, int n)
{
    uint64_t accepted = 0, total = 0;
    int64_t active = 0;
    for (int i = 0; i < n; i++) {
        accepted += atomic_load_explicit(&all[i]->connections_accepted, memory_order_relaxed);
        active += atomic_load_explicit(&all[i]->connections_active, memory_order_relaxed);
        total += atomic_load_explicit(&all[i]->requests_total, memory_order_relaxed);
    }
    pthread_once(&node_once, draw_node_id);
    evbuffer_add_printf(out,
                        "# HELP kong_datastore_reachable Datastore reachable from Kong, 0 is "
                        "unreachable\n"
                        "# TYPE kong_datastore_reachable gauge\n"
                        "kong_datastore_reachable 1\n"
                        "# HELP kong_nginx_connections_total Number of connections by subsystem\n"
                        "# TYPE kong_nginx_connections_total gauge\n");
    const struct {
        const char *state;
        uint64_t v;
    } states[] = {{"accepted", accepted},
                  {"handled", accepted},
                  {"total", total},
                  {"active", active > 0 ? (uint64_t)active : 0}};
    for (size_t i = 0; i < SL_ARRAY_LEN(states); i++)
        evbuffer_add_printf(out,
                            "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\","
                            "state=\"%s\"} %llu\n",
                            node_id, states[i].state, (unsigned long long)states[i].v);
    evbuffer_add_printf(out,
                        "# HELP kong_nginx_metric_errors_total Number of nginx-lua-prometheus "
                        "errors\n"
                        "# TYPE kong_nginx_metric_errors_total counter\n"
                        "kong_nginx_metric_errors_total 0\n"
                        "# HELP kong_nginx_requests_total Number of requests total\n"
                        "# TYPE kong_nginx_requests_total gauge\n"
                        "kong_nginx_requests_total{node_id=\"%s\",subsystem=\"http\"} %llu\n"
                        "# HELP kong_node_info Kong Node metadata information\n"
                        "# TYPE kong_node_info gauge\n"
                        "kong_node_info{node_id=\"%s\",version=\"%s\"} 1\n",
                        node_id, (unsigned long long)total, node_id, SL_VERSION);
}

/* kong_upstream_target_health: each target of each upstream, with the
 * state "healthchecks_off" set (there are no health checks here). */
static void render_health(struct evbuffer *out, const sl_gen_t *g)
{
    static const char *const states[] = {"healthchecks_off", "healthy", "unhealthy", "dns_error"};
    evbuffer_add_printf(out, "# HELP kong_upstream_target_health Health status of targets of "
                             "upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
                             "value is 1 when state is populated.\n"
                             "# TYPE kong_upstream_target_health gauge\n");
    for (size_t u = 0; u < g->nupstreams; u++) {
        const sl_upstream_t *up = &g->upstreams[u];
        for (size_t t = 0; t < up->ntargets; t++) {
            const sl_target_t *tg = &up->targets[t];
            char target[300];
            bool v6 = strchr(tg->host, ':') != NULL;
            snprintf(target, sizeof(target), v6 ? "[%s]:%u" : "%s:%u", tg->host, tg->port);
            for (size_t s = 0; s < SL_ARRAY_LEN(states); s++) {
                evbuffer_add(out, "kong_upstream_target_health{upstream=\"", 38);
                label_value(out, up->name, strlen(up->name));
                evbuffer_add(out, "\",target=\"", 10);
                label_value(out, target, strlen(target));
                evbuffer_add(out, "\",address=\"", 11);
                if (tg->is_ip)
                    label_value(out, target, strlen(target));
                evbuffer_add_printf(out, "\",state=\"%s\",subsystem=\"http\"} %d\n", states[s],
                                    s == 0);
            }
        }
    }
}

void sl_prometheus_render(const struct sl_gen_s *g, sl_metrics_t *const *all, int n,
                          struct evbuffer *out)
{
    bool present, health;
    configured(g, &present, &health);
    if (!present)
        return;
    render_node(out, all, n);
    if (health)
        render_health(out, g);

    pthread_mutex_lock(&registry_mu);
    size_t nr, nb, nl;
    struct merged *req = merge(F_REQUESTS, &nr);
    struct merged *bw = merge(F_BANDWIDTH, &nb);
    struct merged *lat = merge(F_LATENCY, &nl);
    uint64_t dropped = 0;
    for (struct worker_tables *w = registry; w; w = w->next)
        dropped += atomic_load_explicit(&w->dropped, memory_order_relaxed);
    pthread_mutex_unlock(&registry_mu);

    if (nb) {
        evbuffer_add_printf(out, "# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) "
                                 "throughput in bytes\n"
                                 "# TYPE kong_bandwidth_bytes counter\n");
        static const char *const dirs[] = {"ingress", "egress"};
        for (size_t i = 0; i < nb; i++) {
            for (int d = 0; d < 2; d++) {
                if (!bw[i].v[d])
                    continue;
                evbuffer_add(out, "kong_bandwidth_bytes{", 21);
                key_label(out, "service", bw[i].key, 0);
                evbuffer_add(out, ",", 1);
                key_label(out, "route", bw[i].key, 1);
                evbuffer_add_printf(out, ",direction=\"%s\",workspace=\"default\",", dirs[d]);
                key_label(out, "consumer", bw[i].key, 2);
                evbuffer_add_printf(out, "} %llu\n", (unsigned long long)bw[i].v[d]);
            }
        }
    }
    if (nr) {
        evbuffer_add_printf(out, "# HELP kong_http_requests_total HTTP status codes per "
                                 "consumer/service/route in Kong\n"
                                 "# TYPE kong_http_requests_total counter\n");
        for (size_t i = 0; i < nr; i++) {
            evbuffer_add(out, "kong_http_requests_total{", 25);
            key_label(out, "service", req[i].key, 0);
            evbuffer_add(out, ",", 1);
            key_label(out, "route", req[i].key, 1);
            evbuffer_add(out, ",", 1);
            key_label(out, "code", req[i].key, 2);
            evbuffer_add(out, ",", 1);
            key_label(out, "source", req[i].key, 3);
            evbuffer_add(out, ",workspace=\"default\",", 21);
            key_label(out, "consumer", req[i].key, 4);
            evbuffer_add_printf(out, "} %llu\n", (unsigned long long)req[i].v[0]);
        }
    }
    if (nl) {
        render_histogram(out, "kong_kong_latency_ms",
                         "Latency added by Kong and enabled plugins for each service/route in Kong",
                         lat, nl, V_KONG, kong_buckets, NKB);
        render_histogram(out, "kong_request_latency_ms",
                         "Total latency incurred during requests for each service/route in Kong",
                         lat, nl, V_REQ, upstream_buckets, NUB);
        render_histogram(out, "kong_upstream_latency_ms",
                         "Latency added by upstream response for each service/route in Kong", lat,
                         nl, V_UP, upstream_buckets, NUB);
    }
    if (dropped)
        evbuffer_add_printf(out,
                            "# HELP kong_metrics_dropped_total Requests not counted because a "
                            "worker's series table was full (sluice)\n"
                            "# TYPE kong_metrics_dropped_total counter\n"
                            "kong_metrics_dropped_total %llu\n",
                            (unsigned long long)dropped);
    free_merged(req, nr);
    free_merged(bw, nb);
    free_merged(lat, nl);
}

const sl_native_plugin_t sl_plugin_prometheus = {
    .name = "prometheus",
    .configure = configure,
    .dispose = dispose,
    .log = on_log,
};
