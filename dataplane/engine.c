/*
 * engine.c: the plugin engine (see plugin.h for the model, engine.h for the
 * interface).
 *
 * Building (on whichever thread builds a generation): consumers and their
 * ACL groups, the credential tables indexed by their lookup key, every
 * enabled plugin instance with its config read by its implementation, and a
 * chain per route. A chain lists, in execution order (PRIORITY descending,
 * then name descending, as Kong), each plugin that can apply to the route:
 * its best instance by route and service scope (route+service, route,
 * service, global), and whether a consumer-scoped instance might take over
 * once a consumer is known. Routes that no instance names share one chain.
 *
 * Running (on a worker thread, per request): the access phase walks the
 * chain and resolves each plugin when it is reached, so a consumer set by a
 * higher-priority plugin selects consumer-scoped instances below it. Each
 * resolved instance is collected (after an answer in access the rest are
 * collected without running their access handlers); header_filter and log
 * run over what was collected. Everything a run allocates lives in the request's arena.
 */
#include "engine.h"
#include "log.h"
#include "pdk.h"
#include "router.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kong's scope ranks (kong-compat.md 6.2): lower wins. */
enum {
    RANK_ROUTE_SERVICE_CONSUMER = 1,
    RANK_ROUTE_CONSUMER = 2,
    RANK_SERVICE_CONSUMER = 3,
    RANK_ROUTE_SERVICE = 4,
    RANK_CONSUMER = 5,
    RANK_ROUTE = 6,
    RANK_SERVICE = 7,
    RANK_GLOBAL = 8,
};

struct chain_entry {
    const sl_plugin_info_t *info;
    const sl_native_plugin_t *impl;
    const sl_plugin_inst_t *nc; /* best instance without a consumer; may be NULL */
    int nc_rank;
    bool by_consumer; /* a consumer-scoped instance may apply here */
};

struct sl_chain_s {
    unsigned phases;
    int body_need;            /* the most an instance needs of the request body (BODY_*) */
    bool wants_response_body; /* some instance has response / body_filter work */
    size_t n;
    struct chain_entry e[];
};

/* One plugin name's instances, for building chains. */
struct plugin_group {
    const sl_plugin_info_t *info;
    const sl_native_plugin_t *impl;
    const sl_plugin_inst_t *global;
    json_t *by_route, *by_service, *by_route_service; /* key -> instance index */
    bool any_consumer;
    json_t *consumer_scoped; /* array of instance indexes */
};

struct sl_gen_plugins_s {
    sl_consumer_t *consumers;
    size_t nconsumers;
    json_t *consumer_index; /* id and username -> index */
    sl_credential_t *creds;
    size_t ncreds;
    json_t *cred_index; /* "table\x1fkey" -> index */
    sl_plugin_inst_t *insts;
    size_t ninsts;
    unsigned *inst_protocols;
    json_t *consumer_insts; /* "name\x1froute\x1fservice\x1fconsumer" -> index */
    struct sl_chain_s *global_chain;
    struct sl_chain_s **chains; /* owned, one per distinct chain */
    size_t nchains;
};

#define KEY_SEP "\x1f"

/* ------------------------------------------------------------------------ */
/* Reading the document                                                      */

