#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile local users against the built daemon (fast tier, as root).

    test-hostile.py CASE         run one case
    test-hostile.py --list       the case names

Every case starts iommufd-broker-fake (tests/integration/broker.py's Daemon),
lets one or more unprivileged uids (setuid children) attack it, and checks,
while the attack runs, that:
  - another user (uid PROBE_UID) gets its ListDevices answered, connect
    included, within LATENCY_MS (90th percentile of the probes; every probe
    within 1 s), and root can still list and acquire;
and once the attackers are gone:
  - the daemon's open-fd count returns to its baseline;
  - its RSS stayed under baseline + RSS_BOUND_MIB all along.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from broker import (Closed, Conn, Daemon, TestFailure, check, expect_ok, run_case, wait_for)  # noqa: E402

B = "io.iommufd.Broker."
NOBODY = 65534
ATTACKERS = [NOBODY] + [20001 + i for i in range(9)]    # ten ordinary users
PROBE_UID = 30001
LATENCY_MS = float(os.environ.get("HOSTILE_LATENCY_MS", "100"))
RSS_BOUND_MIB = float(os.environ.get("HOSTILE_RSS_BOUND_MIB", "48"))
# The daemon's own limits in these tests: its fd limit is lowered so that the
# caps, not the machine, decide who gets through, and fast to reach.
FD_LIMIT = 1024

CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


# --- processes as other users --------------------------------------------

def become(uid):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


class Attacker:
    """fn(arg) forked as uid, running until stopped (SIGKILL)."""

    def __init__(self, uid, fn, *args):
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                become(uid)
                fn(*args)
            except BaseException:   # noqa: B902 - an attacker may be cut off anywhere
                code = 1
            os._exit(code)

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = None


def in_child(uid, fn, *args):
    """Run fn(*args) as uid in a child and return its JSON-able result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            become(uid)
            out = {"ok": fn(*args)}
        except BaseException as e:  # noqa: B902
            out = {"fail": f"{type(e).__name__}: {e}"}
        with os.fdopen(w, "w") as f:
            json.dump(out, f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data or '{"fail": "no result"}')
    if "fail" in out:
        raise TestFailure(f"as uid {uid}: {out['fail']}")
    return out["ok"]


# --- measuring ------------------------------------------------------------

def raw_call(path, method, params=None, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # A blocking connect, as clients do: waits for room in the backlog
        # rather than failing with EAGAIN while attackers fill it.
        signal.setitimer(signal.ITIMER_REAL, timeout)
        s.connect(path)
        signal.setitimer(signal.ITIMER_REAL, 0)
        s.settimeout(timeout)
        msg = {"method": method}
        if params is not None:
            msg["parameters"] = params
        try:
            s.sendall(json.dumps(msg).encode() + b"\0")
        except (BrokenPipeError, ConnectionResetError):
            pass            # refused: the reason is waiting to be read
        buf = b""
        while b"\0" not in buf:
            data = s.recv(65536)
            if not data:
                raise Closed("closed")
            buf += data
        return json.loads(buf.split(b"\0", 1)[0])
    finally:
        s.close()


def probe_latencies(path, seconds):
    """ListDevices on a fresh connection, again and again: latencies in ms
    (None for a probe that got no answer)."""
    def timeout(*a):
        raise TimeoutError("connect timed out")
    signal.signal(signal.SIGALRM, timeout)
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            reply = raw_call(path, B + "ListDevices", timeout=2.0)
            ok = "error" not in reply
        except (OSError, Closed, ValueError):
            signal.setitimer(signal.ITIMER_REAL, 0)
            ok = False
        out.append((time.monotonic() - t) * 1000 if ok else None)
        time.sleep(0.02)
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Watch:
    """The daemon's RSS peak while an attack runs."""

    def __init__(self, d):
        self.d = d
        self.base_rss = rss_kib(d.pid)
        self.peak = self.base_rss

    def sample(self):
        self.peak = max(self.peak, rss_kib(self.d.pid))

    def check_rss(self, what):
        self.sample()
        grown = (self.peak - self.base_rss) / 1024
        print(f"  {what}: RSS {self.base_rss // 1024} MiB at start, peak +{grown:.1f} MiB "
              f"(bound +{RSS_BOUND_MIB:.0f} MiB)")
        check(grown <= RSS_BOUND_MIB, f"{what}: RSS grew by {grown:.1f} MiB, bound {RSS_BOUND_MIB} MiB")


def check_answers(d, watch, what, seconds=1.5):
    """Another user is answered promptly, and root can list and acquire."""
    lat = in_child(PROBE_UID, probe_latencies, d.socket, seconds)
    watch.sample()
    missing = sum(1 for x in lat if x is None)
    good = sorted(x for x in lat if x is not None)
    check(missing == 0 and good, f"{what}: {missing} of {len(lat)} probes of uid {PROBE_UID} got no answer")
    p90 = good[min(len(good) - 1, int(len(good) * 0.9))]
    print(f"  {what}: uid {PROBE_UID} answered in {good[len(good) // 2]:.1f} ms median, "
          f"{p90:.1f} ms p90, {good[-1]:.1f} ms max ({len(good)} probes)")
    check(p90 <= LATENCY_MS, f"{what}: p90 latency {p90:.1f} ms > {LATENCY_MS} ms")
    check(good[-1] <= 1000, f"{what}: a probe took {good[-1]:.1f} ms")
    root_list_and_acquire(d, what)


def connect(path, timeout=10.0):
    """broker.Conn, but with a blocking connect() (see raw_call)."""
    c = Conn.__new__(Conn)
    c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    c.sock.connect(path)
    c.sock.settimeout(timeout)
    c.timeout, c.buf, c.slot_fds, c.eof = timeout, b"", {}, False
    return c


def root_list_and_acquire(d, what):
    with connect(d.socket) as c:
        expect_ok(c.call(B + "ListDevices"), f"{what}: root ListDevices")
        r = c.call(B + "Acquire", {"devices": ["0000:00:02.0"]})
        expect_ok(r, f"{what}: root Acquire")
        r.close_fds()
        expect_ok(c.call(B + "Release", {"devices": ["0000:00:02.0"]}), f"{what}: root Release")


def start(ctx, *args):
    """The daemon with a lowered fd limit, and its baseline."""
    d = Daemon(args=list(args), env={"LOG_LEVEL": "info"})
    command = d.command
    d.command = lambda: ["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", "--"] + command()
    ctx.daemons.append(d)
    d.start()
    d.take_baseline()
    return d, Watch(d)


def stop_all(attackers):
    for a in attackers:
        a.stop()


def finish(d, watch, what):
    watch.check_rss(what)
    check(d.alive(), f"{what}: daemon died")
    d.check_baseline(timeout=15)
    root_list_and_acquire(d, f"{what}, after")
    d.check_baseline(timeout=15)
    d.stop()


# --- attacks --------------------------------------------------------------

def churn(path):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            pass
        s.close()


def hold_connections(path, n, ready_path=None):
    """Open n connections (as many as are let in) and keep them."""
    held = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            held.append(s)
        except OSError:
            break
    if ready_path:
        open(ready_path + f".{os.getuid()}", "w").close()
    while True:
        time.sleep(60)


def fd_flood(path):
    """One byte and 64 fds at a time, in a message that never ends."""
    r, w = os.pipe()
    fds = [r] * 64
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b'{"method":"io.iommufd.Broker.ListDevices","parameters":{"x":"')
    while True:
        socket.send_fds(s, [b"a"], fds)


