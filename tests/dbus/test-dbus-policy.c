/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the policy does to D-Bus callers, on the private bus of
 * run-with-broker.sh (BROKER_POLICY is the policy.json in $DBUS_TEST_DIR):
 *
 *   reload   uid 65534 reads Access of two devices (one granted, one not),
 *            the policy file is rewritten to grant the other one and the
 *            broker gets SIGHUP: the client receives PropertiesChanged
 *            invalidating Access (and the rest of the per-caller access) on
 *            both, and reading again gives the new answers.
 *   memlock  uid 65534's rule says "memlock": with a bus that passes
 *            ProcessFD (dbus >= 1.15.8) the AcquireDevices reply carries
 *            memlock_limit and the caller's RLIMIT_MEMLOCK is raised; without
 *            it (no pidfd to raise it through; dbus 1.14 here) the call is
 *            refused with a typed error naming the reason, nothing leased.
 */
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbus-test-util.h"

#define NOBODY 65534
#define DEV_A "0000:00:02.0"
#define DEV_B "0000:00:03.0"

static char *device_path(sd_bus *bus, const char *address) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path = NULL;

        if (sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "GetDevice", &error,
                               &m, "s", address) < 0 ||
            sd_bus_message_read(m, "o", &path) < 0) {
                sd_bus_error_free(&error);
                return NULL;
        }
        return strdup(path);
}

static bool write_policy(const char *json) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/policy.json", getenv("DBUS_TEST_DIR"));
        f = fopen(path, "we");
        if (!f)
                return false;
        fputs(json, f);
        return fclose(f) == 0;
}

/* PropertiesChanged seen per path: which of them invalidated Access. */
typedef struct Seen {
        const char *path_a, *path_b;
        bool a, b, other_values;        /* other_values: access sent with a value, which is per caller */
} Seen;

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Seen *seen = userdata;
        const char *iface, *name, *path = sd_bus_message_get_path(m);
        bool access = false;
        int r;

        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || !streq(iface, DEVICE_IFACE))
                return 0;
        /* Changed values: the per-caller ones must never be among them. */
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                if (sd_bus_message_read(m, "s", &name) > 0 && streq(name, "Access"))
                        seen->other_values = true;
                (void) sd_bus_message_skip(m, "v");
                (void) sd_bus_message_exit_container(m);
        }
        (void) sd_bus_message_exit_container(m);
        r = sd_bus_message_enter_container(m, 'a', "s");
        while (r > 0 && (r = sd_bus_message_read(m, "s", &name)) > 0)
                access = access || streq(name, "Access");
        if (access && streq_ptr(path, seen->path_a))
                seen->a = true;
        if (access && streq_ptr(path, seen->path_b))
                seen->b = true;
        return 0;
}

/* In a child as uid 65534: 0 if everything held, else the failing step. */
static int reload_as_nobody(int ready_fd, int go_fd) {
        _cleanup_free_ char *path_a = NULL, *path_b = NULL;
        _cleanup_free_ char *a0 = NULL, *b0 = NULL, *a1 = NULL, *b1 = NULL;
        Seen seen = {};
        sd_bus *bus;
        char c = 0;

        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0)
                return 1;
        bus = connect_bus();
        if (!bus || !(path_a = device_path(bus, DEV_A)) || !(path_b = device_path(bus, DEV_B)))
                return 2;
        seen.path_a = path_a;
        seen.path_b = path_b;
        if (sd_bus_match_signal(bus, NULL, BROKER_DBUS_NAME, NULL, "org.freedesktop.DBus.Properties",
                                "PropertiesChanged", on_properties_changed, &seen) < 0)
                return 3;
        a0 = get_string(bus, path_a, "Access");
        b0 = get_string(bus, path_b, "Access");
        printf("  before: %s %s, %s %s\n", DEV_A, strna(a0), DEV_B, strna(b0));
        if (!streq_ptr(a0, "allowed") || !streq_ptr(b0, "denied"))
                return 4;

        if (write(ready_fd, "r", 1) != 1 || read(go_fd, &c, 1) != 1)
                return 5;
        for (int i = 0; i < 500 && !(seen.a && seen.b); i++) {
                int r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return 6;
                if (r == 0)
                        (void) sd_bus_wait(bus, 10000);
        }
        printf("  PropertiesChanged invalidating Access: %s %s, %s %s\n", DEV_A, seen.a ? "yes" : "no", DEV_B,
               seen.b ? "yes" : "no");
        if (!seen.a || !seen.b)
                return 7;
        if (seen.other_values)
                return 8;
        a1 = get_string(bus, path_a, "Access");
        b1 = get_string(bus, path_b, "Access");
        printf("  after: %s %s, %s %s\n", DEV_A, strna(a1), DEV_B, strna(b1));
        if (!streq_ptr(a1, "denied") || !streq_ptr(b1, "allowed"))
                return 9;
        sd_bus_flush_close_unref(bus);
        return 0;
}