static const char *str_of(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The id of a foreign key field ({"id": "..."}), or NULL. */
static const char *fk_of(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_object(v) ? str_of(v, "id") : NULL;
}

static size_t index_of(const json_t *v)
{
    return (size_t)json_integer_value(v);
}

static int build_consumers(struct sl_gen_plugins_s *gp, json_t *doc, sl_errors_t *errs)
{
    json_t *cs = json_object_get(doc, "consumers");
    size_t n = json_array_size(cs);
    gp->consumers = sl_xcalloc(n ? n : 1, sizeof(*gp->consumers));
    gp->consumer_index = json_object();
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(cs, i);
        sl_consumer_t *x = &gp->consumers[gp->nconsumers];
        x->id = str_of(c, "id");
        if (!x->id) {
            sl_errors_add(errs, "consumers[%zu].id: must be a string", i);
            continue;
        }
        x->username = str_of(c, "username");
        x->json = c;
        x->custom_id = str_of(c, "custom_id");
        json_object_set_new(gp->consumer_index, x->id, json_integer((json_int_t)gp->nconsumers));
        gp->nconsumers++;
    }
    /* Usernames second: an id wins over a username that spells it. */
    for (size_t i = 0; i < gp->nconsumers; i++) {
        const sl_consumer_t *x = &gp->consumers[i];
        if (x->username && !json_object_get(gp->consumer_index, x->username))
            json_object_set_new(gp->consumer_index, x->username, json_integer((json_int_t)i));
    }

    /* ACL groups, in table order per consumer. */
    json_t *acls = json_object_get(doc, "acls");
    size_t na = json_array_size(acls);
    for (size_t i = 0; i < na; i++) {
        const json_t *a = json_array_get(acls, i);
        const char *cid = fk_of(a, "consumer"), *group = str_of(a, "group");
        json_t *ix = cid ? json_object_get(gp->consumer_index, cid) : NULL;
        if (!ix || !group) {
            sl_errors_add(errs, "acls[%zu]: needs a group and an existing consumer", i);
            continue;
        }
        sl_consumer_t *x = &gp->consumers[index_of(ix)];
        x->groups = sl_xrealloc(x->groups, (x->ngroups + 1) * sizeof(*x->groups));
        x->groups[x->ngroups++] = group;
    }
    return SL_OK;
}

/* The credential tables and the field each is found by. */
static const struct {
    const char *table, *key;
} cred_tables[] = {
    {"keyauth_credentials", "key"},
    {"basicauth_credentials", "username"},
    {"jwt_secrets", "key"},
};

static void build_credentials(struct sl_gen_plugins_s *gp, json_t *doc, sl_errors_t *errs)
{
    size_t total = 0;
    for (size_t t = 0; t < SL_ARRAY_LEN(cred_tables); t++)
        total += json_array_size(json_object_get(doc, cred_tables[t].table));
    gp->creds = sl_xcalloc(total ? total : 1, sizeof(*gp->creds));
    gp->cred_index = json_object();
    for (size_t t = 0; t < SL_ARRAY_LEN(cred_tables); t++) {
        json_t *rows = json_object_get(doc, cred_tables[t].table);
        for (size_t i = 0; i < json_array_size(rows); i++) {
            const json_t *row = json_array_get(rows, i);
            const char *id = str_of(row, "id"), *key = str_of(row, cred_tables[t].key);
            const char *cid = fk_of(row, "consumer");
            json_t *ix = cid ? json_object_get(gp->consumer_index, cid) : NULL;
            if (!id || !key || !ix) {
                sl_errors_add(errs, "%s[%zu]: needs an id, a %s and an existing consumer",
                              cred_tables[t].table, i, cred_tables[t].key);
                continue;
            }
            sl_credential_t *c = &gp->creds[gp->ncreds];
            c->id = id;
            c->consumer = &gp->consumers[index_of(ix)];
            c->row = row;
            char *k = sl_xasprintf("%s" KEY_SEP "%s", cred_tables[t].table, key);
            json_object_set_new(gp->cred_index, k, json_integer((json_int_t)gp->ncreds));
            free(k);
            gp->ncreds++;
        }
    }
}

static unsigned protocols_of(const json_t *plugin)
{
    const json_t *ps = json_object_get(plugin, "protocols");
    if (!json_is_array(ps))
        return SL_PROTO_HTTP | SL_PROTO_HTTPS;
    unsigned bits = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(ps, i, v)
    {
        const char *s = json_string_value(v);
        if (s && (!strcmp(s, "http") || !strcmp(s, "grpc")))
            bits |= SL_PROTO_HTTP;
        else if (s && (!strcmp(s, "https") || !strcmp(s, "grpcs")))
            bits |= SL_PROTO_HTTPS;
    }
    return bits;
}

