/*
 * request_transformer.c is the request-transformer plugin (Kong 3.10's
 * kong/plugins/request-transformer): it changes the request before it goes
 * upstream, in Kong's order: the path (replace.uri), the method
 * (http_method), the headers, then the query string; within headers and the
 * query string the operations run remove, rename, replace, add, append.
 *
 * Items are "name:value" strings split as Kong splits them (the Lua pattern
 * "^([^:]+):*(.-)$": the name runs to the first colon, any run of colons
 * follows, the value is the rest). Two parts of Kong's plugin are not here
 * yet and their configs are refused by configure() rather than ignored:
 * body transformations (remove/rename/replace/add/append.body: plugins cannot
 * read the request body yet) and templates ("$(...)" in a value, which Kong
 * renders with Lua).
 *
 * Headers follow the table Kong builds from kong.request.get_headers(): Host
 * is left out of it, so remove, rename and add never see Host, while replace
 * always applies to it. The query string is decoded into arguments (at most
 * 100, as kong.request.get_query), transformed, and encoded again with the
 * arguments sorted as kong.service.request.set_query sorts them.
 *
 * configure() runs on the thread that builds a generation; the conf is
 * read-only afterwards and shared by every worker thread. The access
 * handler's working memory lives in the request arena.
 */
#include "log.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* kong.request.get_query's default bound (lua_max_uri_args). */
#define MAX_QUERY_ARGS 100

enum { OP_REMOVE, OP_RENAME, OP_REPLACE, OP_ADD, OP_APPEND, NOPS };
static const char *const op_names[NOPS] = {"remove", "rename", "replace", "add", "append"};

struct item {
    char *name; /* owned */
    size_t name_len;
    char *value; /* owned; NULL when the item has no value */
    size_t value_len;
};

struct items {
    struct item *v; /* owned */
    size_t n;
};

struct reqtx_conf {
    char *http_method; /* owned; NULL: keep the client's */
    bool method_known; /* one kong.service.request.set_method accepts */
    char *uri;         /* owned: replace.uri, escaped as set_path escapes; NULL: keep */
    bool uri_ok;       /* starts with '/', as set_path requires */
    struct items headers[NOPS], query[NOPS];
};

/* The methods kong.service.request.set_method accepts. */
static const char *const known_methods[] = {
    "GET",  "HEAD",     "PUT",       "POST", "DELETE", "OPTIONS", "MKCOL", "COPY",
    "MOVE", "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "PATCH",   "TRACE", NULL};

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void free_items(struct items *it)
{
    for (size_t i = 0; i < it->n; i++) {
        free(it->v[i].name);
        free(it->v[i].value);
    }
    free(it->v);
}

static void dispose(void *p)
{
    struct reqtx_conf *c = p;
    if (!c)
        return;
    for (int op = 0; op < NOPS; op++) {
        free_items(&c->headers[op]);
        free_items(&c->query[op]);
    }
    free(c->http_method);
    free(c->uri);
    free(c);
}

static bool is_header_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

static bool header_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_header_char(s[i]))
            return false;
    return true;
}

static bool has_template(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '$' && s[i + 1] == '(')
            return true;
    return false;
}

static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return true;
    return false;
}

/*
 * Reads config.<op>.<list> (an array of "name:value" strings) into out.
 * `headers` says which list it is: header names must be header names (and
 * a rename's target too); query items other than remove need a value. A
 * value with "$(" is a template, which is refused.
 */
