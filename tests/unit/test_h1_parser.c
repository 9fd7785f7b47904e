/*
 * Unit tests for the HTTP/1.1 parser (dataplane/h1_parser.c).
 *
 * Table-driven: every bad-input rule has a row that names it, the bytes that
 * break it and the status the parser must answer. Inputs are copied into a
 * heap buffer of exactly their length before parsing, so AddressSanitizer
 * catches any read past the end, which is what the "every proper prefix" tests
 * rely on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h1_parser.h"
#include "util.h"

#define MAX_HDRS 128
#define SENTINEL ((size_t)0xdeadbeef)

/* A literal with its length, NULs included. */
#define LIT(s) s, sizeof(s) - 1

/* An exact-size heap copy of a test input. */
static char *dup_input(const char *s, size_t n)
{
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    if (n)
        memcpy(b, s, n);
    return b;
}

static bool str_eq(sl_str_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* Fails the test with the case name when `s` is not `want`. */
static void check_str(const char *name, const char *field, sl_str_t s, const char *want)
{
    if (want == NULL) {
        if (s.p != NULL)
            fail_msg("%s: %s: want NULL, got \"%.*s\"", name, field, (int)s.len, s.p);
        return;
    }
    if (s.p == NULL || !str_eq(s, want))
        fail_msg("%s: %s: want \"%s\", got \"%.*s\"", name, field, want, (int)s.len,
                 s.p ? s.p : "(null)");
}

/* ------------------------------------------------------------------------ */
/* Requests: bad input                                                      */
/* ------------------------------------------------------------------------ */

struct bad_case {
    const char *name;
    const char *in;
    size_t len;
    int status;
};

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define POST "POST / HTTP/1.1\r\nHost: a\r\n"

static const struct bad_case bad_requests[] = {
    /* framing: RFC 9112 6.1, 6.3 */
    {"CL and TE", LIT(POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {"TE and CL", LIT(POST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400},
    {"CL and unknown TE", LIT(POST "Content-Length: 5\r\nTransfer-Encoding: foo\r\n\r\n"), 400},
    {"differing CL", LIT(POST "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400},
    {"CL +5", LIT(POST "Content-Length: +5\r\n\r\n"), 400},
    {"CL -1", LIT(POST "Content-Length: -1\r\n\r\n"), 400},
    {"CL 5a", LIT(POST "Content-Length: 5a\r\n\r\n"), 400},
    {"CL 0x5", LIT(POST "Content-Length: 0x5\r\n\r\n"), 400},
    {"CL empty", LIT(POST "Content-Length:\r\n\r\n"), 400},
    {"CL blank", LIT(POST "Content-Length:   \r\n\r\n"), 400},
    {"CL 1 2", LIT(POST "Content-Length:  1 2\r\n\r\n"), 400},
    {"CL list", LIT(POST "Content-Length: 5, 5\r\n\r\n"), 400},
    {"CL 2^63", LIT(POST "Content-Length: 9223372036854775808\r\n\r\n"), 400},
    {"CL 2^64", LIT(POST "Content-Length: 18446744073709551616\r\n\r\n"), 400},
    {"CL huge", LIT(POST "Content-Length: 99999999999999999999999999\r\n\r\n"), 400},
    {"CL good then bad", LIT(POST "Content-Length: 5\r\nContent-Length: 5x\r\n\r\n"), 400},
    {"TE gzip", LIT(POST "Transfer-Encoding: gzip\r\n\r\n"), 400},
    {"TE chunked, gzip", LIT(POST "Transfer-Encoding: chunked, gzip\r\n\r\n"), 400},
    {"TE chunked then gzip line",
     LIT(POST "Transfer-Encoding: chunked\r\n"
              "Transfer-Encoding: gzip\r\n\r\n"),
     400},
    {"TE chunked twice", LIT(POST "Transfer-Encoding: chunked, chunked\r\n\r\n"), 400},
    {"TE chunked twice lines",
     LIT(POST "Transfer-Encoding: chunked\r\n"
              "Transfer-Encoding: chunked\r\n\r\n"),
     400},
    {"TE foo", LIT(POST "Transfer-Encoding: foo\r\n\r\n"), 501},
    {"TE identity", LIT(POST "Transfer-Encoding: identity\r\n\r\n"), 501},
    {"TE foo, chunked", LIT(POST "Transfer-Encoding: foo, chunked\r\n\r\n"), 501},
    {"TE empty", LIT(POST "Transfer-Encoding:\r\n\r\n"), 400},
    {"TE commas only", LIT(POST "Transfer-Encoding: , ,\r\n\r\n"), 400},
    {"TE parameter", LIT(POST "Transfer-Encoding: chunked;q=1\r\n\r\n"), 400},
    {"TE quoted", LIT(POST "Transfer-Encoding: \"chunked\"\r\n\r\n"), 400},
    {"TE chunked with junk", LIT(POST "Transfer-Encoding: chunked x\r\n\r\n"), 400},
    {"TE on HTTP/1.0", LIT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},

    /* field syntax: RFC 9112 5 */
    {"obs-fold SP", LIT(H11 "X-A: a\r\n b\r\n\r\n"), 400},
    {"obs-fold HTAB", LIT(H11 "X-A: a\r\n\tb\r\n\r\n"), 400},
    {"SP before first field", LIT("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400},
    {"bare CR in value", LIT(H11 "X-A: a\rb\r\n\r\n"), 400},
    {"bare CR ends value", LIT(H11 "X-A: a\r\r\n\r\n"), 400},
    {"bare CR in name", LIT(H11 "X\rA: a\r\n\r\n"), 400},
    {"bare CR at head end", LIT(H11 "\rX\r\n"), 400},
    {"bare CR in request line", LIT("GET / HTTP/1.1\rX\nHost: a\r\n\r\n"), 400},
    {"bare LF request line", LIT("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400},
    {"bare LF header", LIT("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400},
    {"bare LF head end", LIT(H11 "\n"), 400},
    {"bare LF empty value", LIT(H11 "X-A:\n\r\n"), 400},
    {"LF in value", LIT(H11 "X-A: a\nb\r\n\r\n"), 400},
    {"NUL in name", LIT(H11 "X\0A: a\r\n\r\n"), 400},
    {"NUL in value", LIT(H11 "X-A: a\0b\r\n\r\n"), 400},
    {"NUL leading value", LIT(H11 "X-A: \0\r\n\r\n"), 400},
    {"CTL 0x01 in value",
     LIT(H11 "X-A: a\x01"
             "b\r\n\r\n"),
     400},
    {"ESC in name",
     LIT(H11 "X\x1b"
             "A: a\r\n\r\n"),
     400},
    {"DEL in value", LIT(H11 "X-A: a\x7f\r\n\r\n"), 400},
    {"DEL in name", LIT(H11 "X\x7f: a\r\n\r\n"), 400},
    {"separator in name", LIT(H11 "X(A): a\r\n\r\n"), 400},
    {"obs-text in name", LIT(H11 "X\xc3\xa9: a\r\n\r\n"), 400},
    {"SP before colon", LIT("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400},
    {"HTAB before colon", LIT(H11 "X-A\t: a\r\n\r\n"), 400},
    {"SP inside name", LIT(H11 "X A: a\r\n\r\n"), 400},
    {"empty name", LIT(H11 ": a\r\n\r\n"), 400},
    {"no colon", LIT(H11 "X-A\r\n\r\n"), 400},

    /* Host: RFC 9112 3.2 */
    {"HTTP/1.1 without Host", LIT("GET / HTTP/1.1\r\nX-A: a\r\n\r\n"), 400},
    {"two Host", LIT("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400},
    {"two identical Host", LIT("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400},
    {"two Host on 1.0", LIT("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400},
    {"Host with space", LIT("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400},
    {"Host with userinfo", LIT("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400},
    {"Host with slash", LIT("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400},
    {"absolute-form Host mismatch", LIT("GET http://a.com/x HTTP/1.1\r\nHost: b.com\r\n\r\n"), 400},
    {"absolute-form port mismatch", LIT("GET http://a.com:8080/ HTTP/1.1\r\nHost: a.com\r\n\r\n"),
     400},
    {"absolute-form empty Host", LIT("GET http://a.com/ HTTP/1.1\r\nHost:\r\n\r\n"), 400},
    {"absolute-form no Host 1.1", LIT("GET http://a.com/ HTTP/1.1\r\n\r\n"), 400},
    {"absolute-form userinfo", LIT("GET http://u@a.com/ HTTP/1.1\r\nHost: a.com\r\n\r\n"), 400},
    {"absolute-form empty authority", LIT("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"absolute-form ftp", LIT("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400},

    /* request line: RFC 9112 3 */
    {"HTTP/2.0", LIT("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505},
    {"HTTP/3.4", LIT("GET / HTTP/3.4\r\nHost: a\r\n\r\n"), 505},
    {"HTTP/0.9", LIT("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505},
    {"HTTP/1.x", LIT("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/x.1", LIT("GET / HTTP/x.1\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/1.10", LIT("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/11", LIT("GET / HTTP/11\r\nHost: a\r\n\r\n"), 400},
    {"HTTP/1", LIT("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400},
    {"http/1.1", LIT("GET / http/1.1\r\nHost: a\r\n\r\n"), 400},
    {"HTTPS/1.1", LIT("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400},
    {"no version", LIT("GET /\r\nHost: a\r\n\r\n"), 400},
    {"no target", LIT("GET HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"method paren", LIT("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"method at", LIT("GE@ / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"method NUL", LIT("GE\0 / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"method utf8", LIT("G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"empty method", LIT(" / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"HTAB separator", LIT("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"two spaces after method", LIT("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"two spaces after target", LIT("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"trailing space", LIT("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400},
    {"space in target", LIT("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"NUL in target", LIT("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"CTL in target", LIT("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"DEL in target", LIT("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"HTAB in target", LIT("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"fragment in target", LIT("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"relative target", LIT("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"asterisk for GET", LIT("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"asterisk for options", LIT("options * HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"authority-form for GET", LIT("GET a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n"), 400},
    {"CONNECT origin-form", LIT("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"CONNECT no port", LIT("CONNECT a.com HTTP/1.1\r\nHost: a.com\r\n\r\n"), 400},
    {"CONNECT empty port", LIT("CONNECT a.com: HTTP/1.1\r\nHost: a.com\r\n\r\n"), 400},
    {"CONNECT bad port", LIT("CONNECT a.com:44x HTTP/1.1\r\nHost: a.com\r\n\r\n"), 400},
    {"CONNECT absolute", LIT("CONNECT http://a.com/ HTTP/1.1\r\nHost: a.com\r\n\r\n"), 400},
    {"leading LF", LIT("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"leading bare CR", LIT("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
    {"five leading CRLF", LIT("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400},
};

static void test_request_bad(void **state)
{
    (void)state;
    sl_h1_header_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < SL_ARRAY_LEN(bad_requests); i++) {
        const struct bad_case *c = &bad_requests[i];
        char *b = dup_input(c->in, c->len);
        sl_h1_request_t req = {.headers = hdrs, .num_headers = 77};
        size_t consumed = SENTINEL;
        sl_h1_error_t err = {0, NULL};
        int rc = sl_h1_parse_request(b, c->len, NULL, &req, &consumed, &err);
        if (rc != SL_ERR_INVALID)
            fail_msg("%s: rc %d, want SL_ERR_INVALID", c->name, rc);
        if (err.status != c->status)
            fail_msg("%s: status %d (%s), want %d", c->name, err.status, err.message, c->status);
        if (err.message == NULL || err.message[0] == '\0')
            fail_msg("%s: no message", c->name);
        if (consumed != SENTINEL || req.num_headers != 77 || req.method.p != NULL)
            fail_msg("%s: outputs written on error", c->name);
        free(b);
    }
}

/* Exact messages for the rules other parts of the project quote. */
static void test_request_messages(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *msg;
    } cases[] = {
        {POST "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         "both Content-Length and Transfer-Encoding present"},
        {POST "Content-Length: 1x\r\n\r\n", "invalid Content-Length"},
        {H11 "X: a\r\n b\r\n\r\n", "header line folding (obs-fold) is not allowed"},
        {H11 "X: a\x01\r\n\r\n", "invalid character in header value"},
        {"GET / HTTP/1.1\r\n\r\n", "missing Host header"},
        {"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", "Host header does not match absolute URI"},
        {"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"},
        {POST "Transfer-Encoding: foo\r\n\r\n", "unsupported transfer coding"},
    };
    sl_h1_header_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].in), consumed;
        char *b = dup_input(cases[i].in, n);
        sl_h1_request_t req = {.headers = hdrs};
        sl_h1_error_t err = {0, NULL};
        assert_int_equal(sl_h1_parse_request(b, n, NULL, &req, &consumed, &err), SL_ERR_INVALID);
        assert_string_equal(err.message, cases[i].msg);
        free(b);
    }
}

/* ------------------------------------------------------------------------ */
/* Requests: good input                                                     */
/* ------------------------------------------------------------------------ */

struct good_case {
    const char *name;
    const char *in;
    const char *method, *path, *query, *host, *authority;
    int minor;
    sl_h1_body_kind_t body;
    uint64_t cl;
    bool keep_alive, expect, upgrade, absolute;
    size_t num_headers;
};

static const struct good_case good_requests[] = {
    /* RFC 9110 2.5: HTTP/1.2 is served as HTTP/1.1. */
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", "GET", "/", NULL, "h", "", 1, SL_H1_BODY_NONE,
     0, true, false, false, false, 1},
    {"simple", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "/", NULL, "example.com", "",
     1, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"query", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/a/b", "x=1&y=2", "h", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"empty query", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/a", "", "h", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"question marks", "GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/a", "b?c", "h", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"OWS trimmed", "GET / HTTP/1.1\r\nHost: \t h:8000 \t \r\n\r\n", "GET", "/", NULL, "h:8000", "",
     1, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"content-length", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n", "POST", "/p",
     NULL, "h", "", 1, SL_H1_BODY_LENGTH, 42, true, false, false, false, 2},
    {"CL zero", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "POST", "/p", NULL, "h",
     "", 1, SL_H1_BODY_LENGTH, 0, true, false, false, false, 2},
    {"CL max", "POST /p HTTP/1.1\r\nHost: h\r\ncontent-length: 9223372036854775807\r\n\r\n", "POST",
     "/p", NULL, "h", "", 1, SL_H1_BODY_LENGTH, INT64_MAX, true, false, false, false, 2},
    {"identical CLs",
     "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", "POST", "/p",
     NULL, "h", "", 1, SL_H1_BODY_LENGTH, 7, true, false, false, false, 3},
    {"CL with OWS", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length:  7 \r\n\r\n", "POST", "/p",
     NULL, "h", "", 1, SL_H1_BODY_LENGTH, 7, true, false, false, false, 2},
    {"chunked", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", "POST", "/p",
     NULL, "h", "", 1, SL_H1_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"chunked mixed case", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD\r\n\r\n",
     "POST", "/p", NULL, "h", "", 1, SL_H1_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"gzip, chunked", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     "POST", "/p", NULL, "h", "", 1, SL_H1_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"TE on two lines",
     "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     "POST", "/p", NULL, "h", "", 1, SL_H1_BODY_CHUNKED, 0, true, false, false, false, 3},
    {"TE OWS before comma",
     "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\t ,  chunked\r\n\r\n", "POST", "/p",
     NULL, "h", "", 1, SL_H1_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"TE empty elements", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked,\r\n\r\n",
     "POST", "/p", NULL, "h", "", 1, SL_H1_BODY_CHUNKED, 0, true, false, false, false, 2},
    {"1.0 default close", "GET / HTTP/1.0\r\n\r\n", "GET", "/", NULL, "", "", 0, SL_H1_BODY_NONE, 0,
     false, false, false, false, 0},
    {"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/", NULL, "", "",
     0, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"1.0 Keep-Alive case", "GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", "GET", "/", NULL,
     "", "", 0, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "GET",
     "/", NULL, "", "", 0, SL_H1_BODY_NONE, 0, false, false, false, false, 1},
    {"1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "GET", "/", NULL, "h",
     "", 1, SL_H1_BODY_NONE, 0, false, false, false, false, 2},
    {"1.1 CLOSE", "GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", "GET", "/", NULL, "h",
     "", 1, SL_H1_BODY_NONE, 0, false, false, false, false, 2},
    {"close in list", "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n", "GET", "/",
     NULL, "h", "", 1, SL_H1_BODY_NONE, 0, false, false, false, false, 2},
    {"close on 2nd line",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: close\r\n\r\n", "GET", "/", NULL,
     "h", "", 1, SL_H1_BODY_NONE, 0, false, false, false, false, 3},
    {"closed is not close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", "GET", "/",
     NULL, "h", "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 2},
    {"expect", "PUT /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
     "PUT", "/u", NULL, "h", "", 1, SL_H1_BODY_LENGTH, 3, true, true, false, false, 3},
    {"expect case", "PUT /u HTTP/1.1\r\nHost: h\r\nexpect: 100-Continue\r\n\r\n", "PUT", "/u", NULL,
     "h", "", 1, SL_H1_BODY_NONE, 0, true, true, false, false, 2},
    {"expect ignored on 1.0", "PUT /u HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", "PUT", "/u", NULL,
     "", "", 0, SL_H1_BODY_NONE, 0, false, false, false, false, 1},
    {"other expectation", "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", "PUT", "/u", NULL,
     "h", "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 2},
    {"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     "GET", "/ws", NULL, "h", "", 1, SL_H1_BODY_NONE, 0, true, false, true, false, 3},
    {"upgrade in list",
     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, upgrade\r\nupgrade: h2c\r\n\r\n",
     "GET", "/ws", NULL, "h", "", 1, SL_H1_BODY_NONE, 0, true, false, true, false, 3},
    {"Upgrade without Connection", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
     "GET", "/ws", NULL, "h", "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 2},
    {"Connection upgrade without Upgrade",
     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", "GET", "/ws", NULL, "h", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 2},
    {"absolute-form", "GET http://Example.com/a?b HTTP/1.1\r\nHost: example.COM\r\n\r\n", "GET",
     "/a", "b", "example.COM", "Example.com", 1, SL_H1_BODY_NONE, 0, true, false, false, true, 1},
    {"absolute-form port", "GET https://a.com:8443/x HTTP/1.1\r\nHost: a.com:8443\r\n\r\n", "GET",
     "/x", NULL, "a.com:8443", "a.com:8443", 1, SL_H1_BODY_NONE, 0, true, false, false, true, 1},
    {"absolute-form HTTP scheme", "GET HTTP://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", NULL,
     "a", "a", 1, SL_H1_BODY_NONE, 0, true, false, false, true, 1},
    {"absolute-form no path", "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", NULL, "a",
     "a", 1, SL_H1_BODY_NONE, 0, true, false, false, true, 1},
    {"absolute-form query only", "GET http://a?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "q=1",
     "a", "a", 1, SL_H1_BODY_NONE, 0, true, false, false, true, 1},
    {"absolute-form 1.0 no Host", "GET http://a/p HTTP/1.0\r\n\r\n", "GET", "/p", NULL, "", "a", 0,
     SL_H1_BODY_NONE, 0, false, false, false, true, 0},
    {"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", NULL, "h", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"CONNECT", "CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n", "CONNECT", "", NULL,
     "a.com:443", "a.com:443", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"CONNECT ipv6", "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", "CONNECT", "", NULL,
     "[::1]:443", "[::1]:443", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"extension method", "PURGE-ALL /x HTTP/1.1\r\nHost: h\r\n\r\n", "PURGE-ALL", "/x", NULL, "h",
     "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"obs-text in target and value",
     "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX-N: \xc3\xa9\r\n\r\n", "GET", "/caf\xc3\xa9", NULL,
     "h", "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 2},
    {"empty values", "GET / HTTP/1.1\r\nHost:\r\nX-E:   \r\n\r\n", "GET", "/", NULL, "", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 2},
    {"leading CRLFs", "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", NULL, "h", "", 1,
     SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"four leading CRLFs", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", NULL,
     "h", "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 1},
    {"many headers",
     "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD-E_F.G~H!I#J$K%L&M'N*O+P^Q`R|S: "
     "v\"(),/:;<=>?@[\\]{}\r\n\r\n",
     "GET", "/", NULL, "h", "", 1, SL_H1_BODY_NONE, 0, true, false, false, false, 5},
};

static void check_good(const struct good_case *c, const sl_h1_request_t *r)
{
    check_str(c->name, "method", r->method, c->method);
    check_str(c->name, "path", r->path, c->path);
    check_str(c->name, "query", r->query, c->query);
    check_str(c->name, "host", r->host, c->host);
    check_str(c->name, "authority", r->authority, c->authority);
    if (r->minor_version != c->minor)
        fail_msg("%s: minor %d", c->name, r->minor_version);
    if (r->body_kind != c->body)
        fail_msg("%s: body_kind %d, want %d", c->name, r->body_kind, c->body);
    if (r->body_kind == SL_H1_BODY_LENGTH && r->content_length != c->cl)
        fail_msg("%s: content_length %llu", c->name, (unsigned long long)r->content_length);
    if (r->keep_alive != c->keep_alive)
        fail_msg("%s: keep_alive %d", c->name, r->keep_alive);
    if (r->expect_continue != c->expect)
        fail_msg("%s: expect_continue %d", c->name, r->expect_continue);
    if (r->upgrade != c->upgrade)
        fail_msg("%s: upgrade %d", c->name, r->upgrade);
    if (r->absolute_form != c->absolute)
        fail_msg("%s: absolute_form %d", c->name, r->absolute_form);
    if (r->num_headers != c->num_headers)
        fail_msg("%s: num_headers %zu, want %zu", c->name, r->num_headers, c->num_headers);
}

static void test_request_good(void **state)
{
    (void)state;
    sl_h1_header_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < SL_ARRAY_LEN(good_requests); i++) {
        const struct good_case *c = &good_requests[i];
        size_t n = strlen(c->in);
        char *b = dup_input(c->in, n);
        sl_h1_request_t req = {.headers = hdrs};
        size_t consumed = SENTINEL;
        sl_h1_error_t err = {0, NULL};
        int rc = sl_h1_parse_request(b, n, NULL, &req, &consumed, &err);
        if (rc != SL_OK)
            fail_msg("%s: rc %d (%d %s)", c->name, rc, err.status, err.message);
        if (consumed != n)
            fail_msg("%s: consumed %zu of %zu", c->name, consumed, n);
        if (req.headers != hdrs)
            fail_msg("%s: headers array replaced", c->name);
        check_good(c, &req);
        free(b);
    }
}

static void test_request_target_is_verbatim(void **state)
{
    (void)state;
    sl_h1_header_t hdrs[4];
    const char in[] = "GET /a/../b%2f?x HTTP/1.1\r\nHost: h\r\n\r\n";
    char *b = dup_input(in, sizeof(in) - 1);
    sl_h1_request_t req = {.headers = hdrs};
    size_t consumed;
    sl_h1_error_t err;
    sl_h1_limits_t lim = {8192, 32768, 4};
    assert_int_equal(sl_h1_parse_request(b, sizeof(in) - 1, &lim, &req, &consumed, &err), SL_OK);
    assert_true(str_eq(req.target, "/a/../b%2f?x"));
    assert_true(req.target.p == b + 4);
    assert_true(str_eq(req.headers[0].name, "Host"));
    assert_true(str_eq(req.headers[0].value, "h"));
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Requests: limits, prefixes, pipelining                                   */
/* ------------------------------------------------------------------------ */

static int parse_with(const char *in, size_t n, const sl_h1_limits_t *lim, size_t *consumed,
                      sl_h1_error_t *err)
{
    static sl_h1_header_t hdrs[256];
    char *b = dup_input(in, n);
    sl_h1_request_t req = {.headers = hdrs};
    int rc = sl_h1_parse_request(b, n, lim, &req, consumed, err);
    free(b);
    return rc;
}

/* Builds "GET /<pad> HTTP/1.1\r\nHost: h\r\n\r\n" with a request line of
 * exactly line_len bytes (without CRLF). Caller frees. */
static char *request_with_line(size_t line_len, size_t *n)
{
    const char *pre = "GET /", *post = " HTTP/1.1";
    const char *tail = "\r\nHost: h\r\n\r\n";
    size_t pad = line_len - strlen(pre) - strlen(post);
    *n = line_len + strlen(tail);
    char *b = malloc(*n + 1);
    assert_non_null(b);
    strcpy(b, pre);
    memset(b + strlen(pre), 'a', pad);
    strcpy(b + strlen(pre) + pad, post);
    strcat(b, tail);
    return b;
}

static void test_request_line_limit(void **state)
{
    (void)state;
    sl_h1_limits_t lim = {64, 4096, 10};
    size_t consumed, n;
    sl_h1_error_t err;

    /* exactly at the limit: fine */
    char *b = request_with_line(64, &n);
    assert_int_equal(parse_with(b, n, &lim, &consumed, &err), SL_OK);
    assert_int_equal(consumed, n);
    free(b);

    /* one byte over: 414 once complete ... */
    b = request_with_line(65, &n);
    assert_int_equal(parse_with(b, n, &lim, &consumed, &err), SL_ERR_INVALID);
    assert_int_equal(err.status, 414);
    assert_string_equal(err.message, "request line too long");
    /* ... and already while incomplete, as soon as it cannot fit */
    for (size_t cut = 0; cut < n; cut++) {
        int rc = parse_with(b, cut, &lim, &consumed, &err);
        if (cut < 64 + 2) {
            if (rc != SL_AGAIN)
                fail_msg("cut %zu: rc %d", cut, rc);
        } else if (rc != SL_ERR_INVALID || err.status != 414) {
            fail_msg("cut %zu: rc %d status %d", cut, rc, err.status);
        }
    }
    free(b);

    /* a line that is just CR short of its LF at the limit */
    b = request_with_line(64, &n);
    assert_int_equal(parse_with(b, 64 + 1, &lim, &consumed, &err), SL_AGAIN);
    free(b);

    /* default limits: a 9000-byte URI, complete and incomplete */
    b = request_with_line(9000, &n);
    assert_int_equal(parse_with(b, n, NULL, &consumed, &err), SL_ERR_INVALID);
    assert_int_equal(err.status, 414);
    assert_int_equal(parse_with(b, 8500, NULL, &consumed, &err), SL_ERR_INVALID);
    assert_int_equal(err.status, 414);
    assert_int_equal(parse_with(b, 8000, NULL, &consumed, &err), SL_AGAIN);
    free(b);
}

/* A request whose head is exactly head_len bytes, padded in one header. */
static char *request_with_head(size_t head_len, size_t *n)
{
    const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t pad = head_len - strlen(pre) - strlen(post);
    *n = head_len;
    char *b = malloc(head_len + 1);
    assert_non_null(b);
    strcpy(b, pre);
    memset(b + strlen(pre), 'p', pad);
    strcpy(b + strlen(pre) + pad, post);
    return b;
}

static void test_header_block_limit(void **state)
{
    (void)state;
    sl_h1_limits_t lim = {8192, 200, 10};
    size_t consumed, n;
    sl_h1_error_t err;

    char *b = request_with_head(200, &n);
    assert_int_equal(parse_with(b, n, &lim, &consumed, &err), SL_OK);
    assert_int_equal(consumed, 200);
    free(b);

    b = request_with_head(201, &n);
    assert_int_equal(parse_with(b, n, &lim, &consumed, &err), SL_ERR_INVALID);
    assert_int_equal(err.status, 431);
    assert_string_equal(err.message, "request header block too large");
    for (size_t cut = 0; cut < n; cut++) {
        int rc = parse_with(b, cut, &lim, &consumed, &err);
        if (cut < 200) {
            if (rc != SL_AGAIN)
                fail_msg("cut %zu: rc %d", cut, rc);
        } else if (rc != SL_ERR_INVALID || err.status != 431) {
            fail_msg("cut %zu: rc %d status %d", cut, rc, err.status);
        }
    }
    free(b);

    /* default limits: a 40000-byte header, complete or not */
    b = request_with_head(40000, &n);
    assert_int_equal(parse_with(b, n, NULL, &consumed, &err), SL_ERR_INVALID);
    assert_int_equal(err.status, 431);
    assert_int_equal(parse_with(b, 32768, NULL, &consumed, &err), SL_ERR_INVALID);
    assert_int_equal(err.status, 431);
    assert_int_equal(parse_with(b, 32767, NULL, &consumed, &err), SL_AGAIN);
    free(b);

    /* a head that ends within the limit is fine even with more bytes behind it */
    b = request_with_head(200, &n);
    char *two = malloc(400);
    assert_non_null(two);
    memcpy(two, b, 200);
    memset(two + 200, 'x', 200);
    assert_int_equal(parse_with(two, 400, &lim, &consumed, &err), SL_OK);
    assert_int_equal(consumed, 200);
    free(two);
    free(b);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    char buf[8192];
    size_t consumed;
    sl_h1_error_t err;

    for (size_t count = 99; count <= 101; count++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
        for (size_t i = 1; i < count; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%zu: v\r\n", i);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
        int rc = parse_with(buf, n, NULL, &consumed, &err);
        if (count <= 100) {
            assert_int_equal(rc, SL_OK);
        } else {
            assert_int_equal(rc, SL_ERR_INVALID);
            assert_int_equal(err.status, 431);
            assert_string_equal(err.message, "too many request headers");
            /* also while the head is still incomplete */
            assert_int_equal(parse_with(buf, n - 2, NULL, &consumed, &err), SL_ERR_INVALID);
            assert_int_equal(err.status, 431);
        }
    }

    /* max_headers 0: any header at all is too many */
    sl_h1_limits_t lim = {8192, 32768, 0};
    sl_h1_request_t req = {.headers = NULL};
    const char in[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(sl_h1_parse_request(in, sizeof(in) - 1, &lim, &req, &consumed, &err), SL_OK);
    const char in2[] = "GET / HTTP/1.0\r\nA: b\r\n\r\n";
    assert_int_equal(sl_h1_parse_request(in2, sizeof(in2) - 1, &lim, &req, &consumed, &err),
                     SL_ERR_INVALID);
    assert_int_equal(err.status, 431);
}

static void test_request_prefixes(void **state)
{
    (void)state;
    sl_h1_header_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < SL_ARRAY_LEN(good_requests); i++) {
        const struct good_case *c = &good_requests[i];
        size_t n = strlen(c->in);
        for (size_t cut = 0; cut < n; cut++) {
            char *b = dup_input(c->in, cut);
            sl_h1_request_t req = {.headers = hdrs, .num_headers = 55};
            size_t consumed = SENTINEL;
            sl_h1_error_t err = {-1, "untouched"};
            int rc = sl_h1_parse_request(b, cut, NULL, &req, &consumed, &err);
            if (rc != SL_AGAIN)
                fail_msg("%s: prefix %zu/%zu: rc %d (%d %s)", c->name, cut, n, rc, err.status,
                         err.message);
            if (consumed != SENTINEL || req.num_headers != 55 || req.method.p != NULL ||
                err.status != -1)
                fail_msg("%s: prefix %zu: outputs written on SL_AGAIN", c->name, cut);
            free(b);
        }
    }
}

static void test_request_pipelined(void **state)
{
    (void)state;
    const char in[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                      "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                      "GET /three HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t n = sizeof(in) - 1;
    char *b = dup_input(in, n);
    sl_h1_header_t hdrs[8];
    sl_h1_request_t req = {.headers = hdrs};
    sl_h1_error_t err;
    size_t off = 0, consumed;

    assert_int_equal(sl_h1_parse_request(b, n, NULL, &req, &consumed, &err), SL_OK);
    assert_int_equal(consumed, strlen("GET /one HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_true(str_eq(req.path, "/one"));
    off += consumed;

    assert_int_equal(sl_h1_parse_request(b + off, n - off, NULL, &req, &consumed, &err), SL_OK);
    assert_true(str_eq(req.path, "/two"));
    assert_int_equal(req.body_kind, SL_H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 3);
    off += consumed;
    assert_memory_equal(b + off, "abc", 3);
    off += 3;

    assert_int_equal(sl_h1_parse_request(b + off, n - off, NULL, &req, &consumed, &err), SL_OK);
    assert_true(str_eq(req.path, "/three"));
    assert_int_equal(off + consumed, n);
    free(b);
}

static void test_find_header_and_defaults(void **state)
{
    (void)state;
    sl_h1_limits_t lim;
    sl_h1_limits_default(&lim);
    assert_int_equal(lim.max_request_line, 8192);
    assert_int_equal(lim.max_header_block, 32768);
    assert_int_equal(lim.max_headers, 100);

    const char in[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Foo: 1\r\nx-foo: 2\r\n\r\n";
    sl_h1_header_t hdrs[8];
    sl_h1_request_t req = {.headers = hdrs};
    size_t consumed;
    sl_h1_error_t err;
    assert_int_equal(sl_h1_parse_request(in, sizeof(in) - 1, &lim, &req, &consumed, &err), SL_OK);
    const sl_h1_header_t *h = sl_h1_find_header(req.headers, req.num_headers, "x-FOO");
    assert_non_null(h);
    assert_true(str_eq(h->value, "1"));
    assert_ptr_equal(h, &hdrs[1]);
    assert_null(sl_h1_find_header(req.headers, req.num_headers, "X-Fo"));
    assert_null(sl_h1_find_header(req.headers, 0, "host"));
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

struct resp_case {
    const char *name;
    const char *in;
    bool head;
    int status;
    const char *reason;
    sl_h1_body_kind_t body;
    uint64_t cl;
    bool keep_alive, upgrade;
};

static const struct resp_case good_responses[] = {
    {"200 CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 200, "OK", SL_H1_BODY_LENGTH,
     5, true, false},
    {"200 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200, "OK",
     SL_H1_BODY_CHUNKED, 0, true, false},
    {"200 gzip TE is EOF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 200, "OK",
     SL_H1_BODY_EOF, 0, false, false},
    {"200 unknown TE then chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: foo, chunked\r\n\r\n",
     false, 200, "OK", SL_H1_BODY_CHUNKED, 0, true, false},
    {"200 no length", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, 200, "OK", SL_H1_BODY_EOF, 0,
     false, false},
    {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 200, "OK", SL_H1_BODY_NONE, 5,
     true, false},
    {"HEAD chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 200, "OK",
     SL_H1_BODY_NONE, 0, true, false},
    {"HEAD no length", "HTTP/1.1 200 OK\r\n\r\n", true, 200, "OK", SL_H1_BODY_NONE, 0, true, false},
    {"204", "HTTP/1.1 204 No Content\r\n\r\n", false, 204, "No Content", SL_H1_BODY_NONE, 0, true,
     false},
    {"304 with CL", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, 304,
     "Not Modified", SL_H1_BODY_NONE, 100, true, false},
    {"100", "HTTP/1.1 100 Continue\r\n\r\n", false, 100, "Continue", SL_H1_BODY_NONE, 0, true,
     false},
    {"103", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", false, 103, "Early Hints",
     SL_H1_BODY_NONE, 0, true, false},
    {"101", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n", false,
     101, "Switching Protocols", SL_H1_BODY_NONE, 0, false, true},
    {"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, 200, "OK",
     SL_H1_BODY_LENGTH, 0, false, false},
    {"1.0 default close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, 200, "OK",
     SL_H1_BODY_LENGTH, 1, false, false},
    {"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
     false, 200, "OK", SL_H1_BODY_LENGTH, 1, true, false},
    {"1.0 keep-alive EOF body", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, 200,
     "OK", SL_H1_BODY_EOF, 0, false, false},
    {"empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false, 404, "",
     SL_H1_BODY_LENGTH, 0, true, false},
    {"no reason no SP", "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n", false, 500, "",
     SL_H1_BODY_LENGTH, 0, true, false},
    {"reason with spaces", "HTTP/1.1 418 I'm a  teapot\r\nContent-Length: 0\r\n\r\n", false, 418,
     "I'm a  teapot", SL_H1_BODY_LENGTH, 0, true, false},
    {"identical CLs", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", false,
     200, "OK", SL_H1_BODY_LENGTH, 2, true, false},
};

static void test_response_good(void **state)
{
    (void)state;
    sl_h1_header_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < SL_ARRAY_LEN(good_responses); i++) {
        const struct resp_case *c = &good_responses[i];
        size_t n = strlen(c->in), consumed = SENTINEL;
        char *b = dup_input(c->in, n);
        sl_h1_response_t res = {.headers = hdrs};
        sl_h1_error_t err = {0, NULL};
        int rc = sl_h1_parse_response(b, n, NULL, c->head, &res, &consumed, &err);
        if (rc != SL_OK)
            fail_msg("%s: rc %d (%d %s)", c->name, rc, err.status, err.message);
        if (consumed != n)
            fail_msg("%s: consumed %zu", c->name, consumed);
        if (res.status != c->status)
            fail_msg("%s: status %d", c->name, res.status);
        check_str(c->name, "reason", res.reason, c->reason);
        if (res.body_kind != c->body)
            fail_msg("%s: body_kind %d want %d", c->name, res.body_kind, c->body);
        if (res.body_kind == SL_H1_BODY_LENGTH && res.content_length != c->cl)
            fail_msg("%s: content_length %llu", c->name, (unsigned long long)res.content_length);
        if (res.keep_alive != c->keep_alive)
            fail_msg("%s: keep_alive %d", c->name, res.keep_alive);
        if (res.upgrade != c->upgrade)
            fail_msg("%s: upgrade %d", c->name, res.upgrade);

        for (size_t cut = 0; cut < n; cut++) {
            sl_h1_response_t r2 = {.headers = hdrs, .status = -7};
            size_t c2 = SENTINEL;
            rc = sl_h1_parse_response(b, cut, NULL, c->head, &r2, &c2, &err);
            if (rc != SL_AGAIN || c2 != SENTINEL || r2.status != -7)
                fail_msg("%s: prefix %zu: rc %d", c->name, cut, rc);
        }
        free(b);
    }
}

static const struct bad_case bad_responses[] = {
    {"garbage", LIT("garbage\r\n\r\n"), 502},
    {"HTTP/2.0", LIT("HTTP/2.0 200 OK\r\n\r\n"), 502},
    {"HTTP/1.x", LIT("HTTP/1.x 200 OK\r\n\r\n"), 502},
    {"short status", LIT("HTTP/1.1 20 OK\r\n\r\n"), 502},
    {"long status", LIT("HTTP/1.1 2000 OK\r\n\r\n"), 502},
    {"status 099", LIT("HTTP/1.1 099 X\r\n\r\n"), 502},
    {"status 600", LIT("HTTP/1.1 600 X\r\n\r\n"), 502},
    {"letters in status", LIT("HTTP/1.1 2x0 OK\r\n\r\n"), 502},
    {"two spaces", LIT("HTTP/1.1  200 OK\r\n\r\n"), 502},
    {"bare LF status line", LIT("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), 502},
    {"bare CR status line", LIT("HTTP/1.1 200 O\rK\r\n\r\n"), 502},
    {"CTL in reason", LIT("HTTP/1.1 200 O\x01K\r\n\r\n"), 502},
    {"CL and TE", LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
     502},
    {"differing CL", LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 502},
    {"bad CL", LIT("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), 502},
    {"TE chunked twice", LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
     502},
    {"TE on 1.0", LIT("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 502},
    {"obs-fold", LIT("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), 502},
    {"NUL in value", LIT("HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n"), 502},
    {"SP before colon", LIT("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"), 502},
    {"bare LF header", LIT("HTTP/1.1 200 OK\r\nX: a\n\r\n"), 502},
};

static void test_response_bad(void **state)
{
    (void)state;
    sl_h1_header_t hdrs[MAX_HDRS];
    for (size_t i = 0; i < SL_ARRAY_LEN(bad_responses); i++) {
        const struct bad_case *c = &bad_responses[i];
        char *b = dup_input(c->in, c->len);
        sl_h1_response_t res = {.headers = hdrs, .status = -7};
        size_t consumed = SENTINEL;
        sl_h1_error_t err = {0, NULL};
        int rc = sl_h1_parse_response(b, c->len, NULL, false, &res, &consumed, &err);
        if (rc != SL_ERR_INVALID || err.status != c->status || err.message == NULL)
            fail_msg("%s: rc %d status %d", c->name, rc, err.status);
        if (consumed != SENTINEL || res.status != -7)
            fail_msg("%s: outputs written on error", c->name);
        free(b);
    }

    /* limits map to 502 as well */
    sl_h1_limits_t lim = {16, 64, 2};
    size_t consumed;
    sl_h1_error_t err;
    sl_h1_response_t res = {.headers = hdrs};
    const char longline[] = "HTTP/1.1 200 A very long reason phrase\r\n\r\n";
    assert_int_equal(
        sl_h1_parse_response(longline, sizeof(longline) - 1, &lim, false, &res, &consumed, &err),
        SL_ERR_INVALID);
    assert_int_equal(err.status, 502);
    const char many[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_int_equal(
        sl_h1_parse_response(many, sizeof(many) - 1, &lim, false, &res, &consumed, &err),
        SL_ERR_INVALID);
    assert_int_equal(err.status, 502);
}

static void test_response_pipelined_1xx(void **state)
{
    (void)state;
    const char in[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: "
                      "2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n";
    size_t n = sizeof(in) - 1, off = 0, consumed;
    char *b = dup_input(in, n);
    sl_h1_header_t hdrs[8];
    sl_h1_response_t res = {.headers = hdrs};
    sl_h1_error_t err;

    assert_int_equal(sl_h1_parse_response(b, n, NULL, false, &res, &consumed, &err), SL_OK);
    assert_int_equal(res.status, 100);
    off += consumed;
    assert_int_equal(sl_h1_parse_response(b + off, n - off, NULL, false, &res, &consumed, &err),
                     SL_OK);
    assert_int_equal(res.status, 201);
    assert_int_equal(res.content_length, 2);
    off += consumed + 2;
    assert_int_equal(sl_h1_parse_response(b + off, n - off, NULL, false, &res, &consumed, &err),
                     SL_OK);
    assert_int_equal(res.status, 204);
    assert_int_equal(off + consumed, n);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Chunked bodies                                                           */
/* ------------------------------------------------------------------------ */

struct sink {
    char data[4096];
    size_t len;
};

static void collect(void *ud, const char *p, size_t n)
{
    struct sink *s = ud;
    assert_true(n > 0);
    assert_true(s->len + n <= sizeof(s->data));
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

struct chunk_case {
    const char *name;
    const char *in;
    size_t len;
    const char *data;
    size_t data_len;
    size_t body_len; /* bytes that belong to the body (the rest is the next message) */
};

/* body: the chunked body; rest: bytes of the next message behind it */
#define CHUNK_OK(name, body, data)                                                                 \
    {                                                                                              \
        name, LIT(body), LIT(data), sizeof(body) - 1                                               \
    }
#define CHUNK_OK_REST(name, body, rest, data)                                                      \
    {                                                                                              \
        name, LIT(body rest), LIT(data), sizeof(body) - 1                                          \
    }

static const struct chunk_case good_chunked[] = {
    CHUNK_OK("empty body", "0\r\n\r\n", ""),
    CHUNK_OK("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"),
    CHUNK_OK("two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
    CHUNK_OK("hex sizes", "a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
             "0123456789abcdefghij"),
    CHUNK_OK("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"),
    CHUNK_OK("CRLF in data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"),
    CHUNK_OK("extension", "5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello"),
    CHUNK_OK("extension BWS", "5 ;a=\"q;x\"\t; b\r\nhello\r\n0\t;z\r\n\r\n", "hello"),
    CHUNK_OK("trailers", "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other:\r\n\r\n", "hello"),
    CHUNK_OK_REST("next message after", "3\r\nabc\r\n0\r\n\r\n", "GET / HTTP/1.1\r\n", "abc"),
    CHUNK_OK_REST("next chunked body after", "0\r\n\r\n", "0\r\n\r\n", ""),
    CHUNK_OK("16 hex digits", "0000000000000003\r\nabc\r\n0\r\n\r\n", "abc"),
    CHUNK_OK("binary data", "3\r\n\0\xff\n\r\n0\r\n\r\n", "\0\xff\n"),
};

static void run_chunked(const struct chunk_case *c, const char *b, size_t step)
{
    sl_h1_chunked_t st;
    sl_h1_chunked_init(&st, 0);
    struct sink sink = {.len = 0};
    sl_h1_error_t err;
    size_t off = 0;
    int rc = SL_AGAIN;
    while (off < c->len) {
        size_t n = SL_MIN(step, c->len - off), consumed = SENTINEL;
        rc = sl_h1_chunked_feed(&st, b + off, n, &consumed, collect, &sink, &err);
        if (rc == SL_AGAIN) {
            if (consumed != n)
                fail_msg("%s/%zu: SL_AGAIN consumed %zu of %zu", c->name, step, consumed, n);
        } else if (rc == SL_OK) {
            off += consumed;
            break;
        } else {
            fail_msg("%s/%zu: rc %d (%s) at %zu", c->name, step, rc, err.message, off);
        }
        off += consumed;
    }
    if (rc != SL_OK)
        fail_msg("%s/%zu: never completed", c->name, step);
    if (off != c->body_len)
        fail_msg("%s/%zu: body ends at %zu, want %zu", c->name, step, off, c->body_len);
    size_t want = c->data_len;
    if (sink.len != want || memcmp(sink.data, c->data, want) != 0)
        fail_msg("%s/%zu: data mismatch (%zu bytes)", c->name, step, sink.len);
    if (st.data_total != want)
        fail_msg("%s/%zu: data_total %llu", c->name, step, (unsigned long long)st.data_total);

    /* a finished decoder takes nothing more */
    size_t consumed = SENTINEL;
    assert_int_equal(sl_h1_chunked_feed(&st, "x", 1, &consumed, collect, &sink, &err), SL_OK);
    assert_int_equal(consumed, 0);
}

static void test_chunked_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(good_chunked); i++) {
        const struct chunk_case *c = &good_chunked[i];
        char *b = dup_input(c->in, c->len);
        run_chunked(c, b, c->len); /* all at once */
        run_chunked(c, b, 1);      /* byte by byte */
        run_chunked(c, b, 2);
        run_chunked(c, b, 3);
        free(b);
    }
}

static void test_chunked_every_split(void **state)
{
    (void)state;
    const char in[] = "5;x=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\nNEXT";
    size_t n = sizeof(in) - 1, body = n - 4;
    char *b = dup_input(in, n);
    for (size_t cut = 0; cut <= n; cut++) {
        sl_h1_chunked_t st;
        sl_h1_chunked_init(&st, 0);
        struct sink sink = {.len = 0};
        sl_h1_error_t err;
        size_t c1 = SENTINEL, c2 = SENTINEL;
        int rc = sl_h1_chunked_feed(&st, b, cut, &c1, collect, &sink, &err);
        if (cut < body) {
            assert_int_equal(rc, SL_AGAIN);
            assert_int_equal(c1, cut);
            rc = sl_h1_chunked_feed(&st, b + cut, n - cut, &c2, collect, &sink, &err);
            assert_int_equal(rc, SL_OK);
            assert_int_equal(cut + c2, body);
        } else {
            assert_int_equal(rc, SL_OK);
            assert_int_equal(c1, body);
        }
        assert_int_equal(sink.len, 31);
        assert_memory_equal(sink.data, "helloabcdefghijklmnopqrstuvwxyz", 31);
    }
    free(b);
}

struct chunk_bad {
    const char *name;
    const char *in;
    size_t len;
    uint64_t max_data;
    int status;
};

#define CHUNK_BAD(name, lit, max, status)                                                          \
    {                                                                                              \
        name, LIT(lit), max, status                                                                \
    }

static const struct chunk_bad bad_chunked[] = {
    CHUNK_BAD("17 hex digits", "00000000000000001\r\nx\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("2^63", "8000000000000000\r\n", 0, 400),
    CHUNK_BAD("2^64-1", "ffffffffffffffff\r\n", 0, 400),
    CHUNK_BAD("huge", "fffffffffffffffffffffffff\r\n", 0, 400),
    CHUNK_BAD("non-hex", "g\r\n", 0, 400),
    CHUNK_BAD("hex then junk", "5x\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("negative", "-5\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("empty size", "\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("leading space", " 5\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("trailing space", "5 \r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("space inside size", "5 5\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("data too long", "3\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("CR only after data", "5\r\nhello\rX0\r\n\r\n", 0, 400),
    CHUNK_BAD("LF after size", "5\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("LF after data", "5\r\nhello\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("LF after last chunk", "5\r\nhello\r\n0\n\r\n", 0, 400),
    CHUNK_BAD("LF at end", "5\r\nhello\r\n0\r\n\n", 0, 400),
    CHUNK_BAD("LF in extension", "5;a\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("bare CR after size", "5\rhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("bare CR at end", "0\r\n\rx", 0, 400),
    CHUNK_BAD("NUL in extension", "5;a\0\r\nhello\r\n0\r\n\r\n", 0, 400),
    CHUNK_BAD("bare CR in trailer", "0\r\nX: a\rb\r\n\r\n", 0, 400),
    CHUNK_BAD("LF-only trailer", "0\r\nX: a\n\r\n", 0, 400),
    CHUNK_BAD("obs-fold trailer", "0\r\nX: a\r\n b\r\n\r\n", 0, 400),
    CHUNK_BAD("bad trailer name", "0\r\nX Y: a\r\n\r\n", 0, 400),
    CHUNK_BAD("empty trailer name", "0\r\n: a\r\n\r\n", 0, 400),
    CHUNK_BAD("trailer without colon", "0\r\nXY\r\n\r\n", 0, 400),
    CHUNK_BAD("NUL in trailer", "0\r\nX: \0\r\n\r\n", 0, 400),
    CHUNK_BAD("max_data exceeded", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 10, 413),
    CHUNK_BAD("max_data one chunk", "b\r\nhello world\r\n0\r\n\r\n", 10, 413),
    CHUNK_BAD("max_data huge", "7fffffffffffffff\r\n", 10, 413),
};

static void test_chunked_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(bad_chunked); i++) {
        const struct chunk_bad *c = &bad_chunked[i];
        char *b = dup_input(c->in, c->len);
        for (int k = 0; k < 2; k++) {
            size_t step = k == 0 ? 1 : c->len;
            sl_h1_chunked_t st;
            sl_h1_chunked_init(&st, c->max_data);
            struct sink sink = {.len = 0};
            sl_h1_error_t err = {0, NULL};
            int rc = SL_AGAIN;
            size_t off = 0;
            while (off < c->len && rc == SL_AGAIN) {
                size_t n = SL_MIN(step, c->len - off), consumed = SENTINEL;
                rc = sl_h1_chunked_feed(&st, b + off, n, &consumed, collect, &sink, &err);
                if (rc == SL_AGAIN)
                    off += consumed;
            }
            if (rc != SL_ERR_INVALID || err.status != c->status || err.message == NULL)
                fail_msg("%s/%zu: rc %d status %d", c->name, step, rc, err.status);
            /* a failed decoder stays failed */
            size_t consumed = SENTINEL;
            if (sl_h1_chunked_feed(&st, "0\r\n\r\n", 5, &consumed, NULL, NULL, &err) !=
                SL_ERR_INVALID)
                fail_msg("%s: decoder recovered after an error", c->name);
        }
        free(b);
    }
}

static void test_chunked_limits(void **state)
{
    (void)state;
    sl_h1_chunked_t st;
    sl_h1_error_t err;
    size_t consumed;

    /* exactly max_data is fine */
    const char ok[] = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    sl_h1_chunked_init(&st, 10);
    assert_int_equal(sl_h1_chunked_feed(&st, ok, sizeof(ok) - 1, &consumed, NULL, NULL, &err),
                     SL_OK);
    assert_int_equal(consumed, sizeof(ok) - 1);
    assert_int_equal(st.data_total, 10);

    /* 413 is known from the size line, before any of the data arrives */
    sl_h1_chunked_init(&st, 10);
    assert_int_equal(sl_h1_chunked_feed(&st, "b\r\n", 3, &consumed, NULL, NULL, &err),
                     SL_ERR_INVALID);
    assert_int_equal(err.status, 413);

    /* the largest size accepted, without max_data */
    sl_h1_chunked_init(&st, 0);
    assert_int_equal(
        sl_h1_chunked_feed(&st, "7fffffffffffffff\r\nab", 20, &consumed, NULL, NULL, &err),
        SL_AGAIN);
    assert_int_equal(st.chunk_left, (uint64_t)INT64_MAX - 2);

    /* endless extensions and trailers are cut off */
    static char big[40000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "5;", 2);
    sl_h1_chunked_init(&st, 0);
    assert_int_equal(sl_h1_chunked_feed(&st, big, sizeof(big), &consumed, NULL, NULL, &err),
                     SL_ERR_INVALID);
    assert_int_equal(err.status, 400);

    memcpy(big, "0\r\nX: ", 6);
    sl_h1_chunked_init(&st, 0);
    assert_int_equal(sl_h1_chunked_feed(&st, big, sizeof(big), &consumed, NULL, NULL, &err),
                     SL_ERR_INVALID);
    assert_int_equal(err.status, 400);

    /* an empty feed is a no-op */
    sl_h1_chunked_init(&st, 0);
    consumed = SENTINEL;
    assert_int_equal(sl_h1_chunked_feed(&st, "", 0, &consumed, NULL, NULL, &err), SL_AGAIN);
    assert_int_equal(consumed, 0);
}

/* ------------------------------------------------------------------------ */
/* Path normalisation                                                       */
/* ------------------------------------------------------------------------ */

static void test_uri_normalize(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: error */
    } cases[] = {
        {"/", "/"},
        {"/a/b", "/a/b"},
        {"/a/./b/../c", "/a/c"},
        {"/a/b/../../c", "/c"},
        {"/..", "/"},
        {"/../a", "/a"},
        {"/a/../../..", "/"},
        {"/.", "/"},
        {"/./", "/"},
        {"/a/.", "/a/"},
        {"/a/..", "/"},
        {"/a/../", "/"},
        {"/a/b/..", "/a/"},
        {"/a//b", "/a//b"},
        {"/a//..", "/a/"},
        {"/...", "/..."},
        {"/.a/..b/c.", "/.a/..b/c."},
        {"/%41", "/A"},
        {"/%7e%2d%2E%5f", "/~-._"},
        {"/%2F", "/%2F"},
        {"/%2f", "/%2F"},
        {"/a%2fb", "/a%2Fb"},
        {"/%3a%3A", "/%3A%3A"},
        {"/%e2%82%ac", "/%E2%82%AC"},
        {"/a/%2E%2E/b", "/b"},
        {"/a/%2e/b", "/a/b"},
        {"/a/.%2E", "/"},
        {"/%20", "/%20"},
        {"/%", NULL},
        {"/%4", NULL},
        {"/%zz", NULL},
        {"/%4g", NULL},
        {"/%00", NULL},
        {"/a%00b", NULL},
        {"", NULL},
        {"a/b", NULL},
        {"*", NULL},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].in), out_len = SENTINEL;
        char *in = dup_input(cases[i].in, n);
        char *out = malloc(n ? n : 1);
        assert_non_null(out);
        int rc = sl_uri_normalize(in, n, out, &out_len);
        if (cases[i].out == NULL) {
            if (rc != SL_ERR_INVALID || out_len != SENTINEL)
                fail_msg("\"%s\": rc %d, want SL_ERR_INVALID", cases[i].in, rc);
        } else if (rc != SL_OK || out_len != strlen(cases[i].out) ||
                   memcmp(out, cases[i].out, out_len) != 0) {
            fail_msg("\"%s\": rc %d \"%.*s\", want \"%s\"", cases[i].in, rc,
                     rc == SL_OK ? (int)out_len : 0, out, cases[i].out);
        }
        free(in);
        free(out);
    }

    /* a raw NUL is refused like an encoded one */
    char out[8];
    size_t out_len;
    assert_int_equal(sl_uri_normalize("/a\0b", 4, out, &out_len), SL_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_bad),
        cmocka_unit_test(test_request_messages),
        cmocka_unit_test(test_request_good),
        cmocka_unit_test(test_request_target_is_verbatim),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_header_block_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_request_prefixes),
        cmocka_unit_test(test_request_pipelined),
        cmocka_unit_test(test_find_header_and_defaults),
        cmocka_unit_test(test_response_good),
        cmocka_unit_test(test_response_bad),
        cmocka_unit_test(test_response_pipelined_1xx),
        cmocka_unit_test(test_chunked_good),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_uri_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
