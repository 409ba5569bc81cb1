/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libiommufd-broker without a daemon: the decoders fed JSON text, error-name
 * handling, `run` placeholders, connect failures, and the varlink transport
 * against a scripted fake server in a child process (fd passing, error
 * replies, the Monitor stream, a broker that goes away).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "client-internal.h"
#include "run-args.h"
#include "varlink-wire.h"
#include "test.h"

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1;   /* the DIR's own fd */
}

static bool fd_is_open(int fd) {
        return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

static bool fd_is_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        return flags >= 0 && (flags & FD_CLOEXEC);
}

static json_t *parse(const char *text) {
        json_error_t error;
        json_t *v = json_loads(text, 0, &error);

        if (!v)
                printf("FAIL: bad test JSON: %s\n", error.text);
        return v;
}

/* --- run placeholders --- */

static void check_subst(const char *in, const char *expected) {
        const int dev_fds[] = { 7, 8 };
        _cleanup_free_ char *out = NULL;
        int r;

        r = run_substitute(in, 3, dev_fds, 2, &out);
        CHECK_INT(r, 0);
        CHECK_STR(out, expected);
}

static void test_substitute(void) {
        /* Three fds: run_substitute_argv() below is told there are three. */
        const int dev_fds[] = { 7, 8, 9 };
        char *argv[] = { (char *) "qemu", (char *) "fd={dev0}", (char *) "{dev2}", NULL };
        _cleanup_free_ char *out = NULL;
        char **res = NULL;
        size_t bad = 0;

        check_subst("fd={dev0}", "fd=7");
        check_subst("{iommufd}", "3");
        check_subst("{dev0},{dev1},{iommufd}", "7,8,3");
        check_subst("{\"qom-type\":\"iommufd\",\"fd\":\"{iommufd}\"}", "{\"qom-type\":\"iommufd\",\"fd\":\"3\"}");
        check_subst("{dev}{device}{dev0x}{ {iommu}", "{dev}{device}{dev0x}{ {iommu}");
        check_subst("", "");
        check_subst("{dev1", "{dev1");

        CHECK_INT(run_substitute("{dev2}", 3, dev_fds, 2, &out), -ERANGE);
        CHECK_INT(run_substitute("x{dev99999999999999999999999}", 3, dev_fds, 2, &out), -ERANGE);
        CHECK(out == NULL);

        CHECK_INT(run_substitute_argv(argv, 3, dev_fds, 2, &res, &bad), -ERANGE);
        CHECK_INT(bad, 2);
        CHECK_INT(run_substitute_argv(argv, 3, dev_fds, 3, &res, &bad), 0);
        CHECK_STR(res[1], "fd=7");
        CHECK(res[3] == NULL);
        strv_free(res);
}

/* --- decoding --- */

static const char full_device[] =
        "{\"address\":\"0000:03:00.0\",\"vendorId\":32902,\"deviceId\":4347,"
        "\"subsystemVendorId\":32902,\"subsystemDeviceId\":12,\"class\":131072,"
        "\"driver\":\"vfio-pci\",\"iommuGroup\":12,\"groupMembers\":[\"0000:03:00.0\",\"0000:03:00.1\"],"
        "\"vfioCdev\":\"vfio0\",\"noiommu\":false,\"sriovVf\":true,"
        "\"iommu\":{\"type\":\"intel-vtd\",\"capabilities\":5},\"state\":\"leased\",\"reason\":null,"
        "\"holder\":{\"session\":42,\"uid\":1000,\"pid\":4242,\"unit\":\"qemu.service\"},\"future\":1}";

