/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The real iommufd/vfio calls. Each is a thin ioctl wrapper that returns a
 * negative errno unchanged, because the core turns specific errnos into typed
 * errors (EBUSY from open: legacy group open elsewhere; EINVAL from bind:
 * another open file of the device is bound).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fmt.h"
#include "kernel.h"
#include "log.h"
#include "uapi.h"

#define IOMMU_DEV_PATH       "/dev/iommu"
#define VFIO_CDEV_DIR        "/dev/vfio/devices"
#define VFIO_DEV_CLASS_DIR   "/sys/class/vfio-dev"
#define PROC_DEVICES         "/proc/devices"
#define VFIO_CDEV_MAJOR_NAME "vfio-dev"     /* vfio_cdev_init()'s chrdev region */

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static int ioctl_errno(int fd, unsigned long request, void *arg) {
        if (ioctl(fd, request, arg) < 0)
                return -errno;
        return 0;
}

/* Whether a directory exists and has an entry other than . and .. */
static int dir_state(const char *path, bool *ret_nonempty) {
        _cleanup_(closedirp) DIR *dir = opendir(path);
        struct dirent *de;

        if (!dir)
                return -errno;
        *ret_nonempty = false;
        while ((de = readdir(dir)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        *ret_nonempty = true;
                        break;
                }
        return 0;
}

bool kernel_char_major_listed(const char *proc_devices, const char *name) {
        const char *p = proc_devices, *end;
        bool in_char = false;

        for (; p && *p; p = end ? end + 1 : NULL) {
                char major_name[64];
                unsigned major;

                end = strchr(p, '\n');
                if (strncmp(p, "Character devices:", 18) == 0)
                        in_char = true;
                else if (strncmp(p, "Block devices:", 14) == 0)
                        in_char = false;
                else if (in_char && sscanf(p, "%u %63[^\n]", &major, major_name) == 2 &&
                         streq(major_name, name))
                        return true;
        }
        return false;
}

static bool vfio_cdev_major_registered(void) {
        char text[8192];
        _cleanup_close_ int fd = open(PROC_DEVICES, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return false;
        n = read(fd, text, sizeof(text) - 1);
        if (n < 0)
                return false;
        text[n] = 0;
        return kernel_char_major_listed(text, VFIO_CDEV_MAJOR_NAME);
}

static const char *real_unsupported_reason(void) {
        /* Rebuilt on every call: modules may be loaded while the broker runs.
         * The broker is single-threaded, so one buffer suffices. */
        static char reason[256];
        _cleanup_close_ int fd = -EBADF;
        bool has_cdevs = false;
        int r;

        fd = open(IOMMU_DEV_PATH, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT)
                        return "kernel has no iommufd: " IOMMU_DEV_PATH " does not exist (CONFIG_IOMMUFD, module iommufd)";
                snprintf(reason, sizeof(reason), "cannot open " IOMMU_DEV_PATH ": %s", strerror(errno));
                return reason;
        }

        if (access(VFIO_CDEV_DIR, F_OK) >= 0)
                return NULL;

        /* devtmpfs removes /dev/vfio/devices with the last vfio cdev and makes
         * it again with the next, and /sys/class/vfio-dev lists a cdev before
         * its node exists and after it is gone: neither says whether the
         * kernel has cdevs at all (a managed Acquire right after another
         * device's driver came back was refused in that window). The char
         * major vfio registers at load does, and only with
         * CONFIG_VFIO_DEVICE_CDEV. */
        if (vfio_cdev_major_registered())
                return NULL;
        r = dir_state(VFIO_DEV_CLASS_DIR, &has_cdevs);
        if (r < 0)
                return "vfio is not loaded: neither " VFIO_CDEV_DIR " nor " VFIO_DEV_CLASS_DIR " exists (module vfio-pci)";
        return "kernel has no vfio device cdevs: vfio registered no \"vfio-dev\" char major in " PROC_DEVICES
               " (CONFIG_VFIO_DEVICE_CDEV)";
}

static int set_rlimit_mode_per_process(int iommufd) {
        struct uapi_iommu_option option = {
                .size = sizeof(option),
                .option_id = UAPI_IOMMU_OPTION_RLIMIT_MODE,
                .op = UAPI_IOMMU_OPTION_OP_SET,
                .object_id = 0,                 /* global option */
                .val64 = 1,                     /* charge RLIMIT_MEMLOCK to the process */
        };

        return ioctl_errno(iommufd, UAPI_IOMMU_OPTION, &option);
}

static int real_open_iommufd(MemlockAccounting accounting) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = open(IOMMU_DEV_PATH, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_debug_errno(errno, "open(%s): %m", IOMMU_DEV_PATH);

        /* Without this, pinned guest memory counts against the client user's
         * memlock limit across all its VMs; per-process accounting needs
         * CAP_SYS_RESOURCE, which is why the broker sets it. */
        if (accounting == MEMLOCK_ACCOUNTING_USER)
                return TAKE_FD(fd);
        r = set_rlimit_mode_per_process(fd);
        if (r < 0)
                return log_debug_errno(r, "IOMMU_OPTION(RLIMIT_MODE=1): %m");

        return TAKE_FD(fd);
}

/* d->vfio_cdev is a name from sysfs; keep it a single path component. */
static bool cdev_name_is_valid(const char *name) {
        return name && *name && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..");
}

static int open_vfio_cdev(const Device *d) {
        char path[PATH_MAX];
        int fd;

        snprintf(path, sizeof(path), VFIO_CDEV_DIR "/%s", d->vfio_cdev);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd >= 0 || errno != ENOENT)
                return fd >= 0 ? fd : -errno;

        /* No devtmpfs node under that name (e.g. a renamed /dev): udev's
         * /dev/char link is a symlink, so no O_NOFOLLOW; fstat checks it. */
        snprintf(path, sizeof(path), "/dev/char/%u:%u", major(d->vfio_devnum), minor(d->vfio_devnum));
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        return fd >= 0 ? fd : -errno;
}

