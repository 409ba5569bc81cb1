/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The parts of the iommufd and vfio uAPI this project uses, written down from
 * Linux 7.3's include/uapi/linux/{iommufd,vfio}.h. Distribution headers lag
 * behind (Debian 12 has no linux/iommufd.h at all), so the broker and the VM
 * tier's guest programs use these. Every name carries a uapi_/UAPI_ prefix so
 * this file can sit next to any version of the system headers, and every
 * layout is pinned by _Static_assert below; test-uapi.c compares the values
 * with real kernel headers when they are available.
 *
 * Self-contained on purpose: only <stdint.h>, <stddef.h> and <linux/ioctl.h>.
 */

#include <linux/ioctl.h>
#include <stddef.h>
#include <stdint.h>

/* __aligned_u64: 64-bit fields are 8-byte aligned on every ABI (also i386). */
#define UAPI_ALIGNED_U64 uint64_t __attribute__((aligned(8)))

/* ------------------------------------------------------------------ iommufd */

#define UAPI_IOMMUFD_TYPE ';'

enum {
        UAPI_IOMMUFD_CMD_DESTROY = 0x80,
        UAPI_IOMMUFD_CMD_IOAS_ALLOC = 0x81,
        UAPI_IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
        UAPI_IOMMUFD_CMD_IOAS_MAP = 0x85,
        UAPI_IOMMUFD_CMD_IOAS_UNMAP = 0x86,
        UAPI_IOMMUFD_CMD_OPTION = 0x87,
        UAPI_IOMMUFD_CMD_GET_HW_INFO = 0x8a,
};

/* All iommufd ioctls are _IO(): the size lives in the struct's first field. */
struct uapi_iommu_destroy {
        uint32_t size;
        uint32_t id;
};
#define UAPI_IOMMU_DESTROY _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_DESTROY)

struct uapi_iommu_ioas_alloc {
        uint32_t size;
        uint32_t flags;                 /* must be 0 */
        uint32_t out_ioas_id;
};
#define UAPI_IOMMU_IOAS_ALLOC _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_IOAS_ALLOC)

struct uapi_iommu_iova_range {
        UAPI_ALIGNED_U64 start;
        UAPI_ALIGNED_U64 last;          /* inclusive */
};

struct uapi_iommu_ioas_iova_ranges {
        uint32_t size;
        uint32_t ioas_id;
        uint32_t num_iovas;
        uint32_t __reserved;
        UAPI_ALIGNED_U64 allowed_iovas; /* user pointer to struct uapi_iommu_iova_range[] */
        UAPI_ALIGNED_U64 out_iova_alignment;
};
#define UAPI_IOMMU_IOAS_IOVA_RANGES _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_IOAS_IOVA_RANGES)

