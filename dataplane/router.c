/*
 * router.c owns the route table of one configuration generation: Kong 3.x's
 * traditional_compatible matching over hosts, paths, methods and headers
 * (kong-compat.md section 5), and the upstream path joining of section 5.5.
 *
 * Lifetime and threads. sl_router_new runs once per generation, off the
 * worker threads; it copies everything it keeps from the specs, compiles the
 * regexes and builds the indexes. Afterwards the router is immutable and any
 * number of workers call sl_router_match on it at once without locks. The
 * only per-call mutable state is the PCRE2 match data, which lives in a
 * per-thread cache (freed by a pthread key destructor when the thread ends).
 * sl_router_free runs when the generation's last request has released it.
 *
 * Model. Every (route, path) pair is a "matcher" with Kong's 64-bit priority
 * (a route without paths is one matcher). All matchers are sorted once by
 * priority, then by the order of the specs, so a matcher's index in that
 * array is its rank and "higher priority" is simply "lower index".
 *
 * Indexes. Matchers are filed by host into buckets: a hash table keyed by
 * (kind, lowercase host, port) holds exact hosts, leftmost wildcards
 * ("*.example.com" filed under its suffix "example.com") and rightmost
 * wildcards ("example.*" filed under "example"); routes without hosts share
 * one more bucket. A request's host therefore costs a few hash lookups: its
 * exact name, then each label suffix and prefix. Inside a bucket, matchers sit
 * in a radix tree keyed by their literal path prefix: the path itself for
 * plain paths, the literal characters a regex starts with for regexes ("" when
 * it starts with anything else). Walking the request path down each tree
 * yields a handful of rank-sorted lists of candidates whose path can match;
 * routes whose prefix diverges from the request are never looked at.
 *
 * Selection. Buckets are visited in the order their matchers usually rank:
 * the exact host, then wildcard hosts, then routes without hosts. Within each
 * group the candidate lists are merged in rank order and a candidate's
 * remaining conditions (method, headers, then the regex if any) are checked
 * only while its rank beats the best match found so far; every tree node
 * records the best rank beneath it, so subtrees and whole groups that cannot
 * win are not even walked. No regex is ever run for a matcher that could not
 * beat a match already found. Schemes as Kong's router: a route for https
 * only also matches plain HTTP (reported with protocol_mismatch, so that
 * the proxy answers with its https_redirect_status_code), and so shadows
 * the routes below it; a route for http only does not match https.
 */
#include "router.h"

#include "arena.h"
#include "util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>

#define REGEX_MATCH_LIMIT 10000
#define MAX_HEADER_COUNT 255
#define MAX_HEADER_VALUES 16 /* values of one request header looked at */
#define MAX_CAND_LISTS 64    /* candidate lists merged at once */
#define MAX_HOST_LEN 255     /* longer Host values only match host-less routes */
#define MATCH_DATA_PAIRS (SL_ROUTER_MAX_CAPTURES + 16)

#define PRIO_WEIGHT_SHIFT 61
#define PRIO_PLAIN_HOST_BIT (UINT64_C(1) << 60)
#define PRIO_HEADERS_SHIFT 52
#define PRIO_REGEX_BIT (UINT64_C(1) << 51)
#define PRIO_REGEX_PRIO_SHIFT 19
#define PRIO_REGEX_PRIO_MAX UINT64_C(0xFFFFFFFF)
#define PRIO_LENGTH_MAX UINT64_C(0x7FFFF)

enum host_kind {
    HOST_EXACT = 0,
    HOST_LEFT_WILD = 1,  /* "*.example.com": key is "example.com" */
    HOST_RIGHT_WILD = 2, /* "example.*": key is "example" */
};

/* Every string and array of a router lives in its arena and goes with it;
 * only the compiled regexes are freed one by one. */
struct header_value {
    char *value; /* plain values only */
    size_t len;
    pcre2_code *re; /* owned; "~*re" values, case-insensitive, unanchored */
};

struct header_cond {
    char *name; /* lowercase */
    struct header_value *values;
    size_t nvalues;
};

/* What one spec contributes besides its paths and hosts. */
struct route {
    void *data; /* borrowed: the caller's route object */
    unsigned protocols;
    char **methods;
    size_t *method_lens;
    size_t nmethods;
    struct header_cond *headers;
    size_t nheaders;
};

/* One (route, path) pair. */
struct matcher {
    struct route *route; /* borrowed from the router's routes array */
    uint64_t priority;
    int64_t regex_priority; /* tie-break for regex_priority out of the 32 bits */
    size_t spec_index;
    size_t path_index;
    char *path; /* as configured ("/api", "~/re"); NULL without paths */
    size_t path_len;
    pcre2_code *re;     /* owned, when path is a regex */
    char **group_names; /* [group] -> name or NULL; ngroups + 1 slots */
    uint32_t ngroups;
};

/* A radix tree node: the edge label leading to it and the matchers whose
 * literal prefix ends exactly here, sorted by rank. */
struct rnode {
    const char *label;
    size_t len;
    struct rnode **kids;   /* sorted by first label byte */
    unsigned char *firsts; /* kids[i]->label[0], scanned without chasing pointers */
    size_t nkids, capkids;
    uint32_t *ms; /* ranks */
    size_t nms, capms;
    uint32_t min_rank; /* best rank in this subtree: a walk stops where it cannot win */
};

struct host_slot {
    char *host; /* lowercase; NULL for an empty slot */
    size_t len;
    uint64_t hash;
    unsigned kind;
    unsigned port; /* 0: any port */
    struct rnode *root;
};

