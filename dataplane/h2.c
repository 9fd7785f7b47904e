/*
 * HTTP/2 for clients: nghttp2 sessions on client connections, each stream
 * translated to and from an HTTP/1.1 exchange with the proxy over a
 * bufferevent pair (h2.h).
 */
#include "h2.h"
#include "h1_parser.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

/* Frames are produced while the client socket's output holds less. */
#define H2_OUT_HIGH (64 * 1024)
/* Response bytes read from the pair ahead of the client's window. */
#define H2_STREAM_AHEAD (64 * 1024)
/* The connection's receive window (each stream's stays at 65,535). */
#define H2_CONN_WINDOW (1024 * 1024)

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof(PREFACE) - 1)

typedef struct sl_h2_stream_s sl_h2_stream_t;

struct sl_h2_s {
    sl_conn_t *c;
    nghttp2_session *session;
    struct event *flush_ev; /* active: produce output at the next loop turn */
    struct event *idle_ev;  /* keepalive_timeout without a request in flight */
    LIST_HEAD(, sl_h2_stream_s) streams;
    unsigned nactive; /* streams whose request went to the proxy */
    bool in_send;
};

enum { RS_HEAD, RS_BODY, RS_DONE };

struct sl_h2_stream_s {
    LIST_ENTRY(sl_h2_stream_s) link;
    struct sl_h2_s *h;
    int32_t id;
    sl_conn_t *vc;           /* the proxy's connection; NULL once it is gone */
    struct bufferevent *bev; /* owned: this side of the pair */
    struct evbuffer_cb_entry *consume_cb;

    /* the request */
    struct evbuffer *fields; /* owned: "name: value\r\n" of the regular fields */
    struct evbuffer *cookie; /* owned: the cookie fields' values, "; "-joined */
    char *method, *path, *authority, *host;
    size_t header_bytes;
    size_t nfields;
    int refuse; /* 431 or 400: answered here */
    bool has_length, chunked, req_done, active, head_req;
    size_t unconsumed; /* DATA bytes written to the pair, not yet read by the proxy */

    /* the response */
    int rstate;
    int body_kind;
    uint64_t left;
    sl_h1_chunked_t chunk;
    bool deferred;             /* the data source waits for bytes */
    struct evbuffer *own_body; /* owned: the body of a response made here */
};

static size_t stream_head_max(const sl_dp_conf_t *conf)
{
    return 4 * conf->max_header_size + 65536;
}

int sl_h2_preface(const char *buf, size_t len)
{
    size_t n = len < PREFACE_LEN ? len : PREFACE_LEN;
    if (memcmp(buf, PREFACE, n) != 0)
        return -1;
    return n == PREFACE_LEN ? 1 : 0;
}

static void schedule(struct sl_h2_s *h)
{
    event_active(h->flush_ev, EV_WRITE, 0);
}

static void idle_update(struct sl_h2_s *h)
{
    if (h->nactive) {
        evtimer_del(h->idle_ev);
        return;
    }
    uint64_t ms = h->c->w->conf->keepalive_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(h->idle_ev, &tv);
}

/* ---------------------------------------------------------------- streams */

/* The proxy's connection is no longer this stream's: stop counting what it
 * reads, and give the window back for what it never will. */
static void unlink_vc(sl_h2_stream_t *s)
{
    if (s->vc && s->vc->bev && s->consume_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(s->vc->bev), s->consume_cb);
    s->consume_cb = NULL;
    s->vc = NULL;
    if (s->unconsumed) {
        nghttp2_session_consume(s->h->session, s->id, s->unconsumed);
        s->unconsumed = 0;
    }
    if (s->active) {
        s->active = false;
        s->h->nactive--;
        idle_update(s->h);
    }
}

static void stream_free(sl_h2_stream_t *s)
{
    LIST_REMOVE(s, link);
    if (s->vc) {
        sl_conn_t *vc = s->vc;
        unlink_vc(s);
        sl_conn_abort(vc);
    } else if (s->active) {
        unlink_vc(s);
    }
    if (s->unconsumed)
        nghttp2_session_consume_connection(s->h->session, s->unconsumed);
    if (s->bev)
        bufferevent_free(s->bev);
    if (s->fields)
        evbuffer_free(s->fields);
    if (s->cookie)
        evbuffer_free(s->cookie);
    if (s->own_body)
        evbuffer_free(s->own_body);
    free(s->method);
    free(s->path);
    free(s->authority);
    free(s->host);
    free(s);
}

