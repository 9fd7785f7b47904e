/*
 * The MsgPack:1 wire layer of the plugin-server bridge: Kong's protocol
 * between a gateway and the Python and JS plugin servers (and the legacy
 * go-pluginserver), reference plugin-protocol.md section 5, as pure
 * functions over byte buffers. Nothing here owns a socket, a timer or an
 * event loop: the data plane writes the requests built here, feeds the
 * bytes it reads to an sl_mp_reader_t, and runs the event loop of section
 * 5.3 with the helpers at the end. Tests and fuzzers drive the same
 * functions without a socket.
 *
 * What travels (section 5.1), with no framing, one msgpack value after
 * another on the stream:
 *
 *   gateway -> server   [0, msgid, "plugin.<Method>", [param]]   a request
 *   server -> gateway   [1, msgid, error-or-nil, result-or-nil]  its response
 *   server -> gateway   [2, label, args]                         a notification
 *
 * An event is a plugin.HandleEvent request and then, while the result's
 * Data is a PDK call {"Method", "Args"} rather than "ret", one Step request
 * per call carrying the PDK result (section 5.3).
 *
 * Requests are packed with msgpack-c into an sl_sb_t (common/strbuf.h), so
 * that each goes out in one write (section 5.6: early Python servers read a
 * request with a single recv). Responses are read by a bounded parser of
 * our own, not msgpack-c's unpacker: that one allocates the declared size
 * of an array or map before a single element has arrived, and nests at most
 * 32 deep. Decoded values are jansson values: str and bin become strings
 * holding the exact bytes (UTF-8 or not), maps must have str keys, and ext
 * types are refused.
 *
 * Thread-safety: every function is reentrant; a reader belongs to one
 * connection. Errors: functions return SL_OK or a small positive code as
 * documented, or a negative SL_ERR_*; when an sl_mp_err_t is given (it may
 * be NULL), it receives a message for the log that names what was wrong.
 */
#ifndef SL_MP_CODEC_H
#define SL_MP_CODEC_H

#include "strbuf.h"
#include "util-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Limits and errors -------------------------------------------------- */

/*
 * Bounds on what a peer sends and on what the gateway packs. max_depth is
 * the nesting of containers in a value ({"a": [1]} is 2 deep; in a message
 * the envelope array is not counted, so it bounds the result of a response
 * and the args of a notification); it is clamped to SL_MP_DEPTH_CEILING.
 * max_nodes is the number of msgpack values in one message or conversion:
 * every array element, every map key and every map value counts. max_msg is
 * the size of one message read, in bytes (Kong sets no bound); the packers
 * ignore it. The reader checks each declared length and count against these
 * when it reads the header, before it buffers or allocates anything for it:
 * an element takes at least one byte, so an array of 2^32 - 1 elements
 * exceeds any max_msg at once.
 */
typedef struct sl_mp_limits_s {
    unsigned max_depth;
    size_t max_nodes;
    size_t max_msg;
} sl_mp_limits_t;

#define SL_MP_DEPTH_DEFAULT 64
#define SL_MP_NODES_DEFAULT 100000
#define SL_MP_MSG_MAX_DEFAULT (16u << 20)
#define SL_MP_DEPTH_CEILING 256

/* Passing NULL for a limits pointer means these. */
#define SL_MP_LIMITS_DEFAULT                                                                       \
    ((sl_mp_limits_t){SL_MP_DEPTH_DEFAULT, SL_MP_NODES_DEFAULT, SL_MP_MSG_MAX_DEFAULT})

typedef sl_codec_err_t sl_mp_err_t;

/* ---- Values: jansson <-> msgpack (section 5.4) -------------------------- */

/*
 * Appends v packed as one msgpack value: NULL and null as nil, true and
 * false as bool, integers as the smallest int or uint encoding, reals as
 * float64, strings as str (their bytes as they are), arrays as arrays and
 * objects as maps with str keys, in the object's order. Returns SL_OK, or
 * SL_ERR_TOO_BIG beyond the depth or node limits; out is unchanged on error.
 */
