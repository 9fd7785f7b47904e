/*
 * registry.c lists the native plugin implementations this data plane has.
 * A bundled plugin runs on the data plane only when its implementation is
 * linked in (the control plane knows every bundled plugin's schema either
 * way). The references are weak so that a build without one of them still
 * links; sl_native_plugins holds only those present.
 */
#include "plugin.h"

#include <string.h>

#define NATIVE(sym) extern const sl_native_plugin_t sym __attribute__((weak));
NATIVE(sl_plugin_acl)
NATIVE(sl_plugin_basic_auth)
NATIVE(sl_plugin_correlation_id)
NATIVE(sl_plugin_cors)
NATIVE(sl_plugin_file_log)
NATIVE(sl_plugin_http_log)
NATIVE(sl_plugin_ip_restriction)
NATIVE(sl_plugin_jwt)
NATIVE(sl_plugin_key_auth)
NATIVE(sl_plugin_prometheus)
NATIVE(sl_plugin_rate_limiting)
NATIVE(sl_plugin_request_size_limiting)
NATIVE(sl_plugin_request_transformer)
NATIVE(sl_plugin_response_transformer)
NATIVE(sl_plugin_hello_native) /* only in build/bin/sluice-dp-bench */
#undef NATIVE

static const sl_native_plugin_t *const all[] = {
    &sl_plugin_acl,
    &sl_plugin_basic_auth,
    &sl_plugin_correlation_id,
    &sl_plugin_cors,
    &sl_plugin_file_log,
    &sl_plugin_http_log,
    &sl_plugin_ip_restriction,
    &sl_plugin_jwt,
    &sl_plugin_key_auth,
    &sl_plugin_prometheus,
    &sl_plugin_rate_limiting,
    &sl_plugin_request_size_limiting,
    &sl_plugin_request_transformer,
    &sl_plugin_response_transformer,
    &sl_plugin_hello_native,
};

const sl_native_plugin_t *sl_native_plugin(const char *name)
{
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i] && !strcmp(all[i]->name, name))
            return all[i];
    return NULL;
}

size_t sl_native_plugin_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        n += all[i] != NULL;
    return n;
}

void sl_native_plugins_worker_exit(void)
{
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i] && all[i]->worker_exit)
            all[i]->worker_exit();
}
