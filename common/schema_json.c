/*
 * schema_json.c renders schemas in Kong's JSON shape and compiles such JSON
 * back into schema tables. Compiled schemas live in one arena each, so a
 * schema and everything it points to go away in one call.
 */
#include "schema_json.h"
#include "arena.h"
#include "util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Rendering                                                                 */

static const char *type_name(sl_ftype_t t)
{
    switch (t) {
    case SL_FT_STRING:
        return "string";
    case SL_FT_INTEGER:
        return "integer";
    case SL_FT_NUMBER:
        return "number";
    case SL_FT_BOOLEAN:
        return "boolean";
    case SL_FT_ARRAY:
        return "array";
    case SL_FT_SET:
        return "set";
    case SL_FT_MAP:
        return "map";
    case SL_FT_RECORD:
        return "record";
    case SL_FT_FOREIGN:
        return "foreign";
    }
    return "string";
}

static json_t *strlist(const char *const *l)
{
    json_t *a = json_array();
    for (size_t i = 0; l && l[i]; i++)
        json_array_append_new(a, json_string(l[i]));
    return a;
}

static json_t *fields_json(const sl_field_t *fields);

json_t *sl_schema_field_json(const sl_field_t *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type_name(f->type)));
    if (f->flags & SL_F_REQUIRED)
        json_object_set_new(o, "required", json_true());
    if (f->flags & (SL_F_UNIQUE | SL_F_UNIQUE_ALL_WS))
        json_object_set_new(o, "unique", json_true());
    if (f->flags & SL_F_AUTO)
        json_object_set_new(o, "auto", json_true());
    if (f->flags & SL_F_UUID)
        json_object_set_new(o, "uuid", json_true());
    if (f->flags & SL_F_TIMESTAMP)
        json_object_set_new(o, "timestamp", json_true());
    if (f->flags & SL_F_CASCADE)
        json_object_set_new(o, "on_delete", json_string("cascade"));
    switch (f->def) {
    case SL_DEF_BOOL:
        json_object_set_new(o, "default", json_boolean(f->def_int != 0));
        break;
    case SL_DEF_INT:
        json_object_set_new(o, "default", json_integer(f->def_int));
        break;
    case SL_DEF_NUMBER:
        json_object_set_new(o, "default", json_real(f->def_num));
        break;
    case SL_DEF_STRING:
        json_object_set_new(o, "default", json_string(f->def_str));
        break;
    case SL_DEF_JSON: {
        json_t *d = json_loads(f->def_str, JSON_DECODE_ANY, NULL);
        if (d)
            json_object_set_new(o, "default", d);
        break;
    }
    default:
        break;
    }
    if (f->one_of)
        json_object_set_new(o, "one_of", strlist(f->one_of));
    if (f->not_one_of)
        json_object_set_new(o, "not_one_of", strlist(f->not_one_of));
    if (f->one_of_int) {
        json_t *a = json_array();
        for (size_t i = 0; i < f->n_one_of_int; i++)
            json_array_append_new(a, json_integer(f->one_of_int[i]));
        json_object_set_new(o, "one_of", a);
    }
    if (f->between)
        json_object_set_new(o, "between", json_pack("[f,f]", f->min, f->max));
    if (f->len_min)
        json_object_set_new(o, "len_min", json_integer(f->len_min));
    if (f->len_max)
        json_object_set_new(o, "len_max", json_integer(f->len_max));
    if (f->starts_with)
        json_object_set_new(o, "starts_with", json_string(f->starts_with));
    if (f->reference)
        json_object_set_new(o, "reference", json_string(f->reference));
    if (f->elements)
        json_object_set_new(o, "elements", sl_schema_field_json(f->elements));
    if (f->keys)
        json_object_set_new(o, "keys", sl_schema_field_json(f->keys));
    if (f->values)
        json_object_set_new(o, "values", sl_schema_field_json(f->values));
    if (f->type == SL_FT_RECORD)
        json_object_set_new(o, "fields", f->record ? fields_json(f->record->fields) : json_array());
    return o;
}

