/*
 * The configuration hash both planes compute: 32 hex characters naming a
 * set of entities, independent of order, and updatable one entity at a time.
 *
 * Each entity contributes the first 16 bytes of SHA-256(table NUL id NUL
 * json), where json is the entity's compact JSON text exactly as the control
 * plane stored and sent it; the hash is the XOR of all contributions. Adding
 * or removing an entity XORs its contribution in or out, so the control
 * plane updates the hash per write and a data plane per delta, each in time
 * proportional to the change. The empty configuration hashes to 32 zeros
 * (Kong's empty-configuration hash).
 */
#ifndef SL_CFGHASH_H
#define SL_CFGHASH_H

#include <stdbool.h>
#include <stddef.h>

#define SL_CFGHASH_LEN 16

typedef struct sl_cfghash_s {
    unsigned char b[SL_CFGHASH_LEN];
} sl_cfghash_t;

/* XORs one entity's contribution into h (adding and removing are the same). */
void sl_cfghash_toggle(sl_cfghash_t *h, const char *table, const char *id, const char *json,
                       size_t len);

/* 32 lower-case hex characters and a NUL. */
void sl_cfghash_hex(const sl_cfghash_t *h, char out[33]);

/* Parses 32 hex characters; false when s is anything else. */
bool sl_cfghash_parse(const char *s, size_t len, sl_cfghash_t *out);

#endif
