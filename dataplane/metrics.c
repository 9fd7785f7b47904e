/*
 * metrics.c owns the per-worker counter tables and their Prometheus
 * rendering. Writers: one worker per table. Reader: the status listener on
 * the main thread. Slots are published with a release store of `used` after
 * their labels are written, so a reader that sees used == 2 sees the labels.
 */
#include "metrics.h"
#include "util.h"

#include <stdio.h>

#define SL_METRICS_PROBES 32

const double sl_latency_bounds_ms[SL_LATENCY_BUCKETS] = {1,   2,   5,    10,   25,   50,    100,
                                                         250, 500, 1000, 2500, 5000, 10000, 60000};

static void copy_label(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (; src && src[n] && n + 1 < cap; n++) {
        char c = src[n];
        /* Label values are escaped at render time; keep them printable here. */
        dst[n] = (c < 0x20 || c == 0x7f) ? '_' : c;
    }
    dst[n] = '\0';
}

void sl_metrics_request(sl_metrics_t *m, uint64_t route_key, const char *route, const char *service,
                        int code, uint64_t latency_us)
{
    atomic_fetch_add_explicit(&m->requests_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us, latency_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_count, 1, memory_order_relaxed);
    double ms = (double)latency_us / 1000.0;
    int b = 0;
    while (b < SL_LATENCY_BUCKETS && ms > sl_latency_bounds_ms[b])
        b++;
    atomic_fetch_add_explicit(&m->latency_bucket[b], 1, memory_order_relaxed);

    uint64_t h = route_key ^ ((uint64_t)code * 0x9e3779b97f4a7c15ULL);
    for (unsigned probe = 0; probe < SL_METRICS_PROBES; probe++) {
        sl_metric_slot_t *s = &m->slots[(h + probe) % SL_METRICS_SLOTS];
        int used = atomic_load_explicit(&s->used, memory_order_relaxed);
        if (used == 0) {
            /* Only this worker writes this table, so claiming needs no CAS;
             * the release store publishes the labels to the scraper. */
            s->code = code;
            s->key = route_key;
            copy_label(s->route, sizeof(s->route), route ? route : "");
            copy_label(s->service, sizeof(s->service), service ? service : "");
            atomic_store_explicit(&s->count, 1, memory_order_relaxed);
            atomic_store_explicit(&s->used, 2, memory_order_release);
            return;
        }
        if (s->key == route_key && s->code == code) {
            atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&m->overflow, 1, memory_order_relaxed);
}

static const sl_metric_slot_t *find_slot(const sl_metrics_t *m, uint64_t key, int code)
{
    uint64_t h = key ^ ((uint64_t)code * 0x9e3779b97f4a7c15ULL);
    for (unsigned probe = 0; probe < SL_METRICS_PROBES; probe++) {
        const sl_metric_slot_t *s = &m->slots[(h + probe) % SL_METRICS_SLOTS];
        if (atomic_load_explicit(&s->used, memory_order_acquire) != 2)
            return NULL;
        if (s->key == key && s->code == code)
            return s;
    }
    return NULL;
}

static void label(struct evbuffer *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            evbuffer_add_printf(out, "\\%c", *v);
        else
            evbuffer_add(out, v, 1);
    }
}

#define SUM(field)                                                                                 \
    ({                                                                                             \
        uint64_t _s = 0;                                                                           \
        for (int _i = 0; _i < n; _i++)                                                             \
            _s += atomic_load_explicit(&all[_i]->field, memory_order_relaxed);                     \
        _s;                                                                                        \
    })

void sl_metrics_render(sl_metrics_t *const *all, int n, const char *config_hash,
                       struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP sluice_http_requests_total HTTP requests by route, "
                             "service and status code.\n"
                             "# TYPE sluice_http_requests_total counter\n");
    /* The same (route, code) sits at the same probe sequence in every
     * worker's table, so merging is a probe per worker, not a scan. */
    for (int w = 0; w < n; w++) {
        for (size_t i = 0; i < SL_METRICS_SLOTS; i++) {
            const sl_metric_slot_t *s = &all[w]->slots[i];
            if (atomic_load_explicit(&s->used, memory_order_acquire) != 2)
                continue;
            bool seen = false;
            for (int pw = 0; pw < w && !seen; pw++)
                seen = find_slot(all[pw], s->key, s->code) != NULL;
            if (seen)
                continue;
            uint64_t total = 0;
            for (int ow = w; ow < n; ow++) {
                const sl_metric_slot_t *o = find_slot(all[ow], s->key, s->code);
                if (o)
                    total += atomic_load_explicit(&o->count, memory_order_relaxed);
            }
            evbuffer_add_printf(out, "sluice_http_requests_total{route=\"");
            label(out, s->route);
            evbuffer_add_printf(out, "\",service=\"");
            label(out, s->service);
            evbuffer_add_printf(out, "\",code=\"%d\"} %llu\n", s->code, (unsigned long long)total);
        }
    }
    evbuffer_add_printf(out,
                        "# HELP sluice_http_requests_unlabelled_total Requests counted without "
                        "labels because the label table was full.\n"
                        "# TYPE sluice_http_requests_unlabelled_total counter\n"
                        "sluice_http_requests_unlabelled_total %llu\n",
                        (unsigned long long)SUM(overflow));

    evbuffer_add_printf(out, "# HELP sluice_request_latency_ms Time from the first byte of a "
                             "request to the end of its response.\n"
                             "# TYPE sluice_request_latency_ms histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b <= SL_LATENCY_BUCKETS; b++) {
        cum += SUM(latency_bucket[b]);
        if (b < SL_LATENCY_BUCKETS)
            evbuffer_add_printf(out, "sluice_request_latency_ms_bucket{le=\"%g\"} %llu\n",
                                sl_latency_bounds_ms[b], (unsigned long long)cum);
        else
            evbuffer_add_printf(out, "sluice_request_latency_ms_bucket{le=\"+Inf\"} %llu\n",
                                (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "sluice_request_latency_ms_sum %.3f\n",
                        (double)SUM(latency_sum_us) / 1000.0);
    evbuffer_add_printf(out, "sluice_request_latency_ms_count %llu\n",
                        (unsigned long long)SUM(latency_count));

    int64_t active = 0;
    for (int i = 0; i < n; i++)
        active += atomic_load_explicit(&all[i]->connections_active, memory_order_relaxed);
    evbuffer_add_printf(out,
                        "# HELP sluice_connections_active Open client connections.\n"
                        "# TYPE sluice_connections_active gauge\n"
                        "sluice_connections_active %lld\n"
                        "# HELP sluice_connections_accepted_total Accepted client connections.\n"
                        "# TYPE sluice_connections_accepted_total counter\n"
                        "sluice_connections_accepted_total %llu\n"
                        "# HELP sluice_upstream_connects_total New upstream connections opened.\n"
                        "# TYPE sluice_upstream_connects_total counter\n"
                        "sluice_upstream_connects_total %llu\n"
                        "# HELP sluice_config_hash Hash of the configuration in use.\n"
                        "# TYPE sluice_config_hash gauge\n"
                        "sluice_config_hash{hash=\"%s\"} 1\n",
                        (long long)active, (unsigned long long)SUM(connections_accepted),
                        (unsigned long long)SUM(upstream_connects), config_hash);
}
