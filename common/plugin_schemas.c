/*
 * plugin_schemas.c holds the descriptors of the bundled plugins: for each,
 * the name, Kong's PRIORITY, the phases its handler implements and the
 * subschema that the plugins entity takes for it. The subschemas are static
 * tables for schema.c, with the fields, defaults, validators, entity checks
 * and messages of Kong 3.10's kong/plugins/<name>/schema.lua and the typedefs
 * they use (kong/db/schema/typedefs.lua, kong/tools/redis/schema.lua,
 * kong/tools/queue_schema.lua).
 *
 * Two rules of Kong's plugin loader shape every table here. Nested records
 * are required unless they say otherwise (Entity.new_subschema), so an
 * absent `config.redis` or `config.queue` is filled with its own defaults,
 * and an explicit null is "required field missing". Entity checks name
 * config fields by dotted path ("config.allow"), which schema.c resolves, so
 * their errors land where Kong puts them.
 *
 * What Kong validates with Lua cannot be repeated here and is accepted as
 * given: custom_fields_by_lua values are not compiled in a sandbox, and
 * request-transformer templates ("$(...)") are not compiled. Everything is
 * immutable data plus pure validator functions, safe from any thread.
 */
#include "plugins.h"
#include "schema.h"
#include "schema_defs.h"
#include "util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Value checks shared by several plugins                                    */

static bool is_name_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_';
}

/* kong.tools.http.validate_header_name as a bool; n bytes of s. */
static bool header_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char((unsigned char)s[i]))
            return false;
    return true;
}

/* typedefs.header_name */
static char *v_header_name(const json_t *v)
{
    const char *s = json_string_value(v);
    if (header_name_ok(s, json_string_length(v)))
        return NULL;
    return sl_xasprintf("bad header name '%s', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
                        s);
}

/* Kong's `gt = 0` on number fields. */
static char *v_gt0(const json_t *v)
{
    if (json_is_number(v) && json_number_value(v) > 0)
        return NULL;
    return sl_xstrdup("value must be greater than 0");
}

/* typedefs.http_method: Lua's match "^%u+$". */
static char *v_http_method(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return sl_xasprintf("invalid value: %s", s);
    return NULL;
}

/* Lua's match "^[^:]+:.*$": a name, a colon, anything. */
static bool colon_pair(const char *s, size_t n)
{
    return n > 0 && s[0] != ':' && memchr(s, ':', n) != NULL;
}

/* ------------------------------------------------------------------------ */
/* Hosts, IP addresses and CIDR ranges (kong/tools/ip.lua)                   */

enum host_kind { HOST_IPV4, HOST_IPV6, HOST_NAME };

/* What kong.tools.ip.normalize_ip concluded about a host. */
enum host_verdict { HOST_OK, HOST_BAD_PORT, HOST_INVALID };

/* Digits to a port number, saturating well above 65535. */
static long port_value(const char *p, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n && v <= 1000000; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static bool digits_only(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)p[i]))
            return false;
    return true;
}

/* "a.b.c.d" or "a.b.c.d:port", octets of one to three digits. */
static enum host_verdict check_ipv4(const char *s, bool *has_port)
{
    const char *p = s;
    for (int i = 0; i < 4; i++) {
        size_t n = strspn(p, "0123456789");
        if (n < 1 || n > 3 || port_value(p, n) > 255)
            return HOST_INVALID;
        p += n;
        if (i < 3 && *p++ != '.')
            return HOST_INVALID;
    }
    if (*p == '\0')
        return HOST_OK;
    size_t n = strlen(p + 1);
    if (*p != ':' || n == 0 || !digits_only(p + 1, n))
        return HOST_INVALID;
    *has_port = true;
    return port_value(p + 1, n) > 65535 ? HOST_BAD_PORT : HOST_OK;
}

/* An IPv6 address, bare or in brackets with an optional port. "::" is
 * expanded as Kong does, then eight groups of one to four hex digits are
 * required. */
static enum host_verdict check_ipv6(const char *s, bool *has_port)
{
    char addr[128];
    size_t len = strlen(s);
    if (s[0] == '[') {
        int depth = 0;
        size_t i = 0;
        for (; i < len; i++) {
            depth += s[i] == '[' ? 1 : s[i] == ']' ? -1 : 0;
            if (depth == 0)
                break;
        }
        if (i == len || i - 1 >= sizeof(addr))
            return HOST_INVALID;
        memcpy(addr, s + 1, i - 1);
        addr[i - 1] = '\0';
        const char *rest = s + i + 1;
        if (*rest) {
            size_t n = strlen(rest + 1);
            if (rest[0] != ':' || n == 0 || !digits_only(rest + 1, n))
                return HOST_INVALID;
            *has_port = true;
            if (port_value(rest + 1, n) > 65535)
                return HOST_BAD_PORT;
        }
    } else {
        if (len >= sizeof(addr))
            return HOST_INVALID;
        memcpy(addr, s, len + 1);
    }

    char buf[256], tmp[256];
    size_t alen = strlen(addr);
    snprintf(buf, sizeof(buf), "%s%s%s", addr[0] == ':' ? "0" : "", addr,
             alen && addr[alen - 1] == ':' ? "0" : "");
    char *dbl = strstr(buf, "::");
    if (dbl) {
        size_t colons = 0;
        for (const char *p = buf; *p; p++)
            colons += *p == ':';
        char ins[32] = ":";
        for (size_t i = colons; i < 8; i++)
            strcat(ins, "0:");
        snprintf(tmp, sizeof(tmp), "%.*s%s%s", (int)(dbl - buf), buf, ins, dbl + 2);
        memcpy(buf, tmp, sizeof(buf));
    }
    const char *p = buf;
    for (int g = 0; g < 8; g++) {
        size_t n = strspn(p, "0123456789abcdefABCDEF");
        if (n < 1 || n > 4)
            return HOST_INVALID;
        p += n;
        if (g < 7 && *p++ != ':')
            return HOST_INVALID;
    }
    return *p == '\0' ? HOST_OK : HOST_INVALID;
}

