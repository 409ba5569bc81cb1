#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Managed rebinding off the event loop, fast tier: the fake-kernel daemon
rebinds 0000:00:04.0 (e1000e in the fixture) to vfio-pci in a worker, slowed
down by IOMMUFD_BROKER_TEST_REBIND_DELAY_MS (the worker sleeps between unbind
and probe). Meanwhile other callers are answered at once, the device shows
busy, a second Acquire gets DeviceBusy; a client that leaves, a rebind that
times out (IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS) or fails gives the device
back to e1000e with its driver_override as before.

A thread plays the kernel's part in the umockdev testbed (FakeKernel): it
consumes what the daemon writes to unbind, bind and drivers_probe, and moves
the device with tests/fixtures/fake-sysfs-ctl, which also sends the uevent.
The VM tier does the same against a real 7.3 kernel (tests/vm/guest).

    test-rebind.py CASE | --list
"""

import importlib.machinery
import importlib.util
import os
import re
import select
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker import (Daemon, check, check_eq, env_path, expect_error, expect_ok, fd_link,  # noqa: E402
                    proc_children, run_case, wait_for)

B = "io.iommufd.Broker."
DEV = "0000:00:04.0"
HOST_DRIVER = "e1000e"
CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


class FakeKernel:
    """Plays sysfs for the devices in hosts (address -> host driver) inside
    the daemon's testbed, from a thread. The bus-wide files the daemon
    writes (drivers/*/unbind, drivers/*/bind, drivers_probe) become FIFOs,
    so that no write is lost when two workers write at once; a write is
    acted on within a few ms (the kernel acts before the write returns)."""

    def __init__(self, daemon, hosts=None, refuse_vfio=()):
        with open(f"/proc/{daemon.pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        self.root = env[b"UMOCKDEV_DIR"].decode()
        # fake-sysfs-ctl's functions, in this process: no start-up per action.
        path = os.path.join(env_path("SOURCE_ROOT"), "tests", "fixtures", "fake-sysfs-ctl")
        loader = importlib.machinery.SourceFileLoader("fake_sysfs_ctl", path)
        self.ctl = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        loader.exec_module(self.ctl)
        self.hosts = dict(hosts or {DEV: HOST_DRIVER})
        self.refuse_vfio = set(refuse_vfio)     # vfio-pci does not bind these ("not loaded")
        self.writes = []        # (file, address) and ("kernel-bound", driver), in order
        self.fifos = []         # (kind, driver, read fd, write fd)
        drivers = self.sys("bus/pci/drivers")
        for drv in sorted(os.listdir(drivers)):
            for kind in ("unbind", "bind"):
                self.make_fifo(os.path.join(drivers, drv, kind), kind, drv)
        self.make_fifo(self.sys("bus/pci/drivers_probe"), "probe", None)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def make_fifo(self, path, kind, drv):
        if os.path.lexists(path):
            os.unlink(path)
        os.mkfifo(path, 0o600)
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Our own writer end: the FIFO never hangs up between daemon writes.
        w = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.fifos.append((kind, drv, r, w))

    def sys(self, *parts):
        return os.path.join(self.root, "sys", *parts)

    def driver(self, bdf=DEV):
        try:    # the thread may unlink it at any moment
            return os.path.basename(os.readlink(self.sys("bus/pci/devices", bdf, "driver")))
        except FileNotFoundError:
            return None

    def override(self, bdf=DEV):
        with open(self.sys("bus/pci/devices", bdf, "driver_override")) as f:
            v = f.read().split("\n")[0].strip()
        return None if v in ("", "(null)") else v

    def has_cdev(self, bdf=DEV):
        return os.path.isdir(self.sys("bus/pci/devices", bdf, "vfio-dev"))

    def ctl_run(self, bdf, action, driver=None):
        ddir = self.ctl.device_dir(self.root, bdf)
        if action == "bind":
            self.writes.append(("kernel-bound", driver))
            self.ctl.bind(self.root, bdf, ddir, driver)
            extra = [f"DRIVER={driver}"]
        else:
            self.ctl.unbind(self.root, bdf, ddir)
            extra = []
        self.ctl.send_uevent(self.root, action, self.ctl.devpath_of(self.root, ddir), extra=extra)

    def handle(self, kind, drv, bdf):
        self.writes.append((f"{drv}/{kind}" if drv else "drivers_probe", bdf))
        if bdf not in self.hosts:
            return
        if kind == "unbind":
            if self.driver(bdf) == drv:
                self.ctl_run(bdf, "unbind")
        elif kind == "probe":
            want = self.override(bdf) or self.hosts[bdf]
            if self.driver(bdf) is None and not (want == "vfio-pci" and bdf in self.refuse_vfio):
                self.ctl_run(bdf, "bind", want)
        elif self.driver(bdf) is None:
            self.ctl_run(bdf, "bind", drv)

    def step(self):
        ready = {fd for fd, _ in self.poller.poll(2)}
        got = []
        for kind, drv, r, _ in self.fifos:
            if r in ready:
                data = os.read(r, 4096).decode().replace("\n", "")
                # Each write is one address (12 characters); reads may join them.
                got += [(kind, drv, data[i:i + 12]) for i in range(0, len(data), 12)]
        # Within one wakeup: unbinds, then probes, then binds, as the
        # daemon's writes happen one after the other.
        for order in ("unbind", "probe", "bind"):
            for kind, drv, bdf in got:
                if kind == order:
                    self.handle(kind, drv, bdf)

    def run(self):
        self.poller = select.poll()
        for _, _, r, _ in self.fifos:
            self.poller.register(r, select.POLLIN)
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as e:  # noqa: B902 - reported through writes, seen by the checks
                self.writes.append(("error", repr(e)))
                time.sleep(0.01)

    def close(self):
        self.stop.set()
        self.thread.join()
        for _, _, r, w in self.fifos:
            os.close(r)
            os.close(w)


def slow_daemon(ctx, delay_ms, timeout_ms=None, hosts=None, refuse_vfio=(), env=None):
    env = dict(env or {}, IOMMUFD_BROKER_TEST_REBIND_DELAY_MS=str(delay_ms))
    if timeout_ms is not None:
        env["IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS"] = str(timeout_ms)
    d = Daemon(env=env)
    # A state directory, so that the "binding" record can be seen.
    d.state_dir = os.path.join(d.dir, "state")
    d.args = ["--state-dir", d.state_dir]
    ctx.daemons.append(d)
    d.start()
    k = FakeKernel(d, hosts, refuse_vfio)
    ctx.kernel = k
    d.take_baseline()
    return d, k


def send_acquire(conn, managed=True, mode="unbound"):
    conn.send_call(B + "Acquire", {"devices": [DEV], "mode": mode, "managed": managed})


def record_path(d, bdf=DEV):
    return os.path.join(d.state_dir, "leases", bdf)


def wait_busy(d):
    dev = wait_for(lambda: (lambda x: x if x["state"] == "busy" else None)(d.get_device(DEV)), 5, 0.01,
                   f"{DEV} to show busy")
    check("rebinding to vfio-pci" in (dev.get("reason") or ""), f"busy without the rebinding reason: {dev}")
    return dev


def wait_given_back(d, k, bdf=DEV):
    """bdf back on e1000e, driver_override as before, available, no record."""
    wait_for(lambda: d.get_device(bdf)["state"] == "available" and k.driver(bdf) == HOST_DRIVER, 10, 0.02,
             f"{bdf} back on {HOST_DRIVER} and available")
    check_eq(k.override(bdf), None, f"driver_override of {bdf} after giving back")
    check(not k.has_cdev(bdf), f"a vfio cdev of {bdf} is left behind")
    check(not os.path.exists(record_path(d, bdf)), f"the binding record of {bdf} is left behind")
    check_eq(d.get_device(bdf).get("driver"), HOST_DRIVER, f"driver GetDevice shows for {bdf}")


def finish(ctx, d, k):
    k.close()
    check(d.alive(), "daemon died")
    check(not [w for w in k.writes if w[0] == "error"], f"fake kernel errors: {k.writes}")
    d.check_baseline()
    d.stop()


def list_latencies(d, seconds):
    """ListDevices from another connection, again and again: sorted times in s."""
    times = []
    end = time.monotonic() + seconds
    with d.connect() as c:
        while time.monotonic() < end:
            t = time.monotonic()
            expect_ok(c.call(B + "ListDevices"), "ListDevices during the rebind")
            times.append(time.monotonic() - t)
            time.sleep(0.02)
    return sorted(times)


@case
def rebind_busy_loop_answers(ctx):
    """The loop answers during a slow rebind; the device is busy; it is leased afterwards."""
    d, k = slow_daemon(ctx, delay_ms=1500)
    holder = d.connect()
    t0 = time.monotonic()
    send_acquire(holder)
    wait_busy(d)
    check(os.path.exists(record_path(d)), "no binding record written before the rebind")

    with d.connect() as c:
        p = expect_error(c.call(B + "Acquire", {"devices": [DEV], "managed": True, "mode": "unbound"}),
                         B + "DeviceBusy", "second managed Acquire while rebinding")
        check("rebinding to vfio-pci" in p.get("message", ""), f"DeviceBusy does not name the state: {p}")
        expect_error(c.call(B + "Acquire", {"devices": [DEV], "mode": "bound"}), B + "DeviceBusy",
                     "second plain Acquire while rebinding")
    # Same bar as tests/hostile: p90 under 100 ms (a loaded CI machine may
    # preempt one call; the ASan tier loosens it the same way); the loop
    # itself never waits on the worker.
    limit_ms = int(os.environ.get("HOSTILE_LATENCY_MS", "100"))
    times = list_latencies(d, 0.6)
    p90 = times[int(len(times) * 0.9)]
    print(f"# ListDevices during the rebind: {len(times)} calls, p90 {p90 * 1000:.1f} ms, "
          f"max {times[-1] * 1000:.1f} ms")
    check(p90 * 1000 < limit_ms, f"ListDevices p90 {p90 * 1000:.0f} ms during the rebind (limit {limit_ms})")
    check_eq(d.get_device(DEV)["state"], "busy", "state still during the delay")

    r = holder.recv(timeout=10)
    took = time.monotonic() - t0
    p = expect_ok(r, "managed Acquire after the slow rebind")
    check(took >= 1.4, f"the Acquire answered after {took:.2f} s, before the delay of 1.5 s")
    check_eq(len(r.fds), 2, "fds of the Acquire")
    check(any(fd_link(fd) == f"/memfd:fake-vfio-{DEV} (deleted)" for fd in r.fds), "no device fd")
    check_eq(k.driver(), "vfio-pci", "driver after the rebind")
    check_eq(k.override(), "vfio-pci", "driver_override after the rebind")
    check([w[0] for w in k.writes][:2] == [f"{HOST_DRIVER}/unbind", "drivers_probe"], f"writes: {k.writes}")
    check_eq(d.get_device(DEV)["state"], "leased", "state after the Acquire")
    r.close_fds()
    holder.close()
    wait_given_back(d, k)
    finish(ctx, d, k)


@case
def rebind_client_leaves(ctx):
    """The client disconnects mid-rebind: the worker is stopped, the device given back."""
    d, k = slow_daemon(ctx, delay_ms=5000)
    holder = d.connect()
    send_acquire(holder)
    wait_busy(d)
    # The fake applies the unbind a little after the write; the kernel does
    # it before the write returns.
    wait_for(lambda: k.driver() is None, 5, 0.01, "the unbind")
    t0 = time.monotonic()
    holder.close()
    wait_given_back(d, k)
    took = time.monotonic() - t0
    print(f"# given back {took * 1000:.0f} ms after the client left")
    check(took < 3, f"given back only after {took:.2f} s: the worker was not stopped")
    check_eq([w for w in k.writes if w[0] == "kernel-bound"], [("kernel-bound", HOST_DRIVER)],
             "what the device was bound to (the killed worker never probed)")
    check("giving them back" in d.read_log(), "the log does not say the devices are given back")
    finish(ctx, d, k)


@case
def restore_unbind_waits(ctx):
    """Own: giving the device back waits while vfio-pci's unbind does. The
    kernel's unbind blocks until the device's last fd is closed, also one the
    broker could not see (an unbound fd in flight in a socket); the restore
    worker timed out there, the broker logged "could not give the device
    back" and nobody probed e1000e once the unbind finished: the device stayed
    without a driver. Now the restore stays (busy, record kept) and starts
    again once the stuck worker is gone. Played here by a vfio-pci unbind
    whose open() blocks (a FIFO without a reader: each retry blocks and times
    out again) and an unbind the test does itself when the "holder" lets go;
    the VM tier's restore-waits case does it on the real kernel."""
    d, k = slow_daemon(ctx, delay_ms=0, env={"IOMMUFD_BROKER_TEST_RESTORE_TIMEOUT_MS": "500"})
    with d.connect() as c:
        r = c.call(B + "Acquire", {"devices": [DEV], "managed": True, "mode": "unbound"}, timeout=10)
        expect_ok(r, "managed Acquire")
        check_eq(k.driver(), "vfio-pci", "driver while leased")
        # The kernel's unbind now waits for a holder: a FIFO nobody reads.
        unbind = k.sys("bus/pci/drivers/vfio-pci/unbind")
        os.unlink(unbind)
        os.mkfifo(unbind, 0o600)
        r.close_fds()
        expect_ok(c.call(B + "Release", {}), "Release")
    wait_for(lambda: "waits until the device's last fd is closed" in d.read_log(), 10, 0.05,
             "the broker to say the unbind waits")
    time.sleep(1.5)         # three looks at 500 ms
    dev = d.get_device(DEV)
    check_eq(dev["state"], "busy", "state while vfio-pci's unbind waits")
    check(os.path.exists(record_path(d)), "the restoring record is kept while the unbind waits")
    # The holder let go: the kernel's unbind finishes.
    k.ctl_run(DEV, "unbind")
    wait_given_back(d, k)
    check("the stuck worker is gone; restoring e1000e again" in d.read_log(),
          "the log does not say it restores again")
    finish(ctx, d, k)


