/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "pci-address.h"
#include "util.h"

/* 1..max_digits hex digits; advances *p. */
static int parse_hex_field(const char **p, size_t max_digits, unsigned *ret) {
        unsigned v = 0;
        size_t n = 0;

        while (isxdigit((unsigned char) (*p)[n])) {
                if (++n > max_digits)
                        return -EINVAL;
                char c = (char) tolower((unsigned char) (*p)[n - 1]);
                v = v * 16 + (unsigned) (c <= '9' ? c - '0' : c - 'a' + 10);
        }
        if (n == 0)
                return -EINVAL;
        *p += n;
        *ret = v;
        return 0;
}

/* Already "dddd:bb:dd.f" in lower case with dd <= 1f and f <= 7, as every
 * name sysfs gives: start-up normalizes thousands of them. */
static bool pci_address_is_normal(const char *s) {
        for (size_t i = 0; i < 12; i++) {
                if (i == 4 || i == 7) {
                        if (s[i] != ':')
                                return false;
                } else if (i == 10) {
                        if (s[i] != '.')
                                return false;
                } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        }
        return s[12] == 0 && s[8] <= '1' && s[11] <= '7';
}

int pci_address_normalize(const char *s, char ret[static 16]) {
        unsigned domain = 0, bus, dev, fn;
        const char *p = s;
        size_t colons = 0;

        /* "dddd:bb:dd.f" is 12 characters; refuse anything longer early. */
        if (!s || strnlen(s, 13) > 12)
                return -EINVAL;
        if (pci_address_is_normal(s)) {
                memcpy(ret, s, 13);
                return 0;
        }
        for (const char *c = s; *c; c++)
                colons += *c == ':';
        if (colons != 1 && colons != 2)
                return -EINVAL;

        if (colons == 2) {
                if (parse_hex_field(&p, 4, &domain) < 0 || *p++ != ':')
                        return -EINVAL;
        }
        if (parse_hex_field(&p, 2, &bus) < 0 || *p++ != ':')
                return -EINVAL;
        if (parse_hex_field(&p, 2, &dev) < 0 || dev > 0x1f || *p++ != '.')
                return -EINVAL;
        if (parse_hex_field(&p, 1, &fn) < 0 || fn > 7 || *p != 0)
                return -EINVAL;

        /* By hand: this runs for every lookup, and snprintf() is most of its cost. */
        static const char hex[] = "0123456789abcdef";
        const unsigned digits[] = { domain >> 12, domain >> 8, domain >> 4, domain, bus >> 4, bus, dev >> 4, dev };
        char *o = ret;
        for (size_t i = 0; i < ELEMENTSOF(digits); i++) {
                if (i == 4 || i == 6)
                        *o++ = ':';
                *o++ = hex[digits[i] & 0xf];
        }
        *o++ = '.';
        *o++ = hex[fn & 0xf];
        *o = 0;
        return 0;
}
