/*
 * entities.c defines Kong's entity schemas as static tables for schema.c,
 * together with the value checks Kong's typedefs provide (hosts, paths,
 * names, tags, PEM certificates and keys, IP addresses and CIDR ranges) and
 * the few behaviours that are not plain validation: a service's `url`
 * shorthand, an upstream's `hash_on` implying consistent hashing, and the
 * write-time transformations (basic-auth password hashing, CA certificate
 * digests, target normalisation).
 *
 * The rules and messages are Kong 3.x's (kong/db/schema/typedefs.lua,
 * the entity files, the plugins' daos.lua, kong/tools/ip.lua and uri.lua) with
 * the router flavor `traditional_compatible`, except that a route's
 * path_handling accepts both "v0" and "v1". All data here is immutable; the
 * only mutable state is the plugin lookup, set once at start-up.
 */
#include "entities.h"
#include "schema_defs.h"
#include "util.h"
#include "uuid.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
    char *s;
    va_list ap;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0)
        sl_panic(__FILE__, __LINE__, "vasprintf: out of memory");
    return s;
}

/* ------------------------------------------------------------------------ */
/* Hosts and IP addresses (kong/tools/ip.lua)                                */

enum host_type { HOST_IPV4, HOST_IPV6, HOST_NAME };

struct host {
    enum host_type type;
    char addr[64]; /* normalised IP, or "" for names (the name is the input) */
    long port;     /* -1 when absent */
};

static bool all_digits(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)p[i]))
            return false;
    return true;
}

/* Decimal digits to a number, saturating (anything past 65535 is too big). */
static long parse_port(const char *p, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (p[i] - '0');
        if (v > 1000000)
            return 1000000;
    }
    return v;
}

static enum host_type hostname_type(const char *s)
{
    size_t colons = 0, other = 0, digits_dots = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ':')
            colons++;
        else if (isdigit((unsigned char)*p) || *p == '.')
            digits_dots++;
        else
            other++;
    }
    if (colons > 1)
        return HOST_IPV6;
    if (other == 0 && digits_dots > 0)
        return HOST_IPV4;
    return HOST_NAME;
}

static char *normalize_ipv4(const char *s, struct host *h)
{
    unsigned oct[4];
    const char *p = s;
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        while (isdigit((unsigned char)p[n]))
            n++;
        if (n < 1 || n > 3)
            return fmt("invalid ipv4 address: %s", s);
        oct[i] = (unsigned)parse_port(p, n);
        p += n;
        if (i < 3) {
            if (*p != '.')
                return fmt("invalid ipv4 address: %s", s);
            p++;
        }
    }
    h->port = -1;
    if (*p == ':') {
        size_t n = strlen(p + 1);
        if (!all_digits(p + 1, n))
            return fmt("invalid ipv4 address: %s", s);
        h->port = parse_port(p + 1, n);
    } else if (*p != '\0') {
        return fmt("invalid ipv4 address: %s", s);
    }
    for (int i = 0; i < 4; i++)
        if (oct[i] > 255)
            return fmt("invalid ipv4 address: %s", s);
    if (h->port > 65535)
        return sl_xstrdup("invalid port number");
    h->type = HOST_IPV4;
    snprintf(h->addr, sizeof(h->addr), "%u.%u.%u.%u", oct[0], oct[1], oct[2], oct[3]);
    return NULL;
}

static char *normalize_ipv6(const char *s, struct host *h)
{
    char check[128];
    h->port = -1;
    if (s[0] == '[') {
        /* Lua's %b[]: the bracket that balances the first one */
        int depth = 0;
        size_t i = 0;
        for (; s[i]; i++) {
            if (s[i] == '[')
                depth++;
            else if (s[i] == ']' && --depth == 0)
                break;
        }
        if (s[i] != ']' || i - 1 >= sizeof(check) - 4)
            return fmt("invalid ipv6 address: %s", s);
        memcpy(check, s + 1, i - 1);
        check[i - 1] = '\0';
        const char *rest = s + i + 1;
        if (*rest) {
            size_t n = strlen(rest + 1);
            if (rest[0] != ':' || !all_digits(rest + 1, n))
                return sl_xstrdup("invalid ipv6 address");
            h->port = parse_port(rest + 1, n);
            if (h->port > 65535)
                return sl_xstrdup("invalid port number");
        }
    } else {
        if (strlen(s) >= sizeof(check) - 4)
            return fmt("invalid ipv6 address: %s", s);
        strcpy(check, s);
    }

    /* Expand "::" as Kong does, then demand eight groups of 1-4 hex digits. */
    char buf[256];
    size_t len = strlen(check);
    snprintf(buf, sizeof(buf), "%s%s%s", check[0] == ':' ? "0" : "", check,
             len && check[len - 1] == ':' ? "0" : "");
    char *dbl = strstr(buf, "::");
    if (dbl) {
        size_t colons = 0;
        for (char *p = buf; *p; p++)
            colons += *p == ':';
        char ins[64] = ":";
        for (size_t i = colons; i < 8; i++)
            strcat(ins, "0:");
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%.*s%s%s", (int)(dbl - buf), buf, ins, dbl + 2);
        strcpy(buf, tmp);
    }
    unsigned groups[8];
    const char *p = buf;
    for (int g = 0; g < 8; g++) {
        size_t n = 0;
        unsigned v = 0;
        for (int d; n < 5 && (d = sl_hex_value(p[n])) >= 0; n++)
            v = v * 16 + (unsigned)d;
        if (n < 1 || n > 4)
            return fmt("invalid ipv6 address: %s", s);
        groups[g] = v;
        p += n;
        if (g < 7) {
            if (*p != ':')
                return fmt("invalid ipv6 address: %s", s);
            p++;
        }
    }
    if (*p != '\0')
        return fmt("invalid ipv6 address: %s", s);
    h->type = HOST_IPV6;
    snprintf(h->addr, sizeof(h->addr), "%04x:%04x:%04x:%04x:%04x:%04x:%04x:%04x", groups[0],
             groups[1], groups[2], groups[3], groups[4], groups[5], groups[6], groups[7]);
    return NULL;
}

static char *check_hostname(const char *s, struct host *h)
{
    size_t len = strlen(s), name_len = len;
    h->port = -1;
    /* a trailing ":<digits>" is a port */
    size_t d = len;
    while (d > 0 && isdigit((unsigned char)s[d - 1]))
        d--;
    if (d < len && d > 0 && s[d - 1] == ':') {
        h->port = parse_port(s + d, len - d);
        name_len = d - 1;
        if (h->port > 65535)
            return sl_xstrdup("invalid port number");
    }
    if (name_len == 0)
        return fmt("invalid hostname: %s", s);
    for (size_t i = 0; i < name_len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return fmt("invalid hostname: %s", s);
    }
    /* Labels must not end in '-' and must not be empty, except that the
     * name may end in a dot (Penlight's split drops the final empty label). */
    size_t start = 0;
    for (size_t i = 0; i <= name_len; i++) {
        if (i < name_len && s[i] != '.')
            continue;
        size_t seg = i - start;
        bool last_piece = i == name_len;
        if (seg == 0 && !last_piece && !(i + 1 == name_len))
            return fmt("invalid hostname: %s", s);
        if (seg > 0 && s[i - 1] == '-')
            return fmt("invalid hostname: %s", s);
        start = i + 1;
    }
    h->type = HOST_NAME;
    h->addr[0] = '\0';
    return NULL;
}

/* kong.tools.ip.normalize_ip: NULL on success, else a malloc'd message. */
static char *normalize_ip(const char *s, struct host *h)
{
    switch (hostname_type(s)) {
    case HOST_IPV4:
        return normalize_ipv4(s, h);
    case HOST_IPV6:
        return normalize_ipv6(s, h);
    case HOST_NAME:
        break;
    }
    return check_hostname(s, h);
}

static bool is_port_error(const char *e)
{
    return strcmp(e, "invalid port number") == 0;
}

/* typedefs.host: a hostname or IP without a port. */
static char *v_host(const json_t *v)
{
    const char *s = json_string_value(v);
    struct host h;
    char *e = normalize_ip(s, &h);
    if (e && !is_port_error(e)) {
        free(e);
        return fmt("invalid value: %s", s);
    }
    if (e || h.port >= 0) {
        free(e);
        return sl_xstrdup("must not have a port");
    }
    return NULL;
}

