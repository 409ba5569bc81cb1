/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-device.h"
#include "dbus-broker.h"
#include "dbus-snapshot.h"
#include "log.h"
#include "varlink.h"

/* At most one PropertiesChanged per device per this long, the varlink
 * Monitor's flush interval: a burst of Acquire+Release pairs costs one signal
 * per device per 5 ms, not two per pair. */
#define PROPERTIES_CHANGED_USEC VARLINK_STREAM_FLUSH_USEC
#define PROPERTIES_CHANGED_ACCURACY_USEC (1000ull)

struct DbusDevices {
        Manager *manager;
        sd_bus *bus;
        sd_bus_slot *vtable_slot;
        sd_bus_slot *enumerator_slot;

        /* The holder and access properties depend on who asks. A GetAll or
         * GetManagedObjects reads them for many devices in one message, so
         * remember the last asker, by the message's sender and cookie: a
         * reference would keep the message, and any fds a client attached to
         * it, until the next read. */
        char *viewer_sender;
        uint64_t viewer_cookie;
        Principal *viewer;

        /* What the last PropertiesChanged said of each device, sorted by
         * address, so the next one names only what changed. */
        DeviceSnapshot *snapshots;
        size_t n_snapshots;

        /* Devices that changed in this loop iteration: reported once, at
         * its end, with what they look like then (dbus_devices_changed()). */
        sd_event_source *changed_source;
        char (*changed)[16];
        size_t n_changed, n_changed_alloc;

        /* A device whose last PropertiesChanged is younger than
         * PROPERTIES_CHANGED_USEC waits (DeviceSnapshot.pending) for this
         * one timer, armed for the earliest due (timer_due_usec, 0: off). */
        sd_event_source *pending_timer;
        uint64_t timer_due_usec;
        size_t find_hint;               /* snapshot_find()'s last answer */
};

/* What sd_bus_path_encode() makes of a non-empty address, without its
 * allocations and formatting, into path (room for the prefix, 3 bytes per
 * byte of address and the NUL): every PropertiesChanged needs the path.
 * Everything but a-z, A-Z and (not first) 0-9 becomes _ and two lower-case
 * hex digits. */
static void device_path_write(const char *address, char *path) {
        static const char prefix[] = BROKER_DBUS_DEVICE_PREFIX "/", hex[] = "0123456789abcdef";
        char *t = mempcpy(path, prefix, sizeof(prefix) - 1);

        for (const char *f = address; *f; f++) {
                char c = *f;
                bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

                if (alpha || (f > address && c >= '0' && c <= '9'))
                        *t++ = c;
                else {
                        *t++ = '_';
                        *t++ = hex[((unsigned char) c) >> 4];
                        *t++ = hex[((unsigned char) c) & 15];
                }
        }
        *t = 0;
}

int dbus_device_path(const char *address, char **ret) {
        size_t n = strlen(address);
        char *path;

        if (n == 0)
                return sd_bus_path_encode(BROKER_DBUS_DEVICE_PREFIX, address, ret);
        path = malloc(sizeof(BROKER_DBUS_DEVICE_PREFIX "/") + 3 * n);
        if (!path)
                return -ENOMEM;
        device_path_write(address, path);
        *ret = path;
        return 0;
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

static int unhex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A device path's label decoded into buf without an allocation: every
 * property a PropertiesChanged carries looks its device up again. Only what
 * sd_bus_path_encode() makes of an address ("_30000_3a03_3a00_2e0": letters,
 * digits and "_xx"); false for anything else, which the full decoding
 * handles. */
static bool address_from_label(const char *label, char *buf, size_t size) {
        size_t n = 0;

        for (const char *p = label; *p; n++) {
                int hi, lo;

                if (n + 1 >= size)
                        return false;
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) {
                        buf[n] = *p++;
                        continue;
                }
                if (p[0] != '_' || (hi = unhex(p[1])) < 0 || (lo = unhex(p[2])) < 0)
                        return false;
                buf[n] = (char) (hi << 4 | lo);
                p += 3;
        }
        buf[n] = 0;
        return n > 0 && !strchr(buf, '/');
}

/* The device an object path names. Only the canonical address form has an
 * object, so that one device never shows up under two paths. */
