/*
 * schema.c is the engine behind every entity definition: it fills defaults
 * and validates a jansson object against an sl_schema_t, following the
 * semantics of Kong's kong/db/schema/init.lua closely enough that the same
 * input produces the same messages at the same places.
 *
 * The work happens in three passes over the object, as in Kong:
 *   1. shorthands (a service's "url") are expanded;
 *   2. defaults and generated values are filled in ("process auto fields");
 *   3. every field is validated, then the cross-field checks run.
 * Errors are collected into a json object shaped like the entity (field
 * errors under the field's name, array element errors at their index in an
 * array padded with nulls, map value errors under the map key, entity-level
 * errors in an "@entity" array); that object is what the Admin API returns
 * as `fields`, and flattening it gives the "path: message" strings the
 * declarative loader reports.
 *
 * Everything here is reentrant: schemas are static const data, and all state
 * lives on the stack or in the objects being validated.
 */
#include "schema.h"
#include "util.h"
#include "uuid.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

struct vctx {
    double now;
    bool no_auto;
};

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

/* Messages may quote user input; jansson would refuse invalid UTF-8, and a
 * message must never be lost, so strings are stored unchecked. */
static json_t *msg_take(char *s)
{
    json_t *j = json_string_nocheck(s);
    free(s);
    SL_ASSERT(j != NULL);
    return j;
}

static json_t *msg(const char *s)
{
    json_t *j = json_string_nocheck(s);
    SL_ASSERT(j != NULL);
    return j;
}

char *sl_schema_quoted_list(const char *const *names)
{
    size_t len = 1;
    for (size_t i = 0; names[i]; i++)
        len += strlen(names[i]) + 4;
    char *out = sl_xmalloc(len), *p = out;
    for (size_t i = 0; names[i]; i++)
        p += sprintf(p, "%s'%s'", i ? ", " : "", names[i]);
    *p = '\0';
    return out;
}

/* "a, b, c" for one_of messages. */
static char *plain_list(const char *const *names)
{
    size_t len = 1;
    for (size_t i = 0; names[i]; i++)
        len += strlen(names[i]) + 2;
    char *out = sl_xmalloc(len), *p = out;
    for (size_t i = 0; names[i]; i++)
        p += sprintf(p, "%s%s", i ? ", " : "", names[i]);
    *p = '\0';
    return out;
}

/* Replaces the first "%s" of fmt with arg. Schema tables carry Kong's
 * message templates as data, so they are filled here rather than passed to
 * printf as non-literal formats. */
static char *fill_fmt(const char *fmt, const char *arg)
{
    const char *p = strstr(fmt, "%s");
    if (p == NULL)
        return sl_xstrdup(fmt);
    return sl_xasprintf("%.*s%s%s", (int)(p - fmt), fmt, arg, p + 2);
}

static char *int_list(const int64_t *v, size_t n)
{
    char *out = sl_xmalloc(n * 22 + 1), *p = out;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%lld", i ? ", " : "", (long long)v[i]);
    *p = '\0';
    return out;
}

static void entity_error(json_t *errs, json_t *m)
{
    json_t *list = json_object_get(errs, "@entity");
    if (list == NULL) {
        list = json_array();
        json_object_set_new(errs, "@entity", list);
    }
    json_array_append_new(list, m);
}

/* ------------------------------------------------------------------------ */
/* Field lookup                                                              */