@case
def rebind_timeout(ctx):
    """A rebind over its timeout: DriverBindFailed naming the device, nothing left half-bound."""
    d, k = slow_daemon(ctx, delay_ms=5000, timeout_ms=1000)
    with d.connect() as c:
        t0 = time.monotonic()
        p = expect_error(c.call(B + "Acquire", {"devices": [DEV], "managed": True, "mode": "unbound"}, timeout=5),
                         B + "DriverBindFailed", "managed Acquire over its timeout")
        took = time.monotonic() - t0
        print(f"# DriverBindFailed after {took * 1000:.0f} ms (timeout 1000 ms)")
        check(took < 3, f"the timeout of 1000 ms answered after {took:.2f} s (the worker sleeps 5 s)")
        check_eq(p.get("device"), DEV, "device of DriverBindFailed")
        check("did not finish within 1000 ms" in p.get("message", ""), f"message: {p.get('message')!r}")
        wait_given_back(d, k)
        check_eq([w for w in k.writes if w[0] == "kernel-bound"], [("kernel-bound", HOST_DRIVER)],
                 "what the device was bound to")
    finish(ctx, d, k)


@case
def rebind_fails(ctx):
    """vfio-pci never binds (module missing): DriverBindFailed, the device back on e1000e."""
    d, k = slow_daemon(ctx, delay_ms=0, refuse_vfio=[DEV])
    with d.connect() as c:
        p = expect_error(c.call(B + "Acquire", {"devices": [DEV], "managed": True, "mode": "unbound"}, timeout=5),
                         B + "DriverBindFailed", "managed Acquire when vfio-pci does not bind")
        check_eq(p.get("device"), DEV, "device of DriverBindFailed")
        wait_given_back(d, k)
    finish(ctx, d, k)


