/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iommufdctl: look at the broker's devices, hold a lease from the shell, or
 * hand a lease to a VMM (`run`). Everything goes through libiommufd-broker,
 * so this is also its first consumer.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "broker-errors.h"
#include "config.h"
#include "iommufd-broker.h"
#include "run-args.h"
#include "run-memlock.h"
#include "util.h"

#define EXIT_BROKER 1
#define EXIT_USAGE  2

static iommufd_broker_transport arg_transport = IOMMUFD_BROKER_TRANSPORT_VARLINK;
static const char *arg_address;

static void broker_freep(iommufd_broker **b) {
        iommufd_broker_disconnect(*b);
}
static void lease_freep(iommufd_broker_lease **l) {
        iommufd_broker_lease_free(*l);
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("iommufdctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'iommufdctl --help'.\n", stderr);
        return EXIT_USAGE;
}

/* "iommufdctl: <Name>: <message>", from the handle or, without one, from r. */
static int broker_failed(const iommufd_broker *b, int r, const char *what) {
        const char *name = iommufd_broker_error_name(b);

        if (name)
                fprintf(stderr, "iommufdctl: %s: %s\n", name, iommufd_broker_error_message(b));
        else
                fprintf(stderr, "iommufdctl: %s: %s\n", what, strerror(-r));
        return EXIT_BROKER;
}

static int connect_broker(iommufd_broker **ret) {
        const char *address = arg_address;
        int r;

        r = iommufd_broker_connect(arg_transport, address, ret);
        if (r >= 0)
                return 0;
        /* A failed connect hands back no handle, so describe it here. */
        if (arg_transport == IOMMUFD_BROKER_TRANSPORT_VARLINK && !address) {
                address = getenv("IOMMUFD_BROKER_SOCKET");
                if (!address || !*address)
                        address = BROKER_DEFAULT_SOCKET;
        }
        fprintf(stderr, "iommufdctl: ConnectFailed: cannot connect to %s: %s\n",
                address ?: "the system bus", strerror(-r));
        return EXIT_BROKER;
}

/* --- list, info --- */

static json_t *device_to_json(const iommufd_broker_device *d) {
        json_t *v, *members = json_array();
        _cleanup_free_ char *copy = strdup(d->group_members);
        char *save = NULL;

        if (!members || !copy) {
                json_decref(members);
                return NULL;
        }
        for (char *m = strtok_r(copy, " ", &save); m; m = strtok_r(NULL, " ", &save))
                json_array_append_new(members, json_string(m));

        /* Field names as in the varlink Device type, whatever the transport. */
        v = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:b, s:b, s:o, s:s, s:o, s:o}",
                      "address", d->address,
                      "vendorId", d->vendor_id,
                      "deviceId", d->device_id,
                      "subsystemVendorId", d->subsystem_vendor_id,
                      "subsystemDeviceId", d->subsystem_device_id,
                      "class", (int) d->class_code,
                      "driver", d->driver[0] ? json_string(d->driver) : json_null(),
                      "iommuGroup", d->iommu_group >= 0 ? json_integer(d->iommu_group) : json_null(),
                      "groupMembers", members,
                      "vfioCdev", d->vfio_cdev[0] ? json_string(d->vfio_cdev) : json_null(),
                      "noiommu", d->noiommu,
                      "sriovVf", d->sriov_vf,
                      "iommu", d->iommu_type[0] ? json_pack("{s:s, s:I}", "type", d->iommu_type,
                                                            "capabilities", (json_int_t) d->iommu_capabilities)
                                                : json_null(),
                      "state", d->state,
                      "reason", d->reason[0] ? json_string(d->reason) : json_null(),
                      "holder", d->holder_session ? json_pack("{s:I, s:I, s:I}",
                                                              "session", (json_int_t) d->holder_session,
                                                              "uid", (json_int_t) d->holder_uid,
                                                              "pid", (json_int_t) d->holder_pid)
                                                  : json_null());
        return v;
}

