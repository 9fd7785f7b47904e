/*
 * serialize.c: kong.log.serialize and kong.log.set_serialize_value (pdk.h),
 * the log object Kong 3.10's logging plugins (file-log, http-log, ...)
 * send, built from the proxy's request object.
 *
 * The object has Kong's shape:
 *
 *   request      {id, uri, url, querystring, method, headers, size}
 *   upstream_uri, upstream_status
 *   response     {status, headers, size}
 *   tries        [{ip, port}...] one per upstream attempt
 *   latencies    {kong, proxy, request, receive} in milliseconds
 *   authenticated_entity {id, consumer_id}, consumer, route, service
 *   client_ip, started_at (ms since the epoch), source, workspace_name
 *
 * Request headers and the query are read through the PDK, so they are what
 * Kong's kong.request.get_headers and get_query return in the log phase:
 * names lower-cased, a repeated name an array of its values, a query
 * argument without '=' the boolean true. Response headers come from the
 * head exactly as the client was sent it (kept by the proxy when a log
 * handler will run), also lower-cased. Route and service are copies of the
 * entities as configured; the consumer has its id, username and custom_id
 * (never its credentials). TLS fields are absent: the proxy listener speaks
 * plain HTTP. Kong's `workspace` (an id) has no counterpart in a DB-less
 * data plane and is left out; workspace_name is "default".
 *
 * Then the edits: Kong's default ones first (request.headers.authorization
 * and request.headers.proxy-authorization replaced by "REDACTED" when
 * present), then every sl_pdk_log_set_serialize_value in call order. A
 * dotted key walks (and, unless a value is removed, creates) nested
 * objects; a step through a non-object is skipped with an error line, where
 * Kong raises an error.
 *
 * Runs on the worker thread of the request, in its log phase; everything
 * built is a new jansson tree the caller owns. Strings that are not valid
 * UTF-8 (header values may carry any byte) get U+FFFD for each bad byte,
 * since a JSON text must be UTF-8.
 */
