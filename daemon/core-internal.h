/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by manager.c and session.c only; front ends use manager.h and session.h. */

#include "session.h"

#include "lease-store.h"

/* A lease leaves its session when it starts releasing. */
void session_forget_lease(Session *s, Lease *l);

/* The session's iommufd and pidfd stay in the fd store (iommufd-<id>,
 * pidfd-<id>) while the session or any lease it made lives, so that a
 * client that acquires and releases again and again pushes them once, not
 * per lease. Each holds a reference; the last one removes them, unless the
 * daemon stops (the next start re-adopts them). */
#define SESSION_IDLE_REQUESTS 4

typedef struct SessionPin {
        unsigned n_ref;
        Manager *manager;
        uint64_t session_id;
        /* The session's iommufd context, opened on its first acquire: one
         * fd shared by the session and every lease it made (a releasing
         * lease polls it after the session is gone), closed with the pin. */
        int iommufd;
        /* The holder's pidfd (a copy: the principal goes with the session),
         * watched from the session's first lease on, once for all of them:
         * its exit releases every lease of the session still leased. */
        int pidfd;
        sd_event_source *holder_source;
        bool holder_exited;
        bool pushed;                    /* they went into the fd store */
        bool session_gone;
        uint64_t pid_starttime;         /* the holder's, once a lease record needed it; 0: not yet */
        /* Request eventfds of leases that ended while the session lives,
         * kept (and left in the fd store) for its next lease on the same
         * device: vfio-pci dropped them when the device's last fd closed.
         * Each stays in the loop's epoll set (its source has no lease
         * then and only drains it), so a next lease adds and removes
         * nothing there. */
        struct {
                char address[16];
                int fd;
                sd_event_source *source;        /* NULL if it was never watched */
        } idle[SESSION_IDLE_REQUESTS];
        size_t n_idle;
} SessionPin;

SessionPin *session_pin_ref(SessionPin *p);
SessionPin *session_pin_unref(SessionPin *p, bool remove_stored);
/* Watch the holder for a new lease of the session (see SessionPin.pidfd). */
int session_pin_watch_holder(SessionPin *p);
/* Keep fd (drained) and its source (NULL: none) for the session's next
 * lease of address: true if kept, false if the session is gone or keeps
 * enough (then both are still the caller's). */
bool session_pin_keep_request(SessionPin *p, const char *address, int fd, sd_event_source *source);

/* Every lease in any state, linked through Lease.next; d->lease points back. */
Lease *manager_leases(Manager *m);
void manager_link_lease(Manager *m, Lease *l);
void manager_unlink_lease(Manager *m, Lease *l);
LeaseStore *manager_lease_store(Manager *m);

/* Write l's record and put its fds into the fd store. */
int lease_persist(Lease *l);

/* The fds the service manager kept for us, by FDNAME. */
typedef struct StoredFdSet {
        int *fds;
        char **names;
        bool *used;
        size_t n;
} StoredFdSet;

/* On start: re-adopt the leases of the records, finish cut-short rebinds
 * and restores; the highest session id seen goes to *ret_max_session_id. */
int manager_adopt_leases(Manager *m, const StoredFdSet *set, uint64_t *ret_max_session_id);

/* A lease ended but its driver is not back yet (state "restoring"). */
int manager_record_restoring(Manager *m, const Device *d, const char *original_driver,
                             const char *original_override);

/* Before a managed rebind: record the way back (state "binding"). */
int manager_record_rebind(Manager *m, const Device *d, const char *original_driver, const char *original_override);

const KernelOps *manager_kernel(Manager *m);
unsigned manager_max_devices_per_session(Manager *m);
uint64_t manager_next_session_id(Manager *m);

bool manager_is_restoring(Manager *m, const char *address);
/* A managed rebind to vfio-pci runs for address (rebind.c): the device shows
 * busy, and Acquire refuses it with DeviceBusy. */
bool manager_is_rebinding(Manager *m, const char *address);
void manager_set_rebinding(Manager *m, const char *address, bool on);
/* Give d back to original_driver with original_override, in a worker; its
 * record says "restoring" until done. Call only once the device is free. */
void manager_restore_driver(Manager *m, Device *d, const char *original_driver, const char *original_override);

/* A member of d's group (other than d and also_requested) on a driver that
 * makes the group unusable through vfio, or NULL. */
const Device *manager_group_blocker(Manager *m, const Device *d, char *const *also_requested);

/* A lease held on any member of d's group by a session other than except. */
const Lease *manager_group_lease(Manager *m, const Device *d, const Session *except);
