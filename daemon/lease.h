/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The lease state machine. Core only (manager.c, session.c, lease-store.c). */

#include "audit.h"
#include "session.h"
#include "worker.h"

/*
 * A lease lasts from a successful Acquire until the kernel says the device
 * is free again, i.e. every fd handed out for it is closed:
 *
 *   leased     the holder is alive and has not released it;
 *   releasing  Release was called, the holder exited or its connection went
 *              away, but the device is still open somewhere;
 *   (ended)    the lease is freed; a managed device goes back to its driver.
 *
 * A device with a lease in any state is available to nobody else.
 */
typedef enum LeaseState {
        LEASE_STATE_LEASED,
        LEASE_STATE_RELEASING,
        _LEASE_STATE_MAX,
} LeaseState;

typedef struct SessionPin SessionPin;   /* core-internal.h */

const char *lease_state_to_string(LeaseState s);
LeaseState lease_state_from_string(const char *s);

struct Lease {
        Manager *manager;
        Session *session;               /* NULL once released, or when re-adopted after a restart */
        Device *device;
        char address[16];
        dev_t devnum;                   /* the vfio cdev handed out */
        LeaseState state;
        char *reason;                   /* why releasing ("released", "client-exited", ...) */
        AcquireMode mode;
        uint32_t dev_id;                /* in iommufd; 0 when unbound */
        uint32_t hwpt_id;

        /* The holder, kept past its session. */
        uint64_t session_id;
        uid_t uid;
        pid_t pid;
        uint64_t pid_starttime;         /* 0: not read yet */
        char *unit;
        int pidfd;                      /* the holder's (the pin's while pinned), -EBADF if none */
        sd_event_source *pidfd_source;  /* re-adopted leases only: a pin watches for its leases */
        SessionPin *pin;                /* NULL when re-adopted after a restart */

        /* The session's context (its pin's while pinned, else our own): once
         * every fd of a bound device is closed, the kernel drops dev_id from
         * it (IOMMU_GET_HW_INFO gives ENOENT). */
        int iommufd;

        char *rule;                     /* the policy rule that granted it, for the audit trail */
        bool managed;                   /* rebound to vfio-pci by us */
        char *original_driver;          /* NULL: none */
        char *original_override;        /* driver_override before us, NULL: none */

        int request_fd;                 /* eventfd vfio-pci signals on unplug/unbind */
        bool revoking;                  /* an admin asked for it back (Revoke) */
        bool revoke_unbound;            /* ... and vfio-pci is off the device now */
        sd_event_source *request_source;

        /* While releasing: poll with backoff, plus a /proc scan worker that
         * names who still holds it. */
        sd_event_source *check_timer;
        uint64_t check_interval_usec;
        Worker *scan;
        uint64_t last_scan_usec;
        uint64_t scan_interval_usec;
        unsigned unseen_scans;          /* scans in a row: no process holds it, yet bind is refused */
        char *held_by;                  /* "pid 123 (qemu-system-x86)" from the last scan */

        Lease *next;                    /* in the manager's list */
};

Lease *lease_free(Lease *l);

/* Start watching the holder's pidfd (on exit: releasing, "client-exited"). */
int lease_watch_holder(Lease *l);
/* Start watching the request eventfd vfio-pci signals when it wants the
 * device back (unplug, unbind, revoke): releasing, "unplug-requested". */
int lease_watch_request(Lease *l);

/* leased -> releasing (no-op if already releasing); checks at once whether
 * the device is already free, so the lease may be gone on return. */
void lease_release(Lease *l, const char *reason);

/* The end: unlink, persist, notify, give a managed device back once free. */
void lease_end(Lease *l, const char *reason);

/* Human summary of the state: "releasing (released): still open in pid 7
 * (qemu)"; the processes only if show_holder (root, or the holder's uid). */
int lease_describe(const Lease *l, bool show_holder, char *buf, size_t size);

/* What the audit trail says about l; borrows l's strings. */
AuditLease lease_audit_record(const Lease *l);

/* Check now whether a releasing lease's device is free (may end it). */
void lease_check_now(Lease *l);
