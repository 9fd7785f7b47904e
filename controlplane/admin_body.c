/*
 * admin_body.c owns the decoding of Admin API request bodies into jansson
 * objects (see admin_body.h for the conventions). Runs on the control
 * plane's main thread; every function is pure, and everything it returns
 * belongs to the caller. Sizes are bounded before we get here (the Admin API
 * refuses bodies over 1 MiB), so allocations abort on OOM.
 */
#include "admin_body.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

char *sl_admin_url_decode(const char *s, size_t len, bool plus_space)
{
    char *out = sl_xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < len && (h = sl_hex_value(s[i + 1])) >= 0 &&
            (l = sl_hex_value(s[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (s[i] == '+' && plus_space) {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Whether s is valid UTF-8 as jansson decides (no overlong forms, no
 * surrogates, nothing above U+10FFFF): jansson refuses any other string as an
 * object key or a string value. */
static bool utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    while (n > 0) {
        size_t l = sl_utf8_len(s, n);
        if (l == 0)
            return false;
        s += l;
        n -= l;
    }
    return true;
}

static size_t json_depth(const json_t *v, size_t limit)
{
    size_t max = 0;
    if (limit == 0)
        return 1;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t d = json_depth(json_array_get(v, i), limit - 1);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            size_t d = json_depth(x, limit - 1);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* form keys                                                                 */

/* Puts value into container (an object) under name, or appends/sets in an
 * array when idx says so: idx -2 plain key, -1 "[]", >= 0 a position. */
static int form_put(json_t *container, const char *name, long idx, json_t *value)
{
    json_t *cur = json_object_get(container, name);
    if (idx == -2) {
        if (cur == NULL) {
            json_object_set_new(container, name, value);
        } else if (json_is_array(cur)) {
            json_array_append_new(cur, value);
        } else if (json_is_object(cur) || json_is_object(value)) {
            json_decref(value);
            return SL_ERR_INVALID;
        } else {
            json_t *arr = json_array();
            json_array_append(arr, cur);
            json_array_append_new(arr, value);
            json_object_set_new(container, name, arr);
        }
        return SL_OK;
    }
    if (cur == NULL) {
        cur = json_array();
        json_object_set_new(container, name, cur);
    } else if (!json_is_array(cur)) {
        if (json_is_object(cur)) {
            json_decref(value);
            return SL_ERR_INVALID;
        }
        json_t *arr = json_array();
        json_array_append(arr, cur);
        json_object_set_new(container, name, arr);
        cur = arr;
    }
    if (idx == -1) {
        json_array_append_new(cur, value);
        return SL_OK;
    }
    if (idx > 10000) {
        json_decref(value);
        return SL_ERR_INVALID;
    }
    while (json_array_size(cur) <= (size_t)idx)
        json_array_append_new(cur, json_null());
    json_array_set_new(cur, (size_t)idx, value);
    return SL_OK;
}

int sl_admin_form_set(json_t *root, const char *key, const char *value)
{
    /* Percent-decoding can produce any bytes. jansson refuses a key or a
     * string that is not UTF-8 (json_object_set_new then frees the value it
     * was given, which the code below would go on using), so such a pair is
     * refused here, before anything is built. */
    if (*key == '\0' || !utf8_valid(key) || !utf8_valid(value))
        return SL_ERR_INVALID;
    char *buf = sl_xstrdup(key);
    json_t *container = root;
    char *seg = buf;
    int rc = SL_OK;
    for (;;) {
        char *dot = strchr(seg, '.');
        /* a '.' inside brackets does not split */
        char *br = strchr(seg, '[');
        if (br && dot && br < dot) {
            char *close = strchr(br, ']');
            if (close && dot < close)
                dot = strchr(close, '.');
        }
        if (dot)
            *dot = '\0';
        long idx = -2;
        br = strchr(seg, '[');
        if (br && br != seg && seg[strlen(seg) - 1] == ']') {
            *br = '\0';
            char *inner = br + 1;
            inner[strlen(inner) - 1] = '\0';
            if (*inner == '\0') {
                idx = -1;
            } else {
                char *end;
                errno = 0;
                long n = strtol(inner, &end, 10);
                if (*end != '\0' || errno || n < 0) {
                    rc = SL_ERR_INVALID;
                    break;
                }
                /* Kong's indexes are 1-based (Lua); accept 0 as the first too. */
                idx = n > 0 ? n - 1 : 0;
            }
        }
        if (*seg == '\0') {
            rc = SL_ERR_INVALID;
            break;
        }
        if (!dot) {
            rc = form_put(container, seg, idx, json_string(value));
            break;
        }
        /* an intermediate segment: an object, possibly inside an array */
        json_t *next;
        if (idx == -2) {
            next = json_object_get(container, seg);
            if (next == NULL) {
                next = json_object();
                json_object_set_new(container, seg, next);
            } else if (!json_is_object(next)) {
                rc = SL_ERR_INVALID;
                break;
            }
        } else {
            json_t *arr = json_object_get(container, seg);
            if (arr == NULL) {
                arr = json_array();
                json_object_set_new(container, seg, arr);
            } else if (!json_is_array(arr)) {
                rc = SL_ERR_INVALID;
                break;
            }
            size_t pos = idx == -1 ? json_array_size(arr) : (size_t)idx;
            if (pos > 10000) {
                rc = SL_ERR_INVALID;
                break;
            }
            while (json_array_size(arr) <= pos)
                json_array_append_new(arr, json_null());
            next = json_array_get(arr, pos);
            if (!json_is_object(next)) {
                next = json_object();
                json_array_set_new(arr, pos, next);
            }
        }
        container = next;
        seg = dot + 1;
    }
    free(buf);
    return rc;
}

int sl_admin_form_urlencoded(const char *body, size_t len, json_t *root)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(body + i, '=', end - i);
            size_t klen = eq ? (size_t)(eq - (body + i)) : end - i;
            char *k = sl_admin_url_decode(body + i, klen, true);
            char *v = eq ? sl_admin_url_decode(eq + 1, (size_t)(body + end - eq - 1), true)
                         : sl_xstrdup("");
            int rc = sl_admin_form_set(root, k, v);
            free(k);
            free(v);
            if (rc != SL_OK)
                return rc;
        }
        i = end + 1;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* multipart/form-data (RFC 7578)                                            */

static const char *memmem_c(const char *h, size_t hl, const char *n, size_t nl)
{
    return memmem(h, hl, n, nl);
}

/* Extracts a parameter (boundary=, name=) from a header value; quoted or
 * token form. Returns a malloc'd string or NULL. */
static char *header_param(const char *v, size_t vlen, const char *param)
{
    size_t pl = strlen(param);
    for (size_t i = 0; i + pl < vlen; i++) {
        if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
            strncasecmp(v + i, param, pl) == 0 && v[i + pl] == '=') {
            const char *s = v + i + pl + 1;
            const char *end = v + vlen;
            if (s < end && *s == '"') {
                s++;
                const char *q = memchr(s, '"', (size_t)(end - s));
                if (!q)
                    return NULL;
                return sl_xstrndup(s, (size_t)(q - s));
            }
            const char *e = s;
            while (e < end && *e != ';' && *e != ' ' && *e != '\t' && *e != '\r')
                e++;
            return sl_xstrndup(s, (size_t)(e - s));
        }
    }
    return NULL;
}

static int parse_multipart(const char *ctype, const char *body, size_t len, json_t *root)
{
    char *boundary = header_param(ctype, strlen(ctype), "boundary");
    if (!boundary || !*boundary || strlen(boundary) > 200) {
        free(boundary);
        return SL_ERR_INVALID;
    }
    char delim[256];
    int dl = snprintf(delim, sizeof(delim), "--%s", boundary);
    free(boundary);
    const char *p = memmem_c(body, len, delim, (size_t)dl);
    const char *end = body + len;
    if (!p)
        return SL_ERR_INVALID;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return SL_OK; /* closing delimiter */
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            p += 2;
        else
            return SL_ERR_INVALID;
        const char *hend = memmem_c(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            return SL_ERR_INVALID;
        char *name = NULL;
        for (const char *h = p; h < hend;) {
            const char *eol = memmem_c(h, (size_t)(hend - h), "\r\n", 2);
            if (!eol)
                eol = hend;
            if ((size_t)(eol - h) > 20 && strncasecmp(h, "content-disposition:", 20) == 0) {
                free(name);
                name = header_param(h + 20, (size_t)(eol - h - 20), "name");
            }
            h = eol + 2;
        }
        const char *data = hend + 4;
        char nd[260];
        int ndl = snprintf(nd, sizeof(nd), "\r\n%s", delim);
        const char *next = memmem_c(data, (size_t)(end - data), nd, (size_t)ndl);
        if (!next) {
            free(name);
            return SL_ERR_INVALID;
        }
        if (name) {
            char *v = sl_xstrndup(data, (size_t)(next - data));
            int rc = sl_admin_form_set(root, name, v);
            free(v);
            free(name);
            if (rc != SL_OK)
                return rc;
        }
        p = next + 2;
    }
}

/* ------------------------------------------------------------------------ */
/* entry point                                                               */

static bool ctype_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    while (*ctype == ' ')
        ctype++;
    return strncasecmp(ctype, want, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

int sl_admin_body_parse(const char *content_type, const char *body, size_t len, json_t **out,
                        sl_body_kind_t *kind, char *err, size_t errlen)
{
    json_t *root;
    bool is_json = content_type && (ctype_is(content_type, "application/json") ||
                                    strstr(content_type, "+json") != NULL);
    /* Kong: an empty body is no arguments, except that JSON must parse */
    if (len == 0 && !is_json) {
        *out = json_object();
        *kind = SL_BODY_EMPTY;
        return SL_OK;
    }
    if (is_json) {
        json_error_t je;
        root = json_loadb(body, len, JSON_DECODE_ANY, &je);
        if (!root || json_depth(root, SL_ADMIN_JSON_MAX_DEPTH + 1) > SL_ADMIN_JSON_MAX_DEPTH) {
            json_decref(root);
            snprintf(err, errlen, "%s", SL_ADMIN_MSG_BAD_JSON);
            return SL_ERR_INVALID;
        }
        *out = root;
        *kind = SL_BODY_JSON;
        return SL_OK;
    }
    if (content_type == NULL) {
        *out = json_object();
        *kind = SL_BODY_UNKNOWN;
        return SL_OK;
    }
    if (ctype_is(content_type, "application/x-www-form-urlencoded")) {
        root = json_object();
        if (sl_admin_form_urlencoded(body, len, root) != SL_OK) {
            json_decref(root);
            snprintf(err, errlen,
                     "Cannot parse form body: conflicting or malformed keys, or a key or value "
                     "that is not UTF-8");
            return SL_ERR_INVALID;
        }
        *out = root;
        *kind = SL_BODY_FORM;
        return SL_OK;
    }
    if (ctype_is(content_type, "multipart/form-data")) {
        root = json_object();
        if (parse_multipart(content_type, body, len, root) != SL_OK) {
            json_decref(root);
            snprintf(err, errlen, "Cannot parse multipart body");
            return SL_ERR_INVALID;
        }
        *out = root;
        *kind = SL_BODY_FORM;
        return SL_OK;
    }
    if (ctype_is(content_type, "application/yaml") || ctype_is(content_type, "text/yaml") ||
        ctype_is(content_type, "application/x-yaml")) {
        root = json_object();
        json_object_set_new(root, "config", json_stringn(body, len));
        if (json_object_get(root, "config") == NULL) {
            json_decref(root);
            snprintf(err, errlen, "Cannot parse YAML body: not valid UTF-8");
            return SL_ERR_INVALID;
        }
        *out = root;
        *kind = SL_BODY_YAML;
        return SL_OK;
    }
    *out = json_object();
    *kind = SL_BODY_UNKNOWN;
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* type inference                                                            */

static json_t *guess_scalar(const char *s)
{
    if (!strcmp(s, "true"))
        return json_true();
    if (!strcmp(s, "false"))
        return json_false();
    if (*s && (isdigit((unsigned char)*s) || *s == '-')) {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (*end == '\0' && !errno)
            return json_integer(n);
        double d = strtod(s, &end);
        if (*end == '\0' && !errno && isfinite(d))
            return json_real(d);
    }
    return NULL;
}

static void infer_generic(json_t *obj)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(obj, tmp, k, v)
    {
        if (json_is_string(v)) {
            json_t *g = guess_scalar(json_string_value(v));
            if (g)
                json_object_set_new(obj, k, g);
        } else if (json_is_object(v)) {
            infer_generic(v);
        } else if (json_is_array(v)) {
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *e = json_array_get(v, i);
                json_t *g = json_is_string(e) ? guess_scalar(json_string_value(e)) : NULL;
                if (g)
                    json_array_set_new(v, i, g);
                else if (json_is_object(e))
                    infer_generic(e);
            }
        }
    }
}

/* Returns a new reference to the converted value (or to v itself). */
static json_t *infer_value(const sl_field_t *f, json_t *v)
{
    if (json_is_string(v) && json_string_length(v) == 0 && f->type != SL_FT_STRING)
        return json_null();
    switch (f->type) {
    case SL_FT_INTEGER:
    case SL_FT_NUMBER:
    case SL_FT_BOOLEAN:
        if (json_is_string(v)) {
            json_t *g = guess_scalar(json_string_value(v));
            if (g && (f->type == SL_FT_BOOLEAN) == json_is_boolean(g))
                return g;
            json_decref(g);
        }
        return json_incref(v);
    case SL_FT_ARRAY:
    case SL_FT_SET: {
        json_t *arr;
        if (json_is_array(v)) {
            arr = json_incref(v);
        } else if (json_is_string(v) || json_is_number(v) || json_is_boolean(v)) {
            arr = json_array();
            json_array_append(arr, v);
        } else {
            return json_incref(v);
        }
        if (f->elements) {
            for (size_t i = 0; i < json_array_size(arr); i++) {
                json_t *e = json_array_get(arr, i);
                if (json_is_string(e) && json_string_length(e) == 0)
                    continue;
                json_array_set_new(arr, i, infer_value(f->elements, e));
            }
        }
        return arr;
    }
    case SL_FT_MAP:
        if (json_is_object(v) && f->values) {
            const char *k;
            json_t *x;
            void *tmp;
            json_object_foreach_safe(v, tmp, k, x)
                json_object_set_new(v, k, infer_value(f->values, x));
        }
        return json_incref(v);
    case SL_FT_FOREIGN: {
        /* service.id= (an empty form value) means no service */
        const json_t *id = json_object_get(v, "id");
        if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(id) &&
            json_string_length(id) == 0)
            return json_null();
        return json_incref(v);
    }
    case SL_FT_RECORD:
        if (json_is_object(v)) {
            if (f->record)
                sl_admin_body_infer(f->record->fields, NULL, v);
            else
                infer_generic(v);
        }
        return json_incref(v);
    default:
        return json_incref(v);
    }
}

static const sl_field_t *find_field(const sl_field_t *fields, const char *name)
{
    for (const sl_field_t *f = fields; f && f->name; f++)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

void sl_admin_body_infer(const sl_field_t *fields, const sl_field_t *sub_fields, json_t *obj)
{
    const char *k;
    json_t *v;
    void *tmp;
    if (!json_is_object(obj))
        return;
    json_object_foreach_safe(obj, tmp, k, v)
    {
        const sl_field_t *f = find_field(sub_fields, k);
        if (!f)
            f = find_field(fields, k);
        if (f) {
            json_object_set_new(obj, k, infer_value(f, v));
        } else if (json_is_string(v) && json_string_length(v) == 0) {
            json_object_set_new(obj, k, json_null());
        }
    }
}

void sl_admin_body_infer_schema(const sl_schema_t *schema, json_t *obj)
{
    const sl_schema_t *sub = NULL;
    if (schema->subschema && json_is_object(obj) && schema->subschema_key &&
        json_is_string(json_object_get(obj, schema->subschema_key)))
        (void)schema->subschema(obj, &sub);
    sl_admin_body_infer(schema->fields, sub ? sub->fields : NULL, obj);
}
