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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdlib.h>

#include "driver.h"
#include "log.h"
#include "worker.h"

#define VFIO_PCI_DRIVER     "vfio-pci"
#define DEFAULT_BUS_PATH    "/sys/bus/pci"
#define DRIVER_NAME_MAX     64

/* vfio-pci's remove blocks until every fd of the device is closed (it keeps
 * asking the holder through the request irq); a worker stuck past this is
 * killed by SIGALRM and reported as -ETIMEDOUT. */
#define RESTORE_TIMEOUT_USEC (60ULL * 1000 * 1000)

/* The kernel binds synchronously on a drivers_probe or bind write, except
 * when a probe is deferred and retried from a workqueue. Wait this long for
 * the driver link before calling a rebind failed. */
#define DRIVER_SETTLE_USEC  (500 * 1000)
#define DRIVER_POLL_USEC    (5 * 1000)

/* A rebind to vfio-pci that has not finished by then is given up (the
 * worker is killed) and the device given back: long enough for a GPU's or
 * NVMe's remove(), short enough that the client's own call timeout (25 s in
 * libiommufd-broker) has not expired. */
#define BIND_TIMEOUT_USEC (15ULL * 1000 * 1000)

static const char *bus_path = DEFAULT_BUS_PATH;

/* Test hooks from the daemon's environment (driver_load_test_environment()). */
static uint64_t test_rebind_delay_usec;
static uint64_t test_rebind_timeout_usec;
static uint64_t test_restore_timeout_usec;

void driver_set_bus_path_for_test(const char *path) {
        bus_path = path ?: DEFAULT_BUS_PATH;
}

/*
 * Every path a rebind touches, built up front: the restore worker runs after
 * fork() and must do nothing there but plain system calls.
 */
