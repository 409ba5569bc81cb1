/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * D-Bus argument decoding. The input is a small program that builds a
 * message body with sd-bus (strings, integers, booleans, fds, arrays, dict
 * entries, variants, structs, nested as it likes); the sealed message then
 * goes through every decoder the broker has for what callers send it:
 * AcquireDevices/ReleaseDevices arguments (dbus-args.c) and the
 * GetConnectionCredentials reply reader (principal.c). The bus parses the
 * wire format before the broker sees a message (dbus-daemon and sd-bus
 * validate it), so the broker's own code starts at typed values: that is
 * what this exercises, fast.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dbus-args.h"
#include "fuzz.h"
#include "principal.h"

static sd_bus *bus;
static int some_fd = -EBADF;

static void setup(void) {
        sd_id128_t id = SD_ID128_MAKE(8f, 2a, 11, 5c, 3d, 77, 40, 0e, 9a, 61, 0b, 5e, 2c, 4f, 1d, 33);
        int sv[2];

        /* A started bus to build messages on; nothing is ever sent. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0 || sd_bus_new(&bus) < 0 ||
            sd_bus_set_fd(bus, sv[0], sv[0]) < 0 || sd_bus_set_server(bus, 1, id) < 0 ||
            sd_bus_set_anonymous(bus, 1) < 0 || sd_bus_negotiate_fds(bus, 1) < 0 || sd_bus_start(bus) < 0)
                abort();
        some_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

typedef struct Input {
        const uint8_t *p;
        size_t left;
} Input;

static uint8_t take(Input *in) {
        if (in->left == 0)
                return 0;
        in->left--;
        return *in->p++;
}

static uint32_t take32(Input *in) {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++)
                v = v << 8 | take(in);
        return v;
}

static void take_string(Input *in, char out[static 65]) {
        size_t n = take(in) % 65, k = 0;

        for (size_t i = 0; i < n && in->left > 0; i++) {
                char c = (char) take(in);
                if (c != 0)
                        out[k++] = c;
        }
        out[k] = 0;
}

static const char *const container_types[] = { "s", "{sv}", "u", "(so)", "as", "v", "h", "au", "{ss}" };
static const char *const variant_types[] = { "s", "b", "u", "au", "h", "as", "t", "(su)", "ay", "a{sv}" };

/* One step of the program; failures (a type the container does not take,
 * invalid UTF-8, ...) just skip the step, as the bus would never pass such a
 * message on. */
static void step(sd_bus_message *m, Input *in, unsigned *depth) {
        char s[65];
        uint32_t u;
        int b;

        switch (take(in) % 12) {
        case 0:
        case 1:
                take_string(in, s);
                (void) sd_bus_message_append_basic(m, 's', s);
                break;
        case 2:
                u = take32(in);
                (void) sd_bus_message_append_basic(m, 'u', &u);
                break;
        case 3:
                b = take(in) & 1;
                (void) sd_bus_message_append_basic(m, 'b', &b);
                break;
        case 4:
                if (*depth < 8 && sd_bus_message_open_container(m, 'a', container_types[take(in) % ELEMENTSOF(container_types)]) >= 0)
                        (*depth)++;
                break;
        case 5:
                if (*depth > 0 && sd_bus_message_close_container(m) >= 0)
                        (*depth)--;
                break;
        case 6:
                if (*depth < 8 && sd_bus_message_open_container(m, 'e', take(in) & 1 ? "sv" : "ss") >= 0)
                        (*depth)++;
                break;
        case 7:
                if (*depth < 8 && sd_bus_message_open_container(m, 'v', variant_types[take(in) % ELEMENTSOF(variant_types)]) >= 0)
                        (*depth)++;
                break;
        case 8:
                (void) sd_bus_message_append_basic(m, 'h', &some_fd);
                break;
        case 9: {
                uint64_t t = (uint64_t) take32(in) << 32 | take32(in);
                (void) sd_bus_message_append_basic(m, 't', &t);
                break;
        }
        case 10:
                if (*depth < 8 && sd_bus_message_open_container(m, 'r', take(in) & 1 ? "so" : "su") >= 0)
                        (*depth)++;
                break;
        case 11: {
                uint8_t y = take(in);
                (void) sd_bus_message_append_basic(m, 'y', &y);
                break;
        }
        }
}

static void decode(sd_bus_message *m) {
        BrokerError err = {};
        AcquireRequest req = {};
        Principal *p = NULL;
        char **devices = NULL;

        if (sd_bus_message_rewind(m, true) >= 0 && dbus_read_devices(m, &devices, &err) >= 0)
                (void) dbus_read_acquire_options(m, &req, &err);
        strv_free(devices);
        devices = NULL;
        if (sd_bus_message_rewind(m, true) >= 0)
                (void) dbus_read_acquire_options(m, &req, &err);
        if (sd_bus_message_rewind(m, true) >= 0 && principal_from_bus_credentials(m, &p) >= 0)
                principal_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        Input in = { data, size };
        unsigned depth = 0;
        static uint64_t cookie;

        if (size > 16384)
                return 0;
        if (!bus)
                setup();
        if (sd_bus_message_new_method_call(bus, &m, "io.iommufd.Broker1", "/io/iommufd/Broker1",
                                           "io.iommufd.Broker1", "AcquireDevices") < 0)
                abort();
        while (in.left > 0)
                step(m, &in, &depth);
        while (depth > 0 && sd_bus_message_close_container(m) >= 0)
                depth--;
        if (depth > 0 || sd_bus_message_seal(m, ++cookie, 0) < 0)
                return 0;       /* left unfinished: not a message */
        decode(m);
        return 0;
}
