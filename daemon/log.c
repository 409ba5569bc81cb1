/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

static int max_level = -1;
static int use_prefix = -1;

/* The "<N>" level prefix is for journald's stream parser; on a terminal or in
 * a plain log file it is noise. */
static bool want_prefix(void) {
        if (use_prefix < 0)
                use_prefix = !!getenv("JOURNAL_STREAM");
        return use_prefix;
}

void log_set_max_level(int level) { max_level = level; }

int log_get_max_level(void) {
        if (max_level < 0) {
                const char *e = getenv("LOG_LEVEL");
                max_level = e && streq(e, "debug") ? LOG_DEBUG : LOG_INFO;
        }
        return max_level;
}

static void log_va(int level, const char *fmt, va_list ap) {
        char buf[2048];

        if (level > log_get_max_level())
                return;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        if (want_prefix())
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "%s\n", buf);
}

void log_internal(int level, const char *fmt, ...) {
        int saved = errno;
        va_list ap;

        va_start(ap, fmt);
        log_va(level, fmt, ap);
        va_end(ap);
        errno = saved;
}

int log_internal_errno(int level, int error, const char *fmt, ...) {
        int saved = errno;
        va_list ap;

        /* %m in fmt refers to the error being logged. */
        errno = abs(error);
        va_start(ap, fmt);
        log_va(level, fmt, ap);
        va_end(ap);
        errno = saved;
        return -abs(error);
}
