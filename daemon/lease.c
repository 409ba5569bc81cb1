/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core-internal.h"
#include "fmt.h"
#include "holders.h"
#include "lease-store.h"
#include "lease.h"
#include "log.h"
#include "revoke.h"

/* A releasing lease is polled: the kernel sends no event when the last fd of
 * a vfio device closes. IOMMU_GET_HW_INFO is one cheap ioctl, so bound
 * leases are checked often; the /proc scan forks a worker, so it starts at
 * 100 ms and backs off to one every 2 s. */
#define CHECK_FIRST_USEC        (20 * 1000)
#define CHECK_MAX_USEC          (100 * 1000)
#define SCAN_FIRST_USEC         (100 * 1000)
#define SCAN_MAX_USEC           (2000 * 1000)
#define SCAN_TIMEOUT_USEC       (10 * 1000 * 1000)
#define UNSEEN_SCANS_MAX        3       /* then warn: no process shows the bound fd */

static const char *const lease_state_names[_LEASE_STATE_MAX] = {
        [LEASE_STATE_LEASED] = "leased",
        [LEASE_STATE_RELEASING] = "releasing",
};

const char *lease_state_to_string(LeaseState s) {
        return s >= 0 && s < _LEASE_STATE_MAX ? lease_state_names[s] : NULL;
}

LeaseState lease_state_from_string(const char *s) {
        for (int i = 0; i < _LEASE_STATE_MAX; i++)
                if (streq_ptr(s, lease_state_names[i]))
                        return i;
        return -EINVAL;
}

/* A pinned lease borrows the pin's iommufd and pidfd; a re-adopted one
 * owns its own. */
static void lease_drop_pin(Lease *l, bool remove_stored) {
        if (!l->pin)
                return;
        l->iommufd = l->pidfd = -EBADF;
        l->pin = session_pin_unref(l->pin, remove_stored);
}

Lease *lease_free(Lease *l) {
        if (!l)
                return NULL;
        worker_cancel(l->scan);
        sd_event_source_disable_unref(l->check_timer);
        sd_event_source_disable_unref(l->pidfd_source);
        sd_event_source_disable_unref(l->request_source);
        safe_close(l->request_fd);
        /* Ended leases gave theirs back in lease_end(): this is a stop. */
        lease_drop_pin(l, false);
        safe_close(l->pidfd);
        safe_close(l->iommufd);
        free(l->reason);
        free(l->unit);
        free(l->rule);
        free(l->original_driver);
        free(l->original_override);
        free(l->held_by);
        free(l);
        return NULL;
}

int lease_describe(const Lease *l, bool show_holder, char *buf, size_t size) {
        if (l->state == LEASE_STATE_LEASED)
                return snprintf(buf, size, "leased%s", show_holder ? "" : " to another user");
        /* Who still holds it only to those who may see the holder. */
        return snprintf(buf, size, "releasing (%s): %s%s", strna(l->reason),
                        show_holder && l->held_by ? "still open in " : "waiting for every fd of it to close",
                        show_holder && l->held_by ? l->held_by : "");
}

static bool reason_means_device_gone(const char *reason) {
        return streq_ptr(reason, "device-removed") || streq_ptr(reason, "unplug-requested");
}

/* Whether another lease still uses this session's stored fds. */
static bool session_has_other_leases(Manager *m, uint64_t session_id) {
        for (Lease *o = manager_leases(m); o; o = o->next)
                if (o->session_id == session_id)
                        return true;
        return false;
}

