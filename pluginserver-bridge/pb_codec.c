/*
 * pb_codec.c owns the bytes of Kong's ProtoBuf:1 plugin protocol: frames,
 * the RpcCall/RpcReturn envelopes, the PDK method table, the conversion of
 * PDK arguments and answers between protobuf and jansson, and the state
 * machine of one event's callback loop. It holds no state of its own: every
 * function works on what the caller hands it, on whichever thread calls, so
 * a worker's event code and the unit tests drive it alike.
 *
 * Two directions, two memory disciplines. What a plugin server sends is
 * peer-sized: it is decoded by protobuf-c into malloc'd (or caller-
 * allocated) messages after a scan of the raw bytes has bounded the
 * nesting and the number of fields, because protobuf-c recurses once per
 * nested message without a limit and allocates once per field; an
 * allocation failure is an ordinary error. What the gateway answers is
 * sized by the gateway: messages are built in an arena, borrowing strings
 * from the jansson values they come from, packed once into the output
 * frame, and the arena is dropped.
 *
 * Section numbers in comments refer to the plugin-protocol reference.
 */
#include "pb_codec.h"
#include "arena.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors and small wire helpers                                             */

static sl_pb_limits_t limits_of(const sl_pb_limits_t *lim)
{
    sl_pb_limits_t l = lim ? *lim : SL_PB_LIMITS_DEFAULT;
    if (l.max_depth > SL_PB_DEPTH_CEILING)
        l.max_depth = SL_PB_DEPTH_CEILING;
    return l;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t varint_put(uint8_t *o, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint of at most 10 bytes; returns the bytes used, or 0 when
 * the input ends inside it or it is longer. */
static size_t varint_get(const uint8_t *p, size_t n, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = sl_utf8_len(p + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

/* s[0, n) for a log message: at most 64 bytes of it, escaped. */
static void quote(char *dst, size_t cap, const void *s, size_t n)
{
    sl_quote_bytes(dst, cap, s, n, 64);
}

/* ------------------------------------------------------------------------ */
/* Framing (2.1): a uint32 length, little-endian, then the payload           */

int sl_pb_frame_peek(const void *buf, size_t len, size_t max, size_t *size, sl_pb_err_t *err)
{
    const uint8_t *h = buf;
    if (len < SL_PB_FRAME_HEAD)
        return SL_AGAIN;
    uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (n > max) {
        sl_codec_err_set(err,
                         "plugin server frame of %" PRIu32
                         " bytes is over the limit of %zu bytes; the "
                         "connection is closed",
                         n, max);
        return SL_ERR_TOO_BIG;
    }
    *size = SL_PB_FRAME_HEAD + (size_t)n;
    return SL_OK;
}

int sl_pb_frame_decode(const void *buf, size_t len, size_t max, sl_pb_frame_t *f, sl_pb_err_t *err)
{
    size_t size;
    int rc = sl_pb_frame_peek(buf, len, max, &size, err);
    if (rc != SL_OK)
        return rc;
    if (len < size)
        return SL_AGAIN;
    f->p = (const uint8_t *)buf + SL_PB_FRAME_HEAD;
    f->len = size - SL_PB_FRAME_HEAD;
    f->size = size;
    return SL_OK;
}

/* Appends a frame header for n bytes and returns where the payload goes. */
static uint8_t *frame_reserve(sl_sb_t *out, size_t n)
{
    SL_ASSERT(n <= UINT32_MAX);
    if (out->len + SL_PB_FRAME_HEAD + n > out->cap)
        sl_sb_grow(out, SL_PB_FRAME_HEAD + n);
    uint8_t *h = (uint8_t *)out->p + out->len;
    h[0] = (uint8_t)n;
    h[1] = (uint8_t)(n >> 8);
    h[2] = (uint8_t)(n >> 16);
    h[3] = (uint8_t)(n >> 24);
    out->len += SL_PB_FRAME_HEAD + n;
    return h + SL_PB_FRAME_HEAD;
}

void sl_pb_frame_put(sl_sb_t *out, const void *p, size_t n)
{
    uint8_t *dst = frame_reserve(out, n);
    if (n)
        memcpy(dst, p, n);
}

void sl_pb_frame_put_msg(sl_sb_t *out, const ProtobufCMessage *msg)
{
    size_t n = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    uint8_t *dst = frame_reserve(out, n);
    if (n)
        protobuf_c_message_pack(msg, dst);
}

/* A frame holding one length-delimited field: tag, length, bytes. Proto3
 * leaves an empty one out unless `always` (a oneof member). */
static void frame_put_field(sl_sb_t *out, uint8_t tag, const void *p, size_t n, bool always)
{
    if (n == 0 && !always) {
        frame_reserve(out, 0);
        return;
    }
    uint8_t *dst = frame_reserve(out, 1 + varint_size(n) + n);
    dst[0] = tag;
    size_t k = 1 + varint_put(dst + 1, n);
    if (n)
        memcpy(dst + k, p, n);
}

/* ------------------------------------------------------------------------ */
/* Envelopes (2.2)                                                           */

static void put_call(sl_sb_t *out, KongPluginProtocol__RpcCall *call)
{
    SL_ASSERT(call->sequence > 0);
    sl_pb_frame_put_msg(out, &call->base);
}

void sl_pb_call_get_plugin_names(sl_sb_t *out, int64_t seq)
{
    KongPluginProtocol__CmdGetPluginNames cmd = KONG_PLUGIN_PROTOCOL__CMD_GET_PLUGIN_NAMES__INIT;
    KongPluginProtocol__RpcCall call = KONG_PLUGIN_PROTOCOL__RPC_CALL__INIT;
    call.sequence = seq;
    call.call_case = KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_GET_PLUGIN_NAMES;
    call.cmd_get_plugin_names = &cmd;
    put_call(out, &call);
}

void sl_pb_call_get_plugin_info(sl_sb_t *out, int64_t seq, const char *name)
{
    KongPluginProtocol__CmdGetPluginInfo cmd = KONG_PLUGIN_PROTOCOL__CMD_GET_PLUGIN_INFO__INIT;
    KongPluginProtocol__RpcCall call = KONG_PLUGIN_PROTOCOL__RPC_CALL__INIT;
    cmd.name = (char *)name;
    call.sequence = seq;
    call.call_case = KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_GET_PLUGIN_INFO;
    call.cmd_get_plugin_info = &cmd;
    put_call(out, &call);
}

void sl_pb_call_start_instance(sl_sb_t *out, int64_t seq, const char *name, const void *config,
                               size_t config_len)
{
    KongPluginProtocol__CmdStartInstance cmd = KONG_PLUGIN_PROTOCOL__CMD_START_INSTANCE__INIT;
    KongPluginProtocol__RpcCall call = KONG_PLUGIN_PROTOCOL__RPC_CALL__INIT;
    cmd.name = (char *)name;
    cmd.config.data = (uint8_t *)config;
    cmd.config.len = config_len;
    call.sequence = seq;
    call.call_case = KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_START_INSTANCE;
    call.cmd_start_instance = &cmd;
    put_call(out, &call);
}

void sl_pb_call_get_instance_status(sl_sb_t *out, int64_t seq, int32_t instance_id)
{
    KongPluginProtocol__CmdGetInstanceStatus cmd =
        KONG_PLUGIN_PROTOCOL__CMD_GET_INSTANCE_STATUS__INIT;
    KongPluginProtocol__RpcCall call = KONG_PLUGIN_PROTOCOL__RPC_CALL__INIT;
    cmd.instance_id = instance_id;
    call.sequence = seq;
    call.call_case = KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_GET_INSTANCE_STATUS;
    call.cmd_get_instance_status = &cmd;
    put_call(out, &call);
}

void sl_pb_call_close_instance(sl_sb_t *out, int64_t seq, int32_t instance_id)
{
    KongPluginProtocol__CmdCloseInstance cmd = KONG_PLUGIN_PROTOCOL__CMD_CLOSE_INSTANCE__INIT;
    KongPluginProtocol__RpcCall call = KONG_PLUGIN_PROTOCOL__RPC_CALL__INIT;
    cmd.instance_id = instance_id;
    call.sequence = seq;
    call.call_case = KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_CLOSE_INSTANCE;
    call.cmd_close_instance = &cmd;
    put_call(out, &call);
}

void sl_pb_call_handle_event(sl_sb_t *out, int64_t seq, int32_t instance_id, const char *event)
{
    KongPluginProtocol__CmdHandleEvent cmd = KONG_PLUGIN_PROTOCOL__CMD_HANDLE_EVENT__INIT;
    KongPluginProtocol__RpcCall call = KONG_PLUGIN_PROTOCOL__RPC_CALL__INIT;
    cmd.instance_id = instance_id;
    cmd.event_name = (char *)event;
    call.sequence = seq;
    call.call_case = KONG_PLUGIN_PROTOCOL__RPC_CALL__CALL_CMD_HANDLE_EVENT;
    call.cmd_handle_event = &cmd;
    put_call(out, &call);
}

static const char *return_case_name(int c)
{
    switch (c) {
    case KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN__NOT_SET:
        return "no result";
    case KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_PLUGIN_NAMES:
        return "plugin_names";
    case KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_PLUGIN_INFO:
        return "plugin_info";
    case KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS:
        return "instance_status";
    }
    return "an unknown result";
}

int sl_pb_return_parse(const void *p, size_t n, int64_t seq, int expect, ProtobufCAllocator *alloc,
                       sl_pb_return_t **out, sl_pb_err_t *err)
{
    if (n == 0) {
        sl_codec_err_set(err,
                         "plugin server answered call %" PRId64 " with an empty frame: it does not "
                         "implement that command",
                         seq);
        return SL_DECLINED;
    }
    ProtobufCMessage *m;
    int rc =
        sl_pb_decode(&kong_plugin_protocol__rpc_return__descriptor, p, n, NULL, alloc, &m, err);
    if (rc != SL_OK)
        return rc;
    sl_pb_return_t *r = (sl_pb_return_t *)m;
    if (r->sequence != seq) {
        sl_codec_err_set(err,
                         "plugin server answered sequence %" PRId64 " to call %" PRId64
                         ": the connection is out of step and is closed",
                         (int64_t)r->sequence, seq);
        rc = SL_ERR_INVALID;
    } else if (expect != SL_PB_RETURN_ANY && (int)r->return_case != expect) {
        sl_codec_err_set(err, "plugin server answered call %" PRId64 " with %s, expected %s", seq,
                         return_case_name((int)r->return_case), return_case_name(expect));
        rc = SL_ERR_INVALID;
    }
    if (rc != SL_OK || !out) {
        sl_pb_return_free(r, alloc);
        return rc;
    }
    *out = r;
    return SL_OK;
}

void sl_pb_return_free(sl_pb_return_t *r, ProtobufCAllocator *alloc)
{
    if (r)
        kong_plugin_protocol__rpc_return__free_unpacked(r, alloc);
}

/* ------------------------------------------------------------------------ */
/* start_instance's config JSON (6.1)                                        */

/* Sets key to the string s, or to null when s is NULL and null_ok. */
static int conf_set(json_t *o, const char *key, const char *s, sl_pb_err_t *err)
{
    json_t *v;
    if (!s) {
        v = json_null();
    } else {
        if (!utf8_valid(s, strlen(s))) {
            sl_codec_err_set(err, "plugin instance %s is not UTF-8", key);
            return SL_ERR_INVALID;
        }
        v = json_string(s);
    }
    if (!v || json_object_set_new(o, key, v) != 0) {
        sl_codec_err_set(err, "out of memory building the plugin instance config");
        return SL_ERR_NOMEM;
    }
    return SL_OK;
}

int sl_pb_config_json(const sl_pb_instance_conf_t *c, char **out, size_t *len, sl_pb_err_t *err)
{
    if (!json_is_object(c->config)) {
        sl_codec_err_set(err, "plugin config must be a JSON object");
        return SL_ERR_INVALID;
    }
    /* go-pdk >= 0.10 takes __seq__ as the instance id, an int32 on the wire
     * (CmdHandleEvent.instance_id): a larger one could not be addressed. */
    if (c->seq < 1 || c->seq > INT32_MAX) {
        sl_codec_err_set(err,
                         "plugin instance __seq__ %" PRId64
                         " is outside 1..2147483647: go-pdk uses it "
                         "as the instance id",
                         c->seq);
        return SL_ERR_INVALID;
    }
    if (!c->plugin_id || !*c->plugin_id) {
        sl_codec_err_set(err,
                         "plugin instance __plugin_id is missing: give the plugins entity's id");
        return SL_ERR_INVALID;
    }
    /* A shallow copy: the new keys go into the copy, the config's values are
     * shared (jansson's reference counts are atomic). */
    json_t *o = json_copy((json_t *)c->config);
    if (!o) {
        sl_codec_err_set(err, "out of memory building the plugin instance config");
        return SL_ERR_NOMEM;
    }
    int rc = SL_OK;
    json_t *seq = json_integer((json_int_t)c->seq);
    if (!seq || json_object_set_new(o, "__seq__", seq) != 0) {
        sl_codec_err_set(err, "out of memory building the plugin instance config");
        rc = SL_ERR_NOMEM;
    }
    if (rc == SL_OK)
        rc = conf_set(o, "__plugin_id", c->plugin_id, err);
    if (rc == SL_OK && c->ws_id)
        rc = conf_set(o, "__ws_id", c->ws_id, err);
    if (rc == SL_OK && c->key)
        rc = conf_set(o, "__key__", c->key, err);
    if (rc == SL_OK)
        rc = conf_set(o, "route_id", c->route_id, err);
    if (rc == SL_OK)
        rc = conf_set(o, "service_id", c->service_id, err);
    if (rc == SL_OK)
        rc = conf_set(o, "consumer_id", c->consumer_id, err);
    if (rc == SL_OK)
        rc = conf_set(o, "plugin_instance_name", c->instance_name, err);
    char *s = NULL;
    if (rc == SL_OK) {
        /* Compact, as cjson; jansson writes every array as [...], so the
         * empty ones are [] (not {} as cjson gives a table without
         * array_mt). */
        s = json_dumps(o, JSON_COMPACT);
        if (!s) {
            sl_codec_err_set(err, "out of memory writing the plugin instance config");
            rc = SL_ERR_NOMEM;
        }
    }
    json_decref(o);
    if (rc != SL_OK)
        return rc;
    *out = s;
    *len = strlen(s);
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Message types and the method table (4)                                    */

static const ProtobufCMessageDescriptor *const type_desc[SL_PB_T_COUNT] = {
    [SL_PB_T_EMPTY] = &kong_plugin_protocol__empty__descriptor,
    [SL_PB_T_STRING] = &kong_plugin_protocol__string__descriptor,
    [SL_PB_T_INT] = &kong_plugin_protocol__int__descriptor,
    [SL_PB_T_NUMBER] = &kong_plugin_protocol__number__descriptor,
    [SL_PB_T_BOOL] = &kong_plugin_protocol__bool__descriptor,
    [SL_PB_T_BYTE_STRING] = &kong_plugin_protocol__byte_string__descriptor,
    [SL_PB_T_KV] = &kong_plugin_protocol__kv__descriptor,
    [SL_PB_T_EXIT_ARGS] = &kong_plugin_protocol__exit_args__descriptor,
    [SL_PB_T_TARGET] = &kong_plugin_protocol__target__descriptor,
    [SL_PB_T_CONSUMER_SPEC] = &kong_plugin_protocol__consumer_spec__descriptor,
    [SL_PB_T_AUTHENTICATE_ARGS] = &kong_plugin_protocol__authenticate_args__descriptor,
    [SL_PB_T_STRUCT] = &kong_plugin_protocol__struct__descriptor,
    [SL_PB_T_LIST_VALUE] = &kong_plugin_protocol__list_value__descriptor,
    [SL_PB_T_VALUE] = &kong_plugin_protocol__value__descriptor,
    [SL_PB_T_CONSUMER] = &kong_plugin_protocol__consumer__descriptor,
    [SL_PB_T_CREDENTIAL] = &kong_plugin_protocol__authenticated_credential__descriptor,
    [SL_PB_T_ROUTE] = &kong_plugin_protocol__route__descriptor,
    [SL_PB_T_SERVICE] = &kong_plugin_protocol__service__descriptor,
    [SL_PB_T_MEMORY_STATS] = &kong_plugin_protocol__memory_stats__descriptor,
    [SL_PB_T_RAW_BODY_RESULT] = &kong_plugin_protocol__raw_body_result__descriptor,
    [SL_PB_T_URI_CAPTURES_RESULT] = &kong_plugin_protocol__uri_captures_result__descriptor,
};

const ProtobufCMessageDescriptor *sl_pb_type_descriptor(sl_pb_type_t t)
{
    SL_ASSERT((unsigned)t < SL_PB_T_COUNT);
    return type_desc[t];
}

const char *sl_pb_type_name(sl_pb_type_t t)
{
    return sl_pb_type_descriptor(t)->short_name;
}

/*
 * One entry per rpc of service Kong, sorted by wire name (bytewise) for the
 * binary search, each at the index of its id. The wire names follow Kong's
 * derivation from the rpc names (see proto/pluginsocket.proto), except the
 * two Ctx methods, which Kong names by the (MethodName) option. Response_Exit
 * is declared to return Empty, but Kong never answers it (2.4).
 */
#define M(id, name, rpc, in, out, flags)                                                           \
    [SL_PB_M_##id] = {name, rpc, SL_PB_M_##id, SL_PB_T_##in, SL_PB_T_##out, flags}

static const sl_pb_method_t methods[SL_PB_M_COUNT] = {
    M(CLIENT_AUTHENTICATE, "kong.client.authenticate", "Client_Authenticate", AUTHENTICATE_ARGS,
      EMPTY, SL_PB_M_WRITES),
    M(CLIENT_GET_CONSUMER, "kong.client.get_consumer", "Client_GetConsumer", EMPTY, CONSUMER, 0),
    M(CLIENT_GET_CREDENTIAL, "kong.client.get_credential", "Client_GetCredential", EMPTY,
      CREDENTIAL, 0),
    M(CLIENT_GET_FORWARDED_IP, "kong.client.get_forwarded_ip", "Client_GetForwardedIp", EMPTY,
      STRING, 0),
    M(CLIENT_GET_FORWARDED_PORT, "kong.client.get_forwarded_port", "Client_GetForwardedPort", EMPTY,
      INT, 0),
    M(CLIENT_GET_IP, "kong.client.get_ip", "Client_GetIp", EMPTY, STRING, 0),
    M(CLIENT_GET_PORT, "kong.client.get_port", "Client_GetPort", EMPTY, INT, 0),
    M(CLIENT_GET_PROTOCOL, "kong.client.get_protocol", "Client_GetProtocol", BOOL, STRING, 0),
    M(CLIENT_LOAD_CONSUMER, "kong.client.load_consumer", "Client_LoadConsumer", CONSUMER_SPEC,
      CONSUMER, 0),
    M(CTX_SHARED_GET, "kong.ctx.shared.get", "Ctx_GetShared", STRING, VALUE, SL_PB_M_LOG_SNAPSHOT),
    M(CTX_SHARED_SET, "kong.ctx.shared.set", "Ctx_SetShared", KV, EMPTY,
      SL_PB_M_LOG_SNAPSHOT | SL_PB_M_WRITES),
    M(IP_IS_TRUSTED, "kong.ip.is_trusted", "Ip_IsTrusted", STRING, BOOL, 0),
    M(LOG_ALERT, "kong.log.alert", "Log_Alert", LIST_VALUE, EMPTY, 0),
    M(LOG_CRIT, "kong.log.crit", "Log_Crit", LIST_VALUE, EMPTY, 0),
    M(LOG_DEBUG, "kong.log.debug", "Log_Debug", LIST_VALUE, EMPTY, 0),
    M(LOG_ERR, "kong.log.err", "Log_Err", LIST_VALUE, EMPTY, 0),
    M(LOG_INFO, "kong.log.info", "Log_Info", LIST_VALUE, EMPTY, 0),
    M(LOG_NOTICE, "kong.log.notice", "Log_Notice", LIST_VALUE, EMPTY, 0),
    M(LOG_SERIALIZE, "kong.log.serialize", "Log_Serialize", EMPTY, STRING, SL_PB_M_LOG_SNAPSHOT),
    M(LOG_SET_SERIALIZE_VALUE, "kong.log.set_serialize_value", "Log_SetSerializeValue", KV, EMPTY,
      SL_PB_M_WRITES),
    M(LOG_WARN, "kong.log.warn", "Log_Warn", LIST_VALUE, EMPTY, 0),
    M(NGINX_GET_CTX, "kong.nginx.get_ctx", "Nginx_GetCtx", STRING, VALUE, SL_PB_M_LOG_SNAPSHOT),
    M(NGINX_GET_SUBSYSTEM, "kong.nginx.get_subsystem", "Nginx_GetSubsystem", EMPTY, STRING, 0),
    M(NGINX_GET_TLS1_VERSION_STR, "kong.nginx.get_tls1_version_str", "Nginx_GetTls1VersionStr",
      EMPTY, STRING, 0),
    M(NGINX_GET_VAR, "kong.nginx.get_var", "Nginx_GetVar", STRING, STRING, 0),
    M(NGINX_REQ_START_TIME, "kong.nginx.req_start_time", "Nginx_ReqStartTime", EMPTY, NUMBER,
      SL_PB_M_LOG_SNAPSHOT),
    M(NGINX_SET_CTX, "kong.nginx.set_ctx", "Nginx_SetCtx", KV, STRING,
      SL_PB_M_LOG_SNAPSHOT | SL_PB_M_WRITES),
    M(NODE_GET_ID, "kong.node.get_id", "Node_GetId", EMPTY, STRING, 0),
    M(NODE_GET_MEMORY_STATS, "kong.node.get_memory_stats", "Node_GetMemoryStats", EMPTY,
      MEMORY_STATS, 0),
    M(REQUEST_GET_FORWARDED_HOST, "kong.request.get_forwarded_host", "Request_GetForwardedHost",
      EMPTY, STRING, 0),
    M(REQUEST_GET_FORWARDED_PORT, "kong.request.get_forwarded_port", "Request_GetForwardedPort",
      EMPTY, INT, 0),
    M(REQUEST_GET_FORWARDED_SCHEME, "kong.request.get_forwarded_scheme",
      "Request_GetForwardedScheme", EMPTY, STRING, 0),
    M(REQUEST_GET_HEADER, "kong.request.get_header", "Request_GetHeader", STRING, STRING,
      SL_PB_M_LOG_SNAPSHOT),
    M(REQUEST_GET_HEADERS, "kong.request.get_headers", "Request_GetHeaders", INT, STRUCT,
      SL_PB_M_LOG_SNAPSHOT),
    M(REQUEST_GET_HOST, "kong.request.get_host", "Request_GetHost", EMPTY, STRING, 0),
    M(REQUEST_GET_HTTP_VERSION, "kong.request.get_http_version", "Request_GetHttpVersion", EMPTY,
      NUMBER, 0),
    M(REQUEST_GET_METHOD, "kong.request.get_method", "Request_GetMethod", EMPTY, STRING, 0),
    M(REQUEST_GET_PATH, "kong.request.get_path", "Request_GetPath", EMPTY, STRING, 0),
    M(REQUEST_GET_PATH_WITH_QUERY, "kong.request.get_path_with_query", "Request_GetPathWithQuery",
      EMPTY, STRING, 0),
    M(REQUEST_GET_PORT, "kong.request.get_port", "Request_GetPort", EMPTY, INT, 0),
    M(REQUEST_GET_QUERY, "kong.request.get_query", "Request_GetQuery", INT, STRUCT, 0),
    M(REQUEST_GET_QUERY_ARG, "kong.request.get_query_arg", "Request_GetQueryArg", STRING, STRING,
      0),
    M(REQUEST_GET_RAW_BODY, "kong.request.get_raw_body", "Request_GetRawBody", EMPTY,
      RAW_BODY_RESULT, 0),
    M(REQUEST_GET_RAW_QUERY, "kong.request.get_raw_query", "Request_GetRawQuery", EMPTY, STRING, 0),
    M(REQUEST_GET_SCHEME, "kong.request.get_scheme", "Request_GetScheme", EMPTY, STRING, 0),
    M(REQUEST_GET_URI_CAPTURES, "kong.request.get_uri_captures", "Request_GetUriCaptures", EMPTY,
      URI_CAPTURES_RESULT, SL_PB_M_LOG_SNAPSHOT),
    M(RESPONSE_ADD_HEADER, "kong.response.add_header", "Response_AddHeader", KV, EMPTY,
      SL_PB_M_WRITES),
    M(RESPONSE_CLEAR_HEADER, "kong.response.clear_header", "Response_ClearHeader", STRING, EMPTY,
      SL_PB_M_WRITES),
    M(RESPONSE_EXIT, "kong.response.exit", "Response_Exit", EXIT_ARGS, EMPTY,
      SL_PB_M_TERMINAL | SL_PB_M_WRITES),
    M(RESPONSE_GET_HEADER, "kong.response.get_header", "Response_GetHeader", STRING, STRING,
      SL_PB_M_LOG_SNAPSHOT),
    M(RESPONSE_GET_HEADERS, "kong.response.get_headers", "Response_GetHeaders", INT, STRUCT,
      SL_PB_M_LOG_SNAPSHOT),
    M(RESPONSE_GET_SOURCE, "kong.response.get_source", "Response_GetSource", EMPTY, STRING,
      SL_PB_M_LOG_SNAPSHOT),
    M(RESPONSE_GET_STATUS, "kong.response.get_status", "Response_GetStatus", EMPTY, INT,
      SL_PB_M_LOG_SNAPSHOT),
    M(RESPONSE_SET_HEADER, "kong.response.set_header", "Response_SetHeader", KV, EMPTY,
      SL_PB_M_WRITES),
    M(RESPONSE_SET_HEADERS, "kong.response.set_headers", "Response_SetHeaders", STRUCT, EMPTY,
      SL_PB_M_WRITES),
    M(RESPONSE_SET_STATUS, "kong.response.set_status", "Response_SetStatus", INT, EMPTY,
      SL_PB_M_WRITES),
    M(ROUTER_GET_ROUTE, "kong.router.get_route", "Router_GetRoute", EMPTY, ROUTE, 0),
    M(ROUTER_GET_SERVICE, "kong.router.get_service", "Router_GetService", EMPTY, SERVICE, 0),
    M(SERVICE_REQUEST_ADD_HEADER, "kong.service.request.add_header", "Service_Request_AddHeader",
      KV, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_CLEAR_HEADER, "kong.service.request.clear_header",
      "Service_Request_ClearHeader", STRING, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_HEADER, "kong.service.request.set_header", "Service_Request_SetHeader",
      KV, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_HEADERS, "kong.service.request.set_headers", "Service_Request_SetHeaders",
      STRUCT, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_METHOD, "kong.service.request.set_method", "Service_Request_SetMethod",
      STRING, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_PATH, "kong.service.request.set_path", "Service_Request_SetPath", STRING,
      EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_QUERY, "kong.service.request.set_query", "Service_Request_SetQuery",
      STRUCT, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_RAW_BODY, "kong.service.request.set_raw_body",
      "Service_Request_SetRawBody", BYTE_STRING, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_RAW_QUERY, "kong.service.request.set_raw_query",
      "Service_Request_SetRawQuery", STRING, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_REQUEST_SET_SCHEME, "kong.service.request.set_scheme", "Service_Request_SetScheme",
      STRING, EMPTY, SL_PB_M_WRITES),
    M(SERVICE_RESPONSE_GET_HEADER, "kong.service.response.get_header", "Service_Response_GetHeader",
      STRING, STRING, 0),
    M(SERVICE_RESPONSE_GET_HEADERS, "kong.service.response.get_headers",
      "Service_Response_GetHeaders", INT, STRUCT, 0),
    M(SERVICE_RESPONSE_GET_RAW_BODY, "kong.service.response.get_raw_body",
      "Service_Response_GetRawBody", EMPTY, BYTE_STRING, 0),
    M(SERVICE_RESPONSE_GET_STATUS, "kong.service.response.get_status", "Service_Response_GetStatus",
      EMPTY, INT, 0),
    M(SERVICE_SET_TARGET, "kong.service.set_target", "Service_SetTarget", TARGET, EMPTY,
      SL_PB_M_WRITES),
    M(SERVICE_SET_UPSTREAM, "kong.service.set_upstream", "Service_SetUpstream", STRING, BOOL,
      SL_PB_M_WRITES),
};

#undef M

/* Compares the NUL-terminated a with b[0, blen) bytewise, as strcmp. */
static int name_cmp(const char *a, const char *b, size_t blen)
{
    for (size_t i = 0; i < blen; i++) {
        unsigned char ca = (unsigned char)a[i], cb = (unsigned char)b[i];
        if (ca == '\0')
            return -1;
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return a[blen] ? 1 : 0;
}

const sl_pb_method_t *sl_pb_method_find(const char *name, size_t len)
{
    if (len == 0 || len > SL_PB_METHOD_NAME_MAX)
        return NULL;
    size_t lo = 0, hi = SL_PB_M_COUNT;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(methods[mid].name, name, len);
        if (c == 0)
            return &methods[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const sl_pb_method_t *sl_pb_method_get(sl_pb_method_id_t id)
{
    SL_ASSERT((unsigned)id < SL_PB_M_COUNT);
    return &methods[id];
}

/* ------------------------------------------------------------------------ */
/* Decoding: a bounded scan, then protobuf-c                                 */

/*
 * The scan walks the wire bytes with the message's descriptor and descends
 * into every length-delimited field the descriptor says is a message, as
 * protobuf-c will. Its bounds are looser than the JSON limits they guard,
 * since one level of JSON costs up to three levels of messages
 * (Value -> Struct -> entry -> Value) and one JSON value up to four fields
 * (entry, key, value, string); they only need to keep protobuf-c's
 * recursion and allocations in proportion. The conversion that follows
 * applies the exact limits.
 */
struct scan {
    unsigned max_depth;
    size_t max_fields;
    size_t fields;
    sl_pb_err_t *err;
};

static int scan_message(struct scan *s, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                        size_t n, unsigned depth)
{
    if (depth > s->max_depth) {
        sl_codec_err_set(s->err, "%s nested deeper than %u messages", d->short_name, s->max_depth);
        return SL_ERR_TOO_BIG;
    }
    size_t i = 0;
    while (i < n) {
        uint64_t key, len;
        size_t used = varint_get(p + i, n - i, &key);
        if (used == 0 || (key >> 3) == 0 || (key >> 3) > 536870911u) {
            sl_codec_err_set(s->err, "%s: bad field key at byte %zu", d->short_name, i);
            return SL_ERR_INVALID;
        }
        i += used;
        if (++s->fields > s->max_fields) {
            sl_codec_err_set(s->err, "%s: more than %zu fields", d->short_name, s->max_fields);
            return SL_ERR_TOO_BIG;
        }
        unsigned wt = (unsigned)(key & 7);
        switch (wt) {
        case 0:
            used = varint_get(p + i, n - i, &len);
            if (used == 0)
                goto truncated;
            i += used;
            break;
        case 1:
        case 5: {
            size_t w = wt == 1 ? 8 : 4;
            if (n - i < w)
                goto truncated;
            i += w;
            break;
        }
        case 2: {
            used = varint_get(p + i, n - i, &len);
            if (used == 0 || len > n - i - used)
                goto truncated;
            i += used;
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int rc = scan_message(s, f->descriptor, p + i, (size_t)len, depth + 1);
                if (rc != SL_OK)
                    return rc;
            }
            i += (size_t)len;
            break;
        }
        default:
            sl_codec_err_set(s->err, "%s: wire type %u (groups) is not protobuf 3", d->short_name,
                             wt);
            return SL_ERR_INVALID;
        }
    }
    return SL_OK;
truncated:
    sl_codec_err_set(s->err, "%s: a field runs past the end of its %zu bytes", d->short_name, n);
    return SL_ERR_INVALID;
}

/* Passes allocations through to the caller's allocator (or malloc) and
 * remembers a failure: protobuf-c answers NULL for bad bytes and for a
 * failed allocation alike. */
struct track {
    ProtobufCAllocator base;
    ProtobufCAllocator *inner;
    bool failed;
};

static void *track_alloc(void *data, size_t size)
{
    struct track *t = data;
    void *p = t->inner ? t->inner->alloc(t->inner->allocator_data, size) : malloc(size);
    if (!p)
        t->failed = true;
    return p;
}

static void track_free(void *data, void *ptr)
{
    struct track *t = data;
    if (t->inner)
        t->inner->free(t->inner->allocator_data, ptr);
    else
        free(ptr);
}

int sl_pb_decode(const ProtobufCMessageDescriptor *d, const void *p, size_t n,
                 const sl_pb_limits_t *lim, ProtobufCAllocator *alloc, ProtobufCMessage **out,
                 sl_pb_err_t *err)
{
    sl_pb_limits_t l = limits_of(lim);
    struct scan s = {3 * l.max_depth + 4, 4 * l.max_nodes + 16, 0, err};
    int rc = scan_message(&s, d, p, n, 0);
    if (rc != SL_OK)
        return rc;
    struct track t = {{track_alloc, track_free, NULL}, alloc, false};
    t.base.allocator_data = &t;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &t.base, n, n ? p : (const void *)"");
    if (!m) {
        if (t.failed) {
            sl_codec_err_set(err, "out of memory decoding a %s of %zu bytes", d->short_name, n);
            return SL_ERR_NOMEM;
        }
        sl_codec_err_set(err, "%zu bytes are not a valid %s message", n, d->short_name);
        return SL_ERR_INVALID;
    }
    *out = m;
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Protobuf to JSON                                                          */

/*
 * One conversion, either way. depth counts the containers around the value
 * at hand; nodes counts the JSON values made or read so far.
 */
struct conv {
    unsigned max_depth;
    size_t max_nodes;
    size_t nodes;
    sl_arena_t *arena; /* JSON to protobuf only */
    sl_pb_err_t *err;
};

static void conv_init(struct conv *c, const sl_pb_limits_t *lim, sl_arena_t *arena,
                      sl_pb_err_t *err)
{
    sl_pb_limits_t l = limits_of(lim);
    c->max_depth = l.max_depth;
    c->max_nodes = l.max_nodes;
    c->nodes = 0;
    c->arena = arena;
    c->err = err;
}

static int count_node(struct conv *c)
{
    if (++c->nodes > c->max_nodes) {
        sl_codec_err_set(c->err, "a table with more than %zu values is over the limit",
                         c->max_nodes);
        return SL_ERR_TOO_BIG;
    }
    return SL_OK;
}

/* A container enclosed by `depth` others may open if it stays in bounds. */
static int enter(struct conv *c, unsigned depth)
{
    if (depth >= c->max_depth) {
        sl_codec_err_set(c->err, "tables nested deeper than %u levels are over the limit",
                         c->max_depth);
        return SL_ERR_TOO_BIG;
    }
    return SL_OK;
}

static int nomem(struct conv *c)
{
    sl_codec_err_set(c->err, "out of memory converting a table to JSON");
    return SL_ERR_NOMEM;
}

/* Lua has one number type and prints 1.0 as 1: an integral double that a
 * double holds exactly becomes a JSON integer. JSON has no NaN or
 * infinity. */
static int number_to_json(struct conv *c, double d, json_t **out)
{
    if (!isfinite(d)) {
        sl_codec_err_set(c->err, "the number %g has no JSON form", d);
        return SL_ERR_INVALID;
    }
    json_t *j;
    if (d == trunc(d) && fabs(d) <= 9007199254740992.0)
        j = json_integer((json_int_t)d);
    else
        j = json_real(d);
    if (!j)
        return nomem(c);
    *out = j;
    return SL_OK;
}

static int string_to_json(struct conv *c, const char *s, size_t n, json_t **out)
{
    if (!s)
        s = "";
    if (!utf8_valid(s, n)) {
        /* s is a protobuf field: not NUL-terminated when it is bytes. */
        sl_codec_err_set(c->err, "a string is not UTF-8 (%zu bytes)", n);
        return SL_ERR_INVALID;
    }
    json_t *j = json_stringn(s, n);
    if (!j)
        return nomem(c);
    *out = j;
    return SL_OK;
}

static int value_to_json(struct conv *c, const KongPluginProtocol__Value *v, unsigned depth,
                         json_t **out);

static int struct_to_json(struct conv *c, const KongPluginProtocol__Struct *s, unsigned depth,
                          json_t **out)
{
    int rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    json_t *o = json_object();
    if (!o)
        return nomem(c);
    for (size_t i = 0; s && i < s->n_fields; i++) {
        const KongPluginProtocol__Struct__FieldsEntry *e = s->fields[i];
        const char *key = e->key ? e->key : "";
        json_t *jv;
        if (!utf8_valid(key, strlen(key))) {
            sl_codec_err_set(c->err, "a table key is not UTF-8: \"%.40s\"", key);
            rc = SL_ERR_INVALID;
            break;
        }
        if (e->value) {
            rc = value_to_json(c, e->value, depth + 1, &jv);
        } else if ((rc = count_node(c)) == SL_OK) {
            jv = json_null();
        }
        if (rc != SL_OK)
            break;
        if (json_object_set_new(o, key, jv) != 0) {
            rc = nomem(c);
            break;
        }
    }
    if (rc != SL_OK) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return SL_OK;
}

static int list_to_json(struct conv *c, const KongPluginProtocol__ListValue *l, unsigned depth,
                        json_t **out)
{
    int rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    json_t *a = json_array();
    if (!a)
        return nomem(c);
    for (size_t i = 0; l && i < l->n_values; i++) {
        json_t *jv;
        if (l->values[i]) {
            rc = value_to_json(c, l->values[i], depth + 1, &jv);
        } else if ((rc = count_node(c)) == SL_OK) {
            jv = json_null();
        }
        if (rc != SL_OK)
            break;
        if (json_array_append_new(a, jv) != 0) {
            rc = nomem(c);
            break;
        }
    }
    if (rc != SL_OK) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return SL_OK;
}

static int value_to_json(struct conv *c, const KongPluginProtocol__Value *v, unsigned depth,
                         json_t **out)
{
    int rc = count_node(c);
    if (rc != SL_OK)
        return rc;
    json_t *j;
    switch (v->kind_case) {
    case KONG_PLUGIN_PROTOCOL__VALUE__KIND_NUMBER_VALUE:
        return number_to_json(c, v->number_value, out);
    case KONG_PLUGIN_PROTOCOL__VALUE__KIND_STRING_VALUE:
        return string_to_json(c, v->string_value, v->string_value ? strlen(v->string_value) : 0,
                              out);
    case KONG_PLUGIN_PROTOCOL__VALUE__KIND_BOOL_VALUE:
        j = json_boolean(v->bool_value);
        break;
    case KONG_PLUGIN_PROTOCOL__VALUE__KIND_STRUCT_VALUE:
        return struct_to_json(c, v->struct_value, depth, out);
    case KONG_PLUGIN_PROTOCOL__VALUE__KIND_LIST_VALUE:
        return list_to_json(c, v->list_value, depth, out);
    default: /* null_value, or no kind at all: Lua's nil */
        j = json_null();
        break;
    }
    *out = j;
    return SL_OK;
}

static int any_to_json(struct conv *c, const ProtobufCMessage *m, unsigned depth, json_t **out);

/* The size of one element of a repeated field of this type. */
static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default: /* the 32-bit integers and float */
        return 4;
    }
}

/* protobuf-c has no flag for map fields: a map is a repeated message
 * whose type is an "...Entry" with key (1) and value (2). */
static bool is_map(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    size_t nl = strlen(e->short_name);
    return e->n_fields == 2 && nl > 5 && strcmp(e->short_name + nl - 5, "Entry") == 0 &&
           e->fields[0].id == 1 && strcmp(e->fields[0].name, "key") == 0 &&
           e->fields[0].type == PROTOBUF_C_TYPE_STRING && e->fields[1].id == 2 &&
           strcmp(e->fields[1].name, "value") == 0;
}

static int scalar_to_json(struct conv *c, const ProtobufCFieldDescriptor *f, const void *member,
                          json_t **out)
{
    int rc = count_node(c);
    if (rc != SL_OK)
        return rc;
    json_t *j;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        j = json_integer(*(const int32_t *)member);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        j = json_integer(*(const uint32_t *)member);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        j = json_integer((json_int_t) * (const int64_t *)member);
        break;
    case PROTOBUF_C_TYPE_ENUM:
        j = json_integer(*(const int *)member);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        j = json_boolean(*(const protobuf_c_boolean *)member);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        return number_to_json(c, *(const float *)member, out);
    case PROTOBUF_C_TYPE_DOUBLE:
        return number_to_json(c, *(const double *)member, out);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return string_to_json(c, s, s ? strlen(s) : 0, out);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = member;
        return string_to_json(c, (const char *)b->data, b->len, out);
    }
    default:
        SL_ASSERT(!"message fields are not scalars");
        return SL_ERR_INVALID;
    }
    if (!j)
        return nomem(c);
    *out = j;
    return SL_OK;
}

/* One element of a repeated field (or a map entry's value). */
static int elem_to_json(struct conv *c, const ProtobufCFieldDescriptor *f, const void *member,
                        unsigned depth, json_t **out)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
        return scalar_to_json(c, f, member, out);
    const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)member;
    if (sub)
        return any_to_json(c, sub, depth, out);
    int rc = count_node(c);
    if (rc == SL_OK)
        *out = json_null();
    return rc;
}

static int repeated_to_json(struct conv *c, const ProtobufCFieldDescriptor *f, const void *arr,
                            size_t n, unsigned depth, json_t **out)
{
    int rc = count_node(c);
    if (rc == SL_OK)
        rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    bool map = is_map(f);
    json_t *j = map ? json_object() : json_array();
    if (!j)
        return nomem(c);
    for (size_t i = 0; i < n && rc == SL_OK; i++) {
        const void *member = (const char *)arr + i * elem_size(f);
        json_t *jv;
        if (map) {
            const ProtobufCMessage *e = *(const ProtobufCMessage *const *)member;
            const ProtobufCFieldDescriptor *kf = &e->descriptor->fields[0];
            const ProtobufCFieldDescriptor *vf = &e->descriptor->fields[1];
            const char *key = *(char *const *)((const char *)e + kf->offset);
            key = key ? key : "";
            if (!utf8_valid(key, strlen(key))) {
                sl_codec_err_set(c->err, "a map key is not UTF-8: \"%.40s\"", key);
                rc = SL_ERR_INVALID;
            } else if ((rc = elem_to_json(c, vf, (const char *)e + vf->offset, depth + 1, &jv)) ==
                           SL_OK &&
                       json_object_set_new(j, key, jv) != 0) {
                rc = nomem(c);
            }
        } else if ((rc = elem_to_json(c, f, member, depth + 1, &jv)) == SL_OK &&
                   json_array_append_new(j, jv) != 0) {
            rc = nomem(c);
        }
    }
    if (rc != SL_OK) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return SL_OK;
}

/* Any other message: an object, one key per field (proto3 fields only:
 * every scalar, submessages when present, the set member of a oneof). */
static int fields_to_json(struct conv *c, const ProtobufCMessage *m, unsigned depth, json_t **out)
{
    int rc = count_node(c);
    if (rc == SL_OK)
        rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    json_t *o = json_object();
    if (!o)
        return nomem(c);
    for (unsigned i = 0; i < d->n_fields && rc == SL_OK; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = base + f->offset;
        json_t *jv = NULL;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            rc = repeated_to_json(c, f, *(const void *const *)member, n, depth + 1, &jv);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)member;
            if (!sub)
                continue;
            rc = any_to_json(c, sub, depth + 1, &jv);
        } else {
            rc = scalar_to_json(c, f, member, &jv);
        }
        if (rc == SL_OK && json_object_set_new(o, f->name, jv) != 0)
            rc = nomem(c);
    }
    if (rc != SL_OK) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return SL_OK;
}

