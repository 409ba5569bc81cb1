#!/bin/bash
# PID 1 of the VM tier's guest. The root is the host's / over 9p, read-only:
# everything writable lives on tmpfs. Sets up what dbus-daemon needs, starts a
# real system bus, runs the guest suite and always powers the guest off.
#
# The kernel command line passes IOMMUFD_VM_BUILD (the meson build dir) and
# IOMMUFD_VM_SRC (the source tree) into our environment.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8

power_off() {
        sync || true
        echo o > /proc/sysrq-trigger
        # The power-off runs asynchronously; wait with builtins only (the 9p
        # root may already be gone). Should it fail, PID 1 exiting panics, and
        # panic=-1 with QEMU's -no-reboot ends the VM as well.
        SECONDS=0
        while [ "$SECONDS" -lt 10 ]; do :; done
        exit 1
}
trap power_off EXIT

log() { echo "guest-init: $*"; }

mount_tmpfs() { mkdir -p "$1" 2>/dev/null || true; mount -t tmpfs -o "mode=${2:-0755},nosuid,nodev" tmpfs "$1"; }

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
# CONFIG_DEVTMPFS_MOUNT mounts /dev already when the kernel mounts the root.
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount_tmpfs /dev/shm 1777
mount_tmpfs /run
# Scratch space, unless the build or source tree lives there.
for d in /tmp /var/tmp; do
        case "$IOMMUFD_VM_BUILD/ $IOMMUFD_VM_SRC/" in
        "$d"/*|*" $d"/*) log "keeping the host's $d (read-only): the tree is there" ;;
        *) mount_tmpfs "$d" 1777 ;;
        esac
done
mount_tmpfs /var/log
ln -sf /proc/self/fd /dev/fd

results=/run/vm-results
mkdir -p "$results"
mount -t 9p -o trans=virtio,version=9p2000.L results "$results"
log "up after $(cut -d' ' -f1 /proc/uptime) s; kernel $(uname -r)"

# A real system bus: Debian's system.conf plus the broker's bus policy.
mkdir -p /run/dbus
cat > /run/dbus-vm.conf <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <include>/usr/share/dbus-1/system.conf</include>
  <include ignore_missing="yes">$IOMMUFD_VM_SRC/systemd/io.iommufd.Broker1.conf</include>
</busconfig>
EOF
dbus-daemon --config-file=/run/dbus-vm.conf --nofork --nopidfile --nosyslog &
for _ in $(seq 100); do
        [ -S /run/dbus/system_bus_socket ] && break
        sleep 0.1
done
[ -S /run/dbus/system_bus_socket ] || log "dbus-daemon did not come up"

"$IOMMUFD_VM_SRC/tests/vm/guest/run-suite.sh" "$results" || true
log "suite done after $(cut -d' ' -f1 /proc/uptime) s, powering off"
