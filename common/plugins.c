/*
 * plugins.c owns the registry: the external plugins compiled from dumps or
 * reports, and the enabled set the plugins entity validates against. The
 * bundled descriptors are static (plugin_schemas.c); external ones are heap
 * records that own their strings, their compiled schema and the schema's JSON
 * (kept to report it on, losslessly).
 */
#include "plugins.h"
#include "conf.h"
#include "proc.h"
#include "entities.h"
#include "schema_json.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct ext_plugin_s {
    sl_plugin_info_t info; /* first: the enabled set points here */
    json_t *schema_json;
} ext_plugin_t;

static ext_plugin_t **externals;
static size_t n_externals;
static const sl_plugin_info_t **enabled;
static size_t n_enabled;

static const char *const phase_names[] = {"certificate", "rewrite",  "access", "header_filter",
                                          "body_filter", "response", "log",    "preread"};

const char *sl_phase_name(unsigned bit)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(phase_names); i++)
        if (bit == 1u << i)
            return phase_names[i];
    return NULL;
}

unsigned sl_phase_bit(const char *name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(phase_names); i++)
        if (!strcmp(name, phase_names[i]))
            return 1u << i;
    return 0;
}

/* Plugins that a special build links in (the benchmark's native twin of a
 * Go example): enabled by name only, never by "bundled". */
extern const sl_plugin_info_t *const sl_extra_plugins[] __attribute__((weak));

const sl_plugin_info_t *sl_bundled_plugin(const char *name)
{
    for (size_t i = 0; sl_bundled_plugins[i]; i++)
        if (!strcmp(sl_bundled_plugins[i]->name, name))
            return sl_bundled_plugins[i];
    for (size_t i = 0; sl_extra_plugins && sl_extra_plugins[i]; i++)
        if (!strcmp(sl_extra_plugins[i]->name, name))
            return sl_extra_plugins[i];
    return NULL;
}

static ext_plugin_t *find_external(const char *name)
{
    for (size_t i = 0; i < n_externals; i++)
        if (!strcmp(externals[i]->info.name, name))
            return externals[i];
    return NULL;
}

static void free_external(ext_plugin_t *e)
{
    free((char *)e->info.name);
    free((char *)e->info.version);
    free((char *)e->info.server);
    sl_schema_compiled_free((sl_schema_t *)e->info.schema);
    json_decref(e->schema_json);
    free(e);
}

/* ------------------------------------------------------------------------ */
/* The enabled set                                                           */

static int cmp_info(const void *a, const void *b)
{
    return strcmp((*(const sl_plugin_info_t *const *)a)->name,
                  (*(const sl_plugin_info_t *const *)b)->name);
}

static bool is_enabled(const sl_plugin_info_t *p)
{
    for (size_t i = 0; i < n_enabled; i++)
        if (enabled[i] == p)
            return true;
    return false;
}

/* Which plugins this node can run (NULL: all). */
static bool (*runnable)(const sl_plugin_info_t *p);

void sl_plugins_set_runnable(bool (*fn)(const sl_plugin_info_t *p))
{
    runnable = fn;
}

static void enable_one(const sl_plugin_info_t *p)
{
    if (is_enabled(p))
        return;
    enabled = sl_xrealloc(enabled, (n_enabled + 1) * sizeof(*enabled));
    enabled[n_enabled++] = p;
    qsort(enabled, n_enabled, sizeof(*enabled), cmp_info);
}

int sl_plugins_enable(const char *spec, sl_errors_t *errs)
{
    char **items;
    size_t n = sl_conf_split(spec, &items);
    size_t before = errs->n;
    free(enabled);
    enabled = NULL;
    n_enabled = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(items[i], "off")) {
            if (n > 1)
                sl_errors_add(errs, "plugins: 'off' cannot be combined with other names");
            continue;
        }
        if (!strcmp(items[i], "bundled")) {
            for (size_t b = 0; sl_bundled_plugins[b]; b++)
                if (!runnable || runnable(sl_bundled_plugins[b]))
                    enable_one(sl_bundled_plugins[b]);
            continue;
        }
        const sl_plugin_info_t *p = sl_bundled_plugin(items[i]);
        ext_plugin_t *e = p ? NULL : find_external(items[i]);
        if (e)
            p = &e->info;
        if (!p) {
            sl_errors_add(errs,
                          "plugins: '%s' is neither a bundled plugin nor provided by a plugin "
                          "server; check the name or add its server to 'pluginserver_names'",
                          items[i]);
            continue;
        }
        if (runnable && !runnable(p)) {
            sl_errors_add(errs,
                          "plugins: '%s' cannot run on this node yet; remove it from 'plugins'",
                          items[i]);
            continue;
        }
        enable_one(p);
    }
    sl_conf_split_free(items, n);
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}

