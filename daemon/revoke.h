/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "error.h"
#include "manager.h"

typedef struct Revoke Revoke;

/* result 0 once the lease ended, or a negative errno with err filled
 * (RevokeTimeout naming the holder). Runs at most once. */
typedef void (*RevokeDone)(int result, const BrokerError *err, void *userdata);

/*
 * Ask for a leased device back (Revoke). The caller must already be
 * authorized (root, or polkit action io.iommufd.broker.revoke): the front end
 * decides, the core acts. done() runs when the lease ended or timeout_usec
 * passed; it may run before this returns. On error nothing started.
 * *ret (optional) lets the front end revoke_cancel() if its caller goes away;
 * the revoke itself goes on.
 */
int manager_revoke(Manager *m, const char *address, uid_t by_uid, uint64_t timeout_usec, RevokeDone done,
                   void *userdata, Revoke **ret, BrokerError *err);
void revoke_cancel(Revoke *r);

/* For lease_end(): the lease on address ended; finish its revokes. */
void revoke_lease_ended(Manager *m, const char *address);
