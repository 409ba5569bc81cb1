#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write a fake /sys with N PCI devices, each on vfio-pci in its own IOMMU group.

    make-fake-sysfs.py N ROOT

The layout is the kernel's, as far as the broker and libudev look: device
directories under ROOT/devices/pci0000:00 with their attributes, uevent and
subsystem/driver/iommu_group/iommu links, ROOT/bus/pci/{devices,drivers},
ROOT/kernel/iommu_groups, one Intel IOMMU class device, and a vfio cdev per
device. The bench bind-mounts ROOT over /sys in a private mount namespace, so
the broker reads it with no preload library in the way (unlike umockdev).
"""
import os
import sys

VFIO_MAJOR = 511


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def device(root, i):
    address = f"0000:{i // 32 + 1:02x}:{i % 32:02x}.0"
    rel = f"devices/pci0000:00/{address}"
    d = os.path.join(root, rel)
    os.makedirs(os.path.join(d, "vfio-dev", f"vfio{i}"))
    attrs = {"vendor": "0x1b36", "device": "0x0010", "class": "0x010802",
             "subsystem_vendor": "0x1af4", "subsystem_device": "0x1100",
             "driver_override": "(null)", "enable": "1",
             "uevent": f"DRIVER=vfio-pci\nPCI_CLASS=10802\nPCI_ID=1B36:0010\n"
                       f"PCI_SUBSYS_ID=1AF4:1100\nPCI_SLOT_NAME={address}\n"}
    for name, value in attrs.items():
        write(os.path.join(d, name), value + ("" if value.endswith("\n") else "\n"))
    os.symlink("../../../bus/pci", os.path.join(d, "subsystem"))
    os.symlink("../../../bus/pci/drivers/vfio-pci", os.path.join(d, "driver"))
    os.symlink(f"../../../kernel/iommu_groups/{i}", os.path.join(d, "iommu_group"))
    os.symlink("../../virtual/iommu/dmar0", os.path.join(d, "iommu"))
    cdev = os.path.join(d, "vfio-dev", f"vfio{i}")
    write(os.path.join(cdev, "dev"), f"{VFIO_MAJOR}:{i}\n")
    write(os.path.join(cdev, "uevent"), f"MAJOR={VFIO_MAJOR}\nMINOR={i}\nDEVNAME=vfio/devices/vfio{i}\n")
    # The broker checks that the cdev's dev_t leads back to the device.
    os.symlink(f"../../{rel}/vfio-dev/vfio{i}", os.path.join(root, "dev/char", f"{VFIO_MAJOR}:{i}"))
    os.symlink(f"../../{rel}/vfio-dev/vfio{i}", os.path.join(root, "class/vfio-dev", f"vfio{i}"))
    os.symlink(f"../../../{rel}", os.path.join(root, "bus/pci/devices", address))
    os.symlink(f"../../../../{rel}", os.path.join(root, "bus/pci/drivers/vfio-pci", address))
    g = os.path.join(root, "kernel/iommu_groups", str(i))
    os.makedirs(os.path.join(g, "devices"))
    os.symlink(f"../../../../{rel}", os.path.join(g, "devices", address))
    write(os.path.join(g, "type"), "DMA\n")


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: make-fake-sysfs.py N ROOT")
    n, root = int(argv[0]), argv[1]
    for p in ("bus/pci/devices", "bus/pci/drivers/vfio-pci", "kernel/iommu_groups",
              "devices/virtual/iommu/dmar0/intel-iommu", "class/iommu", "class/vfio-dev", "dev/char"):
        os.makedirs(os.path.join(root, p), exist_ok=True)
    os.makedirs(os.path.join(root, "devices/pci0000:00"), exist_ok=True)
    write(os.path.join(root, "devices/pci0000:00/uevent"), "")
    for name in ("bind", "unbind", "new_id", "remove_id"):
        write(os.path.join(root, "bus/pci/drivers/vfio-pci", name), "")
    for name in ("drivers_probe", "rescan"):
        write(os.path.join(root, "bus/pci", name), "")
    iommu = os.path.join(root, "devices/virtual/iommu/dmar0")
    write(os.path.join(iommu, "intel-iommu/version"), "1:0\n")
    write(os.path.join(iommu, "intel-iommu/cap"), "d2008c40660462\n")
    write(os.path.join(iommu, "intel-iommu/ecap"), "f050da\n")
    os.symlink("../../devices/virtual/iommu/dmar0", os.path.join(root, "class/iommu/dmar0"))
    for i in range(n):
        device(root, i)


if __name__ == "__main__":
    main(sys.argv[1:])
