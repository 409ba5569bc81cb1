/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "util.h"

/*
 * Who is asking. Both front ends build the same thing: varlink from
 * SO_PEERCRED/SO_PEERPIDFD/SO_PEERGROUPS, D-Bus from sd-bus creds.
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

/* Identity of the peer of a connected AF_UNIX socket. */
int principal_from_socket(int fd, Principal **ret);

/* Build from parts (D-Bus creds); takes ownership of pidfd, copies groups.
 * Looks up the unit with sd_pid_get_unit() unless unit is given. */
int principal_new(uid_t uid, gid_t gid, pid_t pid, int pidfd, const gid_t *groups, size_t n_groups,
                  const char *unit, Principal **ret);

Principal *principal_free(Principal *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Principal *, principal_free);

bool principal_in_group(const Principal *p, gid_t gid);
