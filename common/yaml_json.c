/*
 * yaml_json.c drives libyaml's event parser and builds jansson values as the
 * events arrive: a stack of open collections, each mapping remembering the
 * key that waits for its value.
 *
 * Scalar typing follows what Kong's YAML reader gives a declarative file,
 * restricted to the unsurprising part of YAML 1.1/1.2: a plain (unquoted)
 * scalar is null for "", "~", "null"; a boolean for "true"/"false" (any of
 * the three usual capitalisations); an integer for decimal, 0x hex or 0o
 * octal digits; a float for decimal fractions and exponents; otherwise a
 * string. Quoted and block scalars are always strings. The standard tags
 * (!!str, !!int, !!float, !!bool, !!null, !!map, !!seq) are honoured, others
 * are an error; "yes"/"no"/"on"/"off" stay strings.
 *
 * Anchors and aliases work by copying: an alias becomes a deep copy of the
 * anchored node, so later in-place edits of the configuration never alias
 * each other. Budgets on the nodes and on the bytes of text aliases may add
 * keep an alias bomb, of many nodes or of one long string, from exhausting
 * memory, and a copy counts towards the depth limit where it lands (else a
 * chain of aliases could nest without bound). Duplicate mapping keys are an
 * error, as YAML requires. Scalars holding NUL are refused, as in JSON.
 */
#include "yaml_json.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <yaml.h>

struct frame {
    json_t *node; /* owned until attached to its parent */
    char *key;    /* mappings: the key waiting for a value (owned) */
    char *anchor; /* anchor of this collection, registered when it ends */
    size_t line;  /* where it started, for messages */
};

struct builder {
    struct frame *stack;
    size_t depth, cap, max_depth;
    json_t *anchors; /* name -> node (a reference kept for aliases) */
    json_t *root;
    bool have_root;
    size_t alias_nodes, alias_bytes;
    char err[512];
};

/* Nodes in v; *bytes grows by the length of its strings and keys. */
static size_t count_nodes(const json_t *v, size_t *bytes)
{
    size_t n = 1;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            n += count_nodes(json_array_get(v, i), bytes);
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            *bytes += strlen(k);
            n += count_nodes(x, bytes);
        }
    } else if (json_is_string(v)) {
        *bytes += json_string_length(v);
    }
    return n;
}

/* Depth of nested collections in v (a scalar is 0). Anchored nodes obey the
 * depth limit, so the recursion is bounded by it. */
static size_t nesting(const json_t *v)
{
    size_t max = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t d = nesting(json_array_get(v, i));
            max = SL_MAX(max, d);
        }
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            size_t d = nesting(x);
            max = SL_MAX(max, d);
        }
    } else {
        return 0;
    }
    return max + 1;
}

static bool plain_is(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

/* Integer forms: [-+]?digits, 0x hex, 0o octal. */
static bool parse_int(const char *s, json_int_t *out)
{
    const char *p = s;
    int base = 10;
    bool neg = false;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o') && s == p) {
        base = p[1] == 'x' ? 16 : 8;
        p += 2;
    }
    if (*p == '\0')
        return false;
    for (const char *q = p; *q; q++) {
        int d = (*q >= '0' && *q <= '9')   ? *q - '0'
                : (*q >= 'a' && *q <= 'f') ? *q - 'a' + 10
                : (*q >= 'A' && *q <= 'F') ? *q - 'A' + 10
                                           : 99;
        if (d >= base)
            return false;
    }
    errno = 0;
    char *end;
    long long v = strtoll(p, &end, base);
    if (errno == ERANGE || *end != '\0')
        return false;
    *out = neg ? -v : v;
    return true;
}

/* [-+]? ( .digits | digits[.digits*] ) ([eE][-+]?digits)? */
static bool parse_float(const char *s, double *out)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    size_t lead = strspn(p, "0123456789");
    p += lead;
    size_t frac = 0;
    if (*p == '.') {
        p++;
        frac = strspn(p, "0123456789");
        p += frac;
    }
    if (lead == 0 && frac == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        size_t ex = strspn(p, "0123456789");
        if (ex == 0)
            return false;
        p += ex;
    }
    if (*p != '\0')
        return false;
    errno = 0;
    double v = strtod(s, NULL);
    if (!isfinite(v))
        return false;
    *out = v;
    return true;
}

