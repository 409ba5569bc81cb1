/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VM tier's broker cases: `vm-cases CASE`, run as root in the guest by
 * run-suite.sh with the real daemon running (BROKER_SOCKET, BROKER_PID).
 * The root part arranges devices and checks the host side; the client part
 * runs in a child as uid 65534 without capabilities, through
 * libiommufd-broker. Any failed check ends the case with exit status 1.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>

#include "iommufd-broker.h"
#include "vmtest.h"

static const char *broker_socket;
static pid_t broker_pid;

/* The devices, found by id and topology (see run-vm.sh). */
static char e1000e[16];         /* on e1000e: managed rebinding */
static char edu[16];            /* on the root bus: DMA, modes, hot unplug */
static char edu_bridged[16];    /* behind the PCIe-to-PCI bridge ... */
static char mate[16];           /* ... with this e1000: one IOMMU group */

static void find_devices(void) {
        CHECK_OK(pci_find(PCI_VENDOR_INTEL, PCI_DEVICE_E1000E, false, e1000e), "find the e1000e");
        CHECK_OK(pci_find(PCI_VENDOR_QEMU, PCI_DEVICE_EDU, false, edu), "find the edu");
        CHECK_OK(pci_find(PCI_VENDOR_QEMU, PCI_DEVICE_EDU, true, edu_bridged), "find the bridged edu");
        CHECK_OK(pci_find(PCI_VENDOR_INTEL, PCI_DEVICE_E1000, true, mate), "find the e1000");
}

/* ----------------------------------------------------------- client side */

static void broker_disconnectp(iommufd_broker **b) {
        iommufd_broker_disconnect(*b);
}
static void lease_freep(iommufd_broker_lease **l) {
        iommufd_broker_lease_free(*l);
}
#define _cleanup_broker_ _cleanup_(broker_disconnectp)
#define _cleanup_lease_ _cleanup_(lease_freep)

static iommufd_broker *connect_or_fail(iommufd_broker_transport transport) {
        iommufd_broker *b = NULL;
        const char *address = transport == IOMMUFD_BROKER_TRANSPORT_VARLINK ? broker_socket : NULL;
        CHECK_OK(iommufd_broker_connect(transport, address, &b), "connect to the broker");
        return b;
}

static int acquire(iommufd_broker *b, const char *bdf, iommufd_broker_mode mode, unsigned flags,
                   iommufd_broker_lease **ret) {
        const char *devs[] = { bdf };
        return iommufd_broker_acquire(b, devs, 1, mode, flags, ret);
}

static iommufd_broker_lease *acquire_or_fail(iommufd_broker *b, const char *bdf, iommufd_broker_mode mode,
                                             unsigned flags) {
        iommufd_broker_lease *l = NULL;
        int r = acquire(b, bdf, mode, flags, &l);
        CHECK(r >= 0, "acquire %s: %s: %s (%s)", bdf, strna(iommufd_broker_error_name(b)),
              strna(iommufd_broker_error_message(b)), strerror(-r));
        CHECK(l->n_devices == 1 && streq(l->devices[0].address, bdf), "lease is not for %s", bdf);
        CHECK(l->iommufd >= 0 && l->devices[0].fd >= 0, "lease without fds");
        return l;
}

/* An acquire that must fail with error `name`; returns the broker's message. */
static const char *acquire_refused(iommufd_broker *b, const char *bdf, unsigned flags, const char *name) {
        iommufd_broker_lease *l = NULL;
        int r = acquire(b, bdf, IOMMUFD_BROKER_MODE_ATTACHED, flags, &l);
        CHECK(r < 0, "acquire of %s succeeded, expected %s", bdf, name);
        CHECK(streq_ptr(iommufd_broker_error_name(b), name), "acquire of %s: expected %s, got %s: %s", bdf, name,
              strna(iommufd_broker_error_name(b)), strna(iommufd_broker_error_message(b)));
        vm_log("refused as expected: %s: %s", name, iommufd_broker_error_message(b));
        return iommufd_broker_error_message(b);
}

static void release_or_fail(iommufd_broker *b) {
        CHECK_OK(iommufd_broker_release(b, NULL, 0), "release");
}

/* A previous case's session may still be ending (its disconnect is handled
 * on the broker's loop): wait until the device is available again. */
static void wait_available(iommufd_broker *b, const char *bdf) {
        uint64_t end = now_ms() + 5000;
        iommufd_broker_device d;
        for (;;) {
                CHECK_OK(iommufd_broker_get(b, bdf, &d), "GetDevice");
                if (streq(d.state, "available"))
                        return;
                CHECK(now_ms() < end, "%s still %s (%s) after 5 s", bdf, d.state, d.reason);
                usleep(50 * 1000);
        }
}

