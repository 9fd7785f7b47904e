/*
 * cluster.c: the control plane side of the cluster protocol
 * (proto/cluster.proto).
 *
 * Per connection: TLS handshake (the peer is verified inside it) -> Hello
 * from the data plane -> Welcome (or Refused and close) -> a Snapshot, the
 * Delta it lacks, or nothing when its hash is already current -> Applied
 * reports -> Ping/Pong both ways. Every committed write wakes a push timer;
 * the writes that land before it fires go out together as one delta, built
 * once per (from, to) pair and shared by every data plane at that version.
 *
 * A configuration that uses a plugin a data plane did not report is not
 * pushed to it: it gets Withheld and its sync_status says why.
 */
#include "cluster.h"
#include "cfghash.h"
#include "cluster_config.h"
#include "cluster_frame.h"
#include "cluster_tls.h"
#include "json_out.h"
#include "log.h"
#include "plugins.h"
#include "util.h"
#include "uuid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "admin.h" /* SL_CP_VERSION */

/* A delta touching more entities than this goes as a (compressed) snapshot:
 * past a few hundred entities the snapshot is the smaller message. */
#define DELTA_MAX_ENTITIES 1000
/* How long writes may gather before they are pushed. */
#define PUSH_DELAY_US 1000
/* A handshake and Hello must complete within this. */
#define HELLO_TIMEOUT_S 10
/* Limits on what a Hello may carry. */
#define MAX_LABELS 64
#define MAX_PLUGINS 1024
#define MAX_STR 1024

typedef struct dp_s {
    char id[37];
    char *hostname, *version, *last_error;
    char ip[INET6_ADDRSTRLEN];
    json_t *labels;  /* object */
    json_t *plugins; /* object: name -> version */
    int64_t cert_expiry;
    char hash[33];
    uint64_t config_version;
    double last_seen, updated_at;
    const char *sync_status;
    struct conn_s *conn; /* NULL when disconnected */
} dp_t;

typedef struct conn_s {
    sl_cluster_t *cl;
    struct bufferevent *bev;
    char ip[INET6_ADDRSTRLEN];
    dp_t *dp; /* after Hello */
    uint64_t sent_version;
    char sent_hash[33];
    uint64_t withheld_version; /* version last withheld (+1 so 0 means none) */
    struct event *ping;
    bool closing;
    struct conn_s *next;
} conn_t;

struct sl_cluster_s {
    struct event_base *base;
    sl_store_t *store;
    struct evconnlistener *lis;
    SSL_CTX *ctx;
    size_t max_payload;
    uint64_t ping_ms, purge_s;
    char node_id[37];
    conn_t *conns;
    dp_t **dps;
    size_t ndps;
    struct event *push;
    /* Cache: the snapshot of one version. */
    uint64_t snap_version;
    bool snap_valid;
    sl_cmsg_t *snap_msg;
    Sluice__Cluster__Snapshot snap;
    /* Cache: one encoded delta (or the verdict that it is better sent as a
     * snapshot). */
    uint64_t delta_from, delta_to;
    bool delta_too_big;
    struct evbuffer *delta_frame;
    /* Cache: the plugins the configuration uses, per version. */
    uint64_t used_version;
    json_t *used;
};

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* ------------------------------------------------------------------------ */
/* The data plane table                                                      */

static dp_t *find_dp(sl_cluster_t *cl, const char *id)
{
    for (size_t i = 0; i < cl->ndps; i++)
        if (!strcmp(cl->dps[i]->id, id))
            return cl->dps[i];
    return NULL;
}

static void free_dp(dp_t *d)
{
    free(d->hostname);
    free(d->version);
    free(d->last_error);
    json_decref(d->labels);
    json_decref(d->plugins);
    free(d);
}

static void set_error(dp_t *d, const char *msg)
{
    free(d->last_error);
    d->last_error = msg ? sl_xstrdup(msg) : NULL;
}

/* Drops rows disconnected for longer than the purge delay. */
static void purge(sl_cluster_t *cl)
{
    double cut = now_s() - (double)cl->purge_s;
    size_t k = 0;
    for (size_t i = 0; i < cl->ndps; i++) {
        dp_t *d = cl->dps[i];
        if (!d->conn && d->last_seen < cut)
            free_dp(d);
        else
            cl->dps[k++] = d;
    }
    cl->ndps = k;
}

