/*
 * cluster_dp.c: the data plane's cluster client (see cluster_dp.h).
 *
 * The configuration is held as a map "<table>/<id>" -> the entity's JSON
 * text as the control plane sent it, with its parsed form. A snapshot
 * replaces the map; a delta edits it in place, remembering what it replaced
 * so that a delta that does not apply (wrong base, wrong resulting hash, a
 * generation that does not build) is undone and the old configuration
 * stays. The content hash (common/cfghash.h) is kept up to date per entity.
 */
#include "cluster_dp.h"
#include "cfghash.h"
#include "cluster_config.h"
#include "cluster_frame.h"
#include "cluster_tls.h"
#include "declarative.h"
#include "gen.h"
#include "log.h"
#include "plugins.h"
#include "util.h"
#include "uuid.h"
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define PERSIST_DELAY_MS 1000
#define PERSIST_MAX_MS 5000
#define SNAPSHOT_THREADS 4       /* at most, and no more than the CPUs */
#define SNAPSHOT_THREAD_MIN 2048 /* entities below which one thread parses */

static struct {
    const sl_dp_conf_t *conf;
    struct event_base *base;
    struct evdns_base *dns;
    SSL_CTX *ctx;
    sl_cluster_tls_opts_t tls;
    char host[256];
    int port;
    char node_id[37];
    char hostname[256];
    json_t *labels;

    struct bufferevent *bev;
    bool welcomed;
    unsigned failures;
    struct event *retry, *ping, *persist;
    uint64_t persist_first_ms; /* when the pending write was first asked for */
    uint64_t ping_ms;

    bool started;
    uint64_t bytes_received, snapshots, deltas;
    double last_apply_ms;
    char last_error[600];

    json_t *entities; /* "<table>/<id>" -> [table, id, text, parsed] */
    uint64_t version;
    sl_cfghash_t hash;
} S;

static void connect_cp(void);

/* ------------------------------------------------------------------------ */
/* The configuration                                                         */

static bool known_table(const char *t)
{
    for (size_t i = 0; sl_declarative_tables[i]; i++)
        if (!strcmp(sl_declarative_tables[i], t))
            return true;
    return false;
}

/* [table, id, text, parsed] for one entity, or NULL when the text is not a
 * JSON object with that id. */
static json_t *entry(const char *table, const char *id, const uint8_t *json, size_t len)
{
    json_t *v = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, NULL);
    const char *vid = json_string_value(json_object_get(v, "id"));
    if (!json_is_object(v) || !vid || strcmp(vid, id) != 0) {
        json_decref(v);
        return NULL;
    }
    return json_pack("[s,s,s%,o]", table, id, (const char *)json, len, v);
}

static void toggle(sl_cfghash_t *h, const json_t *e)
{
    const json_t *text = json_array_get(e, 2);
    sl_cfghash_toggle(h, json_string_value(json_array_get(e, 0)),
                      json_string_value(json_array_get(e, 1)), json_string_value(text),
                      json_string_length(text));
}

/* Builds the generation of a configuration map and publishes it. */
static int publish(json_t *map, uint64_t version, const sl_cfghash_t *hash, char *err,
                   size_t errlen)
{
    uint64_t t0 = sl_now_us();
    json_t *doc = json_pack("{s:s}", "_format_version", "3.0");
    for (size_t i = 0; sl_declarative_tables[i]; i++)
        json_object_set_new(doc, sl_declarative_tables[i], json_array());
    const char *key;
    json_t *e;
    json_object_foreach(map, key, e)
    {
        json_t *arr = json_object_get(doc, json_string_value(json_array_get(e, 0)));
        json_array_append(arr, json_array_get(e, 3));
    }
    char hex[33];
    sl_cfghash_hex(hash, hex);
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_gen_t *g = NULL;
    uint64_t t1 = sl_now_us();
    /* Entities a delta left alone keep their parsed objects, so the build
     * can share what the current generation made of them. */
    sl_gen_t *prev = sl_gen_acquire();
    int rc = sl_gen_build_from(doc, version, hex, prev, &g, &errs);
    sl_gen_unref(prev);
    SL_DEBUG("cluster: document %.1f ms, generation %.1f ms", (t1 - t0) / 1e3,
             (sl_now_us() - t1) / 1e3);
    json_decref(doc);
    if (rc != SL_OK) {
        snprintf(err, errlen, "%s%s", errs.n ? errs.items[0] : "the configuration does not build",
                 errs.n > 1 ? " (and more)" : "");
        sl_errors_dispose(&errs);
        return SL_ERR_INVALID;
    }
    sl_errors_dispose(&errs);
    sl_gen_publish(g);
    atomic_fetch_add(&sl_gen_seq, 1);
    return SL_OK;
}

