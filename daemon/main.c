/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <limits.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "dbus-broker.h"
#include "lease-store.h"
#include "log.h"
#include "manager.h"
#include "sandbox.h"
#include "varlink-broker.h"

/* KERNEL_OPS is kernel_ops_real in iommufd-broker and kernel_ops_fake in the
 * fast tier's iommufd-broker-fake (see meson.build). */
#ifndef KERNEL_OPS
#error "KERNEL_OPS must name the kernel backend"
#endif

#define DEFAULT_STATE_DIR "/run/iommufd-broker"

typedef enum FrontEndMode { FRONT_END_AUTO, FRONT_END_ON, FRONT_END_OFF } FrontEndMode;

static struct {
        const char *policy_path;
        const char *policy_dir;
        const char *varlink_path;
        const char *bus_address;
        FrontEndMode varlink;
        FrontEndMode dbus;
        bool check_config;
        bool seccomp;
        unsigned idle_timeout_sec;
        unsigned max_connections_per_uid;
        unsigned max_connections;
        const char *state_dir;
        unsigned polkit_timeout_sec;
} arg = {
        .varlink = FRONT_END_ON,
        .dbus = FRONT_END_AUTO,
        .seccomp = true,
};

static void help(void) {
        printf("Usage: iommufd-broker [OPTIONS]\n\n"
               "Hands VFIO devices and iommufd contexts to unprivileged clients.\n\n"
               "  --policy FILE            policy file (default %s)\n"
               "  --policy-dir DIR         drop-in directory (default %s)\n"
               "  --check-config           validate the policy and exit\n"
               "  --varlink-listen PATH    listen here instead of socket activation or %s\n"
               "  --no-varlink             no varlink front end\n"
               "  --bus-address ADDRESS    use this D-Bus bus instead of the system bus (D-Bus required)\n"
               "  --dbus / --no-dbus       require / disable the D-Bus front end (default: use the system\n"
               "                           bus if there is one)\n"
               "  --idle-timeout SEC       close idle varlink connections after SEC seconds\n"
               "  --max-connections-per-uid N\n"
               "                           varlink connections and D-Bus sessions of one user, together\n"
               "                           (default 64; root is never refused)\n"
               "  --max-connections N      varlink connections and D-Bus sessions of all users, together\n"
               "                           (default 1024, the last 32 root's; at most what the fd limit\n"
               "                           allows)\n"
               "  --polkit-timeout SEC     give up on polkit after SEC seconds (default 20; 12x that\n"
               "                           when interactive authentication is allowed)\n"
               "  --no-seccomp             do not install the in-process seccomp filter (debugging)\n"
               "  --state-dir DIR          lease records under DIR/leases (default %s; the fast\n"
               "                           tier's fake-kernel daemon keeps none unless given)\n"
               "  --version, --help\n",
               POLICY_PATH, POLICY_DROPIN_DIR, BROKER_DEFAULT_SOCKET, DEFAULT_STATE_DIR);
}

