/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-bus.h>

#include "acquire-job.h"
#include "config.h"
#include "dbus-args.h"
#include "dbus-broker.h"
#include "dbus-device.h"
#include "log.h"
#include "quota.h"
#include "revoke.h"
#include "session.h"
#include "varlink-broker.h"


/* One client of the D-Bus front end: a sender unique name and its Session. */
typedef struct DbusSession DbusSession;
typedef struct PendingAcquire PendingAcquire;
typedef struct PendingRevoke PendingRevoke;
struct DbusSession {
        DbusBroker *broker;
        char *name;
        Session *session;
        uid_t uid;
        bool charged;                   /* to manager_quota(), until freed */
        PendingAcquire *pending;        /* AcquireDevices calls waiting for polkit */
        DbusSession *next;
};

/* An AcquireDevices call whose reply waits for polkit; it dies with its session. */
struct PendingAcquire {
        DbusSession *session;
        sd_bus_message *message;
        AcquireJob *job;
        bool created;                   /* the call created the session */
        PendingAcquire *next;
};

struct DbusBroker {
        Manager *manager;
        sd_bus *bus;
        sd_bus_slot *vtable_slot;
        sd_bus_slot *object_manager_slot;
        sd_bus_slot *names_slot;        /* NameOwnerChanged: sessions whose client left */
        DbusDevices *devices;
        Subscription *subscription;
        DbusSession *sessions;
        PendingRevoke *revokes;
};

/* --- Sessions --- */

static DbusSession *dbus_session_find(DbusBroker *b, const char *name) {
        for (DbusSession *s = b->sessions; s; s = s->next)
                if (streq(s->name, name))
                        return s;
        return NULL;
}

/* Unlink and end everything the name held: session_destroy() is the same
 * call a varlink disconnect makes. */
static void pending_acquire_unlink(PendingAcquire *p) {
        for (PendingAcquire **i = &p->session->pending; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        break;
                }
}

static PendingAcquire *pending_acquire_free(PendingAcquire *p) {
        if (!p)
                return NULL;
        pending_acquire_unlink(p);
        acquire_job_cancel(p->job);
        sd_bus_message_unref(p->message);
        free(p);
        return NULL;
}

