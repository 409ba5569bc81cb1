/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Shared stream logs (see varlink-broadcast.h) and the server's flush that
 * writes them. Appending costs the same for one stream or a thousand; a
 * flush costs each stream one write. */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "varlink-broadcast.h"
#include "varlink-internal.h"

/* The streams of one uid: their unread bytes are charged to it in one step. */
typedef struct Charge {
        UidQuota *quota;
        size_t n_streams;
} Charge;

struct VarlinkBroadcast {
        VarlinkServer *server;
        char *data;                     /* the bytes from base to end */
        size_t size;                    /* allocated */
        uint64_t base, end;             /* offsets since the broadcast began */
        /* No stream's queued output (its own queue, then its unread part
         * here) starts before this offset: exact after a flush, lowered as
         * streams join or queue replies of their own, so that one compare
         * tells an append that no stream can be over its cap. */
        int64_t low;
        VarlinkConnection *streams;
        size_t n_streams;
        Charge *charges;
        size_t n_charges;
        VarlinkBroadcast *flush_prev, *flush_next;      /* server->flush_head */
        bool flush_queued;
        uint64_t flushed_end;           /* end at the last flush */
};

#define NOTIFY_PREFIX "{\"continues\":true,\"parameters\":"
#define NOTIFY_EXTRA (sizeof(NOTIFY_PREFIX) - 1 + 2)    /* prefix, "}" and the NUL */

/* Memory kept by a log that everybody read, for the next burst. */
#define KEEP_IDLE (16u * 1024u)

static size_t stream_unread(const VarlinkConnection *c) {
        return c->bcast ? (size_t) (c->bcast->end - c->bcast_pos) : 0;
}

size_t varlink_connection_queued(const VarlinkConnection *c) {
        return c->out_bytes + stream_unread(c);
}

static int64_t stream_start(const VarlinkConnection *c) {
        return (int64_t) c->bcast_pos - (int64_t) c->out_bytes;
}

/* --- what the streams cost their uids --- */

static Charge *charge_find(VarlinkBroadcast *b, const UidQuota *q) {
        for (size_t i = 0; i < b->n_charges; i++)
                if (b->charges[i].quota == q)
                        return &b->charges[i];
        return NULL;
}

static int charge_add(VarlinkBroadcast *b, UidQuota *q) {
        Charge *ch = charge_find(b, q), *t;

        if (ch) {
                ch->n_streams++;
                return 0;
        }
        t = reallocarray(b->charges, b->n_charges + 1, sizeof(Charge));
        if (!t)
                return -ENOMEM;
        b->charges = t;
        b->charges[b->n_charges++] = (Charge) { q, 1 };
        return 0;
}

static void charge_remove(VarlinkBroadcast *b, const UidQuota *q) {
        Charge *ch = charge_find(b, q);

        if (ch && --ch->n_streams == 0)
                *ch = b->charges[--b->n_charges];
}

/* --- streams joining and leaving --- */

void varlink_connection_leave_broadcast(VarlinkConnection *c) {
        VarlinkBroadcast *b = c->bcast;

        if (!b)
                return;
        if (c->quota) {
                c->quota->out_bytes -= stream_unread(c);
                charge_remove(b, c->quota);
        }
        if (c->bcast_prev)
                c->bcast_prev->bcast_next = c->bcast_next;
        else
                b->streams = c->bcast_next;
        if (c->bcast_next)
                c->bcast_next->bcast_prev = c->bcast_prev;
        c->bcast_prev = c->bcast_next = NULL;
        c->bcast = NULL;
        c->bcast_blocked = false;
        b->n_streams--;
}

