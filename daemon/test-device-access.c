/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "device-access.h"
#include "test.h"

static Principal *make_principal(uid_t uid, gid_t gid, const char *unit) {
        Principal *p = NULL;

        /* pid 0: no unit lookup; the test says which unit. */
        if (principal_new(uid, gid, 0, -EBADF, NULL, 0, unit, &p) < 0) {
                printf("FAIL: principal_new()\n");
                exit(1);
        }
        return p;
}

static Policy *load(const char *json) {
        Policy *p = NULL;

        if (policy_load_string(json, "t", stderr, &p) < 0) {
                printf("FAIL: policy did not load: %s\n", json);
                exit(1);
        }
        return p;
}

static Device make_device(const char *address, int group) {
        Device d = { .iommu_group = group, .vendor_id = 0x8086, .device_id = 0x10d3, .class = 0x020000 };

        snprintf(d.address, sizeof(d.address), "%s", address);
        return d;
}

static void test_evaluate(void) {
        _cleanup_(policy_freep) Policy *none = load("{ \"rules\": [] }");
        _cleanup_(policy_freep) Policy *p = load(
                "{ \"rules\": ["
                "  { \"devices\": { \"address\": \"0000:03:00.0\" }, \"principals\": { \"users\": [1001] },"
                "    \"modes\": [\"unbound\"], \"managed\": true },"
                "  { \"devices\": { \"address\": \"0000:04:00.0\" }, \"principals\": { \"users\": [1001] },"
                "    \"polkit\": true },"
                "  { \"devices\": { \"address\": \"0000:05:00.0\" }, \"principals\": { \"users\": [1001] },"
                "    \"allow\": false },"
                "  { \"devices\": { \"address\": \"0000:05:00.0\" }, \"principals\": { \"users\": [0] },"
                "    \"allow\": false }"
                "] }");
        _cleanup_(principal_freep) Principal *user = make_principal(1001, 1001, NULL);
        _cleanup_(principal_freep) Principal *other = make_principal(1002, 1002, NULL);
        _cleanup_(principal_freep) Principal *root = make_principal(0, 0, NULL);
        Device d3 = make_device("0000:03:00.0", 3), d4 = make_device("0000:04:00.0", 4),
               d5 = make_device("0000:05:00.0", 5), d6 = make_device("0000:06:00.0", 6);
        DeviceAccessScratch scratch;
        DeviceAccess a;

        device_access_evaluate(p, user, &d3, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_ALLOWED && a.modes == 1u << ACQUIRE_MODE_UNBOUND && a.managed &&
                  !a.reason, "one mode allowed: allowed, that mode, managed");
        device_access_evaluate(p, user, &d4, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_POLKIT && a.modes == 7 && a.polkit_action &&
                  streq(a.polkit_action, "io.iommufd.broker.acquire"), "polkit rule: polkit, with its action");
        device_access_evaluate(p, user, &d5, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_DENIED && a.modes == 0 && a.reason && strstr(a.reason, "denies") &&
                  a.reason_json && a.reason_json[0] == '"', "deny rule: denied with the rule's reason");
        device_access_evaluate(p, user, &d6, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_DENIED && a.reason && strstr(a.reason, "no policy rule"),
                  "no rule: denied, 'no policy rule' (%s)", strna(a.reason));
        device_access_evaluate(p, other, &d3, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_DENIED, "another user: denied");
        device_access_evaluate(none, root, &d6, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_ALLOWED && a.modes == 7 && a.managed, "root without rules: everything");
        device_access_evaluate(p, root, &d5, &a, &scratch);
        CHECK_MSG(a.level == DEVICE_ACCESS_DENIED, "a rule denying root is honoured");
}

