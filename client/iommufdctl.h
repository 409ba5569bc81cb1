/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the parts of iommufdctl share: exit codes, the connection and its
 * errors (iommufdctl.c), the broker's events, signals and the options of a
 * lease (iommufdctl-lease.c), and the commands.
 */

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/signalfd.h>

#include "iommufd-broker.h"
#include "util.h"

#define EXIT_BROKER 1
#define EXIT_USAGE  2

static inline void broker_freep(iommufd_broker **b) {
        iommufd_broker_disconnect(*b);
}
static inline void lease_freep(iommufd_broker_lease **l) {
        iommufd_broker_lease_free(*l);
}

/* "iommufdctl: ..." and the hint; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) _printf_(1, 2);
/* "iommufdctl: <Name>: <message>", from the handle or, without one, from r;
 * returns EXIT_BROKER. */
int broker_failed(const iommufd_broker *b, int r, const char *what);
/* To the broker --socket or --bus named; 0 or an exit code. */
int connect_broker(iommufd_broker **ret);

void print_event(FILE *f, const char *prefix, const iommufd_broker_event *e);
/* Block SIGINT, SIGTERM, SIGHUP (and for run SIGCHLD, SIGQUIT, SIGUSR1,
 * SIGUSR2) and hand them to a signalfd. */
int signals_block(bool with_child, sigset_t *ret_old);
/* 1 with a signal, 0 if none is pending, or negative errno. */
int read_signal(int sfd, struct signalfd_siginfo *ret);
/* poll() the signalfd and (if >= 0) the event fd. Bit 0: signal, bit 1: event. */
int wait_for(int sfd, int event_fd);
/* Events until none is pending: 1 if our lease ended, 0, or -1 on error (in b). */
int drain_lease_events(iommufd_broker *b, uint64_t session, const iommufd_broker_lease *l);

typedef struct LeaseOptions {
        iommufd_broker_mode mode;
        unsigned flags;
        char **devices;
        size_t n_devices;
} LeaseOptions;

enum { OPT_MODE = 0x100, OPT_MANAGED, OPT_INTERACTIVE };

/* --mode, --managed, --interactive into o; 0 or an exit code. */
int lease_option(LeaseOptions *o, int c, const char *command);
/* Connect, start watching events (so none about the new lease is missed),
 * and acquire. Returns 0 or an exit code; *ret_b is set even on failure. */
int open_lease(const LeaseOptions *o, iommufd_broker **ret_b, int *ret_event_fd, iommufd_broker_lease **ret);

int cmd_acquire(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_run(int argc, char **argv);
