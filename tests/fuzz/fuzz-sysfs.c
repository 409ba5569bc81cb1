/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sysfs device reader (device_read) on a fake tree built from the input:
 * a list of records {kind, length, bytes} that write attribute files
 * (vendor, class, ...), make the driver/iommu_group/iommu/physfn links,
 * group members and names, vfio cdevs and IOMMU registers, and the uevent
 * (PCI_ID, PCI_CLASS, ...), all inside a private tmpfs directory (links are
 * confined to it). Half the inputs name the last cdev as start-up's hint.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "fuzz.h"

#define ADDRESS "0000:00:02.0"

static char root[128], dev[256], group_dir[1024], iommu_dir[1024], cdev_hint[40];

enum {
        REC_VENDOR, REC_DEVICE, REC_CLASS, REC_SUBSYS_VENDOR, REC_SUBSYS_DEVICE,
        REC_DRIVER, REC_GROUP, REC_GROUP_NAME, REC_GROUP_MEMBER, REC_VFIO_CDEV,
        REC_IOMMU, REC_IOMMU_REG, REC_PHYSFN, REC_UEVENT, _REC_MAX,
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void remove_tree(void) {
        (void) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void reset_tree(void) {
        char p[4096];

        remove_tree();
        (void) mkdir(root, 0755);
        snprintf(p, sizeof(p), "%s/devices", root);
        (void) mkdir(p, 0755);
        (void) mkdir(dev, 0755);
        group_dir[0] = iommu_dir[0] = cdev_hint[0] = 0;
}

static void write_file(const char *dir, const char *name, const uint8_t *data, size_t n) {
        _cleanup_free_ char *p = NULL;
        int fd;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return;
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return;
        (void) !write(fd, data, n);
        close(fd);
}

/* A file name from fuzz bytes: [a-z0-9:._-], never "." or "..", never empty. */
static void make_name(const uint8_t *data, size_t n, char out[static 33]) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789:._-";
        size_t k = 0;

        for (size_t i = 0; i < n && k < 32; i++)
                out[k++] = chars[data[i] % (sizeof(chars) - 1)];
        out[k] = 0;
        if (k == 0 || strspn(out, ".") == k)
                strcpy(out, "x");
}

/* mkdir -p for the few levels used here. */
static void make_dirs(const char *path) {
        char p[4096];

        snprintf(p, sizeof(p), "%s", path);
        for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
                *s = 0;
                (void) mkdir(p, 0755);
                *s = '/';
        }
        (void) mkdir(p, 0755);
}

static void link_to(const char *name, const char *target_dir_rel, const char *target_name) {
        char target[4096], full[4096], linkp[4096];

        snprintf(target, sizeof(target), "../../%s/%s", target_dir_rel, target_name);
        snprintf(full, sizeof(full), "%s/%s/%s", root, target_dir_rel, target_name);
        make_dirs(full);
        snprintf(linkp, sizeof(linkp), "%s/%s", dev, name);
        (void) unlink(linkp);
        /* A name the fuzzer made up may not make a link: then there is none. */
        if (symlink(target, linkp) < 0)
                return;
}

static void apply(unsigned kind, const uint8_t *data, size_t n) {
        static const char *const attrs[] = { "vendor", "device", "class", "subsystem_vendor", "subsystem_device" };
        char name[33], p[4096];

        make_name(data, n, name);
        switch (kind) {
        case REC_VENDOR ... REC_SUBSYS_DEVICE:
                write_file(dev, attrs[kind], data, n);
                break;
        case REC_DRIVER:
                link_to("driver", "drivers", name);
                break;
        case REC_GROUP:
                link_to("iommu_group", "groups", name);
                snprintf(group_dir, sizeof(group_dir), "%s/groups/%s", root, name);
                snprintf(p, sizeof(p), "%s/devices", group_dir);
                (void) mkdir(p, 0755);
                break;
        case REC_GROUP_NAME:
                if (group_dir[0])
                        write_file(group_dir, "name", data, n);
                break;
        case REC_GROUP_MEMBER:
                if (group_dir[0]) {
                        snprintf(p, sizeof(p), "%s/devices/%s", group_dir, name);
                        if (symlink("../../../devices/" ADDRESS, p) < 0)
                                break;
                }
                break;
        case REC_VFIO_CDEV:
                snprintf(p, sizeof(p), "%s/vfio-dev/vfio%s", dev, name);
                make_dirs(p);
                write_file(p, "dev", data, n);
                snprintf(cdev_hint, sizeof(cdev_hint), "vfio%s", name);
                break;
        case REC_IOMMU:
                link_to("iommu", "iommus", name);
                snprintf(iommu_dir, sizeof(iommu_dir), "%s/iommus/%s", root, name);
                break;
        case REC_IOMMU_REG:
                if (iommu_dir[0] && n > 0) {
                        static const char *const sub[] = { "intel-iommu", "amd-iommu" };
                        static const char *const regs[] = { "cap", "ecap", "version" };
                        snprintf(p, sizeof(p), "%s/%s", iommu_dir, sub[data[0] % 2]);
                        (void) mkdir(p, 0755);
                        write_file(p, regs[data[0] / 2 % 3], data + 1, n - 1);
                }
                break;
        case REC_PHYSFN:
                link_to("physfn", "devices", name);
                break;
        case REC_UEVENT:
                write_file(dev, "uevent", data, n);
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(device_freep) Device *d = NULL;

        if (!root[0]) {
                snprintf(root, sizeof(root), "/dev/shm/iommufd-fuzz-sysfs-%d", (int) getpid());
                snprintf(dev, sizeof(dev), "%s/devices/" ADDRESS, root);
                atexit(remove_tree);
        }
        if (size > 4096)
                return 0;
        reset_tree();
        for (size_t i = 0; i + 2 <= size;) {
                unsigned kind = data[i] % _REC_MAX;
                size_t n = data[i + 1];

                i += 2;
                if (n > size - i)
                        n = size - i;
                apply(kind, data + i, n);
                i += n;
        }
        if (device_read_hinted(dev, size % 2 && cdev_hint[0] ? &(DeviceCdevHint) { cdev_hint, size % 3 } : NULL,
                               &d) >= 0)
                (void) device_refresh(d);
        return 0;
}