static int any_to_json(struct conv *c, const ProtobufCMessage *m, unsigned depth, json_t **out)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    int rc;
    if (d == &kong_plugin_protocol__value__descriptor)
        return value_to_json(c, (const KongPluginProtocol__Value *)m, depth, out);
    if (d == &kong_plugin_protocol__struct__descriptor) {
        if ((rc = count_node(c)) != SL_OK)
            return rc;
        return struct_to_json(c, (const KongPluginProtocol__Struct *)m, depth, out);
    }
    if (d == &kong_plugin_protocol__list_value__descriptor) {
        if ((rc = count_node(c)) != SL_OK)
            return rc;
        return list_to_json(c, (const KongPluginProtocol__ListValue *)m, depth, out);
    }
    return fields_to_json(c, m, depth, out);
}

int sl_pb_message_to_json(const ProtobufCMessage *m, const sl_pb_limits_t *lim, json_t **out,
                          sl_pb_err_t *err)
{
    struct conv c;
    conv_init(&c, lim, NULL, err);
    return any_to_json(&c, m, 0, out);
}

/* ------------------------------------------------------------------------ */
/* JSON to protobuf (messages built in c->arena)                             */

/* SL_DECLINED from these means "this JSON value does not fit the field":
 * the field is left out, or the whole message refused at the top. */