struct sl_router_s {
    struct route *routes;
    size_t nroutes;
    struct matcher *matchers; /* sorted: index == rank */
    size_t nmatchers;
    struct host_slot *slots; /* open addressing, power-of-two size */
    size_t nslots, nused;
    struct rnode *hostless;
    /* Bit len of key_lens[kind][with port] is set when some key of that kind
     * has that length: most wildcard probes end here, without hashing. */
    uint64_t key_lens[3][2][(MAX_HOST_LEN + 1 + 63) / 64];
    bool has_wild[2];       /* any leftmost, rightmost wildcard */
    uint32_t wild_min_rank; /* best rank filed under any wildcard host */
    pcre2_match_context *mctx;
    sl_arena_t arena; /* owns the tree, the strings and the route arrays */
};

/* ---------------------------------------------------------------- priority */

static bool is_regex_path(const char *p)
{
    return p[0] == '~';
}

uint64_t sl_router_priority(const sl_route_spec_t *spec, const char *path)
{
    uint64_t weight = 0;
    uint64_t prio = 0;
    bool plain_hosts = spec->nhosts > 0;

    if (spec->nmethods > 0)
        weight++;
    if (spec->nhosts > 0)
        weight++;
    if (spec->nheaders > 0)
        weight++;
    if (path != NULL)
        weight++;
    prio |= weight << PRIO_WEIGHT_SHIFT;

    for (size_t i = 0; i < spec->nhosts; i++) {
        if (spec->hosts[i] != NULL && strchr(spec->hosts[i], '*') != NULL) {
            plain_hosts = false;
            break;
        }
    }
    if (plain_hosts)
        prio |= PRIO_PLAIN_HOST_BIT;

    prio |= (uint64_t)SL_MIN(spec->nheaders, (size_t)MAX_HEADER_COUNT) << PRIO_HEADERS_SHIFT;

    if (path != NULL && is_regex_path(path)) {
        /* Kong shifts regex_priority in unchecked; a negative one would then
         * set the top bits. Clamp to the 32 bits the field has instead; the
         * matcher order still breaks ties on the full value (cmp_matchers). */
        uint64_t rp = spec->regex_priority < 0 ? 0 : (uint64_t)spec->regex_priority;
        prio |= PRIO_REGEX_BIT;
        prio |= SL_MIN(rp, PRIO_REGEX_PRIO_MAX) << PRIO_REGEX_PRIO_SHIFT;
    } else if (path != NULL) {
        uint64_t len = strlen(path);
        prio |= SL_MIN(len, PRIO_LENGTH_MAX);
    }
    return prio;
}

/* Orders matchers best first: priority, then regex_priority (only differs
 * where the 32-bit field saturated), then spec order, then path order. */
static int cmp_matchers(const void *a, const void *b)
{
    const struct matcher *x = a, *y = b;

    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    if (x->regex_priority != y->regex_priority)
        return x->regex_priority > y->regex_priority ? -1 : 1;
    if (x->spec_index != y->spec_index)
        return x->spec_index < y->spec_index ? -1 : 1;
    if (x->path_index != y->path_index)
        return x->path_index < y->path_index ? -1 : 1;
    return 0;
}

/* ------------------------------------------------------------- radix tree */

static struct rnode *rnode_new(sl_arena_t *a, const char *label, size_t len)
{
    struct rnode *n = sl_arena_zalloc(a, sizeof(*n));

    n->label = sl_arena_strndup(a, label, len);
    n->len = len;
    return n;
}

/* Returns the position of the kid whose label starts with c, or where it
 * would be inserted (*found false). */
