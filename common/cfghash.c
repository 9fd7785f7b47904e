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
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < SL_CFGHASH_LEN; i++) {
        out[2 * i] = digits[h->b[i] >> 4];
        out[2 * i + 1] = digits[h->b[i] & 15];
    }
    out[32] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool sl_cfghash_parse(const char *s, size_t len, sl_cfghash_t *out)
{
    if (len != 2 * SL_CFGHASH_LEN)
        return false;
    for (size_t i = 0; i < SL_CFGHASH_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out->b[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}
