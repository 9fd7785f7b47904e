/*
 * A compact JSON writer for the control plane's hot paths (entity values in
 * the store, change records, Admin API bodies). Its output is byte for byte
 * what jansson's json_dumps(v, JSON_COMPACT) gives, so that stored entities
 * compare equal whichever wrote them, at a fraction of the cost: jansson's
 * dumper formats every container's address into a loop-detection table.
 */
#ifndef SL_JSON_OUT_H
#define SL_JSON_OUT_H

#include "strbuf.h"

#include <jansson.h>

/* Appends the compact JSON text of v to b. Returns SL_OK, or SL_ERR_INVALID
 * when v holds something JSON cannot express (a non-finite real, invalid
 * UTF-8 in a string: jansson refuses both); b's length is then unspecified. */
int sl_json_out(sl_sb_t *b, const json_t *v);

/* The compact JSON text of v as a NUL-terminated heap string (*len, when not
 * NULL, gets its length), or NULL where sl_json_out fails. Caller frees. */
char *sl_json_out_dup(const json_t *v, size_t *len);

#endif
