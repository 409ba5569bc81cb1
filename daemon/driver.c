/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Rebinding a PCI device through sysfs:
 *
 *   to vfio-pci:  driver_override=vfio-pci, unbind from the current driver,
 *                 drivers_probe (the override makes vfio-pci the only match);
 *   back:         clear driver_override, unbind from vfio-pci, drivers_probe,
 *                 and if that did not pick the original driver, bind it
 *                 explicitly through drivers/<drv>/bind.
 *
 * Per-device files derive from d->syspath and bus-wide files from bus_path,
 * so the unit test can run all of it on a fake sysfs tree.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "log.h"

#define VFIO_PCI_DRIVER     "vfio-pci"
#define DEFAULT_BUS_PATH    "/sys/bus/pci"
#define DRIVER_NAME_MAX     64

/* vfio-pci's remove blocks until every fd of the device is closed (it keeps
 * asking the holder through the request irq); a worker stuck past this is
 * killed by SIGALRM and reported as -ETIMEDOUT. */
#define RESTORE_TIMEOUT_SEC 60

/* The kernel binds synchronously on a drivers_probe or bind write, except
 * when a probe is deferred and retried from a workqueue. Wait this long for
 * the driver link before calling a rebind failed. */
#define DRIVER_SETTLE_USEC  (500 * 1000)
#define DRIVER_POLL_USEC    (5 * 1000)

static const char *bus_path = DEFAULT_BUS_PATH;

void driver_set_bus_path_for_test(const char *path) {
        bus_path = path ?: DEFAULT_BUS_PATH;
}

/*
 * Every path a rebind touches, built up front: the restore worker runs after
 * fork() and must do nothing there but plain system calls.
 */
typedef struct DriverPaths {
        char address[16];
        char original[DRIVER_NAME_MAX];              /* driver to go back to, "" if any will do */
        char driver_override[PATH_MAX];
        char driver_link[PATH_MAX];     /* <syspath>/driver -> .../drivers/<name> */
        char unbind[PATH_MAX];          /* <syspath>/driver/unbind: the current driver's */
        char drivers_probe[PATH_MAX];
        char original_bind[PATH_MAX];   /* <bus>/drivers/<original>/bind, "" if none */
} DriverPaths;

static bool driver_name_is_valid(const char *name) {
        return name && *name && strlen(name) < DRIVER_NAME_MAX && !strchr(name, '/') &&
               !streq(name, ".") && !streq(name, "..");
}

static int path_join(char *buf, size_t size, const char *a, const char *b) {
        if ((size_t) snprintf(buf, size, "%s/%s", a, b) >= size)
                return -ENAMETOOLONG;
        return 0;
}

static int driver_paths_init(DriverPaths *p, const Device *d, const char *original) {
        char drivers_dir[PATH_MAX];
        int r = 0;

        if (!d || !d->syspath || !*d->address)
                return -EINVAL;
        if (original && !driver_name_is_valid(original))
                return -EINVAL;

        *p = (DriverPaths) {};
        snprintf(p->address, sizeof(p->address), "%s", d->address);
        snprintf(p->original, sizeof(p->original), "%s", original ?: "");

        r = r ?: path_join(p->driver_override, sizeof(p->driver_override), d->syspath, "driver_override");
        r = r ?: path_join(p->driver_link, sizeof(p->driver_link), d->syspath, "driver");
        r = r ?: path_join(p->unbind, sizeof(p->unbind), d->syspath, "driver/unbind");
        r = r ?: path_join(p->drivers_probe, sizeof(p->drivers_probe), bus_path, "drivers_probe");
        if (r >= 0 && original) {
                r = path_join(drivers_dir, sizeof(drivers_dir), bus_path, "drivers");
                if (r >= 0 && (size_t) snprintf(p->original_bind, sizeof(p->original_bind), "%s/%s/bind",
                                                drivers_dir, original) >= sizeof(p->original_bind))
                        r = -ENAMETOOLONG;
        }
        return r;
}

/* One write() per value: sysfs takes a store in a single call. Async-signal-safe. */
static int write_attr(const char *path, const char *value) {
        size_t len = strlen(value);
        ssize_t n;
        int fd, r = 0;

        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_TRUNC);
        if (fd < 0)
                return -errno;
        n = write(fd, value, len);
        if (n < 0)
                r = -errno;
        else if ((size_t) n != len)
                r = -EIO;
        close(fd);
        return r;
}

/* Name of the bound driver into buf ("" if none). Async-signal-safe. */
static int read_driver(const char *driver_link, char *buf, size_t size) {
        char target[PATH_MAX];
        const char *name;
        ssize_t n;

        n = readlink(driver_link, target, sizeof(target) - 1);
        if (n < 0) {
                if (errno != ENOENT)
                        return -errno;
                n = 0;
        }
        target[n] = 0;
        name = strrchr(target, '/');
        name = name ? name + 1 : target;
        if (strlen(name) >= size)
                return -ENAMETOOLONG;
        memcpy(buf, name, strlen(name) + 1);
        return 0;
}

