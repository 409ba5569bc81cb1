/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>

#include "policy.h"
#include "test.h"

static Device make_device(const char *address, uint16_t vendor, uint16_t device, uint32_t class, int group) {
        Device d = { .vendor_id = vendor, .device_id = device, .class = class, .iommu_group = group };

        snprintf(d.address, sizeof(d.address), "%s", address);
        return d;
}

/* pid 0 keeps principal_new() from looking up a unit: tests say which unit. */
static Principal *make_principal(uid_t uid, gid_t gid, const gid_t *groups, size_t n, const char *unit) {
        Principal *p = NULL;

        if (principal_new(uid, gid, 0, -EBADF, groups, n, unit, &p) < 0) {
                printf("FAIL: principal_new()\n");
                exit(1);
        }
        return p;
}

/* Load json as "t"; returns the result and the error text (caller frees). */
static int load(const char *json, Policy **ret, char **errors) {
        size_t size = 0;
        FILE *f = open_memstream(errors, &size);
        int r;

        r = policy_load_string(json, "t", f, ret);
        fclose(f);
        return r;
}

static size_t count_lines(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

/* A document that must be refused with an error line containing `expected`. */
static void expect_error(const char *json, const char *expected) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *errors = NULL;
        int r = load(json, &p, &errors);

        CHECK_MSG(r == -EINVAL && p == NULL && strstr(errors, expected),
                  "refused (%d) with \"%s\"; got: %.*s", r, expected, (int) strcspn(errors, "\n"), errors);
}

static Policy *load_ok(const char *json) {
        _cleanup_free_ char *errors = NULL;
        Policy *p = NULL;
        int r = load(json, &p, &errors);

        CHECK_MSG(r == 0 && p, "loads (%d) %s", r, errors);
        if (!p)
                exit(1);
        return p;
}

static void test_modes(void) {
        CHECK_MSG(streq_ptr(acquire_mode_to_string(ACQUIRE_MODE_BOUND), "bound"), "mode to string");
        CHECK_MSG(acquire_mode_to_string(_ACQUIRE_MODE_MAX) == NULL, "out-of-range mode has no name");
        CHECK_MSG(acquire_mode_from_string("attached") == ACQUIRE_MODE_ATTACHED, "mode from string");
        CHECK_MSG(acquire_mode_from_string("Attached") == _ACQUIRE_MODE_INVALID, "mode names are exact");
        CHECK_MSG(acquire_mode_from_string(NULL) == _ACQUIRE_MODE_INVALID, "NULL mode is invalid");
}

static void test_good_document(void) {
        _cleanup_(policy_freep) Policy *p = load_ok(
                "{ \"comment\": \"test\", \"rules\": ["
                "  { \"comment\": \"all keys\","
                "    \"devices\": { \"address\": [\"0000:03:*\", \"4:00.0\"], \"id\": \"8086:10D3\","
                "                   \"class\": [\"0x0200*\"], \"iommu_group\": [5, 6] },"
                "    \"principals\": { \"users\": [\"root\", 1000], \"groups\": [\"users\", 36],"
                "                      \"units\": \"vm-*.service\" },"
                "    \"allow\": true, \"modes\": [\"unbound\", \"bound\"], \"managed\": true,"
                "    \"polkit\": \"org.example.vm\" },"
                "  { \"principals\": { \"users\": 1000 }, \"polkit\": true },"
                "  { \"principals\": { \"groups\": \"users\" }, \"allow\": false, \"polkit\": false }"
                "] }");

        CHECK_MSG(policy_n_rules(p) == 3, "three rules (%zu)", policy_n_rules(p));
        _cleanup_(policy_freep) Policy *empty = load_ok("{ \"rules\": [] }");
        CHECK_MSG(policy_n_rules(empty) == 0, "empty rules list is fine");
}

static void test_bad_documents(void) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *errors = NULL;
        int r;