static bool read_items(const json_t *group, int op, const char *list, bool headers,
                       struct items *out, char *err, size_t errlen)
{
    const json_t *arr = group ? json_object_get(group, list) : NULL;
    if (!arr || json_is_null(arr))
        return true;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "config.%s.%s: expected an array", op_names[op], list);
        return false;
    }
    size_t n = json_array_size(arr);
    if (n == 0)
        return true;
    out->v = sl_xcalloc(n, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        if (!json_is_string(e)) {
            snprintf(err, errlen, "config.%s.%s[%zu]: expected a string", op_names[op], list, i);
            return false;
        }
        const char *s = json_string_value(e);
        size_t len = json_string_length(e), k = 0;
        if (headers ? has_ctl(s, len) : memchr(s, '\0', len) != NULL) {
            snprintf(err, errlen, "config.%s.%s[%zu]: must not contain %s", op_names[op], list, i,
                     headers ? "CR, LF or NUL" : "NUL");
            return false;
        }
        while (k < len && s[k] != ':')
            k++;
        if (k == 0) {
            snprintf(err, errlen, "config.%s.%s[%zu]: '%s' has no name before ':'", op_names[op],
                     list, i, s);
            return false;
        }
        size_t vstart = k;
        while (vstart < len && s[vstart] == ':')
            vstart++;
        const char *value = s + vstart;
        size_t vlen = len - vstart;
        if (headers && !header_name_ok(s, k)) {
            snprintf(err, errlen, "config.%s.%s[%zu]: '%.*s' is not a valid header", op_names[op],
                     list, i, (int)k, s);
            return false;
        }
        if (op != OP_REMOVE) {
            if (op == OP_RENAME && headers && !header_name_ok(value, vlen)) {
                snprintf(err, errlen, "config.%s.%s[%zu]: '%.*s' is not a valid header",
                         op_names[op], list, i, (int)vlen, value);
                return false;
            }
            if ((!headers || op == OP_RENAME) && vlen == 0) {
                snprintf(err, errlen, "config.%s.%s[%zu]: key '%.*s' has no value", op_names[op],
                         list, i, (int)k, s);
                return false;
            }
            if (has_template(value, vlen)) {
                snprintf(err, errlen,
                         "config.%s.%s[%zu]: '%s': templates are not supported yet (a value "
                         "may not contain \"$(\")",
                         op_names[op], list, i, s);
                return false;
            }
        }
        struct item *it = &out->v[out->n++];
        it->name = sl_xstrndup(s, k);
        it->name_len = k;
        if (vlen > 0 && op != OP_REMOVE) {
            it->value = sl_xstrndup(value, vlen);
            it->value_len = vlen;
        }
    }
    return true;
}

/* kong.tools.uri.escape: everything but the reserved and unreserved
 * characters (and '%') becomes %XX. */
static char *escape_path(const char *s, size_t n)
{
    static const char keep[] = "!#$&'()*+,/:;=?@[]-_.~%";
    char *out = sl_xmalloc(n * 3 + 1), *w = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            (ch && strchr(keep, ch))) {
            *w++ = (char)ch;
        } else {
            w += sprintf(w, "%%%02X", ch);
        }
    }
    *w = '\0';
    return out;
}

static bool read_method(const json_t *config, struct reqtx_conf *c, char *err, size_t errlen)
{
    const json_t *m = json_object_get(config, "http_method");
    if (!m || json_is_null(m))
        return true;
    const char *s = json_is_string(m) ? json_string_value(m) : NULL;
    size_t n = s ? json_string_length(m) : 0;
    bool ok = s && n > 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = s[i] >= 'A' && s[i] <= 'Z';
    if (!ok) {
        snprintf(err, errlen, "config.http_method: expected an upper-case method name");
        return false;
    }
    c->http_method = sl_xstrdup(s);
    for (size_t i = 0; known_methods[i]; i++)
        if (!strcmp(known_methods[i], s))
            c->method_known = true;
    return true;
}

