/*
 * pdk.c: the C PDK (see pdk.h) over the proxy's request object.
 *
 * The handle a plugin gets is the request itself (sl_req_t, proxy-t.h), so
 * every call is a few loads on the worker thread that owns the request.
 * Changes are recorded where the proxy reads them when it builds what it
 * sends: the request's header array is edited in place (copied into the
 * request's arena with room to grow the first time), the upstream method,
 * path, query, Host and target are overrides, and response header changes
 * are an ordered list of set/add/clear operations applied over the
 * upstream's fields (or over nothing, for a plugin's own response).
 *
 * Everything a call hands out lives in the request's arena, except the
 * jansson values (headers, query arguments, captures, ctx values), which
 * are new references for the caller. kong.ctx.shared and the nginx ctx keep
 * non-string values as JSON text in the arena, so nothing needs freeing
 * when the request ends. The one piece of process state is the node id
 * (kong.node.get_id), made once under a mutex and read by every worker.
 */
#include "pdk.h"
#include "h1_parser.h"
#include "log.h"
#include "proxy-t.h"
#include "router.h"
#include "strbuf.h"
#include "util.h"
#include "uuid.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sl_req_t *R(sl_pdk_t *p)
{
    return (sl_req_t *)p;
}

static sl_str_t copy_str(sl_req_t *r, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return (sl_str_t){sl_arena_strndup(&r->arena, s ? s : "", n), n};
}

/* A field name is a token; a value has no control character but tab. What
 * fails goes nowhere (a CR or LF would split the message), with a log line. */
static bool field_ok(sl_pdk_t *p, const char *name, const char *value)
{
    bool ok = name && sl_h1_is_token(name, strlen(name)) &&
              (!value || sl_h1_is_field_value(value, strlen(value)));
    if (!ok)
        sl_pdk_log(p, SL_LOG_ERROR, "header field '%.64s' refused: invalid name or value",
                   name ? name : "");
    return ok;
}

/* A method, path or query string goes into the request line: no byte at or
 * below a space, none above 0x7e. */
static bool line_ok(sl_pdk_t *p, const char *what, const char *s)
{
    for (const char *c = s; c && *c; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            sl_pdk_log(p, SL_LOG_ERROR,
                       "upstream %s refused: it contains a space or a control "
                       "character",
                       what);
            return false;
        }
    }
    return s != NULL;
}

static bool name_is(sl_str_t name, const char *lit)
{
    return sl_strcaseeq(name.p, name.len, lit, strlen(lit));
}

/* The data plane's configuration (trusted_ips, prefix); NULL for a request
 * object built without a worker (unit tests). */
static const sl_dp_conf_t *conf_of(const sl_req_t *r)
{
    return r->c && r->c->w ? r->c->w->conf : NULL;
}

