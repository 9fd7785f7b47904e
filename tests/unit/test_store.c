/*
 * Unit tests of the control plane's LMDB store (controlplane/store.c): CRUD,
 * unique and composite-unique conflicts, foreign-key checks, index upkeep on
 * replace, cascading and blocked deletes, paginated listings (by id, by
 * parent, by tag), the version and hash, change records and their pruning, a
 * full map, and persistence across reopening. Each test gets its own store in
 * a fresh mkdtemp directory that teardown removes.
 */
#include "store.h"
#include "cfghash.h"
#include "json_out.h"

#include "uuid.h"

#include <ftw.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ------------------------------------------------------------------------ */
/* Fixtures and helpers                                                      */

#define MAP_DEFAULT (64u << 20)
#define DEPTH_DEFAULT 100

struct fx {
    char dir[64];
    sl_store_t *s;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static sl_store_t *open_store(const char *dir, uint64_t map_size, uint64_t depth)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_store_t *s = NULL;
    int rc = sl_store_open(dir, map_size, depth, &s, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.items[i]);
    sl_errors_dispose(&errs);
    assert_int_equal(rc, SL_OK);
    assert_non_null(s);
    return s;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/sluice-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    f->s = open_store(f->dir, MAP_DEFAULT, DEPTH_DEFAULT);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sl_store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Deterministic ids that sort by n. */
static const char *mkid(unsigned n, char buf[37])
{
    snprintf(buf, 37, "00000000-0000-4000-8000-%012u", n);
    return buf;
}

static json_t *fk(const char *id)
{
    return id ? json_pack("{s:s}", "id", id) : json_null();
}

static json_t *service(const char *id, const char *name)
{
    return json_pack("{s:s, s:o, s:s, s:i}", "id", id, "name",
                     name ? json_string(name) : json_null(), "host", "example.com", "port", 80);
}

static json_t *route(const char *id, const char *name, const char *svc)
{
    return json_pack("{s:s, s:s, s:o, s:[s]}", "id", id, "name", name, "service", fk(svc), "paths",
                     "/");
}

static json_t *consumer(const char *id, const char *username)
{
    return json_pack("{s:s, s:o, s:n}", "id", id, "username",
                     username ? json_string(username) : json_null(), "custom_id");
}

static json_t *plugin(const char *id, const char *name, const char *rt, const char *svc,
                      const char *cons)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:{}, s:b}", "id", id, "name", name, "route",
                     fk(rt), "service", fk(svc), "consumer", fk(cons), "config", "enabled", 1);
}

static json_t *upstream(const char *id, const char *name)
{
    return json_pack("{s:s, s:s}", "id", id, "name", name);
}

static json_t *target(const char *id, const char *up, const char *tgt)
{
    return json_pack("{s:s, s:o, s:s, s:i}", "id", id, "upstream", fk(up), "target", tgt, "weight",
                     100);
}

static json_t *keyauth(const char *id, const char *cons, const char *key)
{
    return json_pack("{s:s, s:o, s:s}", "id", id, "consumer", fk(cons), "key", key);
}

static json_t *acl(const char *id, const char *cons, const char *group)
{
    return json_pack("{s:s, s:o, s:s}", "id", id, "consumer", fk(cons), "group", group);
}

static json_t *with_tags(json_t *obj, const char *t1, const char *t2)
{
    json_t *tags = json_array();
    if (t1)
        json_array_append_new(tags, json_string(t1));
    if (t2)
        json_array_append_new(tags, json_string(t2));
    json_object_set_new(obj, "tags", tags);
    return obj;
}

static sl_txn_t *wbegin(sl_store_t *s)
{
    sl_txn_t *t = NULL;
    assert_int_equal(sl_store_begin(s, true, &t), SL_OK);
    return t;
}

static sl_txn_t *rbegin(sl_store_t *s)
{
    sl_txn_t *t = NULL;
    assert_int_equal(sl_store_begin(s, false, &t), SL_OK);
    return t;
}

/* Puts obj (taking the reference) in t; returns the put's code. */
static int tput(sl_txn_t *t, const char *entity, json_t *obj, const char **field)
{
    assert_non_null(obj);
    int rc = sl_txn_put(t, entity, obj, field);
    json_decref(obj);
    return rc;
}

/* One write transaction holding one put; the put's code, or the commit's. */
static int put1(sl_store_t *s, const char *entity, json_t *obj)
{
    sl_txn_t *t = wbegin(s);
    const char *field = NULL;
    int rc = tput(t, entity, obj, &field);
    if (rc != SL_OK) {
        sl_txn_abort(t);
        return rc;
    }
    return sl_txn_commit(t);
}

static int del1(sl_store_t *s, const char *entity, const char *id, const char **blocker)
{
    sl_txn_t *t = wbegin(s);
    int rc = sl_txn_delete(t, entity, id, blocker);
    if (rc != SL_OK) {
        sl_txn_abort(t);
        return rc;
    }
    return sl_txn_commit(t);
}

static bool exists(sl_store_t *s, const char *entity, const char *id)
{
    sl_txn_t *t = rbegin(s);
    json_t *obj = NULL;
    int rc = sl_txn_get(t, entity, id, &obj);
    sl_txn_abort(t);
    assert_true(rc == SL_OK || rc == SL_ERR_NOT_FOUND);
    json_decref(obj);
    return rc == SL_OK;
}

/* find_unique in a read transaction; "" when absent. */
static const char *unique_of(sl_store_t *s, const char *entity, const char *field,
                             const char *value, char out[37])
{
    sl_txn_t *t = rbegin(s);
    int rc = sl_txn_find_unique(t, entity, field, value, out);
    sl_txn_abort(t);
    assert_true(rc == SL_OK || rc == SL_ERR_NOT_FOUND);
    if (rc != SL_OK)
        out[0] = '\0';
    return out;
}

static uint64_t version_of(sl_store_t *s)
{
    sl_txn_t *t = rbegin(s);
    uint64_t v = sl_txn_version(t);
    sl_txn_abort(t);
    assert_int_equal(v, sl_store_version(s));
    return v;
}

/* Every entity of a table (or of one parent), one call. */
static json_t *list_all(sl_store_t *s, const char *entity, const char *fk_field, const char *fk_id)
{
    sl_txn_t *t = rbegin(s);
    json_t *arr = NULL;
    bool more = true;
    assert_int_equal(sl_txn_list(t, entity, fk_field, fk_id, NULL, 100000, &arr, &more), SL_OK);
    assert_false(more);
    sl_txn_abort(t);
    return arr;
}

static size_t count_of(sl_store_t *s, const char *entity, const char *fk_field, const char *fk_id)
{
    json_t *arr = list_all(s, entity, fk_field, fk_id);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

static json_t *tag_list(sl_store_t *s, const char *tag)
{
    sl_txn_t *t = rbegin(s);
    json_t *arr = NULL;
    bool more = true;
    assert_int_equal(sl_txn_list_tag(t, tag, NULL, NULL, 1000, &arr, &more), SL_OK);
    assert_false(more);
    sl_txn_abort(t);
    return arr;
}

static size_t tag_count(sl_store_t *s, const char *tag)
{
    json_t *arr = tag_list(s, tag);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

/* The one change record at version v. */
static json_t *change_at(sl_store_t *s, uint64_t v)
{
    json_t *arr = NULL;
    assert_int_equal(sl_store_changes_since(s, v - 1, &arr), SL_OK);
    assert_true(json_array_size(arr) >= 1);
    json_t *rec = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    assert_int_equal(json_integer_value(json_object_get(rec, "version")), v);
    return rec;
}

/* Whether a change list ({"entity","id"...} elements) holds (entity, id). */
static const json_t *change_find(const json_t *list, const char *entity, const char *id)
{
    size_t i;
    const json_t *c;
    json_array_foreach(list, i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "entity")), entity) == 0 &&
            strcmp(json_string_value(json_object_get(c, "id")), id) == 0)
            return c;
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------------ */
/* CRUD                                                                      */

