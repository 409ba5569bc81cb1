/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

#include "device.h"

/*
 * Moving devices between drivers through sysfs (driver_override, unbind,
 * drivers_probe), the same dance libvirt's managed='yes' does.
 */

/* Bind d to vfio-pci now. Synchronous: a host driver's unbind is bounded.
 * Returns 0 or negative errno. Re-read the device afterwards. */
int driver_bind_vfio(const Device *d);

typedef void (*DriverRestoreDone)(const char *address, int result, void *userdata);

/*
 * Give d back to original_driver (NULL: let the kernel pick) in a worker
 * process: vfio-pci's remove waits until every open device fd is closed, and
 * that wait must never stall the event loop. done() runs on the loop when
 * the worker exits, with 0 or a negative errno.
 */
int driver_restore_async(sd_event *event, const Device *d, const char *original_driver,
                         DriverRestoreDone done, void *userdata);

/* Tests only: use path instead of /sys/bus/pci for the bus-wide files
 * (drivers_probe, drivers/<drv>/bind). NULL restores the default. */
void driver_set_bus_path_for_test(const char *path);
