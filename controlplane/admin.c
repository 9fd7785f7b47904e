/*
 * admin.c owns the Admin API's HTTP side: the evhttp listener on the main
 * thread's event base, the per-request plumbing (path splitting, query,
 * bounded body, the optional bearer token), Kong's response shapes, and the
 * node endpoints (GET /, /status, /plugins/enabled). Entity endpoints are
 * in admin_crud.c; schemas, tags and /config in admin_config.c.
 *
 * Every request is answered before its handler returns: the store is local
 * and synchronous, so nothing outlives the callback. Bodies are capped (1 MiB,
 * 64 MiB for /config) before they are parsed.
 */
#include "admin_int.h"
#include "entities.h"
#include "json_out.h"
#include "log.h"
#include "cluster.h"
#include "plugins.h"
#include "strbuf.h"
#include "util.h"
#include "uuid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* responses                                                                 */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 500:
        return "Internal Server Error";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

static void free_text_cb(const void *data, size_t len, void *arg)
{
    free((void *)data);
}

/* Sends the reply with the common headers; text (len bytes of JSON, NULL for
 * no body) is taken over and freed. */
static void reply_text(sl_areq_t *r, int status, char *text, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    char lat[32];
    if (r->answered) {
        free(text);
        return;
    }
    r->answered = true;
    snprintf(lat, sizeof(lat), "%llu", (unsigned long long)((sl_now_us() - r->start_us) / 1000));
    evhttp_add_header(h, "Server", "sluice/" SL_CP_VERSION);
    evhttp_add_header(h, "X-Kong-Admin-Latency", lat);
    evhttp_add_header(h, "Access-Control-Allow-Origin", "*");
    struct evbuffer *buf = evbuffer_new();
    if (text && status != 204) {
        evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
        if (r->method != EVHTTP_REQ_HEAD) {
            evbuffer_add_reference(buf, text, len, free_text_cb, NULL);
            text = NULL;
        }
    }
    free(text);
    evhttp_send_reply(r->req, status, reason(status), buf);
    evbuffer_free(buf);
}

void sl_admin_reply(sl_areq_t *r, int status, json_t *body)
{
    size_t len = 0;
    char *text = body && status != 204 && !r->answered ? sl_json_out_dup(body, &len) : NULL;
    json_decref(body);
    reply_text(r, status, text, len);
}

void sl_admin_reply_sb(sl_areq_t *r, int status, sl_sb_t *body)
{
    char *text;
    if (body->heap && body->p == body->heap) {
        text = body->heap; /* take the heap copy over */
        body->heap = NULL;
    } else {
        text = sl_xmalloc(body->len ? body->len : 1);
        memcpy(text, body->p, body->len);
    }
    reply_text(r, status, text, body->len);
}

void sl_admin_reply_msg(sl_areq_t *r, int status, const char *msg)
{
    sl_admin_reply(r, status, json_pack("{s:s}", "message", msg));
}

static const char *kerr_name(int code)
{
    switch (code) {
    case 1:
        return "invalid primary key";
    case 2:
        return "schema violation";
    case 3:
        return "primary key violation";
    case 4:
        return "foreign key violation";
    case 5:
        return "unique constraint violation";
    case 6:
        return "not found";
    case 7:
        return "invalid offset";
    case 8:
        return "database error";
    case 9:
        return "invalid size";
    case 11:
        return "invalid options";
    case 12:
        return "operation unsupported";
    case 13:
        return "foreign keys unresolved";
    case 14:
        return "invalid declarative configuration";
    case 15:
        return "transformation error";
    case 19:
        return "referenced by others";
    default:
        return "error";
    }
}

void sl_admin_reply_err(sl_areq_t *r, int status, int code, const char *message, json_t *fields)
{
    json_t *b =
        json_pack("{s:i,s:s,s:s}", "code", code, "name", kerr_name(code), "message", message);
    if (fields)
        json_object_set_new(b, "fields", fields);
    sl_admin_reply(r, status, b);
}