static int print_json(json_t *v) {
        if (!v || json_dumpf(v, stdout, JSON_INDENT(2)) < 0) {
                fprintf(stderr, "iommufdctl: out of memory\n");
                return EXIT_BROKER;
        }
        putchar('\n');
        return 0;
}

/* What the last column says: the holder if we may see it, else the reason. */
static void format_note(const iommufd_broker_device *d, char *buf, size_t size) {
        if (d->holder_session)
                snprintf(buf, size, "session %" PRIu64 " uid %u pid %d", d->holder_session,
                         (unsigned) d->holder_uid, (int) d->holder_pid);
        else
                snprintf(buf, size, "%s", d->reason[0] ? d->reason : "-");
}

static void print_table(const iommufd_broker_device *devices, size_t n) {
        int driver_width = 6;

        for (size_t i = 0; i < n; i++)
                if ((int) strlen(devices[i].driver) > driver_width)
                        driver_width = (int) strlen(devices[i].driver);

        printf("%-12s  %-13s  %-6s  %-*s  %-5s  %-8s  %-11s  %s\n", "ADDRESS", "VENDOR:DEVICE", "CLASS",
               driver_width, "DRIVER", "GROUP", "CDEV", "STATE", "REASON/HOLDER");
        for (size_t i = 0; i < n; i++) {
                const iommufd_broker_device *d = &devices[i];
                char id[16], group[16], note[300];

                snprintf(id, sizeof(id), "%04x:%04x", d->vendor_id, d->device_id);
                if (d->iommu_group >= 0)
                        snprintf(group, sizeof(group), "%d", d->iommu_group);
                else
                        snprintf(group, sizeof(group), "-");
                format_note(d, note, sizeof(note));
                printf("%-12s  %-13s  %06" PRIx32 "  %-*s  %-5s  %-8s  %-11s  %s\n", d->address, id,
                       d->class_code, driver_width, d->driver[0] ? d->driver : "-", group,
                       d->vfio_cdev[0] ? d->vfio_cdev : "-", d->state, note);
        }
}

static int parse_json_flag(int argc, char **argv, const char *command, bool *ret_json, int *ret_optind) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                {}
        };
        int c;

        *ret_json = false;
        optind = 0;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                if (c != 'j')
                        return usage_error("%s: unknown option", command);
                *ret_json = true;
        }
        *ret_optind = optind;
        return 0;
}

static int cmd_list(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        _cleanup_free_ iommufd_broker_device *devices = NULL;
        size_t n = 0;
        bool json;
        int r, next = 0;

        r = parse_json_flag(argc, argv, "list", &json, &next);
        if (r != 0)
                return r;
        if (next < argc)
                return usage_error("list: unexpected argument '%s'", argv[next]);
        r = connect_broker(&b);
        if (r != 0)
                return r;
        r = iommufd_broker_list(b, &devices, &n);
        if (r < 0)
                return broker_failed(b, r, "list");
        if (json) {
                _cleanup_(json_decrefp) json_t *a = json_array();

                for (size_t i = 0; a && i < n; i++)
                        if (json_array_append_new(a, device_to_json(&devices[i])) < 0)
                                return print_json(NULL);
                return print_json(a);
        }
        print_table(devices, n);
        return 0;
}

static void print_info(const iommufd_broker_device *d) {
        char note[300];

        printf("Address:       %s\n", d->address);
        printf("Vendor:Device: %04x:%04x\n", d->vendor_id, d->device_id);
        printf("Subsystem:     %04x:%04x\n", d->subsystem_vendor_id, d->subsystem_device_id);
        printf("Class:         %06" PRIx32 "\n", d->class_code);
        printf("Driver:        %s\n", d->driver[0] ? d->driver : "-");
        if (d->iommu_group >= 0)
                printf("IOMMU group:   %d (%s)\n", d->iommu_group, d->group_members);
        else
                printf("IOMMU group:   -\n");
        printf("VFIO cdev:     %s\n", d->vfio_cdev[0] ? d->vfio_cdev : "-");
        if (d->iommu_type[0])
                printf("IOMMU:         %s (capabilities 0x%" PRIx64 ")\n", d->iommu_type, d->iommu_capabilities);
        printf("noiommu:       %s\n", d->noiommu ? "yes" : "no");
        printf("SR-IOV VF:     %s\n", d->sriov_vf ? "yes" : "no");
        printf("State:         %s\n", d->state);
        format_note(d, note, sizeof(note));
        printf("%s %s\n", d->holder_session ? "Holder:       " : "Reason:       ", note);
        /* A releasing lease has both: the holder who made it, and why the
         * device is not free yet (its fds live on, maybe in another process). */
        if (d->holder_session && d->reason[0])
                printf("Reason:        %s\n", d->reason);
}

