/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>

#include "run-memlock.h"
#include "test.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static int ram_of(uint64_t *ret, ...) {
        char *argv[16];
        size_t n = 0;
        va_list ap;

        va_start(ap, ret);
        while (n + 1 < 16 && (argv[n] = va_arg(ap, char *)))
                n++;
        va_end(ap);
        argv[n] = NULL;
        *ret = 0;
        return run_guest_ram_bytes(argv, ret);
}

static void test_guest_ram(void) {
        uint64_t v;

        CHECK_INT(ram_of(&v, "qemu-system-x86_64", "-m", "4G", NULL), 0);
        CHECK_INT(v, 4 * GiB);
        CHECK_INT(ram_of(&v, "qemu", "-m", "2048", NULL), 0);
        CHECK_INT(v, 2048 * MiB);
        CHECK_INT(ram_of(&v, "qemu", "-m", "size=1g,slots=2,maxmem=8G", NULL), 0);
        CHECK_INT(v, 1 * GiB);
        CHECK_INT(ram_of(&v, "qemu", "-m", "512M,maxmem=2G", NULL), 0);
        CHECK_INT(v, 512 * MiB);
        CHECK_INT(ram_of(&v, "qemu", "--m=3G", NULL), 0);
        CHECK_INT(v, 3 * GiB);
        /* The last -m wins, as in QEMU. */
        CHECK_INT(ram_of(&v, "qemu", "-m", "1G", "-smp", "2", "-m", "6G", NULL), 0);
        CHECK_INT(v, 6 * GiB);
        CHECK_INT(ram_of(&v, "cloud-hypervisor", "--memory", "size=2G", NULL), 0);
        CHECK_INT(v, 2 * GiB);
        CHECK_INT(ram_of(&v, "qemu", "-machine", "q35", NULL), -ENOENT);
        CHECK_INT(ram_of(&v, "qemu", "-m", NULL), -ENOENT);
        CHECK_INT(ram_of(&v, "qemu", "-m", "lots", NULL), -EINVAL);
        CHECK_INT(ram_of(&v, "qemu", "-m", "4X", NULL), -EINVAL);
        CHECK_INT(ram_of(&v, "qemu", "-m", "99999999999999999999G", NULL), -EINVAL);
        /* Not -m: -machine, -mem-path. */
        CHECK_INT(ram_of(&v, "qemu", "-mem-path", "/dev/hugepages", NULL), -ENOENT);
}

static void test_too_small(void) {
        CHECK(run_memlock_too_small(8 * MiB, 4 * GiB));         /* a user's default limit */
        CHECK(run_memlock_too_small(2 * GiB, 8 * GiB));
        CHECK(!run_memlock_too_small(4 * GiB, 4 * GiB));
        CHECK(!run_memlock_too_small(5 * GiB, 4 * GiB));
        CHECK(!run_memlock_too_small(3 * GiB + 512 * MiB, 4 * GiB));   /* close: not "clearly" */
        CHECK(!run_memlock_too_small(UINT64_MAX, 64 * GiB));
}

int main(void) {
        test_guest_ram();
        test_too_small();
        return test_result();
}
