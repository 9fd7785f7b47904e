/*
 * cors.c is the cors plugin (Kong 3.10's kong/plugins/cors): it answers
 * CORS preflight requests itself and adds the Access-Control-* headers to
 * every other response.
 *
 * A preflight is an OPTIONS request carrying both Origin and
 * Access-Control-Request-Method. The access handler answers it with 200 and
 * the allow headers, unless preflight_continue hands it to the upstream; in
 * both cases the header_filter handler leaves the response alone. Any other
 * response (the upstream's, or one another plugin or the gateway produced)
 * gets Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers
 * in header_filter.
 *
 * Origins are decided as Kong decides them. No origin, or the single origin
 * "*", allows every origin. A single origin made only of [A-Za-z0-9.:/-] is
 * sent as it is, whatever the client's Origin. Otherwise the client's Origin
 * is compared with each entry: an entry holding any other character is a
 * regex (anchored at both ends; matched against the Origin's host when the
 * entry has no ':', against scheme://host[:port] otherwise), any other entry
 * is compared with the Origin after both are normalised (default ports
 * dropped). A "*" among several entries allows every origin that sends one.
 *
 * configure() runs on the thread that builds a generation and compiles the
 * regexes with PCRE2 (JIT when available); the result is read-only and
 * shared by every worker thread. Handlers keep their per-request state in
 * the request arena.
 */
#include "conf_read.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_METHODS "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"

/* One entry of config.origins other than "*". */
struct origin {
    pcre2_code *re; /* owned; NULL for a plain origin */
    char *domain;   /* owned: a plain origin, normalised */
    bool by_host;   /* a regex without ':' is matched against the host only */
};

struct cors_conf {
    struct origin *origins; /* owned, norigins entries ("*" entries left out) */
    size_t norigins;
    bool allow_all;        /* no origins, or only "*" */
    bool any_star;         /* "*" among several origins */
    char *single_literal;  /* owned: the one origin, sent as is; or NULL */
    char *headers;         /* owned: config.headers joined; NULL: echo the request's */
    char *exposed_headers; /* owned: joined; NULL when none */
    char *methods;         /* owned: joined */
    char *max_age;         /* owned: as Lua's tostring writes it; NULL when unset */
    bool credentials, private_network, preflight_continue, allow_origin_absent;
};

/* What kong.ctx.plugin holds once access has handled a preflight. */
static char skip_marker;

/* ------------------------------------------------------------------------ */
/* Origins                                                                   */

/* An origin split as LuaSocket's url.parse splits it, then put together
 * again as Kong's normalize_origin does. Both strings point into storage of
 * the input's size that the caller provides. */
struct norm_origin {
    const char *domain, *host;
    size_t domain_len, host_len;
};

static bool is_scheme_char(char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return !first && (c == '+' || c == '-' || c == '.');
}

/*
 * Normalises s (n bytes) into buf (at least n bytes): "scheme://host[:port]"
 * without a default port (80 for http, 443 for https). A string with no
 * authority part ("//host") is its own domain and host, as in Kong.
 */
static void normalize_origin(const char *s, size_t n, char *buf, struct norm_origin *out)
{
    size_t i = 0, scheme_len = 0;
    const char *scheme = NULL;
    out->domain = out->host = s;
    out->domain_len = out->host_len = n;

    /* scheme: ^[%w][%w+-.]*: */
    if (n > 0 && is_scheme_char(s[0], true)) {
        size_t j = 1;
        while (j < n && is_scheme_char(s[j], false))
            j++;
        if (j < n && s[j] == ':') {
            scheme = s;
            scheme_len = j;
            i = j + 1;
        }
    }
    /* authority: ^//[^/]* */
    if (n - i < 2 || s[i] != '/' || s[i + 1] != '/')
        return;
    const char *auth = s + i + 2;
    size_t alen = 0;
    while (i + 2 + alen < n && auth[alen] != '/')
        alen++;
    /* userinfo: ^[^@]*@ */
    const char *at = memchr(auth, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    /* port: the last ':' with neither ':' nor ']' after it */
    const char *port = NULL;
    size_t port_len = 0;
    for (size_t k = alen; k-- > 0;) {
        if (auth[k] == ']')
            break;
        if (auth[k] == ':') {
            port = auth + k + 1;
            port_len = alen - k - 1;
            alen = k;
            break;
        }
    }
    if (alen == 0)
        return; /* no host: the whole string stands for itself */
    const char *host = auth;
    size_t host_len = alen;
    if (alen > 2 && auth[0] == '[' && auth[alen - 1] == ']') {
        host = auth + 1;
        host_len = alen - 2;
    }
    if (port && scheme &&
        ((scheme_len == 4 && !memcmp(scheme, "http", 4) && port_len == 2 &&
          !memcmp(port, "80", 2)) ||
         (scheme_len == 5 && !memcmp(scheme, "https", 5) && port_len == 3 &&
          !memcmp(port, "443", 3))))
        port = NULL;

    size_t len = 0;
    if (scheme) {
        memcpy(buf, scheme, scheme_len);
        memcpy(buf + scheme_len, "://", 3);
        len = scheme_len + 3;
    }
    memcpy(buf + len, host, host_len);
    out->host = buf + len;
    out->host_len = host_len;
    len += host_len;
    if (port) {
        buf[len++] = ':';
        memcpy(buf + len, port, port_len);
        len += port_len;
    }
    out->domain = buf;
    out->domain_len = len;
}

/* Kong's test for "this origin is not a regex": only [A-Za-z0-9.:/-]. */
static bool looks_plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == ':' || c == '/' || c == '-'))
            return false;
    }
    return true;
}

