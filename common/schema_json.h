/*
 * Schemas as JSON, both ways. Rendering gives Kong's schema shape (what
 * GET /schemas/... returns: {"fields":[{"name":{"type":...}}, ...],
 * "entity_checks":[...]}); compiling turns such a JSON table (an external
 * plugin's `-dump` schema, or one a data plane reported) into an sl_schema_t
 * the engine validates with.
 */
#ifndef SL_SCHEMA_JSON_H
#define SL_SCHEMA_JSON_H

#include "errors.h"
#include "schema-t.h"

#include <jansson.h>

/* {"fields":[...], "entity_checks":[...]} and, when the schema has them,
 * endpoint_key, cache_key, subschema_key and name. */
json_t *sl_schema_json(const sl_schema_t *schema);

/* One field's definition, {"type": ..., "default": ..., ...}. */
json_t *sl_schema_field_json(const sl_field_t *field);

/* Limits on what a compiled schema may contain (peer-supplied input). */
#define SL_SCHEMA_MAX_DEPTH 16
#define SL_SCHEMA_MAX_FIELDS 4096

/*
 * Compiles a Kong schema table given as JSON: {"fields": [{"<name>":
 * {<definition>}}, ...], "entity_checks": [...]}. Definitions understand
 * type (string, integer, number, boolean, array, set, map, record), required,
 * default, one_of, not_one_of, between, len_min, len_max, starts_with, uuid,
 * elements, keys, values and fields; other validators (Lua patterns, custom
 * Lua functions) cannot run here and are ignored. Entity checks understand
 * at_least_one_of, only_one_of, mutually_required, mutually_exclusive and
 * distinct over top-level field names.
 *
 * Returns a schema owning all of its memory (free it with
 * sl_schema_compiled_free), or NULL after adding "<path>.<where>: <what>"
 * errors to errs.
 */
sl_schema_t *sl_schema_compile(const json_t *table, const char *path, sl_errors_t *errs);
void sl_schema_compiled_free(sl_schema_t *schema);

#endif