#include "log.h"
#include "pdk.h"
#include "proxy-t.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Kong reads at most this many query arguments and request headers
 * (kong.request.get_query and get_headers' default max_args). */
#define MAX_ARGS 100

static sl_req_t *R(sl_pdk_t *p)
{
    return (sl_req_t *)p;
}

/* ------------------------------------------------------------------------ */
/* JSON values                                                               */

/* A JSON string from bytes; invalid UTF-8 bytes become U+FFFD. */
static json_t *text(const char *s, size_t n)
{
    json_t *v = json_stringn(s ? s : "", s ? n : 0);
    if (v)
        return v;
    char *out = sl_xmalloc(n * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = sl_utf8_len((const unsigned char *)s + i, n - i);
        if (len) {
            memcpy(out + k, s + i, len);
            k += len;
            i += len;
        } else {
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    v = json_stringn(out, k);
    free(out);
    return v ? v : json_string("");
}

static json_t *cstr(const char *s)
{
    return text(s, s ? strlen(s) : 0);
}

/* Adds value under key; a key seen before turns into an array of values in
 * order (Kong's multi-value headers and query arguments). */
static void add_multi(json_t *obj, const char *key, json_t *value)
{
    json_t *old = json_object_get(obj, key);
    if (!old) {
        json_object_set_new(obj, key, value);
    } else if (json_is_array(old)) {
        json_array_append_new(old, value);
    } else {
        json_t *arr = json_array();
        json_array_append(arr, old);
        json_array_append_new(arr, value);
        json_object_set_new(obj, key, arr);
    }
}

/* A lower-cased, NUL-terminated copy of a field name in the request arena. */
static const char *lower_name(sl_pdk_t *p, sl_str_t name)
{
    char *s = sl_pdk_alloc(p, name.len + 1);
    for (size_t i = 0; i < name.len; i++)
        s[i] = sl_lower(name.p[i]);
    s[name.len] = '\0';
    return s;
}

/* ------------------------------------------------------------------------ */
/* The parts of the object                                                   */

static json_t *request_headers(sl_pdk_t *p)
{
    json_t *o = json_object();
    size_t n = SL_MIN(sl_pdk_request_header_count(p), (size_t)MAX_ARGS);
    for (size_t i = 0; i < n; i++) {
        sl_str_t name, value;
        if (!sl_pdk_request_header_at(p, i, &name, &value))
            continue;
        const char *k = lower_name(p, name);
        if (strlen(k) != name.len)
            continue; /* a NUL in a name: cannot be a JSON key */
        add_multi(o, k, text(value.p, value.len));
    }
    return o;
}

/* kong.request.get_query(): decoded names and values, an argument without
 * '=' true, a repeated name an array. */
static json_t *querystring(sl_pdk_t *p)
{
    json_t *o = json_object();
    sl_str_t q = sl_pdk_request_get_raw_query(p);
    const char *s = q.p, *end = q.p + q.len;
    size_t nargs = 0;
    while (s && s < end && nargs < MAX_ARGS) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        size_t klen = (size_t)((eq ? eq : stop) - s);
        if (klen) {
            nargs++;
            sl_str_t key = sl_pdk_unescape(p, s, klen);
            if (strlen(key.p) == key.len) {       /* a NUL in a name: not a JSON key */
                json_t *k = text(key.p, key.len); /* a valid UTF-8 form of the name */
                json_t *v = eq ? NULL : json_true();
                if (!v) {
                    sl_str_t val = sl_pdk_unescape(p, eq + 1, (size_t)(stop - eq - 1));
                    v = text(val.p, val.len);
                }
                add_multi(o, json_string_value(k), v);
                json_decref(k);
            }
        }
        s = stop + 1;
    }
    return o;
}

/* The request-target as nginx's $request_uri has it: from the path on (an
 * absolute-form target loses its scheme and authority). */
static sl_str_t request_uri(const sl_req_t *r)
{
    const sl_h1_request_t *h = &r->h;
    if (!h->absolute_form)
        return h->target;
    const char *t = h->target.p, *tend = t + h->target.len;
    if (h->path.p >= t && h->path.p <= tend)
        return (sl_str_t){h->path.p, (size_t)(tend - h->path.p)};
    return h->path;
}

/* The target of the request line sent upstream; empty when nothing was. */
static sl_str_t upstream_uri(const sl_req_t *r)
{
    if (!r->uphead || !r->uphead_len)
        return SL_STR("");
    const char *sp = memchr(r->uphead, ' ', r->uphead_len);
    if (!sp)
        return SL_STR("");
    const char *start = sp + 1, *end = r->uphead + r->uphead_len;
    const char *sp2 = memchr(start, ' ', (size_t)(end - start));
    return sp2 ? (sl_str_t){start, (size_t)(sp2 - start)} : SL_STR("");
}

/* The response head as sent: its fields, lower-cased names. */
static json_t *response_headers(sl_pdk_t *p, const sl_req_t *r)
{
    json_t *o = json_object();
    if (!r->sent_head)
        return o;
    const char *s = r->sent_head, *end = s + r->sent_head_len;
    const char *nl = memchr(s, '\n', (size_t)(end - s)); /* skip the status line */
    s = nl ? nl + 1 : end;
    while (s < end) {
        nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl ? nl : end;
        const char *lend = eol > s && eol[-1] == '\r' ? eol - 1 : eol;
        const char *colon = memchr(s, ':', (size_t)(lend - s));
        if (lend == s)
            break; /* the blank line ending the head */
        if (colon && colon > s) {
            const char *v = colon + 1;
            while (v < lend && (*v == ' ' || *v == '\t'))
                v++;
            const char *vend = lend;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            const char *k = lower_name(p, (sl_str_t){s, (size_t)(colon - s)});
            add_multi(o, k, text(v, (size_t)(vend - v)));
        }
        s = nl ? nl + 1 : end;
    }
    return o;
}

static int64_t ms(uint64_t from_us, uint64_t to_us)
{
    return to_us > from_us ? (int64_t)((to_us - from_us) / 1000) : 0;
}

/*
 * Kong's latencies: `proxy` is the wait for the upstream's response head
 * (-1 when nothing was proxied), `receive` the time reading the upstream's
 * body, `kong` the time before the request went upstream plus `receive`
 * (or, for a response the gateway produced, the time to produce it), and
 * `request` the whole request.
 */
static json_t *latencies(const sl_req_t *r, uint64_t now)
{
    int64_t kong, proxy = -1, receive = 0;
    if (r->t_head && r->t_sent) {
        proxy = ms(r->t_sent, r->t_head);
        receive = ms(r->t_head, now);
        kong = ms(r->t_start, r->t_sent) + receive;
    } else if (r->t_sent && r->tries) {
        kong = ms(r->t_start, r->t_sent);
    } else {
        kong = ms(r->t_start, now);
    }
    return json_pack("{s:I,s:I,s:I,s:I}", "kong", (json_int_t)kong, "proxy", (json_int_t)proxy,
                     "request", (json_int_t)ms(r->t_start, now), "receive", (json_int_t)receive);
}

/* One entry per upstream attempt. The address is known when the service
 * names an IP; Kong's balancer timings are not kept. */
static json_t *tries(const sl_req_t *r)
{
    json_t *a = json_array();
    for (int i = 0; i < r->tries; i++) {
        json_t *t = json_object();
        if (r->svc && r->svc->host_is_ip && !r->svc->upstream) {
            json_object_set_new(t, "ip", cstr(r->svc->host));
            json_object_set_new(t, "port", json_integer(r->svc->port));
        }
        json_array_append_new(a, t);
    }
    return a;
}

static json_t *consumer(const sl_consumer_t *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", cstr(c->id));
    json_object_set_new(o, "username", c->username ? cstr(c->username) : json_null());
    json_object_set_new(o, "custom_id", c->custom_id ? cstr(c->custom_id) : json_null());
    return o;
}

/* ------------------------------------------------------------------------ */
/* Edits (kong.log.set_serialize_value)                                      */

/*
 * Applies one edit: sets key (dotted) to value, or removes it when value is
 * NULL; with only_if_present (Kong's mode "replace") nothing happens unless
 * the key exists.
 */
static void edit(sl_pdk_t *p, json_t *root, const char *key, const char *value,
                 bool only_if_present)
{
    json_t *node = root;
    const char *s = key;
    for (;;) {
        const char *dot = strchr(s, '.');
        if (!dot)
            break;
        char *sub = sl_pdk_strndup(p, s, (size_t)(dot - s));
        json_t *next = json_object_get(node, sub);
        if (!next) {
            if (only_if_present)
                return;
            next = json_object();
            json_object_set_new(node, sub, next);
        }
        if (!json_is_object(next)) {
            sl_pdk_log(p, SL_LOG_ERROR,
                       "The key '%s' could not be used as a serialize value. Subkey '%s' is not "
                       "a table",
                       key, sub);
            return;
        }
        node = next;
        s = dot + 1;
    }
    if (only_if_present && !json_object_get(node, s))
        return;
    if (value)
        json_object_set_new(node, s, cstr(value));
    else
        json_object_del(node, s);
}

void sl_pdk_log_set_serialize_value(sl_pdk_t *p, const char *key, const char *value)
{
    sl_req_t *r = R(p);
    if (!key || !*key)
        return;
    struct sl_ctx_kv *kv = sl_pdk_alloc(p, sizeof(*kv));
    kv->key = sl_pdk_strndup(p, key, strlen(key));
    kv->value = value ? sl_pdk_strndup(p, value, strlen(value)) : NULL;
    kv->next = NULL;
    struct sl_ctx_kv **tail = &r->serialize_values;
    while (*tail)
        tail = &(*tail)->next;
    *tail = kv;
}

/* ------------------------------------------------------------------------ */
/* The object                                                                */

json_t *sl_pdk_log_serialize(sl_pdk_t *p)
{
    sl_req_t *r = R(p);
    uint64_t now = sl_now_us();

    sl_str_t uri = request_uri(r);
    sl_str_t host = sl_pdk_request_get_host(p);
    sl_str_t scheme = sl_pdk_request_get_scheme(p);
    char *url = sl_xasprintf("%.*s://%.*s:%d%.*s", (int)scheme.len, scheme.p, (int)host.len, host.p,
                             sl_pdk_request_get_port(p), (int)uri.len, uri.p);
    sl_str_t method = sl_pdk_request_get_method(p);

    json_t *request = json_object();
    json_object_set_new(request, "id", cstr(r->reqid));
    json_object_set_new(request, "uri", text(uri.p, uri.len));
    json_object_set_new(request, "url", cstr(url));
    json_object_set_new(request, "querystring", querystring(p));
    json_object_set_new(request, "method", text(method.p, method.len));
    json_object_set_new(request, "headers", request_headers(p));
    json_object_set_new(request, "size", json_integer((json_int_t)r->bytes_in));
    free(url);

    json_t *response = json_object();
    json_object_set_new(response, "status", json_integer(sl_pdk_response_get_status(p)));
    json_object_set_new(response, "headers", response_headers(p, r));
    json_object_set_new(response, "size",
                        json_integer((json_int_t)(r->sent_head_len + r->bytes_out)));

    const char *src = sl_pdk_response_get_source(p);
    bool from_service = !strcmp(src, "service");
    /* nginx's $upstream_status: what the upstream answered, or the 502/504
     * that stood for it when every attempt failed; empty when nothing went
     * upstream. */
    char upstatus[16] = "";
    if (from_service || r->tries)
        snprintf(upstatus, sizeof(upstatus), "%d", r->status);
    sl_str_t up = upstream_uri(r);

    json_t *root = json_object();
    json_object_set_new(root, "request", request);
    json_object_set_new(root, "upstream_uri", text(up.p, up.len));
    json_object_set_new(root, "upstream_status", json_string(upstatus));
    json_object_set_new(root, "response", response);
    json_object_set_new(root, "tries", tries(r));
    json_object_set_new(root, "latencies", latencies(r, now));
    if (r->credential) {
        json_t *ae = json_object();
        json_object_set_new(ae, "id", cstr(r->credential->id));
        if (r->credential->consumer)
            json_object_set_new(ae, "consumer_id", cstr(r->credential->consumer->id));
        json_object_set_new(root, "authenticated_entity", ae);
    }
    if (r->route && r->route->json)
        json_object_set_new(root, "route", json_deep_copy(r->route->json));
    if (r->svc && r->svc->json)
        json_object_set_new(root, "service", json_deep_copy(r->svc->json));
    if (r->consumer)
        json_object_set_new(root, "consumer", consumer(r->consumer));
    json_object_set_new(root, "client_ip", cstr(sl_pdk_client_get_forwarded_ip(p)));
    json_object_set_new(root, "started_at", json_integer((json_int_t)(r->wall_start_us / 1000)));
    json_object_set_new(root, "source", json_string(from_service ? "upstream" : "kong"));
    json_object_set_new(root, "workspace_name", json_string("default"));

    edit(p, root, "request.headers.authorization", "REDACTED", true);
    edit(p, root, "request.headers.proxy-authorization", "REDACTED", true);
    for (const struct sl_ctx_kv *kv = r->serialize_values; kv; kv = kv->next)
        edit(p, root, kv->key, kv->value, false);
    return root;
}
