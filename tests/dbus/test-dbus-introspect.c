/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vtable-vs-XML check: every method (with its in/out arguments),
 * property (with type and access) and signal (with arguments) of
 * io.iommufd.Broker1 and io.iommufd.Broker1.Device that the running daemon
 * serves must be in protocol/io.iommufd.Broker1.xml, and the other way round.
 *
 * Needs DBUS_TEST_ADDRESS (a bus where the broker runs, see run-with-broker.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "broker-errors.h"
#include "protocol-data.h"
#include "util.h"
#include "test.h"

/* Value of attribute `name` in the tag starting at tag (up to '>'), or NULL. */
static char *tag_attr(const char *tag, const char *name) {
        const char *end = strchr(tag, '>');
        size_t n = strlen(name);

        for (const char *p = tag + 1; end && p < end; p++) {
                if ((p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n') && strncmp(p, name, n) == 0 &&
                    p[n] == '=' && p[n + 1] == '"') {
                        const char *v = p + n + 2, *q = strchr(v, '"');
                        return q ? strndup(v, (size_t) (q - v)) : NULL;
                }
        }
        return NULL;
}

static bool tag_is(const char *p, const char *name) {
        size_t n = strlen(name);
        return p[0] == '<' && strncmp(p + 1, name, n) == 0 && strchr(" \t\n/>", p[n + 1]);
}

/* Append "text" to *buf. */
static void append(char **buf, const char *text) {
        size_t a = *buf ? strlen(*buf) : 0, b = strlen(text);
        char *t = realloc(*buf, a + b + 1);
        if (!t)
                abort();
        memcpy(t + a, text, b + 1);
        *buf = t;
}

/*
 * One line per member of our two interfaces, e.g.
 *   "io.iommufd.Broker1 method GetDevice(in s address, out o device)"
 *   "io.iommufd.Broker1.Device property State s read"
 * Comments and annotations are ignored; other interfaces are skipped.
 */
static char **members_of_xml(const char *xml) {
        _cleanup_free_ char *iface = NULL, *current = NULL;
        char **lines = NULL;
        int n_args = 0;

        for (const char *p = xml; (p = strchr(p, '<')); p++) {
                if (strncmp(p, "<!--", 4) == 0) {
                        p = strstr(p, "-->");
                        if (!p)
                                break;
                        continue;
                }
                if (tag_is(p, "interface")) {
                        free(iface);
                        iface = tag_attr(p, "name");
                } else if (strncmp(p, "</interface>", 12) == 0) {
                        iface = (free(iface), NULL);
                } else if (!iface || (!streq(iface, BROKER_DBUS_INTERFACE) &&
                                      !streq(iface, BROKER_DBUS_DEVICE_INTERFACE))) {
                        continue;
                } else if (tag_is(p, "method") || tag_is(p, "signal")) {
                        _cleanup_free_ char *name = tag_attr(p, "name");
                        char head[256];

                        snprintf(head, sizeof(head), "%s %s %s(", iface, tag_is(p, "method") ? "method" : "signal",
                                 strna(name));
                        free(current);
                        current = NULL;
                        append(&current, head);
                        n_args = 0;
                        /* "<method name=.../>" has no arguments and no end tag. */
                        if (strchr(p, '>')[-1] == '/') {
                                append(&current, ")");
                                strv_extend(&lines, current);
                                current = (free(current), NULL);
                        }
                } else if (tag_is(p, "arg") && current) {
                        _cleanup_free_ char *type = tag_attr(p, "type"), *name = tag_attr(p, "name"),
                                            *dir = tag_attr(p, "direction");
                        char arg[256];

                        /* Method arguments default to "in"; signal arguments have no direction. */
                        if (!dir && strstr(current, " method "))
                                dir = strdup("in");
                        snprintf(arg, sizeof(arg), "%s%s%s%s %s", n_args++ ? ", " : "", dir ?: "", dir ? " " : "",
                                 strna(type), strna(name));
                        append(&current, arg);
                } else if ((strncmp(p, "</method>", 9) == 0 || strncmp(p, "</signal>", 9) == 0) && current) {
                        append(&current, ")");
                        strv_extend(&lines, current);
                        current = (free(current), NULL);
                } else if (tag_is(p, "property")) {
                        _cleanup_free_ char *name = tag_attr(p, "name"), *type = tag_attr(p, "type"),
                                            *access = tag_attr(p, "access");
                        char line[256];

                        snprintf(line, sizeof(line), "%s property %s %s %s", iface, strna(name), strna(type),
                                 strna(access));
                        strv_extend(&lines, line);
                }
        }
        return lines;
}

static int introspect(sd_bus *bus, const char *path, char **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *xml;
        int r;

        r = sd_bus_call_method(bus, BROKER_DBUS_NAME, path, "org.freedesktop.DBus.Introspectable", "Introspect",
                               &error, &reply, NULL);
        if (r < 0) {
                fprintf(stderr, "Introspect %s: %s\n", path, error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_read(reply, "s", &xml);
        if (r < 0)
                return r;
        *ret = strdup(xml);
        return *ret ? 0 : -ENOMEM;
}

static int first_device_path(sd_bus *bus, char **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *address, *path;
        int r;

        r = sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "ListDevices", &error,
                               &reply, NULL);
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(so)");
        if (r >= 0)
                r = sd_bus_message_read(reply, "(so)", &address, &path);
        if (r <= 0)
                return r < 0 ? r : -ENODEV;
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

static int cmp_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool interface_present(char **lines, const char *iface) {
        char prefix[128];

        snprintf(prefix, sizeof(prefix), "%s ", iface);
        for (char **l = lines; l && *l; l++)
                if (strncmp(*l, prefix, strlen(prefix)) == 0)
                        return true;
        return false;
}

/* Report each line of a missing from b. */
static int report_missing(char **a, char **b, const char *where) {
        int n = 0;

        for (char **l = a; l && *l; l++)
                if (!strv_contains(b, *l)) {
                        CHECK_MSG(false, "%s is missing: %s", where, *l);
                        n++;
                }
        return n;
}

int main(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *manager_xml = NULL, *device_xml = NULL, *device_path = NULL, *served = NULL;
        _cleanup_strv_free_ char **want = NULL, **have = NULL;
        const char *address = getenv("DBUS_TEST_ADDRESS");
        int r;

        if (!address) {
                printf("skip: DBUS_TEST_ADDRESS not set (run through run-with-broker.sh)\n");
                return 77;
        }
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        CHECK_MSG(r >= 0, "connect to %s", address);
        if (r < 0)
                return 1;

        CHECK_MSG(introspect(bus, BROKER_DBUS_PATH, &manager_xml) >= 0, "Introspect %s", BROKER_DBUS_PATH);
        CHECK_MSG(first_device_path(bus, &device_path) >= 0, "ListDevices names at least one device");
        if (test_failures)
                return 1;
        CHECK_MSG(introspect(bus, device_path, &device_xml) >= 0, "Introspect %s", device_path);
        if (test_failures)
                return 1;
        CHECK_MSG(strstr(manager_xml, "org.freedesktop.DBus.ObjectManager") != NULL,
                      "%s implements org.freedesktop.DBus.ObjectManager", BROKER_DBUS_PATH);

        append(&served, manager_xml);
        append(&served, device_xml);
        want = members_of_xml(broker_dbus_xml);
        have = members_of_xml(served);
        qsort(want, strv_length(want), sizeof(char *), cmp_strings);
        qsort(have, strv_length(have), sizeof(char *), cmp_strings);

        CHECK_MSG(strv_length(want) >= 25, "protocol XML lists %zu members", strv_length(want));
        CHECK_MSG(interface_present(have, BROKER_DBUS_INTERFACE), "daemon serves %s", BROKER_DBUS_INTERFACE);
        CHECK_MSG(interface_present(have, BROKER_DBUS_DEVICE_INTERFACE), "daemon serves %s",
                      BROKER_DBUS_DEVICE_INTERFACE);
        r = report_missing(want, have, "daemon");
        r += report_missing(have, want, "protocol/io.iommufd.Broker1.xml");
        CHECK_MSG(r == 0, "served interfaces equal protocol/io.iommufd.Broker1.xml (%zu members)", strv_length(want));
        for (char **l = want; l && *l && getenv("VERBOSE"); l++)
                printf("  %s\n", *l);

        return test_result();
}
