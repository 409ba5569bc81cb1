/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared stream logs: order, one write per stream per flush, a stream's own
 * replies behind what it has not read, the output caps (a stream or uid
 * that falls behind is dropped, the others are not), and the flush interval
 * growing in a burst, over socketpairs. */

#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "varlink-internal.h"
#include "test.h"

static VarlinkCall *streams[4];
static size_t n_streams;

static void on_destroy(VarlinkCall *call, void *userdata) {
        for (size_t i = 0; i < n_streams; i++)
                if (streams[i] == call)
                        streams[i] = NULL;
}

static int method_watch(VarlinkCall *call, json_t *parameters, void *userdata) {
        varlink_call_set_destroy(call, on_destroy, NULL);
        if (n_streams < ELEMENTSOF(streams))
                streams[n_streams++] = call;
        return varlink_call_notify(call, json_pack("{s:s}", "event", "ready"));
}

static int method_echo(VarlinkCall *call, json_t *parameters, void *userdata) {
        return varlink_call_reply(call, json_incref(parameters));
}

static const VarlinkMethod methods[] = {
        { "Watch", method_watch, VARLINK_METHOD_MORE },
        { "Echo", method_echo, 0 },
        {}
};

static const VarlinkInterface interface = {
        .name = "org.example.test",
        .description = "interface org.example.test\nmethod Echo() -> ()\n",
        .methods = methods,
};

typedef struct Client {
        int fd;
        VarlinkReader *reader;
} Client;

static VarlinkServer *server_new(sd_event *e, const VarlinkLimits *limits) {
        VarlinkServer *s = NULL;

        if (varlink_server_new(e, limits, &s) < 0 || varlink_server_add_interface(s, &interface, NULL) < 0)
                abort();
        n_streams = 0;
        return s;
}

static void run(sd_event *e, int n) {
        for (int i = 0; i < n; i++)
                sd_event_run(e, 2000);
}

/* A stream with small socket buffers (sndbuf: the server's), attached to b
 * once its "ready" arrived. */
static void stream_open(sd_event *e, VarlinkServer *s, VarlinkBroadcast *b, int sndbuf, Client *cl) {
        static const char call[] = "{\"method\":\"org.example.test.Watch\",\"more\":true}";
        size_t before = n_streams;
        json_t *m = NULL;
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        if (sndbuf > 0 && (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0 ||
                           setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf)) < 0))
                abort();
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        cl->fd = sv[0];
        varlink_reader_new(1 << 20, &cl->reader);
        if (varlink_server_add_connection(s, sv[1], NULL) < 0 || write(cl->fd, call, sizeof(call)) != sizeof(call))
                abort();
        for (int i = 0; i < 500 && varlink_reader_next(cl->reader, &m, NULL, NULL) == 0; i++) {
                sd_event_run(e, 1000);
                (void) varlink_reader_fill(cl->reader, cl->fd);
        }
        CHECK_MSG(m && json_is_true(json_object_get(m, "continues")) && n_streams == before + 1,
                  "broadcast: stream %zu ready", before);
        json_decref(m);
        CHECK(varlink_broadcast_attach(b, streams[before]) == 0);
}

static void client_close(Client *cl) {
        cl->fd = safe_close(cl->fd);
        cl->reader = varlink_reader_free(cl->reader);
}

/* The next message without running the loop: 1, 0 at EOF, -EAGAIN. */
static int next_message(Client *cl, json_t **ret) {
        int k = varlink_reader_next(cl->reader, ret, NULL, NULL);

        if (k != 0)
                return k;
        k = varlink_reader_fill(cl->reader, cl->fd);
        if (k == 0)
                return 0;
        if (k < 0)
                return k;
        return next_message(cl, ret);
}

static json_int_t notification_n(json_t *m) {
        return json_integer_value(json_object_get(json_object_get(m, "parameters"), "n"));
}

static void append_n(VarlinkBroadcast *b, int n, size_t pad) {
        char text[8192];
        int len;

        len = snprintf(text, sizeof(text), "{\"n\":%d,\"pad\":\"%0*d\"}", n, (int) pad, 0);
        if (varlink_broadcast_append(b, text, (size_t) len) < 0)
                CHECK_MSG(false, "broadcast: append %d", n);
}

/* Two streams: nothing before the loop runs, then all three in one write
 * each, in order; the log keeps nothing once both read it. */
