/*
 * libFuzzer target: the MsgPack:1 reader of pluginserver-bridge (bytes a
 * Python or JS plugin server controls) and the helpers that take what it
 * decodes. The first input byte picks what the rest is and how it arrives:
 *
 *   0-127    a stream of messages, fed to one reader in pieces whose sizes
 *            come from the byte, and to another in one piece;
 *   128-191  one msgpack value for sl_mp_value_decode;
 *   192-255  one value taken as a HandleEvent or Step result, then
 *            answered with a Step (the PDK method picked by the byte).
 *
 * Checked (abort on violation):
 *   - the reader takes every byte it is given (SL_AGAIN with used = n) or
 *     stops at a message's end (SL_OK with 0 < used <= n), never buffers
 *     more than max_msg, and after an error keeps failing;
 *   - pieces or one piece, the same messages come out, and the same error;
 *   - msgpack-c's own unpacker agrees on every accepted message: it reads
 *     the same number of bytes (and needs more where the reader does);
 *   - decode, encode, decode again gives the same bytes (a fixed point);
 *   - every request built from decoded values decodes as [0, msgid,
 *     "plugin.<Step>", [{"EventId", "Data"}]].
 * Limits are small (depth 16, so msgpack-c's 32-level stack suffices) so
 * that the refusal paths are reached often.
 */
#include "fuzz_check.h"
#include "mp_codec.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSG 4096
#define MAX_MSGS 64

static const sl_mp_limits_t LIM = {.max_depth = 16, .max_nodes = 2000, .max_msg = MAX_MSG};

/* Packs v (NULL: nil) and returns the bytes (malloc'd) in *out. */
static size_t encode(const json_t *v, char **out)
{
    char st[64];
    sl_sb_t sb;
    sl_sb_init(&sb, st, sizeof(st));
    /* Decoded values are within LIM; the envelope adds one level. */
    sl_mp_limits_t lim = {.max_depth = LIM.max_depth + 1, .max_nodes = LIM.max_nodes * 2};
    CHECK(sl_mp_value_put(&sb, v, &lim, NULL) == SL_OK);
    *out = malloc(sb.len ? sb.len : 1);
    CHECK(*out);
    memcpy(*out, sb.p, sb.len);
    size_t n = sb.len;
    sl_sb_dispose(&sb);
    return n;
}

/* decode(encode(v)) encodes to the same bytes as v. */
static void check_fixed_point(const json_t *v)
{
    char *a, *b;
    size_t na = encode(v, &a);
    json_t *back;
    size_t used;
    sl_mp_limits_t lim = {
        .max_depth = LIM.max_depth + 1, .max_nodes = LIM.max_nodes * 2, .max_msg = na};
    CHECK(sl_mp_value_decode(a, na, &lim, &back, &used, NULL) == SL_OK);
    CHECK(used == na);
    size_t nb = encode(back, &b);
    CHECK(na == nb && memcmp(a, b, na) == 0);
    json_decref(back);
    free(a);
    free(b);
}

/* A message as bytes, to compare two readers' outputs. */
static size_t msg_bytes(const sl_mp_msg_t *m, char **out)
{
    json_t *a = json_array();
    CHECK(a);
    json_array_append_new(a, json_integer(m->kind));
    if (m->kind == SL_MP_RESPONSE) {
        json_array_append_new(a, json_integer(m->msgid));
        json_array_append(a, m->error ? m->error : json_null());
        json_array_append(a, m->result);
    } else {
        CHECK(m->kind == SL_MP_NOTIFICATION && json_is_string(m->label));
        json_array_append(a, m->label);
        json_array_append(a, m->args);
    }
    size_t n = encode(a, out);
    json_decref(a);
    return n;
}

struct run {
    size_t n;              /* messages */
    char *bytes[MAX_MSGS]; /* each as msg_bytes */
    size_t len[MAX_MSGS];
    size_t at[MAX_MSGS + 1]; /* where each message starts in the input */
    int end;                 /* SL_AGAIN or the error that stopped it */
};

/* Feeds p[0, n) in pieces cut by `seed` (0: one piece). */
static void run_reader(const uint8_t *p, size_t n, unsigned seed, struct run *out)
{
    sl_mp_reader_t *r = sl_mp_reader_new(&LIM);
    CHECK(r);
    memset(out, 0, sizeof(*out));
    out->end = SL_AGAIN;
    size_t off = 0;
    unsigned x = seed;
    while (off < n && out->end == SL_AGAIN) {
        size_t k = n - off;
        if (seed) {
            x = x * 1103515245u + 12345u;
            k = SL_MIN(k, 1 + (x >> 16) % (seed % 16 == 0 ? 300 : 1 + seed % 16));
        }
        const uint8_t *q = p + off;
        off += k;
        while (k > 0) {
            size_t used = 0;
            sl_mp_msg_t m;
            sl_mp_err_t err;
            int rc = sl_mp_reader_feed(r, q, k, &used, &m, &err);
            CHECK(sl_mp_reader_pending(r) <= MAX_MSG);
            if (rc == SL_AGAIN) {
                CHECK(used == k);
                break;
            }
            if (rc != SL_OK) {
                out->end = rc;
                /* Sticky. */
                CHECK(sl_mp_reader_feed(r, q, k, &used, &m, &err) == rc);
                break;
            }
            CHECK(used > 0 && used <= k);
            q += used;
            k -= used;
            if (out->n < MAX_MSGS) {
                check_fixed_point(m.result ? m.result : m.args);
                out->len[out->n] = msg_bytes(&m, &out->bytes[out->n]);
                out->at[++out->n] = (size_t)(q - p);
            }
            /* A response's result may be an event result. */
            sl_mp_pdk_call_t c;
            if (m.kind == SL_MP_RESPONSE && sl_mp_event_result(m.result, &c, NULL) == SL_OK)
                sl_mp_pdk_call_dispose(&c);
            sl_mp_msg_dispose(&m);
        }
    }
    sl_mp_reader_free(r);
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->bytes[i]);
}

