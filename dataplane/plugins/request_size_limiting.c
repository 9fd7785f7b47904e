/*
 * request-size-limiting: refuses request bodies larger than
 * config.allowed_payload_size (in config.size_unit: megabytes, kilobytes or
 * bytes, powers of 1024), as Kong 3.10's
 * kong/plugins/request-size-limiting/handler.lua does.
 *
 * A request with a Content-Length is judged by it. Over the limit the
 * answer is Kong's kong.response.error 413 "Request size limit exceeded", or
 * 417 with the same message when the client sent "Expect: 100-continue".
 * Without a Content-Length, config.require_content_length refuses anything
 * but a chunked body with 411 "A valid Content-Length header is required"
 * (a bodiless GET included, as in Kong); otherwise the body itself is
 * measured: a chunked body by its de-chunked length.
 *
 * Measuring a chunked body needs the body read before the access phase,
 * which the proxy does only for routes whose plugins ask for it
 * (wants_body), and then for every request of the route, with or without a
 * Content-Length, up to client_body_buffer_size (default 1m): a larger body
 * gets the proxy's own 413 before any plugin runs. That is only right when
 * this plugin would refuse such a body anyway, i.e. when its limit is below
 * the buffer, so an instance asks for the body only when its limit is below
 * BUFFERED_LIMIT_MAX (the default client_body_buffer_size; a data plane
 * configured with a smaller buffer has the gap between the two). Instances
 * with a larger limit (the default, 128 megabytes, among them) do not, and
 * keep the earlier behaviour for the body they cannot measure: a chunked
 * body is refused with 411 "A valid Content-Length header is required",
 * because letting it through would make the limit trivially avoidable.
 *
 * Two consequences of reading the body before access, for instances that
 * do: a request whose Content-Length is over the limit is answered once its
 * body has arrived rather than from the head alone, and a client that sent
 * "Expect: 100-continue" gets "100 Continue" from the proxy before the 417.
 *
 * configure() and dispose() run on the thread that builds a generation;
 * access() runs on any worker with a read-only conf.
 */
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest limit for which the body is read before access: the
 * default client_body_buffer_size (dp_conf.c). */
#define BUFFERED_LIMIT_MAX (1024 * 1024)

struct conf {
    uint64_t max_bytes; /* allowed_payload_size * unit, saturated */
    bool require_content_length;
};

static void dispose(void *p)
{
    free(p);
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t factor;
    } units[] = {{"megabytes", 1048576}, {"kilobytes", 1024}, {"bytes", 1}};

    const json_t *size = json_object_get(config, "allowed_payload_size");
    json_int_t n = 128;
    if (size && !json_is_null(size)) {
        if (!json_is_integer(size) || json_integer_value(size) < 0) {
            snprintf(err, errlen, "config.allowed_payload_size: expected a non-negative integer");
            return NULL;
        }
        n = json_integer_value(size);
    }
    const json_t *unit = json_object_get(config, "size_unit");
    uint64_t factor = 1048576;
    if (unit && !json_is_null(unit)) {
        const char *u = json_string_value(unit);
        size_t i = 0;
        while (u && i < SL_ARRAY_LEN(units) && strcmp(units[i].name, u) != 0)
            i++;
        if (!u || i == SL_ARRAY_LEN(units)) {
            snprintf(err, errlen, "config.size_unit: expected one of: megabytes, kilobytes, bytes");
            return NULL;
        }
        factor = units[i].factor;
    }
    const json_t *req = json_object_get(config, "require_content_length");
    if (req && !json_is_null(req) && !json_is_boolean(req)) {
        snprintf(err, errlen, "config.require_content_length: expected a boolean");
        return NULL;
    }

    struct conf *c = sl_xcalloc(1, sizeof(*c));
    c->max_bytes = (uint64_t)n > UINT64_MAX / factor ? UINT64_MAX : (uint64_t)n * factor;
    c->require_content_length = json_is_true(req);
    return c;
}

/* Kong's check: Expect, stripped and lower-cased, is "100-continue". */
static bool expects_continue(sl_pdk_t *p)
{
    sl_str_t v;
    if (!sl_pdk_request_get_header(p, "expect", &v))
        return false;
    while (v.len && isspace((unsigned char)v.p[0])) {
        v.p++;
        v.len--;
    }
    while (v.len && isspace((unsigned char)v.p[v.len - 1]))
        v.len--;
    return sl_str_caseeq_lit(v, "100-continue");
}

static int too_large(sl_pdk_t *p)
{
    return sl_pdk_response_error(p, expects_continue(p) ? 417 : 413, "Request size limit exceeded");
}

static int on_access(sl_pdk_t *p, void *vconf)
{
    const struct conf *c = vconf;
    sl_str_t cl, te, body;
    uint64_t len;
    if (sl_pdk_request_get_header(p, "content-length", &cl) &&
        sl_parse_u64(cl.p, cl.len, UINT64_MAX, &len) == SL_OK)
        return len > c->max_bytes ? too_large(p) : SL_PLUGIN_CONTINUE;
    /* Kong: headers["Transfer-Encoding"] ~= "chunked" */
    bool chunked = sl_pdk_request_get_header(p, "transfer-encoding", &te) && te.len == 7 &&
                   !memcmp(te.p, "chunked", 7);
    if (c->require_content_length && !chunked)
        return sl_pdk_response_error(p, 411, "A valid Content-Length header is required");
    if (sl_pdk_request_get_raw_body(p, &body))
        return body.len > c->max_bytes ? too_large(p) : SL_PLUGIN_CONTINUE;
    /* A body that was not read (see the design comment): refused. */
    if (sl_pdk_request_get_header(p, "transfer-encoding", &te))
        return sl_pdk_response_error(p, 411, "A valid Content-Length header is required");
    return SL_PLUGIN_CONTINUE;
}

/* Whether the proxy reads the body before access for this instance. */
static bool wants_body(const void *vconf)
{
    const struct conf *c = vconf;
    return c->max_bytes < BUFFERED_LIMIT_MAX;
}

const sl_native_plugin_t sl_plugin_request_size_limiting = {
    .name = "request-size-limiting",
    .configure = configure,
    .dispose = dispose,
    .wants_body = wants_body,
    .access = on_access,
};
