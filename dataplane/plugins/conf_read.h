/*
 * Reading a plugin instance's config object. A data plane also receives
 * configurations over the cluster protocol, so configure() checks every
 * value it uses even though the control plane validated it: these readers
 * do, and name the field in the error as config.<path>.
 *
 * `path` is the field's dotted path under config ("key_names",
 * "redis.host"); its last segment is looked up in `obj`, which is the
 * object holding the field (config itself, or config.redis). All return
 * true on success and false with err set.
 */
#ifndef SL_PLUGIN_CONF_READ_H
#define SL_PLUGIN_CONF_READ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Formats err; returns NULL (for configure's `return sl_cf_fail(...)`). */
void *sl_cf_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A boolean; absent or null: def. */
bool sl_cf_bool(const json_t *obj, const char *path, bool def, bool *out, char *err, size_t errlen);

/* An integer in [min, max]; absent or null: def. */
bool sl_cf_int(const json_t *obj, const char *path, int64_t def, int64_t min, int64_t max,
               int64_t *out, char *err, size_t errlen);

/* Whether a value is usable text: a non-empty string (Kong's strings have a
 * minimum length of 1) without control characters, which would end up in a
 * header or a log line. `what` names it in the error. */
bool sl_cf_text_ok(const json_t *v, const char *what, char *err, size_t errlen);

/* Such a string, copied into *out (free it); absent or null: a copy of def,
 * or NULL when def is NULL. */
bool sl_cf_text(const json_t *obj, const char *path, const char *def, char **out, char *err,
                size_t errlen);

/* An array of such strings, copied into *out (n of them; free with
 * sl_cf_strv_free); absent or null: a copy of def (NULL-terminated; NULL
 * for none). */
bool sl_cf_strv(const json_t *obj, const char *path, const char *const *def, char ***out, size_t *n,
                char *err, size_t errlen);
void sl_cf_strv_free(char **v, size_t n);

/* An array whose items are all strings (any text: the caller checks each
 * one), borrowed into *arr with its length in *n; absent or null: *n = 0. */
bool sl_cf_strings(const json_t *obj, const char *path, const json_t **arr, size_t *n, char *err,
                   size_t errlen);

#endif
