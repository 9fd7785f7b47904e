/*
 * body_args.c reads request bodies and query strings into the argument
 * tables Kong's plugins work on, and writes them back, for the native
 * plugins that need them (key-auth's key_in_body, request-transformer's body
 * and query operations).
 *
 * Three formats, each as the Lua library Kong uses reads it:
 *
 *   - application/x-www-form-urlencoded and query strings: ngx.decode_args
 *     (nginx's URI-component unescaping, the first 100 pairs, flags for
 *     names without '='), written back by ngx.encode_args, sorted by name
 *     when Kong's PDK sorts (set_query, set_body).
 *   - application/json: cjson, here jansson. Only an object or an array is
 *     a body table. Written back compact with '/' escaped and numbers with
 *     14 significant digits, as cjson writes them; object members keep
 *     their order (cjson's order is the Lua table's, i.e. unspecified).
 *   - multipart/form-data: lua-multipart, a line-oriented reader: a part
 *     starts after a "--boundary" line, its header lines end at a blank line,
 *     its name is Content-Disposition's name parameter; parts without a name
 *     are dropped. lua-multipart lets a preamble or a nameless part leak
 *     into the next part's value and headers; here a part has only its own.
 *
 * Every function runs on the worker thread of the request it is given and
 * allocates in that request's arena, except the jansson documents, which
 * sl_body_dispose releases. Decoding is linear in the body; lookups are
 * linear in the number of arguments or parts, and callers make a bounded
 * number of them (one per configured name).
 */
#include "body_args.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Form and query arguments                                                  */

sl_arg_t *sl_args_find(sl_args_t *a, const char *name, size_t len)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].name_len == len && !memcmp(a->v[i].name, name, len))
            return &a->v[i];
    return NULL;
}

sl_arg_t *sl_args_add(sl_pdk_t *p, sl_args_t *a, const char *name, size_t len)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        sl_arg_t *v = sl_pdk_alloc(p, cap * sizeof(*v));
        if (a->n)
            memcpy(v, a->v, a->n * sizeof(*v));
        a->v = v;
        a->cap = cap;
    }
    sl_arg_t *arg = &a->v[a->n++];
    *arg = (sl_arg_t){.name = name, .name_len = len};
    return arg;
}

void sl_arg_push(sl_pdk_t *p, sl_arg_t *arg, sl_arg_val_t v)
{
    if (arg->nvals == arg->cap) {
        size_t cap = arg->cap ? arg->cap * 2 : 2;
        sl_arg_val_t *vals = sl_pdk_alloc(p, cap * sizeof(*vals));
        if (arg->nvals)
            memcpy(vals, arg->vals, arg->nvals * sizeof(*vals));
        arg->vals = vals;
        arg->cap = cap;
    }
    arg->vals[arg->nvals++] = v;
}

void sl_args_remove(sl_args_t *a, sl_arg_t *arg)
{
    size_t i = (size_t)(arg - a->v);
    memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(*arg));
    a->n--;
}

void sl_args_decode(sl_pdk_t *p, sl_str_t raw, sl_args_t *out)
{
    *out = (sl_args_t){0};
    const char *s = raw.p, *end = raw.p + raw.len;
    size_t seen = 0;
    while (s && s < end && seen < SL_ARGS_MAX) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        const char *kend = eq ? eq : stop;
        if (stop > s) {
            seen++;
            char *key = sl_pdk_alloc(p, (size_t)(kend - s) + 1);
            size_t klen = sl_unescape_arg(s, (size_t)(kend - s), key);
            if (klen > 0) {
                sl_arg_val_t v = {"", 0, true};
                if (eq) {
                    char *val = sl_pdk_alloc(p, (size_t)(stop - eq));
                    v = (sl_arg_val_t){val, sl_unescape_arg(eq + 1, (size_t)(stop - eq - 1), val),
                                       false};
                }
                sl_arg_t *a = sl_args_find(out, key, klen);
                sl_arg_push(p, a ? a : sl_args_add(p, out, key, klen), v);
            }
        }
        s = stop + 1;
    }
}

