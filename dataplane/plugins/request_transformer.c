/*
 * request_transformer.c is the request-transformer plugin (Kong 3.10's
 * kong/plugins/request-transformer): it changes the request before it goes
 * upstream, in Kong's order: the path (replace.uri), the method
 * (http_method), the headers, the body, then the query string; within each
 * the operations run remove, rename, replace, add, append.
 *
 * Items are "name:value" strings split as Kong splits them (the Lua pattern
 * "^([^:]+):*(.-)$": the name runs to the first colon, any run of colons
 * follows, the value is the rest). Templates ("$(...)" in a value, which
 * Kong renders with Lua) are not here: configure() refuses them rather than
 * send them literally.
 *
 * Body operations apply to the body kinds Kong's transform_body knows, by
 * the Content-Type (after the header operations): one containing
 * application/json, else multipart/form-data, else
 * application/x-www-form-urlencoded; other bodies pass untouched. A
 * transformed body goes upstream with its new Content-Length.
 *   - JSON: values are set as strings; append turns a string into an
 *     array and appends to an array. A body that does not parse passes as
 *     it is; a top-level array has no names and is only written out again
 *     (compact), as Kong does. Empty body: add and append start from {}.
 *   - Form: the first 100 fields, as ngx.decode_args reads them, written
 *     back in their order (Kong's order is the Lua table's, unspecified).
 *   - Multipart (lua-multipart): rename runs before remove, replace moves the
 *     field to the end, append does nothing (as in Kong); parts keep their
 *     headers. A multipart Content-Type without a boundary leaves the body
 *     alone (Kong would write parts on a boundary nobody knows).
 * remove, rename and replace need a non-empty body; add and append do not.
 * Where Kong raises a Lua error (a JSON body that is a bare string or
 * number, a repeated form field moved into the query) this one does the
 * evident thing instead.
 *
 * When http_method is GET, HEAD or TRACE and the body is form-encoded, its
 * fields are also appended to the query string (Kong's transform_method);
 * the body itself still goes upstream.
 *
 * Instances with body operations or such a method make the proxy read the
 * body before the access phase (wants_body), up to client_body_buffer_size.
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
#include "body_args.h"
#include "log.h"
#include "pdk.h"
#include "conf_read.h"
#include "plugin.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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
    struct items headers[NOPS], query[NOPS], body[NOPS];
    bool has_body_ops;  /* some body list is not empty */
    bool form_to_query; /* http_method GET, HEAD or TRACE */
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
        free_items(&c->body[op]);
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
    const json_t *arr;
    size_t n;
    char path[48];
    snprintf(path, sizeof(path), "%s.%s", op_names[op], list);
    if (!sl_cf_strings(group, path, &arr, &n, err, errlen))
        return false;
    if (n == 0)
        return true;
    out->v = sl_xcalloc(n, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
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
        if (!read_items(group, op, "headers", true, &c->headers[op], err, errlen) ||
            !read_items(group, op, "querystring", false, &c->query[op], err, errlen) ||
            !read_items(group, op, "body", false, &c->body[op], err, errlen))
            goto fail;
        c->has_body_ops |= c->body[op].n > 0;
        if (op == OP_REPLACE && !read_uri(group, c, err, errlen))
            goto fail;
    }
    c->form_to_query =
        c->http_method && (!strcmp(c->http_method, "GET") || !strcmp(c->http_method, "HEAD") ||
                           !strcmp(c->http_method, "TRACE"));
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

static bool item_renames_to_itself(const struct item *it)
{
    return it->name_len == it->value_len && !memcmp(it->name, it->value, it->name_len);
}

static sl_arg_val_t item_value(const struct item *it)
{
    return (sl_arg_val_t){it->value, it->value_len, false};
}

/* Lua's rename(tbl, old, new) on an argument table: the value moves, any
 * argument of the new name is replaced. True when something moved. */
static bool rename_arg(sl_args_t *a, const struct item *it)
{
    if (item_renames_to_itself(it) || !sl_args_find(a, it->name, it->name_len))
        return false;
    sl_arg_t *target = sl_args_find(a, it->value, it->value_len);
    if (target)
        sl_args_remove(a, target);
    sl_arg_t *arg = sl_args_find(a, it->name, it->name_len);
    arg->name = it->value;
    arg->name_len = it->value_len;
    return true;
}

