/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Every figure of the fast-path goals, measured side by side in one run, on
 * the fake kernel and fake sysfs trees (bind-mounted over /sys in a private
 * mount namespace: no umockdev). With --baseline, an older build is measured
 * alternately with the new one under the same conditions. Nothing fails on
 * speed: the goals are printed with each figure.
 *
 *   bench-broker [--short] [--baseline OLD_BROKER] --broker BROKER --tmp DIR
 *                --tree16 DIR --tree256 DIR --tree1024 DIR [--preload SO]
 *                [--only list,acquire,sessions,startup,pairs]
 *
 * "pairs" (only when asked for) is the plain varlink Acquire+Release figure
 * alone, for profiling with BENCH_BROKER_WRAP="perf stat -e instructions"
 * or "valgrind --tool=callgrind" in front of the broker; BENCH_PAIRS=N makes
 * it N pairs (after 20 to warm up) instead of a time, so that two runs with
 * different N give the cost of one pair by difference. BENCH_MONITORS=N adds
 * N Monitor streams, BENCH_DBUS=1 the D-Bus front end (BENCH_DBUS=calls: and
 * the pairs over D-Bus), BENCH_PACE=N makes them N pairs/s; BENCH_FLOOR=1
 * only the transport floor of the pairs.
 */
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "bench-floor.h"
#include "bench-lib.h"

#define DEVICE "0000:01:00.0"
#define MAX_BUILDS 2

static struct {
        bool short_mode;
        const char *only;               /* list, acquire, sessions or startup; NULL: all */
        const char *builds[MAX_BUILDS];
        const char *names[MAX_BUILDS];
        size_t n_builds;
        const char *tmp, *tree16, *tree256, *tree1024, *preload;
        char bus_address[512];
        size_t fixed_pairs;             /* $BENCH_PAIRS: that many pairs instead of a time */
        unsigned goals_met, goals_missed;
} arg;

static double seconds_per_figure(void) {
        return arg.short_mode ? 0.1 : 1.5;
}

/* --- the fake /sys --- */

static void use_tree(const char *tree) {
        static bool in_namespace, mounted;

        if (!in_namespace) {
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        die("cannot make a private mount namespace (run as root): %m");
                in_namespace = true;
        }
        if (mounted && umount2("/sys", MNT_DETACH) < 0)
                die("umount /sys: %m");
        if (mount(tree, "/sys", NULL, MS_BIND, NULL) < 0)
                die("bind-mount %s over /sys: %m", tree);
        mounted = true;
}

/* max_conn: per uid (0: 64); max_all: all uids (0: the broker's default). */
static void start_with(size_t build, bool dbus, unsigned max_conn, unsigned max_all, Broker *b) {
        BrokerOptions o = {
                .binary = arg.builds[build],
                .tmpdir = arg.tmp,
                .bus_address = dbus ? arg.bus_address : NULL,
                .preload = arg.preload,
                .max_connections_per_uid = max_conn ?: 64,
                .max_connections = max_all,
        };
        broker_start(&o, b);
}

static void start(size_t build, bool dbus, unsigned max_conn, Broker *b) {
        start_with(build, dbus, max_conn, 0, b);
}

/* --- printing --- */

static void header(void) {
        printf("%-46s %-11s", "figure", "goal");
        for (size_t i = 0; i < arg.n_builds; i++)
                printf(" %12s", arg.names[i]);
        printf("  %s\n", arg.n_builds > 1 ? "met (new)" : "met");
}

/* One row: values per build, the goal, and whether the last build meets it. */
static void row(const char *figure, const char *goal, const double *v, int decimals, bool met) {
        char cell[32];

        printf("%-46s %-11s", figure, goal);
        for (size_t i = 0; i < arg.n_builds; i++) {
                snprintf(cell, sizeof(cell), "%.*f", decimals, v[i]);
                printf(" %12s", cell);
        }
        printf("  %s\n", goal[0] ? (met ? "yes" : "NO") : "");
        if (goal[0])
                met ? arg.goals_met++ : arg.goals_missed++;
        fflush(stdout);
}

static double last(const double *v) {
        return v[arg.n_builds - 1];
}

/* --- ListDevices against the transport floor --- */

static const char list_call[] = "{\"method\":\"io.iommufd.Broker.ListDevices\",\"parameters\":{}}";