const sl_plugin_info_t *sl_plugins_find(const char *name)
{
    size_t lo = 0, hi = n_enabled;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(enabled[mid]->name, name);
        if (c == 0)
            return enabled[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t sl_plugins_count(void)
{
    return n_enabled;
}

const sl_plugin_info_t *sl_plugins_at(size_t i)
{
    return i < n_enabled ? enabled[i] : NULL;
}

json_t *sl_plugins_enabled_names(void)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n_enabled; i++)
        json_array_append_new(a, json_string(enabled[i]->name));
    return a;
}

static const sl_schema_t *lookup_schema(const char *name)
{
    const sl_plugin_info_t *p = sl_plugins_find(name);
    return p ? p->schema : NULL;
}

void sl_plugins_install_lookup(void)
{
    sl_entities_set_plugin_lookup(lookup_schema);
}

void sl_plugins_reset(void)
{
    free(enabled);
    enabled = NULL;
    n_enabled = 0;
    for (size_t i = 0; i < n_externals; i++)
        free_external(externals[i]);
    free(externals);
    externals = NULL;
    n_externals = 0;
}

/* ------------------------------------------------------------------------ */
/* External plugins                                                          */

/* Kong's plugin names: what a URL segment and a config key can carry. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

/* The keys of one plugin description: a dump's capitalised ones or a
 * report's lower-case ones. */
typedef struct desc_keys_s {
    const char *name, *version, *priority, *phases, *schema;
} desc_keys_t;

static const desc_keys_t dump_keys = {"Name", "Version", "Priority", "Phases", "Schema"};
static const desc_keys_t report_keys = {"name", "version", "priority", "phases", "schema"};

/* Checks and compiles one description; NULL with errors under path. */
static ext_plugin_t *compile_desc(const char *server, const json_t *d, const desc_keys_t *k,
                                  const char *path, sl_errors_t *errs)
{
    size_t before = errs->n;
    if (!json_is_object(d)) {
        sl_errors_add(errs, "%s: expected an object describing a plugin", path);
        return NULL;
    }
    const char *name = json_string_value(json_object_get(d, k->name));
    if (!name || !valid_name(name))
        sl_errors_add(errs, "%s.%s: expected a plugin name of 1 to 100 letters, digits, '-', '_'",
                      path, k->name);
    const json_t *prio = json_object_get(d, k->priority);
    if (!json_is_integer(prio) || json_integer_value(prio) < -2147483648LL ||
        json_integer_value(prio) > 2147483647LL)
        sl_errors_add(errs, "%s.%s: expected an integer", path, k->priority);
    const json_t *ver = json_object_get(d, k->version);
    const char *version = json_string_value(ver);
    if (ver && !json_is_null(ver) && (!version || strlen(version) > 64))
        sl_errors_add(errs, "%s.%s: expected a version string such as 1.0.0", path, k->version);
    unsigned phases = 0;
    const json_t *ph = json_object_get(d, k->phases);
    if (ph && !json_is_array(ph))
        sl_errors_add(errs, "%s.%s: expected an array of phase names", path, k->phases);
    for (size_t i = 0; i < json_array_size(ph); i++) {
        const char *p = json_string_value(json_array_get(ph, i));
        unsigned bit = p ? sl_phase_bit(p) : 0;
        if (!bit)
            sl_errors_add(errs,
                          "%s.%s[%zu]: unknown phase; expected certificate, rewrite, access, "
                          "response, preread or log",
                          path, k->phases, i);
        phases |= bit;
    }
    const json_t *schema = json_object_get(d, k->schema);
    char spath[256];
    snprintf(spath, sizeof(spath), "%s.%s", path, k->schema);
    sl_schema_t *compiled = NULL;
    if (errs->n == before) {
        compiled = sl_schema_compile(schema, spath, errs);
        sl_field_t *cfg = compiled ? (sl_field_t *)sl_schema_field(compiled, NULL, "config") : NULL;
        if (compiled && (!cfg || cfg->type != SL_FT_RECORD)) {
            sl_errors_add(errs, "%s: expected a 'config' field of type record", spath);
        } else if (cfg) {
            /* A plugin's config is always there, with its defaults, as in
             * Kong's plugin entity. */
            cfg->flags |= SL_F_REQUIRED;
            if (cfg->def == SL_DEF_NONE)
                cfg->def = SL_DEF_RECORD;
        }
    }
    if (errs->n > before) {
        sl_schema_compiled_free(compiled);
        return NULL;
    }
    ext_plugin_t *e = sl_xcalloc(1, sizeof(*e));
    e->info.name = sl_xstrdup(name);
    e->info.version = sl_xstrdup(version ? version : "0.0.0");
    e->info.priority = (int)json_integer_value(prio);
    e->info.phases = phases;
    e->info.server = sl_xstrdup(server);
    e->info.schema = compiled;
    e->schema_json = json_deep_copy(schema);
    return e;
}