static void sleep_usec(long usec) {
        struct timespec ts = { .tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Wait briefly until the device is on driver `want`. 0, or -EIO if it is not. */
static int wait_for_driver(const char *driver_link, const char *want) {
        char cur[DRIVER_NAME_MAX];

        for (long waited = 0;; waited += DRIVER_POLL_USEC) {
                if (read_driver(driver_link, cur, sizeof(cur)) >= 0 && streq(cur, want))
                        return 0;
                if (waited >= DRIVER_SETTLE_USEC)
                        return -EIO;
                sleep_usec(DRIVER_POLL_USEC);
        }
}

/*
 * Give the device back to p->original (or to whatever the kernel picks).
 * Runs in the restore worker and, to undo a failed bind, in the daemon.
 * Async-signal-safe.
 */
static int restore_driver(const DriverPaths *p) {
        char cur[DRIVER_NAME_MAX];
        int r;

        /* An empty write stores nothing: "\n" is what clears the override. */
        r = write_attr(p->driver_override, "\n");
        if (r < 0)
                return r;

        r = read_driver(p->driver_link, cur, sizeof(cur));
        if (r < 0)
                return r;
        if (*p->original && streq(cur, p->original))
                return 0;
        if (streq(cur, VFIO_PCI_DRIVER)) {
                /* Blocks until every fd of the device is closed. */
                r = write_attr(p->unbind, p->address);
                if (r < 0)
                        return r;
        }

        r = write_attr(p->drivers_probe, p->address);
        if (r < 0)
                return r;
        if (!*p->original)
                return 0;       /* whatever the kernel picked, if anything */
        if (wait_for_driver(p->driver_link, p->original) >= 0)
                return 0;

        /* Reprobing did not pick it (e.g. another driver matches first, or
         * the original was bound by hand): bind it by name, if still free. */
        r = read_driver(p->driver_link, cur, sizeof(cur));
        if (r < 0)
                return r;
        if (*cur)
                return -EBUSY;  /* some other driver took the device */
        r = write_attr(p->original_bind, p->address);
        if (r < 0)
                return r;
        return wait_for_driver(p->driver_link, p->original);
}

int driver_bind_vfio(const Device *d) {
        DriverPaths p;
        char cur[DRIVER_NAME_MAX];
        int r, q;

        r = driver_paths_init(&p, d, NULL);
        if (r < 0)
                return r;
        r = read_driver(p.driver_link, cur, sizeof(cur));
        if (r < 0)
                return log_debug_errno(r, "%s: reading driver link: %m", p.address);
        if (streq(cur, VFIO_PCI_DRIVER))
                return 0;
        /* Undo goes back to the driver the device had, or to none. */
        if (*cur && driver_paths_init(&p, d, cur) < 0)
                return -EINVAL;

        r = write_attr(p.driver_override, VFIO_PCI_DRIVER);
        if (r < 0)
                return log_debug_errno(r, "%s: writing driver_override: %m", p.address);

        if (*cur) {
                r = write_attr(p.unbind, p.address);
                if (r < 0) {
                        log_debug_errno(r, "%s: unbinding from %s: %m", p.address, cur);
                        goto undo;
                }
        }

        r = write_attr(p.drivers_probe, p.address);
        if (r < 0) {
                log_debug_errno(r, "%s: writing drivers_probe: %m", p.address);
                goto undo;
        }

        r = wait_for_driver(p.driver_link, VFIO_PCI_DRIVER);
        if (r < 0) {
                log_warning("%s: not on %s after probing (module not loaded?)", p.address, VFIO_PCI_DRIVER);
                goto undo;
        }

        log_info("%s: bound to %s (was %s)", p.address, VFIO_PCI_DRIVER, *cur ? cur : "no driver");
        return 0;

undo:
        q = restore_driver(&p);
        if (q < 0)
                log_warning_errno(q, "%s: could not give the device back to %s: %m", p.address,
                                  *cur ? cur : "the kernel");
        return r;
}

/* --- Restore worker --- */

typedef struct RestoreWorker {
        DriverPaths paths;
        pid_t pid;
        DriverRestoreDone done;
        void *userdata;
} RestoreWorker;

static _Noreturn void restore_worker_run(const DriverPaths *p, int go_fd) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t mask;
        ssize_t n;
        char c;
        int r;

        /* The daemon blocks and handles signals for sd-event; the worker must
         * die of SIGTERM and of its own SIGALRM. */
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL);
        sigemptyset(&mask);
        (void) sigprocmask(SIG_SETMASK, &mask, NULL);

        /* Start only once the daemon watches us: a worker it could not watch
         * must not leave a device half-restored. EOF means "give up". */
        while ((n = read(go_fd, &c, 1)) < 0 && errno == EINTR)
                ;
        if (n != 1)
                _exit(ECANCELED);

        /* A device fd inherited from the daemon would make our own unbind
         * wait for ourselves: keep nothing beyond stdio. */
        (void) close_range(3, ~0U, 0);

        alarm(RESTORE_TIMEOUT_SEC);
        r = restore_driver(p);
        _exit(r < 0 ? -r : 0);
}

