/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>

#include "acquire-job.h"
#include "config.h"
#include "device-json.h"
#include "fmt.h"
#include "log.h"
#include "protocol-data.h"
#include "revoke.h"
#include "session.h"
#include "varlink-broadcast.h"
#include "varlink-broker.h"

#define BROKER_PRODUCT "iommufd-broker"
#define BROKER_URL     "file:///usr/share/doc/iommufd-broker/README.md"

const char *varlink_broker_error_name(BrokerErrorCode code, char buf[static 96]) {
        snprintf(buf, 96, "%s.%s", BROKER_VARLINK_INTERFACE,
                 broker_error_name(code) ?: broker_error_name(BROKER_ERROR_KERNEL_ERROR));
        return buf;
}

static Session *call_session(VarlinkCall *call) {
        return varlink_connection_get_userdata(varlink_call_get_connection(call));
}

static const Principal *call_viewer(VarlinkCall *call) {
        Session *s = call_session(call);
        return s ? session_principal(s) : NULL;
}

/* A core failure as io.iommufd.Broker.<Name>; a bare errno as KernelError. */
static int reply_broker_error(VarlinkCall *call, int r, BrokerError *err) {
        broker_error_ensure(err, r, NULL);
        return varlink_call_error_broker(call, err->code, err->device, err->message);
}

static int check_parameters(VarlinkCall *call, json_t *parameters, const VarlinkField *fields) {
        const char *bad = NULL;

        if (varlink_check_parameters(parameters, fields, &bad) < 0) {
                varlink_call_error_invalid_parameter(call, bad);
                return -EINVAL;
        }
        return 0;
}

/* --- ListDevices, GetDevice --- */

/* Replies are built as text from each device's cached JSON, framed in the
 * buffer that goes out (no copy), sized from the previous reply so a list
 * grows it once; the connection frees it once written, so an idle broker
 * keeps no list-sized buffer. */
static int reply_framed(VarlinkCall *call, TextBuf *b, size_t *size_hint) {
        text_literal(b, "}");
        if (b->failed) {
                text_done(b);
                return -ENOMEM;
        }
        if (size_hint)
                *size_hint = b->len + 1;
        return varlink_call_reply_framed(call, TAKE_PTR(b->data), b->len + 1);
}

#define TRIM_AFTER_BUILDING 64

/*
 * The last list's text, for the next caller who sees the devices the same
 * way (equal to policy, which includes the uid that decides whether holders
 * are shown), while nothing any device's JSON depends on has changed. Kept
 * only up to LIST_CACHE_MAX (about 300 devices), so an idle broker with many
 * devices keeps no list-sized buffer.
 */
#define LIST_CACHE_MAX (128u * 1024u)
static struct {
        Principal *viewer;
        uint64_t generation;
        char *text;                     /* {"devices":[...]} */
        size_t len;
} list_cache;

static void list_cache_drop(void) {
        list_cache.viewer = principal_free(list_cache.viewer);
        free(list_cache.text);
        list_cache.text = NULL;
        list_cache.len = 0;
}

static bool list_cache_fits(const Principal *viewer) {
        return list_cache.text && viewer && list_cache.generation == device_json_generation() &&
               principal_same_to_policy(list_cache.viewer, viewer);
}

static void list_cache_keep(const Principal *viewer, const char *text, size_t len) {
        list_cache_drop();
        if (!viewer || len > LIST_CACHE_MAX ||
            principal_new(viewer->uid, viewer->gid, 0, -EBADF, viewer->groups, viewer->n_groups, viewer->unit,
                          &list_cache.viewer) < 0)
                return;
        list_cache.text = malloc(len);
        if (!list_cache.text)
                return list_cache_drop();
        memcpy(list_cache.text, text, len);
        list_cache.len = len;
        list_cache.generation = device_json_generation();
}

