/*
 * sluice-cp: the control plane. main() reads the configuration (kong.conf
 * style file, SLUICE_<KEY> environment, command-line options), opens the
 * LMDB store under the prefix, starts the Admin API on the main thread's
 * event base and runs the loop until SIGTERM or SIGINT.
 *
 * Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration or
 * usage.
 */
#include "admin.h"
#include "conf.h"
#include "errors.h"
#include "log.h"
#include "cluster.h"
#include "cluster_frame.h"
#include "cluster_tls.h"
#include "plugins.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const sl_conf_key_t cp_keys[] = {
    {"prefix", "/usr/local/sluice-cp", "directory for the store, node id and *.addr files"},
    {"admin_listen", "127.0.0.1:8001",
     "Admin API addresses: host:port[ ssl], ... (port 0 picks one)"},
    {"admin_ssl_cert", NULL, "PEM certificate (chain) for the ssl admin_listen entries"},
    {"admin_ssl_cert_key", NULL, "PEM private key of admin_ssl_cert"},
    {"admin_token", NULL, "if set, every Admin API request needs Authorization: Bearer <token>"},
    {"lmdb_map_size", "1g", "largest size of the configuration store"},
    {"lmdb_changes_depth", "10000", "configuration versions whose changes are kept"},
    {"plugins", "bundled",
     "plugins that may be configured: bundled, names of bundled or external plugins, or off"},
    {"pluginserver_names", NULL, "plugin servers whose -dump output describes external plugins"},
    {"pluginserver_*", NULL,
     "pluginserver_<name>_query_cmd: command printing a server's plugin info (-dump)"},
    {"cluster_listen", "0.0.0.0:8005",
     "address data planes connect to (mutual TLS), or off for no data planes"},
    {"cluster_mtls", "shared", "shared (one certificate on every node) or pki (a CA)"},
    {"cluster_cert", NULL, "cluster certificate (path or PEM); sluice-cp gen-cert makes one"},
    {"cluster_cert_key", NULL, "key of cluster_cert (path or PEM)"},
    {"cluster_ca_cert", NULL, "pki mode: CA that signs data plane certificates"},
    {"cluster_allowed_common_names", NULL,
     "pki mode: names (CN or DNS SAN) a data plane certificate must carry one of"},
    {"cluster_max_payload", "16m", "largest cluster frame sent or accepted"},
    {"cluster_ping_interval", "10s", "ping interval; a peer silent for 1.5 intervals is dead"},
    {"cluster_data_plane_purge_delay", "14d",
     "how long a disconnected data plane stays in /clustering/data-planes"},
    {"log_level", "notice", "debug, info, notice, warn, error or crit"},
    {"error_log", "stderr", "error log path, or stderr"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice-cp [options]\n"
               "       sluice-cp gen-cert [--days N] [CERT [KEY]]\n"
               "                      write a cluster certificate and key (default cluster.crt,\n"
               "                      cluster.key, 1095 days), as `kong hybrid gen_cert` does\n"
               "  -c, --conf FILE     configuration file (key = value)\n"
               "  -p, --prefix DIR    runtime directory (overrides 'prefix')\n"
               "  -t, --test          check the configuration and exit\n"
               "  -v, --version       print the version and exit\n"
               "  -h, --help          this help\n"
               "Keys:\n");
    for (size_t i = 0; i < SL_ARRAY_LEN(cp_keys); i++)
        fprintf(f, "  %-20s %s (default: %s)\n", cp_keys[i].name, cp_keys[i].help,
                cp_keys[i].default_value ? cp_keys[i].default_value : "unset");
    fprintf(f, "Every key can also be set as SLUICE_<KEY> in the environment.\n");
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    SL_NOTICE("received signal %d: shutting down", (int)sig);
    event_base_loopbreak(arg);
}

/* The configuration GET / shows: every key, secrets masked. */
static json_t *sanitized_conf(const sl_conf_t *c)
{
    json_t *o = json_object();
    for (size_t i = 0; i < SL_ARRAY_LEN(cp_keys); i++) {
        if (strchr(cp_keys[i].name, '*'))
            continue;
        const char *v = sl_conf_get(c, cp_keys[i].name);
        if (!strcmp(cp_keys[i].name, "admin_token"))
            json_object_set_new(o, "admin_token", v ? json_string("******") : json_null());
        else
            json_object_set_new(o, cp_keys[i].name, v ? json_string(v) : json_null());
    }
    for (size_t i = 0; i < sl_conf_family_count(c); i++) {
        const char *v, *k = sl_conf_family_key(c, i, &v);
        json_object_set_new(o, k, json_string(v));
    }
    json_object_set_new(o, "role", json_string("control_plane"));
    json_object_set_new(o, "database", json_string("lmdb"));
    return o;
}