void lease_end(Lease *l, const char *reason) {
        Manager *m = l->manager;
        Device *d = l->device;
        bool restore = l->managed && !reason_means_device_gone(reason) && !reason_means_device_gone(l->reason);
        char kind[FDSTORE_KIND_MAX];

        /* One entry per lease, when it really ended: RELEASE if its holder
         * asked, LEASE_END for anything else. */
        AuditLease record = lease_audit_record(l);
        if (streq_ptr(reason, "released"))
                audit_release(&record);
        else
                audit_lease_end(&record, reason);

        /* A revoke's worker is still unbinding vfio-pci: it restores the
         * driver when done, so the two never race over the device. */
        if (l->revoking && !l->revoke_unbound)
                restore = false;
        manager_unlink_lease(m, l);
        /* The audit entry above says the same, at notice level. */
        log_debug("%s: lease of session %" PRIu64 " (uid %u) ended: %s", l->address, l->session_id,
                  (unsigned) l->uid, reason);
        if (l->pin && session_pin_keep_request(l->pin, l->address, l->request_fd, l->request_source)) {
                /* The session's next lease of the device takes it over,
                 * name in the fd store, epoll registration and all. */
                l->request_source = NULL;
                l->request_fd = -EBADF;
        } else {
                fdstore_request_kind(kind, l->address);
                (void) fdstore_remove(kind, l->session_id);
        }
        if (l->pin)
                lease_drop_pin(l, true);
        else if (!session_has_other_leases(m, l->session_id)) {
                /* Re-adopted: its session is gone with the old daemon. */
                (void) fdstore_remove("iommufd", l->session_id);
                (void) fdstore_remove("pidfd", l->session_id);
        }
        manager_emit(m, &(BrokerEvent) {
                .type = BROKER_EVENT_LEASE_ENDED,
                .address = l->address,
                .device = d,
                .session_id = l->session_id,
                .holder_uid = l->uid,
                .reason = reason,
        });

        /* Only now, with every fd closed, can vfio-pci's unbind finish at
         * once instead of waiting for a client. The record stays until the
         * driver is back, so a crash in between is finished on next start. */
        if (restore)
                manager_restore_driver(m, d, l->original_driver, l->original_override);
        else if (l->managed && l->revoking)
                /* The revoke's worker restores it; until then the record says
                 * so, in case the daemon dies first. */
                (void) manager_record_restoring(m, d, l->original_driver, l->original_override);
        else
                (void) lease_store_remove(manager_lease_store(m), l->address);

        manager_emit(m, &(BrokerEvent) { .type = BROKER_EVENT_DEVICE_CHANGED, .address = l->address, .device = d });
        char address[16];
        memcpy(address, l->address, sizeof(address));
        lease_free(l);
        revoke_lease_ended(m, address);
}

AuditLease lease_audit_record(const Lease *l) {
        return (AuditLease) {
                .device = l->address,
                .session = l->session_id,
                .uid = l->uid,
                .pid = l->pid,
                .unit = l->unit,
                .mode = acquire_mode_to_string(l->mode),
                .rule = l->rule,
                .managed = l->managed,
        };
}

/* --- the holder --- */

static int on_holder_exit(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Lease *l = userdata;

        log_debug("%s: holder pid %d exited", l->address, (int) l->pid);
        l->pidfd_source = sd_event_source_disable_unref(l->pidfd_source);
        lease_release(l, "client-exited");
        return 0;
}

int lease_watch_holder(Lease *l) {
        /* The session watches its holder once for all its leases. */
        if (l->pin)
                return session_pin_watch_holder(l->pin);
        if (l->pidfd < 0 || l->pidfd_source)
                return 0;
        return sd_event_add_io(manager_event(l->manager), &l->pidfd_source, l->pidfd, EPOLLIN, on_holder_exit, l);
}

static int on_unplug_request(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Lease *l = userdata;
        uint64_t count;

        /* Drain the eventfd; the count does not matter. */
        if (read(fd, &count, sizeof(count)) < 0 && l)
                log_debug_errno(errno, "%s: reading the request eventfd: %m", l->address);
        if (!l)
                return 0;       /* kept by a session between its leases: nobody to ask */
        log_info("%s: the kernel asks for the device back (unplug or unbind)", l->address);
        lease_release(l, l->revoking ? "revoked" : "unplug-requested");
        return 0;
}

int lease_watch_request(Lease *l) {
        if (l->request_fd < 0 || l->request_source)
                return 0;
        return sd_event_add_io(manager_event(l->manager), &l->request_source, l->request_fd, EPOLLIN,
                               on_unplug_request, l);
}

/* --- is the device free? --- */

static void schedule_check(Lease *l);

