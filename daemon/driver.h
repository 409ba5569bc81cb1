/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

#include "device.h"
#include "worker.h"

/*
 * Moving devices between drivers through sysfs (driver_override, unbind,
 * drivers_probe), the same dance libvirt's managed='yes' does.
 */

/*
 * Bind d to vfio-pci in a worker process (worker.h): driver_override=vfio-pci,
 * unbind the current driver (a GPU's, NVMe's or mlx5's remove() can take
 * seconds or hang), drivers_probe, wait for the vfio cdev. done() gets 0 or a
 * negative errno, -ETIMEDOUT after driver_bind_timeout_usec(). Nothing is
 * undone on failure: the caller restores the device with
 * driver_restore_async() once the worker is gone (worker_set_gone()), so the
 * two never race. Re-read the device afterwards.
 */
int driver_bind_vfio_async(sd_event *event, const Device *d, WorkerDone done, void *userdata, Worker **ret);
uint64_t driver_bind_timeout_usec(void);
/* How long a restore worker may take (60 s; a test hook shortens it). */
uint64_t driver_restore_timeout_usec(void);

/* Read the test hooks from the daemon's environment, once at start:
 * IOMMUFD_BROKER_TEST_REBIND_DELAY_MS (the bind worker sleeps this long
 * between unbind and probe), IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS (the
 * bind timeout instead of 15 s) and IOMMUFD_BROKER_TEST_RESTORE_TIMEOUT_MS
 * (the restore timeout instead of 60 s). Only root sets the daemon's
 * environment. */
void driver_load_test_environment(void);

typedef void (*DriverRestoreDone)(const char *address, int result, void *userdata);

/*
 * Give d back exactly as it was: driver_override to original_override
 * (NULL: cleared) and bound to original_driver (NULL: left without a
 * driver), in a worker process with a timeout. Call only once every fd of
 * the device is closed: vfio-pci's unbind otherwise waits, uninterruptibly,
 * for the holder. A worker that times out there is not the end: once it is
 * gone (the unbind returned: the last fd closed) the restore starts again,
 * and done() runs only then. done() runs on the loop with 0 or a negative
 * errno; not at all if the daemon stops first (the record restores).
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
