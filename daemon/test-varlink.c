/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The varlink wire reader and the generic server, driven over socketpairs
 * with a dummy interface. */

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "varlink-wire.h"
#include "varlink.h"
#include "test.h"

static void pair(int sv[2]) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
}

static void write_all(int fd, const char *s, size_t n) {
        if (write(fd, s, n) != (ssize_t) n)
                abort();
}

static ssize_t send_with_fds(int fd, const char *s, size_t n, const int *fds, size_t n_fds) {
        char control[CMSG_SPACE(sizeof(int) * 128)] = {};
        struct iovec iov = { .iov_base = (void *) s, .iov_len = n };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n_fds) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        return sendmsg(fd, &mh, 0);
}

static bool same_file(int a, int b) {
        struct stat x, y;
        return fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_ino == y.st_ino && x.st_dev == y.st_dev;
}

/* --- Reader --- */

static void test_reader_split_and_batched(void) {
        VarlinkReader *r = NULL;
        json_t *m = NULL;
        int sv[2];

        pair(sv);
        varlink_reader_new(1024, &r);

        write_all(sv[0], "{\"a\":", 5);
        CHECK_MSG(varlink_reader_fill(r, sv[1]) == 5, "reader: first half read");
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 0, "reader: half a message is not a message");
        write_all(sv[0], "1}", 3);      /* with the NUL */
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 1 && json_integer_value(json_object_get(m, "a")) == 1,
                  "reader: split message reassembled");
        json_decref(m);

        write_all(sv[0], "{\"a\":2}\0{\"a\":3}\0{\"a\"", 20);
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 1 && json_integer_value(json_object_get(m, "a")) == 2,
                  "reader: first of several in one read");
        json_decref(m);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 1 && json_integer_value(json_object_get(m, "a")) == 3,
                  "reader: second of several in one read");
        json_decref(m);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 0 && varlink_reader_buffered(r) == 4,
                  "reader: trailing partial message kept (%zu bytes)", varlink_reader_buffered(r));

        close(sv[0]);
        CHECK_MSG(varlink_reader_fill(r, sv[1]) == 0, "reader: EOF reported as 0");
        varlink_reader_free(r);
        close(sv[1]);
}

static void test_reader_oversized(void) {
        char big[100];
        VarlinkReader *r = NULL;
        json_t *m = NULL;
        int sv[2], k;

        pair(sv);
        varlink_reader_new(16, &r);
        memset(big, 'x', sizeof(big));
        write_all(sv[0], big, sizeof(big));
        k = varlink_reader_fill(r, sv[1]);
        CHECK_MSG(k > 0 && k <= 17, "reader: buffer never grows past max+1 (read %d)", k);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == -E2BIG, "reader: oversized message without NUL is -E2BIG");
        CHECK_MSG(varlink_reader_fill(r, sv[1]) == -E2BIG, "reader: -E2BIG is sticky");
        varlink_reader_free(r);
        close(sv[0]);
        close(sv[1]);

        /* A complete message one byte too long. */
        pair(sv);
        varlink_reader_new(16, &r);
        write_all(sv[0], "{\"a\":\"123456789\"}", 18);        /* 17 + NUL */
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == -E2BIG, "reader: 17-byte message over a 16-byte cap");
        varlink_reader_free(r);
        close(sv[0]);
        close(sv[1]);

        pair(sv);
        varlink_reader_new(16, &r);
        write_all(sv[0], "{\"a\":\"12345678\"}", 17);         /* exactly 16 + NUL */
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 1, "reader: message of exactly the cap accepted");
        json_decref(m);
        varlink_reader_free(r);
        close(sv[0]);
        close(sv[1]);
}

