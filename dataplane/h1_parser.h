/*
 * The strict HTTP/1.1 request and response parser, the chunked decoder and
 * URI path normalisation. Pure functions over byte buffers: no sockets, no
 * allocation, so unit tests and fuzzers drive them directly.
 */
#ifndef SL_H1_PARSER_H
#define SL_H1_PARSER_H

#include "h1_parser-t.h"

/* Fills the default limits (8192 / 32768 / 100). */
void sl_h1_limits_default(sl_h1_limits_t *lim);

/*
 * Parses a request head from buf[0..len).
 *
 * Returns SL_OK when the head is complete: *consumed is the length of the
 * head including the final CRLF CRLF, and *req is filled. Returns SL_AGAIN when
 * more bytes are needed (nothing is consumed; *req is untouched except
 * scratch), but already fails with 414/431 once len passes the limits without a
 * complete line/block. Returns SL_ERR_INVALID with *err set on bad input.
 *
 * Framing rules enforced (RFC 9112 6.1, 6.3): both Content-Length and
 * Transfer-Encoding -> 400; several Content-Length values that differ or are
 * malformed -> 400; Transfer-Encoding whose final coding is not chunked -> 400;
 * unknown transfer codings -> 501; obs-fold, bare CR, NUL/CTL in names or
 * values, whitespace before the colon -> 400; HTTP/1.1 without Host, or
 * several Host headers -> 400; absolute-form whose authority differs from
 * Host -> 400; HTTP versions other than 1.0/1.1 -> 505; malformed request
 * line -> 400; invalid method token -> 400.
 */
int sl_h1_parse_request(const char *buf, size_t len, const sl_h1_limits_t *lim,
                        sl_h1_request_t *req, size_t *consumed, sl_h1_error_t *err);

/*
 * Parses a response head from an upstream. head_request tells whether the
 * request was HEAD (then the body is NONE whatever the headers say). Same
 * return conventions as sl_h1_parse_request (err->status is 502 for a bad
 * upstream response). 1xx responses other than 101 are returned as such; the
 * caller skips or forwards them and parses again.
 */
int sl_h1_parse_response(const char *buf, size_t len, const sl_h1_limits_t *lim, bool head_request,
                         sl_h1_response_t *res, size_t *consumed, sl_h1_error_t *err);

void sl_h1_chunked_init(sl_h1_chunked_t *st, uint64_t max_data);

/*
 * Feeds len bytes of a chunked body. *consumed receives the number of bytes
 * that belong to the body: all of them on SL_AGAIN (need more), or up to and
 * including the last CRLF of the trailer section on SL_OK (message complete;
 * bytes after it belong to the next message). on_data (may be NULL) receives
 * the data spans. SL_ERR_INVALID with *err on bad framing (400) or when
 * max_data is exceeded (413). Chunk extensions are accepted and skipped;
 * sizes over 16 hex digits or over 2^63 are rejected.
 */
int sl_h1_chunked_feed(sl_h1_chunked_t *st, const char *buf, size_t len, size_t *consumed,
                       sl_h1_data_cb on_data, void *ud, sl_h1_error_t *err);

/*
 * Normalises a request path as Kong does before routing: percent-decodes
 * unreserved characters (ALPHA / DIGIT / "-" / "." / "_" / "~"), keeps other
 * escapes as they are (upper-casing their hex digits), and removes dot
 * segments (RFC 3986 5.2.4). Writes at most len bytes to out (out may not
 * alias in). Returns SL_OK, or SL_ERR_INVALID for a malformed escape, an
 * encoded NUL, or a path that does not start with '/'.
 */
int sl_uri_normalize(const char *in, size_t len, char *out, size_t *out_len);

/* Finds a header by name (case-insensitive); NULL when absent. */
const sl_h1_header_t *sl_h1_find_header(const sl_h1_header_t *h, size_t n, const char *name);

/* Whether s is a non-empty token (a field name: RFC 9110 5.6.2), and
 * whether it is valid field content (no control byte but HTAB). */
bool sl_h1_is_token(const char *s, size_t n);
bool sl_h1_is_field_value(const char *s, size_t n);

#endif