/* printf into the request's arena. */
static sl_str_t arena_printf(sl_req_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static sl_str_t arena_printf(sl_req_t *r, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return SL_STR("");
    char *out = sl_arena_alloc(&r->arena, (size_t)n + 1);
    if ((size_t)n < sizeof(small)) {
        memcpy(out, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(out, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return (sl_str_t){out, (size_t)n};
}

static sl_str_t lower_copy(sl_req_t *r, sl_str_t s)
{
    char *out = sl_arena_alloc(&r->arena, s.len + 1);
    for (size_t i = 0; i < s.len; i++)
        out[i] = sl_lower(s.p[i]);
    out[s.len] = '\0';
    return (sl_str_t){out, s.len};
}

/* s itself when it is UTF-8, else an arena copy with U+FFFD for each byte
 * that does not start a valid sequence (JSON strings, and the protobuf
 * strings a bridge makes of them, must be UTF-8). */
static sl_str_t utf8_clean(sl_req_t *r, sl_str_t s)
{
    size_t i = 0;
    while (i < s.len) {
        size_t l = sl_utf8_len((const unsigned char *)s.p + i, s.len - i);
        if (!l)
            break;
        i += l;
    }
    if (i == s.len)
        return s;
    char *out = sl_arena_alloc(&r->arena, 3 * s.len + 1);
    size_t k = i;
    memcpy(out, s.p, i);
    while (i < s.len) {
        size_t l = sl_utf8_len((const unsigned char *)s.p + i, s.len - i);
        if (l) {
            memcpy(out + k, s.p + i, l);
            k += l;
            i += l;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    out[k] = '\0';
    return (sl_str_t){out, k};
}

static json_t *json_str(sl_req_t *r, sl_str_t s)
{
    s = utf8_clean(r, s);
    json_t *j = json_stringn(s.p ? s.p : "", s.len);
    return j ? j : json_string("");
}

/* Adds v (taking the reference) under key in a multi-map: the value alone
 * the first time, then an array of every value in order. */
static void multimap_add(sl_req_t *r, json_t *m, sl_str_t key, json_t *v)
{
    key = utf8_clean(r, key);
    json_t *old = json_object_getn(m, key.p, key.len);
    if (!old) {
        json_object_setn_new(m, key.p, key.len, v);
    } else if (json_is_array(old)) {
        json_array_append_new(old, v);
    } else {
        json_t *a = json_array();
        json_array_append(a, old);
        json_array_append_new(a, v);
        json_object_setn_new(m, key.p, key.len, a);
    }
}

/* A header field into a multi-map keyed by the lower-cased name. */
static void multimap_field(sl_req_t *r, json_t *m, sl_str_t name, sl_str_t value)
{
    multimap_add(r, m, lower_copy(r, name), json_str(r, value));
}

/* Kong's bounds on a max_headers / max_args argument. */
static bool max_ok(sl_pdk_t *p, const char *what, int max)
{
    if (max >= 1 && max <= SL_PDK_MAX_LIMIT)
        return true;
    sl_pdk_log(p, SL_LOG_ERROR, "%s must be %s %d", what,
               max < 1 ? ">=" : "<=", max < 1 ? 1 : SL_PDK_MAX_LIMIT);
    return false;
}

/* A multi-map of fields, the first max of them. */
static json_t *fields_multimap(sl_req_t *r, const sl_h1_header_t *hs, size_t n, int max,
                               bool *truncated)
{
    json_t *m = json_object();
    for (size_t i = 0; i < n && i < (size_t)max; i++)
        multimap_field(r, m, hs[i].name, hs[i].value);
    if (truncated)
        *truncated = n > (size_t)max;
    return m;
}

/* ------------------------------------------------------------ kong.request */

sl_str_t sl_pdk_request_get_method(sl_pdk_t *p)
{
    /* nginx's method changes with ngx.req.set_method, which Kong's
     * kong.service.request.set_method calls. */
    const sl_req_t *r = R(p);
    return r->up_method.p ? r->up_method : r->h.method;
}

sl_str_t sl_pdk_request_get_scheme(sl_pdk_t *p)
{
    return R(p)->c->tls ? SL_STR("https") : SL_STR("http");
}

sl_str_t sl_pdk_request_get_host(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    sl_str_t h = r->h.absolute_form ? r->h.authority : r->h.host;
    size_t n = h.len;
    if (n && h.p[0] == '[') {
        const char *rb = memchr(h.p, ']', n);
        if (rb)
            n = (size_t)(rb - h.p) + 1;
    } else if (n) {
        const char *colon = memchr(h.p, ':', n);
        if (colon)
            n = (size_t)(colon - h.p);
    }
    char *out = sl_arena_alloc(&r->arena, n + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = sl_lower(h.p[i]);
    out[n] = '\0';
    return (sl_str_t){out, n};
}

int sl_pdk_request_get_port(sl_pdk_t *p)
{
    return R(p)->c->local_port;
}

sl_str_t sl_pdk_request_get_path(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    return r->npath ? (sl_str_t){r->npath, r->npath_len} : r->h.path;
}

sl_str_t sl_pdk_request_get_raw_path(sl_pdk_t *p)
{
    return R(p)->h.path;
}

sl_str_t sl_pdk_request_get_raw_query(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    if (r->up_query.p)
        return r->up_query;
    return r->h.query.p ? r->h.query : SL_STR("");
}

int sl_pdk_request_get_http_version(sl_pdk_t *p)
{
    return R(p)->c->http2 ? 20 : 10 + R(p)->h.minor_version;
}

/* The bufferevent on the client's socket: an HTTP/2 stream's is its
 * connection's (NULL once closed). */
static struct bufferevent *client_bev(const sl_conn_t *c)
{
    if (c->http2)
        return c->parent ? c->parent->bev : NULL;
    return c->bev;
}

bool sl_pdk_request_get_header(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    sl_req_t *r = R(p);
    size_t len = strlen(name);
    for (size_t i = 0; i < r->h.num_headers; i++) {
        if (sl_strcaseeq(r->h.headers[i].name.p, r->h.headers[i].name.len, name, len)) {
            *value = r->h.headers[i].value;
            return true;
        }
    }
    return false;
}

size_t sl_pdk_request_header_count(sl_pdk_t *p)
{
    return R(p)->h.num_headers;
}

bool sl_pdk_request_header_at(sl_pdk_t *p, size_t i, sl_str_t *name, sl_str_t *value)
{
    sl_req_t *r = R(p);
    if (i >= r->h.num_headers)
        return false;
    *name = r->h.headers[i].name;
    *value = r->h.headers[i].value;
    return true;
}

sl_str_t sl_pdk_unescape(sl_pdk_t *p, const char *s, size_t n)
{
    char *out = sl_arena_alloc(&R(p)->arena, n + 1);
    size_t k = sl_unescape_arg(s, n, out);
    out[k] = '\0';
    return (sl_str_t){out, k};
}

/* Calls fn for each argument of a raw query string; stops when fn returns
 * true. Keys and values are raw (still encoded). */
static bool each_arg(sl_str_t q, bool (*fn)(sl_str_t key, sl_str_t val, bool has_eq, void *ud),
                     void *ud)
{
    const char *p = q.p, *end = q.p + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        sl_str_t key = {p, (size_t)((eq ? eq : stop) - p)};
        sl_str_t val = eq ? (sl_str_t){eq + 1, (size_t)(stop - eq - 1)} : SL_STR("");
        if (key.len && fn(key, val, eq != NULL, ud))
            return true;
        p = stop + 1;
    }
    return false;
}

struct arg_find {
    sl_req_t *r;
    const char *name;
    sl_str_t *out;
};

static bool find_arg(sl_str_t key, sl_str_t val, bool has_eq, void *ud)
{
    struct arg_find *f = ud;
    sl_str_t k = sl_pdk_unescape((sl_pdk_t *)f->r, key.p, key.len);
    if (strcmp(k.p, f->name) != 0)
        return false;
    *f->out = sl_pdk_unescape((sl_pdk_t *)f->r, val.p, val.len);
    return true;
}

bool sl_pdk_request_get_query_arg(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    struct arg_find f = {R(p), name, value};
    return each_arg(sl_pdk_request_get_raw_query(p), find_arg, &f);
}

const char *sl_pdk_server_get_addr(sl_pdk_t *p)
{
    sl_conn_t *c = R(p)->c;
    if (!c->local_ip[0]) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        struct bufferevent *bev = client_bev(c); /* NULL closed: a log handler asks */
        int fd = bev ? bufferevent_getfd(bev) : -1;
        if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
            ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->local_ip,
                      sizeof(c->local_ip));
        else if (len && ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->local_ip,
                      sizeof(c->local_ip));
        else
            snprintf(c->local_ip, sizeof(c->local_ip), "0.0.0.0");
    }
    return c->local_ip;
}

uint64_t sl_pdk_connection_serial(sl_pdk_t *p)
{
    return R(p)->c->serial;
}

uint64_t sl_pdk_connection_requests(sl_pdk_t *p)
{
    return R(p)->c->nreq;
}

bool sl_pdk_request_get_raw_body(sl_pdk_t *p, sl_str_t *body)
{
    sl_req_t *r = R(p);
    if (r->body_kind == B_NONE && !r->body_buffered) {
        *body = SL_STR("");
        return true;
    }
    if (!r->body_buffered || !r->body_buf)
        return false;
    size_t n = evbuffer_get_length(r->body_buf);
    *body = (sl_str_t){n ? (const char *)evbuffer_pullup(r->body_buf, -1) : "", n};
    return true;
}

const char *sl_pdk_request_raw_body_error(sl_pdk_t *p)
{
    return R(p)->body_too_large ? "request body did not fit into client body buffer, consider "
                                  "raising 'client_body_buffer_size'"
                                : NULL;
}

sl_str_t sl_pdk_request_get_path_with_query(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    if (!r->h.absolute_form)
        return r->h.target;
    /* nginx's $request_uri of an absolute-form target starts at its path. */
    if (!r->h.query.p)
        return r->h.path;
    return arena_printf(r, "%.*s?%.*s", (int)r->h.path.len, r->h.path.p, (int)r->h.query.len,
                        r->h.query.p);
}

/* The first field of a name when the peer is in trusted_ips (the proxy
 * decided that at accept time, with the list kong.ip.is_trusted reads). */
static bool trusted_header(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    return R(p)->c->trusted && sl_pdk_request_get_header(p, name, value);
}

/* The host of an X-Forwarded-Host value: after any "userinfo@", before the
 * first ':' (Kong cuts there, bracketed IPv6 included). */
static sl_str_t forwarded_host_part(sl_str_t v, sl_str_t *port)
{
    const char *at = memchr(v.p, '@', v.len);
    if (at) {
        v.len -= (size_t)(at + 1 - v.p);
        v.p = at + 1;
    }
    const char *colon = memchr(v.p, ':', v.len);
    *port = colon ? (sl_str_t){colon + 1, v.len - (size_t)(colon + 1 - v.p)} : SL_STR("");
    if (colon)
        v.len = (size_t)(colon - v.p);
    return v;
}

/* Lua's tonumber(s, 10) for a port: digits between optional blanks, 1..65535;
 * 0 otherwise. */
static int port_number(sl_str_t s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    uint64_t v;
    if (s.len > 5 || sl_parse_u64(s.p, s.len, 65535, &v) != SL_OK || v == 0)
        return 0;
    return (int)v;
}

sl_str_t sl_pdk_request_get_forwarded_scheme(sl_pdk_t *p)
{
    sl_str_t v;
    if (trusted_header(p, "x-forwarded-proto", &v))
        return lower_copy(R(p), v);
    return sl_pdk_request_get_scheme(p);
}

sl_str_t sl_pdk_request_get_forwarded_host(sl_pdk_t *p)
{
    sl_str_t v, port;
    if (trusted_header(p, "x-forwarded-host", &v))
        return lower_copy(R(p), forwarded_host_part(v, &port));
    return sl_pdk_request_get_host(p);
}

int sl_pdk_request_get_forwarded_port(sl_pdk_t *p)
{
    sl_str_t v, port;
    int n;
    if (trusted_header(p, "x-forwarded-port", &v) && (n = port_number(v)))
        return n;
    if (trusted_header(p, "x-forwarded-host", &v)) {
        forwarded_host_part(v, &port);
        if (port.len && (n = port_number(port)))
            return n;
    }
    return sl_pdk_request_get_port(p);
}

sl_str_t sl_pdk_request_get_forwarded_path(sl_pdk_t *p)
{
    sl_str_t v;
    if (trusted_header(p, "x-forwarded-path", &v))
        return v;
    return sl_pdk_request_get_path(p);
}

/* The prefix the route strips, as the proxy sends it in X-Forwarded-Prefix
 * (proxy.c build_upstream_head): none for "/" or a route that keeps it. */
static bool stripped_prefix(const sl_req_t *r, sl_str_t *prefix)
{
    if (!r->route || !r->route->strip_path || !r->npath || r->m.prefix_len == 0 ||
        r->m.prefix_len > r->npath_len || (r->m.prefix_len == 1 && r->npath[0] == '/'))
        return false;
    *prefix = (sl_str_t){r->npath, r->m.prefix_len};
    return true;
}

bool sl_pdk_request_get_forwarded_prefix(sl_pdk_t *p, sl_str_t *prefix)
{
    if (trusted_header(p, "x-forwarded-prefix", prefix))
        return true;
    return stripped_prefix(R(p), prefix);
}

json_t *sl_pdk_request_get_headers(sl_pdk_t *p, int max, bool *truncated)
{
    if (!max_ok(p, "max_headers", max))
        return NULL;
    sl_req_t *r = R(p);
    return fields_multimap(r, r->h.headers, r->h.num_headers, max, truncated);
}

struct query_map {
    sl_req_t *r;
    json_t *m;
    size_t left;
    bool truncated;
};

static bool add_query_arg(sl_str_t key, sl_str_t val, bool has_eq, void *ud)
{
    struct query_map *q = ud;
    if (q->left == 0) {
        q->truncated = true;
        return true;
    }
    q->left--;
    json_t *v =
        has_eq ? json_str(q->r, sl_pdk_unescape((sl_pdk_t *)q->r, val.p, val.len)) : json_true();
    multimap_add(q->r, q->m, sl_pdk_unescape((sl_pdk_t *)q->r, key.p, key.len), v);
    return false;
}

json_t *sl_pdk_request_get_query(sl_pdk_t *p, int max, bool *truncated)
{
    if (!max_ok(p, "max_args", max))
        return NULL;
    struct query_map q = {R(p), json_object(), (size_t)max, false};
    each_arg(sl_pdk_request_get_raw_query(p), add_query_arg, &q);
    if (truncated)
        *truncated = q.truncated;
    return q.m;
}

json_t *sl_pdk_request_get_uri_captures(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    json_t *unnamed = json_array(), *named = json_object();
    size_t n = r->route ? SL_MIN(r->m.ncaptures, (size_t)SL_ROUTER_MAX_CAPTURES) : 0;
    int last = 0;
    for (size_t i = 0; i < n; i++)
        if (!r->m.captures[i].name && r->m.captures[i].index > last)
            last = r->m.captures[i].index;
    for (int g = 1; g <= last; g++) {
        sl_str_t v = SL_STR("");
        for (size_t i = 0; i < n; i++)
            if (!r->m.captures[i].name && r->m.captures[i].index == g)
                v = r->m.captures[i].value;
        json_array_append_new(unnamed, json_str(r, v));
    }
    for (size_t i = 0; i < n; i++) {
        const sl_router_capture_t *c = &r->m.captures[i];
        if (c->name)
            json_object_set_new(named, c->name, json_str(r, c->value));
    }
    return json_pack("{s:o,s:o}", "unnamed", unnamed, "named", named);
}

uint64_t sl_pdk_request_get_start_time(sl_pdk_t *p)
{
    return R(p)->wall_start_us / 1000;
}

/* ------------------------------------------------------------- kong.client */

const char *sl_pdk_client_get_ip(sl_pdk_t *p)
{
    return R(p)->c->peer_ip;
}

/*
 * nginx's realip module as Kong sets it up (real_ip_header X-Real-IP,
 * set_real_ip_from <trusted_ips>, real_ip_recursive off): for a trusted
 * peer, the first X-Real-IP field parsed as ngx_parse_addr_port does, an
 * address alone or "a.b.c.d:port" / "[v6]:port". False when it does not
 * apply (untrusted peer, no field, not an address): the peer stands.
 */
static bool real_ip(sl_pdk_t *p, char ip[INET6_ADDRSTRLEN], int *port)
{
    sl_str_t v;
    unsigned char bin[sizeof(struct in6_addr)];
    char buf[INET6_ADDRSTRLEN + 8];
    if (!R(p)->c->trusted || !sl_pdk_request_get_header(p, "x-real-ip", &v) || v.len == 0 ||
        v.len >= sizeof(buf))
        return false;
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    *port = 0;
    if (v.len < INET6_ADDRSTRLEN &&
        (inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1)) {
        memcpy(ip, buf, v.len + 1);
        return true;
    }
    char *addr = buf, *colon;
    if (buf[0] == '[') {
        char *rb = strchr(buf, ']');
        if (!rb || rb[1] != ':')
            return false;
        *rb = '\0';
        addr = buf + 1;
        colon = rb + 1;
    } else {
        colon = strchr(buf, ':');
        if (!colon)
            return false;
        *colon = '\0';
    }
    int n = port_number((sl_str_t){colon + 1, strlen(colon + 1)});
    if (!n || !(inet_pton(AF_INET, addr, bin) == 1 ||
                (buf[0] == '[' && inet_pton(AF_INET6, addr, bin) == 1)))
        return false;
    size_t alen = strlen(addr);
    if (alen >= INET6_ADDRSTRLEN)
        return false;
    memcpy(ip, addr, alen + 1);
    *port = n;
    return true;
}

const char *sl_pdk_client_get_forwarded_ip(sl_pdk_t *p)
{
    char ip[INET6_ADDRSTRLEN];
    int port;
    if (real_ip(p, ip, &port))
        return sl_arena_strdup(&R(p)->arena, ip);
    return R(p)->c->peer_ip;
}

int sl_pdk_client_get_port(sl_pdk_t *p)
{
    return R(p)->c->peer_port;
}

int sl_pdk_client_get_forwarded_port(sl_pdk_t *p)
{
    char ip[INET6_ADDRSTRLEN];
    int port;
    if (real_ip(p, ip, &port))
        return port;
    return R(p)->c->peer_port;
}

const char *sl_pdk_client_get_protocol(sl_pdk_t *p, bool allow_terminated, const char **err)
{
    sl_req_t *r = R(p);
    if (!r->route) {
        if (err)
            *err = "No active route found";
        return NULL;
    }
    unsigned protocols = r->route->protocols;
    if (protocols == SL_PROTO_HTTP)
        return "http";
    if (protocols == SL_PROTO_HTTPS)
        return "https";
    /* Kong's check_https: TLS here, or, on plain HTTP, a trusted proxy's
     * X-Forwarded-Proto, and only when asked. */
    if (r->c->tls)
        return "https";
    if (!allow_terminated || !r->c->trusted)
        return "http";
    size_t n = 0;
    sl_str_t v = SL_STR("");
    for (size_t i = 0; i < r->h.num_headers; i++) {
        if (name_is(r->h.headers[i].name, "x-forwarded-proto")) {
            v = r->h.headers[i].value;
            n++;
        }
    }
    if (n > 1) {
        if (err)
            *err = "Only one X-Forwarded-Proto header allowed";
        return NULL;
    }
    return sl_strcaseeq(v.p, v.len, "https", 5) ? "https" : "http";
}

void sl_pdk_client_authenticate(sl_pdk_t *p, const sl_consumer_t *consumer,
                                const sl_credential_t *credential)
{
    R(p)->consumer = consumer;
    R(p)->credential = credential;
}

const sl_consumer_t *sl_pdk_client_get_consumer(sl_pdk_t *p)
{
    return R(p)->consumer;
}

const sl_credential_t *sl_pdk_client_get_credential(sl_pdk_t *p)
{
    return R(p)->credential;
}

const sl_consumer_t *sl_pdk_client_load_consumer(sl_pdk_t *p, const char *id_or_username)
{
    return sl_engine_consumer(R(p)->gen, id_or_username);
}

const sl_credential_t *sl_pdk_credential_lookup(sl_pdk_t *p, const char *table, const char *key)
{
    return sl_engine_credential(R(p)->gen, table, key);
}

static void set_or_clear(sl_pdk_t *p, const char *name, const char *value)
{
    if (value)
        sl_pdk_service_request_set_header(p, name, value);
    else
        sl_pdk_service_request_clear_header(p, name);
}

void sl_pdk_auth_set_consumer(sl_pdk_t *p, const sl_consumer_t *consumer,
                              const sl_credential_t *credential)
{
    sl_pdk_client_authenticate(p, consumer, credential);
    set_or_clear(p, "X-Consumer-ID", consumer ? consumer->id : NULL);
    set_or_clear(p, "X-Consumer-Custom-ID", consumer ? consumer->custom_id : NULL);
    set_or_clear(p, "X-Consumer-Username", consumer ? consumer->username : NULL);
    set_or_clear(p, "X-Credential-Identifier", credential ? credential->id : NULL);
    set_or_clear(p, "X-Anonymous-Consumer", credential ? NULL : "true");
}

int sl_pdk_auth_anonymous(sl_pdk_t *p, const char *anonymous)
{
    const sl_consumer_t *anon = sl_pdk_client_load_consumer(p, anonymous);
    if (!anon) {
        char *msg = sl_xasprintf("anonymous consumer %s is configured but doesn't exist",
                                 anonymous ? anonymous : "");
        sl_pdk_log(p, SL_LOG_ERROR, "%s", msg);
        int rc = sl_pdk_response_error(p, 500, msg);
        free(msg);
        return rc;
    }
    sl_pdk_auth_set_consumer(p, anon, NULL);
    return SL_PLUGIN_CONTINUE;
}

/* ----------------------------------------------------------------- kong.ip */

bool sl_pdk_ip_is_trusted(sl_pdk_t *p, const char *addr)
{
    const sl_dp_conf_t *conf = conf_of(R(p));
    if (!conf || conf->ntrusted == 0 || !addr)
        return false;
    bool all4 = false, all6 = false;
    for (size_t i = 0; i < conf->ntrusted; i++) {
        if (conf->trusted[i].bits == 0) {
            all4 |= conf->trusted[i].family == AF_INET;
            all6 |= conf->trusted[i].family == AF_INET6;
        }
    }
    if (all4 && all6)
        return true;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return false;
    return sl_cidr_match(conf->trusted, conf->ntrusted, (const struct sockaddr *)&ss);
}

/* --------------------------------------------------------------- kong.node */

static pthread_mutex_t node_lock = PTHREAD_MUTEX_INITIALIZER;
static const sl_dp_conf_t *node_conf; /* the configuration node_id was made for */
static char node_id[SL_UUID_STRLEN + 1];
static char node_fallback[SL_UUID_STRLEN + 1];

/* <prefix>/node.id when it starts with a valid UUID. */
static bool read_node_id(const sl_dp_conf_t *conf, char out[SL_UUID_STRLEN + 1])
{
    if (!conf || !conf->prefix)
        return false;
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof(path), "%s/node.id", conf->prefix);
    if (sl_read_file(path, 4096, &text, &len) != SL_OK)
        return false;
    bool ok = len >= SL_UUID_STRLEN;
    if (ok) {
        memcpy(out, text, SL_UUID_STRLEN);
        out[SL_UUID_STRLEN] = '\0';
        ok = sl_uuid_valid(out);
    }
    free(text);
    return ok;
}

const char *sl_pdk_node_get_id(sl_pdk_t *p)
{
    const sl_dp_conf_t *conf = conf_of(R(p));
    char id[SL_UUID_STRLEN + 1];
    pthread_mutex_lock(&node_lock);
    if (node_conf != conf || !node_id[0]) {
        node_id[0] = '\0';
        if (read_node_id(conf, id)) {
            memcpy(node_id, id, sizeof(id));
            node_conf = conf;
        } else if (!conf || !conf->hybrid) {
            sl_uuid_v4(node_id);
            node_conf = conf;
        }
    }
    /* In hybrid mode the cluster client writes node.id at start-up; until it
     * is there (a request served from a persisted configuration in that
     * instant), answer a process-wide id and look again next time. */
    if (!node_id[0] && !node_fallback[0])
        sl_uuid_v4(node_fallback);
    memcpy(id, node_id[0] ? node_id : node_fallback, sizeof(id));
    pthread_mutex_unlock(&node_lock);
    return sl_arena_strdup(&R(p)->arena, id);
}

const char *sl_pdk_node_get_hostname(sl_pdk_t *p)
{
    char name[256];
    if (gethostname(name, sizeof(name) - 1) != 0)
        return "";
    name[sizeof(name) - 1] = '\0';
    return sl_arena_strdup(&R(p)->arena, name);
}

json_t *sl_pdk_node_get_memory_stats(sl_pdk_t *p)
{
    unsigned long long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    json_int_t rss = (json_int_t)(resident * (unsigned long long)(page > 0 ? page : 4096));
    return json_pack("{s:{},s:[{s:I,s:I}]}", "lua_shared_dicts", "workers_lua_vms", "pid",
                     (json_int_t)getpid(), "http_allocated_gc", rss);
}

/* ---------------------------------------------------- kong.service.request */

/* Makes h.headers an arena array with room for one more field. */
static void reserve_header(sl_req_t *r)
{
    if (r->hcap > r->h.num_headers)
        return;
    size_t cap = r->hcap ? r->hcap * 2 : r->h.num_headers + 8;
    sl_h1_header_t *hs = sl_arena_alloc(&r->arena, cap * sizeof(*hs));
    memcpy(hs, r->h.headers, r->h.num_headers * sizeof(*hs));
    r->h.headers = hs;
    r->hcap = cap;
}

void sl_pdk_service_request_clear_header(sl_pdk_t *p, const char *name)
{
    sl_req_t *r = R(p);
    size_t len = strlen(name), k = 0;
    for (size_t i = 0; i < r->h.num_headers; i++)
        if (!sl_strcaseeq(r->h.headers[i].name.p, r->h.headers[i].name.len, name, len))
            r->h.headers[k++] = r->h.headers[i];
    r->h.num_headers = k;
    if (!strcasecmp(name, "host"))
        r->up_host = (sl_str_t){NULL, 0};
}

void sl_pdk_service_request_add_header(sl_pdk_t *p, const char *name, const char *value)
{
    sl_req_t *r = R(p);
    if (!field_ok(p, name, value ? value : ""))
        return;
    if (!strcasecmp(name, "host")) {
        /* One Host: it replaces the client's and becomes the upstream's. */
        sl_pdk_service_request_clear_header(p, name);
        r->up_host = copy_str(r, value);
    }
    reserve_header(r);
    r->h.headers[r->h.num_headers++] = (sl_h1_header_t){copy_str(r, name), copy_str(r, value)};
}

void sl_pdk_service_request_set_header(sl_pdk_t *p, const char *name, const char *value)
{
    if (!field_ok(p, name, value ? value : ""))
        return;
    sl_pdk_service_request_clear_header(p, name);
    sl_pdk_service_request_add_header(p, name, value);
}

void sl_pdk_service_request_set_method(sl_pdk_t *p, const char *method)
{
    if (!line_ok(p, "method", method) || !*method)
        return;
    R(p)->up_method = copy_str(R(p), method);
}

void sl_pdk_service_request_set_path(sl_pdk_t *p, const char *path)
{
    if (!line_ok(p, "path", path) || path[0] != '/')
        return;
    R(p)->up_path = copy_str(R(p), path);
}

void sl_pdk_service_request_set_raw_query(sl_pdk_t *p, const char *query)
{
    if (!line_ok(p, "query", query))
        return;
    R(p)->up_query = copy_str(R(p), query);
}

/* Makes *b (created if needed) hold exactly len bytes of body. */
static void set_buffer(struct evbuffer **b, const char *body, size_t len)
{
    if (!*b)
        *b = evbuffer_new();
    evbuffer_drain(*b, evbuffer_get_length(*b));
    evbuffer_add(*b, body, len);
}

void sl_pdk_service_request_set_raw_body(sl_pdk_t *p, const char *body, size_t len)
{
    sl_req_t *r = R(p);
    if (!r->body_done && !r->body_buffered) {
        /* The client's body is still streaming in: it cannot be replaced. */
        sl_pdk_log(p, SL_LOG_ERROR,
                   "set_raw_body refused: the request body was not read first "
                   "(the plugin must declare wants_body)");
        return;
    }
    set_buffer(&r->body_buf, body, len);
    r->body_buffered = true;
    r->body_replaced = true;
}

struct arg_drop {
    sl_req_t *r;
    const char *name;
    char *out;
    size_t len;
};

static bool keep_arg(sl_str_t key, sl_str_t val, bool has_eq, void *ud)
{
    struct arg_drop *d = ud;
    if (!strcmp(sl_pdk_unescape((sl_pdk_t *)d->r, key.p, key.len).p, d->name))
        return false;
    if (d->len)
        d->out[d->len++] = '&';
    memcpy(d->out + d->len, key.p, key.len);
    d->len += key.len;
    if (has_eq) {
        d->out[d->len++] = '=';
        memcpy(d->out + d->len, val.p, val.len);
        d->len += val.len;
    }
    return false;
}

void sl_pdk_service_request_clear_query_arg(sl_pdk_t *p, const char *name)
{
    sl_req_t *r = R(p);
    sl_str_t q = sl_pdk_request_get_raw_query(p);
    struct arg_drop d = {r, name, sl_arena_alloc(&r->arena, q.len + 1), 0};
    each_arg(q, keep_arg, &d);
    d.out[d.len] = '\0';
    r->up_query = (sl_str_t){d.out, d.len};
}

const char *sl_pdk_scalar_text(sl_pdk_t *p, const json_t *v)
{
    sl_req_t *r = R(p);
    switch (json_typeof(v)) {
    case JSON_STRING:
        return sl_arena_strndup(&r->arena, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return arena_printf(r, "%" JSON_INTEGER_FORMAT, json_integer_value(v)).p;
    case JSON_REAL:
        return arena_printf(r, "%.14g", json_real_value(v)).p;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return NULL;
    }
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Checks a headers table as Kong's validate_headers (each value a string,
 * number or boolean, or an array of strings) and that every name and value
 * can go into a message; returns its names sorted (Kong applies them in
 * lexicographic order), or NULL after logging the first problem.
 */
static const char **header_table(sl_pdk_t *p, const json_t *headers, size_t *n)
{
    sl_req_t *r = R(p);
    if (!json_is_object(headers)) {
        sl_pdk_log(p, SL_LOG_ERROR, "headers must be a table");
        return NULL;
    }
    *n = json_object_size(headers);
    const char **names = sl_arena_alloc(&r->arena, (*n + 1) * sizeof(*names));
    size_t k = 0;
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)headers, name, v)
    {
        if (json_is_array(v)) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e)
            {
                if (!json_is_string(e)) {
                    sl_pdk_log(p, SL_LOG_ERROR,
                               "invalid header value in array \"%.64s\": expected string", name);
                    return NULL;
                }
                if (!field_ok(p, name, json_string_value(e)))
                    return NULL;
            }
            if (json_array_size(v) == 0 && !field_ok(p, name, ""))
                return NULL;
        } else {
            const char *text = sl_pdk_scalar_text((sl_pdk_t *)r, v);
            if (!text) {
                sl_pdk_log(p, SL_LOG_ERROR,
                           "invalid header value for \"%.64s\": expected array of string, "
                           "string, number or boolean",
                           name);
                return NULL;
            }
            if (!field_ok(p, name, text))
                return NULL;
        }
        names[k++] = name;
    }
    qsort(names, k, sizeof(*names), compare_names);
    *n = k;
    return names;
}