/* msgpack-c reads each accepted message with the same length, and needs
 * more bytes where the reader does. Only bytes the reader accepted reach it:
 * it would allocate a hostile header's declared count. */
static void check_msgpack_c(const uint8_t *p, size_t n, const struct run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0, len = r->at[i + 1] - r->at[i];
        int rc = msgpack_unpack_next(&u, (const char *)p + r->at[i], len, &off);
        CHECK(rc == MSGPACK_UNPACK_SUCCESS && off == len);
        CHECK(u.data.type == MSGPACK_OBJECT_ARRAY);
        msgpack_unpacked_destroy(&u);
    }
    if (r->end == SL_AGAIN && r->at[r->n] < n) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        int rc = msgpack_unpack_next(&u, (const char *)p + r->at[r->n], n - r->at[r->n], &off);
        CHECK(rc == MSGPACK_UNPACK_CONTINUE);
        msgpack_unpacked_destroy(&u);
    }
}

static void stream(const uint8_t *p, size_t n, unsigned seed)
{
    static struct run a, b;
    run_reader(p, n, seed ? seed : 1, &a);
    run_reader(p, n, 0, &b);
    CHECK(a.n == b.n && a.end == b.end);
    for (size_t i = 0; i < a.n; i++) {
        CHECK(a.len[i] == b.len[i] && memcmp(a.bytes[i], b.bytes[i], a.len[i]) == 0);
        CHECK(a.at[i + 1] == b.at[i + 1]);
    }
    if (b.n < MAX_MSGS)
        check_msgpack_c(p, n, &b);
    free_run(&a);
    free_run(&b);
}

static const char *const METHODS[] = {
    "kong.request.get_headers",  "kong.request.get_query",     "kong.response.get_headers",
    "kong.request.get_raw_body", "kong.response.get_raw_body", "kong.router.get_route",
    "kong.client.get_consumer",  "kong.request.get_header",
};

/* A request decodes as [0, msgid, "plugin.Step...", [{"EventId", "Data"}]]. */
static void check_step_request(const sl_sb_t *sb, uint32_t msgid, int64_t event_id)
{
    json_t *v;
    size_t used;
    sl_mp_limits_t lim = {
        .max_depth = LIM.max_depth + 3, .max_nodes = LIM.max_nodes * 3, .max_msg = sb->len};
    CHECK(sl_mp_value_decode(sb->p, sb->len, &lim, &v, &used, NULL) == SL_OK);
    CHECK(used == sb->len);
    CHECK(json_array_size(v) == 4);
    CHECK(json_integer_value(json_array_get(v, 0)) == 0);
    CHECK(json_integer_value(json_array_get(v, 1)) == msgid);
    CHECK(strncmp(json_string_value(json_array_get(v, 2)), "plugin.Step", 11) == 0);
    json_t *param = json_array_get(json_array_get(v, 3), 0);
    CHECK(json_integer_value(json_object_get(param, "EventId")) == event_id);
    CHECK(json_object_get(param, "Data") != NULL);
    json_decref(v);
}

static void event_result(const uint8_t *p, size_t n, unsigned pick)
{
    json_t *v;
    size_t used;
    if (sl_mp_value_decode(p, n, &LIM, &v, &used, NULL) != SL_OK)
        return;
    sl_mp_pdk_call_t c;
    int rc = sl_mp_event_result(v, &c, NULL);
    if (rc == SL_OK) {
        CHECK(c.method.len > 0 && c.method.len <= SL_MP_METHOD_NAME_MAX);
        CHECK(json_is_array(c.args));
        sl_mp_pdk_call_dispose(&c);
    } else if (rc == SL_DONE) {
        CHECK(c.args == NULL);
    } else {
        CHECK(rc == SL_ERR_INVALID);
    }
    /* Answer a PDK call with the value as its result. */
    const char *m = METHODS[pick % SL_ARRAY_LEN(METHODS)];
    char st[64];
    sl_sb_t sb;
    sl_sb_init(&sb, st, sizeof(st));
    rc = sl_mp_call_step_result(&sb, pick, 7, m, strlen(m), v, &LIM, NULL);
    if (rc == SL_OK)
        check_step_request(&sb, pick, 7);
    else
        CHECK(rc == SL_ERR_TOO_BIG && sb.len == 0);
    sl_sb_dispose(&sb);
    json_t *mm;
    CHECK(sl_mp_multimap(v, &mm) == SL_OK);
    json_decref(mm);
    int64_t id;
    (void)sl_mp_instance_id(v, &id, NULL);
    if (json_is_string(v))
        (void)sl_mp_is_no_instance(json_string_value(v), json_string_length(v));
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t kind = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (kind < 128) {
        stream(p, n, kind);
    } else if (kind < 192) {
        json_t *v;
        size_t used;
        int rc = sl_mp_value_decode(p, n, &LIM, &v, &used, NULL);
        if (rc == SL_OK) {
            CHECK(used > 0 && used <= n);
            check_fixed_point(v);
            json_decref(v);
        } else {
            CHECK(rc == SL_AGAIN || rc == SL_ERR_INVALID || rc == SL_ERR_TOO_BIG);
        }
    } else {
        event_result(p, n, kind);
    }
    return 0;
}
