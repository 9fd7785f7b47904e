/*
 * The plugin-server bridge: external plugins (Kong's go-pdk servers over
 * ProtoBuf:1; Kong's Python and JavaScript PDK servers over MsgPack:1) run
 * out of process and are called over Unix sockets for each phase
 * (reference: plugin-protocol.md).
 *
 * Three parts, by thread:
 *
 *  - Configuration (main thread, at start-up): for each server of
 *    `pluginserver_names`, its query command's `-dump` output registers its
 *    plugins (common/plugins.h) and its settings are read:
 *      pluginserver_<name>_socket      default <prefix>/<name>.socket
 *      pluginserver_<name>_start_cmd   default /usr/local/bin/<name> when
 *                                      that file exists; otherwise the
 *                                      server is managed externally (only
 *                                      connected to)
 *      pluginserver_<name>_query_cmd   default /usr/local/bin/<name> -dump
 *      pluginserver_<name>_timeout     each wait for the server (connect,
 *                                      each frame of an event) before the
 *                                      event fails; default 60s (Kong's)
 *      pluginserver_<name>_fail_open   on: a plugin whose server cannot be
 *                                      reached, stalls or fails an event
 *                                      is skipped (logged); off (default):
 *                                      the request gets a 500
 *      pluginserver_<name>_max_frame   largest frame accepted; default 16m
 *      pluginserver_<name>_connections connections each worker opens at
 *                                      most; events beyond wait for one
 *                                      (within the timeout); default 256
 *    (<name> lower-cased, '-' as '_'; every key also as SLUICE_<KEY>).
 *
 *  - Supervisor (main thread's event loop): starts each server that has a
 *    start command (through /bin/sh, as Kong's "exec <cmd>"), logs its
 *    output line by line prefixed "[<name>:<pid>]", restarts it when it
 *    exits (at most once a second; not after exit status 127, "command not
 *    found"), and stops it with SIGTERM (then SIGKILL) at shutdown. Servers
 *    also get SIGTERM when the data plane dies (PR_SET_PDEATHSIG), which
 *    go-pdk's server does not watch for itself.
 *
 *  - Events (worker threads): each worker keeps its own pool of
 *    non-blocking connections per server, one call in flight on each, and
 *    its own cache of started instances. sl_bridge_event starts an
 *    instance when needed (Kong's start_instance with __seq__ and
 *    __plugin_id), runs the event, hands every PDK call the server makes to
 *    ops->call, and reports the end through ops->done, always later, from
 *    the worker's event loop.
 *
 * Failure handling, beyond Kong: every wait is bounded by the server's
 * timeout and every frame by max_frame (checked before it is buffered); a
 * connection that breaks before any call of the event changed the request
 * (no SL_PB_M_WRITES call was made) drops the worker's instances of that
 * server, starts the instance again and re-runs the event once, waiting for
 * a restarting server to accept connections (up to a second); otherwise the
 * event fails and the server's fail_open policy decides. A connection that
 * saw an error, a timeout or kong.response.exit is closed, never reused.
 */
#ifndef SL_BRIDGE_H
#define SL_BRIDGE_H

#include "conf.h"
#include "errors.h"
#include "pb_codec.h"
#include "plugins.h"
#include "strbuf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The keys above, for a node's key table: "pluginserver_names" and the
 * "pluginserver_*" family. */
#define SL_BRIDGE_CONF_KEYS                                                                        \
    {"pluginserver_names", NULL, "plugin servers (external plugins), comma-separated"},            \
    {                                                                                              \
        "pluginserver_*", NULL,                                                                    \
            "pluginserver_<name>_socket, _start_cmd, _query_cmd, _timeout, _fail_open, "           \
            "_max_frame, _connections: see docs/configuration.md"                                  \
    }

/* ---- Configuration (main thread) ---------------------------------------- */

/*
 * Reads every server of `pluginserver_names` from conf: runs its query
 * command and registers its plugins (sl_plugins_add_dump), then its
 * settings (prefix gives the default socket directory). Must run before
 * sl_plugins_enable. Returns SL_OK or SL_ERR_INVALID with every problem in
 * errs, each naming the key and the fix.
 */
int sl_bridge_configure(const sl_conf_t *conf, const char *prefix, sl_errors_t *errs);

/* Whether this data plane can run plugin p: an external plugin of a
 * configured server that speaks a protocol the bridge has. */
bool sl_bridge_runs(const sl_plugin_info_t *p);

/* Forgets every server (after sl_bridge_stop). */
void sl_bridge_reset(void);

