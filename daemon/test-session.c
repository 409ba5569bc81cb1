/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lease state machine: the core's acquire rules, all-or-nothing, release
 * and cleanup, over the fake kernel and an in-memory inventory. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdstore.h"
#include "lease.h"
#include "manager.h"
#include "session.h"
#include "test.h"

typedef struct Recorded {
        int lease_acquired, lease_ended;
        char last_reason[64];
} Recorded;

static void on_event(Manager *m, const BrokerEvent *ev, void *userdata) {
        Recorded *rec = userdata;

        if (ev->type == BROKER_EVENT_LEASE_ACQUIRED)
                rec->lease_acquired++;
        if (ev->type == BROKER_EVENT_LEASE_ENDED) {
                rec->lease_ended++;
                snprintf(rec->last_reason, sizeof(rec->last_reason), "%s", ev->reason);
        }
}

static Device *make_device(const char *address, const char *driver, int group, const char *cdev, int minor,
                           const char *const *members) {
        Device *d = calloc(1, sizeof(*d));

        snprintf(d->address, sizeof(d->address), "%s", address);
        d->syspath = strdup("/nonexistent");
        d->driver = driver ? strdup(driver) : NULL;
        d->iommu_group = group;
        d->vfio_cdev = cdev ? strdup(cdev) : NULL;
        d->vfio_devnum = cdev ? makedev(511, minor) : 0;
        d->vendor_id = 0x1b36;
        d->device_id = 0x0010;
        d->class = 0x010802;
        for (const char *const *m = members; m && *m; m++)
                strv_extend(&d->group_members, *m);
        return d;
}

static Inventory *make_inventory(void) {
        Inventory *inv;
        Device *noiommu, *bridge;

        inventory_new_static(&inv, NULL, NULL);
        inventory_add(inv, make_device("0000:00:02.0", "vfio-pci", 1, "vfio0", 0,
                                       (const char *[]) { "0000:00:02.0", NULL }));
        inventory_add(inv, make_device("0000:00:03.0", "vfio-pci", 2, "vfio1", 1,
                                       (const char *[]) { "0000:00:03.0", "0000:00:03.1", NULL }));
        inventory_add(inv, make_device("0000:00:03.1", "vfio-pci", 2, "vfio2", 2,
                                       (const char *[]) { "0000:00:03.0", "0000:00:03.1", NULL }));
        inventory_add(inv, make_device("0000:00:04.0", "e1000e", 3, NULL, 0,
                                       (const char *[]) { "0000:00:04.0", NULL }));
        inventory_add(inv, make_device("0000:00:05.0", "vfio-pci", 4, "vfio3", 3,
                                       (const char *[]) { "0000:00:05.0", "0000:00:05.1", NULL }));
        inventory_add(inv, make_device("0000:00:05.1", "e1000e", 4, NULL, 0,
                                       (const char *[]) { "0000:00:05.0", "0000:00:05.1", NULL }));
        noiommu = make_device("0000:00:06.0", "vfio-pci", 5, "vfio4", 4, (const char *[]) { "0000:00:06.0", NULL });
        noiommu->noiommu = true;
        inventory_add(inv, noiommu);
        inventory_add(inv, make_device("0000:00:07.0", NULL, -1, NULL, 0, NULL));
        inventory_add(inv, make_device("0000:00:08.0", "vfio-pci", 6, "vfio5", 5,
                                       (const char *[]) { "0000:00:08.0", NULL }));
        bridge = make_device("0000:00:1f.0", "pcieport", 7, NULL, 0, (const char *[]) { "0000:00:1f.0", NULL });
        bridge->bridge = true;
        inventory_add(inv, bridge);
        inventory_add(inv, make_device("0000:00:09.0", "vfio-pci", 8, "vfio6", 6,
                                       (const char *[]) { "0000:00:09.0", NULL }));
        return inv;
}

