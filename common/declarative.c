/*
 * declarative.c loads a Kong-format declarative configuration (YAML or JSON)
 * into the flat, normalised document described in declarative.h. It runs on
 * whichever thread asks (the data plane's config loader, later the control
 * plane's /config), keeps no global state, and owns nothing after it returns
 * except the document it hands over.
 *
 * A load is a pipeline over one parsed tree, each stage reporting every
 * problem it finds with the path the user wrote (services[0].routes[1]...):
 *
 *   1. parse: JSON when the text starts with '{' or '[', YAML otherwise,
 *      bounded in size and depth;
 *   2. top level: _format_version ("1.1" and "2.1" are migrated to "3.0":
 *      regex-looking route paths get their '~'), _transform, _comment,
 *      _ignore, and the entity lists;
 *   3. collect: every entity, nested ones included, becomes an item that
 *      remembers its path and its parent; nested lists are detached;
 *   4. ids: an entity without an id gets Kong's deterministic UUIDv5, derived
 *      from its cache key or endpoint key exactly as kong/db/schema/others/
 *      declarative_config.lua does, so the ids match Kong's for the same file;
 *      where Kong would fall back to a random id, Sluice derives one from the
 *      entity's content instead, so that every id is stable across reloads;
 *   5. references: foreign keys given by id or endpoint key (or implied by
 *      nesting) become {"id": ...};
 *   6. validation against the entity schemas (defaults filled), then Kong's
 *      write-time transformations (basic-auth password hashing, ...);
 *   7. uniqueness of ids, names, keys and plugin scopes.
 */
#include "declarative.h"
#include "entities.h"
#include "util.h"
#include "uuid.h"
#include "yaml_json.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_DEPTH 64
#define MAX_ENTITIES 1000000u

/* uuid_v5 namespace of every table's namespace (Kong's `_entities`). */
#define ENTITIES_NS "fd02801f-0957-4a15-a55a-c8d9606f30b5"

/* A reference that failed to resolve is replaced by this, so that the
 * schema does not report the same field a second time. */
#define UNRESOLVED_ID "00000000-0000-0000-0000-000000000000"

const char *const sl_declarative_tables[] = {
    "services",
    "routes",
    "consumers",
    "plugins",
    "upstreams",
    "targets",
    "certificates",
    "snis",
    "ca_certificates",
    "keyauth_credentials",
    "basicauth_credentials",
    "jwt_secrets",
    "acls",
    NULL,
};

/* Kong tables a declarative file may hold that Sluice does not implement. */
static const char *const unsupported_tables[] = {
    "vaults",
    "keys",
    "key_sets",
    "hmacauth_credentials",
    "oauth2_credentials",
    "oauth2_authorization_codes",
    "oauth2_tokens",
    "workspaces",
    "consumer_groups",
    "consumer_group_consumers",
    "consumer_group_plugins",
    "filter_chains",
    "parameters",
    "clustering_data_planes",
    "licenses",
    NULL,
};

struct item {
    const sl_schema_t *schema;
    json_t *obj;           /* the entity (a reference into the parsed document) */
    char *path;            /* "services[0].routes[1]" */
    long parent;           /* index of the enclosing item, or -1 */
    const char *parent_fk; /* the foreign key field implied by nesting */
    char *id;              /* the id as given or derived, or NULL when not a string */
    bool dup;              /* its id or endpoint key repeats an earlier one */
    bool valid;            /* passed schema validation */
};

struct loader {
    struct item *items;
    size_t n, cap;
    sl_errors_t *errs;
    bool too_many;
    bool transform;
    double now;
    json_t *by_id[32];  /* per table: id -> item index */
    json_t *by_key[32]; /* per table: endpoint key -> item index */
    json_t *seen[32];   /* per table: fallback id names already used */
    char ns[32][SL_UUID_STRLEN + 1];
};