static void test_reader_not_json(void) {
        VarlinkReader *r = NULL;
        json_t *m = NULL;
        int sv[2];

        pair(sv);
        varlink_reader_new(1024, &r);
        write_all(sv[0], "hello\0[1,2]\0\"s\"\0{\"ok\":true}\0", 28);
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == -EBADMSG, "reader: garbage is -EBADMSG");
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == -EBADMSG, "reader: array is -EBADMSG");
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == -EBADMSG, "reader: bare string is -EBADMSG");
        CHECK_MSG(varlink_reader_next(r, &m, NULL, NULL) == 1 && json_is_true(json_object_get(m, "ok")),
                  "reader: next message after bad ones still parsed");
        json_decref(m);
        varlink_reader_free(r);
        close(sv[0]);
        close(sv[1]);
}

static void test_reader_fds(void) {
        VarlinkReader *r = NULL;
        int sv[2], p[2], base, *fds = NULL;
        size_t n_fds = 99;
        json_t *m = NULL;

        if (pipe2(p, O_CLOEXEC) < 0)
                abort();
        pair(sv);
        varlink_reader_new(1024, &r);
        base = test_count_open_fds();

        /* A without fds, B with two, C without, all in one read. */
        write_all(sv[0], "{\"m\":\"A\"}", 10);
        send_with_fds(sv[0], "{\"m\":\"B\"}", 10, p, 2);
        write_all(sv[0], "{\"m\":\"C\"}", 10);
        while (varlink_reader_fill(r, sv[1]) > 0 && varlink_reader_buffered(r) < 30)
                ;
        CHECK_MSG(varlink_reader_next(r, &m, &fds, &n_fds) == 1 && n_fds == 0 && !fds,
                  "reader: message before the fd-carrying one gets no fds (%zu)", n_fds);
        json_decref(m);
        CHECK_MSG(varlink_reader_next(r, &m, &fds, &n_fds) == 1 && n_fds == 2 &&
                  streq(json_string_value(json_object_get(m, "m")), "B"),
                  "reader: fds attached to the message sent with them (%zu)", n_fds);
        CHECK_MSG(n_fds == 2 && same_file(fds[0], p[0]) && same_file(fds[1], p[1]), "reader: the right fds, in order");
        CHECK_MSG(n_fds == 2 && (fcntl(fds[0], F_GETFD) & FD_CLOEXEC), "reader: received fds are O_CLOEXEC");
        for (size_t i = 0; i < n_fds; i++)
                close(fds[i]);
        free(fds);
        json_decref(m);
        CHECK_MSG(varlink_reader_next(r, &m, &fds, &n_fds) == 1 && n_fds == 0, "reader: message after it gets none");
        json_decref(m);

        /* Fds of a message never taken are closed with the reader. */
        send_with_fds(sv[0], "{\"m\":\"D\"}", 10, p, 2);
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(test_count_open_fds() == base + 2, "reader: two fds held while pending");
        varlink_reader_free(r);
        CHECK_MSG(test_count_open_fds() == base, "reader: pending fds closed on free");

        /* More than VARLINK_WIRE_MAX_FDS: all closed, protocol error. */
        {
                int many[70];
                for (size_t i = 0; i < ELEMENTSOF(many); i++)
                        many[i] = p[i % 2];
                varlink_reader_new(1024, &r);
                CHECK_MSG(send_with_fds(sv[0], "{}", 3, many, ELEMENTSOF(many)) == 3, "reader: sent 70 fds");
                CHECK_MSG(varlink_reader_fill(r, sv[1]) == -EPROTO, "reader: 70 fds are -EPROTO");
                CHECK_MSG(test_count_open_fds() == base, "reader: excess fds all closed (%d vs %d)", test_count_open_fds(), base);
                varlink_reader_free(r);
        }
        close(sv[0]);
        close(sv[1]);
        close(p[0]);
        close(p[1]);
}

