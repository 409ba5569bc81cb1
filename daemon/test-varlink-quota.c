/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The varlink server on the shared account (quota.h): its connections and
 * the D-Bus sessions charged beside them share one per-uid and one global
 * cap; the refused peer is told LimitExceeded and why; root goes on; hung-up
 * peers stop counting. Peers of another uid come from a child that became
 * that uid (SO_PEERCRED names a socket pair's creator), when run as root. */
#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "varlink-internal.h"

#define USER 65534u             /* the uid whose caps are tested, when we are root */

static bool is_root(void) {
        return geteuid() == 0;
}

static uid_t user_uid(void) {
        return is_root() ? USER : getuid();
}

/* A connected pair: fd for the server, client for the test. */
typedef struct Peer {
        int fd, client;
        pid_t pid;                      /* the child that made it and lives while it does, or 0 */
        int hold;                       /* its end closes when we let it go */
} Peer;

static int send_two_fds(int chan, const int fds[2]) {
        char cbuf[CMSG_SPACE(2 * sizeof(int))] = {}, byte = 0;
        struct iovec iov = { &byte, 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(2 * sizeof(int));
        memcpy(CMSG_DATA(c), fds, 2 * sizeof(int));
        return sendmsg(chan, &mh, 0) == 1 ? 0 : -errno;
}

static int recv_two_fds(int chan, int fds[2]) {
        char cbuf[CMSG_SPACE(2 * sizeof(int))], byte;
        struct iovec iov = { &byte, 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
        struct cmsghdr *c;

        if (recvmsg(chan, &mh, MSG_CMSG_CLOEXEC) != 1)
                return -EIO;
        c = CMSG_FIRSTHDR(&mh);
        if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int)))
                return -EIO;
        memcpy(fds, CMSG_DATA(c), 2 * sizeof(int));
        return 0;
}

static int peer_new(uid_t uid, Peer *ret) {
        int sv[2], chan[2];
        char ack;

        *ret = (Peer) { .fd = -1, .client = -1, .hold = -1 };
        if (uid == geteuid()) {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                        return -errno;
                ret->fd = sv[0];
                ret->client = sv[1];
                return 0;
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) < 0)
                return -errno;
        ret->pid = fork();
        if (ret->pid == 0) {
                char c;
                /* Nothing else: an earlier peer's hold end kept here would
                 * keep that child from seeing EOF. */
                if (close_range(3, chan[1] - 1, 0) < 0 || close_range(chan[1] + 1, ~0U, 0) < 0)
                        _exit(1);
                if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0 ||
                    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || send_two_fds(chan[1], sv) < 0)
                        _exit(1);
                /* Ours go, so the server's close is the peer's EOF; we stay
                 * alive while the server looks at it (its pidfd). */
                close(sv[0]);
                close(sv[1]);
                if (write(chan[1], "k", 1) != 1)
                        _exit(1);
                /* EOF when the test lets go; an error means the same. */
                if (read(chan[1], &c, 1) < 0)
                        _exit(0);
                _exit(0);
        }
        close(chan[1]);
        ret->hold = chan[0];
        /* Then its ack: it closed its copies. */
        if (ret->pid < 0 || recv_two_fds(chan[0], sv) < 0 || read(chan[0], &ack, 1) != 1)
                return -EIO;
        ret->fd = sv[0];
        ret->client = sv[1];
        return 0;
}

static void peer_done(Peer *p) {
        if (p->client >= 0)
                close(p->client);
        if (p->hold >= 0)
                close(p->hold);
        if (p->pid > 0)
                (void) waitpid(p->pid, NULL, 0);
        *p = (Peer) { .fd = -1, .client = -1, .hold = -1 };
}

/* Hand p's server end to s: 0, or what varlink_server_add_connection() said. */
static int peer_connect(VarlinkServer *s, uid_t uid, Peer *p) {
        int r = peer_new(uid, p);

        if (r < 0)
                return r;
        r = varlink_server_add_connection(s, p->fd, NULL);
        p->fd = -1;     /* taken either way */
        return r;
}

