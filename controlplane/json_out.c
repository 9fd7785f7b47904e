/*
 * json_out.c: the compact JSON writer described in json_out.h. It mirrors
 * jansson 2.14's dump.c with JSON_COMPACT: object members in insertion order,
 * "," and ":" with no spaces, strings escaped exactly as dump_string does
 * (\" \\ \b \f \n \r \t, other control characters as \u00XX in upper-case
 * hex, '/' and non-ASCII left alone), integers in JSON_INTEGER_FORMAT, reals
 * as jsonp_dtostr writes them ("%.17g", ".0" added when neither '.' nor 'e'
 * appears, the exponent without '+' or leading zeros).
 *
 * Pure functions; any thread. Recursion depth is the value's nesting depth,
 * which the parsers bound.
 */
#include "json_out.h"
#include "util.h"

#include "errors.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int add_string(sl_sb_t *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    sl_sb_addlit(b, "\"");
    while (i < n) {
        unsigned c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = sl_utf8_len(s + i, n - i);
            if (l == 0)
                return SL_ERR_INVALID;
            i += l;
            continue;
        }
        sl_sb_add(b, s + run, i - run);
        switch (c) {
        case '"':
            sl_sb_addlit(b, "\\\"");
            break;
        case '\\':
            sl_sb_addlit(b, "\\\\");
            break;
        case '\b':
            sl_sb_addlit(b, "\\b");
            break;
        case '\f':
            sl_sb_addlit(b, "\\f");
            break;
        case '\n':
            sl_sb_addlit(b, "\\n");
            break;
        case '\r':
            sl_sb_addlit(b, "\\r");
            break;
        case '\t':
            sl_sb_addlit(b, "\\t");
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sl_sb_add(b, u, sizeof(u));
            break;
        }
        }
        run = ++i;
    }
    sl_sb_add(b, s + run, n - run);
    sl_sb_addlit(b, "\"");
    return SL_OK;
}

static int add_real(sl_sb_t *b, double d)
{
    char buf[64];
    if (!isfinite(d))
        return SL_ERR_INVALID;
    int r = snprintf(buf, sizeof(buf), "%.17g", d);
    if (r < 0 || (size_t)r >= sizeof(buf) - 3)
        return SL_ERR_INVALID;
    size_t len = (size_t)r;
    if (!strchr(buf, '.') && !strchr(buf, 'e')) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    char *start = strchr(buf, 'e');
    if (start) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf) + 1);
            len -= (size_t)(end - start);
        }
    }
    sl_sb_add(b, buf, len);
    return SL_OK;
}

int sl_json_out(sl_sb_t *b, const json_t *v)
{
    char num[32];
    int rc = SL_OK;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        size_t klen;
        json_t *x;
        bool first = true;
        sl_sb_addlit(b, "{");
        json_object_keylen_foreach((json_t *)v, k, klen, x)
        {
            if (!first)
                sl_sb_addlit(b, ",");
            first = false;
            if ((rc = add_string(b, k, klen)) != SL_OK)
                return rc;
            sl_sb_addlit(b, ":");
            if ((rc = sl_json_out(b, x)) != SL_OK)
                return rc;
        }
        sl_sb_addlit(b, "}");
        return SL_OK;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        sl_sb_addlit(b, "[");
        json_array_foreach(v, i, x)
        {
            if (i)
                sl_sb_addlit(b, ",");
            if ((rc = sl_json_out(b, x)) != SL_OK)
                return rc;
        }
        sl_sb_addlit(b, "]");
        return SL_OK;
    }
    case JSON_STRING:
        return add_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sl_sb_add(b, num, (size_t)n);
        return SL_OK;
    }
    case JSON_REAL:
        return add_real(b, json_real_value(v));
    case JSON_TRUE:
        sl_sb_addlit(b, "true");
        return SL_OK;
    case JSON_FALSE:
        sl_sb_addlit(b, "false");
        return SL_OK;
    case JSON_NULL:
        sl_sb_addlit(b, "null");
        return SL_OK;
    }
    return SL_ERR_INVALID;
}

char *sl_json_out_dup(const json_t *v, size_t *len)
{
    char st[1024];
    sl_sb_t b;
    sl_sb_init(&b, st, sizeof(st));
    char *out = NULL;
    if (v && sl_json_out(&b, v) == SL_OK) {
        out = sl_xmalloc(b.len + 1);
        memcpy(out, b.p, b.len);
        out[b.len] = '\0';
        if (len)
            *len = b.len;
    }
    sl_sb_dispose(&b);
    return out;
}