static void test_wire_send(void) {
        VarlinkReader *r = NULL;
        int sv[2], p[2], *fds = NULL;
        size_t n_fds = 0;
        json_t *m = json_pack("{s:s}", "method", "x.Y"), *got = NULL;

        if (pipe2(p, O_CLOEXEC) < 0)
                abort();
        pair(sv);
        varlink_reader_new(1024, &r);
        CHECK_MSG(varlink_wire_send(sv[0], m, p, 1) == 0, "wire: send with one fd");
        varlink_reader_fill(r, sv[1]);
        CHECK_MSG(varlink_reader_next(r, &got, &fds, &n_fds) == 1 && json_equal(m, got) && n_fds == 1 &&
                  same_file(fds[0], p[0]), "wire: round trip with its fd");
        if (n_fds == 1)
                close(fds[0]);
        free(fds);
        CHECK_MSG(varlink_wire_send(sv[0], m, p, VARLINK_WIRE_MAX_FDS + 1) == -EINVAL, "wire: too many fds refused");
        json_decref(got);
        json_decref(m);
        varlink_reader_free(r);
        close(sv[0]);
        close(sv[1]);
        close(p[0]);
        close(p[1]);
}

/* --- Server with a dummy interface --- */

static int n_pings, n_connects, n_disconnects, n_destroyed;
static VarlinkCall *later_call;

static int method_echo(VarlinkCall *call, json_t *parameters, void *userdata) {
        return varlink_call_reply(call, json_incref(parameters));
}

static int method_ping(VarlinkCall *call, json_t *parameters, void *userdata) {
        n_pings++;
        return varlink_call_reply(call, NULL);
}

static int method_stream(VarlinkCall *call, json_t *parameters, void *userdata) {
        varlink_call_notify(call, json_pack("{s:i}", "n", 1));
        varlink_call_notify(call, json_pack("{s:i}", "n", 2));
        return varlink_call_reply(call, json_pack("{s:i}", "n", 3));
}

static VarlinkCall *watch_calls[2];
static size_t n_watch_calls;

static void on_destroy(VarlinkCall *call, void *userdata) {
        n_destroyed++;
        for (size_t i = 0; i < n_watch_calls; i++)
                if (watch_calls[i] == call)
                        watch_calls[i] = NULL;
}

static int method_watch(VarlinkCall *call, json_t *parameters, void *userdata) {
        varlink_call_set_destroy(call, on_destroy, NULL);
        if (n_watch_calls < ELEMENTSOF(watch_calls))
                watch_calls[n_watch_calls++] = call;
        return varlink_call_notify(call, json_pack("{s:s}", "event", "ready"));
}

static int method_later(VarlinkCall *call, json_t *parameters, void *userdata) {
        later_call = call;
        return 0;
}

static int method_fail(VarlinkCall *call, json_t *parameters, void *userdata) {
        return -EIO;
}

static int method_typed(VarlinkCall *call, json_t *parameters, void *userdata) {
        static const VarlinkField fields[] = {
                { "name", VARLINK_TYPE_STRING },
                { "count", VARLINK_TYPE_INT, .optional = true },
                {}
        };
        const char *bad;

        if (varlink_check_parameters(parameters, fields, &bad) < 0)
                return varlink_call_error_invalid_parameter(call, bad);
        return varlink_call_reply(call, NULL);
}

static const VarlinkMethod test_methods[] = {
        { "Echo", method_echo, 0 },
        { "Ping", method_ping, 0 },
        { "Stream", method_stream, VARLINK_METHOD_MORE },
        { "Watch", method_watch, VARLINK_METHOD_MORE },
        { "Later", method_later, 0 },
        { "Fail", method_fail, 0 },
        { "Typed", method_typed, 0 },
        {}
};

static const VarlinkInterface test_interface = {
        .name = "org.example.test",
        .description = "interface org.example.test\nmethod Echo() -> ()\n",
        .methods = test_methods,
};

static int on_connect(VarlinkConnection *c, Principal **principal, void *userdata) {
        n_connects++;
        return (*principal)->uid == getuid() ? 0 : -EPERM;
}

static void on_disconnect(VarlinkConnection *c, void *userdata) {
        n_disconnects++;
}

typedef struct Client {
        int fd;
        VarlinkReader *reader;
} Client;

