/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The broker's seccomp filter denies what it must and leaves the rest alone.
 * Runs in a child: a filter cannot be removed once loaded. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox.h"
#include "test.h"



static int run_child(void) {
        char *const argv[] = { (char *) "/bin/true", NULL };
        int fd, status;
        pid_t pid;

        CHECK(sandbox_install_seccomp_filter() == 0);

        errno = 0;
        CHECK(execv("/bin/true", argv) < 0 && errno == EPERM);
        errno = 0;
        CHECK(mount("none", "/mnt", "tmpfs", 0, NULL) < 0 && errno == EPERM);
        errno = 0;
        CHECK(unshare(CLONE_NEWNS) < 0 && errno == EPERM);
        errno = 0;
        CHECK(syscall(SYS_ptrace, 0, 0, 0, 0) < 0 && errno == EPERM);

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
