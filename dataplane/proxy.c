/*
 * proxy.c owns client connections, their requests and the upstream
 * connections that serve them: the HTTP/1.1 reverse proxy.
 *
 * Everything here runs on one worker's event loop. A client connection
 * (sl_conn_t) owns its bufferevent, its deadline timer and at most one
 * request (sl_req_t) at a time; pipelined requests wait, unparsed, in the
 * connection's input buffer until the current one finishes, so answers go
 * out in order. A request owns its arena (the copied head, the upstream
 * head, scratch strings), its pin on the configuration generation and, while
 * it is being served, an upstream connection (sl_upconn_t). Upstream
 * connections go back to the worker's keep-alive pool when both messages
 * ended cleanly, and are closed otherwise.
 *
 * Bodies are streamed both ways by moving evbuffer chains (no copies) and
 * bounded by watermarks: a side whose output passes SL_BUF_HIGH stops the
 * other side's reading until it drains below SL_BUF_LOW. Chunked bodies pass
 * through untouched while the decoder tracks where they end; they are only
 * decoded for HTTP/1.0 clients.
 *
 * Lifetimes: callbacks never free the object they run on while still using
 * it; finishing a request may start the next pipelined one, which is why the
 * parse loop (conn_resume) is re-entrancy-guarded instead of recursive.
 */
#include "arena.h"
#include "engine.h"
#include "h1_parser.h"
#include "h2.h"
#include "pdk.h"
#include "log.h"
#include "strbuf.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#define SL_BUF_HIGH (256 * 1024)
#define SL_BUF_LOW (64 * 1024)
#define SL_UPATH_MAX 16384

FILE *sl_access_log;

#include "proxy-t.h"

static void conn_resume(sl_conn_t *c);
static void conn_close(sl_conn_t *c);
static void conn_start(sl_conn_t *c);
static void handshake_step(sl_conn_t *c);
static void on_handshake_io(evutil_socket_t fd, short what, void *arg);
static sl_req_t *req_new(sl_conn_t *c);
static void req_free(sl_req_t *r);
static void finish_request(sl_req_t *r);
static void connect_upstream(sl_req_t *r);
static void retry_or_fail(sl_req_t *r, bool was_connected, bool reused, bool timeout);
static int pump_request_body(sl_req_t *r);
static int pump_response_body(sl_req_t *r);
static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);
static void on_up_read(struct bufferevent *bev, void *arg);
static void on_up_write(struct bufferevent *bev, void *arg);
static void on_up_event(struct bufferevent *bev, short what, void *arg);
static void upconn_close(sl_upconn_t *u);
static void send_exit(sl_req_t *r);
static void add_op_headers(sl_sb_t *b, const sl_req_t *r, bool skip_content_type);
static void run_header_filter(sl_req_t *r, int status, const sl_h1_header_t *hs, size_t n);
static void keep_head(sl_req_t *r, const char *head, size_t len);
static sl_str_t filter_generated_body(sl_req_t *r, const char *body, size_t len);

/* The request is the PDK's handle (pdk.c). */
#define PDK(r) ((sl_pdk_t *)(r))
/* The route protocol a request arrived with. */
#define SCHEME(r) ((r)->c->tls ? SL_PROTO_HTTPS : SL_PROTO_HTTP)

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* ---------------------------------------------------------------- helpers */

/*
 * Writes what the socket takes right away instead of waiting for the next
 * loop iteration. Output events stay disabled while buffers are empty, so a
 * small response costs one writev and no epoll_ctl; only a remainder enables
 * the write event (and with it the send timeout). Errors are left for that
 * event to report.
 */
static void flush_out(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(bev) & EV_WRITE))
        return;
    if (bufferevent_openssl_get_ssl(bev) || bufferevent_getfd(bev) < 0) {
        /* through OpenSSL, or an HTTP/2 stream's pair (h2.h): not a socket */
        bufferevent_enable(bev, EV_WRITE);
        return;
    }
    /* A bufferevent keeps its output frozen at the front so only its own
     * write callback drains it; do as that callback does. */
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

/* Called from write callbacks: an emptied buffer needs no write event. */
static void write_idle(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
}

static const sl_h1_header_t *find_hdr(const sl_h1_header_t *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (sl_strcaseeq(h[i].name.p, h[i].name.len, name, len))
            return &h[i];
    return NULL;
}

/*
 * Header names the proxy treats specially, recognised once per field by
 * length and then a case-insensitive compare: cheaper than comparing every
 * field against every name.
 */
enum hdr_id {
    H_OTHER = 0,
    H_CONNECTION,
    H_KEEP_ALIVE,
    H_PROXY_CONNECTION,
    H_TE,
    H_TRAILER,
    H_TRANSFER_ENCODING,
    H_UPGRADE,
    H_CONTENT_LENGTH,
    H_HOST,
    H_EXPECT,
    H_X_REAL_IP,
    H_X_FORWARDED_FOR,
    H_X_FORWARDED_PROTO,
    H_X_FORWARDED_HOST,
    H_X_FORWARDED_PORT,
    H_X_FORWARDED_PATH,
    H_X_FORWARDED_PREFIX,
    H_VIA,
    H_X_KONG_REQUEST_ID,
    H_SERVER,
};

static const struct {
    const char *name;
    size_t len;
} hdr_names[] = {
#define H(id, lit) [id] = {lit, sizeof(lit) - 1}
    H(H_CONNECTION, "connection"),
    H(H_KEEP_ALIVE, "keep-alive"),
    H(H_PROXY_CONNECTION, "proxy-connection"),
    H(H_TE, "te"),
    H(H_TRAILER, "trailer"),
    H(H_TRANSFER_ENCODING, "transfer-encoding"),
    H(H_UPGRADE, "upgrade"),
    H(H_CONTENT_LENGTH, "content-length"),
    H(H_HOST, "host"),
    H(H_EXPECT, "expect"),
    H(H_X_REAL_IP, "x-real-ip"),
    H(H_X_FORWARDED_FOR, "x-forwarded-for"),
    H(H_X_FORWARDED_PROTO, "x-forwarded-proto"),
    H(H_X_FORWARDED_HOST, "x-forwarded-host"),
    H(H_X_FORWARDED_PORT, "x-forwarded-port"),
    H(H_X_FORWARDED_PATH, "x-forwarded-path"),
    H(H_X_FORWARDED_PREFIX, "x-forwarded-prefix"),
    H(H_VIA, "via"),
    H(H_X_KONG_REQUEST_ID, "x-kong-request-id"),
    H(H_SERVER, "server"),
#undef H
};

/* Case-insensitive compare of a token against a lower-case literal made of
 * letters and '-': OR-ing 0x20 folds exactly the letters, and no other token
 * byte folds onto a letter or '-'. */
static bool token_eq_lower(const char *tok, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((tok[i] | 0x20) != lit[i])
            return false;
    return true;
}

static enum hdr_id hdr_id(sl_str_t name)
{
    /* Candidates by length (at most 4 share one), so most fields cost one
     * switch and no comparison at all. */
    static const uint8_t by_len[19][4] = {
        [2] = {H_TE},
        [3] = {H_VIA},
        [4] = {H_HOST},
        [6] = {H_EXPECT, H_SERVER},
        [7] = {H_TRAILER, H_UPGRADE},
        [9] = {H_X_REAL_IP},
        [10] = {H_CONNECTION, H_KEEP_ALIVE},
        [14] = {H_CONTENT_LENGTH},
        [15] = {H_X_FORWARDED_FOR},
        [16] = {H_PROXY_CONNECTION, H_X_FORWARDED_HOST, H_X_FORWARDED_PORT, H_X_FORWARDED_PATH},
        [17] = {H_TRANSFER_ENCODING, H_X_FORWARDED_PROTO, H_X_KONG_REQUEST_ID},
        [18] = {H_X_FORWARDED_PREFIX},
    };
    if (name.len >= SL_ARRAY_LEN(by_len))
        return H_OTHER;
    const uint8_t *cand = by_len[name.len];
    for (size_t i = 0; i < 4 && cand[i]; i++)
        if (token_eq_lower(name.p, hdr_names[cand[i]].name, name.len))
            return (enum hdr_id)cand[i];
    return H_OTHER;
}

#define HBIT(id) (1u << (id))
/* Hop-by-hop fields (RFC 9110 7.6.1), dropped in both directions. */
#define HOP_BY_HOP                                                                                 \
    (HBIT(H_CONNECTION) | HBIT(H_KEEP_ALIVE) | HBIT(H_PROXY_CONNECTION) | HBIT(H_TE) |             \
     HBIT(H_TRAILER) | HBIT(H_TRANSFER_ENCODING) | HBIT(H_UPGRADE))
/* Request fields the proxy rewrites itself. */
#define REQ_REWRITTEN                                                                              \
    (HBIT(H_CONTENT_LENGTH) | HBIT(H_HOST) | HBIT(H_EXPECT) | HBIT(H_X_REAL_IP) |                  \
     HBIT(H_X_FORWARDED_FOR) | HBIT(H_X_FORWARDED_PROTO) | HBIT(H_X_FORWARDED_HOST) |              \
     HBIT(H_X_FORWARDED_PORT) | HBIT(H_X_FORWARDED_PATH) | HBIT(H_X_FORWARDED_PREFIX) |            \
     HBIT(H_VIA) | HBIT(H_X_KONG_REQUEST_ID))

/* Steps through a comma-separated token list: stores the next token in
 * *tok and returns true, or returns false at the end. */
static bool next_token(const char **p, const char *end, sl_str_t *tok)
{
    const char *q = *p;
    while (q < end && (*q == ' ' || *q == '\t' || *q == ','))
        q++;
    const char *start = q;
    while (q < end && *q != ',' && *q != ' ' && *q != '\t')
        q++;
    *p = q;
    *tok = (sl_str_t){start, (size_t)(q - start)};
    return q > start;
}

/* Is `name` one of the tokens of the Connection header(s)? */
static bool named_in_connection(const sl_h1_header_t *h, size_t n, sl_str_t name)
{
    for (size_t i = 0; i < n; i++) {
        if (hdr_id(h[i].name) != H_CONNECTION)
            continue;
        const char *p = h[i].value.p, *end = p + h[i].value.len;
        sl_str_t tok;
        while (next_token(&p, end, &tok))
            if (sl_strcaseeq(tok.p, tok.len, name.p, name.len))
                return true;
    }
    return false;
}

/* Does a Connection header name anything beyond close/keep-alive/upgrade
 * (fields that must then be dropped as hop-by-hop)? */
static bool connection_names_fields(const sl_h1_header_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (hdr_id(h[i].name) != H_CONNECTION)
            continue;
        const char *p = h[i].value.p, *end = p + h[i].value.len;
        sl_str_t tok;
        while (next_token(&p, end, &tok))
            if (!sl_str_caseeq_lit(tok, "close") && !sl_str_caseeq_lit(tok, "keep-alive") &&
                !sl_str_caseeq_lit(tok, "upgrade"))
                return true;
    }
    return false;
}

static void gen_reqid(sl_worker_t *w, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = w->reqid_salt, b = ++w->reqid_counter ^ ((uint64_t)w->id << 56);
    for (int i = 15; i >= 0; i--, a >>= 4)
        out[i] = hex[a & 15];
    for (int i = 31; i >= 16; i--, b >>= 4)
        out[i] = hex[b & 15];
    out[32] = '\0';
}

static uint64_t ms_between(uint64_t from_us, uint64_t to_us)
{
    return to_us > from_us ? (to_us - from_us) / 1000 : 0;
}

/* ------------------------------------------------------- access log, metrics */

static void json_escape(struct evbuffer *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            evbuffer_add_printf(out, "\\u%04x", ch);
        else
            evbuffer_add(out, &s[i], 1);
    }
}

static void log_request(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    uint64_t now = sl_now_us();
    sl_metrics_request(c->w->metrics, r->route ? r->route->label_key : 0,
                       r->route ? r->route->label : "", r->svc ? r->svc->label : "", r->status,
                       now - r->t_start);
    if (!sl_access_log)
        return;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"time\":%.3f,\"client_ip\":\"%s\",\"method\":\"", sl_wall_time(),
                        c->peer_ip);
    json_escape(b, r->h.method.p, r->h.method.len);
    evbuffer_add_printf(b, "\",\"path\":\"");
    json_escape(b, r->h.path.p, r->h.path.len);
    evbuffer_add_printf(b, "\",\"status\":%d,\"bytes_sent\":%llu,\"request_time_ms\":%.3f",
                        r->status, (unsigned long long)r->bytes_out,
                        (double)(now - r->t_start) / 1000.0);
    if (r->t_head)
        evbuffer_add_printf(b, ",\"upstream_time_ms\":%.3f",
                            (double)(r->t_head - r->t_sent) / 1000.0);
    evbuffer_add_printf(b, ",\"route\":%s%s%s,\"service\":%s%s%s,\"request_id\":\"%s\"}\n",
                        r->route ? "\"" : "", r->route ? r->route->id : "null",
                        r->route ? "\"" : "", r->svc ? "\"" : "", r->svc ? r->svc->id : "null",
                        r->svc ? "\"" : "", r->reqid);
    size_t n = evbuffer_get_length(b);
    fwrite(evbuffer_pullup(b, -1), 1, n, sl_access_log);
    fflush(sl_access_log);
    evbuffer_free(b);
}