const sl_field_t *sl_schema_field(const sl_schema_t *schema, const sl_schema_t *sub,
                                  const char *name)
{
    if (sub != NULL) {
        for (const sl_field_t *f = sub->fields; f && f->name; f++)
            if (strcmp(f->name, name) == 0)
                return f;
    }
    for (const sl_field_t *f = schema->fields; f && f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* Kong's is_nonempty: not missing, not null, not "", not an empty aggregate. */
static bool nonempty(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return false;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (json_is_array(v))
        return json_array_size(v) > 0;
    if (json_is_object(v))
        return json_object_size(v) > 0;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Defaults and generated values                                             */

/* True for a finite double with no fractional part that fits a json_int_t
 * exactly (|d| < 2^53). Kept free of libm. */
static bool integral(double d)
{
    if (!(d > -9007199254740992.0 && d < 9007199254740992.0))
        return false;
    return (double)(json_int_t)d == d;
}

/* The whole part of a non-negative time. */
static json_int_t whole_seconds(double t)
{
    return (json_int_t)t;
}

static void fill_record(const sl_schema_t *s, const sl_schema_t *sub, json_t *obj,
                        const struct vctx *c);

/* A random 32-character alphanumeric key, like Kong's random_string(). */
static json_t *random_key(void)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char raw[32];
    char out[33];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        sl_panic(__FILE__, __LINE__, "RAND_bytes failed");
    for (size_t i = 0; i < sizeof(raw); i++)
        out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    out[32] = '\0';
    return json_string(out);
}

/* The value a missing field gets, or NULL to leave it missing. */
static json_t *missing_value(const sl_field_t *f, const struct vctx *c)
{
    switch (f->def) {
    case SL_DEF_BOOL:
        return json_boolean(f->def_int != 0);
    case SL_DEF_INT:
        return json_integer(f->def_int);
    case SL_DEF_NUMBER:
        return json_real(f->def_num);
    case SL_DEF_STRING:
        return json_string(f->def_str);
    case SL_DEF_JSON: {
        json_t *j = json_loads(f->def_str, JSON_DECODE_ANY, NULL);
        SL_ASSERT(j != NULL);
        return j;
    }
    case SL_DEF_RECORD: {
        json_t *obj = json_object();
        if (f->record)
            fill_record(f->record, NULL, obj, c);
        return obj;
    }
    case SL_DEF_NONE:
        break;
    }
    if (!(f->flags & SL_F_REQUIRED))
        return json_null();
    if (f->type == SL_FT_RECORD) {
        json_t *obj = json_object();
        if (f->record)
            fill_record(f->record, NULL, obj, c);
        return obj;
    }
    return NULL;
}

/* A text naming a scalar up to json_equal: its JSON form, with -0.0 spelled
 * as 0.0 (json_equal compares reals with ==). Reals always print with '.' or
 * 'e', so they never meet integers. */
static char *scalar_key(const json_t *v)
{
    if (json_is_real(v) && json_real_value(v) == 0)
        return sl_xstrdup("0.0");
    char *k = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    SL_ASSERT(k != NULL);
    return k;
}

/* Drops repeated scalar elements of a set, keeping the first of each. A hash
 * of the scalars seen keeps this linear: sets come from the user, and a
 * pairwise scan of a million-element one takes hours. */
static void dedupe_set(json_t *arr)
{
    if (json_array_size(arr) < 2)
        return;
    json_t *seen = json_object();
    json_t *kept = json_array();
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_object(v) && !json_is_array(v)) {
            char *k = scalar_key(v);
            bool dup = json_object_get(seen, k) != NULL;
            if (!dup)
                json_object_set_new(seen, k, json_true());
            free(k);
            if (dup)
                continue;
        }
        json_array_append(kept, v);
    }
    if (json_array_size(kept) < json_array_size(arr)) {
        json_array_clear(arr);
        json_array_extend(arr, kept);
    }
    json_decref(kept);
    json_decref(seen);
}

/*
 * Adjusts a present value for its field: recurses into records (filling
 * their defaults) and aggregates, turns integral reals into integers for
 * integer fields, and de-duplicates sets. Returns the value to store (a new
 * reference when it was replaced, else NULL meaning "keep").
 */
static json_t *adjust_value(const sl_field_t *f, json_t *v, const struct vctx *c)
{
    switch (f->type) {
    case SL_FT_RECORD:
        if (json_is_object(v) && f->record)
            fill_record(f->record, NULL, v, c);
        return NULL;
    case SL_FT_SET:
    case SL_FT_ARRAY:
        if (!json_is_array(v))
            return NULL;
        if (f->type == SL_FT_SET)
            dedupe_set(v);
        if (f->elements) {
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *n = adjust_value(f->elements, json_array_get(v, i), c);
                if (n)
                    json_array_set_new(v, i, n);
            }
        }
        return NULL;
    case SL_FT_MAP:
        if (json_is_object(v) && f->values) {
            const char *k;
            json_t *mv;
            void *tmp;
            json_object_foreach_safe(v, tmp, k, mv)
            {
                json_t *n = adjust_value(f->values, mv, c);
                if (n)
                    json_object_set_new_nocheck(v, k, n);
            }
        }
        return NULL;
    case SL_FT_INTEGER:
        if (json_is_real(v)) {
            double d = json_real_value(v);
            if (integral(d))
                return json_integer((json_int_t)d);
        }
        return NULL;
    default:
        return NULL;
    }
}

