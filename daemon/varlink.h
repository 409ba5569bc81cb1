/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A small varlink server on sd-event and jansson (wire format: protocol/
 * varlink-wire.h). It knows nothing of the broker: varlink-broker.c gives it
 * the io.iommufd.Broker method table and connect/disconnect hooks that create
 * and destroy a Session.
 *
 * Semantics a client sees:
 *  - Calls on one connection are handled strictly in order: while a call is
 *    being answered (a handler that replies later), later calls wait.
 *  - While a streaming call (a VARLINK_METHOD_MORE method called with
 *    "more": true, i.e. Monitor) is active, every later call on the same
 *    connection is answered at once with io.iommufd.Broker.LimitExceeded
 *    ("a streaming call is active on this connection; use another
 *    connection"); oneway calls are dropped. The stream ends with the
 *    connection.
 *  - "more" on a method that does not stream gets its one ordinary reply, as
 *    the varlink spec allows; a streaming method called without "more" gets
 *    org.varlink.service.ExpectedMore.
 *  - oneway calls run and get no reply, errors included.
 *  - Fds sent along with a call are closed on arrival (no method of this
 *    server takes any) and the call proceeds.
 *  - Protocol errors (not JSON, not an object, "method" missing or not a
 *    string, "oneway"/"more" not bool or both set, a message over
 *    max_message, too many or truncated fds) are answered with
 *    io.iommufd.Broker.InvalidParameter (LimitExceeded for an oversized
 *    message) carrying a message, then the connection is closed.
 *  - Unknown interface: org.varlink.service.InterfaceNotFound {interface};
 *    unknown method: org.varlink.service.MethodNotFound {method}; wrong or
 *    unknown parameters: org.varlink.service.InvalidParameter {parameter}.
 *  - A handler failing with a bare errno is reported as
 *    io.iommufd.Broker.KernelError with strerror.
 *  - Every connection is charged to a Quota (quota.h: the one the D-Bus
 *    front end charges too, see varlink_server_set_quota()) from accept to
 *    close. One its caps refuse (too many clients of the uid, or of all
 *    users but root) gets a LimitExceeded error message saying why and is
 *    closed. Counting is O(1) per connection.
 *  - At most VARLINK_ACCEPTS_PER_WAKEUP accept()s and
 *    VARLINK_CALLS_PER_WAKEUP calls of one connection per event loop
 *    iteration, so no peer keeps the loop to itself.
 *  - A connection whose replies sit unread in a full socket buffer is not
 *    read from (its next calls wait in the kernel) until it reads; pending
 *    calls per connection are thus one plus what max_message buffers.
 *  - A connection without an active call or stream and without queued output
 *    is closed after idle_timeout_usec.
 *  - Notifications shared by many streams (varlink-broadcast.h: Monitor)
 *    are written at the next loop iteration, all that a stream has not read
 *    in one write; while they keep coming, at most once per
 *    VARLINK_STREAM_FLUSH_USEC, an interval that doubles while the burst
 *    lasts, up to VARLINK_STREAM_FLUSH_MAX_USEC (or until a stream's unread
 *    part reaches half of max_stream_output), and is back to the shortest
 *    after a pause. A stream is late by at most that much, and a burst costs
 *    each stream one write per interval, not one per notification.
 *  - Queued output above max_output (max_stream_output while a stream is
 *    active: a Monitor subscriber that falls behind), or a uid's queued
 *    output above max_output_per_uid, closes the connection that queues more.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "broker-errors.h"
#include "principal.h"
#include "quota.h"
#include "util.h"

#define VARLINK_DEFAULT_MAX_MESSAGE             (64u * 1024u)
#define VARLINK_DEFAULT_IDLE_TIMEOUT_USEC       (5ull * 60ull * 1000000ull)
#define VARLINK_DEFAULT_MAX_OUTPUT              (4u * 1024u * 1024u)
#define VARLINK_DEFAULT_MAX_OUTPUT_PER_UID      (16u * 1024u * 1024u)
#define VARLINK_DEFAULT_MAX_STREAM_OUTPUT       (256u * 1024u)
#define VARLINK_ACCEPTS_PER_WAKEUP              16u
#define VARLINK_CALLS_PER_WAKEUP                8u
#define VARLINK_STREAM_FLUSH_USEC               (5ull * 1000ull)
#define VARLINK_STREAM_FLUSH_MAX_USEC           (20ull * 1000ull)
#define VARLINK_LISTEN_BACKLOG                  128     /* iommufd-broker.socket: Backlog= */

#define VARLINK_SERVICE_INTERFACE "org.varlink.service"

typedef struct VarlinkLimits {
        size_t max_message;                     /* bytes of one incoming message; 0: 64 KiB */
        uint64_t idle_timeout_usec;             /* 0: 5 min; UINT64_MAX: never */
        size_t max_output;                      /* queued reply bytes per connection; 0: 4 MiB */
        size_t max_output_per_uid;              /* 0: 16 MiB */
        size_t max_stream_output;               /* queued bytes while streaming; 0: 256 KiB */
} VarlinkLimits;

/* The defaults above, filled in (for main() to adjust from the command line). */
VarlinkLimits varlink_limits_default(void);

typedef struct VarlinkServer VarlinkServer;
typedef struct VarlinkConnection VarlinkConnection;
typedef struct VarlinkCall VarlinkCall;

/* Reply with varlink_call_reply*() / _error*() now or later (keep the call),
 * and return 0; or return a negative errno without replying (KernelError).
 * parameters is never NULL (an empty object if the call had none); it is
 * valid while the call lives. userdata: the interface's. */
typedef int (*VarlinkMethodHandler)(VarlinkCall *call, json_t *parameters, void *userdata);

enum {
        VARLINK_METHOD_MORE = 1u << 0,  /* streams replies; must be called with "more" */
};

typedef struct VarlinkMethod {
        const char *name;               /* without the interface: "Acquire" */
        VarlinkMethodHandler handler;
        unsigned flags;
} VarlinkMethod;

typedef struct VarlinkInterface {
        const char *name;               /* "io.iommufd.Broker" */
        const char *description;        /* the IDL text, for GetInterfaceDescription */
        const VarlinkMethod *methods;   /* terminated by an entry with name NULL */
} VarlinkInterface;

/* Called for every accepted connection before its first message. May take
 * *principal (TAKE_PTR, e.g. into session_new()); a negative return refuses
 * the connection. */
typedef int (*VarlinkConnectHook)(VarlinkConnection *c, Principal **principal, void *userdata);
/* Called once when the connection goes away, after its calls were destroyed. */
typedef void (*VarlinkDisconnectHook)(VarlinkConnection *c, void *userdata);
/* Asked when the idle timeout fires: true keeps the connection open (it holds
 * state that must not end just because the client is quiet). */
typedef bool (*VarlinkKeepOpenHook)(VarlinkConnection *c, void *userdata);

int varlink_server_new(sd_event *event, const VarlinkLimits *limits, VarlinkServer **ret);
VarlinkServer *varlink_server_free(VarlinkServer *s);   /* closes every connection */
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkServer *, varlink_server_free);

