/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VM tier's lease cases: `vm-leases CASE`, run as root in the guest by
 * run-suite.sh with the real daemon running (BROKER_SOCKET, BROKER_PID).
 * Each checks what issue 7 asks of a lease against the real 7.3 kernel:
 * it lasts until every fd of the device is closed, whatever the client or
 * the daemon does in between. Clients run as uid 65534 without capabilities.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "iommufd-broker.h"
#include "vmtest.h"

#define RESTARTED_PID_FILE "/run/vm-broker.pid"
#define RESTARTED_LOG      "/run/vm-broker-restarted.log"

static const char *broker_socket;
static pid_t broker_pid;
static char e1000e[16];
static char edu[16];

static void broker_disconnectp(iommufd_broker **b) {
        iommufd_broker_disconnect(*b);
}
static void lease_freep(iommufd_broker_lease **l) {
        iommufd_broker_lease_free(*l);
}
#define _cleanup_broker_ _cleanup_(broker_disconnectp)
#define _cleanup_lease_ _cleanup_(lease_freep)

static iommufd_broker *connect_or_fail(void) {
        iommufd_broker *b = NULL;
        CHECK_OK(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, broker_socket, &b), "connect");
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
        CHECK(r >= 0, "acquire %s: %s: %s", bdf, strna(iommufd_broker_error_name(b)),
              strna(iommufd_broker_error_message(b)));
        return l;
}

static void expect_busy(iommufd_broker *b, const char *bdf, iommufd_broker_mode mode, const char *state) {
        iommufd_broker_lease *l = NULL;
        int r = acquire(b, bdf, mode, 0, &l);
        CHECK(r < 0, "acquire of %s in mode %d succeeded while %s", bdf, mode, state);
        CHECK(streq_ptr(iommufd_broker_error_name(b), "DeviceBusy"), "acquire: expected DeviceBusy, got %s: %s",
              strna(iommufd_broker_error_name(b)), strna(iommufd_broker_error_message(b)));
        CHECK(strstr(strna(iommufd_broker_error_message(b)), state), "DeviceBusy does not name '%s': %s", state,
              iommufd_broker_error_message(b));
        vm_log("refused as expected (mode %d): %s", mode, iommufd_broker_error_message(b));
}

static void get_or_fail(iommufd_broker *b, const char *bdf, iommufd_broker_device *d) {
        CHECK_OK(iommufd_broker_get(b, bdf, d), "GetDevice");
}

/* Wait until bdf is in state; returns the ms it took. */
static uint64_t wait_state(iommufd_broker *b, const char *bdf, const char *state, unsigned timeout_ms) {
        uint64_t start = now_ms();
        iommufd_broker_device d;
        for (;;) {
                get_or_fail(b, bdf, &d);
                if (streq(d.state, state))
                        return now_ms() - start;
                CHECK(now_ms() < start + timeout_ms, "%s still %s (%s) after %u ms, expected %s", bdf, d.state,
                      d.reason, timeout_ms, state);
                usleep(10 * 1000);
        }
}

static void expect_driver(const char *bdf, const char *driver, unsigned timeout_ms) {
        int r = pci_wait_driver(bdf, driver, timeout_ms);
        char cur[64] = "?";
        pci_driver(bdf, cur, sizeof cur);
        CHECK(r >= 0, "%s is on '%s' after %u ms, expected '%s'", bdf, cur, timeout_ms, driver);
}

static void read_override(const char *bdf, char *buf, size_t n) {
        char path[128];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver_override", bdf);
        CHECK_OK(read_file_str(path, buf, n), "read driver_override");
}

static void write_override(const char *bdf, const char *value) {
        char path[128];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver_override", bdf);
        CHECK_OK(write_file_str(path, value), "write driver_override");
}

/* Pipes to step a client: it writes one byte when ready, waits for one. */
typedef struct Sync {
        int ready[2];
        int go[2];
        pid_t helper;                   /* a process the client started, reported back */
} Sync;

static void sync_init(Sync *s) {
        CHECK(pipe2(s->ready, O_CLOEXEC) == 0 && pipe2(s->go, O_CLOEXEC) == 0, "pipe: %m");
}
static void sync_child_ready(Sync *s, pid_t helper) {
        CHECK(write(s->ready[1], &helper, sizeof helper) == sizeof helper, "write: %m");
}
static void sync_child_wait(Sync *s) {
        char c;
        CHECK(read(s->go[0], &c, 1) >= 0, "read: %m");
}
static void sync_parent_wait(Sync *s) {
        struct pollfd p = { .fd = s->ready[0], .events = POLLIN };
        CHECK(poll(&p, 1, 20000) == 1, "client not ready after 20 s");
        CHECK(read(s->ready[0], &s->helper, sizeof s->helper) == sizeof s->helper, "client died before ready");
}
static void sync_parent_go(Sync *s) {
        CHECK(write(s->go[1], "g", 1) == 1, "write: %m");
}