static void test_device_json(void) {
        json_t *v = parse(full_device);
        iommufd_broker_device d;

        CHECK_INT(client_device_from_json(v, &d), 0);
        CHECK_STR(d.address, "0000:03:00.0");
        CHECK_INT(d.vendor_id, 0x8086);
        CHECK_INT(d.device_id, 0x10fb);
        CHECK_INT(d.subsystem_device_id, 12);
        CHECK_INT(d.class_code, 0x020000);
        CHECK_STR(d.driver, "vfio-pci");
        CHECK_INT(d.iommu_group, 12);
        CHECK_STR(d.group_members, "0000:03:00.0 0000:03:00.1");
        CHECK_STR(d.vfio_cdev, "vfio0");
        CHECK_INT(d.noiommu, 0);
        CHECK_INT(d.sriov_vf, 1);
        CHECK_STR(d.iommu_type, "intel-vtd");
        CHECK_INT(d.iommu_capabilities, 5);
        CHECK_STR(d.state, "leased");
        CHECK_STR(d.reason, "");
        CHECK_INT(d.holder_session, 42);
        CHECK_INT(d.holder_uid, 1000);
        CHECK_INT(d.holder_pid, 4242);
        json_decref(v);

        v = parse("{\"address\":\"0000:00:1f.3\",\"vendorId\":1,\"deviceId\":2,\"class\":3,"
                  "\"driver\":null,\"iommuGroup\":null,\"groupMembers\":[],\"state\":\"unavailable\","
                  "\"reason\":\"no IOMMU group\"}");
        CHECK_INT(client_device_from_json(v, &d), 0);
        CHECK_INT(d.iommu_group, -1);
        CHECK_STR(d.driver, "");
        CHECK_STR(d.reason, "no IOMMU group");
        CHECK_INT(d.holder_session, 0);
        json_decref(v);

        /* Each of these is malformed in one way. */
        static const char *const bad[] = {
                "[]",
                "{\"vendorId\":1,\"deviceId\":2,\"class\":3,\"state\":\"available\"}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":\"8086\",\"deviceId\":2,\"class\":3,\"state\":\"available\"}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":70000,\"deviceId\":2,\"class\":3,\"state\":\"available\"}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":-1,\"deviceId\":2,\"class\":3,\"state\":\"available\"}",
                "{\"address\":\"0000:00:1f.3.too.long\",\"vendorId\":1,\"deviceId\":2,\"class\":3,\"state\":\"available\"}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":1,\"deviceId\":2,\"class\":3}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":1,\"deviceId\":2,\"class\":3,\"state\":\"available\",\"groupMembers\":[1]}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":1,\"deviceId\":2,\"class\":3,\"state\":\"available\",\"noiommu\":0}",
                "{\"address\":\"0000:00:1f.3\",\"vendorId\":1,\"deviceId\":2,\"class\":3,\"state\":\"available\",\"holder\":{\"uid\":0}}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = parse(bad[i]);
                CHECK_INT(client_device_from_json(v, &d), -EBADMSG);
                json_decref(v);
        }
}

static void test_event_json(void) {
        json_t *v = parse("{\"event\":\"lease-ended\",\"address\":\"0000:03:00.0\",\"session\":9,\"reason\":\"unplug-requested\"}");
        iommufd_broker_event e;

        CHECK_INT(client_event_from_json(v, &e), 0);
        CHECK_STR(e.type, "lease-ended");
        CHECK_STR(e.address, "0000:03:00.0");
        CHECK_INT(e.session, 9);
        CHECK_STR(e.reason, "unplug-requested");
        json_decref(v);

        v = parse("{\"event\":\"device-added\",\"device\":{\"address\":\"0000:04:00.0\"}}");
        CHECK_INT(client_event_from_json(v, &e), 0);
        CHECK_STR(e.address, "0000:04:00.0");
        json_decref(v);

        v = parse("{\"address\":\"0000:04:00.0\"}");
        CHECK_INT(client_event_from_json(v, &e), -EBADMSG);
        json_decref(v);
}

