#!/bin/bash
# Limits and identity under real systemd, dbus-daemon and kernel:
#  - the unit's LimitNOFILE= is what the running broker has (soft = hard: it
#    raises its soft limit at start), and the socket's accept backlog is the
#    short one of iommufd-broker.socket;
#  - a `units` rule is matched from the caller's pidfd: alice inside the
#    transient unit it names gets the e1000e (managed), over varlink and over
#    D-Bus (the
#    bus's GetConnectionCredentials ProcessFD), and alice outside it is
#    denied on both;
#  - an unprivileged connect storm leaves root answered.
# timeout: 180
source "$DISTRO_LIB"

broker_start
pid=$(systemctl show -P MainPID iommufd-broker.service)
[ "$pid" -gt 0 ] || fail "no MainPID"
want=$(systemctl show -P LimitNOFILE iommufd-broker.service)
log "LimitNOFILE=$want; $(grep 'Max open files' /proc/$pid/limits)"
[ "$want" = 16384 ] || fail "the unit's LimitNOFILE is $want, not 16384"
read -r soft hard < <(awk '/Max open files/ { print $4, $5 }' /proc/$pid/limits)
[ "$soft" = "$hard" ] && [ "$soft" = "$want" ] || fail "the broker's fd limit is $soft/$hard, want $want/$want"
backlog=$(ss -xlnH | awk -v p="$BROKER_SOCKET" '$5 == p { print $4 }')
if [ "$backlog" = 0 ]; then
        # Without CONFIG_UNIX_DIAG (the tier's kernel) ss reads /proc/net/unix,
        # which has no queue sizes: take what systemd listen()ed with.
        backlog=$(systemctl show -P Backlog iommufd-broker.socket)
fi
log "accept backlog of $BROKER_SOCKET: ${backlog:-?}"
[ "$backlog" = 128 ] || fail "the socket's backlog is '${backlog}', not 128"

set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "units": ["hostile-probe-*.service"] },
               "modes": ["unbound"], "managed": true } ] }
EOF2
on_exit wait_for -t 60 driver_is "$E1000E" e1000e
in_unit() {
        local name=$1
        shift
        systemd-run --quiet --wait --pipe --collect --unit="$name" -p User=alice -- "$@"
}
cmd=(sh -c 'readlink /proc/self/fd/{dev0}')
in_unit hostile-probe-varlink iommufdctl run -d "$E1000E" --managed -- "${cmd[@]}" > varlink.txt ||
        fail "alice in hostile-probe-varlink.service was not given $E1000E over varlink"
grep -q '^/dev/vfio/devices/vfio' varlink.txt || fail "varlink: no cdev fd: $(cat varlink.txt)"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e"
in_unit hostile-probe-dbus iommufdctl --bus run -d "$E1000E" --managed -- "${cmd[@]}" > dbus.txt ||
        fail "alice in hostile-probe-dbus.service was not given $E1000E over D-Bus (ProcessFD?)"
grep -q '^/dev/vfio/devices/vfio' dbus.txt || fail "D-Bus: no cdev fd: $(cat dbus.txt)"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e"
if run_as alice iommufdctl run -d "$E1000E" --managed -- true 2> denied.err; then
        fail "alice outside the unit was given $E1000E over varlink"
fi
grep -q PermissionDenied denied.err || fail "varlink refusal is not PermissionDenied: $(cat denied.err)"
if run_as alice iommufdctl --bus run -d "$E1000E" --managed -- true 2> denied-dbus.err; then
        fail "alice outside the unit was given $E1000E over D-Bus"
fi
grep -q PermissionDenied denied-dbus.err || fail "D-Bus refusal is not PermissionDenied: $(cat denied-dbus.err)"

# bob churns connections; root is still answered promptly.
run_as bob python3 -c '
import socket, time
end = time.monotonic() + 5
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX)
    try: s.connect("'"$BROKER_SOCKET"'")
    except OSError: pass
    s.close()
' &
churn=$!
on_exit kill "$churn"
sleep 1
start=$(date +%s%N)
iommufdctl list > /dev/null || fail "root's list failed during the churn"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
log "root's list during bob's connect storm took $ms ms"
[ "$ms" -lt 1000 ] || fail "root waited $ms ms during the storm"
wait "$churn" || true
