/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memlock.h"
#include "test.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static void test_parse(void) {
        uint64_t v = 0;

        CHECK_INT(memlock_parse("1073741824", &v), 0);
        CHECK_INT(v, GiB);
        CHECK_INT(memlock_parse("512K", &v), 0);
        CHECK_INT(v, 512 * 1024);
        CHECK_INT(memlock_parse("64M", &v), 0);
        CHECK_INT(v, 64 * MiB);
        CHECK_INT(memlock_parse("16G", &v), 0);
        CHECK_INT(v, 16 * GiB);
        CHECK_INT(memlock_parse("2T", &v), 0);
        CHECK_INT(v, 2048 * GiB);
        CHECK(memlock_parse("unlimited", &v) == 0 && v == MEMLOCK_UNLIMITED);

        CHECK_INT(memlock_parse("", &v), -EINVAL);
        CHECK_INT(memlock_parse("0", &v), -EINVAL);
        CHECK_INT(memlock_parse("-1", &v), -EINVAL);
        CHECK_INT(memlock_parse(" 1G", &v), -EINVAL);
        CHECK_INT(memlock_parse("+1G", &v), -EINVAL);
        CHECK_INT(memlock_parse("1g", &v), -EINVAL);
        CHECK_INT(memlock_parse("1GB", &v), -EINVAL);
        CHECK_INT(memlock_parse("1 G", &v), -EINVAL);
        CHECK_INT(memlock_parse("1.5G", &v), -EINVAL);
        CHECK_INT(memlock_parse("G", &v), -EINVAL);
        CHECK_INT(memlock_parse("lots", &v), -EINVAL);
        CHECK_INT(memlock_parse(NULL, &v), -EINVAL);
        CHECK_INT(memlock_parse("99999999999999999999", &v), -ERANGE);
        CHECK_INT(memlock_parse("17179869184T", &v), -ERANGE);
        CHECK_INT(memlock_parse("18446744073709551615", &v), -ERANGE);
}

static void test_format(void) {
        char buf[32];

        CHECK_STR(memlock_format(512 * MiB, buf), "512 MiB");
        CHECK_STR(memlock_format(3 * GiB / 2, buf), "1.5 GiB");
        CHECK_STR(memlock_format(4096, buf), "4 KiB");
        CHECK_STR(memlock_format(100, buf), "100 B");
        CHECK_STR(memlock_format(MEMLOCK_UNLIMITED, buf), "unlimited");
}

static void test_accounting_names(void) {
        CHECK_INT(memlock_accounting_from_string("process"), MEMLOCK_ACCOUNTING_PROCESS);
        CHECK_INT(memlock_accounting_from_string("user"), MEMLOCK_ACCOUNTING_USER);
        CHECK_INT(memlock_accounting_from_string("mm"), -EINVAL);
        CHECK_INT(memlock_accounting_from_string(NULL), -EINVAL);
        CHECK_STR(memlock_accounting_to_string(MEMLOCK_ACCOUNTING_USER), "user");
}

/* A child that waits until its pipe closes, with a small memlock limit. */
static pid_t spawn_child(int *ret_pidfd, int *ret_pipe, rlim_t soft, rlim_t hard) {
        int p[2];
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                char c;
                struct rlimit rl = { soft, hard };

                close(p[1]);
                (void) setrlimit(RLIMIT_MEMLOCK, &rl);
                /* Until the parent closes its end. */
                _exit(read(p[0], &c, 1) < 0 ? 1 : 0);
        }
        close(p[0]);
        *ret_pipe = p[1];
        *ret_pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        return pid;
}

static struct rlimit child_limit(pid_t pid) {
        struct rlimit rl = {};

        (void) prlimit(pid, RLIMIT_MEMLOCK, NULL, &rl);
        return rl;
}

/* CAP_SYS_RESOURCE (bit 24), which raising a hard limit needs; containers often drop it. */
static bool have_cap_sys_resource(void) {
        unsigned long long caps = 0;
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");

        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "CapEff: %llx", &caps) == 1)
                        break;
        if (f)
                fclose(f);
        return caps & (1ULL << 24);
}

static void test_raise(void) {
        int pidfd = -EBADF, pipe_fd = -EBADF, status;
        bool privileged = have_cap_sys_resource();
        struct rlimit self = {};
        uint64_t now = 0;
        pid_t pid, got = 0;

        (void) getrlimit(RLIMIT_MEMLOCK, &self);
        /* The child starts with soft limit 0 under our hard limit. */
        pid = spawn_child(&pidfd, &pipe_fd, 0, self.rlim_max);
        CHECK(pid > 0 && pidfd >= 0);
        usleep(100 * 1000);     /* let it set its limit */
        CHECK_INT(memlock_pidfd_get_pid(pidfd, &got), 0);
        CHECK_INT(got, pid);

        /* Up to the hard limit needs no privilege. */
        if (self.rlim_max != RLIM_INFINITY && self.rlim_max >= 4096) {
                CHECK_INT(memlock_raise(pidfd, self.rlim_max / 2, &now), 0);
                CHECK_INT(now, self.rlim_max / 2);
                CHECK_INT(child_limit(pid).rlim_cur, self.rlim_max / 2);
                CHECK_INT(child_limit(pid).rlim_max, self.rlim_max);
        }
        if (privileged) {
                CHECK_INT(memlock_raise(pidfd, 64 * GiB, &now), 0);
                CHECK_INT(now, 64 * GiB);
                CHECK_INT(child_limit(pid).rlim_cur, 64 * GiB);
                CHECK_INT(child_limit(pid).rlim_max, 64 * GiB);
                /* Never lowers. */
                CHECK_INT(memlock_raise(pidfd, 16 * MiB, &now), 0);
                CHECK_INT(now, 64 * GiB);
                CHECK_INT(child_limit(pid).rlim_max, 64 * GiB);
                CHECK_INT(memlock_raise(pidfd, MEMLOCK_UNLIMITED, &now), 0);
                CHECK(now == MEMLOCK_UNLIMITED && child_limit(pid).rlim_max == RLIM_INFINITY);
        } else {
                printf("ok - # no CAP_SYS_RESOURCE: raising hard limits is shown in the VM tier\n");
                if (self.rlim_max != RLIM_INFINITY)
                        CHECK_INT(memlock_raise(pidfd, self.rlim_max + 4096, &now), -EPERM);
        }

        close(pipe_fd);
        CHECK(waitpid(pid, &status, 0) == pid);
        /* Reaped: its pid may be anyone's now. */
        CHECK_INT(memlock_pidfd_get_pid(pidfd, &got), -ESRCH);
        CHECK_INT(memlock_raise(pidfd, 1 * GiB, &now), -ESRCH);
        close(pidfd);

        CHECK_INT(memlock_raise(-EBADF, 1 * GiB, &now), -EBADF);
        CHECK_INT(memlock_pidfd_get_pid(STDIN_FILENO, &got), -ENOTTY);
}

int main(void) {
        test_parse();
        test_format();
        test_accounting_names();
        test_raise();
        return test_result();
}
