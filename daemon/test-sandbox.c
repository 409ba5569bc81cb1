/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The broker's seccomp filter denies what it must and leaves the rest alone.
 * Runs in a child: a filter cannot be removed once loaded. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

#include "sandbox.h"
#include "test.h"
#include "uapi.h"

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fspick
#define SYS_fspick 433
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif



static int run_child(void) {
        char *const argv[] = { (char *) "/bin/true", NULL };
        int fd, status, tty = -1;
        pid_t pid;

        /* A terminal, opened before the filter (a build chroot may have no
         * /dev/pts: then the isatty() check below is left out). */
        int ptmx = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (ptmx >= 0 && grantpt(ptmx) == 0 && unlockpt(ptmx) == 0 && ptsname(ptmx))
                tty = open(ptsname(ptmx), O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (tty < 0)
                printf("skip: no pseudo-terminal, isatty() under the filter not checked\n");

        CHECK(sandbox_install_seccomp_filter() == 0);

        /* isatty() still tells a terminal from a file under the filter,
         * whichever request this glibc asks it with (TCGETS, or TCGETS2
         * as Debian sid's glibc 2.43 does). */
        if (tty >= 0)
                CHECK(isatty(tty) == 1);
        fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0 && isatty(fd) == 0 && errno == ENOTTY);
        close(fd);

        errno = 0;
        CHECK(execv("/bin/true", argv) < 0 && errno == EPERM);
        errno = 0;
        CHECK(mount("none", "/mnt", "tmpfs", 0, NULL) < 0 && errno == EPERM);
        errno = 0;
        CHECK(unshare(CLONE_NEWNS) < 0 && errno == EPERM);
#ifndef __SANITIZE_ADDRESS__
        errno = 0;
        CHECK(syscall(SYS_ptrace, 0, 0, 0, 0) < 0 && errno == EPERM);
#endif
        errno = 0;
        CHECK(syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0) < 0 && errno == EPERM);
        errno = 0;
        CHECK(syscall(SYS_fspick, AT_FDCWD, "/", 0) < 0 && errno == EPERM);
        errno = 0;
        CHECK(mknod("/tmp/iommufd-test-sandbox-node", S_IFCHR | 0600, makedev(1, 3)) < 0 && errno == EPERM);
        errno = 0;
        CHECK(syscall(SYS_io_uring_setup, 1, NULL) < 0 && errno == EPERM);
        errno = 0;
        CHECK(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0) < 0 && errno == EPERM);
        errno = 0;
        CHECK(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, 0) < 0 && errno == EPERM);
        errno = 0;
        CHECK(syscall(SYS_clone3, NULL, 0) < 0 && errno == ENOSYS);

        /* ioctl: the broker's own requests reach the kernel (EBADF on a bad
         * fd, not the filter's ENOTTY), anything else is refused. */
        errno = 0;
        CHECK(ioctl(-1, UAPI_VFIO_DEVICE_BIND_IOMMUFD, NULL) < 0 && errno == EBADF);
        errno = 0;
        CHECK(ioctl(-1, UAPI_IOMMU_IOAS_ALLOC, NULL) < 0 && errno == EBADF);
        errno = 0;
        CHECK(ioctl(-1, TCGETS, NULL) < 0 && errno == EBADF);
        errno = 0;
        CHECK(ioctl(-1, TIOCSTI, "x") < 0 && errno == ENOTTY);
        errno = 0;
        CHECK(ioctl(-1, FIFREEZE, 0) < 0 && errno == ENOTTY);
        /* the upper half of the request does not sneak one past */
        errno = 0;
        CHECK(syscall(SYS_ioctl, -1, 0x100000000UL | TIOCSTI, "x") < 0 && errno == ENOTTY);

        /* what the broker does do keeps working */
        fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        close(fd);
        pid = fork();
        if (pid == 0)
                _exit(7);
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 7);
        CHECK(syscall(SYS_pidfd_open, getpid(), 0) >= 0);

        fflush(stdout);
        return test_result();
}

int main(void) {
        int status;
        pid_t pid;

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return 1;
        if (pid == 0)
                _exit(run_child());
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
                printf("FAIL - child did not exit normally\n");
                return 1;
        }
        /* The parent is unfiltered: exec still works here. */
        printf("%s\n", WEXITSTATUS(status) == 0 ? "all passed" : "FAILED");
        return WEXITSTATUS(status) == 0 ? 0 : 1;
}
