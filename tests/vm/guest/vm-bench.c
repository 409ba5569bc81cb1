/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VM tier's fast-path ratios (issue: fast path): on the real kernel, what
 * the broker's Acquire (attached) costs over varlink and over D-Bus, against
 * doing the same open of /dev/iommu, open of the cdev, bind, IOAS alloc and
 * attach directly, in the same VM. Medians over RUNS runs each, printed as
 * ratios; not asserted as timings (TCG timing says little), only that every
 * run worked. Run as root by run-suite.sh with the broker up.
 *
 * Each transport's floor is printed beside them: the median round trip of a
 * call that does next to nothing, on a connection already open. Under TCG
 * waking a process on an idle vCPU costs about a millisecond, so a round
 * trip alone is a good part of "direct", and what the broker itself adds is
 * the Acquire less direct less its transport's floor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "iommufd-broker.h"
#include "vmtest.h"

#define RUNS 51

static char edu[16];

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_u64);
        return v[n / 2];
}

static uint64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* The same work the broker does for an attached acquire in a new session. */
static uint64_t direct_once(void) {
        uint32_t dev_id, ioas_id, hwpt_id;
        uint64_t t0 = now_us(), t;
        int iommufd = iommufd_open_rlimit();
        CHECK(iommufd >= 0, "open /dev/iommu: %s", strerror(-iommufd));
        int devfd = vfio_cdev_open(edu);
        CHECK(devfd >= 0, "open the cdev of %s: %s", edu, strerror(-devfd));
        CHECK_OK(vfio_bind(devfd, iommufd, &dev_id), "VFIO_DEVICE_BIND_IOMMUFD");
        CHECK_OK(ioas_alloc(iommufd, &ioas_id), "IOMMU_IOAS_ALLOC");
        CHECK_OK(vfio_attach(devfd, ioas_id, &hwpt_id), "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        t = now_us() - t0;
        close(devfd);
        close(iommufd);
        return t;
}

/* The device is free again once the broker handled the disconnect. */
static void wait_available(iommufd_broker *b) {
        uint64_t end = now_ms() + 5000;
        iommufd_broker_device d;

        for (;;) {
                CHECK_OK(iommufd_broker_get(b, edu, &d), "GetDevice");
                if (streq(d.state, "available"))
                        return;
                CHECK(now_ms() < end, "%s still %s after 5 s", edu, d.state);
                usleep(1000);
        }
}

/* Connected beforehand, so only the Acquire is timed: a new connection is a
 * new session, which opens its own /dev/iommu like the direct path. */
static uint64_t broker_once(iommufd_broker_transport transport, const char *address, iommufd_broker *probe) {
        const char *devs[] = { edu };
        iommufd_broker_lease *l = NULL;
        iommufd_broker *b = NULL;
        uint64_t t0, t;
        int r;

        wait_available(probe);
        CHECK_OK(iommufd_broker_connect(transport, address, &b), "connect to the broker");
        t0 = now_us();
        r = iommufd_broker_acquire(b, devs, 1, IOMMUFD_BROKER_MODE_ATTACHED, 0, &l);
        t = now_us() - t0;
        CHECK(r >= 0, "acquire %s: %s: %s", edu, strna(iommufd_broker_error_name(b)),
              strna(iommufd_broker_error_message(b)));
        iommufd_broker_lease_free(l);
        iommufd_broker_disconnect(b);
        return t;
}

/* The transports' floors: GetDevice (a cached answer) over varlink, and
 * org.freedesktop.DBus.Peer.Ping of the broker's name (answered by sd-bus)
 * through the bus. */
static uint64_t varlink_floor_once(iommufd_broker *probe) {
        iommufd_broker_device d;
        uint64_t t0 = now_us();

        CHECK_OK(iommufd_broker_get(probe, edu, &d), "GetDevice");
        return now_us() - t0;
}

static uint64_t dbus_floor_once(sd_bus *bus) {
        uint64_t t0 = now_us();

        CHECK_OK(sd_bus_call_method(bus, "io.iommufd.Broker1", "/io/iommufd/Broker1", "org.freedesktop.DBus.Peer",
                                    "Ping", NULL, NULL, ""), "Peer.Ping");
        return now_us() - t0;
}

int main(void) {
        const char *socket = getenv("BROKER_SOCKET");
        uint64_t direct[RUNS], varlink[RUNS], dbus[RUNS], floor_v[RUNS], floor_d[RUNS], md, mv, mb, fv, fd;
        iommufd_broker *probe = NULL;
        sd_bus *bus = NULL;

        setvbuf(stdout, NULL, _IOLBF, 0);
        CHECK_OK(pci_find(PCI_VENDOR_QEMU, PCI_DEVICE_EDU, false, edu), "find the edu");
        CHECK_OK(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, socket, &probe), "connect");
        CHECK_OK(sd_bus_open_system(&bus), "connect to the system bus");

        /* Interleaved, so that whatever else the VM does hits all three alike. */
        for (size_t i = 0; i < RUNS; i++) {
                wait_available(probe);
                direct[i] = direct_once();
                varlink[i] = broker_once(IOMMUFD_BROKER_TRANSPORT_VARLINK, socket, probe);
                dbus[i] = broker_once(IOMMUFD_BROKER_TRANSPORT_DBUS, NULL, probe);
                floor_v[i] = varlink_floor_once(probe);
                floor_d[i] = dbus_floor_once(bus);
        }
        iommufd_broker_disconnect(probe);
        sd_bus_flush_close_unref(bus);

        md = median(direct, RUNS);
        mv = median(varlink, RUNS);
        mb = median(dbus, RUNS);
        fv = median(floor_v, RUNS);
        fd = median(floor_d, RUNS);
        vm_log("fast path, medians of %d runs: direct %llu us, varlink Acquire %llu us, D-Bus Acquire %llu us",
               RUNS, (unsigned long long) md, (unsigned long long) mv, (unsigned long long) mb);
        vm_log("fast path ratios: varlink/direct %.2f (goal <= 1.10), D-Bus/direct %.2f (goal <= 1.25)",
               (double) mv / (double) md, (double) mb / (double) md);
        vm_log("fast path floors: varlink round trip %llu us, D-Bus round trip %llu us; beyond direct and its "
               "floor the broker adds %lld us over varlink, %lld us over D-Bus",
               (unsigned long long) fv, (unsigned long long) fd, (long long) mv - (long long) md - (long long) fv,
               (long long) mb - (long long) md - (long long) fd);
        return 0;
}
