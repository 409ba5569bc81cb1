/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-login.h>

#include "log.h"
#include "principal.h"

static void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

int (*principal_getsockopt)(int fd, int level, int name, void *value, socklen_t *len) = getsockopt;

Principal *principal_free(Principal *p) {
        if (!p)
                return NULL;
        safe_close(p->pidfd);
        free(p->groups);
        free(p->unit);
        free(p);
        return NULL;
}

bool principal_in_group(const Principal *p, gid_t gid) {
        if (!p)
                return false;
        if (p->gid == gid)
                return true;
        for (size_t i = 0; i < p->n_groups; i++)
                if (p->groups[i] == gid)
                        return true;
        return false;
}

/* The pid a pidfd refers to, from the "Pid:" line of its fdinfo: -1 once the
 * process has exited, 0 if it lives in a pid namespace we cannot see. */
static int pidfd_get_pid(int pidfd, pid_t *ret) {
        char path[64], line[256];
        _cleanup_(fclosep) FILE *f = NULL;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                long pid;

                if (sscanf(line, "Pid: %ld", &pid) == 1) {
                        *ret = (pid_t) pid;
                        return 0;
                }
        }
        return -ENODATA;        /* not a pidfd */
}

/* The unit of the process p->pidfd pins, or NULL. Not being in a unit (or
 * cgroupfs missing) is not an error: a principal without a unit simply
 * matches no unit rule. Without a pidfd there is no unit at all: a pid
 * number alone may have been recycled by a process of another unit. The
 * caller checks afterwards that the pidfd still names p->pid, so when the
 * peer's credentials gave a pid the pidfd need not be asked for it first. */
static int lookup_unit(const Principal *p, char **ret) {
        char *unit = NULL;
        pid_t pid = p->pid;
        int r;

        *ret = NULL;
        if (p->pidfd < 0)
                return 0;
        if (pid <= 0) {
                r = pidfd_get_pid(p->pidfd, &pid);
                if (r < 0)
                        return r;
        }
        /* sd_pid_get_unit(0) would describe ourselves, not the peer; -1:
         * exited, which verify_pidfd() reports. */
        if (pid <= 0)
                return 0;
        r = sd_pid_get_unit(pid, &unit);
        if (r == -ENOMEM)
                return r;
        /* Outside systemd no process has a unit (ENOMEDIUM: no unified
         * cgroup tree, ENODATA: none found): said once, not per connection. */
        if (r < 0) {
                static bool said;

                if (!said || (r != -ENODATA && r != -ENOMEDIUM))
                        log_debug_errno(r, "No unit for pid %d: %m", (int) pid);
                said = said || r == -ENODATA || r == -ENOMEDIUM;
                return 0;
        }
        *ret = unit;
        return 0;
}

/* pid was looked up by number, which the kernel may have recycled between
 * the peer's exit and our lookup. The pidfd pins the real peer: if it no
 * longer refers to a live process with that pid, whatever we learnt through
 * the number may describe a stranger. */
static int verify_pidfd(const Principal *p) {
        pid_t now = 0;
        int r;

        if (p->pidfd < 0)
                return 0;
        r = pidfd_get_pid(p->pidfd, &now);
        if (r < 0)
                return log_debug_errno(r, "Cannot read pid of peer pidfd %d: %m", p->pidfd);
        if (now == -1)
                return log_debug_errno(ESRCH, "Peer pid %d has exited", (int) p->pid);
        if (now != p->pid)
                return log_debug_errno(ESRCH, "Peer pidfd refers to pid %d, not %d", (int) now, (int) p->pid);
        return 0;
}

static int principal_alloc(uid_t uid, gid_t gid, pid_t pid, int pidfd, Principal **ret) {
        Principal *p = calloc(1, sizeof(Principal));

        if (!p)
                return -ENOMEM;
        *p = (Principal) {
                .uid = uid,
                .gid = gid,
                .pid = pid,
                .pidfd = pidfd,
        };
        *ret = p;
        return 0;
}

/* Look up the unit unless given, then make sure the pid still is the peer. */
static int principal_finish(Principal *p, const char *unit) {
        int r;

        if (unit) {
                p->unit = strdup(unit);
                if (!p->unit)
                        return -ENOMEM;
        } else {
                r = lookup_unit(p, &p->unit);
                if (r < 0)
                        return r;
        }
        return verify_pidfd(p);
}