/* ngx.escape_uri (a URI component): all but A-Z a-z 0-9 - . _ ~ as %XX. */
static size_t escape_component(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[k++] = (char)ch;
        } else {
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

char *sl_args_encode(sl_pdk_t *p, const sl_args_t *a, bool sorted, size_t *len)
{
    sl_str_t *pieces = sl_pdk_alloc(p, (a->n ? a->n : 1) * sizeof(*pieces));
    size_t total = 1, np = 0;
    for (size_t i = 0; i < a->n; i++) {
        const sl_arg_t *arg = &a->v[i];
        if (arg->nvals == 0)
            continue;
        size_t max = 0;
        for (size_t j = 0; j < arg->nvals; j++)
            max += 3 * (arg->name_len + arg->vals[j].len) + 2;
        char *buf = sl_pdk_alloc(p, max + 1);
        size_t n = 0;
        for (size_t j = 0; j < arg->nvals; j++) {
            if (j > 0)
                buf[n++] = '&';
            n += escape_component(arg->name, arg->name_len, buf + n);
            if (!arg->vals[j].flag) {
                buf[n++] = '=';
                n += escape_component(arg->vals[j].p, arg->vals[j].len, buf + n);
            }
        }
        pieces[np++] = (sl_str_t){buf, n};
        total += n + 1;
    }
    if (sorted)
        qsort(pieces, np, sizeof(*pieces), cmp_strs);
    char *out = sl_pdk_alloc(p, total), *w = out;
    for (size_t i = 0; i < np; i++) {
        if (i > 0)
            *w++ = '&';
        memcpy(w, pieces[i].p, pieces[i].len);
        w += pieces[i].len;
    }
    *w = '\0';
    if (len)
        *len = (size_t)(w - out);
    return out;
}

/* ------------------------------------------------------------------------ */
/* multipart/form-data                                                       */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

bool sl_multipart_boundary(sl_str_t ct, sl_str_t *boundary)
{
    /* Lua: match(content_type, ";%s*boundary=(%S+)"), the first place it
     * matches. */
    static const char key[] = "boundary=";
    const size_t klen = sizeof(key) - 1;
    for (size_t i = 0; i < ct.len; i++) {
        if (ct.p[i] != ';')
            continue;
        size_t j = i + 1;
        while (j < ct.len && is_space(ct.p[j]))
            j++;
        if (ct.len - j < klen || memcmp(ct.p + j, key, klen) != 0)
            continue;
        size_t start = j + klen, stop = start;
        while (stop < ct.len && !is_space(ct.p[stop]))
            stop++;
        if (stop == start)
            continue;
        sl_str_t b = {ct.p + start, stop - start};
        if (b.len >= 2 && (b.p[0] == '"' || b.p[0] == '\'') && b.p[b.len - 1] == b.p[0]) {
            b.p++;
            b.len -= 2;
        }
        if (b.len == 0)
            return false;
        *boundary = b;
        return true;
    }
    return false;
}

/* Lua's match(line, "%S:%s*%S"): somewhere a non-space, a colon, optional
 * spaces and a non-space. */
static bool looks_like_header(const char *s, size_t n)
{
    for (size_t i = 1; i + 1 < n; i++) {
        if (s[i] != ':' || is_space(s[i - 1]))
            continue;
        size_t j = i + 1;
        while (j < n && is_space(s[j]))
            j++;
        if (j < n)
            return true;
    }
    return false;
}

/* The name parameter of a Content-Disposition line as lua-multipart reads
 * it: in each ';'-separated piece that does not look like a header,
 * "name=" (any case) after optional spaces; the rest up to an '=', trailing
 * spaces removed, less its first and last character (the quotes). */
static bool disposition_name(const char *s, size_t n, sl_str_t *name)
{
    bool found = false;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ';')
            j++;
        const char *seg = s + i;
        size_t slen = j - i, k = 0;
        if (!looks_like_header(seg, slen)) {
            while (k < slen && is_space(seg[k]))
                k++;
            if (slen - k >= 5 && sl_strcaseeq(seg + k, 4, "name", 4) && seg[k + 4] == '=') {
                k += 5;
                while (k < slen && is_space(seg[k]))
                    k++;
                size_t v = k;
                while (v < slen && seg[v] != '=')
                    v++;
                while (v > k && is_space(seg[v - 1]))
                    v--;
                *name = v - k >= 2 ? (sl_str_t){seg + k + 1, v - k - 2} : SL_STR("");
                found = true;
            }
        }
        i = j + 1;
    }
    return found;
}

