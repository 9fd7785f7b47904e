/*
 * YAML to JSON: turns one YAML document into a jansson value, with the
 * scalar typing a Kong configuration expects (see yaml_json.c). Used by the
 * declarative loader; anything else that reads YAML configuration may use it.
 */
#ifndef SL_YAML_JSON_H
#define SL_YAML_JSON_H

#include "errors.h"

#include <jansson.h>
#include <stddef.h>

/* Nodes an input may add through aliases (each alias copies its anchor). */
#define SL_YAML_MAX_ALIAS_NODES 1000000u

/* Bytes of strings and keys an input may add through aliases. */
#define SL_YAML_MAX_ALIAS_BYTES (64u * 1024 * 1024)

/*
 * Parses text (len bytes, UTF-8) holding at most one YAML document. Returns
 * SL_OK with *out set (the caller json_decref()s it; an empty document gives
 * json null), or SL_ERR_INVALID with one message in errs naming the line and
 * column. Collections nested deeper than max_depth (aliases included) and
 * scalars holding NUL bytes are rejected.
 */
int sl_yaml_to_json(const char *text, size_t len, size_t max_depth, json_t **out,
                    sl_errors_t *errs);

#endif
