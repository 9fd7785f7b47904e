/*
 * pdk.c: the C PDK (see pdk.h) over the proxy's request object.
 *
 * The handle a plugin gets is the request itself (sl_req_t, proxy-t.h), so
 * every call is a few loads on the worker thread that owns the request.
 * Changes are recorded where the proxy reads them when it builds what it
 * sends: the request's header array is edited in place (copied into the
 * request's arena with room to grow the first time), the upstream method,
 * path, query and Host are overrides, and response header changes are an
 * ordered list of set/add/clear operations applied over the upstream's
 * fields (or over nothing, for a plugin's own response).
 */
#include "pdk.h"
#include "log.h"
#include "proxy-t.h"
#include "util.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
    static const char seps[] = "()<>@,;:\\\"/[]?={} \t";
    bool ok = name && *name;
    for (const char *c = name; ok && *c; c++)
        ok = (unsigned char)*c > 0x20 && (unsigned char)*c < 0x7f && !strchr(seps, *c);
    for (const char *c = value; ok && c && *c; c++)
        ok = ((unsigned char)*c >= 0x20 || *c == '\t') && *c != 0x7f;
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

/* ------------------------------------------------------------ kong.request */

sl_str_t sl_pdk_request_get_method(sl_pdk_t *p)
{
    return R(p)->h.method;
}

sl_str_t sl_pdk_request_get_scheme(sl_pdk_t *p)
{
    return SL_STR("http");
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
    return 10 + R(p)->h.minor_version;
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

/* Percent-decodes s (with '+' as a space) into the arena. */
static sl_str_t url_decode(sl_req_t *r, const char *s, size_t n)
{
    char *out = sl_arena_alloc(&r->arena, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = sl_hex_value(s[i + 1])) >= 0 &&
            (lo = sl_hex_value(s[i + 2])) >= 0) {
            out[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[k++] = s[i] == '+' ? ' ' : s[i];
        }
    }
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
    sl_str_t k = url_decode(f->r, key.p, key.len);
    if (strcmp(k.p, f->name) != 0)
        return false;
    *f->out = url_decode(f->r, val.p, val.len);
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
        int fd = bufferevent_getfd(c->bev);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET6)
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

/* ------------------------------------------------------------- kong.client */

const char *sl_pdk_client_get_ip(sl_pdk_t *p)
{
    return R(p)->c->peer_ip;
}

const char *sl_pdk_client_get_forwarded_ip(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    sl_str_t v;
    if (r->c->trusted && sl_pdk_request_get_header(p, "x-real-ip", &v) && v.len &&
        v.len < INET6_ADDRSTRLEN) {
        /* Only an address is believed (nginx's realip does the same). */
        char *ip = sl_arena_strndup(&r->arena, v.p, v.len);
        unsigned char bin[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1)
            return ip;
    }
    return r->c->peer_ip;
}

int sl_pdk_client_get_port(sl_pdk_t *p)
{
    return R(p)->c->peer_port;
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
    if (!r->body_buf)
        r->body_buf = evbuffer_new();
    evbuffer_drain(r->body_buf, evbuffer_get_length(r->body_buf));
    evbuffer_add(r->body_buf, body, len);
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
    if (!strcmp(url_decode(d->r, key.p, key.len).p, d->name))
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

const char *sl_pdk_response_get_source(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    return r->exit_status ? "exit" : r->source ? r->source : "error";
}

/* ------------------------------------- kong.service.response, held bodies */

int sl_pdk_service_response_get_status(sl_pdk_t *p)
{
    return R(p)->held_status;
}

bool sl_pdk_service_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    sl_req_t *r = R(p);
    for (size_t i = 0; i < r->nheld_headers; i++) {
        if (name_is(r->held_headers[i].name, name)) {
            *value = r->held_headers[i].value;
            return true;
        }
    }
    return false;
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
    if (!r->resp_new_body)
        r->resp_new_body = evbuffer_new();
    evbuffer_drain(r->resp_new_body, evbuffer_get_length(r->resp_new_body));
    evbuffer_add(r->resp_new_body, body, len);
}

void sl_pdk_response_set_status(sl_pdk_t *p, int status)
{
    sl_req_t *r = R(p);
    if (status < 100 || status > 599 || !r->resp_body) {
        sl_pdk_log(p, SL_LOG_ERROR,
                   "set_status(%d) refused: a status 100..599, in the response "
                   "phase",
                   status);
        return;
    }
    r->status_override = status;
    r->status = status;
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

void sl_pdk_ctx_shared_set(sl_pdk_t *p, const char *key, const char *value)
{
    sl_req_t *r = R(p);
    for (struct sl_ctx_kv *kv = r->shared; kv; kv = kv->next) {
        if (!strcmp(kv->key, key)) {
            kv->value = value ? sl_arena_strdup(&r->arena, value) : NULL;
            return;
        }
    }
    struct sl_ctx_kv *kv = sl_arena_alloc(&r->arena, sizeof(*kv));
    kv->key = sl_arena_strdup(&r->arena, key);
    kv->value = value ? sl_arena_strdup(&r->arena, value) : NULL;
    kv->next = r->shared;
    r->shared = kv;
}

const char *sl_pdk_ctx_shared_get(sl_pdk_t *p, const char *key)
{
    for (struct sl_ctx_kv *kv = R(p)->shared; kv; kv = kv->next)
        if (!strcmp(kv->key, key))
            return kv->value;
    return NULL;
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
