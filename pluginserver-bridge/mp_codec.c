/*
 * mp_codec.c owns the bytes of Kong's MsgPack:1 plugin protocol (section 5
 * of the plugin-protocol reference): the msgpack-rpc requests the gateway
 * sends, the reading of the responses and notifications a plugin server
 * sends back, the conversion of values between msgpack and jansson, and
 * the small rules of the event loop (which Step method answers which PDK
 * call, how multi-maps and raw bodies are packed, what a "no plugin
 * instance" error looks like). It holds no state of its own: a reader is
 * the caller's, one per connection, and every other function works on what
 * it is handed, on whichever thread calls.
 *
 * Two directions, two disciplines. What the gateway sends is sized by the
 * gateway: msgpack-c packs it straight into the caller's sl_sb_t, and the
 * only limits are the depth and node counts of the jansson values. What a
 * plugin server sends is sized by the peer, and msgpack-c's unpacker is no
 * help there: it allocates room for the declared element count of an
 * array or map when it reads the header ("FIXME security guard" in its
 * unpack template), so five bytes can ask for gigabytes, and its stack is
 * a fixed 32 levels. So reading is two passes of our own. A resumable scan
 * walks the headers as bytes arrive, keeping only a position, a stack of
 * counts of values still due, and a node count; it checks every declared
 * length and count against the limits when it reads the header, and every
 * rule a message must follow (ext types, str keys, finite floats, the
 * envelope's first byte), so a message is refused before it is buffered.
 * Once the scan has seen a whole message, a recursive conversion to jansson
 * runs over bytes known to be complete and well-formed: its recursion is
 * bounded by the depth the scan allowed, and its only failure is memory.
 *
 * The reader buffers only the bytes of a message not yet complete (at most
 * max_msg); a message that arrives whole in one feed is converted from the
 * caller's bytes without a copy.
 *
 * Section numbers in comments refer to the plugin-protocol reference.
 */
#include "mp_codec.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors and small helpers                                                  */

static sl_mp_limits_t limits_of(const sl_mp_limits_t *lim)
{
    sl_mp_limits_t l = lim ? *lim : SL_MP_LIMITS_DEFAULT;
    if (l.max_depth > SL_MP_DEPTH_CEILING)
        l.max_depth = SL_MP_DEPTH_CEILING;
    return l;
}

/* s[0, n) for a log message: at most 64 bytes of it, escaped. */
static void quote(char *dst, size_t cap, const void *s, size_t n)
{
    sl_quote_bytes(dst, cap, s, n, 64);
}

/* The JSON type of a decoded value, in msgpack's words, for messages. */
static const char *json_kind(const json_t *v)
{
    if (!v)
        return "missing";
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a map";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a float";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "nil";
    }
    return "a value";
}

/* The msgpack type that a header byte starts, for messages. */
static const char *mp_kind(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0)
        return "an integer";
    if (b <= 0x8f)
        return "a map";
    if (b <= 0x9f)
        return "an array";
    if (b <= 0xbf)
        return "a str";
    switch (b) {
    case 0xc0:
        return "nil";
    case 0xc1:
        return "the never-used byte";
    case 0xc2:
    case 0xc3:
        return "a boolean";
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return "a bin";
    case 0xca:
    case 0xcb:
        return "a float";
    case 0xd9:
    case 0xda:
    case 0xdb:
        return "a str";
    case 0xdc:
    case 0xdd:
        return "an array";
    case 0xde:
    case 0xdf:
        return "a map";
    default:
        break;
    }
    if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))
        return "an ext";
    return "an integer";
}

static uint64_t be_get(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static double be_float(const uint8_t *p, bool wide)
{
    if (wide) {
        uint64_t u = be_get(p, 8);
        double d;
        memcpy(&d, &u, sizeof(d));
        return d;
    }
    uint32_t u = (uint32_t)be_get(p, 4);
    float f;
    memcpy(&f, &u, sizeof(f));
    return (double)f;
}

/* ------------------------------------------------------------------------ */
/* Packing (msgpack-c into an sl_sb_t)                                       */

static int sb_write_cb(void *data, const char *buf, size_t len)
{
    sl_sb_add(data, buf, len);
    return 0;
}

static void packer_init(msgpack_packer *pk, sl_sb_t *out)
{
    msgpack_packer_init(pk, out, sb_write_cb);
}

static void pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    SL_ASSERT(n <= UINT32_MAX);
    msgpack_pack_str(pk, n);
    if (n)
        msgpack_pack_str_body(pk, s, n);
}

#define pack_lit(pk, lit) pack_strn((pk), (lit), sizeof(lit) - 1)

struct pack {
    msgpack_packer pk;
    sl_mp_limits_t lim;
    size_t nodes;
    sl_mp_err_t *err;
};

static int pack_count(struct pack *c)
{
    if (++c->nodes <= c->lim.max_nodes)
        return SL_OK;
    sl_codec_err_set(c->err,
                     "value to send to the plugin server has more than %zu values; raise max_nodes",
                     c->lim.max_nodes);
    return SL_ERR_TOO_BIG;
}

/* Packs v, a value inside `depth` containers; recursion is bounded by
 * max_depth (at most SL_MP_DEPTH_CEILING). */
