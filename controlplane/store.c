/*
 * store.c owns the control plane's LMDB environment: the named databases
 * described in store.h, the index maintenance that keeps them in step with
 * the entities, the per-transaction change set that becomes one change
 * record, and the configuration version.
 *
 * The index layout is derived from the entity schemas at open time, so a new
 * table or a new unique field in common/entities.c needs no change here:
 *   - every field flagged SL_F_UNIQUE or SL_F_UNIQUE_ALL_WS gets u:<e>:<field>;
 *   - a schema whose cache key has several fields (plugins, targets, acls)
 *     gets one composite unique index whose key is the cache-key values joined
 *     by ':' (a foreign key contributes its id, null contributes ""). It is
 *     named after the endpoint key when that key is one of the parts and not
 *     unique on its own (targets: "target" = "<upstream_id>:<target>", acls:
 *     "group" = "<consumer_id>:<group>"), else "cache_key" (plugins:
 *     "<name>:<route_id>:<service_id>:<consumer_id>");
 *   - every SL_FT_FOREIGN field gets f:<e>:<field>, whose keys list the
 *     children of each parent, which is what cascading deletes, the blocked
 *     delete check and nested listings walk.
 *
 * LMDB keys are at most 511 bytes. An index value (unique value or tag) longer
 * than KEY_RAW_MAX bytes is stored as its first KEY_KEEP bytes, a 0x01 byte and
 * the SHA-256 hex of the whole value: KEY_RAW_MAX + 1 bytes, a length no raw
 * value has, so shortened and raw keys never collide. A shortened tag keeps
 * its full text as the index entry's value so that sl_txn_list_tags can give
 * it back; other tag entries have an empty value.
 *
 * A transaction keeps its change set in memory (t->pending, keyed by
 * "<entity>/<id>", the last operation on an entity winning). At commit, a
 * non-empty change set becomes the change record of version + 1, the version
 * and hash are bumped and records older than changes_depth are pruned, all in
 * the same LMDB transaction. A put that writes exactly the stored bytes is not
 * a change.
 *
 * Any LMDB failure inside a transaction aborts the LMDB transaction at once
 * (a failed put leaves it unusable anyway) and poisons the sl_txn_t: every
 * later call returns the same error, and commit reports it. So a full map
 * leaves the store exactly as it was before the transaction began.
 *
 * Threads: one thread (the control plane's main thread) uses a store and its
 * transactions. The environment is opened with MDB_NOTLS so that read
 * transactions (such as sl_store_changes_since's) can coexist with the write
 * transaction on that thread.
 */
#include "store.h"
#include "cfghash.h"

#include "entities.h"
#include "json_out.h"
#include "log.h"
#include "strbuf.h"
#include "util.h"

#include <errno.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define ID_MAX 36         /* ids are UUIDs; find_unique's id_out holds 37 bytes */
#define KEY_RAW_MAX 400   /* index values up to this length are stored as they are */
#define KEY_KEEP 335      /* KEY_KEEP + 1 + 64 == KEY_RAW_MAX + 1 */
#define MIN_MAXDBS 64     /* named databases the environment allows, at least */
#define MAX_CASCADE 16    /* depth of cascading deletes; the schemas need 2 */
#define TAG_CURSOR_MAX 64 /* bound on the entity name in a tag cursor */

struct uidx {
    char *field;              /* owned: index name (field or composite name) */
    const char *const *parts; /* borrowed from the schema: the cache key; NULL: single field */
    MDB_dbi dbi;
};

struct fkidx {
    const char *field; /* borrowed from the schema */
    size_t ref;        /* the referenced table's index in sl_store_t.ents */
    bool cascade;
    MDB_dbi dbi;
};

struct ent {
    const sl_schema_t *schema; /* borrowed: static */
    MDB_dbi dbi;
    struct uidx *u; /* owned */
    size_t nu;
    struct fkidx *fk; /* owned */
    size_t nfk;
};

struct sl_store_s {
    MDB_env *env;
    struct ent *ents; /* owned, one per sl_entity_schemas entry */
    size_t nents;
    MDB_dbi tags, meta, changes;
    uint64_t depth;
    void (*on_commit)(void *arg, uint64_t version);
    void *on_commit_arg;
    bool writing; /* a write transaction is open */
    char err[512];
};

struct sl_txn_s {
    sl_store_t *s; /* borrowed */
    MDB_txn *txn;  /* owned; NULL once aborted after a failure */
    bool write;
    int failed; /* SL_OK, or the error that poisoned the transaction */
    uint64_t version;
    sl_cfghash_t hash; /* the configuration hash as of this transaction */
    json_t *pending;   /* owned (write only): "<entity>/<id>" -> {"entity","id"[,"value"]} */
};

