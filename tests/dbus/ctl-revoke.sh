#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# iommufdctl acquire over D-Bus lets go when the lease is revoked, as it does
# over varlink: the library turns the device's State going "releasing" into
# lease-releasing for the holder's own session (the broker's D-Bus signals
# carry session 0 and there is no signal for "releasing"). Before, the holder
# never noticed, kept its fds and the revoke ran into RevokeTimeout.
# Runs under run-with-broker.sh (DBUS_TEST_ADDRESS), as root.
set -u
ctl() { "$IOMMUFDCTL" --bus "$DBUS_TEST_ADDRESS" "$@"; }
out=$DBUS_TEST_DIR/ctl-acquire.out
dev=0000:00:03.0

ctl acquire "$dev" >"$out" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q '^Holding' "$out" && break; sleep 0.05; done
grep -q '^Holding' "$out" || { echo "FAIL: acquire did not hold the lease"; cat "$out"; exit 1; }

if ! ctl revoke "$dev" --timeout 5; then
        echo "FAIL: revoke of a lease held by iommufdctl --bus acquire did not succeed"
        kill "$holder"; wait "$holder"; cat "$out"; exit 1
fi
for _ in $(seq 100); do kill -0 "$holder" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$holder" 2>/dev/null; then
        echo "FAIL: iommufdctl acquire still runs after its lease was revoked"
        kill "$holder"; wait "$holder"; cat "$out"; exit 1
fi
wait "$holder"
rc=$?
[ "$rc" = 1 ] || { echo "FAIL: acquire exited $rc, want 1"; cat "$out"; exit 1; }
grep -q "lease-releasing $dev session=[1-9][0-9]* reason=revoked" "$out" ||
        { echo "FAIL: acquire did not report the revoke"; cat "$out"; exit 1; }
echo "ok: iommufdctl --bus acquire lets go on revoke and reports it"
