/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kernel_ops_fake: a test double for iommufd/vfio, linked only into the fast
 * tier's iommufd-broker-fake. It keeps the behaviour the core relies on:
 *
 *   - open_iommufd() returns a fresh memfd named "fake-iommufd".
 *   - open_device() returns a fresh memfd named "fake-vfio-<address>", so a
 *     client can tell which device it got from readlink(/proc/self/fd/N).
 *     It fails with -ENODEV if the device has no vfio cdev, like the kernel,
 *     and with -ENXIO, like kernel_ops_real, if /sys/dev/char/<its dev_t>
 *     now resolves to another device (a rebind race) or to nothing; only
 *     for devices whose syspath is under /sys (the fixture's, not the unit
 *     tests' made-up ones).
 *   - bind() succeeds once per device while the bound file is open: binding
 *     the same file again, or another open file of a device whose bound file
 *     is still open anywhere (even in a client after the lease ended), gives
 *     -EINVAL. As with the kernel, closing the last reference to the bound
 *     file unbinds the device. This is tracked with an open-file-description
 *     lock on the memfd (it lives exactly as long as the open file) and
 *     /proc/locks, so the fake keeps no reference to the file.
 *   - dev_id, ioas_id and hwpt_id come from one counter starting at 1.
 *   - hw_info() reports intel-vtd with IOMMU_HW_CAP_DIRTY_TRACKING for a
 *     dev_id whose bound file is still open, and -ENOENT once it closed,
 *     as the kernel drops the device object from the iommufd on unbind.
 *   - file_is_device() recognises the memfd by its name in /proc/<pid>/fd
 *     and by its size, which is 4096 times the pid of the process that made
 *     it (so that parallel test daemons never see each other's devices).
 *   - Each memfd starts with "iommufd-broker-fake:<name>" and a NUL: how the
 *     fake tells its files (and which device) from an fd.
 *
 * Configured only by environment variables, read once at first use:
 *
 *   IOMMUFD_BROKER_FAKE_UNSUPPORTED=<reason>
 *           unsupported_reason() returns <reason>.
 *   IOMMUFD_BROKER_FAKE_GROUP_OPEN=<addr>[,<addr>...]
 *           bind() fails with -EBUSY for these devices, as the real kernel's
 *           vfio_device_block_group() does when their legacy group
 *           /dev/vfio/N is open elsewhere; opening the cdev still works.
 *   IOMMUFD_BROKER_FAKE_BIND_FAIL=<addr>[,<addr>...]
 *           bind() fails with -EINVAL for these devices.
 *
 * Addresses are compared in full form ("0000:03:00.0").
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kernel.h"
#include "log.h"
#include "uapi.h"


#define FAKE_IOMMUFD_NAME "fake-iommufd"
#define FAKE_VFIO_PREFIX  "fake-vfio-"

/* One device bound through a file, identified by that file's inode. */
typedef struct FakeBinding {
        char address[16];
        uint32_t dev_id;
        dev_t st_dev;
        ino_t st_ino;
} FakeBinding;

/* Bounded: stale entries are dropped whenever the table fills up. */
#define FAKE_MAX_BINDINGS 256

static struct {
        bool loaded;
        char *unsupported;              /* NULL: supported */
        char *group_open;               /* comma-separated addresses */
        char *bind_fail;
        uint32_t next_id;
        FakeBinding bindings[FAKE_MAX_BINDINGS];
        size_t n_bindings;
} fake;

static void fake_load(void) {
        const char *e;

        if (fake.loaded)
                return;
        fake.loaded = true;
        fake.next_id = 1;
        e = getenv("IOMMUFD_BROKER_FAKE_UNSUPPORTED");
        fake.unsupported = e && *e ? strdup(e) : NULL;
        e = getenv("IOMMUFD_BROKER_FAKE_GROUP_OPEN");
        fake.group_open = e ? strdup(e) : NULL;
        e = getenv("IOMMUFD_BROKER_FAKE_BIND_FAIL");
        fake.bind_fail = e ? strdup(e) : NULL;
}

static bool address_in_list(const char *list, const char *address) {
        size_t n = strlen(address);

        for (const char *p = list; p && *p;) {
                size_t len = strcspn(p, ",");
                if (len == n && strncmp(p, address, n) == 0)
                        return true;
                p += len;
                p += *p == ',';
        }
        return false;
}

/* The daemon whose fake kernel this is; workers inherit it over fork(). */
static pid_t fake_owner(void) {
        static pid_t owner;

        if (owner == 0)
                owner = getpid();
        return owner;
}

/* Pages, so that the tag at the start always fits. */
static off_t fake_device_size(void) {
        return (off_t) fake_owner() * 4096;
}

static uint32_t fake_new_id(void) {
        fake_load();
        return fake.next_id++;
}

/* Each memfd starts with FAKE_TAG and its name, NUL-terminated: pread() is
 * one cheap system call, readlink() of /proc/self/fd/N a path walk through
 * procfs that cost more than the rest of an Acquire. */
#define FAKE_TAG "iommufd-broker-fake:"

static int fake_memfd(const char *name) {
        char tag[96];
        int fd, n;

        n = snprintf(tag, sizeof(tag), FAKE_TAG "%s", name);
        if (n < 0 || (size_t) n >= sizeof(tag))
                return -EINVAL;
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (pwrite(fd, tag, (size_t) n + 1, 0) != n + 1) {
                int r = errno ? -errno : -EIO;
                close(fd);
                return r;
        }
        return fd;
}

/* The memfd name behind fd ("fake-vfio-0000:03:00.0"), or -ENOTTY if fd is
 * not one of ours: the kernel answers a foreign file's ioctl that way. */
static int fake_fd_name(int fd, char *buf, size_t size) {
        char tag[96];
        size_t len;
        ssize_t n;

        if (fd < 0)
                return -EBADF;
        n = pread(fd, tag, sizeof(tag) - 1, 0);
        if (n < 0)
                return errno == EBADF ? -EBADF : -ENOTTY;
        tag[n] = 0;
        len = strlen(tag);
        if (strncmp(tag, FAKE_TAG, strlen(FAKE_TAG)) != 0 || len == (size_t) n)
                return -ENOTTY;         /* not ours, or no NUL: not a whole tag */
        len -= strlen(FAKE_TAG);
        if (len >= size)
                return -ENOTTY;
        memcpy(buf, tag + strlen(FAKE_TAG), len + 1);   /* three times an Acquire: no printf */
        return 0;
}

/* Address of a fake device fd, from its name. */
static int fake_device_address(int fd, char address[static 16]) {
        char name[64];
        int r;

        r = fake_fd_name(fd, name, sizeof(name));
        if (r < 0)
                return r;
        if (strncmp(name, FAKE_VFIO_PREFIX, strlen(FAKE_VFIO_PREFIX)) != 0 ||
            strlen(name) - strlen(FAKE_VFIO_PREFIX) >= 16)
                return -ENOTTY;
        strcpy(address, name + strlen(FAKE_VFIO_PREFIX));
        return 0;
}

static int fake_check_iommufd(int fd) {
        char name[64];
        int r;

        r = fake_fd_name(fd, name, sizeof(name));
        if (r == -ENOTTY || (r >= 0 && !streq(name, FAKE_IOMMUFD_NAME) && !streq(name, FAKE_IOMMUFD_NAME "-user")))
                return -EBADF;  /* the kernel's answer to "this is not an iommufd" */
        return r;
}

/* Parse one "/proc/locks" line: "1: OFDLCK ADVISORY  WRITE -1 00:01:1234 0 0".
 * True for an OFD lock (not a "->" waiter) on the inode. */
static bool locks_line_matches(const char *line, const char *end, dev_t st_dev, ino_t st_ino) {
        const char *p = line, *field[6];
        size_t n = 0;
        unsigned long long maj, min, ino;
        char *e;

        /* The first six space-separated fields; a waiter's second is "->". */
        while (p < end && n < ELEMENTSOF(field)) {
                while (p < end && *p == ' ')
                        p++;
                field[n++] = p;
                while (p < end && *p != ' ')
                        p++;
        }
        if (n < 6 || strncmp(field[1], "OFDLCK ", 7) != 0)
                return false;
        maj = strtoull(field[5], &e, 16);
        if (*e != ':')
                return false;
        min = strtoull(e + 1, &e, 16);
        if (*e != ':')
                return false;
        ino = strtoull(e + 1, &e, 10);
        return maj == major(st_dev) && min == minor(st_dev) && ino == st_ino;
}

/* Whether some open file description still holds our OFD lock on the
 * inode. Read and parsed by hand: fopen() and sscanf() cost more than the
 * rest of an Acquire. */
static bool inode_is_locked(dev_t st_dev, ino_t st_ino) {
        _cleanup_close_ int fd = open("/proc/locks", O_RDONLY | O_CLOEXEC);
        char buf[16384];
        size_t len = 0;
        ssize_t n;

        if (fd < 0)
                return true;    /* cannot tell: err on the side of "bound" */
        for (;;) {
                const char *line = buf, *nl;

                n = read(fd, buf + len, sizeof(buf) - 1 - len);
                if (n < 0)
                        return true;
                len += (size_t) n;
                buf[len] = 0;
                while ((nl = memchr(line, '\n', buf + len - line))) {
                        if (locks_line_matches(line, nl, st_dev, st_ino))
                                return true;
                        line = nl + 1;
                }
                if (n == 0)
                        return false;
                /* Keep the partial last line for the next read. */
                len = (size_t) (buf + len - line);
                memmove(buf, line, len);
                if (len == sizeof(buf) - 1)
                        len = 0;        /* a line this long is not a lock */
        }
}

static void fake_drop_stale_bindings(void) {
        size_t j = 0;

        for (size_t i = 0; i < fake.n_bindings; i++)
                if (inode_is_locked(fake.bindings[i].st_dev, fake.bindings[i].st_ino))
                        fake.bindings[j++] = fake.bindings[i];
        fake.n_bindings = j;
}

static FakeBinding *fake_find_binding(const char *address) {
        for (size_t i = 0; i < fake.n_bindings; i++)
                if (streq(fake.bindings[i].address, address))
                        return &fake.bindings[i];
        return NULL;
}

/* Whether the device is bound through a file that is still open somewhere.
 * /proc/locks is read only when there is a binding to ask about. */
static bool fake_device_is_bound(const char *address) {
        if (!fake_find_binding(address))
                return false;
        fake_drop_stale_bindings();
        return fake_find_binding(address) != NULL;
}

/* Whether fd is the very file the device was bound through. Being open
 * here, that file still holds its lock: no need to ask /proc/locks. */
static bool fake_fd_is_bound(int fd, const char *address) {
        FakeBinding *b = fake_find_binding(address);
        struct stat st;

        if (!b || fstat(fd, &st) < 0)
                return false;
        return b->st_dev == st.st_dev && b->st_ino == st.st_ino;
}

static const char *fake_unsupported_reason(void) {
        fake_load();
        return fake.unsupported;
}

static int fake_open_iommufd(MemlockAccounting accounting) {
        fake_load();
        /* The name tells tests which accounting the context got. */
        return fake_memfd(accounting == MEMLOCK_ACCOUNTING_USER ? FAKE_IOMMUFD_NAME "-user" : FAKE_IOMMUFD_NAME);
}

static int fake_open_device(const Device *d) {
        char name[64];
        int fd;

        fake_load();
        if (!d || !d->vfio_cdev || d->vfio_devnum == 0)
                return -ENODEV;
        /* Only devices from a sysfs (the fixture's); unit tests' made-up
         * devices have no syspath there to check against. */
        if (d->syspath && strncmp(d->syspath, "/sys/", 5) == 0 &&
            !kernel_cdev_belongs_to(d->vfio_devnum, d->syspath))
                return log_debug_errno(ENXIO, "%s: char device %u:%u now belongs to another device",
                                       d->address, major(d->vfio_devnum), minor(d->vfio_devnum));
        snprintf(name, sizeof(name), FAKE_VFIO_PREFIX "%s", d->address);
        fd = fake_memfd(name);
        if (fd < 0)
                return fd;
        /* The size says which fake kernel made it: parallel test daemons
         * hand out memfds of the same names, and a /proc scan must find
         * only its own. Sparse: costs nothing. */
        if (ftruncate(fd, fake_device_size()) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int fake_bind(int device_fd, int iommufd, uint32_t *ret_dev_id) {
        struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
        char address[16];
        struct stat st;
        int r;

        fake_load();
        r = fake_device_address(device_fd, address);
        if (r < 0)
                return r;
        r = fake_check_iommufd(iommufd);
        if (r < 0)
                return r;
        if (address_in_list(fake.group_open, address))
                return -EBUSY;  /* legacy group open elsewhere */
        if (address_in_list(fake.bind_fail, address))
                return -EINVAL;
        if (fake_device_is_bound(address))
                return -EINVAL; /* this or another open file of the device is bound */
        if (fake.n_bindings >= FAKE_MAX_BINDINGS)
                fake_drop_stale_bindings();
        if (fake.n_bindings >= FAKE_MAX_BINDINGS)
                return -ENOSPC;

        if (fstat(device_fd, &st) < 0)
                return -errno;
        /* The lock belongs to the open file description: it moves with the fd
         * over SCM_RIGHTS and vanishes when the last copy closes. */
        if (fcntl(device_fd, F_OFD_SETLK, &lock) < 0)
                return -errno;

        fake.bindings[fake.n_bindings] = (FakeBinding) {
                .st_dev = st.st_dev, .st_ino = st.st_ino, .dev_id = fake_new_id() };
        strcpy(fake.bindings[fake.n_bindings].address, address);
        if (ret_dev_id)
                *ret_dev_id = fake.bindings[fake.n_bindings].dev_id;
        fake.n_bindings++;
        return 0;
}

static int fake_ioas_alloc(int iommufd, uint32_t *ret_ioas_id) {
        int r;

        r = fake_check_iommufd(iommufd);
        if (r < 0)
                return r;
        if (ret_ioas_id)
                *ret_ioas_id = fake_new_id();
        return 0;
}

/* attach/detach/hw_info need a device bound through this very file. */
static int fake_require_bound(int device_fd) {
        char address[16];
        int r;

        r = fake_device_address(device_fd, address);
        if (r < 0)
                return r;
        return fake_fd_is_bound(device_fd, address) ? 0 : -EINVAL;
}

static int fake_attach(int device_fd, uint32_t pt_id, uint32_t *ret_hwpt_id) {
        int r;

        r = fake_require_bound(device_fd);
        if (r < 0)
                return r;
        if (pt_id == 0)
                return -ENOENT; /* no such object */
        if (ret_hwpt_id)
                *ret_hwpt_id = fake_new_id();
        return 0;
}

static int fake_detach(int device_fd) {
        return fake_require_bound(device_fd);
}

static bool fake_has_dev_id(uint32_t dev_id) {
        for (size_t i = 0; i < fake.n_bindings; i++)
                if (fake.bindings[i].dev_id == dev_id)
                        return true;
        return false;
}

static int fake_hw_info(int iommufd, uint32_t dev_id, IommuHwInfo *ret) {
        int r;

        r = fake_check_iommufd(iommufd);
        if (r < 0)
                return r;
        /* /proc/locks only when there is a binding to ask about. */
        if (fake_has_dev_id(dev_id))
                fake_drop_stale_bindings();
        if (!fake_has_dev_id(dev_id))
                return -ENOENT; /* never bound, or every fd of it closed */
        *ret = (IommuHwInfo) {
                .valid = true,
                .type = UAPI_IOMMU_HW_INFO_TYPE_INTEL_VTD,
                .capabilities = UAPI_IOMMU_HW_CAP_DIRTY_TRACKING,
        };
        return 0;
}

static int fake_set_request_eventfd(int device_fd, int eventfd) {
        char address[16];

        return fake_device_address(device_fd, address);
}

static bool fake_file_is_device(const struct stat *st, const char *link_target, const char *address,
                                dev_t devnum) {
        char want[64];

        snprintf(want, sizeof(want), "/memfd:" FAKE_VFIO_PREFIX "%s", address);
        return st->st_size == fake_device_size() && strncmp(link_target, want, strlen(want)) == 0 &&
               (link_target[strlen(want)] == 0 || link_target[strlen(want)] == ' ');
}

const KernelOps kernel_ops_fake = {
        .unsupported_reason = fake_unsupported_reason,
        .open_iommufd = fake_open_iommufd,
        .open_device = fake_open_device,
        .bind = fake_bind,
        .ioas_alloc = fake_ioas_alloc,
        .attach = fake_attach,
        .detach = fake_detach,
        .hw_info = fake_hw_info,
        .set_request_eventfd = fake_set_request_eventfd,
        .file_is_device = fake_file_is_device,
};