/* Kong's append_value on an argument: a string becomes {old, value}, an
 * array grows, true (a flag) or nothing becomes {value}. */
static void append_arg(sl_pdk_t *p, sl_args_t *a, const struct item *it)
{
    sl_arg_t *arg = sl_args_find(a, it->name, it->name_len);
    if (!arg)
        arg = sl_args_add(p, a, it->name, it->name_len);
    else if (arg->nvals == 1 && arg->vals[0].flag)
        arg->nvals = 0;
    sl_arg_push(p, arg, item_value(it));
}

static void transform_query(sl_pdk_t *p, const struct reqtx_conf *c)
{
    const struct items *qs = c->query;
    size_t nops = 0;
    for (int op = 0; op < NOPS; op++)
        nops += qs[op].n;
    if (nops == 0)
        return;

    sl_args_t q;
    sl_args_decode(p, sl_pdk_request_get_raw_query(p), &q);
    for (size_t i = 0; i < qs[OP_REMOVE].n; i++) {
        sl_arg_t *a = sl_args_find(&q, qs[OP_REMOVE].v[i].name, qs[OP_REMOVE].v[i].name_len);
        if (a)
            sl_args_remove(&q, a);
    }
    for (size_t i = 0; i < qs[OP_RENAME].n; i++)
        rename_arg(&q, &qs[OP_RENAME].v[i]);
    for (size_t i = 0; i < qs[OP_REPLACE].n; i++) {
        const struct item *it = &qs[OP_REPLACE].v[i];
        sl_arg_t *a = sl_args_find(&q, it->name, it->name_len);
        if (a) {
            a->nvals = 0;
            sl_arg_push(p, a, item_value(it));
        }
    }
    for (size_t i = 0; i < qs[OP_ADD].n; i++) {
        const struct item *it = &qs[OP_ADD].v[i];
        if (!sl_args_find(&q, it->name, it->name_len))
            sl_arg_push(p, sl_args_add(p, &q, it->name, it->name_len), item_value(it));
    }
    for (size_t i = 0; i < qs[OP_APPEND].n; i++)
        append_arg(p, &q, &qs[OP_APPEND].v[i]);
    /* kong.service.request.set_query: sorted */
    sl_pdk_service_request_set_raw_query(p, sl_args_encode(p, &q, true, NULL));
}

/* ------------------------------------------------------------------------ */
/* Method                                                                    */

/*
 * Kong's transform_method after set_method to GET, HEAD or TRACE: the
 * fields of a form body are added to the query string (after any argument
 * of the same name), which is written back sorted.
 */
static void move_form_to_query(sl_pdk_t *p)
{
    sl_str_t ct, raw;
    if (!sl_pdk_request_get_header(p, "content-type", &ct) ||
        sl_body_type_loose(ct) != SL_BODY_FORM || !sl_pdk_request_get_raw_body(p, &raw))
        return;
    sl_args_t form, q;
    sl_args_decode(p, raw, &form);
    if (form.n == 0)
        return;
    sl_args_decode(p, sl_pdk_request_get_raw_query(p), &q);
    for (size_t i = 0; i < form.n; i++) {
        const sl_arg_t *f = &form.v[i];
        sl_arg_t *a = sl_args_find(&q, f->name, f->name_len);
        if (!a)
            a = sl_args_add(p, &q, f->name, f->name_len);
        for (size_t j = 0; j < f->nvals; j++)
            sl_arg_push(p, a, f->vals[j]);
    }
    sl_pdk_service_request_set_raw_query(p, sl_args_encode(p, &q, true, NULL));
}

/* ------------------------------------------------------------------------ */
/* Body                                                                      */

/* Lua truth: nil and false are false, everything else (JSON null too,
 * which cjson reads as a light userdata) is true. */
static bool truthy(const json_t *v)
{
    return v && !json_is_false(v);
}

/* Sets a string member; false when jansson refuses it (never for names and
 * values that came from a JSON config). */
static bool set_string(json_t *obj, const struct item *it, const char *name)
{
    json_t *v = json_stringn(it->value, it->value_len);
    return v && json_object_set_new(obj, name, v) == 0;
}