static int cmd_info(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        iommufd_broker_device d;
        bool json;
        int r, next = 0;

        r = parse_json_flag(argc, argv, "info", &json, &next);
        if (r != 0)
                return r;
        if (argc - next != 1)
                return usage_error("info: expects exactly one device");
        r = connect_broker(&b);
        if (r != 0)
                return r;
        r = iommufd_broker_get(b, argv[next], &d);
        if (r < 0)
                return broker_failed(b, r, "info");
        if (json) {
                _cleanup_(json_decrefp) json_t *v = device_to_json(&d);
                return print_json(v);
        }
        print_info(&d);
        return 0;
}

static const char *value_of(const char *arg, const char *option);

/* revoke DEV [--timeout S]: ask the holder to let go; waits until it did. */
static int cmd_revoke(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        const char *device = NULL;
        unsigned long timeout = 30;
        int r;

        for (int i = 1; i < argc; i++) {
                const char *v = value_of(argv[i], "--timeout");

                if (streq(argv[i], "--timeout") || v) {
                        char *end;

                        if (!v && i + 1 >= argc)
                                return usage_error("revoke: --timeout needs seconds");
                        v = v ?: argv[++i];
                        errno = 0;
                        timeout = strtoul(v, &end, 10);
                        if (errno || end == v || *end || timeout == 0 || timeout > 3600)
                                return usage_error("revoke: --timeout takes 1..3600 seconds, not '%s'", v);
                } else if (argv[i][0] == '-')
                        return usage_error("revoke: unknown option '%s'", argv[i]);
                else if (device)
                        return usage_error("revoke: expects exactly one device");
                else
                        device = argv[i];
        }
        if (!device)
                return usage_error("revoke: expects a device");
        r = connect_broker(&b);
        if (r != 0)
                return r;
        r = iommufd_broker_revoke(b, device, (unsigned) timeout);
        if (r < 0)
                return broker_failed(b, r, "revoke");
        printf("%s: revoked\n", device);
        return 0;
}

/* --- Events and signals, for acquire, monitor and run --- */

static void print_event(FILE *f, const char *prefix, const iommufd_broker_event *e) {
        fprintf(f, "%s%s %s", prefix, e->type, e->address[0] ? e->address : "-");
        if (e->session)
                fprintf(f, " session=%" PRIu64, e->session);
        if (e->reason[0])
                fprintf(f, " reason=%s", e->reason);
        fputc('\n', f);
        fflush(f);
}

static bool lease_has_device(const iommufd_broker_lease *l, const char *address) {
        for (size_t i = 0; i < l->n_devices; i++)
                if (streq(l->devices[i].address, address))
                        return true;
        return false;
}

static bool event_ends_lease(const iommufd_broker_event *e, uint64_t session, const iommufd_broker_lease *l) {
        /* releasing: the broker or the kernel wants the device back (unplug,
         * revoke) and waits for our fds to close; let go. */
        if ((!streq(e->type, "lease-ended") && !streq(e->type, "lease-releasing")) || e->session != session)
                return false;
        return !l || lease_has_device(l, e->address);
}

