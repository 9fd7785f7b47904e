/*
 * The PDK calls of external plugins, answered with the C PDK (pdk.h).
 *
 * A plugin server asks for one PDK method at a time during an event (its
 * name, then its argument: plugin-protocol section 2.4); the bridge hands
 * each call here with the request it belongs to. The answer has exactly
 * the shape Kong gives over ProtoBuf:1 (method table, section 4): the
 * argument decoded by the method's input type (sl_pb_arg_decode, within
 * the default limits), the C PDK function of the same name called, its
 * result encoded by the method's output type as one frame.
 *
 * Where Kong's function would raise (a bad header name, a status out of
 * range) or return nil, err, the call is refused with a log line naming
 * the plugin and the answer is the output type's zero value (an empty
 * frame): go-pdk sees no error either way, as under Kong. Calls that only
 * make sense in some phases (service.response.* outside response,
 * response.set_* in log) behave as the C PDK does in that phase.
 *
 * Thread-safety: called on the request's worker thread only.
 */
#ifndef SL_PDK_RPC_H
#define SL_PDK_RPC_H

#include "pb_codec.h"
#include "pdk.h"
#include "strbuf.h"

#include <stddef.h>

/*
 * Performs the ProtoBuf:1 call m with its argument payload (frame B, len
 * bytes; zero-length for Empty) for request p, in the phase the event runs
 * in, and appends the answer frame (frame C) to out. Returns:
 *   SL_OK            answered (one frame appended);
 *   SL_DONE          m is kong.response.exit: the status, body and headers
 *                    are recorded on p as sl_pdk_response_exit does (the
 *                    headers of ExitArgs set first, as Kong), nothing is
 *                    appended (the call is never answered);
 *   SL_ERR_INVALID   the argument does not decode as m->in (err says why):
 *                    the event fails, as a protocol error;
 *   SL_ERR_NOMEM     out of memory.
 * Nothing is appended on an error.
 */
int sl_pdk_rpc_pb(sl_pdk_t *p, const sl_pb_method_t *m, const void *arg, size_t len, sl_sb_t *out,
                  sl_pb_err_t *err);

#endif
