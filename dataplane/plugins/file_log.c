/*
 * file_log.c: the file-log plugin (Kong 3.10's kong/plugins/file-log),
 * PRIORITY 9, log phase only.
 *
 * Each request's kong.log.serialize object is appended to config.path as
 * one line of JSON. The file is opened O_WRONLY|O_CREAT|O_APPEND with mode
 * 0644 and its descriptor kept for the next lines; with config.reopen it is
 * closed and opened again before every line, so that a rotated file is let
 * go at once. A file that cannot be opened costs the line and an error
 * ("failed to open the file: <reason>"), as in Kong; the request is not
 * affected. Without reopen, kept descriptors are also closed whenever a new
 * configuration is read (a reload: SIGHUP or a new declarative document),
 * so `mv access.log access.log.1; kill -HUP <pid>` rotates, and a
 * descriptor nobody wrote to for a minute is closed.
 *
 * config.custom_fields_by_lua is refused at configure time: this data
 * plane runs no Lua.
 *
 * Threads. A worker never touches the disk: its log handler serializes the
 * line and hands it to the process's one writer thread through a bounded
 * FIFO (MAX_QUEUED_LINES lines, MAX_QUEUED_BYTES bytes), so lines reach
 * their files in the order they were handed over. When the FIFO is full
 * the line is dropped and counted; a warning with the count is logged at
 * most every few seconds. The writer thread is started by the first line
 * and lives as long as the process; it alone owns the open descriptors.
 * When a worker's loop ends (worker_exit) it waits, for a bounded time,
 * until the writer has written everything handed to it, so a clean stop
 * loses no line.
 */
#include "log.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_QUEUED_LINES 100000
#define MAX_QUEUED_BYTES (64u * 1024 * 1024)
#define DROP_WARN_INTERVAL_MS 5000
#define OPEN_ERROR_INTERVAL_MS 1000
#define IDLE_CLOSE_MS 60000
#define EXIT_FLUSH_MS 5000

struct file_log {
    char *path; /* owned */
    bool reopen;
};

/* ------------------------------------------------------------------------ */
/* The writer thread                                                         */

/* One line waiting for the writer: its file and its bytes (with '\n'). */
struct line {
    struct line *next;
    bool reopen;
    size_t len;
    char *path; /* points into the same allocation */
    char data[];
};

/* A descriptor the writer keeps open (writer thread only). */
struct open_file {
    struct open_file *next;
    char *path; /* owned */
    int fd;
    uint64_t last_used_ms;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work; /* lines were queued */
    pthread_cond_t idle; /* the FIFO is empty and nothing is being written */
    struct line *head, **tail;
    size_t nlines, nbytes;
    bool writing; /* the writer holds lines taken off the FIFO */
    bool started;
} W = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
    .tail = &W.head,
};

static atomic_uint_fast64_t dropped;           /* lines lost to a full FIFO */
static atomic_uint_fast64_t dropped_reported;  /* of which already in a warning */
static atomic_uint_fast64_t last_drop_warn_ms; /* when that warning was logged */
static atomic_uint config_epoch;               /* bumped by every configure() */

/* Writer-thread state. */
static struct open_file *files;
static unsigned files_epoch;
static uint64_t last_open_error_ms;
static uint64_t open_errors_suppressed;

static void close_file(struct open_file **pp)
{
    struct open_file *f = *pp;
    *pp = f->next;
    close(f->fd);
    free(f->path);
    free(f);
}

/* Closes every kept descriptor (all, or those idle since `before`). */
static void close_files(bool all, uint64_t before)
{
    for (struct open_file **pp = &files; *pp;) {
        if (all || (*pp)->last_used_ms < before)
            close_file(pp);
        else
            pp = &(*pp)->next;
    }
}

/* The writer's descriptor for path, opened when needed (closed and opened
 * again first with reopen). Returns -1 after logging why it cannot. */