static size_t table_index(const sl_schema_t *s)
{
    for (size_t i = 0; sl_entity_schemas[i]; i++)
        if (sl_entity_schemas[i] == s)
            return i;
    SL_ASSERT(!"unknown schema");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

/* Depth of nested collections, stopping early past limit. */
static size_t json_depth(const json_t *v, size_t limit)
{
    if (limit == 0 || !(json_is_array(v) || json_is_object(v)))
        return 0;
    size_t max = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && max < limit; i++) {
            size_t d = json_depth(json_array_get(v, i), limit - 1);
            max = SL_MAX(max, d);
        }
    } else {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            size_t d = json_depth(x, limit - 1);
            max = SL_MAX(max, d);
            if (max >= limit)
                break;
        }
    }
    return max + 1;
}

static int parse_text(const char *text, size_t len, json_t **out, sl_errors_t *errs)
{
    size_t i = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len && strchr(" \t\r\n", text[i]))
        i++;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        json_error_t jerr;
        json_t *doc = json_loadb(text + i, len - i, JSON_REJECT_DUPLICATES, &jerr);
        if (doc == NULL) {
            sl_errors_add(errs, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                          jerr.text);
            return SL_ERR_INVALID;
        }
        if (json_depth(doc, MAX_DEPTH + 1) > MAX_DEPTH) {
            sl_errors_add(errs, "invalid JSON: nesting deeper than %d levels", MAX_DEPTH);
            json_decref(doc);
            return SL_ERR_INVALID;
        }
        *out = doc;
        return SL_OK;
    }
    return sl_yaml_to_json(text + i, len - i, MAX_DEPTH, out, errs);
}

/* ------------------------------------------------------------------------ */
/* 1.1 / 2.1 -> 3.0 (kong/db/migrations/migrate_path_280_300.lua)           */

/* Percent-decodes a regex path one last time: reserved characters keep
 * their (upper-cased) escape, regex metacharacters are escaped. */
static char *normalize_regex(const char *re)
{
    size_t len = strlen(re);
    char *out = sl_xmalloc(len + 2), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (re[i] == '%' && i + 2 < len && sl_hex_value(re[i + 1]) >= 0 &&
            sl_hex_value(re[i + 2]) >= 0) {
            int c = sl_hex_value(re[i + 1]) * 16 + sl_hex_value(re[i + 2]);
            if (c && strchr("!#$%&'()*+,/:;=?@[]", c)) {
                *o++ = '%';
                *o++ = (char)toupper((unsigned char)re[i + 1]);
                *o++ = (char)toupper((unsigned char)re[i + 2]);
            } else if (c && strchr(".^-{}\\|", c)) {
                *o++ = '\\';
                *o++ = (char)c;
            } else {
                *o++ = (char)c;
            }
            i += 2;
        } else {
            *o++ = re[i];
        }
    }
    *o = '\0';
    return out;
}

static void migrate_routes(json_t *routes)
{
    for (size_t i = 0; json_is_array(routes) && i < json_array_size(routes); i++) {
        json_t *paths = json_object_get(json_array_get(routes, i), "paths");
        for (size_t j = 0; json_is_array(paths) && j < json_array_size(paths); j++) {
            json_t *p = json_array_get(paths, j);
            if (!json_is_string(p))
                continue;
            const char *s = json_string_value(p);
            char *m;
            if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~/%") ==
                strlen(s)) {
                m = sl_route_path_normalize(s, true);
            } else {
                char *n = normalize_regex(s);
                m = sl_xasprintf("~%s", n);
                free(n);
            }
            json_array_set_new(paths, j, json_string(m));
            free(m);
        }
    }
}

static void migrate_to_3_0(json_t *doc)
{
    migrate_routes(json_object_get(doc, "routes"));
    json_t *services = json_object_get(doc, "services");
    for (size_t i = 0; json_is_array(services) && i < json_array_size(services); i++)
        migrate_routes(json_object_get(json_array_get(services, i), "routes"));
}

/* ------------------------------------------------------------------------ */
/* Collecting entities                                                       */

/* The foreign key field of child that points at parent, when child may be
 * nested in parent (Kong: any reference allows nesting, unless the parent
 * has a real field of the child table's name). */
static const char *nesting_fk(const sl_schema_t *parent, const sl_schema_t *child)
{
    if (sl_schema_field(parent, NULL, child->name))
        return NULL;
    const char *fk = NULL;
    for (const sl_field_t *f = child->fields; f->name; f++)
        if (f->type == SL_FT_FOREIGN && strcmp(f->reference, parent->name) == 0)
            fk = f->name;
    return fk;
}

