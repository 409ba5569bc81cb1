/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "log.h"
#include "memlock.h"
#include "util.h"

static const char *const accounting_names[_MEMLOCK_ACCOUNTING_MAX] = {
        [MEMLOCK_ACCOUNTING_PROCESS] = "process",
        [MEMLOCK_ACCOUNTING_USER] = "user",
};

const char *memlock_accounting_to_string(MemlockAccounting a) {
        return a >= 0 && a < _MEMLOCK_ACCOUNTING_MAX ? accounting_names[a] : NULL;
}

MemlockAccounting memlock_accounting_from_string(const char *s) {
        for (int a = 0; s && a < _MEMLOCK_ACCOUNTING_MAX; a++)
                if (streq(accounting_names[a], s))
                        return (MemlockAccounting) a;
        return _MEMLOCK_ACCOUNTING_INVALID;
}

static int suffix_shift(const char *suffix, unsigned *ret) {
        static const char units[] = "KMGT";
        const char *u;

        if (!*suffix) {
                *ret = 0;
                return 0;
        }
        if (suffix[1] || !(u = strchr(units, *suffix)))
                return -EINVAL;
        *ret = 10 * (unsigned) (u - units + 1);
        return 0;
}

int memlock_parse(const char *s, uint64_t *ret) {
        unsigned long long v;
        unsigned shift;
        char *end;

        if (!s)
                return -EINVAL;
        if (streq(s, "unlimited") || streq(s, "infinity")) {
                *ret = MEMLOCK_UNLIMITED;
                return 0;
        }
        /* strtoull would take "-1", " 1" and "+1"; a limit is plain digits. */
        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (end == s || suffix_shift(end, &shift) < 0)
                return -EINVAL;
        if (v == 0)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        v <<= shift;
        if (v == MEMLOCK_UNLIMITED)
                return -ERANGE;
        *ret = v;
        return 0;
}

const char *memlock_format(uint64_t bytes, char buf[static 32]) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        unsigned i = 0;
        uint64_t whole = bytes;

        if (bytes == MEMLOCK_UNLIMITED) {
                snprintf(buf, 32, "unlimited");
                return buf;
        }
        while (whole >= 1024 && i + 1 < ELEMENTSOF(units)) {
                whole /= 1024;
                i++;
        }
        if (i > 0 && bytes % (1ULL << (10 * i)) != 0)
                snprintf(buf, 32, "%.1f %s", (double) bytes / (double) (1ULL << (10 * i)), units[i]);
        else
                snprintf(buf, 32, "%" PRIu64 " %s", whole, units[i]);
        return buf;
}

int memlock_pidfd_get_pid(int pidfd, pid_t *ret) {
        char path[64], line[128];
        FILE *f;
        int pid = 0, r = -ENOENT;

        if (pidfd < 0)
                return -EBADF;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Pid: %d", &pid) == 1) {
                        r = 0;
                        break;
                }
        fclose(f);
        if (r < 0)
                return -ENOTTY;         /* not a pidfd */
        if (pid <= 0)
                return -ESRCH;          /* -1: exited; 0: in another pid namespace */
        *ret = pid;
        return 0;
}

/* -ESRCH once the process behind pidfd is reaped (a zombie still holds its pid). */
static int pidfd_check_alive(int pidfd) {
        if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
                return -errno;
        return 0;
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

int memlock_raise(int pidfd, uint64_t want, uint64_t *ret_soft) {
        struct rlimit old, new;
        pid_t pid;
        int r;

        r = memlock_pidfd_get_pid(pidfd, &pid);
        if (r < 0)
                return r;
        if (prlimit(pid, RLIMIT_MEMLOCK, NULL, &old) < 0)
                return -errno;

        new = (struct rlimit) {
                .rlim_cur = max_u64(old.rlim_cur, want),
                .rlim_max = max_u64(old.rlim_max, want),
        };
        if ((new.rlim_cur != old.rlim_cur || new.rlim_max != old.rlim_max) &&
            prlimit(pid, RLIMIT_MEMLOCK, &new, NULL) < 0)
                return -errno;

        /* The pid stays the same process for as long as the pidfd can signal
         * it: if it is gone now, the pid may name someone else. Put back what
         * that pid had, which is what we read from it. */
        r = pidfd_check_alive(pidfd);
        if (r == -ESRCH) {
                (void) prlimit(pid, RLIMIT_MEMLOCK, &old, NULL);
                return r;
        }
        *ret_soft = new.rlim_cur;
        return 0;
}
