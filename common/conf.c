/*
 * conf.c owns sl_conf_t: the values of one binary's configuration keys. It is
 * filled at start-up (defaults, then file, then environment, then command
 * line) and read-only afterwards, so any thread may read it.
 */
#include "conf.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>

/* A key of a family ("pluginserver_*") that was set; families have no
 * defaults, so only set keys exist. */
typedef struct dyn_key_s {
    char *name;
    char *value;
} dyn_key_t;

struct sl_conf_s {
    const sl_conf_key_t *keys;
    size_t nkeys;
    char **values; /* owned; NULL when unset */
    dyn_key_t *dyn;
    size_t ndyn;
};

extern char **environ;

sl_conf_t *sl_conf_new(const sl_conf_key_t *keys, size_t nkeys)
{
    sl_conf_t *c = sl_xcalloc(1, sizeof(*c));
    c->keys = keys;
    c->nkeys = nkeys;
    c->values = sl_xcalloc(nkeys, sizeof(char *));
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].default_value)
            c->values[i] = sl_xstrdup(keys[i].default_value);
    return c;
}

void sl_conf_free(sl_conf_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nkeys; i++)
        free(c->values[i]);
    for (size_t i = 0; i < c->ndyn; i++) {
        free(c->dyn[i].name);
        free(c->dyn[i].value);
    }
    free(c->dyn);
    free(c->values);
    free(c);
}

static bool is_family(const sl_conf_key_t *k)
{
    size_t n = strlen(k->name);
    return n > 0 && k->name[n - 1] == '*';
}

/* The declared key named key; a family's index when key belongs to it (with
 * *family set), -1 when nothing declares it. */
static ssize_t find_key(const sl_conf_t *c, const char *key, bool *family)
{
    *family = false;
    for (size_t i = 0; i < c->nkeys; i++) {
        const char *name = c->keys[i].name;
        if (is_family(&c->keys[i])) {
            size_t n = strlen(name) - 1;
            if (!strncmp(name, key, n) && key[n] != '\0') {
                *family = true;
                return (ssize_t)i;
            }
        } else if (!strcmp(name, key)) {
            return (ssize_t)i;
        }
    }
    return -1;
}

static dyn_key_t *find_dyn(const sl_conf_t *c, const char *key)
{
    for (size_t i = 0; i < c->ndyn; i++)
        if (!strcmp(c->dyn[i].name, key))
            return &c->dyn[i];
    return NULL;
}

int sl_conf_set(sl_conf_t *c, const char *key, const char *value)
{
    bool family;
    ssize_t i = find_key(c, key, &family);
    if (i < 0)
        return SL_ERR_NOT_FOUND;
    if (family) {
        dyn_key_t *d = find_dyn(c, key);
        if (!d) {
            c->dyn = sl_xrealloc(c->dyn, (c->ndyn + 1) * sizeof(*c->dyn));
            d = &c->dyn[c->ndyn++];
            d->name = sl_xstrdup(key);
            d->value = NULL;
        }
        free(d->value);
        d->value = sl_xstrdup(value);
        return SL_OK;
    }
    free(c->values[i]);
    c->values[i] = sl_xstrdup(value);
    return SL_OK;
}

const char *sl_conf_get(const sl_conf_t *c, const char *key)
{
    bool family;
    ssize_t i = find_key(c, key, &family);
    SL_ASSERT(i >= 0); /* asking for an undeclared key is a programming error */
    if (family) {
        const dyn_key_t *d = find_dyn(c, key);
        return d ? d->value : NULL;
    }
    return c->values[i];
}

size_t sl_conf_family_count(const sl_conf_t *c)
{
    return c->ndyn;
}

