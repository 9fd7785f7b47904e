/*
 * dp_conf.c owns the table of data-plane configuration keys and turns their
 * text values into sl_dp_conf_t. Runs on the main thread at start-up only.
 */
#include "dp_conf.h"
#include "bridge.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <unistd.h>

const sl_conf_key_t sl_dp_conf_keys[] = {
    {"prefix", "/usr/local/sluice", "directory for runtime files (*.addr, caches)"},
    {"role", "traditional", "traditional (DB-less) or data_plane"},
    {"proxy_listen", "0.0.0.0:8000",
     "comma-separated proxy listen addresses, each with optional flags: ssl (TLS), http2 "
     "(HTTP/2 as well: ALPN h2 with ssl, prior knowledge without), reuseport, backlog=N"},
    {"http2_max_concurrent_streams", "128",
     "streams an HTTP/2 client may have open on one connection (more are refused)"},
    {"ssl_cert", NULL, "default certificate of ssl listeners: a PEM file's path or PEM text"},
    {"ssl_cert_key", NULL, "key of ssl_cert: a PEM file's path or PEM text"},
    {"status_listen", "127.0.0.1:8007", "status API address, or off"},
    {"workers", "auto", "worker threads: a number or auto (one per core)"},
    {"log_level", "notice", "debug, info, notice, warn, error or crit"},
    {"error_log", "stderr", "error log path, or stderr"},
    {"access_log", "off", "JSON access log path, or off"},
    {"declarative_config", NULL, "DB-less declarative file (YAML or JSON)"},
    {"plugins", "bundled", "plugins this node runs: bundled (every native plugin), names, or off"},
    SL_BRIDGE_CONF_KEYS,
    {"trusted_ips", "", "comma-separated IPs/CIDRs whose X-Forwarded-* headers are trusted"},
    {"headers", "server_tokens, latency_tokens, X-Kong-Request-Id",
     "response headers to add: server_tokens, latency_tokens, X-Kong-Request-Id, or off"},
    {"client_max_body_size", "0", "largest request body accepted (0 = unlimited), else 413"},
    {"client_body_buffer_size", "1m",
     "largest request body read whole for plugins that need it (else 413)"},
    {"response_buffer_size", "16m",
     "largest upstream response held whole for plugins that need it (else 502)"},
    {"client_header_timeout", "60s", "time to receive a request head"},
    {"client_body_timeout", "60s", "longest pause between two reads of a request body"},
    {"keepalive_timeout", "60s", "idle keep-alive connection lifetime"},
    {"send_timeout", "60s", "longest pause between two writes to a client"},
    {"max_request_line", "8k", "longest request line, else 414"},
    {"max_header_size", "32k", "largest request header block, else 431"},
    {"max_headers", "100", "most request header fields, else 431"},
    {"upstream_keepalive_pool_size", "512", "idle upstream connections kept per worker"},
    {"upstream_keepalive_max_requests", "10000", "requests per upstream connection"},
    {"upstream_keepalive_idle_timeout", "60s", "idle upstream connection lifetime"},
    {"drain_timeout", "10s", "on SIGTERM, how long in-flight requests may take"},
    {"dns_resolver", "", "comma-separated DNS servers (default: /etc/resolv.conf)"},
    {"dns_hostsfile", "/etc/hosts", "hosts file consulted before DNS"},
    {"cluster_control_plane", "127.0.0.1:8005", "data_plane: host:port of the control plane"},
    {"cluster_mtls", "shared", "shared (one certificate on every node) or pki (a CA)"},
    {"cluster_cert", NULL, "data_plane: cluster certificate (path or PEM)"},
    {"cluster_cert_key", NULL, "data_plane: key of cluster_cert (path or PEM)"},
    {"cluster_ca_cert", NULL, "pki mode: CA that signs the control plane's certificate"},
    {"cluster_server_name", NULL,
     "pki mode: name required in the control plane's certificate (default: its host)"},
    {"cluster_dp_labels", NULL, "labels reported to the control plane: key:value,..."},
    {"cluster_max_payload", "16m", "largest cluster frame sent or accepted"},
    {"cluster_ping_interval", "10s", "ping interval; a control plane silent 1.5 intervals is dead"},
};
const size_t sl_dp_conf_nkeys = SL_ARRAY_LEN(sl_dp_conf_keys);

