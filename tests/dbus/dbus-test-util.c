/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for the D-Bus integration tests: connect, read properties, acquire. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dbus-test-util.h"

sd_bus *connect_bus(void) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, getenv("DBUS_TEST_ADDRESS"));
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to the test bus: %s\n", strerror(-r));
                sd_bus_unref(bus);
                return NULL;
        }
        return bus;
}

char *get_string(sd_bus *bus, const char *path, const char *property) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *s = NULL;

        if (sd_bus_get_property_string(bus, BROKER_DBUS_NAME, path, DEVICE_IFACE, property, &error, &s) < 0)
                fprintf(stderr, "Get %s %s: %s\n", path, property, error.message);
        sd_bus_error_free(&error);
        return s;
}

uint64_t get_number(sd_bus *bus, const char *path, const char *property, char type) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        union { uint64_t t; uint32_t u; int32_t i; uint16_t q; int b; } v = {};

        if (sd_bus_get_property_trivial(bus, BROKER_DBUS_NAME, path, DEVICE_IFACE, property, &error, type, &v) < 0)
                fprintf(stderr, "Get %s %s: %s\n", path, property, error.message);
        sd_bus_error_free(&error);
        switch (type) {
        case 't': return v.t;
        case 'u': return v.u;
        case 'i': return (uint64_t) (int64_t) v.i;
        case 'q': return v.q;
        default: return (uint64_t) v.b;
        }
}

bool property_is(sd_bus *bus, const char *path, const char *property, const char *want) {
        _cleanup_free_ char *s = get_string(bus, path, property);
        return streq_ptr(s, want);
}

/* Poll until property reads want (sessions end asynchronously). */
bool wait_property(sd_bus *bus, const char *path, const char *property, const char *want) {
        for (int i = 0; i < 100; i++) {
                if (property_is(bus, path, property, want))
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

/* --- Devices --- */


void devices_done(Devices *d) {
        strv_free(d->addresses);
        strv_free(d->paths);
}

int list_devices(sd_bus *bus, Devices *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *address, *path;
        int r, group_a = -2;

        *ret = (Devices) {};
        r = sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "ListDevices",
                               &error, &reply, NULL);
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(so)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(so)", &address, &path)) > 0) {
                strv_extend(&ret->addresses, address);
                strv_extend(&ret->paths, path);
        }
        for (size_t i = 0; ret->paths && ret->paths[i]; i++) {
                const char *p = ret->paths[i];
                _cleanup_free_ char *cdev = get_string(bus, p, "VfioCdev");
                int group = (int) get_number(bus, p, "IommuGroup", 'i');

                if (!property_is(bus, p, "State", "available") || !property_is(bus, p, "StateReason", "") ||
                    !cdev || !*cdev || group < 0 || get_number(bus, p, "NoIommu", 'b'))
                        continue;
                if (!ret->free_a) {
                        ret->free_a = ret->addresses[i], ret->path_a = ret->paths[i], group_a = group;
                } else if (!ret->free_b && group != group_a) {
                        ret->free_b = ret->addresses[i], ret->path_b = ret->paths[i];
                }
        }
        return r;
}

/* --- Acquire --- */


void acquired_done(Acquired *a) {
        safe_close(a->iommufd);
        for (size_t i = 0; i < a->n; i++)
                safe_close(a->fd[i]);
        *a = (Acquired) { .iommufd = -EBADF };
}

static int read_ids(sd_bus_message *reply, uint32_t *dev_id, uint32_t *hwpt_id, uint64_t *session,
                    uint32_t *ioas_id) {
        const char *key;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "dev_id") && dev_id)
                        r = sd_bus_message_read(reply, "v", "u", dev_id);
                else if (streq(key, "hwpt_id") && hwpt_id)
                        r = sd_bus_message_read(reply, "v", "u", hwpt_id);
                else if (streq(key, "session") && session)
                        r = sd_bus_message_read(reply, "v", "t", session);
                else if (streq(key, "ioas_id") && ioas_id)
                        r = sd_bus_message_read(reply, "v", "u", ioas_id);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : sd_bus_message_exit_container(reply);
}

