#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A D-Bus client whose RLIMIT_NOFILE cannot take the fds of an AcquireDevices
# reply: sd-bus fails it with EXFULL, which iommufdctl printed as
# "System.Error.EXFULL: Exchange full". Now a clear LocalError naming the
# limit, as over varlink; the devices go back.
# Runs under run-with-broker.sh (DBUS_TEST_ADDRESS).
set -u
fails=0
for n in 5 6 7; do
        out=$( (ulimit -n "$n"; "$IOMMUFDCTL" --bus "$DBUS_TEST_ADDRESS" acquire 00:03.0 00:03.1) 2>&1)
        rc=$?
        if [ "$rc" = 1 ] && [[ $out == *"LocalError: cannot receive the file descriptors the broker sent: too many open files"* ]]; then
                echo "ok: RLIMIT_NOFILE $n: $out"
        else
                echo "FAIL: RLIMIT_NOFILE $n: rc $rc: $out"
                fails=$((fails + 1))
        fi
done
for a in _30000_3a00_3a03_2e0 _30000_3a00_3a03_2e1; do
        for _ in $(seq 100); do
                busctl --address="$DBUS_TEST_ADDRESS" get-property io.iommufd.Broker1 \
                        "/io/iommufd/Broker1/device/$a" io.iommufd.Broker1.Device State | grep -q available && break
                sleep 0.05
        done
        busctl --address="$DBUS_TEST_ADDRESS" get-property io.iommufd.Broker1 \
                "/io/iommufd/Broker1/device/$a" io.iommufd.Broker1.Device State | grep -q available ||
                { echo "FAIL: $a not available again"; fails=$((fails + 1)); }
done
[ "$fails" = 0 ]
