/*
 * The PDK calls of MsgPack:1 plugin servers (Kong's Python and JS PDKs):
 * a Kong PDK function name and its arguments as a list, answered with the
 * value the function returns under Kong (reference section 5), through the
 * same implementation as ProtoBuf:1's calls (pdk_rpc.h).
 *
 * Thread-safety: the request's worker thread only.
 */
#ifndef SL_PDK_RPC_MP_H
#define SL_PDK_RPC_MP_H

#include "bridge.h"
#include "pdk_rpc.h"

#include <jansson.h>
#include <stdbool.h>

typedef sl_bridge_mp_result_t sl_pdk_mp_result_t;

/*
 * Performs method (a Kong PDK name such as "kong.request.get_header") with
 * args (a JSON array; anything else is the single argument) for request p.
 * Returns:
 *   SL_OK           *res holds the result (dispose it);
 *   SL_DONE         the method ended the request (kong.response.exit): no
 *                   result is due, the server drops the event;
 *   SL_DECLINED     Kong has no such method: the answer is nil (logged);
 *   SL_ERR_INVALID  the arguments cannot make the call (err says why).
 * Header and query maps come normalised as Kong's MsgPack side sends them
 * (every value a list of strings); raw bodies are flagged bin.
 */
int sl_pdk_rpc_mp(sl_pdk_t *p, const char *method, const json_t *args, sl_pdk_mp_result_t *res,
                  sl_pb_err_t *err);
void sl_pdk_mp_result_dispose(sl_pdk_mp_result_t *res);

#endif
