/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hostile D-Bus clients, under tests/dbus/run-with-broker.sh (which also
 * checks afterwards that the broker answers and its fd count is back to the
 * baseline):
 *
 *   hostile-dbus big-array       AcquireDevices/ReleaseDevices with a
 *                                200,000-string array, from uid 65534: each
 *                                an InvalidParameter within 5 s (it took
 *                                11-17 s, quadratic), and another uid's
 *                                ListDevices answered meanwhile within 100 ms
 *                                (median; all within 2 s: see below)
 *   hostile-dbus property-fds    property Get/GetAll with 16 unsolicited fds:
 *                                the broker keeps none of them
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dbus-test-util.h"

#define NOBODY 65534
#define PROBE_UID 1       /* "daemon": dbus-daemon wants a uid it can look up */
#define BIG_ARRAY 200000

/* HOSTILE_LATENCY_MS: a sanitizer build is slower (dev.sh test sets it). */
static double latency_ms(void) {
        const char *e = getenv("HOSTILE_LATENCY_MS");
        return e ? atof(e) : 100.0;
}

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int become(uid_t uid) {
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                return -errno;
        return 0;
}

static int broker_fd_count(void) {
        char cmd[128];
        FILE *f;
        int n = -1;

        snprintf(cmd, sizeof(cmd), "ls /proc/%s/fd | wc -l", getenv("BROKER_PID") ?: "0");
        f = popen(cmd, "r");
        if (f) {
                if (fscanf(f, "%d", &n) != 1)
                        n = -1;
                pclose(f);
        }
        return n;
}

/* A call with `n` copies of one address. */
static int big_call(sd_bus *bus, const char *method, size_t n, sd_bus_error *error, double *ret_ms) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        double t;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           method);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append_basic(m, 's', "0000:00:02.0");
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0 && streq(method, "AcquireDevices"))
                r = sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0)
                return r;
        t = now_ms();
        r = sd_bus_call(bus, m, 30 * 1000000ULL, error, &reply);
        *ret_ms = now_ms() - t;
        return r;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* Another uid's ListDevices latencies while the parent attacks, sorted, in
 * ms, written to fd. */
static void probe_child(int fd, int probes) {
        double lat[probes];
        sd_bus *bus;

        if (become(PROBE_UID) < 0 || !(bus = connect_bus()))
                _exit(1);
        for (int i = 0; i < probes; i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *reply = NULL;
                double t = now_ms();

                if (sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                       "ListDevices", &error, &reply, NULL) < 0) {
                        fprintf(stderr, "probe ListDevices: %s\n", error.message);
                        _exit(2);
                }
                lat[i] = now_ms() - t;
                sd_bus_message_unref(reply);
                usleep(10000);
        }
        qsort(lat, (size_t) probes, sizeof(double), cmp_double);
        if (write(fd, lat, sizeof(lat)) != (ssize_t) sizeof(lat))
                _exit(3);
        _exit(0);
}

static int test_big_array(void) {
        enum { PROBES = 50 };
        double lat[PROBES], p90;

        int p[2], status;
        pid_t probe, attacker;

        CHECK_MSG(pipe(p) == 0, "pipe");
        attacker = fork();
        if (attacker == 0) {
                sd_bus *bus;

                if (become(NOBODY) < 0 || !(bus = connect_bus()))
                        _exit(1);
                for (int i = 0; i < 6; i++) {
                        sd_bus_error error = SD_BUS_ERROR_NULL;
                        const char *method = i % 2 ? "ReleaseDevices" : "AcquireDevices";
                        double ms = 0;
                        int r = big_call(bus, method, BIG_ARRAY, &error, &ms);

                        printf("  %s with %d strings: %s after %.1f ms\n", method, BIG_ARRAY,
                               r < 0 ? error.name : "ok", ms);
                        fflush(stdout);
                        if (r >= 0 || !streq_ptr(error.name, ERR("InvalidParameter")) || ms > 5000)
                                _exit(2);
                        sd_bus_error_free(&error);
                }
                _exit(0);
        }
        usleep(20000);
        probe = fork();
        if (probe == 0)
                probe_child(p[1], PROBES);
        close(p[1]);
        CHECK_MSG(read(p[0], lat, sizeof(lat)) == (ssize_t) sizeof(lat), "the probe reported");
        close(p[0]);
        waitpid(probe, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "probe as uid %d ran (status %d)", PROBE_UID, status);
        waitpid(attacker, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "every huge array got a prompt InvalidParameter (status %d)", status);
        /* A call queued behind a 2.6 MB message in the same bus connection
         * waits for dbus-daemon to pass that on, whatever the broker does:
         * the tail shows the bus, the median the broker. */
        p90 = lat[PROBES * 9 / 10];
        printf("  uid %d ListDevices during the attack: median %.1f ms, p90 %.1f ms, max %.1f ms\n", PROBE_UID,
               lat[PROBES / 2], p90, lat[PROBES - 1]);
        CHECK_MSG(lat[PROBES / 2] <= latency_ms(), "median latency %.1f ms <= %.0f ms", lat[PROBES / 2],
                  latency_ms());
        CHECK_MSG(lat[PROBES - 1] <= 2000, "every probe answered within 2 s (max %.1f ms)", lat[PROBES - 1]);
        return 0;
}

/* Get/GetAll with 16 extra fds after the ordinary arguments. */
static int property_call_with_fds(sd_bus *bus, const char *member, const char *path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int p[2], r;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, path, "org.freedesktop.DBus.Properties",
                                           member);
        if (r >= 0)
                r = streq(member, "Get") ? sd_bus_message_append(m, "ss", DEVICE_IFACE, "HolderUid")
                                         : sd_bus_message_append(m, "s", DEVICE_IFACE);
        for (int i = 0; r >= 0 && i < 16; i++)
                r = sd_bus_message_append(m, "h", p[0]);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &error, &reply);
        printf("  %s with 16 fds: %s\n", member, r < 0 ? error.name : "answered");
        sd_bus_error_free(&error);
        close(p[0]);
        close(p[1]);
        return 0;
}

static int test_property_fds(void) {
        _cleanup_(devices_done) Devices d = {};
        sd_bus *bus = connect_bus();
        int base, after = -1;

        CHECK_MSG(bus && list_devices(bus, &d) >= 0 && d.path_a, "connected, devices listed");
        if (!bus || !d.path_a)
                return -1;
        base = broker_fd_count();
        property_call_with_fds(bus, "Get", d.path_a);
        property_call_with_fds(bus, "GetAll", d.path_a);
        /* No other property read follows: nothing may keep the message. */
        for (int i = 0; i < 100 && (after = broker_fd_count()) != base; i++)
                usleep(20000);
        printf("  broker fds: %d before, %d after\n", base, after);
        CHECK_MSG(after == base, "the broker kept no unsolicited fd (%d before, %d after)", base, after);
        sd_bus_flush_close_unref(bus);
        return 0;
}

int main(int argc, char *argv[]) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s big-array|property-fds\n", argv[0]);
                return 2;
        }
        if (geteuid() != 0) {
                printf("SKIP: runs as root (forks other uids)\n");
                return 77;
        }
        if (streq(argv[1], "big-array"))
                test_big_array();
        else if (streq(argv[1], "property-fds"))
                test_property_fds();
        else
                return 2;
        return test_result();
}