/* A process that keeps fd open (inherited) until killed. */
static pid_t spawn_keeper(int fd) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %m");
        if (pid == 0) {
                int keep = fcntl(fd, F_DUPFD, 100);     /* not O_CLOEXEC: it must stay */
                (void) keep;
                for (;;)
                        pause();
        }
        return pid;
}

/* Park fd in flight in a socket of our own: no /proc/PID/fd shows it. */
static void park_fd(int sock, int fd) {
        char cmsg_buf[CMSG_SPACE(sizeof(int))] = {};
        struct iovec iov = { .iov_base = (char *) "x", .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cmsg_buf,
                             .msg_controllen = sizeof(cmsg_buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        CHECK(sendmsg(sock, &mh, 0) == 1, "sendmsg: %m");
}

/* The fd parked by park_fd() on the other end of the pair. */
static int unpark_fd(int sock) {
        char cmsg_buf[CMSG_SPACE(sizeof(int))] = {}, byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cmsg_buf,
                             .msg_controllen = sizeof(cmsg_buf) };
        int fd;

        CHECK(recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) == 1 && CMSG_FIRSTHDR(&mh), "recvmsg: %m");
        memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
        return fd;
}

/* ------------------------------------------- release while still holding */

static int client_release_holding(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        iommufd_broker_device d;
        uint32_t type;
        uint64_t caps;

        CHECK_OK(iommufd_broker_release(b, NULL, 0), "Release with the fds still open");
        get_or_fail(b, edu, &d);
        CHECK(streq(d.state, "releasing"), "after Release, fds open: state %s (%s)", d.state, d.reason);
        vm_log("released, fds open: %s (%s)", d.state, d.reason);
        /* The kernel still has the device bound to our context: the broker's
         * probe of the same dev_id must say so too. */
        CHECK_OK(iommu_hw_info(l->iommufd, l->devices[0].dev_id, &type, &caps), "HW_INFO while still open");

        sync_child_ready(s, 0);
        sync_child_wait(s);     /* another session tries all three modes */

        /* Keep the iommufd, close the device: the kernel drops dev_id. */
        int iommufd = TAKE_FD(l->iommufd);
        uint32_t dev_id = l->devices[0].dev_id;
        uint64_t t0 = now_ms();
        iommufd_broker_lease_free(l);
        int r = iommu_hw_info(iommufd, dev_id, &type, &caps);
        CHECK(r == -ENOENT, "IOMMU_GET_HW_INFO after the device fd closed: expected ENOENT, got %d", r);
        uint64_t ms = wait_state(b, edu, "available", 1000);
        vm_log("closed: HW_INFO says ENOENT at once; lease ended %llu ms after close (%llu ms total)",
               (unsigned long long) ms, (unsigned long long) (now_ms() - t0));
        safe_close(iommufd);

        /* And the device works for the next one, end to end. */
        _cleanup_lease_ iommufd_broker_lease *l2 = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        edu_dma_roundtrip(l2->devices[0].fd, l2->iommufd, l2->ioas_id);
        CHECK_OK(iommufd_broker_release(b, NULL, 0), "release");
        return 0;
}

static int client_other_session(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        expect_busy(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, "releasing");
        expect_busy(b, edu, IOMMUFD_BROKER_MODE_BOUND, "releasing");
        expect_busy(b, edu, IOMMUFD_BROKER_MODE_UNBOUND, "releasing");
        return 0;
}

static int case_release_holding(void) {
        CHECK(edu[0], "no edu");
        Sync s;
        sync_init(&s);
        pid_t holder = client_spawn(client_release_holding, &s);
        sync_parent_wait(&s);
        int r = client_run(client_other_session, NULL, "second session");
        sync_parent_go(&s);
        CHECK_OK(client_wait(holder, "holder"), "holder");
        CHECK_OK(r, "second session refused in all three modes");
        return 0;
}

/* ------------------------- unbound: what tells the broker it is free */

