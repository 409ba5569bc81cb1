/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "log.h"
#include "memlock.h"
#include "polkit.h"

#define POLKIT_NAME      "org.freedesktop.PolicyKit1"
#define POLKIT_PATH      "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

struct PolkitQuery {
        PolkitClient *client;
        sd_bus_slot *slot;
        uid_t uid;
        char cancellation_id[64];
        PolkitCallback callback;
        void *userdata;
        PolkitQuery *prev, *next;
};

struct PolkitClient {
        sd_event *event;
        char *bus_address;
        uint64_t timeout_usec;
        sd_bus *bus;
        sd_event_source *idle_source;   /* closes the bus once no check is in flight */
        PolkitQuery *queries;
        size_t n_queries;
        size_t n_cancels;               /* CancelCheckAuthorization calls awaiting their reply */
        uint64_t next_id;
};

int polkit_client_new(sd_event *event, const char *bus_address, uint64_t timeout_usec, PolkitClient **ret) {
        PolkitClient *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        if (bus_address && !(c->bus_address = strdup(bus_address))) {
                free(c);
                return -ENOMEM;
        }
        c->event = sd_event_ref(event);
        c->timeout_usec = timeout_usec ?: POLKIT_DEFAULT_TIMEOUT_USEC;
        *ret = c;
        return 0;
}

static void client_schedule_idle_close(PolkitClient *c);

/* A cancel sent with no reply expected may be dropped with the connection:
 * the connection stays until polkit acknowledged it (or the call timed out). */
static int on_cancel_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitClient *c = userdata;

        c->n_cancels--;
        client_schedule_idle_close(c);
        return 0;
}

static void client_close_bus(PolkitClient *c) {
        if (!c->bus)
                return;
        sd_bus_detach_event(c->bus);
        c->bus = sd_bus_flush_close_unref(c->bus);
}

static int on_idle(sd_event_source *s, void *userdata) {
        PolkitClient *c = userdata;

        c->idle_source = sd_event_source_disable_unref(c->idle_source);
        if (c->n_queries == 0 && c->n_cancels == 0)
                client_close_bus(c);
        return 0;
}

/* polkit is asked rarely: hold no bus connection between checks. Not from
 * inside the bus's own callback, hence a deferred event. */
static void client_schedule_idle_close(PolkitClient *c) {
        if (c->n_queries > 0 || c->n_cancels > 0 || !c->bus || c->idle_source)
                return;
        if (sd_event_add_defer(c->event, &c->idle_source, on_idle, c) < 0)
                c->idle_source = NULL;  /* the connection simply stays */
}

static void query_unlink(PolkitQuery *q) {
        PolkitClient *c = q->client;

        if (q->prev)
                q->prev->next = q->next;
        else
                c->queries = q->next;
        if (q->next)
                q->next->prev = q->prev;
        c->n_queries--;
        q->prev = q->next = NULL;
        client_schedule_idle_close(c);
}

PolkitClient *polkit_client_free(PolkitClient *c) {
        if (!c)
                return NULL;
        while (c->queries)
                polkit_query_free(c->queries);
        sd_event_source_disable_unref(c->idle_source);
        client_close_bus(c);
        sd_event_unref(c->event);
        free(c->bus_address);
        free(c);
        return NULL;
}

size_t polkit_client_n_pending(const PolkitClient *c) {
        return c ? c->n_queries : 0;
}

static int bus_open(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (!address)
                return sd_bus_open_system_with_description(ret, "iommufd-broker-polkit");
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

/* The connection, (re)opened if there is none or it was lost. Queries on a
 * lost connection hold their own reference and get its error replies. */
static int client_bus(PolkitClient *c, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        if (c->bus && sd_bus_is_open(c->bus) > 0) {
                *ret = c->bus;
                return 0;
        }
        c->bus = sd_bus_unref(c->bus);
        r = bus_open(c->bus_address, &bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, c->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        c->bus = bus;
        *ret = bus;
        return 0;
}

/* Field 22 of /proc/PID/stat, which polkit compares to tell a recycled pid;
 * 0 if unreadable (the pidfd is what counts). */
static uint64_t process_start_time(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long long start = 0;
        size_t n;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        /* The command name may contain spaces and ')': skip past the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                         &start) != 1)
                return 0;
        return start;
}

static int append_subject(sd_bus_message *m, const Principal *who) {
        pid_t pid = who->pid;
        uint64_t start_time;
        int r;

        /* The pid as the pidfd names it now, not as the peer was once known. */
        r = memlock_pidfd_get_pid(who->pidfd, &pid);
        if (r < 0)
                return r;
        start_time = process_start_time(pid);

        r = sd_bus_message_open_container(m, 'r', "sa{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "unix-process");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "pidfd", "h", who->pidfd);
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "pid", "u", (uint32_t) pid);
        if (r >= 0 && start_time > 0)
                r = sd_bus_message_append(m, "{sv}", "start-time", "t", start_time);
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "uid", "i", (int32_t) who->uid);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_bus_name_subject(sd_bus_message *m, const char *bus_name) {
        return sd_bus_message_append(m, "(sa{sv})", "system-bus-name", 1, "name", "s", bus_name);
}

static int read_result(sd_bus_message *reply, bool *ret_authorized, bool *ret_challenge) {
        int authorized = 0, challenge = 0, r;

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0)
                return r;
        *ret_authorized = authorized;
        *ret_challenge = challenge;
        return 0;
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        bool authorized = false, challenge = false;
        char message[256] = "";
        int r = 0;

        if (e) {
                bool timeout = sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT);

                r = timeout ? -ETIMEDOUT : -EHOSTDOWN;
                /* NoReply is also what the bus says at once when polkitd exits
                 * (stopped, restarted, crashed) with the check pending: the
                 * bus's words tell the two apart, "in time" alone did not. */
                if (timeout)
                        snprintf(message, sizeof(message), "polkit did not answer (%s)",
                                 e->message ?: "timed out");
                else
                        snprintf(message, sizeof(message), "polkit failed: %s%s%s", e->name,
                                 e->message ? ": " : "", e->message ?: "");
        } else if (read_result(reply, &authorized, &challenge) < 0) {
                r = -EHOSTDOWN;
                snprintf(message, sizeof(message), "polkit sent a malformed CheckAuthorization reply");
        } else if (!authorized)
                r = challenge ? -EACCES : -EPERM;

        q->slot = sd_bus_slot_unref(q->slot);
        query_unlink(q);
        q->callback(q, r, message[0] ? message : NULL, q->userdata);
        free(q);
        return 0;
}