/* What fd points at, per /proc/self/fd. */
static void fd_target(int fd, char *buf, size_t n) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t l = readlink(path, buf, n - 1);
        CHECK(l >= 0, "readlink %s: %m", path);
        buf[l] = 0;
}

/* ------------------------------------------------------ root-side helpers */

/* Pipes to step a client through a case: it writes one byte when ready and
 * waits for one byte (or EOF) before going on. */
typedef struct Sync {
        int ready[2];
        int go[2];
} Sync;

static void sync_init(Sync *s) {
        CHECK(pipe2(s->ready, O_CLOEXEC) == 0 && pipe2(s->go, O_CLOEXEC) == 0, "pipe: %m");
}
static void sync_child_ready(Sync *s) {
        CHECK(write(s->ready[1], "r", 1) == 1, "write: %m");
}
static void sync_child_wait(Sync *s) {
        char c;
        CHECK(read(s->go[0], &c, 1) >= 0, "read: %m");
}
static void sync_parent_wait(Sync *s, pid_t child) {
        struct pollfd p = { .fd = s->ready[0], .events = POLLIN };
        CHECK(poll(&p, 1, 20000) == 1, "client %d not ready after 20 s", (int) child);
        char c;
        CHECK(read(s->ready[0], &c, 1) == 1, "client %d died before it was ready", (int) child);
}
static void sync_parent_go(Sync *s) {
        CHECK(write(s->go[1], "g", 1) == 1, "write: %m");
}

static void expect_driver(const char *bdf, const char *driver, unsigned timeout_ms) {
        int r = pci_wait_driver(bdf, driver, timeout_ms);
        char cur[64] = "?";
        pci_driver(bdf, cur, sizeof cur);
        CHECK(r >= 0, "%s is on '%s' after %u ms, expected '%s'", bdf, cur, timeout_ms, driver);
}

/* ------------------------------------------------------------------ cases */

static int client_attached(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, edu);
        iommufd_broker_device inv;
        CHECK_OK(iommufd_broker_get(b, edu, &inv), "GetDevice");

        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        int fd = l->devices[0].fd;
        uint32_t dev_id = l->devices[0].dev_id, hwpt_id = l->devices[0].hwpt_id;
        CHECK(dev_id != 0 && l->ioas_id != 0 && hwpt_id != 0, "ids: dev %u ioas %u hwpt %u", dev_id, l->ioas_id,
              hwpt_id);

        /* dev_id names a device bound to this very iommufd. */
        uint32_t type;
        uint64_t caps;
        CHECK_OK(iommu_hw_info(l->iommufd, dev_id, &type, &caps), "IOMMU_GET_HW_INFO with the lease's dev_id");
        CHECK_OK(map_own_memory(l->iommufd, l->ioas_id, 0x100000), "IOMMU_IOAS_MAP of our own memory");

        struct uapi_vfio_device_info info;
        CHECK_OK(vfio_device_info(fd, &info), "VFIO_DEVICE_GET_INFO");
        CHECK(info.flags & UAPI_VFIO_DEVICE_FLAGS_PCI, "device info flags %#x", info.flags);
        CHECK(info.num_regions >= UAPI_VFIO_PCI_NUM_REGIONS, "%u regions", info.num_regions);

        uint16_t vendor, device;
        CHECK_OK(vfio_pci_ids(fd, &vendor, &device), "read config space");
        CHECK(vendor == inv.vendor_id && device == inv.device_id, "config space %04x:%04x, inventory %04x:%04x",
              vendor, device, inv.vendor_id, inv.device_id);
        CHECK(vendor == PCI_VENDOR_QEMU && device == PCI_DEVICE_EDU, "not the edu: %04x:%04x", vendor, device);

        uint32_t again;
        int r = vfio_bind(fd, l->iommufd, &again);
        CHECK(r == -EINVAL, "second VFIO_DEVICE_BIND_IOMMUFD: expected EINVAL, got %d", r);

        uint32_t ioas2, hwpt2;
        CHECK_OK(ioas_alloc(l->iommufd, &ioas2), "IOMMU_IOAS_ALLOC");
        CHECK(ioas2 != l->ioas_id, "second IOAS has the first one's id");
        CHECK_OK(vfio_attach(fd, ioas2, &hwpt2), "replace the attachment with a second IOAS");
        CHECK(hwpt2 != hwpt_id, "replacement kept hwpt %u", hwpt_id);
        vm_log("attached: dev_id %u ioas %u hwpt %u, replaced by ioas %u hwpt %u", dev_id, l->ioas_id, hwpt_id,
               ioas2, hwpt2);
        release_or_fail(b);
        return 0;
}

