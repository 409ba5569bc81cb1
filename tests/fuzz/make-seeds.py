#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writes the D-Bus and sysfs seeds of tests/fuzz/corpus (run it there).

# D-Bus: programs for fuzz-dbus.c's step() (opcode % 12, then its operands).
def s(txt): b = txt.encode(); return bytes([0, len(b)]) + b
def u(v): return bytes([2]) + v.to_bytes(4, "big")
def b_(v): return bytes([3, v])
def arr(i): return bytes([4, i])          # container_types index
close = bytes([5])
def ent(sv): return bytes([6, 1 if sv else 0])
def var(i): return bytes([7, i])          # variant_types index
fd = bytes([8])
acquire = (arr(0) + s("0000:00:02.0") + s("0000:00:03.0") + close + arr(1) + ent(True) + s("mode") + var(0) +
           s("attached") + close + close + ent(True) + s("managed") + var(1) + b_(1) + close + close + close)
creds = (arr(1) + ent(True) + s("UnixUserID") + var(2) + u(1000) + close + close + ent(True) + s("ProcessID") +
         var(2) + u(1) + close + close + ent(True) + s("UnixGroupIDs") + var(3) + arr(2) + u(100) + u(36) + close +
         close + close + ent(True) + s("ProcessFD") + var(4) + fd + close + close + close)
bad = (arr(0) + b"".join(s("x%d" % i) for i in range(70)) + close + arr(1) + ent(True) + s("mode") + var(1) +
       b_(1) + close + close + close)
open("dbus/acquire", "wb").write(acquire)
open("dbus/release", "wb").write(arr(0) + s("0000:00:02.0") + close)
open("dbus/credentials", "wb").write(creds)
open("dbus/bad-args", "wb").write(bad)

# sysfs records: kind, len, bytes
def rec(k, data): data = data.encode() if isinstance(data, str) else data; return bytes([k, len(data)]) + data
VENDOR, DEVICE, CLASS, SV, SD, DRIVER, GROUP, GNAME, GMEMBER, VFIO, IOMMU, IREG, PHYSFN = range(13)
base = rec(VENDOR, "0x1b36\n") + rec(DEVICE, "0x0010\n") + rec(CLASS, "0x010802\n") + rec(SV, "0x1af4\n") + rec(SD, "0x1100\n")
open("sysfs/vfio", "wb").write(base + rec(DRIVER, "vfio-pci") + rec(GROUP, "5") + rec(GMEMBER, "0000:00:02.1") +
        rec(VFIO, "241:0\n") + rec(IOMMU, "dmar0") + rec(IREG, b"\x01" + b"f0050aa\n") + rec(IREG, b"\x00" + b"d2008c40660462\n"))
open("sysfs/noiommu", "wb").write(base + rec(DRIVER, "vfio-pci") + rec(GROUP, "noiommu-0") + rec(GNAME, "vfio-noiommu\n"))
open("sysfs/host", "wb").write(base + rec(DRIVER, "e1000e") + rec(GROUP, "3") + rec(IOMMU, "ivhd0") + rec(IREG, b"\x01" + b"0\n") + rec(PHYSFN, "0000:00:01.0"))
open("sysfs/bridge", "wb").write(rec(VENDOR, "0x8086") + rec(DEVICE, "0x7c19") + rec(CLASS, "0x060400") + rec(DRIVER, "pcieport"))