/* ----------------------------------------------------- generated responses */

/* nginx's reason phrases (a plugin may answer with any status). */
static const char *reason_phrase(int status)
{
    static const struct {
        int code;
        const char *text;
    } phrases[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Moved Temporarily"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Not Allowed"},
        {406, "Not Acceptable"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Request Entity Too Large"},
        {414, "Request-URI Too Large"},
        {415, "Unsupported Media Type"},
        {416, "Requested Range Not Satisfiable"},
        {418, "I'm a teapot"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Entity"},
        {425, "Too Early"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {507, "Insufficient Storage"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(phrases); i++)
        if (phrases[i].code == status)
            return phrases[i].text;
    return "Unknown";
}

/* "Date: ..." for generated responses, formatted once per second per thread. */
static void add_date(sl_sb_t *b)
{
    static _Thread_local time_t cached_at;
    static _Thread_local char cached[64];
    static _Thread_local size_t cached_len;
    time_t now = time(NULL);
    if (now != cached_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        cached_len = strftime(cached, sizeof(cached), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        cached_at = now;
    }
    sl_sb_add(b, cached, cached_len);
}

/*
 * Writes a proxy-generated JSON response. With r == NULL (a request that
 * could not even be parsed) the connection always closes afterwards. With a
 * request, the connection closes if asked to, or if the request body has not
 * been read (its framing would be lost). message must be JSON-safe text.
 */
static void send_json(sl_conn_t *c, sl_req_t *r, int status, const char *message,
                      const char *extra_headers, bool close)
{
    const sl_dp_conf_t *conf = c->w->conf;
    char storage[2048], bodybuf[512];
    sl_sb_t b, body;
    sl_sb_init(&b, storage, sizeof(storage));
    sl_sb_init(&body, bodybuf, sizeof(bodybuf));
    sl_sb_addlit(&body, "{\"message\":\"");
    sl_sb_adds(&body, message);
    if (r) {
        sl_sb_addlit(&body, "\",\"request_id\":\"");
        sl_sb_add(&body, r->reqid, 32);
    }
    sl_sb_addlit(&body, "\"}\n");

    if (r)
        r->source = "error";
    sl_str_t out = {body.p, body.len};
    if (r && r->run.nran) {
        /* The plugins see (and may change) the answer's Content-Type. */
        sl_pdk_response_set_header(PDK(r), "Content-Type", "application/json; charset=utf-8");
        run_header_filter(r, status, NULL, 0);
        if (r->filter_status)
            status = r->filter_status;
        out = filter_generated_body(r, body.p, body.len);
    }
    if (r && (r->client_close || (!r->body_done && r->body_kind != B_NONE)))
        close = true;
    if (!r || c->draining || !r->h.keep_alive)
        close = true;
    sl_sb_addlit(&b, "HTTP/1.1 ");
    sl_sb_addu(&b, (uint64_t)status);
    sl_sb_addlit(&b, " ");
    sl_sb_adds(&b, reason_phrase(status));
    sl_sb_addlit(&b, "\r\n");
    add_date(&b);
    if (!(r && r->run.nran))
        sl_sb_addlit(&b, "Content-Type: application/json; charset=utf-8\r\n");
    sl_sb_addlit(&b, "Content-Length: ");
    sl_sb_addu(&b, out.len);
    sl_sb_addlit(&b, "\r\n");
    if (close)
        sl_sb_addlit(&b, "Connection: close\r\n");
    else if (r->h.minor_version == 0)
        sl_sb_addlit(&b, "Connection: keep-alive\r\n");
    if (conf->hdr_server_tokens)
        sl_sb_addlit(&b, "Server: " SL_SERVER_TOKEN "\r\n");
    if (conf->hdr_latency_tokens) {
        sl_sb_addlit(&b, "X-Kong-Response-Latency: ");
        sl_sb_addu(&b, ms_between(r ? r->t_start : c->head_start, sl_now_us()));
        sl_sb_addlit(&b, "\r\n");
    }
    if (r && conf->hdr_request_id) {
        sl_sb_addlit(&b, "X-Kong-Request-Id: ");
        sl_sb_add(&b, r->reqid, 32);
        sl_sb_addlit(&b, "\r\n");
    }
    if (r && r->run.nran)
        add_op_headers(&b, r, false);
    if (extra_headers)
        sl_sb_adds(&b, extra_headers);
    sl_sb_addlit(&b, "\r\n");
    if (r)
        keep_head(r, b.p, b.len);
    if (!(r && sl_str_caseeq_lit(r->h.method, "HEAD")))
        sl_sb_add(&b, out.p, out.len);
    evbuffer_add(bufferevent_get_output(c->bev), b.p, b.len);
    flush_out(c->bev);
    sl_sb_dispose(&b);
    sl_sb_dispose(&body);
    if (r) {
        r->status = status;
        if (!sl_str_caseeq_lit(r->h.method, "HEAD"))
            r->bytes_out += out.len;
        if (close)
            r->client_close = true;
        finish_request(r);
    } else {
        c->state = C_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        on_client_write(c->bev, c);
    }
}

/* ------------------------------------------------ plugins' response fields */

/* Framing and connection fields belong to the proxy: plugins cannot set
 * them on a response. */
static bool proxy_owned(sl_str_t name)
{
    enum hdr_id id = hdr_id(name);
    return (HBIT(id) & (HOP_BY_HOP | HBIT(H_CONTENT_LENGTH))) != 0;
}

/* Whether the plugins replace or remove fields of this name. */
static bool ops_replace(const sl_req_t *r, sl_str_t name)
{
    for (size_t i = 0; i < r->nresp_ops; i++)
        if (r->resp_ops[i].op != SL_HDR_ADD &&
            sl_strcaseeq(r->resp_ops[i].name.p, r->resp_ops[i].name.len, name.p, name.len))
            return true;
    return false;
}

/* Appends the fields plugins set or added that no later operation undid. */
static void add_op_headers(sl_sb_t *b, const sl_req_t *r, bool skip_content_type)
{
    for (size_t i = 0; i < r->nresp_ops; i++) {
        const struct sl_hdr_op *o = &r->resp_ops[i];
        if (o->op == SL_HDR_CLEAR || proxy_owned(o->name) ||
            (skip_content_type && sl_str_caseeq_lit(o->name, "content-type")))
            continue;
        bool undone = false;
        for (size_t j = i + 1; j < r->nresp_ops && !undone; j++)
            undone = r->resp_ops[j].op != SL_HDR_ADD &&
                     sl_strcaseeq(r->resp_ops[j].name.p, r->resp_ops[j].name.len, o->name.p,
                                  o->name.len);
        if (!undone)
            sl_sb_header(b, o->name.p, o->name.len, o->value.p, o->value.len);
    }
}

/* Runs the collected plugins' header_filter for a response with this status
 * and, when it came from upstream, these fields. */
/* Keeps the response head as sent, when a log handler will want it. */
static void keep_head(sl_req_t *r, const char *head, size_t len)
{
    if (!r->run.nran || !(sl_engine_chain_phases(r->run.chain) & SL_PHASE_LOG))
        return;
    r->sent_head = sl_arena_strndup(&r->arena, head, len);
    r->sent_head_len = len;
}

static void run_header_filter(sl_req_t *r, int status, const sl_h1_header_t *hs, size_t n)
{
    if (!r->run.nran || !(sl_engine_chain_phases(r->run.chain) & SL_PHASE_HEADER_FILTER))
        return;
    r->status = status;
    r->resp_headers = hs;
    r->nresp_headers = n;
    r->phase = SL_PHASE_HEADER_FILTER; /* for the PDK (set_status) */
    sl_engine_header_filter(PDK(r), &r->run);
    r->resp_headers = NULL;
    r->nresp_headers = 0;
}

/*
 * Passes a body the gateway or a plugin produced through the collected
 * plugins' body_filter, as Kong does (response-transformer edits a 401's
 * JSON too). Returns the body to send: the one given, or a plugin's.
 */
static sl_str_t filter_generated_body(sl_req_t *r, const char *body, size_t len)
{
    if (!len || !r->run.nran || !sl_engine_chain_wants_response_body(r->run.chain))
        return (sl_str_t){body, len};
    if (!r->resp_body)
        r->resp_body = evbuffer_new();
    evbuffer_drain(r->resp_body, evbuffer_get_length(r->resp_body));
    evbuffer_add(r->resp_body, body, len);
    sl_engine_body_filter(PDK(r), &r->run);
    if (!r->resp_new_body)
        return (sl_str_t){body, len};
    size_t n = evbuffer_get_length(r->resp_new_body);
    char *copy = sl_arena_alloc(&r->arena, n ? n : 1);
    evbuffer_copyout(r->resp_new_body, copy, n);
    return (sl_str_t){copy, n};
}

/*
 * Writes the response a plugin produced (kong.response.exit): its status,
 * the fields plugins set, Content-Length and the body. As for every
 * generated response, the connection closes when the request body was not
 * read.
 */
static void send_exit(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    const sl_dp_conf_t *conf = c->w->conf;
    int status = r->exit_status;
    bool close = r->client_close || (!r->body_done && r->body_kind != B_NONE) || c->draining ||
                 !r->h.keep_alive;
    bool bodiless = status < 200 || status == 204 || status == 304;

    run_header_filter(r, status, NULL, 0);
    if (r->filter_status)
        status = r->filter_status;
    bodiless = status < 200 || status == 204 || status == 304;
    if (!bodiless) {
        sl_str_t fb = filter_generated_body(r, r->exit_body, r->exit_body_len);
        r->exit_body = fb.p;
        r->exit_body_len = fb.len;
    }
    char storage[2048];
    sl_sb_t b;
    sl_sb_init(&b, storage, sizeof(storage));
    sl_sb_addlit(&b, "HTTP/1.1 ");
    sl_sb_addu(&b, (uint64_t)status);
    sl_sb_addlit(&b, " ");
    sl_sb_adds(&b, reason_phrase(status));
    sl_sb_addlit(&b, "\r\n");
    add_date(&b);
    add_op_headers(&b, r, false);
    if (!bodiless) {
        sl_sb_addlit(&b, "Content-Length: ");
        sl_sb_addu(&b, r->exit_body_len);
        sl_sb_addlit(&b, "\r\n");
    }
    if (close)
        sl_sb_addlit(&b, "Connection: close\r\n");
    else if (r->h.minor_version == 0)
        sl_sb_addlit(&b, "Connection: keep-alive\r\n");
    if (conf->hdr_server_tokens && !ops_replace(r, SL_STR("server")))
        sl_sb_addlit(&b, "Server: " SL_SERVER_TOKEN "\r\n");
    if (conf->hdr_latency_tokens) {
        sl_sb_addlit(&b, "X-Kong-Response-Latency: ");
        sl_sb_addu(&b, ms_between(r->t_start, sl_now_us()));
        sl_sb_addlit(&b, "\r\n");
    }
    if (conf->hdr_request_id) {
        sl_sb_addlit(&b, "X-Kong-Request-Id: ");
        sl_sb_add(&b, r->reqid, 32);
        sl_sb_addlit(&b, "\r\n");
    }
    sl_sb_addlit(&b, "\r\n");
    keep_head(r, b.p, b.len);
    size_t body = 0;
    if (!bodiless && r->exit_body_len && !sl_str_caseeq_lit(r->h.method, "HEAD")) {
        sl_sb_add(&b, r->exit_body, r->exit_body_len);
        body = r->exit_body_len;
    }
    evbuffer_add(bufferevent_get_output(c->bev), b.p, b.len);
    flush_out(c->bev);
    sl_sb_dispose(&b);
    r->status = status;
    r->bytes_out += body;
    if (close)
        r->client_close = true;
    finish_request(r);
}

/* ------------------------------------------------------------ connections */

static void arm_timer(sl_conn_t *c, uint64_t ms)
{
    struct timeval tv = ms_tv(ms);
    evtimer_add(c->timer, &tv);
}

/* Turns the client read timeout (client_body_timeout) on while a request
 * body streams in, and off otherwise; the write timeout (send_timeout) is
 * always on. Only touches the event when the state changes. */
static void client_body_timeout(sl_conn_t *c, bool on)
{
    if (c->body_timeout == on)
        return;
    c->body_timeout = on;
    struct timeval rt = ms_tv(c->w->conf->client_body_timeout_ms);
    struct timeval wt = ms_tv(c->w->conf->send_timeout_ms);
    bufferevent_set_timeouts(c->bev, on ? &rt : NULL, &wt);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_conn_t *c = arg;
    /* The deadline is not cancelled when a head completes (that would cost an
     * event operation per request); a stale one finds the connection busy. */
    if (c->state != C_IDLE && c->state != C_HEAD && c->state != C_HANDSHAKE)
        return;
    /* Idle keep-alive or header deadline: a slow or silent client. Nothing was
     * promised to it, so it is simply closed (nginx does the same). */
    SL_DEBUG("worker %d: client %s:%u timed out in state %d", c->w->id, c->peer_ip, c->peer_port,
             c->state);
    conn_close(c);
}

void sl_conn_accept(sl_worker_t *w, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    uint16_t local_port, const sl_listen_t *l)
{
    bool tls = l && l->ssl;
    sl_conn_t *c = sl_xcalloc(1, sizeof(*c));
    c->w = w;
    c->local_port = local_port;
    c->h2_ok = l && l->http2;
    /* Serials are unique in the process: the worker id in the low bits. */
    c->serial = ++w->conn_serial * SL_MAX_WORKERS_SERIAL + (uint64_t)w->id;
    memcpy(&c->peer, sa, (size_t)salen < sizeof(c->peer) ? (size_t)salen : sizeof(c->peer));
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(sin6->sin6_port);
    }
    c->trusted = sl_cidr_match(w->conf->trusted, w->conf->ntrusted, sa);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls) {
        /* The handshake runs here, not in libevent's TLS bufferevent, so
         * that it can wait for the certificate phase's plugins (tls.c's
         * ClientHello callback). It starts on the default certificate; the
         * SNI callback moves it to the configuration's for the name asked. */
        c->ssl = SSL_new(sl_tls_default_ctx());
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            SSL_free(c->ssl);
            evutil_closesocket(fd);
            free(c);
            return;
        }
        SSL_set_app_data(c->ssl, c);
        SSL_set_accept_state(c->ssl);
        c->tls = true;
        c->fd = fd;
        c->state = C_HANDSHAKE;
        c->timer = evtimer_new(w->base, on_conn_timer, c);
        c->hs_ev = event_new(w->base, fd, EV_READ, on_handshake_io, c);
        arm_timer(c, w->conf->client_header_timeout_ms);
        LIST_INSERT_HEAD(&w->conns, c, link);
        atomic_fetch_add_explicit(&w->metrics->connections_accepted, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->metrics->connections_active, 1, memory_order_relaxed);
        handshake_step(c);
        return;
    }
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->timer = evtimer_new(w->base, on_conn_timer, c);
    LIST_INSERT_HEAD(&w->conns, c, link);
    atomic_fetch_add_explicit(&w->metrics->connections_accepted, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics->connections_active, 1, memory_order_relaxed);
    conn_start(c);
}

/* A connection ready for its first request: plain, or TLS once the
 * handshake is done. */
static void conn_start(sl_conn_t *c)
{
    sl_worker_t *w = c->w;
    bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, SL_BUF_LOW, 0);
    struct timeval send_tv = ms_tv(w->conf->send_timeout_ms);
    bufferevent_set_timeouts(c->bev, NULL, &send_tv);
    /* New bufferevents start with writing enabled; flush_out wants it off. */
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
    c->state = C_IDLE;
    arm_timer(c, w->conf->client_header_timeout_ms);
}