static int pack_json(struct pack *c, const json_t *v, unsigned depth)
{
    int rc = pack_count(c);
    if (rc != SL_OK)
        return rc;
    if (!v) {
        msgpack_pack_nil(&c->pk);
        return SL_OK;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        msgpack_pack_nil(&c->pk);
        return SL_OK;
    case JSON_TRUE:
        msgpack_pack_true(&c->pk);
        return SL_OK;
    case JSON_FALSE:
        msgpack_pack_false(&c->pk);
        return SL_OK;
    case JSON_INTEGER:
        msgpack_pack_int64(&c->pk, json_integer_value(v));
        return SL_OK;
    case JSON_REAL:
        msgpack_pack_double(&c->pk, json_real_value(v));
        return SL_OK;
    case JSON_STRING:
        pack_strn(&c->pk, json_string_value(v), json_string_length(v));
        return SL_OK;
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    }
    if (depth + 1 > c->lim.max_depth) {
        sl_codec_err_set(
            c->err,
            "value to send to the plugin server is nested deeper than %u levels; raise "
            "max_depth",
            c->lim.max_depth);
        return SL_ERR_TOO_BIG;
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        SL_ASSERT(n <= UINT32_MAX);
        msgpack_pack_array(&c->pk, n);
        for (size_t i = 0; i < n; i++) {
            rc = pack_json(c, json_array_get(v, i), depth + 1);
            if (rc != SL_OK)
                return rc;
        }
        return SL_OK;
    }
    size_t n = json_object_size(v);
    SL_ASSERT(n <= UINT32_MAX);
    msgpack_pack_map(&c->pk, n);
    json_t *o = (json_t *)v;
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
        rc = pack_count(c);
        if (rc != SL_OK)
            return rc;
        pack_strn(&c->pk, json_object_iter_key(it), json_object_iter_key_len(it));
        rc = pack_json(c, json_object_iter_value(it), depth + 1);
        if (rc != SL_OK)
            return rc;
    }
    return SL_OK;
}

/* Packs v into out; on error, takes back what was appended. */
static int pack_value(sl_sb_t *out, const json_t *v, const sl_mp_limits_t *lim, sl_mp_err_t *err)
{
    size_t mark = out->len;
    struct pack c = {.lim = limits_of(lim), .err = err};
    packer_init(&c.pk, out);
    int rc = pack_json(&c, v, 0);
    if (rc != SL_OK)
        out->len = mark;
    return rc;
}

int sl_mp_value_put(sl_sb_t *out, const json_t *v, const sl_mp_limits_t *lim, sl_mp_err_t *err)
{
    return pack_value(out, v, lim, err);
}

void sl_mp_bin_put(sl_sb_t *out, const void *p, size_t n)
{
    msgpack_packer pk;
    packer_init(&pk, out);
    SL_ASSERT(n <= UINT32_MAX);
    msgpack_pack_bin(&pk, n);
    if (n)
        msgpack_pack_bin_body(&pk, p, n);
}

/* ------------------------------------------------------------------------ */
/* Requests (5.1, 5.2)                                                       */

/* [0, msgid, method, [  -- the param follows. */
static void request_head(msgpack_packer *pk, sl_sb_t *out, uint32_t msgid, const char *method)
{
    packer_init(pk, out);
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 0);
    msgpack_pack_uint32(pk, msgid);
    pack_strn(pk, method, strlen(method));
    msgpack_pack_array(pk, 1);
}

void sl_mp_call_start_instance(sl_sb_t *out, uint32_t msgid, const char *name, const char *config,
                               size_t config_len)
{
    msgpack_packer pk;
    request_head(&pk, out, msgid, "plugin.StartInstance");
    msgpack_pack_map(&pk, 2);
    pack_lit(&pk, "Name");
    pack_strn(&pk, name, strlen(name));
    /* 5.4: the config travels as JSON text in a str, not as a map. */
    pack_lit(&pk, "Config");
    pack_strn(&pk, config, config_len);
}

void sl_mp_call_close_instance(sl_sb_t *out, uint32_t msgid, int64_t instance_id)
{
    msgpack_packer pk;
    request_head(&pk, out, msgid, "plugin.CloseInstance");
    msgpack_pack_int64(&pk, instance_id);
}

void sl_mp_call_handle_event(sl_sb_t *out, uint32_t msgid, int64_t instance_id, const char *event)
{
    msgpack_packer pk;
    request_head(&pk, out, msgid, "plugin.HandleEvent");
    msgpack_pack_map(&pk, 2);
    pack_lit(&pk, "InstanceId");
    msgpack_pack_int64(&pk, instance_id);
    pack_lit(&pk, "EventName");
    pack_strn(&pk, event, strlen(event));
}

