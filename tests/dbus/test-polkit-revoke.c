/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Revoke by polkit (action io.iommufd.broker.revoke) on both front ends,
 * against tests/dbus/fake-polkitd on the private bus of run-with-broker.sh
 * (broker with varlink too, --polkit-timeout 2). Root (this process) holds
 * a device in bound mode and never lets go; uid 65534 asks for it back:
 * denied (the lease stays), challenge without and with interactive
 * authorization, the caller leaving while polkit is asked (polkit is told
 * to cancel), allowed (the revoke runs: RevokeTimeout naming the holder),
 * and polkit absent. Root itself is never asked about. A user allowed to
 * revoke may have REVOKE_MAX_PENDING_PER_UID revokes waiting at once; the
 * next is LimitExceeded, and its calls go with it.
 */
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbus-test-util.h"
#include "fake-polkit-util.h"
#include "iommufd-broker.h"
/* daemon/revoke.h: revokes one uid may have waiting at once. */
#define REVOKE_MAX_PENDING_PER_UID 16

#define DEV "0000:00:02.0"
#define ACTION "io.iommufd.broker.revoke"
#define NOBODY 65534

static sd_bus *bus;

static char *device_state(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;

        if (sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "GetDevice", NULL,
                               &reply, "s", DEV) < 0 || sd_bus_message_read(reply, "o", &path) <= 0)
                return NULL;
        return get_string(bus, path, "State");
}

static bool wait_state(const char *want) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;

        return sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "GetDevice",
                                  NULL, &reply, "s", DEV) >= 0 && sd_bus_message_read(reply, "o", &path) > 0 &&
               wait_property(bus, path, "State", want);
}

/* --- the caller: a child as uid 65534 --- */

typedef enum { OVER_VARLINK, OVER_DBUS } Transport;

/* A Revoke as raw varlink; its reply text in buf. */
static int varlink_revoke(bool interactive, bool wait_reply, char *buf, size_t size) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char msg[512];
        size_t got = 0;
        int fd, n;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", getenv("VARLINK_TEST_SOCKET"));
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        n = snprintf(msg, sizeof(msg),
                     "{\"method\":\"io.iommufd.Broker.Revoke\",\"parameters\":{\"device\":\"%s\","
                     "\"timeoutSeconds\":1%s}}", DEV, interactive ? ",\"allowInteractiveAuthentication\":true" : "");
        if (write(fd, msg, (size_t) n + 1) != n + 1)
                return -errno;
        if (!wait_reply)
                return fd;
        while (got + 1 < size) {
                ssize_t k = read(fd, buf + got, size - 1 - got);

                if (k <= 0 || memchr(buf + got, 0, (size_t) k)) {
                        got += k > 0 ? (size_t) k : 0;
                        break;
                }
                got += (size_t) k;
        }
        buf[got] = 0;
        close(fd);
        return 0;
}

/* The error's short name in ret ("ok" without one). */
static void varlink_result(const char *reply, char *ret, size_t size) {
        const char *e = strstr(reply, "\"error\":\"io.iommufd.Broker.");

        if (!e) {
                snprintf(ret, size, "%s", *reply ? "ok" : "no reply");
                return;
        }
        e += strlen("\"error\":\"io.iommufd.Broker.");
        snprintf(ret, size, "%.*s %s", (int) strcspn(e, "\""), e, reply);
}

static int dbus_revoke(sd_bus *b, bool interactive, bool wait_reply, char *ret, size_t size) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(b, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           "Revoke");
        if (r >= 0)
                r = sd_bus_message_append(m, "su", DEV, 1);
        if (r >= 0 && interactive)
                r = sd_bus_message_set_allow_interactive_authorization(m, true);
        if (r < 0)
                return r;
        if (!wait_reply)
                return sd_bus_send(b, m, NULL) < 0 ? -EIO : sd_bus_flush(b);
        r = sd_bus_call(b, m, 10 * 1000000ULL, &error, &reply);
        if (r >= 0)
                snprintf(ret, size, "ok");
        else
                snprintf(ret, size, "%s %s", error.name && strncmp(error.name, ERR(""), strlen(ERR(""))) == 0 ?
                         error.name + strlen(ERR("")) : strna(error.name), strna(error.message));
        return 0;
}

