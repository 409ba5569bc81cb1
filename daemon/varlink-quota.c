/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "varlink-quota.h"

/* A few hundred local users at most; chains stay short. */
#define UID_QUOTA_BUCKETS 256

struct UidQuotaTable {
        UidQuota *buckets[UID_QUOTA_BUCKETS];
        size_t n_entries;
};

static size_t bucket_of(uid_t uid) {
        /* Spread consecutive uids (1000, 1001, ...) over the buckets. */
        return ((size_t) uid * 2654435761u) % UID_QUOTA_BUCKETS;
}

int uid_quota_table_new(UidQuotaTable **ret) {
        UidQuotaTable *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

UidQuotaTable *uid_quota_table_free(UidQuotaTable *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < UID_QUOTA_BUCKETS; i++)
                while (t->buckets[i]) {
                        UidQuota *q = t->buckets[i];
                        t->buckets[i] = q->next;
                        free(q);
                }
        free(t);
        return NULL;
}

UidQuota *uid_quota_find(UidQuotaTable *t, uid_t uid) {
        for (UidQuota *q = t->buckets[bucket_of(uid)]; q; q = q->next)
                if (q->uid == uid)
                        return q;
        return NULL;
}

UidQuota *uid_quota_ref(UidQuotaTable *t, uid_t uid) {
        UidQuota *q = uid_quota_find(t, uid);
        size_t b = bucket_of(uid);

        if (!q) {
                q = calloc(1, sizeof(*q));
                if (!q)
                        return NULL;
                q->uid = uid;
                q->next = t->buckets[b];
                t->buckets[b] = q;
                t->n_entries++;
        }
        q->n_connections++;
        return q;
}

void uid_quota_unref(UidQuotaTable *t, UidQuota *q) {
        if (!q || --q->n_connections > 0)
                return;
        for (UidQuota **p = &t->buckets[bucket_of(q->uid)]; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        break;
                }
        t->n_entries--;
        free(q);
}

size_t uid_quota_table_size(const UidQuotaTable *t) {
        return t ? t->n_entries : 0;
}
