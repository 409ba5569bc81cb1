/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Revoke: an admin asks for a device back. The kernel has no revoke for a
 * vfio fd; what it has is vfio-pci's device request: unbinding the driver
 * signals the request eventfd to whoever registered it (the broker for a
 * bound or attached lease, the VMM, e.g. QEMU, for an unbound one, which
 * answers by unplugging the device from its guest and closing the fd) and
 * then waits, re-asking every 10 s, until every fd is closed. That wait
 * cannot be cancelled, so it runs in a worker that lives until the holder
 * lets go; the caller gets its answer when the lease ends, or a typed error
 * naming the holder when its timeout passes first.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "core-internal.h"
#include "lease.h"
#include "log.h"
#include "revoke.h"
#include "worker.h"

struct Revoke {
        Manager *manager;
        uid_t by_uid;
        char address[16];
        RevokeDone done;
        void *userdata;
        sd_event_source *timer;
        Revoke *next;
};

/* Pending revokes; one daemon, one loop. */
static Revoke *revokes;

static unsigned revokes_of_uid(Manager *m, uid_t uid) {
        unsigned n = 0;

        for (Revoke *r = revokes; r; r = r->next)
                n += r->manager == m && r->by_uid == uid;
        return n;
}

static void revoke_unlink(Revoke *r) {
        for (Revoke **p = &revokes; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        return;
                }
}

void revoke_cancel(Revoke *r) {
        if (!r)
                return;
        revoke_unlink(r);
        sd_event_source_disable_unref(r->timer);
        free(r);
}

static void revoke_finish(Revoke *r, int result, const BrokerError *err) {
        RevokeDone done = r->done;
        void *userdata = r->userdata;

        revoke_cancel(r);
        if (done)
                done(result, err, userdata);
}

void revoke_lease_ended(Manager *m, const char *address) {
        Revoke *next;

        for (Revoke *r = revokes; r; r = next) {
                next = r->next;
                if (r->manager == m && streq(r->address, address)) {
                        log_info("%s: revoked, the holder let go", address);
                        revoke_finish(r, 0, NULL);
                }
        }
}

static int on_revoke_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Revoke *r = userdata;
        Device *d = inventory_find(manager_inventory(r->manager), r->address);
        const Lease *l = d ? d->lease : NULL;
        BrokerError err = {};

        broker_error_set(&err, BROKER_ERROR_REVOKE_TIMEOUT, r->address,
                         "%s: the holder (uid %u, pid %d%s%s) did not let go in time; the kernel keeps asking "
                         "it, and the device is taken back as soon as it does", r->address,
                         l ? (unsigned) l->uid : 0, l ? (int) l->pid : 0, l && l->held_by ? ", still open in " : "",
                         l && l->held_by ? l->held_by : "");
        log_warning("%s", err.message);
        revoke_finish(r, broker_error_errno(BROKER_ERROR_REVOKE_TIMEOUT), &err);
        return 0;
}

/* --- the worker that asks through the kernel --- */

typedef struct RevokeJob {
        char address[16];
        char unbind[PATH_MAX];          /* <syspath>/driver/unbind */
        char rebind[PATH_MAX];          /* /sys/bus/pci/drivers/vfio-pci/bind, "" for managed */
        bool managed;
        char *original_driver;
        char *original_override;
        Manager *manager;
} RevokeJob;

static int write_once(const char *path, const char *value) {
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = write(fd, value, strlen(value));
        close(fd);
        return n < 0 ? -errno : 0;
}

/* Blocks in vfio-pci's remove until every fd of the device is closed. */
static int revoke_worker(void *arg, int out_fd) {
        RevokeJob *job = arg;
        int r;

        r = write_once(job->unbind, job->address);
        if (r < 0)
                return r;
        /* A device the admin had put on vfio-pci goes back there. */
        if (*job->rebind)
                return write_once(job->rebind, job->address);
        return 0;
}

