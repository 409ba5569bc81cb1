#!/bin/bash
# timeout: 180
# A new user's first step: enable and start the socket and the hardened
# service. The service reaches READY (Type=notify: "active" only after
# READY=1) under its full sandbox, with no denial of any kind in the journal,
# and sees the devices (so DevicePolicy=closed still lets it open /dev/iommu).
source "$DISTRO_LIB"

on_exit systemctl disable --now iommufd-broker.service iommufd-broker.socket
systemctl enable --now iommufd-broker.socket iommufd-broker.service
wait_for systemctl is-active -q iommufd-broker.service || {
        systemctl status --no-pager iommufd-broker.service || true
        fail "iommufd-broker.service did not become active"
}
systemctl is-enabled -q iommufd-broker.service || fail "service not enabled"
systemctl is-enabled -q iommufd-broker.socket || fail "socket not enabled"
systemctl is-active -q iommufd-broker.socket || fail "socket not active"

show() { systemctl show -P "$1" iommufd-broker.service; }
[ "$(show Type)" = notify ] || fail "Type=$(show Type), expected notify"
[ "$(show SubState)" = running ] || fail "SubState=$(show SubState)"
[ "$(show NRestarts)" = 0 ] || fail "the service restarted $(show NRestarts) times"
status=$(show StatusText)
log "StatusText: $status"
[ -n "$status" ] || fail "no STATUS= after READY=1"
# The sandbox the unit asks for is what it got.
[ "$(show DevicePolicy)" = closed ] || fail "DevicePolicy=$(show DevicePolicy)"
[ "$(show NoNewPrivileges)" = yes ] || fail "NoNewPrivileges=$(show NoNewPrivileges)"
[ "$(show ProtectSystem)" = strict ] || fail "ProtectSystem=$(show ProtectSystem)"
pid=$(show MainPID)
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "the broker runs without no_new_privs"
grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status" || fail "the broker runs without a seccomp filter"
bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' "/proc/$pid/status")
log "broker pid $pid, CapBnd $bnd"
# CAP_DAC_OVERRIDE (1), CAP_SYS_PTRACE (19: naming who still holds a device
# in /proc/PID/fd) and CAP_SYS_RESOURCE (24), nothing else.
[ "$((16#$bnd))" = $(( (1 << 1) | (1 << 19) | (1 << 24) )) ] ||
        fail "capability bounding set $bnd is not DAC_OVERRIDE+SYS_PTRACE+SYS_RESOURCE"

# It answers, and it found the devices under DevicePolicy=closed.
varlinkctl call "$BROKER_SOCKET" io.iommufd.Broker.ListDevices '{}' | grep -q "\"$E1000E\"" ||
        fail "ListDevices does not show $E1000E"
journal_grep -u iommufd-broker.service 'PCI devices, [1-9][0-9]* available' ||
        fail "the broker's startup summary is missing or shows no available device"

# No sandbox denial anywhere: not from the broker, not from systemd setting
# up the sandbox, not from the kernel's seccomp or device cgroup.
journal_since_case -u iommufd-broker.service -o cat > unit.log
journal_since_case -k -o cat > kernel.log
denials='Operation not permitted|Permission denied|SECCOMP|seccomp|type=1326|EPERM|EACCES|Failed to set up|No device can be acquired'
if grep -E "$denials" unit.log; then
        fail "sandbox denial in the service's journal (above)"
fi
if grep -E 'SECCOMP|type=1326|audit.*iommufd' kernel.log; then
        fail "the kernel logged a denial (above)"
fi
systemctl status --no-pager iommufd-broker.service | head -n 5
