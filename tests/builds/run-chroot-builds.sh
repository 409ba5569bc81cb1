#!/bin/bash
# Build the project where users are: its `meson dist` tarball, in minimal
# Debian bookworm, trixie and sid chroots, as a packager would (see
# build-in-chroot.sh for the steps). The name "fresh" instead checks the
# README's two commands in a bare Debian 12 chroot (fresh-run-in-chroot.sh);
# it downloads all the dependencies every time, so it is not in the default set.
#   run-chroot-builds.sh [--build-dir DIR] [SUITE... | fresh]
#
# Each chroot is made once by mmdebstrap (minbase plus the build dependencies
# below) and cached under $IOMMUFD_TEST_CACHE/chroots, keyed by suite, month
# and a hash of the package list; a build runs on a throwaway overlay of it,
# so the cache stays clean. Other suites are reached only through mmdebstrap's
# own sources, never the system's. Needs root (mounts, chroot).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_root=$(cd "$here/../.." && pwd)
cache=${IOMMUFD_TEST_CACHE:-/var/cache/iommufd-broker-test}
build=$source_root/build
log() { echo "chroot-builds: $*" >&2; }

# Stage 2, inside a private mount namespace: overlay the cached chroot, build in it.
if [ "${1:-}" = --in-namespace ]; then
        shift
        name=$1 lower=$2 dist=$3 uapi_dir=$4 extra=${5:-}
        scratch=$(mktemp -d /tmp/chroot-build-XXXXXX)
        mount -t tmpfs -o size=4g tmpfs "$scratch"
        mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
        mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
        root=$scratch/root
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"
        mount -t tmpfs tmpfs "$root/tmp"
        mount -t tmpfs tmpfs "$root/run"
        cp "$dist" "$root/tmp/dist.tar.xz"
        cp "$here/build-in-chroot.sh" "$here/fresh-run-in-chroot.sh" "$root/tmp/"
        cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
        chroot_uapi=
        if [ -n "$uapi_dir" ]; then
                mkdir -p "$root/tmp/uapi"
                cp "$uapi_dir/iommufd.h" "$uapi_dir/vfio.h" "$root/tmp/uapi/"
                chroot_uapi=/tmp/uapi
        fi
        status=0
        if [ "$name" = fresh ]; then
                # The user's checkout: unpacked here, as a bare system has no xz.
                tar -xf "$dist" -C "$root/root"
                inner=(/tmp/fresh-run-in-chroot.sh "$name" "/root/$(basename "$dist" .tar.xz)")
        else
                inner=(/tmp/build-in-chroot.sh "$name" /tmp/dist.tar.xz "$chroot_uapi" "$extra")
        fi
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
                chroot "$root" /bin/bash "${inner[@]}" || status=$?
        # The namespace's mounts go with it; the scratch dir is all that is left.
        umount -l "$root/dev" "$root/sys" 2>/dev/null || true
        umount -R "$scratch" 2>/dev/null || umount -l "$scratch" || true
        rmdir "$scratch" 2>/dev/null || true
        exit $status
fi

if [ "${1:-}" = --build-dir ]; then
        build=$(cd "$2" && pwd)
        shift 2
fi
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie sid)

if [ "$(id -u)" != 0 ]; then
        log "skipped: needs root (chroot, mounts)"
        exit 77
fi
command -v mmdebstrap >/dev/null || { log "mmdebstrap is not installed (./dev.sh deps installs it)"; exit 1; }

# The build's dependencies and nothing else. dpkg-dev: the packager's build
# flags; umockdev: the fixture unit test; man-db: rendering the man pages.
packages=(gcc libc6-dev meson ninja-build pkg-config xz-utils dpkg-dev
          libsystemd-dev libudev-dev libseccomp-dev libjansson-dev
          scdoc man-db umockdev)
# The archive this machine reaches may be a frozen snapshot whose Release
# files have expired.
mmdebstrap_opts=(--variant=minbase --aptopt='Acquire::Check-Valid-Until "false"'
                 --aptopt='Acquire::Retries "3"' --include="$(IFS=,; echo "${packages[*]}")")
