#!/bin/bash
# timeout: 400
# Revoke with an unmodified QEMU 10 holding the e1000e (alice, `iommufdctl
# run --managed`, unbound mode: QEMU registers vfio-pci's request eventfd
# itself, and answers a request with qdev_unplug()). No guest OS runs, so
# what QEMU can do is what its bus can do without one:
#  1. On the q35 root bus (no hotplug) qdev_unplug() fails: QEMU logs it,
#     keeps the device, and root's Revoke returns RevokeTimeout naming
#     QEMU's pid. The lease stays (releasing), QEMU keeps running; after QMP
#     quit the lease ends and the e1000e is back on e1000e.
#  2. Behind a pcie-root-port (ACPI hotplug) QEMU accepts the request and
#     waits for the guest to eject the device. A QMP system_reset stands in
#     for the guest: QEMU completes pending unplugs at reset, as at a guest
#     reboot. QEMU emits DEVICE_DELETED, closes the device, the lease ends,
#     Revoke returns success, the e1000e is back on e1000e, and QEMU is still
#     running.
source "$DISTRO_LIB"

set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] },
               "managed": true, "memlock": "1G" } ] }
EOF2
broker_start
[ "$(device_driver "$E1000E")" = e1000e ] || fail "$E1000E starts on $(device_driver "$E1000E")"
on_exit wait_for -t 60 driver_is "$E1000E" e1000e
on_exit pkill -KILL -u alice

qmp_dir=$DISTRO_SCRATCH/qmp
install -d -o alice -g alice "$qmp_dir"
sock=$qmp_dir/qmp.sock
qmp() { python3 "$DISTRO_SRC/tests/distro/qmp.py" "$sock" "$@"; }
# pt0 is realized (query-pci shows a bridged bus only once firmware numbered it).
has_pt0() { qmp qom-list '{"path": "/machine/peripheral"}' | grep -q '"name": "pt0"'; }