static VarlinkServer *server_new(sd_event *e, const VarlinkLimits *limits) {
        VarlinkServer *s = NULL;

        if (varlink_server_new(e, limits, &s) < 0 || varlink_server_add_interface(s, &test_interface, NULL) < 0 ||
            varlink_server_set_info(s, "iommufd-broker", "test", "0", "https://example.org") < 0)
                abort();
        varlink_server_set_hooks(s, on_connect, on_disconnect, NULL);
        return s;
}

static int client_connect(VarlinkServer *s, Client *cl) {
        int sv[2], r;

        pair(sv);
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        cl->fd = sv[0];
        varlink_reader_new(1 << 20, &cl->reader);
        r = varlink_server_add_connection(s, sv[1], NULL);
        return r;
}

static void client_close(Client *cl) {
        cl->fd = safe_close(cl->fd);
        cl->reader = varlink_reader_free(cl->reader);
}

static void client_send(Client *cl, const char *json) {
        json_t *m = json_loads(json, 0, NULL);
        if (!m || varlink_wire_send(cl->fd, m, NULL, 0) < 0)
                abort();
        json_decref(m);
}

/* Run the loop until a message arrives: 1 with it, 0 on EOF, -ETIME. */
static int client_recv(sd_event *e, Client *cl, json_t **ret, unsigned timeout_ms) {
        for (unsigned i = 0; i < timeout_ms; i++) {
                int k = varlink_reader_next(cl->reader, ret, NULL, NULL);
                if (k != 0)
                        return k;
                sd_event_run(e, 1000);
                k = varlink_reader_fill(cl->reader, cl->fd);
                if (k == 0)
                        return 0;
        }
        return -ETIME;
}

static const char *err_name(json_t *m) {
        return json_string_value(json_object_get(m, "error"));
}

static json_t *params(json_t *m) {
        return json_object_get(m, "parameters");
}

static bool recv_error(sd_event *e, Client *cl, const char *expect, const char *key, const char *value) {
        json_t *m = NULL;
        bool ok = client_recv(e, cl, &m, 500) == 1 && streq_ptr(err_name(m), expect) &&
                  (!key || streq_ptr(json_string_value(json_object_get(params(m), key)), value));
        if (!ok && m) {
                char *s = json_dumps(m, 0);
                printf("   got %s\n", s);
                free(s);
        }
        json_decref(m);
        return ok;
}

