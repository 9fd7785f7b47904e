/*
 * cluster_frame.c: length-prefixed protobuf frames over evbuffers.
 */
#include "cluster_frame.h"
#include "util.h"

#include <stdlib.h>

size_t sl_frame_write(struct evbuffer *out, const sl_cmsg_t *msg)
{
    size_t len = sluice__cluster__cluster_message__get_packed_size(msg);
    unsigned char *buf = sl_xmalloc(len + 4);
    buf[0] = (unsigned char)(len >> 24);
    buf[1] = (unsigned char)(len >> 16);
    buf[2] = (unsigned char)(len >> 8);
    buf[3] = (unsigned char)len;
    sluice__cluster__cluster_message__pack(msg, buf + 4);
    evbuffer_add(out, buf, len + 4);
    free(buf);
    return len + 4;
}

size_t sl_frame_write_ping(struct evbuffer *out, bool pong, uint64_t version, const char *hash)
{
    Sluice__Cluster__Ping ping = SLUICE__CLUSTER__PING__INIT;
    Sluice__Cluster__Pong pong_msg = SLUICE__CLUSTER__PONG__INIT;
    sl_cmsg_t m = SLUICE__CLUSTER__CLUSTER_MESSAGE__INIT;
    if (pong) {
        pong_msg.config_version = version;
        pong_msg.config_hash = (char *)hash;
        m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_PONG;
        m.pong = &pong_msg;
    } else {
        ping.config_version = version;
        ping.config_hash = (char *)hash;
        m.msg_case = SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG_PING;
        m.ping = &ping;
    }
    return sl_frame_write(out, &m);
}

int sl_frame_read(struct evbuffer *in, size_t max, sl_cmsg_t **msg)
{
    unsigned char head[4];
    *msg = NULL;
    if (evbuffer_copyout(in, head, 4) < 4)
        return SL_AGAIN;
    size_t len = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3];
    if (len > max)
        return SL_ERR_TOO_BIG;
    if (evbuffer_get_length(in) < len + 4)
        return SL_AGAIN;
    evbuffer_drain(in, 4);
    const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)len);
    sl_cmsg_t *m =
        sluice__cluster__cluster_message__unpack(NULL, len, len ? p : (const uint8_t *)"");
    evbuffer_drain(in, len);
    if (!m)
        return SL_ERR_INVALID;
    if (m->msg_case == SLUICE__CLUSTER__CLUSTER_MESSAGE__MSG__NOT_SET) {
        sluice__cluster__cluster_message__free_unpacked(m, NULL);
        return SL_ERR_INVALID;
    }
    *msg = m;
    return SL_OK;
}

void sl_frame_free(sl_cmsg_t *msg)
{
    if (msg)
        sluice__cluster__cluster_message__free_unpacked(msg, NULL);
}

const char *sl_frame_name(const sl_cmsg_t *msg)
{
    static const char *const names[] = {"(none)",   "Hello", "Welcome",     "Refused",
                                        "Snapshot", "Delta", "Applied",     "Withheld",
                                        "Ping",     "Pong",  "NeedSnapshot"};
    unsigned c = (unsigned)msg->msg_case;
    return c < SL_ARRAY_LEN(names) ? names[c] : "(unknown)";
}