def fd_flood_truncated(path):
    """More fds per sendmsg() than the broker's control buffer: MSG_CTRUNC."""
    r, w = os.pipe()
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            socket.send_fds(s, [b'{"method":"org.varlink.service.GetInfo"}\0'], [r] * 250)
            s.recv(4096)
        except OSError:
            pass
        s.close()


def monitor_no_read(path, n):
    held = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.sendall(json.dumps({"method": B + "Monitor", "more": True}).encode() + b"\0")
            held.append(s)
        except OSError:
            break
    while True:
        time.sleep(60)


def pipeline_no_read(path, n, calls):
    held = []
    msg = (json.dumps({"method": B + "ListDevices"}).encode() + b"\0") * calls
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except OSError:
            break
        held.append([s, 0])
    while True:
        for h in held:
            try:
                if h[1] < len(msg):
                    h[1] += h[0].send(msg[h[1]:])
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.01)


def partial_messages(path, n):
    """Slowloris: half a message on many connections, never finished."""
    held = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.sendall(b'{"method":"io.iommufd.Broker.ListDev' + b" " * 60000)
            held.append(s)
        except OSError:
            break
    while True:
        time.sleep(60)


def lease_churn(path, seconds):
    """Root acquires and releases in a loop: events for every Monitor."""
    end = time.monotonic() + seconds
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    buf = b""
    n = 0
    while time.monotonic() < end:
        for m, p in (("Acquire", {"devices": ["0000:00:03.0", "0000:00:03.1"]}),
                     ("Release", {"devices": ["0000:00:03.0", "0000:00:03.1"]})):
            s.sendall(json.dumps({"method": B + m, "parameters": p}).encode() + b"\0")
            while b"\0" not in buf:
                data, fds, _, _ = socket.recv_fds(s, 65536, 16)
                for fd in fds:
                    os.close(fd)
                buf += data
            buf = buf.split(b"\0", 1)[1]
        n += 1
    s.close()
    return n


