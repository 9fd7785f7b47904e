/*
 * Initializers for the field and check shapes that both static schema
 * tables use: the entity schemas (entities.c) and the bundled plugins'
 * subschemas (plugin_schemas.c). Each expands to a brace initializer for
 * an sl_field_t or sl_check_t, so a table reads as a list of fields; shapes
 * that only one table uses stay in its file.
 */
#ifndef SL_SCHEMA_DEFS_H
#define SL_SCHEMA_DEFS_H

#include "schema-t.h"

/* Ends a field list. */
#define SL_FIELDS_END                                                                              \
    {                                                                                              \
        .name = NULL                                                                               \
    }

/* An optional string with no validators of its own. */
#define SL_FIELD_STRING(nm)                                                                        \
    {                                                                                              \
        .name = (nm), .type = SL_FT_STRING                                                         \
    }

/* A boolean with a default; fl is usually SL_F_REQUIRED, as Kong marks most
 * of them. */
#define SL_FIELD_BOOL(nm, dflt, fl)                                                                \
    {                                                                                              \
        .name = (nm), .type = SL_FT_BOOLEAN, .flags = (fl), .def = SL_DEF_BOOL, .def_int = (dflt)  \
    }

/* An integer with a default, between lo and hi inclusive. */
#define SL_FIELD_INT_BETWEEN(nm, dflt, lo, hi)                                                     \
    {                                                                                              \
        .name = (nm), .type = SL_FT_INTEGER, .def = SL_DEF_INT, .def_int = (dflt),                 \
        .between = true, .min = (lo), .max = (hi)                                                  \
    }

/* A foreign key into table ref; fl adds SL_F_REQUIRED, SL_F_CASCADE, ... */
#define SL_FIELD_FOREIGN(nm, ref, fl)                                                              \
    {                                                                                              \
        .name = (nm), .type = SL_FT_FOREIGN, .reference = (ref), .flags = (fl)                     \
    }

/* An entity check: then_field is required when if_field is the string val. */
#define SL_REQUIRED_WHEN(if_fld, val, then_fld)                                                    \
    {                                                                                              \
        .kind = SL_CHECK_CONDITIONAL, .if_field = (if_fld),                                        \
        .if_match = {.one_of = (const char *const[]){(val), NULL}}, .then_field = (then_fld),      \
        .then_match = {                                                                            \
            .flags = SL_M_REQUIRED                                                                 \
        }                                                                                          \
    }

#endif
