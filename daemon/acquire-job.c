/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acquire-job.h"
#include "driver.h"
#include "log.h"
#include "rebind.h"

struct AcquireJob {
        Manager *manager;
        PolkitClient *polkit;
        Session *session;
        AcquireRequest req;             /* owns devices and polkit_authorized */
        char *bus_name;                 /* D-Bus callers: the subject polkit is asked about */
        char *asking;                   /* the action in flight */
        char asking_device[16];
        PolkitQuery *query;
        Rebind **rebinds;               /* per device of req.devices: its move to vfio-pci, or NULL */
        size_t n_rebinds;
        unsigned rebinds_running;
        AcquireJobDone done;
        void *userdata;
};

static AcquireJob *job_free(AcquireJob *j) {
        if (!j)
                return NULL;
        polkit_query_free(j->query);
        /* Whatever was not leased goes back to its driver. */
        for (size_t i = 0; i < j->n_rebinds; i++)
                rebind_give_back(j->rebinds[i]);
        free(j->rebinds);
        strv_free(j->req.devices);
        strv_free(j->req.polkit_authorized);
        free(j->bus_name);
        free(j->asking);
        free(j);
        return NULL;
}

AcquireJob *acquire_job_cancel(AcquireJob *j) {
        if (j && j->rebinds_running > 0)
                log_info("session %" PRIu64 ": client went away while its devices were rebound to vfio-pci; "
                         "giving them back", session_id(j->session));
        else if (j)
                log_debug("session %" PRIu64 ": client went away while polkit was asked about %s",
                          session_id(j->session), strna(j->asking));
        return job_free(j);
}

/* The first polkit action a device of the request needs and the caller has
 * not been granted yet, or NULL. Devices that do not resolve are left to
 * session_acquire(), which reports them. */
static const char *next_polkit_action(AcquireJob *j, const char **ret_device) {
        const Principal *who = session_principal(j->session);

        for (char **a = j->req.devices; a && *a; a++) {
                PolicyDecision decision = {};
                BrokerError ignored = {};
                Device *d;

                if (manager_get_device(j->manager, *a, &d, &ignored) < 0)
                        continue;
                policy_check(manager_policy(j->manager), who, d, j->req.mode, j->req.managed, &decision);
                if (decision.verdict == POLICY_ALLOW_WITH_POLKIT &&
                    !strv_contains(j->req.polkit_authorized, decision.polkit_action)) {
                        *ret_device = d->address;
                        return decision.polkit_action;
                }
        }
        return NULL;
}

/* Lease what the job rebound (still shown busy until now) along with the
 * rest; what is not leased is given back by job_free(). */
static int job_acquire(AcquireJob *j, AcquireReply *reply, BrokerError *err) {
        _cleanup_free_ ManagedOrigin *origins = NULL;
        size_t n = 0;
        int r;

        origins = calloc(j->n_rebinds + 1, sizeof(*origins));
        if (!origins)
                return -ENOMEM;
        for (size_t i = 0; i < j->n_rebinds; i++)
                if (j->rebinds[i]) {
                        rebind_origin(j->rebinds[i], &origins[n++]);
                        rebind_unmark(j->rebinds[i]);
                }
        j->req.rebound = origins;
        j->req.n_rebound = n;
        r = session_acquire(j->session, &j->req, reply, err);
        j->req.rebound = NULL;
        j->req.n_rebound = 0;
        if (r < 0)
                return r;
        for (size_t i = 0; i < j->n_rebinds; i++)
                j->rebinds[i] = rebind_keep(j->rebinds[i]);
        return r;
}

static void job_finish(AcquireJob *j, int r, BrokerError *err) {
        AcquireReply reply = { .iommufd = -EBADF };
        Manager *m = j->manager;
        BrokerError e = {};

        /* The caller waits for its reply; the D-Bus signals and Monitor events
         * of its lease wait for nobody, so they go out after it (on the bus
         * they would otherwise queue ahead of the reply). Its log lines too,
         * in one write (the audit entry is written at once, see design.md). */
        log_hold();
        manager_hold_events(m);
        if (r >= 0)
                r = job_acquire(j, &reply, &e);
        else
                e = *err;
        if (r < 0 && j->n_rebinds > 0)
                /* The devices go back to their drivers (job_free()): say why
                 * beside that in the log, not only to the client. */
                log_info("session %" PRIu64 ": managed Acquire failed: %s", session_id(j->session),
                         e.message[0] ? e.message : strerror(-r));
        j->done(r, r >= 0 ? &reply : NULL, &e, j->userdata);
        job_free(j);
        manager_release_events(m);
        log_release();
}

/* --- managed: rebinding to vfio-pci, in workers --- */

static int rebind_error(const Rebind *rb, int r, BrokerError *err) {
        const char *address = rebind_address(rb);
        ManagedOrigin o;

        rebind_origin(rb, &o);
        if (r == -ETIMEDOUT)
                return broker_error_set(err, BROKER_ERROR_DRIVER_BIND_FAILED, address,
                                        "%s: rebinding from %s to vfio-pci did not finish within %" PRIu64 " ms "
                                        "(the host driver's unbind or the probe hangs); the device is given back",
                                        address, o.driver ?: "no driver", driver_bind_timeout_usec() / 1000);
        return broker_error_set(err, BROKER_ERROR_DRIVER_BIND_FAILED, address,
                                "%s: rebinding from %s to vfio-pci failed: %s; the device is given back", address,
                                o.driver ?: "no driver",
                                r == -ENODEV ? "no vfio cdev appeared (vfio-pci not loaded?)" : strerror(-r));
}

