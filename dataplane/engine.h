/*
 * The plugin engine's interface to the generation builder (gen.c) and the
 * proxy (proxy.c). Plugins themselves see plugin.h and pdk.h only.
 */
#ifndef SL_ENGINE_H
#define SL_ENGINE_H

#include "arena.h"
#include "errors.h"
#include "gen.h"
#include "plugin.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Reads doc's consumers, credentials and plugins into g and gives every
 * served route its chain (g->routes must be built). Plugins must be enabled
 * (the `plugins` property) and have a native implementation; each
 * instance's config goes through its configure(). Returns SL_OK or
 * SL_ERR_INVALID with every problem in errs ("plugins[3].config...: ...").
 */
int sl_engine_build(sl_gen_t *g, json_t *doc, sl_errors_t *errs);
void sl_engine_free(struct sl_gen_plugins_s *gp);

/* The chain of the plugins that apply without a route (global and
 * consumer-only instances), or NULL when there are none. */
const struct sl_chain_s *sl_engine_global_chain(const sl_gen_t *g);

/* Lookups behind the PDK (NULL when not found). */
const sl_consumer_t *sl_engine_consumer(const sl_gen_t *g, const char *id_or_username);
const sl_credential_t *sl_engine_credential(const sl_gen_t *g, const char *table, const char *key);

/* Which phases some plugin of the chain implements (SL_PHASE_* bits). */
unsigned sl_engine_chain_phases(const struct sl_chain_s *chain);
/* Whether an instance of the chain reads the request body in access, and
 * whether one needs the upstream response whole (response, body_filter). */
bool sl_engine_chain_wants_body(const struct sl_chain_s *chain);
/* Whether that instance needs the body whatever its size (else only when it
 * fits in client_body_buffer_size: sl_native_plugin_t.body_if_fits). */
bool sl_engine_chain_body_required(const struct sl_chain_s *chain);
bool sl_engine_chain_wants_response_body(const struct sl_chain_s *chain);

/* Introspection (tests): a chain's length, its i-th plugin, and the
 * instance of that plugin that applies to the request's route, service and
 * consumer (NULL: none). */
size_t sl_engine_chain_len(const struct sl_chain_s *chain);
const sl_plugin_info_t *sl_engine_chain_plugin(const struct sl_chain_s *chain, size_t i);
const sl_plugin_inst_t *sl_engine_resolve(sl_pdk_t *p, const struct sl_chain_s *chain, size_t i);

/* A request's progress through its chain. */
typedef struct sl_plugin_run_s {
    const struct sl_chain_s *chain;
    size_t next;                  /* access: the next chain entry to consider */
    const sl_plugin_inst_t **ran; /* the collected instances, in chain order */
    void **slots;                 /* their kong.ctx.plugin pointers */
    size_t nran;
    const sl_plugin_inst_t *current; /* the instance whose handler is running */
    void **current_slot;
    bool exited;    /* a plugin answered in access */
    unsigned phase; /* the waiting phase being run (SL_PHASE_*) */
    size_t pos;     /* its next collected plugin */
} sl_plugin_run_t;

/* Prepares run for chain (which may be NULL: nothing runs). */
void sl_engine_run_init(sl_plugin_run_t *run, const struct sl_chain_s *chain, sl_arena_t *arena);

/*
 * Runs the access phase from where it stopped. `scheme` is SL_PROTO_HTTP or
 * SL_PROTO_HTTPS (an instance whose protocols lack it does not run).
 * Returns SL_PLUGIN_CONTINUE when every plugin ran (proxy the request),
 * SL_PLUGIN_EXIT when one answered, SL_PLUGIN_SUSPEND when one waits.
 */
int sl_engine_access(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme);

/* Continues the access phase after a suspended handler finished with rc. */
int sl_engine_access_resumed(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme, int rc);

/*
 * The phases whose handlers may wait (SL_PLUGIN_SUSPEND), over the
 * collected plugins in chain order: each returns SL_PLUGIN_CONTINUE once
 * every handler ran, or SL_PLUGIN_SUSPEND when one waits; when it resumes
 * (sl_pdk_resume), sl_engine_resumed carries on with the same phase and
 * returns the same way.
 *   response  the response handlers, then the body_filter handlers, over
 *             a response held whole
 *   log       after the response was handed to the client
 *   rewrite   before the router; run is the global chain's
 *   certificate  during a TLS handshake, before any request (the
 *             handle has the connection only); the global chain's
 */
int sl_engine_response(sl_pdk_t *p, sl_plugin_run_t *run);
int sl_engine_log(sl_pdk_t *p, sl_plugin_run_t *run);
int sl_engine_rewrite(sl_pdk_t *p, sl_plugin_run_t *run);
int sl_engine_certificate(sl_pdk_t *p, sl_plugin_run_t *run);
int sl_engine_resumed(sl_pdk_t *p, sl_plugin_run_t *run, int rc);
/* Only the body_filter handlers (over a body the gateway or a plugin
 * produced). */
void sl_engine_body_filter(sl_pdk_t *p, sl_plugin_run_t *run);

/* header_filter of the collected plugins, in chain order. */
void sl_engine_header_filter(sl_pdk_t *p, sl_plugin_run_t *run);

/* Collects the plugins of run's chain that apply without access having run
 * (for a response the gateway produced before routing: global instances). */
void sl_engine_collect_global(sl_pdk_t *p, sl_plugin_run_t *run, unsigned scheme);

/* The name of the plugin whose handler is running (for log prefixes). */
const char *sl_engine_current_name(const sl_plugin_run_t *run);

#endif
