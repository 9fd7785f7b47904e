/*
 * The declarative configuration loader: Kong `_format_version` "3.0" (and
 * 1.1/2.1, migrated) files in YAML or JSON, validated against the entity
 * schemas and flattened into one normalised document.
 *
 * The normalised document is a jansson object in Kong's flat export shape:
 *   { "_format_version": "3.0",
 *     "services": [...], "routes": [...], "consumers": [...], "plugins": [...],
 *     "upstreams": [...], "targets": [...], "certificates": [...], "snis": [...],
 *     "ca_certificates": [...], "keyauth_credentials": [...],
 *     "basicauth_credentials": [...], "jwt_secrets": [...], "acls": [...] }
 * Every array is present (possibly empty). Every entity has every field of its
 * schema with defaults filled in (null where Kong's default is null), an "id"
 * (deterministic UUIDv5 as Kong derives it when the file omits it),
 * "created_at"/"updated_at", and foreign keys as {"id": "<uuid>"} or null.
 * Nested entities are moved to their top-level array; services given by "url"
 * are expanded to protocol/host/port/path.
 */
#ifndef SL_DECLARATIVE_H
#define SL_DECLARATIVE_H

#include "errors.h"

#include <jansson.h>

/* The tables of the normalised document, in its order, NULL-terminated. */
extern const char *const sl_declarative_tables[];

/* Maximum size of a declarative file. */
#define SL_DECLARATIVE_MAX_BYTES (64u * 1024 * 1024)

/*
 * Loads and validates a file (YAML or JSON, detected by content). Returns
 * SL_OK with *out set (caller json_decref()s it), or SL_ERR_INVALID with every
 * problem found appended to errs as "path: message"
 * (e.g. "services[0].routes[1].paths[0]: should start with: / (fixed path) or ~/ (regex path)"),
 * or SL_ERR_IO with a message in errs.
 */
int sl_declarative_load_file(const char *path, json_t **out, sl_errors_t *errs);

/* The same for text already in memory. */
int sl_declarative_load_string(const char *text, size_t len, json_t **out, sl_errors_t *errs);

#endif
