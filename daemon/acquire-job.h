/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "polkit.h"
#include "session.h"

/*
 * One Acquire as both front ends run it: when the policy rules that decide
 * name polkit actions this caller was not yet granted, ask polkit for each
 * (asynchronously, one at a time), then run session_acquire() with the
 * actions polkit allowed. The front end keeps its call pending meanwhile.
 * Policy is looked at again after every answer, so a reload in between is
 * honoured. Then, for a managed Acquire, every device not on vfio-pci yet
 * is rebound in a worker (rebind.h), shown busy meanwhile; a failure or
 * timeout, or the client leaving, gives them back to their drivers. With
 * nothing to ask or rebind, the job finishes at once.
 *
 * done gets the result exactly once (r < 0: err says why; else reply holds
 * fds the callee sends and then frees with acquire_reply_done()), unless the
 * front end cancels first because its client went away. The job frees
 * itself after done returns.
 */
typedef struct AcquireJob AcquireJob;

typedef void (*AcquireJobDone)(int r, AcquireReply *reply, BrokerError *err, void *userdata);

/* Returns 1 if done was already called (*ret is set to NULL before, and not
 * touched after: done may free it), 0 if the job is pending (*ret set;
 * the caller must drop its pointer in done or acquire_job_cancel() it), or a
 * negative errno if it could not start (done not called). polkit may be
 * NULL: then a rule that needs polkit fails with AuthorizationUnavailable.
 * bus_name: a D-Bus caller's unique name, which polkit is asked about
 * (system-bus-name); NULL for varlink callers (unix-process, by pidfd). */
int acquire_job_start(Manager *m, PolkitClient *polkit, Session *s, const AcquireRequest *req,
                      const char *bus_name, AcquireJobDone done, void *userdata, AcquireJob **ret);

/* The client went away: drop the polkit check, give back what was rebound,
 * call nothing. NULL is fine. */
AcquireJob *acquire_job_cancel(AcquireJob *j);