/*
 * `sluice-cp gen-cert [--days N] [CERT [KEY]]`: writes a self-signed cluster
 * certificate and its key (sl_cluster_gen_cert) like `kong hybrid gen_cert`:
 * cluster.crt and cluster.key in the current directory, valid 1095 days.
 * Given CERT alone, KEY is CERT with its .crt or .pem suffix replaced by
 * .key. Existing files are never overwritten. Exits 0, or 2 with the reason
 * on stderr.
 */
static int gen_cert_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"days", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char use[] = "usage: sluice-cp gen-cert [--days N] [CERT [KEY]]\n";
    uint64_t days = 1095;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":d:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            if (sl_parse_u64(optarg, strlen(optarg), 36500, &days) != SL_OK || days == 0) {
                fprintf(stderr,
                        "sluice-cp gen-cert: --days: '%s' is not a number of days from 1 to "
                        "36500\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            printf("%s", use);
            return 0;
        case ':':
            fprintf(stderr, "sluice-cp gen-cert: %s needs a number of days (1 to 36500)\n%s",
                    argv[optind - 1], use);
            return 2;
        default:
            fprintf(stderr, "sluice-cp gen-cert: unknown option '%s'\n%s", argv[optind - 1], use);
            return 2;
        }
    }
    if (argc - optind > 2) {
        fprintf(stderr, "sluice-cp gen-cert: unexpected argument '%s'\n%s", argv[optind + 2], use);
        return 2;
    }
    const char *cert = optind < argc ? argv[optind] : "cluster.crt";
    char *key = NULL;
    if (argc - optind == 2) {
        key = sl_xstrdup(argv[optind + 1]);
    } else if (argc - optind == 1) {
        size_t n = strlen(cert);
        if (n > 4 && (!strcmp(cert + n - 4, ".crt") || !strcmp(cert + n - 4, ".pem")))
            n -= 4;
        key = sl_xasprintf("%.*s.key", (int)n, cert);
    } else {
        key = sl_xstrdup("cluster.key");
    }

    sl_errors_t errs;
    sl_errors_init(&errs);
    int rc = sl_cluster_gen_cert(cert, key, (int)days, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "sluice-cp gen-cert: %s\n", errs.items[i]);
    if (rc == SL_OK)
        printf("wrote %s and %s\n", cert, key);
    sl_errors_dispose(&errs);
    free(key);
    return rc == SL_OK ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "gen-cert"))
        return gen_cert_main(argc - 1, argv + 1);
    static const struct option longopts[] = {
        {"conf", required_argument, NULL, 'c'}, {"prefix", required_argument, NULL, 'p'},
        {"test", no_argument, NULL, 't'},       {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *conf_path = NULL, *prefix_opt = NULL;
    bool test_only = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:p:tvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            break;
        case 'p':
            prefix_opt = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("sluice-cp %s (Kong Admin API %s)\n", SL_CP_VERSION, SL_CP_KONG_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice-cp: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_conf_t *conf = sl_conf_new(cp_keys, SL_ARRAY_LEN(cp_keys));
    if (conf_path)
        sl_conf_load_file(conf, conf_path, &errs);
    sl_conf_load_env(conf);
    if (prefix_opt)
        sl_conf_set(conf, "prefix", prefix_opt);

    uint64_t map_size = 0;
    int64_t depth = 0;
    sl_conf_get_size(conf, "lmdb_map_size", &map_size, &errs);
    sl_conf_get_int(conf, "lmdb_changes_depth", 1, INT64_MAX, &depth, &errs);
    if (map_size != 0 && map_size < 1024 * 1024)
        sl_errors_add(&errs, "lmdb_map_size: must be at least 1m (got %llu bytes)",
                      (unsigned long long)map_size);
    const char *lvl = sl_conf_get(conf, "log_level");
    int level = lvl ? sl_log_level_parse(lvl) : SL_LOG_NOTICE;
    if (level < 0)
        sl_errors_add(
            &errs, "log_level: unknown level '%s' (use debug, info, notice, warn, error or crit)",
            lvl);
    const char *prefix = sl_conf_get(conf, "prefix");
    if (!prefix || !*prefix)
        sl_errors_add(&errs, "prefix: must not be empty");
    const char *listen = sl_conf_get(conf, "admin_listen");
    sl_admin_listen_t listeners[SL_ADMIN_MAX_LISTEN];
    size_t nlisten = 0;
    char msg[1024];
    bool any_ssl = false;
    if (sl_admin_parse_listen(listen, listeners, SL_ADMIN_MAX_LISTEN, &nlisten, msg, sizeof(msg)) !=
        SL_OK)
        sl_errors_add(&errs, "%s", msg);
    for (size_t i = 0; i < nlisten; i++)
        any_ssl = any_ssl || listeners[i].ssl;
    SSL_CTX *ssl_ctx = NULL;
    if (any_ssl && sl_admin_tls_context(sl_conf_get(conf, "admin_ssl_cert"),
                                        sl_conf_get(conf, "admin_ssl_cert_key"), &ssl_ctx, msg,
                                        sizeof(msg)) != SL_OK)
        sl_errors_add(&errs, "%s", msg);
    const char *token = sl_conf_get(conf, "admin_token");
    if (token && *token && strlen(token) < 8)
        sl_errors_add(&errs, "admin_token: too short (use at least 8 characters)");
    sl_plugins_configure(conf, &errs);

    const char *cluster_listen = sl_conf_get(conf, "cluster_listen");
    bool cluster_on = cluster_listen && *cluster_listen && strcmp(cluster_listen, "off") != 0;
    SSL_CTX *cluster_ctx = NULL;
    sl_cluster_opts_t co = {.listen = cluster_listen, .prefix = NULL};
    uint64_t cmax = 0, cping = 0, cpurge = 0;
    sl_conf_get_size(conf, "cluster_max_payload", &cmax, &errs);
    sl_conf_get_ms(conf, "cluster_ping_interval", &cping, &errs);
    sl_conf_get_ms(conf, "cluster_data_plane_purge_delay", &cpurge, &errs);
    if (cmax < SL_CLUSTER_MAX_PAYLOAD_MIN || cmax > SL_CLUSTER_MAX_PAYLOAD_MAX)
        sl_errors_add(&errs, "cluster_max_payload: must be between 64k and 1g");
    if (cping < 100 || cping > 3600000)
        sl_errors_add(&errs, "cluster_ping_interval: must be between 100ms and 1h");
    if (cpurge < 60000)
        sl_errors_add(&errs, "cluster_data_plane_purge_delay: must be at least 60s");
    co.max_payload = (size_t)cmax;
    co.ping_interval_ms = cping;
    co.purge_delay_s = cpurge / 1000;
    if (cluster_on) {
        sl_cluster_tls_opts_t to = {
            .cert = sl_conf_get(conf, "cluster_cert"),
            .key = sl_conf_get(conf, "cluster_cert_key"),
            .ca_cert = sl_conf_get(conf, "cluster_ca_cert"),
            .allowed_names = sl_conf_get(conf, "cluster_allowed_common_names"),
        };
        if (sl_cluster_mtls_parse(sl_conf_get(conf, "cluster_mtls"), &to.mode) != SL_OK)
            sl_errors_add(&errs, "cluster_mtls: expected shared or pki, got '%s'",
                          sl_conf_get(conf, "cluster_mtls"));
        else if (!to.cert || !to.key)
            sl_errors_add(&errs,
                          "cluster_cert, cluster_cert_key: required for the cluster listener; "
                          "make a pair with 'sluice-cp gen-cert', or set cluster_listen = off");
        else
            sl_cluster_tls_server_ctx(&to, &cluster_ctx, &errs);
    }

    if (errs.n) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "sluice-cp: invalid configuration: %s\n", errs.items[i]);
        sl_errors_dispose(&errs);
        SSL_CTX_free(ssl_ctx);
        SSL_CTX_free(cluster_ctx);
        sl_conf_free(conf);
        return 2;
    }
    if (test_only) {
        printf("sluice-cp: configuration ok\n");
        SSL_CTX_free(ssl_ctx);
        SSL_CTX_free(cluster_ctx);
        sl_conf_free(conf);
        return 0;
    }
    sl_log_level = level;
    const char *elog = sl_conf_get(conf, "error_log");
    if (elog && *elog && strcmp(elog, "stderr") != 0 && sl_log_open(elog) != SL_OK) {
        fprintf(stderr, "sluice-cp: error_log: cannot open '%s': %s\n", elog, strerror(errno));
        SSL_CTX_free(ssl_ctx);
        SSL_CTX_free(cluster_ctx);
        sl_conf_free(conf);
        return 2;
    }
    if (sl_mkdir_p(prefix) != 0) {
        fprintf(stderr, "sluice-cp: prefix: cannot create '%s': %s\n", prefix, strerror(errno));
        SSL_CTX_free(ssl_ctx);
        SSL_CTX_free(cluster_ctx);
        sl_conf_free(conf);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/store", prefix);
    sl_store_t *store = NULL;
    if (sl_store_open(dir, map_size, (uint64_t)depth, &store, &errs) != SL_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "sluice-cp: store: %s\n", errs.items[i]);
        if (errs.n == 0)
            fprintf(stderr, "sluice-cp: store: cannot open '%s'\n", dir);
        sl_errors_dispose(&errs);
        SSL_CTX_free(ssl_ctx);
        SSL_CTX_free(cluster_ctx);
        sl_conf_free(conf);
        return 1;
    }

    struct event_base *base = event_base_new();
    json_t *shown = sanitized_conf(conf);
    sl_admin_opts_t ao = {.listen = listeners,
                          .nlisten = nlisten,
                          .ssl_ctx = ssl_ctx,
                          .token = token,
                          .prefix = prefix,
                          .map_size = map_size,
                          .configuration = shown};
    sl_admin_t *admin = NULL;
    int arc = sl_admin_new(base, store, &ao, &admin, msg, sizeof(msg));
    int admin_errno = errno;
    SSL_CTX_free(ssl_ctx); /* the Admin API holds its own reference */
    json_decref(shown);
    if (arc != SL_OK) {
        fprintf(stderr, "sluice-cp: %s\n", msg);
        SSL_CTX_free(cluster_ctx);
        event_base_free(base);
        sl_store_close(store);
        sl_conf_free(conf);
        return admin_errno == EINVAL ? 2 : 1;
    }

    /* The cluster listener before admin.addr: whoever sees admin.addr can
     * read cluster.addr too. */
    sl_cluster_t *cluster = NULL;
    if (cluster_on) {
        co.ssl_ctx = cluster_ctx;
        co.prefix = prefix;
        co.node_id = sl_admin_node_id(admin);
        int crc = sl_cluster_new(base, store, &co, &cluster, msg, sizeof(msg));
        SSL_CTX_free(cluster_ctx);
        if (crc != SL_OK) {
            fprintf(stderr, "sluice-cp: %s\n", msg);
            sl_admin_free(admin);
            event_base_free(base);
            sl_store_close(store);
            sl_conf_free(conf);
            return crc == SL_ERR_INVALID ? 2 : 1;
        }
        sl_admin_set_cluster(admin, cluster);
    }

    /* Tell tests and tools where we listen (port 0 picks a free one):
     * admin.addr gets the first plain listener, admin_ssl.addr the first TLS
     * one. admin_ssl.addr is written first, so that whoever sees admin.addr
     * sees both. */
    bool wrote_plain = false, wrote_ssl = false;
    for (size_t j = 0; j < 2 * nlisten; j++) {
        size_t i = j % nlisten;
        if (listeners[i].ssl != (j < nlisten))
            continue;
        bool *wrote = listeners[i].ssl ? &wrote_ssl : &wrote_plain;
        char path[4096], text[300];
        const char *host = listeners[i].host;
        if (!strcmp(host, "0.0.0.0"))
            host = "127.0.0.1";
        else if (!strcmp(host, "::"))
            host = "::1";
        bool v6 = strchr(host, ':') != NULL;
        SL_NOTICE("admin API listening on %s%s%s:%u%s", v6 ? "[" : "", host, v6 ? "]" : "",
                  (unsigned)sl_admin_port(admin, i), listeners[i].ssl ? " (TLS)" : "");
        if (*wrote)
            continue;
        *wrote = true;
        snprintf(path, sizeof(path), "%s/%s", prefix,
                 listeners[i].ssl ? "admin_ssl.addr" : "admin.addr");
        snprintf(text, sizeof(text), "%s%.128s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "",
                 (unsigned)sl_admin_port(admin, i));
        if (sl_write_file_atomic(path, text, strlen(text)) != SL_OK)
            SL_WARN("cannot write %s: %s", path, strerror(errno));
    }

    struct event *sig_term = evsignal_new(base, SIGTERM, on_stop_signal, base);
    struct event *sig_int = evsignal_new(base, SIGINT, on_stop_signal, base);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);
    SL_NOTICE("sluice-cp %s started: store %s (version %llu)", SL_CP_VERSION, dir,
              (unsigned long long)sl_store_version(store));

    int rc = event_base_dispatch(base) < 0 ? 1 : 0;

    event_free(sig_term);
    event_free(sig_int);
    sl_cluster_free(cluster);
    sl_admin_free(admin);
    event_base_free(base);
    sl_store_close(store);
    sl_conf_free(conf);
    sl_errors_dispose(&errs);
    sl_plugins_reset();
    SL_NOTICE("sluice-cp stopped");
    return rc;
}
