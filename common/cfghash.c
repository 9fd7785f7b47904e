/*
 * cfghash.c: the order-independent configuration hash (see cfghash.h).
 */
#include "cfghash.h"
#include "util.h"

#include <openssl/evp.h>
#include <string.h>

void sl_cfghash_toggle(sl_cfghash_t *h, const char *table, const char *id, const char *json,
                       size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    SL_ASSERT(c != NULL);
    SL_ASSERT(EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1);
    EVP_DigestUpdate(c, table, strlen(table) + 1);
    EVP_DigestUpdate(c, id, strlen(id) + 1);
    EVP_DigestUpdate(c, json, len);
    SL_ASSERT(EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen >= SL_CFGHASH_LEN);
    EVP_MD_CTX_free(c);
    for (size_t i = 0; i < SL_CFGHASH_LEN; i++)
        h->b[i] ^= md[i];
}

void sl_cfghash_hex(const sl_cfghash_t *h, char out[33])
{
    sl_hex_encode(h->b, SL_CFGHASH_LEN, out);
}

bool sl_cfghash_parse(const char *s, size_t len, sl_cfghash_t *out)
{
    if (len != 2 * SL_CFGHASH_LEN)
        return false;
    for (size_t i = 0; i < SL_CFGHASH_LEN; i++) {
        int hi = sl_hex_value(s[2 * i]), lo = sl_hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out->b[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}