bool sl_pdk_service_request_set_headers(sl_pdk_t *p, const json_t *headers)
{
    size_t n;
    const char **names = header_table(p, headers, &n);
    if (!names)
        return false;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(headers, names[i]);
        if (!json_is_array(v)) {
            sl_pdk_service_request_set_header(p, names[i], sl_pdk_scalar_text(p, v));
            continue;
        }
        sl_pdk_service_request_clear_header(p, names[i]);
        size_t k;
        const json_t *e;
        json_array_foreach(v, k, e)
            sl_pdk_service_request_add_header(p, names[i], json_string_value(e));
    }
    return true;
}

/* Percent-encodes s as ngx.escape_uri does for a URI component: all but
 * A-Z a-z 0-9 - . _ ~, with upper-case hex. */
static void add_escaped(sl_sb_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            sl_sb_add(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sl_sb_add(b, e, 3);
        }
    }
}

/* One argument of ngx.encode_args: "k=v", "k" for true, nothing for false.
 * False for a value it refuses. */
static bool add_query_value(sl_req_t *r, sl_sb_t *b, const char *key, const json_t *v)
{
    if (json_is_false(v))
        return true;
    const char *text = NULL;
    if (!json_is_true(v) && !(text = sl_pdk_scalar_text((sl_pdk_t *)r, v)))
        return false;
    if (b->len)
        sl_sb_addlit(b, "&");
    add_escaped(b, key, strlen(key));
    if (text) {
        sl_sb_addlit(b, "=");
        add_escaped(b, text, strlen(text));
    }
    return true;
}