static void fill_auto(const sl_field_t *f, json_t *obj, const struct vctx *c)
{
    json_t *v = json_object_get(obj, f->name);
    if (f->flags & SL_F_UUID) {
        if (v == NULL) {
            char id[SL_UUID_STRLEN + 1];
            sl_uuid_v4(id);
            json_object_set_new(obj, f->name, json_string(id));
        }
    } else if (f->type == SL_FT_STRING) {
        if (v == NULL || json_is_null(v))
            json_object_set_new(obj, f->name, random_key());
    } else if (strcmp(f->name, "created_at") == 0 || strcmp(f->name, "updated_at") == 0) {
        if (v != NULL && !json_is_null(v) && strcmp(f->name, "created_at") == 0)
            return;
        if (f->type == SL_FT_INTEGER)
            json_object_set_new(obj, f->name, json_integer(whole_seconds(c->now)));
        else
            json_object_set_new(obj, f->name,
                                json_real((double)whole_seconds(c->now * 1000.0) / 1000.0));
    }
}

/* Kong's process_auto_fields for "insert". */
static void fill_record(const sl_schema_t *s, const sl_schema_t *sub, json_t *obj,
                        const struct vctx *c)
{
    for (const sl_field_t *base = s->fields; base && base->name; base++) {
        const sl_field_t *f = sub ? sl_schema_field(s, sub, base->name) : base;
        if ((f->flags & SL_F_AUTO) && !c->no_auto)
            fill_auto(f, obj, c);
        json_t *v = json_object_get(obj, f->name);
        if (v == NULL) {
            json_t *d = missing_value(f, c);
            if (d)
                json_object_set_new(obj, f->name, d);
            continue;
        }
        json_t *n = adjust_value(f, v, c);
        if (n)
            json_object_set_new(obj, f->name, n);
    }
}

/* ------------------------------------------------------------------------ */
/* Field validation                                                          */

static json_t *validate_record(const sl_schema_t *s, const sl_schema_t *sub, const json_t *obj);

static const char *type_error(sl_ftype_t t)
{
    switch (t) {
    case SL_FT_STRING:
        return "expected a string";
    case SL_FT_INTEGER:
        return "expected an integer";
    case SL_FT_NUMBER:
        return "expected a number";
    case SL_FT_BOOLEAN:
        return "expected a boolean";
    case SL_FT_ARRAY:
        return "expected an array";
    case SL_FT_SET:
        return "expected a set";
    case SL_FT_MAP:
        return "expected a map";
    case SL_FT_RECORD:
        return "expected a record";
    case SL_FT_FOREIGN:
        return "expected a record";
    }
    return "invalid type";
}

static bool type_ok(sl_ftype_t t, const json_t *v)
{
    switch (t) {
    case SL_FT_STRING:
        return json_is_string(v);
    case SL_FT_INTEGER:
        if (json_is_integer(v))
            return true;
        if (json_is_real(v)) {
            double d = json_real_value(v);
            return integral(d);
        }
        return false;
    case SL_FT_NUMBER:
        return json_is_number(v);
    case SL_FT_BOOLEAN:
        return json_is_boolean(v);
    case SL_FT_ARRAY:
    case SL_FT_SET:
        return json_is_array(v);
    case SL_FT_MAP:
    case SL_FT_RECORD:
    case SL_FT_FOREIGN:
        return json_is_object(v);
    }
    return false;
}

/* Length for len_* validators: bytes of a string, items of an aggregate. */
static size_t value_len(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v);
    if (json_is_array(v))
        return json_array_size(v);
    if (json_is_object(v))
        return json_object_size(v);
    return 0;
}

