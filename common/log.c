/*
 * log.c owns the error log file descriptor. Any thread may log; each line is
 * formatted into a stack buffer and written with one write(2) so lines from
 * different workers never interleave.
 */
#include "log.h"
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int sl_log_level = SL_LOG_NOTICE;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error", "crit"};

int sl_log_level_parse(const char *name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(level_names); i++)
        if (!strcmp(name, level_names[i]))
            return (int)i;
    return -1;
}

int sl_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return SL_ERR_IO;
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    return SL_OK;
}

void sl_vlog(int level, const char *fmt, va_list ap)
{
    if (level < sl_log_level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[SL_MIN(level, SL_LOG_CRIT)]);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : SL_MIN((size_t)m, sizeof(line) - (size_t)n - 2));
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
}

void sl_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vlog(level, fmt, ap);
    va_end(ap);
}
