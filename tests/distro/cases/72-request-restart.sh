#!/bin/bash
# vfio-pci's device request reaches a restarted broker: the request eventfd
# the broker registers for a bound or attached lease is kept in the fd store
# (FDNAME request.<address>-<session>) and watched again after `systemctl
# restart`. alice holds the e1000e (managed) through a client that lets go
# when its lease turns "releasing" (it polls, so it needs no connection that
# the restart would cut). After the restart:
#  - root's Revoke ends the lease and the e1000e goes back to e1000e, and the
#    journal shows the kernel's request arriving on the kept eventfd;
#  - an unbind nobody announced (as a hot unplug does it) is turned into
#    "releasing" (unplug-requested), so the client lets go and the unbind
#    returns. Without the kept eventfd it would block until the holder exits.
# timeout: 300
source "$DISTRO_LIB"

broker_start
set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] },
               "modes": ["bound", "attached"], "managed": true } ] }
EOF2
on_exit wait_for -t 60 driver_is "$E1000E" e1000e

answer=/usr/local/bin/answer-when-releasing
cat > "$answer" <<'EOF2'
#!/bin/sh
# Hold the fds iommufdctl run passed, until the broker says the lease is releasing.
until iommufdctl info --json "$1" |
        python3 -c 'import json,sys; sys.exit(json.load(sys.stdin).get("state") != "releasing")'; do
        sleep 0.3
done
EOF2
chmod 755 "$answer"
on_exit rm -f "$answer"
on_exit put_back
on_exit sh -c "pkill -KILL -u alice; sleep 1; true"

state_of() { iommufdctl info --json "$E1000E" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state"))'; }
state_is() { [ "$(state_of)" = "$1" ]; }
stopped() { ! kill -0 "$1" 2>/dev/null; }
# After an unbind the broker leaves the device driverless: put it back.
put_back() {
        driver_is "$E1000E" none || return 0
        echo > "/sys/bus/pci/devices/$E1000E/driver_override"
        echo "$E1000E" > /sys/bus/pci/drivers_probe
}
kernel_asked() { journal_since_case -u iommufd-broker.service -o cat | grep -c "$E1000E: the kernel asks for the device back" || true; }

# hold MODE: alice's answering client holds the e1000e; then the broker restarts.
hold_and_restart() {
        run_as alice iommufdctl run -d "$E1000E" --managed --mode "$1" -- "$answer" "$E1000E" > holder.out 2>&1 &
        runner=$!
        wait_for -t 30 state_is leased ||
                fail "$E1000E not leased ($1): $(cat holder.out)"
        systemctl restart iommufd-broker.service
        wait_for -t 60 systemctl is-active -q iommufd-broker.service || fail "the broker did not come back"
        [ "$(state_of)" = leased ] || fail "after the restart ($1): $(state_of)"
        journal_grep -u iommufd-broker.service "$E1000E: re-adopted lease .*$1 mode.*request eventfd kept" ||
                fail "the request eventfd was not re-adopted ($1)"
}

for mode in bound attached; do
        log "$mode: Revoke after a restart"
        before=$(kernel_asked)
        hold_and_restart "$mode"
        iommufdctl revoke "$E1000E" --timeout 60 > revoke.out 2>&1 || fail "revoke ($mode): $(cat revoke.out)"
        wait "$runner" || true
        wait_for -t 30 state_is available ||
                fail "the lease did not end ($mode): $(state_of)"
        wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e ($mode): $(device_driver "$E1000E")"
        [ "$(kernel_asked)" -gt "$before" ] || fail "the kernel's request did not reach the restarted broker ($mode)"
done

log "bound: an unannounced unbind after a restart"
before=$(kernel_asked)
hold_and_restart bound
echo "$E1000E" > "/sys/bus/pci/devices/$E1000E/driver/unbind" &
unbind=$!
wait_for -t 60 stopped "$unbind" || fail "the unbind still waits: the client was never told ($(state_of))"
wait "$runner" || true
[ "$(kernel_asked)" -gt "$before" ] || fail "the kernel's request did not reach the restarted broker"
journal_grep -u iommufd-broker.service "lease of $E1000E by uid $(id -u alice) \(pid [0-9]+, session [0-9]+\) ended: unplug-requested" ||
        fail "the lease did not end as unplug-requested"
put_back
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e: $(device_driver "$E1000E")"
