/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What each uid costs the varlink server, counted as it changes (O(1) per
 * connection and per queued byte), so caps are checked without walking the
 * connections. Entries live while the uid has a connection.
 */

#include <stddef.h>
#include <sys/types.h>

typedef struct UidQuota {
        struct UidQuota *next;          /* hash chain */
        uid_t uid;
        unsigned n_connections;         /* varlink connections, or D-Bus sessions (dbus-broker.c) */
        size_t out_bytes;               /* output queued on all its connections */
        void *connections;              /* the owner's list of this uid's connections */
} UidQuota;

typedef struct UidQuotaTable UidQuotaTable;

int uid_quota_table_new(UidQuotaTable **ret);
UidQuotaTable *uid_quota_table_free(UidQuotaTable *t);

/* The entry of uid, NULL if it has no connection. */
UidQuota *uid_quota_find(UidQuotaTable *t, uid_t uid);
/* Count one more connection of uid; returns its entry (NULL on ENOMEM). */
UidQuota *uid_quota_ref(UidQuotaTable *t, uid_t uid);
/* One connection fewer; the entry goes when the last one does. */
void uid_quota_unref(UidQuotaTable *t, UidQuota *q);
/* Distinct uids with connections (tests). */
size_t uid_quota_table_size(const UidQuotaTable *t);