static int case_attached(void) {
        return client_run(client_attached, NULL, "attached client");
}

static int client_dma(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, edu);
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        edu_dma_roundtrip(l->devices[0].fd, l->iommufd, l->ioas_id);
        release_or_fail(b);
        return 0;
}

static int case_dma(void) {
        return client_run(client_dma, NULL, "DMA client");
}

static int client_unbound(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, edu);
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_UNBOUND, 0);
        int fd = l->devices[0].fd;
        CHECK(l->devices[0].dev_id == 0 && l->ioas_id == 0, "unbound lease carries dev_id %u ioas %u",
              l->devices[0].dev_id, l->ioas_id);

        /* Before bind the kernel blocks every access to the device. */
        struct uapi_vfio_device_info info;
        int r = vfio_device_info(fd, &info);
        CHECK(r == -EINVAL, "VFIO_DEVICE_GET_INFO before bind: expected EINVAL, got %d", r);

        uint32_t dev_id, ioas_id, hwpt_id;
        CHECK_OK(vfio_bind(fd, l->iommufd, &dev_id), "VFIO_DEVICE_BIND_IOMMUFD by the client");
        CHECK_OK(ioas_alloc(l->iommufd, &ioas_id), "IOMMU_IOAS_ALLOC by the client");
        CHECK_OK(vfio_attach(fd, ioas_id, &hwpt_id), "VFIO_DEVICE_ATTACH_IOMMUFD_PT by the client");
        CHECK_OK(vfio_device_info(fd, &info), "VFIO_DEVICE_GET_INFO after bind");
        edu_dma_roundtrip(fd, l->iommufd, ioas_id);
        vm_log("unbound: client bound dev_id %u, attached ioas %u hwpt %u", dev_id, ioas_id, hwpt_id);
        release_or_fail(b);
        return 0;
}

static int case_unbound(void) {
        return client_run(client_unbound, NULL, "unbound client");
}

/* The D-Bus device object's IOMMU properties. */
static void dbus_iommu_properties(const char *bdf, char **ret_type, uint64_t *ret_caps) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;

        CHECK_OK(sd_bus_open_system(&bus), "connect to the system bus");
        int r = sd_bus_call_method(bus, "io.iommufd.Broker1", "/io/iommufd/Broker1", "io.iommufd.Broker1",
                                   "GetDevice", &error, &reply, "s", bdf);
        CHECK(r >= 0, "GetDevice over D-Bus: %s: %s", strna(error.name), strna(error.message));
        CHECK_OK(sd_bus_message_read(reply, "o", &path), "read object path");
        r = sd_bus_get_property_string(bus, "io.iommufd.Broker1", path, "io.iommufd.Broker1.Device", "IommuType",
                                       &error, ret_type);
        CHECK(r >= 0, "IommuType: %s: %s", strna(error.name), strna(error.message));
        r = sd_bus_get_property_trivial(bus, "io.iommufd.Broker1", path, "io.iommufd.Broker1.Device",
                                        "IommuCapabilities", &error, 't', ret_caps);
        CHECK(r >= 0, "IommuCapabilities: %s: %s", strna(error.name), strna(error.message));
}

static int client_capabilities(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, edu);

        /* Before anyone acquired it, the kind of IOMMU comes from sysfs (no bind). */
        iommufd_broker_device before;
        CHECK_OK(iommufd_broker_get(b, edu, &before), "GetDevice before acquiring");
        CHECK(streq(before.iommu_type, "intel-vtd"), "before any acquire: iommu type '%s', expected intel-vtd",
              before.iommu_type);

        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);

        /* What the kernel tells us directly... */
        uint32_t type;
        uint64_t caps;
        CHECK_OK(iommu_hw_info(l->iommufd, l->devices[0].dev_id, &type, &caps), "IOMMU_GET_HW_INFO");
        CHECK(type == UAPI_IOMMU_HW_INFO_TYPE_INTEL_VTD, "IOMMU type %u, expected Intel VT-d", type);

        /* ... must be what GetDevice ... */
        iommufd_broker_device d;
        CHECK_OK(iommufd_broker_get(b, edu, &d), "GetDevice");
        CHECK(streq(d.iommu_type, "intel-vtd"), "GetDevice iommu type '%s', expected intel-vtd", d.iommu_type);
        CHECK(d.iommu_capabilities == caps, "GetDevice capabilities %#llx, kernel says %#llx",
              (unsigned long long) d.iommu_capabilities, (unsigned long long) caps);

        /* ... and the D-Bus properties say. */
        _cleanup_free_ char *dbus_type = NULL;
        uint64_t dbus_caps = UINT64_MAX;
        dbus_iommu_properties(edu, &dbus_type, &dbus_caps);
        CHECK(streq(dbus_type, "intel-vtd"), "D-Bus IommuType '%s', expected intel-vtd", dbus_type);
        CHECK(dbus_caps == caps, "D-Bus IommuCapabilities %#llx, kernel says %#llx", (unsigned long long) dbus_caps,
              (unsigned long long) caps);
        vm_log("capabilities: intel-vtd, %#llx everywhere", (unsigned long long) caps);
        release_or_fail(b);
        return 0;
}