/* What the server wrote to a refused peer before closing: the first message. */
static bool refused_with(Peer *p, const char *want) {
        char buf[1024] = {};
        ssize_t n = recv(p->client, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        char c;

        printf("  refused: %s\n", n > 0 ? buf : "(nothing)");
        return n > 0 && strstr(buf, "io.iommufd.Broker.LimitExceeded") && strstr(buf, want) &&
               recv(p->client, &c, 1, MSG_DONTWAIT) == 0;
}

/* A connection's per-uid entry is the quota's: a uid's connections and its
 * D-Bus sessions share it, a session keeps it (nothing of the connections
 * left in it) after they go, and it goes with the uid's last client. */
static void test_shared_entry(void) {
        _cleanup_(quota_freep) Quota *q = NULL;
        uid_t user = user_uid();
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        VarlinkConnection *c[2];
        UidQuota *u;
        Peer p[2];

        CHECK(quota_new(NULL, &q) == 0);
        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, NULL, &s) == 0 && varlink_server_set_quota(s, q) == 0);
        CHECK(quota_charge(q, user, QUOTA_DBUS, NULL) == 0);
        u = quota_find(q, user);
        for (int i = 0; i < 2; i++) {
                CHECK(peer_new(user, &p[i]) == 0 && varlink_server_add_connection(s, p[i].fd, &c[i]) == 0);
                p[i].fd = -1;
        }
        CHECK_MSG(u && c[0]->quota == u && c[1]->quota == u && quota_n_uids(q) == 1,
                  "uid %u: both connections on its D-Bus session's entry", (unsigned) user);
        CHECK_MSG(u->connections == c[1] && c[1]->uid_next == c[0] && u->n[QUOTA_VARLINK] == 2,
                  "the entry lists the uid's connections");
        for (int i = 0; i < 2; i++)
                peer_done(&p[i]);
        varlink_server_free(s);
        CHECK_MSG(quota_find(q, user) == u && u->total == 1 && !u->connections && u->out_bytes == 0,
                  "connections gone, the session keeps the entry");
        quota_release(q, user, QUOTA_DBUS);
        CHECK_MSG(quota_find(q, user) == NULL && quota_n_uids(q) == 0, "gone with the last client");
        sd_event_unref(e);
}

/* A cap of 4 per uid: 2 D-Bus sessions (charged as dbus-broker.c does) and
 * 2 connections fill it; the next connection is refused, saying both. */
static void test_per_uid_shared(void) {
        _cleanup_(quota_freep) Quota *q = NULL;
        uid_t user = user_uid();
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        Peer peers[4], extra, root[6];

        CHECK(quota_new(&(QuotaLimits) { .max_clients_per_uid = 4 }, &q) == 0);
        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, NULL, &s) == 0);
        CHECK(varlink_server_set_quota(s, q) == 0);
        CHECK(quota_charge(q, user, QUOTA_DBUS, NULL) == 0 && quota_charge(q, user, QUOTA_DBUS, NULL) == 0);
        for (int i = 0; i < 2; i++)
                CHECK_MSG(peer_connect(s, user, &peers[i]) == 0, "uid %u: connection %d beside 2 D-Bus sessions",
                          (unsigned) user, i + 1);
        CHECK_MSG(varlink_server_set_quota(s, q) == -EBUSY, "the quota stays once connections are charged");
        CHECK_MSG(peer_connect(s, user, &extra) == -EUSERS, "a third connection: the uid's cap is full");
        CHECK_MSG(refused_with(&extra, "varlink connections: 2, D-Bus sessions: 2"),
                  "refused peer told LimitExceeded with both front ends' share, then EOF");
        peer_done(&extra);
        CHECK_INT(quota_n_of_uid(q, user, QUOTA_VARLINK), 2);

        /* A D-Bus session ends: a connection fits. */
        quota_release(q, user, QUOTA_DBUS);
        CHECK_MSG(peer_connect(s, user, &peers[2]) == 0, "a D-Bus session ended: a connection fits");
        CHECK(peer_connect(s, user, &extra) == -EUSERS);
        peer_done(&extra);

        if (is_root()) {
                for (int i = 0; i < 6; i++)
                        CHECK_MSG(peer_connect(s, 0, &root[i]) == 0, "root: connection %d past a cap of 4", i + 1);
                for (int i = 0; i < 6; i++)
                        peer_done(&root[i]);
        }
        for (int i = 0; i < 3; i++)
                peer_done(&peers[i]);
        varlink_server_free(s);
        quota_release(q, user, QUOTA_DBUS);
        CHECK_MSG(quota_n_clients(q) == 0, "every connection released on free (%u left)", quota_n_clients(q));
        sd_event_unref(e);
}

/* A global cap of 40, 32 of them root's: 5 D-Bus sessions of one user and
 * 3 connections of another take the 8 users have; root gets in past 40. */
