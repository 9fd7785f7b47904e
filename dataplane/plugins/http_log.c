/*
 * http_log.c: the http-log plugin (Kong 3.10's kong/plugins/http-log with
 * kong/tools/queue.lua), PRIORITY 12, log phase only.
 *
 * Each request's kong.log.serialize object goes to config.http_endpoint in
 * an HTTP/1.1 request (config.method, Content-Type config.content_type,
 * config.headers, Authorization: Basic from user info in the URL), through
 * a queue that batches entries: with queue.max_batch_size 1 the body is one
 * JSON object, otherwise a JSON array of up to max_batch_size objects,
 * collected for at most queue.max_coalescing_delay seconds after the first
 * (as Kong, a delay under 50 ms sends one entry at a time). A batch is
 * delivered when the endpoint answers with a status below 400; otherwise
 * it is sent again after initial_retry_delay, doubling up to
 * max_retry_delay, until max_retry_time has passed since the first
 * attempt, when it is dropped with an error naming how many entries were
 * lost. One batch is in flight per queue (queue.concurrency_limit 1); with
 * concurrency_limit -1 every entry is sent at once on its own. A queue
 * holds at most queue.max_entries entries (and queue.max_bytes bytes when
 * set): beyond that the oldest are dropped, with an error when dropping
 * starts and a notice when sending works again. config.timeout bounds
 * connecting, writing and each wait for the response; connections are kept
 * for reuse config.keepalive ms.
 *
 * Queues are named as Kong names them (endpoint, method, content type,
 * timeout, keepalive), so instances with the same endpoint share one, and
 * a queue sends with the newest configuration it has seen.
 *
 * Threads. Nothing here blocks a worker or is shared between workers: each
 * worker thread has its own queues, connections and DNS resolver
 * (thread-local, created by the worker's first entry), and sends with
 * libevent bufferevents on the worker's own event loop. The log handler
 * only serializes and enqueues, after the client's response was handed
 * over. A worker's queues are flushed when its loop ends (worker_exit):
 * batches still queued are sent without waiting for coalescing, for at
 * most EXIT_FLUSH_MS; what is left then is counted as lost.
 *
 * The conf (struct target) is shared read-only by every worker and
 * reference-counted: a queue or a send in flight holds a reference, so a
 * configuration that was replaced stays valid until its last batch is
 * done. https endpoints are reached over TLS without certificate
 * verification, as Kong's http-log (ssl_verify false).
 * config.custom_fields_by_lua is refused at configure time.
 */
#include "dp_conf.h"
#include "h1_parser.h"
#include "log.h"
#include "pdk.h"
#include "plugin.h"
#include "strbuf.h"
#include "util.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define COALESCE_MIN_MS 50           /* Kong's COALESCE_MIN_TIME */
#define CAPACITY_WARNING 0.8         /* Kong's CAPACITY_WARNING_THRESHOLD */
#define MAX_RESPONSE_BODY (1u << 24) /* a longer answer from the endpoint fails the send */
#define ERROR_BODY_BYTES 512         /* of the endpoint's answer quoted in an error */
#define MAX_IDLE_CONNS 16            /* kept-alive connections per worker */
#define MAX_UNQUEUED_SENDS 1024      /* concurrency_limit -1: sends in flight per worker */
#define EXIT_FLUSH_MS 5000
#define DEFAULT_SOCKET_TIMEOUT_MS 60000 /* what a 0 timeout or keepalive stands for */

/* Every callback of our bufferevents runs from the loop, never inside the
 * call that caused it (a connect that fails at once, a name found in
 * /etc/hosts): code that starts an attempt never sees it end under it. */
#define BEV_OPTS (BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

struct target {
    atomic_int refs;
    char *name; /* owned: the queue name */
    char *tag;  /* owned: "[http-log plugin <id>] queue <endpoint>: " for log lines */
    char *host; /* owned: as in the URL (brackets removed) */
    char *hostport;
    uint16_t port;
    bool https;
    bool is_ip;
    struct sockaddr_storage addr; /* when is_ip */
    socklen_t addrlen;
    char *head; /* owned: the request head without Content-Length and the final CRLF */
    size_t head_len;
    uint32_t timeout_ms, keepalive_ms;
    /* queue.* */
    size_t max_batch;
    uint64_t coalesce_ms;
    size_t max_entries;
    uint64_t max_bytes; /* 0: no limit */
    uint64_t max_retry_time_ms;
    double initial_retry_delay_ms, max_retry_delay_ms;
    int concurrency; /* 1 or -1 */
};

static void target_ref(struct target *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

static void target_unref(struct target *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(t->name);
    free(t->tag);
    free(t->host);
    free(t->hostport);
    free(t->head);
    free(t);
}

static void *fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void *fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

/* A number field: absent or null takes def; otherwise a number within
 * [min, max]. False with err set when it is not. */
static bool read_number(const json_t *obj, const char *prefix, const char *name, double def,
                        double min, double max, double *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_number(v)) {
        fail(err, errlen, "config.%s%s: expected a number", prefix, name);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= min && d <= max)) {
        fail(err, errlen, "config.%s%s: value should be between %g and %g", prefix, name, min, max);
        return false;
    }
    *out = d;
    return true;
}

/* The same for an integer field. */
static bool read_int(const json_t *obj, const char *prefix, const char *name, int64_t def,
                     int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v)) {
        fail(err, errlen, "config.%s%s: expected an integer", prefix, name);
        return false;
    }
    int64_t i = json_integer_value(v);
    if (i < min || i > max) {
        fail(err, errlen, "config.%s%s: value should be between %lld and %lld", prefix, name,
             (long long)min, (long long)max);
        return false;
    }
    *out = i;
    return true;
}

