/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy parser, and the checks of a policy that parsed. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "policy.h"

static void check_all(const Policy *p) {
        gid_t groups[] = { 100, 36 };
        Principal who[] = {
                { .uid = 1000, .gid = 1000, .pid = 1, .pidfd = -EBADF, .groups = groups, .n_groups = 2,
                  .unit = (char *) "vm.service" },
                { .uid = 0, .gid = 0, .pidfd = -EBADF },
                { .uid = 65534, .gid = 65534, .pidfd = -EBADF },
        };
        char *members[] = { (char *) "0000:00:02.0", NULL };
        Device d = {
                .address = "0000:00:02.0", .vendor_id = 0x1b36, .device_id = 0x10, .class = 0x010802,
                .driver = (char *) "vfio-pci", .iommu_group = 1, .group_members = members,
        };

        for (size_t i = 0; i < ELEMENTSOF(who); i++)
                for (int mode = 0; mode < _ACQUIRE_MODE_MAX; mode++) {
                        PolicyDecision dec = {};
                        policy_check(p, &who[i], &d, (AcquireMode) mode, mode == 1, &dec);
                }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static FILE *errors;    /* error reports are formatted, then dropped */
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *text = NULL;

        if (size > 256 * 1024)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        if (!errors)
                errors = fopen("/dev/null", "we");
        if (policy_load_string(text, "fuzz.json", errors, &p) >= 0) {
                (void) policy_n_rules(p);
                (void) policy_memlock_accounting(p);
                check_all(p);
        }
        return 0;
}
