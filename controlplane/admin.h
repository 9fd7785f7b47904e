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
#include <stdint.h>

/* The Kong version the Admin API reports in GET / (clients such as decK
 * decide on features from it) and Sluice's own version. */
#define SL_CP_KONG_VERSION "3.10.0"
#define SL_CP_VERSION "0.1.0"

/* Largest request body for entity endpoints (413 beyond) and for /config. */
#define SL_ADMIN_MAX_BODY (1024u * 1024)
#define SL_ADMIN_MAX_CONFIG_BODY (64u * 1024 * 1024)

typedef struct sl_admin_s sl_admin_t;

typedef struct sl_admin_opts_s {
    const char *listen;    /* "host:port"; port 0 picks a free port */
    const char *token;     /* NULL: no authentication */
    const char *prefix;    /* node id file, admin.addr */
    uint64_t map_size;     /* for the 507 message */
    json_t *configuration; /* borrowed: the sanitized configuration for GET / */
} sl_admin_opts_t;

/* Binds the listener and registers the handlers on base. Returns SL_OK with
 * *out set, or SL_ERR_IO (errno set, a message logged). The store is
 * borrowed and must outlive the Admin API. */
int sl_admin_new(struct event_base *base, sl_store_t *store, const sl_admin_opts_t *opts,
                 sl_admin_t **out);

/* The port actually bound. */
uint16_t sl_admin_port(const sl_admin_t *a);

void sl_admin_free(sl_admin_t *a);

#endif
