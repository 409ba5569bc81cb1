/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel smoke test, run as root in the guest before the broker cases: does
 * by hand what the daemon does (open /dev/iommu, RLIMIT_MODE, rebind to
 * vfio-pci, open the cdev, bind, IOAS alloc, attach) and the edu DMA. When
 * this fails the VM or kernel is wrong, not the broker. Leaves every device on
 * the driver it found it on.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "vmtest.h"

/* An unprivileged process must not be able to do any of this itself. */
static int client_cannot_open_iommu(void *userdata) {
        int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        CHECK(fd < 0 && errno == EACCES, "uid %d opened /dev/iommu (fd %d, %m)", (int) getuid(), fd);
        return 0;
}

static void smoke_e1000e(int iommufd) {
        char bdf[16], driver[64];
        CHECK_OK(pci_find(PCI_VENDOR_INTEL, PCI_DEVICE_E1000E, false, bdf), "find the e1000e");
        CHECK_OK(pci_driver(bdf, driver, sizeof driver), "read driver");
        CHECK(streq(driver, "e1000e"), "%s is on '%s', expected e1000e", bdf, driver);

        CHECK_OK(pci_bind_vfio(bdf), "rebind e1000e to vfio-pci");
        struct stat st;
        CHECK(stat("/dev/vfio/devices", &st) == 0 && S_ISDIR(st.st_mode), "no /dev/vfio/devices: %m");
        _cleanup_close_ int devfd = vfio_cdev_open(bdf);
        CHECK_OK(devfd, "open the vfio cdev");

        uint32_t dev_id, ioas_id, hwpt_id, ioas2, hwpt2;
        CHECK_OK(vfio_bind(devfd, iommufd, &dev_id), "VFIO_DEVICE_BIND_IOMMUFD");
        CHECK_OK(ioas_alloc(iommufd, &ioas_id), "IOMMU_IOAS_ALLOC");
        CHECK_OK(vfio_attach(devfd, ioas_id, &hwpt_id), "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        CHECK_OK(map_own_memory(iommufd, ioas_id, 0x100000), "IOMMU_IOAS_MAP 1 MiB");

        struct uapi_vfio_device_info info;
        CHECK_OK(vfio_device_info(devfd, &info), "VFIO_DEVICE_GET_INFO");
        CHECK(info.flags & UAPI_VFIO_DEVICE_FLAGS_PCI, "not a PCI device: flags %#x", info.flags);
        CHECK(info.num_regions >= UAPI_VFIO_PCI_NUM_REGIONS, "%u regions", info.num_regions);

        uint16_t vendor, device;
        CHECK_OK(vfio_pci_ids(devfd, &vendor, &device), "read config space");
        CHECK(vendor == PCI_VENDOR_INTEL && device == PCI_DEVICE_E1000E, "config ids %04x:%04x", vendor, device);

        uint32_t again;
        int r = vfio_bind(devfd, iommufd, &again);
        CHECK(r == -EINVAL, "second bind: expected EINVAL, got %d", r);

        CHECK_OK(ioas_alloc(iommufd, &ioas2), "second IOMMU_IOAS_ALLOC");
        CHECK_OK(vfio_attach(devfd, ioas2, &hwpt2), "replace attachment");
        CHECK(hwpt2 != hwpt_id, "replacement reused hwpt %u", hwpt_id);

        uint32_t type;
        uint64_t caps;
        CHECK_OK(iommu_hw_info(iommufd, dev_id, &type, &caps), "IOMMU_GET_HW_INFO");
        CHECK(type == UAPI_IOMMU_HW_INFO_TYPE_INTEL_VTD, "IOMMU type %u, expected Intel VT-d", type);
        vm_log("e1000e %s: dev_id %u ioas %u hwpt %u -> %u, vtd caps %#llx", bdf, dev_id, ioas_id, hwpt_id,
               hwpt2, (unsigned long long) caps);

        devfd = safe_close(devfd);
        CHECK_OK(pci_bind_driver(bdf, "e1000e"), "give the e1000e back to e1000e");
}

static void smoke_edu(int iommufd) {
        char bdf[16];
        CHECK_OK(pci_find(PCI_VENDOR_QEMU, PCI_DEVICE_EDU, false, bdf), "find the edu on the root bus");
        CHECK_OK(pci_bind_vfio(bdf), "bind edu to vfio-pci");
        _cleanup_close_ int devfd = vfio_cdev_open(bdf);
        CHECK_OK(devfd, "open the edu cdev");

        uint32_t dev_id, ioas_id;
        CHECK_OK(vfio_bind(devfd, iommufd, &dev_id), "bind edu");
        CHECK_OK(ioas_alloc(iommufd, &ioas_id), "IOMMU_IOAS_ALLOC");
        CHECK_OK(vfio_attach(devfd, ioas_id, NULL), "attach edu");
        edu_dma_roundtrip(devfd, iommufd, ioas_id);

        devfd = safe_close(devfd);
        CHECK_OK(pci_bind_driver(bdf, NULL), "unbind edu");
}

static void smoke_group(void) {
        char edu[16], e1000[16], driver[64];
        CHECK_OK(pci_find(PCI_VENDOR_QEMU, PCI_DEVICE_EDU, true, edu), "find the edu behind the bridge");
        CHECK_OK(pci_find(PCI_VENDOR_INTEL, PCI_DEVICE_E1000, true, e1000), "find the e1000 behind the bridge");
        CHECK(pci_iommu_group(edu) == pci_iommu_group(e1000), "%s (group %d) and %s (group %d) do not share a group",
              edu, pci_iommu_group(edu), e1000, pci_iommu_group(e1000));
        CHECK_OK(pci_driver(e1000, driver, sizeof driver), "read driver");
        CHECK(streq(driver, "e1000"), "%s is on '%s', expected e1000", e1000, driver);
        vm_log("group %d: edu %s, e1000 %s", pci_iommu_group(edu), edu, e1000);
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        struct stat st;
        CHECK(stat("/dev/iommu", &st) == 0 && S_ISCHR(st.st_mode), "no /dev/iommu: %m");

        _cleanup_close_ int iommufd = iommufd_open_rlimit();
        CHECK_OK(iommufd, "open /dev/iommu with RLIMIT_MODE");
        CHECK_OK(client_run(client_cannot_open_iommu, NULL, "unprivileged open of /dev/iommu"), "client");

        smoke_group();
        smoke_e1000e(iommufd);
        smoke_edu(iommufd);
        vm_log("smoke: ok");
        return 0;
}
