/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hostile-clients: one account for both front ends, under
 * tests/dbus/run-with-broker.sh with BROKER_VARLINK=1 and
 * --max-connections-per-uid 24 --max-connections 72 (40 for users, the last
 * 32 root's). The broker once capped varlink connections and D-Bus sessions
 * separately, so one uid could hold 64 of each.
 *
 *  - uid 65534 fills its 24 with 12 varlink connections and 12 D-Bus
 *    sessions; the next D-Bus session and the next varlink connection are
 *    both refused with LimitExceeded, the refusal naming both shares;
 *  - meanwhile uid 1 is answered on both front ends (p90 <= 100 ms, every
 *    probe within 1 s) and gets a varlink connection and a D-Bus session;
 *    then it takes the 16 left of the users' 40, half on each front end,
 *    and the next of either kind is refused by the global cap;
 *  - root acquires over varlink and over D-Bus with the users' share full;
 *  - broker fds (3 per client at most) and RSS bounded; once all let go,
 *    fds back to the baseline and uid 65534 has room on both again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostile-util.h"

enum {
        PER_UID = 24,
        USERS = 40,                     /* --max-connections 72 less root's 32 */
        HALF = PER_UID / 2,
        PROBES = 30,
};

#define VL_LIST "{\"method\":\"io.iommufd.Broker.ListDevices\"}"
#define VL_LIMIT "io.iommufd.Broker.LimitExceeded"

/* Send one varlink call on fd, read the reply (fds attached to it are
 * dropped by the kernel) into buf: its length, 0 on EOF, or -errno. */
static ssize_t varlink_call_on(int fd, const char *call, char *buf, size_t size) {
        size_t n = 0;

        /* A refused connection may be closed already: the reason waits. */
        (void) send(fd, call, strlen(call) + 1, MSG_NOSIGNAL);
        while (n < size - 1) {
                ssize_t k = recv(fd, buf + n, size - 1 - n, 0);
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                n += (size_t) k;
                if (memchr(buf + n - k, 0, (size_t) k))
                        break;
        }
        buf[n] = 0;
        return (ssize_t) n;
}

/* A new varlink connection that made one call: its fd (the reply in buf),
 * or -errno. */
static int varlink_open(const char *call, char *buf, size_t size) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 5 };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", getenv("VARLINK_TEST_SOCKET") ?: "");
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || varlink_call_on(fd, call, buf, size) <= 0) {
                int r = -errno ?: -EIO;
                close(fd);
                return r;
        }
        return fd;
}

/* A varlink connection the broker keeps: ListDevices answered. */
static int varlink_hold(void) {
        char buf[65536];
        int fd = varlink_open(VL_LIST, buf, sizeof(buf));

        if (fd >= 0 && strstr(buf, "\"error\"")) {
                close(fd);
                return -EUSERS;
        }
        return fd;
}

/* Closed by the broker: EOF, or ECONNRESET since it closed with our call unread. */
static bool closed_by_peer(int fd) {
        char c;
        ssize_t n = recv(fd, &c, 1, 0);

        return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* The next varlink connection is refused: LimitExceeded containing want, then closed. */
static bool varlink_refused(const char *want) {
        char buf[4096];
        int fd = varlink_open(VL_LIST, buf, sizeof(buf));
        bool ok = fd >= 0 && strstr(buf, VL_LIMIT) && strstr(buf, want) && closed_by_peer(fd);

        printf("  varlink refusal: %s\n", fd >= 0 ? buf : strerror(-fd));
        fflush(stdout);
        if (fd >= 0)
                close(fd);
        return ok;
}

/* The next D-Bus session is refused with LimitExceeded containing want. */
static bool dbus_refused(const char *device, const char *want) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = connect_bus();
        bool ok;
        int r;

        if (!bus)
                return false;
        r = acquire_one(bus, device, "unbound", &error, NULL);
        ok = r < 0 && sd_bus_error_has_name(&error, ERR("LimitExceeded")) && error.message && strstr(error.message, want);
        printf("  D-Bus refusal: %s: %s\n", strna(error.name), strna(error.message));
        fflush(stdout);
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        return ok;
}

/* A new bus connection with a session (an AcquireDevices of device). */
static sd_bus *dbus_hold(const char *device) {
        sd_bus *bus = connect_bus();
        char err[256];

        if (bus && acquire_release(bus, device, err, sizeof(err)) < 0) {
                sd_bus_flush_close_unref(bus);
                return NULL;
        }
        return bus;
}

typedef struct Held {
        int fds[USERS];
        sd_bus *buses[USERS];
        int n_fds, n_buses;
} Held;

static void held_done(Held *h) {
        for (int i = 0; i < h->n_fds; i++)
                close(h->fds[i]);
        for (int i = 0; i < h->n_buses; i++)
                sd_bus_flush_close_unref(h->buses[i]);
        *h = (Held) {};
}