static void add_part(sl_pdk_t *p, sl_multipart_t *m, sl_part_t part)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        sl_part_t *v = sl_pdk_alloc(p, cap * sizeof(*v));
        if (m->n)
            memcpy(v, m->parts, m->n * sizeof(*v));
        m->parts = v;
        m->cap = cap;
    }
    m->parts[m->n++] = part;
}

/* The header lines of the part being read. */
struct hdrs {
    sl_str_t *v;
    size_t n, cap;
};

static void add_header(sl_pdk_t *p, struct hdrs *h, sl_str_t line)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4;
        sl_str_t *v = sl_pdk_alloc(p, cap * sizeof(*v));
        if (h->n)
            memcpy(v, h->v, h->n * sizeof(*v));
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = line;
}

/*
 * lua-multipart's decode. The body is cut into lines at every CR and every
 * LF. Outside a value, a Content-Disposition line names the part and other
 * "x: y" lines are headers; the value starts after a header line followed by
 * CRLF CRLF, or at the first line that is neither. A line starting with
 * "--boundary" ends the part (its value loses one trailing LF and a CR
 * before it) and starts the next. A part still open at the end of the body
 * keeps everything up to the end.
 */
void sl_multipart_decode(sl_pdk_t *p, sl_str_t body, sl_str_t boundary, sl_multipart_t *out)
{
    *out = (sl_multipart_t){.boundary = boundary};
    if (boundary.len == 0)
        return;
    const char *s = body.p;
    size_t n = body.len, pos = 0, vstart = 0;
    bool in_value = false, named = false;
    sl_str_t name = {NULL, 0};
    struct hdrs h = {0};

    while (pos <= n) {
        size_t eol = pos;
        while (eol < n && s[eol] != '\r' && s[eol] != '\n')
            eol++;
        bool last = eol >= n;
        const char *line = s + pos;
        size_t len = eol - pos;
        size_t next = eol + 1;

        if (len == 0) {
            /* An empty line: inside a value its separator is part of it. */
        } else if (len >= 2 + boundary.len && line[0] == '-' && line[1] == '-' &&
                   !memcmp(line + 2, boundary.p, boundary.len)) {
            if (named) {
                size_t vend = pos;
                if (!in_value)
                    vstart = vend;
                if (vend > vstart && s[vend - 1] == '\n') {
                    vend--;
                    if (vend > vstart && s[vend - 1] == '\r')
                        vend--;
                }
                add_part(p, out,
                         (sl_part_t){name, h.v, h.n, (sl_str_t){s + vstart, vend - vstart}});
                named = false;
            }
            h = (struct hdrs){0}; /* a nameless part's headers go with it */
            in_value = false;
        } else if (!in_value && len >= 19 && sl_strcaseeq(line, 19, "content-disposition", 19)) {
            if (disposition_name(line, len, &name))
                named = true;
            add_header(p, &h, (sl_str_t){line, len});
            if (n - eol >= 4 && !memcmp(s + eol, "\r\n\r\n", 4)) {
                in_value = true;
                next = eol + 4;
                vstart = next;
            }
        } else if (!in_value && looks_like_header(line, len)) {
            add_header(p, &h, (sl_str_t){line, len});
            if (n - eol >= 4 && !memcmp(s + eol, "\r\n\r\n", 4)) {
                in_value = true;
                next = eol + 4;
                vstart = next;
            }
        } else if (!in_value) {
            in_value = true;
            vstart = pos;
        }
        if (last)
            break;
        pos = next;
    }
    if (named)
        add_part(p, out,
                 (sl_part_t){name, h.v, h.n,
                             in_value ? (sl_str_t){s + vstart, n - vstart} : SL_STR("")});
}

static bool part_is(const sl_part_t *part, const char *name, size_t len)
{
    return part->name.len == len && !memcmp(part->name.p, name, len);
}

sl_part_t *sl_multipart_get(sl_multipart_t *m, const char *name, size_t len)
{
    for (size_t i = 0; i < m->n; i++)
        if (part_is(&m->parts[i], name, len))
            return &m->parts[i];
    return NULL;
}

size_t sl_multipart_count(const sl_multipart_t *m, const char *name, size_t len)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        k += part_is(&m->parts[i], name, len);
    return k;
}

void sl_multipart_delete(sl_multipart_t *m, const char *name, size_t len)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (!part_is(&m->parts[i], name, len))
            m->parts[k++] = m->parts[i];
    m->n = k;
}

