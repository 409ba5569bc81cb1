/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checks daemon/uapi.h against the kernel's own definitions:
 *
 *  1. every ioctl number against a literal _IO(';', nr) value;
 *  2. struct sizes, field offsets/sizes and constants against the system's
 *     <linux/vfio.h> and <linux/iommufd.h>, for exactly what those headers
 *     define: distributions ship anything from no iommufd.h (Debian 12) to
 *     the newest, and each field or constant appeared in its own release.
 *     meson looks up each one (has_header_symbol, has_member) into
 *     uapi-sys.h; a struct's size is compared only when the header has its
 *     newest field;
 *  3. against a Linux 7.x tree's include/uapi/linux/{iommufd,vfio}.h: this
 *     file is compiled again as a probe with every SYS_HAS() true and run.
 *     The tree is $IOMMUFD_UAPI_DIR, or else the newest linux-source-7.x that
 *     tests/vm/build-kernel.sh extracted into the test cache (skipped when
 *     there is none).
 *
 * Only uapi.h and libc are used, so the probe compiles this file alone.
 */
#include <errno.h>
#include <glob.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef UAPI_TEST_PROBE
#define SYS_HAS(symbol) 1
#define SYS_HAS_MEMBER(type, member) 1
#else
#include "uapi-sys.h"
#define SYS_HAS(symbol) SYS_HAS_##symbol
#define SYS_HAS_MEMBER(type, member) SYS_HAS_##type##__##member
#endif

#if SYS_HAS(VFIO_DEVICE_GET_INFO)
#include <linux/vfio.h>
#endif
#if SYS_HAS(IOMMU_OPTION_RLIMIT_MODE)
#include <linux/iommufd.h>
#endif

#include "uapi.h"
#include "test.h"

extern char **environ;

