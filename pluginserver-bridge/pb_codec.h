/*
 * The ProtoBuf:1 wire layer of the plugin-server bridge: Kong's protocol
 * between a gateway and a go-pdk plugin server (reference:
 * plugin-protocol.md sections 2 to 4 and 6.1), as pure functions over byte
 * buffers. Nothing here owns a socket, a timer or an event loop: the data
 * plane reads bytes, cuts them into frames with sl_pb_frame_decode, feeds
 * the frames of an event to an sl_pb_event_t, performs the PDK calls it
 * yields and writes the frames built here. Tests and fuzzers drive the same
 * functions without a socket.
 *
 * What travels (section 2):
 *
 *   gateway -> server   RpcCall{sequence, cmd_*}                  one frame
 *   server -> gateway   RpcReturn{sequence, ...}                  one frame
 *
 * and, during cmd_handle_event, before its RpcReturn, any number of PDK
 * callbacks, each three frames: the method name (raw bytes), its argument
 * (a serialized message; zero-length for Empty), then the gateway's answer
 * (a serialized message; zero-length for Empty or nil). A zero-length frame
 * where a method name would be is the end marker; the RpcReturn follows.
 * kong.response.exit is never answered: the gateway records the exit and
 * closes the connection (section 2.4).
 *
 * Frames built here are appended to an sl_sb_t (common/strbuf.h), so that a
 * call and its frames go out in one write. Messages decoded here come from
 * protobuf-c (build/gen/pluginsocket.pb-c.h, from proto/pluginsocket.proto)
 * after a bounded pre-scan; tables (Struct, ListValue, Value and entity
 * messages) convert to and from jansson values within sl_pb_limits_t.
 *
 * Thread-safety: every function is reentrant; the method table is constant.
 * Errors: functions return SL_OK or a small positive code as documented, or
 * a negative SL_ERR_*; when an sl_pb_err_t is given (it may be NULL), it
 * receives a message for the log that names what was wrong.
 */
#ifndef SL_PB_CODEC_H
#define SL_PB_CODEC_H

#include "pluginsocket.pb-c.h"
#include "strbuf.h"
#include "util-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Limits and errors -------------------------------------------------- */

/* Kong sets no bound on a frame; Sluice refuses a frame longer than this
 * unless the caller passes another maximum. */
#define SL_PB_FRAME_MAX_DEFAULT (16u << 20)
/* The 4-byte little-endian length before every payload. */
#define SL_PB_FRAME_HEAD 4
/* A method name longer than this is unknown without a look-up. */
#define SL_PB_METHOD_NAME_MAX 64

/*
 * Bounds on the tables a peer sends or the gateway converts. max_depth is
 * the nesting of JSON containers ({"a": [1]} is 2 deep); max_nodes the
 * number of JSON values in one conversion (every key's value and every
 * element counts). Before protobuf-c sees a message, a scan of its bytes
 * refuses nesting and field counts far beyond these (protobuf-c itself
 * recurses without a bound), so that a hostile frame costs neither stack
 * nor memory; the conversion then applies them exactly. max_depth is
 * clamped to SL_PB_DEPTH_CEILING.
 */
typedef struct sl_pb_limits_s {
    unsigned max_depth;
    size_t max_nodes;
} sl_pb_limits_t;

#define SL_PB_DEPTH_DEFAULT 64
#define SL_PB_NODES_DEFAULT 100000
#define SL_PB_DEPTH_CEILING 256

/* Passing NULL for a limits pointer means these. */
#define SL_PB_LIMITS_DEFAULT ((sl_pb_limits_t){SL_PB_DEPTH_DEFAULT, SL_PB_NODES_DEFAULT})

typedef sl_codec_err_t sl_pb_err_t;

/* ---- Framing (section 2.1) ---------------------------------------------- */

/* A frame found in a buffer: borrowed, valid while that buffer is. */
typedef struct sl_pb_frame_s {
    const uint8_t *p; /* the payload */
    size_t len;       /* its length (0 is legal) */
    size_t size;      /* SL_PB_FRAME_HEAD + len: what to drain from the buffer */
} sl_pb_frame_t;

