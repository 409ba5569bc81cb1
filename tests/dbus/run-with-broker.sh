#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-with-broker.sh BROKER WITH_FAKE_SYSFS CMD [ARGS...]
#
# Start a private, real dbus-daemon with a config of its own (unix:path in a
# temp dir, everything allowed, any uid may connect), run the fake-kernel
# broker on it under the fake sysfs, run CMD, then check that the broker
# still answers and that its fd count is back to the baseline taken before
# CMD ran. CMD sees:
#   DBUS_TEST_ADDRESS  the bus address
#   BROKER_PID         the broker's pid
#   UMOCKDEV_DIR       the testbed, for tests/fixtures/fake-sysfs-ctl
#   DBUS_TEST_DIR      a scratch directory (world-readable)
# FIXTURE (env) picks the device table, default "default". Also from the
# environment: BROKER_VARLINK=1 serves varlink too, on $VARLINK_TEST_SOCKET;
# BROKER_POLICY is a policy.json text (@UID@ becomes the caller's uid);
# BROKER_ARGS are more broker options.
set -u

broker=$1 wrapper=$2
shift 2

tmp=$(mktemp -d /tmp/iommufd-dbus-test.XXXXXX)
chmod 755 "$tmp"
bus_pid= broker_pid=

cleanup() {
        [ -n "${BROKER_PID:-}" ] && kill "$BROKER_PID" 2>/dev/null
        [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null
        [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
        wait 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*"
        [ -s "$tmp/broker.log" ] && sed 's/^/broker: /' "$tmp/broker.log" | tail -40
        exit 1
}

cat >"$tmp/bus.conf" <<EOF
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
EOF

dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" &
bus_pid=$!
for _ in $(seq 100); do [ -s "$tmp/address" ] && break; sleep 0.05; done
[ -s "$tmp/address" ] || fail "dbus-daemon did not start"
DBUS_TEST_ADDRESS=$(head -n1 "$tmp/address")
export DBUS_TEST_ADDRESS DBUS_TEST_DIR="$tmp"

bus() { busctl --address="$DBUS_TEST_ADDRESS" "$@"; }

varlink_args=(--no-varlink)
if [ "${BROKER_VARLINK:-0}" = 1 ]; then
        export VARLINK_TEST_SOCKET=$tmp/varlink
        varlink_args=(--varlink-listen "$VARLINK_TEST_SOCKET")
fi
policy=$tmp/no-policy.json
if [ -n "${BROKER_POLICY:-}" ]; then
        policy=$tmp/policy.json
        printf '%s\n' "${BROKER_POLICY//@UID@/$(id -u)}" >"$policy"
fi
# shellcheck disable=SC2086 # BROKER_ARGS is a list of options
# The testbed directory only exists inside the wrapper: have it tell us.
"$wrapper" "${FIXTURE:-default}" -- sh -c 'echo "$UMOCKDEV_DIR" >"$0"; exec "$@"' "$tmp/umockdev-dir" \
        "$broker" --bus-address "$DBUS_TEST_ADDRESS" "${varlink_args[@]}" \
        --policy "$policy" --policy-dir "$tmp/no-policy.d" ${BROKER_ARGS:-} \
        >"$tmp/broker.log" 2>&1 &
broker_pid=$!

for _ in $(seq 200); do
        bus call org.freedesktop.DBus / org.freedesktop.DBus NameHasOwner s io.iommufd.Broker1 2>/dev/null |
                grep -q true && break
        kill -0 "$broker_pid" 2>/dev/null || fail "broker exited before owning io.iommufd.Broker1"
        sleep 0.05
done
owner_pid=$(bus call org.freedesktop.DBus / org.freedesktop.DBus GetConnectionUnixProcessID s io.iommufd.Broker1 |
            awk '{print $2}')
[ -n "$owner_pid" ] || fail "broker did not take io.iommufd.Broker1"
UMOCKDEV_DIR=$(cat "$tmp/umockdev-dir")
export BROKER_PID=$owner_pid UMOCKDEV_DIR

fd_count() { ls "/proc/$BROKER_PID/fd" 2>/dev/null | wc -l; }
bus call io.iommufd.Broker1 /io/iommufd/Broker1 io.iommufd.Broker1 ListDevices >/dev/null ||
        fail "ListDevices before the test"
baseline=$(fd_count)

"$@"
rc=$?

kill -0 "$BROKER_PID" 2>/dev/null || fail "broker died during the test"
bus call io.iommufd.Broker1 /io/iommufd/Broker1 io.iommufd.Broker1 ListDevices >/dev/null ||
        fail "broker no longer answers ListDevices"
echo "ok: broker still answers after the test"
# Sessions end asynchronously (name-lost signals, pidfd): give it a moment.
for _ in $(seq 100); do [ "$(fd_count)" = "$baseline" ] && break; sleep 0.05; done
now=$(fd_count)
if [ "$now" = "$baseline" ]; then
        echo "ok: broker fd count back to baseline ($baseline)"
else
        ls -l "/proc/$BROKER_PID/fd"
        fail "broker fd count $now, baseline $baseline"
fi
if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        sed 's/^/broker: /' "$tmp/broker.log" | tail -40
fi
exit "$rc"
