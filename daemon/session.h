/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "manager.h"

/*
 * A session is one client connection (a varlink connection, a D-Bus sender).
 * It owns at most one iommufd context, shared by all its devices, and its
 * leases. session_destroy() is the one place that releases all of it.
 * The session also watches the peer's pidfd: when the process dies its
 * leases end even if the connection lingers.
 */

int session_new(Manager *m, Principal *principal, Session **ret); /* takes principal */
void session_destroy(Session *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Session *, session_destroy);

uint64_t session_id(const Session *s);
const Principal *session_principal(const Session *s);
size_t session_n_leases(const Session *s);

/* A device acquire-job.c moved to vfio-pci for this Acquire, and where it
 * came from (NULL: no driver / no driver_override). */
typedef struct ManagedOrigin {
        const char *address;
        const char *driver;
        const char *override;
} ManagedOrigin;

typedef struct AcquireRequest {
        char **devices;                 /* addresses, any accepted form, NULL-terminated */
        AcquireMode mode;
        bool managed;                   /* rebind to vfio-pci and back, if policy allows */
        bool allow_interactive;         /* polkit may ask the user */
        char **polkit_authorized;       /* polkit actions polkit allowed this caller (acquire-job.h) */
        const ManagedOrigin *rebound;   /* set by acquire-job.c only: devices it rebound */
        size_t n_rebound;
} AcquireRequest;

typedef struct AcquiredDevice {
        char address[16];
        int fd;                         /* the device cdev; unbound in ACQUIRE_MODE_UNBOUND */
        uint32_t dev_id;                /* 0 when unbound */
        uint32_t hwpt_id;               /* 0 unless attached */
} AcquiredDevice;

typedef struct AcquireReply {
        uint64_t session_id;
        int iommufd;                    /* the session's context, borrowed: send it before the
                                         * loop runs again (the kernel or sd-bus makes the copy) */
        uint32_t ioas_id;               /* 0 unless attached */
        uint64_t memlock_limit;         /* the client's RLIMIT_MEMLOCK after policy raised it (MEMLOCK_UNLIMITED
                                         * for unlimited); 0: no rule asked, the limit was left alone */
        size_t n_devices;
        AcquiredDevice *devices;
} AcquireReply;

/*
 * All or nothing, and never blocking: a managed device must already be on
 * vfio-pci (acquire-job.c rebinds it first, in a worker, and names it in
 * req->rebound so that the lease gives it back). Either every device is
 * leased to s and *ret holds fds the caller must send and then release with
 * acquire_reply_done(), or nothing
 * changed and err says which device failed and why. The broker keeps no
 * copy of device fds: the kernel unbinds a device when the last copy closes.
 */
int session_acquire(Session *s, const AcquireRequest *req, AcquireReply *ret, BrokerError *err);

/* The checks of session_acquire() that need no kernel call, for a managed
 * Acquire to pass before any host driver is unbound. 0 or a negative errno
 * with err set. */
int session_check_acquire(Session *s, const AcquireRequest *req, BrokerError *err);
void acquire_reply_done(AcquireReply *r);

/* Release the leases on the given devices (NULL or empty: all of this
 * session's). Each goes to releasing and ends once the kernel says the
 * device is free. NotHeld if one is not ours. */
int session_release(Session *s, char **devices, BrokerError *err);
