/*
 * pdk_rpc_mp.c: the PDK calls of MsgPack:1 plugin servers (Kong's Python
 * and JS PDKs), answered by the same code as ProtoBuf:1's.
 *
 * A MsgPack plugin names a Kong PDK function and passes its Lua arguments as
 * a list; Kong calls the function and returns its first result (reference
 * section 5.3). Here the list becomes the argument message of the method of
 * the same name in the ProtoBuf table (Kong's own "unwrap" in reverse:
 * section 2.5), sl_pdk_rpc_pb performs it, and its answer is unwrapped back
 * into the value Kong would have returned. So both protocols see one
 * implementation of every method; the cost of the detour is small next to a
 * Python or JavaScript handler's.
 */
#include "pdk_rpc_mp.h"
#include "log.h"

#include <string.h>

/* The headers and query getters take an optional max (Kong's default 100). */
static bool takes_max(sl_pb_method_id_t id)
{
    return id == SL_PB_M_REQUEST_GET_HEADERS || id == SL_PB_M_REQUEST_GET_QUERY ||
           id == SL_PB_M_RESPONSE_GET_HEADERS || id == SL_PB_M_SERVICE_RESPONSE_GET_HEADERS;
}

/* Their results are normalised as Kong's MsgPack side does (5.4). */
static bool is_multimap(sl_pb_method_id_t id)
{
    return takes_max(id);
}

static json_t *arg(const json_t *args, size_t i)
{
    json_t *v = json_array_get(args, i);
    return v && !json_is_null(v) ? v : NULL;
}

/* Kong's exit body: a table is sent as JSON (with its Content-Type unless
 * the headers name one). */
static json_t *exit_args(const json_t *args)
{
    json_t *o = json_object();
    json_t *status = arg(args, 0), *body = arg(args, 1), *headers = arg(args, 2);
    if (status)
        json_object_set(o, "status", status);
    json_t *hdrs = json_is_object(headers) ? json_deep_copy(headers) : json_object();
    if (json_is_object(body) || json_is_array(body)) {
        char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text)
            json_object_set_new(o, "body", json_string(text));
        free(text);
        const char *k;
        json_t *v;
        bool has_ct = false;
        json_object_foreach(hdrs, k, v)
        {
            has_ct = has_ct || !strcasecmp(k, "content-type");
        }
        if (!has_ct)
            json_object_set_new(hdrs, "Content-Type",
                                json_string("application/json; charset=utf-8"));
    } else if (json_is_string(body)) {
        json_object_set(o, "body", body);
    }
    json_object_set_new(o, "headers", hdrs);
    return o;
}

/* The argument message of m, as JSON, from the plugin's argument list. */
static json_t *message_of(const sl_pb_method_t *m, const json_t *args)
{
    json_t *a0 = arg(args, 0), *a1 = arg(args, 1);
    switch (m->in) {
    case SL_PB_T_EMPTY:
        return NULL;
    case SL_PB_T_INT:
        if (!a0 && takes_max(m->id))
            return json_integer(SL_PDK_MAX_DEFAULT);
        return a0 ? json_incref(a0) : NULL;
    case SL_PB_T_STRING:
    case SL_PB_T_NUMBER:
    case SL_PB_T_BOOL:
    case SL_PB_T_BYTE_STRING:
    case SL_PB_T_STRUCT:
    case SL_PB_T_VALUE:
        return a0 ? json_incref(a0) : NULL;
    case SL_PB_T_LIST_VALUE:
        return json_is_array(args) ? json_incref((json_t *)args) : json_array();
    case SL_PB_T_KV:
        return json_pack("{s:O?,s:O?}", "k", a0, "v", a1 ? a1 : json_null());
    case SL_PB_T_EXIT_ARGS:
        return exit_args(args);
    case SL_PB_T_TARGET:
        return json_pack("{s:O?,s:O?}", "host", a0, "port", a1);
    case SL_PB_T_CONSUMER_SPEC:
        return json_pack("{s:O?,s:O?}", "id", a0, "by_username", a1);
    case SL_PB_T_AUTHENTICATE_ARGS:
        return json_pack("{s:O?,s:O?}", "consumer", a0, "credential", a1);
    default:
        return a0 ? json_incref(a0) : NULL;
    }
}

/* Header and query maps as Kong's MsgPack side sends them: every value a
 * list of strings, a bare argument (true) an empty list. */
static void normalise_multimap(json_t *m)
{
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        if (json_is_string(v)) {
            json_object_set_new(m, k, json_pack("[O]", v));
        } else if (json_is_true(v)) {
            json_object_set_new(m, k, json_array());
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                if (json_is_true(e))
                    json_array_set_new(v, i, json_string(""));
            }
        }
    }
}

