#!/bin/bash
# timeout: 300
# The headline case: alice, with the default memlock limit, allowed by a
# policy rule with "memlock": "1G" and "managed": true, runs an unmodified
# qemu-system-x86_64 through `iommufdctl run --managed`. QEMU realizes
# vfio-pci on the broker's fds (mapping all its RAM for DMA, which the
# default 8 MiB limit would refuse), QMP query-pci shows the device, and
# after `quit` the device is back on e1000e.
source "$DISTRO_LIB"

policy=$(cat <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] },
               "managed": true, "memlock": "1G" } ] }
EOF2
)
# Skip only while the daemon itself rejects the key (the feature is not in).
if ! echo "$policy" | policy_accepts; then
        echo "$policy" > policy.json
        iommufd-broker --check-config --policy policy.json --policy-dir /nonexistent || true
        skip "this broker's policy parser rejects \"memlock\""
fi
broker_start

limit=$(run_as alice sh -c 'ulimit -l')
log "alice's memlock limit before: $limit KiB"
[ "$limit" != unlimited ] && [ "$limit" -le 65536 ] || fail "alice does not have a default memlock limit ($limit)"
[ "$(device_driver "$E1000E")" = e1000e ] || fail "$E1000E starts on $(device_driver "$E1000E")"

# Whatever happens, no QEMU of alice's outlives the case.
on_exit pkill -KILL -u alice
qmp_dir=$DISTRO_SCRATCH/qmp
install -d -o alice -g alice "$qmp_dir"
sock=$qmp_dir/qmp.sock
# An unmodified QEMU, stopped (-S) but with the device realized, so all its
# RAM is already mapped for DMA and charged to its memlock limit.
run_qemu() {
        run_as alice iommufdctl run -d "$E1000E" --managed -- \
                qemu-system-x86_64 -machine q35 -accel tcg -m 256M -nodefaults -display none -S \
                -qmp "unix:$sock,server=on,wait=off" \
                -object 'iommufd,id=i0,fd={iommufd}' \
                -device 'vfio-pci,iommufd=i0,fd={dev0},id=pt0'
}

# Control: the same rule without "memlock" leaves alice's default limit, and
# QEMU cannot map its RAM (the failure this feature is for).
control_policy=$(echo "$policy" | python3 -c 'import json,sys; p=json.load(sys.stdin); del p["rules"][0]["memlock"]; print(json.dumps(p))')
echo "$control_policy" | set_policy
run_qemu > control.out 2>&1 < /dev/null &
control=$!
if ! wait_for -t 120 sh -c "! kill -0 $control 2>/dev/null"; then
        cat control.out
        fail "QEMU runs with 256 MiB of RAM under an 8 MiB memlock limit: the control proves nothing"
fi
status=0
wait "$control" || status=$?
[ "$status" != 0 ] || fail "QEMU exited 0 in the control"
cat control.out
grep -q 'Cannot allocate memory' control.out || fail "the control failed, but not for memory (above)"
wait_for driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e after the control"
rm -f "$sock"
log "control: without memlock QEMU fails as expected"

echo "$policy" | set_policy
run_qemu > qemu.out 2>&1 &
qemu_job=$!

if ! wait_for -t 120 test -S "$sock"; then
        cat qemu.out
        fail "QEMU did not come up"
fi
python3 "$DISTRO_SRC/tests/distro/qmp.py" "$sock" query-pci > query-pci.json || {
        cat qemu.out
        fail "QMP query-pci failed"
}
python3 - query-pci.json <<'PY' || { cat query-pci.json; fail "query-pci does not show the passed-through e1000e"; }
import json, sys
with open(sys.argv[1]) as f:
    buses = json.loads(f.readline())
devs = [d for b in buses for d in b["devices"]]
pt = [d for d in devs if d.get("qdev_id") == "pt0"]
assert pt, devs
assert pt[0]["id"]["vendor"] == 0x8086 and pt[0]["id"]["device"] == 0x10d3, pt[0]
print("query-pci:", pt[0]["qdev_id"], hex(pt[0]["id"]["vendor"]), hex(pt[0]["id"]["device"]), "bus", pt[0]["bus"], "slot", pt[0]["slot"])
PY
[ "$(device_driver "$E1000E")" = vfio-pci ] || fail "$E1000E is on $(device_driver "$E1000E") while QEMU runs"
qemu_pid=$(pgrep -u alice -f '^qemu-system-x86_64' | head -n1)
log "QEMU pid $qemu_pid memlock: $(grep 'Max locked memory' "/proc/$qemu_pid/limits")"

python3 "$DISTRO_SRC/tests/distro/qmp.py" "$sock" quit > /dev/null
status=0
wait "$qemu_job" || status=$?
cat qemu.out
[ "$status" = 0 ] || fail "iommufdctl run exited with $status"
if grep -q 'Cannot allocate memory\|vfio_container_dma_map\|error' qemu.out; then
        fail "QEMU reported an error (above)"
fi
wait_for driver_is "$E1000E" e1000e || fail "$E1000E is on $(device_driver "$E1000E") after quit"
log "after quit $E1000E is back on e1000e"
