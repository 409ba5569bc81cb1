/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * driver.c on a fake sysfs tree in a temp dir:
 *
 *   dev/0000:03:00.0/driver_override    regular file
 *   dev/0000:03:00.0/driver             symlink to bus/drivers/<name>
 *   bus/drivers_probe                   FIFO
 *   bus/drivers/{e1000e,vfio-pci}/unbind, bus/drivers/e1000e/bind   FIFOs
 *
 * A reactor thread plays the kernel: it reads what lands in the FIFOs and
 * moves the driver link as sysfs would (drivers_probe honours
 * driver_override, else picks the "default" driver). Unbinds are handled
 * before probes seen in the same wakeup, as the kernel's writes are
 * synchronous.
 */
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <time.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdlib.h>

#include "driver.h"
#include "test.h"
#include "worker.h"

#define ADDRESS "0000:03:00.0"

#define CHECK_INT_WHAT(a, b, what) do { long _a = (a), _b = (b); CHECK_MSG(_a == _b, "%s: %ld == %ld", what, _a, _b); } while (0)
#define CHECK_STR_WHAT(a, b, what) do { const char *_a = (a), *_b = (b); \
                CHECK_MSG(streq(_a, _b), "%s: \"%s\" == \"%s\"", what, _a, _b); } while (0)

/* In priority order: what the reactor handles first within one wakeup. */
typedef enum FifoId {
        FIFO_UNBIND_E1000E,
        FIFO_UNBIND_VFIO,
        FIFO_PROBE,
        FIFO_BIND_E1000E,
        _FIFO_MAX,
} FifoId;

static const char *const fifo_path[_FIFO_MAX] = {
        [FIFO_UNBIND_E1000E] = "bus/drivers/e1000e/unbind",
        [FIFO_UNBIND_VFIO] = "bus/drivers/vfio-pci/unbind",
        [FIFO_PROBE] = "bus/drivers_probe",
        [FIFO_BIND_E1000E] = "bus/drivers/e1000e/bind",
};

typedef struct FakeSysfs {
        char root[64];
        pthread_mutex_t lock;
        /* kernel behaviour */
        char default_driver[32];        /* what a probe without override picks, "" none */
        bool vfio_loaded;               /* whether an override to vfio-pci binds */
        /* what was written */
        unsigned count[_FIFO_MAX];
        char last[_FIFO_MAX][64];
        int quit[2];
} FakeSysfs;

static FakeSysfs fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void fake_path(char *buf, size_t size, const char *rel) {
        snprintf(buf, size, "%s/%s", fake.root, rel);
}

static void read_file(const char *rel, char *buf, size_t size) {
        char path[256];
        ssize_t n;
        int fd;

        fake_path(path, sizeof(path), rel);
        buf[0] = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, buf, size - 1);
        buf[n > 0 ? n : 0] = 0;
        close(fd);
}

static void current_driver(char *buf, size_t size) {
        char path[256], target[256];
        ssize_t n;

        fake_path(path, sizeof(path), "dev/" ADDRESS "/driver");
        n = readlink(path, target, sizeof(target) - 1);
        const char *name;

        target[n > 0 ? n : 0] = 0;
        name = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
        n = (ssize_t) strlen(name) < (ssize_t) size ? (ssize_t) strlen(name) : (ssize_t) size - 1;
        memcpy(buf, name, n);
        buf[n] = 0;
}

/* The driver link, and vfio-pci's cdev directory while on vfio-pci. */
static void set_driver(const char *name) {
        char path[256], target[256], cdev[256], vfio_dev[256];

        fake_path(path, sizeof(path), "dev/" ADDRESS "/driver");
        fake_path(vfio_dev, sizeof(vfio_dev), "dev/" ADDRESS "/vfio-dev");
        fake_path(cdev, sizeof(cdev), "dev/" ADDRESS "/vfio-dev/vfio0");
        (void) unlink(path);
        (void) rmdir(cdev);
        (void) rmdir(vfio_dev);
        if (!name || !*name)
                return;
        snprintf(target, sizeof(target), "%s/bus/drivers/%s", fake.root, name);
        if (symlink(target, path) < 0)
                perror("symlink");
        if (streq(name, "vfio-pci") && (mkdir(vfio_dev, 0755) < 0 || mkdir(cdev, 0755) < 0))
                perror("mkdir vfio-dev");
}