static int client_unbound_free(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_UNBOUND, 0);
        uint32_t dev_id, ioas_id, hwpt_id, type;
        uint64_t caps;

        /* As QEMU does: bind into the broker's context itself. */
        CHECK_OK(vfio_bind(l->devices[0].fd, l->iommufd, &dev_id), "bind by the client");
        CHECK_OK(ioas_alloc(l->iommufd, &ioas_id), "IOAS_ALLOC");
        CHECK_OK(vfio_attach(l->devices[0].fd, ioas_id, &hwpt_id), "attach");
        CHECK_OK(iommufd_broker_release(b, NULL, 0), "release");
        wait_state(b, edu, "releasing", 1000);

        int iommufd = TAKE_FD(l->iommufd);
        uint64_t t0 = now_ms();
        iommufd_broker_lease_free(l);
        int r = iommu_hw_info(iommufd, dev_id, &type, &caps);
        CHECK(r == -ENOENT, "unbound mode, client-bound: HW_INFO after close gives %d, expected ENOENT", r);
        uint64_t ms = wait_state(b, edu, "available", 5000);
        vm_log("unbound: client's dev_id %u is ENOENT once closed; the broker (/proc scan + test bind) saw "
               "the device free after %llu ms", dev_id, (unsigned long long) ms);
        (void) t0;
        safe_close(iommufd);
        return 0;
}

static int case_unbound_free(void) {
        CHECK(edu[0], "no edu");
        return client_run(client_unbound_free, NULL, "unbound client");
}

/* ---------- adv2: a bound fd hidden in a socket keeps the lease releasing */

/* The client binds the unbound edu itself (as QEMU does), parks the device
 * fd in flight in a socketpair of its own (no /proc/PID/fd shows it),
 * closes its copy and releases. The kernel still has the device bound: the
 * broker's test bind gets EINVAL. It used to end the lease after three such
 * scans and offer the edu again while the client could take the bound fd
 * back out and DMA; the lease must stay releasing until the fd is closed. */
static int client_hidden_bound(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_UNBOUND, 0);
        uint32_t dev_id, ioas_id, hwpt_id;
        iommufd_broker_device d;
        int sp[2];

        CHECK_OK(vfio_bind(l->devices[0].fd, l->iommufd, &dev_id), "bind by the client");
        CHECK_OK(ioas_alloc(l->iommufd, &ioas_id), "IOAS_ALLOC");
        CHECK_OK(vfio_attach(l->devices[0].fd, ioas_id, &hwpt_id), "attach");
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0, "socketpair: %m");
        park_fd(sp[0], l->devices[0].fd);
        int iommufd = TAKE_FD(l->iommufd);
        iommufd_broker_lease_free(l);           /* closes our copy of the device fd */
        CHECK_OK(iommufd_broker_release(b, NULL, 0), "release");
        wait_state(b, edu, "releasing", 1000);
        usleep(3500 * 1000);                    /* scans at 0.1, 0.2, 0.4, 0.8, 1.6 s */
        get_or_fail(b, edu, &d);
        CHECK(streq(d.state, "releasing"), "with the bound fd in flight the edu is %s (%s)", d.state, d.reason);

        /* It is still ours: take it back and DMA through it. */
        int devfd = unpark_fd(sp[1]);
        edu_dma_roundtrip(devfd, iommufd, ioas_id);
        vm_log("hidden-bound: the fd came back out of the socket, bound, and did DMA; the edu stayed releasing");
        safe_close(devfd);
        safe_close(sp[0]);
        safe_close(sp[1]);
        uint64_t ms = wait_state(b, edu, "available", 10000);
        vm_log("hidden-bound: available %llu ms after the fd closed", (unsigned long long) ms);
        safe_close(iommufd);
        return 0;
}

static int case_hidden_bound(void) {
        CHECK(edu[0], "no edu");
        return client_run(client_hidden_bound, NULL, "hidden-bound client");
}

/* ------------------------------ the holder exits, a child keeps the fds */

static int client_child_keeps(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_ATTACHED,
                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);
        /* The `iommufdctl run -- qemu` shape: the child keeps the device. */
        pid_t keeper = spawn_keeper(l->devices[0].fd);
        sync_child_ready(s, keeper);
        _exit(0);               /* the holder goes; its connection closes */
}

static int case_child_keeps(void) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_device d;
        Sync s;

        expect_driver(e1000e, "e1000e", 0);
        sync_init(&s);
        pid_t holder = client_spawn(client_child_keeps, &s);
        sync_parent_wait(&s);
        CHECK_OK(client_wait(holder, "holder"), "holder exited");
        wait_state(b, e1000e, "releasing", 2000);
        get_or_fail(b, e1000e, &d);
        CHECK(strstr(d.reason, "client-exited") || strstr(d.reason, "disconnected"), "reason: %s", d.reason);
        CHECK(d.holder_uid == CLIENT_UID, "holder uid %u", (unsigned) d.holder_uid);
        vm_log("holder gone, child %d keeps the fd: %s (%s)", (int) s.helper, d.state, d.reason);
        /* The device stays on vfio-pci while the child can still DMA. */
        usleep(500 * 1000);
        expect_driver(e1000e, "vfio-pci", 0);
        get_or_fail(b, e1000e, &d);
        CHECK(streq(d.state, "releasing"), "still releasing: %s", d.state);

        uint64_t t0 = now_ms();
        CHECK(kill(s.helper, SIGKILL) == 0, "kill keeper: %m");
        CHECK(waitpid(s.helper, NULL, 0) == s.helper || errno == ECHILD, "reap keeper: %m");
        expect_driver(e1000e, "e1000e", 10000);
        wait_state(b, e1000e, "available", 5000);
        vm_log("child gone: back on e1000e after %llu ms", (unsigned long long) (now_ms() - t0));
        return 0;
}

