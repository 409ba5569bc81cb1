/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>

#include "vmtest.h"

void vm_fail(const char *file, int line, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, "FAIL [%d] %s:%d: ", getpid(), file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

void vm_log(const char *fmt, ...) {
        va_list ap;
        printf("[%d] ", getpid());
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ sysfs */

int read_file_str(const char *path, char *buf, size_t n) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t l = read(fd, buf, n - 1);
        if (l < 0)
                return -errno;
        while (l > 0 && buf[l - 1] == '\n')
                l--;
        buf[l] = 0;
        return 0;
}

int write_file_str(const char *path, const char *s) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t l = strlen(s);
        ssize_t w = write(fd, s, l);
        if (w < 0)
                return -errno;
        return (size_t) w == l ? 0 : -EIO;
}

static int pci_read_hex(const char *bdf, const char *attr, unsigned long *ret) {
        char path[PATH_MAX], buf[32];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/%s", bdf, attr);
        int r = read_file_str(path, buf, sizeof buf);
        if (r < 0)
                return r;
        *ret = strtoul(buf, NULL, 16);
        return 0;
}

int pci_iommu_group(const char *bdf) {
        char path[PATH_MAX], link[PATH_MAX];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", bdf);
        ssize_t l = readlink(path, link, sizeof link - 1);
        if (l < 0)
                return -errno;
        link[l] = 0;
        const char *base = strrchr(link, '/');
        return atoi(base ? base + 1 : link);
}

/* Members of bdf's IOMMU group that are not bridges, bdf included. */
static int pci_group_endpoints(const char *bdf) {
        int group = pci_iommu_group(bdf);
        if (group < 0)
                return group;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "/sys/kernel/iommu_groups/%d/devices", group);
        DIR *d = opendir(path);
        if (!d)
                return -errno;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                unsigned long class;
                if (de->d_name[0] == '.')
                        continue;
                if (pci_read_hex(de->d_name, "class", &class) >= 0 && (class >> 8) == 0x0604)
                        continue;
                n++;
        }
        closedir(d);
        return n;
}

int pci_find(uint16_t vendor, uint16_t device, bool shared, char ret[static 16]) {
        DIR *d = opendir("/sys/bus/pci/devices");
        if (!d)
                return -errno;
        int r = -ENODEV;
        struct dirent *de;
        while ((de = readdir(d))) {
                unsigned long v, dv;
                if (de->d_name[0] == '.' || strlen(de->d_name) >= 16)
                        continue;
                if (pci_read_hex(de->d_name, "vendor", &v) < 0 || pci_read_hex(de->d_name, "device", &dv) < 0)
                        continue;
                if (v != vendor || dv != device)
                        continue;
                if ((pci_group_endpoints(de->d_name) > 1) != shared)
                        continue;
                strcpy(ret, de->d_name);
                r = 0;
                break;
        }
        closedir(d);
        return r;
}

int pci_driver(const char *bdf, char *buf, size_t n) {
        char path[PATH_MAX], link[PATH_MAX];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver", bdf);
        ssize_t l = readlink(path, link, sizeof link - 1);
        if (l < 0) {
                if (errno != ENOENT)
                        return -errno;
                buf[0] = 0;
                return 0;
        }
        link[l] = 0;
        const char *base = strrchr(link, '/');
        snprintf(buf, n, "%s", base ? base + 1 : link);
        return 0;
}

int pci_wait_driver(const char *bdf, const char *driver, unsigned timeout_ms) {
        uint64_t end = now_ms() + timeout_ms;
        char cur[64];
        for (;;) {
                int r = pci_driver(bdf, cur, sizeof cur);
                if (r < 0)
                        return r;
                if (streq(cur, driver))
                        return 0;
                if (now_ms() >= end)
                        return -ETIMEDOUT;
                usleep(20 * 1000);
        }
}

int pci_unbind(const char *bdf) {
        char path[PATH_MAX], cur[64];
        int r = pci_driver(bdf, cur, sizeof cur);
        if (r < 0 || !cur[0])
                return r;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver/unbind", bdf);
        return write_file_str(path, bdf);
}

static int pci_set_override(const char *bdf, const char *driver) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver_override", bdf);
        return write_file_str(path, driver ?: "\n");
}

int pci_bind_vfio(const char *bdf) {
        char cur[64];
        int r = pci_driver(bdf, cur, sizeof cur);
        if (r < 0)
                return r;
        if (streq(cur, "vfio-pci"))
                return 0;
        r = pci_set_override(bdf, "vfio-pci");
        if (r < 0)
                return r;
        r = pci_unbind(bdf);
        if (r < 0)
                return r;
        r = write_file_str("/sys/bus/pci/drivers_probe", bdf);
        if (r < 0)
                return r;
        return pci_wait_driver(bdf, "vfio-pci", 5000);
}

