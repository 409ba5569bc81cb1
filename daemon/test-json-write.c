/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json_write_compact() gives exactly json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)'s
 * bytes: for hand-picked values and for many random ones. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-write.h"
#include "test.h"
#include "util.h"

/* Same bytes and length as jansson, or both fail. */
static bool same_as_jansson(const json_t *v) {
        _cleanup_free_ char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t len = 0;
        _cleanup_free_ char *got = json_write_compact(v, &len);

        if (!want || !got)
                return !want && !got;
        return streq(want, got) && len == strlen(want) + 1;
}

static void check(json_t *v, const char *what) {
        CHECK_MSG(same_as_jansson(v), "%s", what);
        json_decref(v);
}

static void test_fixed(void) {
        char controls[40];

        check(json_null(), "null");
        check(json_true(), "true");
        check(json_false(), "false");
        check(json_integer(0), "0");
        check(json_integer(-1), "-1");
        check(json_integer(INT64_MAX), "largest integer");
        check(json_integer(INT64_MIN), "smallest integer");
        check(json_real(1.5), "a real (left to jansson)");
        check(json_string(""), "empty string");
        check(json_string("a \"quoted\" \\ back/slash"), "quotes, backslash, slash");
        for (int i = 0; i < 32; i++)
                controls[i] = (char) (i + 1 < 32 ? i + 1 : 0x7f);
        controls[32] = 0;
        check(json_string(controls), "every control character");
        check(json_stringn("nul\0inside", 10), "NUL inside a string");
        check(json_string("zw\xc3\xb6lf \xe2\x82\xac \xf0\x9f\x98\x80"), "UTF-8 of 2, 3 and 4 bytes");
        check(json_stringn_nocheck("bad \xc3", 5), "truncated UTF-8: both fail");
        check(json_stringn_nocheck("\xed\xa0\x80", 3), "a surrogate: both fail");
        check(json_stringn_nocheck("\xc0\x80", 2), "overlong: both fail");
        check(json_stringn_nocheck("\xf4\x90\x80\x80", 4), "above U+10FFFF: both fail");
        check(json_array(), "empty array");
        check(json_object(), "empty object");
        check(json_pack("{s:{}, s:[], s:[{}, []], s:{s:{s:[1, 2, {s:null}]}}}", "a", "b", "c", "d", "e", "f", "g"),
              "nesting");
        check(json_pack("{s:s, s:I, s:i, s:o, s:b}", "session", "x", "iommuFileDescriptor", (json_int_t) 1, "ioasId", 7,
                        "devices", json_pack("[{s:s, s:i}]", "address", "0000:03:00.0", "fileDescriptor", 1), "k", 1),
              "an Acquire reply");
        json_t *deep = json_integer(1);
        for (int i = 0; i < 200; i++)
                deep = json_pack("[o]", deep);
        check(deep, "deeper than the fast path goes");
        CHECK(json_write_compact(NULL, NULL) == NULL);
}

static unsigned random_below(unsigned n) {
        return (unsigned) rand() % n;
}

static json_t *random_string(void) {
        static const char *const pieces[] = { "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "\x7f",
                                              "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "0000:03:00.0" };
        char s[64] = "";
        size_t n = random_below(8);

        if (random_below(8) == 0) {
                /* Random bytes, valid UTF-8 or not: jansson's verdict must hold. */
                for (size_t i = 0; i < n; i++)
                        s[i] = (char) (0x80 + random_below(0x80));
                return json_stringn_nocheck(s, n);
        }
        for (size_t i = 0; i < n; i++)
                strcat(s, pieces[random_below(ELEMENTSOF(pieces))]);
        return json_string(s);
}

static json_t *random_value(unsigned depth) {
        unsigned kind = random_below(depth > 4 ? 5 : 7);
        json_t *v;

        switch (kind) {
        case 0: return json_null();
        case 1: return json_boolean(random_below(2));
        case 2: return json_integer((json_int_t) rand() * (random_below(2) ? 1 : -1) * random_below(100000));
        case 3:
        case 4: return random_string();
        case 5:
                v = json_array();
                for (unsigned i = random_below(5); i > 0; i--)
                        json_array_append_new(v, random_value(depth + 1));
                return v;
        default:
                v = json_object();
                for (unsigned i = random_below(5); i > 0; i--) {
                        json_t *key = random_string();
                        json_object_set_new(v, json_string_value(key), random_value(depth + 1));
                        json_decref(key);
                }
                return v;
        }
}

static void test_random(void) {
        unsigned failed = 0;

        srand(42);
        for (int i = 0; i < 20000; i++) {
                json_t *v = random_value(0);
                failed += !same_as_jansson(v);
                json_decref(v);
        }
        CHECK_MSG(failed == 0, "20,000 random values as jansson writes them (%u differ)", failed);
}

int main(void) {
        test_fixed();
        test_random();
        return test_result();
}
