/*
 * libFuzzer target: sl_yaml_to_json, the YAML reader under the declarative
 * loader, on its own so that inputs need not look like a configuration.
 *
 * The first byte picks the depth limit (0-63) so the nesting bound is hit at
 * every level; the rest is the document. Invariants checked (abort on
 * violation; leaks are AddressSanitizer's to report):
 *   - the return code is SL_OK or SL_ERR_INVALID;
 *   - on SL_OK: no message, *out a value no deeper than the limit, which
 *     jansson can write out as JSON and read back to an equal value (checked
 *     up to 100000 values);
 *   - on error: exactly one non-empty message, and *out untouched.
 */
#include "fuzz_check.h"
#include "yaml_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL ((json_t *)(uintptr_t)0x5eed)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Depth of nested collections (a scalar is 0); *nodes counts the values. */
static size_t depth(const json_t *v, size_t *nodes)
{
    size_t max = 0;
    (*nodes)++;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            size_t d = depth(json_array_get(v, i), nodes);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            size_t d = depth(x, nodes);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    return 0;
}

static void check_round_trip(const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    CHECK(text != NULL);
    json_t *back = json_loads(text, JSON_DECODE_ANY, NULL);
    CHECK(back != NULL && json_equal(back, v));
    json_decref(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t max_depth = data[0] & 63;
    size--;
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data + 1, size);

    sl_errors_t errs;
    sl_errors_init(&errs);
    json_t *out = SENTINEL;
    int rc = sl_yaml_to_json(buf, size, max_depth, &out, &errs);
    if (rc == SL_OK) {
        CHECK(errs.n == 0);
        CHECK(out != NULL && out != SENTINEL);
        size_t nodes = 0;
        CHECK(depth(out, &nodes) <= max_depth);
        /* alias bombs stopped just short of the budget are slow to redo */
        if (nodes <= 100000)
            check_round_trip(out);
        json_decref(out);
    } else {
        CHECK(rc == SL_ERR_INVALID);
        CHECK(out == SENTINEL);
        CHECK(errs.n == 1 && errs.items[0][0] != '\0');
    }
    sl_errors_dispose(&errs);
    free(buf);
    return 0;
}
