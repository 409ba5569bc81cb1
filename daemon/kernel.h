/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "device.h"
#include "memlock.h"

/*
 * Everything the core asks of iommufd and vfio. Every call returns 0 (or an
 * fd) or a negative errno. The real implementation lives in kernel.c; the
 * fast tier links kernel-fake.c into a test-only daemon binary instead, so
 * the production binary contains no test double.
 */
typedef struct KernelOps {
        /* Why iommufd cannot be used on this host (NULL if it can). Static string. */
        const char *(*unsupported_reason)(void);

        /* Open /dev/iommu and set IOMMU_OPTION_RLIMIT_MODE to per-process
         * accounting unless `accounting` says per user (the kernel's default). */
        int (*open_iommufd)(MemlockAccounting accounting);

        /* Open /dev/vfio/devices/<cdev> O_RDWR|O_CLOEXEC|O_NOCTTY, falling back
         * to /dev/char/MAJ:MIN, and verify with fstat that it is the char
         * device d->vfio_devnum and through /sys/dev/char/MAJ:MIN that this
         * char device belongs to d->syspath (-ENXIO otherwise: a minor reused
         * after a rebind race). Opening succeeds even while the legacy group
         * is open elsewhere: the kernel refuses that only at bind. */
        int (*open_device)(const Device *d);

        /* VFIO_DEVICE_BIND_IOMMUFD. -EINVAL if already bound elsewhere,
         * -EBUSY if the device's legacy group is open (vfio_device_block_group). */
        int (*bind)(int device_fd, int iommufd, uint32_t *ret_dev_id);

        /* IOMMU_IOAS_ALLOC. */
        int (*ioas_alloc)(int iommufd, uint32_t *ret_ioas_id);

        /* VFIO_DEVICE_ATTACH_IOMMUFD_PT; may replace an existing attachment. */
        int (*attach)(int device_fd, uint32_t pt_id, uint32_t *ret_hwpt_id);

        /* VFIO_DEVICE_DETACH_IOMMUFD_PT. */
        int (*detach)(int device_fd);

        /* IOMMU_GET_HW_INFO for a bound device. */
        int (*hw_info)(int iommufd, uint32_t dev_id, IommuHwInfo *ret);

        /* Route vfio-pci's "please release this device" request (VFIO_PCI_REQ_IRQ_INDEX)
         * to eventfd, so the broker learns of hot unplug while a client holds the device. */
        int (*set_request_eventfd)(int device_fd, int eventfd);

        /* Whether an open file, as /proc/<pid>/fd shows it (its stat and link
         * target), is the device cdev of address/devnum. Called in a worker. */
        bool (*file_is_device)(const struct stat *st, const char *link_target, const char *address, dev_t devnum);
} KernelOps;

/* main.c picks one at build time: kernel_ops_real in iommufd-broker,
 * kernel_ops_fake in the fast tier's iommufd-broker-fake. */
extern const KernelOps kernel_ops_real;
extern const KernelOps kernel_ops_fake;

/* Whether /sys/dev/char/MAJ:MIN is <syspath>/vfio-dev/vfioN: an opened cdev
 * is the approved device, not one that got the minor after a rebind race.
 * Both kernel ops check it; the caller refuses the fd otherwise (-ENXIO). */
bool kernel_cdev_belongs_to(dev_t devnum, const char *syspath);
/* Whether proc_devices (the text of /proc/devices) lists a character device
 * major called name. */
bool kernel_char_major_listed(const char *proc_devices, const char *name);