static int method_list_devices(VarlinkCall *call, json_t *parameters, void *userdata) {
        static size_t size_hint;
        const Principal *viewer = call_viewer(call);
        Manager *m = userdata;
        Device *const *devices;
        TextBuf b = {};
        size_t n = 0, built = 0, body;
        bool complete = true;
        int r;

        if (check_parameters(call, parameters, (const VarlinkField[]) { {} }) < 0)
                return 0;

        text_reserve(&b, size_hint);
        text_literal(&b, VARLINK_REPLY_PREFIX);
        body = b.len;
        if (list_cache_fits(viewer)) {
                text_append(&b, list_cache.text, list_cache.len);
                return reply_framed(call, &b, &size_hint);
        }

        devices = inventory_devices(manager_inventory(m), &n);
        text_literal(&b, "{\"devices\":[");
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        text_literal(&b, ",");
                r = device_json_append(m, devices[i], i, viewer, &b);
                if (r > 0)
                        built++;
                complete = complete && r >= 0;
        }
        text_literal(&b, "]}");
        if (complete && !b.failed)
                list_cache_keep(viewer, b.data + body, b.len - body);
        r = reply_framed(call, &b, &size_hint);
        /* Building many devices' texts leaves the pages of its temporaries
         * between the ones kept: give them back, once. */
        if (built >= TRIM_AFTER_BUILDING)
                (void) malloc_trim(0);
        return r;
}

static int method_get_device(VarlinkCall *call, json_t *parameters, void *userdata) {
        static const VarlinkField fields[] = {
                { "address", VARLINK_TYPE_STRING },
                {}
        };
        BrokerError err = {};
        Manager *m = userdata;
        Device *d = NULL;
        TextBuf b = {};
        int r;

        if (check_parameters(call, parameters, fields) < 0)
                return 0;

        r = manager_get_device(m, json_string_value(json_object_get(parameters, "address")), &d, &err);
        if (r < 0)
                return reply_broker_error(call, r, &err);

        text_literal(&b, VARLINK_REPLY_PREFIX "{\"device\":");
        (void) device_json_append(m, d, SIZE_MAX, call_viewer(call), &b);
        text_literal(&b, "}");
        return reply_framed(call, &b, NULL);
}

/* --- Acquire, Release --- */

/* A list of device addresses as the core wants it: strings, at most
 * BROKER_VARLINK_MAX_DEVICES_PER_CALL, no address twice (in any spelling). */
static int decode_devices(json_t *array, bool allow_empty, char ***ret, BrokerError *err) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = json_array_size(array), i;
        char seen[BROKER_VARLINK_MAX_DEVICES_PER_CALL][16];
        json_t *v;

        if (n == 0 && !allow_empty)
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL, "no devices given");
        if (n > BROKER_VARLINK_MAX_DEVICES_PER_CALL)
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                        "%zu devices given, at most %d per call", n,
                                        BROKER_VARLINK_MAX_DEVICES_PER_CALL);

        json_array_foreach(array, i, v) {
                const char *s = json_string_value(v);

                if (!s)
                        return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                                "devices[%zu] is not a string", i);
                /* Unparseable addresses are the core's to report; compare them verbatim. */
                if (pci_address_normalize(s, seen[i]) < 0)
                        snprintf(seen[i], sizeof(seen[i]), "%s", s);
                for (size_t j = 0; j < i; j++)
                        if (streq(seen[i], seen[j]))
                                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, seen[i],
                                                        "%s is listed twice", seen[i]);
                if (strv_extend(&l, s) < 0)
                        return -ENOMEM;
        }
        if (!l && !(l = calloc(1, sizeof(char *))))
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

static void text_u64(TextBuf *b, uint64_t v) {
        char buf[24];

        FmtBuf f = fmt_buf(buf, sizeof(buf));
        fmt_u64(&f, v);
        text_append(b, buf, fmt_len(&f, buf));
}

/* The reply's text as json_write_compact() made it of the same object, key
 * for key, written directly: the reply of every Acquire. Addresses are
 * normalized (DDDD:BB:DD.F), so nothing needs escaping. */