/* n_varlink connections and n_dbus sessions, alternating: how many of
 * each the broker kept. */
static void hold_mix(Held *h, int n_varlink, int n_dbus, const char *device) {
        for (int i = 0; i < n_varlink || i < n_dbus; i++) {
                int fd = i < n_varlink ? varlink_hold() : -1;
                sd_bus *bus = i < n_dbus ? dbus_hold(device) : NULL;

                if (fd >= 0)
                        h->fds[h->n_fds++] = fd;
                if (bus)
                        h->buses[h->n_buses++] = bus;
        }
}

/* In a child as uid: fn(out) writes its verdicts (ints) to the report pipe,
 * then holds everything until the hold pipe closes. */
typedef void (*ClientFn)(Held *h, int out[4]);

static pid_t start_as(uid_t uid, ClientFn fn, int out[4], int *ret_hold) {
        int report[2], hold[2];
        pid_t pid;

        if (pipe2(report, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                Held h = {};
                char c;

                close(hold[1]);
                if (become(uid) < 0)
                        _exit(1);
                fn(&h, out);
                if (write(report[1], out, 4 * sizeof(int)) != 4 * sizeof(int))
                        _exit(2);
                if (read(hold[0], &c, 1) < 0)
                        c = 0;
                held_done(&h);
                _exit(0);
        }
        close(report[1]);
        close(hold[0]);
        if (read(report[0], out, 4 * sizeof(int)) != 4 * sizeof(int))
                out[0] = -1;
        close(report[0]);
        *ret_hold = hold[1];
        return pid;
}

/* uid 65534: 12 + 12, then one more of each kind. */
static void attacker(Held *h, int out[4]) {
        hold_mix(h, HALF, HALF, "0000:00:02.0");
        out[0] = h->n_fds;
        out[1] = h->n_buses;
        out[2] = dbus_refused("0000:00:02.0", "varlink connections: 12, D-Bus sessions: 12");
        out[3] = varlink_refused("varlink connections: 12, D-Bus sessions: 12");
}

static int cmp_latency(const double *lat, int n, const char *what) {
        double sorted[n];

        memcpy(sorted, lat, sizeof(sorted));
        qsort(sorted, (size_t) n, sizeof(double), cmp_double);
        printf("  uid %d %s during the attack: median %.1f ms, p90 %.1f ms, max %.1f ms\n", PROBE_UID, what,
               sorted[n / 2], sorted[n * 9 / 10], sorted[n - 1]);
        fflush(stdout);
        return sorted[n * 9 / 10] <= latency_ms() && sorted[n - 1] <= 1000 ? 1 : 0;
}

/* uid 1 with 65534 at its cap: answered on both front ends, then it takes
 * what is left of the users' share, half on each front end. */
static void bystander(Held *h, int out[4]) {
        double lat_vl[PROBES], lat_db[PROBES];
        char buf[65536];
        sd_bus *bus = connect_bus();

        out[0] = out[1] = 0;
        for (int i = 0; bus && i < PROBES; i++) {
                sd_bus_message *reply = NULL;
                double t = now_ms();
                int fd = varlink_open(VL_LIST, buf, sizeof(buf));

                lat_vl[i] = fd >= 0 && !strstr(buf, "\"error\"") ? now_ms() - t : 1e9;
                if (fd >= 0)
                        close(fd);
                t = now_ms();
                lat_db[i] = sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                               "ListDevices", NULL, &reply, NULL) >= 0 ? now_ms() - t : 1e9;
                sd_bus_message_unref(reply);
                usleep(20000);
        }
        out[0] = bus && cmp_latency(lat_vl, PROBES, "varlink ListDevices (connect included)") &&
                 cmp_latency(lat_db, PROBES, "D-Bus ListDevices");
        if (bus)
                sd_bus_flush_close_unref(bus);
        /* The probes' connections stop counting once the broker read their
         * EOF: within a loop turn, i.e. well within the latency bound. */
        usleep(1000000);

        hold_mix(h, (USERS - PER_UID) / 2, (USERS - PER_UID) / 2, "0000:00:03.0");
        out[1] = h->n_fds == (USERS - PER_UID) / 2 && h->n_buses == (USERS - PER_UID) / 2;
        printf("  uid %d holds %d varlink connections and %d D-Bus sessions\n", PROBE_UID, h->n_fds, h->n_buses);
        fflush(stdout);
        out[2] = varlink_refused("too many connections: the broker keeps 40");
        out[3] = dbus_refused("0000:00:03.0", "too many connections: the broker keeps 40");
}

/* Root, with the users' share full: ListDevices, Acquire and Release over
 * varlink (DeviceBusy while the last D-Bus lease of 00:02.0 is releasing
 * waits), and a D-Bus session. */