/* Kong's append_value on a JSON member. */
static void append_json(json_t *obj, const struct item *it)
{
    json_t *old = json_object_get(obj, it->name);
    json_t *v = json_stringn(it->value, it->value_len);
    if (!v)
        return;
    if (json_is_string(old)) {
        json_t *arr = json_array();
        json_array_append(arr, old);
        json_array_append_new(arr, v);
        json_object_set_new(obj, it->name, arr);
    } else if (json_is_array(old)) {
        json_array_append_new(old, v);
    } else if (json_is_object(old) && json_object_size(old) > 0) {
        /* table.insert on a Lua table with only string keys sets [1],
         * which cjson writes as the member "1". */
        json_object_set_new(old, "1", v);
    } else {
        /* Anything else (nothing, a number, a boolean, null, {}) becomes
         * {value}. */
        json_t *arr = json_array();
        json_array_append_new(arr, v);
        json_object_set_new(obj, it->name, arr);
    }
}

/*
 * Kong's transform_json_body. Returns true with the new body in *out when
 * an operation applied; false leaves the body alone (it did not parse, or
 * nothing was configured that applies).
 */
static bool transform_json(sl_pdk_t *p, const struct reqtx_conf *c, sl_str_t raw, char **out,
                           size_t *outlen)
{
    const struct items *b = c->body;
    bool has_content = raw.len > 0, changed = false;
    json_t *j = has_content ? sl_body_json_decode(raw) : json_object();
    if (!j)
        return false;
    json_t *obj = json_is_object(j) ? j : NULL; /* an array has no names */
    if (has_content) {
        for (size_t i = 0; i < b[OP_REMOVE].n; i++) {
            if (obj)
                json_object_del(obj, b[OP_REMOVE].v[i].name);
            changed = true;
        }
        for (size_t i = 0; obj && i < b[OP_RENAME].n; i++) {
            const struct item *it = &b[OP_RENAME].v[i];
            json_t *v = json_object_get(obj, it->name);
            if (item_renames_to_itself(it) || !truthy(v))
                continue;
            json_incref(v);
            json_object_del(obj, it->name);
            if (json_object_set_new(obj, it->value, v) == 0)
                changed = true;
        }
        for (size_t i = 0; obj && i < b[OP_REPLACE].n; i++) {
            const struct item *it = &b[OP_REPLACE].v[i];
            if (truthy(json_object_get(obj, it->name)) && set_string(obj, it, it->name))
                changed = true;
        }
    }
    for (size_t i = 0; i < b[OP_ADD].n; i++) {
        const struct item *it = &b[OP_ADD].v[i];
        if (obj && truthy(json_object_get(obj, it->name)))
            continue;
        if (obj)
            set_string(obj, it, it->name);
        changed = true; /* Kong sets the field of an array too, which cjson drops */
    }
    for (size_t i = 0; i < b[OP_APPEND].n; i++) {
        if (obj)
            append_json(obj, &b[OP_APPEND].v[i]);
        changed = true;
    }
    if (changed)
        *out = sl_body_json_encode(p, j, outlen);
    json_decref(j);
    return changed && *out;
}

/* Kong's transform_url_encoded_body. */
static bool transform_form(sl_pdk_t *p, const struct reqtx_conf *c, sl_str_t raw, char **out,
                           size_t *outlen)
{
    const struct items *b = c->body;
    bool has_content = raw.len > 0, changed = false;
    sl_args_t form;
    sl_args_decode(p, raw, &form);
    if (has_content) {
        for (size_t i = 0; i < b[OP_REMOVE].n; i++) {
            sl_arg_t *a = sl_args_find(&form, b[OP_REMOVE].v[i].name, b[OP_REMOVE].v[i].name_len);
            if (a)
                sl_args_remove(&form, a);
            changed = true;
        }
        for (size_t i = 0; i < b[OP_RENAME].n; i++)
            changed |= rename_arg(&form, &b[OP_RENAME].v[i]);
        for (size_t i = 0; i < b[OP_REPLACE].n; i++) {
            const struct item *it = &b[OP_REPLACE].v[i];
            sl_arg_t *a = sl_args_find(&form, it->name, it->name_len);
            if (a) {
                a->nvals = 0;
                sl_arg_push(p, a, item_value(it));
                changed = true;
            }
        }
    }
    for (size_t i = 0; i < b[OP_ADD].n; i++) {
        const struct item *it = &b[OP_ADD].v[i];
        if (!sl_args_find(&form, it->name, it->name_len)) {
            sl_arg_push(p, sl_args_add(p, &form, it->name, it->name_len), item_value(it));
            changed = true;
        }
    }
    for (size_t i = 0; i < b[OP_APPEND].n; i++) {
        append_arg(p, &form, &b[OP_APPEND].v[i]);
        changed = true;
    }
    if (changed)
        *out = sl_args_encode(p, &form, false, outlen);
    return changed;
}

