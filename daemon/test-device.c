/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* device_read() and the static inventory against fake sysfs trees in a temp dir. */
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "device.h"
#include "inventory.h"
#include "test.h"

static char root[] = "/tmp/test-device-XXXXXX";

/* Paths are relative to root; the helpers create parents as needed. */
static void mkdir_p(const char *rel) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (char *p = path + strlen(root) + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        (void) mkdir(path, 0755);
                        *p = '/';
                }
        (void) mkdir(path, 0755);
}

static void parent_dir(const char *rel) {
        char dir[4096];
        char *slash;

        snprintf(dir, sizeof(dir), "%s", rel);
        slash = strrchr(dir, '/');
        if (slash) {
                *slash = 0;
                mkdir_p(dir);
        }
}

static void write_file(const char *rel, const char *content) {
        char path[4096];
        FILE *f;

        parent_dir(rel);
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        f = fopen(path, "we");
        if (!f) {
                perror(path);
                exit(1);
        }
        fprintf(f, "%s\n", content);
        fclose(f);
}

static void symlink_to(const char *rel, const char *target) {
        char path[4096];

        parent_dir(rel);
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        (void) unlink(path);
        if (symlink(target, path) < 0) {
                perror(path);
                exit(1);
        }
}

static void remove_path(const char *rel);

static char *syspath_of(const char *bdf) {
        char *p;

        if (asprintf(&p, "%s/devices/pci0000:00/%s", root, bdf) < 0)
                exit(1);
        return p;
}

static void make_device(const char *bdf, const char *vendor, const char *device, const char *class) {
        char rel[256];

        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/vendor", bdf);
        write_file(rel, vendor);
        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/device", bdf);
        write_file(rel, device);
        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/subsystem_vendor", bdf);
        write_file(rel, "0x1af4");
        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/subsystem_device", bdf);
        write_file(rel, "0x1100");
        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/class", bdf);
        write_file(rel, class);
}

static void set_driver(const char *bdf, const char *driver) {
        char rel[256], target[256];

        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/driver", bdf);
        if (!driver) {
                remove_path(rel);
                return;
        }
        snprintf(target, sizeof(target), "bus/pci/drivers/%s", driver);
        mkdir_p(target);
        snprintf(target, sizeof(target), "../../../bus/pci/drivers/%s", driver);
        symlink_to(rel, target);
}

static void set_group(const char *bdf, int group) {
        char rel[256], target[256];

        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/iommu_group", bdf);
        snprintf(target, sizeof(target), "../../../kernel/iommu_groups/%d", group);
        symlink_to(rel, target);
        snprintf(rel, sizeof(rel), "kernel/iommu_groups/%d/devices/%s", group, bdf);
        snprintf(target, sizeof(target), "../../../../devices/pci0000:00/%s", bdf);
        symlink_to(rel, target);
}

static void set_cdev(const char *bdf, const char *cdev, const char *devnum) {
        char rel[256];

        snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/vfio-dev/%s/dev", bdf, cdev);
        write_file(rel, devnum);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -1 : 0;
}

static void remove_path(const char *rel) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The tree every test below reads. */
static void build_tree(void) {
        /* 03:00.0 and 03:00.1 share group 5; .0 is on vfio-pci with a cdev,
         * .1 on e1000e; 03:00.0 is also an SR-IOV VF. */
        make_device("0000:03:00.0", "0x8086", "0x10d3", "0x020000");
        set_driver("0000:03:00.0", "vfio-pci");
        set_group("0000:03:00.0", 5);
        set_cdev("0000:03:00.0", "vfio3", "511:3");
        symlink_to("devices/pci0000:00/0000:03:00.0/physfn", "../0000:02:00.0");

        make_device("0000:03:00.1", "0x8086", "0x10d3", "0x020000");
        set_driver("0000:03:00.1", "e1000e");
        set_group("0000:03:00.1", 5);

        /* A noiommu group. */
        make_device("0000:04:00.0", "0x1b36", "0x0010", "0x010802");
        set_driver("0000:04:00.0", "vfio-pci");
        set_group("0000:04:00.0", 9);
        write_file("kernel/iommu_groups/9/name", "vfio-noiommu");
        set_cdev("0000:04:00.0", "vfio7", "511:7");

        /* No driver, no group. */
        make_device("0000:07:00.0", "0x1234", "0x1111", "0x030000");

        /* A bridge. */
        make_device("0000:00:1f.0", "0x8086", "0x1234", "0x060400");
        set_driver("0000:00:1f.0", "pcieport");
        set_group("0000:00:1f.0", 12);
}

