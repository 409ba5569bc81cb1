/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The server, its connections (reading, idle timeout) and the dispatch of
 * calls to method handlers. Replies: varlink-call.c; output queue:
 * varlink-output.c; listening sockets: varlink-listen.c. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "json-write.h"
#include "log.h"
#include "varlink-internal.h"
#include "varlink-service.h"

json_t *varlink_error_message(const char *error, json_t *parameters) {
        json_t *m = json_pack("{s:s, s:o}", "error", error, "parameters", parameters ?: json_object());
        return m;
}

json_t *varlink_broker_error_parameters(BrokerErrorCode code, const char *device, const char *message) {
        json_t *p = json_pack("{s:s}", "message", message ?: strna(broker_error_name(code)));
        if (p && device && device[0])
                json_object_set_new(p, "device", json_string(device));
        return p;
}

/* An error for a message that never became a call. Takes parameters. */
static int connection_send_error(VarlinkConnection *c, const char *error, json_t *parameters) {
        return varlink_connection_send(c, varlink_error_message(error, parameters), NULL, 0);
}

static int connection_send_broker_error(VarlinkConnection *c, BrokerErrorCode code, const char *message) {
        char name[128];
        json_t *m;

        snprintf(name, sizeof(name), "%s.%s", BROKER_VARLINK_INTERFACE, broker_error_name(code));
        m = varlink_error_message(name, varlink_broker_error_parameters(code, NULL, message));
        if (!m)
                return -ENOMEM;
        return varlink_connection_send(c, m, NULL, 0);
}

/* A protocol error: say why, then hang up once that is written. */
static void connection_fail(VarlinkConnection *c, BrokerErrorCode code, const char *message) {
        log_debug("varlink: protocol error from uid %u: %s", (unsigned) c->uid, message);
        (void) connection_send_broker_error(c, code, message);
        c->close_after_flush = true;
        varlink_connection_update_events(c);
}

/* --- Dispatch --- */

const VarlinkInterface *varlink_server_find_interface(const VarlinkServer *s, const char *name) {
        if (!s || !name)
                return NULL;
        if (streq(name, VARLINK_SERVICE_INTERFACE))
                return &varlink_service_interface;
        for (size_t i = 0; i < s->n_interfaces; i++)
                if (streq(s->interfaces[i].iface->name, name))
                        return s->interfaces[i].iface;
        return NULL;
}

static void *interface_userdata(const VarlinkServer *s, const VarlinkInterface *iface) {
        for (size_t i = 0; i < s->n_interfaces; i++)
                if (s->interfaces[i].iface == iface)
                        return s->interfaces[i].userdata;
        return NULL;
}

/* Resolve "iface.Method". Sends the varlink error itself (unless oneway)
 * and returns NULL when there is no such thing. */
static const VarlinkMethod *connection_find_method(VarlinkConnection *c, const char *method, bool oneway,
                                                   void **ret_userdata) {
        const char *dot = strrchr(method, '.');
        const VarlinkInterface *iface = NULL;
        _cleanup_free_ char *ifname = NULL;

        if (dot && dot > method) {
                ifname = strndup(method, (size_t) (dot - method));
                if (!ifname)
                        return NULL;
                iface = varlink_server_find_interface(c->server, ifname);
                if (!iface) {
                        if (!oneway)
                                (void) connection_send_error(c, VARLINK_SERVICE_INTERFACE ".InterfaceNotFound",
                                                             json_pack("{s:s}", "interface", ifname));
                        return NULL;
                }
                for (const VarlinkMethod *m = iface->methods; m && m->name; m++)
                        if (streq(m->name, dot + 1)) {
                                *ret_userdata = interface_userdata(c->server, iface);
                                return m;
                        }
        }
        if (!oneway)
                (void) connection_send_error(c, VARLINK_SERVICE_INTERFACE ".MethodNotFound",
                                             json_pack("{s:s}", "method", method));
        return NULL;
}

/* Validate the envelope of a call. Returns the protocol error text or NULL. */
static const char *call_envelope_error(json_t *msg, const char **ret_method, bool *ret_oneway, bool *ret_more,
                                       json_t **ret_parameters) {
        json_t *method = json_object_get(msg, "method"), *oneway = json_object_get(msg, "oneway"),
               *more = json_object_get(msg, "more"), *params = json_object_get(msg, "parameters");

        if (!json_is_string(method))
                return "call without a string \"method\"";
        if (oneway && !json_is_null(oneway) && !json_is_boolean(oneway))
                return "\"oneway\" is not a boolean";
        if (more && !json_is_null(more) && !json_is_boolean(more))
                return "\"more\" is not a boolean";
        if (json_is_true(oneway) && json_is_true(more))
                return "\"oneway\" and \"more\" both set";
        if (params && !json_is_null(params) && !json_is_object(params))
                return "\"parameters\" is not an object";

        *ret_method = json_string_value(method);
        *ret_oneway = json_is_true(oneway);
        *ret_more = json_is_true(more);
        *ret_parameters = json_is_object(params) ? params : NULL;
        return NULL;
}

