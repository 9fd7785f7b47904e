/*
 * key_auth.c: the key-auth plugin (Kong 3.10's kong/plugins/key-auth),
 * PRIORITY 1250, access phase only.
 *
 * A request names its API key in a header, a query argument or (with
 * config.key_in_body) a body field called by one of config.key_names (tried
 * in order; for each name the header first, then the query, then the body).
 * The key selects a keyauth_credentials row and through it the consumer,
 * which becomes the request's authenticated consumer with Kong's upstream
 * headers (X-Consumer-ID, X-Consumer-Username, X-Consumer-Custom-ID,
 * X-Credential-Identifier).
 *
 * The body is read as kong.request.get_body reads it (body_args.c): a form,
 * a JSON object or multipart fields, by the request's Content-Type; a body
 * of another type, or one that does not parse, has no key (Kong logs why).
 * A field given twice (or a JSON object or array) is a duplicate key; a
 * JSON number or boolean is no key. With config.hide_credentials the key's
 * name is removed from the header, the query and, with key_in_body, from
 * the body, which goes upstream re-encoded as kong.service.request.set_body
 * encodes it (form fields sorted by name, compact JSON, multipart fields as
 * plain parts sorted by name), whether or not the key came from it, as in
 * Kong. Instances with key_in_body make the proxy read the body before the
 * access phase (wants_body), up to client_body_buffer_size.
 *
 * Without config.anonymous the plugin is a gate ("logical AND" in Kong's
 * words): no key is 401 "No API key found in request", a key seen twice is
 * 401 "Duplicate API key found", an unknown key is 401 "Unauthorized", each
 * with WWW-Authenticate (Key realm="<realm>", or plain Key without a realm).
 * With config.anonymous it is one of several ways in ("logical OR"): a
 * request some higher-priority plugin already authenticated with a
 * credential passes untouched, and a failed one continues as the anonymous
 * consumer (X-Anonymous-Consumer: true) instead of being refused; an
 * anonymous value naming no consumer is a 500, as in Kong.
 *
 * Threads: configure and dispose run where a generation is built; access
 * runs on any worker, concurrently, reading the conf and writing only into
 * the request's arena.
 */
#include "body_args.h"
#include "log.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kong reads at most this many query arguments (kong.request.get_query's
 * default, lua_max_uri_args); later ones are not looked at. */
#define MAX_QUERY_ARGS 100

struct key_auth {
    char **key_names; /* owned */
    size_t nkeys;
    bool hide_credentials;
    bool key_in_header;
    bool key_in_query;
    bool key_in_body;
    bool run_on_preflight;
    char *anonymous;        /* owned; NULL: none */
    char *www_authenticate; /* owned: "Key realm=\"...\"" or "Key" */
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void *fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void *fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

/* Reads a boolean field; an absent one takes its default. False (with err
 * set) when the field is present and not a boolean. */
static bool read_bool(const json_t *config, const char *name, bool def, bool *out, char *err,
                      size_t errlen)
{
    const json_t *v = json_object_get(config, name);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_boolean(v)) {
        fail(err, errlen, "config.%s: expected a boolean", name);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* Reads an optional string field into *out (NULL when absent or null). It
 * must be non-empty and free of control characters, which would otherwise
 * end up in a response header or a log line. */
static bool read_text(const json_t *config, const char *name, char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(config, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        fail(err, errlen, "config.%s: expected a string", name);
        return false;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) {
        fail(err, errlen, "config.%s: length must be at least 1", name);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            fail(err, errlen, "config.%s: must not contain control characters", name);
            return false;
        }
    }
    *out = sl_xstrndup(s, n);
    return true;
}

/* typedefs.header_name: what a key name may be, since it is both a header
 * and a query argument name. */
static bool header_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static void dispose(void *p)
{
    struct key_auth *c = p;
    if (!c)
        return;
    for (size_t i = 0; i < c->nkeys; i++)
        free(c->key_names[i]);
    free(c->key_names);
    free(c->anonymous);
    free(c->www_authenticate);
    free(c);
}

static bool read_key_names(const json_t *config, struct key_auth *c, char *err, size_t errlen)
{
    const json_t *names = json_object_get(config, "key_names");
    if (!names || json_is_null(names)) {
        c->key_names = sl_xcalloc(1, sizeof(*c->key_names));
        c->key_names[0] = sl_xstrdup("apikey");
        c->nkeys = 1;
        return true;
    }
    if (!json_is_array(names)) {
        fail(err, errlen, "config.key_names: expected an array");
        return false;
    }
    size_t n = json_array_size(names);
    c->key_names = sl_xcalloc(n ? n : 1, sizeof(*c->key_names));
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(names, i);
        if (!json_is_string(v)) {
            fail(err, errlen, "config.key_names[%zu]: expected a string", i);
            return false;
        }
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (!header_name_ok(s, len)) {
            fail(err, errlen,
                 "config.key_names[%zu]: bad header name '%.*s', allowed characters are A-Z, "
                 "a-z, 0-9, '_', and '-'",
                 i, (int)SL_MIN(len, 64), s);
            return false;
        }
        c->key_names[c->nkeys++] = sl_xstrndup(s, len);
    }
    return true;
}

