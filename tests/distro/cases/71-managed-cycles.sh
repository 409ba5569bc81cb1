#!/bin/bash
# A managed Acquire right after the previous lease's driver came back, again
# and again: alice acquires the e1000e (managed; attached, or every third
# time bound), her process is killed (every other time after a broker
# restart), the e1000e goes back to e1000e, and she acquires it again at
# once. With the e1000e the only vfio device, devtmpfs removes
# /dev/vfio/devices each time and makes it again: the broker must not take
# that moment for a kernel without vfio cdevs (it did, 1 in 20 cycles under
# load: KernelUnsupported).
# timeout: 420
source "$DISTRO_LIB"

broker_start
set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] },
               "managed": true } ] }
EOF2
on_exit wait_for -t 60 sh -c "[ \"\$(basename \"\$(readlink /sys/bus/pci/devices/$E1000E/driver)\")\" = e1000e ]"

holder_pid() {
        iommufdctl info --json "$E1000E" |
                python3 -c 'import json,sys; print((json.load(sys.stdin).get("holder") or {}).get("pid", 0))'
}

cycles=${DISTRO_MANAGED_CYCLES:-12}
for i in $(seq 1 "$cycles"); do
        mode=attached
        [ $((i % 3)) = 0 ] && mode=bound
        out=$(mktemp)
        run_as alice iommufdctl run -d "$E1000E" --managed --mode "$mode" -- sleep 600 >"$out" 2>&1 &
        runner=$!
        wait_for -t 30 sh -c "iommufdctl info --json $E1000E | grep -q '\"leased\"'" ||
                fail "cycle $i ($mode): not leased; iommufdctl said: $(cat "$out"); the broker: $(journal_since_case -u iommufd-broker.service -o cat | tail -n 6)"
        holder=$(holder_pid)
        [ $((i % 2)) = 0 ] && systemctl restart iommufd-broker.service
        pkill -KILL -P "$holder" sleep 2>/dev/null || true
        kill -KILL "$holder" 2>/dev/null || true
        wait "$runner" 2>/dev/null || true
        wait_for -t 30 sh -c "[ \"\$(basename \"\$(readlink /sys/bus/pci/devices/$E1000E/driver)\")\" = e1000e ]" ||
                fail "cycle $i: $E1000E not back on e1000e: $(device_driver "$E1000E")"
        wait_for -t 30 sh -c "iommufdctl info --json $E1000E | grep -q '\"available\"'" ||
                fail "cycle $i: not available again: $(iommufdctl info "$E1000E" 2>&1 | head -n 3)"
        log "cycle $i ($mode): leased, ended, back on e1000e"
done
journal_grep -u iommufd-broker.service "KernelUnsupported|no vfio device cdevs" &&
        fail "the broker took a kernel with vfio cdevs for one without"
true