static json_t *fields_json(const sl_field_t *fields)
{
    json_t *a = json_array();
    for (const sl_field_t *f = fields; f && f->name; f++)
        json_array_append_new(a, json_pack("{s:o}", f->name, sl_schema_field_json(f)));
    return a;
}

static json_t *checks_json(const sl_check_t *checks)
{
    json_t *a = json_array();
    for (const sl_check_t *c = checks; c && c->kind != SL_CHECK_END; c++) {
        const char *k = NULL;
        switch (c->kind) {
        case SL_CHECK_AT_LEAST_ONE_OF:
            k = "at_least_one_of";
            break;
        case SL_CHECK_ONLY_ONE_OF:
            k = "only_one_of";
            break;
        case SL_CHECK_MUTUALLY_REQUIRED:
            k = "mutually_required";
            break;
        case SL_CHECK_MUTUALLY_EXCLUSIVE:
            k = "mutually_exclusive";
            break;
        case SL_CHECK_DISTINCT:
            k = "distinct";
            break;
        case SL_CHECK_CONDITIONAL:
            k = "conditional";
            break;
        case SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF:
            k = "conditional_at_least_one_of";
            break;
        case SL_CHECK_CUSTOM:
            k = "custom_entity_check";
            break;
        default:
            break;
        }
        if (!k)
            continue;
        json_t *body;
        if (c->kind == SL_CHECK_CONDITIONAL || c->kind == SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF) {
            body = json_object();
            if (c->if_field)
                json_object_set_new(body, "if_field", json_string(c->if_field));
            if (c->then_field)
                json_object_set_new(body, "then_field", json_string(c->then_field));
            if (c->then_fields)
                json_object_set_new(body, "then_at_least_one_of", strlist(c->then_fields));
        } else if (c->kind == SL_CHECK_CUSTOM) {
            body = json_pack("{s:o}", "field_sources", strlist(c->fields));
        } else {
            body = strlist(c->fields);
        }
        json_array_append_new(a, json_pack("{s:o}", k, body));
    }
    return a;
}

json_t *sl_schema_json(const sl_schema_t *s)
{
    json_t *o = json_pack("{s:o,s:o}", "fields", fields_json(s->fields), "entity_checks",
                          checks_json(s->checks));
    if (s->endpoint_key)
        json_object_set_new(o, "endpoint_key", json_string(s->endpoint_key));
    if (s->cache_key)
        json_object_set_new(o, "cache_key", strlist(s->cache_key));
    if (s->subschema_key)
        json_object_set_new(o, "subschema_key", json_string(s->subschema_key));
    if (s->name)
        json_object_set_new(o, "name", json_string(s->name));
    return o;
}

/* ------------------------------------------------------------------------ */
/* Compiling                                                                 */

typedef struct compiled_s {
    sl_schema_t schema; /* first, so that the schema pointer frees the whole */
    sl_arena_t arena;
} compiled_t;

typedef struct cctx_s {
    sl_arena_t *arena;
    sl_errors_t *errs;
    const char *path;
    size_t nfields;
    bool failed;
} cctx_t;