int sl_mp_call(sl_sb_t *out, uint32_t msgid, const char *method, const json_t *param,
               const sl_mp_limits_t *lim, sl_mp_err_t *err)
{
    size_t mark = out->len;
    msgpack_packer pk;
    request_head(&pk, out, msgid, method);
    int rc = pack_value(out, param, lim, err);
    if (rc != SL_OK)
        out->len = mark;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Steps (5.3, 5.4)                                                          */

static const char *const step_names[SL_MP_STEP_COUNT] = {
    [SL_MP_STEP] = "plugin.Step",
    [SL_MP_STEP_ERROR] = "plugin.StepError",
    [SL_MP_STEP_MULTI_MAP] = "plugin.StepMultiMap",
    [SL_MP_STEP_CREDENTIAL] = "plugin.StepCredential",
    [SL_MP_STEP_CONSUMER] = "plugin.StepConsumer",
    [SL_MP_STEP_ROUTE] = "plugin.StepRoute",
    [SL_MP_STEP_SERVICE] = "plugin.StepService",
    [SL_MP_STEP_MEMORY_STATS] = "plugin.StepMemoryStats",
};

/* Kong's by_pdk_method table in mp_rpc.lua. */
static const struct {
    const char *pdk;
    sl_mp_step_t step;
} step_by_pdk[] = {
    {"kong.client.get_credential", SL_MP_STEP_CREDENTIAL},
    {"kong.client.authenticate", SL_MP_STEP_CREDENTIAL},
    {"kong.client.load_consumer", SL_MP_STEP_CONSUMER},
    {"kong.client.get_consumer", SL_MP_STEP_CONSUMER},
    {"kong.node.get_memory_stats", SL_MP_STEP_MEMORY_STATS},
    {"kong.router.get_route", SL_MP_STEP_ROUTE},
    {"kong.router.get_service", SL_MP_STEP_SERVICE},
    {"kong.request.get_query", SL_MP_STEP_MULTI_MAP},
    {"kong.request.get_headers", SL_MP_STEP_MULTI_MAP},
    {"kong.response.get_headers", SL_MP_STEP_MULTI_MAP},
    {"kong.service.response.get_headers", SL_MP_STEP_MULTI_MAP},
};

static const char *const raw_body_methods[] = {
    "kong.request.get_raw_body",
    "kong.response.get_raw_body",
    "kong.service.response.get_raw_body",
};

static bool name_is(const char *s, size_t len, const char *name)
{
    return s && strlen(name) == len && memcmp(s, name, len) == 0;
}

const char *sl_mp_step_name(sl_mp_step_t s)
{
    SL_ASSERT((unsigned)s < SL_MP_STEP_COUNT);
    return step_names[s];
}

sl_mp_step_t sl_mp_step_for(const char *pdk_method, size_t len)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(step_by_pdk); i++)
        if (name_is(pdk_method, len, step_by_pdk[i].pdk))
            return step_by_pdk[i].step;
    return SL_MP_STEP;
}

bool sl_mp_pdk_raw_body(const char *pdk_method, size_t len)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(raw_body_methods); i++)
        if (name_is(pdk_method, len, raw_body_methods[i]))
            return true;
    return false;
}

/* request_head for a Step, then {"EventId": event_id, "Data":  -- the data
 * follows. */
static void step_head(msgpack_packer *pk, sl_sb_t *out, uint32_t msgid, sl_mp_step_t step,
                      int64_t event_id)
{
    request_head(pk, out, msgid, sl_mp_step_name(step));
    msgpack_pack_map(pk, 2);
    pack_lit(pk, "EventId");
    msgpack_pack_int64(pk, event_id);
    pack_lit(pk, "Data");
}

int sl_mp_call_step(sl_sb_t *out, uint32_t msgid, sl_mp_step_t step, int64_t event_id,
                    const json_t *data, const sl_mp_limits_t *lim, sl_mp_err_t *err)
{
    size_t mark = out->len;
    msgpack_packer pk;
    step_head(&pk, out, msgid, step, event_id);
    int rc = pack_value(out, data, lim, err);
    if (rc != SL_OK)
        out->len = mark;
    return rc;
}

void sl_mp_call_step_bin(sl_sb_t *out, uint32_t msgid, int64_t event_id, const void *p, size_t n)
{
    msgpack_packer pk;
    step_head(&pk, out, msgid, SL_MP_STEP, event_id);
    sl_mp_bin_put(out, p, n);
}

void sl_mp_call_step_error(sl_sb_t *out, uint32_t msgid, int64_t event_id, const char *msg,
                           size_t n)
{
    msgpack_packer pk;
    step_head(&pk, out, msgid, SL_MP_STEP_ERROR, event_id);
    pack_strn(&pk, msg, n);
}

int sl_mp_multimap(const json_t *v, json_t **out)
{
    /* An empty Lua table: Kong marks it as a map so that it is not packed
     * as an empty array. */
    if (json_is_array(v) && json_array_size(v) == 0) {
        json_t *o = json_object();
        if (!o)
            return SL_ERR_NOMEM;
        *out = o;
        return SL_OK;
    }
    if (!json_is_object(v)) {
        *out = json_incref((json_t *)v);
        return SL_OK;
    }
    json_t *o = json_object();
    if (!o)
        return SL_ERR_NOMEM;
    json_t *src = (json_t *)v;
    for (void *it = json_object_iter(src); it; it = json_object_iter_next(src, it)) {
        json_t *val = json_object_iter_value(it), *nv;
        if (json_is_string(val)) {
            nv = json_array();
            if (nv && json_array_append(nv, val) != 0) {
                json_decref(nv);
                nv = NULL;
            }
        } else if (json_is_true(val)) {
            nv = json_array();
        } else {
            nv = json_incref(val);
        }
        /* json_object_setn_new_nocheck releases nv when it fails. */
        if (!nv || json_object_setn_new_nocheck(o, json_object_iter_key(it),
                                                json_object_iter_key_len(it), nv) != 0) {
            json_decref(o);
            return SL_ERR_NOMEM;
        }
    }
    *out = o;
    return SL_OK;
}

