/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One account of the clients a peer makes the broker keep, whichever front
 * end it came through: a varlink connection (a socket, a pidfd, a session)
 * or a D-Bus session (an iommufd, a pidfd). Both front ends charge here when
 * they create one and release in the one place it goes, so the caps hold for
 * the sum: --max-connections-per-uid per uid, --max-connections for all,
 * whatever mix of front ends a user picks (dbus-broker's per-user quotas are
 * the model). O(1) per charge and release.
 *
 * Root is counted (its clients hold fds like anyone's) but never refused,
 * and the last QUOTA_ROOT_RESERVED clients of the global cap are root's:
 * users together cannot lock it out.
 *
 * This is the broker's one table of uids: each uid with a client has one
 * UidQuota, found in O(1) (quota_find()), made by its first charge and freed
 * with its last release, so churning uids leave nothing behind. What a front
 * end tracks per uid lives in that entry too (the varlink server's queued
 * output and connection list, varlink-quota.c): it is there for as long as
 * the front end holds a charge of the uid, which is the only reference count
 * it needs. One varlink server per Quota, as that list is the server's.
 */

#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "util.h"

#define QUOTA_DEFAULT_MAX_CLIENTS_PER_UID 64u
#define QUOTA_DEFAULT_MAX_CLIENTS         1024u
#define QUOTA_ROOT_RESERVED               32u

typedef enum QuotaKind {
        QUOTA_VARLINK,                  /* a varlink connection */
        QUOTA_DBUS,                     /* a D-Bus session (a bus name that acquired) */
        _QUOTA_KIND_MAX,
} QuotaKind;

typedef struct QuotaLimits {
        unsigned max_clients_per_uid;   /* 0: 64 */
        unsigned max_clients;           /* all uids; 0: 1024 (never below the root reserve + 1) */
} QuotaLimits;

/* One uid's entry. The counts are quota.c's, read-only elsewhere. */
typedef struct UidQuota {
        struct UidQuota *next;          /* hash chain */
        uid_t uid;
        unsigned n[_QUOTA_KIND_MAX];
        unsigned total;
        /* The varlink server's, while the uid has varlink connections: */
        size_t out_bytes;               /* output queued on all of them */
        void *connections;              /* its list of them (VarlinkConnection.uid_next) */
} UidQuota;

typedef struct Quota Quota;

int quota_new(const QuotaLimits *limits, Quota **ret);
Quota *quota_free(Quota *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(Quota *, quota_free);

/* The limits in force, defaults filled in. */
const QuotaLimits *quota_limits(const Quota *q);

/* uid's entry, NULL if it has no client. */
UidQuota *quota_find(const Quota *q, uid_t uid);

/* 0 if uid may have one more client; else -EUSERS with err set to
 * LimitExceeded saying which cap and what uid holds on each front end.
 * Root always gets 0. err may be NULL. */
int quota_check(const Quota *q, uid_t uid, BrokerError *err);
/* Whether uid is at its own cap (not the global one): the varlink front end
 * then looks for hung-up peers of uid before refusing. */
bool quota_uid_full(const Quota *q, uid_t uid);

/* quota_check(), then count one more client of kind: 0, -EUSERS (err set)
 * or -ENOMEM. On 0, quota_find(q, uid) is there until the release. */
int quota_charge(Quota *q, uid_t uid, QuotaKind kind, BrokerError *err);
/* One client fewer; exactly once per successful charge. With the uid's
 * last client goes its entry. */
void quota_release(Quota *q, uid_t uid, QuotaKind kind);

/* Counts: all clients; one uid's, of one kind or (_QUOTA_KIND_MAX) all. */
unsigned quota_n_clients(const Quota *q);
unsigned quota_n_of_uid(const Quota *q, uid_t uid, QuotaKind kind);
/* Distinct uids with clients (tests: entries go with a uid's last client). */
size_t quota_n_uids(const Quota *q);
