/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * polkit over both front ends, against tests/dbus/fake-polkitd on the
 * private bus of run-with-broker.sh (broker with varlink too, a policy whose
 * rules require polkit, --polkit-timeout 2). In order: polkit absent, then
 * the fake answering allow, deny, challenge (with and without interactive
 * authentication: varlink parameter, D-Bus option, D-Bus message flag),
 * slowly (timeout), never (the client goes away while pending, on both
 * front ends), and too many checks of one uid in flight. run-with-broker.sh
 * then checks that the broker's fd count is back to where it started.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dbus-test-util.h"
#include "fake-polkit-util.h"
#include "iommufd-broker.h"

#define DEV_A "0000:00:02.0"
#define DEV_B "0000:00:08.0"
#define ACTION "io.iommufd.broker.acquire"
#define MAX_PENDING 16

static sd_bus *bus;

/* A lease ends once every fd of the device is closed (state "releasing"
 * until then): wait for that before the next scenario acquires it again. */
static void wait_available(const char *dev) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;

        CHECK_MSG(sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "GetDevice",
                                     NULL, &reply, "s", dev) >= 0 && sd_bus_message_read(reply, "o", &path) > 0 &&
                  wait_property(bus, path, "State", "available"), "%s is available again", dev);
}

/* --- varlink through the client library --- */

static const char *varlink_socket(void) {
        return getenv("VARLINK_TEST_SOCKET");
}

/* Acquire DEV in unbound mode on a new varlink connection; 0 or the error's short name in *ret_error. */
static int varlink_acquire(const char *dev, unsigned flags, char *ret_error, size_t size) {
        iommufd_broker *b = NULL;
        iommufd_broker_lease *l = NULL;
        const char *devs[] = { dev };
        int r;

        ret_error[0] = 0;
        r = iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, varlink_socket(), &b);
        if (r < 0)
                return r;
        r = iommufd_broker_acquire(b, devs, 1, IOMMUFD_BROKER_MODE_UNBOUND, flags, &l);
        if (r < 0)
                snprintf(ret_error, size, "%s: %s", strna(iommufd_broker_error_name(b)),
                         strna(iommufd_broker_error_message(b)));
        iommufd_broker_lease_free(l);
        iommufd_broker_disconnect(b);   /* ends the lease */
        if (r >= 0)
                wait_available(dev);
        return r;
}

static void expect_varlink(const char *dev, unsigned flags, const char *want_error, const char *what) {
        char error[512];
        int r = varlink_acquire(dev, flags, error, sizeof(error));

        if (!want_error)
                CHECK_MSG(r >= 0, "varlink: %s: acquired (%s)", what, error);
        else
                CHECK_MSG(r < 0 && strncmp(error, want_error, strlen(want_error)) == 0,
                          "varlink: %s: %s (got %d %s)", what, want_error, r, error);
}

/* A raw Acquire that nobody waits for: the connection, to close later. */
static int varlink_send_acquire(const char *dev) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char msg[256];
        int fd, n;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", varlink_socket());
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        n = snprintf(msg, sizeof(msg),
                     "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[\"%s\"],"
                     "\"mode\":\"unbound\"}}", dev);
        if (write(fd, msg, (size_t) n + 1) != n + 1)
                return -errno;
        return fd;
}

/* --- D-Bus, raw --- */

static void expect_dbus(const char *dev, const char *key, int value, const char *want_error,
                        const char *what) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *devices[] = { (char *) dev, NULL };
        Acquired a = {};
        int r;

        r = acquire(bus, devices, key ?: "mode", key ? "b" : "s", key ? (const void *) &value : "unbound", &error, &a);
        if (!want_error) {
                CHECK_MSG(r >= 0, "D-Bus: %s: acquired (%s)", what, strna(error.message));
                sd_bus_error_free(&error);
                if (r >= 0) {
                        acquired_done(&a);
                        CHECK_MSG(release(bus, devices, NULL) >= 0, "D-Bus: release after %s", what);
                        wait_available(dev);
                }
        } else
                check_error(r, &error, want_error, what);
}

