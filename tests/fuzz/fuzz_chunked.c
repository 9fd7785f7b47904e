/*
 * libFuzzer target: the incremental chunked decoder. The input is a body; it
 * is decoded three ways (all at once, byte by byte, and in pieces whose sizes
 * come from the input itself), with and without a max_data limit, and the
 * three runs must agree on everything: return code, error, bytes consumed and
 * the decoded data. Also checked (abort on violation):
 *   - SL_AGAIN consumes the whole piece; SL_OK ends on the CRLF that closes
 *     the trailer section and never later than the input;
 *   - every data span lies inside the piece being fed;
 *   - data_total counts exactly the bytes handed to the callback, and never
 *     exceeds max_data;
 *   - errors are 400 or 413 with a message, and a failed or finished decoder
 *     stays so.
 */
#include "fuzz_check.h"
#include "h1_parser.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL ((size_t)0x5eed)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    /* where the current piece lives, to check the spans */
    const char *piece;
    size_t piece_len;
    /* results */
    char *out; /* decoded data, at most size bytes */
    size_t out_len;
    int rc;
    int status;
    const char *message;
    size_t consumed; /* body bytes consumed in total */
};

static void on_data(void *ud, const char *p, size_t n)
{
    struct run *r = ud;
    CHECK(n > 0);
    CHECK(p >= r->piece && p + n <= r->piece + r->piece_len);
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
}

/* Decodes buf in pieces: piece i has size step(i). */
static void decode(struct run *r, const char *buf, size_t size, uint64_t max_data, int mode)
{
    sl_h1_chunked_t st;
    sl_h1_chunked_init(&st, max_data);
    size_t off = 0;
    unsigned i = 0;
    r->out_len = 0;
    r->rc = SL_AGAIN;
    r->status = 0;
    r->message = NULL;

    while (off < size) {
        size_t n;
        if (mode == 0)
            n = size - off;
        else if (mode == 1)
            n = 1;
        else
            n = 1 + (uint8_t)buf[(i * 7) % size] % 13;
        i++;
        if (n > size - off)
            n = size - off;

        size_t consumed = SENTINEL;
        sl_h1_error_t err = {0, NULL};
        r->piece = buf + off;
        r->piece_len = n;
        r->rc = sl_h1_chunked_feed(&st, buf + off, n, &consumed, on_data, r, &err);
        CHECK(st.data_total == r->out_len);
        CHECK(max_data == 0 || st.data_total <= max_data);
        if (r->rc == SL_AGAIN) {
            CHECK(consumed == n);
            off += n;
            continue;
        }
        if (r->rc == SL_OK) {
            CHECK(consumed >= 1 && consumed <= n);
            off += consumed;
            CHECK(off >= 5 && buf[off - 2] == '\r' && buf[off - 1] == '\n');
            /* finished: takes nothing more */
            size_t c2 = SENTINEL;
            CHECK(sl_h1_chunked_feed(&st, buf, size, &c2, on_data, r, &err) == SL_OK);
            CHECK(c2 == 0);
            break;
        }
        CHECK(r->rc == SL_ERR_INVALID);
        CHECK(consumed == SENTINEL);
        CHECK(err.status == 400 || err.status == 413);
        CHECK(err.message != NULL && err.message[0] != '\0');
        r->status = err.status;
        r->message = err.message;
        /* failed: stays failed */
        CHECK(sl_h1_chunked_feed(&st, "0\r\n\r\n", 5, &consumed, NULL, NULL, &err) ==
              SL_ERR_INVALID);
        break;
    }
    r->consumed = off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);

    static const uint64_t limits[] = {0, 64};
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        struct run runs[3];
        for (int mode = 0; mode < 3; mode++) {
            runs[mode].out = malloc(size ? size : 1);
            CHECK(runs[mode].out != NULL);
            decode(&runs[mode], buf, size, limits[l], mode);
        }
        for (int mode = 1; mode < 3; mode++) {
            CHECK(runs[mode].rc == runs[0].rc);
            CHECK(runs[mode].status == runs[0].status);
            CHECK(runs[mode].message == runs[0].message);
            CHECK(runs[mode].out_len == runs[0].out_len);
            CHECK(memcmp(runs[mode].out, runs[0].out, runs[0].out_len) == 0);
            if (runs[0].rc != SL_ERR_INVALID)
                CHECK(runs[mode].consumed == runs[0].consumed);
        }
        for (int mode = 0; mode < 3; mode++)
            free(runs[mode].out);
    }

    free(buf);
    return 0;
}