static int compare_strs(const void *a, const void *b)
{
    const sl_str_t *x = a, *y = b;
    int c = memcmp(x->p, y->p, SL_MIN(x->len, y->len));
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

bool sl_pdk_service_request_set_query(sl_pdk_t *p, const json_t *args)
{
    sl_req_t *r = R(p);
    if (!json_is_object(args)) {
        sl_pdk_log(p, SL_LOG_ERROR, "args must be a table");
        return false;
    }
    size_t n = json_object_size(args), k = 0;
    sl_str_t *parts = sl_arena_alloc(&r->arena, (n + 1) * sizeof(*parts));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)args, key, v)
    {
        char storage[256];
        sl_sb_t b;
        sl_sb_init(&b, storage, sizeof(storage));
        bool ok = true;
        if (json_is_array(v)) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e) ok = ok && add_query_value(r, &b, key, e);
        } else {
            ok = add_query_value(r, &b, key, v);
        }
        if (!ok) {
            sl_sb_dispose(&b);
            sl_pdk_log(p, SL_LOG_ERROR, "attempt to use an invalid value as query arg \"%.64s\"",
                       key);
            return false;
        }
        if (b.len)
            parts[k++] = (sl_str_t){sl_arena_strndup(&r->arena, b.p, b.len), b.len};
        sl_sb_dispose(&b);
    }
    qsort(parts, k, sizeof(*parts), compare_strs);
    size_t len = 0;
    for (size_t i = 0; i < k; i++)
        len += parts[i].len + 1;
    char *q = sl_arena_alloc(&r->arena, len + 1), *o = q;
    for (size_t i = 0; i < k; i++) {
        if (i)
            *o++ = '&';
        memcpy(o, parts[i].p, parts[i].len);
        o += parts[i].len;
    }
    *o = '\0';
    r->up_query = (sl_str_t){q, (size_t)(o - q)};
    return true;
}