static int case_capabilities(void) {
        return client_run(client_capabilities, NULL, "capabilities client");
}

static int client_dbus(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_DBUS);
        wait_available(b, edu);
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        char target[256], cdev[32], expect[64];

        fd_target(l->iommufd, target, sizeof target);
        CHECK(streq(target, "/dev/iommu"), "iommufd from D-Bus is %s", target);
        fd_target(l->devices[0].fd, target, sizeof target);
        CHECK_OK(pci_vfio_cdev(edu, cdev, sizeof cdev), "find the edu's cdev");
        snprintf(expect, sizeof expect, "/dev/vfio/devices/%s", cdev);
        CHECK(streq(target, expect), "device fd from D-Bus is %s, expected %s", target, expect);

        CHECK(l->devices[0].dev_id != 0 && l->ioas_id != 0, "ids over D-Bus: dev %u ioas %u", l->devices[0].dev_id,
              l->ioas_id);
        struct uapi_vfio_device_info info;
        CHECK_OK(vfio_device_info(l->devices[0].fd, &info), "VFIO_DEVICE_GET_INFO");
        CHECK_OK(map_own_memory(l->iommufd, l->ioas_id, 0x100000), "IOMMU_IOAS_MAP");
        vm_log("D-Bus: fds %s and %s received, dev_id %u", "/dev/iommu", expect, l->devices[0].dev_id);
        release_or_fail(b);
        return 0;
}

static int case_dbus(void) {
        return client_run(client_dbus, NULL, "D-Bus client");
}

static int client_managed_release(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_ATTACHED,
                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);
        expect_driver(e1000e, "vfio-pci", 0);
        uint16_t vendor, device;
        CHECK_OK(vfio_pci_ids(l->devices[0].fd, &vendor, &device), "read config space");
        CHECK(vendor == PCI_VENDOR_INTEL && device == PCI_DEVICE_E1000E, "config ids %04x:%04x", vendor, device);
        release_or_fail(b);
        iommufd_broker_lease_free(l);
        expect_driver(e1000e, "e1000e", 10000);
        return 0;
}

static int client_managed_killed(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, e1000e);
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_ATTACHED,
                                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);
        sync_child_ready(s);
        pause();                /* until SIGKILL */
        return -EINTR;
}

static int case_managed(void) {
        expect_driver(e1000e, "e1000e", 0);
        uint64_t t0 = now_ms();
        CHECK_OK(client_run(client_managed_release, NULL, "managed client"), "acquire and release");
        vm_log("managed: e1000e -> vfio-pci -> e1000e on release in %llu ms", (unsigned long long) (now_ms() - t0));

        Sync s;
        sync_init(&s);
        pid_t pid = client_spawn(client_managed_killed, &s);
        sync_parent_wait(&s, pid);
        expect_driver(e1000e, "vfio-pci", 0);
        t0 = now_ms();
        CHECK(kill(pid, SIGKILL) == 0, "kill: %m");
        CHECK(client_wait(pid, "killed client") == -EPROTO, "killed client exited cleanly");
        expect_driver(e1000e, "e1000e", 10000);
        vm_log("managed: back on e1000e %llu ms after SIGKILL", (unsigned long long) (now_ms() - t0));
        return 0;
}

static int client_group_not_viable(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        const char *msg = acquire_refused(b, edu_bridged, 0, "GroupNotViable");
        CHECK(strstr(msg, mate), "GroupNotViable does not name the mate %s: %s", mate, msg);
        return 0;
}

static int client_group_holder(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu_bridged, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        sync_child_ready(s);
        sync_child_wait(s);
        release_or_fail(b);
        return 0;
}