# "fresh": a bare Debian 12, where ./dev.sh must install everything itself.
fresh_opts=(--variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Retries "3"')
recipe=1
month=$(date -u +%Y-%m)
mkdir -p "$cache/chroots"

opts_of() { if [ "$1" = fresh ]; then printf '%s\n' "${fresh_opts[@]}"; else printf '%s\n' "${mmdebstrap_opts[@]}"; fi; }
suite_of() { if [ "$1" = fresh ]; then echo bookworm; else echo "$1"; fi; }
chroot_dir() {
        local hash
        hash=$( (opts_of "$1"; echo "recipe=$recipe") | sha256sum | cut -c1-12)
        echo "$cache/chroots/$1-$month-$hash"
}

# mmdebstrap into a temporary name, renamed when complete; older keys of the
# same name go.
make_chroot() {
        local name=$1 dir opts
        dir=$(chroot_dir "$name")
        mapfile -t opts < <(opts_of "$name")
        # A second try for a download that failed on the way.
        for try in 1 2; do
                rm -rf "$dir.tmp"
                mmdebstrap "${opts[@]}" "$(suite_of "$name")" "$dir.tmp" > "$dir.log" 2>&1 && break
                [ "$try" = 2 ] && return 1
        done
        mv "$dir.tmp" "$dir"
        find "$cache/chroots" -mindepth 1 -maxdepth 1 -name "$name-*" ! -name "$(basename "$dir")*" \
                -exec rm -rf {} +
}

# Missing chroots are made in parallel: mmdebstrap mostly waits for downloads.
start=$SECONDS
pids=() made=()
for suite in "${suites[@]}"; do
        [ -d "$(chroot_dir "$suite")" ] && continue
        log "making the $suite chroot ($(chroot_dir "$suite"))"
        make_chroot "$suite" & pids+=($!) made+=("$suite")
done
failed=()
for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
                log "mmdebstrap ${made[$i]} failed:"
                tail -n 20 "$(chroot_dir "${made[$i]}").log" >&2
                failed+=("${made[$i]}")
        fi
done
[ ${#made[@]} = 0 ] || log "made ${made[*]} in $((SECONDS - start)) s"

# The tarball every chroot builds: what a packager would download.
log "meson dist"
out=$(meson dist -C "$build" --no-tests --allow-dirty --formats xztar 2>&1) ||
        { printf '%s\n' "$out" >&2; log "meson dist failed"; exit 1; }
dist=$(ls -t "$build"/meson-dist/*.tar.xz | head -n1)
if [ -n "$(git -C "$source_root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        log "note: the tarball holds the last commit; uncommitted changes are not built"
fi

# uapi.h against the newest linux-source-7.x that the VM tier extracted (in
# full: build-kernel.sh marks a finished extraction with .extracted).
uapi_dir=
for d in "$cache"/src/linux-source-7.*/.extracted; do
        [ -e "$d" ] && uapi_dir+=$(ls -d "$(dirname "$d")"/linux-source-7.*/include/uapi/linux 2>/dev/null)$'\n'
done
uapi_dir=$(printf '%s' "$uapi_dir" | grep . | sort -V | tail -n1 || true)
[ -n "$uapi_dir" ] || log "no linux-source-7.x in $cache/src: uapi.h is checked against each suite's headers only"

results=()
for suite in "${suites[@]}"; do
        if [[ " ${failed[*]} " == *" $suite "* ]]; then
                results+=("$suite FAIL (mmdebstrap)")
                continue
        fi
        case $suite in
        bookworm) extra=--also-usr-local ;;
        trixie) extra=--also-without-dpkg-dev ;;
        *) extra= ;;
        esac
        log "$suite: building $(basename "$dist")"
        t=$SECONDS
        if unshare --mount --propagation private -- "$0" --in-namespace \
                "$suite" "$(chroot_dir "$suite")" "$dist" "$uapi_dir" "$extra"; then
                results+=("$suite ok ($((SECONDS - t)) s)")
        else
                results+=("$suite FAIL")
                failed+=("$suite")
        fi
done
log "${results[*]}; all in $((SECONDS - start)) s"
[ ${#failed[@]} = 0 ]
