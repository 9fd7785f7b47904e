/*
 * The strict HTTP/1.1 parser: request heads, response heads, chunked bodies
 * and request-path normalisation (RFC 9110, RFC 9112, RFC 3986).
 *
 * Everything here is a pure function over a byte buffer. Nothing allocates,
 * nothing keeps a pointer after it returns, and any thread may call it; the
 * only state that outlives a call is the caller's sl_h1_chunked_t. The head
 * parsers are stateless: the connection calls them again over the whole
 * buffered head when more bytes arrive, and they answer SL_AGAIN until the
 * blank line is there. A head normally arrives in one read, so re-scanning is
 * cheaper than carrying a resumable state machine through every byte.
 *
 * This is where request smuggling is won or lost, so the parser is strict
 * where RFC 9112 lets a recipient choose: bare LF, bare CR, obs-fold,
 * whitespace before the colon, Content-Length together with
 * Transfer-Encoding, conflicting Content-Lengths and Transfer-Encoding on
 * HTTP/1.0 are all rejected rather than repaired, so that no component behind
 * us can frame a message differently than we did.
 *
 * Scanning is table-driven: one 256-entry class table answers "is this byte a
 * tchar / field-content / request-target / host byte" with a load and a mask.
 */
#include "h1_parser.h"

#include "util.h"

#include <string.h>

/* Byte classes, one bit each, looked up in char_class[]. */
enum {
    CC_TOKEN = 0x01,      /* tchar (RFC 9110 5.6.2) */
    CC_FIELD = 0x02,      /* field-content: VCHAR, obs-text, SP, HTAB (RFC 9110 5.5) */
    CC_TARGET = 0x04,     /* request-target: VCHAR except '#', obs-text (RFC 9112 3.2) */
    CC_HOST = 0x08,       /* Host/authority: unreserved, sub-delims, '%', ':', '[', ']' */
    CC_UNRESERVED = 0x10, /* ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 2.3) */
};

#define N 0
#define W CC_FIELD
#define O (CC_FIELD | CC_TARGET)
#define Q (CC_TOKEN | CC_FIELD)
#define P (CC_TOKEN | CC_FIELD | CC_TARGET)
#define S (CC_FIELD | CC_TARGET | CC_HOST)
#define A (CC_TOKEN | CC_FIELD | CC_TARGET | CC_HOST)
#define U (CC_TOKEN | CC_FIELD | CC_TARGET | CC_HOST | CC_UNRESERVED)

/* clang-format off */
static const uint8_t char_class[256] = {
    N, N, N, N, N, N, N, N, N, W, N, N, N, N, N, N, /* 0x00 */
    N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, /* 0x10 */
    W, A, O, Q, A, A, A, A, S, S, A, A, S, U, U, O, /* 0x20  !"#$%&'()*+,-./ */
    U, U, U, U, U, U, U, U, U, U, S, S, O, S, O, O, /* 0x30 0123456789:;<=>? */
    O, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, /* 0x40 @ABCDEFGHIJKLMNO */
    U, U, U, U, U, U, U, U, U, U, U, S, O, S, P, U, /* 0x50 PQRSTUVWXYZ[\]^_ */
    P, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, /* 0x60 `abcdefghijklmno */
    U, U, U, U, U, U, U, U, U, U, U, O, P, O, U, N, /* 0x70 pqrstuvwxyz{|}~  */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0x80 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0x90 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0xa0 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0xb0 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0xc0 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0xd0 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0xe0 */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0xf0 */
};

#define X 0xff
static const uint8_t hex_value[256] = {
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x00 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x10 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x20 */
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, X, X, X, X, X, X, /* 0x30 */
    X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X, /* 0x40 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x50 */
    X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X, /* 0x60 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x70 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x80 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0x90 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0xa0 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0xb0 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0xc0 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0xd0 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0xe0 */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, /* 0xf0 */
};
/* clang-format on */

#undef N
#undef W
#undef O
#undef Q
#undef P
#undef S
#undef A
#undef U
#undef X

#define HEX_BAD 0xff

/* RFC 9112 2.2 asks servers to skip "at least one" empty line before a
 * request-line (old clients append CRLF to a POST body). A few are tolerated,
 * an endless stream of them is not. */
#define MAX_LEADING_EMPTY_LINES 4

/* Bounds the chunked decoder keeps on its own: a chunk-size line with its
 * extensions, and the whole trailer section. */
#define CHUNK_LINE_MAX 4096
#define CHUNK_TRAILER_MAX 32768

/* An absolute-form target with an empty path ("http://h" or "http://h?q")
 * gets this path, the only sl_str_t not pointing into the caller's buffer. */
static const char root_path[] = "/";

