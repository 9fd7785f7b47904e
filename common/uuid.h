/*
 * UUIDs as Kong uses them: random (version 4) ids for entities created at run
 * time, and name-based (version 5, SHA-1) ids so that a declarative file
 * yields the same ids every time it is loaded. Strings are always the
 * canonical lower-case 36-character form.
 */
#ifndef SL_UUID_H
#define SL_UUID_H

#include <stdbool.h>
#include <stddef.h>

#define SL_UUID_STRLEN 36

/* Writes a random version-4 UUID and its terminating NUL into out. Uses
 * OpenSSL's RAND_bytes; aborts if the generator fails (it does not on a
 * seeded system). */
void sl_uuid_v4(char out[SL_UUID_STRLEN + 1]);

/* Writes the RFC 4122 version-5 UUID of name (len bytes, any content) in the
 * namespace ns_uuid into out. Returns SL_OK, or SL_ERR_INVALID (out untouched)
 * when ns_uuid is not a valid UUID string. */
int sl_uuid_v5(const char *ns_uuid, const char *name, size_t len, char out[SL_UUID_STRLEN + 1]);

/* True when s is a UUID in 8-4-4-4-12 hex form (either case), as Kong's
 * schema `uuid` validator accepts it. */
bool sl_uuid_valid(const char *s);

#endif
