#!/bin/bash
# Real-kernel tier: boot a QEMU (TCG) guest with an emulated Intel IOMMU and
# emulated PCI devices, run the guest suite inside it against the real
# kernel, and report its results.
#
#   tests/vm/run-vm.sh --build-dir DIR [--timeout SECONDS] [--verbose] [--keep]
#
# --verbose streams the guest console; --keep leaves the console logs and
# result files in /tmp/iommufd-vm.* for a look afterwards.
#
# The guest's root is the host's / over virtio-9p, read-only, so it runs the
# binaries in DIR in place. Results come back through a second, writable 9p
# share. A boot that never reaches the suite (multi-threaded TCG panics early
# now and then) is retried at most twice; a failing case never is.
#
# Environment: IOMMUFD_TEST_KERNEL=/path/to/bzImage uses that kernel instead
# of building (or finding the cached) one with build-kernel.sh.
# IOMMUFD_VM_CASES="case1 case2" runs only those guest cases (and smoke),
# for iterating on one case; CI runs them all.
# IOMMUFD_VM_FAIL_BOOTS=N makes the first N boots panic early (no root fs),
# to exercise the retry logic itself.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build_dir=
timeout=${IOMMUFD_VM_TIMEOUT:-240}     # whole guest run, per boot
boot_timeout=${IOMMUFD_VM_BOOT_TIMEOUT:-60}  # until the suite has started (TCG on a loaded host is slow)
verbose=0
keep=0
max_boots=3

usage() { echo "usage: $0 --build-dir DIR [--timeout SECONDS] [--verbose] [--keep]" >&2; exit 2; }
while [ $# -gt 0 ]; do
        case $1 in
        --build-dir) build_dir=${2:?}; shift 2 ;;
        --timeout) timeout=${2:?}; shift 2 ;;
        --verbose) verbose=1; shift ;;
        --keep) keep=1; shift ;;
        *) usage ;;
        esac
done
[ -n "$build_dir" ] || usage
build_dir=$(cd "$build_dir" && pwd)
for f in daemon/iommufd-broker tests/vm/vm-cases tests/vm/vm-smoke; do
        [ -x "$build_dir/$f" ] || { echo "vm: $build_dir/$f is not built" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "vm: qemu-system-x86_64 not installed" >&2; exit 1; }

kernel=${IOMMUFD_TEST_KERNEL:-}
if [ -z "$kernel" ]; then
        kernel=$("$here/build-kernel.sh" | tail -n1)
fi
[ -s "$kernel" ] || { echo "vm: no kernel image at '$kernel'" >&2; exit 1; }