/* Subscribe before acquiring, so that an end of the lease cannot slip by. */
static int watch_events(iommufd_broker *b) {
        int fd = iommufd_broker_event_fd(b);

        if (fd < 0)
                fprintf(stderr, "iommufdctl: warning: cannot watch broker events (%s: %s); "
                        "the end of the lease will go unnoticed\n",
                        strna(iommufd_broker_error_name(b)), strna(iommufd_broker_error_message(b)));
        return fd;
}

/* Block the signals we wait for, and hand them to a signalfd. SIGHUP ends
 * acquire and monitor like SIGINT (a closed terminal, a supervisor's hangup).
 * run passes on what a supervisor may send its command, as sudo and timeout
 * do: left at their default action they killed iommufdctl alone, so the
 * command ran on orphaned, never told, and its exit status was lost. */
static int signals_block(bool with_child, sigset_t *ret_old) {
        sigset_t mask;
        int fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        if (with_child) {
                sigaddset(&mask, SIGCHLD);
                sigaddset(&mask, SIGQUIT);
                sigaddset(&mask, SIGUSR1);
                sigaddset(&mask, SIGUSR2);
        }
        if (sigprocmask(SIG_BLOCK, &mask, ret_old) < 0)
                return -errno;
        fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        return fd < 0 ? -errno : fd;
}

static int read_signal(int sfd, struct signalfd_siginfo *ret) {
        ssize_t n = read(sfd, ret, sizeof(*ret));

        if (n < 0)
                return errno == EAGAIN ? 0 : -errno;
        return n == sizeof(*ret) ? 1 : -EIO;
}

/* poll() the signalfd and (if >= 0) the event fd. Bit 0: signal, bit 1: event. */
static int wait_for(int sfd, int event_fd) {
        struct pollfd p[2] = {
                { .fd = sfd, .events = POLLIN },
                { .fd = event_fd, .events = POLLIN },
        };
        int k;

        do
                k = poll(p, event_fd >= 0 ? 2 : 1, -1);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        return (p[0].revents ? 1 : 0) | (event_fd >= 0 && p[1].revents ? 2 : 0);
}

/* --- acquire, run: lease options --- */

typedef struct LeaseOptions {
        iommufd_broker_mode mode;
        unsigned flags;
        char **devices;
        size_t n_devices;
} LeaseOptions;

enum { OPT_MODE = 0x100, OPT_MANAGED, OPT_INTERACTIVE };

static int lease_option(LeaseOptions *o, int c, const char *command) {
        int m;

        switch (c) {
        case OPT_MODE:
                m = iommufd_broker_mode_from_string(optarg);
                if (m < 0)
                        return usage_error("%s: --mode must be unbound, bound or attached, not '%s'", command, optarg);
                o->mode = (iommufd_broker_mode) m;
                return 0;
        case OPT_MANAGED:
                o->flags |= IOMMUFD_BROKER_ACQUIRE_MANAGED;
                return 0;
        case OPT_INTERACTIVE:
                o->flags |= IOMMUFD_BROKER_ACQUIRE_INTERACTIVE;
                return 0;
        default:
                return usage_error("%s: unknown option", command);
        }
}

static void print_lease(const iommufd_broker_lease *l) {
        printf("session %" PRIu64 "\n", l->session);
        printf("iommufd fd=%d ioas_id=%" PRIu32 "\n", l->iommufd, l->ioas_id);
        for (size_t i = 0; i < l->n_devices; i++)
                printf("%s fd=%d dev_id=%" PRIu32 " hwpt_id=%" PRIu32 "\n", l->devices[i].address,
                       l->devices[i].fd, l->devices[i].dev_id, l->devices[i].hwpt_id);
        fflush(stdout);
}

/* Connect, start watching events (so none about the new lease is missed),
 * and acquire. Returns 0 or an exit code; *ret_b is set even on failure. */
static int open_lease(const LeaseOptions *o, iommufd_broker **ret_b, int *ret_event_fd,
                      iommufd_broker_lease **ret) {
        int r;

        r = connect_broker(ret_b);
        if (r != 0)
                return r;
        *ret_event_fd = watch_events(*ret_b);
        r = iommufd_broker_acquire(*ret_b, (const char *const *) o->devices, o->n_devices, o->mode, o->flags, ret);
        return r < 0 ? broker_failed(*ret_b, r, "acquire") : 0;
}