# --- cases ----------------------------------------------------------------

@case
def connection_churn(ctx):
    """Issue 8: 10,000 connect-and-close cycles wedged the daemon."""
    d, w = start(ctx)
    attackers = [Attacker(uid, churn, d.socket) for uid in (NOBODY, 20001)]
    try:
        time.sleep(0.5)
        check_answers(d, w, "connection churn by two uids")
    finally:
        stop_all(attackers)
    # SIGTERM is obeyed at once even right after the storm.
    t = time.monotonic()
    finish(d, w, "connection churn")
    print(f"  stopped {1000 * (time.monotonic() - t):.0f} ms after SIGTERM")


@case
def churn_sigterm(ctx):
    """Issue 8: under churn the daemon ignored SIGTERM for 40 s."""
    d, w = start(ctx)
    attackers = [Attacker(uid, churn, d.socket) for uid in (NOBODY, NOBODY, 20001)]
    try:
        time.sleep(1.0)
        t = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        rc = d.proc.wait(10)
        took = time.monotonic() - t
        print(f"  exited {rc} {1000 * took:.0f} ms after SIGTERM under churn")
        check(rc == 0, f"exit status {rc}")
        check(took < 2, f"took {took:.1f}s to obey SIGTERM")
    finally:
        stop_all(attackers)


@case
def fds_never_ending_message(ctx):
    """Issue 8: fds sent with a message that never ends were hoarded."""
    d, w = start(ctx)
    attackers = [Attacker(NOBODY, fd_flood, d.socket) for _ in range(4)]
    try:
        time.sleep(1.0)
        peak = d.fd_count()
        check_answers(d, w, "fd flood in a never-ending message")
        peak = max(peak, d.fd_count())
        print(f"  daemon fds during the flood: {peak} (baseline {d.baseline})")
        check(peak <= d.baseline + 16, f"daemon holds {peak} fds, baseline {d.baseline}")
    finally:
        stop_all(attackers)
    finish(d, w, "fd flood")


@case
def fds_truncated(ctx):
    """Own: 250 fds per sendmsg() overflow the control buffer (MSG_CTRUNC):
    all are closed, the connection is refused, nothing leaks."""
    d, w = start(ctx)
    attackers = [Attacker(NOBODY, fd_flood_truncated, d.socket)]
    try:
        time.sleep(0.5)
        check_answers(d, w, "truncated fd sets")
        check(d.fd_count() <= d.baseline + 16, f"daemon holds {d.fd_count()} fds")
    finally:
        stop_all(attackers)
    finish(d, w, "truncated fds")