static void *new_message(struct conv *c, const ProtobufCMessageDescriptor *d)
{
    void *m = sl_arena_alloc(c->arena, d->sizeof_message);
    protobuf_c_message_init(d, m);
    return m;
}

static int value_from_json(struct conv *c, const json_t *j, unsigned depth,
                           KongPluginProtocol__Value **out);

static int struct_from_json(struct conv *c, const json_t *obj, unsigned depth,
                            KongPluginProtocol__Struct **out)
{
    int rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    KongPluginProtocol__Struct *s = new_message(c, &kong_plugin_protocol__struct__descriptor);
    size_t n = json_object_size(obj);
    s->fields = sl_arena_alloc(c->arena, (n ? n : 1) * sizeof(*s->fields));
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        KongPluginProtocol__Struct__FieldsEntry *e =
            new_message(c, &kong_plugin_protocol__struct__fields_entry__descriptor);
        e->key = (char *)key;
        rc = value_from_json(c, val, depth + 1, &e->value);
        if (rc != SL_OK)
            return rc;
        s->fields[s->n_fields++] = e;
    }
    *out = s;
    return SL_OK;
}

static int list_from_json(struct conv *c, const json_t *arr, unsigned depth,
                          KongPluginProtocol__ListValue **out)
{
    int rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    KongPluginProtocol__ListValue *l =
        new_message(c, &kong_plugin_protocol__list_value__descriptor);
    size_t n = json_array_size(arr);
    l->values = sl_arena_alloc(c->arena, (n ? n : 1) * sizeof(*l->values));
    for (size_t i = 0; i < n; i++) {
        rc = value_from_json(c, json_array_get(arr, i), depth + 1, &l->values[i]);
        if (rc != SL_OK)
            return rc;
    }
    l->n_values = n;
    *out = l;
    return SL_OK;
}