/* ---------------------------------------------------------------- responses */

static bool hop_by_hop(sl_str_t name)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        if (name.len == strlen(names[i]) && !strncasecmp(name.p, names[i], name.len))
            return true;
    return false;
}

struct sink {
    uint8_t *dst;
    size_t n;
};

static void sink_data(void *ud, const char *p, size_t n)
{
    struct sink *k = ud;
    memcpy(k->dst + k->n, p, n);
    k->n += n;
}

/* Reads the body of the current response into buf: from the pair, undoing
 * the HTTP/1.1 framing, or from a body made here. */
static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *ud)
{
    sl_h2_stream_t *s = source->ptr;
    size_t n = 0;
    if (s->own_body) {
        n = (size_t)evbuffer_remove(s->own_body, buf, length);
        if (evbuffer_get_length(s->own_body) == 0) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            s->rstate = RS_DONE;
        }
        return (ssize_t)n;
    }
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t avail = evbuffer_get_length(in);
    bool eof = false;
    switch (s->body_kind) {
    case SL_H1_BODY_LENGTH:
        n = SL_MIN(SL_MIN(length, avail), s->left);
        evbuffer_remove(in, buf, n);
        s->left -= n;
        eof = s->left == 0;
        break;
    case SL_H1_BODY_EOF:
        n = (size_t)evbuffer_remove(in, buf, SL_MIN(length, avail));
        eof = !s->vc && evbuffer_get_length(in) == 0;
        break;
    default: /* chunked: at most as many input bytes as there is room for */
        while (n < length && evbuffer_get_length(in) > 0) {
            size_t take = SL_MIN(length - n, evbuffer_get_length(in));
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
            struct sink sink = {buf, n};
            size_t used = 0;
            sl_h1_error_t err = {0, NULL};
            int rc = sl_h1_chunked_feed(&s->chunk, p, take, &used, sink_data, &sink, &err);
            evbuffer_drain(in, used);
            n = sink.n;
            if (rc == SL_OK) {
                eof = true;
                break;
            }
            if (rc != SL_AGAIN)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            if (used < take)
                break;
        }
        break;
    }
    if (eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        s->rstate = RS_DONE;
        return (ssize_t)n;
    }
    if (n == 0) {
        if (!s->vc)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* cut short: reset */
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* Submits a response made here (a refused request): Kong's JSON body. */
static void respond_here(sl_h2_stream_t *s, int status, const char *message)
{
    s->own_body = evbuffer_new();
    evbuffer_add_printf(s->own_body, "{\n  \"message\":\"%s\"\n}\n", message);
    char st[4], len[24];
    snprintf(st, sizeof(st), "%d", status);
    snprintf(len, sizeof(len), "%zu", evbuffer_get_length(s->own_body));
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {NV(":status", st), NV("content-type", "application/json; charset=utf-8"),
                        NV("content-length", len), NV("server", SL_SERVER_TOKEN)};
#undef NV
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_body};
    s->rstate = RS_BODY;
    if (nghttp2_submit_response(s->h->session, s->id, nva, SL_ARRAY_LEN(nva), &dp) != 0)
        nghttp2_submit_rst_stream(s->h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    schedule(s->h);
}

/*
 * Reads the proxy's response head from the pair (informational heads
 * first) and submits it as HEADERS: names lower-cased, the fields that only
 * describe an HTTP/1.1 connection left out.
 */
static void read_head(sl_h2_stream_t *s)
{
    struct sl_h2_s *h = s->h;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->rstate == RS_HEAD && evbuffer_get_length(in) > 0) {
        size_t avail = evbuffer_get_length(in);
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            if (avail > stream_head_max(h->c->w->conf))
                goto fail;
            return;
        }
        size_t hlen = (size_t)end.pos + 4;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
        size_t lines = 1;
        for (size_t i = 0; i < hlen; i++)
            lines += buf[i] == '\n';
        sl_h1_header_t *hs = sl_xcalloc(lines, sizeof(*hs));
        sl_h1_limits_t lim = {hlen + 1, hlen + 1, lines};
        sl_h1_response_t res = {.headers = hs};
        sl_h1_error_t err = {0, NULL};
        size_t consumed = 0;
        if (sl_h1_parse_response(buf, hlen, &lim, s->head_req, &res, &consumed, &err) != SL_OK) {
            free(hs);
            goto fail;
        }
        nghttp2_nv *nva = sl_xcalloc(res.num_headers + 1, sizeof(*nva));
        char *names = sl_xcalloc(1, hlen + 1); /* the lower-cased names */
        char st[4];
        snprintf(st, sizeof(st), "%d", res.status);
        size_t nv = 0, off = 0;
        nva[nv++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), 0};
        for (size_t i = 0; i < res.num_headers; i++) {
            sl_str_t name = res.headers[i].name;
            if (hop_by_hop(name))
                continue;
            for (size_t k = 0; k < name.len; k++)
                names[off + k] = (char)tolower((unsigned char)name.p[k]);
            nva[nv++] = (nghttp2_nv){(uint8_t *)names + off, (uint8_t *)res.headers[i].value.p,
                                     name.len, res.headers[i].value.len, NGHTTP2_NV_FLAG_NONE};
            off += name.len;
        }
        int rc;
        if (res.status < 200) {
            rc = nghttp2_submit_headers(h->session, NGHTTP2_FLAG_NONE, s->id, NULL, nva, nv, NULL);
        } else {
            s->body_kind = res.body_kind;
            s->left = res.content_length;
            if (res.body_kind == SL_H1_BODY_CHUNKED)
                sl_h1_chunked_init(&s->chunk, 0);
            bool body = res.body_kind == SL_H1_BODY_CHUNKED || res.body_kind == SL_H1_BODY_EOF ||
                        (res.body_kind == SL_H1_BODY_LENGTH && res.content_length > 0);
            nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_body};
            s->rstate = body ? RS_BODY : RS_DONE;
            rc = nghttp2_submit_response(h->session, s->id, nva, nv, body ? &dp : NULL);
        }
        free(names);
        free(nva);
        free(hs);
        evbuffer_drain(in, consumed);
        if (rc != 0)
            goto fail;
    }
    return;
