/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

#include "device.h"

typedef struct Inventory Inventory;

typedef enum InventoryEvent {
        INVENTORY_DEVICE_ADDED,
        INVENTORY_DEVICE_CHANGED,       /* driver bound/unbound, cdev appeared, ... */
        INVENTORY_DEVICE_REMOVED,       /* called before the Device is freed */
} InventoryEvent;

typedef void (*InventoryHandler)(Inventory *inv, Device *d, InventoryEvent event, void *userdata);

/*
 * Enumerate PCI devices from /sys/bus/pci/devices and keep them current from a udev
 * monitor on the event loop (the kernel netlink source when udevd is not
 * running, as in a minimal VM).
 */
int inventory_new(Inventory **ret, sd_event *event, InventoryHandler handler, void *userdata);
Inventory *inventory_free(Inventory *inv);
DEFINE_TRIVIAL_CLEANUP_FUNC(Inventory *, inventory_free);

/* An inventory without udev, filled by inventory_add(); for unit tests. */
int inventory_new_static(Inventory **ret, InventoryHandler handler, void *userdata);
int inventory_add(Inventory *inv, Device *d); /* takes d */

/* Set the handler later (the manager creates the inventory before itself). */
void inventory_set_handler(Inventory *inv, InventoryHandler handler, void *userdata);

/* Look up by any accepted address form; NULL if unknown. */
Device *inventory_find(Inventory *inv, const char *address);

/* All devices sorted by address. The array is owned by the inventory and
 * valid until the next change. */
Device *const *inventory_devices(Inventory *inv, size_t *ret_n);

/* d's position in inventory_devices(), SIZE_MAX if it is not there. */
size_t inventory_index(Inventory *inv, const Device *d);

/* Re-read one device from sysfs now (after the broker rebinds a driver),
 * reporting CHANGED to the handler if anything moved. */
int inventory_refresh(Inventory *inv, Device *d);