typedef struct DriverPaths {
        char address[16];
        char original[DRIVER_NAME_MAX];              /* driver to go back to, "" for none */
        char override[DRIVER_NAME_MAX];              /* driver_override to go back to, "" for none */
        char driver_override[PATH_MAX];
        char driver_link[PATH_MAX];     /* <syspath>/driver -> .../drivers/<name> */
        char unbind[PATH_MAX];          /* <syspath>/driver/unbind: the current driver's */
        char drivers_probe[PATH_MAX];
        char vfio_dev[PATH_MAX];        /* <syspath>/vfio-dev: vfio-pci's cdev appears in it */
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

static int driver_paths_init(DriverPaths *p, const Device *d, const char *original, const char *override) {
        char drivers_dir[PATH_MAX];
        int r = 0;

        if (!d || !d->syspath || !*d->address)
                return -EINVAL;
        if ((original && !driver_name_is_valid(original)) || (override && !driver_name_is_valid(override)))
                return -EINVAL;

        *p = (DriverPaths) {};
        snprintf(p->address, sizeof(p->address), "%s", d->address);
        snprintf(p->original, sizeof(p->original), "%s", original ?: "");
        snprintf(p->override, sizeof(p->override), "%s", override ?: "");

        r = r ?: path_join(p->driver_override, sizeof(p->driver_override), d->syspath, "driver_override");
        r = r ?: path_join(p->driver_link, sizeof(p->driver_link), d->syspath, "driver");
        r = r ?: path_join(p->unbind, sizeof(p->unbind), d->syspath, "driver/unbind");
        r = r ?: path_join(p->vfio_dev, sizeof(p->vfio_dev), d->syspath, "vfio-dev");
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

/* Poll ready(path, want) for up to DRIVER_SETTLE_USEC. */
static bool wait_until(bool (*ready)(const char *path, const char *want), const char *path, const char *want) {
        for (long waited = 0;; waited += DRIVER_POLL_USEC) {
                if (ready(path, want))
                        return true;
                if (waited >= DRIVER_SETTLE_USEC)
                        return false;
                sleep_usec(DRIVER_POLL_USEC);
        }
}

static bool driver_is(const char *driver_link, const char *want) {
        char cur[DRIVER_NAME_MAX];

        return read_driver(driver_link, cur, sizeof(cur)) >= 0 && streq(cur, want);
}

/* Wait briefly until the device is on driver `want`. 0, or -EIO if it is not. */
static int wait_for_driver(const char *driver_link, const char *want) {
        return wait_until(driver_is, driver_link, want) ? 0 : -EIO;
}

/*
 * Put the device back exactly as it was: driver_override as before us (an
 * admin's pci-stub or driverctl fence included), and on p->original, or on
 * no driver at all if it had none. Runs in the restore worker once every fd
 * is closed (so vfio-pci's unbind returns at once) and, to undo a failed
 * bind, once the bind worker is gone. Async-signal-safe.
 */
static int restore_driver(const DriverPaths *p) {
        char cur[DRIVER_NAME_MAX];
        int r;

        /* An empty write stores nothing: "\n" is what clears the override. */
        r = write_attr(p->driver_override, *p->override ? p->override : "\n");
        if (r < 0)
                return r;

        r = read_driver(p->driver_link, cur, sizeof(cur));
        if (r < 0)
                return r;
        if (streq(cur, p->original))
                return 0;
        if (*cur && !streq(cur, VFIO_PCI_DRIVER))
                return -EBUSY;  /* some other driver took the device */
        if (*cur) {
                r = write_attr(p->unbind, p->address);
                if (r < 0)
                        return r;
        }
        if (!*p->original)
                return 0;       /* it had no driver: leave it without */

        r = write_attr(p->drivers_probe, p->address);
        if (r < 0)
                return r;
        if (wait_for_driver(p->driver_link, p->original) >= 0)
                return 0;

        /* Reprobing did not pick it (e.g. another driver matches first, or
         * the original was bound by hand): bind it by name, if still free. */
        r = read_driver(p->driver_link, cur, sizeof(cur));
        if (r < 0)
                return r;
        if (*cur)
                return -EBUSY;
        r = write_attr(p->original_bind, p->address);
        if (r < 0)
                return r;
        return wait_for_driver(p->driver_link, p->original);
}

static bool has_entry_prefixed(const char *dir_path, const char *prefix) {
        DIR *dir = opendir(dir_path);
        struct dirent *de;
        bool found = false;

        while (dir && !found && (de = readdir(dir)))
                found = strncmp(de->d_name, prefix, strlen(prefix)) == 0;
        if (dir)
                closedir(dir);
        return found;
}

/* Wait until vfio-pci registered the device's cdev (<syspath>/vfio-dev/vfioN):
 * that is what the broker opens. -ENODEV if it does not appear. */
static int wait_for_cdev(const char *vfio_dev) {
        return wait_until(has_entry_prefixed, vfio_dev, "vfio") ? 0 : -ENODEV;
}

/*
 * In the bind worker. Undoes nothing itself: the daemon gives the device back
 * through the restore worker once this process is gone, whatever stopped it
 * (an error, its timeout, the client leaving, or a crash and the next start).
 */
static int bind_vfio(const DriverPaths *p) {
        char cur[DRIVER_NAME_MAX];
        int r;

        r = read_driver(p->driver_link, cur, sizeof(cur));
        if (r < 0)
                return r;
        if (!streq(cur, VFIO_PCI_DRIVER)) {
                r = write_attr(p->driver_override, VFIO_PCI_DRIVER);
                if (r < 0)
                        return r;
                /* May take seconds, or hang, in the host driver's remove(). */
                if (*cur) {
                        r = write_attr(p->unbind, p->address);
                        if (r < 0)
                                return r;
                }
                if (test_rebind_delay_usec > 0)
                        sleep_usec((long) test_rebind_delay_usec);
                r = write_attr(p->drivers_probe, p->address);
                if (r < 0)
                        return r;
                r = wait_for_driver(p->driver_link, VFIO_PCI_DRIVER);
                if (r < 0)
                        return r;
        }
        return wait_for_cdev(p->vfio_dev);
}

static int bind_worker(void *arg, int out_fd) {
        return bind_vfio(arg);
}

int driver_bind_vfio_async(sd_event *event, const Device *d, WorkerDone done, void *userdata, Worker **ret) {
        DriverPaths p;
        int r;

        if (!event)
                return -EINVAL;
        r = driver_paths_init(&p, d, NULL, NULL);
        if (r < 0)
                return r;
        /* p is copied into the child by fork(), before worker_start() returns. */
        return worker_start(event, p.address, test_rebind_timeout_usec ?: BIND_TIMEOUT_USEC, bind_worker, &p, done,
                            userdata, ret);
}

uint64_t driver_bind_timeout_usec(void) {
        return test_rebind_timeout_usec ?: BIND_TIMEOUT_USEC;
}

static uint64_t env_msec_to_usec(const char *name) {
        const char *v = getenv(name);
        char *end = NULL;
        unsigned long long ms;

        if (!v || !*v)
                return 0;
        errno = 0;
        ms = strtoull(v, &end, 10);
        if (errno != 0 || *end || ms > 3600ULL * 1000) {
                log_warning("Ignoring %s=%s: not a number of milliseconds up to an hour", name, v);
                return 0;
        }
        return ms * 1000;
}

void driver_load_test_environment(void) {
        test_rebind_delay_usec = env_msec_to_usec("IOMMUFD_BROKER_TEST_REBIND_DELAY_MS");
        test_rebind_timeout_usec = env_msec_to_usec("IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS");
        test_restore_timeout_usec = env_msec_to_usec("IOMMUFD_BROKER_TEST_RESTORE_TIMEOUT_MS");
        if (test_restore_timeout_usec > 0)
                log_notice("Test hook: restoring a driver times out after %" PRIu64 " ms",
                           test_restore_timeout_usec / 1000);
        if (test_rebind_delay_usec > 0 || test_rebind_timeout_usec > 0)
                log_notice("Test hooks: managed rebinds wait %" PRIu64 " ms between unbind and probe, time out "
                           "after %" PRIu64 " ms", test_rebind_delay_usec / 1000,
                           driver_bind_timeout_usec() / 1000);
}

/* --- Restore worker --- */

uint64_t driver_restore_timeout_usec(void) {
        return test_restore_timeout_usec ?: RESTORE_TIMEOUT_USEC;
}

typedef struct RestoreJob {
        DriverPaths paths;
        DriverRestoreDone done;
        void *userdata;
        sd_event *event;
        bool timed_out;                 /* done() is held back until the worker is gone */
} RestoreJob;

static int restore_worker(void *arg, int out_fd) {
        return restore_driver(&((RestoreJob *) arg)->paths);
}

static int restore_start(RestoreJob *job);

static void on_restore_done(int result, const char *output, void *userdata) {
        RestoreJob *job = userdata;

        /* Killed in vfio-pci's unbind, which waits until the device's last fd
         * is closed (somewhere the broker could not see): the kernel finishes
         * that unbind when it is, and nobody would then probe the original
         * driver. So the restore is not over: it starts again once the worker
         * is gone, i.e. once the unbind returned (on_restore_gone()). */
        if (result == -ETIMEDOUT) {
                job->timed_out = true;
                log_warning("%s: vfio-pci's unbind waits until the device's last fd is closed somewhere; "
                            "%s comes back then", job->paths.address,
                            *job->paths.original ? job->paths.original : "no driver");
                return;
        }
        if (result < 0)
                log_warning_errno(result, "%s: restoring driver %s failed: %m", job->paths.address,
                                  *job->paths.original ? job->paths.original : "(none)");
        else
                log_info("%s: driver restored to %s%s%s", job->paths.address,
                         *job->paths.original ? job->paths.original : "no driver",
                         *job->paths.override ? ", driver_override " : "", job->paths.override);
        if (job->done)
                job->done(job->paths.address, result, job->userdata);
}

/* Always last: the job goes with its worker. */
static void on_restore_gone(bool exited, void *userdata) {
        _cleanup_free_ RestoreJob *job = userdata;
        int r;

        /* At shutdown the record says "restoring": the next start goes on. */
        if (!job->timed_out || !exited)
                return;
        log_info("%s: the stuck worker is gone; restoring %s again", job->paths.address,
                 *job->paths.original ? job->paths.original : "no driver");
        job->timed_out = false;
        r = restore_start(job);
        if (r >= 0) {
                TAKE_PTR(job);
                return;
        }
        log_warning_errno(r, "%s: restoring driver %s failed: %m", job->paths.address,
                          *job->paths.original ? job->paths.original : "(none)");
        if (job->done)
                job->done(job->paths.address, r, job->userdata);
}

static int restore_start(RestoreJob *job) {
        Worker *w = NULL;
        int r;

        r = worker_start(job->event, job->paths.address, driver_restore_timeout_usec(), restore_worker, job,
                         on_restore_done, job, &w);
        if (r < 0)
                return r;
        worker_set_gone(w, on_restore_gone);
        log_debug("%s: restoring driver in a worker", job->paths.address);
        return 0;
}

int driver_restore_async(sd_event *event, const Device *d, const char *original_driver,
                         const char *original_override, DriverRestoreDone done, void *userdata) {
        _cleanup_free_ RestoreJob *job = NULL;
        int r;

        if (!event)
                return -EINVAL;
        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        r = driver_paths_init(&job->paths, d, original_driver, original_override);
        if (r < 0)
                return r;
        job->done = done;
        job->userdata = userdata;
        job->event = event;
        r = restore_start(job);
        if (r < 0)
                return r;
        TAKE_PTR(job);
        return 0;
}

static int read_attr_line(const char *path, char *buf, size_t size) {
        ssize_t n;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

int driver_read_override(const Device *d, char **ret) {
        char path[PATH_MAX], buf[DRIVER_NAME_MAX + 2];
        int r;

        *ret = NULL;
        if (!d || !d->syspath)
                return -EINVAL;
        r = path_join(path, sizeof(path), d->syspath, "driver_override");
        if (r < 0)
                return r;
        r = read_attr_line(path, buf, sizeof(buf));
        if (r == -ENOENT)
                return 0;       /* very old kernel, or a fake tree without it */
        if (r < 0)
                return r;
        if (!*buf || streq(buf, "(null)"))
                return 0;
        if (!driver_name_is_valid(buf))
                return -EINVAL;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int driver_sriov_numvfs(const Device *d) {
        char path[PATH_MAX], buf[32];
        int r;

        if (!d || !d->syspath)
                return -EINVAL;
        r = path_join(path, sizeof(path), d->syspath, "sriov_numvfs");
        if (r < 0)
                return r;
        r = read_attr_line(path, buf, sizeof(buf));
        if (r == -ENOENT)
                return 0;       /* not an SR-IOV PF */
        if (r < 0)
                return r;
        return atoi(buf);
}
