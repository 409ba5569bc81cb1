/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iommufdctl acquire and monitor, and what run shares with them: the lease
 * options, the broker's events and the signals a holder waits for.
 */
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>

#include "iommufdctl.h"
#include "util.h"

/* --- Events and signals, for acquire, monitor and run --- */

void print_event(FILE *f, const char *prefix, const iommufd_broker_event *e) {
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
int signals_block(bool with_child, sigset_t *ret_old) {
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

int read_signal(int sfd, struct signalfd_siginfo *ret) {
        ssize_t n = read(sfd, ret, sizeof(*ret));

        if (n < 0)
                return errno == EAGAIN ? 0 : -errno;
        return n == sizeof(*ret) ? 1 : -EIO;
}

/* poll() the signalfd and (if >= 0) the event fd. Bit 0: signal, bit 1: event. */
int wait_for(int sfd, int event_fd) {
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

int lease_option(LeaseOptions *o, int c, const char *command) {
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
int open_lease(const LeaseOptions *o, iommufd_broker **ret_b, int *ret_event_fd,
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
int drain_lease_events(iommufd_broker *b, uint64_t session, const iommufd_broker_lease *l) {
        iommufd_broker_event e;
        int r;

        while ((r = iommufd_broker_next_event(b, &e)) > 0)
                if (event_ends_lease(&e, session, l)) {
                        print_event(stderr, "iommufdctl: the broker ended the lease: ", &e);
                        return 1;
                }
        return r < 0 ? -1 : 0;
}

int cmd_acquire(int argc, char **argv) {
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

int cmd_monitor(int argc, char **argv) {
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