json_t *sl_cluster_data_planes(sl_cluster_t *cl)
{
    json_t *a = json_array();
    if (!cl)
        return a;
    purge(cl);
    for (size_t i = cl->ndps; i-- > 0;) {
        dp_t *d = cl->dps[i];
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:O,s:{s:I},s:b,s:I,s:o,s:I}", "id", d->id,
                      "hostname", d->hostname ? d->hostname : "", "ip", d->ip, "version",
                      d->version ? d->version : "", "config_hash", d->hash, "last_seen",
                      (json_int_t)d->last_seen, "sync_status", d->sync_status, "labels", d->labels,
                      "cert_details", "expiry_timestamp", (json_int_t)d->cert_expiry, "connected",
                      d->conn != NULL, "config_version", (json_int_t)d->config_version,
                      "last_error", d->last_error ? json_string(d->last_error) : json_null(),
                      "updated_at", (json_int_t)d->updated_at);
        json_array_append_new(a, o);
    }
    return a;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */

static void conn_free(conn_t *c)
{
    sl_cluster_t *cl = c->cl;
    for (conn_t **p = &cl->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    if (c->dp) {
        c->dp->conn = NULL;
        c->dp->updated_at = now_s();
        SL_NOTICE("cluster: data plane %s (%s) disconnected", c->dp->id, c->ip);
    }
    if (c->ping)
        event_free(c->ping);
    if (c->bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl)
            SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
        bufferevent_free(c->bev);
    }
    free(c);
}

/* Closes once what was queued is written (Refused). */
static void on_drained(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void close_after_write(conn_t *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, on_drained, NULL, c);
    on_drained(c->bev, c);
}

static void send_msg(conn_t *c, const sl_cmsg_t *m)
{
    sl_frame_write(bufferevent_get_output(c->bev), m);
}

/* A Ping or Pong with the control plane's current version and hash. */
static void send_ping(conn_t *c, bool pong)
{
    uint64_t v = sl_store_version(c->cl->store);
    char hash[33] = "";
    sl_store_hash_at(c->cl->store, v, hash);
    sl_frame_write_ping(bufferevent_get_output(c->bev), pong, v, hash);
}

/* ------------------------------------------------------------------------ */
/* What to send                                                              */

static int snap_entity(void *arg, const char *table, const char *id, const char *json, size_t len)
{
    Sluice__Config__Config *cfg = arg;
    if (cfg->n_entities % 1024 == 0)
        cfg->entities = sl_xrealloc(cfg->entities, (cfg->n_entities + 1024) * sizeof(void *));
    Sluice__Config__Entity *e = sl_xmalloc(sizeof(*e));
    sluice__config__entity__init(e);
    e->table = sl_xstrdup(table);
    e->id = sl_xstrdup(id);
    e->json.data = sl_xmalloc(len ? len : 1);
    memcpy(e->json.data, json, len);
    e->json.len = len;
    cfg->entities[cfg->n_entities++] = e;
    return SL_OK;
}

static void free_entities(Sluice__Config__Entity **es, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(es[i]->table);
        free(es[i]->id);
        free(es[i]->json.data);
        free(es[i]);
    }
    free(es);
}

