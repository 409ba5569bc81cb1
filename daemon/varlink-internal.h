/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by varlink.c, varlink-call.c and varlink-listen.c only; everyone
 * else uses varlink.h, which keeps these types opaque. */

#include "error.h"
#include "quota.h"
#include "varlink-broadcast.h"
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
        UidQuota *quota;                /* its uid's, in server->quota, while not dead */
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
        /* The broadcast a stream follows (varlink-broadcast.c): what of it
         * the peer has not been sent starts at bcast_pos, after out_head. */
        VarlinkBroadcast *bcast;
        VarlinkConnection *bcast_prev, *bcast_next;
        uint64_t bcast_pos;
        bool bcast_blocked;             /* the socket took less: the rest on EPOLLOUT */
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
        Quota *quota;                   /* the caps and per-uid entries: shared with D-Bus, or own_quota */
        Quota *own_quota;
        /* Write what the broadcasts on flush_head got: at the next
         * iteration, or (a burst) flush_interval_usec after the last. */
        sd_event_source *flush_source, *flush_timer;
        VarlinkBroadcast *flush_head;
        uint64_t last_flush_usec;
        uint64_t flush_interval_usec;   /* VARLINK_STREAM_FLUSH_USEC .. _MAX_USEC */
};

/* varlink-output.c */

/* Queue one message (taking msg) with duplicates of fds, and try to send it. */
int varlink_connection_send(VarlinkConnection *c, json_t *msg, const int *fds, size_t n_fds);
/* The same for a message already framed (data ends with its NUL; len counts
 * it); takes data. */
int varlink_connection_send_encoded(VarlinkConnection *c, char *data, size_t len, const int *fds, size_t n_fds);

/* Write as much queued output as the socket takes: 0 (done, or the socket
 * is full), negative errno if the connection is broken. */
int varlink_connection_flush(VarlinkConnection *c);
/* Free everything queued, unsent. */
void varlink_connection_drop_output(VarlinkConnection *c);
/* Queue a copy of bytes the caller already counted as c's (see
 * varlink_connection_take_unread()). */
int varlink_connection_queue_copy(VarlinkConnection *c, const char *data, size_t len);

/* varlink-broadcast.c */

/* Output queued for c: its own queue and what it has not read of its broadcast. */
size_t varlink_connection_queued(const VarlinkConnection *c);
/* Before c is sent anything of its own: its unread broadcast bytes into its
 * queue, so that nothing overtakes them. */
int varlink_connection_take_unread(VarlinkConnection *c);
/* Write c's unread broadcast bytes (its queue is empty): 0 (all, or the
 * socket is full: bcast_blocked), negative errno if the connection broke. */
int varlink_connection_write_unread(VarlinkConnection *c);
/* c, following a broadcast, queued something of its own. */
void varlink_connection_stream_queued(VarlinkConnection *c);
/* c stops following its broadcast (it goes away or its call ended). */
void varlink_connection_leave_broadcast(VarlinkConnection *c);
/* The server's flush sources, off until something is appended. */
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

/* varlink-quota.c */

/* Charge a new connection to the server's quota and its uid's entry: 0,
 * -EUSERS or -ENOMEM. */
int varlink_connection_attach_quota(VarlinkConnection *c);
/* Stop counting c (dead or freed): its queued output and its charge. */
void varlink_connection_detach_quota(VarlinkConnection *c);
/* 0 if a new connection of uid fits the quota's caps; else -EUSERS with err
 * (LimitExceeded) naming the cap. err may be NULL. */
int varlink_server_admit(VarlinkServer *s, uid_t uid, BrokerError *err);

/* varlink-listen.c */

/* Re-enable accept() paused at the fd limit: a connection just went away. */
void varlink_server_resume_accept(VarlinkServer *s);
/* Close every listening socket and unlink the path we bound. */
void varlink_server_close_listeners(VarlinkServer *s);