static Device *read_or_die(const char *bdf) {
        _cleanup_free_ char *p = syspath_of(bdf);
        Device *d = NULL;
        int r = device_read(p, &d);

        printf("%s: device_read(%s) = %d\n", r >= 0 ? "ok" : "FAIL", bdf, r);
        if (r < 0) {
                test_failures++;
                exit(1);
        }
        return d;
}

static void test_read_full(void) {
        _cleanup_(device_freep) Device *d = read_or_die("0000:03:00.0");
        _cleanup_free_ char *p = syspath_of("0000:03:00.0");

        CHECK_STR(d->address, "0000:03:00.0");
        CHECK_STR(d->syspath, p);
        CHECK(d->vendor_id == 0x8086);
        CHECK(d->device_id == 0x10d3);
        CHECK(d->subsystem_vendor_id == 0x1af4);
        CHECK(d->subsystem_device_id == 0x1100);
        CHECK(d->class == 0x020000);
        CHECK_STR(d->driver, "vfio-pci");
        CHECK(d->iommu_group == 5);
        CHECK(strv_length(d->group_members) == 2);
        CHECK_STR(d->group_members[0], "0000:03:00.0");
        CHECK_STR(d->group_members[1], "0000:03:00.1");
        CHECK_STR(d->vfio_cdev, "vfio3");
        CHECK(d->vfio_devnum == makedev(511, 3));
        CHECK(!d->noiommu);
        CHECK(d->sriov_vf);
        CHECK(!d->bridge);
        CHECK(!d->hw_info.valid);
        CHECK(d->lease == NULL);
        CHECK(device_driver_is_vfio_compatible(d));
        CHECK(device_is_on_vfio(d));
}

static void test_read_mate(void) {
        _cleanup_(device_freep) Device *d = read_or_die("0000:03:00.1");

        CHECK_STR(d->driver, "e1000e");
        CHECK(d->iommu_group == 5);
        CHECK(strv_length(d->group_members) == 2);
        CHECK_STR(d->vfio_cdev, NULL);
        CHECK(d->vfio_devnum == 0);
        CHECK(!d->sriov_vf);
        CHECK(!device_driver_is_vfio_compatible(d));
        CHECK(!device_is_on_vfio(d));
}

static void test_read_noiommu_bare_bridge(void) {
        _cleanup_(device_freep) Device *n = read_or_die("0000:04:00.0");
        _cleanup_(device_freep) Device *bare = read_or_die("0000:07:00.0");
        _cleanup_(device_freep) Device *bridge = read_or_die("0000:00:1f.0");

        CHECK(n->noiommu);
        CHECK(n->iommu_group == 9);
        CHECK(strv_length(n->group_members) == 1);
        CHECK_STR(n->vfio_cdev, "vfio7");
        CHECK(n->vfio_devnum == makedev(511, 7));
        CHECK(n->vendor_id == 0x1b36 && n->class == 0x010802);

        CHECK_STR(bare->driver, NULL);
        CHECK(bare->iommu_group == -1);
        CHECK(bare->group_members == NULL);
        CHECK_STR(bare->vfio_cdev, NULL);
        CHECK(!bare->noiommu && !bare->bridge && !bare->sriov_vf);
        CHECK(device_driver_is_vfio_compatible(bare));
        CHECK(!device_is_on_vfio(bare));

        CHECK(bridge->bridge);
        CHECK(bridge->class == 0x060400);
        CHECK_STR(bridge->driver, "pcieport");
        CHECK(device_driver_is_vfio_compatible(bridge));
        CHECK(!device_is_on_vfio(bridge));
}

/* Which bridges are never handed out: the host's own and those vfio-pci
 * refuses; other bridge classes (a non-transparent bridge) are devices. */