/* Returns the error of the first failing validator, or NULL. */
static json_t *run_validators(const sl_field_t *f, const json_t *v)
{
    char *m = NULL;
    if ((f->flags & SL_F_NE_TRUE) && json_is_true(v))
        m = sl_xstrdup("value must not be true");
    if (!m && f->not_one_of && json_is_string(v) && in_list(f->not_one_of, json_string_value(v))) {
        char *l = plain_list(f->not_one_of);
        m = sl_xasprintf("must not be one of: %s", l);
        free(l);
    }
    if (!m && f->one_of && json_is_string(v) && !in_list(f->one_of, json_string_value(v))) {
        char *l = plain_list(f->one_of);
        m = sl_xasprintf("expected one of: %s", l);
        free(l);
    }
    if (!m && f->one_of_int && json_is_integer(v)) {
        bool found = false;
        for (size_t i = 0; i < f->n_one_of_int && !found; i++)
            found = json_integer_value(v) == f->one_of_int[i];
        if (!found) {
            char *l = int_list(f->one_of_int, f->n_one_of_int);
            m = sl_xasprintf("expected one of: %s", l);
            free(l);
        }
    }
    if (!m && (f->flags & SL_F_TIMESTAMP) && json_is_number(v) && json_number_value(v) <= 0)
        m = sl_xstrdup("expected a valid timestamp");
    if (!m && (f->flags & SL_F_UUID) && json_is_string(v) && !sl_uuid_valid(json_string_value(v)))
        m = sl_xstrdup("expected a valid UUID");
    if (!m && f->between && json_is_number(v)) {
        double d = json_number_value(v);
        if (d < f->min || d > f->max)
            m = sl_xasprintf("value should be between %lld and %lld", (long long)f->min,
                             (long long)f->max);
    }
    unsigned len_min = f->len_min;
    if (len_min == 0 && f->type == SL_FT_STRING && !(f->flags & SL_F_EMPTY_OK))
        len_min = 1;
    if (!m && len_min && value_len(v) < len_min)
        m = sl_xasprintf("length must be at least %u", len_min);
    if (!m && f->len_max && value_len(v) > f->len_max)
        m = sl_xasprintf("length must be at most %u", f->len_max);
    if (!m && f->starts_with && json_is_string(v) &&
        strncmp(json_string_value(v), f->starts_with, strlen(f->starts_with)) != 0)
        m = sl_xasprintf("should start with: %s", f->starts_with);
    if (!m && f->custom)
        m = f->custom(v);
    if (!m)
        return NULL;
    if (f->err) {
        free(m);
        return msg(f->err);
    }
    return msg_take(m);
}

static json_t *validate_value(const sl_field_t *f, const json_t *v, bool required)
{
    if (v == NULL || json_is_null(v)) {
        if (required || (f->flags & SL_F_REQUIRED))
            return msg(SL_MSG_REQUIRED);
        return NULL;
    }
    if (f->flags & SL_F_EQ_NULL)
        return msg(f->err ? f->err : "value must be null");
    if (!type_ok(f->type, v)) {
        if (f->type == SL_FT_FOREIGN) {
            json_t *e = json_object();
            json_object_set_new(e, "id", msg("missing primary key"));
            return e;
        }
        return msg(type_error(f->type));
    }

    switch (f->type) {
    case SL_FT_ARRAY:
    case SL_FT_SET:
        if (f->elements) {
            json_t *errs = NULL;
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *e = validate_value(f->elements, json_array_get(v, i), true);
                if (e == NULL)
                    continue;
                if (errs == NULL)
                    errs = json_array();
                while (json_array_size(errs) < i)
                    json_array_append_new(errs, json_null());
                json_array_append_new(errs, e);
            }
            if (errs)
                return errs;
        }
        break;
    case SL_FT_MAP: {
        const char *k;
        json_t *mv;
        json_object_foreach((json_t *)v, k, mv)
        {
            if (f->keys) {
                json_t *key = json_string_nocheck(k);
                json_t *e = validate_value(f->keys, key, true);
                json_decref(key);
                if (e)
                    return e;
            }
            if (f->values) {
                json_t *e = validate_value(f->values, mv, true);
                if (e) {
                    json_t *wrap = json_object();
                    json_object_set_new_nocheck(wrap, k, e);
                    return wrap;
                }
            }
        }
        break;
    }
    case SL_FT_RECORD:
        if (f->record) {
            json_t *e = validate_record(f->record, NULL, v);
            if (e)
                return e;
        }
        break;
    case SL_FT_FOREIGN: {
        const json_t *id = json_object_get(v, "id");
        const char *m = NULL;
        if (id == NULL)
            m = "missing primary key";
        else if (json_is_null(id))
            m = SL_MSG_REQUIRED;
        else if (!json_is_string(id))
            m = "expected a string";
        else if (!sl_uuid_valid(json_string_value(id)))
            m = "expected a valid UUID";
        if (m) {
            json_t *e = json_object();
            json_object_set_new(e, "id", msg(m));
            return e;
        }
        break;
    }
    default:
        break;
    }
    return run_validators(f, v);
}

json_t *sl_schema_validate_field(const sl_field_t *field, const json_t *value)
{
    return validate_value(field, value, false);
}

/* ------------------------------------------------------------------------ */
/* Entity checks                                                             */