fail:
    s->rstate = RS_DONE;
    nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

/* The pair has response bytes (or room again after the client read). */
static void on_stream_read(struct bufferevent *bev, void *arg)
{
    sl_h2_stream_t *s = arg;
    if (s->rstate == RS_HEAD)
        read_head(s);
    if (s->rstate == RS_BODY && s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->session, s->id);
    }
    schedule(s->h);
}

void sl_h2_stream_detached(sl_h2_stream_t *s)
{
    s->vc->stream = NULL;
    unlink_vc(s);
    /* What the proxy wrote last is in the pair: a head not seen yet, the
     * end of a body that runs until the close. */
    if (s->rstate == RS_HEAD)
        read_head(s);
    if (s->rstate == RS_HEAD) {
        s->rstate = RS_DONE; /* closed without a response */
        nghttp2_submit_rst_stream(s->h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    } else if (s->rstate == RS_BODY && s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->session, s->id);
    }
    schedule(s->h);
}

/* ---------------------------------------------------------------- requests */

static void on_consumed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    sl_h2_stream_t *s = arg;
    size_t n = SL_MIN(info->n_deleted, s->unconsumed);
    if (!n)
        return;
    s->unconsumed -= n;
    nghttp2_session_consume(s->h->session, s->id, n);
    schedule(s->h);
}

static bool same_host(const char *a, const char *b)
{
    return !strcasecmp(a, b);
}

