/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#include "pci-address.h"
#include "test.h"
#include "util.h"

static void check_normalize(const char *in, const char *expect) {
        char out[16] = "unchanged";
        int r = pci_address_normalize(in, out);
        bool ok = expect ? r == 0 && streq(out, expect) : r == -EINVAL;

        printf("%s: pci_address_normalize(\"%s\") = %d \"%s\", want %s\n",
               ok ? "ok" : "FAIL", in, r, r == 0 ? out : "", expect ?: "-EINVAL");
        if (!ok)
                test_failures++;
}

static void test_normalize(void) {
        check_normalize("0000:03:00.0", "0000:03:00.0");
        check_normalize("03:00.0", "0000:03:00.0");
        check_normalize("3:00.0", "0000:03:00.0");
        check_normalize("3:0.1", "0000:03:00.1");
        check_normalize("0000:AB:1F.7", "0000:ab:1f.7");
        check_normalize("1:02:03.4", "0001:02:03.4");
        check_normalize("ffff:ff:1f.7", "ffff:ff:1f.7");
        check_normalize("abcd:ef:10.6", "abcd:ef:10.6");
        check_normalize("0000:03:1g.0", NULL);
        check_normalize("0000:03:f0.0", NULL);
        check_normalize("", NULL);
        check_normalize("0000:03:00", NULL);
        check_normalize("0000:03:00.8", NULL);
        check_normalize("0000:03:20.0", NULL);
        check_normalize("0000:100:00.0", NULL);
        check_normalize("10000:03:00.0", NULL);
        check_normalize("00000:03:00.0", NULL);
        check_normalize("0000:03:00.0 ", NULL);
        check_normalize(" 03:00.0", NULL);
        check_normalize("0000:03:00.0x", NULL);
        check_normalize("0000:0g:00.0", NULL);
        check_normalize("0000::00.0", NULL);
        check_normalize("0:0:0:00.0", NULL);
        check_normalize("03.00.0", NULL);
        check_normalize("03:00.-1", NULL);
        check_normalize("+3:00.0", NULL);
        check_normalize("../../etc", NULL);
        check_normalize("0000:03:00.00", NULL);
}

int main(void) {
        test_normalize();
        return test_result();
}