void sl_multipart_set_simple(sl_pdk_t *p, sl_multipart_t *m, const char *name, size_t len,
                             const char *value, size_t vlen)
{
    static const char pre[] = "Content-Disposition: form-data; name=\"";
    size_t hlen = sizeof(pre) - 1 + len + 1;
    char *hdr = sl_pdk_alloc(p, hlen + 1);
    memcpy(hdr, pre, sizeof(pre) - 1);
    memcpy(hdr + sizeof(pre) - 1, name, len);
    hdr[hlen - 1] = '"';
    hdr[hlen] = '\0';
    sl_str_t *hs = sl_pdk_alloc(p, sizeof(*hs));
    *hs = (sl_str_t){hdr, hlen};
    sl_part_t part = {{name, len}, hs, 1, {value, vlen}};
    sl_part_t *at = sl_multipart_get(m, name, len);
    if (at)
        *at = part;
    else
        add_part(p, m, part);
}

char *sl_multipart_encode(sl_pdk_t *p, const sl_multipart_t *m, size_t *len)
{
    const sl_str_t b = m->boundary;
    if (m->n == 0) {
        *len = 0;
        return sl_pdk_strndup(p, "", 0);
    }
    size_t total = b.len + 7;
    for (size_t i = 0; i < m->n; i++) {
        total += b.len + 4 + 2 + m->parts[i].value.len + 2;
        for (size_t j = 0; j < m->parts[i].nheaders; j++)
            total += m->parts[i].headers[j].len + 2;
    }
    char *out = sl_pdk_alloc(p, total + 1), *w = out;
#define PUT(ptr, n)                                                                                \
    do {                                                                                           \
        memcpy(w, (ptr), (n));                                                                     \
        w += (n);                                                                                  \
    } while (0)
    for (size_t i = 0; i < m->n; i++) {
        const sl_part_t *part = &m->parts[i];
        PUT("--", 2);
        PUT(b.p, b.len);
        PUT("\r\n", 2);
        for (size_t j = 0; j < part->nheaders; j++) {
            PUT(part->headers[j].p, part->headers[j].len);
            PUT("\r\n", 2);
        }
        PUT("\r\n", 2);
        PUT(part->value.p, part->value.len);
        PUT("\r\n", 2);
    }
    PUT("--", 2);
    PUT(b.p, b.len);
    PUT("--\r\n", 4);
#undef PUT
    *w = '\0';
    *len = (size_t)(w - out);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Content types                                                             */

static bool starts_with_ci(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    return n >= k && sl_strcaseeq(s, k, lit, k);
}

static bool contains_ci(sl_str_t s, const char *lit)
{
    size_t k = strlen(lit);
    for (size_t i = 0; i + k <= s.len; i++)
        if (sl_strcaseeq(s.p + i, k, lit, k))
            return true;
    return false;
}

sl_body_type_t sl_body_type(sl_str_t ct)
{
    const char *semi = memchr(ct.p, ';', ct.len);
    size_t n = semi ? (size_t)(semi - ct.p) : ct.len;
    if (starts_with_ci(ct.p, n, "application/x-www-form-urlencoded"))
        return SL_BODY_FORM;
    if (starts_with_ci(ct.p, n, "application/json"))
        return SL_BODY_JSON;
    if (starts_with_ci(ct.p, n, "multipart/form-data"))
        return SL_BODY_MULTIPART;
    return SL_BODY_OTHER;
}

sl_body_type_t sl_body_type_loose(sl_str_t ct)
{
    if (contains_ci(ct, "application/json"))
        return SL_BODY_JSON;
    if (contains_ci(ct, "multipart/form-data"))
        return SL_BODY_MULTIPART;
    if (contains_ci(ct, "application/x-www-form-urlencoded"))
        return SL_BODY_FORM;
    return SL_BODY_OTHER;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */

json_t *sl_body_json_decode(sl_str_t body)
{
    json_error_t e;
    json_t *j = json_loadb(body.p, body.len, JSON_ALLOW_NUL, &e);
    if (!j) /* cjson reads every number as a double */
        j = json_loadb(body.p, body.len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
    return j;
}

char *sl_body_json_encode(sl_pdk_t *p, const json_t *j, size_t *len)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_REAL_PRECISION(14));
    if (!text)
        return NULL;
    *len = strlen(text);
    char *out = sl_pdk_strndup(p, text, *len);
    free(text);
    return out;
}

/* ------------------------------------------------------------------------ */
/* kong.request.get_body and kong.service.request.set_body                   */

bool sl_body_get(sl_pdk_t *p, sl_body_t *b, const char **why)
{
    *b = (sl_body_t){0};
    if (!sl_pdk_request_get_header(p, "content-type", &b->content_type)) {
        *why = "missing content type";
        return false;
    }
    b->type = sl_body_type(b->content_type);
    if (b->type == SL_BODY_OTHER) {
        *why = "unsupported content type";
        return false;
    }
    sl_str_t raw;
    if (!sl_pdk_request_get_raw_body(p, &raw)) {
        *why = "the request body was not read";
        return false;
    }
    switch (b->type) {
    case SL_BODY_FORM:
        sl_args_decode(p, raw, &b->form);
        return true;
    case SL_BODY_JSON:
        b->json = sl_body_json_decode(raw);
        if (!b->json) {
            *why = "invalid json body";
            return false;
        }
        return true;
    case SL_BODY_MULTIPART: {
        sl_str_t boundary = {NULL, 0};
        sl_multipart_boundary(b->content_type, &boundary);
        sl_multipart_decode(p, raw, boundary, &b->mp);
        return true;
    }
    case SL_BODY_OTHER:
        break;
    }
    return false;
}

void sl_body_dispose(sl_body_t *b)
{
    json_decref(b->json);
    b->json = NULL;
}

sl_body_value_t sl_body_lookup(sl_body_t *b, const char *name, sl_str_t *value)
{
    size_t len = strlen(name);
    switch (b->type) {
    case SL_BODY_FORM: {
        const sl_arg_t *a = sl_args_find(&b->form, name, len);
        if (!a || a->nvals == 0)
            return SL_BODY_ABSENT;
        if (a->nvals > 1)
            return SL_BODY_TABLE;
        if (a->vals[0].flag)
            return SL_BODY_SCALAR;
        *value = (sl_str_t){a->vals[0].p, a->vals[0].len};
        return SL_BODY_STRING;
    }
    case SL_BODY_JSON: {
        const json_t *v = json_is_object(b->json) ? json_object_get(b->json, name) : NULL;
        if (!v)
            return SL_BODY_ABSENT;
        if (json_is_string(v)) {
            *value = (sl_str_t){json_string_value(v), json_string_length(v)};
            return SL_BODY_STRING;
        }
        return json_is_object(v) || json_is_array(v) ? SL_BODY_TABLE : SL_BODY_SCALAR;
    }
    case SL_BODY_MULTIPART: {
        size_t k = sl_multipart_count(&b->mp, name, len);
        if (k == 0)
            return SL_BODY_ABSENT;
        if (k > 1)
            return SL_BODY_TABLE;
        *value = sl_multipart_get(&b->mp, name, len)->value;
        return SL_BODY_STRING;
    }
    case SL_BODY_OTHER:
        break;
    }
    return SL_BODY_ABSENT;
}

void sl_body_remove(sl_body_t *b, const char *name)
{
    size_t len = strlen(name);
    switch (b->type) {
    case SL_BODY_FORM: {
        sl_arg_t *a = sl_args_find(&b->form, name, len);
        if (a)
            sl_args_remove(&b->form, a);
        break;
    }
    case SL_BODY_JSON:
        if (json_is_object(b->json))
            json_object_del(b->json, name);
        break;
    case SL_BODY_MULTIPART:
        sl_multipart_delete(&b->mp, name, len);
        break;
    case SL_BODY_OTHER:
        break;
    }
}

static bool contains(const char *s, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k))
            return true;
    return false;
}

