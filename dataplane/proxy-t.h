/*
 * The client connection, upstream connection and request objects of the
 * HTTP/1.1 proxy (proxy.c), shared with the C PDK (pdk.c), which reads and
 * changes the request a plugin runs for. Types only.
 */
#ifndef SL_PROXY_T_H
#define SL_PROXY_T_H

#include "arena.h"
#include "engine.h"
#include "h1_parser-t.h"
#include "router-t.h"
#include "worker.h"

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

enum conn_state {
    C_HANDSHAKE, /* TLS: the handshake (and the certificate phase) runs */
    C_IDLE,      /* between requests (keep-alive) */
    C_HEAD,      /* part of a request head received */
    C_BUSY,      /* a request is being served */
    C_TUNNEL,    /* upgraded: bytes relayed both ways */
    C_CLOSING,   /* flushing the last response, then close */
    C_H2,        /* speaks HTTP/2 (h2.c owns the bufferevent's callbacks) */
};

typedef struct sl_req_s sl_req_t;

struct sl_conn_s {
    LIST_ENTRY(sl_conn_s) link;
    sl_worker_t *w;
    struct bufferevent *bev; /* owned */
    struct event *timer;     /* owned: header/idle deadline */
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
    uint16_t peer_port, local_port;
    uint64_t serial;                 /* nginx's $connection: numbered per worker from 1 */
    char local_ip[INET6_ADDRSTRLEN]; /* filled when first asked for */
    bool trusted;
    bool tls;   /* accepted on an ssl listener */
    bool h2_ok; /* accepted on an http2 listener */
    bool http2; /* an HTTP/2 stream's connection (below), kept after it closed */
    /* HTTP/2 (h2.c). A client connection in C_H2 has h2; each of its streams
     * is served as an HTTP/1.1 request on a connection of its own whose
     * bufferevent is one end of a pair, the other end h2.c's: that one has
     * stream and parent (both NULL once the stream is gone). */
    struct sl_h2_s *h2;
    struct sl_h2_stream_s *stream;
    sl_conn_t *parent;
    /* TLS until the handshake is done (then the bufferevent owns them). */
    SSL *ssl;
    evutil_socket_t fd;
    struct event *hs_ev; /* the handshake's socket event */
    sl_req_t *cert_req;  /* the certificate phase's handle while it waits */
    int cert_state;      /* CERT_* */
    int state;
    unsigned nreq;
    sl_req_t *req;       /* owned: the request being served */
    bool in_resume;      /* conn_resume is on the stack */
    bool close_pending;  /* conn_close was called inside conn_resume */
    size_t scanned;      /* head bytes already looked at for a line end */
    uint64_t head_start; /* when the first byte of the current head arrived (us) */
    bool body_timeout;   /* the read timeout is armed (a body is streaming in) */
    bool draining;       /* close after the current response */
    sl_upconn_t *tunnel; /* owned in C_TUNNEL */
    unsigned nlogging;   /* its requests whose log handlers still wait */
    bool closed;         /* closed, kept allocated for those requests */
};

struct sl_upconn_s {
    TAILQ_ENTRY(sl_upconn_s) link;
    sl_worker_t *w;
    struct bufferevent *bev; /* owned */
    bool tls;                /* over TLS (a service with protocol https) */
    char sni[256];           /* the name it was opened for ("" none) */
    struct event *timer;     /* owned: connect timeout */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    sl_req_t *req;          /* borrowed: the request using it; NULL while idle */
    sl_conn_t *tunnel_peer; /* in a tunnel: the client side */
    unsigned nreq;
    uint32_t rt_ms, wt_ms; /* the timeouts currently set on bev */
    uint64_t idle_since;   /* when it entered the pool (ms) */
    bool connected;
    bool in_pool;
};

enum body_kind { B_NONE, B_LENGTH, B_CHUNKED, B_EOF };

/* A TLS connection's certificate phase (sl_conn_t.cert_state). */
enum { CERT_NONE, CERT_RUNNING, CERT_DONE, CERT_FAILED };

struct sl_req_s {
    sl_conn_t *c;
    sl_req_t *next_free; /* link in the worker's request cache */
    sl_gen_t *gen;       /* pinned for the request's life */
    sl_arena_t arena;
    sl_h1_request_t h;
    const sl_route_t *route;
    const sl_service_t *svc;
    sl_router_match_t m;
    char *npath;
    size_t npath_len;
    char reqid[33];

    /* request body, client -> upstream */
    int body_kind;
    uint64_t body_left;
    sl_h1_chunked_t chunk;
    bool body_done;
    bool body_forwarded; /* some body bytes went upstream: no silent retry */