static void __attribute__((format(printf, 3, 4)))
cerr(cctx_t *c, const char *where, const char *fmt, ...)
{
    char m[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    sl_errors_add(c->errs, "%s%s%.200s: %s", c->path, *c->path && *where ? "." : "", where, m);
    c->failed = true;
}

static void *czalloc(cctx_t *c, size_t n)
{
    void *p = sl_arena_alloc(c->arena, n);
    memset(p, 0, n);
    return p;
}

static const char *cdup(cctx_t *c, const char *s)
{
    return sl_arena_strndup(c->arena, s, strlen(s));
}

/* "where.name" in the arena, for error paths. */
static const char *cjoin(cctx_t *c, const char *where, const char *name)
{
    size_t a = strlen(where), b = strlen(name);
    char *p = sl_arena_alloc(c->arena, a + b + 2);
    memcpy(p, where, a);
    p[a] = a ? '.' : '\0';
    memcpy(p + (a ? a + 1 : 0), name, b + 1);
    return p;
}

static const char *const *cstrlist(cctx_t *c, const char *where, const json_t *arr)
{
    if (!json_is_array(arr)) {
        cerr(c, where, "expected an array of strings");
        return NULL;
    }
    size_t n = json_array_size(arr);
    const char **out = czalloc(c, (n + 1) * sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(arr, i);
        if (!json_is_string(s)) {
            cerr(c, where, "expected an array of strings");
            return NULL;
        }
        out[i] = cdup(c, json_string_value(s));
    }
    return out;
}

static const struct {
    const char *name;
    sl_ftype_t type;
} ftypes[] = {
    {"string", SL_FT_STRING},   {"integer", SL_FT_INTEGER}, {"number", SL_FT_NUMBER},
    {"boolean", SL_FT_BOOLEAN}, {"array", SL_FT_ARRAY},     {"set", SL_FT_SET},
    {"map", SL_FT_MAP},         {"record", SL_FT_RECORD},
};

static const sl_schema_t *compile_record(cctx_t *c, const char *where, const json_t *fields,
                                         const json_t *checks, int depth);

static void compile_default(cctx_t *c, const char *where, const json_t *d, sl_field_t *f)
{
    if (json_is_null(d))
        return;
    bool ok = false;
    switch (f->type) {
    case SL_FT_BOOLEAN:
        if ((ok = json_is_boolean(d))) {
            f->def = SL_DEF_BOOL;
            f->def_int = json_is_true(d);
        }
        break;
    case SL_FT_INTEGER:
        if ((ok = json_is_integer(d))) {
            f->def = SL_DEF_INT;
            f->def_int = json_integer_value(d);
        }
        break;
    case SL_FT_NUMBER:
        if ((ok = json_is_number(d))) {
            f->def = SL_DEF_NUMBER;
            f->def_num = json_number_value(d);
        }
        break;
    case SL_FT_STRING:
        if ((ok = json_is_string(d))) {
            f->def = SL_DEF_STRING;
            f->def_str = cdup(c, json_string_value(d));
        }
        break;
    case SL_FT_ARRAY:
    case SL_FT_SET:
    case SL_FT_MAP:
    case SL_FT_RECORD:
        ok = f->type == SL_FT_MAP || f->type == SL_FT_RECORD ? json_is_object(d) : json_is_array(d);
        if (ok) {
            char *text = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
            f->def = SL_DEF_JSON;
            f->def_str = cdup(c, text);
            free(text);
        }
        break;
    case SL_FT_FOREIGN:
        break;
    }
    if (!ok)
        cerr(c, where, "default: does not match the field's type");
}

static void compile_field(cctx_t *c, const char *where, const json_t *def, sl_field_t *f, int depth)
{
    if (depth > SL_SCHEMA_MAX_DEPTH) {
        cerr(c, where, "nested deeper than %s levels", SL_XSTR(SL_SCHEMA_MAX_DEPTH));
        return;
    }
    if (++c->nfields > SL_SCHEMA_MAX_FIELDS) {
        if (c->nfields == SL_SCHEMA_MAX_FIELDS + 1)
            cerr(c, where, "more than %s fields", SL_XSTR(SL_SCHEMA_MAX_FIELDS));
        return;
    }
    if (!json_is_object(def)) {
        cerr(c, where, "expected a field definition (an object with a 'type')");
        return;
    }
    const char *type = json_string_value(json_object_get(def, "type"));
    size_t t;
    for (t = 0; type && t < SL_ARRAY_LEN(ftypes); t++)
        if (!strcmp(type, ftypes[t].name))
            break;
    if (!type || t == SL_ARRAY_LEN(ftypes)) {
        if (type)
            cerr(c, where,
                 "type: '%.60s' is not one of string, integer, number, boolean, array, set, map, "
                 "record",
                 type);
        else
            cerr(c, where, "type: required field missing");
        return;
    }
    f->type = ftypes[t].type;
    if (json_is_true(json_object_get(def, "required")))
        f->flags |= SL_F_REQUIRED;
    if (json_is_true(json_object_get(def, "uuid")))
        f->flags |= SL_F_UUID;
    const json_t *v;
    if ((v = json_object_get(def, "default")))
        compile_default(c, cjoin(c, where, "default"), v, f);
    if ((v = json_object_get(def, "one_of"))) {
        if (json_is_array(v) && json_array_size(v) > 0 && json_is_integer(json_array_get(v, 0))) {
            size_t n = json_array_size(v);
            int64_t *ints = czalloc(c, n * sizeof(*ints));
            for (size_t i = 0; i < n; i++) {
                if (!json_is_integer(json_array_get(v, i)))
                    cerr(c, where, "one_of: expected an array of strings or of integers");
                ints[i] = json_integer_value(json_array_get(v, i));
            }
            f->one_of_int = ints;
            f->n_one_of_int = n;
        } else {
            f->one_of = cstrlist(c, cjoin(c, where, "one_of"), v);
        }
    }
    if ((v = json_object_get(def, "not_one_of")))
        f->not_one_of = cstrlist(c, cjoin(c, where, "not_one_of"), v);
    if ((v = json_object_get(def, "between"))) {
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
            !json_is_number(json_array_get(v, 1))) {
            cerr(c, where, "between: expected [min, max]");
        } else {
            f->between = true;
            f->min = json_number_value(json_array_get(v, 0));
            f->max = json_number_value(json_array_get(v, 1));
        }
    }
    static const char *const lens[] = {"len_min", "len_max"};
    for (size_t i = 0; i < 2; i++) {
        if (!(v = json_object_get(def, lens[i])))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX) {
            cerr(c, where, "%s: expected a non-negative integer", lens[i]);
            continue;
        }
        *(i ? &f->len_max : &f->len_min) = (unsigned)json_integer_value(v);
        if (i == 0 && json_integer_value(v) == 0)
            f->flags |= SL_F_EMPTY_OK;
    }
    if ((v = json_object_get(def, "starts_with"))) {
        if (json_is_string(v))
            f->starts_with = cdup(c, json_string_value(v));
        else
            cerr(c, where, "starts_with: expected a string");
    }
    switch (f->type) {
    case SL_FT_ARRAY:
    case SL_FT_SET: {
        sl_field_t *el = czalloc(c, sizeof(*el));
        compile_field(c, cjoin(c, where, "elements"), json_object_get(def, "elements"), el,
                      depth + 1);
        f->elements = el;
        break;
    }
    case SL_FT_MAP: {
        sl_field_t *k = czalloc(c, sizeof(*k)), *val = czalloc(c, sizeof(*val));
        compile_field(c, cjoin(c, where, "keys"), json_object_get(def, "keys"), k, depth + 1);
        compile_field(c, cjoin(c, where, "values"), json_object_get(def, "values"), val, depth + 1);
        f->keys = k;
        f->values = val;
        break;
    }
    case SL_FT_RECORD:
        if ((v = json_object_get(def, "fields")))
            f->record =
                compile_record(c, where, v, json_object_get(def, "entity_checks"), depth + 1);
        if (f->def == SL_DEF_NONE && (f->flags & SL_F_REQUIRED))
            f->def = SL_DEF_RECORD;
        break;
    default:
        break;
    }
}

