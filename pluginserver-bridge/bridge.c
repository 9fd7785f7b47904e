/*
 * bridge.c: plugin servers from configuration to events (see bridge.h).
 *
 * Servers are configured once on the main thread and read-only afterwards,
 * but for their epoch: a counter that the supervisor bumps when a server
 * restarts and a worker bumps when it finds the server's instances gone.
 * Each worker compares the epoch its cached instances were started in, so
 * that one worker's discovery makes every worker start its instances again
 * (Kong broadcasts a worker event for the same purpose).
 *
 * An event's life on a worker:
 *
 *   instance?  ready in the worker's cache (same __seq__, same epoch): run
 *              it; being started by another event: wait for that start;
 *              else start it (start_instance on a connection of the pool)
 *   run        cmd_handle_event, then the PDK calls of the handler, each
 *              answered through ops->call, until the end marker and the
 *              RpcReturn (the connection goes back to the pool) or
 *              kong.response.exit (the connection is closed)
 *   failure    a connection that broke before the event changed anything
 *              is retried once on a fresh instance; anything else ends the
 *              event with the server's fail_open policy
 *
 * A connection carries one call at a time. Its read event stays armed while
 * it idles in the pool, so that a server that closed it is noticed then and
 * not when the next event wants it.
 */
#include "bridge.h"
#include "mp_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_MAX_FRAME SL_PB_FRAME_MAX_DEFAULT
/* How long an event waits for a restarting server to accept again. */
#define RECONNECT_WINDOW_MS 1000
#define RECONNECT_STEP_MS 20
/* Idle connections a worker keeps per server, and how many it opens at
 * most: events beyond that wait for one (up to the server's timeout). */
#define POOL_IDLE_MAX 64
#define DEFAULT_CONNECTIONS 256
#define READ_CHUNK 16384
#define RESTART_INTERVAL_MS 1000
#define STOP_GRACE_MS 2000
/* How long a stopping worker waits for its events to finish. */
#define EXIT_GRACE_MS 5000

struct sl_bridge_server_s {
    char *name;
    char *key; /* the name as its settings spell it: lower-case, '-' as '_' */
    char *socket;
    char *start_cmd; /* NULL: managed externally */
    bool protobuf;   /* ProtoBuf:1, else MsgPack:1 */
    uint64_t timeout_ms;
    bool fail_open;
    size_t max_frame;
    size_t connections; /* open at most per worker */
    size_t index;
    _Atomic unsigned epoch;
    _Atomic long mp_pid; /* MsgPack:1: the pid its serverPid notification gave */

    /* Supervisor state (main thread). */
    pid_t pid;
    struct outpipe *outs; /* output of its processes, until each pipe ends */
    struct event *restart_ev;
    uint64_t started_ms;
    bool given_up;
};

/* The output of one server process: a child of the process may keep the
 * pipe open after the process itself exited (and was replaced). */
struct outpipe {
    struct outpipe *next;
    struct sl_bridge_server_s *server;
    pid_t pid;
    int fd;
    struct event *ev;
    size_t len;
    char line[2048];
};

typedef struct sl_bridge_server_s server_t;

static server_t **servers;
static size_t nservers;

static server_t *server_named(const char *name)
{
    for (size_t i = 0; i < nservers; i++)
        if (!strcmp(servers[i]->name, name))
            return servers[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static char *server_setting(const sl_conf_t *conf, const char *server, const char *what)
{
    char key[256];
    sl_pluginserver_key(server, what, key, sizeof(key));
    const char *v = sl_conf_get(conf, key);
    return v ? sl_xstrdup(v) : NULL;
}

static void read_server(server_t *s, const sl_conf_t *conf, const char *prefix, sl_errors_t *errs)
{
    char key[256];
    s->socket = server_setting(conf, s->name, "socket");
    if (!s->socket)
        s->socket = sl_xasprintf("%s/%s.socket", prefix, s->name);
    if (strlen(s->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        sl_pluginserver_key(s->name, "socket", key, sizeof(key));
        sl_errors_add(errs, "%s: '%s' is longer than a Unix socket path can be (107 bytes)", key,
                      s->socket);
    }
    s->start_cmd = server_setting(conf, s->name, "start_cmd");
    if (!s->start_cmd) {
        char *dflt = sl_xasprintf("/usr/local/bin/%s", s->name);
        if (access(dflt, X_OK) == 0)
            s->start_cmd = dflt;
        else
            free(dflt);
    } else if (!*s->start_cmd) {
        free(s->start_cmd);
        s->start_cmd = NULL;
    }
    s->timeout_ms = DEFAULT_TIMEOUT_MS;
    sl_pluginserver_key(s->name, "timeout", key, sizeof(key));
    if (sl_conf_get(conf, key)) {
        sl_conf_get_ms(conf, key, &s->timeout_ms, errs);
        if (s->timeout_ms == 0)
            sl_errors_add(errs, "%s: must be more than 0 (a duration such as 500ms or 60s)", key);
    }
    sl_pluginserver_key(s->name, "fail_open", key, sizeof(key));
    s->fail_open = false;
    sl_conf_get_bool(conf, key, &s->fail_open, errs);
    uint64_t max = DEFAULT_MAX_FRAME;
    sl_pluginserver_key(s->name, "max_frame", key, sizeof(key));
    if (sl_conf_get(conf, key)) {
        sl_conf_get_size(conf, key, &max, errs);
        if (max < 1024 || max > (1u << 30))
            sl_errors_add(errs, "%s: must be between 1k and 1g, got '%s'", key,
                          sl_conf_get(conf, key));
    }
    s->max_frame = (size_t)max;
    int64_t conns = DEFAULT_CONNECTIONS;
    sl_pluginserver_key(s->name, "connections", key, sizeof(key));
    if (sl_conf_get(conf, key))
        sl_conf_get_int(conf, key, 1, 65536, &conns, errs);
    s->connections = (size_t)conns;
}

/* A pluginserver_* key that names no configured server or no setting is a
 * typo that would otherwise go unnoticed. */
static void check_keys(const sl_conf_t *conf, sl_errors_t *errs)
{
    static const char *const settings[] = {"socket",    "start_cmd", "query_cmd",  "timeout",
                                           "fail_open", "max_frame", "connections"};
    for (size_t i = 0; i < sl_conf_family_count(conf); i++) {
        const char *value;
        const char *key = sl_conf_family_key(conf, i, &value);
        if (strncmp(key, "pluginserver_", 13) != 0 || !strcmp(key, "pluginserver_names"))
            continue;
        bool known = false;
        for (size_t k = 0; k < nservers && !known; k++) {
            for (size_t w = 0; w < sizeof(settings) / sizeof(settings[0]) && !known; w++) {
                char want[256];
                sl_pluginserver_key(servers[k]->name, settings[w], want, sizeof(want));
                known = !strcmp(key, want);
            }
        }
        if (!known)
            sl_errors_add(errs,
                          "%s: not a setting of a server in pluginserver_names (settings are "
                          "pluginserver_<name>_socket, _start_cmd, _query_cmd, _timeout, "
                          "_fail_open, _max_frame and _connections)",
                          key);
    }
}

int sl_bridge_configure(const sl_conf_t *conf, const char *prefix, sl_errors_t *errs)
{
    size_t before = errs->n;
    char **names;
    size_t n = sl_pluginserver_names(conf, &names);
    for (size_t i = 0; i < n; i++) {
        if (server_named(names[i])) {
            sl_errors_add(errs, "pluginserver_names: '%s' is listed twice", names[i]);
            continue;
        }
        const char *protocol = NULL;
        if (sl_pluginserver_query(conf, names[i], &protocol, errs) != SL_OK)
            continue;
        server_t *s = sl_xcalloc(1, sizeof(*s));
        s->name = sl_xstrdup(names[i]);
        s->key = sl_xstrdup(names[i]);
        for (char *k = s->key; *k; k++)
            *k = *k == '-' ? '_' : *k;
        s->protobuf = protocol && !strcmp(protocol, "ProtoBuf:1");
        s->pid = -1;
        read_server(s, conf, prefix, errs);
        s->index = nservers;
        servers = sl_xrealloc(servers, (nservers + 1) * sizeof(*servers));
        servers[nservers++] = s;
    }
    sl_conf_split_free(names, n);
    if (errs->n == before)
        check_keys(conf, errs);
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}

bool sl_bridge_runs(const sl_plugin_info_t *p)
{
    return p->server && server_named(p->server);
}

void sl_bridge_reset(void)
{
    for (size_t i = 0; i < nservers; i++) {
        server_t *s = servers[i];
        free(s->name);
        free(s->key);
        free(s->socket);
        free(s->start_cmd);
        free(s);
    }
    free(servers);
    servers = NULL;
    nservers = 0;
}

/* ------------------------------------------------------------------------ */
/* Supervisor                                                                */

static struct event_base *main_base;
static struct event *sigchld_ev;
static bool stopping;

/* Logs one line of a server's output as text: terminal escape sequences
 * (colours, cursor moves: node-color-log's) are dropped, other control
 * bytes escaped, so that a server cannot forge or garble log lines. */
static void log_line(const struct outpipe *o, const char *p, size_t n)
{
    char text[sizeof(o->line) * 4 + 1];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == 0x1b) {
            /* ESC [ parameters... final byte (0x40-0x7e), or ESC and one byte */
            if (i + 1 < n && p[i + 1] == '[') {
                i += 2;
                while (i < n && !((unsigned char)p[i] >= 0x40 && (unsigned char)p[i] <= 0x7e))
                    i++;
            } else {
                i++;
            }
        } else if (c == '\r') {
            continue;
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)snprintf(text + k, sizeof(text) - k, "\\x%02x", c);
        } else {
            text[k++] = (char)c;
        }
    }
    while (k && text[k - 1] == ' ')
        k--;
    if (k)
        SL_NOTICE("[%s:%d] %.*s", o->server->name, (int)o->pid, (int)k, text);
}

