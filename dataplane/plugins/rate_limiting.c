/*
 * rate-limiting: Kong's fixed-window request counters, policy `local`.
 *
 * Each plugin instance counts requests per identifier (the consumer, the
 * credential, the client address, the service, a header's value or a path,
 * as config.limit_by says, falling back to the client address as Kong does)
 * in calendar-aligned UTC windows of a second, minute, hour, day, month and
 * year. A request is refused with config.error_code (429) when any
 * configured window has no request left; otherwise it is counted in every
 * configured window. Unlike Kong, which reads the counters in access and
 * increments them later from a timer (so that a burst can overshoot the
 * limit), the check and the increment happen together under one lock: across
 * every worker thread of the process exactly `limit` requests pass per
 * window. As in Kong's local policy, counters are per process (per node),
 * not shared across nodes.
 *
 * The counters live in one process-wide table, not in the instance's conf,
 * so that they survive configuration reloads: an entry is keyed by a digest
 * of the instance id (the plugins entity's id, stable across generations)
 * and the identifier, and holds each period's window start and count. A
 * count whose window has passed is reset when next touched. The table is
 * cut into stripes, each with its own mutex, hash buckets and LRU list, so
 * that workers rarely contend. Memory is bounded: a stripe holds at most
 * STRIPE_CAP entries. Every visit to a stripe frees a few expired entries
 * from the cold end of its LRU list; an insert into a full stripe first
 * sweeps the whole stripe for expired entries (at most once a second) and,
 * if it is still full, evicts the least recently used live entry (that identifier starts its
 * windows afresh, as when Kong's shared dict forcibly evicts a key). The
 * evictions are logged, at most once a minute.
 *
 * Response headers (X-RateLimit-Limit-<Period>, X-RateLimit-Remaining-<Period>,
 * RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and Retry-After on a
 * refusal) are set in access with sl_pdk_response_set_header: they apply to
 * the proxied response and to the refusal alike, as Kong's
 * pdk.private.rate_limiting headers do. config.hide_client_headers leaves
 * them all out, Retry-After included (Kong computes Retry-After only with the
 * other headers).
 *
 * Policy `redis` keeps the counters in Redis, shared by every node: one
 * EVAL per request checks every window and counts the request in all of
 * them only when each has a request left, atomically (Kong reads and
 * increments separately). The handler suspends the request while Redis
 * answers (dataplane/redis.c: one connection per worker, bounded by
 * config.redis.timeout). When Redis fails, config.fault_tolerant lets the
 * request through without headers (logged); otherwise it gets a 500.
 * Keys: ratelimit:<instance id>:<digest of the identifier>:<window start>:
 * <period>, expiring with their window. TLS to Redis is refused by
 * configure() (not supported yet), as is policy `cluster` (a database);
 * sync_rate is not used (every request goes to Redis).
 *
 * configure() and dispose() run on the thread that builds a generation;
 * access() runs on any worker, concurrently, with a read-only conf; the
 * counter table is the only shared mutable state and each stripe is guarded
 * by its mutex.
 */
#include "log.h"
#include "conf_read.h"
#include "pdk.h"
#include "plugin.h"
#include "redis.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Periods                                                                   */

enum { P_SECOND, P_MINUTE, P_HOUR, P_DAY, P_MONTH, P_YEAR, NPERIODS };

static const char *const period_names[NPERIODS] = {"second", "minute", "hour",
                                                   "day",    "month",  "year"};
static const char *const limit_headers[NPERIODS] = {
    "X-RateLimit-Limit-Second", "X-RateLimit-Limit-Minute", "X-RateLimit-Limit-Hour",
    "X-RateLimit-Limit-Day",    "X-RateLimit-Limit-Month",  "X-RateLimit-Limit-Year",
};
static const char *const remaining_headers[NPERIODS] = {
    "X-RateLimit-Remaining-Second", "X-RateLimit-Remaining-Minute", "X-RateLimit-Remaining-Hour",
    "X-RateLimit-Remaining-Day",    "X-RateLimit-Remaining-Month",  "X-RateLimit-Remaining-Year",
};

/* Kong's kong/plugins/rate-limiting/expiration.lua: the nominal length of
 * each window in seconds, from which RateLimit-Reset is computed (a month
 * counts as 30 days and a year as 365, also in February and leap years). */
