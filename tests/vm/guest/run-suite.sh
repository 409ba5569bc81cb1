#!/bin/bash
# The guest suite, started by guest-init.sh inside the VM:
#   run-suite.sh RESULTS_DIR
# Runs the kernel smoke test, starts the real daemon (varlink + the guest's
# system bus) and runs each broker case once, timed. Writes to RESULTS_DIR:
#   planned      the case names, one line
#   started      the suite was reached (run-vm.sh: the boot succeeded)
#   results.txt  "PASS|FAIL <case> <seconds> [why]" per case
#   <case>.log   each case's output; daemon.log the daemon's
#   finished     the suite ran to its end
# A case is never retried.
set -euo pipefail

results=${1:?results dir}
build=${IOMMUFD_VM_BUILD:?}
cases=(attached dma unbound capabilities dbus managed groups bridges memlock cdev-identity)
# Lease cases (vm-leases): those that restart the daemon come after hotunplug,
# which counts the first daemon's fds; hotunplug removes the edu, so the edu
# cases come before it.
lease_cases=(release-holding unbound-free hidden-bound child-keeps restore-waits admin-fence admin-unbind group-open-ebusy revoke)
lease_restart_cases=(restart rebind-crash)
case_timeout=60

say() {
        local up
        read -r up _ < /proc/uptime
        echo "vm-suite [$up]: $*"
}

# IOMMUFD_VM_CASES (comma-separated, from run-vm.sh) runs only those cases
# (smoke always runs): for iterating on one case, never for CI.
wanted() {
        [ -z "${IOMMUFD_VM_CASES:-}" ] && return 0
        case ",$IOMMUFD_VM_CASES," in *",$1,"*) return 0 ;; esac
        return 1
}
filter() { local c; for c in "$@"; do if wanted "$c"; then printf "%s " "$c"; fi; done; }
read -ra cases <<< "$(filter "${cases[@]}")"
read -ra lease_cases <<< "$(filter "${lease_cases[@]}")"
read -ra lease_restart_cases <<< "$(filter "${lease_restart_cases[@]}")"
extra_cases=$(filter bench hotunplug)

echo "smoke ${cases[*]} ${lease_cases[*]} $extra_cases ${lease_restart_cases[*]}" > "$results/planned"
touch "$results/started"
say "started"

failed=0
record() {      # verdict case seconds [why]
        echo "$*" >> "$results/results.txt"
        say "$*"
}

# run_case NAME COMMAND...: one timed case, output to NAME.log.
run_case() {
        local name=$1 start rc=0
        shift
        start=${EPOCHREALTIME/./}
        timeout -k 5 "$case_timeout" "$@" > "$results/$name.log" 2>&1 || rc=$?
        local ms=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
        local secs
        secs=$(printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)))
        if [ "$rc" = 0 ]; then
                record PASS "$name" "$secs"
        else
                local why="exit $rc"
                [ "$rc" = 124 ] && why="timeout after ${case_timeout}s"
                record FAIL "$name" "$secs" "$why"
                failed=1
                sed "s/^/  $name| /" "$results/$name.log"
        fi
}

run_case smoke "$build/tests/vm/vm-smoke"

# Devices used without managed acquire go to vfio-pci, as an admin would set up.
if ! "$build/tests/vm/vm-cases" setup > "$results/setup.log" 2>&1; then
        say "setup failed:"; cat "$results/setup.log"
fi

# The policy: uid 65534 may do everything, managed included.
mkdir -p /run/iommufd-broker /run/vm-policy.d
cat > /run/vm-policy.json <<'EOF'
{
  "comment": "VM tier: the unprivileged test client may use every device",
  "rules": [
    { "principals": { "users": [65534] }, "allow": true, "managed": true }
  ]
}
EOF

socket=/run/iommufd-broker/io.iommufd.Broker
# The daemon logs into a pipe, and cat copies it to the results share: a
# write to the 9p share waits for the host (about 1 ms a line under TCG),
# which no real log sink costs (journald's stream socket does not wait), and
# at debug level it would be most of what the bench case measures. The copy
# still streams, so a guest that hangs leaves the log up to there.
mkfifo /run/vm-daemon-log
cat /run/vm-daemon-log > "$results/daemon.log" &
log_pid=$!
# A restore worker stuck in vfio-pci's unbind gives up after 3 s instead of
# 60 (restore-waits).
IOMMUFD_BROKER_TEST_RESTORE_TIMEOUT_MS=3000 LOG_LEVEL=debug "$build/daemon/iommufd-broker" --varlink-listen "$socket" \
        --policy /run/vm-policy.json --policy-dir /run/vm-policy.d > /run/vm-daemon-log 2>&1 &
broker_pid=$!
# The first daemon's log is complete once cat has seen the pipe's end.
wait_log_copied() {
        for _ in $(seq 50); do kill -0 "$log_pid" 2>/dev/null || return 0; sleep 0.1; done
}
on_bus() {
        dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus.NameHasOwner string:io.iommufd.Broker1 2>/dev/null | grep -q true
}
SECONDS=0
until [ -S "$socket" ] && on_bus; do
        if ! kill -0 "$broker_pid" 2>/dev/null || [ "$SECONDS" -ge 15 ]; then
                break
        fi
        sleep 0.2
done
[ -S "$socket" ] || say "the daemon did not create $socket"
on_bus || say "io.iommufd.Broker1 is not on the bus"
say "daemon (pid $broker_pid) ready"

export BROKER_SOCKET=$socket BROKER_PID=$broker_pid
for c in "${cases[@]}"; do
        run_case "$c" "$build/tests/vm/vm-cases" "$c"
done
for c in "${lease_cases[@]}"; do
        run_case "$c" "$build/tests/vm/vm-leases" "$c"
done
# The fast-path ratios (printed, not asserted as timings), while the edu is there.
wanted bench && run_case bench "$build/tests/vm/vm-bench"
wanted hotunplug && run_case hotunplug "$build/tests/vm/vm-cases" hotunplug
rm -f /run/vm-broker.pid
for c in "${lease_restart_cases[@]}"; do
        run_case "$c" "$build/tests/vm/vm-leases" "$c"
done
# A case that restarted the daemon left the new one's pid here.
if [ -s /run/vm-broker.pid ]; then
        broker_pid=$(cat /run/vm-broker.pid)
        wait_log_copied         # the first daemon was killed: its log ends
        cat /run/vm-broker-restarted.log >> "$results/daemon.log" 2>/dev/null || true
fi

if ! kill -0 "$broker_pid" 2>/dev/null; then
        say "the daemon is no longer running"
        failed=1
fi
kill "$broker_pid" 2>/dev/null || true
wait "$broker_pid" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
wait_log_copied
if [ "$failed" != 0 ]; then
        say "daemon log:"
        sed 's/^/  daemon| /' "$results/daemon.log"
fi
touch "$results/finished"
say "finished"