static int value_from_json(struct conv *c, const json_t *j, unsigned depth,
                           KongPluginProtocol__Value **out)
{
    int rc = count_node(c);
    if (rc != SL_OK)
        return rc;
    KongPluginProtocol__Value *v = new_message(c, &kong_plugin_protocol__value__descriptor);
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v->kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_STRUCT_VALUE;
        rc = struct_from_json(c, j, depth, &v->struct_value);
        break;
    case JSON_ARRAY:
        v->kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_LIST_VALUE;
        rc = list_from_json(c, j, depth, &v->list_value);
        break;
    case JSON_STRING:
        v->kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_STRING_VALUE;
        v->string_value = (char *)json_string_value(j);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        v->kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_NUMBER_VALUE;
        v->number_value = json_number_value(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_BOOL_VALUE;
        v->bool_value = json_is_true(j);
        break;
    case JSON_NULL:
        v->kind_case = KONG_PLUGIN_PROTOCOL__VALUE__KIND_NULL_VALUE;
        v->null_value = KONG_PLUGIN_PROTOCOL__NULL_VALUE__NULL_VALUE;
        break;
    }
    if (rc != SL_OK)
        return rc;
    *out = v;
    return SL_OK;
}

/* A JSON number that is a whole number within int64. */
static bool json_whole(const json_t *j, int64_t *x)
{
    if (json_is_integer(j)) {
        *x = (int64_t)json_integer_value(j);
        return true;
    }
    if (!json_is_real(j))
        return false;
    double d = json_real_value(j);
    if (d != trunc(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return false;
    *x = (int64_t)d;
    return true;
}

static int scalar_from_json(struct conv *c, const ProtobufCFieldDescriptor *f, const json_t *j,
                            void *member)
{
    int rc = count_node(c);
    if (rc != SL_OK)
        return rc;
    int64_t x;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        if (!json_whole(j, &x) || x < INT32_MIN || x > INT32_MAX)
            return SL_DECLINED;
        *(int32_t *)member = (int32_t)x;
        return SL_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (!json_whole(j, &x) || x < 0 || x > UINT32_MAX)
            return SL_DECLINED;
        *(uint32_t *)member = (uint32_t)x;
        return SL_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (!json_whole(j, &x))
            return SL_DECLINED;
        *(int64_t *)member = x;
        return SL_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (!json_whole(j, &x) || x < 0)
            return SL_DECLINED;
        *(uint64_t *)member = (uint64_t)x;
        return SL_OK;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            return SL_DECLINED;
        *(protobuf_c_boolean *)member = json_is_true(j);
        return SL_OK;
    case PROTOBUF_C_TYPE_FLOAT:
        if (!json_is_number(j))
            return SL_DECLINED;
        *(float *)member = (float)json_number_value(j);
        return SL_OK;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(j))
            return SL_DECLINED;
        *(double *)member = json_number_value(j);
        return SL_OK;
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(j))
            return SL_DECLINED;
        *(char **)member = (char *)json_string_value(j);
        return SL_OK;
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(j))
            return SL_DECLINED;
        ProtobufCBinaryData *b = member;
        b->data = (uint8_t *)json_string_value(j);
        b->len = json_string_length(j);
        return SL_OK;
    }
    default:
        SL_ASSERT(!"message fields are not scalars");
        return SL_ERR_INVALID;
    }
}

