/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The public handle: argument checks, error bookkeeping and dispatch to the
 * transport chosen at connect time. Transports do the talking.
 */
#include <stdarg.h>
#include <stdio.h>

#include "broker-errors.h"
#include "client-internal.h"

int client_set_error(iommufd_broker *b, int r, const char *name, const char *fmt, ...) {
        va_list ap;

        if (!b)
                return r;
        b->has_error = true;
        snprintf(b->error_name, sizeof(b->error_name), "%s", name);
        va_start(ap, fmt);
        vsnprintf(b->error_message, sizeof(b->error_message), fmt, ap);
        va_end(ap);
        return r;
}

void client_clear_error(iommufd_broker *b) {
        b->has_error = false;
        b->error_name[0] = 0;
        b->error_message[0] = 0;
}

static const char *strip_prefix(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

const char *client_error_short_name(const char *full_name) {
        static const char *const prefixes[] = {
                BROKER_VARLINK_INTERFACE ".",
                BROKER_DBUS_ERROR_PREFIX,
        };

        if (!full_name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                const char *rest = strip_prefix(full_name, prefixes[i]);

                /* "io.iommufd.Broker.Foo.Bar" is not one of ours: keep it whole. */
                if (rest && *rest && !strchr(rest, '.'))
                        return rest;
        }
        return full_name;
}

int client_error_errno(const char *short_name) {
        static const struct {
                const char *name;
                int error;
        } foreign[] = {
                { "org.varlink.service.InterfaceNotFound",      -EOPNOTSUPP },
                { "org.varlink.service.MethodNotFound",         -EOPNOTSUPP },
                { "org.varlink.service.MethodNotImplemented",   -EOPNOTSUPP },
                { "org.varlink.service.InvalidParameter",       -EINVAL },
                { "org.varlink.service.PermissionDenied",       -EPERM },
                { "org.freedesktop.DBus.Error.AccessDenied",    -EACCES },
                { "org.freedesktop.DBus.Error.UnknownMethod",   -EOPNOTSUPP },
                { "org.freedesktop.DBus.Error.ServiceUnknown",  -EHOSTDOWN },
                { "org.freedesktop.DBus.Error.NoReply",         -ETIMEDOUT },
                { "org.freedesktop.DBus.Error.InvalidArgs",     -EINVAL },
        };
        BrokerErrorCode code;

        if (!short_name)
                return -EIO;
        code = broker_error_from_name(short_name);
        if (code != BROKER_OK)
                return broker_error_errno(code);
        for (size_t i = 0; i < ELEMENTSOF(foreign); i++)
                if (streq(foreign[i].name, short_name))
                        return foreign[i].error;
        return -EIO;
}

int client_set_remote_error(iommufd_broker *b, const char *full_name, const char *message) {
        const char *name = client_error_short_name(full_name) ?: CLIENT_ERROR_PROTOCOL;

        return client_set_error(b, client_error_errno(name), name, "%s", message && *message ? message : name);
}

int client_copy_string(char *buf, size_t size, const char *s, bool truncate) {
        size_t n = strlen(s);

        if (n >= size) {
                if (!truncate)
                        return -ENAMETOOLONG;
                n = size - 1;
        }
        memcpy(buf, s, n);
        buf[n] = 0;
        return 0;
}

/* The extra header keeps the public struct's alignment. */
#define LEASE_EXTRA_SIZE ((sizeof(ClientLeaseExtra) + 15) & ~(size_t) 15)

ClientLeaseExtra *client_lease_extra(iommufd_broker_lease *l) {
        return (ClientLeaseExtra *) (void *) ((char *) l - LEASE_EXTRA_SIZE);
}

iommufd_broker_lease *client_lease_new(size_t n_devices) {
        iommufd_broker_lease *l;
        char *base;

        base = calloc(1, LEASE_EXTRA_SIZE + sizeof(*l) + n_devices * sizeof(l->devices[0]));
        if (!base)
                return NULL;
        l = (iommufd_broker_lease *) (void *) (base + LEASE_EXTRA_SIZE);
        l->iommufd = -1;
        l->n_devices = n_devices;
        for (size_t i = 0; i < n_devices; i++)
                l->devices[i].fd = -1;
        return l;
}

/* --- Public API --- */

_public_ const char *iommufd_broker_mode_to_string(iommufd_broker_mode mode) {
        switch (mode) {
        case IOMMUFD_BROKER_MODE_UNBOUND:  return "unbound";
        case IOMMUFD_BROKER_MODE_BOUND:    return "bound";
        case IOMMUFD_BROKER_MODE_ATTACHED: return "attached";
        }
        return NULL;
}

_public_ int iommufd_broker_mode_from_string(const char *s) {
        for (int m = IOMMUFD_BROKER_MODE_UNBOUND; m <= IOMMUFD_BROKER_MODE_ATTACHED; m++)
                if (s && streq(s, iommufd_broker_mode_to_string((iommufd_broker_mode) m)))
                        return m;
        return -EINVAL;
}

_public_ int iommufd_broker_connect(iommufd_broker_transport transport, const char *address,
                                   iommufd_broker **ret) {
        iommufd_broker *b;
        int r;

        if (!ret)
                return -EINVAL;
        *ret = NULL;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        switch (transport) {
        case IOMMUFD_BROKER_TRANSPORT_VARLINK:
                b->transport = &broker_transport_varlink;
                break;
        case IOMMUFD_BROKER_TRANSPORT_DBUS:
                b->transport = &broker_transport_dbus;
                break;
        default:
                free(b);
                return -EINVAL;
        }

        r = b->transport->connect(b, address);
        if (r < 0) {
                /* The error text is lost with the handle: that is why a failed
                 * connect still hands back nothing. Callers log r. */
                free(b);
                return r;
        }
        *ret = b;
        return 0;
}

_public_ void iommufd_broker_disconnect(iommufd_broker *b) {
        if (!b)
                return;
        b->transport->disconnect(b);
        free(b);
}

_public_ const char *iommufd_broker_error_name(const iommufd_broker *b) {
        return b && b->has_error ? b->error_name : NULL;
}

_public_ const char *iommufd_broker_error_message(const iommufd_broker *b) {
        return b && b->has_error ? b->error_message : NULL;
}

_public_ int iommufd_broker_list(iommufd_broker *b, iommufd_broker_device **ret, size_t *ret_n) {
        if (!b)
                return -EINVAL;
        client_clear_error(b);
        if (!ret || !ret_n)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "ret and ret_n must not be NULL");
        return b->transport->list(b, ret, ret_n);
}