static void on_revoke_worker_done(int result, const char *output, void *userdata) {
        RevokeJob *job = userdata;
        Device *d = inventory_find(manager_inventory(job->manager), job->address);

        if (result < 0)
                log_warning_errno(result, "%s: unbinding for the revoke failed: %m", job->address);
        if (d) {
                (void) inventory_refresh(manager_inventory(job->manager), d);
                /* The lease ended while vfio-pci was going (lease_end left the
                 * restore to us, so the two never race over the driver). */
                if (job->managed && !d->lease)
                        manager_restore_driver(job->manager, d, job->original_driver, job->original_override);
                else if (d->lease) {
                        d->lease->revoke_unbound = true;        /* lease_end() restores */
                        if (result >= 0)
                                lease_check_now(d->lease);      /* the device should be free now */
                }
                if (d->lease || !job->managed)
                        manager_emit(job->manager, &(BrokerEvent) {
                                .type = BROKER_EVENT_DEVICE_CHANGED, .address = d->address, .device = d });
        }
        free(job->original_driver);
        free(job->original_override);
        free(job);
}

static int start_unbind(Manager *m, Lease *l) {
        RevokeJob *job;
        int r;

        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        *job = (RevokeJob) { .manager = m, .managed = l->managed };
        snprintf(job->address, sizeof(job->address), "%s", l->address);
        snprintf(job->unbind, sizeof(job->unbind), "%s/driver/unbind", l->device->syspath);
        if (!l->managed)
                snprintf(job->rebind, sizeof(job->rebind), "/sys/bus/pci/drivers/vfio-pci/bind");
        if ((l->original_driver && !(job->original_driver = strdup(l->original_driver))) ||
            (l->original_override && !(job->original_override = strdup(l->original_override)))) {
                free(job->original_driver);
                free(job);
                return -ENOMEM;
        }
        /* No timeout: once vfio-pci's remove started the kernel finishes it
         * only when the holder lets go, and a signal cannot stop it. */
        r = worker_start(manager_event(m), l->address, 0, revoke_worker, job, on_revoke_worker_done, job, NULL);
        if (r < 0) {
                free(job->original_driver);
                free(job->original_override);
                free(job);
        }
        return r;
}

int manager_revoke(Manager *m, const char *address, uid_t by_uid, uint64_t timeout_usec, RevokeDone done,
                   void *userdata, Revoke **ret, BrokerError *err) {
        Revoke *r;
        Device *d;
        Lease *l;
        int q;

        q = manager_get_device(m, address, &d, err);
        if (q < 0)
                return q;
        l = d->lease;
        if (!l)
                return broker_error_set(err, BROKER_ERROR_NOT_HELD, d->address, "%s is not leased", d->address);
        if (!streq_ptr(d->driver, "vfio-pci") && !l->revoking)
                return broker_error_set(err, BROKER_ERROR_DEVICE_UNAVAILABLE, d->address,
                                        "%s is on %s, not vfio-pci: the kernel has no request to send", d->address,
                                        d->driver ?: "no driver");

        /* Each waits up to an hour with its caller's message: a user allowed
         * to revoke still may not pile them up. Root is trusted. */
        if (by_uid != 0 && revokes_of_uid(m, by_uid) >= REVOKE_MAX_PENDING_PER_UID)
                return broker_error_set(err, BROKER_ERROR_LIMIT_EXCEEDED, d->address,
                                        "uid %u already waits for %u revokes to finish, the most one user may; "
                                        "wait for their answers", (unsigned) by_uid, REVOKE_MAX_PENDING_PER_UID);

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        *r = (Revoke) { .manager = m, .by_uid = by_uid, .done = done, .userdata = userdata };
        snprintf(r->address, sizeof(r->address), "%s", d->address);
        q = sd_event_add_time_relative(manager_event(m), &r->timer, CLOCK_MONOTONIC, timeout_usec, 0,
                                       on_revoke_timeout, r);
        if (q < 0) {
                free(r);
                return q;
        }

        if (!l->revoking) {
                AuditLease record = lease_audit_record(l);

                q = start_unbind(m, l);
                if (q < 0) {
                        revoke_cancel(r);
                        return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, d->address,
                                                "%s: cannot start the unbind: %s", d->address, strerror(-q));
                }
                l->revoking = true;
                audit_revoke(&record, by_uid, "revoked");
                log_notice("%s: revoke by uid %u: asking the holder (uid %u, pid %d) through vfio-pci's device "
                           "request", d->address, (unsigned) by_uid, (unsigned) l->uid, (int) l->pid);
        }
        r->next = revokes;
        revokes = r;
        if (ret)
                *ret = r;
        /* May end the lease at once if nothing holds it any more. */
        lease_release(l, "revoked");
        return 0;
}