static void make_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void test_lease_json(void) {
        int fds[3];
        iommufd_broker_lease *l = NULL;
        json_t *v;
        int before = count_fds();

        make_fds(fds, 3);
        v = parse("{\"session\":7,\"iommuFileDescriptor\":2,\"ioasId\":3,"
                  "\"devices\":[{\"address\":\"0000:03:00.0\",\"fileDescriptor\":0,\"devId\":1,\"hwptId\":4}]}");
        CHECK_INT(client_lease_from_json(v, fds, 3, &l), 0);
        CHECK(l != NULL);
        if (l) {
                CHECK_INT(l->session, 7);
                CHECK_INT(l->ioas_id, 3);
                CHECK_INT(l->n_devices, 1);
                CHECK(fd_is_open(l->iommufd));
                CHECK_STR(l->devices[0].address, "0000:03:00.0");
                CHECK_INT(l->devices[0].dev_id, 1);
                CHECK_INT(l->devices[0].hwpt_id, 4);
                CHECK(fd_is_open(l->devices[0].fd));
        }
        /* Taken fds are marked in the array; the unused one is left to the caller. */
        CHECK_INT(fds[0], -EBADF);
        CHECK_INT(fds[2], -EBADF);
        CHECK(fd_is_open(fds[1]));
        safe_close(fds[1]);
        iommufd_broker_lease_free(l);
        json_decref(v);
        CHECK_INT(count_fds(), before);

        /* Out of range and used twice: refused, nothing leaks. */
        static const char *const bad[] = {
                "{\"session\":7,\"iommuFileDescriptor\":5,\"devices\":[{\"address\":\"0000:03:00.0\",\"fileDescriptor\":0}]}",
                "{\"session\":7,\"iommuFileDescriptor\":0,\"devices\":[{\"address\":\"0000:03:00.0\",\"fileDescriptor\":0}]}",
                "{\"session\":7,\"iommuFileDescriptor\":0,\"devices\":[{\"address\":\"0000:03:00.0\",\"fileDescriptor\":-1}]}",
                "{\"session\":7,\"iommuFileDescriptor\":0,\"devices\":[]}",
                "{\"iommuFileDescriptor\":0,\"devices\":[{\"address\":\"0000:03:00.0\",\"fileDescriptor\":1}]}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                l = NULL;
                make_fds(fds, 2);
                v = parse(bad[i]);
                CHECK_INT(client_lease_from_json(v, fds, 2, &l), -EBADMSG);
                CHECK(l == NULL);
                safe_close(fds[0]);
                safe_close(fds[1]);
                json_decref(v);
                CHECK_INT(count_fds(), before);
        }
}

/* --- errors --- */

static void test_error_names(void) {
        iommufd_broker b = {};
        int r;

        CHECK_STR(client_error_short_name("io.iommufd.Broker.DeviceBusy"), "DeviceBusy");
        CHECK_STR(client_error_short_name("io.iommufd.Broker1.Error.GroupNotViable"), "GroupNotViable");
        CHECK_STR(client_error_short_name("org.varlink.service.MethodNotFound"), "org.varlink.service.MethodNotFound");
        CHECK_STR(client_error_short_name("org.freedesktop.DBus.Error.AccessDenied"),
                  "org.freedesktop.DBus.Error.AccessDenied");
        CHECK_STR(client_error_short_name("io.iommufd.Broker.Sub.Thing"), "io.iommufd.Broker.Sub.Thing");
        CHECK_STR(client_error_short_name("io.iommufd.Broker."), "io.iommufd.Broker.");
        CHECK_STR(client_error_short_name("io.iommufd.Broker1.DeviceBusy"), "io.iommufd.Broker1.DeviceBusy");

        CHECK_INT(client_error_errno("DeviceBusy"), -EBUSY);
        CHECK_INT(client_error_errno("DeviceNotFound"), -ENODEV);
        CHECK_INT(client_error_errno("PermissionDenied"), -EPERM);
        CHECK_INT(client_error_errno("org.varlink.service.MethodNotFound"), -EOPNOTSUPP);
        CHECK_INT(client_error_errno("SomethingNew"), -EIO);

        r = client_set_remote_error(&b, "io.iommufd.Broker.DeviceBusy", "0000:03:00.0 is held by session 3");
        CHECK_INT(r, -EBUSY);
        CHECK_STR(iommufd_broker_error_name(&b), "DeviceBusy");
        CHECK_STR(iommufd_broker_error_message(&b), "0000:03:00.0 is held by session 3");
        client_clear_error(&b);
        CHECK(iommufd_broker_error_name(&b) == NULL);

        /* A varlink service error without "message" still says something useful. */
        json_t *p = parse("{\"parameter\":\"mode\"}");
        char msg[128];
        client_error_message_from_json(p, "x", msg, sizeof(msg));
        CHECK_STR(msg, "invalid parameter 'mode'");
        json_decref(p);

        CHECK_STR(iommufd_broker_mode_to_string(IOMMUFD_BROKER_MODE_UNBOUND), "unbound");
        CHECK_INT(iommufd_broker_mode_from_string("attached"), IOMMUFD_BROKER_MODE_ATTACHED);
        CHECK_INT(iommufd_broker_mode_from_string("Attached"), -EINVAL);
}