/*
 * Reads one non-"*" origin into o. A regex gets Kong's adjustments (a '$'
 * appended unless it ends with one, a leading '^' dropped) and is compiled
 * anchored at the start, as ngx.re.find's "a" flag does. Returns false with
 * err filled when it does not compile.
 */
static bool compile_origin(const char *s, size_t n, size_t idx, struct origin *o, char *err,
                           size_t errlen)
{
    o->by_host = memchr(s, ':', n) == NULL;
    if (looks_plain(s, n)) {
        char *buf = sl_xmalloc(n + 1);
        struct norm_origin no;
        normalize_origin(s, n, buf, &no);
        o->domain = sl_xstrndup(no.domain, no.domain_len);
        free(buf);
        return true;
    }
    char *pat = sl_xmalloc(n + 2);
    const char *from = s;
    size_t len = n;
    if (len > 0 && from[0] == '^') {
        from++;
        len--;
    }
    memcpy(pat, from, len);
    if (n == 0 || s[n - 1] != '$')
        pat[len++] = '$';
    pat[len] = '\0';
    int code;
    PCRE2_SIZE off;
    o->re = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_ANCHORED, &code, &off, NULL);
    free(pat);
    if (!o->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errlen, "config.origins[%zu]: '%.*s' is not a valid regex: %s at offset %zu",
                 idx, (int)n, s, (const char *)msg, (size_t)off);
        return false;
    }
    (void)pcre2_jit_compile(o->re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    return true;
}

/* True when the regex matches subject (anchored at both ends by then). */
static bool regex_matches(const pcre2_code *re, const char *subject, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void dispose(void *p)
{
    struct cors_conf *c = p;
    if (!c)
        return;
    for (size_t i = 0; i < c->norigins; i++) {
        pcre2_code_free(c->origins[i].re);
        free(c->origins[i].domain);
    }
    free(c->origins);
    free(c->single_literal);
    free(c->headers);
    free(c->exposed_headers);
    free(c->methods);
    free(c->max_age);
    free(c);
}

/*
 * Joins the strings of config.<name> with ','. *out is NULL for an absent
 * or null field (and, when empty_is_null, for an empty array). Returns false
 * with err filled when the field is not an array of strings.
 */
static bool read_joined(const json_t *config, const char *name, bool empty_is_null, char **out,
                        char *err, size_t errlen)
{
    *out = NULL;
    const json_t *arr = json_object_get(config, name);
    if (!arr || json_is_null(arr))
        return true;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "config.%s: expected an array", name);
        return false;
    }
    size_t n = json_array_size(arr), total = 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_string(v)) {
            snprintf(err, errlen, "config.%s[%zu]: expected a string", name, i);
            return false;
        }
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        for (size_t k = 0; k < len; k++)
            if (s[k] == '\r' || s[k] == '\n' || s[k] == '\0') {
                snprintf(err, errlen, "config.%s[%zu]: must not contain CR, LF or NUL", name, i);
                return false;
            }
        total += len + 1;
    }
    if (n == 0 && empty_is_null)
        return true;
    char *buf = sl_xmalloc(total), *w = buf;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (i > 0)
            *w++ = ',';
        memcpy(w, json_string_value(v), json_string_length(v));
        w += json_string_length(v);
    }
    *w = '\0';
    *out = buf;
    return true;
}