/*
 * Entity checks name their fields as Kong does, and like Kong's get_field and
 * set_field a name may be a dotted path into nested records ("config.allow"),
 * which lets a plugin subschema check fields of its config record. A path
 * through anything but an object reads as missing.
 */
static const json_t *get_path(const json_t *obj, const char *name)
{
    const char *dot;
    while ((dot = strchr(name, '.')) != NULL) {
        if (!json_is_object(obj))
            return NULL;
        obj = json_object_getn(obj, name, (size_t)(dot - name));
        name = dot + 1;
    }
    return json_is_object(obj) ? json_object_get(obj, name) : NULL;
}

/* Stores m at a dotted path of errs, creating the objects on the way. Kong
 * would fail outright where the path crosses an error that is not an object
 * (a record reported as "required field missing"); that error stays and m is
 * dropped. Takes the reference to m. */
static void set_path(json_t *errs, const char *name, json_t *m)
{
    const char *dot;
    while ((dot = strchr(name, '.')) != NULL) {
        json_t *next = json_object_getn(errs, name, (size_t)(dot - name));
        if (next == NULL) {
            next = json_object();
            json_object_setn_new_nocheck(errs, name, (size_t)(dot - name), next);
        } else if (!json_is_object(next)) {
            json_decref(m);
            return;
        }
        errs = next;
        name = dot + 1;
    }
    json_object_set_new_nocheck(errs, name, m);
}

/* The field a dotted path names, descending through record fields. */
static const sl_field_t *field_path(const sl_schema_t *s, const sl_schema_t *sub, const char *name)
{
    char seg[128];
    const sl_field_t *f = NULL;
    const char *dot;
    while ((dot = strchr(name, '.')) != NULL) {
        size_t n = (size_t)(dot - name);
        if (n >= sizeof(seg))
            return NULL;
        memcpy(seg, name, n);
        seg[n] = '\0';
        f = sl_schema_field(s, sub, seg);
        if (f == NULL || f->type != SL_FT_RECORD || f->record == NULL)
            return NULL;
        s = f->record;
        sub = NULL;
        name = dot + 1;
    }
    return sl_schema_field(s, sub, name);
}

/* A conditional's if/then/else matcher applied to one value; f is the field
 * the value belongs to (its `required` counts, as Kong merges the two). */
static char *match_value(const sl_match_t *m, const sl_field_t *f, const json_t *v)
{
    if (v == NULL || json_is_null(v)) {
        if ((m->flags & SL_M_REQUIRED) || (f && (f->flags & SL_F_REQUIRED)))
            return sl_xstrdup(SL_MSG_REQUIRED);
        return NULL;
    }
    if (m->flags & SL_M_EQ_NULL)
        return sl_xstrdup("value must be null");
    if (m->not_one_of && json_is_string(v) && in_list(m->not_one_of, json_string_value(v))) {
        char *l = plain_list(m->not_one_of), *r = sl_xasprintf("must not be one of: %s", l);
        free(l);
        return r;
    }
    if (m->one_of && (!json_is_string(v) || !in_list(m->one_of, json_string_value(v)))) {
        char *l = plain_list(m->one_of), *r = sl_xasprintf("expected one of: %s", l);
        free(l);
        return r;
    }
    if ((m->elements_one_of || m->elements_not_one_of || m->contains) && !json_is_array(v))
        return sl_xstrdup("expected an array");
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        const char *s = json_is_string(e) ? json_string_value(e) : "";
        if (m->elements_one_of && !in_list(m->elements_one_of, s)) {
            char *l = plain_list(m->elements_one_of), *r = sl_xasprintf("expected one of: %s", l);
            free(l);
            return r;
        }
        if (m->elements_not_one_of && in_list(m->elements_not_one_of, s)) {
            char *l = plain_list(m->elements_not_one_of),
                 *r = sl_xasprintf("must not be one of: %s", l);
            free(l);
            return r;
        }
    }
    if (m->contains) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(v) && !found; i++) {
            const json_t *e = json_array_get(v, i);
            found = json_is_string(e) && strcmp(json_string_value(e), m->contains) == 0;
        }
        if (!found)
            return sl_xasprintf("expected to contain: %s", m->contains);
    }
    if ((m->flags & SL_M_LEN_EQ0) && value_len(v) != 0)
        return sl_xstrdup("length must be 0");
    if (m->custom)
        return m->custom(v);
    return NULL;
}

/* Formats a check's message: then_err with the quoted list, or the generic
 * message of the check kind. */