static void add_external(ext_plugin_t *e)
{
    externals = sl_xrealloc(externals, (n_externals + 1) * sizeof(*externals));
    externals[n_externals++] = e;
}

int sl_plugins_add_dump(const char *server, const char *text, size_t len, const char **protocol,
                        sl_errors_t *errs)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        sl_errors_add(errs, "pluginserver %s: the plugin info is not JSON (%s at line %d)", server,
                      jerr.text, jerr.line);
        return SL_ERR_INVALID;
    }
    const json_t *list = doc;
    const char *proto = "MsgPack:1";
    if (json_is_object(doc)) {
        proto = json_string_value(json_object_get(doc, "Protocol"));
        list = json_object_get(doc, "Plugins");
        if (!proto)
            proto = "MsgPack:1";
    }
    size_t before = errs->n;
    if (strcmp(proto, "ProtoBuf:1") != 0 && strcmp(proto, "MsgPack:1") != 0)
        sl_errors_add(errs, "pluginserver %s: Protocol '%.40s' is not ProtoBuf:1 or MsgPack:1",
                      server, proto);
    else if (!json_is_array(list) || json_array_size(list) == 0)
        sl_errors_add(errs, "pluginserver %s: the plugin info lists no plugins", server);
    ext_plugin_t **fresh = sl_xcalloc(json_array_size(list) + 1, sizeof(*fresh));
    size_t nfresh = 0;
    for (size_t i = 0; errs->n == before && i < json_array_size(list); i++) {
        char path[160];
        snprintf(path, sizeof(path), "pluginserver %s: Plugins[%zu]", server, i);
        ext_plugin_t *e = compile_desc(server, json_array_get(list, i), &dump_keys, path, errs);
        if (!e)
            break;
        bool dup = sl_bundled_plugin(e->info.name) || find_external(e->info.name);
        for (size_t j = 0; j < nfresh; j++)
            dup = dup || !strcmp(fresh[j]->info.name, e->info.name);
        if (dup) {
            sl_errors_add(errs, "%s: a plugin named '%s' is already known", path, e->info.name);
            free_external(e);
            break;
        }
        fresh[nfresh++] = e;
    }
    if (errs->n > before) {
        for (size_t j = 0; j < nfresh; j++)
            free_external(fresh[j]);
    } else {
        for (size_t j = 0; j < nfresh; j++)
            add_external(fresh[j]);
        if (protocol)
            *protocol = !strcmp(proto, "ProtoBuf:1") ? "ProtoBuf:1" : "MsgPack:1";
    }
    free(fresh);
    json_decref(doc);
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}

