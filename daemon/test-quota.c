/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One account for both front ends: the per-uid and global caps hold for the
 * sum of varlink connections and D-Bus sessions, root is never refused and
 * keeps its reserve, refusals are LimitExceeded saying what counts. */
#include <errno.h>
#include <string.h>

#include "quota.h"
#include "test.h"

#define QUOTA_BUCKETS_FOR_TEST 256   /* quota.c's: uids this far apart may share a chain */

static void test_defaults(void) {
        _cleanup_(quota_freep) Quota *q = NULL;

        CHECK(quota_new(NULL, &q) == 0);
        CHECK_INT(quota_limits(q)->max_clients_per_uid, QUOTA_DEFAULT_MAX_CLIENTS_PER_UID);
        CHECK_INT(quota_limits(q)->max_clients, QUOTA_DEFAULT_MAX_CLIENTS);
        q = quota_free(q);
        /* A global cap inside the reserve would leave users nothing. */
        CHECK(quota_new(&(QuotaLimits) { .max_clients = 5 }, &q) == 0);
        CHECK_INT(quota_limits(q)->max_clients, QUOTA_ROOT_RESERVED + 1);
}

/* The per-uid cap is on the sum: 3 varlink connections and 2 D-Bus sessions
 * fill a cap of 5, and the next of either kind is refused. */
static void test_per_uid_sum(void) {
        _cleanup_(quota_freep) Quota *q = NULL;
        BrokerError err = {};

        CHECK(quota_new(&(QuotaLimits) { .max_clients_per_uid = 5 }, &q) == 0);
        for (int i = 0; i < 3; i++)
                CHECK(quota_charge(q, 1000, QUOTA_VARLINK, NULL) == 0);
        for (int i = 0; i < 2; i++)
                CHECK(quota_charge(q, 1000, QUOTA_DBUS, NULL) == 0);
        CHECK_INT(quota_n_of_uid(q, 1000, QUOTA_VARLINK), 3);
        CHECK_INT(quota_n_of_uid(q, 1000, QUOTA_DBUS), 2);
        CHECK_INT(quota_n_of_uid(q, 1000, _QUOTA_KIND_MAX), 5);
        CHECK(quota_uid_full(q, 1000));

        CHECK_MSG(quota_charge(q, 1000, QUOTA_DBUS, &err) == -EUSERS, "sixth, a D-Bus session: refused");
        CHECK_INT(err.code, BROKER_ERROR_LIMIT_EXCEEDED);
        printf("  %s\n", err.message);
        CHECK_MSG(strstr(err.message, "uid 1000") && strstr(err.message, "varlink connections: 3") &&
                  strstr(err.message, "D-Bus sessions: 2"), "the refusal names the uid and both front ends' share");
        err = (BrokerError) {};
        CHECK_MSG(quota_charge(q, 1000, QUOTA_VARLINK, &err) == -EUSERS, "sixth, a varlink connection: refused");
        CHECK_INT(err.code, BROKER_ERROR_LIMIT_EXCEEDED);
        CHECK_MSG(quota_n_of_uid(q, 1000, _QUOTA_KIND_MAX) == 5 && quota_n_clients(q) == 5,
                  "a refusal counts nothing");

        /* Another uid has its own count; root is never refused. */
        CHECK(quota_check(q, 1001, NULL) == 0 && quota_charge(q, 1001, QUOTA_DBUS, NULL) == 0);
        for (int i = 0; i < 10; i++)
                CHECK(quota_charge(q, 0, i % 2 ? QUOTA_DBUS : QUOTA_VARLINK, NULL) == 0);
        CHECK_MSG(!quota_uid_full(q, 0) && quota_n_of_uid(q, 0, _QUOTA_KIND_MAX) == 10,
                  "root past the per-uid cap, counted");

        /* Releasing either kind makes room for either kind. */
        quota_release(q, 1000, QUOTA_VARLINK);
        CHECK_MSG(quota_charge(q, 1000, QUOTA_DBUS, NULL) == 0, "a varlink connection closed: a D-Bus session fits");
        CHECK(quota_charge(q, 1000, QUOTA_VARLINK, NULL) == -EUSERS);
        quota_release(q, 1000, QUOTA_DBUS);
        CHECK_MSG(quota_charge(q, 1000, QUOTA_VARLINK, NULL) == 0, "a D-Bus session ended: a connection fits");

        for (int i = 0; i < 10; i++)
                quota_release(q, 0, i % 2 ? QUOTA_DBUS : QUOTA_VARLINK);
        quota_release(q, 1001, QUOTA_DBUS);
        CHECK_MSG(quota_n_uids(q) == 1, "entries go with a uid's last client (%zu left)", quota_n_uids(q));
        for (int i = 0; i < 3; i++)
                quota_release(q, 1000, QUOTA_VARLINK);
        for (int i = 0; i < 2; i++)
                quota_release(q, 1000, QUOTA_DBUS);
        CHECK_MSG(quota_n_uids(q) == 0 && quota_n_clients(q) == 0, "all released");
        /* A release that was never charged changes nothing. */
        quota_release(q, 1000, QUOTA_DBUS);
        CHECK(quota_n_clients(q) == 0 && quota_n_uids(q) == 0);
}