/* ----------------- giving the driver back waits for vfio-pci's unbind */

/* The client parks its unbound device fd in flight in a socketpair of its
 * own (no /proc/PID/fd shows it) and releases. No process holds the e1000e
 * and the broker's test bind works (the parked fd is not bound), so the
 * lease ends and the broker gives the device back; vfio-pci's unbind then
 * blocks until the parked fd is closed, past the restore worker's timeout
 * (3 s in this tier). The broker used to give up there, and once the fd
 * closed the kernel finished the unbind and nobody probed e1000e: the NIC
 * stayed without a driver. Returns with the parked fd in *sp[1]'s queue. */
static int client_park_and_release(void *userdata) {
        int *sp = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_UNBOUND,
                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);

        park_fd(sp[0], l->devices[0].fd);
        iommufd_broker_lease_free(l);
        CHECK_OK(iommufd_broker_release(b, NULL, 0), "release");
        return 0;
}

static int case_restore_waits(void) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_device d;
        int sp[2];

        expect_driver(e1000e, "e1000e", 0);
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0, "socketpair: %m");
        CHECK_OK(client_run(client_park_and_release, sp, "parking client"), "park and release");
        /* The lease ends (nobody seen holding it), the restore's unbind waits. */
        wait_state(b, e1000e, "busy", 10000);
        usleep(6000 * 1000);                    /* past the 3 s restore timeout */
        get_or_fail(b, e1000e, &d);
        CHECK(streq(d.state, "busy"), "while vfio-pci's unbind waits the e1000e is %s (%s)", d.state, d.reason);
        /* The kernel removed the driver link before vfio-pci's remove began waiting. */
        char cur[64];
        pci_driver(e1000e, cur, sizeof cur);
        CHECK(!streq(cur, "e1000e"), "e1000e bound while vfio-pci's unbind waits");
        vm_log("restore-waits: the unbind waits for the parked fd; the e1000e is %s (%s), driver '%s'", d.state,
               d.reason, cur);

        uint64_t t0 = now_ms();
        safe_close(sp[0]);
        safe_close(sp[1]);                      /* drops the parked fd: the unbind finishes */
        expect_driver(e1000e, "e1000e", 15000);
        wait_state(b, e1000e, "available", 5000);
        vm_log("restore-waits: back on e1000e %llu ms after the parked fd closed",
               (unsigned long long) (now_ms() - t0));
        return 0;
}

/* ------ adv2: root unbinds vfio-pci behind the broker while it is leased */

static int client_holds_unbound(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_UNBOUND,
                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);
        sync_child_ready(s, 0);
        sync_child_wait(s);             /* root's unbind is waiting for us */
        iommufd_broker_lease_free(l);   /* let go: the unbind returns */
        sync_child_ready(s, 0);
        sync_child_wait(s);             /* the unbind returned: now leave */
        return 0;
}

static int unbind_vfio(void *userdata) {
        return write_file_str("/sys/bus/pci/drivers/vfio-pci/unbind", e1000e) < 0;
}

/* root writes vfio-pci's unbind while an unbound lease (no request eventfd
 * registered: the holder is no VMM) holds the e1000e; the write returns once
 * the holder closed its fd. When the holder then leaves, the lease must end
 * and the e1000e come back: the device has no cdev any more, so the scan's
 * test bind cannot tell, and the lease stayed releasing for ever. */
static int case_admin_unbind(void) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        Sync s;

        expect_driver(e1000e, "e1000e", 0);
        sync_init(&s);
        pid_t holder = client_spawn(client_holds_unbound, &s);
        sync_parent_wait(&s);
        expect_driver(e1000e, "vfio-pci", 0);
        pid_t unbinder = fork();
        CHECK(unbinder >= 0, "fork: %m");
        if (unbinder == 0)
                _exit(unbind_vfio(NULL));
        usleep(1000 * 1000);
        CHECK(waitpid(unbinder, NULL, WNOHANG) == 0, "the unbind returned while the holder had the fd open");
        sync_parent_go(&s);
        sync_parent_wait(&s);
        int status;
        CHECK(waitpid(unbinder, &status, 0) == unbinder && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the unbind failed");
        expect_driver(e1000e, "", 5000);
        vm_log("admin-unbind: vfio-pci let go once the holder closed its fd");
        sync_parent_go(&s);
        CHECK_OK(client_wait(holder, "holder"), "holder");
        uint64_t ms = wait_state(b, e1000e, "available", 10000);
        expect_driver(e1000e, "e1000e", 10000);
        vm_log("admin-unbind: the lease ended %llu ms after the holder left, e1000e is back",
               (unsigned long long) ms);
        return 0;
}

