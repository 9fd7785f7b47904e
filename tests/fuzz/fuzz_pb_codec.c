/*
 * libFuzzer target: the ProtoBuf:1 decoders of pluginserver-bridge (bytes a
 * plugin server controls). The first input byte picks what the rest is:
 * frames read from a stream, a PDK call's argument of one of the wire
 * types, or an RpcReturn. Checked (abort on violation):
 *   - frame decoding consumes nothing on SL_AGAIN, never a frame larger
 *     than the limit, and frames tile the input exactly;
 *   - argument and return decoding either succeed (and what they decoded
 *     can be released) or fail with an error code, never crash: nesting and
 *     size are bounded before protobuf-c sees the bytes.
 */
#include "fuzz_check.h"
#include "pb_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void frames(const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        sl_pb_frame_t f;
        sl_pb_err_t err;
        int rc = sl_pb_frame_decode(p + off, n - off, MAX_FRAME, &f, &err);
        if (rc == SL_AGAIN)
            return;
        if (rc != SL_OK)
            return; /* too big: the connection would close */
        CHECK(f.size >= SL_PB_FRAME_HEAD && f.size <= n - off);
        CHECK(f.size - SL_PB_FRAME_HEAD <= MAX_FRAME);
        off += f.size;
    }
    CHECK(off == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t kind = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    sl_pb_err_t err;
    if (kind < 16) {
        frames(p, n);
    } else if (kind < 128) {
        sl_pb_limits_t lim = {.max_depth = 16, .max_nodes = 1000};
        sl_pb_arg_t arg;
        sl_pb_type_t t = (sl_pb_type_t)(kind % SL_PB_T_COUNT);
        if (sl_pb_arg_decode(t, p, n, &lim, NULL, &arg, &err) == SL_OK)
            sl_pb_arg_dispose(&arg);
    } else {
        sl_pb_return_t *r = NULL;
        if (sl_pb_return_parse(p, n, 1, kind % 8, NULL, &r, &err) == SL_OK)
            sl_pb_return_free(r, NULL);
    }
    return 0;
}