void sl_admin_reply_store_err(sl_areq_t *r, int rc)
{
    if (rc == SL_ERR_TOO_BIG) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "the configuration store is full (lmdb_map_size = %llu bytes); "
                 "raise lmdb_map_size and restart sluice-cp",
                 (unsigned long long)r->admin->map_size);
        SL_ERROR("admin: %s", msg);
        sl_admin_reply_msg(r, 507, msg);
        return;
    }
    SL_ERROR("admin: store error: %s", sl_strerror(rc));
    sl_admin_reply_msg(r, 500, "An unexpected error occurred");
}

/* ------------------------------------------------------------------------ */
/* Kong's message formats                                                    */

static bool lua_ident(const char *k)
{
    static const char *const kw[] = {"and",   "break", "do",       "else",  "elseif", "end",
                                     "false", "for",   "function", "goto",  "if",     "in",
                                     "local", "nil",   "not",      "or",    "repeat", "return",
                                     "then",  "true",  "until",    "while", NULL};
    if (!(*k == '_' || (*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z')))
        return false;
    for (const char *p = k; *p; p++)
        if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            return false;
    for (int i = 0; kw[i]; i++)
        if (!strcmp(kw[i], k))
            return false;
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void lua_quote(sl_sb_t *b, const char *s)
{
    sl_sb_addlit(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sl_sb_addlit(b, "\\");
        if (*p == '\n') {
            sl_sb_addlit(b, "\\n");
            continue;
        }
        sl_sb_add(b, p, 1);
    }
    sl_sb_addlit(b, "\"");
}

static void lua_pretty(sl_sb_t *b, const json_t *v)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = sl_xcalloc(n ? n : 1, sizeof(*keys));
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) keys[i++] = k;
        qsort(keys, n, sizeof(*keys), cmp_str);
        sl_sb_addlit(b, "{");
        for (i = 0; i < n; i++) {
            if (i)
                sl_sb_addlit(b, ",");
            if (lua_ident(keys[i])) {
                sl_sb_adds(b, keys[i]);
            } else {
                sl_sb_addlit(b, "[");
                lua_quote(b, keys[i]);
                sl_sb_addlit(b, "]");
            }
            sl_sb_addlit(b, "=");
            lua_pretty(b, json_object_get(v, keys[i]));
        }
        sl_sb_addlit(b, "}");
        free(keys);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        sl_sb_addlit(b, "{");
        json_array_foreach(v, i, x)
        {
            if (i)
                sl_sb_addlit(b, ",");
            lua_pretty(b, x);
        }
        sl_sb_addlit(b, "}");
        break;
    }
    case JSON_STRING:
        lua_quote(b, json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sl_sb_adds(b, num);
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.14g", json_real_value(v));
        sl_sb_adds(b, num);
        break;
    case JSON_TRUE:
        sl_sb_addlit(b, "true");
        break;
    case JSON_FALSE:
        sl_sb_addlit(b, "false");
        break;
    default:
        sl_sb_addlit(b, "null");
        break;
    }
}

char *sl_admin_lua_pretty(const json_t *v)
{
    char st[256];
    sl_sb_t b;
    sl_sb_init(&b, st, sizeof(st));
    lua_pretty(&b, v);
    char *out = sl_xstrndup(b.p, b.len);
    sl_sb_dispose(&b);
    return out;
}

/* One "key: message" entry of Kong's schema_violation message. Kong lists
 * the second level of nested errors as "field.sub: value", rendering deeper
 * tables with pretty.write; arrays count from 1 as in Lua. */
static void add_entry(sl_sb_t *b, size_t *count, const char *field, const char *sub,
                      const json_t *v)
{
    if (*count)
        sl_sb_addlit(b, "; ");
    (*count)++;
    sl_sb_adds(b, field);
    if (sub) {
        sl_sb_addlit(b, ".");
        sl_sb_adds(b, sub);
    }
    sl_sb_addlit(b, ": ");
    if (json_is_string(v)) {
        sl_sb_adds(b, json_string_value(v));
    } else {
        char *p = sl_admin_lua_pretty(v);
        sl_sb_adds(b, p);
        free(p);
    }
}

char *sl_admin_schema_message(const json_t *fields)
{
    char st[1024];
    sl_sb_t b;
    size_t count = 0;
    sl_sb_init(&b, st, sizeof(st));
    const json_t *ent = json_object_get(fields, "@entity");
    size_t i;
    json_t *x;
    /* "@entity" errors come first and bare */
    json_array_foreach(ent, i, x)
    {
        if (count)
            sl_sb_addlit(&b, "; ");
        count++;
        if (json_is_string(x))
            sl_sb_adds(&b, json_string_value(x));
    }
    size_t n = json_object_size(fields), k = 0;
    const char **keys = sl_xcalloc(n ? n : 1, sizeof(*keys));
    const char *key;
    json_object_foreach((json_t *)fields, key, x) keys[k++] = key;
    qsort(keys, n, sizeof(*keys), cmp_str);
    for (k = 0; k < n; k++) {
        if (!strcmp(keys[k], "@entity"))
            continue;
        const json_t *v = json_object_get(fields, keys[k]);
        if (json_is_object(v)) {
            size_t m = json_object_size(v), j = 0;
            const char **sk = sl_xcalloc(m ? m : 1, sizeof(*sk));
            const char *s2;
            json_t *y;
            json_object_foreach((json_t *)v, s2, y) sk[j++] = s2;
            qsort(sk, m, sizeof(*sk), cmp_str);
            for (j = 0; j < m; j++)
                add_entry(&b, &count, keys[k], sk[j], json_object_get(v, sk[j]));
            free(sk);
        } else if (json_is_array(v)) {
            json_array_foreach(v, i, x)
            {
                char idx[24];
                if (json_is_null(x))
                    continue;
                snprintf(idx, sizeof(idx), "%zu", i + 1);
                add_entry(&b, &count, keys[k], idx, x);
            }
        } else {
            add_entry(&b, &count, keys[k], NULL, v);
        }
    }
    free(keys);
    char *msg = NULL;
    if (count == 1) {
        if (asprintf(&msg, "schema violation (%.*s)", (int)b.len, b.p) < 0)
            msg = NULL;
    } else if (asprintf(&msg, "%zu schema violations (%.*s)", count, (int)b.len, b.p) < 0) {
        msg = NULL;
    }
    sl_sb_dispose(&b);
    return msg ? msg : sl_xstrdup("schema violation");
}

char *sl_admin_b64(const char *s, size_t len)
{
    char *out = sl_xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
    return out;
}

char *sl_admin_unb64(const char *s, size_t *len)
{
    size_t n = strlen(s);
    if (n == 0 || n % 4 != 0 || n > 4096)
        return NULL;
    unsigned char *out = sl_xmalloc(n + 1);
    int m = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (m < 0) {
        free(out);
        return NULL;
    }
    if (s[n - 1] == '=')
        m--;
    if (s[n - 2] == '=')
        m--;
    out[m] = '\0';
    *len = (size_t)m;
    return (char *)out;
}

const char *sl_admin_method_name(int method)
{
    switch (method) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "?";
    }
}

