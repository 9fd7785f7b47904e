/*
 * Plugin descriptors and the registry of plugins a node knows.
 *
 * A descriptor is what Kong calls a plugin's handler and schema together:
 * name, PRIORITY, VERSION, the phases it implements and the subschema that
 * the plugins entity takes for it. The bundled plugins' descriptors are
 * static data (plugin_schemas.c); external plugins' descriptors are compiled
 * at start-up from their plugin servers' `-dump` output (or, on a control
 * plane, from what data planes report).
 *
 * The registry holds the enabled set, chosen by the `plugins` property as in
 * Kong: a comma-separated list in which `bundled` stands for every bundled
 * plugin and `off` for none. It is filled at start-up on the main thread and
 * read-only afterwards, except on a control plane, whose single thread may
 * add plugins that data planes report.
 */
#ifndef SL_PLUGINS_H
#define SL_PLUGINS_H

#include "errors.h"
#include "schema-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The phases a plugin implements (sl_plugin_info_t.phases). */
enum {
    SL_PHASE_CERTIFICATE = 1u << 0,
    SL_PHASE_REWRITE = 1u << 1,
    SL_PHASE_ACCESS = 1u << 2,
    SL_PHASE_HEADER_FILTER = 1u << 3,
    SL_PHASE_BODY_FILTER = 1u << 4,
    SL_PHASE_RESPONSE = 1u << 5,
    SL_PHASE_LOG = 1u << 6,
    SL_PHASE_PREREAD = 1u << 7,
};

typedef struct sl_plugin_info_s {
    const char *name;
    const char *version;
    int priority;
    unsigned phases;
    /* The subschema of the plugins entity for this plugin: its fields
     * replace the entity's fields of the same name (always "config", a
     * record; often "protocols", and "consumer"/"route"/"service" with
     * SL_F_EQ_NULL for a scope the plugin forbids), its checks are added. */
    const sl_schema_t *schema;
    /* NULL for a bundled plugin; the plugin server's name otherwise. */
    const char *server;
} sl_plugin_info_t;

/* Every bundled plugin, sorted by name, NULL-terminated. */
extern const sl_plugin_info_t *const sl_bundled_plugins[];

/* A bundled plugin by name, or NULL. */
const sl_plugin_info_t *sl_bundled_plugin(const char *name);

/* The version bundled plugins report (Kong reports its own version). */
#define SL_BUNDLED_PLUGIN_VERSION "3.10.0"

/*
 * Sets the enabled set from a `plugins` property value ("bundled",
 * "bundled,my-plugin", "off", "key-auth,acl"). Names that are neither
 * bundled nor registered external plugins are errors ("plugins: 'x' is not
 * a bundled plugin and no plugin server provides it"). Returns SL_OK or
 * SL_ERR_INVALID. Replaces any earlier set.
 */
int sl_plugins_enable(const char *spec, sl_errors_t *errs);

/* Limits what sl_plugins_enable accepts to the plugins fn says this node can
 * run ("bundled" then means the runnable bundled ones); NULL lifts it. */
void sl_plugins_set_runnable(bool (*fn)(const sl_plugin_info_t *p));

/*
 * Registers the plugins of one plugin server from its `-dump` output (either
 * shape: {"Protocol","Plugins":[...]} or a bare array). Each entry's Name,
 * Priority, Version, Phases and Schema are checked and its schema compiled;
 * a name already registered is an error. *protocol (when not NULL) receives
 * "ProtoBuf:1" or "MsgPack:1". Must run before sl_plugins_enable for the
 * names to be enabled. Returns SL_OK or SL_ERR_INVALID.
 */
int sl_plugins_add_dump(const char *server, const char *text, size_t len, const char **protocol,
                        sl_errors_t *errs);

/*
 * Registers (or replaces) one external plugin described as JSON
 * {"name","version","priority","phases":[...],"schema":{...}} (the shape
 * data planes report to a control plane) and enables it. Returns SL_OK or
 * SL_ERR_INVALID with the reason in errs.
 */
int sl_plugins_add_reported(const char *server, const json_t *desc, sl_errors_t *errs);

/* The key of a plugin server's setting: pluginserver_<name>_<what>, with
 * the name lower-cased and '-' turned into '_' as Kong does. */
void sl_pluginserver_key(const char *server, const char *what, char *out, size_t size);

/* The servers of `pluginserver_names`, lower-cased ("none": none); free
 * with sl_conf_split_free. */
struct sl_conf_s;
size_t sl_pluginserver_names(const struct sl_conf_s *conf, char ***names);

/*
 * Runs one server's `pluginserver_<name>_query_cmd` (default:
 * `/usr/local/bin/<name> -dump` when that file exists) and registers what
 * it dumps (sl_plugins_add_dump, *protocol as there). Blocks for 10 s at
 * most. Returns SL_OK or SL_ERR_INVALID with the reason in errs.
 */
int sl_pluginserver_query(const struct sl_conf_s *conf, const char *server, const char **protocol,
                          sl_errors_t *errs);

/*
 * The start-up sequence for a node's configuration: for each server of
 * `pluginserver_names`, run its `pluginserver_<name>_query_cmd` (default:
 * `/usr/local/bin/<name> -dump` when that file exists) and register what it
 * dumps; then enable the `plugins` list and install the entity lookup.
 * Blocks while the query commands run (10 s each at most). Returns SL_OK or
 * SL_ERR_INVALID with every problem in errs.
 */
int sl_plugins_configure(const struct sl_conf_s *conf, sl_errors_t *errs);

/* An enabled plugin by name, or NULL. */
const sl_plugin_info_t *sl_plugins_find(const char *name);

/* The enabled plugins, sorted by name. */
size_t sl_plugins_count(void);
const sl_plugin_info_t *sl_plugins_at(size_t i);

/* The enabled set as the `plugins` list of names ("bundled" expanded). */
json_t *sl_plugins_enabled_names(void);

/* A descriptor as JSON {"name","version","priority","phases","schema"}. */
json_t *sl_plugin_info_json(const sl_plugin_info_t *p);

/* Phase names <-> bits ("access" <-> SL_PHASE_ACCESS). */
const char *sl_phase_name(unsigned bit);
unsigned sl_phase_bit(const char *name);

/* Makes the entity schemas validate plugins against the enabled set
 * (sl_entities_set_plugin_lookup with sl_plugins_find's schemas). */
void sl_plugins_install_lookup(void);

/* Frees everything registered (external descriptors, the enabled set). */
void sl_plugins_reset(void);

#endif
