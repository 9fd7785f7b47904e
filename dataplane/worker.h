/*
 * Worker threads: each runs its own libevent base with its own SO_REUSEPORT
 * listeners, DNS resolver and cache, upstream keep-alive pool and metrics.
 * Nothing on the request path is shared between workers except the
 * immutable configuration generation.
 */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include "dp_conf.h"
#include "gen.h"
#include "h1_parser-t.h"
#include "metrics.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/queue.h>

struct evdns_base;
typedef struct sl_conn_s sl_conn_t;
typedef struct sl_upconn_s sl_upconn_t;
typedef struct sl_dns_cache_s sl_dns_cache_t;

typedef struct sl_worker_s {
    int id;
    pthread_t thread;
    const sl_dp_conf_t *conf; /* borrowed: lives as long as the process */
    struct event_base *base;  /* owned */
    struct evconnlistener *listeners[SL_MAX_LISTENERS];
    int listen_fds[SL_MAX_LISTENERS]; /* owned until handed to the listeners */
    uint16_t listen_ports[SL_MAX_LISTENERS];
    size_t nlisteners;
    struct evdns_base *dns; /* owned */
    sl_dns_cache_t *dns_cache;
    struct event *shutdown_ev; /* fires when the main thread writes to wake_fds[1] */
    int wake_fds[2];           /* owned: the main thread's way to reach this loop */
    struct event *sweep_ev;    /* owned: periodic upstream pool expiry */
    bool draining;

    sl_gen_t *gen; /* this worker's reference to the newest generation it has seen */
    uint64_t gen_seq;

    LIST_HEAD(, sl_conn_s) conns;                 /* client connections */
    TAILQ_HEAD(sl_upconn_head, sl_upconn_s) idle; /* idle upstream connections, most recent first */
    size_t nidle;
    struct sl_req_s *req_cache; /* owned: recycled requests (proxy.c) */
    unsigned nreq_cache;
    uint64_t reqid_counter;
    uint64_t conn_serial; /* connections accepted (nginx's $connection, per worker) */
    uint64_t reqid_salt;

    sl_h1_header_t *scratch_headers; /* owned: max_headers entries for parsing */
    sl_metrics_t *metrics;           /* owned */
    atomic_int *done;                /* borrowed: counts finished workers */
} sl_worker_t;

/* Shared by all workers: the access log file (NULL when off). */
/* Connection serials interleave the workers': serial * this + worker id. */
#define SL_MAX_WORKERS_SERIAL 1024

extern FILE *sl_access_log;

/* Bumped by the main thread after each publish; workers compare and reload. */
extern atomic_uint_fast64_t sl_gen_seq;

/* Creates a worker whose listeners are the given bound, listening fds (the
 * worker takes ownership of them). */
sl_worker_t *sl_worker_new(int id, const sl_dp_conf_t *conf, const int *fds, const uint16_t *ports,
                           size_t nfds);
/* Runs the worker's loop on a new thread; *done is incremented when it ends. */
int sl_worker_start(sl_worker_t *w, atomic_int *done);
/* Asks the worker to stop accepting and to exit once its connections are done. */
void sl_worker_drain(sl_worker_t *w);
void sl_worker_join(sl_worker_t *w);
void sl_worker_free(sl_worker_t *w);

/* The generation new requests on this worker use (refreshed when the main
 * thread has published a newer one). Borrowed: take a ref to keep it. */
sl_gen_t *sl_worker_gen(sl_worker_t *w);

/* Client connections (proxy.c). */
struct sl_listen_s;
void sl_conn_accept(sl_worker_t *w, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    uint16_t local_port, const struct sl_listen_s *l);
/* Closes idle keep-alive connections and marks busy ones to close after their
 * current response (drain). */
void sl_conns_drain(sl_worker_t *w);
void sl_upstream_pool_close_all(sl_worker_t *w);
/* Frees the recycled request objects. */
void sl_req_cache_free(sl_worker_t *w);
/* Closes pooled connections idle longer than upstream_keepalive_idle_timeout. */
void sl_upstream_pool_sweep(sl_worker_t *w);

/* DNS (dns.c): resolves host asynchronously through the worker's cache. The
 * callback gets SL_OK with an address (port set), or an error. When the
 * answer is known (hosts file, cache) the callback runs before sl_dns_resolve
 * returns and *slot is not touched (the callback may have freed it);
 * otherwise *slot receives the pending lookup, for sl_dns_cancel. The
 * callback must clear *slot itself. */
typedef void (*sl_dns_cb)(int rc, const struct sockaddr *sa, socklen_t len, void *arg);
typedef struct sl_dns_waiter_s sl_dns_waiter_t;
int sl_dns_init(sl_worker_t *w);
void sl_dns_dispose(sl_worker_t *w);
void sl_dns_resolve(sl_worker_t *w, const char *host, uint16_t port, sl_dns_cb cb, void *arg,
                    sl_dns_waiter_t **slot);
/* Cancels a pending lookup: the callback will not run. */
void sl_dns_cancel(sl_worker_t *w, sl_dns_waiter_t *wt);

#endif