static int any_from_json(struct conv *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                         unsigned depth, ProtobufCMessage **out);

static int elem_from_json(struct conv *c, const ProtobufCFieldDescriptor *f, const json_t *j,
                          unsigned depth, void *member)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return any_from_json(c, f->descriptor, j, depth, (ProtobufCMessage **)member);
    return scalar_from_json(c, f, j, member);
}

static int repeated_from_json(struct conv *c, const ProtobufCFieldDescriptor *f, const json_t *j,
                              unsigned depth, char *base)
{
    bool map = is_map(f);
    if (map ? !json_is_object(j) : !json_is_array(j))
        return SL_DECLINED;
    int rc = count_node(c);
    if (rc == SL_OK)
        rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    size_t n = map ? json_object_size(j) : json_array_size(j), used = 0;
    size_t esz = elem_size(f);
    char *arr = sl_arena_alloc(c->arena, (n ? n : 1) * esz);
    if (map) {
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val)
        {
            char *e = new_message(c, ed);
            *(char **)(e + ed->fields[0].offset) = (char *)key;
            rc = elem_from_json(c, &ed->fields[1], val, depth + 1, e + ed->fields[1].offset);
            if (rc == SL_OK)
                ((void **)arr)[used++] = e;
            else if (rc != SL_DECLINED)
                return rc;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            char *member = arr + used * esz;
            memset(member, 0, esz);
            rc = elem_from_json(c, f, json_array_get(j, i), depth + 1, member);
            if (rc == SL_OK)
                used++;
            else if (rc != SL_DECLINED)
                return rc;
        }
    }
    *(size_t *)(base + f->quantifier_offset) = used;
    *(void **)(base + f->offset) = arr;
    return SL_OK;
}