static json_t *scalar_value(struct builder *b, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    size_t line = ev->start_mark.line + 1;

    /* JSON input cannot carry NUL either (jansson refuses \u0000), and every
     * consumer of a configuration string treats it as a C string: "a\0.com"
     * would pass validation as "a" and then mean something else. */
    if (memchr(s, '\0', len) != NULL) {
        snprintf(b->err, sizeof(b->err),
                 "line %zu: a value contains a NUL character (\\0); remove it", line);
        return NULL;
    }
    if (tag && strcmp(tag, "!") != 0) {
        json_int_t i;
        double d;
        if (strcmp(tag, YAML_STR_TAG) == 0)
            return json_stringn(s, len);
        if (strcmp(tag, YAML_INT_TAG) == 0 && parse_int(s, &i))
            return json_integer(i);
        if (strcmp(tag, YAML_FLOAT_TAG) == 0 && parse_float(s, &d))
            return json_real(d);
        if (strcmp(tag, YAML_BOOL_TAG) == 0 && plain_is(s, "true", "True", "TRUE"))
            return json_true();
        if (strcmp(tag, YAML_BOOL_TAG) == 0 && plain_is(s, "false", "False", "FALSE"))
            return json_false();
        if (strcmp(tag, YAML_NULL_TAG) == 0)
            return json_null();
        snprintf(b->err, sizeof(b->err), "line %zu: cannot read value '%.64s' with tag %.64s", line,
                 s, tag);
        return NULL;
    }
    if (!plain || (tag && strcmp(tag, "!") == 0))
        return json_stringn(s, len);
    if (len == 0 || strcmp(s, "~") == 0 || plain_is(s, "null", "Null", "NULL"))
        return json_null();
    if (plain_is(s, "true", "True", "TRUE"))
        return json_true();
    if (plain_is(s, "false", "False", "FALSE"))
        return json_false();
    json_int_t i;
    double d;
    if (parse_int(s, &i))
        return json_integer(i);
    if (parse_float(s, &d))
        return json_real(d);
    if (plain_is(s, ".inf", ".Inf", ".INF") || plain_is(s, "-.inf", "-.Inf", "-.INF") ||
        plain_is(s, ".nan", ".NaN", ".NAN")) {
        snprintf(b->err, sizeof(b->err), "line %zu: '%s' cannot be represented in JSON", line, s);
        return NULL;
    }
    return json_stringn(s, len);
}

/* Registers an anchored node (takes a new reference). */
static void add_anchor(struct builder *b, const char *anchor, json_t *node)
{
    if (anchor)
        json_object_set(b->anchors, anchor, node);
}

/* Attaches a finished node (stealing the reference) to the open collection,
 * or makes it the document root. Returns false with b->err set on error. */
static bool attach(struct builder *b, json_t *node, const char *key_text, size_t line)
{
    if (b->depth == 0) {
        b->root = node;
        b->have_root = true;
        return true;
    }
    struct frame *top = &b->stack[b->depth - 1];
    if (json_is_array(top->node)) {
        json_array_append_new(top->node, node);
        return true;
    }
    if (top->key == NULL) {
        /* this node is a key */
        if (key_text == NULL) {
            snprintf(b->err, sizeof(b->err),
                     "line %zu: mapping keys must be scalars (strings or numbers)", line);
            json_decref(node);
            return false;
        }
        if (json_object_get(top->node, key_text)) {
            snprintf(b->err, sizeof(b->err), "line %zu: duplicate key '%.200s'", line, key_text);
            json_decref(node);
            return false;
        }
        top->key = sl_xstrdup(key_text);
        json_decref(node);
        return true;
    }
    json_object_set_new(top->node, top->key, node);
    free(top->key);
    top->key = NULL;
    return true;
}

static bool open_collection(struct builder *b, json_t *node, const yaml_char_t *anchor, size_t line)
{
    if (b->depth >= b->max_depth) {
        snprintf(b->err, sizeof(b->err), "line %zu: nesting deeper than %zu levels", line,
                 b->max_depth);
        json_decref(node);
        return false;
    }
    /* a collection cannot be a mapping key */
    if (b->depth > 0 && json_is_object(b->stack[b->depth - 1].node) &&
        b->stack[b->depth - 1].key == NULL) {
        snprintf(b->err, sizeof(b->err),
                 "line %zu: mapping keys must be scalars (strings or numbers)", line);
        json_decref(node);
        return false;
    }
    if (b->depth == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->stack = sl_xrealloc(b->stack, b->cap * sizeof(*b->stack));
    }
    b->stack[b->depth++] = (struct frame){
        .node = node, .anchor = anchor ? sl_xstrdup((const char *)anchor) : NULL, .line = line};
    return true;
}

