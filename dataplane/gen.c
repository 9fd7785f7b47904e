/*
 * gen.c builds, publishes and frees configuration generations.
 *
 * Building runs on the main thread (start-up and SIGHUP). It reads the
 * normalised document, resolves the references between entities into
 * pointers, pre-parses what requests would otherwise parse again (IP
 * literals, Host header values, round-robin wheels) and builds the router.
 * Workers only ever read a generation.
 *
 * The document is not always one the declarative loader validated: in hybrid
 * mode it is made of entities a control plane sent over the network. So every
 * field is read with its type and range checked, and a field of the wrong
 * type, out of range, or holding what would corrupt a request head (a Host
 * with CR LF) is an error naming the entity and the field
 * ("routes[3].paths[0]: expected a string"). A field that is absent or null
 * takes its default.
 */
#include "gen.h"
#include "engine.h"
#include "errors.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>

#define MAX_HOST_LEN 255 /* a DNS name; longer hosts and Host values are refused */
#define MAX_WHEEL 65536  /* round-robin slots of one upstream */

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_gen_t *gen_current;
static atomic_bool gen_is_ready;

/* ------------------------------------------------------------ reading JSON */

/* One entity of a table, with what its error messages are prefixed with. */
struct entity {
    json_t *o;         /* borrowed: the entity's object */
    const char *table; /* "routes" */
    size_t i;          /* index in the table */
    sl_errors_t *errs;
};

json_t *sl_gen_table(const json_t *doc, const char *name, sl_errors_t *errs)
{
    json_t *t = json_object_get(doc, name);
    if (t == NULL || json_is_null(t))
        return NULL;
    if (!json_is_array(t)) {
        sl_errors_add(errs, "%s: expected an array", name);
        return NULL;
    }
    return t;
}

/* Entity i of a table; one that is not an object is an error, and reads as
 * an entity whose every field is absent. */
static struct entity entity_at(json_t *t, const char *name, size_t i, sl_errors_t *errs)
{
    struct entity e = {json_array_get(t, i), name, i, errs};
    if (!json_is_object(e.o))
        sl_errors_add(errs, "%s[%zu]: expected a record", name, i);
    return e;
}

static void field_error(const struct entity *e, const char *key, const char *msg)
{
    sl_errors_add(e->errs, "%s[%zu].%s: %s", e->table, e->i, key, msg);
}

static bool present(const struct entity *e, const char *key)
{
    json_t *v = json_object_get(e->o, key);
    return v != NULL && !json_is_null(v);
}

/* v's text when it is a string without NUL bytes (which C strings would cut
 * short, turning "/a\u0000b" into "/a"), else NULL. */