# run_qemu EXTRA-DEVICE-ARGS...: alice's QEMU in the background ($qemu_job), QMP up.
run_qemu() {
        rm -f "$sock"
        run_as alice iommufdctl run -d "$E1000E" --managed -- \
                qemu-system-x86_64 -machine q35 -accel tcg -m 256M -nodefaults -display none \
                -qmp "unix:$sock,server=on,wait=off" \
                -object 'iommufd,id=i0,fd={iommufd}' "$@" > qemu.out 2>&1 &
        qemu_job=$!
        wait_for -t 120 test -S "$sock" || { cat qemu.out; fail "QEMU did not come up"; }
        has_pt0 || { cat qemu.out; fail "QEMU does not show pt0"; }
        qemu_pid=$(pgrep -u alice -f '^qemu-system-x86_64' | head -n1)
        [ -n "$qemu_pid" ] || fail "no QEMU process"
        log "QEMU pid $qemu_pid holds $E1000E"
}
state_of() { iommufdctl info --json "$E1000E" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state"))'; }
state_is() { [ "$(state_of)" = "$1" ]; }
qemu_running() { qmp query-status | grep -q '"status": "running"'; }

log "1: root bus, no hotplug"
run_qemu -device 'vfio-pci,iommufd=i0,fd={dev0},id=pt0'
start=$SECONDS
if iommufdctl revoke "$E1000E" --timeout 15 > revoke1.out 2>&1; then
        fail "revoke succeeded though QEMU cannot unplug from the root bus: $(cat revoke1.out)"
fi
cat revoke1.out
log "RevokeTimeout after $((SECONDS - start)) s"
grep -q RevokeTimeout revoke1.out || fail "not RevokeTimeout"
grep -q "pid $qemu_pid (qemu" revoke1.out || fail "the error does not name QEMU (pid $qemu_pid)"
grep -q "does not support hotplugging" qemu.out || { cat qemu.out; fail "QEMU's log does not show the request"; }
grep 'does not support hotplugging' qemu.out | head -n1
state_is releasing || fail "state after the timeout: $(state_of)"
qemu_running || fail "QEMU stopped running"
has_pt0 || fail "pt0 went away"
[ "$(device_driver "$E1000E")" != e1000e ] || fail "$E1000E back on e1000e while QEMU holds it"
qmp quit > /dev/null
wait "$qemu_job" || true
wait_for -t 30 state_is available || fail "the lease did not end after QEMU quit: $(state_of)"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e: $(device_driver "$E1000E")"
log "1: the lease ended when QEMU quit; $E1000E is back on e1000e"

# QEMU 10 now and then aborts in that system_reset ("resettable_container_
# child_foreach: Assertion `len == rc->children->len' failed": the device
# goes away during the reset's walk), a QEMU bug. Its fds close, so the lease
# ends and the revoke succeeds, which is checked; then the scenario is tried
# again, at most three times, for QEMU unplugging and running on.
part2() {
        local unplugged=true
        run_qemu -device pcie-root-port,id=rp0,chassis=1,slot=1 -device 'vfio-pci,iommufd=i0,fd={dev0},id=pt0,bus=rp0'
        iommufdctl revoke "$E1000E" --timeout 120 > revoke2.out 2>&1 &
        revoke=$!
        wait_for -t 30 state_is releasing || fail "the revoke did not start: $(state_of)"
        sleep 1         # QEMU reads the request and records the unplug as pending
        # No guest ejects it: reset, as a guest's reboot would, until QEMU deletes
        # the device (a request QEMU had not read yet is repeated by vfio-pci every 10 s).
python3 - "$DISTRO_SRC/tests/distro" "$sock" <<'PY' || unplugged=false
import json, sys, time
sys.path.insert(0, sys.argv[1])
from qmp import Qmp

def call(q, command):
    """Run command; its return value and the events that came before it."""
    q.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
    events = []
    while True:
        msg = q.read()
        if "event" in msg:
            events.append(msg)
        elif "error" in msg:
            raise RuntimeError(f"{command}: {msg['error']}")
        else:
            return msg.get("return"), events

q = Qmp(sys.argv[2])
for attempt in range(3):
    _, events = call(q, "system_reset")
    for _ in range(12):
        for e in events:
            if e.get("event") == "DEVICE_DELETED" and e.get("data", {}).get("device") == "pt0":
                print(f"DEVICE_DELETED pt0 after system_reset {attempt + 1}")
                sys.exit(0)
        time.sleep(1)
        _, events = call(q, "query-status")
sys.exit(1)
PY
        if ! $unplugged && kill -0 "$qemu_pid" 2>/dev/null; then
                cat qemu.out
                fail "QEMU did not delete pt0"
        fi
        wait "$revoke" || { cat revoke2.out; fail "revoke failed although QEMU let go of the device"; }
        cat revoke2.out
        # Revoke answers once the lease ended; a managed lease's driver comes back
        # right after, in a worker (the device is busy until then).
        wait_for -t 30 state_is available || fail "state after the revoke: $(state_of)"
        wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e: $(device_driver "$E1000E")"
        if ! $unplugged; then
                wait "$qemu_job" || true
                grep -q "Assertion .len == rc->children->len' failed" qemu.out || { cat qemu.out; fail "QEMU died"; }
                log "2: QEMU aborted in system_reset (its reset-container assertion); the revoke ended the lease all the same"
                return 3
        fi
        qemu_running || fail "QEMU is not running after the revoke"
        ! has_pt0 || fail "QEMU still has pt0"
        kill -0 "$qemu_pid" || fail "QEMU exited"
        log "2: QEMU unplugged pt0 and runs on; $E1000E is back on e1000e"
        qmp quit > /dev/null
        wait "$qemu_job" || true
}

log "2: behind a pcie-root-port (ACPI hotplug)"
for attempt in 1 2 3; do
        rc=0
        part2 || rc=$?
        [ "$rc" = 0 ] && break
        [ "$attempt" = 3 ] && fail "QEMU aborted in system_reset three times"
done
journal_grep -u iommufd-broker.service "$E1000E: revoked, the holder let go" || fail "no revoke in the journal"
