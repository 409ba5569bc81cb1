/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * On start: re-adopt every lease the records describe, with the fds the
 * service manager kept (iommufd-<session>, pidfd-<session>, the request
 * eventfd request.<address>-<session>, watched again), and finish what
 * ended or broke while the daemon was down: a device whose rebind or restore
 * was cut short goes back to its original driver and driver_override.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core-internal.h"
#include "lease.h"
#include "log.h"

/* A dup of the stored fd called kind-session_id, or -EBADF. */
static int stored_fd(const StoredFdSet *set, const char *kind, uint64_t session_id) {
        for (size_t i = 0; i < set->n; i++) {
                char k[FDSTORE_KIND_MAX];
                uint64_t id;

                if (fdstore_parse_name(set->names[i], k, sizeof(k), &id) >= 0 && streq(k, kind) &&
                    id == session_id && set->fds[i] >= 0) {
                        set->used[i] = true;
                        return fcntl(set->fds[i], F_DUPFD_CLOEXEC, 3);
                }
        }
        return -EBADF;
}

static bool pidfd_has_exited(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        return poll(&p, 1, 0) > 0;
}

/* The holder's pidfd: from the store, else from its pid if the start time
 * in the record proves it is still the same process. */
static int holder_pidfd(const StoredFdSet *set, const LeaseRecord *r) {
        int fd = stored_fd(set, "pidfd", r->session_id);

        if (fd >= 0 || r->pid <= 0 || r->pid_starttime == 0)
                return fd;
        fd = (int) syscall(SYS_pidfd_open, r->pid, 0);
        if (fd < 0)
                return -EBADF;
        /* Opened first, checked second: a pid reused in between fails here. */
        if (pid_starttime(r->pid) != r->pid_starttime) {
                close(fd);
                return -EBADF;
        }
        return fd;
}

static Lease *lease_from_record(Manager *m, Device *d, const LeaseRecord *r, const StoredFdSet *set) {
        char kind[FDSTORE_KIND_MAX];
        Lease *l = calloc(1, sizeof(*l));

        if (!l)
                return NULL;
        *l = (Lease) {
                .manager = m,
                .device = d,
                .devnum = makedev(r->devnum_major, r->devnum_minor),
                .state = r->state == RECORD_LEASED ? LEASE_STATE_LEASED : LEASE_STATE_RELEASING,
                .mode = ACQUIRE_MODE_UNBOUND,
                .dev_id = r->dev_id,
                .hwpt_id = r->hwpt_id,
                .session_id = r->session_id,
                .uid = r->uid,
                .pid = r->pid,
                .managed = r->managed,
                .pidfd = -EBADF,
                .iommufd = -EBADF,
                .request_fd = -EBADF,
        };
        snprintf(l->address, sizeof(l->address), "%s", r->address);
        if ((*r->reason && !(l->reason = strdup(r->reason))) || (*r->unit && !(l->unit = strdup(r->unit))) ||
            (*r->rule && !(l->rule = strdup(r->rule))) ||
            (*r->original_driver && !(l->original_driver = strdup(r->original_driver))) ||
            (*r->original_override && !(l->original_override = strdup(r->original_override))))
                return lease_free(l);
        int mode = acquire_mode_from_string(r->mode);   /* an enum may be unsigned */
        if (mode >= 0)
                l->mode = mode;
        l->iommufd = stored_fd(set, "iommufd", r->session_id);
        l->pidfd = holder_pidfd(set, r);
        fdstore_request_kind(kind, r->address);
        l->request_fd = stored_fd(set, kind, r->session_id);
        return l;
}

static void adopt_lease(Manager *m, Device *d, const LeaseRecord *r, const StoredFdSet *set) {
        Lease *l;

        l = lease_from_record(m, d, r, set);
        if (!l) {
                log_error("%s: out of memory re-adopting the lease", r->address);
                return;
        }
        if (d->lease) {
                log_warning("%s: two records for one device; keeping the first", r->address);
                lease_free(l);
                return;
        }
        manager_link_lease(m, l);
        log_info("%s: re-adopted lease of session %" PRIu64 " (uid %u, pid %d, %s mode, %s%s%s%s%s)", l->address,
                 l->session_id, (unsigned) l->uid, (int) l->pid, acquire_mode_to_string(l->mode),
                 lease_state_to_string(l->state), l->iommufd >= 0 ? ", iommufd kept" : "",
                 l->pidfd >= 0 ? ", pidfd kept" : "", l->request_fd >= 0 ? ", request eventfd kept" : "",
                 l->managed ? ", managed" : "");

        if (l->state == LEASE_STATE_LEASED && (l->pidfd < 0 || pidfd_has_exited(l->pidfd))) {
                /* The holder exited while we were down (or cannot be told
                 * apart from a reused pid): see whether the device is free. */
                l->state = LEASE_STATE_RELEASING;
                (void) free_and_strdup(&l->reason, "client-exited");
        }
        (void) lease_persist(l);
        /* A request that came while we were down is still counted in the
         * eventfd: it fires at once. */
        if (lease_watch_request(l) < 0)
                log_warning("%s: cannot watch unplug requests of the re-adopted lease", l->address);
        if (l->state == LEASE_STATE_LEASED)
                (void) lease_watch_holder(l);
        else
                lease_check_now(l);
}

static void finish_rebind(Manager *m, Device *d, const LeaseRecord *r) {
        /* No fd was handed out yet (binding), or the lease ended (restoring):
         * the device is free, and goes back exactly as it was. */
        log_info("%s: %s was cut short by a restart; restoring %s%s%s", r->address,
                 r->state == RECORD_BINDING ? "a managed rebind" : "a driver restore",
                 *r->original_driver ? r->original_driver : "no driver",
                 *r->original_override ? ", driver_override " : "", r->original_override);
        manager_restore_driver(m, d, *r->original_driver ? r->original_driver : NULL,
                               *r->original_override ? r->original_override : NULL);
}

int manager_adopt_leases(Manager *m, const StoredFdSet *set, uint64_t *ret_max_session_id) {
        _cleanup_free_ LeaseRecord *records = NULL;
        uint64_t max_id = 0;
        size_t n = 0;
        int r;

        r = lease_store_load(manager_lease_store(m), &records, &n);
        if (r < 0)
                return log_error_errno(r, "Cannot read lease records: %m");

        for (size_t i = 0; i < n; i++) {
                const LeaseRecord *rec = &records[i];
                Device *d = inventory_find(manager_inventory(m), rec->address);

                if (rec->session_id > max_id)
                        max_id = rec->session_id;
                if (!d) {
                        log_info("%s: lease record for a device that is gone; dropping it", rec->address);
                        (void) lease_store_remove(manager_lease_store(m), rec->address);
                        continue;
                }
                switch (rec->state) {
                case RECORD_BINDING:
                case RECORD_RESTORING:
                        finish_rebind(m, d, rec);
                        break;
                case RECORD_LEASED:
                case RECORD_RELEASING:
                        adopt_lease(m, d, rec, set);
                        break;
                default:
                        break;
                }
        }

        /* Stored fds no record claims are stale: drop them from the store. */
        for (size_t i = 0; i < set->n; i++) {
                char kind[FDSTORE_KIND_MAX];
                uint64_t id;

                if (set->used[i] || fdstore_parse_name(set->names[i], kind, sizeof(kind), &id) < 0)
                        continue;
                log_debug("fd store: dropping stale %s", set->names[i]);
                (void) fdstore_remove(kind, id);
        }
        *ret_max_session_id = max_id;
        return 0;
}
