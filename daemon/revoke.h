/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "error.h"
#include "manager.h"
#include "polkit.h"

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

#define REVOKE_POLKIT_ACTION       "io.iommufd.broker.revoke"
#define REVOKE_DEFAULT_TIMEOUT_SEC 30
#define REVOKE_MAX_TIMEOUT_SEC     3600
/* Revokes one uid but root may wait on at once (both front ends; those
 * still asking polkit are POLKIT_MAX_PENDING_PER_UID's); more: LimitExceeded. */
#define REVOKE_MAX_PENDING_PER_UID 16

/*
 * One Revoke call as both front ends run it: root goes ahead at once;
 * anyone else first needs polkit action io.iommufd.broker.revoke, asked
 * asynchronously while the call stays pending (polkit NULL: no one but root).
 * bus_name: a D-Bus caller's unique name, which polkit is asked about; NULL
 * for varlink callers (unix-process, by pidfd). *ret is set before done can
 * run; done runs exactly once, perhaps before this returns, and the call is
 * gone after it, unless revoke_call_cancel() came first. A negative return
 * means nothing started and done is not called.
 */
typedef struct RevokeCall RevokeCall;
typedef struct RevokeRequest {
        const char *device;
        uint64_t timeout_usec;
        bool allow_interactive;
        const Principal *caller;
        const char *bus_name;
} RevokeRequest;

int revoke_call_start(Manager *m, PolkitClient *polkit, const RevokeRequest *req, RevokeDone done, void *userdata,
                      RevokeCall **ret);
/* The caller went away: polkit is told to stop asking, an authorized revoke
 * goes on without an answer. NULL is fine. */
RevokeCall *revoke_call_cancel(RevokeCall *c);