static void dbus_session_free(DbusSession *s) {
        if (!s)
                return;
        /* The caller is gone: nobody to answer, no polkit check worth finishing. */
        while (s->pending)
                pending_acquire_free(s->pending);
        for (DbusSession **p = &s->broker->sessions; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        if (s->session)
                session_destroy(s->session);
        if (s->charged)
                quota_release(manager_quota(s->broker->manager), s->uid, QUOTA_DBUS);
        free(s->name);
        free(s);
}

static void revokes_of_gone_caller(DbusBroker *b, const char *name);

/* One match for every session and waiting Revoke, installed before the name is taken, not one
 * per session: dbus-daemon allows a connection 512 matches by default, and
 * the broker admits more sessions than that (a match per session let users
 * with many sessions lock everyone, root too, out of new ones). It is in
 * place before any session exists and the bus handles our messages in
 * order, so a client whose GetConnectionCredentials succeeded is seen
 * leaving, and one already gone fails that lookup. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusBroker *b = userdata;
        const char *name, *old_owner, *new_owner;
        DbusSession *s;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !name || name[0] != ':' ||
            (new_owner && *new_owner))
                return 0;
        revokes_of_gone_caller(b, name);
        s = dbus_session_find(b, name);
        if (!s)
                return 0;
        log_debug("D-Bus client %s left the bus, ending its session.", s->name);
        dbus_session_free(s);
        return 0;
}

static int watch_clients_leaving(DbusBroker *b) {
        return sd_bus_add_match(b->bus, &b->names_slot,
                                "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                "interface='org.freedesktop.DBus',member='NameOwnerChanged'",
                                on_name_owner_changed, b);
}

/*
 * Who sent m, as the policy sees it: what the bus attested when the client
 * connected (GetConnectionCredentials: uid, groups, and with dbus 1.15.8+
 * ProcessFD), never /proc/<pid> at call time, where a recycled pid or a
 * setgid exec would describe someone else. Without ProcessFD the caller has
 * no pidfd and hence no unit (see principal.h).
 */
int dbus_principal_from_message(sd_bus_message *m, Principal **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = sd_bus_message_get_bus(m);
        int r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetConnectionCredentials", &error, &reply, "s", sd_bus_message_get_sender(m));
        if (r < 0)
                return log_debug_errno(r, "GetConnectionCredentials(%s): %s", sd_bus_message_get_sender(m),
                                       error.message ?: strerror(-r));
        return principal_from_bus_credentials(reply, ret);
}

/* Charge one more session of uid to the account varlink shares; err says
 * why not (root never is refused). */
static int charge_session(DbusBroker *b, DbusSession *s, const char *sender, BrokerError *err) {
        int r = quota_charge(manager_quota(b->manager), s->uid, QUOTA_DBUS, err);

        if (r == -EUSERS)
                log_warning("D-Bus: refusing a session for %s: %s", sender, err->message);
        s->charged = r >= 0;
        return r;
}

/* The session of m's sender, created and tracked on first use. *ret_created
 * tells the caller it may drop the session again if the first call fails. */
static int dbus_session_get(DbusBroker *b, sd_bus_message *m, DbusSession **ret, bool *ret_created,
                            BrokerError *err) {
        _cleanup_(principal_freep) Principal *principal = NULL;
        const char *sender = sd_bus_message_get_sender(m);
        DbusSession *s;
        int r;

        if (!sender)
                return -ENOTCONN;
        s = dbus_session_find(b, sender);
        if (s) {
                *ret = s;
                *ret_created = false;
                return 0;
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->broker = b;
        s->next = b->sessions;
        b->sessions = s;
        s->name = strdup(sender);
        /* Fails if the name is already gone: nobody to hand fds to then. */
        r = s->name ? dbus_principal_from_message(m, &principal) : -ENOMEM;
        if (r < 0) {
                dbus_session_free(s);
                return log_debug_errno(r, "Cannot identify D-Bus client %s: %s", sender, strerror(-r));
        }
        s->uid = principal->uid;
        r = charge_session(b, s, sender, err);
        if (r < 0) {
                dbus_session_free(s);
                return r;
        }
        r = session_new(b->manager, TAKE_PTR(principal), &s->session);
        if (r < 0) {
                dbus_session_free(s);
                return log_debug_errno(r, "Cannot create a session for %s: %s", sender, strerror(-r));
        }

        log_debug("D-Bus client %s has session %" PRIu64 ".", sender, session_id(s->session));
        *ret = s;
        *ret_created = true;
        return 0;
}

/* --- Errors --- */

/* Turn a core failure into io.iommufd.Broker1.Error.<Name> with its message. */
static int reply_broker_error(sd_bus_error *error, int r, const BrokerError *e) {
        BrokerError copy = *e;
        char name[128];

        broker_error_ensure(&copy, r, copy.device[0] ? copy.device : NULL);
        snprintf(name, sizeof(name), BROKER_DBUS_ERROR_PREFIX "%s", strna(broker_error_name(copy.code)));
        return sd_bus_error_set(error, name, copy.message);
}

static int reply_error(sd_bus_error *error, int r, BrokerErrorCode code, const char *device,
                       const char *message) {
        BrokerError e = {};

        broker_error_set(&e, code, device, "%s", message);
        return reply_broker_error(error, r, &e);
}

/* --- Methods --- */

static int method_list_devices(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusBroker *b = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Device *const *devices;
        size_t n;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(so)");
        if (r < 0)
                return r;
        devices = inventory_devices(manager_inventory(b->manager), &n);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;

                r = dbus_device_path(devices[i]->address, &path);
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "(so)", devices[i]->address, path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_device(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusBroker *b = userdata;
        _cleanup_free_ char *path = NULL;
        const char *address;
        BrokerError err = {};
        Device *d;
        int r;

        r = sd_bus_message_read(m, "s", &address);
        if (r < 0)
                return r;
        r = manager_get_device(b->manager, address, &d, &err);
        if (r < 0)
                return reply_broker_error(error, r, &err);
        r = dbus_device_path(d->address, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "o", path);
}

/* sd-bus dups every fd appended as 'h'; the caller closes its own. */
static int send_acquire_reply(sd_bus_message *m, const AcquireReply *a) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = dbus_append_acquire_reply(reply, a);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* The reply could not be sent: nobody has the fds, so give the devices back. */
static void undo_acquire(Session *s, const AcquireReply *a) {
        _cleanup_strv_free_ char **addresses = NULL;
        BrokerError err = {};

        for (size_t i = 0; i < a->n_devices; i++)
                if (strv_extend(&addresses, a->devices[i].address) < 0)
                        return;
        if (addresses)
                (void) session_release(s, addresses, &err);
}

/* The broker error as an error reply to m, sent now. */
static int send_broker_error(sd_bus_message *m, int r, const BrokerError *e) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        (void) reply_broker_error(&error, r, e);
        return sd_bus_reply_method_error(m, &error);
}

static void on_acquire_done(int r, AcquireReply *reply, BrokerError *err, void *userdata) {
        PendingAcquire *p = userdata;
        DbusSession *s = p->session;
        sd_bus_message *m = p->message;

        p->job = NULL;          /* finishing: the job frees itself */
        if (r < 0) {
                if (send_broker_error(m, r, err) < 0)
                        log_debug("Cannot send the AcquireDevices error to %s.", s->name);
                /* A first call that failed leaves nothing worth keeping. */
                if (p->created && session_n_leases(s->session) == 0 && s->pending == p && !p->next)
                        dbus_session_free(s);   /* frees p too */
                else
                        pending_acquire_free(p);
                return;
        }
        r = send_acquire_reply(m, reply);
        if (r < 0) {
                log_warning_errno(r, "Cannot send AcquireDevices reply to %s, releasing: %s", s->name, strerror(-r));
                undo_acquire(s->session, reply);
        }
        acquire_reply_done(reply);
        pending_acquire_free(p);
}

static int method_acquire_devices(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusBroker *b = userdata;
        _cleanup_strv_free_ char **devices = NULL;
        AcquireRequest req = { .mode = ACQUIRE_MODE_ATTACHED };
        BrokerError err = {};
        PendingAcquire *p;
        DbusSession *s = NULL;
        bool created = false;
        int r;

        /* Nobody would receive the fds: refuse rather than lease a device
         * to a reply that is never sent. */
        if (!sd_bus_message_get_expect_reply(m)) {
                log_notice("D-Bus: refusing AcquireDevices from %s sent with NO_REPLY_EXPECTED: nobody "
                           "would receive its fds.", strna(sd_bus_message_get_sender(m)));
                return reply_error(error, -EINVAL, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                   "AcquireDevices without a reply (NO_REPLY_EXPECTED) is refused");
        }
        r = dbus_read_devices(m, &devices, &err);
        if (r < 0)
                return err.code != BROKER_OK ? reply_broker_error(error, r, &err) : r;
        r = dbus_read_acquire_options(m, &req, &err);
        if (r < 0)
                return err.code != BROKER_OK ? reply_broker_error(error, r, &err) : r;
        req.devices = devices;
        /* The caller said it may wait for an authentication dialog. */
        if (sd_bus_message_get_allow_interactive_authorization(m) > 0)
                req.allow_interactive = true;

        r = dbus_session_get(b, m, &s, &created, &err);
        if (r < 0 && err.code != BROKER_OK)
                return reply_broker_error(error, r, &err);
        if (r < 0) {
                snprintf(err.message, sizeof(err.message), "Cannot set up a session for the caller: %s",
                         strerror(-r));
                return reply_error(error, r, BROKER_ERROR_KERNEL_ERROR, NULL, err.message);
        }

        p = calloc(1, sizeof(*p));
        if (!p) {
                if (created)
                        dbus_session_free(s);
                return -ENOMEM;
        }
        *p = (PendingAcquire) { .session = s, .message = sd_bus_message_ref(m), .created = created, .next = s->pending };
        s->pending = p;
        /* Replies at once unless polkit must be asked; then the call stays pending. */
        /* polkit asks the bus who s->name is (the broker's bus is the one polkit is asked on). */
        r = acquire_job_start(b->manager, manager_polkit(b->manager), s->session, &req, s->name, on_acquire_done,
                              p, &p->job);
        if (r < 0) {
                if (created)
                        dbus_session_free(s);
                else
                        pending_acquire_free(p);
                return r;
        }
        return 1;
}

/* A caller without a session holds nothing; say which device, and why. */
static int reply_not_held(DbusBroker *b, char **devices, sd_bus_error *error) {
        BrokerError err = {};
        Device *d;
        char message[256];
        int r;

        r = manager_get_device(b->manager, devices[0], &d, &err);
        if (r < 0)
                return reply_broker_error(error, r, &err);
        snprintf(message, sizeof(message), "%s is not leased to this caller", d->address);
        return reply_error(error, -ENOENT, BROKER_ERROR_NOT_HELD, d->address, message);
}

static int method_release_devices(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusBroker *b = userdata;
        _cleanup_strv_free_ char **devices = NULL;
        BrokerError err = {};
        DbusSession *s;
        int r;

        r = dbus_read_devices(m, &devices, &err);
        if (r < 0)
                return err.code != BROKER_OK ? reply_broker_error(error, r, &err) : r;

        s = dbus_session_find(b, strna(sd_bus_message_get_sender(m)));
        if (!s)
                return strv_length(devices) == 0 ? sd_bus_reply_method_return(m, NULL)
                                                 : reply_not_held(b, devices, error);

        /* Its signals after its reply, as an Acquire's. */
        manager_hold_events(b->manager);
        r = session_release(s->session, strv_length(devices) > 0 ? devices : NULL, &err);
        if (r < 0)
                r = reply_broker_error(error, r, &err);
        else
                r = sd_bus_reply_method_return(m, NULL);
        manager_release_events(b->manager);
        return r;
}

/* --- Revoke --- */

/* A Revoke call waiting for polkit or for the holder; it goes when its caller leaves the bus. */
struct PendingRevoke {
        DbusBroker *broker;
        sd_bus_message *message;
        RevokeCall *revoke;
        PendingRevoke *next;
};

static PendingRevoke *pending_revoke_free(PendingRevoke *p) {
        if (!p)
                return NULL;
        for (PendingRevoke **i = &p->broker->revokes; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        break;
                }
        revoke_call_cancel(p->revoke);
        sd_bus_message_unref(p->message);
        free(p);
        return NULL;
}

/* polkit stops asking; an authorized revoke goes on. */
static void revokes_of_gone_caller(DbusBroker *b, const char *name) {
        PendingRevoke *next;

        for (PendingRevoke *p = b->revokes; p; p = next) {
                next = p->next;
                if (streq_ptr(sd_bus_message_get_sender(p->message), name))
                        pending_revoke_free(p);
        }
}

/* The call is answered when polkit refused, the lease ended or the timeout passed. */
static void on_revoke_done(int result, const BrokerError *err, void *userdata) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        PendingRevoke *p = userdata;
        BrokerError e = err ? *err : (BrokerError) {};

        p->revoke = NULL;       /* finished */
        if (result < 0) {
                (void) reply_broker_error(&error, result, &e);
                (void) sd_bus_reply_method_error(p->message, &error);
        } else
                (void) sd_bus_reply_method_return(p->message, NULL);
        pending_revoke_free(p);
}

static int method_revoke(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusBroker *b = userdata;
        _cleanup_(principal_freep) Principal *caller = NULL;
        const char *device;
        PendingRevoke *p;
        uint32_t seconds;
        int r;

        r = sd_bus_message_read(m, "su", &device, &seconds);
        if (r < 0)
                return r;
        if (seconds == 0)
                seconds = REVOKE_DEFAULT_TIMEOUT_SEC;
        if (seconds > REVOKE_MAX_TIMEOUT_SEC)
                return reply_error(error, -EINVAL, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                   "timeout_sec is more than an hour");
        r = dbus_principal_from_message(m, &caller);
        if (r < 0)
                return reply_error(error, r, BROKER_ERROR_PERMISSION_DENIED, NULL,
                                   "cannot tell who is calling");

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (PendingRevoke) { .broker = b, .message = sd_bus_message_ref(m), .next = b->revokes };
        b->revokes = p;
        /* A caller that already left is seen leaving: its NameOwnerChanged
         * comes after its call (on_name_owner_changed()). Answered by
         * on_revoke_done(), perhaps already. polkit asks the bus who the
         * sender is (system-bus-name). */
        r = revoke_call_start(b->manager, manager_polkit(b->manager), &(RevokeRequest) {
                .device = device,
                .timeout_usec = (uint64_t) seconds * 1000000ULL,
                .allow_interactive = sd_bus_message_get_allow_interactive_authorization(m) > 0,
                .caller = caller,
                .bus_name = sd_bus_message_get_sender(m),
        }, on_revoke_done, p, &p->revoke);
        if (r < 0) {
                pending_revoke_free(p);
                return r;
        }
        return 1;
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("ListDevices", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(so)", devices),
                                method_list_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetDevice", SD_BUS_ARGS("s", address), SD_BUS_RESULT("o", device),
                                method_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AcquireDevices",
                                SD_BUS_ARGS("as", devices, "a{sv}", options),
                                SD_BUS_RESULT("h", iommufd, "a(sha{sv})", devices, "a{sv}", info),
                                method_acquire_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReleaseDevices", SD_BUS_ARGS("as", devices), SD_BUS_NO_RESULT,
                                method_release_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Revoke", SD_BUS_ARGS("s", device, "u", timeout_sec), SD_BUS_NO_RESULT,
                                method_revoke, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("DeviceAdded", SD_BUS_ARGS("s", address, "o", device), 0),
        SD_BUS_SIGNAL_WITH_ARGS("DeviceRemoved", SD_BUS_ARGS("s", address, "o", device), 0),
        SD_BUS_SIGNAL_WITH_ARGS("LeaseAcquired", SD_BUS_ARGS("s", address, "t", session), 0),
        SD_BUS_SIGNAL_WITH_ARGS("LeaseEnded", SD_BUS_ARGS("s", address, "t", session, "s", reason), 0),
        SD_BUS_VTABLE_END,
};

/* --- Events to signals --- */

static void emit_device_signal(DbusBroker *b, const char *member, const char *address, const char *path) {
        int r = sd_bus_emit_signal(b->bus, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, member, "so", address, path);
        if (r < 0)
                log_warning_errno(r, "Cannot emit %s for %s: %s", member, address, strerror(-r));
}

/* LeaseAcquired (reason NULL) or LeaseEnded, as sd_bus_emit_signal() would
 * send it with "st" or "sts", without parsing that format for each lease.
 * The session is 0: see on_broker_event(). */
static int emit_lease_signal(DbusBroker *b, const char *member, const char *address, const char *reason) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        uint64_t session = 0;
        int r;

        r = sd_bus_message_new_signal(b->bus, &m, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE, member);
        if (r >= 0)
                r = dbus_append_ascii(m, address);     /* a device's, normalized */
        if (r >= 0)
                r = sd_bus_message_append_basic(m, 't', &session);
        if (r >= 0 && reason)
                r = sd_bus_message_append_basic(m, 's', reason);
        if (r >= 0)
                r = sd_bus_send(b->bus, m, NULL);
        return r;
}

static void emit_changed(DbusBroker *b, const char *address) {
        int r = dbus_devices_changed(b->devices, address);

        if (r < 0)
                log_warning_errno(r, "Cannot emit PropertiesChanged for %s: %s", address, strerror(-r));
}

/* Access follows the policy: every caller must read its own again. */
static void on_policy_reloaded(Manager *m, void *userdata) {
        DbusBroker *b = userdata;
        int r = dbus_devices_invalidate_access(b->devices);

        if (r < 0)
                log_warning_errno(r, "Cannot announce the new access after the policy reload: %s", strerror(-r));
}

/* An Acquire's or Release's events are all out: its PropertiesChanged
 * follow its reply and Lease signal in this turn of the loop. */
static void on_events_done(Manager *m, void *userdata) {
        DbusBroker *b = userdata;

        dbus_devices_flush(b->devices);
}

static void on_broker_event(Manager *m, const BrokerEvent *ev, void *userdata) {
        DbusBroker *b = userdata;
        _cleanup_free_ char *path = NULL;
        int r;

        if (!ev->address)
                return;
        /* Only these two need the device's path (and make it here). */
        if ((ev->type == BROKER_EVENT_DEVICE_ADDED || ev->type == BROKER_EVENT_DEVICE_REMOVED) &&
            dbus_device_path(ev->address, &path) < 0)
                return;

        switch (ev->type) {
        case BROKER_EVENT_DEVICE_ADDED:
                if (ev->device)
                        (void) dbus_devices_remember(b->devices, ev->device);
                r = sd_bus_emit_interfaces_added(b->bus, path, BROKER_DBUS_DEVICE_INTERFACE, NULL);
                if (r < 0)
                        log_warning_errno(r, "Cannot emit InterfacesAdded for %s: %s", ev->address, strerror(-r));
                emit_device_signal(b, "DeviceAdded", ev->address, path);
                break;
        case BROKER_EVENT_DEVICE_REMOVED:
                dbus_devices_forget(b->devices, ev->address);
                r = sd_bus_emit_interfaces_removed(b->bus, path, BROKER_DBUS_DEVICE_INTERFACE, NULL);
                if (r < 0)
                        log_warning_errno(r, "Cannot emit InterfacesRemoved for %s: %s", ev->address, strerror(-r));
                emit_device_signal(b, "DeviceRemoved", ev->address, path);
                break;
        case BROKER_EVENT_DEVICE_CHANGED:
                emit_changed(b, ev->address);
                break;
        /* Signals go to every listener, so they carry what every listener may
         * see: the holder's session is shown to root and the holder only
         * (varlink's Monitor rule), who read it from HolderSession or their
         * own AcquireDevices reply; here it is 0. */
        case BROKER_EVENT_LEASE_ACQUIRED:
                emit_changed(b, ev->address);
                (void) emit_lease_signal(b, "LeaseAcquired", ev->address, NULL);
                break;
        case BROKER_EVENT_LEASE_ENDED:
                emit_changed(b, ev->address);
                (void) emit_lease_signal(b, "LeaseEnded", ev->address, strna(ev->reason));
                break;
        default:
                break;
        }
}

/* --- Setup --- */

static int bus_connect(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (!address)
                return sd_bus_open_system_with_description(ret, "iommufd-broker");

        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, true);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static int request_name(sd_bus *bus) {
        int r = sd_bus_request_name(bus, BROKER_DBUS_NAME, 0);
        if (r == -EEXIST)
                return log_error_errno(r, "D-Bus name %s is already owned by another process.", BROKER_DBUS_NAME);
        if (r == -EACCES || r == -EPERM)
                return log_error_errno(r, "Not allowed to own D-Bus name %s: check the bus policy (%s.conf).",
                                       BROKER_DBUS_NAME, BROKER_DBUS_NAME);
        if (r < 0)
                return log_error_errno(r, "Cannot request D-Bus name %s: %s", BROKER_DBUS_NAME, strerror(-r));
        return 0;
}

static int register_objects(DbusBroker *b) {
        int r;

        r = sd_bus_add_object_vtable(b->bus, &b->vtable_slot, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                                     manager_vtable, b);
        if (r < 0)
                return log_error_errno(r, "Cannot add the D-Bus manager object: %s", strerror(-r));
        r = sd_bus_add_object_manager(b->bus, &b->object_manager_slot, BROKER_DBUS_PATH);
        if (r < 0)
                return log_error_errno(r, "Cannot add the D-Bus object manager: %s", strerror(-r));
        return dbus_devices_new(b->bus, b->manager, &b->devices);
}

int dbus_broker_start(Manager *m, const char *bus_address, DbusBroker **ret) {
        _cleanup_(dbus_broker_freep) DbusBroker *b = NULL;
        int r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->manager = m;

        r = bus_connect(bus_address, &b->bus);
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the %s bus%s%s: %s",
                                       bus_address ? "D-Bus" : "system", bus_address ? " at " : "",
                                       bus_address ?: "", strerror(-r));
        if (sd_bus_can_send(b->bus, SD_BUS_TYPE_UNIX_FD) <= 0)
                return log_error_errno(-EOPNOTSUPP, "The bus does not pass file descriptors.");
        /* A broker that silently lost its bus would strand every D-Bus client;
         * stop instead and let the service manager restart us. */
        r = sd_bus_set_exit_on_disconnect(b->bus, true);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(b->bus, manager_event(m), SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %s", strerror(-r));

        r = watch_clients_leaving(b);
        if (r < 0)
                return log_error_errno(r, "Cannot watch D-Bus clients leaving: %s", strerror(-r));
        r = register_objects(b);
        if (r < 0)
                return r;
        r = manager_subscribe(m, on_broker_event, b, &b->subscription);
        if (r < 0)
                return log_error_errno(r, "Cannot subscribe to broker events: %s", strerror(-r));
        manager_set_policy_reload_handler(m, on_policy_reloaded, b);
        manager_set_events_done(m, on_events_done, b);
        /* Last: calls may arrive as soon as we own the name. */
        r = request_name(b->bus);
        if (r < 0)
                return r;

        log_info("D-Bus: serving %s on %s.", BROKER_DBUS_NAME, bus_address ?: "the system bus");
        *ret = TAKE_PTR(b);
        return 0;
}

DbusBroker *dbus_broker_free(DbusBroker *b) {
        if (!b)
                return NULL;
        /* No signals about our own teardown. */
        b->subscription = subscription_free(b->subscription);
        if (b->manager) {
                manager_set_policy_reload_handler(b->manager, NULL, NULL);
                manager_set_events_done(b->manager, NULL, NULL);
        }
        while (b->sessions)
                dbus_session_free(b->sessions);
        while (b->revokes)
                pending_revoke_free(b->revokes);
        dbus_devices_free(b->devices);
        sd_bus_slot_unref(b->object_manager_slot);
        sd_bus_slot_unref(b->vtable_slot);
        sd_bus_slot_unref(b->names_slot);
        if (b->bus) {
                sd_bus_detach_event(b->bus);
                sd_bus_flush_close_unref(b->bus);
        }
        free(b);
        return NULL;
}
