/*
 * basic_auth.c: the basic-auth plugin (Kong 3.10's kong/plugins/basic-auth),
 * PRIORITY 1100, access phase only.
 *
 * Credentials come from Proxy-Authorization and then Authorization, each
 * read as Kong reads them: the first "Basic"/"basic" in the value, the
 * base64 after it decoded as nginx's ngx.decode_base64 does, and the result
 * split as the regex ([^:]+):(.*). The username selects a
 * basicauth_credentials row; its "password" was hashed when the
 * configuration was loaded (common/entities.c: SHA-1 hex of
 * password .. consumer_id, Kong's basic-auth crypto), so the password given
 * is hashed the same way and the digests compared.
 *
 * Success makes the row's consumer the authenticated one with Kong's
 * upstream headers; X-Credential-Identifier carries the credential's
 * username, as Kong's basic-auth sets it (key-auth sends the id). Failure is
 * 401 "Unauthorized" with WWW-Authenticate: Basic realm="<config.realm>",
 * unless config.anonymous makes the plugin one of several ways in ("logical
 * OR"): then a request already authenticated with a credential passes
 * untouched and a failed one continues as the anonymous consumer; an
 * anonymous value naming no consumer is a 500.
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

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct basic_auth {
    bool hide_credentials;
    char *anonymous;        /* owned; NULL: none */
    char *www_authenticate; /* owned: "Basic realm=\"...\"" */
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void dispose(void *p)
{
    struct basic_auth *c = p;
    if (!c)
        return;
    free(c->anonymous);
    free(c->www_authenticate);
    free(c);
}

/*
 * Reads config (checked again although the schema validated it: it may come
 * from a peer). Returns the conf, or NULL with err naming the field.
 */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    struct basic_auth *c = sl_xcalloc(1, sizeof(*c));
    char *realm = NULL;
    const json_t *hide = json_object_get(config, "hide_credentials");
    if (hide && !json_is_null(hide) && !json_is_boolean(hide)) {
        sl_cf_fail(err, errlen, "config.hide_credentials: expected a boolean");
        goto fail_conf;
    }
    c->hide_credentials = json_is_true(hide);
    if (!sl_cf_text(config, "anonymous", NULL, &c->anonymous, err, errlen) ||
        !sl_cf_text(config, "realm", NULL, &realm, err, errlen))
        goto fail_conf;
    /* realm is required with a default; a config without it gets that. */
    c->www_authenticate = sl_xasprintf("Basic realm=\"%s\"", realm ? realm : "service");
    free(realm);
    return c;

fail_conf:
    dispose(c);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Reading the credentials                                                   */

/* PCRE's \s. */
static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/*
 * nginx's ngx_decode_base64 (what ngx.decode_base64 calls): the input ends
 * at the first '=' (whatever follows is ignored), any other character
 * outside the alphabet fails, as does a length of 4k+1. Decodes into the
 * request's arena; false when the input is not base64.
 */
static bool decode_base64(sl_pdk_t *p, const char *s, size_t n, sl_str_t *out)
{
    size_t len = 0;
    while (len < n && s[len] != '=') {
        if (b64_value((unsigned char)s[len]) < 0)
            return false;
        len++;
    }
    if (len % 4 == 1)
        return false;
    char *d = sl_pdk_alloc(p, len / 4 * 3 + 3);
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (; len > 3; len -= 4, u += 4) {
        int a = b64_value(u[0]), b = b64_value(u[1]), c = b64_value(u[2]), e = b64_value(u[3]);
        d[k++] = (char)(a << 2 | b >> 4);
        d[k++] = (char)(b << 4 | c >> 2);
        d[k++] = (char)(c << 6 | e);
    }
    if (len > 1)
        d[k++] = (char)(b64_value(u[0]) << 2 | b64_value(u[1]) >> 4);
    if (len > 2)
        d[k++] = (char)(b64_value(u[1]) << 4 | b64_value(u[2]) >> 2);
    *out = (sl_str_t){d, k};
    return true;
}

/*
 * Kong's retrieve_credentials for one header value: the regex
 * \s*[Bb]asic\s*(.+) (unanchored: the first "Basic" followed by anything),
 * the capture base64-decoded, then ([^:]+):(.*) on the result (the username
 * starts at the first character that is not ':' and runs to the next ':';
 * the password runs to the end or to a newline, which '.' does not match).
 * Returns false when the value yields no username.
 */