static Session *new_session(Manager *m, uid_t uid) {
        Principal *p;
        Session *s;

        if (principal_new(uid, uid, getpid(), -EBADF, NULL, 0, "test.service", &p) < 0)
                abort();
        if (session_new(m, p, &s) < 0)
                abort();
        return s;
}

static BrokerErrorCode try_acquire(Session *s, AcquireMode mode, const char *const *devices, AcquireReply *ret,
                                   BrokerError *err) {
        AcquireReply reply = { .iommufd = -EBADF };
        int r;

        *err = (BrokerError) {};
        r = session_acquire(s, &(AcquireRequest) { .devices = (char **) devices, .mode = mode }, &reply, err);
        if (r < 0) {
                if (err->code == BROKER_OK)
                        printf("# unexpected failure without a typed error: %s\n", strerror(-r));
                return err->code ?: BROKER_ERROR_KERNEL_ERROR;
        }
        if (ret)
                *ret = reply;
        else
                acquire_reply_done(&reply);
        return BROKER_OK;
}

/* Run the loop until d has no lease (or 5 s): a releasing lease ends only
 * when the (fake) kernel says every fd is closed. Returns the time taken. */
static uint64_t run_until_free(Manager *m, const Device *d) {
        uint64_t start, now;

        sd_event_now(manager_event(m), CLOCK_MONOTONIC, &start);
        for (int i = 0; i < 500 && d->lease; i++)
                (void) sd_event_run(manager_event(m), 10 * 1000);
        sd_event_now(manager_event(m), CLOCK_MONOTONIC, &now);
        return now - start;
}

static ino_t inode_of(int fd) {
        struct stat st;
        return fstat(fd, &st) < 0 ? 0 : st.st_ino;
}

