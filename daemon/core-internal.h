/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by manager.c and session.c only; front ends use manager.h and session.h. */

#include "session.h"

Session *lease_session(const Lease *l);

/* End a lease: notify, unlink from session and device, give a managed device
 * back to its driver unless it is going away. reason: see BrokerEvent. */
void lease_end(Lease *l, const char *reason);

const KernelOps *manager_kernel(Manager *m);
unsigned manager_max_devices_per_session(Manager *m);
uint64_t manager_next_session_id(Manager *m);

bool manager_is_restoring(Manager *m, const char *address);
void manager_restore_driver(Manager *m, Device *d, const char *original_driver);

/* A member of d's group (other than d and also_requested) on a driver that
 * makes the group unusable through vfio, or NULL. */
const Device *manager_group_blocker(Manager *m, const Device *d, char *const *also_requested);

/* A lease held on any member of d's group by a session other than except. */
const Lease *manager_group_lease(Manager *m, const Device *d, const Session *except);
