/*
 * uuid.c generates and checks UUID strings. Version 5 follows RFC 4122 4.3
 * exactly (SHA-1 over the namespace's 16 bytes followed by the name, version
 * and variant bits set), which is also what Kong's resty.jit-uuid factory
 * computes, so ids derived here match the ids Kong derives for the same
 * declarative file. Everything is stateless and thread-safe.
 */
#include "uuid.h"
#include "util.h"

#include <openssl/rand.h>
#include <openssl/evp.h>

bool sl_uuid_valid(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < SL_UUID_STRLEN; i++) {
        if (s[i] == '\0')
            return false;
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (sl_hex_value(s[i]) < 0) {
            return false;
        }
    }
    return s[SL_UUID_STRLEN] == '\0';
}

/* Formats 16 bytes as 8-4-4-4-12 lower-case hex. */
static void format_uuid(const unsigned char b[16], char out[SL_UUID_STRLEN + 1])
{
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        sl_hex_encode(b + i, 1, p); /* and a NUL, which the next byte overwrites */
        p += 2;
    }
}

void sl_uuid_v4(char out[SL_UUID_STRLEN + 1])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        sl_panic(__FILE__, __LINE__, "RAND_bytes failed");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    format_uuid(b, out);
}

int sl_uuid_v5(const char *ns_uuid, const char *name, size_t len, char out[SL_UUID_STRLEN + 1])
{
    unsigned char ns[16], md[EVP_MAX_MD_SIZE];
    if (!sl_uuid_valid(ns_uuid))
        return SL_ERR_INVALID;
    for (int i = 0, j = 0; i < 16; j++) {
        if (ns_uuid[j] == '-')
            continue;
        ns[i++] = (unsigned char)(sl_hex_value(ns_uuid[j]) << 4 | sl_hex_value(ns_uuid[j + 1]));
        j++;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, ns, sizeof(ns)) != 1 || EVP_DigestUpdate(ctx, name, len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, NULL) != 1)
        sl_panic(__FILE__, __LINE__, "SHA-1 digest failed");
    EVP_MD_CTX_free(ctx);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x50);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    format_uuid(md, out);
    return SL_OK;
}
