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
    {"log_level", "notice", "debug, info, notice, warn, error or crit"},
    {"error_log", "stderr", "error log path, or stderr"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice-cp [options]\n"
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
        const char *v = sl_conf_get(c, cp_keys[i].name);
        if (!strcmp(cp_keys[i].name, "admin_token"))
            json_object_set_new(o, "admin_token", v ? json_string("******") : json_null());
        else
            json_object_set_new(o, cp_keys[i].name, v ? json_string(v) : json_null());
    }
    json_object_set_new(o, "role", json_string("control_plane"));
    json_object_set_new(o, "database", json_string("lmdb"));
    return o;
}

int main(int argc, char **argv)
{
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

    if (errs.n) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "sluice-cp: invalid configuration: %s\n", errs.items[i]);
        sl_errors_dispose(&errs);
        SSL_CTX_free(ssl_ctx);
        sl_conf_free(conf);
        return 2;
    }
    if (test_only) {
        printf("sluice-cp: configuration ok\n");
        SSL_CTX_free(ssl_ctx);
        sl_conf_free(conf);
        return 0;
    }
    sl_log_level = level;
    const char *elog = sl_conf_get(conf, "error_log");
    if (elog && *elog && strcmp(elog, "stderr") != 0 && sl_log_open(elog) != SL_OK) {
        fprintf(stderr, "sluice-cp: error_log: cannot open '%s': %s\n", elog, strerror(errno));
        SSL_CTX_free(ssl_ctx);
        sl_conf_free(conf);
        return 2;
    }
    if (sl_mkdir_p(prefix) != 0) {
        fprintf(stderr, "sluice-cp: prefix: cannot create '%s': %s\n", prefix, strerror(errno));
        SSL_CTX_free(ssl_ctx);
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
        event_base_free(base);
        sl_store_close(store);
        sl_conf_free(conf);
        return admin_errno == EINVAL ? 2 : 1;
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
    sl_admin_free(admin);
    event_base_free(base);
    sl_store_close(store);
    sl_conf_free(conf);
    sl_errors_dispose(&errs);
    SL_NOTICE("sluice-cp stopped");
    return rc;
}
