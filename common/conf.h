/*
 * kong.conf-style configuration: `key = value` lines, `#` comments, every key
 * overridable from the environment as SLUICE_<KEY> (upper case). Each binary
 * declares the keys it knows with their defaults; anything else is an error
 * naming the file, line and key.
 */
#ifndef SL_CONF_H
#define SL_CONF_H

#include "errors.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_conf_key_s {
    /* A name ending in '*' declares a family: every key that starts with
     * the part before the '*' ("pluginserver_*": pluginserver_go_hello_socket)
     * is accepted, without a default. */
    const char *name;
    const char *default_value; /* NULL: no default (unset) */
    const char *help;          /* one line, for docs and `-h` */
} sl_conf_key_t;

typedef struct sl_conf_s sl_conf_t;

/* Creates a configuration with the given keys at their defaults. keys must
 * outlive the conf (static tables). */
sl_conf_t *sl_conf_new(const sl_conf_key_t *keys, size_t nkeys);
void sl_conf_free(sl_conf_t *c);

/* Reads a file; unknown keys and malformed lines go to errs. */
int sl_conf_load_file(sl_conf_t *c, const char *path, sl_errors_t *errs);

/* Applies SLUICE_<KEY> environment overrides. */
void sl_conf_load_env(sl_conf_t *c);

/* Sets one key (command-line options). SL_ERR_NOT_FOUND for unknown keys. */
int sl_conf_set(sl_conf_t *c, const char *key, const char *value);

/* The value of a key, NULL when unset; "" counts as set. */
const char *sl_conf_get(const sl_conf_t *c, const char *key);

/* The keys of families that were set, in the order they were first set. */
size_t sl_conf_family_count(const sl_conf_t *c);
const char *sl_conf_family_key(const sl_conf_t *c, size_t i, const char **value);

/* Typed getters: on a bad value they append "KEY: message" to errs and leave
 * *out at the key's default (or 0). */
void sl_conf_get_bool(const sl_conf_t *c, const char *key, bool *out, sl_errors_t *errs);
void sl_conf_get_int(const sl_conf_t *c, const char *key, int64_t min, int64_t max, int64_t *out,
                     sl_errors_t *errs);
void sl_conf_get_size(const sl_conf_t *c, const char *key, uint64_t *out, sl_errors_t *errs);
void sl_conf_get_ms(const sl_conf_t *c, const char *key, uint64_t *out, sl_errors_t *errs);

/* Splits a comma-separated value into trimmed, non-empty items (owned by the
 * caller: free each and the array). */
size_t sl_conf_split(const char *value, char ***items);
void sl_conf_split_free(char **items, size_t n);

#endif
