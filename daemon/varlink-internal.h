/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by varlink.c, varlink-call.c and varlink-listen.c only; everyone
 * else uses varlink.h, which keeps these types opaque. */

#include "error.h"
#include "quota.h"
#include "varlink-quota.h"
#include "varlink-wire.h"
#include "varlink.h"

#define MAX_LISTENERS 16
#define MAX_INTERFACES 8

/* A queued message; only varlink.c looks inside. */
typedef struct Output Output;

struct VarlinkCall {
        VarlinkConnection *conn;
        const char *method;             /* owned by message */
        json_t *message;                /* the call as received; owns parameters */
        json_t *parameters;
        bool oneway, more, streaming;
        bool in_handler, done;
        void (*destroy)(VarlinkCall *call, void *userdata);
        void *destroy_userdata;
};

struct VarlinkConnection {
        VarlinkServer *server;
        VarlinkConnection *prev, *next;
        VarlinkConnection *uid_prev, *uid_next;  /* quota->connections */
        int fd;
        uid_t uid;
        UidQuota *quota;                /* counted while not dead */
        Principal *principal;
        void *userdata;
        bool connected;                 /* connect hook ran: disconnect hook is due */

        VarlinkReader *reader;
        sd_event_source *io_source, *idle_source, *defer_source;

        Output *out_head, *out_tail;
        size_t out_bytes;

        VarlinkCall *current;
        uint32_t io_events;             /* what io_source waits for now */
        bool read_eof, close_after_flush, dead;
        bool processing;                /* in connection_process(): events are set once, after */
        bool more_buffered;             /* complete calls wait for the next iteration */
        /* Stream notifications wait in the queue for the server's flush at
         * the next iteration, merged into one write (server->flush_head). */
        VarlinkConnection *flush_prev, *flush_next;
        bool flush_queued;
};

typedef struct RegisteredInterface {
        const VarlinkInterface *iface;
        void *userdata;
} RegisteredInterface;

struct VarlinkServer {
        sd_event *event;
        VarlinkLimits limits;
        char *vendor, *product, *version, *url;

        RegisteredInterface interfaces[MAX_INTERFACES];
        size_t n_interfaces;

        VarlinkConnectHook connect_hook;
        VarlinkDisconnectHook disconnect_hook;
        VarlinkKeepOpenHook keep_open_hook;
        void *hook_userdata;

        int listen_fds[MAX_LISTENERS];
        sd_event_source *listen_sources[MAX_LISTENERS];
        size_t n_listeners;
        char *bound_path;               /* unlinked on free */

        VarlinkConnection *connections;
        size_t n_connections;           /* in the list, dead ones included */
        size_t n_live;                  /* not dead: charged to quota */
        UidQuotaTable *quotas;          /* per uid: queued output, connections */
        Quota *quota;                   /* the caps: shared with D-Bus, or own_quota */
        Quota *own_quota;
        /* Write what the connections on flush_head queued: at the next
         * iteration, or (a burst) VARLINK_STREAM_FLUSH_USEC after the last. */
        sd_event_source *flush_source, *flush_timer;
        VarlinkConnection *flush_head;
        uint64_t last_flush_usec;
};

/* varlink-output.c */

/* Queue one message (taking msg) with duplicates of fds, and try to send it. */
int varlink_connection_send(VarlinkConnection *c, json_t *msg, const int *fds, size_t n_fds);
/* The same for a message already framed (data ends with its NUL; len counts
 * it); takes data. */
int varlink_connection_send_encoded(VarlinkConnection *c, char *data, size_t len, const int *fds, size_t n_fds);

struct VarlinkNotification {
        unsigned n_ref;
        size_t len;                     /* counting the NUL */
        char data[];
};

/* A stream notification (a reference taken): queued, and written together
 * with everything else queued for the connection since the last flush (one
 * write per connection for all events of an Acquire or a Release, not one
 * per event). */
int varlink_connection_send_deferred(VarlinkConnection *c, VarlinkNotification *n);
/* Write as much queued output as the socket takes: 0 (done, or the socket
 * is full), negative errno if the connection is broken. */
int varlink_connection_flush(VarlinkConnection *c);
/* Free everything queued, unsent. */
void varlink_connection_drop_output(VarlinkConnection *c);
/* Take c off the server's flush list (it goes away). */
void varlink_connection_unqueue_flush(VarlinkConnection *c);
/* The server's flush sources, off until something is queued. */
int varlink_server_add_flush(VarlinkServer *s);

/* varlink.c */

/* {error, parameters}; takes parameters (NULL: {}). NULL on ENOMEM. */
json_t *varlink_error_message(const char *error, json_t *parameters);
/* {message, device?} of an io.iommufd.Broker error. NULL on ENOMEM. */
json_t *varlink_broker_error_parameters(BrokerErrorCode code, const char *device, const char *message);

/* For varlink-output.c: */
void varlink_connection_kill(VarlinkConnection *c);
/* Run the calls the order rules let run now. */
void varlink_connection_process(VarlinkConnection *c);
/* Wait for input and (for queued output) writability as needed. */
void varlink_connection_update_events(VarlinkConnection *c);

/* varlink-call.c */

/* Run the destroy callback and free; for a call that is over or orphaned. */
void varlink_call_free(VarlinkCall *call);

/* 0 if a new connection of uid fits the quota's caps; else -EUSERS with err
 * (LimitExceeded) naming the cap. err may be NULL. */
int varlink_server_admit(VarlinkServer *s, uid_t uid, BrokerError *err);

/* varlink-listen.c */

/* Re-enable accept() paused at the fd limit: a connection just went away. */
void varlink_server_resume_accept(VarlinkServer *s);
/* Close every listening socket and unlink the path we bound. */
void varlink_server_close_listeners(VarlinkServer *s);