/* typedefs.host_with_optional_port */
static char *v_host_optional_port(const json_t *v)
{
    struct host h;
    return normalize_ip(json_string_value(v), &h);
}

/* Shared tail of typedefs.sni and typedefs.wildcard_host. */
static char *sni_check(const char *s)
{
    struct host h;
    char *e = normalize_ip(s, &h);
    if (e && !is_port_error(e)) {
        free(e);
        return fmt("invalid value: %s", s);
    }
    if (!e && h.type != HOST_NAME)
        return sl_xstrdup("must not be an IP");
    if (e || h.port >= 0) {
        free(e);
        return sl_xstrdup("must not have a port");
    }
    return NULL;
}

static char *v_sni(const json_t *v)
{
    return sni_check(json_string_value(v));
}

/* typedefs.wildcard_host: one '*' as the first or last character. */
static char *v_wildcard_host(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = strlen(s), stars = 0;
    const char *star = strchr(s, '*');
    if (star == NULL)
        return sni_check(s);
    if (star != s && star != s + len - 1)
        return sl_xstrdup("wildcard must be leftmost or rightmost character");
    char *mock = sl_xmalloc(len * 8 + 1), *o = mock;
    for (const char *p = s; *p; p++) {
        if (*p == '*') {
            stars++;
            memcpy(o, "wildcard", 8);
            o += 8;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    char *e = stars > 1 ? sl_xstrdup("only one wildcard must be specified") : sni_check(mock);
    free(mock);
    return e;
}

/* typedefs.hosts elements: hostnames with an optional port and at most one
 * wildcard, in the leftmost or rightmost label. */
static char *v_route_host(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = strlen(s), stars = 0;
    for (const char *p = s; *p; p++)
        stars += *p == '*';
    if (stars > 1)
        return sl_xstrdup("invalid wildcard: must have at most one wildcard");
    if (stars == 1 && !(len >= 2 && s[0] == '*' && s[1] == '.') &&
        !(len >= 2 && s[len - 2] == '.' && s[len - 1] == '*'))
        return sl_xstrdup("invalid wildcard: must be placed at leftmost or rightmost label");
    char *mock = sl_xmalloc(len + 3), *o = mock;
    for (const char *p = s; *p; p++) {
        if (*p == '*') {
            memcpy(o, "abc", 3);
            o += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    struct host h;
    char *e = normalize_ip(mock, &h);
    free(mock);
    return e;
}

/* typedefs.ip_or_cidr */
static bool valid_ip(const char *s, int *family)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, s, buf) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, buf) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

static char *v_ip_or_cidr(const json_t *v)
{
    const char *s = json_string_value(v);
    int fam;
    if (valid_ip(s, &fam))
        return NULL;
    const char *slash = strlen(s) > 2 ? strchr(s + 2, '/') : NULL;
    if (slash) {
        char ip[64];
        size_t n = (size_t)(slash - s);
        const char *pfx = slash + 1;
        size_t pl = strlen(pfx);
        if (n < sizeof(ip) && all_digits(pfx, pl) && pl <= 3 && !(pl > 1 && pfx[0] == '0')) {
            memcpy(ip, s, n);
            ip[n] = '\0';
            long bits = parse_port(pfx, pl);
            if (valid_ip(ip, &fam) && bits <= (fam == AF_INET ? 32 : 128))
                return NULL;
        }
    }
    return fmt("invalid ip or cidr range: '%s'", s);
}

/* kong.tools.utils.validate_header_name */
static char *v_header_name(const json_t *v)
{
    const char *s = json_string_value(v);
    if (*s == '\0')
        return sl_xstrdup("no header name provided");
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return fmt("bad header name '%s', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
                       s);
    return NULL;
}

/* A route's header names: "host" belongs in `hosts`. */
static char *v_route_header_name(const json_t *v)
{
    if (strcasecmp(json_string_value(v), "host") == 0)
        return sl_xstrdup(
            "cannot contain 'host' header, which must be specified in the 'hosts' attribute");
    return v_header_name(v);
}

static char *v_cookie_name(const json_t *v)
{
    const char *s = json_string_value(v);
    if (*s == '\0')
        return sl_xstrdup("no cookie name provided");
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return fmt("bad cookie name '%s', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
                       s);
    return NULL;
}

static char *v_http_method(const json_t *v)
{
    const char *s = json_string_value(v);
    for (const char *p = s; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return fmt("invalid value: %s", s);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Names and tags                                                            */

/* Position (1-based) of the first byte that is not valid UTF-8, or 0. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80)
            n = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else
            return i + 1;
        if (i + n > len)
            return i + 1;
        for (size_t k = 1; k < n; k++) {
            unsigned char cc = s[i + k];
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
            if (cc < l || cc > h)
                return i + 1;
        }
        i += n;
    }
    return 0;
}

/* typedefs.utf8_name: services, routes, plugin instance names. */
static char *v_utf8_name(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t bad = utf8_invalid_at((const unsigned char *)s, json_string_length(v));
    if (bad)
        return fmt("invalid utf-8 character sequence detected at position %zu", bad);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 128 || isalnum(*p) || *p == '.' || *p == '-' || *p == '_' || *p == '~')
            continue;
        return fmt("invalid value '%s': the only accepted ascii characters are alphanumerics or "
                   "., -, _, and ~",
                   s);
    }
    return NULL;
}

static char *v_tag(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t bad = utf8_invalid_at((const unsigned char *)s, json_string_length(v));
    if (bad)
        return fmt("invalid utf-8 character sequence detected at position %zu", bad);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == ' ' || (c >= 33 && c <= 126 && c != ',' && c != '/') || c >= 128)
            continue;
        return fmt("invalid tag '%s': expected printable ascii (except `,` and `/`) or valid "
                   "utf-8 sequences",
                   s);
    }
    return NULL;
}

static char *v_upstream_name(const json_t *v)
{
    const char *s = json_string_value(v);
    struct host h;
    char *e = normalize_ip(s, &h);
    if (e) {
        free(e);
        return fmt("Invalid name ('%s'); must be a valid hostname", s);
    }
    if (h.type != HOST_NAME)
        return fmt("Invalid name ('%s'); no ip addresses allowed", s);
    if (h.port >= 0)
        return fmt("Invalid name ('%s'); no port allowed", s);
    return NULL;
}

static char *v_target(const json_t *v)
{
    const char *s = json_string_value(v);
    struct host h;
    char *e = normalize_ip(s, &h);
    if (e == NULL)
        return NULL;
    free(e);
    if (utf8_invalid_at((const unsigned char *)s, json_string_length(v)))
        return sl_xstrdup("Invalid target; not a valid hostname or ip address");
    return fmt("Invalid target ('%s'); not a valid hostname or ip address", s);
}

/* ------------------------------------------------------------------------ */
/* Paths (typedefs.path, typedefs.router_path, kong.tools.uri)               */

static bool is_reserved(int c)
{
    return c && strchr("!*'();:@&=+$,/?%#[]", c) != NULL;
}