/*
 * Reads the length of the frame starting at buf from its 4-byte header.
 * Returns SL_OK with *size = SL_PB_FRAME_HEAD + length; SL_AGAIN when fewer
 * than 4 bytes are there; SL_ERR_TOO_BIG when the length exceeds max. The
 * check needs only the header, so a caller that peeks it before buffering
 * or pulling up the payload never holds an oversized frame. *size is left
 * untouched unless SL_OK.
 */
int sl_pb_frame_peek(const void *buf, size_t len, size_t max, size_t *size, sl_pb_err_t *err);

/*
 * Finds one whole frame at the start of buf[0, len). Returns SL_OK with *f
 * set (pointing into buf); SL_AGAIN when the header or payload is not
 * complete yet (nothing consumed, *f untouched); SL_ERR_TOO_BIG as
 * sl_pb_frame_peek, as soon as the header is there. The caller drains
 * f->size bytes once done with f->p.
 */
int sl_pb_frame_decode(const void *buf, size_t len, size_t max, sl_pb_frame_t *f, sl_pb_err_t *err);

/* Appends one frame holding n bytes of p (n may be 0). */
void sl_pb_frame_put(sl_sb_t *out, const void *p, size_t n);
/* Appends one frame holding msg serialized; NULL gives a zero-length frame. */
void sl_pb_frame_put_msg(sl_sb_t *out, const ProtobufCMessage *msg);

/* ---- Envelopes (sections 2.2, 2.3) -------------------------------------- */

/*
 * Kong keeps one counter per plugin server connection pool and adds 2 per
 * call: sequences go 2, 4, 6, ... The server echoes each; a mismatch means
 * the connection is out of step. Sequences here are never 0.
 */
static inline int64_t sl_pb_seq_next(int64_t *counter)
{
    *counter += 2;
    return *counter;
}

/* Each appends one RpcCall frame. Kong 3.x sends only start_instance,
 * close_instance and handle_event; go-pdk answers get_plugin_names and
 * get_plugin_info with a zero-length frame. config is the JSON text of
 * sl_pb_config_json. Strings are NUL-terminated. */
void sl_pb_call_get_plugin_names(sl_sb_t *out, int64_t seq);
void sl_pb_call_get_plugin_info(sl_sb_t *out, int64_t seq, const char *name);
void sl_pb_call_start_instance(sl_sb_t *out, int64_t seq, const char *name, const void *config,
                               size_t config_len);
void sl_pb_call_get_instance_status(sl_sb_t *out, int64_t seq, int32_t instance_id);
void sl_pb_call_close_instance(sl_sb_t *out, int64_t seq, int32_t instance_id);
void sl_pb_call_handle_event(sl_sb_t *out, int64_t seq, int32_t instance_id, const char *event);

typedef KongPluginProtocol__RpcReturn sl_pb_return_t;

/* For sl_pb_return_parse: accept whichever result the answer carries. */
#define SL_PB_RETURN_ANY (-1)

/*
 * Parses the payload of an RpcReturn answering the call with sequence seq.
 * expect is the result the call gives (KONG_PLUGIN_PROTOCOL__RPC_RETURN__
 * RETURN_INSTANCE_STATUS for start/close/get_instance_status, ..._PLUGIN_
 * NAMES, ..._PLUGIN_INFO, ..._RETURN__NOT_SET for handle_event) or
 * SL_PB_RETURN_ANY. Returns:
 *   SL_OK           *out is the message (free with sl_pb_return_free and the
 *                   same allocator); out may be NULL when only the check
 *                   matters. When the case is set, its submessage is not NULL.
 *   SL_DECLINED     the payload is empty: go-pdk's answer to a command it
 *                   does not implement (never a valid RpcReturn: seq > 0).
 *   SL_ERR_INVALID  not an RpcReturn, another sequence, or another result.
 *   SL_ERR_TOO_BIG  nested beyond the default limits (InstanceStatus.config).
 *   SL_ERR_NOMEM    an allocation failed.
 * alloc is protobuf-c's allocator (NULL: malloc). After any error the
 * connection must be closed.
 */