/* A share of a snapshot's entities, parsed on its own thread: entries[i]
 * for from <= i < to (NULL: unusable) and the XOR of their hashes. */
struct parse_share {
    const Sluice__Config__Config *cfg;
    json_t **entries;
    size_t from, to;
    sl_cfghash_t hash;
    pthread_t thread;
    bool started;
};

static void *parse_share(void *arg)
{
    struct parse_share *p = arg;
    memset(&p->hash, 0, sizeof(p->hash));
    for (size_t i = p->from; i < p->to; i++) {
        const Sluice__Config__Entity *x = p->cfg->entities[i];
        json_t *e =
            known_table(x->table) ? entry(x->table, x->id, x->json.data, x->json.len) : NULL;
        p->entries[i] = e;
        if (e)
            toggle(&p->hash, e);
    }
    return NULL;
}

/* A map from a Config; NULL with err when an entity is unusable. Parsing is
 * most of a snapshot's cost, so a large one is parsed on up to
 * SNAPSHOT_THREADS threads (the hash is an XOR, so shares combine in any
 * order); the map is then filled in the snapshot's order. */
static json_t *map_of(const Sluice__Config__Config *cfg, sl_cfghash_t *hash, char *err,
                      size_t errlen)
{
    size_t n = cfg->n_entities;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t k = n < SNAPSHOT_THREAD_MIN ? 1 : (size_t)SL_MAX(1, SL_MIN(cpus, SNAPSHOT_THREADS));
    struct parse_share shares[SNAPSHOT_THREADS];
    json_t **entries = sl_xcalloc(n ? n : 1, sizeof(*entries));
    for (size_t t = 0; t < k; t++) {
        shares[t] = (struct parse_share){
            .cfg = cfg, .entries = entries, .from = n * t / k, .to = n * (t + 1) / k};
        /* The first share is this thread's; a thread that cannot start
         * leaves its share to this thread too. */
        if (t > 0)
            shares[t].started =
                pthread_create(&shares[t].thread, NULL, parse_share, &shares[t]) == 0;
    }
    parse_share(&shares[0]);
    memset(hash, 0, sizeof(*hash));
    for (size_t t = 0; t < k; t++) {
        if (t > 0 && shares[t].started)
            pthread_join(shares[t].thread, NULL);
        else if (t > 0)
            parse_share(&shares[t]);
        for (size_t b = 0; b < SL_CFGHASH_LEN; b++)
            hash->b[b] ^= shares[t].hash.b[b];
    }
    json_t *map = json_object();
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        if (!entries[i]) {
            bad = SL_MIN(bad, i);
            continue;
        }
        const Sluice__Config__Entity *x = cfg->entities[i];
        char *key = sl_xasprintf("%s/%s", x->table, x->id);
        json_object_set_new(map, key, entries[i]);
        free(key);
    }
    free(entries);
    if (bad < n) {
        const Sluice__Config__Entity *x = cfg->entities[bad];
        snprintf(err, errlen, "entity %zu (%.40s %.40s) is not a valid entity", bad, x->table,
                 x->id);
        json_decref(map);
        return NULL;
    }
    return map;
}