static bool read_uri(const json_t *replace, struct reqtx_conf *c, char *err, size_t errlen)
{
    const json_t *u = replace ? json_object_get(replace, "uri") : NULL;
    if (!u || json_is_null(u))
        return true;
    if (!json_is_string(u)) {
        snprintf(err, errlen, "config.replace.uri: expected a string");
        return false;
    }
    const char *s = json_string_value(u);
    size_t n = json_string_length(u);
    if (has_ctl(s, n)) {
        snprintf(err, errlen, "config.replace.uri: must not contain CR, LF or NUL");
        return false;
    }
    if (has_template(s, n)) {
        snprintf(err, errlen,
                 "config.replace.uri: '%s': templates are not supported yet (the uri may not "
                 "contain \"$(\")",
                 s);
        return false;
    }
    if (n == 0)
        return true; /* Kong renders "" to nothing and leaves the path alone */
    c->uri = escape_path(s, n);
    c->uri_ok = s[0] == '/';
    return true;
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    if (!json_is_object(config)) {
        snprintf(err, errlen, "config: expected an object");
        return NULL;
    }
    struct reqtx_conf *c = sl_xcalloc(1, sizeof *c);
    if (!read_method(config, c, err, errlen))
        goto fail;
    for (int op = 0; op < NOPS; op++) {
        const json_t *group = json_object_get(config, op_names[op]);
        if (group && json_is_null(group))
            group = NULL;
        if (group && !json_is_object(group)) {
            snprintf(err, errlen, "config.%s: expected a record", op_names[op]);
            goto fail;
        }
        const json_t *body = group ? json_object_get(group, "body") : NULL;
        if (body && !json_is_null(body) && (!json_is_array(body) || json_array_size(body) > 0)) {
            snprintf(err, errlen,
                     "config.%s.body: body transformations are not supported yet (plugins "
                     "cannot read the request body); leave config.%s.body empty",
                     op_names[op], op_names[op]);
            goto fail;
        }
        if (!read_items(group, op, "headers", true, &c->headers[op], err, errlen) ||
            !read_items(group, op, "querystring", false, &c->query[op], err, errlen))
            goto fail;
        if (op == OP_REPLACE && !read_uri(group, c, err, errlen))
            goto fail;
    }
    return c;

fail:
    dispose(c);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Headers                                                                   */

static bool is_host(const char *name)
{
    return !strcasecmp(name, "host");
}

/* Every value of a request header, in order, in the arena; *n their count. */
static sl_str_t *header_values(sl_pdk_t *p, const char *name, size_t *n)
{
    size_t count = sl_pdk_request_header_count(p), len = strlen(name), k = 0;
    sl_str_t hn, hv, *out = NULL;
    for (size_t i = 0; i < count; i++)
        if (sl_pdk_request_header_at(p, i, &hn, &hv) && sl_strcaseeq(hn.p, hn.len, name, len))
            k++;
    if (k > 0) {
        out = sl_pdk_alloc(p, k * sizeof *out);
        k = 0;
        for (size_t i = 0; i < count; i++)
            if (sl_pdk_request_header_at(p, i, &hn, &hv) && sl_strcaseeq(hn.p, hn.len, name, len))
                out[k++] = (sl_str_t){sl_pdk_strndup(p, hv.p, hv.len), hv.len};
    }
    *n = k;
    return out;
}

/* Present in Kong's headers table: Host never is. */
static bool has_header(sl_pdk_t *p, const char *name)
{
    sl_str_t v;
    return !is_host(name) && sl_pdk_request_get_header(p, name, &v);
}

static void rename_header(sl_pdk_t *p, const struct item *it)
{
    if (is_host(it->name) || !strcmp(it->name, it->value))
        return;
    size_t n;
    sl_str_t *vals = header_values(p, it->name, &n);
    if (n == 0)
        return;
    sl_pdk_service_request_clear_header(p, it->name);
    if (is_host(it->value)) {
        sl_pdk_service_request_set_header(p, "host", vals[0].p);
        return;
    }
    sl_pdk_service_request_clear_header(p, it->value);
    for (size_t i = 0; i < n; i++)
        sl_pdk_service_request_add_header(p, it->value, vals[i].p);
}

static void transform_headers(sl_pdk_t *p, const struct reqtx_conf *c)
{
    const struct items *h = c->headers;
    for (size_t i = 0; i < h[OP_REMOVE].n; i++)
        if (has_header(p, h[OP_REMOVE].v[i].name))
            sl_pdk_service_request_clear_header(p, h[OP_REMOVE].v[i].name);
    for (size_t i = 0; i < h[OP_RENAME].n; i++)
        rename_header(p, &h[OP_RENAME].v[i]);
    for (size_t i = 0; i < h[OP_REPLACE].n; i++) {
        const struct item *it = &h[OP_REPLACE].v[i];
        if (it->value && (is_host(it->name) || has_header(p, it->name)))
            sl_pdk_service_request_set_header(p, it->name, it->value);
    }
    for (size_t i = 0; i < h[OP_ADD].n; i++) {
        const struct item *it = &h[OP_ADD].v[i];
        if (it->value && !is_host(it->name) && !has_header(p, it->name))
            sl_pdk_service_request_set_header(p, it->name, it->value);
    }
    for (size_t i = 0; i < h[OP_APPEND].n; i++) {
        const struct item *it = &h[OP_APPEND].v[i];
        if (!it->value)
            continue;
        if (is_host(it->name))
            sl_pdk_service_request_set_header(p, "host", it->value);
        else
            sl_pdk_service_request_add_header(p, it->name, it->value);
    }
}

/* ------------------------------------------------------------------------ */
/* Query string                                                              */

/* One value of an argument: flag is an argument without '=' (Lua's true). */
struct qval {
    const char *p;
    size_t len;
    bool flag;
};

/* One argument name with its values in order (a Lua string, true or array). */
struct qarg {
    const char *name;
    size_t name_len;
    struct qval *vals;
    size_t nvals, cap;
};

struct query {
    struct qarg *args;
    size_t n, cap;
};

/* ngx_http_lua_unescape_uri for a URI component: '+' is a space, %XX a
 * byte; after a '%', a character that is not a hex digit is kept if it
 * comes first and dropped if it comes second, as nginx's state machine
 * does. Writes into out (at least n bytes); returns the length. */
static size_t unescape(const char *s, size_t n, char *out)
{
    enum { USUAL, QUOTED, QUOTED_SECOND } state = USUAL;
    size_t k = 0;
    int hi = 0;
    for (size_t i = 0; i < n; i++) {
        int d = sl_hex_value(s[i]);
        switch (state) {
        case USUAL:
            if (s[i] == '%')
                state = QUOTED;
            else
                out[k++] = s[i] == '+' ? ' ' : s[i];
            break;
        case QUOTED:
            if (d >= 0) {
                hi = d;
                state = QUOTED_SECOND;
            } else {
                out[k++] = s[i];
                state = USUAL;
            }
            break;
        case QUOTED_SECOND:
            if (d >= 0)
                out[k++] = (char)(hi << 4 | d);
            state = USUAL;
            break;
        }
    }
    return k;
}

static struct qarg *find_arg(struct query *q, const char *name, size_t len)
{
    for (size_t i = 0; i < q->n; i++)
        if (q->args[i].name_len == len && !memcmp(q->args[i].name, name, len))
            return &q->args[i];
    return NULL;
}

static void push_val(sl_pdk_t *p, struct qarg *a, struct qval v)
{
    if (a->nvals == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 2;
        struct qval *vals = sl_pdk_alloc(p, cap * sizeof *vals);
        if (a->nvals)
            memcpy(vals, a->vals, a->nvals * sizeof *vals);
        a->vals = vals;
        a->cap = cap;
    }
    a->vals[a->nvals++] = v;
}

static struct qarg *new_arg(sl_pdk_t *p, struct query *q, const char *name, size_t len)
{
    SL_ASSERT(q->n < q->cap);
    struct qarg *a = &q->args[q->n++];
    *a = (struct qarg){.name = name, .name_len = len};
    return a;
}

static void drop_arg(struct query *q, struct qarg *a)
{
    size_t i = (size_t)(a - q->args);
    memmove(&q->args[i], &q->args[i + 1], (q->n - i - 1) * sizeof *a);
    q->n--;
}

/* kong.request.get_query: the first MAX_QUERY_ARGS arguments, decoded;
 * arguments with an empty name are skipped, as ngx.req.get_uri_args does. */
static void parse_query(sl_pdk_t *p, sl_str_t raw, struct query *q)
{
    const char *s = raw.p, *end = raw.p + raw.len;
    size_t seen = 0;
    while (s < end && seen < MAX_QUERY_ARGS) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        const char *kend = eq ? eq : stop;
        if (stop > s) {
            seen++;
            char *key = sl_pdk_alloc(p, (size_t)(kend - s) + 1);
            size_t klen = unescape(s, (size_t)(kend - s), key);
            if (klen > 0) {
                struct qval v = {"", 0, true};
                if (eq) {
                    char *val = sl_pdk_alloc(p, (size_t)(stop - eq));
                    v = (struct qval){val, unescape(eq + 1, (size_t)(stop - eq - 1), val), false};
                }
                struct qarg *a = find_arg(q, key, klen);
                push_val(p, a ? a : new_arg(p, q, key, klen), v);
            }
        }
        s = stop + 1;
    }
}