static void connection_dispatch_message(VarlinkConnection *c, json_t *msg) {
        const VarlinkMethod *m;
        const char *method, *perr;
        json_t *params = NULL;
        bool oneway, more;
        VarlinkCall *call;
        void *userdata = NULL;
        int r;

        perr = call_envelope_error(msg, &method, &oneway, &more, &params);
        if (perr) {
                json_decref(msg);
                return connection_fail(c, BROKER_ERROR_INVALID_PARAMETER, perr);
        }

        if (c->current) {
                /* Only a stream lets later calls through to here. */
                if (!oneway)
                        (void) connection_send_broker_error(c, BROKER_ERROR_LIMIT_EXCEEDED,
                                "a streaming call is active on this connection; use another connection");
                json_decref(msg);
                return;
        }

        m = connection_find_method(c, method, oneway, &userdata);
        if (!m) {
                json_decref(msg);
                return;
        }
        if ((m->flags & VARLINK_METHOD_MORE) && !more) {
                if (!oneway)
                        (void) connection_send_error(c, VARLINK_SERVICE_INTERFACE ".ExpectedMore", NULL);
                json_decref(msg);
                return;
        }

        /* The call keeps msg, which owns parameters and the method string. */
        if (!params) {
                params = json_object();
                if (!params || json_object_set_new(msg, "parameters", params) < 0) {
                        json_decref(msg);
                        return varlink_connection_kill(c);
                }
        }
        call = calloc(1, sizeof(*call));
        if (!call) {
                json_decref(msg);
                return varlink_connection_kill(c);
        }
        *call = (VarlinkCall) {
                .conn = c,
                .method = method,
                .message = msg,
                .parameters = params,
                .oneway = oneway,
                .more = more,
                .streaming = more && (m->flags & VARLINK_METHOD_MORE),
                .in_handler = true,
        };
        c->current = call;

        r = m->handler(call, params, userdata);
        if (r < 0 && !call->done) {
                log_debug_errno(r, "varlink: %s failed: %m", method);
                (void) varlink_call_error_broker(call, BROKER_ERROR_KERNEL_ERROR, NULL, strerror(-r));
        }
        call->in_handler = false;
        /* A oneway call has nobody to answer later. */
        if (call->done || oneway) {
                c->current = NULL;
                varlink_call_free(call);
        }
}

/* Replies wait beyond what the socket buffer took: the peer is not reading.
 * Its next calls wait (in the kernel) until it does, so a client that
 * pipelines without reading costs one socket buffer of work, not more. */
static bool connection_backlogged(const VarlinkConnection *c) {
        return c->out_bytes > 0 || c->bcast_blocked;
}

/* Handle complete buffered messages while the order rules allow, at most
 * VARLINK_CALLS_PER_WAKEUP of them: the rest wait for the next loop
 * iteration, after everybody else had a turn. */