static const int64_t nominal_seconds[NPERIODS] = {1, 60, 3600, 86400, 2592000, 31536000};

/* The UTC start of the window of period p that contains t, and the start of
 * the next one (kong.tools.timestamp.get_timestamps aligns them the same
 * way: minutes, hours and days on the epoch; months and years on the
 * calendar). */
static void window_of(int p, int64_t t, int64_t *start, int64_t *end)
{
    if (p <= P_DAY) {
        int64_t len = nominal_seconds[p];
        int64_t r = t % len;
        *start = t - (r < 0 ? r + len : r);
        *end = *start + len;
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    struct tm s = {.tm_year = tm.tm_year, .tm_mon = p == P_MONTH ? tm.tm_mon : 0, .tm_mday = 1};
    struct tm e = s;
    if (p == P_MONTH)
        e.tm_mon++; /* timegm normalises December + 1 */
    else
        e.tm_year++;
    *start = (int64_t)timegm(&s);
    *end = (int64_t)timegm(&e);
}

/* ------------------------------------------------------------------------ */
/* The counter table                                                         */

#define KEY_LEN 16
#define NSTRIPES 64
#define STRIPE_BUCKETS 2048
#define STRIPE_CAP 2048 /* entries per stripe: 131072 identifiers in all */
#define REAP_PER_VISIT 2

struct entry {
    struct entry *hnext;         /* bucket chain */
    struct entry *newer, *older; /* LRU list */
    uint8_t key[KEY_LEN];
    int64_t start[NPERIODS]; /* window start of each count; 0: none yet */
    uint64_t count[NPERIODS];
    int64_t expires; /* when every counted window has ended */
};

struct stripe {
    pthread_mutex_t mu;
    struct entry *buckets[STRIPE_BUCKETS];
    struct entry *newest, *oldest;
    size_t n;
    int64_t swept_at; /* the second of the last full sweep */
};

static struct stripe stripes[NSTRIPES]; /* zero: empty; mutexes set up once */
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void init_stripes(void)
{
    for (size_t i = 0; i < NSTRIPES; i++)
        pthread_mutex_init(&stripes[i].mu, NULL);
}

static atomic_int_fast64_t last_eviction_log;

static size_t bucket_of(const uint8_t *key)
{
    uint32_t v;
    memcpy(&v, key + 4, sizeof(v));
    return v % STRIPE_BUCKETS;
}

static void lru_unlink(struct stripe *s, struct entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(struct stripe *s, struct entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest)
        s->newest->newer = e;
    else
        s->oldest = e;
    s->newest = e;
}

static void remove_entry(struct stripe *s, struct entry *e)
{
    struct entry **pp = &s->buckets[bucket_of(e->key)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->n--;
    free(e);
}

/* Frees up to max expired entries from the cold end of the LRU list. */
static void reap_oldest(struct stripe *s, int64_t now, int max)
{
    while (max-- > 0 && s->oldest && s->oldest->expires <= now)
        remove_entry(s, s->oldest);
}

/* Frees every expired entry of a stripe. */
static void sweep(struct stripe *s, int64_t now)
{
    for (struct entry *e = s->oldest, *next; e; e = next) {
        next = e->newer;
        if (e->expires <= now)
            remove_entry(s, e);
    }
}

/* The entry for key, created when missing (evicting as the design comment
 * says). *evicted is set when a live entry had to go. Called locked. */
static struct entry *find_or_insert(struct stripe *s, const uint8_t *key, int64_t now,
                                    bool *evicted)
{
    size_t b = bucket_of(key);
    for (struct entry *e = s->buckets[b]; e; e = e->hnext) {
        if (!memcmp(e->key, key, KEY_LEN)) {
            lru_unlink(s, e);
            lru_push_newest(s, e);
            return e;
        }
    }
    if (s->n >= STRIPE_CAP) {
        /* At most one full sweep a second: when nothing has expired, a
         * flood of new identifiers evicts without scanning every time. */
        if (s->swept_at != now) {
            s->swept_at = now;
            sweep(s, now);
        }
        if (s->n >= STRIPE_CAP) {
            remove_entry(s, s->oldest);
            *evicted = true;
        }
    }
    struct entry *e = sl_xcalloc(1, sizeof(*e));
    memcpy(e->key, key, KEY_LEN);
    e->hnext = s->buckets[b];
    s->buckets[b] = e;
    lru_push_newest(s, e);
    s->n++;
    return e;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

enum limit_by { BY_CONSUMER, BY_CREDENTIAL, BY_IP, BY_SERVICE, BY_HEADER, BY_PATH };

static const char *const limit_by_names[] = {"consumer", "credential", "ip",
                                             "service",  "header",     "path"};

struct conf {
    char *instance_id; /* owned */
    bool redis;        /* policy redis, else local */
    bool fault_tolerant;
    sl_redis_target_t target;
    bool has[NPERIODS];
    double limit[NPERIODS];
    enum limit_by by;
    char *header_name; /* owned; BY_HEADER */
    char *path;        /* owned; BY_PATH */
    bool hide_client_headers;
    int error_code;
    char *error_message; /* owned */
};

static void dispose(void *p)
{
    struct conf *c = p;
    if (!c)
        return;
    free(c->instance_id);
    free(c->header_name);
    free(c->path);
    free(c->error_message);
    free(c);
}

/* A string field that must be a non-empty string when present; NULL when
 * null or absent (true), false with err set when of another type. */
static bool optional_string(const json_t *config, const char *name, const char **out, char *err,
                            size_t errlen)
{
    const json_t *v = json_object_get(config, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "config.%s: expected a non-empty string", name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Copies a string field of config.redis into out (size n); absent or null
 * leaves "". */
static bool redis_string(const json_t *r, const char *name, char *out, size_t n, bool required,
                         char *err, size_t errlen)
{
    const json_t *v = json_object_get(r, name);
    out[0] = '\0';
    if (!v || json_is_null(v)) {
        if (required)
            snprintf(err, errlen, "config.redis.%s: required field missing (policy is redis)",
                     name);
        return !required;
    }
    if (!json_is_string(v) || json_string_length(v) >= n ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "config.redis.%s: expected a string of at most %zu bytes", name,
                 n - 1);
        return false;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool read_ints(const json_t *r, sl_redis_target_t *t, char *err, size_t errlen)
{
    int64_t port, db, timeout;
    if (!sl_cf_int(r, "redis.port", 6379, 1, 65535, &port, err, errlen) ||
        !sl_cf_int(r, "redis.database", 0, 0, 1 << 20, &db, err, errlen) ||
        !sl_cf_int(r, "redis.timeout", 2000, 0, 2147483646, &timeout, err, errlen))
        return false;
    t->port = (int)port;
    t->database = (int)db;
    t->timeout_ms = timeout ? (int)timeout : 60000; /* 0: still bounded */
    return true;
}

/* config.redis for policy redis. */
static bool read_redis(const json_t *r, sl_redis_target_t *t, char *err, size_t errlen)
{
    if (!json_is_object(r)) {
        snprintf(err, errlen, "config.redis: required with policy redis");
        return false;
    }
    if (json_is_true(json_object_get(r, "ssl"))) {
        snprintf(err, errlen,
                 "config.redis.ssl: TLS to Redis is not supported by this data plane yet");
        return false;
    }
    return redis_string(r, "host", t->host, sizeof(t->host), true, err, errlen) &&
           redis_string(r, "username", t->username, sizeof(t->username), false, err, errlen) &&
           redis_string(r, "password", t->password, sizeof(t->password), false, err, errlen) &&
           read_ints(r, t, err, errlen);
}

/* Reads config.policy, the periods and the rest; see the design comment for
 * what is refused. Returns the conf or NULL with err naming the field. */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    if (!instance_id || !*instance_id) {
        snprintf(err, errlen, "id: a rate-limiting instance needs an id to key its counters");
        return NULL;
    }
    const json_t *policy = json_object_get(config, "policy");
    if (policy && !json_is_null(policy)) {
        if (!json_is_string(policy)) {
            snprintf(err, errlen, "config.policy: expected a string");
            return NULL;
        }
        if (strcmp(json_string_value(policy), "local") != 0 &&
            strcmp(json_string_value(policy), "redis") != 0) {
            snprintf(err, errlen, "config.policy: '%.64s' is not supported by this data plane yet",
                     json_string_value(policy));
            return NULL;
        }
    }

    struct conf *c = sl_xcalloc(1, sizeof(*c));
    c->redis = policy && json_is_string(policy) && !strcmp(json_string_value(policy), "redis");
    if (c->redis && !read_redis(json_object_get(config, "redis"), &c->target, err, errlen))
        goto fail;
    if (!sl_cf_bool(config, "fault_tolerant", true, &c->fault_tolerant, err, errlen))
        goto fail;
    size_t nlimits = 0;
    for (int p = 0; p < NPERIODS; p++) {
        const json_t *v = json_object_get(config, period_names[p]);
        if (!v || json_is_null(v))
            continue;
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d <= 0) {
            snprintf(err, errlen, "config.%s: expected a number greater than 0", period_names[p]);
            goto fail;
        }
        c->has[p] = true;
        c->limit[p] = d;
        nlimits++;
    }
    if (nlimits == 0) {
        snprintf(err, errlen,
                 "config: at least one of these fields must be non-empty: 'config.second', "
                 "'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'");
        goto fail;
    }

    const char *by = NULL;
    if (!optional_string(config, "limit_by", &by, err, errlen))
        goto fail;
    c->by = BY_CONSUMER;
    if (by) {
        size_t i = 0;
        while (i < SL_ARRAY_LEN(limit_by_names) && strcmp(limit_by_names[i], by) != 0)
            i++;
        if (i == SL_ARRAY_LEN(limit_by_names)) {
            snprintf(err, errlen,
                     "config.limit_by: expected one of: consumer, credential, ip, service, header, "
                     "path");
            goto fail;
        }
        c->by = (enum limit_by)i;
    }
    const char *s;
    if (!optional_string(config, "header_name", &s, err, errlen))
        goto fail;
    if (c->by == BY_HEADER && !s) {
        snprintf(err, errlen, "config.header_name: required field missing (limit_by is header)");
        goto fail;
    }
    if (c->by == BY_HEADER)
        c->header_name = sl_xstrdup(s);
    if (!optional_string(config, "path", &s, err, errlen))
        goto fail;
    if (c->by == BY_PATH && (!s || s[0] != '/')) {
        snprintf(err, errlen,
                 s ? "config.path: should start with: /"
                   : "config.path: required field missing (limit_by is path)");
        goto fail;
    }
    if (c->by == BY_PATH)
        c->path = sl_xstrdup(s);

    if (!sl_cf_bool(config, "hide_client_headers", false, &c->hide_client_headers, err, errlen))
        goto fail;

    c->error_code = 429;
    const json_t *code = json_object_get(config, "error_code");
    if (code && !json_is_null(code)) {
        double d = json_number_value(code);
        if (!json_is_number(code) || d != floor(d) || d < 400 || d > 599) {
            snprintf(err, errlen,
                     "config.error_code: expected an integer status between 400 and 599");
            goto fail;
        }
        c->error_code = (int)d;
    }
    if (!optional_string(config, "error_message", &s, err, errlen))
        goto fail;
    c->error_message = sl_xstrdup(s ? s : "API rate limit exceeded");
    c->instance_id = sl_xstrdup(instance_id);
    return c;

fail:
    dispose(c);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* access                                                                    */

/* Kong's get_identifier: what the counters of this request are kept for,
 * the client's (forwarded) address when the configured thing is absent. */
static sl_str_t identifier_of(sl_pdk_t *p, const struct conf *c)
{
    sl_str_t v = {NULL, 0};
    switch (c->by) {
    case BY_CONSUMER: {
        const sl_consumer_t *consumer = sl_pdk_client_get_consumer(p);
        const sl_credential_t *cred = sl_pdk_client_get_credential(p);
        const char *id = consumer ? consumer->id : cred ? cred->id : NULL;
        if (id)
            v = (sl_str_t){id, strlen(id)};
        break;
    }
    case BY_CREDENTIAL: {
        const sl_credential_t *cred = sl_pdk_client_get_credential(p);
        if (cred && cred->id)
            v = (sl_str_t){cred->id, strlen(cred->id)};
        break;
    }
    case BY_SERVICE: {
        const sl_service_t *svc = sl_pdk_router_get_service(p);
        if (svc && svc->id)
            v = (sl_str_t){svc->id, strlen(svc->id)};
        break;
    }
    case BY_HEADER:
        if (!sl_pdk_request_get_header(p, c->header_name, &v))
            v = (sl_str_t){NULL, 0};
        break;
    case BY_PATH: {
        /* Kong counts a request by path only when its path is config.path;
         * any other request is counted by its client address. */
        sl_str_t path = sl_pdk_request_get_path(p);
        if (path.len == strlen(c->path) && !memcmp(path.p, c->path, path.len))
            v = path;
        break;
    }
    case BY_IP:
        break;
    }
    if (!v.p) {
        const char *ip = sl_pdk_client_get_forwarded_ip(p);
        v = (sl_str_t){ip ? ip : "", ip ? strlen(ip) : 0};
    }
    return v;
}

/* The counter key: SHA-256 of the instance id and the identifier, cut to
 * KEY_LEN bytes. A cryptographic digest, because identifiers such as header
 * values are chosen by clients, who must not be able to collide with
 * someone else's counters. */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256;
static _Thread_local EVP_MD_CTX *sha256_ctx; /* freed by worker_exit */

static void fetch_sha256(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void worker_exit(void)
{
    EVP_MD_CTX_free(sha256_ctx);
    sha256_ctx = NULL;
    sl_redis_worker_exit();
}

static void key_of(sl_pdk_t *p, const struct conf *c, sl_str_t ident, uint8_t *key)
{
    size_t idlen = strlen(c->instance_id);
    size_t n = idlen + 1 + ident.len;
    unsigned char *buf = sl_pdk_alloc(p, n);
    memcpy(buf, c->instance_id, idlen + 1);
    if (ident.len)
        memcpy(buf + idlen + 1, ident.p, ident.len);
    /* SHA-256 with the algorithm fetched once and a context per thread:
     * EVP_Digest would look the algorithm up and allocate a context on
     * every request. */
    pthread_once(&sha256_once, fetch_sha256);
    if (!sha256_ctx)
        sha256_ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!sha256 || !sha256_ctx || !EVP_DigestInit_ex2(sha256_ctx, sha256, NULL) ||
        !EVP_DigestUpdate(sha256_ctx, buf, n) || !EVP_DigestFinal_ex(sha256_ctx, md, &mdlen) ||
        mdlen < KEY_LEN)
        sl_panic(__FILE__, __LINE__, "SHA-256 failed");
    memcpy(key, md, KEY_LEN);
}

/* What one request's check found, per configured period. */
struct usage {
    double remaining[NPERIODS]; /* limit minus the count before this request */
    int64_t start[NPERIODS];
    int stop; /* a period without requests left, or -1 */
};

/*
 * Checks and counts one request atomically: when every configured window
 * has a request left, counts it in all of them; otherwise counts nothing and
 * sets u->stop. Returns true when a live entry had to be evicted.
 */
static bool check_and_count(const struct conf *c, const uint8_t *key, int64_t now, struct usage *u)
{
    pthread_once(&stripes_once, init_stripes);
    struct stripe *s = &stripes[key[0] % NSTRIPES];
    bool evicted = false;
    int64_t start[NPERIODS], end[NPERIODS], expires = now;
    for (int p = 0; p < NPERIODS; p++) {
        if (!c->has[p])
            continue;
        window_of(p, now, &start[p], &end[p]);
        expires = SL_MAX(expires, end[p]);
    }

    pthread_mutex_lock(&s->mu);
    reap_oldest(s, now, REAP_PER_VISIT);
    struct entry *e = find_or_insert(s, key, now, &evicted);
    u->stop = -1;
    for (int p = 0; p < NPERIODS; p++) {
        if (!c->has[p])
            continue;
        if (e->start[p] != start[p]) {
            e->start[p] = start[p];
            e->count[p] = 0;
        }
        u->start[p] = start[p];
        u->remaining[p] = c->limit[p] - (double)e->count[p];
        if (u->remaining[p] <= 0)
            u->stop = p;
    }
    if (u->stop < 0)
        for (int p = 0; p < NPERIODS; p++)
            if (c->has[p])
                e->count[p]++;
    /* Windows of other periods (from an earlier config of the instance)
     * may still be live: keep the entry until the last one ends. */
    e->expires = SL_MAX(e->expires, expires);
    pthread_mutex_unlock(&s->mu);
    return evicted;
}

/* A number as Lua's tostring writes it ("%.14g"): 5, 0.5, 1e+15. */
static const char *number_text(sl_pdk_t *p, double d)
{
    char buf[32];
    int n;
    /* Whole numbers (nearly all limits and counts) without printf's
     * floating-point formatting, which costs more than the rest of the
     * plugin; %.14g prints them the same way up to 1e14. */
    if (d >= 0 && d < 1e14 && d == (double)(int64_t)d) {
        uint64_t v = (uint64_t)d;
        char *end = buf + sizeof(buf), *s = end;
        do {
            *--s = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        return sl_pdk_strndup(p, s, (size_t)(end - s));
    }
    n = snprintf(buf, sizeof(buf), "%.14g", d);
    return sl_pdk_strndup(p, buf, (size_t)n);
}

/* Kong's headers: per period the limit and what is left after this request
 * (the refused period, or every period of a passed request, counts this
 * request); RateLimit-* describe the period with the fewest requests left
 * (the longer one on a tie). Returns RateLimit-Reset. */
static int64_t set_headers(sl_pdk_t *p, const struct conf *c, const struct usage *u, int64_t now)
{
    int best = -1;
    double best_remaining = 0;
    for (int k = 0; k < NPERIODS; k++) {
        if (!c->has[k])
            continue;
        double remaining = u->remaining[k];
        if (u->stop < 0 || u->stop == k)
            remaining -= 1;
        remaining = remaining < 0 ? 0 : remaining;
        sl_pdk_response_set_header(p, limit_headers[k], number_text(p, c->limit[k]));
        sl_pdk_response_set_header(p, remaining_headers[k], number_text(p, remaining));
        if (best < 0 || remaining < best_remaining ||
            (remaining == best_remaining && nominal_seconds[k] > nominal_seconds[best])) {
            best = k;
            best_remaining = remaining;
        }
    }
    int64_t reset = nominal_seconds[best] - (now - u->start[best]);
    reset = reset < 1 ? 1 : reset;
    sl_pdk_response_set_header(p, "RateLimit-Limit", number_text(p, c->limit[best]));
    sl_pdk_response_set_header(p, "RateLimit-Remaining", number_text(p, best_remaining));
    sl_pdk_response_set_header(p, "RateLimit-Reset", number_text(p, (double)reset));
    return reset;
}

/* ------------------------------------------------------------------------ */
/* policy redis                                                              */

/* Checks every window (KEYS[i], limit ARGV[2i-1], lifetime ARGV[2i]) and
 * counts the request in all of them only if each has one left; returns the
 * counts before this request and 1 (counted) or 0 (refused). */
static const char check_script[] =
    "local counts = {}\n"
    "local allowed = 1\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local c = tonumber(redis.call('GET', k) or '0')\n"
    "  counts[i] = c\n"
    "  if c >= tonumber(ARGV[2 * i - 1]) then allowed = 0 end\n"
    "end\n"
    "if allowed == 1 then\n"
    "  for i, k in ipairs(KEYS) do\n"
    "    if redis.call('INCR', k) == 1 then redis.call('EXPIRE', k, ARGV[2 * i]) end\n"
    "  end\n"
    "end\n"
    "counts[#KEYS + 1] = allowed\n"
    "return counts\n";

/* A request waiting for Redis (in the request's arena). */
struct wait {
    sl_pdk_t *p;
    const struct conf *c;
    sl_redis_call_t *call;
    int64_t now;
    int periods[NPERIODS]; /* the configured periods, in key order */
    int n;
    int64_t start[NPERIODS];
};

static void on_abort(void *arg)
{
    struct wait *w = arg;
    sl_redis_cancel(w->call);
}

/* Sets the headers and answers as the local policy does. */
static int decide(sl_pdk_t *p, const struct conf *c, const struct usage *u, int64_t now)
{
    int64_t reset = 0;
    if (!c->hide_client_headers)
        reset = set_headers(p, c, u, now);
    if (u->stop < 0)
        return SL_PLUGIN_CONTINUE;
    if (!c->hide_client_headers)
        sl_pdk_response_set_header(p, "Retry-After", number_text(p, (double)reset));
    return sl_pdk_response_exit_message(p, c->error_code, c->error_message);
}

static void on_redis_reply(const redisReply *reply, const char *err, void *arg)
{
    struct wait *w = arg;
    sl_pdk_t *p = w->p;
    const struct conf *c = w->c;
    bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)w->n + 1;
    for (size_t i = 0; ok && i < reply->elements; i++)
        ok = reply->element[i]->type == REDIS_REPLY_INTEGER;
    if (!ok) {
        sl_pdk_log(p, SL_LOG_ERROR, "redis %s:%d: %s%s", c->target.host, c->target.port,
                   err ? err : "unexpected reply",
                   c->fault_tolerant ? "; the request goes through (fault_tolerant)" : "");
        sl_pdk_resume(p, c->fault_tolerant
                             ? SL_PLUGIN_CONTINUE
                             : sl_pdk_response_error(p, 500, "An unexpected error occurred"));
        return;
    }
    struct usage u = {.stop = -1};
    bool allowed = reply->element[w->n]->integer == 1;
    for (int i = 0; i < w->n; i++) {
        int k = w->periods[i];
        u.start[k] = w->start[k];
        u.remaining[k] = c->limit[k] - (double)reply->element[i]->integer;
        if (!allowed && u.remaining[k] <= 0)
            u.stop = k;
    }
    if (!allowed && u.stop < 0)
        u.stop = w->periods[0]; /* a count moved between the check and now: refuse anyway */
    sl_pdk_resume(p, decide(p, c, &u, w->now));
}

/* Starts the check on Redis and suspends the request. */
static int redis_access(sl_pdk_t *p, const struct conf *c, const uint8_t *key, int64_t now)
{
    struct wait *w = sl_pdk_alloc(p, sizeof(*w));
    memset(w, 0, sizeof(*w));
    w->p = p;
    w->c = c;
    w->now = now;
    char ident[2 * KEY_LEN + 1];
    sl_hex_encode(key, KEY_LEN, ident);
    const char *argv[3 + 3 * NPERIODS];
    size_t lens[3 + 3 * NPERIODS];
    char *keys[NPERIODS], *args[2 * NPERIODS];
    int argc = 0;
    for (int k = 0; k < NPERIODS; k++) {
        if (!c->has[k])
            continue;
        int64_t start, end;
        window_of(k, now, &start, &end);
        w->start[k] = start;
        w->periods[w->n++] = k;
        char buf[256];
        int n = snprintf(buf, sizeof(buf), "ratelimit:%s:%s:%lld:%s", c->instance_id, ident,
                         (long long)start, period_names[k]);
        keys[w->n - 1] = sl_pdk_strndup(p, buf, (size_t)n);
        n = snprintf(buf, sizeof(buf), "%.17g", c->limit[k]);
        args[2 * (w->n - 1)] = sl_pdk_strndup(p, buf, (size_t)n);
        n = snprintf(buf, sizeof(buf), "%lld", (long long)(end - now + 1));
        args[2 * (w->n - 1) + 1] = sl_pdk_strndup(p, buf, (size_t)n);
    }
    char nkeys[8];
    snprintf(nkeys, sizeof(nkeys), "%d", w->n);
    argv[argc++] = "EVAL";
    argv[argc++] = check_script;
    argv[argc++] = nkeys;
    for (int i = 0; i < w->n; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < 2 * w->n; i++)
        argv[argc++] = args[i];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    w->call =
        sl_redis_command(sl_pdk_event_base(p), &c->target, argc, argv, lens, on_redis_reply, w);
    sl_pdk_suspend(p, on_abort, w);
    return SL_PLUGIN_SUSPEND;
}

static int on_access(sl_pdk_t *p, void *vconf)
{
    const struct conf *c = vconf;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec;

    uint8_t key[KEY_LEN];
    key_of(p, c, identifier_of(p, c), key);
    if (c->redis)
        return redis_access(p, c, key, now);
    struct usage u;
    if (check_and_count(c, key, now, &u)) {
        int64_t last = atomic_load(&last_eviction_log);
        if (now - last >= 60 && atomic_compare_exchange_strong(&last_eviction_log, &last, now))
            sl_pdk_log(p, SL_LOG_WARN,
                       "the counter table is full (%d identifiers): the least recently used "
                       "identifiers lose their counts",
                       NSTRIPES * STRIPE_CAP);
    }

    return decide(p, c, &u, now);
}

const sl_native_plugin_t sl_plugin_rate_limiting = {
    .name = "rate-limiting",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
    .worker_exit = worker_exit,
};
