/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-args.h"
#include "varlink-broker.h"

/* Read one option's variant, which must hold type `want`. */
static int read_option(sd_bus_message *m, const char *key, const char *want, void *p, BrokerError *err) {
        const char *contents = NULL;
        int r;

        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        if (!streq_ptr(contents, want))
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                        "Option '%s' must be of type '%s', not '%s'.", key, want,
                                        strna(contents));
        /* Not sd_bus_message_read(m, "v", ...): its format parsing cost
         * more than the rest of reading the options. */
        r = sd_bus_message_enter_container(m, 'v', want);
        if (r >= 0)
                r = sd_bus_message_read_basic(m, want[0], p);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

/* seen: a bit per option already read. A key given twice is refused, as
 * varlink refuses a duplicate key: which one counts would be a guess. */
static int read_one_option(sd_bus_message *m, AcquireRequest *req, unsigned *seen, BrokerError *err) {
        static const char *const keys[] = { "mode", "managed", "interactive" };
        const char *key, *mode;
        int r, b;

        r = sd_bus_message_read_basic(m, 's', &key);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(key, keys[i])) {
                        if (*seen & (1u << i))
                                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                                        "Option '%s' is given twice.", key);
                        *seen |= 1u << i;
                }

        if (streq(key, "mode")) {
                r = read_option(m, key, "s", &mode, err);
                if (r < 0)
                        return r;
                req->mode = acquire_mode_from_string(mode);
                if (req->mode < 0)
                        return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                                "Unknown mode '%s': expected unbound, bound or attached.",
                                                mode);
        } else if (streq(key, "managed")) {
                r = read_option(m, key, "b", &b, err);
                if (r < 0)
                        return r;
                req->managed = b;
        } else if (streq(key, "interactive")) {
                r = read_option(m, key, "b", &b, err);
                if (r < 0)
                        return r;
                req->allow_interactive = b;
        } else
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                        "Unknown option '%s': expected mode, managed or interactive.", key);
        return 0;
}

/* Options are few: a longer list is abuse, refused before reading on. */
#define MAX_ACQUIRE_OPTIONS 16

int dbus_read_acquire_options(sd_bus_message *m, AcquireRequest *req, BrokerError *err) {
        unsigned n = 0, seen = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                if (++n > MAX_ACQUIRE_OPTIONS)
                        return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                                "more than %d options given", MAX_ACQUIRE_OPTIONS);
                r = read_one_option(m, req, &seen, err);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* The device list of a call: at most BROKER_VARLINK_MAX_DEVICES_PER_CALL,
 * like varlink. Counted while reading, so a 200,000-entry array costs 65
 * reads, and read into one array grown geometrically (sd-bus's strv reader
 * is quadratic). */
int dbus_read_devices(sd_bus_message *m, char ***ret, BrokerError *err) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        const char *s;
        int r;

        l = calloc(BROKER_VARLINK_MAX_DEVICES_PER_CALL + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read_basic(m, 's', &s)) > 0) {
                if (n >= BROKER_VARLINK_MAX_DEVICES_PER_CALL)
                        return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                                "more than %d devices given, at most %d per call",
                                                BROKER_VARLINK_MAX_DEVICES_PER_CALL,
                                                BROKER_VARLINK_MAX_DEVICES_PER_CALL);
                l[n] = strdup(s);
                if (!l[n++])
                        return -ENOMEM;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

/* --- The AcquireDevices reply --- */

/* One "{sv}" entry whose variant holds a basic value: explicit calls, as
 * sd_bus_message_append() parses its format string at every step and cost
 * most of the AcquireDevices reply. */
static int append_entry(sd_bus_message *m, const char *key, char type, const void *value) {
        const char signature[2] = { type, 0 };
        int r;

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append_basic(m, 's', key);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', signature);
        if (r >= 0)
                r = sd_bus_message_append_basic(m, type, value);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_acquired_device(sd_bus_message *reply, const AcquiredDevice *d) {
        int r;

        r = sd_bus_message_open_container(reply, 'r', "sha{sv}");
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 's', d->address);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 'h', &d->fd);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = append_entry(reply, "dev_id", 'u', &d->dev_id);
        if (r >= 0)
                r = append_entry(reply, "hwpt_id", 'u', &d->hwpt_id);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int append_acquired_devices(sd_bus_message *reply, const AcquireReply *a) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sha{sv})");
        for (size_t i = 0; r >= 0 && i < a->n_devices; i++)
                r = append_acquired_device(reply, &a->devices[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

int dbus_append_acquire_reply(sd_bus_message *reply, const AcquireReply *a) {
        int r;

        r = sd_bus_message_append_basic(reply, 'h', &a->iommufd);
        if (r >= 0)
                r = append_acquired_devices(reply, a);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = append_entry(reply, "session", 't', &a->session_id);
        if (r >= 0)
                r = append_entry(reply, "ioas_id", 'u', &a->ioas_id);
        if (r >= 0 && a->memlock_limit != 0)
                r = append_entry(reply, "memlock_limit", 't', &a->memlock_limit);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}