/* Strip "/vfioN" and "/vfio-dev" and compare with the device's syspath. */
static bool cdev_dir_is(char *path, const char *syspath) {
        char *slash;

        for (int i = 0; i < 2; i++) {
                slash = strrchr(path, '/');
                if (!slash)
                        return false;
                *slash = 0;
        }
        return streq(path, syspath);
}

/* dir + a relative link target with its ".." taken off dir by text, as the
 * kernel writes /sys/dev/char links ("../../devices/..."). False if it does
 * not fit or is not of that form. */
static bool join_relative(const char *dir, const char *target, char *buf, size_t size) {
        size_t len = strlen(dir);

        if (target[0] == '/' || len >= size)
                return false;
        memcpy(buf, dir, len + 1);
        while (strncmp(target, "../", 3) == 0) {
                char *slash = strrchr(buf, '/');
                if (!slash || slash == buf)
                        return false;
                *slash = 0;
                target += 3;
        }
        len = strlen(buf);
        if (strstr(target, "/..") || strncmp(target, "..", 2) == 0 || strstr(target, "/./") ||
            len + 1 + strlen(target) >= size)
                return false;
        buf[len] = '/';
        strcpy(buf + len + 1, target);
        return true;
}

bool kernel_cdev_belongs_to(dev_t devnum, const char *syspath) {
        char link[64], target[PATH_MAX], resolved[PATH_MAX];
        ssize_t n;

        if (!syspath)
                return false;
        FmtBuf b = fmt_buf(link, sizeof(link));  /* every Acquire: no printf */
        fmt_str(&b, "/sys/dev/char/");
        fmt_u64(&b, major(devnum));
        fmt_str(&b, ":");
        fmt_u64(&b, minor(devnum));
        /* Two calls instead of realpath()'s readlink() per component:
         * sysfs device directories are no symlinks, so the link's own text
         * answers. Anything else gets the full resolution, as before. */
        n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
                target[n] = 0;
                /* It must lead somewhere, as realpath() requires. */
                if (join_relative("/sys/dev/char", target, resolved, sizeof(resolved)) &&
                    access(resolved, F_OK) == 0 && cdev_dir_is(resolved, syspath))
                        return true;
        }
        if (!realpath(link, resolved))
                return false;
        return cdev_dir_is(resolved, syspath);
}

static int real_open_device(const Device *d) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (!d || !cdev_name_is_valid(d->vfio_cdev) || d->vfio_devnum == 0)
                return -ENODEV;         /* not on a vfio driver with cdev support */

        /* EBUSY: the legacy group /dev/vfio/N is open elsewhere, and cdev and
         * group access exclude each other. */
        fd = open_vfio_cdev(d);
        if (fd < 0)
                return log_debug_errno(fd, "%s: opening vfio cdev %s: %m", d->address, d->vfio_cdev);

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISCHR(st.st_mode) || st.st_rdev != d->vfio_devnum)
                return log_debug_errno(ENXIO, "%s: %s is not char device %u:%u", d->address, d->vfio_cdev,
                                       major(d->vfio_devnum), minor(d->vfio_devnum));
        if (!kernel_cdev_belongs_to(st.st_rdev, d->syspath))
                return log_debug_errno(ENXIO, "%s: char device %u:%u now belongs to another device",
                                       d->address, major(st.st_rdev), minor(st.st_rdev));

        return TAKE_FD(fd);
}