static void test_connect_failure(void) {
        iommufd_broker *b = (iommufd_broker *) 0x1;
        int before = count_fds();
        char longpath[200];

        CHECK_INT(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, "/nonexistent/iommufd-broker", &b), -ENOENT);
        CHECK(b == NULL);

        setenv("IOMMUFD_BROKER_SOCKET", "/nonexistent/from-env", 1);
        CHECK_INT(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, NULL, &b), -ENOENT);
        unsetenv("IOMMUFD_BROKER_SOCKET");

        memset(longpath, 'x', sizeof(longpath) - 1);
        longpath[0] = '/';
        longpath[sizeof(longpath) - 1] = 0;
        CHECK_INT(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, longpath, &b), -EINVAL);
        CHECK_INT(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, "", &b), -EINVAL);
        CHECK_INT(iommufd_broker_connect((iommufd_broker_transport) 9, NULL, &b), -EINVAL);
        CHECK(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_DBUS, "unix:path=/nonexistent/bus", &b) < 0);
        CHECK(b == NULL);
        CHECK_INT(count_fds(), before);
}

/* --- the varlink transport against a scripted fake broker --- */

static void send_json(int fd, const char *text, const int *fds, size_t n_fds) {
        json_t *v = json_loads(text, 0, NULL);

        if (v)
                varlink_wire_send(fd, v, fds, n_fds);
        json_decref(v);
}

static void fake_acquire(int fd, const json_t *params) {
        const char *device = json_string_value(json_array_get(json_object_get(params, "devices"), 0));
        int fds[3];

        if (device && streq(device, "0000:99:00.0")) {
                /* Names a descriptor that was never sent. */
                make_fds(fds, 1);
                send_json(fd, "{\"parameters\":{\"session\":7,\"iommuFileDescriptor\":0,"
                              "\"devices\":[{\"address\":\"0000:99:00.0\",\"fileDescriptor\":5}]}}", fds, 1);
                safe_close(fds[0]);
                return;
        }
        /* The request must say what the caller asked for. */
        if (!device || !streq(device, "0000:03:00.0") ||
            !streq_ptr(json_string_value(json_object_get(params, "mode")), "unbound") ||
            !json_is_true(json_object_get(params, "managed")) ||
            json_object_get(params, "allowInteractiveAuthentication")) {
                send_json(fd, "{\"error\":\"io.iommufd.Broker.InvalidParameter\","
                              "\"parameters\":{\"message\":\"unexpected Acquire parameters\"}}", NULL, 0);
                return;
        }
        /* Three fds, one of them (index 2) named nowhere: the client must close it. */
        make_fds(fds, 3);
        send_json(fd, "{\"parameters\":{\"session\":7,\"iommuFileDescriptor\":1,\"ioasId\":0,"
                      "\"devices\":[{\"address\":\"0000:03:00.0\",\"fileDescriptor\":0}]}}", fds, 3);
        for (size_t i = 0; i < 3; i++)
                safe_close(fds[i]);
}