#define RULE(x) "{ \"rules\": [ { \"principals\": { \"users\": [1000] }, " x " } ] }"
        expect_error("{ \"rules\": [ ", "t: line 1 column");
        expect_error("[]", "t: the top level must be an object");
        expect_error("{ }", "t: no \"rules\" list");
        expect_error("{ \"rules\": {} }", "t: \"rules\" must be a list");
        expect_error("{ \"rules\": [], \"rulez\": 1 }", "t: unknown top-level key \"rulez\"");
        expect_error("{ \"rules\": [ 5 ] }", "t: rule 1: a rule must be an object");
        expect_error(RULE("\"foo\": 1"), "t: rule 1: unknown key \"foo\"");
        expect_error(RULE("\"allow\": true, \"allow\": false"), "duplicate");
        expect_error("{ \"rules\": [ { \"allow\": true } ] }", "t: rule 1: no \"principals\"");
        expect_error(RULE("\"allow\": \"yes\""), "t: rule 1: \"allow\" must be true or false");
        expect_error(RULE("\"managed\": 1"), "t: rule 1: \"managed\" must be true or false");
        expect_error(RULE("\"comment\": 7"), "t: rule 1: \"comment\" must be a string");
        expect_error(RULE("\"modes\": [\"unbound\", \"frozen\"]"), "t: rule 1: \"modes\": unknown mode \"frozen\"");
        expect_error(RULE("\"modes\": []"), "t: rule 1: \"modes\" must not be an empty list");
        expect_error(RULE("\"modes\": [1]"), "t: rule 1: \"modes\" must be a string or a list of strings");
        expect_error(RULE("\"polkit\": \"Not An Action\""), "t: rule 1: \"polkit\" must be true, false or");
        expect_error(RULE("\"devices\": {}"), "t: rule 1: \"devices\" must not be empty");
        expect_error(RULE("\"devices\": []"), "t: rule 1: \"devices\" must be an object");
        expect_error(RULE("\"devices\": { \"vendor\": \"8086\" }"), "t: rule 1: unknown key \"vendor\" in \"devices\"");
        expect_error(RULE("\"devices\": { \"address\": \"0000:0[3:*\" }"), "t: rule 1: \"address\": bad glob \"0000:0[3:*\"");
        expect_error(RULE("\"devices\": { \"address\": \"0000:03:*]\" }"), "bad glob \"0000:03:*]\"");
        expect_error(RULE("\"devices\": { \"address\": \"eth0\" }"), "t: rule 1: \"address\": \"eth0\" is not a PCI address");
        expect_error(RULE("\"devices\": { \"address\": [] }"), "t: rule 1: \"address\" must not be an empty list");
        expect_error(RULE("\"devices\": { \"id\": \"8086\" }"), "t: rule 1: \"id\": \"8086\" is not vendor:device");
        expect_error(RULE("\"devices\": { \"id\": [\"8086:10d3\", \"8086:10d\"] }"), "\"id\": \"8086:10d\" is not vendor:device");
        expect_error(RULE("\"devices\": { \"class\": \"0200*\" }"), "t: rule 1: \"class\": \"0200*\" is not a class glob");
        expect_error(RULE("\"devices\": { \"class\": \"0x02000\" }"), "\"class\": \"0x02000\" is not a class glob");
        expect_error(RULE("\"devices\": { \"iommu_group\": -1 }"), "t: rule 1: \"iommu_group\" must be one or a list of IOMMU group numbers");
        expect_error(RULE("\"devices\": { \"iommu_group\": \"5\" }"), "\"iommu_group\" must be one or a list of IOMMU group numbers");
        expect_error("{ \"rules\": [ { \"principals\": {} } ] }", "t: rule 1: \"principals\" must not be empty");
        expect_error("{ \"rules\": [ { \"principals\": { \"user\": [1] } } ] }", "t: rule 1: unknown key \"user\" in \"principals\"");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [\"no-such-user-xyz\"] } } ] }",
                     "t: rule 1: \"users\": unknown user \"no-such-user-xyz\"");
        expect_error("{ \"rules\": [ { \"principals\": { \"groups\": \"no-such-group-xyz\" } } ] }",
                     "t: rule 1: \"groups\": unknown group \"no-such-group-xyz\"");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [true] } } ] }", "\"users\" must be one or a list of user names or uids");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [] } } ] }", "\"users\" must not be an empty list");
        expect_error("{ \"rules\": [ { \"principals\": { \"units\": [\"vm-[.service\"] } } ] }", "\"units\": bad unit glob \"vm-[.service\"");

        /* Every error is reported, not just the first, with the right rule number. */
        r = load("{ \"rules\": ["
                 "  { \"principals\": { \"users\": [1000] }, \"allow\": 1, \"modes\": [\"x\"] },"
                 "  { \"principals\": { \"users\": [1000] } },"
                 "  { \"devices\": { \"id\": \"zz:1\" } }"
                 "] }", &p, &errors);
        CHECK_MSG(r == -EINVAL && count_lines(errors) == 4, "four errors reported (%zu):\n%s", count_lines(errors), errors);
        CHECK_MSG(strstr(errors, "t: rule 1: \"allow\"") && strstr(errors, "t: rule 1: \"modes\"") &&
                  strstr(errors, "t: rule 3: \"id\"") && strstr(errors, "t: rule 3: no \"principals\"") &&
                  !strstr(errors, "rule 2"), "errors name rules 1 and 3, not 2");
