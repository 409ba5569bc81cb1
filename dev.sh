#!/bin/bash
# Developer entry point: ./dev.sh run | test | build | deps | vm | distro
#   run   install dependencies, build, and run the daemon in the foreground
#   test  install dependencies, build with -Werror, run the fast tier, the fast
#         tier again under ASan+UBSan (build-asan), each fuzzer briefly
#         (build-fuzz, clang), then the VM tier, the chroot builds and the
#         distro tier
set -euo pipefail
cd "$(dirname "$0")"

build=${BUILD_DIR:-build}

# Debian packages: build (scdoc: man pages), fast tier (umockdev, dbus-daemon,
# python3, man-db), the fuzzers (clang 14 and its libFuzzer runtime), VM tier (qemu, kernel build tools), chroot builds and
# the distro tier (mmdebstrap; mke2fs for its root image).
packages=(
        gcc meson ninja-build pkg-config scdoc
        libsystemd-dev libudev-dev libseccomp-dev libjansson-dev
        umockdev libumockdev-dev dbus systemd python3 man-db
        clang-14 libclang-rt-14-dev
        qemu-system-x86 bc bison flex libelf-dev libssl-dev xz-utils cpio kmod
        mmdebstrap e2fsprogs
)

log() { printf '==> %s\n' "$*" >&2; }

need_root() {
        if [ "$(id -u)" != 0 ]; then
                echo "dev.sh: run this as root (it installs packages and manages devices)" >&2
                exit 1
        fi
}

deps() {
        local missing=()
        for p in "${packages[@]}"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        done
        [ ${#missing[@]} = 0 ] && return 0
        need_root
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
        if [ ! -f "$build/build.ninja" ]; then
                # meson reports errors on stdout: keep it, show it on failure.
                local out
                # /etc, as an installed broker would: README's policy path.
                out=$(meson setup "$build" -Dwerror=true --sysconfdir=/etc 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
        fi
        ninja -C "$build" >/dev/null || ninja -C "$build"
}

run() {
        need_root
        deps
        build
        local sock=${IOMMUFD_BROKER_SOCKET:-/run/iommufd-broker/io.iommufd.Broker}
        mkdir -p "$(dirname "$sock")"
        # The bus policy lets the broker own its name on the system bus (the
        # system dbus-daemon picks up new policy files by itself).
        if [ -d /etc/dbus-1 ] || [ -d /usr/share/dbus-1 ]; then
                install -D -m644 systemd/io.iommufd.Broker1.conf /etc/dbus-1/system.d/io.iommufd.Broker1.conf
        fi
        log "daemon on $sock; in another shell try:"
        log "  $build/client/iommufdctl --socket $sock list"
        exec "$build/daemon/iommufd-broker" --varlink-listen "$sock" "$@"
}

fast_tier() {
        log "fast tier: unit, integration and D-Bus tests"
        meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
}

# The fast tier again, built with ASan+UBSan: any report fails the test that
# hit it (halt_on_error; the daemons the tests exec inherit the options).
# umockdev preloads itself, hence verify_asan_link_order=0; latency and RSS
# bounds of the hostile suite are looser for the slower build (ASan's
# quarantine keeps freed memory resident: the plain run checks RSS).
asan_tier() {
        local dir=${ASAN_BUILD_DIR:-build-asan} out
        log "fast tier under ASan+UBSan ($dir)"
        if [ ! -f "$dir/build.ninja" ]; then
                out=$(meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false 2>&1) ||
                        { printf '%s\n' "$out" >&2; return 1; }
        fi
        ninja -C "$dir" >/dev/null || ninja -C "$dir" || return 1
        ASAN_OPTIONS=verify_asan_link_order=0:halt_on_error=1:abort_on_error=1:detect_leaks=1 \
        UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
        HOSTILE_LATENCY_MS=500 HOSTILE_RSS_BOUND_MIB=512 \
                meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
}

# Each libFuzzer target for a short, bounded time (tests/fuzz/run-fuzz.sh).
fuzz_tier() {
        log "fuzzing each target for ${FUZZ_SECONDS:-20} s"
        tests/fuzz/run-fuzz.sh all "${FUZZ_SECONDS:-20}"
}

vm_tier() {
        log "VM tier: the real kernel"
        tests/vm/run-vm.sh --build-dir "$build"
}

chroot_builds() {
        log "chroot builds: the dist tarball on Debian bookworm, trixie and sid"
        tests/builds/run-chroot-builds.sh --build-dir "$build"
}

distro_tier() {
        log "distro tier: Debian trixie with systemd as PID 1"
        tests/distro/run-distro.sh --src .
}

case "${1:-}" in
deps) deps ;;
build) deps; build ;;
run) shift; run "$@" ;;
test)
        shift
        deps
        build
        status=0
        fast_tier "$@" || status=$?
        asan_tier "$@" || status=$?
        fuzz_tier || status=$?
        if [ "${IOMMUFD_SKIP_VM:-0}" = 1 ]; then
                log "VM tier skipped (IOMMUFD_SKIP_VM=1)"
        else
                vm_tier || status=$?
        fi
        # After the VM tier, which extracts the linux-source-7.x tree whose
        # uAPI headers the chroot builds check uapi.h against.
        if [ "${IOMMUFD_SKIP_CHROOTS:-0}" = 1 ]; then
                log "chroot builds skipped (IOMMUFD_SKIP_CHROOTS=1)"
        else
                chroot_builds || status=$?
        fi
        if [ "${IOMMUFD_SKIP_DISTRO:-0}" = 1 ]; then
                log "distro tier skipped (IOMMUFD_SKIP_DISTRO=1)"
        else
                distro_tier || status=$?
        fi
        exit $status
        ;;
vm) deps; build; vm_tier ;;
distro) deps; distro_tier ;;
*)
        sed -n '2,4p' "$0" >&2
        exit 2
        ;;
esac