bool sl_pdk_service_request_set_scheme(sl_pdk_t *p, const char *scheme)
{
    if (scheme && (!strcmp(scheme, "http") || !strcmp(scheme, "https"))) {
        R(p)->up_scheme = scheme[4] ? 1 : -1;
        return true;
    }
    sl_pdk_log(p, SL_LOG_ERROR, "invalid scheme: %.32s", scheme ? scheme : "(null)");
    return false;
}

/* ------------------------------------------------------------ kong.service */

bool sl_pdk_service_set_upstream(sl_pdk_t *p, const char *name)
{
    sl_req_t *r = R(p);
    json_t *i = NULL;
    if (name && r->gen && r->gen->upstream_index) {
        sl_str_t lower = lower_copy(r, (sl_str_t){name, strlen(name)});
        i = json_object_get(r->gen->upstream_index, lower.p);
    }
    json_int_t k = i ? json_integer_value(i) : -1;
    if (k < 0 || (size_t)k >= r->gen->nupstreams) {
        sl_pdk_log(p, SL_LOG_ERROR, "could not find an Upstream named '%.128s'", name ? name : "");
        return false;
    }
    r->pdk_upstream = &r->gen->upstreams[k];
    r->target_host = (sl_str_t){NULL, 0};
    r->target_port = 0;
    return true;
}

bool sl_pdk_service_set_target(sl_pdk_t *p, const char *host, int port)
{
    sl_req_t *r = R(p);
    size_t n = host ? strlen(host) : 0;
    bool ok = n > 0 && n <= 255;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)host[i] > 0x20 && (unsigned char)host[i] < 0x7f && host[i] != '/';
    if (!ok) {
        sl_pdk_log(p, SL_LOG_ERROR, "set_target refused: host must be a name or an address");
        return false;
    }
    if (port < 0 || port > 65535) {
        sl_pdk_log(p, SL_LOG_ERROR, "port must be an integer between 0 and 65535: given %d", port);
        return false;
    }
    r->target_host = copy_str(r, host);
    r->target_port = (uint16_t)port;
    r->pdk_upstream = NULL;
    /* Kong sets $upstream_host to the host: it becomes the upstream Host. */
    r->up_host = r->target_host;
    return true;
}

/* ----------------------------------------------------------- kong.response */

static void add_op(sl_req_t *r, int op, const char *name, const char *value)
{
    if (!field_ok((sl_pdk_t *)r, name, value ? value : ""))
        return;
    if (r->nresp_ops == r->cap_resp_ops) {
        size_t cap = r->cap_resp_ops ? r->cap_resp_ops * 2 : 8;
        struct sl_hdr_op *ops = sl_arena_alloc(&r->arena, cap * sizeof(*ops));
        if (r->nresp_ops)
            memcpy(ops, r->resp_ops, r->nresp_ops * sizeof(*ops));
        r->resp_ops = ops;
        r->cap_resp_ops = cap;
    }
    r->resp_ops[r->nresp_ops++] =
        (struct sl_hdr_op){copy_str(r, name), value ? copy_str(r, value) : SL_STR(""), op};
}

void sl_pdk_response_set_header(sl_pdk_t *p, const char *name, const char *value)
{
    add_op(R(p), SL_HDR_SET, name, value);
}

void sl_pdk_response_add_header(sl_pdk_t *p, const char *name, const char *value)
{
    add_op(R(p), SL_HDR_ADD, name, value);
}

void sl_pdk_response_clear_header(sl_pdk_t *p, const char *name)
{
    add_op(R(p), SL_HDR_CLEAR, name, NULL);
}

bool sl_pdk_response_set_headers(sl_pdk_t *p, const json_t *headers)
{
    size_t n;
    const char **names = header_table(p, headers, &n);
    if (!names)
        return false;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(headers, names[i]);
        if (!strcasecmp(names[i], "transfer-encoding")) {
            sl_pdk_log(p, SL_LOG_WARN, "manually setting Transfer-Encoding. Ignored.");
            continue;
        }
        if (!json_is_array(v)) {
            add_op(R(p), SL_HDR_SET, names[i], sl_pdk_scalar_text(p, v));
            continue;
        }
        if (json_array_size(v) == 0)
            add_op(R(p), SL_HDR_CLEAR, names[i], NULL);
        size_t k;
        const json_t *e;
        json_array_foreach(v, k, e)
            add_op(R(p), k ? SL_HDR_ADD : SL_HDR_SET, names[i], json_string_value(e));
    }
    return true;
}

int sl_pdk_response_exit(sl_pdk_t *p, int status, const char *body, size_t len)
{
    sl_req_t *r = R(p);
    if (status < 100 || status > 599) {
        sl_pdk_log(p, SL_LOG_ERROR, "response status %d is not 100..599: answering 500", status);
        status = 500;
        body = NULL;
    }
    r->exit_status = status;
    r->exit_body = body ? sl_arena_strndup(&r->arena, body, len) : NULL;
    r->exit_body_len = body ? len : 0;
    return SL_PLUGIN_EXIT;
}

int sl_pdk_response_exit_message(sl_pdk_t *p, int status, const char *message)
{
    sl_req_t *r = R(p);
    json_t *o = json_pack("{s:s}", "message", message ? message : "");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    bool has_ct = false;
    for (size_t i = 0; i < r->nresp_ops; i++)
        if (name_is(r->resp_ops[i].name, "content-type"))
            has_ct = r->resp_ops[i].op != SL_HDR_CLEAR;
    if (!has_ct)
        sl_pdk_response_set_header(p, "Content-Type", "application/json; charset=utf-8");
    int rc = sl_pdk_response_exit(p, status, text ? text : "{}", text ? strlen(text) : 2);
    free(text);
    return rc;
}

int sl_pdk_response_error(sl_pdk_t *p, int status, const char *message)
{
    json_t *o = json_pack("{s:s,s:s}", "message", message ? message : "", "request_id",
                          sl_pdk_request_id(p));
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text)
        return sl_pdk_response_exit_message(p, status, message);
    size_t n = strlen(text);
    char *body = sl_pdk_alloc(p, n + 1);
    memcpy(body, text, n);
    body[n] = '\n';
    free(text);
    sl_pdk_response_set_header(p, "Content-Type", "application/json; charset=utf-8");
    return sl_pdk_response_exit(p, status, body, n + 1);
}

int sl_pdk_response_get_status(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    if (r->filter_status)
        return r->filter_status;
    return r->exit_status ? r->exit_status : r->status;
}

bool sl_pdk_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    sl_req_t *r = R(p);
    /* The last set/add of the name wins over the upstream's unless a later
     * clear removed it. */
    for (size_t i = r->nresp_ops; i-- > 0;) {
        const struct sl_hdr_op *o = &r->resp_ops[i];
        if (!name_is(o->name, name))
            continue;
        if (o->op == SL_HDR_CLEAR)
            return false;
        if (o->op == SL_HDR_SET) {
            *value = o->value;
            return true;
        }
        /* an add: the first field of that name is the upstream's, if any */
        for (size_t k = 0; k < r->nresp_headers; k++) {
            if (name_is(r->resp_headers[k].name, name)) {
                *value = r->resp_headers[k].value;
                return true;
            }
        }
        *value = o->value;
        return true;
    }
    for (size_t k = 0; k < r->nresp_headers; k++) {
        if (name_is(r->resp_headers[k].name, name)) {
            *value = r->resp_headers[k].value;
            return true;
        }
    }
    return false;
}

/* Whether op i of the response changes is the field's last word: no later
 * set or clear of the same name. */
static bool op_survives(const sl_req_t *r, size_t i)
{
    const struct sl_hdr_op *o = &r->resp_ops[i];
    if (o->op == SL_HDR_CLEAR)
        return false;
    for (size_t j = i + 1; j < r->nresp_ops; j++)
        if (r->resp_ops[j].op != SL_HDR_ADD &&
            sl_strcaseeq(r->resp_ops[j].name.p, r->resp_ops[j].name.len, o->name.p, o->name.len))
            return false;
    return true;
}