/* ------------------------------------------------------- TLS handshakes */

/* Moves the handshake on; called when the socket is ready and when the
 * certificate phase ends. */
static void handshake_step(sl_conn_t *c)
{
    sl_worker_t *w = c->w;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        event_free(c->hs_ev);
        c->hs_ev = NULL;
        c->bev = bufferevent_openssl_socket_new(w->base, c->fd, c->ssl, BUFFEREVENT_SSL_OPEN,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev) {
            conn_close(c);
            return;
        }
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
        c->ssl = NULL; /* the bufferevent's now */
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        conn_start(c);
        if (alpn_len == 2 && !memcmp(alpn, "h2", 2) && !sl_h2_start(c))
            conn_close(c);
        return;
    }
    short what;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        what = EV_READ;
        break;
    case SSL_ERROR_WANT_WRITE:
        what = EV_WRITE;
        break;
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
        return; /* the certificate phase's plugins resume it */
    default:
        SL_DEBUG("worker %d: client %s: TLS handshake failed: %s", w->id, c->peer_ip,
                 ERR_reason_error_string(ERR_peek_error())
                     ? ERR_reason_error_string(ERR_peek_error())
                     : "connection closed");
        ERR_clear_error();
        conn_close(c);
        return;
    }
    event_del(c->hs_ev);
    event_assign(c->hs_ev, w->base, c->fd, what, on_handshake_io, c);
    event_add(c->hs_ev, NULL);
}

static void on_handshake_io(evutil_socket_t fd, short what, void *arg)
{
    handshake_step(arg);
}

static void cert_phase_end(sl_conn_t *c, sl_req_t *r, bool ok)
{
    c->cert_req = NULL;
    c->cert_state = ok ? CERT_DONE : CERT_FAILED;
    req_free(r);
}

/*
 * The certificate phase (tls.c's ClientHello callback asks, once per
 * handshake attempt): the certificate handlers of the global plugins, with
 * a handle that has the connection but no request yet. Returns SL_OK to go
 * on, SL_AGAIN while a handler waits (handshake_step is called again when
 * it is done), SL_ERR_INVALID when a plugin refused the connection.
 */
int sl_conn_certificate(sl_conn_t *c)
{
    switch (c->cert_state) {
    case CERT_DONE:
        return SL_OK;
    case CERT_RUNNING:
        return SL_AGAIN;
    case CERT_FAILED:
        return SL_ERR_INVALID;
    }
    const struct sl_chain_s *chain = sl_engine_global_chain(sl_worker_gen(c->w));
    if (!chain || !(sl_engine_chain_phases(chain) & SL_PHASE_CERTIFICATE)) {
        c->cert_state = CERT_DONE;
        return SL_OK;
    }
    sl_req_t *r = req_new(c);
    r->gen = sl_worker_gen(c->w);
    sl_gen_ref(r->gen);
    r->t_start = sl_now_us();
    r->phase = SL_PHASE_CERTIFICATE;
    sl_engine_run_init(&r->run, chain, &r->arena);
    sl_engine_collect_global(PDK(r), &r->run, SL_PROTO_HTTPS);
    if (sl_engine_certificate(PDK(r), &r->run) == SL_PLUGIN_SUSPEND) {
        c->cert_req = r;
        c->cert_state = CERT_RUNNING;
        return SL_AGAIN;
    }
    bool ok = !r->exit_status;
    cert_phase_end(c, r, ok);
    return ok ? SL_OK : SL_ERR_INVALID;
}

/* Requests (with their first arena block) are recycled through a small
 * per-worker cache, so a request normally costs no malloc at all; idle
 * connections hold none. */
#define REQ_CACHE_MAX 64

static sl_req_t *req_new(sl_conn_t *c)
{
    sl_worker_t *w = c->w;
    sl_req_t *r = w->req_cache;
    if (r) {
        w->req_cache = r->next_free;
        w->nreq_cache--;
        sl_arena_t arena = r->arena;
        memset(r, 0, sizeof(*r));
        r->arena = arena;
    } else {
        r = sl_xcalloc(1, sizeof(*r));
        sl_arena_init(&r->arena);
    }
    r->c = c;
    return r;
}

static void req_free(sl_req_t *r)
{
    sl_worker_t *w = r->c->w;
    if (r->body_buf)
        evbuffer_free(r->body_buf);
    if (r->resp_body)
        evbuffer_free(r->resp_body);
    if (r->resp_new_body)
        evbuffer_free(r->resp_new_body);
    if (r->suspended && r->abort_cb) {
        /* A plugin still waits for this request: tell it first. */
        r->suspended = false;
        r->abort_cb(r->abort_arg);
    }
    if (r->dns)
        sl_dns_cancel(w, r->dns);
    if (r->gen)
        sl_gen_unref(r->gen);
    if (w->nreq_cache < REQ_CACHE_MAX && !w->draining) {
        sl_arena_reset(&r->arena);
        r->next_free = w->req_cache;
        w->req_cache = r;
        w->nreq_cache++;
        return;
    }
    sl_arena_dispose(&r->arena);
    free(r);
}

void sl_req_cache_free(sl_worker_t *w)
{
    sl_req_t *r;
    while ((r = w->req_cache)) {
        w->req_cache = r->next_free;
        sl_arena_dispose(&r->arena);
        free(r);
    }
    w->nreq_cache = 0;
}

/*
 * Frees a client connection and everything it owns. Inside conn_resume the
 * connection is still on the stack, so the close is deferred until that
 * loop unwinds (it stops at once: the state is no longer idle).
 */
static void conn_close(sl_conn_t *c)
{
    if (c->in_resume) {
        c->close_pending = true;
        c->state = C_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        return;
    }
    sl_worker_t *w = c->w;
    if (c->h2)
        sl_h2_free(c);
    if (c->stream)
        sl_h2_stream_detached(c->stream); /* after the response's last bytes */
    c->stream = NULL;
    c->parent = NULL;
    if (c->req) {
        sl_req_t *r = c->req;
        if (r->up) {
            r->up->req = NULL;
            upconn_close(r->up);
            r->up = NULL;
        }
        if (!r->status)
            r->status = 499; /* client closed the connection before the response */
        log_request(r);
        req_free(r);
        c->req = NULL;
    }
    if (c->tunnel) {
        c->tunnel->tunnel_peer = NULL;
        upconn_close(c->tunnel);
        c->tunnel = NULL;
    }
    if (c->cert_req) {
        sl_req_t *r = c->cert_req; /* its plugin event is given up */
        c->cert_req = NULL;
        req_free(r);
    }
    if (c->hs_ev)
        event_free(c->hs_ev);
    c->hs_ev = NULL;
    if (c->ssl) {
        /* Still handshaking: the socket is not a bufferevent's yet. */
        SSL_free(c->ssl);
        c->ssl = NULL;
        evutil_closesocket(c->fd);
    }
    LIST_REMOVE(c, link);
    event_free(c->timer);
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    c->timer = NULL;
    c->closed = true;
    bool counted = !c->http2;
    if (!c->nlogging)
        free(c);
    if (counted)
        atomic_fetch_sub_explicit(&w->metrics->connections_active, 1, memory_order_relaxed);
    if (w->draining && LIST_EMPTY(&w->conns))
        event_base_loopexit(w->base, NULL);
}

sl_conn_t *sl_conn_open_stream(sl_conn_t *parent, struct sl_h2_stream_s *s, struct bufferevent *bev)
{
    sl_worker_t *w = parent->w;
    sl_conn_t *c = sl_xcalloc(1, sizeof(*c));
    c->w = w;
    c->bev = bev;
    c->peer = parent->peer;
    memcpy(c->peer_ip, parent->peer_ip, sizeof(c->peer_ip));
    memcpy(c->local_ip, parent->local_ip, sizeof(c->local_ip));
    c->peer_port = parent->peer_port;
    c->local_port = parent->local_port;
    c->serial = parent->serial;
    c->trusted = parent->trusted;
    c->tls = parent->tls;
    c->http2 = true;
    c->stream = s;
    c->parent = parent;
    c->timer = evtimer_new(w->base, on_conn_timer, c);
    LIST_INSERT_HEAD(&w->conns, c, link);
    conn_start(c);
    return c;
}

void sl_conn_abort(sl_conn_t *c)
{
    c->stream = NULL;
    c->parent = NULL;
    conn_close(c);
}

void sl_conn_close(sl_conn_t *c)
{
    conn_close(c);
}

void sl_conns_drain(sl_worker_t *w)
{
    sl_conn_t *c, *next;
    for (c = LIST_FIRST(&w->conns); c; c = next) {
        next = LIST_NEXT(c, link);
        c->draining = true;
        if (c->state == C_IDLE)
            conn_close(c);
        else if (c->state == C_H2)
            sl_h2_drain(c);
    }
}

/* -------------------------------------------------------- request parsing */

static size_t router_get_header(void *ud, const char *name, sl_str_t *out, size_t max)
{
    sl_req_t *r = ud;
    size_t n = 0, len = strlen(name);
    for (size_t i = 0; i < r->h.num_headers; i++) {
        if (sl_strcaseeq(r->h.headers[i].name.p, r->h.headers[i].name.len, name, len)) {
            if (n < max)
                out[n] = r->h.headers[i].value;
            n++;
        }
    }
    return n;
}

/* Re-points every string of a parsed head from `from` into `to`. */
static void rebase(sl_str_t *s, const char *from, const char *to)
{
    if (s->p)
        s->p = to + (s->p - from);
}

static void build_upstream_head(sl_req_t *r);
static void proxy_request(sl_req_t *r);
static void after_access(sl_req_t *r, int rc);
static void start_buffering(sl_req_t *r);
static int buffer_request_body(sl_req_t *r);
static void hold_response(sl_req_t *r, const sl_h1_response_t *res);
static void release_response(sl_req_t *r);
static void write_response_head(sl_req_t *r, const sl_h1_response_t *res);
static int chunked_scan(sl_h1_chunked_t *st, struct evbuffer *buf, size_t *n, bool *done,
                        sl_h1_data_cb cb, void *ud, sl_h1_error_t *err);

/* Routes a parsed request, runs its access plugins and starts proxying it. */
static void route_request(sl_req_t *r);