/* ------------------------------------------------------------------------ */
/* request plumbing                                                          */

int sl_admin_body(sl_areq_t *r, json_t **out, sl_body_kind_t *kind)
{
    char err[256];
    if (sl_admin_body_parse(r->ctype, r->body, r->body_len, out, kind, err, sizeof(err)) != SL_OK) {
        sl_admin_reply_msg(r, 400, err);
        return SL_ERR_INVALID;
    }
    if (*kind == SL_BODY_UNKNOWN) {
        json_decref(*out);
        sl_admin_reply_msg(r, 415, "Unsupported Media Type");
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

/* Splits the path into percent-decoded segments (a trailing slash and empty
 * segments are ignored). Returns false when there are too many. */
static bool split_path(sl_areq_t *r, const char *path)
{
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (r->nseg == SL_ADMIN_MAX_SEGS)
            return false;
        r->seg[r->nseg++] = sl_admin_url_decode(p, n, false);
        p += n;
    }
    return true;
}

static void parse_query(sl_areq_t *r, const char *q)
{
    r->query = json_object();
    if (!q)
        return;
    json_t *all = json_object();
    sl_admin_form_urlencoded(q, strlen(q), all);
    const char *k;
    json_t *v;
    json_object_foreach(all, k, v)
    {
        if (json_is_array(v))
            v = json_array_get(v, 0);
        if (json_is_string(v))
            json_object_set(r->query, k, v);
    }
    json_decref(all);
}

static bool authorized(sl_areq_t *r)
{
    const char *tok = r->admin->token;
    if (!tok)
        return true;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t hl = strlen(h), tl = strlen(tok);
    /* compare in constant time over the token's length; the length itself
     * is not secret enough to hide */
    if (hl != tl)
        return false;
    return CRYPTO_memcmp(h, tok, tl) == 0;
}

/* ------------------------------------------------------------------------ */
/* node endpoints                                                            */

static int cmp_json_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* The names of the plugins configured anywhere, sorted (Kong's
 * plugins.enabled_in_cluster). */
static json_t *plugins_in_use(sl_admin_t *a)
{
    json_t *seen = json_object(), *out = json_array();
    sl_txn_t *t;
    char after[37] = "";
    if (sl_store_begin(a->store, false, &t) == SL_OK) {
        for (;;) {
            json_t *arr = NULL;
            bool more = false;
            if (sl_txn_list(t, "plugins", NULL, NULL, after[0] ? after : NULL, 1000, &arr, &more) !=
                SL_OK)
                break;
            size_t i;
            json_t *x;
            json_array_foreach(arr, i, x)
            {
                const char *name = json_string_value(json_object_get(x, "name"));
                const char *id = json_string_value(json_object_get(x, "id"));
                if (name)
                    json_object_set_new(seen, name, json_true());
                if (id)
                    snprintf(after, sizeof(after), "%s", id);
            }
            json_decref(arr);
            if (!more)
                break;
        }
        sl_txn_abort(t);
    }
    const char *k;
    json_t *v;
    size_t n = json_object_size(seen), i = 0;
    json_t **names = sl_xcalloc(n ? n : 1, sizeof(*names));
    json_object_foreach(seen, k, v) names[i++] = json_string(k);
    qsort(names, n, sizeof(*names), cmp_json_str);
    for (i = 0; i < n; i++)
        json_array_append_new(out, names[i]);
    free(names);
    json_decref(seen);
    return out;
}

static int node_root(sl_areq_t *r)
{
    sl_admin_t *a = r->admin;
    if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD)
        return sl_admin_reply_msg(r, 405, "Method not allowed"), SL_DONE;
    json_t *avail = json_object();
    for (size_t i = 0; i < sl_plugins_count(); i++) {
        const sl_plugin_info_t *p = sl_plugins_at(i);
        json_object_set_new(avail, p->name,
                            json_pack("{s:i,s:s}", "priority", p->priority, "version", p->version));
    }
    json_t *b = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:i,s:i},s:{s:o,s:o},s:O,s:{s:i,s:[i]},s:s}",
                          "tagline", "Welcome to kong", "version", SL_CP_KONG_VERSION,
                          "sluice_version", SL_CP_VERSION, "edition", "community", "hostname",
                          a->hostname, "node_id", a->node_id, "timers", "running", 0, "pending", 0,
                          "plugins", "available_on_server", avail, "enabled_in_cluster",
                          plugins_in_use(a), "configuration", a->configuration, "pids", "master",
                          (int)getpid(), "workers", (int)getpid(), "lua_version", "none");
    sl_admin_reply(r, 200, b);
    return SL_DONE;
}