static bool read_origins(const json_t *config, struct cors_conf *c, char *err, size_t errlen)
{
    const json_t *arr = json_object_get(config, "origins");
    if (!arr || json_is_null(arr)) {
        c->allow_all = true;
        return true;
    }
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "config.origins: expected an array");
        return false;
    }
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(arr, i))) {
            snprintf(err, errlen, "config.origins[%zu]: expected a string", i);
            return false;
        }
    const char *first = n ? json_string_value(json_array_get(arr, 0)) : NULL;
    if (n == 0 || (n == 1 && !strcmp(first, "*"))) {
        c->allow_all = true;
        return true;
    }
    if (n == 1 && first[0] && looks_plain(first, strlen(first))) {
        c->single_literal = sl_xstrdup(first);
        return true;
    }
    c->origins = sl_xcalloc(n, sizeof *c->origins);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!strcmp(json_string_value(v), "*")) {
            c->any_star = true;
            continue;
        }
        struct origin *o = &c->origins[c->norigins++];
        if (!compile_origin(json_string_value(v), json_string_length(v), i, o, err, errlen))
            return false;
    }
    return true;
}

static bool read_max_age(const json_t *config, struct cors_conf *c, char *err, size_t errlen)
{
    const json_t *v = json_object_get(config, "max_age");
    if (!v || json_is_null(v))
        return true;
    char buf[64];
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != d || d > 1e300 || d < -1e300) {
            snprintf(err, errlen, "config.max_age: expected a finite number");
            return false;
        }
        /* Lua's tostring: "%.14g" */
        snprintf(buf, sizeof buf, "%.14g", d);
    } else {
        snprintf(err, errlen, "config.max_age: expected a number");
        return false;
    }
    c->max_age = sl_xstrdup(buf);
    return true;
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    if (!json_is_object(config)) {
        snprintf(err, errlen, "config: expected an object");
        return NULL;
    }
    struct cors_conf *c = sl_xcalloc(1, sizeof *c);
    if (!read_origins(config, c, err, errlen) ||
        !read_joined(config, "headers", true, &c->headers, err, errlen) ||
        !read_joined(config, "exposed_headers", true, &c->exposed_headers, err, errlen) ||
        !read_joined(config, "methods", false, &c->methods, err, errlen) ||
        !read_max_age(config, c, err, errlen) ||
        !sl_cf_bool(config, "credentials", false, &c->credentials, err, errlen) ||
        !sl_cf_bool(config, "private_network", false, &c->private_network, err, errlen) ||
        !sl_cf_bool(config, "preflight_continue", false, &c->preflight_continue, err, errlen) ||
        !sl_cf_bool(config, "allow_origin_absent", true, &c->allow_origin_absent, err, errlen)) {
        dispose(c);
        return NULL;
    }
    if (!c->methods)
        c->methods = sl_xstrdup(DEFAULT_METHODS);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Phases                                                                    */

/* Vary: Origin, replacing the upstream's Vary in access and joining it in
 * header_filter (it may serve as a cache key). */
static void add_vary(sl_pdk_t *p, bool header_filter)
{
    if (header_filter)
        sl_pdk_response_add_header(p, "Vary", "Origin");
    else
        sl_pdk_response_set_header(p, "Vary", "Origin");
}

/*
 * Sets Access-Control-Allow-Origin for req_origin (NULL when the request
 * has none). Returns true when every origin is allowed ("*"), which
 * configure_credentials needs to know.
 */
