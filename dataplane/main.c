/*
 * sluice-dp: the data plane. main.c owns the process: it reads the
 * configuration, loads the declarative file, binds the listeners, starts the
 * workers and then runs the main thread's event loop, which handles signals
 * (SIGHUP reload, SIGTERM/SIGINT drain) and the status listener.
 *
 * Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration or
 * arguments (with the reasons on stderr).
 */
#include "bridge.h"
#include "declarative.h"
#include "cluster_dp.h"
#include "dp_conf.h"
#include "log.h"
#include "plugin.h"
#include "plugins.h"
#include "status.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

struct app {
    sl_dp_conf_t conf;
    struct event_base *base;
    sl_worker_t **workers;
    int nworkers;
    sl_status_t *status;
    struct event *sig_hup, *sig_term, *sig_int, *drain_check, *drain_deadline;
    atomic_int workers_done;
    uint64_t version;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice-dp [-c FILE] [--declarative FILE] [-p PREFIX] [-t] [-v]\n"
               "  -c, --conf FILE          configuration file (key = value)\n"
               "  -d, --declarative FILE   declarative configuration (YAML or JSON)\n"
               "  -p, --prefix DIR         runtime directory (overrides 'prefix')\n"
               "  -t, --test               check the configuration and exit\n"
               "  -v, --version            print the version and exit\n"
               "Every configuration key can also be set as SLUICE_<KEY> in the environment.\n");
}

static void print_errors(const char *what, const sl_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "sluice-dp: %s%s\n", what, errs->items[i]);
}

/* Loads, validates and builds a generation from the declarative file. */
static int load_generation(const char *path, uint64_t version, sl_gen_t **out, sl_errors_t *errs)
{
    json_t *doc = NULL;
    int rc = sl_declarative_load_file(path, &doc, errs);
    if (rc != SL_OK)
        return rc;
    rc = sl_gen_build(doc, version, out, errs);
    json_decref(doc);
    return rc;
}

/* libevent's own messages (e.g. a name server marked down) join the error
 * log with their level instead of going raw to stderr. */
static void on_libevent_log(int severity, const char *msg)
{
    int level = severity == EVENT_LOG_DEBUG  ? SL_LOG_DEBUG
                : severity == EVENT_LOG_MSG  ? SL_LOG_INFO
                : severity == EVENT_LOG_WARN ? SL_LOG_WARN
                                             : SL_LOG_ERROR;
    sl_log(level, "libevent: %s", msg);
}

/* Binds one listening socket; port 0 asks the kernel for one. */
static int bind_listener(const sl_listen_t *l, uint16_t port, bool reuseport, uint16_t *bound)
{
    struct sockaddr_storage ss = l->addr;
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, l->addrlen) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                           : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

static void write_addr(const char *prefix, const char *name, const sl_listen_t *l,
                       const uint16_t *ports, size_t n)
{
    char path[4096], text[1024];
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        char host[64];
        const char *t = l[i].text;
        const char *colon = strrchr(t, ':');
        size_t hl = colon ? (size_t)(colon - t) : strlen(t);
        snprintf(host, sizeof(host), "%.*s", (int)hl, t);
        if (!strcmp(host, "0.0.0.0") || !strcmp(host, "*"))
            strcpy(host, "127.0.0.1");
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%s:%u\n", host, ports[i]);
        SL_NOTICE("%s listening on %s:%u", name, host, ports[i]);
    }
    snprintf(path, sizeof(path), "%s/%s.addr", prefix, name);
    if (sl_write_file_atomic(path, text, off) != SL_OK)
        SL_WARN("cannot write %s: %s", path, strerror(errno));
}

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    const char *path = app->conf.declarative_config;
    if (!path) {
        SL_NOTICE("SIGHUP: no declarative_config to reload");
        return;
    }
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_gen_t *g = NULL;
    uint64_t t0 = sl_now_us();
    if (load_generation(path, app->version + 1, &g, &errs) != SL_OK) {
        SL_ERROR("SIGHUP: %s is invalid, keeping the current configuration:", path);
        for (size_t i = 0; i < errs.n; i++)
            SL_ERROR("  %s", errs.items[i]);
    } else {
        app->version++;
        sl_gen_publish(g);
        atomic_fetch_add_explicit(&sl_gen_seq, 1, memory_order_release);
        SL_NOTICE("SIGHUP: configuration reloaded from %s (hash %s, %zu routes, %.1f ms)", path,
                  g->hash, g->nroutes, (double)(sl_now_us() - t0) / 1000.0);
    }
    sl_errors_dispose(&errs);
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    if (atomic_load(&app->workers_done) == app->nworkers)
        event_base_loopexit(app->base, NULL);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    SL_WARN("drain timeout reached with requests still in flight; exiting");
    fflush(NULL);
    _exit(0);
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    if (app->drain_check)
        return;
    SL_NOTICE("received signal %d: draining (up to %llu ms)", (int)fd,
              (unsigned long long)app->conf.drain_timeout_ms);
    if (app->status)
        sl_status_set_draining(app->status);
    for (int i = 0; i < app->nworkers; i++)
        sl_worker_drain(app->workers[i]);
    struct timeval poll = {0, 20000};
    app->drain_check = event_new(app->base, -1, EV_PERSIST, on_drain_check, app);
    event_add(app->drain_check, &poll);
    struct timeval dl = {(time_t)(app->conf.drain_timeout_ms / 1000),
                         (suseconds_t)(app->conf.drain_timeout_ms % 1000) * 1000};
    app->drain_deadline = evtimer_new(app->base, on_drain_deadline, app);
    evtimer_add(app->drain_deadline, &dl);
}

