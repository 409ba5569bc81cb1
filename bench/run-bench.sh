#!/bin/bash
# The fast-path bench: every figure of the goals, with its goal, in one run.
#
#   bench/run-bench.sh [--short] [--build-dir DIR] [--baseline GIT_REF | --baseline-build DIR]
#                      [--only list,acquire,sessions,startup]
#
# Builds a release build in build-bench/ (or uses --build-dir), writes fake
# sysfs trees of 16, 256 and 1,024 devices, and runs bench-broker as root (it
# bind-mounts each tree over /sys in a private mount namespace: no umockdev).
# --baseline REF also builds REF (release, in a temp dir) and measures it
# alternately with this tree, side by side under the same load. --short is
# what the fast tier runs: it shows the bench works; its figures mean nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
short=() only=() build="" baseline_ref="" baseline_build=""
while [ $# -gt 0 ]; do
        case $1 in
        --short) short=(--short) ;;
        --only) only=(--only "$2"); shift ;;
        --build-dir) build=$2; shift ;;
        --baseline) baseline_ref=$2; shift ;;
        --baseline-build) baseline_build=$2; shift ;;
        *) echo "usage: $0 [--short] [--build-dir DIR] [--baseline GIT_REF | --baseline-build DIR] [--only GROUPS]" >&2; exit 2 ;;
        esac
        shift
done
if [ "$(id -u)" != 0 ]; then
        echo "run-bench.sh: needs root (private mount namespace over /sys)" >&2
        exit 77
fi

# tmpfs when there is one: writing the trees to disk takes long.
tmp=$(mktemp -d -p "$( [ -w /dev/shm ] && echo /dev/shm || echo /tmp)" iommufd-bench.XXXXXX)
cleanup() {
        if [ -n "$baseline_ref" ]; then git -C "$src" worktree remove --force "$tmp/baseline-src" 2>/dev/null || true; fi
        rm -rf "$tmp"
}
trap cleanup EXIT

release_build() { # SRC DIR
        [ -f "$2/build.ninja" ] || meson setup "$2" "$1" --buildtype=release >/dev/null
        ninja -C "$2" -j2 daemon/iommufd-broker-fake bench/bench-broker bench/sysfs-magic-preload.so >/dev/null
}

if [ -z "$build" ]; then
        build=$src/build-bench
        release_build "$src" "$build"
fi
build=$(cd "$build" && pwd)
if [ -n "$baseline_ref" ]; then
        git -C "$src" worktree add --detach "$tmp/baseline-src" "$baseline_ref" >/dev/null 2>&1
        baseline_build=$tmp/baseline-build
        meson setup "$baseline_build" "$tmp/baseline-src" --buildtype=release >/dev/null
        ninja -C "$baseline_build" -j2 daemon/iommufd-broker-fake >/dev/null
fi

for n in 16 256 1024; do
        python3 "$here/make-fake-sysfs.py" "$n" "$tmp/sys$n"
done
mkdir -p "$tmp/run"
baseline=()
[ -n "$baseline_build" ] && baseline=(--baseline "$(cd "$baseline_build" && pwd)/daemon/iommufd-broker-fake")

"$build/bench/bench-broker" "${short[@]}" "${only[@]}" "${baseline[@]}" \
        --broker "$build/daemon/iommufd-broker-fake" --preload "$build/bench/sysfs-magic-preload.so" \
        --tmp "$tmp/run" --tree16 "$tmp/sys16" --tree256 "$tmp/sys256" --tree1024 "$tmp/sys1024"
