/*
 * acl.c: the acl plugin (Kong 3.10's kong/plugins/acl), PRIORITY 950,
 * access phase only.
 *
 * It runs after the authentication plugins and decides by the groups of the
 * consumer they set (the consumer's `acls` rows, sl_consumer_t.groups):
 * with config.allow the consumer must be in one of the groups, with
 * config.deny in none of them (when deny is non-empty it is the list used,
 * as in Kong). A refusal is 403 {"message":"You cannot consume this
 * service"}; a request without a consumer is 401 {"message":"Unauthorized"}
 * (403 when it has a credential but no consumer). A consumer let through has
 * its groups sent upstream in X-Consumer-Groups, joined by ", ", unless
 * config.hide_groups_header (with no group the header is removed, as nginx
 * removes a header set to "").
 *
 * Kong also lets an authentication plugin name "authenticated groups"
 * (kong.ctx.shared.authenticated_groups, sent as X-Authenticated-Groups),
 * which win over an anonymous consumer's groups, and over any consumer's with
 * config.always_use_authenticated_groups. No plugin of this data plane sets
 * them and the PDK has no place for them, so they are always absent and
 * always_use_authenticated_groups changes nothing yet.
 *
 * Threads: configure and dispose run where a generation is built; access
 * runs on any worker, concurrently, reading the conf and writing only into
 * the request's arena.
 */
#include "log.h"
#include "conf_read.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct acl {
    bool deny;     /* the groups are a deny list (else an allow list) */
    char **groups; /* owned */
    size_t ngroups;
    bool hide_groups_header;
    bool always_use_authenticated_groups;
};

static const char *const REFUSED = "You cannot consume this service";

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

/* Checks that config.<name> is absent, null or an array of strings; *n is
 * its length. */
static bool check_list(const json_t *config, const char *name, size_t *n, char *err, size_t errlen)
{
    const json_t *v = json_object_get(config, name);
    *n = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v)) {
        sl_cf_fail(err, errlen, "config.%s: expected an array", name);
        return false;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *g = json_array_get(v, i);
        if (!json_is_string(g)) {
            sl_cf_fail(err, errlen, "config.%s[%zu]: expected a string", name, i);
            return false;
        }
        if (strlen(json_string_value(g)) != json_string_length(g)) {
            sl_cf_fail(err, errlen, "config.%s[%zu]: must not contain NUL characters", name, i);
            return false;
        }
    }
    *n = json_array_size(v);
    return true;
}

static void dispose(void *p)
{
    struct acl *c = p;
    if (!c)
        return;
    for (size_t i = 0; i < c->ngroups; i++)
        free(c->groups[i]);
    free(c->groups);
    free(c);
}

/*
 * Reads config (checked again although the schema validated it: it may come
 * from a peer). Exactly one of allow and deny must be non-empty, as the
 * schema's only_one_of and at_least_one_of say. Returns the conf, or NULL
 * with err naming the field.
 */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    size_t nallow, ndeny;
    bool hide, always;
    if (!check_list(config, "allow", &nallow, err, errlen) ||
        !check_list(config, "deny", &ndeny, err, errlen) ||
        !sl_cf_bool(config, "hide_groups_header", false, &hide, err, errlen) ||
        !sl_cf_bool(config, "always_use_authenticated_groups", false, &always, err, errlen))
        return NULL;
    if (nallow && ndeny)
        return sl_cf_fail(err, errlen,
                          "config: exactly one of these fields must be non-empty: 'config.allow', "
                          "'config.deny'");
    if (!nallow && !ndeny)
        return sl_cf_fail(err, errlen,
                          "config: at least one of these fields must be non-empty: 'config.allow', "
                          "'config.deny'");
    struct acl *c = sl_xcalloc(1, sizeof(*c));
    c->deny = ndeny > 0;
    c->hide_groups_header = hide;
    c->always_use_authenticated_groups = always;
    const json_t *list = json_object_get(config, c->deny ? "deny" : "allow");
    c->ngroups = json_array_size(list);
    c->groups = sl_xcalloc(c->ngroups, sizeof(*c->groups));
    for (size_t i = 0; i < c->ngroups; i++)
        c->groups[i] = sl_xstrdup(json_string_value(json_array_get(list, i)));
    return c;
}

/* ------------------------------------------------------------------------ */
/* Access                                                                    */

static bool in_groups(const struct acl *c, const sl_consumer_t *who)
{
    for (size_t i = 0; i < c->ngroups; i++)
        for (size_t k = 0; k < who->ngroups; k++)
            if (!strcmp(c->groups[i], who->groups[k]))
                return true;
    return false;
}

/* Kong's X-Consumer-Groups value: the consumer's groups joined by ", ".
 * NULL when it has none. */
static char *groups_header(sl_pdk_t *p, const sl_consumer_t *who)
{
    size_t len = 0;
    for (size_t k = 0; k < who->ngroups; k++)
        len += strlen(who->groups[k]) + 2;
    if (len == 0)
        return NULL;
    char *out = sl_pdk_alloc(p, len + 1), *w = out;
    for (size_t k = 0; k < who->ngroups; k++) {
        size_t n = strlen(who->groups[k]);
        if (k) {
            memcpy(w, ", ", 2);
            w += 2;
        }
        memcpy(w, who->groups[k], n);
        w += n;
    }
    *w = '\0';
    return out;
}

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct acl *c = conf;
    const sl_credential_t *cred = sl_pdk_client_get_credential(p);
    const sl_consumer_t *who = sl_pdk_client_get_consumer(p);
    if (!who) {
        /* No authenticated groups either (see the top of the file). */
        if (cred)
            return sl_pdk_response_error(p, 403, REFUSED);
        return sl_pdk_response_error(p, 401, "Unauthorized");
    }
    bool in = in_groups(c, who);
    if (c->deny ? in : !in)
        return sl_pdk_response_error(p, 403, REFUSED);
    if (!c->hide_groups_header) {
        char *v = groups_header(p, who);
        if (v && strpbrk(v, "\r\n")) {
            /* nginx refuses such a header value and the request fails. */
            sl_pdk_log(p, SL_LOG_ERROR, "a group of consumer %s has a line break in its name",
                       who->id);
            return sl_pdk_response_error(p, 500, "An unexpected error occurred");
        }
        if (v)
            sl_pdk_service_request_set_header(p, "X-Consumer-Groups", v);
        else
            sl_pdk_service_request_clear_header(p, "X-Consumer-Groups");
    }
    return SL_PLUGIN_CONTINUE;
}

const sl_native_plugin_t sl_plugin_acl = {
    .name = "acl",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
};
