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

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

/* dir + "/" + name, without printf: start-up joins thousands of these. */
static int path_join(const char *dir, const char *name, char **ret) {
        size_t a = strlen(dir), b = strlen(name);
        char *p = malloc(a + b + 2);

        *ret = p;
        if (!p)
                return -ENOMEM;
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
        return 0;
}

/* First line of a small sysfs attribute, without the trailing newline. */
static int read_attr(const char *syspath, const char *name, char *buf, size_t size) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;
        int r;

        r = path_join(syspath, name, &path);
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
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

static int read_attr_hex(const char *syspath, const char *name, uint32_t max, uint32_t *ret) {
        char buf[64], *end;
        unsigned long v;
        int r;

        r = read_attr(syspath, name, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        v = strtoul(buf, &end, 16);
        if (errno != 0 || end == buf || *end != 0 || v > max)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

/* Basename of the target of syspath/name; -ENOENT if there is no such link. */
static int read_link_basename(const char *syspath, const char *name, char **ret) {
        _cleanup_free_ char *path = NULL;
        char target[PATH_MAX];
        const char *base;
        ssize_t n;
        int r;

        r = path_join(syspath, name, &path);
        if (r < 0)
                return r;
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return -errno;
        target[n] = 0;
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

/* Sorted names in a directory, skipping dot entries; prefix may be NULL. */
static int read_dir_sorted(const char *path, const char *prefix, char ***ret) {
        _cleanup_closedir_ DIR *dir = NULL;
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        int r;

        dir = opendir(path);
        if (!dir)
                return -errno;
        errno = 0;
        while ((de = readdir(dir))) {
                if (de->d_name[0] == '.')
                        continue;
                if (prefix && strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                r = strv_extend(&names, de->d_name);
                if (r < 0)
                        return r;
        }
        if (errno != 0)
                return -errno;
        if (!names) {
                names = calloc(1, sizeof(char *));
                if (!names)
                        return -ENOMEM;
        }
        qsort(names, strv_length(names), sizeof(char *), cmp_strp);
        *ret = TAKE_PTR(names);
        return 0;
}

static bool path_exists(const char *syspath, const char *name) {
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (path_join(syspath, name, &path) < 0)
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

static int read_group(const char *syspath, const char *address, VolatileState *s) {
        _cleanup_free_ char *group = NULL, *group_dir = NULL, *devices_dir = NULL;
        char name[64], *end;
        unsigned long n;
        int r;

        s->iommu_group = -1;
        r = read_link_basename(syspath, "iommu_group", &group);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        errno = 0;
        n = strtoul(group, &end, 10);
        if (errno != 0 || end == group || *end != 0 || n > INT_MAX)
                return -EINVAL;
        s->iommu_group = (int) n;

        r = path_join(syspath, "iommu_group", &group_dir);
        if (r < 0)
                return r;
        r = path_join(group_dir, "devices", &devices_dir);
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

        r = read_attr(group_dir, "name", name, sizeof(name));
        s->noiommu = r >= 0 && streq(name, "vfio-noiommu");
        return 0;
}

static int read_vfio_cdev(const char *syspath, VolatileState *s) {
        _cleanup_free_ char *vfio_dev_dir = NULL, *cdev_dir = NULL;
        _cleanup_strv_free_ char **names = NULL;
        char buf[32];
        unsigned maj, min;
        int r, n;

        r = path_join(syspath, "vfio-dev", &vfio_dev_dir);
        if (r < 0)
                return r;
        r = read_dir_sorted(vfio_dev_dir, "vfio", &names);
        if (r == -ENOENT || (r >= 0 && !names[0]))
                return 0;
        if (r < 0)
                return r;
        if (names[1])
                log_debug("%s: more than one vfio cdev, using %s", syspath, names[0]);

        r = path_join(vfio_dev_dir, names[0], &cdev_dir);
        if (r < 0)
                return r;
        r = read_attr(cdev_dir, "dev", buf, sizeof(buf));
        if (r < 0)
                return r;
        if (sscanf(buf, "%u:%u%n", &maj, &min, &n) != 2 || buf[n] != 0)
                return -EINVAL;

        s->vfio_cdev = strdup(names[0]);
        if (!s->vfio_cdev)
                return -ENOMEM;
        s->vfio_devnum = makedev(maj, min);
        return 0;
}

static int read_volatile_state(const char *syspath, const char *address, VolatileState *ret) {
        VolatileState s = { .iommu_group = -1 };
        int r;

        r = read_link_basename(syspath, "driver", &s.driver);
        if (r < 0 && r != -ENOENT)
                goto fail;
        r = read_group(syspath, address, &s);
        if (r < 0)
                goto fail;
        r = read_vfio_cdev(syspath, &s);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        volatile_state_done(&s);
        return r;
}

static void device_apply_state(Device *d, VolatileState *s) {
        device_invalidate_json(d);
        free(d->driver);
        strv_free(d->group_members);
        free(d->vfio_cdev);
        d->driver = TAKE_PTR(s->driver);
        d->iommu_group = s->iommu_group;
        d->group_members = TAKE_PTR(s->group_members);
        d->noiommu = s->noiommu;
        d->vfio_cdev = TAKE_PTR(s->vfio_cdev);
        d->vfio_devnum = s->vfio_devnum;
}

static int read_ids(Device *d) {
        uint32_t v;
        int r;

        r = read_attr_hex(d->syspath, "vendor", 0xffff, &v);
        if (r < 0)
                return r;
        d->vendor_id = (uint16_t) v;
        r = read_attr_hex(d->syspath, "device", 0xffff, &v);
        if (r < 0)
                return r;
        d->device_id = (uint16_t) v;
        r = read_attr_hex(d->syspath, "class", 0xffffff, &d->class);
        if (r < 0)
                return r;

        /* Optional: some buses leave them out. */
        if (read_attr_hex(d->syspath, "subsystem_vendor", 0xffff, &v) >= 0)
                d->subsystem_vendor_id = (uint16_t) v;
        if (read_attr_hex(d->syspath, "subsystem_device", 0xffff, &v) >= 0)
                d->subsystem_device_id = (uint16_t) v;
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
        char buf[64], *end;
        unsigned long long v;
        int r;

        r = read_attr(dir, name, buf, sizeof(buf));
        if (r < 0)
                return r;
        errno = 0;
        v = strtoull(buf, &end, 16);
        if (errno != 0 || end == buf || *end != 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* What the IOMMU class device (the target of <device>/iommu) says about
 * itself: its kind, and for VT-d the capability registers. No ioctl, no
 * bind: a VMM needs this to pick its vIOMMU before it acquires anything. */
static void read_iommu_class_device(const char *iommu_dir, IommuHwInfo *ret) {
        _cleanup_free_ char *intel = NULL;
        const char *name = strrchr(iommu_dir, '/');
        uint64_t ecap;

        *ret = (IommuHwInfo) {};
        name = name ? name + 1 : iommu_dir;
        if (path_exists(iommu_dir, "intel-iommu")) {
                *ret = (IommuHwInfo) { .valid = true, .type = HW_INFO_TYPE_INTEL_VTD };
                if (path_join(iommu_dir, "intel-iommu", &intel) >= 0 &&
                    read_attr_u64_hex(intel, "ecap", &ecap) >= 0 &&
                    (ecap & (VTD_ECAP_SMTS | VTD_ECAP_SSADS)) == (VTD_ECAP_SMTS | VTD_ECAP_SSADS))
                        ret->capabilities |= HW_CAP_DIRTY_TRACKING;
        } else if (path_exists(iommu_dir, "amd-iommu"))
                *ret = (IommuHwInfo) { .valid = true, .type = HW_INFO_TYPE_AMD };
        else if (strncmp(name, "smmu3.", 6) == 0)
                *ret = (IommuHwInfo) { .valid = true, .type = HW_INFO_TYPE_ARM_SMMUV3 };
}

/* dir/target with target's leading "../" applied: "/sys/devices/virtual/iommu/dmar0". */
static int resolve_link(const char *dir, const char *target, char **ret) {
        size_t len = strlen(dir);

        if (target[0] == '/')
                return (*ret = strdup(target)) ? 0 : -ENOMEM;
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
        {
                _cleanup_free_ char *base = strndup(dir, len);
                return base ? path_join(base, target, ret) : -ENOMEM;
        }
}

/* Devices share a handful of IOMMUs: remember the last ones read (an
 * IOMMU's registers do not change while it exists). */
static void read_iommu(const char *syspath, IommuHwInfo *ret) {
        static struct { char path[256]; IommuHwInfo info; } memo[4];
        static unsigned next;
        _cleanup_free_ char *link = NULL, *path = NULL;
        char target[PATH_MAX];
        ssize_t n;

        *ret = (IommuHwInfo) {};
        if (path_join(syspath, "iommu", &link) < 0)
                return;
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return;
        target[n] = 0;
        if (resolve_link(syspath, target, &path) < 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(memo); i++)
                if (streq(memo[i].path, path)) {
                        *ret = memo[i].info;
                        return;
                }
        read_iommu_class_device(path, ret);
        if (strlen(path) < sizeof(memo[next].path)) {
                strcpy(memo[next].path, path);
                memo[next].info = *ret;
                next = (next + 1) % ELEMENTSOF(memo);
        }
}

int device_read(const char *syspath, Device **ret) {
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
        r = read_volatile_state(d->syspath, d->address, &s);
        if (r < 0)
                return r;
        device_apply_state(d, &s);

        read_iommu(d->syspath, &d->hw_info);
        d->sriov_vf = path_exists(d->syspath, "physfn");
        d->bridge = (d->class >> 8) == 0x0604;

        *ret = TAKE_PTR(d);
        return 0;
}

void device_invalidate_json(Device *d) {
        if (!d)
                return;
        free(d->json_text);
        free(d->json_reason);
        d->json_text = d->json_reason = NULL;
        d->json_len = 0;
        d->json_state_valid = false;
}

Device *device_free(Device *d) {
        if (!d)
                return NULL;
        device_invalidate_json(d);
        free(d->syspath);
        free(d->driver);
        strv_free(d->group_members);
        free(d->vfio_cdev);
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
        r = read_volatile_state(d->syspath, d->address, &s);
        if (r < 0)
                return r;
        device_apply_state(d, &s);
        return 0;
}

/* 1..max_digits hex digits; advances *p. */
static int parse_hex_field(const char **p, size_t max_digits, unsigned *ret) {
        unsigned v = 0;
        size_t n = 0;

        while (isxdigit((unsigned char) (*p)[n])) {
                if (++n > max_digits)
                        return -EINVAL;
                char c = (char) tolower((unsigned char) (*p)[n - 1]);
                v = v * 16 + (unsigned) (c <= '9' ? c - '0' : c - 'a' + 10);
        }
        if (n == 0)
                return -EINVAL;
        *p += n;
        *ret = v;
        return 0;
}

int pci_address_normalize(const char *s, char ret[static 16]) {
        unsigned domain = 0, bus, dev, fn;
        const char *p = s;
        size_t colons = 0;

        /* "dddd:bb:dd.f" is 12 characters; refuse anything longer early. */
        if (!s || strnlen(s, 13) > 12)
                return -EINVAL;
        for (const char *c = s; *c; c++)
                colons += *c == ':';
        if (colons != 1 && colons != 2)
                return -EINVAL;

        if (colons == 2) {
                if (parse_hex_field(&p, 4, &domain) < 0 || *p++ != ':')
                        return -EINVAL;
        }
        if (parse_hex_field(&p, 2, &bus) < 0 || *p++ != ':')
                return -EINVAL;
        if (parse_hex_field(&p, 2, &dev) < 0 || dev > 0x1f || *p++ != '.')
                return -EINVAL;
        if (parse_hex_field(&p, 1, &fn) < 0 || fn > 7 || *p != 0)
                return -EINVAL;

        /* By hand: this runs for every lookup, and snprintf() is most of its cost. */
        static const char hex[] = "0123456789abcdef";
        const unsigned digits[] = { domain >> 12, domain >> 8, domain >> 4, domain, bus >> 4, bus, dev >> 4, dev };
        char *o = ret;
        for (size_t i = 0; i < ELEMENTSOF(digits); i++) {
                if (i == 4 || i == 6)
                        *o++ = ':';
                *o++ = hex[digits[i] & 0xf];
        }
        *o++ = '.';
        *o++ = hex[fn & 0xf];
        *o = 0;
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