static int parse_uint(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > 1000000)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_POLICY = 0x100, ARG_POLICY_DIR, ARG_CHECK_CONFIG, ARG_VARLINK_LISTEN, ARG_NO_VARLINK,
               ARG_BUS_ADDRESS, ARG_DBUS, ARG_NO_DBUS, ARG_IDLE_TIMEOUT, ARG_MAX_CONN, ARG_MAX_CONN_ALL, ARG_NO_SECCOMP,
               ARG_VERSION,
               ARG_STATE_DIR, ARG_POLKIT_TIMEOUT };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "policy", required_argument, NULL, ARG_POLICY },
                { "policy-dir", required_argument, NULL, ARG_POLICY_DIR },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "varlink-listen", required_argument, NULL, ARG_VARLINK_LISTEN },
                { "no-varlink", no_argument, NULL, ARG_NO_VARLINK },
                { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
                { "dbus", no_argument, NULL, ARG_DBUS },
                { "no-dbus", no_argument, NULL, ARG_NO_DBUS },
                { "idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT },
                { "max-connections-per-uid", required_argument, NULL, ARG_MAX_CONN },
                { "max-connections", required_argument, NULL, ARG_MAX_CONN_ALL },
                { "no-seccomp", no_argument, NULL, ARG_NO_SECCOMP },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "polkit-timeout", required_argument, NULL, ARG_POLKIT_TIMEOUT },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("iommufd-broker %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_POLICY:
                        arg.policy_path = optarg;
                        break;
                case ARG_POLICY_DIR:
                        arg.policy_dir = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        arg.check_config = true;
                        break;
                case ARG_VARLINK_LISTEN:
                        arg.varlink_path = optarg;
                        break;
                case ARG_NO_VARLINK:
                        arg.varlink = FRONT_END_OFF;
                        break;
                case ARG_BUS_ADDRESS:
                        arg.bus_address = optarg;
                        arg.dbus = FRONT_END_ON;
                        break;
                case ARG_DBUS:
                        arg.dbus = FRONT_END_ON;
                        break;
                case ARG_NO_DBUS:
                        arg.dbus = FRONT_END_OFF;
                        break;
                case ARG_IDLE_TIMEOUT:
                        if (parse_uint(optarg, &arg.idle_timeout_sec) < 0 || arg.idle_timeout_sec == 0) {
                                log_error("--idle-timeout: not a number of seconds: %s", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_MAX_CONN:
                        if (parse_uint(optarg, &arg.max_connections_per_uid) < 0 ||
                            arg.max_connections_per_uid == 0) {
                                log_error("--max-connections-per-uid: not a positive number: %s", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_MAX_CONN_ALL:
                        if (parse_uint(optarg, &arg.max_connections) < 0 || arg.max_connections == 0) {
                                log_error("--max-connections: not a positive number: %s", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_POLKIT_TIMEOUT:
                        if (parse_uint(optarg, &arg.polkit_timeout_sec) < 0 || arg.polkit_timeout_sec == 0) {
                                log_error("--polkit-timeout: not a positive number of seconds: %s", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_NO_SECCOMP:
                        arg.seccomp = false;
                        break;
                case ARG_STATE_DIR:
                        arg.state_dir = optarg;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("Unexpected argument: %s", argv[optind]);
                return -EINVAL;
        }
        if (arg.varlink == FRONT_END_OFF && arg.dbus == FRONT_END_OFF) {
                log_error("--no-varlink and --no-dbus leave no way in");
                return -EINVAL;
        }
        return 1;
}

static int check_config(void) {
        _cleanup_(policy_freep) Policy *p = NULL;
        int r;

        r = policy_load(arg.policy_path ?: POLICY_PATH, arg.policy_dir ?: POLICY_DROPIN_DIR, stderr, &p);
        if (r < 0) {
                fprintf(stderr, "policy has errors\n");
                return r;
        }
        printf("policy OK: %zu rules\n", policy_n_rules(p));
        return 0;
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        sd_notify(false, "RELOADING=1");
        (void) manager_reload_policy(m);
        sd_notify(false, "READY=1");
        return 0;
}

/* Startup summary: on a host without iommufd this is where an operator learns
 * why nothing can be acquired. */
static void log_inventory_summary(Manager *m) {
        size_t n, available = 0;
        Device *const *devices = inventory_devices(manager_inventory(m), &n);
        const char *why = manager_kernel_unsupported_reason(m);

        for (size_t i = 0; i < n; i++)
                if (manager_device_state(m, devices[i], NULL) == DEVICE_STATE_AVAILABLE)
                        available++;
        log_info("%zu PCI devices, %zu available", n, available);
        if (why)
                log_warning("No device can be acquired: %s", why);
}

static int start_dbus(Manager *m, DbusBroker **ret) {
        int r;

        if (arg.dbus == FRONT_END_OFF)
                return 0;
        r = dbus_broker_start(m, arg.bus_address, ret);
        if (r < 0 && arg.dbus == FRONT_END_AUTO) {
                log_warning_errno(r, "No D-Bus front end: cannot use the system bus: %m");
                return 0;
        }
        return r;
}

static int start_varlink(Manager *m, VarlinkServer **ret) {
        const char *path = arg.varlink_path;
        VarlinkLimits limits = varlink_limits_default();

        if (arg.varlink == FRONT_END_OFF)
                return 0;
        if (arg.idle_timeout_sec)
                limits.idle_timeout_usec = (uint64_t) arg.idle_timeout_sec * 1000000ULL;
        if (!path && varlink_passed_fds() <= 0) {
                path = BROKER_DEFAULT_SOCKET;
                (void) mkdir("/run/iommufd-broker", 0755);
        }
        return varlink_broker_start(m, path, &limits, ret);
}

/* The caps on clients of both front ends together (quota.h); the global
 * one sized to the fd limit, since each client holds fds. */
static QuotaLimits quota_limits_from_args(void) {
        unsigned all = arg.max_connections ?: QUOTA_DEFAULT_MAX_CLIENTS;

        return (QuotaLimits) {
                .max_clients_per_uid = arg.max_connections_per_uid,
                .max_clients = sandbox_max_connections(all, arg.max_connections > 0),
        };
}

/* What the service manager kept for us across a restart: our own fds by
 * name (iommufd-<session>, pidfd-<session>); sockets stay for varlink. */
typedef struct StoredFds {
        int *fds;
        char **names;
        size_t n;
} StoredFds;

static void stored_fds_done(StoredFds *s) {
        for (size_t i = 0; i < s->n; i++)
                safe_close(s->fds[i]);
        free(s->fds);
        strv_free(s->names);
        *s = (StoredFds) {};
}

static int collect_stored_fds(StoredFds *ret) {
        _cleanup_strv_free_ char **names = NULL;
        int n;

        *ret = (StoredFds) {};
        n = sd_listen_fds_with_names(false, &names);
        if (n <= 0)
                return 0;
        ret->fds = calloc(n, sizeof(int));
        if (!ret->fds)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                char kind[FDSTORE_KIND_MAX];
                uint64_t id;

                if (!names || !names[i] || fdstore_parse_name(names[i], kind, sizeof(kind), &id) < 0)
                        continue;
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                if (strv_extend(&ret->names, names[i]) < 0)
                        return -ENOMEM;
                ret->fds[ret->n++] = fd;
        }
        return 0;
}

/* One broker per state directory. A second one (an admin starting the
 * daemon by hand while the service runs) took over the first one's records
 * as if after a restart: it finished "cut short" rebinds that were in fact
 * in flight, restoring the host driver under the running service, rewrote
 * or removed their records, and only then found the socket in use. The lock
 * goes with the process (workers close it before they do anything). */
static int lock_state_dir(const char *dir, int *ret_fd) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return log_error_errno(errno, "Cannot open the state directory %s: %m", dir);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return log_error_errno(EBUSY, "Another iommufd-broker is running with the state directory "
                                               "%s (its leases and records are its own); not starting", dir);
                return log_error_errno(errno, "Cannot lock the state directory %s: %m", dir);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* The fake-kernel test daemon must not touch the real lease records. */
static bool kernel_is_real(const KernelOps *k) {
        return k == &kernel_ops_real;
}

static int run(void) {
        /* Declared first, released last: after the manager is gone. */
        _cleanup_close_ int state_lock = -EBADF;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(manager_freep) Manager *m = NULL;
        StoredFds stored = {};
        VarlinkServer *varlink = NULL;
        DbusBroker *dbus = NULL;
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        /* A client that vanishes mid-reply must not kill the broker. */
        signal(SIGPIPE, SIG_IGN);

        /* Before anything opens fds: the connection cap is sized from it. */
        (void) sandbox_raise_fd_limit();

        /* glibc's default threshold rises to the largest block freed, after
         * which a large list reply (405 KiB for 1,024 devices) is carved from
         * the heap and stays there while the broker idles. Fixed, blocks this
         * large are mapped and unmapped whole. */
        (void) mallopt(M_MMAP_THRESHOLD, 128 * 1024);

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Cannot create event loop: %m");
        (void) sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        (void) sd_event_set_watchdog(event, true);

        char lease_dir[PATH_MAX] = "";
        const char *state_dir = arg.state_dir ?: (kernel_is_real(&KERNEL_OPS) ? DEFAULT_STATE_DIR : NULL);
        if (state_dir) {
                (void) mkdir(state_dir, 0755);
                r = lock_state_dir(state_dir, &state_lock);
                if (r < 0)
                        return r;
                snprintf(lease_dir, sizeof(lease_dir), "%s/leases", state_dir);
        }
        if (!fdstore_available())
                log_notice("Not started by systemd (no $NOTIFY_SOCKET): no fd store, so a restart keeps leases "
                           "only as far as their records under %s allow", *lease_dir ? lease_dir : "(none)");

        r = collect_stored_fds(&stored);
        if (r < 0)
                return log_error_errno(r, "Cannot take the stored fds: %m");
        r = manager_new(event, &(ManagerConfig) {
                .policy_path = arg.policy_path,
                .policy_dropin_dir = arg.policy_dir,
                .kernel = &KERNEL_OPS,
                .lease_dir = *lease_dir ? lease_dir : NULL,
                .stored_fds = stored.fds,
                .stored_fd_names = stored.names,
                .n_stored_fds = stored.n,
                /* polkit lives on the bus the D-Bus front end uses (a test bus, or the system bus). */
                .polkit_bus_address = arg.bus_address,
                .polkit_timeout_usec = (uint64_t) arg.polkit_timeout_sec * 1000000ULL,
                .quota = quota_limits_from_args(),
        }, &m);
        stored.n = 0;   /* taken */
        stored_fds_done(&stored);
        if (r < 0)
                return log_error_errno(r, "Cannot start: %m");
        (void) sd_event_add_signal(event, NULL, SIGHUP, on_reload, m);

        r = start_varlink(m, &varlink);
        if (r >= 0)
                r = start_dbus(m, &dbus);
        if (r < 0) {
                log_error_errno(r, "Cannot start the front ends: %m");
                goto finish;
        }

        /* Last: everything that opens sockets or loads libraries is done. */
        if (arg.seccomp) {
                r = sandbox_install_seccomp_filter();
                if (r < 0)
                        goto finish;
        }

        log_inventory_summary(m);
        /* Start-up's temporaries (sysfs reads, policy parsing, libraries'
         * set-up) are freed between what stays: their pages need not. */
        (void) malloc_trim(0);
        sd_notify(false, "READY=1\nSTATUS=Processing requests...");
        r = sd_event_loop(event);
        sd_notify(false, "STOPPING=1\nSTATUS=Shutting down...");
        /* sd-bus exits the loop with EXIT_FAILURE when it loses the bus: fail,
         * so that Restart=on-failure brings us back. */
        if (r > 0) {
                log_error("Lost the D-Bus connection; exiting with failure so the service manager restarts us");
                r = -ECONNRESET;
        }

finish:
        /* Leases outlive the daemon: the front ends' sessions go, their
         * leases stay in the records and the fd store for the next start. */
        if (m)
                manager_begin_shutdown(m);
        dbus_broker_free(dbus);
        varlink_server_free(varlink);
        return r;
}

int main(int argc, char *argv[]) {
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        if (arg.check_config)
                return check_config() < 0 ? 1 : 0;
        return run() < 0 ? 1 : 0;
}