static void test_cache(void) {
        _cleanup_(policy_freep) Policy *deny = load("{ \"rules\": [] }");
        _cleanup_(policy_freep) Policy *allow = load(
                "{ \"rules\": [ { \"principals\": { \"users\": [1001] }, \"modes\": [\"attached\"] } ] }");
        _cleanup_(access_cache_freep) AccessCache *c = access_cache_new();
        _cleanup_(principal_freep) Principal *user = make_principal(1001, 1001, NULL);
        _cleanup_(principal_freep) Principal *same = make_principal(1001, 1001, NULL);
        _cleanup_(principal_freep) Principal *in_unit = make_principal(1001, 1001, "vm.service");
        Device devices[3] = { make_device("0000:03:00.0", 3), make_device("0000:04:00.0", 4),
                              make_device("0000:05:00.0", 5) };
        DeviceAccess a;

        CHECK(c);
        CHECK(principal_same_to_policy(user, same));
        CHECK(!principal_same_to_policy(user, in_unit));

        for (size_t i = 0; i < 3; i++) {
                access_cache_get(c, deny, user, &devices[i], i, 3, &a);
                CHECK_MSG(a.level == DEVICE_ACCESS_DENIED && a.reason && strstr(a.reason, devices[i].address),
                          "%s denied before the reload, reason names it", devices[i].address);
        }
        /* Cached: asking against another policy without a flush still says
         * the old answer; that is why the manager flushes on reload. */
        access_cache_get(c, allow, same, &devices[0], 0, 3, &a);
        CHECK_MSG(a.level == DEVICE_ACCESS_DENIED, "answer cached for an equal principal");

        access_cache_flush(c);
        for (size_t i = 0; i < 3; i++) {
                access_cache_get(c, allow, user, &devices[i], i, 3, &a);
                CHECK_MSG(a.level == DEVICE_ACCESS_ALLOWED && a.modes == 1u << ACQUIRE_MODE_ATTACHED && !a.reason,
                          "%s allowed after the reload", devices[i].address);
        }

        /* More principals than entries: still right, just recomputed. */
        for (uid_t uid = 2000; uid < 2020; uid++) {
                _cleanup_(principal_freep) Principal *p = make_principal(uid, uid, NULL);
                access_cache_get(c, allow, p, &devices[1], 1, 3, &a);
                CHECK_MSG(a.level == DEVICE_ACCESS_DENIED, "uid %u denied", (unsigned) uid);
        }
        access_cache_get(c, allow, user, &devices[1], 1, 3, &a);
        CHECK_MSG(a.level == DEVICE_ACCESS_ALLOWED, "evicted principal recomputed");

        /* An index outside the inventory is evaluated, not cached. */
        access_cache_get(c, allow, user, &devices[2], SIZE_MAX, 3, &a);
        CHECK_MSG(a.level == DEVICE_ACCESS_ALLOWED, "uncached lookup");
        access_cache_get(c, allow, NULL, &devices[2], 2, 3, &a);
        CHECK_MSG(a.level == DEVICE_ACCESS_DENIED, "no principal: denied");
}

/* Many devices, two principals taking turns, runs of devices denied (each
 * with its own reason), needing polkit (one action) or without a rule: each
 * answer stays its own device's, however the cache stores them. */
static void test_cache_many(void) {
        _cleanup_(policy_freep) Policy *p = load(
                "{ \"rules\": ["
                "  { \"devices\": { \"id\": \"1b36:10d3\" }, \"principals\": { \"users\": [1001] },"
                "    \"allow\": false },"
                "  { \"devices\": { \"id\": \"1af4:10d3\" }, \"principals\": { \"users\": [1001] },"
                "    \"polkit\": true }"
                "] }");
        _cleanup_(access_cache_freep) AccessCache *c = access_cache_new();
        _cleanup_(principal_freep) Principal *user = make_principal(1001, 1001, NULL);
        _cleanup_(principal_freep) Principal *other = make_principal(1002, 1002, NULL);
        enum { N = 40 };
        Device devices[N];
        unsigned wrong = 0;

        for (size_t i = 0; i < N; i++) {
                char address[16];

                snprintf(address, sizeof(address), "0000:%02zx:00.0", i + 16);
                devices[i] = make_device(address, (int) i);
                /* Runs of a model: 8 denied by rule, 8 polkit, 8 without a rule, ... */
                devices[i].vendor_id = (i / 8) % 3 == 0 ? 0x1b36 : (i / 8) % 3 == 1 ? 0x1af4 : 0x8086;
        }
        for (int round = 0; round < 2; round++)
                for (size_t i = 0; i < N; i++)
                        for (int who = 0; who < 2; who++) {
                                const Principal *viewer = who ? other : user;
                                DeviceAccess a, fresh;
                                DeviceAccessScratch scratch;

                                access_cache_get(c, p, viewer, &devices[i], i, N, &a);
                                device_access_evaluate(p, viewer, &devices[i], &fresh, &scratch);
                                if (a.level != fresh.level || a.modes != fresh.modes || a.managed != fresh.managed ||
                                    !streq_ptr(a.reason, fresh.reason) || !streq_ptr(a.reason_json, fresh.reason_json) ||
                                    !streq_ptr(a.polkit_action, fresh.polkit_action))
                                        wrong++;
                        }
        CHECK_MSG(wrong == 0, "40 devices, 2 principals, 2 rounds: every cached answer is the evaluated one (%u wrong)",
                  wrong);
}

static void test_json_quote(void) {
        char buf[64];

        CHECK(json_quote("plain", buf, sizeof(buf)) && streq(buf, "\"plain\""));
        CHECK(json_quote("a\"b\\c\n", buf, sizeof(buf)) && streq(buf, "\"a\\\"b\\\\c\\u000a\""));
        CHECK(json_quote("caf\xc3\xa9", buf, sizeof(buf)) && streq(buf, "\"caf\xc3\xa9\""));
        CHECK(json_quote("bad\xff", buf, sizeof(buf)) && streq(buf, "\"bad\\ufffd\""));
        CHECK(!json_quote("far too long for eight", buf, 8));
}

int main(void) {
        test_evaluate();
        test_cache();
        test_cache_many();
        test_json_quote();
        return test_result();
}
