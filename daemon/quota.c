/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "quota.h"

/* A few hundred local users at most; chains stay short. */
#define QUOTA_BUCKETS 256

struct Quota {
        QuotaLimits limits;
        UidQuota *buckets[QUOTA_BUCKETS];
        size_t n_uids;
        unsigned n_clients;             /* every uid's, root's included */
};

static const char *const kind_names[_QUOTA_KIND_MAX] = {
        [QUOTA_VARLINK] = "varlink connection",
        [QUOTA_DBUS] = "D-Bus session",
};

static size_t bucket_of(uid_t uid) {
        /* Spread consecutive uids (1000, 1001, ...) over the buckets. */
        return ((size_t) uid * 2654435761u) % QUOTA_BUCKETS;
}

static QuotaLimits limits_with_defaults(const QuotaLimits *l) {
        QuotaLimits r = l ? *l : (QuotaLimits) {};

        if (r.max_clients_per_uid == 0)
                r.max_clients_per_uid = QUOTA_DEFAULT_MAX_CLIENTS_PER_UID;
        if (r.max_clients == 0)
                r.max_clients = QUOTA_DEFAULT_MAX_CLIENTS;
        /* Users always get at least one. */
        if (r.max_clients <= QUOTA_ROOT_RESERVED)
                r.max_clients = QUOTA_ROOT_RESERVED + 1;
        return r;
}

int quota_new(const QuotaLimits *limits, Quota **ret) {
        Quota *q = calloc(1, sizeof(*q));

        if (!q)
                return -ENOMEM;
        q->limits = limits_with_defaults(limits);
        *ret = q;
        return 0;
}

Quota *quota_free(Quota *q) {
        if (!q)
                return NULL;
        for (size_t i = 0; i < QUOTA_BUCKETS; i++)
                while (q->buckets[i]) {
                        UidQuota *e = q->buckets[i];
                        q->buckets[i] = e->next;
                        free(e);
                }
        free(q);
        return NULL;
}

const QuotaLimits *quota_limits(const Quota *q) {
        return &q->limits;
}

UidQuota *quota_find(const Quota *q, uid_t uid) {
        for (UidQuota *e = q->buckets[bucket_of(uid)]; e; e = e->next)
                if (e->uid == uid)
                        return e;
        return NULL;
}

static UidQuota *entry_get(Quota *q, uid_t uid) {
        UidQuota *e = quota_find(q, uid);
        size_t b = bucket_of(uid);

        if (e)
                return e;
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->uid = uid;
        e->next = q->buckets[b];
        q->buckets[b] = e;
        q->n_uids++;
        return e;
}

static void entry_drop(Quota *q, UidQuota *e) {
        for (UidQuota **p = &q->buckets[bucket_of(e->uid)]; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        break;
                }
        q->n_uids--;
        free(e);
}

bool quota_uid_full(const Quota *q, uid_t uid) {
        const UidQuota *e = quota_find(q, uid);

        return uid != 0 && e && e->total >= q->limits.max_clients_per_uid;
}

/* The last QUOTA_ROOT_RESERVED of max_clients are root's. */
static bool users_full(const Quota *q) {
        return q->n_clients + QUOTA_ROOT_RESERVED >= q->limits.max_clients;
}

int quota_check(const Quota *q, uid_t uid, BrokerError *err) {
        const UidQuota *e = quota_find(q, uid);

        if (uid == 0)
                return 0;
        /* Which front end each one came through: a user refused on one
         * learns the other counts too. */
        if (quota_uid_full(q, uid))
                return broker_error_set(err, BROKER_ERROR_LIMIT_EXCEEDED, NULL,
                                        "too many connections of uid %u: it has %u (%ss: %u, %ss: %u), the most "
                                        "one user may have; close varlink connections, or bus connections that "
                                        "hold sessions", (unsigned) uid, e->total, kind_names[QUOTA_VARLINK],
                                        e->n[QUOTA_VARLINK], kind_names[QUOTA_DBUS], e->n[QUOTA_DBUS]);
        if (users_full(q))
                return broker_error_set(err, BROKER_ERROR_LIMIT_EXCEEDED, NULL,
                                        "too many connections: the broker keeps %u varlink connections and D-Bus "
                                        "sessions, all it keeps for users (the last %u of %u are root's); try "
                                        "again later", q->n_clients, QUOTA_ROOT_RESERVED, q->limits.max_clients);
        return 0;
}

int quota_charge(Quota *q, uid_t uid, QuotaKind kind, BrokerError *err) {
        UidQuota *e;
        int r;

        if (kind < 0 || kind >= _QUOTA_KIND_MAX)
                return -EINVAL;
        r = quota_check(q, uid, err);
        if (r < 0)
                return r;
        e = entry_get(q, uid);
        if (!e)
                return -ENOMEM;
        e->n[kind]++;
        e->total++;
        q->n_clients++;
        return 0;
}

void quota_release(Quota *q, uid_t uid, QuotaKind kind) {
        UidQuota *e;

        if (!q || kind < 0 || kind >= _QUOTA_KIND_MAX)
                return;
        e = quota_find(q, uid);
        /* A release without its charge would let a uid past its cap later:
         * a bug, said loudly, but not worth ending every lease for. */
        if (!e || e->n[kind] == 0) {
                log_error("quota: release of a %s of uid %u that was never charged", kind_names[kind],
                          (unsigned) uid);
                return;
        }
        e->n[kind]--;
        e->total--;
        q->n_clients--;
        if (e->total == 0)
                entry_drop(q, e);
}

unsigned quota_n_clients(const Quota *q) {
        return q ? q->n_clients : 0;
}

unsigned quota_n_of_uid(const Quota *q, uid_t uid, QuotaKind kind) {
        const UidQuota *e = q ? quota_find(q, uid) : NULL;

        if (!e)
                return 0;
        return kind >= 0 && kind < _QUOTA_KIND_MAX ? e->n[kind] : e->total;
}

size_t quota_n_uids(const Quota *q) {
        return q ? q->n_uids : 0;
}
