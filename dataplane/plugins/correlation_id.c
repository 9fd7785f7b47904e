/*
 * correlation_id.c is the correlation-id plugin (Kong 3.10's
 * kong/plugins/correlation-id): it gives every request an id in a header
 * (config.header_name, Kong-Request-ID by default), keeping one the client
 * sent, and with echo_downstream returns it in the response.
 *
 * Generators, as Kong's:
 *   uuid          a random version-4 UUID per request;
 *   uuid#counter  a UUID drawn once per worker, '#', and that worker's
 *                 request counter (1, 2, ...), shared by every instance;
 *   tracker       server address, server port, process id, connection
 *                 serial number, the request's number on its connection and
 *                 the time in seconds with milliseconds, joined by '-'.
 *
 * Kong keeps the worker UUID and counter per nginx worker process; here a
 * worker is a thread, so they are thread-local and need no lock. The conf
 * is read-only once configure() returns.
 */
#include "h1_parser.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"
#include "uuid.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum generator { GEN_UUID, GEN_UUID_COUNTER, GEN_TRACKER };

struct correlation_conf {
    char *header_name; /* owned */
    enum generator generator;
    bool echo_downstream;
};

/* The worker's uuid#counter state: drawn on the worker's first use. */
static _Thread_local char worker_uuid[SL_UUID_STRLEN + 1];
static _Thread_local uint64_t worker_counter;

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void dispose(void *p)
{
    struct correlation_conf *c = p;
    if (!c)
        return;
    free(c->header_name);
    free(c);
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    if (!json_is_object(config)) {
        snprintf(err, errlen, "config: expected an object");
        return NULL;
    }
    const json_t *name = json_object_get(config, "header_name");
    const json_t *gen = json_object_get(config, "generator");
    const json_t *echo = json_object_get(config, "echo_downstream");
    const char *name_s = "Kong-Request-ID";
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) ||
            !sl_h1_is_token(json_string_value(name), json_string_length(name))) {
            snprintf(err, errlen, "config.header_name: expected a header name (an HTTP token)");
            return NULL;
        }
        name_s = json_string_value(name);
    }
    enum generator g = GEN_UUID_COUNTER;
    if (gen && !json_is_null(gen)) {
        const char *s = json_is_string(gen) ? json_string_value(gen) : "";
        if (!strcmp(s, "uuid"))
            g = GEN_UUID;
        else if (!strcmp(s, "uuid#counter"))
            g = GEN_UUID_COUNTER;
        else if (!strcmp(s, "tracker"))
            g = GEN_TRACKER;
        else {
            snprintf(err, errlen, "config.generator: expected one of: uuid, uuid#counter, tracker");
            return NULL;
        }
    }
    if (echo && !json_is_null(echo) && !json_is_boolean(echo)) {
        snprintf(err, errlen, "config.echo_downstream: expected a boolean");
        return NULL;
    }
    struct correlation_conf *c = sl_xcalloc(1, sizeof *c);
    c->header_name = sl_xstrdup(name_s);
    c->generator = g;
    c->echo_downstream = echo && json_is_true(echo);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Generators                                                                */

/* A new id for this request, in its arena. */
static const char *generate(sl_pdk_t *p, const struct correlation_conf *c)
{
    char buf[256];
    switch (c->generator) {
    case GEN_UUID:
        sl_uuid_v4(buf);
        break;
    case GEN_UUID_COUNTER:
        if (!worker_uuid[0])
            sl_uuid_v4(worker_uuid);
        snprintf(buf, sizeof buf, "%s#%" PRIu64, worker_uuid, ++worker_counter);
        break;
    case GEN_TRACKER: {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double now = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
        snprintf(buf, sizeof buf, "%s-%d-%d-%" PRIu64 "-%" PRIu64 "-%0.3f",
                 sl_pdk_server_get_addr(p), sl_pdk_request_get_port(p), (int)getpid(),
                 sl_pdk_connection_serial(p), sl_pdk_connection_requests(p), now);
        break;
    }
    }
    return sl_pdk_strndup(p, buf, strlen(buf));
}

/* ------------------------------------------------------------------------ */
/* Phases                                                                    */

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct correlation_conf *c = conf;
    sl_str_t v;
    const char *id;
    if (sl_pdk_request_get_header(p, c->header_name, &v) && v.len > 0) {
        id = sl_pdk_strndup(p, v.p, v.len);
    } else {
        id = generate(p, c);
        sl_pdk_service_request_set_header(p, c->header_name, id);
    }
    if (c->echo_downstream)
        *sl_pdk_ctx_plugin(p) = (void *)id;
    return SL_PLUGIN_CONTINUE;
}

/* With echo_downstream, the id goes back to the client; when access did not
 * run (the request ended before it), the request's header or a new id. */
static void on_header_filter(sl_pdk_t *p, void *conf)
{
    const struct correlation_conf *c = conf;
    if (!c->echo_downstream)
        return;
    const char *id = *sl_pdk_ctx_plugin(p);
    sl_str_t v;
    if (!id && sl_pdk_request_get_header(p, c->header_name, &v) && v.len > 0)
        id = sl_pdk_strndup(p, v.p, v.len);
    if (!id)
        id = generate(p, c);
    sl_pdk_response_set_header(p, c->header_name, id);
}

const sl_native_plugin_t sl_plugin_correlation_id = {
    .name = "correlation-id",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
    .header_filter = on_header_filter,
};