/* Applies a snapshot; on success it is the current configuration. */
static int apply_snapshot(const Sluice__Cluster__Snapshot *s, char *err, size_t errlen)
{
    uint64_t t0 = sl_now_us();
    Sluice__Config__Config *cfg =
        sl_config_decompress(s->config_zstd.data, s->config_zstd.len, s->raw_size, err, errlen);
    if (!cfg)
        return SL_ERR_INVALID;
    uint64_t t1 = sl_now_us();
    sl_cfghash_t h;
    json_t *map = map_of(cfg, &h, err, errlen);
    sluice__config__config__free_unpacked(cfg, NULL);
    SL_DEBUG("cluster: snapshot decoded in %.1f ms, entities parsed in %.1f ms", (t1 - t0) / 1e3,
             (sl_now_us() - t1) / 1e3);
    if (!map)
        return SL_ERR_INVALID;
    char hex[33];
    sl_cfghash_hex(&h, hex);
    if (strcmp(hex, s->hash) != 0) {
        snprintf(err, errlen, "snapshot content hashes to %s, not the announced %.40s", hex,
                 s->hash);
        json_decref(map);
        return SL_ERR_INVALID;
    }
    if (publish(map, s->version, &h, err, errlen) != SL_OK) {
        json_decref(map);
        return SL_ERR_INVALID;
    }
    json_decref(S.entities);
    S.entities = map;
    S.version = s->version;
    S.hash = h;
    return SL_OK;
}

/* Applies a delta in place; undoes it on any failure. *need_snapshot is set
 * when the failure means the bases differ (a snapshot will fix it). */