int varlink_broadcast_attach(VarlinkBroadcast *b, VarlinkCall *call) {
        VarlinkConnection *c;
        int r;

        if (!b || !call || !call->streaming)
                return -EINVAL;
        c = call->conn;
        if (c->dead || !c->quota)
                return -ENOTCONN;
        if (c->bcast)
                return c->bcast == b ? 0 : -EBUSY;
        r = charge_add(b, c->quota);
        if (r < 0)
                return r;
        c->bcast = b;
        c->bcast_pos = b->end;
        c->bcast_next = b->streams;
        if (b->streams)
                b->streams->bcast_prev = c;
        b->streams = c;
        b->n_streams++;
        if (stream_start(c) < b->low)
                b->low = stream_start(c);
        return 0;
}

void varlink_broadcast_detach(VarlinkBroadcast *b, VarlinkCall *call) {
        if (b && call && call->conn->bcast == b)
                varlink_connection_leave_broadcast(call->conn);
}

size_t varlink_broadcast_n_streams(const VarlinkBroadcast *b) {
        return b ? b->n_streams : 0;
}

/* The stream's unread bytes move to its own queue, behind what is there:
 * a reply of its own must not overtake them. */
int varlink_connection_take_unread(VarlinkConnection *c) {
        size_t n = stream_unread(c);
        const char *p;
        int r;

        if (n == 0)
                return 0;
        p = c->bcast->data + (c->bcast_pos - c->bcast->base);
        r = varlink_connection_queue_copy(c, p, n);
        if (r < 0)
                return r;
        /* Counted once, in the queue now. */
        c->quota->out_bytes -= n;
        c->bcast_pos = c->bcast->end;
        c->bcast_blocked = false;
        return 0;
}

void varlink_connection_stream_queued(VarlinkConnection *c) {
        if (stream_start(c) < c->bcast->low)
                c->bcast->low = stream_start(c);
}

/* --- writing --- */

/* What the stream has not read, in one write; sets bcast_blocked when the
 * socket took less (EPOLLOUT then writes the rest). */