static void test_bridge_kinds(void) {
        CHECK_STR(device_bridge_kind(0x060000), "a host bridge");
        CHECK_STR(device_bridge_kind(0x060100), "an ISA bridge");
        CHECK_STR(device_bridge_kind(0x060400), "a PCI bridge");
        CHECK_STR(device_bridge_kind(0x060401), "a PCI bridge");
        CHECK_STR(device_bridge_kind(0x060700), "a CardBus bridge");
        CHECK_STR(device_bridge_kind(0x060940), "a PCI bridge");
        CHECK_STR(device_bridge_kind(0x068000), NULL);
        CHECK_STR(device_bridge_kind(0x020000), NULL);
        CHECK_STR(device_bridge_kind(0x010802), NULL);
        CHECK_STR(device_bridge_kind(0x0c0330), NULL);
}

static void test_read_errors(void) {
        _cleanup_free_ char *gone = syspath_of("0000:09:00.0");
        char notpci[4096];
        Device *d = NULL;

        CHECK(device_read(gone, &d) == -ENOENT);
        CHECK(d == NULL);
        snprintf(notpci, sizeof(notpci), "%s/devices/pci0000:00", root);
        CHECK(device_read(notpci, &d) == -EINVAL);
        write_file("devices/pci0000:00/0000:0a:00.0/vendor", "banana");
        write_file("devices/pci0000:00/0000:0a:00.0/device", "0x1");
        write_file("devices/pci0000:00/0000:0a:00.0/class", "0x1");
        _cleanup_free_ char *bad = syspath_of("0000:0a:00.0");
        CHECK(device_read(bad, &d) == -EINVAL);
        CHECK(d == NULL);
        remove_path("devices/pci0000:00/0000:0a:00.0");
}

static void test_refresh(void) {
        _cleanup_(device_freep) Device *d = read_or_die("0000:03:00.0");
        _cleanup_free_ char *p = syspath_of("0000:03:00.0");

        d->hw_info = (IommuHwInfo) { .valid = true, .type = 1, .capabilities = 3 };
        d->lease = (Lease *) 0x1; /* only compared, never dereferenced */

        set_driver("0000:03:00.0", "e1000e");
        remove_path("devices/pci0000:00/0000:03:00.0/vfio-dev");
        CHECK(device_refresh(d) == 0);
        CHECK_STR(d->driver, "e1000e");
        CHECK_STR(d->vfio_cdev, NULL);
        CHECK(d->vfio_devnum == 0);
        CHECK(d->iommu_group == 5);
        CHECK(d->hw_info.valid && d->hw_info.type == 1 && d->hw_info.capabilities == 3);
        CHECK(d->lease == (Lease *) 0x1);
        CHECK(!device_is_on_vfio(d));

        set_driver("0000:03:00.0", NULL);
        CHECK(device_refresh(d) == 0);
        CHECK_STR(d->driver, NULL);

        set_driver("0000:03:00.0", "vfio-pci");
        set_cdev("0000:03:00.0", "vfio11", "511:11");
        CHECK(device_refresh(d) == 0);
        CHECK_STR(d->vfio_cdev, "vfio11");
        CHECK(d->vfio_devnum == makedev(511, 11));
        CHECK(device_is_on_vfio(d));
        d->lease = NULL;

        /* Put the tree back for the inventory test. */
        remove_path("devices/pci0000:00/0000:03:00.0/vfio-dev");
        set_cdev("0000:03:00.0", "vfio3", "511:3");
}