@case
def ten_users_vs_root(ctx):
    """Issue 8: ten users holding their per-uid cap locked root out."""
    d, w = start(ctx)
    os.mkdir(os.path.join(d.dir, "ready"))
    os.chmod(os.path.join(d.dir, "ready"), 0o1777)
    ready = os.path.join(d.dir, "ready", "uid")
    attackers = [Attacker(uid, hold_connections, d.socket, 64, ready) for uid in ATTACKERS]
    try:
        wait_for(lambda: all(os.path.exists(f"{ready}.{u}") for u in ATTACKERS), 20, 0.1,
                 "ten users to open their connections")
        print(f"  daemon fds with ten users at their caps: {d.fd_count()} (limit {FD_LIMIT})")
        w.sample()
        root_list_and_acquire(d, "ten users at their caps")
        # Root has room beyond what the others may take.
        with connect(d.socket) as a, connect(d.socket) as b:
            expect_ok(a.call(B + "ListDevices"), "root, another connection")
            expect_ok(b.call(B + "ListDevices"), "root, and another")
    finally:
        stop_all(attackers)
    finish(d, w, "ten users vs root")


@case
def per_uid_cap_counts(ctx):
    """Own: the per-uid cap counts live connections exactly: a uid at its cap
    is refused, and gets in again as soon as one of its connections closes."""
    d, w = start(ctx, "--max-connections-per-uid", "4")

    def probe(path):
        held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(4)]
        for s in held:
            s.connect(path)
        refused = raw_call(path, B + "ListDevices").get("error")
        held.pop().close()
        again = raw_call(path, B + "ListDevices").get("error")
        return [refused, again]
    refused, again = in_child(NOBODY, probe, d.socket)
    check(refused == B + "LimitExceeded", f"fifth connection: {refused}")
    check(again is None, f"after one closed: {again}")
    # Another uid is not affected by nobody's cap.
    check(raw_call(d.socket, B + "ListDevices").get("error") is None, "root")
    finish(d, w, "per-uid cap")


@case
def monitor_no_readers(ctx):
    """Issue 8: 64 Monitor streams that never read raised RSS to 350 MB."""
    d, w = start(ctx)
    attackers = [Attacker(NOBODY, monitor_no_read, d.socket, 64)]
    try:
        time.sleep(0.5)
        n = in_child(0, lease_churn, d.socket, 3.0)
        w.sample()
        print(f"  {n} acquire+release pairs with 64 unread Monitor streams")
        check_answers(d, w, "64 Monitor streams that do not read")
    finally:
        stop_all(attackers)
    finish(d, w, "unread Monitor streams")


@case
def pipeline_no_readers(ctx):
    """Issue 8: 64 clients pipelining calls without reading delayed everyone."""
    d, w = start(ctx)
    attackers = [Attacker(NOBODY, pipeline_no_read, d.socket, 64, 2000)]
    try:
        time.sleep(1.0)
        check_answers(d, w, "64 pipelining non-readers")
    finally:
        stop_all(attackers)
    finish(d, w, "pipelining non-readers")


@case
def partial_message_hoard(ctx):
    """Own: half-sent messages on many connections (slowloris) cost at most
    max_message each and do not block anyone."""
    d, w = start(ctx)
    attackers = [Attacker(uid, partial_messages, d.socket, 64) for uid in (NOBODY, 20001)]
    try:
        time.sleep(1.0)
        check_answers(d, w, "128 half messages")
    finally:
        stop_all(attackers)
    finish(d, w, "half messages")


@case
def oversized_messages(ctx):
    """Own: messages over max_message are refused with LimitExceeded and the
    connection closed, again and again, without growth."""
    d, w = start(ctx)

    def flood(path):
        big = b'{"method":"' + b"x" * (1 << 20)
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            try:
                s.sendall(big)
            except OSError:
                pass
            s.close()
        return True
    attackers = [Attacker(NOBODY, lambda p: [flood(p) for _ in iter(int, 1)], d.socket)]
    try:
        time.sleep(0.5)
        check_answers(d, w, "oversized messages")
    finally:
        stop_all(attackers)
    finish(d, w, "oversized messages")


if __name__ == "__main__":
    if os.geteuid() != 0 and len(sys.argv) > 1 and sys.argv[1] != "--list":
        print("SKIP: the hostile suite runs as root (it forks children as other uids)")
        sys.exit(77)
    sys.exit(run_case(CASES, sys.argv))
