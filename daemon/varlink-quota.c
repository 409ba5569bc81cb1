/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The varlink server on its Quota (quota.h): a connection is charged from
 * accept to close, and its uid's entry there also holds what the server
 * tracks per uid (queued output, the list of the uid's connections), so the
 * caps are checked without walking the connections and there is one table
 * of uids, not one per front end. */

#include <errno.h>
#include <poll.h>

#include "varlink-internal.h"

/* Charge c to the quota and put it on its uid's list, or do neither. */
int varlink_connection_attach_quota(VarlinkConnection *c) {
        VarlinkServer *s = c->server;
        VarlinkConnection *head;
        int r;

        r = quota_charge(s->quota, c->uid, QUOTA_VARLINK, NULL);
        if (r < 0)
                return r;
        c->quota = quota_find(s->quota, c->uid);        /* there while charged */
        head = c->quota->connections;
        c->uid_next = head;
        if (head)
                head->uid_prev = c;
        c->quota->connections = c;
        s->n_live++;
        return 0;
}

void varlink_connection_detach_quota(VarlinkConnection *c) {
        VarlinkServer *s = c->server;
        UidQuota *q = TAKE_PTR(c->quota);

        if (!q)
                return;
        q->out_bytes -= c->out_bytes;
        if (c->uid_prev)
                c->uid_prev->uid_next = c->uid_next;
        else
                q->connections = c->uid_next;
        if (c->uid_next)
                c->uid_next->uid_prev = c->uid_prev;
        c->uid_prev = c->uid_next = NULL;
        /* D-Bus sessions may keep the entry: the uid's next connection
         * starts from nothing queued, as with an entry of its own. */
        if (!q->connections)
                q->out_bytes = 0;
        quota_release(s->quota, c->uid, QUOTA_VARLINK);
        s->n_live--;
}

/* A peer that closed a moment ago may not have been reaped yet: it must not
 * count against the cap, or a client that reconnects at once is refused.
 * Only asked when uid is at its cap: one poll() over at most that many
 * sockets, and the ones found gone stop counting at once. */
static void server_reap_gone_peers(UidQuota *q) {
        unsigned max = q->n[QUOTA_VARLINK];     /* > 0: the list's length */
        struct pollfd p[max];
        VarlinkConnection *conns[max];
        size_t n = 0;

        for (VarlinkConnection *c = q->connections; c && n < max; c = c->uid_next) {
                conns[n] = c;
                p[n++] = (struct pollfd) { .fd = c->fd, .events = POLLIN };
        }
        if (poll(p, n, 0) <= 0)
                return;
        /* Killing the uid's last client frees q: only conns[] from here. */
        for (size_t i = 0; i < n; i++)
                if (p[i].revents & (POLLHUP | POLLERR))
                        varlink_connection_kill(conns[i]);
}

int varlink_server_admit(VarlinkServer *s, uid_t uid, BrokerError *err) {
        UidQuota *q = quota_find(s->quota, uid);

        /* Only varlink peers can be found gone here; D-Bus sessions end
         * when the bus says their name left. */
        if (q && q->n[QUOTA_VARLINK] > 0 && quota_uid_full(s->quota, uid))
                server_reap_gone_peers(q);
        return quota_check(s->quota, uid, err);
}