static int node_status(sl_areq_t *r)
{
    sl_admin_t *a = r->admin;
    if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD)
        return sl_admin_reply_msg(r, 405, "Method not allowed"), SL_DONE;
    sl_txn_t *t;
    bool reachable = sl_store_begin(a->store, false, &t) == SL_OK;
    uint64_t version = 0;
    if (reachable) {
        version = sl_txn_version(t);
        sl_txn_abort(t);
    }
    /* connections_accepted and connections_handled are exact (every
     * connection goes through on_*_connection_cb). connections_active stays
     * the one asking: libevent 2.1's evhttp gives no hook on a connection
     * that closes before its first request, so a live count would drift. */
    json_t *b = json_pack(
        "{s:{s:b},s:{s:I,s:I,s:I,s:i,s:i,s:i},s:{s:[],s:{}},s:I}", "database", "reachable",
        reachable, "server", "total_requests", (json_int_t)a->total_requests,
        "connections_accepted", (json_int_t)a->connections_accepted, "connections_handled",
        (json_int_t)a->connections_accepted, "connections_active", 1, "connections_reading", 0,
        "connections_writing", 1, "memory", "workers_lua_vms", "lua_shared_dicts",
        "configuration_version", (json_int_t)version);
    sl_admin_reply(r, 200, b);
    return SL_DONE;
}