static int apply_delta(const Sluice__Cluster__Delta *d, bool *need_snapshot, char *err,
                       size_t errlen)
{
    *need_snapshot = false;
    if (d->from_version != S.version) {
        snprintf(err, errlen, "delta from version %llu, but this data plane has %llu",
                 (unsigned long long)d->from_version, (unsigned long long)S.version);
        *need_snapshot = true;
        return SL_ERR_INVALID;
    }
    json_t *undo = json_object(); /* key -> old entry, or null when absent */
    sl_cfghash_t h = S.hash;
    int rc = SL_OK;
    for (size_t i = 0; i < d->n_upserts + d->n_deletes && rc == SL_OK; i++) {
        bool up = i < d->n_upserts;
        const char *table = up ? d->upserts[i]->table : d->deletes[i - d->n_upserts]->table;
        const char *id = up ? d->upserts[i]->id : d->deletes[i - d->n_upserts]->id;
        json_t *e = NULL;
        if (!known_table(table) ||
            (up && !(e = entry(table, id, d->upserts[i]->json.data, d->upserts[i]->json.len)))) {
            snprintf(err, errlen, "delta entity %.40s %.40s is not a valid entity", table, id);
            rc = SL_ERR_INVALID;
            break;
        }
        char *key = sl_xasprintf("%s/%s", table, id);
        json_t *old = json_object_get(S.entities, key);
        if (!json_object_get(undo, key))
            json_object_set(undo, key, old ? old : json_null());
        if (old)
            toggle(&h, old);
        if (e) {
            toggle(&h, e);
            json_object_set_new(S.entities, key, e);
        } else {
            json_object_del(S.entities, key);
        }
        free(key);
    }
    char hex[33];
    sl_cfghash_hex(&h, hex);
    if (rc == SL_OK && strcmp(hex, d->hash) != 0) {
        snprintf(err, errlen, "after the delta the configuration hashes to %s, not %.40s", hex,
                 d->hash);
        *need_snapshot = true;
        rc = SL_ERR_INVALID;
    }
    if (rc == SL_OK)
        rc = publish(S.entities, d->to_version, &h, err, errlen);
    if (rc != SL_OK) {
        const char *key;
        json_t *old;
        json_object_foreach(undo, key, old)
        {
            if (json_is_null(old))
                json_object_del(S.entities, key);
            else
                json_object_set(S.entities, key, old);
        }
    } else {
        S.version = d->to_version;
        S.hash = h;
    }
    json_decref(undo);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Persistence                                                               */

static void persist_path(char *out, size_t n)
{
    snprintf(out, n, "%s/cluster_config.pb", S.conf->prefix);
}

static void persist_now(void)
{
    uint64_t t0 = sl_now_us();
    Sluice__Config__Config cfg = SLUICE__CONFIG__CONFIG__INIT;
    size_t n = json_object_size(S.entities), k = 0;
    Sluice__Config__Entity *es = sl_xcalloc(n + 1, sizeof(*es));
    Sluice__Config__Entity **ptrs = sl_xcalloc(n + 1, sizeof(*ptrs));
    const char *key;
    json_t *e;
    json_object_foreach(S.entities, key, e)
    {
        sluice__config__entity__init(&es[k]);
        es[k].table = (char *)json_string_value(json_array_get(e, 0));
        es[k].id = (char *)json_string_value(json_array_get(e, 1));
        es[k].json.data = (uint8_t *)json_string_value(json_array_get(e, 2));
        es[k].json.len = json_string_length(json_array_get(e, 2));
        ptrs[k] = &es[k];
        k++;
    }
    char hex[33];
    sl_cfghash_hex(&S.hash, hex);
    cfg.version = S.version;
    cfg.hash = hex;
    cfg.n_entities = k;
    cfg.entities = ptrs;
    Sluice__Cluster__Snapshot s = SLUICE__CLUSTER__SNAPSHOT__INIT;
    size_t zlen;
    s.config_zstd.data = sl_config_compress(&cfg, &zlen, &s.raw_size);
    s.config_zstd.len = zlen;
    s.version = S.version;
    s.hash = hex;
    size_t len = sluice__cluster__snapshot__get_packed_size(&s);
    uint8_t *buf = sl_xmalloc(len);
    sluice__cluster__snapshot__pack(&s, buf);
    char path[4096];
    persist_path(path, sizeof(path));
    if (sl_write_file_atomic(path, (const char *)buf, len) != SL_OK)
        SL_ERROR("cluster: cannot write %s: %s", path, strerror(errno));
    else
        SL_DEBUG("cluster: persisted version %llu (%zu bytes) in %.1f ms",
                 (unsigned long long)S.version, len, (sl_now_us() - t0) / 1e3);
    free(buf);
    free(s.config_zstd.data);
    free(es);
    free(ptrs);
}

static void on_persist(evutil_socket_t fd, short what, void *arg)
{
    persist_now();
}

/* Persists once changes pause for PERSIST_DELAY_MS, and at least every
 * PERSIST_MAX_MS while they keep coming: a burst costs one write. */
static void schedule_persist(void)
{
    uint64_t now = sl_now_ms();
    if (!evtimer_pending(S.persist, NULL))
        S.persist_first_ms = now;
    else if (now - S.persist_first_ms >= PERSIST_MAX_MS)
        return; /* overdue: let the armed timer fire */
    struct timeval tv = {PERSIST_DELAY_MS / 1000, (PERSIST_DELAY_MS % 1000) * 1000};
    evtimer_add(S.persist, &tv);
}

int sl_dp_cluster_load_persisted(const sl_dp_conf_t *conf)
{
    S.conf = conf;
    char path[4096], err[512];
    persist_path(path, sizeof(path));
    char *text;
    size_t len;
    int rc = sl_read_file(path, SL_CONFIG_MAX_RAW, &text, &len);
    if (rc != SL_OK)
        return SL_ERR_NOT_FOUND;
    Sluice__Cluster__Snapshot *s =
        sluice__cluster__snapshot__unpack(NULL, len, (const uint8_t *)text);
    free(text);
    rc = s ? apply_snapshot(s, err, sizeof(err)) : SL_ERR_INVALID;
    if (!s)
        snprintf(err, sizeof(err), "not a snapshot");
    if (rc == SL_OK)
        SL_NOTICE("cluster: serving the persisted configuration version %llu (%s) from %s",
                  (unsigned long long)S.version, s->hash, path);
    else
        SL_ERROR("cluster: cannot use the persisted configuration %s: %s", path, err);
    if (s)
        sluice__cluster__snapshot__free_unpacked(s, NULL);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The connection                                                            */

static void send_msg(const sl_cmsg_t *m)
{
    if (S.bev)
        sl_frame_write(bufferevent_get_output(S.bev), m);
}

static void send_applied(uint64_t version, const char *error)
{
    char hex[33];
    sl_cfghash_hex(&S.hash, hex);
    Sluice__Cluster__Applied a = SLUICE__CLUSTER__APPLIED__INIT;
    a.version = error ? version : S.version;
    a.hash = hex;
    a.error = (char *)(error ? error : "");
    sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
    m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_APPLIED;
    m.applied = &a;
    send_msg(&m);
}

static void disconnect(const char *why)
{
    if (S.bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(S.bev);
        if (ssl)
            SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
        bufferevent_free(S.bev);
        S.bev = NULL;
    }
    if (S.ping)
        evtimer_del(S.ping);
    if (why)
        SL_WARN("cluster: %s", why);
    /* Jittered exponential backoff: [d/2, d) with d doubling per failure. */
    uint64_t d = BACKOFF_MIN_MS << (S.failures < 7 ? S.failures : 7);
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    S.failures++;
    uint64_t ms = d / 2 + (uint64_t)random() % (d / 2 + 1);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(S.retry, &tv);
    S.welcomed = false;
}

static void send_hello(void)
{
    Sluice__Cluster__Hello h = SLUICE__CLUSTER__HELLO__INIT;
    char hex[33];
    sl_cfghash_hex(&S.hash, hex);
    h.node_id = S.node_id;
    h.hostname = S.hostname;
    h.version = SL_VERSION;
    h.config_version = S.version;
    h.config_hash = hex;
    size_t nl = json_object_size(S.labels), k = 0;
    Sluice__Cluster__Hello__LabelsEntry *le = sl_xcalloc(nl + 1, sizeof(*le));
    Sluice__Cluster__Hello__LabelsEntry **lp = sl_xcalloc(nl + 1, sizeof(*lp));
    const char *key;
    json_t *v;
    json_object_foreach(S.labels, key, v)
    {
        sluice__cluster__hello__labels_entry__init(&le[k]);
        le[k].key = (char *)key;
        le[k].value = (char *)json_string_value(v);
        lp[k] = &le[k];
        k++;
    }
    h.n_labels = k;
    h.labels = lp;
    /* The plugins this data plane can run, external ones with schemas. */
    size_t np = sl_plugins_count();
    Sluice__Cluster__PluginInfo *pi = sl_xcalloc(np + 1, sizeof(*pi));
    Sluice__Cluster__PluginInfo **pp = sl_xcalloc(np + 1, sizeof(*pp));
    char **schemas = sl_xcalloc(np + 1, sizeof(*schemas));
    char **phases = sl_xcalloc(8 * (np + 1), sizeof(*phases));
    for (size_t i = 0; i < np; i++) {
        const sl_plugin_info_t *p = sl_plugins_at(i);
        json_t *j = sl_plugin_info_json(p);
        sluice__cluster__plugin_info__init(&pi[i]);
        pi[i].name = (char *)p->name;
        pi[i].version = (char *)p->version;
        pi[i].priority = p->priority;
        pi[i].external = p->server != NULL;
        schemas[i] = json_dumps(json_object_get(j, "schema"), JSON_COMPACT);
        pi[i].schema_json = schemas[i];
        json_decref(j);
        size_t n = 0;
        for (unsigned b = 1; b <= SL_PHASE_PREREAD; b <<= 1)
            if (p->phases & b)
                phases[8 * i + n++] = (char *)sl_phase_name(b);
        pi[i].n_phases = n;
        pi[i].phases = &phases[8 * i];
        pp[i] = &pi[i];
    }
    h.n_plugins = np;
    h.plugins = pp;
    sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
    m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_HELLO;
    m.hello = &h;
    send_msg(&m);
    for (size_t i = 0; i < np; i++)
        free(schemas[i]);
    free(schemas);
    free(phases);
    free(pi);
    free(pp);
    free(le);
    free(lp);
}

static void arm_ping(void)
{
    struct timeval tv = {(time_t)(S.ping_ms / 1000), (suseconds_t)(S.ping_ms % 1000) * 1000};
    evtimer_add(S.ping, &tv);
    struct timeval rt = {(time_t)(S.ping_ms * 3 / 2 / 1000),
                         (suseconds_t)(S.ping_ms * 3 / 2 % 1000) * 1000};
    bufferevent_set_timeouts(S.bev, &rt, NULL);
}

/* A Ping or Pong with this data plane's version and hash. */
static void send_ping(bool pong)
{
    char hex[33];
    sl_cfghash_hex(&S.hash, hex);
    if (S.bev)
        sl_frame_write_ping(bufferevent_get_output(S.bev), pong, S.version, hex);
}

static void on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    send_ping(false);
    struct timeval tv = {(time_t)(S.ping_ms / 1000), (suseconds_t)(S.ping_ms % 1000) * 1000};
    evtimer_add(S.ping, &tv);
}

/* Handles one message; false when the connection was closed. */
static bool on_message(const sl_cmsg_t *m)
{
    char err[600];
    if (!S.welcomed && m->msg_case != SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_WELCOME &&
        m->msg_case != SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_REFUSED) {
        snprintf(err, sizeof(err), "control plane sent %s before Welcome; reconnecting",
                 sl_frame_name(m));
        disconnect(err);
        return false;
    }
    switch (m->msg_case) {
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_WELCOME:
        S.welcomed = true;
        S.failures = 0;
        if (m->welcome->ping_interval_ms >= 100)
            S.ping_ms = m->welcome->ping_interval_ms;
        SL_NOTICE("cluster: connected to control plane %.40s (version %.40s) at %s:%d",
                  m->welcome->node_id, m->welcome->version, S.host, S.port);
        arm_ping();
        return true;
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_REFUSED:
        snprintf(err, sizeof(err), "control plane refused this data plane (%.60s): %.400s",
                 m->refused->sync_status, m->refused->message);
        disconnect(err);
        return false;
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_SNAPSHOT: {
        const Sluice__Cluster__Snapshot *s = m->snapshot;
        struct timeval t0, t1;
        gettimeofday(&t0, NULL);
        if (apply_snapshot(s, err, sizeof(err)) != SL_OK) {
            snprintf(S.last_error, sizeof(S.last_error), "%s", err);
            SL_ERROR("cluster: snapshot version %llu not applied, keeping version %llu: %s",
                     (unsigned long long)s->version, (unsigned long long)S.version, err);
            send_applied(s->version, err);
            return true;
        }
        gettimeofday(&t1, NULL);
        S.last_apply_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_usec - t0.tv_usec) / 1e3;
        S.snapshots++;
        S.last_error[0] = '\0';
        SL_NOTICE("cluster: applied snapshot version %llu (%s, %zu entities) in %.1f ms",
                  (unsigned long long)S.version, s->hash, json_object_size(S.entities),
                  S.last_apply_ms);
        send_applied(S.version, NULL);
        schedule_persist();
        return true;
    }
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_DELTA: {
        const Sluice__Cluster__Delta *d = m->delta;
        bool need = false;
        struct timeval t0, t1;
        gettimeofday(&t0, NULL);
        if (apply_delta(d, &need, err, sizeof(err)) != SL_OK) {
            snprintf(S.last_error, sizeof(S.last_error), "%s", err);
            SL_WARN("cluster: delta %llu -> %llu not applied, keeping version %llu: %s",
                    (unsigned long long)d->from_version, (unsigned long long)d->to_version,
                    (unsigned long long)S.version, err);
            if (need) {
                Sluice__Cluster__NeedSnapshot n = SLUICE__CLUSTER__NEED_SNAPSHOT__INIT;
                n.reason = err;
                sl_cmsg_t r = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
                r.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_NEED_SNAPSHOT;
                r.need_snapshot = &n;
                send_msg(&r);
            } else {
                send_applied(d->to_version, err);
            }
            return true;
        }
        gettimeofday(&t1, NULL);
        S.last_apply_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_usec - t0.tv_usec) / 1e3;
        S.deltas++;
        S.last_error[0] = '\0';
        SL_INFO("cluster: applied delta %llu -> %llu (%zu upserts, %zu deletes) in %.1f ms",
                (unsigned long long)d->from_version, (unsigned long long)d->to_version,
                d->n_upserts, d->n_deletes, S.last_apply_ms);
        send_applied(S.version, NULL);
        schedule_persist();
        return true;
    }
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_WITHHELD:
        SL_WARN("cluster: control plane withholds configuration version %llu (%.60s): %.400s",
                (unsigned long long)m->withheld->version, m->withheld->sync_status,
                m->withheld->message);
        return true;
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_PING:
        send_ping(true);
        return true;
    case SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_PONG:
        return true;
    default:
        snprintf(err, sizeof(err),
                 "control plane sent %s, which only a data plane sends; reconnecting",
                 sl_frame_name(m));
        disconnect(err);
        return false;
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        sl_cmsg_t *m = NULL;
        size_t before = evbuffer_get_length(in);
        int rc = sl_frame_read(in, S.conf->cluster_max_payload, &m);
        if (rc == SL_AGAIN)
            return;
        S.bytes_received += before - evbuffer_get_length(in);
        if (rc != SL_OK) {
            disconnect(rc == SL_ERR_TOO_BIG
                           ? "control plane sent a frame larger than cluster_max_payload; "
                             "reconnecting"
                           : "control plane sent a frame that is not a ClusterMessage; "
                             "reconnecting");
            return;
        }
        bool alive = on_message(m);
        sl_frame_free(m);
        if (!alive)
            return;
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    char msg[1024], why[300];
    if (what & BEV_EVENT_CONNECTED) {
        send_hello();
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        snprintf(msg, sizeof(msg),
                 "control plane %s:%d silent for 1.5 ping intervals; reconnecting", S.host, S.port);
    } else if (what & BEV_EVENT_EOF) {
        snprintf(msg, sizeof(msg), "control plane %s:%d closed the connection%s", S.host, S.port,
                 S.welcomed ? ""
                            : " during the handshake (is this data plane's certificate "
                              "the one it expects?)");
    } else {
        sl_cluster_tls_error(bufferevent_openssl_get_ssl(bev), why, sizeof(why));
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(msg, sizeof(msg), "cannot reach control plane %s:%d: %s", S.host, S.port,
                 *why ? why : evutil_socket_error_to_string(e));
    }
    disconnect(msg);
}