enum {
        UAPI_IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
        UAPI_IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
        UAPI_IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct uapi_iommu_ioas_map {
        uint32_t size;
        uint32_t flags;                 /* UAPI_IOMMU_IOAS_MAP_* */
        uint32_t ioas_id;
        uint32_t __reserved;
        UAPI_ALIGNED_U64 user_va;
        UAPI_ALIGNED_U64 length;
        UAPI_ALIGNED_U64 iova;          /* in with FIXED_IOVA, else out */
};
#define UAPI_IOMMU_IOAS_MAP _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_IOAS_MAP)

struct uapi_iommu_ioas_unmap {
        uint32_t size;
        uint32_t ioas_id;
        UAPI_ALIGNED_U64 iova;
        UAPI_ALIGNED_U64 length;        /* in/out: bytes unmapped */
};
#define UAPI_IOMMU_IOAS_UNMAP _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_IOAS_UNMAP)

enum {
        /* 0: RLIMIT_MEMLOCK charged to the user (default), 1: to the process.
         * Global (object_id 0); needs CAP_SYS_RESOURCE. */
        UAPI_IOMMU_OPTION_RLIMIT_MODE = 0,
        UAPI_IOMMU_OPTION_HUGE_PAGES = 1,
};

enum {
        UAPI_IOMMU_OPTION_OP_SET = 0,
        UAPI_IOMMU_OPTION_OP_GET = 1,
};

struct uapi_iommu_option {
        uint32_t size;
        uint32_t option_id;             /* UAPI_IOMMU_OPTION_* */
        uint16_t op;                    /* UAPI_IOMMU_OPTION_OP_* */
        uint16_t __reserved;
        uint32_t object_id;
        UAPI_ALIGNED_U64 val64;
};
#define UAPI_IOMMU_OPTION _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_OPTION)

/* enum iommu_hw_info_type */
enum {
        UAPI_IOMMU_HW_INFO_TYPE_NONE = 0,
        UAPI_IOMMU_HW_INFO_TYPE_DEFAULT = 0,
        UAPI_IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
        UAPI_IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2,
        UAPI_IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3,
        UAPI_IOMMU_HW_INFO_TYPE_AMD = 4,
};

/* enum iommufd_hw_capabilities (iommu_hw_info.out_capabilities) */
#define UAPI_IOMMU_HW_CAP_DIRTY_TRACKING        (1ULL << 0)
#define UAPI_IOMMU_HW_CAP_PCI_PASID_EXEC        (1ULL << 1)
#define UAPI_IOMMU_HW_CAP_PCI_PASID_PRIV        (1ULL << 2)
#define UAPI_IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (1ULL << 3)

/* iommu_hw_info.flags */
#define UAPI_IOMMU_HW_INFO_FLAG_INPUT_TYPE (1U << 0)

#define UAPI_IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 (1U << 0)

struct uapi_iommu_hw_info_vtd {
        uint32_t flags;                 /* UAPI_IOMMU_HW_INFO_VTD_* */
        uint32_t __reserved;
        UAPI_ALIGNED_U64 cap_reg;       /* VT-d spec 11.4.2 */
        UAPI_ALIGNED_U64 ecap_reg;      /* VT-d spec 11.4.3 */
};

struct uapi_iommu_hw_info {
        uint32_t size;
        uint32_t flags;                 /* 0, or UAPI_IOMMU_HW_INFO_FLAG_INPUT_TYPE */
        uint32_t dev_id;                /* a device bound to this iommufd */
        uint32_t data_len;              /* in: buffer size; out: what the kernel has */
        UAPI_ALIGNED_U64 data_uptr;     /* e.g. struct uapi_iommu_hw_info_vtd */
        union {
                uint32_t in_data_type;
                uint32_t out_data_type; /* UAPI_IOMMU_HW_INFO_TYPE_* */
        };
        uint8_t out_max_pasid_log2;
        uint8_t __reserved[3];
        UAPI_ALIGNED_U64 out_capabilities; /* UAPI_IOMMU_HW_CAP_* */
};
#define UAPI_IOMMU_GET_HW_INFO _IO(UAPI_IOMMUFD_TYPE, UAPI_IOMMUFD_CMD_GET_HW_INFO)

/* --------------------------------------------------------------------- vfio */

#define UAPI_VFIO_TYPE ';'
#define UAPI_VFIO_BASE 100

struct uapi_vfio_device_info {
        uint32_t argsz;
        uint32_t flags;                 /* UAPI_VFIO_DEVICE_FLAGS_* */
        uint32_t num_regions;
        uint32_t num_irqs;
        uint32_t cap_offset;
        uint32_t pad;
};
#define UAPI_VFIO_DEVICE_FLAGS_RESET (1U << 0)
#define UAPI_VFIO_DEVICE_FLAGS_PCI   (1U << 1)
#define UAPI_VFIO_DEVICE_FLAGS_CAPS  (1U << 7)
#define UAPI_VFIO_DEVICE_GET_INFO _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 7)

struct uapi_vfio_region_info {
        uint32_t argsz;
        uint32_t flags;                 /* UAPI_VFIO_REGION_INFO_FLAG_* */
        uint32_t index;
        uint32_t cap_offset;
        UAPI_ALIGNED_U64 size;
        UAPI_ALIGNED_U64 offset;        /* of the region within the device fd */
};
#define UAPI_VFIO_REGION_INFO_FLAG_READ  (1U << 0)
#define UAPI_VFIO_REGION_INFO_FLAG_WRITE (1U << 1)
#define UAPI_VFIO_REGION_INFO_FLAG_MMAP  (1U << 2)
#define UAPI_VFIO_REGION_INFO_FLAG_CAPS  (1U << 3)
#define UAPI_VFIO_DEVICE_GET_REGION_INFO _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 8)

struct uapi_vfio_irq_set {
        uint32_t argsz;                 /* sizeof(struct) + size of data[] */
        uint32_t flags;                 /* one DATA_* | one ACTION_* */
        uint32_t index;
        uint32_t start;
        uint32_t count;
        uint8_t data[];                 /* DATA_EVENTFD: int32_t[count] */
};
#define UAPI_VFIO_IRQ_SET_DATA_NONE      (1U << 0)
#define UAPI_VFIO_IRQ_SET_DATA_BOOL      (1U << 1)
#define UAPI_VFIO_IRQ_SET_DATA_EVENTFD   (1U << 2)
#define UAPI_VFIO_IRQ_SET_ACTION_MASK    (1U << 3)
#define UAPI_VFIO_IRQ_SET_ACTION_UNMASK  (1U << 4)
#define UAPI_VFIO_IRQ_SET_ACTION_TRIGGER (1U << 5)
#define UAPI_VFIO_DEVICE_SET_IRQS _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 10)

/* vfio-pci's fixed region and irq indexes */
enum {
        UAPI_VFIO_PCI_BAR0_REGION_INDEX = 0,
        UAPI_VFIO_PCI_ROM_REGION_INDEX = 6,
        UAPI_VFIO_PCI_CONFIG_REGION_INDEX = 7,
        UAPI_VFIO_PCI_VGA_REGION_INDEX = 8,
        UAPI_VFIO_PCI_NUM_REGIONS = 9,
};
enum {
        UAPI_VFIO_PCI_INTX_IRQ_INDEX = 0,
        UAPI_VFIO_PCI_MSI_IRQ_INDEX = 1,
        UAPI_VFIO_PCI_MSIX_IRQ_INDEX = 2,
        UAPI_VFIO_PCI_ERR_IRQ_INDEX = 3,
        UAPI_VFIO_PCI_REQ_IRQ_INDEX = 4, /* "please release the device" (unplug) */
        UAPI_VFIO_PCI_NUM_IRQS = 5,
};

struct uapi_vfio_pci_dependent_device {
        union {
                uint32_t group_id;
                uint32_t devid;         /* cdev path: UAPI_VFIO_PCI_DEVID_* or a dev_id */
        };
        uint16_t segment;
        uint8_t bus;
        uint8_t devfn;
};
#define UAPI_VFIO_PCI_DEVID_OWNED     0
#define UAPI_VFIO_PCI_DEVID_NOT_OWNED (-1)

struct uapi_vfio_pci_hot_reset_info {
        uint32_t argsz;
        uint32_t flags;                 /* UAPI_VFIO_PCI_HOT_RESET_FLAG_* */
        uint32_t count;
        struct uapi_vfio_pci_dependent_device devices[];
};
#define UAPI_VFIO_PCI_HOT_RESET_FLAG_DEV_ID       (1U << 0)
#define UAPI_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED (1U << 1)
#define UAPI_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 12)

struct uapi_vfio_pci_hot_reset {
        uint32_t argsz;
        uint32_t flags;
        uint32_t count;
        int32_t group_fds[];            /* empty for cdev-opened devices */
};
#define UAPI_VFIO_DEVICE_PCI_HOT_RESET _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 13)

/*
 * Bind a cdev-opened device to an iommufd. The kernel accepts any argsz from
 * UAPI_VFIO_DEVICE_BIND_IOMMUFD_MINSZ (16, the original form up to out_devid)
 * to sizeof (24, with token_uuid_ptr, used only with FLAG_TOKEN for SR-IOV VFs).
 * Passing 16 works on every kernel with vfio cdev.
 * -EINVAL when another open file of the device is already bound.
 */
struct uapi_vfio_device_bind_iommufd {
        uint32_t argsz;
        uint32_t flags;                 /* 0 or UAPI_VFIO_DEVICE_BIND_FLAG_TOKEN */
        int32_t iommufd;
        uint32_t out_devid;
        UAPI_ALIGNED_U64 token_uuid_ptr; /* 16-byte VF token UUID, with FLAG_TOKEN */
};
#define UAPI_VFIO_DEVICE_BIND_FLAG_TOKEN (1U << 0)
#define UAPI_VFIO_DEVICE_BIND_IOMMUFD_MINSZ 16
#define UAPI_VFIO_DEVICE_BIND_IOMMUFD _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 18)

/* pt_id: in an IOAS or HWPT id; out the HWPT actually attached (the kernel
 * allocates one for an IOAS). A second attach replaces the first. */
struct uapi_vfio_device_attach_iommufd_pt {
        uint32_t argsz;
        uint32_t flags;                 /* 0 or UAPI_VFIO_DEVICE_ATTACH_PASID */
        uint32_t pt_id;
        uint32_t pasid;                 /* with FLAG_PASID only */
};
#define UAPI_VFIO_DEVICE_ATTACH_PASID (1U << 0)
#define UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT_MINSZ 12
#define UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 19)

struct uapi_vfio_device_detach_iommufd_pt {
        uint32_t argsz;
        uint32_t flags;                 /* 0 or UAPI_VFIO_DEVICE_DETACH_PASID */
        uint32_t pasid;
};
#define UAPI_VFIO_DEVICE_DETACH_PASID (1U << 0)
#define UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT_MINSZ 8
#define UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(UAPI_VFIO_TYPE, UAPI_VFIO_BASE + 20)

/* ------------------------------------------------------------------ layouts */

#define UAPI_ASSERT_SIZE(s, n) _Static_assert(sizeof(struct s) == (n), "sizeof(struct " #s ")")
#define UAPI_ASSERT_OFF(s, f, n) _Static_assert(offsetof(struct s, f) == (n), #s "." #f)

UAPI_ASSERT_SIZE(uapi_iommu_destroy, 8);
UAPI_ASSERT_OFF(uapi_iommu_destroy, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_destroy, id, 4);

UAPI_ASSERT_SIZE(uapi_iommu_ioas_alloc, 12);
UAPI_ASSERT_OFF(uapi_iommu_ioas_alloc, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_ioas_alloc, flags, 4);
UAPI_ASSERT_OFF(uapi_iommu_ioas_alloc, out_ioas_id, 8);

UAPI_ASSERT_SIZE(uapi_iommu_iova_range, 16);
UAPI_ASSERT_OFF(uapi_iommu_iova_range, start, 0);
UAPI_ASSERT_OFF(uapi_iommu_iova_range, last, 8);

UAPI_ASSERT_SIZE(uapi_iommu_ioas_iova_ranges, 32);
UAPI_ASSERT_OFF(uapi_iommu_ioas_iova_ranges, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_ioas_iova_ranges, ioas_id, 4);
UAPI_ASSERT_OFF(uapi_iommu_ioas_iova_ranges, num_iovas, 8);
UAPI_ASSERT_OFF(uapi_iommu_ioas_iova_ranges, __reserved, 12);
UAPI_ASSERT_OFF(uapi_iommu_ioas_iova_ranges, allowed_iovas, 16);
UAPI_ASSERT_OFF(uapi_iommu_ioas_iova_ranges, out_iova_alignment, 24);

UAPI_ASSERT_SIZE(uapi_iommu_ioas_map, 40);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, flags, 4);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, ioas_id, 8);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, __reserved, 12);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, user_va, 16);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, length, 24);
UAPI_ASSERT_OFF(uapi_iommu_ioas_map, iova, 32);