/* AcquireDevices with only the ALLOW_INTERACTIVE_AUTHORIZATION header flag. */
static int dbus_acquire_flag(const char *dev, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        char *devices[] = { (char *) dev, NULL };
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           "AcquireDevices");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, devices);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 1, "mode", "s", "unbound");
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(m, true);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, error, &reply);
        reply = sd_bus_message_unref(reply);    /* with the fds it holds */
        if (r >= 0)
                r = release(bus, devices, NULL);
        if (r >= 0)
                wait_available(dev);
        return r;
}

/* --- scenarios --- */

static void test_absent(void) {
        expect_varlink(DEV_A, 0, "AuthorizationUnavailable", "polkit absent");
        expect_dbus(DEV_A, NULL, 0, ERR("AuthorizationUnavailable"), "D-Bus: polkit absent");
}

static void test_allow_deny(void) {
        char want[128];

        set_mode("allow");
        expect_varlink(DEV_A, 0, NULL, "polkit allows");
        snprintf(want, sizeof(want), "pid=%d ", (int) getpid());
        CHECK_MSG(last_check_has("check " ACTION " ") && last_check_has(want), "varlink: subject pid, action");
        snprintf(want, sizeof(want), "uid=%u ", (unsigned) getuid());
        CHECK_MSG(last_check_has(want), "varlink: subject uid");
        snprintf(want, sizeof(want), "pidfd-pid=%d ", (int) getpid());
        CHECK_MSG(last_check_has(want), "varlink: subject pidfd names the caller");
        CHECK_MSG(!last_check_has("start-time=0 "), "varlink: subject start-time");
        CHECK_MSG(last_check_has("flags=0 "), "varlink: not interactive by default");
        CHECK_MSG(last_check_has("kind=unix-process"), "varlink: subject unix-process");
        expect_dbus(DEV_A, NULL, 0, NULL, "polkit allows");
        snprintf(want, sizeof(want), "pid=%d ", (int) getpid());
        CHECK_MSG(last_check_has("kind=system-bus-name") && last_check_has(want),
                  "D-Bus: subject system-bus-name, which the bus resolves to the caller");

        set_mode("deny");
        expect_varlink(DEV_A, 0, "PermissionDenied", "polkit denies");
        expect_dbus(DEV_A, NULL, 0, ERR("PermissionDenied"), "polkit denies");
}

static void test_challenge(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;

        set_mode("challenge");
        expect_varlink(DEV_A, 0, "InteractiveAuthorizationRequired", "auth_admin without interaction");
        expect_varlink(DEV_A, IOMMUFD_BROKER_ACQUIRE_INTERACTIVE, NULL, "allowInteractiveAuthentication");
        CHECK_MSG(last_check_has("flags=1 "), "varlink: AllowUserInteraction passed to polkit");
        expect_dbus(DEV_A, NULL, 0, ERR("InteractiveAuthorizationRequired"), "D-Bus: without interaction");
        expect_dbus(DEV_A, "interactive", 1, NULL, "D-Bus: option interactive");
        CHECK_MSG(last_check_has("flags=1 "), "D-Bus option: AllowUserInteraction passed to polkit");
        CHECK_MSG(dbus_acquire_flag(DEV_A, &error) >= 0, "D-Bus: ALLOW_INTERACTIVE_AUTHORIZATION flag (%s)",
                  strna(error.message));
        sd_bus_error_free(&error);
        CHECK_MSG(last_check_has("flags=1 "), "D-Bus flag: AllowUserInteraction passed to polkit");
}

static void test_timeout(void) {
        struct timespec t0, t1;
        double elapsed;

        set_mode("slow 4000");          /* the broker runs with --polkit-timeout 2 */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        expect_varlink(DEV_A, 0, "AuthorizationUnavailable", "polkit too slow");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        elapsed = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        CHECK_MSG(elapsed >= 1.5 && elapsed < 10, "varlink: gave up after the timeout (%.1f s)", elapsed);
        expect_dbus(DEV_A, NULL, 0, ERR("AuthorizationUnavailable"), "D-Bus: polkit too slow");
        sleep(3);                       /* the late answers arrive and are dropped */
        set_mode("allow");
        expect_varlink(DEV_A, 0, NULL, "after the late answers");
}

static int ignore_reply(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return 0;
}

