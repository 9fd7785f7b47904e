/*
 * admin_crud.c owns the generated entity endpoints of the Admin API, the
 * same for every entity as in Kong's kong/api/endpoints.lua:
 *
 *   /E                 GET (paginated list), POST (create, 201)
 *   /E/{key}           GET, PUT (upsert, 200), PATCH, DELETE (204 even if absent)
 *   /E/{key}/F         the entity's foreign F (/routes/{r}/service): GET, PUT, PATCH
 *   /P/{key}/C         children of P (/services/{s}/routes): GET, POST
 *   /P/{key}/C/{key}   a child that must belong to P: GET, PUT, PATCH, DELETE
 *
 * {key} is an id when it parses as a UUID, else the entity's endpoint key
 * (name, username, ...). Targets live only under /upstreams/{u}/targets,
 * where {key} may be host:port and PUT updates without creating.
 *
 * Every write is one store transaction: resolve, merge, validate, transform,
 * put, commit (durable), and only then the 2xx answer. Runs on the main
 * thread; objects live for one request.
 */
#include "admin_int.h"
#include "json_out.h"
#include "strbuf.h"
#include "entities.h"
#include "log.h"
#include "util.h"
#include "uuid.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct coll {
    const char *admin; /* URL segment */
    const char *table;
    bool top; /* reachable at the top level */
};

static const struct coll collections[] = {
    {"services", "services", true},
    {"routes", "routes", true},
    {"consumers", "consumers", true},
    {"plugins", "plugins", true},
    {"upstreams", "upstreams", true},
    {"targets", "targets", false},
    {"certificates", "certificates", true},
    {"snis", "snis", true},
    {"ca_certificates", "ca_certificates", true},
    {"key-auths", "keyauth_credentials", true},
    {"basic-auths", "basicauth_credentials", true},
    {"jwts", "jwt_secrets", true},
    {"acls", "acls", true},
};

/* Nested collections: /parent/{p}/seg lists `child` whose `fk` is p. */
struct nest {
    const char *parent;
    const char *seg;
    const char *child;
    const char *fk;
};

static const struct nest nests[] = {
    {"services", "routes", "routes", "service"},
    {"services", "plugins", "plugins", "service"},
    {"routes", "plugins", "plugins", "route"},
    {"consumers", "plugins", "plugins", "consumer"},
    {"consumers", "key-auth", "keyauth_credentials", "consumer"},
    {"consumers", "basic-auth", "basicauth_credentials", "consumer"},
    {"consumers", "jwt", "jwt_secrets", "consumer"},
    {"consumers", "acls", "acls", "consumer"},
    {"certificates", "snis", "snis", "certificate"},
    {"upstreams", "targets", "targets", "upstream"},
};

const char *sl_admin_collection_name(const sl_schema_t *s)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(collections); i++)
        if (!strcmp(collections[i].table, s->name))
            return collections[i].admin;
    return s->admin_name ? s->admin_name : s->name;
}

static const sl_schema_t *top_schema(const char *seg)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(collections); i++)
        if (collections[i].top && !strcmp(collections[i].admin, seg))
            return sl_entity_schema(collections[i].table);
    return NULL;
}

static const struct nest *find_nest(const char *parent_table, const char *seg)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(nests); i++)
        if (!strcmp(nests[i].parent, parent_table) && !strcmp(nests[i].seg, seg))
            return &nests[i];
    return NULL;
}

