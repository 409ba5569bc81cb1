/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-device.h"
#include "log.h"

struct DbusDevices {
        Manager *manager;
        sd_bus *bus;
        sd_bus_slot *vtable_slot;
        sd_bus_slot *enumerator_slot;

        /* The holder properties depend on who asks. A GetAll reads several of
         * them for one message, so remember the last asker's uid, by the
         * message's sender and cookie: a reference would keep the message,
         * and any fds a client attached to it, until the next read. */
        char *viewer_sender;
        uint64_t viewer_cookie;
        uid_t viewer_uid;
};

int dbus_device_path(const char *address, char **ret) {
        return sd_bus_path_encode(BROKER_DBUS_DEVICE_PREFIX, address, ret);
}

int dbus_device_address_from_path(const char *path, char **ret) {
        char *address = NULL;
        int r;

        r = sd_bus_path_decode(path, BROKER_DBUS_DEVICE_PREFIX, &address);
        if (r < 0)
                return r;
        /* Only direct children name devices; "a/b" is not an address. */
        if (r == 0 || !address || !*address || strchr(address, '/')) {
                free(address);
                return -ENXIO;
        }
        *ret = address;
        return 0;
}

/* The device an object path names. Only the canonical address form has an
 * object, so that one device never shows up under two paths. */
static Device *device_from_path(Manager *m, const char *path) {
        _cleanup_free_ char *address = NULL;
        Device *d;

        if (dbus_device_address_from_path(path, &address) < 0)
                return NULL;
        d = inventory_find(manager_inventory(m), address);
        if (!d || !streq(d->address, address))
                return NULL;
        return d;
}

static int device_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                       void **ret_found, sd_bus_error *error) {
        DbusDevices *dd = userdata;

        if (!device_from_path(dd->manager, path))
                return 0;
        *ret_found = dd;
        return 1;
}

static int device_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret_nodes,
                            sd_bus_error *error) {
        DbusDevices *dd = userdata;
        _cleanup_strv_free_ char **nodes = NULL;
        Device *const *devices;
        size_t n;
        int r;

        devices = inventory_devices(manager_inventory(dd->manager), &n);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;

                r = dbus_device_path(devices[i]->address, &path);
                if (r < 0)
                        return r;
                r = strv_extend(&nodes, path);
                if (r < 0)
                        return r;
        }
        if (!nodes) {
                nodes = calloc(1, sizeof(char *));
                if (!nodes)
                        return -ENOMEM;
        }
        *ret_nodes = TAKE_PTR(nodes);
        return 0;
}

/* Every getter resolves the device from the path again: the inventory may
 * have replaced the Device since the find callback ran. */
#define DEVICE_OR_FAIL(dd, path, error)                                                         \
        ({                                                                                      \
                Device *_d = device_from_path((dd)->manager, (path));                          \
                if (!_d)                                                                        \
                        return sd_bus_error_setf((error), SD_BUS_ERROR_UNKNOWN_OBJECT,          \
                                                 "Device object %s is gone.", (path));          \
                _d;                                                                             \
        })

#define DEFINE_DEVICE_GETTER(fname, type, expr)                                                  \
        static int fname(sd_bus *bus, const char *path, const char *interface,                  \
                         const char *property, sd_bus_message *reply, void *userdata,            \
                         sd_bus_error *error) {                                                  \
                DbusDevices *dd = userdata;                                                      \
                Device *d = DEVICE_OR_FAIL(dd, path, error);                                     \
                (void) dd;                                                                       \
                return sd_bus_message_append(reply, type, expr);                                 \
        }