static int client_group_splitter(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        acquire_refused(b, mate, IOMMUFD_BROKER_ACQUIRE_MANAGED, "DeviceBusy");
        return 0;
}

static int case_groups(void) {
        expect_driver(mate, "e1000", 0);
        expect_driver(edu_bridged, "vfio-pci", 0);
        CHECK_OK(client_run(client_group_not_viable, NULL, "group client"), "mate on a host driver");

        /* With the mate off its driver the group is viable, but only as a whole. */
        CHECK_OK(pci_unbind(mate), "unbind the mate");
        Sync s;
        sync_init(&s);
        pid_t holder = client_spawn(client_group_holder, &s);
        sync_parent_wait(&s, holder);
        int r = client_run(client_group_splitter, NULL, "second session");
        char driver[64] = "?";
        pci_driver(mate, driver, sizeof driver);
        sync_parent_go(&s);
        CHECK_OK(client_wait(holder, "group holder"), "session A");
        CHECK_OK(r, "session B must not get the mate");
        CHECK(driver[0] == 0, "the refused managed acquire left the mate on '%s'", driver);
        CHECK_OK(pci_bind_driver(mate, "e1000"), "give the mate back to e1000");
        return 0;
}

/* q35's host bridge (00:00.0, class 0x0600) and LPC bridge (00:1f.0, 0x0601):
 * the host needs them and vfio-pci would take them, so the broker shows them
 * unavailable and refuses them, managed too, without touching their driver. */
static int client_bridges(void *userdata) {
        static const struct { const char *bdf, *kind; } bridges[] = {
                { "0000:00:00.0", "host bridge" },
                { "0000:00:1f.0", "ISA bridge" },
        };
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);

        for (size_t i = 0; i < ELEMENTSOF(bridges); i++) {
                const char *bdf = bridges[i].bdf;
                char before[64] = "", after[64] = "";
                iommufd_broker_device d;

                CHECK_OK(iommufd_broker_get(b, bdf, &d), "GetDevice of a bridge");
                CHECK(streq(d.state, "unavailable") && strstr(d.reason, bridges[i].kind),
                      "%s (class %06x): %s, %s", bdf, d.class_code, d.state, d.reason);
                (void) pci_driver(bdf, before, sizeof before);
                const char *msg = acquire_refused(b, bdf, IOMMUFD_BROKER_ACQUIRE_MANAGED, "DeviceUnavailable");
                CHECK(strstr(msg, bridges[i].kind), "refusal of %s does not say %s: %s", bdf, bridges[i].kind, msg);
                (void) pci_driver(bdf, after, sizeof after);
                CHECK(streq(before, after), "%s went from driver '%s' to '%s'", bdf, before, after);
        }
        return 0;
}

static int case_bridges(void) {
        return client_run(client_bridges, NULL, "bridges client");
}

static int client_hotunplug(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, edu);
        int efd = iommufd_broker_event_fd(b);
        CHECK_OK(efd, "event fd");
        iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        sync_child_ready(s);

        uint64_t end = now_ms() + 20000;
        iommufd_broker_event ev;
        for (;;) {
                int r = iommufd_broker_next_event(b, &ev);
                CHECK_OK(r, "next event");
                if (r > 0) {
                        vm_log("event %s %s %s", ev.type, ev.address, ev.reason);
                        /* The kernel asked the broker (which registered the
                         * request eventfd) for the device; it passes that on.
                         * The lease ends once we let go. */
                        if (streq(ev.type, "lease-releasing") && streq(ev.address, edu) && l) {
                                CHECK(streq(ev.reason, "unplug-requested"), "releasing because '%s'", ev.reason);
                                iommufd_broker_lease_free(l);
                                l = NULL;
                        }
                        if (streq(ev.type, "lease-ended") && streq(ev.address, edu))
                                break;
                        continue;
                }
                struct pollfd p = { .fd = efd, .events = POLLIN };
                int left = (int) (end - now_ms());
                CHECK(left > 0 && poll(&p, 1, left) >= 0, "no lease-ended event within 20 s");
        }
        CHECK(streq(ev.reason, "unplug-requested") || streq(ev.reason, "device-removed"),
              "lease ended with reason '%s'", ev.reason);
        CHECK(!l, "the lease ended while we still held its fds");
        return 0;
}