static void outpipe_close(struct outpipe *o)
{
    if (o->len)
        log_line(o, o->line, o->len);
    for (struct outpipe **pp = &o->server->outs; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    event_free(o->ev);
    close(o->fd);
    free(o);
}

/* Logs the whole lines of n bytes of output (a line longer than the
 * buffer is cut). */
static void output_bytes(struct outpipe *o, const char *buf, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n' || o->len == sizeof(o->line)) {
            log_line(o, o->line, o->len);
            o->len = 0;
            if (c == '\n')
                continue;
        }
        o->line[o->len++] = c;
    }
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
    struct outpipe *o = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        outpipe_close(o);
    else
        output_bytes(o, buf, n);
}

/* Forks /bin/sh -c "exec <start_cmd>" with its output on a pipe. */
static int spawn(server_t *s)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    /* The socket of the previous process would refuse connections until
     * the new one replaces it. */
    char *cmd = sl_xasprintf("exec %s", s->start_cmd);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        free(cmd);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls here: other threads may hold locks. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            sigaction(sig, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    close(pfd[1]);
    fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
    s->pid = pid;
    s->started_ms = sl_now_ms();
    struct outpipe *o = sl_xcalloc(1, sizeof(*o));
    o->server = s;
    o->pid = pid;
    o->fd = pfd[0];
    o->ev = event_new(main_base, pfd[0], EV_READ | EV_PERSIST, on_output, o);
    o->next = s->outs;
    s->outs = o;
    event_add(o->ev, NULL);
    SL_NOTICE("pluginserver %s: started (pid %d): %s", s->name, (int)pid, s->start_cmd);
    return 0;
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;
    if (stopping || s->pid > 0)
        return;
    if (spawn(s) != 0) {
        SL_ERROR("pluginserver %s: cannot start: %s; trying again in a second", s->name,
                 strerror(errno));
        struct timeval tv = {1, 0};
        evtimer_add(s->restart_ev, &tv);
    }
}

static void reaped(server_t *s, int status)
{
    /* Whatever instances the server held are gone with it. */
    atomic_fetch_add(&s->epoch, 1);
    pid_t pid = s->pid;
    s->pid = -1;
    if (stopping)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        SL_ERROR("pluginserver %s (pid %d) exited with status 127 (command not found): not "
                 "restarting it; check pluginserver_%s_start_cmd",
                 s->name, (int)pid, s->key);
        s->given_up = true;
        return;
    }
    char why[64];
    if (WIFSIGNALED(status))
        snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(status));
    else
        snprintf(why, sizeof(why), "exited with status %d", WEXITSTATUS(status));
    uint64_t since = sl_now_ms() - s->started_ms;
    uint64_t delay = since >= RESTART_INTERVAL_MS ? 0 : RESTART_INTERVAL_MS - since;
    SL_ERROR("pluginserver %s (pid %d) %s: restarting it%s", s->name, (int)pid, why,
             delay ? " in under a second" : "");
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
    evtimer_add(s->restart_ev, &tv);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    for (size_t i = 0; i < nservers; i++) {
        server_t *s = servers[i];
        int status;
        if (s->pid > 0 && waitpid(s->pid, &status, WNOHANG) == s->pid)
            reaped(s, status);
    }
}