/*
 * Reads config (schema-validated on the control plane or by the declarative
 * loader, but checked again: it may come from a peer). Returns the conf, or
 * NULL with err naming the field.
 */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    struct key_auth *c = sl_xcalloc(1, sizeof(*c));
    char *realm = NULL;
    if (!read_key_names(config, c, err, errlen) ||
        !read_bool(config, "hide_credentials", false, &c->hide_credentials, err, errlen) ||
        !read_bool(config, "key_in_header", true, &c->key_in_header, err, errlen) ||
        !read_bool(config, "key_in_query", true, &c->key_in_query, err, errlen) ||
        !read_bool(config, "key_in_body", false, &c->key_in_body, err, errlen) ||
        !read_bool(config, "run_on_preflight", true, &c->run_on_preflight, err, errlen) ||
        !read_text(config, "anonymous", &c->anonymous, err, errlen) ||
        !read_text(config, "realm", &realm, err, errlen))
        goto fail_conf;
    c->www_authenticate = realm ? sl_xasprintf("Key realm=\"%s\"", realm) : sl_xstrdup("Key");
    free(realm);
    return c;

fail_conf:
    free(realm);
    dispose(c);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Finding the key                                                           */

enum found {
    FOUND_NONE,      /* not there: the next place is searched */
    FOUND_ONE,       /* one value */
    FOUND_DUPLICATE, /* more than one: Kong sees a table and refuses */
    FOUND_OTHER,     /* a value that is no key (a query flag, a JSON number):
                        the search goes on with the next name */
};

/* Whether a request header name is the key name `key`, as nginx's header
 * table looks names up: case-insensitively, with '_' in the name standing
 * for '-' (a field name with '_' in it nginx ignores altogether). */
static bool header_is(sl_str_t h, const char *key, size_t keylen)
{
    if (h.len != keylen)
        return false;
    for (size_t i = 0; i < keylen; i++) {
        char want = key[i] == '_' ? '-' : sl_lower(key[i]);
        if (sl_lower(h.p[i]) != want)
            return false;
    }
    return true;
}

static enum found find_in_headers(sl_pdk_t *p, const char *key, sl_str_t *value)
{
    size_t keylen = strlen(key), seen = 0;
    size_t n = sl_pdk_request_header_count(p);
    for (size_t i = 0; i < n; i++) {
        sl_str_t name, v;
        if (sl_pdk_request_header_at(p, i, &name, &v) && header_is(name, key, keylen)) {
            if (seen++ == 0)
                *value = v;
        }
    }
    return seen == 0 ? FOUND_NONE : seen == 1 ? FOUND_ONE : FOUND_DUPLICATE;
}

/*
 * Looks a key name up in the raw query string as Kong's kong.request.get_query
 * sees it: names and values decoded, the first MAX_QUERY_ARGS arguments only,
 * an argument without '=' a boolean (not a key, and the body is not searched
 * for that name), a name given twice a table (a duplicate).
 */
static enum found find_in_query(sl_pdk_t *p, const char *key, sl_str_t *value)
{
    sl_str_t q = sl_pdk_request_get_raw_query(p);
    size_t keylen = strlen(key), nargs = 0, seen = 0;
    bool has_value = false;
    const char *s = q.p, *end = q.p + q.len;
    while (s < end && nargs < MAX_QUERY_ARGS) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        size_t rawlen = (size_t)((eq ? eq : stop) - s);
        if (rawlen) {
            nargs++;
            /* Decoding shrinks a name to between a third and all of its
             * length: only names that can become the key are decoded. */
            bool may = rawlen >= keylen && rawlen <= 3 * keylen;
            sl_str_t name = may ? sl_pdk_unescape(p, s, rawlen) : (sl_str_t){NULL, 0};
            if (may && name.len == keylen && !memcmp(name.p, key, keylen)) {
                if (seen++ == 0) {
                    has_value = eq != NULL;
                    if (eq)
                        *value = sl_pdk_unescape(p, eq + 1, (size_t)(stop - eq - 1));
                }
            }
        }
        s = stop + 1;
    }
    if (seen > 1)
        return FOUND_DUPLICATE;
    if (seen == 0)
        return FOUND_NONE;
    return has_value ? FOUND_ONE : FOUND_OTHER;
}

/* Removes the key from what goes upstream: the header (by the name and, for
 * a name with '_', by the '-' spelling nginx matched it with) and the query
 * argument, wherever the key was found, as Kong does. */
static void hide_key(sl_pdk_t *p, const char *name)
{
    sl_pdk_service_request_clear_header(p, name);
    if (strchr(name, '_')) {
        char *dashed = sl_pdk_strndup(p, name, strlen(name));
        for (char *d = dashed; *d; d++)
            if (*d == '_')
                *d = '-';
        sl_pdk_service_request_clear_header(p, dashed);
    }
    sl_pdk_service_request_clear_query_arg(p, name);
}

/* The request body as kong.request.get_body gives it, parsed once. */
struct body_state {
    bool parsed;
    bool ok; /* false: get_body failed (Kong's EMPTY table) */
    sl_body_t body;
};