static void dispatch(sl_areq_t *r)
{
    if (r->nseg == 0)
        return (void)node_root(r);
    if (!strcmp(r->seg[0], "status") && r->nseg == 1)
        return (void)node_status(r);
    if (!strcmp(r->seg[0], "plugins") && r->nseg == 2 && !strcmp(r->seg[1], "enabled")) {
        if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD)
            return sl_admin_reply_msg(r, 405, "Method not allowed");
        return sl_admin_reply(r, 200,
                              json_pack("{s:o}", "enabled_plugins", sl_plugins_enabled_names()));
    }
    if (!strcmp(r->seg[0], "plugins") && r->nseg == 3 && !strcmp(r->seg[1], "schema")) {
        char msg[300];
        snprintf(msg, sizeof(msg), "No plugin named '%.200s'", r->seg[2]);
        return sl_admin_reply_msg(r, 404, msg);
    }
    if (!strcmp(r->seg[0], "clustering") && r->nseg == 2 &&
        (!strcmp(r->seg[1], "data-planes") || !strcmp(r->seg[1], "status"))) {
        if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD)
            return sl_admin_reply_msg(r, 405, "Method not allowed");
        json_t *dps = sl_cluster_data_planes(r->admin->cluster);
        if (!strcmp(r->seg[1], "data-planes"))
            return sl_admin_reply(r, 200, json_pack("{s:o,s:n}", "data", dps, "next"));
        /* Kong's deprecated shape: an object keyed by data plane id. */
        json_t *o = json_object();
        size_t i;
        json_t *d;
        json_array_foreach(dps, i, d)
        {
            json_object_set_new(
                o, json_string_value(json_object_get(d, "id")),
                json_pack("{s:O,s:O,s:O,s:O}", "config_hash", json_object_get(d, "config_hash"),
                          "hostname", json_object_get(d, "hostname"), "ip",
                          json_object_get(d, "ip"), "last_seen", json_object_get(d, "last_seen")));
        }
        json_decref(dps);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Deprecation", "true");
        return sl_admin_reply(r, 200, o);
    }
    if (sl_admin_schemas(r) == SL_DONE || sl_admin_tags(r) == SL_DONE ||
        sl_admin_config(r) == SL_DONE || sl_admin_crud(r) == SL_DONE)
        return;
    sl_admin_reply_msg(r, 404, "Not found");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    sl_admin_t *a = arg;
    sl_areq_t r = {.admin = a, .req = req, .start_us = sl_now_us()};
    r.method = (int)evhttp_request_get_command(req);
    a->total_requests++;

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";
    bool ok = split_path(&r, path);
    parse_query(&r, uri ? evhttp_uri_get_query(uri) : NULL);
    r.ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");

    if (!authorized(&r)) {
        SL_INFO("admin: %s %s: 401 (missing or wrong admin token)", sl_admin_method_name(r.method),
                path);
        sl_admin_reply_msg(&r, 401, "Unauthorized");
        goto done;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    bool is_config = r.nseg == 1 && !strcmp(r.seg[0], "config");
    if (blen > (is_config ? SL_ADMIN_MAX_CONFIG_BODY : SL_ADMIN_MAX_BODY)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body too large (limit %u bytes)",
                 is_config ? SL_ADMIN_MAX_CONFIG_BODY : SL_ADMIN_MAX_BODY);
        sl_admin_reply_msg(&r, 413, msg);
        goto done;
    }
    r.body = sl_xmalloc(blen + 1);
    evbuffer_remove(in, r.body, blen);
    r.body[blen] = '\0';
    r.body_len = blen;
    if (!ok) {
        sl_admin_reply_msg(&r, 404, "Not found");
        goto done;
    }
    if (r.method == EVHTTP_REQ_OPTIONS) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Allow", "GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS");
        evhttp_add_header(h, "Access-Control-Allow-Methods",
                          "GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS");
        sl_admin_reply(&r, 204, NULL);
        goto done;
    }
    dispatch(&r);