static void test_rules(Manager *m) {
        Session *root = new_session(m, 0), *other_root = new_session(m, 0), *user = new_session(m, 1000);
        BrokerError err;
        AcquireReply a = {}, b = {};
        const char *why;

        /* attached: ids are returned and the device shows as leased */
        CHECK(try_acquire(root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "00:02.0", NULL }, &a, &err) == BROKER_OK);
        CHECK(a.iommufd >= 0 && a.n_devices == 1 && a.devices[0].fd >= 0);
        CHECK(a.ioas_id != 0 && a.devices[0].dev_id != 0 && a.devices[0].hwpt_id != 0);
        CHECK(streq(a.devices[0].address, "0000:00:02.0"));
        Device *d = inventory_find(manager_inventory(m), "0000:00:02.0");
        CHECK(manager_device_state(m, d, &why) == DEVICE_STATE_LEASED);
        CHECK(d->hw_info.valid);

        /* the session's devices share one context: the second acquire returns the same file */
        CHECK(try_acquire(root, ACQUIRE_MODE_UNBOUND, (const char *[]) { "0000:00:09.0", NULL }, &b, &err) == BROKER_OK);
        CHECK(inode_of(a.iommufd) == inode_of(b.iommufd) && inode_of(a.iommufd) != 0);
        CHECK(b.devices[0].dev_id == 0 && b.devices[0].hwpt_id == 0);

        /* holder visibility */
        Holder h;
        CHECK(manager_device_holder(m, d, session_principal(root), &h) && h.uid == 0 &&
              h.session_id == session_id(root));
        CHECK(!manager_device_holder(m, d, session_principal(user), &h));

        /* busy: same device, and a group is never split */
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_BUSY);
        CHECK(try_acquire(root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:03.1", NULL }, NULL, &err) == BROKER_OK);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:03.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_BUSY);
        CHECK(strstr(err.message, "never split") != NULL);
        /* ... but the same session may take the rest of its group */
        CHECK(try_acquire(root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:03.0", NULL }, NULL, &err) == BROKER_OK);

        /* typed refusals, each naming the device */
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:05.0", NULL }, NULL, &err) ==
              BROKER_ERROR_GROUP_NOT_VIABLE);
        CHECK(strstr(err.message, "0000:00:05.1") && strstr(err.message, "e1000e"));
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:06.0", NULL }, NULL, &err) ==
              BROKER_ERROR_NOIOMMU_REFUSED);
        CHECK(streq(err.device, "0000:00:06.0"));
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:07.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_UNAVAILABLE);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:04.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_UNAVAILABLE);
        CHECK(strstr(err.message, "managed") != NULL);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:1f.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_UNAVAILABLE);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:0a.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_NOT_FOUND);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "not-a-device", NULL }, NULL, &err) ==
              BROKER_ERROR_INVALID_PARAMETER);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { NULL }, NULL, &err) ==
              BROKER_ERROR_INVALID_PARAMETER);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "00:08.0", "0000:00:08.0", NULL }, NULL,
                          &err) == BROKER_ERROR_INVALID_PARAMETER);
        CHECK(try_acquire(user, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:08.0", NULL }, NULL, &err) ==
              BROKER_ERROR_PERMISSION_DENIED);
        CHECK(strstr(err.message, "0000:00:08.0") != NULL);

        /* all or nothing: a good device and a bad one leave the good one free */
        Device *eight = inventory_find(manager_inventory(m), "0000:00:08.0");
        CHECK(try_acquire(other_root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:08.0", "0000:00:05.0", NULL },
                          NULL, &err) == BROKER_ERROR_GROUP_NOT_VIABLE);
        CHECK(eight->lease == NULL);
        CHECK(session_n_leases(other_root) == 0);

        /* release */
        CHECK(session_release(other_root, (char *[]) { "0000:00:02.0", NULL }, &err) == broker_error_errno(BROKER_ERROR_NOT_HELD));
        CHECK(err.code == BROKER_ERROR_NOT_HELD);
        CHECK(session_release(root, (char *[]) { "0000:00:02.0", NULL }, &err) == 0);
        CHECK(session_n_leases(root) == 3);

        /* the client still holds the fd: releasing, and nobody else gets it in any mode */
        CHECK(d->lease && manager_device_state(m, d, &why) == DEVICE_STATE_RELEASING);
        CHECK(why && strstr(why, "releasing (released)"));
        for (AcquireMode mode = 0; mode < _ACQUIRE_MODE_MAX; mode++) {
                CHECK(try_acquire(other_root, mode, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) ==
                      BROKER_ERROR_DEVICE_BUSY);
                CHECK(strstr(err.message, "is releasing") != NULL);
        }
        CHECK(try_acquire(root, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_BUSY);
        CHECK(session_release(root, (char *[]) { "0000:00:02.0", NULL }, &err) ==
              broker_error_errno(BROKER_ERROR_NOT_HELD));
        /* the holder is still shown while it holds the device */
        CHECK(manager_device_holder(m, d, session_principal(root), &h) && h.session_id == session_id(root));

        /* closing every fd ends it, and the device is free again */
        acquire_reply_done(&a);
        CHECK(run_until_free(m, d) < 1000 * 1000);
        CHECK(d->lease == NULL && manager_device_state(m, d, NULL) == DEVICE_STATE_AVAILABLE);
        CHECK(try_acquire(other_root, ACQUIRE_MODE_BOUND, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) ==
              BROKER_OK);
        session_destroy(other_root);
        CHECK(run_until_free(m, d) < 1000 * 1000 && d->lease == NULL);

        /* an unbound lease is decided by the /proc scan: it ends once b's fd closes */
        Device *nine = inventory_find(manager_inventory(m), "0000:00:09.0");
        CHECK(session_release(root, (char *[]) { "0000:00:09.0", NULL }, &err) == 0);
        /* until the scan worker has named who holds it (3 s at most, under load) */
        for (int i = 0; i < 300 && nine->lease && !nine->lease->held_by; i++)
                (void) sd_event_run(manager_event(m), 10 * 1000);
        CHECK(nine->lease && nine->lease->state == LEASE_STATE_RELEASING);
        LeaseInfo info;
        CHECK(manager_device_lease_info(m, nine, session_principal(root), &info));
        CHECK(streq(info.state, "releasing") && streq_ptr(info.reason, "released"));
        CHECK(info.held_by && strstr(info.held_by, "pid "));
        /* another uid sees the state, not who holds it */
        CHECK(manager_device_lease_info(m, nine, session_principal(user), &info) && !info.held_by);
        manager_device_state(m, nine, &why);
        CHECK(why && strstr(why, "releasing (released)") && !strstr(why, "pid"));
        acquire_reply_done(&b);
        CHECK(run_until_free(m, nine) < 3 * 1000 * 1000 && nine->lease == NULL);

        session_destroy(user);
        session_destroy(root);
        CHECK(inventory_find(manager_inventory(m), "0000:00:03.0")->lease == NULL);
}

static void test_cleanup_and_events(Manager *m) {
        Recorded rec = {};
        Subscription *sub;
        BrokerError err;
        int fds_before = test_count_open_fds();

        manager_subscribe(m, on_event, &rec, &sub);
        Session *s = new_session(m, 0);
        CHECK(try_acquire(s, ACQUIRE_MODE_BOUND, (const char *[]) { "0000:00:02.0", "0000:00:09.0", NULL }, NULL, &err) ==
              BROKER_OK);
        CHECK(rec.lease_acquired == 2);
        session_destroy(s);
        run_until_free(m, inventory_find(manager_inventory(m), "0000:00:09.0"));
        CHECK(rec.lease_ended == 2 && streq(rec.last_reason, "disconnected"));
        CHECK(test_count_open_fds() == fds_before);

        /* legacy group open elsewhere (the fake kernel's EBUSY on bind, like the real one) */
        s = new_session(m, 0);
        CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:08.0", NULL }, NULL, &err) ==
              BROKER_ERROR_DEVICE_BUSY);
        CHECK(strstr(err.message, "/dev/vfio/6") != NULL);
        /* ... and a kernel-side failure on the second device undoes the first */
        CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:09.0", "0000:00:08.0", NULL }, NULL,
                          &err) == BROKER_ERROR_DEVICE_BUSY);
        CHECK(inventory_find(manager_inventory(m), "0000:00:09.0")->lease == NULL);
        CHECK(session_n_leases(s) == 0);
        session_destroy(s);
        CHECK(test_count_open_fds() == fds_before);
        subscription_free(sub);
}