static int worker_result(const siginfo_t *si) {
        switch (si->si_code) {
        case CLD_EXITED:
                return -si->si_status;  /* the worker exits with 0 or an errno */
        case CLD_KILLED:
        case CLD_DUMPED:
                return si->si_status == SIGALRM ? -ETIMEDOUT : -EINTR;
        default:
                return -EIO;
        }
}

static void restore_worker_free(void *userdata) {
        free(userdata);
}

static int on_worker_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RestoreWorker *w = userdata;
        DriverRestoreDone done = w->done;
        void *done_userdata = w->userdata;
        char address[sizeof(w->paths.address)];
        siginfo_t si = {};
        int result;

        if (waitid((idtype_t) P_PIDFD, fd, &si, WEXITED | WNOHANG) < 0)
                result = -errno;        /* ECHILD: someone else reaped it (SIGCHLD ignored?) */
        else if (si.si_pid == 0)
                return 0;               /* not exited yet */
        else
                result = worker_result(&si);

        memcpy(address, w->paths.address, sizeof(address));
        if (result < 0)
                log_warning_errno(result, "%s: restoring driver %s failed: %m", address,
                                  *w->paths.original ? w->paths.original : "(kernel's choice)");
        else
                log_info("%s: driver restored%s%s", address, *w->paths.original ? " to " : "",
                         w->paths.original);

        /* Drop the source (closing the pidfd and freeing w) before calling
         * out, so done() runs exactly once whatever it does to the loop. */
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        /* Un-floating drops the loop's reference, the only one. */
        (void) sd_event_source_set_floating(s, false);

        if (done)
                done(address, result, done_userdata);
        return 0;
}

static int pidfd_open_child(pid_t pid) {
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        return fd >= 0 ? fd : -errno;
}

/* Tell a worker that was never started to exit, and reap it. */
static void cancel_worker(pid_t pid, int *go_fd) {
        *go_fd = safe_close(*go_fd);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

int driver_restore_async(sd_event *event, const Device *d, const char *original_driver,
                         DriverRestoreDone done, void *userdata) {
        _cleanup_free_ RestoreWorker *w = NULL;
        _cleanup_close_ int pidfd = -EBADF, go_read = -EBADF, go_write = -EBADF;
        sd_event_source *s = NULL;
        int go[2];
        pid_t pid;
        int r;

        if (!event)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        r = driver_paths_init(&w->paths, d, original_driver);
        if (r < 0)
                return r;
        w->done = done;
        w->userdata = userdata;

        if (pipe2(go, O_CLOEXEC) < 0)
                return -errno;
        go_read = go[0];
        go_write = go[1];

        pid = fork();
        if (pid < 0)
                return log_error_errno(errno, "%s: fork: %m", w->paths.address);
        if (pid == 0) {
                safe_close(go_write);
                restore_worker_run(&w->paths, go_read);
        }
        w->pid = pid;
        go_read = safe_close(go_read);

        /* Nobody else reaps our children (the daemon does not ignore
         * SIGCHLD), so the pid cannot have been reused yet. */
        pidfd = pidfd_open_child(pid);
        if (pidfd < 0) {
                cancel_worker(pid, &go_write);
                return log_error_errno(pidfd, "%s: pidfd_open: %m", w->paths.address);
        }

        r = sd_event_add_io(event, &s, pidfd, EPOLLIN, on_worker_exit, w);
        if (r < 0) {
                cancel_worker(pid, &go_write);
                return log_error_errno(r, "%s: watching restore worker: %m", w->paths.address);
        }
        (void) sd_event_source_set_io_fd_own(s, true);
        TAKE_FD(pidfd);
        (void) sd_event_source_set_description(s, "driver-restore");
        /* The loop owns the source from now on; freeing the loop frees w. */
        (void) sd_event_source_set_destroy_callback(s, restore_worker_free);
        TAKE_PTR(w);
        (void) sd_event_source_set_floating(s, true);
        sd_event_source_unref(s);

        if (write(go_write, "x", 1) != 1)
                /* Cannot happen with the read end open in the worker; if it
                 * did, the worker exits ECANCELED and done() says so. */
                log_warning_errno(errno, "%s: starting restore worker: %m", d->address);
        log_debug("%s: restoring driver in worker %d", d->address, (int) pid);
        return 0;
}