static bool configure_origin(sl_pdk_t *p, const struct cors_conf *c, bool header_filter,
                             const sl_str_t *req_origin)
{
    if (c->allow_all) {
        sl_pdk_response_set_header(p, "Access-Control-Allow-Origin", "*");
        return true;
    }
    add_vary(p, header_filter);
    if (c->single_literal) {
        sl_pdk_response_set_header(p, "Access-Control-Allow-Origin", c->single_literal);
        return false;
    }
    if (req_origin) {
        if (c->any_star) {
            sl_pdk_response_set_header(p, "Access-Control-Allow-Origin", "*");
            return true;
        }
        char *buf = sl_pdk_alloc(p, req_origin->len + 1);
        struct norm_origin no;
        normalize_origin(req_origin->p, req_origin->len, buf, &no);
        for (size_t i = 0; i < c->norigins; i++) {
            const struct origin *o = &c->origins[i];
            bool found;
            if (o->re) {
                found = o->by_host ? regex_matches(o->re, no.host, no.host_len)
                                   : regex_matches(o->re, no.domain, no.domain_len);
            } else {
                found = strlen(o->domain) == no.domain_len &&
                        !memcmp(o->domain, no.domain, no.domain_len);
            }
            if (found) {
                sl_pdk_response_set_header(p, "Access-Control-Allow-Origin",
                                           sl_pdk_strndup(p, no.domain, no.domain_len));
                return false;
            }
        }
    }
    sl_pdk_response_clear_header(p, "Access-Control-Allow-Origin");
    return false;
}

/* Access-Control-Allow-Credentials; with "*" allowed, the request's origin
 * replaces "*" (a browser refuses credentials with a wildcard origin). */
static void configure_credentials(sl_pdk_t *p, const struct cors_conf *c, bool allow_all,
                                  bool header_filter, const sl_str_t *req_origin)
{
    if (!c->credentials)
        return;
    if (!allow_all) {
        sl_pdk_response_set_header(p, "Access-Control-Allow-Credentials", "true");
        return;
    }
    if (req_origin) {
        add_vary(p, header_filter);
        sl_pdk_response_set_header(p, "Access-Control-Allow-Origin",
                                   sl_pdk_strndup(p, req_origin->p, req_origin->len));
        sl_pdk_response_set_header(p, "Access-Control-Allow-Credentials", "true");
    }
}

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct cors_conf *c = conf;
    sl_str_t origin, acrm, v;
    sl_str_t method = sl_pdk_request_get_method(p);
    if (method.len != 7 || memcmp(method.p, "OPTIONS", 7) != 0 ||
        !sl_pdk_request_get_header(p, "Origin", &origin) ||
        !sl_pdk_request_get_header(p, "Access-Control-Request-Method", &acrm))
        return SL_PLUGIN_CONTINUE;

    /* A preflight: either the upstream answers it, or we answer it here
     * with every header; header_filter adds nothing either way. */
    *sl_pdk_ctx_plugin(p) = &skip_marker;
    if (c->preflight_continue)
        return SL_PLUGIN_CONTINUE;

    bool allow_all = configure_origin(p, c, false, &origin);
    configure_credentials(p, c, allow_all, false, &origin);

    if (c->headers)
        sl_pdk_response_set_header(p, "Access-Control-Allow-Headers", c->headers);
    else if (sl_pdk_request_get_header(p, "Access-Control-Request-Headers", &v))
        sl_pdk_response_set_header(p, "Access-Control-Allow-Headers",
                                   sl_pdk_strndup(p, v.p, v.len));
    else
        sl_pdk_response_clear_header(p, "Access-Control-Allow-Headers");

    sl_pdk_response_set_header(p, "Access-Control-Allow-Methods", c->methods);
    if (c->max_age)
        sl_pdk_response_set_header(p, "Access-Control-Max-Age", c->max_age);
    if (c->private_network &&
        sl_pdk_request_get_header(p, "Access-Control-Request-Private-Network", &v) && v.len == 4 &&
        !memcmp(v.p, "true", 4))
        sl_pdk_response_set_header(p, "Access-Control-Allow-Private-Network", "true");

    return sl_pdk_response_exit(p, 200, NULL, 0);
}

static void on_header_filter(sl_pdk_t *p, void *conf)
{
    const struct cors_conf *c = conf;
    if (*sl_pdk_ctx_plugin(p) == &skip_marker)
        return;
    sl_str_t origin;
    bool has_origin = sl_pdk_request_get_header(p, "Origin", &origin);
    if (!has_origin && !c->allow_origin_absent)
        return;
    const sl_str_t *req_origin = has_origin ? &origin : NULL;
    bool allow_all = configure_origin(p, c, true, req_origin);
    configure_credentials(p, c, allow_all, true, req_origin);
    if (c->exposed_headers)
        sl_pdk_response_set_header(p, "Access-Control-Expose-Headers", c->exposed_headers);
}

const sl_native_plugin_t sl_plugin_cors = {
    .name = "cors",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
    .header_filter = on_header_filter,
};
