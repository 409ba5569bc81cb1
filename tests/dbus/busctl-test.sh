#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the README shows, by hand with busctl: introspect, tree, get-property,
# call. Runs under run-with-broker.sh (DBUS_TEST_ADDRESS).
set -u
fails=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

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

svc=io.iommufd.Broker1 obj=/io/iommufd/Broker1

b call $svc $obj $svc ListDevices >"$out"
# a(so) N "0000:00:02.0" "/io/iommufd/Broker1/device/_30000_3a00_3a02_2e0" ...
addr=$(tr ' ' '\n' <"$out" | sed -n '3p' | tr -d '"')
path=$(tr ' ' '\n' <"$out" | sed -n '4p' | tr -d '"')
check "ListDevices names a device ($addr at $path)" test -n "$addr" -a -n "$path"

check "busctl introspect shows AcquireDevices" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' introspect $svc $obj $svc | grep -E '^\.AcquireDevices +method +asa\{sv\} +ha\(sha\{sv\}\)a\{sv\}'"
check "busctl introspect shows the device properties" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' introspect $svc '$path' | grep -E '^\.State +property +s '"
check "busctl tree lists $path" sh -c "busctl --address='$DBUS_TEST_ADDRESS' tree --list $svc | grep -qx '$path'"
check "busctl get-property Address" sh -c "busctl --address='$DBUS_TEST_ADDRESS' get-property $svc '$path' $svc.Device Address | grep -qx 's \"$addr\"'"
check "busctl call GetDevice" sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj $svc GetDevice s $addr | grep -qx 'o \"$path\"'"

# Errors reach busctl with their message.
check "GetDevice(unknown) fails naming the device" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj $svc GetDevice s 0000:7f:1f.7 2>&1 | grep 'Call failed: 0000:7f:1f.7: no such'"

# Pick a free vfio device and acquire it with busctl: the fds arrive, and the
# lease ends when busctl exits.
free=
for p in $(b call $svc $obj $svc ListDevices | tr ' ' '\n' | grep '^"/' | tr -d '"'); do
        state=$(b get-property $svc "$p" $svc.Device State)
        reason=$(b get-property $svc "$p" $svc.Device StateReason)
        cdev=$(b get-property $svc "$p" $svc.Device VfioCdev)
        if [ "$state" = 's "available"' ] && [ "$reason" = 's ""' ] && [ "$cdev" != 's ""' ]; then
                free=$p
                break
        fi
done
if [ -n "$free" ]; then
        faddr=$(b get-property $svc "$free" $svc.Device Address | awk '{print $2}' | tr -d '"')
        check "busctl call AcquireDevices $faddr" \
                sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj $svc AcquireDevices 'asa{sv}' 1 $faddr 1 mode s unbound | grep -E '^ha\(sha\{sv\}\)a\{sv\} [0-9]+ 1 \"$faddr\" [0-9]+ 2 '"
        for _ in $(seq 100); do
                [ "$(b get-property $svc "$free" $svc.Device State)" = 's "available"' ] && break
                sleep 0.05
        done
        check "$faddr available again after busctl exited" \
                sh -c "busctl --address='$DBUS_TEST_ADDRESS' get-property $svc '$free' $svc.Device State | grep -qx 's \"available\"'"
else
        echo "FAIL: no free vfio device to acquire"
        fails=$((fails + 1))
fi

# Own: an option given twice was taken silently (the last one won); varlink
# refuses a duplicate key, so D-Bus does too.
check "AcquireDevices with mode given twice is InvalidParameter" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj $svc AcquireDevices 'asa{sv}' 1 0000:00:02.0 2 mode s bound mode s attached 2>&1 | grep \"Call failed: Option 'mode' is given twice.\""

# The same words as over varlink (integration error_invalid_parameter).
check "AcquireDevices with a device twice says it is listed twice" \
        sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj $svc AcquireDevices 'asa{sv}' 2 00:02.0 0000:00:02.0 0 2>&1 | grep -x 'Call failed: 0000:00:02.0 is listed twice'"

check "GetManagedObjects answers" sh -c "busctl --address='$DBUS_TEST_ADDRESS' call $svc $obj org.freedesktop.DBus.ObjectManager GetManagedObjects | grep -q '$path'"
[ "$fails" = 0 ]