static sl_body_t *get_body(sl_pdk_t *p, struct body_state *b)
{
    if (!b->parsed) {
        const char *why = NULL;
        b->parsed = true;
        b->ok = sl_body_get(p, &b->body, &why);
        if (!b->ok)
            sl_pdk_log(p, SL_LOG_INFO, "Cannot process request body: %s", why);
    }
    return b->ok ? &b->body : NULL;
}

static enum found find_in_body(sl_pdk_t *p, struct body_state *b, const char *key, sl_str_t *value)
{
    sl_body_t *body = get_body(p, b);
    switch (body ? sl_body_lookup(body, key, value) : SL_BODY_ABSENT) {
    case SL_BODY_STRING:
        return FOUND_ONE;
    case SL_BODY_TABLE:
        return FOUND_DUPLICATE;
    case SL_BODY_SCALAR:
        return FOUND_OTHER;
    case SL_BODY_ABSENT:
        break;
    }
    return FOUND_NONE;
}

/* With key_in_body, the body without the key's name goes upstream, encoded
 * again (Kong does this even when the key came from elsewhere). */
static void hide_in_body(sl_pdk_t *p, struct body_state *b, const char *name)
{
    sl_body_t *body = get_body(p, b);
    if (!body)
        return;
    sl_body_remove(body, name);
    sl_body_set(p, body);
}

/* ------------------------------------------------------------------------ */
/* Access                                                                    */

/* Why an authentication failed: the message of Kong's 401. */
static const char *const NO_KEY = "No API key found in request";
static const char *const DUPLICATE_KEY = "Duplicate API key found";
static const char *const BAD_KEY = "Unauthorized";

/*
 * Finds the key as Kong's do_authentication does: for each name in order,
 * the header, the query, the body; the first string found is the key, a
 * table is a duplicate. Returns NULL with *key set (in the arena), or the
 * 401 message.
 */
static const char *find_key(sl_pdk_t *p, const struct key_auth *c, struct body_state *b,
                            sl_str_t *key)
{
    for (size_t i = 0; i < c->nkeys; i++) {
        const char *name = c->key_names[i];
        sl_str_t v = {NULL, 0};
        enum found f = FOUND_NONE;
        if (c->key_in_header)
            f = find_in_headers(p, name, &v);
        if (f == FOUND_NONE && c->key_in_query)
            f = find_in_query(p, name, &v);
        if (f == FOUND_NONE && c->key_in_body)
            f = find_in_body(p, b, name, &v);
        if (f == FOUND_DUPLICATE)
            return DUPLICATE_KEY;
        if (f != FOUND_ONE)
            continue;
        /* A copy: hiding it from a JSON body frees the value. */
        *key = (sl_str_t){sl_pdk_strndup(p, v.p, v.len), v.len};
        if (c->hide_credentials) {
            hide_key(p, name);
            if (c->key_in_body)
                hide_in_body(p, b, name);
        }
        return key->len ? NULL : NO_KEY;
    }
    return NO_KEY;
}

/*
 * Kong's do_authentication. Returns NULL when the request is authenticated
 * (the consumer and its upstream headers set), or the 401 message.
 */
static const char *authenticate(sl_pdk_t *p, const struct key_auth *c)
{
    struct body_state b = {0};
    sl_str_t key = {NULL, 0};
    const char *why = find_key(p, c, &b, &key);
    if (b.parsed)
        sl_body_dispose(&b.body);
    if (why)
        return why;

    /* A key with a NUL in it (%00 in the query) would be cut short by the
     * lookup and might match another key: it matches nothing. */
    if (memchr(key.p, '\0', key.len))
        return BAD_KEY;
    const sl_credential_t *cred = sl_pdk_credential_lookup(p, "keyauth_credentials", key.p);
    if (!cred)
        return BAD_KEY;
    sl_pdk_auth_set_consumer(p, cred->consumer, cred);
    return NULL;
}

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct key_auth *c = conf;
    if (!c->run_on_preflight) {
        sl_str_t m = sl_pdk_request_get_method(p);
        if (m.len == 7 && !memcmp(m.p, "OPTIONS", 7))
            return SL_PLUGIN_CONTINUE;
    }
    if (c->anonymous) {
        /* Logical OR: another plugin's credential is enough. */
        if (sl_pdk_client_get_credential(p))
            return SL_PLUGIN_CONTINUE;
        if (!authenticate(p, c))
            return SL_PLUGIN_CONTINUE;
        return sl_pdk_auth_anonymous(p, c->anonymous);
    }
    const char *why = authenticate(p, c);
    if (!why)
        return SL_PLUGIN_CONTINUE;
    sl_pdk_response_set_header(p, "WWW-Authenticate", c->www_authenticate);
    return sl_pdk_response_error(p, 401, why);
}

/* The body is read before access only for instances that look in it. */
static bool wants_body(const void *conf)
{
    return ((const struct key_auth *)conf)->key_in_body;
}

const sl_native_plugin_t sl_plugin_key_auth = {
    .name = "key-auth",
    .configure = configure,
    .dispose = dispose,
    .wants_body = wants_body,
    .access = on_access,
};