/* The IOMMU's kind comes from the class device behind <device>/iommu. */
static void test_iommu_from_sysfs(void) {
        static const struct {
                const char *bdf, *iommu, *file, *ecap;
                uint32_t type;
                uint64_t caps;
        } cases[] = {
                /* VT-d with scalable mode but no second-stage A/D: no dirty tracking. */
                { "0000:10:00.0", "virtual/iommu/dmar0", "intel-iommu/ecap", "f0000000000", 1, 0 },
                { "0000:10:01.0", "virtual/iommu/dmar1", "intel-iommu/ecap", "f050da", 1, 0 },
                { "0000:10:02.0", "pci0000:00/0000:00:00.2/iommu/ivhd0", "amd-iommu/cap", "40", 4, 0 },
                { "0000:10:03.0", "platform/arm-smmu-v3.0.auto/iommu/smmu3.0x0000000009050000", NULL, NULL, 2, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char rel[512], target[512];

                make_device(cases[i].bdf, "0x1b36", "0x0010", "0x010802");
                snprintf(rel, sizeof(rel), "devices/pci0000:00/%s/iommu", cases[i].bdf);
                snprintf(target, sizeof(target), "../../%s", cases[i].iommu);
                symlink_to(rel, target);
                snprintf(rel, sizeof(rel), "devices/%s/%s", cases[i].iommu, cases[i].file ?: "name");
                write_file(rel, cases[i].ecap ?: "smmu");
        }
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(device_freep) Device *d = read_or_die(cases[i].bdf);
                CHECK_MSG(d->hw_info.valid && d->hw_info.type == cases[i].type &&
                          d->hw_info.capabilities == cases[i].caps, "%s: IOMMU type %u caps %#llx from sysfs",
                          cases[i].bdf, d->hw_info.type, (unsigned long long) d->hw_info.capabilities);
        }
        {
                _cleanup_(device_freep) Device *d = read_or_die("0000:07:00.0");
                CHECK_MSG(!d->hw_info.valid, "no iommu link: no IOMMU info");
        }
        write_file("devices/virtual/iommu/dmar2/intel-iommu/ecap", "8f0000000000");
        make_device("0000:10:04.0", "0x1b36", "0x0010", "0x010802");
        symlink_to("devices/pci0000:00/0000:10:04.0/iommu", "../../virtual/iommu/dmar2");
        {
                _cleanup_(device_freep) Device *d = read_or_die("0000:10:04.0");
                CHECK_MSG(d->hw_info.valid && d->hw_info.type == 1 && d->hw_info.capabilities == 1,
                          "VT-d ecap with SMTS and SSADS: dirty tracking (caps %#llx)",
                          (unsigned long long) d->hw_info.capabilities);
        }
}

/* IDs and class come from the uevent when it has them (one read), from the
 * attributes otherwise, and a uevent that does not parse is not trusted. */
static void test_ids_from_uevent(void) {
        write_file("devices/pci0000:00/0000:20:00.0/uevent",
                   "DRIVER=vfio-pci\nPCI_CLASS=10802\nPCI_ID=1B36:0010\nPCI_SUBSYS_ID=1AF4:1100\n"
                   "PCI_SLOT_NAME=0000:20:00.0\nMODALIAS=pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02\n");
        {
                /* No attribute files at all: everything from the uevent. */
                _cleanup_(device_freep) Device *d = read_or_die("0000:20:00.0");
                CHECK(d->vendor_id == 0x1b36 && d->device_id == 0x0010);
                CHECK(d->subsystem_vendor_id == 0x1af4 && d->subsystem_device_id == 0x1100);
                CHECK(d->class == 0x010802);
        }

        make_device("0000:20:01.0", "0x8086", "0x10d3", "0x020000");
        write_file("devices/pci0000:00/0000:20:01.0/uevent",
                   "PCI_CLASS=2000000\nPCI_ID=zz:10D3\nPCI_SLOT_NAME=0000:20:01.0\n");
        {
                /* Unparsable or out-of-range values: the attributes instead;
                 * no PCI_SUBSYS_ID: the subsystem attributes. */
                _cleanup_(device_freep) Device *d = read_or_die("0000:20:01.0");
                CHECK(d->vendor_id == 0x8086 && d->device_id == 0x10d3);
                CHECK(d->subsystem_vendor_id == 0x1af4 && d->subsystem_device_id == 0x1100);
                CHECK(d->class == 0x020000);
        }

        /* A uevent without IDs and no attributes: not a device we can read. */
        write_file("devices/pci0000:00/0000:20:02.0/uevent", "PCI_SLOT_NAME=0000:20:02.0\n");
        {
                _cleanup_free_ char *p = syspath_of("0000:20:02.0");
                Device *d = NULL;
                CHECK(device_read(p, &d) == -ENOENT && !d);
        }
}

/* A cdev name known in advance (start-up lists /sys/dev/char) is used when
 * right and costs nothing but time when wrong; with its dev_t, that is
 * taken as it is. */