UAPI_ASSERT_SIZE(uapi_iommu_ioas_unmap, 24);
UAPI_ASSERT_OFF(uapi_iommu_ioas_unmap, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_ioas_unmap, ioas_id, 4);
UAPI_ASSERT_OFF(uapi_iommu_ioas_unmap, iova, 8);
UAPI_ASSERT_OFF(uapi_iommu_ioas_unmap, length, 16);

UAPI_ASSERT_SIZE(uapi_iommu_option, 24);
UAPI_ASSERT_OFF(uapi_iommu_option, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_option, option_id, 4);
UAPI_ASSERT_OFF(uapi_iommu_option, op, 8);
UAPI_ASSERT_OFF(uapi_iommu_option, __reserved, 10);
UAPI_ASSERT_OFF(uapi_iommu_option, object_id, 12);
UAPI_ASSERT_OFF(uapi_iommu_option, val64, 16);

UAPI_ASSERT_SIZE(uapi_iommu_hw_info_vtd, 24);
UAPI_ASSERT_OFF(uapi_iommu_hw_info_vtd, flags, 0);
UAPI_ASSERT_OFF(uapi_iommu_hw_info_vtd, __reserved, 4);
UAPI_ASSERT_OFF(uapi_iommu_hw_info_vtd, cap_reg, 8);
UAPI_ASSERT_OFF(uapi_iommu_hw_info_vtd, ecap_reg, 16);