static bool runnable(const sl_plugin_info_t *p)
{
    return sl_plugin_impl(p) != NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"conf", required_argument, NULL, 'c'},
        {"declarative", required_argument, NULL, 'd'},
        {"prefix", required_argument, NULL, 'p'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *conf_path = NULL, *decl = NULL, *prefix = NULL;
    bool test_only = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:d:p:tvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            break;
        case 'd':
            decl = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("sluice-dp %s\n", SL_VERSION);
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
        fprintf(stderr, "sluice-dp: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct app app;
    memset(&app, 0, sizeof(app));
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_conf_t *raw = sl_conf_new(sl_dp_conf_keys, sl_dp_conf_nkeys);
    if (conf_path)
        sl_conf_load_file(raw, conf_path, &errs);
    sl_conf_load_env(raw);
    if (prefix)
        sl_conf_set(raw, "prefix", prefix);
    if (decl)
        sl_conf_set(raw, "declarative_config", decl);
    sl_dp_conf_build(raw, &app.conf, &errs);
    /* External plugins: their servers' -dump output registers them. */
    if (!errs.n)
        sl_bridge_configure(raw, app.conf.prefix, &errs);
    sl_conf_free(raw);
    int rc = 2;
    sl_gen_t *gen = NULL;
    /* The plugins this data plane runs: those with an implementation. */
    sl_plugins_set_runnable(runnable);
    if (!errs.n && sl_plugins_enable(app.conf.plugins, &errs) == SL_OK)
        sl_plugins_install_lookup();
    if (errs.n) {
        print_errors("invalid configuration: ", &errs);
        goto out;
    }
    sl_log_level = app.conf.log_level;

    if (app.conf.declarative_config) {
        if (load_generation(app.conf.declarative_config, 1, &gen, &errs) != SL_OK) {
            fprintf(stderr, "sluice-dp: %s: invalid declarative configuration:\n",
                    app.conf.declarative_config);
            print_errors("", &errs);
            goto out;
        }
        app.version = 1;
    } else {
        gen = sl_gen_empty();
    }
    if (app.conf.hybrid && sl_dp_cluster_check(&app.conf, &errs) != SL_OK) {
        print_errors("invalid configuration: ", &errs);
        goto out;
    }
    if (test_only) {
        /* Given certificates are checked; a default one is not made. */
        if (app.conf.any_ssl && (app.conf.ssl_cert || app.conf.ssl_cert_key) &&
            sl_tls_init(&app.conf, &errs) != SL_OK) {
            print_errors("invalid configuration: ", &errs);
            goto out;
        }
        printf("sluice-dp: configuration ok (%zu services, %zu routes)\n", gen->nservices,
               gen->nroutes);
        rc = 0;
        goto out;
    }
    sl_gen_publish(gen);
    gen = NULL;
    atomic_fetch_add(&sl_gen_seq, 1);
    /* A data plane serves its last applied configuration until the control
     * plane sends a newer one. */
    if (app.conf.hybrid)
        sl_dp_cluster_load_persisted(&app.conf);

    if (app.conf.error_log && sl_log_open(app.conf.error_log) != SL_OK) {
        fprintf(stderr, "sluice-dp: error_log: cannot open '%s': %s\n", app.conf.error_log,
                strerror(errno));
        goto out;
    }
    if (sl_mkdir_p(app.conf.prefix) != 0) {
        fprintf(stderr, "sluice-dp: prefix: cannot create '%s': %s\n", app.conf.prefix,
                strerror(errno));
        goto out;
    }
    if (app.conf.any_ssl && sl_tls_init(&app.conf, &errs) != SL_OK) {
        print_errors("invalid configuration: ", &errs);
        goto out;
    }
    if (app.conf.access_log) {
        sl_access_log = fopen(app.conf.access_log, "ae");
        if (!sl_access_log) {
            fprintf(stderr, "sluice-dp: access_log: cannot open '%s': %s\n", app.conf.access_log,
                    strerror(errno));
            goto out;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    event_set_log_callback(on_libevent_log);
    evthread_use_pthreads();

    /* The status listener first: a port conflict there is found before any
     * worker exists. */
    int sfd = -1;
    uint16_t sport = 0;
    if (app.conf.status_on) {
        sfd = bind_listener(&app.conf.status, sl_listen_port(&app.conf.status), false, &sport);
        if (sfd < 0) {
            fprintf(stderr, "sluice-dp: status_listen: cannot listen on %s: %s\n",
                    app.conf.status.text, strerror(errno));
            rc = 1;
            goto out;
        }
    }

    /* Listeners: worker 0 binds first (port 0 picks a port), the others bind
     * the same port with SO_REUSEPORT so the kernel spreads connections. */
    app.nworkers = app.conf.workers;
    int(*fds)[SL_MAX_LISTENERS] = sl_xcalloc((size_t)app.nworkers, sizeof(*fds));
    uint16_t ports[SL_MAX_LISTENERS];
    for (size_t l = 0; l < app.conf.nproxy; l++) {
        uint16_t want = sl_listen_port(&app.conf.proxy[l]);
        for (int i = 0; i < app.nworkers; i++) {
            uint16_t bound;
            fds[i][l] = bind_listener(&app.conf.proxy[l], i == 0 ? want : ports[l], true, &bound);
            if (fds[i][l] < 0) {
                fprintf(stderr, "sluice-dp: proxy_listen: cannot listen on %s: %s\n",
                        app.conf.proxy[l].text, strerror(errno));
                for (int k = 0; k < i; k++)
                    close(fds[k][l]);
                for (size_t pl = 0; pl < l; pl++)
                    for (int k = 0; k < app.nworkers; k++)
                        close(fds[k][pl]);
                free(fds);
                if (sfd >= 0)
                    close(sfd);
                rc = 1;
                goto out;
            }
            if (i == 0)
                ports[l] = bound;
        }
    }
    write_addr(app.conf.prefix, "proxy", app.conf.proxy, ports, app.conf.nproxy);

    app.base = event_base_new();
    app.workers = sl_xcalloc((size_t)app.nworkers, sizeof(sl_worker_t *));
    for (int i = 0; i < app.nworkers; i++) {
        app.workers[i] = sl_worker_new(i, &app.conf, fds[i], ports, app.conf.nproxy);
        if (!app.workers[i])
            return 1;
    }
    free(fds);

    if (sfd >= 0) {
        app.status = sl_status_new(app.base, sfd, app.workers, app.nworkers);
        if (!app.status)
            return 1;
        write_addr(app.conf.prefix, "status", &app.conf.status, &sport, 1);
    }

    /* Plugin servers first, so that the first requests find them. */
    if (sl_bridge_start(app.base, 5000, &errs) != SL_OK) {
        print_errors("", &errs);
        sl_bridge_stop();
        return 1;
    }
    for (int i = 0; i < app.nworkers; i++) {
        if (sl_worker_start(app.workers[i], &app.workers_done) != SL_OK) {
            fprintf(stderr, "sluice-dp: cannot start worker %d\n", i);
            return 1;
        }
    }

    app.sig_hup = evsignal_new(app.base, SIGHUP, on_sighup, &app);
    app.sig_term = evsignal_new(app.base, SIGTERM, on_sigterm, &app);
    app.sig_int = evsignal_new(app.base, SIGINT, on_sigterm, &app);
    event_add(app.sig_hup, NULL);
    event_add(app.sig_term, NULL);
    event_add(app.sig_int, NULL);
    SL_NOTICE("sluice-dp %s started: %d workers, configuration %s", SL_VERSION, app.nworkers,
              app.conf.hybrid               ? "from the control plane"
              : app.conf.declarative_config ? app.conf.declarative_config
                                            : "(empty)");

    if (app.conf.hybrid && sl_dp_cluster_start(app.base, &app.conf, &errs) != SL_OK) {
        print_errors("cluster: ", &errs);
        return 1;
    }

    event_base_loop(app.base, EVLOOP_NO_EXIT_ON_EMPTY);
    sl_dp_cluster_stop();

    for (int i = 0; i < app.nworkers; i++) {
        sl_worker_join(app.workers[i]);
        sl_worker_free(app.workers[i]);
    }
    sl_bridge_stop();
    free(app.workers);
    sl_status_free(app.status);
    event_free(app.sig_hup);
    event_free(app.sig_term);
    event_free(app.sig_int);
    if (app.drain_check)
        event_free(app.drain_check);
    if (app.drain_deadline)
        event_free(app.drain_deadline);
    event_base_free(app.base);
    if (sl_access_log)
        fclose(sl_access_log);
    SL_NOTICE("sluice-dp stopped");
    rc = 0;
out:
    sl_gen_unref(gen);
    sl_gen_clear();
    sl_errors_dispose(&errs);
    sl_dp_conf_dispose(&app.conf);
    sl_plugins_reset();
    sl_bridge_reset();
    sl_tls_cleanup();
    libevent_global_shutdown();
    return rc;
}
