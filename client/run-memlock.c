/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "run-memlock.h"
#include "util.h"

#define CAP_IPC_LOCK_BIT 14

/* QEMU's size syntax: a number with an optional suffix (B, K, M, G, T, P,
 * E, any case) and, for -m, MiB when there is none. */
static int parse_size(const char *s, size_t len, uint64_t default_unit, uint64_t *ret) {
        static const char units[] = "BKMGTPE";
        unsigned long long v;
        const char *u;
        char buf[32], *end;
        uint64_t mult = default_unit;

        if (len == 0 || len >= sizeof(buf) || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        memcpy(buf, s, len);
        buf[len] = 0;
        errno = 0;
        v = strtoull(buf, &end, 10);
        if (errno)
                return -EINVAL;
        if (*end) {
                char c = (char) (*end >= 'a' && *end <= 'z' ? *end - 'a' + 'A' : *end);

                if (end[1] || !(u = strchr(units, c)) || !*u)
                        return -EINVAL;
                mult = 1ULL << (10 * (u - units));
        }
        if (v > UINT64_MAX / mult)
                return -EINVAL;
        *ret = v * mult;
        return 0;
}

/* "4G", "size=4G", "size=4G,slots=2,maxmem=8G", "4G,maxmem=8G". */
static int parse_memory_option(const char *value, uint64_t default_unit, uint64_t *ret) {
        const char *p = value;

        while (*p) {
                size_t len = strcspn(p, ",");

                if (strncmp(p, "size=", 5) == 0)
                        return parse_size(p + 5, len - 5, default_unit, ret);
                if (p == value && !memchr(p, '=', len))
                        return parse_size(p, len, default_unit, ret);
                p += len;
                if (*p == ',')
                        p++;
        }
        return -EINVAL;
}

/* The value of option `name` at argv[i] ("-m 4G", "-m=4G", "--m 4G"), or NULL. */
static const char *option_value(char *const *argv, size_t *i, const char *name) {
        const char *a = argv[*i];
        size_t n = strlen(name);

        if (a[0] == '-' && a[1] == '-' && name[1] != '-')
                a++;    /* QEMU takes --m as -m */
        if (strncmp(a, name, n) != 0)
                return NULL;
        if (a[n] == '=')
                return a + n + 1;
        if (a[n] || !argv[*i + 1])
                return NULL;
        return argv[++*i];
}

int run_guest_ram_bytes(char *const *argv, uint64_t *ret) {
        int r = -ENOENT;

        for (size_t i = 0; argv && argv[i]; i++) {
                const char *v;
                uint64_t bytes;

                if ((v = option_value(argv, &i, "-m")))
                        r = parse_memory_option(v, 1ULL << 20, &bytes);
                else if ((v = option_value(argv, &i, "--memory")))
                        r = parse_memory_option(v, 1, &bytes);  /* cloud-hypervisor: bytes */
                else
                        continue;
                if (r < 0)
                        return r;
                *ret = bytes;
        }
        return r;
}

bool run_memlock_too_small(uint64_t limit, uint64_t guest_ram) {
        if (limit == UINT64_MAX || limit == RLIM_INFINITY)
                return false;
        return limit < guest_ram / 2 || (limit < guest_ram && guest_ram - limit > (UINT64_C(1) << 30));
}

/* Whether CAP_IPC_LOCK is effective: iommufd then charges nothing. */
static bool have_ipc_lock(void) {
        unsigned long long caps = 0;
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");
        bool found = false;

        if (!f)
                return false;
        while (!found && fgets(line, sizeof(line), f))
                found = sscanf(line, "CapEff: %llx", &caps) == 1;
        fclose(f);
        return found && (caps & (1ULL << CAP_IPC_LOCK_BIT));
}

static void format_size(uint64_t v, char *buf, size_t size) {
        if (v >= (1ULL << 30) && v % (1ULL << 30) == 0)
                snprintf(buf, size, "%" PRIu64 " GiB", v >> 30);
        else if (v >= (1ULL << 20))
                snprintf(buf, size, "%" PRIu64 " MiB", v >> 20);
        else
                snprintf(buf, size, "%" PRIu64 " KiB", v >> 10);
}

void run_warn_memlock(char *const *argv) {
        struct rlimit rl;
        uint64_t ram;
        char have[32], need[32];

        if (run_guest_ram_bytes(argv, &ram) < 0 || getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
                return;
        if (!run_memlock_too_small(rl.rlim_cur, ram) || have_ipc_lock())
                return;
        format_size(rl.rlim_cur, have, sizeof(have));
        format_size(ram, need, sizeof(need));
        fprintf(stderr,
                "iommufdctl: warning: the memlock limit (RLIMIT_MEMLOCK) is %s, but the VMM's guest has %s "
                "of RAM, all of which it pins for DMA: expect \"Cannot allocate memory\" when it maps it. "
                "Ask the administrator for \"memlock\" in the broker's policy rule, or raise the limit "
                "(LimitMEMLOCK=, prlimit --memlock, limits.conf).\n", have, need);
}
