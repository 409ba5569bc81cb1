/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small VMM-like client of libiommufd-broker for the integration tests
 * (test-integration.py drives it). It does what a VMM would, checks nothing
 * itself beyond "the call returned", and prints what it saw as one JSON
 * object on stdout for the test to assert on: the names behind the fds it
 * received (readlink of /proc/self/fd/N), their inodes and flags, ids, typed
 * error names, and events.
 *
 *   integ-client SOCKET list
 *   integ-client SOCKET get ADDR
 *   integ-client SOCKET acquire MODE DEV...     acquire, look, release (events on)
 *   integ-client SOCKET two-acquires            two acquires share one iommufd
 *   integ-client SOCKET error MODE DEV...       an acquire that must fail
 *   integ-client SOCKET release-error DEV       a release that must fail
 *   integ-client SOCKET events-other            events of another handle's lease
 *
 * Exit status: 0 when the JSON was printed; 1 on an unexpected failure
 * (printed on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "iommufd-broker.h"

static const char *socket_path;

static int fail(const char *what, iommufd_broker *b, int r) {
        fprintf(stderr, "integ-client: %s failed: %s (%s: %s)\n", what, strerror(-r),
                b && iommufd_broker_error_name(b) ? iommufd_broker_error_name(b) : "-",
                b && iommufd_broker_error_message(b) ? iommufd_broker_error_message(b) : "-");
        return 1;
}

static iommufd_broker *connect_or_die(void) {
        iommufd_broker *b = NULL;
        int r = iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, socket_path, &b);

        if (r < 0) {
                fprintf(stderr, "integ-client: connect to %s: %s\n", socket_path, strerror(-r));
                exit(1);
        }
        return b;
}

static void print_json(json_t *o) {
        char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);

        if (!s) {
                fprintf(stderr, "integ-client: out of memory\n");
                exit(1);
        }
        printf("%s\n", s);
        free(s);
        json_decref(o);
}

/* What the fd is, as the client sees it. */
static json_t *fd_json(int fd) {
        char link[64], target[PATH_MAX];
        struct stat st;
        ssize_t n;
        int flags;

        if (fd < 0)
                return json_pack("{s:i}", "fd", fd);
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = 0;
        flags = fcntl(fd, F_GETFD);
        if (fstat(fd, &st) < 0)
                st.st_ino = 0;
        return json_pack("{s:i, s:s, s:I, s:b}", "fd", fd, "link", target, "inode", (json_int_t) st.st_ino,
                         "cloexec", flags >= 0 && (flags & FD_CLOEXEC));
}

static json_t *device_json(const iommufd_broker_device *d) {
        return json_pack("{s:s, s:i, s:i, s:i, s:s, s:i, s:s, s:s, s:b, s:s, s:s, s:I, s:i}",
                         "address", d->address, "vendor_id", d->vendor_id, "device_id", d->device_id,
                         "class", (int) d->class_code, "driver", d->driver, "iommu_group", d->iommu_group,
                         "group_members", d->group_members, "vfio_cdev", d->vfio_cdev, "noiommu", d->noiommu,
                         "state", d->state, "reason", d->reason, "holder_session", (json_int_t) d->holder_session,
                         "holder_uid", d->holder_session ? (int) d->holder_uid : -1);
}

static json_t *error_json(iommufd_broker *b, int r) {
        const char *name = iommufd_broker_error_name(b), *message = iommufd_broker_error_message(b);

        return json_pack("{s:i, s:s?, s:s?}", "r", r, "name", name, "message", message);
}

static json_t *lease_json(const iommufd_broker_lease *l) {
        json_t *devices = json_array();

        for (size_t i = 0; i < l->n_devices; i++) {
                json_t *o = fd_json(l->devices[i].fd);

                json_object_set_new(o, "address", json_string(l->devices[i].address));
                json_object_set_new(o, "dev_id", json_integer(l->devices[i].dev_id));
                json_object_set_new(o, "hwpt_id", json_integer(l->devices[i].hwpt_id));
                json_array_append_new(devices, o);
        }
        return json_pack("{s:I, s:o, s:i, s:o}", "session", (json_int_t) l->session, "iommufd",
                         fd_json(l->iommufd), "ioas_id", (int) l->ioas_id, "devices", devices);
}