static bool upstream_survives(const sl_req_t *r, sl_str_t name)
{
    for (size_t j = 0; j < r->nresp_ops; j++)
        if (r->resp_ops[j].op != SL_HDR_ADD &&
            sl_strcaseeq(r->resp_ops[j].name.p, r->resp_ops[j].name.len, name.p, name.len))
            return false;
    return true;
}

/* The i-th effective response field (SIZE_MAX: count them). */
static size_t response_field(sl_req_t *r, size_t want, sl_str_t *name, sl_str_t *value)
{
    size_t n = 0;
    for (size_t k = 0; k < r->nresp_headers; k++) {
        if (!upstream_survives(r, r->resp_headers[k].name))
            continue;
        if (n++ == want) {
            *name = r->resp_headers[k].name;
            *value = r->resp_headers[k].value;
            return n;
        }
    }
    for (size_t i = 0; i < r->nresp_ops; i++) {
        if (!op_survives(r, i))
            continue;
        if (n++ == want) {
            *name = r->resp_ops[i].name;
            *value = r->resp_ops[i].value;
            return n;
        }
    }
    return n;
}

size_t sl_pdk_response_header_count(sl_pdk_t *p)
{
    sl_str_t n, v;
    return response_field(R(p), SIZE_MAX, &n, &v);
}

bool sl_pdk_response_header_at(sl_pdk_t *p, size_t i, sl_str_t *name, sl_str_t *value)
{
    return i != SIZE_MAX && response_field(R(p), i, name, value) == i + 1;
}

json_t *sl_pdk_response_get_headers(sl_pdk_t *p, int max, bool *truncated)
{
    if (!max_ok(p, "max_headers", max))
        return NULL;
    sl_req_t *r = R(p);
    json_t *m = json_object();
    size_t n = 0;
    bool more = false;
    for (size_t k = 0; k < r->nresp_headers && !more; k++) {
        if (!upstream_survives(r, r->resp_headers[k].name))
            continue;
        if (n++ == (size_t)max)
            more = true;
        else
            multimap_field(r, m, r->resp_headers[k].name, r->resp_headers[k].value);
    }
    for (size_t i = 0; i < r->nresp_ops && !more; i++) {
        if (!op_survives(r, i))
            continue;
        if (n++ == (size_t)max)
            more = true;
        else
            multimap_field(r, m, r->resp_ops[i].name, r->resp_ops[i].value);
    }
    if (truncated)
        *truncated = more;
    return m;
}

const char *sl_pdk_response_get_source(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    return r->exit_status ? "exit" : r->source ? r->source : "error";
}

/* ------------------------------------- kong.service.response, held bodies */

/* The upstream's fields: the held copy (response phase and after), or in
 * header_filter the fields of the upstream's head being written. False
 * when the upstream has not answered (or the request was not proxied). */
static bool upstream_fields(const sl_req_t *r, const sl_h1_header_t **hs, size_t *n)
{
    if (r->resp_body) {
        *hs = r->held_headers;
        *n = r->nheld_headers;
        return true;
    }
    if (r->resp_headers && r->source && !strcmp(r->source, "service")) {
        *hs = r->resp_headers;
        *n = r->nresp_headers;
        return true;
    }
    return false;
}

int sl_pdk_service_response_get_status(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    if (r->held_status)
        return r->held_status;
    return r->source && !strcmp(r->source, "service") ? r->status : 0;
}

bool sl_pdk_service_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    const sl_h1_header_t *hs;
    size_t n;
    if (!upstream_fields(R(p), &hs, &n))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (name_is(hs[i].name, name)) {
            *value = hs[i].value;
            return true;
        }
    }
    return false;
}

json_t *sl_pdk_service_response_get_headers(sl_pdk_t *p, int max, bool *truncated)
{
    const sl_h1_header_t *hs;
    size_t n;
    if (!max_ok(p, "max_headers", max) || !upstream_fields(R(p), &hs, &n))
        return NULL;
    return fields_multimap(R(p), hs, n, max, truncated);
}

static bool body_of(struct evbuffer *b, sl_str_t *body)
{
    if (!b)
        return false;
    size_t n = evbuffer_get_length(b);
    *body = (sl_str_t){n ? (const char *)evbuffer_pullup(b, -1) : "", n};
    return true;
}

bool sl_pdk_service_response_get_raw_body(sl_pdk_t *p, sl_str_t *body)
{
    return body_of(R(p)->resp_body, body);
}

bool sl_pdk_response_get_raw_body(sl_pdk_t *p, sl_str_t *body)
{
    sl_req_t *r = R(p);
    return body_of(r->resp_new_body ? r->resp_new_body : r->resp_body, body);
}

void sl_pdk_response_set_raw_body(sl_pdk_t *p, const char *body, size_t len)
{
    sl_req_t *r = R(p);
    if (!r->resp_body) {
        sl_pdk_log(p, SL_LOG_ERROR,
                   "response body not held: set_raw_body works in the response "
                   "and body_filter phases only");
        return;
    }
    set_buffer(&r->resp_new_body, body, len);
}

bool sl_pdk_response_set_status(sl_pdk_t *p, int status)
{
    sl_req_t *r = R(p);
    if (status < 100 || status > 599) {
        sl_pdk_log(p, SL_LOG_ERROR,
                   "set_status(%d) refused: code must be a number between 100 and 599", status);
        return false;
    }
    switch (r->phase) {
    case 0:
        /* access: as ngx.status there, replaced by whatever answers. */
        return true;
    case SL_PHASE_RESPONSE:
    case SL_PHASE_BODY_FILTER:
        if (!r->resp_body)
            break;
        r->status_override = status;
        r->status = status;
        return true;
    case SL_PHASE_HEADER_FILTER:
        r->filter_status = status;
        return true;
    default:
        break;
    }
    sl_pdk_log(p, SL_LOG_ERROR, "set_status(%d) refused: headers have already been sent", status);
    return false;
}

/* ------------------------------------------------- router, ctx, log, misc */

const sl_gen_t *sl_pdk_gen(sl_pdk_t *p)
{
    return R(p)->gen;
}

const sl_route_t *sl_pdk_router_get_route(sl_pdk_t *p)
{
    return R(p)->route;
}

const sl_service_t *sl_pdk_router_get_service(sl_pdk_t *p)
{
    return R(p)->svc;
}

/* The entry of key in a ctx list, made (unset) when absent and make is true. */
static struct sl_ctx_kv *ctx_entry(sl_req_t *r, struct sl_ctx_kv **list, const char *key, bool make)
{
    for (struct sl_ctx_kv *kv = *list; kv; kv = kv->next)
        if (!strcmp(kv->key, key))
            return kv;
    if (!make)
        return NULL;
    struct sl_ctx_kv *kv = sl_arena_alloc(&r->arena, sizeof(*kv));
    kv->key = sl_arena_strdup(&r->arena, key);
    kv->value = NULL;
    kv->json = NULL;
    kv->next = *list;
    *list = kv;
    return kv;
}

/* Stores a JSON value: a string as text, anything else as compact JSON;
 * NULL or null unsets. False when it cannot be encoded. */
static bool ctx_set(sl_pdk_t *p, struct sl_ctx_kv **list, const char *key, const json_t *value)
{
    sl_req_t *r = R(p);
    if (!key)
        return false;
    struct sl_ctx_kv *kv = ctx_entry(r, list, key, value && !json_is_null(value));
    if (!kv)
        return true;
    if (!value || json_is_null(value)) {
        kv->value = kv->json = NULL;
        return true;
    }
    if (json_is_string(value)) {
        kv->value =
            sl_arena_strndup(&r->arena, json_string_value(value), json_string_length(value));
        kv->json = NULL;
        return true;
    }
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (!text) {
        sl_pdk_log(p, SL_LOG_ERROR, "ctx value for '%.64s' refused: not encodable", key);
        return false;
    }
    kv->json = sl_arena_strdup(&r->arena, text);
    kv->value = NULL;
    free(text);
    return true;
}

static json_t *ctx_get(sl_req_t *r, struct sl_ctx_kv *list, const char *key)
{
    struct sl_ctx_kv *kv = key ? ctx_entry(r, &list, key, false) : NULL;
    if (!kv)
        return NULL;
    if (kv->json)
        return json_loads(kv->json, JSON_DECODE_ANY, NULL);
    return kv->value ? json_str(r, (sl_str_t){kv->value, strlen(kv->value)}) : NULL;
}

void sl_pdk_ctx_shared_set(sl_pdk_t *p, const char *key, const char *value)
{
    sl_req_t *r = R(p);
    struct sl_ctx_kv *kv = ctx_entry(r, &r->shared, key, true);
    kv->value = value ? sl_arena_strdup(&r->arena, value) : NULL;
    kv->json = NULL;
}

const char *sl_pdk_ctx_shared_get(sl_pdk_t *p, const char *key)
{
    struct sl_ctx_kv *kv = ctx_entry(R(p), &R(p)->shared, key, false);
    return kv ? kv->value : NULL;
}

bool sl_pdk_ctx_shared_set_value(sl_pdk_t *p, const char *key, const json_t *value)
{
    return ctx_set(p, &R(p)->shared, key, value);
}

json_t *sl_pdk_ctx_shared_get_value(sl_pdk_t *p, const char *key)
{
    return ctx_get(R(p), R(p)->shared, key);
}