static void process_request(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    sl_worker_t *w = c->w;
    const sl_dp_conf_t *conf = w->conf;

    r->gen = sl_worker_gen(w);
    sl_gen_ref(r->gen);

    /* Request body framing is known from the head; remember it before any
     * early answer so send_json can tell whether the body was consumed. */
    if (r->h.body_kind == SL_H1_BODY_LENGTH) {
        r->body_kind = r->h.content_length ? B_LENGTH : B_NONE;
        r->body_left = r->h.content_length;
    } else if (r->h.body_kind == SL_H1_BODY_CHUNKED) {
        r->body_kind = B_CHUNKED;
        sl_h1_chunked_init(&r->chunk, conf->client_max_body_size);
    }
    r->body_done = r->body_kind == B_NONE;

    r->npath = sl_arena_alloc(&r->arena, r->h.path.len + 1);
    if (sl_uri_normalize(r->h.path.p, r->h.path.len, r->npath, &r->npath_len) != SL_OK) {
        send_json(c, r, 400, "Bad request: invalid request path", NULL, true);
        return;
    }
    r->npath[r->npath_len] = '\0';

    if (conf->client_max_body_size && r->body_kind == B_LENGTH &&
        r->body_left > conf->client_max_body_size) {
        send_json(c, r, 413, "Request size limit exceeded", NULL, true);
        return;
    }

    /* Global plugins' rewrite handlers run before the router (Kong). */
    const struct sl_chain_s *global = sl_engine_global_chain(r->gen);
    if (global && (sl_engine_chain_phases(global) & SL_PHASE_REWRITE)) {
        sl_engine_run_init(&r->run, global, &r->arena);
        sl_engine_collect_global(PDK(r), &r->run, SCHEME(r));
        r->phase = SL_PHASE_REWRITE;
        if (sl_engine_rewrite(PDK(r), &r->run) == SL_PLUGIN_SUSPEND)
            return; /* sl_pdk_resume carries on */
        r->phase = 0;
    }
    route_request(r);
}

/* Matches a route and runs its access plugins, after rewrite. */
static void route_request(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    sl_router_req_t rq = {
        .method = r->h.method,
        .path = {r->npath, r->npath_len},
        .host = r->h.absolute_form ? r->h.authority : r->h.host,
        .scheme = SCHEME(r),
        .get_header = router_get_header,
        .ud = r,
    };
    if (sl_router_match(r->gen->router, &rq, &r->m) != SL_OK) {
        /* Global plugins still see the answer (header_filter, log). */
        sl_engine_run_init(&r->run, sl_engine_global_chain(r->gen), &r->arena);
        sl_engine_collect_global(PDK(r), &r->run, SCHEME(r));
        send_json(c, r, 404, "no Route matched with those values", NULL, false);
        return;
    }
    r->route = r->m.data;
    if (r->m.protocol_mismatch) {
        int code = r->route->https_redirect_status_code;
        if (code == 426) {
            send_json(c, r, 426, "Please use HTTPS protocol", "Upgrade: TLS/1.2, HTTP/1.1\r\n",
                      false);
        } else {
            /* Kong's https:// + $host (without the port) + $request_uri */
            sl_str_t h = rq.host;
            const char *end = h.len && h.p[0] == '[' ? memchr(h.p, ']', h.len) : NULL;
            const char *colon =
                memchr(end ? end : h.p, ':', h.len - (size_t)((end ? end : h.p) - h.p));
            if (colon)
                h.len = (size_t)(colon - h.p);
            char loc[SL_UPATH_MAX + 600];
            snprintf(loc, sizeof(loc), "Location: https://%.*s%.*s\r\n", (int)h.len, h.p,
                     (int)r->h.target.len, r->h.target.p);
            send_json(c, r, code, "Please use HTTPS protocol", loc, false);
        }
        return;
    }
    r->svc = r->route->service;
    if (!r->svc) {
        send_json(c, r, 503, "no Service found with those values", NULL, false);
        return;
    }

    if (r->route->chain) {
        sl_engine_run_init(&r->run, r->route->chain, &r->arena);
        if (sl_engine_chain_wants_body(r->route->chain) && !r->body_done) {
            start_buffering(r); /* access runs once the body is in */
            return;
        }
        after_access(r, sl_engine_access(PDK(r), &r->run, SCHEME(r)));
        return;
    }
    proxy_request(r);
}

/* ------------------------------------------ request bodies read for plugins */

static void on_buffered_data(void *ud, const char *p, size_t n)
{
    evbuffer_add(ud, p, n);
}

/* Buffering for plugins that want the body only if it fits: it does not.
 * The access phase runs without it; the body streams to the upstream as on
 * any route, nothing of it consumed. Returns SL_DONE (r may be freed). */
static int body_unread(sl_req_t *r)
{
    r->buffering = false;
    r->body_too_large = true;
    after_access(r, sl_engine_access(PDK(r), &r->run, SCHEME(r)));
    return SL_DONE;
}

/* A chunked body wanted if it fits: looks ahead at the input without
 * consuming it. 1: the whole body is there (read it), 0: not yet, -1: it
 * does not fit. Framing errors count as "there": reading reports them. */
static int peek_chunked(sl_req_t *r, struct evbuffer *in, uint64_t max)
{
    size_t avail = evbuffer_get_length(in);
    while (r->peek_off < avail) {
        struct evbuffer_ptr at;
        struct evbuffer_iovec v;
        if (evbuffer_ptr_set(in, &at, r->peek_off, EVBUFFER_PTR_SET) != 0 ||
            evbuffer_peek(in, -1, &at, &v, 1) < 1)
            break;
        size_t len = SL_MIN(v.iov_len, avail - r->peek_off), used = 0;
        sl_h1_error_t err = {0, NULL};
        int rc = sl_h1_chunked_feed(&r->peek, v.iov_base, len, &used, NULL, NULL, &err);
        r->peek_off += used;
        if (rc != SL_AGAIN)
            return 1;
        if (used < len)
            break;
    }
    return avail > max ? -1 : 0;
}

/*
 * Reads what the client sent of the body into r->body_buf (chunked framing
 * removed) and, once it is complete, runs the access phase. A body larger
 * than client_body_buffer_size is refused with 413 when a plugin needs it
 * whole, and left to stream unread when the plugins want it only if it
 * fits. Returns SL_OK, or SL_DONE when the request was answered (r may be
 * freed).
 */
static int buffer_request_body(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    uint64_t max = c->w->conf->client_body_buffer_size;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    bool done = false;
    if (r->body_if_fits && r->body_kind == B_CHUNKED && !r->peek_whole) {
        int fits = peek_chunked(r, in, max);
        if (fits < 0)
            return body_unread(r);
        if (fits == 0) {
            if (!(bufferevent_get_enabled(c->bev) & EV_READ))
                bufferevent_enable(c->bev, EV_READ);
            return SL_OK;
        }
        r->peek_whole = true;
    }
    if (r->body_kind == B_LENGTH) {
        if (r->body_left > max && r->body_if_fits)
            return body_unread(r);
        if (r->body_left > max) {
            send_json(c, r, 413,
                      "Request body larger than client_body_buffer_size (the route's "
                      "plugins read it whole)",
                      NULL, true);
            return SL_DONE;
        }
        size_t n = (size_t)SL_MIN((uint64_t)avail, r->body_left);
        evbuffer_remove_buffer(in, r->body_buf, n);
        r->bytes_in += n;
        r->body_left -= n;
        done = r->body_left == 0;
    } else {
        size_t n;
        sl_h1_error_t err = {0, NULL};
        int rc = chunked_scan(&r->chunk, in, &n, &done, on_buffered_data, r->body_buf, &err);
        evbuffer_drain(in, n);
        r->bytes_in += n;
        if (rc < 0) {
            send_json(c, r, err.status ? err.status : 400,
                      err.message ? err.message : "Bad request", NULL, true);
            return SL_DONE;
        }
        if (evbuffer_get_length(r->body_buf) > max) {
            send_json(c, r, 413,
                      "Request body larger than client_body_buffer_size (the route's "
                      "plugins read it whole)",
                      NULL, true);
            return SL_DONE;
        }
    }
    if (!done) {
        if (!(bufferevent_get_enabled(c->bev) & EV_READ))
            bufferevent_enable(c->bev, EV_READ);
        return SL_OK;
    }
    r->buffering = false;
    r->body_done = true;
    r->body_buffered = true;
    client_body_timeout(c, false);
    after_access(r, sl_engine_access(PDK(r), &r->run, SCHEME(r)));
    return SL_DONE;
}

static void start_buffering(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    r->buffering = true;
    r->body_buf = evbuffer_new();
    r->body_if_fits = !sl_engine_chain_body_required(r->route->chain);
    if (r->body_kind == B_CHUNKED && r->body_if_fits)
        sl_h1_chunked_init(&r->peek, 0);
    if (r->body_kind == B_LENGTH && r->body_left > c->w->conf->client_body_buffer_size) {
        /* refused, or left to stream, before a 100 Continue invites it */
        buffer_request_body(r);
        return;
    }
    if (r->h.expect_continue && r->h.minor_version == 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        flush_out(c->bev);
    }
    client_body_timeout(c, true);
    buffer_request_body(r);
}

/* Acts on what the access phase came to. */
static void after_access(sl_req_t *r, int rc)
{
    switch (rc) {
    case SL_PLUGIN_CONTINUE:
        proxy_request(r);
        return;
    case SL_PLUGIN_EXIT:
        send_exit(r);
        return;
    case SL_PLUGIN_SUSPEND:
        if (r->suspended)
            return; /* sl_pdk_resume carries on */
        break;
    }
    SL_ERROR("worker %d: plugin %s: an access handler returned %d%s", r->c->w->id,
             r->run.current ? r->run.current->info->name : "?", rc,
             rc == SL_PLUGIN_SUSPEND ? " without calling sl_pdk_suspend" : "");
    send_json(r->c, r, 500, "An unexpected error occurred", NULL, true);
}

static void after_response(sl_req_t *r);
static void after_log(sl_req_t *r);

void sl_pdk_resume(sl_pdk_t *p, int rc)
{
    sl_req_t *r = (sl_req_t *)p;
    if (!r->suspended) {
        SL_ERROR("worker %d: sl_pdk_resume on a request that is not suspended", r->c->w->id);
        return;
    }
    r->suspended = false;
    r->abort_cb = NULL;
    r->abort_arg = NULL;
    switch (r->run.phase) {
    case SL_PHASE_CERTIFICATE: {
        sl_conn_t *c = r->c;
        if (rc == SL_PLUGIN_EXIT) {
            cert_phase_end(c, r, false);
        } else if (sl_engine_resumed(p, &r->run, rc) == SL_PLUGIN_CONTINUE) {
            cert_phase_end(c, r, !r->exit_status);
        } else {
            return; /* the next handler waits */
        }
        handshake_step(c); /* the ClientHello callback sees the outcome */
        return;
    }
    case SL_PHASE_REWRITE:
        if (rc == SL_PLUGIN_EXIT) {
            r->run.exited = true;
            send_exit(r);
        } else if (sl_engine_resumed(p, &r->run, rc) == SL_PLUGIN_CONTINUE) {
            r->phase = 0;
            route_request(r);
        }
        return;
    case SL_PHASE_RESPONSE:
        if (rc == SL_PLUGIN_EXIT && r->exit_status) {
            /* kong.response.exit here answers with the upstream's response
             * head under the exit's status, headers and body (Kong's
             * buffered proxying keeps the upstream's headers): later
             * response handlers are skipped, body filters still run. */
            sl_pdk_response_set_status(p, r->exit_status);
            sl_pdk_response_set_raw_body(p, r->exit_body ? r->exit_body : "", r->exit_body_len);
            r->exit_status = 0;
            r->run.pos = r->run.nran;
        }
        if (sl_engine_resumed(p, &r->run, rc) == SL_PLUGIN_CONTINUE)
            after_response(r);
        return;
    case SL_PHASE_LOG:
        if (sl_engine_resumed(p, &r->run, rc) == SL_PLUGIN_CONTINUE)
            after_log(r);
        return;
    default:
        after_access(r, sl_engine_access_resumed(p, &r->run, SCHEME(r), rc));
    }
}

/* Sends a routed request upstream once its plugins let it through. */
static void proxy_request(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    r->upgrade = r->h.upgrade;
    build_upstream_head(r);
    if (!r->uphead)
        return; /* answered already */

    if (r->h.expect_continue && r->h.minor_version == 1 && !r->body_done) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        flush_out(c->bev);
    }

    /* While the body streams, a stalled client is cut off after
     * client_body_timeout of silence. */
    if (!r->body_done)
        client_body_timeout(c, true);
    r->t_sent = sl_now_us();
    connect_upstream(r);
}

/* The value to forward for an X-Forwarded-* header: the client's when it is
 * a trusted proxy and sent one, else the computed one. */
static const sl_h1_header_t *trusted_hdr(sl_req_t *r, const char *name)
{
    return r->c->trusted ? find_hdr(r->h.headers, r->h.num_headers, name) : NULL;
}

#define SB_HDR(b, lit, v, n) sl_sb_header((b), (lit), sizeof(lit) - 1, (v), (n))