static int scenario_reload(void) {
        int ready[2], go[2], status;
        pid_t child;
        char c;

        CHECK_MSG(getenv("BROKER_PID") && getenv("DBUS_TEST_DIR"), "BROKER_PID and DBUS_TEST_DIR set");
        CHECK_MSG(pipe2(ready, O_CLOEXEC) == 0 && pipe2(go, O_CLOEXEC) == 0, "pipes");
        if (test_failures)
                return -1;
        child = fork();
        if (child == 0) {
                int r = reload_as_nobody(ready[1], go[0]);
                fflush(stdout);
                _exit(r);
        }
        close(ready[1]);
        close(go[0]);
        CHECK_MSG(read(ready[0], &c, 1) == 1, "uid %d read the access before the reload", NOBODY);
        CHECK_MSG(write_policy("{ \"rules\": [ { \"devices\": { \"address\": \"" DEV_B "\" }, "
                               "\"principals\": { \"users\": [65534] } } ] }"),
                  "policy now grants %s instead of %s", DEV_B, DEV_A);
        CHECK_MSG(kill(atoi(getenv("BROKER_PID")), SIGHUP) == 0, "SIGHUP to the broker");
        CHECK_MSG(write(go[1], "g", 1) == 1, "child told");
        CHECK_MSG(waitpid(child, &status, 0) == child && WIFEXITED(status), "child exited");
        CHECK_MSG(WEXITSTATUS(status) == 0, "uid %d saw the invalidation and the new access (child's exit status %d: the failed step)",
                  NOBODY, WEXITSTATUS(status));
        return 0;
}

/* As uid 65534: root's calls are not judged by the rules. */
static int memlock_as_nobody(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        struct rlimit before, after;
        const char *unique = NULL;
        char *devices[] = { (char *) DEV_A, NULL };
        uint64_t memlock = 0;
        bool has_pidfd = false;
        int r;

        CHECK_MSG(setgroups(0, NULL) == 0 && setresgid(NOBODY, NOBODY, NOBODY) == 0 &&
                  setresuid(NOBODY, NOBODY, NOBODY) == 0, "became uid %d", NOBODY);
        bus = connect_bus();
        CHECK_MSG(bus && (path = device_path(bus, DEV_A)), "connected");
        if (test_failures)
                return -1;
        /* Does this bus attest ProcessFD? Ask it about ourselves. */
        r = sd_bus_get_unique_name(bus, &unique);
        if (r >= 0)
                r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetConnectionCredentials", &error, &reply, "s",
                                       unique);
        if (r >= 0 && sd_bus_message_enter_container(reply, 'a', "{sv}") > 0) {
                const char *key;
                while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                        if (sd_bus_message_read(reply, "s", &key) > 0 && streq(key, "ProcessFD"))
                                has_pidfd = true;
                        (void) sd_bus_message_skip(reply, "v");
                        (void) sd_bus_message_exit_container(reply);
                }
        }
        sd_bus_error_free(&error);
        printf("  the bus %s ProcessFD\n", has_pidfd ? "passes" : "does not pass (dbus < 1.15.8)");

        /* The policy raises to 64 MiB; start from 1 MiB under the hard limit. */
        CHECK_MSG(getrlimit(RLIMIT_MEMLOCK, &before) == 0, "getrlimit");
        before.rlim_cur = 1 << 20;
        CHECK_MSG(setrlimit(RLIMIT_MEMLOCK, &before) == 0, "soft memlock 1 MiB");

        r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           "AcquireDevices");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, devices);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 1, "mode", "s", "unbound");
        reply = sd_bus_message_unref(reply);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &error, &reply);

        if (!has_pidfd) {
                printf("  refused: %s: %s\n", strna(error.name), strna(error.message));
                CHECK_MSG(r < 0 && sd_bus_error_has_name(&error, ERR("KernelError")) && error.message &&
                                  strstr(error.message, "RLIMIT_MEMLOCK") && strstr(error.message, "no pidfd"),
                          "refused with KernelError naming the missing pidfd");
                CHECK_MSG(property_is(bus, path, "State", "available"), "nothing leased");
                sd_bus_error_free(&error);
                return 0;
        }

        CHECK_MSG(r >= 0, "AcquireDevices with a memlock rule (%s)", strna(error.message));
        sd_bus_error_free(&error);
        if (r < 0)
                return -1;
        /* h a(sha{sv}) a{sv}: the options at the end carry memlock_limit. */
        r = sd_bus_message_skip(reply, "ha(sha{sv})");
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r > 0 && sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                const char *key;

                if (sd_bus_message_read(reply, "s", &key) > 0 && streq(key, "memlock_limit"))
                        (void) sd_bus_message_read(reply, "v", "t", &memlock);
                else
                        (void) sd_bus_message_skip(reply, "v");
                (void) sd_bus_message_exit_container(reply);
        }
        CHECK_MSG(memlock == 64u << 20, "memlock_limit in the reply is 64 MiB (%" PRIu64 ")", memlock);
        CHECK_MSG(getrlimit(RLIMIT_MEMLOCK, &after) == 0 && after.rlim_cur >= 64u << 20,
                  "our soft RLIMIT_MEMLOCK was raised (%llu)", (unsigned long long) after.rlim_cur);
        return 0;
}

static int scenario_memlock(void) {
        int status;
        pid_t child = fork();

        if (child == 0) {
                int r = memlock_as_nobody();
                fflush(stdout);
                _exit(r < 0 || test_failures ? 1 : 0);
        }
        CHECK_MSG(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                  WEXITSTATUS(status) == 0, "uid %d's checks passed", NOBODY);
        return 0;
}

int main(int argc, char *argv[]) {
        if (!getenv("DBUS_TEST_ADDRESS")) {
                printf("skip: run through run-with-broker.sh\n");
                return 77;
        }
        if (argc == 2 && streq(argv[1], "reload"))
                scenario_reload();
        else if (argc == 2 && streq(argv[1], "memlock"))
                scenario_memlock();
        else {
                fprintf(stderr, "Usage: %s reload|memlock\n", argv[0]);
                return 2;
        }
        return test_result();
}