/* Lua's tostring of a number, as Kong's queue name shows it. */
static void lua_number(char *buf, size_t n, double d)
{
    if (d == floor(d) && fabs(d) < 1e15)
        snprintf(buf, n, "%lld", (long long)d);
    else
        snprintf(buf, n, "%.14g", d);
}

/* The parts of http_endpoint. */
struct url {
    bool https;
    char *userinfo, *host, *path_query; /* owned; userinfo may be NULL */
    uint16_t port;
};

static void url_dispose(struct url *u)
{
    free(u->userinfo);
    free(u->host);
    free(u->path_query);
}

/* Parses scheme://[userinfo@]host[:port][/path][?query][#fragment]. */
static bool parse_endpoint(const char *s, struct url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (!strncasecmp(s, "http://", 7)) {
        p = s + 7;
    } else if (!strncasecmp(s, "https://", 8)) {
        p = s + 8;
        u->https = true;
    } else {
        fail(err, errlen,
             "config.http_endpoint: missing or unsupported scheme: use http:// or "
             "https://");
        return false;
    }
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            fail(err, errlen,
                 "config.http_endpoint: must not contain spaces or control "
                 "characters");
            return false;
        }
    }
    const char *auth_end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *c = p; c < auth_end; c++)
        if (*c == '@')
            at = c;
    if (at) {
        u->userinfo = sl_xstrndup(p, (size_t)(at - p));
        p = at + 1;
    }
    const char *host_end;
    const char *port_start = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(auth_end - p));
        if (!rb)
            goto bad_host;
        u->host = sl_xstrndup(p + 1, (size_t)(rb - p - 1));
        host_end = rb + 1;
        if (host_end < auth_end) {
            if (*host_end != ':')
                goto bad_host;
            port_start = host_end + 1;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        host_end = colon ? colon : auth_end;
        u->host = sl_xstrndup(p, (size_t)(host_end - p));
        if (colon)
            port_start = colon + 1;
    }
    if (!u->host[0])
        goto bad_host;
    u->port = u->https ? 443 : 80;
    if (port_start) {
        uint64_t port;
        if (port_start == auth_end ||
            sl_parse_u64(port_start, (size_t)(auth_end - port_start), 65535, &port) != SL_OK ||
            port == 0) {
            fail(err, errlen, "config.http_endpoint: invalid port");
            url_dispose(u);
            return false;
        }
        u->port = (uint16_t)port;
    }
    const char *rest = auth_end;
    size_t rest_len = strcspn(rest, "#");
    if (rest_len == 0 || rest[0] != '/')
        u->path_query = sl_xasprintf("/%.*s", (int)rest_len, rest);
    else
        u->path_query = sl_xstrndup(rest, rest_len);
    return true;

bad_host:
    fail(err, errlen, "config.http_endpoint: missing or invalid host");
    url_dispose(u);
    return false;
}

static char *base64(const char *s)
{
    size_t n = strlen(s);
    char *out = sl_xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static bool read_queue_fields(const json_t *q, const json_t *config, struct target *t, char *err,
                              size_t errlen);

/* Reads config.queue (and the legacy queue_size and flush_timeout, which
 * Kong still maps onto it). */
static bool read_queue(const json_t *config, struct target *t, char *err, size_t errlen)
{
    const json_t *q = json_object_get(config, "queue");
    if (q && !json_is_null(q) && !json_is_object(q)) {
        fail(err, errlen, "config.queue: expected a record");
        return false;
    }
    json_t *none = json_object(); /* an absent queue: every default */
    bool ok = read_queue_fields(q && !json_is_null(q) ? q : none, config, t, err, errlen);
    json_decref(none);
    return ok;
}

static bool read_queue_fields(const json_t *q, const json_t *config, struct target *t, char *err,
                              size_t errlen)
{
    int64_t batch, entries, bytes, conc;
    double delay, retry_time, initial, max_delay;
    if (!read_int(q, "queue.", "max_batch_size", 1, 1, 1000000, &batch, err, errlen) ||
        !read_number(q, "queue.", "max_coalescing_delay", 1, 0, 3600, &delay, err, errlen) ||
        !read_int(q, "queue.", "max_entries", 10000, 1, 1000000, &entries, err, errlen) ||
        !read_int(q, "queue.", "max_bytes", 0, 0, INT64_MAX, &bytes, err, errlen) ||
        !read_number(q, "queue.", "max_retry_time", 60, 0, 1e9, &retry_time, err, errlen) ||
        !read_number(q, "queue.", "initial_retry_delay", 0.01, 0.001, 1000000, &initial, err,
                     errlen) ||
        !read_number(q, "queue.", "max_retry_delay", 60, 0.001, 1000000, &max_delay, err, errlen) ||
        !read_int(q, "queue.", "concurrency_limit", 1, -1, 1, &conc, err, errlen))
        return false;
    if (conc == 0) {
        fail(err, errlen, "config.queue.concurrency_limit: expected one of: -1, 1");
        return false;
    }
    int64_t queue_size;
    double flush_timeout;
    if (!read_int(config, "", "queue_size", 1, 1, 1000000, &queue_size, err, errlen) ||
        !read_number(config, "", "flush_timeout", 2, 0, 3600, &flush_timeout, err, errlen))
        return false;
    if (queue_size != 1) {
        batch = queue_size;
        SL_WARN("[http-log] the queue_size parameter is deprecated, please update your "
                "configuration to use queue.max_batch_size instead");
    }
    if (flush_timeout != 2) {
        delay = flush_timeout;
        SL_WARN("[http-log] the flush_timeout parameter is deprecated, please update your "
                "configuration to use queue.max_coalescing_delay instead");
    }
    const json_t *rc = json_object_get(config, "retry_count");
    if (rc && !json_is_null(rc) && !(json_is_integer(rc) && json_integer_value(rc) == 10))
        SL_WARN("[http-log] the retry_count parameter no longer works, please update your "
                "configuration to use initial_retry_delay and max_retry_time instead");
    t->max_batch = (size_t)batch;
    t->coalesce_ms = (uint64_t)(delay * 1000);
    t->max_entries = (size_t)entries;
    t->max_bytes = (uint64_t)bytes;
    t->max_retry_time_ms = (uint64_t)(retry_time * 1000);
    t->initial_retry_delay_ms = initial * 1000;
    t->max_retry_delay_ms = max_delay * 1000;
    t->concurrency = (int)conc;
    return true;
}

/* Appends config.headers to the head being built. */
static bool read_headers(const json_t *config, bool has_userinfo, sl_sb_t *b, char *err,
                         size_t errlen)
{
    const json_t *hs = json_object_get(config, "headers");
    if (!hs || json_is_null(hs))
        return true;
    if (!json_is_object(hs)) {
        fail(err, errlen, "config.headers: expected a map");
        return false;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)hs, k, v)
    {
        size_t kn = strlen(k);
        if (!sl_h1_is_token(k, kn)) {
            fail(err, errlen, "config.headers: bad header name '%.64s'", k);
            return false;
        }
        if (!strcasecmp(k, "host") || !strcasecmp(k, "content-length") ||
            !strcasecmp(k, "content-type")) {
            fail(err, errlen, "config.headers: cannot contain '%s' header", k);
            return false;
        }
        if (!strcasecmp(k, "authorization") && has_userinfo) {
            fail(err, errlen,
                 "config: specifying both an 'Authorization' header and user info "
                 "in 'http_endpoint' is not allowed");
            return false;
        }
        if (!json_is_string(v)) {
            fail(err, errlen, "config.headers.%.64s: expected a string", k);
            return false;
        }
        if (!sl_h1_is_field_value(json_string_value(v), json_string_length(v))) {
            fail(err, errlen, "config.headers.%.64s: must not contain control characters", k);
            return false;
        }
        sl_sb_adds(b, k);
        sl_sb_addlit(b, ": ");
        sl_sb_add(b, json_string_value(v), json_string_length(v));
        sl_sb_addlit(b, "\r\n");
    }
    return true;
}