static void connection_process_calls(VarlinkConnection *c) {
        unsigned n_calls = 0;

        c->more_buffered = false;
        while (!c->dead && !c->close_after_flush && (!c->current || c->current->streaming)) {
                _cleanup_free_ int *fds = NULL;
                size_t n_fds = 0;
                json_t *msg = NULL;
                int r;

                if (connection_backlogged(c))
                        break;
                if (n_calls >= VARLINK_CALLS_PER_WAKEUP) {
                        c->more_buffered = varlink_reader_buffered(c->reader) > 0;
                        if (c->more_buffered)
                                (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
                        break;
                }

                r = varlink_reader_next(c->reader, &msg, &fds, &n_fds);
                if (r == 0)
                        break;
                n_calls++;
                if (r == -E2BIG)
                        return connection_fail(c, BROKER_ERROR_LIMIT_EXCEEDED, "message too large");
                if (r == -EPROTO)
                        return connection_fail(c, BROKER_ERROR_INVALID_PARAMETER, "too many file descriptors");
                if (r == -EBADMSG)
                        return connection_fail(c, BROKER_ERROR_INVALID_PARAMETER,
                                               varlink_reader_bad_message(c->reader));
                if (r < 0)
                        return varlink_connection_kill(c);

                /* No method here takes fds: close unsolicited ones right away. */
                for (size_t i = 0; i < n_fds; i++)
                        safe_close(fds[i]);
                if (n_fds > 0)
                        log_debug("varlink: closed %zu unsolicited fds from uid %u", n_fds, (unsigned) c->uid);

                connection_dispatch_message(c, msg);
        }
}

/* Replies sent from inside a handler would switch the event mask off and on
 * again around every call; set it once, when processing is over. */
void varlink_connection_process(VarlinkConnection *c) {
        c->processing = true;
        connection_process_calls(c);
        c->processing = false;
}

static bool connection_wants_input(VarlinkConnection *c) {
        return !c->dead && !c->read_eof && !c->close_after_flush && !c->more_buffered &&
               (!c->current || c->current->streaming) && !connection_backlogged(c);
}

void varlink_connection_update_events(VarlinkConnection *c) {
        uint32_t events = 0;

        if (c->dead || !c->io_source || c->processing)
                return;
        /* After EOF, once every buffered call ran (nothing blocks processing),
         * nothing more will come: finish writing, then close. */
        if (c->read_eof && !c->more_buffered && (!c->current || c->current->streaming) &&
            !connection_backlogged(c))
                c->close_after_flush = true;
        if (c->close_after_flush && varlink_connection_queued(c) == 0)
                return varlink_connection_kill(c);
        if (connection_wants_input(c))
                events |= EPOLLIN;
        /* A stream's broadcast is written by the server's flush, and on
         * EPOLLOUT only once the socket was full. */
        if (c->out_head || c->bcast_blocked)
                events |= EPOLLOUT;
        if (events == c->io_events)
                return;
        if (sd_event_source_set_io_events(c->io_source, events) >= 0)
                c->io_events = events;
}

static void connection_arm_idle(VarlinkConnection *c) {
        if (!c->idle_source)
                return;
        (void) sd_event_source_set_time_relative(c->idle_source, c->server->limits.idle_timeout_usec);
        (void) sd_event_source_set_enabled(c->idle_source, SD_EVENT_ONESHOT);
}

static int on_connection_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        VarlinkConnection *c = userdata;
        int r;

        if (c->dead)
                return 0;

        if (revents & EPOLLOUT) {
                r = varlink_connection_flush(c);
                if (r < 0) {
                        varlink_connection_kill(c);
                        return 0;
                }
        }

        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && connection_wants_input(c)) {
                r = varlink_reader_fill(c->reader, c->fd);
                if (r == 0)
                        c->read_eof = true;
                else if (r == -E2BIG)
                        connection_fail(c, BROKER_ERROR_LIMIT_EXCEEDED, "message too large");
                else if (r == -EPROTO || r == -EMFILE)
                        connection_fail(c, BROKER_ERROR_INVALID_PARAMETER, "too many file descriptors");
                else if (r < 0 && r != -EAGAIN) {
                        varlink_connection_kill(c);
                        return 0;
                }
                connection_arm_idle(c);
        } else if ((revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLOUT)) {
                /* Peer gone while we were not reading: nobody left to answer. */
                varlink_connection_kill(c);
                return 0;
        }

        /* Also after a flush: a drained backlog lets waiting calls run. */
        varlink_connection_process(c);
        varlink_connection_update_events(c);
        return 0;
}

static int on_connection_idle(sd_event_source *source, uint64_t usec, void *userdata) {
        VarlinkConnection *c = userdata;

        if (c->dead)
                return 0;
        if (c->current || c->out_head ||
            (c->server->keep_open_hook && c->server->keep_open_hook(c, c->server->hook_userdata))) {
                connection_arm_idle(c);
                return 0;
        }
        log_debug("varlink: closing idle connection of uid %u", (unsigned) c->uid);
        varlink_connection_kill(c);
        return 0;
}

static void connection_free(VarlinkConnection *c) {
        VarlinkServer *s = c->server;

        if (c->current) {
                VarlinkCall *call = TAKE_PTR(c->current);
                varlink_call_free(call);
        }
        if (c->connected && s->disconnect_hook)
                s->disconnect_hook(c, s->hook_userdata);

        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_connections--;
        varlink_connection_leave_broadcast(c);
        varlink_connection_detach_quota(c);

        varlink_connection_drop_output(c);
        sd_event_source_disable_unref(c->io_source);
        sd_event_source_disable_unref(c->idle_source);
        sd_event_source_disable_unref(c->defer_source);
        varlink_reader_free(c->reader);
        principal_free(c->principal);
        safe_close(c->fd);
        free(c);

        /* A slot is free again if accept() had to stop at the fd limit. */
        varlink_server_resume_accept(s);
}

