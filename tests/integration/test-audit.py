#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The audit trail, fast tier: the fake-kernel daemon (no journal: stderr,
one "AUDIT MESSAGE_ID=... FIELD=value ...: message" line per entry) records
every grant, release, lease end and policy reload with the holder's fields.
The distro tier checks the same entries in the real journal.

    test-audit.py CASE | --list
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker import check, check_eq, expect_ok, run_case, wait_for  # noqa: E402

B = "io.iommufd.Broker."
GRANT = "21be8c7355e4446a8719acb244cc8f9a"
RELEASE = "65806a1cbd9a415f9a3579d03ebf427b"
LEASE_END = "cb1f319149294b36b01682f09a9e2865"
POLICY_RELOAD = "efb67ef9953744d79a68c8e66ee04486"
CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


def audit_entries(d, message_id):
    """Every AUDIT line of the daemon log with this MESSAGE_ID, as {field: value}."""
    entries = []
    with open(d.log_path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.startswith(f"AUDIT MESSAGE_ID={message_id} "):
                continue
            head, _, message = line.partition(": ")
            fields = {}
            key = None
            for word in head.split(" ")[1:]:
                if "=" in word and word.split("=", 1)[0].isupper():
                    key, value = word.split("=", 1)
                    fields[key] = value
                elif key:
                    fields[key] += " " + word     # RULE=t rule 1
            fields["MESSAGE"] = message
            entries.append(fields)
    return entries


def wait_entries(d, message_id, n):
    return wait_for(lambda: len(audit_entries(d, message_id)) >= n and audit_entries(d, message_id), 10, 0.05,
                    f"{n} audit entries {message_id}")


@case
def audit_grant_release_end(ctx):
    uid = os.getuid()
    policy = {"rules": [{"devices": {"address": "0000:00:0[28].0"}, "principals": {"users": [uid]}}]}
    d = ctx.daemon(policy=policy)
    with d.connect() as c:
        r = c.call(B + "Acquire", {"devices": ["0000:00:02.0", "0000:00:08.0"], "mode": "bound"})
        p = expect_ok(r, "Acquire")
        r.close_fds()
        grants = wait_entries(d, GRANT, 2)
        check_eq(sorted(g["DEVICE"] for g in grants), ["0000:00:02.0", "0000:00:08.0"], "granted devices")
        for g in grants:
            check_eq((g["HOLDER_UID"], g["HOLDER_PID"], g["SESSION"], g["MODE"], g["RULE"]),
                     (str(uid), str(os.getpid()), str(p["session"]), "bound", "policy.json rule 1"),
                     f"grant fields {g}")
        expect_ok(c.call(B + "Release", {"devices": ["0000:00:02.0"]}), "Release")
        rel = wait_entries(d, RELEASE, 1)
        check_eq((rel[0]["DEVICE"], rel[0]["SESSION"], rel[0]["RULE"]),
                 ("0000:00:02.0", str(p["session"]), "policy.json rule 1"), "release entry")
    # The connection closed holding 08.0: a lease end, not a release.
    ends = wait_entries(d, LEASE_END, 1)
    check_eq((ends[0]["DEVICE"], ends[0]["REASON"], ends[0]["HOLDER_UID"]), ("0000:00:08.0", "disconnected", str(uid)),
             "lease-end entry")
    check_eq(len(audit_entries(d, RELEASE)), 1, "release entries")
    d.stop()


@case
def audit_policy_reload(ctx):
    d = ctx.daemon(policy={"rules": []})
    with open(d.policy_path, "w") as f:
        f.write('{"rules": [{"principals": {"users": [0]}}, {"principals": {"users": [1]}}]}')
    os.kill(d.pid, signal.SIGHUP)
    ok = wait_entries(d, POLICY_RELOAD, 1)
    check_eq((ok[0]["RESULT"], ok[0]["RULES"]), ("ok", "2"), "reload entry")
    with open(d.policy_path, "w") as f:
        f.write('{"rules": [{"principals": {"users": [0]}, "memlock": "lots"}]}')
    os.kill(d.pid, signal.SIGHUP)
    bad = wait_entries(d, POLICY_RELOAD, 2)[1]
    check_eq(bad["RESULT"], "failed", "failed reload entry")
    check('"memlock" must be' in bad["MESSAGE"], f"the reason is in the entry: {bad}")
    check(d.alive(), "daemon died on a bad reload")
    d.stop()


if __name__ == "__main__":
    sys.exit(run_case(CASES, sys.argv))
