/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * RLIMIT_MEMLOCK by policy. A rule's "memlock" names the least limit a
 * client gets on a successful Acquire; the broker (which holds
 * CAP_SYS_RESOURCE) raises the caller's soft and hard limit with prlimit(),
 * so a VMM started afterwards inherits it. The process is named by its
 * pidfd: the pid is read from the pidfd and checked again afterwards, so a
 * recycled pid never gets (or keeps) the raise.
 */

#define MEMLOCK_UNLIMITED UINT64_MAX    /* RLIM_INFINITY */

/* "1073741824", "512K", "64M", "16G", "1T" (binary units) or "unlimited".
 * -EINVAL if malformed, -ERANGE if it does not fit; 0 is rejected too (a
 * limit of nothing is not a grant). */
int memlock_parse(const char *s, uint64_t *ret);

/* "512 MiB", "1.5 GiB", "unlimited", "4096 B", for messages. */
const char *memlock_format(uint64_t bytes, char buf[static 32]);

/* The pid pidfd refers to, in our pid namespace (from /proc/self/fdinfo);
 * -ESRCH once it exited and was reaped. */
int memlock_pidfd_get_pid(int pidfd, pid_t *ret);

/* Raise soft and hard RLIMIT_MEMLOCK of the process behind pidfd to at
 * least want (never lowers either). *ret_soft: the soft limit it has now.
 * -ESRCH if the process is gone (a raise that raced with its exit is
 * undone), -EBADF without a pidfd, -EPERM without CAP_SYS_RESOURCE. */
int memlock_raise(int pidfd, uint64_t want, uint64_t *ret_soft);

/* How iommufd charges pinned pages (IOMMU_OPTION_RLIMIT_MODE, set on each
 * fresh iommufd): to the mapping process (as vfio type1 and mlock() do) or
 * to its user, summed over all its processes. */
typedef enum MemlockAccounting {
        MEMLOCK_ACCOUNTING_PROCESS,     /* default: RLIMIT_MODE=1 */
        MEMLOCK_ACCOUNTING_USER,        /* the kernel's default, RLIMIT_MODE=0 */
        _MEMLOCK_ACCOUNTING_MAX,
        _MEMLOCK_ACCOUNTING_INVALID = -EINVAL,
} MemlockAccounting;

const char *memlock_accounting_to_string(MemlockAccounting a);
MemlockAccounting memlock_accounting_from_string(const char *s);
