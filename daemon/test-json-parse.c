/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json_parse_simple() takes only what it can give exactly as
 * json_loadb(JSON_REJECT_DUPLICATES) would, and leaves everything else to
 * jansson: hand-picked texts, then many random and mutated ones. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-parse.h"
#include "test.h"
#include "util.h"

/* 1 if the fast path took text and gave jansson's value (key order too), 0
 * if it left it to jansson, -1 if it took it and got it wrong. */
static int compare(const char *text, size_t len) {
        json_error_t error;
        json_t *fast = NULL, *slow = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
        int r = json_parse_simple(text, len, &fast);

        if (r <= 0) {
                json_decref(slow);
                return 0;
        }
        _cleanup_free_ char *a = json_dumps(fast, JSON_COMPACT);
        _cleanup_free_ char *b = slow ? json_dumps(slow, JSON_COMPACT) : NULL;
        bool same = a && b && streq(a, b) && json_equal(fast, slow);
        json_decref(fast);
        json_decref(slow);
        return same ? 1 : -1;
}

static void taken(const char *text) {
        CHECK_MSG(compare(text, strlen(text)) == 1, "taken, as jansson: %s", text);
}

static void left(const char *text) {
        CHECK_MSG(compare(text, strlen(text)) == 0, "left to jansson: %s", text);
}

static void test_fixed(void) {
        char deep[200] = "";

        taken("{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[\"0000:01:00.0\"],"
              "\"mode\":\"attached\"}}");
        taken("{\"method\":\"io.iommufd.Broker.Release\",\"parameters\":{}}");
        taken("{\"method\":\"io.iommufd.Broker.Monitor\",\"more\":true}");
        taken("{\"method\":\"x\",\"oneway\":false,\"more\":null,\"parameters\":{\"a\":[1,-2,0,-0,[],{}],"
              "\"b\":123456789012345678,\"c\":-123456789012345678}}");
        taken(" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \r\n");
        taken("{}");
        taken("{\"\":\"\"}");
        taken("{\"a\":{\"a\":{\"a\":1}},\"b\":\"a b/c~!@#$%^&*()\"}");

        left("[1,2]");                                  /* top level not an object */
        left("\"s\"");
        left("");
        left("   ");
        left("{\"a\":\"\\n\"}");                        /* escapes */
        left("{\"a\":\"\\u00e9\"}");
        left("{\"a\":\"\xc3\xa9\"}");                   /* UTF-8 */
        left("{\"a\":\"\xc3\"}");                       /* bad UTF-8: jansson refuses */
        left("{\"a\":\"tab\there\"}");                  /* a control character */
        left("{\"a\":1.5}");
        left("{\"a\":1e3}");
        left("{\"a\":1E3}");
        left("{\"a\":1234567890123456789}");            /* 19 digits */
        left("{\"a\":99999999999999999999999}");
        left("{\"a\":01}");
        left("{\"a\":-}");
        left("{\"a\":+1}");
        left("{\"a\":1,\"a\":2}");                      /* duplicates: jansson's error */
        left("{\"a\":{\"b\":1,\"b\":1}}");
        left("{\"a\":1,}");
        left("{\"a\":[1,]}");
        left("{\"a\" 1}");
        left("{a:1}");
        left("{\"a\":tru}");
        left("{\"a\":truex}");
        left("{\"a\":nul}");
        left("{\"a\":1} x");
        left("{\"a\":1}{}");
        left("{\"a\":1");
        left("{\"a\":[1,2}");
        for (int i = 0; i < 40; i++)
                strcat(deep, "[");
        memmove(deep + 5, deep, strlen(deep) + 1);
        memcpy(deep, "{\"a\":", 5);
        left(deep);                                     /* deeper than the fast path goes */

        json_t *v = NULL;
        CHECK(json_parse_simple("{\"a\":1}", 6, &v) == 0 && !v);        /* cut short by len */
        CHECK(json_parse_simple("{\"a\":1}\0{", 9, &v) == 0 && !v);     /* a NUL is no whitespace */
}

/* Random texts from the characters JSON is made of, valid or not. */
static void test_random(void) {
        static const char *const pieces[] = {
                "{", "}", "[", "]", ",", ":", " ", "\"", "\"a\"", "\"b\"", "\"method\"", "\"x y\"", "1", "-", "0",
                "12", "-7", "1.5", "e", "true", "false", "null", "\\", "\\n", "\xc3\xa9", "\t", "tru",
        };
        unsigned taken_n = 0, wrong = 0;

        srand(4711);
        for (int i = 0; i < 200000; i++) {
                char text[256] = "{";
                size_t n = 1 + (size_t) (rand() % 24);

                for (size_t k = 0; k < n; k++)
                        strcat(text, pieces[rand() % ELEMENTSOF(pieces)]);
                if (rand() % 2)
                        strcat(text, "}");
                int r = compare(text, strlen(text));
                taken_n += r == 1;
                if (r < 0 && wrong++ < 5)
                        printf("# wrong: %s\n", text);
        }
        printf("# %u of 200000 random texts taken by the fast path\n", taken_n);
        CHECK_MSG(wrong == 0, "random texts: never a value jansson would not give (%u wrong)", wrong);
        CHECK_MSG(taken_n > 100, "random texts: some are taken (%u)", taken_n);
}

/* Every byte of real calls changed, dropped or doubled in turn. */
static void test_mutated(void) {
        static const char *const calls[] = {
                "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[\"0000:01:00.0\","
                "\"00:02.0\"],\"mode\":\"attached\",\"managed\":false,\"allowInteractiveAuthentication\":true}}",
                "{\"method\":\"io.iommufd.Broker.Revoke\",\"parameters\":{\"device\":\"0000:01:00.0\","
                "\"timeoutSeconds\":30},\"oneway\":false}",
        };
        static const char replacements[] = "{}[],:\" 0-9e.\\atfnx\x01\xc3";
        unsigned wrong = 0;

        for (size_t c = 0; c < ELEMENTSOF(calls); c++) {
                size_t len = strlen(calls[c]);

                for (size_t i = 0; i < len; i++) {
                        char text[512];

                        for (size_t k = 0; k < sizeof(replacements) - 1; k++) {
                                memcpy(text, calls[c], len + 1);
                                text[i] = replacements[k];
                                wrong += compare(text, len) < 0;
                        }
                        memcpy(text, calls[c], i);              /* dropped */
                        memcpy(text + i, calls[c] + i + 1, len - i);
                        wrong += compare(text, len - 1) < 0;
                        memcpy(text, calls[c], i + 1);          /* doubled */
                        memcpy(text + i + 1, calls[c] + i, len - i + 1);
                        wrong += compare(text, len + 1) < 0;
                        wrong += compare(calls[c], i) < 0;      /* cut short */
                }
        }
        CHECK_MSG(wrong == 0, "mutated calls: never a value jansson would not give (%u wrong)", wrong);
}

int main(void) {
        test_fixed();
        test_random();
        test_mutated();
        return test_result();
}