static int file_for(const char *path, bool reopen, uint64_t now)
{
    struct open_file **pp = &files;
    while (*pp && strcmp((*pp)->path, path) != 0)
        pp = &(*pp)->next;
    if (*pp && reopen)
        close_file(pp);
    if (*pp) {
        (*pp)->last_used_ms = now;
        return (*pp)->fd;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  S_IRUSR | S_IWUSR | S_IRGRP | S_IROTH);
    if (fd < 0) {
        /* Kong logs each failure; a busy route failing every request would
         * flood the error log, so repeats within a second are counted. */
        if (now - last_open_error_ms >= OPEN_ERROR_INTERVAL_MS) {
            char more[64] = "";
            if (open_errors_suppressed)
                snprintf(more, sizeof(more), "; %llu more failures in the last second",
                         (unsigned long long)open_errors_suppressed);
            sl_log(SL_LOG_ERROR, "[file-log] failed to open the file: %s (%s%s)", strerror(errno),
                   path, more);
            last_open_error_ms = now;
            open_errors_suppressed = 0;
        } else {
            open_errors_suppressed++;
        }
        return -1;
    }
    struct open_file *f = sl_xcalloc(1, sizeof(*f));
    f->path = sl_xstrdup(path);
    f->fd = fd;
    f->last_used_ms = now;
    f->next = files;
    files = f;
    return fd;
}

static void write_line(const struct line *l, uint64_t now)
{
    int fd = file_for(l->path, l->reopen, now);
    if (fd < 0)
        return;
    size_t off = 0;
    while (off < l->len) {
        ssize_t n = write(fd, l->data + off, l->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sl_log(SL_LOG_ERROR, "[file-log] failed to write to %s: %s", l->path,
                   n < 0 ? strerror(errno) : "nothing written");
            return;
        }
        off += (size_t)n;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.mu);
    for (;;) {
        while (!W.head) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 10;
            pthread_mutex_unlock(&W.mu);
            uint64_t now = sl_now_ms();
            close_files(false, now > IDLE_CLOSE_MS ? now - IDLE_CLOSE_MS : 0);
            pthread_mutex_lock(&W.mu);
            if (!W.head)
                pthread_cond_timedwait(&W.work, &W.mu, &ts);
        }
        struct line *batch = W.head;
        W.head = NULL;
        W.tail = &W.head;
        W.nlines = 0;
        W.nbytes = 0;
        W.writing = true;
        pthread_mutex_unlock(&W.mu);

        unsigned epoch = atomic_load(&config_epoch);
        if (epoch != files_epoch) {
            close_files(true, 0);
            files_epoch = epoch;
        }
        uint64_t now = sl_now_ms();
        while (batch) {
            struct line *next = batch->next;
            write_line(batch, now);
            free(batch);
            batch = next;
        }

        pthread_mutex_lock(&W.mu);
        W.writing = false;
        if (!W.head)
            pthread_cond_broadcast(&W.idle);
    }
    return NULL;
}

/* Called with W.mu held. */
static void start_writer(void)
{
    if (W.started)
        return;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, writer_main, NULL) == 0)
        W.started = true;
    else
        sl_log(SL_LOG_ERROR, "[file-log] cannot start the writer thread: %s", strerror(errno));
    pthread_attr_destroy(&attr);
}

static void warn_drops(void)
{
    uint64_t now = sl_now_ms();
    uint64_t last = atomic_load(&last_drop_warn_ms);
    if (now - last < DROP_WARN_INTERVAL_MS ||
        !atomic_compare_exchange_strong(&last_drop_warn_ms, &last, now))
        return;
    uint64_t total = atomic_load(&dropped);
    uint64_t before = atomic_exchange(&dropped_reported, total);
    sl_log(SL_LOG_WARN,
           "[file-log] the writer cannot keep up: %llu log lines dropped (%llu in all); the "
           "queue holds at most %u lines or %u bytes",
           (unsigned long long)(total - before), (unsigned long long)total, MAX_QUEUED_LINES,
           MAX_QUEUED_BYTES);
}

