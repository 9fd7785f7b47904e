/*
 * external.c: external plugins (plugin servers) as the engine sees them.
 *
 * One implementation serves every external plugin: its instances are the
 * bridge's (pluginserver-bridge/bridge.h), its handlers start an event for
 * the phase, suspend the request, and resume it when the event is over.
 * The PDK calls the server makes meanwhile are answered by pdk_rpc.c.
 *
 * A failed event (the server unreachable, stalled or broken, with
 * fail_open off) answers the request with Kong's 500 where a response can
 * still be chosen (rewrite, access, response) and is only logged in log.
 */
#include "bridge.h"
#include "pdk.h"
#include "pdk_rpc.h"
#include "pdk_rpc_mp.h"
#include "plugin.h"

#include <stdlib.h>

typedef struct ext_conf_s {
    sl_bridge_inst_t *inst;
    unsigned phases; /* the plugin's (SL_PHASE_*) */
} ext_conf_t;

typedef struct ext_call_s {
    sl_pdk_t *p;
    sl_bridge_event_t *ev;
    unsigned phase;
} ext_call_t;

const sl_native_plugin_t *sl_plugin_impl(const sl_plugin_info_t *info)
{
    if (info->server)
        return sl_bridge_runs(info) ? &sl_external_plugin : NULL;
    return sl_native_plugin(info->name);
}

static void *ext_configure(const sl_plugin_info_t *info, const json_t *entity, char *err,
                           size_t errlen)
{
    sl_bridge_inst_t *inst = sl_bridge_inst_new(info, entity, err, errlen);
    if (!inst)
        return NULL;
    ext_conf_t *c = sl_xcalloc(1, sizeof(*c));
    c->inst = inst;
    c->phases = info->phases;
    return c;
}

static void ext_dispose(void *conf)
{
    ext_conf_t *c = conf;
    sl_bridge_inst_free(c->inst);
    free(c);
}

static int on_call(void *req, const sl_pb_method_t *m, const void *arg, size_t len, sl_sb_t *out,
                   sl_pb_err_t *err)
{
    ext_call_t *x = req;
    return sl_pdk_rpc_pb(x->p, m, arg, len, out, err);
}

static void on_done(void *req, int rc)
{
    ext_call_t *x = req;
    sl_pdk_t *p = x->p;
    x->ev = NULL;
    int result = SL_PLUGIN_CONTINUE;
    if (rc == SL_BRIDGE_EXIT) {
        result = SL_PLUGIN_EXIT;
    } else if (rc == SL_BRIDGE_FAILED && x->phase == SL_PHASE_CERTIFICATE) {
        result = SL_PLUGIN_EXIT; /* the handshake is refused */
    } else if (rc == SL_BRIDGE_FAILED && x->phase != SL_PHASE_LOG) {
        /* Kong's answer to a plugin server error. */
        sl_pdk_response_error(p, 500, "An unexpected error occurred");
        result = SL_PLUGIN_EXIT;
    }
    sl_pdk_resume(p, result);
}

static void on_abort(void *arg)
{
    ext_call_t *x = arg;
    if (x->ev)
        sl_bridge_event_cancel(x->ev);
    x->ev = NULL;
}

static int on_call_mp(void *req, const char *method, const json_t *args, sl_bridge_mp_result_t *res,
                      sl_pb_err_t *err)
{
    ext_call_t *x = req;
    return sl_pdk_rpc_mp(x->p, method, args, res, err);
}

static const sl_bridge_ops_t ops = {on_call, on_call_mp, on_done};

static int run_event(sl_pdk_t *p, void *conf, unsigned phase)
{
    ext_conf_t *c = conf;
    if (!(c->phases & phase))
        return SL_PLUGIN_CONTINUE;
    ext_call_t *x = sl_pdk_alloc(p, sizeof(*x));
    x->p = p;
    x->phase = phase;
    x->ev = sl_bridge_event(sl_pdk_event_base(p), c->inst, sl_phase_name(phase), &ops, x);
    sl_pdk_suspend(p, on_abort, x);
    return SL_PLUGIN_SUSPEND;
}

static int ext_certificate(sl_pdk_t *p, void *conf)
{
    return run_event(p, conf, SL_PHASE_CERTIFICATE);
}

static int ext_rewrite(sl_pdk_t *p, void *conf)
{
    return run_event(p, conf, SL_PHASE_REWRITE);
}

static int ext_access(sl_pdk_t *p, void *conf)
{
    return run_event(p, conf, SL_PHASE_ACCESS);
}

static int ext_response(sl_pdk_t *p, void *conf)
{
    return run_event(p, conf, SL_PHASE_RESPONSE);
}

static int ext_log(sl_pdk_t *p, void *conf)
{
    return run_event(p, conf, SL_PHASE_LOG);
}

/* kong.request.get_raw_body works in access as under Kong, so the body is
 * read whole for a plugin that has access when it fits in
 * client_body_buffer_size; a larger one streams on unread, and the plugin's
 * get_raw_body gets Kong's "did not fit" error (body_if_fits). */
static bool ext_wants_body(const void *conf)
{
    const ext_conf_t *c = conf;
    return (c->phases & (SL_PHASE_ACCESS | SL_PHASE_REWRITE)) != 0;
}

/* Kong's buffered proxying for plugins with a response phase. */
static bool ext_wants_response_body(const void *conf)
{
    const ext_conf_t *c = conf;
    return (c->phases & SL_PHASE_RESPONSE) != 0;
}

const sl_native_plugin_t sl_external_plugin = {
    .name = "(external)",
    .configure_entity = ext_configure,
    .dispose = ext_dispose,
    .wants_body = ext_wants_body,
    .body_if_fits = true,
    .certificate = ext_certificate,
    .rewrite = ext_rewrite,
    .access = ext_access,
    .response = ext_response,
    .wants_response_body = ext_wants_response_body,
    .log = ext_log,
};