/* A host name with an optional ":port": letters, digits, '-', '.', '_';
 * no label ends in '-' and none is empty except at the very end. */
static enum host_verdict check_name(const char *s, bool *has_port)
{
    size_t len = strlen(s), name_len = len;
    size_t d = len;
    while (d > 0 && isdigit((unsigned char)s[d - 1]))
        d--;
    if (d < len && d > 0 && s[d - 1] == ':') {
        name_len = d - 1;
        *has_port = true;
        if (port_value(s + d, len - d) > 65535)
            return HOST_BAD_PORT;
    }
    if (name_len == 0)
        return HOST_INVALID;
    for (size_t i = 0; i < name_len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return HOST_INVALID;
    }
    size_t start = 0;
    for (size_t i = 0; i <= name_len; i++) {
        if (i < name_len && s[i] != '.')
            continue;
        size_t seg = i - start;
        if (seg == 0 && i != name_len && i + 1 != name_len)
            return HOST_INVALID;
        if (seg > 0 && s[i - 1] == '-')
            return HOST_INVALID;
        start = i + 1;
    }
    return HOST_OK;
}

/* kong.tools.ip.normalize_ip reduced to its verdict and the address kind. */
static enum host_verdict check_host(const char *s, enum host_kind *kind, bool *has_port)
{
    size_t colons = 0, other = 0, digits = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ':')
            colons++;
        else if (isdigit((unsigned char)*p) || *p == '.')
            digits++;
        else
            other++;
    }
    *has_port = false;
    if (colons > 1) {
        *kind = HOST_IPV6;
        return check_ipv6(s, has_port);
    }
    if (other == 0 && digits > 0) {
        *kind = HOST_IPV4;
        return check_ipv4(s, has_port);
    }
    *kind = HOST_NAME;
    return check_name(s, has_port);
}

/* typedefs.host, or with ip_ok false typedefs.sni: a name (or an address)
 * without a port. */
static char *check_host_value(const json_t *v, bool ip_ok)
{
    const char *s = json_string_value(v);
    enum host_kind kind;
    bool port;
    enum host_verdict r = check_host(s, &kind, &port);
    if (r == HOST_INVALID)
        return sl_xasprintf("invalid value: %s", s);
    if (!ip_ok && r == HOST_OK && kind != HOST_NAME)
        return sl_xstrdup("must not be an IP");
    if (r == HOST_BAD_PORT || port)
        return sl_xstrdup("must not have a port");
    return NULL;
}

static char *v_host(const json_t *v)
{
    return check_host_value(v, true);
}

static char *v_sni(const json_t *v)
{
    return check_host_value(v, false);
}

static bool ip_family(const char *s, int *family)
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

/* typedefs.ip_or_cidr: an IPv4 or IPv6 address, alone or with a prefix
 * length in range for its family (no sign, no leading zero). */
static char *v_ip_or_cidr(const json_t *v)
{
    const char *s = json_string_value(v);
    int fam;
    if (ip_family(s, &fam))
        return NULL;
    const char *slash = strrchr(s, '/');
    if (slash && slash > s) {
        char ip[64];
        size_t n = (size_t)(slash - s), bl = strlen(slash + 1);
        const char *bits = slash + 1;
        if (n < sizeof(ip) && bl >= 1 && bl <= 3 && digits_only(bits, bl) &&
            !(bl > 1 && bits[0] == '0')) {
            memcpy(ip, s, n);
            ip[n] = '\0';
            if (ip_family(ip, &fam) && port_value(bits, bl) <= (fam == AF_INET ? 32 : 128))
                return NULL;
        }
    }
    return sl_xasprintf("invalid ip or cidr range: '%s'", s);
}

/* ------------------------------------------------------------------------ */
/* URLs and paths                                                            */

struct url_parts {
    bool scheme, host, userinfo;
};

/*
 * LuaSocket's url.parse, reduced to what the schemas ask of it: the fragment
 * goes first, then "scheme:", then "//authority" up to the next '/'; in the
 * authority, "userinfo@" and a trailing ":port" are removed and whatever
 * remains (unbracketed) is the host.
 */