/* A client that acquires and releases again and again: the reply lends the
 * session's own iommufd (the transport sends the copy), the lease shares it,
 * so each round opens just the device, and every fd is gone after it. */
static void test_acquire_fds(Manager *m) {
        Device *d = inventory_find(manager_inventory(m), "0000:00:02.0");
        Session *s = new_session(m, 0);
        int first_iommufd = -EBADF, first_request_fd = -EBADF;
        BrokerError err;

        for (int round = 0; round < 3; round++) {
                AcquireReply a;
                int before = test_count_open_fds();

                CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, &a, &err) ==
                      BROKER_OK);
                if (round == 0)
                        first_iommufd = a.iommufd;
                else {
                        CHECK_MSG(a.iommufd == first_iommufd, "round %d: the reply lends the session's iommufd",
                                  round + 1);
                        /* Round 1 opened the context and the request eventfd. */
                        CHECK_MSG(test_count_open_fds() == before + 1, "round %d: only the device fd is new",
                                  round + 1);
                }
                CHECK(d->lease && d->lease->iommufd == a.iommufd);
                CHECK(d->lease->state == LEASE_STATE_LEASED);   /* a stale request (below) is no request */
                int request_fd = d->lease->request_fd;
                if (round > 0)
                        CHECK_MSG(request_fd == first_request_fd, "round %d: the kept request eventfd",
                                  round + 1);
                first_request_fd = request_fd;
                acquire_reply_done(&a);
                CHECK(a.iommufd == -EBADF && fcntl(first_iommufd, F_GETFD) >= 0);  /* still the session's */
                CHECK(session_release(s, NULL, &err) == 0);
                run_until_free(m, d);
                CHECK(d->lease == NULL);
                /* Kept between leases, still watched: a signal now is drained. */
                CHECK(eventfd_write(request_fd, 1) == 0);
                for (int i = 0; i < 3; i++)
                        (void) sd_event_run(manager_event(m), 0);
                eventfd_t v;
                CHECK(eventfd_read(request_fd, &v) < 0 && errno == EAGAIN);
        }
        /* A releasing lease keeps the context past its session. */
        AcquireReply a;
        CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, &a, &err) == BROKER_OK);
        session_destroy(s);
        CHECK(d->lease && d->lease->state == LEASE_STATE_RELEASING && fcntl(d->lease->iommufd, F_GETFD) >= 0);
        acquire_reply_done(&a);
        run_until_free(m, d);
        CHECK(d->lease == NULL && fcntl(first_iommufd, F_GETFD) < 0);
}

