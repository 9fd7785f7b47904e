/*
 * Kong 3.x's core entities and the credentials of the bundled auth plugins,
 * as schemas for the schema engine: services, routes, consumers, plugins,
 * upstreams, targets, certificates, snis, ca_certificates,
 * keyauth_credentials, basicauth_credentials, jwt_secrets and acls. Field
 * names, defaults, rules and messages follow Kong; docs/declarative.md lists
 * them.
 */
#ifndef SL_ENTITIES_H
#define SL_ENTITIES_H

#include "schema.h"

#include <stdbool.h>

/* Every entity schema, in dependency order (a table comes after the tables
 * it references), NULL-terminated. */
extern const sl_schema_t *const sl_entity_schemas[];

/* The schema of a table ("services", "keyauth_credentials", ...), or NULL. */
const sl_schema_t *sl_entity_schema(const char *name);

/* The field that names an entity in Admin API URLs and declarative
 * references (services/routes/upstreams/snis: "name", consumers: "username",
 * plugins: "instance_name", targets: "target", keyauth/jwt: "key",
 * basicauth: "username", acls: "group"), or NULL. */
const char *sl_entity_endpoint_key(const sl_schema_t *schema);

/* True when the endpoint key is unique within its table, so that it can
 * stand for the entity in a reference (targets' and acls' are not). */
bool sl_entity_endpoint_key_unique(const sl_schema_t *schema);

/* Plugin configuration schemas arrive later: a lookup registered here turns
 * a plugin name into its subschema (a schema whose fields override the
 * plugin entity's, typically "config" and "protocols"). NULL for a name
 * means "plugin 'x' not enabled". With no lookup registered (the default)
 * any plugin name is accepted and its config is kept as given. Not
 * thread-safe: register before validating. */
typedef const sl_schema_t *(*sl_plugin_lookup_cb)(const char *name);
void sl_entities_set_plugin_lookup(sl_plugin_lookup_cb lookup);

/*
 * Write-time transformations Kong applies after validation, for an entity
 * that passed sl_schema_validate and whose foreign keys are final:
 *   basicauth_credentials: password = hex(sha1(password .. consumer.id)),
 *     only when hash_passwords (the declarative `_transform`);
 *   ca_certificates: cert_digest = hex(sha256(DER)) when missing or
 *     hash_passwords;
 *   targets: target normalised to host:port (port 8000 when absent, IPv4
 *     without leading zeros, IPv6 expanded in brackets).
 * Other tables are left alone.
 */
void sl_entity_transform(const sl_schema_t *schema, json_t *entity, bool hash_passwords);

/* Normalises a route path the way Kong's kong.tools.uri.normalize does
 * (percent-decoding unreserved characters, removing dot segments, merging
 * slashes when merge_slashes). Caller frees. */
char *sl_route_path_normalize(const char *path, bool merge_slashes);

#endif
