/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "device.h"
#include "fmt.h"
#include "lease-store.h"
#include "log.h"

#define DEFAULT_LEASE_DIR   "/run/iommufd-broker/leases"
#define RECORD_VERSION_LINE "IOMMUFD_BROKER_LEASE=1"
#define RECORD_END_LINE     "END=1"
#define RECORD_MAX_SIZE     4096

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

struct LeaseStore {
        char *dir;
        int dir_fd;
        bool sync;              /* fsync() matters: the directory is not on tmpfs */
};

static const char *const record_state_names[_RECORD_STATE_MAX] = {
        [RECORD_BINDING] = "binding",
        [RECORD_LEASED] = "leased",
        [RECORD_RELEASING] = "releasing",
        [RECORD_RESTORING] = "restoring",
};

const char *record_state_to_string(RecordState s) {
        return s >= 0 && s < _RECORD_STATE_MAX ? record_state_names[s] : NULL;
}

RecordState record_state_from_string(const char *s) {
        for (int i = 0; i < _RECORD_STATE_MAX; i++)
                if (streq_ptr(s, record_state_names[i]))
                        return i;
        return -EINVAL;
}

/* Values are single-line and free of control characters by construction;
 * refuse to write one that is not, so parsing stays trivial. */
static bool value_is_safe(const char *v) {
        for (; *v; v++)
                if ((unsigned char) *v < 0x20 || *v == 0x7f)
                        return false;
        return true;
}

/* Into buf; the length, or -EINVAL for an unsafe value, -E2BIG if it does
 * not fit (the fields are bounded: it always fits RECORD_MAX_SIZE). */
static int record_format(const LeaseRecord *r, char *buf, size_t size) {
        const char *strings[] = { r->address, r->reason, r->mode, r->unit, r->rule, r->original_driver,
                                  r->original_override };
        int n;

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (!value_is_safe(strings[i]))
                        return -EINVAL;
        /* Written on every Acquire: no printf. */
        FmtBuf b = fmt_buf(buf, size);
        fmt_str(&b, RECORD_VERSION_LINE "\nADDRESS=");
        fmt_str(&b, r->address);
        fmt_str(&b, "\nSTATE=");
        fmt_str(&b, record_state_to_string(r->state));
        fmt_str(&b, "\nREASON=");
        fmt_str(&b, r->reason);
        fmt_str(&b, "\nMODE=");
        fmt_str(&b, r->mode);
        fmt_str(&b, "\nDEV_ID=");
        fmt_u64(&b, r->dev_id);
        fmt_str(&b, "\nHWPT_ID=");
        fmt_u64(&b, r->hwpt_id);
        fmt_str(&b, "\nDEVNUM=");
        fmt_u64(&b, r->devnum_major);
        fmt_str(&b, ":");
        fmt_u64(&b, r->devnum_minor);
        fmt_str(&b, "\nSESSION=");
        fmt_u64(&b, r->session_id);
        fmt_str(&b, "\nUID=");
        fmt_u64(&b, (uint64_t) r->uid);
        fmt_str(&b, "\nPID=");
        fmt_i64(&b, (int64_t) r->pid);
        fmt_str(&b, "\nPID_STARTTIME=");
        fmt_u64(&b, r->pid_starttime);
        fmt_str(&b, "\nUNIT=");
        fmt_str(&b, r->unit);
        fmt_str(&b, "\nRULE=");
        fmt_str(&b, r->rule);
        fmt_str(&b, r->managed ? "\nMANAGED=1\nORIGINAL_DRIVER=" : "\nMANAGED=0\nORIGINAL_DRIVER=");
        fmt_str(&b, r->original_driver);
        fmt_str(&b, "\nORIGINAL_OVERRIDE=");
        fmt_str(&b, r->original_override);
        fmt_str(&b, "\n" RECORD_END_LINE "\n");
        n = (int) fmt_len(&b, buf);
        return b.overflow ? -E2BIG : n;
}

int lease_record_format(const LeaseRecord *r, FILE *f) {
        char buf[RECORD_MAX_SIZE];
        int n = record_format(r, buf, sizeof(buf));

        if (n < 0)
                return n;
        fwrite(buf, 1, (size_t) n, f);
        return ferror(f) ? -EIO : 0;
}

static int parse_u64(const char *v, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long x;

        if (!*v || *v == '-' || *v == ' ')
                return -EINVAL;
        errno = 0;
        x = strtoull(v, &end, 10);
        if (errno || *end || x > max)
                return -EINVAL;
        *ret = x;
        return 0;
}

static int copy_value(char *dst, size_t size, const char *v) {
        if (strlen(v) >= size)
                return -EINVAL;
        strcpy(dst, v);
        return 0;
}

/* Parse one KEY=value line into r. Returns the key's bit (each key must
 * appear exactly once), 0 for an unknown key (from a newer version), or
 * -EINVAL. */