/* The one table of uids: an entry per uid, found by uid, made by the first
 * charge of either kind and gone with the uid's last release, so churning
 * uids leave nothing behind (the varlink server keeps its per-uid state in
 * these entries, varlink-quota.c). */
static void test_entries(void) {
        _cleanup_(quota_freep) Quota *q = NULL;
        UidQuota *a, *c;
        bool all = true;

        CHECK(quota_new(NULL, &q) == 0);
        CHECK(quota_find(q, 1000) == NULL);
        CHECK(quota_charge(q, 1000, QUOTA_VARLINK, NULL) == 0 && quota_charge(q, 1000, QUOTA_DBUS, NULL) == 0);
        a = quota_find(q, 1000);
        CHECK_MSG(a && a->uid == 1000 && a->total == 2 && a->n[QUOTA_VARLINK] == 1 && a->n[QUOTA_DBUS] == 1,
                  "one entry per uid, both kinds counted in it");
        CHECK(quota_charge(q, 1000 + QUOTA_BUCKETS_FOR_TEST, QUOTA_VARLINK, NULL) == 0);      /* same bucket, maybe */
        c = quota_find(q, 1000 + QUOTA_BUCKETS_FOR_TEST);
        CHECK_MSG(c && c != a && quota_n_uids(q) == 2, "two uids, two entries");
        CHECK(quota_find(q, 1000) == a && quota_find(q, 42) == NULL);

        quota_release(q, 1000, QUOTA_VARLINK);
        CHECK_MSG(quota_find(q, 1000) == a && a->total == 1, "the D-Bus session keeps the entry");
        quota_release(q, 1000, QUOTA_DBUS);
        CHECK_MSG(quota_find(q, 1000) == NULL && quota_n_uids(q) == 1, "gone with the uid's last client");

        /* Uids that come and go, one at a time and in a crowd. */
        for (uid_t u = 5000; u < 7000; u++) {
                all = all && quota_charge(q, u, u % 2 ? QUOTA_VARLINK : QUOTA_DBUS, NULL) == 0;
                quota_release(q, u, u % 2 ? QUOTA_VARLINK : QUOTA_DBUS);
        }
        for (uid_t u = 5000; u < 5500; u++)
                all = all && quota_charge(q, u, QUOTA_VARLINK, NULL) == 0;
        CHECK_MSG(all && quota_n_uids(q) == 501, "churning uids charged (%zu entries)", quota_n_uids(q));
        for (uid_t u = 5000; u < 5500; u++)
                quota_release(q, u, QUOTA_VARLINK);
        CHECK_MSG(quota_n_uids(q) == 1 && quota_find(q, 1000 + QUOTA_BUCKETS_FOR_TEST) == c,
                  "nothing left of them (%zu entries)", quota_n_uids(q));
}

/* The global cap is on the sum too, users stop QUOTA_ROOT_RESERVED short of
 * it, root goes on past it. */
static void test_global_sum(void) {
        _cleanup_(quota_freep) Quota *q = NULL;
        BrokerError err = {};
        unsigned users = 48 - QUOTA_ROOT_RESERVED;

        CHECK(quota_new(&(QuotaLimits) { .max_clients = 48, .max_clients_per_uid = 64 }, &q) == 0);
        /* Ten uids, both kinds, 16 in all. */
        for (unsigned i = 0; i < users; i++)
                CHECK(quota_charge(q, 2000 + i % 10, i % 3 ? QUOTA_VARLINK : QUOTA_DBUS, NULL) == 0);
        CHECK_MSG(quota_charge(q, 3000, QUOTA_VARLINK, &err) == -EUSERS, "a new uid refused at %u of 48", users);
        printf("  %s\n", err.message);
        CHECK_MSG(err.code == BROKER_ERROR_LIMIT_EXCEEDED && strstr(err.message, "root's"),
                  "LimitExceeded, naming root's reserve");
        CHECK(quota_charge(q, 2000, QUOTA_DBUS, NULL) == -EUSERS);

        /* Root takes the reserve and more; users stay refused meanwhile. */
        for (unsigned i = 0; i < QUOTA_ROOT_RESERVED + 8; i++)
                CHECK(quota_charge(q, 0, i % 2 ? QUOTA_DBUS : QUOTA_VARLINK, NULL) == 0);
        CHECK_INT(quota_n_clients(q), users + QUOTA_ROOT_RESERVED + 8);
        /* Root's clients count: one user's going does not let others in
         * while root holds the reserve and more. */
        quota_release(q, 2000, QUOTA_DBUS);
        CHECK_MSG(quota_charge(q, 3000, QUOTA_DBUS, NULL) == -EUSERS, "still refused while root holds the rest");
        for (unsigned i = 0; i < QUOTA_ROOT_RESERVED + 8; i++)
                quota_release(q, 0, i % 2 ? QUOTA_DBUS : QUOTA_VARLINK);
        CHECK_MSG(quota_charge(q, 3000, QUOTA_DBUS, NULL) == 0, "room again once root let go");
        CHECK(quota_charge(q, 3001, QUOTA_VARLINK, NULL) == -EUSERS);
}

int main(void) {
        test_defaults();
        test_per_uid_sum();
        test_entries();
        test_global_sum();
        return test_result();
}
