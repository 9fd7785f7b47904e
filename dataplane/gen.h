/*
 * A configuration generation: everything a request needs to be routed and
 * proxied, built from one normalised declarative document, immutable once
 * published, and reference-counted.
 *
 * The main thread builds a generation (off the workers), then publishes it
 * with one atomic pointer swap. Each request pins the generation current when
 * it started (sl_gen_acquire) and releases it when it ends; the last release
 * frees it. A reload therefore never drops or stalls a request.
 */
#ifndef SL_GEN_H
#define SL_GEN_H

#include "errors.h"
#include "router.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct sl_chain_s;       /* engine.c: a route's plugins in order */
struct sl_gen_plugins_s; /* engine.c: a generation's consumers and plugins */
struct sl_gen_tls_s;     /* gen_tls.c: a generation's certificates by sni */

typedef struct sl_target_s {
    char *host; /* owned */
    uint16_t port;
    unsigned weight;
    bool is_ip;
    struct sockaddr_storage addr; /* valid when is_ip */
    socklen_t addrlen;
} sl_target_t;

typedef struct sl_upstream_s {
    char *id, *name;      /* owned */
    char *host_header;    /* owned, may be NULL */
    char *client_cert;    /* owned: client_certificate's id, may be NULL */
    sl_target_t *targets; /* owned; weight > 0 only */
    size_t ntargets;
    unsigned *wheel; /* owned: round-robin wheel of target indexes */
    size_t wheel_len;
} sl_upstream_t;

typedef struct sl_service_s {
    char *id, *name;    /* owned; name may be NULL */
    const char *label;  /* borrowed: name, or id when unnamed */
    const json_t *json; /* borrowed: the entity as configured (logs) */
    char *host;         /* owned */
    char *path;         /* owned, may be NULL */
    uint16_t port;
    bool https;
    int retries;
    uint32_t connect_timeout_ms, read_timeout_ms, write_timeout_ms;
    const sl_upstream_t *upstream; /* borrowed from the generation; NULL: host is DNS/IP */
    bool host_is_ip;
    struct sockaddr_storage addr; /* valid when host_is_ip */
    socklen_t addrlen;
    char *host_header; /* owned: "host" or "host:port" as sent upstream */
    /* protocol https: what the upstream's certificate is checked against
     * (tls_verify; owned, NULL: not checked, tls.h's shared context). */
    bool tls_verify;
    struct ssl_ctx_st *tls_ctx;
} sl_service_t;

typedef struct sl_route_s {
    const char *id, *name;          /* borrowed from the generation's document; name may be NULL */
    const json_t *json;             /* borrowed: the entity as configured (logs) */
    const char *label;              /* borrowed: name, or id when unnamed (metrics, logs) */
    uint64_t label_key;             /* hash of label, for per-worker metric slots */
    const sl_service_t *service;    /* borrowed; NULL: the route has no service (503) */
    const struct sl_chain_s *chain; /* borrowed from the generation: its plugins */
    bool strip_path;
    bool preserve_host;
    int path_handling; /* 0 = v0, 1 = v1 */
    int https_redirect_status_code;
    unsigned protocols;
} sl_route_t;

/* A consumer and its ACL groups (borrowed from the generation). */
typedef struct sl_consumer_s {
    const char *id;
    const char *username;  /* may be NULL */
    const char *custom_id; /* may be NULL */
    const json_t *json;    /* the entity as configured (logs) */
    const char **groups;   /* owned array of borrowed strings */
    size_t ngroups;
} sl_consumer_t;

/* A credential row (keyauth_credentials, basicauth_credentials,
 * jwt_secrets): its id, its consumer and the row itself, from which a plugin
 * reads its own fields. */
typedef struct sl_credential_s {
    const char *id;
    const sl_consumer_t *consumer;
    const json_t *row;
} sl_credential_t;

typedef struct sl_gen_s {
    atomic_int refs;
    uint64_t version;
    char hash[33]; /* md5 hex of the normalised document */
    sl_router_t *router;
    sl_service_t *services;
    size_t nservices;
    sl_route_t *routes;
    size_t nroutes;
    sl_upstream_t *upstreams;
    size_t nupstreams;
    json_t *doc; /* owned: the normalised document it was built from */
    /* Service id -> index and lower-cased upstream name -> index (borrowed
     * from base, as are services and upstreams above). */
    json_t *service_index, *upstream_index;
    /* Owned reference: what services and upstreams were built into. Two
     * generations share it when their services, upstreams and targets are
     * the same parsed objects (hybrid mode keeps an unchanged entity's
     * object), so a change to routes alone does not build services again. */
    struct sl_gen_base_s *base;
    /* The routes as compiled for the router (owned, one per served route,
     * kept so that the next generation can copy an unchanged route's), the
     * routes table they came from (a reference) and, per table index, the
     * route built from it (-1: not served). */
    sl_route_spec_t *specs;
    json_t *routes_table;
    ssize_t *route_of_table;
    /* Owned: consumers, credentials, plugin instances and chains (engine.c). */
    struct sl_gen_plugins_s *plugins;
    /* Owned: a TLS context per certificate an sni names, and the sni index
     * (gen_tls.c, sl_gen_tls_ctx); NULL when the document has no snis. */
    struct sl_gen_tls_s *tls;
} sl_gen_t;

/*
 * Builds a generation from a normalised declarative document (see
 * declarative.h). Takes a reference to doc. Returns SL_OK with *out, or
 * SL_ERR_INVALID with messages in errs (e.g. an entity the data plane cannot
 * serve yet, such as a plugin).
 */
int sl_gen_build(json_t *doc, uint64_t version, sl_gen_t **out, sl_errors_t *errs);

/* A table of a normalised document (doc["routes"]): the array, or NULL (an
 * empty table) when absent or null; another type is an error in errs. */
json_t *sl_gen_table(const json_t *doc, const char *name, sl_errors_t *errs);

/* The same with the configuration hash given (hybrid mode: the control
 * plane's content hash) instead of computed from the document. */
int sl_gen_build_hashed(json_t *doc, uint64_t version, const char *hash, sl_gen_t **out,
                        sl_errors_t *errs);

/* The same, reusing prev's services and upstreams when doc's services,
 * upstreams and targets arrays hold exactly prev's objects (prev may be
 * NULL). */
int sl_gen_build_from(json_t *doc, uint64_t version, const char *hash, const sl_gen_t *prev,
                      sl_gen_t **out, sl_errors_t *errs);

/* An empty generation: every request gets 404; /status/ready says not ready. */
sl_gen_t *sl_gen_empty(void);

void sl_gen_ref(sl_gen_t *g);
void sl_gen_unref(sl_gen_t *g);

/* The published generation. sl_gen_acquire returns it with a reference the
 * caller must drop with sl_gen_unref. */
sl_gen_t *sl_gen_acquire(void);
/* Publishes g (takes the caller's reference) and drops the old one. */
void sl_gen_publish(sl_gen_t *g);
/* Drops the published generation (at exit). */
void sl_gen_clear(void);
/* True once a non-empty configuration has been published. */
bool sl_gen_ready(void);

#endif