/* The answer (one frame) as the value the Lua function returned. */
static int unwrap(const sl_pb_method_t *m, const sl_sb_t *frame, sl_pdk_mp_result_t *res,
                  sl_pb_err_t *err)
{
    const void *p = frame->p + SL_PB_FRAME_HEAD;
    size_t n = frame->len - SL_PB_FRAME_HEAD;
    if (m->out == SL_PB_T_EMPTY)
        return SL_OK;
    /* Kong's nil where ProtoBuf can only say "empty": no consumer,
     * credential, route or service; no header, argument or variable of
     * that name. */
    bool entity = m->out == SL_PB_T_CONSUMER || m->out == SL_PB_T_CREDENTIAL ||
                  m->out == SL_PB_T_ROUTE || m->out == SL_PB_T_SERVICE;
    bool lookup = m->in == SL_PB_T_STRING && m->out == SL_PB_T_STRING;
    if (n == 0 && (entity || lookup))
        return SL_OK;
    ProtobufCMessage *msg = NULL;
    int rc = sl_pb_decode(sl_pb_type_descriptor(m->out), p, n, NULL, NULL, &msg, err);
    if (rc != SL_OK)
        return rc;
    json_t *j = NULL;
    rc = sl_pb_message_to_json(msg, NULL, &j, err);
    if (rc == SL_OK && m->out == SL_PB_T_RAW_BODY_RESULT) {
        const KongPluginProtocol__RawBodyResult *r = (const void *)msg;
        if (r->kind_case == KONG_PLUGIN_PROTOCOL__RAW_BODY_RESULT__KIND_CONTENT) {
            res->data = json_stringn_nocheck((const char *)r->content.data, r->content.len);
            res->bin = true;
        } else if (r->kind_case == KONG_PLUGIN_PROTOCOL__RAW_BODY_RESULT__KIND_ERROR) {
            res->error = sl_xstrdup(r->error);
        }
    } else if (rc == SL_OK && m->out == SL_PB_T_BYTE_STRING) {
        const KongPluginProtocol__ByteString *b = (const void *)msg;
        res->data = json_stringn_nocheck((const char *)b->v.data, b->v.len);
        res->bin = true;
    } else if (rc == SL_OK) {
        switch (m->out) {
        case SL_PB_T_STRING:
        case SL_PB_T_INT:
        case SL_PB_T_NUMBER:
        case SL_PB_T_BOOL:
            res->data = json_incref(json_object_get(j, "v"));
            break;
        default:
            res->data = json_incref(j);
            if (is_multimap(m->id) && json_is_object(res->data))
                normalise_multimap(res->data);
        }
    }
    json_decref(j);
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}

/* kong.response.error(status, message, headers): a PDK function the
 * ProtoBuf table lacks, which Kong's Python and JavaScript PDKs expose. */
static int response_error(sl_pdk_t *p, const json_t *args)
{
    const json_t *a = json_is_array(args) ? args : NULL;
    json_t *status = json_array_get(a, 0), *message = json_array_get(a, 1);
    json_t *headers = json_array_get(a, 2);
    if (json_is_object(headers))
        sl_pdk_response_set_headers(p, headers);
    int code = json_is_integer(status) ? (int)json_integer_value(status) : 500;
    sl_pdk_response_error(p, code, json_is_string(message) ? json_string_value(message) : NULL);
    return SL_DONE;
}

int sl_pdk_rpc_mp(sl_pdk_t *p, const char *method, const json_t *args, sl_pdk_mp_result_t *res,
                  sl_pb_err_t *err)
{
    memset(res, 0, sizeof(*res));
    if (!strcmp(method, "kong.response.error"))
        return response_error(p, args);
    const sl_pb_method_t *m = sl_pb_method_find(method, strlen(method));
    if (!m) {
        /* Kong logs it and answers nil (5.3). */
        sl_pdk_log(p, SL_LOG_ERROR, "could not find pdk method: %.*s", 100, method);
        return SL_DECLINED;
    }
    res->method = m;
    json_t *list = json_is_array(args) ? json_incref((json_t *)args)
                   : args              ? json_pack("[O]", args)
                                       : json_array();
    json_t *in = message_of(m, list);
    json_decref(list);
    char store[512], out_store[512];
    sl_sb_t frame, out;
    sl_sb_init(&frame, store, sizeof(store));
    sl_sb_init(&out, out_store, sizeof(out_store));
    int rc = sl_pb_put_json(&frame, m->in, in, NULL, err);
    json_decref(in);
    if (rc == SL_OK) {
        rc = sl_pdk_rpc_pb(p, m, frame.p + SL_PB_FRAME_HEAD, frame.len - SL_PB_FRAME_HEAD, &out,
                           err);
        if (rc == SL_OK)
            rc = unwrap(m, &out, res, err);
    }
    sl_sb_dispose(&frame);
    sl_sb_dispose(&out);
    return rc;
}

void sl_pdk_mp_result_dispose(sl_pdk_mp_result_t *res)
{
    json_decref(res->data);
    free(res->error);
    res->data = NULL;
    res->error = NULL;
}