int sl_pb_return_parse(const void *p, size_t n, int64_t seq, int expect, ProtobufCAllocator *alloc,
                       sl_pb_return_t **out, sl_pb_err_t *err);
void sl_pb_return_free(sl_pb_return_t *r, ProtobufCAllocator *alloc);

/* ---- start_instance's config (section 6.1) ------------------------------ */

typedef struct sl_pb_instance_conf_s {
    const json_t *config;      /* borrowed: the plugin's config object, defaults
                                  applied and unset optional fields null */
    int64_t seq;               /* __seq__: 1 .. INT32_MAX, unique per config */
    const char *plugin_id;     /* __plugin_id: the plugins entity's id */
    const char *ws_id;         /* __ws_id; NULL: left out */
    const char *key;           /* __key__; NULL: left out */
    const char *route_id;      /* NULL: null */
    const char *service_id;    /* NULL: null */
    const char *consumer_id;   /* NULL: null */
    const char *instance_name; /* plugin_instance_name; NULL: null */
} sl_pb_instance_conf_t;

/*
 * The JSON text Kong sends as CmdStartInstance.config: the config's fields
 * plus route_id, service_id, consumer_id, plugin_instance_name, __plugin_id,
 * __ws_id, __key__ and __seq__ at the top level, compact. go-pdk uses
 * __seq__ as the instance id (an int32 on the wire), so it must be non-zero
 * and fit. Arrays, empty ones included, come out as [] (go-pdk refuses {}
 * for a slice field). config itself is not changed. Returns SL_OK with *out
 * (malloc'd, NUL-terminated; free it) and *len, SL_ERR_INVALID when config
 * is not an object, seq is out of range or plugin_id is missing, or
 * SL_ERR_NOMEM.
 */
int sl_pb_config_json(const sl_pb_instance_conf_t *c, char **out, size_t *len, sl_pb_err_t *err);

/* ---- Message types and the method table (section 4) --------------------- */

typedef enum sl_pb_type_e {
    SL_PB_T_EMPTY,
    SL_PB_T_STRING,
    SL_PB_T_INT,
    SL_PB_T_NUMBER,
    SL_PB_T_BOOL,
    SL_PB_T_BYTE_STRING,
    SL_PB_T_KV,
    SL_PB_T_EXIT_ARGS,
    SL_PB_T_TARGET,
    SL_PB_T_CONSUMER_SPEC,
    SL_PB_T_AUTHENTICATE_ARGS,
    SL_PB_T_STRUCT,
    SL_PB_T_LIST_VALUE,
    SL_PB_T_VALUE,
    SL_PB_T_CONSUMER,
    SL_PB_T_CREDENTIAL, /* AuthenticatedCredential */
    SL_PB_T_ROUTE,
    SL_PB_T_SERVICE,
    SL_PB_T_MEMORY_STATS,
    SL_PB_T_RAW_BODY_RESULT,
    SL_PB_T_URI_CAPTURES_RESULT,
    SL_PB_T_COUNT
} sl_pb_type_t;

/* The message type's protobuf-c descriptor and its name in the proto. */
const ProtobufCMessageDescriptor *sl_pb_type_descriptor(sl_pb_type_t t);
const char *sl_pb_type_name(sl_pb_type_t t);