done:
    if (!r.answered)
        sl_admin_reply_msg(&r, 500, "An unexpected error occurred");
    SL_DEBUG("admin: %s %s", sl_admin_method_name(r.method), path);
    for (size_t i = 0; i < r.nseg; i++)
        free(r.seg[i]);
    json_decref(r.query);
    free(r.body);
}

/* ------------------------------------------------------------------------ */
/* lifecycle                                                                 */

/* Reads <prefix>/node.id, creating it with a new UUID the first time. */
static void load_node_id(sl_admin_t *a)
{
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/node.id", a->prefix);
    if (sl_read_file(path, 64, &text, &len) == SL_OK && len >= 36) {
        char id[37];
        memcpy(id, text, 36);
        id[36] = '\0';
        if (sl_uuid_valid(id)) {
            memcpy(a->node_id, id, 37);
            free(text);
            return;
        }
    }
    free(text);
    sl_uuid_v4(a->node_id);
    char line[40];
    snprintf(line, sizeof(line), "%s\n", a->node_id);
    if (sl_write_file_atomic(path, line, strlen(line)) != SL_OK)
        SL_WARN("cannot write %s: %s", path, strerror(errno));
}

/* Whether a word is one of Kong's listen flags that mean nothing here. */
static bool ignored_flag(const char *w, size_t n)
{
    static const char *const flags[] = {"http2", "reuseport", "deferred", "bind", NULL};
    for (size_t i = 0; flags[i]; i++)
        if (strlen(flags[i]) == n && !memcmp(flags[i], w, n))
            return true;
    return n > 8 && !memcmp(w, "backlog=", 8);
}

/* Parses "host:port" or "[v6]:port" (n bytes) into l. */
static int parse_addr(const char *s, size_t n, sl_admin_listen_t *l)
{
    const char *colon, *end = s + n;
    size_t hl;
    if (n > 0 && *s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close + 1 >= end || close[1] != ':')
            return SL_ERR_INVALID;
        hl = (size_t)(close - s - 1);
        if (hl >= sizeof(l->host))
            return SL_ERR_INVALID;
        memcpy(l->host, s + 1, hl);
        colon = close + 1;
    } else {
        colon = memrchr(s, ':', n);
        if (!colon)
            return SL_ERR_INVALID;
        hl = (size_t)(colon - s);
        if (hl >= sizeof(l->host))
            return SL_ERR_INVALID;
        memcpy(l->host, s, hl);
    }
    l->host[hl] = '\0';
    uint64_t p;
    if (sl_parse_u64(colon + 1, (size_t)(end - colon - 1), 65535, &p) != SL_OK)
        return SL_ERR_INVALID;
    if (!strcmp(l->host, "*") || !*l->host)
        snprintf(l->host, sizeof(l->host), "0.0.0.0");
    l->port = (uint16_t)p;
    return SL_OK;
}

