/*
 * Checks shared by the codec unit tests (cmocka must be included first):
 * expected bytes are written as hex pairs, with text between double quotes
 * taken as ASCII ("0a 04" "host" is 0a 04 68 6f 73 74); expected JSON as
 * text.
 */
#ifndef SL_TEST_BYTES_H
#define SL_TEST_BYTES_H

#include "strbuf.h"

#include <jansson.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson's allocations succeed k more times, then fail (one global hook:
 * the tests are single-threaded); json_set_alloc_funcs(malloc, free)
 * undoes it. */
static long json_left;

static void *json_failing_malloc(size_t n)
{
    if (json_left-- <= 0)
        return NULL;
    return malloc(n);
}

static inline void json_fail_after(long k)
{
    json_left = k;
    json_set_alloc_funcs(json_failing_malloc, free);
}

/* Parses hex into out (cap bytes at most); returns the length. */
static inline size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
        } else if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                assert_true(n < cap);
                out[n++] = (uint8_t)*s;
            }
            assert_int_equal(*s, '"');
            s++;
        } else {
            unsigned v;
            assert_int_equal(sscanf(s, "%2x", &v), 1);
            assert_true(n < cap);
            out[n++] = (uint8_t)v;
            s += 2;
        }
    }
    return n;
}

static inline void dump_bytes(const char *what, const void *p, size_t n)
{
    const uint8_t *b = p;
    fprintf(stderr, "%s (%zu):", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", b[i]);
    fprintf(stderr, "\n");
}

/* Fails, printing both, unless p[0, n) is exactly what hex says. */
static inline void assert_bytes(const void *p, size_t n, const char *hex)
{
    uint8_t want[4096];
    size_t wn = unhex(hex, want, sizeof(want));
    if (wn != n || memcmp(p, want, n) != 0) {
        dump_bytes("got ", p, n);
        dump_bytes("want", want, wn);
        fail_msg("bytes differ");
    }
}

/* JSON text of a test (any value; NUL escapes allowed). */
static inline json_t *jparse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

/* Fails, printing both, unless got equals the JSON text want_text. */
static inline void assert_json(const json_t *got, const char *want_text)
{
    json_t *want = jparse(want_text);
    if (!json_equal((json_t *)got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(stderr, "got  %s\nwant %s\n", g, want_text);
        free(g);
        json_decref(want);
        fail_msg("JSON differs");
    }
    json_decref(want);
}

/* An sl_sb_t with small inline storage, so that tests grow it too. */
#define SB_DECL(name)                                                                              \
    char name##_st[32];                                                                            \
    sl_sb_t name;                                                                                  \
    sl_sb_init(&name, name##_st, sizeof(name##_st))

#endif
