/*
 * worker.c owns worker threads: their event bases, listeners and the
 * per-worker state the request path uses (DNS cache, upstream pool,
 * metrics). A worker is created and started by the main thread, runs its loop
 * until drained, and is joined and freed by the main thread.
 */
#include "worker.h"
#include "plugin.h"
#include "bridge.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/dns.h>
#include <fcntl.h>
#include <unistd.h>
#include <event2/thread.h>
#include <openssl/rand.h>

atomic_uint_fast64_t sl_gen_seq;

sl_gen_t *sl_worker_gen(sl_worker_t *w)
{
    uint64_t seq = atomic_load_explicit(&sl_gen_seq, memory_order_acquire);
    if (seq != w->gen_seq || !w->gen) {
        sl_gen_t *g = sl_gen_acquire();
        sl_gen_unref(w->gen);
        w->gen = g;
        w->gen_seq = seq;
    }
    return w->gen;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    sl_worker_t *w = arg;
    uint16_t port = 0;
    const sl_listen_t *conf = NULL;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i] == l) {
            port = w->listen_ports[i];
            conf = &w->conf->proxy[i];
        }
    }
    if (w->draining) {
        evutil_closesocket(fd);
        return;
    }
    sl_conn_accept(w, fd, sa, salen, port, conf);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    sl_worker_t *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep serving what we have; the listener retries. */
    SL_ERROR("worker %d: accept failed: %s", w->id, evutil_socket_error_to_string(err));
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    sl_upstream_pool_sweep(arg);
}

static void on_shutdown(evutil_socket_t fd, short what, void *arg)
{
    sl_worker_t *w = arg;
    if (w->draining)
        return;
    w->draining = true;
    event_del(w->sweep_ev);
    for (size_t i = 0; i < w->nlisteners; i++) {
        evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    sl_upstream_pool_close_all(w);
    sl_conns_drain(w);
    if (LIST_EMPTY(&w->conns))
        event_base_loopexit(w->base, NULL);
}

sl_worker_t *sl_worker_new(int id, const sl_dp_conf_t *conf, const int *fds, const uint16_t *ports,
                           size_t nfds)
{
    sl_worker_t *w = sl_xcalloc(1, sizeof(*w));
    w->id = id;
    w->conf = conf;
    LIST_INIT(&w->conns);
    TAILQ_INIT(&w->idle);
    w->metrics = sl_xcalloc(1, sizeof(*w->metrics));
    w->scratch_headers = sl_xcalloc(conf->max_headers + 1, sizeof(sl_h1_header_t));
    if (RAND_bytes((unsigned char *)&w->reqid_salt, sizeof(w->reqid_salt)) != 1)
        w->reqid_salt = sl_now_us() ^ (uint64_t)id;

    /* Only this worker's thread touches its base: no locks. The main thread
     * reaches it through a pipe. */
    w->wake_fds[0] = w->wake_fds[1] = -1;
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!w->base || pipe2(w->wake_fds, O_NONBLOCK | O_CLOEXEC) != 0)
        goto fail;
    w->shutdown_ev = event_new(w->base, w->wake_fds[0], EV_READ, on_shutdown, w);
    event_add(w->shutdown_ev, NULL);
    w->sweep_ev = event_new(w->base, -1, EV_PERSIST, on_sweep, w);
    struct timeval second = {1, 0};
    event_add(w->sweep_ev, &second);
    if (sl_dns_init(w) != SL_OK)
        goto fail;
    for (size_t i = 0; i < nfds; i++) {
        w->listeners[i] =
            evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1, fds[i]);
        if (!w->listeners[i])
            goto fail;
        evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
        w->listen_ports[i] = ports[i];
        w->nlisteners++;
    }
    return w;
fail:
    SL_ERROR("worker %d: cannot initialise its event loop", id);
    sl_worker_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    sl_worker_t *w = arg;
    SL_DEBUG("worker %d: started", w->id);
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    /* External plugins' events first: the log handlers of native plugins
     * may still run after them, for the same requests. */
    sl_bridge_worker_exit();
    sl_native_plugins_worker_exit();
    SL_DEBUG("worker %d: stopped", w->id);
    atomic_fetch_add(w->done, 1);
    return NULL;
}

int sl_worker_start(sl_worker_t *w, atomic_int *done)
{
    w->done = done;
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? SL_OK : SL_ERR_NOMEM;
}

void sl_worker_drain(sl_worker_t *w)
{
    char b = 1;
    if (write(w->wake_fds[1], &b, 1) != 1)
        SL_ERROR("worker %d: cannot be told to drain: %s", w->id, strerror(errno));
}

void sl_worker_join(sl_worker_t *w)
{
    pthread_join(w->thread, NULL);
}

void sl_worker_free(sl_worker_t *w)
{
    if (!w)
        return;
    /* Called only once the loop has ended with every connection closed;
     * after a drain timeout the process exits without freeing workers. */
    SL_ASSERT(LIST_EMPTY(&w->conns));
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
    sl_upstream_pool_close_all(w);
    sl_req_cache_free(w);
    sl_dns_dispose(w);
    if (w->shutdown_ev)
        event_free(w->shutdown_ev);
    if (w->sweep_ev)
        event_free(w->sweep_ev);
    if (w->wake_fds[0] >= 0) {
        close(w->wake_fds[0]);
        close(w->wake_fds[1]);
    }
    if (w->base)
        event_base_free(w->base);
    sl_gen_unref(w->gen);
    free(w->scratch_headers);
    free(w->metrics);
    free(w);
}
