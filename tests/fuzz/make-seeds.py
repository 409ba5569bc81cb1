#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writes the D-Bus and sysfs seeds of tests/fuzz/corpus (run it there).
import struct, os
def pad(b, n): return b + b"\0" * ((-len(b)) % n)
class W:
    def __init__(s): s.b = b""
    def align(s, n): s.b = pad(s.b, n)
    def u8(s, v): s.b += bytes([v])
    def u32(s, v): s.align(4); s.b += struct.pack("<I", v)
    def str(s, v, sig=False):
        v = v.encode()
        if sig: s.u8(len(v)); s.b += v + b"\0"
        else: s.u32(len(v)); s.b += v + b"\0"
def variant(w, sig, fn):
    w.str(sig, sig=True); fn(w)
def msg(path, iface, member, sig, body_fn, serial=1):
    body = W(); body_fn(body)
    h = W()
    fields = [(1, "o", path), (2, "s", iface), (3, "s", member), (6, "s", "io.iommufd.Broker1")]
    if sig: fields.append((8, "g", sig))
    arr = W()
    for code, t, v in fields:
        arr.align(8); arr.u8(code); arr.str(t, sig=True)
        if t == "g": arr.str(v, sig=True)
        else: arr.str(v)
    hdr = b"l" + bytes([1, 0, 1]) + struct.pack("<III", len(body.b), serial, len(arr.b))
    return pad(hdr + arr.b, 8) + body.b
def as_(w, items):
    # array of strings: length then elements (align 4)
    w.align(4); pos = len(w.b); w.u32(0); start = len(w.b)
    for it in items: w.str(it)
    w.b = w.b[:pos] + struct.pack("<I", len(w.b) - start) + w.b[pos + 4:]
def asv(w, entries):
    w.align(4); pos = len(w.b); w.u32(0); w.align(8); start = len(w.b)
    for k, sig, fn in entries:
        w.align(8); w.str(k); variant(w, sig, fn)
    w.b = w.b[:pos] + struct.pack("<I", len(w.b) - start) + w.b[pos + 4:]
P, I = "/io/iommufd/Broker1", "io.iommufd.Broker1"
acq = msg(P, I, "AcquireDevices", "asa{sv}", lambda w: (as_(w, ["0000:00:02.0", "0000:00:03.0"]),
        asv(w, [("mode", "s", lambda w: w.str("attached")), ("managed", "b", lambda w: w.u32(1)),
                ("interactive", "b", lambda w: w.u32(0))])))
rel = msg(P, I, "ReleaseDevices", "as", lambda w: as_(w, ["0000:00:02.0"]), 2)
def au(w, vals):
    w.align(4); w.u32(4 * len(vals))
    for v in vals: w.u32(v)
creds = msg("/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionCredentials", "a{sv}",
        lambda w: asv(w, [("UnixUserID", "u", lambda w: w.u32(1000)), ("ProcessID", "u", lambda w: w.u32(1)),
                          ("UnixGroupIDs", "au", lambda w: au(w, [100, 36])),
                          ("LinuxSecurityLabel", "ay", lambda w: (w.u32(3), w.u8(0x61), w.u8(0x62), w.u8(0)))]), 3)
bad = msg(P, I, "AcquireDevices", "asa{sv}", lambda w: (as_(w, ["x"] * 80),
        asv(w, [("mode", "b", lambda w: w.u32(1)), ("bogus", "s", lambda w: w.str("y"))])), 4)
d = "dbus"
open(f"{d}/acquire", "wb").write(acq)
open(f"{d}/release", "wb").write(rel)
open(f"{d}/credentials", "wb").write(creds)
open(f"{d}/bad-args", "wb").write(bad)
open(f"{d}/pipelined", "wb").write(acq + rel + creds)
# sysfs records: kind, len, bytes
def rec(k, data): data = data.encode() if isinstance(data, str) else data; return bytes([k, len(data)]) + data
VENDOR, DEVICE, CLASS, SV, SD, DRIVER, GROUP, GNAME, GMEMBER, VFIO, IOMMU, IREG, PHYSFN = range(13)
base = rec(VENDOR, "0x1b36\n") + rec(DEVICE, "0x0010\n") + rec(CLASS, "0x010802\n") + rec(SV, "0x1af4\n") + rec(SD, "0x1100\n")
open("sysfs/vfio", "wb").write(base + rec(DRIVER, "vfio-pci") + rec(GROUP, "5") + rec(GMEMBER, "0000:00:02.1") +
        rec(VFIO, "241:0\n") + rec(IOMMU, "dmar0") + rec(IREG, b"\x01" + b"f0050aa\n") + rec(IREG, b"\x00" + b"d2008c40660462\n"))
open("sysfs/noiommu", "wb").write(base + rec(DRIVER, "vfio-pci") + rec(GROUP, "noiommu-0") + rec(GNAME, "vfio-noiommu\n"))
open("sysfs/host", "wb").write(base + rec(DRIVER, "e1000e") + rec(GROUP, "3") + rec(IOMMU, "ivhd0") + rec(IREG, b"\x01" + b"0\n") + rec(PHYSFN, "0000:00:01.0"))
open("sysfs/bridge", "wb").write(rec(VENDOR, "0x8086") + rec(DEVICE, "0x7c19") + rec(CLASS, "0x060400") + rec(DRIVER, "pcieport"))