/* Hands a line to the writer. Takes ownership of l. */
static void enqueue(struct line *l)
{
    pthread_mutex_lock(&W.mu);
    start_writer();
    if (!W.started || W.nlines >= MAX_QUEUED_LINES || W.nbytes + l->len > MAX_QUEUED_BYTES) {
        pthread_mutex_unlock(&W.mu);
        free(l);
        atomic_fetch_add(&dropped, 1);
        warn_drops();
        return;
    }
    l->next = NULL;
    *W.tail = l;
    W.tail = &l->next;
    W.nlines++;
    W.nbytes += l->len;
    pthread_cond_signal(&W.work);
    pthread_mutex_unlock(&W.mu);
}

/* When a worker stops: wait (bounded) until the writer has written every
 * line handed to it. */
static void on_worker_exit(void)
{
    pthread_mutex_lock(&W.mu);
    if (W.started) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += EXIT_FLUSH_MS / 1000;
        while ((W.head || W.writing) && pthread_cond_timedwait(&W.idle, &W.mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&W.mu);
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static void *fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void *fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return NULL;
}

static void dispose(void *p)
{
    struct file_log *c = p;
    if (!c)
        return;
    free(c->path);
    free(c);
}

/*
 * Reads config (validated by the schema, checked again: it may come from a
 * peer). Returns the conf, or NULL with err naming the field.
 */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    (void)instance_id;
    if (!json_is_object(config))
        return fail(err, errlen, "config: expected an object");
    const json_t *path = json_object_get(config, "path");
    const json_t *reopen = json_object_get(config, "reopen");
    const json_t *lua = json_object_get(config, "custom_fields_by_lua");
    if (!json_is_string(path))
        return fail(err, errlen, "config.path: required field missing (a file name)");
    const char *s = json_string_value(path);
    size_t n = json_string_length(path);
    if (n == 0 || strlen(s) != n)
        return fail(err, errlen, "config.path: not a valid filename");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || strchr("*&%\\`", s[i]))
            return fail(err, errlen, "config.path: not a valid filename");
    if (reopen && !json_is_null(reopen) && !json_is_boolean(reopen))
        return fail(err, errlen, "config.reopen: expected a boolean");
    if (lua && !json_is_null(lua) && !(json_is_object(lua) && json_object_size(lua) == 0))
        return fail(err, errlen,
                    "config.custom_fields_by_lua: Lua code is not supported by this data plane; "
                    "remove custom_fields_by_lua");
    struct file_log *c = sl_xcalloc(1, sizeof(*c));
    c->path = sl_xstrndup(s, n);
    c->reopen = json_is_true(reopen);
    atomic_fetch_add(&config_epoch, 1);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Log                                                                       */

static int on_log(sl_pdk_t *p, void *conf)
{
    const struct file_log *c = conf;
    json_t *msg = sl_pdk_log_serialize(p);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!text) {
        sl_pdk_log(p, SL_LOG_ERROR, "could not serialize the log entry");
        return SL_PLUGIN_CONTINUE;
    }
    size_t n = strlen(text), plen = strlen(c->path);
    struct line *l = malloc(sizeof(*l) + n + 1 + plen + 1);
    if (!l) {
        free(text);
        atomic_fetch_add(&dropped, 1);
        return SL_PLUGIN_CONTINUE;
    }
    memcpy(l->data, text, n);
    l->data[n] = '\n';
    l->len = n + 1;
    l->path = l->data + n + 1;
    memcpy(l->path, c->path, plen + 1);
    l->reopen = c->reopen;
    free(text);
    enqueue(l);
    return SL_PLUGIN_CONTINUE;
}

const sl_native_plugin_t sl_plugin_file_log = {
    .name = "file-log",
    .configure = configure,
    .dispose = dispose,
    .log = on_log,
    .worker_exit = on_worker_exit,
};