static bool parse_basic(sl_pdk_t *p, sl_str_t v, sl_str_t *user, sl_str_t *pass)
{
    const char *s = v.p;
    size_t n = v.len, at = n;
    for (size_t i = 0; i + 5 < n; i++) {
        if ((s[i] == 'B' || s[i] == 'b') && !memcmp(s + i + 1, "asic", 4)) {
            at = i + 5;
            break;
        }
    }
    if (at >= n)
        return false;
    size_t j = at;
    while (j < n && is_space(s[j]))
        j++;
    if (j == n)
        j = n - 1; /* (.+) takes back one blank, which is not base64 */
    sl_str_t dec;
    if (!decode_base64(p, s + j, n - j, &dec))
        return false;
    size_t start = 0;
    while (start < dec.len && dec.p[start] == ':')
        start++;
    const char *colon = start < dec.len ? memchr(dec.p + start, ':', dec.len - start) : NULL;
    if (!colon)
        return false;
    *user = (sl_str_t){dec.p + start, (size_t)(colon - dec.p - start)};
    const char *pw = colon + 1, *end = dec.p + dec.len;
    const char *nl = memchr(pw, '\n', (size_t)(end - pw));
    *pass = (sl_str_t){pw, (size_t)((nl ? nl : end) - pw)};
    return true;
}

/*
 * Reads the credentials of one header (hiding the header from the upstream
 * when configured, whether or not it held credentials) and looks the
 * username up. Returns the credential or NULL; *pass is the password given.
 */
static const sl_credential_t *credential_from(sl_pdk_t *p, const struct basic_auth *c,
                                              const char *header, sl_str_t *pass)
{
    sl_str_t v, user;
    bool have = sl_pdk_request_get_header(p, header, &v);
    bool parsed = have && parse_basic(p, v, &user, pass);
    if (c->hide_credentials)
        sl_pdk_service_request_clear_header(p, header);
    /* A NUL would cut the username short in the lookup: it matches nothing. */
    if (!parsed || memchr(user.p, '\0', user.len))
        return NULL;
    const char *u = sl_pdk_strndup(p, user.p, user.len);
    return sl_pdk_credential_lookup(p, "basicauth_credentials", u);
}

/* Whether pass is the credential's password: SHA-1 hex of
 * password .. consumer_id against the stored digest. */
static bool password_ok(const sl_credential_t *cred, sl_str_t pass)
{
    const json_t *stored = json_object_get(cred->row, "password");
    const char *cid = cred->consumer ? cred->consumer->id : NULL;
    if (!json_is_string(stored) || !cid)
        return false;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, pass.p, pass.len) == 1 &&
              EVP_DigestUpdate(ctx, cid, strlen(cid)) == 1 &&
              EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return false;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    sl_hex_encode(md, mdlen, hex);
    size_t n = 2 * (size_t)mdlen;
    return json_string_length(stored) == n && CRYPTO_memcmp(json_string_value(stored), hex, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* Access                                                                    */

/*
 * Kong's do_authentication. Returns true when the request is authenticated
 * (the consumer and its upstream headers set).
 */
static bool authenticate(sl_pdk_t *p, const struct basic_auth *c)
{
    sl_str_t v;
    if (!sl_pdk_request_get_header(p, "authorization", &v) &&
        !sl_pdk_request_get_header(p, "proxy-authorization", &v))
        return false;
    sl_str_t pass = {"", 0};
    const sl_credential_t *cred = credential_from(p, c, "proxy-authorization", &pass);
    if (!cred)
        cred = credential_from(p, c, "authorization", &pass);
    if (!cred || !password_ok(cred, pass))
        return false;
    sl_pdk_auth_set_consumer(p, cred->consumer, cred);
    const char *username = json_string_value(json_object_get(cred->row, "username"));
    if (username)
        sl_pdk_service_request_set_header(p, "X-Credential-Identifier", username);
    return true;
}

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct basic_auth *c = conf;
    if (c->anonymous) {
        /* Logical OR: another plugin's credential is enough. */
        if (sl_pdk_client_get_credential(p))
            return SL_PLUGIN_CONTINUE;
        if (authenticate(p, c))
            return SL_PLUGIN_CONTINUE;
        return sl_pdk_auth_anonymous(p, c->anonymous);
    }
    if (authenticate(p, c))
        return SL_PLUGIN_CONTINUE;
    sl_pdk_response_set_header(p, "WWW-Authenticate", c->www_authenticate);
    return sl_pdk_response_error(p, 401, "Unauthorized");
}

const sl_native_plugin_t sl_plugin_basic_auth = {
    .name = "basic-auth",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
};