static double calls_per_sec(const char *socket, const char *msg) {
        double t0, seconds = seconds_per_figure();
        char *buf = NULL;
        size_t size = 0, n = 0;
        int fd = vl_connect(socket);

        for (int i = 0; i < 20; i++)
                vl_call(fd, msg, &buf, &size);
        t0 = now_sec();
        do {
                for (int i = 0; i < 10; i++, n++)
                        vl_call(fd, msg, &buf, &size);
        } while (now_sec() - t0 < seconds);
        t0 = now_sec() - t0;
        close(fd);
        free(buf);
        return (double) n / t0;
}

static void bench_list(unsigned n_devices, const char *tree, double goal) {
        double broker[MAX_BUILDS], echo[MAX_BUILDS], ratio[MAX_BUILDS], bytes[MAX_BUILDS];
        char figure[96], goal_text[32], echo_path[512];

        use_tree(tree);
        snprintf(echo_path, sizeof(echo_path), "%s/echo.sock", arg.tmp);
        for (size_t i = 0; i < arg.n_builds; i++) {
                char *reply = NULL;
                size_t size = 0, len;
                Broker b;
                pid_t echo_pid;
                int fd;

                start(i, false, 0, &b);
                fd = vl_connect(b.socket);
                len = vl_call(fd, list_call, &reply, &size);
                close(fd);
                if (!strstr(reply, "\"devices\""))
                        die("ListDevices failed: %.200s", reply);
                bytes[i] = (double) len;
                echo_pid = echo_server_start(echo_path, reply, len + 1);
                /* Alternate, so both see the same load. */
                broker[i] = calls_per_sec(b.socket, list_call);
                echo[i] = calls_per_sec(echo_path, list_call);
                broker[i] = (broker[i] + calls_per_sec(b.socket, list_call)) / 2;
                echo[i] = (echo[i] + calls_per_sec(echo_path, list_call)) / 2;
                ratio[i] = echo[i] / broker[i];
                kill_and_wait(echo_pid);
                broker_stop(&b);
                free(reply);
        }
        snprintf(figure, sizeof(figure), "ListDevices calls/s, %u devices", n_devices);
        snprintf(goal_text, sizeof(goal_text), ">= %.0f", goal);
        row(figure, goal_text, broker, 0, last(broker) >= goal);
        snprintf(figure, sizeof(figure), "  reply bytes, %u devices", n_devices);
        row(figure, "", bytes, 0, true);
        snprintf(figure, sizeof(figure), "  echo server, same bytes, calls/s");
        row(figure, "", echo, 0, true);
        snprintf(figure, sizeof(figure), "  echo / broker, %u devices", n_devices);
        row(figure, "<= 2.0", ratio, 2, last(ratio) <= 2.0);
}

/* --- Acquire+Release --- */

static const char acquire_call[] =
        "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[\"" DEVICE "\"],\"mode\":\"attached\"}}";
static const char release_call[] = "{\"method\":\"io.iommufd.Broker.Release\",\"parameters\":{}}";

typedef struct PairResult {
        double per_sec;         /* wall clock */
        double cpu_us;          /* the broker's CPU per pair */
        size_t all_pairs;       /* measured and warm-up */
} PairResult;

static void varlink_pair(int fd, char **buf, size_t *size) {
        vl_call(fd, acquire_call, buf, size);
        if (strstr(*buf, "\"error\""))
                die("Acquire failed: %.300s", *buf);
        vl_call(fd, release_call, buf, size);
        if (strstr(*buf, "\"error\""))
                die("Release failed: %.300s", *buf);
}

/* Until the deadline: the pairs of a paced figure start on a schedule. */
static void sleep_until(double deadline) {
        double left = deadline - now_sec();

        if (left > 0)
                usleep((useconds_t) (left * 1e6));
}

/* As fast as one connection to socket goes, or, with per_sec > 0, at that
 * rate; CPU is pid's. */
static PairResult varlink_pairs_on(const char *socket, pid_t pid, double per_sec) {
        double t0, seconds = seconds_per_figure();
        char *buf = NULL;
        size_t size = 0, n = 0;
        uint64_t cpu0;
        int fd = vl_connect(socket);

        for (int i = 0; i < 20; i++)
                varlink_pair(fd, &buf, &size);
        cpu0 = process_cpu_ns(pid);
        t0 = now_sec();
        do {
                for (int i = 0; i < 10; i++, n++) {
                        if (per_sec > 0)
                                sleep_until(t0 + (double) n / per_sec);
                        varlink_pair(fd, &buf, &size);
                }
        } while (arg.fixed_pairs ? n < arg.fixed_pairs : now_sec() - t0 < seconds);
        t0 = now_sec() - t0;
        close(fd);
        free(buf);
        return (PairResult) { (double) n / t0, (double) (process_cpu_ns(pid) - cpu0) / 1e3 / (double) n, n + 20 };
}

