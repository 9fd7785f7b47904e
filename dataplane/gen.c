/*
 * gen.c builds, publishes and frees configuration generations.
 *
 * Building runs on the main thread (start-up and SIGHUP). It reads the
 * normalised document, resolves the references between entities into
 * pointers, pre-parses what requests would otherwise parse again (IP
 * literals, Host header values, round-robin wheels) and builds the router.
 * Workers only ever read a generation.
 */
#include "gen.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_gen_t *gen_current;
static atomic_bool gen_is_ready;

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static char *jdup(json_t *o, const char *key)
{
    const char *s = jstr(o, key);
    return s ? sl_xstrdup(s) : NULL;
}

static int64_t jint(json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static bool jbool(json_t *o, const char *key, bool dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* The id of a foreign key {"id": "..."}; NULL when null. */
static const char *jfk(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_object(v))
        return jstr(v, "id");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool parse_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    char buf[64];
    memset(ss, 0, sizeof(*ss));
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, hl - 2);
        buf[hl - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
        return true;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
        return true;
    }
    return false;
}

static char *host_header(const char *host, uint16_t port, bool https)
{
    char buf[512];
    if ((https && port == 443) || (!https && port == 80))
        snprintf(buf, sizeof(buf), "%s", host);
    else
        snprintf(buf, sizeof(buf), "%s:%u", host, port);
    return sl_xstrdup(buf);
}

static unsigned gcd(unsigned a, unsigned b)
{
    while (b) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Kong's round-robin: weights reduced by their GCD, each target placed
 * weight/gcd times, interleaved so consecutive picks spread out. */
static void build_wheel(sl_upstream_t *u)
{
    unsigned g = 0;
    size_t total = 0;
    for (size_t i = 0; i < u->ntargets; i++)
        g = gcd(g, u->targets[i].weight);
    if (g == 0)
        return;
    for (size_t i = 0; i < u->ntargets; i++)
        total += u->targets[i].weight / g;
    if (total > 65536)
        total = 65536;
    u->wheel = sl_xmalloc(total * sizeof(unsigned));
    unsigned *left = sl_xcalloc(u->ntargets, sizeof(unsigned));
    for (size_t i = 0; i < u->ntargets; i++)
        left[i] = u->targets[i].weight / g;
    /* Smooth weighted round-robin: deterministic and well spread. */
    long *cur = sl_xcalloc(u->ntargets, sizeof(long));
    long sum = 0;
    for (size_t i = 0; i < u->ntargets; i++)
        sum += left[i];
    for (size_t k = 0; k < total; k++) {
        size_t best = 0;
        for (size_t i = 0; i < u->ntargets; i++) {
            cur[i] += left[i];
            if (cur[i] > cur[best])
                best = i;
        }
        cur[best] -= sum;
        u->wheel[k] = (unsigned)best;
    }
    u->wheel_len = total;
    free(cur);
    free(left);
}

static int build_upstreams(sl_gen_t *g, json_t *doc, sl_errors_t *errs)
{
    json_t *ups = json_object_get(doc, "upstreams");
    json_t *tgts = json_object_get(doc, "targets");
    g->nupstreams = json_array_size(ups);
    g->upstreams = sl_xcalloc(g->nupstreams, sizeof(sl_upstream_t));
    /* The targets of each upstream, grouped once: upstream id -> [index]. */
    json_t *groups = json_object();
    for (size_t t = 0; t < json_array_size(tgts); t++) {
        const char *uid = jfk(json_array_get(tgts, t), "upstream");
        if (!uid)
            continue;
        json_t *l = json_object_get(groups, uid);
        if (!l)
            json_object_set_new(groups, uid, l = json_array());
        json_array_append_new(l, json_integer((json_int_t)t));
    }
    g->upstream_index = json_object();
    for (size_t i = 0; i < g->nupstreams; i++) {
        json_t *ju = json_array_get(ups, i);
        sl_upstream_t *u = &g->upstreams[i];
        u->id = jdup(ju, "id");
        u->name = jdup(ju, "name");
        u->host_header = jdup(ju, "host_header");
        if (u->name) {
            char *lower = sl_xstrdup(u->name);
            for (char *c = lower; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!json_object_get(g->upstream_index, lower))
                json_object_set_new(g->upstream_index, lower, json_integer((json_int_t)i));
            free(lower);
        }
        json_t *mine = u->id ? json_object_get(groups, u->id) : NULL;
        size_t nt = json_array_size(mine);
        u->targets = sl_xcalloc(nt ? nt : 1, sizeof(sl_target_t));
        for (size_t m = 0; m < nt; m++) {
            size_t t = (size_t)json_integer_value(json_array_get(mine, m));
            json_t *jt = json_array_get(tgts, t);
            const char *target = jstr(jt, "target");
            int64_t weight = jint(jt, "weight", 100);
            if (!target || weight <= 0)
                continue;
            sl_target_t *tg = &u->targets[u->ntargets];
            /* "host:port", "[v6]:port", "host" or a bare IPv6 address (port 8000). */
            const char *colon = strrchr(target, ':');
            uint64_t port = 8000;
            size_t hostlen = strlen(target);
            bool has_port = target[0] == '[' ? (colon && colon > strchr(target, ']'))
                                             : (colon && colon == strchr(target, ':'));
            if (has_port) {
                if (sl_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) != SL_OK) {
                    sl_errors_add(errs, "targets[%zu].target: invalid port in '%s'", t, target);
                    continue;
                }
                hostlen = (size_t)(colon - target);
            }
            tg->host = sl_xstrndup(target, hostlen);
            tg->port = (uint16_t)port;
            tg->weight = (unsigned)weight;
            tg->is_ip = parse_ip(tg->host, tg->port, &tg->addr, &tg->addrlen);
            u->ntargets++;
        }
        build_wheel(u);
    }
    json_decref(groups);
    return SL_OK;
}

