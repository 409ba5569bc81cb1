#!/bin/bash
# The guest is what the tier promises: systemd as PID 1 on a system of the
# suite the image was built from ($DISTRO_SUITE: trixie, or sid) that
# finished booting, the VM tier's devices, the project installed in /usr.
source "$DISTRO_LIB"

[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
systemctl --version | head -n1
state=$(systemctl is-system-running || true)
[ "$state" = running ] || { systemctl --failed --no-pager; fail "system state '$state', not running"; }
# trixie says so in VERSION_CODENAME; sid is "forky/sid" (testing's codename)
# only in PRETTY_NAME.
case ${DISTRO_SUITE:-trixie} in
sid) grep -q '^PRETTY_NAME=.*/sid"' /etc/os-release || fail "not sid: $(grep PRETTY /etc/os-release)" ;;
*) grep -q "^VERSION_CODENAME=$DISTRO_SUITE\$" /etc/os-release ||
        fail "not $DISTRO_SUITE: $(grep PRETTY /etc/os-release)" ;;
esac

[ -e /dev/iommu ] || fail "no /dev/iommu"
[ "$(device_driver "$E1000E")" = e1000e ] || fail "$E1000E is on $(device_driver "$E1000E"), not e1000e"
[ "$(cat /sys/bus/pci/devices/$EDU/device)" = 0x11e8 ] || fail "$EDU is not the edu device"

for f in /usr/sbin/iommufd-broker /usr/bin/iommufdctl \
         /usr/lib/systemd/system/iommufd-broker.service /usr/lib/systemd/system/iommufd-broker.socket \
         /usr/share/dbus-1/system.d/io.iommufd.Broker1.conf \
         /usr/share/dbus-1/system-services/io.iommufd.Broker1.service; do
        [ -e "$f" ] || fail "meson install did not install $f"
done
iommufd-broker --version
run_as alice iommufdctl --help >/dev/null || fail "iommufdctl does not run for alice"
[ "$(run_as alice id -u)" = 1001 ] && [ "$(run_as bob id -u)" = 1002 ] || fail "users alice and bob are wrong"
log "alice's memlock limit: $(run_as alice sh -c 'ulimit -l') KiB"
