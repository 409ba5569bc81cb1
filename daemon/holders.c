/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "holders.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static bool parse_pid(const char *s, pid_t *ret) {
        char *end;
        long v;

        if (!s || *s < '1' || *s > '9')
                return false;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v <= 0 || v > INT_MAX)
                return false;
        *ret = (pid_t) v;
        return true;
}

static void read_comm(int proc_fd, pid_t pid, char *buf, size_t size) {
        char path[32];
        ssize_t n;
        int fd;

        snprintf(buf, size, "?");
        snprintf(path, sizeof(path), "%d/comm", (int) pid);
        fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n <= 0) {
                snprintf(buf, size, "?");
                return;
        }
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        /* One word per field on the output line. */
        for (char *p = buf; *p; p++)
                if (*p == ' ' || (unsigned char) *p < 0x20)
                        *p = '_';
}

static bool link_may_be_device(const char *target) {
        return strncmp(target, "/dev/", 5) == 0 || strncmp(target, "/memfd:", 7) == 0;
}

/* Which targets pid holds; marks them in found[]. */
static int scan_process(int proc_fd, pid_t pid, const HolderTarget *targets, size_t n, HolderMatch match,
                        bool *found) {
        _cleanup_(closedirp) DIR *dir = NULL;
        char path[32];
        struct dirent *de;
        int fd_dir, hits = 0;

        snprintf(path, sizeof(path), "%d/fd", (int) pid);
        fd_dir = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd_dir < 0)
                return -errno;          /* exited, or not ours to read */
        dir = fdopendir(fd_dir);
        if (!dir) {
                close(fd_dir);
                return -errno;
        }
        while ((de = readdir(dir))) {
                char target[PATH_MAX];
                struct stat st;
                ssize_t len;

                if (de->d_name[0] == '.')
                        continue;
                len = readlinkat(fd_dir, de->d_name, target, sizeof(target) - 1);
                if (len < 0)
                        continue;
                target[len] = 0;
                if (!link_may_be_device(target))
                        continue;
                if (fstatat(fd_dir, de->d_name, &st, 0) < 0)
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (!found[i] && match(&st, target, &targets[i])) {
                                found[i] = true;
                                hits++;
                        }
        }
        return hits;
}

int holders_scan(const char *proc, const HolderTarget *targets, size_t n, HolderMatch match, pid_t skip_pid,
                 FILE *out) {
        _cleanup_(closedirp) DIR *dir = NULL;
        _cleanup_free_ unsigned *counts = NULL;
        _cleanup_free_ bool *found = NULL;
        struct dirent *de;
        int lines = 0;

        if (n == 0)
                return 0;
        counts = calloc(n, sizeof(*counts));
        found = calloc(n, sizeof(*found));
        if (!counts || !found)
                return -ENOMEM;
        dir = opendir(proc ?: "/proc");
        if (!dir)
                return -errno;

        while ((de = readdir(dir))) {
                char comm[17];
                pid_t pid;

                if (!parse_pid(de->d_name, &pid) || pid == skip_pid)
                        continue;
                memset(found, 0, n * sizeof(*found));
                if (scan_process(dirfd(dir), pid, targets, n, match, found) <= 0)
                        continue;
                read_comm(dirfd(dir), pid, comm, sizeof(comm));
                for (size_t i = 0; i < n; i++) {
                        if (!found[i] || counts[i] >= HOLDERS_MAX_PER_TARGET)
                                continue;
                        counts[i]++;
                        fprintf(out, "%s %d %s\n", targets[i].address, (int) pid, comm);
                        lines++;
                }
        }
        if (fflush(out) != 0)
                return -errno;
        return lines;
}

int holders_parse_line(const char *line, HolderLine *ret) {
        char address[16], comm[17];
        int pid, consumed = 0;

        if (sscanf(line, "%15s %d %16s%n", address, &pid, comm, &consumed) != 3 || pid <= 0)
                return -EINVAL;
        *ret = (HolderLine) { .pid = pid };
        memcpy(ret->address, address, sizeof(address));
        memcpy(ret->comm, comm, sizeof(comm));
        return consumed;
}
