#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Acquires the broker must refuse though the device itself would do, fast
tier (fake kernel under with-fake-sysfs), over varlink:

  - a managed Acquire of an SR-IOV physical function with VFs enabled
    (unbinding its driver would pull the VFs from their users); with
    sriov_numvfs = 0 the same PF is rebound and leased;
  - a oneway Acquire: nobody would receive the fds;
  - a vfio cdev whose /sys/dev/char/MAJ:MIN now resolves to another device
    (its minor was reused after a rebind race).

Each refusal is typed, names the device, leaves no lease, no rebinding and
no fd behind. tests/dbus/test-dbus-refusals.c does the same over D-Bus.

    test-refusals.py CASE | --list
"""

import importlib.machinery
import importlib.util
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker import (check, check_eq, expect_error, expect_ok, run_case, wait_for)  # noqa: E402

B = "io.iommufd.Broker."
HERE = os.path.dirname(os.path.abspath(__file__))
PF = "0000:00:04.0"             # on e1000e: the managed candidate
VFIO_DEV = "0000:00:02.0"       # on vfio-pci, cdev vfio0 = 511:0
OTHER_CDEV = "../../devices/pci0000:00/0000:00:03.0/vfio-dev/vfio1"
CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


def source_root():
    return os.environ.get("SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))


def load_sysfs_ctl():
    """tests/fixtures/fake-sysfs-ctl as a module: playing the kernel's part
    in-process is quick enough for the daemon's 500 ms driver settle time."""
    path = os.path.join(source_root(), "tests/fixtures/fake-sysfs-ctl")
    loader = importlib.machinery.SourceFileLoader("fake_sysfs_ctl", path)
    spec = importlib.util.spec_from_loader("fake_sysfs_ctl", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def testbed(d):
    """The daemon's umockdev testbed, from its environment."""
    with open(f"/proc/{d.pid}/environ", "rb") as f:
        for var in f.read().split(b"\0"):
            if var.startswith(b"UMOCKDEV_DIR="):
                return var.split(b"=", 1)[1].decode()
    raise AssertionError("the daemon has no UMOCKDEV_DIR")


def device_dir(d, address):
    return os.path.join(testbed(d), "sys/devices/pci0000:00", address)


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def policy_for(address, managed=False):
    rule = {"devices": {"address": address}, "principals": {"users": [os.getuid()]}}
    if managed:
        rule["managed"] = True
    return {"rules": [rule]}


def acquire(conn, devices, **params):
    return conn.call(B + "Acquire", dict(devices=devices, **params))


def expect_refused(reply, name, device, words, what):
    """Typed error naming the device; no fds come with it."""
    p = expect_error(reply, B + name, what)
    check_eq(p.get("device"), device, f"{what}: parameters.device")
    msg = p.get("message") or ""
    check(device in msg, f"{what}: message does not name {device}: {msg!r}")
    for w in words:
        check(w in msg, f"{what}: message lacks {w!r}: {msg!r}")
    check_eq(len(reply.fds), 0, f"{what}: fds sent with the error")


def daemon_holds_vfio(d, address):
    return any(f"fake-vfio-{address}" in target for target in d.fds().values())


def finish(d):
    check(d.alive(), "daemon died")
    d.check_baseline()
    d.stop()


def play_kernel_rebind(d, address, driver, stop):
    """When the daemon asks (drivers_probe names the device), bind it to
    driver as the kernel would, cdev and uevent included."""
    ctl = load_sysfs_ctl()
    root = testbed(d)
    probe = os.path.join(root, "sys/bus/pci/drivers_probe")
    while not stop.is_set():
        if address in read(probe) and read(os.path.join(device_dir(d, address), "driver_override")).startswith(driver):
            ddir = ctl.device_dir(root, address)
            ctl.bind(root, address, ddir, driver)
            ctl.send_uevent(root, "bind", ctl.devpath_of(root, ddir), extra=[f"DRIVER={driver}"])
            return
        time.sleep(0.002)


@case
def sriov_pf_managed_refused(ctx):
    """A PF with VFs enabled is refused for managed acquire (root too, as
    policy is not the reason), before any driver is touched; the same PF
    with sriov_numvfs = 0 is rebound to vfio-pci and leased."""
    d = ctx.daemon(policy=policy_for(PF, managed=True))
    ddir = device_dir(d, PF)
    write(os.path.join(ddir, "sriov_numvfs"), "2\n")
    write(os.path.join(ddir, "sriov_totalvfs"), "7\n")
    d.take_baseline()

    with d.connect() as c:
        for mode in ("attached", "bound", "unbound"):
            r = acquire(c, [PF], mode=mode, managed=True)
            expect_refused(r, "DeviceUnavailable", PF, ["SR-IOV", "VFs enabled", "managed"], f"managed {mode}")
        # Without managed it is the usual "on a host driver" refusal, not SR-IOV.
        r = acquire(c, [PF], mode="unbound")
        p = expect_error(r, B + "DeviceUnavailable", "unmanaged")
        check("SR-IOV" not in p.get("message", ""), f"unmanaged refusal blames SR-IOV: {p}")
    dev = d.get_device(PF)
    check_eq((dev["state"], dev.get("driver")), ("available", "e1000e"), "PF after the refusals")
    check_eq(read(os.path.join(ddir, "driver_override")), "(null)\n", "driver_override untouched")
    check_eq(os.path.basename(os.readlink(os.path.join(ddir, "driver"))), "e1000e", "driver link untouched")
    check("0000:00:04.0" not in read(os.path.join(testbed(d), "sys/bus/pci/drivers/e1000e/unbind")),
          "the PF was unbound from e1000e")
    d.check_baseline()

    # sriov_numvfs = 0: an ordinary device, rebound and leased.
    write(os.path.join(ddir, "sriov_numvfs"), "0\n")
    stop = threading.Event()
    kernel = threading.Thread(target=play_kernel_rebind, args=(d, PF, "vfio-pci", stop))
    kernel.start()
    try:
        with d.connect() as c:
            r = acquire(c, [PF], mode="unbound", managed=True)
            p = expect_ok(r, "managed Acquire of the PF with sriov_numvfs = 0")
            check_eq(len(r.fds), 2, "fds of the managed Acquire")
            check_eq([x["address"] for x in p["devices"]], [PF], "devices in the reply")
            dev = d.get_device(PF)
            check_eq((dev["state"], dev.get("driver")), ("leased", "vfio-pci"), "PF after the managed Acquire")
            r.close_fds()
    finally:
        stop.set()
        kernel.join()
    check(d.alive(), "daemon died")
    d.stop()


@case
def oneway_acquire_refused(ctx):
    """A oneway Acquire gets no reply (none may be sent), leases nothing,
    opens nothing that stays open, and is logged; the connection goes on."""
    d = ctx.daemon(policy=policy_for(VFIO_DEV))
    d.take_baseline()
    with d.connect() as c:
        for mode in ("attached", "bound", "unbound"):
            c.send_call(B + "Acquire", {"devices": [VFIO_DEV], "mode": mode}, oneway=True)
        # The next reply on this connection is for this call: nothing was
        # sent for the oneway ones, fds least of all.
        r = c.call(B + "GetDevice", {"address": VFIO_DEV})
        p = expect_ok(r, "GetDevice after the oneway Acquires")
        check_eq(len(r.fds), 0, "fds after the oneway Acquires")
        check_eq(p["device"]["state"], "available", "device state after the oneway Acquires")
        check(not daemon_holds_vfio(d, VFIO_DEV), "the daemon holds the device's fd")
        # The same connection can still acquire it for real.
        r = acquire(c, [VFIO_DEV], mode="unbound")
        expect_ok(r, "Acquire after the oneway ones")
        r.close_fds()
    wait_for(lambda: d.get_device(VFIO_DEV)["state"] == "available", 10, 0.05, "the lease to end")
    log = d.read_log()
    check_eq(log.count("refusing a oneway Acquire from uid"), 3, "log lines for the oneway Acquires")
    finish(d)


@case
def cdev_minor_reused(ctx):
    """Between inventory and open, the device's cdev minor went to another
    device (/sys/dev/char/511:0 now resolves to 00:03.0's vfio1): the fd is
    not handed out, nothing is leased, the error says why."""
    d = ctx.daemon(policy=policy_for(VFIO_DEV))
    link = os.path.join(testbed(d), "sys/dev/char/511:0")
    own = os.readlink(link)
    check(own.endswith(f"{VFIO_DEV}/vfio-dev/vfio0"), f"fixture: 511:0 -> {own}")
    d.take_baseline()

    os.unlink(link)
    os.symlink(OTHER_CDEV, link)
    with d.connect() as c:
        for mode in ("attached", "bound", "unbound"):
            r = acquire(c, [VFIO_DEV], mode=mode)
            expect_refused(r, "DeviceUnavailable", VFIO_DEV, ["vfio0", "another device"], f"reused minor, {mode}")
        check(not daemon_holds_vfio(d, VFIO_DEV), "the daemon kept the refused device's fd")
        check_eq(d.get_device(VFIO_DEV)["state"], "available", "state after the refusals")
        # A cdev that vanished (unbound meanwhile) is refused the same way.
        os.unlink(link)
        r = acquire(c, [VFIO_DEV], mode="unbound")
        expect_refused(r, "DeviceUnavailable", VFIO_DEV, ["vfio0"], "vanished minor")
    d.check_baseline()

    # Control: the link back in place, the same Acquire works.
    os.symlink(own, link)
    with d.connect() as c:
        r = acquire(c, [VFIO_DEV], mode="bound")
        expect_ok(r, "Acquire with the right /sys/dev/char link")
        r.close_fds()
    wait_for(lambda: d.get_device(VFIO_DEV)["state"] == "available", 10, 0.05, "the lease to end")
    finish(d)


if __name__ == "__main__":
    sys.exit(run_case(CASES, sys.argv))