static json_t *list_message(const char *fmt, const char *const *names)
{
    char *l = sl_schema_quoted_list(names);
    char *m = fill_fmt(fmt, l);
    free(l);
    return msg_take(m);
}

static void run_check(const sl_check_t *ck, const sl_schema_t *s, const sl_schema_t *sub,
                      const json_t *obj, json_t *errs)
{
    /* Which fields the check reads, which of them it requires, and whether
     * it runs when they are missing or invalid: Kong's run_entity_check. */
    const char *names[64];
    bool req[64];
    size_t n = 0;
    bool with_missing = false, with_invalid = true;

#define ADD_FIELD(nm, r)                                                                           \
    do {                                                                                           \
        if (n < SL_ARRAY_LEN(names)) {                                                             \
            names[n] = (nm);                                                                       \
            req[n++] = (r);                                                                        \
        }                                                                                          \
    } while (0)

    switch (ck->kind) {
    case SL_CHECK_AT_LEAST_ONE_OF:
    case SL_CHECK_MUTUALLY_REQUIRED:
    case SL_CHECK_MUTUALLY_EXCLUSIVE:
        with_missing = true;
        with_invalid = ck->kind == SL_CHECK_AT_LEAST_ONE_OF;
        for (size_t i = 0; ck->fields && ck->fields[i]; i++)
            ADD_FIELD(ck->fields[i], true);
        break;
    case SL_CHECK_ONLY_ONE_OF:
    case SL_CHECK_DISTINCT:
        for (size_t i = 0; ck->fields && ck->fields[i]; i++)
            ADD_FIELD(ck->fields[i], true);
        break;
    case SL_CHECK_CONDITIONAL:
        ADD_FIELD(ck->if_field, true);
        ADD_FIELD(ck->then_field, false);
        break;
    case SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF:
        with_missing = true;
        ADD_FIELD(ck->if_field, false);
        for (size_t i = 0; ck->then_fields && ck->then_fields[i]; i++)
            ADD_FIELD(ck->then_fields[i], false);
        for (size_t i = 0; ck->else_fields && ck->else_fields[i]; i++)
            ADD_FIELD(ck->else_fields[i], false);
        break;
    case SL_CHECK_CUSTOM:
        with_invalid = false;
        for (size_t i = 0; ck->fields && ck->fields[i]; i++)
            ADD_FIELD(ck->fields[i], true);
        break;
    case SL_CHECK_END:
        return;
    }
#undef ADD_FIELD

    bool all_nil = true, all_ok = true;
    const char *missing[64];
    size_t n_missing = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = get_path(obj, names[i]);
        if (v == NULL) {
            if (!with_missing && req[i])
                missing[n_missing++] = names[i];
        } else {
            all_nil = false;
        }
        if (json_object_get(errs, names[i]))
            all_ok = false;
    }
    if (!all_ok && !with_invalid)
        return;
    if (all_nil && !with_missing)
        return;
    if (n_missing) {
        for (size_t i = 0; i < n_missing; i++)
            set_path(errs, missing[i], msg("field required for entity check"));
        return;
    }

    size_t count = 0;
    switch (ck->kind) {
    case SL_CHECK_AT_LEAST_ONE_OF:
        for (size_t i = 0; i < n; i++)
            if (nonempty(get_path(obj, names[i])))
                return;
        entity_error(
            errs, list_message("at least one of these fields must be non-empty: %s", ck->fields));
        return;
    case SL_CHECK_ONLY_ONE_OF:
        for (size_t i = 0; i < n; i++)
            count += nonempty(get_path(obj, names[i]));
        if (count != 1)
            entity_error(errs, list_message("exactly one of these fields must be non-empty: %s",
                                            ck->fields));
        return;
    case SL_CHECK_MUTUALLY_REQUIRED:
        for (size_t i = 0; i < n; i++)
            count += nonempty(get_path(obj, names[i]));
        if (count != 0 && count != n)
            entity_error(errs,
                         list_message("all or none of these fields must be set: %s", ck->fields));
        return;
    case SL_CHECK_MUTUALLY_EXCLUSIVE:
        for (size_t i = 0; i < n; i++)
            count += nonempty(get_path(obj, names[i]));
        if (count > 1)
            entity_error(
                errs, list_message("only one or none of these fields must be set: %s", ck->fields));
        return;
    case SL_CHECK_DISTINCT:
        for (size_t i = 0; i < n; i++) {
            const json_t *a = get_path(obj, names[i]);
            if (!nonempty(a))
                continue;
            for (size_t j = 0; j < i; j++) {
                const json_t *b = get_path(obj, names[j]);
                if (nonempty(b) && json_equal(a, b)) {
                    entity_error(errs, list_message("values of these fields must be distinct: %s",
                                                    ck->fields));
                    return;
                }
            }
        }
        return;
    case SL_CHECK_CONDITIONAL: {
        const json_t *if_v = get_path(obj, ck->if_field);
        const json_t *then_v = get_path(obj, ck->then_field);
        char *m = match_value(&ck->if_match, field_path(s, sub, ck->if_field), if_v);
        if (m) {
            free(m);
            return;
        }
        if ((ck->then_match.flags & SL_M_REQUIRED) && (then_v == NULL || json_is_null(then_v))) {
            set_path(errs, ck->then_field, msg(SL_MSG_REQUIRED));
        } else {
            m = match_value(&ck->then_match, NULL, then_v);
            if (m == NULL)
                return;
            set_path(errs, ck->then_field, msg_take(m));
            if (ck->then_err) {
                entity_error(errs, msg_take(fill_fmt(ck->then_err, ck->if_field)));
                return;
            }
        }
        entity_error(
            errs, msg_take(sl_xasprintf("failed conditional validation given value of field '%s'",
                                        ck->if_field)));
        return;
    }
    case SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF: {
        const json_t *if_v = get_path(obj, ck->if_field);
        if (if_v == NULL)
            return;
        const sl_field_t *if_f = field_path(s, sub, ck->if_field);
        const char *const *list = ck->then_fields;
        const char *fmt = ck->then_err;
        char *m = match_value(&ck->if_match, if_f, if_v);
        if (m) {
            free(m);
            if (!ck->has_else)
                return;
            m = match_value(&ck->else_match, if_f, if_v);
            if (m) {
                free(m);
                return;
            }
            list = ck->else_fields;
            fmt = ck->else_err;
        }
        for (size_t i = 0; list && list[i]; i++)
            if (nonempty(get_path(obj, list[i])))
                return;
        entity_error(errs, list_message(fmt ? fmt
                                            : "at least one of these fields must be "
                                              "non-empty: %s",
                                        list));
        return;
    }
    case SL_CHECK_CUSTOM: {
        char *m = ck->custom(obj);
        if (m)
            entity_error(errs, msg_take(m));
        return;
    }
    case SL_CHECK_END:
        return;
    }
}

