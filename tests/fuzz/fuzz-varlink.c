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
#include "varlink.h"

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

/* One loop and server for all inputs (each input is its own connection,
 * which ends before the next): setting them up is most of an input's cost. */
static sd_event *event;
static VarlinkServer *server;

static void teardown(void) {
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char sink[16384];
        int sv[2];

        if (size > 48 * 1024)           /* what one write puts in the socket buffer */
                return 0;
        if (!server)
                setup();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        if (varlink_server_add_connection(server, sv[0], NULL) < 0) {
                close(sv[1]);
                return 0;
        }
        if (size > 0 && write(sv[1], data, size) < 0)
                abort();
        drain(event);
        /* Read what came back (so the server may go on), then hang up. */
        while (read(sv[1], sink, sizeof(sink)) > 0)
                drain(event);
        shutdown(sv[1], SHUT_WR);
        drain(event);
        while (read(sv[1], sink, sizeof(sink)) > 0)
                drain(event);
        close(sv[1]);
        drain(event);
        /* Every connection ends with its input. */
        if (varlink_server_n_connections(server) != 0)
                abort();
        return 0;
}
