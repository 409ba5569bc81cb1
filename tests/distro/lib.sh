# Helpers for distro tier cases: `source "$DISTRO_LIB"` at the top of a case.
# See tests/distro/README.md for the contract. Sourcing this sets
# `set -euo pipefail`, reports the failing command of an unexpected error,
# and installs an EXIT trap that runs what on_exit registered (newest first)
# and restores the policy files set_policy replaced. Register cleanups with
# on_exit instead of your own `trap ... EXIT`.

set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

# The Debian suite of the guest (IOMMUFD_DISTRO_SUITE on the host).
DISTRO_SUITE=${DISTRO_SUITE:-trixie}
# systemd's major version (257 on trixie, 262 on sid), for a case whose
# expectation depends on it.
systemd_version() { systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'; }

BROKER_SOCKET=/run/iommufd-broker/io.iommufd.Broker
POLICY_FILE=/etc/iommufd-broker/policy.json
BUS_NAME=io.iommufd.Broker1
BUS_PATH=/io/iommufd/Broker1

_distro_cleanups=()
_distro_policy_saved=

log() { echo "[$(date +%T.%3N)] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# Exit 77: the runner reports the case as skipped, with this reason.
skip() { echo "SKIP: $*"; exit 77; }

_distro_on_error() {
        echo "FAIL: ${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}: '$BASH_COMMAND' exited with $1" >&2
}
trap '_distro_on_error $?' ERR

_distro_exit() {
        local status=$? i
        trap - ERR
        set +e
        for ((i = ${#_distro_cleanups[@]} - 1; i >= 0; i--)); do
                eval "${_distro_cleanups[i]}"
        done
        _distro_restore_policy
        exit "$status"
}
trap _distro_exit EXIT

# on_exit CMD...: run CMD when the case ends, however it ends.
on_exit() {
        local q
        printf -v q '%q ' "$@"
        _distro_cleanups+=("$q")
}

# run_as USER CMD...: CMD as USER (alice 1001, bob 1002) with that user's
# groups, a clean environment and the default limits, without a login session.
run_as() {
        local user=$1
        shift
        setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- "$@"
}

# wait_for [-t SECONDS] CMD...: retry CMD every 0.2 s until it succeeds;
# fails (returns 1) after SECONDS (default 30).
wait_for() {
        local t=30
        if [ "$1" = -t ]; then t=$2; shift 2; fi
        local deadline=$((SECONDS + t))
        until "$@" >/dev/null 2>&1; do
                [ "$SECONDS" -lt "$deadline" ] || { echo "wait_for: '$*' still fails after ${t}s" >&2; return 1; }
                sleep 0.2
        done
}

# journal_since_case [JOURNALCTL ARGS...]: the journal since the case began
# (for example `journal_since_case -u iommufd-broker.service -o cat`).
journal_since_case() {
        journalctl --sync 2>/dev/null || true
        if [ -n "${DISTRO_CASE_CURSOR:-}" ]; then
                journalctl -q --no-pager --after-cursor="$DISTRO_CASE_CURSOR" "$@"
        else
                journalctl -q --no-pager -b "$@"
        fi
}

# journal_grep [-u UNIT] PATTERN: does the journal since the case began
# contain PATTERN (extended regexp)?
journal_grep() {
        local args=()
        if [ "$1" = -u ]; then args=(-u "$2"); shift 2; fi
        journal_since_case "${args[@]}" -o cat | grep -Eq -- "$1"
}

_distro_restore_policy() {
        [ -n "$_distro_policy_saved" ] || return 0
        if [ -e "$_distro_policy_saved/policy.json" ]; then
                cp "$_distro_policy_saved/policy.json" "$POLICY_FILE"
        else
                rm -f "$POLICY_FILE"
        fi
        rm -rf "$_distro_policy_saved"
        _distro_policy_saved=
        if systemctl is-active -q iommufd-broker.service; then
                systemctl reload iommufd-broker.service || true
        fi
}

# set_policy [FILE]: install FILE (or stdin) as /etc/iommufd-broker/policy.json;
# the original comes back when the case ends. Reloads a running broker.
set_policy() {
        if [ -z "$_distro_policy_saved" ]; then
                _distro_policy_saved=$(mktemp -d)
                [ -e "$POLICY_FILE" ] && cp "$POLICY_FILE" "$_distro_policy_saved/policy.json"
        fi
        mkdir -p "$(dirname "$POLICY_FILE")"
        cat "${1:--}" > "$POLICY_FILE.tmp"
        mv "$POLICY_FILE.tmp" "$POLICY_FILE"
        if systemctl is-active -q iommufd-broker.service; then
                systemctl reload iommufd-broker.service
        fi
}

# policy_accepts [FILE]: does the installed daemon's parser accept FILE (or
# stdin)? For skipping a case whose policy key is not implemented yet.
policy_accepts() {
        local f
        f=$(mktemp)
        cat "${1:--}" > "$f"
        iommufd-broker --check-config --policy "$f" --policy-dir /nonexistent >/dev/null 2>&1
        local r=$?
        rm -f "$f"
        return $r
}

# broker_start: start the socket and the service (not enable them) and wait
# until the service is active, i.e. has sent READY=1; stopped again on exit.
broker_start() {
        systemctl start iommufd-broker.socket iommufd-broker.service
        wait_for systemctl is-active -q iommufd-broker.service
        on_exit broker_stop
}

broker_stop() {
        systemctl stop iommufd-broker.service iommufd-broker.socket
}

# device_driver BDF: the driver the PCI device is bound to, or "none".
device_driver() {
        local d
        if d=$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null); then basename "$d"; else echo none; fi
}

# driver_is BDF DRIVER: is the device on DRIVER ("none": on no driver)? For
# `wait_for driver_is "$E1000E" e1000e`.
driver_is() {
        [ "$(device_driver "$1")" = "$2" ]
}

# The VM tier's devices (tests/vm/run-vm.sh).
E1000E=0000:00:03.0
EDU=0000:00:04.0

log "case $DISTRO_CASE"
