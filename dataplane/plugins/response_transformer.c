/*
 * response_transformer.c is the response-transformer plugin (Kong 3.10's
 * kong/plugins/response-transformer), headers part: in header_filter it
 * changes the response headers the client gets, whoever produced the
 * response (the upstream, another plugin, the gateway).
 *
 * Operations run in Kong's order: remove, rename, replace, add, append. As
 * in Kong, rename, replace and add decide from the headers as they were
 * before the plugin started (Kong reads kong.response.get_headers() once):
 * a header removed by `remove` is still renamed or replaced if it was
 * there, and `add` does not add a header that `remove` took away.
 *
 * The json lists (remove/rename/replace/add/append.json) transform the
 * response body, which plugins cannot read yet: configure() refuses them
 * rather than ignore them. json_types only qualifies add/append/replace.json
 * and is accepted as long as it is well-formed.
 *
 * configure() runs on the thread that builds a generation; the conf is
 * read-only afterwards and shared by every worker thread; the handler's
 * working memory lives in the request arena.
 */
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

enum { OP_REMOVE, OP_RENAME, OP_REPLACE, OP_ADD, OP_APPEND, NOPS };
static const char *const op_names[NOPS] = {"remove", "rename", "replace", "add", "append"};

struct item {
    char *name;  /* owned */
    char *value; /* owned; NULL when the item has no value */
};

struct items {
    struct item *v; /* owned */
    size_t n;
};

struct resptx_conf {
    struct items headers[NOPS];
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void dispose(void *p)
{
    struct resptx_conf *c = p;
    if (!c)
        return;
    for (int op = 0; op < NOPS; op++) {
        for (size_t i = 0; i < c->headers[op].n; i++) {
            free(c->headers[op].v[i].name);
            free(c->headers[op].v[i].value);
        }
        free(c->headers[op].v);
    }
    free(c);
}

/* RFC 9110 5.6.2: a header name is a token. */
static bool token_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr("!#$%&'*+-.^_`|~", ch))))
            return false;
    }
    return true;
}

static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return true;
    return false;
}

/*
 * Reads config.<op>.headers: "name" or "name:value" items split at the
 * first colon (further colons are dropped, as Kong's pattern drops them).
 * A rename needs both names; an empty value counts as none.
 */
static bool read_headers(const json_t *group, int op, struct items *out, char *err, size_t errlen)
{
    const json_t *arr = group ? json_object_get(group, "headers") : NULL;
    if (!arr || json_is_null(arr))
        return true;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "config.%s.headers: expected an array", op_names[op]);
        return false;
    }
    size_t n = json_array_size(arr);
    if (n == 0)
        return true;
    out->v = sl_xcalloc(n, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        if (!json_is_string(e)) {
            snprintf(err, errlen, "config.%s.headers[%zu]: expected a string", op_names[op], i);
            return false;
        }
        const char *s = json_string_value(e);
        size_t len = json_string_length(e), k = 0;
        if (has_ctl(s, len)) {
            snprintf(err, errlen, "config.%s.headers[%zu]: must not contain CR, LF or NUL",
                     op_names[op], i);
            return false;
        }
        while (k < len && s[k] != ':')
            k++;
        size_t vstart = k;
        while (vstart < len && s[vstart] == ':')
            vstart++;
        if (!token_ok(s, k)) {
            snprintf(err, errlen, "config.%s.headers[%zu]: '%.*s' is not a valid header name",
                     op_names[op], i, (int)k, s);
            return false;
        }
        if (op == OP_RENAME && !token_ok(s + vstart, len - vstart)) {
            snprintf(err, errlen, "config.%s.headers[%zu]: '%s' needs a new header name after ':'",
                     op_names[op], i, s);
            return false;
        }
        struct item *it = &out->v[out->n++];
        it->name = sl_xstrndup(s, k);
        if (vstart < len && op != OP_REMOVE)
            it->value = sl_xstrndup(s + vstart, len - vstart);
    }
    return true;
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    if (!json_is_object(config)) {
        snprintf(err, errlen, "config: expected an object");
        return NULL;
    }
    struct resptx_conf *c = sl_xcalloc(1, sizeof *c);
    for (int op = 0; op < NOPS; op++) {
        const json_t *group = json_object_get(config, op_names[op]);
        if (group && json_is_null(group))
            group = NULL;
        if (group && !json_is_object(group)) {
            snprintf(err, errlen, "config.%s: expected a record", op_names[op]);
            goto fail;
        }
        const json_t *json = group ? json_object_get(group, "json") : NULL;
        if (json && !json_is_null(json) && (!json_is_array(json) || json_array_size(json) > 0)) {
            snprintf(err, errlen,
                     "config.%s.json: JSON body transformations are not supported yet (plugins "
                     "cannot read the response body); leave config.%s.json empty",
                     op_names[op], op_names[op]);
            goto fail;
        }
        const json_t *types = group ? json_object_get(group, "json_types") : NULL;
        if (types && !json_is_null(types)) {
            bool ok = json_is_array(types);
            for (size_t i = 0; ok && i < json_array_size(types); i++) {
                const char *t = json_string_value(json_array_get(types, i));
                ok = t && (!strcmp(t, "boolean") || !strcmp(t, "number") || !strcmp(t, "string"));
            }
            if (!ok) {
                snprintf(err, errlen,
                         "config.%s.json_types: expected an array of \"boolean\", \"number\" "
                         "or \"string\"",
                         op_names[op]);
                goto fail;
            }
        }
        if (!read_headers(group, op, &c->headers[op], err, errlen))
            goto fail;
    }
    return c;