static void dispose(void *conf)
{
    target_unref(conf);
}

/*
 * Reads config (validated by the schema, checked again: it may come from a
 * peer). Returns the conf, or NULL with err naming the field.
 */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    if (!json_is_object(config))
        return fail(err, errlen, "config: expected an object");
    const json_t *lua = json_object_get(config, "custom_fields_by_lua");
    if (lua && !json_is_null(lua) && !(json_is_object(lua) && json_object_size(lua) == 0))
        return fail(err, errlen,
                    "config.custom_fields_by_lua: Lua code is not supported by this data plane; "
                    "remove custom_fields_by_lua");
    const json_t *ep = json_object_get(config, "http_endpoint");
    if (!json_is_string(ep) || json_string_length(ep) == 0)
        return fail(err, errlen, "config.http_endpoint: required field missing");
    if (strlen(json_string_value(ep)) != json_string_length(ep))
        return fail(err, errlen, "config.http_endpoint: must not contain NUL");
    const char *method = "POST", *ctype = "application/json";
    const json_t *m = json_object_get(config, "method");
    const json_t *ct = json_object_get(config, "content_type");
    if (m && !json_is_null(m)) {
        method = json_string_value(m);
        if (!method || (strcmp(method, "POST") && strcmp(method, "PUT") && strcmp(method, "PATCH")))
            return fail(err, errlen, "config.method: expected one of: POST, PUT, PATCH");
    }
    if (ct && !json_is_null(ct)) {
        ctype = json_string_value(ct);
        if (!ctype ||
            (strcmp(ctype, "application/json") && strcmp(ctype, "application/json; charset=utf-8")))
            return fail(err, errlen,
                        "config.content_type: expected one of: application/json, "
                        "application/json; charset=utf-8");
    }
    double timeout, keepalive;
    if (!read_number(config, "", "timeout", 10000, 0, 2147483647, &timeout, err, errlen) ||
        !read_number(config, "", "keepalive", 60000, 0, 2147483647, &keepalive, err, errlen))
        return NULL;

    struct url u;
    if (!parse_endpoint(json_string_value(ep), &u, err, errlen))
        return NULL;
    struct target *t = sl_xcalloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    char bstore[512], hstore[1024];
    sl_sb_t b;
    sl_sb_init(&b, bstore, sizeof(bstore));
    if (!read_queue(config, t, err, errlen) ||
        !read_headers(config, u.userinfo != NULL, &b, err, errlen))
        goto fail_target;

    t->https = u.https;
    t->host = sl_xstrdup(u.host);
    t->port = u.port;
    bool v6 = strchr(u.host, ':') != NULL;
    bool default_port = u.port == (u.https ? 443 : 80);
    t->hostport = sl_xasprintf(v6 ? "[%s]:%u" : "%s:%u", u.host, u.port);
    struct sockaddr_in *sin = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->addr;
    if (inet_pton(AF_INET, u.host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(u.port);
        t->addrlen = sizeof(*sin);
        t->is_ip = true;
    } else if (inet_pton(AF_INET6, u.host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(u.port);
        t->addrlen = sizeof(*sin6);
        t->is_ip = true;
    } else if (v6) {
        fail(err, errlen, "config.http_endpoint: invalid IPv6 address '%s'", u.host);
        goto fail_target;
    }
    t->timeout_ms = timeout > 0 ? (uint32_t)timeout : DEFAULT_SOCKET_TIMEOUT_MS;
    t->keepalive_ms = keepalive > 0 ? (uint32_t)keepalive : DEFAULT_SOCKET_TIMEOUT_MS;

    /* The head, as lua-resty-http's request_uri sends it. */
    sl_sb_t h;
    sl_sb_init(&h, hstore, sizeof(hstore));
    sl_sb_adds(&h, method);
    sl_sb_addlit(&h, " ");
    sl_sb_adds(&h, u.path_query);
    sl_sb_addlit(&h, " HTTP/1.1\r\nHost: ");
    if (v6)
        sl_sb_addlit(&h, "[");
    sl_sb_adds(&h, u.host);
    if (v6)
        sl_sb_addlit(&h, "]");
    if (!default_port) {
        char port[8];
        snprintf(port, sizeof(port), ":%u", u.port);
        sl_sb_adds(&h, port);
    }
    sl_sb_addlit(&h, "\r\nUser-Agent: " SL_SERVER_TOKEN "\r\nContent-Type: ");
    sl_sb_adds(&h, ctype);
    sl_sb_addlit(&h, "\r\n");
    if (u.userinfo) {
        char *b64 = base64(u.userinfo);
        sl_sb_addlit(&h, "Authorization: Basic ");
        sl_sb_adds(&h, b64);
        sl_sb_addlit(&h, "\r\n");
        free(b64);
    }
    sl_sb_add(&h, b.p, b.len);
    t->head = sl_xstrndup(h.p, h.len);
    t->head_len = h.len;
    sl_sb_dispose(&h);

    /* Kong's queue name; the endpoint without its user info in log lines. */
    char tbuf[32], kbuf[32];
    lua_number(tbuf, sizeof(tbuf), timeout);
    lua_number(kbuf, sizeof(kbuf), keepalive);
    const json_t *rc = json_object_get(config, "retry_count");
    char rbuf[32] = "nil";
    if (json_is_integer(rc))
        snprintf(rbuf, sizeof(rbuf), "%lld", (long long)json_integer_value(rc));
    t->name =
        sl_xasprintf("%s:%s:%s:%s:%s:%s", json_string_value(ep), method, ctype, tbuf, kbuf, rbuf);
    t->tag = sl_xasprintf("[http-log plugin %s] queue %s://%s%s: ", instance_id ? instance_id : "",
                          u.https ? "https" : "http", t->hostport, u.path_query);
    sl_sb_dispose(&b);
    url_dispose(&u);
    return t;

fail_target:
    sl_sb_dispose(&b);
    url_dispose(&u);
    target_unref(t);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Per-worker state                                                          */

struct entry {
    struct entry *next;
    size_t len;
    char data[];
};

struct send;

/* A connection to an endpoint: in use by one send, or idle in the pool. */
struct conn {
    struct conn *next; /* in the worker's idle list */
    struct hl_worker *w;
    struct bufferevent *bev;  /* owned */
    struct event *idle_timer; /* owned */
    char *key;                /* owned: "scheme://host:port" */
    struct send *s;           /* borrowed: the send using it; NULL while idle */
    bool reused;              /* it served a request before this one */
    bool got_bytes;           /* some of the response arrived */
    /* the response */
    bool head_done;
    int status;
    int body_kind;
    bool keep_alive;
    uint64_t left;
    uint64_t body_seen;
    sl_h1_chunked_t chunk;
    char body[ERROR_BODY_BYTES];
    size_t body_len;
};

struct queue {
    struct queue *next;
    struct hl_worker *w;
    struct target *t; /* a reference: the newest conf seen for this name */
    struct entry *head, **tail;
    size_t n;
    uint64_t bytes;
    struct event *timer; /* owned: the coalescing delay */
    bool coalescing;
    struct send *sending; /* the batch in flight (or waiting to retry) */
    bool warned;          /* "queue at 80% capacity" was said */
    bool dropping;        /* entries are being dropped for want of room */
};

/* One batch on its way, with its retries. */
struct send {
    struct hl_worker *w;
    struct queue *q;  /* borrowed: the queue it came from; NULL when unqueued */
    struct target *t; /* a reference */
    char *payload;    /* owned */
    size_t len, nentries;
    uint64_t first_ms;
    unsigned attempt;
    struct conn *c;      /* the connection in use */
    struct event *timer; /* owned: the retry delay */
    bool no_conn;        /* the timer reports that no connection could be opened */
    struct send *next_unqueued;
};

struct hl_worker {
    struct event_base *base; /* borrowed: the worker's loop */
    struct evdns_base *dns;  /* owned; created for the first host name */
    struct queue *queues;
    struct conn *idle;
    size_t nidle;
    struct send *unqueued; /* concurrency_limit -1: sends in flight */
    size_t nunqueued;
    bool exiting;
};

static _Thread_local struct hl_worker *self;

static SSL_CTX *ssl_ctx;
static pthread_once_t ssl_once = PTHREAD_ONCE_INIT;

static void init_ssl(void)
{
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ssl_ctx) {
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
    }
}

static void qlog(const struct target *t, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A log line prefixed as Kong's queue prefixes its own. */
static void qlog(const struct target *t, int level, const char *fmt, ...)
{
    if (!sl_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_log(level, "%s%s", t->tag, msg);
}

static uint64_t now_ms(void)
{
    return sl_now_ms();
}

static struct timeval tv_ms(uint64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
}

static void send_attempt(struct send *s);
static void send_result(struct send *s, bool ok, const char *why);
static void queue_kick(struct queue *q);

/* ------------------------------------------------------------------------ */
/* Connections                                                               */

static void conn_free(struct conn *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->idle_timer)
        event_free(c->idle_timer);
    free(c->key);
    free(c);
}

static void unlink_idle(struct conn *c)
{
    struct hl_worker *w = c->w;
    for (struct conn **pp = &w->idle; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            w->nidle--;
            return;
        }
    }
}

/* An idle connection heard from (the endpoint closed it, or sent bytes
 * nobody asked for) or timed out: it goes. */
static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    struct conn *c = arg;
    unlink_idle(c);
    conn_free(c);
}