static bool is_socket(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

int sl_bridge_start(struct event_base *base, unsigned wait_ms, sl_errors_t *errs)
{
    main_base = base;
    stopping = false;
    bool any = false;
    for (size_t i = 0; i < nservers; i++)
        any = any || servers[i]->start_cmd;
    if (!any)
        return SL_OK;
    sigchld_ev = evsignal_new(base, SIGCHLD, on_sigchld, NULL);
    event_add(sigchld_ev, NULL);
    for (size_t i = 0; i < nservers; i++) {
        server_t *s = servers[i];
        if (!s->start_cmd)
            continue;
        /* A socket file left by an earlier run: the server replaces it
         * anyway, and its absence until then says the server is not
         * listening yet. */
        if (is_socket(s->socket))
            unlink(s->socket);
        s->restart_ev = evtimer_new(base, on_restart, s);
        if (spawn(s) != 0) {
            sl_errors_add(errs, "pluginserver %s: cannot start '%s': %s", s->name, s->start_cmd,
                          strerror(errno));
            return SL_ERR_IO;
        }
    }
    /* Give the servers a moment to listen, so that the first requests
     * find them; one that is slow only costs those requests. The socket
     * file says so without a connection (go-pdk logs every one). */
    uint64_t deadline = sl_now_ms() + wait_ms;
    for (size_t i = 0; i < nservers; i++) {
        server_t *s = servers[i];
        if (!s->start_cmd)
            continue;
        while (!is_socket(s->socket) && sl_now_ms() < deadline) {
            int status;
            if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                reaped(s, status);
                break;
            }
            usleep(10000);
        }
        if (s->pid > 0 && !is_socket(s->socket))
            SL_WARN("pluginserver %s: nothing accepts connections on %s yet; requests for its "
                    "plugins fail until it does (is pluginserver_%s_socket where the server "
                    "listens?)",
                    s->name, s->socket, s->key);
    }
    return SL_OK;
}

void sl_bridge_stop(void)
{
    stopping = true;
    for (size_t i = 0; i < nservers; i++)
        if (servers[i]->pid > 0)
            kill(servers[i]->pid, SIGTERM);
    uint64_t deadline = sl_now_ms() + STOP_GRACE_MS;
    for (;;) {
        bool left = false;
        for (size_t i = 0; i < nservers; i++) {
            server_t *s = servers[i];
            int status;
            if (s->pid > 0 && waitpid(s->pid, &status, WNOHANG) == s->pid)
                s->pid = -1;
            left = left || s->pid > 0;
        }
        if (!left)
            break;
        if (sl_now_ms() >= deadline) {
            for (size_t i = 0; i < nservers; i++) {
                server_t *s = servers[i];
                if (s->pid <= 0)
                    continue;
                SL_WARN("pluginserver %s (pid %d) did not stop on SIGTERM: killing it", s->name,
                        (int)s->pid);
                kill(-s->pid, SIGKILL);
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                s->pid = -1;
            }
            break;
        }
        usleep(10000);
    }
    for (size_t i = 0; i < nservers; i++) {
        server_t *s = servers[i];
        while (s->outs) {
            /* What is left of its output, then the pipe. */
            struct outpipe *o = s->outs;
            char buf[4096];
            ssize_t n;
            while ((n = read(o->fd, buf, sizeof(buf))) > 0)
                output_bytes(o, buf, n);
            outpipe_close(o);
        }
        if (s->restart_ev)
            event_free(s->restart_ev);
        s->restart_ev = NULL;
    }
    if (sigchld_ev)
        event_free(sigchld_ev);
    sigchld_ev = NULL;
}

/* ------------------------------------------------------------------------ */
/* Instances                                                                 */

struct sl_bridge_inst_s {
    server_t *server;
    char *plugin_id;
    int32_t seq;
    char *config; /* start_instance's JSON */
    size_t config_len;
    char name[]; /* the plugin's */
};

/* __seq__ by plugin id, kept while the instance's identity (config and
 * scope) stays the same. Generations are built on one thread at a time,
 * but not always the same one. */
static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *seq_by_id; /* id -> [identity text, seq] */
static int32_t seq_next;

static int32_t seq_for(const char *id, const char *identity)
{
    pthread_mutex_lock(&seq_lock);
    if (!seq_by_id) {
        seq_by_id = json_object();
        /* Not 1: another data plane sharing a server (or this one before
         * a restart) must not hand it the same ids for other configs. */
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = (uint32_t)sl_now_us();
        seq_next = (int32_t)(r % (1u << 30)) + 1;
    }
    json_t *e = json_object_get(seq_by_id, id);
    int32_t seq;
    if (e && !strcmp(json_string_value(json_array_get(e, 0)), identity)) {
        seq = (int32_t)json_integer_value(json_array_get(e, 1));
    } else {
        seq = seq_next;
        seq_next = seq_next == INT32_MAX ? 1 : seq_next + 1;
        json_object_set_new(seq_by_id, id, json_pack("[s,I]", identity, (json_int_t)seq));
    }
    pthread_mutex_unlock(&seq_lock);
    return seq;
}

static const char *fk_id(const json_t *entity, const char *field)
{
    return json_string_value(json_object_get(json_object_get(entity, field), "id"));
}