/* Charge connections to q (borrowed; it must outlive the server) instead of
 * the server's own quota with the default caps: the broker passes the
 * manager's, so varlink connections and D-Bus sessions share one account.
 * Only before the first connection: -EBUSY after. */
int varlink_server_set_quota(VarlinkServer *s, Quota *q);

/* What org.varlink.service.GetInfo says. Strings are copied. */
int varlink_server_set_info(VarlinkServer *s, const char *vendor, const char *product, const char *version,
                            const char *url);
/* iface (and its strings) must outlive the server. */
int varlink_server_add_interface(VarlinkServer *s, const VarlinkInterface *iface, void *userdata);
void varlink_server_set_hooks(VarlinkServer *s, VarlinkConnectHook connect, VarlinkDisconnectHook disconnect,
                              void *userdata);
void varlink_server_set_keep_open_hook(VarlinkServer *s, VarlinkKeepOpenHook keep_open);

/* Listen on a path: a stale socket there is replaced (a live one gives
 * -EADDRINUSE), the parent directory is created if missing, the socket is
 * made 0666 (authorization is per call) and unlinked again on free. */
int varlink_server_listen_path(VarlinkServer *s, const char *path);
/* Take every AF_UNIX stream listening socket from sd_listen_fds(); other
 * passed fds are left alone. Returns the number taken, -ENOENT if none. */
int varlink_server_listen_fds(VarlinkServer *s);
/* How many fds the service manager passed ($LISTEN_FDS for this pid). Not
 * sd_listen_fds(): after a restart the range also holds the fd store's fds,
 * and those the manager did not re-adopt are closed by the time the front
 * ends start; sd_listen_fds() fails on any closed fd in the range. */
