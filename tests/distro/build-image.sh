#!/bin/bash
# Build the distro tier's Debian root file system with mmdebstrap: trixie,
# or the suite named by IOMMUFD_DISTRO_SUITE (e.g. sid, for a newer systemd
# and QEMU than trixie's).
#
# The result, a tarball, is cached outside the repository under
# $IOMMUFD_TEST_CACHE/distro/<key>/rootfs.tar, where the key is the suite,
# the month and a hash of the package list and this recipe: a new month (or
# a new package or step) gives a fresh image with current packages, and
# anything else reuses the cache, so a second run takes a second. trixie,
# the default, keeps the key it always had, without the suite
# (<month>-<hash>); any other suite's key is <suite>-<month>-<hash>.
# Prints the path of the tarball as the last line of stdout.
set -euo pipefail

# One compound command: bash parses it whole before running, so editing the
# file during a long build cannot break the running build.
{
cache=${IOMMUFD_TEST_CACHE:-/var/cache/iommufd-broker-test}/distro
mirror=${IOMMUFD_DISTRO_MIRROR:-http://deb.debian.org/debian}
suite=${IOMMUFD_DISTRO_SUITE:-trixie}
case $suite in
''|*[!a-z0-9]*) echo "build-image: IOMMUFD_DISTRO_SUITE: not a suite name: '$suite'" >&2; exit 2 ;;
esac
log() { echo "build-image: $*" >&2; }

# What the guest needs: systemd as PID 1 with D-Bus, polkit and udev; an
# unmodified QEMU for the headline case; python3 for a small QMP client;
# and what a packager needs to build the project from source.
packages=(
        systemd systemd-sysv dbus polkitd udev kmod libpam-systemd
        qemu-system-x86 procps python3 pciutils iproute2
        gcc libc6-dev meson ninja-build pkg-config
        libsystemd-dev libudev-dev libseccomp-dev libjansson-dev scdoc
)
# trixie's systemd depends on mount; sid's (262) only recommends it,
# and recommends are not installed: without mount(8) systemd cannot mount
# /tmp, /dev/mqueue or /dev/hugepages and the runner cannot mount its share.
# (Named for other suites only, so trixie's list and key stay as they were.)
[ "$suite" = trixie ] || packages+=(mount)

# Bump recipe when the steps below change in a way that alters the image.
recipe=1
hash=$( (printf '%s\n' "${packages[@]}"; echo "recipe=$recipe"; echo "mirror=$mirror") |
        sha256sum | cut -c1-12)
# trixie's images keep their historic name (<month>-<hash>, so the cached
# image is still found); another suite's name starts with the suite.
key=$(date -u +%Y-%m)-$hash
[ "$suite" = trixie ] || key=$suite-$key
out=$cache/$key
if [ -s "$out/rootfs.tar" ]; then
        log "cached: $out"
        echo "$out/rootfs.tar"
        exit 0
fi

command -v mmdebstrap >/dev/null || {
        log "installing mmdebstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
}

mkdir -p "$out"
log "building $suite image $key (a few minutes)"
start=$SECONDS
include=$(IFS=,; echo "${packages[*]}")
# Documentation, man pages and translations are never read in the guest;
# leaving them out keeps the image (and so every run's copy) small.
# The mirror is named on the command line only: the host's apt sources
# are neither read nor touched. The archive this machine reaches may be a
# frozen snapshot: sid's Release file carries a Valid-Until that has passed
# there (trixie's has none, so its image is the same as before).
mmdebstrap --variant=essential --mode=root --format=tar \
        --include="$include" \
        --aptopt='Apt::Install-Recommends "false"' \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --aptopt='Acquire::Retries "3"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='echo distro-tier > "$1/etc/hostname"' \
        --customize-hook=': > "$1/etc/machine-id"' \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
        "$suite" "$out/rootfs.tar.tmp" "deb $mirror $suite main" >"$out/build.log" 2>&1 ||
        { tail -n 40 "$out/build.log" >&2; rm -f "$out/rootfs.tar.tmp"; exit 1; }
mv "$out/rootfs.tar.tmp" "$out/rootfs.tar"
log "built in $((SECONDS - start)) s: $out/rootfs.tar ($(du -h "$out/rootfs.tar" | cut -f1))"
# This suite's older images (older months, older recipes) are never used
# again; other suites' images are not ours to remove. trixie's are the
# directories named <YYYY>-<MM>-<hash>, another suite's <suite>-<YYYY>-<MM>-<hash>.
if [ "$suite" = trixie ]; then
        pattern='[0-9][0-9][0-9][0-9]-[0-9][0-9]-*'
else
        pattern="$suite-[0-9][0-9][0-9][0-9]-[0-9][0-9]-*"
fi
find "$cache" -mindepth 1 -maxdepth 1 -type d -name "$pattern" ! -name "$key" \
        -exec rm -rf {} + 2>/dev/null || true
echo "$out/rootfs.tar"
exit 0
}
