#!/bin/bash
# The audit trail in the real journal: after alice acquires (and gives back)
# the e1000e through `iommufdctl run --managed`, `journalctl MESSAGE_ID=<grant>`
# shows the grant with DEVICE=, HOLDER_UID=1001 and the other holder fields,
# the lease end follows, and a policy reload has its own entry.
# timeout: 120
source "$DISTRO_LIB"

GRANT=21be8c7355e4446a8719acb244cc8f9a
RELEASE=65806a1cbd9a415f9a3579d03ebf427b
LEASE_END=cb1f319149294b36b01682f09a9e2865
POLICY_RELOAD=efb67ef9953744d79a68c8e66ee04486

broker_start
set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] },
               "modes": ["unbound"], "managed": true } ] }
EOF2
on_exit wait_for -t 60 sh -c "[ \"\$(basename \"\$(readlink /sys/bus/pci/devices/$E1000E/driver)\")\" = e1000e ]"

wait_for -t 20 sh -c "journalctl --sync; journalctl -q --no-pager -b MESSAGE_ID=$POLICY_RELOAD RESULT=ok -o cat | grep -q ."
log "policy reload entry: $(journal_since_case MESSAGE_ID=$POLICY_RELOAD -o cat | tail -n1)"

run_as alice iommufdctl run -d "$E1000E" --managed -- true || fail "iommufdctl run as alice failed"

entries() { journal_since_case "MESSAGE_ID=$1" "DEVICE=$E1000E" "HOLDER_UID=1001" -o verbose; }
# The lease's one closing entry: RELEASE (run gives its devices back when
# its command ends) or LEASE_END (had the connection gone first).
ended() {
        { journal_since_case "MESSAGE_ID=$RELEASE" "DEVICE=$E1000E" -o cat
          journal_since_case "MESSAGE_ID=$LEASE_END" "DEVICE=$E1000E" -o cat; } | grep -q .
}
wait_for -t 20 ended

entries "$GRANT" > grant.txt
cat grant.txt
grep -q "MESSAGE=$E1000E granted to uid 1001" grant.txt || fail "no grant entry for $E1000E and uid 1001"
for field in HOLDER_PID= SESSION= MODE=unbound "RULE=policy.json rule 1" MANAGED=yes; do
        grep -q "    $field" grant.txt || fail "the grant entry lacks $field"
done
grep -q "_SYSTEMD_UNIT=iommufd-broker.service" grant.txt || fail "the grant entry is not the broker's"
session=$(sed -n 's/^    SESSION=//p' grant.txt | tail -n1)

# When its command ends, `run` releases the devices (and waits for them to
# be free): one RELEASE entry for the session, or a LEASE_END with the reason
# had the connection gone first; never both, never none.
journal_since_case "MESSAGE_ID=$RELEASE" "DEVICE=$E1000E" "SESSION=$session" -o verbose > release.txt
journal_since_case "MESSAGE_ID=$LEASE_END" "DEVICE=$E1000E" "SESSION=$session" -o verbose > end.txt
cat release.txt end.txt
n_release=$(grep -c "^    MESSAGE_ID=$RELEASE" release.txt || true)
n_end=$(grep -c "^    MESSAGE_ID=$LEASE_END" end.txt || true)
[ $((n_release + n_end)) = 1 ] || fail "session $session has $n_release RELEASE and $n_end LEASE_END entries, not one"
if [ "$n_release" = 1 ]; then
        grep -q "    HOLDER_UID=1001" release.txt || fail "the RELEASE entry of session $session lacks HOLDER_UID=1001"
else
        grep -q "    HOLDER_UID=1001" end.txt || fail "the LEASE_END entry of session $session lacks HOLDER_UID=1001"
        grep -Eq "    REASON=(disconnected|client-exited)" end.txt || fail "the lease-end entry has no REASON"
fi
