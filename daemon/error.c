/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

int broker_error_errno(BrokerErrorCode code) {
        switch (code) {
        case BROKER_OK:                         return 0;
        case BROKER_ERROR_DEVICE_NOT_FOUND:     return -ENODEV;
        case BROKER_ERROR_DEVICE_BUSY:          return -EBUSY;
        case BROKER_ERROR_DEVICE_UNAVAILABLE:   return -ENXIO;
        case BROKER_ERROR_GROUP_NOT_VIABLE:     return -EBUSY;
        case BROKER_ERROR_PERMISSION_DENIED:    return -EPERM;
        case BROKER_ERROR_NOIOMMU_REFUSED:      return -EPERM;
        case BROKER_ERROR_INVALID_PARAMETER:    return -EINVAL;
        case BROKER_ERROR_KERNEL_UNSUPPORTED:   return -EOPNOTSUPP;
        case BROKER_ERROR_DRIVER_BIND_FAILED:   return -EIO;
        case BROKER_ERROR_NOT_HELD:             return -ENOENT;
        case BROKER_ERROR_LIMIT_EXCEEDED:       return -EUSERS;
        case BROKER_ERROR_KERNEL_ERROR:         return -EIO;
        default:                                return -EINVAL;
        }
}

int broker_error_set(BrokerError *e, BrokerErrorCode code, const char *device, const char *fmt, ...) {
        if (e) {
                va_list ap;

                e->code = code;
                snprintf(e->device, sizeof(e->device), "%s", device ?: "");
                va_start(ap, fmt);
                vsnprintf(e->message, sizeof(e->message), fmt, ap);
                va_end(ap);
        }
        return broker_error_errno(code);
}

void broker_error_ensure(BrokerError *e, int r, const char *device) {
        if (!e || e->code != BROKER_OK || r >= 0)
                return;
        if (device)
                broker_error_set(e, BROKER_ERROR_KERNEL_ERROR, device, "%s: %s", device, strerror(-r));
        else
                broker_error_set(e, BROKER_ERROR_KERNEL_ERROR, NULL, "internal error: %s", strerror(-r));
}
