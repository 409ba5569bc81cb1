#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/fuzz/run-fuzz.sh TARGET|all SECONDS [RUNS]
#
# Build the libFuzzer targets with clang under ASan+UBSan (in build-fuzz, or
# $FUZZ_BUILD_DIR) and run each for SECONDS (or until RUNS executions),
# starting from the seed corpus in tests/fuzz/corpus/<target> (copied: new
# inputs go to a scratch corpus, not into the tree). Prints one line per
# target: executions, seconds, execs/s, crashes. Exit status 1 if any target
# crashed (the reproducer is kept and named). TARGET: varlink, policy, dbus,
# sysfs or all.
set -euo pipefail
cd "$(dirname "$0")/../.."

targets=(varlink policy dbus sysfs)
what=${1:-}
seconds=${2:-}
runs=${3:--1}
if [ -z "$what" ] || [ -z "$seconds" ]; then
        sed -n '4,12p' "$0" >&2
        exit 2
fi
[ "$what" = all ] || targets=("$what")

build=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$build/build.ninja" ]; then
        out=$(CC=${FUZZ_CC:-clang-14} meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
                -Dwerror=false -Dc_args=-fno-sanitize-recover=undefined 2>&1) ||
                { printf '%s\n' "$out" >&2; exit 1; }
fi
ninja -C "$build" $(printf 'tests/fuzz/fuzz-%s ' "${targets[@]}") >/dev/null ||
        ninja -C "$build" $(printf 'tests/fuzz/fuzz-%s ' "${targets[@]}")

work=$(mktemp -d /tmp/iommufd-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
printf '%-8s %14s %8s %10s %8s\n' target executions seconds execs/s crashes
for t in "${targets[@]}"; do
        mkdir -p "$work/$t" "$work/$t-artifacts"
        cp tests/fuzz/corpus/"$t"/* "$work/$t/"
        start=$(date +%s.%N)
        rc=0
        "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 \
                -max_len=8192 -timeout=60 -rss_limit_mb=2048 -close_fd_mask=1 \
                -artifact_prefix="$work/$t-artifacts/" "$work/$t" >"$work/$t.log" 2>&1 || rc=$?
        end=$(date +%s.%N)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n1)
        # slow-unit-* files only record an input that took long once (under
        # load, say); libFuzzer goes on after them. The rest stop the run.
        crashes=$(find "$work/$t-artifacts" -type f ! -name 'slow-unit-*' | wc -l)
        slow=$(find "$work/$t-artifacts" -type f -name 'slow-unit-*' | wc -l)
        [ "$rc" = 0 ] || [ "$crashes" -gt 0 ] || crashes=1
        [ "$slow" = 0 ] || echo "  $t: $slow slow input(s) written (not failures); kept if the run fails" >&2
        took=$(echo "$end - $start" | bc)
        rate=$(echo "${execs:-0} / $took" | bc)
        printf '%-8s %14s %8.1f %10s %8s\n' "$t" "${execs:-0}" "$took" "$rate" "$crashes"
        if [ "$crashes" != 0 ]; then
                status=1
                keep=$(mktemp -d /tmp/iommufd-fuzz-crash-$t.XXXXXX)
                cp -r "$work/$t-artifacts" "$work/$t.log" "$keep/"
                echo "  $t crashed: reproducers and log in $keep" >&2
                grep -m5 -E 'ERROR|runtime error|SUMMARY' "$work/$t.log" | sed 's/^/  /' >&2 || true
        fi
done
exit $status
