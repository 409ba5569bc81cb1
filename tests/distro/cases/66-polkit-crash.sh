#!/bin/bash
# polkitd dies while the broker's check is pending (a JS rule keeps it
# busy in polkit.spawn for bob): bob's Acquire fails at once with
# AuthorizationUnavailable carrying the bus's reason (it said "polkit did not
# answer in time", the words of the 20 s timeout), nothing is rebound, and
# alice's next Acquire activates a new polkitd and succeeds.
# timeout: 200
source "$DISTRO_LIB"

RULES=/etc/polkit-1/rules.d/49-iommufd-broker-crash.rules
command -v pkcheck >/dev/null || skip "polkit is not installed"
cat > "$RULES" <<'EOF2'
// iommufd-broker distro case 66-polkit-crash: bob's check takes a while.
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("io.iommufd.broker.acquire") == 0) {
        if (subject.user == "bob")
            polkit.spawn(["/bin/sleep", "7"]);
        return polkit.Result.YES;
    }
});
EOF2
on_exit rm -f "$RULES"
sleep 2         # polkitd reloads rules.d on change

set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice", "bob"] },
               "modes": ["unbound"], "managed": true, "polkit": true } ] }
EOF2
broker_start
on_exit wait_for -t 60 driver_is "$E1000E" e1000e

start=$SECONDS
run_as bob iommufdctl run -d "$E1000E" --managed -- true > bob.out 2>&1 &
bob=$!
wait_for -t 30 pgrep -f '^/bin/sleep 7' || fail "polkitd did not start bob's check"
systemctl kill -s KILL polkit.service
rc=0
wait "$bob" || rc=$?
took=$((SECONDS - start))
cat bob.out
[ "$rc" != 0 ] || fail "bob's Acquire succeeded though polkitd died"
grep -q "AuthorizationUnavailable" bob.out || fail "not AuthorizationUnavailable"
grep -q "disconnected" bob.out || fail "the error does not say polkitd went away"
! grep -q "in time" bob.out || fail "the error calls it a timeout"
[ "$took" -lt 15 ] || fail "bob waited $took s"
[ "$(device_driver "$E1000E")" = e1000e ] || fail "bob's refused Acquire moved $E1000E to $(device_driver "$E1000E")"

run_as alice iommufdctl run -d "$E1000E" --managed -- true 2> alice.err ||
        fail "alice was refused after polkitd died: $(cat alice.err)"
systemctl is-active -q polkit.service || fail "polkitd did not come back for alice's check"
wait_for -t 60 driver_is "$E1000E" e1000e || fail "$E1000E not back on e1000e after alice"
log "polkitd killed mid-check: bob told at once ($took s), alice served by a new polkitd"