static size_t rnode_find(const struct rnode *n, unsigned char c, bool *found)
{
    size_t lo = 0, hi = n->nkids;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        unsigned char k = n->firsts[mid];

        if (k == c) {
            *found = true;
            return mid;
        }
        if (k < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void rnode_add_kid(sl_arena_t *a, struct rnode *n, size_t at, struct rnode *kid)
{
    if (n->nkids == n->capkids) {
        n->capkids = n->capkids ? n->capkids * 2 : 2;
        n->kids =
            sl_arena_grow(a, n->kids, n->nkids * sizeof(*n->kids), n->capkids * sizeof(*n->kids));
        n->firsts = sl_arena_grow(a, n->firsts, n->nkids, n->capkids);
    }
    memmove(&n->kids[at + 1], &n->kids[at], (n->nkids - at) * sizeof(*n->kids));
    memmove(&n->firsts[at + 1], &n->firsts[at], n->nkids - at);
    n->kids[at] = kid;
    n->firsts[at] = (unsigned char)kid->label[0];
    n->nkids++;
}

/* Files rank under key. Ranks arrive in increasing order, so each node's list
 * stays sorted; a matcher filed twice in one node (two hosts that fold to the
 * same key) is kept once. */
static void rnode_insert(sl_arena_t *a, struct rnode *root, const char *key, size_t klen,
                         uint32_t rank)
{
    struct rnode *n = root;
    size_t pos = 0;

    while (pos < klen) {
        bool found;
        size_t at = rnode_find(n, (unsigned char)key[pos], &found);
        struct rnode *kid;
        size_t l = 0;

        if (!found) {
            kid = rnode_new(a, key + pos, klen - pos);
            rnode_add_kid(a, n, at, kid);
            n = kid;
            break;
        }
        kid = n->kids[at];
        while (l < kid->len && pos + l < klen && kid->label[l] == key[pos + l])
            l++;
        if (l < kid->len) {
            /* Split the edge: n -> mid(label[0..l)) -> kid(label[l..)). */
            struct rnode *mid = rnode_new(a, kid->label, l);

            kid->label += l;
            kid->len -= l;
            rnode_add_kid(a, mid, 0, kid);
            n->kids[at] = mid;
            kid = mid;
        }
        n = kid;
        pos += l;
    }
    if (n->nms > 0 && n->ms[n->nms - 1] == rank)
        return;
    if (n->nms == n->capms) {
        n->capms = n->capms ? n->capms * 2 : 2;
        n->ms = sl_arena_grow(a, n->ms, n->nms * sizeof(*n->ms), n->capms * sizeof(*n->ms));
    }
    n->ms[n->nms++] = rank;
}

/* Computes min_rank bottom-up once the tree is complete; returns it. */
static uint32_t rnode_finish(struct rnode *n)
{
    n->min_rank = n->nms > 0 ? n->ms[0] : UINT32_MAX;
    for (size_t i = 0; i < n->nkids; i++) {
        uint32_t kid = rnode_finish(n->kids[i]); /* not inside SL_MIN: it evaluates twice */
        n->min_rank = SL_MIN(n->min_rank, kid);
    }
    return n->min_rank;
}

/* ------------------------------------------------------------- host table */

/* Host names are short; hash them eight bytes at a time. The name is hashed
 * once per request substring, then mixed with each (kind, port) probed. */
static uint64_t hash_name(const char *p, size_t len)
{
    const uint64_t k = 0x9E3779B97F4A7C15u;
    uint64_t h = (uint64_t)len * k, w;

    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 31;
    }
    w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * k;
    return h ^ (h >> 29);
}

static uint64_t host_hash(unsigned kind, unsigned port, uint64_t name_hash)
{
    uint64_t x = (name_hash ^ ((uint64_t)kind << 17 | port)) * 0xBF58476D1CE4E5B9u;

    return x ^ (x >> 31);
}

static struct host_slot *host_lookup(const sl_router_t *r, unsigned kind, unsigned port,
                                     const char *h, size_t len, uint64_t name_hash)
{
    uint64_t hash;
    size_t mask, i;

    if (r->nused == 0)
        return NULL;
    hash = host_hash(kind, port, name_hash);
    mask = r->nslots - 1;
    for (i = hash & mask;; i = (i + 1) & mask) {
        struct host_slot *s = &r->slots[i];

        if (s->host == NULL)
            return NULL;
        if (s->hash == hash && s->kind == kind && s->port == port && s->len == len &&
            memcmp(s->host, h, len) == 0)
            return s;
    }
}

static void host_table_grow(sl_router_t *r)
{
    struct host_slot *old = r->slots;
    size_t oldn = r->nslots;

    r->nslots = oldn ? oldn * 2 : 64;
    r->slots = sl_xcalloc(r->nslots, sizeof(*r->slots));
    for (size_t i = 0; i < oldn; i++) {
        if (old[i].host == NULL)
            continue;
        size_t mask = r->nslots - 1, j = old[i].hash & mask;
        while (r->slots[j].host != NULL)
            j = (j + 1) & mask;
        r->slots[j] = old[i];
    }
    free(old);
}

/* Returns the tree of (kind, host, port), creating it. */
static struct rnode *host_bucket(sl_router_t *r, unsigned kind, unsigned port, const char *h,
                                 size_t len)
{
    uint64_t name_hash = hash_name(h, len);
    struct host_slot *s = host_lookup(r, kind, port, h, len, name_hash);
    size_t mask, i;

    if (s != NULL)
        return s->root;
    if ((r->nused + 1) * 2 > r->nslots)
        host_table_grow(r);
    mask = r->nslots - 1;
    uint64_t hash = host_hash(kind, port, name_hash);
    for (i = hash & mask; r->slots[i].host != NULL; i = (i + 1) & mask)
        ;
    s = &r->slots[i];
    s->host = sl_arena_strndup(&r->arena, h, len);
    s->len = len;
    s->hash = hash;
    s->kind = kind;
    s->port = port;
    s->root = rnode_new(&r->arena, "", 0);
    r->nused++;
    r->key_lens[kind][port != 0][len / 64] |= UINT64_C(1) << (len % 64);
    if (kind != HOST_EXACT)
        r->has_wild[kind - 1] = true;
    return s->root;
}

/*
 * Splits "host", "host:port", "[v6]" or "[v6]:port" into its host part and
 * port. Returns false for a port that is not 1..65535; *port is 0 when there
 * is none.
 */
static bool split_host_port(const char *h, size_t len, size_t *hlen, unsigned *port)
{
    const char *colon = NULL;

    if (len > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', len);
        if (close != NULL && (size_t)(close - h) + 1 < len && close[1] == ':')
            colon = close + 1;
    } else {
        colon = memchr(h, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon - h) - 1) != NULL)
            colon = NULL; /* a bare IPv6 address */
    }
    *hlen = len;
    *port = 0;
    if (colon == NULL)
        return true;

    uint64_t v;
    size_t plen = len - (size_t)(colon - h) - 1;
    if (sl_parse_u64(colon + 1, plen, 65535, &v) != SL_OK || v == 0)
        return false;
    *hlen = (size_t)(colon - h);
    *port = (unsigned)v;
    return true;
}

/* ------------------------------------------------------------ construction */