UAPI_ASSERT_SIZE(uapi_iommu_hw_info, 40);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, size, 0);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, flags, 4);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, dev_id, 8);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, data_len, 12);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, data_uptr, 16);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, in_data_type, 24);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, out_data_type, 24);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, out_max_pasid_log2, 28);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, __reserved, 29);
UAPI_ASSERT_OFF(uapi_iommu_hw_info, out_capabilities, 32);

UAPI_ASSERT_SIZE(uapi_vfio_device_info, 24);
UAPI_ASSERT_OFF(uapi_vfio_device_info, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_device_info, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_device_info, num_regions, 8);
UAPI_ASSERT_OFF(uapi_vfio_device_info, num_irqs, 12);
UAPI_ASSERT_OFF(uapi_vfio_device_info, cap_offset, 16);
UAPI_ASSERT_OFF(uapi_vfio_device_info, pad, 20);

UAPI_ASSERT_SIZE(uapi_vfio_region_info, 32);
UAPI_ASSERT_OFF(uapi_vfio_region_info, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_region_info, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_region_info, index, 8);
UAPI_ASSERT_OFF(uapi_vfio_region_info, cap_offset, 12);
UAPI_ASSERT_OFF(uapi_vfio_region_info, size, 16);
UAPI_ASSERT_OFF(uapi_vfio_region_info, offset, 24);

