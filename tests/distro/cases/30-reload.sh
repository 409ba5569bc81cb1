#!/bin/bash
# timeout: 240
# `systemctl reload` with a broken policy keeps the policy in force and says
# why in the journal; a fixed policy is then picked up by the next reload.
# What is in force is shown by what alice may do: a managed run of the
# e1000e, allowed by the good policy, refused by the built-in default.
source "$DISTRO_LIB"

set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] }, "managed": true } ] }
EOF2
broker_start
pid=$(systemctl show -P MainPID iommufd-broker.service)

alice_may() { run_as alice iommufdctl run -d "$E1000E" --managed -- true; }
alice_may || fail "the good policy does not let alice use $E1000E"
wait_for driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e"

# Broken: not JSON at all.
printf '{ "rules": [ { "principals": ' > "$POLICY_FILE"
systemctl reload iommufd-broker.service
wait_for journal_grep -u iommufd-broker.service 'Keeping the previous policy' ||
        fail "no 'Keeping the previous policy' in the journal after a broken reload"
journal_since_case -u iommufd-broker.service -o cat | tail -n 5
# The journal says why: the file and what is wrong with it.
journal_grep -u iommufd-broker.service "policy: .*policy\.json" ||
        fail "the journal does not name the broken file"
systemctl is-active -q iommufd-broker.service || fail "a broken policy stopped the broker"
[ "$(systemctl show -P MainPID iommufd-broker.service)" = "$pid" ] || fail "the broker restarted"
alice_may || fail "after a broken reload alice lost what the previous policy gave her"
wait_for driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e"

# Broken in meaning: valid JSON, unknown key.
echo '{ "rules": [ { "principals": { "users": ["alice"] }, "no-such-key": 1 } ] }' > "$POLICY_FILE"
systemctl reload iommufd-broker.service
wait_for journal_grep -u iommufd-broker.service 'no-such-key' ||
        fail "the journal does not say which key is wrong"
alice_may || fail "after the second broken reload alice lost the previous policy"
wait_for driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e"

# A good policy that allows nothing replaces it.
echo '{ "rules": [] }' > "$POLICY_FILE"
systemctl reload iommufd-broker.service
wait_for journal_grep -u iommufd-broker.service 'policy reloaded: 0 rules' ||
        fail "the fixed policy was not loaded"
if run_as alice iommufdctl run -d "$E1000E" --managed -- true 2> denied.err; then
        fail "alice may still use $E1000E under an empty policy"
fi
cat denied.err
grep -q PermissionDenied denied.err || fail "alice's refusal is not PermissionDenied"
[ "$(device_driver "$E1000E")" = e1000e ] || fail "a refused acquire moved $E1000E"
