/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "uapi.h"

#include "log.h"
#include "sandbox.h"

#if __BYTE_ORDER == __LITTLE_ENDIAN
#define ARG_LOW_WORD 0
#else
#define ARG_LOW_WORD 4
#endif

/* LeakSanitizer stops the world with ptrace() at exit: a sanitizer build
 * (the fast tier's second run) keeps it. */
#if defined(__SANITIZE_ADDRESS__)
#define PTRACE_UNLESS_SANITIZER
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTRACE_UNLESS_SANITIZER
#endif
#endif
#ifndef PTRACE_UNLESS_SANITIZER
#define PTRACE_UNLESS_SANITIZER "ptrace",
#endif

static const char *const denied_syscalls[] = {
        /* running other programs or reaching into other processes */
        "execve", "execveat", PTRACE_UNLESS_SANITIZER "process_vm_readv", "process_vm_writev", "pidfd_getfd",
        "kcmp",
        /* the file system namespace and special files */
        "mount", "umount2", "pivot_root", "chroot", "open_by_handle_at", "name_to_handle_at", "fsopen",
        "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "mknod", "mknodat",
        "quotactl", "quotactl_fd", "fanotify_init",
        /* the kernel itself */
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "acct", "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime",
        "adjtimex", "syslog", "vhangup", "lookup_dcookie", "sethostname", "setdomainname",
        /* namespaces, bpf, keyrings, tracing, io_uring */
        "setns", "unshare", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
        "personality", "io_uring_setup", "io_uring_enter", "io_uring_register",
};

/* clone() with any of these would give a child new namespaces (CLONE_NEWTIME
 * only exists for clone3() and unshare(), both denied). */
static const unsigned long clone_namespace_flags[] = {
        CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};

/* Every ioctl the broker makes (daemon/uapi.h, through kernel.c), and what
 * glibc's stdio, libsystemd and libudev ask of their fds; strace of each
 * tier shows no other (TCGETS: isatty() on log and stdio streams, and on
 * the /proc files libsystemd reads, e.g. in sd_pid_get_unit(); a newer glibc,
 * such as sid's 2.43, asks TCGETS2 instead). Any other request gets ENOTTY, as from a
 * file that does not know it. */
static const uint32_t allowed_ioctls[] = {
        UAPI_IOMMU_DESTROY, UAPI_IOMMU_IOAS_ALLOC, UAPI_IOMMU_IOAS_IOVA_RANGES, UAPI_IOMMU_IOAS_MAP,
        UAPI_IOMMU_IOAS_UNMAP, UAPI_IOMMU_OPTION, UAPI_IOMMU_GET_HW_INFO,
        UAPI_VFIO_DEVICE_GET_INFO, UAPI_VFIO_DEVICE_GET_REGION_INFO, UAPI_VFIO_DEVICE_SET_IRQS,
        UAPI_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, UAPI_VFIO_DEVICE_PCI_HOT_RESET, UAPI_VFIO_DEVICE_BIND_IOMMUFD,
        UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT, UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT,
        TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX,
#ifdef UAPI_TCGETS2
        UAPI_TCGETS2,
#endif
};

static int deny_clone_namespaces(scmp_filter_ctx ctx) {
        for (size_t i = 0; i < ELEMENTSOF(clone_namespace_flags); i++) {
                unsigned long f = clone_namespace_flags[i];
                int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                         SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
                if (r < 0)
                        return r;
        }
        /* clone3() passes its flags in memory, out of a filter's reach:
         * ENOSYS makes glibc fall back to clone(), which is checked. */
        return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

static int install_denylist(void) {
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
        r = deny_clone_namespaces(ctx);
        if (r < 0) {
                seccomp_release(ctx);
                return log_error_errno(r, "seccomp: cannot restrict clone: %m");
        }

        r = seccomp_load(ctx);
        seccomp_release(ctx);
        if (r < 0)
                return log_error_errno(r, "seccomp: cannot load the filter: %m");
        return 0;
}

/*
 * The ioctl allowlist, as a second, raw BPF filter: libseccomp cannot say
 * "none of these values" of one argument. The kernel takes the command as
 * an unsigned int, so the low 32 bits of args[1] are what it acts on. Other
 * architectures are left to the first filter (which kills them).
 */
static int install_ioctl_allowlist(void) {
        struct sock_filter prog[9 + ELEMENTSOF(allowed_ioctls)];
        struct sock_fprog fprog = { .filter = prog };
        size_t n = 0, k = ELEMENTSOF(allowed_ioctls);

        prog[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
        prog[n++] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 1, 0);
        prog[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        prog[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
        prog[n++] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 1, 0);
        prog[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        prog[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                                  offsetof(struct seccomp_data, args[1]) + ARG_LOW_WORD);
        /* Request i matches: jump over the k - 1 - i checks left and the
         * ENOTTY return, to ALLOW. */
        for (size_t i = 0; i < k; i++)
                prog[n++] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, allowed_ioctls[i],
                                                          (uint8_t) (k - i), 0);
        prog[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOTTY & SECCOMP_RET_DATA));
        prog[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        fprog.len = (unsigned short) n;

        /* no_new_privs is what lets an unprivileged process do this; root
         * may, but the flag costs the broker nothing (it never execs). */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
                return log_error_errno(errno, "seccomp: cannot load the ioctl allowlist: %m");
        return 0;
}

int sandbox_install_seccomp_filter(void) {
        int r;

        r = install_denylist();
        if (r < 0)
                return r;
        r = install_ioctl_allowlist();
        if (r < 0)
                return r;
        log_debug("seccomp: %zu system calls and namespace clones denied, %zu ioctl requests allowed",
                  ELEMENTSOF(denied_syscalls), ELEMENTSOF(allowed_ioctls));
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

unsigned sandbox_max_connections(unsigned want, bool asked) {
        /* A connection holds a socket and a pidfd; by default room is kept
         * for as many fds again (leases); an admin's explicit cap gets the
         * bare two, and the reserve still stays free. */
        unsigned per_connection = asked ? 2 : 4;
        struct rlimit rl;
        rlim_t fit;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return want;
        fit = rl.rlim_cur > FD_RESERVE * 2 ? (rl.rlim_cur - FD_RESERVE) / per_connection : FD_RESERVE / 4;
        if (fit < want && asked)
                log_notice("--max-connections %u does not fit the fd limit %llu: at most %llu connections",
                           want, (unsigned long long) rl.rlim_cur, (unsigned long long) fit);
        return fit < want ? (unsigned) fit : want;
}