DEFINE_DEVICE_GETTER(property_get_address, "s", d->address)
DEFINE_DEVICE_GETTER(property_get_vendor_id, "q", d->vendor_id)
DEFINE_DEVICE_GETTER(property_get_device_id, "q", d->device_id)
DEFINE_DEVICE_GETTER(property_get_subsystem_vendor_id, "q", d->subsystem_vendor_id)
DEFINE_DEVICE_GETTER(property_get_subsystem_device_id, "q", d->subsystem_device_id)
DEFINE_DEVICE_GETTER(property_get_class, "u", d->class)
DEFINE_DEVICE_GETTER(property_get_driver, "s", d->driver ?: "")
DEFINE_DEVICE_GETTER(property_get_iommu_group, "i", (int32_t) d->iommu_group)
DEFINE_DEVICE_GETTER(property_get_vfio_cdev, "s", d->vfio_cdev ?: "")
DEFINE_DEVICE_GETTER(property_get_iommu_type, "s",
                     d->hw_info.valid ? strna(iommu_hw_info_type_to_string(d->hw_info.type)) : "")
DEFINE_DEVICE_GETTER(property_get_iommu_capabilities, "t",
                     d->hw_info.valid ? (uint64_t) d->hw_info.capabilities : UINT64_C(0))
DEFINE_DEVICE_GETTER(property_get_noiommu, "b", (int) d->noiommu)
DEFINE_DEVICE_GETTER(property_get_sriov_vf, "b", (int) d->sriov_vf)

static int property_get_group_members(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply, void *userdata,
                                      sd_bus_error *error) {
        DbusDevices *dd = userdata;
        Device *d = DEVICE_OR_FAIL(dd, path, error);

        return sd_bus_message_append_strv(reply, d->group_members);
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error) {
        DbusDevices *dd = userdata;
        Device *d = DEVICE_OR_FAIL(dd, path, error);
        const char *reason = NULL;
        DeviceState state;

        state = manager_device_state(dd->manager, d, &reason);
        if (streq(property, "State"))
                return sd_bus_message_append(reply, "s", strna(device_state_to_string(state)));
        return sd_bus_message_append(reply, "s", reason ?: "");
}

/* The uid of whoever sent the message being answered, or -ENODATA when we
 * are not answering anyone (a signal being built). Only the effective uid
 * matters: manager_device_holder() shows a holder to root and to its own uid. */
static int viewer_uid(DbusDevices *dd, sd_bus *bus, uid_t *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        sd_bus_message *m;
        uint64_t cookie = 0;
        const char *sender;
        uid_t uid;
        int r;

        m = sd_bus_get_current_message(bus);
        if (!m)
                return -ENODATA;
        sender = sd_bus_message_get_sender(m);
        (void) sd_bus_message_get_cookie(m, &cookie);
        if (sender && cookie != 0 && cookie == dd->viewer_cookie && streq_ptr(sender, dd->viewer_sender)) {
                *ret = dd->viewer_uid;
                return 0;
        }

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;

        if (sender && free_and_strdup(&dd->viewer_sender, sender) >= 0) {
                dd->viewer_cookie = cookie;
                dd->viewer_uid = uid;
        }
        *ret = uid;
        return 0;
}

/* The holder as the caller may see it; all zero when hidden or not leased. */
static void visible_holder(DbusDevices *dd, sd_bus *bus, const Device *d, Holder *ret) {
        Principal viewer = { .pidfd = -EBADF };

        *ret = (Holder) {};
        if (viewer_uid(dd, bus, &viewer.uid) < 0)
                return;
        if (!manager_device_holder(dd->manager, d, &viewer, ret))
                *ret = (Holder) {};
}

static int property_get_holder(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error) {
        DbusDevices *dd = userdata;
        Device *d = DEVICE_OR_FAIL(dd, path, error);
        Holder h;

        visible_holder(dd, bus, d, &h);
        if (streq(property, "HolderSession"))
                return sd_bus_message_append(reply, "t", h.session_id);
        if (streq(property, "HolderUid"))
                return sd_bus_message_append(reply, "u", (uint32_t) h.uid);
        if (streq(property, "HolderPid"))
                return sd_bus_message_append(reply, "u", (uint32_t) h.pid);
        return sd_bus_message_append(reply, "s", h.session_id ? h.unit ?: "" : "");
}