/* A list of ids collected from an index before the entities are changed. */
struct idlist {
    char (*v)[ID_MAX + 1];
    size_t n, cap;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static json_t *jcheck(json_t *j)
{
    if (j == NULL) {
        fprintf(stderr, "sluice: out of memory in jansson\n");
        abort();
    }
    return j;
}

static bool valid_id_str(const char *id, size_t len)
{
    return len > 0 && len <= ID_MAX && memchr(id, ':', len) == NULL &&
           memchr(id, '\0', len) == NULL;
}

/* The entity's id, or NULL when obj has none usable as a key. */
static const char *entity_id(const json_t *obj)
{
    const json_t *id = json_object_get(obj, "id");
    if (!json_is_string(id) || !valid_id_str(json_string_value(id), json_string_length(id)))
        return NULL;
    return json_string_value(id);
}

static void idlist_add(struct idlist *l, const void *id, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = sl_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    memcpy(l->v[l->n], id, len);
    l->v[l->n][len] = '\0';
    l->n++;
}

static void put_be64(unsigned char b[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char b[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

/* meta "hash": the content hash of cfghash.h, as 32 hex characters. */
static int read_hash(MDB_txn *txn, MDB_dbi meta, sl_cfghash_t *out)
{
    MDB_val k = {sizeof("hash") - 1, (void *)"hash"}, v;
    memset(out, 0, sizeof(*out));
    int mrc = mdb_get(txn, meta, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc != 0)
        return mrc;
    return sl_cfghash_parse(v.mv_data, v.mv_size, out) ? 0 : MDB_CORRUPTED;
}

/* Shortens an index value in b that is too long for an LMDB key (see the top). */
static void shorten(sl_sb_t *b, size_t from)
{
    size_t len = b->len - from;
    if (len <= KEY_RAW_MAX)
        return;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    SL_ASSERT(EVP_Digest(b->p + from, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32);
    char h[65];
    sl_hex_encode(md, 32, h);
    b->len = from + KEY_KEEP;
    sl_sb_add(b, "\x01", 1);
    sl_sb_add(b, h, 64);
}

static bool has_prefix(const MDB_val *k, const char *prefix, size_t plen)
{
    return k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0;
}

static bool key_equals(const MDB_val *k, const void *p, size_t len)
{
    return k->mv_size == len && memcmp(k->mv_data, p, len) == 0;
}

/* Positions c at the first key >= start (the first key when slen is 0),
 * stepping over start itself when `after`. Returns an LMDB code. */
static int seek(MDB_cursor *c, const void *start, size_t slen, bool after, MDB_val *k, MDB_val *v)
{
    if (slen == 0)
        return mdb_cursor_get(c, k, v, MDB_FIRST);
    k->mv_data = (void *)start;
    k->mv_size = slen;
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc == 0 && after && key_equals(k, start, slen))
        rc = mdb_cursor_get(c, k, v, MDB_NEXT);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

static void store_error(sl_store_t *s, const char *what, int mrc)
{
    snprintf(s->err, sizeof(s->err), "lmdb: %s: %s", what, mdb_strerror(mrc));
    SL_ERROR("%s", s->err);
}

/*
 * Turns an LMDB failure inside t into an Sluice code and poisons t: the LMDB
 * transaction is aborted now, so nothing of it reaches the disk. A full map
 * (or a transaction too large for LMDB's dirty-page list) is SL_ERR_TOO_BIG,
 * anything else SL_ERR_IO.
 */
static int txn_fail(sl_txn_t *t, int mrc, const char *what)
{
    int rc = SL_ERR_IO;
    if (mrc == MDB_MAP_FULL || mrc == MDB_TXN_FULL) {
        rc = SL_ERR_TOO_BIG;
        snprintf(t->s->err, sizeof(t->s->err),
                 "lmdb: %s: %s (the configuration does not fit; raise lmdb_map_size)", what,
                 mdb_strerror(mrc));
        SL_WARN("%s", t->s->err);
    } else {
        store_error(t->s, what, mrc);
    }
    if (t->txn) {
        mdb_txn_abort(t->txn);
        t->txn = NULL;
    }
    if (t->failed == SL_OK)
        t->failed = rc;
    return t->failed;
}

static int corrupt(sl_txn_t *t, const char *what)
{
    snprintf(t->s->err, sizeof(t->s->err), "lmdb: %s: stored value is corrupt", what);
    SL_ERROR("%s", t->s->err);
    return SL_ERR_IO;
}

/* Closes a cursor of t. A write transaction's cursors die with it, so after a
 * failure aborted t there is nothing left to close; a read-only
 * transaction's cursors must be closed even then. */
static void close_cursor(sl_txn_t *t, MDB_cursor *c)
{
    if (t->txn || !t->write)
        mdb_cursor_close(c);
}

static int usable(sl_txn_t *t, bool need_write)
{
    if (t->failed != SL_OK)
        return t->failed;
    if (need_write && !t->write)
        return SL_ERR_INVALID;
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Schema-derived layout                                                     */

static struct ent *find_ent(sl_store_t *s, const char *name, size_t *idx)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < s->nents; i++)
        if (strcmp(s->ents[i].schema->name, name) == 0) {
            if (idx)
                *idx = i;
            return &s->ents[i];
        }
    return NULL;
}

static struct uidx *find_uidx(struct ent *e, const char *field)
{
    for (size_t i = 0; i < e->nu; i++)
        if (strcmp(e->u[i].field, field) == 0)
            return &e->u[i];
    return NULL;
}

static struct fkidx *find_fk(struct ent *e, const char *field)
{
    for (size_t i = 0; i < e->nfk; i++)
        if (strcmp(e->fk[i].field, field) == 0)
            return &e->fk[i];
    return NULL;
}

static bool flagged_unique(const sl_field_t *f)
{
    return f != NULL && (f->flags & (SL_F_UNIQUE | SL_F_UNIQUE_ALL_WS)) != 0;
}

/* The name of the schema's composite unique index, or NULL when it needs
 * none (no cache key, or a one-field cache key that is unique already). */
static const char *composite_name(const sl_schema_t *sc)
{
    const char *const *ck = sc->cache_key;
    if (ck == NULL || ck[0] == NULL)
        return NULL;
    if (ck[1] == NULL)
        return flagged_unique(sl_schema_field(sc, NULL, ck[0])) ? NULL : ck[0];
    const char *ek = sc->endpoint_key;
    if (ek && !flagged_unique(sl_schema_field(sc, NULL, ek)))
        for (size_t i = 0; ck[i]; i++)
            if (strcmp(ck[i], ek) == 0)
                return ek;
    return "cache_key";
}

static void add_uidx(struct ent *e, const char *field, const char *const *parts)
{
    e->u = sl_xrealloc(e->u, (e->nu + 1) * sizeof(*e->u));
    e->u[e->nu].field = sl_xstrdup(field);
    e->u[e->nu].parts = parts;
    e->u[e->nu].dbi = 0;
    e->nu++;
}

/* Builds s->ents from the schemas. Returns the number of named databases. */
static size_t build_layout(sl_store_t *s)
{
    size_t n = 0;
    while (sl_entity_schemas[n])
        n++;
    s->ents = sl_xcalloc(n, sizeof(*s->ents));
    s->nents = n;
    size_t ndbs = 3 + n; /* t:tags, meta, changes, e:* */
    for (size_t i = 0; i < n; i++) {
        struct ent *e = &s->ents[i];
        e->schema = sl_entity_schemas[i];
        for (const sl_field_t *f = e->schema->fields; f && f->name; f++) {
            if (flagged_unique(f) && f->type != SL_FT_FOREIGN)
                add_uidx(e, f->name, NULL);
        }
        const char *cname = composite_name(e->schema);
        if (cname && find_uidx(e, cname) == NULL)
            add_uidx(e, cname, e->schema->cache_key);
        ndbs += e->nu;
    }
    /* Foreign keys second: every table must be known to resolve references. */
    for (size_t i = 0; i < n; i++) {
        struct ent *e = &s->ents[i];
        for (const sl_field_t *f = e->schema->fields; f && f->name; f++) {
            size_t ref;
            if (f->type != SL_FT_FOREIGN || f->reference == NULL ||
                find_ent(s, f->reference, &ref) == NULL)
                continue;
            e->fk = sl_xrealloc(e->fk, (e->nfk + 1) * sizeof(*e->fk));
            e->fk[e->nfk] = (struct fkidx){
                .field = f->name, .ref = ref, .cascade = (f->flags & SL_F_CASCADE) != 0};
            e->nfk++;
        }
        ndbs += e->nfk;
    }
    return ndbs;
}

static void free_layout(sl_store_t *s)
{
    for (size_t i = 0; i < s->nents; i++) {
        for (size_t j = 0; j < s->ents[i].nu; j++)
            free(s->ents[i].u[j].field);
        free(s->ents[i].u);
        free(s->ents[i].fk);
    }
    free(s->ents);
    s->ents = NULL;
    s->nents = 0;
}

static int open_dbi(sl_store_t *s, MDB_txn *txn, const char *name, MDB_dbi *out)
{
    int mrc = mdb_dbi_open(txn, name, MDB_CREATE, out);
    if (mrc != 0)
        store_error(s, name, mrc);
    return mrc;
}

/* Opens (creating) every named database. Returns an LMDB code. */
static int open_dbis(sl_store_t *s, MDB_txn *txn)
{
    char name[256];
    int mrc;
    if ((mrc = open_dbi(s, txn, "t:tags", &s->tags)) != 0 ||
        (mrc = open_dbi(s, txn, "meta", &s->meta)) != 0 ||
        (mrc = open_dbi(s, txn, "changes", &s->changes)) != 0)
        return mrc;
    for (size_t i = 0; i < s->nents; i++) {
        struct ent *e = &s->ents[i];
        snprintf(name, sizeof(name), "e:%s", e->schema->name);
        if ((mrc = open_dbi(s, txn, name, &e->dbi)) != 0)
            return mrc;
        for (size_t j = 0; j < e->nu; j++) {
            snprintf(name, sizeof(name), "u:%s:%s", e->schema->name, e->u[j].field);
            if ((mrc = open_dbi(s, txn, name, &e->u[j].dbi)) != 0)
                return mrc;
        }
        for (size_t j = 0; j < e->nfk; j++) {
            snprintf(name, sizeof(name), "f:%s:%s", e->schema->name, e->fk[j].field);
            if ((mrc = open_dbi(s, txn, name, &e->fk[j].dbi)) != 0)
                return mrc;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                       */

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
    char *p = sl_xstrdup(dir);
    int rc = 0;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            rc = -1;
        *q = '/';
        if (rc)
            break;
    }
    if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
        rc = -1;
    free(p);
    struct stat st;
    if (rc == 0 && stat(dir, &st) != 0)
        rc = -1;
    if (rc == 0 && !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        rc = -1;
    }
    return rc;
}

static int read_version(MDB_txn *txn, MDB_dbi meta, uint64_t *out);

/* Computes the content hash of every stored entity and, when meta "hash"
 * says otherwise (a store written before content hashes), stores it. */
static int check_hash(sl_store_t *s, MDB_txn *txn)
{
    sl_cfghash_t h, stored;
    memset(&h, 0, sizeof(h));
    int mrc = 0;
    char id[ID_MAX + 1];
    for (size_t i = 0; i < s->nents && mrc == 0; i++) {
        MDB_cursor *c;
        if ((mrc = mdb_cursor_open(txn, s->ents[i].dbi, &c)) != 0)
            break;
        MDB_val k, v;
        for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
             mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (!valid_id_str(k.mv_data, k.mv_size))
                continue;
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = '\0';
            sl_cfghash_toggle(&h, s->ents[i].schema->name, id, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(c);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    if (mrc != 0)
        return mrc;
    if (read_hash(txn, s->meta, &stored) == 0 && !memcmp(&stored, &h, sizeof(h)))
        return 0;
    uint64_t version;
    if ((mrc = read_version(txn, s->meta, &version)) != 0 || version == 0)
        return mrc;
    char hex[33];
    sl_cfghash_hex(&h, hex);
    MDB_val k = {sizeof("hash") - 1, (void *)"hash"}, v = {32, hex};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

int sl_store_open(const char *dir, uint64_t map_size, uint64_t changes_depth, sl_store_t **out,
                  sl_errors_t *errs)
{
    *out = NULL;
    if (make_dirs(dir) != 0) {
        if (errs)
            sl_errors_add(errs, "lmdb: cannot create directory %s: %s", dir, strerror(errno));
        return SL_ERR_IO;
    }

    sl_store_t *s = sl_xcalloc(1, sizeof(*s));
    s->depth = changes_depth;
    size_t ndbs = build_layout(s);
    if (ndbs + 8 > MIN_MAXDBS)
        ndbs += 8;
    else
        ndbs = MIN_MAXDBS;

    int mrc = mdb_env_create(&s->env);
    if (mrc != 0) {
        s->env = NULL;
        goto fail_env;
    }
    if ((mrc = mdb_env_set_maxdbs(s->env, (MDB_dbi)ndbs)) != 0 ||
        (mrc = mdb_env_set_mapsize(s->env, (size_t)map_size)) != 0)
        goto fail_env;
    /* Durable commits: neither MDB_NOSYNC nor MDB_NOMETASYNC. */
    if ((mrc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0)
        goto fail_env;
    if (mdb_env_get_maxkeysize(s->env) < KEY_RAW_MAX + 1 + TAG_CURSOR_MAX + ID_MAX + 2) {
        if (errs)
            sl_errors_add(errs,
                          "lmdb: cannot open %s: this LMDB build allows keys of only %d bytes", dir,
                          mdb_env_get_maxkeysize(s->env));
        goto fail_keys;
    }
    int dead = 0;
    (void)mdb_reader_check(s->env, &dead); /* readers left by a crashed process */

    MDB_txn *txn;
    if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        goto fail_env;
    if ((mrc = open_dbis(s, txn)) != 0 || (mrc = check_hash(s, txn)) != 0) {
        mdb_txn_abort(txn);
        goto fail_env;
    }
    if ((mrc = mdb_txn_commit(txn)) != 0)
        goto fail_env;

    *out = s;
    return SL_OK;

fail_env:
    if (errs)
        sl_errors_add(errs, "lmdb: cannot open %s: %s%s", dir, mdb_strerror(mrc),
                      mrc == MDB_MAP_FULL ? " (raise lmdb_map_size)" : "");
fail_keys:
    if (s->env)
        mdb_env_close(s->env);
    free_layout(s);
    free(s);
    return mrc == MDB_MAP_FULL ? SL_ERR_TOO_BIG : SL_ERR_IO;
}

void sl_store_close(sl_store_t *s)
{
    if (s == NULL)
        return;
    mdb_env_close(s->env);
    free_layout(s);
    free(s);
}

const char *sl_store_error(sl_store_t *s)
{
    return s->err;
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */

static int read_version(MDB_txn *txn, MDB_dbi meta, uint64_t *out)
{
    MDB_val k = {sizeof("version") - 1, (void *)"version"}, v;
    int mrc = mdb_get(txn, meta, &k, &v);
    *out = 0;
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc != 0)
        return mrc;
    if (v.mv_size != 8)
        return MDB_CORRUPTED;
    *out = get_be64(v.mv_data);
    return 0;
}

int sl_store_begin(sl_store_t *s, bool write, sl_txn_t **out)
{
    *out = NULL;
    SL_ASSERT(!(write && s->writing)); /* one writer, one thread: a nested begin is a bug */
    MDB_txn *txn;
    int mrc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
    if (mrc == MDB_MAP_RESIZED) {
        /* Another process grew the map: adopt its size and retry once. */
        mdb_env_set_mapsize(s->env, 0);
        mrc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
    }
    if (mrc != 0) {
        store_error(s, "begin transaction", mrc);
        return SL_ERR_IO;
    }
    uint64_t version;
    sl_cfghash_t hash;
    if ((mrc = read_version(txn, s->meta, &version)) != 0 ||
        (mrc = read_hash(txn, s->meta, &hash)) != 0) {
        mdb_txn_abort(txn);
        store_error(s, "read version", mrc);
        return SL_ERR_IO;
    }
    sl_txn_t *t = sl_xcalloc(1, sizeof(*t));
    t->hash = hash;
    t->s = s;
    t->txn = txn;
    t->write = write;
    t->version = version;
    if (write) {
        t->pending = jcheck(json_object());
        s->writing = true;
    }
    *out = t;
    return SL_OK;
}

static void txn_free(sl_txn_t *t)
{
    if (t->txn)
        mdb_txn_abort(t->txn);
    if (t->write)
        t->s->writing = false;
    json_decref(t->pending);
    free(t);
}

void sl_txn_abort(sl_txn_t *t)
{
    if (t)
        txn_free(t);
}

uint64_t sl_txn_version(sl_txn_t *t)
{
    return t->version;
}

void sl_txn_hash(sl_txn_t *t, char out[33])
{
    sl_cfghash_hex(&t->hash, out);
}

/* Records the last operation on (entity, id) in the change set; value NULL
 * is a delete. The value is the entity's compact JSON text (copied), which
 * write_version splices into the change record as it is. */
static void record_change(sl_txn_t *t, const char *entity, const char *id, const char *value,
                          size_t vlen)
{
    char key[160];
    snprintf(key, sizeof(key), "%s/%s", entity, id);
    json_t *c = jcheck(json_object());
    json_object_set_new(c, "entity", jcheck(json_string(entity)));
    json_object_set_new(c, "id", jcheck(json_string(id)));
    if (value)
        json_object_set_new(c, "value", jcheck(json_stringn_nocheck(value, vlen)));
    json_object_set_new(t->pending, key, c);
}

/* Appends the change records of one kind (upserts or deletes) as a JSON
 * array: {"entity":..,"id":..[,"value":<entity JSON>]} each. */
static int add_changes(sl_txn_t *t, sl_sb_t *b, bool upserts)
{
    const char *key;
    json_t *c;
    bool first = true;
    sl_sb_addlit(b, "[");
    json_object_foreach(t->pending, key, c)
    {
        json_t *v = json_object_get(c, "value");
        if ((v != NULL) != upserts)
            continue;
        if (!first)
            sl_sb_addlit(b, ",");
        first = false;
        sl_sb_addlit(b, "{\"entity\":");
        if (sl_json_out(b, json_object_get(c, "entity")) != SL_OK)
            return SL_ERR_INVALID;
        sl_sb_addlit(b, ",\"id\":");
        if (sl_json_out(b, json_object_get(c, "id")) != SL_OK)
            return SL_ERR_INVALID;
        if (v) {
            sl_sb_addlit(b, ",\"value\":");
            sl_sb_add(b, json_string_value(v), json_string_length(v));
        }
        sl_sb_addlit(b, "}");
    }
    sl_sb_addlit(b, "]");
    return SL_OK;
}

/* Deletes change records with versions <= cut. */
static int prune_changes(sl_txn_t *t, uint64_t cut)
{
    MDB_cursor *c;
    int mrc = mdb_cursor_open(t->txn, t->s->changes, &c);
    if (mrc != 0)
        return mrc;
    MDB_val k, v;
    while ((mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || get_be64(k.mv_data) > cut)
            break;
        if ((mrc = mdb_cursor_del(c, 0)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

/* Writes the change record, the new version and hash, and prunes the log. */
static int write_version(sl_txn_t *t)
{
    sl_store_t *s = t->s;
    uint64_t next = t->version + 1;
    unsigned char vkey[8];
    put_be64(vkey, next);
    int mrc;

    if (s->depth > 0) {
        char st[4096];
        sl_sb_t b;
        sl_sb_init(&b, st, sizeof(st));
        sl_sb_addlit(&b, "{\"upserts\":");
        int rc = add_changes(t, &b, true);
        if (rc == SL_OK) {
            sl_sb_addlit(&b, ",\"deletes\":");
            rc = add_changes(t, &b, false);
        }
        char hex[33];
        sl_cfghash_hex(&t->hash, hex);
        sl_sb_addlit(&b, ",\"hash\":\"");
        sl_sb_add(&b, hex, 32);
        sl_sb_addlit(&b, "\"}");
        if (rc != SL_OK) {
            sl_sb_dispose(&b);
            return txn_fail(t, ENOMEM, "encode change record");
        }
        MDB_val k = {8, vkey}, v = {b.len, b.p};
        mrc = mdb_put(t->txn, s->changes, &k, &v, 0);
        sl_sb_dispose(&b);
        if (mrc != 0)
            return txn_fail(t, mrc, "write change record");
    }

    MDB_val k = {sizeof("version") - 1, (void *)"version"}, v = {8, vkey};
    if ((mrc = mdb_put(t->txn, s->meta, &k, &v, 0)) != 0)
        return txn_fail(t, mrc, "write version");
    char hash[33];
    sl_cfghash_hex(&t->hash, hash);
    k = (MDB_val){sizeof("hash") - 1, (void *)"hash"};
    v = (MDB_val){32, hash};
    if ((mrc = mdb_put(t->txn, s->meta, &k, &v, 0)) != 0)
        return txn_fail(t, mrc, "write hash");
    if ((mrc = prune_changes(t, next > s->depth ? next - s->depth : 0)) != 0)
        return txn_fail(t, mrc, "prune change records");
    return SL_OK;
}

int sl_txn_commit(sl_txn_t *t)
{
    int rc = t->failed;
    bool changed = false;
    uint64_t version = t->version + 1;
    if (rc == SL_OK && t->write && json_object_size(t->pending) > 0) {
        rc = write_version(t);
        if (rc == SL_OK) {
            int mrc = mdb_txn_commit(t->txn);
            t->txn = NULL; /* freed by LMDB whether or not the commit worked */
            if (mrc != 0)
                rc = txn_fail(t, mrc, "commit");
            changed = mrc == 0;
        }
    }
    sl_store_t *s = t->s;
    /* A read transaction, or a write that changed nothing: abort is enough. */
    txn_free(t);
    if (changed && s->on_commit)
        s->on_commit(s->on_commit_arg, version);
    return rc;
}

void sl_store_on_commit(sl_store_t *s, void (*cb)(void *arg, uint64_t version), void *arg)
{
    s->on_commit = cb;
    s->on_commit_arg = arg;
}

/* ------------------------------------------------------------------------ */
/* Index keys                                                                */

/* Appends the string value of a field (a foreign key's id) to b; null, absent
 * and non-string values append nothing. Returns whether something was there. */
static bool add_field_value(sl_sb_t *b, const sl_schema_t *sc, const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);
    const sl_field_t *f = sl_schema_field(sc, NULL, field);
    if (f && f->type == SL_FT_FOREIGN && json_is_object(v))
        v = json_object_get(v, "id");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return false;
    sl_sb_add(b, json_string_value(v), json_string_length(v));
    return true;
}

/* Builds the key of unique index u for obj into b (emptied first). Returns
 * false when obj has no value for it: a single field that is null or empty.
 * A composite key always exists. */
static bool unique_key(const struct ent *e, const struct uidx *u, const json_t *obj, sl_sb_t *b)
{
    b->len = 0;
    if (u->parts == NULL) {
        if (!add_field_value(b, e->schema, obj, u->field))
            return false;
    } else {
        for (size_t i = 0; u->parts[i]; i++) {
            if (i > 0)
                sl_sb_add(b, ":", 1);
            add_field_value(b, e->schema, obj, u->parts[i]);
        }
    }
    shorten(b, 0);
    return true;
}

/* "<tag>\0" into b (emptied first), the tag shortened when too long. */
static void tag_prefix(sl_sb_t *b, const char *tag, size_t len)
{
    b->len = 0;
    sl_sb_add(b, tag, len);
    shorten(b, 0);
    sl_sb_add(b, "", 1);
}

/* Reads a foreign key: *out is the referenced id, NULL for null or absent.
 * SL_ERR_INVALID when the value is neither null nor {"id": "<id>"}. */
static int fk_value(const json_t *obj, const char *field, const char **out)
{
    const json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return SL_OK;
    const json_t *id = json_is_object(v) ? json_object_get(v, "id") : NULL;
    if (!json_is_string(id) || !valid_id_str(json_string_value(id), json_string_length(id)))
        return SL_ERR_INVALID;
    *out = json_string_value(id);
    return SL_OK;
}

static bool tag_usable(const json_t *tag)
{
    return json_is_string(tag) &&
           memchr(json_string_value(tag), '\0', json_string_length(tag)) == NULL;
}

/*
 * Adds (add) or removes the index entries of entity obj with the given id:
 * unique values, foreign-key links and tags. Removal only deletes a unique
 * entry that still maps to this id. Returns SL_OK or a poisoning failure.
 */
static int index_entity(sl_txn_t *t, const struct ent *e, const char *id, const json_t *obj,
                        bool add)
{
    char kbuf[512];
    sl_sb_t b;
    sl_sb_init(&b, kbuf, sizeof(kbuf));
    size_t idlen = strlen(id);
    MDB_val k, v;
    int mrc = 0;
    const char *what = "index";

    for (size_t i = 0; i < e->nu && mrc == 0; i++) {
        if (!unique_key(e, &e->u[i], obj, &b))
            continue;
        k = (MDB_val){b.len, b.p};
        what = "unique index";
        if (add) {
            v = (MDB_val){idlen, (void *)id};
            mrc = mdb_put(t->txn, e->u[i].dbi, &k, &v, 0);
        } else {
            mrc = mdb_get(t->txn, e->u[i].dbi, &k, &v);
            if (mrc == 0 && key_equals(&v, id, idlen))
                mrc = mdb_del(t->txn, e->u[i].dbi, &k, NULL);
        }
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }

    for (size_t i = 0; i < e->nfk && mrc == 0; i++) {
        const char *fid;
        if (fk_value(obj, e->fk[i].field, &fid) != SL_OK || fid == NULL)
            continue;
        b.len = 0;
        sl_sb_adds(&b, fid);
        sl_sb_add(&b, ":", 1);
        sl_sb_add(&b, id, idlen);
        k = (MDB_val){b.len, b.p};
        v = (MDB_val){0, ""};
        what = "foreign-key index";
        mrc = add ? mdb_put(t->txn, e->fk[i].dbi, &k, &v, 0)
                  : mdb_del(t->txn, e->fk[i].dbi, &k, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }

    const json_t *tags = json_object_get(obj, "tags");
    size_t ti;
    const json_t *tag;
    json_array_foreach(tags, ti, tag)
    {
        if (mrc != 0)
            break;
        if (!tag_usable(tag))
            continue;
        size_t tlen = json_string_length(tag);
        tag_prefix(&b, json_string_value(tag), tlen);
        sl_sb_adds(&b, e->schema->name);
        sl_sb_add(&b, "", 1);
        sl_sb_add(&b, id, idlen);
        k = (MDB_val){b.len, b.p};
        /* A shortened tag keeps its text in the value (see the top). */
        v = tlen > KEY_RAW_MAX ? (MDB_val){tlen, (void *)json_string_value(tag)} : (MDB_val){0, ""};
        what = "tag index";
        mrc = add ? mdb_put(t->txn, t->s->tags, &k, &v, 0) : mdb_del(t->txn, t->s->tags, &k, NULL);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }

    sl_sb_dispose(&b);
    return mrc == 0 ? SL_OK : txn_fail(t, mrc, what);
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                     */

/* Parses a stored entity. NULL when the bytes are not a JSON object. */
static json_t *parse_value(const MDB_val *v)
{
    json_t *j = json_loadb(v->mv_data, v->mv_size, JSON_ALLOW_NUL, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Fetches and parses entity id of e into *out (new reference). */
static int get_entity(sl_txn_t *t, const struct ent *e, const char *id, json_t **out)
{
    *out = NULL;
    size_t len = strlen(id);
    if (!valid_id_str(id, len))
        return SL_ERR_NOT_FOUND;
    MDB_val k = {len, (void *)id}, v;
    int mrc = mdb_get(t->txn, e->dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return SL_ERR_NOT_FOUND;
    if (mrc != 0)
        return txn_fail(t, mrc, "read entity");
    if ((*out = parse_value(&v)) == NULL)
        return corrupt(t, e->schema->name);
    return SL_OK;
}

int sl_txn_get(sl_txn_t *t, const char *entity, const char *id, json_t **out)
{
    *out = NULL;
    int rc = usable(t, false);
    if (rc != SL_OK)
        return rc;
    struct ent *e = find_ent(t->s, entity, NULL);
    if (e == NULL)
        return SL_ERR_INVALID;
    return get_entity(t, e, id, out);
}

int sl_txn_find_unique(sl_txn_t *t, const char *entity, const char *field, const char *value,
                       char id_out[37])
{
    id_out[0] = '\0';
    int rc = usable(t, false);
    if (rc != SL_OK)
        return rc;
    struct ent *e = find_ent(t->s, entity, NULL);
    struct uidx *u = e ? find_uidx(e, field) : NULL;
    if (u == NULL)
        return SL_ERR_INVALID;
    if (value == NULL || value[0] == '\0')
        return SL_ERR_NOT_FOUND;
    char kbuf[512];
    sl_sb_t b;
    sl_sb_init(&b, kbuf, sizeof(kbuf));
    sl_sb_adds(&b, value);
    shorten(&b, 0);
    MDB_val k = {b.len, b.p}, v;
    int mrc = mdb_get(t->txn, u->dbi, &k, &v);
    sl_sb_dispose(&b);
    if (mrc == MDB_NOTFOUND)
        return SL_ERR_NOT_FOUND;
    if (mrc != 0)
        return txn_fail(t, mrc, "read unique index");
    if (!valid_id_str(v.mv_data, v.mv_size))
        return corrupt(t, "unique index");
    memcpy(id_out, v.mv_data, v.mv_size);
    id_out[v.mv_size] = '\0';
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */

/* Checks that every foreign key of obj points to an existing entity. */
static int check_foreign(sl_txn_t *t, const struct ent *e, const json_t *obj, const char **field)
{
    for (size_t i = 0; i < e->nfk; i++) {
        const char *fid;
        if (fk_value(obj, e->fk[i].field, &fid) != SL_OK) {
            *field = e->fk[i].field;
            return SL_ERR_INVALID;
        }
        if (fid == NULL)
            continue;
        MDB_val k = {strlen(fid), (void *)fid}, v;
        int mrc = mdb_get(t->txn, t->s->ents[e->fk[i].ref].dbi, &k, &v);
        if (mrc == MDB_NOTFOUND) {
            *field = e->fk[i].field;
            return SL_ERR_NOT_FOUND;
        }
        if (mrc != 0)
            return txn_fail(t, mrc, "check foreign key");
    }
    return SL_OK;
}

/* Checks that no unique value of obj belongs to an entity other than id. */
static int check_unique(sl_txn_t *t, const struct ent *e, const char *id, const json_t *obj,
                        const char **field)
{
    char kbuf[512];
    sl_sb_t b;
    sl_sb_init(&b, kbuf, sizeof(kbuf));
    int rc = SL_OK;
    for (size_t i = 0; i < e->nu && rc == SL_OK; i++) {
        if (!unique_key(e, &e->u[i], obj, &b))
            continue;
        MDB_val k = {b.len, b.p}, v;
        int mrc = mdb_get(t->txn, e->u[i].dbi, &k, &v);
        if (mrc == 0 && !key_equals(&v, id, strlen(id))) {
            *field = e->u[i].field;
            rc = SL_ERR_EXISTS;
        } else if (mrc != 0 && mrc != MDB_NOTFOUND) {
            rc = txn_fail(t, mrc, "check unique index");
        }
    }
    sl_sb_dispose(&b);
    return rc;
}

int sl_txn_put(sl_txn_t *t, const char *entity, json_t *obj, const char **conflict_field)
{
    const char *dummy;
    if (conflict_field == NULL)
        conflict_field = &dummy;
    *conflict_field = NULL;
    int rc = usable(t, true);
    if (rc != SL_OK)
        return rc;
    struct ent *e = find_ent(t->s, entity, NULL);
    const char *id = json_is_object(obj) ? entity_id(obj) : NULL;
    if (e == NULL || id == NULL) {
        *conflict_field = e ? "id" : NULL;
        return SL_ERR_INVALID;
    }
    size_t tlen = 0;
    char *text = sl_json_out_dup(obj, &tlen);
    if (text == NULL)
        return SL_ERR_NOMEM; /* as json_dumps: a value JSON cannot express */

    json_t *old = NULL;
    MDB_val k = {strlen(id), (void *)id}, v;
    int mrc = mdb_get(t->txn, e->dbi, &k, &v);
    sl_cfghash_t hash = t->hash;
    if (mrc == 0) {
        if (key_equals(&v, text, tlen))
            goto out; /* the same bytes: not a change */
        if ((old = parse_value(&v)) == NULL) {
            rc = corrupt(t, entity);
            goto out;
        }
        sl_cfghash_toggle(&hash, entity, id, v.mv_data, v.mv_size);
    } else if (mrc != MDB_NOTFOUND) {
        rc = txn_fail(t, mrc, "read entity");
        goto out;
    }

    /* Every check before the first write, so that a refused put leaves the
     * transaction as it was. */
    if ((rc = check_foreign(t, e, obj, conflict_field)) != SL_OK ||
        (rc = check_unique(t, e, id, obj, conflict_field)) != SL_OK)
        goto out;

    if (old && (rc = index_entity(t, e, id, old, false)) != SL_OK)
        goto out;
    if ((rc = index_entity(t, e, id, obj, true)) != SL_OK)
        goto out;
    v = (MDB_val){tlen, text};
    if ((mrc = mdb_put(t->txn, e->dbi, &k, &v, 0)) != 0) {
        rc = txn_fail(t, mrc, "write entity");
        goto out;
    }
    record_change(t, entity, id, text, tlen);
    sl_cfghash_toggle(&hash, entity, id, text, tlen);
    t->hash = hash;

out:
    json_decref(old);
    free(text);
    return rc;
}

/* Collects the ids of e's children through fk link dbi "<fid>:<id>", at most
 * max of them. */
static int children(sl_txn_t *t, MDB_dbi dbi, const char *fid, size_t max, struct idlist *out)
{
    char prefix[ID_MAX + 2];
    size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "%s:", fid);
    MDB_cursor *c;
    int mrc = mdb_cursor_open(t->txn, dbi, &c);
    if (mrc != 0)
        return txn_fail(t, mrc, "open cursor");
    MDB_val k, v;
    mrc = seek(c, prefix, plen, false, &k, &v);
    while (mrc == 0 && out->n < max && has_prefix(&k, prefix, plen)) {
        const char *id = (const char *)k.mv_data + plen;
        size_t idlen = k.mv_size - plen;
        if (!valid_id_str(id, idlen)) {
            mdb_cursor_close(c);
            return corrupt(t, "foreign-key index");
        }
        idlist_add(out, id, idlen);
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        return txn_fail(t, mrc, "walk foreign-key index");
    return SL_OK;
}

/* Whether entity id of table ei can go: no non-cascading reference to it or
 * to anything its deletion cascades to. *blocker names the referencing table. */
static int check_delete(sl_txn_t *t, size_t ei, const char *id, const char **blocker, int depth)
{
    sl_store_t *s = t->s;
    SL_ASSERT(depth < MAX_CASCADE); /* the schemas' references have no cycles */
    for (size_t j = 0; j < s->nents; j++) {
        struct ent *child = &s->ents[j];
        for (size_t f = 0; f < child->nfk; f++) {
            if (child->fk[f].ref != ei)
                continue;
            struct idlist ids = {0};
            int rc = children(t, child->fk[f].dbi, id, child->fk[f].cascade ? SIZE_MAX : 1, &ids);
            if (rc == SL_OK && ids.n > 0 && !child->fk[f].cascade) {
                *blocker = child->schema->name;
                rc = SL_ERR_EXISTS;
            }
            for (size_t i = 0; i < ids.n && rc == SL_OK; i++)
                rc = check_delete(t, j, ids.v[i], blocker, depth + 1);
            free(ids.v);
            if (rc != SL_OK)
                return rc;
        }
    }
    return SL_OK;
}

/* Deletes entity id of table ei and, first, everything that cascades from it.
 * check_delete has said yes. SL_ERR_NOT_FOUND when it is already gone. */
static int delete_entity(sl_txn_t *t, size_t ei, const char *id)
{
    sl_store_t *s = t->s;
    struct ent *e = &s->ents[ei];
    json_t *obj;
    int rc = get_entity(t, e, id, &obj);
    if (rc != SL_OK)
        return rc;

    for (size_t j = 0; j < s->nents && rc == SL_OK; j++) {
        struct ent *child = &s->ents[j];
        for (size_t f = 0; f < child->nfk && rc == SL_OK; f++) {
            if (child->fk[f].ref != ei || !child->fk[f].cascade)
                continue;
            struct idlist ids = {0};
            rc = children(t, child->fk[f].dbi, id, SIZE_MAX, &ids);
            for (size_t i = 0; i < ids.n && rc == SL_OK; i++) {
                rc = delete_entity(t, j, ids.v[i]);
                if (rc == SL_ERR_NOT_FOUND) /* reached through another parent already */
                    rc = SL_OK;
            }
            free(ids.v);
        }
    }

    if (rc == SL_OK)
        rc = index_entity(t, e, id, obj, false);
    if (rc == SL_OK) {
        MDB_val k = {strlen(id), (void *)id}, v;
        int mrc = mdb_get(t->txn, e->dbi, &k, &v);
        if (mrc == 0)
            sl_cfghash_toggle(&t->hash, e->schema->name, id, v.mv_data, v.mv_size);
        if (mrc == 0)
            mrc = mdb_del(t->txn, e->dbi, &k, NULL);
        if (mrc != 0)
            rc = txn_fail(t, mrc, "delete entity");
    }
    if (rc == SL_OK)
        record_change(t, e->schema->name, id, NULL, 0);
    json_decref(obj);
    return rc;
}

int sl_txn_delete(sl_txn_t *t, const char *entity, const char *id, const char **blocker)
{
    const char *dummy;
    if (blocker == NULL)
        blocker = &dummy;
    *blocker = NULL;
    int rc = usable(t, true);
    if (rc != SL_OK)
        return rc;
    size_t ei;
    struct ent *e = find_ent(t->s, entity, &ei);
    if (e == NULL)
        return SL_ERR_INVALID;
    if (id == NULL || !valid_id_str(id, strlen(id)))
        return SL_ERR_NOT_FOUND;
    MDB_val k = {strlen(id), (void *)id}, v;
    int mrc = mdb_get(t->txn, e->dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return SL_ERR_NOT_FOUND;
    if (mrc != 0)
        return txn_fail(t, mrc, "read entity");
    /* Check the whole cascade before deleting anything, so that a blocked
     * delete leaves the transaction as it was. */
    if ((rc = check_delete(t, ei, id, blocker, 0)) != SL_OK)
        return rc;
    return delete_entity(t, ei, id);
}

int sl_txn_clear(sl_txn_t *t)
{
    int rc = usable(t, true);
    if (rc != SL_OK)
        return rc;
    sl_store_t *s = t->s;
    int mrc = 0;
    for (size_t i = 0; i < s->nents && mrc == 0; i++) {
        struct ent *e = &s->ents[i];
        MDB_cursor *c;
        if ((mrc = mdb_cursor_open(t->txn, e->dbi, &c)) != 0)
            break;
        MDB_val k, v;
        char id[ID_MAX + 1];
        for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
             mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (!valid_id_str(k.mv_data, k.mv_size))
                continue;
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = '\0';
            record_change(t, e->schema->name, id, NULL, 0);
        }
        mdb_cursor_close(c);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    for (size_t i = 0; i < s->nents && mrc == 0; i++) {
        struct ent *e = &s->ents[i];
        mrc = mdb_drop(t->txn, e->dbi, 0);
        for (size_t j = 0; j < e->nu && mrc == 0; j++)
            mrc = mdb_drop(t->txn, e->u[j].dbi, 0);
        for (size_t j = 0; j < e->nfk && mrc == 0; j++)
            mrc = mdb_drop(t->txn, e->fk[j].dbi, 0);
    }
    if (mrc == 0)
        mrc = mdb_drop(t->txn, s->tags, 0);
    if (mrc == 0)
        memset(&t->hash, 0, sizeof(t->hash));
    return mrc == 0 ? SL_OK : txn_fail(t, mrc, "clear");
}

/* ------------------------------------------------------------------------ */
/* Listings                                                                  */

/* Walks the entity table, or a foreign-key index for one parent. */
/* The output of sl_txn_list_text while it walks. */
struct text_out {
    sl_sb_t *sb;
    size_t n;
    char *last_id; /* ID_MAX + 1 bytes */
};

/* Appends the stored text of the entity at cursor position (k, v): the
 * table's own entry, or for a foreign-key walk ("<fid>:<id>" keys) the entity
 * that entry names. */
static int add_text(sl_txn_t *t, const struct ent *e, const struct fkidx *fk, size_t plen,
                    const MDB_val *k, const MDB_val *v, struct text_out *out)
{
    const char *id = k->mv_data;
    size_t idlen = k->mv_size;
    MDB_val ev = *v;
    if (fk) {
        id += plen;
        idlen -= plen;
        if (!valid_id_str(id, idlen))
            return corrupt(t, "foreign-key index");
        MDB_val ek = {idlen, (void *)id};
        int mrc = mdb_get(t->txn, e->dbi, &ek, &ev);
        if (mrc == MDB_NOTFOUND)
            return corrupt(t, "foreign-key index");
        if (mrc != 0)
            return txn_fail(t, mrc, "read entity");
    }
    const char *p = ev.mv_data;
    if (idlen > ID_MAX || ev.mv_size < 2 || p[0] != '{' || p[ev.mv_size - 1] != '}')
        return corrupt(t, e->schema->name);
    if (out->n)
        sl_sb_addlit(out->sb, ",");
    sl_sb_add(out->sb, p, ev.mv_size);
    memcpy(out->last_id, id, idlen);
    out->last_id[idlen] = '\0';
    out->n++;
    return SL_OK;
}

static int list_walk(sl_txn_t *t, struct ent *e, struct fkidx *fk, const char *fk_id,
                     const char *after_id, size_t limit, json_t *arr, struct text_out *text,
                     bool *more)
{
    char kbuf[2 * ID_MAX + 8];
    size_t plen = 0, slen = 0;
    if (fk) {
        plen = (size_t)snprintf(kbuf, sizeof(kbuf), "%s:", fk_id);
        slen = plen;
    }
    if (after_id)
        slen += (size_t)snprintf(kbuf + plen, sizeof(kbuf) - plen, "%s", after_id);

    MDB_cursor *c;
    int mrc = mdb_cursor_open(t->txn, fk ? fk->dbi : e->dbi, &c);
    if (mrc != 0)
        return txn_fail(t, mrc, "open cursor");
    MDB_val k, v;
    int rc = SL_OK;
    for (mrc = seek(c, kbuf, slen, after_id != NULL, &k, &v); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (!has_prefix(&k, kbuf, plen))
            break;
        if ((text ? text->n : json_array_size(arr)) == limit) {
            *more = true;
            break;
        }
        if (text) {
            if ((rc = add_text(t, e, fk, plen, &k, &v, text)) != SL_OK)
                break;
            continue;
        }
        json_t *obj;
        if (fk) {
            char id[ID_MAX + 1];
            size_t idlen = k.mv_size - plen;
            if (!valid_id_str((const char *)k.mv_data + plen, idlen)) {
                rc = corrupt(t, "foreign-key index");
                break;
            }
            memcpy(id, (const char *)k.mv_data + plen, idlen);
            id[idlen] = '\0';
            if ((rc = get_entity(t, e, id, &obj)) != SL_OK) {
                if (rc == SL_ERR_NOT_FOUND)
                    rc = corrupt(t, "foreign-key index");
                break;
            }
        } else if ((obj = parse_value(&v)) == NULL) {
            rc = corrupt(t, e->schema->name);
            break;
        }
        json_array_append_new(arr, obj);
    }
    close_cursor(t, c);
    if (rc == SL_OK && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = txn_fail(t, mrc, "walk table");
    return rc;
}

/* Checks the arguments shared by the list functions and finds the entity
 * and (optional) foreign-key index to walk. */
static int list_prepare(sl_txn_t *t, const char *entity, const char *fk_field, const char *after_id,
                        struct ent **e, struct fkidx **fk)
{
    int rc = usable(t, false);
    if (rc != SL_OK)
        return rc;
    *e = find_ent(t->s, entity, NULL);
    if (*e == NULL)
        return SL_ERR_INVALID;
    *fk = NULL;
    if (fk_field && (*fk = find_fk(*e, fk_field)) == NULL)
        return SL_ERR_INVALID;
    if (after_id && strlen(after_id) > ID_MAX)
        return SL_ERR_INVALID;
    return SL_OK;
}

int sl_txn_list(sl_txn_t *t, const char *entity, const char *fk_field, const char *fk_id,
                const char *after_id, size_t limit, json_t **out, bool *more)
{
    *out = NULL;
    *more = false;
    struct ent *e;
    struct fkidx *fk;
    int rc = list_prepare(t, entity, fk_field, after_id, &e, &fk);
    if (rc != SL_OK)
        return rc;
    json_t *arr = jcheck(json_array());
    /* A parent id that cannot exist has no children. */
    if (fk == NULL || (fk_id && valid_id_str(fk_id, strlen(fk_id))))
        rc = list_walk(t, e, fk, fk_id, after_id, limit, arr, NULL, more);
    if (rc != SL_OK) {
        json_decref(arr);
        *more = false;
        return rc;
    }
    *out = arr;
    return SL_OK;
}

int sl_txn_list_text(sl_txn_t *t, const char *entity, const char *fk_field, const char *fk_id,
                     const char *after_id, size_t limit, sl_sb_t *out, size_t *n, char *last_id,
                     bool *more)
{
    *n = 0;
    *more = false;
    last_id[0] = '\0';
    struct ent *e;
    struct fkidx *fk;
    int rc = list_prepare(t, entity, fk_field, after_id, &e, &fk);
    if (rc != SL_OK)
        return rc;
    struct text_out text = {.sb = out, .n = 0, .last_id = last_id};
    size_t start = out->len;
    if (fk == NULL || (fk_id && valid_id_str(fk_id, strlen(fk_id))))
        rc = list_walk(t, e, fk, fk_id, after_id, limit, NULL, &text, more);
    if (rc != SL_OK) {
        out->len = start;
        last_id[0] = '\0';
        *more = false;
        return rc;
    }
    *n = text.n;
    return SL_OK;
}

/* Splits a tag index key "<tag>\0<entity>\0<id>" from its end. */
static bool split_tag_key(const MDB_val *k, size_t *tag_len, const char **entity, size_t *elen,
                          const char **id, size_t *idlen)
{
    const char *p = k->mv_data;
    size_t n = k->mv_size;
    const char *z2 = memrchr(p, '\0', n);
    if (z2 == NULL || z2 == p)
        return false;
    const char *z1 = memrchr(p, '\0', (size_t)(z2 - p));
    if (z1 == NULL)
        return false;
    *tag_len = (size_t)(z1 - p);
    *entity = z1 + 1;
    *elen = (size_t)(z2 - z1 - 1);
    *id = z2 + 1;
    *idlen = n - (size_t)(z2 + 1 - p);
    return *elen > 0 && valid_id_str(*id, *idlen);
}

/* Walks the tag index from cursor key `start` (excluded), within prefix
 * (plen bytes; 0: everything). The tag of each element is `tag` when given,
 * else read from the key or, for a shortened tag, the entry's value. */
static int tag_walk(sl_txn_t *t, const char *tag, const sl_sb_t *start, size_t plen, size_t limit,
                    json_t *arr, bool *more)
{
    MDB_cursor *c;
    int mrc = mdb_cursor_open(t->txn, t->s->tags, &c);
    if (mrc != 0)
        return txn_fail(t, mrc, "open cursor");
    MDB_val k, v;
    int rc = SL_OK;
    bool after = start->len > plen;
    for (mrc = seek(c, start->p, start->len, after, &k, &v); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (!has_prefix(&k, start->p, plen))
            break;
        if (json_array_size(arr) == limit) {
            *more = true;
            break;
        }
        size_t tag_len, elen, idlen;
        const char *ent, *id;
        if (!split_tag_key(&k, &tag_len, &ent, &elen, &id, &idlen)) {
            rc = corrupt(t, "tag index");
            break;
        }
        json_t *tj;
        if (tag)
            tj = json_string(tag);
        else if (v.mv_size > 0)
            tj = json_stringn(v.mv_data, v.mv_size);
        else
            tj = json_stringn(k.mv_data, tag_len);
        json_t *el = jcheck(json_object());
        json_object_set_new(el, "entity_name", jcheck(json_stringn(ent, elen)));
        json_object_set_new(el, "entity_id", jcheck(json_stringn(id, idlen)));
        json_object_set_new(el, "tag", tj ? tj : jcheck(json_string("")));
        json_array_append_new(arr, el);
    }
    close_cursor(t, c);
    if (rc == SL_OK && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = txn_fail(t, mrc, "walk tag index");
    return rc;
}

static bool tag_cursor_ok(const char *after_entity, const char *after_id)
{
    if (after_entity == NULL)
        return after_id == NULL;
    return after_id != NULL && strlen(after_entity) <= TAG_CURSOR_MAX && strlen(after_id) <= ID_MAX;
}

int sl_txn_list_tag(sl_txn_t *t, const char *tag, const char *after_entity, const char *after_id,
                    size_t limit, json_t **out, bool *more)
{
    *out = NULL;
    *more = false;
    int rc = usable(t, false);
    if (rc != SL_OK)
        return rc;
    if (tag == NULL || !tag_cursor_ok(after_entity, after_id))
        return SL_ERR_INVALID;
    char kbuf[512];
    sl_sb_t b;
    sl_sb_init(&b, kbuf, sizeof(kbuf));
    tag_prefix(&b, tag, strlen(tag));
    size_t plen = b.len;
    if (after_entity) {
        sl_sb_adds(&b, after_entity);
        sl_sb_add(&b, "", 1);
        sl_sb_adds(&b, after_id);
    }
    json_t *arr = jcheck(json_array());
    rc = tag_walk(t, tag, &b, plen, limit, arr, more);
    sl_sb_dispose(&b);
    if (rc != SL_OK) {
        json_decref(arr);
        *more = false;
        return rc;
    }
    *out = arr;
    return SL_OK;
}

int sl_txn_list_tags(sl_txn_t *t, const char *after_tag, const char *after_entity,
                     const char *after_id, size_t limit, json_t **out, bool *more)
{
    *out = NULL;
    *more = false;
    int rc = usable(t, false);
    if (rc != SL_OK)
        return rc;
    if ((after_tag == NULL) != (after_entity == NULL) || !tag_cursor_ok(after_entity, after_id))
        return SL_ERR_INVALID;
    char kbuf[512];
    sl_sb_t b;
    sl_sb_init(&b, kbuf, sizeof(kbuf));
    if (after_tag) {
        tag_prefix(&b, after_tag, strlen(after_tag));
        sl_sb_adds(&b, after_entity);
        sl_sb_add(&b, "", 1);
        sl_sb_adds(&b, after_id);
    }
    json_t *arr = jcheck(json_array());
    rc = tag_walk(t, NULL, &b, 0, limit, arr, more);
    sl_sb_dispose(&b);
    if (rc != SL_OK) {
        json_decref(arr);
        *more = false;
        return rc;
    }
    *out = arr;
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Change log                                                                */

static int changes_walk(sl_txn_t *t, uint64_t since, json_t *arr)
{
    if (since == t->version)
        return SL_OK;
    if (since > t->version) /* the data plane is ahead of this store */
        return SL_ERR_NOT_FOUND;
    unsigned char first[8];
    put_be64(first, since + 1);
    MDB_cursor *c;
    int mrc = mdb_cursor_open(t->txn, t->s->changes, &c);
    if (mrc != 0)
        return txn_fail(t, mrc, "open cursor");
    MDB_val k, v;
    int rc = SL_OK;
    mrc = seek(c, first, 8, false, &k, &v);
    if (mrc == MDB_NOTFOUND || (mrc == 0 && !key_equals(&k, first, 8)))
        rc = SL_ERR_NOT_FOUND; /* pruned: older than the kept depth */
    for (; rc == SL_OK && mrc == 0; mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        json_t *rec = parse_value(&v);
        if (rec == NULL || k.mv_size != 8) {
            json_decref(rec);
            rc = corrupt(t, "changes");
            break;
        }
        json_t *el = jcheck(json_object());
        json_object_set_new(el, "version", jcheck(json_integer((json_int_t)get_be64(k.mv_data))));
        json_object_update(el, rec);
        json_decref(rec);
        json_array_append_new(arr, el);
    }
    close_cursor(t, c);
    if (rc == SL_OK && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = txn_fail(t, mrc, "walk changes");
    return rc;
}

int sl_store_changes_since(sl_store_t *s, uint64_t since, json_t **out)
{
    *out = NULL;
    sl_txn_t *t;
    int rc = sl_store_begin(s, false, &t);
    if (rc != SL_OK)
        return rc;
    json_t *arr = jcheck(json_array());
    rc = changes_walk(t, since, arr);
    sl_txn_abort(t);
    if (rc != SL_OK) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return SL_OK;
}

uint64_t sl_store_version(sl_store_t *s)
{
    sl_txn_t *t;
    if (sl_store_begin(s, false, &t) != SL_OK)
        return 0;
    uint64_t v = t->version;
    sl_txn_abort(t);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Snapshots                                                                 */

int sl_store_walk_raw(sl_store_t *s, const char *only, sl_store_raw_cb cb, void *arg,
                      uint64_t *version, char hash[33])
{
    sl_txn_t *t;
    int rc = sl_store_begin(s, false, &t);
    if (rc != SL_OK)
        return rc;
    *version = t->version;
    sl_cfghash_hex(&t->hash, hash);
    char id[ID_MAX + 1];
    for (size_t i = 0; i < s->nents && rc == SL_OK; i++) {
        if (only && strcmp(only, s->ents[i].schema->name) != 0)
            continue;
        MDB_cursor *c;
        int mrc = mdb_cursor_open(t->txn, s->ents[i].dbi, &c);
        MDB_val k, v;
        for (mrc = mrc ? mrc : mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && rc == SL_OK;
             mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (!valid_id_str(k.mv_data, k.mv_size))
                continue;
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = '\0';
            rc = cb(arg, s->ents[i].schema->name, id, v.mv_data, v.mv_size);
        }
        if (mrc != MDB_NOTFOUND && mrc != 0)
            rc = txn_fail(t, mrc, "walk entities");
        if (c)
            mdb_cursor_close(c);
    }
    sl_txn_abort(t);
    return rc;
}

int sl_store_hash_at(sl_store_t *s, uint64_t version, char hash[33])
{
    sl_txn_t *t;
    int rc = sl_store_begin(s, false, &t);
    if (rc != SL_OK)
        return rc;
    if (version == t->version) {
        sl_cfghash_hex(&t->hash, hash);
    } else if (version == 0) {
        memset(hash, '0', 32);
        hash[32] = '\0';
    } else {
        unsigned char key[8];
        put_be64(key, version);
        MDB_val k = {8, key}, v;
        rc = SL_ERR_NOT_FOUND;
        /* write_version puts the hash last: read it from the record's tail
         * rather than parse a record that may name every entity. */
        static const char tail[] = "\"hash\":\"";
        const size_t tl = sizeof(tail) - 1;
        if (version < t->version && mdb_get(t->txn, s->changes, &k, &v) == 0 &&
            v.mv_size >= tl + 34 &&
            !memcmp((const char *)v.mv_data + v.mv_size - tl - 34, tail, tl) &&
            !memcmp((const char *)v.mv_data + v.mv_size - 2, "\"}", 2)) {
            memcpy(hash, (const char *)v.mv_data + v.mv_size - 34, 32);
            hash[32] = '\0';
            rc = SL_OK;
        } else if (version < t->version && mdb_get(t->txn, s->changes, &k, &v) == 0) {
            json_t *rec = parse_value(&v);
            const char *h = json_string_value(json_object_get(rec, "hash"));
            if (h && strlen(h) == 32) {
                memcpy(hash, h, 33);
                rc = SL_OK;
            }
            json_decref(rec);
        }
    }
    sl_txn_abort(t);
    return rc;
}