/* ---------------------------------------------- an admin fence is kept */

static int client_managed_cycle(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_ATTACHED,
                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);
        CHECK_OK(iommufd_broker_release(b, NULL, 0), "release");
        iommufd_broker_lease_free(l);
        wait_state(b, e1000e, "available", 10000);
        return 0;
}

static int case_admin_fence(void) {
        char cur[64], override[64];

        /* Fence 1: no driver at all. */
        expect_driver(e1000e, "e1000e", 0);
        CHECK_OK(pci_unbind(e1000e), "unbind e1000e");
        expect_driver(e1000e, "", 0);
        CHECK_OK(client_run(client_managed_cycle, NULL, "managed client"), "managed cycle from no driver");
        pci_driver(e1000e, cur, sizeof cur);
        CHECK(cur[0] == 0, "a device with no driver came back on '%s'", cur);
        read_override(e1000e, override, sizeof override);
        CHECK(streq(override, "(null)") || !override[0], "driver_override left as '%s'", override);
        vm_log("fence 'no driver': back to no driver");

        /* Fence 2: a driverctl-style override (pinned to e1000e). */
        write_override(e1000e, "e1000e");
        CHECK_OK(write_file_str("/sys/bus/pci/drivers_probe", e1000e), "probe");
        expect_driver(e1000e, "e1000e", 5000);
        CHECK_OK(client_run(client_managed_cycle, NULL, "managed client"), "managed cycle from an override");
        expect_driver(e1000e, "e1000e", 5000);
        read_override(e1000e, override, sizeof override);
        CHECK(streq(override, "e1000e"), "driver_override came back as '%s', expected e1000e", override);
        vm_log("fence 'driver_override=e1000e': override and driver restored");

        write_override(e1000e, "\n");
        return 0;
}

/* -------------------------------------------- the fake follows the kernel */

static int case_group_open_ebusy(void) {
        CHECK(edu[0], "no edu");
        char path[64];
        int group = pci_iommu_group(edu);
        CHECK_OK(group, "edu's group");
        snprintf(path, sizeof path, "/dev/vfio/%d", group);
        _cleanup_close_ int gfd = open(path, O_RDWR | O_CLOEXEC);
        CHECK(gfd >= 0, "open %s: %m", path);
        _cleanup_close_ int dfd = vfio_cdev_open(edu);
        CHECK(dfd >= 0, "opening the cdev while the group is open: the kernel allows it (%d)", dfd);
        _cleanup_close_ int iommufd = iommufd_open_rlimit();
        CHECK_OK(iommufd, "open /dev/iommu");
        uint32_t dev_id;
        int r = vfio_bind(dfd, iommufd, &dev_id);
        CHECK(r == -EBUSY, "bind while the group is open: expected EBUSY, got %d", r);
        vm_log("group %s open: cdev open works, BIND gives EBUSY (what kernel-fake.c does)", path);
        return 0;
}

/* ------------------------------------------------------------- revoke */

/* As QEMU does for a device it bound itself: vfio-pci's "please release"
 * request goes to our eventfd. */
static int register_request_eventfd(int devfd) {
        union {
                struct uapi_vfio_irq_set set;
                uint8_t buf[sizeof(struct uapi_vfio_irq_set) + sizeof(int32_t)];
        } u = {};
        int efd = eventfd(0, EFD_CLOEXEC);
        int32_t fd32 = efd;

        CHECK(efd >= 0, "eventfd: %m");
        u.set.argsz = sizeof(u.buf);
        u.set.flags = UAPI_VFIO_IRQ_SET_DATA_EVENTFD | UAPI_VFIO_IRQ_SET_ACTION_TRIGGER;
        u.set.index = UAPI_VFIO_PCI_REQ_IRQ_INDEX;
        u.set.count = 1;
        memcpy(u.buf + sizeof(struct uapi_vfio_irq_set), &fd32, sizeof(fd32));
        CHECK(ioctl(devfd, UAPI_VFIO_DEVICE_SET_IRQS, &u.set) == 0, "VFIO_DEVICE_SET_IRQS(REQ): %m");
        return efd;
}