/*
 * The literal characters a start-anchored regex must begin with, written to
 * out (returns the length). Conservative: stops at the first metacharacter,
 * drops a literal that a quantifier makes optional, and gives up on patterns
 * with alternation (a top-level '|' would let the match start elsewhere).
 */
static size_t regex_literal_prefix(const char *re, char *out)
{
    size_t n = 0;
    const char *p = re;

    if (strchr(re, '|') != NULL)
        return 0;
    while (*p != '\0') {
        char c = *p;
        size_t w = 1;

        if (strchr(".[]()^$*+?{}", c) != NULL)
            break;
        if (c == '\\') {
            unsigned char e = (unsigned char)p[1];
            /* An escaped ASCII punctuation character is itself. */
            if (e == '\0' || e >= 0x80 || !(e > ' ' && e < 0x7f) || (e >= '0' && e <= '9') ||
                (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'))
                break;
            c = (char)e;
            w = 2;
        }
        if (p[w] == '*' || p[w] == '?' || p[w] == '{')
            break;
        out[n++] = c;
        p += w;
        if (*p == '+')
            break;
    }
    return n;
}

static void route_dispose(struct route *rt)
{
    for (size_t i = 0; i < rt->nheaders; i++)
        for (size_t j = 0; j < rt->headers[i].nvalues; j++)
            pcre2_code_free(rt->headers[i].values[j].re);
}

/* Compiles pattern; on failure writes "<what>: invalid regex '<shown>' : <why>
 * at offset N" into err. */
static pcre2_code *compile_regex(const char *pattern, uint32_t opts, size_t spec_index,
                                 const char *what, const char *shown, char *err, size_t errlen)
{
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &ecode, &eoff, NULL);

    if (re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof(msg));
        snprintf(err, errlen, "spec %zu: %s: invalid regex '%s' : %s at offset %zu", spec_index,
                 what, shown, (const char *)msg, (size_t)eoff);
        return NULL;
    }
    /* JIT is an optimisation: where it is unavailable the interpreter runs. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static int build_route(sl_arena_t *a, struct route *rt, const sl_route_spec_t *spec, size_t si,
                       char *err, size_t errlen)
{
    rt->data = spec->data;
    rt->protocols = spec->protocols ? spec->protocols : (SL_PROTO_HTTP | SL_PROTO_HTTPS);

    if (spec->nmethods > 0) {
        rt->methods = sl_arena_zalloc(a, spec->nmethods * sizeof(*rt->methods));
        rt->method_lens = sl_arena_zalloc(a, spec->nmethods * sizeof(*rt->method_lens));
        for (size_t i = 0; i < spec->nmethods; i++) {
            if (spec->methods[i] == NULL || spec->methods[i][0] == '\0') {
                snprintf(err, errlen, "spec %zu: methods[%zu]: must be a non-empty string", si, i);
                return SL_ERR_INVALID;
            }
            rt->methods[i] = sl_arena_strdup(a, spec->methods[i]);
            rt->method_lens[i] = strlen(spec->methods[i]);
            rt->nmethods++;
        }
    }

    if (spec->nheaders > 0)
        rt->headers = sl_arena_zalloc(a, spec->nheaders * sizeof(*rt->headers));
    for (size_t i = 0; i < spec->nheaders; i++) {
        const sl_route_header_spec_t *hs = &spec->headers[i];
        struct header_cond *h = &rt->headers[i];

        rt->nheaders++;
        if (hs->name == NULL || hs->name[0] == '\0') {
            snprintf(err, errlen, "spec %zu: headers[%zu]: the name must be a non-empty string", si,
                     i);
            return SL_ERR_INVALID;
        }
        if (hs->nvalues == 0) {
            snprintf(err, errlen, "spec %zu: headers[%zu] (%s): needs at least one value", si, i,
                     hs->name);
            return SL_ERR_INVALID;
        }
        h->name = sl_arena_strdup(a, hs->name);
        for (char *c = h->name; *c; c++)
            *c = sl_lower(*c);
        h->values = sl_arena_zalloc(a, hs->nvalues * sizeof(*h->values));
        for (size_t j = 0; j < hs->nvalues; j++) {
            const char *v = hs->values[j];
            char what[64];

            if (v == NULL) {
                snprintf(err, errlen, "spec %zu: headers[%zu].values[%zu]: must be a string", si, i,
                         j);
                return SL_ERR_INVALID;
            }
            h->nvalues++;
            if (v[0] == '~' && v[1] == '*') {
                snprintf(what, sizeof(what), "headers[%zu].values[%zu]", i, j);
                h->values[j].re = compile_regex(v + 2, PCRE2_CASELESS, si, what, v, err, errlen);
                if (h->values[j].re == NULL)
                    return SL_ERR_INVALID;
            } else {
                h->values[j].value = sl_arena_strdup(a, v);
                h->values[j].len = strlen(v);
            }
        }
    }
    return SL_OK;
}

/* Copies path pi of spec si into m and compiles it if it is a regex. */
static int build_matcher(sl_arena_t *a, struct matcher *m, struct route *rt,
                         const sl_route_spec_t *spec, size_t si, size_t pi, char *err,
                         size_t errlen)
{
    const char *path = spec->npaths > 0 ? spec->paths[pi] : NULL;

    m->route = rt;
    m->spec_index = si;
    m->path_index = pi;
    if (spec->npaths > 0 && (path == NULL || path[0] == '\0')) {
        snprintf(err, errlen, "spec %zu: paths[%zu]: must be a non-empty string", si, pi);
        return SL_ERR_INVALID;
    }
    m->priority = sl_router_priority(spec, path);
    if (path == NULL)
        return SL_OK;

    m->path = sl_arena_strdup(a, path);
    m->path_len = strlen(path);
    if (!is_regex_path(path))
        return SL_OK;

    char what[32];
    snprintf(what, sizeof(what), "paths[%zu]", pi);
    m->regex_priority = spec->regex_priority;
    m->re = compile_regex(path + 1, PCRE2_ANCHORED, si, what, path, err, errlen);
    if (m->re == NULL)
        return SL_ERR_INVALID;

    /* Name each group so matches can report named captures. */
    uint32_t count = 0, entry = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(m->re, PCRE2_INFO_CAPTURECOUNT, &m->ngroups);
    pcre2_pattern_info(m->re, PCRE2_INFO_NAMECOUNT, &count);
    if (count == 0)
        return SL_OK;
    pcre2_pattern_info(m->re, PCRE2_INFO_NAMEENTRYSIZE, &entry);
    pcre2_pattern_info(m->re, PCRE2_INFO_NAMETABLE, &table);
    m->group_names = sl_arena_zalloc(a, ((size_t)m->ngroups + 1) * sizeof(*m->group_names));
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + (size_t)i * entry;
        uint32_t g = ((uint32_t)e[0] << 8) | e[1];
        /* With (?J) several groups may share a name; each keeps its own. */
        if (g <= m->ngroups && m->group_names[g] == NULL)
            m->group_names[g] = sl_arena_strdup(a, (const char *)e + 2);
    }
    return SL_OK;
}