sl_bridge_inst_t *sl_bridge_inst_new(const sl_plugin_info_t *info, const json_t *entity, char *err,
                                     size_t errlen)
{
    server_t *s = info->server ? server_named(info->server) : NULL;
    const char *id = json_string_value(json_object_get(entity, "id"));
    const json_t *config = json_object_get(entity, "config");
    if (!s || !id || !json_is_object(config)) {
        snprintf(err, errlen, "%s",
                 !s    ? "no plugin server provides this plugin"
                 : !id ? "the plugin has no id"
                       : "config must be an object");
        return NULL;
    }
    sl_pb_instance_conf_t c = {
        .config = config,
        .plugin_id = id,
        .ws_id = json_string_value(json_object_get(entity, "ws_id")),
        .route_id = fk_id(entity, "route"),
        .service_id = fk_id(entity, "service"),
        .consumer_id = fk_id(entity, "consumer"),
        .instance_name = json_string_value(json_object_get(entity, "instance_name")),
    };
    /* The identity: everything start_instance sends but __seq__. */
    json_t *ident =
        json_pack("{s:O,s:s?,s:s?,s:s?,s:s?}", "config", config, "route", c.route_id, "service",
                  c.service_id, "consumer", c.consumer_id, "name", c.instance_name);
    char *itext = json_dumps(ident, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(ident);
    c.seq = seq_for(id, itext ? itext : "");
    free(itext);
    char *text;
    size_t len;
    sl_pb_err_t perr;
    if (sl_pb_config_json(&c, &text, &len, &perr) != SL_OK) {
        snprintf(err, errlen, "%s", perr.msg);
        return NULL;
    }
    size_t nl = strlen(info->name);
    sl_bridge_inst_t *x = sl_xcalloc(1, sizeof(*x) + nl + 1);
    memcpy(x->name, info->name, nl + 1);
    x->server = s;
    x->plugin_id = sl_xstrdup(id);
    x->seq = (int32_t)c.seq;
    x->config = text;
    x->config_len = len;
    return x;
}

void sl_bridge_inst_free(sl_bridge_inst_t *x)
{
    if (!x)
        return;
    free(x->plugin_id);
    free(x->config);
    free(x);
}

int32_t sl_bridge_inst_seq(const sl_bridge_inst_t *x)
{
    return x->seq;
}

/* ------------------------------------------------------------------------ */
/* Workers: connections, the instance cache, events                          */

typedef struct pconn_s pconn_t;
typedef struct slot_s slot_t;
typedef struct sl_bridge_event_s event_t;

/* What a connection waits for from the server. */
enum { PC_IDLE, PC_START, PC_EVENT };

struct pconn_s {
    pconn_t *next; /* in the pool's idle list */
    struct wstate *ws;
    server_t *server;
    int fd;
    struct event *rev, *wev, *timer;
    int state;
    event_t *ev;         /* the event the call belongs to */
    int64_t seq_counter; /* sequences of this connection's calls */
    int64_t call_seq;    /* of the call in flight */
    uint8_t *in;         /* bytes read, not yet used */
    size_t in_len, in_cap;
    sl_mp_reader_t *mp; /* MsgPack:1: the response reader */
    uint32_t msgid_counter, call_msgid;
    sl_sb_t out; /* bytes to write */
    size_t out_off;
    char out_store[512];
};

/* A worker's cached instance of one plugin entity. */
struct slot_s {
    slot_t *next;      /* hash chain */
    int32_t seq;       /* of the config it runs */
    int32_t remote_id; /* the server's instance id */
    unsigned epoch;    /* the server's epoch when started */
    bool ready, starting;
    event_t *waiters; /* events waiting for the start */
    char id[];        /* the plugin entity's id */
};

#define SLOT_BUCKETS 256

struct wstate {
    struct event_base *base;
    pconn_t **idle; /* per server */
    size_t *nidle;
    size_t *nopen;                     /* per server: connections open */
    struct sl_bridge_event_s **queued; /* per server: events waiting for one */
    slot_t *slots[SLOT_BUCKETS];
    event_t *events; /* in flight, for worker_exit */
};

/* Event states. */
enum { EV_NEW, EV_WAITING, EV_QUEUED, EV_CONNECTING, EV_STARTING, EV_RUNNING, EV_FINISHED };

struct sl_bridge_event_s {
    event_t *prev, *next; /* in ws->events */
    event_t *next_waiter;
    struct wstate *ws;
    const sl_bridge_inst_t *inst;
    const char *phase;
    const sl_bridge_ops_t *ops;
    void *req;
    pconn_t *conn;
    int state;
    sl_pb_event_t pe;
    bool wrote;                                  /* a call that changes the request was answered */
    bool retried;                                /* the event was re-run once already */
    bool starter;                                /* this event is starting its instance */
    int result;                                  /* SL_BRIDGE_*, once finished */
    int64_t event_id;                            /* MsgPack:1: the server's */
    char step_method[SL_MP_METHOD_NAME_MAX + 1]; /* MsgPack:1: the call answered */
    uint64_t connect_deadline;
    uint64_t queue_deadline; /* waiting for a connection (EV_QUEUED) until */
    struct event *timer;     /* connect retries and the deferred done */
    char why[256];           /* the failure, for the log */
};

static _Thread_local struct wstate *tls;

static struct wstate *wstate_for(struct event_base *base)
{
    if (!tls) {
        tls = sl_xcalloc(1, sizeof(*tls));
        tls->base = base;
        tls->idle = sl_xcalloc(nservers ? nservers : 1, sizeof(*tls->idle));
        tls->nidle = sl_xcalloc(nservers ? nservers : 1, sizeof(*tls->nidle));
        tls->nopen = sl_xcalloc(nservers ? nservers : 1, sizeof(*tls->nopen));
        tls->queued = sl_xcalloc(nservers ? nservers : 1, sizeof(*tls->queued));
    }
    return tls;
}

static uint32_t hash_id(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static slot_t *slot_of(struct wstate *ws, const char *id)
{
    slot_t **head = &ws->slots[hash_id(id) % SLOT_BUCKETS];
    for (slot_t *s = *head; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    size_t n = strlen(id);
    slot_t *s = sl_xcalloc(1, sizeof(*s) + n + 1);
    memcpy(s->id, id, n + 1);
    s->next = *head;
    *head = s;
    return s;
}

static struct timeval ms_tv(uint64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* ---- connections -------------------------------------------------------- */

static void conn_io(evutil_socket_t fd, short what, void *arg);
static void conn_timeout(evutil_socket_t fd, short what, void *arg);
static void event_failed(event_t *ev, bool broken, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_released(struct wstate *ws, size_t server);

static void conn_free(pconn_t *c)
{
    struct wstate *ws = c->ws;
    size_t server = c->server->index;
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->timer);
    close(c->fd);
    sl_mp_reader_free(c->mp);
    free(c->in);
    sl_sb_dispose(&c->out);
    free(c);
    ws->nopen[server]--;
    conn_released(ws, server);
}

/* Takes an idle connection out of its pool. */
static void pool_remove(pconn_t *c)
{
    struct wstate *ws = c->ws;
    size_t i = c->server->index;
    for (pconn_t **pp = &ws->idle[i]; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            ws->nidle[i]--;
            return;
        }
    }
}

static void pool_put(pconn_t *c)
{
    struct wstate *ws = c->ws;
    size_t i = c->server->index;
    c->ev = NULL;
    c->state = PC_IDLE;
    evtimer_del(c->timer);
    if (ws->nidle[i] >= POOL_IDLE_MAX) {
        conn_free(c);
        return;
    }
    c->next = ws->idle[i];
    ws->idle[i] = c;
    ws->nidle[i]++;
    conn_released(ws, i);
}

/* Connects to the server's socket. Returns the connection, or NULL with
 * errno (ECONNREFUSED, ENOENT, EAGAIN: the server is not listening yet). */
static pconn_t *conn_open(struct wstate *ws, server_t *s)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->socket);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    pconn_t *c = sl_xcalloc(1, sizeof(*c));
    ws->nopen[s->index]++;
    c->ws = ws;
    c->server = s;
    c->fd = fd;
    sl_sb_init(&c->out, c->out_store, sizeof(c->out_store));
    c->rev = event_new(ws->base, fd, EV_READ | EV_PERSIST, conn_io, c);
    c->wev = event_new(ws->base, fd, EV_WRITE, conn_io, c);
    c->timer = evtimer_new(ws->base, conn_timeout, c);
    if (!s->protobuf) {
        sl_mp_limits_t lim = SL_MP_LIMITS_DEFAULT;
        lim.max_msg = s->max_frame;
        c->mp = sl_mp_reader_new(&lim);
    }
    event_add(c->rev, NULL);
    return c;
}

/* An idle connection, or a new one; NULL with errno EBUSY when the worker
 * has as many open as it may. */
static pconn_t *conn_take(struct wstate *ws, server_t *s)
{
    pconn_t *c = ws->idle[s->index];
    if (c) {
        ws->idle[s->index] = c->next;
        ws->nidle[s->index]--;
        c->next = NULL;
        return c;
    }
    if (ws->nopen[s->index] >= s->connections) {
        errno = EBUSY;
        return NULL;
    }
    return conn_open(ws, s);
}

/* Writes what is pending; arms the write event for the rest. Returns false
 * when the connection broke. */
static bool conn_flush(pconn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                event_add(c->wev, NULL);
                return true;
            }
            return false;
        }
        c->out_off += (size_t)n;
    }
    c->out.len = 0;
    c->out_off = 0;
    return true;
}