/* Events until none is pending: 1 if our lease ended, 0, or -1 on error (in b). */
static int drain_lease_events(iommufd_broker *b, uint64_t session, const iommufd_broker_lease *l) {
        iommufd_broker_event e;
        int r;

        while ((r = iommufd_broker_next_event(b, &e)) > 0)
                if (event_ends_lease(&e, session, l)) {
                        print_event(stderr, "iommufdctl: the broker ended the lease: ", &e);
                        return 1;
                }
        return r < 0 ? -1 : 0;
}

static int cmd_acquire(int argc, char **argv) {
        static const struct option options[] = {
                { "mode",        required_argument, NULL, OPT_MODE },
                { "managed",     no_argument,       NULL, OPT_MANAGED },
                { "interactive", no_argument,       NULL, OPT_INTERACTIVE },
                {}
        };
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        _cleanup_(lease_freep) iommufd_broker_lease *l = NULL;
        _cleanup_close_ int sfd = -EBADF;
        LeaseOptions o = { .mode = IOMMUFD_BROKER_MODE_ATTACHED };
        sigset_t old;
        uint64_t session;
        int c, r, event_fd;

        optind = 0;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                r = lease_option(&o, c, "acquire");
                if (r != 0)
                        return r;
        }
        if (optind >= argc)
                return usage_error("acquire: no device given");
        o.devices = argv + optind;
        o.n_devices = (size_t) (argc - optind);

        r = open_lease(&o, &b, &event_fd, &l);
        if (r != 0)
                return r;
        session = l->session;

        /* Only after acquiring: a long interactive authorization must stay
         * interruptible. Before printing: whoever reads the lease may signal
         * at once, and that must release, not kill. */
        sfd = signals_block(false, &old);
        if (sfd < 0)
                return broker_failed(NULL, sfd, "signalfd");
        print_lease(l);
        fprintf(stderr, "Holding the lease; SIGINT, SIGTERM or SIGHUP releases it.\n");
        for (;;) {
                struct signalfd_siginfo si;

                r = event_fd >= 0 ? drain_lease_events(b, session, l) : 0;
                if (r == 1)
                        return EXIT_BROKER;
                if (r < 0)
                        return broker_failed(b, -ECONNRESET, "events");
                r = wait_for(sfd, event_fd);
                if (r < 0)
                        return broker_failed(NULL, r, "poll");
                if ((r & 1) && read_signal(sfd, &si) > 0)
                        break;
        }

        /* Close our copies first: a managed device goes back to its driver only
         * once every fd is gone. */
        l = (iommufd_broker_lease_free(l), NULL);
        r = iommufd_broker_release(b, NULL, 0);
        if (r < 0)
                return broker_failed(b, r, "release");
        fprintf(stderr, "Released.\n");
        return 0;
}

static int cmd_monitor(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        _cleanup_close_ int sfd = -EBADF;
        sigset_t old;
        int r, event_fd;

        if (argc > 1)
                return usage_error("monitor: unexpected argument '%s'", argv[1]);
        r = connect_broker(&b);
        if (r != 0)
                return r;
        event_fd = iommufd_broker_event_fd(b);
        if (event_fd < 0)
                return broker_failed(b, event_fd, "monitor");
        sfd = signals_block(false, &old);
        if (sfd < 0)
                return broker_failed(NULL, sfd, "signalfd");
        for (;;) {
                struct signalfd_siginfo si;
                iommufd_broker_event e;

                while ((r = iommufd_broker_next_event(b, &e)) > 0)
                        print_event(stdout, "", &e);
                if (r < 0)
                        return broker_failed(b, r, "monitor");
                r = wait_for(sfd, event_fd);
                if (r < 0)
                        return broker_failed(NULL, r, "poll");
                if ((r & 1) && read_signal(sfd, &si) > 0)
                        return 0;
        }
}