static void on_idle_read(struct bufferevent *bev, void *arg)
{
    on_idle_event(bev, 0, arg);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    on_idle_event(NULL, 0, arg);
}

/* Puts a connection whose response was read whole in the pool. */
static void conn_keep(struct conn *c, uint32_t keepalive_ms)
{
    struct hl_worker *w = c->w;
    c->s = NULL;
    if (w->exiting || w->nidle >= MAX_IDLE_CONNS) {
        conn_free(c);
        return;
    }
    c->reused = true;
    bufferevent_setcb(c->bev, on_idle_read, NULL, on_idle_event, c);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_enable(c->bev, EV_READ);
    if (!c->idle_timer)
        c->idle_timer = evtimer_new(w->base, on_idle_timeout, c);
    struct timeval tv = tv_ms(keepalive_ms);
    evtimer_add(c->idle_timer, &tv);
    c->next = w->idle;
    w->idle = c;
    w->nidle++;
}

/* The response is complete: the send succeeded or failed by its status. */
static void conn_done(struct conn *c)
{
    struct send *s = c->s;
    int status = c->status;
    char why[ERROR_BODY_BYTES + 160];
    snprintf(why, sizeof(why), "request to %s returned status code %d and body %.*s",
             s->t->hostport, status, (int)c->body_len, c->body);
    s->c = NULL;
    if (c->keep_alive)
        conn_keep(c, s->t->keepalive_ms);
    else
        conn_free(c);
    send_result(s, status < 400, why);
}

