/*
 * The schema engine: validates one entity (a jansson object) against a
 * schema, filling defaults in place, and reports every problem the way Kong
 * does: as a nested `fields` object mirroring the entity's shape (field
 * errors under their names, array element errors at their index, entity-level
 * errors under "@entity"), and as flat "path: message" strings.
 */
#ifndef SL_SCHEMA_H
#define SL_SCHEMA_H

#include "errors.h"
#include "schema-t.h"

/* Kong's validation messages. */
#define SL_MSG_REQUIRED "required field missing"
#define SL_MSG_UNKNOWN "unknown field"

/*
 * Validates entity for creation: expands shorthands, fills defaults and auto
 * fields (id, created_at, updated_at, generated keys), then checks every
 * field and every entity check. The object is modified in place; on success
 * its keys are also put in schema order.
 *
 * Returns SL_OK, or SL_ERR_INVALID after appending each error to flat (when
 * not NULL) as "<path_prefix>.<field path>: <message>" (entity-level errors
 * as "<path_prefix>: <message>"; with an empty prefix the path starts at the
 * field) and merging the nested error object into fields_out (when not NULL,
 * a json object owned by the caller).
 */
int sl_schema_validate(const sl_schema_t *schema, json_t *entity, const char *path_prefix,
                       sl_errors_t *flat, json_t *fields_out);

/* The same with options (a fixed clock, no generated values). */
int sl_schema_validate_ex(const sl_schema_t *schema, json_t *entity, const sl_schema_opts_t *opts,
                          const char *path_prefix, sl_errors_t *flat, json_t *fields_out);

/* Validates one value against one field definition (no defaults). Returns
 * NULL when valid, else a new reference to the error (a string, or an
 * array/object for aggregates). */
json_t *sl_schema_validate_field(const sl_field_t *field, const json_t *value);

/* Looks a field up by name, in the subschema first when sub is not NULL. */
const sl_field_t *sl_schema_field(const sl_schema_t *schema, const sl_schema_t *sub,
                                  const char *name);

/* Appends the errors of a nested error object to flat as "path: message". */
void sl_schema_flatten_errors(const json_t *fields, const char *path_prefix, sl_errors_t *flat);

/* Formats a list as Kong does in messages: 'a', 'b', 'c'. Caller frees. */
char *sl_schema_quoted_list(const char *const *names);

#endif