static void collect_list(struct loader *L, json_t *list, const sl_schema_t *s, const char *path,
                         long parent, const char *parent_fk);

static void collect_entity(struct loader *L, json_t *obj, const sl_schema_t *s, char *path,
                           long parent, const char *parent_fk)
{
    if (L->n == L->cap) {
        L->cap = L->cap ? L->cap * 2 : 256;
        L->items = sl_xrealloc(L->items, L->cap * sizeof(*L->items));
    }
    size_t idx = L->n++;
    L->items[idx] = (struct item){
        .schema = s, .obj = obj, .path = path, .parent = parent, .parent_fk = parent_fk};
    json_incref(obj);

    /* Every entity record may carry a comment and a list to ignore. */
    json_t *c = json_object_get(obj, "_comment");
    if (c && !json_is_string(c))
        sl_errors_add(L->errs, "%s._comment: expected a string", path);
    json_t *ig = json_object_get(obj, "_ignore");
    if (ig && !json_is_array(ig))
        sl_errors_add(L->errs, "%s._ignore: expected an array", path);
    json_object_del(obj, "_comment");
    json_object_del(obj, "_ignore");

    for (size_t i = 0; sl_entity_schemas[i]; i++) {
        const sl_schema_t *cs = sl_entity_schemas[i];
        json_t *children = json_object_get(obj, cs->name);
        const char *fk;
        if (children == NULL || (fk = nesting_fk(s, cs)) == NULL)
            continue;
        json_incref(children);
        json_object_del(obj, cs->name);
        char *cpath = sl_xasprintf("%s.%s", path, cs->name);
        collect_list(L, children, cs, cpath, (long)idx, fk);
        free(cpath);
        json_decref(children);
    }
}

static void collect_list(struct loader *L, json_t *list, const sl_schema_t *s, const char *path,
                         long parent, const char *parent_fk)
{
    if (!json_is_array(list)) {
        sl_errors_add(L->errs, "%s: expected an array", path);
        return;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        if (!json_is_object(e)) {
            sl_errors_add(L->errs, "%s[%zu]: expected a record", path, i);
            continue;
        }
        if (L->n >= MAX_ENTITIES) {
            if (!L->too_many)
                sl_errors_add(L->errs, "%s[%zu]: too many entities (the limit is %u)", path, i,
                              MAX_ENTITIES);
            L->too_many = true;
            return;
        }
        collect_entity(L, e, s, sl_xasprintf("%s[%zu]", path, i), parent, parent_fk);
    }
}

/* ------------------------------------------------------------------------ */
/* Deterministic ids                                                         */

static const char *item_id(const struct loader *L, long idx)
{
    return idx >= 0 ? L->items[idx].id : NULL;
}

/* A reference value as a string for a cache key: the string itself, or the
 * id (else the endpoint key) of an object reference. */
static const char *ref_text(const json_t *v, const char *ref_table)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v)) {
        const json_t *id = json_object_get(v, "id");
        if (json_is_string(id))
            return json_string_value(id);
        const sl_schema_t *rs = sl_entity_schema(ref_table);
        const json_t *k = rs && rs->endpoint_key ? json_object_get(v, rs->endpoint_key) : NULL;
        if (json_is_string(k))
            return json_string_value(k);
    }
    return NULL;
}

/*
 * The name Kong hashes into a table's namespace for an entity without an id
 * (get_key_for_uuid_gen): "<table>:*:<cache key values>" when the table has
 * a cache key, else the endpoint key (with the parent's key and "*" appended
 * when the endpoint key is not unique). NULL when Kong would use a random id.
 */
