#!/bin/bash
# timeout: 240
# memlock by policy over D-Bus: the real dbus-daemon passes ProcessFD, so the
# broker raises the caller's RLIMIT_MEMLOCK through its pidfd and says so in
# the AcquireDevices reply (memlock_limit). Over busctl, as alice.
source "$DISTRO_LIB"

policy=$(cat <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] },
               "modes": ["unbound"], "managed": true, "memlock": "64M" } ] }
EOF2
)
echo "$policy" | policy_accepts || skip "the installed daemon does not know \"memlock\""
echo "$policy" | set_policy
broker_start
restored() { [ "$(device_driver "$E1000E")" = e1000e ]; }
on_exit wait_for -t 60 restored

run_as alice busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" AcquireDevices 'asa{sv}' \
        1 "$E1000E" 2 mode s unbound managed b true > alice.dbus 2>&1 ||
        fail "alice was refused over D-Bus: $(cat alice.dbus)"
cat alice.dbus
grep -q '"memlock_limit" t 67108864' alice.dbus ||
        fail "the AcquireDevices reply has no memlock_limit of 64 MiB: $(cat alice.dbus)"
journal_grep -u iommufd-broker.service "RLIMIT_MEMLOCK of pid [0-9]* raised to at least 64" ||
        fail "the broker's journal does not show the raise"
wait_for -t 60 restored || fail "$E1000E did not go back to e1000e after busctl exited"