typedef struct ScanJob {
        const KernelOps *kernel;
        HolderTarget target;
        Device device;                  /* a copy for open_device(); valid in the worker only */
        bool test_bind;
} ScanJob;

/* Whether IOMMU_GET_HW_INFO on our context tells when the device is free:
 * a bound lease whose iommufd we still have. */
static bool lease_kernel_answers(const Lease *l) {
        return l->dev_id != 0 && l->iommufd >= 0;
}

static const KernelOps *scan_kernel;   /* set in the worker before scanning */

static bool file_matches(const struct stat *st, const char *link, const HolderTarget *t) {
        return scan_kernel->file_is_device(st, link, t->address, t->devnum);
}

/* In the worker: who holds it; if nobody and it was handed out unbound, a
 * test bind tells whether an fd we cannot see (in flight in a socket) still
 * has it bound. The bind resets a device nobody uses, never one in use. */
static int scan_worker(void *arg, int out_fd) {
        ScanJob *job = arg;
        FILE *out = fdopen(out_fd, "w");
        int n;

        if (!out)
                return -errno;
        scan_kernel = job->kernel;
        n = holders_scan(NULL, &job->target, 1, file_matches, getpid(), out);
        if (n < 0)
                return n;
        if (n == 0 && job->test_bind) {
                int iommufd = job->kernel->open_iommufd(MEMLOCK_ACCOUNTING_USER);
                int fd = iommufd >= 0 ? job->kernel->open_device(&job->device) : -EBADF;
                uint32_t dev_id;
                int r = fd >= 0 ? job->kernel->bind(fd, iommufd, &dev_id) : fd;

                fprintf(out, "%s\n", r >= 0 ? "FREE" : (r == -EINVAL || r == -EBUSY) ? "BOUND" :
                                      r == -ENODEV ? "NOCDEV" : "UNKNOWN");
                safe_close(fd);
                safe_close(iommufd);
        } else if (n == 0)
                fprintf(out, "FREE\n");
        fflush(out);
        return 0;
}

static char *holders_summary(const char *output) {
        char *summary = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&summary, &size);
        int n = 0;

        if (!f)
                return NULL;
        for (const char *line = output; line && *line;) {
                HolderLine h;

                if (holders_parse_line(line, &h) > 0)
                        fprintf(f, "%spid %d (%s)", n++ ? ", " : "", (int) h.pid, h.comm);
                line = strchr(line, '\n');
                line = line ? line + 1 : NULL;
        }
        fclose(f);
        if (n == 0) {
                free(summary);
                return NULL;
        }
        return summary;
}