static void test_crud(void **state)
{
    struct fx *f = *state;
    char a[37], b[37], got[37];
    mkid(1, a);
    mkid(2, b);

    json_t *svc = service(a, "svc-a");
    assert_int_equal(put1(f->s, "services", json_incref(svc)), SL_OK);

    sl_txn_t *t = rbegin(f->s);
    json_t *obj = NULL;
    assert_int_equal(sl_txn_get(t, "services", a, &obj), SL_OK);
    assert_true(json_equal(obj, svc));
    json_decref(obj);
    assert_int_equal(sl_txn_get(t, "services", b, &obj), SL_ERR_NOT_FOUND);
    assert_null(obj);
    assert_int_equal(sl_txn_get(t, "nothings", a, &obj), SL_ERR_INVALID);
    assert_int_equal(sl_txn_find_unique(t, "services", "name", "svc-a", got), SL_OK);
    assert_string_equal(got, a);
    assert_int_equal(sl_txn_find_unique(t, "services", "host", "x", got), SL_ERR_INVALID);
    /* Writes in a read transaction are refused. */
    const char *field = NULL;
    assert_int_equal(sl_txn_put(t, "services", svc, &field), SL_ERR_INVALID);
    assert_int_equal(sl_txn_delete(t, "services", a, &field), SL_ERR_INVALID);
    sl_txn_abort(t);

    /* Replace. */
    json_object_set_new(svc, "host", json_string("other.example"));
    assert_int_equal(put1(f->s, "services", json_incref(svc)), SL_OK);
    t = rbegin(f->s);
    assert_int_equal(sl_txn_get(t, "services", a, &obj), SL_OK);
    assert_string_equal(json_string_value(json_object_get(obj, "host")), "other.example");
    json_decref(obj);
    sl_txn_abort(t);
    assert_int_equal(count_of(f->s, "services", NULL, NULL), 1);

    /* Bad input. */
    t = wbegin(f->s);
    json_t *noid = json_pack("{s:s}", "name", "x");
    assert_int_equal(sl_txn_put(t, "services", noid, &field), SL_ERR_INVALID);
    json_object_set_new(noid, "id", json_string("not:an-id"));
    assert_int_equal(sl_txn_put(t, "services", noid, &field), SL_ERR_INVALID);
    json_decref(noid);
    assert_int_equal(sl_txn_put(t, "nothings", svc, &field), SL_ERR_INVALID);
    sl_txn_abort(t);

    /* Delete. */
    const char *blocker = "x";
    assert_int_equal(del1(f->s, "services", a, &blocker), SL_OK);
    assert_null(blocker);
    assert_false(exists(f->s, "services", a));
    assert_string_equal(unique_of(f->s, "services", "name", "svc-a", got), "");
    assert_int_equal(del1(f->s, "services", a, &blocker), SL_ERR_NOT_FOUND);
    assert_int_equal(count_of(f->s, "services", NULL, NULL), 0);
    json_decref(svc);
}

/* ------------------------------------------------------------------------ */
/* Unique indexes                                                            */

static void test_unique_conflicts(void **state)
{
    struct fx *f = *state;
    char s1[37], s2[37], c1[37], c2[37], got[37];
    const char *field = NULL;
    mkid(1, s1);
    mkid(2, s2);
    mkid(3, c1);
    mkid(4, c2);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", service(s1, "a"), &field), SL_OK);
    assert_int_equal(tput(t, "services", service(s2, "a"), &field), SL_ERR_EXISTS);
    assert_string_equal(field, "name");
    /* The refused put changed nothing; the transaction goes on. */
    assert_int_equal(sl_txn_find_unique(t, "services", "name", "a", got), SL_OK);
    assert_string_equal(got, s1);
    /* The same entity keeps its own value. */
    assert_int_equal(tput(t, "services", service(s1, "a"), &field), SL_OK);
    json_t *svc1b = service(s1, "a");
    json_object_set_new(svc1b, "port", json_integer(8080));
    assert_int_equal(tput(t, "services", svc1b, &field), SL_OK);
    /* Services without a name do not collide. */
    assert_int_equal(tput(t, "services", service(s2, NULL), &field), SL_OK);

    json_t *cons = consumer(c1, "alice");
    json_object_set_new(cons, "custom_id", json_string("cid-1"));
    assert_int_equal(tput(t, "consumers", cons, &field), SL_OK);
    cons = consumer(c2, "bob");
    json_object_set_new(cons, "custom_id", json_string("cid-1"));
    assert_int_equal(tput(t, "consumers", cons, &field), SL_ERR_EXISTS);
    assert_string_equal(field, "custom_id");
    assert_int_equal(tput(t, "consumers", consumer(c2, "alice"), &field), SL_ERR_EXISTS);
    assert_string_equal(field, "username");
    assert_int_equal(tput(t, "consumers", consumer(c2, "bob"), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_string_equal(unique_of(f->s, "consumers", "custom_id", "cid-1", got), c1);
    assert_false(exists(f->s, "services", mkid(99, got)));
    assert_int_equal(count_of(f->s, "services", NULL, NULL), 2);
}

static void test_composite_unique(void **state)
{
    struct fx *f = *state;
    char u1[37], u2[37], t1[37], t2[37], t3[37], sv[37], p1[37], p2[37], p3[37], c1[37], a1[37],
        a2[37], got[37], key[128];
    const char *field = NULL;
    mkid(1, u1);
    mkid(2, u2);
    mkid(3, t1);
    mkid(4, t2);
    mkid(5, t3);
    mkid(6, sv);
    mkid(7, p1);
    mkid(8, p2);
    mkid(9, p3);
    mkid(10, c1);
    mkid(11, a1);
    mkid(12, a2);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "upstreams", upstream(u1, "up1"), &field), SL_OK);
    assert_int_equal(tput(t, "upstreams", upstream(u2, "up2"), &field), SL_OK);
    assert_int_equal(tput(t, "upstreams", upstream(t1, "up1"), &field), SL_ERR_EXISTS);
    assert_string_equal(field, "name");
    assert_int_equal(tput(t, "targets", target(t1, u1, "10.0.0.1:80"), &field), SL_OK);
    assert_int_equal(tput(t, "targets", target(t2, u1, "10.0.0.1:80"), &field), SL_ERR_EXISTS);
    assert_string_equal(field, "target");
    assert_int_equal(tput(t, "targets", target(t3, u2, "10.0.0.1:80"), &field), SL_OK);
    assert_int_equal(tput(t, "targets", target(t2, u1, "[::1]:8000"), &field), SL_OK);

    assert_int_equal(tput(t, "services", service(sv, "s"), &field), SL_OK);
    assert_int_equal(tput(t, "consumers", consumer(c1, "c"), &field), SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(p1, "rate-limiting", NULL, NULL, NULL), &field),
                     SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(p2, "rate-limiting", NULL, NULL, NULL), &field),
                     SL_ERR_EXISTS);
    assert_string_equal(field, "cache_key");
    assert_int_equal(tput(t, "plugins", plugin(p2, "rate-limiting", NULL, sv, NULL), &field),
                     SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(p3, "rate-limiting", NULL, sv, NULL), &field),
                     SL_ERR_EXISTS);
    assert_int_equal(tput(t, "plugins", plugin(p3, "rate-limiting", NULL, sv, c1), &field), SL_OK);
    /* instance_name is unique on its own. */
    json_t *named = plugin(p1, "rate-limiting", NULL, NULL, NULL);
    json_object_set_new(named, "instance_name", json_string("rl"));
    assert_int_equal(tput(t, "plugins", named, &field), SL_OK);
    named = plugin(p2, "rate-limiting", NULL, sv, NULL);
    json_object_set_new(named, "instance_name", json_string("rl"));
    assert_int_equal(tput(t, "plugins", named, &field), SL_ERR_EXISTS);
    assert_string_equal(field, "instance_name");

    assert_int_equal(tput(t, "acls", acl(a1, c1, "admins"), &field), SL_OK);
    assert_int_equal(tput(t, "acls", acl(a2, c1, "admins"), &field), SL_ERR_EXISTS);
    assert_string_equal(field, "group");
    assert_int_equal(tput(t, "acls", acl(a2, c1, "users"), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);

    snprintf(key, sizeof(key), "%s:10.0.0.1:80", u1);
    assert_string_equal(unique_of(f->s, "targets", "target", key, got), t1);
    snprintf(key, sizeof(key), "%s:10.0.0.1:80", u2);
    assert_string_equal(unique_of(f->s, "targets", "target", key, got), t3);
    snprintf(key, sizeof(key), "%s:[::1]:8000", u1);
    assert_string_equal(unique_of(f->s, "targets", "target", key, got), t2);
    assert_string_equal(unique_of(f->s, "plugins", "cache_key", "rate-limiting:::", got), p1);
    snprintf(key, sizeof(key), "rate-limiting::%s:", sv);
    assert_string_equal(unique_of(f->s, "plugins", "cache_key", key, got), p2);
    snprintf(key, sizeof(key), "rate-limiting::%s:%s", sv, c1);
    assert_string_equal(unique_of(f->s, "plugins", "cache_key", key, got), p3);
    assert_string_equal(unique_of(f->s, "plugins", "instance_name", "rl", got), p1);
    snprintf(key, sizeof(key), "%s:users", c1);
    assert_string_equal(unique_of(f->s, "acls", "group", key, got), a2);
}