#undef RULE
}

static PolicyVerdict check(const Policy *p, const Principal *who, const Device *d, AcquireMode m, bool managed,
                           PolicyDecision *dec) {
        policy_check(p, who, d, m, managed, dec);
        return dec->verdict;
}

static void test_device_matching(void) {
        _cleanup_(policy_freep) Policy *p = load_ok(
                "{ \"rules\": ["
                "  { \"devices\": { \"address\": \"0000:03:*\" }, \"principals\": { \"users\": [1000] } },"
                "  { \"devices\": { \"address\": \"5:00.0\" }, \"principals\": { \"users\": [1000] } },"
                "  { \"devices\": { \"id\": [\"1af4:*\", \"8086:10d3\"] }, \"principals\": { \"users\": [1000] } },"
                "  { \"devices\": { \"class\": \"0x0300*\" }, \"principals\": { \"users\": [1000] } },"
                "  { \"devices\": { \"iommu_group\": [40, 41] }, \"principals\": { \"users\": [1000] } },"
                "  { \"devices\": { \"address\": \"0000:09:*\", \"id\": \"10de:*\" }, \"principals\": { \"users\": [1000] } }"
                "] }");
        _cleanup_(principal_freep) Principal *alice = make_principal(1000, 1000, NULL, 0, NULL);
        PolicyDecision dec;
        Device d;

        d = make_device("0000:03:00.1", 0x15b3, 0x1017, 0x020000, 7);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 1"),
                  "address glob matches 0000:03:00.1 (%s)", dec.rule);
        d = make_device("0000:05:00.0", 0x15b3, 0x1017, 0x020000, 7);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 2"),
                  "short literal address 5:00.0 matches 0000:05:00.0 (%s)", dec.rule);
        d = make_device("0000:06:00.0", 0x1af4, 0x1041, 0x020000, 7);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 3"),
                  "id glob 1af4:* matches (%s)", dec.rule);
        d = make_device("0000:06:00.0", 0x8086, 0x10d3, 0x020000, 7);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 3"),
                  "exact id 8086:10d3 matches (%s)", dec.rule);
        d = make_device("0000:06:00.0", 0x8086, 0x10d4, 0x030000, 7);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 4"),
                  "class glob 0x0300* matches 0x030000 (%s)", dec.rule);
        d = make_device("0000:06:00.0", 0x8086, 0x10d4, 0x020000, 41);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 5"),
                  "iommu_group 41 matches (%s)", dec.rule);
        d = make_device("0000:06:00.0", 0x8086, 0x10d4, 0x020000, -1);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY &&
                  streq(dec.reason, "no policy rule grants uid 1000 access to 0000:06:00.0"),
                  "nothing matches: %s", dec.reason);
        /* Device matchers are ANDed: the right address alone is not enough. */
        d = make_device("0000:09:00.0", 0x8086, 0x10d4, 0x020000, 9);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY,
                  "address matches but id does not: denied (%s)", dec.rule);
        d = make_device("0000:09:00.0", 0x10de, 0x2204, 0x020000, 9);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 6"),
                  "address and id both match (%s)", dec.rule);
}

