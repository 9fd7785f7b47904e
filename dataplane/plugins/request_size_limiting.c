/*
 * request-size-limiting: refuses request bodies larger than
 * config.allowed_payload_size (in config.size_unit: megabytes, kilobytes or
 * bytes, powers of 1024), as Kong's
 * kong/plugins/request-size-limiting/handler.lua does.
 *
 * The size is the request's Content-Length. Over the limit the answer is
 * 413 {"message":"Request size limit exceeded"}, or 417 with the same
 * message when the client sent "Expect: 100-continue" (Kong's choice: the
 * client has not sent the body yet). With config.require_content_length, a
 * request without Content-Length and without a chunked body gets 411
 * {"message":"A valid Content-Length header is required"}, as in Kong (a
 * bodiless GET included).
 *
 * A body without Content-Length (Transfer-Encoding: chunked) is where this
 * data plane differs. Kong reads such a body in access and measures it; the
 * PDK gives plugins no access to the body yet, so its size is unknown when
 * the decision has to be made. Letting it through would make the limit
 * trivially avoidable (send the same body chunked), which defeats the point
 * of the plugin, so this implementation fails closed: such a request gets
 * 411 "A valid Content-Length header is required", which tells the client
 * the one thing that makes the request acceptable. Small chunked bodies that
 * Kong would accept are therefore refused here until the PDK can count the
 * body as it streams.
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

static int on_access(sl_pdk_t *p, void *vconf)
{
    const struct conf *c = vconf;
    sl_str_t cl, te;
    uint64_t len;
    if (sl_pdk_request_get_header(p, "content-length", &cl) &&
        sl_parse_u64(cl.p, cl.len, UINT64_MAX, &len) == SL_OK) {
        if (len <= c->max_bytes)
            return SL_PLUGIN_CONTINUE;
        return sl_pdk_response_exit_message(p, expects_continue(p) ? 417 : 413,
                                            "Request size limit exceeded");
    }
    /* A body of unknown size: refused, see the design comment. */
    if (sl_pdk_request_get_header(p, "transfer-encoding", &te))
        return sl_pdk_response_exit_message(p, 411, "A valid Content-Length header is required");
    if (c->require_content_length)
        return sl_pdk_response_exit_message(p, 411, "A valid Content-Length header is required");
    return SL_PLUGIN_CONTINUE;
}

const sl_native_plugin_t sl_plugin_request_size_limiting = {
    .name = "request-size-limiting",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
};
