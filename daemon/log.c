/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static struct {
        unsigned depth;
        size_t used;
        char text[8192];
} held;

static void held_flush(void) {
        if (held.used == 0)
                return;
        fwrite(held.text, 1, held.used, stderr);
        fflush(stderr);
        held.used = 0;
}

void log_hold(void) { held.depth++; }

void log_forget_held(void) {
        held.depth = 0;
        held.used = 0;
}

void log_release(void) {
        if (held.depth > 0 && --held.depth == 0)
                held_flush();
}

static void log_va(int level, const char *fmt, va_list ap) {
        char buf[2048], line[2064];
        int n;

        if (level > log_get_max_level())
                return;
        vsnprintf(buf, sizeof(buf), fmt, ap);
        if (want_prefix())
                n = snprintf(line, sizeof(line), "<%d>%s\n", level, buf);
        else
                n = snprintf(line, sizeof(line), "%s\n", buf);
        n = n < 0 ? 0 : n >= (int) sizeof(line) ? (int) sizeof(line) - 1 : n;
        if (held.depth > 0 && (size_t) n > sizeof(held.text) - held.used)
                held_flush();   /* no room: what is kept goes first, in order */
        if (held.depth > 0 && (size_t) n <= sizeof(held.text) - held.used) {
                memcpy(held.text + held.used, line, (size_t) n);
                held.used += (size_t) n;
                return;
        }
        fwrite(line, 1, (size_t) n, stderr);
        fflush(stderr);
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