static void write_override(const char *value) {
        char path[256];
        FILE *f;

        fake_path(path, sizeof(path), "dev/" ADDRESS "/driver_override");
        f = fopen(path, "we");
        if (f) {
                fputs(value, f);
                fclose(f);
        }
}

/* The kernel's side of one write to a FIFO. Called with fake.lock held. */
static void fake_handle(FifoId id, const char *msg) {
        char cur[32], override[64];

        fake.count[id]++;
        /* Cut to fit, said so for gcc's sanitizer build. */
        snprintf(fake.last[id], sizeof(fake.last[id]), "%.*s", (int) sizeof(fake.last[id]) - 1, msg);
        if (!streq(msg, ADDRESS))
                return;         /* sysfs would say ENODEV; the checks will notice */
        current_driver(cur, sizeof(cur));

        switch (id) {
        case FIFO_UNBIND_E1000E:
                if (streq(cur, "e1000e"))
                        set_driver(NULL);
                break;
        case FIFO_UNBIND_VFIO:
                if (streq(cur, "vfio-pci"))
                        set_driver(NULL);
                break;
        case FIFO_PROBE:
                if (*cur)
                        break;
                read_file("dev/" ADDRESS "/driver_override", override, sizeof(override));
                override[strcspn(override, "\n")] = 0;
                if (*override) {
                        if (streq(override, "vfio-pci") && fake.vfio_loaded)
                                set_driver("vfio-pci");
                } else
                        set_driver(fake.default_driver);
                break;
        case FIFO_BIND_E1000E:
                if (!*cur)
                        set_driver("e1000e");
                break;
        default:
                break;
        }
}

static int fifo_open(FifoId id) {
        char path[256];

        fake_path(path, sizeof(path), fifo_path[id]);
        return open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
}

static void fifo_drain(FifoId id, int fd) {
        char buf[128];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
                buf[n] = 0;
                pthread_mutex_lock(&fake.lock);
                fake_handle(id, buf);
                pthread_mutex_unlock(&fake.lock);
        }
}

static void *reactor(void *arg) {
        struct pollfd pfd[_FIFO_MAX + 1];

        for (int i = 0; i < _FIFO_MAX; i++)
                pfd[i] = (struct pollfd) { .fd = fifo_open(i), .events = POLLIN };
        pfd[_FIFO_MAX] = (struct pollfd) { .fd = fake.quit[0], .events = POLLIN };

        for (;;) {
                if (poll(pfd, _FIFO_MAX + 1, -1) < 0)
                        continue;
                if (pfd[_FIFO_MAX].revents)
                        break;
                for (int i = 0; i < _FIFO_MAX; i++) {
                        if (!pfd[i].revents)
                                continue;
                        fifo_drain(i, pfd[i].fd);
                        if (pfd[i].revents & POLLHUP) {
                                /* The writer is gone: a fresh reader clears the
                                 * hangup; opening it first keeps the pipe alive. */
                                int fd = fifo_open(i);
                                fifo_drain(i, pfd[i].fd);
                                close(pfd[i].fd);
                                pfd[i].fd = fd;
                        }
                }
        }
        for (int i = 0; i <= _FIFO_MAX; i++)
                close(pfd[i].fd);
        return NULL;
}

static int make_tree(void) {
        static const char *const dirs[] = { "dev", "dev/" ADDRESS, "bus", "bus/drivers",
                                            "bus/drivers/e1000e", "bus/drivers/vfio-pci" };
        char path[256];

        snprintf(fake.root, sizeof(fake.root), "/tmp/test-driver-XXXXXX");
        if (!mkdtemp(fake.root))
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                fake_path(path, sizeof(path), dirs[i]);
                if (mkdir(path, 0755) < 0)
                        return -errno;
        }
        for (int i = 0; i < _FIFO_MAX; i++) {
                fake_path(path, sizeof(path), fifo_path[i]);
                if (mkfifo(path, 0600) < 0)
                        return -errno;
        }
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

