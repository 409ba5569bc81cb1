/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * AcquireDevices calls the broker must refuse though the device would do,
 * over D-Bus on the private bus of run-with-broker.sh (fake kernel, fake
 * sysfs); tests/integration/test-refusals.py does the same over varlink.
 *
 *   sriov    managed acquire of an SR-IOV PF with VFs enabled: DeviceUnavailable
 *            before any driver is touched; with sriov_numvfs = 0 it is rebound
 *            and leased
 *   noreply  AcquireDevices sent with NO_REPLY_EXPECTED (sd-bus and busctl
 *            --expect-reply=no): nothing leased, a log line
 *   cdev     /sys/dev/char/MAJ:MIN of the device's cdev resolves to another
 *            device: DeviceUnavailable, no fd, no lease
 *
 * run-with-broker.sh checks afterwards that the broker answers and its fd
 * count is back to the baseline.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbus-test-util.h"

#define PF "0000:00:04.0"               /* on e1000e in the default fixture */
#define VFIO_DEV "0000:00:02.0"         /* vfio0 = 511:0 */
#define OTHER_CDEV "../../devices/pci0000:00/0000:00:03.0/vfio-dev/vfio1"

/* $UMOCKDEV_DIR/<dir>/<name>[/<attr>] */
static char *testbed_path(const char *dir, const char *name, const char *attr) {
        char *p = NULL;

        if (asprintf(&p, "%s/%s/%s%s%s", getenv("UMOCKDEV_DIR"), dir, name, attr ? "/" : "", attr ?: "") < 0)
                return NULL;
        return p;
}

static bool write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t) strlen(text);

        if (fd >= 0)
                close(fd);
        return ok;
}

static bool file_contains(const char *path, const char *what) {
        char buf[4096] = {};
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

        if (fd >= 0)
                close(fd);
        return n > 0 && strstr(buf, what);
}

static char *device_path(sd_bus *bus, const char *address) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path = NULL;

        if (sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "GetDevice", &error,
                               &m, "s", address) < 0 ||
            sd_bus_message_read(m, "o", &path) < 0) {
                sd_bus_error_free(&error);
                return NULL;
        }
        return strdup(path);
}

/* A typed error naming the device, with words in its message. */
static void check_refused(int r, sd_bus_error *error, const char *name, const char *address, const char *word,
                          const char *what) {
        CHECK_MSG(r < 0 && sd_bus_error_has_name(error, name) && error->message &&
                  strstr(error->message, address) && strstr(error->message, word),
                  "%s: %s naming %s and \"%s\" (got %s: %s)", what, name, address, word, strna(error->name),
                  strna(error->message));
        sd_bus_error_free(error);
}

/* Play the kernel for a managed acquire: a helper (python, as the fake
 * sysfs tools are) that binds the device to vfio-pci as soon as the broker
 * writes drivers_probe, within the broker's settle time. It says "ready"
 * before the caller sends the call, so its start-up does not count. */