static void connect_cp(void)
{
    SSL *ssl = NULL;
    if (sl_cluster_tls_client_ssl(S.ctx, &S.tls, &ssl) != SL_OK) {
        disconnect("cannot create a TLS session");
        return;
    }
    S.bev = bufferevent_openssl_socket_new(S.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                           BEV_OPT_CLOSE_ON_FREE);
    if (!S.bev) {
        SSL_free(ssl);
        disconnect("cannot create a connection");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(S.bev, 1);
    bufferevent_setcb(S.bev, on_read, NULL, on_event, NULL);
    struct timeval tv = {10, 0};
    bufferevent_set_timeouts(S.bev, &tv, &tv);
    bufferevent_enable(S.bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect_hostname(S.bev, S.dns, AF_UNSPEC, S.host, S.port) != 0)
        disconnect("cannot start connecting to the control plane");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    connect_cp();
}

/* ------------------------------------------------------------------------ */
/* Set-up                                                                    */

static void load_node_id(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/node.id", S.conf->prefix);
    char *text;
    size_t len;
    if (sl_read_file(path, 4096, &text, &len) == SL_OK) {
        if (len >= 36) {
            memcpy(S.node_id, text, 36);
            S.node_id[36] = '\0';
        }
        free(text);
        if (sl_uuid_valid(S.node_id))
            return;
    }
    sl_uuid_v4(S.node_id);
    char line[40];
    snprintf(line, sizeof(line), "%s\n", S.node_id);
    if (sl_write_file_atomic(path, line, strlen(line)) != SL_OK)
        SL_WARN("cluster: cannot write %s: %s", path, strerror(errno));
}

int sl_dp_cluster_check(const sl_dp_conf_t *conf, sl_errors_t *errs)
{
    size_t before = errs->n;
    memset(&S.tls, 0, sizeof(S.tls));
    if (sl_cluster_mtls_parse(conf->cluster_mtls ? conf->cluster_mtls : "shared", &S.tls.mode) !=
        SL_OK)
        sl_errors_add(errs, "cluster_mtls: expected shared or pki, got '%s'", conf->cluster_mtls);
    const char *cp = conf->cluster_control_plane;
    const char *colon = cp ? strrchr(cp, ':') : NULL;
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == cp || (size_t)(colon - cp) >= sizeof(S.host) || !end || *end ||
        port < 1 || port > 65535) {
        sl_errors_add(errs, "cluster_control_plane: expected host:port, got '%s'", cp ? cp : "");
    } else {
        const char *h = cp;
        size_t hl = (size_t)(colon - cp);
        if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        snprintf(S.host, sizeof(S.host), "%.*s", (int)hl, h);
        S.port = (int)port;
    }
    S.tls.cert = conf->cluster_cert;
    S.tls.key = conf->cluster_cert_key;
    S.tls.ca_cert = conf->cluster_ca_cert;
    S.tls.server_name = conf->cluster_server_name ? conf->cluster_server_name : S.host;
    json_decref(S.labels);
    S.labels = json_object();
    char **items;
    size_t n = sl_conf_split(conf->cluster_dp_labels, &items);
    for (size_t i = 0; i < n; i++) {
        char *c = strchr(items[i], ':');
        if (!c || c == items[i] || strlen(items[i]) > 255)
            sl_errors_add(errs, "cluster_dp_labels: '%s' is not key:value", items[i]);
        else {
            *c = '\0';
            json_object_set_new(S.labels, items[i], json_string(c + 1));
        }
    }
    sl_conf_split_free(items, n);
    if (errs->n == before && S.tls.cert && S.tls.key) {
        SSL_CTX_free(S.ctx);
        S.ctx = NULL;
        sl_cluster_tls_client_ctx(&S.tls, &S.ctx, errs);
    }
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}