void varlink_broker_acquire_reply_text(TextBuf *b, AcquireMode mode, const AcquireReply *reply) {
        text_literal(b, "{\"session\":");
        text_u64(b, reply->session_id);
        text_literal(b, ",\"iommuFileDescriptor\":0,\"devices\":[");
        for (size_t i = 0; i < reply->n_devices; i++) {
                const AcquiredDevice *a = &reply->devices[i];

                if (i > 0)
                        text_literal(b, ",");
                text_literal(b, "{\"address\":\"");
                text_puts(b, a->address);
                text_literal(b, "\",\"fileDescriptor\":");
                text_u64(b, i + 1);
                if (mode != ACQUIRE_MODE_UNBOUND) {
                        text_literal(b, ",\"devId\":");
                        text_u64(b, a->dev_id);
                }
                if (mode == ACQUIRE_MODE_ATTACHED) {
                        text_literal(b, ",\"hwptId\":");
                        text_u64(b, a->hwpt_id);
                }
                text_literal(b, "}");
        }
        text_literal(b, "]");
        if (mode == ACQUIRE_MODE_ATTACHED) {
                text_literal(b, ",\"ioasId\":");
                text_u64(b, reply->ioas_id);
        }
        if (reply->memlock_limit >= (uint64_t) INT64_MAX)
                text_literal(b, ",\"memlockLimit\":-1");
        else if (reply->memlock_limit != 0) {
                text_literal(b, ",\"memlockLimit\":");
                text_u64(b, reply->memlock_limit);
        }
        text_literal(b, "}");
}

/* Index 0 is the iommufd, the devices follow in reply order. */
static int send_acquire_reply(VarlinkCall *call, AcquireMode mode, const AcquireReply *reply) {
        int fds[1 + BROKER_VARLINK_MAX_DEVICES_PER_CALL];
        TextBuf b = {};

        if (reply->n_devices > BROKER_VARLINK_MAX_DEVICES_PER_CALL)
                return -E2BIG;
        fds[0] = reply->iommufd;
        for (size_t i = 0; i < reply->n_devices; i++)
                fds[i + 1] = reply->devices[i].fd;

        text_reserve(&b, 160 + 96 * reply->n_devices);
        text_literal(&b, VARLINK_REPLY_PREFIX);
        varlink_broker_acquire_reply_text(&b, mode, reply);
        text_literal(&b, "}");
        if (b.failed) {
                text_done(&b);
                return -ENOMEM;
        }
        return varlink_call_reply_framed_with_fds(call, TAKE_PTR(b.data), b.len + 1, fds, reply->n_devices + 1);
}

/* An Acquire whose reply waits for polkit. Freed with the call: after its
 * reply, or when the connection closes first (then the job is cancelled). */
typedef struct PendingAcquire {
        VarlinkCall *call;
        AcquireMode mode;
        AcquireJob *job;
} PendingAcquire;

static void pending_acquire_destroy(VarlinkCall *call, void *userdata) {
        PendingAcquire *p = userdata;

        acquire_job_cancel(p->job);
        free(p);
}

static void on_acquire_done(int r, AcquireReply *reply, BrokerError *err, void *userdata) {
        PendingAcquire *p = userdata;
        VarlinkCall *call = p->call;

        p->job = NULL;          /* finishing; the reply below may free p */
        if (r < 0) {
                (void) reply_broker_error(call, r, err);
                return;
        }
        /* The reply holds duplicates until sent; ours close here either way,
         * and the lease stays with the session (which ends it on disconnect). */
        r = send_acquire_reply(call, p->mode, reply);
        acquire_reply_done(reply);
        if (r < 0)
                log_warning_errno(r, "varlink: could not send the Acquire reply: %m");
}