static void test_shared(sd_event *e) {
        VarlinkServer *s = server_new(e, NULL);
        VarlinkBroadcast *b = NULL;
        char buf[4096];
        Client cl[2];

        CHECK(varlink_broadcast_new(s, &b) == 0);
        append_n(b, 0, 0);      /* before anyone follows: for nobody */
        for (size_t i = 0; i < 2; i++)
                stream_open(e, s, b, 0, &cl[i]);
        CHECK(varlink_broadcast_attach(b, streams[0]) == 0);
        CHECK(varlink_broadcast_n_streams(b) == 2);
        for (int j = 1; j <= 3; j++)
                append_n(b, j, 0);
        CHECK_MSG(read(cl[0].fd, buf, sizeof(buf)) < 0 && errno == EAGAIN, "broadcast: written by the loop, not at once");
        run(e, 5);
        for (size_t i = 0; i < 2; i++) {
                ssize_t len = read(cl[i].fd, buf, sizeof(buf) - 1);
                size_t frames = 0;

                for (ssize_t k = 0; k < len; k++)
                        frames += buf[k] == 0;
                CHECK_MSG(len > 0 && frames == 3 && !memmem(buf, (size_t) len, "\"n\":0", 5) &&
                          memmem(buf, (size_t) len, "\"n\":1", 5) < memmem(buf, (size_t) len, "\"n\":2", 5) &&
                          memmem(buf, (size_t) len, "\"n\":2", 5) < memmem(buf, (size_t) len, "\"n\":3", 5),
                          "broadcast: stream %zu got the three in one read, in order", i);
        }
        CHECK_MSG(streams[0]->conn->quota->out_bytes == 0, "broadcast: nothing counted once read");

        varlink_broadcast_detach(b, streams[1]);
        append_n(b, 4, 0);
        run(e, 5);
        CHECK_MSG(read(cl[1].fd, buf, sizeof(buf)) < 0 && errno == EAGAIN, "broadcast: nothing after detach");
        client_close(&cl[0]);
        client_close(&cl[1]);
        run(e, 5);
        CHECK_MSG(varlink_broadcast_n_streams(b) == 0, "broadcast: a closed stream leaves");
        varlink_broadcast_free(b);
        varlink_server_free(s);
}

/* A reply of the stream's own (a call during the stream) comes after the
 * notifications appended before it. */
static void test_reply_behind(sd_event *e) {
        static const char echo[] = "{\"method\":\"org.example.test.Echo\"}";
        VarlinkServer *s = server_new(e, NULL);
        VarlinkBroadcast *b = NULL;
        json_t *m = NULL;
        Client cl;
        int k;

        CHECK(varlink_broadcast_new(s, &b) == 0);
        stream_open(e, s, b, 0, &cl);
        append_n(b, 1, 0);
        append_n(b, 2, 0);
        CHECK(write(cl.fd, echo, sizeof(echo)) == sizeof(echo));
        run(e, 5);
        for (int j = 1; j <= 2; j++) {
                k = next_message(&cl, &m);
                CHECK_MSG(k == 1 && notification_n(m) == j, "broadcast: notification %d first", j);
                json_decref(m);
        }
        k = next_message(&cl, &m);
        CHECK_MSG(k == 1 && json_object_get(m, "error"), "broadcast: then the reply to the call during the stream");
        json_decref(m);
        append_n(b, 3, 0);
        run(e, 5);
        k = next_message(&cl, &m);
        CHECK_MSG(k == 1 && notification_n(m) == 3, "broadcast: and the stream goes on");
        json_decref(m);
        CHECK_MSG(streams[0]->conn->quota->out_bytes == 0, "broadcast: nothing counted once read");
        client_close(&cl);
        varlink_broadcast_free(b);
        varlink_server_free(s);
}

/* What a reader got: the last n, and whether each was the one after. */
static json_int_t reader_last;
static bool reader_in_order;

static void reader_drain(Client *cl) {
        json_t *m = NULL;

        while (next_message(cl, &m) == 1) {
                reader_in_order = reader_in_order && notification_n(m) == reader_last + 1;
                reader_last = notification_n(m);
                json_decref(m);
        }
}

/* Appends until stream 0 is dropped, stream 1 reading as it goes; returns
 * how many were appended. */
static int fill_until_dropped(sd_event *e, VarlinkBroadcast *b, Client *cl) {
        int j;

        reader_last = 0;
        reader_in_order = true;
        for (j = 1; j <= 400 && streams[0]; j++) {
                append_n(b, j, 1000);
                run(e, 2);
                reader_drain(&cl[1]);
        }
        run(e, 5);
        return j - 1;
}

/* A stream that does not read is dropped at max_stream_output; one that
 * reads gets everything, in order. */
static void test_stream_cap(sd_event *e) {
        const VarlinkLimits limits = { .max_stream_output = 32 * 1024 };
        VarlinkServer *s = server_new(e, &limits);
        VarlinkBroadcast *b = NULL;
        json_t *m = NULL;
        Client cl[2];
        int appended, k;

        CHECK(varlink_broadcast_new(s, &b) == 0);
        stream_open(e, s, b, 4096, &cl[0]);
        stream_open(e, s, b, 0, &cl[1]);
        appended = fill_until_dropped(e, b, cl);
        CHECK_MSG(!streams[0] && appended < 400, "broadcast: the stream that does not read was dropped (after %d)",
                  appended);
        while ((k = next_message(&cl[0], &m)) == 1)
                json_decref(m);
        CHECK_MSG(k == 0, "broadcast: it sees the end of the connection");
        CHECK_MSG(streams[1] && varlink_broadcast_n_streams(b) == 1, "broadcast: the reader stays");
        append_n(b, appended + 1, 0);
        /* A burst: the last flush may be up to VARLINK_STREAM_FLUSH_MAX_USEC away. */
        for (int i = 0; i < 40 && reader_last != appended + 1; i++) {
                run(e, 1);
                reader_drain(&cl[1]);
        }
        CHECK_MSG(reader_in_order && reader_last == appended + 1, "broadcast: the reader got all %d in order",
                  appended + 1);
        CHECK_MSG(streams[1]->conn->quota->out_bytes == 0, "broadcast: nothing counted once read");
        client_close(&cl[0]);
        client_close(&cl[1]);
        varlink_broadcast_free(b);
        varlink_server_free(s);
}

