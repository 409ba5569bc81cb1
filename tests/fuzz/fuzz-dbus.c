/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * D-Bus argument decoding: the input is one or more raw D-Bus messages as a
 * client puts them on the wire (after authentication, which the harness
 * does). A server-side sd_bus on a socketpair parses them; each one that
 * parses goes through the broker's decoders: AcquireDevices/ReleaseDevices
 * arguments (dbus-args.c) and the GetConnectionCredentials reply reader
 * (principal.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dbus-args.h"
#include "fuzz.h"
#include "principal.h"

static void decode(sd_bus_message *m) {
        _cleanup_strv_free_ char **devices = NULL;
        AcquireRequest req = {};
        BrokerError err = {};
        Principal *p = NULL;

        if (sd_bus_message_has_signature(m, "asa{sv}") > 0) {
                if (dbus_read_devices(m, &devices, &err) >= 0)
                        (void) dbus_read_acquire_options(m, &req, &err);
        } else if (sd_bus_message_has_signature(m, "as") > 0)
                (void) dbus_read_devices(m, &devices, &err);
        else if (sd_bus_message_has_signature(m, "a{sv}") > 0) {
                if (principal_from_bus_credentials(m, &p) >= 0)
                        principal_free(p);
        }
}

static int on_message(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        decode(m);
        return 1;       /* handled: no error reply to write */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char auth[] = "\0AUTH ANONYMOUS\r\nBEGIN\r\n";
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        sd_id128_t id = SD_ID128_MAKE(8f, 2a, 11, 5c, 3d, 77, 40, 0e, 9a, 61, 0b, 5e, 2c, 4f, 1d, 33);
        char sink[4096];
        int sv[2];

        if (size > 48 * 1024)
                return 0;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        if (sd_bus_new(&bus) < 0 || sd_bus_set_fd(bus, sv[0], sv[0]) < 0 || sd_bus_set_server(bus, 1, id) < 0 ||
            sd_bus_set_anonymous(bus, 1) < 0 || sd_bus_add_filter(bus, NULL, on_message, NULL) < 0 ||
            sd_bus_start(bus) < 0)
                abort();
        if (write(sv[1], auth, sizeof(auth) - 1) < 0 || (size > 0 && write(sv[1], data, size) < 0))
                abort();
        shutdown(sv[1], SHUT_WR);
        for (int i = 0; i < 256; i++) {
                int r = sd_bus_process(bus, NULL);
                if (r <= 0)
                        break;
                (void) !read(sv[1], sink, sizeof(sink));
        }
        close(sv[1]);
        return 0;
}
