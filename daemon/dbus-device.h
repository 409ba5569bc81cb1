/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

/*
 * The io.iommufd.Broker1.Device objects: one per inventory device under
 * /io/iommufd/Broker1/device/<sd_bus_path_encode'd address>, served by a
 * fallback vtable so that they follow the inventory without registration.
 */
typedef struct DbusDevices DbusDevices;

/* Register the fallback vtable and node enumerator on bus. */
int dbus_devices_new(sd_bus *bus, Manager *m, DbusDevices **ret);
DbusDevices *dbus_devices_free(DbusDevices *dd);
DEFINE_TRIVIAL_CLEANUP_FUNC(DbusDevices *, dbus_devices_free);

/* Append string s, which must be ASCII (our own names: interface, property
 * and state names; a device address, normalized to "dddd:bb:dd.f"), without
 * the UTF-8 check sd_bus_message_append_basic() makes of every string, a
 * third of its cost. Anything else, from sysfs or a client, must go through
 * the check: invalid UTF-8 gets the connection dropped by the bus. */
int dbus_append_ascii(sd_bus_message *m, const char *s);

/* Object path of a device address ("0000:03:00.0"). Caller frees. */
int dbus_device_path(const char *address, char **ret);

/* Address of a device object path, or -ENXIO if path is not one. Caller frees. */
int dbus_device_address_from_path(const char *path, char **ret);

/* PropertiesChanged naming only the properties that changed since the last
 * one for this device (all of them the first time), now, whatever the rate
 * limit says; the per-caller holder and access properties are only
 * invalidated. -ENOENT if the device is gone. */
int dbus_devices_emit_changed(DbusDevices *dd, const char *address);
/* The device at address changed: one dbus_devices_emit_changed() for it at
 * the end of this loop iteration, however often it changed meanwhile. An
 * Acquire or Release changes a device several times in one go (a Release
 * whose device is free already goes leased, releasing, available); a
 * client could never read the states in between, so it is told the result,
 * once, instead of each step (one message, one snapshot per device).
 * Rate-limited per device: if its last PropertiesChanged went out less than
 * 5 ms (VARLINK_STREAM_FLUSH_USEC) ago, one timer sends, 5 ms after that
 * one, what differs by then (nothing if it changed back). */
int dbus_devices_changed(DbusDevices *dd, const char *address);
/* Sends what dbus_devices_changed() collected now, not at the next turn
 * (devices waiting for the rate limit's timer are not collected). */
void dbus_devices_flush(DbusDevices *dd);
/* PropertiesChanged invalidating every device's per-caller access
 * properties: after a policy reload, each caller must read its own again. */
int dbus_devices_invalidate_access(DbusDevices *dd);

/* Note what a new device looks like (InterfacesAdded carries it all). */
int dbus_devices_remember(DbusDevices *dd, const Device *d);

/* The device is gone: forget what was last said of it. */
void dbus_devices_forget(DbusDevices *dd, const char *address);