static int case_hotunplug(void) {
        CHECK(broker_pid > 0 && kill(broker_pid, 0) == 0, "broker (pid %d) not running", (int) broker_pid);
        int baseline = count_fds(broker_pid);
        CHECK_OK(baseline, "count the broker's fds");
        expect_driver(edu, "vfio-pci", 0);

        Sync s;
        sync_init(&s);
        pid_t client = client_spawn(client_hotunplug, &s);
        sync_parent_wait(&s, client);

        /* vfio-pci's remove blocks until the device's fds are closed. */
        char path[128];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/remove", edu);
        uint64_t t0 = now_ms();
        pid_t remover = fork();
        CHECK(remover >= 0, "fork: %m");
        if (remover == 0)
                _exit(write_file_str(path, "1") < 0 ? EXIT_FAILURE : EXIT_SUCCESS);

        CHECK_OK(client_wait(client, "hot unplug client"), "client notified of the unplug");
        int status, r;
        while ((r = waitpid(remover, &status, WNOHANG)) == 0 && now_ms() < t0 + 15000)
                usleep(50 * 1000);
        CHECK(r == remover, "the removal did not complete within 15 s");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writing %s failed", path);
        vm_log("hot unplug: removal completed after %llu ms", (unsigned long long) (now_ms() - t0));

        char dir[64];
        snprintf(dir, sizeof dir, "/sys/bus/pci/devices/%s", edu);
        struct stat st;
        CHECK(stat(dir, &st) < 0 && errno == ENOENT, "%s still exists", dir);
        CHECK(kill(broker_pid, 0) == 0, "the broker died");

        /* The session ends when the broker sees the disconnect: allow it a moment. */
        int n = -1;
        for (uint64_t end = now_ms() + 5000; now_ms() < end; usleep(50 * 1000))
                if ((n = count_fds(broker_pid)) == baseline)
                        break;
        CHECK(n == baseline, "broker has %d fds, %d before the case", n, baseline);
        return 0;
}

/* Before the daemon starts: the devices that are used without managed
 * acquire sit on vfio-pci, as an admin would have arranged. */
/* Memlock by policy on the real kernel: a client whose RLIMIT_MEMLOCK is
 * 1 MiB (soft and hard) cannot IOMMU_IOAS_MAP 8 MiB; after an Acquire that a
 * rule with "memlock" decided, its limit (hard too, which it could not raise
 * itself) is 64 MiB and the same map succeeds. */
#define VM_POLICY "/run/vm-policy.json"
#define SMALL_LIMIT (1u << 20)
#define MAP_SIZE (8u << 20)
#define POLICY_MEMLOCK (64u << 20)

static void write_policy(bool with_memlock) {
        char text[512];

        snprintf(text, sizeof text,
                 "{ \"rules\": [ { \"principals\": { \"users\": [%d] }, \"allow\": true, \"managed\": true%s } ] }\n",
                 CLIENT_UID, with_memlock ? ", \"memlock\": \"64M\"" : "");
        FILE *f = fopen(VM_POLICY ".tmp", "we");

        /* Whole and at once (write_file_str() is for sysfs: no truncation). */
        CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "write " VM_POLICY ".tmp: %m");
        CHECK(rename(VM_POLICY ".tmp", VM_POLICY) == 0, "rename to " VM_POLICY ": %m");
        CHECK(kill(broker_pid, SIGHUP) == 0, "SIGHUP the broker: %m");
}

/* Map MAP_SIZE of fresh memory into the lease's IOAS, which the device is
 * attached to: its domain makes the kernel pin (and charge) the pages now. */
static int map_big(const iommufd_broker_lease *l) {
        void *p;
        int r;

        p = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        CHECK(p != MAP_FAILED, "mmap %u bytes: %m", MAP_SIZE);
        r = ioas_map(l->iommufd, l->ioas_id, p, MAP_SIZE, 0x1000000);
        munmap(p, MAP_SIZE);
        return r;
}

static void set_small_limit(void) {
        struct rlimit rl = { SMALL_LIMIT, SMALL_LIMIT };
        CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit(RLIMIT_MEMLOCK, 1 MiB): %m");
}