fail:
    dispose(c);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* header_filter                                                             */

/* The first value of a response header as the client would get it now, in
 * the arena; NULL when absent. */
static const char *current(sl_pdk_t *p, const char *name)
{
    sl_str_t v;
    if (!sl_pdk_response_get_header(p, name, &v))
        return NULL;
    return sl_pdk_strndup(p, v.p, v.len);
}

static void on_header_filter(sl_pdk_t *p, void *conf)
{
    const struct resptx_conf *c = conf;
    const struct items *h = c->headers;

    /* What rename, replace and add decide from: the headers before any
     * change of ours. */
    size_t nsnap = h[OP_RENAME].n + h[OP_REPLACE].n + h[OP_ADD].n;
    const char **snap = nsnap ? sl_pdk_alloc(p, nsnap * sizeof *snap) : NULL;
    const char **ren = snap, **rep = snap + h[OP_RENAME].n, **add = rep + h[OP_REPLACE].n;
    /* A rename moves every value: remember them all, in order. */
    struct values {
        const char **v;
        size_t n;
    } *renv = h[OP_RENAME].n ? sl_pdk_alloc(p, h[OP_RENAME].n * sizeof *renv) : NULL;
    size_t nfields = h[OP_RENAME].n ? sl_pdk_response_header_count(p) : 0;
    for (size_t i = 0; i < h[OP_RENAME].n; i++) {
        ren[i] = current(p, h[OP_RENAME].v[i].name);
        renv[i].v = nfields ? sl_pdk_alloc(p, nfields * sizeof *renv[i].v) : NULL;
        renv[i].n = 0;
        for (size_t k = 0; k < nfields; k++) {
            sl_str_t fn, fv;
            if (sl_pdk_response_header_at(p, k, &fn, &fv) &&
                sl_strcaseeq(fn.p, fn.len, h[OP_RENAME].v[i].name,
                             strlen(h[OP_RENAME].v[i].name)))
                renv[i].v[renv[i].n++] = sl_pdk_strndup(p, fv.p, fv.len);
        }
    }
    for (size_t i = 0; i < h[OP_REPLACE].n; i++)
        rep[i] = current(p, h[OP_REPLACE].v[i].name);
    for (size_t i = 0; i < h[OP_ADD].n; i++)
        add[i] = current(p, h[OP_ADD].v[i].name);

    for (size_t i = 0; i < h[OP_REMOVE].n; i++)
        sl_pdk_response_clear_header(p, h[OP_REMOVE].v[i].name);
    for (size_t i = 0; i < h[OP_RENAME].n; i++) {
        const struct item *it = &h[OP_RENAME].v[i];
        if (ren[i] && it->value) {
            sl_pdk_response_clear_header(p, it->name);
            sl_pdk_response_set_header(p, it->value, renv[i].n ? renv[i].v[0] : ren[i]);
            for (size_t k = 1; k < renv[i].n; k++)
                sl_pdk_response_add_header(p, it->value, renv[i].v[k]);
        }
    }
    for (size_t i = 0; i < h[OP_REPLACE].n; i++) {
        const struct item *it = &h[OP_REPLACE].v[i];
        if (rep[i] && it->value)
            sl_pdk_response_set_header(p, it->name, it->value);
    }
    for (size_t i = 0; i < h[OP_ADD].n; i++) {
        const struct item *it = &h[OP_ADD].v[i];
        if (!add[i] && it->value)
            sl_pdk_response_set_header(p, it->name, it->value);
    }
    for (size_t i = 0; i < h[OP_APPEND].n; i++) {
        const struct item *it = &h[OP_APPEND].v[i];
        if (it->value)
            sl_pdk_response_add_header(p, it->name, it->value);
    }
}

const sl_native_plugin_t sl_plugin_response_transformer = {
    .name = "response-transformer",
    .configure = configure,
    .dispose = dispose,
    .header_filter = on_header_filter,
};