/* Resume after an asynchronous reply, or free a dead connection: both from
 * a fresh event loop iteration, never under a caller's feet. */
static int on_connection_defer(sd_event_source *source, void *userdata) {
        VarlinkConnection *c = userdata;

        if (c->dead) {
                connection_free(c);
                return 0;
        }
        varlink_connection_process(c);
        varlink_connection_update_events(c);
        return 0;
}

void varlink_connection_kill(VarlinkConnection *c) {
        if (c->dead)
                return;
        c->dead = true;
        /* The slot is free now, not when the loop gets round to freeing. */
        varlink_connection_leave_broadcast(c);
        varlink_connection_detach_quota(c);
        (void) sd_event_source_set_enabled(c->io_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->idle_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
}

void varlink_connection_close(VarlinkConnection *c) {
        if (!c || c->dead)
                return;
        c->close_after_flush = true;
        varlink_connection_update_events(c);
}

void varlink_connection_set_userdata(VarlinkConnection *c, void *userdata) {
        if (c)
                c->userdata = userdata;
}

void *varlink_connection_get_userdata(const VarlinkConnection *c) {
        return c ? c->userdata : NULL;
}

const Principal *varlink_connection_get_principal(const VarlinkConnection *c) {
        return c ? c->principal : NULL;
}

uid_t varlink_connection_get_uid(const VarlinkConnection *c) {
        return c ? c->uid : (uid_t) -1;
}

/* --- Connections --- */

/* Tell the refused peer why, if the socket takes it without waiting. */
static void refuse_connection(int fd, const BrokerError *err) {
        char name[128];
        json_t *m;

        snprintf(name, sizeof(name), "%s.%s", BROKER_VARLINK_INTERFACE, broker_error_name(err->code));
        m = varlink_error_message(name, json_pack("{s:s}", "message", err->message));
        if (m) {
                size_t len;
                _cleanup_free_ char *data = json_write_compact(m, &len);
                if (data)
                        (void) send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                json_decref(m);
        }
}

int varlink_server_add_connection(VarlinkServer *s, int fd, VarlinkConnection **ret) {
        _cleanup_(principal_freep) Principal *principal = NULL;
        BrokerError err = {};
        VarlinkConnection *c;
        int r;

        if (!s || fd < 0)
                return -EINVAL;

        r = principal_from_socket(fd, &principal);
        if (r < 0) {
                safe_close(fd);
                return log_debug_errno(r, "varlink: cannot identify peer: %m");
        }
        r = varlink_server_admit(s, principal->uid, &err);
        if (r < 0) {
                log_warning("varlink: refusing a connection of uid %u: %s", (unsigned) principal->uid, err.message);
                refuse_connection(fd, &err);
                safe_close(fd);
                return r;
        }
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }

        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        c->uid = principal->uid;
        c->next = s->connections;
        if (s->connections)
                s->connections->prev = c;
        s->connections = c;
        s->n_connections++;

        c->io_events = EPOLLIN;
        r = varlink_connection_attach_quota(c);
        if (r >= 0)
                r = varlink_reader_new(s->limits.max_message, &c->reader);
        if (r >= 0)
                /* No method takes fds: they are closed as they arrive. */
                r = varlink_reader_set_max_fds(c->reader, 0);
        if (r >= 0)
                r = sd_event_add_io(s->event, &c->io_source, fd, EPOLLIN, on_connection_io, c);
        if (r >= 0)
                r = sd_event_add_defer(s->event, &c->defer_source, on_connection_defer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
        if (r >= 0 && s->limits.idle_timeout_usec != UINT64_MAX)
                r = sd_event_add_time_relative(s->event, &c->idle_source, CLOCK_MONOTONIC,
                                               s->limits.idle_timeout_usec, 0, on_connection_idle, c);
        if (r >= 0 && s->connect_hook) {
                r = s->connect_hook(c, &principal, s->hook_userdata);
                c->connected = r >= 0;
        }
        if (r < 0) {
                connection_free(c);
                return r;
        }
        c->principal = TAKE_PTR(principal);
        if (ret)
                *ret = c;
        return 0;
}

/* --- Server --- */

VarlinkLimits varlink_limits_default(void) {
        return (VarlinkLimits) {
                .max_message = VARLINK_DEFAULT_MAX_MESSAGE,
                .idle_timeout_usec = VARLINK_DEFAULT_IDLE_TIMEOUT_USEC,
                .max_output = VARLINK_DEFAULT_MAX_OUTPUT,
                .max_output_per_uid = VARLINK_DEFAULT_MAX_OUTPUT_PER_UID,
                .max_stream_output = VARLINK_DEFAULT_MAX_STREAM_OUTPUT,
        };
}

int varlink_server_new(sd_event *event, const VarlinkLimits *limits, VarlinkServer **ret) {
        VarlinkServer *s;

        if (!event || !ret)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        if (limits)
                s->limits = *limits;
        if (s->limits.max_message == 0)
                s->limits.max_message = VARLINK_DEFAULT_MAX_MESSAGE;
        if (s->limits.idle_timeout_usec == 0)
                s->limits.idle_timeout_usec = VARLINK_DEFAULT_IDLE_TIMEOUT_USEC;
        if (s->limits.max_output == 0)
                s->limits.max_output = VARLINK_DEFAULT_MAX_OUTPUT;
        if (s->limits.max_output_per_uid == 0)
                s->limits.max_output_per_uid = VARLINK_DEFAULT_MAX_OUTPUT_PER_UID;
        if (s->limits.max_stream_output == 0)
                s->limits.max_stream_output = VARLINK_DEFAULT_MAX_STREAM_OUTPUT;
        if (quota_new(NULL, &s->own_quota) < 0 || varlink_server_add_flush(s) < 0) {
                quota_free(s->own_quota);
                sd_event_source_disable_unref(s->flush_source);
                sd_event_source_disable_unref(s->flush_timer);
                sd_event_unref(s->event);
                free(s);
                return -ENOMEM;
        }
        s->quota = s->own_quota;
        *ret = s;
        return 0;
}

int varlink_server_set_quota(VarlinkServer *s, Quota *q) {
        if (!s || !q)
                return -EINVAL;
        /* Charges made to one quota must be released to the same one. */
        if (s->n_live > 0)
                return -EBUSY;
        s->quota = q;
        return 0;
}

VarlinkServer *varlink_server_free(VarlinkServer *s) {
        if (!s)
                return NULL;
        while (s->connections)
                connection_free(s->connections);
        sd_event_source_disable_unref(s->flush_source);
        sd_event_source_disable_unref(s->flush_timer);
        varlink_server_close_listeners(s);
        quota_free(s->own_quota);
        free(s->vendor);
        free(s->product);
        free(s->version);
        free(s->url);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

int varlink_server_set_info(VarlinkServer *s, const char *vendor, const char *product, const char *version,
                            const char *url) {
        if (!s)
                return -EINVAL;
        if (free_and_strdup(&s->vendor, vendor) < 0 || free_and_strdup(&s->product, product) < 0 ||
            free_and_strdup(&s->version, version) < 0 || free_and_strdup(&s->url, url) < 0)
                return -ENOMEM;
        return 0;
}

int varlink_server_add_interface(VarlinkServer *s, const VarlinkInterface *iface, void *userdata) {
        if (!s || !iface || !iface->name)
                return -EINVAL;
        if (varlink_server_find_interface(s, iface->name))
                return -EEXIST;
        if (s->n_interfaces >= MAX_INTERFACES)
                return -E2BIG;
        s->interfaces[s->n_interfaces++] = (RegisteredInterface) { iface, userdata };
        return 0;
}

void varlink_server_set_hooks(VarlinkServer *s, VarlinkConnectHook connect, VarlinkDisconnectHook disconnect,
                              void *userdata) {
        if (!s)
                return;
        s->connect_hook = connect;
        s->disconnect_hook = disconnect;
        s->hook_userdata = userdata;
}

void varlink_server_set_keep_open_hook(VarlinkServer *s, VarlinkKeepOpenHook keep_open) {
        if (s)
                s->keep_open_hook = keep_open;
}

VarlinkServer *varlink_connection_get_server(const VarlinkConnection *c) {
        return c ? c->server : NULL;
}

json_t *varlink_server_info_json(const VarlinkServer *s) {
        json_t *interfaces = json_pack("[s]", VARLINK_SERVICE_INTERFACE);

        for (size_t i = 0; interfaces && i < s->n_interfaces; i++)
                if (json_array_append_new(interfaces, json_string(s->interfaces[i].iface->name)) < 0) {
                        json_decref(interfaces);
                        interfaces = NULL;
                }
        if (!interfaces)
                return NULL;
        return json_pack("{s:s, s:s, s:s, s:s, s:o}", "vendor", strna(s->vendor), "product", strna(s->product),
                         "version", strna(s->version), "url", strna(s->url), "interfaces", interfaces);
}

size_t varlink_server_n_connections(const VarlinkServer *s) {
        return s ? s->n_live : 0;
}