static const sl_upstream_t *find_upstream(const sl_gen_t *g, const char *name)
{
    if (!g->upstream_index || !name)
        return NULL;
    char *lower = sl_xstrdup(name);
    for (char *c = lower; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    json_t *i = json_object_get(g->upstream_index, lower);
    free(lower);
    return i ? &g->upstreams[json_integer_value(i)] : NULL;
}

static int build_services(sl_gen_t *g, json_t *doc, sl_errors_t *errs)
{
    json_t *svcs = json_object_get(doc, "services");
    g->nservices = json_array_size(svcs);
    g->services = sl_xcalloc(g->nservices, sizeof(sl_service_t));
    g->service_index = json_object();
    for (size_t i = 0; i < g->nservices; i++) {
        json_t *js = json_array_get(svcs, i);
        sl_service_t *s = &g->services[i];
        s->id = jdup(js, "id");
        if (s->id && !json_object_get(g->service_index, s->id))
            json_object_set_new(g->service_index, s->id, json_integer((json_int_t)i));
        s->name = jdup(js, "name");
        s->label = s->name ? s->name : s->id ? s->id : "";
        s->host = jdup(js, "host");
        s->path = jdup(js, "path");
        const char *proto = jstr(js, "protocol");
        if (proto && strcmp(proto, "http") && strcmp(proto, "https"))
            sl_errors_add(errs,
                          "services[%zu].protocol: '%s' is not supported by this data plane yet "
                          "(use http)",
                          i, proto);
        if (proto && !strcmp(proto, "https"))
            sl_errors_add(errs,
                          "services[%zu].protocol: https upstreams are not supported by this data "
                          "plane yet (use http)",
                          i);
        s->https = proto && !strcmp(proto, "https");
        s->port = (uint16_t)jint(js, "port", 80);
        s->retries = (int)jint(js, "retries", 5);
        s->connect_timeout_ms = (uint32_t)jint(js, "connect_timeout", 60000);
        s->read_timeout_ms = (uint32_t)jint(js, "read_timeout", 60000);
        s->write_timeout_ms = (uint32_t)jint(js, "write_timeout", 60000);
        if (!s->host) {
            sl_errors_add(errs, "services[%zu].host: required field missing", i);
            continue;
        }
        s->upstream = find_upstream(g, s->host);
        if (!s->upstream)
            s->host_is_ip = parse_ip(s->host, s->port, &s->addr, &s->addrlen);
        if (s->upstream && s->upstream->host_header)
            s->host_header = sl_xstrdup(s->upstream->host_header);
        else
            s->host_header = host_header(s->host, s->port, s->https);
    }
    return SL_OK;
}

static const sl_service_t *find_service(const sl_gen_t *g, const char *id)
{
    json_t *i = g->service_index ? json_object_get(g->service_index, id) : NULL;
    return i ? &g->services[json_integer_value(i)] : NULL;
}

/* Strings of a JSON array as a borrowed const char* vector. */
static const char **str_vec(json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    const char **v = sl_xcalloc(*n, sizeof(char *));
    for (size_t i = 0; i < *n; i++) {
        json_t *e = json_array_get(arr, i);
        v[i] = json_is_string(e) ? json_string_value(e) : "";
    }
    return v;
}

static int build_routes(sl_gen_t *g, json_t *doc, sl_errors_t *errs)
{
    json_t *routes = json_object_get(doc, "routes");
    size_t n = json_array_size(routes);
    g->routes = sl_xcalloc(n, sizeof(sl_route_t));
    sl_route_spec_t *specs = sl_xcalloc(n, sizeof(sl_route_spec_t));
    size_t nspecs = 0;
    int rc = SL_OK;

    for (size_t i = 0; i < n; i++) {
        json_t *jr = json_array_get(routes, i);
        sl_route_t *r = &g->routes[g->nroutes];
        r->id = jdup(jr, "id");
        r->name = jdup(jr, "name");
        r->label = r->name ? r->name : r->id ? r->id : "";
        r->label_key = sl_hash(r->label, strlen(r->label));
        const char *sid = jfk(jr, "service");
        if (sid) {
            r->service = find_service(g, sid);
            if (!r->service)
                sl_errors_add(errs, "routes[%zu].service: no service with id %s", i, sid);
        }
        r->strip_path = jbool(jr, "strip_path", true);
        r->preserve_host = jbool(jr, "preserve_host", false);
        const char *ph = jstr(jr, "path_handling");
        r->path_handling = ph && !strcmp(ph, "v1") ? 1 : 0;
        r->https_redirect_status_code = (int)jint(jr, "https_redirect_status_code", 426);

        sl_route_spec_t *sp = &specs[nspecs];
        json_t *protos = json_object_get(jr, "protocols");
        size_t pi;
        json_t *pv;
        json_array_foreach(protos, pi, pv)
        {
            const char *p = json_string_value(pv);
            if (p && !strcmp(p, "http"))
                sp->protocols |= SL_PROTO_HTTP;
            else if (p && !strcmp(p, "https"))
                sp->protocols |= SL_PROTO_HTTPS;
        }
        if (json_array_size(protos) && !sp->protocols) {
            /* grpc/tcp/tls routes cannot match HTTP/1.1 requests: skip them. */
            SL_WARN("routes[%zu]: protocols %s are not served by this data plane; route "
                    "ignored",
                    i, "other than http/https");
            free(r->id);
            free(r->name);
            memset(r, 0, sizeof(*r));
            continue;
        }
        r->protocols = sp->protocols;
        sp->hosts = str_vec(json_object_get(jr, "hosts"), &sp->nhosts);
        sp->paths = str_vec(json_object_get(jr, "paths"), &sp->npaths);
        sp->methods = str_vec(json_object_get(jr, "methods"), &sp->nmethods);
        json_t *hdrs = json_object_get(jr, "headers");
        if (json_is_object(hdrs) && json_object_size(hdrs)) {
            sl_route_header_spec_t *hs =
                sl_xcalloc(json_object_size(hdrs), sizeof(sl_route_header_spec_t));
            const char *hname;
            json_t *hvals;
            size_t k = 0;
            json_object_foreach(hdrs, hname, hvals)
            {
                hs[k].name = hname;
                hs[k].values = str_vec(hvals, &hs[k].nvalues);
                k++;
            }
            sp->headers = hs;
            sp->nheaders = k;
        }
        sp->regex_priority = jint(jr, "regex_priority", 0);
        sp->data = r;
        nspecs++;
        g->nroutes++;
    }

    if (errs->n == 0) {
        char err[512];
        if (sl_router_new(specs, nspecs, &g->router, err, sizeof(err)) != SL_OK) {
            sl_errors_add(errs, "routes: %s", err);
            rc = SL_ERR_INVALID;
        }
    }
    for (size_t i = 0; i < nspecs; i++) {
        free(specs[i].hosts);
        free(specs[i].paths);
        free(specs[i].methods);
        for (size_t k = 0; k < specs[i].nheaders; k++)
            free((void *)specs[i].headers[k].values);
        free((void *)specs[i].headers);
    }
    free(specs);
    return rc;
}

static void doc_hash(json_t *doc, char out[33])
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(text, strlen(text), md, &mdlen, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    free(text);
}

int sl_gen_build(json_t *doc, uint64_t version, sl_gen_t **out, sl_errors_t *errs)
{
    return sl_gen_build_hashed(doc, version, NULL, out, errs);
}

int sl_gen_build_hashed(json_t *doc, uint64_t version, const char *hash, sl_gen_t **out,
                        sl_errors_t *errs)
{
    size_t before = errs->n;
    sl_gen_t *g = sl_xcalloc(1, sizeof(*g));
    atomic_init(&g->refs, 1);
    g->version = version;
    g->doc = json_incref(doc);

    json_t *plugins = json_object_get(doc, "plugins");
    size_t pi;
    json_t *pv;
    json_array_foreach(plugins, pi, pv)
    {
        if (json_is_false(json_object_get(pv, "enabled")))
            continue;
        const char *name = jstr(pv, "name");
        sl_errors_add(errs,
                      "plugins[%zu].name: plugin '%s' not enabled; this data plane runs no "
                      "plugins yet, remove it from the configuration",
                      pi, name ? name : "?");
    }
    uint64_t t0 = sl_now_us();
    build_upstreams(g, doc, errs);
    uint64_t t1 = sl_now_us();
    build_services(g, doc, errs);
    uint64_t t2 = sl_now_us();
    if (errs->n == before)
        build_routes(g, doc, errs);
    uint64_t t3 = sl_now_us();
    SL_DEBUG("generation %llu built: upstreams %.1f ms, services %.1f ms, routes and router "
             "%.1f ms",
             (unsigned long long)version, (t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3);
    if (errs->n > before) {
        sl_gen_unref(g);
        return SL_ERR_INVALID;
    }
    if (hash)
        snprintf(g->hash, sizeof(g->hash), "%s", hash);
    else
        doc_hash(doc, g->hash);
    *out = g;
    return SL_OK;
}

sl_gen_t *sl_gen_empty(void)
{
    sl_gen_t *g = sl_xcalloc(1, sizeof(*g));
    atomic_init(&g->refs, 1);
    memset(g->hash, '0', 32);
    g->hash[32] = '\0';
    char err[256];
    SL_ASSERT(sl_router_new(NULL, 0, &g->router, err, sizeof(err)) == SL_OK);
    return g;
}

void sl_gen_ref(sl_gen_t *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

static void gen_free(sl_gen_t *g)
{
    if (g->router)
        sl_router_free(g->router);
    for (size_t i = 0; i < g->nservices; i++) {
        sl_service_t *s = &g->services[i];
        free(s->id);
        free(s->name);
        free(s->host);
        free(s->path);
        free(s->host_header);
    }
    free(g->services);
    for (size_t i = 0; i < g->nroutes; i++) {
        free(g->routes[i].id);
        free(g->routes[i].name);
    }
    free(g->routes);
    for (size_t i = 0; i < g->nupstreams; i++) {
        sl_upstream_t *u = &g->upstreams[i];
        for (size_t t = 0; t < u->ntargets; t++)
            free(u->targets[t].host);
        free(u->targets);
        free(u->wheel);
        free(u->id);
        free(u->name);
        free(u->host_header);
    }
    free(g->upstreams);
    if (g->doc)
        json_decref(g->doc);
    json_decref(g->service_index);
    json_decref(g->upstream_index);
    free(g);
}

void sl_gen_unref(sl_gen_t *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        gen_free(g);
}

sl_gen_t *sl_gen_acquire(void)
{
    pthread_mutex_lock(&gen_lock);
    sl_gen_t *g = gen_current;
    if (g)
        sl_gen_ref(g);
    pthread_mutex_unlock(&gen_lock);
    return g;
}

void sl_gen_publish(sl_gen_t *g)
{
    pthread_mutex_lock(&gen_lock);
    sl_gen_t *old = gen_current;
    gen_current = g;
    pthread_mutex_unlock(&gen_lock);
    if (g->doc)
        atomic_store(&gen_is_ready, true);
    sl_gen_unref(old);
}

bool sl_gen_ready(void)
{
    return atomic_load(&gen_is_ready);
}

void sl_gen_clear(void)
{
    pthread_mutex_lock(&gen_lock);
    sl_gen_t *old = gen_current;
    gen_current = NULL;
    pthread_mutex_unlock(&gen_lock);
    sl_gen_unref(old);
}