_public_ int iommufd_broker_get(iommufd_broker *b, const char *address, iommufd_broker_device *ret) {
        if (!b)
                return -EINVAL;
        client_clear_error(b);
        if (!address || !*address || !ret)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "a device address is required");
        return b->transport->get(b, address, ret);
}

static int check_device_list(iommufd_broker *b, const char *const *devices, size_t n_devices) {
        if (n_devices > 0 && !devices)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "devices is NULL");
        for (size_t i = 0; i < n_devices; i++)
                if (!devices[i] || !*devices[i])
                        return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT,
                                                "device %zu has no address", i);
        return 0;
}

_public_ int iommufd_broker_acquire(iommufd_broker *b, const char *const *devices, size_t n_devices,
                                   iommufd_broker_mode mode, unsigned flags, iommufd_broker_lease **ret) {
        const unsigned known = IOMMUFD_BROKER_ACQUIRE_MANAGED | IOMMUFD_BROKER_ACQUIRE_INTERACTIVE;
        int r;

        if (!b)
                return -EINVAL;
        client_clear_error(b);
        if (!ret)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "ret must not be NULL");
        *ret = NULL;
        if (n_devices == 0)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "no device to acquire");
        r = check_device_list(b, devices, n_devices);
        if (r < 0)
                return r;
        if (!iommufd_broker_mode_to_string(mode))
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "unknown mode %d", (int) mode);
        if (flags & ~known)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "unknown flags 0x%x", flags & ~known);
        return b->transport->acquire(b, devices, n_devices, mode, flags, ret);
}

_public_ void iommufd_broker_lease_free(iommufd_broker_lease *l) {
        if (!l)
                return;
        safe_close(l->iommufd);
        for (size_t i = 0; i < l->n_devices; i++)
                safe_close(l->devices[i].fd);
        free(client_lease_extra(l));
}

_public_ uint64_t iommufd_broker_lease_memlock_limit(const iommufd_broker_lease *l) {
        return l ? client_lease_extra((iommufd_broker_lease *) l)->memlock_limit : 0;
}

_public_ int iommufd_broker_release(iommufd_broker *b, const char *const *devices, size_t n_devices) {
        int r;

        if (!b)
                return -EINVAL;
        client_clear_error(b);
        r = check_device_list(b, devices, n_devices);
        if (r < 0)
                return r;
        return b->transport->release(b, devices, n_devices);
}

_public_ int iommufd_broker_revoke(iommufd_broker *b, const char *device, unsigned timeout_sec) {
        if (!b)
                return -EINVAL;
        client_clear_error(b);
        if (!device || !*device)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_LOCAL, "no device given");
        if (timeout_sec > 3600)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_LOCAL, "timeout of more than an hour");
        return b->transport->revoke(b, device, timeout_sec ?: 30);
}

_public_ int iommufd_broker_event_fd(iommufd_broker *b) {
        if (!b)
                return -EINVAL;
        client_clear_error(b);
        return b->transport->event_fd(b);
}

_public_ int iommufd_broker_next_event(iommufd_broker *b, iommufd_broker_event *ret) {
        if (!b)
                return -EINVAL;
        client_clear_error(b);
        if (!ret)
                return client_set_error(b, -EINVAL, CLIENT_ERROR_INVALID_ARGUMENT, "ret must not be NULL");
        return b->transport->next_event(b, ret);
}
