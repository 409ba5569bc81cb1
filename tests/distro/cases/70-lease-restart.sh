#!/bin/bash
# Leases survive the daemon: with alice holding the e1000e (managed) in each
# of the three modes, over varlink and over D-Bus, `systemctl restart`,
# `kill -9` (Restart=on-failure), `systemctl stop` + start and (in unbound
# mode) an upgrade (the binary replaced by a new file, as dpkg does, then
# daemon-reload + restart) keep the lease
# with the same holder (fd store + /run/iommufd-broker/leases), bob gets
# DeviceBusy meanwhile, and when alice's process ends the lease ends and the
# e1000e is back on its driver.
# timeout: 420
source "$DISTRO_LIB"

broker_start
set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice", "bob"] },
               "managed": true } ] }
EOF2
on_exit wait_for -t 60 sh -c "[ \"\$(basename \"\$(readlink /sys/bus/pci/devices/$E1000E/driver)\")\" = e1000e ]"

holder_of() {   # state and holder pid of the e1000e, as root sees it
        iommufdctl info --json "$E1000E" |
                python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("state"), (d.get("holder") or {}).get("pid", 0))'
}

broker_down_up() {      # how: restart | kill | stop | upgrade
        local bin
        # Restarts on purpose, one after another: not the crash loop that
        # systemd's start limit (5 starts in 10 s) is for.
        systemctl reset-failed iommufd-broker.service iommufd-broker.socket 2>/dev/null || true
        case $1 in
        restart) systemctl restart iommufd-broker.service ;;
        kill)    systemctl kill -s KILL iommufd-broker.service
                 # Restart=on-failure brings it back.
                 sleep 1 ;;
        stop)    systemctl stop iommufd-broker.service
                 systemctl start iommufd-broker.service ;;
        upgrade) bin=$(command -v iommufd-broker || echo /usr/sbin/iommufd-broker)
                 cp -p "$bin" "$bin.dpkg-new" && mv -f "$bin.dpkg-new" "$bin"
                 systemctl daemon-reload
                 systemctl restart iommufd-broker.service ;;
        esac
        wait_for -t 60 systemctl is-active -q iommufd-broker.service || fail "the broker did not come back after $1"
        if [ "$1" = upgrade ]; then
                local pid
                pid=$(systemctl show -P MainPID iommufd-broker.service)
                [ "$(stat -L -c %i "/proc/$pid/exe")" = "$(stat -c %i "$bin")" ] ||
                        fail "after the upgrade the broker does not run the new file"
        fi
}

for transport in varlink dbus; do
        for mode in unbound bound attached; do
                opt=()
                [ "$transport" = dbus ] && opt=(--bus)
                log "alice holds $E1000E: $mode mode over $transport"
                out=$(mktemp)
                run_as alice iommufdctl "${opt[@]}" run -d "$E1000E" --managed --mode "$mode" -- sleep 600 >"$out" 2>&1 &
                runner=$!
                wait_for -t 30 sh -c "iommufdctl info --json $E1000E | grep -q '\"leased\"'" ||
                        fail "$E1000E not leased ($mode, $transport); iommufdctl said: $(cat "$out"); the broker: $(journal_since_case -u iommufd-broker.service -o cat | tail -n 8)"
                before=$(holder_of)
                log "leased: $before"
                [ "$(device_driver "$E1000E")" = vfio-pci ] || fail "managed acquire left $E1000E on $(device_driver "$E1000E")"

                hows=(restart kill stop)
                # An upgrade is a restart with a new file: once per transport.
                [ "$mode" = unbound ] && hows+=(upgrade)
                for how in "${hows[@]}"; do
                        broker_down_up "$how"
                        after=$(holder_of)
                        [ "$after" = "$before" ] || fail "after $how ($mode, $transport): '$after', was '$before'"
                        err=$(run_as bob iommufdctl acquire "$E1000E" --mode unbound 2>&1 </dev/null) &&
                                fail "bob acquired $E1000E after $how"
                        grep -q DeviceBusy <<<"$err" || fail "bob after $how: $err"
                        [ "$(device_driver "$E1000E")" = vfio-pci ] || fail "driver after $how: $(device_driver "$E1000E")"
                        log "after $how: still $after, bob refused"
                done
                ls /run/iommufd-broker/leases/ | grep -q "$E1000E" || fail "no lease record"

                # alice's process ends: the lease ends and the driver comes back.
                # $runner is the subshell around setpriv; the holder is the
                # iommufdctl it exec'd, and its sleep inherited the fds.
                holder=${before##* }
                pkill -KILL -P "$holder" sleep 2>/dev/null || true
                kill -KILL "$holder" 2>/dev/null || true
                wait "$runner" 2>/dev/null || true
                wait_for -t 30 sh -c "iommufdctl info --json $E1000E | grep -q '\"available\"'" ||
                        fail "lease did not end after the holder exited ($mode, $transport): $(holder_of)"
                wait_for -t 30 sh -c "[ \"\$(basename \"\$(readlink /sys/bus/pci/devices/$E1000E/driver)\")\" = e1000e ]" ||
                        fail "$E1000E not back on e1000e: $(device_driver "$E1000E")"
                [ ! -e "/run/iommufd-broker/leases/$E1000E" ] || fail "lease record left behind"
        done
done

# The journal says it re-adopted, and never that a lease ended on a stop.
journal_grep -u iommufd-broker.service "re-adopted lease" || fail "no re-adoption in the journal"
