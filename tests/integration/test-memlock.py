#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Memlock by policy, fast tier: the fake-kernel daemon raises the caller's
RLIMIT_MEMLOCK on a successful Acquire when the rule says "memlock", says so
in the reply, leaves it alone otherwise, and opens user-accounted iommufds
when the policy says "memlock_accounting": "user". The fast tier cannot
raise hard limits without CAP_SYS_RESOURCE, so it raises the soft limit
below the hard one; the VM tier shows the real thing (tests/vm/guest).

    test-memlock.py CASE | --list
"""

import os
import resource
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker import (Daemon, Skip, TestFailure, check, check_eq, env_path, expect_error, expect_ok, fd_link,  # noqa: E402
                    run_case)

B = "io.iommufd.Broker."
MiB = 1 << 20
CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


def rule(memlock=None, address="0000:00:02.0"):
    r = {"devices": {"address": address}, "principals": {"users": [os.getuid()]}}
    if memlock is not None:
        r["memlock"] = memlock
    return r


def finish(d):
    check(d.alive(), "daemon died")
    d.check_baseline()
    d.stop()


def lower_own_soft_limit():
    """Soft limit 1 MiB under an unchanged hard limit (at least 8 MiB)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if hard != resource.RLIM_INFINITY and hard < 8 * MiB:
        raise TestFailure(f"hard memlock limit {hard} is below 8 MiB")
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (MiB, hard))
    return hard


def acquire(d, devices):
    with d.connect() as c:
        r = c.call(B + "Acquire", {"devices": devices, "mode": "unbound"})
        r.close_fds()
        return r


@case
def memlock_raised_on_acquire(ctx):
    hard = lower_own_soft_limit()
    # We may be root, whom the built-in default allows everything: deny 03.* by rule.
    deny = dict(rule(None, "0000:00:03.*"), allow=False)
    d = ctx.daemon(policy={"rules": [rule("4M"), rule(None, "0000:00:08.0"), deny]})
    d.take_baseline()

    # A rule without memlock leaves the limit alone and says nothing.
    p = expect_ok(acquire(d, ["0000:00:08.0"]), "Acquire without memlock")
    check("memlockLimit" not in p, f"memlockLimit without a memlock rule: {p}")
    check_eq(resource.getrlimit(resource.RLIMIT_MEMLOCK), (MiB, hard), "limit after a rule without memlock")

    # A denied Acquire changes nothing either.
    expect_error(acquire(d, ["0000:00:03.0"]), B + "PermissionDenied", "device no rule names")
    check_eq(resource.getrlimit(resource.RLIMIT_MEMLOCK)[0], MiB, "soft limit after a denied Acquire")

    p = expect_ok(acquire(d, ["0000:00:02.0"]), "Acquire with memlock 4M")
    check_eq(p.get("memlockLimit"), 4 * MiB, "memlockLimit in the reply")
    check_eq(resource.getrlimit(resource.RLIMIT_MEMLOCK), (4 * MiB, hard), "limit after the Acquire")

    # Never lowered: a second Acquire with our soft limit above the rule's.
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (6 * MiB, hard))
    d.wait_state("0000:00:02.0", "available")
    p = expect_ok(acquire(d, ["0000:00:02.0"]), "Acquire with memlock below the current limit")
    check_eq(p.get("memlockLimit"), 6 * MiB, "memlockLimit when the limit was already higher")
    check_eq(resource.getrlimit(resource.RLIMIT_MEMLOCK)[0], 6 * MiB, "soft limit not lowered")
    finish(d)


@case
def memlock_bad_policy(ctx):
    d = Daemon(policy={"rules": [rule("4 GB")]})
    ctx.daemons.append(d)
    try:
        d.start()
        raise TestFailure("the daemon started with a broken memlock value")
    except TestFailure as e:
        if "before listening" not in str(e):
            raise
    log = d.read_log()
    check('"memlock" must be a positive number of bytes' in log, f"no clear message in the log: {log[-400:]}")
    p = subprocess.run([os.path.realpath(env_path("BROKER_FAKE")), "--check-config", "--policy", d.policy_path,
                        "--policy-dir", d.policy_dir], capture_output=True, text=True, timeout=10)
    check(p.returncode != 0 and "rule 1: \"memlock\"" in p.stderr, f"--check-config: {p.returncode} {p.stderr}")


@case
def memlock_accounting_user(ctx):
    for accounting, name in (("user", "/memfd:fake-iommufd-user (deleted)"),
                             ("process", "/memfd:fake-iommufd (deleted)"),
                             (None, "/memfd:fake-iommufd (deleted)")):
        policy = {"rules": [rule()]}
        if accounting:
            policy["memlock_accounting"] = accounting
        d = ctx.daemon(policy=policy)
        with d.connect() as c:
            r = c.call(B + "Acquire", {"devices": ["0000:00:02.0"], "mode": "unbound"})
            p = expect_ok(r, f"Acquire with accounting {accounting}")
            check_eq(fd_link(r.fds[p["iommuFileDescriptor"]]), name, f"iommufd with accounting {accounting}")
            r.close_fds()
        d.stop()


@case
def memlock_run_warns(ctx):
    hard = lower_own_soft_limit()
    d = ctx.daemon(policy={"rules": [rule(None, "0000:00:08.0"), rule("4M")]})
    # Without CAP_IPC_LOCK, which makes iommufd charge nothing (and run not warn).
    ctl = [shutil.which("setpriv") or "/usr/bin/setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock",
           os.path.realpath(env_path("IOMMUFDCTL"))]
    if not os.path.exists(ctl[0]):
        raise Skip("no setpriv to drop CAP_IPC_LOCK")
    script = "grep 'locked memory' /proc/self/limits"

    # Guest RAM far above the limit: warned, and the command still runs.
    p = subprocess.run(ctl + ["--socket", d.socket, "run", "-d", "00:08.0", "--", "sh", "-c", script, "qemu",
                        "-m", "4G"], capture_output=True, text=True, timeout=20)
    check_eq(p.returncode, 0, f"run: {p.stderr}")
    check("warning: the memlock limit" in p.stderr and "4 GiB" in p.stderr, f"no warning: {p.stderr!r}")
    # The policy raise reaches the command: 4 MiB, and -m 2M fits.
    p = subprocess.run(ctl + ["--socket", d.socket, "run", "-d", "00:02.0", "--", "sh", "-c", script, "qemu",
                        "-m", "2M"], capture_output=True, text=True, timeout=20)
    check_eq(p.returncode, 0, f"run: {p.stderr}")
    check("warning" not in p.stderr, f"warned although -m fits: {p.stderr!r}")
    check(str(4 * MiB) in p.stdout, f"the command's limit is not 4 MiB: {p.stdout!r}")
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (MiB, hard))
    d.stop()


if __name__ == "__main__":
    sys.exit(run_case(CASES, sys.argv))
