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
        /* Or deferred notifications, shared with other streams and written
         * with one sendmsg(); data holds them instead once one was cut short.
         * Room for PARTS_PER_WRITE of them is allocated with the Output. */
        size_t n_parts;
        VarlinkNotification *parts[];
};

#define PARTS_PER_WRITE 64

/* --- Output queue --- */

static void output_drop_parts(Output *o) {
        for (size_t i = 0; i < o->n_parts; i++)
                varlink_notification_unref(o->parts[i]);
        o->n_parts = 0;
}

static void output_free(Output *o) {
        for (size_t i = 0; i < o->n_fds; i++)
                safe_close(o->fds[i]);
        free(o->fds);
        output_drop_parts(o);
        free(o->data);
        free(o);
}

/* Queued output is charged to the connection and, while it is counted, to
 * its uid. */
static void connection_account_output(VarlinkConnection *c, size_t add, size_t sub) {
        c->out_bytes = c->out_bytes + add - sub;
        if (c->quota)
                c->quota->out_bytes = c->quota->out_bytes + add - sub;
}

/* Notifications in one piece of memory, for what a full socket left. */
static int output_flatten(Output *o) {
        char *data = malloc(o->len), *p = data;

        if (!data)
                return -ENOMEM;
        for (size_t i = 0; i < o->n_parts; i++)
                p = mempcpy(p, o->parts[i]->data, o->parts[i]->len);
        output_drop_parts(o);
        o->data = data;
        return 0;
}

/* All of o's notifications at once, while nothing of them went out. */
static ssize_t output_write_parts(VarlinkConnection *c, Output *o) {
        struct iovec iov[PARTS_PER_WRITE];
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = o->n_parts };
        ssize_t n;

        for (size_t i = 0; i < o->n_parts; i++)
                iov[i] = (struct iovec) { .iov_base = o->parts[i]->data, .iov_len = o->parts[i]->len };
        do
                n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return n;
}

/* Write as much queued output as the socket takes. 0 when the queue is empty
 * or the socket is full, negative errno when the connection is broken. */
int varlink_connection_flush(VarlinkConnection *c) {
        while (c->out_head) {
                Output *o = c->out_head;
                ssize_t n;

                if (o->n_parts > 0) {
                        n = output_write_parts(c, o);
                        if (n >= 0 && (size_t) n < o->len && output_flatten(o) < 0)
                                return -ENOMEM;
                } else
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
        return 0;
}

/* A single reply may be large (ListDevices); a backlog may not. A stream
 * (Monitor) gets less room: a subscriber that falls behind is dropped rather
 * than buffered for. The uid's total bounds what many connections queue. */
static bool connection_over_output_cap(VarlinkConnection *c, size_t len) {
        const VarlinkLimits *l = &c->server->limits;
        size_t cap = c->current && c->current->streaming ? l->max_stream_output : l->max_output;

        if (c->out_bytes == 0)
                return false;
        if (c->out_bytes + len > cap)
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

/* --- Deferred stream output --- */

void varlink_connection_unqueue_flush(VarlinkConnection *c) {
        VarlinkServer *s = c->server;

        if (!c->flush_queued)
                return;
        if (c->flush_prev)
                c->flush_prev->flush_next = c->flush_next;
        else
                s->flush_head = c->flush_next;
        if (c->flush_next)
                c->flush_next->flush_prev = c->flush_prev;
        c->flush_prev = c->flush_next = NULL;
        c->flush_queued = false;
}

/* The first connection queued: the flush is due at the next iteration, or
 * in a burst of events once VARLINK_STREAM_FLUSH_USEC passed since the last. */
static void flush_schedule(VarlinkServer *s) {
        uint64_t now = 0, due = s->last_flush_usec + VARLINK_STREAM_FLUSH_USEC;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (s->last_flush_usec == 0 || now >= due ||
            sd_event_source_set_time(s->flush_timer, due) < 0 ||
            sd_event_source_set_enabled(s->flush_timer, SD_EVENT_ONESHOT) < 0)
                (void) sd_event_source_set_enabled(s->flush_source, SD_EVENT_ONESHOT);
}

static void flush_enqueue(VarlinkConnection *c) {
        VarlinkServer *s = c->server;

        if (c->flush_queued)
                return;
        if (!s->flush_head)
                flush_schedule(s);
        c->flush_next = s->flush_head;
        if (s->flush_head)
                s->flush_head->flush_prev = c;
        s->flush_head = c;
        c->flush_queued = true;
}

static void output_add_part(Output *o, VarlinkNotification *n) {
        n->n_ref++;
        o->parts[o->n_parts++] = n;
        o->len += n->len;
}

int varlink_connection_send_deferred(VarlinkConnection *c, VarlinkNotification *n) {
        Output *o = c->out_tail;

        if (c->dead || c->close_after_flush)
                return -ENOTCONN;
        if (connection_over_output_cap(c, n->len)) {
                log_warning("varlink: peer uid %u does not read its replies (%zu bytes queued, %zu for the uid), "
                            "disconnecting.", (unsigned) c->uid, c->out_bytes, c->quota ? c->quota->out_bytes : 0);
                varlink_connection_kill(c);
                return -ENOBUFS;
        }
        /* Behind the last queued notifications if none of them went out yet. */
        if (!o || o->n_parts == 0 || o->n_parts >= PARTS_PER_WRITE) {
                o = calloc(1, sizeof(*o) + PARTS_PER_WRITE * sizeof(o->parts[0]));
                if (!o)
                        return -ENOMEM;
                if (c->out_tail)
                        c->out_tail->next = o;
                else
                        c->out_head = o;
                c->out_tail = o;
        }
        output_add_part(o, n);
        connection_account_output(c, n->len, 0);
        flush_enqueue(c);
        return 0;
}

static void server_flush(VarlinkServer *s) {
        VarlinkConnection *c;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &s->last_flush_usec);
        (void) sd_event_source_set_enabled(s->flush_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->flush_timer, SD_EVENT_OFF);
        while ((c = s->flush_head)) {
                int r;

                varlink_connection_unqueue_flush(c);
                if (c->dead)
                        continue;
                r = varlink_connection_flush(c);
                if (r < 0) {
                        log_debug_errno(r, "varlink: write to peer uid %u failed: %m", (unsigned) c->uid);
                        varlink_connection_kill(c);
                        continue;
                }
                /* A drained backlog lets waiting calls run. */
                if (!c->out_head)
                        varlink_connection_process(c);
                varlink_connection_update_events(c);
        }
}

static int on_server_flush(sd_event_source *source, void *userdata) {
        server_flush(userdata);
        return 0;
}

static int on_server_flush_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        server_flush(userdata);
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

int varlink_server_add_flush(VarlinkServer *s) {
        int r;

        r = sd_event_add_defer(s->event, &s->flush_source, on_server_flush, s);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->flush_source, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(s->event, &s->flush_timer, CLOCK_MONOTONIC, 0, 0, on_server_flush_timer, s);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->flush_timer, SD_EVENT_OFF);
        return r;
}
