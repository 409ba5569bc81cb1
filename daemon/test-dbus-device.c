/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Device object paths: the mapping between PCI addresses and D-Bus paths;
 * the ASCII strings appended without sd-bus's UTF-8 check; the properties a
 * PropertiesChanged names, from two snapshots. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "dbus-device.h"
#include "dbus-snapshot.h"
#include "test.h"

static void test_round_trip(const char *address, const char *want_path) {
        _cleanup_free_ char *path = NULL, *back = NULL;

        CHECK_MSG(dbus_device_path(address, &path) >= 0 && streq(path, want_path), "%s -> %s", address,
                  strna(path));
        CHECK_MSG(path && dbus_device_address_from_path(path, &back) >= 0 && streq(back, address), "%s -> %s",
                  strna(path), strna(back));
}

/* The same path sd-bus makes, for any string. */
static void test_like_sd_bus(void) {
        static const char *const samples[] = { "0000:03:00.0", "a", "Z9", "9z", "_", "-", "a b", "\xff\x80", "ab/cd" };
        unsigned wrong = 0;

        for (size_t i = 0; i < ELEMENTSOF(samples); i++) {
                _cleanup_free_ char *ours = NULL, *theirs = NULL;

                CHECK(dbus_device_path(samples[i], &ours) >= 0 &&
                      sd_bus_path_encode(BROKER_DBUS_DEVICE_PREFIX, samples[i], &theirs) >= 0 &&
                      streq(ours, theirs));
        }
        srand(7);
        for (int i = 0; i < 20000; i++) {
                char s[16];
                size_t n = 1 + (size_t) (rand() % 15);
                _cleanup_free_ char *ours = NULL, *theirs = NULL;

                for (size_t k = 0; k < n; k++)
                        s[k] = (char) (1 + rand() % 255);
                s[n] = 0;
                if (dbus_device_path(s, &ours) < 0 ||
                    sd_bus_path_encode(BROKER_DBUS_DEVICE_PREFIX, s, &theirs) < 0 || !streq(ours, theirs))
                        wrong++;
        }
        CHECK_MSG(wrong == 0, "20,000 random strings encoded as sd_bus_path_encode() does (%u differ)", wrong);
}

static void test_not_a_device(const char *path) {
        _cleanup_free_ char *address = NULL;
        int r = dbus_device_address_from_path(path, &address);

        CHECK_MSG(r == -ENXIO && !address, "%s is not a device path (%d)", path, r);
}

/* A PropertiesChanged-shaped message (top level, dict entry, variant,
 * array), its strings appended by append, sent over bus with cookie 7. */
static int send_changed(sd_bus *bus, int (*append)(sd_bus_message *m, const char *s)) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(bus, &m, "/io/iommufd/Broker1/device/_30000_3a03_3a00_2e0",
                                      "org.freedesktop.DBus.Properties", "PropertiesChanged");
        if (r >= 0)
                r = append(m, "io.iommufd.Broker1.Device");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = append(m, "State");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "s");
        if (r >= 0)
                r = append(m, "");
        for (int i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        if (r >= 0)
                r = append(m, "HolderSession");
        if (r >= 0)
                r = append(m, "0000:03:00.0");
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_seal(m, 7, 0);
        if (r >= 0)
                r = sd_bus_send(bus, m, NULL);
        if (r >= 0)
                r = sd_bus_flush(bus);
        return r;
}

static int append_basic_string(sd_bus_message *m, const char *s) {
        return sd_bus_message_append_basic(m, 's', s);
}

/* The very bytes sd-bus writes: a client connection to a server in this
 * process, then read past the server from the socket. */
static void test_append_ascii(void) {
        sd_id128_t id = SD_ID128_MAKE(8f, 2a, 11, 5c, 3d, 77, 40, 0e, 9a, 61, 0b, 5e, 2c, 4f, 1d, 33);
        _cleanup_(sd_bus_close_unrefp) sd_bus *server = NULL, *client = NULL;
        char ours[512], theirs[512];
        ssize_t n_ours = -1, n_theirs = -1;
        int sv[2], r;

        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
        r = sd_bus_new(&server);
        if (r >= 0)
                r = sd_bus_set_fd(server, sv[0], sv[0]);
        if (r >= 0)
                r = sd_bus_set_server(server, 1, id);
        if (r >= 0)
                r = sd_bus_set_anonymous(server, 1);
        if (r >= 0)
                r = sd_bus_start(server);
        if (r >= 0)
                r = sd_bus_new(&client);
        if (r >= 0)
                r = sd_bus_set_fd(client, sv[1], sv[1]);
        if (r >= 0)
                r = sd_bus_set_anonymous(client, 1);
        if (r >= 0)
                r = sd_bus_start(client);
        for (int i = 0; r >= 0 && i < 1000 && sd_bus_is_ready(client) <= 0; i++) {
                r = sd_bus_process(server, NULL);
                if (r >= 0)
                        r = sd_bus_process(client, NULL);
                if (r >= 0 && sd_bus_is_ready(client) <= 0)
                        (void) sd_bus_wait(client, 1000);
        }
        CHECK_MSG(r >= 0 && sd_bus_is_ready(client) > 0, "client and server connected (%d)", r);
        if (send_changed(client, dbus_append_ascii) >= 0)
                n_ours = recv(sv[0], ours, sizeof(ours), 0);
        if (send_changed(client, append_basic_string) >= 0)
                n_theirs = recv(sv[0], theirs, sizeof(theirs), 0);
        CHECK_MSG(n_ours > 0 && n_ours == n_theirs && memcmp(ours, theirs, (size_t) n_ours) == 0,
                  "ASCII strings appended as sd_bus_message_append_basic() does, in every container (%zd, %zd bytes)",
                  n_ours, n_theirs);
}