static Device *device_from_path(Manager *m, const char *path) {
        static const char prefix[] = BROKER_DBUS_DEVICE_PREFIX "/";
        _cleanup_free_ char *decoded = NULL;
        const char *address;
        char buf[64];
        Device *d;

        if (path && strncmp(path, prefix, sizeof(prefix) - 1) == 0 &&
            address_from_label(path + sizeof(prefix) - 1, buf, sizeof(buf)))
                address = buf;
        else if (dbus_device_address_from_path(path, &decoded) >= 0)
                address = decoded;
        else
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

int dbus_append_ascii(sd_bus_message *m, const char *s) {
        size_t n = strlen(s);
        char *p;
        int r;

        r = sd_bus_message_append_string_space(m, n, &p);
        if (r < 0)
                return r;
        memcpy(p, s, n);
        return 0;
}

static int property_get_changing(sd_bus *bus, const char *path, const char *interface,
                                 const char *property, sd_bus_message *reply, void *userdata,
                                 sd_bus_error *error) {
        DbusDevices *dd = userdata;
        Device *d = DEVICE_OR_FAIL(dd, path, error);
        DeviceSnapshot s;

        for (unsigned p = 0; p < _PROPERTY_CHANGING_MAX; p++)
                if (streq(property, device_property_names[p])) {
                        device_snapshot_borrow(dd->manager, d, &s);
                        return device_snapshot_append_value(reply, &s, p);
                }
        return -EINVAL;
}

/* Whoever sent the message being answered, or NULL when we are not
 * answering anyone (a signal being built) or cannot tell who it is. */
static const Principal *current_viewer(DbusDevices *dd, sd_bus *bus) {
        Principal *p = NULL;
        sd_bus_message *m;
        uint64_t cookie = 0;
        const char *sender;

        m = sd_bus_get_current_message(bus);
        if (!m)
                return NULL;
        sender = sd_bus_message_get_sender(m);
        (void) sd_bus_message_get_cookie(m, &cookie);
        if (sender && cookie != 0 && cookie == dd->viewer_cookie && streq_ptr(sender, dd->viewer_sender))
                return dd->viewer;
        if (dbus_principal_from_message(m, &p) < 0)
                return NULL;
        /* Only the identity is needed to read properties; keep no fd. */
        p->pidfd = safe_close(p->pidfd);
        principal_free(dd->viewer);
        dd->viewer = p;
        dd->viewer_cookie = 0;
        if (sender && free_and_strdup(&dd->viewer_sender, sender) >= 0)
                dd->viewer_cookie = cookie;
        return p;
}

/* The holder as the caller may see it; all zero when hidden or not leased. */
static void visible_holder(DbusDevices *dd, sd_bus *bus, const Device *d, Holder *ret) {
        const Principal *viewer = current_viewer(dd, bus);

        *ret = (Holder) {};
        if (!viewer || !manager_device_holder(dd->manager, d, viewer, ret))
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

/* What the caller may do with the device (see the varlink Device type). */
static int property_get_access(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error) {
        DbusDevices *dd = userdata;
        Device *d = DEVICE_OR_FAIL(dd, path, error);
        const Principal *viewer = current_viewer(dd, bus);
        DeviceAccess a;
        int r;

        manager_device_access(dd->manager, d, viewer, &a);
        if (streq(property, "Access"))
                return sd_bus_message_append(reply, "s", strna(device_access_level_to_string(a.level)));
        if (streq(property, "ManagedAllowed"))
                return sd_bus_message_append(reply, "b", (int) a.managed);
        if (streq(property, "AccessReason"))
                return sd_bus_message_append(reply, "s", a.reason ?: "");
        if (streq(property, "PolkitAction"))
                return sd_bus_message_append(reply, "s", a.polkit_action ?: "");
        r = sd_bus_message_open_container(reply, 'a', "s");
        for (AcquireMode mode = 0; r >= 0 && mode < _ACQUIRE_MODE_MAX; mode++)
                if (a.modes & (1u << mode))
                        r = sd_bus_message_append(reply, "s", acquire_mode_to_string(mode));
        return r < 0 ? r : sd_bus_message_close_container(reply);
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
        CHANGING_PROPERTY("Driver", "s", property_get_changing),
        CHANGING_PROPERTY("IommuGroup", "i", property_get_changing),
        CHANGING_PROPERTY("GroupMembers", "as", property_get_changing),
        CHANGING_PROPERTY("VfioCdev", "s", property_get_changing),
        CHANGING_PROPERTY("IommuType", "s", property_get_changing),
        CHANGING_PROPERTY("IommuCapabilities", "t", property_get_changing),
        CHANGING_PROPERTY("NoIommu", "b", property_get_changing),
        CHANGING_PROPERTY("SriovVf", "b", property_get_changing),
        CHANGING_PROPERTY("State", "s", property_get_changing),
        CHANGING_PROPERTY("StateReason", "s", property_get_changing),
        PER_CALLER_PROPERTY("HolderSession", "t", property_get_holder),
        PER_CALLER_PROPERTY("HolderUid", "u", property_get_holder),
        PER_CALLER_PROPERTY("HolderPid", "u", property_get_holder),
        PER_CALLER_PROPERTY("HolderUnit", "s", property_get_holder),
        PER_CALLER_PROPERTY("Access", "s", property_get_access),
        PER_CALLER_PROPERTY("AllowedModes", "as", property_get_access),
        PER_CALLER_PROPERTY("ManagedAllowed", "b", property_get_access),
        PER_CALLER_PROPERTY("AccessReason", "s", property_get_access),
        PER_CALLER_PROPERTY("PolkitAction", "s", property_get_access),
        SD_BUS_VTABLE_END,
};

static int dbus_devices_remember_all(DbusDevices *dd);

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

        r = dbus_devices_remember_all(dd);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(dd);
        return 0;
}

DbusDevices *dbus_devices_free(DbusDevices *dd) {
        if (!dd)
                return NULL;
        sd_bus_slot_unref(dd->vtable_slot);
        sd_bus_slot_unref(dd->enumerator_slot);
        sd_event_source_disable_unref(dd->changed_source);
        sd_event_source_disable_unref(dd->pending_timer);
        free(dd->changed);
        free(dd->viewer_sender);
        principal_free(dd->viewer);
        for (size_t i = 0; i < dd->n_snapshots; i++)
                device_snapshot_done(&dd->snapshots[i]);
        free(dd->snapshots);
        sd_bus_unref(dd->bus);
        free(dd);
        return NULL;
}

/* --- PropertiesChanged with what changed --- */

/* The message sd_bus_emit_properties_changed_strv() sends, built without
 * its vtable lookups (per property, for each prefix of the fallback path,
 * with our find callback each time) and without looking the device up per
 * property: the changing ones with their values (from s, what the device
 * looks like now), then the per-caller ones as invalidated, in the order of
 * device_property_names. */
static int emit_properties_changed(DbusDevices *dd, const char *path, const DeviceSnapshot *s,
                                   PropertySet changed) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(dd->bus, &m, path, "org.freedesktop.DBus.Properties", "PropertiesChanged");
        if (r >= 0)
                r = dbus_append_ascii(m, BROKER_DBUS_DEVICE_INTERFACE);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (unsigned p = 0; r >= 0 && p < _PROPERTY_CHANGING_MAX; p++) {
                if (!(changed & PROPERTY_BIT(p)))
                        continue;
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = dbus_append_ascii(m, device_property_names[p]);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', device_property_signatures[p]);
                if (r >= 0)
                        r = device_snapshot_append_value(m, s, p);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        for (unsigned p = _PROPERTY_CHANGING_MAX; r >= 0 && p < _PROPERTY_MAX; p++)
                if (changed & PROPERTY_BIT(p))
                        r = dbus_append_ascii(m, device_property_names[p]);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_send(dd->bus, m, NULL);
        return r;
}

static size_t snapshot_lower_bound(DbusDevices *dd, const char *address) {
        size_t lo = 0, hi = dd->n_snapshots;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(dd->snapshots[mid].address, address) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Every change of a device looks it up (dbus_devices_changed()): a burst
 * changes one device over and over, so the last one found is tried first.
 * A stale hint (the array changed since) only fails its compare. */
static DeviceSnapshot *snapshot_find(DbusDevices *dd, const char *address) {
        size_t i = dd->find_hint;

        if (i < dd->n_snapshots && streq(dd->snapshots[i].address, address))
                return &dd->snapshots[i];
        i = snapshot_lower_bound(dd, address);
        if (i >= dd->n_snapshots || !streq(dd->snapshots[i].address, address))
                return NULL;
        dd->find_hint = i;
        return &dd->snapshots[i];
}

/* Store s (a stored copy) at i, replacing an entry for the same device. */
static int snapshot_store(DbusDevices *dd, size_t i, bool replace, DeviceSnapshot *s) {
        DeviceSnapshot *t;

        if (replace) {
                device_snapshot_done(&dd->snapshots[i]);
                dd->snapshots[i] = *s;
                return 0;
        }
        t = realloc(dd->snapshots, sizeof(DeviceSnapshot) * (dd->n_snapshots + 1));
        if (!t) {
                device_snapshot_done(s);
                return -ENOMEM;
        }
        dd->snapshots = t;
        memmove(t + i + 1, t + i, sizeof(DeviceSnapshot) * (dd->n_snapshots - i));
        t[i] = *s;
        dd->n_snapshots++;
        return 0;
}

void dbus_devices_forget(DbusDevices *dd, const char *address) {
        size_t i = snapshot_lower_bound(dd, address);

        if (i >= dd->n_snapshots || !streq(dd->snapshots[i].address, address))
                return;
        device_snapshot_done(&dd->snapshots[i]);
        memmove(dd->snapshots + i, dd->snapshots + i + 1, sizeof(DeviceSnapshot) * (dd->n_snapshots - i - 1));
        dd->n_snapshots--;
}

/* A stored copy of now, which knows its object path. */
static int snapshot_keep(const DeviceSnapshot *now, DeviceSnapshot *ret) {
        int r = device_snapshot_copy(now, ret);

        if (r >= 0 && *ret->address)    /* every device has one; sd_bus_path_encode() would make "/_" of "" */
                device_path_write(ret->address, ret->path);
        return r;
}

int dbus_devices_remember(DbusDevices *dd, const Device *d) {
        DeviceSnapshot borrowed, now;
        size_t i;
        int r;

        device_snapshot_borrow(dd->manager, d, &borrowed);
        r = snapshot_keep(&borrowed, &now);
        if (r < 0)
                return r;
        i = snapshot_lower_bound(dd, d->address);
        return snapshot_store(dd, i, i < dd->n_snapshots && streq(dd->snapshots[i].address, d->address), &now);
}

/* What a client that read the properties at start saw. */
static int dbus_devices_remember_all(DbusDevices *dd) {
        size_t n;
        Device *const *devices = inventory_devices(manager_inventory(dd->manager), &n);

        for (size_t i = 0; i < n; i++) {
                int r = dbus_devices_remember(dd, devices[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The loop's time: what the rate limit counts in. */
static uint64_t loop_now(DbusDevices *dd) {
        uint64_t now = 0;

        (void) sd_event_now(manager_event(dd->manager), CLOCK_MONOTONIC, &now);
        return now;
}

int dbus_devices_emit_changed(DbusDevices *dd, const char *address) {
        DeviceSnapshot now, *s;
        PropertySet changed;
        Device *d;
        size_t i;
        bool known;
        int r;

        d = inventory_find(manager_inventory(dd->manager), address);
        if (!d)
                return -ENOENT;
        device_snapshot_borrow(dd->manager, d, &now);
        i = snapshot_lower_bound(dd, d->address);
        known = i < dd->n_snapshots && streq(dd->snapshots[i].address, d->address);
        if (known)
                dd->snapshots[i].pending = false;       /* what it waited for goes out now, if anything */
        changed = device_snapshot_changed(known ? &dd->snapshots[i] : NULL, &now);
        if (known)
                r = device_snapshot_update(&dd->snapshots[i], &now, changed);
        else {
                DeviceSnapshot copy;

                r = snapshot_keep(&now, &copy);
                if (r >= 0)
                        r = snapshot_store(dd, i, false, &copy);
        }
        if (r < 0)
                return r;
        if (changed == 0)
                return 0;
        s = &dd->snapshots[i];
        if (!*s->path)
                return -ENOENT;         /* no device has no address */
        r = emit_properties_changed(dd, s->path, s, changed);
        if (r >= 0)
                s->signalled_usec = loop_now(dd);
        return r;
}

static void emit_changed_now(DbusDevices *dd, const char *address) {
        int r = dbus_devices_emit_changed(dd, address);

        /* A lease that ended because its device left has no object to report on. */
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "Cannot emit PropertiesChanged for %s: %s", address, strerror(-r));
}

static int on_pending_timer(sd_event_source *source, uint64_t usec, void *userdata);

/* Make the timer fire by due at the latest. */
static int pending_timer_arm(DbusDevices *dd, uint64_t due) {
        int r;

        if (dd->timer_due_usec != 0 && dd->timer_due_usec <= due)
                return 0;
        if (!dd->pending_timer) {
                r = sd_event_add_time(manager_event(dd->manager), &dd->pending_timer, CLOCK_MONOTONIC, due,
                                      PROPERTIES_CHANGED_ACCURACY_USEC, on_pending_timer, dd);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(dd->pending_timer, "dbus-properties-changed-timer");
        } else {
                r = sd_event_source_set_time(dd->pending_timer, due);
                if (r >= 0)
                        r = sd_event_source_set_enabled(dd->pending_timer, SD_EVENT_ONESHOT);
                if (r < 0)
                        return r;
        }
        dd->timer_due_usec = due;
        return 0;
}

/* Whether the device's change waits for the timer: its last
 * PropertiesChanged went out less than PROPERTIES_CHANGED_USEC ago. The
 * timer then sends what differs from that one, if anything. */
static bool changed_wait(DbusDevices *dd, const char *address, uint64_t now) {
        DeviceSnapshot *s = snapshot_find(dd, address);
        uint64_t due;

        if (!s || s->signalled_usec == 0)
                return false;
        due = s->signalled_usec + PROPERTIES_CHANGED_USEC;
        if (now >= due || pending_timer_arm(dd, due) < 0)
                return false;           /* without a timer, now rather than never */
        s->pending = true;
        return true;
}

/* Snapshot i's wait is over: what differs now goes out. The address is
 * copied, as an emission may store a snapshot and move the array. */
static void pending_emit(DbusDevices *dd, size_t i) {
        char address[sizeof(dd->snapshots[i].address)];

        memcpy(address, dd->snapshots[i].address, sizeof(address));
        dd->snapshots[i].pending = false;
        emit_changed_now(dd, address);
}

static int on_pending_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        DbusDevices *dd = userdata;
        uint64_t now = loop_now(dd), next = 0;

        dd->timer_due_usec = 0;
        for (size_t i = 0; i < dd->n_snapshots; i++) {
                uint64_t due = dd->snapshots[i].signalled_usec + PROPERTIES_CHANGED_USEC;

                if (!dd->snapshots[i].pending)
                        continue;
                if (now >= due)
                        pending_emit(dd, i);
                else if (next == 0 || due < next)
                        next = due;
        }
        if (next == 0 || pending_timer_arm(dd, next) >= 0)
                return 0;
        for (size_t i = 0; i < dd->n_snapshots; i++)
                if (dd->snapshots[i].pending)   /* without a timer, now rather than never */
                        pending_emit(dd, i);
        return 0;
}

static int on_changed(sd_event_source *s, void *userdata) {
        DbusDevices *dd = userdata;
        size_t n = dd->n_changed;

        dd->n_changed = 0;
        for (size_t i = 0; i < n; i++)
                emit_changed_now(dd, dd->changed[i]);
        return 0;
}

void dbus_devices_flush(DbusDevices *dd) {
        if (!dd || dd->n_changed == 0)
                return;
        /* The deferred source would cost a turn of the loop of its own. */
        (void) sd_event_source_set_enabled(dd->changed_source, SD_EVENT_OFF);
        (void) on_changed(dd->changed_source, dd);
}

static int changed_add(DbusDevices *dd, const char *address) {
        for (size_t i = 0; i < dd->n_changed; i++)
                if (streq(dd->changed[i], address))
                        return 0;
        if (dd->n_changed == dd->n_changed_alloc) {
                size_t n = dd->n_changed_alloc ? dd->n_changed_alloc * 2 : 4;
                char (*grown)[16] = realloc(dd->changed, n * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                dd->changed = grown;
                dd->n_changed_alloc = n;
        }
        memcpy(dd->changed[dd->n_changed++], address, strlen(address) + 1);
        return 0;
}

int dbus_devices_changed(DbusDevices *dd, const char *address) {
        int r;

        if (strlen(address) >= sizeof(dd->changed[0])) {
                emit_changed_now(dd, address);          /* no device has such an address */
                return 0;
        }
        /* Decided here rather than at the flush, in the same turn and so at
         * the same loop time: in a burst, a pending device costs a lookup,
         * not the list and the deferred source. A listed device is due:
         * whichever of the flush and the timer comes first sends it, and the
         * other finds nothing to send. */
        if (changed_wait(dd, address, loop_now(dd)))
                return 0;
        if (!dd->changed_source) {
                r = sd_event_add_defer(manager_event(dd->manager), &dd->changed_source, on_changed, dd);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(dd->changed_source, "dbus-properties-changed");
        }
        /* Armed with the first device of the iteration (an Acquire or
         * Release changes one several times): on_changed() empties the list. */
        if (dd->n_changed > 0)
                return changed_add(dd, address);
        r = changed_add(dd, address);
        if (r >= 0)
                r = sd_event_source_set_enabled(dd->changed_source, SD_EVENT_ONESHOT);
        if (r < 0)
                dd->n_changed = 0;      /* never reported: the next change arms it again */
        return r;
}

int dbus_devices_invalidate_access(DbusDevices *dd) {
        int ret = 0;

        for (size_t i = 0; i < dd->n_snapshots; i++) {
                _cleanup_free_ char *path = NULL;
                int r = dbus_device_path(dd->snapshots[i].address, &path);

                if (r >= 0)
                        r = sd_bus_emit_properties_changed_strv(dd->bus, path, BROKER_DBUS_DEVICE_INTERFACE,
                                                                (char **) device_property_names + PROPERTY_ACCESS);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}