int sl_mp_value_put(sl_sb_t *out, const json_t *v, const sl_mp_limits_t *lim, sl_mp_err_t *err);

/* Appends n bytes of p as one msgpack bin (section 5.4: raw bodies). */
void sl_mp_bin_put(sl_sb_t *out, const void *p, size_t n);

/*
 * Decodes the one msgpack value at the start of buf[0, len), as the reader
 * decodes a message's members: nil as null, ints as integers (a uint64
 * beyond INT64_MAX as a real), float32 and float64 as reals, str and bin as
 * strings of the exact bytes, arrays, and maps with str keys as objects (a
 * repeated key keeps its last value). Returns SL_OK with *out (a new
 * reference) and *used (the value's size in bytes); SL_AGAIN when the value
 * is not complete yet; SL_ERR_INVALID for ext types, the unused byte 0xc1,
 * a map key that is not a str, and a float that is NaN or infinite;
 * SL_ERR_TOO_BIG beyond the limits (max_msg bounds the value's size);
 * SL_ERR_NOMEM. Outputs are set only on SL_OK.
 */
int sl_mp_value_decode(const void *buf, size_t len, const sl_mp_limits_t *lim, json_t **out,
                       size_t *used, sl_mp_err_t *err);

/*
 * The header and query maps of section 5.4, as Kong's mp_rpc normalises
 * them for plugin.StepMultiMap: in an object, a string value becomes a
 * one-element array and true (an argument without a value) an empty array;
 * other values stay as they are. An empty array (an empty Lua table) becomes
 * an empty object, so that it packs as an empty map. Any other v is
 * returned as it is. Returns SL_OK with *out (a new reference), or
 * SL_ERR_NOMEM. v is not changed.
 */
int sl_mp_multimap(const json_t *v, json_t **out);

/* ---- Requests (sections 5.1 to 5.3) ------------------------------------- */

/* Kong keeps a counter per RPC object and adds 1 per call; the response
 * echoes the msgid. */
static inline uint32_t sl_mp_msgid_next(uint32_t *counter)
{
    return ++*counter;
}

/* Each appends one request [0, msgid, "plugin.<Method>", [param]].
 *   StartInstance  {"Name": name, "Config": config}: config is the JSON
 *                  text of section 6.1 (sl_pb_config_json makes it), sent
 *                  as a str, not as a map. name is NUL-terminated.
 *   CloseInstance  the instance id.
 *   HandleEvent    {"InstanceId": instance_id, "EventName": event}, event
 *                  the phase ("access", "log", ...), NUL-terminated. */
void sl_mp_call_start_instance(sl_sb_t *out, uint32_t msgid, const char *name, const char *config,
                               size_t config_len);
void sl_mp_call_close_instance(sl_sb_t *out, uint32_t msgid, int64_t instance_id);
void sl_mp_call_handle_event(sl_sb_t *out, uint32_t msgid, int64_t instance_id, const char *event);

/*
 * Appends a request for any method ("plugin.GetStatus") with one param
 * packed by sl_mp_value_put (NULL: nil). Returns the codes of
 * sl_mp_value_put; out is unchanged on error.
 */
int sl_mp_call(sl_sb_t *out, uint32_t msgid, const char *method, const json_t *param,
               const sl_mp_limits_t *lim, sl_mp_err_t *err);

/* The Step methods of section 5.3; every one takes {"EventId", "Data"}. */
typedef enum sl_mp_step_e {
    SL_MP_STEP,              /* plugin.Step */
    SL_MP_STEP_ERROR,        /* plugin.StepError: Data is an error string */
    SL_MP_STEP_MULTI_MAP,    /* plugin.StepMultiMap */
    SL_MP_STEP_CREDENTIAL,   /* plugin.StepCredential */
    SL_MP_STEP_CONSUMER,     /* plugin.StepConsumer */
    SL_MP_STEP_ROUTE,        /* plugin.StepRoute */
    SL_MP_STEP_SERVICE,      /* plugin.StepService */
    SL_MP_STEP_MEMORY_STATS, /* plugin.StepMemoryStats */
    SL_MP_STEP_COUNT
} sl_mp_step_t;