static int method_acquire(VarlinkCall *call, json_t *parameters, void *userdata) {
        static const VarlinkField fields[] = {
                { "devices", VARLINK_TYPE_ARRAY },
                { "mode", VARLINK_TYPE_STRING, .optional = true },
                { "managed", VARLINK_TYPE_BOOL, .optional = true },
                { "allowInteractiveAuthentication", VARLINK_TYPE_BOOL, .optional = true },
                {}
        };
        _cleanup_strv_free_ char **devices = NULL;
        AcquireRequest req = { .mode = ACQUIRE_MODE_ATTACHED };
        BrokerError err = {};
        Session *s = call_session(call);
        Manager *m = userdata;
        PendingAcquire *p;
        const char *mode;
        int r;

        if (check_parameters(call, parameters, fields) < 0)
                return 0;
        if (!s)
                return -ENOTCONN;
        /* Nobody would receive the fds: refuse rather than lease a device
         * to a reply that is never sent. */
        if (varlink_call_is_oneway(call)) {
                log_notice("varlink: refusing a oneway Acquire from uid %u: nobody would receive its fds.",
                           (unsigned) session_principal(s)->uid);
                return varlink_call_error_invalid_parameter(call, "oneway");
        }

        mode = json_string_value(json_object_get(parameters, "mode"));
        if (mode) {
                req.mode = acquire_mode_from_string(mode);
                if (req.mode < 0)
                        return varlink_call_error_invalid_parameter(call, "mode");
        }
        r = decode_devices(json_object_get(parameters, "devices"), false, &devices, &err);
        if (r < 0)
                return reply_broker_error(call, r, &err);
        req.devices = devices;
        req.managed = json_is_true(json_object_get(parameters, "managed"));
        req.allow_interactive = json_is_true(json_object_get(parameters, "allowInteractiveAuthentication"));

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (PendingAcquire) { .call = call, .mode = req.mode };
        varlink_call_set_destroy(call, pending_acquire_destroy, p);
        /* Finishes at once unless polkit must be asked; then the call stays pending. */
        r = acquire_job_start(m, manager_polkit(m), s, &req, NULL, on_acquire_done, p, &p->job);
        return r < 0 ? r : 0;
}

static int method_release(VarlinkCall *call, json_t *parameters, void *userdata) {
        static const VarlinkField fields[] = {
                { "devices", VARLINK_TYPE_ARRAY, .optional = true },
                {}
        };
        _cleanup_strv_free_ char **devices = NULL;
        Session *s = call_session(call);
        Manager *m = userdata;
        BrokerError err = {};
        json_t *array;
        int r;

        if (check_parameters(call, parameters, fields) < 0)
                return 0;
        if (!s)
                return -ENOTCONN;

        array = json_object_get(parameters, "devices");
        if (json_is_array(array)) {
                r = decode_devices(array, true, &devices, &err);
                if (r < 0)
                        return reply_broker_error(call, r, &err);
        }
        /* Its events after its reply, as an Acquire's. */
        manager_hold_events(m);
        r = session_release(s, devices, &err);
        if (r < 0)
                r = reply_broker_error(call, r, &err);
        else
                r = varlink_call_reply(call, NULL);
        manager_release_events(m);
        return r;
}

/* --- Revoke --- */

/* A Revoke whose reply waits for polkit or for the holder to let go. */
typedef struct PendingRevoke {
        VarlinkCall *call;
        RevokeCall *revoke;
} PendingRevoke;

static void on_revoke_call_gone(VarlinkCall *call, void *userdata) {
        PendingRevoke *p = userdata;

        /* The caller hung up: polkit stops asking; an authorized revoke goes on. */
        revoke_call_cancel(p->revoke);
        free(p);
}

static void on_revoke_done(int result, const BrokerError *err, void *userdata) {
        PendingRevoke *p = userdata;
        VarlinkCall *call = p->call;
        BrokerError e = err ? *err : (BrokerError) {};

        varlink_call_set_destroy(call, NULL, NULL);
        free(p);
        if (result < 0)
                (void) reply_broker_error(call, result, &e);
        else
                (void) varlink_call_reply(call, NULL);
}