static bool root_gets_through(void) {
        char buf[65536], err[256];
        int fd = varlink_hold();
        bool ok = fd >= 0;
        sd_bus *bus;

        for (int i = 0; ok && i < 200; i++) {
                ok = varlink_call_on(fd, "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":"
                                         "{\"devices\":[\"0000:00:02.0\"],\"mode\":\"unbound\"}}", buf, sizeof(buf)) > 0;
                if (!strstr(buf, "DeviceBusy"))
                        break;
                usleep(10000);
        }
        ok = ok && !strstr(buf, "\"error\"");
        printf("  root varlink Acquire: %.200s\n", buf);
        ok = ok && varlink_call_on(fd, "{\"method\":\"io.iommufd.Broker.Release\",\"parameters\":"
                                       "{\"devices\":[\"0000:00:02.0\"]}}", buf, sizeof(buf)) > 0 &&
             !strstr(buf, "\"error\"");
        if (fd >= 0)
                close(fd);
        bus = connect_bus();
        ok = ok && bus && acquire_release(bus, "0000:00:02.0", err, sizeof(err)) >= 0;
        if (bus)
                sd_bus_flush_close_unref(bus);
        return ok;
}

static int wait_fds(int base) {
        int n = -1;

        for (int i = 0; i < 250 && (n = broker_fd_count()) != base; i++)
                usleep(20000);
        return n;
}

static int test_client_cap(void) {
        int a[4], b[4], hold_a, hold_b, status, base_fds, peak_fds;
        long base_rss, peak_rss, bound;
        pid_t pa, pb;

        base_fds = broker_fd_count();
        base_rss = broker_rss_kib();
        pa = start_as(NOBODY, attacker, a, &hold_a);
        CHECK_MSG(pa > 0 && a[0] == HALF && a[1] == HALF, "uid %d holds %d varlink connections and %d D-Bus sessions",
                  NOBODY, a[0], a[1]);
        CHECK_MSG(a[2] == 1, "uid %d at its cap of %d: the next D-Bus session is LimitExceeded, naming both shares",
                  NOBODY, PER_UID);
        CHECK_MSG(a[3] == 1, "uid %d at its cap of %d: the next varlink connection is LimitExceeded, then closed",
                  NOBODY, PER_UID);

        pb = start_as(PROBE_UID, bystander, b, &hold_b);
        CHECK_MSG(pb > 0 && b[0] == 1, "uid %d answered on both front ends, p90 <= %.0f ms, all within 1 s",
                  PROBE_UID, latency_ms());
        CHECK_MSG(b[1] == 1, "uid %d takes the %d left of the users' %d, half on each front end", PROBE_UID,
                  USERS - PER_UID, USERS);
        CHECK_MSG(b[2] == 1 && b[3] == 1, "the users' share full: the next varlink connection and D-Bus session "
                  "are LimitExceeded");
        CHECK_MSG(root_gets_through(), "root lists, acquires and releases over varlink and D-Bus");

        peak_fds = broker_fd_count();
        peak_rss = broker_rss_kib();
        printf("  broker with %d clients: %d fds (baseline %d), RSS %ld KiB (baseline %ld)\n", USERS, peak_fds,
               base_fds, peak_rss, base_rss);
        CHECK_MSG(peak_fds - base_fds <= 3 * USERS + 8, "fds bounded by the caps (+%d)", peak_fds - base_fds);
        bound = getenv("HOSTILE_RSS_BOUND_MIB") ? atol(getenv("HOSTILE_RSS_BOUND_MIB")) : 8;
        CHECK_MSG(peak_rss - base_rss <= bound * 1024, "RSS grew %ld KiB <= %ld MiB", peak_rss - base_rss, bound);

        close(hold_a);
        close(hold_b);
        waitpid(pa, &status, 0);
        waitpid(pb, &status, 0);
        CHECK_MSG(wait_fds(base_fds) == base_fds, "broker fds back to the baseline (%d)", base_fds);

        /* Both kinds are released: uid 65534 has room on both again. */
        pa = fork();
        if (pa == 0) {
                int fd;
                sd_bus *bus;

                if (become(NOBODY) < 0)
                        _exit(1);
                fd = varlink_hold();
                bus = dbus_hold("0000:00:02.0");
                _exit(fd >= 0 && bus ? 0 : 2);
        }
        waitpid(pa, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "uid %d has a varlink connection and a D-Bus session again (status %d)", NOBODY, status);
        return 0;
}

int main(int argc, char *argv[]) {
        if (geteuid() != 0) {
                printf("SKIP: runs as root (forks other uids)\n");
                return 77;
        }
        if (!getenv("VARLINK_TEST_SOCKET")) {
                fprintf(stderr, "needs BROKER_VARLINK=1\n");
                return 2;
        }
        test_client_cap();
        return test_result();
}