static void test_long_values(void **state)
{
    struct fx *f = *state;
    char s1[37], s2[37], got[37];
    const char *field = NULL;
    mkid(1, s1);
    mkid(2, s2);
    char name[700], name2[700], tag[600];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memcpy(name2, name, sizeof(name));
    name2[650] = 'x'; /* differs after the kept prefix */
    memset(tag, 't', sizeof(tag) - 1);
    tag[sizeof(tag) - 1] = '\0';

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", with_tags(service(s1, name), tag, "short"), &field),
                     SL_OK);
    assert_int_equal(tput(t, "services", service(s2, name), &field), SL_ERR_EXISTS);
    assert_int_equal(tput(t, "services", with_tags(service(s2, name2), tag, NULL), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);

    assert_string_equal(unique_of(f->s, "services", "name", name, got), s1);
    assert_string_equal(unique_of(f->s, "services", "name", name2, got), s2);
    json_t *arr = tag_list(f->s, tag);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "tag")), tag);
    json_decref(arr);

    t = rbegin(f->s);
    bool more = true;
    assert_int_equal(sl_txn_list_tags(t, NULL, NULL, NULL, 100, &arr, &more), SL_OK);
    assert_false(more);
    assert_int_equal(json_array_size(arr), 3);
    size_t i, longs = 0;
    json_t *el;
    json_array_foreach(arr, i, el)
    {
        const char *tg = json_string_value(json_object_get(el, "tag"));
        longs += strcmp(tg, tag) == 0;
        assert_true(strcmp(tg, tag) == 0 || strcmp(tg, "short") == 0);
    }
    assert_int_equal(longs, 2);
    json_decref(arr);
    sl_txn_abort(t);

    /* Deleting removes the shortened entries too. */
    assert_int_equal(del1(f->s, "services", s1, NULL), SL_OK);
    assert_string_equal(unique_of(f->s, "services", "name", name, got), "");
    assert_int_equal(tag_count(f->s, tag), 1);
    assert_int_equal(tag_count(f->s, "short"), 0);
}

/* ------------------------------------------------------------------------ */
/* Foreign keys                                                              */