#define BIT PROPERTY_BIT

static void test_changed(void) {
        char *members_a[] = { "0000:03:00.0", NULL }, *members_ab[] = { "0000:03:00.0", "0000:03:00.1", NULL };
        char *none[] = { NULL };
        char driver[] = "vfio-pci", reason[] = "held by uid 1000";
        DeviceSnapshot old = {
                .address = "0000:03:00.0", .driver = "vfio-pci", .reason = "held by uid 1000",
                .group_members = members_a, .iommu_group = 7, .state = DEVICE_STATE_LEASED, .holder_session = 3,
                .hw_info = { .valid = true, .type = 1, .capabilities = 1 },
        }, new = old, stored;

        CHECK(device_snapshot_changed(NULL, &new) == PROPERTIES_ALL);
        /* Equal strings at other addresses are no change. */
        new.driver = driver;
        new.reason = reason;
        CHECK_INT(device_snapshot_changed(&old, &new), 0);
        new.state = DEVICE_STATE_AVAILABLE;
        CHECK_INT(device_snapshot_changed(&old, &new), BIT(PROPERTY_STATE));
        new.reason = NULL;
        new.holder_session = 0;
        CHECK_INT(device_snapshot_changed(&old, &new),
                  BIT(PROPERTY_STATE) | BIT(PROPERTY_STATE_REASON) | PROPERTIES_HOLDER);
        new = old;
        new.driver = NULL;
        CHECK_INT(device_snapshot_changed(&old, &new), BIT(PROPERTY_DRIVER) | PROPERTIES_ACCESS);
        new = old;
        new.iommu_group = 8;
        new.group_members = members_ab;
        CHECK_INT(device_snapshot_changed(&old, &new),
                  BIT(PROPERTY_IOMMU_GROUP) | BIT(PROPERTY_GROUP_MEMBERS) | PROPERTIES_ACCESS);
        new = old;
        new.hw_info.capabilities = 0;
        CHECK_INT(device_snapshot_changed(&old, &new), BIT(PROPERTY_IOMMU_CAPABILITIES));
        new.hw_info.valid = false;
        CHECK_INT(device_snapshot_changed(&old, &new), BIT(PROPERTY_IOMMU_TYPE) | BIT(PROPERTY_IOMMU_CAPABILITIES));
        new = old;
        new.noiommu = new.sriov_vf = true;
        CHECK_INT(device_snapshot_changed(&old, &new), BIT(PROPERTY_NOIOMMU) | BIT(PROPERTY_SRIOV_VF));
        /* No group and an empty one read the same. */
        old.group_members = NULL;
        new = old;
        new.group_members = none;
        CHECK_INT(device_snapshot_changed(&old, &new), 0);

        /* A stored copy, brought up to date, owns what it says. */
        CHECK(device_snapshot_copy(&old, &stored) >= 0);
        CHECK_INT(device_snapshot_changed(&stored, &old), 0);
        CHECK(stored.driver != old.driver && !*stored.path);
        new = old;
        new.driver = NULL;
        new.reason = reason;
        new.group_members = members_ab;
        new.state = DEVICE_STATE_AVAILABLE;
        CHECK(device_snapshot_update(&stored, &new, device_snapshot_changed(&stored, &new)) >= 0);
        reason[0] = 'X';
        new.reason = "held by uid 1000";
        CHECK_INT(device_snapshot_changed(&stored, &new), 0);
        device_snapshot_done(&stored);

        /* The access ones are the tail of the names, as a strv. */
        CHECK_STR(device_property_names[PROPERTY_ACCESS], "Access");
        CHECK_STR(device_property_names[_PROPERTY_MAX - 1], "PolkitAction");
        CHECK(!device_property_names[_PROPERTY_MAX]);
}

int main(void) {
        test_round_trip("0000:03:00.0", "/io/iommufd/Broker1/device/_30000_3a03_3a00_2e0");
        test_round_trip("0000:00:1f.7", "/io/iommufd/Broker1/device/_30000_3a00_3a1f_2e7");
        test_like_sd_bus();
        test_not_a_device("/io/iommufd/Broker1");
        test_not_a_device("/io/iommufd/Broker1/device");
        test_not_a_device("/io/iommufd/Broker1/device/a/b");
        test_not_a_device("/org/freedesktop/DBus");
        test_append_ascii();
        test_changed();
        return test_result();
}