char *sl_route_path_normalize(const char *uri, bool merge_slashes)
{
    size_t len = strlen(uri);
    if (len == 0 || strcmp(uri, "/") == 0)
        return sl_xstrdup(uri);

    /* Decode %XX of everything but reserved characters, which keep their
     * (upper-cased) escape. */
    char *in = sl_xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (uri[i] == '%' && i + 2 < len && sl_hex_value(uri[i + 1]) >= 0 &&
            sl_hex_value(uri[i + 2]) >= 0) {
            int c = sl_hex_value(uri[i + 1]) * 16 + sl_hex_value(uri[i + 2]);
            if (is_reserved(c)) {
                in[n++] = '%';
                in[n++] = (char)toupper((unsigned char)uri[i + 1]);
                in[n++] = (char)toupper((unsigned char)uri[i + 2]);
            } else {
                in[n++] = (char)c;
            }
            i += 2;
        } else {
            in[n++] = uri[i];
        }
    }
    in[n] = '\0';
    if (strchr(in, '.') == NULL && (!merge_slashes || strstr(in, "//") == NULL))
        return in;

    /* RFC 3986 5.2.4 remove_dot_segments, with Kong's slash merging: the
     * output is a stack of segments, each starting with its '/'. */
    size_t *seg = sl_xmalloc((n + 1) * sizeof(*seg)); /* start offsets in out */
    char *out = sl_xmalloc(n + 2);
    size_t nseg = 0, olen = 0;
    const char *p = in;
    while (*p) {
        if (strcmp(p, "/.") == 0) {
            p = "/";
        } else if (strcmp(p, "/..") == 0) {
            p = "/";
            if (nseg > 0)
                olen = seg[--nseg];
        } else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
            p += strlen(p);
        } else if (strncmp(p, "../", 3) == 0) {
            p += 3;
        } else if (strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if (strncmp(p, "/./", 3) == 0) {
            p += 2;
        } else if (strncmp(p, "/../", 4) == 0) {
            p += 3;
            if (nseg > 0)
                olen = seg[--nseg];
        } else if (merge_slashes && strncmp(p, "//", 2) == 0) {
            p += 1;
        } else {
            /* one segment at a time: measuring all that remains on each
             * step would make a long path quadratic */
            const char *slash = strchr(p + 1, '/');
            size_t sl = slash ? (size_t)(slash - p) : strlen(p);
            seg[nseg++] = olen;
            memcpy(out + olen, p, sl);
            olen += sl;
            p += sl;
        }
    }
    out[olen] = '\0';
    free(seg);
    free(in);
    return out;
}

/* typedefs.path's custom validator: RFC 3986 characters and well-formed
 * percent escapes. *kind is set to 1 for a character error (which a router
 * path tolerates) and 2 for a percent error. */
static char *check_path_chars(const char *s, int *kind)
{
    *kind = 0;
    bool ok = s[0] == '/';
    for (const char *p = s; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("._~/%:@!$&'()*+,;=-", *p) != NULL;
    if (!ok) {
        *kind = 1;
        return fmt("invalid path: '%s' (characters outside of the reserved list of RFC 3986 "
                   "found)",
                   s);
    }
    for (const char *p = s; *p; p++) {
        if (*p != '%')
            continue;
        if (sl_hex_value(p[1]) >= 0 && sl_hex_value(p[2]) >= 0) {
            p += 2;
            continue;
        }
        /* Kong quotes the '%' and up to two following characters, counting
         * an escape that follows as "___". */
        char bad[4] = {'%', 0, 0, 0};
        for (int i = 1; i <= 2 && p[i]; i++) {
            if (p[i] == '%' && sl_hex_value(p[i + 1]) >= 0 && sl_hex_value(p[i + 2]) >= 0)
                bad[i] = '_';
            else
                bad[i] = p[i];
            if (p[i] == '%')
                break;
        }
        *kind = 2;
        return fmt("invalid url-encoded value: '%s'", bad);
    }
    return NULL;
}

/* A service's path (typedefs.path after starts_with "/"). */
static char *v_service_path(const json_t *v)
{
    const char *s = json_string_value(v);
    if (strstr(s, "//"))
        return sl_xstrdup("must not have empty segments");
    int kind;
    return check_path_chars(s, &kind);
}

/* A route path: "/prefix" (normalised) or "~/regex" (must compile). */
static char *v_router_path(const json_t *v)
{
    const char *s = json_string_value(v);
    if (strstr(s, "//"))
        return sl_xstrdup("must not have empty segments");
    if (s[0] != '/' && !(s[0] == '~' && s[1] == '/'))
        return sl_xstrdup("should start with: / (fixed path) or ~/ (regex path)");
    int kind;
    char *e = check_path_chars(s, &kind);
    if (e && kind == 2)
        return e;
    free(e);
    if (s[0] != '~') {
        char *norm = sl_route_path_normalize(s, true);
        if (strcmp(norm, s) != 0) {
            e = fmt("non-normalized path, consider use '%s' instead", norm);
            free(norm);
            return e;
        }
        free(norm);
        return NULL;
    }
    const char *re = s + 1;
    int code;
    PCRE2_SIZE off;
    pcre2_code *c =
        pcre2_compile((PCRE2_SPTR)re, json_string_length(v) - 1, PCRE2_ANCHORED, &code, &off, NULL);
    if (c) {
        pcre2_code_free(c);
        return NULL;
    }
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof(buf));
    return fmt("invalid regex: '%s' (PCRE returned: pcre2_compile() failed: %s in \"%s\")", re,
               (const char *)buf, re);
}

/* ------------------------------------------------------------------------ */
/* Certificates and keys                                                     */

static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unable to parse PEM";
}

static X509 *load_cert(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return NULL;
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return x;
}

/* An encrypted key is refused, never prompted for: OpenSSL would ask on
 * the terminal for its pass phrase. */
static int refuse_pass_phrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static EVP_PKEY *load_key(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, refuse_pass_phrase, NULL);
    BIO_free(bio);
    return k;
}

static char *v_certificate(const json_t *v)
{
    ERR_clear_error();
    X509 *x = load_cert(json_string_value(v), json_string_length(v));
    if (x) {
        X509_free(x);
        return NULL;
    }
    char *m = fmt("invalid certificate: x509.new: %s", openssl_reason());
    ERR_clear_error();
    return m;
}

static char *v_key(const json_t *v)
{
    ERR_clear_error();
    EVP_PKEY *k = load_key(json_string_value(v), json_string_length(v));
    if (k) {
        EVP_PKEY_free(k);
        return NULL;
    }
    char *m = fmt("invalid key: pkey.new: %s", openssl_reason());
    ERR_clear_error();
    return m;
}

/* 1 when the certificate's public key is the key's, 0 when not, -1 when
 * either does not parse (an error already reported on the field). */
