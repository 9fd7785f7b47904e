/*
 * The control plane's configuration store: one LMDB environment under the
 * prefix holding every entity, its indexes, the configuration version and
 * the change log the cluster protocol sends to data planes as deltas.
 *
 * Layout (named LMDB databases):
 *   e:<entity>            id -> entity JSON (compact, as validated)
 *   u:<entity>:<field>    unique value -> id     (fields flagged SL_F_UNIQUE in common/entities.c;
 *                                                 for targets, unique per upstream:
 * "<upstream_id>:<target>") f:<entity>:<field>    "<foreign id>:<id>" -> ""   (every SL_FT_FOREIGN
 * field; lists children) t:tags                "<tag>\0<entity>\0<id>" -> ""   (for /tags) meta
 * "version" -> uint64 (big-endian), "hash" -> 32 hex chars changes               version (uint64
 * big-endian) -> {"upserts":[{"entity","id","value"}], "deletes":[{"entity","id"}],
 * "hash":"<configuration hash after this version>"}
 *
 * Composite unique indexes (from a schema's multi-field cache key; values
 * joined by ':', a foreign key giving its id and null giving ""):
 *   u:plugins:cache_key   "<name>:<route_id>:<service_id>:<consumer_id>"
 *   u:targets:target      "<upstream_id>:<target>"
 *   u:acls:group          "<consumer_id>:<group>"
 * An index value (unique value or tag) longer than 400 bytes is keyed by its
 * first 335 bytes, a 0x01 byte and its SHA-256 hex (LMDB keys are at most
 * 511 bytes); lookups apply the same rule, so callers never see it.
 *
 * A change record holds each (entity, id) the transaction touched once, with
 * its final state: upserted (with the last value) or deleted. A put that
 * stores exactly the bytes already stored is not a change. meta "hash" is
 * the content hash of common/cfghash.h over every stored entity's text,
 * updated per put and delete (32 zeros when empty).
 *
 * One write transaction = one Admin API write: entity, indexes, change
 * record and version bump are committed together, durably (no MDB_NOSYNC),
 * before the caller answers 2xx. A full map is SL_ERR_TOO_BIG (the Admin API
 * answers 507 naming lmdb_map_size) and leaves the store unchanged.
 *
 * Threads: the store is used from the control plane's main thread only.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include "errors.h"
#include "util-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sl_store_s sl_store_t;
typedef struct sl_txn_s sl_txn_t;

/* Opens (creating if needed) the store in directory dir. map_size in bytes;
 * changes_depth = how many versions of change records to keep. */
int sl_store_open(const char *dir, uint64_t map_size, uint64_t changes_depth, sl_store_t **out,
                  sl_errors_t *errs);
void sl_store_close(sl_store_t *s);

/* Transactions. A read transaction sees one consistent snapshot. (Added:
 * one write transaction at a time; beginning a second is a bug and asserts.
 * Read transactions may be open beside it.) */
int sl_store_begin(sl_store_t *s, bool write, sl_txn_t **out);
/* Commits: bumps the version and writes the change record if anything
 * changed. Returns SL_OK, SL_ERR_TOO_BIG (map full; nothing written) or
 * SL_ERR_IO. Frees the transaction in every case. */
int sl_txn_commit(sl_txn_t *t);
void sl_txn_abort(sl_txn_t *t);

/* The configuration version as of this transaction (0 for an empty store). */
uint64_t sl_txn_version(sl_txn_t *t);

/* Reads one entity by id. *out is a new reference. SL_ERR_NOT_FOUND if absent. */
int sl_txn_get(sl_txn_t *t, const char *entity, const char *id, json_t **out);

/* Looks up an id through a unique index (e.g. "services", "name", "my-svc").
 * For targets use field "target" and value "<upstream_id>:<target>". */
int sl_txn_find_unique(sl_txn_t *t, const char *entity, const char *field, const char *value,
                       char id_out[37]);

/*
 * Inserts or replaces an entity (obj must have "id"). Maintains the unique,
 * foreign-key and tag indexes and records the upsert in the change log.
 * Returns SL_OK; SL_ERR_EXISTS when a unique field's value belongs to another
 * entity (*conflict_field names it); SL_ERR_NOT_FOUND when a foreign key
 * points to nothing (*conflict_field names it); SL_ERR_TOO_BIG when the map
 * is full.
 * Added: SL_ERR_INVALID for an unknown entity name, an obj without a usable
 * "id" (a string of 1 to 36 characters without ':'; *conflict_field "id"),
 * a foreign key that is neither null nor {"id": "<id>"} (*conflict_field
 * names it) or a read-only transaction. After SL_ERR_EXISTS, NOT_FOUND or
 * INVALID the transaction is unchanged and usable; after TOO_BIG or IO it is
 * aborted and every later call returns the same code.
 */