/* The current snapshot, built once per version. */
static Sluice__Cluster__Snapshot *snapshot(sl_cluster_t *cl, uint64_t version)
{
    if (cl->snap_valid && cl->snap_version == version)
        return &cl->snap;
    free(cl->snap.config_zstd.data);
    free(cl->snap.hash);
    sluice__cluster__snapshot__init(&cl->snap);
    cl->snap.hash = NULL;
    cl->snap.config_zstd.data = NULL;
    Sluice__Config__Config cfg = SLUICE__CONFIG__CONFIG__INIT;
    char hash[33];
    uint64_t v = 0;
    double t0 = now_s();
    if (sl_store_walk_raw(cl->store, NULL, snap_entity, &cfg, &v, hash) != SL_OK) {
        free_entities(cfg.entities, cfg.n_entities);
        cl->snap_valid = false;
        SL_ERROR("cluster: cannot read the store for a snapshot: %s", sl_store_error(cl->store));
        return NULL;
    }
    cfg.version = v;
    cfg.hash = hash;
    size_t zlen;
    uint64_t raw;
    uint8_t *z = sl_config_compress(&cfg, &zlen, &raw);
    size_t n = cfg.n_entities;
    free_entities(cfg.entities, cfg.n_entities);
    cl->snap.version = v;
    cl->snap.hash = sl_xstrdup(hash);
    cl->snap.raw_size = raw;
    cl->snap.config_zstd.data = z;
    cl->snap.config_zstd.len = zlen;
    cl->snap_version = v;
    cl->snap_valid = true;
    SL_INFO("cluster: snapshot of version %llu: %zu entities, %llu bytes, %zu compressed, %.1f ms",
            (unsigned long long)v, n, (unsigned long long)raw, zlen, (now_s() - t0) * 1000);
    return &cl->snap;
}

/* Appends one delta frame from..to to out. Returns SL_ERR_NOT_FOUND when the
 * change log no longer reaches back to `from`, SL_ERR_TOO_BIG when the delta
 * is better sent as a snapshot (too many entities, or a frame over
 * cluster_max_payload). */
static int delta_frame(sl_cluster_t *cl, uint64_t from, uint64_t to, const char *hash,
                       struct evbuffer *out)
{
    if (cl->delta_from == from && cl->delta_to == to && cl->delta_too_big)
        return SL_ERR_TOO_BIG;
    if (cl->delta_frame && cl->delta_from == from && cl->delta_to == to) {
        evbuffer_add(out, evbuffer_pullup(cl->delta_frame, -1),
                     evbuffer_get_length(cl->delta_frame));
        return SL_OK;
    }
    json_t *recs = NULL;
    if (sl_store_changes_since(cl->store, from, &recs) != SL_OK)
        return SL_ERR_NOT_FOUND;
    /* The last state of each (table, id) across the records. */
    json_t *merged = json_object();
    size_t i, j;
    json_t *rec, *ch;
    json_array_foreach(recs, i, rec)
    {
        if ((uint64_t)json_integer_value(json_object_get(rec, "version")) > to)
            break;
        static const char *const kinds[] = {"upserts", "deletes"};
        for (size_t k = 0; k < 2; k++)
            json_array_foreach(json_object_get(rec, kinds[k]), j, ch)
            {
                const char *t = json_string_value(json_object_get(ch, "entity"));
                const char *id = json_string_value(json_object_get(ch, "id"));
                if (!t || !id)
                    continue;
                char *key = sl_xasprintf("%s/%s", t, id);
                json_object_set(merged, key, ch);
                free(key);
            }
    }
    json_decref(recs);
    cl->delta_from = from;
    cl->delta_to = to;
    cl->delta_too_big = json_object_size(merged) > DELTA_MAX_ENTITIES;
    if (cl->delta_too_big) {
        json_decref(merged);
        if (cl->delta_frame)
            evbuffer_drain(cl->delta_frame, evbuffer_get_length(cl->delta_frame));
        return SL_ERR_TOO_BIG;
    }
    Sluice__Cluster__Delta d = SLUICE__CLUSTER__DELTA__INIT;
    d.from_version = from;
    d.to_version = to;
    d.hash = (char *)hash;
    size_t n = json_object_size(merged);
    d.upserts = sl_xcalloc(n + 1, sizeof(*d.upserts));
    d.deletes = sl_xcalloc(n + 1, sizeof(*d.deletes));
    const char *key;
    json_object_foreach(merged, key, ch)
    {
        const json_t *value = json_object_get(ch, "value");
        if (value) {
            Sluice__Config__Entity *e = sl_xmalloc(sizeof(*e));
            sluice__config__entity__init(e);
            e->table = (char *)json_string_value(json_object_get(ch, "entity"));
            e->id = (char *)json_string_value(json_object_get(ch, "id"));
            size_t len = 0;
            e->json.data = (uint8_t *)sl_json_out_dup(value, &len);
            e->json.len = len;
            d.upserts[d.n_upserts++] = e;
        } else {
            Sluice__Cluster__Delete *x = sl_xmalloc(sizeof(*x));
            sluice__cluster__delete__init(x);
            x->table = (char *)json_string_value(json_object_get(ch, "entity"));
            x->id = (char *)json_string_value(json_object_get(ch, "id"));
            d.deletes[d.n_deletes++] = x;
        }
    }
    sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
    m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_DELTA;
    m.delta = &d;
    if (!cl->delta_frame)
        cl->delta_frame = evbuffer_new();
    evbuffer_drain(cl->delta_frame, evbuffer_get_length(cl->delta_frame));
    sl_frame_write(cl->delta_frame, &m);
    for (i = 0; i < d.n_upserts; i++) {
        free(d.upserts[i]->json.data);
        free(d.upserts[i]);
    }
    for (i = 0; i < d.n_deletes; i++)
        free(d.deletes[i]);
    free(d.upserts);
    free(d.deletes);
    json_decref(merged);
    if (evbuffer_get_length(cl->delta_frame) > cl->max_payload + 4) {
        evbuffer_drain(cl->delta_frame, evbuffer_get_length(cl->delta_frame));
        cl->delta_too_big = true;
        return SL_ERR_TOO_BIG;
    }
    evbuffer_add(out, evbuffer_pullup(cl->delta_frame, -1), evbuffer_get_length(cl->delta_frame));
    return SL_OK;
}

