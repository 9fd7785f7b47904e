/*
 * Admin API request bodies: application/json, application/x-www-form-urlencoded
 * and multipart/form-data, all turned into one jansson object the CRUD code
 * handles the same way. Form keys follow Kong's conventions: dotted names
 * make nested objects (config.minute=5), `paths[]=/a` or a repeated key makes
 * an array, `paths[1]=/a` sets the first element. Form values stay strings;
 * sl_admin_body_infer() later turns them into the types a schema asks for.
 * Pure functions: no I/O, callable from unit tests.
 */
#ifndef SL_ADMIN_BODY_H
#define SL_ADMIN_BODY_H

#include "schema-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Deepest JSON nesting accepted in a body. */
#define SL_ADMIN_JSON_MAX_DEPTH 64

typedef enum sl_body_kind_e {
    SL_BODY_EMPTY = 0,
    SL_BODY_JSON,
    SL_BODY_FORM,    /* urlencoded or multipart: values are strings */
    SL_BODY_YAML,    /* application/yaml: *out holds {"config": "<text>"} */
    SL_BODY_UNKNOWN, /* unsupported content type */
} sl_body_kind_t;

/* Kong's message for a JSON body that does not parse. */
#define SL_ADMIN_MSG_BAD_JSON "Cannot parse JSON body"

/*
 * Parses body (len bytes, not necessarily NUL-terminated) according to
 * content_type. As in Kong, an empty body is an empty object (but not for
 * JSON, which must parse), and a body without a Content-Type is
 * SL_BODY_UNKNOWN (the Admin API answers 415).
 * Returns SL_OK with *out a new object (empty for an empty body; for a JSON
 * body any JSON value, which callers refuse unless it is an object) and *kind
 * set, or SL_ERR_INVALID with a message in err (Kong's "Cannot parse JSON
 * body" for bad or too deep JSON, or a description of the bad form body);
 * *out is untouched on error.
 */
int sl_admin_body_parse(const char *content_type, const char *body, size_t len, json_t **out,
                        sl_body_kind_t *kind, char *err, size_t errlen);

/* Decodes one application/x-www-form-urlencoded body into root (an object).
 * Returns SL_OK or SL_ERR_INVALID (a key that contradicts an earlier one). */
int sl_admin_form_urlencoded(const char *body, size_t len, json_t *root);

/* Sets one form key (already percent-decoded) to a string value inside root
 * following the dotted / [] / [n] conventions. Returns SL_OK or SL_ERR_INVALID. */
int sl_admin_form_set(json_t *root, const char *key, const char *value);

/* Percent-decodes s (len bytes), '+' as a space when plus_space. Caller frees. */
char *sl_admin_url_decode(const char *s, size_t len, bool plus_space);

/*
 * Converts the string values a form produced to the types the schema's
 * fields declare (Kong's arguments.infer_value): numbers, booleans, arrays
 * from single values, nested records and maps; "" becomes null. Fields the
 * schema does not know and records without a schema get a generic guess
 * (numbers and booleans). Modifies obj in place.
 */
void sl_admin_body_infer(const sl_field_t *fields, const sl_field_t *sub_fields, json_t *obj);

/* The same for an entity of schema, with the fields of the subschema its
 * body selects (a plugin's config fields by its name). */
void sl_admin_body_infer_schema(const sl_schema_t *schema, json_t *obj);

#endif