/* Validates every field of obj and runs the checks of s (and sub). Returns
 * the error object, or NULL when everything is valid. */
static json_t *validate_record(const sl_schema_t *s, const sl_schema_t *sub, const json_t *obj)
{
    json_t *errs = json_object();
    for (const sl_field_t *base = s->fields; base && base->name; base++) {
        const sl_field_t *f = sub ? sl_schema_field(s, sub, base->name) : base;
        json_t *e = validate_value(f, json_object_get(obj, f->name), false);
        if (e)
            json_object_set_new(errs, f->name, e);
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (sl_schema_field(s, sub, k) == NULL)
            json_object_set_new_nocheck(errs, k, msg(SL_MSG_UNKNOWN));
    }
    for (const sl_check_t *ck = s->checks; ck && ck->kind; ck++)
        run_check(ck, s, sub, obj, errs);
    for (const sl_check_t *ck = sub ? sub->checks : NULL; ck && ck->kind; ck++)
        run_check(ck, s, sub, obj, errs);
    if (json_object_size(errs) == 0) {
        json_decref(errs);
        return NULL;
    }
    return errs;
}

/* ------------------------------------------------------------------------ */
/* Flattening                                                                */

static void flatten(const json_t *e, char *path, size_t len, size_t cap, sl_errors_t *flat)
{
    if (json_is_string(e)) {
        if (len)
            sl_errors_add(flat, "%.*s: %s", (int)len, path, json_string_value(e));
        else
            sl_errors_add(flat, "%s", json_string_value(e));
        return;
    }
    if (json_is_array(e)) {
        for (size_t i = 0; i < json_array_size(e); i++) {
            const json_t *x = json_array_get(e, i);
            if (json_is_null(x))
                continue;
            int n = snprintf(path + len, cap - len, "[%zu]", i);
            size_t nl = (n > 0 && (size_t)n < cap - len) ? len + (size_t)n : len;
            flatten(x, path, nl, cap, flat);
            path[len] = '\0';
        }
        return;
    }
    if (!json_is_object(e))
        return;
    const json_t *ent = json_object_get(e, "@entity");
    for (size_t i = 0; json_is_array(ent) && i < json_array_size(ent); i++)
        flatten(json_array_get(ent, i), path, len, cap, flat);
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)e, k, x)
    {
        if (strcmp(k, "@entity") == 0)
            continue;
        int n = snprintf(path + len, cap - len, "%s%s", len ? "." : "", k);
        size_t nl = (n > 0 && (size_t)n < cap - len) ? len + (size_t)n : len;
        flatten(x, path, nl, cap, flat);
        path[len] = '\0';
    }
}

