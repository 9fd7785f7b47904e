/*
 * dns.c owns each worker's name cache. Service and target host names are
 * resolved asynchronously with libevent's evdns (never a blocking
 * getaddrinfo on a worker), answers are cached for their TTL, and concurrent
 * requests for the same name share one lookup. The hosts file is read once
 * at start-up and consulted first, as a resolver would.
 *
 * Runs on the owning worker's thread only; the hosts table is read-only after
 * sl_dns_init of the first worker.
 */
#include "log.h"
#include "util.h"
#include "worker.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <pthread.h>
#include <stdio.h>

#define DNS_BUCKETS 256
#define DNS_MAX_ADDRS 8
#define DNS_NEGATIVE_TTL_MS 5000
#define DNS_MIN_TTL_MS 1000

struct sl_dns_waiter_s {
    struct sl_dns_waiter_s *next;
    sl_dns_cb cb;
    void *arg;
    uint16_t port;
    bool cancelled;
};

struct dns_entry {
    struct dns_entry *next;
    char *host;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    socklen_t lens[DNS_MAX_ADDRS];
    size_t naddrs;
    uint64_t expires_ms;
    unsigned rr;
    bool pending, tried_v6;
    sl_dns_waiter_t *waiters;
    sl_worker_t *w;
};

struct sl_dns_cache_s {
    struct dns_entry *buckets[DNS_BUCKETS];
};

/* name -> address from the hosts file: a small, read-only list. */
struct host_entry {
    char *name;
    struct sockaddr_storage addr;
    socklen_t len;
};
static struct host_entry *hosts;
static size_t nhosts;
static pthread_once_t hosts_once = PTHREAD_ONCE_INIT;
static const char *hosts_path;

static void load_hosts(void)
{
    FILE *f = hosts_path ? fopen(hosts_path, "r") : NULL;
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *ip = strtok_r(line, " \t\r\n", &save);
        if (!ip)
            continue;
        struct sockaddr_storage ss;
        socklen_t len;
        memset(&ss, 0, sizeof(ss));
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            len = sizeof(*sin);
        } else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            len = sizeof(*sin6);
        } else {
            continue;
        }
        for (char *name = strtok_r(NULL, " \t\r\n", &save); name;
             name = strtok_r(NULL, " \t\r\n", &save)) {
            /* The first mapping of a name wins, IPv4 preferred as resolvers do. */
            bool dup = false;
            for (size_t i = 0; i < nhosts && !dup; i++)
                dup = !strcasecmp(hosts[i].name, name) && hosts[i].addr.ss_family == AF_INET;
            if (dup)
                continue;
            hosts = sl_xrealloc(hosts, (nhosts + 1) * sizeof(*hosts));
            hosts[nhosts].name = sl_xstrdup(name);
            hosts[nhosts].addr = ss;
            hosts[nhosts].len = len;
            nhosts++;
        }
    }
    fclose(f);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static void free_waiters(struct dns_entry *e)
{
    while (e->waiters) {
        sl_dns_waiter_t *next = e->waiters->next;
        free(e->waiters);
        e->waiters = next;
    }
}

int sl_dns_init(sl_worker_t *w)
{
    hosts_path = w->conf->dns_hostsfile;
    pthread_once(&hosts_once, load_hosts);
    int flags = EVDNS_BASE_DISABLE_WHEN_INACTIVE;
    if (!w->conf->dns_resolver)
        flags |= EVDNS_BASE_INITIALIZE_NAMESERVERS;
    w->dns = evdns_base_new(w->base, flags);
    if (!w->dns)
        return SL_ERR_NOMEM;
    if (w->conf->dns_resolver) {
        char **items;
        size_t n = sl_conf_split(w->conf->dns_resolver, &items);
        for (size_t i = 0; i < n; i++)
            if (evdns_base_nameserver_ip_add(w->dns, items[i]) != 0)
                SL_WARN("dns_resolver: cannot use '%s' as a name server", items[i]);
        sl_conf_split_free(items, n);
    }
    w->dns_cache = sl_xcalloc(1, sizeof(*w->dns_cache));
    return SL_OK;
}

void sl_dns_dispose(sl_worker_t *w)
{
    if (w->dns_cache) {
        for (size_t b = 0; b < DNS_BUCKETS; b++) {
            struct dns_entry *e = w->dns_cache->buckets[b];
            while (e) {
                struct dns_entry *next = e->next;
                if (e->pending) {
                    /* The evdns callback still holds e: let it free e. */
                    e->w = NULL;
                    free_waiters(e);
                } else {
                    free(e->host);
                    free(e);
                }
                e = next;
            }
        }
        free(w->dns_cache);
        w->dns_cache = NULL;
    }
    if (w->dns) {
        /* Failing the pending requests only queues their callbacks on the
         * loop; run it once more so they free their entries. */
        evdns_base_free(w->dns, 1);
        w->dns = NULL;
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    }
}