static void build_instances(struct sl_gen_plugins_s *gp, json_t *doc, sl_errors_t *errs)
{
    json_t *ps = json_object_get(doc, "plugins");
    size_t n = json_array_size(ps);
    gp->insts = sl_xcalloc(n ? n : 1, sizeof(*gp->insts));
    gp->inst_protocols = sl_xcalloc(n ? n : 1, sizeof(*gp->inst_protocols));
    for (size_t i = 0; i < n; i++) {
        const json_t *pv = json_array_get(ps, i);
        if (json_is_false(json_object_get(pv, "enabled")))
            continue;
        const char *name = str_of(pv, "name"), *id = str_of(pv, "id");
        if (!name || !id) {
            sl_errors_add(errs, "plugins[%zu]: needs a name and an id", i);
            continue;
        }
        const sl_plugin_info_t *info = sl_plugins_find(name);
        if (!info) {
            sl_errors_add(errs,
                          "plugins[%zu].name: plugin '%s' not enabled; add it to the 'plugins' "
                          "configuration property",
                          i, name);
            continue;
        }
        const sl_native_plugin_t *impl = sl_plugin_impl(info);
        if (!impl) {
            sl_errors_add(errs,
                          "plugins[%zu].name: plugin '%s' is not available on this data plane", i,
                          name);
            continue;
        }
        const json_t *config = json_object_get(pv, "config");
        if (!json_is_object(config)) {
            sl_errors_add(errs, "plugins[%zu].config: must be an object", i);
            continue;
        }
        char err[512] = "";
        void *conf = impl->configure_entity ? impl->configure_entity(info, pv, err, sizeof(err))
                     : impl->configure      ? impl->configure(config, id, err, sizeof(err))
                                            : NULL;
        if ((impl->configure || impl->configure_entity) && !conf) {
            sl_errors_add(errs, "plugins[%zu] (%s): %s", i, name,
                          err[0] ? err : "the configuration cannot be used");
            continue;
        }
        sl_plugin_inst_t *x = &gp->insts[gp->ninsts];
        x->id = id;
        x->info = info;
        x->impl = impl;
        x->conf = conf;
        x->route_id = fk_of(pv, "route");
        x->service_id = fk_of(pv, "service");
        x->consumer_id = fk_of(pv, "consumer");
        gp->inst_protocols[gp->ninsts] = protocols_of(pv);
        gp->ninsts++;
    }
}

/* ------------------------------------------------------------------------ */
/* Chains                                                                    */

/* Kong's order: PRIORITY descending, then name descending. */
static int cmp_groups(const void *a, const void *b)
{
    const struct plugin_group *x = a, *y = b;
    if (x->info->priority != y->info->priority)
        return x->info->priority > y->info->priority ? -1 : 1;
    return -strcmp(x->info->name, y->info->name);
}

static void set_index(json_t *map, const char *key, size_t i)
{
    json_object_set_new(map, key, json_integer((json_int_t)i));
}

static const sl_plugin_inst_t *inst_at(const struct sl_gen_plugins_s *gp, const json_t *map,
                                       const char *key)
{
    const json_t *ix = key ? json_object_get(map, key) : NULL;
    return ix ? &gp->insts[index_of(ix)] : NULL;
}

/* Groups instances by plugin name, in execution order. */
static struct plugin_group *group_instances(struct sl_gen_plugins_s *gp, size_t *ngroups)
{
    struct plugin_group *gs = sl_xcalloc(gp->ninsts ? gp->ninsts : 1, sizeof(*gs));
    size_t n = 0;
    gp->consumer_insts = json_object();
    for (size_t i = 0; i < gp->ninsts; i++) {
        const sl_plugin_inst_t *x = &gp->insts[i];
        struct plugin_group *g = NULL;
        for (size_t k = 0; k < n && !g; k++)
            if (gs[k].info == x->info)
                g = &gs[k];
        if (!g) {
            g = &gs[n++];
            g->info = x->info;
            g->impl = x->impl;
            g->by_route = json_object();
            g->by_service = json_object();
            g->by_route_service = json_object();
            g->consumer_scoped = json_array();
        }
        if (x->consumer_id) {
            char *k = sl_xasprintf("%s" KEY_SEP "%s" KEY_SEP "%s" KEY_SEP "%s", x->info->name,
                                   x->route_id ? x->route_id : "",
                                   x->service_id ? x->service_id : "", x->consumer_id);
            set_index(gp->consumer_insts, k, i);
            free(k);
            g->any_consumer = true;
            json_array_append_new(g->consumer_scoped, json_integer((json_int_t)i));
        } else if (x->route_id && x->service_id) {
            char *k = sl_xasprintf("%s" KEY_SEP "%s", x->route_id, x->service_id);
            set_index(g->by_route_service, k, i);
            free(k);
        } else if (x->route_id) {
            set_index(g->by_route, x->route_id, i);
        } else if (x->service_id) {
            set_index(g->by_service, x->service_id, i);
        } else {
            g->global = x;
        }
    }
    qsort(gs, n, sizeof(*gs), cmp_groups);
    *ngroups = n;
    return gs;
}