static int real_bind(int device_fd, int iommufd, uint32_t *ret_dev_id) {
        /* The 16-byte form: accepted by every kernel with vfio cdev; the
         * token field is only for VFs whose PF set a VF token. */
        struct uapi_vfio_device_bind_iommufd bind = {
                .argsz = UAPI_VFIO_DEVICE_BIND_IOMMUFD_MINSZ,
                .iommufd = iommufd,
        };
        int r;

        /* EINVAL here usually means another open file of this device is
         * already bound: cdev opens are exclusive once bound. */
        r = ioctl_errno(device_fd, UAPI_VFIO_DEVICE_BIND_IOMMUFD, &bind);
        if (r < 0)
                return r;
        if (ret_dev_id)
                *ret_dev_id = bind.out_devid;
        return 0;
}

static int real_ioas_alloc(int iommufd, uint32_t *ret_ioas_id) {
        struct uapi_iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
        int r;

        r = ioctl_errno(iommufd, UAPI_IOMMU_IOAS_ALLOC, &alloc);
        if (r < 0)
                return r;
        if (ret_ioas_id)
                *ret_ioas_id = alloc.out_ioas_id;
        return 0;
}

static int real_attach(int device_fd, uint32_t pt_id, uint32_t *ret_hwpt_id) {
        struct uapi_vfio_device_attach_iommufd_pt attach = {
                .argsz = UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT_MINSZ,
                .pt_id = pt_id,
        };
        int r;

        r = ioctl_errno(device_fd, UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
        if (r < 0)
                return r;
        /* For an IOAS the kernel returns the hwpt it picked or created. */
        if (ret_hwpt_id)
                *ret_hwpt_id = attach.pt_id;
        return 0;
}

static int real_detach(int device_fd) {
        struct uapi_vfio_device_detach_iommufd_pt detach = {
                .argsz = UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT_MINSZ,
        };

        return ioctl_errno(device_fd, UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
}

static int real_hw_info(int iommufd, uint32_t dev_id, IommuHwInfo *ret) {
        /* Room for any type's data; the broker only reports type and caps. */
        uint64_t data[16] = {};
        struct uapi_iommu_hw_info info = {
                .size = sizeof(info),
                .dev_id = dev_id,
                .data_len = sizeof(data),
                .data_uptr = (uint64_t) (uintptr_t) data,
        };
        int r;

        r = ioctl_errno(iommufd, UAPI_IOMMU_GET_HW_INFO, &info);
        if (r < 0)
                return r;
        *ret = (IommuHwInfo) {
                .valid = true,
                .type = info.out_data_type,
                .capabilities = info.out_capabilities,
        };
        return 0;
}

static int real_set_request_eventfd(int device_fd, int eventfd) {
        /* Room for the header and one int32 of data, suitably aligned. */
        union {
                struct uapi_vfio_irq_set set;
                uint8_t buf[sizeof(struct uapi_vfio_irq_set) + sizeof(int32_t)];
        } u = {};
        int32_t fd32 = eventfd < 0 ? -1 : eventfd;      /* -1 de-assigns */

        u.set.argsz = sizeof(u.buf);
        u.set.flags = UAPI_VFIO_IRQ_SET_DATA_EVENTFD | UAPI_VFIO_IRQ_SET_ACTION_TRIGGER;
        u.set.index = UAPI_VFIO_PCI_REQ_IRQ_INDEX;
        u.set.start = 0;
        u.set.count = 1;
        memcpy(u.buf + sizeof(struct uapi_vfio_irq_set), &fd32, sizeof(fd32));

        /* EINVAL: the device has no request irq (not vfio-pci). */
        return ioctl_errno(device_fd, UAPI_VFIO_DEVICE_SET_IRQS, &u.set);
}

static bool real_file_is_device(const struct stat *st, const char *link_target, const char *address,
                                dev_t devnum) {
        return S_ISCHR(st->st_mode) && st->st_rdev == devnum;
}

const KernelOps kernel_ops_real = {
        .unsupported_reason = real_unsupported_reason,
        .open_iommufd = real_open_iommufd,
        .open_device = real_open_device,
        .bind = real_bind,
        .ioas_alloc = real_ioas_alloc,
        .attach = real_attach,
        .detach = real_detach,
        .hw_info = real_hw_info,
        .set_request_eventfd = real_set_request_eventfd,
        .file_is_device = real_file_is_device,
};
