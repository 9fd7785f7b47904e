/*
 * The request the PDK unit tests run against (test_pdk.c, test_pdk_rpc.c):
 * a client 192.0.2.7:40000 on 127.0.0.1:8000, GET with the given target,
 * path and query, headers Host: Example.COM:8000, X-Multi: one,
 * x-multi: two, Accept: * / *, HTTP/1.1, a fixed request id and start time.
 */
#ifndef SL_TEST_PDK_REQUEST_H
#define SL_TEST_PDK_REQUEST_H

#include "log.h"
#include "proxy-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void pdk_request_init(sl_dp_conf_t *conf, sl_worker_t *w, sl_conn_t *c, sl_req_t *r,
                                    sl_h1_header_t hs[4], const char *target, const char *path,
                                    const char *query)
{
    snprintf(c->peer_ip, sizeof(c->peer_ip), "192.0.2.7");
    snprintf(c->local_ip, sizeof(c->local_ip), "127.0.0.1");
    c->peer_port = 40000;
    c->local_port = 8000;
    w->conf = conf;
    c->w = w;
    r->c = c;
    sl_arena_init(&r->arena);
    hs[0] = (sl_h1_header_t){SL_STR("Host"), SL_STR("Example.COM:8000")};
    hs[1] = (sl_h1_header_t){SL_STR("X-Multi"), SL_STR("one")};
    hs[2] = (sl_h1_header_t){SL_STR("x-multi"), SL_STR("two")};
    hs[3] = (sl_h1_header_t){SL_STR("Accept"), SL_STR("*/*")};
    r->h.headers = hs;
    r->h.num_headers = 4;
    r->h.method = SL_STR("GET");
    r->h.target = (sl_str_t){target, strlen(target)};
    r->h.path = (sl_str_t){path, strlen(path)};
    r->h.query = (sl_str_t){query, strlen(query)};
    r->h.host = SL_STR("Example.COM:8000");
    r->h.minor_version = 1;
    snprintf(r->reqid, sizeof(r->reqid), "0123456789abcdef0123456789abcdef");
    r->wall_start_us = 1700000000123456ull;
}

/* The error log of a PDK test program: a temporary file the tests read. */
static char test_log_path[64];

/* Sends the log to a new temporary file named after prog. */
static inline bool test_log_open(const char *prog)
{
    snprintf(test_log_path, sizeof(test_log_path), "/tmp/%s.XXXXXX", prog);
    int fd = mkstemp(test_log_path);
    if (fd < 0)
        return false;
    close(fd);
    return sl_log_open(test_log_path) == SL_OK;
}

static inline void test_log_remove(void)
{
    unlink(test_log_path);
}

/* Whether what was logged so far contains s. */
static inline bool test_logged(const char *s)
{
    FILE *fp = fopen(test_log_path, "r");
    assert_non_null(fp);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return strstr(buf, s) != NULL;
}

/* The JSON text of v (compact, keys sorted), freeing v; a static buffer. */
static inline const char *dump(json_t *v)
{
    static char buf[8192];
    assert_non_null(v);
    char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    snprintf(buf, sizeof(buf), "%s", t);
    free(t);
    json_decref(v);
    return buf;
}

/* Fails unless s holds exactly want. */
static inline void assert_str(sl_str_t s, const char *want)
{
    char *got = strndup(s.p ? s.p : "", s.len);
    assert_string_equal(got, want);
    free(got);
}

#endif