int pci_bind_driver(const char *bdf, const char *driver) {
        int r = pci_set_override(bdf, NULL);
        if (r < 0)
                return r;
        r = pci_unbind(bdf);
        if (r < 0)
                return r;
        if (!driver)
                return 0;
        r = write_file_str("/sys/bus/pci/drivers_probe", bdf);
        if (r < 0)
                return r;
        return pci_wait_driver(bdf, driver, 5000);
}

int pci_vfio_cdev(const char *bdf, char *buf, size_t n) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vfio-dev", bdf);
        DIR *d = opendir(path);
        if (!d)
                return -errno;
        int r = -ENOENT;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "vfio", 4) == 0) {
                        snprintf(buf, n, "%s", de->d_name);
                        r = 0;
                        break;
                }
        closedir(d);
        return r;
}

/* ------------------------------------------------------------ iommufd/vfio */

int iommufd_open_rlimit(void) {
        _cleanup_close_ int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct uapi_iommu_option opt = {
                .size = sizeof opt,
                .option_id = UAPI_IOMMU_OPTION_RLIMIT_MODE,
                .op = UAPI_IOMMU_OPTION_OP_SET,
                .val64 = 1,
        };
        if (ioctl(fd, UAPI_IOMMU_OPTION, &opt) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int vfio_cdev_open(const char *bdf) {
        char cdev[32], path[64];
        int r = pci_vfio_cdev(bdf, cdev, sizeof cdev);
        if (r < 0)
                return r;
        snprintf(path, sizeof path, "/dev/vfio/devices/%s", cdev);
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        return fd < 0 ? -errno : fd;
}

int vfio_bind(int devfd, int iommufd, uint32_t *ret_dev_id) {
        struct uapi_vfio_device_bind_iommufd bind = {
                .argsz = UAPI_VFIO_DEVICE_BIND_IOMMUFD_MINSZ,
                .iommufd = iommufd,
        };
        if (ioctl(devfd, UAPI_VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0)
                return -errno;
        *ret_dev_id = bind.out_devid;
        return 0;
}

int ioas_alloc(int iommufd, uint32_t *ret_ioas_id) {
        struct uapi_iommu_ioas_alloc a = { .size = sizeof a };
        if (ioctl(iommufd, UAPI_IOMMU_IOAS_ALLOC, &a) < 0)
                return -errno;
        *ret_ioas_id = a.out_ioas_id;
        return 0;
}

int ioas_map(int iommufd, uint32_t ioas_id, void *va, size_t len, uint64_t iova) {
        struct uapi_iommu_ioas_map m = {
                .size = sizeof m,
                .flags = UAPI_IOMMU_IOAS_MAP_FIXED_IOVA | UAPI_IOMMU_IOAS_MAP_READABLE |
                         UAPI_IOMMU_IOAS_MAP_WRITEABLE,
                .ioas_id = ioas_id,
                .user_va = (uintptr_t) va,
                .length = len,
                .iova = iova,
        };
        return ioctl(iommufd, UAPI_IOMMU_IOAS_MAP, &m) < 0 ? -errno : 0;
}

int vfio_attach(int devfd, uint32_t pt_id, uint32_t *ret_hwpt_id) {
        struct uapi_vfio_device_attach_iommufd_pt a = {
                .argsz = UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT_MINSZ,
                .pt_id = pt_id,
        };
        if (ioctl(devfd, UAPI_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a) < 0)
                return -errno;
        if (ret_hwpt_id)
                *ret_hwpt_id = a.pt_id;
        return 0;
}

int iommu_hw_info(int iommufd, uint32_t dev_id, uint32_t *ret_type, uint64_t *ret_caps) {
        struct uapi_iommu_hw_info_vtd vtd = {};
        struct uapi_iommu_hw_info info = {
                .size = sizeof info,
                .dev_id = dev_id,
                .data_len = sizeof vtd,
                .data_uptr = (uintptr_t) &vtd,
        };
        if (ioctl(iommufd, UAPI_IOMMU_GET_HW_INFO, &info) < 0)
                return -errno;
        *ret_type = info.out_data_type;
        *ret_caps = info.out_capabilities;
        return 0;
}

int vfio_device_info(int devfd, struct uapi_vfio_device_info *ret) {
        *ret = (struct uapi_vfio_device_info) { .argsz = sizeof *ret };
        return ioctl(devfd, UAPI_VFIO_DEVICE_GET_INFO, ret) < 0 ? -errno : 0;
}

int vfio_region(int devfd, uint32_t index, struct uapi_vfio_region_info *ret) {
        *ret = (struct uapi_vfio_region_info) { .argsz = sizeof *ret, .index = index };
        return ioctl(devfd, UAPI_VFIO_DEVICE_GET_REGION_INFO, ret) < 0 ? -errno : 0;
}

static int config_offset(int devfd, uint64_t *ret) {
        struct uapi_vfio_region_info ri;
        int r = vfio_region(devfd, UAPI_VFIO_PCI_CONFIG_REGION_INDEX, &ri);
        if (r < 0)
                return r;
        *ret = ri.offset;
        return 0;
}

int pci_config_read(int devfd, unsigned off, void *buf, size_t n) {
        uint64_t base;
        int r = config_offset(devfd, &base);
        if (r < 0)
                return r;
        ssize_t l = pread(devfd, buf, n, (off_t) (base + off));
        if (l < 0)
                return -errno;
        return (size_t) l == n ? 0 : -EIO;
}

int pci_config_write(int devfd, unsigned off, const void *buf, size_t n) {
        uint64_t base;
        int r = config_offset(devfd, &base);
        if (r < 0)
                return r;
        ssize_t l = pwrite(devfd, buf, n, (off_t) (base + off));
        if (l < 0)
                return -errno;
        return (size_t) l == n ? 0 : -EIO;
}

int vfio_pci_ids(int devfd, uint16_t *ret_vendor, uint16_t *ret_device) {
        uint16_t ids[2];
        int r = pci_config_read(devfd, 0, ids, sizeof ids);
        if (r < 0)
                return r;
        *ret_vendor = ids[0];   /* config space is little endian, like x86 */
        *ret_device = ids[1];
        return 0;
}

int map_own_memory(int iommufd, uint32_t ioas_id, uint64_t iova) {
        size_t len = 1 << 20;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -errno;
        memset(p, 0x5a, len);
        int r = ioas_map(iommufd, ioas_id, p, len, iova);
        if (r < 0)
                munmap(p, len);
        return r;
}

/* ---------------------------------------------------------------- edu DMA */

/* QEMU's edu device (docs/specs/edu.rst): BAR0 registers. */
#define EDU_REG_ID      0x00
#define EDU_REG_LIVE    0x04
#define EDU_REG_DMA_SRC 0x80
#define EDU_REG_DMA_DST 0x88
#define EDU_REG_DMA_CNT 0x90
#define EDU_REG_DMA_CMD 0x98
#define EDU_DMA_START   0x01
#define EDU_DMA_TO_RAM  0x02
#define EDU_BUFFER      0x40000         /* the device's own 4 KiB */
#define EDU_DMA_IOVA    0x400000        /* below the edu's 28-bit DMA mask */

static uint32_t mmio_read32(volatile uint8_t *bar, unsigned off) {
        return *(volatile uint32_t *) (bar + off);
}
static void mmio_write32(volatile uint8_t *bar, unsigned off, uint32_t v) {
        *(volatile uint32_t *) (bar + off) = v;
}
static void mmio_write64(volatile uint8_t *bar, unsigned off, uint64_t v) {
        *(volatile uint64_t *) (bar + off) = v;
}

static void edu_dma(volatile uint8_t *bar, uint64_t src, uint64_t dst, uint32_t len, uint32_t cmd) {
        mmio_write64(bar, EDU_REG_DMA_SRC, src);
        mmio_write64(bar, EDU_REG_DMA_DST, dst);
        mmio_write64(bar, EDU_REG_DMA_CNT, len);
        mmio_write64(bar, EDU_REG_DMA_CMD, cmd | EDU_DMA_START);
        uint64_t end = now_ms() + 5000;
        while (mmio_read32(bar, EDU_REG_DMA_CMD) & EDU_DMA_START) {
                CHECK(now_ms() < end, "edu DMA (cmd %#x) did not complete in 5 s", cmd);
                usleep(1000);
        }
}

void edu_dma_roundtrip(int devfd, int iommufd, uint32_t ioas_id) {
        /* Not the whole 4 KiB buffer: QEMU 7.2's edu range check is off by
         * one and aborts QEMU on a transfer that ends at the buffer's end. */
        const size_t len = 2048;
        uint16_t vendor, device;
        CHECK_OK(vfio_pci_ids(devfd, &vendor, &device), "read config ids");
        CHECK(vendor == PCI_VENDOR_QEMU && device == PCI_DEVICE_EDU, "not an edu: %04x:%04x", vendor, device);

        /* Two pages: [0] what we send, [1] what comes back. */
        const size_t page = 4096;
        uint8_t *buf = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(buf != MAP_FAILED, "mmap: %m");
        CHECK(getrandom(buf, len, 0) == (ssize_t) len, "getrandom: %m");
        memset(buf + page, 0, page);
        CHECK_OK(ioas_map(iommufd, ioas_id, buf, 2 * page, EDU_DMA_IOVA), "IOMMU_IOAS_MAP of the DMA buffers");

        uint16_t cmd;
        CHECK_OK(pci_config_read(devfd, 4, &cmd, 2), "read PCI command");
        cmd |= 0x6;     /* memory space + bus master */
        CHECK_OK(pci_config_write(devfd, 4, &cmd, 2), "enable bus mastering");

        struct uapi_vfio_region_info bar0;
        CHECK_OK(vfio_region(devfd, UAPI_VFIO_PCI_BAR0_REGION_INDEX, &bar0), "BAR0 region info");
        CHECK(bar0.flags & UAPI_VFIO_REGION_INFO_FLAG_MMAP, "BAR0 not mmappable (flags %#x)", bar0.flags);
        CHECK(bar0.size >= 0x100000, "BAR0 is %llu bytes", (unsigned long long) bar0.size);
        volatile uint8_t *bar = mmap(NULL, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, devfd, (off_t) bar0.offset);
        CHECK(bar != MAP_FAILED, "mmap BAR0: %m");

        uint32_t id = mmio_read32(bar, EDU_REG_ID);
        CHECK((id & 0xff) == 0xed, "edu id register reads %#x", id);
        mmio_write32(bar, EDU_REG_LIVE, 0x12345678);
        CHECK(mmio_read32(bar, EDU_REG_LIVE) == ~0x12345678u, "edu liveness register does not invert");

        edu_dma(bar, EDU_DMA_IOVA, EDU_BUFFER, len, 0);
        edu_dma(bar, EDU_BUFFER, EDU_DMA_IOVA + page, len, EDU_DMA_TO_RAM);

        size_t same = 0;
        while (same < len && buf[same] == buf[page + same])
                same++;
        CHECK(same == len, "DMA round trip differs at byte %zu: sent %#x, got %#x", same, buf[same],
              buf[page + same]);
        munmap((void *) bar, bar0.size);
        vm_log("edu DMA round trip of %zu bytes through IOVA %#x matches", len, EDU_DMA_IOVA);
}

/* -------------------------------------------------------------- processes */

static void check_no_capabilities(void) {
        FILE *f = fopen("/proc/self/status", "re");
        CHECK(f, "open /proc/self/status: %m");
        char line[256];
        bool seen = false;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, "CapEff:", 7) == 0) {
                        CHECK(strtoull(line + 7, NULL, 16) == 0, "client still has capabilities: %s", line);
                        seen = true;
                }
        fclose(f);
        CHECK(seen, "no CapEff line in /proc/self/status");
}

pid_t client_spawn(int (*fn)(void *), void *userdata) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %m");
        if (pid > 0)
                return pid;

        CHECK(setgroups(0, NULL) == 0, "setgroups: %m");
        CHECK(setresgid(CLIENT_GID, CLIENT_GID, CLIENT_GID) == 0, "setresgid: %m");
        CHECK(setresuid(CLIENT_UID, CLIENT_UID, CLIENT_UID) == 0, "setresuid: %m");
        /* Changing uid made us non-dumpable, which hides our own /proc/self/fd. */
        CHECK(prctl(PR_SET_DUMPABLE, 1) == 0, "PR_SET_DUMPABLE: %m");
        CHECK(getuid() == CLIENT_UID && geteuid() == CLIENT_UID && getegid() == CLIENT_GID, "uid not dropped");
        check_no_capabilities();
        int r = fn(userdata);
        fflush(NULL);
        _exit(r == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

int client_wait(pid_t pid, const char *what) {
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (WIFEXITED(status))
                fprintf(stderr, "%s: exited with %d\n", what, WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                fprintf(stderr, "%s: killed by signal %d\n", what, WTERMSIG(status));
        return -EPROTO;
}

int client_run(int (*fn)(void *), void *userdata, const char *what) {
        return client_wait(client_spawn(fn, userdata), what);
}

int count_fds(pid_t pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        DIR *d = opendir(path);
        if (!d)
                return -errno;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}
