/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The varlink reader and call decoder, as a server sees a hostile peer: the
 * input is the byte stream a client sends (several NUL-terminated messages,
 * halves, garbage). It goes through a socketpair into a real VarlinkServer
 * with org.varlink.service and a test interface that checks parameters
 * against a field table, replies, streams and errors.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "varlink-internal.h"

static const VarlinkField check_fields[] = {
        { "devices", VARLINK_TYPE_ARRAY, true },
        { "mode", VARLINK_TYPE_STRING, true },
        { "managed", VARLINK_TYPE_BOOL, true },
        { "count", VARLINK_TYPE_INT, true },
        { "options", VARLINK_TYPE_OBJECT, true },
        {}
};

static int method_check(VarlinkCall *call, json_t *parameters, void *userdata) {
        const char *bad = NULL;

        if (varlink_check_parameters(parameters, check_fields, &bad) < 0)
                return varlink_call_error_invalid_parameter(call, bad);
        return varlink_call_reply(call, json_incref(parameters));
}

static int method_fail(VarlinkCall *call, json_t *parameters, void *userdata) {
        return -EIO;
}

static int method_stream(VarlinkCall *call, json_t *parameters, void *userdata) {
        (void) varlink_call_notify(call, json_pack("{s:i}", "n", 1));
        return varlink_call_notify(call, json_pack("{s:i}", "n", 2));
}

static const VarlinkMethod methods[] = {
        { "Check", method_check, 0 },
        { "Fail", method_fail, 0 },
        { "Stream", method_stream, VARLINK_METHOD_MORE },
        {}
};

static const VarlinkInterface fuzz_interface = {
        .name = "io.iommufd.Fuzz",
        .description = "interface io.iommufd.Fuzz\n",
        .methods = methods,
};

/* Run the loop until nothing is left to do right now. */
static void drain(sd_event *e) {
        for (int i = 0; i < 64 && sd_event_run(e, 0) > 0; i++)
                ;
}

/* One loop, server and connection for all inputs: setting them up is most
 * of an input's cost. An input not ending in a NUL gets one, so it never
 * leaves half a message behind; a connection that is closed, or left with a call
 * or a stream running, is replaced before the next input. */
static sd_event *event;
static VarlinkServer *server;
static VarlinkConnection *conn;
static int peer = -EBADF;

static void hang_up(void) {
        peer = safe_close(peer);
        conn = NULL;
        for (int i = 0; i < 16 && varlink_server_n_connections(server) > 0; i++)
                drain(event);
        if (varlink_server_n_connections(server) != 0)
                abort();        /* a hang-up must end the connection */
}

static void teardown(void) {
        hang_up();
        server = varlink_server_free(server);
        event = sd_event_unref(event);
}

static void setup(void) {
        VarlinkLimits limits = varlink_limits_default();

        limits.max_message = 4096;      /* reach the oversized paths with small inputs */
        if (sd_event_new(&event) < 0 || varlink_server_new(event, &limits, &server) < 0 ||
            varlink_server_add_interface(server, &fuzz_interface, NULL) < 0)
                abort();
        atexit(teardown);
}

static void read_replies(void) {
        char sink[16384];

        while (read(peer, sink, sizeof(sink)) > 0)
                drain(event);
}

static void send_all(const uint8_t *data, size_t size) {
        while (size > 0 && conn) {
                ssize_t n = send(peer, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno != EAGAIN)
                                return;
                        n = 0;
                }
                data += n;
                size -= (size_t) n;
                drain(event);
                read_replies();
                if (varlink_server_n_connections(server) == 0)
                        return;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int sv[2];

        if (size > 48 * 1024)
                return 0;
        if (!server)
                setup();
        if (!conn) {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                        abort();
                if (varlink_server_add_connection(server, sv[0], &conn) < 0) {
                        close(sv[1]);
                        conn = NULL;
                        return 0;
                }
                peer = sv[1];
        }
        send_all(data, size);
        if (size == 0 || data[size - 1] != 0)
                send_all((const uint8_t *) "", 1);
        drain(event);
        read_replies();
        if (varlink_server_n_connections(server) == 0 || conn->current || conn->dead ||
            conn->close_after_flush || varlink_reader_buffered(conn->reader) > 0)
                hang_up();
        return 0;
}