static int collect_plugin(void *arg, const char *table, const char *id, const char *json,
                          size_t len)
{
    json_t *p = json_loadb(json, len, 0, NULL);
    const char *name = json_string_value(json_object_get(p, "name"));
    if (name && !json_is_false(json_object_get(p, "enabled")))
        json_object_set_new(arg, name, json_true());
    json_decref(p);
    return SL_OK;
}

/* The plugin names the configuration uses (an object used as a set). */
static json_t *plugins_used(sl_cluster_t *cl, uint64_t version)
{
    if (cl->used && cl->used_version == version)
        return cl->used;
    json_t *used = json_object();
    uint64_t v;
    char hash[33];
    if (sl_store_walk_raw(cl->store, "plugins", collect_plugin, used, &v, hash) != SL_OK) {
        json_decref(used);
        return NULL;
    }
    json_decref(cl->used);
    cl->used = used;
    cl->used_version = v;
    return used;
}

/* Brings one data plane to the current configuration. */
static void sync_conn(conn_t *c)
{
    sl_cluster_t *cl = c->cl;
    dp_t *d = c->dp;
    if (!d || c->closing)
        return;
    uint64_t v = sl_store_version(cl->store);
    char hash[33];
    if (sl_store_hash_at(cl->store, v, hash) != SL_OK)
        return;
    if (!strcmp(c->sent_hash, hash)) {
        c->sent_version = v;
        return;
    }
    json_t *used = plugins_used(cl, v);
    const char *name;
    json_t *x;
    json_object_foreach(used, name, x)
    {
        if (json_object_get(d->plugins, name))
            continue;
        if (c->withheld_version != v + 1) {
            char msg[512];
            snprintf(msg, sizeof(msg),
                     "configuration version %llu uses plugin '%s', which this data plane does "
                     "not have; it keeps its current configuration until the plugin is "
                     "installed there or removed from the configuration",
                     (unsigned long long)v, name);
            Sluice__Cluster__Withheld w = SLUICE__CLUSTER__WITHHELD__INIT;
            w.version = v;
            w.sync_status = "plugin_set_incompatible";
            w.message = msg;
            sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
            m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_WITHHELD;
            m.withheld = &w;
            send_msg(c, &m);
            d->sync_status = "plugin_set_incompatible";
            set_error(d, msg);
            c->withheld_version = v + 1;
            SL_WARN("cluster: data plane %s: %s", d->id, msg);
        }
        return;
    }
    c->withheld_version = 0;
    char at[33];
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->sent_version > 0 && c->sent_version < v &&
        sl_store_hash_at(cl->store, c->sent_version, at) == SL_OK && !strcmp(at, c->sent_hash) &&
        delta_frame(cl, c->sent_version, v, hash, out) == SL_OK) {
        SL_DEBUG("cluster: delta %llu -> %llu to %s", (unsigned long long)c->sent_version,
                 (unsigned long long)v, d->id);
    } else {
        Sluice__Cluster__Snapshot *s = snapshot(cl, v);
        if (!s)
            return;
        sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
        m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_SNAPSHOT;
        m.snapshot = s;
        size_t n = sl_frame_write(out, &m);
        SL_INFO("cluster: snapshot of version %llu (%zu bytes) to %s",
                (unsigned long long)s->version, n, d->id);
        v = s->version;
        memcpy(hash, s->hash, 33);
    }
    c->sent_version = v;
    memcpy(c->sent_hash, hash, 33);
}