int sl_txn_put(sl_txn_t *t, const char *entity, json_t *obj, const char **conflict_field);

/*
 * Deletes an entity and its index entries; entities that reference it
 * through an SL_F_CASCADE foreign key are deleted too (recursively), each
 * recorded in the change log. A non-cascading reference makes it fail with
 * SL_ERR_EXISTS and *blocker set to the referencing entity name (e.g. a
 * service still referenced by routes). SL_ERR_NOT_FOUND if absent.
 */
int sl_txn_delete(sl_txn_t *t, const char *entity, const char *id, const char **blocker);

/*
 * Lists entities in id order, starting after `after_id` (NULL: from the
 * start), at most `limit`. When fk_field is non-NULL, only entities whose
 * foreign key fk_field equals fk_id. *out is a new JSON array; *more tells
 * whether entities follow the last one returned.
 */
int sl_txn_list(sl_txn_t *t, const char *entity, const char *fk_field, const char *fk_id,
                const char *after_id, size_t limit, json_t **out, bool *more);

struct sl_sb_s;

/*
 * sl_txn_list without parsing: appends the stored compact JSON text of each
 * entity to out, separated by commas (no brackets), for a reply that splices
 * them as they are. *n gets the number appended, last_id (37 bytes) the id
 * of the last one ("" when none). Same return codes as sl_txn_list.
 */
int sl_txn_list_text(sl_txn_t *t, const char *entity, const char *fk_field, const char *fk_id,
                     const char *after_id, size_t limit, struct sl_sb_s *out, size_t *n,
                     char *last_id, bool *more);

/* Every (entity, id) carrying `tag`, in tag index order, after the cursor
 * "<entity>\0<id>" given as after_entity/after_id (NULL: start). Each element
 * of *out is {"entity_name": ..., "entity_id": ..., "tag": ...} (Kong's /tags
 * shape). SL_ERR_INVALID for a malformed cursor. */
int sl_txn_list_tag(sl_txn_t *t, const char *tag, const char *after_entity, const char *after_id,
                    size_t limit, json_t **out, bool *more);

/* Added: every (tag, entity, id) of the tag index (GET /tags), elements as
 * above, after the cursor after_tag/after_entity/after_id (all NULL: start;
 * all three or none). */
int sl_txn_list_tags(sl_txn_t *t, const char *after_tag, const char *after_entity,
                     const char *after_id, size_t limit, json_t **out, bool *more);

/* Deletes every entity (for POST /config), recording deletes in the change log. */
int sl_txn_clear(sl_txn_t *t);

/* The change records with version > since, oldest first, as a JSON array of
 * {"version": n, "upserts": [...], "deletes": [...]}; SL_ERR_NOT_FOUND when
 * `since` is older than the kept depth (the caller sends a snapshot). */
int sl_store_changes_since(sl_store_t *s, uint64_t since, json_t **out);

/* Added. `since` greater than the current version (a data plane ahead of
 * this store) is SL_ERR_NOT_FOUND too: it needs a snapshot. */

/* Added: the configuration hash as of this transaction (see meta "hash"
 * above): 32 lower-case hex characters and a NUL. */
void sl_txn_hash(sl_txn_t *t, char out[33]);

/* Calls cb (on the committing thread) after each commit that made a new
 * version; the cluster server uses it to push deltas. One hook per store. */
void sl_store_on_commit(sl_store_t *s, void (*cb)(void *arg, uint64_t version), void *arg);

/* Calls cb for every stored entity (of table `only`, when not NULL) with its
 * stored JSON text (not NUL-terminated), all within one read transaction,
 * and gives the version and hash of what was walked. cb returns SL_OK to go on; anything else
 * stops the walk and is returned. */
typedef int (*sl_store_raw_cb)(void *arg, const char *table, const char *id, const char *json,
                               size_t len);
int sl_store_walk_raw(sl_store_t *s, const char *only, sl_store_raw_cb cb, void *arg,
                      uint64_t *version, char hash[33]);

/* The configuration hash right after `version` was committed (from its
 * change record, or the current hash); SL_ERR_NOT_FOUND when that version's
 * record is pruned or the version is in the future. Version 0 is the empty
 * configuration. */
int sl_store_hash_at(sl_store_t *s, uint64_t version, char hash[33]);

/* Added: the committed configuration version (0 when it cannot be read). */
uint64_t sl_store_version(sl_store_t *s);

/* Added: the message of the last LMDB failure ("lmdb: write entity: ...";
 * empty when none), for logs and 500/507 answers. Valid until the next call
 * into the store. */
const char *sl_store_error(sl_store_t *s);

#endif
