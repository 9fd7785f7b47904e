/*
 * An asynchronous Redis client for plugins (hiredis on the worker's libevent
 * loop): one connection per worker thread and per Redis server, made on first
 * use, with AUTH and SELECT as configured, every call bounded by a timeout.
 */
#ifndef SL_REDIS_H
#define SL_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;

typedef struct sl_redis_target_s {
    char host[256];
    int port;
    char username[256]; /* "" for none */
    char password[512]; /* "" for none */
    int database;
    int timeout_ms; /* per call, connecting included */
} sl_redis_target_t;

typedef struct sl_redis_call_s sl_redis_call_t;

/*
 * A reply (NULL on failure, with err saying why: "timeout", a connection
 * error, ...). Called once, on the worker's loop, never from inside
 * sl_redis_command. The reply is valid during the call only.
 */
typedef void (*sl_redis_cb)(const redisReply *reply, const char *err, void *arg);

/*
 * Sends one command (argc arguments of the given lengths) on the calling
 * worker's connection to t, made if needed. Returns a handle for
 * sl_redis_cancel. A call that times out closes its connection (its late
 * reply could not be told apart), failing the calls queued behind it.
 */
sl_redis_call_t *sl_redis_command(struct event_base *base, const sl_redis_target_t *t, int argc,
                                  const char **argv, const size_t *lens, sl_redis_cb cb, void *arg);

/* cb will not be called (the request it was for is gone). */
void sl_redis_cancel(sl_redis_call_t *call);

/* Closes the calling worker's connections (at the end of its loop). */
void sl_redis_worker_exit(void);

#endif