/* Sends what was appended to c->out and waits for the server's answer. */
static bool conn_send(pconn_t *c)
{
    struct timeval tv = ms_tv(c->server->timeout_ms);
    evtimer_add(c->timer, &tv);
    return conn_flush(c);
}

/* ---- events ------------------------------------------------------------- */

static void event_next(event_t *ev);

/* Takes the event out of its worker's list and frees it. */
static void event_free_unlinked(event_t *ev)
{
    if (ev->prev)
        ev->prev->next = ev->next;
    else
        ev->ws->events = ev->next;
    if (ev->next)
        ev->next->prev = ev->prev;
    event_free(ev->timer);
    free(ev);
}

static void unlink_queued(event_t *ev);

static void on_event_timer(evutil_socket_t fd, short what, void *arg)
{
    event_t *ev = arg;
    if (ev->state == EV_FINISHED) {
        const sl_bridge_ops_t *ops = ev->ops;
        void *req = ev->req;
        int rc = ev->result;
        event_free_unlinked(ev);
        ops->done(req, rc);
        return;
    }
    if (ev->state == EV_QUEUED)
        unlink_queued(ev); /* waited for a connection until its deadline */
    event_next(ev);        /* a connect retry, a wait that ended */
}

/* Ends the event: its done() runs from the loop, never from the caller. */
static void event_finish(event_t *ev, int result)
{
    ev->state = EV_FINISHED;
    ev->result = result;
    ev->conn = NULL;
    event_active(ev->timer, EV_TIMEOUT, 0);
}

static void wake_waiters(slot_t *slot)
{
    event_t *w = slot->waiters;
    slot->waiters = NULL;
    while (w) {
        event_t *next = w->next_waiter;
        w->next_waiter = NULL;
        w->state = EV_NEW;
        event_active(w->timer, EV_TIMEOUT, 0);
        w = next;
    }
}

/* Forgets this worker's instances of a server whose instances are gone,
 * and tells the other workers (through the epoch). */
static void server_lost(server_t *s, unsigned seen)
{
    atomic_compare_exchange_strong(&s->epoch, &seen, seen + 1);
}

static void event_failed(event_t *ev, bool broken, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->why, sizeof(ev->why), fmt, ap);
    va_end(ap);
    server_t *s = ev->inst->server;
    pconn_t *c = ev->conn;
    if (c) {
        c->ev = NULL;
        conn_free(c);
        ev->conn = NULL;
    }
    slot_t *slot = slot_of(ev->ws, ev->inst->plugin_id);
    if (ev->starter) {
        slot->starting = false;
        ev->starter = false;
        wake_waiters(slot); /* they try for themselves */
    }
    /* A connection that broke says the server lost its instances (it was
     * restarted, or go-pdk closed it for an unknown instance id): start the
     * instance again and re-run the event, unless it already changed the
     * request. */
    if (broken && !ev->wrote && !ev->retried) {
        ev->retried = true;
        if (slot->ready)
            server_lost(s, slot->epoch);
        slot->ready = false;
        SL_INFO("pluginserver %s: %s during %s of plugin %s: starting the instance again", s->name,
                ev->why, ev->phase, ev->inst->name);
        ev->state = EV_NEW;
        ev->connect_deadline = 0;
        event_active(ev->timer, EV_TIMEOUT, 0);
        return;
    }
    SL_ERROR(
        "pluginserver %s: plugin %s, phase %s: %s%s", s->name, ev->inst->name, ev->phase, ev->why,
        s->fail_open ? " (fail_open: the plugin is skipped)" : " (the request fails with 500)");
    event_finish(ev, s->fail_open ? SL_BRIDGE_SKIPPED : SL_BRIDGE_FAILED);
}

static void send_event(event_t *ev, slot_t *slot)
{
    pconn_t *c = ev->conn;
    c->state = PC_EVENT;
    ev->state = EV_RUNNING;
    if (c->mp) {
        c->call_msgid = sl_mp_msgid_next(&c->msgid_counter);
        sl_mp_call_handle_event(&c->out, c->call_msgid, slot->remote_id, ev->phase);
    } else {
        int64_t seq = sl_pb_seq_next(&c->seq_counter);
        c->call_seq = seq;
        sl_pb_event_start(&ev->pe, &c->out, seq, slot->remote_id, ev->phase);
    }
    if (!conn_send(c))
        event_failed(ev, true, "the connection broke (%s)", strerror(errno));
}

static void send_start(event_t *ev)
{
    pconn_t *c = ev->conn;
    c->state = PC_START;
    ev->state = EV_STARTING;
    if (c->mp) {
        c->call_msgid = sl_mp_msgid_next(&c->msgid_counter);
        sl_mp_call_start_instance(&c->out, c->call_msgid, ev->inst->name, ev->inst->config,
                                  ev->inst->config_len);
    } else {
        int64_t seq = sl_pb_seq_next(&c->seq_counter);
        c->call_seq = seq;
        sl_pb_call_start_instance(&c->out, seq, ev->inst->name, ev->inst->config,
                                  ev->inst->config_len);
    }
    if (!conn_send(c))
        event_failed(ev, true, "the connection broke (%s)", strerror(errno));
}