static void test_principal_matching(void) {
        struct passwd *pw = getpwnam("daemon");
        struct group *gr = getgrnam("users");
        _cleanup_(policy_freep) Policy *p = load_ok(
                "{ \"rules\": ["
                "  { \"principals\": { \"users\": [\"daemon\"] }, \"comment\": \"by name\" },"
                "  { \"principals\": { \"users\": 2000 } },"
                "  { \"principals\": { \"groups\": [\"users\"] } },"
                "  { \"principals\": { \"units\": [\"vm-*.service\", \"qemu@*.scope\"] } }"
                "] }");
        Device d = make_device("0000:03:00.0", 0x8086, 0x10d3, 0x020000, 5);
        PolicyDecision dec;

        if (!pw || !gr) {
                printf("FAIL: test needs user \"daemon\" and group \"users\"\n");
                test_failures++;
                return;
        }
        gid_t supp[] = { 7, gr->gr_gid };
        _cleanup_(principal_freep) Principal *by_name = make_principal(pw->pw_uid, 4000, NULL, 0, NULL);
        _cleanup_(principal_freep) Principal *by_uid = make_principal(2000, 4000, NULL, 0, NULL);
        _cleanup_(principal_freep) Principal *supp_member = make_principal(3000, 4000, supp, 2, NULL);
        _cleanup_(principal_freep) Principal *primary_member = make_principal(3000, gr->gr_gid, NULL, 0, NULL);
        _cleanup_(principal_freep) Principal *in_unit = make_principal(3000, 4000, NULL, 0, "vm-7.service");
        _cleanup_(principal_freep) Principal *in_scope = make_principal(3000, 4000, NULL, 0, "qemu@a.scope");
        _cleanup_(principal_freep) Principal *other_unit = make_principal(3000, 4000, NULL, 0, "vm-7.scope");
        _cleanup_(principal_freep) Principal *nobody = make_principal(3000, 4000, NULL, 0, NULL);

        CHECK_MSG(check(p, by_name, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 1"),
                  "user name \"daemon\" matches uid %u (%s)", pw->pw_uid, dec.rule);
        CHECK_MSG(check(p, by_uid, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 2"),
                  "uid 2000 matches (%s)", dec.rule);
        CHECK_MSG(check(p, supp_member, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW &&
                  streq(dec.rule, "t rule 3"), "supplementary group \"users\" matches (%s)", dec.rule);
        CHECK_MSG(check(p, primary_member, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW &&
                  streq(dec.rule, "t rule 3"), "primary group \"users\" matches (%s)", dec.rule);
        CHECK_MSG(check(p, in_unit, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 4"),
                  "unit vm-7.service matches vm-*.service (%s)", dec.rule);
        CHECK_MSG(check(p, in_scope, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && streq(dec.rule, "t rule 4"),
                  "unit qemu@a.scope matches second glob (%s)", dec.rule);
        CHECK_MSG(check(p, other_unit, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY,
                  "unit vm-7.scope does not match: %s", dec.reason);
        CHECK_MSG(check(p, nobody, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY &&
                  streq(dec.reason, "no policy rule grants uid 3000 access to 0000:03:00.0"), "no unit, no match: %s",
                  dec.reason);
}

static void test_verdicts(void) {
        _cleanup_(policy_freep) Policy *p = load_ok(
                "{ \"rules\": ["
                "  { \"devices\": { \"address\": \"0000:01:00.0\" }, \"principals\": { \"users\": [1000, 0] }, \"allow\": false },"
                "  { \"devices\": { \"address\": \"0000:01:*\" }, \"principals\": { \"users\": [1000] } },"
                "  { \"devices\": { \"address\": \"0000:02:*\" }, \"principals\": { \"users\": [1000] },"
                "    \"modes\": [\"unbound\", \"bound\"] },"
                "  { \"devices\": { \"address\": \"0000:03:*\" }, \"principals\": { \"users\": [1000] }, \"managed\": true },"
                "  { \"devices\": { \"address\": \"0000:04:*\" }, \"principals\": { \"users\": [1000] }, \"polkit\": true },"
                "  { \"devices\": { \"address\": \"0000:05:*\" }, \"principals\": { \"users\": [1000] },"
                "    \"polkit\": \"org.example.gpu\", \"managed\": true }"
                "] }");
        _cleanup_(principal_freep) Principal *alice = make_principal(1000, 1000, NULL, 0, NULL);
        _cleanup_(principal_freep) Principal *root = make_principal(0, 0, NULL, 0, NULL);
        PolicyDecision dec;
        Device d;

        d = make_device("0000:01:00.0", 0x8086, 0x10d3, 0x020000, 1);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY &&
                  streq(dec.rule, "t rule 1") && streq(dec.reason, "t rule 1 denies uid 1000 access to 0000:01:00.0"),
                  "deny rule wins over a later allow: %s", dec.reason);
        CHECK_MSG(check(p, root, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY, "a deny rule applies to root too");
        d = make_device("0000:01:00.1", 0x8086, 0x10d3, 0x020000, 1);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && !dec.managed_allowed &&
                  !dec.polkit_action && streq(dec.rule, "t rule 2"), "next function is allowed, unmanaged (%s)", dec.rule);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, true, &dec) == POLICY_DENY &&
                  streq(dec.reason, "t rule 2 does not allow managed acquire (driver rebinding) of 0000:01:00.1"),
                  "managed not allowed: %s", dec.reason);

        d = make_device("0000:02:00.0", 0x8086, 0x10d3, 0x020000, 2);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_BOUND, false, &dec) == POLICY_ALLOW, "mode bound allowed");
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_DENY &&
                  streq(dec.reason, "t rule 3 allows modes unbound,bound; attached was asked"), "mode attached: %s",
                  dec.reason);

        d = make_device("0000:03:00.0", 0x8086, 0x10d3, 0x020000, 3);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, true, &dec) == POLICY_ALLOW && dec.managed_allowed,
                  "managed allowed when asked");
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW && dec.managed_allowed,
                  "managed_allowed reported even when not asked");

        d = make_device("0000:04:00.0", 0x8086, 0x10d3, 0x020000, 4);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec) == POLICY_ALLOW_WITH_POLKIT &&
                  streq_ptr(dec.polkit_action, "io.iommufd.broker.acquire"), "polkit: true -> default action %s",
                  strna(dec.polkit_action));
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_ATTACHED, true, &dec) == POLICY_DENY,
                  "polkit rule still refuses managed when not allowed");
        d = make_device("0000:05:00.0", 0x8086, 0x10d3, 0x020000, 5);
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, true, &dec) == POLICY_ALLOW_WITH_POLKIT &&
                  streq_ptr(dec.polkit_action, "org.example.gpu") && dec.managed_allowed, "custom polkit action %s",
                  strna(dec.polkit_action));

        /* Built-in default: root may do everything, others nothing. */
        d = make_device("0000:06:00.0", 0x8086, 0x10d3, 0x020000, 6);
        CHECK_MSG(check(p, root, &d, ACQUIRE_MODE_ATTACHED, true, &dec) == POLICY_ALLOW && dec.managed_allowed &&
                  dec.rule, "root default: allowed, managed (%s)", strna(dec.rule));
        CHECK_MSG(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, false, &dec) == POLICY_DENY &&
                  streq(dec.reason, "no policy rule grants uid 1000 access to 0000:06:00.0"), "others denied: %s",
                  dec.reason);
        CHECK_MSG(check(p, alice, &d, (AcquireMode) 7, false, &dec) == POLICY_DENY, "invalid mode denied");
}

