/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transport floor of an Acquire+Release pair: servers that answer the
 * same two calls with replies of the same shape and the same two fds, and
 * do nothing else. The varlink one is an epoll loop on its own socket; the
 * D-Bus one is a plain sd-bus service on the bench's bus, so its calls make
 * the same hops through dbus-daemon as the broker's.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "bench-floor.h"
#include "bench-lib.h"

/* What the broker answers an attached Acquire of one device with. */
static const char acquire_reply[] =
        "{\"parameters\":{\"session\":1,\"iommuFileDescriptor\":0,\"ioasId\":1,\"devices\":"
        "[{\"address\":\"0000:01:00.0\",\"fileDescriptor\":1,\"devId\":1,\"hwptId\":2}]}}";
static const char release_reply[] = "{\"parameters\":{}}";

/* Two fresh fds, as the broker sends an iommufd and a device fd. */
static int send_with_fds(int fd, const char *text, size_t len, int source) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(2 * sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) text, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        int fds[2] = { fcntl(source, F_DUPFD_CLOEXEC, 3), fcntl(source, F_DUPFD_CLOEXEC, 3) };
        ssize_t n;

        control.h.cmsg_level = SOL_SOCKET;
        control.h.cmsg_type = SCM_RIGHTS;
        control.h.cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(&control.h), fds, sizeof(fds));
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        close(fds[0]);
        close(fds[1]);
        return n == (ssize_t) len ? 0 : -1;
}

/* One call at a time: the bench waits for each reply. */
static int answer(int fd, const char *call, size_t len, void *userdata) {
        static int source = -EBADF;    /* what the fds sent are copies of */

        if (len == 0 || call[len - 1] != 0)
                return -1;
        if (source < 0 && (source = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
                return -1;
        if (strstr(call, "Broker.Acquire"))
                return send_with_fds(fd, acquire_reply, sizeof(acquire_reply), source);
        return send(fd, release_reply, sizeof(release_reply), MSG_NOSIGNAL) == sizeof(release_reply) ? 0 : -1;
}

pid_t floor_varlink_start(const char *path) {
        return server_start(path, answer, NULL);
}

static int on_acquire(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        int source = *(int *) userdata, r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "ha(sha{sv})a{sv}", source, 1, "0000:01:00.0", source, 2,
                                          "dev_id", "u", 1, "hwpt_id", "u", 2, 2, "session", "t", (uint64_t) 1,
                                          "ioas_id", "u", 1);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        return r;
}

static int on_release(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable floor_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("AcquireDevices", "asa{sv}", "ha(sha{sv})a{sv}", on_acquire, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ReleaseDevices", "as", "", on_release, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static void dbus_serve(const char *bus_address, int ready_fd) {
        int source = open("/dev/null", O_RDWR | O_CLOEXEC);
        sd_bus *bus = NULL;

        if (sd_bus_new(&bus) < 0 || sd_bus_set_address(bus, bus_address) < 0 || sd_bus_set_bus_client(bus, 1) < 0 ||
            sd_bus_negotiate_fds(bus, 1) < 0 || sd_bus_start(bus) < 0 ||
            sd_bus_add_object_vtable(bus, NULL, FLOOR_DBUS_PATH, FLOOR_DBUS_INTERFACE, floor_vtable, &source) < 0 ||
            sd_bus_request_name(bus, FLOOR_DBUS_NAME, 0) < 0)
                _exit(1);
        (void) !write(ready_fd, "x", 1);
        close(ready_fd);
        for (;;) {
                int r = sd_bus_process(bus, NULL);

                if (r < 0)
                        _exit(0);
                if (r == 0 && sd_bus_wait(bus, UINT64_MAX) < 0)
                        _exit(0);
        }
}

pid_t floor_dbus_start(const char *bus_address) {
        int p[2];
        char c;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe: %m");
        pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                close(p[0]);
                dbus_serve(bus_address, p[1]);
        }
        children_add(pid);
        close(p[1]);
        if (read(p[0], &c, 1) != 1)
                die("the D-Bus floor server did not start");
        close(p[0]);
        return pid;
}