work=$(mktemp -d /tmp/iommufd-vm.XXXXXX)
qemu_pid=
cleanup() {
        [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null || true
        if [ "$keep" = 1 ]; then
                echo "vm: logs kept in $work" >&2
        else
                rm -rf "$work"
        fi
}
trap cleanup EXIT

# One boot. Fills $work/boot$1/{console.log,results/}. Returns 0 when the
# guest reached the suite (whatever the suite's verdict), 1 if it did not.
boot() {
        local dir=$work/boot$1
        local results=$dir/results console=$dir/console.log
        mkdir -p "$results"
        : > "$console"

        # no_timer_check: under TCG on a loaded host the IO-APIC timer check
        # through interrupt remapping can miss its window and panic the boot.
        local append="console=ttyS0 loglevel=4 panic=-1 intel_iommu=on no_timer_check"
        append+=" root=/dev/root rootfstype=9p ro"
        append+=" rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose"
        append+=" init=$here/guest-init.sh"
        # Unknown name=value parameters end up in init's environment.
        append+=" IOMMUFD_VM_BUILD=$build_dir IOMMUFD_VM_SRC=$(dirname "$(dirname "$here")")"
        [ -z "${IOMMUFD_VM_CASES:-}" ] || append+=" IOMMUFD_VM_CASES=$(echo $IOMMUFD_VM_CASES | tr ' ' ,)"
        if [ "$1" -le "${IOMMUFD_VM_FAIL_BOOTS:-0}" ]; then
                append+=" rootfstype=iommufd-vm-no-such-fs"
        fi

        # Device layout (the guest suite finds devices by id and topology):
        #   00:03.0 e1000e (host driver e1000e)          managed rebinding
        #   00:04.0 edu                                  DMA proof, hot unplug
        #   00:05.0 pcie-root-port -> pcie-pci-bridge -> edu + e1000
        #           (behind a PCIe-to-PCI bridge: one IOMMU group)
        qemu-system-x86_64 \
                -machine q35,kernel-irqchip=split -accel tcg,thread=multi \
                -cpu max -smp 2 -m 2G \
                -nodefaults -display none -no-reboot -monitor none \
                -serial "file:$console" \
                -device intel-iommu,intremap=on,caching-mode=on \
                -kernel "$kernel" -append "$append" \
                -fsdev local,id=rootfs,path=/,security_model=passthrough,readonly=on,multidevs=remap \
                -device virtio-9p-pci,fsdev=rootfs,mount_tag=/dev/root,addr=0x8 \
                -fsdev "local,id=resfs,path=$results,security_model=none" \
                -device virtio-9p-pci,fsdev=resfs,mount_tag=results,addr=0x9 \
                -device e1000e,addr=0x3 \
                -device edu,addr=0x4 \
                -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x5 \
                -device pcie-pci-bridge,id=br1,bus=rp1 \
                -device edu,bus=br1,addr=0x1 \
                -device e1000,bus=br1,addr=0x2 \
                > "$dir/qemu.log" 2>&1 &
        qemu_pid=$!

        local start=$SECONDS reached=0 tail_pid=
        if [ "$verbose" = 1 ]; then
                tail -n +1 -f "$console" & tail_pid=$!
        fi
        while kill -0 "$qemu_pid" 2>/dev/null; do
                [ -e "$results/started" ] && reached=1
                if [ "$reached" = 0 ] && [ $((SECONDS - start)) -ge "$boot_timeout" ]; then
                        echo "vm: boot $1: suite not started after ${boot_timeout}s, killing the guest" >&2
                        break
                fi
                if [ $((SECONDS - start)) -ge "$timeout" ]; then
                        echo "vm: boot $1: timeout after ${timeout}s, killing the guest" >&2
                        break
                fi
                sleep 0.5
        done
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
        [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null || true
        [ -e "$results/started" ] && reached=1
        echo "vm: boot $1 took $((SECONDS - start)) s" >&2
        [ "$reached" = 1 ]
}

print_console() {
        echo "---- guest console (boot $1) ----"
        cat "$work/boot$1/console.log"
        if [ -s "$work/boot$1/qemu.log" ]; then
                echo "---- qemu ----"
                cat "$work/boot$1/qemu.log"
        fi
        echo "---- end of guest console ----"
}

n=0
while :; do
        n=$((n + 1))
        boot "$n" && break
        if [ "$n" -ge "$max_boots" ]; then
                print_console "$n"
                echo "vm: the guest never reached the suite in $n boots"
                echo "vm: 0 passed, 1 failed"
                exit 1
        fi
        echo "vm: boot $n never reached the suite; booting again" >&2
        echo "---- last console lines of boot $n ----" >&2
        tail -n 15 "$work/boot$n/console.log" >&2
done
echo "vm: the suite ran after $n boot(s)"

results=$work/boot$n/results
passed=0 failed=0
# results.txt: "PASS|FAIL <case> <seconds> [detail]", one line per case run.
if [ -s "$results/results.txt" ]; then
        while read -r verdict name secs _; do
                printf 'vm: %-4s %-16s %6ss\n' "$verdict" "$name" "$secs"
                case $verdict in PASS) passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
        done < "$results/results.txt"
fi
# The fast-path ratios of the bench case (printed, not asserted).
grep -h "fast path" "$results/bench.log" 2>/dev/null | sed 's/^.*fast path/vm: fast path/' || true
# A planned case without a result (guest crashed or timed out) is a failure.
if [ -s "$results/planned" ]; then
        for c in $(cat "$results/planned"); do
                if ! grep -q "^[A-Z]* $c " "$results/results.txt" 2>/dev/null; then
                        echo "vm: FAIL $c (no result: the guest stopped before it finished)"
                        failed=$((failed + 1))
                fi
        done
else
        echo "vm: FAIL the guest suite wrote no case list"
        failed=$((failed + 1))
fi
if [ ! -e "$results/finished" ]; then
        echo "vm: the guest suite did not finish"
        [ "$failed" -gt 0 ] || failed=1
        # What the case that never ended and the daemon said: the console
        # shows neither, and the work dir goes with this script.
        for c in $(cat "$results/planned" 2>/dev/null); do
                grep -q "^[A-Z]* $c " "$results/results.txt" 2>/dev/null && continue
                if [ -e "$results/$c.log" ]; then
                        echo "---- $c.log (the case that did not end) ----"
                        tail -n 40 "$results/$c.log"
                fi
                break
        done
        if [ -e "$results/daemon.log" ]; then
                echo "---- the daemon's last lines ----"
                tail -n 60 "$results/daemon.log"
        fi
fi
if [ "$failed" -gt 0 ]; then
        print_console "$n"
fi
echo "vm: $passed passed, $failed failed"
[ "$failed" = 0 ]