static void write_file(const char *dir, const char *name, const char *text) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                printf("FAIL: cannot write %s\n", path);
                exit(1);
        }
}

#define ALLOW_1000(addr) "{ \"rules\": [ { \"devices\": { \"address\": \"" addr "\" }, " \
                         "\"principals\": { \"users\": [1000] } } ] }"

static void test_files(void) {
        char tmp[] = "/tmp/test-policy-XXXXXX", main_path[64], dropins[64], bad[256];
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_(principal_freep) Principal *alice = make_principal(1000, 1000, NULL, 0, NULL);
        _cleanup_free_ char *errors = NULL;
        size_t size = 0;
        PolicyDecision dec;
        Device d;
        FILE *f;
        int r;

        if (!mkdtemp(tmp)) {
                printf("FAIL: mkdtemp\n");
                test_failures++;
                return;
        }
        snprintf(main_path, sizeof(main_path), "%s/policy.json", tmp);
        snprintf(dropins, sizeof(dropins), "%s/policy.d", tmp);

        r = policy_load(main_path, dropins, stderr, &p);
        CHECK_MSG(r == 0 && policy_n_rules(p) == 0, "missing file and dir: built-in default (%d)", r);
        p = policy_free(p);

        mkdir(dropins, 0755);
        write_file(tmp, "policy.json", ALLOW_1000("0000:01:00.0"));
        write_file(dropins, "20-b.json", ALLOW_1000("0000:0[12]:00.0"));
        write_file(dropins, "10-a.json", ALLOW_1000("0000:0[123]:00.0"));
        write_file(dropins, "README", "not json");
        write_file(dropins, ".hidden.json", "not json");
        snprintf(bad, sizeof(bad), "%s/30-masked.json", dropins);
        CHECK_MSG(symlink("/dev/null", bad) == 0, "masked drop-in created");

        r = policy_load(main_path, dropins, stderr, &p);
        CHECK_MSG(r == 0 && policy_n_rules(p) == 3, "main + 2 drop-ins: %zu rules (%d)", policy_n_rules(p), r);
        d = make_device("0000:01:00.0", 0x8086, 0x10d3, 0x020000, 1);
        policy_check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec);
        CHECK_MSG(streq(dec.rule, "policy.json rule 1"), "main file first: %s", dec.rule);
        d = make_device("0000:02:00.0", 0x8086, 0x10d3, 0x020000, 1);
        policy_check(p, alice, &d, ACQUIRE_MODE_ATTACHED, false, &dec);
        CHECK_MSG(streq(dec.rule, "policy.d/10-a.json rule 1"), "then drop-ins by name: %s", dec.rule);
        p = policy_free(p);

        /* Errors in two files: both reported, with their paths. */
        write_file(tmp, "policy.json", "{ \"rules\": [ { \"principals\": { \"users\": [1000] }, \"x\": 1 } ] }");
        write_file(dropins, "20-b.json", "{ \"rules\": [ {}, { \"principals\": { \"units\": [] } } ] }");
        f = open_memstream(&errors, &size);
        r = policy_load(main_path, dropins, f, &p);
        fclose(f);
        CHECK_MSG(r == -EINVAL && !p, "broken files refused (%d)", r);
        snprintf(bad, sizeof(bad), "%s: rule 1: unknown key \"x\"", main_path);
        CHECK_MSG(strstr(errors, bad) != NULL, "error names main file: %s", bad);
        snprintf(bad, sizeof(bad), "%s/20-b.json: rule 2: \"units\" must not be an empty list", dropins);
        CHECK_MSG(strstr(errors, bad) != NULL, "error names drop-in: %s", bad);
        CHECK_MSG(count_lines(errors) == 3, "three error lines:\n%s", errors);

        /* A FIFO or a directory named *.json: an error, not a daemon hung in
         * open() on the next reload. */
        write_file(tmp, "policy.json", ALLOW_1000("0000:01:00.0"));
        write_file(dropins, "20-b.json", ALLOW_1000("0000:0[12]:00.0"));
        snprintf(bad, sizeof(bad), "%s/40-fifo.json", dropins);
        CHECK_MSG(mkfifo(bad, 0644) == 0, "FIFO drop-in created");
        snprintf(bad, sizeof(bad), "%s/50-dir.json", dropins);
        CHECK_MSG(mkdir(bad, 0755) == 0, "directory drop-in created");
        errors = (free(errors), NULL);
        f = open_memstream(&errors, &size);
        r = policy_load(main_path, dropins, f, &p);
        fclose(f);
        CHECK_MSG(r == -EINVAL && !p, "FIFO and directory drop-ins refused (%d)", r);
        snprintf(bad, sizeof(bad), "%s/40-fifo.json: cannot read: not a regular file", dropins);
        CHECK_MSG(strstr(errors, bad) != NULL, "error names the FIFO: %s", errors);
        snprintf(bad, sizeof(bad), "%s/50-dir.json: cannot read: not a regular file", dropins);
        CHECK_MSG(strstr(errors, bad) != NULL, "error names the directory: %s", errors);

        snprintf(bad, sizeof(bad), "rm -rf '%s'", tmp);
        if (system(bad) != 0)
                printf("note: could not remove %s\n", tmp);
}