static void on_push(evutil_socket_t fd, short what, void *arg)
{
    sl_cluster_t *cl = arg;
    for (conn_t *c = cl->conns; c; c = c->next)
        sync_conn(c);
}

static void on_commit(void *arg, uint64_t version)
{
    sl_cluster_t *cl = arg;
    if (!evtimer_pending(cl->push, NULL)) {
        struct timeval tv = {0, PUSH_DELAY_US};
        evtimer_add(cl->push, &tv);
    }
}

/* ------------------------------------------------------------------------ */
/* Incoming messages                                                         */

static bool version_parts(const char *v, long *major, long *minor)
{
    char *end;
    *major = strtol(v, &end, 10);
    if (end == v || *end != '.')
        return false;
    const char *m = end + 1;
    *minor = strtol(m, &end, 10);
    return end != m;
}

static void refuse(conn_t *c, const char *status, const char *msg)
{
    Sluice__Cluster__Refused r = SLUICE__CLUSTER__REFUSED__INIT;
    r.sync_status = (char *)status;
    r.message = (char *)msg;
    sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
    m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_REFUSED;
    m.refused = &r;
    send_msg(c, &m);
    SL_WARN("cluster: refused data plane at %s: %s", c->ip, msg);
    close_after_write(c);
}

static bool bounded(const char *s)
{
    return s && strlen(s) <= MAX_STR;
}

/* Reads the reported plugins into d->plugins and registers external ones. */
static void take_plugins(dp_t *d, const Sluice__Cluster__Hello *h)
{
    json_decref(d->plugins);
    d->plugins = json_object();
    for (size_t i = 0; i < h->n_plugins && i < MAX_PLUGINS; i++) {
        const Sluice__Cluster__PluginInfo *p = h->plugins[i];
        if (!bounded(p->name) || !bounded(p->version))
            continue;
        json_object_set_new(d->plugins, p->name, json_string(p->version));
        if (!p->external || sl_plugins_find(p->name))
            continue;
        json_t *schema = json_loads(p->schema_json, 0, NULL);
        json_t *phases = json_array();
        for (size_t k = 0; k < p->n_phases; k++)
            json_array_append_new(phases, json_string(p->phases[k]));
        json_t *desc = json_pack("{s:s,s:s,s:i,s:o,s:o*}", "name", p->name, "version", p->version,
                                 "priority", p->priority, "phases", phases, "schema", schema);
        sl_errors_t errs;
        sl_errors_init(&errs);
        if (sl_plugins_add_reported(d->id, desc, &errs) == SL_OK)
            SL_NOTICE("cluster: plugin '%s' %s reported by data plane %s is now configurable",
                      p->name, p->version, d->id);
        else
            SL_WARN("cluster: data plane %s reported plugin '%s' with a bad description: %s", d->id,
                    p->name, errs.n ? errs.items[0] : "?");
        sl_errors_dispose(&errs);
        json_decref(desc);
    }
}

