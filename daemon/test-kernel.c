/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kernel_ops_fake behaves like the kernel where the core relies on it (one
 * bind per device while the bound file is open anywhere, EBUSY for an open
 * group, env configuration), and kernel_ops_real rejects bad input before
 * touching the kernel. The real ioctls are exercised by the VM tier.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel.h"
#include "uapi.h"
#include "test.h"

#define CHECK_INT_WHAT(a, b, what) do { long _a = (a), _b = (b); CHECK_MSG(_a == _b, "%s: %ld == %ld", what, _a, _b); } while (0)

static Device make_device(const char *address) {
        Device d = { .vfio_cdev = (char *) "vfio7", .vfio_devnum = makedev(511, 7), .iommu_group = 7 };

        snprintf(d.address, sizeof(d.address), "%s", address);
        return d;
}

static void fd_target(int fd, char *buf, size_t size) {
        char link[64];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, buf, size - 1);
        buf[n > 0 ? n : 0] = 0;
}

static void test_fake_open(void) {
        const KernelOps *k = &kernel_ops_fake;
        Device d = make_device("0000:03:00.0"), busy = make_device("0000:04:00.0");
        Device nocdev = make_device("0000:05:00.0");
        char target[256];
        int fd;

        printf("# fake: configuration from the environment\n");
        CHECK_MSG(k->unsupported_reason() && streq(k->unsupported_reason(), "no iommu here"),
                  "unsupported_reason from IOMMUFD_BROKER_FAKE_UNSUPPORTED: %s", strna(k->unsupported_reason()));

        printf("# fake: open_device\n");
        fd = k->open_device(&d);
        CHECK_MSG(fd >= 0, "open_device: %d", fd);
        fd_target(fd, target, sizeof(target));
        CHECK_MSG(strstr(target, "memfd:fake-vfio-0000:03:00.0") != NULL, "device fd is %s", target);
        CHECK_MSG((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "device fd is O_CLOEXEC");
        safe_close(fd);
        /* Like vfio_device_block_group() on 7.3: open works, bind says EBUSY. */
        fd = k->open_device(&busy);
        CHECK_MSG(fd >= 0, "open_device of a device whose group is open: %d", fd);
        {
                int iommufd = k->open_iommufd(MEMLOCK_ACCOUNTING_PROCESS);
                uint32_t dev_id;
                CHECK_INT_WHAT(k->bind(fd, iommufd, &dev_id), -EBUSY, "bind of a device whose group is open");
                safe_close(iommufd);
        }
        safe_close(fd);
        nocdev.vfio_cdev = NULL;
        CHECK_INT_WHAT(k->open_device(&nocdev), -ENODEV, "open_device without vfio cdev");
        /* A sysfs device whose /sys/dev/char/511:7 does not lead back to it
         * (here: leads nowhere) is refused, as kernel_ops_real does. */
        d.syspath = (char *) "/sys/devices/pci0000:00/0000:03:00.0";
        CHECK_INT_WHAT(k->open_device(&d), -ENXIO, "open_device whose /sys/dev/char link is not the device's");
        d.syspath = NULL;

        fd = k->open_iommufd(MEMLOCK_ACCOUNTING_PROCESS);
        fd_target(fd, target, sizeof(target));
        CHECK_MSG(fd >= 0 && strstr(target, "memfd:fake-iommufd"), "open_iommufd is %s", target);
        safe_close(fd);
}

static void test_fake_bind(void) {
        const KernelOps *k = &kernel_ops_fake;
        Device d = make_device("0000:03:00.0"), other = make_device("0000:03:00.1");
        Device failing = make_device("0000:06:00.0");
        _cleanup_close_ int iommufd = k->open_iommufd(MEMLOCK_ACCOUNTING_PROCESS), fd2 = -EBADF, fd3 = -EBADF, ofd = -EBADF;
        int fd1 = k->open_device(&d);
        uint32_t id = 0, id2 = 0, ioas = 0, hwpt = 0;
        IommuHwInfo info = {};
        int status = 0;
        pid_t pid;

        printf("# fake: one bind per device while the bound file is open\n");
        CHECK_INT_WHAT(k->bind(fd1, iommufd, &id), 0, "bind");
        CHECK_MSG(id >= 1, "dev_id %u", id);
        CHECK_INT_WHAT(k->bind(fd1, iommufd, &id2), -EINVAL, "second bind of the same file");
        fd2 = k->open_device(&d);
        CHECK_INT_WHAT(k->bind(fd2, iommufd, &id2), -EINVAL, "bind of another open file of the bound device");
        ofd = k->open_device(&other);
        CHECK_INT_WHAT(k->bind(ofd, iommufd, &id2), 0, "bind of another device");
        CHECK_MSG(id2 > id, "ids count up: %u > %u", id2, id);

        printf("# fake: the binding follows the open file, not the process\n");
        pid = fork();
        if (pid == 0) {
                /* Holds its inherited copy of fd1, as a client would. */
                pause();
                _exit(0);
        }
        safe_close(fd1);
        CHECK_INT_WHAT(k->bind(fd2, iommufd, &id2), -EINVAL, "bind while a child still holds the bound file");
        CHECK_INT_WHAT(k->hw_info(iommufd, id, &info), 0, "hw_info while a child still holds the bound file");
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        /* As the kernel drops the device object from the iommufd on unbind. */
        CHECK_INT_WHAT(k->hw_info(iommufd, id, &info), -ENOENT, "hw_info once the last copy is closed");
        CHECK_INT_WHAT(k->bind(fd2, iommufd, &id2), 0, "bind once the last copy of the bound file is closed");

        printf("# fake: attach, detach, hw_info\n");
        fd3 = k->open_device(&d);
        CHECK_INT_WHAT(k->attach(fd3, 1, &hwpt), -EINVAL, "attach of an unbound file");
        CHECK_INT_WHAT(k->ioas_alloc(iommufd, &ioas), 0, "ioas_alloc");
        CHECK_MSG(ioas > id2, "ioas id %u counts on", ioas);
        CHECK_INT_WHAT(k->attach(fd2, ioas, &hwpt), 0, "attach");
        CHECK_MSG(hwpt > ioas, "hwpt id %u counts on", hwpt);
        CHECK_INT_WHAT(k->detach(fd2), 0, "detach");
        CHECK_INT_WHAT(k->hw_info(iommufd, id2, &info), 0, "hw_info");
        CHECK_MSG(info.valid && info.type == UAPI_IOMMU_HW_INFO_TYPE_INTEL_VTD &&
                  (info.capabilities & UAPI_IOMMU_HW_CAP_DIRTY_TRACKING), "hw_info: intel-vtd, dirty tracking");
        CHECK_INT_WHAT(k->set_request_eventfd(fd2, -1), 0, "set_request_eventfd");

        printf("# fake: foreign fds get the kernel's answers\n");
        CHECK_INT_WHAT(k->bind(iommufd, iommufd, &id), -ENOTTY, "bind on an iommufd");
        CHECK_INT_WHAT(k->bind(fd3, fd2, &id), -EBADF, "bind to a device fd as iommufd");
        CHECK_INT_WHAT(k->ioas_alloc(STDIN_FILENO, &ioas), -EBADF, "ioas_alloc on stdin");
        CHECK_INT_WHAT(k->bind(-1, iommufd, &id), -EBADF, "bind on fd -1");

        printf("# fake: file_is_device matches the fd as /proc shows it\n");
        {
                char link[64], target[256];
                struct stat st;
                snprintf(link, sizeof(link), "/proc/self/fd/%d", fd2);
                ssize_t n = readlink(link, target, sizeof(target) - 1);
                target[n > 0 ? n : 0] = 0;
                CHECK(fstat(fd2, &st) == 0);
                CHECK_MSG(k->file_is_device(&st, target, "0000:03:00.0", 0), "fake matches %s", target);
                CHECK_MSG(!k->file_is_device(&st, target, "0000:03:00.1", 0), "fake does not match 03:00.1");
                CHECK_MSG(!kernel_ops_real.file_is_device(&st, target, "0000:03:00.0", makedev(511, 0)),
                          "real does not match a memfd");
        }

        printf("# fake: IOMMUFD_BROKER_FAKE_BIND_FAIL\n");
        fd1 = k->open_device(&failing);
        CHECK_INT_WHAT(k->bind(fd1, iommufd, &id), -EINVAL, "bind of a listed device");
        safe_close(fd1);
}

static void test_real_validation(void) {
        const KernelOps *k = &kernel_ops_real;
        Device d = make_device("0000:03:00.0");
        const char *reason = k->unsupported_reason();
        int fd;

        printf("# real: input checks before any kernel call\n");
        CHECK_MSG(reason == NULL || strlen(reason) > 10, "unsupported_reason: %s", strna(reason));
        if (access("/dev/iommu", F_OK) < 0)
                CHECK_MSG(reason && strstr(reason, "/dev/iommu does not exist"), "no /dev/iommu is reported");
        else if (reason && strstr(reason, "vfio device cdevs"))
                /* Only when vfio is loaded without its cdev major. */
                CHECK_MSG(access("/sys/class/vfio-dev", F_OK) == 0, "%s", reason);

        d.vfio_cdev = (char *) "../../etc/passwd";
        CHECK_INT_WHAT(k->open_device(&d), -ENODEV, "open_device refuses a cdev name with /");
        d.vfio_cdev = (char *) "..";
        CHECK_INT_WHAT(k->open_device(&d), -ENODEV, "open_device refuses ..");
        d.vfio_cdev = NULL;
        CHECK_INT_WHAT(k->open_device(&d), -ENODEV, "open_device without cdev");
        d.vfio_cdev = (char *) "vfio7";
        d.vfio_devnum = 0;
        CHECK_INT_WHAT(k->open_device(&d), -ENODEV, "open_device without devnum");

        /* The ioctl wrappers pass the kernel's errno through unchanged. */
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        CHECK_INT_WHAT(k->bind(fd, fd, NULL), -ENOTTY, "bind ioctl on /dev/null");
        CHECK_INT_WHAT(k->set_request_eventfd(fd, -1), -ENOTTY, "SET_IRQS on /dev/null");
        safe_close(fd);
        CHECK_INT_WHAT(k->detach(-1), -EBADF, "detach on fd -1");
}

static void test_char_major_listed(void) {
        const char *text =
                "Character devices:\n  1 mem\n 10 misc\n237 vfio-dev\n238 vfio\n\n"
                "Block devices:\n  8 sd\n259 blkext\n";

        printf("# /proc/devices: the vfio-dev char major\n");
        CHECK(kernel_char_major_listed(text, "vfio-dev"));
        CHECK(kernel_char_major_listed(text, "mem"));
        CHECK(!kernel_char_major_listed(text, "vfio-de"));
        CHECK(!kernel_char_major_listed(text, "sd"));           /* a block major */
        CHECK(!kernel_char_major_listed("Character devices:\n 10 misc\n", "vfio-dev"));
        CHECK(!kernel_char_major_listed("", "vfio-dev"));
        CHECK(!kernel_char_major_listed("Character devices:\n237 vfio-dev-x\n", "vfio-dev"));
        CHECK(kernel_char_major_listed("Character devices:\n237 vfio-dev", "vfio-dev"));  /* no final newline */
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        setenv("IOMMUFD_BROKER_FAKE_UNSUPPORTED", "no iommu here", 1);
        setenv("IOMMUFD_BROKER_FAKE_GROUP_OPEN", "0000:01:00.0,0000:04:00.0", 1);
        setenv("IOMMUFD_BROKER_FAKE_BIND_FAIL", "0000:06:00.0", 1);

        test_fake_open();
        test_fake_bind();
        test_real_validation();
        test_char_major_listed();

        return test_result();
}
