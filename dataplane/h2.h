/*
 * HTTP/2 for clients (nghttp2), on listeners with Kong's `http2` flag: over
 * TLS when ALPN chose h2, in plain text when the connection opens with the
 * HTTP/2 preface (prior knowledge).
 *
 * Each stream is served by the HTTP/1.1 proxy (proxy.c) as the only request
 * of a connection of its own, whose bufferevent is one end of a pair; this
 * file holds the other end. It writes the stream's request there as an
 * HTTP/1.1 head (":authority" as Host, cookies joined, a body without a
 * length chunked) and its DATA as the body, and reads back the HTTP/1.1
 * response, which it sends as HEADERS and DATA. So routing, plugins (every
 * phase, the response phase included), upstreams, logs and every error the
 * proxy answers work for HTTP/2 clients as for HTTP/1.1 ones, and the
 * proxy's own parser checks each translated request again.
 *
 * Bounds: a request's header list is held to max_header_size and
 * max_headers (431); streams per connection to http2_max_concurrent_streams
 * (nghttp2 refuses more); request DATA is acknowledged (WINDOW_UPDATE) only
 * as the proxy consumes it, and response DATA is read from the pair only as
 * the client's window allows, so both directions keep the proxy's
 * back-pressure. Output to the client is produced while its socket buffer
 * is below a bound.
 */
#ifndef SL_H2_H
#define SL_H2_H

#include "proxy-t.h"

#include <stdbool.h>

/* Whether buf (len bytes, the start of a connection) is, or may still
 * become, the HTTP/2 client preface: 1 it is (24 bytes seen), 0 it may (a
 * prefix), -1 it is not. */
int sl_h2_preface(const char *buf, size_t len);

/* c (its bufferevent set up, the preface possibly in its input) speaks
 * HTTP/2 from now on: state C_H2, callbacks h2.c's. Returns false when the
 * session could not be made (c is to be closed). */
bool sl_h2_start(sl_conn_t *c);

/* From conn_close: frees c's session and ends its streams. */
void sl_h2_free(sl_conn_t *c);

/* Graceful shutdown: GOAWAY; the connection closes when its streams are
 * done. */
void sl_h2_drain(sl_conn_t *c);

/* From conn_close of a stream's connection: the proxy is done with it. */
void sl_h2_stream_detached(struct sl_h2_stream_s *s);

/* proxy.c: a connection for one stream of parent, on bev (the proxy's end
 * of the pair, owned by it from now on), ready to read the request. */
sl_conn_t *sl_conn_open_stream(sl_conn_t *parent, struct sl_h2_stream_s *s,
                               struct bufferevent *bev);

/* proxy.c: closes a stream's connection (the client reset the stream or
 * left); the stream is not told. */
void sl_conn_abort(sl_conn_t *c);

/* proxy.c: closes a client connection (h2.c's, on errors and timeouts). */
void sl_conn_close(sl_conn_t *c);

#endif
