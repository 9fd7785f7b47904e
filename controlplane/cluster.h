/*
 * The control plane's cluster server: accepts data planes on cluster_listen
 * (mutual TLS, see common/cluster_tls.h), greets them, sends each a snapshot
 * or the deltas it lacks, pushes every committed write as a delta within a
 * few milliseconds, and keeps the table GET /clustering/data-planes shows.
 * Runs on the control plane's main thread, beside the Admin API.
 */
#ifndef SL_CLUSTER_H
#define SL_CLUSTER_H

#include "store.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdint.h>

typedef struct sl_cluster_s sl_cluster_t;

typedef struct sl_cluster_opts_s {
    const char *listen;  /* "host:port" (port 0 picks one) */
    SSL_CTX *ssl_ctx;    /* borrowed; the server takes its own reference */
    const char *prefix;  /* cluster.addr is written here */
    const char *node_id; /* the control plane's id */
    size_t max_payload;  /* largest frame accepted or sent */
    uint64_t ping_interval_ms;
    uint64_t purge_delay_s; /* a disconnected data plane's row lives this long */
} sl_cluster_opts_t;

/* Binds and starts serving. Returns SL_OK, or SL_ERR_INVALID / SL_ERR_IO
 * with a message in err naming cluster_listen. */
int sl_cluster_new(struct event_base *base, sl_store_t *store, const sl_cluster_opts_t *o,
                   sl_cluster_t **out, char *err, size_t errlen);
void sl_cluster_free(sl_cluster_t *c);

/* The data planes, as Kong's clustering_data_planes rows plus connected,
 * config_version and last_error (a JSON array, newest first). */
json_t *sl_cluster_data_planes(sl_cluster_t *c);

#endif