static void on_hello(conn_t *c, const Sluice__Cluster__Hello *h)
{
    sl_cluster_t *cl = c->cl;
    char msg[512];
    if (!sl_uuid_valid(h->node_id) || !bounded(h->hostname) || !bounded(h->version) ||
        !bounded(h->config_hash) || h->n_labels > MAX_LABELS || h->n_plugins > MAX_PLUGINS) {
        refuse(c, "unknown",
               "malformed Hello: node_id must be a UUID, strings at most 1024 bytes, at most 64 "
               "labels and 1024 plugins");
        return;
    }
    dp_t *d = find_dp(cl, h->node_id);
    if (d && d->conn) {
        /* The same node again: the old connection is a dead one. */
        conn_free(d->conn);
    }
    if (!d) {
        d = sl_xcalloc(1, sizeof(*d));
        snprintf(d->id, sizeof(d->id), "%s", h->node_id);
        d->labels = json_object();
        d->plugins = json_object();
        cl->dps = sl_xrealloc(cl->dps, (cl->ndps + 1) * sizeof(*cl->dps));
        cl->dps[cl->ndps++] = d;
    }
    c->dp = d;
    d->conn = c;
    free(d->hostname);
    d->hostname = sl_xstrdup(h->hostname);
    free(d->version);
    d->version = sl_xstrdup(h->version);
    memcpy(d->ip, c->ip, sizeof(d->ip));
    json_object_clear(d->labels);
    for (size_t i = 0; i < h->n_labels; i++)
        if (bounded(h->labels[i]->key) && bounded(h->labels[i]->value))
            json_object_set_new(d->labels, h->labels[i]->key, json_string(h->labels[i]->value));
    snprintf(d->hash, sizeof(d->hash), "%s", h->config_hash);
    d->config_version = h->config_version;
    d->last_seen = d->updated_at = now_s();
    d->sync_status = "unknown";
    set_error(d, NULL);
    d->cert_expiry = sl_cluster_tls_peer_expiry(bufferevent_openssl_get_ssl(c->bev));

    long cmaj, cmin, dmaj, dmin;
    if (!version_parts(h->version, &dmaj, &dmin) || !version_parts(SL_CP_VERSION, &cmaj, &cmin) ||
        dmaj != cmaj || dmin > cmin) {
        snprintf(msg, sizeof(msg),
                 "data plane version '%.64s' is incompatible with control plane version %s: the "
                 "major versions must be equal and the data plane's minor version must not be "
                 "newer; upgrade the control plane first",
                 h->version, SL_CP_VERSION);
        d->sync_status = "kong_version_incompatible";
        set_error(d, msg);
        refuse(c, "kong_version_incompatible", msg);
        return;
    }
    take_plugins(d, h);
    SL_NOTICE("cluster: data plane %s (%s, %s, version %s) connected with configuration %llu/%s",
              d->id, d->hostname, c->ip, d->version, (unsigned long long)h->config_version,
              h->config_hash);

    Sluice__Cluster__Welcome w = SLUICE__CLUSTER__WELCOME__INIT;
    w.node_id = cl->node_id;
    w.version = SL_CP_VERSION;
    w.ping_interval_ms = (uint32_t)cl->ping_ms;
    sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
    m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_WELCOME;
    m.welcome = &w;
    send_msg(c, &m);

    c->sent_version = h->config_version;
    snprintf(c->sent_hash, sizeof(c->sent_hash), "%s", h->config_hash);
    uint64_t v = sl_store_version(cl->store);
    char hash[33];
    if (sl_store_hash_at(cl->store, v, hash) == SL_OK && !strcmp(hash, d->hash))
        d->sync_status = "normal";
    sync_conn(c);

    struct timeval tv = {(time_t)(cl->ping_ms * 3 / 2 / 1000),
                         (suseconds_t)(cl->ping_ms * 3 / 2 % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    struct timeval pt = {(time_t)(cl->ping_ms / 1000), (suseconds_t)(cl->ping_ms % 1000) * 1000};
    event_add(c->ping, &pt);
}

static void on_message(conn_t *c, const sl_cmsg_t *m)
{
    dp_t *d = c->dp;
    if (!d && m->msg_case != SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_HELLO) {
        SL_WARN("cluster: %s sent %s before Hello; closing", c->ip, sl_frame_name(m));
        conn_free(c);
        return;
    }
    if (d)
        d->last_seen = now_s();
    switch (m->msg_case) {
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_HELLO:
        if (d) {
            SL_WARN("cluster: data plane %s sent a second Hello; closing", d->id);
            conn_free(c);
            return;
        }
        on_hello(c, m->hello);
        return;
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_APPLIED: {
        const Sluice__Cluster__Applied *a = m->applied;
        d->updated_at = now_s();
        if (a->error && *a->error) {
            char msg[600];
            snprintf(msg, sizeof(msg), "applying configuration %llu failed: %.500s",
                     (unsigned long long)a->version, a->error);
            set_error(d, msg);
            SL_WARN("cluster: data plane %s: %s", d->id, msg);
            /* Next time, a snapshot: the data plane holds what it had. */
            c->sent_hash[0] = '\0';
            c->sent_version = 0;
            return;
        }
        d->config_version = a->version;
        snprintf(d->hash, sizeof(d->hash), "%s", a->hash ? a->hash : "");
        d->sync_status = "normal";
        set_error(d, NULL);
        SL_DEBUG("cluster: data plane %s applied %llu (%s)", d->id, (unsigned long long)a->version,
                 d->hash);
        return;
    }
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_PING: {
        snprintf(d->hash, sizeof(d->hash), "%s", m->ping->config_hash);
        d->config_version = m->ping->config_version;
        send_ping(c, true);
        return;
    }
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_PONG:
        return;
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_NEED_SNAPSHOT:
        SL_INFO("cluster: data plane %s asks for a snapshot: %.200s", d->id,
                m->need_snapshot->reason);
        c->sent_hash[0] = '\0';
        c->sent_version = 0;
        sync_conn(c);
        return;
    default:
        SL_WARN("cluster: data plane %s sent %s, which only a control plane sends; closing", d->id,
                sl_frame_name(m));
        conn_free(c);
        return;
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        sl_cmsg_t *m = NULL;
        int rc = sl_frame_read(in, c->cl->max_payload, &m);
        if (rc == SL_AGAIN)
            return;
        if (rc != SL_OK) {
            SL_WARN("cluster: %s sent %s; closing the connection", c->ip,
                    rc == SL_ERR_TOO_BIG ? "a frame larger than cluster_max_payload"
                                         : "a frame that is not a ClusterMessage");
            conn_free(c);
            return;
        }
        sl_cluster_t *cl = c->cl;
        on_message(c, m);
        sl_frame_free(m);
        /* on_message may have freed c: look for it before touching it. */
        bool alive = false;
        for (conn_t *x = cl->conns; x; x = x->next)
            alive = alive || x == c;
        if (!alive || c->closing)
            return;
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        SL_DEBUG("cluster: TLS handshake with %s done", c->ip);
        return;
    }
    if (!c->dp) {
        char why[256];
        sl_cluster_tls_error(bufferevent_openssl_get_ssl(bev), why, sizeof(why));
        SL_WARN("cluster: refused connection from %s: %s", c->ip,
                (what & BEV_EVENT_TIMEOUT) ? "no Hello in time" : why);
    } else if (what & BEV_EVENT_TIMEOUT) {
        SL_WARN("cluster: data plane %s silent for 1.5 ping intervals; closing", c->dp->id);
    }
    conn_free(c);
}

static void on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    sl_cluster_t *cl = c->cl;
    send_ping(c, false);
    /* A data plane that does not read its socket is as good as dead. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 4 * cl->max_payload) {
        SL_WARN("cluster: data plane %s does not read what is sent; closing", c->dp->id);
        conn_free(c);
        return;
    }
    struct timeval pt = {(time_t)(cl->ping_ms / 1000), (suseconds_t)(cl->ping_ms % 1000) * 1000};
    event_add(c->ping, &pt);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    sl_cluster_t *cl = arg;
    SSL *ssl = SSL_new(cl->ctx);
    if (!ssl) {
        evutil_closesocket(fd);
        return;
    }
    conn_t *c = sl_xcalloc(1, sizeof(*c));
    c->cl = cl;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->ip, sizeof(c->ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->ip, sizeof(c->ip));
    c->bev = bufferevent_openssl_socket_new(cl->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        free(c);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->ping = evtimer_new(cl->base, on_ping_timer, c);
    c->next = cl->conns;
    cl->conns = c;
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    struct timeval tv = {HELLO_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ------------------------------------------------------------------------ */
/* Set-up                                                                    */

int sl_cluster_new(struct event_base *base, sl_store_t *store, const sl_cluster_opts_t *o,
                   sl_cluster_t **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int sslen = 0;
    *out = NULL;
    char lhost[128] = "";
    const char *colon = strrchr(o->listen, ':');
    char *end = NULL;
    long lport = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon && (size_t)(colon - o->listen) < sizeof(lhost))
        snprintf(lhost, sizeof(lhost), "%.*s", (int)(colon - o->listen), o->listen);
    if (lhost[0] == '[' && strlen(lhost) > 2 && lhost[strlen(lhost) - 1] == ']') {
        memmove(lhost, lhost + 1, strlen(lhost));
        lhost[strlen(lhost) - 1] = '\0';
    }
    if (!strcmp(lhost, "*") || !*lhost)
        strcpy(lhost, "0.0.0.0");
    struct sockaddr_in *l4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *l6 = (struct sockaddr_in6 *)&ss;
    if (end && !*end && lport >= 0 && lport <= 65535) {
        if (inet_pton(AF_INET, lhost, &l4->sin_addr) == 1) {
            l4->sin_family = AF_INET;
            l4->sin_port = htons((uint16_t)lport);
            sslen = sizeof(*l4);
        } else if (inet_pton(AF_INET6, lhost, &l6->sin6_addr) == 1) {
            l6->sin6_family = AF_INET6;
            l6->sin6_port = htons((uint16_t)lport);
            sslen = sizeof(*l6);
        }
    }
    if (sslen == 0) {
        snprintf(err, errlen, "cluster_listen: '%s' is not host:port (e.g. 0.0.0.0:8005)",
                 o->listen);
        return SL_ERR_INVALID;
    }
    sl_cluster_t *cl = sl_xcalloc(1, sizeof(*cl));
    cl->base = base;
    cl->store = store;
    cl->ctx = o->ssl_ctx;
    SSL_CTX_up_ref(cl->ctx);
    cl->max_payload = o->max_payload;
    cl->ping_ms = o->ping_interval_ms ? o->ping_interval_ms : 10000;
    cl->purge_s = o->purge_delay_s;
    snprintf(cl->node_id, sizeof(cl->node_id), "%s", o->node_id);
    cl->lis = evconnlistener_new_bind(
        base, on_accept, cl, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 512,
        (struct sockaddr *)&ss, sslen);
    if (!cl->lis) {
        snprintf(err, errlen, "cluster_listen: cannot listen on %s: %s", o->listen,
                 strerror(errno));
        SSL_CTX_free(cl->ctx);
        free(cl);
        return SL_ERR_IO;
    }
    cl->push = evtimer_new(base, on_push, cl);
    sl_store_on_commit(store, on_commit, cl);

    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(evconnlistener_get_fd(cl->lis), (struct sockaddr *)&bound, &blen);
    char host[INET6_ADDRSTRLEN] = "127.0.0.1", text[128], path[4096];
    unsigned port;
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&bound;
        if (!IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        else
            strcpy(host, "::1");
        port = ntohs(s6->sin6_port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&bound;
        if (s4->sin_addr.s_addr != htonl(INADDR_ANY))
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
    }
    int n = snprintf(text, sizeof(text), strchr(host, ':') ? "[%s]:%u\n" : "%s:%u\n", host, port);
    snprintf(path, sizeof(path), "%s/cluster.addr", o->prefix);
    if (sl_write_file_atomic(path, text, (size_t)n) != SL_OK)
        SL_WARN("cannot write %s: %s", path, strerror(errno));
    SL_NOTICE("cluster listener on %.*s", n - 1, text);
    *out = cl;
    return SL_OK;
}

void sl_cluster_free(sl_cluster_t *cl)
{
    if (!cl)
        return;
    sl_store_on_commit(cl->store, NULL, NULL);
    while (cl->conns)
        conn_free(cl->conns);
    for (size_t i = 0; i < cl->ndps; i++)
        free_dp(cl->dps[i]);
    free(cl->dps);
    evconnlistener_free(cl->lis);
    event_free(cl->push);
    free(cl->snap.config_zstd.data);
    free(cl->snap.hash);
    if (cl->delta_frame)
        evbuffer_free(cl->delta_frame);
    json_decref(cl->used);
    SSL_CTX_free(cl->ctx);
    free(cl);
}
