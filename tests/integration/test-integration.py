#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Integration tests of the fast tier: the built daemon (iommufd-broker-fake)
under umockdev with the default fixture, driven through raw varlink, the
client library (integ-client) and iommufdctl.

    test-integration.py CASE     run one case (meson registers each one)
    test-integration.py --list   the case names

Every case starts its own daemon. See docs/testing.md, "Fast tier".
"""

import json
import shutil
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker import (Closed, Conn, Daemon, Skip, TestFailure, check, check_eq, env_path,  # noqa: E402
                    expect_error, expect_ok, fd_link, run_case, wait_for)

B = "io.iommufd.Broker."
SVC = "org.varlink.service."
HERE = os.path.dirname(os.path.abspath(__file__))
NOBODY = 65534

CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


# --- the fixture, read independently of with-fake-sysfs -------------------

def source_root():
    return os.environ.get("SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))


def load_fixture():
    """tests/fixtures/default.devices as {address: dict}, group members derived."""
    devs = {}
    with open(os.path.join(source_root(), "tests/fixtures/default.devices")) as f:
        for line in f:
            cols = line.split("#", 1)[0].split()
            if not cols:
                continue
            addr, vendor, device, cls, driver, group, cdev, flags = cols
            devs[addr] = {
                "address": addr,
                "vendorId": int(vendor, 16),
                "deviceId": int(device, 16),
                "class": int(cls, 16),
                "driver": None if driver == "-" else driver,
                "iommuGroup": None if group == "-" else int(group),
                "vfioCdev": None if cdev == "-" else cdev,
                "noiommu": "noiommu" in flags.split(","),
            }
    for d in devs.values():
        d["groupMembers"] = sorted(a for a, o in devs.items()
                                   if d["iommuGroup"] is not None and o["iommuGroup"] == d["iommuGroup"])
    return devs


def fake_vfio(addr):
    return f"/memfd:fake-vfio-{addr} (deleted)"


FAKE_IOMMUFD = "/memfd:fake-iommufd (deleted)"


def expect_device_error(reply, name, device, what=""):
    """A typed broker error that names the device in parameters.device and in the message."""
    p = expect_error(reply, B + name, what)
    check_eq(p.get("device"), device, f"{what}: parameters.device of {name}")
    msg = p.get("message")
    check(isinstance(msg, str) and device in msg, f"{what}: message of {name} does not name {device}: {msg!r}")
    return p


def acquire(conn, devices, mode=None, **extra):
    params = {"devices": devices}
    if mode:
        params["mode"] = mode
    params.update(extra)
    return conn.call(B + "Acquire", params)


def check_acquire_reply(reply, devices, mode):
    """The reply of a successful Acquire: fields per mode, fds by index and by name."""
    p = expect_ok(reply, f"Acquire {devices} {mode}")
    n = len(devices)
    check_eq(len(reply.fds), n + 1, "number of fds in the Acquire reply")
    check(isinstance(p.get("session"), int) and p["session"] > 0, f"session: {p.get('session')!r}")
    ifd = p.get("iommuFileDescriptor")
    check(isinstance(ifd, int) and 0 <= ifd <= n, f"iommuFileDescriptor: {ifd!r}")
    check_eq(fd_link(reply.fds[ifd]), FAKE_IOMMUFD, "the iommufd's name")
    check_eq(len(p.get("devices", [])), n, "number of devices in the reply")
    seen = {ifd}
    for want, got in zip(devices, p["devices"]):
        check_eq(got["address"], want, "device address in the reply")
        idx = got.get("fileDescriptor")
        check(isinstance(idx, int) and 0 <= idx <= n and idx not in seen, f"fileDescriptor index {idx!r}")
        seen.add(idx)
        check_eq(fd_link(reply.fds[idx]), fake_vfio(want), f"name of {want}'s fd")
        if mode == "unbound":
            check("devId" not in got and "hwptId" not in got, f"unbound mode returned ids: {got}")
        elif mode == "bound":
            check(isinstance(got.get("devId"), int) and got["devId"] > 0, f"bound: devId {got}")
            check("hwptId" not in got, f"bound mode returned a hwptId: {got}")
        else:
            check(isinstance(got.get("devId"), int) and got["devId"] > 0, f"attached: devId {got}")
            check(isinstance(got.get("hwptId"), int) and got["hwptId"] > 0, f"attached: hwptId {got}")
    if mode in (None, "attached"):
        check(isinstance(p.get("ioasId"), int) and p["ioasId"] > 0, f"attached: ioasId {p.get('ioasId')!r}")
    else:
        check("ioasId" not in p, f"{mode} mode returned an ioasId: {p}")
    return p


def fds_by_name(reply):
    return {fd_link(fd): fd for fd in reply.fds}


def run_as(uid, fn):
    """Run fn() in a forked child with uid/gid `uid` and no supplementary
    groups; return what it returned (JSON-able), or raise its failure."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            out = {"ok": fn()}
        except BaseException as e:  # noqa: B902 - report everything to the parent
            out = {"fail": f"{type(e).__name__}: {e}"}
        with os.fdopen(w, "w") as f:
            json.dump(out, f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    if "fail" in out:
        raise TestFailure(f"as uid {uid}: {out['fail']}")
    return out["ok"]


def finish(d):
    """Every case ends here: the daemon is alive, answers, and holds no more
    fds than after startup; then it stops cleanly on SIGTERM."""
    check(d.alive(), "daemon died")
    with d.connect() as c:
        expect_ok(c.call(SVC + "GetInfo"), "GetInfo at the end")
    if d.baseline is not None:
        d.check_baseline()
    d.stop()


# ==========================================================================
# list and get
# ==========================================================================

@case
def list_devices(ctx):
    d = ctx.daemon()
    fixture = load_fixture()
    devices = d.list_devices()
    check_eq(sorted(x["address"] for x in devices), sorted(fixture), "ListDevices addresses")
    for got in devices:
        want = fixture[got["address"]]
        a = got["address"]
        for key in ("vendorId", "deviceId", "class", "noiommu"):
            check_eq(got.get(key), want[key], f"{a} {key}")
        check_eq(got.get("driver"), want["driver"], f"{a} driver")
        check_eq(got.get("iommuGroup"), want["iommuGroup"], f"{a} iommuGroup")
        check_eq(sorted(got.get("groupMembers", ["missing"])), want["groupMembers"], f"{a} groupMembers")
        check_eq(got.get("vfioCdev"), want["vfioCdev"], f"{a} vfioCdev")
        check_eq((got.get("subsystemVendorId"), got.get("subsystemDeviceId")), (0x1af4, 0x1100),
                 f"{a} subsystem ids")
        check_eq(got.get("sriovVf"), False, f"{a} sriovVf")
        check(got.get("state") in ("available", "leased", "unavailable"), f"{a} state {got.get('state')!r}")
        check("holder" not in got, f"{a} has a holder before any acquire: {got}")
        if got.get("iommu") is not None:
            check_eq(got["iommu"].get("type"), "intel-vtd", f"{a} iommu.type")
    finish(d)


@case
def list_states(ctx):
    d = ctx.daemon()
    devs = {x["address"]: x for x in d.list_devices()}

    def st(a):
        return devs[a]["state"], devs[a].get("reason")

    for a in ("0000:00:02.0", "0000:00:03.0", "0000:00:03.1", "0000:00:08.0"):
        check_eq(st(a), ("available", None), f"{a} (on vfio-pci with a cdev)")
    state, reason = st("0000:00:04.0")
    check_eq(state, "available", "e1000e device 04.0 state")
    check(reason and "managed" in reason and "e1000e" in reason, f"04.0 lacks a managed hint: {reason!r}")
    state, reason = st("0000:00:05.0")
    check_eq(state, "unavailable", "group-4 device 05.0 state")
    check(reason and "0000:00:05.1" in reason and "e1000e" in reason,
          f"05.0's reason does not name its mate on e1000e: {reason!r}")
    state, reason = st("0000:00:06.0")
    check_eq(state, "unavailable", "noiommu device 06.0 state")
    check(reason and "noiommu" in reason, f"06.0 reason: {reason!r}")
    state, reason = st("0000:00:07.0")
    check_eq(state, "unavailable", "no-group device 07.0 state")
    check(reason and "IOMMU group" in reason, f"07.0 reason: {reason!r}")
    state, reason = st("0000:00:1f.0")
    check_eq(state, "unavailable", "bridge 1f.0 state")
    check(bool(reason), "1f.0 has no reason")
    finish(d)


@case
def list_follows_changes(ctx):
    """A list answered from the previous list's text (same caller, nothing
    changed) still follows every lease change, and each caller's view."""
    d = ctx.daemon()
    d.take_baseline()
    addr = "0000:00:02.0"
    with d.connect() as c:
        def listed():
            devs = expect_ok(c.call(B + "ListDevices"), "ListDevices")["devices"]
            return {x["address"]: x for x in devs}

        first = listed()
        check_eq(listed(), first, "the same list twice")
        check_eq(first[addr]["state"], "available", f"{addr} before")
        with d.connect() as holder:
            r = acquire(holder, [addr], "attached")
            check_acquire_reply(r, [addr], "attached")
            dev = listed()[addr]
            check_eq(dev["state"], "leased", f"{addr} leased, in root's list")
            check(dev.get("holder", {}).get("pid") == os.getpid(), f"root sees the holder: {dev}")
            other = run_as(NOBODY, lambda: {x["address"]: x for x in d.list_devices()})[addr]
            check_eq(other["state"], "leased", f"{addr} leased, in uid {NOBODY}'s list")
            check("holder" not in other and other.get("access") == "denied",
                  f"uid {NOBODY} sees no holder and its own access: {other}")
            check_eq(listed()[addr].get("access"), "allowed", "root's list after another caller's")
            expect_ok(holder.call(B + "Release", {"devices": [addr]}), "Release")
            check_eq(listed()[addr]["state"], "releasing", f"{addr} releasing, fds still open")
            r.close_fds()
        d.wait_state(addr, "available")
        again = listed()
        check_eq(again[addr]["state"], "available", f"{addr} after the lease ended")
        # Attaching told the broker what the IOMMU is: that may be new.
        again[addr].pop("iommu", None)
        first[addr].pop("iommu", None)
        check_eq(again, first, "the list as it was before the lease")
    finish(d)


@case
def get_device(ctx):
    d = ctx.daemon()
    d.take_baseline()
    listed = {x["address"]: x for x in d.list_devices()}
    with d.connect() as c:
        for spelling in ("00:02.0", "0000:00:02.0"):
            got = expect_ok(c.call(B + "GetDevice", {"address": spelling}), f"GetDevice {spelling}")["device"]
            check_eq(got, listed["0000:00:02.0"], f"GetDevice({spelling!r}) vs ListDevices")
        got = expect_ok(c.call(B + "GetDevice", {"address": "00:03.1"}), "GetDevice 00:03.1")["device"]
        check_eq(got["groupMembers"], ["0000:00:03.0", "0000:00:03.1"], "03.1 groupMembers")
        expect_device_error(c.call(B + "GetDevice", {"address": "0000:00:09.0"}), "DeviceNotFound",
                            "0000:00:09.0", "GetDevice of an unknown address")
        expect_device_error(c.call(B + "GetDevice", {"address": "00:09.0"}), "DeviceNotFound",
                            "0000:00:09.0", "GetDevice of an unknown short address")
        p = expect_error(c.call(B + "GetDevice", {"address": "garbage"}), B + "InvalidParameter", "GetDevice garbage")
        check("garbage" in p.get("message", ""), f"InvalidParameter does not quote the address: {p}")
    finish(d)


# ==========================================================================
# introspection
# ==========================================================================

@case
def introspection(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with open(os.path.join(source_root(), "protocol/io.iommufd.Broker.varlink")) as f:
        idl = f.read()
    with d.connect() as c:
        info = expect_ok(c.call(SVC + "GetInfo"), "GetInfo")
        check_eq(sorted(info.get("interfaces", [])), ["io.iommufd.Broker", "org.varlink.service"],
                 "GetInfo interfaces")
        for k in ("vendor", "product", "version", "url"):
            check(isinstance(info.get(k), str) and info[k], f"GetInfo {k}: {info.get(k)!r}")
        desc = expect_ok(c.call(SVC + "GetInterfaceDescription", {"interface": "io.iommufd.Broker"}),
                         "GetInterfaceDescription")
        check(desc.get("description") == idl,
              "GetInterfaceDescription(io.iommufd.Broker) differs from protocol/io.iommufd.Broker.varlink")
        p = expect_error(c.call(SVC + "GetInterfaceDescription", {"interface": "com.example.Nope"}),
                         SVC + "InterfaceNotFound", "description of an unknown interface")
        check_eq(p.get("interface"), "com.example.Nope", "InterfaceNotFound.interface")
        desc = expect_ok(c.call(SVC + "GetInterfaceDescription", {"interface": "org.varlink.service"}),
                         "GetInterfaceDescription(org.varlink.service)")
        check("interface org.varlink.service" in desc.get("description", ""), "org.varlink.service description")
    finish(d)


# ==========================================================================
# acquire and release (raw)
# ==========================================================================

@case
def acquire_attached(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        r = acquire(c, ["0000:00:02.0"])            # mode omitted: attached
        p = check_acquire_reply(r, ["0000:00:02.0"], None)
        dev = d.get_device("00:02.0")
        check_eq(dev["state"], "leased", "02.0 after Acquire")
        h = dev.get("holder")
        check(h is not None, f"leased device has no holder for root: {dev}")
        check_eq((h["uid"], h["pid"], h["session"]), (0, os.getpid(), p["session"]), "holder uid/pid/session")
        check_eq(dev.get("reason"), None, "reason of a leased device")
        # The broker keeps no copy of the device fd (design.md: fd ownership).
        names = list(d.fds().values())
        check(not any("fake-vfio-" in n for n in names), f"the daemon kept a device fd: {names}")
        check(any("fake-iommufd" in n for n in names), "the daemon does not keep the session's iommufd")
        # Ids are distinct objects.
        dev_ = p["devices"][0]
        check(len({p["ioasId"], dev_["devId"], dev_["hwptId"]}) == 3, f"ids not distinct: {p}")

        expect_ok(c.call(B + "Release", {"devices": ["00:02.0"]}), "Release")
        # The client still holds the fds: the lease is releasing until they close.
        dev = d.get_device("0000:00:02.0")
        check_eq(dev["state"], "releasing", "02.0 after Release, fds still open")
        check("released" in dev.get("reason", ""), f"reason of a releasing device: {dev.get('reason')!r}")
        expect_device_error(acquire(c, ["0000:00:02.0"], "unbound"), "DeviceBusy", "0000:00:02.0",
                            "Acquire of a releasing device")
        r.close_fds()
        dev = d.wait_state("0000:00:02.0", "available", 2.0)
        check_eq(dev.get("holder"), None, "holder of 02.0 once its fds closed")
        # Released and closed: it can be acquired again, attached.
        r2 = acquire(c, ["0000:00:02.0"], "attached")
        check_acquire_reply(r2, ["0000:00:02.0"], "attached")
        r2.close_fds()
        expect_ok(c.call(B + "Release", {}), "Release of everything")
        d.wait_state("0000:00:02.0", "available", 2.0)
    finish(d)


@case
def acquire_bound_unbound(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        r = acquire(c, ["0000:00:02.0"], "unbound")
        check_acquire_reply(r, ["0000:00:02.0"], "unbound")
        r2 = acquire(c, ["0000:00:08.0"], "bound")
        check_acquire_reply(r2, ["0000:00:08.0"], "bound")
        for a in ("0000:00:02.0", "0000:00:08.0"):
            check_eq(d.get_device(a)["state"], "leased", f"{a} state")
        r.close_fds()
        r2.close_fds()
    for a in ("0000:00:02.0", "0000:00:08.0"):
        d.wait_state(a, "available")
    finish(d)


@case
def acquire_shared_iommufd(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c, d.connect() as c2:
        r1 = acquire(c, ["0000:00:02.0"], "attached")
        check_acquire_reply(r1, ["0000:00:02.0"], "attached")
        r2 = acquire(c, ["0000:00:03.0", "0000:00:03.1"], "unbound")
        check_acquire_reply(r2, ["0000:00:03.0", "0000:00:03.1"], "unbound")
        i1 = os.fstat(r1.fds[r1.parameters["iommuFileDescriptor"]])
        i2 = os.fstat(r2.fds[r2.parameters["iommuFileDescriptor"]])
        check_eq((i2.st_dev, i2.st_ino), (i1.st_dev, i1.st_ino), "the iommufd of two acquires on one connection")
        check_eq(r2.parameters["session"], r1.parameters["session"], "session of two acquires on one connection")
        r3 = acquire(c2, ["0000:00:08.0"], "attached")
        check_acquire_reply(r3, ["0000:00:08.0"], "attached")
        i3 = os.fstat(r3.fds[r3.parameters["iommuFileDescriptor"]])
        check(i3.st_ino != i1.st_ino, "two connections share one iommufd")
        check(r3.parameters["session"] != r1.parameters["session"], "two connections share a session id")
        for r in (r1, r2, r3):
            r.close_fds()
    finish(d)


@case
def acquire_group_never_split(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as a, d.connect() as b:
        ra = acquire(a, ["0000:00:03.0"], "unbound")
        check_acquire_reply(ra, ["0000:00:03.0"], "unbound")
        dev = d.get_device("0000:00:03.1")
        check_eq(dev["state"], "unavailable", "03.1 while its group mate is leased")
        check(dev.get("reason"), "03.1 has no reason while its mate is leased")
        expect_device_error(acquire(b, ["0000:00:03.1"], "unbound"), "DeviceBusy", "0000:00:03.1",
                            "the other half of a leased group")
        expect_device_error(acquire(b, ["0000:00:03.0"], "unbound"), "DeviceBusy", "0000:00:03.0",
                            "a device leased to another connection")
        # The holder itself may take the rest of its group.
        rb = acquire(a, ["0000:00:03.1"], "unbound")
        check_acquire_reply(rb, ["0000:00:03.1"], "unbound")
        # Acquiring what this connection already holds.
        expect_device_error(acquire(a, ["0000:00:03.1"], "unbound"), "DeviceBusy", "0000:00:03.1",
                            "a device this connection already holds")
        ra.close_fds()
        rb.close_fds()
        a.close()
        d.wait_state("0000:00:03.1", "available")
        rc = acquire(b, ["0000:00:03.1"], "unbound")
        check_acquire_reply(rc, ["0000:00:03.1"], "unbound")
        rc.close_fds()
    finish(d)


@case
def release_not_held(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as a, d.connect() as b:
        expect_device_error(a.call(B + "Release", {"devices": ["0000:00:02.0"]}), "NotHeld", "0000:00:02.0",
                            "Release of a device nobody holds")
        r = acquire(a, ["0000:00:02.0"], "unbound")
        check_acquire_reply(r, ["0000:00:02.0"], "unbound")
        expect_device_error(b.call(B + "Release", {"devices": ["00:02.0"]}), "NotHeld", "0000:00:02.0",
                            "Release of a device another connection holds")
        check_eq(d.get_device("0000:00:02.0")["state"], "leased", "02.0 after another connection's Release")
        # All or nothing: one entry not held releases nothing.
        expect_device_error(a.call(B + "Release", {"devices": ["0000:00:02.0", "0000:00:08.0"]}), "NotHeld",
                            "0000:00:08.0", "Release of one held and one not held")
        check_eq(d.get_device("0000:00:02.0")["state"], "leased", "02.0 after a failed Release")
        expect_error(a.call(B + "Release", {"devices": ["garbage"]}), B + "InvalidParameter", "Release garbage")
        expect_ok(a.call(B + "Release", {"devices": ["0000:00:02.0"]}), "Release")
        expect_device_error(a.call(B + "Release", {"devices": ["0000:00:02.0"]}), "NotHeld", "0000:00:02.0",
                            "a second Release")
        r.close_fds()
    finish(d)


@case
def error_group_not_viable(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        p = expect_device_error(acquire(c, ["0000:00:05.0"], "unbound"), "GroupNotViable", "0000:00:05.0",
                                "05.0 with its mate on e1000e")
        check("0000:00:05.1" in p["message"] and "e1000e" in p["message"],
              f"GroupNotViable does not name 0000:00:05.1 and its driver: {p['message']!r}")
    finish(d)


@case
def error_noiommu(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        for mode in ("unbound", "attached"):
            expect_device_error(acquire(c, ["0000:00:06.0"], mode), "NoIommuRefused", "0000:00:06.0",
                                f"noiommu device, {mode}")
    finish(d)


@case
def error_unavailable(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        expect_device_error(acquire(c, ["0000:00:07.0"], "unbound"), "DeviceUnavailable", "0000:00:07.0",
                            "no-group device")
        expect_device_error(acquire(c, ["0000:00:1f.0"], "unbound"), "DeviceUnavailable", "0000:00:1f.0",
                            "PCI bridge")
        p = expect_device_error(acquire(c, ["0000:00:04.0"], "unbound"), "DeviceUnavailable", "0000:00:04.0",
                                "host-driver device without managed")
        check("managed" in p["message"], f"no managed hint: {p['message']!r}")
        expect_device_error(acquire(c, ["0000:00:09.0"], "unbound"), "DeviceNotFound", "0000:00:09.0",
                            "Acquire of an unknown device")
        # All or nothing: a good device with a bad one is not leased.
        expect_device_error(acquire(c, ["0000:00:02.0", "0000:00:07.0"], "attached"), "DeviceUnavailable",
                            "0000:00:07.0", "good + bad device")
        check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after a failed joint Acquire")
    finish(d)


@case
def release_hidden_bound_fd(ctx):
    """adv2: a device fd the client keeps in flight in a socket of its own
    (no process shows it) while the kernel still has it bound: the broker
    ended the lease after three scans ("no process holds the device but the
    kernel refuses to bind it") and offered the device again, though the
    client could take the bound fd back out of the socket whenever it liked.
    The lease now stays releasing for as long as the kernel refuses the bind.
    The fake's BIND_FAIL plays the other, bound, open file."""
    d = ctx.daemon(env={"IOMMUFD_BROKER_FAKE_BIND_FAIL": "0000:00:08.0"})
    d.take_baseline()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with d.connect() as c:
            r = acquire(c, ["0000:00:08.0"], "unbound")
            p = check_acquire_reply(r, ["0000:00:08.0"], "unbound")
            dev_fd = r.fds[p["devices"][0]["fileDescriptor"]]
            socket.send_fds(a, [b"x"], [dev_fd])
            r.close_fds()
        d.wait_state("0000:00:08.0", "releasing")
        # Scans at 0.1, 0.2, 0.4, 0.8 s...: well past the three that ended it.
        time.sleep(3.5)
        dev = d.get_device("0000:00:08.0")
        check_eq(dev["state"], "releasing", "08.0 while its bound fd is in flight in a socket")
        check("the kernel has it bound (an fd in flight in a socket?)" in d.read_log(),
              "the daemon says why the lease stays")
        _, fds, _, _ = socket.recv_fds(b, 16, 4)
        check_eq(len(fds), 1, "the fd came back out of the socket")
        os.close(fds[0])
    finally:
        a.close()
        b.close()
    # Closed now, but the fake (BIND_FAIL) still refuses every bind, as the
    # kernel would while some other file of it stayed bound: Revoke, whose
    # unbind the kernel lets finish only once every fd is closed, ends it.
    p = ctl(d, "revoke", "00:08.0", "--timeout", "5")
    check_eq(p.returncode, 0, f"revoke of the releasing lease: {p.stderr!r}")
    d.wait_state("0000:00:08.0", "available")
    finish(d)


@case
def error_group_open(ctx):
    d = ctx.daemon(env={"IOMMUFD_BROKER_FAKE_GROUP_OPEN": "0000:00:08.0"})
    d.take_baseline()
    with d.connect() as c:
        # Like the real 7.3 kernel, the fake refuses only at BIND (EBUSY from
        # vfio_device_block_group), so unbound mode hands the fd out and the
        # client's own bind fails; bound modes get DeviceBusy.
        for mode in ("bound", "attached"):
            p = expect_device_error(acquire(c, ["0000:00:08.0"], mode), "DeviceBusy", "0000:00:08.0",
                                    f"legacy group open, {mode}")
            check("/dev/vfio/" in p["message"], f"no group named: {p['message']!r}")
        # All or nothing, with kernel steps already done for 02.0.
        expect_device_error(acquire(c, ["0000:00:02.0", "0000:00:08.0"], "attached"), "DeviceBusy",
                            "0000:00:08.0", "02.0 + group-open 08.0")
        check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after the failed joint Acquire")
        names = list(d.fds().values())
        check(not any("fake-vfio-" in n for n in names), f"a device fd leaked in the daemon: {names}")
        r = acquire(c, ["0000:00:02.0"], "attached")
        check_acquire_reply(r, ["0000:00:02.0"], "attached")
        r.close_fds()
    finish(d)


@case
def error_bind_fail(ctx):
    d = ctx.daemon(env={"IOMMUFD_BROKER_FAKE_BIND_FAIL": "0000:00:02.0"})
    d.take_baseline()
    with d.connect() as c:
        expect_device_error(acquire(c, ["0000:00:02.0"], "bound"), "DeviceBusy", "0000:00:02.0",
                            "bind fails with EINVAL")
        check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after a failed bind")
        r = acquire(c, ["0000:00:02.0"], "unbound")         # unbound needs no bind
        check_acquire_reply(r, ["0000:00:02.0"], "unbound")
        r.close_fds()
    # The fake still refuses every bind, as the kernel does while another
    # open file of the device is bound: the lease stays releasing (it ended
    # after three scans before, offering a device someone kept bound) until
    # a Revoke's unbind, which the kernel lets finish only once every fd is
    # closed, takes it back.
    d.wait_state("0000:00:02.0", "releasing")
    p = ctl(d, "revoke", "00:02.0", "--timeout", "5")
    check_eq(p.returncode, 0, f"revoke of the releasing lease: {p.stderr!r}")
    d.wait_state("0000:00:02.0", "available")
    finish(d)


@case
def error_kernel_unsupported(ctx):
    why = "this test host has no iommufd"
    d = ctx.daemon(env={"IOMMUFD_BROKER_FAKE_UNSUPPORTED": why})
    d.take_baseline()
    for dev in d.list_devices():
        check_eq((dev["state"], dev.get("reason")), ("unavailable", why), f"{dev['address']} without iommufd")
    with d.connect() as c:
        p = expect_device_error(acquire(c, ["0000:00:02.0"], "unbound"), "KernelUnsupported", "0000:00:02.0",
                                "Acquire without iommufd")
        check(why in p["message"], f"KernelUnsupported does not say why: {p['message']!r}")
    finish(d)


@case
def error_invalid_parameter(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        p = expect_error(acquire(c, ["00:02.0", "0000:00:02.0"]), B + "InvalidParameter", "a device twice")
        check_eq(p.get("device"), "0000:00:02.0", "InvalidParameter.device for a duplicate")
        # The same words as over D-Bus (dbus-busctl).
        check_eq(p.get("message"), "0000:00:02.0 is listed twice", "duplicate message")
        p = expect_error(acquire(c, []), B + "InvalidParameter", "empty device list")
        check(p.get("message"), "InvalidParameter without a message")
        p = expect_error(acquire(c, ["garbage"]), B + "InvalidParameter", "Acquire garbage")
        check("garbage" in p.get("message", ""), f"message does not quote the address: {p}")
        p = expect_error(acquire(c, ["0000:00:02.0"] * 65), B + "InvalidParameter", "65 devices")
        check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after invalid Acquires")
    finish(d)


@case
def error_limit_exceeded(ctx):
    """LimitExceeded is reachable three ways: a call on a connection with an
    active Monitor stream, the per-uid connection cap (of a user: root is
    never refused), an oversized message."""
    d = ctx.daemon(args=["--max-connections-per-uid", "2"])
    d.take_baseline()
    with d.connect() as m:
        r = m.call(B + "Monitor", {}, more=True)
        check_eq(expect_ok(r, "Monitor").get("event"), "ready", "Monitor's first reply")
        check(r.continues, "Monitor's first reply does not continue")
        p = expect_error(m.call(B + "ListDevices"), B + "LimitExceeded", "a call beside a Monitor stream")
        check(p.get("message"), "LimitExceeded without a message")

    def third_refused():
        with d.connect() as c1, d.connect() as c2:
            expect_ok(c1.call(B + "ListDevices"), "first connection")
            expect_ok(c2.call(B + "ListDevices"), "second connection")
            with d.connect() as c3:
                try:
                    r = c3.recv(5)
                except Closed:
                    raise TestFailure("third connection over a cap of 2 closed without a LimitExceeded message")
                p = expect_error(r, B + "LimitExceeded", "third connection over a cap of 2")
                check(p.get("message"), "LimitExceeded without a message")
                check(c3.is_closed_by_peer(), "the connection over the cap was not closed")
        return True
    run_as(NOBODY, third_refused)
    with d.connect() as c1, d.connect() as c2, d.connect() as c3:
        for c in (c1, c2, c3):
            expect_ok(c.call(B + "ListDevices"), "root past a per-uid cap of 2")
    finish(d)


# ==========================================================================
# disconnect and client-kill cleanup
# ==========================================================================

def monitor(d):
    m = d.connect()
    r = m.call(B + "Monitor", {}, more=True)
    check_eq(expect_ok(r, "Monitor").get("event"), "ready", "Monitor's first reply")
    return m


def next_lease_event(m, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        r = m.recv(max(0.1, deadline - time.monotonic()))
        p = expect_ok(r, "Monitor event")
        check(r.continues, f"Monitor reply without continues: {r}")
        # lease-releasing comes before each lease-ended; the cases here look
        # at acquire and end.
        if p.get("event", "").startswith("lease-") and p.get("event") != "lease-releasing":
            return p


@case
def cleanup_disconnect(ctx):
    d = ctx.daemon()
    d.take_baseline()
    m = monitor(d)
    c = d.connect()
    r = acquire(c, ["0000:00:02.0", "0000:00:08.0"], "attached")
    p = check_acquire_reply(r, ["0000:00:02.0", "0000:00:08.0"], "attached")
    ev = [next_lease_event(m), next_lease_event(m)]
    check_eq(sorted((e["event"], e.get("address")) for e in ev),
             [("lease-acquired", "0000:00:02.0"), ("lease-acquired", "0000:00:08.0")], "lease-acquired events")
    check(all(e.get("session") == p["session"] for e in ev), f"event session ids: {ev}")
    r.close_fds()
    c.close()
    ev = [next_lease_event(m), next_lease_event(m)]
    check_eq(sorted((e["event"], e.get("address"), e.get("reason")) for e in ev),
             [("lease-ended", "0000:00:02.0", "disconnected"), ("lease-ended", "0000:00:08.0", "disconnected")],
             "lease-ended events after disconnect")
    for a in ("0000:00:02.0", "0000:00:08.0"):
        d.wait_state(a, "available")
    with d.connect() as c2:
        r = acquire(c2, ["0000:00:02.0"], "attached")
        check_acquire_reply(r, ["0000:00:02.0"], "attached")
        r.close_fds()
    m.close()
    finish(d)


def monitor_drain(m, quiet=0.5):
    """Every Monitor event until none came for `quiet` seconds, as
    (event, address, state of the device it carries)."""
    out = []
    while True:
        try:
            r = m.recv(quiet)
        except TestFailure:
            return out
        p = expect_ok(r, "Monitor event")
        out.append((p.get("event"), p.get("address"), (p.get("device") or {}).get("state")))


@case
def monitor_one_change_per_call(ctx):
    """A call's Monitor events carry one device-changed per device: each
    carries the device as it is when sent, so a Release that goes releasing,
    ended and available in one call sends it once, after lease-ended."""
    d = ctx.daemon()
    d.take_baseline()
    m = monitor(d)
    devs = ["0000:00:02.0", "0000:00:08.0"]
    with d.connect() as c:
        r = acquire(c, devs, "attached")
        check_acquire_reply(r, devs, "attached")
        ev = monitor_drain(m)
        check_eq(sorted(ev), sorted([("lease-acquired", a, None) for a in devs] +
                                    [("device-changed", a, "leased") for a in devs]), "events of an Acquire")
        r.close_fds()
        expect_ok(c.call(B + "Release", {}), "Release")
        ev = monitor_drain(m)
        for a in devs:
            mine = [e for e in ev if e[1] == a]
            check_eq(mine, [("lease-releasing", a, None), ("lease-ended", a, None), ("device-changed", a, "available")],
                     f"events of a Release of {a} whose fds were closed")
    m.close()
    finish(d)


def child_acquire_and_wait(d, devices, mode, ready_w):
    """In a forked child: acquire, report, wait to be killed."""
    try:
        c = d.connect()
        r = acquire(c, devices, mode)
        out = {"params": r.parameters, "error": r.error, "names": [fd_link(fd) for fd in r.fds]}
    except BaseException as e:  # noqa: B902
        out = {"error": repr(e)}
    os.write(ready_w, (json.dumps(out) + "\n").encode())
    while True:
        time.sleep(100)


@case
def cleanup_client_killed(ctx):
    d = ctx.daemon()
    d.take_baseline()
    m = monitor(d)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        child_acquire_and_wait(d, ["0000:00:03.0", "0000:00:03.1"], "bound", wfd)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        out = json.loads(f.readline())
    check(out.get("error") is None, f"child's Acquire failed: {out}")
    check_eq(sorted(out["names"]), sorted([FAKE_IOMMUFD, fake_vfio("0000:00:03.0"), fake_vfio("0000:00:03.1")]),
             "fds the child received")
    dev = d.get_device("0000:00:03.0")
    check_eq((dev["state"], dev["holder"]["pid"], dev["holder"]["uid"]), ("leased", pid, 0), "03.0 held by the child")
    ev = [next_lease_event(m), next_lease_event(m)]
    check(all(e["event"] == "lease-acquired" for e in ev), f"events before the kill: {ev}")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    ev = [next_lease_event(m), next_lease_event(m)]
    check_eq(sorted(e.get("address") for e in ev), ["0000:00:03.0", "0000:00:03.1"], "lease-ended addresses")
    for e in ev:
        check_eq(e["event"], "lease-ended", "event after SIGKILL")
        check(e.get("reason") in ("disconnected", "client-exited"), f"lease-ended reason: {e}")
    for a in ("0000:00:03.0", "0000:00:03.1"):
        d.wait_state(a, "available")
    m.close()
    finish(d)


@case
def cleanup_client_exited(ctx):
    """The lease ends when the calling process exits, even if its connection
    lives on in another process (peer pidfd)."""
    d = ctx.daemon()
    d.take_baseline()
    m = monitor(d)
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        try:
            c = d.connect()
            r = acquire(c, ["0000:00:02.0"], "unbound")
            r.close_fds()
            socket.send_fds(child_end, [json.dumps({"error": r.error}).encode()], [c.sock.fileno()])
        finally:
            os._exit(0)
    child_end.close()
    data, fds, _, _ = socket.recv_fds(parent_end, 4096, 4)
    check(json.loads(data).get("error") is None, f"child's Acquire failed: {data!r}")
    check_eq(len(fds), 1, "the child's connection was not passed")
    os.waitpid(pid, 0)
    e = next_lease_event(m)
    check_eq((e["event"], e.get("address")), ("lease-acquired", "0000:00:02.0"), "first event")
    e = next_lease_event(m)
    check_eq((e["event"], e.get("address"), e.get("reason")), ("lease-ended", "0000:00:02.0", "client-exited"),
             "lease-ended while the connection is still open (held by the parent)")
    d.wait_state("0000:00:02.0", "available")
    os.close(fds[0])
    parent_end.close()
    m.close()
    finish(d)


@case
def lease_child_keeps_fds(ctx):
    """The holder exits but a child keeps the device fd (the `iommufdctl run
    -- qemu` shape): the lease stays, releasing, until the child lets go; in
    every mode a second Acquire is DeviceBusy naming the state."""
    d = ctx.daemon()
    d.take_baseline()
    for mode in ("attached", "unbound"):
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            parent_end.close()
            try:
                c = d.connect()
                r = acquire(c, ["0000:00:02.0"], mode)
                dev_fd = r.fds[1]
                # The child inherits only the device fd, then the holder exits.
                sleeper = subprocess.Popen(["sleep", "60"], pass_fds=[dev_fd])
                child_end.send(json.dumps({"error": r.error, "sleeper": sleeper.pid}).encode())
            finally:
                os._exit(0)
        child_end.close()
        info = json.loads(parent_end.recv(4096))
        parent_end.close()
        os.waitpid(pid, 0)
        check(info.get("error") is None, f"{mode}: holder's Acquire failed: {info}")
        dev = d.wait_state("0000:00:02.0", "releasing", 3.0)
        check(any(w in dev.get("reason", "") for w in ("client-exited", "disconnected")),
              f"{mode}: reason of the releasing device: {dev.get('reason')!r}")
        with d.connect() as c:
            for m in ("attached", "bound", "unbound"):
                p = expect_device_error(acquire(c, ["0000:00:02.0"], m), "DeviceBusy", "0000:00:02.0",
                                        f"{mode} lease held by a child, Acquire in {m} mode")
                check("releasing" in p["message"], f"DeviceBusy does not name the state: {p['message']!r}")
        os.kill(info["sleeper"], signal.SIGKILL)
        start = time.monotonic()
        d.wait_state("0000:00:02.0", "available", 3.0)
        took = time.monotonic() - start
        check(mode != "attached" or took < 1.0, f"{mode}: lease ended {took:.2f}s after the child exited")
    finish(d)


@case
def revoke(ctx):
    """Revoke: root, or polkit (which this daemon cannot reach: see dbus-polkit-revoke
    for polkit's answers); NotHeld for a free device; a holder that ignores the
    request costs the caller the timeout and a RevokeTimeout naming it; one
    that lets go (iommufdctl acquire, on lease-releasing) ends the lease."""
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        expect_device_error(c.call(B + "Revoke", {"device": "0000:00:02.0"}), "NotHeld", "0000:00:02.0",
                            "Revoke of a device nobody holds")
        holder = d.connect()
        r = acquire(holder, ["0000:00:02.0"], "bound")

        def as_nobody():
            with d.connect() as c2:
                return c2.call(B + "Revoke", {"device": "0000:00:02.0"}).error
        # Without a bus polkit is unreachable; on a machine with polkitd it says no.
        check(run_as(NOBODY, as_nobody) in (B + "AuthorizationUnavailable", B + "PermissionDenied",
                                             B + "InteractiveAuthorizationRequired"), f"Revoke by uid {NOBODY}")
        expect_error(c.call(B + "Revoke", {"device": "0000:00:02.0", "timeoutSeconds": 0}), SVC + "InvalidParameter", "timeout 0")

        # Own: a bad or unknown address is refused before polkit is asked (it was
        # AuthorizationUnavailable here, or an authentication dialog with polkitd),
        # and a short address is named in full.
        def bad_addresses_as_nobody():
            with d.connect() as c2:
                return [c2.call(B + "Revoke", {"device": a}).msg for a in ("bogus", "0000:00:09.0", "00:07.0")]
        bogus, unknown, short = run_as(NOBODY, bad_addresses_as_nobody)
        check_eq(bogus.get("error"), B + "InvalidParameter", f"Revoke of 'bogus' by uid {NOBODY}: {bogus}")
        check_eq(unknown.get("error"), B + "DeviceNotFound", f"Revoke of an unknown device by uid {NOBODY}: {unknown}")
        check_eq(short["parameters"].get("device"), "0000:00:07.0", f"Revoke of '00:07.0' by uid {NOBODY}: {short}")

        start = time.monotonic()
        p = expect_device_error(c.call(B + "Revoke", {"device": "0000:00:02.0", "timeoutSeconds": 1}),
                                "RevokeTimeout", "0000:00:02.0", "a holder that ignores the request")
        took = time.monotonic() - start
        check(0.9 <= took < 5, f"RevokeTimeout after {took:.2f}s, asked for 1s")
        check(f"pid {os.getpid()}" in p["message"], f"RevokeTimeout does not name the holder: {p['message']!r}")
        dev = d.get_device("0000:00:02.0")
        check_eq(dev["state"], "releasing", "state of a device being revoked")
        check("revoked" in dev.get("reason", ""), f"reason: {dev.get('reason')!r}")
        r.close_fds()
        holder.close()
        d.wait_state("0000:00:02.0", "available", 3.0)

    # A holder that lets go when asked.
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "acquire", "00:02.0"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    d.wait_state("0000:00:02.0", "leased", 5.0)
    p = subprocess.run([env_path("IOMMUFDCTL"), "--socket", d.socket, "revoke", "00:02.0", "--timeout", "10"],
                       capture_output=True, text=True, timeout=30)
    check_eq(p.returncode, 0, f"iommufdctl revoke: {p.stderr!r}")
    check("revoked" in p.stdout, f"iommufdctl revoke said {p.stdout!r}")
    proc.wait(10)
    d.wait_state("0000:00:02.0", "available", 3.0)
    finish(d)


# ==========================================================================
# policy
# ==========================================================================

def nobody_acquire(d, devices, mode):
    def fn():
        with d.connect() as c:
            r = acquire(c, devices, mode)
            out = {"error": r.error, "parameters": r.parameters, "names": sorted(fd_link(fd) for fd in r.fds)}
            r.close_fds()
            return out
    return run_as(NOBODY, fn)


def check_denied(out, device, what):
    check_eq(out["error"], B + "PermissionDenied", what)
    check_eq(out["parameters"].get("device"), device, f"{what}: parameters.device")
    check(device in out["parameters"].get("message", ""), f"{what}: message does not name {device}: {out}")
    check_eq(out["names"], [], f"{what}: fds with an error")


@case
def policy_default_denies(ctx):
    d = ctx.daemon()
    d.take_baseline()
    for mode in ("unbound", "attached"):
        check_denied(nobody_acquire(d, ["0000:00:02.0"], mode), "0000:00:02.0", f"uid {NOBODY}, default policy, {mode}")
    check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after denials")

    # Listing is open to everyone; the holder is shown to root and the holder only.
    with d.connect() as c:
        r = acquire(c, ["0000:00:02.0"], "unbound")
        check_acquire_reply(r, ["0000:00:02.0"], "unbound")

        def view():
            with d.connect() as c2:
                return expect_ok(c2.call(B + "GetDevice", {"address": "0000:00:02.0"}), "GetDevice as nobody")["device"]
        dev = run_as(NOBODY, view)
        check_eq(dev["state"], "leased", "02.0 seen by nobody")
        check("holder" not in dev, f"uid {NOBODY} sees root's holder: {dev.get('holder')}")
        r.close_fds()
    finish(d)


@case
def per_caller_state(ctx):
    """ListDevices/GetDevice/Monitor say what this caller may do, and follow a policy reload."""
    d = ctx.daemon(policy={"rules": []})
    d.take_baseline()
    addr = "0000:00:02.0"

    def views():
        with d.connect() as c:
            listed = {x["address"]: x for x in expect_ok(c.call(B + "ListDevices"), "ListDevices")["devices"]}
            got = expect_ok(c.call(B + "GetDevice", {"address": addr}), "GetDevice")["device"]
            return listed, got

    listed, got = run_as(NOBODY, views)
    for what, dev in (("ListDevices", listed[addr]), ("GetDevice", got)):
        check_eq((dev["state"], dev.get("access"), dev.get("allowedModes")), ("unavailable", "denied", []),
                 f"uid {NOBODY} without a rule, {what}")
        check("no policy rule" in dev.get("reason", "") and dev.get("reason") == dev.get("accessReason"),
              f"{what} says why: {dev}")
    check(all(x["state"] != "available" for x in listed.values()), f"nothing available to uid {NOBODY}: {listed}")
    # Root sees the same devices as available, with every mode.
    root_dev = d.get_device(addr)
    check_eq((root_dev["state"], root_dev.get("access"), root_dev.get("allowedModes"), root_dev.get("managedAllowed")),
             ("available", "allowed", ["unbound", "bound", "attached"], True), "root's view")

    # A reload that allows the user (one mode) shows at once, to the same user.
    with open(d.policy_path, "w") as f:
        json.dump({"rules": [{"devices": {"address": addr}, "principals": {"users": [NOBODY]},
                              "modes": ["attached"]}]}, f)
    os.kill(d.pid, signal.SIGHUP)

    def allowed():
        listed2, got2 = run_as(NOBODY, views)
        return listed2[addr].get("access") == "allowed" and got2.get("access") == "allowed"
    wait_for(allowed, what="the reload to reach the list")
    listed, got = run_as(NOBODY, views)
    for what, dev in (("ListDevices", listed[addr]), ("GetDevice", got)):
        check_eq((dev["state"], dev.get("access"), dev.get("allowedModes"), dev.get("managedAllowed")),
                 ("available", "allowed", ["attached"], False), f"uid {NOBODY} after the reload, {what}")
        check("accessReason" not in dev and "reason" not in dev, f"no reason left: {dev}")
    check_eq(listed["0000:00:08.0"]["state"], "unavailable", "a device the rule does not name")
    out = nobody_acquire(d, [addr], "attached")
    check(out["error"] is None, f"the list said allowed, Acquire must agree: {out}")
    d.wait_state(addr, "available")
    finish(d)


@case
def policy_allow_rule(ctx):
    policy = {"rules": [{
        "devices": {"address": "0000:00:02.0"},
        "principals": {"users": [NOBODY]},
        "modes": ["attached"],
    }]}
    d = ctx.daemon(policy=policy)
    d.take_baseline()
    out = nobody_acquire(d, ["0000:00:02.0"], "attached")
    check(out["error"] is None, f"uid {NOBODY} refused by a rule allowing it: {out}")
    check_eq(out["names"], sorted([FAKE_IOMMUFD, fake_vfio("0000:00:02.0")]), "fds received by uid 65534")
    check(out["parameters"]["devices"][0].get("hwptId"), f"attached without hwptId: {out}")
    d.wait_state("0000:00:02.0", "available")       # the child's connection closed
    check_denied(nobody_acquire(d, ["0000:00:02.0"], "unbound"), "0000:00:02.0", "a mode the rule does not allow")
    check_denied(nobody_acquire(d, ["0000:00:02.0"], "bound"), "0000:00:02.0", "bound, not allowed")
    check_denied(nobody_acquire(d, ["0000:00:08.0"], "attached"), "0000:00:08.0", "a device the rule does not name")
    out = nobody_acquire(d, ["0000:00:02.0", "0000:00:08.0"], "attached")
    check_denied(out, "0000:00:08.0", "one allowed and one denied device")
    # Root matches no rule: the built-in default still lets it in.
    with d.connect() as c:
        r = acquire(c, ["0000:00:08.0"], "unbound")
        check_acquire_reply(r, ["0000:00:08.0"], "unbound")
        r.close_fds()
    finish(d)


@case
def policy_polkit_rule(ctx):
    # Without a bus to ask polkit on, a rule that requires it fails with a
    # typed error that says so (tests/dbus/test-polkit.c covers a live polkit).
    policy = {"rules": [{"devices": {"address": "0000:00:02.0"}, "principals": {"users": [NOBODY]},
                         "polkit": True}]}
    d = ctx.daemon(policy=policy, env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    d.take_baseline()
    out = nobody_acquire(d, ["0000:00:02.0"], "attached")
    check_eq(out["error"], B + "AuthorizationUnavailable", "a rule that requires polkit, without polkit")
    check_eq(out["parameters"].get("device"), "0000:00:02.0", "parameters.device")
    check("polkit" in out["parameters"]["message"], f"message does not mention polkit: {out}")
    check_eq(out["names"], [], "fds with an error")
    finish(d)


@case
def socket_activation(ctx):
    # systemd-socket-activate binds the socket and starts the daemon on the
    # first connection with LISTEN_FDS: no --varlink-listen, so an answer on
    # this path proves the daemon took the passed socket.
    activate = shutil.which("systemd-socket-activate")
    if not activate:
        raise Skip("systemd-socket-activate not installed")
    d = Daemon()
    # It clears the environment: pass umockdev's on so the fake devices stay.
    # The sanitizer run (dev.sh test) needs its options passed on too.
    sanitizer_env = [a for v in ("ASAN_OPTIONS", "UBSAN_OPTIONS") if v in os.environ for a in ("-E", v)]
    cmd = [d.wrapper, "--", activate, "-l", d.socket, "-E", "LD_PRELOAD", "-E", "UMOCKDEV_DIR"] + sanitizer_env + [
           os.path.realpath(env_path("BROKER_FAKE")), "--no-dbus",
           "--policy", d.policy_path, "--policy-dir", d.policy_dir]
    log = open(d.log_path, "w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        # The path appears at bind(), before listen(): until then connect() is refused.
        def listening():
            try:
                return Conn(d.socket, timeout=15.0)
            except (FileNotFoundError, ConnectionRefusedError):
                return None
        with wait_for(listening, what="the activation socket to listen") as c:
            info = c.call("org.varlink.service.GetInfo")
            check(info.error is None, f"GetInfo over the activated socket: {info}")
            check("io.iommufd.Broker" in info.parameters["interfaces"], f"interfaces: {info.parameters}")
            devices = c.call("io.iommufd.Broker.ListDevices")
            check(len(devices.parameters.get("devices", [])) == len(load_fixture()), f"ListDevices: {devices}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(d.dir, ignore_errors=True)


@case
def policy_check_config(ctx):
    binary = env_path("BROKER_FAKE")
    tmp = Daemon()          # only for its temp dir; not started
    ctx.daemons.append(tmp)
    emptydir = os.path.join(tmp.dir, "empty.d")
    os.mkdir(emptydir)
    bad = os.path.join(tmp.dir, "bad.json")
    with open(bad, "w") as f:
        json.dump({"rules": [
            {"principals": {"users": [1000]}, "modes": ["attach"]},
            {"devices": {"address": "nonsense"}, "principals": {"users": [1000]}},
            {"devices": {"id": "8086:10d3"}},
        ], "bogus": 1}, f)
    p = subprocess.run([binary, "--check-config", "--policy", bad, "--policy-dir", emptydir],
                       capture_output=True, text=True, timeout=20)
    check(p.returncode != 0, f"--check-config of a bad policy exited 0: {p.stdout!r} {p.stderr!r}")
    check("policy OK" not in p.stdout, f"bad policy reported OK: {p.stdout!r}")
    err = p.stderr
    check("bad.json" in err, f"errors do not name the file: {err!r}")
    check("rule 1" in err and "attach" in err, f"no error for the unknown mode of rule 1: {err!r}")
    check("rule 2" in err, f"no error for rule 2's address: {err!r}")
    check("rule 3" in err and "principals" in err, f"no error for rule 3 without principals: {err!r}")
    check("bogus" in err, f"no error for the unknown top-level key: {err!r}")

    syntax = os.path.join(tmp.dir, "syntax.json")
    with open(syntax, "w") as f:
        f.write('{"rules": [ {"principals": {"users": [0]} ]}\n')
    p = subprocess.run([binary, "--check-config", "--policy", syntax, "--policy-dir", emptydir],
                       capture_output=True, text=True, timeout=20)
    check(p.returncode != 0 and "syntax.json" in p.stderr, f"JSON syntax error: rc {p.returncode}, {p.stderr!r}")

    good = os.path.join(tmp.dir, "good.json")
    with open(good, "w") as f:
        json.dump({"rules": [{"devices": {"address": "0000:00:02.0"}, "principals": {"users": [NOBODY]},
                              "modes": ["attached"]},
                             {"principals": {"users": [0]}, "allow": False, "devices": {"class": "0x0604*"}}]}, f)
    p = subprocess.run([binary, "--check-config", "--policy", good, "--policy-dir", emptydir],
                       capture_output=True, text=True, timeout=20)
    check_eq(p.returncode, 0, f"--check-config of a good policy (stderr {p.stderr!r})")
    check("policy OK" in p.stdout and "2 rules" in p.stdout, f"good policy output: {p.stdout!r}")

    # The daemon refuses to start with a bad policy.
    p = subprocess.run([binary, "--no-dbus", "--varlink-listen", os.path.join(tmp.dir, "s"), "--policy", bad,
                        "--policy-dir", emptydir], capture_output=True, text=True, timeout=20)
    check(p.returncode != 0, "the daemon started with a bad policy")


# ==========================================================================
# robustness
# ==========================================================================

def check_usable(d):
    with d.connect() as c:
        devs = expect_ok(c.call(B + "ListDevices"), "ListDevices after abuse")["devices"]
        check_eq(len(devs), len(load_fixture()), "device count after abuse")


def send_bad(d, data, fds=(), want=B + "InvalidParameter", what=""):
    """A protocol error: answered with an error, then the connection is closed."""
    with d.connect() as c:
        try:
            c.send_raw(data, fds)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.recv(10)
        except Closed:
            raise TestFailure(f"{what}: connection closed without an error reply")
        p = expect_error(r, want, what)
        check(isinstance(p.get("message"), str) and p["message"], f"{what}: error without a message: {r}")
        check(c.is_closed_by_peer(), f"{what}: connection not closed after a protocol error")
        return p["message"]


@case
def robust_malformed(ctx):
    d = ctx.daemon()
    d.take_baseline()
    send_bad(d, b'{"method": "io.iommufd.Broker.ListDevices"\0', what="truncated JSON")
    send_bad(d, b'{"method": \xff\xfe}\0', what="invalid UTF-8 / JSON")
    send_bad(d, b'[1, 2, 3]\0', what="a JSON array")
    send_bad(d, b'"io.iommufd.Broker.ListDevices"\0', what="a JSON string")
    send_bad(d, b'{"parameters": {}}\0', what="no method")
    send_bad(d, b'{"method": 5}\0', what="method not a string")
    send_bad(d, b'{"method": "io.iommufd.Broker.ListDevices", "oneway": true, "more": true}\0',
             what="oneway and more")
    send_bad(d, b'{"method": "io.iommufd.Broker.ListDevices", "more": "yes"}\0', what="more not a bool")
    # Why the text is no JSON, in jansson's words, not "not an object".
    for data, word in ((b'{"method": "io.iommufd.Broker.ListDevices", "method": "x"}\0', "duplicate"),
                       (b'{"method": "io.iommufd.Broker.ListDevices", "parameters": {"a": 99999999999999999999}}\0',
                        "too big"),
                       (b'{"method": "io.iommufd.Broker.\xff"}\0', "decode byte")):
        msg = send_bad(d, data, what=f"{word} in the JSON")
        check(word in msg and "not valid JSON" in msg, f"the error for {word} in the JSON says {msg!r}")
    check_eq(send_bad(d, b'[1]\0', what="an array"), "message is not a JSON object", "the error for an array")
    # A bad message with fds: the fds are closed too.
    r, w = os.pipe()
    send_bad(d, b'{"method": 5}\0', fds=[r], what="bad message with an fd")
    os.close(r)
    wait_for(lambda: _pipe_broken(w), 5, 0.05, "the daemon to close an fd sent with a bad message")
    os.close(w)
    check_usable(d)
    finish(d)


def _pipe_broken(w):
    try:
        os.write(w, b"x")
        return False
    except BrokenPipeError:
        return True


@case
def robust_oversized(ctx):
    d = ctx.daemon()
    d.take_baseline()
    big = {"method": B + "GetDevice", "parameters": {"address": "x" * (1024 * 1024)}}
    send_bad(d, json.dumps(big).encode() + b"\0", want=B + "LimitExceeded", what="a 1 MiB message")
    # Without a terminating NUL: the cap hits before the message ends.
    send_bad(d, b'{"method": "' + b"a" * (200 * 1024), want=B + "LimitExceeded", what="200 KiB, no NUL")
    # Just under the default cap (64 KiB) is fine.
    with d.connect() as c:
        r = c.call(B + "GetDevice", {"address": "y" * (60 * 1024)})
        expect_error(r, B + "InvalidParameter", "a 60 KiB address")
    check_usable(d)
    finish(d)


@case
def robust_unknown_method(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        p = expect_error(c.call(B + "Frobnicate"), SVC + "MethodNotFound", "unknown method")
        check_eq(p.get("method"), B + "Frobnicate", "MethodNotFound.method")
        p = expect_error(c.call("com.example.Nope.Call"), SVC + "InterfaceNotFound", "unknown interface")
        check_eq(p.get("interface"), "com.example.Nope", "InterfaceNotFound.interface")
        p = expect_error(c.call(SVC + "Frobnicate"), SVC + "MethodNotFound", "unknown org.varlink.service method")
        # The connection survives these.
        expect_ok(c.call(B + "ListDevices"), "ListDevices after unknown methods")
        # A streaming method without more.
        expect_error(c.call(B + "Monitor"), SVC + "ExpectedMore", "Monitor without more")
        # more on a method that does not stream: one ordinary reply.
        r = c.call(B + "GetDevice", {"address": "00:02.0"}, more=True)
        expect_ok(r, "GetDevice with more")
        check(not r.continues, "GetDevice with more continued")
        expect_ok(c.call(SVC + "GetInfo"), "GetInfo after more")
    finish(d)


@case
def robust_wrong_types(ctx):
    d = ctx.daemon()
    d.take_baseline()
    bad = [
        ("Acquire", {"devices": "0000:00:02.0"}, "devices"),
        ("Acquire", {"devices": ["0000:00:02.0"], "mode": 5}, "mode"),
        ("Acquire", {"devices": ["0000:00:02.0"], "mode": "bogus"}, "mode"),
        ("Acquire", {"devices": ["0000:00:02.0"], "managed": "yes"}, "managed"),
        ("Acquire", {"devices": ["0000:00:02.0"], "frobnicate": 1}, "frobnicate"),
        ("Acquire", {}, "devices"),
        ("GetDevice", {"address": 5}, "address"),
        ("GetDevice", {}, "address"),
        ("Release", {"devices": "0000:00:02.0"}, "devices"),
        ("ListDevices", {"extra": True}, "extra"),
    ]
    with d.connect() as c:
        for method, params, param in bad:
            p = expect_error(c.call(B + method, params), SVC + "InvalidParameter", f"{method}({params})")
            check_eq(p.get("parameter"), param, f"InvalidParameter.parameter of {method}({params})")
        p = expect_error(acquire(c, [5]), B + "InvalidParameter", "devices: [5]")
        check(p.get("message"), "no message")
        r = c.call(B + "GetDevice", [])         # parameters not an object
        check(r.error in (SVC + "InvalidParameter", B + "InvalidParameter"), f"parameters as an array: {r}")
        if not c.is_closed_by_peer(0.3):
            expect_ok(c.call(B + "ListDevices"), "after wrong types")
    check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after bad Acquires")
    check_usable(d)
    finish(d)


@case
def robust_unsolicited_fds(ctx):
    d = ctx.daemon()
    d.take_baseline()
    pipes = [os.pipe() for _ in range(5)]
    with d.connect() as c:
        r = c.call(B + "ListDevices", fds=[p[0] for p in pipes[:3]])
        expect_ok(r, "ListDevices with 3 unsolicited fds")
        check_eq(r.fds, [], "reply fds")
        r = acquire(c, ["0000:00:02.0"], "unbound")
        r.close_fds()
        c.send_call(B + "Release", {}, fds=[pipes[3][0], pipes[4][0]])
        expect_ok(c.recv(), "Release with 2 unsolicited fds")
        d.wait_state("0000:00:02.0", "available", 3.0)
    for rd, wr in pipes:
        os.close(rd)
    for rd, wr in pipes:
        wait_for(lambda: _pipe_broken(wr), 5, 0.05, "the daemon to close the unsolicited fds")
        os.close(wr)
    # More fds than a message may carry (64): the daemon takes none at all
    # (the kernel drops them), so the call may be answered or refused.
    many = [os.pipe() for _ in range(70)]
    try:
        with d.connect() as c:
            try:
                c.send_call(B + "ListDevices", fds=[p[0] for p in many])
                r = c.recv(10)
                check_eq(r.fds, [], "reply fds to a call with 70 fds")
            except (Closed, BrokenPipeError, ConnectionResetError, OSError):
                pass        # refusing the message by closing is acceptable
    finally:
        for rd, wr in many:
            os.close(rd)
            os.close(wr)
    check_usable(d)
    finish(d)


@case
def robust_oneway_pipelined(ctx):
    d = ctx.daemon()
    d.take_baseline()
    with d.connect() as c:
        # oneway: no reply, not even for an error; the next reply is for the next call.
        c.send_call(B + "ListDevices", oneway=True)
        c.send_call(B + "Frobnicate", oneway=True)
        c.send_call(B + "GetDevice", {"address": "garbage"}, oneway=True)
        r = c.call(SVC + "GetInfo")
        check("interfaces" in expect_ok(r, "GetInfo after oneway calls"), f"reply to a oneway call: {r}")
        # oneway calls run: a oneway Release ends the lease.
        r = acquire(c, ["0000:00:02.0"], "unbound")
        r.close_fds()
        c.send_call(B + "Release", {}, oneway=True)
        d.wait_state("0000:00:02.0", "available")

        # Pipelined: several calls in one write, answered in order; fds go with the right reply.
        msgs = [
            {"method": SVC + "GetInfo"},
            {"method": B + "Acquire", "parameters": {"devices": ["0000:00:02.0"], "mode": "unbound"}},
            {"method": B + "GetDevice", "parameters": {"address": "0000:00:02.0"}},
            {"method": B + "Acquire", "parameters": {"devices": ["0000:00:08.0"], "mode": "attached"}},
            {"method": B + "GetDevice", "parameters": {"address": "0000:00:09.0"}},
            {"method": B + "Release", "parameters": {}},
            {"method": B + "ListDevices"},
        ]
        c.send_raw(b"".join(json.dumps(m).encode() + b"\0" for m in msgs))
        replies = [c.recv() for _ in msgs]
        check("interfaces" in expect_ok(replies[0], "pipelined GetInfo"), "pipelined reply 0")
        check_acquire_reply(replies[1], ["0000:00:02.0"], "unbound")
        check_eq(expect_ok(replies[2], "pipelined GetDevice")["device"]["state"], "leased", "pipelined 02.0 state")
        check_eq(replies[2].fds, [], "fds on the GetDevice reply")
        check_acquire_reply(replies[3], ["0000:00:08.0"], "attached")
        expect_device_error(replies[4], "DeviceNotFound", "0000:00:09.0", "pipelined GetDevice 09.0")
        expect_ok(replies[5], "pipelined Release")
        devs = {x["address"]: x["state"] for x in expect_ok(replies[6], "pipelined ListDevices")["devices"]}
        check_eq((devs["0000:00:02.0"], devs["0000:00:08.0"]), ("releasing", "releasing"),
                 "states after Release, fds still open")
        for r in replies:
            r.close_fds()
        d.wait_state("0000:00:02.0", "available", 3.0)
        d.wait_state("0000:00:08.0", "available", 3.0)
        # Byte by byte.
        data = json.dumps({"method": B + "GetDevice", "parameters": {"address": "00:03.0"}}).encode() + b"\0"
        for i in range(len(data)):
            c.send_raw(data[i:i + 1])
        check_eq(expect_ok(c.recv(), "byte-by-byte call")["device"]["address"], "0000:00:03.0", "byte-by-byte")
    finish(d)


@case
def robust_disconnect_mid_message(ctx):
    d = ctx.daemon()
    d.take_baseline()
    for data in (b'{"method": "io.iommufd.Broker.Acq', b'{', b'{"method": "io.iommufd.Broker.ListDevices"}'):
        c = d.connect()
        c.send_raw(data)
        c.close()
    r, w = os.pipe()
    c = d.connect()
    c.send_raw(b'{"method": "io.iommufd.Broker.ListDe', fds=[r])
    c.close()
    os.close(r)
    wait_for(lambda: _pipe_broken(w), 5, 0.05, "the daemon to close the fd of a half message")
    os.close(w)
    # Disconnect with a call in flight, and with a reply not read.
    for _ in range(3):
        c = d.connect()
        c.send_call(B + "Acquire", {"devices": ["0000:00:02.0"], "mode": "attached"})
        c.close()
    d.wait_state("0000:00:02.0", "available")
    # Disconnect with queued Monitor output.
    m = monitor(d)
    with d.connect() as c:
        for _ in range(5):
            r = acquire(c, ["0000:00:08.0"], "unbound")
            r.close_fds()
            expect_ok(c.call(B + "Release", {}), "Release")
    m.close()
    check_usable(d)
    finish(d)


@case
def robust_idle_timeout(ctx):
    d = ctx.daemon(args=["--idle-timeout", "1"])
    d.take_baseline()
    idle = d.connect()
    expect_ok(idle.call(SVC + "GetInfo"), "GetInfo")
    m = monitor(d)
    start = time.monotonic()
    check(idle.is_closed_by_peer(5), "an idle connection was not closed with --idle-timeout 1")
    check(time.monotonic() - start >= 0.5, "idle connection closed too early")
    never_called = d.connect()
    check(never_called.is_closed_by_peer(5), "a connection that never called was not closed")
    # The Monitor stream is not idle: it still gets events.
    with d.connect() as c:
        r = acquire(c, ["0000:00:02.0"], "unbound")
        r.close_fds()
    e = next_lease_event(m)
    check_eq((e["event"], e.get("address")), ("lease-acquired", "0000:00:02.0"), "Monitor after the idle timeout")
    idle.close()
    never_called.close()
    m.close()
    finish(d)


@case
def idle_timeout_keeps_leases(ctx):
    """A connection that holds a lease is a VMM using the device: the idle
    timeout must not end it (docs/client.md: a lease lives as long as the
    connection; iommufdctl run keeps a silent connection for hours)."""
    d = ctx.daemon(args=["--idle-timeout", "1"])
    d.take_baseline()
    c = d.connect()
    r = acquire(c, ["0000:00:02.0"], "unbound")
    check_acquire_reply(r, ["0000:00:02.0"], "unbound")
    time.sleep(2.5)
    check_eq(d.get_device("0000:00:02.0")["state"], "leased",
             "02.0 after 2.5 s of silence on its connection with --idle-timeout 1")
    check(not c.is_closed_by_peer(0.2), "the idle timeout closed a connection that holds a lease")
    r.close_fds()
    c.close()
    d.wait_state("0000:00:02.0", "available")
    finish(d)


@case
def robust_connection_cap(ctx):
    """--max-connections-per-uid counts a user's connections exactly; another
    uid has its own count; root is never refused."""
    d = ctx.daemon(args=["--max-connections-per-uid", "3"])
    d.take_baseline()

    def fill():
        conns = [d.connect() for _ in range(3)]
        for c in conns:
            expect_ok(c.call(SVC + "GetInfo"), "a connection under the cap")
        extra = d.connect()
        try:
            r = extra.recv(5)
        except Closed:
            raise TestFailure("the 4th connection was closed without a LimitExceeded message")
        expect_error(r, B + "LimitExceeded", "4th connection with a cap of 3")
        check(extra.is_closed_by_peer(), "the 4th connection was not closed")
        extra.close()

        conns.pop().close()

        def fourth_ok():
            with d.connect() as c:
                try:
                    r = c.call(SVC + "GetInfo", timeout=2)
                except Closed:
                    return False
                return r.error is None
        wait_for(fourth_ok, 5, 0.1, "a new connection after closing one")
        for c in conns:
            c.close()
        return True
    run_as(NOBODY, fill)

    # Another uid has its own count, and root is not capped at all.
    def other():
        with d.connect() as c:
            return expect_ok(c.call(SVC + "GetInfo"), "GetInfo as uid 20001")["interfaces"]
    run_as(20001, other)
    conns = [d.connect() for _ in range(5)]
    for c in conns:
        expect_ok(c.call(SVC + "GetInfo"), "root past a per-uid cap of 3")
        c.close()
    finish(d)


@case
def robust_global_cap(ctx):
    """--max-connections: the cap on all users together, of which the last 32
    are root's (issue 9: the bench raises it for 10,000 sessions)."""
    d = ctx.daemon(args=["--max-connections", "36", "--max-connections-per-uid", "64"])
    d.take_baseline()

    def others_fill_their_share():
        held = []
        for _ in range(4):
            c = d.connect()
            expect_ok(c.call(SVC + "GetInfo"), "a connection of nobody under the global cap")
            held.append(c)
        extra = d.connect()
        try:
            r = extra.recv(5)
        except Closed:
            raise TestFailure("the 5th connection of nobody was closed without a LimitExceeded message")
        expect_error(r, B + "LimitExceeded", "5th connection of nobody with a global cap of 36")
        check("too many connections" in r.parameters.get("message", ""), f"names the cap: {r.parameters}")
        extra.close()
        return True

    # Nobody fills the non-reserved share and holds it while root gets in.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            others_fill_their_share()
            os.write(w, b"ok")
            time.sleep(10)          # hold them while root checks; killed then
            os._exit(0)
        except BaseException as e:  # noqa: B902
            os.write(w, f"fail: {e}".encode())
            os._exit(1)
    os.close(w)
    got = os.read(r, 4096).decode()
    os.close(r)
    try:
        check(got == "ok", f"nobody's connections: {got}")
        with d.connect() as c:
            expect_ok(c.call(SVC + "GetInfo"), "root while nobody holds the non-reserved share")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    # A cap of 0 or a non-number is refused at start.
    for bad in ("0", "many"):
        out = subprocess.run([os.environ["BROKER_FAKE"], "--max-connections", bad, "--no-dbus"],
                             capture_output=True, text=True, timeout=10)
        check(out.returncode != 0 and "--max-connections" in out.stderr,
              f"--max-connections {bad}: exit {out.returncode}, {out.stderr.strip()!r}")
    finish(d)


@case
def robust_all_in_one(ctx):
    """All the abuse on one daemon, then the fd count is back at the baseline."""
    d = ctx.daemon(args=["--max-connections-per-uid", "8"])
    d.take_baseline()
    send_bad(d, b'{"method": \0', what="bad JSON")
    send_bad(d, b'[]\0', what="array")
    send_bad(d, json.dumps({"method": B + "ListDevices", "parameters": {"x": "y" * 300000}}).encode() + b"\0",
             want=B + "LimitExceeded", what="oversized")
    r, w = os.pipe()
    with d.connect() as c:
        expect_error(c.call(B + "Nope", fds=[r]), SVC + "MethodNotFound", "unknown method with an fd")
        expect_error(c.call(B + "Acquire", {"devices": "x"}), SVC + "InvalidParameter", "devices as a string")
        c.send_call(B + "ListDevices", oneway=True)
        held = acquire(c, ["0000:00:03.0", "0000:00:03.1"], "attached")
        check_acquire_reply(held, ["0000:00:03.0", "0000:00:03.1"], "attached")
        held.close_fds()
    os.close(r)
    wait_for(lambda: _pipe_broken(w), 5, 0.05, "an unsolicited fd to be closed")
    os.close(w)
    half = d.connect()
    half.send_raw(b'{"meth')
    half.close()
    m = monitor(d)
    with d.connect() as c:
        r = acquire(c, ["0000:00:02.0"], "bound")
        r.close_fds()
    m.close()
    d.wait_state("0000:00:02.0", "available")
    d.wait_state("0000:00:03.0", "available")
    check_usable(d)
    finish(d)


# ==========================================================================
# the client library (integ-client)
# ==========================================================================

def integ_client(d, *args, check_rc=True):
    p = subprocess.run([env_path("INTEG_CLIENT"), d.socket] + list(args), capture_output=True, text=True,
                       timeout=25)
    if check_rc and p.returncode != 0:
        raise TestFailure(f"integ-client {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise TestFailure(f"integ-client {' '.join(args)} printed no JSON: {p.stdout!r} {p.stderr!r}")


@case
def lib_list_get(ctx):
    d = ctx.daemon()
    d.take_baseline()
    raw = {x["address"]: x for x in d.list_devices()}
    out = integ_client(d, "list")["devices"]
    check_eq(sorted(x["address"] for x in out), sorted(raw), "library list addresses")
    for x in out:
        w = raw[x["address"]]
        a = x["address"]
        check_eq((x["vendor_id"], x["device_id"], x["class"]), (w["vendorId"], w["deviceId"], w["class"]), f"{a} ids")
        check_eq(x["driver"], w.get("driver") or "", f"{a} driver")
        check_eq(x["iommu_group"], w.get("iommuGroup", -1), f"{a} group")
        check_eq(x["group_members"].split(), w["groupMembers"], f"{a} group members")
        check_eq(x["vfio_cdev"], w.get("vfioCdev") or "", f"{a} cdev")
        check_eq(x["noiommu"], w["noiommu"], f"{a} noiommu")
        check_eq((x["state"], x["reason"]), (w["state"], w.get("reason") or ""), f"{a} state/reason")
    got = integ_client(d, "get", "00:02.0")["device"]
    check_eq((got["address"], got["state"]), ("0000:00:02.0", "available"), "library get 00:02.0")
    err = integ_client(d, "get", "0000:00:09.0")["error"]
    check_eq((err["name"], err["r"]), ("DeviceNotFound", -19), "library get of an unknown device")
    check("0000:00:09.0" in err["message"], f"message: {err}")
    err = integ_client(d, "get", "garbage")["error"]
    check_eq(err["name"], "InvalidParameter", "library get garbage")
    finish(d)


def check_lib_acquire(d, mode, devices):
    out = integ_client(d, "acquire", mode, *devices)
    lease = out["lease"]
    check(lease["session"] > 0, f"session {lease['session']}")
    check_eq(lease["iommufd"]["link"], FAKE_IOMMUFD, "library: the iommufd's name")
    check(lease["iommufd"]["cloexec"], "library: the iommufd is not O_CLOEXEC")
    check_eq([x["address"] for x in lease["devices"]], devices, "library: lease addresses")
    for x in lease["devices"]:
        check_eq(x["link"], fake_vfio(x["address"]), f"library: fd name of {x['address']}")
        check(x["cloexec"], f"library: {x['address']}'s fd is not O_CLOEXEC")
        if mode == "unbound":
            check_eq((x["dev_id"], x["hwpt_id"]), (0, 0), f"unbound ids of {x['address']}")
        elif mode == "bound":
            check(x["dev_id"] > 0 and x["hwpt_id"] == 0, f"bound ids {x}")
        else:
            check(x["dev_id"] > 0 and x["hwpt_id"] > 0, f"attached ids {x}")
    check((lease["ioas_id"] > 0) == (mode == "attached"), f"ioas_id {lease['ioas_id']} in {mode} mode")
    for a in devices:
        check_eq(out["leased"][a]["state"], "leased", f"{a} while the library holds it")
        check_eq((out["leased"][a]["holder_session"], out["leased"][a]["holder_uid"]), (lease["session"], 0),
                 f"{a} holder")
        # The client still held the fds when it looked: releasing until it exits.
        check_eq(out["released"][a]["state"], "releasing", f"{a} after the library released it")
        d.wait_state(a, "available", 3.0)
    ev = [(e["type"], e["address"], e["reason"]) for e in out["events"]]
    for a in devices:
        check(("lease-acquired", a, "") in ev, f"no lease-acquired event for {a}: {ev}")
        check(("lease-ended", a, "released") in ev, f"no lease-ended/released event for {a}: {ev}")
        check(ev.index(("lease-acquired", a, "")) < ev.index(("lease-ended", a, "released")), f"event order {ev}")
    check(all(e["session"] == lease["session"] for e in out["events"]), f"event sessions: {out['events']}")


@case
def lib_acquire(ctx):
    d = ctx.daemon()
    d.take_baseline()
    check_lib_acquire(d, "attached", ["0000:00:02.0"])
    check_lib_acquire(d, "unbound", ["0000:00:03.0", "0000:00:03.1"])
    check_lib_acquire(d, "bound", ["0000:00:08.0"])
    check_lib_acquire(d, "attached", ["0000:00:02.0", "0000:00:08.0"])
    out = integ_client(d, "two-acquires")
    f, s = out["first"], out["second"]
    check_eq(f["iommufd"]["inode"], s["iommufd"]["inode"], "iommufd inode of two library acquires")
    check_eq(f["session"], s["session"], "session of two acquires on one handle")
    check_eq([x["link"] for x in s["devices"]], [fake_vfio("0000:00:03.0"), fake_vfio("0000:00:03.1")],
             "second acquire's fds (short addresses given)")
    for a in ("0000:00:02.0", "0000:00:03.0", "0000:00:03.1"):
        d.wait_state(a, "available")
    finish(d)


@case
def lib_errors(ctx):
    d = ctx.daemon(env={"IOMMUFD_BROKER_FAKE_GROUP_OPEN": "0000:00:08.0"})
    d.take_baseline()
    want = [
        (["0000:00:05.0"], "GroupNotViable", -16),
        (["0000:00:06.0"], "NoIommuRefused", -1),
        (["0000:00:07.0"], "DeviceUnavailable", -6),
        (["0000:00:09.0"], "DeviceNotFound", -19),
        (["0000:00:08.0"], "DeviceBusy", -16),
    ]
    for devs, name, r in want:
        # A group open elsewhere is refused at BIND, as by the kernel: not in unbound mode.
        err = integ_client(d, "error", "bound" if name == "DeviceBusy" else "unbound", *devs)
        check("error" in err, f"library acquire of {devs} succeeded: {err}")
        err = err["error"]
        check_eq(err["name"], name, f"iommufd_broker_error_name for {devs}")
        check_eq(err["r"], r, f"return value for {name}")
        check(devs[0] in err["message"], f"message does not name {devs[0]}: {err}")
    err = integ_client(d, "release-error", "0000:00:02.0")["error"]
    check_eq((err or {}).get("name"), "NotHeld", "library release of a device not held")

    # PermissionDenied through the library, as uid 65534. The build tree may
    # not be readable by that uid (a checkout under /root): run copies of the
    # client and the library from the daemon's world-readable temp dir.
    client = os.path.join(d.dir, "integ-client")
    shutil.copy(env_path("INTEG_CLIENT"), client)
    libdir = os.environ["LD_LIBRARY_PATH"].split(":")[0]
    shutil.copy(os.path.join(libdir, "libiommufd-broker.so.0"), d.dir)

    def denied():
        p = subprocess.run([client, d.socket, "error", "attached", "0000:00:02.0"],
                           capture_output=True, text=True, timeout=25,
                           env=dict(os.environ, LD_LIBRARY_PATH=d.dir))
        return json.loads(p.stdout)
    err = run_as(NOBODY, denied)
    check_eq(err.get("error", {}).get("name"), "PermissionDenied", "library acquire as nobody")
    check_eq(err["error"]["r"], -1, "PermissionDenied's errno")
    finish(d)


@case
def lib_events(ctx):
    d = ctx.daemon()
    d.take_baseline()
    out = integ_client(d, "events-other")
    ev = [(e["type"], e["address"], e["reason"]) for e in out["events"]]
    want = [("lease-acquired", "0000:00:02.0", ""), ("lease-releasing", "0000:00:02.0", "released"),
            ("lease-ended", "0000:00:02.0", "released"),
            ("lease-acquired", "0000:00:03.0", ""), ("lease-releasing", "0000:00:03.0", "disconnected"),
            ("lease-ended", "0000:00:03.0", "disconnected")]
    check_eq(ev, want, "events seen by another handle")
    sessions = [e["session"] for e in out["events"]]
    check(len(set(sessions)) == 1 and sessions[0] > 0, f"event sessions: {sessions}")
    finish(d)


# ==========================================================================
# iommufdctl
# ==========================================================================

def ctl(d, *args, env=None, use_env=False, timeout=20):
    cmd = [env_path("IOMMUFDCTL")]
    e = dict(os.environ)
    e.pop("IOMMUFD_BROKER_SOCKET", None)
    if use_env:
        e["IOMMUFD_BROKER_SOCKET"] = d.socket
    else:
        cmd += ["--socket", d.socket]
    e.update(env or {})
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=e)


@case
def cli_list_info(ctx):
    d = ctx.daemon()
    d.take_baseline()
    raw = {x["address"]: x for x in d.list_devices()}
    p = ctl(d, "list")
    check_eq(p.returncode, 0, f"iommufdctl list: {p.stderr}")
    lines = p.stdout.splitlines()
    check(lines and lines[0].split()[0] == "ADDRESS" and "STATE" in lines[0], f"table header: {lines[:1]}")
    rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
    check_eq(sorted(rows), sorted(raw), "addresses in the table")
    for a, line in rows.items():
        check(raw[a]["state"] in line.split(), f"{a}: state {raw[a]['state']} not in {line!r}")
    check("1b36:0010" in rows["0000:00:02.0"] and "vfio0" in rows["0000:00:02.0"], f"02.0 row {rows['0000:00:02.0']!r}")
    check("e1000e" in rows["0000:00:04.0"], f"04.0 row {rows['0000:00:04.0']!r}")

    p = ctl(d, "list", "--json", use_env=True)
    check_eq(p.returncode, 0, f"iommufdctl list --json: {p.stderr}")
    js = json.loads(p.stdout)
    check(isinstance(js, list), "list --json is not an array")
    check_eq(sorted(x["address"] for x in js), sorted(raw), "list --json addresses")
    for x in js:
        w = raw[x["address"]]
        for k in ("vendorId", "deviceId", "class", "driver", "iommuGroup", "groupMembers", "vfioCdev", "noiommu",
                  "state", "reason"):
            check_eq(x.get(k), w.get(k), f"list --json {x['address']} {k}")

    p = ctl(d, "info", "00:02.0")
    check_eq(p.returncode, 0, f"iommufdctl info: {p.stderr}")
    for want in ("0000:00:02.0", "1b36:0010", "vfio-pci", "vfio0", "available"):
        check(want in p.stdout, f"info 00:02.0 lacks {want!r}: {p.stdout!r}")
    check("Address:" in p.stdout and "IOMMU group:   1" in p.stdout, f"info layout: {p.stdout!r}")
    p = ctl(d, "info", "0000:00:05.0", "--json")
    check_eq(p.returncode, 0, f"info --json: {p.stderr}")
    js = json.loads(p.stdout)
    check_eq((js["address"], js["state"], js["reason"]), ("0000:00:05.0", "unavailable", raw["0000:00:05.0"]["reason"]),
             "info --json 05.0")
    finish(d)


@case
def cli_errors(ctx):
    d = ctx.daemon()
    d.take_baseline()
    p = ctl(d, "info", "00:09.0")
    check_eq(p.returncode, 1, f"info of an unknown device: {p.stdout!r} {p.stderr!r}")
    check(p.stderr.startswith("iommufdctl: DeviceNotFound: ") and "0000:00:09.0" in p.stderr,
          f"error output: {p.stderr!r}")
    p = ctl(d, "acquire", "00:05.0")
    check_eq(p.returncode, 1, f"acquire 05.0: {p.stderr!r}")
    check(p.stderr.startswith("iommufdctl: GroupNotViable: ") and "0000:00:05.1" in p.stderr, f"{p.stderr!r}")
    for args in (["frobnicate"], [], ["info"], ["list", "--bogus"], ["acquire", "00:02.0", "--mode", "sideways"],
                 ["run", "-d", "00:02.0"], ["run", "-d", "00:02.0", "--", "true", "{dev1}"]):
        p = ctl(d, *args)
        check_eq(p.returncode, 2, f"usage error {args}: {p.stdout!r} {p.stderr!r}")
        check(p.stderr.strip(), f"usage error {args} printed nothing on stderr")
    check_eq(d.get_device("0000:00:02.0")["state"], "available", "02.0 after usage errors (nothing acquired)")
    tmp_sock = os.path.join(d.dir, "nothing-here")
    p = subprocess.run([env_path("IOMMUFDCTL"), "--socket", tmp_sock, "list"], capture_output=True, text=True,
                       timeout=20)
    check_eq(p.returncode, 1, f"list on a missing socket: {p.stderr!r}")
    check("iommufdctl: ConnectFailed:" in p.stderr, f"connect failure message: {p.stderr!r}")
    finish(d)


@case
def cli_run(ctx):
    d = ctx.daemon()
    d.take_baseline()
    p = ctl(d, "run", "-d", "00:02.0", "--", "sh", "-c", "readlink /proc/self/fd/{dev0}; readlink /proc/self/fd/{iommufd}")
    check_eq(p.returncode, 0, f"iommufdctl run: {p.stderr!r}")
    check_eq(p.stdout.splitlines(), [fake_vfio("0000:00:02.0"), FAKE_IOMMUFD], "what the command saw")
    d.wait_state("0000:00:02.0", "available")

    # Two devices, {devN} inside a longer argument; only the lease fds are inherited.
    script = ('for f in /proc/self/fd/*; do readlink "$f"; done | grep memfd | sort; '
              'echo "x={dev1},y={iommufd}" | grep -c "x=[0-9]*,y=[0-9]*$"')
    p = ctl(d, "run", "-d", "0000:00:03.0", "-d", "0000:00:03.1", "--", "sh", "-c", script, use_env=True)
    check_eq(p.returncode, 0, f"iommufdctl run with two devices: {p.stderr!r}")
    check_eq(p.stdout.splitlines(), sorted([FAKE_IOMMUFD, fake_vfio("0000:00:03.0"), fake_vfio("0000:00:03.1")]) + ["1"],
             "memfds the command inherited")

    # Unbound by default: the command can hold the device while iommufdctl shows it leased.
    p = ctl(d, "run", "-d", "00:08.0", "--", "sh", "-c", "exit 7")
    check_eq(p.returncode, 7, "run exits with the command's status")
    # The lease ends once the broker has seen every fd closed (unbound: a /proc scan).
    d.wait_state("0000:00:08.0", "available", 3.0)
    p = ctl(d, "run", "-d", "00:08.0", "--", "/nonexistent/command")
    check_eq(p.returncode, 127, "run of a missing command")
    for a in ("0000:00:03.0", "0000:00:03.1", "0000:00:08.0"):
        d.wait_state(a, "available")

    # While the command runs, the device is leased and held by iommufdctl.
    flag = os.path.join(d.dir, "running")
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "run", "-d", "00:02.0", "--",
                      "sh", "-c", f"touch {flag}; exec sleep 30"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: os.path.exists(flag), 10, 0.05, "the command to start")
    dev = d.get_device("0000:00:02.0")
    check_eq((dev["state"], dev["holder"]["pid"]), ("leased", proc.pid), "02.0 while run's command runs")
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(10)
    check_eq(rc, 128 + signal.SIGTERM, "run's status after SIGTERM is forwarded to the command")
    d.wait_state("0000:00:02.0", "available")

    # What a supervisor sends besides SIGTERM reaches the command too. These
    # used to kill iommufdctl alone: the command ran on, orphaned and never
    # told, and its exit status was lost.
    for i, sig in enumerate((signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)):
        flag = os.path.join(d.dir, f"sig-ready-{i}")
        got = os.path.join(d.dir, f"sig-got-{i}")
        script = (f"trap 'echo got > {got}; exit {40 + i}' {sig.name[3:]}; touch {flag}; "
                  "while :; do sleep 0.05; done")
        proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "run", "-d", "00:02.0", "--",
                          "sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
        wait_for(lambda: os.path.exists(flag), 10, 0.05, "the command to start")
        proc.send_signal(sig)
        try:
            rc = proc.wait(10)
        finally:
            if not os.path.exists(got):
                os.killpg(proc.pid, signal.SIGKILL)
        check(os.path.exists(got), f"{sig.name} sent to iommufdctl run reached its command")
        check_eq(rc, 40 + i, f"run's status after {sig.name}: the command's")
        d.wait_state("0000:00:02.0", "available")
    finish(d)


@case
def cli_fd_limit(ctx):
    """Own: a client whose RLIMIT_NOFILE cannot take the fds of an Acquire
    reply (MSG_CTRUNC) was told "ProtocolError: malformed message from the
    broker"; now a clear LocalError naming the limit. The devices go back."""
    import resource
    d = ctx.daemon()
    d.take_baseline()
    for n in (5, 6, 7):
        def low_limit(n=n):
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        p = subprocess.run([env_path("IOMMUFDCTL"), "--socket", d.socket, "acquire", "00:03.0", "00:03.1"],
                           capture_output=True, text=True, timeout=20, preexec_fn=low_limit)
        check_eq(p.returncode, 1, f"acquire with RLIMIT_NOFILE {n}: {p.stderr!r}")
        check("LocalError: cannot receive the file descriptors the broker sent: too many open files" in p.stderr,
              f"acquire with RLIMIT_NOFILE {n} says why: {p.stderr!r}")
        for a in ("0000:00:03.0", "0000:00:03.1"):
            d.wait_state(a, "available")
    finish(d)


@case
def cli_run_back_to_back(ctx):
    """Own: run twice in a row on the same device (a VM restarted by a script
    or a unit's Restart=): the second was refused with DeviceBusy (releasing),
    since the broker learns that an unbound device's fds are closed only by
    polling. run now waits (bounded) for the devices to be free before exiting."""
    d = ctx.daemon()
    d.take_baseline()
    for i in range(3):
        p = ctl(d, "run", "-d", "00:08.0", "--", "true")
        check_eq(p.returncode, 0, f"run #{i + 1} right after the previous one: {p.stderr!r}")
        check_eq(d.get_device("0000:00:08.0")["state"], "available", f"00:08.0 after run #{i + 1}")
    # A lease the broker already took back (a revoke the command ignored until it
    # exited): run still waits for the device to be free.
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "run", "-d", "00:08.0", "--", "sleep", "2"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d.wait_state("0000:00:08.0", "leased")
    p = ctl(d, "revoke", "00:08.0", "--timeout", "1")
    check_eq(p.returncode, 1, f"revoke of a lease whose command ignores it: {p.stderr!r}")
    check_eq(proc.wait(10), 0, "run's status after its lease was revoked")
    p = ctl(d, "run", "-d", "00:08.0", "--", "true")
    check_eq(p.returncode, 0, f"run right after a revoked run: {p.stderr!r}")
    # A command that leaves the fds to a process of its own: run does not wait forever.
    t = time.monotonic()
    p = ctl(d, "run", "-d", "00:08.0", "--", "sh", "-c", "sleep 4 >/dev/null 2>&1 & exit 0")
    check_eq(p.returncode, 0, f"run whose command left a child holding the device: {p.stderr!r}")
    check(time.monotonic() - t < 5.5, f"run waited {time.monotonic() - t:.1f}s for a device a child still holds")
    # info says both who made the lease and why the device is not free yet
    # (it showed only the holder, whose process is gone).
    p = ctl(d, "info", "00:08.0")
    if "State:         releasing" in p.stdout:
        check("Holder:" in p.stdout and "Reason:        releasing (" in p.stdout,
              f"info of a releasing lease: {p.stdout!r}")
    d.wait_state("0000:00:08.0", "available", 10.0)
    # A broker that stops answering once the command ran: run exits with the
    # command's status within its bound, not after the library's 25 s call timeout.
    t = time.monotonic()
    try:
        p = ctl(d, "run", "-d", "00:08.0", "--", "sh", "-c", f"kill -STOP {d.pid}; exit 3")
    finally:
        os.kill(d.pid, signal.SIGCONT)
    check_eq(p.returncode, 3, f"run whose command stopped the broker: {p.stderr!r}")
    check(time.monotonic() - t < 8, f"run took {time.monotonic() - t:.1f}s to exit with the broker stopped")
    d.wait_state("0000:00:08.0", "available", 10.0)
    finish(d)


@case
def cli_acquire_hold(ctx):
    d = ctx.daemon()
    d.take_baseline()
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "acquire", "00:02.0", "0000:00:08.0"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while len(lines) < 4:
        line = proc.stdout.readline()
        if not line:
            raise TestFailure(f"iommufdctl acquire printed {lines} then exited {proc.wait()}: {proc.stderr.read()}")
        lines.append(line.rstrip("\n"))
    check(lines[0].startswith("session "), f"first line: {lines[0]!r}")
    session = int(lines[0].split()[1])
    check(lines[1].startswith("iommufd fd=") and "ioas_id=" in lines[1] and not lines[1].endswith("ioas_id=0"),
          f"iommufd line (attached by default): {lines[1]!r}")
    check(lines[2].startswith("0000:00:02.0 fd=") and "dev_id=" in lines[2] and "hwpt_id=" in lines[2],
          f"device line: {lines[2]!r}")
    check(lines[3].startswith("0000:00:08.0 fd="), f"device line: {lines[3]!r}")
    for a in ("0000:00:02.0", "0000:00:08.0"):
        dev = d.get_device(a)
        check_eq((dev["state"], dev["holder"]["session"], dev["holder"]["pid"]), ("leased", session, proc.pid),
                 f"{a} while iommufdctl acquire holds it")
    # The fds iommufdctl printed are its own.
    fd = int(lines[2].split()[1].split("=")[1])
    check_eq(fd_link(fd, proc.pid), fake_vfio("0000:00:02.0"), "the fd iommufdctl printed")
    time.sleep(0.3)
    check(proc.poll() is None, "iommufdctl acquire did not hold the lease")
    proc.send_signal(signal.SIGTERM)
    check_eq(proc.wait(10), 0, "iommufdctl acquire's status after SIGTERM")
    for a in ("0000:00:02.0", "0000:00:08.0"):
        d.wait_state(a, "available")

    # Unbound mode prints no ids.
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "acquire", "00:03.0", "--mode", "unbound"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline().rstrip("\n") for _ in range(3)]
    check(lines[2].startswith("0000:00:03.0 fd="), f"unbound device line: {lines}")
    check_eq(d.get_device("0000:00:03.0")["state"], "leased", "03.0 held by iommufdctl (unbound)")
    time.sleep(0.3)     # see cli-acquire-signal-early for why
    proc.send_signal(signal.SIGINT)
    check_eq(proc.wait(10), 0, "status after SIGINT")
    d.wait_state("0000:00:03.0", "available")

    # SIGKILL: the broker still cleans up.
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "acquire", "00:02.0"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    check_eq(d.get_device("0000:00:02.0")["state"], "leased", "02.0 before SIGKILL")
    proc.kill()
    proc.wait()
    d.wait_state("0000:00:02.0", "available")
    finish(d)


@case
def cli_acquire_signal_early(ctx):
    """A script that signals iommufdctl acquire as soon as it printed the lease
    must get a clean release and exit 0 (docs/client.md), not a process
    killed by the signal: the signal handling must be in place before the
    lease is printed."""
    d = ctx.daemon()
    d.take_baseline()
    # The window is short: try often enough that a missing handler shows.
    for sig in [signal.SIGTERM, signal.SIGINT] * 10:
        proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "acquire", "00:02.0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(3)]
        check(lines[2].startswith("0000:00:02.0 fd="), f"acquire output: {lines}")
        proc.send_signal(sig)
        rc = proc.wait(10)
        check_eq(rc, 0, f"iommufdctl acquire's status after {sig.name} sent right after the lease was printed")
        d.wait_state("0000:00:02.0", "available")
    finish(d)


@case
def cli_monitor(ctx):
    d = ctx.daemon()
    d.take_baseline()
    proc = ctx.spawn([env_path("IOMMUFDCTL"), "--socket", d.socket, "monitor"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)     # no readiness line: give it time to subscribe
    with d.connect() as c:
        r = acquire(c, ["0000:00:02.0"], "unbound")
        sid = r.parameters["session"]
        r.close_fds()
        expect_ok(c.call(B + "Release", {}), "Release")
    want = [f"lease-acquired 0000:00:02.0 session={sid}", f"lease-releasing 0000:00:02.0 session={sid} reason=released",
            f"lease-ended 0000:00:02.0 session={sid} reason=released"]
    got = []
    while len(got) < 3:
        line = proc.stdout.readline()
        if not line:
            raise TestFailure(f"monitor exited: {got} {proc.stderr.read()}")
        if line.startswith("lease-"):
            got.append(line.strip())
    check_eq(got, want, "iommufdctl monitor lines")
    proc.send_signal(signal.SIGTERM)
    check_eq(proc.wait(10), 0, "monitor's status after SIGTERM")
    finish(d)


if __name__ == "__main__":
    sys.exit(run_case(CASES, sys.argv))