static const struct {
    const char *name;
    sl_check_kind_t kind;
} check_kinds[] = {
    {"at_least_one_of", SL_CHECK_AT_LEAST_ONE_OF},
    {"only_one_of", SL_CHECK_ONLY_ONE_OF},
    {"mutually_required", SL_CHECK_MUTUALLY_REQUIRED},
    {"mutually_exclusive", SL_CHECK_MUTUALLY_EXCLUSIVE},
    {"distinct", SL_CHECK_DISTINCT},
};

static bool has_field(const sl_field_t *fields, const char *name)
{
    for (const sl_field_t *f = fields; f->name; f++)
        if (!strcmp(f->name, name))
            return true;
    return false;
}

static const sl_check_t *compile_checks(cctx_t *c, const char *where, const json_t *arr,
                                        const sl_field_t *fields)
{
    size_t n = json_array_size(arr), k = 0;
    sl_check_t *out = czalloc(c, (n + 1) * sizeof(*out));
    where = cjoin(c, where, "entity_checks");
    for (size_t i = 0; i < n; i++) {
        const json_t *chk = json_array_get(arr, i);
        const char *kind;
        const json_t *list;
        json_object_foreach((json_t *)chk, kind, list)
        {
            for (size_t j = 0; j < SL_ARRAY_LEN(check_kinds); j++) {
                if (strcmp(kind, check_kinds[j].name) != 0)
                    continue;
                const char *const *names = cstrlist(c, cjoin(c, where, kind), list);
                for (size_t m = 0; names && names[m]; m++)
                    if (!has_field(fields, names[m]))
                        cerr(c, cjoin(c, where, kind), "unknown field '%.100s'", names[m]);
                out[k].kind = check_kinds[j].kind;
                out[k++].fields = names;
            }
        }
    }
    out[k].kind = SL_CHECK_END;
    return out;
}