static bool close_collection(struct builder *b, size_t line)
{
    struct frame f = b->stack[--b->depth];
    free(f.key);
    add_anchor(b, f.anchor, f.node);
    free(f.anchor);
    return attach(b, f.node, NULL, line);
}

static bool handle_event(struct builder *b, const yaml_event_t *ev)
{
    size_t line = ev->start_mark.line + 1;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->have_root) {
            snprintf(b->err, sizeof(b->err),
                     "line %zu: only one YAML document is allowed in a file", line);
            return false;
        }
        return true;
    case YAML_MAPPING_START_EVENT:
        return open_collection(b, json_object(), ev->data.mapping_start.anchor, line);
    case YAML_SEQUENCE_START_EVENT:
        return open_collection(b, json_array(), ev->data.sequence_start.anchor, line);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        return close_collection(b, line);
    case YAML_SCALAR_EVENT: {
        json_t *v = scalar_value(b, ev);
        if (v == NULL) {
            if (b->err[0] == '\0')
                snprintf(b->err, sizeof(b->err), "line %zu: invalid scalar", line);
            return false;
        }
        add_anchor(b, (const char *)ev->data.scalar.anchor, v);
        return attach(b, v, (const char *)ev->data.scalar.value, line);
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        json_t *target = json_object_get(b->anchors, name);
        if (target == NULL) {
            snprintf(b->err, sizeof(b->err), "line %zu: unknown anchor '%.200s'", line, name);
            return false;
        }
        /* a copy nests as deep as its anchor did, wherever it lands */
        if (nesting(target) > b->max_depth - b->depth) {
            snprintf(b->err, sizeof(b->err), "line %zu: nesting deeper than %zu levels", line,
                     b->max_depth);
            return false;
        }
        size_t bytes = 0;
        size_t n = count_nodes(target, &bytes);
        if (n > SL_YAML_MAX_ALIAS_NODES - b->alias_nodes) {
            snprintf(b->err, sizeof(b->err), "line %zu: aliases expand to more than %u nodes", line,
                     SL_YAML_MAX_ALIAS_NODES);
            return false;
        }
        /* one long string copied many times is the same bomb */
        if (bytes > SL_YAML_MAX_ALIAS_BYTES - b->alias_bytes) {
            snprintf(b->err, sizeof(b->err),
                     "line %zu: aliases expand to more than %u bytes of text", line,
                     SL_YAML_MAX_ALIAS_BYTES);
            return false;
        }
        b->alias_nodes += n;
        b->alias_bytes += bytes;
        json_t *copy = json_deep_copy(target);
        return attach(b, copy, json_is_string(target) ? json_string_value(target) : NULL, line);
    }
    default:
        return true;
    }
}

int sl_yaml_to_json(const char *text, size_t len, size_t max_depth, json_t **out, sl_errors_t *errs)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        sl_errors_add(errs, "cannot initialise the YAML parser");
        return SL_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    struct builder b = {.max_depth = max_depth, .anchors = json_object()};
    int rc = SL_OK;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *problem = parser.problem ? parser.problem : "syntax error";
            if (parser.context)
                sl_errors_add(errs, "invalid YAML at line %zu, column %zu: %s %s",
                              parser.problem_mark.line + 1, parser.problem_mark.column + 1, problem,
                              parser.context);
            else
                sl_errors_add(errs, "invalid YAML at line %zu, column %zu: %s",
                              parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                              problem);
            rc = SL_ERR_INVALID;
            break;
        }
        bool ok = handle_event(&b, &ev);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (!ok) {
            sl_errors_add(errs, "invalid YAML at %s", b.err);
            rc = SL_ERR_INVALID;
            break;
        }
        if (end)
            break;
    }
    while (b.depth > 0) {
        struct frame *f = &b.stack[--b.depth];
        json_decref(f->node);
        free(f->key);
        free(f->anchor);
    }
    free(b.stack);
    json_decref(b.anchors);
    yaml_parser_delete(&parser);
    if (rc != SL_OK) {
        json_decref(b.root);
        return rc;
    }
    *out = b.root ? b.root : json_null();
    return SL_OK;
}
