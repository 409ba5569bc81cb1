/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "manager.h"
#include "session.h"

/*
 * One device's move to vfio-pci for a managed Acquire (acquire-job.c), off
 * the loop: the way back is recorded first (a crash mid-rebind is undone on
 * the next start), the device shows busy ("rebinding to vfio-pci") until the
 * caller keeps it or gives it back, and the unbind, probe and wait for the
 * cdev run in a worker with a timeout.
 *
 * Giving back never races the worker: the restore starts once the worker
 * process is gone, killed if it was still running (a timeout, the client
 * left), and the device stays busy until then.
 */
typedef struct Rebind Rebind;

/* 0: d is on vfio-pci with its cdev (re-read); else a negative errno,
 * -ETIMEDOUT after driver_bind_timeout_usec(). Called at most once. */
typedef void (*RebindDone)(Rebind *rb, int result, void *userdata);

int rebind_start(Manager *m, Device *d, RebindDone done, void *userdata, Rebind **ret);

const char *rebind_address(const Rebind *rb);
/* Where the device came from, for the lease (strings owned by rb). */
void rebind_origin(const Rebind *rb, ManagedOrigin *ret);

/* No longer shown busy: the caller acquires the device in this loop turn. */
void rebind_unmark(Rebind *rb);

/* The caller is done with rb, which is freed (now or once the worker is
 * gone): _keep leaves the device on vfio-pci (a lease took it over),
 * _give_back kills the worker if it still runs and then restores the
 * original driver and driver_override. NULL is fine; both return NULL. */
Rebind *rebind_keep(Rebind *rb);
Rebind *rebind_give_back(Rebind *rb);