int sl_mp_call_step_result(sl_sb_t *out, uint32_t msgid, int64_t event_id, const char *pdk_method,
                           size_t method_len, const json_t *result, const sl_mp_limits_t *lim,
                           sl_mp_err_t *err)
{
    if (json_is_string(result) && sl_mp_pdk_raw_body(pdk_method, method_len)) {
        sl_mp_call_step_bin(out, msgid, event_id, json_string_value(result),
                            json_string_length(result));
        return SL_OK;
    }
    sl_mp_step_t step = sl_mp_step_for(pdk_method, method_len);
    if (step != SL_MP_STEP_MULTI_MAP || !result)
        return sl_mp_call_step(out, msgid, step, event_id, result, lim, err);
    json_t *mm;
    if (sl_mp_multimap(result, &mm) != SL_OK) {
        sl_codec_err_set(err, "out of memory normalising the result of %.*s",
                         (int)SL_MIN(method_len, 64), pdk_method);
        return SL_ERR_NOMEM;
    }
    int rc = sl_mp_call_step(out, msgid, step, event_id, mm, lim, err);
    json_decref(mm);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The scan: message boundaries and every rule, without allocating          */

struct scan {
    size_t pos;     /* where the next value's header starts */
    unsigned depth; /* containers open */
    bool started;   /* the top value's header was read */
    size_t nodes;   /* values whose header was read */
    /* per open container: values still due (a map's keys and values both
     * count, so a key is due when the count is even), and whether a map */
    uint64_t left[SL_MP_DEPTH_CEILING + 1];
    uint8_t map[SL_MP_DEPTH_CEILING + 1];
};

static void scan_reset(struct scan *s)
{
    s->pos = 0;
    s->depth = 0;
    s->started = false;
    s->nodes = 0;
}

enum { K_SCALAR, K_FLOAT, K_STR, K_BIN, K_ARRAY, K_MAP, K_BAD };

/* What a value's first byte says: its kind, the size of its header (the
 * type byte, a fixed-size scalar's payload, and lenbytes), how many bytes
 * after the type byte give its length or count (lenbytes: 0 when the type
 * byte holds it in len or count). Both passes read values through it. */
struct head {
    int kind;
    unsigned lenbytes;
    uint64_t hl, len, count;
};

static struct head classify(uint8_t b)
{
    struct head h = {K_SCALAR, 0, 1, 0, 0};
    if (b <= 0x7f || b >= 0xe0)
        return h;
    if (b <= 0x8f) {
        h.kind = K_MAP;
        h.count = b & 0x0f;
    } else if (b <= 0x9f) {
        h.kind = K_ARRAY;
        h.count = b & 0x0f;
    } else if (b <= 0xbf) {
        h.kind = K_STR;
        h.len = b & 0x1f;
    } else {
        switch (b) {
        case 0xc0: /* nil */
        case 0xc2: /* false */
        case 0xc3: /* true */
            break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            h.kind = K_BIN;
            h.lenbytes = 1u << (b - 0xc4);
            break;
        case 0xca:
            h.kind = K_FLOAT;
            h.hl = 5;
            break;
        case 0xcb:
            h.kind = K_FLOAT;
            h.hl = 9;
            break;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            h.hl = 1 + (1u << (b - 0xcc));
            break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3:
            h.hl = 1 + (1u << (b - 0xd0));
            break;
        case 0xd9:
        case 0xda:
        case 0xdb:
            h.kind = K_STR;
            h.lenbytes = 1u << (b - 0xd9);
            break;
        case 0xdc:
        case 0xdd:
            h.kind = K_ARRAY;
            h.lenbytes = 2u << (b - 0xdc);
            break;
        case 0xde:
        case 0xdf:
            h.kind = K_MAP;
            h.lenbytes = 2u << (b - 0xde);
            break;
        default: /* 0xc1, and the ext types c7-c9, d4-d8 */
            h.kind = K_BAD;
            break;
        }
    }
    h.hl += h.lenbytes;
    return h;
}

/*
 * Continues the scan of the value (envelope: a message) starting at p[0]
 * over avail bytes. Returns SL_OK when the value is complete (its size is
 * s->pos), SL_AGAIN when more bytes are needed (s keeps its place: call
 * again with the same bytes and more), or an error. A length, a count or a
 * depth beyond the limits is refused at its header, before the bytes it
 * announces are there.
 */
static int scan(struct scan *s, const uint8_t *p, size_t avail, const sl_mp_limits_t *l,
                bool envelope, sl_mp_err_t *err)
{
    const char *what = envelope ? "plugin server message" : "msgpack value";
    unsigned max_stack = l->max_depth + (envelope ? 1u : 0u);

    while (!(s->started && s->depth == 0)) {
        size_t at = s->pos;
        uint64_t need = (uint64_t)at + 1;
        if (need > l->max_msg)
            goto too_long;
        if (need > avail)
            return SL_AGAIN;
        uint8_t b = p[at];
        struct head h = classify(b);
        int kind = h.kind;
        uint64_t hl = h.hl, len = h.len, count = h.count;
        unsigned lenbytes = h.lenbytes;
        if (kind == K_BAD) {
            if (b == 0xc1)
                sl_codec_err_set(err, "%s: byte %zu is 0xc1, which msgpack never uses", what, at);
            else
                sl_codec_err_set(
                    err,
                    "%s: byte %zu starts a msgpack ext type (0x%02x); the plugin protocol "
                    "has none",
                    what, at, b);
            return SL_ERR_INVALID;
        }
        /* The envelope's first byte tells at once whether this is
         * msgpack-rpc; a scalar or a str would otherwise be buffered whole
         * before being refused. */
        if (envelope && !s->started && kind != K_ARRAY) {
            sl_codec_err_set(err,
                             "%s is not msgpack-rpc: it starts with %s (byte 0x%02x), not an array "
                             "[type, ...]",
                             what, mp_kind(b), b);
            return SL_ERR_INVALID;
        }
        if (s->depth > 0 && s->map[s->depth - 1] && s->left[s->depth - 1] % 2 == 0 &&
            kind != K_STR) {
            sl_codec_err_set(err, "%s: the map key at byte %zu is %s, not a str", what, at,
                             mp_kind(b));
            return SL_ERR_INVALID;
        }

        need = (uint64_t)at + hl;
        if (need > l->max_msg)
            goto too_long;
        if (need > avail)
            return SL_AGAIN;
        if (lenbytes) {
            uint64_t v = be_get(p + at + 1, lenbytes);
            if (kind == K_ARRAY || kind == K_MAP)
                count = v;
            else
                len = v;
        }
        if (kind == K_FLOAT && !isfinite(be_float(p + at + 1, hl == 9))) {
            sl_codec_err_set(err, "%s: the float at byte %zu is not a finite number", what, at);
            return SL_ERR_INVALID;
        }
        if (envelope && !s->started && count != 3 && count != 4) {
            sl_codec_err_set(err,
                             "%s is not msgpack-rpc: an array of %" PRIu64
                             " members, not [1, msgid, error, result] or [2, label, args]",
                             what, count);
            return SL_ERR_INVALID;
        }

        /* Every announced value takes at least a byte, and counts as a node:
         * a large count is refused now, not when its values arrive. */
        uint64_t values = kind == K_MAP ? 2 * count : count;
        need = (uint64_t)at + hl + len + values;
        if (need > l->max_msg)
            goto too_long;
        if ((uint64_t)s->nodes + 1 + values > l->max_nodes) {
            sl_codec_err_set(err, "%s holds more than %zu values (at byte %zu); raise max_nodes",
                             what, l->max_nodes, at);
            return SL_ERR_TOO_BIG;
        }
        if ((kind == K_ARRAY || kind == K_MAP) && s->depth + 1 > max_stack) {
            sl_codec_err_set(err,
                             "%s is nested deeper than %u levels (at byte %zu); raise max_depth",
                             what, l->max_depth, at);
            return SL_ERR_TOO_BIG;
        }
        if ((uint64_t)at + hl + len > avail)
            return SL_AGAIN; /* a str or bin whose bytes are still coming */

        /* Commit: the value is taken. */
        s->started = true;
        s->nodes++;
        if (s->depth > 0)
            s->left[s->depth - 1]--;
        s->pos = at + (size_t)(hl + len);
        if (values > 0) {
            s->left[s->depth] = values;
            s->map[s->depth] = kind == K_MAP;
            s->depth++;
        }
        while (s->depth > 0 && s->left[s->depth - 1] == 0)
            s->depth--;
    }
    return SL_OK;

too_long:
    sl_codec_err_set(err,
                     "%s is larger than the limit of %zu bytes (a value at byte %zu runs past it)",
                     what, l->max_msg, s->pos);
    return SL_ERR_TOO_BIG;
}

/* ------------------------------------------------------------------------ */
/* The conversion of scanned bytes to jansson                                */

struct conv {
    const uint8_t *p;
    size_t n;
    size_t pos;
};

/* Converts the value at c->pos, already scanned: the bytes are all there and
 * follow every rule, so the only failure left is memory (the bounds checks
 * stay, as a guard). Recursion is bounded by the depth the scan allowed. */
static json_t *conv_value(struct conv *c)
{
    if (c->pos >= c->n)
        return NULL;
    const uint8_t *p = c->p + c->pos;
    size_t rest = c->n - c->pos;
    uint8_t b = p[0];
    struct head h = classify(b);

#define NEED(k)                                                                                    \
    do {                                                                                           \
        if (rest < (k))                                                                            \
            return NULL;                                                                           \
    } while (0)

    NEED(h.hl);
    if (h.kind == K_SCALAR || h.kind == K_FLOAT) {
        size_t k = (size_t)h.hl - 1; /* the payload after the type byte */
        uint64_t u = k ? be_get(p + 1, (unsigned)k) : 0;
        c->pos += (size_t)h.hl;
        if (b <= 0x7f)
            return json_integer(b);
        if (b >= 0xe0)
            return json_integer((int8_t)b);
        switch (b) {
        case 0xc0:
            return json_null();
        case 0xc2:
            return json_false();
        case 0xc3:
            return json_true();
        case 0xca:
        case 0xcb:
            return json_real(be_float(p + 1, k == 8));
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            /* Beyond int64: a float, as Lua would hold it. */
            return u > INT64_MAX ? json_real((double)u) : json_integer((json_int_t)u);
        default: /* d0-d3: signed */
            return json_integer(k == 1   ? (int8_t)u
                                : k == 2 ? (int16_t)u
                                : k == 4 ? (int32_t)u
                                         : (int64_t)u);
        }
    }
    if (h.kind == K_BAD)
        return NULL;
    uint64_t count = h.count, len = h.len;
    size_t hl = (size_t)h.hl;
    if (h.lenbytes) {
        uint64_t v = be_get(p + 1, h.lenbytes);
        if (h.kind == K_ARRAY || h.kind == K_MAP)
            count = v;
        else
            len = v;
    }
    int kind = h.kind == K_BIN ? K_STR : h.kind;
    NEED(hl + len);
#undef NEED
    c->pos += hl;
    if (kind == K_STR) {
        c->pos += (size_t)len;
        return json_stringn_nocheck((const char *)p + hl, (size_t)len);
    }
    if (kind == K_ARRAY) {
        json_t *a = json_array();
        for (uint64_t i = 0; a && i < count; i++) {
            json_t *e = conv_value(c);
            if (!e || json_array_append_new(a, e) != 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    for (uint64_t i = 0; o && i < count; i++) {
        json_t *k = conv_value(c);
        json_t *v = json_is_string(k) ? conv_value(c) : NULL;
        /* A repeated key keeps its last value, as Lua's table would. */
        if (!v ||
            json_object_setn_new_nocheck(o, json_string_value(k), json_string_length(k), v) != 0) {
            json_decref(o);
            o = NULL;
        }
        json_decref(k);
    }
    return o;
}

static int convert(const uint8_t *p, size_t n, json_t **out, sl_mp_err_t *err)
{
    struct conv c = {p, n, 0};
    json_t *v = conv_value(&c);
    if (!v) {
        sl_codec_err_set(err, "out of memory converting a plugin server message of %zu bytes", n);
        return SL_ERR_NOMEM;
    }
    SL_ASSERT(c.pos == n);
    *out = v;
    return SL_OK;
}

int sl_mp_value_decode(const void *buf, size_t len, const sl_mp_limits_t *lim, json_t **out,
                       size_t *used, sl_mp_err_t *err)
{
    sl_mp_limits_t l = limits_of(lim);
    struct scan s;
    scan_reset(&s);
    int rc = scan(&s, buf, len, &l, false, err);
    if (rc != SL_OK)
        return rc;
    rc = convert(buf, s.pos, out, err);
    if (rc == SL_OK)
        *used = s.pos;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Messages (5.1)                                                            */

void sl_mp_msg_dispose(sl_mp_msg_t *m)
{
    json_decref(m->error);
    json_decref(m->result);
    json_decref(m->label);
    json_decref(m->args);
    m->error = m->result = m->label = m->args = NULL;
}

/* Reads the envelope of a converted message (an array of 3 or 4, as the
 * scan made sure) into *m. */
static int envelope(json_t *a, sl_mp_msg_t *m, sl_mp_err_t *err)
{
    size_t n = json_array_size(a);
    json_t *t = json_array_get(a, 0);
    if (!json_is_integer(t)) {
        sl_codec_err_set(err,
                         "plugin server message: the type (the first member) is %s, not 1 or 2",
                         json_kind(t));
        return SL_ERR_INVALID;
    }
    json_int_t type = json_integer_value(t);
    if (type == 1) {
        if (n != 4) {
            sl_codec_err_set(
                err, "plugin server response has %zu members, not 4 [1, msgid, error, result]", n);
            return SL_ERR_INVALID;
        }
        json_t *id = json_array_get(a, 1), *e = json_array_get(a, 2);
        if (!json_is_integer(id)) {
            sl_codec_err_set(err, "plugin server response: the msgid is %s, not an integer",
                             json_kind(id));
            return SL_ERR_INVALID;
        }
        if (!json_is_null(e) && !json_is_string(e)) {
            sl_codec_err_set(err, "plugin server response: the error is %s, not nil or a string",
                             json_kind(e));
            return SL_ERR_INVALID;
        }
        *m = (sl_mp_msg_t){
            .kind = SL_MP_RESPONSE,
            .msgid = json_integer_value(id),
            .error = json_is_null(e) ? NULL : json_incref(e),
            .result = json_incref(json_array_get(a, 3)),
        };
        return SL_OK;
    }
    if (type == 2) {
        if (n != 3) {
            sl_codec_err_set(
                err, "plugin server notification has %zu members, not 3 [2, label, args]", n);
            return SL_ERR_INVALID;
        }
        json_t *label = json_array_get(a, 1);
        if (!json_is_string(label)) {
            sl_codec_err_set(err, "plugin server notification: the label is %s, not a string",
                             json_kind(label));
            return SL_ERR_INVALID;
        }
        *m = (sl_mp_msg_t){
            .kind = SL_MP_NOTIFICATION,
            .label = json_incref(label),
            .args = json_incref(json_array_get(a, 2)),
        };
        return SL_OK;
    }
    if (type == 0)
        sl_codec_err_set(err,
                         "plugin server sent a request (type 0); a plugin server may only send "
                         "responses (1) and notifications (2)");
    else
        sl_codec_err_set(err,
                         "plugin server message type %" JSON_INTEGER_FORMAT
                         " is neither 1 (a response) nor 2 (a notification)",
                         type);
    return SL_ERR_INVALID;
}

int sl_mp_msg_expect(const sl_mp_msg_t *m, uint32_t msgid, sl_mp_err_t *err)
{
    if (m->kind == SL_MP_NOTIFICATION)
        return SL_DECLINED;
    if (m->msgid != (int64_t)msgid) {
        sl_codec_err_set(err,
                         "plugin server answered msgid %" PRId64
                         " while the gateway waits for %" PRIu32 "; the connection is out of step",
                         m->msgid, msgid);
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* The reader                                                                */

/* A buffer larger than this is freed once its message is read, so that an
 * idle connection does not keep a large message's room. */
#define READER_KEEP (64u << 10)

struct sl_mp_reader_s {
    sl_mp_limits_t lim;
    uint8_t *buf; /* owned: the bytes of the message not complete yet */
    size_t len;
    size_t cap;
    int failed; /* sticky error code, 0 when healthy */
    sl_mp_err_t ferr;
    struct scan s;
};

sl_mp_reader_t *sl_mp_reader_new(const sl_mp_limits_t *lim)
{
    sl_mp_reader_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->lim = limits_of(lim);
    scan_reset(&r->s);
    return r;
}

void sl_mp_reader_free(sl_mp_reader_t *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

size_t sl_mp_reader_pending(const sl_mp_reader_t *r)
{
    return r->len;
}

void sl_mp_reader_reset(sl_mp_reader_t *r)
{
    if (r->cap > READER_KEEP) {
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    r->len = 0;
    r->failed = 0;
    scan_reset(&r->s);
}

/* Room for n more bytes; the buffer never exceeds max_msg. Peer-sized, so
 * a failure is an ordinary error. */
static int reserve(sl_mp_reader_t *r, size_t n)
{
    if (r->len + n <= r->cap)
        return SL_OK;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n)
        cap *= 2;
    cap = SL_MIN(cap, r->lim.max_msg);
    SL_ASSERT(cap >= r->len + n);
    uint8_t *b = realloc(r->buf, cap);
    if (!b)
        return SL_ERR_NOMEM;
    r->buf = b;
    r->cap = cap;
    return SL_OK;
}

static int fail(sl_mp_reader_t *r, int rc, sl_mp_err_t *err)
{
    r->failed = rc;
    if (err)
        *err = r->ferr;
    return rc;
}

/* Converts the complete message p[0, n) into *msg. */
static int deliver(sl_mp_reader_t *r, const uint8_t *p, size_t n, sl_mp_msg_t *msg)
{
    json_t *a;
    int rc = convert(p, n, &a, &r->ferr);
    if (rc != SL_OK)
        return rc;
    sl_mp_msg_t m;
    rc = envelope(a, &m, &r->ferr);
    json_decref(a);
    if (rc == SL_OK)
        *msg = m;
    return rc;
}

int sl_mp_reader_feed(sl_mp_reader_t *r, const void *p, size_t n, size_t *used, sl_mp_msg_t *msg,
                      sl_mp_err_t *err)
{
    if (r->failed)
        return fail(r, r->failed, err);

    const uint8_t *src = p;
    int rc;
    if (r->len == 0) {
        /* Nothing buffered: scan the caller's bytes, convert a whole
         * message from them without a copy. */
        rc = scan(&r->s, src, n, &r->lim, true, &r->ferr);
        if (rc == SL_OK) {
            size_t size = r->s.pos;
            rc = deliver(r, src, size, msg);
            if (rc != SL_OK)
                return fail(r, rc, err);
            scan_reset(&r->s);
            *used = size;
            return SL_OK;
        }
        if (rc != SL_AGAIN)
            return fail(r, rc, err);
        /* The scan needs a byte within max_msg beyond these n: they fit. */
        if (n > 0) {
            if (reserve(r, n) != SL_OK) {
                sl_codec_err_set(&r->ferr,
                                 "out of memory buffering %zu bytes of a plugin server message", n);
                return fail(r, SL_ERR_NOMEM, err);
            }
            memcpy(r->buf, src, n);
            r->len = n;
        }
        *used = n;
        return SL_AGAIN;
    }

    /* Part of a message is buffered: add what may belong to it (never
     * beyond max_msg), scan on, and give back what follows its end. */
    size_t old = r->len;
    size_t take = SL_MIN(n, r->lim.max_msg - old);
    if (take > 0) {
        if (reserve(r, take) != SL_OK) {
            sl_codec_err_set(&r->ferr,
                             "out of memory buffering %zu bytes of a plugin server message",
                             old + take);
            return fail(r, SL_ERR_NOMEM, err);
        }
        memcpy(r->buf + old, src, take);
        r->len += take;
    }
    rc = scan(&r->s, r->buf, r->len, &r->lim, true, &r->ferr);
    if (rc == SL_AGAIN) {
        /* With max_msg bytes there the scan ends or fails: take was n. */
        SL_ASSERT(take == n);
        *used = n;
        return SL_AGAIN;
    }
    if (rc != SL_OK) {
        r->len = old;
        return fail(r, rc, err);
    }
    size_t size = r->s.pos;
    SL_ASSERT(size > old && size <= r->len);
    rc = deliver(r, r->buf, size, msg);
    if (rc != SL_OK) {
        r->len = old;
        return fail(r, rc, err);
    }
    r->len = 0;
    scan_reset(&r->s);
    if (r->cap > READER_KEEP) {
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    *used = size - old;
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* The event loop's results (5.2, 5.3, 5.5)                                  */

int sl_mp_event_result(const json_t *result, sl_mp_pdk_call_t *call, sl_mp_err_t *err)
{
    if (!json_is_object(result)) {
        sl_codec_err_set(err, "event result is %s, not a map {EventId, Data}", json_kind(result));
        return SL_ERR_INVALID;
    }
    json_t *id = json_object_get(result, "EventId");
    if (!json_is_integer(id)) {
        if (id)
            sl_codec_err_set(err, "event result: EventId is %s, not an integer", json_kind(id));
        else
            sl_codec_err_set(err, "event result has no EventId");
        return SL_ERR_INVALID;
    }
    json_t *data = json_object_get(result, "Data");
    if (json_is_string(data)) {
        const char *s = json_string_value(data);
        size_t n = json_string_length(data);
        if (n == 3 && memcmp(s, "ret", 3) == 0) {
            *call = (sl_mp_pdk_call_t){.event_id = json_integer_value(id)};
            return SL_DONE;
        }
        char q[300];
        quote(q, sizeof(q), s, n);
        sl_codec_err_set(err, "event result: Data is the string \"%s\", not \"ret\" or a PDK call",
                         q);
        return SL_ERR_INVALID;
    }
    if (!json_is_object(data)) {
        if (data)
            sl_codec_err_set(err,
                             "event result: Data is %s, not \"ret\" or a PDK call {Method, Args}",
                             json_kind(data));
        else
            sl_codec_err_set(err, "event result has no Data");
        return SL_ERR_INVALID;
    }
    json_t *m = json_object_get(data, "Method");
    if (!json_is_string(m)) {
        if (m)
            sl_codec_err_set(err, "PDK call: Method is %s, not a string", json_kind(m));
        else
            sl_codec_err_set(err, "PDK call has no Method");
        return SL_ERR_INVALID;
    }
    const char *name = json_string_value(m);
    size_t len = json_string_length(m);
    if (len == 0 || len > SL_MP_METHOD_NAME_MAX || memchr(name, '\0', len)) {
        char q[300];
        quote(q, sizeof(q), name, len);
        sl_codec_err_set(err,
                         "PDK call: the method name \"%s\" is empty, longer than %d bytes or holds "
                         "a NUL",
                         q, SL_MP_METHOD_NAME_MAX);
        return SL_ERR_INVALID;
    }
    json_t *a = json_object_get(data, "Args"), *args;
    if (!a || json_is_null(a)) {
        args = json_array();
    } else if (json_is_array(a)) {
        args = json_incref(a);
    } else {
        /* Kong: a non-table Args is passed as the single argument. */
        args = json_array();
        if (args && json_array_append(args, a) != 0) {
            json_decref(args);
            args = NULL;
        }
    }
    if (!args) {
        sl_codec_err_set(err, "out of memory reading the arguments of %s", name);
        return SL_ERR_NOMEM;
    }
    *call = (sl_mp_pdk_call_t){
        .event_id = json_integer_value(id),
        .method = {name, len},
        .args = args,
    };
    return SL_OK;
}

void sl_mp_pdk_call_dispose(sl_mp_pdk_call_t *call)
{
    json_decref(call->args);
    call->args = NULL;
}

int sl_mp_instance_id(const json_t *result, int64_t *id, sl_mp_err_t *err)
{
    json_t *v = json_object_get(result, "Id");
    if (!json_is_object(result) || !json_is_integer(v)) {
        sl_codec_err_set(err, "plugin.StartInstance result: %s",
                         !json_is_object(result) ? "not a map {Name, Id, Config, StartTime}"
                         : v                     ? "Id is not an integer"
                                                 : "no Id");
        return SL_ERR_INVALID;
    }
    *id = json_integer_value(v);
    return SL_OK;
}

bool sl_mp_is_no_instance(const char *error, size_t len)
{
    static const char needle[] = "no plugin instance";
    const size_t k = sizeof(needle) - 1;
    if (!error)
        return false;
    for (size_t i = 0; i + k <= len; i++) {
        size_t j = 0;
        while (j < k && sl_lower(error[i + j]) == needle[j])
            j++;
        if (j == k)
            return true;
    }
    return false;
}