static PairResult varlink_pairs_at(const Broker *b, double per_sec) {
        return varlink_pairs_on(b->socket, b->pid, per_sec);
}

static PairResult varlink_pairs(const Broker *b) {
        return varlink_pairs_at(b, 0);
}

static void dbus_pair(sd_bus *bus, const char *destination) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, destination, "/io/iommufd/Broker1", "io.iommufd.Broker1",
                               "AcquireDevices", &error, &reply, "asa{sv}", 1, DEVICE, 1, "mode", "s", "attached");
        if (r < 0)
                die("D-Bus AcquireDevices: %s", error.message ?: strerror(-r));
        sd_bus_message_unref(reply);    /* closes the fds it carried */
        r = sd_bus_call_method(bus, destination, "/io/iommufd/Broker1", "io.iommufd.Broker1",
                               "ReleaseDevices", &error, NULL, "as", 0);
        if (r < 0)
                die("D-Bus ReleaseDevices: %s", error.message ?: strerror(-r));
}

/* The pairs to destination on the bench's bus; CPU is pid's. */
static PairResult dbus_pairs_to(const char *destination, pid_t pid) {
        double t0, seconds = seconds_per_figure();
        sd_bus *bus = NULL;
        size_t n = 0;
        uint64_t cpu0;

        if (sd_bus_new(&bus) < 0 || sd_bus_set_address(bus, arg.bus_address) < 0 ||
            sd_bus_set_bus_client(bus, 1) < 0 || sd_bus_negotiate_fds(bus, 1) < 0 || sd_bus_start(bus) < 0)
                die("cannot connect to the private bus");
        for (int i = 0; i < 20; i++)
                dbus_pair(bus, destination);
        cpu0 = process_cpu_ns(pid);
        t0 = now_sec();
        do {
                for (int i = 0; i < 10; i++, n++)
                        dbus_pair(bus, destination);
        } while (arg.fixed_pairs ? n < arg.fixed_pairs : now_sec() - t0 < seconds);
        t0 = now_sec() - t0;
        sd_bus_flush_close_unref(bus);
        return (PairResult) { (double) n / t0, (double) (process_cpu_ns(pid) - cpu0) / 1e3 / (double) n };
}

static PairResult dbus_pairs(const Broker *b) {
        return dbus_pairs_to("io.iommufd.Broker1", b->pid);
}

/* The same pairs to servers that only answer them (bench-floor.c): what
 * the transports cost, D-Bus time / varlink time. */
static double floor_ratio(double *ret_varlink, double *ret_dbus) {
        char path[512];
        PairResult v, d;
        pid_t pv, pd;

        snprintf(path, sizeof(path), "%s/floor.sock", arg.tmp);
        pv = floor_varlink_start(path);
        pd = floor_dbus_start(arg.bus_address);
        v = varlink_pairs_on(path, pv, 0);
        d = dbus_pairs_to(FLOOR_DBUS_NAME, pd);
        kill_and_wait(pv);
        kill_and_wait(pd);
        *ret_varlink = v.per_sec;
        *ret_dbus = d.per_sec;
        return v.per_sec / d.per_sec;
}

/* The subscribers' events once no more come (at most 3 s). */
static uint64_t monitor_events_settled(void) {
        uint64_t last = monitors_events();

        for (int i = 0; i < 30; i++) {
                uint64_t now;

                usleep(100 * 1000);
                now = monitors_events();
                if (now == last)
                        break;
                last = now;
        }
        return last;
}

/* Whether the subscribers' reader kept up during the figure: every stream got
 * as many events as every other (a pair makes 5 or 6, as the broker's loop
 * turns fall), and no more than 5 % of them came after the figure ended (a
 * reader far behind leaves the broker writing into full sockets, which costs
 * it less than the figure claims). A stream the broker dropped for falling
 * behind ends the reader, which the caller checks. */