/* A holder that answers the request by letting go, as QEMU does. */
static int client_revoke_answers(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_UNBOUND, 0);
        uint32_t dev_id, ioas_id, hwpt_id;

        CHECK_OK(vfio_bind(l->devices[0].fd, l->iommufd, &dev_id), "bind");
        CHECK_OK(ioas_alloc(l->iommufd, &ioas_id), "IOAS_ALLOC");
        CHECK_OK(vfio_attach(l->devices[0].fd, ioas_id, &hwpt_id), "attach");
        _cleanup_close_ int efd = register_request_eventfd(l->devices[0].fd);
        sync_child_ready(s, 0);

        struct pollfd p = { .fd = efd, .events = POLLIN };
        CHECK(poll(&p, 1, 30000) == 1, "no device request within 30 s");
        uint64_t n;
        CHECK(read(efd, &n, sizeof n) == sizeof n, "read eventfd: %m");
        vm_log("the kernel asked us (count %llu): letting go", (unsigned long long) n);
        iommufd_broker_lease_free(l);
        return 0;
}

/* A holder that ignores it. */
static int client_revoke_ignores(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, edu, IOMMUFD_BROKER_MODE_ATTACHED, 0);
        sync_child_ready(s, 0);
        pause();
        return 0;
}

static int case_revoke(void) {
        CHECK(edu[0], "no edu");
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        Sync s;

        /* A holder that answers: Revoke returns once it let go. */
        expect_driver(edu, "vfio-pci", 0);
        sync_init(&s);
        pid_t holder = client_spawn(client_revoke_answers, &s);
        sync_parent_wait(&s);
        uint64_t t0 = now_ms();
        int r = iommufd_broker_revoke(b, edu, 20);
        CHECK(r >= 0, "Revoke of a holder that answers: %s: %s", strna(iommufd_broker_error_name(b)),
              strna(iommufd_broker_error_message(b)));
        vm_log("revoke: the holder answered, Revoke returned after %llu ms", (unsigned long long) (now_ms() - t0));
        CHECK_OK(client_wait(holder, "answering holder"), "answering holder");
        expect_driver(edu, "vfio-pci", 10000);
        wait_state(b, edu, "available", 5000);

        /* A holder that ignores it: the typed error, naming it, after the timeout. */
        sync_init(&s);
        holder = client_spawn(client_revoke_ignores, &s);
        sync_parent_wait(&s);
        t0 = now_ms();
        r = iommufd_broker_revoke(b, edu, 3);
        uint64_t took = now_ms() - t0;
        CHECK(r == -ETIMEDOUT, "Revoke of a holder that ignores it: %d, %s: %s", r,
              strna(iommufd_broker_error_name(b)), strna(iommufd_broker_error_message(b)));
        CHECK(streq_ptr(iommufd_broker_error_name(b), "RevokeTimeout"), "error %s",
              strna(iommufd_broker_error_name(b)));
        char pid[32];
        snprintf(pid, sizeof pid, "pid %d", (int) holder);
        CHECK(strstr(strna(iommufd_broker_error_message(b)), pid), "RevokeTimeout does not name %s: %s", pid,
              iommufd_broker_error_message(b));
        CHECK(took >= 2900 && took < 10000, "RevokeTimeout after %llu ms, asked for 3 s", (unsigned long long) took);
        vm_log("revoke: ignored, %s after %llu ms: %s", iommufd_broker_error_name(b), (unsigned long long) took,
               iommufd_broker_error_message(b));
        /* The kernel keeps asking; the device goes when the holder does. */
        CHECK(kill(holder, SIGKILL) == 0, "kill: %m");
        (void) client_wait(holder, "ignoring holder");
        expect_driver(edu, "vfio-pci", 10000);
        wait_state(b, edu, "available", 10000);
        return 0;
}

/* --------------------------------- kill -9 of the daemon, then a restart */

/* rebind_delay_ms: IOMMUFD_BROKER_TEST_REBIND_DELAY_MS for it, or NULL. */
static pid_t start_daemon(const char *rebind_delay_ms) {
        const char *build = getenv("IOMMUFD_VM_BUILD");
        char exe[512];
        CHECK(build, "IOMMUFD_VM_BUILD not set");
        snprintf(exe, sizeof exe, "%s/daemon/iommufd-broker", build);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %m");
        if (pid == 0) {
                int fd = open(RESTARTED_LOG, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        dup2(fd, 1);
                        dup2(fd, 2);
                }
                setsid();
                setenv("LOG_LEVEL", "debug", 1);
                if (rebind_delay_ms)
                        setenv("IOMMUFD_BROKER_TEST_REBIND_DELAY_MS", rebind_delay_ms, 1);
                execl(exe, exe, "--varlink-listen", broker_socket, "--policy", "/run/vm-policy.json",
                      "--policy-dir", "/run/vm-policy.d", (char *) NULL);
                _exit(127);
        }
        FILE *f = fopen(RESTARTED_PID_FILE, "we");
        CHECK(f, "create " RESTARTED_PID_FILE ": %m");
        fprintf(f, "%d\n", (int) pid);
        CHECK(fclose(f) == 0, "write " RESTARTED_PID_FILE ": %m");
        return pid;
}