static int client_memlock(void *userdata) {
        bool with_rule = *(bool *) userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        struct rlimit rl;
        uint64_t end = now_ms() + 5000;
        int r;

        set_small_limit();
        wait_available(b, edu);
        for (;;) {
                _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
                uint64_t granted = iommufd_broker_lease_memlock_limit(l);

                CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0, "getrlimit: %m");
                /* The SIGHUP reload is asynchronous: a lease from the old policy says 0. */
                if (with_rule && granted == 0 && now_ms() < end) {
                        release_or_fail(b);
                        iommufd_broker_lease_free(TAKE_PTR(l));
                        wait_available(b, edu);
                        usleep(100 * 1000);
                        continue;
                }
                r = map_big(l);
                if (!with_rule) {
                        CHECK(granted == 0, "memlock_limit %" PRIu64 " without a memlock rule", granted);
                        CHECK(rl.rlim_cur == SMALL_LIMIT && rl.rlim_max == SMALL_LIMIT,
                              "limit changed without a memlock rule: %llu/%llu", (unsigned long long) rl.rlim_cur,
                              (unsigned long long) rl.rlim_max);
                        CHECK(r == -ENOMEM, "IOMMU_IOAS_MAP of %u bytes over a 1 MiB limit: expected ENOMEM, got %d",
                              MAP_SIZE, r);
                        vm_log("memlock: without the rule, mapping %u MiB fails with ENOMEM (limit 1 MiB)",
                               MAP_SIZE >> 20);
                } else {
                        CHECK(granted == POLICY_MEMLOCK, "lease memlock_limit %" PRIu64 ", want %u", granted,
                              POLICY_MEMLOCK);
                        CHECK(rl.rlim_cur == POLICY_MEMLOCK && rl.rlim_max == POLICY_MEMLOCK,
                              "limit after the acquire: %llu/%llu, want 64 MiB both",
                              (unsigned long long) rl.rlim_cur, (unsigned long long) rl.rlim_max);
                        CHECK_OK(r, "IOMMU_IOAS_MAP of 8 MiB under the raised limit");
                        vm_log("memlock: the rule raised the limit from 1 MiB to 64 MiB (soft and hard); "
                               "mapping %u MiB works", MAP_SIZE >> 20);
                }
                release_or_fail(b);
                return 0;
        }
}

static int case_memlock(void) {
        bool without = false, with = true;
        int r;

        write_policy(false);
        r = client_run(client_memlock, &without, "memlock client without the rule");
        if (r >= 0) {
                write_policy(true);
                r = client_run(client_memlock, &with, "memlock client with the rule");
        }
        write_policy(false);
        return r;
}

/* The cdev the broker opened must be the approved device. Two ways it may
 * not be, played here with bind mounts the broker sees: the node at
 * /dev/vfio/devices/vfioN is another device's (its st_rdev differs), or
 * /sys/dev/char/MAJ:MIN leads to another device (the minor was reused after
 * a rebind). Either way DeviceUnavailable, no fd kept, the device stays
 * available; with the mounts gone the same acquire works. */
static char cdev_node_mount[64], char_dir_mount[64], char_tmp[64];
static pid_t cdev_mounts_owner;

static void cdev_mounts_undo(void) {
        if (getpid() != cdev_mounts_owner)
                return;         /* a client child exiting */
        if (cdev_node_mount[0])
                (void) umount2(cdev_node_mount, MNT_DETACH);
        if (char_dir_mount[0])
                (void) umount2(char_dir_mount, MNT_DETACH);
        if (char_tmp[0]) {
                (void) umount2(char_tmp, MNT_DETACH);
                (void) rmdir(char_tmp);
        }
        cdev_node_mount[0] = char_dir_mount[0] = char_tmp[0] = 0;
}

/* bdf's vfio cdev: name ("vfio3"), "MAJ:MIN", and its sysfs directory. */
static void cdev_of(const char *bdf, char name[static 32], char devnum[static 32], char dir[static PATH_MAX]) {
        char path[256];
        DIR *d;
        struct dirent *de;

        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vfio-dev", bdf);
        d = opendir(path);
        CHECK(d, "%s has no vfio-dev: %m", bdf);
        name[0] = 0;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "vfio", 4) == 0 && strlen(de->d_name) < 32)
                        memcpy(name, de->d_name, strlen(de->d_name) + 1);
        closedir(d);
        CHECK(name[0], "%s has no vfio cdev", bdf);
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vfio-dev/%s", bdf, name);
        CHECK(realpath(path, dir), "realpath %s: %m", path);
        snprintf(path, sizeof path, "%s/dev", dir);
        CHECK_OK(read_file_str(path, devnum, 32), "read the cdev's dev");
}

static int client_cdev_refused(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        const char *msg = acquire_refused(b, edu, 0, "DeviceUnavailable");
        iommufd_broker_device d;

        CHECK(strstr(msg, edu), "the refusal does not name %s: %s", edu, msg);
        CHECK_OK(iommufd_broker_get(b, edu, &d), "GetDevice");
        CHECK(streq(d.state, "available"), "%s is %s after the refusal (%s)", edu, d.state, (const char *) userdata);
        return 0;
}