static void on_rebind_done(Rebind *rb, int result, void *userdata) {
        AcquireJob *j = userdata;
        BrokerError err = {};

        j->rebinds_running--;
        if (result < 0)
                /* The others are stopped and every device given back. */
                job_finish(j, rebind_error(rb, result, &err), &err);
        else if (j->rebinds_running == 0)
                job_finish(j, 0, NULL);
}

/* After polkit: move every requested device that is not on vfio-pci yet,
 * all at once, once everything session_acquire() can check without the
 * kernel passed (no host driver is unbound for an Acquire refused anyway).
 * 1: nothing to rebind, 0: rebinds running, <0: failed (err set). */
static int job_start_rebinds(AcquireJob *j, BrokerError *err) {
        size_t n = strv_length(j->req.devices);
        int r;

        if (!j->req.managed)
                return 1;
        r = session_check_acquire(j->session, &j->req, err);
        if (r < 0)
                return r;
        j->rebinds = calloc(n, sizeof(*j->rebinds));
        if (!j->rebinds)
                return -ENOMEM;
        j->n_rebinds = n;
        for (size_t i = 0; i < n; i++) {
                Device *d;

                r = manager_get_device(j->manager, j->req.devices[i], &d, err);
                if (r < 0)
                        return r;
                if (device_is_on_vfio(d))
                        continue;
                r = rebind_start(j->manager, d, on_rebind_done, j, &j->rebinds[i]);
                if (r < 0)
                        return broker_error_set(err, BROKER_ERROR_DRIVER_BIND_FAILED, d->address,
                                                "%s: cannot start rebinding to vfio-pci: %s", d->address,
                                                strerror(-r));
                j->rebinds_running++;
        }
        return j->rebinds_running > 0 ? 0 : 1;
}

/* Go on after polkit (r: what job_step() gave, err set if r < 0): start the
 * rebinds or finish. True if the job is still pending. */
static bool job_advance(AcquireJob *j, int r, BrokerError *err) {
        if (r > 0)
                r = job_start_rebinds(j, err);
        if (r == 0)
                return true;
        job_finish(j, r > 0 ? 0 : r, err);
        return false;
}

static int polkit_error(int r, const char *message, const AcquireJob *j, BrokerError *err) {
        return polkit_error_to_broker(r, message, j->asking, j->asking_device, session_principal(j->session)->uid,
                                      err);
}

static int job_step(AcquireJob *j);

static void on_polkit_answer(PolkitQuery *q, int result, const char *message, void *userdata) {
        AcquireJob *j = userdata;
        BrokerError err = {};
        int r;

        j->query = NULL;        /* the polkit module frees it */
        if (result < 0) {
                log_info("session %" PRIu64 ": polkit: %s for %s: %s", session_id(j->session), j->asking,
                         j->asking_device, message ?: strerror(-result));
                job_finish(j, polkit_error(result, message, j, &err), &err);
                return;
        }
        r = strv_extend(&j->req.polkit_authorized, j->asking);
        if (r >= 0)
                r = job_step(j);
        if (r < 0 && r != -ENOMEM)
                r = polkit_error(r, NULL, j, &err);
        if (r != 0)
                (void) job_advance(j, r, &err);
}

/* 1: nothing (more) to ask, 0: a check is in flight, <0: failed (err unset). */
static int job_step(AcquireJob *j) {
        const char *device = NULL, *action = next_polkit_action(j, &device);

        if (!action)
                return 1;
        if (free_and_strdup(&j->asking, action) < 0)
                return -ENOMEM;
        snprintf(j->asking_device, sizeof(j->asking_device), "%s", device);
        if (!j->polkit)
                return -EHOSTDOWN;
        return polkit_check_async(j->polkit, session_principal(j->session), j->bus_name, action,
                                  j->req.allow_interactive, on_polkit_answer, j, &j->query);
}

static int job_new(Manager *m, PolkitClient *polkit, Session *s, const AcquireRequest *req, const char *bus_name,
                   AcquireJobDone done, void *userdata, AcquireJob **ret) {
        AcquireJob *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        *j = (AcquireJob) {
                .manager = m, .polkit = polkit, .session = s, .req = *req, .done = done, .userdata = userdata,
        };
        j->req.devices = NULL;
        j->req.polkit_authorized = NULL;
        if (bus_name && !(j->bus_name = strdup(bus_name)))
                return job_free(j), -ENOMEM;
        for (char *const *a = req->devices; a && *a; a++)
                if (strv_extend(&j->req.devices, *a) < 0)
                        return job_free(j), -ENOMEM;
        for (char *const *a = req->polkit_authorized; a && *a; a++)
                if (strv_extend(&j->req.polkit_authorized, *a) < 0)
                        return job_free(j), -ENOMEM;
        *ret = j;
        return 0;
}

int acquire_job_start(Manager *m, PolkitClient *polkit, Session *s, const AcquireRequest *req,
                      const char *bus_name, AcquireJobDone done, void *userdata, AcquireJob **ret) {
        BrokerError err = {};
        AcquireJob *j;
        int r;

        /* Set first: done may free the memory ret points into. */
        *ret = NULL;
        r = job_new(m, polkit, s, req, bus_name, done, userdata, &j);
        if (r < 0)
                return r;
        r = job_step(j);
        if (r < 0 && r != -ENOMEM)
                r = polkit_error(r, NULL, j, &err);
        if (r == 0 || job_advance(j, r, &err)) {
                *ret = j;
                return 0;
        }
        return 1;
}