#define CONST_PROPERTY(name, sig, getter) \
        SD_BUS_PROPERTY(name, sig, getter, 0, SD_BUS_VTABLE_PROPERTY_CONST)
#define CHANGING_PROPERTY(name, sig, getter) \
        SD_BUS_PROPERTY(name, sig, getter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)
#define PER_CALLER_PROPERTY(name, sig, getter) \
        SD_BUS_PROPERTY(name, sig, getter, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION)

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        CONST_PROPERTY("Address", "s", property_get_address),
        CONST_PROPERTY("VendorId", "q", property_get_vendor_id),
        CONST_PROPERTY("DeviceId", "q", property_get_device_id),
        CONST_PROPERTY("SubsystemVendorId", "q", property_get_subsystem_vendor_id),
        CONST_PROPERTY("SubsystemDeviceId", "q", property_get_subsystem_device_id),
        CONST_PROPERTY("Class", "u", property_get_class),
        CHANGING_PROPERTY("Driver", "s", property_get_driver),
        CHANGING_PROPERTY("IommuGroup", "i", property_get_iommu_group),
        CHANGING_PROPERTY("GroupMembers", "as", property_get_group_members),
        CHANGING_PROPERTY("VfioCdev", "s", property_get_vfio_cdev),
        CHANGING_PROPERTY("IommuType", "s", property_get_iommu_type),
        CHANGING_PROPERTY("IommuCapabilities", "t", property_get_iommu_capabilities),
        CHANGING_PROPERTY("NoIommu", "b", property_get_noiommu),
        CHANGING_PROPERTY("SriovVf", "b", property_get_sriov_vf),
        CHANGING_PROPERTY("State", "s", property_get_state),
        CHANGING_PROPERTY("StateReason", "s", property_get_state),
        PER_CALLER_PROPERTY("HolderSession", "t", property_get_holder),
        PER_CALLER_PROPERTY("HolderUid", "u", property_get_holder),
        PER_CALLER_PROPERTY("HolderPid", "u", property_get_holder),
        PER_CALLER_PROPERTY("HolderUnit", "s", property_get_holder),
        SD_BUS_VTABLE_END,
};

int dbus_devices_new(sd_bus *bus, Manager *m, DbusDevices **ret) {
        _cleanup_(dbus_devices_freep) DbusDevices *dd = NULL;
        int r;

        dd = calloc(1, sizeof(*dd));
        if (!dd)
                return -ENOMEM;
        dd->manager = m;
        dd->bus = sd_bus_ref(bus);

        r = sd_bus_add_fallback_vtable(bus, &dd->vtable_slot, BROKER_DBUS_DEVICE_PREFIX,
                                       BROKER_DBUS_DEVICE_INTERFACE, device_vtable, device_find, dd);
        if (r < 0)
                return log_error_errno(r, "Failed to add the D-Bus device vtable: %s", strerror(-r));
        r = sd_bus_add_node_enumerator(bus, &dd->enumerator_slot, BROKER_DBUS_DEVICE_PREFIX,
                                       device_enumerate, dd);
        if (r < 0)
                return log_error_errno(r, "Failed to add the D-Bus device enumerator: %s", strerror(-r));

        *ret = TAKE_PTR(dd);
        return 0;
}

DbusDevices *dbus_devices_free(DbusDevices *dd) {
        if (!dd)
                return NULL;
        sd_bus_slot_unref(dd->vtable_slot);
        sd_bus_slot_unref(dd->enumerator_slot);
        free(dd->viewer_sender);
        sd_bus_unref(dd->bus);
        free(dd);
        return NULL;
}

int dbus_device_emit_changed(sd_bus *bus, const char *address) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = dbus_device_path(address, &path);
        if (r < 0)
                return r;
        /* No names: every property that emits a change (or invalidation). */
        return sd_bus_emit_properties_changed_strv(bus, path, BROKER_DBUS_DEVICE_INTERFACE, NULL);
}