void sl_schema_flatten_errors(const json_t *fields, const char *path_prefix, sl_errors_t *flat)
{
    char path[1024];
    size_t len = 0;
    if (path_prefix) {
        len = strlen(path_prefix);
        if (len >= sizeof(path))
            len = sizeof(path) - 1;
        memcpy(path, path_prefix, len);
    }
    path[len] = '\0';
    flatten(fields, path, len, sizeof(path), flat);
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */

/* Puts the keys of obj in schema order (unknown keys would have failed). */
static void order_keys(const sl_schema_t *s, json_t *obj)
{
    json_t *tmp = json_object();
    for (const sl_field_t *f = s->fields; f && f->name; f++) {
        json_t *v = json_object_get(obj, f->name);
        if (v)
            json_object_set(tmp, f->name, v);
    }
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (json_object_get(tmp, k) == NULL)
            json_object_set_nocheck(tmp, k, v);
    }
    json_object_clear(obj);
    json_object_update(obj, tmp);
    json_decref(tmp);
}

static int finish(json_t *errs, const char *prefix, sl_errors_t *flat, json_t *fields_out)
{
    if (json_object_size(errs) == 0) {
        json_decref(errs);
        return SL_OK;
    }
    if (flat)
        sl_schema_flatten_errors(errs, prefix, flat);
    if (fields_out)
        json_object_update(fields_out, errs);
    json_decref(errs);
    return SL_ERR_INVALID;
}

int sl_schema_validate_ex(const sl_schema_t *s, json_t *entity, const sl_schema_opts_t *opts,
                          const char *prefix, sl_errors_t *flat, json_t *fields_out)
{
    struct vctx c = {0};
    if (opts) {
        c.now = opts->now;
        c.no_auto = opts->no_auto;
    }
    if (c.now <= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c.now = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
    }

    json_t *errs = json_object();
    if (!json_is_object(entity)) {
        entity_error(errs, msg("expected a record"));
        return finish(errs, prefix, flat, fields_out);
    }

    if (s->shorthand) {
        s->shorthand(entity, errs);
        if (json_object_size(errs))
            return finish(errs, prefix, flat, fields_out);
    }

    /* The subschema decides some defaults (grpc routes do not strip the
     * path), so it is picked from the input first, then again once the
     * defaults are in, exactly as Kong does. */
    const sl_schema_t *sub = NULL;
    if (s->subschema && s->subschema(entity, &sub) != SL_OK)
        sub = NULL;
    fill_record(s, sub, entity, &c);

    sub = NULL;
    if (s->subschema_key) {
        const json_t *key = json_object_get(entity, s->subschema_key);
        if (key == NULL || json_is_null(key)) {
            json_object_set_new(errs, s->subschema_key, msg(SL_MSG_REQUIRED));
            return finish(errs, prefix, flat, fields_out);
        }
        if (s->subschema && s->subschema(entity, &sub) != SL_OK) {
            const char *kv = "";
            if (json_is_string(key))
                kv = json_string_value(key);
            else if (json_is_array(key) && json_is_string(json_array_get(key, 0)))
                kv = json_string_value(json_array_get(key, 0));
            json_object_set_new(
                errs, s->subschema_key,
                msg_take(
                    fill_fmt(s->subschema_error ? s->subschema_error : "unknown type: %s", kv)));
            return finish(errs, prefix, flat, fields_out);
        }
    }

    json_t *e = validate_record(s, sub, entity);
    if (e) {
        json_object_update(errs, e);
        json_decref(e);
    }
    int rc = finish(errs, prefix, flat, fields_out);
    if (rc == SL_OK)
        order_keys(s, entity);
    return rc;
}

int sl_schema_validate(const sl_schema_t *s, json_t *entity, const char *prefix, sl_errors_t *flat,
                       json_t *fields_out)
{
    return sl_schema_validate_ex(s, entity, NULL, prefix, flat, fields_out);
}
