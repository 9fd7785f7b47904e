/*
 * libFuzzer target: sl_h1_parse_response, as the answer to a GET and to a
 * HEAD, with default and tiny limits. Invariants (abort on violation):
 *   - the return code is SL_OK, SL_AGAIN or SL_ERR_INVALID;
 *   - on SL_OK: 0 < consumed <= size, the head ends in CRLF CRLF, every
 *     sl_str_t lies inside the input, the status is 100..599, HEAD, 1xx, 204 and
 *     304 have no body, an EOF-delimited body or 101 never keeps the connection,
 *     and the same bytes parse the same way again while one byte fewer is
 *     SL_AGAIN;
 *   - on error: status 502 and a JSON-safe message; outputs untouched.
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

static void parse_one(const char *buf, size_t size, const sl_h1_limits_t *lim, bool head)
{
    sl_h1_header_t *hdrs = calloc(lim->max_headers ? lim->max_headers : 1, sizeof(*hdrs));
    CHECK(hdrs != NULL);
    sl_h1_response_t res = {.headers = hdrs, .status = -1};
    size_t consumed = SENTINEL;
    sl_h1_error_t err = {-1, NULL};
    int rc = sl_h1_parse_response(buf, size, lim, head, &res, &consumed, &err);

    if (rc == SL_AGAIN) {
        CHECK(size < lim->max_header_block);
        CHECK(consumed == SENTINEL && res.status == -1 && err.status == -1);
    } else if (rc == SL_ERR_INVALID) {
        CHECK(err.status == 502);
        CHECK(err.message != NULL && err.message[0] != '\0');
        for (const char *m = err.message; *m; m++)
            CHECK(*m >= 0x20 && *m < 0x7f && *m != '"' && *m != '\\');
        CHECK(consumed == SENTINEL && res.status == -1);
    } else {
        CHECK(rc == SL_OK);
        CHECK(consumed >= 16 && consumed <= size && consumed <= lim->max_header_block);
        CHECK(memcmp(buf + consumed - 4, "\r\n\r\n", 4) == 0);
        CHECK(res.status >= 100 && res.status <= 599);
        CHECK(res.minor_version == 0 || res.minor_version == 1);
        CHECK(res.headers == hdrs && res.num_headers <= lim->max_headers);
        check_inside(res.reason, buf, consumed);
        for (size_t i = 0; i < res.num_headers; i++) {
            CHECK(res.headers[i].name.len > 0);
            check_inside(res.headers[i].name, buf, consumed);
            check_inside(res.headers[i].value, buf, consumed);
        }
        if (head || res.status < 200 || res.status == 204 || res.status == 304)
            CHECK(res.body_kind == SL_H1_BODY_NONE);
        if (res.body_kind == SL_H1_BODY_EOF || res.status == 101)
            CHECK(!res.keep_alive);
        CHECK(res.upgrade == (res.status == 101));

        sl_h1_response_t again = {.headers = hdrs};
        size_t c2 = SENTINEL;
        CHECK(sl_h1_parse_response(buf, consumed, lim, head, &again, &c2, &err) == SL_OK);
        CHECK(c2 == consumed && again.status == res.status && again.body_kind == res.body_kind);
        c2 = SENTINEL;
        CHECK(sl_h1_parse_response(buf, consumed - 1, lim, head, &again, &c2, &err) == SL_AGAIN);
        CHECK(c2 == SENTINEL);
    }
    free(hdrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);

    sl_h1_limits_t lim;
    sl_h1_limits_default(&lim);
    sl_h1_limits_t tiny = {.max_request_line = 20, .max_header_block = 80, .max_headers = 2};
    parse_one(buf, size, &lim, false);
    parse_one(buf, size, &lim, true);
    parse_one(buf, size, &tiny, false);

    free(buf);
    return 0;
}