UAPI_ASSERT_SIZE(uapi_vfio_irq_set, 20);
UAPI_ASSERT_OFF(uapi_vfio_irq_set, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_irq_set, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_irq_set, index, 8);
UAPI_ASSERT_OFF(uapi_vfio_irq_set, start, 12);
UAPI_ASSERT_OFF(uapi_vfio_irq_set, count, 16);
UAPI_ASSERT_OFF(uapi_vfio_irq_set, data, 20);

UAPI_ASSERT_SIZE(uapi_vfio_pci_dependent_device, 8);
UAPI_ASSERT_OFF(uapi_vfio_pci_dependent_device, group_id, 0);
UAPI_ASSERT_OFF(uapi_vfio_pci_dependent_device, devid, 0);
UAPI_ASSERT_OFF(uapi_vfio_pci_dependent_device, segment, 4);
UAPI_ASSERT_OFF(uapi_vfio_pci_dependent_device, bus, 6);
UAPI_ASSERT_OFF(uapi_vfio_pci_dependent_device, devfn, 7);

UAPI_ASSERT_SIZE(uapi_vfio_pci_hot_reset_info, 12);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset_info, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset_info, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset_info, count, 8);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset_info, devices, 12);

UAPI_ASSERT_SIZE(uapi_vfio_pci_hot_reset, 12);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset, count, 8);
UAPI_ASSERT_OFF(uapi_vfio_pci_hot_reset, group_fds, 12);

UAPI_ASSERT_SIZE(uapi_vfio_device_bind_iommufd, 24);
UAPI_ASSERT_OFF(uapi_vfio_device_bind_iommufd, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_device_bind_iommufd, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_device_bind_iommufd, iommufd, 8);
UAPI_ASSERT_OFF(uapi_vfio_device_bind_iommufd, out_devid, 12);
UAPI_ASSERT_OFF(uapi_vfio_device_bind_iommufd, token_uuid_ptr, 16);
_Static_assert(UAPI_VFIO_DEVICE_BIND_IOMMUFD_MINSZ ==
               offsetof(struct uapi_vfio_device_bind_iommufd, out_devid) + sizeof(uint32_t),
               "bind minsz ends after out_devid");

UAPI_ASSERT_SIZE(uapi_vfio_device_attach_iommufd_pt, 16);
UAPI_ASSERT_OFF(uapi_vfio_device_attach_iommufd_pt, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_device_attach_iommufd_pt, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_device_attach_iommufd_pt, pt_id, 8);
UAPI_ASSERT_OFF(uapi_vfio_device_attach_iommufd_pt, pasid, 12);
_Static_assert(UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT_MINSZ ==
               offsetof(struct uapi_vfio_device_attach_iommufd_pt, pasid), "attach minsz ends after pt_id");

UAPI_ASSERT_SIZE(uapi_vfio_device_detach_iommufd_pt, 12);
UAPI_ASSERT_OFF(uapi_vfio_device_detach_iommufd_pt, argsz, 0);
UAPI_ASSERT_OFF(uapi_vfio_device_detach_iommufd_pt, flags, 4);
UAPI_ASSERT_OFF(uapi_vfio_device_detach_iommufd_pt, pasid, 8);
_Static_assert(UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT_MINSZ ==
               offsetof(struct uapi_vfio_device_detach_iommufd_pt, pasid), "detach minsz ends after flags");

/* _IO(';', nr) with no size or direction bits: (';' << 8) | nr. */
_Static_assert(UAPI_IOMMU_OPTION == 0x3b87, "IOMMU_OPTION");
_Static_assert(UAPI_VFIO_DEVICE_BIND_IOMMUFD == 0x3b76, "VFIO_DEVICE_BIND_IOMMUFD");