static int cert_matches_key(const json_t *cert, const json_t *key, int *type)
{
    if (!json_is_string(cert) || !json_is_string(key))
        return -1;
    X509 *x = load_cert(json_string_value(cert), json_string_length(cert));
    EVP_PKEY *k = load_key(json_string_value(key), json_string_length(key));
    int rc = -1;
    if (x && k) {
        rc = EVP_PKEY_eq(X509_get0_pubkey(x), k) == 1;
        if (type)
            *type = EVP_PKEY_get_base_id(k);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

static char *check_certificate(const json_t *e)
{
    int t1 = 0, t2 = 0;
    if (cert_matches_key(json_object_get(e, "cert"), json_object_get(e, "key"), &t1) == 0)
        return sl_xstrdup("certificate does not match key");
    const json_t *ca = json_object_get(e, "cert_alt"), *ka = json_object_get(e, "key_alt");
    if (json_is_string(ca) && json_is_string(ka)) {
        int rc = cert_matches_key(ca, ka, &t2);
        if (rc == 0)
            return sl_xstrdup("alternative certificate does not match key");
        if (rc == 1 && t1 != 0 && t1 == t2)
            return sl_xstrdup("certificate and alternative certificate need to have different "
                              "type (e.g. RSA and ECDSA), the provided certificates were both of "
                              "the same type");
    }
    return NULL;
}

static char *check_ca_certificate(const json_t *e)
{
    const json_t *cert = json_object_get(e, "cert");
    if (!json_is_string(cert))
        return NULL;
    const char *pem = json_string_value(cert);
    const char *first = strstr(pem, "-----BEGIN CERTIFICATE-----");
    if (first && strstr(first + 1, "-----BEGIN CERTIFICATE-----"))
        return sl_xstrdup("please submit only one certificate at a time");
    X509 *x = load_cert(pem, json_string_length(cert));
    ERR_clear_error();
    if (x == NULL)
        return NULL;
    char *m = NULL;
    if (X509_cmp_time(X509_get0_notAfter(x), NULL) < 0)
        m = sl_xstrdup("certificate expired, \"Not After\" time is in the past");
    else if (!(X509_get_extension_flags(x) & EXFLAG_CA))
        m = sl_xstrdup("certificate does not appear to be a CA because it is missing the \"CA\" "
                       "basic constraint");
    X509_free(x);
    return m;
}

/* ------------------------------------------------------------------------ */
/* Field building blocks                                                     */

/* The shapes that plugin_schemas.c uses too are in schema_defs.h. */

static const char *const protocols_all[] = {"grpc", "grpcs",           "http", "https", "tcp",
                                            "tls",  "tls_passthrough", "udp",  NULL};

#define F_ID                                                                                       \
    {                                                                                              \
        .name = "id", .type = SL_FT_STRING, .flags = SL_F_UUID | SL_F_AUTO                         \
    }
#define F_CREATED_AT                                                                               \
    {                                                                                              \
        .name = "created_at", .type = SL_FT_INTEGER, .flags = SL_F_TIMESTAMP | SL_F_AUTO           \
    }
#define F_UPDATED_AT                                                                               \
    {                                                                                              \
        .name = "updated_at", .type = SL_FT_INTEGER, .flags = SL_F_TIMESTAMP | SL_F_AUTO           \
    }
#define F_CREATED_AT_MS                                                                            \
    {                                                                                              \
        .name = "created_at", .type = SL_FT_NUMBER, .flags = SL_F_TIMESTAMP | SL_F_AUTO            \
    }
#define F_UPDATED_AT_MS                                                                            \
    {                                                                                              \
        .name = "updated_at", .type = SL_FT_NUMBER, .flags = SL_F_TIMESTAMP | SL_F_AUTO            \
    }

static const sl_field_t tag_field = {.type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_tag};
#define F_TAGS                                                                                     \
    {                                                                                              \
        .name = "tags", .type = SL_FT_SET, .elements = &tag_field                                  \
    }

#define F_UTF8_NAME(nm)                                                                            \
    {                                                                                              \
        .name = (nm), .type = SL_FT_STRING, .flags = SL_F_UNIQUE, .custom = v_utf8_name            \
    }

/* ------------------------------------------------------------------------ */
/* services                                                                  */

static const char *const url_scheme_chars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.";

/*
 * A service's `url` is split the way LuaSocket's url.parse does (fragment,
 * then scheme, then "//authority", then query and params; the rest is the
 * path) and replaces protocol, host, port and path.
 */
static void service_shorthand(json_t *e, json_t *errs)
{
    json_t *url = json_object_get(e, "url");
    if (url == NULL)
        return;
    if (!json_is_string(url)) {
        json_object_set_new(errs, "url", json_string("expected a string"));
        return;
    }
    if (json_string_length(url) == 0) {
        json_object_set_new(errs, "url", json_string("length must be at least 1"));
        return;
    }
    char *buf = sl_xstrdup(json_string_value(url)), *s = buf;
    char *scheme = NULL, *authority = NULL, *path = NULL, *host = NULL, *port = NULL;

    char *hash = strchr(s, '#');
    if (hash)
        *hash = '\0';
    if (isalnum((unsigned char)s[0])) {
        size_t n = strspn(s, url_scheme_chars);
        if (s[n] == ':') {
            s[n] = '\0';
            scheme = s;
            s += n + 1;
        }
    }
    if (s[0] == '/' && s[1] == '/') {
        authority = s + 2;
        size_t n = strcspn(authority, "/");
        char *rest = authority + n;
        /* keep the path's leading '/' by shifting the authority left */
        memmove(s, authority, n);
        s[n] = '\0';
        authority = s;
        s = rest;
    }
    char *q = strchr(s, '?');
    if (q)
        *q = '\0';
    char *semi = strchr(s, ';');
    if (semi)
        *semi = '\0';
    if (*s)
        path = s;
    if (authority) {
        char *at = strchr(authority, '@');
        if (at)
            authority = at + 1;
        char *colon = strrchr(authority, ':');
        if (colon && strchr(colon, ']') == NULL) {
            *colon = '\0';
            port = colon + 1;
        }
        if (*authority) {
            size_t n = strlen(authority);
            if (authority[0] == '[' && n > 2 && authority[n - 1] == ']') {
                authority[n - 1] = '\0';
                host = authority + 1;
            } else {
                host = authority;
            }
        }
    }

    long pnum = -1;
    if (port && *port && strspn(port, "0123456789") == strlen(port) && strlen(port) < 10)
        pnum = strtol(port, NULL, 10);
    const char *protocol = scheme;
    if (protocol == NULL)
        protocol = pnum == 80 ? "http" : pnum == 443 ? "https" : "http";

    json_object_set_new(e, "protocol", json_string(protocol));
    json_object_set_new(e, "host", host ? json_string(host) : json_null());
    if (pnum >= 0)
        json_object_set_new(e, "port", json_integer(pnum));
    else if (port)
        json_object_set_new(e, "port", json_string(port));
    else
        json_object_set_new(e, "port", json_integer(strcmp(protocol, "https") == 0 ? 443 : 80));
    json_object_set_new(e, "path", path ? json_string(path) : json_null());
    json_object_del(e, "url");
    free(buf);
}

static const char *const tls_protocols[] = {"https", "tls", NULL};
static const char *const no_path_protocols[] = {"tcp", "tls", "udp", "grpc", "grpcs", NULL};

#define SERVICE_TLS_ONLY(fld)                                                                      \
    {                                                                                              \
        .kind = SL_CHECK_CONDITIONAL, .if_field = "protocol",                                      \
        .if_match = {.not_one_of = tls_protocols}, .then_field = (fld), .then_match = {            \
            .flags = SL_M_EQ_NULL                                                                  \
        }                                                                                          \
    }

static const sl_check_t service_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL,
     .if_field = "protocol",
     .if_match = {.one_of = no_path_protocols},
     .then_field = "path",
     .then_match = {.flags = SL_M_EQ_NULL}},
    SERVICE_TLS_ONLY("client_certificate"),
    SERVICE_TLS_ONLY("tls_verify"),
    SERVICE_TLS_ONLY("tls_verify_depth"),
    SERVICE_TLS_ONLY("ca_certificates"),
    {.kind = SL_CHECK_END},
};

static const sl_field_t uuid_element = {.type = SL_FT_STRING, .flags = SL_F_UUID};

#define NONZERO_TIMEOUT(nm) SL_FIELD_INT_BETWEEN(nm, 60000, 1, 2147483646)

static const sl_field_t service_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    F_UTF8_NAME("name"),
    SL_FIELD_INT_BETWEEN("retries", 5, 0, 32767),
    {.name = "protocol",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_STRING,
     .def_str = "http",
     .one_of = protocols_all},
    {.name = "host", .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_host},
    {.name = "port",
     .type = SL_FT_INTEGER,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_INT,
     .def_int = 80,
     .between = true,
     .min = 0,
     .max = 65535},
    {.name = "path", .type = SL_FT_STRING, .starts_with = "/", .custom = v_service_path},
    NONZERO_TIMEOUT("connect_timeout"),
    NONZERO_TIMEOUT("write_timeout"),
    NONZERO_TIMEOUT("read_timeout"),
    F_TAGS,
    SL_FIELD_FOREIGN("client_certificate", "certificates", 0),
    {.name = "tls_verify", .type = SL_FT_BOOLEAN},
    {.name = "tls_verify_depth", .type = SL_FT_INTEGER, .between = true, .min = 0, .max = 64},
    {.name = "ca_certificates", .type = SL_FT_ARRAY, .elements = &uuid_element},
    SL_FIELD_BOOL("enabled", 1, SL_F_REQUIRED),
    SL_FIELDS_END,
};

static const sl_schema_t services_schema = {
    .name = "services",
    .fields = service_fields,
    .checks = service_checks,
    .endpoint_key = "name",
    .shorthand = service_shorthand,
};

/* ------------------------------------------------------------------------ */
/* routes                                                                    */

static const char *const proto_subsets[][4] = {
    {"http", "https", NULL},
    {"tcp", "tls", "udp", NULL},
    {"tls_passthrough", NULL},
    {"grpc", "grpcs", NULL},
};

/* mutually_exclusive_subsets: protocols from at most one family. */
static char *v_route_protocols(const json_t *v)
{
    int order[4], n = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *p = json_string_value(json_array_get(v, i));
        for (int s = 0; p && s < 4; s++) {
            bool member = false;
            for (int k = 0; proto_subsets[s][k]; k++)
                member |= strcmp(proto_subsets[s][k], p) == 0;
            bool seen = false;
            for (int k = 0; k < n; k++)
                seen |= order[k] == s;
            if (member && !seen)
                order[n++] = s;
        }
    }
    if (n <= 1)
        return NULL;
    char buf[512];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        char *l = sl_schema_quoted_list(proto_subsets[order[i]]);
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s(%s)", i ? ", " : "", l);
        free(l);
    }
    return fmt("these sets are mutually exclusive: %s", buf);
}

