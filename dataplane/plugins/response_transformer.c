/*
 * response_transformer.c is the response-transformer plugin (Kong 3.10's
 * kong/plugins/response-transformer): header_filter changes the response
 * headers the client gets, whoever produced the response (the upstream,
 * another plugin, the gateway); body_filter rewrites the top-level keys of
 * a JSON response body.
 *
 * Operations run in Kong's order: remove, rename, replace, add, append. As
 * in Kong, header rename, replace and add decide from the headers as they
 * were before the plugin started (Kong reads kong.response.get_headers()
 * once): a header removed by `remove` is still renamed or replaced if it
 * was there, and `add` does not add a header that `remove` took away.
 *
 * The json lists work as Kong's body_transformer.lua does on the body
 * decoded by lua-cjson: only top-level keys (a dot is part of a key name;
 * nested paths are the Enterprise plugin's), only when the Content-Type is
 * application/json by Kong's is_json_body, and a body that does not parse
 * as JSON goes out unchanged. Kong's Lua quirks are kept because configs
 * written against Kong rely on them:
 *   - a value goes through json_value(): cjson-encoded, unquoted, with \" and
 *     \/ turned back, so quotes stay (p:"v" writes the string "v" with its
 *     quotes), backslashes double and control characters become escape
 *     text; an empty value is the text "null";
 *   - json_types casts that text: number as Lua's tonumber (a value that is
 *     not a number writes nothing; inf and nan make the whole transform
 *     fail, as cjson refuses to encode them), boolean is true only for
 *     "true", string (or no type) keeps the text;
 *   - replace needs a key whose value is neither absent nor false (JSON null
 *     counts as there), add writes where the key is absent or false, rename
 *     moves any value (onto itself it removes the key), append turns a
 *     string into [string, v], pushes onto an array, and makes [v] of
 *     anything else (an empty object too; a non-empty object gets v under
 *     the key "1", as a Lua table would).
 * The body is encoded again as cjson encodes: compact, '/' escaped as "\/",
 * control characters and DEL as \u00xx, UTF-8 as is, numbers as %.14g (cjson
 * decodes every number into a double), keys in their original order with
 * new ones last (cjson's order is its hash order, which nothing can rely
 * on). A top-level array goes through encoded again; a top-level scalar is
 * left alone (Kong's Lua fails on it).
 *
 * Kong's body_filter runs after header_filter and reads the Content-Type as
 * header_filter left it; here body_filter runs first (the proxy holds the
 * upstream response whole, then runs body_filter, then header_filter), so
 * it works out what this plugin's header operations will make of the
 * Content-Type. Kong's header_filter also clears Content-Length when a body
 * transformation is set: here the proxy writes the final body's length, so
 * only responses without a body (HEAD, 204, 304, 1xx), whose upstream length
 * described a body that was never transformed, lose it.
 *
 * The body is only transformed on the routes where the proxy holds upstream
 * responses for this plugin (wants_response_body: a json list is set);
 * responses that plugins or the gateway produce keep their bodies.
 *
 * configure() runs on the thread that builds a generation; the conf is
 * read-only afterwards and shared by every worker thread. The handlers'
 * working memory lives in the request arena, except the decoded body and
 * its new encoding, which are freed before body_filter returns.
 */
#include "log.h"
#include "h1_parser.h"
#include "pdk.h"
#include "conf_read.h"
#include "plugin.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OP_REMOVE, OP_RENAME, OP_REPLACE, OP_ADD, OP_APPEND, NOPS };
static const char *const op_names[NOPS] = {"remove", "rename", "replace", "add", "append"};

/* lua-cjson's limits: nesting deeper than this neither decodes nor encodes,
 * and numbers are written with this many significant digits. */
#define CJSON_MAX_DEPTH 1000
#define CJSON_PRECISION 14

struct item {
    char *name;  /* owned */
    char *value; /* owned; NULL when the item has no value */
};

struct items {
    struct item *v; /* owned */
    size_t n;
};

/* What Kong's json_value() makes of the text after a json item's colon,
 * cast by the item's json_types entry. */
