#!/bin/bash
# timeout: 400
# What a careless admin does around held leases (alice's `iommufdctl run
# --managed` holding the e1000e, `sleep` inheriting the fds):
#  1. systemctl daemon-reexec, then a restart of the broker: the fd store
#     survived the re-exec, the lease is re-adopted with its iommufd.
#  2. A crash (SIGSEGV, Restart=on-failure): re-adopted, same holder.
#  3. The daemon started by hand while the service runs: it refuses to start
#     (one daemon per state directory) and touches no record.
#  4. root unbinds vfio-pci behind the broker's back while an unbound lease
#     is held (the write blocks until the holder's fds close); once the
#     holder is gone the lease ends and the e1000e comes back. It stayed
#     "releasing" for ever: the scan could not test a cdev that is gone.
#  5. A restart while a Revoke's unbind waits for a holder that ignores it
#     (its worker cannot die): the restart is prompt (systemd waited minutes
#     for that worker, then failed the unit), and the new broker ends the
#     lease once the holder lets go.
source "$DISTRO_LIB"

broker_start
set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice", "bob"] },
               "managed": true } ] }
EOF2
on_exit wait_for -t 60 driver_is "$E1000E" e1000e
on_exit pkill -KILL -u alice

state_of() { iommufdctl info --json "$E1000E" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state"))'; }
state_is() { [ "$(state_of)" = "$1" ]; }
holder_of() {
        iommufdctl info --json "$E1000E" |
                python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("state"), (d.get("holder") or {}).get("pid", 0))'
}

# hold MODE: alice's iommufdctl run in the background; $runner, $before.
hold() {
        run_as alice iommufdctl run -d "$E1000E" --managed --mode "$1" -- sleep 600 > run.out 2>&1 &
        runner=$!
        wait_for -t 30 state_is leased || fail "$E1000E not leased ($1): $(cat run.out)"
        before=$(holder_of)
        log "alice holds $E1000E ($1): $before"
}
let_go() {
        local holder=${before##* }
        pkill -KILL -P "$holder" sleep 2>/dev/null || true
        kill -KILL "$holder" 2>/dev/null || true
        wait "$runner" 2>/dev/null || true
}

log "1: daemon-reexec, then restart"
hold attached
systemctl daemon-reexec
wait_for -t 30 systemctl is-system-running --wait >/dev/null 2>&1 || true
systemctl reset-failed iommufd-broker.service 2>/dev/null || true
systemctl restart iommufd-broker.service
wait_for -t 30 systemctl is-active -q iommufd-broker.service || fail "the broker did not come back"
[ "$(holder_of)" = "$before" ] || fail "after daemon-reexec + restart: $(holder_of), was $before"
journal_grep -u iommufd-broker.service "re-adopted lease of session .*iommufd kept" ||
        fail "the lease was not re-adopted with its iommufd after daemon-reexec"

log "2: SIGSEGV"
systemctl reset-failed iommufd-broker.service 2>/dev/null || true
old=$(systemctl show -P MainPID iommufd-broker.service)
systemctl kill -s SEGV iommufd-broker.service
wait_for -t 60 sh -c "p=\$(systemctl show -P MainPID iommufd-broker.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $old ] && systemctl is-active -q iommufd-broker.service" ||
        fail "the broker did not come back after SIGSEGV"
[ "$(holder_of)" = "$before" ] || fail "after SIGSEGV: $(holder_of), was $before"
err=$(run_as bob iommufdctl acquire "$E1000E" --mode unbound 2>&1 </dev/null) && fail "bob acquired $E1000E"
grep -q DeviceBusy <<<"$err" || fail "bob after SIGSEGV: $err"

log "3: a second daemon by hand"
records=$(cat /run/iommufd-broker/leases/* 2>/dev/null | md5sum)
if timeout 20 iommufd-broker > second.out 2>&1; then
        fail "a second daemon started beside the service: $(cat second.out)"
fi
cat second.out
grep -q "Another iommufd-broker is running" second.out || fail "the second daemon does not say why"
! grep -q "re-adopted\|cut short" second.out || fail "the second daemon acted on the service's records"
[ "$(cat /run/iommufd-broker/leases/* 2>/dev/null | md5sum)" = "$records" ] || fail "the records changed"
[ "$(holder_of)" = "$before" ] || fail "after the second daemon: $(holder_of), was $before"
let_go
wait_for -t 30 state_is available || fail "the lease did not end after alice let go: $(state_of)"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e"

log "4: root unbinds vfio-pci while an unbound lease is held"
hold unbound
[ "$(device_driver "$E1000E")" = vfio-pci ] || fail "managed acquire left $E1000E on $(device_driver "$E1000E")"
# Nobody registered a request eventfd (sleep holds an unbound fd): the
# unbind waits until the fds close.
echo "$E1000E" > /sys/bus/pci/drivers/vfio-pci/unbind &
unbind=$!
sleep 2
kill -0 "$unbind" 2>/dev/null || log "note: the unbind returned while the fd was open"
let_go
wait "$unbind" || true
log "unbind returned; driver now $(device_driver "$E1000E")"
wait_for -t 30 state_is available ||
        fail "the lease did not end once the holder was gone and vfio-pci let go: $(state_of); $(journal_since_case -u iommufd-broker.service -o cat | tail -n 8)"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e: $(device_driver "$E1000E")"
log "4: lease ended, $E1000E back on e1000e"

log "5: restart while a Revoke's unbind waits for a holder that ignores it"
hold unbound
# sleep holds an unbound fd and registered no request eventfd: the revoke's
# unbind waits in vfio-pci until it closes, whatever signal its worker gets.
if iommufdctl revoke "$E1000E" --timeout 3 > revoke.out 2>&1; then
        fail "revoke succeeded though sleep holds the device: $(cat revoke.out)"
fi
grep -q RevokeTimeout revoke.out || fail "not RevokeTimeout: $(cat revoke.out)"
systemctl reset-failed iommufd-broker.service 2>/dev/null || true
start=$SECONDS
timeout 150 systemctl restart iommufd-broker.service || fail "systemctl restart failed or hung ($((SECONDS - start)) s)"
took=$((SECONDS - start))
log "restart with the revoke's unbind pending took $took s"
[ "$took" -lt 30 ] || fail "systemctl restart took $took s with a revoke's unbind pending"
systemctl is-active --quiet iommufd-broker.service || fail "the broker is not active after the restart"
wait_for -t 10 state_is releasing || fail "state after the restart: $(state_of)"
let_go
wait_for -t 30 state_is available ||
        fail "the revoked lease did not end after the holder let go: $(state_of); $(journal_since_case -u iommufd-broker.service -o cat | tail -n 8)"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e: $(device_driver "$E1000E")"
log "5: restart took $took s; the revoked lease ended once the holder let go"