static const char *str_value(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* A string field; NULL when absent or null, or after an error. */
static const char *str_field(const struct entity *e, const char *key)
{
    json_t *v = json_object_get(e->o, key);
    const char *s = str_value(v);
    if (s == NULL && v != NULL && !json_is_null(v))
        field_error(e, key,
                    json_is_string(v) ? "expected a string without NUL bytes"
                                      : "expected a string");
    return s;
}

static char *str_dup(const struct entity *e, const char *key)
{
    const char *s = str_field(e, key);
    return s ? sl_xstrdup(s) : NULL;
}

/* An integer field between min and max; dflt when absent or null, or after
 * an error. */
static int64_t int_field(const struct entity *e, const char *key, int64_t dflt, int64_t min,
                         int64_t max)
{
    json_t *v = json_object_get(e->o, key);
    if (v == NULL || json_is_null(v))
        return dflt;
    if (!json_is_integer(v)) {
        field_error(e, key, "expected an integer");
        return dflt;
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        sl_errors_add(e->errs, "%s[%zu].%s: value should be between %lld and %lld", e->table, e->i,
                      key, (long long)min, (long long)max);
        return dflt;
    }
    return n;
}

static bool bool_field(const struct entity *e, const char *key, bool dflt)
{
    json_t *v = json_object_get(e->o, key);
    if (v == NULL || json_is_null(v))
        return dflt;
    if (!json_is_boolean(v)) {
        field_error(e, key, "expected a boolean");
        return dflt;
    }
    return json_is_true(v);
}

/* The id of a foreign key {"id": "..."} (or of a bare id); NULL when absent
 * or null, or after an error. */
static const char *fk_field(const struct entity *e, const char *key)
{
    json_t *v = json_object_get(e->o, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    const char *id = str_value(json_is_object(v) ? json_object_get(v, "id") : v);
    if (id == NULL)
        field_error(e, key, "expected a record with a string id");
    return id;
}

/* The strings of array arr as a vector borrowing them (the vector itself is
 * the caller's to free). An element that is not a string is an error,
 * "<table>[i].<what>[k]", and reads as "". */
static const char **str_vec(const struct entity *e, const char *what, json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    const char **v = sl_xcalloc(*n, sizeof(char *));
    for (size_t k = 0; k < *n; k++) {
        v[k] = str_value(json_array_get(arr, k));
        if (v[k] == NULL) {
            sl_errors_add(e->errs, "%s[%zu].%s[%zu]: expected a string", e->table, e->i, what, k);
            v[k] = "";
        }
    }
    return v;
}

/* An array-of-strings field as str_vec has it; NULL and *n = 0 when absent
 * or null, or not an array (an error). */
static const char **str_array(const struct entity *e, const char *key, size_t *n)
{
    json_t *v = json_object_get(e->o, key);
    *n = 0;
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_array(v)) {
        field_error(e, key, "expected an array");
        return NULL;
    }
    return str_vec(e, key, v, n);
}

/* True when s can go into a request head as is: no space, control character
 * or DEL (a CR LF in a Host value would start a header of the peer's). */
static bool head_safe(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

static bool valid_host(const char *h)
{
    size_t n = strlen(h);
    return n > 0 && n <= MAX_HOST_LEN && head_safe(h);
}

static const char bad_host[] = "invalid value: expected a host name or IP address of 1 to 255 "
                               "bytes, without spaces or control characters";

/* ------------------------------------------------------------ building */

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

/* The round-robin turns of an upstream's targets: turn c of target i falls
 * (c + 1/2) / w[i] of the way round the wheel. */
struct turns {
    const unsigned *w; /* weights, reduced by their GCD */
    unsigned *c;       /* turns taken */
    unsigned *heap;    /* target indexes, the next turn at the top */
    size_t n;
};

/* Whether a's next turn comes before b's (on a tie, the earlier target's). */
static bool turn_before(const struct turns *t, unsigned a, unsigned b)
{
    uint64_t ta = (2 * (uint64_t)t->c[a] + 1) * t->w[b];
    uint64_t tb = (2 * (uint64_t)t->c[b] + 1) * t->w[a];
    return ta != tb ? ta < tb : a < b;
}

static void sift_down(struct turns *t, size_t at)
{
    for (;;) {
        size_t l = 2 * at + 1, r = l + 1, top = at;
        if (l < t->n && turn_before(t, t->heap[l], t->heap[top]))
            top = l;
        if (r < t->n && turn_before(t, t->heap[r], t->heap[top]))
            top = r;
        if (top == at)
            return;
        unsigned x = t->heap[at];
        t->heap[at] = t->heap[top];
        t->heap[top] = x;
        at = top;
    }
}

/* Weighted round-robin: weights reduced by their GCD, each target placed
 * weight/gcd times (the wheel capped at MAX_WHEEL slots), interleaved so
 * consecutive picks spread out. Each slot costs a heap step, not a pass over
 * every target: thousands of targets still build in milliseconds. */
static void build_wheel(sl_upstream_t *u)
{
    unsigned g = 0;
    size_t total = 0;
    for (size_t i = 0; i < u->ntargets; i++)
        g = gcd(g, u->targets[i].weight);
    if (g == 0)
        return;
    unsigned *w = sl_xcalloc(u->ntargets, sizeof(unsigned));
    struct turns t = {w, sl_xcalloc(u->ntargets, sizeof(unsigned)),
                      sl_xcalloc(u->ntargets, sizeof(unsigned)), u->ntargets};
    for (size_t i = 0; i < u->ntargets; i++) {
        w[i] = u->targets[i].weight / g;
        total += w[i];
        t.heap[i] = (unsigned)i;
    }
    if (total > MAX_WHEEL)
        total = MAX_WHEEL;
    for (size_t i = t.n / 2; i-- > 0;)
        sift_down(&t, i);
    u->wheel = sl_xmalloc(total * sizeof(unsigned));
    for (size_t k = 0; k < total; k++) {
        u->wheel[k] = t.heap[0];
        t.c[t.heap[0]]++;
        sift_down(&t, 0);
    }
    u->wheel_len = total;
    free(t.heap);
    free(t.c);
    free(w);
}

/* Parses target, the "target" field of entity e, into tg's host and port:
 * "host:port", "[v6]:port", "host" or a bare IPv6 address (port 8000).
 * Returns false after an error. */
static bool parse_target(const struct entity *e, const char *target, sl_target_t *tg)
{
    const char *colon = strrchr(target, ':'), *close = strchr(target, ']');
    uint64_t port = 8000;
    size_t hostlen = strlen(target);
    bool has_port = target[0] == '[' ? (colon && close && colon > close)
                                     : (colon && colon == strchr(target, ':'));
    if (has_port) {
        if (sl_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) != SL_OK) {
            sl_errors_add(e->errs, "targets[%zu].target: invalid port in '%s'", e->i, target);
            return false;
        }
        hostlen = (size_t)(colon - target);
    }
    tg->host = sl_xstrndup(target, hostlen);
    if (!valid_host(tg->host)) {
        sl_errors_add(e->errs, "targets[%zu].target: '%.*s' is not a valid host[:port]", e->i,
                      MAX_HOST_LEN, target);
        free(tg->host);
        tg->host = NULL;
        return false;
    }
    tg->port = (uint16_t)port;
    tg->is_ip = parse_ip(tg->host, tg->port, &tg->addr, &tg->addrlen);
    return true;
}

static int build_upstreams(sl_gen_t *g, json_t *doc, sl_errors_t *errs)
{
    json_t *ups = sl_gen_table(doc, "upstreams", errs);
    json_t *tgts = sl_gen_table(doc, "targets", errs);
    g->nupstreams = json_array_size(ups);
    g->upstreams = sl_xcalloc(g->nupstreams, sizeof(sl_upstream_t));
    /* The targets of each upstream, grouped once: upstream id -> [index]. */
    json_t *groups = json_object();
    for (size_t t = 0; t < json_array_size(tgts); t++) {
        struct entity e = entity_at(tgts, "targets", t, errs);
        const char *uid = fk_field(&e, "upstream");
        if (!uid)
            continue;
        json_t *l = json_object_get(groups, uid);
        if (!l)
            json_object_set_new(groups, uid, l = json_array());
        json_array_append_new(l, json_integer((json_int_t)t));
    }
    g->upstream_index = json_object();
    for (size_t i = 0; i < g->nupstreams; i++) {
        struct entity e = entity_at(ups, "upstreams", i, errs);
        sl_upstream_t *u = &g->upstreams[i];
        u->id = str_dup(&e, "id");
        u->name = str_dup(&e, "name");
        u->host_header = str_dup(&e, "host_header");
        const char *cc = fk_field(&e, "client_certificate");
        u->client_cert = cc ? sl_xstrdup(cc) : NULL;
        if (u->host_header && !valid_host(u->host_header))
            field_error(&e, "host_header", bad_host);
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
            struct entity te = {json_array_get(tgts, t), "targets", t, errs};
            const char *target = str_field(&te, "target");
            int64_t weight = int_field(&te, "weight", 100, 0, 65535);
            if (!target || weight == 0)
                continue;
            sl_target_t *tg = &u->targets[u->ntargets];
            if (!parse_target(&te, target, tg))
                continue;
            tg->weight = (unsigned)weight;
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
    json_t *svcs = sl_gen_table(doc, "services", errs);
    g->nservices = json_array_size(svcs);
    g->services = sl_xcalloc(g->nservices, sizeof(sl_service_t));
    g->service_index = json_object();
    for (size_t i = 0; i < g->nservices; i++) {
        struct entity e = entity_at(svcs, "services", i, errs);
        sl_service_t *s = &g->services[i];
        s->json = e.o;
        s->id = str_dup(&e, "id");
        if (s->id && !json_object_get(g->service_index, s->id))
            json_object_set_new(g->service_index, s->id, json_integer((json_int_t)i));
        s->name = str_dup(&e, "name");
        s->label = s->name ? s->name : s->id ? s->id : "";
        s->host = str_dup(&e, "host");
        s->path = str_dup(&e, "path");
        if (s->path && (s->path[0] != '/' || !head_safe(s->path)))
            field_error(&e, "path",
                        "invalid value: expected a path starting with '/', without spaces or "
                        "control characters");
        const char *proto = str_field(&e, "protocol");
        if (proto && strcmp(proto, "http") && strcmp(proto, "https"))
            sl_errors_add(errs,
                          "services[%zu].protocol: '%s' is not supported by this data plane yet "
                          "(use http)",
                          i, proto);
        s->https = proto && !strcmp(proto, "https");
        s->tls_verify = s->https && bool_field(&e, "tls_verify", false);
        const char *client_cert = s->https ? fk_field(&e, "client_certificate") : NULL;
        s->port = (uint16_t)int_field(&e, "port", 80, 0, 65535);
        s->retries = (int)int_field(&e, "retries", 5, 0, 32767);
        s->connect_timeout_ms = (uint32_t)int_field(&e, "connect_timeout", 60000, 1, INT32_MAX - 1);
        s->read_timeout_ms = (uint32_t)int_field(&e, "read_timeout", 60000, 1, INT32_MAX - 1);
        s->write_timeout_ms = (uint32_t)int_field(&e, "write_timeout", 60000, 1, INT32_MAX - 1);
        if (!s->host) {
            if (!present(&e, "host"))
                field_error(&e, "host", "required field missing");
            continue;
        }
        if (!valid_host(s->host)) {
            field_error(&e, "host", bad_host);
            continue;
        }
        s->upstream = find_upstream(g, s->host);
        if (!s->upstream)
            s->host_is_ip = parse_ip(s->host, s->port, &s->addr, &s->addrlen);
        /* The service's client certificate, else its upstream's (Kong). */
        if (s->https && !client_cert && s->upstream)
            client_cert = s->upstream->client_cert;
        if (s->tls_verify || client_cert) {
            /* A context of the service's own: connections made with it are
             * pooled apart from other services' (proxy.c, pool_take). */
            char err[256];
            s->tls_ctx = sl_tls_upstream_ctx_new(
                doc, s->tls_verify, json_object_get(e.o, "ca_certificates"), err, sizeof(err));
            if (!s->tls_ctx)
                field_error(&e, "ca_certificates", err);
            else if (s->tls_verify && present(&e, "tls_verify_depth"))
                SSL_CTX_set_verify_depth(s->tls_ctx,
                                         (int)int_field(&e, "tls_verify_depth", 1, 0, 64));
            if (s->tls_ctx && client_cert &&
                !sl_tls_use_client_cert(s->tls_ctx, doc, client_cert, err, sizeof(err)))
                field_error(&e, "client_certificate", err);
        }
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

/* The headers of a route, as the router takes them: {"name": ["value", ...]}.
 * Sets sp->headers (owned by the caller, and each values vector) and
 * sp->nheaders. */
static void route_headers(const struct entity *e, sl_route_spec_t *sp)
{
    json_t *hdrs = json_object_get(e->o, "headers");
    if (hdrs == NULL || json_is_null(hdrs))
        return;
    if (!json_is_object(hdrs)) {
        field_error(e, "headers", "expected a map");
        return;
    }
    if (json_object_size(hdrs) == 0)
        return;
    sl_route_header_spec_t *hs = sl_xcalloc(json_object_size(hdrs), sizeof(sl_route_header_spec_t));
    const char *hname;
    json_t *hvals;
    size_t k = 0;
    json_object_foreach(hdrs, hname, hvals)
    {
        char *what = sl_xasprintf("headers.%s", hname);
        hs[k].name = hname;
        if (json_is_array(hvals))
            hs[k].values = str_vec(e, what, hvals, &hs[k].nvalues);
        else
            field_error(e, what, "expected an array");
        free(what);
        k++;
    }
    sp->headers = hs;
    sp->nheaders = k;
}

/* Adds the router's message about spec k ("spec 3: paths[0]: ...") as one
 * about the route it came from ("routes[5].paths[0]: ..."). */
static void add_router_error(sl_errors_t *errs, const char *err, const size_t *route_of,
                             size_t nspecs)
{
    char *end;
    if (strncmp(err, "spec ", 5) == 0) {
        unsigned long long k = strtoull(err + 5, &end, 10);
        if (end != err + 5 && k < nspecs && strncmp(end, ": ", 2) == 0) {
            sl_errors_add(errs, "routes[%zu].%s", route_of[k], end + 2);
            return;
        }
    }
    sl_errors_add(errs, "routes: %s", err);
}

/* Frees what a spec owns: its vectors (the strings are the document's). */
static void spec_dispose(sl_route_spec_t *sp)
{
    free(sp->hosts);
    free(sp->paths);
    free(sp->methods);
    for (size_t k = 0; k < sp->nheaders; k++)
        free((void *)sp->headers[k].values);
    free((void *)sp->headers);
}

static const char **dup_vec(const char **v, size_t n)
{
    if (!v)
        return NULL;
    const char **out = sl_xmalloc((n ? n : 1) * sizeof(*out));
    memcpy(out, v, n * sizeof(*out));
    return out;
}

/* A copy of a spec, with vectors of its own. */
static void spec_copy(sl_route_spec_t *dst, const sl_route_spec_t *src)
{
    *dst = *src;
    dst->hosts = dup_vec(src->hosts, src->nhosts);
    dst->paths = dup_vec(src->paths, src->npaths);
    dst->methods = dup_vec(src->methods, src->nmethods);
    if (src->nheaders) {
        sl_route_header_spec_t *hs = sl_xcalloc(src->nheaders, sizeof(*hs));
        for (size_t k = 0; k < src->nheaders; k++) {
            hs[k] = src->headers[k];
            hs[k].values = dup_vec(src->headers[k].values, src->headers[k].nvalues);
        }
        dst->headers = hs;
    }
}

/* Compiles route i of the table into r and sp; false when it is not served
 * (a protocol HTTP/1.1 cannot carry). */
static bool compile_route(sl_gen_t *g, json_t *routes, size_t i, sl_route_t *r, sl_route_spec_t *sp,
                          sl_errors_t *errs)
{
    struct entity e = entity_at(routes, "routes", i, errs);
    r->json = e.o;
    r->id = str_field(&e, "id");
    r->name = str_field(&e, "name");
    r->label = r->name ? r->name : r->id ? r->id : "";
    r->label_key = sl_hash(r->label, strlen(r->label));
    const char *sid = fk_field(&e, "service");
    if (sid) {
        r->service = find_service(g, sid);
        if (!r->service)
            sl_errors_add(errs, "routes[%zu].service: no service with id %s", i, sid);
    }
    r->strip_path = bool_field(&e, "strip_path", true);
    r->preserve_host = bool_field(&e, "preserve_host", false);
    const char *ph = str_field(&e, "path_handling");
    if (ph && strcmp(ph, "v0") && strcmp(ph, "v1"))
        field_error(&e, "path_handling", "expected one of: v0, v1");
    r->path_handling = ph && !strcmp(ph, "v1") ? 1 : 0;
    int64_t code = int_field(&e, "https_redirect_status_code", 426, INT64_MIN, INT64_MAX);
    if (code != 426 && code != 301 && code != 302 && code != 307 && code != 308) {
        field_error(&e, "https_redirect_status_code", "expected one of: 426, 301, 302, 307, 308");
        code = 426;
    }
    r->https_redirect_status_code = (int)code;

    size_t np;
    const char **protos = str_array(&e, "protocols", &np);
    for (size_t k = 0; k < np; k++) {
        if (!strcmp(protos[k], "http"))
            sp->protocols |= SL_PROTO_HTTP;
        else if (!strcmp(protos[k], "https"))
            sp->protocols |= SL_PROTO_HTTPS;
    }
    free(protos);
    if (np && !sp->protocols) {
        /* grpc/tcp/tls routes cannot match HTTP/1.1 requests: skip them. */
        SL_WARN("routes[%zu]: protocols %s are not served by this data plane; route ignored", i,
                "other than http/https");
        memset(r, 0, sizeof(*r));
        return false;
    }
    r->protocols = sp->protocols;
    sp->hosts = str_array(&e, "hosts", &sp->nhosts);
    sp->paths = str_array(&e, "paths", &sp->npaths);
    sp->methods = str_array(&e, "methods", &sp->nmethods);
    route_headers(&e, sp);
    sp->regex_priority = int_field(&e, "regex_priority", 0, INT64_MIN, INT64_MAX);
    return true;
}

/* Where each object of the previous routes table was, by address: built the
 * first time a route is not where it was (a delete shifts the rest). */
struct ptr_map {
    struct ptr_slot {
        const json_t *obj;
        size_t at;
    } * slots;
    size_t mask;
};

static size_t ptr_slot(const struct ptr_map *m, const json_t *obj)
{
    uint64_t h = (uint64_t)(uintptr_t)obj * 0x9E3779B97F4A7C15u;
    size_t i = (size_t)(h >> 20) & m->mask;
    while (m->slots[i].obj && m->slots[i].obj != obj)
        i = (i + 1) & m->mask;
    return i;
}

/* The previous table's index of obj (looked for at i first), or -1. */
static ssize_t prev_index_of(struct ptr_map *m, json_t *prev_table, const json_t *obj, size_t i)
{
    size_t pn = json_array_size(prev_table);
    if (i < pn && json_array_get(prev_table, i) == obj)
        return (ssize_t)i;
    if (!m->slots) {
        size_t cap = 16;
        while (cap < pn * 2)
            cap *= 2;
        m->slots = sl_xcalloc(cap, sizeof(*m->slots));
        m->mask = cap - 1;
        for (size_t k = 0; k < pn; k++) {
            const json_t *o = json_array_get(prev_table, k);
            m->slots[ptr_slot(m, o)] = (struct ptr_slot){o, k};
        }
    }
    size_t at = ptr_slot(m, obj);
    return m->slots[at].obj ? (ssize_t)m->slots[at].at : -1;
}

/* Builds the routes and the router. A route whose object prev compiled
 * (and prev shares this generation's services) is copied from prev rather
 * than read again. */
static int build_routes(sl_gen_t *g, json_t *doc, const sl_gen_t *prev, sl_errors_t *errs)
{
    size_t before = errs->n;
    json_t *routes = sl_gen_table(doc, "routes", errs);
    size_t n = json_array_size(routes);
    g->routes = sl_xcalloc(n ? n : 1, sizeof(sl_route_t));
    g->specs = sl_xcalloc(n ? n : 1, sizeof(sl_route_spec_t));
    g->route_of_table = sl_xcalloc(n ? n : 1, sizeof(ssize_t));
    g->routes_table = json_incref(routes);
    size_t *table_of_spec = sl_xcalloc(n ? n : 1, sizeof(size_t));
    bool reuse = prev && prev->base == g->base && prev->routes_table && prev->route_of_table;
    struct ptr_map pm = {0};
    int rc = SL_OK;

    for (size_t i = 0; i < n; i++) {
        sl_route_t *r = &g->routes[g->nroutes];
        sl_route_spec_t *sp = &g->specs[g->nroutes];
        g->route_of_table[i] = -1;
        ssize_t pi =
            reuse ? prev_index_of(&pm, prev->routes_table, json_array_get(routes, i), i) : -1;
        if (pi >= 0) {
            ssize_t j = prev->route_of_table[pi];
            if (j < 0)
                continue; /* not served then, not served now */
            *r = prev->routes[j];
            spec_copy(sp, &prev->specs[j]);
        } else if (!compile_route(g, routes, i, r, sp, errs)) {
            spec_dispose(sp);
            memset(sp, 0, sizeof(*sp));
            continue;
        }
        sp->data = r;
        g->route_of_table[i] = (ssize_t)g->nroutes;
        table_of_spec[g->nroutes] = i;
        g->nroutes++;
    }

    if (errs->n == before) {
        char err[512];
        if (sl_router_new(g->specs, g->nroutes, &g->router, err, sizeof(err)) != SL_OK) {
            add_router_error(errs, err, table_of_spec, g->nroutes);
            rc = SL_ERR_INVALID;
        }
    }
    free(table_of_spec);
    free(pm.slots);
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

/* ------------------------------------------------------ shared services */

struct sl_gen_base_s {
    atomic_int refs;
    sl_service_t *services;
    size_t nservices;
    sl_upstream_t *upstreams;
    size_t nupstreams;
    json_t *service_index, *upstream_index;
    json_t *services_table, *upstreams_table, *targets_table; /* what they were built from */
};

static void base_unref(struct sl_gen_base_s *b)
{
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < b->nservices; i++) {
        sl_service_t *s = &b->services[i];
        free(s->id);
        free(s->name);
        free(s->host);
        free(s->path);
        free(s->host_header);
        SSL_CTX_free(s->tls_ctx);
    }
    free(b->services);
    for (size_t i = 0; i < b->nupstreams; i++) {
        sl_upstream_t *u = &b->upstreams[i];
        for (size_t t = 0; t < u->ntargets; t++)
            free(u->targets[t].host);
        free(u->targets);
        free(u->wheel);
        free(u->id);
        free(u->name);
        free(u->host_header);
        free(u->client_cert);
    }
    free(b->upstreams);
    json_decref(b->service_index);
    json_decref(b->upstream_index);
    json_decref(b->services_table);
    json_decref(b->upstreams_table);
    json_decref(b->targets_table);
    free(b);
}

/* Whether two tables hold the very same objects in the same order. */
static bool same_objects(json_t *a, json_t *b)
{
    size_t n = json_array_size(a);
    if (n != json_array_size(b) || (json_is_array(a) != json_is_array(b) && n > 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if (json_array_get(a, i) != json_array_get(b, i))
            return false;
    return true;
}

/* Points g at its base's services and upstreams. */
static void adopt_base(sl_gen_t *g, struct sl_gen_base_s *b)
{
    g->base = b;
    g->services = b->services;
    g->nservices = b->nservices;
    g->upstreams = b->upstreams;
    g->nupstreams = b->nupstreams;
    g->service_index = b->service_index;
    g->upstream_index = b->upstream_index;
}

/* Builds services and upstreams, or shares prev's when nothing they are made
 * of changed. */
static void build_base(sl_gen_t *g, json_t *doc, const sl_gen_t *prev, sl_errors_t *errs)
{
    json_t *svcs = json_object_get(doc, "services"), *ups = json_object_get(doc, "upstreams"),
           *tgts = json_object_get(doc, "targets");
    struct sl_gen_base_s *pb = prev ? prev->base : NULL;
    if (pb && json_is_array(svcs) && same_objects(pb->services_table, svcs) &&
        same_objects(pb->upstreams_table, ups) && same_objects(pb->targets_table, tgts)) {
        atomic_fetch_add_explicit(&pb->refs, 1, memory_order_relaxed);
        adopt_base(g, pb);
        return;
    }
    build_upstreams(g, doc, errs);
    build_services(g, doc, errs);
    struct sl_gen_base_s *b = sl_xcalloc(1, sizeof(*b));
    atomic_init(&b->refs, 1);
    b->services = g->services;
    b->nservices = g->nservices;
    b->upstreams = g->upstreams;
    b->nupstreams = g->nupstreams;
    b->service_index = g->service_index;
    b->upstream_index = g->upstream_index;
    b->services_table = json_incref(svcs);
    b->upstreams_table = json_incref(ups);
    b->targets_table = json_incref(tgts);
    adopt_base(g, b);
}

int sl_gen_build_hashed(json_t *doc, uint64_t version, const char *hash, sl_gen_t **out,
                        sl_errors_t *errs)
{
    return sl_gen_build_from(doc, version, hash, NULL, out, errs);
}

int sl_gen_build_from(json_t *doc, uint64_t version, const char *hash, const sl_gen_t *prev,
                      sl_gen_t **out, sl_errors_t *errs)
{
    size_t before = errs->n;
    sl_gen_t *g = sl_xcalloc(1, sizeof(*g));
    atomic_init(&g->refs, 1);
    g->version = version;
    g->doc = json_incref(doc);

    uint64_t t0 = sl_now_us();
    build_base(g, doc, prev, errs);
    uint64_t t1 = sl_now_us();
    if (errs->n == before)
        build_routes(g, doc, prev, errs);
    if (errs->n == before)
        sl_engine_build(g, doc, errs);
    sl_gen_tls_build(g, doc, errs);
    uint64_t t2 = sl_now_us();
    SL_DEBUG("generation %llu built: services and upstreams %.1f ms%s, routes and router %.1f ms",
             (unsigned long long)version, (t1 - t0) / 1e3,
             prev && g->base == prev->base ? " (shared)" : "", (t2 - t1) / 1e3);
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
    for (size_t i = 0; g->specs && i < g->nroutes; i++)
        spec_dispose(&g->specs[i]);
    free(g->specs);
    free(g->route_of_table);
    json_decref(g->routes_table);
    free(g->routes);
    base_unref(g->base);
    sl_engine_free(g->plugins);
    sl_gen_tls_free(g);
    if (g->doc)
        json_decref(g->doc);
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
