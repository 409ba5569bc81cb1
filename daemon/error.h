/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "broker-errors.h"
#include "util.h"

/*
 * A typed error from the core, turned into a wire error by a front end.
 * Core functions return a negative errno and, when the failure is the client's
 * business, also fill a BrokerError. A front end that gets r < 0 with
 * code == BROKER_OK reports KernelError with strerror(-r).
 */
typedef struct BrokerError {
        BrokerErrorCode code;
        char device[32];        /* the device concerned, "" if none */
        char message[512];      /* says which device and why */
} BrokerError;

/* Fill *e (if not NULL) and return the negative errno that goes with the code. */
int broker_error_set(BrokerError *e, BrokerErrorCode code, const char *device, const char *fmt, ...)
        _printf_(4, 5);

/* Make sure *e carries a code after a failure r < 0: keeps an existing one,
 * else KernelError with strerror(-r). */
void broker_error_ensure(BrokerError *e, int r, const char *device);
