#!/bin/bash
# timeout: 240
# The stock tools of a systemd distribution talk to the broker, as root and
# as an unprivileged user: busctl (introspect, get-property, call) on the
# system bus and varlinkctl (info, introspect, call) on the varlink socket.
source "$DISTRO_LIB"
broker_start

edu_path=$(busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" GetDevice s "$EDU" | awk '{print $2}' | tr -d '"')
[ -n "$edu_path" ] || fail "GetDevice returned no object path"
log "edu object: $edu_path"

for user in root alice; do
        as() { if [ "$user" = root ]; then "$@"; else run_as "$user" "$@"; fi; }
        log "as $user: busctl"
        as busctl --system introspect "$BUS_NAME" "$BUS_PATH" > introspect.$user ||
                fail "busctl introspect as $user"
        for m in .ListDevices .GetDevice .AcquireDevices .ReleaseDevices .Version; do
                grep -q "^\\$m " introspect.$user || fail "busctl introspect as $user lacks $m"
        done
        version=$(as busctl --system get-property "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" Version) ||
                fail "busctl get-property Version as $user"
        [[ $version == s\ \"*\" ]] || fail "Version is '$version'"
        state=$(as busctl --system get-property "$BUS_NAME" "$edu_path" "$BUS_NAME.Device" Address) ||
                fail "busctl get-property Address as $user"
        [ "$state" = "s \"$EDU\"" ] || fail "the edu's Address is '$state'"
        as busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" ListDevices > list.$user ||
                fail "busctl call ListDevices as $user"
        grep -q "\"$E1000E\"" list.$user && grep -q "\"$EDU\"" list.$user ||
                fail "ListDevices as $user: $(cat list.$user)"
        as busctl --system --json=short call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" ListDevices |
                python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["type"]=="a(so)", d' ||
                fail "ListDevices as $user does not return a(so)"

        log "as $user: varlinkctl"
        as varlinkctl info "$BROKER_SOCKET" > info.$user || fail "varlinkctl info as $user"
        grep -q 'io.iommufd.Broker' info.$user || fail "varlinkctl info as $user: $(cat info.$user)"
        as varlinkctl introspect "$BROKER_SOCKET" io.iommufd.Broker > idl.$user ||
                fail "varlinkctl introspect as $user"
        grep -q 'method ListDevices' idl.$user && grep -q 'method Acquire' idl.$user ||
                fail "varlinkctl introspect as $user: $(head -c 400 idl.$user)"
        as varlinkctl call "$BROKER_SOCKET" io.iommufd.Broker.ListDevices '{}' > vlist.$user ||
                fail "varlinkctl call ListDevices as $user"
        python3 - vlist.$user "$E1000E" "$EDU" <<'PY' || fail "varlinkctl ListDevices as $user: $(head -c 400 vlist.$user)"
import json, sys
with open(sys.argv[1]) as f:
    devices = {d["address"]: d for d in json.load(f)["devices"]}
for a in sys.argv[2:]:
    assert a in devices, a
assert devices[sys.argv[2]]["driver"] == "e1000e", devices[sys.argv[2]]
PY
        as varlinkctl call "$BROKER_SOCKET" io.iommufd.Broker.GetDevice "{\"address\":\"$EDU\"}" | grep -q '"state"' ||
                fail "varlinkctl GetDevice as $user"
        # A typed error comes back as such.
        if as varlinkctl call "$BROKER_SOCKET" io.iommufd.Broker.GetDevice '{"address":"0000:7f:1f.7"}' 2> err.$user; then
                fail "GetDevice of a missing device succeeded as $user"
        fi
        grep -q 'DeviceNotFound' err.$user || fail "GetDevice of a missing device as $user: $(cat err.$user)"
done
# iommufdctl, the project's own client, as the user.
run_as alice iommufdctl list | tee ctl.list
grep -q "$EDU" ctl.list || fail "iommufdctl list as alice does not show $EDU"

# A client whose fd limit cannot take an acquire's fds is told so, on both
# transports (sd-bus 257 fails such a reply with ECHRNG, 252 with EXFULL), and
# the device comes back to its driver.
for t in varlink bus; do
        args=(--socket "$BROKER_SOCKET")
        [ "$t" = bus ] && args=(--bus)
        if (ulimit -n 6; iommufdctl "${args[@]}" acquire --managed "$EDU") > fdlimit.out 2>&1; then
                fail "acquire with RLIMIT_NOFILE 6 over ${args[0]} succeeded: $(cat fdlimit.out)"
        fi
        grep -q "LocalError: cannot receive the file descriptors the broker sent: too many open files" fdlimit.out ||
                fail "acquire with RLIMIT_NOFILE 6 over ${args[0]}: $(cat fdlimit.out)"
        wait_for -t 30 sh -c "iommufdctl info $EDU | grep -q 'State: *available'" ||
                fail "$EDU not available again after the ${args[0]} acquire with RLIMIT_NOFILE 6"
done