static pid_t start_kernel_player(const char *address) {
        static const char script[] =
                "import importlib.machinery, importlib.util, os, sys, time\n"
                "loader = importlib.machinery.SourceFileLoader('ctl', os.environ['FAKE_SYSFS_CTL'])\n"
                "spec = importlib.util.spec_from_loader('ctl', loader)\n"
                "ctl = importlib.util.module_from_spec(spec); loader.exec_module(ctl)\n"
                "root, bdf = os.environ['UMOCKDEV_DIR'], sys.argv[1]\n"
                "probe = os.path.join(root, 'sys/bus/pci/drivers_probe')\n"
                "print('ready', flush=True)\n"
                "for _ in range(10000):\n"
                "    if bdf in open(probe).read():\n"
                "        d = ctl.device_dir(root, bdf)\n"
                "        ctl.bind(root, bdf, d, 'vfio-pci')\n"
                "        ctl.send_uevent(root, 'bind', ctl.devpath_of(root, d), extra=['DRIVER=vfio-pci'])\n"
                "        sys.exit(0)\n"
                "    time.sleep(0.002)\n"
                "sys.exit(1)\n";
        int p[2];
        char buf[8] = {};
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid == 0) {
                dup2(p[1], STDOUT_FILENO);
                execlp("python3", "python3", "-c", script, address, (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        /* print() may write the line in two pieces. */
        for (size_t n = 0; pid > 0 && n < sizeof(buf) - 1 && !strchr(buf, '\n');) {
                ssize_t k = read(p[0], buf + n, sizeof(buf) - 1 - n);
                if (k <= 0)
                        break;
                n += k;
        }
        if (!streq(buf, "ready\n")) {
                close(p[0]);
                return -EIO;
        }
        close(p[0]);
        return pid;
}

static int scenario_sriov(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = connect_bus();
        _cleanup_free_ char *numvfs = testbed_path("sys/devices/pci0000:00", PF, "sriov_numvfs");
        _cleanup_free_ char *override = testbed_path("sys/devices/pci0000:00", PF, "driver_override");
        _cleanup_free_ char *path = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *pf[] = { (char *) PF, NULL };
        Acquired a = { .iommufd = -EBADF };
        int yes = 1, r, status;
        pid_t player;

        CHECK_MSG(bus && numvfs && override && (path = device_path(bus, PF)), "connected, %s has a path", PF);
        if (test_failures)
                return -1;
        CHECK_MSG(write_file(numvfs, "2\n"), "sriov_numvfs = 2 in the testbed");

        r = acquire(bus, pf, "managed", "b", &yes, &error, NULL);
        check_refused(r, &error, ERR("DeviceUnavailable"), PF, "SR-IOV", "managed acquire of a PF with 2 VFs");
        CHECK_MSG(property_is(bus, path, "State", "available"), "%s still available", PF);
        CHECK_MSG(property_is(bus, path, "Driver", "e1000e"), "%s still on e1000e", PF);
        CHECK_MSG(file_contains(override, "(null)"), "driver_override untouched");

        /* No VFs: an ordinary device, rebound and leased. */
        CHECK_MSG(write_file(numvfs, "0\n"), "sriov_numvfs = 0 in the testbed");
        player = start_kernel_player(PF);
        CHECK_MSG(player > 0, "kernel player started (%d)", (int) player);
        if (player < 0)
                return -1;
        r = acquire(bus, pf, "managed", "b", &yes, &error, &a);
        CHECK_MSG(r >= 0 && a.n == 1 && streq(a.address[0], PF), "managed acquire with sriov_numvfs = 0 (%s: %s)",
                  strna(error.name), strna(error.message));
        sd_bus_error_free(&error);
        if (r < 0)
                kill(player, SIGKILL);
        CHECK_MSG(waitpid(player, &status, 0) == player, "kernel player exited");
        CHECK_MSG(property_is(bus, path, "State", "leased"), "%s leased", PF);
        CHECK_MSG(property_is(bus, path, "Driver", "vfio-pci"), "%s on vfio-pci", PF);
        acquired_done(&a);
        CHECK_MSG(release(bus, pf, &error) >= 0, "released");
        sd_bus_error_free(&error);
        return 0;
}

static int scenario_noreply(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = connect_bus();
        _cleanup_free_ char *path = NULL, *log = NULL, *cmd = NULL;
        const char *modes[] = { "attached", "bound", "unbound" };
        Watch w = {};
        int r;

        CHECK_MSG(bus && (path = device_path(bus, VFIO_DEV)), "connected, %s has a path", VFIO_DEV);
        CHECK_MSG(watch_start(&w) >= 0, "watching signals");
        if (test_failures)
                return -1;
        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
                char *devices[] = { (char *) VFIO_DEV, NULL };

                r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH,
                                                   BROKER_DBUS_INTERFACE, "AcquireDevices");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, devices);
                if (r >= 0)
                        r = sd_bus_message_append(m, "a{sv}", 1, "mode", "s", modes[i]);
                if (r >= 0)
                        r = sd_bus_message_set_expect_reply(m, 0);
                if (r >= 0)
                        r = sd_bus_send(bus, m, NULL);
                CHECK_MSG(r >= 0, "AcquireDevices %s sent with NO_REPLY_EXPECTED (%d)", modes[i], r);
        }
        /* busctl, as a shell user would send it. */
        CHECK_MSG(asprintf(&cmd, "busctl --address='%s' --expect-reply=no call " BROKER_DBUS_NAME " "
                           BROKER_DBUS_PATH " " BROKER_DBUS_INTERFACE " AcquireDevices asa{sv} 1 " VFIO_DEV " 0",
                           getenv("DBUS_TEST_ADDRESS")) > 0 && system(cmd) == 0,
                  "busctl --expect-reply=no call AcquireDevices");

        /* A call with a reply, on the same connection, comes after them all. */
        CHECK_MSG(property_is(bus, path, "State", "available"), "%s is still available", VFIO_DEV);
        CHECK_MSG(!watch_wait(&w, "LeaseAcquired"), "no LeaseAcquired signal");
        watch_done(&w);

        CHECK_MSG(asprintf(&log, "%s/broker.log", getenv("DBUS_TEST_DIR")) > 0, "log path");
        {
                _cleanup_free_ char *text = NULL;
                size_t n = 0, count = 0;
                FILE *f = fopen(log, "re");

                if (f) {
                        if (getdelim(&text, &n, 0, f) < 0)
                                { free(text); text = NULL; }
                        fclose(f);
                }
                for (const char *p = text; p && (p = strstr(p, "refusing AcquireDevices from")); p++)
                        count++;
                CHECK_MSG(count == 4, "4 log lines for the refused calls (%zu)", count);
        }
        /* And a real call still works. */
        {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                Acquired a = { .iommufd = -EBADF };

                r = acquire_one(bus, VFIO_DEV, "unbound", &error, &a);
                CHECK_MSG(r >= 0 && a.n == 1, "AcquireDevices with a reply still works (%s)", strna(error.message));
                sd_bus_error_free(&error);
                acquired_done(&a);
        }
        return 0;
}