/* --- run --- */

/* In the child: the lease fds, and only they, survive exec. */
static _Noreturn void exec_child(char **argv, const iommufd_broker_lease *l, const sigset_t *old_mask) {
        sigprocmask(SIG_SETMASK, old_mask, NULL);
        if (fcntl(l->iommufd, F_SETFD, 0) < 0)
                goto fail;
        for (size_t i = 0; i < l->n_devices; i++)
                if (fcntl(l->devices[i].fd, F_SETFD, 0) < 0)
                        goto fail;
        execvp(argv[0], argv);
fail:
        fprintf(stderr, "iommufdctl: cannot execute %s: %s\n", argv[0], strerror(errno));
        _exit(127);
}

static int exit_status_of(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return EXIT_BROKER;
}

/* Catch a misspelt {devN} before anything is acquired. */
static int check_placeholders(char **cmd, size_t n_devices) {
        _cleanup_free_ int *fds = calloc(n_devices + 1, sizeof(int));
        _cleanup_strv_free_ char **out = NULL;
        size_t bad = 0;
        int r;

        if (!fds)
                return usage_error("out of memory");
        r = run_substitute_argv(cmd, 0, fds, n_devices, &out, &bad);
        if (r == -ERANGE)
                return usage_error("run: '%s' names a {devN} beyond the %zu device(s) given with -d", cmd[bad],
                                   n_devices);
        return r < 0 ? usage_error("out of memory") : 0;
}

/* Wait for the child, forwarding signals and reporting the lease's end. */
static int supervise(iommufd_broker *b, pid_t child, uint64_t session, int sfd, int event_fd) {
        for (;;) {
                struct signalfd_siginfo si;
                int r = 0, status;

                /* A lease ended by the broker is only reported: the child holds the
                 * fds, and only it can let go of the device. */
                while (event_fd >= 0 && (r = drain_lease_events(b, session, NULL)) == 1)
                        ;
                if (event_fd >= 0 && r < 0) {
                        /* The broker is gone: the child keeps its fds, we keep waiting. */
                        fprintf(stderr, "iommufdctl: warning: %s: %s\n", strna(iommufd_broker_error_name(b)),
                                strna(iommufd_broker_error_message(b)));
                        event_fd = -EBADF;
                }
                r = wait_for(sfd, event_fd);
                if (r < 0)
                        return broker_failed(NULL, r, "poll");
                while ((r & 1) && read_signal(sfd, &si) > 0) {
                        if (si.ssi_signo != SIGCHLD) {
                                /* A terminal's ^C already reached the child's process group. */
                                if (si.ssi_code != SI_KERNEL)
                                        kill(child, (int) si.ssi_signo);
                                continue;
                        }
                        if (waitpid(child, &status, WNOHANG) == child)
                                return exit_status_of(status);
                }
        }
}

/* How long run waits, after its command exited, for the devices to be free. */
#define RUN_FREE_WAIT_MS 3000
#define RUN_FREE_POLL_MS 20

/* After the command exited: release, and wait until the broker says the
 * devices are free (not releasing, not restoring a driver), at most
 * RUN_FREE_WAIT_MS. The broker learns that an unbound device's last fd closed
 * only by polling, so without this the next run of the same devices, right
 * after this one, was refused with DeviceBusy (releasing). A command that
 * passed the fds on to a process of its own (a daemonizing VMM) keeps the
 * device busy: then we stop waiting at the deadline. */
static void wait_devices_free(iommufd_broker *b, char *const *devices) {
        /* NotHeld when the broker already ended the lease (revoke, unplug):
         * still wait for it to see the fds closed. */
        (void) iommufd_broker_release(b, NULL, 0);
        for (int waited = 0; waited < RUN_FREE_WAIT_MS; waited += RUN_FREE_POLL_MS) {
                bool busy = false;

                for (char *const *d = devices; *d && !busy; d++) {
                        iommufd_broker_device dev;

                        if (iommufd_broker_get(b, *d, &dev) < 0)
                                return;
                        busy = streq(dev.state, "releasing") || streq(dev.state, "busy");
                }
                if (!busy)
                        return;
                (void) poll(NULL, 0, RUN_FREE_POLL_MS);
        }
}