static int parse_acquire_reply(sd_bus_message *reply, Acquired *a) {
        const char *address;
        int r, fd;

        *a = (Acquired) { .iommufd = -EBADF };
        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0)
                return r;
        a->iommufd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        r = sd_bus_message_enter_container(reply, 'a', "(sha{sv})");
        if (r < 0)
                return r;
        while (a->n < 4 && (r = sd_bus_message_enter_container(reply, 'r', "sha{sv}")) > 0) {
                r = sd_bus_message_read(reply, "sh", &address, &fd);
                if (r < 0)
                        return r;
                snprintf(a->address[a->n], sizeof(a->address[0]), "%s", address);
                a->fd[a->n] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                r = read_ids(reply, &a->dev_id[a->n], &a->hwpt_id[a->n], NULL, NULL);
                a->n++;
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        return read_ids(reply, NULL, NULL, &a->session, &a->ioas_id);
}

/* AcquireDevices(devices, {key: <sig value>}) with at most one option; key NULL: none. */
int acquire(sd_bus *bus, char **devices, const char *key, const char *sig, const void *value,
                   sd_bus_error *error, Acquired *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           "AcquireDevices");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, devices);
        if (r >= 0 && !key)
                r = sd_bus_message_append(m, "a{sv}", 0);
        else if (r >= 0 && streq(sig, "s"))
                r = sd_bus_message_append(m, "a{sv}", 1, key, sig, (const char *) value);
        else if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 1, key, sig, *(const int *) value);
        if (r < 0)
                return r;
        r = sd_bus_call(bus, m, 0, error, &reply);
        if (r < 0)
                return r;
        return ret ? parse_acquire_reply(reply, ret) : 0;
}

int acquire_one(sd_bus *bus, const char *address, const char *mode, sd_bus_error *error, Acquired *ret) {
        char *devices[] = { (char *) address, NULL };
        return acquire(bus, devices, "mode", "s", mode, error, ret);
}

int release(sd_bus *bus, char **devices, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           "ReleaseDevices");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, devices);
        if (r < 0)
                return r;
        return sd_bus_call(bus, m, 0, error, NULL);
}

bool fd_is(int fd, const char *want) {
        char path[64], target[256];
        ssize_t n;

        if (!want)
                return false;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return false;
        target[n] = 0;
        if (!streq(target, want))
                printf("  fd %d is %s, want %s\n", fd, target, want);
        return streq(target, want);
}

/* Expect a call to have failed with a given error name. */
void check_error(int r, sd_bus_error *error, const char *want, const char *what) {
        CHECK_MSG(r < 0 && sd_bus_error_has_name(error, want), "%s -> %s (%s: %s)", what, want,
                  strna(error->name), strna(error->message));
        sd_bus_error_free(error);
}


/* --- Signals --- */