static int scenario_cdev(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = connect_bus();
        _cleanup_free_ char *link = testbed_path("sys/dev/char", "511:0", NULL), *path = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *modes[] = { "attached", "bound", "unbound" };
        char own[256] = {};
        ssize_t n;
        int r;

        CHECK_MSG(bus && link && (path = device_path(bus, VFIO_DEV)), "connected, %s has a path", VFIO_DEV);
        if (test_failures)
                return -1;
        n = readlink(link, own, sizeof(own) - 1);
        CHECK_MSG(n > 0 && strstr(own, VFIO_DEV "/vfio-dev/vfio0"), "fixture: 511:0 -> %s", own);
        CHECK_MSG(unlink(link) == 0 && symlink(OTHER_CDEV, link) == 0, "511:0 now names 00:03.0's vfio1");

        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                Acquired a = { .iommufd = -EBADF };

                r = acquire_one(bus, VFIO_DEV, modes[i], &error, &a);
                check_refused(r, &error, ERR("DeviceUnavailable"), VFIO_DEV, "another device", modes[i]);
                acquired_done(&a);
        }
        CHECK_MSG(property_is(bus, path, "State", "available"), "%s still available", VFIO_DEV);

        CHECK_MSG(unlink(link) == 0 && symlink(own, link) == 0, "511:0 back");
        {
                Acquired a = { .iommufd = -EBADF };

                r = acquire_one(bus, VFIO_DEV, "bound", &error, &a);
                CHECK_MSG(r >= 0 && a.n == 1, "acquire with the right link (%s)", strna(error.message));
                sd_bus_error_free(&error);
                acquired_done(&a);
        }
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct {
                const char *name;
                int (*run)(void);
        } scenarios[] = {
                { "sriov", scenario_sriov },
                { "noreply", scenario_noreply },
                { "cdev", scenario_cdev },
        };

        if (!getenv("DBUS_TEST_ADDRESS") || !getenv("UMOCKDEV_DIR") || !getenv("FAKE_SYSFS_CTL")) {
                printf("skip: run through run-with-broker.sh (DBUS_TEST_ADDRESS, UMOCKDEV_DIR, FAKE_SYSFS_CTL)\n");
                return 77;
        }
        for (size_t i = 0; argc == 2 && i < ELEMENTSOF(scenarios); i++)
                if (streq(argv[1], scenarios[i].name)) {
                        int r = scenarios[i].run();
                        return r == 77 ? 77 : test_failures || r < 0 ? 1 : 0;
                }
        fprintf(stderr, "Usage: %s sriov|noreply|cdev\n", argv[0]);
        return 2;
}