static const sl_field_t protocol_element = {
    .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .one_of = protocols_all};
static const sl_field_t method_element = {.type = SL_FT_STRING, .custom = v_http_method};
static const sl_field_t route_host_element = {.type = SL_FT_STRING, .custom = v_route_host};
static const sl_field_t route_path_element = {.type = SL_FT_STRING, .custom = v_router_path};
static const sl_field_t wildcard_host_element = {.type = SL_FT_STRING, .custom = v_wildcard_host};
static const sl_field_t route_header_key = {.type = SL_FT_STRING, .custom = v_route_header_name};
static const sl_field_t string_element = {.type = SL_FT_STRING};
static const sl_field_t header_values = {.type = SL_FT_ARRAY, .elements = &string_element};

static const sl_field_t ip_source_fields[] = {
    {.name = "ip", .type = SL_FT_STRING, .custom = v_ip_or_cidr},
    {.name = "port", .type = SL_FT_INTEGER, .between = true, .min = 0, .max = 65535},
    SL_FIELDS_END,
};
static const char *const ip_or_port[] = {"ip", "port", NULL};
static const sl_check_t ip_source_checks[] = {
    {.kind = SL_CHECK_AT_LEAST_ONE_OF, .fields = ip_or_port},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t ip_source_record = {.fields = ip_source_fields,
                                             .checks = ip_source_checks};
static const sl_field_t ip_source_element = {.type = SL_FT_RECORD, .record = &ip_source_record};

static const int64_t redirect_codes[] = {426, 301, 302, 307, 308};
static const char *const path_handlings[] = {"v0", "v1", NULL};

static const sl_field_t route_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    F_UTF8_NAME("name"),
    {.name = "protocols",
     .type = SL_FT_SET,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_JSON,
     .def_str = "[\"http\",\"https\"]",
     .len_min = 1,
     .elements = &protocol_element,
     .custom = v_route_protocols},
    {.name = "https_redirect_status_code",
     .type = SL_FT_INTEGER,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_INT,
     .def_int = 426,
     .one_of_int = redirect_codes,
     .n_one_of_int = SL_ARRAY_LEN(redirect_codes)},
    SL_FIELD_BOOL("strip_path", 1, SL_F_REQUIRED),
    SL_FIELD_BOOL("preserve_host", 0, SL_F_REQUIRED),
    SL_FIELD_BOOL("request_buffering", 1, SL_F_REQUIRED),
    SL_FIELD_BOOL("response_buffering", 1, SL_F_REQUIRED),
    F_TAGS,
    SL_FIELD_FOREIGN("service", "services", 0),
    {.name = "snis", .type = SL_FT_SET, .elements = &wildcard_host_element},
    {.name = "sources", .type = SL_FT_SET, .elements = &ip_source_element},
    {.name = "destinations", .type = SL_FT_SET, .elements = &ip_source_element},
    {.name = "methods", .type = SL_FT_SET, .elements = &method_element},
    {.name = "hosts", .type = SL_FT_ARRAY, .elements = &route_host_element},
    {.name = "paths", .type = SL_FT_ARRAY, .elements = &route_path_element},
    {.name = "headers", .type = SL_FT_MAP, .keys = &route_header_key, .values = &header_values},
    {.name = "regex_priority", .type = SL_FT_INTEGER, .def = SL_DEF_INT, .def_int = 0},
    {.name = "path_handling",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "v0",
     .one_of = path_handlings},
    SL_FIELDS_END,
};

static const char *const snis_protocols[] = {"grpcs", "https", "tls", "tls_passthrough", NULL};
static const sl_check_t route_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL,
     .if_field = "protocols",
     .if_match = {.elements_not_one_of = snis_protocols},
     .then_field = "snis",
     .then_match = {.flags = SL_M_LEN_EQ0},
     .then_err = "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or "
                 "'tls_passthrough'"},
    {.kind = SL_CHECK_END},
};

/* The per-protocol subschemas (routes_subschemas.lua). */
#define NO_FIELD(nm, t, errmsg, elem)                                                              \
    {                                                                                              \
        .name = (nm), .type = (t), .flags = SL_F_EQ_NULL, .err = (errmsg), .elements = (elem)      \
    }

static const sl_field_t route_http_fields[] = {
    NO_FIELD("sources", SL_FT_SET, "cannot set 'sources' when 'protocols' is 'http' or 'https'",
             &ip_source_element),
    NO_FIELD("destinations", SL_FT_SET,
             "cannot set 'destinations' when 'protocols' is 'http' or 'https'", &ip_source_element),
    SL_FIELDS_END,
};
static const char *const http_then[] = {"methods", "hosts", "headers", "paths", "snis", NULL};
static const char *const http_else[] = {"methods", "hosts", "headers", "paths", NULL};
static const sl_check_t route_http_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF,
     .if_field = "protocols",
     .if_match = {.contains = "https"},
     .then_fields = http_then,
     .then_err = "must set one of %s when 'protocols' is 'https'",
     .has_else = true,
     .else_match = {.contains = "http"},
     .else_fields = http_else,
     .else_err = "must set one of %s when 'protocols' is 'http'"},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t route_http_schema = {
    .name = "http", .fields = route_http_fields, .checks = route_http_checks};

#define STREAM_ERR(f)                                                                              \
    "cannot set '" f "' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"
static const sl_field_t route_stream_fields[] = {
    NO_FIELD("methods", SL_FT_SET, STREAM_ERR("methods"), &method_element),
    NO_FIELD("hosts", SL_FT_ARRAY, STREAM_ERR("hosts"), &route_host_element),
    NO_FIELD("paths", SL_FT_ARRAY, STREAM_ERR("paths"), &route_path_element),
    {.name = "headers",
     .type = SL_FT_MAP,
     .flags = SL_F_EQ_NULL,
     .err = STREAM_ERR("headers"),
     .keys = &route_header_key,
     .values = &header_values},
    SL_FIELDS_END,
};
static const char *const stream_l4[] = {"tcp", "tls", "udp", NULL};
static const char *const stream_then[] = {"sources", "destinations", "snis", NULL};
static const char *const passthrough_only[] = {"tls_passthrough", NULL};
static const char *const snis_only[] = {"snis", NULL};
static const sl_check_t route_stream_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF,
     .if_field = "protocols",
     .if_match = {.elements_one_of = stream_l4},
     .then_fields = stream_then,
     .then_err = "must set one of %s when 'protocols' is 'tcp', 'tls' or 'udp'"},
    {.kind = SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF,
     .if_field = "protocols",
     .if_match = {.elements_one_of = passthrough_only},
     .then_fields = snis_only,
     .then_err = "must set snis when 'protocols' is 'tls_passthrough'"},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t route_stream_schema = {
    .name = "tcp", .fields = route_stream_fields, .checks = route_stream_checks};

static const sl_field_t route_grpc_fields[] = {
    {.name = "strip_path",
     .type = SL_FT_BOOLEAN,
     .flags = SL_F_REQUIRED | SL_F_NE_TRUE,
     .def = SL_DEF_BOOL,
     .def_int = 0,
     .err = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"},
    NO_FIELD("methods", SL_FT_SET, "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'",
             &method_element),
    NO_FIELD("sources", SL_FT_SET, "cannot set 'sources' when 'protocols' is 'grpc' or 'grpcs'",
             &ip_source_element),
    NO_FIELD("destinations", SL_FT_SET,
             "cannot set 'destinations' when 'protocols' is 'grpc' or 'grpcs'", &ip_source_element),
    SL_FIELDS_END,
};
static const char *const grpc_then[] = {"hosts", "headers", "paths", "snis", NULL};
static const char *const grpc_else[] = {"hosts", "headers", "paths", NULL};
static const sl_check_t route_grpc_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL_AT_LEAST_ONE_OF,
     .if_field = "protocols",
     .if_match = {.contains = "grpcs"},
     .then_fields = grpc_then,
     .then_err = "must set one of %s when 'protocols' is 'grpcs'",
     .has_else = true,
     .else_match = {.contains = "grpc"},
     .else_fields = grpc_else,
     .else_err = "must set one of %s when 'protocols' is 'grpc'"},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t route_grpc_schema = {
    .name = "grpc", .fields = route_grpc_fields, .checks = route_grpc_checks};