static int method_revoke(VarlinkCall *call, json_t *parameters, void *userdata) {
        static const VarlinkField fields[] = {
                { "device", VARLINK_TYPE_STRING },
                { "timeoutSeconds", VARLINK_TYPE_INT, .optional = true },
                { "allowInteractiveAuthentication", VARLINK_TYPE_BOOL, .optional = true },
                {}
        };
        Manager *m = userdata;
        const Principal *caller = call_viewer(call);
        json_t *timeout = json_object_get(parameters, "timeoutSeconds");
        json_int_t seconds = REVOKE_DEFAULT_TIMEOUT_SEC;
        PendingRevoke *p;
        int r;

        if (check_parameters(call, parameters, fields) < 0)
                return 0;
        if (json_is_integer(timeout)) {
                seconds = json_integer_value(timeout);
                if (seconds <= 0 || seconds > REVOKE_MAX_TIMEOUT_SEC)
                        return varlink_call_error_invalid_parameter(call, "timeoutSeconds");
        }
        if (!caller)
                return -ENOTCONN;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->call = call;
        varlink_call_set_destroy(call, on_revoke_call_gone, p);
        /* Answered by on_revoke_done(), perhaps already. */
        r = revoke_call_start(m, manager_polkit(m), &(RevokeRequest) {
                .device = json_string_value(json_object_get(parameters, "device")),
                .timeout_usec = (uint64_t) seconds * 1000000ULL,
                .allow_interactive = json_is_true(json_object_get(parameters, "allowInteractiveAuthentication")),
                .caller = caller,
        }, on_revoke_done, p, &p->revoke);
        if (r < 0) {
                varlink_call_set_destroy(call, NULL, NULL);
                free(p);
        }
        return r < 0 ? r : 0;
}

/* --- Monitor --- */

/*
 * One subscription to the core for all Monitor streams of a manager. Streams
 * whose callers look the same to policy see the same text, so they form one
 * view and share one log (varlink-broadcast.h): each event is serialized
 * and framed once per view, and a stream costs an event nothing until the
 * flush writes it what it has not read.
 */
typedef struct Monitor Monitor;

typedef struct MonitorView {
        struct MonitorView *next;
        VarlinkBroadcast *log;
        Monitor *monitors;              /* the first one's caller is the view's */
} MonitorView;

typedef struct MonitorHub {
        Manager *manager;
        Subscription *subscription;
        MonitorView *views;
        TextBuf scratch;                /* an event's text, kept for the next */
        struct MonitorHub *next;
        bool dispatching, orphaned;
} MonitorHub;

struct Monitor {
        VarlinkCall *call;
        MonitorHub *hub;
        MonitorView *view;
        Monitor *prev, *next;
};

static MonitorHub *hubs;

static bool event_is_lease(BrokerEventType t) {
        return t == BROKER_EVENT_LEASE_ACQUIRED || t == BROKER_EVENT_LEASE_ENDED || t == BROKER_EVENT_LEASE_RELEASING;
}

static void append_string_member(TextBuf *b, const char *key, const char *value) {
        char quoted[512];

        text_puts(b, ",\"");
        text_puts(b, key);
        text_puts(b, "\":");
        text_puts(b, json_quote(value, quoted, sizeof(quoted)) ? quoted : "\"\"");
}

static int event_text(Manager *m, const BrokerEvent *ev, const Principal *viewer, TextBuf *b) {
        char buf[64];

        text_puts(b, "{\"event\":\"");
        text_puts(b, strna(broker_event_type_to_string(ev->type)));
        text_puts(b, "\"");
        if (ev->address)
                append_string_member(b, "address", ev->address);
        if (ev->device && (ev->type == BROKER_EVENT_DEVICE_ADDED || ev->type == BROKER_EVENT_DEVICE_CHANGED)) {
                text_puts(b, ",\"device\":");
                /* The cache lives in the Device; filling it changes nothing else. */
                (void) device_json_append(m, (Device *) ev->device, SIZE_MAX, viewer, b);
        }
        if (event_is_lease(ev->type)) {
                /* Who holds what is shown to root and to the holder's own uid only. */
                if (viewer && (viewer->uid == 0 || viewer->uid == ev->holder_uid)) {
                        FmtBuf f = fmt_buf(buf, sizeof(buf));

                        fmt_str(&f, ",\"session\":");
                        fmt_u64(&f, ev->session_id);
                        text_append(b, buf, fmt_len(&f, buf));
                }
                if (ev->reason)
                        append_string_member(b, "reason", ev->reason);
        }
        text_puts(b, "}");
        return b->failed ? -ENOMEM : 0;
}

