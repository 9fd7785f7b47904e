/*
 * The data plane's configuration keys (kong.conf style) and their typed form.
 * Loaded once at start-up by main; read-only afterwards and shared by all
 * threads.
 */
#ifndef SL_DP_CONF_H
#define SL_DP_CONF_H

#include "conf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_VERSION "0.1.0"
#define SL_SERVER_TOKEN "sluice/" SL_VERSION

#define SL_MAX_LISTENERS 8
#define SL_MAX_TRUSTED 64

typedef struct sl_listen_s {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64]; /* as configured */
    bool ssl;      /* the `ssl` flag: TLS (tls.h) */
    bool http2;    /* the `http2` flag: HTTP/2 too (ALPN h2, or h2c prior knowledge) */
} sl_listen_t;

typedef struct sl_cidr_s {
    int family;
    uint8_t addr[16];
    int bits;
} sl_cidr_t;

typedef struct sl_dp_conf_s {
    char *prefix;
    char *plugins; /* the `plugins` property as given */
    sl_listen_t proxy[SL_MAX_LISTENERS];
    size_t nproxy;
    bool any_ssl;                  /* some proxy listener has `ssl` */
    uint32_t h2_max_streams;       /* http2_max_concurrent_streams */
    char *ssl_cert, *ssl_cert_key; /* NULL: the default certificate (tls.h) */
    sl_listen_t status;
    bool status_on;
    int workers;
    int log_level;
    char *error_log;  /* NULL: stderr */
    char *access_log; /* NULL: off */
    char *declarative_config;

    bool hybrid; /* role = data_plane */
    char *cluster_control_plane, *cluster_mtls, *cluster_cert, *cluster_cert_key;
    char *cluster_ca_cert, *cluster_server_name, *cluster_dp_labels;
    uint64_t cluster_max_payload;
    uint64_t cluster_ping_interval_ms;

    sl_cidr_t trusted[SL_MAX_TRUSTED];
    size_t ntrusted;

    bool hdr_server_tokens;
    bool hdr_latency_tokens;
    bool hdr_request_id;

    uint64_t client_max_body_size;    /* 0 = unlimited */
    uint64_t client_body_buffer_size; /* bodies read whole for plugins */
    uint64_t response_buffer_size;    /* upstream responses held whole for plugins */
    uint64_t client_header_timeout_ms;
    uint64_t client_body_timeout_ms;
    uint64_t keepalive_timeout_ms;
    uint64_t send_timeout_ms;
    uint64_t max_request_line;
    uint64_t max_header_size;
    uint64_t max_headers;

    uint64_t upstream_keepalive_pool_size;
    uint64_t upstream_keepalive_max_requests;
    uint64_t upstream_keepalive_idle_timeout_ms;

    uint64_t drain_timeout_ms;
    char *dns_resolver; /* NULL: /etc/resolv.conf */
    char *dns_hostsfile;
} sl_dp_conf_t;

extern const sl_conf_key_t sl_dp_conf_keys[];
extern const size_t sl_dp_conf_nkeys;

/* Converts the raw key/value conf into the typed form; problems go to errs
 * as "key: message". */
void sl_dp_conf_build(const sl_conf_t *raw, sl_dp_conf_t *out, sl_errors_t *errs);
void sl_dp_conf_dispose(sl_dp_conf_t *c);

/* Parses "ip:port" or "[v6]:port" (host "0.0.0.0"/"*" allowed). */
int sl_parse_listen(const char *s, sl_listen_t *out);
static inline uint16_t sl_listen_port(const sl_listen_t *l)
{
    return ntohs(l->addr.ss_family == AF_INET ? ((const struct sockaddr_in *)&l->addr)->sin_port
                                              : ((const struct sockaddr_in6 *)&l->addr)->sin6_port);
}

/* Parses "1.2.3.4", "10.0.0.0/8", "::1", "fd00::/8". */
int sl_parse_cidr(const char *s, sl_cidr_t *out);
bool sl_cidr_match(const sl_cidr_t *list, size_t n, const struct sockaddr *sa);

#endif
