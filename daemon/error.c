/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

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