int varlink_passed_fds(void);
/* Take an already listening socket. */
int varlink_server_listen_fd(VarlinkServer *s, int fd);
/* Take an already connected socket as a new connection (tests, socketpair). */
int varlink_server_add_connection(VarlinkServer *s, int fd, VarlinkConnection **ret);

size_t varlink_server_n_connections(const VarlinkServer *s);
/* The org.varlink.service.GetInfo reply parameters. NULL on ENOMEM. */
json_t *varlink_server_info_json(const VarlinkServer *s);
const VarlinkInterface *varlink_server_find_interface(const VarlinkServer *s, const char *name);

/* Connections. */
VarlinkServer *varlink_connection_get_server(const VarlinkConnection *c);
void varlink_connection_set_userdata(VarlinkConnection *c, void *userdata);
void *varlink_connection_get_userdata(const VarlinkConnection *c);
/* The peer, unless the connect hook took it. */
const Principal *varlink_connection_get_principal(const VarlinkConnection *c);
uid_t varlink_connection_get_uid(const VarlinkConnection *c);
/* Close after the queued output is written (or at once if it cannot be). */
void varlink_connection_close(VarlinkConnection *c);

/* Calls. After the final reply (or error) of a call made outside its
 * handler, the call is freed at once: do not touch it again. */
VarlinkConnection *varlink_call_get_connection(const VarlinkCall *call);
const char *varlink_call_get_method(const VarlinkCall *call);     /* fully qualified */
bool varlink_call_wants_more(const VarlinkCall *call);
bool varlink_call_is_oneway(const VarlinkCall *call);

/* Called when the call goes away: after its final reply, or when the
 * connection closes under it (how a stream learns to unsubscribe). */
void varlink_call_set_destroy(VarlinkCall *call, void (*destroy)(VarlinkCall *call, void *userdata),
                              void *userdata);

/* The final reply. parameters: reference taken; NULL means {}. */
int varlink_call_reply(VarlinkCall *call, json_t *parameters);
/* Same, with fds sent in the same sendmsg(). The fds are duplicated: the
 * caller keeps (and closes) its own. */
int varlink_call_reply_with_fds(VarlinkCall *call, json_t *parameters, const int *fds, size_t n_fds);
/* A "continues": true reply of a streaming call. reference taken. */
int varlink_call_notify(VarlinkCall *call, json_t *parameters);
/* A final reply the handler framed itself: data is VARLINK_REPLY_PREFIX, the
 * parameters, "}" and a NUL, len counting the NUL. Takes data either way:
 * a large reply is built once, in the buffer that goes out. */
#define VARLINK_REPLY_PREFIX "{\"parameters\":"
int varlink_call_reply_framed(VarlinkCall *call, char *data, size_t len);
/* Same, with fds sent in the same sendmsg() (duplicated only if the reply
 * has to wait in the queue: the caller keeps its own). */
int varlink_call_reply_framed_with_fds(VarlinkCall *call, char *data, size_t len, const int *fds, size_t n_fds);
/* A final error reply; error is fully qualified. parameters: reference taken. */
int varlink_call_error(VarlinkCall *call, const char *error, json_t *parameters);
/* org.varlink.service.InvalidParameter {parameter}. */
int varlink_call_error_invalid_parameter(VarlinkCall *call, const char *parameter);
/* io.iommufd.Broker.<Name> {device (omitted if NULL or ""), message}. */
int varlink_call_error_broker(VarlinkCall *call, BrokerErrorCode code, const char *device, const char *message);

/* Checking parameters against a list of fields. Unknown fields and fields of
 * the wrong type are InvalidParameter; null counts as absent. */
typedef enum VarlinkType {
        VARLINK_TYPE_BOOL,
        VARLINK_TYPE_INT,
        VARLINK_TYPE_STRING,
        VARLINK_TYPE_ARRAY,
        VARLINK_TYPE_OBJECT,
} VarlinkType;

typedef struct VarlinkField {
        const char *name;
        VarlinkType type;
        bool optional;                  /* "?type" in the IDL */
} VarlinkField;

/* 0 if parameters fit fields (terminated by name NULL); else -EINVAL with
 * *ret_bad the first offending field name (borrowed from parameters or fields). */
int varlink_check_parameters(json_t *parameters, const VarlinkField *fields, const char **ret_bad);