/* Every PDK method go-pdk can call, in the order of their wire names. */
typedef enum sl_pb_method_id_e {
    SL_PB_M_CLIENT_AUTHENTICATE,
    SL_PB_M_CLIENT_GET_CONSUMER,
    SL_PB_M_CLIENT_GET_CREDENTIAL,
    SL_PB_M_CLIENT_GET_FORWARDED_IP,
    SL_PB_M_CLIENT_GET_FORWARDED_PORT,
    SL_PB_M_CLIENT_GET_IP,
    SL_PB_M_CLIENT_GET_PORT,
    SL_PB_M_CLIENT_GET_PROTOCOL,
    SL_PB_M_CLIENT_LOAD_CONSUMER,
    SL_PB_M_CTX_SHARED_GET,
    SL_PB_M_CTX_SHARED_SET,
    SL_PB_M_IP_IS_TRUSTED,
    SL_PB_M_LOG_ALERT,
    SL_PB_M_LOG_CRIT,
    SL_PB_M_LOG_DEBUG,
    SL_PB_M_LOG_ERR,
    SL_PB_M_LOG_INFO,
    SL_PB_M_LOG_NOTICE,
    SL_PB_M_LOG_SERIALIZE,
    SL_PB_M_LOG_SET_SERIALIZE_VALUE,
    SL_PB_M_LOG_WARN,
    SL_PB_M_NGINX_GET_CTX,
    SL_PB_M_NGINX_GET_SUBSYSTEM,
    SL_PB_M_NGINX_GET_TLS1_VERSION_STR,
    SL_PB_M_NGINX_GET_VAR,
    SL_PB_M_NGINX_REQ_START_TIME,
    SL_PB_M_NGINX_SET_CTX,
    SL_PB_M_NODE_GET_ID,
    SL_PB_M_NODE_GET_MEMORY_STATS,
    SL_PB_M_REQUEST_GET_FORWARDED_HOST,
    SL_PB_M_REQUEST_GET_FORWARDED_PORT,
    SL_PB_M_REQUEST_GET_FORWARDED_SCHEME,
    SL_PB_M_REQUEST_GET_HEADER,
    SL_PB_M_REQUEST_GET_HEADERS,
    SL_PB_M_REQUEST_GET_HOST,
    SL_PB_M_REQUEST_GET_HTTP_VERSION,
    SL_PB_M_REQUEST_GET_METHOD,
    SL_PB_M_REQUEST_GET_PATH,
    SL_PB_M_REQUEST_GET_PATH_WITH_QUERY,
    SL_PB_M_REQUEST_GET_PORT,
    SL_PB_M_REQUEST_GET_QUERY,
    SL_PB_M_REQUEST_GET_QUERY_ARG,
    SL_PB_M_REQUEST_GET_RAW_BODY,
    SL_PB_M_REQUEST_GET_RAW_QUERY,
    SL_PB_M_REQUEST_GET_SCHEME,
    SL_PB_M_REQUEST_GET_URI_CAPTURES,
    SL_PB_M_RESPONSE_ADD_HEADER,
    SL_PB_M_RESPONSE_CLEAR_HEADER,
    SL_PB_M_RESPONSE_EXIT,
    SL_PB_M_RESPONSE_GET_HEADER,
    SL_PB_M_RESPONSE_GET_HEADERS,
    SL_PB_M_RESPONSE_GET_SOURCE,
    SL_PB_M_RESPONSE_GET_STATUS,
    SL_PB_M_RESPONSE_SET_HEADER,
    SL_PB_M_RESPONSE_SET_HEADERS,
    SL_PB_M_RESPONSE_SET_STATUS,
    SL_PB_M_ROUTER_GET_ROUTE,
    SL_PB_M_ROUTER_GET_SERVICE,
    SL_PB_M_SERVICE_REQUEST_ADD_HEADER,
    SL_PB_M_SERVICE_REQUEST_CLEAR_HEADER,
    SL_PB_M_SERVICE_REQUEST_SET_HEADER,
    SL_PB_M_SERVICE_REQUEST_SET_HEADERS,
    SL_PB_M_SERVICE_REQUEST_SET_METHOD,
    SL_PB_M_SERVICE_REQUEST_SET_PATH,
    SL_PB_M_SERVICE_REQUEST_SET_QUERY,
    SL_PB_M_SERVICE_REQUEST_SET_RAW_BODY,
    SL_PB_M_SERVICE_REQUEST_SET_RAW_QUERY,
    SL_PB_M_SERVICE_REQUEST_SET_SCHEME,
    SL_PB_M_SERVICE_RESPONSE_GET_HEADER,
    SL_PB_M_SERVICE_RESPONSE_GET_HEADERS,
    SL_PB_M_SERVICE_RESPONSE_GET_RAW_BODY,
    SL_PB_M_SERVICE_RESPONSE_GET_STATUS,
    SL_PB_M_SERVICE_SET_TARGET,
    SL_PB_M_SERVICE_SET_UPSTREAM,
    SL_PB_M_COUNT
} sl_pb_method_id_t;

