/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stand-in for polkitd on the test bus: owns org.freedesktop.PolicyKit1
 * and answers CheckAuthorization as the file $FAKE_POLKIT_DIR/mode says at
 * the time of each call:
 *   allow       authorized
 *   deny        not authorized
 *   challenge   authorized only with AllowUserInteraction (flag 1), else
 *               not authorized with is_challenge set, as polkit does for
 *               auth_admin
 *   hang        never answers (until CancelCheckAuthorization)
 *   slow MS     answers "allow" after MS milliseconds
 * Every call is logged to $FAKE_POLKIT_DIR/log, one line each:
 *   check ACTION uid=U pid=P start-time=T pidfd-pid=Q flags=F interactive-flag=0|1 kind=K
 *   cancel ID
 * where pidfd-pid is the pid the passed pidfd names (its fdinfo), -2 if none
 * was passed, and K the subject kind. A system-bus-name subject is resolved
 * through the bus (pid, uid), as polkitd does. Like polkitd, it refuses a
 * unix-process subject without a uid, and one whose pidfd and pid disagree.
 *
 *   fake-polkitd BUS_ADDRESS     runs until killed; prints "ready" on stdout
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "util.h"

static const char *dir;
static sd_bus_message *hung[64];
static size_t n_hung;

static void read_mode(char *buf, size_t size, unsigned *ret_ms) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/mode", dir);
        snprintf(buf, size, "deny");
        *ret_ms = 0;
        f = fopen(path, "re");
        if (!f)
                return;
        if (fscanf(f, "%31s %u", buf, ret_ms) < 1)
                snprintf(buf, size, "deny");
        fclose(f);
}

static void log_line(const char *fmt, ...) {
        char path[4096];
        va_list ap;
        FILE *f;

        snprintf(path, sizeof(path), "%s/log", dir);
        f = fopen(path, "ae");
        if (!f)
                return;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputc('\n', f);
        fclose(f);
}

static int pidfd_pid(int fd) {
        char path[64], line[128];
        int pid = -3;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        f = fopen(path, "re");
        if (!f)
                return -3;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Pid: %d", &pid) == 1)
                        break;
        fclose(f);
        return pid;
}

typedef struct Subject {
        char kind[32];
        uint32_t pid;
        uint64_t start_time;
        int32_t uid;
        bool has_uid;
        int pidfd_pid;
} Subject;

/* What the bus says about a unique name. */
static int resolve_bus_name(sd_bus *bus, const char *name, Subject *s) {
        uint32_t pid = 0, uid = 0;
        int r;

        {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *a = NULL, *b = NULL;

                r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                       "GetConnectionUnixProcessID", NULL, &a, "s", name);
                if (r >= 0)
                        r = sd_bus_message_read(a, "u", &pid);
                if (r >= 0)
                        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                               "org.freedesktop.DBus", "GetConnectionUnixUser", NULL, &b, "s", name);
                if (r >= 0)
                        r = sd_bus_message_read(b, "u", &uid);
                if (r < 0)
                        return r;
        }
        s->pid = pid;
        s->uid = (int32_t) uid;
        s->has_uid = true;
        return 0;
}

static int read_subject(sd_bus_message *m, Subject *s) {
        const char *kind, *key, *name = NULL;
        int r;

        *s = (Subject) { .pidfd_pid = -2 };
        r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "s", &kind);
        if (r < 0 || (!streq(kind, "unix-process") && !streq(kind, "system-bus-name")))
                return -EINVAL;
        snprintf(s->kind, sizeof(s->kind), "%s", kind);
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                int fd;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "pid"))
                        r = sd_bus_message_read(m, "v", "u", &s->pid);
                else if (streq(key, "start-time"))
                        r = sd_bus_message_read(m, "v", "t", &s->start_time);
                else if (streq(key, "uid")) {
                        r = sd_bus_message_read(m, "v", "i", &s->uid);
                        s->has_uid = true;
                } else if (streq(key, "name"))
                        r = sd_bus_message_read(m, "v", "s", &name);
                else if (streq(key, "pidfd")) {
                        r = sd_bus_message_read(m, "v", "h", &fd);
                        if (r >= 0)
                                s->pidfd_pid = pidfd_pid(fd);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0 && streq(kind, "system-bus-name"))
                r = name ? resolve_bus_name(sd_bus_message_get_bus(m), name, s) : -EINVAL;
        return r;
}