/* The connection failed (c is freed): the send failed, or, when a reused
 * connection turned out to be closed before any answer, is tried again at
 * once on a new one. */
static void conn_failed(struct conn *c, const char *why)
{
    struct send *s = c->s;
    bool stale = c->reused && !c->got_bytes;
    s->c = NULL;
    conn_free(c);
    if (stale) {
        send_attempt(s);
        return;
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "failed request to %s: %s", s->t->hostport, why);
    send_result(s, false, msg);
}

static void on_chunk_data(void *ud, const char *p, size_t n)
{
    struct conn *c = ud;
    size_t room = sizeof(c->body) - c->body_len;
    memcpy(c->body + c->body_len, p, SL_MIN(room, n));
    c->body_len += SL_MIN(room, n);
}

/* Reads what arrived of the response. Returns true when c is finished
 * (done or failed: gone). */
static bool read_response(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in))
        c->got_bytes = true;
    while (!c->head_done) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return false;
        sl_h1_limits_t lim;
        sl_h1_limits_default(&lim);
        size_t want = SL_MIN(avail, lim.max_header_block + 1);
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        sl_h1_header_t hs[101];
        sl_h1_response_t res;
        sl_h1_error_t err = {0, NULL};
        size_t consumed = 0;
        lim.max_headers = SL_ARRAY_LEN(hs) - 1;
        res.headers = hs;
        int rc = sl_h1_parse_response(buf, want, &lim, false, &res, &consumed, &err);
        if (rc == SL_AGAIN)
            return false;
        if (rc != SL_OK) {
            char why[160];
            snprintf(why, sizeof(why), "invalid response: %s", err.message ? err.message : "?");
            conn_failed(c, why);
            return true;
        }
        evbuffer_drain(in, consumed);
        if (res.status >= 100 && res.status < 200)
            continue; /* interim */
        c->head_done = true;
        c->status = res.status;
        c->body_kind = res.body_kind;
        c->keep_alive = res.keep_alive && res.body_kind != SL_H1_BODY_EOF;
        c->left = res.content_length;
        if (res.body_kind == SL_H1_BODY_CHUNKED)
            sl_h1_chunked_init(&c->chunk, MAX_RESPONSE_BODY);
        if (res.body_kind == SL_H1_BODY_LENGTH && res.content_length > MAX_RESPONSE_BODY) {
            conn_failed(c, "response body too large");
            return true;
        }
    }
    switch (c->body_kind) {
    case SL_H1_BODY_NONE:
        break;
    case SL_H1_BODY_LENGTH: {
        size_t n = (size_t)SL_MIN((uint64_t)evbuffer_get_length(in), c->left);
        size_t keep = SL_MIN(n, sizeof(c->body) - c->body_len);
        evbuffer_remove(in, c->body + c->body_len, keep);
        c->body_len += keep;
        evbuffer_drain(in, n - keep);
        c->left -= n;
        if (c->left)
            return false;
        break;
    }
    case SL_H1_BODY_CHUNKED: {
        size_t avail = evbuffer_get_length(in), consumed = 0;
        if (!avail)
            return false;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
        sl_h1_error_t err = {0, NULL};
        int rc = sl_h1_chunked_feed(&c->chunk, buf, avail, &consumed, on_chunk_data, c, &err);
        evbuffer_drain(in, consumed);
        if (rc == SL_AGAIN)
            return false;
        if (rc != SL_OK) {
            conn_failed(c, "invalid chunked response body");
            return true;
        }
        break;
    }
    case SL_H1_BODY_EOF: {
        size_t n = evbuffer_get_length(in);
        size_t keep = SL_MIN(n, sizeof(c->body) - c->body_len);
        evbuffer_remove(in, c->body + c->body_len, keep);
        c->body_len += keep;
        evbuffer_drain(in, n - keep);
        c->body_seen += n;
        if (c->body_seen > MAX_RESPONSE_BODY) {
            conn_failed(c, "response body too large");
            return true;
        }
        return false; /* until the endpoint closes */
    }
    }
    if (evbuffer_get_length(in))
        c->keep_alive = false; /* bytes after the response: not reusable */
    conn_done(c);
    return true;
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg);

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    read_response(arg);
}