/* Kong's transform_multipart_body (lua-multipart). */
static bool transform_multipart(sl_pdk_t *p, const struct reqtx_conf *c, sl_str_t raw, sl_str_t ct,
                                char **out, size_t *outlen)
{
    const struct items *b = c->body;
    sl_str_t boundary;
    if (!sl_multipart_boundary(ct, &boundary))
        return false;
    bool has_content = raw.len > 0, changed = false;
    sl_multipart_t mp;
    sl_multipart_decode(p, raw, boundary, &mp);
    if (has_content) {
        for (size_t i = 0; i < b[OP_RENAME].n; i++) {
            const struct item *it = &b[OP_RENAME].v[i];
            sl_part_t *part = sl_multipart_get(&mp, it->name, it->name_len);
            if (!part || item_renames_to_itself(it))
                continue;
            sl_str_t v = part->value;
            sl_multipart_set_simple(p, &mp, it->value, it->value_len, v.p, v.len);
            sl_multipart_delete(&mp, it->name, it->name_len);
            changed = true;
        }
        for (size_t i = 0; i < b[OP_REMOVE].n; i++) {
            sl_multipart_delete(&mp, b[OP_REMOVE].v[i].name, b[OP_REMOVE].v[i].name_len);
            changed = true;
        }
        for (size_t i = 0; i < b[OP_REPLACE].n; i++) {
            const struct item *it = &b[OP_REPLACE].v[i];
            if (!sl_multipart_get(&mp, it->name, it->name_len))
                continue;
            sl_multipart_delete(&mp, it->name, it->name_len);
            sl_multipart_set_simple(p, &mp, it->name, it->name_len, it->value, it->value_len);
            changed = true;
        }
    }
    for (size_t i = 0; i < b[OP_ADD].n; i++) {
        const struct item *it = &b[OP_ADD].v[i];
        if (sl_multipart_get(&mp, it->name, it->name_len))
            continue;
        sl_multipart_set_simple(p, &mp, it->name, it->name_len, it->value, it->value_len);
        changed = true;
    }
    if (changed)
        *out = sl_multipart_encode(p, &mp, outlen);
    return changed;
}

static void transform_body(sl_pdk_t *p, const struct reqtx_conf *c)
{
    sl_str_t ct, raw;
    if (!c->has_body_ops || !sl_pdk_request_get_header(p, "content-type", &ct))
        return;
    sl_body_type_t type = sl_body_type_loose(ct);
    if (type == SL_BODY_OTHER)
        return;
    if (!sl_pdk_request_get_raw_body(p, &raw)) {
        sl_pdk_log(p, SL_LOG_WARN, "the request body was not read");
        raw = SL_STR("");
    }
    char *body = NULL;
    size_t len = 0;
    bool done = false;
    switch (type) {
    case SL_BODY_JSON:
        done = transform_json(p, c, raw, &body, &len);
        break;
    case SL_BODY_FORM:
        done = transform_form(p, c, raw, &body, &len);
        break;
    case SL_BODY_MULTIPART:
        done = transform_multipart(p, c, raw, ct, &body, &len);
        break;
    case SL_BODY_OTHER:
        break;
    }
    if (done)
        sl_pdk_service_request_set_raw_body(p, body, len);
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
        if (c->form_to_query)
            move_form_to_query(p);
    }
    transform_headers(p, c);
    transform_body(p, c);
    transform_query(p, c);
    return SL_PLUGIN_CONTINUE;
}

/* The body is read before access only when an operation may need it. */
static bool wants_body(const void *conf)
{
    const struct reqtx_conf *c = conf;
    return c->has_body_ops || c->form_to_query;
}

const sl_native_plugin_t sl_plugin_request_transformer = {
    .name = "request-transformer",
    .configure = configure,
    .dispose = dispose,
    .wants_body = wants_body,
    .access = on_access,
};
