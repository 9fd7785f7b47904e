/*
 * Per-worker counters for the status API and /metrics. Each worker writes
 * only its own sl_metrics_t, with relaxed atomics and no locks; the status
 * thread sums all workers at scrape time.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include <event2/buffer.h>

#define SL_METRICS_SLOTS 16384
#define SL_LATENCY_BUCKETS 14

typedef struct sl_metric_slot_s {
    atomic_int used; /* 0 empty, 2 published */
    int code;
    uint64_t key; /* hash of the route label; with code, identifies the slot */
    atomic_uint_fast64_t count;
    char route[48];
    char service[48];
} sl_metric_slot_t;

typedef struct sl_metrics_s {
    atomic_uint_fast64_t connections_accepted;
    atomic_int_fast64_t connections_active;
    atomic_uint_fast64_t requests_total;
    atomic_uint_fast64_t latency_bucket[SL_LATENCY_BUCKETS + 1]; /* last is +Inf */
    atomic_uint_fast64_t latency_sum_us;
    atomic_uint_fast64_t latency_count;
    atomic_uint_fast64_t upstream_connects;
    atomic_uint_fast64_t overflow; /* requests whose label slot did not fit */
    sl_metric_slot_t slots[SL_METRICS_SLOTS];
} sl_metrics_t;

/* Bucket bounds in milliseconds. */
extern const double sl_latency_bounds_ms[SL_LATENCY_BUCKETS];

/* Called by the owning worker at the end of each request. route_key is a
 * hash of the route label (precomputed per route), so the hot path compares
 * integers, not strings. */
void sl_metrics_request(sl_metrics_t *m, uint64_t route_key, const char *route, const char *service,
                        int code, uint64_t latency_us);

/* Appends the Prometheus text of all workers to out. */
void sl_metrics_render(sl_metrics_t *const *all, int n, const char *config_hash,
                       struct evbuffer *out);

/*
 * The prometheus plugin's kong_* metrics (plugins/prometheus.c), appended
 * to out when the generation g configures the plugin; nothing otherwise.
 * Weak: a build without the plugin has none (the status listener checks).
 * Called on the status listener's thread.
 */
struct sl_gen_s;
void sl_prometheus_render(const struct sl_gen_s *g, sl_metrics_t *const *all, int n,
                          struct evbuffer *out) __attribute__((weak));

#endif
