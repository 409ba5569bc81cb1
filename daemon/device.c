/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "device.h"
#include "log.h"

/* Only plain file I/O below: unit tests point syspath at a temp dir, and
 * umockdev's preload redirects these calls to its testbed. */

/* dir + "/" + name into a PATH_MAX buffer: start-up joins thousands of
 * these, so neither printf nor malloc. */
static int path_join(char ret[static PATH_MAX], const char *dir, const char *name) {
        size_t a = strlen(dir), b = strlen(name);

        if (a + b + 2 > PATH_MAX)
                return -ENAMETOOLONG;
        memcpy(ret, dir, a);
        ret[a] = '/';
        memcpy(ret + a + 1, name, b + 1);
        return 0;
}

/* A small sysfs file whole, NUL-terminated; returns its length. One read:
 * sysfs hands out an attribute in one go, and a file that fills the buffer
 * is refused rather than cut. */
static ssize_t read_small_file(const char *dir, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        char path[PATH_MAX];
        ssize_t n;
        int r;

        r = path_join(path, dir, name);
        if (r < 0)
                return r;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        do
                n = read(fd, buf, size - 1);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if ((size_t) n == size - 1)
                return -EFBIG;
        buf[n] = 0;
        return n;
}

/* First line of a small sysfs attribute, without the trailing newline. */
static int read_attr(const char *syspath, const char *name, char *buf, size_t size) {
        ssize_t n = read_small_file(syspath, name, buf, size);

        if (n < 0)
                return (int) n;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

static int hex_digit(char c) {
        return c >= '0' && c <= '9' ? c - '0' :
               c >= 'a' && c <= 'f' ? c - 'a' + 10 :
               c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The whole of s[0..len) as hex ("0x" allowed), at most max. By hand:
 * start-up parses a few per device, and strtoull() is most of its own work. */
static int parse_hex_n(const char *s, size_t len, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                s += 2;
                len -= 2;
        }
        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int d = hex_digit(s[i]);

                if (d < 0 || v > (max - (uint64_t) d) / 16)
                        return -EINVAL;
                v = v * 16 + (uint64_t) d;
        }
        *ret = v;
        return 0;
}

static int read_attr_hex(const char *syspath, const char *name, uint32_t max, uint32_t *ret) {
        char buf[64];
        uint64_t v;
        int r;

        r = read_attr(syspath, name, buf, sizeof(buf));
        if (r < 0)
                return r;
        r = parse_hex_n(buf, strlen(buf), max, &v);
        if (r < 0)
                return r;
        *ret = (uint32_t) v;
        return 0;
}

/* Target of syspath/name into a PATH_MAX buffer; -ENOENT if there is no such link. */
static int read_link_at(const char *syspath, const char *name, char ret[static PATH_MAX]) {
        char path[PATH_MAX];
        ssize_t n;
        int r;

        r = path_join(path, syspath, name);
        if (r < 0)
                return r;
        n = readlink(path, ret, PATH_MAX - 1);
        if (n < 0)
                return -errno;
        ret[n] = 0;
        return 0;
}

/* Basename of the target of syspath/name; -ENOENT if there is no such link. */
static int read_link_basename(const char *syspath, const char *name, char **ret) {
        char target[PATH_MAX];
        const char *base;
        int r;

        r = read_link_at(syspath, name, target);
        if (r < 0)
                return r;
        base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (!*base)
                return -EINVAL;
        *ret = strdup(base);
        return *ret ? 0 : -ENOMEM;
}

static int cmp_strp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted names in a directory, skipping dot entries; prefix may be NULL.
 * getdents64() on a plain fd: opendir() would add an fstat() and a 32 KiB
 * buffer for each of the two directories every device has. */