static inline bool is_class(char c, uint8_t cls)
{
    return (char_class[(uint8_t)c] & cls) != 0;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Returns the first index in [p, end) whose byte is not in class cls, or end.
 * Values and URIs are the long runs of a head, so eight bytes are tested per
 * step with one branch; the tail goes byte by byte.
 */
static inline size_t skip_class(const char *buf, size_t p, size_t end, uint8_t cls)
{
    const uint8_t *b = (const uint8_t *)buf;
    while (end - p >= 8) {
        uint8_t all = char_class[b[p]] & char_class[b[p + 1]] & char_class[b[p + 2]] &
                      char_class[b[p + 3]] & char_class[b[p + 4]] & char_class[b[p + 5]] &
                      char_class[b[p + 6]] & char_class[b[p + 7]];
        if (!(all & cls))
            break;
        p += 8;
    }
    while (p < end && (char_class[b[p]] & cls))
        p++;
    return p;
}

static inline bool str_is(sl_str_t s, const char *lit, size_t litlen)
{
    return sl_strcaseeq(s.p, s.len, lit, litlen);
}
#define STR_IS(s, lit) str_is((s), (lit), sizeof(lit) - 1)

void sl_h1_limits_default(sl_h1_limits_t *lim)
{
    lim->max_request_line = 8192;
    lim->max_header_block = 32768;
    lim->max_headers = 100;
}

/* ------------------------------------------------------------------------ */
/* Heads: the scan window and the pieces both parsers share                 */
/* ------------------------------------------------------------------------ */

/*
 * One call's view of the buffer. The whole head must end within the first
 * max_header_block bytes, so the scan never looks past `limit`; when it runs
 * out there, `capped` says whether more bytes could still help (SL_AGAIN) or
 * the limit is already blown (431). Consequently *consumed never exceeds
 * max_header_block, and a connection never needs to buffer more head than that.
 */
struct scan {
    const char *buf;
    size_t limit;  /* min(len, max_header_block) */
    bool capped;   /* len >= max_header_block */
    bool response; /* errors are the upstream's fault: always 502 */
};

static int fail(sl_h1_error_t *err, int status, const char *msg)
{
    err->status = status;
    err->message = msg;
    return SL_ERR_INVALID;
}

/* Fails with `status` for a request, 502 for an upstream response. */
static int bad(const struct scan *s, sl_h1_error_t *err, int status, const char *msg)
{
    return fail(err, s->response ? 502 : status, msg);
}

/* The head ran out of bytes at s->limit: wait for more, or 431 if the
 * header-block limit already forbids more. */
static int head_incomplete(const struct scan *s, sl_h1_error_t *err)
{
    if (!s->capped)
        return SL_AGAIN;
    return bad(s, err, 431,
               s->response ? "response header block too large" : "request header block too large");
}

/* The start line ran out of bytes before its CRLF: 414 when the scan stopped
 * at the line limit (line_capped), otherwise as head_incomplete(). */
static int line_incomplete(const struct scan *s, bool line_capped, sl_h1_error_t *err)
{
    if (line_capped)
        return bad(s, err, 414,
                   s->response ? "response status line too long" : "request line too long");
    return head_incomplete(s, err);
}

enum { VER_OK, VER_MORE, VER_BAD };

/*
 * Matches HTTP-version (RFC 9112 2.3: "HTTP/" DIGIT "." DIGIT, case-sensitive)
 * at buf[p..end). Checks as many bytes as are there, so garbage is refused
 * before the line is complete.
 */
static int match_version(const char *buf, size_t p, size_t end, int *major, int *minor)
{
    static const char name[] = "HTTP/";
    for (size_t i = 0; i < 8; i++) {
        if (p + i >= end)
            return VER_MORE;
        char c = buf[p + i];
        if (i == 5 || i == 7) {
            if (c < '0' || c > '9')
                return VER_BAD;
        } else if (i == 6) {
            if (c != '.')
                return VER_BAD;
        } else if (c != name[i]) {
            return VER_BAD;
        }
    }
    *major = buf[p + 5] - '0';
    *minor = buf[p + 7] - '0';
    return VER_OK;
}

/* Says what is wrong with a header line whose name scan stopped at buf[p]
 * (not ':'), for a message that helps whoever debugs the client. */
static const char *name_error(const struct scan *s, size_t name, size_t p, size_t n)
{
    const char *buf = s->buf;
    char c = buf[p];
    if (is_ows(c)) {
        if (p == name)
            return n == 0 ? "whitespace before the first header field"
                          : "header line folding (obs-fold) is not allowed";
        while (p < s->limit && is_ows(buf[p]))
            p++;
        if (p < s->limit && buf[p] == ':')
            return "whitespace between header name and colon";
        return "invalid character in header name";
    }
    if (c == '\r' && p + 1 < s->limit && buf[p + 1] != '\n')
        return "bare CR in header section";
    if (c == '\r' || c == '\n')
        return p == name ? "header line must end with CRLF" : "header line without colon";
    return "invalid character in header name";
}

/*
 * Parses header fields from *pos up to and including the empty line that ends
 * the head (RFC 9112 5). Fills hdrs[0..*num) with names as received and values
 * with OWS trimmed, and sets *pos past the final CRLF. Returns SL_OK, SL_AGAIN
 * or SL_ERR_INVALID; *pos and *num are only written on SL_OK.
 */
static int parse_fields(const struct scan *s, size_t *pos, sl_h1_header_t *hdrs, size_t max,
                        size_t *num, sl_h1_error_t *err)
{
    const char *buf = s->buf;
    size_t end = s->limit;
    size_t p = *pos;
    size_t n = 0;

    for (;;) {
        if (p >= end)
            return head_incomplete(s, err);
        if (buf[p] == '\r') {
            if (p + 1 >= end)
                return head_incomplete(s, err);
            if (buf[p + 1] != '\n')
                return bad(s, err, 400, "bare CR in header section");
            p += 2;
            break;
        }
        if (n == max)
            return bad(s, err, 431,
                       s->response ? "too many response headers" : "too many request headers");

        size_t name = p;
        while (p < end && is_class(buf[p], CC_TOKEN))
            p++;
        if (p == end)
            return head_incomplete(s, err);
        if (buf[p] != ':')
            return bad(s, err, 400, name_error(s, name, p, n));
        if (p == name)
            return bad(s, err, 400, "empty header name");
        size_t name_end = p++;

        while (p < end && is_ows(buf[p]))
            p++;
        size_t value = p;
        p = skip_class(buf, p, end, CC_FIELD);
        if (p == end)
            return head_incomplete(s, err);
        if (buf[p] != '\r')
            return bad(s, err, 400,
                       buf[p] == '\n' ? "header line must end with CRLF"
                                      : "invalid character in header value");
        if (p + 1 >= end)
            return head_incomplete(s, err);
        if (buf[p + 1] != '\n')
            return bad(s, err, 400, "bare CR in header value");
        size_t value_end = p;
        while (value_end > value && is_ows(buf[value_end - 1]))
            value_end--;

        hdrs[n].name = (sl_str_t){buf + name, name_end - name};
        hdrs[n].value = (sl_str_t){buf + value, value_end - value};
        n++;
        p += 2;
    }

    *pos = p;
    *num = n;
    return SL_OK;
}

/* Steps through a comma-separated list (RFC 9110 5.6.1). Sets *elem to the
 * next non-empty element with OWS trimmed and returns true, or returns false
 * at the end. Empty elements (", ,") are skipped, as the RFC requires. */
static bool list_next(sl_str_t v, size_t *pos, sl_str_t *elem)
{
    size_t i = *pos;
    while (i < v.len) {
        size_t j = i;
        while (j < v.len && v.p[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && is_ows(v.p[a]))
            a++;
        while (b > a && is_ows(v.p[b - 1]))
            b--;
        i = j + 1;
        if (a < b) {
            *pos = i;
            *elem = (sl_str_t){v.p + a, b - a};
            return true;
        }
    }
    *pos = v.len;
    return false;
}

static bool all_class(sl_str_t v, uint8_t cls)
{
    for (size_t i = 0; i < v.len; i++)
        if (!is_class(v.p[i], cls))
            return false;
    return true;
}

/* What the framing-relevant headers of a head say, gathered in one pass. */
struct framing {
    bool has_cl;
    uint64_t content_length;
    bool has_te;
    bool te_chunked_last; /* the final coding seen so far is chunked */
    unsigned te_chunked;  /* how many times chunked was listed */
    bool te_unknown;      /* a coding other than chunked/gzip/deflate/compress */
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool has_upgrade;
    bool expect_continue;
    unsigned host_count;
    sl_str_t host;
};

/* Adds one Transfer-Encoding field line to f. Returns false when the value is
 * not a list of bare transfer-coding tokens: parameters are refused, no coding
 * we know takes one. */
static bool add_transfer_encoding(struct framing *f, sl_str_t v)
{
    size_t pos = 0;
    sl_str_t e;
    bool any = false;
    while (list_next(v, &pos, &e)) {
        if (!all_class(e, CC_TOKEN))
            return false;
        any = true;
        if (STR_IS(e, "chunked")) {
            f->te_chunked++;
            f->te_chunked_last = true;
            continue;
        }
        f->te_chunked_last = false;
        /* RFC 9112 7: the codings registered for HTTP/1.1 */
        if (!STR_IS(e, "gzip") && !STR_IS(e, "x-gzip") && !STR_IS(e, "deflate") &&
            !STR_IS(e, "compress") && !STR_IS(e, "x-compress"))
            f->te_unknown = true;
    }
    f->has_te = true;
    return any;
}

static void add_connection(struct framing *f, sl_str_t v)
{
    size_t pos = 0;
    sl_str_t e;
    while (list_next(v, &pos, &e)) {
        if (STR_IS(e, "close"))
            f->conn_close = true;
        else if (STR_IS(e, "keep-alive"))
            f->conn_keep_alive = true;
        else if (STR_IS(e, "upgrade"))
            f->conn_upgrade = true;
    }
}

/*
 * Reads the headers that decide framing and connection handling. Returns NULL,
 * or the reason the head is invalid whatever its role (request or response):
 * a malformed or conflicting Content-Length, a malformed Transfer-Encoding.
 */
static const char *read_framing(const sl_h1_header_t *h, size_t n, struct framing *f)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        sl_str_t name = h[i].name, v = h[i].value;
        switch (name.len) {
        case 4:
            if (STR_IS(name, "host")) {
                f->host_count++;
                f->host = v;
            }
            break;
        case 6:
            /* RFC 9110 10.1.1: the expectation is case-insensitive */
            if (STR_IS(name, "expect") && STR_IS(v, "100-continue"))
                f->expect_continue = true;
            break;
        case 7:
            if (STR_IS(name, "upgrade"))
                f->has_upgrade = true;
            break;
        case 10:
            if (STR_IS(name, "connection"))
                add_connection(f, v);
            break;
        case 14:
            if (STR_IS(name, "content-length")) {
                /* RFC 9110 8.6: 1*DIGIT; lists ("5, 5"), signs and spaces are
                 * refused, identical repeated lines are accepted. */
                uint64_t cl;
                if (sl_parse_u64(v.p, v.len, INT64_MAX, &cl) != SL_OK)
                    return "invalid Content-Length";
                if (f->has_cl && cl != f->content_length)
                    return "conflicting Content-Length values";
                f->has_cl = true;
                f->content_length = cl;
            }
            break;
        case 17:
            if (STR_IS(name, "transfer-encoding")) {
                if (!add_transfer_encoding(f, v))
                    return "invalid Transfer-Encoding";
                if (f->te_chunked > 1)
                    return "chunked transfer coding applied more than once";
            }
            break;
        default:
            break;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

static bool is_host_value(sl_str_t v)
{
    return all_class(v, CC_HOST);
}

/* authority-form (RFC 9112 3.2.3): uri-host ":" port, port mandatory. */
static bool is_authority_form(sl_str_t t)
{
    if (!is_host_value(t))
        return false;
    size_t colon = t.len;
    while (colon > 0 && t.p[colon - 1] != ':')
        colon--;
    if (colon < 2 || colon == t.len)
        return false;
    for (size_t i = colon; i < t.len; i++)
        if (t.p[i] < '0' || t.p[i] > '9')
            return false;
    return true;
}

/* Methods are case-sensitive (RFC 9110 9.1). */
static bool method_is(sl_str_t m, const char *lit)
{
    size_t n = strlen(lit);
    return m.len == n && memcmp(m.p, lit, n) == 0;
}

/* Splits "path?query" into r->path and r->query (p NULL without '?'). */
static void split_query(sl_h1_request_t *r, const char *p, size_t n)
{
    const char *q = memchr(p, '?', n);
    if (q == NULL) {
        r->path = (sl_str_t){p, n};
        r->query = (sl_str_t){NULL, 0};
    } else {
        r->path = (sl_str_t){p, (size_t)(q - p)};
        r->query = (sl_str_t){q + 1, n - (size_t)(q - p) - 1};
    }
}

/* Length of a leading "http://" or "https://" (case-insensitive), else 0. */
static size_t scheme_prefix(sl_str_t t)
{
    if (t.len >= 7 && sl_strcaseeq(t.p, 7, "http://", 7))
        return 7;
    if (t.len >= 8 && sl_strcaseeq(t.p, 8, "https://", 8))
        return 8;
    return 0;
}

/*
 * Classifies the request-target (RFC 9112 3.2) and fills path, query and
 * authority. origin-form for everything; asterisk-form only for OPTIONS;
 * authority-form only, and always, for CONNECT; absolute-form for http and
 * https with a non-empty authority and no userinfo.
 */
static int read_target(sl_h1_request_t *r, sl_h1_error_t *err)
{
    sl_str_t t = r->target;

    if (method_is(r->method, "CONNECT")) {
        if (!is_authority_form(t))
            return fail(err, 400, "CONNECT requires an authority-form request target");
        r->authority = t;
        r->path = (sl_str_t){t.p + t.len, 0};
        r->query = (sl_str_t){NULL, 0};
        return SL_OK;
    }
    if (t.p[0] == '/') {
        split_query(r, t.p, t.len);
        return SL_OK;
    }
    if (t.len == 1 && t.p[0] == '*') {
        if (!method_is(r->method, "OPTIONS"))
            return fail(err, 400, "asterisk-form request target is only allowed for OPTIONS");
        r->path = t;
        r->query = (sl_str_t){NULL, 0};
        return SL_OK;
    }

    size_t a = scheme_prefix(t);
    if (a == 0)
        return fail(err, 400, "invalid request target");
    size_t b = a;
    while (b < t.len && t.p[b] != '/' && t.p[b] != '?')
        b++;
    r->authority = (sl_str_t){t.p + a, b - a};
    if (r->authority.len == 0 || !is_host_value(r->authority))
        return fail(err, 400, "invalid authority in request target");
    if (b < t.len && t.p[b] == '/') {
        split_query(r, t.p + b, t.len - b);
    } else {
        r->path = (sl_str_t){root_path, 1};
        r->query = b < t.len ? (sl_str_t){t.p + b + 1, t.len - b - 1} : (sl_str_t){NULL, 0};
    }
    r->absolute_form = true;
    return SL_OK;
}

/*
 * Parses the request-line (RFC 9112 3): method SP request-target SP
 * HTTP-version CRLF, single spaces only. start is where the line begins (after
 * any skipped empty lines); *next receives the offset after its CRLF.
 */
static int parse_request_line(const struct scan *s, size_t start, size_t max_line,
                              sl_h1_request_t *r, size_t *next, sl_h1_error_t *err)
{
    const char *buf = s->buf;
    /* A valid line ends with its LF at or before start + max_line + 1. */
    size_t room = max_line > SIZE_MAX - 2 - start ? SIZE_MAX : start + max_line + 2;
    size_t end = SL_MIN(s->limit, room);
    bool line_capped = end == room;
    size_t p = start;

    while (p < end && is_class(buf[p], CC_TOKEN))
        p++;
    if (p == end)
        return line_incomplete(s, line_capped, err);
    if (p == start || buf[p] != ' ')
        return fail(err, 400,
                    p == start ? "malformed request line" : "invalid character in method");
    r->method = (sl_str_t){buf + start, p - start};

    size_t target = ++p;
    p = skip_class(buf, p, end, CC_TARGET);
    if (p == end)
        return line_incomplete(s, line_capped, err);
    if (p == target || buf[p] != ' ')
        return fail(err, 400,
                    (p == target || buf[p] == '\r' || buf[p] == '\n')
                        ? "malformed request line"
                        : "invalid character in request target");
    r->target = (sl_str_t){buf + target, p - target};
    p++;

    int major, minor;
    switch (match_version(buf, p, end, &major, &minor)) {
    case VER_MORE:
        return line_incomplete(s, line_capped, err);
    case VER_BAD:
        return fail(err, 400, "invalid HTTP version");
    default:
        break;
    }
    p += 8;
    if (p == end)
        return line_incomplete(s, line_capped, err);
    if (buf[p] != '\r')
        return fail(err, 400,
                    buf[p] == '\n' ? "request line must end with CRLF" : "malformed request line");
    if (++p == end)
        return line_incomplete(s, line_capped, err);
    if (buf[p] != '\n')
        return fail(err, 400, "bare CR in request line");
    /* RFC 9110 2.5: a higher minor version of HTTP/1 is handled as 1.1. */
    if (major != 1)
        return fail(err, 505, "unsupported HTTP version");
    r->minor_version = minor > 1 ? 1 : minor;

    int rc = read_target(r, err);
    if (rc != SL_OK)
        return rc;
    *next = p + 1;
    return SL_OK;
}

/* Decides body framing, Host and connection handling of a complete request
 * head (RFC 9112 3.2, 6, 9.3; RFC 9110 7.2, 7.8, 10.1.1). */
static int read_request_headers(sl_h1_request_t *r, sl_h1_error_t *err)
{
    struct framing f;
    const char *msg = read_framing(r->headers, r->num_headers, &f);
    if (msg != NULL)
        return fail(err, 400, msg);

    if (f.has_te) {
        /* RFC 9112 6.1: a request with both may be an attempt to smuggle;
         * we refuse rather than pick one. */
        if (f.has_cl)
            return fail(err, 400, "both Content-Length and Transfer-Encoding present");
        /* RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is faulty. */
        if (r->minor_version == 0)
            return fail(err, 400, "Transfer-Encoding is not allowed in HTTP/1.0");
        /* RFC 9112 6.1: unknown coding -> 501 */
        if (f.te_unknown)
            return fail(err, 501, "unsupported transfer coding");
        /* RFC 9112 6.3: chunked must be final in a request, else 400 */
        if (!f.te_chunked_last)
            return fail(err, 400, "Transfer-Encoding must end with chunked");
        r->body_kind = SL_H1_BODY_CHUNKED;
    } else if (f.has_cl) {
        r->body_kind = SL_H1_BODY_LENGTH;
        r->content_length = f.content_length;
    } else {
        r->body_kind = SL_H1_BODY_NONE;
    }

    /* RFC 9112 3.2: 400 for a missing Host on 1.1, several Host lines, or an
     * invalid Host value. */
    if (f.host_count > 1)
        return fail(err, 400, "multiple Host headers");
    if (f.host_count == 0 && r->minor_version == 1)
        return fail(err, 400, "missing Host header");
    if (f.host_count == 1) {
        if (!is_host_value(f.host))
            return fail(err, 400, "invalid Host header");
        r->host = f.host;
        /* RFC 9112 3.2.2 lets the URI's authority override Host; a proxy that
         * did so would route on one name while the upstream sees another. */
        if (r->absolute_form &&
            !sl_strcaseeq(r->authority.p, r->authority.len, f.host.p, f.host.len))
            return fail(err, 400, "Host header does not match absolute URI");
    }

    /* RFC 9112 9.3: persistent by default on 1.1, only on request on 1.0 */
    if (r->minor_version == 1)
        r->keep_alive = !f.conn_close;
    else
        r->keep_alive = f.conn_keep_alive && !f.conn_close;
    /* RFC 9110 10.1.1 and 7.8: both are ignored in HTTP/1.0 requests */
    r->expect_continue = r->minor_version == 1 && f.expect_continue;
    r->upgrade = r->minor_version == 1 && f.conn_upgrade && f.has_upgrade;
    return SL_OK;
}

int sl_h1_parse_request(const char *buf, size_t len, const sl_h1_limits_t *lim,
                        sl_h1_request_t *req, size_t *consumed, sl_h1_error_t *err)
{
    sl_h1_limits_t defaults;
    if (lim == NULL) {
        sl_h1_limits_default(&defaults);
        lim = &defaults;
    }
    SL_ASSERT(req->headers != NULL || lim->max_headers == 0);

    struct scan s = {
        .buf = buf,
        .limit = SL_MIN(len, lim->max_header_block),
        .capped = len >= lim->max_header_block,
        .response = false,
    };
    size_t p = 0;

    for (int skipped = 0;; skipped++) {
        if (p >= s.limit)
            return head_incomplete(&s, err);
        if (buf[p] != '\r' && buf[p] != '\n')
            break;
        if (buf[p] == '\n')
            return fail(err, 400, "request line must end with CRLF");
        if (skipped == MAX_LEADING_EMPTY_LINES)
            return fail(err, 400, "too many empty lines before the request line");
        if (p + 1 >= s.limit)
            return head_incomplete(&s, err);
        if (buf[p + 1] != '\n')
            return fail(err, 400, "bare CR before the request line");
        p += 2;
    }

    /* Everything goes to a local first: on SL_AGAIN and errors the caller's
     * *req keeps its contents, apart from the headers scratch array. */
    sl_h1_request_t r;
    memset(&r, 0, sizeof(r));
    r.headers = req->headers;
    r.authority = (sl_str_t){buf, 0};
    r.host = (sl_str_t){buf, 0};

    int rc = parse_request_line(&s, p, lim->max_request_line, &r, &p, err);
    if (rc != SL_OK)
        return rc;
    rc = parse_fields(&s, &p, r.headers, lim->max_headers, &r.num_headers, err);
    if (rc != SL_OK)
        return rc;
    rc = read_request_headers(&r, err);
    if (rc != SL_OK)
        return rc;

    *req = r;
    *consumed = p;
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Parses the status-line (RFC 9112 4): HTTP-version SP 3DIGIT SP reason CRLF.
 * The one leniency in this file: "HTTP/1.1 200\r\n" without the SP before an
 * empty reason is accepted, as servers in the field send it and it cannot
 * change framing.
 */
static int parse_status_line(const struct scan *s, size_t max_line, sl_h1_response_t *r,
                             size_t *next, sl_h1_error_t *err)
{
    const char *buf = s->buf;
    size_t room = max_line > SIZE_MAX - 2 ? SIZE_MAX : max_line + 2;
    size_t end = SL_MIN(s->limit, room);
    bool line_capped = end == room;
    size_t p = 0;

    int major, minor;
    switch (match_version(buf, p, end, &major, &minor)) {
    case VER_MORE:
        return line_incomplete(s, line_capped, err);
    case VER_BAD:
        return bad(s, err, 502, "invalid HTTP version in status line");
    default:
        break;
    }
    p += 8;
    int status = 0;
    for (int i = 0; i < 4; i++, p++) {
        if (p == end)
            return line_incomplete(s, line_capped, err);
        char c = buf[p];
        if (i == 0 ? c != ' ' : (c < '0' || c > '9'))
            return bad(s, err, 502, "malformed status line");
        if (i > 0)
            status = status * 10 + (c - '0');
    }
    if (p == end)
        return line_incomplete(s, line_capped, err);
    size_t reason = p;
    if (buf[p] == ' ') {
        reason = ++p;
        while (p < end && is_class(buf[p], CC_FIELD))
            p++;
        if (p == end)
            return line_incomplete(s, line_capped, err);
    }
    if (buf[p] != '\r')
        return bad(s, err, 502, "malformed status line");
    if (p + 1 == end)
        return line_incomplete(s, line_capped, err);
    if (buf[p + 1] != '\n')
        return bad(s, err, 502, "bare CR in status line");
    if (major != 1 || minor > 1)
        return bad(s, err, 502, "unsupported HTTP version in status line");
    if (status < 100 || status > 599)
        return bad(s, err, 502, "invalid status code");

    r->minor_version = minor;
    r->status = status;
    r->reason = (sl_str_t){buf + reason, p - reason};
    *next = p + 2;
    return SL_OK;
}

/* Decides body framing and reuse of a complete response head (RFC 9112 6.3,
 * 9.3). */
static int read_response_headers(sl_h1_response_t *r, bool head_request, sl_h1_error_t *err)
{
    struct framing f;
    const char *msg = read_framing(r->headers, r->num_headers, &f);
    if (msg != NULL)
        return fail(err, 502, msg);
    /* RFC 9112 6.3 lets Transfer-Encoding win, but calls the pair a likely
     * smuggling or splitting attempt; so do we. */
    if (f.has_te && f.has_cl)
        return fail(err, 502, "both Content-Length and Transfer-Encoding present");
    if (f.has_te && r->minor_version == 0)
        return fail(err, 502, "Transfer-Encoding is not allowed in HTTP/1.0");

    r->content_length = f.content_length;
    r->upgrade = r->status == 101;
    /* RFC 9112 6.3 rules 1-6, in order */
    if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
        r->body_kind = SL_H1_BODY_NONE;
    else if (f.has_te)
        r->body_kind = f.te_chunked_last ? SL_H1_BODY_CHUNKED : SL_H1_BODY_EOF;
    else if (f.has_cl)
        r->body_kind = SL_H1_BODY_LENGTH;
    else
        r->body_kind = SL_H1_BODY_EOF;

    if (r->minor_version == 1)
        r->keep_alive = !f.conn_close;
    else
        r->keep_alive = f.conn_keep_alive && !f.conn_close;
    if (r->body_kind == SL_H1_BODY_EOF || r->upgrade)
        r->keep_alive = false;
    return SL_OK;
}

int sl_h1_parse_response(const char *buf, size_t len, const sl_h1_limits_t *lim, bool head_request,
                         sl_h1_response_t *res, size_t *consumed, sl_h1_error_t *err)
{
    sl_h1_limits_t defaults;
    if (lim == NULL) {
        sl_h1_limits_default(&defaults);
        lim = &defaults;
    }
    SL_ASSERT(res->headers != NULL || lim->max_headers == 0);

    struct scan s = {
        .buf = buf,
        .limit = SL_MIN(len, lim->max_header_block),
        .capped = len >= lim->max_header_block,
        .response = true,
    };
    sl_h1_response_t r;
    memset(&r, 0, sizeof(r));
    r.headers = res->headers;

    size_t p = 0;
    int rc = parse_status_line(&s, lim->max_request_line, &r, &p, err);
    if (rc != SL_OK)
        return rc;
    rc = parse_fields(&s, &p, r.headers, lim->max_headers, &r.num_headers, err);
    if (rc != SL_OK)
        return rc;
    rc = read_response_headers(&r, head_request, err);
    if (rc != SL_OK)
        return rc;

    *res = r;
    *consumed = p;
    return SL_OK;
}

const sl_h1_header_t *sl_h1_find_header(const sl_h1_header_t *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (sl_strcaseeq(h[i].name.p, h[i].name.len, name, len))
            return &h[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Chunked bodies (RFC 9112 7.1)                                            */
/* ------------------------------------------------------------------------ */

/*
 * One state per position in the grammar, so the decoder can stop after any
 * byte and resume with the next buffer:
 *
 *   chunk-size [ BWS ";" ext ] CRLF data CRLF ... "0" [ext] CRLF *(field CRLF) CRLF
 *
 * Extensions are skipped but their bytes still have to be field-content, and
 * every line ends in CRLF only, so a line boundary is never ambiguous.
 */
enum chunk_state {
    CH_SIZE_FIRST = 0, /* first hex digit of a chunk-size */
    CH_SIZE,           /* more hex digits, BWS, ';' or CR */
    CH_SIZE_BWS,       /* whitespace after the size: only ';' may follow */
    CH_EXT,            /* inside chunk extensions, up to CR */
    CH_SIZE_LF,        /* LF ending the size line */
    CH_DATA,           /* chunk_left data bytes */
    CH_DATA_CR,        /* CR after the data */
    CH_DATA_LF,        /* LF after the data */
    CH_TRAILER,        /* start of a trailer line, or the final CRLF */
    CH_TRAILER_NAME,   /* field-name up to ':' */
    CH_TRAILER_VAL,    /* field-value up to CR */
    CH_TRAILER_LF,     /* LF ending a trailer line */
    CH_END_LF,         /* LF of the final CRLF */
    CH_DONE,           /* complete: further feeds consume nothing */
    CH_FAILED,         /* an error was returned: further feeds fail */
};

void sl_h1_chunked_init(sl_h1_chunked_t *st, uint64_t max_data)
{
    memset(st, 0, sizeof(*st));
    st->state = CH_SIZE_FIRST;
    st->max_data = max_data;
}

static int chunk_fail(sl_h1_chunked_t *st, sl_h1_error_t *err, int status, const char *msg)
{
    st->state = CH_FAILED;
    return fail(err, status, msg);
}

int sl_h1_chunked_feed(sl_h1_chunked_t *st, const char *buf, size_t len, size_t *consumed,
                       sl_h1_data_cb on_data, void *ud, sl_h1_error_t *err)
{
    size_t p = 0;

    if (st->state == CH_DONE) {
        *consumed = 0;
        return SL_OK;
    }
    if (st->state == CH_FAILED)
        return fail(err, 400, "chunked body already failed");

    while (p < len) {
        char c = buf[p];

        if (st->state == CH_DATA) {
            size_t n = len - p;
            if (n > st->chunk_left)
                n = (size_t)st->chunk_left;
            if (on_data != NULL)
                on_data(ud, buf + p, n);
            st->chunk_left -= n;
            st->data_total += n;
            p += n;
            if (st->chunk_left == 0)
                st->state = CH_DATA_CR;
            continue;
        }

        if (st->state <= CH_SIZE_LF && ++st->line_len > CHUNK_LINE_MAX)
            return chunk_fail(st, err, 400, "chunk size line too long");
        if (st->state >= CH_TRAILER && ++st->trailer_bytes > CHUNK_TRAILER_MAX)
            return chunk_fail(st, err, 400, "chunked trailer section too large");

        switch (st->state) {
        case CH_SIZE_FIRST:
        case CH_SIZE: {
            uint8_t h = hex_value[(uint8_t)c];
            if (h != HEX_BAD) {
                /* at most 16 digits, and the value stays below 2^63 */
                if (st->size_digits == 16 || st->chunk_left > (uint64_t)(INT64_MAX >> 4))
                    return chunk_fail(st, err, 400, "chunk size too large");
                st->chunk_left = st->chunk_left << 4 | h;
                st->size_digits++;
                st->state = CH_SIZE;
            } else if (st->state == CH_SIZE_FIRST) {
                return chunk_fail(st, err, 400, "invalid chunk size");
            } else if (c == '\r') {
                st->state = CH_SIZE_LF;
            } else if (c == ';') {
                st->state = CH_EXT;
            } else if (is_ows(c)) {
                st->state = CH_SIZE_BWS;
            } else {
                return chunk_fail(st, err, 400,
                                  c == '\n' ? "chunk size line must end with CRLF"
                                            : "invalid chunk size");
            }
            break;
        }
        case CH_SIZE_BWS:
            if (c == ';')
                st->state = CH_EXT;
            else if (!is_ows(c))
                return chunk_fail(st, err, 400, "invalid chunk size");
            break;
        case CH_EXT:
            if (c == '\r')
                st->state = CH_SIZE_LF;
            else if (!is_class(c, CC_FIELD))
                return chunk_fail(st, err, 400,
                                  c == '\n' ? "chunk size line must end with CRLF"
                                            : "invalid character in chunk extension");
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return chunk_fail(st, err, 400, "bare CR in chunk size line");
            if (st->chunk_left == 0) {
                st->state = CH_TRAILER;
                break;
            }
            if (st->max_data != 0 &&
                (st->data_total > st->max_data || st->chunk_left > st->max_data - st->data_total))
                return chunk_fail(st, err, 413, "body too large");
            st->state = CH_DATA;
            break;
        case CH_DATA_CR:
            if (c != '\r')
                return chunk_fail(st, err, 400, "missing CRLF after chunk data");
            st->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return chunk_fail(st, err, 400, "missing CRLF after chunk data");
            st->state = CH_SIZE_FIRST;
            st->size_digits = 0;
            st->line_len = 0;
            break;
        case CH_TRAILER:
            if (c == '\r')
                st->state = CH_END_LF;
            else if (is_class(c, CC_TOKEN))
                st->state = CH_TRAILER_NAME;
            else
                return chunk_fail(st, err, 400,
                                  is_ows(c) ? "header line folding (obs-fold) is not allowed"
                                            : "invalid trailer field");
            break;
        case CH_TRAILER_NAME:
            if (c == ':')
                st->state = CH_TRAILER_VAL;
            else if (!is_class(c, CC_TOKEN))
                return chunk_fail(st, err, 400, "invalid trailer field");
            break;
        case CH_TRAILER_VAL:
            if (c == '\r')
                st->state = CH_TRAILER_LF;
            else if (!is_class(c, CC_FIELD))
                return chunk_fail(st, err, 400, "invalid character in trailer field");
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return chunk_fail(st, err, 400, "bare CR in trailer section");
            st->state = CH_TRAILER;
            break;
        case CH_END_LF:
            if (c != '\n')
                return chunk_fail(st, err, 400, "bare CR at the end of a chunked body");
            st->state = CH_DONE;
            *consumed = p + 1;
            return SL_OK;
        default:
            SL_ASSERT(!"unreachable chunked decoder state");
        }
        p++;
    }

    *consumed = len;
    return SL_AGAIN;
}

/* ------------------------------------------------------------------------ */
/* Path normalisation                                                       */
/* ------------------------------------------------------------------------ */

/*
 * RFC 3986 5.2.4 remove_dot_segments, in place over an absolute path b[0..n):
 * the write index never passes the read index, so no second buffer is needed.
 * Returns the new length. ".." above the root clamps at "/".
 */
static size_t remove_dot_segments(char *b, size_t n)
{
    size_t r = 0, w = 0;
    while (r < n) {
        /* b[r] == '/': every segment of an absolute path starts with one */
        size_t e = r + 1;
        while (e < n && b[e] != '/')
            e++;
        size_t seg = e - r - 1;
        if (seg == 1 && b[r + 1] == '.') {
            if (e == n)
                b[w++] = '/';
        } else if (seg == 2 && b[r + 1] == '.' && b[r + 2] == '.') {
            while (w > 0 && b[--w] != '/')
                ;
            if (e == n)
                b[w++] = '/';
        } else {
            memmove(b + w, b + r, e - r);
            w += e - r;
        }
        r = e;
    }
    return w;
}

int sl_uri_normalize(const char *in, size_t len, char *out, size_t *out_len)
{
    static const char hex_upper[] = "0123456789ABCDEF";
    size_t w = 0;

    if (len == 0 || in[0] != '/')
        return SL_ERR_INVALID;

    /* RFC 3986 6.2.2: normalise percent-encoding first, so that "%2E%2E" is
     * a dot segment by the time dot segments are removed. */
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '\0')
            return SL_ERR_INVALID;
        if (c != '%') {
            out[w++] = c;
            continue;
        }
        if (len - i < 3)
            return SL_ERR_INVALID;
        uint8_t hi = hex_value[(uint8_t)in[i + 1]];
        uint8_t lo = hex_value[(uint8_t)in[i + 2]];
        if (hi == HEX_BAD || lo == HEX_BAD)
            return SL_ERR_INVALID;
        char v = (char)(hi << 4 | lo);
        if (v == '\0')
            return SL_ERR_INVALID;
        if (is_class(v, CC_UNRESERVED)) {
            out[w++] = v;
        } else {
            out[w++] = '%';
            out[w++] = hex_upper[hi];
            out[w++] = hex_upper[lo];
        }
        i += 2;
    }

    *out_len = remove_dot_segments(out, w);
    return SL_OK;
}

bool sl_h1_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(char_class[(unsigned char)s[i]] & CC_TOKEN))
            return false;
    return true;
}

bool sl_h1_is_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(char_class[(unsigned char)s[i]] & CC_FIELD))
            return false;
    return true;
}