static void test_gone_while_pending(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *other = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        char *devices[] = { (char *) DEV_B, NULL };
        int checks, cancels, fd;

        set_mode("hang");
        checks = count_log("check ");
        cancels = count_log("cancel ");
        fd = varlink_send_acquire(DEV_B);
        CHECK_MSG(fd >= 0 && wait_log("check ", checks + 1), "varlink: check in flight");
        close(fd);
        CHECK_MSG(wait_log("cancel ", cancels + 1), "varlink: client gone: polkit told to cancel");

        other = connect_bus();
        CHECK_MSG(other && sd_bus_message_new_method_call(other, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH,
                                                          BROKER_DBUS_INTERFACE, "AcquireDevices") >= 0 &&
                  sd_bus_message_append_strv(m, devices) >= 0 && sd_bus_message_append(m, "a{sv}", 0) >= 0 &&
                  sd_bus_call_async(other, NULL, m, ignore_reply, NULL, 0) >= 0 && sd_bus_flush(other) >= 0,
                  "D-Bus: AcquireDevices sent");
        CHECK_MSG(wait_log("check ", checks + 2), "D-Bus: check in flight");
        other = sd_bus_flush_close_unref(other);
        CHECK_MSG(wait_log("cancel ", cancels + 2), "D-Bus: client gone: polkit told to cancel");
}

/* adv2: polkitd exits (stopped, restarted, crashed) with a check pending:
 * the bus answers NoReply at once. The caller was told "polkit did not
 * answer in time", as after the 20 s timeout, which sends an admin looking
 * at the wrong thing; now the bus's reason. polkit comes back for the next
 * check. */
static void test_polkitd_gone_mid_check(void) {
        char buf[1024];
        ssize_t n;
        int checks, fd;

        set_mode("hang");
        checks = count_log("check ");
        fd = varlink_send_acquire(DEV_B);
        CHECK_MSG(fd >= 0 && wait_log("check ", checks + 1), "check in flight before polkitd goes");
        stop_fake_polkitd();
        struct timeval tv = { .tv_sec = 10 };
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        buf[n > 0 ? n : 0] = 0;
        CHECK_MSG(strstr(buf, "AuthorizationUnavailable") != NULL, "polkitd gone mid-check: %s", buf);
        CHECK_MSG(strstr(buf, "in time") == NULL && strstr(buf, "disconnected") != NULL,
                  "polkitd gone mid-check says so, not a timeout: %s", buf);
        if (fd >= 0)
                close(fd);
        start_fake_polkitd();
        set_mode("allow");
        expect_varlink(DEV_B, 0, NULL, "polkitd back after it went away mid-check");
}

static void test_limit(void) {
        int fds[MAX_PENDING], checks, cancels;

        set_mode("hang");
        checks = count_log("check ");
        cancels = count_log("cancel ");
        for (int i = 0; i < MAX_PENDING; i++)
                fds[i] = varlink_send_acquire(DEV_B);
        CHECK_MSG(wait_log("check ", checks + MAX_PENDING), "%d checks of one uid in flight", MAX_PENDING);
        expect_varlink(DEV_B, 0, "LimitExceeded", "one check more than the per-uid limit");
        CHECK_INT(count_log("check "), checks + MAX_PENDING);
        for (int i = 0; i < MAX_PENDING; i++)
                close(fds[i]);
        CHECK_MSG(wait_log("cancel ", cancels + MAX_PENDING), "all cancelled when their clients left");
        set_mode("allow");
        expect_varlink(DEV_B, 0, NULL, "below the limit again");
}

int main(void) {

        if (!getenv("DBUS_TEST_ADDRESS") || !varlink_socket()) {
                printf("skip: run through run-with-broker.sh with BROKER_VARLINK=1\n");
                return 77;
        }
        fake_polkit_init();
        bus = connect_bus();
        CHECK_MSG(bus != NULL, "connected to the test bus");
        if (!bus)
                return 1;

        test_absent();
        start_fake_polkitd();
        test_allow_deny();
        test_challenge();
        test_timeout();
        test_gone_while_pending();
        test_limit();
        test_polkitd_gone_mid_check();

        stop_fake_polkitd();
        bus = sd_bus_flush_close_unref(bus);
        return test_result();
}