/* An object to a message by field names (see sl_pb_put_json). */
static int fields_from_json(struct conv *c, const ProtobufCMessageDescriptor *d, const json_t *obj,
                            unsigned depth, ProtobufCMessage **out)
{
    int rc = count_node(c);
    if (rc == SL_OK)
        rc = enter(c, depth);
    if (rc != SL_OK)
        return rc;
    char *base = new_message(c, d);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const json_t *jv = json_object_get(obj, f->name);
        bool oneof = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
        if (!jv || json_is_null(jv))
            continue;
        if (oneof && *(uint32_t *)(base + f->quantifier_offset) != 0)
            continue; /* the lowest-numbered member given wins */
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            rc = repeated_from_json(c, f, jv, depth + 1, base);
        else
            rc = elem_from_json(c, f, jv, depth + 1, base + f->offset);
        if (rc == SL_DECLINED)
            continue;
        if (rc != SL_OK)
            return rc;
        if (oneof)
            *(uint32_t *)(base + f->quantifier_offset) = f->id;
    }
    *out = (ProtobufCMessage *)base;
    return SL_OK;
}

static int any_from_json(struct conv *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                         unsigned depth, ProtobufCMessage **out)
{
    int rc;
    if (d == &kong_plugin_protocol__value__descriptor)
        return value_from_json(c, j, depth, (KongPluginProtocol__Value **)out);
    if (d == &kong_plugin_protocol__struct__descriptor) {
        if (!json_is_object(j))
            return SL_DECLINED;
        if ((rc = count_node(c)) != SL_OK)
            return rc;
        return struct_from_json(c, j, depth, (KongPluginProtocol__Struct **)out);
    }
    if (d == &kong_plugin_protocol__list_value__descriptor) {
        if (!json_is_array(j))
            return SL_DECLINED;
        if ((rc = count_node(c)) != SL_OK)
            return rc;
        return list_from_json(c, j, depth, (KongPluginProtocol__ListValue **)out);
    }
    if (!json_is_object(j))
        return SL_DECLINED;
    return fields_from_json(c, d, j, depth, out);
}