static const sl_field_t *schema_field(const sl_schema_t *s, const char *name)
{
    for (const sl_field_t *f = s->fields; f->name; f++)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* key resolution                                                            */

static void lower_uuid(const char *in, char out[37])
{
    for (int i = 0; i < 36; i++)
        out[i] = sl_lower(in[i]);
    out[36] = '\0';
}

/* The value a target's endpoint key is indexed under: "<upstream>:<host:port>". */
static char *target_index_value(const sl_schema_t *s, const char *upstream_id, const char *key)
{
    json_t *tmp = json_pack("{s:s}", "target", key);
    sl_entity_transform(s, tmp, false);
    const char *norm = json_string_value(json_object_get(tmp, "target"));
    size_t n = strlen(upstream_id) + strlen(norm ? norm : key) + 2;
    char *v = sl_xmalloc(n);
    snprintf(v, n, "%s:%s", upstream_id, norm ? norm : key);
    json_decref(tmp);
    return v;
}

/*
 * Finds the id of the entity of schema s named by key (a UUID or the
 * endpoint key), optionally among the children of parent_id through field
 * fk. Returns SL_OK with id_out, SL_ERR_NOT_FOUND, or another store error.
 * For a UUID that names nothing, id_out still receives it (lower-cased) so
 * that PUT can create under that id.
 */
static int resolve(sl_txn_t *t, const sl_schema_t *s, const char *key, const char *fk,
                   const char *parent_id, char id_out[37])
{
    json_t *e = NULL;
    if (sl_uuid_valid(key)) {
        lower_uuid(key, id_out);
        int rc = sl_txn_get(t, s->name, id_out, &e);
        json_decref(e);
        return rc;
    }
    const char *ek = sl_entity_endpoint_key(s);
    if (!ek)
        return SL_ERR_NOT_FOUND;
    if (!strcmp(s->name, "targets")) {
        if (!parent_id)
            return SL_ERR_NOT_FOUND;
        char *v = target_index_value(s, parent_id, key);
        int rc = sl_txn_find_unique(t, s->name, ek, v, id_out);
        free(v);
        return rc;
    }
    if (sl_entity_endpoint_key_unique(s))
        return sl_txn_find_unique(t, s->name, ek, key, id_out);
    if (!parent_id)
        return SL_ERR_NOT_FOUND;
    /* a key unique only per parent (acls' group): scan the parent's children */
    char after[37] = "";
    for (;;) {
        json_t *arr = NULL;
        bool more = false;
        int rc = sl_txn_list(t, s->name, fk, parent_id, after[0] ? after : NULL, 500, &arr, &more);
        if (rc != SL_OK)
            return rc;
        size_t i;
        json_t *x;
        json_array_foreach(arr, i, x)
        {
            const char *v = json_string_value(json_object_get(x, ek));
            const char *id = json_string_value(json_object_get(x, "id"));
            if (v && id && !strcmp(v, key)) {
                snprintf(id_out, 37, "%s", id);
                json_decref(arr);
                return SL_OK;
            }
            if (id)
                snprintf(after, sizeof(after), "%s", id);
        }
        json_decref(arr);
        if (!more)
            return SL_ERR_NOT_FOUND;
    }
}

static const char *fk_id(const json_t *e, const char *field)
{
    return json_string_value(json_object_get(json_object_get(e, field), "id"));
}

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

/* Kong names the whole key in a unique violation: the field, or every
 * cache-key field when the key is composite (targets, acls, plugins). */
static void reply_unique(sl_areq_t *r, const sl_schema_t *s, const json_t *obj, const char *field)
{
    json_t *fields = json_object();
    bool composite = false;
    for (size_t i = 0; s->cache_key && s->cache_key[i]; i++)
        composite |= !strcmp(s->cache_key[i], field) || !strcmp(field, "cache_key");
    if (composite && s->cache_key[0] && s->cache_key[1]) {
        for (size_t i = 0; s->cache_key[i]; i++) {
            json_t *v = json_object_get(obj, s->cache_key[i]);
            json_object_set(fields, s->cache_key[i], v ? v : json_null());
        }
    } else {
        json_t *v = json_object_get(obj, field);
        json_object_set(fields, field, v ? v : json_null());
    }
    char *p = sl_admin_lua_pretty(fields);
    char *msg = NULL;
    if (asprintf(&msg, "UNIQUE violation detected on '%s'", p) < 0)
        msg = NULL;
    sl_admin_reply_err(r, 409, SL_KERR_UNIQUE_VIOLATION, msg ? msg : "UNIQUE violation", fields);
    free(msg);
    free(p);
}

static void reply_fk(sl_areq_t *r, const sl_schema_t *s, const json_t *obj, const char *field)
{
    const sl_field_t *f = schema_field(s, field);
    json_t *key = json_object_get(obj, field);
    json_t *fields = json_object();
    json_object_set(fields, field, key ? key : json_null());
    char *p = sl_admin_lua_pretty(key ? key : json_null());
    char *msg = NULL;
    if (asprintf(&msg, "the foreign key '%s' does not reference an existing '%s' entity.", p,
                 f && f->reference ? f->reference : field) < 0)
        msg = NULL;
    sl_admin_reply_err(r, 400, SL_KERR_FOREIGN_KEY_VIOLATION, msg ? msg : "foreign key violation",
                       fields);
    free(msg);
    free(p);
}

static void reply_schema(sl_areq_t *r, json_t *fields)
{
    char *msg = sl_admin_schema_message(fields);
    sl_admin_reply_err(r, 400, SL_KERR_SCHEMA_VIOLATION, msg, fields);
    free(msg);
}

/* ------------------------------------------------------------------------ */
/* writes                                                                    */

/*
 * Resolves foreign keys given by endpoint key ({"service": {"name": "x"}})
 * to ids, as Kong's DAO does. Returns SL_OK or SL_DONE (answered 400, code 13).
 */
static int resolve_foreign_keys(sl_areq_t *r, sl_txn_t *t, const sl_schema_t *s, json_t *obj)
{
    json_t *errs = json_object();
    for (const sl_field_t *f = s->fields; f->name; f++) {
        if (f->type != SL_FT_FOREIGN)
            continue;
        json_t *v = json_object_get(obj, f->name);
        if (!json_is_object(v) || json_object_get(v, "id"))
            continue;
        const sl_schema_t *ref = sl_entity_schema(f->reference);
        const char *ek = ref ? sl_entity_endpoint_key(ref) : NULL;
        const char *val = ek ? json_string_value(json_object_get(v, ek)) : NULL;
        char id[37];
        if (!val || !sl_entity_endpoint_key_unique(ref))
            continue; /* the schema reports what is wrong */
        if (sl_txn_find_unique(t, ref->name, ek, val, id) == SL_OK) {
            json_object_set_new(obj, f->name, json_pack("{s:s}", "id", id));
        } else {
            json_t *k = json_pack("{s:s}", ek, val);
            char *p = sl_admin_lua_pretty(k);
            char *m = NULL;
            if (asprintf(&m,
                         "the foreign key cannot be resolved with '%s' for an existing '%s' entity",
                         p, ref->name) >= 0)
                json_object_set_new(errs, f->name, json_pack("{s:s}", ek, m));
            free(m);
            free(p);
            json_decref(k);
        }
    }
    if (json_object_size(errs) == 0) {
        json_decref(errs);
        return SL_OK;
    }
    /* foreign_keys_unresolved: "field.sub: message" entries */
    char buf[2048];
    size_t n = 0, count = 0;
    const char *k;
    json_t *sub;
    json_object_foreach(errs, k, sub)
    {
        const char *sk;
        json_t *m;
        json_object_foreach(sub, sk, m)
        {
            n += (size_t)snprintf(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0, "%s%s.%s: %s",
                                  count ? "; " : "", k, sk, json_string_value(m));
            count++;
            if (n >= sizeof(buf))
                n = sizeof(buf) - 1;
        }
    }
    char *msg = NULL;
    if (count == 1) {
        if (asprintf(&msg, "foreign key unresolved (%s)", buf) < 0)
            msg = NULL;
    } else if (asprintf(&msg, "%zu foreign keys unresolved (%s)", count, buf) < 0) {
        msg = NULL;
    }
    sl_admin_reply_err(r, 400, SL_KERR_FOREIGN_KEYS_UNRESOLVED, msg ? msg : "unresolved", errs);
    free(msg);
    return SL_DONE;
}

static bool json_eq_or_null(const json_t *a, const json_t *b)
{
    bool an = a == NULL || json_is_null(a), bn = b == NULL || json_is_null(b);
    if (an || bn)
        return an && bn;
    return json_equal(a, b);
}

/* Kong's plugin cache key {name, route, service, consumer} is unique. */
static int check_plugin_unique(sl_areq_t *r, sl_txn_t *t, const json_t *obj)
{
    static const char *const scopes[] = {"route", "service", "consumer"};
    const char *fk = NULL, *fid = NULL;
    for (size_t i = 0; i < 3 && !fk; i++) {
        const char *id = fk_id(obj, scopes[i]);
        if (id) {
            fk = scopes[i];
            fid = id;
        }
    }
    const char *self = json_string_value(json_object_get(obj, "id"));
    char after[37] = "";
    for (;;) {
        json_t *arr = NULL;
        bool more = false;
        int rc = sl_txn_list(t, "plugins", fk, fid, after[0] ? after : NULL, 500, &arr, &more);
        if (rc != SL_OK)
            return SL_OK;
        size_t i;
        json_t *x;
        json_array_foreach(arr, i, x)
        {
            const char *id = json_string_value(json_object_get(x, "id"));
            if (id)
                snprintf(after, sizeof(after), "%s", id);
            if (id && self && !strcmp(id, self))
                continue;
            bool same = json_equal(json_object_get(x, "name"), json_object_get(obj, "name"));
            for (size_t k = 0; k < 3 && same; k++)
                same =
                    json_eq_or_null(json_object_get(x, scopes[k]), json_object_get(obj, scopes[k]));
            if (same) {
                json_t *fields = json_object();
                json_object_set(fields, "name", json_object_get(obj, "name"));
                for (size_t k = 0; k < 3; k++) {
                    json_t *v = json_object_get(obj, scopes[k]);
                    json_object_set(fields, scopes[k], v ? v : json_null());
                }
                char *p = sl_admin_lua_pretty(fields);
                char *msg = NULL;
                if (asprintf(&msg, "UNIQUE violation detected on '%s'", p) < 0)
                    msg = NULL;
                sl_admin_reply_err(r, 409, SL_KERR_UNIQUE_VIOLATION, msg ? msg : "UNIQUE", fields);
                free(msg);
                free(p);
                json_decref(arr);
                return SL_DONE;
            }
        }
        json_decref(arr);
        if (!more)
            return SL_OK;
    }
}

/*
 * Validates obj (complete: defaults are filled), transforms it and puts it
 * in t. hash_passwords tells whether a basic-auth password in obj is new
 * clear text. Returns SL_OK, or SL_DONE after aborting t and answering the
 * error.
 */
static int put_entity(sl_areq_t *r, sl_txn_t *t, const sl_schema_t *s, json_t *obj,
                      bool hash_passwords)
{
    if (resolve_foreign_keys(r, t, s, obj) == SL_DONE) {
        sl_txn_abort(t);
        return SL_DONE;
    }
    json_t *fields = json_object();
    if (sl_schema_validate(s, obj, "", NULL, fields) != SL_OK) {
        sl_txn_abort(t);
        reply_schema(r, fields);
        return SL_DONE;
    }
    json_decref(fields);
    sl_entity_transform(s, obj, hash_passwords);
    if (!strcmp(s->name, "plugins") && check_plugin_unique(r, t, obj) == SL_DONE) {
        sl_txn_abort(t);
        return SL_DONE;
    }
    const char *conflict = NULL;
    int rc = sl_txn_put(t, s->name, obj, &conflict);
    if (rc == SL_ERR_EXISTS) {
        sl_txn_abort(t);
        reply_unique(r, s, obj, conflict ? conflict : "id");
        return SL_DONE;
    }
    if (rc == SL_ERR_NOT_FOUND) {
        sl_txn_abort(t);
        reply_fk(r, s, obj, conflict ? conflict : "id");
        return SL_DONE;
    }
    if (rc != SL_OK) {
        sl_txn_abort(t);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    return SL_OK;
}

/* Commits t (durably) and answers `status` with obj. Returns SL_DONE. */
static int commit_and_reply(sl_areq_t *r, sl_txn_t *t, json_t *obj, int status)
{
    int rc = sl_txn_commit(t);
    if (rc != SL_OK)
        sl_admin_reply_store_err(r, rc);
    else
        sl_admin_reply(r, status, json_incref(obj));
    return SL_DONE;
}

/* put_entity, then commit_and_reply. Always consumes t. Returns SL_DONE. */
static int write_entity(sl_areq_t *r, sl_txn_t *t, const sl_schema_t *s, json_t *obj,
                        bool hash_passwords, int status)
{
    if (put_entity(r, t, s, obj, hash_passwords) != SL_OK)
        return SL_DONE;
    return commit_and_reply(r, t, obj, status);
}

/* Kong's Schema.merge_values: records merge recursively, anything else is
 * replaced. */
static void merge_into(json_t *dst, json_t *src, const sl_schema_t *s)
{
    const char *k;
    json_t *v;
    json_object_foreach(src, k, v)
    {
        json_t *cur = json_object_get(dst, k);
        const sl_field_t *f = s ? schema_field(s, k) : NULL;
        bool record = s ? (f && f->type == SL_FT_RECORD) : true;
        if (record && json_is_object(v) && json_is_object(cur)) {
            json_t *copy = json_deep_copy(cur);
            merge_into(copy, v, f ? f->record : NULL);
            json_object_set_new(dst, k, copy);
        } else {
            json_object_set(dst, k, v);
        }
    }
}

/* Reads the request body for a write; answers 400 on failure. Form bodies
 * get their types from the schema. */
static int write_body(sl_areq_t *r, const sl_schema_t *s, json_t **out)
{
    json_t *body;
    sl_body_kind_t kind;
    if (sl_admin_body(r, &body, &kind) != SL_OK)
        return SL_DONE;
    if (!json_is_object(body)) {
        json_decref(body);
        sl_admin_reply_msg(r, 400, "Cannot parse JSON body");
        return SL_DONE;
    }
    if (kind == SL_BODY_FORM)
        sl_admin_body_infer_schema(s, body);
    *out = body;
    return SL_OK;
}

static int begin(sl_areq_t *r, bool write, sl_txn_t **t)
{
    int rc = sl_store_begin(r->admin->store, write, t);
    if (rc != SL_OK)
        sl_admin_reply_store_err(r, rc);
    return rc;
}

/* POST: create, with fk set to parent when nested. */
static int do_create(sl_areq_t *r, const sl_schema_t *s, const char *fk, const char *parent_id,
                     const sl_schema_t *parent)
{
    json_t *body;
    sl_txn_t *t;
    if (write_body(r, s, &body) != SL_OK)
        return SL_DONE;
    if (begin(r, true, &t) != SL_OK) {
        json_decref(body);
        return SL_DONE;
    }
    if (parent) {
        char pid[37];
        if (resolve(t, parent, parent_id, NULL, NULL, pid) != SL_OK) {
            sl_txn_abort(t);
            json_decref(body);
            sl_admin_reply_msg(r, 404, "Not found");
            return SL_DONE;
        }
        json_object_set_new(body, fk, json_pack("{s:s}", "id", pid));
    }
    const char *id = json_string_value(json_object_get(body, "id"));
    if (id && sl_uuid_valid(id)) {
        json_t *old = NULL;
        char lid[37];
        lower_uuid(id, lid);
        if (sl_txn_get(t, s->name, lid, &old) == SL_OK) {
            json_decref(old);
            sl_txn_abort(t);
            json_t *pk = json_pack("{s:s}", "id", lid);
            char *p = sl_admin_lua_pretty(pk);
            char *msg = NULL;
            if (asprintf(&msg, "primary key violation on key '%s'", p) < 0)
                msg = NULL;
            sl_admin_reply_err(r, 400, SL_KERR_PRIMARY_KEY_VIOLATION, msg ? msg : "pk", pk);
            free(msg);
            free(p);
            json_decref(body);
            return SL_DONE;
        }
        json_object_set_new(body, "id", json_string(lid));
    }
    write_entity(r, t, s, body, true, 201);
    json_decref(body);
    return SL_DONE;
}

/* Looks up the entity at key (belonging to parent pid through fk when
 * nested). Returns SL_OK with *out (new ref), SL_ERR_NOT_FOUND, or another
 * store error. */
static int lookup(sl_txn_t *t, const sl_schema_t *s, const char *key, const char *fk,
                  const char *pid, char id[37], json_t **out)
{
    int rc = resolve(t, s, key, fk, pid, id);
    if (rc != SL_OK)
        return rc;
    rc = sl_txn_get(t, s->name, id, out);
    if (rc != SL_OK)
        return rc;
    if (fk) {
        const char *have = fk_id(*out, fk);
        if (!have || strcmp(have, pid) != 0) {
            json_decref(*out);
            *out = NULL;
            return SL_ERR_NOT_FOUND;
        }
    }
    return SL_OK;
}

/* Resolves the parent of a nested path; answers 404 when absent. */
static int resolve_parent(sl_areq_t *r, sl_txn_t *t, const sl_schema_t *parent, const char *key,
                          char pid[37])
{
    int rc = resolve(t, parent, key, NULL, NULL, pid);
    if (rc == SL_ERR_NOT_FOUND) {
        sl_admin_reply_msg(r, 404, "Not found");
        return SL_DONE;
    }
    if (rc != SL_OK) {
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    return SL_OK;
}

/*
 * Begins a transaction and, for a nested path, resolves the parent into pid.
 * Returns SL_OK, or SL_DONE after answering (no transaction left open).
 */
static int begin_nested(sl_areq_t *r, bool write, const sl_schema_t *parent, const char *pkey,
                        sl_txn_t **t, char pid[37])
{
    if (begin(r, write, t) != SL_OK)
        return SL_DONE;
    if (parent && resolve_parent(r, *t, parent, pkey, pid) != SL_OK) {
        sl_txn_abort(*t);
        return SL_DONE;
    }
    return SL_OK;
}

static int do_get(sl_areq_t *r, const sl_schema_t *s, const char *key, const sl_schema_t *parent,
                  const char *pkey, const char *fk)
{
    sl_txn_t *t;
    char pid[37] = "", id[37];
    json_t *e = NULL;
    if (begin_nested(r, false, parent, pkey, &t, pid) != SL_OK)
        return SL_DONE;
    int rc = lookup(t, s, key, fk, parent ? pid : NULL, id, &e);
    sl_txn_abort(t);
    if (rc == SL_ERR_NOT_FOUND)
        sl_admin_reply_msg(r, 404, "Not found");
    else if (rc != SL_OK)
        sl_admin_reply_store_err(r, rc);
    else
        sl_admin_reply(r, 200, e);
    return SL_DONE;
}

static int do_patch(sl_areq_t *r, const sl_schema_t *s, const char *key, const sl_schema_t *parent,
                    const char *pkey, const char *fk)
{
    json_t *body, *e = NULL;
    sl_txn_t *t;
    char pid[37] = "", id[37];
    if (write_body(r, s, &body) != SL_OK)
        return SL_DONE;
    if (begin_nested(r, true, parent, pkey, &t, pid) != SL_OK) {
        json_decref(body);
        return SL_DONE;
    }
    int rc = lookup(t, s, key, fk, parent ? pid : NULL, id, &e);
    if (rc != SL_OK) {
        sl_txn_abort(t);
        json_decref(body);
        if (rc == SL_ERR_NOT_FOUND)
            sl_admin_reply_msg(r, 404, "Not found");
        else
            sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    /* the primary key and creation time are not the patch's to change */
    json_object_del(body, "id");
    json_object_del(body, "created_at");
    if (parent)
        json_object_del(body, fk);
    if (json_object_get(body, "url")) {
        /* the shorthand rewrites all of these; stale values must not survive */
        json_object_del(e, "protocol");
        json_object_del(e, "host");
        json_object_del(e, "port");
        json_object_del(e, "path");
    }
    if (json_object_get(body, "cert") && !strcmp(s->name, "ca_certificates"))
        json_object_del(e, "cert_digest");
    merge_into(e, body, s);
    json_object_del(e, "updated_at");
    bool hash = json_object_get(body, "password") != NULL;
    write_entity(r, t, s, e, hash, 200);
    json_decref(e);
    json_decref(body);
    return SL_DONE;
}

/* PUT: create or replace entirely; the URL's key names the entity. */
static int do_put(sl_areq_t *r, const sl_schema_t *s, const char *key, const sl_schema_t *parent,
                  const char *pkey, const char *fk)
{
    json_t *body, *old = NULL;
    sl_txn_t *t;
    char pid[37] = "", id[37];
    if (!strcmp(s->name, "targets"))
        return do_patch(r, s, key, parent, pkey, fk);
    if (write_body(r, s, &body) != SL_OK)
        return SL_DONE;
    if (begin_nested(r, true, parent, pkey, &t, pid) != SL_OK) {
        json_decref(body);
        return SL_DONE;
    }
    if (parent)
        json_object_set_new(body, fk, json_pack("{s:s}", "id", pid));
    int rc = resolve(t, s, key, fk, parent ? pid : NULL, id);
    if (rc == SL_OK) {
        rc = sl_txn_get(t, s->name, id, &old);
        if (rc == SL_OK && parent) {
            const char *have = fk_id(old, fk);
            if (!have || strcmp(have, pid) != 0)
                rc = SL_ERR_EXISTS;
        }
    } else if (rc == SL_ERR_NOT_FOUND && !sl_uuid_valid(key)) {
        sl_uuid_v4(id);
    }
    if (rc == SL_ERR_EXISTS) {
        /* the key names an entity of another parent */
        sl_txn_abort(t);
        json_decref(old);
        json_decref(body);
        sl_admin_reply_msg(r, 404, "Not found");
        return SL_DONE;
    }
    if (rc != SL_OK && rc != SL_ERR_NOT_FOUND) {
        sl_txn_abort(t);
        json_decref(body);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    json_object_set_new(body, "id", json_string(id));
    if (!sl_uuid_valid(key)) {
        const char *ek = sl_entity_endpoint_key(s);
        if (ek)
            json_object_set_new(body, ek, json_string(key));
    }
    json_object_del(body, "updated_at");
    if (old) {
        json_t *ca = json_object_get(old, "created_at");
        if (ca)
            json_object_set(body, "created_at", ca);
        else
            json_object_del(body, "created_at");
    }
    json_decref(old);
    write_entity(r, t, s, body, true, 200);
    json_decref(body);
    return SL_DONE;
}

static int do_delete(sl_areq_t *r, const sl_schema_t *s, const char *key, const sl_schema_t *parent,
                     const char *pkey, const char *fk)
{
    sl_txn_t *t;
    char pid[37] = "", id[37];
    json_t *e = NULL;
    if (begin_nested(r, true, parent, pkey, &t, pid) != SL_OK)
        return SL_DONE;
    int rc = resolve(t, s, key, fk, parent ? pid : NULL, id);
    if (rc == SL_OK)
        rc = sl_txn_get(t, s->name, id, &e);
    if (rc == SL_ERR_NOT_FOUND) {
        sl_txn_abort(t);
        sl_admin_reply(r, 204, NULL);
        return SL_DONE;
    }
    if (rc == SL_OK && parent) {
        const char *have = fk_id(e, fk);
        if (!have || strcmp(have, pid) != 0) {
            json_decref(e);
            sl_txn_abort(t);
            sl_admin_reply_msg(r, 404, "Not found");
            return SL_DONE;
        }
    }
    json_decref(e);
    const char *blocker = NULL;
    if (rc == SL_OK)
        rc = sl_txn_delete(t, s->name, id, &blocker);
    if (rc == SL_ERR_EXISTS) {
        sl_txn_abort(t);
        char msg[256];
        const char *child = blocker ? blocker : "unknown";
        snprintf(msg, sizeof(msg), "an existing '%s' entity references this '%s' entity", child,
                 s->name);
        sl_admin_reply_err(r, 400, SL_KERR_FOREIGN_KEY_VIOLATION, msg,
                           json_pack("{s:s}", "@referenced_by", child));
        return SL_DONE;
    }
    if (rc == SL_ERR_NOT_FOUND) {
        sl_txn_abort(t);
        sl_admin_reply(r, 204, NULL);
        return SL_DONE;
    }
    if (rc != SL_OK) {
        sl_txn_abort(t);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    rc = sl_txn_commit(t);
    if (rc != SL_OK)
        sl_admin_reply_store_err(r, rc);
    else
        sl_admin_reply(r, 204, NULL);
    return SL_DONE;
}

/* ------------------------------------------------------------------------ */
/* lists                                                                     */

/* The tags query: AND ("a,b"), OR ("a/b"), at most 5. Returns SL_OK with
 * *tags (NULL when absent), or SL_DONE after answering 400. */
static int parse_tags(sl_areq_t *r, json_t **tags, bool *or_cond)
{
    const char *q = json_string_value(json_object_get(r->query, "tags"));
    *tags = NULL;
    *or_cond = false;
    if (!q)
        return SL_OK;
    bool has_comma = strchr(q, ',') != NULL, has_slash = strchr(q, '/') != NULL;
    const char *err = NULL;
    for (const unsigned char *p = (const unsigned char *)q; *p && !err; p++)
        if (*p < 0x20 || *p == 0x7f || *p > 0xf4)
            err = "must only contain printable ascii (except `,` and `/`) or valid utf-8";
    if (!err && ((has_comma && has_slash) || *q == '\0'))
        err = "must be a table";
    json_t *arr = json_array();
    if (!err) {
        char sep = has_slash ? '/' : ',';
        const char *s = q;
        for (;;) {
            const char *e = strchr(s, sep);
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (n == 0) {
                if (e || json_array_size(arr) == 0)
                    err = "must be a table";
                break;
            }
            json_array_append_new(arr, json_stringn(s, n));
            if (!e)
                break;
            s = e + 1;
        }
    }
    if (!err && json_array_size(arr) > 5)
        err = "cannot query more than 5 tags";
    if (err) {
        json_decref(arr);
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid option (tags: %s)", err);
        json_t *body = json_pack("{s:i,s:s,s:s,s:{s:s}}", "code", SL_KERR_INVALID_OPTIONS, "name",
                                 "invalid options", "message", msg, "options", "tags", err);
        sl_admin_reply(r, 400, body);
        return SL_DONE;
    }
    *tags = arr;
    *or_cond = has_slash;
    return SL_OK;
}

static bool tags_match(const json_t *e, const json_t *want, bool or_cond)
{
    const json_t *have = json_object_get(e, "tags");
    size_t i, j;
    json_t *w, *h;
    json_array_foreach(want, i, w)
    {
        bool found = false;
        json_array_foreach(have, j, h) if (json_equal(w, h))
        {
            found = true;
            break;
        }
        if (or_cond && found)
            return true;
        if (!or_cond && !found)
            return false;
    }
    return !or_cond;
}

/* Parses ?size and ?offset; answers 400 (codes 9 and 7) on bad values. */
static int page_args(sl_areq_t *r, size_t *size, char after[37])
{
    const char *sz = json_string_value(json_object_get(r->query, "size"));
    const char *off = json_string_value(json_object_get(r->query, "offset"));
    *size = 100;
    after[0] = '\0';
    if (sz) {
        char *end;
        double d = strtod(sz, &end);
        while (*end == ' ')
            end++;
        if (end == sz || *end || !isfinite(d)) {
            sl_admin_reply_err(r, 400, SL_KERR_INVALID_SIZE, "size must be a number", NULL);
            return SL_DONE;
        }
        if (d < 1 || d > 1000 || floor(d) != d) {
            sl_admin_reply_err(r, 400, SL_KERR_INVALID_SIZE,
                               "size must be an integer between 1 and 1000", NULL);
            return SL_DONE;
        }
        *size = (size_t)d;
    }
    if (off) {
        size_t n = 0;
        char *raw = sl_admin_unb64(off, &n);
        if (!raw || n != 36 || !sl_uuid_valid(raw)) {
            free(raw);
            char msg[512];
            snprintf(msg, sizeof(msg), "'%.400s' is not a valid offset: bad base64 encoding", off);
            sl_admin_reply_err(r, 400, SL_KERR_INVALID_OFFSET, msg, NULL);
            return SL_DONE;
        }
        lower_uuid(raw, after);
        free(raw);
    }
    return SL_OK;
}

/*
 * Lists s (children of pid through fk when pid is set), one page, and
 * answers {data, offset, next}. next_base is the path for "next".
 */
/* The "next" link of a page that ends at entity id `last`; *tok gets the
 * offset token. Caller frees both. */
static char *next_link(sl_areq_t *r, const char *next_base, bool nested, const char *last,
                       char **tok)
{
    *tok = sl_admin_b64(last, strlen(last));
    char *etok = evhttp_uriencode(*tok, -1, 0);
    char next[1024];
    int len = snprintf(next, sizeof(next), "%s?offset=%s", next_base, etok);
    if (!nested && len > 0 && (size_t)len < sizeof(next)) {
        const char *tq = json_string_value(json_object_get(r->query, "tags"));
        const char *sq = json_string_value(json_object_get(r->query, "size"));
        if (tq) {
            char *et = evhttp_uriencode(tq, -1, 0);
            len += snprintf(next + len, sizeof(next) - (size_t)len, "&tags=%s", et);
            free(et);
        }
        if (sq && len > 0 && (size_t)len < sizeof(next))
            snprintf(next + len, sizeof(next) - (size_t)len, "&size=%s", sq);
    }
    free(etok);
    return sl_xstrdup(next);
}

/* An unfiltered page: the stored entity texts are spliced into the answer as
 * they are (they are the compact JSON a parse and dump would give back), so
 * a page of 1,000 entities costs no JSON parsing at all. Ends t. */
static int list_text(sl_areq_t *r, sl_txn_t *t, const sl_schema_t *s, const char *fk,
                     const char *pid, const char *next_base, bool nested, size_t size,
                     const char *after)
{
    char st[16384], last[37];
    sl_sb_t b;
    size_t n = 0;
    bool more = false;
    sl_sb_init(&b, st, sizeof(st));
    sl_sb_addlit(&b, "{\"data\":[");
    int rc =
        sl_txn_list_text(t, s->name, fk, pid, after[0] ? after : NULL, size, &b, &n, last, &more);
    sl_txn_abort(t);
    if (rc != SL_OK) {
        sl_sb_dispose(&b);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    sl_sb_addlit(&b, "]");
    if (more && (n > 0 || after[0])) {
        char *tok = NULL, *next = next_link(r, next_base, nested, n ? last : after, &tok);
        json_t *jt = json_string(tok), *jn = json_string(next);
        sl_sb_addlit(&b, ",\"offset\":");
        sl_json_out(&b, jt);
        sl_sb_addlit(&b, ",\"next\":");
        sl_json_out(&b, jn);
        json_decref(jt);
        json_decref(jn);
        free(next);
        free(tok);
    } else {
        sl_sb_addlit(&b, ",\"next\":null");
    }
    sl_sb_addlit(&b, "}");
    sl_admin_reply_sb(r, 200, &b);
    sl_sb_dispose(&b);
    return SL_DONE;
}

static int do_list(sl_areq_t *r, const sl_schema_t *s, const char *fk, const char *pid,
                   const char *next_base, bool nested, bool hide_zero_weight)
{
    size_t size;
    char after[37];
    json_t *tags;
    bool or_cond;
    sl_txn_t *t;
    if (page_args(r, &size, after) != SL_OK)
        return SL_DONE;
    if (parse_tags(r, &tags, &or_cond) != SL_OK)
        return SL_DONE;
    if (begin(r, false, &t) != SL_OK) {
        json_decref(tags);
        return SL_DONE;
    }
    json_t *data = json_array();
    bool more = false;
    int rc = SL_OK;
    if (!strcmp(s->name, "consumers") && json_object_get(r->query, "custom_id") && !nested) {
        char id[37];
        json_t *c = NULL;
        if (sl_txn_find_unique(t, "consumers", "custom_id",
                               json_string_value(json_object_get(r->query, "custom_id")),
                               id) == SL_OK &&
            sl_txn_get(t, "consumers", id, &c) == SL_OK)
            json_array_append_new(data, c);
        sl_txn_abort(t);
        json_decref(tags);
        sl_admin_reply(r, 200, json_pack("{s:o,s:n}", "data", data, "next"));
        return SL_DONE;
    }
    bool filtered = tags || hide_zero_weight;
    if (!filtered) {
        json_decref(data);
        return list_text(r, t, s, fk, pid, next_base, nested, size, after);
    } else {
        /* filter in id order; the offset is the last entity examined */
        while (json_array_size(data) < size) {
            json_t *batch = NULL;
            bool bmore = false;
            rc = sl_txn_list(t, s->name, fk, pid, after[0] ? after : NULL, 1000, &batch, &bmore);
            if (rc != SL_OK)
                break;
            size_t i, n = json_array_size(batch);
            json_t *x;
            more = bmore;
            json_array_foreach(batch, i, x)
            {
                const char *id = json_string_value(json_object_get(x, "id"));
                if (id)
                    snprintf(after, sizeof(after), "%s", id);
                bool keep = !tags || tags_match(x, tags, or_cond);
                if (hide_zero_weight && json_integer_value(json_object_get(x, "weight")) == 0)
                    keep = false;
                if (keep)
                    json_array_append(data, x);
                if (json_array_size(data) == size) {
                    if (i + 1 < n)
                        more = true;
                    break;
                }
            }
            json_decref(batch);
            if (!bmore)
                break;
        }
    }
    sl_txn_abort(t);
    if (rc != SL_OK) {
        json_decref(data);
        json_decref(tags);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    json_t *body = json_object();
    json_object_set_new(body, "data", data);
    size_t n = json_array_size(data);
    if (more && (n > 0 || after[0])) {
        const char *last =
            n ? json_string_value(json_object_get(json_array_get(data, n - 1), "id")) : after;
        if (filtered)
            last = after;
        char *tok = NULL, *next = next_link(r, next_base, nested, last, &tok);
        json_object_set_new(body, "offset", json_string(tok));
        json_object_set_new(body, "next", json_string(next));
        free(next);
        free(tok);
    } else {
        json_object_set_new(body, "next", json_null());
    }
    json_decref(tags);
    sl_admin_reply(r, 200, body);
    return SL_DONE;
}

/* ------------------------------------------------------------------------ */
/* routing                                                                   */

static int method_not_allowed(sl_areq_t *r)
{
    sl_admin_reply_msg(r, 405, "Method not allowed");
    return SL_DONE;
}

static int entity_methods(sl_areq_t *r, const sl_schema_t *s, const char *key,
                          const sl_schema_t *parent, const char *pkey, const char *fk)
{
    if (!sl_uuid_valid(key) && !sl_entity_endpoint_key(s) &&
        (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD ||
         r->method == EVHTTP_REQ_PATCH || r->method == EVHTTP_REQ_PUT ||
         r->method == EVHTTP_REQ_DELETE)) {
        /* no endpoint key: the segment must be a primary key (Kong's
         * validate_primary_key, errors.invalid_primary_key) */
        json_t *fields = json_pack("{s:s}", "id", "expected a valid UUID");
        char *p = sl_admin_lua_pretty(fields);
        char *msg = NULL;
        if (asprintf(&msg, "invalid primary key: '%s'", p) < 0)
            msg = NULL;
        sl_admin_reply_err(r, 400, SL_KERR_INVALID_PRIMARY_KEY, msg ? msg : "invalid primary key",
                           fields);
        free(msg);
        free(p);
        return SL_DONE;
    }
    switch (r->method) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
        return do_get(r, s, key, parent, pkey, fk);
    case EVHTTP_REQ_PATCH:
        return do_patch(r, s, key, parent, pkey, fk);
    case EVHTTP_REQ_PUT:
        return do_put(r, s, key, parent, pkey, fk);
    case EVHTTP_REQ_DELETE:
        return do_delete(r, s, key, parent, pkey, fk);
    default:
        return method_not_allowed(r);
    }
}

/*
 * PUT /E/{key}/F when E has no F yet (PUT /routes/{r}/service on a route
 * without a service): Kong creates F from the body under a new id and points
 * E at it, here in one transaction. Returns SL_DONE.
 */
static int put_associate(sl_areq_t *r, const sl_schema_t *s, const char *id, const sl_field_t *f)
{
    const sl_schema_t *fs = sl_entity_schema(f->reference);
    json_t *body, *e = NULL;
    sl_txn_t *t;
    char fid[37];
    if (write_body(r, fs, &body) != SL_OK)
        return SL_DONE;
    if (begin(r, true, &t) != SL_OK) {
        json_decref(body);
        return SL_DONE;
    }
    int rc = sl_txn_get(t, s->name, id, &e);
    if (rc != SL_OK) {
        sl_txn_abort(t);
        json_decref(body);
        if (rc == SL_ERR_NOT_FOUND)
            sl_admin_reply_msg(r, 404, "Not found");
        else
            sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    sl_uuid_v4(fid);
    json_object_set_new(body, "id", json_string(fid));
    json_object_del(body, "created_at");
    json_object_del(body, "updated_at");
    if (put_entity(r, t, fs, body, true) == SL_OK) {
        json_object_set_new(e, f->name, json_pack("{s:s}", "id", fid));
        json_object_del(e, "updated_at");
        if (put_entity(r, t, s, e, false) == SL_OK)
            commit_and_reply(r, t, body, 200);
    }
    json_decref(e);
    json_decref(body);
    return SL_DONE;
}

/* /E/{key}/F: the entity's foreign F. GET, PATCH and PUT act on it. */
static int foreign_entity(sl_areq_t *r, const sl_schema_t *s, const char *key, const sl_field_t *f)
{
    if (r->method == EVHTTP_REQ_DELETE || r->method == EVHTTP_REQ_POST)
        return method_not_allowed(r);
    if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD &&
        r->method != EVHTTP_REQ_PATCH && r->method != EVHTTP_REQ_PUT)
        return method_not_allowed(r);
    sl_txn_t *t;
    char id[37];
    json_t *e = NULL;
    if (begin(r, false, &t) != SL_OK)
        return SL_DONE;
    int rc = lookup(t, s, key, NULL, NULL, id, &e);
    sl_txn_abort(t);
    if (rc != SL_OK) {
        if (rc == SL_ERR_NOT_FOUND)
            sl_admin_reply_msg(r, 404, "Not found");
        else
            sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    const char *fid = fk_id(e, f->name);
    char fidbuf[37] = "";
    if (fid)
        snprintf(fidbuf, sizeof(fidbuf), "%s", fid);
    json_decref(e);
    if (!fidbuf[0] && r->method == EVHTTP_REQ_PUT)
        return put_associate(r, s, id, f);
    if (!fidbuf[0]) {
        sl_admin_reply_msg(r, 404, "Not found");
        return SL_DONE;
    }
    const sl_schema_t *fs = sl_entity_schema(f->reference);
    if (r->method == EVHTTP_REQ_PATCH)
        return do_patch(r, fs, fidbuf, NULL, NULL, NULL);
    if (r->method == EVHTTP_REQ_PUT)
        return do_put(r, fs, fidbuf, NULL, NULL, NULL);
    return do_get(r, fs, fidbuf, NULL, NULL, NULL);
}

int sl_admin_crud(sl_areq_t *r)
{
    if (r->nseg == 0 || r->nseg > 4)
        return SL_DECLINED;
    const sl_schema_t *s = top_schema(r->seg[0]);
    if (!s && !(r->nseg >= 3 && !strcmp(r->seg[0], "upstreams")))
        return SL_DECLINED;
    if (!s)
        s = sl_entity_schema("upstreams");
    char base[512];
    if (r->nseg == 1) {
        snprintf(base, sizeof(base), "/%s", r->seg[0]);
        if (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD)
            return do_list(r, s, NULL, NULL, base, false, false);
        if (r->method == EVHTTP_REQ_POST)
            return do_create(r, s, NULL, NULL, NULL);
        return method_not_allowed(r);
    }
    if (r->nseg == 2)
        return entity_methods(r, s, r->seg[1], NULL, NULL, NULL);

    const struct nest *n = find_nest(s->name, r->seg[2]);
    if (!n) {
        /* /E/{key}/F where F is one of E's foreign keys */
        const sl_field_t *f = schema_field(s, r->seg[2]);
        if (r->nseg == 3 && f && f->type == SL_FT_FOREIGN && strcmp(s->name, "snis") != 0)
            return foreign_entity(r, s, r->seg[1], f);
        if (r->nseg == 4 && !strcmp(s->name, "upstreams") && !strcmp(r->seg[2], "targets"))
            return SL_DECLINED;
        return SL_DECLINED;
    }
    const sl_schema_t *cs = sl_entity_schema(n->child);
    if (r->nseg == 3 || (r->nseg == 4 && !strcmp(n->child, "targets") &&
                         !strcmp(r->seg[3], "all") && r->method == EVHTTP_REQ_GET)) {
        if (r->method == EVHTTP_REQ_POST)
            return do_create(r, cs, n->fk, r->seg[1], s);
        if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD)
            return method_not_allowed(r);
        sl_txn_t *t;
        char pid[37];
        if (begin(r, false, &t) != SL_OK)
            return SL_DONE;
        int rc = resolve_parent(r, t, s, r->seg[1], pid);
        sl_txn_abort(t);
        if (rc != SL_OK)
            return SL_DONE;
        snprintf(base, sizeof(base), "/%s/%s/%s", r->seg[0], pid, r->seg[2]);
        /* Kong: /upstreams/{u}/targets hides disabled (weight 0) targets,
         * /upstreams/{u}/targets/all shows them */
        bool hide = !strcmp(cs->name, "targets") && r->nseg == 3;
        return do_list(r, cs, n->fk, pid, base, true, hide);
    }
    return entity_methods(r, cs, r->seg[3], s, r->seg[1], n->fk);
}
