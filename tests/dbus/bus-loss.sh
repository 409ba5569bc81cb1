#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bus-loss.sh BROKER WITH_FAKE_SYSFS: when the D-Bus front end loses its bus
# the broker must exit with failure (so that Restart=on-failure fires), and
# say why. A private dbus-daemon is started, the broker put on it, and the
# dbus-daemon killed.
set -u
broker=$1 wrapper=$2
tmp=$(mktemp -d /tmp/iommufd-bus-loss.XXXXXX)
bus_pid= broker_pid=
cleanup() {
        [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null
        [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
        wait 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; sed 's/^/broker: /' "$tmp/broker.log" 2>/dev/null | tail -20; exit 1; }

cat >"$tmp/bus.conf" <<EOF2
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>iommufd-broker-test</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
EOF2
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" &
bus_pid=$!
for _ in $(seq 100); do [ -s "$tmp/address" ] && break; sleep 0.05; done
[ -s "$tmp/address" ] || fail "dbus-daemon did not start"
address=$(head -n1 "$tmp/address")

"$wrapper" default -- "$broker" --bus-address "$address" --no-varlink \
        --policy "$tmp/no-policy.json" --policy-dir "$tmp/no-policy.d" >"$tmp/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 200); do
        busctl --address="$address" call org.freedesktop.DBus / org.freedesktop.DBus NameHasOwner s \
                io.iommufd.Broker1 2>/dev/null | grep -q true && break
        kill -0 "$broker_pid" 2>/dev/null || fail "broker exited before owning its name"
        sleep 0.05
done

kill -KILL "$bus_pid"
wait "$bus_pid" 2>/dev/null
bus_pid=
for _ in $(seq 200); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$broker_pid" 2>/dev/null && fail "the broker still runs 10 s after its bus went away"
wait "$broker_pid"
rc=$?
broker_pid=
[ "$rc" != 0 ] || fail "the broker exited with 0 after losing the bus: Restart=on-failure would not fire"
grep -q "Lost the D-Bus connection" "$tmp/broker.log" || fail "the log does not say the bus was lost"
echo "ok: the broker exited with $rc after losing the bus"