/* "plugin.StepCredential" and so on; s < SL_MP_STEP_COUNT. */
const char *sl_mp_step_name(sl_mp_step_t s);

/* The Step method that answers the PDK method of len bytes (section 5.3's
 * table; SL_MP_STEP for the others). Kong would also honour a `_method`
 * field that its own Lua entities carry; the gateway's results never do. */
sl_mp_step_t sl_mp_step_for(const char *pdk_method, size_t len);

/* Whether the PDK method's result is a raw body, packed as bin (5.4):
 * kong.request.get_raw_body, kong.response.get_raw_body and
 * kong.service.response.get_raw_body. */
bool sl_mp_pdk_raw_body(const char *pdk_method, size_t len);

/*
 * Appends the Step request `step` with {"EventId": event_id, "Data": data},
 * data packed by sl_mp_value_put as it is (NULL: nil). Returns the codes of
 * sl_mp_value_put; out is unchanged on error.
 */
int sl_mp_call_step(sl_sb_t *out, uint32_t msgid, sl_mp_step_t step, int64_t event_id,
                    const json_t *data, const sl_mp_limits_t *lim, sl_mp_err_t *err);

/* Appends plugin.Step with Data the n bytes of p as a bin: a raw body. */
void sl_mp_call_step_bin(sl_sb_t *out, uint32_t msgid, int64_t event_id, const void *p, size_t n);

/* Appends plugin.StepError with Data the error text (n bytes of msg). */
void sl_mp_call_step_error(sl_sb_t *out, uint32_t msgid, int64_t event_id, const char *msg,
                           size_t n);

/*
 * Appends the Step that answers a PDK call as Kong does (sections 5.3 and
 * 5.4): the method by sl_mp_step_for; for plugin.StepMultiMap the result
 * normalised by sl_mp_multimap; for a raw-body method a string result (any
 * bytes: json_stringn_nocheck) packed as bin with plugin.Step; anything else
 * packed as it is (NULL: nil). Returns SL_OK, SL_ERR_TOO_BIG beyond the
 * limits, or SL_ERR_NOMEM; out is unchanged on error.
 */
int sl_mp_call_step_result(sl_sb_t *out, uint32_t msgid, int64_t event_id, const char *pdk_method,
                           size_t method_len, const json_t *result, const sl_mp_limits_t *lim,
                           sl_mp_err_t *err);

/* ---- Reading responses and notifications -------------------------------- */

typedef enum sl_mp_kind_e {
    SL_MP_RESPONSE = 1,     /* [1, msgid, error, result] */
    SL_MP_NOTIFICATION = 2, /* [2, label, args] */
} sl_mp_kind_t;

/* One message from a plugin server; caller-owned storage. */
typedef struct sl_mp_msg_s {
    sl_mp_kind_t kind;
    int64_t msgid;  /* response: as sent (any integer) */
    json_t *error;  /* response, owned: a string, or NULL when nil */
    json_t *result; /* response, owned: any value, null when nil */
    json_t *label;  /* notification, owned: a string ("serverPid") */
    json_t *args;   /* notification, owned: any value */
} sl_mp_msg_t;

void sl_mp_msg_dispose(sl_mp_msg_t *m);

/*
 * Checks a message read while waiting for the response to msgid (5.1).
 * Returns SL_OK for that response; SL_DECLINED for a notification (log it
 * and keep reading: Kong dispatches them, go-pluginserver sends
 * ["serverPid", pid] after accept); SL_ERR_INVALID for a response to
 * another msgid, after which the connection is out of step and must close.
 */
int sl_mp_msg_expect(const sl_mp_msg_t *m, uint32_t msgid, sl_mp_err_t *err);

typedef struct sl_mp_reader_s sl_mp_reader_t;

/* A reader with the given limits (NULL: SL_MP_LIMITS_DEFAULT); NULL when
 * out of memory. It holds only the bytes of a message not complete yet. */
