/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pci-address.h"
#include "util.h"

typedef struct Lease Lease;

/* What IOMMU_GET_HW_INFO told us about the IOMMU behind a device. */
typedef struct IommuHwInfo {
        bool valid;
        uint32_t type;          /* enum iommu_hw_info_type */
        uint64_t capabilities;  /* IOMMU_HW_CAP_* */
        bool from_kernel;       /* IOMMU_GET_HW_INFO's answer, not sysfs's guess: final */
} IommuHwInfo;

/*
 * One PCI device as sysfs describes it. Read by device_read(); the lease
 * pointer and hw info are kept by the core across re-reads.
 */
typedef struct Device {
        char address[16];               /* "0000:03:00.0" */
        char *syspath;                  /* /sys/devices/pci0000:00/.../0000:03:00.0 */
        uint16_t vendor_id, device_id;
        uint16_t subsystem_vendor_id, subsystem_device_id;
        uint32_t class;                 /* 24-bit class code, e.g. 0x020000 */
        int iommu_group;                /* -1 if the device has none */
        char *driver;                   /* bound driver name, NULL if none */
        char **group_members;           /* BDFs of the group, sorted, including this one; NULL if no group */
        char *vfio_cdev;                /* "vfio3" when bound to a vfio driver with cdev support */
        dev_t vfio_devnum;              /* its dev_t, 0 if none */

        IommuHwInfo hw_info;            /* from sysfs (device_read), or IOMMU_GET_HW_INFO */
        Lease *lease;                   /* current lease, owned by the session */

        /* The caller-independent part of its JSON (device-json.c), built on
         * first use and dropped by device_invalidate_json() whenever sysfs or
         * the kernel tell something new about the device; its state and
         * reason (json_state, json_reason) also by device_invalidate_view()
         * whenever its lease or its group's change. Three runs of
         * members, after "address": what devices of one model on one driver
         * have in common and what an IOMMU says are shared between devices
         * (interned for the broker's lifetime, NULL when not), the rest is
         * the device's own. A broker keeps one Device per PCI function, so
         * the fields are packed. */
        const char *json_common;        /* "vendorId":...,"driver":"..." */
        char *json_text;                /* "iommuGroup":...,"vfioCdev":"..." (or all members when not shared) */
        const char *json_iommu;         /* "iommu":{...} */
        char *json_reason;              /* the state's reason as a JSON string, or NULL */
        uint32_t json_common_len, json_len, json_iommu_len;
        int json_state;                 /* DeviceState when built */

        bool noiommu;                   /* group is a vfio-noiommu group */
        bool sriov_vf;                  /* has a physfn link */
        bool bridge;                    /* a bridge never handed out: device_bridge_kind() */
        bool iommu_linked;              /* has an "iommu" link: its group is not vfio's noiommu one */
        bool json_state_valid;          /* json_state and json_reason were filled */

        /* Storage for the common cases, so that a broker with thousands of
         * devices does not keep thousands of tiny allocations: a group of
         * this device alone, a cdev name that fits. Only device.c points
         * group_members and vfio_cdev here. */
        char *self_group[2];
        char vfio_cdev_name[12];
} Device;

/* Read a device from its sysfs directory. Returns 0 or negative errno. */
int device_read(const char *syspath, Device **ret);
/* What a start-up reading every device learnt of its vfio cdev from one
 * listing of /sys/dev/char: its name, and its dev_t (0 if not known: then
 * read from the cdev's "dev"). */
typedef struct DeviceCdevHint {
        const char *name;
        dev_t devnum;
} DeviceCdevHint;
/* The same, told about its vfio cdev (hint NULL or without a name: look). A
 * wrong name costs only the time: the directory is listed then. */
int device_read_hinted(const char *syspath, const DeviceCdevHint *hint, Device **ret);
Device *device_free(Device *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Device *, device_free);

/* Drop the cached JSON (see Device.json_text). */
void device_invalidate_json(Device *d);
/* Drop only the cached state and reason: the lease, a group mate's lease or
 * the policy changed, the device did not. */
void device_invalidate_view(Device *d);

/* Changes whenever device_invalidate_json() or device_json_changed() is
 * called: what a device looks like to anyone may have changed (a device,
 * its state, the inventory or the policy's answers). */
uint64_t device_json_generation(void);
void device_json_changed(void);

/* Re-read the volatile parts (driver, group, vfio cdev) in place. */
int device_refresh(Device *d);


/* Whether the kernel lets this member of a group stay on its driver while
 * another member is used through vfio (vfio-pci, pci-stub, pcieport, none). */
const char *device_bridge_kind(uint32_t class);
bool device_driver_is_vfio_compatible(const Device *d);
bool device_is_on_vfio(const Device *d);

/* IOMMU type name for GetDevice/properties ("intel-vtd", "arm-smmuv3", ...). */
const char *iommu_hw_info_type_to_string(uint32_t type);

/* "MAJ:MIN" exactly, as in a "dev" attribute or a /sys/dev/char entry name,
 * with at most a trailing newline. */
int device_parse_devnum(const char *s, dev_t *ret);
