/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Device object paths: the mapping between PCI addresses and D-Bus paths. */
#include <stdio.h>
#include <stdlib.h>

#include "dbus-device.h"
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

int main(void) {
        test_round_trip("0000:03:00.0", "/io/iommufd/Broker1/device/_30000_3a03_3a00_2e0");
        test_round_trip("0000:00:1f.7", "/io/iommufd/Broker1/device/_30000_3a00_3a1f_2e7");
        test_like_sd_bus();
        test_not_a_device("/io/iommufd/Broker1");
        test_not_a_device("/io/iommufd/Broker1/device");
        test_not_a_device("/io/iommufd/Broker1/device/a/b");
        test_not_a_device("/org/freedesktop/DBus");
        return test_result();
}