    /* upstream */
    char *uphead; /* the upstream request head, kept for retries */
    size_t uphead_len;
    sl_upconn_t *up;
    sl_dns_waiter_t *dns;
    int tries;
    bool upgrade;

    /* response, upstream -> client */
    bool resp_started; /* any upstream response byte seen */
    bool resp_head_done;
    int resp_kind;
    uint64_t resp_left;
    sl_h1_chunked_t rchunk;
    bool resp_dechunk;
    bool up_keepalive;
    bool client_close;

    int status;
    uint64_t bytes_out;
    uint64_t t_start, t_sent, t_head;
    uint64_t wall_start_us; /* CLOCK_REALTIME at the start (the PDK's start time) */

    /* plugins (engine.h, pdk.c) */
    sl_plugin_run_t run;
    bool suspended;           /* an access handler waits (sl_pdk_suspend) */
    void (*abort_cb)(void *); /* what to call if the request goes away meanwhile */
    void *abort_arg;
    size_t hcap; /* capacity of h.headers once a plugin changed them */
    const sl_consumer_t *consumer;
    const sl_credential_t *credential;
    sl_str_t up_method, up_path, up_query, up_host; /* set by plugins; p == NULL: unset */
    int8_t up_scheme; /* kong.service.request.set_scheme: 1 https, -1 http, 0 the service's */
    struct sl_hdr_op *resp_ops; /* response header changes, in order */
    size_t nresp_ops, cap_resp_ops;
    const sl_h1_header_t *resp_headers; /* in header_filter: the upstream's fields */
    size_t nresp_headers;
    int exit_status; /* a plugin's response (kong.response.exit); 0: none */
    bool detached;   /* in log, off its connection (conn.nlogging) */
    const char *exit_body;
    size_t exit_body_len;
    const char *source;    /* "service", "exit" or "error" */
    const char *sent_head; /* the response head as sent, kept when a log handler runs */
    size_t sent_head_len;
    uint64_t bytes_in; /* request head and body bytes read */
    /* The body read whole before access when a plugin wants it: */
    bool buffering;            /* being read */
    bool body_if_fits;         /* buffering: a body over client_body_buffer_size streams on */
    bool body_too_large;       /* so it did, unread (sl_pdk_request_raw_body_error) */
    sl_h1_chunked_t peek;      /* buffering a chunked body if it fits: framing seen so far */
    size_t peek_off;           /* how far the input was looked at */
    bool peek_whole;           /* the whole chunked body is in the input */
    bool body_buffered;        /* read: body_buf holds it (dechunked) */
    struct evbuffer *body_buf; /* owned */
    bool body_replaced;        /* set_raw_body: body_buf is the plugin's */
    /* The upstream response held whole for response / body_filter plugins: */
    bool resp_hold;                 /* being read: nothing sent to the client yet */
    bool resp_releasing;            /* being written out, after the handlers */
    struct evbuffer *resp_body;     /* owned: the upstream's body, de-chunked */
    struct evbuffer *resp_new_body; /* owned: set_raw_body's replacement */
    int held_status, status_override;
    sl_str_t held_reason;
    sl_h1_header_t *held_headers; /* arena copies of the upstream's fields */
    size_t nheld_headers;
    bool held_keepalive;
    struct sl_ctx_kv *shared;           /* kong.ctx.shared */
    struct sl_ctx_kv *serialize_values; /* kong.log.set_serialize_value (serialize.c) */
    struct sl_ctx_kv *ngx_ctx;          /* kong.nginx.set_ctx */
    /* The phase whose handlers run (SL_PHASE_*), set by proxy.c once past
     * access (0 until then: access). */
    unsigned phase;
    /* kong.response.set_status in header_filter (pdk.c): the status the
     * client is to get instead (0: none), for proxy.c to write in the head
     * after header_filter ran (not done yet). */
    int filter_status;
    /* kong.service.set_upstream / set_target (pdk.c): where to connect
     * instead of the service's host; at most one is set. For proxy.c's
     * connect_upstream to honour (not done yet). */
    const sl_upstream_t *pdk_upstream; /* borrowed from gen */
    sl_str_t target_host;              /* p == NULL: unset */
    uint16_t target_port;
};

/* One change to the response headers: set (replace all), add, or clear. */
enum { SL_HDR_SET, SL_HDR_ADD, SL_HDR_CLEAR };
struct sl_hdr_op {
    sl_str_t name, value;
    int op;
};

/* A key of kong.ctx.shared, kong.nginx ctx or the serialize values: a
 * string value, or any other JSON value as its compact text (pdk.c). */
struct sl_ctx_kv {
    struct sl_ctx_kv *next;
    const char *key, *value;
    const char *json; /* non-NULL: the value is this JSON text, not `value` */
};

#endif