/* kong.response.exit: never answered; record it and close the connection. */
#define SL_PB_M_TERMINAL 0x1u
/* Kong serves it in the log phase from a snapshot taken at log time (2.8). */
#define SL_PB_M_LOG_SNAPSHOT 0x2u
/* Changes the request, its response or its context (a header set, a
 * consumer authenticated, ...): an event that made such a call cannot be
 * re-run from the start without repeating it. */
#define SL_PB_M_WRITES 0x4u

typedef struct sl_pb_method_s {
    const char *name; /* the wire name: "kong.request.get_header" */
    const char *rpc;  /* the rpc in service Kong: "Request_GetHeader" */
    sl_pb_method_id_t id;
    sl_pb_type_t in;  /* what frame B holds */
    sl_pb_type_t out; /* what frame C must hold */
    unsigned flags;   /* SL_PB_M_* */
} sl_pb_method_t;

/* The method with this wire name (len bytes, no NUL needed), or NULL when
 * Kong has no such method (Kong answers that with a 500). */
const sl_pb_method_t *sl_pb_method_find(const char *name, size_t len);
/* The method by id; id < SL_PB_M_COUNT. */
const sl_pb_method_t *sl_pb_method_get(sl_pb_method_id_t id);

/* ---- Decoding what a plugin server sends -------------------------------- */

/*
 * Decodes n bytes of p as a message of type d: a bounded scan of the wire
 * bytes (nesting, field count, lengths; see sl_pb_limits_t), then protobuf-c.
 * Returns SL_OK with *out (free with protobuf_c_message_free_unpacked and
 * the same allocator), SL_ERR_INVALID for bytes that are not such a message,
 * SL_ERR_TOO_BIG beyond the limits, SL_ERR_NOMEM when an allocation failed.
 * Zero bytes decode to a message with every field at its default.
 */
int sl_pb_decode(const ProtobufCMessageDescriptor *d, const void *p, size_t n,
                 const sl_pb_limits_t *lim, ProtobufCAllocator *alloc, ProtobufCMessage **out,
                 sl_pb_err_t *err);

/*
 * A decoded PDK argument as C values. Strings point into msg and are
 * NUL-terminated; a string field stops at its first NUL byte (protobuf-c's
 * representation), bytes fields keep every byte. json is owned and set:
 *   KV                     the value (null when none was sent)
 *   ExitArgs               the headers object, NULL when none were sent
 *   Struct, ListValue,     the value itself (object, array, any)
 *   Value
 *   AuthenticateArgs and   the message as an object by field name
 *   the entity and result  ({"consumer": {...}, "credential": {...}}, each
 *   types                  left out when absent)
 *   the scalar wrappers,   NULL (their C values are in v)
 *   Target, ConsumerSpec,
 *   Empty
 */
typedef struct sl_pb_arg_s {
    sl_pb_type_t type;
    ProtobufCMessage *msg;     /* owned */
    ProtobufCAllocator *alloc; /* borrowed: what msg was allocated with */
    json_t *json;              /* owned; see above */
    union {
        sl_str_t str;   /* String */
        int32_t i;      /* Int */
        double num;     /* Number */
        bool b;         /* Bool */
        sl_str_t bytes; /* ByteString */
        sl_str_t key;   /* KV (its value is json) */
        struct {
            int32_t status;
            sl_str_t body;
        } exit; /* ExitArgs (headers are json) */
        struct {
            sl_str_t host;
            int32_t port;
        } target;
        struct {
            sl_str_t id;
            bool by_username;
        } consumer_spec;
        struct {
            const KongPluginProtocol__Consumer *consumer;                  /* NULL: absent */
            const KongPluginProtocol__AuthenticatedCredential *credential; /* NULL: absent */
        } auth;
    } v;
} sl_pb_arg_t;