static void fake_monitor(int fd) {
        send_json(fd, "{\"parameters\":{\"event\":\"ready\"},\"continues\":true}", NULL, 0);
        /* One event right behind "ready" (buffered with it), one after a pause
         * (arrives while the client polls). */
        send_json(fd, "{\"parameters\":{\"event\":\"lease-ended\",\"address\":\"0000:03:00.0\","
                      "\"session\":7,\"reason\":\"unplug-requested\"},\"continues\":true}", NULL, 0);
        usleep(100 * 1000);
        send_json(fd, "{\"parameters\":{\"event\":\"device-added\",\"address\":\"0000:05:00.0\"},"
                      "\"continues\":true}", NULL, 0);
}

/* Answer calls until the client hangs up, or stop answering on request. */
static void fake_serve(int fd) {
        VarlinkReader *reader = NULL;
        char device_reply[sizeof(full_device) + 64];

        snprintf(device_reply, sizeof(device_reply), "{\"parameters\":{\"device\":%s}}", full_device);
        if (varlink_reader_new(1 << 20, &reader) < 0)
                return;
        for (;;) {
                json_t *call = NULL;
                const json_t *params;
                const char *method, *address;
                int k = varlink_reader_next(reader, &call, NULL, NULL);

                if (k == 0 && varlink_reader_fill(reader, fd) > 0)
                        continue;
                if (k <= 0)
                        break;
                method = json_string_value(json_object_get(call, "method")) ?: "";
                params = json_object_get(call, "parameters");
                address = json_string_value(json_object_get(params, "address"));
                if (streq(method, "io.iommufd.Broker.ListDevices")) {
                        char reply[sizeof(full_device) + 64];
                        snprintf(reply, sizeof(reply), "{\"parameters\":{\"devices\":[%s]}}", full_device);
                        send_json(fd, reply, NULL, 0);
                } else if (streq(method, "io.iommufd.Broker.GetDevice") && streq_ptr(address, "0000:00:00.0"))
                        send_json(fd, "{\"error\":\"io.iommufd.Broker.DeviceNotFound\",\"parameters\":"
                                      "{\"device\":\"0000:00:00.0\",\"message\":\"no device 0000:00:00.0\"}}", NULL, 0);
                else if (streq(method, "io.iommufd.Broker.GetDevice") && streq_ptr(address, "hang-up"))
                        break;
                else if (streq(method, "io.iommufd.Broker.GetDevice"))
                        send_json(fd, device_reply, NULL, 0);
                else if (streq(method, "io.iommufd.Broker.Acquire"))
                        fake_acquire(fd, params);
                else if (streq(method, "io.iommufd.Broker.Release"))
                        send_json(fd, "{\"parameters\":{}}", NULL, 0);
                else if (streq(method, "io.iommufd.Broker.Monitor") && json_is_true(json_object_get(call, "more"))) {
                        fake_monitor(fd);
                        json_decref(call);
                        break;
                } else
                        send_json(fd, "{\"error\":\"org.varlink.service.MethodNotFound\","
                                      "\"parameters\":{\"method\":\"x\"}}", NULL, 0);
                json_decref(call);
        }
        varlink_reader_free(reader);
}

/* A listener in a child process, one grandchild per connection. */
static pid_t fake_server_start(const char *address) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(address));
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pid_t pid;

        memcpy(sa.sun_path + 1, address + 1, strlen(address) - 1);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, len) < 0 || listen(fd, 8) < 0) {
                safe_close(fd);
                return -1;
        }
        pid = fork();
        if (pid != 0) {
                safe_close(fd);
                return pid;
        }
        signal(SIGCHLD, SIG_IGN);
        for (;;) {
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

                if (c < 0)
                        _exit(0);
                if (fork() == 0) {
                        safe_close(fd);
                        fake_serve(c);
                        _exit(0);
                }
                safe_close(c);
        }
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

