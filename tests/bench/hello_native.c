/*
 * hello-native: go-pdk-examples/hello's logic as a native plugin, for the
 * benchmark that compares an external Go plugin with the same work done in
 * the data plane (tests/bench/run.sh, section 5). Linked only into
 * build/bin/sluice-dp-bench: its descriptor reaches the registry through
 * sl_extra_plugins, its implementation through the registry's weak
 * reference.
 *
 * During access it reads one request header (config.header, default host)
 * and sets x-hello-from-go: "Go says <message> to <value>", byte for byte
 * what the Go plugin sets.
 */
#include "pdk.h"
#include "plugin.h"
#include "plugins.h"
#include "schema_defs.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sl_field_t config_fields[] = {
    SL_FIELD_STRING("message"),
    SL_FIELD_STRING("header"),
    SL_FIELDS_END,
};
static const sl_field_t fields[] = {
    {.name = "config",
     .type = SL_FT_RECORD,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_RECORD,
     .record = &(const sl_schema_t){.fields = config_fields}},
    SL_FIELDS_END,
};
static const sl_plugin_info_t descriptor = {
    .name = "hello-native",
    .schema = &(const sl_schema_t){.name = "hello-native", .fields = fields},
    .version = SL_BUNDLED_PLUGIN_VERSION,
    .priority = 1,
    .phases = SL_PHASE_ACCESS,
};

const sl_plugin_info_t *const sl_extra_plugins[] = {&descriptor, NULL};

struct conf {
    char *message, *header;
};

static void *configure(const json_t *config, const char *id, char *err, size_t errlen)
{
    struct conf *c = sl_xcalloc(1, sizeof(*c));
    const char *m = json_string_value(json_object_get(config, "message"));
    const char *h = json_string_value(json_object_get(config, "header"));
    c->message = sl_xstrdup(m && *m ? m : "hello");
    c->header = sl_xstrdup(h && *h ? h : "host");
    return c;
}

static void dispose(void *conf)
{
    struct conf *c = conf;
    free(c->message);
    free(c->header);
    free(c);
}

static int access_handler(sl_pdk_t *p, void *conf)
{
    const struct conf *c = conf;
    sl_str_t v = {"", 0};
    sl_pdk_request_get_header(p, c->header, &v);
    char out[1024];
    snprintf(out, sizeof(out), "Go says %s to %.*s", c->message, (int)v.len, v.p);
    sl_pdk_response_set_header(p, "x-hello-from-go", out);
    return SL_PLUGIN_CONTINUE;
}

const sl_native_plugin_t sl_plugin_hello_native = {
    .name = "hello-native",
    .configure = configure,
    .dispose = dispose,
    .access = access_handler,
};