/* What an instance needs of the request body: BODY_NONE, BODY_IF_FITS
 * (in client_body_buffer_size) or BODY_WHOLE. */
enum { BODY_NONE, BODY_IF_FITS, BODY_WHOLE };

static int inst_body_need(const sl_plugin_inst_t *x)
{
    if (!x || !x->impl->wants_body || !x->impl->wants_body(x->conf))
        return BODY_NONE;
    return x->impl->body_if_fits ? BODY_IF_FITS : BODY_WHOLE;
}

static bool inst_wants_response_body(const sl_plugin_inst_t *x)
{
    return x && (x->impl->response || x->impl->body_filter) &&
           (!x->impl->wants_response_body || x->impl->wants_response_body(x->conf));
}

/* Whether some consumer-scoped instance of g may apply to (route, service);
 * *body is raised to what those need of the request body, and *resp_body
 * set when one wants the whole response. */
static bool consumer_may_apply(const struct sl_gen_plugins_s *gp, const struct plugin_group *g,
                               const char *rid, const char *sid, int *body, bool *resp_body)
{
    size_t i;
    const json_t *v;
    bool any = false;
    json_array_foreach(g->consumer_scoped, i, v)
    {
        const sl_plugin_inst_t *x = &gp->insts[index_of(v)];
        if ((!x->route_id || (rid && !strcmp(x->route_id, rid))) &&
            (!x->service_id || (sid && !strcmp(x->service_id, sid)))) {
            any = true;
            *body = SL_MAX(*body, inst_body_need(x));
            *resp_body |= inst_wants_response_body(x);
        }
    }
    return any;
}

/* The chain for a route (rid may be NULL: the chain without a route). */
static struct sl_chain_s *build_chain(const struct sl_gen_plugins_s *gp,
                                      const struct plugin_group *gs, size_t ng, const char *rid,
                                      const char *sid)
{
    struct sl_chain_s *c = sl_xcalloc(1, sizeof(*c) + ng * sizeof(c->e[0]));
    for (size_t k = 0; k < ng; k++) {
        const struct plugin_group *g = &gs[k];
        struct chain_entry e = {.info = g->info, .impl = g->impl};
        char *rs = rid && sid ? sl_xasprintf("%s" KEY_SEP "%s", rid, sid) : NULL;
        if ((e.nc = inst_at(gp, g->by_route_service, rs)))
            e.nc_rank = RANK_ROUTE_SERVICE;
        else if ((e.nc = inst_at(gp, g->by_route, rid)))
            e.nc_rank = RANK_ROUTE;
        else if ((e.nc = inst_at(gp, g->by_service, sid)))
            e.nc_rank = RANK_SERVICE;
        else if ((e.nc = g->global))
            e.nc_rank = RANK_GLOBAL;
        free(rs);
        /* The request body and the whole response are read on this route
         * only for the instances that may run on it. */
        int body = inst_body_need(e.nc);
        bool resp_body = inst_wants_response_body(e.nc);
        e.by_consumer = g->any_consumer && consumer_may_apply(gp, g, rid, sid, &body, &resp_body);
        if (!e.nc && !e.by_consumer)
            continue;
        c->phases |= g->info->phases;
        c->body_need = SL_MAX(c->body_need, body);
        c->wants_response_body |= resp_body;
        c->e[c->n++] = e;
    }
    return c;
}

static void keep_chain(struct sl_gen_plugins_s *gp, struct sl_chain_s *c)
{
    gp->chains = sl_xrealloc(gp->chains, (gp->nchains + 1) * sizeof(*gp->chains));
    gp->chains[gp->nchains++] = c;
}