static const sl_schema_t *compile_record(cctx_t *c, const char *where, const json_t *fields,
                                         const json_t *checks, int depth)
{
    if (!json_is_array(fields)) {
        cerr(c, cjoin(c, where, "fields"), "expected an array of {\"name\": {definition}}");
        return NULL;
    }
    size_t n = json_array_size(fields);
    sl_field_t *fs = czalloc(c, (n + 1) * sizeof(*fs));
    for (size_t i = 0; i < n; i++) {
        const json_t *one = json_array_get(fields, i);
        const char *name = NULL;
        const json_t *def = NULL;
        if (json_is_object(one) && json_object_size(one) == 1) {
            void *it = json_object_iter((json_t *)one);
            name = json_object_iter_key(it);
            def = json_object_iter_value(it);
        }
        if (!name || !*name || strlen(name) > 256) {
            cerr(c, cjoin(c, where, "fields"),
                 "each element must be an object with one key, the field name (1 to 256 "
                 "characters)");
            continue;
        }
        if (has_field(fs, name)) {
            cerr(c, where, "field '%.100s' is defined twice", name);
            continue;
        }
        fs[i].name = cdup(c, name);
        compile_field(c, cjoin(c, where, name), def, &fs[i], depth);
        if (c->failed)
            return NULL;
    }
    sl_schema_t *s = czalloc(c, sizeof(*s));
    s->fields = fs;
    if (json_is_array(checks))
        s->checks = compile_checks(c, where, checks, fs);
    return s;
}

sl_schema_t *sl_schema_compile(const json_t *table, const char *path, sl_errors_t *errs)
{
    compiled_t *cs = sl_xcalloc(1, sizeof(*cs));
    sl_arena_init(&cs->arena);
    cctx_t c = {.arena = &cs->arena, .errs = errs, .path = path ? path : ""};
    const sl_schema_t *rec = NULL;
    if (!json_is_object(table))
        cerr(&c, "", "expected a schema object with 'fields'");
    else
        rec = compile_record(&c, "", json_object_get(table, "fields"),
                             json_object_get(table, "entity_checks"), 0);
    if (c.failed || !rec) {
        sl_arena_dispose(&cs->arena);
        free(cs);
        return NULL;
    }
    cs->schema = *rec;
    const char *name = json_string_value(json_object_get(table, "name"));
    cs->schema.name = name ? cdup(&c, name) : NULL;
    return &cs->schema;
}

void sl_schema_compiled_free(sl_schema_t *schema)
{
    if (!schema)
        return;
    compiled_t *cs = (compiled_t *)schema;
    sl_arena_dispose(&cs->arena);
    free(cs);
}
