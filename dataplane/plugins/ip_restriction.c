/*
 * ip-restriction: allows or refuses a request by its client address, as
 * Kong's kong/plugins/ip-restriction/handler.lua does over HTTP.
 *
 * config.allow and config.deny hold IPv4 and IPv6 addresses and CIDR blocks.
 * configure() parses them once into binary prefixes, all in IPv6 form: an
 * IPv4 entry becomes its IPv4-mapped prefix (::ffff:a.b.c.d, 96 bits more),
 * so that an IPv4 client, and an IPv4 client that reached a dual-stack
 * socket as ::ffff:a.b.c.d, both match IPv4 entries. An IPv4 client matches
 * only blocks inside ::ffff:0:0/96 (IPv4 entries, or IPv4-mapped ones
 * written in IPv6 form): "::/0" means every IPv6 client, not every client,
 * as with resty.ipmatcher's separate IPv4 and IPv6 tables. Host bits below
 * the prefix length are cleared, as resty.ipmatcher does.
 *
 * The client address is Kong's ngx.var.binary_remote_addr, which nginx's
 * realip module (set_real_ip_from = trusted_ips) has already replaced with
 * what a trusted proxy reported: here sl_pdk_client_get_forwarded_ip. A
 * client on deny is refused, whatever allow says; with a non-empty allow, a
 * client not on it is refused. The refusal is config.status (403) with
 * {"message": config.message}, the message defaulting to
 * "IP address not allowed: <client address>".
 *
 * configure() and dispose() run on the thread that builds a generation;
 * access() runs on any worker with a read-only conf.
 */
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An address block: addr with the bits past `bits` cleared. */
struct prefix {
    uint8_t addr[16];
    int bits;
    bool v4; /* inside ::ffff:0:0/96: an IPv4 block */
};

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct conf {
    struct prefix *allow, *deny; /* owned */
    size_t nallow, ndeny;
    int status;
    char *message; /* owned; NULL: the default with the client address */
};

static void dispose(void *p)
{
    struct conf *c = p;
    if (!c)
        return;
    free(c->allow);
    free(c->deny);
    free(c->message);
    free(c);
}

/* Parses an IPv4 or IPv6 address into its 16-byte IPv6 form (IPv4 mapped).
 * *v4 says which it was. */
static bool parse_addr(const char *s, uint8_t *out, bool *v4)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memcpy(out, v4_mapped, 12);
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    *v4 = false;
    return inet_pton(AF_INET6, s, out) == 1;
}

static void clear_host_bits(struct prefix *x)
{
    for (int i = 0; i < 16; i++) {
        int keep = x->bits - i * 8;
        if (keep >= 8)
            continue;
        x->addr[i] &= keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
    }
}

/* "a.b.c.d", "a.b.c.d/n", "v6" or "v6/n" into x; false when it is none. */
static bool parse_prefix(const char *s, struct prefix *x)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return false;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    bool v4;
    if (!parse_addr(buf, x->addr, &v4))
        return false;
    int max = v4 ? 32 : 128;
    int bits = max;
    if (slash) {
        uint64_t b;
        const char *d = slash + 1;
        if (sl_parse_u64(d, strlen(d), (uint64_t)max, &b) != SL_OK)
            return false;
        bits = (int)b;
    }
    x->bits = v4 ? 96 + bits : bits;
    clear_host_bits(x);
    x->v4 = x->bits >= 96 && !memcmp(x->addr, v4_mapped, 12);
    return true;
}

/* Whether addr (16 bytes, IPv4 mapped) is in block x; an IPv4 address is
 * only ever in IPv4 blocks. */
static bool prefix_match(const struct prefix *x, const uint8_t *addr)
{
    if (!x->v4 && !memcmp(addr, v4_mapped, 12))
        return false;
    int full = x->bits / 8, rest = x->bits % 8;
    if (memcmp(x->addr, addr, (size_t)full) != 0)
        return false;
    return rest == 0 || (addr[full] & (uint8_t)(0xff << (8 - rest))) == x->addr[full];
}

