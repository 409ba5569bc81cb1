/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "json-parse.h"

#define MAX_DEPTH  32
#define MAX_DIGITS 18           /* always fits json_int_t (int64_t) */

typedef struct Parser {
        const char *p, *end;
        unsigned depth;
} Parser;

static void skip_ws(Parser *ps) {
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
                ps->p++;
}

/* A string of printable ASCII without escapes: its bytes (no copy) and
 * length, ps past the closing quote. false for anything else. */
static bool parse_plain_string(Parser *ps, const char **ret, size_t *ret_len) {
        const char *start;

        if (ps->p >= ps->end || *ps->p != '"')
                return false;
        start = ++ps->p;
        for (; ps->p < ps->end; ps->p++) {
                unsigned char c = (unsigned char) *ps->p;

                if (c == '"') {
                        *ret = start;
                        *ret_len = (size_t) (ps->p - start);
                        ps->p++;
                        return true;
                }
                if (c < 0x20 || c > 0x7e || c == '\\')
                        return false;   /* escapes, controls, UTF-8: jansson's */
        }
        return false;
}

/* -?(0|[1-9][0-9]*), at most MAX_DIGITS digits, not followed by '.', 'e' or 'E'. */
static json_t *parse_integer(Parser *ps) {
        bool negative = false;
        int64_t v = 0;
        size_t digits = 0;

        if (*ps->p == '-') {
                negative = true;
                ps->p++;
        }
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                return NULL;
        if (*ps->p == '0' && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9')
                return NULL;            /* a leading zero: invalid, jansson says so */
        for (; ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; ps->p++) {
                if (++digits > MAX_DIGITS)
                        return NULL;
                v = v * 10 + (*ps->p - '0');
        }
        if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
                return NULL;
        return json_integer(negative ? -v : v);
}

static json_t *parse_literal(Parser *ps, const char *word, size_t n, json_t *value) {
        if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
                return NULL;
        ps->p += n;
        return value;
}

static json_t *parse_value(Parser *ps);

static json_t *parse_object(Parser *ps) {
        json_t *o = json_object();

        if (!o)
                return NULL;
        ps->p++;                /* '{' */
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == '}') {
                ps->p++;
                return o;
        }
        for (;;) {
                const char *key;
                size_t key_len;
                json_t *v;

                skip_ws(ps);
                if (!parse_plain_string(ps, &key, &key_len))
                        break;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':')
                        break;
                ps->p++;
                skip_ws(ps);
                /* A duplicate is jansson's error to report. */
                if (json_object_getn(o, key, key_len))
                        break;
                v = parse_value(ps);
                if (!v || json_object_setn_new_nocheck(o, key, key_len, v) < 0)
                        break;
                skip_ws(ps);
                if (ps->p < ps->end && *ps->p == ',') {
                        ps->p++;
                        continue;
                }
                if (ps->p < ps->end && *ps->p == '}') {
                        ps->p++;
                        return o;
                }
                break;
        }
        json_decref(o);
        return NULL;
}

static json_t *parse_array(Parser *ps) {
        json_t *a = json_array();

        if (!a)
                return NULL;
        ps->p++;                /* '[' */
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ']') {
                ps->p++;
                return a;
        }
        for (;;) {
                json_t *v;

                skip_ws(ps);
                v = parse_value(ps);
                if (!v || json_array_append_new(a, v) < 0)
                        break;
                skip_ws(ps);
                if (ps->p < ps->end && *ps->p == ',') {
                        ps->p++;
                        continue;
                }
                if (ps->p < ps->end && *ps->p == ']') {
                        ps->p++;
                        return a;
                }
                break;
        }
        json_decref(a);
        return NULL;
}

static json_t *parse_value(Parser *ps) {
        const char *s;
        size_t n;
        json_t *v = NULL;

        if (ps->p >= ps->end)
                return NULL;
        switch (*ps->p) {
        case '{':
        case '[':
                if (ps->depth >= MAX_DEPTH)
                        return NULL;
                ps->depth++;
                v = *ps->p == '{' ? parse_object(ps) : parse_array(ps);
                ps->depth--;
                return v;
        case '"':
                return parse_plain_string(ps, &s, &n) ? json_stringn_nocheck(s, n) : NULL;
        case 't':
                return parse_literal(ps, "true", 4, json_true());
        case 'f':
                return parse_literal(ps, "false", 5, json_false());
        case 'n':
                return parse_literal(ps, "null", 4, json_null());
        default:
                return parse_integer(ps);
        }
}

int json_parse_simple(const char *text, size_t len, json_t **ret) {
        Parser ps = { .p = text, .end = text + len };
        json_t *v;

        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p != '{')
                return 0;
        v = parse_value(&ps);
        if (!v)
                return 0;
        skip_ws(&ps);
        if (ps.p != ps.end) {
                json_decref(v);
                return 0;
        }
        *ret = v;
        return 1;
}
