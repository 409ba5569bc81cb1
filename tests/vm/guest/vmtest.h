/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Helpers for the VM tier's guest programs: checks that end the test,
 * sysfs driver moves, raw iommufd/vfio calls, the edu DMA proof, and
 * running code as an unprivileged client.
 *
 * Functions return 0 (or an fd) or a negative errno, like the daemon.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uapi.h"
#include "util.h"

#define CLIENT_UID 65534
#define CLIENT_GID 65534

#define PCI_VENDOR_INTEL 0x8086
#define PCI_DEVICE_E1000E 0x10d3        /* QEMU's e1000e (82574L) */
#define PCI_DEVICE_E1000 0x100e         /* QEMU's e1000 (82540EM) */
#define PCI_VENDOR_QEMU 0x1234
#define PCI_DEVICE_EDU 0x11e8

/* End the test (the whole process) with a message naming the place. */
_Noreturn void vm_fail(const char *file, int line, const char *fmt, ...) _printf_(3, 4);

#define CHECK(cond, ...)                                                \
        do {                                                            \
                if (!(cond))                                            \
                        vm_fail(__FILE__, __LINE__, __VA_ARGS__);       \
        } while (0)

/* r is 0/positive or a negative errno. */
#define CHECK_OK(r, what)                                                               \
        do {                                                                            \
                int _r_ = (r);                                                          \
                if (_r_ < 0)                                                            \
                        vm_fail(__FILE__, __LINE__, "%s: %s", (what), strerror(-_r_));  \
        } while (0)

void vm_log(const char *fmt, ...) _printf_(1, 2);
uint64_t now_ms(void);

/* --- sysfs --- */
int read_file_str(const char *path, char *buf, size_t n);   /* trailing newline stripped */
int write_file_str(const char *path, const char *s);

/* Find a PCI device by ids; shared: whether its IOMMU group has other
 * (non-bridge) members. -ENODEV if none. */
int pci_find(uint16_t vendor, uint16_t device, bool shared, char ret[static 16]);
/* The bound driver's name, "" if none. */
int pci_driver(const char *bdf, char *buf, size_t n);
int pci_iommu_group(const char *bdf);
/* Poll until the driver is `driver` ("" for none). -ETIMEDOUT otherwise. */
int pci_wait_driver(const char *bdf, const char *driver, unsigned timeout_ms);
/* Move a device to vfio-pci (driver_override), or to `driver` (NULL: none). */
int pci_bind_vfio(const char *bdf);
int pci_bind_driver(const char *bdf, const char *driver);
int pci_unbind(const char *bdf);
/* "vfio3" for a device on vfio-pci. */
int pci_vfio_cdev(const char *bdf, char *buf, size_t n);

/* --- iommufd / vfio, raw --- */
int iommufd_open_rlimit(void);                  /* open /dev/iommu + RLIMIT_MODE=1 (root) */
int vfio_cdev_open(const char *bdf);
int vfio_bind(int devfd, int iommufd, uint32_t *ret_dev_id);
int ioas_alloc(int iommufd, uint32_t *ret_ioas_id);
int ioas_map(int iommufd, uint32_t ioas_id, void *va, size_t len, uint64_t iova);
int vfio_attach(int devfd, uint32_t pt_id, uint32_t *ret_hwpt_id);
int iommu_hw_info(int iommufd, uint32_t dev_id, uint32_t *ret_type, uint64_t *ret_caps);
int vfio_device_info(int devfd, struct uapi_vfio_device_info *ret);
int vfio_region(int devfd, uint32_t index, struct uapi_vfio_region_info *ret);
int pci_config_read(int devfd, unsigned off, void *buf, size_t n);
int pci_config_write(int devfd, unsigned off, const void *buf, size_t n);
/* Vendor and device id through the config-space region. */
int vfio_pci_ids(int devfd, uint16_t *ret_vendor, uint16_t *ret_device);

/* Map 1 MiB of the caller's memory into ioas at iova (the attached-mode proof). */
int map_own_memory(int iommufd, uint32_t ioas_id, uint64_t iova);

/*
 * The DMA proof on an edu device whose fd is attached to ioas: map two
 * buffers, let the device copy the first into its own memory and back into
 * the second, compare. Returns 0, or fails the test with a reason.
 */
void edu_dma_roundtrip(int devfd, int iommufd, uint32_t ioas_id);

/* --- processes --- */

/* In a forked child: drop to CLIENT_UID/GID with no groups and no
 * capabilities (verified in /proc/self/status), run fn, exit with 0 if it
 * returned 0. The parent gets the child's pid. */
pid_t client_spawn(int (*fn)(void *), void *userdata);
/* Wait for a child; 0 if it exited with 0, else -EPROTO after logging why. */
int client_wait(pid_t pid, const char *what);
/* Both at once. */
int client_run(int (*fn)(void *), void *userdata, const char *what);

/* Open fds of a process, -errno on failure. */
int count_fds(pid_t pid);
