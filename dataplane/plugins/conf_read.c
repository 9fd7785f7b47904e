/*
 * conf_read.c: the config readers of the native plugins (conf_read.h). Pure
 * functions, called by configure() on the thread that builds a generation.
 */
#include "conf_read.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void *sl_cf_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

/* The field of obj that path names (its last segment). */
static const json_t *field(const json_t *obj, const char *path)
{
    const char *dot = strrchr(path, '.');
    return json_object_get(obj, dot ? dot + 1 : path);
}

static bool absent(const json_t *v)
{
    return !v || json_is_null(v);
}

bool sl_cf_bool(const json_t *obj, const char *path, bool def, bool *out, char *err, size_t errlen)
{
    const json_t *v = field(obj, path);
    if (absent(v)) {
        *out = def;
        return true;
    }
    if (!json_is_boolean(v))
        return sl_cf_fail(err, errlen, "config.%s: expected a boolean", path) != NULL;
    *out = json_is_true(v);
    return true;
}

bool sl_cf_int(const json_t *obj, const char *path, int64_t def, int64_t min, int64_t max,
               int64_t *out, char *err, size_t errlen)
{
    const json_t *v = field(obj, path);
    if (absent(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return sl_cf_fail(err, errlen, "config.%s: expected an integer between %lld and %lld", path,
                          (long long)min, (long long)max) != NULL;
    *out = (int64_t)json_integer_value(v);
    return true;
}

bool sl_cf_text_ok(const json_t *v, const char *what, char *err, size_t errlen)
{
    if (!json_is_string(v))
        return sl_cf_fail(err, errlen, "%s: expected a string", what) != NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0)
        return sl_cf_fail(err, errlen, "%s: length must be at least 1", what) != NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return sl_cf_fail(err, errlen, "%s: must not contain control characters", what) != NULL;
    }
    return true;
}

bool sl_cf_text(const json_t *obj, const char *path, const char *def, char **out, char *err,
                size_t errlen)
{
    const json_t *v = field(obj, path);
    *out = NULL;
    if (absent(v)) {
        *out = def ? sl_xstrdup(def) : NULL;
        return true;
    }
    char what[128];
    snprintf(what, sizeof(what), "config.%s", path);
    if (!sl_cf_text_ok(v, what, err, errlen))
        return false;
    *out = sl_xstrndup(json_string_value(v), json_string_length(v));
    return true;
}

bool sl_cf_strv(const json_t *obj, const char *path, const char *const *def, char ***out, size_t *n,
                char *err, size_t errlen)
{
    const json_t *v = field(obj, path);
    *out = NULL;
    *n = 0;
    if (absent(v)) {
        size_t k = 0;
        while (def && def[k])
            k++;
        *out = sl_xcalloc(k ? k : 1, sizeof(**out));
        for (size_t i = 0; i < k; i++)
            (*out)[i] = sl_xstrdup(def[i]);
        *n = k;
        return true;
    }
    if (!json_is_array(v))
        return sl_cf_fail(err, errlen, "config.%s: expected an array", path) != NULL;
    size_t k = json_array_size(v);
    *out = sl_xcalloc(k ? k : 1, sizeof(**out));
    for (size_t i = 0; i < k; i++) {
        const json_t *x = json_array_get(v, i);
        char what[128];
        snprintf(what, sizeof(what), "config.%s[%zu]", path, i);
        if (!sl_cf_text_ok(x, what, err, errlen)) {
            sl_cf_strv_free(*out, *n);
            *out = NULL;
            *n = 0;
            return false;
        }
        (*out)[(*n)++] = sl_xstrndup(json_string_value(x), json_string_length(x));
    }
    return true;
}

void sl_cf_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

bool sl_cf_strings(const json_t *obj, const char *path, const json_t **arr, size_t *n, char *err,
                   size_t errlen)
{
    const json_t *v = field(obj, path);
    *arr = NULL;
    *n = 0;
    if (absent(v))
        return true;
    if (!json_is_array(v))
        return sl_cf_fail(err, errlen, "config.%s: expected an array", path) != NULL;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return sl_cf_fail(err, errlen, "config.%s[%zu]: expected a string", path, i) != NULL;
    *arr = v;
    *n = json_array_size(v);
    return true;
}
