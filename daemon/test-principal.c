/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <systemd/sd-login.h>

#include "policy.h"
#include "principal.h"
#include "test.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* What the fdinfo of a pidfd says, read independently of principal.c. */
static long fdinfo_pid(int fd) {
        char path[64], line[256];
        long pid = -2;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        f = fopen(path, "re");
        if (!f)
                return -2;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Pid: %ld", &pid) == 1)
                        break;
        fclose(f);
        return pid;
}

static bool same_groups(const Principal *p) {
        gid_t mine[256];
        int n = getgroups(ELEMENTSOF(mine), mine);

        if (n < 0 || (size_t) n != p->n_groups)
                return false;
        for (int i = 0; i < n; i++) {
                bool found = false;
                for (size_t j = 0; j < p->n_groups; j++)
                        found = found || p->groups[j] == mine[i];
                if (!found)
                        return false;
        }
        return true;
}

/* As root, give ourselves more groups than principal.c's first buffer holds,
 * so the ERANGE growth path runs. */
static void setup_many_groups(void) {
        gid_t g[40];

        if (geteuid() != 0) {
                printf("note: not root, keeping our %d groups\n", getgroups(0, NULL));
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(g); i++)
                g[i] = 20000 + i;
        CHECK_MSG(setgroups(ELEMENTSOF(g), g) == 0, "setgroups(40 groups)");
}

static void test_socketpair(void) {
        _cleanup_(principal_freep) Principal *p = NULL;
        _cleanup_free_ char *unit = NULL;
        int sv[2], r, pidfd;

        CHECK_MSG(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        r = principal_from_socket(sv[0], &p);
        CHECK_MSG(r == 0, "principal_from_socket() = %d", r);
        if (r < 0)
                return;

        CHECK_MSG(p->uid == getuid(), "uid %u == getuid() %u", p->uid, getuid());
        CHECK_MSG(p->gid == getgid(), "gid %u == getgid() %u", p->gid, getgid());
        CHECK_MSG(p->pid == getpid(), "pid %d == getpid() %d", p->pid, getpid());
        if (p->pidfd == -EBADF)
                printf("note: kernel gave no SO_PEERPIDFD, pidfd = -EBADF\n");
        else
                CHECK_MSG(p->pidfd >= 0 && fdinfo_pid(p->pidfd) == getpid(),
                          "pidfd %d refers to our pid (fdinfo Pid %ld)", p->pidfd, fdinfo_pid(p->pidfd));
        CHECK_MSG(same_groups(p), "%zu supplementary groups match getgroups()", p->n_groups);

        if (sd_pid_get_unit(getpid(), &unit) < 0)
                unit = NULL;
        CHECK_MSG(streq_ptr(p->unit, unit), "unit %s == sd_pid_get_unit() %s", strna(p->unit), strna(unit));

        CHECK_MSG(principal_in_group(p, getgid()), "in primary group %u", getgid());
        if (p->n_groups > 0)
                CHECK_MSG(principal_in_group(p, p->groups[p->n_groups - 1]), "in last supplementary group %u",
                          p->groups[p->n_groups - 1]);
        CHECK_MSG(!principal_in_group(p, 4242), "not in group 4242");
        CHECK_MSG(!principal_in_group(NULL, 0), "NULL principal is in no group");

        /* principal_free() must close the pidfd. */
        pidfd = p->pidfd;
        p = principal_free(p);
        if (pidfd >= 0)
                CHECK_MSG(fcntl(pidfd, F_GETFD) < 0 && errno == EBADF, "principal_free() closed pidfd %d", pidfd);
        close(sv[0]);
        close(sv[1]);
}

/* A peer that connected and then exited (and was reaped, so its pid could be
 * recycled) must not pass as a principal: anything looked up by its pid number
 * might belong to someone else by now. */
static void test_dead_peer(void) {
        _cleanup_(principal_freep) Principal *p = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen;
        int l, c, r;
        pid_t child;

        snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "test-principal-%d", getpid());
        salen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1);
        l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK_MSG(l >= 0 && bind(l, (struct sockaddr *) &sa, salen) == 0 && listen(l, 1) == 0, "listen");

        child = fork();
        if (child == 0) {
                int s = socket(AF_UNIX, SOCK_STREAM, 0);
                _exit(connect(s, (struct sockaddr *) &sa, salen) < 0);
        }
        CHECK_MSG(child > 0 && waitpid(child, NULL, 0) == child, "child connected and was reaped");
        c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        CHECK_MSG(c >= 0, "accept");

        r = principal_from_socket(c, &p);
        if (r == 0 && p->pidfd < 0)
                printf("note: no pidfd for a dead peer; cannot tell it from a live one (old kernel)\n");
        else
                CHECK_MSG(r == -ESRCH, "dead peer refused with -ESRCH (got %d)", r);
        close(c);
        close(l);
}

