/*
 * redis.c: the per-worker asynchronous Redis client (see redis.h).
 *
 * Everything here belongs to one worker thread: its connections are in a
 * thread-local list, attached to that worker's event_base, and every
 * callback runs on its loop. hiredis calls each command's callback exactly
 * once, with a NULL reply when the connection fails or is closed; a call
 * object lives until then, so that a timeout or a cancel only marks it.
 *
 * A call's life: created with a timer (its timeout); the first of reply,
 * timeout or connection failure delivers the result (unless cancelled) and
 * marks it delivered; hiredis's callback, which always comes, frees it. A
 * call that never reached hiredis (the command could not be queued) is
 * finished by its timer firing at once.
 */
#include "redis.h"
#include "log.h"
#include "util.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <string.h>

struct conn {
    struct conn *next;
    char key[1100];        /* host, port, user, password, database */
    redisAsyncContext *ac; /* NULL: not connected */
    struct event_base *base;
};

struct sl_redis_call_s {
    struct conn *conn;
    struct event *timer;
    sl_redis_cb cb;
    void *arg;
    bool delivered;  /* cb called, or cancelled */
    bool in_hiredis; /* hiredis will call on_reply for it */
};

static _Thread_local struct conn *conns;

static void deliver(sl_redis_call_t *call, const redisReply *reply, const char *err)
{
    if (call->delivered)
        return;
    call->delivered = true;
    call->cb(reply, err, call->arg);
}

static void call_free(sl_redis_call_t *call)
{
    if (call->timer)
        event_free(call->timer);
    free(call);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    sl_redis_call_t *call = privdata;
    const redisReply *reply = r;
    if (!reply)
        deliver(call, NULL, ac->errstr[0] ? ac->errstr : "connection closed");
    else if (reply->type == REDIS_REPLY_ERROR)
        deliver(call, NULL, reply->str);
    else
        deliver(call, reply, NULL);
    call_free(call);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sl_redis_call_t *call = arg;
    if (!call->in_hiredis) {
        deliver(call, NULL, "the command could not be sent");
        call_free(call);
        return;
    }
    deliver(call, NULL, "timeout");
    /* The reply may still come, late: close the connection so that it
     * cannot be taken for the next call's. on_reply then frees the call. */
    if (call->conn->ac)
        redisAsyncDisconnect(call->conn->ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK) {
        SL_WARN("redis %s: cannot connect: %s", c->key, ac->errstr);
        c->ac = NULL; /* hiredis frees the context */
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK)
        SL_INFO("redis %s: connection lost: %s", c->key, ac->errstr);
    c->ac = NULL;
}

/* AUTH and SELECT replies: a failure closes the connection. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    const redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        SL_WARN("redis %s: %s failed: %s", ((struct conn *)ac->data)->key, (const char *)privdata,
                reply->str);
        redisAsyncDisconnect(ac);
    }
}

static void target_key(const sl_redis_target_t *t, char *out, size_t n)
{
    /* The password is part of the key (a different password is a different
     * connection) but never logged: only its length is shown. */
    snprintf(out, n, "%s:%d/%d%s%s%s", t->host, t->port, t->database, t->username[0] ? " as " : "",
             t->username, t->password[0] ? " (password)" : "");
}

static struct conn *conn_for(struct event_base *base, const sl_redis_target_t *t)
{
    char key[sizeof(((struct conn *)0)->key)];
    target_key(t, key, sizeof(key));
    struct conn *c;
    for (c = conns; c; c = c->next)
        if (c->base == base && !strcmp(c->key, key))
            break;
    if (!c) {
        c = sl_xcalloc(1, sizeof(*c));
        snprintf(c->key, sizeof(c->key), "%s", key);
        c->base = base;
        c->next = conns;
        conns = c;
    }
    if (c->ac)
        return c;
    redisAsyncContext *ac = redisAsyncConnect(t->host, t->port);
    if (!ac || ac->err) {
        SL_WARN("redis %s: cannot connect: %s", c->key, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return c;
    }
    ac->data = c;
    redisLibeventAttach(ac, base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    if (t->password[0]) {
        if (t->username[0])
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", t->username, t->password);
        else
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", t->password);
    }
    if (t->database)
        redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %d", t->database);
    return c;
}

sl_redis_call_t *sl_redis_command(struct event_base *base, const sl_redis_target_t *t, int argc,
                                  const char **argv, const size_t *lens, sl_redis_cb cb, void *arg)
{
    sl_redis_call_t *call = sl_xcalloc(1, sizeof(*call));
    call->cb = cb;
    call->arg = arg;
    call->conn = conn_for(base, t);
    call->timer = evtimer_new(base, on_timer, call);
    struct timeval tv = {t->timeout_ms / 1000, (t->timeout_ms % 1000) * 1000};
    if (call->conn->ac &&
        redisAsyncCommandArgv(call->conn->ac, on_reply, call, argc, argv, lens) == REDIS_OK) {
        call->in_hiredis = true;
    } else {
        tv = (struct timeval){0, 0}; /* fail it from the loop, not from here */
    }
    evtimer_add(call->timer, &tv);
    return call;
}

void sl_redis_cancel(sl_redis_call_t *call)
{
    call->delivered = true;
    if (!call->in_hiredis)
        call_free(call);
}

void sl_redis_worker_exit(void)
{
    while (conns) {
        struct conn *c = conns;
        conns = c->next;
        if (c->ac) {
            redisAsyncContext *ac = c->ac;
            c->ac = NULL;
            ac->data = c;
            redisAsyncFree(ac); /* pending calls get NULL replies */
        }
        free(c);
    }
}