/* The request is written: wait for the answer, within the timeout. */
static void on_conn_written(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    bufferevent_setcb(bev, on_conn_read, NULL, on_conn_event, c);
    bufferevent_enable(bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(bev)))
        read_response(c); /* an answer that came before the request was written */
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if ((what & BEV_EVENT_EOF) && c->head_done && c->body_kind == SL_H1_BODY_EOF) {
        /* The body ran until the close: the response is complete. */
        if (read_response(c))
            return;
        c->keep_alive = false;
        conn_done(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && read_response(c))
        return;
    const char *why = "closed";
    char buf[160];
    if (what & BEV_EVENT_TIMEOUT) {
        why = "timeout";
    } else if (what & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        int dns = bufferevent_socket_get_dns_error(bev);
        unsigned long ssl_err = bufferevent_get_openssl_error(bev);
        if (dns) {
            snprintf(buf, sizeof(buf), "%s", evutil_gai_strerror(dns));
        } else if (ssl_err) {
            snprintf(buf, sizeof(buf), "TLS handshake failed: ");
            ERR_error_string_n(ssl_err, buf + strlen(buf), sizeof(buf) - strlen(buf));
        } else {
            snprintf(buf, sizeof(buf), "%s", e ? evutil_socket_error_to_string(e) : "error");
        }
        why = buf;
    }
    conn_failed(c, why);
}

/* Takes an idle connection to the send's endpoint from the pool, or opens
 * a new one. NULL (after failing the send) when none can be had. */
