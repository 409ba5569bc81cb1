/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A connection's output queue: replies written at once and what the socket
 * did not take queued, and stream notifications gathered and written by the
 * server's flush (see varlink.h for when). */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "json-write.h"
#include "log.h"
#include "varlink-internal.h"

struct Output {
        struct Output *next;
        char *data;
        size_t len, done;
        int *fds;                       /* sent with the first byte, then closed */
        size_t n_fds;
};

/* --- Output queue --- */

static void output_free(Output *o) {
        for (size_t i = 0; i < o->n_fds; i++)
                safe_close(o->fds[i]);
        free(o->fds);
        free(o->data);
        free(o);
}

/* Queued output is charged to the connection and, while it is counted, to
 * its uid. */
static void connection_account_output(VarlinkConnection *c, size_t add, size_t sub) {
        c->out_bytes = c->out_bytes + add - sub;
        if (c->quota)
                c->quota->out_bytes = c->quota->out_bytes + add - sub;
        if (add > 0 && c->bcast)
                varlink_connection_stream_queued(c);
}

/* Write as much queued output as the socket takes. 0 when the queue is empty
 * or the socket is full, negative errno when the connection is broken. */
int varlink_connection_flush(VarlinkConnection *c) {
        while (c->out_head) {
                Output *o = c->out_head;
                ssize_t n;

                n = varlink_wire_write(c->fd, o->data + o->done, o->len - o->done,
                                       o->done == 0 ? o->fds : NULL, o->done == 0 ? o->n_fds : 0);
                if (n == -EAGAIN)
                        return 0;
                if (n < 0)
                        return (int) n;
                if (o->done == 0) {
                        /* The fds went out with the first byte; keep no copy. */
                        for (size_t i = 0; i < o->n_fds; i++)
                                o->fds[i] = safe_close(o->fds[i]);
                        o->n_fds = 0;
                }
                o->done += (size_t) n;
                connection_account_output(c, 0, (size_t) n);
                if (o->done < o->len)
                        return 0;
                c->out_head = o->next;
                if (!c->out_head)
                        c->out_tail = NULL;
                output_free(o);
        }
        /* Then what a stream has not read of its broadcast. */
        return c->bcast ? varlink_connection_write_unread(c) : 0;
}

/* A single reply may be large (ListDevices); a backlog may not. A stream
 * (Monitor) gets less room: a subscriber that falls behind is dropped rather
 * than buffered for. The uid's total bounds what many connections queue. */
static bool connection_over_output_cap(VarlinkConnection *c, size_t len) {
        const VarlinkLimits *l = &c->server->limits;
        size_t cap = c->current && c->current->streaming ? l->max_stream_output : l->max_output;

        if (c->out_bytes == 0)
                return false;
        if (varlink_connection_queued(c) + len > cap)
                return true;
        return c->quota && c->quota->out_bytes + len > l->max_output_per_uid;
}

/* Queue one message (taking msg) with duplicates of fds, and try to send it. */
int varlink_connection_send(VarlinkConnection *c, json_t *msg, const int *fds, size_t n_fds) {
        char *data;
        size_t len;

        if (c->dead || c->close_after_flush) {
                json_decref(msg);
                return -ENOTCONN;
        }
        data = json_write_compact(msg, &len);
        json_decref(msg);
        if (!data)
                return -ENOMEM;
        return varlink_connection_send_encoded(c, data, len, fds, n_fds);
}

int varlink_connection_send_encoded(VarlinkConnection *c, char *data, size_t len, const int *fds, size_t n_fds) {
        size_t done = 0;
        Output *o;
        int r;

        if (c->dead || c->close_after_flush) {
                free(data);
                return -ENOTCONN;
        }
        r = varlink_connection_take_unread(c);
        if (r < 0) {
                free(data);
                varlink_connection_kill(c);
                return r;
        }
        /* Nothing queued: write at once with the caller's fds (the kernel
         * takes its own references) and queue only what the socket left. */
        if (!c->out_head) {
                ssize_t n = varlink_wire_write(c->fd, data, len, fds, n_fds);

                if (n < 0 && n != -EAGAIN) {
                        free(data);
                        log_debug_errno((int) n, "varlink: write to peer uid %u failed: %m", (unsigned) c->uid);
                        varlink_connection_kill(c);
                        return (int) n;
                }
                if (n == (ssize_t) len) {
                        free(data);
                        return 0;
                }
                if (n > 0) {
                        done = (size_t) n;
                        n_fds = 0;      /* they went with the first byte */
                }
        }
        o = calloc(1, sizeof(*o));
        if (!o) {
                free(data);
                return -ENOMEM;
        }
        o->data = data;
        o->len = len;
        o->done = done;
        if (n_fds > 0) {
                o->fds = calloc(n_fds, sizeof(int));
                if (!o->fds) {
                        output_free(o);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n_fds; i++) {
                        o->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                        o->n_fds = i + 1;
                        if (o->fds[i] < 0) {
                                r = -errno;
                                output_free(o);
                                return r;
                        }
                }
        }

        if (connection_over_output_cap(c, o->len - o->done)) {
                log_warning("varlink: peer uid %u does not read its replies (%zu bytes queued, %zu for the uid), "
                            "disconnecting.", (unsigned) c->uid, c->out_bytes, c->quota ? c->quota->out_bytes : 0);
                output_free(o);
                varlink_connection_kill(c);
                return -ENOBUFS;
        }

        if (c->out_tail)
                c->out_tail->next = o;
        else
                c->out_head = o;
        c->out_tail = o;
        connection_account_output(c, o->len - o->done, 0);

        r = varlink_connection_flush(c);
        if (r < 0) {
                log_debug_errno(r, "varlink: write to peer uid %u failed: %m", (unsigned) c->uid);
                varlink_connection_kill(c);
                return r;
        }
        varlink_connection_update_events(c);
        return 0;
}

/* A copy of len bytes at the end of the queue, already counted by the caller's
 * accounting (a stream's unread broadcast bytes moving here). */
int varlink_connection_queue_copy(VarlinkConnection *c, const char *data, size_t len) {
        Output *o = calloc(1, sizeof(*o));

        if (!o)
                return -ENOMEM;
        o->data = malloc(len);
        if (!o->data) {
                free(o);
                return -ENOMEM;
        }
        memcpy(o->data, data, len);
        o->len = len;
        if (c->out_tail)
                c->out_tail->next = o;
        else
                c->out_head = o;
        c->out_tail = o;
        connection_account_output(c, len, 0);
        return 0;
}

void varlink_connection_drop_output(VarlinkConnection *c) {
        while (c->out_head) {
                Output *o = c->out_head;
                c->out_head = o->next;
                output_free(o);
        }
        c->out_tail = NULL;
}