static void test_cdev_hint(void) {
        static const struct { const char *bdf, *hint, *cdev; unsigned minor, hint_minor; } cases[] = {
                { "0000:03:00.0", "vfio3", "vfio3", 3, 0 },
                { "0000:03:00.0", "vfio99", "vfio3", 3, 0 },   /* stale */
                { "0000:03:00.0", NULL, "vfio3", 3, 0 },
                { "0000:07:00.0", "vfio5", NULL, 0, 0 },       /* no vfio-dev at all */
                { "0000:03:00.0", "vfio3", "vfio3", 3, 3 },    /* from /sys/dev/char: not read */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *p = syspath_of(cases[i].bdf);
                _cleanup_(device_freep) Device *d = NULL;
                DeviceCdevHint hint = {
                        .name = cases[i].hint,
                        .devnum = cases[i].hint_minor ? makedev(511, cases[i].hint_minor) : 0,
                };

                CHECK(device_read_hinted(p, &hint, &d) == 0);
                CHECK_MSG(d && streq_ptr(d->vfio_cdev, cases[i].cdev) &&
                          d->vfio_devnum == (cases[i].cdev ? makedev(511, cases[i].minor) : 0),
                          "%s with hint %s: cdev %s", cases[i].bdf, strna(cases[i].hint), d ? strna(d->vfio_cdev) : "-");
        }
}

/* Drivers are kept once, a group of the device alone and a short cdev name
 * in the device itself; moving between those and their general forms on a
 * refresh keeps every value right (and, under ASan, frees what it should). */
static void test_compact_storage(void) {
        _cleanup_(device_freep) Device *a = read_or_die("0000:03:00.0");
        _cleanup_(device_freep) Device *b = read_or_die("0000:04:00.0");

        CHECK(a->driver && a->driver == b->driver);
        CHECK(strv_length(a->group_members) == 2 && a->group_members != a->self_group);
        CHECK(b->group_members == b->self_group && strv_length(b->group_members) == 1);
        CHECK_STR(b->group_members[0], "0000:04:00.0");
        CHECK(b->vfio_cdev == b->vfio_cdev_name);
        CHECK_STR(b->vfio_cdev, "vfio7");

        /* A second member joins group 9, the cdev gets a long name. */
        symlink_to("kernel/iommu_groups/9/devices/0000:04:00.1", "../../../../devices/pci0000:00/0000:04:00.1");
        remove_path("devices/pci0000:00/0000:04:00.0/vfio-dev");
        set_cdev("0000:04:00.0", "vfio12345678", "511:99");
        CHECK(device_refresh(b) == 0);
        CHECK(strv_length(b->group_members) == 2 && b->group_members != b->self_group);
        CHECK_STR(b->group_members[1], "0000:04:00.1");
        CHECK_STR(b->vfio_cdev, "vfio12345678");
        CHECK(b->vfio_cdev != b->vfio_cdev_name);

        /* And back. */
        remove_path("kernel/iommu_groups/9/devices/0000:04:00.1");
        remove_path("devices/pci0000:00/0000:04:00.0/vfio-dev");
        set_cdev("0000:04:00.0", "vfio7", "511:7");
        set_driver("0000:04:00.0", "e1000e");
        CHECK(device_refresh(b) == 0);
        CHECK(b->group_members == b->self_group);
        CHECK_STR(b->vfio_cdev, "vfio7");
        CHECK_STR(b->driver, "e1000e");
        set_driver("0000:04:00.0", "vfio-pci");
        CHECK(device_refresh(b) == 0);
        CHECK(b->driver == a->driver);
}

/* A group that comes from a real IOMMU ("iommu" link) is never vfio's
 * noiommu group, so its name is not even read. */
static void test_noiommu_needs_no_iommu(void) {
        make_device("0000:21:00.0", "0x1b36", "0x0010", "0x010802");
        set_group("0000:21:00.0", 21);
        write_file("kernel/iommu_groups/21/name", "vfio-noiommu");
        {
                _cleanup_(device_freep) Device *d = read_or_die("0000:21:00.0");
                CHECK(d->noiommu && !d->iommu_linked);
        }
        symlink_to("devices/pci0000:00/0000:21:00.0/iommu", "../../virtual/iommu/dmar0");
        {
                _cleanup_(device_freep) Device *d = read_or_die("0000:21:00.0");
                CHECK(!d->noiommu && d->iommu_linked);
        }
}

