/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "util.h"

/*
 * Who is asking, only from what the kernel attested when the peer
 * connected: varlink from SO_PEERCRED/SO_PEERPIDFD/SO_PEERGROUPS, D-Bus from
 * the bus's GetConnectionCredentials (which dbus-daemon took from the same
 * socket options at connect time). Nothing comes from /proc/<pid> by
 * number: a pid may be recycled, a pidfd may not.
 */
typedef struct Principal {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        int pidfd;              /* -EBADF when the kernel gave none */
        gid_t *groups;          /* supplementary groups */
        size_t n_groups;
        char *unit;             /* systemd unit of the peer, NULL if none */
} Principal;

/* Identity of the peer of a connected AF_UNIX socket. SO_PEERPIDFD failing
 * with ENOPROTOOPT (kernel < 6.5) gives no pidfd and so no unit; EINVAL
 * (6.5-6.15: the peer has exited) is -ESRCH, no principal at all. */
int principal_from_socket(int fd, Principal **ret);

/* The getsockopt() principal_from_socket() calls: a seam for test-principal
 * to play kernels this machine does not run. */
extern int (*principal_getsockopt)(int fd, int level, int name, void *value, socklen_t *len);

/* Identity from a reply to org.freedesktop.DBus.GetConnectionCredentials
 * (a{sv}): UnixUserID (required), ProcessID, UnixGroupIDs, ProcessFD (dbus
 * 1.15.8+; without it: no pidfd, no unit). Unknown keys are skipped; more
 * than PRINCIPAL_MAX_GROUPS groups is -E2BIG. */
typedef struct sd_bus_message sd_bus_message;
int principal_from_bus_credentials(sd_bus_message *reply, Principal **ret);

#define PRINCIPAL_MAX_GROUPS 65536      /* NGROUPS_MAX */

/* Build from parts; takes ownership of pidfd, copies groups. Unless unit is
 * given, it is derived from the pidfd (the pid it pins now, that pid's
 * cgroup, then a check that the pidfd still names a live process with that
 * pid); without a pidfd there is no unit. -ESRCH if the pidfd's process has
 * exited. */
int principal_new(uid_t uid, gid_t gid, pid_t pid, int pidfd, const gid_t *groups, size_t n_groups,
                  const char *unit, Principal **ret);

Principal *principal_free(Principal *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Principal *, principal_free);

bool principal_in_group(const Principal *p, gid_t gid);
