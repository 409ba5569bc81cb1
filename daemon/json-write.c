/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json-write.h"

/* Deeper than any message of ours; jansson decides beyond it. */
#define MAX_DEPTH 64

typedef struct Buffer {
        char *data;
        size_t len, size;
        bool failed;                    /* ENOMEM, or something for jansson */
} Buffer;

static bool reserve(Buffer *b, size_t n) {
        size_t size;
        char *grown;

        if (b->failed)
                return false;
        if (b->len + n <= b->size)
                return true;
        size = b->size * 2 > b->len + n ? b->size * 2 : b->len + n;
        grown = realloc(b->data, size);
        if (!grown) {
                b->failed = true;
                return false;
        }
        b->data = grown;
        b->size = size;
        return true;
}

static void put(Buffer *b, const char *s, size_t n) {
        if (reserve(b, n)) {
                memcpy(b->data + b->len, s, n);
                b->len += n;
        }
}

static void put_char(Buffer *b, char c) {
        if (reserve(b, 1))
                b->data[b->len++] = c;
}

static void put_integer(Buffer *b, json_int_t v) {
        char digits[24], *p = digits + sizeof(digits);
        /* Through unsigned: the most negative value has no positive twin. */
        unsigned long long u = v < 0 ? -(unsigned long long) v : (unsigned long long) v;

        do
                *--p = (char) ('0' + u % 10);
        while ((u /= 10) > 0);
        if (v < 0)
                *--p = '-';
        put(b, p, (size_t) (digits + sizeof(digits) - p));
}

/* The length of the UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * the rules jansson's own check applies (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
        unsigned c = s[0];
        uint32_t cp;
        size_t len;

        if (c < 0x80)
                return 1;
        if (c < 0xC2 || c > 0xF4)
                return 0;
        len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (n < len)
                return 0;
        cp = c & (0xFF >> (len + 1));
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
                return 0;
        return len;
}

/* As jansson escapes: the two mandatory ones, the short forms of five
 * controls, \u00XX (upper case) for the other controls, the rest as is. */
static void put_string(Buffer *b, const char *str, size_t len) {
        static const char hex[] = "0123456789ABCDEF";
        const unsigned char *s = (const unsigned char *) str, *end = s + len, *run = s;

        put_char(b, '"');
        while (s < end) {
                char esc[6] = { '\\', 'u', '0', '0' };
                size_t n = 2;

                if (*s >= 0x20 && *s != '"' && *s != '\\') {
                        size_t k = *s < 0x80 ? 1 : utf8_sequence(s, (size_t) (end - s));
                        if (k == 0) {
                                b->failed = true;
                                return;
                        }
                        s += k;
                        continue;
                }
                put(b, (const char *) run, (size_t) (s - run));
                switch (*s) {
                case '"': esc[1] = '"'; break;
                case '\\': esc[1] = '\\'; break;
                case '\b': esc[1] = 'b'; break;
                case '\f': esc[1] = 'f'; break;
                case '\n': esc[1] = 'n'; break;
                case '\r': esc[1] = 'r'; break;
                case '\t': esc[1] = 't'; break;
                default:
                        esc[4] = hex[*s >> 4];
                        esc[5] = hex[*s & 0xF];
                        n = 6;
                }
                put(b, esc, n);
                run = ++s;
        }
        put(b, (const char *) run, (size_t) (s - run));
        put_char(b, '"');
}

static void put_value(Buffer *b, const json_t *v, unsigned depth) {
        if (b->failed)
                return;
        if (depth > MAX_DEPTH) {
                b->failed = true;
                return;
        }
        switch (json_typeof(v)) {
        case JSON_NULL:
                put(b, "null", 4);
                break;
        case JSON_TRUE:
                put(b, "true", 4);
                break;
        case JSON_FALSE:
                put(b, "false", 5);
                break;
        case JSON_INTEGER:
                put_integer(b, json_integer_value(v));
                break;
        case JSON_STRING:
                put_string(b, json_string_value(v), json_string_length(v));
                break;
        case JSON_ARRAY:
                put_char(b, '[');
                for (size_t i = 0, n = json_array_size(v); i < n; i++) {
                        if (i > 0)
                                put_char(b, ',');
                        put_value(b, json_array_get(v, i), depth + 1);
                }
                put_char(b, ']');
                break;
        case JSON_OBJECT:
                put_char(b, '{');
                for (void *i = json_object_iter((json_t *) v), *first = i; i;
                     i = json_object_iter_next((json_t *) v, i)) {
                        if (i != first)
                                put_char(b, ',');
                        put_string(b, json_object_iter_key(i), json_object_iter_key_len(i));
                        put_char(b, ':');
                        put_value(b, json_object_iter_value(i), depth + 1);
                }
                put_char(b, '}');
                break;
        default:
                /* Reals: jansson's own formatting, which this does not copy. */
                b->failed = true;
        }
}

char *json_write_compact(const json_t *v, size_t *ret_len) {
        Buffer b = {};
        char *s;

        if (!v)
                return NULL;
        if (reserve(&b, 256))
                put_value(&b, v, 0);
        put_char(&b, 0);
        if (!b.failed) {
                if (ret_len)
                        *ret_len = b.len;
                return b.data;
        }
        free(b.data);
        /* Something unusual, or no memory: jansson, which fails the same
         * way on what it cannot write either. */
        s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s && ret_len)
                *ret_len = strlen(s) + 1;
        return s;
}