/* The session watches its holder once for all its leases: the holder's exit
 * releases every lease still leased, and a lease the session makes after
 * that is released at the next iteration. */
static void test_holder_exit(Manager *m) {
        Device *two = inventory_find(manager_inventory(m), "0000:00:02.0");
        Device *nine = inventory_find(manager_inventory(m), "0000:00:09.0");
        int fds_before;
        Recorded rec = {};
        Subscription *sub;
        Principal *p;
        Session *s;
        BrokerError err;
        AcquireReply a;
        pid_t child;
        int pidfd;

        /* Holder scans of the tests before are workers, reaped (their fds
         * closed) by the loop: let them go first. */
        for (int i = 0; i < 20; i++)
                (void) sd_event_run(manager_event(m), 10 * 1000);
        fds_before = test_count_open_fds();
        child = fork();
        if (child == 0) {
                pause();
                _exit(0);
        }
        pidfd = (int) syscall(SYS_pidfd_open, child, 0);
        CHECK(pidfd >= 0);
        CHECK(principal_new(0, 0, child, pidfd, NULL, 0, "test.service", &p) == 0);
        CHECK(session_new(m, p, &s) == 0);
        manager_subscribe(m, on_event, &rec, &sub);

        CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) == BROKER_OK);
        CHECK(try_acquire(s, ACQUIRE_MODE_BOUND, (const char *[]) { "0000:00:09.0", NULL }, &a, &err) == BROKER_OK);
        CHECK(two->lease && nine->lease && two->lease->pidfd == nine->lease->pidfd && two->lease->pidfd >= 0);
        for (int i = 0; i < 5; i++)
                (void) sd_event_run(manager_event(m), 0);
        CHECK(session_n_leases(s) == 2);        /* the holder lives */

        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        run_until_free(m, two);
        CHECK(two->lease == NULL && streq(rec.last_reason, "client-exited"));
        CHECK(nine->lease && nine->lease->state == LEASE_STATE_RELEASING &&
              streq_ptr(nine->lease->reason, "client-exited"));
        CHECK(session_n_leases(s) == 0);
        acquire_reply_done(&a);
        run_until_free(m, nine);
        CHECK(nine->lease == NULL);

        /* The connection outlived its holder: a new lease goes too. */
        CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) == BROKER_OK);
        CHECK(two->lease && two->lease->state == LEASE_STATE_LEASED);
        run_until_free(m, two);
        CHECK(two->lease == NULL && session_n_leases(s) == 0 && streq(rec.last_reason, "client-exited"));

        subscription_free(sub);
        session_destroy(s);
        /* The holder scan started for the releasing bound lease is a worker,
         * killed when the lease ended and reaped (its fds closed) by the loop. */
        for (int i = 0; i < 100 && test_count_open_fds() != fds_before; i++)
                (void) sd_event_run(manager_event(m), 10 * 1000);
        CHECK(test_count_open_fds() == fds_before);
}