/* Moves the event on: instance, connection, call. */
static void event_next(event_t *ev)
{
    server_t *s = ev->inst->server;
    slot_t *slot = slot_of(ev->ws, ev->inst->plugin_id);
    unsigned epoch = atomic_load(&s->epoch);
    bool ready = slot->ready && slot->seq == ev->inst->seq && slot->epoch == epoch;
    if (!ready && slot->starting) {
        ev->state = EV_WAITING;
        ev->next_waiter = slot->waiters;
        slot->waiters = ev;
        return;
    }
    if (!ev->conn) {
        pconn_t *c = conn_take(ev->ws, s);
        if (!c && errno == EBUSY) {
            /* Every connection is busy: wait for one, within the timeout. */
            uint64_t now = sl_now_ms();
            if (!ev->queue_deadline)
                ev->queue_deadline = now + s->timeout_ms;
            if (now >= ev->queue_deadline) {
                ev->retried = true;
                event_failed(ev, false,
                             "all %zu connections of this worker were busy for %llu ms "
                             "(pluginserver_%s_connections)",
                             s->connections, (unsigned long long)s->timeout_ms, s->key);
                return;
            }
            ev->state = EV_QUEUED;
            ev->next_waiter = ev->ws->queued[s->index];
            ev->ws->queued[s->index] = ev;
            struct timeval tv = ms_tv(ev->queue_deadline - now);
            evtimer_add(ev->timer, &tv);
            return;
        }
        if (!c) {
            int e = errno;
            uint64_t now = sl_now_ms();
            uint64_t window =
                s->timeout_ms < RECONNECT_WINDOW_MS ? s->timeout_ms : RECONNECT_WINDOW_MS;
            if (!ev->connect_deadline)
                ev->connect_deadline = now + window;
            if ((e == ECONNREFUSED || e == ENOENT || e == EAGAIN) && now < ev->connect_deadline) {
                /* The server is (re)starting: try again shortly. */
                ev->state = EV_CONNECTING;
                struct timeval tv = ms_tv(RECONNECT_STEP_MS);
                evtimer_add(ev->timer, &tv);
                return;
            }
            ev->retried = true; /* nothing to re-run against */
            event_failed(ev, false, "cannot connect to %s: %s", s->socket, strerror(e));
            return;
        }
        c->ev = ev;
        ev->conn = c;
    }
    if (ready) {
        send_event(ev, slot);
        return;
    }
    slot->starting = true;
    slot->ready = false;
    slot->seq = ev->inst->seq;
    slot->epoch = epoch;
    ev->starter = true;
    send_start(ev);
}

sl_bridge_event_t *sl_bridge_event(struct event_base *base, const sl_bridge_inst_t *inst,
                                   const char *phase, const sl_bridge_ops_t *ops, void *req)
{
    struct wstate *ws = wstate_for(base);
    event_t *ev = sl_xcalloc(1, sizeof(*ev));
    ev->ws = ws;
    ev->inst = inst;
    ev->phase = phase;
    ev->ops = ops;
    ev->req = req;
    ev->timer = evtimer_new(base, on_event_timer, ev);
    ev->next = ws->events;
    if (ws->events)
        ws->events->prev = ev;
    ws->events = ev;
    event_active(ev->timer, EV_TIMEOUT, 0);
    return ev;
}

/* A connection of the server became free (pooled or closed): the event
 * that waited longest for one goes on. */
static void conn_released(struct wstate *ws, size_t server)
{
    event_t **pp = &ws->queued[server];
    if (!*pp)
        return;
    while ((*pp)->next_waiter)
        pp = &(*pp)->next_waiter;
    event_t *ev = *pp;
    *pp = NULL;
    ev->state = EV_NEW;
    event_active(ev->timer, EV_TIMEOUT, 0);
}

static void unlink_queued(event_t *ev)
{
    for (event_t **pp = &ev->ws->queued[ev->inst->server->index]; *pp; pp = &(*pp)->next_waiter) {
        if (*pp == ev) {
            *pp = ev->next_waiter;
            ev->next_waiter = NULL;
            return;
        }
    }
}

static void unlink_waiter(event_t *ev)
{
    slot_t *slot = slot_of(ev->ws, ev->inst->plugin_id);
    for (event_t **pp = &slot->waiters; *pp; pp = &(*pp)->next_waiter) {
        if (*pp == ev) {
            *pp = ev->next_waiter;
            return;
        }
    }
}

void sl_bridge_event_cancel(sl_bridge_event_t *ev)
{
    if (ev->state == EV_WAITING)
        unlink_waiter(ev);
    if (ev->state == EV_QUEUED)
        unlink_queued(ev);
    if (ev->conn) {
        /* The server may be inside the handler: the connection cannot be
         * reused. */
        ev->conn->ev = NULL;
        conn_free(ev->conn);
        ev->conn = NULL;
    }
    if (ev->starter) {
        slot_t *slot = slot_of(ev->ws, ev->inst->plugin_id);
        slot->starting = false;
        wake_waiters(slot);
    }
    event_free_unlinked(ev);
}

/* ---- frames from the server --------------------------------------------- */

/* The instance answered its start: the event runs on the same connection. */
static void instance_ready(event_t *ev, int32_t remote_id)
{
    slot_t *slot = slot_of(ev->ws, ev->inst->plugin_id);
    slot->remote_id = remote_id;
    slot->ready = true;
    slot->starting = false;
    ev->starter = false;
    wake_waiters(slot);
    send_event(ev, slot);
}

/* The answer to start_instance. Returns whether the connection is still
 * the event's (the event was sent on it). */
static bool started(event_t *ev, const void *p, size_t n)
{
    pconn_t *c = ev->conn;
    sl_pb_return_t *ret = NULL;
    sl_pb_err_t err;
    int rc = sl_pb_return_parse(p, n, c->call_seq,
                                KONG_PLUGIN_PROTOCOL__RPC_RETURN__RETURN_INSTANCE_STATUS, NULL,
                                &ret, &err);
    if (rc != SL_OK) {
        event_failed(ev, false, "bad answer to start_instance: %s",
                     rc == SL_DECLINED ? "an empty frame" : err.msg);
        return false;
    }
    int32_t id = ret->instance_status->instance_id;
    sl_pb_return_free(ret, NULL);
    instance_ready(ev, id);
    return ev->conn == c;
}

/* What event_frame left of the connection. */
enum { FRAME_MORE, FRAME_DONE, FRAME_GONE };

/* One frame of an event. FRAME_DONE: the event is over and the connection
 * free for the caller to pool; FRAME_GONE: the connection was closed. */
