/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "error.h"
#include "principal.h"

/*
 * Asking polkitd (org.freedesktop.PolicyKit1.Authority.CheckAuthorization)
 * whether a process may do an action, without ever blocking the event loop.
 * The subject is the caller's D-Bus unique name (system-bus-name: polkit
 * asks the bus who it is) for D-Bus callers, else unix-process with the
 * peer's pidfd (polkit >= 121 uses it and ignores the racy pid), pid,
 * start-time and uid. The bus connection is
 * opened on first use, so a broker whose policy never names polkit never
 * talks to it; a lost connection is reopened on the next check.
 *
 * Every check ends in the callback exactly once, unless the caller frees
 * the query first (a client that went away): then polkit is told to cancel
 * and nothing is called. Answers:
 *   0             authorized
 *   -EPERM        not authorized
 *   -EACCES       authorized only after interactive authentication, which was not allowed
 *   -ETIMEDOUT    no answer within the timeout
 *   -EHOSTDOWN    polkit is not there or failed (message says why)
 */

/* Below the 25 s clients wait for a reply by default (sd-bus, libiommufd-broker),
 * so they get the broker's typed error rather than a timeout of their own. */
#define POLKIT_DEFAULT_TIMEOUT_USEC (20ULL * 1000000ULL)
/* An agent may wait for a human: interactive checks get this many times
 * longer (4 min, below the 5 min the client library waits then). */
#define POLKIT_INTERACTIVE_TIMEOUT_FACTOR 12
/* Checks in flight per uid; more fail at once with -EUSERS. */
#define POLKIT_MAX_PENDING_PER_UID 16

typedef struct PolkitClient PolkitClient;
typedef struct PolkitQuery PolkitQuery;

/* message: human text for errors (polkit's own error, "timed out", ...), NULL when authorized/denied. */
typedef void (*PolkitCallback)(PolkitQuery *q, int result, const char *message, void *userdata);

/* bus_address NULL: the system bus. timeout_usec 0: POLKIT_DEFAULT_TIMEOUT_USEC. */
int polkit_client_new(sd_event *event, const char *bus_address, uint64_t timeout_usec, PolkitClient **ret);
PolkitClient *polkit_client_free(PolkitClient *c);     /* cancels every query without calling back */
DEFINE_TRIVIAL_CLEANUP_FUNC(PolkitClient *, polkit_client_free);

size_t polkit_client_n_pending(const PolkitClient *c);

/* Start a check. bus_name: the caller's unique name on the bus polkit is
 * asked on, or NULL (then who's pidfd names it). -EUSERS: too many checks of
 * who->uid in flight; -EBADF: neither a bus name nor a pidfd (a pid alone
 * could be recycled: never authorized by pid). */
int polkit_check_async(PolkitClient *c, const Principal *who, const char *bus_name, const char *action,
                       bool interactive, PolkitCallback callback, void *userdata, PolkitQuery **ret);

/* Cancel a check that has not called back yet. NULL is fine. */
PolkitQuery *polkit_query_free(PolkitQuery *q);

/* A check that did not authorize (r from a callback, or from
 * polkit_check_async()) as the typed error both front ends reply with:
 * PermissionDenied, InteractiveAuthorizationRequired, LimitExceeded or
 * AuthorizationUnavailable. Returns the negative errno to reply with. */
int polkit_error_to_broker(int r, const char *message, const char *action, const char *device, uid_t uid,
                           BrokerError *err);