static const sl_schema_t *route_subschema_named(const char *p)
{
    if (strcmp(p, "http") == 0 || strcmp(p, "https") == 0)
        return &route_http_schema;
    if (strcmp(p, "tcp") == 0 || strcmp(p, "tls") == 0 || strcmp(p, "udp") == 0 ||
        strcmp(p, "tls_passthrough") == 0)
        return &route_stream_schema;
    if (strcmp(p, "grpc") == 0 || strcmp(p, "grpcs") == 0)
        return &route_grpc_schema;
    return NULL;
}

/* The subschema of the first protocol that has one. */
static int route_subschema(const json_t *e, const sl_schema_t **out)
{
    const json_t *p = json_object_get(e, "protocols");
    *out = NULL;
    if (json_is_string(p)) {
        *out = route_subschema_named(json_string_value(p));
        return *out ? SL_OK : SL_DECLINED;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return SL_OK;
    for (size_t i = 0; i < json_array_size(p) && !*out; i++) {
        const json_t *x = json_array_get(p, i);
        if (json_is_string(x))
            *out = route_subschema_named(json_string_value(x));
    }
    return *out ? SL_OK : SL_DECLINED;
}

static const sl_schema_t routes_schema = {
    .name = "routes",
    .fields = route_fields,
    .checks = route_checks,
    .endpoint_key = "name",
    .subschema_key = "protocols",
    .subschema = route_subschema,
};

/* ------------------------------------------------------------------------ */
/* consumers                                                                 */

static const sl_field_t consumer_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    {.name = "username", .type = SL_FT_STRING, .flags = SL_F_UNIQUE},
    {.name = "custom_id", .type = SL_FT_STRING, .flags = SL_F_UNIQUE},
    F_TAGS,
    SL_FIELDS_END,
};
static const char *const consumer_ids[] = {"custom_id", "username", NULL};
static const sl_check_t consumer_checks[] = {
    {.kind = SL_CHECK_AT_LEAST_ONE_OF, .fields = consumer_ids},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t consumers_schema = {
    .name = "consumers",
    .fields = consumer_fields,
    .checks = consumer_checks,
    .endpoint_key = "username",
};

/* ------------------------------------------------------------------------ */
/* plugins                                                                   */

static sl_plugin_lookup_cb plugin_lookup;

void sl_entities_set_plugin_lookup(sl_plugin_lookup_cb lookup)
{
    plugin_lookup = lookup;
}

static int plugin_subschema(const json_t *e, const sl_schema_t **out)
{
    const json_t *name = json_object_get(e, "name");
    *out = NULL;
    if (plugin_lookup == NULL || !json_is_string(name))
        return SL_OK;
    *out = plugin_lookup(json_string_value(name));
    return *out ? SL_OK : SL_DECLINED;
}

static const sl_field_t plugin_protocol_element = {
    .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .one_of = protocols_all};
static const char *const plugin_cache_key[] = {"name", "route", "service", "consumer", NULL};

static const sl_field_t plugin_fields[] = {
    F_ID,
    {.name = "name", .type = SL_FT_STRING, .flags = SL_F_REQUIRED},
    F_UTF8_NAME("instance_name"),
    F_CREATED_AT,
    F_UPDATED_AT,
    SL_FIELD_FOREIGN("route", "routes", SL_F_CASCADE),
    SL_FIELD_FOREIGN("service", "services", SL_F_CASCADE),
    SL_FIELD_FOREIGN("consumer", "consumers", SL_F_CASCADE),
    {.name = "config", .type = SL_FT_RECORD, .def = SL_DEF_RECORD},
    {.name = "protocols",
     .type = SL_FT_SET,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_JSON,
     .def_str = "[\"grpc\",\"grpcs\",\"http\",\"https\"]",
     .elements = &plugin_protocol_element},
    SL_FIELD_BOOL("enabled", 1, SL_F_REQUIRED),
    F_TAGS,
    SL_FIELDS_END,
};
static const sl_schema_t plugins_schema = {
    .name = "plugins",
    .fields = plugin_fields,
    .endpoint_key = "instance_name",
    .cache_key = plugin_cache_key,
    .subschema_key = "name",
    .subschema = plugin_subschema,
    .subschema_error = "plugin '%s' not enabled; add it to the 'plugins' configuration property",
};

/* ------------------------------------------------------------------------ */
/* upstreams                                                                 */

static const char *const hash_on_values[] = {"none", "consumer",  "ip",          "header", "cookie",
                                             "path", "query_arg", "uri_capture", NULL};
static const char *const algorithms[] = {"consistent-hashing", "least-connections", "round-robin",
                                         "latency", NULL};
static const char *const check_types[] = {"tcp", "http", "https", "grpc", "grpcs", NULL};

static const sl_field_t status_element = {
    .type = SL_FT_INTEGER, .between = true, .min = 100, .max = 999};

#define HC_SECONDS(nm, d)                                                                          \
    {                                                                                              \
        .name = (nm), .type = SL_FT_NUMBER, .def = SL_DEF_NUMBER, .def_num = (d), .between = true, \
        .min = 0, .max = 65535                                                                     \
    }
#define HC_COUNT(nm, d, lo)                                                                        \
    {                                                                                              \
        .name = (nm), .type = SL_FT_INTEGER, .def = SL_DEF_INT, .def_int = (d), .between = true,   \
        .min = (lo), .max = 2147483648.0                                                           \
    }
#define HC_STATUSES(d)                                                                             \
    {                                                                                              \
        .name = "http_statuses", .type = SL_FT_ARRAY, .def = SL_DEF_JSON, .def_str = (d),          \
        .elements = &status_element                                                                \
    }
#define HC_TYPE                                                                                    \
    {                                                                                              \
        .name = "type", .type = SL_FT_STRING, .def = SL_DEF_STRING, .def_str = "http",             \
        .one_of = check_types                                                                      \
    }

static const sl_field_t active_healthy_fields[] = {
    HC_SECONDS("interval", 0),
    HC_STATUSES("[200,302]"),
    HC_COUNT("successes", 0, 0),
    SL_FIELDS_END,
};
static const sl_field_t active_unhealthy_fields[] = {
    HC_SECONDS("interval", 0),       HC_STATUSES("[429,404,500,501,502,503,504,505]"),
    HC_COUNT("tcp_failures", 0, 0),  HC_COUNT("timeouts", 0, 0),
    HC_COUNT("http_failures", 0, 0), SL_FIELDS_END,
};
static const sl_field_t passive_healthy_fields[] = {
    HC_STATUSES("[200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308]"),
    HC_COUNT("successes", 0, 0),
    SL_FIELDS_END,
};
static const sl_field_t passive_unhealthy_fields[] = {
    HC_STATUSES("[429,500,503]"),
    HC_COUNT("tcp_failures", 0, 0),
    HC_COUNT("timeouts", 0, 0),
    HC_COUNT("http_failures", 0, 0),
    SL_FIELDS_END,
};
static const sl_schema_t active_healthy = {.fields = active_healthy_fields};
static const sl_schema_t active_unhealthy = {.fields = active_unhealthy_fields};
static const sl_schema_t passive_healthy = {.fields = passive_healthy_fields};
static const sl_schema_t passive_unhealthy = {.fields = passive_unhealthy_fields};

static const sl_field_t header_name_key = {.type = SL_FT_STRING, .custom = v_header_name};

static const sl_field_t active_fields[] = {
    HC_TYPE,
    HC_SECONDS("timeout", 1),
    HC_COUNT("concurrency", 10, 1),
    {.name = "http_path",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "/",
     .starts_with = "/",
     .custom = v_service_path},
    {.name = "https_sni", .type = SL_FT_STRING, .custom = v_sni},
    SL_FIELD_BOOL("https_verify_certificate", 1, 0),
    {.name = "headers", .type = SL_FT_MAP, .keys = &header_name_key, .values = &header_values},
    {.name = "healthy", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &active_healthy},
    {.name = "unhealthy", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &active_unhealthy},
    SL_FIELDS_END,
};
static const sl_field_t passive_fields[] = {
    HC_TYPE,
    {.name = "healthy", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &passive_healthy},
    {.name = "unhealthy", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &passive_unhealthy},
    SL_FIELDS_END,
};
static const sl_schema_t active_record = {.fields = active_fields};
static const sl_schema_t passive_record = {.fields = passive_fields};
static const sl_field_t healthcheck_fields[] = {
    {.name = "active", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &active_record},
    {.name = "passive", .type = SL_FT_RECORD, .def = SL_DEF_RECORD, .record = &passive_record},
    {.name = "threshold",
     .type = SL_FT_NUMBER,
     .def = SL_DEF_NUMBER,
     .def_num = 0,
     .between = true,
     .min = 0,
     .max = 100},
    SL_FIELDS_END,
};
static const sl_schema_t healthchecks_record = {.fields = healthcheck_fields};

#define HASH_ON(nm)                                                                                \
    {                                                                                              \
        .name = (nm), .type = SL_FT_STRING, .def = SL_DEF_STRING, .def_str = "none",               \
        .one_of = hash_on_values                                                                   \
    }

static const sl_field_t upstream_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    {.name = "name",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED | SL_F_UNIQUE,
     .custom = v_upstream_name},
    {.name = "algorithm",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "round-robin",
     .one_of = algorithms},
    HASH_ON("hash_on"),
    HASH_ON("hash_fallback"),
    {.name = "hash_on_header", .type = SL_FT_STRING, .custom = v_header_name},
    {.name = "hash_fallback_header", .type = SL_FT_STRING, .custom = v_header_name},
    {.name = "hash_on_cookie", .type = SL_FT_STRING, .custom = v_cookie_name},
    {.name = "hash_on_cookie_path",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "/",
     .starts_with = "/",
     .custom = v_service_path},
    SL_FIELD_STRING("hash_on_query_arg"),
    SL_FIELD_STRING("hash_fallback_query_arg"),
    SL_FIELD_STRING("hash_on_uri_capture"),
    SL_FIELD_STRING("hash_fallback_uri_capture"),
    SL_FIELD_INT_BETWEEN("slots", 10000, 10, 65536),
    {.name = "healthchecks",
     .type = SL_FT_RECORD,
     .def = SL_DEF_RECORD,
     .record = &healthchecks_record},
    F_TAGS,
    {.name = "host_header", .type = SL_FT_STRING, .custom = v_host_optional_port},
    SL_FIELD_FOREIGN("client_certificate", "certificates", 0),
    SL_FIELD_BOOL("use_srv_name", 0, 0),
    SL_FIELDS_END,
};