/* Put the device in a known state and forget what was written. */
static void reset(const char *driver, const char *override, const char *default_driver, bool vfio_loaded) {
        pthread_mutex_lock(&fake.lock);
        set_driver(driver);
        write_override(override);
        snprintf(fake.default_driver, sizeof(fake.default_driver), "%s", default_driver);
        fake.vfio_loaded = vfio_loaded;
        memset(fake.count, 0, sizeof(fake.count));
        memset(fake.last, 0, sizeof(fake.last));
        pthread_mutex_unlock(&fake.lock);
}

static unsigned count_of(FifoId id) {
        unsigned n;

        pthread_mutex_lock(&fake.lock);
        n = fake.count[id];
        pthread_mutex_unlock(&fake.lock);
        return n;
}

static const char *last_of(FifoId id) {
        static char buf[64];

        pthread_mutex_lock(&fake.lock);
        snprintf(buf, sizeof(buf), "%s", fake.last[id]);
        pthread_mutex_unlock(&fake.lock);
        return buf;
}

static const char *driver_now(void) {
        static char buf[32];

        pthread_mutex_lock(&fake.lock);
        current_driver(buf, sizeof(buf));
        pthread_mutex_unlock(&fake.lock);
        return buf;
}

static const char *override_now(void) {
        static char buf[64];

        read_file("dev/" ADDRESS "/driver_override", buf, sizeof(buf));
        return buf;
}

typedef struct RestoreResult {
        unsigned calls;
        int result;
        char address[16];
} RestoreResult;

static void on_restored(const char *address, int result, void *userdata) {
        RestoreResult *r = userdata;

        r->calls++;
        r->result = result;
        snprintf(r->address, sizeof(r->address), "%s", address);
}

/* Run the loop until done() ran, then a little longer to catch a second call. */
static void run_until_done(sd_event *e, RestoreResult *res) {
        for (int i = 0; i < 200 && res->calls == 0; i++)
                (void) sd_event_run(e, 50 * 1000);
        for (int i = 0; i < 4; i++)
                (void) sd_event_run(e, 50 * 1000);
}

typedef struct BindResult {
        unsigned calls, gone_calls;
        int result;
        bool exited;
} BindResult;

static void on_bound(int result, const char *output, void *userdata) {
        BindResult *b = userdata;

        b->calls++;
        b->result = result;
}

static void on_bind_gone(bool exited, void *userdata) {
        BindResult *b = userdata;

        b->gone_calls++;
        b->exited = exited;
}

/* Rebind in a worker and run the loop until the worker is gone. */
static int bind_and_wait(sd_event *e, Device *d, BindResult *b) {
        Worker *w = NULL;
        int r;

        *b = (BindResult) {};
        r = driver_bind_vfio_async(e, d, on_bound, b, &w);
        if (r < 0)
                return r;
        worker_set_gone(w, on_bind_gone);
        for (int i = 0; i < 400 && b->gone_calls == 0; i++)
                (void) sd_event_run(e, 50 * 1000);
        CHECK_INT_WHAT(b->calls, 1, "done() calls");
        CHECK_INT_WHAT(b->gone_calls, 1, "gone() calls");
        CHECK_MSG(b->exited, "gone() says the worker exited");
        return b->result;
}

