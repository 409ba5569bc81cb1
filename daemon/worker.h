/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

/*
 * Work that may block in the kernel (driver unbind and bind, scanning /proc,
 * a test bind that resets a device) runs in a forked worker process, never
 * on the event loop. A worker has a timeout that really works: when it
 * expires the caller is told at once (-ETIMEDOUT), the worker is sent
 * SIGKILL and reaped whenever the kernel lets it go. Workers die with the
 * daemon (PR_SET_PDEATHSIG) and worker_kill_all() reaps them on shutdown,
 * so none is ever orphaned.
 */
typedef struct Worker Worker;

/* Runs in the child, after fork(), with every fd but out_fd closed and
 * default signal handling. Write results to out_fd. Returns 0 or a negative
 * errno, which becomes the worker's result. */
typedef int (*WorkerFunc)(void *arg, int out_fd);

/* On the loop, exactly once: result is fn's return, -ETIMEDOUT, or -EINTR
 * if the worker died of a signal; output what fn wrote (NUL-terminated,
 * at most 64 KiB, never NULL). */
typedef void (*WorkerDone)(int result, const char *output, void *userdata);

int worker_start(sd_event *event, const char *description, uint64_t timeout_usec, WorkerFunc fn, void *arg,
                 WorkerDone done, void *userdata, Worker **ret);

/* Called with userdata if the worker goes away without done() having run
 * (worker_kill_all() at shutdown, worker_cancel()), for a caller whose
 * done() is what frees userdata. */
void worker_set_destroy(Worker *w, void (*destroy)(void *userdata));

/* Called once when the worker goes away, after done() if that ran:
 * exited true once the process was reaped (after a timeout or cancel too,
 * so work that must not overlap the worker, like undoing its sysfs writes,
 * can start here); false at shutdown (worker_kill_all()), when nothing new
 * may start. */
typedef void (*WorkerGone)(bool exited, void *userdata);
void worker_set_gone(Worker *w, WorkerGone gone);

/* The caller no longer wants the result: done() will not run; the worker is
 * killed and reaped in the background. NULL is fine. */
void worker_cancel(Worker *w);

/* Shutdown: SIGKILL every worker and wait up to timeout_usec for each to be
 * reaped (one stuck in uninterruptible sleep cannot be). Returns how many
 * are still alive. */
unsigned worker_kill_all(uint64_t timeout_usec);

unsigned worker_count(void);
