/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>

#include "acquire-job.h"
#include "log.h"

struct AcquireJob {
        Manager *manager;
        PolkitClient *polkit;
        Session *session;
        AcquireRequest req;             /* owns devices and polkit_authorized */
        char *bus_name;                 /* D-Bus callers: the subject polkit is asked about */
        char *asking;                   /* the action in flight */
        char asking_device[16];
        PolkitQuery *query;
        AcquireJobDone done;
        void *userdata;
};

static AcquireJob *job_free(AcquireJob *j) {
        if (!j)
                return NULL;
        polkit_query_free(j->query);
        strv_free(j->req.devices);
        strv_free(j->req.polkit_authorized);
        free(j->bus_name);
        free(j->asking);
        free(j);
        return NULL;
}

AcquireJob *acquire_job_cancel(AcquireJob *j) {
        if (j)
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

static void job_finish(AcquireJob *j, int r, BrokerError *err) {
        AcquireReply reply = { .iommufd = -EBADF };
        BrokerError e = {};

        if (r >= 0)
                r = session_acquire(j->session, &j->req, &reply, &e);
        else
                e = *err;
        j->done(r, r >= 0 ? &reply : NULL, &e, j->userdata);
        job_free(j);
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
        if (r < 0)
                job_finish(j, r, &err);
        else if (r > 0)
                job_finish(j, 0, NULL);
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
        if (r == 0) {
                *ret = j;
                return 0;
        }
        if (r < 0 && r != -ENOMEM)
                r = polkit_error(r, NULL, j, &err);
        job_finish(j, r > 0 ? 0 : r, &err);
        return 1;
}