int principal_new(uid_t uid, gid_t gid, pid_t pid, int pidfd, const gid_t *groups, size_t n_groups,
                  const char *unit, Principal **ret) {
        _cleanup_close_ int fd = pidfd;
        _cleanup_(principal_freep) Principal *p = NULL;
        int r;

        r = principal_alloc(uid, gid, pid, -EBADF, &p);
        if (r < 0)
                return r;
        p->pidfd = TAKE_FD(fd);

        if (n_groups > 0) {
                p->groups = calloc(n_groups, sizeof(gid_t));
                if (!p->groups)
                        return -ENOMEM;
                memcpy(p->groups, groups, n_groups * sizeof(gid_t));
                p->n_groups = n_groups;
        }

        r = principal_finish(p, unit);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

/* Kernels before 6.5 know no SO_PEERPIDFD (ENOPROTOOPT): the peer then has
 * no pidfd, hence no unit, and nothing is ever done by its pid number.
 * 6.5-6.15 answer EINVAL when the peer that connected has already exited
 * (a child may hold the socket): that is no peer to serve, not an old
 * kernel. */
static int socket_get_peer_pidfd(int fd, int *ret) {
        int pidfd = -EBADF;
        socklen_t len = sizeof(pidfd);

        if (principal_getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
                if (errno == ENOPROTOOPT) {
                        *ret = -EBADF;
                        return 0;
                }
                if (errno == EINVAL)
                        return log_debug_errno(ESRCH, "Peer has exited before we could pin it.");
                return -errno;
        }
        *ret = pidfd;
        return 0;
}

/* The kernel says how much room it needs with ERANGE; a peer may have up to
 * NGROUPS_MAX (65536) groups, so start small and grow. */
static int socket_get_peer_groups(int fd, gid_t **ret, size_t *ret_n) {
        socklen_t len = 32 * sizeof(gid_t);

        for (;;) {
                _cleanup_free_ gid_t *groups = malloc(len ?: 1);
                socklen_t got = len;

                if (!groups)
                        return -ENOMEM;
                if (principal_getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &got) >= 0) {
                        *ret_n = got / sizeof(gid_t);
                        *ret = TAKE_PTR(groups);
                        return 0;
                }
                if (errno != ERANGE)
                        return -errno;
                /* The kernel wrote the needed size into got; never shrink. */
                len = got > len ? got : len * 2;
        }
}

int principal_from_socket(int fd, Principal **ret) {
        _cleanup_(principal_freep) Principal *p = NULL;
        struct ucred ucred = {};
        socklen_t len = sizeof(ucred);
        int pidfd = -EBADF, r;

        if (principal_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &ucred, &len) < 0)
                return -errno;
        if (len != sizeof(ucred))
                return -EIO;

        r = socket_get_peer_pidfd(fd, &pidfd);
        if (r < 0)
                return r;
        r = principal_alloc(ucred.uid, ucred.gid, ucred.pid, pidfd, &p);
        if (r < 0) {
                safe_close(pidfd);
                return r;
        }

        r = socket_get_peer_groups(fd, &p->groups, &p->n_groups);
        if (r < 0)
                return r;

        r = principal_finish(p, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

/* UnixGroupIDs: the kernel's SO_PEERGROUPS at connect, as the bus saw it.
 * Read with one growing array: linear, and bounded before it grows. */
static int bus_read_groups(sd_bus_message *m, gid_t **ret, size_t *ret_n) {
        _cleanup_free_ gid_t *groups = NULL;
        size_t n = 0, allocated = 0;
        uint32_t g;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "au");
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        r = sd_bus_message_enter_container(m, 'a', "u");
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        while ((r = sd_bus_message_read_basic(m, 'u', &g)) > 0) {
                if (n >= PRINCIPAL_MAX_GROUPS)
                        return -E2BIG;
                if (n == allocated) {
                        gid_t *b = realloc(groups, sizeof(gid_t) * (allocated = allocated ? allocated * 2 : 32));
                        if (!b)
                                return -ENOMEM;
                        groups = b;
                }
                groups[n++] = (gid_t) g;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        free(*ret);
        *ret = TAKE_PTR(groups);
        *ret_n = n;
        return 0;
}

/* The fd belongs to the message: keep a duplicate. */
static int bus_read_pidfd(sd_bus_message *m, int *ret) {
        int fd, copy;
        int r;

        r = sd_bus_message_read(m, "v", "h", &fd);
        if (r < 0)
                return r;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return -errno;
        safe_close(*ret);
        *ret = copy;
        return 0;
}

static int bus_read_u32(sd_bus_message *m, uint32_t *ret) {
        return sd_bus_message_read(m, "v", "u", ret);
}

int principal_from_bus_credentials(sd_bus_message *reply, Principal **ret) {
        _cleanup_(principal_freep) Principal *p = NULL;
        _cleanup_close_ int pidfd = -EBADF;
        _cleanup_free_ gid_t *groups = NULL;
        uint32_t uid = UINT32_MAX, pid = 0;
        size_t n_groups = 0;
        const char *key;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "UnixUserID"))
                        r = bus_read_u32(reply, &uid);
                else if (streq(key, "ProcessID"))
                        r = bus_read_u32(reply, &pid);
                else if (streq(key, "UnixGroupIDs"))
                        r = bus_read_groups(reply, &groups, &n_groups);
                else if (streq(key, "ProcessFD"))
                        r = bus_read_pidfd(reply, &pidfd);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        if (uid == UINT32_MAX)
                return -ENODATA;

        /* The bus does not say the primary gid: a peer is in a group only
         * through UnixGroupIDs (which login sessions fill from initgroups). */
        r = principal_new((uid_t) uid, (gid_t) -1, (pid_t) pid, TAKE_FD(pidfd), groups, n_groups, NULL, &p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}