/* ---- Supervisor (main thread) ------------------------------------------- */

/*
 * Starts the servers that have a start command, on base (the main
 * thread's loop, which must run for the supervisor to work), and waits up
 * to wait_ms for each one's socket to accept connections (a server slow to
 * come up is logged, not fatal). Returns SL_OK or SL_ERR_IO with the
 * reason in errs (a fork that failed).
 */
int sl_bridge_start(struct event_base *base, unsigned wait_ms, sl_errors_t *errs);

/* Stops every started server: SIGTERM, up to two seconds, then SIGKILL.
 * Blocks; call after the workers have stopped. */
void sl_bridge_stop(void);

/* ---- Instances (the generation builder's thread) ------------------------ */

/* One configured instance of an external plugin, as a generation holds it. */
typedef struct sl_bridge_inst_s sl_bridge_inst_t;

/*
 * Prepares an instance from its plugins entity (validated, defaults
 * filled): the JSON that start_instance will send (sl_pb_config_json), and
 * its __seq__, which stays the same as long as the entity's config and
 * scope do (a generation that changes nothing else keeps its instances
 * running) and is new, never reused in this process, otherwise. Returns
 * NULL with a message in err when the entity cannot be used.
 */
sl_bridge_inst_t *sl_bridge_inst_new(const sl_plugin_info_t *info, const json_t *entity, char *err,
                                     size_t errlen);
void sl_bridge_inst_free(sl_bridge_inst_t *inst);

/* Its __seq__ (tests and logs). */
int32_t sl_bridge_inst_seq(const sl_bridge_inst_t *inst);

/* ---- Events (worker threads) -------------------------------------------- */

/* How an event ended (ops->done's rc). */
enum {
    SL_BRIDGE_OK = 0,      /* the handler returned */
    SL_BRIDGE_EXIT = 1,    /* the handler called kong.response.exit */
    SL_BRIDGE_FAILED = -1, /* failed and fail_open is off: answer 500 */
    SL_BRIDGE_SKIPPED = 2, /* failed and fail_open is on: carry on */
};

/* The answer to a MsgPack:1 PDK call (see sl_bridge_ops_t.call_mp). */
typedef struct sl_bridge_mp_result_s {
    const sl_pb_method_t *method; /* the method called (NULL: unknown) */
    json_t *data;                 /* the result; NULL is nil */
    bool bin;                     /* data is a string of raw bytes: send as bin */
    char *error;                  /* an error result instead; NULL: none */
} sl_bridge_mp_result_t;

typedef struct sl_bridge_ops_s {
    /*
     * Performs one PDK call of the event and appends its answer frame to
     * out: the contract of sl_pdk_rpc_pb (SL_OK answered, SL_DONE for
     * kong.response.exit, a negative code fails the event).
     */
    int (*call)(void *req, const sl_pb_method_t *m, const void *arg, size_t len, sl_sb_t *out,
                sl_pb_err_t *err);
    /*
     * The same for a MsgPack:1 server: a Kong PDK method name and its
     * arguments (an array), the result in *res (the bridge disposes of it).
     * Returns SL_OK, SL_DONE for kong.response.exit (no Step follows),
     * SL_DECLINED for a method Kong does not have (the answer is nil), or a
     * negative code that fails the event.
     */
    int (*call_mp)(void *req, const char *method, const json_t *args, sl_bridge_mp_result_t *res,
                   sl_pb_err_t *err);
    /* The event is over (SL_BRIDGE_*); the handle is gone. Called from the
     * worker's event loop, never from inside sl_bridge_event. */
    void (*done)(void *req, int rc);
} sl_bridge_ops_t;

typedef struct sl_bridge_event_s sl_bridge_event_t;

/*
 * Runs phase ("access", "response", "log", "rewrite") of inst for req on
 * the calling worker's loop. Always returns a handle; the outcome comes
 * through ops->done.
 */
sl_bridge_event_t *sl_bridge_event(struct event_base *base, const sl_bridge_inst_t *inst,
                                   const char *phase, const sl_bridge_ops_t *ops, void *req);

/* Gives up on an event whose request went away: ops->done is not called;
 * its connection is closed (the server may still be inside the handler). */
void sl_bridge_event_cancel(sl_bridge_event_t *ev);

/* On a worker thread whose loop has ended: ends its events (ops->done with
 * SL_BRIDGE_FAILED or SL_BRIDGE_SKIPPED) and closes its connections. */
void sl_bridge_worker_exit(void);

#endif
