/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus transport against a fake io.iommufd.Broker1 on a private
 * dbus-daemon: property decoding, fd duplication, error names, signals.
 * Skips (77) without dbus-daemon.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>

#include "broker-errors.h"
#include "client-internal.h"
#include "test.h"

#define DEVICE_PATH BROKER_DBUS_DEVICE_PREFIX "/_30000_3a03_3a00_2e0"

/* --- the fake broker --- */

static int method_list(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "a(so)", 1, "0000:03:00.0", DEVICE_PATH);
}

static int method_get(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *address;
        int r = sd_bus_message_read(m, "s", &address);

        if (r < 0)
                return r;
        if (!streq(address, "0000:03:00.0"))
                return sd_bus_error_setf(error, BROKER_DBUS_ERROR_PREFIX "DeviceNotFound", "no device %s", address);
        return sd_bus_reply_method_return(m, "o", DEVICE_PATH);
}

static int method_acquire(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_close_ int iommufd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int devfd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        const char *device;
        int r;

        const char *key, *mode = NULL;

        r = sd_bus_message_read(m, "as", 1, &device);
        if (r < 0)
                return r;
        /* The options must carry the mode the caller asked for. */
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && streq(key, "mode"))
                        r = sd_bus_message_read(m, "v", "s", &mode);
                else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r < 0)
                return r;
        if (!streq_ptr(mode, "unbound"))
                return sd_bus_error_setf(error, BROKER_DBUS_ERROR_PREFIX "InvalidParameter", "mode %s", strna(mode));
        if (!streq(device, "0000:03:00.0"))
                return sd_bus_error_setf(error, BROKER_DBUS_ERROR_PREFIX "DeviceBusy", "%s is busy", device);
        r = sd_bus_reply_method_return(m, "ha(sha{sv})a{sv}", iommufd,
                                       1, "0000:03:00.0", devfd, 2, "dev_id", "u", 1, "hwpt_id", "u", 3,
                                       2, "session", "t", (uint64_t) 9, "ioas_id", "u", 2);
        if (r < 0)
                return r;
        return sd_bus_emit_signal(sd_bus_message_get_bus(m), BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                  "LeaseEnded", "sts", "0000:03:00.0", (uint64_t) 9, "unplug-requested");
}

static int method_release(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "");
}

static int property_group(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "as", 2, "0000:03:00.0", "0000:03:00.1");
}

static const sd_bus_vtable broker_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("ListDevices", "", "a(so)", method_list, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("GetDevice", "s", "o", method_get, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("AcquireDevices", "asa{sv}", "ha(sha{sv})a{sv}", method_acquire, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ReleaseDevices", "as", "", method_release, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static struct {
        uint16_t vendor, device;
        uint32_t class;
        int32_t group;
        int noiommu;
        uint64_t holder;
} fake_device = { 0x8086, 0x10fb, 0x020000, 12, 0, 42 };

static int property_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const char *v = streq(property, "Address") ? "0000:03:00.0" :
                        streq(property, "Driver") ? "vfio-pci" :
                        streq(property, "State") ? "leased" : "";
        return sd_bus_message_append(reply, "s", v);
}

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Address", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("VendorId", "q", NULL, offsetof(typeof(fake_device), vendor), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceId", "q", NULL, offsetof(typeof(fake_device), device), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Class", "u", NULL, offsetof(typeof(fake_device), class), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Driver", "s", property_string, 0, 0),
        SD_BUS_PROPERTY("IommuGroup", "i", NULL, offsetof(typeof(fake_device), group), 0),
        SD_BUS_PROPERTY("GroupMembers", "as", property_group, 0, 0),
        SD_BUS_PROPERTY("NoIommu", "b", NULL, offsetof(typeof(fake_device), noiommu), 0),
        SD_BUS_PROPERTY("State", "s", property_string, 0, 0),
        SD_BUS_PROPERTY("StateReason", "s", property_string, 0, 0),
        SD_BUS_PROPERTY("HolderSession", "t", NULL, offsetof(typeof(fake_device), holder), 0),
        SD_BUS_VTABLE_END
};

static _Noreturn void fake_broker(const char *address) {
        sd_bus *bus = NULL;

        if (sd_bus_new(&bus) < 0 || sd_bus_set_address(bus, address) < 0 || sd_bus_set_bus_client(bus, 1) < 0 ||
            sd_bus_start(bus) < 0 ||
            sd_bus_add_object_vtable(bus, NULL, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, broker_vtable, NULL) < 0 ||
            sd_bus_add_object_vtable(bus, NULL, DEVICE_PATH, BROKER_DBUS_DEVICE_INTERFACE, device_vtable,
                                     &fake_device) < 0 ||
            sd_bus_request_name(bus, BROKER_DBUS_NAME, 0) < 0)
                _exit(1);
        for (;;) {
                int r = sd_bus_process(bus, NULL);
                if (r < 0)
                        _exit(0);
                if (r == 0 && sd_bus_wait(bus, UINT64_MAX) < 0)
                        _exit(0);
        }
}

/* --- the test --- */

