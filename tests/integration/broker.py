# SPDX-License-Identifier: LGPL-2.1-or-later
"""Harness for the fast tier's integration tests (stdlib only).

Daemon: runs the built iommufd-broker-fake under tests/fixtures/with-fake-sysfs
(umockdev) on a varlink socket in a temp dir, with the test's own policy.
Conn: a raw varlink client (NUL framing, fds as SCM_RIGHTS).

Paths come from the environment (set by tests/integration/meson.build):
  BROKER_FAKE       the built daemon/iommufd-broker-fake
  IOMMUFDCTL        the built client/iommufdctl
  INTEG_CLIENT      the built tests/integration/integ-client
  WITH_FAKE_SYSFS   tests/fixtures/with-fake-sysfs
  SOURCE_ROOT       the source tree (for protocol/io.iommufd.Broker.varlink)
"""

import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


class TestFailure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure(f"{what}: got {got!r}, want {want!r}")


def env_path(name):
    p = os.environ.get(name)
    if not p:
        raise TestFailure(f"${name} is not set (run through meson test)")
    return p


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def fd_link(fd, pid="self"):
    return os.readlink(f"/proc/{pid}/fd/{fd}")


# --- raw varlink ----------------------------------------------------------

class Reply:
    """One varlink message received, with the fds that came with it."""

    def __init__(self, msg, fds):
        self.msg = msg
        self.fds = fds

    @property
    def error(self):
        return self.msg.get("error")

    @property
    def parameters(self):
        return self.msg.get("parameters", {})

    @property
    def continues(self):
        return bool(self.msg.get("continues"))

    def close_fds(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __repr__(self):
        return f"Reply({json.dumps(self.msg)}, fds={self.fds})"


class Closed(Exception):
    """The peer closed the connection."""


class Conn:
    """A raw varlink connection.

    fds of one recvmsg() belong to the message the last byte of that recvmsg()
    belongs to (see protocol/varlink-wire.h)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.timeout = timeout
        self.buf = b""
        self.slot_fds = {}      # message index (within buf) -> fds
        self.eof = False

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        for fds in self.slot_fds.values():
            for fd in fds:
                os.close(fd)
        self.slot_fds = {}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_raw(self, data, fds=()):
        if fds:
            n = socket.send_fds(self.sock, [data], list(fds))
            if n < len(data):
                self.sock.sendall(data[n:])
        else:
            self.sock.sendall(data)

    def send(self, msg, fds=()):
        self.send_raw(json.dumps(msg).encode() + b"\0", fds)

    def send_call(self, method, parameters=None, more=False, oneway=False, fds=()):
        msg = {"method": method}
        if parameters is not None:
            msg["parameters"] = parameters
        if more:
            msg["more"] = True
        if oneway:
            msg["oneway"] = True
        self.send(msg, fds)

    def _fill(self, timeout):
        if self.eof:
            raise Closed("connection closed by the broker")
        self.sock.settimeout(timeout)
        try:
            data, fds, flags, _ = socket.recv_fds(self.sock, 65536, 128, socket.MSG_CMSG_CLOEXEC)
        except socket.timeout:
            raise TestFailure(f"no reply within {timeout}s (buffered: {self.buf[:200]!r})")
        except ConnectionResetError:
            data, fds, flags = b"", [], 0
        if flags & socket.MSG_CTRUNC:
            raise TestFailure("fds truncated (MSG_CTRUNC)")
        if not data:
            for fd in fds:
                os.close(fd)
            self.eof = True
            raise Closed("connection closed by the broker")
        self.buf += data
        if fds:
            slot = self.buf[:-1].count(b"\0")
            self.slot_fds.setdefault(slot, []).extend(fds)

    def recv(self, timeout=None):
        """The next message as a Reply; raises Closed on EOF."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"no complete reply within {timeout}s")
            self._fill(left)
        raw, self.buf = self.buf.split(b"\0", 1)
        fds = self.slot_fds.pop(0, [])
        self.slot_fds = {k - 1: v for k, v in self.slot_fds.items()}
        try:
            msg = json.loads(raw)
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            raise TestFailure(f"broker sent invalid JSON {raw[:200]!r}: {e}")
        if not isinstance(msg, dict):
            raise TestFailure(f"broker sent a non-object: {raw[:200]!r}")
        return Reply(msg, fds)

    def call(self, method, parameters=None, more=False, timeout=None, fds=()):
        self.send_call(method, parameters, more=more, fds=fds)
        return self.recv(timeout)

    def is_closed_by_peer(self, timeout=5.0):
        """True if the broker closes the connection within timeout (unread
        messages are discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except Closed:
                return True
            except TestFailure:
                return False


def expect_error(reply, name, what=""):
    """Assert reply is the error name; return its parameters."""
    check(reply.error == name, f"{what}: want error {name}, got {reply!r}")
    check(not reply.fds, f"{what}: an error reply carried fds {reply.fds}")
    return reply.parameters


def expect_ok(reply, what=""):
    check(reply.error is None, f"{what}: unexpected error {reply!r}")
    return reply.parameters


# --- the daemon -----------------------------------------------------------

def proc_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Daemon:
    """iommufd-broker-fake under with-fake-sysfs, listening in a temp dir.

    policy: None (no policy file: the built-in default), a dict (written as
    policy.json), or a str (written verbatim). env: extra environment
    (IOMMUFD_BROKER_FAKE_*). args: extra daemon options."""

    def __init__(self, policy=None, env=None, args=(), fixture=None):
        self.binary = os.path.realpath(env_path("BROKER_FAKE"))
        self.wrapper = env_path("WITH_FAKE_SYSFS")
        self.dir = tempfile.mkdtemp(prefix="integ-")
        os.chmod(self.dir, 0o755)       # tests connect as uid 65534 too
        self.socket = os.path.join(self.dir, "io.iommufd.Broker")
        self.policy_path = os.path.join(self.dir, "policy.json")
        self.policy_dir = os.path.join(self.dir, "policy.d")
        if policy is not None:
            with open(self.policy_path, "w") as f:
                f.write(policy if isinstance(policy, str) else json.dumps(policy))
        self.extra_env = dict(env or {})
        self.args = list(args)
        self.fixture = fixture
        self.proc = None
        self.pid = None
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.baseline = None

    def command(self):
        cmd = [self.wrapper]
        if self.fixture:
            cmd.append(self.fixture)
        cmd += ["--", self.binary, "--no-dbus",
                "--varlink-listen", self.socket,
                "--policy", self.policy_path,
                "--policy-dir", self.policy_dir] + self.args
        return cmd

    def start(self, timeout=15.0):
        env = dict(os.environ)
        env.pop("IOMMUFD_BROKER_FAKE_GROUP_OPEN", None)
        env.pop("IOMMUFD_BROKER_FAKE_UNSUPPORTED", None)
        env.pop("IOMMUFD_BROKER_FAKE_BIND_FAIL", None)
        env.setdefault("LOG_LEVEL", "debug")
        env.update(self.extra_env)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command(), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, close_fds=True)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                if rc == SKIP:
                    raise Skip("with-fake-sysfs cannot run here (umockdev-run missing?)")
                raise TestFailure(f"daemon exited with {rc} before listening:\n{self.read_log()}")
            if self.pid is None:
                self.pid = self._find_daemon_pid()
            if self.pid and os.path.exists(self.socket) and self._connectable():
                break
            if time.monotonic() > deadline:
                raise TestFailure(f"daemon did not listen on {self.socket} within {timeout}s:\n{self.read_log()}")
            time.sleep(0.02)
        return self

    def _connectable(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def _find_daemon_pid(self):
        """The daemon runs as a descendant of the wrapper (umockdev-run forks
        it); find the process whose executable is the daemon binary."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            if proc_exe(pid) == self.binary:
                return pid
            todo += proc_children(pid)
        return None

    def alive(self):
        if self.pid is None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X")
        except OSError:
            return False

    def fd_count(self):
        return fd_count(self.pid)

    def fds(self):
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                pass
        return out

    def take_baseline(self):
        """The open-fd count after startup and one served call."""
        with self.connect() as c:
            expect_ok(c.call("io.iommufd.Broker.ListDevices"), "baseline ListDevices")
        self.wait_fd_count(None)
        self.baseline = self.fd_count()
        self.baseline_fds = self.fds()
        return self.baseline

    def wait_fd_count(self, want, timeout=10.0):
        """Wait until the fd count equals want (None: until it is stable)."""
        if want is None:
            last = [None, 0]

            def stable():
                n = self.fd_count()
                if n == last[0]:
                    last[1] += 1
                else:
                    last[:] = [n, 0]
                return last[1] >= 5
            wait_for(stable, timeout, 0.05, "a stable fd count")
            return
        try:
            wait_for(lambda: self.fd_count() == want, timeout, 0.05, f"the daemon's fd count to be {want}")
        except TestFailure:
            now = self.fds()
            extra = {k: v for k, v in now.items() if k not in self.baseline_fds or self.baseline_fds[k] != v}
            raise TestFailure(f"daemon fd count is {len(now)}, baseline {want}; new fds: {extra}")

    def check_baseline(self, timeout=10.0):
        check(self.alive(), "daemon is not alive")
        self.wait_fd_count(self.baseline, timeout)

    def connect(self, timeout=10.0):
        return Conn(self.socket, timeout)

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def stop(self, check_exit=True):
        rc = None
        if self.proc and self.proc.poll() is None:
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                if self.alive():
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
                raise TestFailure("daemon did not exit within 10s of SIGTERM")
        elif self.proc:
            rc = self.proc.returncode
        if self.proc:
            self.log.close()
        self.proc = None
        if check_exit and rc not in (None, 0):
            raise TestFailure(f"daemon exited with {rc} after SIGTERM:\n{self.read_log()}")
        return rc

    def cleanup(self):
        try:
            self.stop(check_exit=False)
        except TestFailure:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # Convenience calls on a fresh connection.
    def get_device(self, address):
        with self.connect() as c:
            r = c.call("io.iommufd.Broker.GetDevice", {"address": address})
            return expect_ok(r, f"GetDevice {address}")["device"]

    def list_devices(self):
        with self.connect() as c:
            r = c.call("io.iommufd.Broker.ListDevices")
            return expect_ok(r, "ListDevices")["devices"]

    def wait_state(self, address, state, timeout=10.0):
        return wait_for(lambda: self.get_device(address)["state"] == state and self.get_device(address),
                        timeout, 0.05, f"{address} to be {state}")


# --- running cases --------------------------------------------------------

def run_case(cases, argv):
    """cases: name -> function(ctx). argv[1]: the case name, or --list."""
    if len(argv) != 2 or (argv[1] not in cases and argv[1] != "--list"):
        print(f"usage: {argv[0]} CASE|--list\ncases: {' '.join(cases)}", file=sys.stderr)
        return 2
    if argv[1] == "--list":
        print("\n".join(cases))
        return 0
    ctx = Context()
    try:
        cases[argv[1]](ctx)
    except Skip as e:
        print(f"SKIP: {e}")
        return SKIP
    except (TestFailure, AssertionError, Closed) as e:
        print(f"FAIL: {argv[1]}: {e}", file=sys.stderr)
        ctx.dump_logs()
        return 1
    except Exception:
        import traceback
        traceback.print_exc()
        ctx.dump_logs()
        return 1
    finally:
        ctx.cleanup()
    print(f"PASS: {argv[1]}")
    return 0


class Context:
    """Per-case state: daemons to stop, temp files to remove."""

    def __init__(self):
        self.daemons = []
        self.procs = []

    def daemon(self, **kw):
        d = Daemon(**kw)
        self.daemons.append(d)
        d.start()
        return d

    def spawn(self, *a, **kw):
        p = subprocess.Popen(*a, **kw)
        self.procs.append(p)
        return p

    def dump_logs(self):
        for d in self.daemons:
            print(f"--- daemon log ({d.log_path}) ---\n{d.read_log()}", file=sys.stderr)

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for d in self.daemons:
            d.cleanup()
