/*
 * A main() for libFuzzer targets when libFuzzer is not there (gcc builds,
 * `make fuzz-smoke`): replays each file named on the command line, or each
 * regular file inside a named directory, through LLVMFuzzerTestOneInput. With
 * no arguments it replays stdin once. Each input is handed over in a heap
 * buffer of exactly its size, so AddressSanitizer sees any overread.
 *
 * Exits 0 when every input ran (a broken invariant aborts before that), 1 when
 * a file could not be read, 2 on bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are not fuzz inputs; refuse rather than OOM. */
#define REPLAY_MAX_INPUT (16u << 20)

static int read_stream(FILE *f, uint8_t **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    uint8_t *b = malloc(cap);
    if (b == NULL)
        return -1;
    for (;;) {
        if (n == cap) {
            if (cap >= REPLAY_MAX_INPUT) {
                free(b);
                return -1;
            }
            uint8_t *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                return -1;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        free(b);
        return -1;
    }
    *out = b;
    *len = n;
    return 0;
}

/* Runs one input; returns 0, or -1 when it could not be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *raw;
    size_t len;
    int rc = read_stream(f, &raw, &len);
    fclose(f);
    if (rc != 0) {
        fprintf(stderr, "replay: %s: cannot read (or larger than %u bytes)\n", path,
                REPLAY_MAX_INPUT);
        return -1;
    }
    /* exact-size copy: the stream buffer has slack that would hide overreads */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(raw);
        return -1;
    }
    memcpy(exact, raw, len);
    free(raw);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of a directory, in name order so failures repeat. */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL) {
                failed = -1;
                break;
            }
            names = nn;
        }
        size_t len = strlen(dir) + 1 + strlen(e->d_name) + 1;
        names[n] = malloc(len);
        if (names[n] == NULL) {
            failed = -1;
            break;
        }
        snprintf(names[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (failed == 0 && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (run_file(names[i]) != 0)
                failed = -1;
            else
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int failed = 0;

    if (argc < 2) {
        uint8_t *raw;
        size_t len;
        if (read_stream(stdin, &raw, &len) != 0) {
            fprintf(stderr, "usage: %s [FILE|DIR]...\n", argv[0]);
            return 2;
        }
        uint8_t *exact = malloc(len ? len : 1);
        if (exact == NULL)
            return 1;
        memcpy(exact, raw, len);
        free(raw);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        printf("replay: 1 input (stdin) ok\n");
        return 0;
    }

    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed = 1;
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (run_dir(argv[i], &count) != 0)
                failed = 1;
        } else if (run_file(argv[i]) != 0) {
            failed = 1;
        } else {
            count++;
        }
    }
    printf("replay: %zu input%s ok%s\n", count, count == 1 ? "" : "s",
           failed ? ", some could not be read" : "");
    return failed;
}
