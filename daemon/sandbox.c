/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <seccomp.h>
#include <sys/resource.h>

#include "log.h"
#include "sandbox.h"

static const char *const denied_syscalls[] = {
        /* running other programs or reaching into other processes */
        "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
        /* the file system namespace */
        "mount", "umount2", "pivot_root", "chroot", "open_by_handle_at", "fsopen", "fsmount",
        "move_mount", "open_tree", "mount_setattr",
        /* the kernel itself */
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "acct", "iopl", "ioperm", "settimeofday", "clock_settime", "adjtimex",
        /* namespaces, bpf, keyrings, tracing */
        "setns", "unshare", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
        "personality",
};

int sandbox_install_seccomp_filter(void) {
        scmp_filter_ctx ctx;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return log_error_errno(ENOMEM, "seccomp: cannot create a filter");

        for (size_t i = 0; i < ELEMENTSOF(denied_syscalls); i++) {
                int nr = seccomp_syscall_resolve_name(denied_syscalls[i]);

                /* Syscalls this architecture or libseccomp does not know need no rule. */
                if (nr == __NR_SCMP_ERROR)
                        continue;
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
                if (r < 0) {
                        seccomp_release(ctx);
                        return log_error_errno(r, "seccomp: cannot deny %s: %m", denied_syscalls[i]);
                }
        }

        r = seccomp_load(ctx);
        seccomp_release(ctx);
        if (r < 0)
                return log_error_errno(r, "seccomp: cannot load the filter: %m");
        log_debug("seccomp: %zu system calls denied", ELEMENTSOF(denied_syscalls));
        return 0;
}

int sandbox_raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur >= rl.rlim_max)
                return 0;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return log_warning_errno(errno, "Cannot raise the fd limit to %llu: %m",
                                         (unsigned long long) rl.rlim_max);
        return 1;
}

#define FD_RESERVE 256u

unsigned sandbox_max_connections(unsigned want) {
        struct rlimit rl;
        rlim_t fit;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return want;
        fit = rl.rlim_cur > FD_RESERVE * 2 ? (rl.rlim_cur - FD_RESERVE) / 4 : FD_RESERVE / 4;
        return fit < want ? (unsigned) fit : want;
}