/* Compares as unsigned long long and shows the values in hex. */
#define CHECK_EQ(a, b)                                                                          \
        do {                                                                                    \
                unsigned long long _a = (unsigned long long) (a), _b = (unsigned long long) (b); \
                CHECK_MSG(_a == _b, "%s == %s (%#llx, expected %#llx)", #a, #b, _a, _b);         \
        } while (0)

/* Our struct uapi_<name> against the kernel's struct <name>. */
#define CHECK_SIZE(name) CHECK_EQ(sizeof(struct uapi_##name), sizeof(struct name))
#define CHECK_FIELD(name, f)                                                                    \
        do {                                                                                    \
                CHECK_EQ(offsetof(struct uapi_##name, f), offsetof(struct name, f));            \
                CHECK_EQ(sizeof(((struct uapi_##name *) 0)->f), sizeof(((struct name *) 0)->f)); \
        } while (0)
#define CHECK_CONST(name) CHECK_EQ(UAPI_##name, name)

static void check_literal_ioctl_numbers(void) {
        printf("# ioctl numbers against _IO(';', nr) literals\n");
        CHECK_EQ(UAPI_IOMMU_DESTROY, 0x3b80);
        CHECK_EQ(UAPI_IOMMU_IOAS_ALLOC, 0x3b81);
        CHECK_EQ(UAPI_IOMMU_IOAS_IOVA_RANGES, 0x3b84);
        CHECK_EQ(UAPI_IOMMU_IOAS_MAP, 0x3b85);
        CHECK_EQ(UAPI_IOMMU_IOAS_UNMAP, 0x3b86);
        CHECK_EQ(UAPI_IOMMU_OPTION, 0x3b87);
        CHECK_EQ(UAPI_IOMMU_GET_HW_INFO, 0x3b8a);
        CHECK_EQ(UAPI_VFIO_DEVICE_GET_INFO, 0x3b00 + 107);
        CHECK_EQ(UAPI_VFIO_DEVICE_GET_REGION_INFO, 0x3b00 + 108);
        CHECK_EQ(UAPI_VFIO_DEVICE_SET_IRQS, 0x3b00 + 110);
        CHECK_EQ(UAPI_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 0x3b00 + 112);
        CHECK_EQ(UAPI_VFIO_DEVICE_PCI_HOT_RESET, 0x3b00 + 113);
        CHECK_EQ(UAPI_VFIO_DEVICE_BIND_IOMMUFD, 0x3b00 + 118);
        CHECK_EQ(UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b00 + 119);
        CHECK_EQ(UAPI_VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b00 + 120);
        CHECK_EQ(UAPI_VFIO_PCI_CONFIG_REGION_INDEX, 7);
        CHECK_EQ(UAPI_VFIO_PCI_REQ_IRQ_INDEX, 4);
        CHECK_EQ(UAPI_IOMMU_HW_INFO_TYPE_INTEL_VTD, 1);
        CHECK_EQ(UAPI_IOMMU_OPTION_RLIMIT_MODE, 0);
}

#if SYS_HAS(VFIO_DEVICE_GET_INFO)
/* Parts of linux/vfio.h older than vfio cdev: in every header we meet. */
static void check_vfio_legacy(void) {
        printf("# linux/vfio.h: device, region, irq, hot reset\n");
        CHECK_FIELD(vfio_device_info, argsz);
        CHECK_FIELD(vfio_device_info, flags);
        CHECK_FIELD(vfio_device_info, num_regions);
        CHECK_FIELD(vfio_device_info, num_irqs);
        CHECK_FIELD(vfio_device_info, cap_offset);
#if SYS_HAS_MEMBER(vfio_device_info, pad)
        /* 6.1 headers end at cap_offset (20 bytes); pad came later (24). */
        CHECK_FIELD(vfio_device_info, pad);
        CHECK_SIZE(vfio_device_info);
#endif
        CHECK_CONST(VFIO_DEVICE_FLAGS_RESET);
        CHECK_CONST(VFIO_DEVICE_FLAGS_PCI);
        CHECK_CONST(VFIO_DEVICE_FLAGS_CAPS);
        CHECK_CONST(VFIO_DEVICE_GET_INFO);

        CHECK_SIZE(vfio_region_info);
        CHECK_FIELD(vfio_region_info, argsz);
        CHECK_FIELD(vfio_region_info, flags);
        CHECK_FIELD(vfio_region_info, index);
        CHECK_FIELD(vfio_region_info, cap_offset);
        CHECK_FIELD(vfio_region_info, size);
        CHECK_FIELD(vfio_region_info, offset);
        CHECK_CONST(VFIO_REGION_INFO_FLAG_READ);
        CHECK_CONST(VFIO_REGION_INFO_FLAG_WRITE);
        CHECK_CONST(VFIO_REGION_INFO_FLAG_MMAP);
        CHECK_CONST(VFIO_REGION_INFO_FLAG_CAPS);
        CHECK_CONST(VFIO_DEVICE_GET_REGION_INFO);

        CHECK_SIZE(vfio_irq_set);
        CHECK_FIELD(vfio_irq_set, argsz);
        CHECK_FIELD(vfio_irq_set, flags);
        CHECK_FIELD(vfio_irq_set, index);
        CHECK_FIELD(vfio_irq_set, start);
        CHECK_FIELD(vfio_irq_set, count);
        CHECK_EQ(offsetof(struct uapi_vfio_irq_set, data), offsetof(struct vfio_irq_set, data));
        CHECK_CONST(VFIO_IRQ_SET_DATA_NONE);
        CHECK_CONST(VFIO_IRQ_SET_DATA_BOOL);
        CHECK_CONST(VFIO_IRQ_SET_DATA_EVENTFD);
        CHECK_CONST(VFIO_IRQ_SET_ACTION_MASK);
        CHECK_CONST(VFIO_IRQ_SET_ACTION_UNMASK);
        CHECK_CONST(VFIO_IRQ_SET_ACTION_TRIGGER);
        CHECK_CONST(VFIO_DEVICE_SET_IRQS);

        CHECK_CONST(VFIO_PCI_BAR0_REGION_INDEX);
        CHECK_CONST(VFIO_PCI_ROM_REGION_INDEX);
        CHECK_CONST(VFIO_PCI_CONFIG_REGION_INDEX);
        CHECK_CONST(VFIO_PCI_VGA_REGION_INDEX);
        CHECK_CONST(VFIO_PCI_NUM_REGIONS);
        CHECK_CONST(VFIO_PCI_INTX_IRQ_INDEX);
        CHECK_CONST(VFIO_PCI_MSI_IRQ_INDEX);
        CHECK_CONST(VFIO_PCI_MSIX_IRQ_INDEX);
        CHECK_CONST(VFIO_PCI_ERR_IRQ_INDEX);
        CHECK_CONST(VFIO_PCI_REQ_IRQ_INDEX);
        CHECK_CONST(VFIO_PCI_NUM_IRQS);

        CHECK_SIZE(vfio_pci_dependent_device);
        CHECK_FIELD(vfio_pci_dependent_device, group_id);
        CHECK_FIELD(vfio_pci_dependent_device, segment);
        CHECK_FIELD(vfio_pci_dependent_device, bus);
        CHECK_FIELD(vfio_pci_dependent_device, devfn);
        CHECK_SIZE(vfio_pci_hot_reset_info);
        CHECK_FIELD(vfio_pci_hot_reset_info, argsz);
        CHECK_FIELD(vfio_pci_hot_reset_info, flags);
        CHECK_FIELD(vfio_pci_hot_reset_info, count);
        CHECK_CONST(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO);
        CHECK_SIZE(vfio_pci_hot_reset);
        CHECK_FIELD(vfio_pci_hot_reset, argsz);
        CHECK_FIELD(vfio_pci_hot_reset, flags);
        CHECK_FIELD(vfio_pci_hot_reset, count);
        CHECK_CONST(VFIO_DEVICE_PCI_HOT_RESET);
}
#endif

#if SYS_HAS(VFIO_DEVICE_BIND_IOMMUFD)
/* vfio cdev (6.6), then the fields and flags added to it one release at a time. */
static void check_vfio_cdev(void) {
        printf("# linux/vfio.h: cdev bind/attach/detach\n");
        CHECK_FIELD(vfio_device_bind_iommufd, argsz);
        CHECK_FIELD(vfio_device_bind_iommufd, flags);
        CHECK_FIELD(vfio_device_bind_iommufd, iommufd);
        CHECK_FIELD(vfio_device_bind_iommufd, out_devid);
        CHECK_CONST(VFIO_DEVICE_BIND_IOMMUFD);
#if SYS_HAS_MEMBER(vfio_device_bind_iommufd, token_uuid_ptr)
        CHECK_FIELD(vfio_device_bind_iommufd, token_uuid_ptr);
        CHECK_SIZE(vfio_device_bind_iommufd);
#endif
#if SYS_HAS(VFIO_DEVICE_BIND_FLAG_TOKEN)
        CHECK_CONST(VFIO_DEVICE_BIND_FLAG_TOKEN);
#endif

        CHECK_FIELD(vfio_device_attach_iommufd_pt, argsz);
        CHECK_FIELD(vfio_device_attach_iommufd_pt, flags);
        CHECK_FIELD(vfio_device_attach_iommufd_pt, pt_id);
        CHECK_CONST(VFIO_DEVICE_ATTACH_IOMMUFD_PT);
#if SYS_HAS_MEMBER(vfio_device_attach_iommufd_pt, pasid)
        CHECK_FIELD(vfio_device_attach_iommufd_pt, pasid);
        CHECK_SIZE(vfio_device_attach_iommufd_pt);
#endif
#if SYS_HAS(VFIO_DEVICE_ATTACH_PASID)
        CHECK_CONST(VFIO_DEVICE_ATTACH_PASID);
#endif

        CHECK_FIELD(vfio_device_detach_iommufd_pt, argsz);
        CHECK_FIELD(vfio_device_detach_iommufd_pt, flags);
        CHECK_CONST(VFIO_DEVICE_DETACH_IOMMUFD_PT);
#if SYS_HAS_MEMBER(vfio_device_detach_iommufd_pt, pasid)
        CHECK_FIELD(vfio_device_detach_iommufd_pt, pasid);
        CHECK_SIZE(vfio_device_detach_iommufd_pt);
#endif
#if SYS_HAS(VFIO_DEVICE_DETACH_PASID)
        CHECK_CONST(VFIO_DEVICE_DETACH_PASID);
#endif

#if SYS_HAS(VFIO_PCI_HOT_RESET_FLAG_DEV_ID)
        CHECK_CONST(VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
#endif
#if SYS_HAS(VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED)
        CHECK_CONST(VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED);
#endif
}
#endif

#if SYS_HAS(IOMMU_OPTION_RLIMIT_MODE)
/* iommufd as it was first merged (6.2): in every linux/iommufd.h. */
static void check_iommufd_ioas(void) {
        printf("# linux/iommufd.h: IOAS and options\n");
        CHECK_EQ(UAPI_IOMMUFD_TYPE, IOMMUFD_TYPE);
        CHECK_SIZE(iommu_destroy);
        CHECK_FIELD(iommu_destroy, size);
        CHECK_FIELD(iommu_destroy, id);
        CHECK_CONST(IOMMU_DESTROY);

        CHECK_SIZE(iommu_ioas_alloc);
        CHECK_FIELD(iommu_ioas_alloc, size);
        CHECK_FIELD(iommu_ioas_alloc, flags);
        CHECK_FIELD(iommu_ioas_alloc, out_ioas_id);
        CHECK_CONST(IOMMU_IOAS_ALLOC);

        CHECK_SIZE(iommu_iova_range);
        CHECK_FIELD(iommu_iova_range, start);
        CHECK_FIELD(iommu_iova_range, last);
        CHECK_SIZE(iommu_ioas_iova_ranges);
        CHECK_FIELD(iommu_ioas_iova_ranges, size);
        CHECK_FIELD(iommu_ioas_iova_ranges, ioas_id);
        CHECK_FIELD(iommu_ioas_iova_ranges, num_iovas);
        CHECK_FIELD(iommu_ioas_iova_ranges, __reserved);
        CHECK_FIELD(iommu_ioas_iova_ranges, allowed_iovas);
        CHECK_FIELD(iommu_ioas_iova_ranges, out_iova_alignment);
        CHECK_CONST(IOMMU_IOAS_IOVA_RANGES);

        CHECK_SIZE(iommu_ioas_map);
        CHECK_FIELD(iommu_ioas_map, size);
        CHECK_FIELD(iommu_ioas_map, flags);
        CHECK_FIELD(iommu_ioas_map, ioas_id);
        CHECK_FIELD(iommu_ioas_map, __reserved);
        CHECK_FIELD(iommu_ioas_map, user_va);
        CHECK_FIELD(iommu_ioas_map, length);
        CHECK_FIELD(iommu_ioas_map, iova);
        CHECK_CONST(IOMMU_IOAS_MAP_FIXED_IOVA);
        CHECK_CONST(IOMMU_IOAS_MAP_WRITEABLE);
        CHECK_CONST(IOMMU_IOAS_MAP_READABLE);
        CHECK_CONST(IOMMU_IOAS_MAP);

        CHECK_SIZE(iommu_ioas_unmap);
        CHECK_FIELD(iommu_ioas_unmap, size);
        CHECK_FIELD(iommu_ioas_unmap, ioas_id);
        CHECK_FIELD(iommu_ioas_unmap, iova);
        CHECK_FIELD(iommu_ioas_unmap, length);
        CHECK_CONST(IOMMU_IOAS_UNMAP);

        CHECK_SIZE(iommu_option);
        CHECK_FIELD(iommu_option, size);
        CHECK_FIELD(iommu_option, option_id);
        CHECK_FIELD(iommu_option, op);
        CHECK_FIELD(iommu_option, __reserved);
        CHECK_FIELD(iommu_option, object_id);
        CHECK_FIELD(iommu_option, val64);
        CHECK_CONST(IOMMU_OPTION_RLIMIT_MODE);
        CHECK_CONST(IOMMU_OPTION_HUGE_PAGES);
        CHECK_CONST(IOMMU_OPTION_OP_SET);
        CHECK_CONST(IOMMU_OPTION_OP_GET);
        CHECK_CONST(IOMMU_OPTION);
}
#endif

#if SYS_HAS(IOMMU_GET_HW_INFO)
/* IOMMU_GET_HW_INFO (6.6), then what later releases added to it. */
static void check_iommufd_hw_info(void) {
        printf("# linux/iommufd.h: IOMMU_GET_HW_INFO\n");
        CHECK_FIELD(iommu_hw_info, size);
        CHECK_FIELD(iommu_hw_info, flags);
        CHECK_FIELD(iommu_hw_info, dev_id);
        CHECK_FIELD(iommu_hw_info, data_len);
        CHECK_FIELD(iommu_hw_info, data_uptr);
        CHECK_FIELD(iommu_hw_info, out_data_type);
        CHECK_CONST(IOMMU_GET_HW_INFO);
#if SYS_HAS_MEMBER(iommu_hw_info, out_capabilities)
        CHECK_FIELD(iommu_hw_info, out_capabilities);
        CHECK_SIZE(iommu_hw_info);
#endif
#if SYS_HAS_MEMBER(iommu_hw_info, out_max_pasid_log2)
        /* Carved out of what was a 32-bit __reserved. */
        CHECK_FIELD(iommu_hw_info, out_max_pasid_log2);
        CHECK_FIELD(iommu_hw_info, __reserved);
#endif
#if SYS_HAS_MEMBER(iommu_hw_info, in_data_type)
        CHECK_FIELD(iommu_hw_info, in_data_type);
#endif
#if SYS_HAS(IOMMU_HW_INFO_FLAG_INPUT_TYPE)
        CHECK_CONST(IOMMU_HW_INFO_FLAG_INPUT_TYPE);
#endif

        CHECK_SIZE(iommu_hw_info_vtd);
        CHECK_FIELD(iommu_hw_info_vtd, flags);
        CHECK_FIELD(iommu_hw_info_vtd, __reserved);
        CHECK_FIELD(iommu_hw_info_vtd, cap_reg);
        CHECK_FIELD(iommu_hw_info_vtd, ecap_reg);
#if SYS_HAS(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17)
        CHECK_CONST(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17);
#endif

        CHECK_CONST(IOMMU_HW_INFO_TYPE_NONE);
        CHECK_CONST(IOMMU_HW_INFO_TYPE_INTEL_VTD);
#if SYS_HAS(IOMMU_HW_INFO_TYPE_DEFAULT)
        CHECK_CONST(IOMMU_HW_INFO_TYPE_DEFAULT);
#endif
#if SYS_HAS(IOMMU_HW_INFO_TYPE_ARM_SMMUV3)
        CHECK_CONST(IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
#endif
#if SYS_HAS(IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV)
        CHECK_CONST(IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV);
#endif
#if SYS_HAS(IOMMU_HW_INFO_TYPE_AMD)
        CHECK_CONST(IOMMU_HW_INFO_TYPE_AMD);
#endif

#if SYS_HAS(IOMMU_HW_CAP_DIRTY_TRACKING)
        CHECK_CONST(IOMMU_HW_CAP_DIRTY_TRACKING);
#endif
#if SYS_HAS(IOMMU_HW_CAP_PCI_PASID_EXEC)
        CHECK_CONST(IOMMU_HW_CAP_PCI_PASID_EXEC);
#endif
#if SYS_HAS(IOMMU_HW_CAP_PCI_PASID_PRIV)
        CHECK_CONST(IOMMU_HW_CAP_PCI_PASID_PRIV);
#endif
#if SYS_HAS(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED)
        CHECK_CONST(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
#endif
}
#endif

static void check_system_headers(void) {
#if SYS_HAS(VFIO_DEVICE_GET_INFO)
        check_vfio_legacy();
#else
        printf("skip: no linux/vfio.h\n");
#endif
#if SYS_HAS(VFIO_DEVICE_BIND_IOMMUFD)
        check_vfio_cdev();
#else
        printf("skip: linux/vfio.h predates vfio cdev (no VFIO_DEVICE_BIND_IOMMUFD)\n");
#endif
#if SYS_HAS(IOMMU_OPTION_RLIMIT_MODE)
        check_iommufd_ioas();
#else
        printf("skip: no usable linux/iommufd.h\n");
#endif
#if SYS_HAS(IOMMU_GET_HW_INFO)
        check_iommufd_hw_info();
#else
        printf("skip: linux/iommufd.h predates IOMMU_GET_HW_INFO\n");
#endif
}
#ifndef UAPI_TEST_PROBE

/* 0 exited 0, 1 exited non-zero, 127 could not run, or negative errno. */
static int run(char *const argv[]) {
        pid_t pid;
        int r, status;

        r = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
        if (r != 0)
                return -r;
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (!WIFEXITED(status))
                return 1;
        return WEXITSTATUS(status) == 0 ? 0 : WEXITSTATUS(status) == 127 ? 127 : 1;
}

/* Whether build-kernel.sh finished extracting the tree that holds this
 * <srcdir>/<tree>/include/uapi/linux: it marks <srcdir>/.extracted last. */
static bool kernel_tree_complete(const char *uapi_dir) {
        char marker[4096];
        char *slash;

        snprintf(marker, sizeof(marker), "%s", uapi_dir);
        for (int i = 0; i < 4; i++) {
                slash = strrchr(marker, '/');
                if (!slash)
                        return false;
                *slash = '\0';
        }
        strncat(marker, "/.extracted", sizeof(marker) - strlen(marker) - 1);
        return access(marker, F_OK) == 0;
}

/* The newest linux-source-7.x tree that build-kernel.sh extracted, or NULL. */
static char *find_cached_kernel_tree(void) {
        const char *cache = getenv("IOMMUFD_TEST_CACHE") ?: "/var/cache/iommufd-broker-test";
        char pattern[4096];
        char *best = NULL;
        glob_t g;

        snprintf(pattern, sizeof(pattern),
                 "%s/src/linux-source-7.*/linux-source-7.*/include/uapi/linux", cache);
        if (glob(pattern, GLOB_ONLYDIR, NULL, &g) != 0)
                return NULL;
        for (size_t i = 0; i < g.gl_pathc; i++)
                if (kernel_tree_complete(g.gl_pathv[i]) && (!best || strverscmp(g.gl_pathv[i], best) > 0))
                        best = g.gl_pathv[i];
        best = best ? strdup(best) : NULL;
        globfree(&g);
        return best;
}

/* Compile this file against uapi_dir/{iommufd,vfio}.h and run it. */
static void check_kernel_tree_at(const char *uapi_dir, const char *source_root) {
        const char *cc = getenv("CC") ?: "cc";
        char tmp[] = "/tmp/test-uapi-XXXXXX";
        char inc[64], linux_dir[80], link_iommufd[96], link_vfio[96], probe[96];
        char target_iommufd[4096], target_vfio[4096], source[4096];
        char include_daemon[4096], include_tests[4096];
        int r;

        snprintf(target_iommufd, sizeof(target_iommufd), "%s/iommufd.h", uapi_dir);
        snprintf(target_vfio, sizeof(target_vfio), "%s/vfio.h", uapi_dir);
        snprintf(source, sizeof(source), "%s/daemon/test-uapi.c", source_root);
        snprintf(include_daemon, sizeof(include_daemon), "-I%s/daemon", source_root);
        snprintf(include_tests, sizeof(include_tests), "-I%s/tests", source_root);
        if (access(target_iommufd, R_OK) < 0 || access(target_vfio, R_OK) < 0) {
                printf("FAIL: %s has no iommufd.h and vfio.h\n", uapi_dir);
                test_failures++;
                return;
        }
        if (!mkdtemp(tmp)) {
                printf("FAIL: mkdtemp: %s\n", strerror(errno));
                test_failures++;
                return;
        }
        /* Only these two come from the tree; linux/types.h etc. stay the system's. */
        snprintf(inc, sizeof(inc), "-I%s", tmp);
        snprintf(linux_dir, sizeof(linux_dir), "%s/linux", tmp);
        snprintf(link_iommufd, sizeof(link_iommufd), "%s/iommufd.h", linux_dir);
        snprintf(link_vfio, sizeof(link_vfio), "%s/vfio.h", linux_dir);
        snprintf(probe, sizeof(probe), "%s/probe", tmp);

        if (mkdir(linux_dir, 0755) < 0 || symlink(target_iommufd, link_iommufd) < 0 ||
            symlink(target_vfio, link_vfio) < 0) {
                printf("FAIL: setting up %s: %s\n", tmp, strerror(errno));
                test_failures++;
        } else {
                /* A raw (not headers_install'ed) tree still has __user and __counted_by. */
                char *compile[] = { (char *) cc, "-std=gnu11", "-D_GNU_SOURCE", "-w", inc,
                                    include_daemon, include_tests, "-D__user=",
                                    "-D__counted_by(x)=", "-DUAPI_TEST_PROBE=1", source,
                                    "-o", probe, NULL };
                char *exec_probe[] = { probe, NULL };

                printf("# kernel tree %s, via %s\n", uapi_dir, cc);
                fflush(stdout);
                r = run(compile);
                if (r == -ENOENT || r == 127)
                        printf("skip: no C compiler (%s) to build the probe\n", cc);
                else if (r != 0) {
                        printf("FAIL: compiling the probe against %s\n", uapi_dir);
                        test_failures++;
                } else if (run(exec_probe) != 0) {
                        printf("FAIL: probe against %s found differences (see above)\n", uapi_dir);
                        test_failures++;
                } else
                        printf("ok - uapi.h agrees with %s\n", uapi_dir);
        }
        unlink(probe);
        unlink(link_iommufd);
        unlink(link_vfio);
        rmdir(linux_dir);
        rmdir(tmp);
}

static void check_kernel_tree(void) {
        const char *env_dir = getenv("IOMMUFD_UAPI_DIR");
        const char *source_root = getenv("SOURCE_ROOT");
        char *cached_dir = NULL;

        if (!source_root) {
                printf("skip: SOURCE_ROOT not set, cannot find test-uapi.c to compile\n");
                return;
        }
        if (env_dir && *env_dir) {
                check_kernel_tree_at(env_dir, source_root);
                return;
        }
        cached_dir = find_cached_kernel_tree();
        if (!cached_dir) {
                printf("skip: no kernel tree (set IOMMUFD_UAPI_DIR, or let tests/vm/build-kernel.sh "
                       "extract linux-source-7.x)\n");
                return;
        }
        check_kernel_tree_at(cached_dir, source_root);
        free(cached_dir);
}
#endif

int main(void) {
#ifdef UAPI_TEST_PROBE
        check_system_headers();
#else
        check_literal_ioctl_numbers();
        check_system_headers();
        check_kernel_tree();
#endif
        return test_result();
}
