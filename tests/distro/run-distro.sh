#!/bin/bash
# Distro tier: install the project into a Debian trixie (or, with
# IOMMUFD_DISTRO_SUITE=sid, sid) system the way a packager would, boot it with systemd as PID 1 on the VM tier's kernel and
# devices, and run tests/distro/cases/*.sh inside it as a new user would.
#
#   tests/distro/run-distro.sh --src DIR [--timeout SECONDS] [--verbose] [--keep]
#
# DIR is the source tree (its tracked and untracked-but-not-ignored files are
# copied, so uncommitted cases run too). --verbose streams the guest console;
# --keep leaves the work directory (root image, consoles, results) in
# /var/tmp/iommufd-distro.* for a look afterwards.
#
# Steps: the cached rootfs of the suite (build-image.sh) is unpacked into a scratch
# directory; the project is built and installed in a chroot with
# `meson setup --prefix=/usr`, `meson compile`, `meson install`; users alice
# and bob and the case runner unit are added; `mke2fs -d` makes an ext4 image
# of it all, and QEMU boots that as /dev/vda. Results come back through a
# writable 9p share. A boot that never reaches the runner (multi-threaded TCG
# panics early now and then) is retried at most twice; a failing case never is.
#
# Environment: IOMMUFD_TEST_KERNEL=/path/to/bzImage uses that kernel instead
# of build-kernel.sh's; IOMMUFD_DISTRO_TIMEOUT changes the per-boot limit;
# IOMMUFD_DISTRO_CASES="10-enable 20-activation" runs only those cases;
# IOMMUFD_DISTRO_SUITE=sid boots Debian sid instead of trixie (the cases
# read it as $DISTRO_SUITE).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=
timeout=${IOMMUFD_DISTRO_TIMEOUT:-1200}   # whole guest run, per boot
boot_timeout=240                          # until the runner has started
verbose=0
keep=0
max_boots=3
start_all=$SECONDS
suite=${IOMMUFD_DISTRO_SUITE:-trixie}

usage() { echo "usage: $0 --src DIR [--timeout SECONDS] [--verbose] [--keep]" >&2; exit 2; }
while [ $# -gt 0 ]; do
        case $1 in
        --src) src=${2:?}; shift 2 ;;
        --timeout) timeout=${2:?}; shift 2 ;;
        --verbose) verbose=1; shift ;;
        --keep) keep=1; shift ;;
        *) usage ;;
        esac
done
[ -n "$src" ] || usage
src=$(cd "$src" && pwd)
log() { echo "distro: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "run this as root (chroot, device nodes)"; exit 1; }
for tool in qemu-system-x86_64 mke2fs chroot; do
        command -v "$tool" >/dev/null || { log "$tool not installed"; exit 1; }
done

image=$("$here/build-image.sh" | tail -n1)
kernel=${IOMMUFD_TEST_KERNEL:-}
[ -n "$kernel" ] || kernel=$("$here/../vm/build-kernel.sh" | tail -n1)
[ -s "$kernel" ] || { log "no kernel image at '$kernel'"; exit 1; }

work=$(mktemp -d /var/tmp/iommufd-distro.XXXXXX)
root=$work/rootfs
qemu_pid=
mounted=()
unmount_all() {
        local i
        for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
                umount -l "${mounted[i]}" 2>/dev/null || true
        done
        mounted=()
}
cleanup() {
        [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null || true
        unmount_all
        if [ "$keep" = 1 ]; then
                log "work directory kept in $work"
        else
                rm -rf --one-file-system "$work"
        fi
}
trap cleanup EXIT

# ---- the root file system --------------------------------------------------

step=$SECONDS
mkdir -p "$root"
tar -xf "$image" -C "$root" --numeric-owner --xattrs --xattrs-include='*'
log "image unpacked in $((SECONDS - step)) s"

# The source as a packager gets it: what git tracks plus new files not
# ignored (so a case being written runs too), never build directories.
mkdir -p "$root/usr/src/iommufd-broker"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$src" && git ls-files -z --cached --others --exclude-standard |
                xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
                tar --null -T - -cf -) | tar -xf - -C "$root/usr/src/iommufd-broker"
else
        tar -C "$src" --exclude='./build*' --exclude=.git -cf - . | tar -xf - -C "$root/usr/src/iommufd-broker"
fi

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }
mount_in_root() {
        mount "$@"
        mounted+=("${*: -1}")
}
mount_in_root -t proc proc "$root/proc"
mount_in_root -t sysfs sysfs "$root/sys"
mount_in_root --rbind /dev "$root/dev"
mount_in_root -t tmpfs tmpfs "$root/tmp"