/*
 * Decodes a frame B payload of the given type into *arg (see sl_pb_arg_t).
 * Returns the codes of sl_pb_decode; a Value that JSON cannot hold (a string
 * or key that is not UTF-8, a NaN or infinite number) is SL_ERR_INVALID.
 * *arg is set only on SL_OK; release it with sl_pb_arg_dispose.
 */
int sl_pb_arg_decode(sl_pb_type_t type, const void *p, size_t n, const sl_pb_limits_t *lim,
                     ProtobufCAllocator *alloc, sl_pb_arg_t *arg, sl_pb_err_t *err);
void sl_pb_arg_dispose(sl_pb_arg_t *arg);

/* ---- Encoding the gateway's answers (frame C) --------------------------- */

/* Each appends one whole frame. Proto3 leaves out default values, so "",
 * 0, false and an empty ByteString give a zero-length frame, which go-pdk
 * reads as that value. sl_pb_put_string replaces bytes that are not UTF-8
 * with U+FFFD (Go refuses to decode such a string field; Kong sends it
 * anyway and the plugin gets an error). */
void sl_pb_put_empty(sl_sb_t *out);
void sl_pb_put_string(sl_sb_t *out, const char *s, size_t n);
/* As sl_pb_put_string, but "" is sent as a present field (0a 00) rather
 * than left out: decoders read "" either way, but the gateway's own
 * MsgPack side tells a present empty value from nil (an empty frame). */
void sl_pb_put_string_set(sl_sb_t *out, const char *s, size_t n);
void sl_pb_put_int(sl_sb_t *out, int32_t v);
void sl_pb_put_number(sl_sb_t *out, double v);
void sl_pb_put_bool(sl_sb_t *out, bool v);
void sl_pb_put_bytes(sl_sb_t *out, const void *p, size_t n);

/* RawBodyResult's oneof: the body itself, the file nginx spooled it to, or
 * an error text. The field is sent even when empty (a present empty body). */
typedef enum sl_pb_raw_body_e {
    SL_PB_RAW_CONTENT = 1,
    SL_PB_RAW_FILEPATH = 2,
    SL_PB_RAW_ERROR = 3,
} sl_pb_raw_body_t;
void sl_pb_put_raw_body(sl_sb_t *out, sl_pb_raw_body_t kind, const void *p, size_t n);

/*
 * Appends the frame of a message of the given type built from a jansson
 * value, as Kong's lua-protobuf encodes a Lua table:
 *   v NULL               a zero-length frame (Kong's answer for nil)
 *   Value                any JSON value; null is null_value (08 00)
 *   Struct, ListValue    an object, an array
 *   String, Int, Number, a bare value is taken as the wrapper's v
 *   Bool, ByteString
 *   Empty                v is ignored: a zero-length frame
 *   other messages       an object, fields by name: Route, Service,
 *                        Consumer, AuthenticatedCredential (created_at,
 *                        tags, service: {"id": ...}, ...), MemoryStats
 *                        (Kong's get_memory_stats shape; lua_shared_dicts,
 *                        kong and kong_db_cache are always sent, go-pdk
 *                        dereferences them), UriCapturesResult
 *                        ({"unnamed": [...], "named": {...}}).
 * Keys that are not fields are ignored, null is left out, and a field whose
 * JSON type does not fit the proto (Kong's route.headers is a map, the proto
 * has repeated string) is left out, as lua-protobuf drops it. Integers out
 * of their field's range are left out too. Numbers become doubles in
 * Value. Returns SL_OK; SL_ERR_INVALID when v's JSON type cannot make the
 * message at all; SL_ERR_TOO_BIG beyond the limits. out is unchanged on
 * error.
 */
