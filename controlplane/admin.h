/*
 * The control plane's Admin API: Kong 3.x's HTTP/JSON administration
 * interface (generated CRUD for every entity, nested collections, schemas,
 * tags, declarative /config), served with libevent's evhttp on the main
 * thread's event base and backed by the LMDB store.
 */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include "store.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Kong version the Admin API reports in GET / (clients such as decK
 * decide on features from it) and Sluice's own version. */
#define SL_CP_KONG_VERSION "3.10.0"
#define SL_CP_VERSION "0.1.0"

/* Largest request body for entity endpoints (413 beyond) and for /config. */
#define SL_ADMIN_MAX_BODY (1024u * 1024)
#define SL_ADMIN_MAX_CONFIG_BODY (64u * 1024 * 1024)

typedef struct sl_admin_s sl_admin_t;

/* At most this many addresses in admin_listen. */
#define SL_ADMIN_MAX_LISTEN 8

/* One admin_listen entry: "host:port [ssl] [kong flags...]". */
typedef struct sl_admin_listen_s {
    char host[128]; /* numeric; "0.0.0.0" for "*" or an empty host */
    uint16_t port;  /* 0 picks a free port */
    bool ssl;
} sl_admin_listen_t;

typedef struct sl_admin_opts_s {
    const sl_admin_listen_t *listen; /* borrowed: nlisten entries */
    size_t nlisten;
    SSL_CTX *ssl_ctx;      /* borrowed (the Admin API takes its own reference); needed
                              when an entry has ssl */
    const char *token;     /* NULL: no authentication */
    const char *prefix;    /* node id file, admin.addr */
    uint64_t map_size;     /* for the 507 message */
    json_t *configuration; /* borrowed: the sanitized configuration for GET / */
} sl_admin_opts_t;

/* Parses admin_listen: comma-separated "host:port" entries, each optionally
 * followed by flags. "ssl" makes the entry a TLS listener; Kong's other flags
 * (http2, reuseport, deferred, bind, backlog=N) are accepted and ignored.
 * Returns SL_OK with out[0..*n) filled, or SL_ERR_INVALID with a message in
 * err that names admin_listen and the offending entry. */
int sl_admin_parse_listen(const char *s, sl_admin_listen_t *out, size_t max, size_t *n, char *err,
                          size_t errlen);

/* Builds the TLS context of the ssl listeners from PEM files: TLS 1.2 and
 * later only. Returns SL_OK with *out set (caller frees with SSL_CTX_free),
 * or SL_ERR_INVALID with a message in err that names the configuration key
 * (admin_ssl_cert or admin_ssl_cert_key) and the reason. */
int sl_admin_tls_context(const char *cert, const char *key, SSL_CTX **out, char *err,
                         size_t errlen);

/* Binds every listener and registers the handlers on base. Returns SL_OK
 * with *out set, or SL_ERR_IO (errno set) naming in err the address that
 * failed. The store is borrowed and must outlive the Admin API. */
int sl_admin_new(struct event_base *base, sl_store_t *store, const sl_admin_opts_t *opts,
                 sl_admin_t **out, char *err, size_t errlen);

/* Gives the Admin API the cluster server behind /clustering/... (NULL: no
 * data planes). */
struct sl_cluster_s;
void sl_admin_set_cluster(sl_admin_t *a, struct sl_cluster_s *cluster);

/* The control plane's node id (<prefix>/node.id). */
const char *sl_admin_node_id(const sl_admin_t *a);

/* The port actually bound by listener i (in admin_listen order). */
uint16_t sl_admin_port(const sl_admin_t *a, size_t i);

void sl_admin_free(sl_admin_t *a);

#endif