/* The request's head is complete: hand it to the proxy as HTTP/1.1. */
static void start_request(sl_h2_stream_t *s, bool end_stream)
{
    struct sl_h2_s *h = s->h;
    if (!s->refuse && s->authority && s->host && !same_host(s->authority, s->host))
        s->refuse = 400;
    if (s->refuse) {
        s->req_done = true;
        respond_here(s, s->refuse,
                     s->refuse == 431 ? "Request header fields too large"
                                      : "Host header does not match :authority");
        return;
    }
    const char *host = s->authority ? s->authority : s->host;
    s->head_req = s->method && !strcmp(s->method, "HEAD");
    s->chunked = !end_stream && !s->has_length;
    s->req_done = end_stream;

    struct bufferevent *pair[2];
    if (bufferevent_pair_new(h->c->w->base, BEV_OPT_DEFER_CALLBACKS, pair) != 0)
        goto fail;
    s->bev = pair[1];
    bufferevent_setcb(s->bev, on_stream_read, NULL, NULL, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, stream_head_max(h->c->w->conf) + H2_STREAM_AHEAD);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    sl_conn_t *vc = sl_conn_open_stream(h->c, s, pair[0]);
    if (!vc)
        goto fail;
    s->vc = vc;
    s->active = true;
    h->nactive++;
    idle_update(h);
    s->consume_cb = evbuffer_add_cb(bufferevent_get_input(pair[0]), on_consumed, s);

    struct evbuffer *out = bufferevent_get_output(s->bev);
    const char *path = s->path ? s->path : (s->authority ? s->authority : "/");
    evbuffer_add_printf(out, "%s %s HTTP/1.1\r\n", s->method ? s->method : "GET", path);
    if (host)
        evbuffer_add_printf(out, "Host: %s\r\n", host);
    evbuffer_add_buffer(out, s->fields);
    if (evbuffer_get_length(s->cookie)) {
        evbuffer_add(out, "Cookie: ", 8);
        evbuffer_add_buffer(out, s->cookie);
        evbuffer_add(out, "\r\n", 2);
    }
    if (s->chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    evbuffer_add(out, "\r\n", 2);
    return;
fail:
    s->rstate = RS_DONE;
    nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

static void end_request(sl_h2_stream_t *s)
{
    if (s->req_done)
        return;
    s->req_done = true;
    if (s->chunked && s->vc)
        evbuffer_add(bufferevent_get_output(s->bev), "0\r\n\r\n", 5);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    struct sl_h2_s *h = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    sl_h2_stream_t *s = sl_xcalloc(1, sizeof(*s));
    s->h = h;
    s->id = frame->hd.stream_id;
    s->fields = evbuffer_new();
    s->cookie = evbuffer_new();
    LIST_INSERT_HEAD(&h->streams, s, link);
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static char *dup_value(const uint8_t *v, size_t n)
{
    char *s = sl_xmalloc(n + 1);
    memcpy(s, v, n);
    s[n] = '\0';
    return s;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct sl_h2_s *h = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: not passed on */
    sl_h2_stream_t *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s || s->refuse)
        return 0;
    const sl_dp_conf_t *conf = h->c->w->conf;
    s->header_bytes += namelen + valuelen + 4;
    if (s->header_bytes > conf->max_header_size || ++s->nfields > conf->max_headers) {
        s->refuse = 431;
        return 0;
    }
#define IS(lit) (namelen == sizeof(lit) - 1 && !memcmp(name, lit, namelen))
    char **slot = NULL;
    if (IS(":method"))
        slot = &s->method;
    else if (IS(":path"))
        slot = &s->path;
    else if (IS(":authority"))
        slot = &s->authority;
    else if (IS("host"))
        slot = &s->host;
    if (slot) {
        free(*slot);
        *slot = dup_value(value, valuelen);
        return 0;
    }
    if (name[0] == ':')
        return 0; /* :scheme: the connection's own scheme counts */
    if (IS("cookie")) {
        if (evbuffer_get_length(s->cookie))
            evbuffer_add(s->cookie, "; ", 2);
        evbuffer_add(s->cookie, value, valuelen);
        return 0;
    }
    if (IS("content-length"))
        s->has_length = true;
#undef IS
    evbuffer_add(s->fields, name, namelen);
    evbuffer_add(s->fields, ": ", 2);
    evbuffer_add(s->fields, value, valuelen);
    evbuffer_add(s->fields, "\r\n", 2);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    sl_h2_stream_t *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s)
        return 0;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        start_request(s, end);
    else if (end)
        end_request(s);
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *ud)
{
    sl_h2_stream_t *s = nghttp2_session_get_stream_user_data(session, id);
    if (!s || !s->vc || s->req_done) {
        /* Nobody reads it: the window is given back at once. */
        nghttp2_session_consume(session, id, len);
        return 0;
    }
    struct evbuffer *out = bufferevent_get_output(s->bev);
    s->unconsumed += len;
    if (s->chunked) {
        if (len == 0)
            return 0;
        evbuffer_add_printf(out, "%zx\r\n", len);
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data, len);
    }
    return 0;
}