int sl_pb_put_json(sl_sb_t *out, sl_pb_type_t type, const json_t *v, const sl_pb_limits_t *lim,
                   sl_pb_err_t *err);

/*
 * The conversions under sl_pb_arg_decode and sl_pb_put_json, for other
 * callers. sl_pb_message_to_json gives Value as any JSON value (an integral
 * number within 2^53 as a JSON integer, as Lua would print it), Struct as
 * an object, ListValue as an array, other messages as objects by field
 * name (every scalar field, submessages when present, the set member of a
 * oneof). Returns SL_OK with a new reference, SL_ERR_INVALID (not UTF-8,
 * NaN or infinity), SL_ERR_TOO_BIG or SL_ERR_NOMEM.
 */
int sl_pb_message_to_json(const ProtobufCMessage *m, const sl_pb_limits_t *lim, json_t **out,
                          sl_pb_err_t *err);

/* ---- The callback loop of one event (section 2.4) ----------------------- */

typedef enum sl_pb_event_state_e {
    SL_PB_EV_METHOD, /* expects a method name or the end marker */
    SL_PB_EV_ARG,    /* expects the argument of ev->pending */
    SL_PB_EV_ANSWER, /* the caller owes the answer to ev->pending */
    SL_PB_EV_RETURN, /* end marker seen: expects the RpcReturn */
    SL_PB_EV_DONE,   /* finished cleanly: the connection can be reused */
    SL_PB_EV_EXITED, /* kong.response.exit: close the connection */
    SL_PB_EV_FAILED, /* protocol error: close the connection */
} sl_pb_event_state_t;

/* One event on one connection; caller-owned storage, nothing to free. */
typedef struct sl_pb_event_s {
    int64_t seq; /* of the cmd_handle_event call */
    sl_pb_event_state_t state;
    const sl_pb_method_t *pending; /* the call being read or answered */
    unsigned calls;                /* PDK calls yielded so far */
    sl_pb_err_t err;               /* why the machine failed */
} sl_pb_event_t;

/* A PDK call the plugin made: decode arg by method->in (sl_pb_arg_decode),
 * perform it, answer with a frame of method->out. */
typedef struct sl_pb_call_s {
    const sl_pb_method_t *method;
    const uint8_t *arg; /* borrowed: the payload of the frame fed last */
    size_t arg_len;
} sl_pb_call_t;

/* Starts an event: appends RpcCall{seq, cmd_handle_event{instance_id,
 * event}} to out and expects the first method name. */
void sl_pb_event_start(sl_pb_event_t *ev, sl_sb_t *out, int64_t seq, int32_t instance_id,
                       const char *event);

/*
 * Feeds the payload of the next frame from the plugin server. Returns:
 *   SL_AGAIN         taken: feed the next frame.
 *   SL_OK            *call is a PDK call. Unless call->method has
 *                    SL_PB_M_TERMINAL, append its answer to the output and
 *                    call sl_pb_event_answered before feeding again. A
 *                    terminal call (kong.response.exit) is never answered:
 *                    the state is SL_PB_EV_EXITED; close the connection.
 *   SL_DONE          the end marker and an RpcReturn with our sequence:
 *                    the event is over, the connection is reusable.
 *   SL_ERR_NOT_FOUND the plugin called a method Kong does not have.
 *   SL_ERR_INVALID   a frame out of turn, or a bad or mismatched RpcReturn.
 *   SL_ERR_NOMEM     decoding the RpcReturn failed for memory.
 * After an error the state is SL_PB_EV_FAILED, ev->err says why, and the
 * connection must be closed. *call is set only on SL_OK.
 */
int sl_pb_event_feed(sl_pb_event_t *ev, const void *frame, size_t len, sl_pb_call_t *call);

/* Records that the answer to the pending call was written. Returns SL_OK,
 * or SL_ERR_INVALID (with ev->err) when no call awaits an answer. */
int sl_pb_event_answered(sl_pb_event_t *ev);

#endif
