/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "test.h"
#include "util.h"

static void test_against_printf(void) {
        static const int64_t values[] = { 0, 1, -1, 9, 10, 4294967295LL, INT64_MAX, INT64_MIN, -1234567 };
        char buf[64], want[64];

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                FmtBuf b = fmt_buf(buf, sizeof(buf));

                fmt_str(&b, "X=");
                fmt_i64(&b, values[i]);
                fmt_str(&b, NULL);
                fmt_mem(&b, " U=", 3);
                fmt_u64(&b, (uint64_t) values[i]);
                snprintf(want, sizeof(want), "X=%" PRId64 " U=%" PRIu64, values[i], (uint64_t) values[i]);
                CHECK_MSG(streq(buf, want) && !b.overflow && fmt_len(&b, buf) == strlen(want), "fmt: %s", want);
        }
}

static void test_overflow(void) {
        char buf[8];
        FmtBuf b = fmt_buf(buf, sizeof(buf));

        fmt_str(&b, "abcdef");
        CHECK(!b.overflow && streq(buf, "abcdef"));
        fmt_u64(&b, 12345);
        CHECK_MSG(b.overflow && streq(buf, "abcdef1") && fmt_len(&b, buf) == 7, "fmt: cut short, terminated");
        fmt_str(&b, "more");
        CHECK(b.overflow && strlen(buf) == 7);

        b = fmt_buf(buf, 1);
        fmt_u64(&b, 7);
        CHECK_MSG(b.overflow && buf[0] == 0, "fmt: room for the NUL alone");
}

int main(void) {
        test_against_printf();
        test_overflow();
        return test_result();
}