enum jkind {
    J_NONE,       /* writes nothing (Lua's nil: tonumber failed) */
    J_STRING,     /* text */
    J_NUMBER,     /* num */
    J_BOOLEAN,    /* yes */
    J_NOT_FINITE, /* inf or nan: the body cannot be encoded once it holds it */
};

struct jitem {
    char *name; /* owned; NULL when Kong's pattern does not match (no-op) */
    size_t name_len;
    char *text; /* owned: rename's new name (NULL: none), or J_STRING's value */
    size_t text_len;
    enum jkind kind;
    double num;
    bool yes;
};

struct jitems {
    struct jitem *v; /* owned */
    size_t n;
};

struct resptx_conf {
    struct items headers[NOPS];
    struct jitems json[NOPS];
    bool body; /* some json list is not empty: Kong's is_body_transform_set */
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
        for (size_t i = 0; i < c->json[op].n; i++) {
            free(c->json[op].v[i].name);
            free(c->json[op].v[i].text);
        }
        free(c->json[op].v);
    }
    free(c);
}

static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return true;
    return false;
}

/* A copy of n bytes that may include NULs, NUL-terminated. */
static char *copy_bytes(const char *s, size_t n)
{
    char *d = sl_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/*
 * Reads config.<op>.headers: "name" or "name:value" items split at the
 * first colon (further colons are dropped, as Kong's pattern drops them).
 * A rename needs both names; an empty value counts as none.
 */
static bool read_headers(const json_t *group, int op, struct items *out, char *err, size_t errlen)
{
    const json_t *arr;
    size_t n;
    char path[32];
    snprintf(path, sizeof(path), "%s.headers", op_names[op]);
    if (!sl_cf_strings(group, path, &arr, &n, err, errlen))
        return false;
    if (n == 0)
        return true;
    out->v = sl_xcalloc(n, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
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
        if (!sl_h1_is_token(s, k)) {
            snprintf(err, errlen, "config.%s.headers[%zu]: '%.*s' is not a valid header name",
                     op_names[op], i, (int)k, s);
            return false;
        }
        if (op == OP_RENAME && !sl_h1_is_token(s + vstart, len - vstart)) {
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

/*
 * The text Kong's json_value() leaves of a config value before casting it:
 * cjson.encode(value) without its outer quotes, then \" and \/ turned back
 * into " and /. What remains escaped is a backslash (doubled), the control
 * characters and DEL (as cjson writes them). Returns a new string; *len
 * receives its length.
 */
static char *kong_json_text(const char *s, size_t n, size_t *len)
{
    char *d = sl_xmalloc(n * 6 + 1), *o = d;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\b':
            *o++ = '\\';
            *o++ = 'b';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\f':
            *o++ = '\\';
            *o++ = 'f';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        default:
            if (ch < 0x20 || ch == 0x7f)
                o += sprintf(o, "\\u%04x", ch);
            else
                *o++ = (char)ch;
        }
    }
    *o = '\0';
    *len = (size_t)(o - d);
    return d;
}

/* Lua's isspace, which tonumber skips around a number. */
static bool lua_space(char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

/*
 * LuaJIT's tonumber() of a string: decimal or 0x hexadecimal (with a
 * fraction and exponent), a sign, "inf", "infinity" and "nan" in any case,
 * surrounded by any whitespace. False when it is not a number.
 */
static bool lua_tonumber(const char *s, size_t n, double *out)
{
    while (n && lua_space(*s))
        s++, n--;
    while (n && lua_space(s[n - 1]))
        n--;
    if (n == 0 || memchr(s, '(', n) || memchr(s, '\0', n))
        return false; /* strtod would also take C99's "nan(chars)" */
    char *buf = copy_bytes(s, n), *end;
    double d = strtod(buf, &end);
    bool ok = end == buf + n;
    free(buf);
    if (ok)
        *out = d;
    return ok;
}

/* Fills a replace/add/append item's value from the text after its colon
 * (len 0: none) and its json_types entry (NULL: none). */
static void read_json_value(struct jitem *it, const char *s, size_t len, const char *type)
{
    size_t vlen = 4;
    char *v = len ? kong_json_text(s, len, &vlen) : copy_bytes("null", 4);
    double d;
    if (type && !strcmp(type, "number")) {
        if (!lua_tonumber(v, vlen, &d)) {
            it->kind = J_NONE;
        } else if (!isfinite(d)) {
            it->kind = J_NOT_FINITE;
        } else {
            it->kind = J_NUMBER;
            it->num = d;
        }
        free(v);
    } else if (type && !strcmp(type, "boolean")) {
        it->kind = J_BOOLEAN;
        it->yes = vlen == 4 && !memcmp(v, "true", 4);
        free(v);
    } else {
        it->kind = J_STRING;
        it->text = v;
        it->text_len = vlen;
    }
}

/*
 * Reads config.<op>.json. Items split as Kong's "^([^:]+):*(.-)$": the key
 * runs to the first colon, any run of colons follows, the value is the
 * rest. An item the pattern does not match (empty, or starting with a
 * colon: only remove.json takes such strings) does nothing, as in Kong.
 * `types` is the group's json_types (NULL for remove and rename).
 */
static bool read_json(const json_t *group, int op, const json_t *types, struct jitems *out,
                      char *err, size_t errlen)
{
    const json_t *arr;
    size_t n;
    char path[32];
    snprintf(path, sizeof(path), "%s.json", op_names[op]);
    if (!sl_cf_strings(group, path, &arr, &n, err, errlen))
        return false;
    if (n == 0)
        return true;
    out->v = sl_xcalloc(n, sizeof *out->v);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        const char *s = json_string_value(e);
        size_t len = json_string_length(e), k = 0;
        struct jitem *it = &out->v[out->n++];
        while (k < len && s[k] != ':')
            k++;
        if (k == 0)
            continue;
        size_t v = k;
        while (v < len && s[v] == ':')
            v++;
        it->name = copy_bytes(s, k);
        it->name_len = k;
        if (op == OP_RENAME && v < len) {
            it->text = copy_bytes(s + v, len - v);
            it->text_len = len - v;
        } else if (op != OP_REMOVE && op != OP_RENAME) {
            read_json_value(it, s + v, len - v, json_string_value(json_array_get(types, i)));
        }
    }
    return true;
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    (void)instance_id;
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
        const json_t *types = group ? json_object_get(group, "json_types") : NULL;
        if (types && json_is_null(types))
            types = NULL;
        if (types) {
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
        if (!read_json(group, op, op == OP_REMOVE || op == OP_RENAME ? NULL : types, &c->json[op],
                       err, errlen))
            goto fail;
        if (c->json[op].n)
            c->body = true;
        if (!read_headers(group, op, &c->headers[op], err, errlen))
            goto fail;
    }
    return c;

fail:
    dispose(c);
    return NULL;
}

static bool wants_response_body(const void *conf)
{
    const struct resptx_conf *c = conf;
    return c->body;
}

/* ------------------------------------------------------------------------ */
/* Content types                                                             */

/* RFC 2045 5.1's token characters (US-ASCII without CTLs, space or
 * tspecials), which Kong's kong.tools.mime_type parser takes. */
static bool mime_token_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

static size_t mime_token(const char *s, size_t i, size_t n)
{
    size_t start = i;
    while (i < n && mime_token_char((unsigned char)s[i]))
        i++;
    return i - start;
}

/*
 * Whether one media type (already trimmed) parses as Kong's mime_type
 * grammar does (type "/" subtype, then any `;attribute=value` parameters
 * with optional spaces or tabs before and after each ';', nothing after)
 * and is application/json, compared without case.
 */
static bool is_application_json(const char *s, size_t n)
{
    size_t t = mime_token(s, 0, n);
    if (t == 0 || t >= n || s[t] != '/')
        return false;
    size_t st = mime_token(s, t + 1, n);
    if (st == 0 || !sl_strcaseeq(s, t, "application", 11) ||
        !sl_strcaseeq(s + t + 1, st, "json", 4))
        return false;
    size_t i = t + 1 + st;
    for (;;) {
        size_t j = i;
        while (j < n && (s[j] == ' ' || s[j] == '\t'))
            j++;
        if (j == n)
            return j == i; /* trailing blanks would need a parameter after them */
        if (s[j] != ';')
            return false;
        j++;
        while (j < n && (s[j] == ' ' || s[j] == '\t'))
            j++;
        size_t a = mime_token(s, j, n);
        if (a == 0 || j + a >= n || s[j + a] != '=')
            return false;
        j += a + 1;
        if (j < n && s[j] == '"') {
            /* quoted-string: a backslash is an ordinary character to the
             * parser (its qdtext alternative comes first) */
            j++;
            while (j < n && s[j] != '"' && (unsigned char)s[j] >= 0x20 && s[j] != 0x7f)
                j++;
            if (j >= n || s[j] != '"')
                return false;
            j++;
        } else {
            size_t v = mime_token(s, j, n);
            if (v == 0)
                return false;
            j += v;
        }
        i = j;
    }
}

/*
 * Kong's is_json_body: the Content-Type split at commas, each part trimmed
 * of whitespace; true when one of them is application/json.
 */
static bool is_json_body(const char *ct, size_t n)
{
    size_t i = 0;
    while (i <= n) {
        size_t end = i;
        while (end < n && ct[end] != ',')
            end++;
        size_t a = i, b = end;
        while (a < b && lua_space(ct[a]))
            a++;
        while (b > a && lua_space(ct[b - 1]))
            b--;
        if (is_application_json(ct + a, b - a))
            return true;
        i = end + 1;
    }
    return false;
}

static bool is_content_type(const char *name)
{
    return sl_strcaseeq(name, strlen(name), "content-type", 12);
}

/*
 * The first Content-Type value the client will get once header_filter
 * has run this plugin's header operations on the current headers (what
 * Kong's body_filter, running after header_filter, reads). False when there
 * will be none.
 */
static bool final_content_type(sl_pdk_t *p, const struct resptx_conf *c, sl_str_t *out)
{
    const struct items *h = c->headers;
    sl_str_t orig = {NULL, 0};
    bool had = sl_pdk_response_get_header(p, "Content-Type", &orig);
    sl_str_t cur = orig;
    bool has = had;
    for (size_t i = 0; i < h[OP_REMOVE].n; i++)
        if (is_content_type(h[OP_REMOVE].v[i].name))
            has = false;
    for (size_t i = 0; i < h[OP_RENAME].n; i++) {
        const struct item *it = &h[OP_RENAME].v[i];
        sl_str_t from;
        if (!it->value || !sl_pdk_response_get_header(p, it->name, &from))
            continue;
        if (is_content_type(it->value)) {
            cur = from;
            has = true;
        }
        if (is_content_type(it->name))
            has = false;
    }
    for (size_t i = 0; i < h[OP_REPLACE].n; i++) {
        const struct item *it = &h[OP_REPLACE].v[i];
        if (had && it->value && is_content_type(it->name)) {
            cur = (sl_str_t){it->value, strlen(it->value)};
            has = true;
        }
    }
    for (size_t i = 0; i < h[OP_ADD].n; i++) {
        const struct item *it = &h[OP_ADD].v[i];
        if (!had && it->value && is_content_type(it->name)) {
            cur = (sl_str_t){it->value, strlen(it->value)};
            has = true;
        }
    }
    for (size_t i = 0; i < h[OP_APPEND].n; i++) {
        const struct item *it = &h[OP_APPEND].v[i];
        if (!has && it->value && is_content_type(it->name)) {
            cur = (sl_str_t){it->value, strlen(it->value)};
            has = true;
        }
    }
    *out = cur;
    return has;
}

/* ------------------------------------------------------------------------ */
/* The JSON body                                                             */

/* A value of the body being transformed (a new reference), or NULL for an
 * item that writes nothing. `inf` stands for a number cjson cannot encode. */
static json_t *new_value(const struct jitem *it, json_t *inf)
{
    switch (it->kind) {
    case J_STRING:
        return json_stringn_nocheck(it->text, it->text_len);
    case J_NUMBER:
        return json_real(it->num);
    case J_BOOLEAN:
        return json_boolean(it->yes);
    case J_NOT_FINITE:
        return json_incref(inf);
    case J_NONE:
        break;
    }
    return NULL;
}

/* Lua's truth of body[key]: absent and false are false; JSON null (cjson's
 * lightuserdata) is true. */
static bool truthy(const json_t *v)
{
    return v && !json_is_false(v);
}

/* Kong's append_value(current, v) stored back under key; takes v. */
static void append_value(json_t *obj, const struct jitem *it, json_t *v, const json_t *inf)
{
    json_t *cur = json_object_getn(obj, it->name, it->name_len);
    if (cur && cur != inf && json_is_array(cur)) {
        json_array_append_new(cur, v);
        return;
    }
    if (cur && cur != inf && json_is_object(cur) && json_object_size(cur) > 0) {
        /* table.insert on a table with only string keys: the key 1, then
         * 2, ..., which cjson writes as the strings "1", "2" */
        char key[24];
        for (unsigned long k = 1;; k++) {
            snprintf(key, sizeof key, "%lu", k);
            if (!json_object_get(cur, key))
                break;
        }
        json_object_set_new_nocheck(cur, key, v);
        return;
    }
    json_t *arr = json_array();
    if (cur && json_is_string(cur))
        json_array_append(arr, cur);
    json_array_append_new(arr, v);
    json_object_setn_new_nocheck(obj, it->name, it->name_len, arr);
}

/* Kong's transform_json_body on a decoded object. */
static void transform_object(const struct resptx_conf *c, json_t *obj, json_t *inf)
{
    const struct jitems *j = c->json;
    for (size_t i = 0; i < j[OP_REMOVE].n; i++) {
        const struct jitem *it = &j[OP_REMOVE].v[i];
        if (it->name)
            json_object_deln(obj, it->name, it->name_len);
    }
    for (size_t i = 0; i < j[OP_RENAME].n; i++) {
        const struct jitem *it = &j[OP_RENAME].v[i];
        json_t *v = it->name && it->text ? json_object_getn(obj, it->name, it->name_len) : NULL;
        if (!v)
            continue;
        json_incref(v);
        json_object_setn_new_nocheck(obj, it->text, it->text_len, v);
        json_object_deln(obj, it->name, it->name_len);
    }
    for (size_t i = 0; i < j[OP_REPLACE].n; i++) {
        const struct jitem *it = &j[OP_REPLACE].v[i];
        if (it->name && it->kind != J_NONE && truthy(json_object_getn(obj, it->name, it->name_len)))
            json_object_setn_new_nocheck(obj, it->name, it->name_len, new_value(it, inf));
    }
    for (size_t i = 0; i < j[OP_ADD].n; i++) {
        const struct jitem *it = &j[OP_ADD].v[i];
        if (it->name && it->kind != J_NONE &&
            !truthy(json_object_getn(obj, it->name, it->name_len)))
            json_object_setn_new_nocheck(obj, it->name, it->name_len, new_value(it, inf));
    }
    for (size_t i = 0; i < j[OP_APPEND].n; i++) {
        const struct jitem *it = &j[OP_APPEND].v[i];
        if (it->name && it->kind != J_NONE)
            append_value(obj, it, new_value(it, inf), inf);
    }
}

/* The encoded body, grown as needed; `failed` once memory ran out or the
 * value cannot be encoded. */
struct out {
    char *p; /* owned */
    size_t len, cap;
    bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (n > o->cap - o->len) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap - o->len < n) {
            if (cap > SIZE_MAX / 2) {
                o->failed = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* A string as lua-cjson writes it (its char2escape table). */
static void put_string(struct out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '/':
            esc = "\\/";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\r':
            esc = "\\r";
            break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                esc = u;
            }
        }
        if (!esc)
            continue;
        put(o, s + run, i - run);
        put(o, esc, strlen(esc));
        run = i + 1;
    }
    put(o, s + run, n - run);
    put(o, "\"", 1);
}

/* Writes v as lua-cjson would; false when cjson could not (too deep, or a
 * number it refuses). */
static bool encode(struct out *o, json_t *v, const json_t *inf, int depth)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (v == inf || depth >= CJSON_MAX_DEPTH)
            return false;
        put(o, "{", 1);
        bool first = true;
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            if (!first)
                put(o, ",", 1);
            first = false;
            put_string(o, json_object_iter_key(it), json_object_iter_key_len(it));
            put(o, ":", 1);
            if (!encode(o, json_object_iter_value(it), inf, depth + 1))
                return false;
        }
        put(o, "}", 1);
        break;
    }
    case JSON_ARRAY:
        if (depth >= CJSON_MAX_DEPTH)
            return false;
        put(o, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                put(o, ",", 1);
            if (!encode(o, json_array_get(v, i), inf, depth + 1))
                return false;
        }
        put(o, "]", 1);
        break;
    case JSON_STRING:
        put_string(o, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        put(o, num,
            (size_t)snprintf(num, sizeof num, "%.*g", CJSON_PRECISION, json_number_value(v)));
        break;
    case JSON_TRUE:
        put(o, "true", 4);
        break;
    case JSON_FALSE:
        put(o, "false", 5);
        break;
    case JSON_NULL:
        put(o, "null", 4);
        break;
    }
    return !o->failed;
}