log "building and installing the project in the $suite chroot"
if ! in_root sh -ec 'cd /usr/src/iommufd-broker
                meson setup --prefix=/usr builddir
                meson compile -C builddir
                meson install -C builddir' > "$work/build.log" 2>&1; then
        tail -n 60 "$work/build.log"
        log "FAIL build: the project does not build or install on $suite (above)"
        echo "distro: 0 passed, 1 failed"
        exit 1
fi
unmount_all
log "built and installed in $((SECONDS - step)) s"

# Users with default limits, as adduser would make them (no shadow tools
# needed in the image).
for u in alice:1001 bob:1002; do
        name=${u%%:*} id=${u#*:}
        echo "$name:x:$id:$id:$name:/home/$name:/bin/bash" >> "$root/etc/passwd"
        echo "$name:x:$id:" >> "$root/etc/group"
        echo "$name:!:20000:0:99999:7:::" >> "$root/etc/shadow"
        install -d -m 0750 -o "$id" -g "$id" "$root/home/$name"
done

# The case runner, ordered after multi-user.target; it powers the guest off.
install -D -m 0644 "$here/distro-runner.service" "$root/etc/systemd/system/distro-runner.service"
ln -sf /etc/systemd/system/distro-runner.service "$root/etc/systemd/system/multi-user.target.wants/distro-runner.service"
# Nothing on the serial line but the console: no login prompt there or on
# the (invisible) VGA console.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
# /usr is as new as /etc and /var: no ConditionNeedsUpdate= work at boot
# (rebuilding the linker cache and journal catalog costs half a minute under
# TCG; a package's own ldconfig trigger is not part of `meson install`).
now=$(date +%s)
touch -d "@$now" "$root/usr" "$root/etc/.updated" "$root/var/.updated"
# Nor work for what this kernel cannot have (it has no modules) or the tier
# never reads: a volatile journal needs no flush to disk.
for u in modprobe@drm modprobe@efi_pstore modprobe@fuse modprobe@configfs systemd-binfmt; do
        ln -sf /dev/null "$root/etc/systemd/system/$u.service"
done
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$root/etc/systemd/journald.conf.d/distro-tier.conf"
mkdir -p "$root/run/distro-results"
: > "$root/etc/fstab"
# A machine id of its own: with none, systemd would treat the boot as a first
# boot and could stop to ask questions on the console.
tr -d - < /proc/sys/kernel/random/uuid > "$root/etc/machine-id"

# Room for the journal, the cases' files and a nested guest's scratch files.
size_mb=$(( $(du -sm "$root" | cut -f1) + 1024 ))
truncate -s "${size_mb}M" "$work/root.img"
step=$SECONDS
mke2fs -q -t ext4 -L distro-root -E root_owner=0:0 -d "$root" "$work/root.img"
log "root image made in $((SECONDS - step)) s (${size_mb} MiB)"
rm -rf --one-file-system "$root"

# ---- boot ------------------------------------------------------------------

# One boot. Fills $work/boot$1/{console.log,results/}. Returns 0 when the
# guest reached the runner (whatever its verdict), 1 if it did not.
boot() {
        local dir=$work/boot$1
        local results=$dir/results console=$dir/console.log
        mkdir -p "$results"
        chmod 0777 "$results"
        : > "$console"

        # no_timer_check, as in the VM tier: under TCG on a loaded host the
        # IO-APIC timer check through interrupt remapping can miss its window
        # and panic the boot ("timer doesn't work through Interrupt-remapped
        # IO-APIC"), three boots in a row at load 12.
        local append="console=ttyS0 loglevel=4 panic=-1 intel_iommu=on no_timer_check"
        append+=" root=/dev/vda rootfstype=ext4 rw fsck.mode=skip"
        append+=" systemd.firstboot=off systemd.show_status=error systemd.journald.forward_to_console=0"
        append+=" distro.suite=$suite"
        [ -n "${IOMMUFD_DISTRO_CASES:-}" ] && append+=" distro.cases=${IOMMUFD_DISTRO_CASES// /,}"
        if [ "$1" -le "${IOMMUFD_DISTRO_FAIL_BOOTS:-0}" ]; then
                append+=" rootfstype=iommufd-distro-no-such-fs"
        fi

        # The VM tier's device layout (see tests/vm/run-vm.sh), plus the root
        # disk in the slot where the VM tier has its 9p root.
        qemu-system-x86_64 \
                -machine q35,kernel-irqchip=split -accel tcg,thread=multi \
                -cpu max -smp 2 -m 3G \
                -nodefaults -display none -no-reboot -monitor none \
                -serial "file:$console" \
                -device intel-iommu,intremap=on,caching-mode=on \
                -kernel "$kernel" -append "$append" \
                -drive "file=$work/root.img,format=raw,if=none,id=root,cache=unsafe" \
                -device virtio-blk-pci,drive=root,addr=0x8 \
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
                        log "boot $1: runner not started after ${boot_timeout}s, killing the guest"
                        break
                fi
                if [ $((SECONDS - start)) -ge "$timeout" ]; then
                        log "boot $1: timeout after ${timeout}s, killing the guest"
                        break
                fi
                sleep 0.5
        done
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
        [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null || true
        [ -e "$results/started" ] && reached=1
        log "boot $1 took $((SECONDS - start)) s"
        [ "$reached" = 1 ]
}

print_console() {
        echo "---- guest console (boot $1) ----"
        tail -n 200 "$work/boot$1/console.log"
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
                echo "distro: the guest never reached the case runner in $n boots"
                echo "distro: 0 passed, 1 failed"
                exit 1
        fi
        log "boot $n never reached the case runner; booting again"
        echo "---- last console lines of boot $n ----" >&2
        tail -n 15 "$work/boot$n/console.log" >&2
done
echo "distro: the runner ran after $n boot(s)"

# ---- results ---------------------------------------------------------------

results=$work/boot$n/results
passed=0 failed=0 skipped=0
# results.txt: "PASS|FAIL|SKIP <case> <seconds> [detail]", one line per case.
if [ -s "$results/results.txt" ]; then
        while read -r verdict name secs detail; do
                printf 'distro: %-4s %-28s %5ss %s\n' "$verdict" "$name" "$secs" "$detail"
                case $verdict in
                PASS) passed=$((passed + 1)) ;;
                SKIP) skipped=$((skipped + 1)) ;;
                *)
                        failed=$((failed + 1))
                        # The case's own words first: a long journal
                        # after them would push its FAIL line out of a tail.
                        echo "---- last lines of $name.log, the case ----"
                        sed '/^---- journal during /,$d' "$results/$name.log" 2>/dev/null | tail -n 30 ||
                                echo "(no log)"
                        echo "---- last lines of $name.log, the journal ----"
                        sed -n '/^---- journal during /,$p' "$results/$name.log" 2>/dev/null | tail -n 40
                        echo "---- end of $name.log ----"
                        ;;
                esac
        done < "$results/results.txt"
fi
# A planned case without a result (guest crashed or timed out) is a failure.
if [ -s "$results/planned" ]; then
        while read -r c; do
                if ! grep -q "^[A-Z]* $c " "$results/results.txt" 2>/dev/null; then
                        echo "distro: FAIL $c (no result: the guest stopped before it finished)"
                        tail -n 40 "$results/$c.log" 2>/dev/null || true
                        failed=$((failed + 1))
                fi
        done < "$results/planned"
else
        echo "distro: FAIL the case runner wrote no case list"
        failed=$((failed + 1))
fi
if [ ! -e "$results/finished" ]; then
        echo "distro: the case runner did not finish"
        [ "$failed" -gt 0 ] || failed=1
fi
if [ "$failed" -gt 0 ]; then
        print_console "$n"
fi
[ "$skipped" = 0 ] || echo "distro: $skipped skipped"
echo "distro: tier took $((SECONDS - start_all)) s"
echo "distro: $passed passed, $failed failed"
[ "$failed" = 0 ]