static void test_fk_missing(void **state)
{
    struct fx *f = *state;
    char sv[37], r1[37], p1[37], k1[37], c1[37];
    const char *field = NULL;
    mkid(1, sv);
    mkid(2, r1);
    mkid(3, p1);
    mkid(4, k1);
    mkid(5, c1);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "routes", route(r1, "r", sv), &field), SL_ERR_NOT_FOUND);
    assert_string_equal(field, "service");
    assert_int_equal(tput(t, "plugins", plugin(p1, "cors", NULL, NULL, c1), &field),
                     SL_ERR_NOT_FOUND);
    assert_string_equal(field, "consumer");
    assert_int_equal(tput(t, "keyauth_credentials", keyauth(k1, c1, "k"), &field),
                     SL_ERR_NOT_FOUND);
    assert_string_equal(field, "consumer");
    json_t *bad = route(r1, "r", NULL);
    json_object_set_new(bad, "service", json_string(sv));
    assert_int_equal(tput(t, "routes", bad, &field), SL_ERR_INVALID);
    assert_string_equal(field, "service");
    /* Refused puts leave nothing behind: the commit is not a change. */
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(version_of(f->s), 0);
    assert_int_equal(count_of(f->s, "routes", NULL, NULL), 0);

    /* A parent created earlier in the same transaction counts. */
    t = wbegin(f->s);
    assert_int_equal(tput(t, "services", service(sv, "s"), &field), SL_OK);
    assert_int_equal(tput(t, "routes", route(r1, "r", sv), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_true(exists(f->s, "routes", r1));
}

static void test_replace_updates_indexes(void **state)
{
    struct fx *f = *state;
    char a[37], b[37], r[37], c[37], got[37];
    const char *field = NULL;
    mkid(1, a);
    mkid(2, b);
    mkid(3, r);
    mkid(4, c);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", with_tags(service(a, "old"), "t1", "t2"), &field), SL_OK);
    assert_int_equal(tput(t, "services", service(b, "other"), &field), SL_OK);
    assert_int_equal(tput(t, "routes", route(r, "r", a), &field), SL_OK);
    json_t *cons = consumer(c, "alice");
    json_object_set_new(cons, "custom_id", json_string("x1"));
    assert_int_equal(tput(t, "consumers", cons, &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);

    t = wbegin(f->s);
    assert_int_equal(tput(t, "services", with_tags(service(a, "new"), "t2", "t3"), &field), SL_OK);
    /* Within the transaction the old value is already free. */
    assert_int_equal(tput(t, "services", service(b, "old"), &field), SL_OK);
    assert_int_equal(tput(t, "routes", route(r, "r", b), &field), SL_OK);
    cons = consumer(c, NULL);
    json_object_set_new(cons, "custom_id", json_string("x1"));
    assert_int_equal(tput(t, "consumers", cons, &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);

    assert_string_equal(unique_of(f->s, "services", "name", "new", got), a);
    assert_string_equal(unique_of(f->s, "services", "name", "old", got), b);
    assert_string_equal(unique_of(f->s, "services", "name", "other", got), "");
    assert_string_equal(unique_of(f->s, "consumers", "username", "alice", got), "");
    assert_string_equal(unique_of(f->s, "consumers", "custom_id", "x1", got), c);
    assert_int_equal(tag_count(f->s, "t1"), 0);
    assert_int_equal(tag_count(f->s, "t2"), 1);
    assert_int_equal(tag_count(f->s, "t3"), 1);
    assert_int_equal(count_of(f->s, "routes", "service", a), 0);
    assert_int_equal(count_of(f->s, "routes", "service", b), 1);
    /* The route moved, so the first service can go. */
    assert_int_equal(del1(f->s, "services", a, NULL), SL_OK);
    const char *blocker = NULL;
    assert_int_equal(del1(f->s, "services", b, &blocker), SL_ERR_EXISTS);
    assert_string_equal(blocker, "routes");
}

/* ------------------------------------------------------------------------ */
/* Deletes                                                                   */

static void test_cascade_delete(void **state)
{
    struct fx *f = *state;
    char c[37], d[37], p[37], k[37], kd[37], a[37], up[37], sv[37], rt[37], prt[37], psv[37],
        got[37];
    char tg[3][37];
    const char *field = NULL;
    mkid(1, c);
    mkid(2, d);
    mkid(3, p);
    mkid(4, k);
    mkid(5, kd);
    mkid(6, a);
    mkid(7, up);
    mkid(8, sv);
    mkid(9, rt);
    mkid(10, prt);
    mkid(11, psv);
    for (unsigned i = 0; i < 3; i++)
        mkid(20 + i, tg[i]);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "consumers", consumer(c, "carol"), &field), SL_OK);
    assert_int_equal(tput(t, "consumers", consumer(d, "dave"), &field), SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(p, "rate-limiting", NULL, NULL, c), &field), SL_OK);
    assert_int_equal(
        tput(t, "keyauth_credentials", with_tags(keyauth(k, c, "k1"), "cred", NULL), &field),
        SL_OK);
    assert_int_equal(tput(t, "keyauth_credentials", keyauth(kd, d, "k2"), &field), SL_OK);
    assert_int_equal(tput(t, "acls", acl(a, c, "g"), &field), SL_OK);
    assert_int_equal(tput(t, "upstreams", upstream(up, "up"), &field), SL_OK);
    for (unsigned i = 0; i < 3; i++) {
        char tgt[32];
        snprintf(tgt, sizeof(tgt), "10.0.0.%u:80", i + 1);
        assert_int_equal(tput(t, "targets", target(tg[i], up, tgt), &field), SL_OK);
    }
    assert_int_equal(tput(t, "services", service(sv, "s"), &field), SL_OK);
    assert_int_equal(tput(t, "routes", route(rt, "r", sv), &field), SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(prt, "cors", rt, NULL, NULL), &field), SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(psv, "cors", NULL, sv, NULL), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    uint64_t v = version_of(f->s);

    /* A consumer takes its plugins and credentials with it. */
    assert_int_equal(del1(f->s, "consumers", c, NULL), SL_OK);
    assert_int_equal(version_of(f->s), v + 1);
    assert_false(exists(f->s, "consumers", c));
    assert_false(exists(f->s, "plugins", p));
    assert_false(exists(f->s, "keyauth_credentials", k));
    assert_false(exists(f->s, "acls", a));
    assert_true(exists(f->s, "consumers", d));
    assert_true(exists(f->s, "keyauth_credentials", kd));
    assert_string_equal(unique_of(f->s, "keyauth_credentials", "key", "k1", got), "");
    assert_string_equal(unique_of(f->s, "keyauth_credentials", "key", "k2", got), kd);
    assert_int_equal(count_of(f->s, "keyauth_credentials", "consumer", c), 0);
    assert_int_equal(count_of(f->s, "keyauth_credentials", "consumer", d), 1);
    assert_int_equal(tag_count(f->s, "cred"), 0);
    json_t *rec = change_at(f->s, v + 1);
    json_t *dels = json_object_get(rec, "deletes");
    assert_int_equal(json_array_size(json_object_get(rec, "upserts")), 0);
    assert_int_equal(json_array_size(dels), 4);
    assert_non_null(change_find(dels, "consumers", c));
    assert_non_null(change_find(dels, "plugins", p));
    assert_non_null(change_find(dels, "keyauth_credentials", k));
    assert_non_null(change_find(dels, "acls", a));
    json_decref(rec);

    /* An upstream takes its targets. */
    assert_int_equal(del1(f->s, "upstreams", up, NULL), SL_OK);
    for (unsigned i = 0; i < 3; i++)
        assert_false(exists(f->s, "targets", tg[i]));
    char key[80];
    snprintf(key, sizeof(key), "%s:10.0.0.1:80", up);
    assert_string_equal(unique_of(f->s, "targets", "target", key, got), "");
    assert_int_equal(count_of(f->s, "targets", NULL, NULL), 0);

    /* A route takes its plugins, not its service's. */
    assert_int_equal(del1(f->s, "routes", rt, NULL), SL_OK);
    assert_false(exists(f->s, "plugins", prt));
    assert_true(exists(f->s, "plugins", psv));
    assert_true(exists(f->s, "services", sv));
    /* Then the service goes, with its plugin. */
    assert_int_equal(del1(f->s, "services", sv, NULL), SL_OK);
    assert_false(exists(f->s, "plugins", psv));
    assert_int_equal(count_of(f->s, "plugins", NULL, NULL), 0);
}