static int read_dir_sorted(const char *path, const char *prefix, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_close_ int fd = -EBADF;
        char buf[4096] __attribute__((aligned(8)));
        size_t n_names = 0;
        ssize_t n;
        int r;

        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while ((n = getdents64(fd, buf, sizeof(buf))) > 0)
                for (ssize_t off = 0; off < n;) {
                        const struct dirent64 *de = (const struct dirent64 *) (buf + off);

                        off += de->d_reclen;
                        if (de->d_name[0] == '.')
                                continue;
                        if (prefix && strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                                continue;
                        r = strv_extend(&names, de->d_name);
                        if (r < 0)
                                return r;
                        n_names++;
                }
        if (n < 0)
                return -errno;
        if (!names) {
                names = calloc(1, sizeof(char *));
                if (!names)
                        return -ENOMEM;
        }
        if (n_names > 1)
                qsort(names, n_names, sizeof(char *), cmp_strp);
        *ret = TAKE_PTR(names);
        return 0;
}

static bool path_exists(const char *syspath, const char *name) {
        char path[PATH_MAX];
        struct stat st;

        if (path_join(path, syspath, name) < 0)
                return false;
        return lstat(path, &st) == 0;
}

/* The parts that move when drivers are bound: driver, group, vfio cdev. */
typedef struct VolatileState {
        char *driver;
        int iommu_group;
        char **group_members;
        bool noiommu;
        char *vfio_cdev;
        dev_t vfio_devnum;
} VolatileState;

static void volatile_state_done(VolatileState *s) {
        free(s->driver);
        strv_free(s->group_members);
        free(s->vfio_cdev);
}

/* dir/target with target's leading "../" applied, into a PATH_MAX buffer:
 * "/sys/devices/virtual/iommu/dmar0". Lets later reads skip following the
 * link again. */
static int resolve_link(const char *dir, const char *target, char ret[static PATH_MAX]) {
        size_t len = strlen(dir);

        if (target[0] == '/') {
                if (strlen(target) >= PATH_MAX)
                        return -ENAMETOOLONG;
                strcpy(ret, target);
                return 0;
        }
        for (;;) {
                if (strncmp(target, "../", 3) == 0) {
                        while (len > 0 && dir[len - 1] != '/')
                                len--;
                        if (len > 0)
                                len--;
                        target += 3;
                } else if (strncmp(target, "./", 2) == 0)
                        target += 2;
                else
                        break;
        }
        if (len + strlen(target) + 2 > PATH_MAX)
                return -ENAMETOOLONG;
        memcpy(ret, dir, len);
        ret[len] = 0;
        return path_join(ret, ret, target);
}

static int parse_group_number(const char *s, int *ret) {
        char *end;
        unsigned long n;

        errno = 0;
        n = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != 0 || n > INT_MAX || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        *ret = (int) n;
        return 0;
}

/* has_iommu: the device has an "iommu" link, so its group comes from a real
 * IOMMU and cannot be vfio's noiommu group (vfio only makes one for devices
 * without a group): no need to look for the group's name. */
static int read_group(const char *syspath, const char *address, bool has_iommu, VolatileState *s) {
        char target[PATH_MAX], group_dir[PATH_MAX], devices_dir[PATH_MAX], name[64];
        const char *base;
        int r;

        s->iommu_group = -1;
        r = read_link_at(syspath, "iommu_group", target);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        base = strrchr(target, '/');
        r = parse_group_number(base ? base + 1 : target, &s->iommu_group);
        if (r < 0)
                return r;

        r = resolve_link(syspath, target, group_dir);
        if (r < 0)
                return r;
        r = path_join(devices_dir, group_dir, "devices");
        if (r < 0)
                return r;
        r = read_dir_sorted(devices_dir, NULL, &s->group_members);
        if (r < 0 && r != -ENOENT)
                return r;
        /* The member list always includes the device itself. */
        if (!strv_contains(s->group_members, address)) {
                r = strv_extend(&s->group_members, address);
                if (r < 0)
                        return r;
                qsort(s->group_members, strv_length(s->group_members), sizeof(char *), cmp_strp);
        }

        if (!has_iommu) {
                r = read_attr(group_dir, "name", name, sizeof(name));
                s->noiommu = r >= 0 && streq(name, "vfio-noiommu");
        }
        return 0;
}

int device_parse_devnum(const char *s, dev_t *ret) {
        unsigned long maj, min;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        maj = strtoul(s, &end, 10);
        if (errno != 0 || *end != ':' || !isdigit((unsigned char) end[1]) || maj > UINT_MAX)
                return -EINVAL;
        s = end + 1;
        min = strtoul(s, &end, 10);
        if (errno != 0 || (*end != 0 && !streq(end, "\n")) || min > UINT_MAX)
                return -EINVAL;
        *ret = makedev((unsigned) maj, (unsigned) min);
        return 0;
}

/* The cdev's dev_t from <vfio-dev dir>/<name>/dev, and its name. */
static int read_cdev_named(const char *vfio_dev_dir, const char *name, VolatileState *s) {
        char cdev_dir[PATH_MAX], buf[32];
        int r;

        r = path_join(cdev_dir, vfio_dev_dir, name);
        if (r < 0)
                return r;
        r = read_attr(cdev_dir, "dev", buf, sizeof(buf));
        if (r < 0)
                return r;
        r = device_parse_devnum(buf, &s->vfio_devnum);
        if (r < 0)
                return r;
        s->vfio_cdev = strdup(name);
        return s->vfio_cdev ? 0 : -ENOMEM;
}

/* hint: the cdev if the caller already knows it (from /sys/dev/char), which
 * saves listing the directory, and with its dev_t reading it; NULL if not. */
static int read_vfio_cdev(const char *syspath, const DeviceCdevHint *hint, VolatileState *s) {
        _cleanup_strv_free_ char **names = NULL;
        char vfio_dev_dir[PATH_MAX];
        int r;

        if (hint && hint->name && hint->devnum != 0) {
                s->vfio_devnum = hint->devnum;
                s->vfio_cdev = strdup(hint->name);
                return s->vfio_cdev ? 0 : -ENOMEM;
        }
        r = path_join(vfio_dev_dir, syspath, "vfio-dev");
        if (r < 0)
                return r;
        if (hint && hint->name && read_cdev_named(vfio_dev_dir, hint->name, s) >= 0)
                return 0;
        s->vfio_devnum = 0;

        r = read_dir_sorted(vfio_dev_dir, "vfio", &names);
        if (r == -ENOENT || (r >= 0 && !names[0]))
                return 0;
        if (r < 0)
                return r;
        if (names[1])
                log_debug("%s: more than one vfio cdev, using %s", syspath, names[0]);
        return read_cdev_named(vfio_dev_dir, names[0], s);
}

static int read_volatile_state(const char *syspath, const char *address, bool has_iommu,
                               const DeviceCdevHint *cdev_hint, VolatileState *ret) {
        VolatileState s = { .iommu_group = -1 };
        int r;

        r = read_link_basename(syspath, "driver", &s.driver);
        if (r < 0 && r != -ENOENT)
                goto fail;
        r = read_group(syspath, address, has_iommu, &s);
        if (r < 0)
                goto fail;
        r = read_vfio_cdev(syspath, cdev_hint, &s);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        volatile_state_done(&s);
        return r;
}

/* Driver names are few: each is kept once, for the broker's lifetime (past
 * the bound, devices keep their own copy). */
#define SHARED_DRIVERS_MAX 64
static char *shared_drivers[SHARED_DRIVERS_MAX];

static bool driver_is_shared(const char *driver) {
        for (size_t i = 0; i < SHARED_DRIVERS_MAX && shared_drivers[i]; i++)
                if (shared_drivers[i] == driver)
                        return true;
        return false;
}

/* Takes driver; returns the shared copy when there is one. */
static char *driver_share(char *driver) {
        size_t i;

        if (!driver)
                return NULL;
        for (i = 0; i < SHARED_DRIVERS_MAX && shared_drivers[i]; i++)
                if (streq(shared_drivers[i], driver)) {
                        free(driver);
                        return shared_drivers[i];
                }
        if (i < SHARED_DRIVERS_MAX)
                shared_drivers[i] = driver;
        return driver;
}

/* The volatile strings, wherever they live (see Device.self_group). */
static void device_drop_state(Device *d) {
        if (!driver_is_shared(d->driver))
                free(d->driver);
        if (d->group_members != d->self_group)
                strv_free(d->group_members);
        if (d->vfio_cdev != d->vfio_cdev_name)
                free(d->vfio_cdev);
        d->driver = d->vfio_cdev = NULL;
        d->group_members = NULL;
}

static void device_apply_state(Device *d, VolatileState *s) {
        device_invalidate_json(d);
        device_drop_state(d);
        d->driver = driver_share(TAKE_PTR(s->driver));
        d->iommu_group = s->iommu_group;
        if (strv_length(s->group_members) == 1 && streq(s->group_members[0], d->address)) {
                d->self_group[0] = d->address;
                d->group_members = d->self_group;
                strv_free(TAKE_PTR(s->group_members));
        } else
                d->group_members = TAKE_PTR(s->group_members);
        d->noiommu = s->noiommu;
        if (s->vfio_cdev && strlen(s->vfio_cdev) < sizeof(d->vfio_cdev_name)) {
                strcpy(d->vfio_cdev_name, s->vfio_cdev);
                d->vfio_cdev = d->vfio_cdev_name;
                free(TAKE_PTR(s->vfio_cdev));
        } else
                d->vfio_cdev = TAKE_PTR(s->vfio_cdev);
        d->vfio_devnum = s->vfio_devnum;
}

/* The value of KEY= in a uevent buffer and its length, or NULL. */
static const char *uevent_value(const char *buf, const char *key, size_t *ret_len) {
        size_t k = strlen(key);

        for (const char *line = buf; *line;) {
                size_t n = strcspn(line, "\n");

                if (n > k && strncmp(line, key, k) == 0 && line[k] == '=') {
                        *ret_len = n - k - 1;
                        return line + k + 1;
                }
                line += n;
                if (*line)
                        line++;
        }
        return NULL;
}

/* "XXXX:YYYY" (PCI_ID, PCI_SUBSYS_ID) as two 16-bit numbers. */
static int parse_id_pair(const char *v, size_t len, uint16_t *ret_a, uint16_t *ret_b) {
        const char *colon = memchr(v, ':', len);
        uint64_t a, b;

        if (!colon ||
            parse_hex_n(v, colon - v, 0xffff, &a) < 0 ||
            parse_hex_n(colon + 1, len - (colon - v) - 1, 0xffff, &b) < 0)
                return -EINVAL;
        *ret_a = (uint16_t) a;
        *ret_b = (uint16_t) b;
        return 0;
}

/* The kernel puts the IDs and class of a PCI device in its uevent
 * (PCI_ID, PCI_SUBSYS_ID, PCI_CLASS): one read instead of five. Returns
 * which of them were found; the caller reads the rest from attributes. */
enum { HAVE_ID = 1 << 0, HAVE_SUBSYS = 1 << 1, HAVE_CLASS = 1 << 2 };
static unsigned read_ids_from_uevent(Device *d) {
        char buf[1024];
        const char *v;
        unsigned have = 0;
        uint64_t class;
        size_t len;

        if (read_small_file(d->syspath, "uevent", buf, sizeof(buf)) < 0)
                return 0;
        if ((v = uevent_value(buf, "PCI_ID", &len)) &&
            parse_id_pair(v, len, &d->vendor_id, &d->device_id) >= 0)
                have |= HAVE_ID;
        if ((v = uevent_value(buf, "PCI_SUBSYS_ID", &len)) &&
            parse_id_pair(v, len, &d->subsystem_vendor_id, &d->subsystem_device_id) >= 0)
                have |= HAVE_SUBSYS;
        if ((v = uevent_value(buf, "PCI_CLASS", &len)) && parse_hex_n(v, len, 0xffffff, &class) >= 0) {
                d->class = (uint32_t) class;
                have |= HAVE_CLASS;
        }
        return have;
}

static int read_ids(Device *d) {
        unsigned have = read_ids_from_uevent(d);
        uint32_t v;
        int r;

        if (!(have & HAVE_ID)) {
                r = read_attr_hex(d->syspath, "vendor", 0xffff, &v);
                if (r < 0)
                        return r;
                d->vendor_id = (uint16_t) v;
                r = read_attr_hex(d->syspath, "device", 0xffff, &v);
                if (r < 0)
                        return r;
                d->device_id = (uint16_t) v;
        }
        if (!(have & HAVE_CLASS)) {
                r = read_attr_hex(d->syspath, "class", 0xffffff, &d->class);
                if (r < 0)
                        return r;
        }
        if (!(have & HAVE_SUBSYS)) {
                /* Optional: some buses leave them out. */
                if (read_attr_hex(d->syspath, "subsystem_vendor", 0xffff, &v) >= 0)
                        d->subsystem_vendor_id = (uint16_t) v;
                if (read_attr_hex(d->syspath, "subsystem_device", 0xffff, &v) >= 0)
                        d->subsystem_device_id = (uint16_t) v;
        }
        return 0;
}

/* IOMMU_HW_INFO_TYPE_* and IOMMU_HW_CAP_DIRTY_TRACKING (include/uapi/linux/iommufd.h). */
#define HW_INFO_TYPE_INTEL_VTD  1
#define HW_INFO_TYPE_ARM_SMMUV3 2
#define HW_INFO_TYPE_AMD        4
#define HW_CAP_DIRTY_TRACKING   (UINT64_C(1) << 0)
/* VT-d extended capabilities: scalable mode (SMTS) and second-stage
 * accessed/dirty (SSADS), which the kernel's dirty tracking needs. */
#define VTD_ECAP_SMTS  (UINT64_C(1) << 43)
#define VTD_ECAP_SSADS (UINT64_C(1) << 47)

static int read_attr_u64_hex(const char *dir, const char *name, uint64_t *ret) {
        char buf[64];
        int r;

        r = read_attr(dir, name, buf, sizeof(buf));
        if (r < 0)
                return r;
        return parse_hex_n(buf, strlen(buf), UINT64_MAX, ret);
}

/* What the IOMMU class device (the target of <device>/iommu) says about
 * itself: its kind, and for VT-d the capability registers. No ioctl, no
 * bind: a VMM needs this to pick its vIOMMU before it acquires anything. */
static void read_iommu_class_device(const char *iommu_dir, IommuHwInfo *ret) {
        const char *name = strrchr(iommu_dir, '/');
        char intel[PATH_MAX];
        uint64_t ecap;

        *ret = (IommuHwInfo) {};
        name = name ? name + 1 : iommu_dir;
        if (path_exists(iommu_dir, "intel-iommu")) {
                *ret = (IommuHwInfo) { .valid = true, .type = HW_INFO_TYPE_INTEL_VTD };
                if (path_join(intel, iommu_dir, "intel-iommu") >= 0 &&
                    read_attr_u64_hex(intel, "ecap", &ecap) >= 0 &&
                    (ecap & (VTD_ECAP_SMTS | VTD_ECAP_SSADS)) == (VTD_ECAP_SMTS | VTD_ECAP_SSADS))
                        ret->capabilities |= HW_CAP_DIRTY_TRACKING;
        } else if (path_exists(iommu_dir, "amd-iommu"))
                *ret = (IommuHwInfo) { .valid = true, .type = HW_INFO_TYPE_AMD };
        else if (strncmp(name, "smmu3.", 6) == 0)
                *ret = (IommuHwInfo) { .valid = true, .type = HW_INFO_TYPE_ARM_SMMUV3 };
}

/* Devices share a handful of IOMMUs: remember the last ones read (an
 * IOMMU's registers do not change while it exists). Returns whether the
 * device has an "iommu" link at all. */
static bool read_iommu(const char *syspath, IommuHwInfo *ret) {
        static struct { char path[256]; IommuHwInfo info; } memo[4];
        static unsigned next;
        char target[PATH_MAX], path[PATH_MAX];

        *ret = (IommuHwInfo) {};
        if (read_link_at(syspath, "iommu", target) < 0)
                return false;
        if (resolve_link(syspath, target, path) < 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(memo); i++)
                if (streq(memo[i].path, path)) {
                        *ret = memo[i].info;
                        return true;
                }
        read_iommu_class_device(path, ret);
        if (strlen(path) < sizeof(memo[next].path)) {
                strcpy(memo[next].path, path);
                memo[next].info = *ret;
                next = (next + 1) % ELEMENTSOF(memo);
        }
        return true;
}

int device_read_hinted(const char *syspath, const DeviceCdevHint *cdev_hint, Device **ret) {
        _cleanup_(device_freep) Device *d = NULL;
        VolatileState s;
        const char *base;
        size_t len;
        int r;

        if (!syspath || !ret)
                return -EINVAL;
        len = strlen(syspath);
        while (len > 1 && syspath[len - 1] == '/')
                len--;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->iommu_group = -1;
        d->syspath = strndup(syspath, len);
        if (!d->syspath)
                return -ENOMEM;

        base = strrchr(d->syspath, '/');
        base = base ? base + 1 : d->syspath;
        r = pci_address_normalize(base, d->address);
        if (r < 0)
                return r;

        r = read_ids(d);
        if (r < 0)
                return r;
        d->iommu_linked = read_iommu(d->syspath, &d->hw_info);
        r = read_volatile_state(d->syspath, d->address, d->iommu_linked, cdev_hint, &s);
        if (r < 0)
                return r;
        device_apply_state(d, &s);

        d->sriov_vf = path_exists(d->syspath, "physfn");
        d->bridge = device_bridge_kind(d->class) != NULL;

        *ret = TAKE_PTR(d);
        return 0;
}

/* The bridges never handed out, by name ("a host bridge"), or NULL for any other class.
 * vfio-pci refuses PCI-to-PCI and CardBus bridges (their config header is
 * not a normal one); the host needs its host bridge and the ISA/LPC-style
 * bridges, which vfio-pci would take, and a guest writing to their config
 * space reaches the host's chipset. Other bridges (0x0680, non-transparent
 * bridges among them) are devices like any other. */
const char *device_bridge_kind(uint32_t class) {
        switch (class >> 8) {
        case 0x0600:
                return "a host bridge";
        case 0x0601:
                return "an ISA bridge";
        case 0x0602:
                return "an EISA bridge";
        case 0x0603:
                return "an MCA bridge";
        case 0x0604:
        case 0x0609:
                return "a PCI bridge";
        case 0x0607:
                return "a CardBus bridge";
        default:
                return NULL;
        }
}

int device_read(const char *syspath, Device **ret) {
        return device_read_hinted(syspath, NULL, ret);
}

/* Bumped whenever any device's JSON may have changed: caches built from
 * several devices (a whole list) compare it. */
static uint64_t json_generation = 1;

uint64_t device_json_generation(void) {
        return json_generation;
}

void device_json_changed(void) {
        json_generation++;
}

void device_invalidate_view(Device *d) {
        json_generation++;
        if (!d)
                return;
        free(d->json_reason);
        d->json_reason = NULL;
        d->json_state_valid = false;
}

void device_invalidate_json(Device *d) {
        device_invalidate_view(d);
        if (!d)
                return;
        free(d->json_text);
        d->json_text = NULL;
        d->json_len = 0;
        d->json_common = d->json_iommu = NULL;
        d->json_common_len = d->json_iommu_len = 0;
}

Device *device_free(Device *d) {
        if (!d)
                return NULL;
        device_invalidate_json(d);
        free(d->syspath);
        device_drop_state(d);
        free(d);
        return NULL;
}

int device_refresh(Device *d) {
        VolatileState s;
        int r;

        if (!d)
                return -EINVAL;
        /* A device that vanished has no vendor file any more: report that
         * rather than a device with an empty driver. */
        if (!path_exists(d->syspath, "vendor"))
                return -ENOENT;
        r = read_volatile_state(d->syspath, d->address, d->iommu_linked, NULL, &s);
        if (r < 0)
                return r;
        device_apply_state(d, &s);
        return 0;
}

/* vfio-pci itself, or a vendor variant of it (mlx5_vfio_pci, ...): all of
 * them claim DMA ownership the way vfio-pci does. */
static bool driver_is_vfio_pci(const char *driver) {
        size_t n;

        if (!driver)
                return false;
        if (streq(driver, "vfio-pci"))
                return true;
        n = strlen(driver);
        return n > 9 && (streq(driver + n - 9, "_vfio_pci") || streq(driver + n - 9, "-vfio-pci"));
}

bool device_driver_is_vfio_compatible(const Device *d) {
        if (!d->driver)
                return true;
        return driver_is_vfio_pci(d->driver) ||
               streq(d->driver, "pci-stub") ||
               streq(d->driver, "pcieport");
}

bool device_is_on_vfio(const Device *d) {
        return driver_is_vfio_pci(d->driver) && d->vfio_cdev;
}

const char *iommu_hw_info_type_to_string(uint32_t type) {
        /* Values of enum iommu_hw_info_type, include/uapi/linux/iommufd.h (7.3). */
        static const char *const names[] = {
                [0] = "none",
                [1] = "intel-vtd",
                [2] = "arm-smmuv3",
                [3] = "tegra241-cmdqv",
                [4] = "amd",
        };

        if (type < ELEMENTSOF(names) && names[type])
                return names[type];
        return "unknown";
}
