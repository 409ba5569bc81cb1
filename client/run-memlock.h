/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * `iommufdctl run` warns before starting a VMM whose guest RAM cannot be
 * pinned under the memlock limit it will inherit: every page a VMM maps for
 * DMA counts against RLIMIT_MEMLOCK, and QEMU then fails with
 * "vfio_container_dma_map ... = -12 (Cannot allocate memory)".
 */

#include <stdbool.h>
#include <stdint.h>

/* Guest RAM from a QEMU command line (-m 4G, -m 4096, -m size=4G,maxmem=8G,
 * --m=...) or a cloud-hypervisor one (--memory size=4G). The last option
 * wins, as in QEMU. -ENOENT if there is none, -EINVAL if unparseable. */
int run_guest_ram_bytes(char *const *argv, uint64_t *ret);

/* Whether a VMM with this much guest RAM will clearly not fit the limit
 * (UINT64_MAX: unlimited). Half the RAM or less leaves no doubt; an exact
 * fit is not flagged, as QEMU may map less than all of it. */
bool run_memlock_too_small(uint64_t limit, uint64_t guest_ram);

/* Print the warning to stderr if the current RLIMIT_MEMLOCK is too small
 * for argv's guest RAM and the process lacks CAP_IPC_LOCK. */
void run_warn_memlock(char *const *argv);