static pid_t start_bus(const char *dir, char *address, size_t size) {
        char conf[256], line[256] = "";
        FILE *f;
        int pipefd[2];
        pid_t pid;

        snprintf(conf, sizeof(conf), "%s/bus.conf", dir);
        f = fopen(conf, "we");
        if (!f)
                return -1;
        fprintf(f, "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
                   " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                   "<busconfig><type>test</type><listen>unix:path=%s/bus</listen><auth>EXTERNAL</auth>"
                   "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
                   "<allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy></busconfig>\n", dir);
        fclose(f);
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                char fdarg[300];

                dup2(pipefd[1], 3);
                snprintf(fdarg, sizeof(fdarg), "--config-file=%s", conf);
                execlp("dbus-daemon", "dbus-daemon", fdarg, "--nofork", "--print-address=3", NULL);
                _exit(127);
        }
        safe_close(pipefd[1]);
        f = fdopen(pipefd[0], "r");
        if (!f || !fgets(line, sizeof(line), f))
                line[0] = 0;
        if (f)
                fclose(f);
        line[strcspn(line, "\n")] = 0;
        snprintf(address, size, "%s", line);
        return pid;
}

static int wait_event(iommufd_broker *b, iommufd_broker_event *e) {
        for (int tries = 0; tries < 50; tries++) {
                struct pollfd p = { .fd = iommufd_broker_event_fd(b), .events = POLLIN };
                int r = iommufd_broker_next_event(b, e);

                if (r != 0)
                        return r;
                poll(&p, 1, 100);
        }
        return 0;
}

/* Until the fake owns its name (at most 20 tries; the checks then fail clearly). */
static void wait_for_broker(const char *address) {
        for (int tries = 0; tries < 20; tries++) {
                iommufd_broker *b = NULL;
                iommufd_broker_device d;
                int r = iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_DBUS, address, &b);

                if (r >= 0)
                        r = iommufd_broker_get(b, "0000:03:00.0", &d);
                iommufd_broker_disconnect(b);
                if (r >= 0)
                        return;
                usleep(100 * 1000);
        }
}

static void run_tests(const char *address) {
        iommufd_broker *b = NULL;
        iommufd_broker_device *devices = NULL, d;
        iommufd_broker_lease *l = NULL;
        iommufd_broker_event e = {};
        const char *devs[] = { "0000:03:00.0" }, *busy[] = { "0000:04:00.0" };
        size_t n = 0;

        CHECK_INT(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_DBUS, address, &b), 0);
        if (!b)
                return;
        CHECK_INT(iommufd_broker_list(b, &devices, &n), 0);
        CHECK_INT(n, 1);
        if (n == 1) {
                CHECK_STR(devices[0].address, "0000:03:00.0");
                CHECK_INT(devices[0].vendor_id, 0x8086);
                CHECK_INT(devices[0].class_code, 0x020000);
                CHECK_INT(devices[0].iommu_group, 12);
                CHECK_STR(devices[0].group_members, "0000:03:00.0 0000:03:00.1");
                CHECK_STR(devices[0].driver, "vfio-pci");
                CHECK_STR(devices[0].state, "leased");
                CHECK_INT(devices[0].holder_session, 42);
        }
        free(devices);

        CHECK_INT(iommufd_broker_get(b, "0000:09:00.0", &d), -ENODEV);
        CHECK_STR(iommufd_broker_error_name(b), "DeviceNotFound");
        CHECK_STR(iommufd_broker_error_message(b), "no device 0000:09:00.0");

        CHECK_INT(iommufd_broker_event_fd(b) >= 0, 1);
        CHECK_INT(iommufd_broker_acquire(b, busy, 1, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l), -EBUSY);
        CHECK_STR(iommufd_broker_error_name(b), "DeviceBusy");
        CHECK_INT(iommufd_broker_acquire(b, devs, 1, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l), 0);
        if (l) {
                CHECK_INT(l->session, 9);
                CHECK_INT(l->ioas_id, 2);
                CHECK_INT(l->devices[0].dev_id, 1);
                CHECK_INT(l->devices[0].hwpt_id, 3);
                /* Our own copies, close-on-exec, outliving the message. */
                CHECK_INT(fcntl(l->iommufd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
                CHECK_INT(fcntl(l->devices[0].fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
                iommufd_broker_lease_free(l);
        }
        CHECK_INT(wait_event(b, &e), 1);
        CHECK_STR(e.type, "lease-ended");
        CHECK_INT(e.session, 9);
        CHECK_STR(e.reason, "unplug-requested");
        CHECK_INT(iommufd_broker_release(b, NULL, 0), 0);
        iommufd_broker_disconnect(b);
}

int main(void) {
        char dir[] = "/tmp/test-client-dbus.XXXXXX", address[256], path[300];
        pid_t bus, broker;

        alarm(120);     /* a lost reply would otherwise wait out the 25 s call timeouts */
        if (!mkdtemp(dir))
                return 77;
        bus = start_bus(dir, address, sizeof(address));
        if (bus < 0 || !address[0]) {
                printf("skip: cannot start dbus-daemon\n");
                return 77;
        }
        broker = fork();
        if (broker == 0)
                fake_broker(address);
        wait_for_broker(address);

        run_tests(address);

        kill(broker, SIGTERM);
        kill(bus, SIGTERM);
        waitpid(broker, NULL, 0);
        waitpid(bus, NULL, 0);
        snprintf(path, sizeof(path), "%s/bus.conf", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/bus", dir);
        unlink(path);
        rmdir(dir);
        return test_result();
}
