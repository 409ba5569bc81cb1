/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <syslog.h>

#include "util.h"

/* Logging to stderr, with a syslog priority prefix ("<3>") when stderr is the
 * journal ($JOURNAL_STREAM), which parses it. LOG_LEVEL=debug shows debug lines. */
void log_set_max_level(int level);
int log_get_max_level(void);
void log_internal(int level, const char *fmt, ...) _printf_(2, 3);

/* Log and return -abs(error), for "return log_error_errno(r, ...);". */
int log_internal_errno(int level, int error, const char *fmt, ...) _printf_(3, 4);

/* Between log_hold() and log_release() (they nest) lines are kept, then
 * written together: an Acquire's lines go out after its reply. */
void log_hold(void);
void log_release(void);
/* In a forked child: the kept lines are the parent's to write; log directly. */
void log_forget_held(void);

#define log_debug(...)   log_internal(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_internal(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_internal(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_internal(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_internal_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_internal_errno(LOG_ERR, e, __VA_ARGS__)
