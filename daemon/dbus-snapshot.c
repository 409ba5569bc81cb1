/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-device.h"
#include "dbus-snapshot.h"

const char *const device_property_names[_PROPERTY_MAX + 1] = {
        [PROPERTY_DRIVER] = "Driver",
        [PROPERTY_IOMMU_GROUP] = "IommuGroup",
        [PROPERTY_GROUP_MEMBERS] = "GroupMembers",
        [PROPERTY_VFIO_CDEV] = "VfioCdev",
        [PROPERTY_IOMMU_TYPE] = "IommuType",
        [PROPERTY_IOMMU_CAPABILITIES] = "IommuCapabilities",
        [PROPERTY_NOIOMMU] = "NoIommu",
        [PROPERTY_SRIOV_VF] = "SriovVf",
        [PROPERTY_STATE] = "State",
        [PROPERTY_STATE_REASON] = "StateReason",
        [PROPERTY_HOLDER_SESSION] = "HolderSession",
        [PROPERTY_HOLDER_UID] = "HolderUid",
        [PROPERTY_HOLDER_PID] = "HolderPid",
        [PROPERTY_HOLDER_UNIT] = "HolderUnit",
        [PROPERTY_ACCESS] = "Access",
        [PROPERTY_ALLOWED_MODES] = "AllowedModes",
        [PROPERTY_MANAGED_ALLOWED] = "ManagedAllowed",
        [PROPERTY_ACCESS_REASON] = "AccessReason",
        [PROPERTY_POLKIT_ACTION] = "PolkitAction",
};

const char device_property_signatures[_PROPERTY_CHANGING_MAX][3] = {
        [PROPERTY_DRIVER] = "s",
        [PROPERTY_IOMMU_GROUP] = "i",
        [PROPERTY_GROUP_MEMBERS] = "as",
        [PROPERTY_VFIO_CDEV] = "s",
        [PROPERTY_IOMMU_TYPE] = "s",
        [PROPERTY_IOMMU_CAPABILITIES] = "t",
        [PROPERTY_NOIOMMU] = "b",
        [PROPERTY_SRIOV_VF] = "b",
        [PROPERTY_STATE] = "s",
        [PROPERTY_STATE_REASON] = "s",
};

void device_snapshot_borrow(Manager *m, const Device *d, DeviceSnapshot *ret) {
        const char *reason = NULL;
        Holder h;

        *ret = (DeviceSnapshot) {
                .driver = d->driver,
                .vfio_cdev = d->vfio_cdev,
                .group_members = d->group_members,
                .iommu_group = d->iommu_group,
                .hw_info = d->hw_info,
                .noiommu = d->noiommu,
                .sriov_vf = d->sriov_vf,
        };
        memcpy(ret->address, d->address, sizeof(ret->address));
        ret->state = manager_device_state(m, d, &reason);
        ret->reason = (char *) reason;
        if (manager_device_holder(m, d, NULL, &h))
                ret->holder_session = h.session_id;
}

void device_snapshot_done(DeviceSnapshot *s) {
        free(s->driver);
        free(s->vfio_cdev);
        free(s->reason);
        strv_free(s->group_members);
}

static int append_string(sd_bus_message *m, const char *s) {
        return sd_bus_message_append_basic(m, 's', s);
}

/* For Get and GetAll, and in PropertiesChanged (from the snapshot of what it
 * reports, without looking the device up again). Typed appends: no format
 * string to parse. */
int device_snapshot_append_value(sd_bus_message *m, const DeviceSnapshot *s, DeviceProperty p) {
        int32_t i;
        uint64_t t;
        int b;

        switch (p) {
        case PROPERTY_DRIVER:
                return append_string(m, s->driver ?: "");
        case PROPERTY_IOMMU_GROUP:
                i = (int32_t) s->iommu_group;
                return sd_bus_message_append_basic(m, 'i', &i);
        case PROPERTY_GROUP_MEMBERS:
                return sd_bus_message_append_strv(m, s->group_members);
        case PROPERTY_VFIO_CDEV:
                return append_string(m, s->vfio_cdev ?: "");
        case PROPERTY_IOMMU_TYPE:
                return dbus_append_ascii(m, s->hw_info.valid ? strna(iommu_hw_info_type_to_string(s->hw_info.type)) : "");
        case PROPERTY_IOMMU_CAPABILITIES:
                t = s->hw_info.valid ? (uint64_t) s->hw_info.capabilities : UINT64_C(0);
                return sd_bus_message_append_basic(m, 't', &t);
        case PROPERTY_NOIOMMU:
                b = s->noiommu;
                return sd_bus_message_append_basic(m, 'b', &b);
        case PROPERTY_SRIOV_VF:
                b = s->sriov_vf;
                return sd_bus_message_append_basic(m, 'b', &b);
        case PROPERTY_STATE:
                return dbus_append_ascii(m, strna(device_state_to_string(s->state)));
        case PROPERTY_STATE_REASON:
                return append_string(m, s->reason ?: "");
        default:
                return -EINVAL;
        }
}

