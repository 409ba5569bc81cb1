/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The broker's own seccomp filter, installed once the daemon is up: system
 * calls a device broker never makes (exec, ptrace, mounts, modules, kexec,
 * namespaces, bpf, keyrings, ...) fail with EPERM, so a bug in request
 * handling cannot be turned into them. The unit file's SystemCallFilter= is
 * the outer fence; this one also holds when the daemon runs outside systemd.
 */
int sandbox_install_seccomp_filter(void);