static void test_memlock(void) {
        _cleanup_(policy_freep) Policy *p = load_ok(
                "{ \"memlock_accounting\": \"user\", \"rules\": ["
                "  { \"devices\": { \"address\": \"0000:01:*\" }, \"principals\": { \"users\": [1000] },"
                "    \"memlock\": \"16G\" },"
                "  { \"devices\": { \"address\": \"0000:02:*\" }, \"principals\": { \"users\": [1000] },"
                "    \"memlock\": 1048576 },"
                "  { \"devices\": { \"address\": \"0000:03:*\" }, \"principals\": { \"users\": [1000] },"
                "    \"memlock\": \"unlimited\", \"polkit\": true, \"managed\": true },"
                "  { \"devices\": { \"address\": \"0000:04:*\" }, \"principals\": { \"users\": [1000] } }"
                "] }");
        _cleanup_(policy_freep) Policy *plain = load_ok("{ \"rules\": [] }");
        _cleanup_(principal_freep) Principal *alice = make_principal(1000, 1000, NULL, 0, NULL);
        PolicyDecision dec;
        Device d;

        CHECK_INT(policy_memlock_accounting(p), MEMLOCK_ACCOUNTING_USER);
        CHECK_INT(policy_memlock_accounting(plain), MEMLOCK_ACCOUNTING_PROCESS);
        CHECK_INT(policy_memlock_accounting(NULL), MEMLOCK_ACCOUNTING_PROCESS);

        d = make_device("0000:01:00.0", 0x8086, 0x10d3, 0x020000, 1);
        CHECK(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, false, &dec) == POLICY_ALLOW);
        CHECK_INT(dec.memlock, 16ULL << 30);
        d = make_device("0000:02:00.0", 0x8086, 0x10d3, 0x020000, 2);
        CHECK(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, false, &dec) == POLICY_ALLOW);
        CHECK_INT(dec.memlock, 1048576);
        d = make_device("0000:03:00.0", 0x8086, 0x10d3, 0x020000, 3);
        CHECK(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, true, &dec) == POLICY_ALLOW_WITH_POLKIT);
        CHECK(dec.memlock == MEMLOCK_UNLIMITED);
        CHECK_MSG(streq_ptr(dec.polkit_action, "io.iommufd.broker.acquire-managed"),
                  "polkit: true and managed -> %s", strna(dec.polkit_action));
        d = make_device("0000:04:00.0", 0x8086, 0x10d3, 0x020000, 4);
        CHECK(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, false, &dec) == POLICY_ALLOW);
        CHECK_INT(dec.memlock, 0);
        /* A denied request grants no memlock. */
        d = make_device("0000:01:00.0", 0x8086, 0x10d3, 0x020000, 1);
        CHECK(check(p, alice, &d, ACQUIRE_MODE_UNBOUND, true, &dec) == POLICY_DENY);
        CHECK_INT(dec.memlock, 0);

        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [0] }, \"memlock\": \"lots\" } ] }",
                     "t: rule 1: \"memlock\" must be a positive number of bytes, a size like \"512M\"");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [0] }, \"memlock\": 0 } ] }",
                     "\"memlock\" must be a positive number");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [0] }, \"memlock\": -5 } ] }",
                     "\"memlock\" must be a positive number");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [0] }, \"memlock\": \"4GB\" } ] }",
                     "\"memlock\" must be a positive number");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [0] }, \"memlock\": true } ] }",
                     "\"memlock\" must be a positive number");
        expect_error("{ \"rules\": [ { \"principals\": { \"users\": [0] }, \"memlock\": \"99999999999T\" } ] }",
                     "\"memlock\": \"99999999999T\" is too large");
        expect_error("{ \"memlock_accounting\": \"mm\", \"rules\": [] }",
                     "t: \"memlock_accounting\" must be \"process\" or \"user\"");
        expect_error("{ \"memlock_accounting\": 1, \"rules\": [] }", "\"memlock_accounting\" must be");
}

int main(void) {
        test_modes();
        test_good_document();
        test_bad_documents();
        test_device_matching();
        test_principal_matching();
        test_verdicts();
        test_memlock();
        test_files();
        return test_result();
}
