/*
 * status.c owns the status listener: a small evhttp server on the main
 * thread's event base. It reads the workers' metrics (relaxed atomics, no
 * locks) and the published generation; it never touches a worker's loop.
 */
#include "status.h"
#include "cluster_dp.h"
#include "dp_conf.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdatomic.h>

struct sl_status_s {
    struct evhttp *http;
    sl_worker_t **workers;
    int nworkers;
    bool draining;
};

static void reply(struct evhttp_request *req, int code, const char *ctype, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Server", SL_SERVER_TOKEN);
    evhttp_send_reply(req, code,
                      code == 200   ? "OK"
                      : code == 404 ? "Not Found"
                                    : "Unavailable",
                      body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    sl_status_t *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evhttp_uri *parsed = evhttp_uri_parse(uri);
    const char *path = parsed ? evhttp_uri_get_path(parsed) : NULL;
    struct evbuffer *body = evbuffer_new();
    sl_gen_t *g = sl_gen_acquire();
    const char *hash = g ? g->hash : "00000000000000000000000000000000";

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(body, "{\"message\":\"Method not allowed\"}\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/json");
        evhttp_send_reply(req, 405, "Method Not Allowed", body);
    } else if (path && !strcmp(path, "/status")) {
        uint64_t accepted = 0, total = 0;
        int64_t active = 0;
        for (int i = 0; i < s->nworkers; i++) {
            sl_metrics_t *m = s->workers[i]->metrics;
            accepted += atomic_load_explicit(&m->connections_accepted, memory_order_relaxed);
            active += atomic_load_explicit(&m->connections_active, memory_order_relaxed);
            total += atomic_load_explicit(&m->requests_total, memory_order_relaxed);
        }
        evbuffer_add_printf(body,
                            "{\"server\":{\"connections_active\":%lld,\"connections_accepted\":%"
                            "llu,\"connections_handled\":%llu,\"total_requests\":%llu},"
                            "\"configuration_hash\":\"%s\",\"configuration_version\":%llu,"
                            "\"workers\":%d,\"version\":\"%s\"",
                            (long long)active, (unsigned long long)accepted,
                            (unsigned long long)accepted, (unsigned long long)total, hash,
                            (unsigned long long)(g ? g->version : 0), s->nworkers, SL_VERSION);
        sl_dp_cluster_status(body);
        evbuffer_add_printf(body, "}\n");
        reply(req, 200, "application/json; charset=utf-8", body);
    } else if (path && !strcmp(path, "/status/ready")) {
        if (s->draining) {
            evbuffer_add_printf(body, "{\"message\":\"draining\"}\n");
            reply(req, 503, "application/json; charset=utf-8", body);
        } else if (!sl_gen_ready()) {
            evbuffer_add_printf(body,
                                "{\"message\":\"no configuration available (empty configuration "
                                "present)\"}\n");
            reply(req, 503, "application/json; charset=utf-8", body);
        } else {
            evbuffer_add_printf(body, "{\"message\":\"ready\"}\n");
            reply(req, 200, "application/json; charset=utf-8", body);
        }
    } else if (path && !strcmp(path, "/metrics")) {
        sl_metrics_t *all[256];
        int n = s->nworkers < 256 ? s->nworkers : 256;
        for (int i = 0; i < n; i++)
            all[i] = s->workers[i]->metrics;
        sl_metrics_render(all, n, hash, body);
        if (sl_prometheus_render)
            sl_prometheus_render(g, all, n, body);
        reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", body);
    } else {
        evbuffer_add_printf(body, "{\"message\":\"Not found\"}\n");
        reply(req, 404, "application/json; charset=utf-8", body);
    }
    sl_gen_unref(g);
    evbuffer_free(body);
    if (parsed)
        evhttp_uri_free(parsed);
}

sl_status_t *sl_status_new(struct event_base *base, int fd, sl_worker_t **workers, int nworkers)
{
    sl_status_t *s = sl_xcalloc(1, sizeof(*s));
    s->workers = workers;
    s->nworkers = nworkers;
    s->http = evhttp_new(base);
    if (!s->http || !evhttp_accept_socket_with_handle(s->http, fd)) {
        if (s->http)
            evhttp_free(s->http);
        free(s);
        return NULL;
    }
    evhttp_set_timeout(s->http, 10);
    evhttp_set_max_headers_size(s->http, 16384);
    evhttp_set_max_body_size(s->http, 4096);
    evhttp_set_gencb(s->http, on_request, s);
    return s;
}

void sl_status_set_draining(sl_status_t *s)
{
    s->draining = true;
}

void sl_status_free(sl_status_t *s)
{
    if (!s)
        return;
    evhttp_free(s->http);
    free(s);
}