/* Every datagram waiting on fd, "|"-separated, fds closed. */
static void drain_notify(int fd, char *out, size_t size) {
        char buf[256];
        ssize_t n;

        out[0] = 0;
        while ((n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) >= 0) {
                buf[n] = 0;
                for (char *c = buf; *c; c++)
                        if (*c == '\n')
                                *c = ' ';
                if (strlen(out) + strlen(buf) + 2 < size) {
                        strcat(out, buf);
                        strcat(out, "|");
                }
        }
}

/* A client that acquires and releases again and again: the session's
 * iommufd and the device's request eventfd go into the fd store once, and
 * leave it once the session is gone. */
static void test_fd_store_per_session(Manager *m) {
        char dir[] = "/tmp/test-session-XXXXXX", path[64], seen[2048];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Device *d = inventory_find(manager_inventory(m), "0000:00:02.0");
        BrokerError err;
        int fd;

        CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/notify", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        setenv("NOTIFY_SOCKET", path, 1);
        fdstore_reset();

        Session *s = new_session(m, 0);
        for (int round = 0; round < 3; round++) {
                CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", NULL }, NULL, &err) ==
                      BROKER_OK);
                CHECK(session_release(s, NULL, &err) == 0);
                run_until_free(m, d);
                drain_notify(fd, seen, sizeof(seen));
                if (round == 0)
                        CHECK_MSG(strstr(seen, "FDNAME=iommufd-") && strstr(seen, "FDNAME=request.0000_00_02.0-") &&
                                  !strstr(seen, "FDSTOREREMOVE"), "fd store, first lease: pushed, kept: %s", seen);
                else
                        CHECK_MSG(seen[0] == 0, "fd store, lease %d of the session: nothing sent: %s", round + 1,
                                  seen);
        }
        session_destroy(s);
        drain_notify(fd, seen, sizeof(seen));
        CHECK_MSG(strstr(seen, "FDSTOREREMOVE=1 FDNAME=iommufd-") &&
                  strstr(seen, "FDSTOREREMOVE=1 FDNAME=request.0000_00_02.0-"),
                  "fd store: both removed with the session: %s", seen);

        unsetenv("NOTIFY_SOCKET");
        fdstore_reset();
        close(fd);
        unlink(path);
        rmdir(dir);
}

static void test_limits(sd_event *e) {
        Manager *m;
        BrokerError err;

        manager_new(e, &(ManagerConfig) { .kernel = &kernel_ops_fake, .max_devices_per_session = 1,
                                          .inventory = make_inventory(), .policy = NULL,
                                          .policy_path = "/nonexistent/policy.json",
                                          .policy_dropin_dir = "/nonexistent/policy.d" }, &m);
        Session *s = new_session(m, 0);
        CHECK(try_acquire(s, ACQUIRE_MODE_ATTACHED, (const char *[]) { "0000:00:02.0", "0000:00:09.0", NULL }, NULL,
                          &err) == BROKER_ERROR_LIMIT_EXCEEDED);
        session_destroy(s);
        manager_free(m);
}

int main(void) {
        sd_event *e;
        Manager *m;
        int r;

        /* The fake kernel reads these on first use. */
        setenv("IOMMUFD_BROKER_FAKE_GROUP_OPEN", "0000:00:08.0", 1);

        sd_event_new(&e);
        r = manager_new(e, &(ManagerConfig) { .kernel = &kernel_ops_fake, .inventory = make_inventory(),
                                              .policy_path = "/nonexistent/policy.json",
                                              .policy_dropin_dir = "/nonexistent/policy.d" }, &m);
        CHECK(r == 0);
        if (r < 0)
                return 1;

        test_rules(m);
        test_cleanup_and_events(m);
        test_acquire_fds(m);
        test_holder_exit(m);
        test_fd_store_per_session(m);
        manager_free(m);
        test_limits(e);
        sd_event_unref(e);

        return test_result();
}