static bool monitor_reader_kept_up(const char *name, unsigned monitors, size_t pairs, uint64_t at_end, bool say) {
        uint64_t total = monitor_events_settled();
        double late = total > 0 ? 100.0 * (double) (total - at_end) / (double) total : 100;
        bool even = total > 0 && total % monitors == 0, ok = even && late <= 5;

        if (say || !ok)
                printf("  (%s: the Monitor reader got %llu events, %.2f per stream per pair%s; %.1f%% after the "
                       "figure ended%s)\n", name, (unsigned long long) total, (double) total / monitors / (double) pairs,
                       even ? "" : ", NOT the same number on every stream", late,
                       ok ? "" : ": it did not keep up, the figure does not count");
        return ok;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* Median of v[0..n), sorting v. */
static double median(double *v, size_t n) {
        if (n == 0)
                return 0;
        qsort(v, n, sizeof(double), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The rate of the Monitor figures, with and without subscribers, and how
 * many times each is measured. */
#define MONITOR_PAIRS_PER_SEC 1000
#define MONITOR_ROUNDS 5

static void bench_acquire(void) {
        double alone[MAX_BUILDS], alone_cpu[MAX_BUILDS], vl_bus_cpu[MAX_BUILDS], bus_ratio[MAX_BUILDS];
        double dbus_rate[MAX_BUILDS], dbus_ratio[MAX_BUILDS], mon_cpu[MAX_BUILDS], mon_ratio[MAX_BUILDS];
        double paced_cpu[MAX_BUILDS], floor, floor_v, floor_d;
        unsigned monitors = arg.short_mode ? 10 : 100, rounds = arg.short_mode ? 1 : MONITOR_ROUNDS;
        double round_paced[MONITOR_ROUNDS], round_mon[MONITOR_ROUNDS], round_ratio[MONITOR_ROUNDS];
        bool mon_dropped[MAX_BUILDS] = {}, mon_valid[MAX_BUILDS] = {};
        char figure[96];

        use_tree(arg.tree16);
        for (size_t i = 0; i < arg.n_builds; i++) {
                PairResult a, paced, v, d, m;
                uint64_t at_end;
                bool dropped;
                Broker b;
                pid_t mon;

                start(i, false, 200, &b);
                a = varlink_pairs(&b);
                /* Paced, the CPU a pair costs moves with how the idle vCPUs
                 * wake up: rounds without and with the subscribers, one
                 * after the other, and the medians. */
                mon_valid[i] = true;
                for (unsigned k = 0; k < rounds; k++) {
                        paced = varlink_pairs_at(&b, MONITOR_PAIRS_PER_SEC);
                        mon = monitors_start(b.socket, monitors);
                        m = varlink_pairs_at(&b, MONITOR_PAIRS_PER_SEC);
                        /* The subscribers exit when the broker drops one that
                         * fell behind (its per-stream or per-uid output cap):
                         * then the figure was measured with fewer streams
                         * than it says. */
                        at_end = monitors_events();
                        dropped = child_exited(mon);
                        mon_valid[i] = monitor_reader_kept_up(arg.names[i], monitors, m.all_pairs, at_end,
                                                              k + 1 == rounds) && mon_valid[i];
                        /* Or while the last events came. */
                        dropped = dropped || child_exited(mon);
                        mon_dropped[i] = mon_dropped[i] || dropped;
                        if (!dropped)
                                kill_and_wait(mon);
                        round_paced[k] = paced.cpu_us;
                        round_mon[k] = m.cpu_us;
                        round_ratio[k] = m.cpu_us / paced.cpu_us;
                }
                mon_valid[i] = mon_valid[i] && !mon_dropped[i];
                broker_stop(&b);

                start(i, true, 200, &b);
                usleep(200000);         /* the bus name is requested right after READY */
                v = varlink_pairs(&b);
                d = dbus_pairs(&b);
                broker_stop(&b);

                alone[i] = a.per_sec;
                alone_cpu[i] = a.cpu_us;
                vl_bus_cpu[i] = v.cpu_us;
                bus_ratio[i] = v.cpu_us / a.cpu_us;
                dbus_rate[i] = d.per_sec;
                dbus_ratio[i] = v.per_sec / d.per_sec;
                paced_cpu[i] = median(round_paced, rounds);
                mon_cpu[i] = median(round_mon, rounds);
                mon_ratio[i] = median(round_ratio, rounds);
        }
        floor = floor_ratio(&floor_v, &floor_d);
        row("Acquire+Release pairs/s, varlink", ">= 8000", alone, 0, last(alone) >= 8000);
        row("  broker CPU us/pair, varlink alone", "", alone_cpu, 1, true);
        row("  broker CPU us/pair, D-Bus front end up", "", vl_bus_cpu, 1, true);
        row("  CPU with D-Bus up / alone", "<= 1.10", bus_ratio, 2, last(bus_ratio) <= 1.10);
        row("Acquire+Release pairs/s, D-Bus", "", dbus_rate, 0, true);
        row("  D-Bus time / varlink time (both up)", "<= 1.30", dbus_ratio, 2, last(dbus_ratio) <= 1.30);
        printf("  (the transport floor: the same pairs to servers that only answer them: %.0f/s varlink, %.0f/s "
               "D-Bus, D-Bus time / varlink time %.2f)\n", floor_v, floor_d, floor);
        /* Paced: at full speed 100 streams carry most of a GB/s of events,
         * more than one reader process takes on a shared 2-core machine;
         * the broker then drops them (its output caps) and the figure
         * would measure fewer streams than it says. */
        printf("  (the Monitor figures: %d pairs/s, with and without subscribers, medians of %u rounds)\n",
               MONITOR_PAIRS_PER_SEC, rounds);
        row("  broker CPU us/pair, no Monitor streams", "", paced_cpu, 1, true);
        snprintf(figure, sizeof(figure), "  broker CPU us/pair, %u Monitor streams", monitors);
        row(figure, "", mon_cpu, 1, true);
        snprintf(figure, sizeof(figure), "  CPU with %u Monitors / none", monitors);
        row(figure, "<= 1.50", mon_ratio, 2, last(mon_ratio) <= 1.50 && mon_valid[arg.n_builds - 1]);
        for (size_t i = 0; i < arg.n_builds; i++)
                if (mon_dropped[i])
                        printf("  (%s: the broker dropped Monitor streams that fell behind during the figure: "
                               "it counts fewer streams than %u, and does not meet the goal)\n", arg.names[i],
                               monitors);
}

/* Only the plain varlink pairs, for a profiler (BENCH_BROKER_WRAP). */
static void bench_pairs(void) {
        const char *monitors = getenv("BENCH_MONITORS");
        double rate[MAX_BUILDS], cpu[MAX_BUILDS];

        if (getenv("BENCH_FLOOR")) {
                double v, d, ratio = floor_ratio(&v, &d);

                printf("floor: %.0f/s varlink, %.0f/s D-Bus, ratio %.2f\n", v, d, ratio);
                return;
        }
        use_tree(arg.tree16);
        for (size_t i = 0; i < arg.n_builds; i++) {
                pid_t mon = 0;
                PairResult a;
                Broker b;

                start(i, getenv("BENCH_DBUS"), 200, &b);
                if (getenv("BENCH_DBUS"))
                        usleep(200000);         /* the bus name is requested right after READY */
                if (monitors)
                        mon = monitors_start(b.socket, (unsigned) strtoul(monitors, NULL, 10));
                /* BENCH_DBUS=calls: the pairs over D-Bus instead. */
                a = getenv("BENCH_DBUS") && strcmp(getenv("BENCH_DBUS"), "calls") == 0 ? dbus_pairs(&b) :
                    varlink_pairs_at(&b, getenv("BENCH_PACE") ? strtod(getenv("BENCH_PACE"), NULL) : 0);
                if (mon > 0)
                        kill_and_wait(mon);
                broker_stop(&b);
                rate[i] = a.per_sec;
                cpu[i] = a.cpu_us;
        }
        row("Acquire+Release pairs/s, varlink", ">= 8000", rate, 0, last(rate) >= 8000);
        row("  broker CPU us/pair, varlink alone", "", cpu, 1, true);
}

/* --- concurrent sessions --- */


static const char info_call[] = "{\"method\":\"org.varlink.service.GetInfo\"}";

/* How many sessions the broker can hold: a socket and a pidfd each, under
 * the hard fd limit it inherits from here, less its own reserve of 256
 * (--max-connections asks for exactly that much, see sandbox.c). */
static unsigned sessions_that_fit(unsigned want) {
        struct rlimit rl;
        unsigned fit;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_max == RLIM_INFINITY)
                return want;
        fit = rl.rlim_max > 512 + 64 ? (unsigned) ((rl.rlim_max - 256) / 2) - 32 : 64;
        if (fit < want)
                printf("  (the hard fd limit %llu leaves room for %u sessions, 2 fds each: %u need %u)\n",
                       (unsigned long long) rl.rlim_max, fit, want, 2 * want + 256 + 64);
        return fit < want ? fit : want;
}

static void bench_sessions(void) {
        unsigned want = arg.short_mode ? 1000 : 10000, n = sessions_that_fit(want), tenth;
        double linear[MAX_BUILDS], linear_sums[MAX_BUILDS], rss_per[MAX_BUILDS], total[MAX_BUILDS];
        char figure[96];

        use_tree(arg.tree16);
        for (size_t i = 0; i < arg.n_builds; i++) {
                int *fds = calloc(n, sizeof(int));
                double *times = calloc(n, sizeof(double));
                double first = 0, final = 0, t0 = now_sec();
                char *buf = NULL;
                size_t size = 0;
                long rss0;
                Broker b;

                /* Root's: the global cap is the one that binds (--max-connections,
                 * which an older build may not know: then its default cap). */
                start_with(i, false, n + 100, broker_has_option(arg.builds[i], "--max-connections ") ? n + 100 : 0,
                           &b);
                /* Warm: one call, so the first batch pays no first-call costs. */
                fds[0] = vl_connect(b.socket);
                vl_call(fds[0], list_call, &buf, &size);
                close(fds[0]);
                usleep(50000);
                rss0 = process_rss_kib(b.pid);
                /* A quadratic accept path takes minutes at 10,000: stop at
                 * a time limit and compare the tenths of what was made. */
                double limit = arg.short_mode ? 20 : 120;
                unsigned made = 0;
                for (unsigned k = 0; k < n && now_sec() - t0 < limit; k++, made++) {
                        double t = now_sec();
                        char reply[4096];
                        int r;

                        fds[k] = vl_try_connect(b.socket);
                        r = fds[k] < 0 ? fds[k] : vl_try_call(fds[k], info_call, reply, sizeof(reply));
                        if (r < 0) {
                                printf("  (%s: session %u refused: %s)\n", arg.names[i], k + 1, strerror(-r));
                                if (fds[k] >= 0)
                                        close(fds[k]);
                                break;
                        }
                        times[k] = now_sec() - t;
                }
                if (made < n)
                        printf("  (%s: %u of %u sessions%s; the figures below are for those)\n", arg.names[i], made,
                               n, now_sec() - t0 >= limit ? ", out of time" : ", the broker's connection cap");
                tenth = made / 10;
                for (unsigned k = 0; k < tenth; k++) {
                        first += times[k];
                        final += times[made - 1 - k];
                }
                total[i] = now_sec() - t0;
                rss_per[i] = made > 0 ? (double) (process_rss_kib(b.pid) - rss0) / made : -1;
                linear_sums[i] = tenth > 0 ? final / first : -1;
                /* Medians of the per-session times: a burst of another
                 * process's work (this machine is shared) lands in a few
                 * sessions and moves a sum, but not a median; a cost that
                 * grows with the number of sessions moves every one. */
                linear[i] = tenth > 0 ? median(times + made - tenth, tenth) / median(times, tenth) : -1;
                for (unsigned k = 0; k < made; k++)
                        close(fds[k]);
                broker_stop(&b);
                free(fds);
                free(times);
                free(buf);
        }
        snprintf(figure, sizeof(figure), "%u sessions: set-up, last/first 10%%, median", n);
        row(figure, "<= 1.20", linear, 2, last(linear) >= 0 && last(linear) <= 1.20);
        row("  the same, sums of the times", "", linear_sums, 2, true);
        row("  set-up total, s", "", total, 2, true);
        row("  RSS per session, KiB", "<= 8", rss_per, 2, last(rss_per) >= 0 && last(rss_per) <= 8);
}

/* --- start-up and memory --- */


static double startup_ms(size_t build, const char *tree, long *ret_rss) {
        unsigned runs = arg.short_mode ? 1 : 11;
        double t[11];

        use_tree(tree);
        for (unsigned k = 0; k < runs; k++) {
                Broker b;

                start(build, false, 0, &b);
                t[k] = b.ready_sec * 1e3;
                if (ret_rss) {
                        char *buf = NULL;
                        size_t size = 0;
                        int fd = vl_connect(b.socket);
                        vl_call(fd, list_call, &buf, &size);       /* warm, as after first use */
                        close(fd);
                        free(buf);
                        /* Idle: the broker may still be between its last write of
                         * the reply and freeing it (on a loaded machine, for long). */
                        usleep(200 * 1000);
                        *ret_rss = process_rss_kib(b.pid);
                }
                broker_stop(&b);
        }
        qsort(t, runs, sizeof(double), cmp_double);
        return t[runs / 2];
}

static void bench_startup(void) {
        double t256[MAX_BUILDS], t1024[MAX_BUILDS], linear[MAX_BUILDS], rss[MAX_BUILDS];

        for (size_t i = 0; i < arg.n_builds; i++) {
                long kib = 0;

                t256[i] = startup_ms(i, arg.tree256, NULL);
                t1024[i] = startup_ms(i, arg.tree1024, &kib);
                linear[i] = (t1024[i] / 1024) / (t256[i] / 256);
                rss[i] = (double) kib / 1024;
        }
        row("Start-up to READY=1, 256 devices, ms", "<= 20", t256, 1, last(t256) <= 20);
        row("Start-up to READY=1, 1024 devices, ms", "<= 60", t1024, 1, last(t1024) <= 60);
        row("  per device at 1024 / per device at 256", "<= 1.20", linear, 2, last(linear) <= 1.20);
        row("Idle RSS, 1024 devices (after a list), MiB", "<= 4", rss, 2, last(rss) <= 4);
}

/* --- main --- */

static bool wanted(const char *group) {
        return !arg.only || strstr(arg.only, group);
}

static void parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                { "short", no_argument, NULL, 's' },
                { "broker", required_argument, NULL, 'b' },
                { "baseline", required_argument, NULL, 'B' },
                { "tmp", required_argument, NULL, 't' },
                { "tree16", required_argument, NULL, '1' },
                { "tree256", required_argument, NULL, '2' },
                { "tree1024", required_argument, NULL, '3' },
                { "preload", required_argument, NULL, 'p' },
                { "only", required_argument, NULL, 'o' },
                {}
        };
        const char *broker = NULL, *baseline = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 's': arg.short_mode = true; break;
                case 'b': broker = optarg; break;
                case 'B': baseline = optarg; break;
                case 't': arg.tmp = optarg; break;
                case '1': arg.tree16 = optarg; break;
                case '2': arg.tree256 = optarg; break;
                case '3': arg.tree1024 = optarg; break;
                case 'p': arg.preload = optarg; break;
                case 'o': arg.only = optarg; break;
                default: exit(2);
                }
        if (!broker || !arg.tmp || !arg.tree16 || !arg.tree256 || !arg.tree1024)
                die("usage: bench-broker [--short] [--baseline OLD] --broker BIN --tmp DIR "
                    "--tree16 DIR --tree256 DIR --tree1024 DIR [--preload SO]");
        if (baseline) {
                arg.builds[arg.n_builds] = baseline;
                arg.names[arg.n_builds++] = "before";
        }
        arg.builds[arg.n_builds] = broker;
        arg.names[arg.n_builds++] = baseline ? "after" : "this build";
}

