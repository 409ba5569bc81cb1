#!/bin/bash
# timeout: 300
# The unit's device sandbox is enforced by this kernel (BPF cgroup device
# control): a probe unit with DevicePolicy=closed is refused a device outside
# its allow list (/dev/vda), the same probe without it is not, a probe with the
# broker's own allow list may open /dev/iommu but not the disk, and the
# broker itself, under that list, still hands out working devices.
source "$DISTRO_LIB"

probe() { systemd-run --quiet --wait --pipe --collect "$@"; }

# Control: without a device policy the disk is readable.
probe -- head -c 512 /dev/vda > /dev/null || fail "control probe cannot read /dev/vda at all"
if probe -p DevicePolicy=closed -p DeviceAllow=/dev/null -- head -c 512 /dev/vda > /dev/null 2> refused.err; then
        fail "DevicePolicy=closed is not enforced: the probe read /dev/vda"
fi
cat refused.err
grep -q 'Operation not permitted' refused.err || fail "the refusal is not EPERM: $(cat refused.err)"
probe -p DevicePolicy=closed -p DeviceAllow=/dev/null -- sh -c 'echo x > /dev/null' ||
        fail "the probe was refused the device it is allowed"

# The broker's own allow list: /dev/iommu yes, the disk no.
broker_start
allow=()
while read -r dev perm; do
        allow+=(-p "DeviceAllow=$dev $perm")
done < <(systemctl show -P DeviceAllow iommufd-broker.service | tr ',' '\n' | sed 's/^ *//')
log "the broker's DeviceAllow: $(systemctl show -P DeviceAllow iommufd-broker.service | paste -sd,)"
[ ${#allow[@]} -gt 0 ] || fail "the broker's unit has no DeviceAllow="
probe -p DevicePolicy=closed "${allow[@]}" -- sh -c 'exec 3< /dev/iommu' ||
        fail "the broker's allow list does not let a probe open /dev/iommu"
if probe -p DevicePolicy=closed "${allow[@]}" -- head -c 512 /dev/vda > /dev/null 2>&1; then
        fail "the broker's allow list lets a probe read /dev/vda"
fi

# And the broker, so confined, still works: alice gets the e1000e, managed,
# with a real iommufd and vfio cdev, and it goes back afterwards.
set_policy <<EOF2
{ "rules": [ { "devices": { "address": "$E1000E" }, "principals": { "users": ["alice"] }, "managed": true } ] }
EOF2
run_as alice iommufdctl run -d "$E1000E" --managed -- \
        sh -c 'readlink /proc/self/fd/{iommufd} /proc/self/fd/{dev0}' | tee fds.txt ||
        fail "the confined broker could not hand $E1000E to alice"
grep -qx /dev/iommu fds.txt || fail "no /dev/iommu fd: $(cat fds.txt)"
grep -q '^/dev/vfio/devices/vfio[0-9]' fds.txt || fail "no vfio cdev fd: $(cat fds.txt)"
wait_for driver_is "$E1000E" e1000e || fail "$E1000E did not return to e1000e"
if journal_grep -u iommufd-broker.service 'Operation not permitted|Permission denied'; then
        journal_since_case -u iommufd-broker.service -o cat
        fail "the broker hit a denial"
fi