int sl_dp_cluster_start(struct event_base *base, const sl_dp_conf_t *conf, sl_errors_t *errs)
{
    S.conf = conf;
    S.base = base;
    if (!S.ctx && sl_dp_cluster_check(conf, errs) != SL_OK)
        return SL_ERR_INVALID;
    S.dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!S.dns)
        S.dns = evdns_base_new(base, 0);
    S.ping_ms = conf->cluster_ping_interval_ms;
    if (gethostname(S.hostname, sizeof(S.hostname) - 1) != 0)
        strcpy(S.hostname, "unknown");
    load_node_id();
    if (!S.entities)
        S.entities = json_object();
    S.retry = evtimer_new(base, on_retry, NULL);
    S.ping = evtimer_new(base, on_ping_timer, NULL);
    S.persist = evtimer_new(base, on_persist, NULL);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    srandom((unsigned)(tv.tv_usec ^ getpid()));
    SL_NOTICE("cluster: data plane %s connecting to control plane %s:%d", S.node_id, S.host,
              S.port);
    S.started = true;
    connect_cp();
    return SL_OK;
}

void sl_dp_cluster_stop(void)
{
    if (S.persist && evtimer_pending(S.persist, NULL))
        persist_now();
    if (S.bev) {
        bufferevent_free(S.bev);
        S.bev = NULL;
    }
    if (S.retry)
        event_free(S.retry);
    if (S.ping)
        event_free(S.ping);
    if (S.persist)
        event_free(S.persist);
    S.retry = S.ping = S.persist = NULL;
    if (S.dns)
        evdns_base_free(S.dns, 0);
    S.dns = NULL;
    SSL_CTX_free(S.ctx);
    S.ctx = NULL;
    json_decref(S.entities);
    S.entities = NULL;
    json_decref(S.labels);
    S.labels = NULL;
}

void sl_dp_cluster_status(struct evbuffer *body)
{
    if (!S.started)
        return;
    char *cp = sl_xasprintf("%s:%d", S.host, S.port);
    json_t *o =
        json_pack("{s:b,s:s,s:I,s:I,s:I,s:f,s:s?}", "connected", S.welcomed, "control_plane", cp,
                  "bytes_received", (json_int_t)S.bytes_received, "snapshots_applied",
                  (json_int_t)S.snapshots, "deltas_applied", (json_int_t)S.deltas, "last_apply_ms",
                  S.last_apply_ms, "last_error", S.last_error[0] ? S.last_error : NULL);
    free(cp);
    char *text = json_dumps(o, JSON_COMPACT);
    evbuffer_add_printf(body, ",\"cluster\":%s", text);
    free(text);
    json_decref(o);
}