static void test_new(void) {
        _cleanup_(principal_freep) Principal *p = NULL, *q = NULL, *z = NULL;
        gid_t groups[] = { 100, 200, 300 };
        pid_t child;
        int pidfd, r;

        r = principal_new(1000, 1000, 4242, -EBADF, groups, ELEMENTSOF(groups), "vm-1.service", &p);
        CHECK_MSG(r == 0, "principal_new() = %d", r);
        if (r < 0)
                return;
        groups[1] = 999;        /* principal_new() must have copied them */
        CHECK_MSG(p->uid == 1000 && p->gid == 1000 && p->pid == 4242 && p->pidfd == -EBADF, "fields kept");
        CHECK_MSG(p->n_groups == 3 && p->groups[1] == 200, "groups copied (%zu)", p->n_groups);
        CHECK_MSG(streq_ptr(p->unit, "vm-1.service"), "given unit kept: %s", strna(p->unit));
        CHECK_MSG(principal_in_group(p, 300) && principal_in_group(p, 1000) && !principal_in_group(p, 999),
                  "principal_in_group on copied groups");

        /* pid 0 (peer in another pid namespace) must not borrow our own unit. */
        r = principal_new(1000, 1000, 0, -EBADF, NULL, 0, NULL, &z);
        CHECK_MSG(r == 0 && z->unit == NULL && z->n_groups == 0, "pid 0: no unit, no groups (r=%d)", r);

        /* A live pid without a pidfd (a bus without ProcessFD, a kernel
         * without SO_PEERPIDFD) gets no unit: the number may be recycled. */
        {
                _cleanup_(principal_freep) Principal *np = NULL;
                r = principal_new(0, 0, getpid(), -EBADF, NULL, 0, NULL, &np);
                CHECK_MSG(r == 0 && np->unit == NULL, "no pidfd: no unit from the pid (r=%d, unit %s)", r,
                          r == 0 ? strna(np->unit) : "-");
        }

        /* A pidfd whose process is gone: refused, and the pidfd closed. */
        child = fork();
        if (child == 0)
                _exit(0);
        pidfd = (int) syscall(SYS_pidfd_open, child, 0);
        waitpid(child, NULL, 0);
        if (pidfd < 0) {
                printf("note: pidfd_open() unsupported, skipping exited-pidfd check\n");
                return;
        }
        r = principal_new(0, 0, child, pidfd, NULL, 0, NULL, &q);
        CHECK_MSG(r == -ESRCH, "principal_new() with the pidfd of an exited process = %d", r);
        CHECK_MSG(fcntl(pidfd, F_GETFD) < 0 && errno == EBADF, "its pidfd was closed anyway");
}

/* SO_PEERPIDFD answered as a kernel this machine may not run: errno
 * peer_pidfd_errno, everything else by the real getsockopt(). */
static int peer_pidfd_errno;
static unsigned peer_pidfd_calls;

static int getsockopt_without_pidfd(int fd, int level, int name, void *value, socklen_t *len) {
        if (level == SOL_SOCKET && name == SO_PEERPIDFD) {
                peer_pidfd_calls++;
                errno = peer_pidfd_errno;
                return -1;
        }
        return getsockopt(fd, level, name, value, len);
}

static int count_fds(void) {
        int n = 0;

        for (int fd = 0; fd < 1024; fd++)
                n += fcntl(fd, F_GETFD) >= 0;
        return n;
}