static json_t *event_json(const iommufd_broker_event *e) {
        return json_pack("{s:s, s:s, s:I, s:s}", "type", e->type, "address", e->address, "session",
                         (json_int_t) e->session, "reason", e->reason);
}

/* Collect lease events into events until `want` lease-ended events arrived or
 * the timeout passed, polling the event fd as a VMM's loop would. */
static int collect_events(iommufd_broker *b, json_t *events, int want_ended, int timeout_ms) {
        struct timespec start, now;
        int fd = iommufd_broker_event_fd(b), ended = 0, r;

        if (fd < 0)
                return fd;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                iommufd_broker_event e;

                while ((r = iommufd_broker_next_event(b, &e)) > 0) {
                        if (strncmp(e.type, "lease-", 6) != 0)
                                continue;
                        json_array_append_new(events, event_json(&e));
                        ended += strcmp(e.type, "lease-ended") == 0;
                }
                if (r < 0)
                        return r;
                if (ended >= want_ended)
                        return 0;
                clock_gettime(CLOCK_MONOTONIC, &now);
                int left = timeout_ms - (int) ((now.tv_sec - start.tv_sec) * 1000 +
                                               (now.tv_nsec - start.tv_nsec) / 1000000);
                if (left <= 0)
                        return 0;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, left) < 0 && errno != EINTR)
                        return -errno;
        }
}

static int cmd_list(void) {
        iommufd_broker *b = connect_or_die();
        iommufd_broker_device *devs = NULL;
        size_t n = 0;
        json_t *a = json_array();
        int r;

        r = iommufd_broker_list(b, &devs, &n);
        if (r < 0)
                return fail("list", b, r);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, device_json(&devs[i]));
        free(devs);
        print_json(json_pack("{s:o}", "devices", a));
        iommufd_broker_disconnect(b);
        return 0;
}

static int cmd_get(const char *address) {
        iommufd_broker *b = connect_or_die();
        iommufd_broker_device d;
        int r;

        r = iommufd_broker_get(b, address, &d);
        if (r < 0)
                print_json(json_pack("{s:o}", "error", error_json(b, r)));
        else
                print_json(json_pack("{s:o}", "device", device_json(&d)));
        iommufd_broker_disconnect(b);
        return 0;
}

static json_t *states_json(iommufd_broker *b, char **devices, int n) {
        json_t *o = json_object();

        for (int i = 0; i < n; i++) {
                iommufd_broker_device d;
                int r = iommufd_broker_get(b, devices[i], &d);

                json_object_set_new(o, devices[i], r < 0 ? error_json(b, r) : device_json(&d));
        }
        return o;
}

/* Acquire, report the fds, check the states, release, collect the events. */
static int cmd_acquire(const char *mode_name, char **devices, int n) {
        iommufd_broker *b = connect_or_die();
        iommufd_broker_lease *l = NULL;
        json_t *events = json_array(), *lease, *leased, *released;
        int mode = iommufd_broker_mode_from_string(mode_name), r;

        if (mode < 0)
                return fail("mode_from_string", NULL, mode);
        /* Subscribe first: nothing after event_fd() returns is missed. */
        r = iommufd_broker_event_fd(b);
        if (r < 0)
                return fail("event_fd", b, r);

        r = iommufd_broker_acquire(b, (const char *const *) devices, n, mode, 0, &l);
        if (r < 0)
                return fail("acquire", b, r);
        lease = lease_json(l);
        leased = states_json(b, devices, n);

        r = iommufd_broker_release(b, NULL, 0);
        if (r < 0)
                return fail("release", b, r);
        released = states_json(b, devices, n);
        /* Our own copies still hold the (fake) kernel's binding; let go too. */
        iommufd_broker_lease_free(l);

        r = collect_events(b, events, n, 5000);
        if (r < 0)
                return fail("events", b, r);
        print_json(json_pack("{s:s, s:o, s:o, s:o, s:o}", "mode", iommufd_broker_mode_to_string(mode),
                             "lease", lease, "leased", leased, "released", released, "events", events));
        iommufd_broker_disconnect(b);
        return 0;
}

