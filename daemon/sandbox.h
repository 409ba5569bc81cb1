/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/*
 * The broker's own seccomp filter, installed once the daemon is up: system
 * calls a device broker never makes (exec, ptrace, mounts, modules, kexec,
 * namespaces, bpf, keyrings, ...) fail with EPERM, so a bug in request
 * handling cannot be turned into them. The unit file's SystemCallFilter= is
 * the outer fence; this one also holds when the daemon runs outside systemd.
 */
int sandbox_install_seccomp_filter(void);

/* Raise the soft RLIMIT_NOFILE to the hard one (the unit's LimitNOFILE=):
 * every connection costs a socket and a pidfd, every lease more. */
int sandbox_raise_fd_limit(void);

/* The global connection cap that fits the fd limit: at most want, and at
 * most a quarter of what is left after a reserve for devices and the loop
 * (half, for a cap the admin asked for), so that root's reserved
 * connections always find fds. */
unsigned sandbox_max_connections(unsigned want, bool asked);