static bool drop_to_nobody(void) {
        return setgroups(0, NULL) == 0 && setresgid(NOBODY, NOBODY, NOBODY) == 0 &&
               setresuid(NOBODY, NOBODY, NOBODY) == 0;
}

/* Fork a child as uid 65534 that calls Revoke. wait_reply: the result
 * ("ok" or the error's short name and message) in ret. Else the child
 * leaves its call pending and sleeps; its pid is returned, to kill. */
static pid_t revoke_as_nobody(Transport t, bool interactive, bool wait_reply, char *ret, size_t size) {
        char buf[4096] = "";
        int p[2];
        pid_t pid;

        if (pipe(p) < 0)
                return -errno;
        pid = fork();
        if (pid == 0) {
                char out[4096] = "", reply[4096] = "";
                sd_bus *b = NULL;
                int r;

                close(p[0]);
                if (!drop_to_nobody())
                        snprintf(out, sizeof(out), "setresuid: %m");
                else if (t == OVER_VARLINK) {
                        r = varlink_revoke(interactive, wait_reply, reply, sizeof(reply));
                        if (r < 0)
                                snprintf(out, sizeof(out), "varlink: %s", strerror(-r));
                        else if (wait_reply)
                                varlink_result(reply, out, sizeof(out));
                        else
                                snprintf(out, sizeof(out), "sent");
                } else {
                        b = connect_bus();
                        r = b ? dbus_revoke(b, interactive, wait_reply, out, sizeof(out)) : -ENOTCONN;
                        if (r < 0)
                                snprintf(out, sizeof(out), "D-Bus: %s", strerror(-r));
                        else if (!wait_reply)
                                snprintf(out, sizeof(out), "sent");
                }
                if (write(p[1], out, strlen(out)) < 0)
                        _exit(1);
                close(p[1]);
                if (!wait_reply)
                        pause();        /* the call stays pending until the parent kills us */
                _exit(0);
        }
        close(p[1]);
        if (wait_reply) {
                ssize_t n = read(p[0], buf, sizeof(buf) - 1);
                int status;

                buf[n > 0 ? n : 0] = 0;
                (void) waitpid(pid, &status, 0);
        } else {
                ssize_t n = read(p[0], buf, 4);

                buf[n > 0 ? n : 0] = 0;
        }
        close(p[0]);
        snprintf(ret, size, "%s", buf);
        return pid;
}

static const char *transport_name(Transport t) {
        return t == OVER_VARLINK ? "varlink" : "D-Bus";
}

static void expect_revoke(Transport t, bool interactive, const char *want, const char *what) {
        char got[4096];

        revoke_as_nobody(t, interactive, true, got, sizeof(got));
        CHECK_MSG(strncmp(got, want, strlen(want)) == 0, "%s: %s: %s (got %s)", transport_name(t), what, want, got);
        if (strncmp(want, "RevokeTimeout", 13) == 0) {
                char pid[32];

                snprintf(pid, sizeof(pid), "pid %d", (int) getpid());
                CHECK_MSG(strstr(got, pid) != NULL, "%s: RevokeTimeout names the holder (%s)", transport_name(t),
                          pid);
        }
}

/* --- scenarios --- */

static void test_never_asked_for_root(void) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int checks = count_log("check ");

        CHECK_MSG(sd_bus_call_method(bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, "Revoke",
                                     &error, NULL, "su", "0000:00:08.0", 1) < 0 &&
                  sd_bus_error_has_name(&error, ERR("NotHeld")), "root: NotHeld for a free device (%s)",
                  strna(error.message));
        CHECK_INT(count_log("check "), checks);
}