static void watch_add(Watch *w, const char *fmt, ...) _printf_(2, 3);
static void watch_add(Watch *w, const char *fmt, ...) {
        char line[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        strv_extend(&w->lines, line);
}

/* " State=VALUE" if the changed properties carry State, then " keys=A,B;"
 * naming every property that came with a value. */
static void read_changed_state(sd_bus_message *m, char *state, size_t size) {
        const char *iface, *key, *contents, *value;
        char keys[512] = "";

        *state = 0;
        if (sd_bus_message_read(m, "s", &iface) < 0 || sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &key) < 0 ||
                    sd_bus_message_peek_type(m, NULL, &contents) < 0)
                        return;
                snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "%s%s", keys[0] ? "," : "", key);
                if (streq(key, "State") && streq(contents, "s") && sd_bus_message_read(m, "v", "s", &value) >= 0)
                        snprintf(state, size, " State=%s", value);
                else if (sd_bus_message_skip(m, "v") < 0)
                        return;
                if (sd_bus_message_exit_container(m) < 0)
                        return;
        }
        snprintf(state + strlen(state), size - strlen(state), " keys=%s;", keys);
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Watch *w = userdata;
        const char *member = sd_bus_message_get_member(m), *a = NULL, *b = NULL, *reason = NULL;
        uint64_t session = 0;
        char state[600];

        if (streq(member, "LeaseEnded") && sd_bus_message_read(m, "sts", &a, &session, &reason) >= 0)
                watch_add(w, "LeaseEnded %s %" PRIu64 " %s", a, session, reason);
        else if (streq(member, "LeaseAcquired") && sd_bus_message_read(m, "st", &a, &session) >= 0)
                watch_add(w, "LeaseAcquired %s %" PRIu64, a, session);
        else if ((streq(member, "DeviceAdded") || streq(member, "DeviceRemoved")) &&
                 sd_bus_message_read(m, "so", &a, &b) >= 0)
                watch_add(w, "%s %s %s", member, a, b);
        else if ((streq(member, "InterfacesAdded") || streq(member, "InterfacesRemoved")) &&
                 sd_bus_message_read(m, "o", &a) >= 0)
                watch_add(w, "%s %s", member, a);
        else if (streq(member, "PropertiesChanged")) {
                read_changed_state(m, state, sizeof(state));
                watch_add(w, "PropertiesChanged %s%s", sd_bus_message_get_path(m), state);
                w->changed_usec = now_usec();
        }
        return 0;
}

uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

typedef struct WatchCall {
        Watch *w;
        char label[64];
} WatchCall;

static int on_watch_reply(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        WatchCall *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (e)
                watch_add(c->w, "Error %s %s", c->label, strna(e->name));
        else
                watch_add(c->w, "Reply %s", c->label);
        return 0;
}

int watch_call(Watch *w, sd_bus_message *m, const char *label) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        WatchCall *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->w = w;
        snprintf(c->label, sizeof(c->label), "%s", label);
        r = sd_bus_call_async(w->bus, &slot, m, on_watch_reply, c, 0);
        if (r < 0) {
                free(c);
                return r;
        }
        /* Freed with the slot, which the bus keeps (floating) until the
         * reply came or the bus goes. */
        (void) sd_bus_slot_set_destroy_callback(slot, free);
        return sd_bus_slot_set_floating(slot, 1);
}

int watch_find(Watch *w, int from, const char *prefix) {
        for (int i = from; i >= 0 && w->lines && i < (int) strv_length(w->lines); i++)
                if (strncmp(w->lines[i], prefix, strlen(prefix)) == 0)
                        return i;
        return -1;
}

void watch_pump(Watch *w, uint64_t usec) {
        uint64_t end = now_usec() + usec;

        for (uint64_t now = now_usec(); now < end; now = now_usec()) {
                int r = sd_bus_process(w->bus, NULL);

                if (r < 0)
                        return;
                if (r == 0)
                        (void) sd_bus_wait(w->bus, end - now);
        }
}

int watch_start(Watch *w) {
        *w = (Watch) {};
        w->bus = connect_bus();
        if (!w->bus)
                return -ENOTCONN;
        return sd_bus_add_match(w->bus, NULL, "type='signal',path_namespace='" BROKER_DBUS_PATH "'", on_signal, w);
}

void watch_done(Watch *w) {
        sd_bus_flush_close_unref(w->bus);
        strv_free(w->lines);
        *w = (Watch) {};
}

static bool watch_has(Watch *w, const char *prefix) {
        for (char **l = w->lines; l && *l; l++)
                if (strncmp(*l, prefix, strlen(prefix)) == 0)
                        return true;
        return false;
}

bool watch_wait(Watch *w, const char *prefix) {
        struct timespec start, now;

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                int r;

                if (watch_has(w, prefix))
                        return true;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - start.tv_sec >= 5)
                        break;
                r = sd_bus_process(w->bus, NULL);
                if (r < 0)
                        break;
                if (r == 0)
                        (void) sd_bus_wait(w->bus, 100 * 1000);
        }
        for (char **l = w->lines; l && *l; l++)
                printf("  seen: %s\n", *l);
        return false;
}