static void build_chains(sl_gen_t *g, struct sl_gen_plugins_s *gp)
{
    size_t ng;
    struct plugin_group *gs = group_instances(gp, &ng);
    gp->global_chain = build_chain(gp, gs, ng, NULL, NULL);
    keep_chain(gp, gp->global_chain);
    const struct sl_chain_s *shared = gp->global_chain->n ? gp->global_chain : NULL;

    /* Instances scoped to routes or services: which ones are named, so that
     * every other route shares the global chain. */
    json_t *named = json_object();
    for (size_t i = 0; i < gp->ninsts; i++) {
        const sl_plugin_inst_t *x = &gp->insts[i];
        if (x->route_id)
            json_object_set_new(named, x->route_id, json_true());
        if (x->service_id)
            json_object_set_new(named, x->service_id, json_true());
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        sl_route_t *r = &g->routes[i];
        const char *sid = r->service ? r->service->id : NULL;
        bool own = (r->id && json_object_get(named, r->id)) || (sid && json_object_get(named, sid));
        if (!own) {
            r->chain = shared;
            continue;
        }
        struct sl_chain_s *c = build_chain(gp, gs, ng, r->id, sid);
        keep_chain(gp, c);
        r->chain = c->n ? c : NULL;
    }
    json_decref(named);
    for (size_t k = 0; k < ng; k++) {
        json_decref(gs[k].by_route);
        json_decref(gs[k].by_service);
        json_decref(gs[k].by_route_service);
        json_decref(gs[k].consumer_scoped);
    }
    free(gs);
}

int sl_engine_build(sl_gen_t *g, json_t *doc, sl_errors_t *errs)
{
    size_t before = errs->n;
    struct sl_gen_plugins_s *gp = sl_xcalloc(1, sizeof(*gp));
    g->plugins = gp;
    build_consumers(gp, doc, errs);
    build_credentials(gp, doc, errs);
    build_instances(gp, doc, errs);
    if (errs->n > before)
        return SL_ERR_INVALID;
    build_chains(g, gp);
    return SL_OK;
}

void sl_engine_free(struct sl_gen_plugins_s *gp)
{
    if (!gp)
        return;
    for (size_t i = 0; i < gp->nconsumers; i++)
        free(gp->consumers[i].groups);
    free(gp->consumers);
    json_decref(gp->consumer_index);
    free(gp->creds);
    json_decref(gp->cred_index);
    for (size_t i = 0; i < gp->ninsts; i++)
        if (gp->insts[i].impl->dispose)
            gp->insts[i].impl->dispose(gp->insts[i].conf);
    free(gp->insts);
    free(gp->inst_protocols);
    json_decref(gp->consumer_insts);
    for (size_t i = 0; i < gp->nchains; i++)
        free(gp->chains[i]);
    free(gp->chains);
    free(gp);
}

const struct sl_chain_s *sl_engine_global_chain(const sl_gen_t *g)
{
    return g->plugins && g->plugins->global_chain && g->plugins->global_chain->n
               ? g->plugins->global_chain
               : NULL;
}

const sl_consumer_t *sl_engine_consumer(const sl_gen_t *g, const char *id_or_username)
{
    const struct sl_gen_plugins_s *gp = g->plugins;
    const json_t *ix =
        gp && id_or_username ? json_object_get(gp->consumer_index, id_or_username) : NULL;
    return ix ? &gp->consumers[index_of(ix)] : NULL;
}

const sl_credential_t *sl_engine_credential(const sl_gen_t *g, const char *table, const char *key)
{
    const struct sl_gen_plugins_s *gp = g->plugins;
    if (!gp || !table || !key || !gp->ncreds)
        return NULL;
    /* On every authenticated request: built by hand, not by snprintf. */
    char buf[512];
    size_t tl = strlen(table), kl = strlen(key), sl = sizeof(KEY_SEP) - 1;
    size_t n = tl + sl + kl;
    /* Keys have no length limit: a long one takes an allocation. */
    char *k = n < sizeof(buf) ? buf : sl_xmalloc(n + 1);
    memcpy(k, table, tl);
    memcpy(k + tl, KEY_SEP, sl);
    memcpy(k + tl + sl, key, kl + 1);
    const json_t *ix = json_object_getn(gp->cred_index, k, n);
    if (k != buf)
        free(k);
    return ix ? &gp->creds[index_of(ix)] : NULL;
}

unsigned sl_engine_chain_phases(const struct sl_chain_s *chain)
{
    return chain ? chain->phases : 0;
}

bool sl_engine_chain_wants_body(const struct sl_chain_s *chain)
{
    return chain && chain->body_need != BODY_NONE;
}

bool sl_engine_chain_body_required(const struct sl_chain_s *chain)
{
    return chain && chain->body_need == BODY_WHOLE;
}

