#!/bin/bash
# Runs inside a bare Debian 12 chroot (minbase, none of the project's
# dependencies): the README's two commands as a new user types them, as far as
# a chroot allows. `./dev.sh run` must install the dependencies, build, and
# start a daemon that `iommufdctl list` reaches; then the fast tier of
# `./dev.sh test` (the VM tier and chroot builds are CI's, not a chroot's).
#   fresh-run-in-chroot.sh NAME SOURCE_TREE
set -euo pipefail

name=$1 tree=$2
sock=/run/iommufd-broker/io.iommufd.Broker
step() { printf '  %s: [%3d s] %s\n' "$name" "$SECONDS" "$*"; }
fail() { printf '  %s: FAIL: %s\n' "$name" "$*" >&2; exit 1; }

cd "$tree"

step "./dev.sh run (installs the dependencies, builds, starts the daemon)"
./dev.sh run > /tmp/dev-run.log 2>&1 &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 900); do
        [ -S "$sock" ] && break
        kill -0 "$daemon" 2>/dev/null || { tail -n 40 /tmp/dev-run.log >&2; fail "./dev.sh run ended"; }
        sleep 1
done
[ -S "$sock" ] || { tail -n 40 /tmp/dev-run.log >&2; fail "no socket at $sock after 15 minutes"; }

step "iommufdctl list against the running daemon"
list=$(build/client/iommufdctl --socket "$sock" list 2>&1) || { printf '%s\n' "$list" >&2; fail "iommufdctl list"; }
printf '%s\n' "$list" | head -n 8 | sed "s/^/    /"
# What the daemon said about this machine when it started.
grep -E 'PCI devices|No device can be acquired' /tmp/dev-run.log | sed "s/^/    daemon: /" || true
kill -TERM "$daemon"
wait "$daemon" || true
trap - EXIT

step "IOMMUFD_SKIP_VM=1 IOMMUFD_SKIP_CHROOTS=1 IOMMUFD_SKIP_DISTRO=1 ./dev.sh test (the fast tier)"
out=$(IOMMUFD_SKIP_VM=1 IOMMUFD_SKIP_CHROOTS=1 IOMMUFD_SKIP_DISTRO=1 ./dev.sh test 2>&1) || { printf '%s\n' "$out" | tail -n 60 >&2; fail "./dev.sh test"; }
printf '%s\n' "$out" | grep -E '^(Ok|Fail|Skipped):' | sed "s/^/    /"
step "ok"