int sl_admin_parse_listen(const char *s, sl_admin_listen_t *out, size_t max, size_t *n, char *err,
                          size_t errlen)
{
    size_t count = 0;
    const char *p = s ? s : "";
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *q = p, *qe = p + len;
        while (q < qe && (*q == ' ' || *q == '\t'))
            q++;
        const char *w = q;
        while (w < qe && *w != ' ' && *w != '\t')
            w++;
        if (w == q) {
            snprintf(err, errlen, "admin_listen: empty entry in '%s' (use host:port[ ssl], ...)",
                     s ? s : "");
            return SL_ERR_INVALID;
        }
        if (count == max) {
            snprintf(err, errlen, "admin_listen: more than %zu addresses", max);
            return SL_ERR_INVALID;
        }
        sl_admin_listen_t l = {.ssl = false};
        if (parse_addr(q, (size_t)(w - q), &l) != SL_OK) {
            snprintf(err, errlen, "admin_listen: '%.*s' is not host:port", (int)(w - q), q);
            return SL_ERR_INVALID;
        }
        while (w < qe) {
            while (w < qe && (*w == ' ' || *w == '\t'))
                w++;
            const char *f = w;
            while (w < qe && *w != ' ' && *w != '\t')
                w++;
            if (w == f)
                break;
            if (w - f == 3 && !memcmp(f, "ssl", 3)) {
                l.ssl = true;
            } else if (!ignored_flag(f, (size_t)(w - f))) {
                snprintf(err, errlen,
                         "admin_listen: unknown flag '%.*s' (known: ssl, http2, reuseport, "
                         "deferred, bind, backlog=N)",
                         (int)(w - f), f);
                return SL_ERR_INVALID;
            }
        }
        out[count++] = l;
        if (!e)
            break;
        p = e + 1;
    }
    *n = count;
    return SL_OK;
}

/* The first OpenSSL error as text, or "unknown error". */
static void tls_error(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
}