static int cmd_two_acquires(void) {
        iommufd_broker *b = connect_or_die();
        iommufd_broker_lease *l1 = NULL, *l2 = NULL;
        const char *first[] = { "0000:00:02.0" }, *second[] = { "00:03.0", "00:03.1" };
        int r;

        r = iommufd_broker_acquire(b, first, 1, IOMMUFD_BROKER_MODE_ATTACHED, 0, &l1);
        if (r < 0)
                return fail("first acquire", b, r);
        r = iommufd_broker_acquire(b, second, 2, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l2);
        if (r < 0)
                return fail("second acquire", b, r);
        print_json(json_pack("{s:o, s:o}", "first", lease_json(l1), "second", lease_json(l2)));
        iommufd_broker_lease_free(l1);
        iommufd_broker_lease_free(l2);
        iommufd_broker_disconnect(b);
        return 0;
}

static int cmd_error(const char *mode_name, char **devices, int n) {
        iommufd_broker *b = connect_or_die();
        iommufd_broker_lease *l = NULL;
        int mode = iommufd_broker_mode_from_string(mode_name), r;

        if (mode < 0)
                return fail("mode_from_string", NULL, mode);
        r = iommufd_broker_acquire(b, (const char *const *) devices, n, mode, 0, &l);
        if (r >= 0) {
                print_json(json_pack("{s:o}", "lease", lease_json(l)));
                iommufd_broker_lease_free(l);
        } else
                print_json(json_pack("{s:o}", "error", error_json(b, r)));
        iommufd_broker_disconnect(b);
        return 0;
}

static int cmd_release_error(const char *device) {
        iommufd_broker *b = connect_or_die();
        const char *devs[] = { device };
        int r;

        r = iommufd_broker_release(b, devs, 1);
        print_json(json_pack("{s:o}", "error", r < 0 ? error_json(b, r) : json_null()));
        iommufd_broker_disconnect(b);
        return 0;
}

/* Handle a watches; handle b acquires and releases 02.0, then acquires 03.0
 * and disconnects. */
static int cmd_events_other(void) {
        iommufd_broker *watcher = connect_or_die(), *b = connect_or_die();
        iommufd_broker_lease *l = NULL;
        const char *d1[] = { "0000:00:02.0" }, *d2[] = { "0000:00:03.0" };
        json_t *events = json_array();
        int r;

        r = iommufd_broker_event_fd(watcher);
        if (r < 0)
                return fail("event_fd", watcher, r);

        r = iommufd_broker_acquire(b, d1, 1, IOMMUFD_BROKER_MODE_BOUND, 0, &l);
        if (r < 0)
                return fail("acquire 02.0", b, r);
        iommufd_broker_lease_free(l);
        r = iommufd_broker_release(b, d1, 1);
        if (r < 0)
                return fail("release 02.0", b, r);
        r = iommufd_broker_acquire(b, d2, 1, IOMMUFD_BROKER_MODE_UNBOUND, 0, &l);
        if (r < 0)
                return fail("acquire 03.0", b, r);
        iommufd_broker_lease_free(l);
        iommufd_broker_disconnect(b);

        r = collect_events(watcher, events, 2, 5000);
        if (r < 0)
                return fail("events", watcher, r);
        print_json(json_pack("{s:o}", "events", events));
        iommufd_broker_disconnect(watcher);
        return 0;
}

int main(int argc, char *argv[]) {
        const char *cmd;

        if (argc < 3) {
                fprintf(stderr, "usage: integ-client SOCKET COMMAND [ARGS...]\n");
                return 2;
        }
        socket_path = argv[1];
        cmd = argv[2];
        setvbuf(stdout, NULL, _IOLBF, 0);

        if (strcmp(cmd, "list") == 0 && argc == 3)
                return cmd_list();
        if (strcmp(cmd, "get") == 0 && argc == 4)
                return cmd_get(argv[3]);
        if (strcmp(cmd, "acquire") == 0 && argc >= 5)
                return cmd_acquire(argv[3], argv + 4, argc - 4);
        if (strcmp(cmd, "two-acquires") == 0 && argc == 3)
                return cmd_two_acquires();
        if (strcmp(cmd, "error") == 0 && argc >= 5)
                return cmd_error(argv[3], argv + 4, argc - 4);
        if (strcmp(cmd, "release-error") == 0 && argc == 4)
                return cmd_release_error(argv[3]);
        if (strcmp(cmd, "events-other") == 0 && argc == 3)
                return cmd_events_other();
        fprintf(stderr, "integ-client: unknown command or wrong arguments: %s\n", cmd);
        return 2;
}