sl_mp_reader_t *sl_mp_reader_new(const sl_mp_limits_t *lim);
void sl_mp_reader_free(sl_mp_reader_t *r);

/*
 * Feeds n bytes read from the server (n may be 0). The reader takes bytes
 * up to the end of the first message they complete. Returns:
 *   SL_OK           *msg is that message (release it with
 *                   sl_mp_msg_dispose); *used bytes of p were taken. Feed
 *                   p + *used again: it may hold further messages.
 *   SL_AGAIN        all n bytes were taken (*used = n) and buffered: the
 *                   message is not complete yet.
 *   SL_ERR_TOO_BIG  the message would be larger than max_msg, nest deeper
 *                   or hold more values than the limits allow; found at its
 *                   header, so nothing beyond max_msg was ever buffered.
 *   SL_ERR_INVALID  not msgpack-rpc: not an array of 3 or 4, a type other
 *                   than 1 or 2, a msgid that is not an integer, an error
 *                   that is neither nil nor a string, a label that is not a
 *                   string, an ext type, a map key that is not a str, ...
 *   SL_ERR_NOMEM    buffering or converting failed for memory.
 * After an error the reader keeps failing with it (err says why again) and
 * the connection must be closed; sl_mp_reader_reset makes it reusable.
 * *msg is set only on SL_OK; *used on SL_OK and SL_AGAIN.
 */
int sl_mp_reader_feed(sl_mp_reader_t *r, const void *p, size_t n, size_t *used, sl_mp_msg_t *msg,
                      sl_mp_err_t *err);

/* Bytes of an incomplete message held: non-zero at EOF means the server
 * closed in the middle of a message (Kong's "no data"). */
size_t sl_mp_reader_pending(const sl_mp_reader_t *r);

/* Forgets any partial message and a failure, for a new connection. */
void sl_mp_reader_reset(sl_mp_reader_t *r);

/* ---- The event loop (sections 5.2, 5.3, 5.5) ---------------------------- */

/* A PDK method name longer than this is refused as malformed. */
#define SL_MP_METHOD_NAME_MAX 128

/* A HandleEvent or Step result that is a PDK call. */
typedef struct sl_mp_pdk_call_s {
    int64_t event_id;
    sl_str_t method; /* borrowed from the result, NUL-terminated: valid while
                        the result is; empty when the handler finished */
    json_t *args;    /* owned: the arguments, always an array; NULL when the
                        handler finished */
} sl_mp_pdk_call_t;

/*
 * Reads the result {"EventId": n, "Data": X} of plugin.HandleEvent or of a
 * Step. Returns:
 *   SL_DONE         Data is "ret": the handler finished; call->event_id set.
 *   SL_OK           Data is {"Method": name, "Args": args}: *call is the PDK
 *                   call. Args as an array are the arguments; a missing or
 *                   null Args is none; any other value is the only argument
 *                   (Kong passes a non-table Args as one argument).
 *   SL_ERR_INVALID  another shape (EventId missing or not an integer, Data
 *                   another string or type, Method not a string, empty,
 *                   longer than SL_MP_METHOD_NAME_MAX or holding a NUL).
 *   SL_ERR_NOMEM    making the one-argument array failed.
 * *call is set on SL_OK and SL_DONE; release it with sl_mp_pdk_call_dispose.
 * The caller checks event_id against the event it runs.
 */
int sl_mp_event_result(const json_t *result, sl_mp_pdk_call_t *call, sl_mp_err_t *err);
void sl_mp_pdk_call_dispose(sl_mp_pdk_call_t *call);

/* Reads the Id of a plugin.StartInstance result {"Name", "Id", "Config",
 * "StartTime"} (5.2). Returns SL_OK with *id, or SL_ERR_INVALID when the
 * result is not an object with an integer Id. */
int sl_mp_instance_id(const json_t *result, int64_t *id, sl_mp_err_t *err);

/* Whether a response's error string says the instance is gone: it contains
 * "no plugin instance", in any case (5.5). Kong then starts the instance
 * again and retries; any other error is only logged. */
bool sl_mp_is_no_instance(const char *error, size_t len);

#endif