/* A broker that does not answer (stopped, hung) must not hold run's exit
 * back by the library's call timeout: at the deadline, exit with the
 * command's status. */
static volatile sig_atomic_t run_exit_status;

static void on_run_alarm(int sig) {
        _exit(run_exit_status);
}

static void wait_devices_free_bounded(iommufd_broker *b, char *const *devices, int status) {
        struct sigaction sa = { .sa_handler = on_run_alarm };

        run_exit_status = status;
        if (sigaction(SIGALRM, &sa, NULL) < 0)
                return;
        alarm((RUN_FREE_WAIT_MS + 999) / 1000 + 1);
        wait_devices_free(b, devices);
        alarm(0);
}

static int cmd_run(int argc, char **argv) {
        static const struct option options[] = {
                { "device",      required_argument, NULL, 'd' },
                { "mode",        required_argument, NULL, OPT_MODE },
                { "managed",     no_argument,       NULL, OPT_MANAGED },
                { "interactive", no_argument,       NULL, OPT_INTERACTIVE },
                {}
        };
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        _cleanup_(lease_freep) iommufd_broker_lease *l = NULL;
        _cleanup_strv_free_ char **devices = NULL, **cmd = NULL;
        _cleanup_close_ int sfd = -EBADF;
        LeaseOptions o = { .mode = IOMMUFD_BROKER_MODE_UNBOUND };
        _cleanup_free_ int *dev_fds = NULL;
        sigset_t old;
        uint64_t session;
        int c, r, event_fd;
        pid_t child;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+d:", options, NULL)) >= 0) {
                if (c == 'd') {
                        if (strv_extend(&devices, optarg) < 0)
                                return usage_error("out of memory");
                        continue;
                }
                r = lease_option(&o, c, "run");
                if (r != 0)
                        return r;
        }
        if (!devices)
                return usage_error("run: no device given (-d DEV)");
        if (optind >= argc)
                return usage_error("run: no command given (run -d DEV -- CMD ARGS...)");
        o.devices = devices;
        o.n_devices = strv_length(devices);
        r = check_placeholders(argv + optind, o.n_devices);
        if (r != 0)
                return r;

        r = open_lease(&o, &b, &event_fd, &l);
        if (r != 0)
                return r;
        session = l->session;

        dev_fds = calloc(l->n_devices, sizeof(int));
        if (!dev_fds)
                return broker_failed(NULL, -ENOMEM, "run");
        for (size_t i = 0; i < l->n_devices; i++)
                dev_fds[i] = l->devices[i].fd;
        r = run_substitute_argv(argv + optind, l->iommufd, dev_fds, l->n_devices, &cmd, NULL);
        if (r < 0)
                return broker_failed(NULL, r, "run");
        /* After the acquire: policy may just have raised the limit. */
        run_warn_memlock(cmd);

        sfd = signals_block(true, &old);
        if (sfd < 0)
                return broker_failed(NULL, sfd, "signalfd");
        fflush(NULL);
        child = fork();
        if (child < 0)
                return broker_failed(NULL, -errno, "fork");
        if (child == 0)
                exec_child(cmd, l, &old);

        /* The child has the fds now; the lease lives on in our connection. */
        l = (iommufd_broker_lease_free(l), NULL);
        r = supervise(b, child, session, sfd, event_fd);
        fflush(NULL);
        wait_devices_free_bounded(b, devices, r);
        return r;
}

/* --- main --- */