static int client_cdev_ok(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail(IOMMUFD_BROKER_TRANSPORT_VARLINK);
        wait_available(b, edu);
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        release_or_fail(b);
        return 0;
}

static int case_cdev_identity(void) {
        char name[32], devnum[32], dir[PATH_MAX], other_name[32], other_devnum[32], other_dir[PATH_MAX];
        char path[PATH_MAX + 64];
        int before = -1, now = -1;

        cdev_of(edu, name, devnum, dir);
        cdev_of(edu_bridged, other_name, other_devnum, other_dir);
        vm_log("edu %s = %s (%s), bridged edu %s = %s (%s)", edu, name, devnum, edu_bridged, other_name,
               other_devnum);
        cdev_mounts_owner = getpid();
        CHECK(atexit(cdev_mounts_undo) == 0, "atexit");
        CHECK(client_run(client_cdev_ok, NULL, "acquire before") == 0, "acquire before the mounts");
        /* That session ends on the broker's loop: count once it settled. */
        for (int i = 0, same = 0, last = -1; same < 5 && i < 100; i++, usleep(100 * 1000)) {
                before = count_fds(broker_pid);
                same = before == last ? same + 1 : 0;
                last = before;
        }

        /* 1: the node is the bridged edu's. */
        snprintf(cdev_node_mount, sizeof cdev_node_mount, "/dev/vfio/devices/%s", name);
        snprintf(path, sizeof path, "/dev/vfio/devices/%s", other_name);
        CHECK(mount(path, cdev_node_mount, NULL, MS_BIND, NULL) == 0, "bind %s over %s: %m", path,
              cdev_node_mount);
        CHECK(client_run(client_cdev_refused, (void *) "node", "another device's node") == 0,
              "another device's node at %s refused", cdev_node_mount);
        cdev_mounts_undo();

        /* 2: /sys/dev/char/<edu's dev_t> leads to the bridged edu's cdev. */
        cdev_mounts_owner = getpid();
        snprintf(char_tmp, sizeof char_tmp, "/run/vm-dev-char.XXXXXX");
        CHECK(mkdtemp(char_tmp), "mkdtemp: %m");
        CHECK(mount("tmpfs", char_tmp, "tmpfs", 0, "mode=0755") == 0, "tmpfs: %m");
        snprintf(path, sizeof path, "%s/%s", char_tmp, devnum);
        CHECK(symlink(other_dir, path) == 0, "symlink %s: %m", path);
        snprintf(char_dir_mount, sizeof char_dir_mount, "/sys/dev/char");
        CHECK(mount(char_tmp, char_dir_mount, NULL, MS_BIND, NULL) == 0, "bind over /sys/dev/char: %m");
        CHECK(client_run(client_cdev_refused, (void *) "sys-dev-char", "reused minor") == 0,
              "a dev_t that leads to another device refused");
        cdev_mounts_undo();

        for (int i = 0; i < 100 && (now = count_fds(broker_pid)) != before; i++)
                usleep(50 * 1000);
        CHECK(now == before, "broker fds %d, %d before the refusals", now, before);
        CHECK(client_run(client_cdev_ok, NULL, "acquire after") == 0, "acquire after the mounts are gone");
        return 0;
}

static int case_setup(void) {
        CHECK_OK(pci_bind_vfio(edu), "bind the edu to vfio-pci");
        CHECK_OK(pci_bind_vfio(edu_bridged), "bind the bridged edu to vfio-pci");
        vm_log("devices: e1000e %s, edu %s, group of edu %s + e1000 %s", e1000e, edu, edu_bridged, mate);
        return 0;
}

static const struct {
        const char *name;
        int (*run)(void);
} cases[] = {
        { "setup", case_setup },
        { "attached", case_attached },
        { "dma", case_dma },
        { "unbound", case_unbound },
        { "capabilities", case_capabilities },
        { "dbus", case_dbus },
        { "managed", case_managed },
        { "groups", case_groups },
        { "bridges", case_bridges },
        { "hotunplug", case_hotunplug },
        { "memlock", case_memlock },
        { "cdev-identity", case_cdev_identity },
};

int main(int argc, char **argv) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        CHECK(argc == 2, "usage: vm-cases CASE");
        broker_socket = getenv("BROKER_SOCKET");
        broker_pid = getenv("BROKER_PID") ? atoi(getenv("BROKER_PID")) : 0;
        find_devices();
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (streq(cases[i].name, argv[1])) {
                        int r = cases[i].run();
                        CHECK_OK(r, argv[1]);
                        return 0;
                }
        CHECK(false, "unknown case %s", argv[1]);
}
