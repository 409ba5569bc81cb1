/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stddef.h>

/*
 * The single list of typed errors. The varlink front end names them
 * "io.iommufd.Broker.<Name>", the D-Bus front end "io.iommufd.Broker1.Error.<Name>".
 * Every one carries the device it concerns (if any) and a human message, and
 * maps to the errno that C callers of the core and of the client library get.
 * tests/test-protocol.c fails if the IDL or the D-Bus XML disagrees with this list.
 */
#define BROKER_ERRORS(X)                                                \
        X(DEVICE_NOT_FOUND,       "DeviceNotFound",     ENODEV)         \
        X(DEVICE_BUSY,            "DeviceBusy",         EBUSY)          \
        X(DEVICE_UNAVAILABLE,     "DeviceUnavailable",  ENXIO)          \
        X(GROUP_NOT_VIABLE,       "GroupNotViable",     EBUSY)          \
        X(PERMISSION_DENIED,      "PermissionDenied",   EPERM)          \
        X(NOIOMMU_REFUSED,        "NoIommuRefused",     EPERM)          \
        X(INVALID_PARAMETER,      "InvalidParameter",   EINVAL)         \
        X(KERNEL_UNSUPPORTED,     "KernelUnsupported",  EOPNOTSUPP)     \
        X(DRIVER_BIND_FAILED,     "DriverBindFailed",   EIO)            \
        X(NOT_HELD,               "NotHeld",            ENOENT)         \
        X(LIMIT_EXCEEDED,         "LimitExceeded",      EUSERS)         \
        X(KERNEL_ERROR,           "KernelError",        EIO)            \
        X(INTERACTIVE_AUTHORIZATION_REQUIRED, "InteractiveAuthorizationRequired", EACCES) \
        X(AUTHORIZATION_UNAVAILABLE, "AuthorizationUnavailable", EHOSTDOWN) \
        X(REVOKE_TIMEOUT,         "RevokeTimeout",      ETIMEDOUT)

typedef enum BrokerErrorCode {
        BROKER_OK = 0,
#define BROKER_ERROR_ENUM(id, name, errno_value) BROKER_ERROR_##id,
        BROKER_ERRORS(BROKER_ERROR_ENUM)
#undef BROKER_ERROR_ENUM
        _BROKER_ERROR_MAX,
} BrokerErrorCode;

#define BROKER_VARLINK_INTERFACE "io.iommufd.Broker"
#define BROKER_DBUS_NAME         "io.iommufd.Broker1"
#define BROKER_DBUS_PATH         "/io/iommufd/Broker1"
#define BROKER_DBUS_INTERFACE    "io.iommufd.Broker1"
#define BROKER_DBUS_DEVICE_INTERFACE "io.iommufd.Broker1.Device"
#define BROKER_DBUS_DEVICE_PREFIX "/io/iommufd/Broker1/device"
#define BROKER_DBUS_ERROR_PREFIX "io.iommufd.Broker1.Error."
#define BROKER_DEFAULT_SOCKET    "/run/iommufd-broker/io.iommufd.Broker"

/* Short name ("DeviceBusy") of a code, NULL for BROKER_OK or out of range. */
static inline const char *broker_error_name(BrokerErrorCode code) {
        static const char *const names[_BROKER_ERROR_MAX] = {
#define BROKER_ERROR_NAME(id, name, errno_value) [BROKER_ERROR_##id] = name,
                BROKER_ERRORS(BROKER_ERROR_NAME)
#undef BROKER_ERROR_NAME
        };
        if (code <= BROKER_OK || code >= _BROKER_ERROR_MAX)
                return NULL;
        return names[code];
}

/* Code of a short name, or BROKER_OK if unknown. */
static inline BrokerErrorCode broker_error_from_name(const char *name) {
        if (!name)
                return BROKER_OK;
        for (int c = BROKER_OK + 1; c < _BROKER_ERROR_MAX; c++) {
                const char *n = broker_error_name((BrokerErrorCode) c);
                const char *a = n, *b = name;
                while (*a && *a == *b)
                        a++, b++;
                if (*a == 0 && *b == 0)
                        return (BrokerErrorCode) c;
        }
        return BROKER_OK;
}

/* The negative errno that goes with a code: 0 for BROKER_OK, -EIO if unknown. */
static inline int broker_error_errno(BrokerErrorCode code) {
        switch (code) {
        case BROKER_OK:
                return 0;
#define BROKER_ERROR_ERRNO(id, name, errno_value) case BROKER_ERROR_##id: return -(errno_value);
        BROKER_ERRORS(BROKER_ERROR_ERRNO)
#undef BROKER_ERROR_ERRNO
        default:
                return -EIO;
        }
}