static void on_scan_done(int result, const char *output, void *userdata) {
        Lease *l = userdata;

        l->scan = NULL;
        if (result < 0) {
                log_debug_errno(result, "%s: scanning for holders failed: %m", l->address);
                return;
        }
        _cleanup_free_ char *before = TAKE_PTR(l->held_by);
        l->held_by = holders_summary(output);
        bool held_by_process = l->held_by;
        if (!l->held_by && strstr(output, "BOUND"))
                l->held_by = strdup("an fd no process shows (in flight in a socket?)");

        /* The scan decides only where the kernel gives no answer; a bound
         * lease with its context is decided in lease_check_now(). */
        if (!lease_kernel_answers(l) && strstr(output, "FREE")) {
                lease_end(l, l->reason);
                return;
        }
        /* The revoke's unbind returned: vfio-pci removed the device, which
         * the kernel lets it do only once every fd is closed. With the cdev
         * gone no test bind can confirm; the scan guards against a device
         * that went some other way. */
        if (!lease_kernel_answers(l) && l->revoke_unbound && !held_by_process) {
                lease_end(l, l->reason);
                return;
        }
        /* No process holds it, and it has no vfio cdev any more: it left
         * vfio-pci (root's unbind, or a revoke's that a restart cut off from
         * us), and the kernel lets vfio-pci go only once every fd is closed.
         * Without a cdev no test bind can confirm, so this stayed releasing
         * for ever and a managed device never got its driver back. */
        if (!lease_kernel_answers(l) && !held_by_process && strstr(output, "NOCDEV")) {
                log_info("%s: the device left vfio-pci and no process holds it: the lease is over", l->address);
                lease_end(l, l->reason);
                return;
        }
        /* No process holds it, yet a test bind is refused: an open file of
         * the device is bound somewhere no /proc/PID/fd shows, in flight in
         * a socket queue or in an io_uring file table. Its owner can take it
         * back out at any time, whole, with its DMA mappings: the lease stays
         * until the kernel says otherwise (ending it here offered a device
         * that a client kept bound). Said once; Revoke asks through
         * vfio-pci, and the holder's processes exiting drops the queue. */
        if (!lease_kernel_answers(l) && !held_by_process && strstr(output, "BOUND")) {
                if (++l->unseen_scans == UNSEEN_SCANS_MAX)
                        log_warning("%s: no process shows an fd of the device, yet the kernel has it bound "
                                    "(an fd in flight in a socket?); the lease stays releasing until it closes",
                                    l->address);
        } else
                l->unseen_scans = 0;
        if (!streq_ptr(before, l->held_by))
                manager_emit(l->manager, &(BrokerEvent) {
                        .type = BROKER_EVENT_DEVICE_CHANGED, .address = l->address, .device = l->device });
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static void start_scan(Lease *l) {
        const KernelOps *k = manager_kernel(l->manager);
        ScanJob *job;
        int r;

        if (l->scan || !l->device)
                return;
        /* The worker gets its own copy of everything through fork(). */
        job = calloc(1, sizeof(*job));
        if (!job)
                return;
        /* Without the kernel's own answer (unbound, or a bound lease whose
         * iommufd did not survive a restart), a test bind confirms the scan. */
        *job = (ScanJob) { .kernel = k, .device = *l->device, .test_bind = !lease_kernel_answers(l) };
        snprintf(job->target.address, sizeof(job->target.address), "%s", l->address);
        job->target.devnum = l->devnum;
        r = worker_start(manager_event(l->manager), l->address, SCAN_TIMEOUT_USEC, scan_worker, job, on_scan_done,
                         l, &l->scan);
        free(job);
        if (r < 0)
                log_debug_errno(r, "%s: no holder scan: %m", l->address);
}

/* Whether the kernel still has the bound device in our context. */
static int bound_device_exists(Lease *l) {
        IommuHwInfo info;
        int r;

        r = manager_kernel(l->manager)->hw_info(l->iommufd, l->dev_id, &info);
        if (r == -ENOENT)
                return 0;
        return r < 0 ? r : 1;
}

void lease_check_now(Lease *l) {
        uint64_t now = now_usec();

        if (l->state != LEASE_STATE_RELEASING)
                return;
        if (lease_kernel_answers(l)) {
                int r = bound_device_exists(l);
                if (r == 0) {
                        lease_end(l, l->reason);
                        return;
                }
        }
        if (!l->scan && (l->last_scan_usec == 0 || now - l->last_scan_usec >= l->scan_interval_usec)) {
                l->scan_interval_usec = l->last_scan_usec == 0 ? SCAN_FIRST_USEC :
                                        l->scan_interval_usec * 2 > SCAN_MAX_USEC ? SCAN_MAX_USEC :
                                        l->scan_interval_usec * 2;
                l->last_scan_usec = now;
                start_scan(l);
        }
        schedule_check(l);
}

static int on_check_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Lease *l = userdata;

        l->check_interval_usec = l->check_interval_usec * 2;
        if (l->check_interval_usec > CHECK_MAX_USEC)
                l->check_interval_usec = CHECK_MAX_USEC;
        lease_check_now(l);
        return 0;
}

static void schedule_check(Lease *l) {
        int r;

        if (l->check_interval_usec == 0)
                l->check_interval_usec = CHECK_FIRST_USEC;
        if (l->check_timer) {
                (void) sd_event_source_set_time_relative(l->check_timer, l->check_interval_usec);
                (void) sd_event_source_set_enabled(l->check_timer, SD_EVENT_ONESHOT);
                return;
        }
        r = sd_event_add_time_relative(manager_event(l->manager), &l->check_timer, CLOCK_MONOTONIC,
                                       l->check_interval_usec, 0, on_check_timer, l);
        if (r < 0)
                log_warning_errno(r, "%s: cannot poll the releasing lease: %m", l->address);
}