static void view_close_streams(MonitorView *view) {
        for (Monitor *mon = view->monitors; mon; mon = mon->next)
                varlink_connection_close(varlink_call_get_connection(mon->call));
}

static void hub_free(MonitorHub *hub) {
        text_done(&hub->scratch);
        free(hub);
}

static void hub_on_event(Manager *m, const BrokerEvent *ev, void *userdata) {
        MonitorHub *hub = userdata;
        TextBuf *scratch = &hub->scratch;

        hub->dispatching = true;
        for (MonitorView *view = hub->views; view; view = view->next) {
                int r;

                scratch->len = 0;
                scratch->failed = false;
                r = event_text(m, ev, call_viewer(view->monitors->call), scratch);
                if (r >= 0)
                        r = varlink_broadcast_append(view->log, scratch->data, scratch->len);
                if (r < 0) {
                        log_warning("varlink: out of memory, closing Monitor streams.");
                        view_close_streams(view);
                }
        }
        hub->dispatching = false;
        if (hub->orphaned)
                hub_free(hub);
}

static MonitorHub *hub_get(Manager *m) {
        MonitorHub *hub;

        for (hub = hubs; hub; hub = hub->next)
                if (hub->manager == m)
                        return hub;
        hub = calloc(1, sizeof(*hub));
        if (!hub)
                return NULL;
        hub->manager = m;
        if (manager_subscribe(m, hub_on_event, hub, &hub->subscription) < 0) {
                free(hub);
                return NULL;
        }
        hub->next = hubs;
        hubs = hub;
        return hub;
}

/* The last stream went away: unsubscribe; free now or after the dispatch. */
static void hub_release(MonitorHub *hub) {
        if (hub->views)
                return;
        for (MonitorHub **p = &hubs; *p; p = &(*p)->next)
                if (*p == hub) {
                        *p = hub->next;
                        break;
                }
        hub->subscription = subscription_free(hub->subscription);
        if (hub->dispatching)
                hub->orphaned = true;
        else
                hub_free(hub);
}

static void view_free(MonitorHub *hub, MonitorView *view) {
        for (MonitorView **p = &hub->views; *p; p = &(*p)->next)
                if (*p == view) {
                        *p = view->next;
                        break;
                }
        varlink_broadcast_free(view->log);
        free(view);
}

/* The view of callers who see what viewer sees, made if there is none. */
static MonitorView *view_get(MonitorHub *hub, VarlinkServer *server, const Principal *viewer) {
        MonitorView *view;

        for (view = hub->views; view; view = view->next)
                if (principal_same_to_policy(call_viewer(view->monitors->call), viewer))
                        return view;
        view = calloc(1, sizeof(*view));
        if (!view)
                return NULL;
        if (varlink_broadcast_new(server, &view->log) < 0) {
                free(view);
                return NULL;
        }
        view->next = hub->views;
        hub->views = view;
        return view;
}

static void monitor_unlink(Monitor *mon) {
        MonitorView *view = mon->view;

        if (mon->prev)
                mon->prev->next = mon->next;
        else
                view->monitors = mon->next;
        if (mon->next)
                mon->next->prev = mon->prev;
        if (!view->monitors)
                view_free(mon->hub, view);
}

static void monitor_destroy(VarlinkCall *call, void *userdata) {
        Monitor *mon = userdata;
        MonitorHub *hub = mon->hub;

        varlink_broadcast_detach(mon->view->log, call);
        monitor_unlink(mon);
        free(mon);
        hub_release(hub);
}