/* --- one call: authorize, then revoke --- */

struct RevokeCall {
        Manager *manager;
        char *device;
        uid_t uid;
        uint64_t timeout_usec;
        PolkitQuery *query;             /* while polkit is asked */
        Revoke *revoke;                 /* once authorized, until it finishes */
        RevokeDone done;
        void *userdata;
};

RevokeCall *revoke_call_cancel(RevokeCall *c) {
        if (!c)
                return NULL;
        polkit_query_free(c->query);
        revoke_cancel(c->revoke);
        free(c->device);
        free(c);
        return NULL;
}

static void call_finish(RevokeCall *c, int result, const BrokerError *err) {
        RevokeDone done = c->done;
        void *userdata = c->userdata;

        c->query = NULL;
        c->revoke = NULL;
        revoke_call_cancel(c);
        done(result, err, userdata);
}

static void on_call_revoked(int result, const BrokerError *err, void *userdata) {
        RevokeCall *c = userdata;

        c->revoke = NULL;       /* finished: revoke.c frees it */
        call_finish(c, result, err);
}

static void call_revoke(RevokeCall *c) {
        BrokerError err = {};
        int r;

        r = manager_revoke(c->manager, c->device, c->uid, c->timeout_usec, on_call_revoked, c, &c->revoke, &err);
        if (r < 0)
                call_finish(c, r, &err);
}

static void on_polkit_answer(PolkitQuery *q, int result, const char *message, void *userdata) {
        RevokeCall *c = userdata;
        BrokerError err = {};

        c->query = NULL;        /* the polkit module frees it */
        if (result < 0) {
                log_info("%s: polkit: %s for uid %u: %s", c->device, REVOKE_POLKIT_ACTION, (unsigned) c->uid,
                         message ?: strerror(-result));
                result = polkit_error_to_broker(result, message, REVOKE_POLKIT_ACTION, c->device, c->uid, &err);
                call_finish(c, result, &err);
                return;
        }
        call_revoke(c);
}

int revoke_call_start(Manager *m, PolkitClient *polkit, const RevokeRequest *req, RevokeDone done, void *userdata,
                      RevokeCall **ret) {
        BrokerError err = {};
        RevokeCall *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (RevokeCall) {
                .manager = m, .uid = req->caller->uid, .timeout_usec = req->timeout_usec, .done = done,
                .userdata = userdata,
        };
        c->device = strdup(req->device ?: "");
        if (!c->device)
                return revoke_call_cancel(c), -ENOMEM;
        *ret = c;
        /* A bad or unknown address is refused before polkit is asked (which
         * may mean an authentication dialog), and the rest names the device
         * as everything else does ("0000:03:00.0", not "3:00.0"). */
        Device *d;
        r = manager_get_device(m, c->device, &d, &err);
        if (r < 0) {
                call_finish(c, r, &err);
                return 0;
        }
        r = free_and_strdup(&c->device, d->address);
        if (r < 0) {
                *ret = NULL;
                return revoke_call_cancel(c), r;
        }
        if (req->caller->uid == 0) {
                call_revoke(c);
                return 0;
        }
        r = polkit ? polkit_check_async(polkit, req->caller, req->bus_name, REVOKE_POLKIT_ACTION,
                                        req->allow_interactive, on_polkit_answer, c, &c->query)
                   : -EHOSTDOWN;
        if (r < 0) {
                r = polkit_error_to_broker(r, NULL, REVOKE_POLKIT_ACTION, c->device, c->uid, &err);
                call_finish(c, r, &err);
        }
        return 0;
}
