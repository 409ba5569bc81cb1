/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "dbus-broker.h"
#include "manager.h"

/*
 * A device object's changing properties (dbus-device.h): their values,
 * snapshots of them, and the set that differs between two snapshots, which
 * is what a PropertiesChanged names. No bus and no DbusDevices: test-dbus-device
 * checks the sets on snapshots it makes up.
 */

/* The properties a PropertiesChanged names, in the order it names them: the
 * changing ones with their values, then the per-caller ones as invalidated
 * (the holder's, then the access the policy gives). */
typedef enum DeviceProperty {
        PROPERTY_DRIVER,
        PROPERTY_IOMMU_GROUP,
        PROPERTY_GROUP_MEMBERS,
        PROPERTY_VFIO_CDEV,
        PROPERTY_IOMMU_TYPE,
        PROPERTY_IOMMU_CAPABILITIES,
        PROPERTY_NOIOMMU,
        PROPERTY_SRIOV_VF,
        PROPERTY_STATE,
        PROPERTY_STATE_REASON,
        _PROPERTY_CHANGING_MAX,
        PROPERTY_HOLDER_SESSION = _PROPERTY_CHANGING_MAX,
        PROPERTY_HOLDER_UID,
        PROPERTY_HOLDER_PID,
        PROPERTY_HOLDER_UNIT,
        PROPERTY_ACCESS,
        PROPERTY_ALLOWED_MODES,
        PROPERTY_MANAGED_ALLOWED,
        PROPERTY_ACCESS_REASON,
        PROPERTY_POLKIT_ACTION,
        _PROPERTY_MAX,
} DeviceProperty;

/* NULL-terminated: the access ones are a strv of their own. */
extern const char *const device_property_names[_PROPERTY_MAX + 1];
extern const char device_property_signatures[_PROPERTY_CHANGING_MAX][3];

/* A set of properties, one bit each. */
typedef uint32_t PropertySet;
#define PROPERTY_BIT(p) (UINT32_C(1) << (p))
#define PROPERTIES_ALL (PROPERTY_BIT(_PROPERTY_MAX) - 1)
#define PROPERTIES_HOLDER                                                                  \
        (PROPERTY_BIT(PROPERTY_HOLDER_SESSION) | PROPERTY_BIT(PROPERTY_HOLDER_UID) |        \
         PROPERTY_BIT(PROPERTY_HOLDER_PID) | PROPERTY_BIT(PROPERTY_HOLDER_UNIT))
#define PROPERTIES_ACCESS (PROPERTIES_ALL & ~(PROPERTY_BIT(PROPERTY_ACCESS) - 1))

/* Room for the object path of any device (an address has at most 15 bytes). */
#define DBUS_DEVICE_PATH_SIZE (sizeof(BROKER_DBUS_DEVICE_PREFIX "/") + 3 * (sizeof(((Device *) NULL)->address) - 1))

/* What a device looked like: the values of its changing properties and its
 * holder. Stored ones own their strings (and dbus-device.c gives them their
 * object path); device_snapshot_borrow()'s do not. */
typedef struct DeviceSnapshot {
        char address[16];
        char path[DBUS_DEVICE_PATH_SIZE];       /* "" unless stored */
        char *driver, *vfio_cdev, *reason;
        char **group_members;
        int iommu_group;
        IommuHwInfo hw_info;
        bool noiommu, sriov_vf;
        DeviceState state;
        uint64_t holder_session;                /* 0: not leased */
        /* Stored ones, for dbus-device.c's rate limit: when the last
         * PropertiesChanged of the device went out (CLOCK_MONOTONIC, 0:
         * never), and whether a change waits for the next one. */
        uint64_t signalled_usec;
        bool pending;
} DeviceSnapshot;

/* d as it is now, its strings borrowed from d and the manager: valid until
 * either changes. Never device_snapshot_done() it. */
void device_snapshot_borrow(Manager *m, const Device *d, DeviceSnapshot *ret);
/* A stored copy of now (its path left empty). */
int device_snapshot_copy(const DeviceSnapshot *now, DeviceSnapshot *ret);
/* Make stored snapshot s what now says, given what differs (changed): copies
 * only the strings that changed. On -ENOMEM, s is as it was. */
int device_snapshot_update(DeviceSnapshot *s, const DeviceSnapshot *now, PropertySet changed);
void device_snapshot_done(DeviceSnapshot *s);

/* The properties that differ between old (NULL: all of them) and new. */
PropertySet device_snapshot_changed(const DeviceSnapshot *old, const DeviceSnapshot *new);

/* The value of changing property p (< _PROPERTY_CHANGING_MAX), as Get and
 * PropertiesChanged carry it. */
int device_snapshot_append_value(sd_bus_message *m, const DeviceSnapshot *s, DeviceProperty p);
