/*
 * libFuzzer target: sl_declarative_load_string, and behind it the YAML and
 * JSON readers, the entity schemas, id derivation, reference resolution and
 * the write-time transformations.
 *
 * Invariants checked (abort on violation, so libFuzzer and the gcc replay
 * both report it; leaks are AddressSanitizer's to report):
 *   - the return code is SL_OK or SL_ERR_INVALID (SL_ERR_NOMEM only with a
 *     message);
 *   - on SL_OK: no message was added, and *out is an object holding
 *     "_format_version": "3.0" and every table of declarative.h as an array
 *     of records, each with a string "id";
 *   - on error: at least one non-empty message, and *out untouched;
 *   - on SL_OK the normalised document, written out as JSON with
 *     "_transform": false (it is Kong's export shape, already transformed,
 *     which a declarative file may be), loads again to the same document but
 *     for the "updated_at" stamps.
 */
#include "fuzz_check.h"
#include "declarative.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A value *out can never hold, to see that errors leave it untouched. */
#define SENTINEL ((json_t *)(uintptr_t)0x5eed)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void dump_errors(const sl_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "  error: %s\n", errs->items[i]);
}

static void check_document(const json_t *doc)
{
    CHECK(json_is_object(doc));
    const json_t *fv = json_object_get(doc, "_format_version");
    CHECK(json_is_string(fv) && strcmp(json_string_value(fv), "3.0") == 0);
    size_t t = 0;
    for (; sl_declarative_tables[t]; t++) {
        const json_t *list = json_object_get(doc, sl_declarative_tables[t]);
        CHECK(json_is_array(list));
        for (size_t i = 0; i < json_array_size(list); i++) {
            const json_t *e = json_array_get(list, i);
            CHECK(json_is_object(e));
            CHECK(json_is_string(json_object_get(e, "id")));
        }
    }
    CHECK(json_object_size(doc) == 1 + t); /* nothing else */
}

/* Loads text; returns the document (a new reference) or NULL on error, after
 * checking the invariants of either outcome. */
static json_t *load_checked(const char *text, size_t len, bool must_load)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    json_t *out = SENTINEL;
    int rc = sl_declarative_load_string(text, len, &out, &errs);
    if (rc == SL_OK) {
        if (errs.n != 0)
            dump_errors(&errs);
        CHECK(errs.n == 0);
        CHECK(out != NULL && out != SENTINEL);
        check_document(out);
    } else {
        if (must_load) {
            fprintf(stderr, "the normalised document does not load again:\n%.*s\n", (int)len, text);
            dump_errors(&errs);
        }
        CHECK(!must_load);
        CHECK(rc == SL_ERR_INVALID || rc == SL_ERR_NOMEM);
        CHECK(out == SENTINEL);
        CHECK(errs.n >= 1);
        for (size_t i = 0; i < errs.n; i++)
            CHECK(errs.items[i] != NULL && errs.items[i][0] != '\0');
        out = NULL;
    }
    sl_errors_dispose(&errs);
    return out;
}

/* Every load stamps "updated_at" with the current time. */
static void drop_updated_at(json_t *doc)
{
    for (size_t t = 0; sl_declarative_tables[t]; t++) {
        json_t *list = json_object_get(doc, sl_declarative_tables[t]);
        for (size_t i = 0; i < json_array_size(list); i++)
            json_object_del(json_array_get(list, i), "updated_at");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so an overread is an ASan report even under replay */
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);

    json_t *doc = load_checked(buf, size, false);
    free(buf);
    if (doc == NULL)
        return 0;

    json_object_set_new(doc, "_transform", json_false());
    char *text = json_dumps(doc, JSON_COMPACT);
    CHECK(text != NULL);
    json_t *again = load_checked(text, strlen(text), true);
    json_object_del(doc, "_transform");
    drop_updated_at(doc);
    drop_updated_at(again);
    if (!json_equal(doc, again)) {
        char *t2 = json_dumps(again, JSON_COMPACT);
        fprintf(stderr, "normalising is not idempotent:\n%s\n%s\n", text, t2);
        free(t2);
    }
    CHECK(json_equal(doc, again));
    json_decref(again);
    free(text);
    json_decref(doc);
    return 0;
}