static void finish(struct dns_entry *e, int rc)
{
    sl_dns_waiter_t *wt = e->waiters;
    e->waiters = NULL;
    while (wt) {
        sl_dns_waiter_t *next = wt->next;
        if (!wt->cancelled) {
            if (rc == SL_OK) {
                unsigned i = e->rr++ % e->naddrs;
                struct sockaddr_storage ss = e->addrs[i];
                set_port(&ss, wt->port);
                wt->cb(SL_OK, (struct sockaddr *)&ss, e->lens[i], wt->arg);
            } else {
                wt->cb(rc, NULL, 0, wt->arg);
            }
        }
        free(wt);
        wt = next;
    }
}

static void start_lookup(struct dns_entry *e, bool v6);

static void on_resolved(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    struct dns_entry *e = arg;
    if (!e->w) {
        /* The worker went away while we were in flight. */
        free_waiters(e);
        free(e->host);
        free(e);
        return;
    }
    e->naddrs = 0;
    if (result == DNS_ERR_NONE && count > 0) {
        for (int i = 0; i < count && e->naddrs < DNS_MAX_ADDRS; i++) {
            struct sockaddr_storage *ss = &e->addrs[e->naddrs];
            memset(ss, 0, sizeof(*ss));
            if (type == DNS_IPv4_A) {
                struct sockaddr_in *sin = (struct sockaddr_in *)ss;
                sin->sin_family = AF_INET;
                memcpy(&sin->sin_addr, (char *)addresses + 4 * i, 4);
                e->lens[e->naddrs] = sizeof(*sin);
            } else if (type == DNS_IPv6_AAAA) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
                sin6->sin6_family = AF_INET6;
                memcpy(&sin6->sin6_addr, (char *)addresses + 16 * i, 16);
                e->lens[e->naddrs] = sizeof(*sin6);
            } else {
                continue;
            }
            e->naddrs++;
        }
    }
    /* No A record (an empty answer, not a failure): try AAAA. A timeout or a
     * name that does not exist would only fail again, twice as slowly. */
    if (e->naddrs == 0 && !e->tried_v6 && (result == DNS_ERR_NONE || result == DNS_ERR_NODATA)) {
        start_lookup(e, true);
        return;
    }
    e->pending = false;
    uint64_t ttl_ms = e->naddrs ? SL_MAX((uint64_t)(ttl > 0 ? ttl : 0) * 1000, DNS_MIN_TTL_MS)
                                : DNS_NEGATIVE_TTL_MS;
    e->expires_ms = sl_now_ms() + ttl_ms;
    if (e->naddrs == 0)
        SL_WARN("dns: cannot resolve '%s': %s", e->host, evdns_err_to_string(result));
    finish(e, e->naddrs ? SL_OK : SL_ERR_NOT_FOUND);
}

static void start_lookup(struct dns_entry *e, bool v6)
{
    e->pending = true;
    e->tried_v6 = v6;
    struct evdns_request *req =
        v6 ? evdns_base_resolve_ipv6(e->w->dns, e->host, DNS_QUERY_NO_SEARCH, on_resolved, e)
           : evdns_base_resolve_ipv4(e->w->dns, e->host, DNS_QUERY_NO_SEARCH, on_resolved, e);
    if (!req) {
        e->pending = false;
        e->naddrs = 0;
        e->expires_ms = sl_now_ms() + DNS_NEGATIVE_TTL_MS;
        finish(e, SL_ERR_NOT_FOUND);
    }
}

void sl_dns_resolve(sl_worker_t *w, const char *host, uint16_t port, sl_dns_cb cb, void *arg,
                    sl_dns_waiter_t **slot)
{
    for (size_t i = 0; i < nhosts; i++) {
        if (!strcasecmp(hosts[i].name, host)) {
            struct sockaddr_storage ss = hosts[i].addr;
            set_port(&ss, port);
            cb(SL_OK, (struct sockaddr *)&ss, hosts[i].len, arg);
            return;
        }
    }
    size_t b = sl_hash_lower(host, strlen(host)) % DNS_BUCKETS;
    struct dns_entry *e = w->dns_cache->buckets[b];
    while (e && strcasecmp(e->host, host))
        e = e->next;
    if (!e) {
        e = sl_xcalloc(1, sizeof(*e));
        e->host = sl_xstrdup(host);
        e->w = w;
        e->next = w->dns_cache->buckets[b];
        w->dns_cache->buckets[b] = e;
    }
    if (!e->pending && e->expires_ms > sl_now_ms()) {
        if (e->naddrs == 0) {
            cb(SL_ERR_NOT_FOUND, NULL, 0, arg);
        } else {
            unsigned i = e->rr++ % e->naddrs;
            struct sockaddr_storage ss = e->addrs[i];
            set_port(&ss, port);
            cb(SL_OK, (struct sockaddr *)&ss, e->lens[i], arg);
        }
        return;
    }
    sl_dns_waiter_t *wt = sl_xcalloc(1, sizeof(*wt));
    wt->cb = cb;
    wt->arg = arg;
    wt->port = port;
    wt->next = e->waiters;
    e->waiters = wt;
    /* Publish the waiter before starting: a lookup that fails synchronously
     * runs the callback, which may free the caller's object (and its slot). */
    *slot = wt;
    if (!e->pending)
        start_lookup(e, false);
}

void sl_dns_cancel(sl_worker_t *w, sl_dns_waiter_t *wt)
{
    (void)w;
    if (wt)
        wt->cancelled = true;
}