static int event_frame(event_t *ev, const void *p, size_t n)
{
    pconn_t *c = ev->conn;
    sl_pb_call_t call;
    int rc = sl_pb_event_feed(&ev->pe, p, n, &call);
    switch (rc) {
    case SL_AGAIN:
        return FRAME_MORE;
    case SL_DONE:
        c->ev = NULL;
        ev->conn = NULL;
        event_finish(ev, SL_BRIDGE_OK);
        return FRAME_DONE;
    case SL_OK:
        break;
    case SL_ERR_NOT_FOUND:
        event_failed(ev, false, "%s", ev->pe.err.msg);
        return FRAME_GONE;
    default:
        event_failed(ev, false, "protocol error: %s", ev->pe.err.msg);
        return FRAME_GONE;
    }
    sl_pb_err_t err = {{0}};
    size_t mark = c->out.len;
    rc = ev->ops->call(ev->req, call.method, call.arg, call.arg_len, &c->out, &err);
    if (call.method->flags & SL_PB_M_WRITES)
        ev->wrote = true;
    if (rc != SL_DONE && rc != SL_OK) {
        c->out.len = mark;
        event_failed(ev, false, "%s: %s", call.method->name, err.msg[0] ? err.msg : "failed");
        return FRAME_GONE;
    }
    if (rc == SL_DONE || (call.method->flags & SL_PB_M_TERMINAL)) {
        /* kong.response.exit: never answered; the connection is done. */
        c->out.len = mark;
        c->ev = NULL;
        conn_free(c);
        ev->conn = NULL;
        event_finish(ev, SL_BRIDGE_EXIT);
        return FRAME_GONE;
    }
    sl_pb_event_answered(&ev->pe);
    if (!conn_send(c)) {
        event_failed(ev, true, "the connection broke (%s)", strerror(errno));
        return FRAME_GONE;
    }
    return FRAME_MORE;
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    pconn_t *c = arg;
    event_t *ev = c->ev;
    if (!ev) {
        if (c->state == PC_IDLE)
            pool_remove(c);
        conn_free(c);
        return;
    }
    event_failed(ev, false, "no answer within %llu ms (pluginserver_%s_timeout)",
                 (unsigned long long)c->server->timeout_ms, c->server->key);
}

/* The connection closed or failed while idle or during a call. */
static void conn_broke(pconn_t *c, const char *why)
{
    event_t *ev = c->ev;
    if (!ev && c->mp) {
        /* Kong's Python and JavaScript servers number instances from 0
         * again when they restart and say nothing of it: a server that
         * closes its connections may hand our cached ids to other
         * instances, so start them again. */
        atomic_fetch_add(&c->server->epoch, 1);
    }
    if (!ev) {
        if (c->state == PC_IDLE)
            pool_remove(c);
        conn_free(c);
        return;
    }
    event_failed(ev, true, "%s", why);
}

/* ---- MsgPack:1 ---------------------------------------------------------- */

/* Sends the Step that answers the PDK call the event made. */
static bool mp_step(event_t *ev, int rc, sl_bridge_mp_result_t *res)
{
    pconn_t *c = ev->conn;
    c->call_msgid = sl_mp_msgid_next(&c->msgid_counter);
    sl_mp_err_t merr;
    if (rc == SL_OK && res->error) {
        sl_mp_call_step_error(&c->out, c->call_msgid, ev->event_id, res->error, strlen(res->error));
    } else if (sl_mp_call_step_result(&c->out, c->call_msgid, ev->event_id, ev->step_method,
                                      strlen(ev->step_method), rc == SL_OK ? res->data : NULL, NULL,
                                      &merr) != SL_OK) {
        event_failed(ev, false, "%s: its result cannot be sent: %s", ev->step_method, merr.msg);
        return false;
    }
    if (!conn_send(c)) {
        event_failed(ev, true, "the connection broke (%s)", strerror(errno));
        return false;
    }
    return true;
}

/* The event is over and its connection free: the caller pools it. */
static int mp_release(event_t *ev, int result)
{
    ev->conn->ev = NULL;
    ev->conn = NULL;
    event_finish(ev, result);
    return FRAME_DONE;
}

/* A HandleEvent or Step result: the end of the handler, or its next PDK
 * call. Returns FRAME_MORE (a Step is on its way), FRAME_DONE (the event is
 * over; the caller pools the connection) or FRAME_GONE (closed). */
static int mp_event_result(event_t *ev, const json_t *result)
{
    sl_mp_pdk_call_t call;
    sl_mp_err_t merr;
    int rc = sl_mp_event_result(result, &call, &merr);
    if (rc == SL_DONE)
        return mp_release(ev, SL_BRIDGE_OK);
    if (rc != SL_OK) {
        event_failed(ev, false, "protocol error: %s", merr.msg);
        return FRAME_GONE;
    }
    ev->event_id = call.event_id;
    snprintf(ev->step_method, sizeof(ev->step_method), "%s", call.method.p);
    sl_bridge_mp_result_t res = {0};
    sl_pb_err_t err = {{0}};
    rc = ev->ops->call_mp(ev->req, call.method.p, call.args, &res, &err);
    sl_mp_pdk_call_dispose(&call);
    if (res.method && (res.method->flags & SL_PB_M_WRITES))
        ev->wrote = true;
    int left = FRAME_GONE;
    if (rc == SL_DONE)
        left = mp_release(ev, SL_BRIDGE_EXIT); /* kong.response.exit: no Step */
    else if (rc == SL_OK || rc == SL_DECLINED)
        left = mp_step(ev, rc, &res) ? FRAME_MORE : FRAME_GONE;
    else
        event_failed(ev, false, "%s: %s", ev->step_method, err.msg[0] ? err.msg : "failed");
    json_decref(res.data);
    free(res.error);
    return left;
}

/* The response to the call in flight; returns as mp_event_result. */
static int mp_response(event_t *ev, const sl_mp_msg_t *m)
{
    pconn_t *c = ev->conn;
    if (m->error) {
        const char *e = json_string_value(m->error);
        size_t n = json_string_length(m->error);
        /* The instance is gone (the server restarted, or expired it): as
         * for a broken connection, start it again and re-run the event. */
        event_failed(ev, sl_mp_is_no_instance(e, n), "the server answered: %.*s",
                     (int)(n > 200 ? 200 : n), e);
        return FRAME_GONE;
    }
    if (c->state == PC_START) {
        int64_t id = 0;
        sl_mp_err_t merr = {{0}};
        if (sl_mp_instance_id(m->result, &id, &merr) != SL_OK || id < INT32_MIN || id > INT32_MAX) {
            event_failed(ev, false, "bad answer to StartInstance: %s",
                         merr.msg[0] ? merr.msg : "Id out of range");
            return FRAME_GONE;
        }
        instance_ready(ev, (int32_t)id);
        return ev->conn == c ? FRAME_MORE : FRAME_GONE;
    }
    return mp_event_result(ev, m->result);
}

