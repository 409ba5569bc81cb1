/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD for the bench only: libudev refuses a /sys that is not sysfs
 * (it checks the statfs magic). The bench bind-mounts a plain directory tree
 * over /sys in a private mount namespace; this makes statfs on it report
 * SYSFS_MAGIC, and changes nothing else. So a broker that enumerates through
 * libudev (the baseline) sees the same fake devices as one that reads sysfs
 * itself, without umockdev's interposition on every file call.
 */
/* Both the plain and the 64-bit names are defined below. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

static int fd_under_sys(int fd) {
        char link[64], target[4096];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return 0;
        target[n] = 0;
        return strncmp(target, "/sys/", 5) == 0 || strcmp(target, "/sys") == 0;
}

#define WRAP_FSTATFS(name, type)                                                \
        __attribute__((visibility("default"))) int name(int fd, type *buf) {                                           \
                static int (*real)(int, type *);                                \
                int r;                                                          \
                if (!real)                                                      \
                        real = (int (*)(int, type *)) dlsym(RTLD_NEXT, #name);  \
                r = real(fd, buf);                                              \
                if (r == 0 && fd_under_sys(fd))                                 \
                        buf->f_type = SYSFS_MAGIC;                              \
                return r;                                                       \
        }

#define WRAP_STATFS(name, type)                                                         \
        __attribute__((visibility("default"))) int name(const char *path, type *buf) {                                         \
                static int (*real)(const char *, type *);                               \
                int r;                                                                  \
                if (!real)                                                              \
                        real = (int (*)(const char *, type *)) dlsym(RTLD_NEXT, #name); \
                r = real(path, buf);                                                    \
                if (r == 0 && strncmp(path, "/sys", 4) == 0)                            \
                        buf->f_type = SYSFS_MAGIC;                                      \
                return r;                                                               \
        }

WRAP_FSTATFS(fstatfs, struct statfs)
WRAP_FSTATFS(fstatfs64, struct statfs64)
WRAP_STATFS(statfs, struct statfs)
WRAP_STATFS(statfs64, struct statfs64)
