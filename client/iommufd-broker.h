/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libiommufd-broker: ask the iommufd broker for VFIO devices.
 *
 * A VMM running without privileges gets, in a few calls, an iommufd context
 * and the VFIO cdev fds of the devices it may use:
 *
 *     iommufd_broker *b;
 *     iommufd_broker_lease *l;
 *     const char *devs[] = { "0000:03:00.0" };
 *     if (iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, NULL, &b) < 0) ...
 *     if (iommufd_broker_acquire(b, devs, 1, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l) < 0)
 *             fprintf(stderr, "%s\n", iommufd_broker_error_message(b));
 *     ... use l->iommufd and l->devices[0].fd ...
 *     iommufd_broker_lease_free(l);      closes the fds you did not take
 *     iommufd_broker_disconnect(b);      ends every lease of this connection
 *
 * A lease lives as long as the connection (and the calling process). All
 * functions return 0 or a negative errno; after a failure the broker's typed
 * error is available from iommufd_broker_error_name()/_message().
 * A handle is not thread-safe; use one per thread.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct iommufd_broker iommufd_broker;

typedef enum iommufd_broker_transport {
        IOMMUFD_BROKER_TRANSPORT_VARLINK,       /* address: socket path; NULL: $IOMMUFD_BROKER_SOCKET or the default */
        IOMMUFD_BROKER_TRANSPORT_DBUS,          /* address: bus address; NULL: the system bus */
} iommufd_broker_transport;

typedef enum iommufd_broker_mode {
        IOMMUFD_BROKER_MODE_UNBOUND,            /* device fd + iommufd; you bind (QEMU, cloud-hypervisor) */
        IOMMUFD_BROKER_MODE_BOUND,              /* bound to the iommufd; dev_id valid */
        IOMMUFD_BROKER_MODE_ATTACHED,           /* bound and attached to an IOAS; dev_id, ioas_id, hwpt_id valid */
} iommufd_broker_mode;

/* "unbound", "bound", "attached"; NULL if out of range. */
const char *iommufd_broker_mode_to_string(iommufd_broker_mode mode);
/* The mode of a name, or -EINVAL. */
int iommufd_broker_mode_from_string(const char *s);

/* Flags for iommufd_broker_acquire(). */
#define IOMMUFD_BROKER_ACQUIRE_MANAGED     (1u << 0)  /* rebind to vfio-pci and back on release */
#define IOMMUFD_BROKER_ACQUIRE_INTERACTIVE (1u << 1)  /* polkit may ask the user */

/* Connect. Returns 0 or a negative errno. */
int iommufd_broker_connect(iommufd_broker_transport transport, const char *address, iommufd_broker **ret);

/* Close the connection; the broker then ends every lease it held. NULL is fine.
 * Close the lease fds you hold as well. */
void iommufd_broker_disconnect(iommufd_broker *b);

/* After a failed call: the broker's error name without interface prefix
 * ("DeviceBusy"), or a local one: "ConnectFailed", "Disconnected",
 * "ProtocolError", "InvalidArgument", "Timeout", "OutOfMemory",
 * "LocalError". Errors of the transport itself keep their full name
 * ("org.varlink.service.MethodNotFound", "org.freedesktop.DBus.Error.AccessDenied").
 * And a human message. Both NULL if the last call succeeded. Valid until the
 * next call on b. */
const char *iommufd_broker_error_name(const iommufd_broker *b);
const char *iommufd_broker_error_message(const iommufd_broker *b);

typedef struct iommufd_broker_device {
        char address[16];               /* "0000:03:00.0" */
        uint16_t vendor_id, device_id;
        uint16_t subsystem_vendor_id, subsystem_device_id;
        uint32_t class_code;
        char driver[64];                /* "" if none */
        int iommu_group;                /* -1 if none */
        char group_members[512];        /* space-separated addresses */
        char vfio_cdev[32];             /* "vfio0", "" if none */
        int noiommu, sriov_vf;
        char iommu_type[32];            /* "intel-vtd", "" if not known */
        uint64_t iommu_capabilities;
        char state[16];                 /* "available", "leased", "unavailable" */
        char reason[256];               /* why unavailable, "" otherwise */
        uint64_t holder_session;        /* 0 if not leased or not visible to you */
        uid_t holder_uid;
        pid_t holder_pid;
} iommufd_broker_device;

/* All devices; free *ret with free(). */
int iommufd_broker_list(iommufd_broker *b, iommufd_broker_device **ret, size_t *ret_n);
int iommufd_broker_get(iommufd_broker *b, const char *address, iommufd_broker_device *ret);

typedef struct iommufd_broker_lease_device {
        char address[16];
        int fd;                         /* the VFIO cdev; set to -1 if you take it */
        uint32_t dev_id;
        uint32_t hwpt_id;
} iommufd_broker_lease_device;

typedef struct iommufd_broker_lease {
        uint64_t session;
        int iommufd;                    /* set to -1 if you take it */
        uint32_t ioas_id;
        size_t n_devices;
        iommufd_broker_lease_device devices[];
} iommufd_broker_lease;

/* Lease devices, all or nothing. */
int iommufd_broker_acquire(iommufd_broker *b, const char *const *devices, size_t n_devices,
                           iommufd_broker_mode mode, unsigned flags, iommufd_broker_lease **ret);

/* The RLIMIT_MEMLOCK (soft and hard) the broker gave the calling process on
 * this acquire because policy says "memlock" (UINT64_MAX: unlimited); 0 if
 * policy set none and the limit was left as it was. */
uint64_t iommufd_broker_lease_memlock_limit(const iommufd_broker_lease *l);

/* Close the fds still in the lease and free it. NULL is fine. Does not
 * release the lease on the broker side: see iommufd_broker_release(). */
void iommufd_broker_lease_free(iommufd_broker_lease *l);

/* End leases; n_devices == 0 ends all of this connection's. */
int iommufd_broker_release(iommufd_broker *b, const char *const *devices, size_t n_devices);

/* Ask for a device leased to someone else back (root, or polkit action
 * io.iommufd.broker.revoke). Returns once the lease ended, or -ETIMEDOUT
 * with error RevokeTimeout naming the holder after timeout_sec (0: 30). */
int iommufd_broker_revoke(iommufd_broker *b, const char *device, unsigned timeout_sec);

typedef struct iommufd_broker_event {
        char type[32];                  /* "device-added", "device-removed", "device-changed",
                                           "lease-acquired", "lease-releasing", "lease-ended" */
        char address[16];
        uint64_t session;               /* lease events; on D-Bus only the holder's own
                                           leases name it (0 for everyone else's) */
        char reason[64];                /* lease-releasing and lease-ended: "released",
                                           "disconnected", "client-exited", "device-removed",
                                           "unplug-requested", "revoked" */
} iommufd_broker_event;

/* A fd to poll for POLLIN in your own loop; events start flowing with the
 * first call, which blocks until the broker confirmed the subscription, so
 * nothing that happens after it returns is missed. Owned by b. It is a
 * second connection to the broker: a lease is not tied to it. */
int iommufd_broker_event_fd(iommufd_broker *b);

/* Take the next event without blocking: 1 if *ret was filled, 0 if none is
 * pending, or a negative errno (-ECONNRESET: the broker went away).
 * Events may already be buffered when the fd is not readable: call this
 * until it returns 0 after iommufd_broker_event_fd() and after every
 * wake-up, then poll again. */
int iommufd_broker_next_event(iommufd_broker *b, iommufd_broker_event *ret);

#ifdef __cplusplus
}
#endif