bool sl_engine_chain_wants_response_body(const struct sl_chain_s *chain)
{
    return chain && chain->wants_response_body;
}

/* ------------------------------------------------------------------------ */
/* Running                                                                   */

void sl_engine_run_init(sl_plugin_run_t *run, const struct sl_chain_s *chain, sl_arena_t *arena)
{
    memset(run, 0, sizeof(*run));
    run->chain = chain;
    if (chain && chain->n) {
        run->ran = sl_arena_alloc(arena, chain->n * sizeof(*run->ran));
        run->slots = sl_arena_zalloc(arena, chain->n * sizeof(*run->slots));
    }
}

/* The instance of entry e for this request: consumer-scoped ones first when
 * a consumer is known (ranks 1-3, then route+service, then consumer-only). */
static const sl_plugin_inst_t *resolve(sl_pdk_t *p, const struct chain_entry *e)
{
    const sl_consumer_t *c = e->by_consumer ? sl_pdk_client_get_consumer(p) : NULL;
    if (!c)
        return e->nc;
    const sl_plugin_inst_t *x;
    const sl_gen_t *g = sl_pdk_gen(p);
    const sl_route_t *r = sl_pdk_router_get_route(p);
    const sl_service_t *s = sl_pdk_router_get_service(p);
    const char *rid = r ? r->id : NULL, *sid = s ? s->id : NULL;
    char key[512];
#define TRY(R, S)                                                                                  \
    do {                                                                                           \
        int n_ = snprintf(key, sizeof(key), "%s" KEY_SEP "%s" KEY_SEP "%s" KEY_SEP "%s",           \
                          e->info->name, (R) ? (R) : "", (S) ? (S) : "", c->id);                   \
        if (n_ > 0 && (size_t)n_ < sizeof(key) &&                                                  \
            (x = inst_at(g->plugins, g->plugins->consumer_insts, key)))                            \
            return x;                                                                              \
    } while (0)
    if (rid && sid)
        TRY(rid, sid);
    if (rid)
        TRY(rid, NULL);
    if (sid)
        TRY(NULL, sid);
    if (e->nc && e->nc_rank == RANK_ROUTE_SERVICE)
        return e->nc;
    TRY(NULL, NULL);
#undef TRY
    return e->nc;
}

size_t sl_engine_chain_len(const struct sl_chain_s *chain)
{
    return chain ? chain->n : 0;
}

const sl_plugin_info_t *sl_engine_chain_plugin(const struct sl_chain_s *chain, size_t i)
{
    return chain && i < chain->n ? chain->e[i].info : NULL;
}

const sl_plugin_inst_t *sl_engine_resolve(sl_pdk_t *p, const struct sl_chain_s *chain, size_t i)
{
    return chain && i < chain->n ? resolve(p, &chain->e[i]) : NULL;
}

static bool runs_on(const sl_pdk_t *p, const sl_plugin_inst_t *x, unsigned scheme)
{
    const struct sl_gen_plugins_s *gp = sl_pdk_gen((sl_pdk_t *)p)->plugins;
    return (gp->inst_protocols[x - gp->insts] & scheme) != 0;
}

static void enter(sl_plugin_run_t *run, size_t k)
{
    run->current = run->ran[k];
    run->current_slot = &run->slots[k];
}

static void leave(sl_plugin_run_t *run)
{
    run->current = NULL;
    run->current_slot = NULL;
}

/* After an answer in access, Kong still collects the plugins that were not
 * reached (without running their access handlers): their header_filter and
 * log see the answer (a log plugin records key-auth's 401). */
static void collect_rest(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme)
{
    const struct sl_chain_s *c = run->chain;
    while (c && run->next < c->n) {
        const sl_plugin_inst_t *x = resolve(p, &c->e[run->next++]);
        if (x && runs_on(p, x, scheme))
            run->ran[run->nran++] = x;
    }
}