const char *sl_conf_family_key(const sl_conf_t *c, size_t i, const char **value)
{
    *value = c->dyn[i].value;
    return c->dyn[i].name;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int sl_conf_load_file(sl_conf_t *c, const char *path, sl_errors_t *errs)
{
    char *text;
    size_t len;
    int rc = sl_read_file(path, 1 << 20, &text, &len);
    if (rc != SL_OK) {
        sl_errors_add(errs, "%s: cannot read configuration file (%s)", path,
                      rc == SL_ERR_TOO_BIG ? "larger than 1 MiB" : "no such file or unreadable");
        return rc;
    }
    size_t before = errs->n;
    int lineno = 0;
    char *save = NULL;
    /* strtok_r would merge empty lines and lose line numbers; walk by hand. */
    for (char *line = text; line && *line; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *l = trim(line);
        if (*l == '\0')
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            sl_errors_add(errs, "%s:%d: expected 'key = value', got '%s'", path, lineno, l);
            continue;
        }
        *eq = '\0';
        char *key = trim(l), *val = trim(eq + 1);
        if (sl_conf_set(c, key, val) != SL_OK)
            sl_errors_add(errs, "%s:%d: unknown configuration key '%s'", path, lineno, key);
    }
    free(text);
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}

void sl_conf_load_env(sl_conf_t *c)
{
    char name[128];
    /* Families first: any SLUICE_<FAMILY PREFIX>... variable sets its key. */
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "SLUICE_", 7) != 0 || !eq || (size_t)(eq - *e) >= sizeof(name))
            continue;
        size_t n = (size_t)(eq - *e) - 7;
        for (size_t k = 0; k < n; k++)
            name[k] = (char)tolower((unsigned char)(*e)[7 + k]);
        name[n] = '\0';
        bool family;
        if (find_key(c, name, &family) >= 0 && family)
            sl_conf_set(c, name, eq + 1);
    }
    for (size_t i = 0; i < c->nkeys; i++) {
        if (is_family(&c->keys[i]))
            continue;
        int n = snprintf(name, sizeof(name), "SLUICE_%s", c->keys[i].name);
        if (n <= 0 || (size_t)n >= sizeof(name))
            continue;
        for (char *p = name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        const char *v = getenv(name);
        if (v) {
            free(c->values[i]);
            c->values[i] = sl_xstrdup(v);
        }
    }
}

void sl_conf_get_bool(const sl_conf_t *c, const char *key, bool *out, sl_errors_t *errs)
{
    const char *v = sl_conf_get(c, key);
    *out = false;
    if (!v)
        return;
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
        *out = true;
    else if (strcmp(v, "off") && strcmp(v, "false") && strcmp(v, "no") && strcmp(v, "0"))
        sl_errors_add(errs, "%s: expected on or off, got '%s'", key, v);
}

void sl_conf_get_int(const sl_conf_t *c, const char *key, int64_t min, int64_t max, int64_t *out,
                     sl_errors_t *errs)
{
    const char *v = sl_conf_get(c, key);
    *out = min;
    if (!v)
        return;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min || n > max) {
        sl_errors_add(errs, "%s: expected an integer between %lld and %lld, got '%s'", key,
                      (long long)min, (long long)max, v);
        return;
    }
    *out = n;
}

void sl_conf_get_size(const sl_conf_t *c, const char *key, uint64_t *out, sl_errors_t *errs)
{
    const char *v = sl_conf_get(c, key);
    *out = 0;
    if (v && sl_parse_size(v, out) != SL_OK)
        sl_errors_add(errs, "%s: expected a size such as 512, 64k or 8m, got '%s'", key, v);
}

void sl_conf_get_ms(const sl_conf_t *c, const char *key, uint64_t *out, sl_errors_t *errs)
{
    const char *v = sl_conf_get(c, key);
    *out = 0;
    if (v && sl_parse_duration_ms(v, out) != SL_OK)
        sl_errors_add(errs, "%s: expected a duration such as 60s, 500ms or 5m, got '%s'", key, v);
}

size_t sl_conf_split(const char *value, char ***items)
{
    size_t n = 0, cap = 0;
    char **out = NULL;
    char *copy = sl_xstrdup(value ? value : "");
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok);
        if (*t == '\0')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            out = sl_xrealloc(out, cap * sizeof(*out));
        }
        out[n++] = sl_xstrdup(t);
    }
    free(copy);
    *items = out;
    return n;
}

void sl_conf_split_free(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}
