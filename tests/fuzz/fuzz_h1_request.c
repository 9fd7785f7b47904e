/*
 * libFuzzer target: sl_h1_parse_request, and behind it sl_uri_normalize and
 * the chunked decoder for the body that follows a chunked head.
 *
 * Each input is parsed twice, with the default limits and with tiny ones, so
 * the 414/431 paths are as reachable as the happy one. Invariants checked
 * (abort on violation, so libFuzzer and the gcc replay both report it):
 *   - the return code is SL_OK, SL_AGAIN or SL_ERR_INVALID;
 *   - on SL_OK: 0 < consumed <= size, consumed <= max_header_block, the head
 *     ends in CRLF CRLF, every returned sl_str_t lies inside the input, and the
 *     same bytes parse the same way again while one byte fewer is SL_AGAIN;
 *   - SL_AGAIN only while size < max_header_block, and with outputs untouched;
 *   - on error: a known status and a short JSON-safe message, outputs untouched;
 *   - a normalised path is no longer than its input and normalising it again
 *     changes nothing.
 */
#include "fuzz_check.h"
#include "h1_parser.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL ((size_t)0x5eed)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_inside(sl_str_t s, const char *buf, size_t len)
{
    if (s.p == NULL) {
        CHECK(s.len == 0);
        return;
    }
    CHECK(s.p >= buf && s.p <= buf + len);
    CHECK(s.len <= (size_t)(buf + len - s.p));
}

static void check_message(const sl_h1_error_t *err)
{
    CHECK(err->message != NULL);
    size_t n = strlen(err->message);
    CHECK(n > 0 && n < 100);
    for (size_t i = 0; i < n; i++) {
        char c = err->message[i];
        CHECK(c >= 0x20 && c < 0x7f && c != '"' && c != '\\');
    }
}

static void check_normalize(sl_str_t path)
{
    if (path.len == 0 || path.p[0] != '/')
        return;
    char *out = malloc(path.len);
    char *again = malloc(path.len);
    CHECK(out != NULL && again != NULL);
    size_t out_len = SENTINEL, again_len = SENTINEL;
    int rc = sl_uri_normalize(path.p, path.len, out, &out_len);
    CHECK(rc == SL_OK || rc == SL_ERR_INVALID);
    if (rc == SL_OK) {
        CHECK(out_len >= 1 && out_len <= path.len && out[0] == '/');
        CHECK(sl_uri_normalize(out, out_len, again, &again_len) == SL_OK);
        CHECK(again_len == out_len && memcmp(again, out, out_len) == 0);
    } else {
        CHECK(out_len == SENTINEL);
    }
    free(out);
    free(again);
}

static void count_data(void *ud, const char *p, size_t n)
{
    (void)p;
    *(uint64_t *)ud += n;
}

static void check_body(const sl_h1_request_t *r, const char *rest, size_t len)
{
    if (r->body_kind != SL_H1_BODY_CHUNKED)
        return;
    sl_h1_chunked_t st;
    sl_h1_chunked_init(&st, 1 << 20);
    uint64_t seen = 0;
    size_t consumed = SENTINEL;
    sl_h1_error_t err = {0, NULL};
    int rc = sl_h1_chunked_feed(&st, rest, len, &consumed, count_data, &seen, &err);
    if (rc == SL_AGAIN) {
        CHECK(consumed == len);
    } else if (rc == SL_OK) {
        CHECK(consumed >= 5 && consumed <= len);
        CHECK(rest[consumed - 2] == '\r' && rest[consumed - 1] == '\n');
    } else {
        CHECK(rc == SL_ERR_INVALID);
        CHECK(err.status == 400 || err.status == 413);
        check_message(&err);
    }
    CHECK(seen == st.data_total && seen <= len);
}

static void parse_one(const char *buf, size_t size, const sl_h1_limits_t *lim)
{
    sl_h1_header_t *hdrs = calloc(lim->max_headers ? lim->max_headers : 1, sizeof(*hdrs));
    CHECK(hdrs != NULL);
    sl_h1_request_t req = {.headers = hdrs, .num_headers = SENTINEL};
    size_t consumed = SENTINEL;
    sl_h1_error_t err = {-1, NULL};
    int rc = sl_h1_parse_request(buf, size, lim, &req, &consumed, &err);

    if (rc == SL_AGAIN) {
        CHECK(size < lim->max_header_block);
        CHECK(consumed == SENTINEL && req.num_headers == SENTINEL && err.status == -1);
    } else if (rc == SL_ERR_INVALID) {
        CHECK(err.status == 400 || err.status == 414 || err.status == 431 || err.status == 501 ||
              err.status == 505);
        check_message(&err);
        CHECK(consumed == SENTINEL && req.num_headers == SENTINEL);
    } else {
        CHECK(rc == SL_OK);
        CHECK(consumed >= 16 && consumed <= size && consumed <= lim->max_header_block);
        CHECK(memcmp(buf + consumed - 4, "\r\n\r\n", 4) == 0);
        CHECK(req.headers == hdrs && req.num_headers <= lim->max_headers);
        CHECK(req.minor_version == 0 || req.minor_version == 1);
        CHECK(req.body_kind == SL_H1_BODY_NONE || req.body_kind == SL_H1_BODY_LENGTH ||
              req.body_kind == SL_H1_BODY_CHUNKED);
        CHECK(req.body_kind != SL_H1_BODY_LENGTH || req.content_length <= INT64_MAX);
        CHECK(req.method.len > 0 && req.target.len > 0);
        check_inside(req.method, buf, consumed);
        check_inside(req.target, buf, consumed);
        check_inside(req.query, buf, consumed);
        check_inside(req.authority, buf, consumed);
        check_inside(req.host, buf, consumed);
        /* the one exception: absolute-form without a path gets a static "/" */
        if (!(req.absolute_form && req.path.len == 1 && req.path.p[0] == '/'))
            check_inside(req.path, buf, consumed);
        for (size_t i = 0; i < req.num_headers; i++) {
            CHECK(req.headers[i].name.len > 0);
            check_inside(req.headers[i].name, buf, consumed);
            check_inside(req.headers[i].value, buf, consumed);
        }

        /* deterministic, and the head is not complete one byte earlier */
        sl_h1_request_t again = {.headers = hdrs};
        size_t c2 = SENTINEL;
        CHECK(sl_h1_parse_request(buf, consumed, lim, &again, &c2, &err) == SL_OK);
        CHECK(c2 == consumed && again.body_kind == req.body_kind);
        c2 = SENTINEL;
        CHECK(sl_h1_parse_request(buf, consumed - 1, lim, &again, &c2, &err) == SL_AGAIN);
        CHECK(c2 == SENTINEL);

        check_normalize(req.path);
        check_body(&req, buf + consumed, size - consumed);
    }
    free(hdrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so an overread is an ASan report even under replay */
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);

    sl_h1_limits_t lim;
    sl_h1_limits_default(&lim);
    parse_one(buf, size, &lim);
    sl_h1_limits_t tiny = {.max_request_line = 24, .max_header_block = 96, .max_headers = 3};
    parse_one(buf, size, &tiny);

    free(buf);
    return 0;
}