static void test_deny(void) {
        char *state;

        set_mode("deny");
        expect_revoke(OVER_VARLINK, false, "PermissionDenied", "polkit denies");
        CHECK_MSG(last_check_has("check " ACTION " ") && last_check_has("uid=65534 ") &&
                  last_check_has("kind=unix-process"), "varlink: polkit asked about " ACTION " for the caller");
        expect_revoke(OVER_DBUS, false, "PermissionDenied", "polkit denies");
        CHECK_MSG(last_check_has("check " ACTION " ") && last_check_has("uid=65534 ") &&
                  last_check_has("kind=system-bus-name"), "D-Bus: polkit asked about the bus name");
        state = device_state();
        CHECK_MSG(streq_ptr(state, "leased"), "a denied revoke leaves the lease alone (state %s)", strna(state));
        free(state);
}

static void test_challenge(void) {
        set_mode("challenge");
        expect_revoke(OVER_VARLINK, false, "InteractiveAuthorizationRequired", "auth_admin, not interactive");
        expect_revoke(OVER_DBUS, false, "InteractiveAuthorizationRequired", "auth_admin, not interactive");
        CHECK_MSG(wait_state("leased"), "the lease is still there");
}

static void test_gone_while_pending(void) {
        char got[64];
        int checks, cancels, status;
        pid_t pid;

        set_mode("hang");
        for (Transport t = OVER_VARLINK; t <= OVER_DBUS; t++) {
                checks = count_log("check ");
                cancels = count_log("cancel ");
                pid = revoke_as_nobody(t, false, false, got, sizeof(got));
                CHECK_MSG(pid > 0 && streq(got, "sent") && wait_log("check ", checks + 1),
                          "%s: check in flight (%s)", transport_name(t), got);
                if (pid > 0) {
                        kill(pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                }
                CHECK_MSG(wait_log("cancel ", cancels + 1), "%s: caller gone: polkit told to cancel",
                          transport_name(t));
        }
        CHECK_MSG(wait_state("leased"), "the lease is still there");
}

/* Authorized: the revoke runs, and the holder (this process) ignores it. */
static void test_allowed(void) {
        set_mode("challenge");
        expect_revoke(OVER_VARLINK, true, "RevokeTimeout", "allowInteractiveAuthentication");
        CHECK_MSG(last_check_has("flags=1 "), "varlink: AllowUserInteraction passed to polkit");
        expect_revoke(OVER_DBUS, true, "RevokeTimeout", "ALLOW_INTERACTIVE_AUTHORIZATION flag");
        CHECK_MSG(last_check_has("flags=1 "), "D-Bus: AllowUserInteraction passed to polkit");
        set_mode("allow");
        expect_revoke(OVER_VARLINK, false, "RevokeTimeout", "polkit allows");
        expect_revoke(OVER_DBUS, false, "RevokeTimeout", "polkit allows");
        CHECK_MSG(wait_state("releasing"), "the revoked lease is releasing");
}

static sd_bus_message *revoke_message(sd_bus *b, uint32_t seconds) {
        sd_bus_message *m = NULL;

        if (sd_bus_message_new_method_call(b, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                           "Revoke") < 0 || sd_bus_message_append(m, "su", DEV, seconds) < 0)
                return sd_bus_message_unref(m);
        return m;
}

/* As uid 65534: REVOKE_MAX_PENDING_PER_UID Revoke calls left waiting (60 s
 * each, the holder never lets go), then, once the parent saw polkit asked
 * about all of them, one more, whose answer goes to the pipe. */
static _Noreturn void pile_up_revokes(int report, int go) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char out[1024], c;
        sd_bus *b;

        if (!drop_to_nobody() || !(b = connect_bus()))
                _exit(1);
        for (int i = 0; i < REVOKE_MAX_PENDING_PER_UID; i++) {
                sd_bus_message *m = revoke_message(b, 60);
                if (!m || sd_bus_send(b, m, NULL) < 0)
                        _exit(2);
                sd_bus_message_unref(m);
        }
        if (sd_bus_flush(b) < 0 || write(report, "sent", 4) != 4 || read(go, &c, 1) != 1)
                _exit(3);
        sd_bus_message *m = revoke_message(b, 60);
        if (!m)
                _exit(4);
        /* Replies to the waiting calls are not ours to wait for. */
        if (sd_bus_call(b, m, 10 * 1000000ULL, &error, NULL) >= 0)
                snprintf(out, sizeof(out), "ok");
        else
                snprintf(out, sizeof(out), "%s %s", strna(error.name), strna(error.message));
        if (write(report, out, strlen(out)) < 0)
                _exit(5);
        _exit(0);
}

