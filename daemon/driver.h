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
 * Give d back exactly as it was: driver_override to original_override
 * (NULL: cleared) and bound to original_driver (NULL: left without a
 * driver), in a worker process with a timeout. Call only once every fd of
 * the device is closed: vfio-pci's unbind otherwise waits, uninterruptibly,
 * for the holder. done() runs on the loop with 0 or a negative errno.
 */
int driver_restore_async(sd_event *event, const Device *d, const char *original_driver,
                         const char *original_override, DriverRestoreDone done, void *userdata);

/* d's driver_override into *ret (NULL if none set). */
int driver_read_override(const Device *d, char **ret);

/* How many VFs an SR-IOV PF has enabled (0 if not a PF), or negative errno. */
int driver_sriov_numvfs(const Device *d);

/* Tests only: use path instead of /sys/bus/pci for the bus-wide files
 * (drivers_probe, drivers/<drv>/bind). NULL restores the default. */
void driver_set_bus_path_for_test(const char *path);