static void help(void) {
        printf("Usage: iommufdctl [--socket PATH | --bus [ADDRESS]] COMMAND ...\n"
               "\n"
               "Ask iommufd-broker for VFIO devices and iommufd contexts.\n"
               "\n"
               "Commands:\n"
               "  list [--json]                    devices, their state and holder\n"
               "  info DEV [--json]                one device\n"
               "  acquire DEV... [--mode M] [--managed] [--interactive]\n"
               "                                   lease devices (default mode: attached), print\n"
               "                                   the fds and ids, hold until SIGINT/SIGTERM/HUP\n"
               "  monitor                          print device and lease events\n"
               "  run -d DEV [-d DEV]... [--mode M] [--managed] [--interactive] -- CMD ARGS...\n"
               "                                   lease devices (default mode: unbound) and run\n"
               "                                   CMD with the fds; {iommufd}, {dev0}, {dev1}...\n"
               "                                   in CMD ARGS become the fd numbers\n"
               "  revoke DEV [--timeout S]         take DEV back from its holder (root or polkit): asks\n"
               "                                   through vfio-pci's device request, waits until\n"
               "                                   it let go or S seconds (default 30) passed\n"
               "\n"
               "Options:\n"
               "  --socket PATH     varlink socket (default: $IOMMUFD_BROKER_SOCKET or\n"
               "                    " BROKER_DEFAULT_SOCKET ")\n"
               "  --bus [ADDRESS]   use D-Bus: the system bus, or ADDRESS (\"unix:path=...\")\n"
               "  -h, --help        this text\n"
               "  --version         the version\n"
               "\n"
               "Example:\n"
               "  iommufdctl run -d 0000:03:00.0 -- qemu-system-x86_64 \\\n"
               "      -object iommufd,id=iommufd0,fd={iommufd} \\\n"
               "      -device vfio-pci,iommufd=iommufd0,fd={dev0} ...\n"
               "\n"
               "Exit status: 0 ok, 1 broker error, 2 usage error; run: the command's status.\n");
}

static const char *value_of(const char *arg, const char *option) {
        size_t n = strlen(option);

        return strncmp(arg, option, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

/* Global options, by hand: --bus takes an optional separate argument. */
static int parse_global(int argc, char **argv, int *ret_index) {
        int i;

        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                const char *a = argv[i], *v = NULL;

                if (streq(a, "-h") || streq(a, "--help")) {
                        help();
                        return -1;
                } else if (streq(a, "--version")) {
                        printf("iommufdctl %s\n", PACKAGE_VERSION);
                        return -1;
                } else if (streq(a, "--socket") || (v = value_of(a, "--socket"))) {
                        if (streq(a, "--socket") && i + 1 >= argc)
                                return usage_error("--socket needs a path");
                        arg_address = streq(a, "--socket") ? argv[++i] : v;
                        arg_transport = IOMMUFD_BROKER_TRANSPORT_VARLINK;
                } else if (streq(a, "--bus")) {
                        arg_transport = IOMMUFD_BROKER_TRANSPORT_DBUS;
                        arg_address = NULL;
                        /* A D-Bus address always has a "transport:"; a command never does. */
                        if (i + 1 < argc && strchr(argv[i + 1], ':'))
                                arg_address = argv[++i];
                } else if ((v = value_of(a, "--bus"))) {
                        arg_transport = IOMMUFD_BROKER_TRANSPORT_DBUS;
                        arg_address = v;
                } else
                        return usage_error("unknown option '%s'", a);
        }
        if (arg_address && !*arg_address)
                return usage_error("empty address");
        *ret_index = i;
        return 0;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } commands[] = {
                { "list",    cmd_list },
                { "info",    cmd_info },
                { "acquire", cmd_acquire },
                { "monitor", cmd_monitor },
                { "run",     cmd_run },
                { "revoke",  cmd_revoke },
        };
        int r, i = 0;

        r = parse_global(argc, argv, &i);
        if (r != 0)
                return r < 0 ? 0 : r;
        if (i >= argc)
                return usage_error("no command given");
        for (size_t k = 0; k < ELEMENTSOF(commands); k++)
                if (streq(commands[k].name, argv[i]))
                        return commands[k].run(argc - i, argv + i);
        return usage_error("unknown command '%s'", argv[i]);
}