static void test_pending_cap(void) {
        char got[1024] = "";
        int report[2], go[2], checks, status;
        ssize_t n;
        pid_t pid;

        set_mode("allow");
        checks = count_log("check ");
        if (pipe(report) < 0 || pipe(go) < 0) {
                CHECK_MSG(false, "pipes");
                return;
        }
        pid = fork();
        if (pid == 0)
                pile_up_revokes(report[1], go[0]);
        close(report[1]);
        close(go[0]);
        n = read(report[0], got, 4);
        CHECK_MSG(n == 4 && wait_log("check ", checks + REVOKE_MAX_PENDING_PER_UID),
                  "uid 65534: %d Revoke calls past polkit", REVOKE_MAX_PENDING_PER_UID);
        usleep(300000);                 /* the last answers reach the core */
        if (write(go[1], "g", 1) != 1)
                CHECK_MSG(false, "the child waits");
        n = read(report[0], got, sizeof(got) - 1);
        got[n > 0 ? n : 0] = 0;
        (void) waitpid(pid, &status, 0);
        close(report[0]);
        close(go[1]);
        CHECK_MSG(strncmp(got, ERR("LimitExceeded"), strlen(ERR("LimitExceeded"))) == 0 && strstr(got, "revokes"),
                  "one more: LimitExceeded (%s)", got);
        /* Its calls went with the caller: room again. */
        expect_revoke(OVER_DBUS, false, "RevokeTimeout", "after the piled-up caller left");
}

static void test_absent(void) {
        stop_fake_polkitd();
        expect_revoke(OVER_VARLINK, false, "AuthorizationUnavailable", "polkit absent");
        expect_revoke(OVER_DBUS, false, "AuthorizationUnavailable", "polkit absent");
}

int main(void) {
        iommufd_broker *holder = NULL;
        iommufd_broker_lease *lease = NULL;
        const char *devs[] = { DEV };

        if (!getenv("DBUS_TEST_ADDRESS") || !getenv("VARLINK_TEST_SOCKET")) {
                printf("skip: run through run-with-broker.sh with BROKER_VARLINK=1\n");
                return 77;
        }
        if (geteuid() != 0) {
                printf("skip: needs root, to call as another uid\n");
                return 77;
        }
        fake_polkit_init();
        bus = connect_bus();
        CHECK_MSG(bus != NULL, "connected to the test bus");
        if (!bus)
                return 1;
        start_fake_polkitd();

        set_mode("allow");      /* the policy has root's Acquire need polkit too */
        CHECK_MSG(iommufd_broker_connect(IOMMUFD_BROKER_TRANSPORT_VARLINK, getenv("VARLINK_TEST_SOCKET"),
                                         &holder) >= 0 &&
                  iommufd_broker_acquire(holder, devs, 1, IOMMUFD_BROKER_MODE_BOUND, 0, &lease) >= 0,
                  "root holds " DEV " in bound mode");

        test_never_asked_for_root();
        test_deny();
        test_challenge();
        test_gone_while_pending();
        test_allowed();
        test_pending_cap();

        iommufd_broker_lease_free(lease);
        iommufd_broker_disconnect(holder);
        CHECK_MSG(wait_state("available"), "the lease ends once the holder lets go");
        test_absent();

        bus = sd_bus_flush_close_unref(bus);
        return test_result();
}
