#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A managed AcquireDevices over D-Bus while the rebind is slow (meson sets
# IOMMUFD_BROKER_TEST_REBIND_DELAY_MS for the broker): the call stays
# pending while the broker answers others, the device's State property is
# "busy" with the reason, a second AcquireDevices gets DeviceBusy, and the
# caller leaving (its bus name goes away) gives the device back at once.
# Runs under run-with-broker.sh (DBUS_TEST_ADDRESS, UMOCKDEV_DIR).
set -u
fails=0
out=$(mktemp)
trap 'rm -f "$out"; [ -n "${client:-}" ] && kill "$client" 2>/dev/null' EXIT

b() { busctl --address="$DBUS_TEST_ADDRESS" "$@"; }
check() {
        local what=$1
        shift
        if "$@" >"$out" 2>&1; then
                echo "ok: $what"
        else
                echo "FAIL: $what"
                sed 's/^/  /' "$out" | head -20
                fails=$((fails + 1))
        fi
}
ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

svc=io.iommufd.Broker1 obj=/io/iommufd/Broker1 addr=0000:00:04.0
sysdev=$UMOCKDEV_DIR/sys/bus/pci/devices/$addr
path=$(b call $svc $obj $svc GetDevice s $addr | awk '{print $2}' | tr -d '"')
state() { b get-property $svc "$path" $svc.Device State; }
wait_state() {  # STATE TIMEOUT_MS
        local end=$(( $(ms) + $2 ))
        until [ "$(state)" = "s \"$1\"" ]; do
                [ "$(ms)" -lt "$end" ] || return 1
                sleep 0.02
        done
}

check "$addr starts available" wait_state available 1000
# busctl itself, not a subshell around it: killing it must drop its bus name.
busctl --address="$DBUS_TEST_ADDRESS" --timeout=30 call $svc $obj $svc AcquireDevices 'asa{sv}' 1 $addr \
        2 mode s unbound managed b true >/dev/null 2>&1 &
client=$!
check "State is busy while the rebind runs" wait_state busy 3000
check "StateReason says why" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' get-property $svc '$path' $svc.Device StateReason |
               grep -q 'rebinding to vfio-pci'"
check "the broker answers ListDevices meanwhile" b call $svc $obj $svc ListDevices
check "a second managed AcquireDevices gets DeviceBusy naming the state" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj $svc AcquireDevices 'asa{sv}' 1 $addr \
               2 mode s unbound managed b true 2>&1 | grep 'busy: rebinding to vfio-pci'"
check "the first call is still pending" kill -0 "$client"

start=$(ms)
kill "$client"
wait "$client" 2>/dev/null
client=
check "available again soon after the caller left (the worker sleeps 5 s)" wait_state available 2500
echo "# given back $(( $(ms) - start )) ms after the caller left"
check "still on e1000e" sh -c "readlink '$sysdev/driver' | grep -q '/e1000e$'"
check "driver_override as before" sh -c "head -n1 '$sysdev/driver_override' | grep -Eqx '|\\(null\\)'"
check "the broker log says it gave the device back" \
        sh -c "grep -q 'giving them back' '$DBUS_TEST_DIR/broker.log'"

[ "$fails" = 0 ]