static int method_monitor(VarlinkCall *call, json_t *parameters, void *userdata) {
        VarlinkServer *server = varlink_connection_get_server(varlink_call_get_connection(call));
        const Principal *viewer = call_viewer(call);
        Manager *m = userdata;
        MonitorView *view = NULL;
        MonitorHub *hub;
        Monitor *mon;
        int r;

        if (check_parameters(call, parameters, (const VarlinkField[]) { {} }) < 0)
                return 0;
        if (!viewer)
                return -ENOTCONN;

        hub = hub_get(m);
        view = hub ? view_get(hub, server, viewer) : NULL;
        mon = view ? calloc(1, sizeof(*mon)) : NULL;
        if (!mon) {
                if (view && !view->monitors)
                        view_free(hub, view);
                if (hub)
                        hub_release(hub);
                return -ENOMEM;
        }
        *mon = (Monitor) { .call = call, .hub = hub, .view = view, .next = view->monitors };
        if (view->monitors)
                view->monitors->prev = mon;
        view->monitors = mon;
        varlink_call_set_destroy(call, monitor_destroy, mon);
        r = varlink_call_notify(call, json_pack("{s:s}", "event", "ready"));
        if (r < 0)
                return r;
        /* After "ready": events follow it. */
        return varlink_broadcast_attach(view->log, call);
}

/* --- Setup --- */

static const VarlinkMethod broker_methods[] = {
        { "ListDevices", method_list_devices, 0 },
        { "GetDevice", method_get_device, 0 },
        { "Acquire", method_acquire, 0 },
        { "Release", method_release, 0 },
        { "Revoke", method_revoke, 0 },
        { "Monitor", method_monitor, VARLINK_METHOD_MORE },
        {}
};

static const VarlinkInterface broker_interface = {
        .name = BROKER_VARLINK_INTERFACE,
        .description = broker_varlink_idl,
        .methods = broker_methods,
};

const VarlinkInterface *varlink_broker_interface(void) {
        return &broker_interface;
}

static int on_connect(VarlinkConnection *c, Principal **principal, void *userdata) {
        Manager *m = userdata;
        Session *s = NULL;
        uid_t uid = (*principal)->uid;
        int r;

        r = session_new(m, TAKE_PTR(*principal), &s);
        if (r < 0)
                return log_warning_errno(r, "varlink: cannot start a session for uid %u: %m", (unsigned) uid);
        varlink_connection_set_userdata(c, s);
        return 0;
}

static void on_disconnect(VarlinkConnection *c, void *userdata) {
        Session *s = varlink_connection_get_userdata(c);

        varlink_connection_set_userdata(c, NULL);
        session_destroy(s);
}

/* A connection that holds leases stays open however quiet it is: a VMM may
 * not say anything for days, and closing would take its devices away. */
static bool on_keep_open(VarlinkConnection *c, void *userdata) {
        Session *s = varlink_connection_get_userdata(c);

        return s && session_n_leases(s) > 0;
}

int varlink_broker_start(Manager *m, const char *listen_path, const VarlinkLimits *limits, VarlinkServer **ret) {
        _cleanup_(varlink_server_freep) VarlinkServer *s = NULL;
        int r;

        if (!m || !ret)
                return -EINVAL;

        r = varlink_server_new(manager_event(m), limits, &s);
        if (r < 0)
                return r;
        /* One account with the D-Bus front end's sessions. */
        r = varlink_server_set_quota(s, manager_quota(m));
        if (r < 0)
                return r;
        r = varlink_server_set_info(s, BROKER_PRODUCT, BROKER_PRODUCT, PACKAGE_VERSION, BROKER_URL);
        if (r < 0)
                return r;
        r = varlink_server_add_interface(s, &broker_interface, m);
        if (r < 0)
                return r;
        varlink_server_set_hooks(s, on_connect, on_disconnect, m);
        varlink_server_set_keep_open_hook(s, on_keep_open);

        if (listen_path)
                r = varlink_server_listen_path(s, listen_path);
        else {
                r = varlink_server_listen_fds(s);
                if (r == -ENOENT)
                        return log_error_errno(r, "varlink: no socket passed by the service manager; "
                                                  "give a socket path to listen on");
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

VarlinkServer *varlink_broker_free(VarlinkServer *s) {
        return varlink_server_free(s);
}