void lease_release(Lease *l, const char *reason) {
        bool free_now;

        if (l->state == LEASE_STATE_RELEASING)
                return;
        if (l->session)
                session_forget_lease(l->session, l);
        l->state = LEASE_STATE_RELEASING;
        (void) free_and_strdup(&l->reason, reason);
        l->pidfd_source = sd_event_source_disable_unref(l->pidfd_source);
        /* Usually the holder closed its fds before it released: the lease
         * ends below, before anything else runs, and a "releasing" record
         * for that moment would be written only to be removed. */
        free_now = lease_kernel_answers(l) && bound_device_exists(l) == 0;
        log_internal(free_now ? LOG_DEBUG : LOG_INFO, "%s: lease of session %" PRIu64 " (uid %u) is releasing: %s",
                 l->address, l->session_id, (unsigned) l->uid, reason);
        if (!free_now)
                (void) lease_persist(l);
        /* The holder learns it here too: for a bound lease the broker, not
         * the client, gets vfio-pci's request to let go. */
        manager_emit(l->manager, &(BrokerEvent) {
                .type = BROKER_EVENT_LEASE_RELEASING,
                .address = l->address,
                .device = l->device,
                .session_id = l->session_id,
                .holder_uid = l->uid,
                .reason = l->reason,
        });
        manager_emit(l->manager, &(BrokerEvent) {
                .type = BROKER_EVENT_DEVICE_CHANGED, .address = l->address, .device = l->device });
        if (free_now)
                lease_end(l, l->reason);
        else
                lease_check_now(l);
}

/* --- persistence --- */

/* As snprintf("%s") would, without printf. */
static void copy_field(char *dst, size_t size, const char *src) {
        FmtBuf b = fmt_buf(dst, size);
        fmt_str(&b, src);
}

static void lease_to_record(Lease *l, LeaseRecord *r) {
        /* Read once per session: the holder's start time does not change. */
        if (l->pid_starttime == 0 && l->pin)
                l->pid_starttime = l->pin->pid_starttime;
        if (l->pid_starttime == 0) {
                l->pid_starttime = pid_starttime(l->pid);
                if (l->pin)
                        l->pin->pid_starttime = l->pid_starttime;
        }
        *r = (LeaseRecord) {
                .state = l->state == LEASE_STATE_LEASED ? RECORD_LEASED : RECORD_RELEASING,
                .dev_id = l->dev_id,
                .hwpt_id = l->hwpt_id,
                .devnum_major = major(l->devnum),
                .devnum_minor = minor(l->devnum),
                .session_id = l->session_id,
                .uid = l->uid,
                .pid = l->pid,
                .pid_starttime = l->pid_starttime,
                .managed = l->managed,
        };
        copy_field(r->address, sizeof(r->address), l->address);
        copy_field(r->reason, sizeof(r->reason), l->reason);
        copy_field(r->mode, sizeof(r->mode), acquire_mode_to_string(l->mode));
        copy_field(r->unit, sizeof(r->unit), l->unit);
        copy_field(r->rule, sizeof(r->rule), l->rule);
        copy_field(r->original_driver, sizeof(r->original_driver), l->original_driver);
        copy_field(r->original_override, sizeof(r->original_override), l->original_override);
}

int lease_persist(Lease *l) {
        char kind[FDSTORE_KIND_MAX];
        LeaseRecord r;
        int q;

        lease_to_record(l, &r);
        q = lease_store_write(manager_lease_store(l->manager), &r);
        /* Every lease of a session shares one context, stored once. */
        (void) fdstore_push(l->iommufd, "iommufd", l->session_id);
        (void) fdstore_push(l->pidfd, "pidfd", l->session_id);
        if (l->pin)
                l->pin->pushed = true;
        /* Still registered with vfio-pci while the client holds the device:
         * kept, a restarted broker hears the kernel's request too. */
        fdstore_request_kind(kind, l->address);
        (void) fdstore_push(l->request_fd, kind, l->session_id);
        return q;
}