/* Over max_output_per_uid, the stream furthest behind goes first; the one
 * that reads stays. */
static void test_uid_cap(sd_event *e) {
        const VarlinkLimits limits = { .max_stream_output = 1024 * 1024, .max_output_per_uid = 48 * 1024 };
        VarlinkServer *s = server_new(e, &limits);
        VarlinkBroadcast *b = NULL;
        Client cl[2];
        int appended;

        CHECK(varlink_broadcast_new(s, &b) == 0);
        stream_open(e, s, b, 4096, &cl[0]);
        stream_open(e, s, b, 0, &cl[1]);
        appended = fill_until_dropped(e, b, cl);
        CHECK_MSG(!streams[0] && appended < 400, "broadcast: uid cap drops the stream behind (after %d)", appended);
        CHECK_MSG(streams[1] && varlink_broadcast_n_streams(b) == 1 && reader_in_order,
                  "broadcast: not the one that reads, which got all in order");
        client_close(&cl[0]);
        client_close(&cl[1]);
        run(e, 5);
        varlink_broadcast_free(b);
        varlink_server_free(s);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Runs the loop until the stream got notification n; returns when, or 0. */
static uint64_t delivered_at(sd_event *e, Client *cl, int n, unsigned *reads) {
        json_t *m = NULL;

        for (int i = 0; i < 200; i++) {
                bool got = false;

                sd_event_run(e, 1000);
                while (next_message(cl, &m) == 1) {
                        got = true;
                        if (notification_n(m) == n) {
                                json_decref(m);
                                ++*reads;
                                return now_usec();
                        }
                        json_decref(m);
                }
                *reads += got;
        }
        return 0;
}

/* Alone, a notification goes out at the next iteration. In a burst (one
 * every millisecond) the flush interval doubles from 5 ms up to 20 ms: the
 * burst costs the stream far fewer writes than one per 5 ms, none later than
 * 20 ms; after a pause the next goes out at once again. */
static void test_burst_interval(sd_event *e) {
        VarlinkServer *s = server_new(e, NULL);
        VarlinkBroadcast *b = NULL;
        uint64_t t0, t;
        json_int_t last = 0;
        unsigned reads = 0;
        Client cl;
        int n = 0;

        CHECK(varlink_broadcast_new(s, &b) == 0);
        stream_open(e, s, b, 0, &cl);
        t0 = now_usec();
        append_n(b, ++n, 0);
        t = delivered_at(e, &cl, n, &reads);
        CHECK_MSG(t > 0 && t - t0 < 3000, "broadcast: a lone notification at once (%llu us)",
                  (unsigned long long) (t - t0));
        /* 200 ms, one notification per ms, the stream reading all the time. */
        reads = 0;
        t0 = now_usec();
        while (now_usec() - t0 < 200 * 1000) {
                uint64_t sent = now_usec();

                append_n(b, ++n, 0);
                while (now_usec() - sent < 1000) {
                        json_t *m = NULL;
                        bool got = false;

                        sd_event_run(e, 200);
                        while (next_message(&cl, &m) == 1) {
                                got = true;
                                last = notification_n(m);
                                json_decref(m);
                        }
                        reads += got;
                }
        }
        CHECK_MSG(last == n || delivered_at(e, &cl, n, &reads) > 0, "broadcast: the burst's last notification arrived");
        /* 40 writes at a fixed 5 ms; 5 + 2 + 1 + 180/20 = 12 doubling. */
        CHECK_MSG(reads <= 16, "broadcast: a 200 ms burst took %u writes (at most 16)", reads);
        usleep(50 * 1000);
        t0 = now_usec();
        append_n(b, ++n, 0);
        t = delivered_at(e, &cl, n, &reads);
        CHECK_MSG(t > 0 && t - t0 < 3000, "broadcast: after a pause, at once again (%llu us)",
                  (unsigned long long) (t - t0));
        client_close(&cl);
        varlink_broadcast_free(b);
        varlink_server_free(s);
}

int main(void) {
        sd_event *e = NULL;

        if (sd_event_new(&e) < 0)
                return 1;
        test_shared(e);
        test_reply_behind(e);
        test_stream_cap(e);
        test_uid_cap(e);
        test_burst_interval(e);
        sd_event_unref(e);
        return test_result();
}