static struct conn *conn_for(struct send *s, const char *key)
{
    struct hl_worker *w = s->w;
    for (struct conn **pp = &w->idle; *pp; pp = &(*pp)->next) {
        struct conn *c = *pp;
        if (strcmp(c->key, key) != 0)
            continue;
        *pp = c->next;
        w->nidle--;
        evtimer_del(c->idle_timer);
        return c;
    }
    const struct target *t = s->t;
    struct conn *c = sl_xcalloc(1, sizeof(*c));
    c->w = w;
    c->key = sl_xstrdup(key);
    if (t->https) {
        pthread_once(&ssl_once, init_ssl);
        SSL *ssl = ssl_ctx ? SSL_new(ssl_ctx) : NULL;
        if (ssl && !t->is_ip)
            SSL_set_tlsext_host_name(ssl, t->host);
        c->bev = ssl ? bufferevent_openssl_socket_new(w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                      BEV_OPTS)
                     : NULL;
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        else if (ssl)
            SSL_free(ssl);
    } else {
        c->bev = bufferevent_socket_new(w->base, -1, BEV_OPTS);
    }
    if (!c->bev) {
        free(c->key);
        free(c);
        return NULL;
    }
    struct timeval tv = tv_ms(t->timeout_ms);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setcb(c->bev, NULL, NULL, on_conn_event, c);
    int rc;
    if (t->is_ip) {
        rc = bufferevent_socket_connect(c->bev, (const struct sockaddr *)&t->addr, (int)t->addrlen);
    } else {
        if (!w->dns)
            w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                 EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        rc = w->dns
                 ? bufferevent_socket_connect_hostname(c->bev, w->dns, AF_UNSPEC, t->host, t->port)
                 : -1;
    }
    if (rc != 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------------ */
/* Sends                                                                     */

static void send_free(struct send *s)
{
    if (s->c) {
        s->c->s = NULL;
        conn_free(s->c);
    }
    if (s->timer)
        event_free(s->timer);
    target_unref(s->t);
    free(s->payload);
    free(s);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct send *s, uint64_t ms)
{
    if (!s->timer)
        s->timer = evtimer_new(s->w->base, on_retry_timer, s);
    struct timeval tv = tv_ms(ms);
    evtimer_add(s->timer, &tv);
}

/* Writes the batch on a connection (a new attempt). */
static void send_attempt(struct send *s)
{
    char key[300];
    snprintf(key, sizeof(key), "%s://%s", s->t->https ? "https" : "http", s->t->hostport);
    struct conn *c = conn_for(s, key);
    if (!c) {
        /* Reported from the loop, like every other end of an attempt. */
        s->no_conn = true;
        arm_timer(s, 0);
        return;
    }
    c->s = s;
    s->c = c;
    c->head_done = c->got_bytes = false;
    c->status = 0;
    c->body_len = 0;
    c->body_seen = 0;
    c->keep_alive = false;
    struct timeval tv = tv_ms(s->t->timeout_ms);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    /* Reading waits until the request is written: the read timeout then
     * bounds the wait for the answer. */
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, on_conn_written, on_conn_event, c);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char cl[64];
    int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n", s->len);
    evbuffer_add(out, s->t->head, s->t->head_len);
    evbuffer_add(out, cl, (size_t)n);
    evbuffer_add(out, s->payload, s->len);
    bufferevent_enable(c->bev, EV_WRITE);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct send *s = arg;
    if (s->no_conn) {
        s->no_conn = false;
        send_result(s, false, "cannot open a connection");
        return;
    }
    send_attempt(s);
}

static void unlink_unqueued(struct send *s)
{
    struct hl_worker *w = s->w;
    for (struct send **pp = &w->unqueued; *pp; pp = &(*pp)->next_unqueued) {
        if (*pp == s) {
            *pp = s->next_unqueued;
            w->nunqueued--;
            return;
        }
    }
}

/* Frees a queue that has nothing left to do. */
static void queue_maybe_free(struct queue *q)
{
    if (q->n || q->sending || q->coalescing)
        return;
    struct hl_worker *w = q->w;
    for (struct queue **pp = &w->queues; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    event_free(q->timer);
    target_unref(q->t);
    free(q);
}

/* The batch is done with: delivered, or dropped after its last retry. */
static void send_finish(struct send *s)
{
    struct queue *q = s->q;
    if (q)
        q->sending = NULL;
    else
        unlink_unqueued(s);
    send_free(s);
    if (q) {
        queue_kick(q);
        queue_maybe_free(q);
    }
}

/*
 * An attempt ended. As Kong's queue: a failure is logged and retried after
 * min(max_retry_delay, 2^n * initial_retry_delay) until more than
 * max_retry_time has passed since the first attempt.
 */
static void send_result(struct send *s, bool ok, const char *why)
{
    if (ok) {
        send_finish(s);
        return;
    }
    qlog(s->t, SL_LOG_WARN, "handler could not process entries: %s", why);
    uint64_t now = now_ms();
    if (now - s->first_ms > s->t->max_retry_time_ms) {
        qlog(s->t, SL_LOG_ERROR,
             "could not send entries due to max_retry_time exceeded. %zu queue entries were lost",
             s->nentries);
        send_finish(s);
        return;
    }
    double delay = ldexp(s->t->initial_retry_delay_ms, (int)SL_MIN(s->attempt, 60u));
    if (delay > s->t->max_retry_delay_ms)
        delay = s->t->max_retry_delay_ms;
    s->attempt++;
    arm_timer(s, (uint64_t)delay);
}

static struct send *send_new(struct hl_worker *w, struct target *t, char *payload, size_t len,
                             size_t nentries)
{
    struct send *s = sl_xcalloc(1, sizeof(*s));
    s->w = w;
    s->t = t;
    target_ref(t);
    s->payload = payload;
    s->len = len;
    s->nentries = nentries;
    s->first_ms = now_ms();
    return s;
}

/* ------------------------------------------------------------------------ */
/* Queues                                                                    */

/* Takes up to k entries off the queue and sends them as one batch: the
 * entry itself when max_batch_size is 1, else a JSON array. */
static void queue_dispatch(struct queue *q, size_t k)
{
    const struct target *t = q->t;
    bool array = t->max_batch > 1;
    size_t total = array ? 2 : 0, n = 0;
    for (struct entry *e = q->head; e && n < k; e = e->next, n++)
        total += e->len + 1;
    char *payload = sl_xmalloc(total + 1);
    size_t off = 0;
    if (array)
        payload[off++] = '[';
    for (size_t i = 0; i < n; i++) {
        struct entry *e = q->head;
        q->head = e->next;
        q->n--;
        q->bytes -= e->len;
        if (i)
            payload[off++] = ',';
        memcpy(payload + off, e->data, e->len);
        off += e->len;
        free(e);
    }
    if (!q->head)
        q->tail = &q->head;
    if (array)
        payload[off++] = ']';
    if (q->dropping) {
        qlog(t, SL_LOG_INFO, "queue resumed processing");
        q->dropping = false;
    }
    q->sending = send_new(q->w, q->t, payload, off, n);
    q->sending->q = q;
    send_attempt(q->sending);
}

static void on_coalesce_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct queue *q = arg;
    q->coalescing = false;
    if (q->n && !q->sending)
        queue_dispatch(q, SL_MIN(q->n, q->t->max_batch));
    queue_maybe_free(q);
}

/*
 * Starts a batch when one is due: Kong's process_once takes the first
 * entry, then waits up to max_coalescing_delay for more, until
 * max_batch_size are there (no waiting when the delay is under 50 ms or
 * the worker is stopping).
 */
static void queue_kick(struct queue *q)
{
    if (q->sending || q->n == 0)
        return;
    const struct target *t = q->t;
    if (q->w->exiting || t->max_batch == 1 || t->coalesce_ms < COALESCE_MIN_MS) {
        if (q->coalescing) {
            evtimer_del(q->timer);
            q->coalescing = false;
        }
        size_t k = q->w->exiting ? t->max_batch : 1;
        queue_dispatch(q, SL_MIN(q->n, k));
        return;
    }
    if (q->n >= t->max_batch) {
        if (q->coalescing) {
            evtimer_del(q->timer);
            q->coalescing = false;
        }
        queue_dispatch(q, t->max_batch);
        return;
    }
    if (!q->coalescing) {
        struct timeval tv = tv_ms(t->coalesce_ms);
        evtimer_add(q->timer, &tv);
        q->coalescing = true;
    }
}

/* The worker's queue of that name, created when needed; it takes t as its
 * configuration (Kong: the newest one seen wins). */
static struct queue *queue_for(struct hl_worker *w, struct target *t)
{
    struct queue *q = w->queues;
    while (q && q->t != t && strcmp(q->t->name, t->name) != 0)
        q = q->next;
    if (!q) {
        q = sl_xcalloc(1, sizeof(*q));
        q->w = w;
        q->tail = &q->head;
        q->timer = evtimer_new(w->base, on_coalesce_timer, q);
        q->next = w->queues;
        w->queues = q;
    }
    if (q->t != t) {
        target_ref(t);
        target_unref(q->t);
        q->t = t;
    }
    return q;
}

static void drop_oldest(struct queue *q)
{
    struct entry *e = q->head;
    q->head = e->next;
    if (!q->head)
        q->tail = &q->head;
    q->n--;
    q->bytes -= e->len;
    free(e);
}

/* Queues an entry (taking ownership), making room as Kong's queue does:
 * the oldest entries go. */
static void queue_push(struct queue *q, struct entry *e)
{
    const struct target *t = q->t;
    if ((double)q->n >= (double)t->max_entries * CAPACITY_WARNING) {
        if (!q->warned) {
            qlog(t, SL_LOG_WARN, "queue at %g%% capacity", CAPACITY_WARNING * 100);
            q->warned = true;
        }
    } else {
        q->warned = false;
    }
    if (q->n >= t->max_entries) {
        if (!q->dropping)
            qlog(t, SL_LOG_ERROR,
                 "queue full, dropping old entries until processing is successful again");
        drop_oldest(q);
        q->dropping = true;
    }
    if (t->max_bytes) {
        if (e->len > t->max_bytes) {
            qlog(t, SL_LOG_ERROR,
                 "string to be queued is longer (%zu bytes) than the queue's max_bytes (%llu "
                 "bytes)",
                 e->len, (unsigned long long)t->max_bytes);
            free(e);
            return;
        }
        size_t dropped = 0;
        while (q->n && q->bytes + e->len > t->max_bytes) {
            drop_oldest(q);
            dropped++;
        }
        if (dropped) {
            qlog(t, SL_LOG_ERROR, "byte capacity exceeded, %zu queue entries were dropped",
                 dropped);
            q->dropping = true;
        }
    }
    e->next = NULL;
    *q->tail = e;
    q->tail = &e->next;
    q->n++;
    q->bytes += e->len;
    queue_kick(q);
}

/* ------------------------------------------------------------------------ */
/* Log                                                                       */

static struct hl_worker *worker_of(sl_pdk_t *p)
{
    if (!self) {
        self = sl_xcalloc(1, sizeof(*self));
        self->base = sl_pdk_event_base(p);
    }
    return self;
}

static int on_log(sl_pdk_t *p, void *conf)
{
    struct target *t = conf;
    struct hl_worker *w = worker_of(p);
    if (w->exiting)
        return SL_PLUGIN_CONTINUE;
    json_t *msg = sl_pdk_log_serialize(p);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!text) {
        sl_pdk_log(p, SL_LOG_ERROR,
                   "Failed to enqueue log entry to log server: cannot "
                   "serialize the entry");
        return SL_PLUGIN_CONTINUE;
    }
    size_t n = strlen(text);
    if (t->concurrency == -1) {
        /* Sent at once, each on its own (Kong's unlimited concurrency). */
        if (w->nunqueued >= MAX_UNQUEUED_SENDS) {
            sl_pdk_log(p, SL_LOG_ERROR,
                       "Failed to enqueue log entry to log server: %d sends already in flight",
                       MAX_UNQUEUED_SENDS);
            free(text);
            return SL_PLUGIN_CONTINUE;
        }
        char *payload = text;
        if (t->max_batch > 1) {
            payload = sl_xasprintf("[%s]", text);
            free(text);
            n += 2;
        }
        struct send *s = send_new(w, t, payload, n, 1);
        s->next_unqueued = w->unqueued;
        w->unqueued = s;
        w->nunqueued++;
        send_attempt(s);
        return SL_PLUGIN_CONTINUE;
    }
    struct entry *e = malloc(sizeof(*e) + n);
    if (!e) {
        free(text);
        return SL_PLUGIN_CONTINUE;
    }
    memcpy(e->data, text, n);
    e->len = n;
    free(text);
    queue_push(queue_for(w, t), e);
    return SL_PLUGIN_CONTINUE;
}