/* Appends the values of every `name` field, each followed by ", ". */
static void add_list_values(sl_sb_t *b, const sl_h1_header_t *hs, size_t nh, const char *name)
{
    for (size_t i = 0; i < nh; i++) {
        if (sl_str_caseeq_lit(hs[i].name, name)) {
            sl_sb_addstr(b, hs[i].value);
            sl_sb_addlit(b, ", ");
        }
    }
}

/*
 * Builds the request head sent upstream into the request's arena (kept for
 * retries). Answers the client itself (and leaves r->uphead NULL) when the
 * upstream path would be too long.
 */
static void build_upstream_head(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    const sl_dp_conf_t *conf = c->w->conf;
    const sl_service_t *s = r->svc;
    const sl_h1_header_t *hs = r->h.headers;
    size_t nh = r->h.num_headers;
    char upath[SL_UPATH_MAX];

    if (r->up_path.p) {
        if (r->up_path.len >= sizeof(upath)) {
            send_json(c, r, 414, "Request-URI Too Large", NULL, true);
            return;
        }
        memcpy(upath, r->up_path.p, r->up_path.len + 1);
    } else if (sl_router_upstream_path(s->path, (sl_str_t){r->npath, r->npath_len}, &r->m,
                                       r->route->strip_path, r->route->path_handling, upath,
                                       sizeof(upath)) != SL_OK) {
        send_json(c, r, 414, "Request-URI Too Large", NULL, true);
        return;
    }

    char storage[4096];
    sl_sb_t b;
    sl_sb_init(&b, storage, sizeof(storage));
    sl_sb_addstr(&b, r->up_method.p ? r->up_method : r->h.method);
    sl_sb_addlit(&b, " ");
    sl_sb_adds(&b, upath);
    sl_str_t query = r->up_query.p ? r->up_query : r->h.query;
    if (query.p && (query.len || !r->up_query.p)) {
        sl_sb_addlit(&b, "?");
        sl_sb_addstr(&b, query);
    }
    sl_sb_addlit(&b, " HTTP/1.1\r\n");

    sl_str_t host = r->h.absolute_form ? r->h.authority : r->h.host;
    if (r->up_host.p)
        SB_HDR(&b, "Host", r->up_host.p, r->up_host.len);
    else if (r->pdk_upstream && !(r->route->preserve_host && host.len)) {
        /* kong.service.set_upstream: the upstream's host_header, or its name. */
        const char *h =
            r->pdk_upstream->host_header ? r->pdk_upstream->host_header : r->pdk_upstream->name;
        SB_HDR(&b, "Host", h, strlen(h));
    } else if (r->route->preserve_host && host.len)
        SB_HDR(&b, "Host", host.p, host.len);
    else
        SB_HDR(&b, "Host", s->host_header, strlen(s->host_header));

    bool conn_fields = connection_names_fields(hs, nh);
    for (size_t i = 0; i < nh; i++) {
        if ((HBIT(hdr_id(hs[i].name)) & (HOP_BY_HOP | REQ_REWRITTEN)) ||
            (conn_fields && named_in_connection(hs, nh, hs[i].name)))
            continue;
        sl_sb_header(&b, hs[i].name.p, hs[i].name.len, hs[i].value.p, hs[i].value.len);
    }

    if (r->body_buffered) {
        sl_sb_addlit(&b, "Content-Length: ");
        sl_sb_addu(&b, evbuffer_get_length(r->body_buf));
        sl_sb_addlit(&b, "\r\n");
    } else if (r->body_kind == B_LENGTH) {
        sl_sb_addlit(&b, "Content-Length: ");
        sl_sb_addu(&b, r->body_left);
        sl_sb_addlit(&b, "\r\n");
    } else if (r->body_kind == B_CHUNKED) {
        sl_sb_addlit(&b, "Transfer-Encoding: chunked\r\n");
    } else if (r->h.body_kind == SL_H1_BODY_LENGTH) {
        sl_sb_addlit(&b, "Content-Length: 0\r\n");
    }

    const sl_h1_header_t *up = r->upgrade ? find_hdr(hs, nh, "upgrade") : NULL;
    if (up) {
        SB_HDR(&b, "Upgrade", up->value.p, up->value.len);
        sl_sb_addlit(&b, "Connection: upgrade\r\n");
    } else {
        r->upgrade = false;
        sl_sb_addlit(&b, "Connection: keep-alive\r\n");
    }

    /* X-Real-IP: the client address, or what a trusted proxy says it is. */
    const sl_h1_header_t *v = trusted_hdr(r, "x-real-ip");
    if (v)
        SB_HDR(&b, "X-Real-IP", v->value.p, v->value.len);
    else
        SB_HDR(&b, "X-Real-IP", c->peer_ip, strlen(c->peer_ip));

    /* X-Forwarded-For is always appended to, as nginx's
     * $proxy_add_x_forwarded_for does; several incoming fields are joined. */
    sl_sb_addlit(&b, "X-Forwarded-For: ");
    add_list_values(&b, hs, nh, "x-forwarded-for");
    sl_sb_adds(&b, c->peer_ip);
    sl_sb_addlit(&b, "\r\n");

    if ((v = trusted_hdr(r, "x-forwarded-proto")))
        SB_HDR(&b, "X-Forwarded-Proto", v->value.p, v->value.len);
    else
        sl_sb_adds(&b, r->c->tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");

    if ((v = trusted_hdr(r, "x-forwarded-host"))) {
        SB_HDR(&b, "X-Forwarded-Host", v->value.p, v->value.len);
    } else {
        /* nginx's $host: the Host without its port, lower-cased. */
        size_t hl = host.len;
        if (host.len && host.p[0] == '[') {
            const char *rb = memchr(host.p, ']', host.len);
            if (rb)
                hl = (size_t)(rb - host.p) + 1;
        } else if (host.len) {
            const char *colon = memchr(host.p, ':', host.len);
            if (colon)
                hl = (size_t)(colon - host.p);
        }
        char lower[256];
        hl = SL_MIN(hl, sizeof(lower));
        for (size_t i = 0; i < hl; i++)
            lower[i] = sl_lower(host.p[i]);
        SB_HDR(&b, "X-Forwarded-Host", lower, hl);
    }

    if ((v = trusted_hdr(r, "x-forwarded-port"))) {
        SB_HDR(&b, "X-Forwarded-Port", v->value.p, v->value.len);
    } else {
        sl_sb_addlit(&b, "X-Forwarded-Port: ");
        sl_sb_addu(&b, c->local_port);
        sl_sb_addlit(&b, "\r\n");
    }

    if ((v = trusted_hdr(r, "x-forwarded-path")))
        SB_HDR(&b, "X-Forwarded-Path", v->value.p, v->value.len);
    else
        SB_HDR(&b, "X-Forwarded-Path", r->h.path.p, r->h.path.len);

    if ((v = trusted_hdr(r, "x-forwarded-prefix")))
        SB_HDR(&b, "X-Forwarded-Prefix", v->value.p, v->value.len);
    else if (r->route->strip_path && r->m.prefix_len > 0 &&
             !(r->m.prefix_len == 1 && r->npath[0] == '/'))
        SB_HDR(&b, "X-Forwarded-Prefix", r->npath, r->m.prefix_len);

    /* Via (RFC 9110 7.6.3): appended to what earlier proxies wrote. */
    sl_sb_addlit(&b, "Via: ");
    add_list_values(&b, hs, nh, "via");
    if (c->http2) {
        sl_sb_addlit(&b, "2");
    } else {
        sl_sb_addlit(&b, "1.");
        sl_sb_addu(&b, (uint64_t)r->h.minor_version);
    }
    sl_sb_addlit(&b, " " SL_SERVER_TOKEN "\r\n");
    if (conf->hdr_request_id) {
        sl_sb_addlit(&b, "X-Kong-Request-Id: ");
        sl_sb_add(&b, r->reqid, 32);
        sl_sb_addlit(&b, "\r\n");
    }
    sl_sb_addlit(&b, "\r\n");

    r->uphead_len = b.len;
    r->uphead = sl_arena_alloc(&r->arena, b.len);
    memcpy(r->uphead, b.p, b.len);
    sl_sb_dispose(&b);
}

/*
 * Parses as many requests as the input holds while the connection is free.
 * Guarded against re-entry: finishing a request inside this loop (an
 * immediate 404, say) only changes state, and the loop picks up the next
 * pipelined request, so deep pipelines never deepen the stack.
 */
static void conn_resume(sl_conn_t *c)
{
    if (c->in_resume)
        return;
    c->in_resume = true;
    sl_worker_t *w = c->w;
    const sl_dp_conf_t *conf = w->conf;
    sl_h1_limits_t lim = {.max_request_line = conf->max_request_line,
                          .max_header_block = conf->max_header_size,
                          .max_headers = conf->max_headers};
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while ((c->state == C_IDLE || c->state == C_HEAD) && evbuffer_get_length(in) > 0) {
        if (c->draining && c->state == C_IDLE) {
            conn_close(c); /* deferred to the end of this function */
            break;
        }
        if (c->h2_ok && !c->tls && c->nreq == 0 && c->state == C_IDLE) {
            /* An http2 listener in plain text: HTTP/2 with prior knowledge
             * when the connection opens with the preface. */
            size_t n = SL_MIN(evbuffer_get_length(in), (size_t)24);
            int pre = sl_h2_preface((const char *)evbuffer_pullup(in, (ev_ssize_t)n), n);
            if (pre == 0)
                break;
            if (pre == 1) {
                c->h2_ok = false;
                if (!sl_h2_start(c))
                    conn_close(c); /* deferred to the end of this function */
                break;
            }
            c->h2_ok = false;
        }
        if (c->state == C_IDLE) {
            c->state = C_HEAD;
            c->head_start = sl_now_us();
            if (c->nreq > 0)
                arm_timer(c, conf->client_header_timeout_ms);
        }
        size_t avail = evbuffer_get_length(in);
        size_t want = SL_MIN(avail, (size_t)conf->max_header_size + 1);
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        /* The parser rescans from the start, so only call it when a new line
         * ended or a limit was crossed: a client trickling one byte at a time
         * must not cost quadratic work. */
        size_t from = SL_MIN(c->scanned, want);
        bool crossed =
            (c->scanned <= lim.max_request_line + 1 && want > lim.max_request_line + 1) ||
            want > lim.max_header_block;
        c->scanned = want;
        if (!crossed && !memchr(buf + from, '\n', want - from))
            break;
        sl_h1_request_t h;
        sl_h1_error_t err = {0, NULL};
        size_t consumed = 0;
        h.headers = w->scratch_headers;
        int rc = sl_h1_parse_request(buf, want, &lim, &h, &consumed, &err);
        if (rc == SL_AGAIN)
            break;
        if (rc != SL_OK) {
            SL_INFO("worker %d: client %s: bad request: %s", w->id, c->peer_ip,
                    err.message ? err.message : "?");
            evtimer_del(c->timer);
            send_json(c, NULL, err.status ? err.status : 400,
                      err.message ? err.message : "Bad request", NULL, true);
            break;
        }

        sl_req_t *r = req_new(c);
        r->t_start = sl_now_us();
        r->wall_start_us = (uint64_t)(sl_wall_time() * 1e6);
        gen_reqid(w, r->reqid);
        /* Keep a private copy of the head: the input buffer is about to be
         * drained and the parsed strings point into it. */
        char *copy = sl_arena_alloc(&r->arena, consumed);
        memcpy(copy, buf, consumed);
        r->h = h;
        rebase(&r->h.method, buf, copy);
        rebase(&r->h.target, buf, copy);
        rebase(&r->h.path, buf, copy);
        rebase(&r->h.query, buf, copy);
        rebase(&r->h.authority, buf, copy);
        rebase(&r->h.host, buf, copy);
        r->h.headers = sl_arena_alloc(&r->arena, (h.num_headers + 1) * sizeof(sl_h1_header_t));
        for (size_t i = 0; i < h.num_headers; i++) {
            r->h.headers[i] = h.headers[i];
            rebase(&r->h.headers[i].name, buf, copy);
            rebase(&r->h.headers[i].value, buf, copy);
        }
        evbuffer_drain(in, consumed);
        r->bytes_in = consumed;
        c->scanned = 0;
        c->req = r;
        c->state = C_BUSY;
        c->nreq++;
        if (c->draining || !r->h.keep_alive || c->http2)
            r->client_close = true; /* an HTTP/2 stream's connection has one request */
        process_request(r);
    }
    c->in_resume = false;
    if (c->close_pending)
        conn_close(c);
    else if (c->state == C_BUSY && c->req && c->req->buffering)
        buffer_request_body(c->req); /* last: it may finish the request */
    else if (c->state == C_BUSY && c->req && !c->req->body_done)
        pump_request_body(c->req); /* last: it may finish the request */
}

/* ----------------------------------------------------- request completion */

static void upconn_release(sl_upconn_t *u);
static void upstream_settle(sl_req_t *r);

/* Called when the upstream response is complete (or a generated response
 * was written) and, for proxied requests, the upstream side is settled. */
/* A detached request's log handlers are done. */
static void after_log(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    req_free(r);
    if (--c->nlogging == 0 && c->closed)
        free(c);
}

/* Gives the upstream connection back to the pool, or closes it. */
static void upstream_settle(sl_req_t *r)
{
    if (r->up) {
        sl_upconn_t *u = r->up;
        r->up = NULL;
        u->req = NULL;
        if (r->up_keepalive && r->body_done && r->resp_kind != B_EOF)
            upconn_release(u);
        else
            upconn_close(u);
    }
}

/* The log phase reads the response as the client got it: the fields of
 * the head as sent (kept when the chain has log handlers), which already
 * carry every header change plugins made. */
static void log_view(sl_req_t *r)
{
    if (!r->sent_head)
        return;
    size_t max = 1;
    for (size_t i = 0; i < r->sent_head_len; i++)
        max += r->sent_head[i] == '\n';
    sl_h1_header_t *hs = sl_arena_alloc(&r->arena, max * sizeof(*hs));
    sl_h1_limits_t lim = {r->sent_head_len + 1, r->sent_head_len + 1, max};
    sl_h1_response_t res = {.headers = hs};
    sl_h1_error_t err = {0, NULL};
    size_t consumed = 0;
    if (sl_h1_parse_response(r->sent_head, r->sent_head_len, &lim, false, &res, &consumed, &err) ==
        SL_OK) {
        r->resp_headers = res.headers;
        r->nresp_headers = res.num_headers;
        r->nresp_ops = 0;
    }
}

static void finish_request(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    upstream_settle(r);
    if (!r->body_done)
        r->client_close = true;
    log_request(r);
    r->phase = SL_PHASE_LOG;
    log_view(r);
    bool close = r->client_close || c->draining;
    c->req = NULL;
    if (r->run.nran && (sl_engine_chain_phases(r->run.chain) & SL_PHASE_LOG) &&
        sl_engine_log(PDK(r), &r->run) == SL_PLUGIN_SUSPEND) {
        /* A log handler waits: the request lives on, off the connection,
         * which goes on with the client (the connection itself stays
         * allocated until the request is done: the PDK reads it). */
        r->detached = true;
        c->nlogging++;
    } else {
        req_free(r);
    }

    if (close) {
        c->state = C_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        on_client_write(c->bev, c);
        return;
    }
    c->state = C_IDLE;
    client_body_timeout(c, false);
    bufferevent_enable(c->bev, EV_READ);
    arm_timer(c, c->w->conf->keepalive_timeout_ms);
    conn_resume(c);
}

/* ----------------------------------------------------- upstream connections */

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
                      const struct sockaddr_storage *b, socklen_t blen)
{
    if (alen != blen || a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

static void upconn_close(sl_upconn_t *u)
{
    if (u->in_pool) {
        TAILQ_REMOVE(&u->w->idle, u, link);
        u->w->nidle--;
    }
    if (u->timer)
        event_free(u->timer);
    bufferevent_free(u->bev);
    free(u);
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    if ((what & BEV_EVENT_TIMEOUT) && !(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
        /* The last request's read timeout, not a fault: keep watching. */
        bufferevent_enable(bev, EV_READ);
        return;
    }
    upconn_close(arg); /* the upstream closed an idle connection */
}

void sl_upstream_pool_sweep(sl_worker_t *w)
{
    uint64_t now = sl_now_ms(), ttl = w->conf->upstream_keepalive_idle_timeout_ms;
    sl_upconn_t *u;
    while ((u = TAILQ_LAST(&w->idle, sl_upconn_head)) && u->idle_since + ttl <= now)
        upconn_close(u);
}

static void on_idle_read(struct bufferevent *bev, void *arg)
{
    upconn_close(arg); /* unsolicited bytes on an idle connection: unusable */
}

/* Puts a connection whose last exchange ended cleanly into the pool. */
static void upconn_release(sl_upconn_t *u)
{
    sl_worker_t *w = u->w;
    const sl_dp_conf_t *conf = w->conf;
    if (w->draining || conf->upstream_keepalive_pool_size == 0 ||
        (conf->upstream_keepalive_max_requests &&
         u->nreq >= conf->upstream_keepalive_max_requests) ||
        evbuffer_get_length(bufferevent_get_input(u->bev)) > 0) {
        upconn_close(u);
        return;
    }
    if (w->nidle >= conf->upstream_keepalive_pool_size)
        upconn_close(TAILQ_LAST(&w->idle, sl_upconn_head));
    /* The connection keeps its read/write timeouts (changing them costs event
     * operations on every request); idle expiry is the pool sweep's job. */
    bufferevent_setcb(u->bev, on_idle_read, NULL, on_idle_event, u);
    u->idle_since = sl_now_ms();
    TAILQ_INSERT_HEAD(&w->idle, u, link);
    u->in_pool = true;
    w->nidle++;
}

void sl_upstream_pool_close_all(sl_worker_t *w)
{
    sl_upconn_t *u;
    while ((u = TAILQ_FIRST(&w->idle)))
        upconn_close(u);
}

/* An idle connection to addr made the same way: plain, or TLS with the same
 * name and the same context (what its certificate was checked against; the
 * connection's SSL holds a reference to it, so the pointer stays valid). */
static sl_upconn_t *pool_take(sl_worker_t *w, const struct sockaddr_storage *addr, socklen_t len,
                              SSL_CTX *tls_ctx, const char *sni)
{
    sl_upconn_t *u;
    TAILQ_FOREACH(u, &w->idle, link)
    {
        if (same_addr(&u->addr, u->addrlen, addr, len) && u->tls == (tls_ctx != NULL) &&
            (!tls_ctx || (!strcmp(u->sni, sni) &&
                          SSL_get_SSL_CTX(bufferevent_openssl_get_ssl(u->bev)) == tls_ctx))) {
            TAILQ_REMOVE(&w->idle, u, link);
            u->in_pool = false;
            w->nidle--;
            return u;
        }
    }
    return NULL;
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    sl_upconn_t *u = arg;
    on_up_event(u->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_WRITING, u);
}

/* Sends the request head (and whatever body is buffered) on u. May finish
 * and free r (a bad chunked body): callers must not touch r afterwards. */
static void attach_upstream(sl_req_t *r, sl_upconn_t *u)
{
    const sl_service_t *s = r->svc;
    r->up = u;
    u->req = r;
    u->nreq++;
    bufferevent_setcb(u->bev, on_up_read, on_up_write, on_up_event, u);
    if (u->rt_ms != s->read_timeout_ms || u->wt_ms != s->write_timeout_ms) {
        struct timeval rt = ms_tv(s->read_timeout_ms), wt = ms_tv(s->write_timeout_ms);
        bufferevent_set_timeouts(u->bev, &rt, &wt);
        u->rt_ms = s->read_timeout_ms;
        u->wt_ms = s->write_timeout_ms;
    }
    bufferevent_enable(u->bev, EV_READ);
    evbuffer_add(bufferevent_get_output(u->bev), r->uphead, r->uphead_len);
    /* A body read whole for the plugins is copied after the head on every
     * attempt: it can be sent again on a retry. */
    if (r->body_buffered && evbuffer_get_length(r->body_buf))
        evbuffer_add(bufferevent_get_output(u->bev), evbuffer_pullup(r->body_buf, -1),
                     evbuffer_get_length(r->body_buf));
    pump_request_body(r);
}

static void fail_upstream(sl_req_t *r, int status, const char *message)
{
    if (r->up) {
        r->up->req = NULL;
        upconn_close(r->up);
        r->up = NULL;
    }
    if (r->resp_head_done && !r->resp_hold) {
        /* Part of the response is out: the only honest signal left is to
         * close the client connection mid-body. */
        r->client_close = true;
        conn_close(r->c);
        return;
    }
    send_json(r->c, r, status, message, NULL, false);
}

static void on_address(int rc, const struct sockaddr *sa, socklen_t len, void *arg)
{
    sl_req_t *r = arg;
    sl_worker_t *w = r->c->w;
    r->dns = NULL;
    if (rc != SL_OK) {
        send_json(r->c, r, 503, "name resolution failed", NULL, false);
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, sa, len);
    /* TLS to the upstream: the service's protocol, or a plugin's choice. SNI
     * is the host connected to, unless it is an IP address. */
    bool tls = r->up_scheme ? r->up_scheme > 0 : r->svc->https;
    const char *host = r->target_host.p ? r->target_host.p : r->svc->host;
    struct in6_addr ip;
    bool named = inet_pton(AF_INET, host, &ip) != 1 && inet_pton(AF_INET6, host, &ip) != 1;
    const char *sni = tls && named ? host : "";
    SSL_CTX *ctx = !tls ? NULL : r->svc->tls_ctx ? r->svc->tls_ctx : sl_tls_upstream_ctx();
    sl_upconn_t *u = pool_take(w, &ss, len, ctx, sni);
    if (u) {
        attach_upstream(r, u);
        return;
    }
    u = sl_xcalloc(1, sizeof(*u));
    u->w = w;
    u->addr = ss;
    u->addrlen = len;
    if (tls) {
        SSL *ssl = ctx ? SSL_new(ctx) : NULL;
        if (ssl) {
            u->tls = true;
            snprintf(u->sni, sizeof(u->sni), "%s", sni);
            if (*sni)
                SSL_set_tlsext_host_name(ssl, sni);
            if (r->svc->tls_ctx)
                SSL_set1_host(ssl, host); /* tls_verify: the certificate names the host */
            u->bev = bufferevent_openssl_socket_new(w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
            if (u->bev)
                bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
            else
                SSL_free(ssl);
        }
    } else {
        u->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!u->bev) {
        free(u);
        send_json(r->c, r, 502, "An invalid response was received from the upstream server", NULL,
                  false);
        return;
    }
    bufferevent_disable(u->bev, EV_WRITE); /* see flush_out */
    bufferevent_setwatermark(u->bev, EV_WRITE, SL_BUF_LOW, 0);
    u->timer = evtimer_new(w->base, on_connect_timeout, u);
    atomic_fetch_add_explicit(&w->metrics->upstream_connects, 1, memory_order_relaxed);
    if (bufferevent_socket_connect(u->bev, (struct sockaddr *)&u->addr, (int)u->addrlen) != 0) {
        /* Immediate failure (e.g. no route to host): like a refused connect. */
        SL_INFO("worker %d: cannot connect to upstream %s: %s", w->id, r->svc->host,
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        upconn_close(u);
        retry_or_fail(r, false, false, false);
        return;
    }
    struct timeval ct = ms_tv(r->svc->connect_timeout_ms);
    evtimer_add(u->timer, &ct);
    attach_upstream(r, u); /* last: it may finish r */
}

static void connect_upstream(sl_req_t *r)
{
    const sl_service_t *s = r->svc;
    sl_worker_t *w = r->c->w;
    r->tries++;
    if (r->target_host.p) {
        /* kong.service.set_target: this host and port, for every try. */
        struct sockaddr_storage ss;
        socklen_t len = 0;
        memset(&ss, 0, sizeof(ss));
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, r->target_host.p, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(r->target_port);
            len = sizeof(*v4);
        } else if (inet_pton(AF_INET6, r->target_host.p, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(r->target_port);
            len = sizeof(*v6);
        }
        if (len)
            on_address(SL_OK, (const struct sockaddr *)&ss, len, r);
        else
            sl_dns_resolve(w, r->target_host.p, r->target_port, on_address, r, &r->dns);
        return;
    }
    if (s->upstream || r->pdk_upstream) {
        /* kong.service.set_upstream picks another upstream's targets. */
        const sl_upstream_t *u = r->pdk_upstream ? r->pdk_upstream : s->upstream;
        if (u->wheel_len == 0) {
            send_json(r->c, r, 503, "failure to get a peer from the ring-balancer", NULL, false);
            return;
        }
        unsigned idx = u->wheel[(w->reqid_counter + (unsigned)r->tries) % u->wheel_len];
        const sl_target_t *t = &u->targets[idx];
        if (t->is_ip)
            on_address(SL_OK, (const struct sockaddr *)&t->addr, t->addrlen, r);
        else
            sl_dns_resolve(w, t->host, t->port, on_address, r, &r->dns);
        return;
    }
    if (s->host_is_ip)
        on_address(SL_OK, (const struct sockaddr *)&s->addr, s->addrlen, r);
    else
        sl_dns_resolve(w, s->host, s->port, on_address, r, &r->dns);
}

/*
 * After an upstream connection failed (it is already closed): replays the
 * request on a new connection when that is safe, or answers 502/504.
 */
static void retry_or_fail(sl_req_t *r, bool was_connected, bool reused, bool timeout)
{
    if (r->resp_head_done) {
        fail_upstream(r, 502, "An invalid response was received from the upstream server");
        return;
    }
    /* A pooled connection the upstream had already closed: replay on a fresh
     * one when nothing of the body is gone (no silent replay of a partly sent
     * body). */
    if (reused && !r->resp_started && !r->body_forwarded && !timeout) {
        r->tries--;
        connect_upstream(r);
        return;
    }
    if (!was_connected && !r->body_forwarded && r->tries <= r->svc->retries) {
        SL_INFO("worker %d: upstream connect %s (try %d of %d), retrying", r->c->w->id,
                timeout ? "timed out" : "failed", r->tries, r->svc->retries + 1);
        connect_upstream(r);
        return;
    }
    if (timeout)
        fail_upstream(r, 504, "The upstream server is timed out");
    else
        fail_upstream(r, 502, "An invalid response was received from the upstream server");
}

static void upstream_failed(sl_req_t *r, short what)
{
    sl_upconn_t *u = r->up;
    bool was_connected = u->connected;
    bool reused = u->nreq > 1;
    r->up = NULL;
    u->req = NULL;
    upconn_close(u);
    retry_or_fail(r, was_connected, reused, what & BEV_EVENT_TIMEOUT);
}

/* ------------------------------------------------------------ body pumping */

/* Feeds the chunked decoder with up to max bytes at the front of buf without
 * removing them; returns how many belong to the body and sets *done. */
static int chunked_scan(sl_h1_chunked_t *st, struct evbuffer *buf, size_t *n, bool *done,
                        sl_h1_data_cb cb, void *ud, sl_h1_error_t *err)
{
    struct evbuffer_iovec vec[16];
    int nv = evbuffer_peek(buf, -1, NULL, vec, 16);
    *n = 0;
    *done = false;
    for (int i = 0; i < nv && i < 16; i++) {
        size_t used = 0;
        int rc = sl_h1_chunked_feed(st, vec[i].iov_base, vec[i].iov_len, &used, cb, ud, err);
        *n += used;
        if (rc == SL_OK) {
            *done = true;
            return SL_OK;
        }
        if (rc != SL_AGAIN)
            return rc;
    }
    return SL_AGAIN;
}

/*
 * Moves buffered request body bytes from the client to the upstream.
 * Returns SL_OK, or SL_DONE when a framing error made it answer and finish
 * the request (r is freed then).
 */
static int pump_request_body(sl_req_t *r)
{
    if (!r->up)
        return SL_OK;
    if (r->body_buffered) { /* went out with the head (attach_upstream) */
        if (r->up->connected)
            flush_out(r->up->bev);
        return SL_OK;
    }
    if (r->body_done) {
        if (r->up->connected)
            flush_out(r->up->bev);
        return SL_OK;
    }
    sl_conn_t *c = r->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(r->up->bev);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) {
        if (r->up->connected)
            flush_out(r->up->bev); /* the head */
        return SL_OK;
    }
    if (r->body_kind == B_LENGTH) {
        size_t n = (size_t)SL_MIN((uint64_t)avail, r->body_left);
        evbuffer_remove_buffer(in, out, n);
        r->bytes_in += n;
        r->body_left -= n;
        r->body_forwarded = true;
        if (r->body_left == 0)
            r->body_done = true;
    } else if (r->body_kind == B_CHUNKED) {
        size_t n;
        bool done;
        sl_h1_error_t err = {0, NULL};
        int rc = chunked_scan(&r->chunk, in, &n, &done, NULL, NULL, &err);
        if (rc < 0) {
            /* The head is already upstream: the exchange cannot be saved. */
            SL_INFO("worker %d: client %s: bad chunked body: %s", c->w->id, c->peer_ip,
                    err.message ? err.message : "?");
            r->up->req = NULL;
            upconn_close(r->up);
            r->up = NULL;
            r->body_done = true; /* nothing more will be read */
            send_json(c, r, err.status ? err.status : 400,
                      err.message ? err.message : "Bad request", NULL, true);
            return SL_DONE;
        }
        evbuffer_remove_buffer(in, out, n);
        r->bytes_in += n;
        r->body_forwarded = true;
        if (done)
            r->body_done = true;
    }
    if (r->up->connected)
        flush_out(r->up->bev);
    if (r->body_done) {
        /* Stop the body timeout: we may now wait long for the upstream. */
        client_body_timeout(c, false);
        if (evbuffer_get_length(in) > SL_BUF_HIGH)
            bufferevent_disable(c->bev, EV_READ);
        return SL_OK;
    }
    if (evbuffer_get_length(out) >= SL_BUF_HIGH)
        bufferevent_disable(c->bev, EV_READ); /* resumed by on_up_write */
    else if (!(bufferevent_get_enabled(c->bev) & EV_READ))
        bufferevent_enable(c->bev, EV_READ);
    return SL_OK;
}

static void write_response_head(sl_req_t *r, const sl_h1_response_t *res)
{
    sl_conn_t *c = r->c;
    const sl_dp_conf_t *conf = c->w->conf;
    bool http10 = r->h.minor_version == 0;
    bool tunnel = res->status == 101 && r->upgrade;

    r->source = "service";
    bool holding = !r->resp_releasing && !(res->status == 101 && r->upgrade) && r->run.nran &&
                   sl_engine_chain_wants_response_body(r->run.chain);
    if (!holding)
        run_header_filter(r, res->status, res->headers, res->num_headers);
    r->status = res->status;
    r->up_keepalive = res->keep_alive;
    switch (res->body_kind) {
    case SL_H1_BODY_NONE:
        r->resp_kind = B_NONE;
        break;
    case SL_H1_BODY_LENGTH:
        r->resp_kind = res->content_length ? B_LENGTH : B_NONE;
        r->resp_left = res->content_length;
        break;
    case SL_H1_BODY_CHUNKED:
        r->resp_kind = B_CHUNKED;
        sl_h1_chunked_init(&r->rchunk, 0);
        if (http10) {
            r->resp_dechunk = true;
            r->client_close = true;
        }
        break;
    case SL_H1_BODY_EOF:
        r->resp_kind = B_EOF;
        r->client_close = true;
        break;
    }

    if (!r->resp_releasing && !tunnel && r->run.nran &&
        sl_engine_chain_wants_response_body(r->run.chain)) {
        hold_response(r, res);
        return;
    }

    char storage[4096];
    sl_sb_t b;
    sl_sb_init(&b, storage, sizeof(storage));
    sl_sb_addlit(&b, "HTTP/1.1 ");
    if (r->filter_status && !tunnel) {
        /* kong.response.set_status in header_filter */
        r->status = r->filter_status;
        sl_sb_addu(&b, (uint64_t)r->filter_status);
        sl_sb_addlit(&b, " ");
        sl_sb_adds(&b, reason_phrase(r->filter_status));
    } else {
        sl_sb_addu(&b, (uint64_t)res->status);
        sl_sb_addlit(&b, " ");
        sl_sb_addstr(&b, res->reason);
    }
    sl_sb_addlit(&b, "\r\n");
    bool has_server = false, any_via = false;
    bool conn_fields = connection_names_fields(res->headers, res->num_headers);
    size_t via_first = res->num_headers;
    for (size_t i = 0; i < res->num_headers; i++) {
        const sl_h1_header_t *h = &res->headers[i];
        enum hdr_id id = hdr_id(h->name);
        if (id == H_VIA && via_first == res->num_headers)
            via_first = i;
        if ((HBIT(id) & (HOP_BY_HOP | HBIT(H_VIA))) ||
            (conn_fields && named_in_connection(res->headers, res->num_headers, h->name)))
            continue;
        if (r->resp_dechunk && id == H_CONTENT_LENGTH)
            continue;
        if (r->nresp_ops && !(id == H_CONTENT_LENGTH && res->body_kind == SL_H1_BODY_LENGTH) &&
            ops_replace(r, h->name))
            continue;
        if (id == H_SERVER)
            has_server = true;
        sl_sb_header(&b, h->name.p, h->name.len, h->value.p, h->value.len);
    }
    if (r->nresp_ops)
        add_op_headers(&b, r, false);
    if (r->resp_kind == B_CHUNKED && !r->resp_dechunk)
        sl_sb_addlit(&b, "Transfer-Encoding: chunked\r\n");
    if (tunnel) {
        const sl_h1_header_t *up = find_hdr(res->headers, res->num_headers, "upgrade");
        if (up)
            SB_HDR(&b, "Upgrade", up->value.p, up->value.len);
        sl_sb_addlit(&b, "Connection: upgrade\r\n");
    } else if (r->client_close || c->draining) {
        r->client_close = true;
        sl_sb_addlit(&b, "Connection: close\r\n");
    } else if (http10) {
        sl_sb_addlit(&b, "Connection: keep-alive\r\n");
    }
    if (!has_server && conf->hdr_server_tokens)
        sl_sb_addlit(&b, "Server: " SL_SERVER_TOKEN "\r\n");
    /* Via: the upstream's, with this hop appended when server_tokens is on. */
    for (size_t i = via_first; i < res->num_headers; i++) {
        if (hdr_id(res->headers[i].name) == H_VIA) {
            if (any_via)
                sl_sb_addlit(&b, ", ");
            else
                sl_sb_addlit(&b, "Via: ");
            sl_sb_addstr(&b, res->headers[i].value);
            any_via = true;
        }
    }
    if (conf->hdr_server_tokens) {
        if (any_via)
            sl_sb_addlit(&b, ", 1.1 " SL_SERVER_TOKEN "\r\n");
        else
            sl_sb_addlit(&b, "Via: 1.1 " SL_SERVER_TOKEN "\r\n");
    } else if (any_via) {
        sl_sb_addlit(&b, "\r\n");
    }
    if (conf->hdr_latency_tokens) {
        sl_sb_addlit(&b, "X-Kong-Upstream-Latency: ");
        sl_sb_addu(&b, ms_between(r->t_sent, r->t_head));
        sl_sb_addlit(&b, "\r\nX-Kong-Proxy-Latency: ");
        sl_sb_addu(&b, ms_between(r->t_start, r->t_sent));
        sl_sb_addlit(&b, "\r\n");
    }
    if (conf->hdr_request_id) {
        sl_sb_addlit(&b, "X-Kong-Request-Id: ");
        sl_sb_add(&b, r->reqid, 32);
        sl_sb_addlit(&b, "\r\n");
    }
    sl_sb_addlit(&b, "\r\n");
    keep_head(r, b.p, b.len);
    evbuffer_add(bufferevent_get_output(c->bev), b.p, b.len);
    sl_sb_dispose(&b);
}

/* ------------------------------------- responses held for response plugins */

/* Keeps the upstream's head (copied: the input buffer is about to be
 * drained) and reads the body into r->resp_body, de-chunked. */
static void hold_response(sl_req_t *r, const sl_h1_response_t *res)
{
    r->resp_hold = true;
    r->resp_body = evbuffer_new();
    r->held_status = res->status;
    r->held_keepalive = res->keep_alive;
    r->held_reason =
        (sl_str_t){sl_arena_strndup(&r->arena, res->reason.p, res->reason.len), res->reason.len};
    r->held_headers = sl_arena_alloc(&r->arena, (res->num_headers + 1) * sizeof(sl_h1_header_t));
    for (size_t i = 0; i < res->num_headers; i++) {
        const sl_h1_header_t *h = &res->headers[i];
        r->held_headers[i] =
            (sl_h1_header_t){{sl_arena_strndup(&r->arena, h->name.p, h->name.len), h->name.len},
                             {sl_arena_strndup(&r->arena, h->value.p, h->value.len), h->value.len}};
    }
    r->nheld_headers = res->num_headers;
    if (r->resp_kind == B_CHUNKED)
        r->resp_dechunk = true;
}

/*
 * The whole upstream response is in: runs the response and body_filter
 * handlers, then writes the head (header_filter runs there) with the final
 * body's Content-Length, and the body.
 */
static void release_response(sl_req_t *r)
{
    r->resp_hold = false;
    /* The upstream has said everything: let its connection go before the
     * handlers (which may wait) run. */
    upstream_settle(r);
    r->status = r->held_status;
    r->resp_headers = r->held_headers;
    r->nresp_headers = r->nheld_headers;
    r->phase = SL_PHASE_RESPONSE;
    if (sl_engine_response(PDK(r), &r->run) == SL_PLUGIN_SUSPEND)
        return; /* sl_pdk_resume carries on */
    after_response(r);
}

/* Writes the response the response handlers left, and ends the request. */
static void after_response(sl_req_t *r)
{
    r->resp_headers = NULL;
    r->nresp_headers = 0;

    struct evbuffer *body = r->resp_new_body ? r->resp_new_body : r->resp_body;
    size_t len = evbuffer_get_length(body);
    int status = r->status_override ? r->status_override : r->held_status;
    bool head_req = sl_str_caseeq_lit(r->h.method, "HEAD");
    bool bodiless = head_req || status < 200 || status == 204 || status == 304;

    /* The head as the client gets it: the upstream's fields with the
     * framing of the final body. */
    sl_h1_header_t *hs = sl_arena_alloc(&r->arena, (r->nheld_headers + 1) * sizeof(*hs));
    size_t n = 0;
    for (size_t i = 0; i < r->nheld_headers; i++) {
        sl_str_t name = r->held_headers[i].name;
        if (!bodiless && (sl_str_caseeq_lit(name, "content-length") ||
                          sl_str_caseeq_lit(name, "transfer-encoding")))
            continue;
        hs[n++] = r->held_headers[i];
    }
    char cl[24];
    if (!bodiless) {
        int k = snprintf(cl, sizeof(cl), "%zu", len);
        hs[n++] = (sl_h1_header_t){SL_STR("Content-Length"), {cl, (size_t)k}};
    }
    sl_h1_response_t res = {
        .status = status,
        .reason = r->status_override
                      ? (sl_str_t){reason_phrase(status), strlen(reason_phrase(status))}
                      : r->held_reason,
        .headers = hs,
        .num_headers = n,
        .keep_alive = r->held_keepalive,
        .body_kind = bodiless ? SL_H1_BODY_NONE : SL_H1_BODY_LENGTH,
        .content_length = len,
    };
    bool dechunk = r->resp_dechunk;
    r->resp_dechunk = false; /* the held body is de-chunked already: keep its Content-Length */
    r->resp_releasing = true;
    write_response_head(r, &res);
    r->resp_releasing = false;
    r->resp_dechunk = dechunk;
    if (!bodiless && len) {
        evbuffer_add_buffer(bufferevent_get_output(r->c->bev), body);
        r->bytes_out += len;
    }
    flush_out(r->c->bev);
    finish_request(r);
}

static void on_dechunk_data(void *ud, const char *p, size_t n)
{
    evbuffer_add(ud, p, n);
}

/* Moves the response body; finishes the request at its end. Returns SL_OK,
 * or SL_DONE when the request was finished (or failed) and r is gone. */
static int pump_response_body(sl_req_t *r)
{
    sl_upconn_t *u = r->up;
    struct evbuffer *in = bufferevent_get_input(u->bev);
    struct evbuffer *out = r->resp_hold ? r->resp_body : bufferevent_get_output(r->c->bev);
    bool done = false;
    size_t before = evbuffer_get_length(out);

    switch (r->resp_kind) {
    case B_NONE:
        done = true;
        break;
    case B_LENGTH: {
        size_t n = (size_t)SL_MIN((uint64_t)evbuffer_get_length(in), r->resp_left);
        evbuffer_remove_buffer(in, out, n);
        r->resp_left -= n;
        done = r->resp_left == 0;
        break;
    }
    case B_CHUNKED: {
        size_t n;
        sl_h1_error_t err = {0, NULL};
        int rc = chunked_scan(&r->rchunk, in, &n, &done, r->resp_dechunk ? on_dechunk_data : NULL,
                              out, &err);
        if (rc < 0) {
            SL_WARN("worker %d: upstream sent a bad chunked body: %s", r->c->w->id,
                    err.message ? err.message : "?");
            fail_upstream(r, 502, "An invalid response was received from the upstream server");
            return SL_DONE;
        }
        if (r->resp_dechunk)
            evbuffer_drain(in, n);
        else
            evbuffer_remove_buffer(in, out, n);
        break;
    }
    case B_EOF:
        evbuffer_add_buffer(out, in);
        break;
    }
    if (r->resp_hold) {
        if (evbuffer_get_length(out) > r->c->w->conf->response_buffer_size) {
            SL_WARN("worker %d: upstream %s: response larger than response_buffer_size, which "
                    "the route's plugins need whole",
                    r->c->w->id, r->svc->host);
            fail_upstream(r, 502, "The upstream response is too large for the route's plugins");
            return SL_DONE;
        }
        if (!done)
            return SL_OK;
    } else {
        r->bytes_out += evbuffer_get_length(out) - before;
        flush_out(r->c->bev);
    }
    if (done) {
        if (evbuffer_get_length(in) > 0)
            r->up_keepalive = false; /* extra bytes after the response: not reusable */
        if (!r->body_done) {
            /* The upstream answered before reading the whole request body. */
            r->up_keepalive = false;
            r->client_close = true;
        }
        if (r->resp_hold)
            release_response(r); /* finishes the request, maybe later */
        else
            finish_request(r);
        return SL_DONE;
    }
    if (evbuffer_get_length(out) >= SL_BUF_HIGH)
        bufferevent_disable(u->bev, EV_READ); /* resumed by on_client_write */
    return SL_OK;
}

/* --------------------------------------------------------------- tunnels */

static void on_tunnel_up_read(struct bufferevent *bev, void *arg)
{
    sl_upconn_t *u = arg;
    sl_conn_t *c = u->tunnel_peer;
    if (!c)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= SL_BUF_HIGH)
        bufferevent_disable(bev, EV_READ);
}

static void on_tunnel_up_write(struct bufferevent *bev, void *arg)
{
    sl_upconn_t *u = arg;
    if (u->tunnel_peer)
        bufferevent_enable(u->tunnel_peer->bev, EV_READ);
}

static void on_tunnel_up_event(struct bufferevent *bev, short what, void *arg)
{
    sl_upconn_t *u = arg;
    sl_conn_t *c = u->tunnel_peer;
    if (!c)
        return;
    /* Flush what the upstream sent, then close the client side. */
    evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(bev));
    c->tunnel = NULL;
    upconn_close(u);
    c->state = C_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    on_client_write(c->bev, c);
}

static void start_tunnel(sl_req_t *r)
{
    sl_conn_t *c = r->c;
    sl_upconn_t *u = r->up;
    r->up = NULL;
    u->req = NULL;
    u->tunnel_peer = c;
    c->tunnel = u;
    log_request(r);
    c->req = NULL;
    req_free(r);
    c->state = C_TUNNEL;
    bufferevent_setcb(u->bev, on_tunnel_up_read, on_tunnel_up_write, on_tunnel_up_event, u);
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    c->body_timeout = false;
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* Bytes that arrived with the head on either side. */
    struct evbuffer *cin = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(cin))
        evbuffer_add_buffer(bufferevent_get_output(u->bev), cin);
    if (evbuffer_get_length(bufferevent_get_input(u->bev)))
        on_tunnel_up_read(u->bev, u);
}

/* ------------------------------------------------------ upstream callbacks */

static void on_up_read(struct bufferevent *bev, void *arg)
{
    sl_upconn_t *u = arg;
    sl_req_t *r = u->req;
    if (!r) {
        upconn_close(u);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(bev);
    sl_worker_t *w = u->w;
    r->resp_started = true;
    while (!r->resp_head_done) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        size_t want = SL_MIN(avail, (size_t)w->conf->max_header_size + 1);
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        sl_h1_limits_t lim = {.max_request_line = w->conf->max_header_size,
                              .max_header_block = w->conf->max_header_size,
                              .max_headers = w->conf->max_headers};
        sl_h1_response_t res;
        sl_h1_error_t err = {0, NULL};
        size_t consumed = 0;
        res.headers = w->scratch_headers;
        bool head_req = r->h.method.len == 4 && !memcmp(r->h.method.p, "HEAD", 4);
        int rc = sl_h1_parse_response(buf, want, &lim, head_req, &res, &consumed, &err);
        if (rc == SL_AGAIN)
            return;
        if (rc != SL_OK) {
            SL_WARN("worker %d: upstream %s sent an invalid response head: %s", w->id, r->svc->host,
                    err.message ? err.message : "?");
            fail_upstream(r, 502, "An invalid response was received from the upstream server");
            return;
        }
        if (res.status >= 100 && res.status < 200 && res.status != 101) {
            evbuffer_drain(in, consumed); /* interim responses are not forwarded */
            continue;
        }
        if (res.status == 101 && !r->upgrade) {
            fail_upstream(r, 502, "An invalid response was received from the upstream server");
            return;
        }
        r->t_head = sl_now_us();
        write_response_head(r, &res);
        evbuffer_drain(in, consumed);
        r->resp_head_done = true;
        if (res.status == 101) {
            if (!r->body_done) {
                /* Everything after the head now belongs to the tunnel. */
                r->body_done = true;
            }
            start_tunnel(r);
            return;
        }
        /* Waiting for the body now: the read timeout keeps guarding it. */
    }
    pump_response_body(r);
}

static void on_up_write(struct bufferevent *bev, void *arg)
{
    sl_upconn_t *u = arg;
    sl_req_t *r = u->req;
    write_idle(bev);
    if (!r || r->body_done)
        return;
    bufferevent_enable(r->c->bev, EV_READ);
    pump_request_body(r);
}

static void on_up_event(struct bufferevent *bev, short what, void *arg)
{
    sl_upconn_t *u = arg;
    sl_req_t *r = u->req;
    if (what & BEV_EVENT_CONNECTED) {
        u->connected = true;
        if (u->timer)
            evtimer_del(u->timer);
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        flush_out(bev);
        /* What piled up while connecting (a body that came in while an
         * access plugin waited, reading from the client stopped) may have
         * gone out whole: then no write event comes to resume the client. */
        if (!(bufferevent_get_enabled(bev) & EV_WRITE))
            on_up_write(bev, u);
        return;
    }
    if (!r) {
        upconn_close(u);
        return;
    }
    if (what & BEV_EVENT_EOF && r->resp_head_done) {
        /* Drain what arrived with the close. */
        if (pump_response_body(r) == SL_DONE)
            return;
        if (r->resp_kind == B_EOF) {
            r->up_keepalive = false;
            if (r->resp_hold)
                release_response(r);
            else
                finish_request(r);
            return;
        }
        SL_WARN("worker %d: upstream %s closed the connection mid-response", u->w->id,
                r->svc->host);
        fail_upstream(r, 502, "upstream prematurely closed connection");
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && u->connected && r->resp_head_done) {
        SL_WARN("worker %d: upstream %s timed out mid-response", u->w->id, r->svc->host);
        fail_upstream(r, 504, "The upstream server is timed out");
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && u->connected) {
        fail_upstream(r, 504, "The upstream server is timed out");
        return;
    }
    if (!u->connected) {
        /* Over TLS, the handshake's error says more than errno. */
        unsigned long tls_err = u->tls ? bufferevent_get_openssl_error(bev) : 0;
        char why[256];
        if (tls_err)
            ERR_error_string_n(tls_err, why, sizeof(why));
        SL_INFO("worker %d: cannot connect to upstream %s: %s", u->w->id, r->svc->host,
                (what & BEV_EVENT_TIMEOUT) ? "timed out"
                : tls_err                  ? why
                                           : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    upstream_failed(r, what);
}

/* -------------------------------------------------------- client callbacks */

static void on_client_read(struct bufferevent *bev, void *arg)
{
    sl_conn_t *c = arg;
    switch (c->state) {
    case C_IDLE:
    case C_HEAD:
        conn_resume(c);
        break;
    case C_BUSY:
        if (c->req && c->req->buffering) {
            buffer_request_body(c->req);
        } else if (c->req && !c->req->body_done && c->req->up) {
            pump_request_body(c->req);
        } else if (evbuffer_get_length(bufferevent_get_input(bev)) > SL_BUF_HIGH) {
            /* Pipelined requests pile up while one is served: stop reading. */
            bufferevent_disable(bev, EV_READ);
        }
        break;
    case C_TUNNEL:
        if (c->tunnel) {
            struct evbuffer *out = bufferevent_get_output(c->tunnel->bev);
            evbuffer_add_buffer(out, bufferevent_get_input(bev));
            if (evbuffer_get_length(out) >= SL_BUF_HIGH)
                bufferevent_disable(bev, EV_READ);
        }
        break;
    case C_CLOSING:
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        break;
    }
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
    sl_conn_t *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (c->state == C_CLOSING) {
        flush_out(bev);
        if (evbuffer_get_length(out) == 0) {
            /* Half-close first so the client reads the whole response before
             * it sees the reset a close with unread input would cause (over
             * TLS, after the close_notify alert). */
            SSL *ssl = bufferevent_openssl_get_ssl(bev);
            if (ssl)
                SSL_shutdown(ssl);
            if (bufferevent_getfd(bev) >= 0)
                shutdown(bufferevent_getfd(bev), SHUT_WR);
            conn_close(c);
        }
        return;
    }
    if (c->state == C_TUNNEL) {
        /* Tunnels keep their write events on: libevent relays the bytes. */
        if (c->tunnel)
            bufferevent_enable(c->tunnel->bev, EV_READ);
        return;
    }
    write_idle(bev);
    if (c->state == C_BUSY && c->req && c->req->up && c->req->resp_head_done) {
        sl_req_t *r = c->req;
        bufferevent_enable(r->up->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(r->up->bev)))
            pump_response_body(r);
    }
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
    sl_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* a TLS handshake completed */
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->state == C_BUSY && c->req && !c->req->body_done && (what & BEV_EVENT_READING)) {
            SL_INFO("worker %d: client %s: request body timed out", c->w->id, c->peer_ip);
            sl_req_t *r = c->req;
            if (!r->resp_head_done && r->up) {
                r->up->req = NULL;
                upconn_close(r->up);
                r->up = NULL;
                send_json(c, r, 408, "Request timeout", NULL, true);
                return;
            }
        }
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* A client that half-closes after sending its request still wants the
         * answer (HTTP/1.0 tools do this); anything else is a departure. */
        if (c->state == C_BUSY && c->req && c->req->body_done) {
            c->req->client_close = true;
            bufferevent_disable(bev, EV_READ);
            return;
        }
        if (c->state == C_TUNNEL && c->tunnel) {
            shutdown(bufferevent_getfd(c->tunnel->bev), SHUT_WR);
            bufferevent_disable(bev, EV_READ);
            return;
        }
    }
    conn_close(c);
}