static int file_matcher(sl_router_t *r, const sl_route_spec_t *spec, uint32_t rank, char *err,
                        size_t errlen)
{
    const struct matcher *m = &r->matchers[rank];
    char *key = NULL;
    size_t klen = 0;

    if (m->path != NULL && m->re == NULL) {
        key = m->path;
        klen = m->path_len;
    } else if (m->re != NULL) {
        key = sl_arena_alloc(&r->arena, m->path_len + 1);
        klen = regex_literal_prefix(m->path + 1, key);
    }

    if (spec->nhosts == 0)
        rnode_insert(&r->arena, r->hostless, key ? key : "", klen, rank);

    for (size_t i = 0; i < spec->nhosts; i++) {
        const char *h = spec->hosts[i];
        size_t hlen, len = h ? strlen(h) : 0;
        unsigned port, kind = HOST_EXACT;
        char buf[MAX_HOST_LEN + 1];
        const char *star;

        if (len == 0 || !split_host_port(h, len, &hlen, &port) || hlen == 0 ||
            hlen > MAX_HOST_LEN) {
            snprintf(err, errlen, "spec %zu: hosts[%zu]: '%s' is not a valid host[:port]",
                     m->spec_index, i, h ? h : "(null)");
            goto fail;
        }
        for (size_t j = 0; j < hlen; j++)
            buf[j] = sl_lower(h[j]);
        buf[hlen] = '\0';
        const char *key_host = buf;
        size_t key_len = hlen;
        star = memchr(buf, '*', hlen);
        if (star != NULL) {
            bool left = hlen > 2 && buf[0] == '*' && buf[1] == '.';
            bool right = hlen > 2 && buf[hlen - 1] == '*' && buf[hlen - 2] == '.';
            if (memchr(star + 1, '*', hlen - (size_t)(star - buf) - 1) != NULL ||
                (!left && !right)) {
                snprintf(err, errlen,
                         "spec %zu: hosts[%zu]: '%s': a wildcard must be the whole leftmost or "
                         "rightmost label (\"*.example.com\", \"example.*\")",
                         m->spec_index, i, h);
                goto fail;
            }
            kind = left ? HOST_LEFT_WILD : HOST_RIGHT_WILD;
            key_host = left ? buf + 2 : buf;
            key_len = hlen - 2;
        }
        rnode_insert(&r->arena, host_bucket(r, kind, port, key_host, key_len), key ? key : "", klen,
                     rank);
    }
    return SL_OK;

fail:
    return SL_ERR_INVALID;
}

int sl_router_new(const sl_route_spec_t *specs, size_t n, sl_router_t **out, char *err,
                  size_t errlen)
{
    sl_router_t *r = sl_xcalloc(1, sizeof(*r));
    size_t total = 0;
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    else {
        /* snprintf needs somewhere to write; a caller without a buffer just
         * does not get the message. */
        static _Thread_local char sink[8];
        err = sink;
        errlen = sizeof(sink);
    }

    /* Ten thousand routes take a few MiB: blocks of 64 KiB keep the
     * allocations few, and freeing the router is freeing its blocks. */
    sl_arena_init_sized(&r->arena, 64 * 1024);
    r->hostless = rnode_new(&r->arena, "", 0);
    r->mctx = pcre2_match_context_create(NULL);
    if (r->mctx == NULL) {
        snprintf(err, errlen, "out of memory creating the regex match context");
        rc = SL_ERR_NOMEM;
        goto fail;
    }
    pcre2_set_match_limit(r->mctx, REGEX_MATCH_LIMIT);

    for (size_t i = 0; i < n; i++)
        total += specs[i].npaths > 0 ? specs[i].npaths : 1;
    if (total > UINT32_MAX) {
        snprintf(err, errlen, "too many route paths (%zu)", total);
        rc = SL_ERR_INVALID;
        goto fail;
    }

    r->routes = sl_arena_zalloc(&r->arena, n * sizeof(*r->routes));
    r->matchers = sl_arena_zalloc(&r->arena, total * sizeof(*r->matchers));
    for (size_t i = 0; i < n; i++) {
        const sl_route_spec_t *spec = &specs[i];
        size_t np = spec->npaths > 0 ? spec->npaths : 1;

        r->nroutes++;
        rc = build_route(&r->arena, &r->routes[i], spec, i, err, errlen);
        if (rc != SL_OK)
            goto fail;
        for (size_t p = 0; p < np; p++) {
            rc = build_matcher(&r->arena, &r->matchers[r->nmatchers++], &r->routes[i], spec, i, p,
                               err, errlen);
            if (rc != SL_OK)
                goto fail;
        }
    }

    qsort(r->matchers, r->nmatchers, sizeof(*r->matchers), cmp_matchers);
    for (size_t k = 0; k < r->nmatchers; k++) {
        rc = file_matcher(r, &specs[r->matchers[k].spec_index], (uint32_t)k, err, errlen);
        if (rc != SL_OK)
            goto fail;
    }
    rnode_finish(r->hostless);
    r->wild_min_rank = UINT32_MAX;
    for (size_t i = 0; i < r->nslots; i++) {
        if (r->slots[i].host == NULL)
            continue;
        uint32_t min = rnode_finish(r->slots[i].root);
        if (r->slots[i].kind != HOST_EXACT)
            r->wild_min_rank = SL_MIN(r->wild_min_rank, min);
    }

    *out = r;
    return SL_OK;

fail:
    sl_router_free(r);
    return rc;
}

