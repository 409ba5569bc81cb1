/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iommufdctl run: lease devices, run a command (a VMM) with the fds, forward
 * signals to it, and give the devices back once it exited.
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "iommufdctl.h"
#include "run-args.h"
#include "run-memlock.h"
#include "util.h"

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

int cmd_run(int argc, char **argv) {
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