static char *kong_id_name(const struct loader *L, const struct item *it)
{
    const sl_schema_t *s = it->schema;
    const json_t *obj = it->obj;
    if (s->cache_key) {
        size_t cap = 256, len = 0;
        char *ck = sl_xmalloc(cap);
        len = (size_t)snprintf(ck, cap, "%s:*", s->name);
        for (size_t i = 0; s->cache_key[i]; i++) {
            const char *k = s->cache_key[i];
            const sl_field_t *f = sl_schema_field(s, NULL, k);
            const json_t *v = json_object_get(obj, k);
            const char *part = NULL;
            bool add = true;
            if (f->flags & SL_F_AUTO) {
                free(ck);
                return NULL;
            }
            if (v == NULL) {
                if (it->parent_fk && strcmp(k, it->parent_fk) == 0) {
                    part = item_id(L, it->parent);
                    if (part == NULL) {
                        free(ck);
                        return NULL;
                    }
                } else if (f->flags & SL_F_REQUIRED) {
                    free(ck);
                    return NULL;
                } else {
                    part = "";
                }
            } else if (f->type == SL_FT_FOREIGN) {
                part = ref_text(v, f->reference);
                add = part != NULL;
            } else if (json_is_string(v)) {
                part = json_string_value(v);
            } else {
                add = false; /* Kong skips values that are not strings */
            }
            if (!add)
                continue;
            size_t pl = strlen(part);
            if (len + pl + 2 > cap) {
                cap = (len + pl + 2) * 2;
                ck = sl_xrealloc(ck, cap);
            }
            ck[len++] = ':';
            memcpy(ck + len, part, pl + 1);
            len += pl;
        }
        return ck;
    }
    if (s->endpoint_key) {
        const json_t *v = json_object_get(obj, s->endpoint_key);
        if (!json_is_string(v))
            return NULL;
        char *key = sl_xstrdup(json_string_value(v));
        const sl_field_t *ef = sl_schema_field(s, NULL, s->endpoint_key);
        if (!(ef->flags & SL_F_UNIQUE)) {
            for (const sl_field_t *f = s->fields; f->name; f++) {
                if (f->type != SL_FT_FOREIGN || !(f->flags & SL_F_CASCADE))
                    continue;
                const char *p = it->parent >= 0
                                    ? item_id(L, it->parent)
                                    : ref_text(json_object_get(obj, f->name), f->reference);
                if (p == NULL) {
                    free(key);
                    return NULL;
                }
                char *k2 = sl_xasprintf("%s:%s", key, p);
                free(key);
                key = k2;
            }
            if (!(ef->flags & SL_F_UNIQUE_ALL_WS)) {
                char *k2 = sl_xasprintf("%s:*", key);
                free(key);
                key = k2;
            }
        }
        return key;
    }
    return NULL;
}

/* Sluice's stable replacement for Kong's random ids: the entity's content
 * (and its parent's id), with a counter for identical twins. */