/* go-pdk's GetMemoryStats reads these three without nil checks. */
static void memory_stats_complete(struct conv *c, KongPluginProtocol__MemoryStats *ms)
{
    if (!ms->lua_shared_dicts)
        ms->lua_shared_dicts =
            new_message(c, &kong_plugin_protocol__memory_stats__lua_shared_dicts__descriptor);
    KongPluginProtocol__MemoryStats__LuaSharedDicts *d = ms->lua_shared_dicts;
    const ProtobufCMessageDescriptor *sd =
        &kong_plugin_protocol__memory_stats__lua_shared_dicts__dict_stats__descriptor;
    if (!d->kong)
        d->kong = new_message(c, sd);
    if (!d->kong_db_cache)
        d->kong_db_cache = new_message(c, sd);
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static bool is_wrapper(sl_pb_type_t t)
{
    return t == SL_PB_T_STRING || t == SL_PB_T_INT || t == SL_PB_T_NUMBER || t == SL_PB_T_BOOL ||
           t == SL_PB_T_BYTE_STRING;
}

int sl_pb_put_json(sl_sb_t *out, sl_pb_type_t type, const json_t *v, const sl_pb_limits_t *lim,
                   sl_pb_err_t *err)
{
    const ProtobufCMessageDescriptor *d = sl_pb_type_descriptor(type);
    if (type == SL_PB_T_EMPTY || (!v && type != SL_PB_T_MEMORY_STATS)) {
        sl_pb_put_empty(out);
        return SL_OK;
    }
    sl_arena_t arena;
    sl_arena_init(&arena);
    struct conv c;
    conv_init(&c, lim, &arena, err);
    json_t *none = NULL;
    ProtobufCMessage *m = NULL;
    int rc;
    if (!v)
        v = none = json_object(); /* MemoryStats: the nested messages even for nil */
    if (!v) {
        rc = nomem(&c);
    } else if (is_wrapper(type) && !json_is_object(v)) {
        m = new_message(&c, d);
        rc = scalar_from_json(&c, &d->fields[0], v, (char *)m + d->fields[0].offset);
    } else {
        rc = any_from_json(&c, d, v, 0, &m);
    }
    if (rc == SL_DECLINED) {
        sl_codec_err_set(err, "a %s cannot be made from %s", d->short_name, json_type_name(v));
        rc = SL_ERR_INVALID;
    }
    if (rc == SL_OK) {
        if (type == SL_PB_T_MEMORY_STATS)
            memory_stats_complete(&c, (KongPluginProtocol__MemoryStats *)m);
        sl_pb_frame_put_msg(out, m);
    }
    json_decref(none);
    sl_arena_dispose(&arena);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* PDK arguments (frame B)                                                   */

static sl_str_t cstr(const char *s)
{
    s = s ? s : "";
    return (sl_str_t){s, strlen(s)};
}

static sl_str_t bin(ProtobufCBinaryData b)
{
    return (sl_str_t){b.len ? (const char *)b.data : "", b.len};
}

int sl_pb_arg_decode(sl_pb_type_t type, const void *p, size_t n, const sl_pb_limits_t *lim,
                     ProtobufCAllocator *alloc, sl_pb_arg_t *arg, sl_pb_err_t *err)
{
    ProtobufCMessage *m;
    int rc = sl_pb_decode(sl_pb_type_descriptor(type), p, n, lim, alloc, &m, err);
    if (rc != SL_OK)
        return rc;
    sl_pb_arg_t a;
    memset(&a, 0, sizeof(a));
    a.type = type;
    a.msg = m;
    a.alloc = alloc;
    struct conv c;
    conv_init(&c, lim, NULL, err);
    switch (type) {
    case SL_PB_T_EMPTY:
        break;
    case SL_PB_T_STRING:
        a.v.str = cstr(((KongPluginProtocol__String *)m)->v);
        break;
    case SL_PB_T_INT:
        a.v.i = ((KongPluginProtocol__Int *)m)->v;
        break;
    case SL_PB_T_NUMBER:
        a.v.num = ((KongPluginProtocol__Number *)m)->v;
        break;
    case SL_PB_T_BOOL:
        a.v.b = ((KongPluginProtocol__Bool *)m)->v;
        break;
    case SL_PB_T_BYTE_STRING:
        a.v.bytes = bin(((KongPluginProtocol__ByteString *)m)->v);
        break;
    case SL_PB_T_KV: {
        const KongPluginProtocol__KV *kv = (const KongPluginProtocol__KV *)m;
        a.v.key = cstr(kv->k);
        if (kv->v)
            rc = value_to_json(&c, kv->v, 0, &a.json);
        else
            a.json = json_null();
        break;
    }
    case SL_PB_T_EXIT_ARGS: {
        const KongPluginProtocol__ExitArgs *x = (const KongPluginProtocol__ExitArgs *)m;
        a.v.exit.status = x->status;
        a.v.exit.body = bin(x->body);
        if (x->headers)
            rc = any_to_json(&c, &x->headers->base, 0, &a.json);
        break;
    }
    case SL_PB_T_TARGET: {
        const KongPluginProtocol__Target *t = (const KongPluginProtocol__Target *)m;
        a.v.target.host = cstr(t->host);
        a.v.target.port = t->port;
        break;
    }
    case SL_PB_T_CONSUMER_SPEC: {
        const KongPluginProtocol__ConsumerSpec *s = (const KongPluginProtocol__ConsumerSpec *)m;
        a.v.consumer_spec.id = cstr(s->id);
        a.v.consumer_spec.by_username = s->by_username;
        break;
    }
    case SL_PB_T_AUTHENTICATE_ARGS: {
        const KongPluginProtocol__AuthenticateArgs *x =
            (const KongPluginProtocol__AuthenticateArgs *)m;
        a.v.auth.consumer = x->consumer;
        a.v.auth.credential = x->credential;
        rc = any_to_json(&c, m, 0, &a.json);
        break;
    }
    default: /* Struct, ListValue, Value, entities and results */
        rc = any_to_json(&c, m, 0, &a.json);
        break;
    }
    if (rc != SL_OK) {
        protobuf_c_message_free_unpacked(m, alloc);
        return rc;
    }
    *arg = a;
    return SL_OK;
}

void sl_pb_arg_dispose(sl_pb_arg_t *arg)
{
    if (arg->msg)
        protobuf_c_message_free_unpacked(arg->msg, arg->alloc);
    json_decref(arg->json);
    memset(arg, 0, sizeof(*arg));
}

/* ------------------------------------------------------------------------ */
/* Answers (frame C): the scalar wrappers by hand, field 1 of each           */

void sl_pb_put_empty(sl_sb_t *out)
{
    frame_reserve(out, 0);
}

/* The length of s[0, n) once every byte that does not start a valid UTF-8
 * sequence is replaced by U+FFFD (3 bytes); with dst, also writes it. */
static size_t utf8_repair(const char *s, size_t n, uint8_t *dst)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = sl_utf8_len(p + i, n - i);
        if (l == 0) {
            if (dst)
                memcpy(dst + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            if (dst)
                memcpy(dst + o, p + i, l);
            o += l;
            i += l;
        }
    }
    return o;
}

void sl_pb_put_string(sl_sb_t *out, const char *s, size_t n)
{
    size_t m = utf8_repair(s, n, NULL);
    if (m == n) {
        frame_put_field(out, 0x0a, s, n, false);
        return;
    }
    uint8_t *dst = frame_reserve(out, 1 + varint_size(m) + m);
    dst[0] = 0x0a;
    size_t k = 1 + varint_put(dst + 1, m);
    utf8_repair(s, n, dst + k);
}

void sl_pb_put_string_set(sl_sb_t *out, const char *s, size_t n)
{
    if (n)
        sl_pb_put_string(out, s, n);
    else
        frame_put_field(out, 0x0a, s, 0, true);
}

void sl_pb_put_int(sl_sb_t *out, int32_t v)
{
    if (v == 0) {
        frame_reserve(out, 0);
        return;
    }
    /* A negative int32 is sign-extended to a 10-byte varint (protobuf). */
    uint64_t u = (uint64_t)(int64_t)v;
    uint8_t *dst = frame_reserve(out, 1 + varint_size(u));
    dst[0] = 0x08;
    varint_put(dst + 1, u);
}

void sl_pb_put_number(sl_sb_t *out, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    if (bits == 0) { /* +0.0 is the default; -0.0 is not */
        frame_reserve(out, 0);
        return;
    }
    uint8_t *dst = frame_reserve(out, 9);
    dst[0] = 0x09; /* field 1, wire type 1 (64 bits) */
    for (int i = 0; i < 8; i++)
        dst[1 + i] = (uint8_t)(bits >> (8 * i));
}

void sl_pb_put_bool(sl_sb_t *out, bool v)
{
    if (!v) {
        frame_reserve(out, 0);
        return;
    }
    uint8_t *dst = frame_reserve(out, 2);
    dst[0] = 0x08;
    dst[1] = 0x01;
}

void sl_pb_put_bytes(sl_sb_t *out, const void *p, size_t n)
{
    frame_put_field(out, 0x0a, p, n, false);
}

void sl_pb_put_raw_body(sl_sb_t *out, sl_pb_raw_body_t kind, const void *p, size_t n)
{
    SL_ASSERT(kind >= SL_PB_RAW_CONTENT && kind <= SL_PB_RAW_ERROR);
    frame_put_field(out, (uint8_t)(kind << 3 | 2), p, n, true);
}

/* ------------------------------------------------------------------------ */
/* The callback loop of one event (2.4)                                      */

static int ev_fail(sl_pb_event_t *ev, int rc)
{
    ev->state = SL_PB_EV_FAILED;
    return rc;
}

void sl_pb_event_start(sl_pb_event_t *ev, sl_sb_t *out, int64_t seq, int32_t instance_id,
                       const char *event)
{
    memset(ev, 0, sizeof(*ev));
    ev->seq = seq;
    ev->state = SL_PB_EV_METHOD;
    sl_pb_call_handle_event(out, seq, instance_id, event);
}

int sl_pb_event_feed(sl_pb_event_t *ev, const void *frame, size_t len, sl_pb_call_t *call)
{
    char name[300];
    int rc;
    switch (ev->state) {
    case SL_PB_EV_METHOD:
        if (len == 0) { /* the end marker: the RpcReturn follows */
            ev->state = SL_PB_EV_RETURN;
            return SL_AGAIN;
        }
        ev->pending = sl_pb_method_find(frame, len);
        if (!ev->pending) {
            quote(name, sizeof(name), frame, len);
            sl_codec_err_set(&ev->err, "plugin called \"%s\", which is not a PDK method of Kong's",
                             name);
            return ev_fail(ev, SL_ERR_NOT_FOUND);
        }
        ev->state = SL_PB_EV_ARG;
        return SL_AGAIN;
    case SL_PB_EV_ARG:
        call->method = ev->pending;
        call->arg = frame;
        call->arg_len = len;
        ev->calls++;
        /* Kong never answers kong.response.exit: it records the exit and
         * abandons the handler; go-pdk closes the connection after it. */
        ev->state = (ev->pending->flags & SL_PB_M_TERMINAL) ? SL_PB_EV_EXITED : SL_PB_EV_ANSWER;
        return SL_OK;
    case SL_PB_EV_RETURN:
        rc = sl_pb_return_parse(frame, len, ev->seq, SL_PB_RETURN_ANY, NULL, NULL, &ev->err);
        if (rc == SL_DECLINED) {
            sl_codec_err_set(&ev->err, "plugin server sent two end markers in event %" PRId64,
                             ev->seq);
            rc = SL_ERR_INVALID;
        }
        if (rc != SL_OK)
            return ev_fail(ev, rc);
        ev->pending = NULL;
        ev->state = SL_PB_EV_DONE;
        return SL_DONE;
    case SL_PB_EV_ANSWER:
        sl_codec_err_set(&ev->err, "plugin server sent a frame before its call to %s was answered",
                         ev->pending->name);
        return ev_fail(ev, SL_ERR_INVALID);
    default:
        sl_codec_err_set(&ev->err, "plugin server sent a frame after event %" PRId64 " ended (%s)",
                         ev->seq,
                         ev->state == SL_PB_EV_EXITED ? "kong.response.exit"
                         : ev->state == SL_PB_EV_DONE ? "finished"
                                                      : "failed");
        return ev_fail(ev, SL_ERR_INVALID);
    }
}

int sl_pb_event_answered(sl_pb_event_t *ev)
{
    if (ev->state != SL_PB_EV_ANSWER) {
        sl_codec_err_set(&ev->err, "no PDK call of event %" PRId64 " awaits an answer", ev->seq);
        return SL_ERR_INVALID;
    }
    ev->state = SL_PB_EV_METHOD;
    return SL_OK;
}
