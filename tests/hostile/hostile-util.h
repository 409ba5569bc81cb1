/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers of the hostile cases that run under tests/dbus/run-with-broker.sh
 * (hostile-dbus.c, hostile-clients.c). */

#include <sys/types.h>

#include "dbus-test-util.h"

#define NOBODY 65534
#define PROBE_UID 1       /* "daemon": dbus-daemon wants a uid it can look up */

/* HOSTILE_LATENCY_MS, default 100: a sanitizer build is slower. */
double latency_ms(void);
double now_ms(void);
/* setgroups/setresgid/setresuid to uid: 0 or -errno. */
int become(uid_t uid);
/* The broker's ($BROKER_PID) open fds and RSS; -1 if unknown. */
int broker_fd_count(void);
long broker_rss_kib(void);
/* For qsort() of doubles. */
int cmp_double(const void *a, const void *b);

/* One AcquireDevices of address (unbound) and, if it worked, its release:
 * the session stays, holding its iommufd. A device still "releasing" from
 * the previous round is waited for. 0, or < 0 with ret_error set to the
 * D-Bus error name. */
int acquire_release(sd_bus *bus, const char *address, char *ret_error, size_t size);