static struct url_parts parse_url(const char *url)
{
    struct url_parts u = {0};
    size_t end = strcspn(url, "#");
    const char *p = url;
    if (isalnum((unsigned char)p[0])) {
        size_t n = 1;
        while (n < end && (isalnum((unsigned char)p[n]) || strchr("+-.", p[n])))
            n++;
        if (n < end && p[n] == ':') {
            u.scheme = true;
            p += n + 1;
        }
    }
    size_t rest = end - (size_t)(p - url);
    if (rest < 2 || p[0] != '/' || p[1] != '/')
        return u;
    const char *auth = p + 2;
    size_t alen = 0;
    while (alen < rest - 2 && auth[alen] != '/')
        alen++;
    const char *at = memchr(auth, '@', alen);
    if (at) {
        u.userinfo = true;
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    /* ":port": the last ':' when nothing after it is ':' or ']' */
    for (size_t i = alen; i > 0; i--) {
        if (auth[i - 1] == ']')
            break;
        if (auth[i - 1] == ':') {
            alen = i - 1;
            break;
        }
    }
    u.host = alen > 0;
    return u;
}

/* typedefs.url */
static char *v_url(const json_t *v)
{
    struct url_parts u = parse_url(json_string_value(v));
    if (!u.host)
        return sl_xstrdup("missing host in url");
    if (!u.scheme)
        return sl_xstrdup("missing scheme in url");
    return NULL;
}

/* typedefs.path after its starts_with "/": no empty segment, only RFC 3986
 * characters, and every '%' starting a two-digit escape. A bad escape is
 * quoted as Kong does, with the '%' and up to two characters after it, an
 * escape among them counting as "___". */
static char *v_path(const json_t *v)
{
    const char *s = json_string_value(v);
    if (strstr(s, "//"))
        return sl_xstrdup("must not have empty segments");
    for (const char *p = s + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._~/%:@!$&'()*+,;=-", *p))
            return sl_xasprintf("invalid path: '%s' (characters outside of the reserved list of "
                                "RFC 3986 found)",
                                s);
    for (const char *p = s; *p; p++) {
        if (*p != '%')
            continue;
        if (sl_hex_value(p[1]) >= 0 && sl_hex_value(p[2]) >= 0) {
            p += 2;
            continue;
        }
        char bad[4] = {'%', 0, 0, 0};
        for (int i = 1; i <= 2 && p[i]; i++) {
            if (p[i] == '%' && sl_hex_value(p[i + 1]) >= 0 && sl_hex_value(p[i + 2]) >= 0) {
                memset(bad + i, '_', (size_t)(3 - i));
                break;
            }
            bad[i] = p[i];
        }
        return sl_xasprintf("invalid url-encoded value: '%s'", bad);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Field building blocks                                                     */

/* The shapes that entities.c uses too are in schema_defs.h. */

/* A string with a default. */
#define F_STRING_DEF(nm, dflt)                                                                     \
    {                                                                                              \
        .name = (nm), .type = SL_FT_STRING, .def = SL_DEF_STRING, .def_str = (dflt)                \
    }

/* A number field whose default is a whole number, kept an integer in JSON as
 * Kong prints it. */
#define F_NUMBER_DEF(nm, dflt)                                                                     \
    {                                                                                              \
        .name = (nm), .type = SL_FT_NUMBER, .def = SL_DEF_INT, .def_int = (dflt)                   \
    }

/* A nested record of the fields flds: required, so it is always filled with
 * its defaults. */
#define F_RECORD(nm, flds)                                                                         \
    {                                                                                              \
        .name = (nm), .type = SL_FT_RECORD, .record = &(const sl_schema_t){.fields = (flds)},      \
        .flags = SL_F_REQUIRED, .def = SL_DEF_RECORD                                               \
    }

/* The "config" field of a plugin subschema: a record of the fields flds,
 * with check (or NULL) run on it once its fields are valid. */
#define F_CONFIG(flds, check)                                                                      \
    {                                                                                              \
        .name = "config", .type = SL_FT_RECORD, .flags = SL_F_REQUIRED, .def = SL_DEF_RECORD,      \
        .record = &(const sl_schema_t){.fields = (flds)}, .custom = (check)                        \
    }

/* typedefs.no_consumer: the plugin cannot be scoped to a consumer. */
#define F_NO_CONSUMER SL_FIELD_FOREIGN("consumer", "consumers", SL_F_EQ_NULL | SL_F_CASCADE)

static const char *const http_protocols[] = {"grpc", "grpcs", "http", "https", NULL};
static const char *const all_protocols[] = {"grpc", "grpcs",           "http", "https", "tcp",
                                            "tls",  "tls_passthrough", "udp",  NULL};

static const sl_field_t http_protocol_element = {
    .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .one_of = http_protocols};
static const sl_field_t any_protocol_element = {
    .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .one_of = all_protocols};

/* typedefs.protocols_http */
#define F_PROTOCOLS_HTTP                                                                           \
    {                                                                                              \
        .name = "protocols", .type = SL_FT_SET, .flags = SL_F_REQUIRED, .def = SL_DEF_JSON,        \
        .def_str = "[\"grpc\",\"grpcs\",\"http\",\"https\"]", .elements = &http_protocol_element   \
    }

static const sl_field_t string_element = {.type = SL_FT_STRING};
static const sl_field_t header_name_element = {.type = SL_FT_STRING, .custom = v_header_name};

/* An array of strings: optional, or required with an empty default. */
#define F_STRINGS(nm)                                                                              \
    {                                                                                              \
        .name = (nm), .type = SL_FT_ARRAY, .elements = &string_element                             \
    }
#define F_STRINGS_DEF(nm, elem)                                                                    \
    {                                                                                              \
        .name = (nm), .type = SL_FT_ARRAY, .flags = SL_F_REQUIRED, .def = SL_DEF_JSON,             \
        .def_str = "[]", .elements = (elem)                                                        \
    }

/* typedefs.lua_code (string keys and values), without the sandbox compile
 * of the values. */
#define F_LUA_CODE                                                                                 \
    {                                                                                              \
        .name = "custom_fields_by_lua", .type = SL_FT_MAP, .keys = &string_element,                \
        .values = &string_element                                                                  \
    }

/* The descriptor of a bundled plugin, whose subschema has the plugin's name,
 * the fields flds and the entity checks chks (or NULL). */
#define BUNDLED_PLUGIN(nm, prio, ph, flds, chks)                                                   \
    {                                                                                              \
        .name = (nm),                                                                              \
        .schema = &(const sl_schema_t){.name = (nm), .fields = (flds), .checks = (chks)},          \
        .version = SL_BUNDLED_PLUGIN_VERSION, .priority = (prio), .phases = (ph)                   \
    }

/* config.allow and config.deny, of which acl and ip-restriction want one. */
static const char *const allow_deny[] = {"config.allow", "config.deny", NULL};

/* ------------------------------------------------------------------------ */
/* key-auth                                                                  */

static const sl_field_t keyauth_config_fields[] = {
    {.name = "key_names",
     .type = SL_FT_ARRAY,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_JSON,
     .def_str = "[\"apikey\"]",
     .elements = &header_name_element},
    SL_FIELD_BOOL("hide_credentials", 0, SL_F_REQUIRED),
    SL_FIELD_STRING("anonymous"),
    SL_FIELD_BOOL("key_in_header", 1, SL_F_REQUIRED),
    SL_FIELD_BOOL("key_in_query", 1, SL_F_REQUIRED),
    SL_FIELD_BOOL("key_in_body", 0, SL_F_REQUIRED),
    SL_FIELD_BOOL("run_on_preflight", 1, SL_F_REQUIRED),
    SL_FIELD_STRING("realm"),
    SL_FIELDS_END,
};
static const sl_field_t keyauth_fields[] = {
    F_NO_CONSUMER,
    F_PROTOCOLS_HTTP,
    F_CONFIG(keyauth_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t keyauth_plugin =
    BUNDLED_PLUGIN("key-auth", 1250, SL_PHASE_ACCESS, keyauth_fields, NULL);

/* ------------------------------------------------------------------------ */
/* basic-auth                                                                */

static const sl_field_t basicauth_config_fields[] = {
    SL_FIELD_STRING("anonymous"),
    SL_FIELD_BOOL("hide_credentials", 0, SL_F_REQUIRED),
    {.name = "realm",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_STRING,
     .def_str = "service"},
    SL_FIELDS_END,
};
static const sl_field_t basicauth_fields[] = {
    F_NO_CONSUMER,
    F_PROTOCOLS_HTTP,
    F_CONFIG(basicauth_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t basicauth_plugin =
    BUNDLED_PLUGIN("basic-auth", 1100, SL_PHASE_ACCESS, basicauth_fields, NULL);

/* ------------------------------------------------------------------------ */
/* jwt                                                                       */

static const char *const jwt_claims[] = {"exp", "nbf", NULL};
static const sl_field_t jwt_claim_element = {.type = SL_FT_STRING, .one_of = jwt_claims};

static const sl_field_t jwt_config_fields[] = {
    {.name = "uri_param_names",
     .type = SL_FT_SET,
     .def = SL_DEF_JSON,
     .def_str = "[\"jwt\"]",
     .elements = &string_element},
    {.name = "cookie_names",
     .type = SL_FT_SET,
     .def = SL_DEF_JSON,
     .def_str = "[]",
     .elements = &string_element},
    F_STRING_DEF("key_claim_name", "iss"),
    SL_FIELD_BOOL("secret_is_base64", 0, SL_F_REQUIRED),
    {.name = "claims_to_verify", .type = SL_FT_SET, .elements = &jwt_claim_element},
    SL_FIELD_STRING("anonymous"),
    SL_FIELD_BOOL("run_on_preflight", 1, SL_F_REQUIRED),
    {.name = "maximum_expiration",
     .type = SL_FT_NUMBER,
     .def = SL_DEF_INT,
     .def_int = 0,
     .between = true,
     .min = 0,
     .max = 31536000},
    {.name = "header_names",
     .type = SL_FT_SET,
     .def = SL_DEF_JSON,
     .def_str = "[\"authorization\"]",
     .elements = &string_element},
    SL_FIELD_STRING("realm"),
    SL_FIELDS_END,
};
static const sl_field_t jwt_fields[] = {
    F_NO_CONSUMER,
    F_PROTOCOLS_HTTP,
    F_CONFIG(jwt_config_fields, NULL),
    SL_FIELDS_END,
};
/* The `if_match = { gt = 0 }` of jwt's check, which Kong applies together
 * with the field's own type and range. */
static char *v_jwt_expiration_set(const json_t *v)
{
    double d = json_number_value(v);
    if (json_is_number(v) && d > 0 && d <= 31536000)
        return NULL;
    return sl_xstrdup("value must be greater than 0");
}

/* A maximum expiration only makes sense when "exp" is verified. */
static const sl_check_t jwt_checks[] = {
    {.kind = SL_CHECK_CONDITIONAL,
     .if_field = "config.maximum_expiration",
     .if_match = {.custom = v_jwt_expiration_set},
     .then_field = "config.claims_to_verify",
     .then_match = {.contains = "exp"}},
    {.kind = SL_CHECK_END},
};
static const sl_plugin_info_t jwt_plugin =
    BUNDLED_PLUGIN("jwt", 1450, SL_PHASE_ACCESS, jwt_fields, jwt_checks);

/* ------------------------------------------------------------------------ */
/* acl                                                                       */

static const sl_field_t acl_config_fields[] = {
    F_STRINGS("allow"),
    F_STRINGS("deny"),
    SL_FIELD_BOOL("hide_groups_header", 0, SL_F_REQUIRED),
    SL_FIELD_BOOL("always_use_authenticated_groups", 0, SL_F_REQUIRED),
    SL_FIELDS_END,
};
static const sl_field_t acl_fields[] = {
    F_NO_CONSUMER,
    F_PROTOCOLS_HTTP,
    F_CONFIG(acl_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_check_t acl_checks[] = {
    {.kind = SL_CHECK_ONLY_ONE_OF, .fields = allow_deny},
    {.kind = SL_CHECK_AT_LEAST_ONE_OF, .fields = allow_deny},
    {.kind = SL_CHECK_END},
};
static const sl_plugin_info_t acl_plugin =
    BUNDLED_PLUGIN("acl", 950, SL_PHASE_ACCESS, acl_fields, acl_checks);

/* ------------------------------------------------------------------------ */
/* rate-limiting                                                             */

/* kong/tools/redis/schema.lua */
static const sl_field_t redis_fields[] = {
    {.name = "host", .type = SL_FT_STRING, .custom = v_host},
    SL_FIELD_INT_BETWEEN("port", 6379, 0, 65535),
    SL_FIELD_INT_BETWEEN("timeout", 2000, 0, 2147483646),
    SL_FIELD_STRING("username"),
    {.name = "password", .type = SL_FT_STRING, .flags = SL_F_EMPTY_OK},
    {.name = "database", .type = SL_FT_INTEGER, .def = SL_DEF_INT, .def_int = 0},
    SL_FIELD_BOOL("ssl", 0, 0),
    SL_FIELD_BOOL("ssl_verify", 0, 0),
    {.name = "server_name", .type = SL_FT_STRING, .custom = v_sni},
    SL_FIELDS_END,
};

static const char *const ratelimit_periods[] = {"second", "minute", "hour", "day", "month", "year"};
static const char *const ratelimit_limit_by[] = {"consumer", "credential", "ip", "service",
                                                 "header",   "path",       NULL};
static const char *const ratelimit_policies[] = {"local", "cluster", "redis", NULL};

#define F_PERIOD(nm)                                                                               \
    {                                                                                              \
        .name = (nm), .type = SL_FT_NUMBER, .custom = v_gt0                                        \
    }

/*
 * The config record's own check, run once its fields are valid: a longer
 * period may not allow fewer requests than a shorter one, and sync_rate
 * (how often counters reach Redis) is for the redis policy only.
 */
static char *check_ratelimit_config(const json_t *config)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(ratelimit_periods); i++) {
        const json_t *lo = json_object_get(config, ratelimit_periods[i]);
        if (!json_is_number(lo))
            continue;
        for (size_t j = i + 1; j < SL_ARRAY_LEN(ratelimit_periods); j++) {
            const json_t *hi = json_object_get(config, ratelimit_periods[j]);
            if (json_is_number(hi) && json_number_value(hi) < json_number_value(lo))
                return sl_xasprintf("The limit for %s(%.1f) cannot be lower than the limit for "
                                    "%s(%.1f)",
                                    ratelimit_periods[j], json_number_value(hi),
                                    ratelimit_periods[i], json_number_value(lo));
        }
    }
    const json_t *policy = json_object_get(config, "policy");
    double sync_rate = json_number_value(json_object_get(config, "sync_rate"));
    bool redis = json_is_string(policy) && strcmp(json_string_value(policy), "redis") == 0;
    if (!redis && sync_rate != -1)
        return sl_xstrdup("sync_rate can only be used with the redis policy");
    if (redis && sync_rate != -1 && sync_rate < 0.02)
        return sl_xstrdup("sync_rate must be greater than 0.02, or -1 to disable");
    return NULL;
}

static const sl_field_t ratelimit_config_fields[] = {
    F_PERIOD("second"),
    F_PERIOD("minute"),
    F_PERIOD("hour"),
    F_PERIOD("day"),
    F_PERIOD("month"),
    F_PERIOD("year"),
    {.name = "limit_by",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "consumer",
     .one_of = ratelimit_limit_by},
    {.name = "header_name", .type = SL_FT_STRING, .custom = v_header_name},
    {.name = "path", .type = SL_FT_STRING, .starts_with = "/", .custom = v_path},
    {.name = "policy",
     .type = SL_FT_STRING,
     .flags = SL_F_EMPTY_OK,
     .def = SL_DEF_STRING,
     .def_str = "local",
     .one_of = ratelimit_policies},
    SL_FIELD_BOOL("fault_tolerant", 1, SL_F_REQUIRED),
    F_RECORD("redis", redis_fields),
    SL_FIELD_BOOL("hide_client_headers", 0, SL_F_REQUIRED),
    {.name = "error_code",
     .type = SL_FT_NUMBER,
     .def = SL_DEF_INT,
     .def_int = 429,
     .custom = v_gt0},
    F_STRING_DEF("error_message", "API rate limit exceeded"),
    {.name = "sync_rate",
     .type = SL_FT_NUMBER,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_INT,
     .def_int = -1},
    SL_FIELDS_END,
};
static const sl_field_t ratelimit_fields[] = {
    F_PROTOCOLS_HTTP,
    F_CONFIG(ratelimit_config_fields, check_ratelimit_config),
    SL_FIELDS_END,
};

static const char *const ratelimit_limits[] = {
    "config.second", "config.minute", "config.hour", "config.day",
    "config.month",  "config.year",   NULL};
static const sl_check_t ratelimit_checks[] = {
    {.kind = SL_CHECK_AT_LEAST_ONE_OF, .fields = ratelimit_limits},
    SL_REQUIRED_WHEN("config.policy", "redis", "config.redis.host"),
    SL_REQUIRED_WHEN("config.policy", "redis", "config.redis.port"),
    SL_REQUIRED_WHEN("config.policy", "redis", "config.redis.timeout"),
    SL_REQUIRED_WHEN("config.limit_by", "header", "config.header_name"),
    SL_REQUIRED_WHEN("config.limit_by", "path", "config.path"),
    {.kind = SL_CHECK_END},
};
static const sl_plugin_info_t ratelimit_plugin =
    BUNDLED_PLUGIN("rate-limiting", 910, SL_PHASE_ACCESS, ratelimit_fields, ratelimit_checks);

/* ------------------------------------------------------------------------ */
/* cors                                                                      */

static const char *const cors_methods[] = {"GET",    "HEAD",    "PUT",   "PATCH",   "POST",
                                           "DELETE", "OPTIONS", "TRACE", "CONNECT", NULL};

/* An origin is "*" or anything PCRE compiles; it is matched as a regex. */
static char *v_cors_origin(const json_t *v)
{
    const char *s = json_string_value(v);
    if (strcmp(s, "*") == 0)
        return NULL;
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, json_string_length(v), 0, &code, &off, NULL);
    if (re) {
        pcre2_code_free(re);
        return NULL;
    }
    return sl_xasprintf("'%s' is not a valid regex", s);
}

static const sl_field_t cors_origin_element = {.type = SL_FT_STRING, .custom = v_cors_origin};
static const sl_field_t cors_method_element = {.type = SL_FT_STRING, .one_of = cors_methods};

static const sl_field_t cors_config_fields[] = {
    {.name = "origins", .type = SL_FT_ARRAY, .elements = &cors_origin_element},
    F_STRINGS("headers"),
    F_STRINGS("exposed_headers"),
    {.name = "methods",
     .type = SL_FT_ARRAY,
     .def = SL_DEF_JSON,
     .def_str = "[\"GET\",\"HEAD\",\"PUT\",\"PATCH\",\"POST\",\"DELETE\",\"OPTIONS\",\"TRACE\","
                "\"CONNECT\"]",
     .elements = &cors_method_element},
    {.name = "max_age", .type = SL_FT_NUMBER},
    SL_FIELD_BOOL("credentials", 0, SL_F_REQUIRED),
    SL_FIELD_BOOL("private_network", 0, SL_F_REQUIRED),
    SL_FIELD_BOOL("preflight_continue", 0, SL_F_REQUIRED),
    SL_FIELD_BOOL("allow_origin_absent", 1, SL_F_REQUIRED),
    SL_FIELDS_END,
};
static const sl_field_t cors_fields[] = {
    F_NO_CONSUMER,
    F_PROTOCOLS_HTTP,
    F_CONFIG(cors_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t cors_plugin =
    BUNDLED_PLUGIN("cors", 2000, SL_PHASE_ACCESS | SL_PHASE_HEADER_FILTER, cors_fields, NULL);

/* ------------------------------------------------------------------------ */
/* request-transformer and response-transformer                              */

/*
 * Both take lists of "name:value" strings. Kong splits an item with the Lua
 * pattern "^([^:]+):*(.-)$": the name runs to the first colon, any run of
 * colons follows, the value is the rest. An item that starts with a colon
 * has no name at all, which Kong reports as the name 'nil'.
 */
struct pair {
    const char *name, *value;
    size_t name_len, value_len;
};

static bool split_pair(const char *s, size_t n, struct pair *p)
{
    size_t i = 0;
    while (i < n && s[i] != ':')
        i++;
    if (i == 0)
        return false;
    p->name = s;
    p->name_len = i;
    while (i < n && s[i] == ':')
        i++;
    p->value = s + i;
    p->value_len = n - i;
    return true;
}

/* The header names of a pair: the name always, the value too when it is
 * itself a header name (a rename's target). */
static char *check_header_pair(const json_t *v, bool value_is_name)
{
    struct pair p;
    if (!split_pair(json_string_value(v), json_string_length(v), &p))
        return sl_xstrdup("'nil' is not a valid header");
    if (!header_name_ok(p.name, p.name_len))
        return sl_xasprintf("'%.*s' is not a valid header", (int)p.name_len, p.name);
    if (value_is_name && !header_name_ok(p.value, p.value_len))
        return sl_xasprintf("'%.*s' is not a valid header", (int)p.value_len, p.value);
    return NULL;
}

/* remove.headers: a header name, or a pair whose name is one. */
static char *v_header_item(const json_t *v)
{
    return check_header_pair(v, false);
}

/* add/append/replace.headers of request-transformer: "name:value". */
static char *v_header_value_pair(const json_t *v)
{
    if (!colon_pair(json_string_value(v), json_string_length(v)))
        return sl_xasprintf("invalid value: %s", json_string_value(v));
    return check_header_pair(v, false);
}

/* rename.headers: "old:new", both header names. */
static char *v_header_rename_pair(const json_t *v)
{
    if (!colon_pair(json_string_value(v), json_string_length(v)))
        return sl_xasprintf("invalid value: %s", json_string_value(v));
    return check_header_pair(v, true);
}

/* request-transformer body and querystring pairs: the value may not be
 * empty. (Kong also compiles it as a template, which is not repeated.) */
static char *v_value_pair(const json_t *v)
{
    struct pair p;
    if (!split_pair(json_string_value(v), json_string_length(v), &p))
        return sl_xstrdup("key '' has no value");
    if (p.value_len == 0)
        return sl_xasprintf("key '%.*s' has no value", (int)p.name_len, p.name);
    return NULL;
}

/* response-transformer "name:value" items. */
static char *v_colon_pair(const json_t *v)
{
    if (!colon_pair(json_string_value(v), json_string_length(v)))
        return sl_xasprintf("invalid value: %s", json_string_value(v));
    return NULL;
}

static const sl_field_t header_item_element = {.type = SL_FT_STRING, .custom = v_header_item};
static const sl_field_t header_value_pair_element = {.type = SL_FT_STRING,
                                                     .custom = v_header_value_pair};
static const sl_field_t header_rename_element = {.type = SL_FT_STRING,
                                                 .custom = v_header_rename_pair};
static const sl_field_t value_pair_element = {.type = SL_FT_STRING, .custom = v_value_pair};
static const sl_field_t colon_pair_element = {.type = SL_FT_STRING, .custom = v_colon_pair};

/* The body, headers and querystring lists of a request-transformer group:
 * body and querystring items take the same check, headers their own. */
#define REQTX_LISTS(item, header_item)                                                             \
    F_STRINGS_DEF("body", item), F_STRINGS_DEF("headers", header_item),                            \
        F_STRINGS_DEF("querystring", item)

static const sl_field_t reqtx_remove_fields[] = {
    REQTX_LISTS(&string_element, &header_item_element),
    SL_FIELDS_END,
};
static const sl_field_t reqtx_rename_fields[] = {
    REQTX_LISTS(&value_pair_element, &header_rename_element),
    SL_FIELDS_END,
};
static const sl_field_t reqtx_replace_fields[] = {
    REQTX_LISTS(&value_pair_element, &header_value_pair_element),
    SL_FIELD_STRING("uri"),
    SL_FIELDS_END,
};
static const sl_field_t reqtx_add_fields[] = {
    REQTX_LISTS(&value_pair_element, &header_value_pair_element),
    SL_FIELDS_END,
};

static const sl_field_t reqtx_config_fields[] = {
    {.name = "http_method", .type = SL_FT_STRING, .custom = v_http_method},
    F_RECORD("remove", reqtx_remove_fields),
    F_RECORD("rename", reqtx_rename_fields),
    F_RECORD("replace", reqtx_replace_fields),
    F_RECORD("add", reqtx_add_fields),
    F_RECORD("append", reqtx_add_fields),
    SL_FIELDS_END,
};
/* Kong gives it the plain protocols set, not protocols_http. */
static const sl_field_t reqtx_fields[] = {
    F_CONFIG(reqtx_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t reqtx_plugin =
    BUNDLED_PLUGIN("request-transformer", 801, SL_PHASE_ACCESS, reqtx_fields, NULL);

static const char *const json_type_names[] = {"boolean", "number", "string", NULL};
static const sl_field_t json_type_element = {.type = SL_FT_STRING, .one_of = json_type_names};

static const sl_field_t resptx_remove_fields[] = {
    F_STRINGS_DEF("json", &string_element),
    F_STRINGS_DEF("headers", &string_element),
    SL_FIELDS_END,
};
static const sl_field_t resptx_rename_fields[] = {
    F_STRINGS_DEF("json", &colon_pair_element),
    F_STRINGS_DEF("headers", &header_rename_element),
    SL_FIELDS_END,
};
static const sl_field_t resptx_add_fields[] = {
    F_STRINGS_DEF("json", &colon_pair_element),
    F_STRINGS_DEF("json_types", &json_type_element),
    F_STRINGS_DEF("headers", &colon_pair_element),
    SL_FIELDS_END,
};

static const sl_field_t resptx_config_fields[] = {
    F_RECORD("remove", resptx_remove_fields), F_RECORD("rename", resptx_rename_fields),
    F_RECORD("replace", resptx_add_fields),   F_RECORD("add", resptx_add_fields),
    F_RECORD("append", resptx_add_fields),    SL_FIELDS_END,
};
static const sl_field_t resptx_fields[] = {
    F_PROTOCOLS_HTTP,
    F_CONFIG(resptx_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t resptx_plugin =
    BUNDLED_PLUGIN("response-transformer", 800, SL_PHASE_HEADER_FILTER | SL_PHASE_BODY_FILTER,
                   resptx_fields, NULL);

/* ------------------------------------------------------------------------ */
/* ip-restriction                                                            */

static const sl_field_t ip_or_cidr_element = {.type = SL_FT_STRING, .custom = v_ip_or_cidr};

static const sl_field_t iprestrict_config_fields[] = {
    {.name = "allow", .type = SL_FT_ARRAY, .elements = &ip_or_cidr_element},
    {.name = "deny", .type = SL_FT_ARRAY, .elements = &ip_or_cidr_element},
    {.name = "status", .type = SL_FT_NUMBER},
    SL_FIELD_STRING("message"),
    SL_FIELDS_END,
};
static const sl_field_t iprestrict_fields[] = {
    /* it also restricts tcp and tls streams, so those are in its default */
    {.name = "protocols",
     .type = SL_FT_SET,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_JSON,
     .def_str = "[\"http\",\"https\",\"tcp\",\"tls\",\"grpc\",\"grpcs\"]",
     .elements = &any_protocol_element},
    F_CONFIG(iprestrict_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_check_t iprestrict_checks[] = {
    {.kind = SL_CHECK_AT_LEAST_ONE_OF, .fields = allow_deny},
    {.kind = SL_CHECK_END},
};
static const sl_plugin_info_t iprestrict_plugin =
    BUNDLED_PLUGIN("ip-restriction", 990, SL_PHASE_ACCESS | SL_PHASE_PREREAD, iprestrict_fields,
                   iprestrict_checks);

/* ------------------------------------------------------------------------ */
/* request-size-limiting                                                     */

static const char *const size_units[] = {"megabytes", "kilobytes", "bytes", NULL};

static const sl_field_t sizelimit_config_fields[] = {
    {.name = "allowed_payload_size", .type = SL_FT_INTEGER, .def = SL_DEF_INT, .def_int = 128},
    {.name = "size_unit",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_STRING,
     .def_str = "megabytes",
     .one_of = size_units},
    SL_FIELD_BOOL("require_content_length", 0, SL_F_REQUIRED),
    SL_FIELDS_END,
};
static const sl_field_t sizelimit_fields[] = {
    F_PROTOCOLS_HTTP,
    F_CONFIG(sizelimit_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t sizelimit_plugin =
    BUNDLED_PLUGIN("request-size-limiting", 951, SL_PHASE_ACCESS, sizelimit_fields, NULL);

/* ------------------------------------------------------------------------ */
/* correlation-id                                                            */

static const char *const correlation_generators[] = {"uuid", "uuid#counter", "tracker", NULL};

static const sl_field_t correlation_config_fields[] = {
    F_STRING_DEF("header_name", "Kong-Request-ID"),
    {.name = "generator",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED,
     .def = SL_DEF_STRING,
     .def_str = "uuid#counter",
     .one_of = correlation_generators},
    SL_FIELD_BOOL("echo_downstream", 0, SL_F_REQUIRED),
    SL_FIELDS_END,
};
static const sl_field_t correlation_fields[] = {
    F_PROTOCOLS_HTTP,
    F_CONFIG(correlation_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t correlation_plugin = BUNDLED_PLUGIN(
    "correlation-id", 100001, SL_PHASE_ACCESS | SL_PHASE_HEADER_FILTER, correlation_fields, NULL);

/* ------------------------------------------------------------------------ */
/* prometheus                                                                */

static const sl_field_t prometheus_config_fields[] = {
    SL_FIELD_BOOL("per_consumer", 0, 0),      SL_FIELD_BOOL("status_code_metrics", 0, 0),
    SL_FIELD_BOOL("ai_metrics", 0, 0),        SL_FIELD_BOOL("latency_metrics", 0, 0),
    SL_FIELD_BOOL("bandwidth_metrics", 0, 0), SL_FIELD_BOOL("upstream_health_metrics", 0, 0),
    SL_FIELD_BOOL("wasm_metrics", 0, 0),      SL_FIELDS_END,
};
static const sl_field_t prometheus_fields[] = {
    F_CONFIG(prometheus_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t prometheus_plugin =
    BUNDLED_PLUGIN("prometheus", 13, SL_PHASE_LOG, prometheus_fields, NULL);

/* ------------------------------------------------------------------------ */
/* file-log                                                                  */

/* Lua's match "^[^*&%\`]+$"; the field's err replaces the message. */
static char *v_filename(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strcspn(s, "*&%\\`") < n)
        return sl_xstrdup("not a valid filename");
    return NULL;
}

static const sl_field_t filelog_config_fields[] = {
    {.name = "path",
     .type = SL_FT_STRING,
     .flags = SL_F_REQUIRED,
     .custom = v_filename,
     .err = "not a valid filename"},
    SL_FIELD_BOOL("reopen", 0, SL_F_REQUIRED),
    F_LUA_CODE,
    SL_FIELDS_END,
};
static const sl_field_t filelog_fields[] = {
    F_CONFIG(filelog_config_fields, NULL),
    SL_FIELDS_END,
};
static const sl_plugin_info_t filelog_plugin =
    BUNDLED_PLUGIN("file-log", 9, SL_PHASE_LOG, filelog_fields, NULL);

/* ------------------------------------------------------------------------ */
/* http-log                                                                  */

/* True when s is word, ignoring case. */
static bool is_word(const char *s, const char *word)
{
    return strcasecmp(s, word) == 0;
}

/*
 * A key of `headers`: Kong refuses the headers it sets itself, then checks
 * the name. (Kong's Content-Length pattern spells one letter "[nn]", so only
 * a lower-case 'n' in "length" is caught; that is kept.)
 */
static char *v_httplog_header(const json_t *v)
{
    const char *s = json_string_value(v);
    if (is_word(s, "host"))
        return sl_xstrdup("cannot contain 'Host' header");
    if (is_word(s, "content-length") && s[10] == 'n')
        return sl_xstrdup("cannot contain 'Content-Length' header");
    if (is_word(s, "content-type"))
        return sl_xstrdup("cannot contain 'Content-Type' header");
    return v_header_name(v);
}

/* Credentials in the endpoint URL become an Authorization header, so a
 * second one in `headers` is refused. */
static char *check_httplog_config(const json_t *config)
{
    const json_t *endpoint = json_object_get(config, "http_endpoint");
    const json_t *headers = json_object_get(config, "headers");
    if (!json_is_string(endpoint) || !json_is_object(headers))
        return NULL;
    if (!parse_url(json_string_value(endpoint)).userinfo)
        return NULL;
    const char *k;
    const json_t *hv;
    json_object_foreach((json_t *)headers, k, hv)
    {
        if (is_word(k, "authorization"))
            return sl_xstrdup("specifying both an 'Authorization' header and user info in "
                              "'http_endpoint' is not allowed");
    }
    return NULL;
}

static const char *const httplog_methods[] = {"POST", "PUT", "PATCH", NULL};
static const char *const httplog_content_types[] = {"application/json",
                                                    "application/json; charset=utf-8", NULL};
static const int64_t queue_concurrency[] = {-1, 1};

/* typedefs.queue (kong/tools/queue_schema.lua) */
static const sl_field_t queue_fields[] = {
    SL_FIELD_INT_BETWEEN("max_batch_size", 1, 1, 1000000),
    {.name = "max_coalescing_delay",
     .type = SL_FT_NUMBER,
     .def = SL_DEF_INT,
     .def_int = 1,
     .between = true,
     .min = 0,
     .max = 3600},
    SL_FIELD_INT_BETWEEN("max_entries", 10000, 1, 1000000),
    {.name = "max_bytes", .type = SL_FT_INTEGER},
    F_NUMBER_DEF("max_retry_time", 60),
    {.name = "initial_retry_delay",
     .type = SL_FT_NUMBER,
     .def = SL_DEF_NUMBER,
     .def_num = 0.01,
     .between = true,
     .min = 0.001,
     .max = 1000000},
    {.name = "max_retry_delay",
     .type = SL_FT_NUMBER,
     .def = SL_DEF_INT,
     .def_int = 60,
     .between = true,
     .min = 0.001,
     .max = 1000000},
    {.name = "concurrency_limit",
     .type = SL_FT_INTEGER,
     .def = SL_DEF_INT,
     .def_int = 1,
     .one_of_int = queue_concurrency,
     .n_one_of_int = SL_ARRAY_LEN(queue_concurrency)},
    SL_FIELDS_END,
};

static const sl_field_t httplog_header_key = {.type = SL_FT_STRING, .custom = v_httplog_header};

static const sl_field_t httplog_config_fields[] = {
    {.name = "http_endpoint", .type = SL_FT_STRING, .flags = SL_F_REQUIRED, .custom = v_url},
    {.name = "method",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "POST",
     .one_of = httplog_methods},
    {.name = "content_type",
     .type = SL_FT_STRING,
     .def = SL_DEF_STRING,
     .def_str = "application/json",
     .one_of = httplog_content_types},
    F_NUMBER_DEF("timeout", 10000),
    F_NUMBER_DEF("keepalive", 60000),
    /* superseded by `queue`, still accepted */
    {.name = "retry_count", .type = SL_FT_INTEGER},
    {.name = "queue_size", .type = SL_FT_INTEGER},
    {.name = "flush_timeout", .type = SL_FT_NUMBER},
    {.name = "headers", .type = SL_FT_MAP, .keys = &httplog_header_key, .values = &string_element},
    F_RECORD("queue", queue_fields),
    F_LUA_CODE,
    SL_FIELDS_END,
};
static const sl_field_t httplog_fields[] = {
    F_CONFIG(httplog_config_fields, check_httplog_config),
    SL_FIELDS_END,
};
static const sl_plugin_info_t httplog_plugin =
    BUNDLED_PLUGIN("http-log", 12, SL_PHASE_LOG, httplog_fields, NULL);

/* ------------------------------------------------------------------------ */
/* The list (plugins.c looks names up in it)                                 */

const sl_plugin_info_t *const sl_bundled_plugins[] = {
    &acl_plugin,       &basicauth_plugin,  &correlation_plugin, &cors_plugin,    &filelog_plugin,
    &httplog_plugin,   &iprestrict_plugin, &jwt_plugin,         &keyauth_plugin, &prometheus_plugin,
    &ratelimit_plugin, &sizelimit_plugin,  &reqtx_plugin,       &resptx_plugin,  NULL,
};
