/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Side by side, in one run: the cost of the same broker calls over varlink and
 * over D-Bus, through libiommufd-broker. Prints per-call times and the ratio
 * D-Bus / varlink for each operation. Not a timed test: nothing fails on speed.
 *
 *   bench-transports VARLINK_SOCKET DBUS_ADDRESS DEVICE [ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "iommufd-broker.h"

typedef int (*Op)(iommufd_broker *b, const char *device);

static int op_list(iommufd_broker *b, const char *device) {
        iommufd_broker_device *devices = NULL;
        size_t n;
        int r = iommufd_broker_list(b, &devices, &n);
        free(devices);
        return r;
}

static int acquire_release(iommufd_broker *b, const char *device, iommufd_broker_mode mode) {
        iommufd_broker_lease *lease = NULL;
        int r = iommufd_broker_acquire(b, &device, 1, mode, 0, &lease);
        if (r < 0)
                return r;
        iommufd_broker_lease_free(lease);
        return iommufd_broker_release(b, NULL, 0);
}

static int op_attached(iommufd_broker *b, const char *device) {
        return acquire_release(b, device, IOMMUFD_BROKER_MODE_ATTACHED);
}

static int op_unbound(iommufd_broker *b, const char *device) {
        return acquire_release(b, device, IOMMUFD_BROKER_MODE_UNBOUND);
}

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Mean microseconds per call, or a negative errno. */
static double measure(iommufd_broker *b, Op op, const char *device, int iterations) {
        for (int i = 0; i < iterations / 10 + 1; i++) /* warm up */
                if (op(b, device) < 0)
                        return -1;
        double start = now_us();
        for (int i = 0; i < iterations; i++)
                if (op(b, device) < 0)
                        return -1;
        return (now_us() - start) / iterations;
}

int main(int argc, char *argv[]) {
        static const struct { const char *name; Op op; } ops[] = {
                { "ListDevices", op_list },
                { "Acquire+Release attached", op_attached },
                { "Acquire+Release unbound", op_unbound },
        };
        iommufd_broker *varlink = NULL, *dbus = NULL;
        int iterations;

        if (argc < 4) {
                fprintf(stderr, "usage: %s VARLINK_SOCKET DBUS_ADDRESS DEVICE [ITERATIONS]\n", argv[0]);
                return 2;
        }
        iterations = argc > 4 ? atoi(argv[4]) : 500;
        if (iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, argv[1], &varlink) < 0 ||
            iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_DBUS, argv[2], &dbus) < 0) {
                fprintf(stderr, "cannot connect to the broker\n");
                return 1;
        }

        printf("%-26s %12s %12s %14s\n", "operation", "varlink us", "D-Bus us", "D-Bus/varlink");
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                double v = measure(varlink, ops[i].op, argv[3], iterations);
                double d = measure(dbus, ops[i].op, argv[3], iterations);
                if (v < 0 || d < 0) {
                        fprintf(stderr, "%s failed: %s: %s\n", ops[i].name,
                                iommufd_broker_error_name(v < 0 ? varlink : dbus),
                                iommufd_broker_error_message(v < 0 ? varlink : dbus));
                        return 1;
                }
                printf("%-26s %12.1f %12.1f %14.2f\n", ops[i].name, v, d, d / v);
        }
        iommufd_broker_disconnect(varlink);
        iommufd_broker_disconnect(dbus);
        return 0;
}
