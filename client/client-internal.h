/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Internals of libiommufd-broker shared by the handle (client.c), the JSON
 * decoders (client-json.c) and the two transports. Nothing here is exported:
 * the version script keeps everything but iommufd_broker_* local.
 */

#include <jansson.h>

#include "iommufd-broker.h"
#include "util.h"

/* How long a method call may wait for its reply. Interactive polkit
 * authentication waits for a human, so it gets much longer. */
#define CLIENT_CALL_TIMEOUT_USEC             (25ULL * 1000 * 1000)
#define CLIENT_CALL_TIMEOUT_INTERACTIVE_USEC (300ULL * 1000 * 1000)

/* Largest reply a varlink transport accepts: a ListDevices of a big host. */
#define CLIENT_VARLINK_MAX_MESSAGE (16u * 1024 * 1024)

/* Local error names (remote ones are the broker's short names). */
#define CLIENT_ERROR_CONNECT_FAILED   "ConnectFailed"
#define CLIENT_ERROR_DISCONNECTED     "Disconnected"
#define CLIENT_ERROR_PROTOCOL         "ProtocolError"
#define CLIENT_ERROR_INVALID_ARGUMENT "InvalidArgument"
#define CLIENT_ERROR_TIMEOUT          "Timeout"
#define CLIENT_ERROR_NO_MEMORY        "OutOfMemory"
#define CLIENT_ERROR_LOCAL            "LocalError"

/* One transport: every method gets the handle and fills b's error on failure. */
typedef struct BrokerTransport {
        const char *name;
        int (*connect)(iommufd_broker *b, const char *address);
        void (*disconnect)(iommufd_broker *b);
        int (*list)(iommufd_broker *b, iommufd_broker_device **ret, size_t *ret_n);
        int (*get)(iommufd_broker *b, const char *address, iommufd_broker_device *ret);
        int (*acquire)(iommufd_broker *b, const char *const *devices, size_t n_devices,
                       iommufd_broker_mode mode, unsigned flags, iommufd_broker_lease **ret);
        int (*release)(iommufd_broker *b, const char *const *devices, size_t n_devices);
        int (*revoke)(iommufd_broker *b, const char *device, unsigned timeout_sec);
        int (*event_fd)(iommufd_broker *b);
        int (*next_event)(iommufd_broker *b, iommufd_broker_event *ret);
} BrokerTransport;

extern const BrokerTransport broker_transport_varlink;
extern const BrokerTransport broker_transport_dbus;

struct iommufd_broker {
        const BrokerTransport *transport;
        void *data;                     /* the transport's state */
        bool has_error;
        char error_name[128];
        char error_message[1024];
};

/* Record a failure and return r (a negative errno). */
int client_set_error(iommufd_broker *b, int r, const char *name, const char *fmt, ...) _printf_(4, 5);

/* Record an error the broker sent (full wire name, message may be NULL) and
 * return the errno that goes with it. */
int client_set_remote_error(iommufd_broker *b, const char *full_name, const char *message);

void client_clear_error(iommufd_broker *b);

/* "io.iommufd.Broker.DeviceBusy" and "io.iommufd.Broker1.Error.DeviceBusy"
 * give "DeviceBusy"; anything else (org.varlink.service.*, D-Bus's own
 * errors) is returned unchanged so it stays recognisable. */
const char *client_error_short_name(const char *full_name);

/* Negative errno for a short or foreign error name. */
int client_error_errno(const char *short_name);

/* A lease with room for n devices, every fd -1. Fields added after the
 * public struct was published live in a header before it, so the layout
 * callers compiled against never changes. */
iommufd_broker_lease *client_lease_new(size_t n_devices);

typedef struct ClientLeaseExtra {
        uint64_t memlock_limit;         /* see iommufd_broker_lease_memlock_limit() */
} ClientLeaseExtra;

ClientLeaseExtra *client_lease_extra(iommufd_broker_lease *l);

/* Copy s into buf (size bytes). -ENAMETOOLONG if it does not fit, unless
 * truncate is set. */
int client_copy_string(char *buf, size_t size, const char *s, bool truncate);

/* --- Decoding the varlink JSON shapes (client-json.c) --- */

/* A Device object into *ret. -EBADMSG if a field is missing or mistyped. */
int client_device_from_json(const json_t *v, iommufd_broker_device *ret);

/* Monitor reply parameters into *ret. */
int client_event_from_json(const json_t *params, iommufd_broker_event *ret);

/*
 * Acquire reply parameters into a lease. fds/n_fds are the descriptors that
 * came with the reply: the ones the lease uses are moved into it (set to
 * -EBADF in the array); the caller closes the rest. An index out of range or
 * used twice is -EBADMSG.
 */
int client_lease_from_json(const json_t *params, int *fds, size_t n_fds, iommufd_broker_lease **ret);

/* Message of a varlink error reply's parameters ("message", or what
 * org.varlink.service errors carry), written to buf. */
void client_error_message_from_json(const json_t *params, const char *fallback, char *buf, size_t size);
