/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "fmt.h"

void fmt_mem(FmtBuf *b, const char *s, size_t n) {
        size_t room = (size_t) (b->end - b->p);

        if (n > room) {
                n = room;
                b->overflow = true;
        }
        memcpy(b->p, s, n);
        b->p += n;
        *b->p = 0;
}

void fmt_str(FmtBuf *b, const char *s) {
        if (s)
                fmt_mem(b, s, strlen(s));
}

void fmt_u64(FmtBuf *b, uint64_t v) {
        char digits[20], *d = digits + sizeof(digits);

        do
                *--d = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        fmt_mem(b, d, (size_t) (digits + sizeof(digits) - d));
}

void fmt_i64(FmtBuf *b, int64_t v) {
        if (v < 0) {
                fmt_mem(b, "-", 1);
                fmt_u64(b, (uint64_t) 0 - (uint64_t) v);
        } else
                fmt_u64(b, (uint64_t) v);
}

size_t fmt_len(const FmtBuf *b, const char *buf) {
        return (size_t) (b->p - buf);
}