#define IF_THEN_ONE_OF(val, ...)                                                                   \
    {                                                                                              \
        .kind = SL_CHECK_CONDITIONAL, .if_field = "hash_on",                                       \
        .if_match = {.one_of = (const char *const[]){(val), NULL}}, .then_field = "hash_fallback", \
        .then_match = {                                                                            \
            .one_of = (const char *const[]){__VA_ARGS__, NULL}                                     \
        }                                                                                          \
    }

static const char *const distinct_headers[] = {"hash_on_header", "hash_fallback_header", NULL};
static const char *const distinct_args[] = {"hash_on_query_arg", "hash_fallback_query_arg", NULL};
static const char *const distinct_captures[] = {"hash_on_uri_capture", "hash_fallback_uri_capture",
                                                NULL};

static const sl_check_t upstream_checks[] = {
    SL_REQUIRED_WHEN("hash_on", "header", "hash_on_header"),
    SL_REQUIRED_WHEN("hash_fallback", "header", "hash_fallback_header"),
    SL_REQUIRED_WHEN("hash_on", "cookie", "hash_on_cookie"),
    SL_REQUIRED_WHEN("hash_fallback", "cookie", "hash_on_cookie"),
    IF_THEN_ONE_OF("none", "none"),
    IF_THEN_ONE_OF("cookie", "none"),
    IF_THEN_ONE_OF("consumer", "none", "ip", "header", "cookie", "path", "query_arg",
                   "uri_capture"),
    IF_THEN_ONE_OF("ip", "none", "consumer", "header", "cookie", "path", "query_arg",
                   "uri_capture"),
    IF_THEN_ONE_OF("path", "none", "consumer", "ip", "header", "cookie", "query_arg",
                   "uri_capture"),
    SL_REQUIRED_WHEN("hash_on", "query_arg", "hash_on_query_arg"),
    SL_REQUIRED_WHEN("hash_fallback", "query_arg", "hash_fallback_query_arg"),
    SL_REQUIRED_WHEN("hash_on", "uri_capture", "hash_on_uri_capture"),
    SL_REQUIRED_WHEN("hash_fallback", "uri_capture", "hash_fallback_uri_capture"),
    {.kind = SL_CHECK_DISTINCT, .fields = distinct_headers},
    {.kind = SL_CHECK_DISTINCT, .fields = distinct_args},
    {.kind = SL_CHECK_DISTINCT, .fields = distinct_captures},
    {.kind = SL_CHECK_END},
};

/* Kong keeps hash_on and algorithm consistent: hashing on anything means
 * consistent hashing, and least-connections means no hashing. */
static void upstream_shorthand(json_t *e, json_t *errs)
{
    (void)errs;
    const json_t *hash_on = json_object_get(e, "hash_on");
    const json_t *algorithm = json_object_get(e, "algorithm");
    if (json_is_string(hash_on) && strcmp(json_string_value(hash_on), "none") != 0)
        json_object_set_new(e, "algorithm", json_string("consistent-hashing"));
    else if (json_is_string(algorithm) &&
             strcmp(json_string_value(algorithm), "least-connections") == 0 && hash_on == NULL)
        json_object_set_new(e, "hash_on", json_string("none"));
}

static const sl_schema_t upstreams_schema = {
    .name = "upstreams",
    .fields = upstream_fields,
    .checks = upstream_checks,
    .endpoint_key = "name",
    .shorthand = upstream_shorthand,
};

/* ------------------------------------------------------------------------ */
/* targets                                                                   */

static const char *const target_cache_key[] = {"upstream", "target", NULL};
static const sl_field_t target_fields[] = {
    F_ID,
    F_CREATED_AT_MS,
    F_UPDATED_AT_MS,
    SL_FIELD_FOREIGN("upstream", "upstreams", SL_F_REQUIRED | SL_F_CASCADE),
    {.name = "target", .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_target},
    SL_FIELD_INT_BETWEEN("weight", 100, 0, 65535),
    F_TAGS,
    SL_FIELDS_END,
};
static const sl_schema_t targets_schema = {
    .name = "targets",
    .fields = target_fields,
    .endpoint_key = "target",
    .cache_key = target_cache_key,
};

/* ------------------------------------------------------------------------ */
/* certificates, snis, ca_certificates                                       */