void sl_router_free(sl_router_t *r)
{
    if (r == NULL)
        return;
    free(r->slots);
    for (size_t i = 0; i < r->nmatchers; i++)
        pcre2_code_free(r->matchers[i].re);
    for (size_t i = 0; i < r->nroutes; i++)
        route_dispose(&r->routes[i]);
    pcre2_match_context_free(r->mctx);
    sl_arena_dispose(&r->arena);
    free(r);
}

/* ---------------------------------------------------------------- matching */

/* Match data is per thread: the router is shared, pcre2_match_data is not. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static _Thread_local pcre2_match_data *tl_md;

static void on_thread_exit(void *md)
{
    pcre2_match_data_free(md);
}

static void md_key_create(void)
{
    SL_ASSERT(pthread_key_create(&md_key, on_thread_exit) == 0);
}

static pcre2_match_data *thread_match_data(void)
{
    if (tl_md != NULL)
        return tl_md;
    pthread_once(&md_once, md_key_create);
    tl_md = pcre2_match_data_create(MATCH_DATA_PAIRS, NULL);
    SL_ASSERT(tl_md != NULL); /* a few hundred bytes, once per thread */
    pthread_setspecific(md_key, tl_md);
    return tl_md;
}

struct cand_list {
    const uint32_t *ms;
    size_t n, pos;
};

struct match_ctx {
    const sl_router_t *r;
    const sl_router_req_t *req;
    uint32_t best; /* rank of the best full match, UINT32_MAX if none */
    sl_router_match_t *ok;
    struct cand_list lists[MAX_CAND_LISTS];
    size_t nlists;
};

static bool regex_run(const pcre2_code *re, const sl_router_t *r, const char *s, size_t len)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)(s ? s : ""), len, 0, 0, thread_match_data(), r->mctx);

    /* 0 means the ovector was too small; the match stands. Errors such as
     * hitting the match limit count as no match. */
    return rc >= 0;
}

static bool methods_match(const struct route *rt, sl_str_t method)
{
    if (rt->nmethods == 0)
        return true;
    for (size_t i = 0; i < rt->nmethods; i++) {
        if (rt->method_lens[i] == method.len && memcmp(rt->methods[i], method.p, method.len) == 0)
            return true;
    }
    return false;
}

static bool headers_match(const struct route *rt, const sl_router_t *r, const sl_router_req_t *req)
{
    sl_str_t vals[MAX_HEADER_VALUES];

    if (rt->nheaders > 0 && req->get_header == NULL)
        return false;
    for (size_t i = 0; i < rt->nheaders; i++) {
        const struct header_cond *h = &rt->headers[i];
        size_t n = req->get_header(req->ud, h->name, vals, MAX_HEADER_VALUES);
        bool found = false;

        n = SL_MIN(n, (size_t)MAX_HEADER_VALUES);
        for (size_t j = 0; j < n && !found; j++) {
            for (size_t k = 0; k < h->nvalues && !found; k++) {
                const struct header_value *v = &h->values[k];
                if (v->re != NULL)
                    found = regex_run(v->re, r, vals[j].p, vals[j].len);
                else
                    found = sl_strcaseeq(v->value, v->len, vals[j].p, vals[j].len);
            }
        }
        if (!found)
            return false;
    }
    return true;
}

/* Fills res for matcher m; for a regex, from the match data of the run that
 * just succeeded. Captures: each set group gives a numbered entry and, when
 * the group is named, a second entry with the name (Kong exposes both
 * uri_captures[1] and uri_captures.name), up to SL_ROUTER_MAX_CAPTURES. */