@case
def rebind_then_acquire_fails(ctx):
    """The rebind works but a later step of the Acquire fails (the fake's BIND
    gives EINVAL): the error is the later step's, and the device goes back."""
    d, k = slow_daemon(ctx, delay_ms=0, env={"IOMMUFD_BROKER_FAKE_BIND_FAIL": DEV})
    with d.connect() as c:
        p = expect_error(c.call(B + "Acquire", {"devices": [DEV], "managed": True, "mode": "bound"}, timeout=10),
                         B + "DeviceBusy", "managed Acquire whose BIND fails")
        check("VFIO_DEVICE_BIND_IOMMUFD" in p.get("message", ""), f"message: {p.get('message')!r}")
    wait_given_back(d, k)
    # The admin reads why the device went back, not only the client.
    check(re.search(r"managed Acquire failed: .*VFIO_DEVICE_BIND_IOMMUFD", d.read_log()) is not None,
          "the log does not say why the managed Acquire failed")
    check_eq([w[1] for w in k.writes if w[0] == "kernel-bound"], ["vfio-pci", HOST_DRIVER],
             "what the device was bound to")
    finish(ctx, d, k)


@case
def rebind_stop(ctx):
    """SIGTERM mid-rebind: the daemon exits at once and cleanly, its worker
    does not outlive it, and the "binding" record stays for the next start
    (which restores the driver: VM case rebind-crash)."""
    d, k = slow_daemon(ctx, delay_ms=8000)
    holder = d.connect()
    send_acquire(holder)
    wait_busy(d)
    wait_for(lambda: k.driver() is None, 5, 0.01, "the unbind")
    workers = proc_children(d.pid)
    check_eq(len(workers), 1, f"worker processes of the daemon ({workers})")
    t0 = time.monotonic()
    k.close()
    check_eq(d.stop(), 0, "exit status after SIGTERM mid-rebind")
    took = time.monotonic() - t0
    print(f"# stopped {took * 1000:.0f} ms after SIGTERM, mid-rebind")
    check(took < 3, f"stopping took {took:.2f} s")
    check(not os.path.exists(f"/proc/{workers[0]}"), f"worker {workers[0]} outlived the daemon")
    with open(record_path(d)) as f:
        record = f.read()
    check("STATE=binding\n" in record and "ORIGINAL_DRIVER=e1000e\n" in record, f"record: {record!r}")
    holder.close()