/* After the response's last frame, a request still being sent is cut off
 * (RST_STREAM NO_ERROR, as RFC 9113 8.1 allows). */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    sl_h2_stream_t *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s && !s->req_done) {
        s->req_done = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *ud)
{
    sl_h2_stream_t *s = nghttp2_session_get_stream_user_data(session, id);
    if (s) {
        nghttp2_session_set_stream_user_data(session, id, NULL);
        stream_free(s);
    }
    return 0;
}

/* ---------------------------------------------------------------- the connection */

/* Produces frames while the socket's output has room; closes the
 * connection when the session is over and everything is written. Never
 * called from inside an nghttp2 callback. */
static void h2_send(struct sl_h2_s *h)
{
    sl_conn_t *c = h->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < H2_OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->session, &data);
        if (n < 0) {
            SL_INFO("worker %d: client %s: HTTP/2: %s", c->w->id, c->peer_ip,
                    nghttp2_strerror((int)n));
            sl_conn_close(c);
            return;
        }
        if (n == 0)
            break;
        evbuffer_add(out, data, (size_t)n);
    }
    if (!nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session) &&
        evbuffer_get_length(out) == 0)
        sl_conn_close(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    h2_send(arg);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2_s *h = arg;
    nghttp2_session_terminate_session(h->session, NGHTTP2_NO_ERROR);
    h2_send(h);
}

static void on_h2_read(struct bufferevent *bev, void *arg)
{
    sl_conn_t *c = arg;
    struct sl_h2_s *h = c->h2;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(h->session, v.iov_base, v.iov_len);
        if (n < 0) {
            SL_INFO("worker %d: client %s: HTTP/2: %s", c->w->id, c->peer_ip,
                    nghttp2_strerror((int)n));
            /* A GOAWAY saying why, if the session can still send it. */
            evbuffer_drain(in, evbuffer_get_length(in));
            bufferevent_disable(bev, EV_READ);
            if (n != NGHTTP2_ERR_NOMEM)
                nghttp2_session_terminate_session(h->session, NGHTTP2_PROTOCOL_ERROR);
            break;
        }
        evbuffer_drain(in, (size_t)n);
    }
    h2_send(h);
}

static void on_h2_write(struct bufferevent *bev, void *arg)
{
    sl_conn_t *c = arg;
    h2_send(c->h2);
}

static void on_h2_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_CONNECTED)
        return;
    sl_conn_close(arg); /* the client left, an error, or the send timeout */
}

bool sl_h2_start(sl_conn_t *c)
{
    struct sl_h2_s *h = sl_xcalloc(1, sizeof(*h));
    h->c = c;
    LIST_INIT(&h->streams);
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        free(h);
        return false;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rc = nghttp2_session_server_new2(&h->session, cbs, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0) {
        free(h);
        return false;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->w->conf->h2_max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->w->conf->max_header_size},
    };
    nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, SL_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    h->flush_ev = event_new(c->w->base, -1, 0, on_flush, h);
    h->idle_ev = evtimer_new(c->w->base, on_idle, h);
    c->h2 = h;
    c->state = C_H2;
    evtimer_del(c->timer);
    idle_update(h);
    bufferevent_setcb(c->bev, on_h2_read, on_h2_write, on_h2_event, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, H2_OUT_HIGH / 2, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* The preface may be in the input already; read it at the next turn. */
    bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    schedule(h);
    return true;
}

void sl_h2_drain(sl_conn_t *c)
{
    struct sl_h2_s *h = c->h2;
    nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
    schedule(h);
}

void sl_h2_free(sl_conn_t *c)
{
    struct sl_h2_s *h = c->h2;
    sl_h2_stream_t *s;
    while ((s = LIST_FIRST(&h->streams)))
        stream_free(s);
    nghttp2_session_del(h->session);
    event_free(h->flush_ev);
    event_free(h->idle_ev);
    free(h);
    c->h2 = NULL;
}
