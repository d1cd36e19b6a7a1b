/* base/log.h: leveled key=value diagnostics to stderr. The access log is separate
 * (gateway/accesslog.h). Thread-safe: each line is written with one write(2). */
#ifndef BG_LOG_H
#define BG_LOG_H

typedef enum bg_log_level {
    BG_LOG_DEBUG = 0,
    BG_LOG_INFO = 1,
    BG_LOG_WARN = 2,
    BG_LOG_ERROR = 3,
    BG_LOG_OFF = 4,
} bg_log_level;

extern bg_log_level bg_log_min_level;

/* Sets the minimum level written; from main before threads start. */
void bg_log_set_level(bg_log_level lvl);
/* Parses "debug|info|warn|error|off"; returns 0 or BG_ERR_INVAL. */
int bg_log_level_parse(const char *s, bg_log_level *out);

void bg_log_write(bg_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the level before evaluating the arguments. */
#define bg_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) >= bg_log_min_level) {                                                           \
            bg_log_write((lvl), __VA_ARGS__);                                                      \
        }                                                                                          \
    } while (0)

#ifdef NDEBUG
#define bg_debug(...)                                                                              \
    do {                                                                                           \
    } while (0)
#else
#define bg_debug(...) bg_log(BG_LOG_DEBUG, __VA_ARGS__)
#endif

#endif /* BG_LOG_H */