int sl_engine_access(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme)
{
    const struct sl_chain_s *c = run->chain;
    while (c && run->next < c->n) {
        const struct chain_entry *e = &c->e[run->next++];
        const sl_plugin_inst_t *x = resolve(p, e);
        if (!x || !runs_on(p, x, scheme))
            continue;
        size_t k = run->nran++;
        run->ran[k] = x;
        if (!x->impl->access)
            continue;
        enter(run, k);
        int rc = x->impl->access(p, x->conf);
        leave(run);
        if (rc == SL_PLUGIN_SUSPEND) {
            run->current = x; /* the resumed handler's */
            run->current_slot = &run->slots[k];
            return rc;
        }
        if (rc == SL_PLUGIN_EXIT) {
            run->exited = true;
            collect_rest(p, run, scheme);
            return rc;
        }
    }
    return SL_PLUGIN_CONTINUE;
}

int sl_engine_access_resumed(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme, int rc)
{
    leave(run);
    if (rc == SL_PLUGIN_EXIT) {
        run->exited = true;
        collect_rest(p, run, scheme);
        return rc;
    }
    return sl_engine_access(p, run, scheme);
}

void sl_engine_collect_global(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme)
{
    const struct sl_chain_s *c = run->chain;
    for (size_t i = 0; c && i < c->n; i++) {
        const struct chain_entry *e = &c->e[i];
        if (e->nc && e->nc_rank == RANK_GLOBAL && runs_on(p, e->nc, scheme))
            run->ran[run->nran++] = e->nc;
    }
}

/* Handler of a phase that may wait, by phase bit. */
static int (*waiting_handler(const sl_native_plugin_t *impl, unsigned phase))(sl_pdk_t *, void *)
{
    switch (phase) {
    case SL_PHASE_CERTIFICATE:
        return impl->certificate;
    case SL_PHASE_REWRITE:
        return impl->rewrite;
    case SL_PHASE_RESPONSE:
        return impl->response;
    default:
        return impl->log;
    }
}

/* Runs run->phase's handlers of the collected plugins from run->pos on. */
static int run_waiting(sl_pdk_t *p, sl_plugin_run_t *run)
{
    while (run->pos < run->nran) {
        size_t k = run->pos++;
        const sl_plugin_inst_t *x = run->ran[k];
        int (*h)(sl_pdk_t *, void *) = waiting_handler(x->impl, run->phase);
        if (!h)
            continue;
        enter(run, k);
        int rc = h(p, x->conf);
        if (rc == SL_PLUGIN_SUSPEND)
            return rc; /* current stays set for the resumed handler */
        leave(run);
    }
    if (run->phase == SL_PHASE_RESPONSE)
        sl_engine_body_filter(p, run);
    return SL_PLUGIN_CONTINUE;
}

static int start_waiting(sl_pdk_t *p, sl_plugin_run_t *run, unsigned phase)
{
    run->phase = phase;
    run->pos = 0;
    return run_waiting(p, run);
}

int sl_engine_response(sl_pdk_t *p, sl_plugin_run_t *run)
{
    return start_waiting(p, run, SL_PHASE_RESPONSE);
}

int sl_engine_log(sl_pdk_t *p, sl_plugin_run_t *run)
{
    return start_waiting(p, run, SL_PHASE_LOG);
}

int sl_engine_rewrite(sl_pdk_t *p, sl_plugin_run_t *run)
{
    return start_waiting(p, run, SL_PHASE_REWRITE);
}

int sl_engine_certificate(sl_pdk_t *p, sl_plugin_run_t *run)
{
    return start_waiting(p, run, SL_PHASE_CERTIFICATE);
}

int sl_engine_resumed(sl_pdk_t *p, sl_plugin_run_t *run, int rc)
{
    leave(run);
    (void)rc; /* only access handlers can answer */
    return run_waiting(p, run);
}

void sl_engine_body_filter(sl_pdk_t *p, sl_plugin_run_t *run)
{
    for (size_t k = 0; k < run->nran; k++) {
        const sl_plugin_inst_t *x = run->ran[k];
        if (x->impl->body_filter) {
            enter(run, k);
            x->impl->body_filter(p, x->conf);
            leave(run);
        }
    }
}

void sl_engine_header_filter(sl_pdk_t *p, sl_plugin_run_t *run)
{
    for (size_t k = 0; k < run->nran; k++) {
        const sl_plugin_inst_t *x = run->ran[k];
        if (!x->impl->header_filter)
            continue;
        enter(run, k);
        x->impl->header_filter(p, x->conf);
        leave(run);
    }
}

const char *sl_engine_current_name(const sl_plugin_run_t *run)
{
    return run->current ? run->current->info->name : "";
}