static int parse_field(LeaseRecord *r, const char *key, const char *v) {
        uint64_t x;
        int bit = 0;

#define NUM(name, field, max) \
        bit++; if (streq(key, name)) { if (parse_u64(v, max, &x) < 0) return -EINVAL; r->field = x; return 1 << bit; }
#define STR(name, field) \
        bit++; if (streq(key, name)) return copy_value(r->field, sizeof(r->field), v) < 0 ? -EINVAL : 1 << bit;
        STR("ADDRESS", address);
        STR("REASON", reason);
        STR("MODE", mode);
        STR("UNIT", unit);
        STR("RULE", rule);
        STR("ORIGINAL_DRIVER", original_driver);
        STR("ORIGINAL_OVERRIDE", original_override);
        NUM("DEV_ID", dev_id, UINT32_MAX);
        NUM("HWPT_ID", hwpt_id, UINT32_MAX);
        NUM("SESSION", session_id, UINT64_MAX);
        NUM("UID", uid, UINT32_MAX - 1);
        NUM("PID", pid, INT_MAX);
        NUM("PID_STARTTIME", pid_starttime, UINT64_MAX);
        NUM("MANAGED", managed, 1);
#undef NUM
#undef STR
        bit++;
        if (streq(key, "STATE")) {
                int state = record_state_from_string(v);   /* an enum may be unsigned */
                if (state < 0)
                        return -EINVAL;
                r->state = state;
                return 1 << bit;
        }
        bit++;
        if (streq(key, "DEVNUM"))
                return sscanf(v, "%u:%u", &r->devnum_major, &r->devnum_minor) == 2 ? 1 << bit : -EINVAL;
        return 0;
}

/* Bits 1..16: one per key above. */
#define RECORD_ALL_KEYS 0x1fffe

int lease_record_parse(const char *text, LeaseRecord *ret) {
        _cleanup_free_ char *copy = NULL;
        LeaseRecord r = {};
        int seen = 0;
        bool ended = false;
        char *save = NULL;
        char address[16];
        int q;

        if (!text || strncmp(text, RECORD_VERSION_LINE "\n", strlen(RECORD_VERSION_LINE) + 1) != 0)
                return -EBADMSG;
        copy = strdup(text + strlen(RECORD_VERSION_LINE) + 1);
        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *eq = strchr(line, '=');

                if (ended)
                        return -EBADMSG;        /* nothing may follow the end */
                if (streq(line, RECORD_END_LINE)) {
                        ended = true;
                        continue;
                }
                if (!eq)
                        return -EBADMSG;
                *eq = 0;
                q = parse_field(&r, line, eq + 1);
                if (q < 0 || (seen & q))
                        return -EBADMSG;        /* bad value, or a key twice */
                seen |= q;
        }
        /* A record cut short by a crash lacks its end line or fields. */
        if (!ended || seen != RECORD_ALL_KEYS)
                return -EBADMSG;
        if (pci_address_normalize(r.address, address) < 0 || !streq(address, r.address))
                return -EBADMSG;
        *ret = r;
        return 0;
}

/* tmpfs and ramfs have no backing store: fsync() there is a no-op that
 * still costs a system call, and what it would guard against (the kernel
 * going down) takes the whole directory with it, and every holder too. */
static bool dir_is_in_memory(int dir_fd) {
        struct statfs sfs;

        if (fstatfs(dir_fd, &sfs) < 0)
                return false;
        return (unsigned long) sfs.f_type == TMPFS_MAGIC || (unsigned long) sfs.f_type == RAMFS_MAGIC;
}

bool lease_store_syncs(const LeaseStore *s) {
        return s && s->sync;
}

int lease_store_open(const char *dir, LeaseStore **ret) {
        _cleanup_free_ LeaseStore *s = NULL;
        const char *path = dir ?: DEFAULT_LEASE_DIR;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dir = strdup(path);
        if (!s->dir)
                return -ENOMEM;
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
                free(s->dir);
                return -errno;
        }
        s->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dir_fd < 0) {
                free(s->dir);
                return -errno;
        }
        s->sync = !dir_is_in_memory(s->dir_fd);
        *ret = TAKE_PTR(s);
        return 0;
}

LeaseStore *lease_store_free(LeaseStore *s) {
        if (!s)
                return NULL;
        safe_close(s->dir_fd);
        free(s->dir);
        free(s);
        return NULL;
}

static bool record_name_is_valid(const char *name) {
        char normalized[16];

        return pci_address_normalize(name, normalized) >= 0 && streq(name, normalized);
}

static int write_all_and_close(LeaseStore *s, int fd, const char *text, size_t size) {
        int q = 0;

        if (write(fd, text, size) != (ssize_t) size)
                q = errno ? -errno : -EIO;
        else if (s->sync && fsync(fd) < 0)
                q = -errno;
        close(fd);
        return q;
}

/* A device with no record yet (the usual Acquire): the record is created
 * under its own name, whole, by one write(). Nothing was handed out before
 * it is written, so a crash in between leaves at worst a torn record of a
 * device nobody holds, which the next start removes. -EEXIST: there is a
 * record, which only an atomic replace may touch. */