static void test_type_names(void) {
        CHECK_STR(iommu_hw_info_type_to_string(0), "none");
        CHECK_STR(iommu_hw_info_type_to_string(1), "intel-vtd");
        CHECK_STR(iommu_hw_info_type_to_string(2), "arm-smmuv3");
        CHECK_STR(iommu_hw_info_type_to_string(3), "tegra241-cmdqv");
        CHECK_STR(iommu_hw_info_type_to_string(4), "amd");
        CHECK_STR(iommu_hw_info_type_to_string(5), "unknown");
        CHECK_STR(iommu_hw_info_type_to_string(UINT32_MAX), "unknown");
}

typedef struct Events {
        unsigned added, changed, removed;
        char last_changed[8][16];
} Events;

static void on_event(Inventory *inv, Device *d, InventoryEvent event, void *userdata) {
        Events *e = userdata;

        if (event == INVENTORY_DEVICE_ADDED)
                e->added++;
        else if (event == INVENTORY_DEVICE_REMOVED)
                e->removed++;
        else if (e->changed < ELEMENTSOF(e->last_changed))
                memcpy(e->last_changed[e->changed++], d->address, 16);
}

static void test_static_inventory(void) {
        _cleanup_(inventory_freep) Inventory *inv = NULL;
        const char *order[] = { "0000:07:00.0", "0000:03:00.1", "0000:00:1f.0", "0000:04:00.0", "0000:03:00.0" };
        Events ev = {};
        Device *const *list;
        size_t n = 99;
        Device *d;

        CHECK(inventory_new_static(&inv, NULL, NULL) == 0);
        list = inventory_devices(inv, &n);
        CHECK(n == 0);
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                CHECK(inventory_add(inv, read_or_die(order[i])) == 0);
        CHECK(inventory_add(inv, read_or_die("0000:03:00.0")) == -EEXIST);

        list = inventory_devices(inv, &n);
        CHECK(n == 5);
        CHECK_STR(list[0]->address, "0000:00:1f.0");
        CHECK_STR(list[1]->address, "0000:03:00.0");
        CHECK_STR(list[2]->address, "0000:03:00.1");
        CHECK_STR(list[3]->address, "0000:04:00.0");
        CHECK_STR(list[4]->address, "0000:07:00.0");

        d = inventory_find(inv, "3:00.1");
        CHECK(d && streq(d->address, "0000:03:00.1"));
        d = inventory_find(inv, "03:00.0");
        CHECK(d && streq(d->address, "0000:03:00.0"));
        CHECK(inventory_find(inv, "0000:00:1F.0") == list[0]);
        CHECK(inventory_find(inv, "0000:05:00.0") == NULL);
        CHECK(inventory_find(inv, "garbage") == NULL);

        /* Handler set later, as the manager does; adds now report ADDED. */
        inventory_set_handler(inv, on_event, &ev);
        make_device("0000:08:00.0", "0x8086", "0x2222", "0x020000");
        CHECK(inventory_add(inv, read_or_die("0000:08:00.0")) == 0);
        CHECK(ev.added == 1);

        /* Unbinding 03:00.1 reports it and its group mate 03:00.0. */
        d = inventory_find(inv, "03:00.1");
        set_driver("0000:03:00.1", NULL);
        CHECK(inventory_refresh(inv, d) == 0);
        CHECK_STR(d->driver, NULL);
        CHECK(ev.changed == 2);
        CHECK_STR(ev.last_changed[0], "0000:03:00.1");
        CHECK_STR(ev.last_changed[1], "0000:03:00.0");

        /* Nothing moved: no event. */
        CHECK(inventory_refresh(inv, d) == 0);
        CHECK(ev.changed == 2);

        /* A device gone from sysfs cannot be refreshed. */
        remove_path("devices/pci0000:00/0000:08:00.0");
        CHECK(inventory_refresh(inv, inventory_find(inv, "8:00.0")) == -ENOENT);
        CHECK(ev.removed == 0);
}

int main(void) {
        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        build_tree();

        test_read_full();
        test_read_mate();
        test_read_noiommu_bare_bridge();
        test_bridge_kinds();
        test_read_errors();
        test_refresh();
        test_iommu_from_sysfs();
        test_ids_from_uevent();
        test_compact_storage();
        test_cdev_hint();
        test_noiommu_needs_no_iommu();
        test_type_names();
        test_static_inventory();

        (void) nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return test_result();
}
