/*
 * registry.c lists the native plugin implementations this data plane has.
 * A bundled plugin runs on the data plane only when it is listed here (the
 * control plane knows every bundled plugin's schema either way).
 */
#include "plugin.h"

#include <string.h>

extern const sl_native_plugin_t sl_plugin_acl, sl_plugin_basic_auth, sl_plugin_correlation_id,
    sl_plugin_cors, sl_plugin_ip_restriction, sl_plugin_key_auth, sl_plugin_rate_limiting,
    sl_plugin_request_size_limiting, sl_plugin_request_transformer,
    sl_plugin_response_transformer;

const sl_native_plugin_t *const sl_native_plugins[] = {
    &sl_plugin_acl,
    &sl_plugin_basic_auth,
    &sl_plugin_correlation_id,
    &sl_plugin_cors,
    &sl_plugin_ip_restriction,
    &sl_plugin_key_auth,
    &sl_plugin_rate_limiting,
    &sl_plugin_request_size_limiting,
    &sl_plugin_request_transformer,
    &sl_plugin_response_transformer,
    NULL,
};

const sl_native_plugin_t *sl_native_plugin(const char *name)
{
    for (size_t i = 0; sl_native_plugins[i]; i++)
        if (!strcmp(sl_native_plugins[i]->name, name))
            return sl_native_plugins[i];
    return NULL;
}