@case
def rebind_two_devices(ctx):
    """Two devices rebind in parallel; when one fails, both go back."""
    other = "0000:00:05.1"      # e1000e too; its group mate 05.0 is on vfio-pci
    d, k = slow_daemon(ctx, delay_ms=1500, hosts={DEV: HOST_DRIVER, other: HOST_DRIVER})
    with d.connect() as c:
        t0 = time.monotonic()
        r = c.call(B + "Acquire", {"devices": [DEV, other], "managed": True, "mode": "unbound"}, timeout=10)
        took = time.monotonic() - t0
        expect_ok(r, "managed Acquire of two devices")
        print(f"# two devices rebound in {took * 1000:.0f} ms (each worker sleeps 1500 ms)")
        check(took < 2.9, f"two rebinds took {took:.2f} s: not in parallel")
        check_eq(len(r.fds), 3, "fds of the Acquire")
        r.close_fds()
        check_eq((k.driver(DEV), k.driver(other)), ("vfio-pci", "vfio-pci"), "drivers after the Acquire")
    wait_given_back(d, k, DEV)
    wait_given_back(d, k, other)

    k.refuse_vfio = {other}
    with d.connect() as c:
        p = expect_error(c.call(B + "Acquire", {"devices": [DEV, other], "managed": True, "mode": "unbound"},
                                timeout=10), B + "DriverBindFailed", "managed Acquire when one does not bind")
        check_eq(p.get("device"), other, "device of DriverBindFailed")
    wait_given_back(d, k, DEV)
    wait_given_back(d, k, other)
    finish(ctx, d, k)