static const sl_field_t certificate_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    {.name = "cert", .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_certificate},
    {.name = "key", .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_key},
    {.name = "cert_alt", .type = SL_FT_STRING, .custom = v_certificate},
    {.name = "key_alt", .type = SL_FT_STRING, .custom = v_key},
    F_TAGS,
    SL_FIELDS_END,
};
static const char *const alt_pair[] = {"cert_alt", "key_alt", NULL};
static const char *const cert_pair[] = {"cert", "key", NULL};
static const sl_check_t certificate_checks[] = {
    {.kind = SL_CHECK_MUTUALLY_REQUIRED, .fields = alt_pair},
    {.kind = SL_CHECK_CUSTOM, .fields = cert_pair, .custom = check_certificate},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t certificates_schema = {
    .name = "certificates",
    .fields = certificate_fields,
    .checks = certificate_checks,
};

static const sl_field_t sni_fields[] = {
    F_ID,
    {.name = "name",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED | SL_F_UNIQUE | SL_F_UNIQUE_ALL_WS,
     .custom = v_wildcard_host},
    F_CREATED_AT,
    F_UPDATED_AT,
    F_TAGS,
    SL_FIELD_FOREIGN("certificate", "certificates", SL_F_REQUIRED),
    SL_FIELDS_END,
};
static const sl_schema_t snis_schema = {
    .name = "snis",
    .fields = sni_fields,
    .endpoint_key = "name",
};

static const sl_field_t ca_certificate_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    {.name = "cert", .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_certificate},
    {.name = "cert_digest", .type = SL_FT_STRING, .flags = SL_F_UNIQUE},
    F_TAGS,
    SL_FIELDS_END,
};
static const char *const cert_only[] = {"cert", NULL};
static const sl_check_t ca_certificate_checks[] = {
    {.kind = SL_CHECK_CUSTOM, .fields = cert_only, .custom = check_ca_certificate},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t ca_certificates_schema = {
    .name = "ca_certificates",
    .fields = ca_certificate_fields,
    .checks = ca_certificate_checks,
};

/* ------------------------------------------------------------------------ */
/* Credentials of the bundled auth plugins                                   */

#define F_CONSUMER SL_FIELD_FOREIGN("consumer", "consumers", SL_F_REQUIRED | SL_F_CASCADE)

static const char *const key_only[] = {"key", NULL};
static const sl_field_t keyauth_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    F_CONSUMER,
    {.name = "key", .type = SL_FT_STRING, .flags = SL_F_UNIQUE | SL_F_AUTO},
    F_TAGS,
    {.name = "ttl", .type = SL_FT_INTEGER, .between = true, .min = 0, .max = 100000000},
    SL_FIELDS_END,
};
static const sl_schema_t keyauth_schema = {
    .name = "keyauth_credentials",
    .fields = keyauth_fields,
    .endpoint_key = "key",
    .cache_key = key_only,
    .admin_name = "key-auths",
};

static const char *const username_only[] = {"username", NULL};
static const sl_field_t basicauth_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    F_CONSUMER,
    {.name = "username", .type = SL_FT_STRING, .flags = SL_F_REQUIRED | SL_F_UNIQUE},
    {.name = "password", .type = SL_FT_STRING, .flags = SL_F_REQUIRED},
    F_TAGS,
    SL_FIELDS_END,
};
static const sl_schema_t basicauth_schema = {
    .name = "basicauth_credentials",
    .fields = basicauth_fields,
    .endpoint_key = "username",
    .cache_key = username_only,
    .admin_name = "basic-auths",
};

/* jwt's validate_ssl_key: any PEM public or private key. */
static char *v_rsa_public_key(const json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    BIO *bio = BIO_new_mem_buf(json_string_value(v), (int)json_string_length(v));
    EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, refuse_pass_phrase, NULL) : NULL;
    if (k == NULL && bio) {
        (void)BIO_reset(bio);
        k = PEM_read_bio_PrivateKey(bio, NULL, refuse_pass_phrase, NULL);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (k) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return sl_xstrdup("invalid key");
}

static const char *const jwt_algorithms[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                             "RS512", "ES256", "ES384", "ES512", "PS256",
                                             "PS384", "PS512", "EdDSA", NULL};
static const char *const jwt_asymmetric[] = {"RS256", "RS384", "RS512", "PS256",
                                             "PS384", "PS512", "EdDSA", NULL};
static const sl_field_t jwt_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    F_CONSUMER,
    {.name = "key", .type = SL_FT_STRING, .flags = SL_F_UNIQUE | SL_F_AUTO},
    {.name = "secret", .type = SL_FT_STRING, .flags = SL_F_AUTO},
    SL_FIELD_STRING("rsa_public_key"),
    {.name = "algorithm",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "HS256",
     .one_of = jwt_algorithms},
    F_TAGS,
    SL_FIELDS_END,
};
static const sl_check_t jwt_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL,
     .if_field = "algorithm",
     .if_match = {.one_of = jwt_asymmetric},
     .then_field = "rsa_public_key",
     .then_match = {.flags = SL_M_REQUIRED, .custom = v_rsa_public_key}},
    {.kind = SL_CHECK_END},
};
static const sl_schema_t jwt_schema = {
    .name = "jwt_secrets",
    .fields = jwt_fields,
    .checks = jwt_checks,
    .endpoint_key = "key",
    .cache_key = key_only,
    .admin_name = "jwts",
};

static const char *const acl_cache_key[] = {"consumer", "group", NULL};
static const sl_field_t acl_fields[] = {
    F_ID,
    F_CREATED_AT,
    F_UPDATED_AT,
    F_CONSUMER,
    {.name = "group", .type = SL_FT_STRING, .flags = SL_F_REQUIRED},
    F_TAGS,
    SL_FIELDS_END,
};
static const sl_schema_t acls_schema = {
    .name = "acls",
    .fields = acl_fields,
    .endpoint_key = "group",
    .cache_key = acl_cache_key,
};

/* ------------------------------------------------------------------------ */
/* Lookup and metadata                                                       */

const sl_schema_t *const sl_entity_schemas[] = {
    &certificates_schema, &ca_certificates_schema,
    &snis_schema,         &services_schema,
    &routes_schema,       &consumers_schema,
    &upstreams_schema,    &targets_schema,
    &plugins_schema,      &keyauth_schema,
    &basicauth_schema,    &jwt_schema,
    &acls_schema,         NULL,
};

const sl_schema_t *sl_entity_schema(const char *name)
{
    for (size_t i = 0; sl_entity_schemas[i]; i++)
        if (strcmp(sl_entity_schemas[i]->name, name) == 0)
            return sl_entity_schemas[i];
    return NULL;
}

const char *sl_entity_endpoint_key(const sl_schema_t *s)
{
    return s->endpoint_key;
}

bool sl_entity_endpoint_key_unique(const sl_schema_t *s)
{
    if (s->endpoint_key == NULL)
        return false;
    const sl_field_t *f = sl_schema_field(s, NULL, s->endpoint_key);
    return f && (f->flags & SL_F_UNIQUE);
}

/* ------------------------------------------------------------------------ */
/* Transformations                                                           */

static void transform_basicauth(json_t *e)
{
    const json_t *pw = json_object_get(e, "password");
    const json_t *id = json_object_get(json_object_get(e, "consumer"), "id");
    if (!json_is_string(pw) || !json_is_string(id))
        return;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, json_string_value(pw), json_string_length(pw)) != 1 ||
        EVP_DigestUpdate(ctx, json_string_value(id), json_string_length(id)) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        sl_panic(__FILE__, __LINE__, "SHA-1 digest failed");
    EVP_MD_CTX_free(ctx);
    char out[2 * EVP_MAX_MD_SIZE + 1];
    sl_hex_encode(md, mdlen, out);
    json_object_set_new(e, "password", json_string(out));
}

static void transform_ca_certificate(json_t *e, bool always)
{
    const json_t *cert = json_object_get(e, "cert");
    const json_t *digest = json_object_get(e, "cert_digest");
    if (!json_is_string(cert) || (!always && json_is_string(digest)))
        return;
    X509 *x = load_cert(json_string_value(cert), json_string_length(cert));
    ERR_clear_error();
    if (x == NULL)
        return;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) == 1) {
        char out[2 * EVP_MAX_MD_SIZE + 1];
        sl_hex_encode(md, n, out);
        json_object_set_new(e, "cert_digest", json_string(out));
    }
    X509_free(x);
}

static void transform_target(json_t *e)
{
    const json_t *t = json_object_get(e, "target");
    if (!json_is_string(t))
        return;
    struct host h;
    char *err = normalize_ip(json_string_value(t), &h);
    if (err) {
        free(err);
        return;
    }
    long port = h.port >= 0 ? h.port : 8000;
    char *out;
    if (h.type == HOST_IPV6)
        out = fmt("[%s]:%ld", h.addr, port);
    else if (h.type == HOST_IPV4)
        out = fmt("%s:%ld", h.addr, port);
    else {
        const char *s = json_string_value(t);
        size_t n = strlen(s);
        if (h.port >= 0)
            n = (size_t)(strrchr(s, ':') - s);
        out = fmt("%.*s:%ld", (int)n, s, port);
    }
    json_object_set_new(e, "target", json_string(out));
    free(out);
}

void sl_entity_transform(const sl_schema_t *schema, json_t *entity, bool hash_passwords)
{
    if (schema == &basicauth_schema && hash_passwords)
        transform_basicauth(entity);
    else if (schema == &ca_certificates_schema)
        transform_ca_certificate(entity, hash_passwords);
    else if (schema == &targets_schema)
        transform_target(entity);
}
