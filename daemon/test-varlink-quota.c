/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-uid accounting, and the caps of a server built on it: the global cap
 * keeps the last slots for root, the per-uid cap counts exactly. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "varlink-internal.h"

static void test_table(void) {
        UidQuotaTable *t = NULL;
        UidQuota *a, *b, *c;

        CHECK(uid_quota_table_new(&t) == 0);
        a = uid_quota_ref(t, 1000);
        b = uid_quota_ref(t, 1000);
        c = uid_quota_ref(t, 1000 + 256);       /* same bucket, maybe */
        CHECK_MSG(a && a == b && a->n_connections == 2, "one entry per uid, counted");
        CHECK_MSG(c && c != a && uid_quota_table_size(t) == 2, "two uids, two entries");
        CHECK(uid_quota_find(t, 1000) == a && uid_quota_find(t, 42) == NULL);
        uid_quota_unref(t, a);
        CHECK_MSG(uid_quota_find(t, 1000) == b && b->n_connections == 1, "still one connection");
        uid_quota_unref(t, b);
        CHECK_MSG(uid_quota_find(t, 1000) == NULL && uid_quota_table_size(t) == 1, "gone with the last one");
        uid_quota_table_free(t);
}

/* Fill the server with our own (root's) connections: the global cap binds
 * others first, root only at the very end. */
static void test_caps(void) {
        VarlinkLimits limits = { .max_connections = 40, .max_connections_per_uid = 1000 };
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        const char *why = NULL;
        int peers[40], n = 0;

        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, &limits, &s) == 0);
        /* 40 in all, 32 of them root's: others may have 8. */
        for (; n < 8; n++) {
                int sv[2];
                CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
                CHECK(varlink_server_add_connection(s, sv[0], NULL) == 0);
                peers[n] = sv[1];
        }
        CHECK_MSG(!varlink_server_admits(s, 1000, &why), "uid 1000 refused at 8 of 40: %s", strna(why));
        CHECK_MSG(varlink_server_admits(s, 0, &why), "root admitted at 8 of 40");
        for (; n < 40; n++) {
                int sv[2];
                CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
                CHECK(varlink_server_add_connection(s, sv[0], NULL) == 0);
                peers[n] = sv[1];
        }
        CHECK_MSG(!varlink_server_admits(s, 0, &why), "root refused at 40 of 40: %s", strna(why));
        CHECK(varlink_server_n_connections(s) == 40);

        /* A peer that hung up stops counting once the loop sees it. */
        close(peers[--n]);
        for (int i = 0; i < 10; i++)
                (void) sd_event_run(e, 10000);
        CHECK_MSG(varlink_server_n_connections(s) == 39, "hung-up peer no longer counted (%zu)",
                  varlink_server_n_connections(s));
        CHECK_MSG(varlink_server_admits(s, 0, &why), "root admitted again");
        while (n > 0)
                close(peers[--n]);
        varlink_server_free(s);
        sd_event_unref(e);
}

/* At the per-uid cap, peers that already hung up are found at once (one
 * poll), without waiting for the loop. */
static void test_per_uid_reap(void) {
        VarlinkLimits limits = { .max_connections_per_uid = 3 };
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        const char *why = NULL;
        int peers[3];

        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, &limits, &s) == 0);
        for (int i = 0; i < 3; i++) {
                int sv[2];
                CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
                CHECK(varlink_server_add_connection(s, sv[0], NULL) == 0);
                peers[i] = sv[1];
        }
        CHECK_MSG(!varlink_server_admits(s, getuid(), &why), "at the per-uid cap: %s", strna(why));
        close(peers[0]);
        CHECK_MSG(varlink_server_admits(s, getuid(), &why), "a hung-up peer frees its slot at once");
        CHECK(varlink_server_n_connections(s) == 2);
        close(peers[1]);
        close(peers[2]);
        varlink_server_free(s);
        sd_event_unref(e);
}

int main(void) {
        test_table();
        test_caps();
        test_per_uid_reap();
        return test_result();
}