@case
def rebind_refused_first(ctx):
    """An Acquire that will be refused anyway unbinds nothing (the group mate check, here)."""
    d, k = slow_daemon(ctx, delay_ms=0)
    with d.connect() as c:
        expect_error(c.call(B + "Acquire", {"devices": [DEV, "0000:00:1f.0"], "managed": True}),
                     B + "DeviceUnavailable", "managed Acquire with a bridge in the list")
    time.sleep(0.2)
    check_eq(k.writes, [], "sysfs writes for a refused Acquire")
    check_eq(k.driver(), HOST_DRIVER, "driver")
    finish(ctx, d, k)


@case
def rebind_admin_unbind_leased(ctx):
    """adv2: root unbinds vfio-pci behind the broker's back while an unbound
    lease is held (QEMU, asked through its own request eventfd, unplugs and
    closes; the kernel's unbind returns only then). When the holder then
    lets go, no process has the device and it has no vfio cdev any more: the
    lease must end (and the managed device go back). It stayed 'releasing'
    for ever: the scan's test bind cannot open a cdev that is gone, so the
    answer was neither FREE nor BOUND."""
    d, k = slow_daemon(ctx, delay_ms=0)
    holder = d.connect()
    send_acquire(holder)
    r = holder.recv(timeout=10)
    expect_ok(r, "managed unbound Acquire")
    check_eq(k.driver(), "vfio-pci", "driver after the Acquire")
    r.close_fds()                       # the VMM let go when the kernel asked
    k.ctl_run(DEV, "unbind")            # root's echo > vfio-pci/unbind returned
    wait_for(lambda: d.get_device(DEV).get("driver") is None, 5, 0.02, "the broker to see the unbind")
    check_eq(d.get_device(DEV)["state"], "leased", "state while the holder is connected")
    holder.close()                      # then iommufdctl run exits
    wait_given_back(d, k)
    finish(ctx, d, k)