/*
 * Decodes body as cjson would (every number a double), transforms it and
 * encodes it again into o. Returns NULL, or why the body stays as it is.
 */
static const char *transform_body(const struct resptx_conf *c, const char *body, size_t len,
                                  struct out *o)
{
    json_t *doc =
        json_loadb(body, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
    if (!doc)
        return "failed parsing json body";
    const char *why = NULL;
    json_t *inf = NULL;
    if (json_is_object(doc)) {
        inf = json_object();
        transform_object(c, doc, inf);
    } else if (!json_is_array(doc)) {
        why = "the body is not a JSON object";
    }
    if (!why && !encode(o, doc, inf, 0))
        why = o->failed ? "out of memory" : "the transformed body cannot be encoded";
    json_decref(doc);
    json_decref(inf);
    return why;
}

/* ------------------------------------------------------------------------ */
/* body_filter                                                               */

static void on_body_filter(sl_pdk_t *p, void *conf)
{
    const struct resptx_conf *c = conf;
    sl_str_t ct, body;
    if (!c->body || !final_content_type(p, c, &ct) || !is_json_body(ct.p, ct.len))
        return;
    /* Nothing to parse (HEAD, 204, 304, an empty body): Kong would log a
     * parse failure; the body stays empty either way. */
    if (!sl_pdk_response_get_raw_body(p, &body) || body.len == 0)
        return;
    struct out o = {0};
    const char *why = transform_body(c, body.p, body.len, &o);
    if (why)
        sl_pdk_log(p, SL_LOG_WARN, "body transform failed: %s", why);
    else
        sl_pdk_response_set_raw_body(p, o.p, o.len);
    free(o.p);
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

/* A response that carries no body whatever its headers say. */
static bool bodiless(sl_pdk_t *p)
{
    int status = sl_pdk_response_get_status(p);
    sl_str_t m = sl_pdk_request_get_method(p);
    return (status >= 100 && status < 200) || status == 204 || status == 304 ||
           sl_strcaseeq(m.p, m.len, "HEAD", 4);
}

static void on_header_filter(sl_pdk_t *p, void *conf)
{
    const struct resptx_conf *c = conf;
    const struct items *h = c->headers;

    /* Kong drops Content-Length when a body transformation applies (the
     * Content-Type decides, before any change of ours). The proxy frames
     * bodies with their final length; a bodiless response keeps the
     * upstream's, which described a body never transformed. */
    bool drop_length = false;
    if (c->body && bodiless(p)) {
        sl_str_t ct;
        drop_length =
            sl_pdk_response_get_header(p, "Content-Type", &ct) && is_json_body(ct.p, ct.len);
    }

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
                sl_strcaseeq(fn.p, fn.len, h[OP_RENAME].v[i].name, strlen(h[OP_RENAME].v[i].name)))
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
    if (drop_length)
        sl_pdk_response_clear_header(p, "Content-Length");
}

const sl_native_plugin_t sl_plugin_response_transformer = {
    .name = "response-transformer",
    .configure = configure,
    .dispose = dispose,
    .wants_response_body = wants_response_body,
    .header_filter = on_header_filter,
    .body_filter = on_body_filter,
};
