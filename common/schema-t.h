/*
 * Types of the table-driven schema engine: a schema is a static array of
 * field descriptions plus cross-field checks, in the manner of Kong's
 * kong.db.schema, so that entity definitions read as data and the same
 * validation (and the same messages) serve the declarative loader and the
 * Admin API.
 */
#ifndef SL_SCHEMA_T_H
#define SL_SCHEMA_T_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sl_ftype_e {
    SL_FT_STRING = 1,
    SL_FT_INTEGER,
    SL_FT_NUMBER,
    SL_FT_BOOLEAN,
    SL_FT_ARRAY,
    SL_FT_SET, /* an array whose duplicate scalar elements are dropped */
    SL_FT_MAP, /* an object with validated keys and values */
    SL_FT_RECORD,
    SL_FT_FOREIGN, /* {"id": "<uuid>"} pointing into another table */
} sl_ftype_t;

/* sl_field_t.flags */
enum {
    SL_F_REQUIRED = 1u << 0,      /* null or absent is "required field missing" */
    SL_F_UNIQUE = 1u << 1,        /* unique within its table (checked by the store/loader) */
    SL_F_UNIQUE_ALL_WS = 1u << 2, /* unique across workspaces (Kong's unique_across_ws) */
    SL_F_AUTO = 1u << 3,          /* generated on create when absent: uuid, timestamp, random key */
    SL_F_UUID = 1u << 4,          /* a string that must be a UUID */
    SL_F_TIMESTAMP = 1u << 5,     /* a number that must be > 0 */
    SL_F_EQ_NULL = 1u << 6,       /* any non-null value is an error (err or "value must be null") */
    SL_F_NE_TRUE = 1u << 7,       /* true is an error (err or "value must not be true") */
    SL_F_CASCADE = 1u << 8,       /* foreign key with on_delete = cascade */
    SL_F_EMPTY_OK = 1u << 9,      /* a string may be empty (Kong's len_min = 0) */
};

/* How a missing field is filled on create. SL_DEF_NONE gives null to an
 * optional field and leaves a required one missing (to fail validation). */
typedef enum sl_defkind_e {
    SL_DEF_NONE = 0,
    SL_DEF_BOOL,   /* def_int != 0 */
    SL_DEF_INT,    /* def_int */
    SL_DEF_NUMBER, /* def_num */
    SL_DEF_STRING, /* def_str */
    SL_DEF_JSON,   /* def_str holds JSON text (arrays such as protocols) */
    SL_DEF_RECORD, /* an object whose own fields get their defaults */
} sl_defkind_t;

/* A custom value check. Returns NULL when the value is acceptable, or a
 * malloc'd message the caller frees. */
typedef char *(*sl_value_cb)(const json_t *value);

/* A whole-entity check. Returns NULL or a malloc'd message for "@entity". */
typedef char *(*sl_entity_cb)(const json_t *entity);

struct sl_schema_s;

typedef struct sl_field_s {
    const char *name; /* NULL ends a field list */
    sl_ftype_t type;
    unsigned flags;

    sl_defkind_t def;
    int64_t def_int;
    double def_num;
    const char *def_str;

    /* Validators, run in Kong's order: eq/ne, not_one_of, one_of,
     * timestamp, uuid, between, len_min, len_max, starts_with, custom. */
    const char *const *one_of;     /* NULL-terminated strings */
    const char *const *not_one_of; /* NULL-terminated strings */
    const int64_t *one_of_int;
    size_t n_one_of_int;
    bool between;
    double min, max;
    unsigned len_min; /* 0: unset (strings default to 1) */
    unsigned len_max; /* 0: unset */
    const char *starts_with;
    sl_value_cb custom;
    const char *err; /* replaces the message of any failed validator */

    const struct sl_field_s *elements; /* array, set */
    const struct sl_field_s *keys;     /* map */
    const struct sl_field_s *values;   /* map */
    const struct sl_schema_s *record;  /* record; NULL accepts any object */
    const char *reference;             /* foreign: the referenced table */
} sl_field_t;

/* sl_match_t.flags */
enum {
    SL_M_REQUIRED = 1u << 0, /* null fails ("required field missing") */
    SL_M_EQ_NULL = 1u << 1,  /* non-null fails ("value must be null") */
    SL_M_LEN_EQ0 = 1u << 2,  /* non-empty fails ("length must be 0") */
};

/* The if/then/else part of a conditional check: a small set of validators
 * applied to one field's value. */
typedef struct sl_match_s {
    unsigned flags;
    const char *const *one_of;
    const char *const *not_one_of;
    const char *contains;                   /* an array that contains the string */
    const char *const *elements_one_of;     /* every element is in the list */
    const char *const *elements_not_one_of; /* no element is in the list */
    sl_value_cb custom;
} sl_match_t;

typedef enum sl_check_kind_e {
    SL_CHECK_END = 0,
    SL_CHECK_AT_LEAST_ONE_OF,
    SL_CHECK_ONLY_ONE_OF,
    SL_CHECK_MUTUALLY_REQUIRED,
    SL_CHECK_MUTUALLY_EXCLUSIVE,
    SL_CHECK_DISTINCT,
    SL_CHECK_CONDITIONAL,
    SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF,
    SL_CHECK_CUSTOM,
} sl_check_kind_t;

typedef struct sl_check_s {
    sl_check_kind_t kind;      /* SL_CHECK_END ends a list */
    const char *const *fields; /* the field list, or a custom check's inputs */

    const char *if_field;
    sl_match_t if_match;
    const char *then_field; /* conditional */
    sl_match_t then_match;
    const char *const *then_fields; /* conditional_at_least_one_of */
    const char *then_err;           /* "%s" receives the quoted field list */
    bool has_else;
    sl_match_t else_match;
    const char *const *else_fields;
    const char *else_err;

    sl_entity_cb custom;
} sl_check_t;

/* Picks the subschema (fields that override the parent's by name, plus more
 * checks) for an entity. Returns SL_OK with *out set (NULL: none, which is
 * fine) or SL_DECLINED when the subschema key names nothing known. */
typedef int (*sl_subschema_cb)(const json_t *entity, const struct sl_schema_s **out);

/* Rewrites shorthand fields (a service's "url") into real ones before
 * defaults are filled; reports bad shorthand values into errs. */
typedef void (*sl_shorthand_cb)(json_t *entity, json_t *errs);

typedef struct sl_schema_s {
    const char *name; /* the table name ("services"); NULL for nested records */
    const sl_field_t *fields;
    const sl_check_t *checks; /* may be NULL */

    /* Entity metadata for the declarative loader and the Admin API. */
    const char *endpoint_key;     /* alternative key in URLs and references, or NULL */
    const char *const *cache_key; /* fields forming Kong's cache key, or NULL */
    const char *admin_name;       /* Admin API collection ("key-auths"); NULL: the table name */

    const char *subschema_key; /* field selecting a subschema, or NULL */
    sl_subschema_cb subschema;
    const char *subschema_error; /* printf format with one %s; NULL: "unknown type: %s" */

    sl_shorthand_cb shorthand;
} sl_schema_t;

/* Options for sl_schema_validate_ex. */
typedef struct sl_schema_opts_s {
    double now;   /* seconds since the epoch for timestamps; 0: the current time */
    bool no_auto; /* do not generate ids, timestamps or random keys */
} sl_schema_opts_t;

#endif
