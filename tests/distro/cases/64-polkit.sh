#!/bin/bash
# polkit for real: a policy rule that requires polkit, and a JS rule in
# /etc/polkit-1/rules.d/ that allows alice and denies bob. Each gets the
# right answer over varlink (iommufdctl) and D-Bus (busctl); the broker asks
# polkitd, which runs the JS rule. Then Revoke (io.iommufd.broker.revoke) of
# a device root holds: bob gets PermissionDenied and the lease stays, alice
# gets it back (the holder lets go when asked) over varlink and D-Bus.
# timeout: 300
source "$DISTRO_LIB"

RULES=/etc/polkit-1/rules.d/50-iommufd-broker-test.rules
command -v pkcheck >/dev/null || skip "polkit is not installed"

cat > "$RULES" <<'EOF2'
// iommufd-broker distro case 64-polkit: alice yes, bob no.
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("io.iommufd.broker.acquire") == 0 || action.id == "io.iommufd.broker.revoke") {
        if (subject.user == "alice")
            return polkit.Result.YES;
        if (subject.user == "bob")
            return polkit.Result.NO;
    }
});
EOF2
on_exit rm -f "$RULES"
sleep 2         # polkitd reloads rules.d on change

policy=$(cat <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice", "bob"] },
               "modes": ["unbound"], "managed": true, "polkit": true } ] }
EOF2
)
echo "$policy" | set_policy
broker_start
restored() { [ "$(device_driver "$E1000E")" = e1000e ]; }
on_exit wait_for -t 60 restored

log "alice over varlink"
run_as alice iommufdctl run -d "$E1000E" --managed -- true 2> alice.err ||
        fail "alice was refused: $(cat alice.err)"
wait_for -t 60 restored || fail "$E1000E did not go back to e1000e after alice"

log "bob over varlink"
if run_as bob iommufdctl run -d "$E1000E" --managed -- true 2> bob.err; then
        fail "bob was allowed"
fi
cat bob.err
grep -q "PermissionDenied" bob.err || fail "bob did not get PermissionDenied: $(cat bob.err)"
grep -q "polkit" bob.err || fail "bob's error does not say polkit: $(cat bob.err)"
restored || fail "bob's refusal moved $E1000E to $(device_driver "$E1000E")"

log "bob and alice over D-Bus"
if run_as bob busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" AcquireDevices 'asa{sv}' \
        1 "$E1000E" 2 mode s unbound managed b true > bob.dbus 2>&1; then
        fail "bob was allowed over D-Bus: $(cat bob.dbus)"
fi
grep -q "PermissionDenied\|polkit" bob.dbus || fail "bob over D-Bus: $(cat bob.dbus)"
run_as alice busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" AcquireDevices 'asa{sv}' \
        1 "$E1000E" 2 mode s unbound managed b true > alice.dbus 2>&1 ||
        fail "alice was refused over D-Bus: $(cat alice.dbus)"
wait_for -t 60 restored || fail "$E1000E did not go back to e1000e after alice's D-Bus call"

journal_grep -u iommufd-broker.service "polkit: io.iommufd.broker.acquire-managed for $E1000E" ||
        fail "the broker's journal does not show bob's polkit denial"

# Root holds the device (bound, managed) with iommufdctl acquire, which lets
# go when the broker passes on the kernel's request.
hold() {
        iommufdctl acquire "$E1000E" --mode bound --managed > holder.out 2>&1 < /dev/null &
        holder=$!
        wait_for -t 30 sh -c "iommufdctl info --json $E1000E | grep -q '\"leased\"'" ||
                fail "root's lease: $(cat holder.out)"
}
still_leased() {
        iommufdctl info --json "$E1000E" | grep -q '"leased"' || fail "$1 moved the lease: $(iommufdctl info "$E1000E")"
        kill -0 "$holder" 2>/dev/null || fail "$1 ended the holder"
}
given_back() {
        wait "$holder" || true
        wait_for -t 30 sh -c "iommufdctl info --json $E1000E | grep -q '\"available\"'" ||
                fail "$1: the lease did not end: $(iommufdctl info "$E1000E")"
        wait_for -t 60 restored || fail "$1: $E1000E did not go back to e1000e"
}
stop_holder() { [ -z "${holder:-}" ] || kill "$holder" 2>/dev/null; true; }
on_exit stop_holder

log "revoke: bob over varlink and D-Bus"
hold
if run_as bob iommufdctl revoke "$E1000E" --timeout 10 > bob.revoke 2>&1; then
        fail "bob revoked over varlink: $(cat bob.revoke)"
fi
grep -q "PermissionDenied" bob.revoke || fail "bob's revoke over varlink: $(cat bob.revoke)"
still_leased "bob's varlink revoke"
if run_as bob busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" Revoke su "$E1000E" 10 > bob.revoke 2>&1; then
        fail "bob revoked over D-Bus: $(cat bob.revoke)"
fi
grep -q "PermissionDenied\|polkit" bob.revoke || fail "bob's revoke over D-Bus: $(cat bob.revoke)"
still_leased "bob's D-Bus revoke"

log "revoke: alice over varlink"
run_as alice iommufdctl revoke "$E1000E" --timeout 30 > alice.revoke 2>&1 ||
        fail "alice's revoke over varlink: $(cat alice.revoke)"
given_back "alice's varlink revoke"

log "revoke: alice over D-Bus"
hold
run_as alice busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" Revoke su "$E1000E" 30 > alice.revoke 2>&1 ||
        fail "alice's revoke over D-Bus: $(cat alice.revoke)"
given_back "alice's D-Bus revoke"

journal_grep -u iommufd-broker.service "polkit: io.iommufd.broker.revoke for uid $(id -u bob)" ||
        fail "the broker's journal does not show bob's revoke denial"
journal_grep -u iommufd-broker.service "revoke by uid $(id -u alice)" ||
        fail "the broker's journal does not show alice's revoke"
