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
 *   hostile-dbus session-cap     uid 65534 opens 100 bus connections, each
 *                                acquiring and releasing a device (a session
 *                                that keeps an iommufd): the 65th on get
 *                                LimitExceeded; meanwhile uid 1 is answered
 *                                (p90 <= 100 ms) and can still acquire; root
 *                                acquires at the cap; broker fds and RSS
 *                                bounded (2 fds per session), fds back to
 *                                the baseline once the connections close, and
 *                                then uid 65534 may have sessions again.
 *                                Needs BROKER_POLICY granting both uids.
 *   hostile-dbus session-global-cap
 *                                with --max-connections 72 (40 for users,
 *                                32 root's) --max-connections-per-uid 30:
 *                                uid 65534 keeps 30 sessions, uid 1 the 10
 *                                left of 40 (LimitExceeded past that), root
 *                                acquires all the same; fds back to the
 *                                baseline, and uid 1 has room again
 *                                afterwards.
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
#include "hostile-util.h"

#define BIG_ARRAY 200000

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

enum { ATTACK_CONNECTIONS = 100, SESSION_CAP = 64 };

/* n connections of uid, each acquiring and releasing device; reports
 * "ok limited other" on fd, then keeps the connections until fd `hold` reads
 * EOF. */
static _Noreturn void session_attacker(uid_t uid, int n, const char *device, int report, int hold) {
        sd_bus *buses[ATTACK_CONNECTIONS];
        int counts[3] = {};
        char err[256], c;

        if (n > ATTACK_CONNECTIONS || become(uid) < 0)
                _exit(1);
        for (int i = 0; i < n; i++) {
                buses[i] = connect_bus();
                if (!buses[i])
                        _exit(2);
                if (acquire_release(buses[i], device, err, sizeof(err)) >= 0)
                        counts[0]++;
                else if (streq(err, ERR("LimitExceeded")))
                        counts[1]++;
                else {
                        fprintf(stderr, "  connection %d: %s\n", i, err);
                        counts[2]++;
                }
        }
        if (write(report, counts, sizeof(counts)) != (ssize_t) sizeof(counts))
                _exit(3);
        if (read(hold, &c, 1) < 0)
                c = 0;      /* the parent went away: let go all the same */
        for (int i = 0; i < n; i++)
                sd_bus_flush_close_unref(buses[i]);
        _exit(0);
}

/* Another uid, with the attacker at its cap: answered, and not locked out. */
static _Noreturn void session_bystander(int fd) {
        enum { PROBES = 50 };
        double lat[PROBES + 1];
        char err[256];
        sd_bus *bus;

        if (become(PROBE_UID) < 0 || !(bus = connect_bus()))
                _exit(1);
        for (int i = 0; i < PROBES; i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *reply = NULL;
                double t = now_ms();

                if (sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                       "ListDevices", &error, &reply, NULL) < 0)
                        _exit(2);
                lat[i] = now_ms() - t;
                sd_bus_message_unref(reply);
                usleep(20000);
        }
        qsort(lat, PROBES, sizeof(double), cmp_double);
        lat[PROBES] = acquire_release(bus, "0000:00:03.0", err, sizeof(err)) >= 0 ? 1 : 0;
        if (!lat[PROBES])
                fprintf(stderr, "  uid %d acquire: %s\n", PROBE_UID, err);
        if (write(fd, lat, sizeof(lat)) != (ssize_t) sizeof(lat))
                _exit(3);
        _exit(0);
}