static Principal *principal_for_errno(int sv, int e, int *ret_r) {
        Principal *p = NULL;

        peer_pidfd_errno = e;
        peer_pidfd_calls = 0;
        principal_getsockopt = getsockopt_without_pidfd;
        *ret_r = principal_from_socket(sv, &p);
        principal_getsockopt = getsockopt;
        CHECK_MSG(peer_pidfd_calls == 1, "SO_PEERPIDFD asked once (%u)", peer_pidfd_calls);
        return p;
}

/* Kernels 6.5-6.15 answer SO_PEERPIDFD with EINVAL once the peer that
 * connected has exited (the socket lives on in a child, or was passed on):
 * that is no peer to serve, not an old kernel. Only ENOPROTOOPT means
 * "unsupported", and then nothing may be learnt from the pid number. */
static void test_peer_pidfd_errors(void) {
        _cleanup_(policy_freep) Policy *policy = NULL;
        Device d = { .vendor_id = 0x8086, .device_id = 0x10d3, .class = 0x020000, .iommu_group = 5 };
        PolicyDecision dec;
        int sv[2], r, before;

        snprintf(d.address, sizeof(d.address), "0000:03:00.0");
        CHECK_MSG(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        before = count_fds();

        {
                _cleanup_(principal_freep) Principal *p = principal_for_errno(sv[0], EINVAL, &r);
                CHECK_MSG(r == -ESRCH && !p, "EINVAL (peer exited) refused with -ESRCH (got %d)", r);
                CHECK_MSG(count_fds() == before, "EINVAL left no fd behind (%d -> %d)", before, count_fds());
        }
        {
                _cleanup_(principal_freep) Principal *p = principal_for_errno(sv[0], ENOPROTOOPT, &r);
                CHECK_MSG(r == 0 && p, "ENOPROTOOPT (kernel < 6.5) still identifies the peer (r=%d)", r);
                if (p) {
                        CHECK_MSG(p->uid == getuid() && p->pid == getpid(), "uid and pid from SO_PEERCRED");
                        CHECK_MSG(p->pidfd == -EBADF, "no pidfd (%d)", p->pidfd);
                        /* We are alive and sd_pid_get_unit(getpid()) may well
                         * name a unit: the pid number must not be used. */
                        CHECK_MSG(!p->unit, "no unit from the pid number (got %s)", strna(p->unit));
                }
                CHECK_MSG(count_fds() == before, "ENOPROTOOPT opened no fd");

                /* A units rule matching any unit grants it nothing. */
                r = policy_load_string("{ \"rules\": [ { \"principals\": { \"units\": [\"*\"] } } ] }", "t",
                                       stderr, &policy);
                CHECK_MSG(r == 0, "units policy loads (%d)", r);
                if (r == 0 && p) {
                        _cleanup_(principal_freep) Principal *in_unit = NULL;

                        p->uid = p->gid = 3000;         /* root would always pass */
                        policy_check(policy, p, &d, ACQUIRE_MODE_ATTACHED, false, &dec);
                        CHECK_MSG(dec.verdict == POLICY_DENY, "units rule refused without a pidfd: %s", dec.reason);
                        /* Control: the same rule grants a principal that has a unit. */
                        CHECK_MSG(principal_new(p->uid, p->gid, 0, -EBADF, NULL, 0, "vm-1.service", &in_unit) == 0,
                                  "principal_new(vm-1.service)");
                        policy_check(policy, in_unit, &d, ACQUIRE_MODE_ATTACHED, false, &dec);
                        CHECK_MSG(dec.verdict == POLICY_ALLOW, "control: units rule grants vm-1.service");
                }
        }
        {
                /* Any other error is an error, not "no pidfd". */
                _cleanup_(principal_freep) Principal *p = principal_for_errno(sv[0], ENOBUFS, &r);
                CHECK_MSG(r == -ENOBUFS && !p, "ENOBUFS passed on (got %d)", r);
        }
        CHECK_MSG(count_fds() == before, "no fd leaked (%d -> %d)", before, count_fds());
        close(sv[0]);
        close(sv[1]);
}

int main(void) {
        setup_many_groups();
        test_socketpair();
        test_dead_peer();
        test_new();
        test_peer_pidfd_errors();
        return test_result();
}