static void test_server_calls(sd_event *e) {
        VarlinkServer *s = server_new(e, NULL);
        json_t *m = NULL, *expect;
        Client cl;
        int k;

        CHECK_MSG(client_connect(s, &cl) == 0 && n_connects == 1, "server: connection accepted, hook ran");

        client_send(&cl, "{\"method\":\"org.example.test.Echo\",\"parameters\":{\"x\":[1,\"two\"]}}");
        expect = json_pack("{s:{s:[i,s]}}", "parameters", "x", 1, "two");
        CHECK_MSG(client_recv(e, &cl, &m, 500) == 1 && json_equal(m, expect), "server: call gets its reply");
        json_decref(expect);
        json_decref(m);

        client_send(&cl, "{\"method\":\"org.example.test.Ping\",\"oneway\":true}");
        client_send(&cl, "{\"method\":\"org.example.test.Echo\",\"parameters\":{\"after\":true}}");
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && json_is_true(json_object_get(params(m), "after")) && n_pings == 1,
                  "server: oneway ran without a reply (pings %d)", n_pings);
        json_decref(m);

        client_send(&cl, "{\"method\":\"org.example.test.Stream\",\"more\":true}");
        for (int i = 1; i <= 3; i++) {
                k = client_recv(e, &cl, &m, 500);
                CHECK_MSG(k == 1 && json_integer_value(json_object_get(params(m), "n")) == i &&
                          json_is_true(json_object_get(m, "continues")) == (i < 3),
                          "server: streamed reply %d, continues=%s", i, i < 3 ? "true" : "absent");
                json_decref(m);
        }

        client_send(&cl, "{\"method\":\"org.example.test.Echo\",\"more\":true,\"parameters\":{}}");
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && !json_object_get(m, "continues") && !err_name(m),
                  "server: more on a non-streaming method gets one plain reply");
        json_decref(m);

        client_send(&cl, "{\"method\":\"org.example.test.Stream\"}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.ExpectedMore", NULL, NULL),
                  "server: streaming method without more is ExpectedMore");

        client_send(&cl, "{\"method\":\"org.example.test.Nope\"}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.MethodNotFound", "method", "org.example.test.Nope"),
                  "server: MethodNotFound {method}");
        client_send(&cl, "{\"method\":\"org.example.nothing.Nope\"}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.InterfaceNotFound", "interface", "org.example.nothing"),
                  "server: InterfaceNotFound {interface}");
        client_send(&cl, "{\"method\":\"Nope\"}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.MethodNotFound", "method", "Nope"),
                  "server: method without interface is MethodNotFound");

        client_send(&cl, "{\"method\":\"org.example.test.Typed\",\"parameters\":{\"name\":5}}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.InvalidParameter", "parameter", "name"),
                  "server: wrong type is InvalidParameter {name}");
        client_send(&cl, "{\"method\":\"org.example.test.Typed\"}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.InvalidParameter", "parameter", "name"),
                  "server: missing field is InvalidParameter {name}");
        client_send(&cl, "{\"method\":\"org.example.test.Typed\",\"parameters\":{\"name\":\"a\",\"bogus\":1}}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.InvalidParameter", "parameter", "bogus"),
                  "server: unknown field is InvalidParameter {bogus}");
        client_send(&cl, "{\"method\":\"org.example.test.Typed\",\"parameters\":{\"name\":\"a\",\"count\":null}}");
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && !err_name(m), "server: null optional field accepted");
        json_decref(m);

        client_send(&cl, "{\"method\":\"org.example.test.Fail\"}");
        CHECK_MSG(recv_error(e, &cl, "io.iommufd.Broker.KernelError", "message", strerror(EIO)),
                  "server: handler errno becomes KernelError with strerror");

        client_send(&cl, "{\"method\":\"org.varlink.service.GetInfo\"}");
        k = client_recv(e, &cl, &m, 500);
        expect = json_pack("[s,s]", "org.varlink.service", "org.example.test");
        CHECK_MSG(k == 1 && streq_ptr(json_string_value(json_object_get(params(m), "vendor")), "iommufd-broker") &&
                  json_equal(json_object_get(params(m), "interfaces"), expect), "server: GetInfo lists interfaces");
        json_decref(expect);
        json_decref(m);

        client_send(&cl, "{\"method\":\"org.varlink.service.GetInterfaceDescription\","
                         "\"parameters\":{\"interface\":\"org.example.test\"}}");
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && streq_ptr(json_string_value(json_object_get(params(m), "description")),
                                      test_interface.description), "server: GetInterfaceDescription returns the IDL");
        json_decref(m);
        client_send(&cl, "{\"method\":\"org.varlink.service.GetInterfaceDescription\","
                         "\"parameters\":{\"interface\":\"org.varlink.service\"}}");
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && strstr(strna(json_string_value(json_object_get(params(m), "description"))),
                                   "error ExpectedMore ()"), "server: org.varlink.service describes itself");
        json_decref(m);
        client_send(&cl, "{\"method\":\"org.varlink.service.GetInterfaceDescription\","
                         "\"parameters\":{\"interface\":\"org.nope\"}}");
        CHECK_MSG(recv_error(e, &cl, "org.varlink.service.InterfaceNotFound", "interface", "org.nope"),
                  "server: description of an unknown interface is InterfaceNotFound");

        client_close(&cl);
        for (int i = 0; i < 50 && varlink_server_n_connections(s) > 0; i++)
                sd_event_run(e, 1000);
        for (int i = 0; i < 5; i++)
                sd_event_run(e, 0);
        CHECK_MSG(varlink_server_n_connections(s) == 0 && n_disconnects == 1, "server: close ran the disconnect hook");
        varlink_server_free(s);
}