/* ------------------------------------------------------------------------ */
/* Worker exit                                                               */

static bool busy(const struct hl_worker *w)
{
    if (w->unqueued)
        return true;
    for (const struct queue *q = w->queues; q; q = q->next)
        if (q->n || q->sending)
            return true;
    return false;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/*
 * The worker's loop has ended: sends what is queued at once and runs the
 * loop until everything is delivered or EXIT_FLUSH_MS has passed, then
 * frees the worker's state. What could not be delivered is counted lost.
 */
static void on_worker_exit(void)
{
    struct hl_worker *w = self;
    if (!w)
        return;
    w->exiting = true;
    for (struct queue *q = w->queues, *next; q; q = next) {
        next = q->next;
        if (q->coalescing) {
            evtimer_del(q->timer);
            q->coalescing = false;
        }
        queue_kick(q);
    }
    uint64_t deadline = now_ms() + EXIT_FLUSH_MS;
    struct event *tick = evtimer_new(w->base, on_tick, NULL);
    while (busy(w) && now_ms() < deadline) {
        struct timeval tv = tv_ms(100);
        evtimer_add(tick, &tv);
        event_base_loop(w->base, EVLOOP_ONCE);
    }
    event_free(tick);

    size_t lost = 0;
    while (w->unqueued) {
        struct send *s = w->unqueued;
        w->unqueued = s->next_unqueued;
        lost += s->nentries;
        send_free(s);
    }
    while (w->queues) {
        struct queue *q = w->queues;
        w->queues = q->next;
        lost += q->n;
        while (q->head)
            drop_oldest(q);
        if (q->sending) {
            lost += q->sending->nentries;
            send_free(q->sending);
        }
        event_free(q->timer);
        target_unref(q->t);
        free(q);
    }
    while (w->idle) {
        struct conn *c = w->idle;
        w->idle = c->next;
        conn_free(c);
    }
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (lost)
        sl_log(SL_LOG_ERROR,
               "[http-log] %zu log entries could not be sent before the worker "
               "stopped and were lost",
               lost);
    free(w);
    self = NULL;
}

const sl_native_plugin_t sl_plugin_http_log = {
    .name = "http-log",
    .configure = configure,
    .dispose = dispose,
    .log = on_log,
    .worker_exit = on_worker_exit,
};