static int test_session_cap(void) {
        enum { PROBES = 50 };
        double lat[PROBES + 1];
        int counts[3] = {}, report[2], hold[2], probe[2], status, base_fds, peak_fds, after = -1;
        long base_rss, peak_rss;
        char err[256];
        pid_t attacker, bystander;
        sd_bus *bus;

        base_fds = broker_fd_count();
        base_rss = broker_rss_kib();
        CHECK_MSG(pipe2(report, O_CLOEXEC) == 0 && pipe2(hold, O_CLOEXEC) == 0 && pipe2(probe, O_CLOEXEC) == 0,
                  "pipes");
        attacker = fork();
        if (attacker == 0) {
                close(hold[1]);
                session_attacker(NOBODY, ATTACK_CONNECTIONS, "0000:00:02.0", report[1], hold[0]);
        }
        close(report[1]);
        close(hold[0]);
        /* Another uid, during the attack and at the cap. */
        bystander = fork();
        if (bystander == 0)
                session_bystander(probe[1]);
        close(probe[1]);
        CHECK_MSG(read(report[0], counts, sizeof(counts)) == (ssize_t) sizeof(counts), "the attacker reported");
        printf("  uid %d, %d connections: %d sessions, %d LimitExceeded, %d other errors\n", NOBODY,
               ATTACK_CONNECTIONS, counts[0], counts[1], counts[2]);
        CHECK_MSG(counts[0] == SESSION_CAP && counts[1] == ATTACK_CONNECTIONS - SESSION_CAP && counts[2] == 0,
                  "%d sessions kept, the rest refused with LimitExceeded", SESSION_CAP);

        CHECK_MSG(read(probe[0], lat, sizeof(lat)) == (ssize_t) sizeof(lat), "the bystander reported");
        waitpid(bystander, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uid %d ran (status %d)", PROBE_UID, status);
        printf("  uid %d ListDevices during the attack: median %.1f ms, p90 %.1f ms, max %.1f ms\n", PROBE_UID,
               lat[PROBES / 2], lat[PROBES * 9 / 10], lat[PROBES - 1]);
        CHECK_MSG(lat[PROBES * 9 / 10] <= latency_ms(), "p90 %.1f ms <= %.0f ms", lat[PROBES * 9 / 10],
                  latency_ms());
        CHECK_MSG(lat[PROBES] == 1, "uid %d acquires and releases 00:03.0 meanwhile", PROBE_UID);
        bus = connect_bus();
        CHECK_MSG(bus && acquire_release(bus, "0000:00:02.0", err, sizeof(err)) >= 0, "root acquires at the cap (%s)",
                  err);
        sd_bus_flush_close_unref(bus);

        peak_fds = broker_fd_count();
        peak_rss = broker_rss_kib();
        printf("  broker at the cap: %d fds (baseline %d), RSS %ld KiB (baseline %ld)\n", peak_fds, base_fds,
               peak_rss, base_rss);
        /* An iommufd and at most a pidfd per session, plus slack. */
        CHECK_MSG(peak_fds - base_fds <= 2 * SESSION_CAP + 8, "fds bounded by the cap (+%d)", peak_fds - base_fds);
        /* 64 sessions are small; HOSTILE_RSS_BOUND_MIB: ASan keeps freed memory. */
        long bound = getenv("HOSTILE_RSS_BOUND_MIB") ? atol(getenv("HOSTILE_RSS_BOUND_MIB")) : 8;
        CHECK_MSG(peak_rss - base_rss <= bound * 1024, "RSS grew %ld KiB <= %ld MiB", peak_rss - base_rss, bound);

        /* Connections closed: sessions gone, the uid may start again. */
        close(hold[1]);
        waitpid(attacker, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "attacker exited (status %d)", status);
        for (int i = 0; i < 250 && (after = broker_fd_count()) != base_fds; i++)
                usleep(20000);
        CHECK_MSG(after == base_fds, "broker fds back to the baseline (%d, baseline %d)", after, base_fds);
        attacker = fork();
        if (attacker == 0) {
                sd_bus *b;
                if (become(NOBODY) < 0 || !(b = connect_bus()))
                        _exit(1);
                _exit(acquire_release(b, "0000:00:02.0", err, sizeof(err)) >= 0 ? 0 : 2);
        }
        waitpid(attacker, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uid %d has a session again (status %d)", NOBODY,
                  status);
        return 0;
}

/* Starts n sessions of uid in a child; *ret_counts gets "ok limited other",
 * *ret_hold the pipe end whose closing lets them go. */
static pid_t start_sessions(uid_t uid, int n, const char *device, int ret_counts[3], int *ret_hold) {
        int report[2], hold[2];
        pid_t pid;

        if (pipe2(report, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                close(hold[1]);
                session_attacker(uid, n, device, report[1], hold[0]);
        }
        close(report[1]);
        close(hold[0]);
        if (read(report[0], ret_counts, 3 * sizeof(int)) != 3 * sizeof(int))
                ret_counts[2] = -1;
        close(report[0]);
        *ret_hold = hold[1];
        return pid;
}

/* Under --max-connections 72 --max-connections-per-uid 30: uid 65534 keeps
 * 30 sessions, uid 1 gets the 10 left of the 40 for users (the last 32 are
 * root's) and LimitExceeded for the rest, root still acquires; once 65534
 * lets go, uid 1 has room again. */
static int test_session_global_cap(void) {
        enum { ALL = 40, PER_UID = 30, PROBE_WANTS = 20 };
        int counts[3], hold_nobody, hold_probe, status, base_fds, after = -1;
        pid_t nobody, probe;
        char err[256];
        sd_bus *bus;

        base_fds = broker_fd_count();
        nobody = start_sessions(NOBODY, ATTACK_CONNECTIONS / 2, "0000:00:02.0", counts, &hold_nobody);
        CHECK_MSG(nobody > 0, "uid %d started", NOBODY);
        printf("  uid %d, %d connections: %d sessions, %d LimitExceeded, %d other errors\n", NOBODY,
               ATTACK_CONNECTIONS / 2, counts[0], counts[1], counts[2]);
        CHECK_MSG(counts[0] == PER_UID && counts[1] == ATTACK_CONNECTIONS / 2 - PER_UID && counts[2] == 0,
                  "uid %d: %d sessions (its own cap), the rest LimitExceeded", NOBODY, PER_UID);

        probe = start_sessions(PROBE_UID, PROBE_WANTS, "0000:00:03.0", counts, &hold_probe);
        CHECK_MSG(probe > 0, "uid %d started", PROBE_UID);
        printf("  uid %d, %d connections: %d sessions, %d LimitExceeded, %d other errors\n", PROBE_UID,
               PROBE_WANTS, counts[0], counts[1], counts[2]);
        CHECK_MSG(counts[0] == ALL - PER_UID && counts[1] == PROBE_WANTS - (ALL - PER_UID) && counts[2] == 0,
                  "uid %d: the %d sessions left of %d for all users, the rest LimitExceeded", PROBE_UID,
                  ALL - PER_UID, ALL);

        bus = connect_bus();
        CHECK_MSG(bus && acquire_release(bus, "0000:00:02.0", err, sizeof(err)) >= 0,
                  "root acquires with all users' sessions taken (%s)", err);
        sd_bus_flush_close_unref(bus);

        /* Both at once: uid 1's child inherited the other's hold pipe. */
        close(hold_nobody);
        close(hold_probe);
        waitpid(nobody, &status, 0);
        waitpid(probe, &status, 0);
        for (int i = 0; i < 250 && (after = broker_fd_count()) != base_fds; i++)
                usleep(20000);
        CHECK_MSG(after == base_fds, "broker fds back to the baseline (%d, baseline %d)", after, base_fds);

        probe = start_sessions(PROBE_UID, PROBE_WANTS, "0000:00:03.0", counts, &hold_probe);
        CHECK_MSG(probe > 0 && counts[0] == PROBE_WANTS && counts[1] == 0 && counts[2] == 0,
                  "uid %d has room again once uid %d let go (%d sessions)", PROBE_UID, NOBODY, counts[0]);
        close(hold_probe);
        waitpid(probe, &status, 0);
        return 0;
}

/* More D-Bus sessions than dbus-daemon lets one connection hold matches
 * (512 by default): 9 uids keep 60 sessions each, all answered, and then
 * uid 1 and root still get sessions, so nothing per session may cost the
 * broker a match on the bus. */
static int test_session_many(void) {
        enum { UIDS = 9, EACH = 60, FIRST_UID = 2 };     /* uids 2..10: bin .. uucp in base-passwd */
        int counts[3], hold[UIDS], probe_hold, base_fds, after = -1, total = 0;
        pid_t pids[UIDS], probe;
        char err[256];
        sd_bus *bus;

        base_fds = broker_fd_count();
        for (int u = 0; u < UIDS; u++) {
                pids[u] = start_sessions(FIRST_UID + u, EACH, "0000:00:02.0", counts, &hold[u]);
                CHECK_MSG(pids[u] > 0 && counts[0] == EACH && counts[2] == 0,
                          "uid %d: %d sessions, %d LimitExceeded, %d other errors", FIRST_UID + u, counts[0],
                          counts[1], counts[2]);
                total += counts[0];
        }
        printf("  %d sessions of %d uids held\n", total, UIDS);

        probe = start_sessions(PROBE_UID, 1, "0000:00:03.0", counts, &probe_hold);
        CHECK_MSG(probe > 0 && counts[0] == 1, "uid %d has a session beside %d others (%d ok, %d other errors)",
                  PROBE_UID, total, counts[0], counts[2]);
        close(probe_hold);
        waitpid(probe, NULL, 0);
        bus = connect_bus();
        CHECK_MSG(bus && acquire_release(bus, "0000:00:02.0", err, sizeof(err)) >= 0,
                  "root acquires beside %d sessions (%s)", total, err);
        sd_bus_flush_close_unref(bus);

        for (int u = 0; u < UIDS; u++)
                close(hold[u]);
        for (int u = 0; u < UIDS; u++)
                waitpid(pids[u], NULL, 0);
        for (int i = 0; i < 500 && (after = broker_fd_count()) != base_fds; i++)
                usleep(20000);
        CHECK_MSG(after == base_fds, "broker fds back to the baseline (%d, baseline %d)", after, base_fds);
        return 0;
}

int main(int argc, char *argv[]) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s big-array|property-fds|session-cap|session-global-cap|session-many\n", argv[0]);
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
        else if (streq(argv[1], "session-cap"))
                test_session_cap();
        else if (streq(argv[1], "session-global-cap"))
                test_session_global_cap();
        else if (streq(argv[1], "session-many"))
                test_session_many();
        else
                return 2;
        return test_result();
}