int sl_plugins_add_reported(const char *server, const json_t *desc, sl_errors_t *errs)
{
    ext_plugin_t *e = compile_desc(server, desc, &report_keys, "plugin", errs);
    if (!e)
        return SL_ERR_INVALID;
    if (sl_bundled_plugin(e->info.name)) {
        free_external(e);
        return SL_OK; /* the control plane's own definition wins */
    }
    ext_plugin_t *old = find_external(e->info.name);
    if (old) {
        /* Descriptors are pointed at by the enabled set: swap the contents
         * in place so those pointers stay valid. */
        ext_plugin_t tmp = *old;
        *old = *e;
        *e = tmp;
        free_external(e);
        return SL_OK;
    }
    add_external(e);
    enable_one(&e->info);
    return SL_OK;
}

json_t *sl_plugin_info_json(const sl_plugin_info_t *p)
{
    json_t *phases = json_array();
    for (unsigned b = 1; b <= SL_PHASE_PREREAD; b <<= 1)
        if (p->phases & b)
            json_array_append_new(phases, json_string(sl_phase_name(b)));
    const ext_plugin_t *e = p->server ? (const ext_plugin_t *)p : NULL;
    json_t *schema =
        e && e->schema_json ? json_deep_copy(e->schema_json) : sl_schema_json(p->schema);
    if (!json_object_get(schema, "name"))
        json_object_set_new(schema, "name", json_string(p->name));
    return json_pack("{s:s,s:s,s:i,s:o,s:o}", "name", p->name, "version", p->version, "priority",
                     p->priority, "phases", phases, "schema", schema);
}

/* ------------------------------------------------------------------------ */
/* Start-up                                                                  */

#define QUERY_MAX_BYTES (4u << 20)
#define QUERY_TIMEOUT_MS 10000

void sl_pluginserver_key(const char *server, const char *what, char *out, size_t size)
{
    int n = snprintf(out, size, "pluginserver_%s_%s", server, what);
    for (int i = 0; i < n && (size_t)i < size; i++) {
        out[i] = (char)tolower((unsigned char)out[i]);
        if (out[i] == '-')
            out[i] = '_';
    }
}

int sl_pluginserver_query(const struct sl_conf_s *conf, const char *server, const char **protocol,
                          sl_errors_t *errs)
{
    char key[256], what[300], dflt[300];
    sl_pluginserver_key(server, "query_cmd", key, sizeof(key));
    const char *cmd = sl_conf_get(conf, key);
    if (!cmd) {
        snprintf(dflt, sizeof(dflt), "/usr/local/bin/%s", server);
        if (access(dflt, X_OK) != 0) {
            sl_errors_add(errs,
                          "%s: query command undefined for pluginserver %s; set it to the "
                          "command that prints the server's plugin info (e.g. '<binary> "
                          "-dump')",
                          key, server);
            return SL_ERR_INVALID;
        }
        strcat(dflt, " -dump");
        cmd = dflt;
    }
    snprintf(what, sizeof(what), "pluginserver %s", server);
    char *out;
    size_t len;
    if (sl_run_capture(what, cmd, QUERY_MAX_BYTES, QUERY_TIMEOUT_MS, &out, &len, errs) != SL_OK)
        return SL_ERR_INVALID;
    int rc = sl_plugins_add_dump(server, out, len, protocol, errs);
    free(out);
    return rc;
}

size_t sl_pluginserver_names(const struct sl_conf_s *conf, char ***names)
{
    size_t n = sl_conf_split(sl_conf_get(conf, "pluginserver_names"), names);
    if (n == 1 && !strcasecmp((*names)[0], "none")) {
        sl_conf_split_free(*names, n);
        *names = NULL;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        for (char *c = (*names)[i]; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    return n;
}

int sl_plugins_configure(const struct sl_conf_s *conf, sl_errors_t *errs)
{
    size_t before = errs->n;
    char **names;
    size_t n = sl_pluginserver_names(conf, &names);
    for (size_t i = 0; i < n; i++)
        sl_pluginserver_query(conf, names[i], NULL, errs);
    sl_conf_split_free(names, n);
    if (errs->n == before)
        sl_plugins_enable(sl_conf_get(conf, "plugins"), errs);
    sl_plugins_install_lookup();
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}