static size_t pending_of_uid(const PolkitClient *c, uid_t uid) {
        size_t n = 0;

        for (const PolkitQuery *q = c->queries; q; q = q->next)
                n += q->uid == uid;
        return n;
}

int polkit_check_async(PolkitClient *c, const Principal *who, const char *bus_name, const char *action,
                       bool interactive, PolkitCallback callback, void *userdata, PolkitQuery **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ PolkitQuery *q = NULL;
        uint64_t timeout = c->timeout_usec;
        sd_bus *bus;
        int r;

        if (!bus_name && who->pidfd < 0)
                return -EBADF;
        if (pending_of_uid(c, who->uid) >= POLKIT_MAX_PENDING_PER_UID)
                return -EUSERS;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (PolkitQuery) { .client = c, .uid = who->uid, .callback = callback, .userdata = userdata };
        snprintf(q->cancellation_id, sizeof(q->cancellation_id), "iommufd-broker-%d-%" PRIu64, (int) getpid(),
                 ++c->next_id);

        r = client_bus(c, &bus);
        if (r < 0)
                return log_debug_errno(r, "polkit: cannot connect to the bus: %m");
        r = sd_bus_message_new_method_call(bus, &m, POLKIT_NAME, POLKIT_PATH, POLKIT_INTERFACE,
                                           "CheckAuthorization");
        if (r >= 0)
                r = bus_name ? append_bus_name_subject(m, bus_name) : append_subject(m, who);
        if (r >= 0)
                r = sd_bus_message_append(m, "sa{ss}us", action, 0,
                                          interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u,
                                          q->cancellation_id);
        if (r < 0)
                return r;
        if (interactive) {
                (void) sd_bus_message_set_allow_interactive_authorization(m, true);
                timeout *= POLKIT_INTERACTIVE_TIMEOUT_FACTOR;
        }
        r = sd_bus_call_async(bus, &q->slot, m, on_check_reply, q, timeout);
        if (r < 0)
                return r;

        q->next = c->queries;
        if (c->queries)
                c->queries->prev = q;
        c->queries = q;
        c->n_queries++;
        log_debug("polkit: asking about %s for uid %u (pid %d)%s", action, (unsigned) who->uid, (int) who->pid,
                  interactive ? ", interactively" : "");
        if (ret)
                *ret = q;
        TAKE_PTR(q);
        return 0;
}

PolkitQuery *polkit_query_free(PolkitQuery *q) {
        PolkitClient *c;

        if (!q)
                return NULL;
        c = q->client;
        /* Tell polkit, so an authentication dialog for a vanished client goes away. */
        if (c->bus && sd_bus_is_open(c->bus) > 0 &&
            sd_bus_call_method_async(c->bus, NULL, POLKIT_NAME, POLKIT_PATH, POLKIT_INTERFACE,
                                     "CancelCheckAuthorization", on_cancel_reply, c, "s", q->cancellation_id) >= 0)
                c->n_cancels++;
        q->slot = sd_bus_slot_unref(q->slot);
        query_unlink(q);
        free(q);
        return NULL;
}

int polkit_error_to_broker(int r, const char *message, const char *action, const char *device, uid_t uid,
                           BrokerError *err) {
        switch (r) {
        case -EPERM:
                return broker_error_set(err, BROKER_ERROR_PERMISSION_DENIED, device,
                                        "%s: polkit does not authorize %s for uid %u", device, action,
                                        (unsigned) uid);
        case -EACCES:
                return broker_error_set(err, BROKER_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED, device,
                                        "%s: polkit authorizes %s only after authentication; call again "
                                        "allowing interactive authentication", device, action);
        case -EUSERS:
                return broker_error_set(err, BROKER_ERROR_LIMIT_EXCEEDED, device,
                                        "%s: too many polkit checks of uid %u in flight (at most %d)", device,
                                        (unsigned) uid, POLKIT_MAX_PENDING_PER_UID);
        case -EBADF:
                return broker_error_set(err, BROKER_ERROR_PERMISSION_DENIED, device,
                                        "%s: polkit needs the caller's pidfd, which the kernel did not give",
                                        device);
        default:
                return broker_error_set(err, BROKER_ERROR_AUTHORIZATION_UNAVAILABLE, device,
                                        "%s: polkit action %s must be checked, but %s", device, action,
                                        message ?: (r == -ETIMEDOUT ? "polkit did not answer in time"
                                                    : r == -EHOSTDOWN ? "polkit cannot be reached"
                                                                      : strerror(-r)));
        }
}