static char *fallback_id_name(struct loader *L, const struct item *it, size_t t)
{
    char *content = json_dumps(it->obj, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    const char *pid = item_id(L, it->parent);
    char *name = sl_xasprintf("sluice:%s:%s", pid ? pid : "", content ? content : "");
    free(content);
    json_t *count = json_object_get(L->seen[t], name);
    if (count == NULL) {
        json_object_set_new(L->seen[t], name, json_integer(1));
        return name;
    }
    json_int_t n = json_integer_value(count);
    json_integer_set(count, n + 1);
    char *twin = sl_xasprintf("%s#%lld", name, (long long)n);
    free(name);
    return twin;
}

static void assign_ids(struct loader *L)
{
    for (size_t i = 0; i < L->n; i++) {
        struct item *it = &L->items[i];
        size_t t = table_index(it->schema);
        json_t *id = json_object_get(it->obj, "id");
        if (json_is_string(id)) {
            it->id = sl_xstrdup(json_string_value(id));
            continue;
        }
        if (id && !json_is_null(id))
            continue; /* the schema reports it */
        char *name = kong_id_name(L, it);
        if (name == NULL)
            name = fallback_id_name(L, it, t);
        char uuid[SL_UUID_STRLEN + 1];
        int rc = sl_uuid_v5(L->ns[t], name, strlen(name), uuid);
        SL_ASSERT(rc == SL_OK);
        free(name);
        it->id = sl_xstrdup(uuid);
        json_object_set_new(it->obj, "id", json_string(uuid));
    }
}

/* ------------------------------------------------------------------------ */
/* Indexes and references                                                    */

static void uniqueness_error(struct loader *L, const struct item *it, const char *field,
                             const char *what, const char *value)
{
    sl_errors_add(L->errs,
                  "%s.%s: uniqueness violation: '%s' entity with %s set to '%s' already declared",
                  it->path, field, it->schema->name, what, value);
}

static void build_indexes(struct loader *L)
{
    for (size_t i = 0; i < L->n; i++) {
        struct item *it = &L->items[i];
        size_t t = table_index(it->schema);
        bool key_dup = false;
        if (sl_entity_endpoint_key_unique(it->schema)) {
            const json_t *k = json_object_get(it->obj, it->schema->endpoint_key);
            if (json_is_string(k)) {
                if (json_object_get(L->by_key[t], json_string_value(k))) {
                    uniqueness_error(L, it, it->schema->endpoint_key, it->schema->endpoint_key,
                                     json_string_value(k));
                    key_dup = it->dup = true;
                } else {
                    json_object_set_new(L->by_key[t], json_string_value(k),
                                        json_integer((json_int_t)i));
                }
            }
        }
        if (it->id) {
            if (json_object_get(L->by_id[t], it->id)) {
                if (!key_dup)
                    uniqueness_error(L, it, "id", "primary key", it->id);
                it->dup = true;
            } else {
                json_object_set_new(L->by_id[t], it->id, json_integer((json_int_t)i));
            }
        }
    }
}

/* The item a reference value names, or -1. */
static long find_ref(const struct loader *L, const sl_schema_t *ref, const json_t *v)
{
    size_t t = table_index(ref);
    const char *key = NULL;
    if (json_is_string(v)) {
        key = json_string_value(v);
    } else if (json_is_object(v)) {
        const json_t *id = json_object_get(v, "id");
        const json_t *ek = ref->endpoint_key ? json_object_get(v, ref->endpoint_key) : NULL;
        if (json_is_string(id))
            key = json_string_value(id);
        else if (json_is_string(ek)) {
            const json_t *hit = json_object_get(L->by_key[t], json_string_value(ek));
            return hit ? (long)json_integer_value(hit) : -1;
        }
    }
    if (key == NULL)
        return -1;
    const json_t *hit = json_object_get(L->by_key[t], key);
    if (hit == NULL)
        hit = json_object_get(L->by_id[t], key);
    return hit ? (long)json_integer_value(hit) : -1;
}

static void set_fk(json_t *obj, const char *field, const char *id)
{
    json_t *fk = json_object();
    json_object_set_new(fk, "id", json_string(id ? id : UNRESOLVED_ID));
    json_object_set_new(obj, field, fk);
}

static void resolve_references(struct loader *L)
{
    for (size_t i = 0; i < L->n; i++) {
        struct item *it = &L->items[i];
        for (const sl_field_t *f = it->schema->fields; f->name; f++) {
            if (f->type != SL_FT_FOREIGN)
                continue;
            const sl_schema_t *ref = sl_entity_schema(f->reference);
            json_t *v = json_object_get(it->obj, f->name);
            bool nested = it->parent_fk && strcmp(it->parent_fk, f->name) == 0;
            if (nested) {
                const char *pid = item_id(L, it->parent);
                if (v && !json_is_null(v) && find_ref(L, ref, v) != it->parent)
                    sl_errors_add(L->errs,
                                  "%s.%s: references another entity than the one it is nested "
                                  "in (%s); leave it out",
                                  it->path, f->name, L->items[it->parent].path);
                set_fk(it->obj, f->name, pid && sl_uuid_valid(pid) ? pid : NULL);
                continue;
            }
            if (v == NULL || json_is_null(v))
                continue;
            if (!json_is_string(v) && !json_is_object(v)) {
                sl_errors_add(L->errs, "%s.%s: expected a string", it->path, f->name);
                set_fk(it->obj, f->name, NULL);
                continue;
            }
            long hit = find_ref(L, ref, v);
            if (hit < 0 || L->items[hit].id == NULL) {
                char *text = json_is_string(v) ? sl_xstrdup(json_string_value(v))
                                               : json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                sl_errors_add(L->errs, "%s.%s: invalid reference '%s' (no such entry in '%s')",
                              it->path, f->name, text ? text : "?", f->reference);
                free(text);
                set_fk(it->obj, f->name, NULL);
                continue;
            }
            const char *rid = L->items[hit].id;
            set_fk(it->obj, f->name, sl_uuid_valid(rid) ? rid : NULL);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Uniqueness after validation                                               */

static const char *fk_id(const json_t *obj, const char *field)
{
    const json_t *id = json_object_get(json_object_get(obj, field), "id");
    return json_is_string(id) ? json_string_value(id) : "";
}

static void check_uniques(struct loader *L)
{
    json_t *seen = json_object();
    for (size_t i = 0; i < L->n; i++) {
        struct item *it = &L->items[i];
        const sl_schema_t *s = it->schema;
        if (!it->valid || it->dup)
            continue;
        /* unique fields other than the endpoint key (checked with the ids) */
        for (const sl_field_t *f = s->fields; f->name; f++) {
            if (!(f->flags & SL_F_UNIQUE) || (s->endpoint_key && !strcmp(f->name, s->endpoint_key)))
                continue;
            const json_t *v = json_object_get(it->obj, f->name);
            if (!json_is_string(v))
                continue;
            char *k = sl_xasprintf("%s\n%s\n%s", s->name, f->name, json_string_value(v));
            if (json_object_get(seen, k))
                uniqueness_error(L, it, f->name, f->name, json_string_value(v));
            else
                json_object_set_new(seen, k, json_true());
            free(k);
        }
        /* scopes that must not repeat */
        char *k = NULL;
        const char *field = NULL, *what = NULL, *value = NULL;
        if (strcmp(s->name, "plugins") == 0) {
            value = json_string_value(json_object_get(it->obj, "name"));
            k = sl_xasprintf("plugins\n%s\n%s\n%s\n%s", value, fk_id(it->obj, "route"),
                             fk_id(it->obj, "service"), fk_id(it->obj, "consumer"));
            field = "name";
            what = "name, route, service and consumer";
        } else if (strcmp(s->name, "targets") == 0) {
            value = json_string_value(json_object_get(it->obj, "target"));
            k = sl_xasprintf("targets\n%s\n%s", fk_id(it->obj, "upstream"), value);
            field = "target";
            what = "upstream and target";
        } else if (strcmp(s->name, "acls") == 0) {
            value = json_string_value(json_object_get(it->obj, "group"));
            k = sl_xasprintf("acls\n%s\n%s", fk_id(it->obj, "consumer"), value);
            field = "group";
            what = "consumer and group";
        }
        if (k && json_object_get(seen, k))
            sl_errors_add(L->errs,
                          "%s.%s: uniqueness violation: '%s' entity with the same %s as '%s' "
                          "already declared",
                          it->path, field, s->name, what, value);
        else if (k)
            json_object_set_new(seen, k, json_true());
        free(k);
    }
    json_decref(seen);
}

/* ------------------------------------------------------------------------ */
/* The top level                                                             */

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* Checks the top-level keys and collects every entity. */
static void load_top(struct loader *L, json_t *doc)
{
    const json_t *fv = json_object_get(doc, "_format_version");
    if (fv == NULL || json_is_null(fv)) {
        sl_errors_add(L->errs, "_format_version: required field missing");
    } else if (!json_is_string(fv)) {
        sl_errors_add(L->errs, "_format_version: expected a string");
    } else {
        const char *v = json_string_value(fv);
        if (strcmp(v, "1.1") == 0 || strcmp(v, "2.1") == 0)
            migrate_to_3_0(doc);
        else if (strcmp(v, "3.0") != 0)
            sl_errors_add(L->errs, "_format_version: expected one of: 1.1, 2.1, 3.0");
    }
    const json_t *tr = json_object_get(doc, "_transform");
    L->transform = true;
    if (tr && !json_is_null(tr)) {
        if (json_is_boolean(tr))
            L->transform = json_is_true(tr);
        else
            sl_errors_add(L->errs, "_transform: expected a boolean");
    }
    const json_t *c = json_object_get(doc, "_comment");
    if (c && !json_is_null(c) && !json_is_string(c))
        sl_errors_add(L->errs, "_comment: expected a string");
    const json_t *ig = json_object_get(doc, "_ignore");
    if (ig && !json_is_null(ig) && !json_is_array(ig))
        sl_errors_add(L->errs, "_ignore: expected an array");

    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        if (k[0] == '_' && (!strcmp(k, "_format_version") || !strcmp(k, "_transform") ||
                            !strcmp(k, "_comment") || !strcmp(k, "_ignore")))
            continue;
        const sl_schema_t *s = sl_entity_schema(k);
        if (s) {
            if (!json_is_null(v))
                collect_list(L, v, s, k, -1, NULL);
        } else if (in_list(unsupported_tables, k)) {
            sl_errors_add(L->errs, "%s: entities of type '%s' are not supported by Sluice", k, k);
        } else {
            sl_errors_add(L->errs, "%s: unknown field", k);
        }
    }
}

static json_t *build_output(struct loader *L)
{
    json_t *out = json_object();
    json_object_set_new(out, "_format_version", json_string("3.0"));
    for (size_t i = 0; sl_declarative_tables[i]; i++)
        json_object_set_new(out, sl_declarative_tables[i], json_array());
    for (size_t i = 0; i < L->n; i++)
        json_array_append(json_object_get(out, L->items[i].schema->name), L->items[i].obj);
    return out;
}

static void loader_dispose(struct loader *L)
{
    for (size_t i = 0; i < L->n; i++) {
        json_decref(L->items[i].obj);
        free(L->items[i].path);
        free(L->items[i].id);
    }
    free(L->items);
    for (size_t t = 0; sl_entity_schemas[t]; t++) {
        json_decref(L->by_id[t]);
        json_decref(L->by_key[t]);
        json_decref(L->seen[t]);
    }
}

int sl_declarative_load_string(const char *text, size_t len, json_t **out, sl_errors_t *errs)
{
    if (len > SL_DECLARATIVE_MAX_BYTES) {
        sl_errors_add(errs, "declarative config is %zu bytes, more than the limit of %u", len,
                      SL_DECLARATIVE_MAX_BYTES);
        return SL_ERR_INVALID;
    }
    size_t before = errs->n;
    json_t *doc = NULL;
    int rc = parse_text(text, len, &doc, errs);
    if (rc != SL_OK)
        return rc == SL_ERR_NOMEM ? rc : SL_ERR_INVALID;
    if (!json_is_object(doc)) {
        sl_errors_add(errs, "declarative config must be a mapping with _format_version and "
                            "lists of entities at the top level");
        json_decref(doc);
        return SL_ERR_INVALID;
    }

    struct loader L = {.errs = errs};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    L.now = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
    SL_ASSERT(SL_ARRAY_LEN(L.by_id) > 13);
    for (size_t t = 0; sl_entity_schemas[t]; t++) {
        L.by_id[t] = json_object();
        L.by_key[t] = json_object();
        L.seen[t] = json_object();
        rc = sl_uuid_v5(ENTITIES_NS, sl_entity_schemas[t]->name, strlen(sl_entity_schemas[t]->name),
                        L.ns[t]);
        SL_ASSERT(rc == SL_OK);
    }

    load_top(&L, doc);
    assign_ids(&L);
    build_indexes(&L);
    resolve_references(&L);

    sl_schema_opts_t opts = {.now = L.now};
    for (size_t i = 0; i < L.n; i++) {
        struct item *it = &L.items[i];
        it->valid =
            sl_schema_validate_ex(it->schema, it->obj, &opts, it->path, errs, NULL) == SL_OK;
        if (it->valid)
            sl_entity_transform(it->schema, it->obj, L.transform);
    }
    check_uniques(&L);

    rc = SL_OK;
    if (errs->n > before)
        rc = SL_ERR_INVALID;
    else
        *out = build_output(&L);
    loader_dispose(&L);
    json_decref(doc);
    return rc;
}

int sl_declarative_load_file(const char *path, json_t **out, sl_errors_t *errs)
{
    char *text;
    size_t len;
    int rc = sl_read_file(path, SL_DECLARATIVE_MAX_BYTES, &text, &len);
    if (rc == SL_ERR_TOO_BIG) {
        sl_errors_add(errs, "%s: larger than the limit of %u bytes", path,
                      SL_DECLARATIVE_MAX_BYTES);
        return SL_ERR_INVALID;
    }
    if (rc != SL_OK) {
        sl_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
        return SL_ERR_IO;
    }
    rc = sl_declarative_load_string(text, len, out, errs);
    free(text);
    return rc;
}