static void fill_result(sl_router_match_t *res, const struct matcher *m, const sl_router_req_t *req,
                        bool mismatch)
{
    res->data = m->route->data;
    res->path = m->path ? (sl_str_t){m->path, m->path_len} : (sl_str_t){"", 0};
    res->regex = m->re != NULL;
    res->prefix_len = m->re ? 0 : m->path_len;
    res->ncaptures = 0;
    res->protocol_mismatch = mismatch;
    if (m->re == NULL)
        return;

    pcre2_match_data *md = thread_match_data();
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    uint32_t pairs = pcre2_get_ovector_count(md);

    res->prefix_len = ov[1];
    for (uint32_t g = 1; g <= m->ngroups && g < pairs; g++) {
        if (ov[2 * g] == PCRE2_UNSET)
            continue;
        sl_str_t v = {req->path.p + ov[2 * g], ov[2 * g + 1] - ov[2 * g]};
        if (res->ncaptures == SL_ROUTER_MAX_CAPTURES)
            break;
        res->captures[res->ncaptures++] = (sl_router_capture_t){NULL, (int)g, v};
        if (m->group_names == NULL || m->group_names[g] == NULL)
            continue;
        if (res->ncaptures == SL_ROUTER_MAX_CAPTURES)
            break;
        res->captures[res->ncaptures++] = (sl_router_capture_t){m->group_names[g], (int)g, v};
    }
}

/* Checks one candidate's remaining conditions (cheapest first: the scheme,
 * method, headers, then the path regex) and records it as the best match. */
static void evaluate(struct match_ctx *c, uint32_t rank)
{
    const struct matcher *m = &c->r->matchers[rank];
    const sl_router_req_t *req = c->req;
    bool scheme_ok = (m->route->protocols & req->scheme) != 0;
    bool redirect =
        !scheme_ok && req->scheme == SL_PROTO_HTTP && (m->route->protocols & SL_PROTO_HTTPS) != 0;

    if (!scheme_ok && !redirect)
        return;
    if (!methods_match(m->route, req->method) || !headers_match(m->route, c->r, req))
        return;
    if (m->re != NULL && !regex_run(m->re, c->r, req->path.p, req->path.len))
        return;
    c->best = rank;
    fill_result(c->ok, m, req, redirect);
}

/* Merges the pending candidate lists in rank order, stopping at the first
 * rank that cannot beat the best match found so far. */
static void drain_lists(struct match_ctx *c)
{
    uint32_t last = UINT32_MAX;

    for (;;) {
        size_t pick = SIZE_MAX;
        uint32_t min = UINT32_MAX;

        for (size_t i = 0; i < c->nlists; i++) {
            struct cand_list *l = &c->lists[i];
            if (l->pos < l->n && l->ms[l->pos] < min) {
                min = l->ms[l->pos];
                pick = i;
            }
        }
        if (pick == SIZE_MAX || min >= c->best)
            break;
        c->lists[pick].pos++;
        if (min == last)
            continue; /* the same matcher reached through two hosts */
        last = min;
        evaluate(c, min);
    }
    c->nlists = 0;
}

static void push_list(struct match_ctx *c, const struct rnode *n)
{
    if (n->nms == 0 || n->ms[0] >= c->best)
        return;
    if (c->nlists == MAX_CAND_LISTS)
        drain_lists(c);
    c->lists[c->nlists++] = (struct cand_list){n->ms, n->nms, 0};
}

/* Walks the request path down one bucket's tree, queueing every node on the
 * way that carries matchers. */
static void walk_bucket(struct match_ctx *c, const struct rnode *root)
{
    const char *p = c->req->path.p;
    size_t len = c->req->path.len, pos = 0;
    const struct rnode *n = root;

    if (n->min_rank >= c->best)
        return;
    push_list(c, n);
    while (pos < len) {
        bool found;
        size_t at = rnode_find(n, (unsigned char)p[pos], &found);

        if (!found)
            break;
        n = n->kids[at];
        if (n->min_rank >= c->best)
            break;
        if (n->len > len - pos)
            break;
        size_t i = 1; /* byte 0 matched in rnode_find */
        while (i < n->len && n->label[i] == p[pos + i])
            i++;
        if (i < n->len)
            break;
        pos += n->len;
        push_list(c, n);
    }
}

static bool key_len_used(const sl_router_t *r, unsigned kind, int with_port, size_t len)
{
    return (r->key_lens[kind][with_port][len / 64] >> (len % 64)) & 1;
}

static void walk_host(struct match_ctx *c, unsigned kind, const char *h, size_t len, unsigned port)
{
    const sl_router_t *r = c->r;
    bool any = key_len_used(r, kind, 0, len), with = key_len_used(r, kind, 1, len);
    const struct host_slot *s;
    uint64_t name_hash;

    if (!any && !with)
        return;
    name_hash = hash_name(h, len);
    if (any && (s = host_lookup(r, kind, 0, h, len, name_hash)) != NULL)
        walk_bucket(c, s->root);
    if (with && (s = host_lookup(r, kind, port, h, len, name_hash)) != NULL)
        walk_bucket(c, s->root);
}

/* Checks the buckets the request's Host selects: the exact name, then every
 * suffix after a label ("*.example.com" needs at least one label before
 * "example.com") and every prefix before one ("example.*" needs one after).
 * Exact-host candidates are settled first: plain hosts outrank wildcards of
 * the same weight, so the wildcard probes are often skipped altogether. */
