/*
 * The data plane's plugin engine.
 *
 * A plugin is a descriptor (common/plugins.h: name, PRIORITY, VERSION,
 * phases, config schema) and an implementation. Native implementations are
 * sl_native_plugin_t tables, one per bundled plugin this data plane runs
 * (sl_native_plugins); external plugins arrive through the plugin-server
 * bridge with the same shape.
 *
 * A configuration generation holds every enabled plugin instance with its
 * config read once by the implementation's configure(), and one chain per
 * route: the plugins that can apply to it, ordered as Kong orders them
 * (PRIORITY descending, then name descending), each with its best instance
 * by route and service scope. Consumer-scoped instances are resolved while
 * the access phase runs, at the moment each plugin is reached, so that a
 * consumer authenticated by a higher-priority plugin selects them (Kong's
 * precedence: route+service+consumer, route+consumer, service+consumer,
 * route+service, consumer, route, service, global).
 *
 * Phases, as Kong: access (the collecting phase: the instance chosen for
 * each plugin is remembered for the later phases), response and body_filter
 * (the upstream response held whole), header_filter (before the response
 * head goes out, also for responses a plugin produced), log
 * (after the response was handed to the client; never delays it). A plugin
 * that calls sl_pdk_response_exit in access ends the phase: later access
 * handlers are skipped but their plugins are still collected, so that the
 * header_filter and log of every plugin that applies run on the answer.
 *
 * Handlers run on worker threads, concurrently, with a read-only conf.
 * Handlers of rewrite, access, response and log that wait (a network call,
 * a plugin server) return SL_PLUGIN_SUSPEND and resume the request later
 * from the worker's event loop.
 */
#ifndef SL_PLUGIN_H
#define SL_PLUGIN_H

#include "plugins.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sl_pdk_s sl_pdk_t; /* one request as a plugin sees it (pdk.h) */

/* What an access handler returns. */
enum {
    SL_PLUGIN_CONTINUE = 0, /* go on with the next plugin */
    SL_PLUGIN_EXIT = 1,     /* sl_pdk_response_exit was called: answer now */
    SL_PLUGIN_SUSPEND = 2,  /* the handler waits: sl_pdk_resume follows */
};

typedef struct sl_native_plugin_s {
    const char *name; /* the bundled descriptor of the same name gives the rest */
    /*
     * Reads one instance's config (already validated against the plugin's
     * schema, defaults filled) into the plugin's own form. Returns NULL with
     * a message naming the field in err when the config cannot be used.
     * Runs on the thread that builds a generation; the result is read-only
     * afterwards and shared by every worker. `instance_id` is the plugins
     * entity's id (stable across generations: state such as counters may
     * be keyed by it).
     */
    void *(*configure)(const json_t *config, const char *instance_id, char *err, size_t errlen);
    /* Instead of configure, for implementations that serve several plugins
     * (the plugin-server bridge): the descriptor and the whole plugins
     * entity (config, scope, instance_name). */
    void *(*configure_entity)(const sl_plugin_info_t *info, const json_t *entity, char *err,
                              size_t errlen);
    void (*dispose)(void *conf);
    /* Optional: whether an instance's access handler reads the request
     * body (sl_pdk_request_get_raw_body). When one of a route's instances
     * does, the proxy reads the whole body (up to client_body_buffer_size)
     * before the access phase. */
    bool (*wants_body)(const void *conf);
    /* With wants_body: the body is wanted only when it fits in
     * client_body_buffer_size; a larger one streams to the upstream unread
     * and sl_pdk_request_get_raw_body says it did not fit (Kong's
     * get_raw_body; external plugins). Without: a larger body gets 413. */
    bool body_if_fits;
    /* Phase handlers; NULL where the plugin has none. Those returning int
     * give SL_PLUGIN_CONTINUE, or SL_PLUGIN_SUSPEND after sl_pdk_suspend
     * (the phase goes on once sl_pdk_resume is called); access may also
     * give SL_PLUGIN_EXIT. rewrite runs for global instances only, before
     * the router (as Kong). */
    int (*certificate)(sl_pdk_t *pdk, void *conf); /* TLS handshakes, global only */
    int (*rewrite)(sl_pdk_t *pdk, void *conf);
    int (*access)(sl_pdk_t *pdk, void *conf);
    void (*header_filter)(sl_pdk_t *pdk, void *conf);
    /* The whole upstream response, before anything of it reaches the
     * client (Kong's response phase), and the whole body about to be sent
     * (body_filter, called once with the complete body: what Kong's
     * plugins do when they buffer every chunk). Either makes the proxy
     * buffer the upstream response (up to response_buffer_size) on the
     * routes where an instance wants it: */
    int (*response)(sl_pdk_t *pdk, void *conf);
    void (*body_filter)(sl_pdk_t *pdk, void *conf);
    /* Optional: whether an instance needs response/body_filter (NULL: it
     * does whenever the plugin has either handler). */
    bool (*wants_response_body)(const void *conf);
    int (*log)(sl_pdk_t *pdk, void *conf);
    /* Optional: called on each worker thread once its event loop has ended
     * (the loop's event_base is still valid): close the worker's
     * connections, flush its queues. */
    void (*worker_exit)(void);
} sl_native_plugin_t;

/* The native implementation of a plugin, or NULL (plugins/registry.c). */
const sl_native_plugin_t *sl_native_plugin(const char *name);
/* The implementation of a plugin: native, or the bridge's for an external
 * plugin this data plane can run; NULL when it has none. */
const sl_native_plugin_t *sl_plugin_impl(const sl_plugin_info_t *info);
/* The bridge's implementation of every external plugin (external.c). */
extern const sl_native_plugin_t sl_external_plugin;
size_t sl_native_plugin_count(void);
/* Calls every implementation's worker_exit (on the worker's thread). */
void sl_native_plugins_worker_exit(void);

/* One configured plugin instance in a generation. */
typedef struct sl_plugin_inst_s {
    const char *id;                                  /* borrowed from the generation's document */
    const sl_plugin_info_t *info;                    /* the descriptor */
    const sl_native_plugin_t *impl;                  /* the implementation */
    void *conf;                                      /* owned: impl->configure's result */
    const char *route_id, *service_id, *consumer_id; /* scope; NULL: any */
} sl_plugin_inst_t;

#endif