/* A notification: ["serverPid", pid] tells of a restarted server. */
static void mp_notification(pconn_t *c, const sl_mp_msg_t *m)
{
    const char *label = json_string_value(m->label);
    if (!label || strcmp(label, "serverPid") != 0 || !json_is_integer(m->args))
        return;
    long pid = (long)json_integer_value(m->args);
    long seen = atomic_exchange(&c->server->mp_pid, pid);
    if (seen && seen != pid) {
        SL_NOTICE("pluginserver %s: new server process (pid %ld): starting its instances again",
                  c->server->name, pid);
        atomic_fetch_add(&c->server->epoch, 1);
    }
}

static void mp_input(pconn_t *c)
{
    size_t off = 0;
    while (off < c->in_len) {
        event_t *ev = c->ev;
        sl_mp_msg_t m;
        size_t used = 0;
        sl_mp_err_t merr;
        int rc = sl_mp_reader_feed(c->mp, c->in + off, c->in_len - off, &used, &m, &merr);
        off += used;
        if (rc == SL_AGAIN)
            break;
        if (rc != SL_OK) {
            if (ev)
                event_failed(ev, false, "%s%s%s%s", merr.msg,
                             rc == SL_ERR_TOO_BIG ? " (pluginserver_" : "",
                             rc == SL_ERR_TOO_BIG ? c->server->key : "",
                             rc == SL_ERR_TOO_BIG ? "_max_frame)" : "");
            else
                conn_broke(c, merr.msg);
            return;
        }
        if (m.kind == SL_MP_NOTIFICATION) {
            mp_notification(c, &m);
            sl_mp_msg_dispose(&m);
            continue;
        }
        if (!ev || c->state == PC_IDLE || sl_mp_msg_expect(&m, c->call_msgid, &merr) != SL_OK) {
            sl_mp_msg_dispose(&m);
            if (ev)
                event_failed(ev, false, "protocol error: %s", merr.msg);
            else
                conn_broke(c, "unexpected bytes");
            return;
        }
        evtimer_del(c->timer);
        int left = mp_response(ev, &m);
        sl_mp_msg_dispose(&m);
        if (left == FRAME_GONE)
            return; /* c is freed */
        if (left == FRAME_DONE) {
            /* Bytes after the response were never asked for. */
            if (off < c->in_len) {
                conn_free(c);
            } else {
                c->in_len = 0;
                pool_put(c);
            }
            return;
        }
    }
    c->in_len = 0;
}

static void conn_io(evutil_socket_t fd, short what, void *arg)
{
    pconn_t *c = arg;
    if (what & EV_WRITE) {
        if (!conn_flush(c)) {
            conn_broke(c, "the connection broke while writing");
            return;
        }
        return;
    }
    if (c->in_cap - c->in_len < READ_CHUNK) {
        c->in_cap = c->in_len + READ_CHUNK;
        c->in = sl_xrealloc(c->in, c->in_cap);
    }
    ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_broke(c, n == 0 ? "the server closed the connection" : strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    if (c->mp) {
        mp_input(c);
        return;
    }
    size_t off = 0;
    for (;;) {
        event_t *ev = c->ev;
        sl_pb_frame_t f;
        sl_pb_err_t err;
        int rc = sl_pb_frame_decode(c->in + off, c->in_len - off, c->server->max_frame, &f, &err);
        if (rc == SL_AGAIN)
            break;
        if (!ev || c->state == PC_IDLE) {
            /* Nothing was asked: a server that talks out of turn. */
            conn_broke(c, "unexpected bytes");
            return;
        }
        if (rc != SL_OK) {
            event_failed(ev, false, "%s (pluginserver_%s_max_frame)", err.msg, c->server->key);
            return;
        }
        evtimer_del(c->timer);
        if (c->state == PC_START) {
            /* started() may send the event on this connection: keep the
             * bytes after this frame for it. */
            off += f.size;
            if (!started(ev, f.p, f.len))
                return; /* c is freed */
        } else {
            int left = event_frame(ev, f.p, f.len);
            if (left == FRAME_GONE)
                return;
            off += f.size;
            if (left == FRAME_DONE) {
                /* Bytes after the RpcReturn were never asked for. */
                if (off < c->in_len) {
                    conn_free(c);
                    return;
                }
                c->in_len = 0;
                pool_put(c);
                return;
            }
            if (ev->pe.state != SL_PB_EV_ANSWER) {
                struct timeval tv = ms_tv(c->server->timeout_ms);
                evtimer_add(c->timer, &tv);
            }
        }
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > 4 * READ_CHUNK) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void on_exit_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

void sl_bridge_worker_exit(void)
{
    struct wstate *ws = tls;
    if (!ws)
        return;
    /* Events still running (log handlers of requests already answered)
     * get a few seconds to finish on the worker's loop. */
    bool late = false;
    struct event *deadline = evtimer_new(ws->base, on_exit_deadline, &late);
    struct timeval tv = ms_tv(EXIT_GRACE_MS);
    evtimer_add(deadline, &tv);
    while (ws->events && !late)
        event_base_loop(ws->base, EVLOOP_ONCE);
    event_free(deadline);
    while (ws->events) {
        event_t *ev = ws->events;
        if (ev->state != EV_FINISHED)
            SL_WARN("pluginserver %s: shutting down: the %s event of plugin %s did not finish",
                    ev->inst->server->name, ev->phase, ev->inst->name);
        const sl_bridge_ops_t *ops = ev->ops;
        void *req = ev->req;
        bool open = ev->inst->server->fail_open;
        bool finished = ev->state == EV_FINISHED;
        int rc = finished ? ev->result : open ? SL_BRIDGE_SKIPPED : SL_BRIDGE_FAILED;
        sl_bridge_event_cancel(ev);
        ops->done(req, rc);
    }
    for (size_t i = 0; i < nservers; i++) {
        pconn_t *c;
        while ((c = ws->idle[i])) {
            ws->idle[i] = c->next;
            conn_free(c);
        }
    }
    for (size_t b = 0; b < SLOT_BUCKETS; b++) {
        slot_t *s = ws->slots[b];
        while (s) {
            slot_t *next = s->next;
            free(s);
            s = next;
        }
    }
    free(ws->idle);
    free(ws->nidle);
    free(ws->nopen);
    free(ws->queued);
    free(ws);
    tls = NULL;
}