/* Whether "\n--boundary" occurs in some value, which would end it early. */
static bool boundary_clashes(sl_pdk_t *p, const sl_multipart_t *m, sl_str_t boundary)
{
    char *probe = sl_pdk_alloc(p, boundary.len + 3);
    memcpy(probe, "\n--", 3);
    memcpy(probe + 3, boundary.p, boundary.len);
    for (size_t i = 0; i < m->n; i++)
        if (contains(m->parts[i].value.p, m->parts[i].value.len, probe, boundary.len + 3))
            return true;
    return false;
}

/* A part and its place in the body: equal names keep their order. */
struct ranked_part {
    sl_part_t part;
    size_t rank;
};

static int cmp_parts(const void *a, const void *b)
{
    const struct ranked_part *x = a, *y = b;
    int c = cmp_strs(&x->part.name, &y->part.name);
    return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

/*
 * set_body's multipart/form-data encoding: every field a plain part, sorted
 * by name, on the boundary the Content-Type names ("boundary=" then a quoted
 * string or the rest of the value) unless a value contains it, else a new
 * one; Content-Type follows. Kong refuses (with an error, a 500) a field
 * given more than once; here each of its values becomes a part.
 */
static void set_multipart(sl_pdk_t *p, sl_body_t *b)
{
    size_t n = b->mp.n;
    struct ranked_part *ranked = sl_pdk_alloc(p, (n ? n : 1) * sizeof(*ranked));
    for (size_t i = 0; i < n; i++)
        ranked[i] = (struct ranked_part){b->mp.parts[i], i};
    qsort(ranked, n, sizeof(*ranked), cmp_parts);
    sl_multipart_t out = {.n = n, .cap = n};
    out.parts = sl_pdk_alloc(p, (n ? n : 1) * sizeof(*out.parts));
    for (size_t i = 0; i < n; i++)
        out.parts[i] = ranked[i].part;
    for (size_t i = 0; i < out.n; i++) {
        sl_part_t *part = &out.parts[i];
        static const char pre[] = "Content-Disposition: form-data; name=\"";
        size_t hlen = sizeof(pre) - 1 + part->name.len + 1;
        char *hdr = sl_pdk_alloc(p, hlen + 1);
        snprintf(hdr, hlen + 1, "%s%.*s\"", pre, (int)part->name.len, part->name.p);
        sl_str_t *hs = sl_pdk_alloc(p, sizeof(*hs));
        *hs = (sl_str_t){hdr, hlen};
        part->headers = hs;
        part->nheaders = 1;
    }

    sl_str_t ct = b->content_type, boundary = {NULL, 0};
    static const char key[] = "boundary=";
    for (size_t i = 0; i + sizeof(key) - 1 <= ct.len && !boundary.p; i++) {
        if (memcmp(ct.p + i, key, sizeof(key) - 1) != 0)
            continue;
        size_t at = i + sizeof(key) - 1;
        if (at < ct.len && ct.p[at] == '"') {
            const char *q = memchr(ct.p + at + 1, '"', ct.len - at - 1);
            size_t stop = q ? (size_t)(q - ct.p) : ct.len;
            boundary = (sl_str_t){ct.p + at + 1, stop - at - 1};
        } else {
            boundary = (sl_str_t){ct.p + at, ct.len - at};
        }
    }
    for (unsigned k = 0; !boundary.len || boundary_clashes(p, &out, boundary); k++) {
        char *fresh = sl_pdk_alloc(p, 48);
        int flen = snprintf(fresh, 48, "%s%u", sl_pdk_request_id(p), k);
        boundary = (sl_str_t){fresh, (size_t)flen};
    }
    out.boundary = boundary;
    size_t len;
    char *body = out.n ? sl_multipart_encode(p, &out, &len) : NULL;
    if (!body) {
        /* Kong writes the closing boundary alone for an empty table. */
        len = boundary.len + 6;
        body = sl_pdk_alloc(p, len + 1);
        snprintf(body, len + 1, "--%.*s--\r\n", (int)boundary.len, boundary.p);
    }
    sl_pdk_service_request_set_raw_body(p, body, len);
    size_t ctlen = sizeof("multipart/form-data; boundary=") - 1 + boundary.len;
    char *newct = sl_pdk_alloc(p, ctlen + 1);
    snprintf(newct, ctlen + 1, "multipart/form-data; boundary=%.*s", (int)boundary.len, boundary.p);
    sl_pdk_service_request_set_header(p, "Content-Type", newct);
}

void sl_body_set(sl_pdk_t *p, sl_body_t *b)
{
    size_t len = 0;
    char *body = NULL;
    switch (b->type) {
    case SL_BODY_FORM:
        body = sl_args_encode(p, &b->form, true, &len);
        break;
    case SL_BODY_JSON:
        body = sl_body_json_encode(p, b->json, &len);
        break;
    case SL_BODY_MULTIPART:
        set_multipart(p, b);
        return;
    case SL_BODY_OTHER:
        return;
    }
    if (body)
        sl_pdk_service_request_set_raw_body(p, body, len);
}