int main(int argc, char *argv[]) {
        struct rlimit rl;
        pid_t bus;

        parse_argv(argc, argv);
        if (getenv("BENCH_PAIRS"))
                arg.fixed_pairs = strtoul(getenv("BENCH_PAIRS"), NULL, 10);
        /* 10,000 sessions: an fd each here and in the broker. */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || (rl.rlim_cur = rl.rlim_max) < 10300 ||
            setrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("cannot raise RLIMIT_NOFILE: %m");
        setvbuf(stdout, NULL, _IOLBF, 0);
        bus = dbus_daemon_start(arg.tmp, arg.bus_address, sizeof(arg.bus_address));

        printf("Broker bench%s: fake kernel, fake sysfs (no umockdev), each device in its own group.\n",
               arg.short_mode ? " (--short: tiny samples, figures meaningless)" : "");
        header();
        if (wanted("list")) {
                bench_list(16, arg.tree16, 25000);
                bench_list(256, arg.tree256, 10000);
        }
        if (wanted("acquire"))
                bench_acquire();
        if (arg.only && strstr(arg.only, "pairs"))
                bench_pairs();
        if (wanted("sessions"))
                bench_sessions();
        if (wanted("startup"))
                bench_startup();
        kill_and_wait(bus);
        printf("bench: %u goals met, %u not met%s\n", arg.goals_met, arg.goals_missed,
               arg.short_mode ? " (short mode: not meaningful)" : "");
        return 0;
}