int varlink_connection_write_unread(VarlinkConnection *c) {
        VarlinkBroadcast *b = c->bcast;
        size_t n = stream_unread(c);
        ssize_t k;

        if (n == 0) {
                c->bcast_blocked = false;
                return 0;
        }
        /* Plain send(): no fds, and this runs for every stream at every flush. */
        do
                k = send(c->fd, b->data + (c->bcast_pos - b->base), n, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                k = 0;
        if (k < 0)
                return -errno;
        c->bcast_pos += (uint64_t) k;
        c->quota->out_bytes -= (size_t) k;
        c->bcast_blocked = (size_t) k < n;
        return 0;
}

/* Drop what every stream has read; memory for the next burst is kept. */
static void broadcast_compact(VarlinkBroadcast *b, uint64_t read_by_all) {
        size_t keep = (size_t) (b->end - read_by_all), drop = (size_t) (read_by_all - b->base);

        if (keep == 0 && b->size > KEEP_IDLE) {
                free(b->data);
                b->data = NULL;
                b->size = 0;
        } else if (keep > 0 && drop > 0)
                memmove(b->data, b->data + drop, keep);
        b->base = read_by_all;
}

static void broadcast_flush(VarlinkBroadcast *b) {
        uint64_t read_by_all = b->end;
        int64_t low = (int64_t) b->end;
        VarlinkConnection *next;

        for (VarlinkConnection *c = b->streams; c; c = next) {
                next = c->bcast_next;
                /* One waiting for EPOLLOUT, its own queue first, writes there. */
                if (!c->out_head && !c->bcast_blocked && stream_unread(c) > 0) {
                        int r = varlink_connection_write_unread(c);

                        if (r < 0) {
                                log_debug_errno(r, "varlink: write to peer uid %u failed: %m", (unsigned) c->uid);
                                varlink_connection_kill(c);
                                continue;
                        }
                        /* Full socket: wait for EPOLLOUT, and stop reading meanwhile. */
                        if (c->bcast_blocked || c->close_after_flush || c->read_eof)
                                varlink_connection_update_events(c);
                }
                if (c->bcast != b)
                        continue;
                if (c->bcast_pos < read_by_all)
                        read_by_all = c->bcast_pos;
                if (stream_start(c) < low)
                        low = stream_start(c);
        }
        b->low = low;
        b->flushed_end = b->end;
        broadcast_compact(b, read_by_all);
}

/* --- caps --- */

static void stream_drop(VarlinkConnection *c) {
        log_warning("varlink: peer uid %u does not read its stream (%zu bytes queued, %zu for the uid), "
                    "disconnecting.", (unsigned) c->uid, varlink_connection_queued(c),
                    c->quota ? c->quota->out_bytes : 0);
        varlink_connection_kill(c);
}

/* The exact check behind b->low: drop every stream that len more bytes
 * would put over max_stream_output (as for any queued output, one with
 * nothing queued takes it). */
static void drop_over_stream_cap(VarlinkBroadcast *b, size_t len) {
        size_t cap = b->server->limits.max_stream_output;
        int64_t low = (int64_t) b->end;
        VarlinkConnection *next;

        for (VarlinkConnection *c = b->streams; c; c = next) {
                size_t queued = varlink_connection_queued(c);

                next = c->bcast_next;
                if (queued > 0 && queued + len > cap)
                        stream_drop(c);
                else if (stream_start(c) < low)
                        low = stream_start(c);
        }
        b->low = low;
}

/* q's uid would go past max_output_per_uid: drop its streams furthest
 * behind, one at a time, until it fits (or only streams with nothing
 * queued are left). Returns whether any was dropped. */
static bool drop_for_uid(VarlinkBroadcast *b, UidQuota *q, size_t len) {
        size_t cap = b->server->limits.max_output_per_uid;
        bool dropped = false;

        for (;;) {
                Charge *ch = charge_find(b, q);
                VarlinkConnection *worst = NULL;
                size_t most = 0;
                bool last;

                if (!ch || q->out_bytes + len * ch->n_streams <= cap)
                        return dropped;
                for (VarlinkConnection *c = b->streams; c; c = c->bcast_next)
                        if (c->quota == q && varlink_connection_queued(c) > most) {
                                most = varlink_connection_queued(c);
                                worst = c;
                        }
                if (!worst)
                        return dropped;
                /* With its uid's last client goes q itself. */
                last = ch->n_streams == 1;
                stream_drop(worst);
                dropped = true;
                if (last)
                        return true;
        }
}

static void broadcast_enforce_caps(VarlinkBroadcast *b, size_t len) {
        const VarlinkLimits *l = &b->server->limits;

        if ((int64_t) (b->end + len) - b->low > (int64_t) l->max_stream_output)
                drop_over_stream_cap(b, len);
        for (size_t i = 0; i < b->n_charges; i++) {
                Charge *ch = &b->charges[i];

                if (ch->quota->out_bytes + len * ch->n_streams > l->max_output_per_uid &&
                    drop_for_uid(b, ch->quota, len))
                        i = SIZE_MAX;   /* charges moved: from the start (i++ wraps to 0) */
        }
}

/* --- appending --- */

static int broadcast_reserve(VarlinkBroadcast *b, size_t len) {
        size_t used = (size_t) (b->end - b->base), size;
        char *t;

        if (b->size - used >= len)
                return 0;
        size = b->size * 2 > used + len ? b->size * 2 : used + len;
        if (size < 4096)
                size = 4096;
        t = realloc(b->data, size);
        if (!t)
                return -ENOMEM;
        b->data = t;
        b->size = size;
        return 0;
}

static void flush_enqueue(VarlinkBroadcast *b);
static void flush_soon(VarlinkServer *s);

int varlink_broadcast_append(VarlinkBroadcast *b, const char *parameters, size_t len) {
        size_t n = NOTIFY_EXTRA + len;
        char *p;
        int r;

        if (!b || !parameters)
                return -EINVAL;
        if (b->n_streams == 0)
                return 0;
        broadcast_enforce_caps(b, n);
        if (b->n_streams == 0)
                return 0;
        r = broadcast_reserve(b, n);
        if (r < 0)
                return r;
        p = b->data + (b->end - b->base);
        p = mempcpy(p, NOTIFY_PREFIX, sizeof(NOTIFY_PREFIX) - 1);
        p = mempcpy(p, parameters, len);
        p[0] = '}';
        p[1] = 0;
        b->end += n;
        for (size_t i = 0; i < b->n_charges; i++)
                b->charges[i].quota->out_bytes += n * b->charges[i].n_streams;
        flush_enqueue(b);
        /* A long interval must not bring a stream near its cap. */
        if (b->end - b->flushed_end >= b->server->limits.max_stream_output / 2)
                flush_soon(b->server);
        return 0;
}

int varlink_broadcast_new(VarlinkServer *s, VarlinkBroadcast **ret) {
        VarlinkBroadcast *b;

        if (!s || !ret)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->server = s;
        *ret = b;
        return 0;
}

static void flush_unqueue(VarlinkBroadcast *b);

VarlinkBroadcast *varlink_broadcast_free(VarlinkBroadcast *b) {
        if (!b)
                return NULL;
        while (b->streams)
                varlink_connection_leave_broadcast(b->streams);
        flush_unqueue(b);
        free(b->charges);
        free(b->data);
        free(b);
        return NULL;
}

/* --- the server's flush --- */

static void flush_unqueue(VarlinkBroadcast *b) {
        VarlinkServer *s = b->server;

        if (!b->flush_queued)
                return;
        if (b->flush_prev)
                b->flush_prev->flush_next = b->flush_next;
        else
                s->flush_head = b->flush_next;
        if (b->flush_next)
                b->flush_next->flush_prev = b->flush_prev;
        b->flush_prev = b->flush_next = NULL;
        b->flush_queued = false;
}

static void flush_soon(VarlinkServer *s) {
        (void) sd_event_source_set_enabled(s->flush_source, SD_EVENT_ONESHOT);
}

/* The first log queued since the last flush. After a quiet interval the
 * flush is due at the next iteration (after two, the interval is back to its
 * shortest). In a burst it is due one interval after the last flush, and the
 * interval doubles for the next, up to VARLINK_STREAM_FLUSH_MAX_USEC: the
 * longer a storm of events lasts, the fewer writes it costs each stream. */
static void flush_schedule(VarlinkServer *s) {
        uint64_t now = 0, due;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (s->flush_interval_usec == 0 || now >= s->last_flush_usec + 2 * s->flush_interval_usec)
                s->flush_interval_usec = VARLINK_STREAM_FLUSH_USEC;
        due = s->last_flush_usec + s->flush_interval_usec;
        if (s->last_flush_usec == 0 || now >= due ||
            sd_event_source_set_time(s->flush_timer, due) < 0 ||
            sd_event_source_set_enabled(s->flush_timer, SD_EVENT_ONESHOT) < 0) {
                flush_soon(s);
                return;
        }
        s->flush_interval_usec *= 2;
        if (s->flush_interval_usec > VARLINK_STREAM_FLUSH_MAX_USEC)
                s->flush_interval_usec = VARLINK_STREAM_FLUSH_MAX_USEC;
}

static void flush_enqueue(VarlinkBroadcast *b) {
        VarlinkServer *s = b->server;

        if (b->flush_queued)
                return;
        if (!s->flush_head)
                flush_schedule(s);
        b->flush_next = s->flush_head;
        if (s->flush_head)
                s->flush_head->flush_prev = b;
        s->flush_head = b;
        b->flush_queued = true;
}

static void server_flush(VarlinkServer *s) {
        VarlinkBroadcast *b;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &s->last_flush_usec);
        (void) sd_event_source_set_enabled(s->flush_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(s->flush_timer, SD_EVENT_OFF);
        while ((b = s->flush_head)) {
                flush_unqueue(b);
                broadcast_flush(b);
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