void **sl_pdk_ctx_plugin(sl_pdk_t *p)
{
    static _Thread_local void *none;
    sl_req_t *r = R(p);
    if (r->run.current_slot)
        return r->run.current_slot;
    none = NULL;
    return &none;
}

void sl_pdk_suspend(sl_pdk_t *p, void (*abort_cb)(void *arg), void *arg)
{
    sl_req_t *r = R(p);
    r->suspended = true;
    r->abort_cb = abort_cb;
    r->abort_arg = arg;
}

unsigned sl_pdk_phase(sl_pdk_t *p)
{
    return R(p)->phase ? R(p)->phase : SL_PHASE_ACCESS;
}

struct event_base *sl_pdk_event_base(sl_pdk_t *p)
{
    return R(p)->c->w->base;
}

int sl_pdk_worker_id(sl_pdk_t *p)
{
    return R(p)->c->w->id;
}

void *sl_pdk_alloc(sl_pdk_t *p, size_t n)
{
    return sl_arena_alloc(&R(p)->arena, n);
}

char *sl_pdk_strndup(sl_pdk_t *p, const char *s, size_t n)
{
    return sl_arena_strndup(&R(p)->arena, s, n);
}

const char *sl_pdk_request_id(sl_pdk_t *p)
{
    return R(p)->reqid;
}

uint64_t sl_pdk_request_start_us(sl_pdk_t *p)
{
    return R(p)->wall_start_us;
}

void sl_pdk_log(sl_pdk_t *p, int level, const char *fmt, ...)
{
    if (!sl_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_log(level, "[%s] %s", sl_engine_current_name(&R(p)->run), msg);
}

int sl_pdk_log_level(const char *name)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        {"debug", SL_LOG_DEBUG}, {"info", SL_LOG_INFO},  {"notice", SL_LOG_NOTICE},
        {"warn", SL_LOG_WARN},   {"err", SL_LOG_ERROR},  {"error", SL_LOG_ERROR},
        {"crit", SL_LOG_CRIT},   {"alert", SL_LOG_CRIT},
    };
    for (size_t i = 0; name && i < SL_ARRAY_LEN(levels); i++)
        if (!strcmp(name, levels[i].name))
            return levels[i].level;
    return -1;
}

/* The error log writes lines of at most 2 KiB (common/log.c): a message
 * is cut to fit, with "..." to say so. */
#define LOG_MESSAGE_MAX 1800

void sl_pdk_log_message(sl_pdk_t *p, int level, const char *msg, size_t len)
{
    if (!sl_log_enabled(level))
        return;
    /* Control characters would split the event or forge lines: escaped. */
    char out[LOG_MESSAGE_MAX + 8];
    size_t k = 0, i = 0;
    for (; msg && i < len && k + 4 <= LOG_MESSAGE_MAX; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\n' || c == '\r') {
            out[k++] = '\\';
            out[k++] = c == '\n' ? 'n' : 'r';
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            k += (size_t)snprintf(out + k, 5, "\\x%02x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    if (msg && i < len) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    sl_log(level, "[%s] %.*s", sl_engine_current_name(&R(p)->run), (int)k, out);
}

/* Appends v as Lua's tostring prints it (tables as JSON). */
static void add_lua_text(sl_sb_t *b, const json_t *v)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        sl_sb_add(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sl_sb_adds(b, num);
        return;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.14g", json_real_value(v));
        sl_sb_adds(b, num);
        return;
    case JSON_TRUE:
        sl_sb_addlit(b, "true");
        return;
    case JSON_FALSE:
        sl_sb_addlit(b, "false");
        return;
    case JSON_NULL:
        sl_sb_addlit(b, "nil");
        return;
    default: {
        char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        sl_sb_adds(b, text ? text : "table");
        free(text);
    }
    }
}

void sl_pdk_log_values(sl_pdk_t *p, int level, const json_t *args)
{
    if (!sl_log_enabled(level) || !args)
        return;
    char storage[512];
    sl_sb_t b;
    sl_sb_init(&b, storage, sizeof(storage));
    if (json_is_array(args)) {
        size_t i;
        const json_t *v;
        json_array_foreach(args, i, v)
        {
            add_lua_text(&b, v);
            if (b.len > LOG_MESSAGE_MAX)
                break;
        }
    } else {
        add_lua_text(&b, args);
    }
    sl_pdk_log_message(p, level, b.p, b.len);
    sl_sb_dispose(&b);
}

/* -------------------------------------------------------------- kong.nginx */

/* Whether a field name is the variable suffix v ("x_foo" for X-Foo), as
 * nginx compares them: case-insensitive, '-' read as '_'. */
static bool var_name_is(sl_str_t field, const char *v)
{
    size_t n = strlen(v);
    if (field.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = sl_lower(field.p[i]);
        if (c == '-')
            c = '_';
        if (c != sl_lower(v[i]))
            return false;
    }
    return true;
}

/* nginx (1.23+) joins the fields of one name with sep for $http_*. */
static bool join_fields(sl_req_t *r, const sl_h1_header_t *hs, size_t n, const char *v,
                        const char *sep, sl_str_t *out)
{
    size_t count = 0, len = 0, seplen = strlen(sep);
    for (size_t i = 0; i < n; i++) {
        if (var_name_is(hs[i].name, v)) {
            len += hs[i].value.len + (count ? seplen : 0);
            count++;
        }
    }
    if (!count)
        return false;
    char *o = sl_arena_alloc(&r->arena, len + 1), *start = o;
    count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!var_name_is(hs[i].name, v))
            continue;
        if (count++) {
            memcpy(o, sep, seplen);
            o += seplen;
        }
        memcpy(o, hs[i].value.p, hs[i].value.len);
        o += hs[i].value.len;
    }
    *o = '\0';
    *out = (sl_str_t){start, len};
    return true;
}

/* $sent_http_*: the response fields as the client gets them. */
static bool sent_field(sl_req_t *r, const char *v, sl_str_t *out)
{
    size_t n = 0;
    for (size_t k = 0; k < r->nresp_headers; k++)
        if (upstream_survives(r, r->resp_headers[k].name))
            n++;
    for (size_t i = 0; i < r->nresp_ops; i++)
        if (op_survives(r, i))
            n++;
    sl_h1_header_t *hs = sl_arena_alloc(&r->arena, (n + 1) * sizeof(*hs));
    n = 0;
    for (size_t k = 0; k < r->nresp_headers; k++)
        if (upstream_survives(r, r->resp_headers[k].name))
            hs[n++] = r->resp_headers[k];
    for (size_t i = 0; i < r->nresp_ops; i++)
        if (op_survives(r, i))
            hs[n++] = (sl_h1_header_t){r->resp_ops[i].name, r->resp_ops[i].value};
    return join_fields(r, hs, n, v, ", ", out);
}

/* $arg_*: the raw value of the first argument of that name (any case). */
static bool raw_arg(sl_pdk_t *p, const char *name, sl_str_t *out)
{
    sl_str_t q = sl_pdk_request_get_raw_query(p);
    size_t n = strlen(name);
    const char *s = q.p, *end = q.p + q.len;
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - s) == n && sl_strcaseeq(s, n, name, n)) {
            *out = eq ? (sl_str_t){eq + 1, (size_t)(stop - eq - 1)} : SL_STR("");
            return true;
        }
        s = stop + 1;
    }
    return false;
}

/* $cookie_*: the value of the first cookie of that name (any case). */
static bool cookie(sl_req_t *r, const char *name, sl_str_t *out)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->h.num_headers; i++) {
        if (!name_is(r->h.headers[i].name, "cookie"))
            continue;
        sl_str_t v = r->h.headers[i].value;
        const char *s = v.p, *end = v.p + v.len;
        while (s < end) {
            while (s < end && (*s == ' ' || *s == '\t'))
                s++;
            const char *semi = memchr(s, ';', (size_t)(end - s));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(s, '=', (size_t)(stop - s));
            if (eq && (size_t)(eq - s) == n && sl_strcaseeq(s, n, name, n)) {
                *out = (sl_str_t){eq + 1, (size_t)(stop - eq - 1)};
                return true;
            }
            s = stop + 1;
        }
    }
    return false;
}

/* "ip:port", "[ip6]:port" of a socket address, as nginx's $upstream_addr. */
static sl_str_t addr_text(sl_req_t *r, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        return arena_printf(r, "[%s]:%u", ip, ntohs(s6->sin6_port));
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
    return arena_printf(r, "%s:%u", ip, ntohs(s4->sin_port));
}

/* The request target the upstream gets: from the head once it is built,
 * else as the proxy will build it (the route's upstream path or a plugin's,
 * and the current query). */
