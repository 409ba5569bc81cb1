/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

#include "device-access.h"
#include "device.h"
#include "error.h"
#include "inventory.h"
#include "kernel.h"
#include "policy.h"
#include "polkit.h"
#include "principal.h"
#include "quota.h"

/*
 * The core that both front ends drive. It owns the inventory, the policy and
 * all sessions; front ends only decode a request, identify the peer, call in
 * here and encode the result.
 */
typedef struct Manager Manager;
typedef struct Session Session;

typedef struct ManagerConfig {
        const char *policy_path;        /* NULL: /etc/iommufd-broker/policy.json */
        const char *policy_dropin_dir;  /* NULL: /etc/iommufd-broker/policy.d */
        const KernelOps *kernel;        /* NULL: kernel_ops_real */
        unsigned max_devices_per_session; /* 0: 64 */
        Inventory *inventory;           /* taken if set (tests); else enumerated with udev */
        Policy *policy;                 /* taken if set (tests); else loaded from policy_path */
        const char *lease_dir;          /* lease records; NULL: none (leases die with the daemon) */
        int *stored_fds;                /* from the fd store, taken; names in stored_fd_names */
        char **stored_fd_names;
        size_t n_stored_fds;
        const char *polkit_bus_address; /* NULL: polkit on the system bus */
        uint64_t polkit_timeout_usec;   /* 0: POLKIT_DEFAULT_TIMEOUT_USEC */
        QuotaLimits quota;              /* clients per uid and in all; 0s: the defaults */
} ManagerConfig;

int manager_new(sd_event *event, const ManagerConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

sd_event *manager_event(Manager *m);
Inventory *manager_inventory(Manager *m);
const Policy *manager_policy(Manager *m);
/* Where front ends ask polkit (acquire-job.h). */
PolkitClient *manager_polkit(Manager *m);
/* The one account of varlink connections and D-Bus sessions per uid and in
 * all, which both front ends charge (quota.h). */
Quota *manager_quota(Manager *m);

/* Stop: from now on a session that goes away leaves its leases as they are
 * (records and fd store keep them for the next start). */
void manager_begin_shutdown(Manager *m);
bool manager_is_shutting_down(Manager *m);

/* Re-read the policy (SIGHUP). On error the old policy stays. */
int manager_reload_policy(Manager *m);
/* Called once a reload has put a new policy in place, so that per-caller
 * views (the D-Bus Access properties) can be announced as stale. One
 * handler; NULL removes it. */
typedef void (*PolicyReloadHandler)(Manager *m, void *userdata);
void manager_set_policy_reload_handler(Manager *m, PolicyReloadHandler handler, void *userdata);

/* --- Events, for varlink Monitor and D-Bus signals --- */

typedef enum BrokerEventType {
        BROKER_EVENT_DEVICE_ADDED,
        BROKER_EVENT_DEVICE_REMOVED,    /* device is NULL */
        BROKER_EVENT_DEVICE_CHANGED,    /* driver, state, ... */
        BROKER_EVENT_LEASE_ACQUIRED,
        BROKER_EVENT_LEASE_ENDED,       /* reason: "released", "disconnected", "client-exited", "device-removed", "unplug-requested", "revoked" */
        BROKER_EVENT_LEASE_RELEASING,   /* the lease waits for its fds to close; reason as for LEASE_ENDED */
        _BROKER_EVENT_MAX,
} BrokerEventType;

typedef struct BrokerEvent {
        BrokerEventType type;
        const char *address;
        const Device *device;           /* NULL once removed */
        uint64_t session_id;            /* lease events: the holder's session */
        uid_t holder_uid;               /* lease events */
        const char *reason;             /* lease-ended reason, NULL otherwise */
} BrokerEvent;

const char *broker_event_type_to_string(BrokerEventType t); /* "device-added", "lease-ended", ... */

typedef void (*BrokerEventHandler)(Manager *m, const BrokerEvent *event, void *userdata);
typedef struct Subscription Subscription;

int manager_subscribe(Manager *m, BrokerEventHandler handler, void *userdata, Subscription **ret);
Subscription *subscription_free(Subscription *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Subscription *, subscription_free);

/* For the core itself: deliver to every subscriber. */
void manager_emit(Manager *m, const BrokerEvent *event);

/* Between hold and release (they nest), events still invalidate what they
 * concern at once, but reach subscribers only at the last release, in order:
 * an Acquire's signals and Monitor events go out after its reply. */
void manager_hold_events(Manager *m);
void manager_release_events(Manager *m);

/* Called after the last release has delivered what it held (the end of a
 * call's events): a subscriber that batches its output sends it then, not
 * in another turn of the loop. One handler; NULL removes it. */
typedef void (*EventsDoneHandler)(Manager *m, void *userdata);
void manager_set_events_done(Manager *m, EventsDoneHandler handler, void *userdata);

/* --- What front ends show about a device --- */

typedef enum DeviceState {
        DEVICE_STATE_AVAILABLE,
        DEVICE_STATE_LEASED,            /* reason: who holds it */
        DEVICE_STATE_RELEASING,         /* released or holder gone, still open somewhere; reason: by whom */
        DEVICE_STATE_BUSY,              /* a driver rebind or restore is running */
        DEVICE_STATE_UNAVAILABLE,
        _DEVICE_STATE_MAX,
} DeviceState;

const char *device_state_to_string(DeviceState s);

/* State, and a human reason in *ret_reason (static or owned by the manager,
 * valid until the next call): for LEASED and RELEASING the lease's state
 * and who still holds the device, for BUSY and UNAVAILABLE why, for
 * AVAILABLE whether it needs managed acquire. */
DeviceState manager_device_state(Manager *m, const Device *d, const char **ret_reason);

typedef struct Holder {
        uint64_t session_id;
        uid_t uid;
        pid_t pid;
        const char *unit;               /* may be NULL */
} Holder;

/* Whether d is leased and viewer may see who holds it (root, or the holder's uid). */
bool manager_device_holder(Manager *m, const Device *d, const Principal *viewer, Holder *ret);

/* The lease on d, in any state, for GetDevice/ListDevices/properties/Monitor:
 * state "leased" or "releasing"; reason why it is releasing ("released",
 * "client-exited", "disconnected", "unplug-requested", "revoked"), NULL while
 * leased; held_by the processes that still have it open ("pid 7 (qemu)"),
 * NULL if unknown or if viewer (NULL: anyone) may not see the holder.
 * Strings are owned by the lease: valid until the next loop iteration.
 * False if d has no lease. */
typedef struct LeaseInfo {
        const char *state;
        const char *reason;
        const char *held_by;
} LeaseInfo;

bool manager_device_lease_info(Manager *m, const Device *d, const Principal *viewer, LeaseInfo *ret);

/* Resolve a client-supplied address: DeviceNotFound or InvalidParameter on failure. */
int manager_get_device(Manager *m, const char *address, Device **ret, BrokerError *err);

/* What policy lets viewer do with d (root: what the rules give root, which
 * without a rule is everything). Cached per principal; strings valid until the
 * next policy or inventory change. _at: d is inventory_devices()[index]. */
void manager_device_access(Manager *m, const Device *d, const Principal *viewer, DeviceAccess *ret);
void manager_device_access_at(Manager *m, const Device *d, size_t index, const Principal *viewer,
                              DeviceAccess *ret);

/* Why no device can be acquired on this host (no /dev/iommu, ...), or NULL.
 * Decided at start and on changes, not per call. */
const char *manager_kernel_unsupported_reason(Manager *m);