static void test_server_unsolicited_fds(sd_event *e) {
        VarlinkServer *s = server_new(e, NULL);
        const char *call = "{\"method\":\"org.example.test.Echo\",\"parameters\":{\"n\":7}}";
        json_t *m = NULL;
        int p[2], base, k;
        Client cl;

        if (pipe2(p, O_CLOEXEC) < 0)
                abort();
        client_connect(s, &cl);
        base = test_count_open_fds();
        send_with_fds(cl.fd, call, strlen(call) + 1, p, 2);
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && json_integer_value(json_object_get(params(m), "n")) == 7,
                  "server: call with unsolicited fds still answered");
        json_decref(m);
        CHECK_MSG(test_count_open_fds() == base, "server: unsolicited fds closed (%d open, %d before)", test_count_open_fds(), base);
        client_close(&cl);
        close(p[0]);
        close(p[1]);
        varlink_server_free(s);
}

static void test_server_order(sd_event *e) {
        VarlinkServer *s = server_new(e, NULL);
        json_t *m = NULL;
        Client cl;
        int k;

        client_connect(s, &cl);
        later_call = NULL;
        client_send(&cl, "{\"method\":\"org.example.test.Later\"}");
        client_send(&cl, "{\"method\":\"org.example.test.Echo\",\"parameters\":{\"second\":true}}");
        k = client_recv(e, &cl, &m, 100);
        CHECK_MSG(k == -ETIME && later_call, "server: call after a pending one waits");
        if (later_call)
                varlink_call_reply(later_call, json_pack("{s:b}", "first", 1));
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && json_is_true(json_object_get(params(m), "first")), "server: pending call answered first");
        json_decref(m);
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && json_is_true(json_object_get(params(m), "second")), "server: then the call behind it");
        json_decref(m);

        n_destroyed = 0;
        client_send(&cl, "{\"method\":\"org.example.test.Watch\",\"more\":true}");
        k = client_recv(e, &cl, &m, 500);
        CHECK_MSG(k == 1 && json_is_true(json_object_get(m, "continues")), "server: stream started");
        json_decref(m);
        client_send(&cl, "{\"method\":\"org.example.test.Echo\"}");
        CHECK_MSG(recv_error(e, &cl, "io.iommufd.Broker.LimitExceeded", NULL, NULL),
                  "server: call during a stream is LimitExceeded");
        client_close(&cl);
        for (int i = 0; i < 50 && n_destroyed == 0; i++)
                sd_event_run(e, 1000);
        CHECK_MSG(n_destroyed == 1, "server: stream's destroy callback ran on disconnect");
        varlink_server_free(s);
}

static void test_server_protocol_errors(sd_event *e) {
        const VarlinkLimits limits = { .max_message = 256 };
        VarlinkServer *s = server_new(e, &limits);
        char big[400];
        json_t *m = NULL;
        Client cl;

        client_connect(s, &cl);
        write_all(cl.fd, "not json", 9);
        CHECK_MSG(recv_error(e, &cl, "io.iommufd.Broker.InvalidParameter", NULL, NULL),
                  "server: garbage gets InvalidParameter");
        CHECK_MSG(client_recv(e, &cl, &m, 500) == 0, "server: then disconnects");
        client_close(&cl);

        client_connect(s, &cl);
        client_send(&cl, "{\"parameters\":{}}");
        CHECK_MSG(recv_error(e, &cl, "io.iommufd.Broker.InvalidParameter", NULL, NULL) &&
                  client_recv(e, &cl, &m, 500) == 0, "server: call without method: error, disconnect");
        client_close(&cl);

        client_connect(s, &cl);
        client_send(&cl, "{\"method\":\"org.example.test.Echo\",\"more\":\"yes\"}");
        CHECK_MSG(recv_error(e, &cl, "io.iommufd.Broker.InvalidParameter", NULL, NULL) &&
                  client_recv(e, &cl, &m, 500) == 0, "server: non-bool more: error, disconnect");
        client_close(&cl);

        client_connect(s, &cl);
        memset(big, ' ', sizeof(big));
        write_all(cl.fd, big, sizeof(big));
        CHECK_MSG(recv_error(e, &cl, "io.iommufd.Broker.LimitExceeded", NULL, NULL) &&
                  client_recv(e, &cl, &m, 500) == 0, "server: oversized message: LimitExceeded, disconnect");
        client_close(&cl);

        for (int i = 0; i < 10; i++)
                sd_event_run(e, 0);
        CHECK_MSG(varlink_server_n_connections(s) == 0, "server: no connection left behind");
        varlink_server_free(s);
}

