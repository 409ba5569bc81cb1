/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * The audit trail: one structured journal entry per grant, release, revoke,
 * lease end and policy reload, so that `journalctl MESSAGE_ID=<id>
 * DEVICE=0000:03:00.0` answers "who had this device when". Each kind has
 * its own MESSAGE_ID (below, also in docs/policy.md). Lease entries carry
 * DEVICE=, HOLDER_UID=, HOLDER_PID=, HOLDER_UNIT= (if any), SESSION=, MODE=
 * and RULE=; lease ends add REASON=, revokes REVOKED_BY_UID=.
 *
 * Every lease that ends gets exactly one RELEASE (the holder asked) or
 * LEASE_END (anything else: disconnect, exit, device gone, revoked) entry;
 * a revoke additionally gets a REVOKE entry saying who took it away.
 *
 * Entries go to the journal when the broker runs under systemd (stderr is
 * the journal, $JOURNAL_STREAM), else to stderr as one line:
 *   AUDIT MESSAGE_ID=... DEVICE=... HOLDER_UID=...: <message>
 */

#define AUDIT_MESSAGE_GRANT         "21be8c7355e4446a8719acb244cc8f9a"
#define AUDIT_MESSAGE_RELEASE       "65806a1cbd9a415f9a3579d03ebf427b"
#define AUDIT_MESSAGE_REVOKE        "e24f5ca557f941748d6644c2896ada92"
#define AUDIT_MESSAGE_LEASE_END     "cb1f319149294b36b01682f09a9e2865"
#define AUDIT_MESSAGE_POLICY_RELOAD "efb67ef9953744d79a68c8e66ee04486"

/* One lease as the audit trail names it. Strings are borrowed. */
typedef struct AuditLease {
        const char *device;             /* "0000:03:00.0" */
        uint64_t session;
        uid_t uid;                      /* the holder */
        pid_t pid;
        const char *unit;               /* NULL: not in a unit */
        const char *mode;               /* "unbound", "bound", "attached" */
        const char *rule;               /* the policy rule that granted it, NULL if unknown */
        int managed;                    /* the broker rebound the driver */
} AuditLease;

void audit_grant(const AuditLease *l);
/* The holder released it (Release, ReleaseDevices). */
void audit_release(const AuditLease *l);
/* It ended otherwise; reason as in BrokerEvent: "disconnected", "client-exited", "revoked", ... */
void audit_lease_end(const AuditLease *l, const char *reason);
/* Someone other than the holder took it away; audit_lease_end() follows. */
void audit_revoke(const AuditLease *l, uid_t by_uid, const char *reason);
/* A policy (re)load: result 0 or a negative errno (the old policy stays);
 * errors: the loader's error lines, or NULL. */
void audit_policy_reload(int result, size_t n_rules, const char *errors);

/* Tests: write the stderr form to f (NULL: back to automatic). */
void audit_set_stream(FILE *f);
