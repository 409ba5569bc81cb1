#!/bin/bash
# The distro tier's case runner, inside the booted Debian guest, as root.
#
# Runs tests/distro/cases/*.sh in name order, each with its own timeout
# (default 120 s, "# timeout: N" in the case's header overrides), and writes
# to the "results" 9p share:
#   started        the runner is up (the host stops retrying boots)
#   planned        the cases to run, one a line
#   results.txt    "PASS|FAIL|SKIP <case> <seconds> [detail]", one a line
#   <case>.log     the case's output, then the journal of its run
#   finished       every case has run
# The unit's ExecStopPost powers the guest off.
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8

src=$(cd "$(dirname "$0")/../.." && pwd)
results=/run/distro-results
default_timeout=120

mkdir -p "$results"
mount -t 9p -o trans=virtio,version=9p2000.L results "$results" ||
        { echo "runner: cannot mount the results share"; exit 1; }
touch "$results/started"
echo "runner: up after $(cut -d' ' -f1 /proc/uptime) s; kernel $(uname -r); $(systemctl --version | head -n1)"
# Until the boot transaction is done (this unit is Type=exec, so that is soon).
echo "runner: system state: $(timeout 60 systemctl is-system-running --wait)"
# Where the boot time went, for keeping the tier fast.
{ systemd-analyze; systemd-analyze blame | head -n 25; systemd-analyze critical-chain; } > "$results/boot.txt" 2>&1
head -n 1 "$results/boot.txt" | sed 's/^/runner: /'

# Cases to run: all, or those named on the kernel command line (distro.cases=a,b).
only=$(sed -n 's/.*distro\.cases=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
cases=()
for f in "$src"/tests/distro/cases/*.sh; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .sh)
        if [ -n "$only" ] && ! [[ " $only " == *" $name "* ]]; then
                continue
        fi
        cases+=("$name")
done
printf '%s\n' "${cases[@]}" > "$results/planned"
# The Debian suite the image was built from (distro.suite=, IOMMUFD_DISTRO_SUITE
# on the host), for the cases as $DISTRO_SUITE.
suite=$(sed -n 's/.*distro\.suite=\([a-z0-9]*\).*/\1/p' /proc/cmdline)
suite=${suite:-trixie}
echo "runner: suite $suite"

# The state every case starts from: the broker installed, stopped, disabled,
# the policy files as installed.
policy_dir=/etc/iommufd-broker
baseline=$(mktemp -d)
[ -d "$policy_dir" ] && cp -a "$policy_dir" "$baseline/"

# Put back what a case left behind, and say so in its log: the next case
# must not inherit a running broker or another policy.
restore_baseline() {
        local log=$1
        if [ -d "$baseline/iommufd-broker" ]; then
                if ! diff -r "$baseline/iommufd-broker" "$policy_dir" >/dev/null 2>&1; then
                        echo "runner: the case left $policy_dir changed; restoring it" >> "$log"
                        rm -rf "$policy_dir" && cp -a "$baseline/iommufd-broker" "$policy_dir"
                fi
        elif [ -e "$policy_dir" ]; then
                echo "runner: the case left $policy_dir behind; removing it" >> "$log"
                rm -rf "$policy_dir"
        fi
        local u
        for u in iommufd-broker.service iommufd-broker.socket; do
                if systemctl is-enabled -q "$u" 2>/dev/null; then
                        echo "runner: the case left $u enabled; disabling it" >> "$log"
                        systemctl disable -q "$u" 2>/dev/null
                fi
                if systemctl is-active -q "$u"; then
                        echo "runner: the case left $u running; stopping it" >> "$log"
                        systemctl stop "$u"
                fi
        done
        systemctl reset-failed iommufd-broker.service iommufd-broker.socket 2>/dev/null || true
}

case_timeout() {
        local t
        t=$(sed -n '1,20s/^# *timeout: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n1)
        echo "${t:-$default_timeout}"
}

for name in "${cases[@]}"; do
        file=$src/tests/distro/cases/$name.sh
        log=$results/$name.log
        limit=$(case_timeout "$file")
        cursor=$(journalctl --show-cursor -n 0 -q 2>/dev/null | sed -n 's/^-- cursor: //p')
        scratch=$(mktemp -d "/tmp/case-$name.XXXXXX")
        chmod 0755 "$scratch"
        echo "runner: $name (timeout ${limit}s)"
        start=$SECONDS
        (cd "$scratch" && env DISTRO_LIB="$src/tests/distro/lib.sh" DISTRO_SRC="$src" \
                DISTRO_BUILD="$src/builddir" DISTRO_CASE="$name" DISTRO_SCRATCH="$scratch" \
                DISTRO_CASE_CURSOR="$cursor" DISTRO_SUITE="$suite" \
                timeout --kill-after=10 "$limit" bash "$file") > "$log" 2>&1 < /dev/null
        status=$?
        secs=$((SECONDS - start))
        case $status in
        0) verdict=PASS detail= ;;
        77) verdict=SKIP detail=$(grep -m1 '^SKIP: ' "$log" | cut -c7- || true) ;;
        124|137) verdict=FAIL detail="(timeout after ${limit}s)" ;;
        *) verdict=FAIL detail="(exit $status)" ;;
        esac
        {
                echo "---- journal during $name ----"
                journalctl --sync 2>/dev/null
                if [ -n "$cursor" ]; then
                        journalctl -q --no-pager -o short-monotonic --after-cursor="$cursor"
                else
                        journalctl -q --no-pager -o short-monotonic -n 200
                fi | tail -n 300
        } >> "$log" 2>&1
        restore_baseline "$log"
        rm -rf "$scratch"
        echo "$verdict $name $secs $detail" >> "$results/results.txt"
        echo "runner: $verdict $name ${secs}s $detail"
        sync
done
touch "$results/finished"
sync
echo "runner: done after $(cut -d' ' -f1 /proc/uptime) s"