static bool upstream_uri(sl_req_t *r, sl_str_t *out)
{
    if (r->uphead) {
        const char *sp = memchr(r->uphead, ' ', r->uphead_len);
        const char *eol = sp ? memchr(sp, '\r', r->uphead_len - (size_t)(sp - r->uphead)) : NULL;
        if (!eol || eol - sp < 10)
            return false;
        *out = (sl_str_t){sp + 1, (size_t)(eol - sp - 1) - 9}; /* without " HTTP/1.1" */
        return true;
    }
    if (!r->route || !r->svc || !r->npath)
        return false;
    sl_str_t path;
    if (r->up_path.p) {
        path = r->up_path;
    } else {
        enum { MAX = 16384 };
        char *buf = sl_arena_alloc(&r->arena, MAX);
        if (sl_router_upstream_path(r->svc->path, (sl_str_t){r->npath, r->npath_len}, &r->m,
                                    r->route->strip_path, r->route->path_handling, buf,
                                    MAX) != SL_OK)
            return false;
        path = (sl_str_t){buf, strlen(buf)};
    }
    sl_str_t query = r->up_query.p ? r->up_query : r->h.query;
    if (query.p && (query.len || !r->up_query.p))
        *out = arena_printf(r, "%.*s?%.*s", (int)path.len, path.p, (int)query.len, query.p);
    else
        *out = path;
    return true;
}

/* The value the proxy sends as X-Forwarded-<what>: a trusted peer's own,
 * else the one the proxy computes (proxy.c build_upstream_head). */
static bool upstream_forwarded(sl_pdk_t *p, const char *what, sl_str_t *out)
{
    sl_req_t *r = R(p);
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "x-forwarded-%s", what);
    if (strcmp(what, "for") && trusted_header(p, hdr, out))
        return true;
    if (!strcmp(what, "for")) {
        sl_str_t xff;
        if (!join_fields(r, r->h.headers, r->h.num_headers, "x_forwarded_for", ", ", &xff))
            *out = (sl_str_t){r->c->peer_ip, strlen(r->c->peer_ip)};
        else
            *out = arena_printf(r, "%.*s, %s", (int)xff.len, xff.p, r->c->peer_ip);
    } else if (!strcmp(what, "proto")) {
        *out = SL_STR("http");
    } else if (!strcmp(what, "host")) {
        *out = sl_pdk_request_get_host(p);
    } else if (!strcmp(what, "port")) {
        *out = arena_printf(r, "%u", r->c->local_port);
    } else if (!strcmp(what, "path")) {
        *out = r->h.path;
    } else if (!strcmp(what, "prefix")) {
        return stripped_prefix(r, out);
    } else {
        return false;
    }
    return true;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

bool sl_pdk_nginx_get_var(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    sl_req_t *r = R(p);
    sl_str_t v;
    int port;
    if (!name || !*name || strlen(name) > 256)
        return false;

    /* The families: request, response and upstream fields, arguments, cookies. */
    if (has_prefix(name, "http_"))
        return join_fields(r, r->h.headers, r->h.num_headers, name + 5,
                           var_name_is(SL_STR("cookie"), name + 5) ? "; " : ", ", value);
    if (has_prefix(name, "sent_http_"))
        return sent_field(r, name + 10, value);
    if (has_prefix(name, "upstream_http_")) {
        const sl_h1_header_t *hs;
        size_t n;
        return upstream_fields(r, &hs, &n) && join_fields(r, hs, n, name + 14, ", ", value);
    }
    if (has_prefix(name, "arg_"))
        return raw_arg(p, name + 4, value);
    if (has_prefix(name, "cookie_"))
        return cookie(r, name + 7, value);
    if (has_prefix(name, "upstream_x_forwarded_"))
        return upstream_forwarded(p, name + 21, value);

#define IS(lit) (!strcmp(name, lit))
    if (IS("request_uri")) {
        v = sl_pdk_request_get_path_with_query(p);
    } else if (IS("uri")) {
        v = sl_pdk_request_get_path(p);
    } else if (IS("args") || IS("query_string")) {
        if (!r->up_query.p && !r->h.query.p)
            return false;
        v = sl_pdk_request_get_raw_query(p);
    } else if (IS("is_args")) {
        v = sl_pdk_request_get_raw_query(p).len ? SL_STR("?") : SL_STR("");
    } else if (IS("request")) {
        v = arena_printf(r, "%.*s %.*s HTTP/%s", (int)r->h.method.len, r->h.method.p,
                         (int)r->h.target.len, r->h.target.p,
                         r->c->http2          ? "2.0"
                         : r->h.minor_version ? "1.1"
                                              : "1.0");
    } else if (IS("request_method")) {
        v = r->up_method.p ? r->up_method : r->h.method;
    } else if (IS("server_protocol")) {
        v = r->c->http2          ? SL_STR("HTTP/2.0")
            : r->h.minor_version ? SL_STR("HTTP/1.1")
                                 : SL_STR("HTTP/1.0");
    } else if (IS("scheme") || IS("upstream_scheme")) {
        if (IS("upstream_scheme") && !r->svc)
            return false;
        v = SL_STR("http");
    } else if (IS("https")) {
        v = SL_STR("");
    } else if (IS("host")) {
        v = sl_pdk_request_get_host(p);
    } else if (IS("hostname")) {
        const char *h = sl_pdk_node_get_hostname(p);
        v = (sl_str_t){h, strlen(h)};
    } else if (IS("remote_addr")) {
        const char *a = sl_pdk_client_get_forwarded_ip(p);
        v = (sl_str_t){a, strlen(a)};
    } else if (IS("remote_port")) {
        port = sl_pdk_client_get_forwarded_port(p);
        v = port ? arena_printf(r, "%d", port) : SL_STR("");
    } else if (IS("realip_remote_addr")) {
        v = (sl_str_t){r->c->peer_ip, strlen(r->c->peer_ip)};
    } else if (IS("realip_remote_port")) {
        v = arena_printf(r, "%u", r->c->peer_port);
    } else if (IS("binary_remote_addr")) {
        const char *a = sl_pdk_client_get_forwarded_ip(p);
        char *bin = sl_arena_alloc(&r->arena, sizeof(struct in6_addr));
        if (inet_pton(AF_INET, a, bin) == 1)
            v = (sl_str_t){bin, 4};
        else if (inet_pton(AF_INET6, a, bin) == 1)
            v = (sl_str_t){bin, 16};
        else
            return false;
    } else if (IS("server_addr")) {
        const char *a = sl_pdk_server_get_addr(p);
        v = (sl_str_t){a, strlen(a)};
    } else if (IS("server_port")) {
        v = arena_printf(r, "%u", r->c->local_port);
    } else if (IS("request_id") || IS("kong_request_id")) {
        v = (sl_str_t){r->reqid, strlen(r->reqid)};
    } else if (IS("connection")) {
        v = arena_printf(r, "%llu", (unsigned long long)r->c->serial);
    } else if (IS("connection_requests")) {
        v = arena_printf(r, "%u", r->c->nreq);
    } else if (IS("request_length")) {
        v = arena_printf(r, "%llu", (unsigned long long)r->bytes_in);
    } else if (IS("request_time")) {
        double now = sl_wall_time(), start = (double)r->wall_start_us / 1e6;
        v = arena_printf(r, "%.3f", now > start ? now - start : 0.0);
    } else if (IS("msec")) {
        v = arena_printf(r, "%.3f", sl_wall_time());
    } else if (IS("pid")) {
        v = arena_printf(r, "%ld", (long)getpid());
    } else if (IS("content_type") || IS("content_length")) {
        if (!sl_pdk_request_get_header(p, IS("content_type") ? "content-type" : "content-length",
                                       &v))
            return false;
    } else if (IS("request_body")) {
        if (!r->body_buffered || !sl_pdk_request_get_raw_body(p, &v))
            return false;
    } else if (IS("status")) {
        int st = sl_pdk_response_get_status(p);
        v = st ? arena_printf(r, "%03d", st) : SL_STR("000");
    } else if (IS("body_bytes_sent")) {
        v = arena_printf(r, "%llu", (unsigned long long)r->bytes_out);
    } else if (IS("upstream_uri")) {
        if (!upstream_uri(r, &v))
            return false;
    } else if (IS("upstream_host")) {
        sl_str_t host = r->h.absolute_form ? r->h.authority : r->h.host;
        if (r->up_host.p)
            v = r->up_host;
        else if (r->route && r->route->preserve_host && host.len)
            v = host;
        else if (r->svc && r->svc->host_header)
            v = (sl_str_t){r->svc->host_header, strlen(r->svc->host_header)};
        else
            return false;
    } else if (IS("upstream_addr")) {
        if (!r->up)
            return false;
        v = addr_text(r, &r->up->addr);
    } else if (IS("upstream_status")) {
        int st = sl_pdk_service_response_get_status(p);
        if (!st)
            return false;
        v = arena_printf(r, "%d", st);
    } else {
        return false;
    }
#undef IS
    *value = v;
    return true;
}

const char *sl_pdk_nginx_get_tls1_version_str(sl_pdk_t *p)
{
    sl_conn_t *c = R(p)->c;
    struct bufferevent *bev = client_bev(c);
    SSL *ssl = c->tls && bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    return ssl ? SSL_get_version(ssl) : NULL; /* "TLSv1.2", "TLSv1.3" */
}

bool sl_pdk_nginx_set_ctx(sl_pdk_t *p, const char *key, const json_t *value)
{
    return ctx_set(p, &R(p)->ngx_ctx, key, value);
}

json_t *sl_pdk_nginx_get_ctx(sl_pdk_t *p, const char *key)
{
    return ctx_get(R(p), R(p)->ngx_ctx, key);
}

double sl_pdk_nginx_req_start_time(sl_pdk_t *p)
{
    return (double)R(p)->wall_start_us / 1e6;
}

const char *sl_pdk_nginx_get_subsystem(sl_pdk_t *p)
{
    return "http";
}