static void test_server_idle(sd_event *e) {
        const VarlinkLimits limits = { .idle_timeout_usec = 50 * 1000 };
        VarlinkServer *s = server_new(e, &limits);
        json_t *m = NULL;
        Client idle, watching;

        client_connect(s, &idle);
        client_connect(s, &watching);
        client_send(&watching, "{\"method\":\"org.example.test.Watch\",\"more\":true}");
        CHECK_MSG(client_recv(e, &watching, &m, 500) == 1, "idle: stream started");
        json_decref(m);
        CHECK_MSG(client_recv(e, &idle, &m, 1000) == 0, "idle: idle connection closed by the server");
        for (int i = 0; i < 20; i++)
                sd_event_run(e, 10 * 1000);
        CHECK_MSG(varlink_server_n_connections(s) == 1, "idle: streaming connection outlives the idle timeout");
        client_close(&idle);
        client_close(&watching);
        varlink_server_free(s);
}

static void test_server_listen_path(sd_event *e) {
        char dir[] = "/tmp/test-varlink-XXXXXX", path[128];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        VarlinkServer *s;
        struct stat st;
        json_t *m = NULL;
        Client cl = {};
        int stale;

        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof(path), "%s/sub/io.example", dir);
        strcpy(sa.sun_path, path);

        /* A socket file nobody listens on any more. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sub", dir);
        mkdir(sa.sun_path, 0755);
        strcpy(sa.sun_path, path);
        stale = socket(AF_UNIX, SOCK_STREAM, 0);
        bind(stale, (struct sockaddr *) &sa, sizeof(sa));
        close(stale);

        s = server_new(e, NULL);
        CHECK_MSG(varlink_server_listen_path(s, path) == 0, "listen: stale socket replaced");
        CHECK_MSG(stat(path, &st) == 0 && (st.st_mode & 0777) == 0666, "listen: socket is 0666");
        {
                VarlinkServer *s2 = server_new(e, NULL);
                CHECK_MSG(varlink_server_listen_path(s2, path) == -EADDRINUSE, "listen: live socket not stolen");
                varlink_server_free(s2);
        }

        cl.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK_MSG(connect(cl.fd, (struct sockaddr *) &sa, sizeof(sa)) == 0, "listen: client connects");
        fcntl(cl.fd, F_SETFL, O_NONBLOCK);
        varlink_reader_new(4096, &cl.reader);
        client_send(&cl, "{\"method\":\"org.example.test.Echo\",\"parameters\":{\"via\":\"path\"}}");
        CHECK_MSG(client_recv(e, &cl, &m, 500) == 1 &&
                  streq_ptr(json_string_value(json_object_get(params(m), "via")), "path"), "listen: call over the path");
        json_decref(m);
        client_close(&cl);
        varlink_server_free(s);
        CHECK_MSG(access(path, F_OK) < 0, "listen: socket unlinked on free");
        snprintf(path, sizeof(path), "%s/sub", dir);
        rmdir(path);
        rmdir(dir);
}

int main(void) {
        sd_event *e = NULL;

        test_reader_split_and_batched();
        test_reader_oversized();
        test_reader_not_json();
        test_reader_fds();
        test_wire_send();

        if (sd_event_new(&e) < 0)
                return 1;
        test_server_calls(e);
        test_server_unsolicited_fds(e);
        test_server_order(e);
        test_server_protocol_errors(e);
        test_server_idle(e);
        test_server_listen_path(e);
        sd_event_unref(e);

        return test_result();
}
