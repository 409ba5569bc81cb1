/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Text into a caller's fixed buffer without printf: audit entries, lease
 * records and fd store messages are written on every Acquire and Release,
 * and vsnprintf() costs about a thousand instructions per field. The text
 * is always NUL-terminated; what does not fit sets overflow.
 */
typedef struct FmtBuf {
        char *p, *end;                  /* end: the byte for the NUL */
        bool overflow;
} FmtBuf;

/* size > 0. */
static inline FmtBuf fmt_buf(char *buf, size_t size) {
        buf[0] = 0;
        return (FmtBuf) { .p = buf, .end = buf + size - 1 };
}

void fmt_mem(FmtBuf *b, const char *s, size_t n);
void fmt_str(FmtBuf *b, const char *s);         /* NULL: nothing */
void fmt_u64(FmtBuf *b, uint64_t v);
void fmt_i64(FmtBuf *b, int64_t v);
/* Bytes written so far. */
size_t fmt_len(const FmtBuf *b, const char *buf);
