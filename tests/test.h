/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The unit tests' checks: each prints "ok - what" or "FAIL - what (file:line)"
 * and counts the failures; main ends with `return test_result();`. */
#pragma once

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Weak, so that all the files of one test program share it. */
__attribute__((weak)) int test_failures;

__attribute__((format(printf, 4, 5)))
static inline void test_report(bool ok, const char *file, int line, const char *fmt, ...) {
        va_list ap;

        printf("%s - ", ok ? "ok" : "FAIL");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        if (!ok)
                printf(" (%s:%d)", file, line);
        printf("\n");
        fflush(stdout);             /* before any fork() or _exit() */
        test_failures += !ok;
}

/* cond is evaluated before the message's arguments. */
#define CHECK_MSG(cond, ...) do { bool test_ok_ = (cond); test_report(test_ok_, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK(cond) CHECK_MSG(cond, "%s", #cond)
#define CHECK_INT(a, b) do { long long test_a_ = (long long) (a), test_b_ = (long long) (b); \
        CHECK_MSG(test_a_ == test_b_, "%s == %s (%lld, %lld)", #a, #b, test_a_, test_b_); } while (0)
/* NULL equals only NULL. */
#define CHECK_STR(a, b) do { const char *test_a_ = (a), *test_b_ = (b); \
        CHECK_MSG(test_a_ && test_b_ ? strcmp(test_a_, test_b_) == 0 : test_a_ == test_b_, \
                  "%s == \"%s\" (got \"%s\")", #a, test_b_ ?: "(null)", test_a_ ?: "(null)"); } while (0)

/* Open fds of this process (with the one readdir uses), -1 on error: a
 * before/after pair shows a leak. */
static inline int test_count_open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        if (!d)
                return -1;
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static inline int test_result(void) {
        printf("%s: %d failure(s)\n", test_failures ? "FAIL" : "ok", test_failures);
        return test_failures ? 1 : 0;
}