int sl_parse_listen(const char *s, sl_listen_t *out)
{
    char host[64], addr[128];
    const char *colon;
    memset(out, 0, sizeof(*out));
    snprintf(out->text, sizeof(out->text), "%s", s);
    /* "host:port flag flag": Kong's flags; ssl and http2 are the ones that matter. */
    size_t alen = strcspn(s, " \t");
    if (alen >= sizeof(addr))
        return SL_ERR_INVALID;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    for (const char *f = s + alen; *f;) {
        f += strspn(f, " \t");
        size_t fl = strcspn(f, " \t");
        if (!fl)
            break;
        if (fl == 3 && !strncmp(f, "ssl", 3))
            out->ssl = true;
        else if (fl == 5 && !strncmp(f, "http2", 5))
            out->http2 = true;
        else if (!((fl == 9 && !strncmp(f, "reuseport", 9)) ||
                   (fl == 8 && !strncmp(f, "deferred", 8)) || (fl == 4 && !strncmp(f, "bind", 4)) ||
                   !strncmp(f, "backlog=", 8)))
            return SL_ERR_INVALID;
        f += fl;
    }
    s = addr;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            return SL_ERR_INVALID;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            return SL_ERR_INVALID;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    uint64_t port;
    if (sl_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) != SL_OK)
        return SL_ERR_INVALID;
    if (!strcmp(host, "*") || host[0] == '\0')
        strcpy(host, "0.0.0.0");
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->addrlen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->addrlen = sizeof(*sin6);
    } else {
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

int sl_parse_cidr(const char *s, sl_cidr_t *out)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    if (iplen >= sizeof(ip))
        return SL_ERR_INVALID;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = 128;
    } else {
        return SL_ERR_INVALID;
    }
    if (slash) {
        uint64_t bits;
        if (sl_parse_u64(slash + 1, strlen(slash + 1), (uint64_t)out->bits, &bits) != SL_OK)
            return SL_ERR_INVALID;
        out->bits = (int)bits;
    }
    return SL_OK;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool sl_cidr_match(const sl_cidr_t *list, size_t n, const struct sockaddr *sa)
{
    const uint8_t *addr;
    int family = sa->sa_family;
    uint8_t mapped[4];
    if (family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else {
        addr = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
            memcpy(mapped, addr + 12, 4);
            addr = mapped;
            family = AF_INET;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (list[i].family == family && prefix_eq(list[i].addr, addr, list[i].bits))
            return true;
    return false;
}

static char *dup_or_null(const char *v, const char *off)
{
    if (!v || !*v || (off && !strcmp(v, off)))
        return NULL;
    return sl_xstrdup(v);
}

void sl_dp_conf_build(const sl_conf_t *raw, sl_dp_conf_t *c, sl_errors_t *errs)
{
    char **items;
    size_t n;
    int64_t i64;
    memset(c, 0, sizeof(*c));

    c->prefix = sl_xstrdup(sl_conf_get(raw, "prefix"));
    c->plugins = sl_xstrdup(sl_conf_get(raw, "plugins"));
    const char *role = sl_conf_get(raw, "role");
    if (strcmp(role, "traditional") && strcmp(role, "data_plane"))
        sl_errors_add(errs, "role: expected traditional or data_plane, got '%s'", role);
    c->hybrid = !strcmp(role, "data_plane");
    if (c->hybrid) {
        c->cluster_control_plane = dup_or_null(sl_conf_get(raw, "cluster_control_plane"), NULL);
        c->cluster_mtls = dup_or_null(sl_conf_get(raw, "cluster_mtls"), NULL);
        c->cluster_cert = dup_or_null(sl_conf_get(raw, "cluster_cert"), NULL);
        c->cluster_cert_key = dup_or_null(sl_conf_get(raw, "cluster_cert_key"), NULL);
        c->cluster_ca_cert = dup_or_null(sl_conf_get(raw, "cluster_ca_cert"), NULL);
        c->cluster_server_name = dup_or_null(sl_conf_get(raw, "cluster_server_name"), NULL);
        c->cluster_dp_labels = dup_or_null(sl_conf_get(raw, "cluster_dp_labels"), NULL);
        if (!c->cluster_control_plane)
            sl_errors_add(errs, "cluster_control_plane: required with role = data_plane "
                                "(host:port of the control plane's cluster_listen)");
        if (!c->cluster_cert || !c->cluster_cert_key)
            sl_errors_add(errs, "cluster_cert, cluster_cert_key: required with role = data_plane; "
                                "use the pair the control plane uses (shared mode) or one its CA "
                                "signed (pki mode)");
        if (sl_conf_get(raw, "declarative_config"))
            sl_errors_add(errs, "declarative_config: not used with role = data_plane (the control "
                                "plane provides the configuration); remove it");
        sl_conf_get_size(raw, "cluster_max_payload", &c->cluster_max_payload, errs);
        sl_conf_get_ms(raw, "cluster_ping_interval", &c->cluster_ping_interval_ms, errs);
        if (c->cluster_ping_interval_ms < 100 || c->cluster_ping_interval_ms > 3600000)
            sl_errors_add(errs, "cluster_ping_interval: must be between 100ms and 1h");
        if (c->cluster_max_payload < 65536 || c->cluster_max_payload > (1ull << 30))
            sl_errors_add(errs, "cluster_max_payload: must be between 64k and 1g");
    }

    n = sl_conf_split(sl_conf_get(raw, "proxy_listen"), &items);
    if (n == 0)
        sl_errors_add(errs, "proxy_listen: at least one address is required");
    for (size_t i = 0; i < n; i++) {
        if (c->nproxy == SL_MAX_LISTENERS) {
            sl_errors_add(errs, "proxy_listen: at most %d addresses", SL_MAX_LISTENERS);
            break;
        }
        if (sl_parse_listen(items[i], &c->proxy[c->nproxy]) != SL_OK)
            sl_errors_add(errs,
                          "proxy_listen: '%s' is not an address such as 0.0.0.0:8000 with "
                          "optional flags (ssl, http2, reuseport, backlog=N)",
                          items[i]);
        else
            c->any_ssl |= c->proxy[c->nproxy++].ssl;
    }
    sl_conf_split_free(items, n);

    const char *st = sl_conf_get(raw, "status_listen");
    if (st && *st && strcmp(st, "off")) {
        c->status_on = true;
        if (sl_parse_listen(st, &c->status) != SL_OK || c->status.ssl)
            sl_errors_add(errs,
                          "status_listen: '%s' is not an address such as 127.0.0.1:8007 (it "
                          "serves plain HTTP only)",
                          st);
    }

    const char *w = sl_conf_get(raw, "workers");
    if (!strcmp(w, "auto")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = cores > 0 ? (int)cores : 1;
    } else {
        sl_conf_get_int(raw, "workers", 1, 256, &i64, errs);
        c->workers = (int)i64;
    }

    c->log_level = sl_log_level_parse(sl_conf_get(raw, "log_level"));
    if (c->log_level < 0) {
        sl_errors_add(errs, "log_level: expected debug, info, notice, warn, error or crit");
        c->log_level = SL_LOG_NOTICE;
    }
    c->error_log = dup_or_null(sl_conf_get(raw, "error_log"), "stderr");
    c->access_log = dup_or_null(sl_conf_get(raw, "access_log"), "off");
    c->declarative_config = dup_or_null(sl_conf_get(raw, "declarative_config"), NULL);
    c->ssl_cert = dup_or_null(sl_conf_get(raw, "ssl_cert"), NULL);
    c->ssl_cert_key = dup_or_null(sl_conf_get(raw, "ssl_cert_key"), NULL);

    n = sl_conf_split(sl_conf_get(raw, "trusted_ips"), &items);
    for (size_t i = 0; i < n; i++) {
        if (c->ntrusted == SL_MAX_TRUSTED) {
            sl_errors_add(errs, "trusted_ips: at most %d entries", SL_MAX_TRUSTED);
            break;
        }
        if (!strcmp(items[i], "unix:"))
            continue;
        if (sl_parse_cidr(items[i], &c->trusted[c->ntrusted]) != SL_OK)
            sl_errors_add(errs, "trusted_ips: '%s' is not an IP address or CIDR block", items[i]);
        else
            c->ntrusted++;
    }
    sl_conf_split_free(items, n);

    n = sl_conf_split(sl_conf_get(raw, "headers"), &items);
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(items[i], "off"))
            c->hdr_server_tokens = c->hdr_latency_tokens = c->hdr_request_id = false;
        else if (!strcasecmp(items[i], "server_tokens"))
            c->hdr_server_tokens = true;
        else if (!strcasecmp(items[i], "latency_tokens"))
            c->hdr_latency_tokens = true;
        else if (!strcasecmp(items[i], "X-Kong-Request-Id"))
            c->hdr_request_id = true;
        else
            sl_errors_add(errs,
                          "headers: unknown value '%s'; expected server_tokens, latency_tokens, "
                          "X-Kong-Request-Id or off",
                          items[i]);
    }
    sl_conf_split_free(items, n);

    sl_conf_get_size(raw, "client_max_body_size", &c->client_max_body_size, errs);
    sl_conf_get_size(raw, "client_body_buffer_size", &c->client_body_buffer_size, errs);
    sl_conf_get_size(raw, "response_buffer_size", &c->response_buffer_size, errs);
    sl_conf_get_ms(raw, "client_header_timeout", &c->client_header_timeout_ms, errs);
    sl_conf_get_ms(raw, "client_body_timeout", &c->client_body_timeout_ms, errs);
    sl_conf_get_ms(raw, "keepalive_timeout", &c->keepalive_timeout_ms, errs);
    sl_conf_get_ms(raw, "send_timeout", &c->send_timeout_ms, errs);
    sl_conf_get_size(raw, "max_request_line", &c->max_request_line, errs);
    sl_conf_get_size(raw, "max_header_size", &c->max_header_size, errs);
    sl_conf_get_int(raw, "max_headers", 1, 10000, &i64, errs);
    c->max_headers = (uint64_t)i64;
    sl_conf_get_int(raw, "http2_max_concurrent_streams", 1, 1024, &i64, errs);
    c->h2_max_streams = (uint32_t)i64;
    if (c->max_request_line < 64 || c->max_header_size < 256)
        sl_errors_add(errs, "max_request_line/max_header_size: must be at least 64 and 256 bytes");
    /* The request line is part of the head: a smaller head limit wins. */
    if (c->max_request_line > c->max_header_size)
        c->max_request_line = c->max_header_size;

    sl_conf_get_int(raw, "upstream_keepalive_pool_size", 0, 1000000, &i64, errs);
    c->upstream_keepalive_pool_size = (uint64_t)i64;
    sl_conf_get_int(raw, "upstream_keepalive_max_requests", 0, INT32_MAX, &i64, errs);
    c->upstream_keepalive_max_requests = (uint64_t)i64;
    sl_conf_get_ms(raw, "upstream_keepalive_idle_timeout", &c->upstream_keepalive_idle_timeout_ms,
                   errs);
    sl_conf_get_ms(raw, "drain_timeout", &c->drain_timeout_ms, errs);
    c->dns_resolver = dup_or_null(sl_conf_get(raw, "dns_resolver"), NULL);
    c->dns_hostsfile = dup_or_null(sl_conf_get(raw, "dns_hostsfile"), NULL);
}

void sl_dp_conf_dispose(sl_dp_conf_t *c)
{
    free(c->prefix);
    free(c->plugins);
    free(c->error_log);
    free(c->access_log);
    free(c->declarative_config);
    free(c->ssl_cert);
    free(c->ssl_cert_key);
    free(c->cluster_control_plane);
    free(c->cluster_mtls);
    free(c->cluster_cert);
    free(c->cluster_cert_key);
    free(c->cluster_ca_cert);
    free(c->cluster_server_name);
    free(c->cluster_dp_labels);
    free(c->dns_resolver);
    free(c->dns_hostsfile);
    memset(c, 0, sizeof(*c));
}