@case
def rebind_second_instance(ctx):
    """adv2: a second daemon on the same state directory (an admin running
    the daemon by hand while the service runs) must refuse to start before
    it touches anything. It took the running one's records for a restart's:
    it "finished" the managed rebind in flight under the running daemon
    (restoring e1000e, then removing the record), and only then found the
    socket in use."""
    d, k = slow_daemon(ctx, delay_ms=2500)
    holder = d.connect()
    send_acquire(holder)
    wait_busy(d)
    with open(record_path(d)) as f:
        before = f.read()
    check("STATE=binding\n" in before, f"record: {before!r}")
    cmd = [env_path("WITH_FAKE_SYSFS"), "--", os.path.realpath(env_path("BROKER_FAKE")), "--no-dbus",
           "--varlink-listen", d.socket, "--policy", d.policy_path, "--state-dir", d.state_dir]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, LOG_LEVEL="debug"))
    out = p.stdout + p.stderr
    check(p.returncode != 0, f"the second daemon started: {out!r}")
    check("Another iommufd-broker is running" in out, f"the second daemon does not say why: {out!r}")
    check("cut short" not in out, f"the second daemon acted on the first one's record: {out!r}")
    with open(record_path(d)) as f:
        check_eq(f.read(), before, "the running daemon's record after the second one tried")
    r = holder.recv(timeout=10)
    expect_ok(r, "the managed Acquire of the running daemon")
    check_eq(k.driver(), "vfio-pci", "driver after the Acquire")
    r.close_fds()
    holder.close()
    wait_given_back(d, k)
    finish(ctx, d, k)

if __name__ == "__main__":
    sys.exit(run_case(CASES, sys.argv))
