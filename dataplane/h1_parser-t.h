/*
 * Types of the strict HTTP/1.1 parser (RFC 9110, RFC 9112).
 *
 * The parser works in place over a contiguous buffer holding at least the
 * whole header block: every sl_str_t it returns points into that buffer.
 */
#ifndef SL_H1_PARSER_T_H
#define SL_H1_PARSER_T_H

#include "util-t.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_h1_header_s {
    sl_str_t name;  /* as received (case preserved) */
    sl_str_t value; /* leading/trailing OWS stripped */
} sl_h1_header_t;

typedef enum sl_h1_body_kind_e {
    SL_H1_BODY_NONE = 0,    /* no body (requests without CL/TE, HEAD/1xx/204/304 responses) */
    SL_H1_BODY_LENGTH = 1,  /* Content-Length bytes follow */
    SL_H1_BODY_CHUNKED = 2, /* chunked transfer coding */
    SL_H1_BODY_EOF = 3,     /* responses only: body runs until the connection closes */
} sl_h1_body_kind_t;

/* Bounds on what a peer may send; exceeding one is an error with the status
 * given beside it. */
typedef struct sl_h1_limits_s {
    size_t max_request_line; /* request line incl. URI: 414 (default 8192) */
    size_t max_header_block; /* whole header block: 431 (default 32768) */
    size_t max_headers;      /* header field count: 431 (default 100) */
} sl_h1_limits_t;

/* A parse failure: the HTTP status to answer with and a short reason that is
 * safe to put in a JSON body (static string, no peer bytes). */
typedef struct sl_h1_error_s {
    int status;          /* 400, 413, 414, 431, 501, 505 */
    const char *message; /* e.g. "both Content-Length and Transfer-Encoding present" */
} sl_h1_error_t;

typedef struct sl_h1_request_s {
    sl_str_t method;
    sl_str_t target;    /* request-target exactly as received */
    sl_str_t path;      /* path part (origin-form, or extracted from absolute-form); no query */
    sl_str_t query;     /* after '?', without it; p == NULL when there was no '?' */
    sl_str_t authority; /* host[:port] from absolute-form, else empty */
    sl_str_t host;      /* the Host header value (empty if absent) */
    int minor_version;  /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */

    sl_h1_header_t *headers; /* caller-provided array of limits->max_headers entries */
    size_t num_headers;

    sl_h1_body_kind_t body_kind; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;     /* valid when body_kind == LENGTH */

    bool keep_alive;      /* per version default and Connection header */
    bool expect_continue; /* Expect: 100-continue */
    bool upgrade;         /* Connection: upgrade with an Upgrade header */
    bool absolute_form;   /* request-target was absolute-form */
} sl_h1_request_t;

typedef struct sl_h1_response_s {
    int status;
    sl_str_t reason;
    int minor_version;

    sl_h1_header_t *headers; /* caller-provided, limits->max_headers entries */
    size_t num_headers;

    sl_h1_body_kind_t body_kind; /* NONE, LENGTH, CHUNKED or EOF */
    uint64_t content_length;
    bool keep_alive; /* the connection may be reused after this response */
    bool upgrade;    /* 101 Switching Protocols */
} sl_h1_response_t;

/* Incremental chunked-body decoder state (RFC 9112 7.1). Zero it with
 * sl_h1_chunked_init() before the first byte of a body. */
typedef struct sl_h1_chunked_s {
    int state;
    uint64_t chunk_left;  /* data bytes left in the current chunk */
    uint64_t data_total;  /* data bytes seen so far (without framing) */
    uint64_t max_data;    /* 0 = unlimited; else exceeding it is a 413 */
    unsigned size_digits; /* hex digits read for the current size */
    size_t line_len;      /* bytes of the current size/trailer line (bounded) */
    size_t trailer_bytes; /* total trailer section bytes (bounded) */
} sl_h1_chunked_t;

/* Called for each span of decoded body data; may be NULL. */
typedef void (*sl_h1_data_cb)(void *ud, const char *p, size_t n);

#endif