static void wait_daemon_answers(void) {
        uint64_t end = now_ms() + 15000;
        for (;;) {
                iommufd_broker *b = NULL;
                iommufd_broker_device d;
                if (iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, broker_socket, &b) >= 0 &&
                    iommufd_broker_get(b, e1000e, &d) >= 0) {
                        iommufd_broker_disconnect(b);
                        return;
                }
                iommufd_broker_disconnect(b);
                CHECK(now_ms() < end, "the restarted daemon does not answer after 15 s");
                usleep(100 * 1000);
        }
}

static void kill_daemon(pid_t pid) {
        CHECK(kill(pid, SIGKILL) == 0, "kill -9 %d: %m", (int) pid);
        /* Not our child (run-suite's, or an earlier restart's): wait for it to vanish. */
        for (uint64_t end = now_ms() + 5000; kill(pid, 0) == 0; usleep(20 * 1000)) {
                (void) waitpid(pid, NULL, WNOHANG);
                CHECK(now_ms() < end, "daemon %d still there after SIGKILL", (int) pid);
        }
}

static pid_t current_daemon(void) {
        char buf[32];
        if (read_file_str(RESTARTED_PID_FILE, buf, sizeof buf) >= 0)
                return atoi(buf);
        return broker_pid;
}

static int client_holds_managed(void *userdata) {
        Sync *s = userdata;
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        _cleanup_lease_ iommufd_broker_lease *l = acquire_or_fail(b, e1000e, IOMMUFD_BROKER_MODE_ATTACHED,
                                                                  IOMMUFD_BROKER_ACQUIRE_MANAGED);
        sync_child_ready(s, 0);
        pause();                /* until killed */
        return 0;
}

static int client_busy_attached(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        expect_busy(b, e1000e, IOMMUFD_BROKER_MODE_UNBOUND, "leased");
        return 0;
}

static int case_restart(void) {
        iommufd_broker_device d;
        Sync s;

        expect_driver(e1000e, "e1000e", 0);
        sync_init(&s);
        pid_t holder = client_spawn(client_holds_managed, &s);
        sync_parent_wait(&s);
        expect_driver(e1000e, "vfio-pci", 0);

        kill_daemon(current_daemon());
        vm_log("daemon killed with SIGKILL while pid %d holds %s (managed)", (int) holder, e1000e);
        start_daemon(NULL);
        wait_daemon_answers();

        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        get_or_fail(b, e1000e, &d);
        CHECK(streq(d.state, "leased"), "after the restart: %s (%s)", d.state, d.reason);
        CHECK(d.holder_pid == holder && d.holder_uid == CLIENT_UID, "holder after the restart: pid %d uid %u",
              (int) d.holder_pid, (unsigned) d.holder_uid);
        CHECK_OK(client_run(client_busy_attached, NULL, "another session"), "another session refused");
        vm_log("after the restart: %s leased to pid %d, others refused", e1000e, (int) d.holder_pid);

        uint64_t t0 = now_ms();
        CHECK(kill(holder, SIGKILL) == 0, "kill holder: %m");
        (void) client_wait(holder, "holder");
        expect_driver(e1000e, "e1000e", 10000);
        wait_state(b, e1000e, "available", 5000);
        vm_log("holder gone after the restart: lease ended, e1000e back after %llu ms",
               (unsigned long long) (now_ms() - t0));
        return 0;
}

static int client_acquire_managed_once(void *userdata) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_lease *l = NULL;

        /* The daemon is killed while this call waits: any answer will do. */
        if (acquire(b, e1000e, IOMMUFD_BROKER_MODE_ATTACHED, IOMMUFD_BROKER_ACQUIRE_MANAGED, &l) >= 0)
                iommufd_broker_lease_free(l);
        else
                vm_log("the pending managed acquire ended with %s", strna(iommufd_broker_error_name(b)));
        return 0;
}

/* While the rebind worker sleeps between unbind and probe: the loop answers
 * everybody at once, the device is busy, a second Acquire is refused. */
