/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include <stdbool.h>

#include "worker.h"

#define WORKER_OUTPUT_MAX (64 * 1024)

struct Worker {
        char description[64];
        pid_t pid;
        int pidfd;
        int out_fd;                     /* memfd the worker writes to */
        sd_event_source *exit_source;
        sd_event_source *timer_source;
        WorkerDone done;                /* NULL once reported or cancelled */
        void *userdata;
        void (*destroy)(void *userdata);        /* if done() never ran */
        WorkerGone gone;
        bool exited;                    /* reaped by on_worker_exit() */
        bool reported;
        Worker *next;
};

/* Every live worker, for worker_kill_all(). The daemon is single-threaded. */
static Worker *workers;

unsigned worker_count(void) {
        unsigned n = 0;

        for (Worker *w = workers; w; w = w->next)
                n++;
        return n;
}

static void worker_unlink(Worker *w) {
        for (Worker **p = &workers; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        return;
                }
}

static void worker_free(Worker *w) {
        if (!w)
                return;
        if (w->gone)
                w->gone(w->exited, w->userdata);
        if (!w->reported && w->destroy)
                w->destroy(w->userdata);
        worker_unlink(w);
        sd_event_source_disable_unref(w->exit_source);
        sd_event_source_disable_unref(w->timer_source);
        safe_close(w->pidfd);
        safe_close(w->out_fd);
        free(w);
}

static int pidfd_signal(int pidfd, int sig) {
        return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

static char *read_output(int fd) {
        char *buf = calloc(1, WORKER_OUTPUT_MAX + 1);
        ssize_t n;

        if (!buf)
                return NULL;
        n = pread(fd, buf, WORKER_OUTPUT_MAX, 0);
        buf[n > 0 ? n : 0] = 0;
        return buf;
}

static void worker_report(Worker *w, int result) {
        WorkerDone done = w->done;
        _cleanup_free_ char *output = NULL;

        if (!done)
                return;
        w->done = NULL;
        w->reported = true;
        output = read_output(w->out_fd);
        done(result, output ?: "", w->userdata);
}

static int exit_result(const siginfo_t *si) {
        if (si->si_code == CLD_EXITED)
                return -si->si_status;  /* the worker exits with 0 or an errno */
        return -EINTR;
}

static int on_worker_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        siginfo_t si = {};
        int result;

        if (waitid((idtype_t) P_PIDFD, fd, &si, WEXITED | WNOHANG) < 0)
                result = -errno;
        else if (si.si_pid == 0)
                return 0;               /* not exited yet */
        else
                result = exit_result(&si);

        /* Unlink before calling out: done() may start new workers. */
        worker_unlink(w);
        w->next = NULL;
        w->exited = true;
        worker_report(w, result);
        worker_free(w);
        return 0;
}

static int on_worker_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;

        log_warning("%s: worker %d timed out, killing it", w->description, (int) w->pid);
        (void) pidfd_signal(w->pidfd, SIGKILL);
        /* The caller gets control back now; the worker is reaped whenever the
         * kernel lets it die (it may sit in uninterruptible sleep). */
        worker_report(w, -ETIMEDOUT);
        return 0;
}

static _Noreturn void worker_child(WorkerFunc fn, void *arg, int out_fd, int go_fd) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t mask;
        ssize_t n;
        char c;
        int r;

        log_forget_held();
        /* The daemon blocks signals for sd-event; the worker must die of them. */
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL);
        sigemptyset(&mask);
        (void) sigprocmask(SIG_SETMASK, &mask, NULL);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
                _exit(ECANCELED);

        /* Start only once the daemon watches us. EOF means "give up". */
        while ((n = read(go_fd, &c, 1)) < 0 && errno == EINTR)
                ;
        if (n != 1)
                _exit(ECANCELED);

        /* Keep nothing of the daemon's: an inherited device fd would make a
         * vfio unbind wait for ourselves, and a scan would find us. */
        if (dup2(out_fd, 3) < 0)
                _exit(EBADF);
        (void) close_range(4, ~0U, 0);

        r = fn(arg, 3);
        _exit(r < 0 ? (-r & 0xff) : 0);
}

static void cancel_unstarted(pid_t pid, int *go_fd) {
        *go_fd = safe_close(*go_fd);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

int worker_start(sd_event *event, const char *description, uint64_t timeout_usec, WorkerFunc fn, void *arg,
                 WorkerDone done, void *userdata, Worker **ret) {
        _cleanup_close_ int go_read = -EBADF, go_write = -EBADF;
        Worker *w;
        int go[2], r;
        pid_t pid;

        if (!event || !fn)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (Worker) { .pidfd = -EBADF, .done = done, .userdata = userdata };
        snprintf(w->description, sizeof(w->description), "%s", description ?: "worker");

        w->out_fd = memfd_create("iommufd-broker-worker", MFD_CLOEXEC);
        if (w->out_fd < 0) {
                r = -errno;
                goto fail;
        }
        if (pipe2(go, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        go_read = go[0];
        go_write = go[1];

        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto fail;
        }
        if (pid == 0)
                worker_child(fn, arg, w->out_fd, go_read);
        w->pid = pid;

        /* Nobody else reaps our children, so the pid is still ours. */
        w->pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (w->pidfd < 0) {
                r = -errno;
                cancel_unstarted(pid, &go_write);
                goto fail;
        }
        r = sd_event_add_io(event, &w->exit_source, w->pidfd, EPOLLIN, on_worker_exit, w);
        if (r >= 0 && timeout_usec > 0)
                r = sd_event_add_time_relative(event, &w->timer_source, CLOCK_MONOTONIC, timeout_usec, 0,
                                               on_worker_timeout, w);
        if (r < 0) {
                cancel_unstarted(pid, &go_write);
                goto fail;
        }
        (void) sd_event_source_set_description(w->exit_source, w->description);

        if (write(go_write, "x", 1) != 1)
                log_warning_errno(errno, "%s: starting worker: %m", w->description);
        w->next = workers;
        workers = w;
        log_debug("%s: worker %d started", w->description, (int) pid);
        if (ret)
                *ret = w;
        return 0;

fail:
        worker_free(w);
        return log_error_errno(r, "%s: cannot start a worker: %m", description ?: "worker");
}

void worker_set_destroy(Worker *w, void (*destroy)(void *userdata)) {
        if (w)
                w->destroy = destroy;
}

void worker_set_gone(Worker *w, WorkerGone gone) {
        if (w)
                w->gone = gone;
}

void worker_cancel(Worker *w) {
        if (!w)
                return;
        w->done = NULL;
        w->timer_source = sd_event_source_disable_unref(w->timer_source);
        (void) pidfd_signal(w->pidfd, SIGKILL);
}

static bool wait_reaped(Worker *w, uint64_t timeout_usec) {
        struct pollfd p = { .fd = w->pidfd, .events = POLLIN };
        int ms = (int) (timeout_usec / 1000);

        if (poll(&p, 1, ms) <= 0)
                return false;
        return waitid((idtype_t) P_PIDFD, w->pidfd, &(siginfo_t) {}, WEXITED) >= 0;
}

unsigned worker_kill_all(uint64_t timeout_usec) {
        unsigned stuck = 0;

        for (Worker *w = workers; w; w = w->next)
                (void) pidfd_signal(w->pidfd, SIGKILL);
        while (workers) {
                Worker *w = workers;

                if (!wait_reaped(w, timeout_usec)) {
                        log_warning("%s: worker %d is stuck in the kernel and cannot be reaped",
                                    w->description, (int) w->pid);
                        stuck++;
                }
                w->done = NULL;
                worker_free(w);
        }
        return stuck;
}
