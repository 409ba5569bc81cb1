/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <libudev.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/sysmacros.h>

#include "inventory.h"
#include "log.h"

struct Inventory {
        sd_event *event;
        struct udev *udev;
        struct udev_monitor *monitor;
        sd_event_source *monitor_source;

        Device **devices;               /* sorted by address */
        size_t n_devices;

        InventoryHandler handler;
        void *userdata;
};

#define PCI_DEVICES_DIR "/sys/bus/pci/devices"

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);
        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* Enough to drain a burst without starving the rest of the loop: the
 * source is level-triggered and comes back if more is queued. */
#define MONITOR_BATCH 64

static void udev_devicep(struct udev_device **d) {
        if (*d)
                udev_device_unref(*d);
}

static void notify(Inventory *inv, Device *d, InventoryEvent event) {
        if (inv->handler)
                inv->handler(inv, d, event, inv->userdata);
}

/* Index of the first device whose address is >= address. */
static size_t lower_bound(Inventory *inv, const char *address) {
        size_t lo = 0, hi = inv->n_devices;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(inv->devices[mid]->address, address) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int insert_device(Inventory *inv, Device *d) {
        size_t i = lower_bound(inv, d->address);
        Device **t;

        if (i < inv->n_devices && streq(inv->devices[i]->address, d->address))
                return -EEXIST;
        t = realloc(inv->devices, sizeof(Device *) * (inv->n_devices + 1));
        if (!t)
                return -ENOMEM;
        inv->devices = t;
        memmove(t + i + 1, t + i, sizeof(Device *) * (inv->n_devices - i));
        t[i] = d;
        inv->n_devices++;
        device_json_changed();
        return 0;
}

/* Takes the device out of the array without freeing it. */
static void unlink_device(Inventory *inv, Device *d) {
        size_t i = lower_bound(inv, d->address);

        if (i >= inv->n_devices || inv->devices[i] != d)
                return;
        memmove(inv->devices + i, inv->devices + i + 1, sizeof(Device *) * (inv->n_devices - i - 1));
        inv->n_devices--;
        device_json_changed();
}

Device *inventory_find(Inventory *inv, const char *address) {
        char normalized[16];
        size_t i;

        if (!inv || pci_address_normalize(address, normalized) < 0)
                return NULL;
        i = lower_bound(inv, normalized);
        if (i < inv->n_devices && streq(inv->devices[i]->address, normalized))
                return inv->devices[i];
        return NULL;
}

size_t inventory_index(Inventory *inv, const Device *d) {
        size_t i;

        if (!inv || !d)
                return SIZE_MAX;
        i = lower_bound(inv, d->address);
        return i < inv->n_devices && inv->devices[i] == d ? i : SIZE_MAX;
}

Device *const *inventory_devices(Inventory *inv, size_t *ret_n) {
        if (ret_n)
                *ret_n = inv ? inv->n_devices : 0;
        return inv ? inv->devices : NULL;
}

void inventory_set_handler(Inventory *inv, InventoryHandler handler, void *userdata) {
        inv->handler = handler;
        inv->userdata = userdata;
}

int inventory_new_static(Inventory **ret, InventoryHandler handler, void *userdata) {
        Inventory *inv;

        if (!ret)
                return -EINVAL;
        inv = calloc(1, sizeof(*inv));
        if (!inv)
                return -ENOMEM;
        inv->handler = handler;
        inv->userdata = userdata;
        *ret = inv;
        return 0;
}

/* Reports ADDED when a handler is set, so tests can simulate hotplug; the
 * initial fill happens before anyone listens. */
int inventory_add(Inventory *inv, Device *d) {
        int r;

        if (!inv || !d) {
                device_free(d);
                return -EINVAL;
        }
        r = insert_device(inv, d);
        if (r < 0) {
                device_free(d);
                return r;
        }
        notify(inv, d, INVENTORY_DEVICE_ADDED);
        return 0;
}

Inventory *inventory_free(Inventory *inv) {
        if (!inv)
                return NULL;
        sd_event_source_disable_unref(inv->monitor_source);
        if (inv->monitor)
                udev_monitor_unref(inv->monitor);
        if (inv->udev)
                udev_unref(inv->udev);
        sd_event_unref(inv->event);
        for (size_t i = 0; i < inv->n_devices; i++)
                device_free(inv->devices[i]);
        free(inv->devices);
        free(inv);
        return NULL;
}

/* What a refresh can change, to tell whether anything moved. */
typedef struct Snapshot {
        char *driver;
        char *vfio_cdev;
        dev_t vfio_devnum;
        int iommu_group;
        bool noiommu;
        char **group_members;
} Snapshot;

/* Copies, because device_refresh() frees the strings it replaces. */
static int snapshot_take(const Device *d, Snapshot *ret) {
        Snapshot s = {
                .vfio_devnum = d->vfio_devnum,
                .iommu_group = d->iommu_group,
                .noiommu = d->noiommu,
        };

        if (free_and_strdup(&s.driver, d->driver) < 0 ||
            free_and_strdup(&s.vfio_cdev, d->vfio_cdev) < 0 ||
            strv_copy(d->group_members, &s.group_members) < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        free(s.driver);
        free(s.vfio_cdev);
        strv_free(s.group_members);
        return -ENOMEM;
}

static void snapshot_done(Snapshot *s) {
        free(s->driver);
        free(s->vfio_cdev);
        strv_free(s->group_members);
}

static bool snapshot_differs(const Snapshot *s, const Device *d, bool *ret_driver_moved) {
        bool driver_moved = !streq_ptr(s->driver, d->driver);

        if (ret_driver_moved)
                *ret_driver_moved = driver_moved;
        return driver_moved ||
               !streq_ptr(s->vfio_cdev, d->vfio_cdev) ||
               s->vfio_devnum != d->vfio_devnum ||
               s->iommu_group != d->iommu_group ||
               s->noiommu != d->noiommu ||
               !strv_equal(s->group_members, d->group_members);
}

/*
 * A driver moving on one member changes whether the others are usable
 * (group viability), and a member appearing or leaving changes their member
 * lists: re-read the mates and tell the handler. Works on a copy of the
 * member list because the handler may refresh devices.
 */
static void notify_group_mates(Inventory *inv, int group, char *const *members, const char *except) {
        _cleanup_strv_free_ char **copy = NULL;

        if (group < 0)
                return;
        for (char *const *m = members; m && *m; m++)
                if (!streq(*m, except) && strv_extend(&copy, *m) < 0)
                        return (void) log_warning("Out of memory notifying group %d", group);

        for (char **m = copy; m && *m; m++) {
                Device *mate = inventory_find(inv, *m);
                int r;

                if (!mate || mate->iommu_group != group)
                        continue;
                r = device_refresh(mate);
                if (r < 0)
                        log_debug_errno(r, "%s: re-reading group mate failed: %m", mate->address);
                notify(inv, mate, INVENTORY_DEVICE_CHANGED);
        }
}

/* Re-read d; *ret_changed and *ret_driver_moved tell what moved. */
static int refresh_device(Device *d, bool *ret_changed, bool *ret_driver_moved) {
        Snapshot before;
        int r;

        r = snapshot_take(d, &before);
        if (r < 0)
                return r;
        r = device_refresh(d);
        if (r >= 0)
                *ret_changed = snapshot_differs(&before, d, ret_driver_moved);
        snapshot_done(&before);
        return r;
}

int inventory_refresh(Inventory *inv, Device *d) {
        bool changed = false, driver_moved = false;
        int r;

        if (!inv || !d)
                return -EINVAL;
        r = refresh_device(d, &changed, &driver_moved);
        if (r < 0)
                return r;
        if (!changed)
                return 0;
        notify(inv, d, INVENTORY_DEVICE_CHANGED);
        if (driver_moved)
                notify_group_mates(inv, d->iommu_group, d->group_members, d->address);
        return 0;
}

static void handle_add(Inventory *inv, const char *syspath) {
        _cleanup_(device_freep) Device *d = NULL;
        Device *added;
        int r;

        r = device_read(syspath, &d);
        if (r < 0)
                return (void) log_debug_errno(r, "%s: cannot read new device, skipping: %m", syspath);
        added = d;
        r = insert_device(inv, d);
        if (r < 0)
                return (void) log_warning_errno(r, "%s: cannot add device: %m", syspath);
        TAKE_PTR(d);
        log_debug("%s: added (driver %s, group %d)", added->address, strna(added->driver), added->iommu_group);
        notify(inv, added, INVENTORY_DEVICE_ADDED);
        notify_group_mates(inv, added->iommu_group, added->group_members, added->address);
}

static void handle_remove(Inventory *inv, Device *d) {
        _cleanup_strv_free_ char **members = NULL;
        int group = d->iommu_group;
        char address[16];

        /* A copy: the device's list may live in the device itself. */
        for (char **m = d->group_members; m && *m; m++)
                if (strv_extend(&members, *m) < 0)
                        log_warning("Out of memory noting the group of %s", d->address);
        memcpy(address, d->address, sizeof(address));
        log_debug("%s: removed", address);
        notify(inv, d, INVENTORY_DEVICE_REMOVED);
        unlink_device(inv, d);
        device_free(d);
        notify_group_mates(inv, group, members, address);
}

/* bind, unbind, change, move: re-read in place. A "change" may concern
 * attributes we do not track, so it is always reported; the others only
 * when something moved (the broker's own inventory_refresh() usually got
 * there first). */
static void handle_change(Inventory *inv, Device *d, const char *action, const char *syspath) {
        bool changed = false, driver_moved = false;
        int r;

        if (streq(action, "move") && !streq(d->syspath, syspath)) {
                r = free_and_strdup(&d->syspath, syspath);
                if (r < 0)
                        return (void) log_warning_errno(r, "%s: cannot follow move: %m", d->address);
                changed = true;
        }

        r = refresh_device(d, &changed, &driver_moved);
        if (r < 0)
                /* Most likely going away; the "remove" event follows. */
                return (void) log_debug_errno(r, "%s: re-reading after %s failed: %m", d->address, action);

        if (!changed && !streq(action, "change"))
                return;
        log_debug("%s: %s (driver %s, cdev %s)", d->address, action, strna(d->driver), strna(d->vfio_cdev));
        notify(inv, d, INVENTORY_DEVICE_CHANGED);
        if (driver_moved)
                notify_group_mates(inv, d->iommu_group, d->group_members, d->address);
}

static void handle_uevent(Inventory *inv, struct udev_device *ud) {
        const char *action = udev_device_get_action(ud);
        const char *syspath = udev_device_get_syspath(ud);
        const char *sysname = udev_device_get_sysname(ud);
        Device *d;

        if (!action || !syspath || !sysname)
                return;
        d = inventory_find(inv, sysname);

        if (streq(action, "remove")) {
                if (d)
                        handle_remove(inv, d);
        } else if (streq(action, "add")) {
                if (d)
                        handle_change(inv, d, "change", syspath);
                else
                        handle_add(inv, syspath);
        } else if (streq(action, "bind") || streq(action, "unbind") ||
                   streq(action, "change") || streq(action, "move")) {
                if (d)
                        handle_change(inv, d, action, syspath);
                else
                        handle_add(inv, syspath);
        } else
                log_debug("%s: ignoring uevent '%s'", sysname, action);
}

static int on_monitor(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Inventory *inv = userdata;

        for (unsigned i = 0; i < MONITOR_BATCH; i++) {
                _cleanup_(udev_devicep) struct udev_device *ud = NULL;

                ud = udev_monitor_receive_device(inv->monitor);
                if (!ud)
                        break;
                handle_uevent(inv, ud);
        }
        return 0;
}

/* "/sys/devices/..." for an entry of /sys/bus/pci/devices: the link's target
 * from its "devices/" on, so the syspath is the one uevents name (and the
 * same under umockdev, whose links point into its testbed). */
static int bus_entry_syspath(int dir_fd, const char *name, char **ret) {
        char target[PATH_MAX];
        const char *devices;
        ssize_t n;

        n = readlinkat(dir_fd, name, target, sizeof(target) - 1);
        if (n < 0)
                return -errno;
        target[n] = 0;
        devices = strstr(target, "/sys/devices/");
        if (devices)
                devices += strlen("/sys/");
        else if ((devices = strstr(target, "/devices/")))
                devices++;
        else if (!(devices = startswith(target, "devices/") ? target : NULL))
                return -EINVAL;
        /* By hand: printf would be a tenth of the start-up's own work. */
        size_t n_devices = strlen(devices);
        char *p = malloc(strlen("/sys/") + n_devices + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, "/sys/", strlen("/sys/"));
        memcpy(p + strlen("/sys/"), devices, n_devices + 1);
        *ret = p;
        return 0;
}

/* Normalized addresses all have the same length, so memcmp orders them as strcmp would. */
static int cmp_devices(const void *a, const void *b) {
        return memcmp((*(Device *const *) a)->address, (*(Device *const *) b)->address,
                      strlen("0000:00:00.0") + 1);
}

#define VFIO_DEV_CLASS_DIR "/sys/class/vfio-dev"
#define DEV_CHAR_DIR "/sys/dev/char"

/* Which device each vfio cdev belongs to, and its dev_t, from one listing of
 * /sys/dev/char (each "MAJ:MIN" entry links to <device>/vfio-dev/vfioN):
 * start-up then neither lists each device's vfio-dev directory nor reads
 * each cdev's "dev", 4 system calls a device fewer. */
typedef struct CdevHint {
        char address[16];
        char name[16];                  /* "vfio" and the minor: longer names get no hint */
        dev_t devnum;
} CdevHint;

static int cmp_hints(const void *a, const void *b) {
        const CdevHint *x = a, *y = b;
        int c = strcmp(x->address, y->address);

        return c ?: strcmp(x->name, y->name);
}

/* The major all vfio cdevs share (the kernel allocates them one region):
 * one cdev's "dev". */
static int vfio_cdev_major(unsigned *ret) {
        _cleanup_(closedirp) DIR *dir = opendir(VFIO_DEV_CLASS_DIR);
        struct dirent *de;

        if (!dir)
                return -errno;
        while ((de = readdir(dir))) {
                _cleanup_close_ int fd = -EBADF;
                char path[PATH_MAX], buf[32];
                dev_t devnum;
                ssize_t n;

                if (strncmp(de->d_name, "vfio", 4) != 0 ||
                    snprintf(path, sizeof(path), "%s/dev", de->d_name) >= (int) sizeof(path))
                        continue;
                fd = openat(dirfd(dir), path, O_RDONLY | O_CLOEXEC);
                n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                if (device_parse_devnum(buf, &devnum) >= 0) {
                        *ret = major(devnum);
                        return 0;
                }
        }
        return -ENOENT;
}

/* The hint of one /sys/dev/char entry of the vfio major: its link's target
 * is .../<device>/vfio-dev/<name>. */
static int hint_from_dev_char(int dir_fd, const char *entry, unsigned major, CdevHint *ret) {
        char target[PATH_MAX], *slash, *device;
        dev_t devnum;
        ssize_t len;

        if (device_parse_devnum(entry, &devnum) < 0 || major(devnum) != major)
                return -EINVAL;
        len = readlinkat(dir_fd, entry, target, sizeof(target) - 1);
        if (len < 0)
                return -errno;
        target[len] = 0;
        slash = strrchr(target, '/');
        if (!slash || strncmp(slash + 1, "vfio", 4) != 0 || strlen(slash + 1) >= sizeof(ret->name) ||
            slash - target < (ssize_t) strlen("/vfio-dev") ||
            strncmp(slash - strlen("/vfio-dev"), "/vfio-dev", strlen("/vfio-dev")) != 0)
                return -EINVAL;
        strcpy(ret->name, slash + 1);
        *(slash - strlen("/vfio-dev")) = 0;
        device = strrchr(target, '/');
        device = device ? device + 1 : target;
        if (pci_address_normalize(device, ret->address) < 0)
                return -EINVAL;
        ret->devnum = devnum;
        return 0;
}

/* Sorted by address, then name; none (and no error) if there are no vfio
 * cdevs or no /sys/dev/char: every device's directory is looked at then. */
static size_t read_cdev_hints(CdevHint **ret) {
        _cleanup_(closedirp) DIR *dir = NULL;
        _cleanup_free_ CdevHint *hints = NULL;
        size_t n = 0, size = 0;
        struct dirent *de;
        char prefix[16];
        unsigned major;

        *ret = NULL;
        if (vfio_cdev_major(&major) < 0)
                return 0;
        snprintf(prefix, sizeof(prefix), "%u:", major);
        dir = opendir(DEV_CHAR_DIR);
        if (!dir)
                return 0;
        while ((de = readdir(dir))) {
                if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                if (n == size) {
                        CdevHint *t = reallocarray(hints, size ? size * 2 : 64, sizeof(CdevHint));
                        if (!t)
                                return 0;       /* no hints: every directory is listed */
                        hints = t;
                        size = size ? size * 2 : 64;
                }
                if (hint_from_dev_char(dirfd(dir), de->d_name, major, &hints[n]) >= 0)
                        n++;
        }
        qsort(hints, n, sizeof(CdevHint), cmp_hints);
        *ret = TAKE_PTR(hints);
        return n;
}

/* The first cdev of address, or NULL. */
static const CdevHint *cdev_hint_for(const CdevHint *hints, size_t n, const char *address) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(hints[mid].address, address) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < n && streq(hints[lo].address, address) ? &hints[lo] : NULL;
}

/* One pass over /sys/bus/pci/devices, reading each device once; libudev's
 * enumeration would read every device's uevent and links first, only for us
 * to read sysfs again. Sorted once at the end. */
static int enumerate(Inventory *inv) {
        _cleanup_(closedirp) DIR *dir = NULL;
        _cleanup_free_ CdevHint *hints = NULL;
        size_t n_hints;
        struct dirent *de;
        int r;

        dir = opendir(PCI_DEVICES_DIR);
        if (!dir)
                return errno == ENOENT ? 0 : -errno;
        n_hints = read_cdev_hints(&hints);

        while ((errno = 0, de = readdir(dir))) {
                _cleanup_(device_freep) Device *d = NULL;
                _cleanup_free_ char *syspath = NULL;
                Device **t;

                if (de->d_name[0] == '.')
                        continue;
                r = bus_entry_syspath(dirfd(dir), de->d_name, &syspath);
                if (r >= 0) {
                        char address[16];
                        const CdevHint *h = pci_address_normalize(de->d_name, address) >= 0 ?
                                cdev_hint_for(hints, n_hints, address) : NULL;

                        r = device_read_hinted(syspath, h ? &(DeviceCdevHint) { h->name, h->devnum } : NULL, &d);
                }
                if (r < 0) {
                        /* Vanished meanwhile, or not a function we understand. */
                        log_debug_errno(r, "%s: skipping: %m", de->d_name);
                        continue;
                }
                if (inv->n_devices % 64 == 0) {
                        t = realloc(inv->devices, sizeof(Device *) * (inv->n_devices + 64));
                        if (!t)
                                return -ENOMEM;
                        inv->devices = t;
                }
                inv->devices[inv->n_devices++] = TAKE_PTR(d);
        }
        if (errno != 0)
                return -errno;
        qsort(inv->devices, inv->n_devices, sizeof(Device *), cmp_devices);
        /* Two links to one device would make two entries. */
        for (size_t i = 1; i < inv->n_devices; i++)
                if (streq(inv->devices[i - 1]->address, inv->devices[i]->address)) {
                        device_free(inv->devices[i]);
                        memmove(inv->devices + i, inv->devices + i + 1, sizeof(Device *) * (inv->n_devices - i - 1));
                        inv->n_devices--;
                        i--;
                }
        device_json_changed();
        return 0;
}

static int monitor_start(Inventory *inv) {
        /* udevd re-broadcasts on "udev" after processing; without udevd (a
         * minimal VM) only the kernel's own broadcasts exist. */
        const char *source = access("/run/udev/control", F_OK) >= 0 ? "udev" : "kernel";
        int r;

        inv->monitor = udev_monitor_new_from_netlink(inv->udev, source);
        if (!inv->monitor)
                return log_error_errno(errno ?: ENOMEM, "Cannot create udev monitor (%s): %m", source);
        r = udev_monitor_filter_add_match_subsystem_devtype(inv->monitor, "pci", NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot filter udev monitor: %m");
        r = udev_monitor_enable_receiving(inv->monitor);
        if (r < 0)
                return log_error_errno(r, "Cannot start udev monitor: %m");
        r = sd_event_add_io(inv->event, &inv->monitor_source, udev_monitor_get_fd(inv->monitor),
                            EPOLLIN, on_monitor, inv);
        if (r < 0)
                return log_error_errno(r, "Cannot watch udev monitor: %m");
        (void) sd_event_source_set_description(inv->monitor_source, "udev-monitor");
        log_debug("Watching PCI uevents from the %s source", source);
        return 0;
}

int inventory_new(Inventory **ret, sd_event *event, InventoryHandler handler, void *userdata) {
        _cleanup_(inventory_freep) Inventory *inv = NULL;
        int r;

        if (!ret || !event)
                return -EINVAL;
        r = inventory_new_static(&inv, handler, userdata);
        if (r < 0)
                return r;
        inv->event = sd_event_ref(event);
        inv->udev = udev_new();
        if (!inv->udev)
                return -errno ?: -ENOMEM;

        /* Monitor first, so nothing added during the enumeration is missed. */
        r = monitor_start(inv);
        if (r < 0)
                return r;
        r = enumerate(inv);
        if (r < 0)
                return log_error_errno(r, "Cannot enumerate PCI devices: %m");
        log_debug("Found %zu PCI devices", inv->n_devices);

        *ret = TAKE_PTR(inv);
        return 0;
}