static void restore_and_wait(sd_event *e, Device *d, const char *driver, const char *override) {
        RestoreResult res = {};

        CHECK_INT_WHAT(driver_restore_async(e, d, driver, override, on_restored, &res), 0, "driver_restore_async");
        run_until_done(e, &res);
        CHECK_INT_WHAT(res.result, 0, "restore result");
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void test_bind_vfio(sd_event *e, Device *d) {
        BindResult b;

        printf("# bind to vfio-pci from e1000e, in a worker\n");
        reset("e1000e", "", "e1000e", true);
        CHECK_INT_WHAT(bind_and_wait(e, d, &b), 0, "driver_bind_vfio_async");
        CHECK_STR_WHAT(override_now(), "vfio-pci", "driver_override");
        CHECK_INT_WHAT(count_of(FIFO_UNBIND_E1000E), 1, "e1000e/unbind writes");
        CHECK_STR_WHAT(last_of(FIFO_UNBIND_E1000E), ADDRESS, "e1000e/unbind got");
        CHECK_INT_WHAT(count_of(FIFO_PROBE), 1, "drivers_probe writes");
        CHECK_STR_WHAT(last_of(FIFO_PROBE), ADDRESS, "drivers_probe got");
        CHECK_STR_WHAT(driver_now(), "vfio-pci", "driver afterwards");

        printf("# bind when already on vfio-pci touches nothing\n");
        reset("vfio-pci", "vfio-pci", "e1000e", true);
        CHECK_INT_WHAT(bind_and_wait(e, d, &b), 0, "driver_bind_vfio_async");
        CHECK_INT_WHAT(count_of(FIFO_UNBIND_E1000E) + count_of(FIFO_UNBIND_VFIO) + count_of(FIFO_PROBE), 0,
                       "sysfs writes");

        printf("# bind with no driver bound skips the unbind\n");
        reset(NULL, "", "", true);
        CHECK_INT_WHAT(bind_and_wait(e, d, &b), 0, "driver_bind_vfio_async");
        CHECK_INT_WHAT(count_of(FIFO_UNBIND_E1000E), 0, "e1000e/unbind writes");
        CHECK_STR_WHAT(driver_now(), "vfio-pci", "driver afterwards");
}

static void test_bind_vfio_fails(sd_event *e, Device *d) {
        BindResult b;

        printf("# vfio-pci does not bind: -EIO, nothing undone by the worker; the restore gives e1000e back\n");
        reset("e1000e", "", "e1000e", false);
        CHECK_INT_WHAT(bind_and_wait(e, d, &b), -EIO, "driver_bind_vfio_async");
        CHECK_STR_WHAT(override_now(), "vfio-pci", "driver_override left for the restore");
        CHECK_STR_WHAT(driver_now(), "", "driver after the failed bind");
        restore_and_wait(e, d, "e1000e", NULL);
        CHECK_STR_WHAT(override_now(), "\n", "driver_override cleared");
        CHECK_INT_WHAT(count_of(FIFO_PROBE), 2, "drivers_probe writes (bind, restore)");
        CHECK_INT_WHAT(count_of(FIFO_BIND_E1000E), 0, "e1000e/bind writes");
        CHECK_STR_WHAT(driver_now(), "e1000e", "driver afterwards");

        printf("# same, reprobe picks nothing: e1000e bound by name\n");
        reset("e1000e", "", "", false);
        CHECK_INT_WHAT(bind_and_wait(e, d, &b), -EIO, "driver_bind_vfio_async");
        restore_and_wait(e, d, "e1000e", NULL);
        CHECK_INT_WHAT(count_of(FIFO_BIND_E1000E), 1, "e1000e/bind writes");
        CHECK_STR_WHAT(last_of(FIFO_BIND_E1000E), ADDRESS, "e1000e/bind got");
        CHECK_STR_WHAT(driver_now(), "e1000e", "driver afterwards");

        printf("# invalid devices\n");
        CHECK_INT_WHAT(driver_bind_vfio_async(e, &(Device) { .address = ADDRESS }, on_bound, &b, NULL), -EINVAL,
                       "no syspath");
        CHECK_INT_WHAT(driver_bind_vfio_async(e, NULL, on_bound, &b, NULL), -EINVAL, "NULL device");
        CHECK_INT_WHAT(driver_bind_vfio_async(NULL, d, on_bound, &b, NULL), -EINVAL, "no event loop");
}

static void test_bind_vfio_timeout(sd_event *e, Device *d) {
        uint64_t start, took;
        BindResult b;

        printf("# a rebind stuck between unbind and probe times out: -ETIMEDOUT at once, the worker killed\n");
        setenv("IOMMUFD_BROKER_TEST_REBIND_DELAY_MS", "5000", 1);
        setenv("IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS", "300", 1);
        driver_load_test_environment();
        CHECK_INT_WHAT(driver_bind_timeout_usec(), 300 * 1000, "timeout from the environment");
        reset("e1000e", "", "e1000e", true);
        start = now_usec();
        CHECK_INT_WHAT(bind_and_wait(e, d, &b), -ETIMEDOUT, "driver_bind_vfio_async");
        took = now_usec() - start;
        CHECK_MSG(took < 2 * 1000 * 1000, "timed out and reaped after %" PRIu64 " ms (< 2000)", took / 1000);
        CHECK_INT_WHAT(count_of(FIFO_PROBE), 0, "drivers_probe writes (killed before the probe)");
        CHECK_STR_WHAT(driver_now(), "", "half-way: unbound");
        CHECK_INT_WHAT(worker_count(), 0, "workers left");
        restore_and_wait(e, d, "e1000e", NULL);
        CHECK_STR_WHAT(driver_now(), "e1000e", "given back");
        CHECK_STR_WHAT(override_now(), "\n", "driver_override cleared");

        printf("# bad values are ignored\n");
        setenv("IOMMUFD_BROKER_TEST_REBIND_DELAY_MS", "soon", 1);
        setenv("IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS", "-1", 1);
        driver_load_test_environment();
        CHECK_INT_WHAT(driver_bind_timeout_usec(), 15 * 1000 * 1000, "default timeout");
        unsetenv("IOMMUFD_BROKER_TEST_REBIND_DELAY_MS");
        unsetenv("IOMMUFD_BROKER_TEST_REBIND_TIMEOUT_MS");
        driver_load_test_environment();
}

static void test_restore(Device *d) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        RestoreResult res = {};

        if (sd_event_new(&e) < 0) {
                CHECK_MSG(false, "sd_event_new");
                return;
        }

        printf("# restore to e1000e by reprobe\n");
        reset("vfio-pci", "vfio-pci", "e1000e", true);
        CHECK_INT_WHAT(driver_restore_async(e, d, "e1000e", NULL, on_restored, &res), 0, "driver_restore_async");
        run_until_done(e, &res);
        CHECK_INT_WHAT(res.calls, 1, "done() calls");
        CHECK_INT_WHAT(res.result, 0, "result");
        CHECK_STR_WHAT(res.address, ADDRESS, "address");
        CHECK_STR_WHAT(override_now(), "\n", "driver_override cleared");
        CHECK_INT_WHAT(count_of(FIFO_UNBIND_VFIO), 1, "vfio-pci/unbind writes");
        CHECK_STR_WHAT(last_of(FIFO_UNBIND_VFIO), ADDRESS, "vfio-pci/unbind got");
        CHECK_INT_WHAT(count_of(FIFO_BIND_E1000E), 0, "e1000e/bind writes");
        CHECK_STR_WHAT(driver_now(), "e1000e", "driver afterwards");

        printf("# restore to e1000e when reprobe picks nothing\n");
        res = (RestoreResult) {};
        reset("vfio-pci", "vfio-pci", "", true);
        CHECK_INT_WHAT(driver_restore_async(e, d, "e1000e", NULL, on_restored, &res), 0, "driver_restore_async");
        run_until_done(e, &res);
        CHECK_INT_WHAT(res.calls, 1, "done() calls");
        CHECK_INT_WHAT(res.result, 0, "result");
        CHECK_INT_WHAT(count_of(FIFO_BIND_E1000E), 1, "e1000e/bind writes");
        CHECK_STR_WHAT(driver_now(), "e1000e", "driver afterwards");

        printf("# no original driver (an admin fence): left without one, no reprobe\n");
        res = (RestoreResult) {};
        reset("vfio-pci", "vfio-pci", "e1000e", true);
        CHECK_INT_WHAT(driver_restore_async(e, d, NULL, NULL, on_restored, &res), 0, "driver_restore_async");
        run_until_done(e, &res);
        CHECK_INT_WHAT(res.calls, 1, "done() calls");
        CHECK_INT_WHAT(res.result, 0, "result");
        CHECK_INT_WHAT(count_of(FIFO_PROBE), 0, "drivers_probe writes");
        CHECK_STR_WHAT(driver_now(), "", "driver afterwards");

        printf("# an admin's driver_override (pci-stub fence) comes back as it was\n");
        res = (RestoreResult) {};
        reset("vfio-pci", "vfio-pci", "e1000e", true);
        CHECK_INT_WHAT(driver_restore_async(e, d, NULL, "pci-stub", on_restored, &res), 0, "driver_restore_async");
        run_until_done(e, &res);
        CHECK_INT_WHAT(res.result, 0, "result");
        CHECK_STR_WHAT(override_now(), "pci-stub", "driver_override restored");
        CHECK_STR_WHAT(driver_now(), "", "driver afterwards");

        printf("# driver_read_override: none, then a value\n");
        {
                char *o = NULL;
                reset("e1000e", "\n", "e1000e", true);
                CHECK_INT_WHAT(driver_read_override(d, &o), 0, "read empty override");
                CHECK_MSG(o == NULL, "no override read as NULL");
                reset("e1000e", "pci-stub\n", "e1000e", true);
                CHECK_INT_WHAT(driver_read_override(d, &o), 0, "read override");
                CHECK_STR_WHAT(o ?: "", "pci-stub", "override value");
                free(o);
                reset("e1000e", "(null)\n", "e1000e", true);
                o = NULL;
                CHECK_INT_WHAT(driver_read_override(d, &o), 0, "read (null) override");
                CHECK_MSG(o == NULL, "(null) read as NULL");
        }

        printf("# restore to a driver that does not exist\n");
        res = (RestoreResult) {};
        reset("vfio-pci", "vfio-pci", "", true);
        CHECK_INT_WHAT(driver_restore_async(e, d, "nosuchdrv", NULL, on_restored, &res), 0, "driver_restore_async");
        run_until_done(e, &res);
        CHECK_INT_WHAT(res.calls, 1, "done() calls");
        CHECK_INT_WHAT(res.result, -ENOENT, "result");

        printf("# bad arguments fail at once, without calling done()\n");
        res = (RestoreResult) {};
        CHECK_INT_WHAT(driver_restore_async(e, d, "../x", NULL, on_restored, &res), -EINVAL, "driver name with a slash");
        CHECK_INT_WHAT(driver_restore_async(NULL, d, NULL, NULL, on_restored, &res), -EINVAL, "no event loop");
        for (int i = 0; i < 4; i++)
                (void) sd_event_run(e, 50 * 1000);
        CHECK_INT_WHAT(res.calls, 0, "done() calls");

        printf("# a loop freed while the worker runs frees the watch\n");
        reset("vfio-pci", "vfio-pci", "e1000e", true);
        CHECK_INT_WHAT(driver_restore_async(e, d, "e1000e", NULL, on_restored, &res), 0, "driver_restore_async");
        e = sd_event_unref(e);
        /* The worker carries on without the loop; let it finish before the
         * fake tree goes away. */
        for (int i = 0; i < 200 && !streq(driver_now(), "e1000e"); i++)
                usleep(10 * 1000);
        CHECK_STR_WHAT(driver_now(), "e1000e", "driver restored without the loop");
        CHECK_INT_WHAT(res.calls, 0, "done() calls after the loop was freed");
        CHECK_INT_WHAT(worker_kill_all(1000 * 1000), 0, "workers left stuck");
        CHECK_INT_WHAT(worker_count(), 0, "workers left");
}

int main(void) {
        char syspath[128], bus[128];
        pthread_t thread;
        Device d = { .address = ADDRESS };
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = make_tree();
        if (r < 0) {
                printf("FAIL: setting up fake sysfs: %s\n", strerror(-r));
                return 1;
        }
        if (pipe2(fake.quit, O_CLOEXEC) < 0 || pthread_create(&thread, NULL, reactor, NULL) != 0) {
                printf("FAIL: starting reactor\n");
                return 1;
        }

        fake_path(syspath, sizeof(syspath), "dev/" ADDRESS);
        fake_path(bus, sizeof(bus), "bus");
        d.syspath = syspath;
        driver_set_bus_path_for_test(bus);

        {
                _cleanup_(sd_event_unrefp) sd_event *e = NULL;

                CHECK(sd_event_new(&e) >= 0);
                test_bind_vfio(e, &d);
                test_bind_vfio_fails(e, &d);
                test_bind_vfio_timeout(e, &d);
        }
        test_restore(&d);

        CHECK(write(fake.quit[1], "q", 1) == 1);
        pthread_join(thread, NULL);
        (void) nftw(fake.root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

        return test_result();
}
