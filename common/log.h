/*
 * Leveled error log. One line per event on stderr (or the configured file):
 * "2026-11-29T07:20:33.123Z [warn] worker 1: message". Thread-safe: each line
 * is written with a single write(2).
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>

enum sl_log_level {
    SL_LOG_DEBUG = 0,
    SL_LOG_INFO = 1,
    SL_LOG_NOTICE = 2,
    SL_LOG_WARN = 3,
    SL_LOG_ERROR = 4,
    SL_LOG_CRIT = 5,
};

extern int sl_log_level;

/* Parses "debug", "info", "notice", "warn", "error", "crit"; -1 when unknown. */
int sl_log_level_parse(const char *name);

/* Sends the log to a file instead of stderr; returns SL_OK or SL_ERR_IO. */
int sl_log_open(const char *path);

void sl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sl_vlog(int level, const char *fmt, va_list ap);

#define sl_log_enabled(lvl) ((lvl) >= sl_log_level)
#define SL_DEBUG(...)                                                                              \
    do {                                                                                           \
        if (sl_log_enabled(SL_LOG_DEBUG))                                                          \
            sl_log(SL_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define SL_INFO(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define SL_NOTICE(...) sl_log(SL_LOG_NOTICE, __VA_ARGS__)
#define SL_WARN(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define SL_ERROR(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)

#endif