int sl_admin_tls_context(const char *cert, const char *key, SSL_CTX **out, char *err, size_t errlen)
{
    char why[256];
    if (!cert || !*cert) {
        snprintf(err, errlen, "admin_ssl_cert: required by the ssl entry in admin_listen");
        return SL_ERR_INVALID;
    }
    if (!key || !*key) {
        snprintf(err, errlen, "admin_ssl_cert_key: required by the ssl entry in admin_listen");
        return SL_ERR_INVALID;
    }
    if (access(cert, R_OK) != 0) {
        snprintf(err, errlen, "admin_ssl_cert: cannot read '%s': %s", cert, strerror(errno));
        return SL_ERR_INVALID;
    }
    if (access(key, R_OK) != 0) {
        snprintf(err, errlen, "admin_ssl_cert_key: cannot read '%s': %s", key, strerror(errno));
        return SL_ERR_INVALID;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_error(why, sizeof(why));
        snprintf(err, errlen, "admin_ssl_cert: cannot create a TLS context: %s", why);
        return SL_ERR_INVALID;
    }
    /* TLS 1.2 and later only; no session tickets to rotate keys for. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_error(why, sizeof(why));
        snprintf(err, errlen, "admin_ssl_cert: '%s' is not a PEM certificate: %s", cert, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        tls_error(why, sizeof(why));
        snprintf(err, errlen, "admin_ssl_cert_key: '%s' is not a PEM private key: %s", key, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_error(why, sizeof(why));
        snprintf(err, errlen, "admin_ssl_cert_key: '%s' does not match admin_ssl_cert '%s': %s",
                 key, cert, why);
        goto fail;
    }
    *out = ctx;
    return SL_OK;

fail:
    SSL_CTX_free(ctx);
    return SL_ERR_INVALID;
}

/* evhttp's bufferevent factory for the TLS listeners: a server-side OpenSSL
 * bufferevent whose socket evhttp sets afterwards. Clients that close without
 * close_notify are common (curl, scripts); that is not an error here. */
static struct bufferevent *on_tls_connection_cb(struct event_base *base, void *arg)
{
    sl_admin_t *a = arg;
    a->connections_accepted++;
    SSL *ssl = SSL_new(a->ssl_ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* evhttp's bufferevent factory for the plain listeners: what evhttp would
 * make itself, counted. */
static struct bufferevent *on_plain_connection_cb(struct event_base *base, void *arg)
{
    sl_admin_t *a = arg;
    a->connections_accepted++;
    return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

/* A configured evhttp with no listener yet. */
static struct evhttp *new_http(sl_admin_t *a)
{
    struct evhttp *h = evhttp_new(a->base);
    if (!h)
        return NULL;
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                      EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                      EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    /* Entity bodies over 1 MiB get a JSON 413 from on_request; this hard cap
     * bounds what is buffered at all (/config may be up to 64 MiB). */
    evhttp_set_max_body_size(h, SL_ADMIN_MAX_CONFIG_BODY + 1);
    evhttp_set_max_headers_size(h, 64 * 1024);
    evhttp_set_timeout(h, 60);
    evhttp_set_gencb(h, on_request, a);
    return h;
}

int sl_admin_new(struct event_base *base, sl_store_t *store, const sl_admin_opts_t *opts,
                 sl_admin_t **out, char *err, size_t errlen)
{
    sl_admin_t *a = sl_xcalloc(1, sizeof(*a));
    a->base = base;
    a->store = store;
    a->token = opts->token && *opts->token ? sl_xstrdup(opts->token) : NULL;
    a->prefix = sl_xstrdup(opts->prefix);
    a->map_size = opts->map_size;
    a->configuration = opts->configuration ? json_incref(opts->configuration) : json_object();
    if (gethostname(a->hostname, sizeof(a->hostname) - 1) != 0)
        snprintf(a->hostname, sizeof(a->hostname), "localhost");
    load_node_id(a);

    for (size_t i = 0; i < opts->nlisten && i < SL_ADMIN_MAX_LISTEN; i++) {
        const sl_admin_listen_t *l = &opts->listen[i];
        struct evhttp **hp = l->ssl ? &a->https : &a->http;
        if (l->ssl && !opts->ssl_ctx) {
            snprintf(err, errlen, "admin_listen: %s:%u ssl needs admin_ssl_cert", l->host,
                     (unsigned)l->port);
            errno = EINVAL;
            goto fail;
        }
        if (!*hp) {
            if (!(*hp = new_http(a))) {
                snprintf(err, errlen, "admin_listen: cannot create the HTTP server");
                goto fail;
            }
            if (l->ssl) {
                SSL_CTX_up_ref(opts->ssl_ctx);
                a->ssl_ctx = opts->ssl_ctx;
                evhttp_set_bevcb(*hp, on_tls_connection_cb, a);
            } else {
                evhttp_set_bevcb(*hp, on_plain_connection_cb, a);
            }
        }
        struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(*hp, l->host, l->port);
        if (!bound) {
            int e = errno;
            snprintf(err, errlen, "admin_listen: cannot listen on %s:%u%s: %s", l->host,
                     (unsigned)l->port, l->ssl ? " ssl" : "", strerror(e));
            errno = e;
            goto fail;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        evutil_socket_t fd = evhttp_bound_socket_get_fd(bound);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            a->ports[i] = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                        : ((struct sockaddr_in6 *)&ss)->sin6_port);
        a->nlisten = i + 1;
    }
    *out = a;
    return SL_OK;

fail : {
    int e = errno;
    sl_admin_free(a);
    errno = e;
    return SL_ERR_IO;
}
}

uint16_t sl_admin_port(const sl_admin_t *a, size_t i)
{
    return i < a->nlisten ? a->ports[i] : 0;
}

void sl_admin_free(sl_admin_t *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    if (a->https)
        evhttp_free(a->https);
    SSL_CTX_free(a->ssl_ctx);
    json_decref(a->configuration);
    if (a->token)
        OPENSSL_cleanse(a->token, strlen(a->token));
    free(a->token);
    free(a->prefix);
    free(a);
}

void sl_admin_set_cluster(sl_admin_t *a, struct sl_cluster_s *cluster)
{
    a->cluster = cluster;
}

const char *sl_admin_node_id(const sl_admin_t *a)
{
    return a->node_id;
}