static int reply_result(sd_bus_message *m, bool authorized, bool challenge) {
        return sd_bus_reply_method_return(m, "(bba{ss})", authorized, challenge, 0);
}

static int on_slow_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        sd_bus_message *m = userdata;

        (void) reply_result(m, true, false);
        sd_bus_message_unref(m);
        sd_event_source_unref(s);
        return 0;
}

static int method_check(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *action, *cancellation_id;
        char mode[32];
        unsigned ms, flags;
        Subject s;
        int r;

        r = read_subject(m, &s);
        if (r < 0)
                return sd_bus_error_set(error, "org.freedesktop.PolicyKit1.Error.Failed", "bad subject");
        r = sd_bus_message_read(m, "s", &action);
        if (r >= 0)
                r = sd_bus_message_skip(m, "a{ss}");
        if (r >= 0)
                r = sd_bus_message_read(m, "us", &flags, &cancellation_id);
        if (r < 0)
                return r;
        log_line("check %s uid=%d pid=%u start-time=%" PRIu64 " pidfd-pid=%d flags=%u interactive-flag=%d kind=%s",
                 action, s.has_uid ? s.uid : -1, s.pid, s.start_time, s.pidfd_pid, flags,
                 sd_bus_message_get_allow_interactive_authorization(m) > 0, s.kind);
        if (!s.has_uid || (s.pidfd_pid != -2 && s.pidfd_pid != (int) s.pid))
                return sd_bus_error_set(error, "org.freedesktop.PolicyKit1.Error.Failed",
                                        "subject's pidfd, pid and uid disagree");

        read_mode(mode, sizeof(mode), &ms);
        if (streq(mode, "allow"))
                return reply_result(m, true, false);
        if (streq(mode, "challenge"))
                return reply_result(m, flags & 1, !(flags & 1));
        if (streq(mode, "hang") && n_hung < ELEMENTSOF(hung)) {
                hung[n_hung++] = sd_bus_message_ref(m);
                return 1;
        }
        if (streq(mode, "slow")) {
                uint64_t now;

                sd_event_now(sd_bus_get_event(sd_bus_message_get_bus(m)), CLOCK_MONOTONIC, &now);
                r = sd_event_add_time(sd_bus_get_event(sd_bus_message_get_bus(m)), NULL, CLOCK_MONOTONIC,
                                      now + (uint64_t) ms * 1000, 0, on_slow_timer, sd_bus_message_ref(m));
                return r < 0 ? r : 1;
        }
        return reply_result(m, false, false);
}

static int method_cancel(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *id;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        log_line("cancel %s", id);
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable authority_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})", method_check, 0),
        SD_BUS_METHOD("CancelCheckAuthorization", "s", "", method_cancel, 0),
        SD_BUS_VTABLE_END,
};

int main(int argc, char *argv[]) {
        sd_bus *bus = NULL;
        sd_event *event = NULL;
        int r;

        dir = getenv("FAKE_POLKIT_DIR");
        if (argc != 2 || !dir) {
                fprintf(stderr, "usage: FAKE_POLKIT_DIR=DIR %s BUS_ADDRESS\n", argv[0]);
                return 2;
        }
        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, argv[1]);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_negotiate_fds(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, 0);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                             "org.freedesktop.PolicyKit1.Authority", authority_vtable, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, "org.freedesktop.PolicyKit1", 0);
        if (r < 0) {
                fprintf(stderr, "fake-polkitd: %s\n", strerror(-r));
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        r = sd_event_loop(event);
        for (size_t i = 0; i < n_hung; i++)
                sd_bus_message_unref(hung[i]);
        sd_bus_flush_close_unref(bus);
        sd_event_unref(event);
        return r < 0 ? 1 : 0;
}