static void test_blocked_delete(void **state)
{
    struct fx *f = *state;
    char sv[37], rt[37], p[37], cert[37], sni[37], sv2[37];
    const char *field = NULL, *blocker = NULL;
    mkid(1, sv);
    mkid(2, rt);
    mkid(3, p);
    mkid(4, cert);
    mkid(5, sni);
    mkid(6, sv2);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", service(sv, "s"), &field), SL_OK);
    assert_int_equal(tput(t, "routes", route(rt, "r", sv), &field), SL_OK);
    assert_int_equal(tput(t, "plugins", plugin(p, "cors", NULL, sv, NULL), &field), SL_OK);
    assert_int_equal(tput(t, "certificates",
                          json_pack("{s:s,s:s,s:s}", "id", cert, "cert", "C", "key", "K"), &field),
                     SL_OK);
    assert_int_equal(
        tput(t, "snis",
             json_pack("{s:s,s:s,s:o}", "id", sni, "name", "a.example", "certificate", fk(cert)),
             &field),
        SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    uint64_t v = version_of(f->s);

    t = wbegin(f->s);
    assert_int_equal(sl_txn_delete(t, "services", sv, &blocker), SL_ERR_EXISTS);
    assert_string_equal(blocker, "routes");
    /* Nothing was deleted, not even the cascading plugin. */
    json_t *obj = NULL;
    assert_int_equal(sl_txn_get(t, "plugins", p, &obj), SL_OK);
    json_decref(obj);
    assert_int_equal(sl_txn_delete(t, "certificates", cert, &blocker), SL_ERR_EXISTS);
    assert_string_equal(blocker, "snis");
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(version_of(f->s), v);
    assert_true(exists(f->s, "services", sv));
    assert_true(exists(f->s, "plugins", p));

    /* A service's client certificate blocks too. */
    json_t *s2 = service(sv2, "s2");
    json_object_set_new(s2, "client_certificate", fk(cert));
    assert_int_equal(put1(f->s, "services", s2), SL_OK);
    assert_int_equal(del1(f->s, "snis", sni, NULL), SL_OK);
    assert_int_equal(del1(f->s, "certificates", cert, &blocker), SL_ERR_EXISTS);
    assert_string_equal(blocker, "services");
    assert_int_equal(del1(f->s, "services", sv2, NULL), SL_OK);
    assert_int_equal(del1(f->s, "certificates", cert, &blocker), SL_OK);

    /* Once the route is gone the service goes, taking the plugin. */
    t = wbegin(f->s);
    assert_int_equal(sl_txn_delete(t, "routes", rt, &blocker), SL_OK);
    assert_int_equal(sl_txn_delete(t, "services", sv, &blocker), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_false(exists(f->s, "plugins", p));
}

static void test_clear(void **state)
{
    struct fx *f = *state;
    char id[37], got[37];
    const char *field = NULL;
    sl_txn_t *t = wbegin(f->s);
    for (unsigned i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%u", i);
        assert_int_equal(
            tput(t, "services", with_tags(service(mkid(i + 1, id), name), "x", NULL), &field),
            SL_OK);
        assert_int_equal(
            tput(t, "routes", route(mkid(i + 100, id), name, mkid(i + 1, got)), &field), SL_OK);
    }
    assert_int_equal(sl_txn_commit(t), SL_OK);

    t = wbegin(f->s);
    assert_int_equal(sl_txn_clear(t), SL_OK);
    /* POST /config: clear, then load again in the same transaction. */
    assert_int_equal(tput(t, "services", service(mkid(1, id), "s0"), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(version_of(f->s), 2);

    assert_int_equal(count_of(f->s, "services", NULL, NULL), 1);
    assert_int_equal(count_of(f->s, "routes", NULL, NULL), 0);
    assert_int_equal(count_of(f->s, "routes", "service", mkid(1, id)), 0);
    assert_int_equal(tag_count(f->s, "x"), 0);
    assert_string_equal(unique_of(f->s, "services", "name", "s0", got), mkid(1, id));
    assert_string_equal(unique_of(f->s, "services", "name", "s1", got), "");
    json_t *rec = change_at(f->s, 2);
    assert_int_equal(json_array_size(json_object_get(rec, "upserts")), 1);
    assert_int_equal(json_array_size(json_object_get(rec, "deletes")), 39);
    json_decref(rec);

    /* Clearing an empty store is not a change. */
    t = wbegin(f->s);
    assert_int_equal(sl_txn_delete(t, "services", mkid(1, id), NULL), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    t = wbegin(f->s);
    assert_int_equal(sl_txn_clear(t), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(version_of(f->s), 3);
}

/* ------------------------------------------------------------------------ */
/* Listings                                                                  */

#define NPAGE 2500

static void check_pages(sl_store_t *s, char **ids, size_t n, size_t limit)
{
    sl_txn_t *t = rbegin(s);
    char after[37] = "";
    size_t seen = 0;
    for (;;) {
        json_t *arr = NULL;
        bool more = false;
        assert_int_equal(
            sl_txn_list(t, "consumers", NULL, NULL, seen ? after : NULL, limit, &arr, &more),
            SL_OK);
        assert_true(json_array_size(arr) <= limit);
        size_t i;
        json_t *el;
        json_array_foreach(arr, i, el)
        {
            const char *id = json_string_value(json_object_get(el, "id"));
            assert_true(seen < n);
            assert_string_equal(id, ids[seen]); /* in order, no gap, no duplicate */
            seen++;
            strcpy(after, id);
        }
        assert_int_equal(more, seen < n);
        if (more)
            assert_int_equal(json_array_size(arr), limit);
        json_decref(arr);
        if (!more)
            break;
    }
    assert_int_equal(seen, n);
    sl_txn_abort(t);
}

static void test_list_pagination(void **state)
{
    struct fx *f = *state;
    char **ids = calloc(NPAGE, sizeof(*ids));
    const char *field = NULL;
    for (size_t b = 0; b < 5; b++) {
        sl_txn_t *t = wbegin(f->s);
        for (size_t i = b * (NPAGE / 5); i < (b + 1) * (NPAGE / 5); i++) {
            ids[i] = malloc(37);
            sl_uuid_v4(ids[i]);
            char name[32];
            snprintf(name, sizeof(name), "user-%zu", i);
            assert_int_equal(tput(t, "consumers", consumer(ids[i], name), &field), SL_OK);
        }
        assert_int_equal(sl_txn_commit(t), SL_OK);
    }
    qsort(ids, NPAGE, sizeof(*ids), cmp_str);
    check_pages(f->s, ids, NPAGE, 100);
    check_pages(f->s, ids, NPAGE, 77);
    check_pages(f->s, ids, NPAGE, NPAGE);
    check_pages(f->s, ids, NPAGE, 1000);

    /* limit 0 and a cursor that is not an existing id. */
    sl_txn_t *t = rbegin(f->s);
    json_t *arr = NULL;
    bool more = false;
    assert_int_equal(sl_txn_list(t, "consumers", NULL, NULL, NULL, 0, &arr, &more), SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    assert_true(more);
    json_decref(arr);
    assert_int_equal(sl_txn_list(t, "consumers", NULL, NULL, "0", 5, &arr, &more), SL_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "id")), ids[0]);
    json_decref(arr);
    assert_int_equal(sl_txn_list(t, "consumers", NULL, NULL, "g", 5, &arr, &more), SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    assert_false(more);
    json_decref(arr);
    assert_int_equal(sl_txn_list(t, "consumers", NULL, NULL,
                                 "0123456789012345678901234567890123456789", 5, &arr, &more),
                     SL_ERR_INVALID);
    assert_null(arr);
    assert_int_equal(sl_txn_list(t, "services", NULL, NULL, NULL, 5, &arr, &more), SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    assert_false(more);
    json_decref(arr);
    sl_txn_abort(t);

    for (size_t i = 0; i < NPAGE; i++)
        free(ids[i]);
    free(ids);
}

static void test_list_fk(void **state)
{
    struct fx *f = *state;
    char sv[3][37], id[37];
    const char *field = NULL;
    sl_txn_t *t = wbegin(f->s);
    for (unsigned i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%u", i);
        assert_int_equal(tput(t, "services", service(mkid(1000 + i, sv[i]), name), &field), SL_OK);
    }
    for (unsigned i = 0; i < 250; i++) {
        char name[16];
        snprintf(name, sizeof(name), "r%u", i);
        /* Ids in an order unrelated to the services. */
        assert_int_equal(
            tput(t, "routes", route(mkid((i * 7919) % 1000, id), name, sv[i % 3]), &field), SL_OK);
    }
    assert_int_equal(sl_txn_commit(t), SL_OK);

    t = rbegin(f->s);
    char after[37] = "";
    size_t seen = 0;
    bool more = true;
    while (more) {
        json_t *arr = NULL;
        assert_int_equal(
            sl_txn_list(t, "routes", "service", sv[1], seen ? after : NULL, 10, &arr, &more),
            SL_OK);
        size_t i;
        json_t *el;
        json_array_foreach(arr, i, el)
        {
            const char *rid = json_string_value(json_object_get(el, "id"));
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(el, "service"), "id")), sv[1]);
            if (seen)
                assert_true(strcmp(rid, after) > 0);
            strcpy(after, rid);
            seen++;
        }
        json_decref(arr);
    }
    assert_int_equal(seen, 83); /* i % 3 == 1 for i < 250 */

    json_t *arr = NULL;
    assert_int_equal(sl_txn_list(t, "routes", "nope", sv[1], NULL, 10, &arr, &more),
                     SL_ERR_INVALID);
    assert_int_equal(sl_txn_list(t, "routes", "service", mkid(5, id), NULL, 10, &arr, &more),
                     SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    assert_false(more);
    json_decref(arr);
    sl_txn_abort(t);
    assert_int_equal(count_of(f->s, "routes", "service", sv[0]), 84);
    assert_int_equal(count_of(f->s, "routes", "service", sv[2]), 83);
}

static void test_tags(void **state)
{
    struct fx *f = *state;
    char id[37];
    const char *field = NULL;
    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", with_tags(service(mkid(1, id), "s1"), "a", "b"), &field),
                     SL_OK);
    assert_int_equal(tput(t, "services", with_tags(service(mkid(2, id), "s2"), "a", NULL), &field),
                     SL_OK);
    assert_int_equal(tput(t, "consumers", with_tags(consumer(mkid(3, id), "c"), "a", "c"), &field),
                     SL_OK);
    assert_int_equal(tput(t, "upstreams", with_tags(upstream(mkid(4, id), "u"), "b", NULL), &field),
                     SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);

    json_t *arr = tag_list(f->s, "a");
    assert_int_equal(json_array_size(arr), 3);
    /* Tag index order: entity name, then id. */
    const char *expect[3][2] = {{"consumers", "3"}, {"services", "1"}, {"services", "2"}};
    for (size_t i = 0; i < 3; i++) {
        json_t *el = json_array_get(arr, i);
        assert_string_equal(json_string_value(json_object_get(el, "entity_name")), expect[i][0]);
        assert_string_equal(json_string_value(json_object_get(el, "entity_id")),
                            mkid((unsigned)atoi(expect[i][1]), id));
        assert_string_equal(json_string_value(json_object_get(el, "tag")), "a");
    }
    json_decref(arr);

    /* Page one by one with the cursor. */
    t = rbegin(f->s);
    char ent[64] = "", eid[37] = "";
    size_t seen = 0;
    bool more = true;
    while (more) {
        assert_int_equal(
            sl_txn_list_tag(t, "a", seen ? ent : NULL, seen ? eid : NULL, 1, &arr, &more), SL_OK);
        assert_int_equal(json_array_size(arr), 1);
        json_t *el = json_array_get(arr, 0);
        assert_string_equal(json_string_value(json_object_get(el, "entity_name")), expect[seen][0]);
        strcpy(ent, json_string_value(json_object_get(el, "entity_name")));
        strcpy(eid, json_string_value(json_object_get(el, "entity_id")));
        seen++;
        json_decref(arr);
    }
    assert_int_equal(seen, 3);
    assert_int_equal(sl_txn_list_tag(t, "a", "services", NULL, 1, &arr, &more), SL_ERR_INVALID);
    /* The empty tag matches nothing. */
    assert_int_equal(sl_txn_list_tag(t, "", NULL, NULL, 10, &arr, &more), SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);

    /* Every tag, in pages of two. */
    char atag[64] = "";
    seen = 0;
    more = true;
    const char *tags_expect[] = {"a", "a", "a", "b", "b", "c"};
    while (more) {
        assert_int_equal(sl_txn_list_tags(t, seen ? atag : NULL, seen ? ent : NULL,
                                          seen ? eid : NULL, 2, &arr, &more),
                         SL_OK);
        size_t i;
        json_t *el;
        json_array_foreach(arr, i, el)
        {
            assert_string_equal(json_string_value(json_object_get(el, "tag")), tags_expect[seen]);
            strcpy(atag, json_string_value(json_object_get(el, "tag")));
            strcpy(ent, json_string_value(json_object_get(el, "entity_name")));
            strcpy(eid, json_string_value(json_object_get(el, "entity_id")));
            seen++;
        }
        json_decref(arr);
    }
    assert_int_equal(seen, 6);
    sl_txn_abort(t);

    /* Deleting and retagging keep the index exact. */
    assert_int_equal(del1(f->s, "consumers", mkid(3, id), NULL), SL_OK);
    assert_int_equal(put1(f->s, "services", with_tags(service(mkid(1, id), "s1"), "c", NULL)),
                     SL_OK);
    assert_int_equal(tag_count(f->s, "a"), 1);
    assert_int_equal(tag_count(f->s, "b"), 1);
    assert_int_equal(tag_count(f->s, "c"), 1);
}

/* ------------------------------------------------------------------------ */
/* Version, hash and change records                                          */

/* The content hash recomputed from what the store lists (cfghash.h). */
static void content_hash(sl_store_t *s, char out[33])
{
    static const char *const tables[] = {"services", "consumers", "routes"};
    sl_cfghash_t h;
    memset(&h, 0, sizeof(h));
    sl_txn_t *t = rbegin(s);
    for (size_t i = 0; i < 3; i++) {
        json_t *arr = NULL;
        bool more = false;
        assert_int_equal(sl_txn_list(t, tables[i], NULL, NULL, NULL, 1000, &arr, &more), SL_OK);
        size_t j;
        json_t *e;
        json_array_foreach(arr, j, e)
        {
            size_t len = 0;
            char *text = sl_json_out_dup(e, &len);
            sl_cfghash_toggle(&h, tables[i], json_string_value(json_object_get(e, "id")), text,
                              len);
            free(text);
        }
        json_decref(arr);
    }
    sl_txn_abort(t);
    sl_cfghash_hex(&h, out);
}

static void test_version(void **state)
{
    struct fx *f = *state;
    char id[37], hash[33], want[33];
    const char *field = NULL;
    assert_int_equal(version_of(f->s), 0);
    sl_txn_t *t = rbegin(f->s);
    sl_txn_hash(t, hash);
    assert_string_equal(hash, "00000000000000000000000000000000");
    sl_txn_abort(t);

    /* A write transaction that changes nothing is no version. */
    t = wbegin(f->s);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(version_of(f->s), 0);

    /* Several writes in one transaction are one version. */
    t = wbegin(f->s);
    assert_int_equal(sl_txn_version(t), 0);
    assert_int_equal(tput(t, "services", service(mkid(1, id), "a"), &field), SL_OK);
    assert_int_equal(tput(t, "services", service(mkid(2, id), "b"), &field), SL_OK);
    assert_int_equal(tput(t, "services", service(mkid(3, id), "c"), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(version_of(f->s), 1);
    t = rbegin(f->s);
    sl_txn_hash(t, hash);
    content_hash(f->s, want);
    assert_string_equal(hash, want);
    assert_string_not_equal(hash, "00000000000000000000000000000000");
    sl_txn_abort(t);

    /* Writing the same bytes again, an abort, a refused put, a delete of
     * nothing: no version. */
    assert_int_equal(put1(f->s, "services", service(mkid(1, id), "a")), SL_OK);
    t = wbegin(f->s);
    assert_int_equal(tput(t, "services", service(mkid(4, id), "d"), &field), SL_OK);
    sl_txn_abort(t);
    assert_int_equal(put1(f->s, "services", service(mkid(4, id), "a")), SL_ERR_EXISTS);
    assert_int_equal(del1(f->s, "services", mkid(9, id), NULL), SL_ERR_NOT_FOUND);
    assert_int_equal(version_of(f->s), 1);
    assert_false(exists(f->s, "services", mkid(4, id)));

    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(put1(f->s, "consumers", consumer(mkid(10 + i, id), "x")),
                         i == 0 ? SL_OK : SL_ERR_EXISTS);
    assert_int_equal(put1(f->s, "services", service(mkid(1, id), "a2")), SL_OK);
    assert_int_equal(version_of(f->s), 3);
    t = rbegin(f->s);
    sl_txn_hash(t, hash);
    content_hash(f->s, want);
    assert_string_equal(hash, want);
    sl_txn_abort(t);

    /* Adding and removing an entity brings the hash back; deleting
     * everything gives the empty hash. */
    assert_int_equal(put1(f->s, "services", service(mkid(20, id), "tmp")), SL_OK);
    t = rbegin(f->s);
    char with[33];
    sl_txn_hash(t, with);
    sl_txn_abort(t);
    assert_string_not_equal(with, hash);
    assert_int_equal(del1(f->s, "services", mkid(20, id), NULL), SL_OK);
    t = rbegin(f->s);
    sl_txn_hash(t, with);
    sl_txn_abort(t);
    assert_string_equal(with, hash);
    t = wbegin(f->s);
    assert_int_equal(sl_txn_clear(t), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    t = rbegin(f->s);
    sl_txn_hash(t, with);
    sl_txn_abort(t);
    assert_string_equal(with, "00000000000000000000000000000000");
}

static void test_change_records(void **state)
{
    struct fx *f = *state;
    char a[37], b[37], c[37];
    const char *field = NULL;
    mkid(1, a);
    mkid(2, b);
    mkid(3, c);

    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", service(a, "first"), &field), SL_OK);
    assert_int_equal(tput(t, "services", service(a, "second"), &field), SL_OK);
    assert_int_equal(tput(t, "services", service(b, "b"), &field), SL_OK);
    assert_int_equal(sl_txn_delete(t, "services", b, &field), SL_OK);
    assert_int_equal(tput(t, "consumers", consumer(c, "c"), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);

    json_t *arr = NULL;
    assert_int_equal(sl_store_changes_since(f->s, 0, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_t *rec = json_array_get(arr, 0);
    assert_int_equal(json_integer_value(json_object_get(rec, "version")), 1);
    json_t *ups = json_object_get(rec, "upserts"), *dels = json_object_get(rec, "deletes");
    assert_int_equal(json_array_size(ups), 2);
    assert_int_equal(json_array_size(dels), 1);
    const json_t *ua = change_find(ups, "services", a);
    assert_non_null(ua);
    json_t *want = service(a, "second");
    assert_true(json_equal(json_object_get(ua, "value"), want));
    json_decref(want);
    assert_non_null(change_find(ups, "consumers", c));
    assert_null(change_find(ups, "services", b));
    const json_t *db = change_find(dels, "services", b);
    assert_non_null(db);
    assert_null(json_object_get(db, "value"));
    json_decref(arr);

    assert_int_equal(del1(f->s, "services", a, NULL), SL_OK);
    assert_int_equal(sl_store_changes_since(f->s, 1, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 1);
    rec = json_array_get(arr, 0);
    assert_int_equal(json_integer_value(json_object_get(rec, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(rec, "upserts")), 0);
    assert_non_null(change_find(json_object_get(rec, "deletes"), "services", a));
    json_decref(arr);

    assert_int_equal(sl_store_changes_since(f->s, 0, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);
    assert_int_equal(sl_store_changes_since(f->s, 2, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    arr = NULL;
    assert_int_equal(sl_store_changes_since(f->s, 3, &arr), SL_ERR_NOT_FOUND);
    assert_null(arr);
}

/* sl_store_hash_at: the hash each version had, read back from its change
 * record (the cluster server checks a reconnecting data plane's pair with
 * it); the current and the empty version; pruned and future versions. */
static void test_hash_at(void **state)
{
    struct fx *f = *state;
    char id[37], now[33], at[33], seen[6][33];
    sl_store_close(f->s);
    f->s = open_store(f->dir, MAP_DEFAULT, 3);
    assert_int_equal(sl_store_hash_at(f->s, 0, at), SL_OK);
    assert_string_equal(at, "00000000000000000000000000000000");
    for (unsigned i = 1; i <= 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "h%u", i);
        assert_int_equal(put1(f->s, "services", service(mkid(i, id), name)), SL_OK);
        sl_txn_t *t = rbegin(f->s);
        sl_txn_hash(t, seen[i]);
        sl_txn_abort(t);
        content_hash(f->s, now);
        assert_string_equal(seen[i], now);
    }
    /* A record that names many entities still gives its hash. */
    sl_txn_t *t = wbegin(f->s);
    const char *field = NULL;
    for (unsigned i = 100; i < 400; i++) {
        char name[16];
        snprintf(name, sizeof(name), "bulk%u", i);
        assert_int_equal(tput(t, "services", service(mkid(i, id), name), &field), SL_OK);
    }
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(put1(f->s, "services", service(mkid(500, id), "last")), SL_OK);
    assert_int_equal(version_of(f->s), 7);
    content_hash(f->s, now);
    assert_int_equal(sl_store_hash_at(f->s, 7, at), SL_OK);
    assert_string_equal(at, now);
    assert_int_equal(sl_store_hash_at(f->s, 5, at), SL_OK);
    assert_string_equal(at, seen[5]);
    assert_int_equal(sl_store_hash_at(f->s, 6, at), SL_OK);
    assert_string_not_equal(at, seen[5]);
    assert_string_not_equal(at, now);
    /* Kept depth 3: version 4's record is gone; 8 has not happened. */
    assert_int_equal(sl_store_hash_at(f->s, 4, at), SL_ERR_NOT_FOUND);
    assert_int_equal(sl_store_hash_at(f->s, 8, at), SL_ERR_NOT_FOUND);
    /* Reopening keeps the hash (meta "hash" agrees with the content). */
    sl_store_close(f->s);
    f->s = open_store(f->dir, MAP_DEFAULT, 3);
    assert_int_equal(sl_store_hash_at(f->s, 7, at), SL_OK);
    assert_string_equal(at, now);
}

static void test_change_pruning(void **state)
{
    struct fx *f = *state;
    char id[37];
    sl_store_close(f->s);
    f->s = open_store(f->dir, MAP_DEFAULT, 5);

    for (unsigned i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%u", i);
        assert_int_equal(put1(f->s, "services", service(mkid(i + 1, id), name)), SL_OK);
    }
    assert_int_equal(version_of(f->s), 12);
    json_t *arr = NULL;
    assert_int_equal(sl_store_changes_since(f->s, 7, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *rec = json_array_get(arr, i);
        assert_int_equal(json_integer_value(json_object_get(rec, "version")), 8 + i);
        json_t *up = json_array_get(json_object_get(rec, "upserts"), 0);
        assert_string_equal(json_string_value(json_object_get(up, "id")),
                            mkid(8 + (unsigned)i, id));
    }
    json_decref(arr);
    arr = NULL;
    assert_int_equal(sl_store_changes_since(f->s, 6, &arr), SL_ERR_NOT_FOUND);
    assert_null(arr);
    assert_int_equal(sl_store_changes_since(f->s, 0, &arr), SL_ERR_NOT_FOUND);

    /* A smaller depth after reopening prunes at the next write. */
    sl_store_close(f->s);
    f->s = open_store(f->dir, MAP_DEFAULT, 2);
    assert_int_equal(put1(f->s, "services", service(mkid(50, id), "late")), SL_OK);
    assert_int_equal(sl_store_changes_since(f->s, 10, &arr), SL_ERR_NOT_FOUND);
    assert_int_equal(sl_store_changes_since(f->s, 11, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);

    /* Depth 0 keeps no records at all, yet versions go on. */
    sl_store_close(f->s);
    f->s = open_store(f->dir, MAP_DEFAULT, 0);
    assert_int_equal(put1(f->s, "services", service(mkid(51, id), "later")), SL_OK);
    assert_int_equal(version_of(f->s), 14);
    assert_int_equal(sl_store_changes_since(f->s, 13, &arr), SL_ERR_NOT_FOUND);
    assert_int_equal(sl_store_changes_since(f->s, 14, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
}

/* ------------------------------------------------------------------------ */
/* Full map and persistence                                                  */

/* A consumer of about 300 bytes with a tag shared by all of them. */
static json_t *fat_consumer(unsigned i)
{
    char id[37], name[32], pad[201];
    snprintf(name, sizeof(name), "user-%u", i);
    memset(pad, 'p', 200);
    pad[200] = '\0';
    json_t *c = consumer(mkid(i, id), name);
    json_object_set_new(c, "custom_id", json_string(name));
    json_object_set_new(c, "tags", json_pack("[s]", pad));
    return c;
}

static void test_map_full(void **state)
{
    struct fx *f = *state;
    sl_store_close(f->s);
    char dir[64];
    strcpy(dir, f->dir);
    strcat(dir, "/tiny");
    f->s = open_store(dir, 512u << 10, 10);

    unsigned n = 0;
    int rc = SL_OK;
    while (n < 100000) {
        rc = put1(f->s, "consumers", fat_consumer(n + 1));
        if (rc != SL_OK)
            break;
        n++;
    }
    assert_int_equal(rc, SL_ERR_TOO_BIG);
    assert_true(n >= 100); /* a few hundred with this map size */
    assert_true(n < 5000);
    assert_string_not_equal(sl_store_error(f->s), "");

    /* The store is readable and consistent: n entities, version n. */
    assert_int_equal(version_of(f->s), n);
    assert_int_equal(count_of(f->s, "consumers", NULL, NULL), n);
    char id[37], got[37], pad[201];
    memset(pad, 'p', 200);
    pad[200] = '\0';
    assert_int_equal(tag_count(f->s, pad), n);
    assert_false(exists(f->s, "consumers", mkid(n + 1, id)));
    assert_string_equal(unique_of(f->s, "consumers", "username", "user-1", got), mkid(1, id));

    /* A big transaction fails as a whole: in a put or at commit. */
    sl_txn_t *t = wbegin(f->s);
    const char *field = NULL;
    rc = SL_OK;
    for (unsigned i = 0; i < 200 && rc == SL_OK; i++)
        rc = tput(t, "consumers", fat_consumer(100000 + i), &field);
    if (rc == SL_OK) {
        rc = sl_txn_commit(t);
    } else {
        /* Poisoned: later calls report the same error. */
        json_t *obj = NULL;
        assert_int_equal(sl_txn_get(t, "consumers", mkid(1, id), &obj), SL_ERR_TOO_BIG);
        assert_int_equal(tput(t, "consumers", fat_consumer(200000), &field), SL_ERR_TOO_BIG);
        assert_int_equal(sl_txn_commit(t), SL_ERR_TOO_BIG);
    }
    assert_int_equal(rc, SL_ERR_TOO_BIG);
    assert_int_equal(version_of(f->s), n);
    assert_int_equal(count_of(f->s, "consumers", NULL, NULL), n);
    assert_false(exists(f->s, "consumers", mkid(100000, id)));
    json_t *arr = NULL;
    assert_int_equal(sl_store_changes_since(f->s, n - 1, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);

    /* A larger map makes room; everything is still there. */
    sl_store_close(f->s);
    f->s = open_store(dir, 8u << 20, 10);
    assert_int_equal(count_of(f->s, "consumers", NULL, NULL), n);
    assert_int_equal(put1(f->s, "consumers", fat_consumer(n + 1)), SL_OK);
    assert_int_equal(version_of(f->s), n + 1);
}

static void test_reopen(void **state)
{
    struct fx *f = *state;
    char sv[37], rt[37], c[37], got[37];
    const char *field = NULL;
    mkid(1, sv);
    mkid(2, rt);
    mkid(3, c);
    sl_txn_t *t = wbegin(f->s);
    assert_int_equal(tput(t, "services", with_tags(service(sv, "s"), "keep", NULL), &field), SL_OK);
    assert_int_equal(tput(t, "routes", route(rt, "r", sv), &field), SL_OK);
    assert_int_equal(sl_txn_commit(t), SL_OK);
    assert_int_equal(put1(f->s, "consumers", consumer(c, "carol")), SL_OK);

    sl_store_close(f->s);
    f->s = open_store(f->dir, MAP_DEFAULT, DEPTH_DEFAULT);
    assert_int_equal(version_of(f->s), 2);
    assert_true(exists(f->s, "services", sv));
    assert_true(exists(f->s, "routes", rt));
    assert_string_equal(unique_of(f->s, "consumers", "username", "carol", got), c);
    assert_int_equal(count_of(f->s, "routes", "service", sv), 1);
    assert_int_equal(tag_count(f->s, "keep"), 1);
    json_t *arr = NULL;
    assert_int_equal(sl_store_changes_since(f->s, 0, &arr), SL_OK);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);
    const char *blocker = NULL;
    assert_int_equal(del1(f->s, "services", sv, &blocker), SL_ERR_EXISTS);
    assert_string_equal(blocker, "routes");
    assert_int_equal(put1(f->s, "services", service(mkid(9, got), "s")), SL_ERR_EXISTS);
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_store_t *s = (sl_store_t *)1;
    assert_int_equal(sl_store_open(path, MAP_DEFAULT, 10, &s, &errs), SL_ERR_IO);
    assert_null(s);
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.items[0], path));
    sl_errors_dispose(&errs);

    /* A map too small for the databases themselves. */
    snprintf(path, sizeof(path), "%s/small", f->dir);
    sl_errors_init(&errs);
    assert_int_equal(sl_store_open(path, 8192, 10, &s, &errs), SL_ERR_TOO_BIG);
    assert_null(s);
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.items[0], "raise lmdb_map_size"));
    sl_errors_dispose(&errs);

    /* Missing parents are created. */
    snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
    s = open_store(path, MAP_DEFAULT, 10);
    assert_int_equal(version_of(s), 0);
    sl_store_close(s);
    snprintf(path, sizeof(path), "%s/a/b/c/data.mdb", f->dir);
    assert_int_equal(access(path, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_composite_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fk_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_updates_indexes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cascade_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocked_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_fk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_pruning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_at, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