static void check_loop_answers_while_rebinding(void) {
        _cleanup_broker_ iommufd_broker *b = connect_or_fail();
        iommufd_broker_device d, *all = NULL;
        uint64_t worst = 0;
        size_t n;

        get_or_fail(b, e1000e, &d);
        CHECK(streq(d.state, "busy") && strstr(strna(d.reason), "rebinding to vfio-pci"),
              "%s while rebinding: %s (%s)", e1000e, d.state, d.reason);
        for (int i = 0; i < 10; i++) {
                uint64_t t0 = now_ms();
                CHECK_OK(iommufd_broker_list(b, &all, &n), "ListDevices while rebinding");
                free(all);
                if (now_ms() - t0 > worst)
                        worst = now_ms() - t0;
                usleep(20 * 1000);
        }
        vm_log("ListDevices during the rebind: slowest of 10 took %llu ms", (unsigned long long) worst);
        CHECK(worst < 100, "ListDevices took %llu ms while a rebind ran", (unsigned long long) worst);
        expect_busy(b, e1000e, IOMMUFD_BROKER_MODE_UNBOUND, "rebinding to vfio-pci");
}

/* kill -9 of the daemon while its worker sits between the host driver's
 * unbind and vfio-pci's probe (IOMMUFD_BROKER_TEST_REBIND_DELAY_MS widens
 * that window): the worker dies with it, the device is left without a
 * driver and with driver_override=vfio-pci, the record says "binding". The
 * next start gives the device back exactly as it was. */
static int case_rebind_crash(void) {
        char record[128], override[64], before[64], text[1024];
        struct stat st;

        expect_driver(e1000e, "e1000e", 0);
        read_override(e1000e, before, sizeof before);
        kill_daemon(current_daemon());
        start_daemon("8000");
        wait_daemon_answers();

        pid_t client = client_spawn(client_acquire_managed_once, NULL);
        expect_driver(e1000e, "", 3000);        /* the host driver's unbind is done */
        snprintf(record, sizeof record, "/run/iommufd-broker/leases/%s", e1000e);
        CHECK_OK(read_file_str(record, text, sizeof text), "read the record");
        CHECK(strstr(text, "STATE=binding\n") && strstr(text, "ORIGINAL_DRIVER=e1000e\n"),
              "record before the rebind:\n%s", text);
        check_loop_answers_while_rebinding();
        expect_driver(e1000e, "", 0);           /* still between unbind and probe */

        kill_daemon(current_daemon());
        (void) client_wait(client, "the client of the killed daemon");
        usleep(500 * 1000);
        expect_driver(e1000e, "", 0);
        read_override(e1000e, override, sizeof override);
        CHECK(streq(override, "vfio-pci"), "driver_override after the crash: '%s'", override);
        vm_log("crash mid-rebind: %s left without a driver, driver_override=vfio-pci, record kept", e1000e);

        uint64_t t0 = now_ms();
        start_daemon(NULL);
        wait_daemon_answers();
        expect_driver(e1000e, "e1000e", 10000);
        read_override(e1000e, override, sizeof override);
        CHECK(streq(override, before), "driver_override '%s', was '%s'", override, before);
        for (uint64_t end = now_ms() + 5000; stat(record, &st) == 0; usleep(50 * 1000))
                CHECK(now_ms() < end, "record %s still there", record);
        vm_log("crash mid-rebind: the next start put %s back on e1000e in %llu ms", e1000e,
               (unsigned long long) (now_ms() - t0));
        return 0;
}

static const struct {
        const char *name;
        int (*run)(void);
} cases[] = {
        { "release-holding", case_release_holding },
        { "unbound-free", case_unbound_free },
        { "hidden-bound", case_hidden_bound },
        { "child-keeps", case_child_keeps },
        { "restore-waits", case_restore_waits },
        { "admin-fence", case_admin_fence },
        { "admin-unbind", case_admin_unbind },
        { "group-open-ebusy", case_group_open_ebusy },
        { "revoke", case_revoke },
        { "restart", case_restart },
        { "rebind-crash", case_rebind_crash },
};

int main(int argc, char **argv) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        CHECK(argc == 2, "usage: vm-leases CASE");
        broker_socket = getenv("BROKER_SOCKET");
        broker_pid = getenv("BROKER_PID") ? atoi(getenv("BROKER_PID")) : 0;
        CHECK_OK(pci_find(PCI_VENDOR_INTEL, PCI_DEVICE_E1000E, false, e1000e), "find the e1000e");
        /* The restart cases run after hotunplug removed the edu. */
        if (pci_find(PCI_VENDOR_QEMU, PCI_DEVICE_EDU, false, edu) < 0)
                edu[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (streq(cases[i].name, argv[1])) {
                        CHECK_OK(cases[i].run(), argv[1]);
                        return 0;
                }
        CHECK(false, "unknown case %s", argv[1]);
}