/* ngx.escape_uri (a URI component): all but A-Z a-z 0-9 - . _ ~ as %XX. */
static size_t escape_component(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[k++] = (char)ch;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            out[k++] = '%';
            out[k++] = hex[ch >> 4];
            out[k++] = hex[ch & 15];
        }
    }
    return k;
}

static int cmp_strs(const void *a, const void *b)
{
    const sl_str_t *x = a, *y = b;
    int c = memcmp(x->p, y->p, SL_MIN(x->len, y->len));
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* kong.service.request.set_query: each argument encoded as ngx.encode_args
 * encodes it ("k=v&k=v2", "k" for true), the pieces sorted, joined by '&'. */
static char *encode_query(sl_pdk_t *p, const struct query *q)
{
    sl_str_t *pieces = sl_pdk_alloc(p, (q->n ? q->n : 1) * sizeof *pieces);
    size_t total = 1;
    for (size_t i = 0; i < q->n; i++) {
        const struct qarg *a = &q->args[i];
        size_t max = 0;
        for (size_t j = 0; j < a->nvals; j++)
            max += 3 * (a->name_len + a->vals[j].len) + 2;
        char *buf = sl_pdk_alloc(p, max + 1);
        size_t len = 0;
        for (size_t j = 0; j < a->nvals; j++) {
            if (j > 0)
                buf[len++] = '&';
            len += escape_component(a->name, a->name_len, buf + len);
            if (!a->vals[j].flag) {
                buf[len++] = '=';
                len += escape_component(a->vals[j].p, a->vals[j].len, buf + len);
            }
        }
        pieces[i] = (sl_str_t){buf, len};
        total += len + 1;
    }
    qsort(pieces, q->n, sizeof *pieces, cmp_strs);
    char *out = sl_pdk_alloc(p, total), *w = out;
    for (size_t i = 0; i < q->n; i++) {
        if (i > 0)
            *w++ = '&';
        memcpy(w, pieces[i].p, pieces[i].len);
        w += pieces[i].len;
    }
    *w = '\0';
    return out;
}

static void transform_query(sl_pdk_t *p, const struct reqtx_conf *c)
{
    const struct items *qs = c->query;
    size_t extra = 0;
    for (int op = 0; op < NOPS; op++)
        extra += qs[op].n;
    if (extra == 0)
        return;

    struct query q = {.cap = MAX_QUERY_ARGS + extra};
    q.args = sl_pdk_alloc(p, q.cap * sizeof *q.args);
    parse_query(p, sl_pdk_request_get_raw_query(p), &q);

    for (size_t i = 0; i < qs[OP_REMOVE].n; i++) {
        const struct item *it = &qs[OP_REMOVE].v[i];
        struct qarg *a = find_arg(&q, it->name, it->name_len);
        if (a)
            drop_arg(&q, a);
    }
    for (size_t i = 0; i < qs[OP_RENAME].n; i++) {
        const struct item *it = &qs[OP_RENAME].v[i];
        if (it->name_len == it->value_len && !memcmp(it->name, it->value, it->name_len))
            continue;
        if (!find_arg(&q, it->name, it->name_len))
            continue;
        struct qarg *target = find_arg(&q, it->value, it->value_len);
        if (target)
            drop_arg(&q, target);
        struct qarg *a = find_arg(&q, it->name, it->name_len);
        a->name = it->value;
        a->name_len = it->value_len;
    }
    for (size_t i = 0; i < qs[OP_REPLACE].n; i++) {
        const struct item *it = &qs[OP_REPLACE].v[i];
        struct qarg *a = find_arg(&q, it->name, it->name_len);
        if (a) {
            a->nvals = 0;
            push_val(p, a, (struct qval){it->value, it->value_len, false});
        }
    }
    for (size_t i = 0; i < qs[OP_ADD].n; i++) {
        const struct item *it = &qs[OP_ADD].v[i];
        if (!find_arg(&q, it->name, it->name_len))
            push_val(p, new_arg(p, &q, it->name, it->name_len),
                     (struct qval){it->value, it->value_len, false});
    }
    for (size_t i = 0; i < qs[OP_APPEND].n; i++) {
        const struct item *it = &qs[OP_APPEND].v[i];
        struct qarg *a = find_arg(&q, it->name, it->name_len);
        if (!a)
            a = new_arg(p, &q, it->name, it->name_len);
        else if (a->nvals == 1 && a->vals[0].flag)
            a->nvals = 0; /* Kong's append_value turns `true` into {value} */
        push_val(p, a, (struct qval){it->value, it->value_len, false});
    }
    sl_pdk_service_request_set_raw_query(p, encode_query(p, &q));
}

/* ------------------------------------------------------------------------ */
/* Access                                                                    */

/* What Kong answers when a plugin's handler raises an error. */
static int fail(sl_pdk_t *p, const char *why)
{
    sl_pdk_log(p, SL_LOG_ERROR, "%s", why);
    return sl_pdk_response_exit_message(p, 500, "An unexpected error occurred");
}

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct reqtx_conf *c = conf;
    if (c->uri) {
        if (!c->uri_ok)
            return fail(p, "replace.uri: path must start with /");
        sl_pdk_service_request_set_path(p, c->uri);
    }
    if (c->http_method) {
        if (!c->method_known)
            return fail(p, "http_method: invalid method");
        sl_pdk_service_request_set_method(p, c->http_method);
    }
    transform_headers(p, c);
    transform_query(p, c);
    return SL_PLUGIN_CONTINUE;
}

const sl_native_plugin_t sl_plugin_request_transformer = {
    .name = "request-transformer",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
};