static int strdup_or_null(const char *s, char **ret) {
        *ret = s ? strdup(s) : NULL;
        return s && !*ret ? -ENOMEM : 0;
}

/* A lease coming and going copies its reason at most. */
int device_snapshot_update(DeviceSnapshot *s, const DeviceSnapshot *now, PropertySet changed) {
        _cleanup_free_ char *driver = NULL, *vfio_cdev = NULL, *reason = NULL;
        _cleanup_strv_free_ char **members = NULL;

        if (((changed & PROPERTY_BIT(PROPERTY_DRIVER)) && strdup_or_null(now->driver, &driver) < 0) ||
            ((changed & PROPERTY_BIT(PROPERTY_VFIO_CDEV)) && strdup_or_null(now->vfio_cdev, &vfio_cdev) < 0) ||
            ((changed & PROPERTY_BIT(PROPERTY_STATE_REASON)) && strdup_or_null(now->reason, &reason) < 0) ||
            ((changed & PROPERTY_BIT(PROPERTY_GROUP_MEMBERS)) && strv_copy(now->group_members, &members) < 0))
                return -ENOMEM;
        if (changed & PROPERTY_BIT(PROPERTY_DRIVER)) {
                free(s->driver);
                s->driver = TAKE_PTR(driver);
        }
        if (changed & PROPERTY_BIT(PROPERTY_VFIO_CDEV)) {
                free(s->vfio_cdev);
                s->vfio_cdev = TAKE_PTR(vfio_cdev);
        }
        if (changed & PROPERTY_BIT(PROPERTY_STATE_REASON)) {
                free(s->reason);
                s->reason = TAKE_PTR(reason);
        }
        if (changed & PROPERTY_BIT(PROPERTY_GROUP_MEMBERS)) {
                strv_free(s->group_members);
                s->group_members = TAKE_PTR(members);
        }
        s->iommu_group = now->iommu_group;
        s->hw_info = now->hw_info;
        s->noiommu = now->noiommu;
        s->sriov_vf = now->sriov_vf;
        s->state = now->state;
        s->holder_session = now->holder_session;
        return 0;
}

int device_snapshot_copy(const DeviceSnapshot *now, DeviceSnapshot *ret) {
        DeviceSnapshot s = {};

        memcpy(s.address, now->address, sizeof(s.address));
        if (device_snapshot_update(&s, now, PROPERTIES_ALL) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

PropertySet device_snapshot_changed(const DeviceSnapshot *old, const DeviceSnapshot *new) {
        PropertySet c = 0;

        if (!old)
                return PROPERTIES_ALL;
#define CHANGED(cond, p) do { if (cond) c |= PROPERTY_BIT(p); } while (0)
        CHANGED(!streq_ptr(old->driver, new->driver), PROPERTY_DRIVER);
        CHANGED(old->iommu_group != new->iommu_group, PROPERTY_IOMMU_GROUP);
        CHANGED(!strv_equal(old->group_members, new->group_members), PROPERTY_GROUP_MEMBERS);
        CHANGED(!streq_ptr(old->vfio_cdev, new->vfio_cdev), PROPERTY_VFIO_CDEV);
        CHANGED(old->hw_info.valid != new->hw_info.valid || old->hw_info.type != new->hw_info.type,
                PROPERTY_IOMMU_TYPE);
        CHANGED(old->hw_info.valid != new->hw_info.valid || old->hw_info.capabilities != new->hw_info.capabilities,
                PROPERTY_IOMMU_CAPABILITIES);
        CHANGED(old->noiommu != new->noiommu, PROPERTY_NOIOMMU);
        CHANGED(old->sriov_vf != new->sriov_vf, PROPERTY_SRIOV_VF);
        CHANGED(old->state != new->state, PROPERTY_STATE);
        CHANGED(!streq_ptr(old->reason, new->reason), PROPERTY_STATE_REASON);
#undef CHANGED
        /* The holder moves with the lease. Access only moves with policy or
         * the device itself; the first announcement names everything. */
        if (old->holder_session != new->holder_session)
                c |= PROPERTIES_HOLDER;
        if (c & (PROPERTY_BIT(PROPERTY_DRIVER) | PROPERTY_BIT(PROPERTY_IOMMU_GROUP)))
                c |= PROPERTIES_ACCESS;
        return c;
}