static void test_fake_server(void) {
        char address[64];
        iommufd_broker *b = NULL;
        iommufd_broker_device *devices = NULL, d;
        iommufd_broker_lease *l = NULL;
        iommufd_broker_event e = {};
        const char *devs[] = { "0000:03:00.0" }, *bad_devs[] = { "0000:99:00.0" };
        size_t n = 0;
        int before = count_fds(), event_fd;
        pid_t server;

        snprintf(address, sizeof(address), "@iommufd-broker-test-%d", (int) getpid());
        server = fake_server_start(address);
        CHECK(server > 0);
        if (server <= 0)
                return;

        CHECK_INT(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, address, &b), 0);
        if (!b)
                goto out;

        CHECK_INT(iommufd_broker_list(b, &devices, &n), 0);
        CHECK_INT(n, 1);
        if (n == 1)
                CHECK_INT(devices[0].holder_pid, 4242);
        free(devices);

        CHECK_INT(iommufd_broker_get(b, "0000:03:00.0", &d), 0);
        CHECK_STR(d.group_members, "0000:03:00.0 0000:03:00.1");
        CHECK_INT(iommufd_broker_get(b, "0000:00:00.0", &d), -ENODEV);
        CHECK_STR(iommufd_broker_error_name(b), "DeviceNotFound");
        CHECK_STR(iommufd_broker_error_message(b), "no device 0000:00:00.0");

        CHECK_INT(iommufd_broker_acquire(b, devs, 1, IOMMUFD_BROKER_MODE_UNBOUND, IOMMUFD_BROKER_ACQUIRE_MANAGED, &l), 0);
        CHECK(iommufd_broker_error_name(b) == NULL);
        if (l) {
                CHECK_INT(l->session, 7);
                CHECK(fd_is_cloexec(l->iommufd));
                CHECK(fd_is_cloexec(l->devices[0].fd));
                CHECK(l->iommufd != l->devices[0].fd);
                /* Two fds kept, the unnamed third one closed. */
                CHECK_INT(count_fds(), before + 1 + 2);
                iommufd_broker_lease_free(l);
                l = NULL;
        }
        CHECK_INT(iommufd_broker_acquire(b, devs, 1, IOMMUFD_BROKER_MODE_ATTACHED, 0, &l), -EINVAL);
        CHECK_STR(iommufd_broker_error_name(b), "InvalidParameter");
        CHECK_INT(iommufd_broker_acquire(b, bad_devs, 1, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l), -EBADMSG);
        CHECK_STR(iommufd_broker_error_name(b), "ProtocolError");
        CHECK(l == NULL);
        CHECK_INT(iommufd_broker_acquire(b, devs, 0, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l), -EINVAL);
        CHECK_STR(iommufd_broker_error_name(b), "InvalidArgument");
        CHECK_INT(iommufd_broker_acquire(b, devs, 1, (iommufd_broker_mode) 7, 0, &l), -EINVAL);
        CHECK_INT(iommufd_broker_release(b, NULL, 0), 0);
        CHECK_INT(count_fds(), before + 1);

        event_fd = iommufd_broker_event_fd(b);
        CHECK(event_fd >= 0);
        CHECK_INT(iommufd_broker_event_fd(b), event_fd);
        CHECK_INT(wait_event(b, &e), 1);
        CHECK_STR(e.type, "lease-ended");
        CHECK_INT(e.session, 7);
        CHECK_STR(e.reason, "unplug-requested");
        CHECK_INT(wait_event(b, &e), 1);
        CHECK_STR(e.type, "device-added");
        CHECK_STR(e.address, "0000:05:00.0");
        /* The fake closes the stream after that. */
        CHECK_INT(wait_event(b, &e), -ECONNRESET);
        CHECK_STR(iommufd_broker_error_name(b), "Disconnected");

        /* The call connection still works; then the broker hangs up on it. */
        CHECK_INT(iommufd_broker_get(b, "0000:03:00.0", &d), 0);
        CHECK_INT(iommufd_broker_get(b, "hang-up", &d), -ECONNRESET);
        CHECK_STR(iommufd_broker_error_name(b), "Disconnected");
        CHECK_INT(iommufd_broker_release(b, NULL, 0), -ECONNRESET);

        iommufd_broker_disconnect(b);
out:
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        CHECK_INT(count_fds(), before);
}

int main(void) {
        test_substitute();
        test_device_json();
        test_event_json();
        test_lease_json();
        test_error_names();
        test_connect_failure();
        test_fake_server();

        return test_result();
}