static int record_create(LeaseStore *s, const char *address, const char *text, size_t size) {
        int fd, q;

        fd = openat(s->dir_fd, address, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST)
                return -EEXIST;
        if (fd < 0)
                return log_warning_errno(errno, "%s: cannot write lease record: %m", address);
        q = write_all_and_close(s, fd, text, size);
        if (q < 0) {
                (void) unlinkat(s->dir_fd, address, 0);
                return log_warning_errno(q, "%s: cannot write lease record: %m", address);
        }
        if (s->sync)
                (void) fsync(s->dir_fd);
        return 0;
}

/* A record that exists (binding -> leased, leased -> releasing, restoring)
 * is replaced atomically: a crash leaves the old one or the new one. */
static int record_replace(LeaseStore *s, const char *address, const char *text, size_t size) {
        char tmp[64];
        int fd, q;

        FmtBuf b = fmt_buf(tmp, sizeof(tmp));
        fmt_str(&b, ".");
        fmt_str(&b, address);
        fmt_str(&b, ".tmp");
        fd = openat(s->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return log_warning_errno(errno, "%s: cannot write lease record: %m", address);
        q = write_all_and_close(s, fd, text, size);
        if (q < 0) {
                (void) unlinkat(s->dir_fd, tmp, 0);
                return log_warning_errno(q, "%s: cannot write lease record: %m", address);
        }
        if (renameat(s->dir_fd, tmp, s->dir_fd, address) < 0) {
                q = -errno;
                (void) unlinkat(s->dir_fd, tmp, 0);
                return log_warning_errno(q, "%s: cannot install lease record: %m", address);
        }
        if (s->sync)
                (void) fsync(s->dir_fd);
        return 0;
}

int lease_store_write(LeaseStore *s, const LeaseRecord *r) {
        char text[RECORD_MAX_SIZE];
        size_t size;
        int q;

        if (!s)
                return 0;
        if (!record_name_is_valid(r->address))
                return -EINVAL;
        q = record_format(r, text, sizeof(text));
        if (q < 0)
                return q;
        size = (size_t) q;
        q = record_create(s, r->address, text, size);
        if (q != -EEXIST)
                return q;
        return record_replace(s, r->address, text, size);
}

int lease_store_remove(LeaseStore *s, const char *address) {
        if (!s)
                return 0;
        if (!record_name_is_valid(address))
                return -EINVAL;
        if (unlinkat(s->dir_fd, address, 0) < 0 && errno != ENOENT)
                return log_warning_errno(errno, "%s: cannot remove lease record: %m", address);
        if (s->sync)
                (void) fsync(s->dir_fd);
        return 0;
}

static int read_record(int dir_fd, const char *name, LeaseRecord *ret) {
        char buf[RECORD_MAX_SIZE + 1];
        ssize_t n;
        int fd;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, RECORD_MAX_SIZE + 1);
        close(fd);
        if (n < 0)
                return -errno;
        if (n > RECORD_MAX_SIZE)
                return -EBADMSG;
        buf[n] = 0;
        if (strlen(buf) != (size_t) n)
                return -EBADMSG;        /* NUL bytes: a torn write */
        return lease_record_parse(buf, ret);
}

int lease_store_load(LeaseStore *s, LeaseRecord **ret, size_t *ret_n) {
        _cleanup_(closedirp) DIR *dir = NULL;
        _cleanup_free_ LeaseRecord *records = NULL;
        size_t n = 0;
        struct dirent *de;
        int fd;

        *ret = NULL;
        *ret_n = 0;
        if (!s)
                return 0;
        fd = dup(s->dir_fd);
        if (fd < 0)
                return -errno;
        dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return -errno;
        }
        rewinddir(dir);
        while ((de = readdir(dir))) {
                LeaseRecord r, *grown;
                int q;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                q = record_name_is_valid(de->d_name) ? read_record(s->dir_fd, de->d_name, &r) : -EBADMSG;
                if (q >= 0 && !streq(r.address, de->d_name))
                        q = -EBADMSG;
                if (q < 0) {
                        /* A crash between write and rename leaves a .tmp; a
                         * hand-edited or truncated file is no record either. */
                        log_warning("lease record %s/%s is torn or invalid, removing it: %s", s->dir, de->d_name,
                                    strerror(-q));
                        (void) unlinkat(s->dir_fd, de->d_name, 0);
                        continue;
                }
                grown = realloc(records, (n + 1) * sizeof(*records));
                if (!grown)
                        return -ENOMEM;
                records = grown;
                records[n++] = r;
        }
        *ret = TAKE_PTR(records);
        *ret_n = n;
        return 0;
}

uint64_t pid_starttime(pid_t pid) {
        char path[64], buf[1024];
        unsigned long long start = 0;
        const char *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        /* comm may contain anything: fields start after its last ')', with
         * field 3 (state); the start time is field 22. Counted by hand:
         * sscanf() costs more than the rest of a lease record. */
        p = strrchr(buf, ')');
        for (int field = 2; p && field <= 21; field++)
                p = strchr(p + 1, ' ');
        if (!p || p[1] < '0' || p[1] > '9')
                return 0;
        start = strtoull(p + 1, NULL, 10);
        return start;
}