static void test_global_shared(void) {
        _cleanup_(quota_freep) Quota *q = NULL;
        uid_t user = user_uid(), other = user + 1;
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        Peer peers[3], extra, root[40];

        CHECK(quota_new(&(QuotaLimits) { .max_clients = 40 }, &q) == 0);
        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, NULL, &s) == 0 && varlink_server_set_quota(s, q) == 0);
        for (int i = 0; i < 5; i++)
                CHECK(quota_charge(q, other, QUOTA_DBUS, NULL) == 0);
        for (int i = 0; i < 3; i++)
                CHECK(peer_connect(s, user, &peers[i]) == 0);
        CHECK_MSG(peer_connect(s, user, &extra) == -EUSERS, "uid %u refused at 8 of 40", (unsigned) user);
        CHECK_MSG(refused_with(&extra, "too many connections"), "told LimitExceeded: the users' share is full");
        peer_done(&extra);

        if (is_root()) {
                for (int i = 0; i < 40; i++)
                        CHECK(peer_connect(s, 0, &root[i]) == 0);
                CHECK_MSG(quota_n_clients(q) == 48, "root is never refused: 48 of 40 (%u)", quota_n_clients(q));
                /* A hung-up peer stops counting once the loop sees it. */
                peer_done(&root[39]);
                for (int i = 0; i < 10; i++)
                        (void) sd_event_run(e, 10000);
                CHECK_MSG(varlink_server_n_connections(s) == 42 && quota_n_clients(q) == 47,
                          "hung-up peer no longer counted (%zu connections)", varlink_server_n_connections(s));
                for (int i = 0; i < 39; i++)
                        peer_done(&root[i]);
        }
        for (int i = 0; i < 3; i++)
                peer_done(&peers[i]);
        varlink_server_free(s);
        for (int i = 0; i < 5; i++)
                quota_release(q, other, QUOTA_DBUS);
        CHECK(quota_n_clients(q) == 0);
        sd_event_unref(e);
}

/* At the per-uid cap, peers that already hung up are found at once (one
 * poll), without waiting for the loop. */
static void test_per_uid_reap(void) {
        uid_t user = user_uid();
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        Quota *q = NULL;
        Peer peers[4];

        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, NULL, &s) == 0);
        CHECK(quota_new(&(QuotaLimits) { .max_clients_per_uid = 3 }, &q) == 0 && varlink_server_set_quota(s, q) == 0);
        for (int i = 0; i < 3; i++)
                CHECK(peer_connect(s, user, &peers[i]) == 0);
        CHECK_MSG(varlink_server_admit(s, user, NULL) == -EUSERS, "at the per-uid cap");
        peer_done(&peers[0]);
        CHECK_MSG(varlink_server_admit(s, user, NULL) == 0, "a hung-up peer frees its slot at once");
        CHECK(varlink_server_n_connections(s) == 2 && quota_n_of_uid(q, user, QUOTA_VARLINK) == 2);
        CHECK(peer_connect(s, user, &peers[3]) == 0);
        for (int i = 1; i < 4; i++)
                peer_done(&peers[i]);
        varlink_server_free(s);
        /* Full with D-Bus sessions alone: nothing to look at, refused. */
        CHECK(quota_n_of_uid(q, user, _QUOTA_KIND_MAX) == 0);
        for (int i = 0; i < 3; i++)
                CHECK(quota_charge(q, user, QUOTA_DBUS, NULL) == 0);
        CHECK(varlink_server_new(e, NULL, &s) == 0 && varlink_server_set_quota(s, q) == 0);
        CHECK_MSG(varlink_server_admit(s, user, NULL) == -EUSERS, "at the cap with D-Bus sessions only");
        varlink_server_free(s);
        for (int i = 0; i < 3; i++)
                quota_release(q, user, QUOTA_DBUS);
        quota_free(q);
        sd_event_unref(e);
}

/* Without a shared quota the server has its own, with the defaults. */
static void test_own_quota(void) {
        sd_event *e = NULL;
        VarlinkServer *s = NULL;
        Peer p;

        CHECK(sd_event_new(&e) >= 0 && varlink_server_new(e, NULL, &s) == 0);
        CHECK_INT(quota_limits(s->quota)->max_clients_per_uid, QUOTA_DEFAULT_MAX_CLIENTS_PER_UID);
        CHECK(peer_connect(s, geteuid(), &p) == 0 && quota_n_clients(s->quota) == 1);
        peer_done(&p);
        varlink_server_free(s);
        sd_event_unref(e);
}

int main(void) {
        if (!is_root())
                printf("# not root: the caps are tested on uid %u only, root's side is skipped\n", (unsigned) getuid());
        test_shared_entry();
        test_per_uid_shared();
        test_global_shared();
        test_per_uid_reap();
        test_own_quota();
        return test_result();
}