static bool list_match(const struct prefix *list, size_t n, const uint8_t *addr)
{
    for (size_t i = 0; i < n; i++)
        if (prefix_match(&list[i], addr))
            return true;
    return false;
}

/* config.<name>: null, or an array of addresses and blocks. */
static bool read_list(const json_t *config, const char *name, struct prefix **out, size_t *n,
                      char *err, size_t errlen)
{
    const json_t *v = json_object_get(config, name);
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v)) {
        snprintf(err, errlen, "config.%s: expected an array", name);
        return false;
    }
    size_t len = json_array_size(v);
    *out = sl_xcalloc(len ? len : 1, sizeof(**out));
    for (size_t i = 0; i < len; i++) {
        const json_t *e = json_array_get(v, i);
        const char *s = json_string_value(e);
        if (!s || strlen(s) != json_string_length(e) || !parse_prefix(s, &(*out)[i])) {
            snprintf(err, errlen, "config.%s[%zu]: '%.64s' is not an IP address or CIDR block",
                     name, i, s ? s : "(not a string)");
            return false;
        }
    }
    *n = len;
    return true;
}

static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    struct conf *c = sl_xcalloc(1, sizeof(*c));
    if (!read_list(config, "allow", &c->allow, &c->nallow, err, errlen) ||
        !read_list(config, "deny", &c->deny, &c->ndeny, err, errlen))
        goto fail;
    if (c->nallow == 0 && c->ndeny == 0) {
        snprintf(err, errlen,
                 "config: at least one of these fields must be non-empty: 'config.allow', "
                 "'config.deny'");
        goto fail;
    }
    /* kong.response.error takes 4xx and 5xx statuses only. */
    c->status = 403;
    const json_t *st = json_object_get(config, "status");
    if (st && !json_is_null(st)) {
        double d = json_number_value(st);
        if (!json_is_number(st) || d != floor(d) || d < 400 || d > 599) {
            snprintf(err, errlen, "config.status: expected an integer status between 400 and 599");
            goto fail;
        }
        c->status = (int)d;
    }
    const json_t *msg = json_object_get(config, "message");
    if (msg && !json_is_null(msg)) {
        if (!json_is_string(msg) || strlen(json_string_value(msg)) != json_string_length(msg)) {
            snprintf(err, errlen, "config.message: expected a string");
            goto fail;
        }
        c->message = sl_xstrdup(json_string_value(msg));
    }
    return c;

fail:
    dispose(c);
    return NULL;
}

static int refuse(sl_pdk_t *p, const struct conf *c, const char *ip)
{
    if (c->message)
        return sl_pdk_response_exit_message(p, c->status, c->message);
    size_t n = strlen("IP address not allowed: ") + strlen(ip) + 1;
    char *m = sl_pdk_alloc(p, n);
    snprintf(m, n, "IP address not allowed: %s", ip);
    return sl_pdk_response_exit_message(p, c->status, m);
}

static int on_access(sl_pdk_t *p, void *vconf)
{
    const struct conf *c = vconf;
    const char *ip = sl_pdk_client_get_forwarded_ip(p);
    uint8_t addr[16];
    bool v4;
    /* nginx's realip module ignores an X-Real-IP that is no address and
     * keeps the peer's: so do we. */
    if (!ip || !parse_addr(ip, addr, &v4))
        ip = sl_pdk_client_get_ip(p);
    if (!ip || !parse_addr(ip, addr, &v4))
        return sl_pdk_response_exit_message(p, 403,
                                            "Cannot identify the client IP address, unix domain "
                                            "sockets are not supported.");
    if (list_match(c->deny, c->ndeny, addr))
        return refuse(p, c, ip);
    if (c->nallow > 0 && !list_match(c->allow, c->nallow, addr))
        return refuse(p, c, ip);
    return SL_PLUGIN_CONTINUE;
}

const sl_native_plugin_t sl_plugin_ip_restriction = {
    .name = "ip-restriction",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
};