static void walk_hosts(struct match_ctx *c)
{
    const sl_router_t *r = c->r;
    sl_str_t host = c->req->host;
    char buf[MAX_HOST_LEN];
    uint8_t dots[MAX_HOST_LEN / 2 + 1];
    size_t hlen, ndots = 0;
    unsigned port;

    if (host.len == 0 || r->nused == 0)
        return;
    if (!split_host_port(host.p, host.len, &hlen, &port) || hlen == 0 || hlen > MAX_HOST_LEN)
        return;
    if (port == 0)
        port = c->req->scheme == SL_PROTO_HTTPS ? 443 : 80;
    for (size_t i = 0; i < hlen; i++) {
        buf[i] = sl_lower(host.p[i]);
        if (buf[i] == '.' && i > 0 && i + 1 < hlen && ndots < sizeof(dots))
            dots[ndots++] = (uint8_t)i;
    }

    walk_host(c, HOST_EXACT, buf, hlen, port);
    drain_lists(c);
    if (r->wild_min_rank >= c->best)
        return;
    for (size_t k = 0; k < ndots && (r->has_wild[0] || r->has_wild[1]); k++) {
        size_t i = dots[k];
        if (r->has_wild[0])
            walk_host(c, HOST_LEFT_WILD, buf + i + 1, hlen - i - 1, port);
        if (r->has_wild[1])
            walk_host(c, HOST_RIGHT_WILD, buf, i, port);
    }
}

/* *m is written by each better match found (the last one written is
 * returned). On SL_DECLINED *m is untouched. */
int sl_router_match(const sl_router_t *r, const sl_router_req_t *req, sl_router_match_t *m)
{
    struct match_ctx c;

    c.r = r;
    c.req = req;
    c.best = UINT32_MAX;
    c.ok = m;
    c.nlists = 0;

    walk_hosts(&c);
    drain_lists(&c);
    walk_bucket(&c, r->hostless);
    drain_lists(&c);

    return c.best != UINT32_MAX ? SL_OK : SL_DECLINED;
}

/* ------------------------------------------------------------ upstream path */

/* Kong's sanitize_uri_postfix: a leading "./" or "../", or a lone "." or "..",
 * must not reach the upstream as the start of the remainder. */
static sl_str_t sanitize_postfix(sl_str_t s)
{
    if ((s.len == 1 && s.p[0] == '.') || (s.len == 2 && s.p[0] == '.' && s.p[1] == '.'))
        return (sl_str_t){s.p, 0};
    if (s.len >= 2 && s.p[0] == '.' && s.p[1] == '/')
        return (sl_str_t){s.p + 2, s.len - 2};
    if (s.len >= 3 && s.p[0] == '.' && s.p[1] == '.' && s.p[2] == '/')
        return (sl_str_t){s.p + 3, s.len - 3};
    return s;
}

static bool ends_with_slash(sl_str_t s)
{
    return s.len > 0 && s.p[s.len - 1] == '/';
}

static bool starts_with_slash(sl_str_t s)
{
    return s.len > 0 && s.p[0] == '/';
}

int sl_router_upstream_path(const char *service_path, sl_str_t req_path, const sl_router_match_t *m,
                            bool strip_path, int path_handling, char *out, size_t outcap)
{
    sl_str_t base = {"/", 1}, req = req_path, post, part[3];
    size_t nparts = 0, total = 0;
    const char *q;

    if (service_path != NULL && service_path[0] != '\0')
        base = (sl_str_t){service_path, strlen(service_path)};
    /* The query string is the caller's to append. */
    if (req.len > 0 && (q = memchr(req.p, '?', req.len)) != NULL)
        req.len = (size_t)(q - req.p);
    if (req.len == 0)
        req = (sl_str_t){"/", 1};

    /* Without a path match the remainder is the whole path minus its first
     * slash (Kong: uri_postfix = req_uri:sub(2)). */
    if (m != NULL && m->path.len > 0) {
        size_t cut = SL_MIN(m->prefix_len, req.len);
        post = (sl_str_t){req.p + cut, req.len - cut};
    } else {
        size_t cut = starts_with_slash(req) ? 1 : 0;
        post = (sl_str_t){req.p + cut, req.len - cut};
    }
    post = sanitize_postfix(post);

    sl_str_t base_trim = {base.p, ends_with_slash(base) ? base.len - 1 : base.len};
    sl_str_t req_tail = {req.p + 1, req.len - 1};

#define PART(s) (part[nparts++] = (s))
    if (path_handling == 1) {
        /* v1: naive concatenation, collapsing one double slash. */
        if (!strip_path) {
            PART(base);
            PART(req_tail);
        } else if (ends_with_slash(base) && starts_with_slash(post)) {
            PART(base_trim);
            PART(post);
        } else {
            PART(base);
            PART(post);
        }
    } else if (ends_with_slash(base)) {
        if (!strip_path) {
            PART(base);
            PART(req_tail);
        } else if (post.len == 0) {
            if (base.len == 1 || ends_with_slash(req))
                PART(base);
            else
                PART(base_trim);
        } else if (starts_with_slash(post)) {
            PART(base_trim);
            PART(post);
        } else {
            PART(base);
            PART(post);
        }
    } else {
        if (!strip_path) {
            PART(base);
            if (!(req.len == 1 && req.p[0] == '/'))
                PART(req);
        } else if (post.len == 0) {
            PART(base);
            if (req.len > 1 && ends_with_slash(req))
                PART(((sl_str_t){"/", 1}));
        } else if (starts_with_slash(post)) {
            PART(base);
            PART(post);
        } else {
            PART(base);
            PART(((sl_str_t){"/", 1}));
            PART(post);
        }
    }
#undef PART

    for (size_t i = 0; i < nparts; i++)
        total += part[i].len;
    if (out == NULL || total + 1 > outcap)
        return SL_ERR_TOO_BIG;
    for (size_t i = 0, at = 0; i < nparts; i++) {
        memcpy(out + at, part[i].p, part[i].len);
        at += part[i].len;
    }
    out[total] = '\0';
    return SL_OK;
}
