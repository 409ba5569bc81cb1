/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The varlink transport: one blocking AF_UNIX connection for method calls,
 * and a second one, opened on demand, that carries the Monitor stream
 * (a call with "more" occupies its connection until it ends).
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "broker-errors.h"
#include "client-internal.h"
#include "varlink-wire.h"

typedef struct VarlinkConnection {
        int fd;
        VarlinkReader *reader;
} VarlinkConnection;

typedef struct VarlinkTransport {
        char *address;
        VarlinkConnection call;
        VarlinkConnection monitor;      /* fd -EBADF until iommufd_broker_event_fd() */
        bool monitor_ended;             /* the broker sent the last reply of the stream */
} VarlinkTransport;

static void connection_close(VarlinkConnection *c) {
        c->fd = safe_close(c->fd);
        c->reader = varlink_reader_free(c->reader);
}

static void close_fd_array(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                safe_close(fds[i]);
        free(fds);
}

#define _cleanup_json_ _cleanup_(json_decrefp)   /* json_decrefp() comes with jansson */

static const char *default_address(void) {
        const char *e = getenv("IOMMUFD_BROKER_SOCKET");

        return e && *e ? e : BROKER_DEFAULT_SOCKET;
}

/* A path, or "@name" for the abstract namespace (handy for tests). */
static int socket_connect(const char *address, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        size_t n = strlen(address);
        socklen_t len;

        if (n == 0 || n >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, address, n);
        if (address[0] == '@')
                sa.sun_path[0] = 0;
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + (address[0] != '@'));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        while (connect(fd, (struct sockaddr *) &sa, len) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret = TAKE_FD(fd);
        return 0;
}

static int connection_open(iommufd_broker *b, const char *address, VarlinkConnection *c) {
        int r;

        r = socket_connect(address, &c->fd);
        if (r < 0)
                return client_set_error(b, r, CLIENT_ERROR_CONNECT_FAILED, "cannot connect to %s: %s",
                                        address, strerror(-r));
        r = varlink_reader_new(CLIENT_VARLINK_MAX_MESSAGE, &c->reader);
        if (r < 0) {
                connection_close(c);
                return client_set_error(b, r, CLIENT_ERROR_NO_MEMORY, "out of memory");
        }
        return 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* Wait until fd is readable or the deadline passes (-ETIMEDOUT). */
static int wait_readable(int fd, uint64_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                uint64_t now = now_usec();
                int k;

                if (now >= deadline)
                        return -ETIMEDOUT;
                k = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k > 0)
                        return 0;
        }
}

static int read_error(iommufd_broker *b, int r) {
        if (r == -ETIMEDOUT)
                return client_set_error(b, r, CLIENT_ERROR_TIMEOUT, "the broker did not answer in time");
        if (r == -ECONNRESET || r == -EPIPE)
                return client_set_error(b, -ECONNRESET, CLIENT_ERROR_DISCONNECTED, "the broker closed the connection");
        if (r == -EMFILE)
                return client_set_error(b, r, CLIENT_ERROR_LOCAL,
                                        "cannot receive the file descriptors the broker sent: too many open "
                                        "files (RLIMIT_NOFILE)");
        if (r == -E2BIG || r == -EBADMSG || r == -EPROTO)
                return client_set_error(b, -EBADMSG, CLIENT_ERROR_PROTOCOL, "malformed message from the broker: %s",
                                        strerror(-r));
        return client_set_error(b, r, CLIENT_ERROR_LOCAL, "reading from the broker: %s", strerror(-r));
}

/*
 * Next message on c. deadline 0: do not wait, return 0 if none is complete.
 * Otherwise wait for one until the deadline.
 */
static int connection_read(iommufd_broker *b, VarlinkConnection *c, uint64_t deadline,
                           json_t **ret, int **ret_fds, size_t *ret_n_fds) {
        for (;;) {
                int r = varlink_reader_next(c->reader, ret, ret_fds, ret_n_fds);

                if (r != 0)
                        return r < 0 ? read_error(b, r) : 1;
                if (deadline > 0) {
                        r = wait_readable(c->fd, deadline);
                        if (r < 0)
                                return read_error(b, r);
                }
                r = varlink_reader_fill(c->reader, c->fd);
                if (r == -EAGAIN && deadline == 0)
                        return 0;
                if (r == 0)
                        return read_error(b, -ECONNRESET);
                if (r < 0 && r != -EAGAIN)
                        return read_error(b, r);
        }
}

/*
 * Split a reply into its parameters, or record its error. Takes the fds: on
 * an error reply they are closed.
 */
static int reply_parameters(iommufd_broker *b, json_t *reply, int *fds, size_t n_fds, json_t **ret) {
        const json_t *error = json_object_get(reply, "error");
        json_t *params = json_object_get(reply, "parameters");

        if (error) {
                char message[1024];

                close_fd_array(fds, n_fds);
                if (!json_is_string(error))
                        return client_set_error(b, -EBADMSG, CLIENT_ERROR_PROTOCOL, "error reply without a name");
                client_error_message_from_json(params, client_error_short_name(json_string_value(error)),
                                               message, sizeof(message));
                return client_set_remote_error(b, json_string_value(error), message);
        }
        if (params && !json_is_object(params)) {
                close_fd_array(fds, n_fds);
                return client_set_error(b, -EBADMSG, CLIENT_ERROR_PROTOCOL, "reply parameters are not an object");
        }
        *ret = params ? json_incref(params) : json_object();
        if (!*ret) {
                close_fd_array(fds, n_fds);
                return client_set_error(b, -ENOMEM, CLIENT_ERROR_NO_MEMORY, "out of memory");
        }
        return 0;
}

static int connection_send(iommufd_broker *b, VarlinkConnection *c, const char *method, json_t *params, bool more) {
        _cleanup_json_ json_t *call = NULL;
        char full[128];
        int r;

        snprintf(full, sizeof(full), "%s.%s", BROKER_VARLINK_INTERFACE, method);
        call = json_pack("{s:s, s:O}", "method", full, "parameters", params);
        if (!call || (more && json_object_set_new(call, "more", json_true()) < 0))
                return client_set_error(b, -ENOMEM, CLIENT_ERROR_NO_MEMORY, "out of memory");
        r = varlink_wire_send(c->fd, call, NULL, 0);
        if (r == -EPIPE || r == -ECONNRESET)
                return client_set_error(b, -ECONNRESET, CLIENT_ERROR_DISCONNECTED, "the broker closed the connection");
        if (r < 0)
                return client_set_error(b, r, CLIENT_ERROR_LOCAL, "sending %s: %s", method, strerror(-r));
        return 0;
}

/*
 * Call method with params on c and wait for the (first) reply: 0 and its
 * parameters in *ret, and its fds if ret_fds is set (else they are closed).
 */
static int connection_call(iommufd_broker *b, VarlinkConnection *c, const char *method, json_t *params,
                           bool more, uint64_t timeout, json_t **ret, int **ret_fds, size_t *ret_n_fds) {
        _cleanup_json_ json_t *reply = NULL;
        int *fds = NULL;
        size_t n_fds = 0;
        int r;

        if (c->fd < 0)
                return client_set_error(b, -ENOTCONN, CLIENT_ERROR_DISCONNECTED, "not connected to the broker");
        r = connection_send(b, c, method, params, more);
        if (r < 0)
                return r;
        r = connection_read(b, c, now_usec() + timeout, &reply, &fds, &n_fds);
        if (r < 0)
                return r;
        r = reply_parameters(b, reply, fds, n_fds, ret);
        if (r < 0)
                return r;
        if (ret_fds) {
                *ret_fds = fds;
                *ret_n_fds = n_fds;
        } else
                close_fd_array(fds, n_fds);
        return 0;
}

static VarlinkTransport *transport(iommufd_broker *b) {
        return b->data;
}

/* A call without fds on the call connection; takes params. */
static int simple_call(iommufd_broker *b, const char *method, json_t *params, json_t **ret) {
        _cleanup_json_ json_t *p = params;

        if (!p)
                return client_set_error(b, -ENOMEM, CLIENT_ERROR_NO_MEMORY, "out of memory");
        return connection_call(b, &transport(b)->call, method, p, false, CLIENT_CALL_TIMEOUT_USEC,
                               ret, NULL, NULL);
}

static int protocol_error(iommufd_broker *b, int r, const char *what) {
        if (r == -ENOMEM)
                return client_set_error(b, r, CLIENT_ERROR_NO_MEMORY, "out of memory");
        return client_set_error(b, -EBADMSG, CLIENT_ERROR_PROTOCOL, "malformed %s reply from the broker", what);
}

static void varlink_disconnect(iommufd_broker *b) {
        VarlinkTransport *t = transport(b);

        if (!t)
                return;
        connection_close(&t->call);
        connection_close(&t->monitor);
        free(t->address);
        free(t);
        b->data = NULL;
}

static int varlink_connect(iommufd_broker *b, const char *address) {
        VarlinkTransport *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->call.fd = t->monitor.fd = -EBADF;
        b->data = t;

        t->address = strdup(address ?: default_address());
        if (!t->address) {
                varlink_disconnect(b);
                return -ENOMEM;
        }
        r = connection_open(b, t->address, &t->call);
        if (r < 0) {
                varlink_disconnect(b);
                return r;
        }
        return 0;
}

static int varlink_list(iommufd_broker *b, iommufd_broker_device **ret, size_t *ret_n) {
        _cleanup_json_ json_t *params = NULL;
        _cleanup_free_ iommufd_broker_device *devices = NULL;
        const json_t *array, *v;
        size_t i;
        int r;

        r = simple_call(b, "ListDevices", json_object(), &params);
        if (r < 0)
                return r;
        array = json_object_get(params, "devices");
        if (!json_is_array(array))
                return protocol_error(b, -EBADMSG, "ListDevices");

        /* One extra so that an empty list is still a valid allocation. */
        devices = calloc(json_array_size(array) + 1, sizeof(*devices));
        if (!devices)
                return protocol_error(b, -ENOMEM, "ListDevices");
        json_array_foreach(array, i, v) {
                r = client_device_from_json(v, &devices[i]);
                if (r < 0)
                        return protocol_error(b, r, "ListDevices");
        }
        *ret = TAKE_PTR(devices);
        *ret_n = json_array_size(array);
        return 0;
}

static int varlink_get(iommufd_broker *b, const char *address, iommufd_broker_device *ret) {
        _cleanup_json_ json_t *params = NULL;
        int r;

        r = simple_call(b, "GetDevice", json_pack("{s:s}", "address", address), &params);
        if (r < 0)
                return r;
        r = client_device_from_json(json_object_get(params, "device"), ret);
        if (r < 0)
                return protocol_error(b, r, "GetDevice");
        return 0;
}

static json_t *device_array(const char *const *devices, size_t n_devices) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n_devices; i++)
                if (json_array_append_new(a, json_string(devices[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *acquire_parameters(const char *const *devices, size_t n_devices, iommufd_broker_mode mode,
                                  unsigned flags) {
        json_t *p = json_pack("{s:o, s:s}", "devices", device_array(devices, n_devices),
                              "mode", iommufd_broker_mode_to_string(mode));

        if (p && (flags & IOMMUFD_BROKER_ACQUIRE_MANAGED) && json_object_set_new(p, "managed", json_true()) < 0)
                goto fail;
        if (p && (flags & IOMMUFD_BROKER_ACQUIRE_INTERACTIVE) &&
            json_object_set_new(p, "allowInteractiveAuthentication", json_true()) < 0)
                goto fail;
        return p;
fail:
        json_decref(p);
        return NULL;
}

static int varlink_acquire(iommufd_broker *b, const char *const *devices, size_t n_devices,
                           iommufd_broker_mode mode, unsigned flags, iommufd_broker_lease **ret) {
        _cleanup_json_ json_t *call_params = NULL, *params = NULL;
        int *fds = NULL;
        size_t n_fds = 0;
        uint64_t timeout;
        int r;

        call_params = acquire_parameters(devices, n_devices, mode, flags);
        if (!call_params)
                return client_set_error(b, -ENOMEM, CLIENT_ERROR_NO_MEMORY, "out of memory");
        timeout = flags & IOMMUFD_BROKER_ACQUIRE_INTERACTIVE ? CLIENT_CALL_TIMEOUT_INTERACTIVE_USEC
                                                             : CLIENT_CALL_TIMEOUT_USEC;
        r = connection_call(b, &transport(b)->call, "Acquire", call_params, false, timeout, &params, &fds, &n_fds);
        if (r < 0)
                return r;

        /* The lease takes the fds it names; whatever is left over is closed. */
        r = client_lease_from_json(params, fds, n_fds, ret);
        close_fd_array(fds, n_fds);
        if (r < 0)
                return protocol_error(b, r, "Acquire");
        return 0;
}

static int varlink_release(iommufd_broker *b, const char *const *devices, size_t n_devices) {
        _cleanup_json_ json_t *params = NULL;
        json_t *call_params;

        call_params = n_devices > 0 ? json_pack("{s:o}", "devices", device_array(devices, n_devices)) : json_object();
        return simple_call(b, "Release", call_params, &params);
}

static int varlink_revoke(iommufd_broker *b, const char *device, unsigned timeout_sec) {
        _cleanup_json_ json_t *params = NULL;
        /* connection_call() borrows it. */
        _cleanup_json_ json_t *call_params = json_pack("{s:s, s:I}", "device", device, "timeoutSeconds",
                                                       (json_int_t) timeout_sec);

        if (!call_params)
                return client_set_error(b, -ENOMEM, CLIENT_ERROR_LOCAL, "out of memory");
        /* The broker answers once the lease ended or its timeout passed. */
        return connection_call(b, &transport(b)->call, "Revoke", call_params, false,
                               (uint64_t) timeout_sec * 1000000ULL + CLIENT_CALL_TIMEOUT_USEC, &params, NULL, NULL);
}

static int set_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* Open the monitor connection and wait for the "ready" reply, so that every
 * event after this returns reaches the caller. */
static int monitor_open(iommufd_broker *b) {
        VarlinkTransport *t = transport(b);
        _cleanup_json_ json_t *call_params = json_object(), *params = NULL;
        const char *event;
        int r;

        if (!call_params)
                return client_set_error(b, -ENOMEM, CLIENT_ERROR_NO_MEMORY, "out of memory");
        r = connection_open(b, t->address, &t->monitor);
        if (r < 0)
                return r;
        r = connection_call(b, &t->monitor, "Monitor", call_params, true, CLIENT_CALL_TIMEOUT_USEC,
                            &params, NULL, NULL);
        if (r >= 0) {
                event = json_string_value(json_object_get(params, "event"));
                if (!event || !streq(event, "ready"))
                        r = client_set_error(b, -EBADMSG, CLIENT_ERROR_PROTOCOL,
                                             "Monitor did not start with a \"ready\" reply");
        }
        if (r >= 0) {
                r = set_nonblock(t->monitor.fd);
                if (r < 0)
                        client_set_error(b, r, CLIENT_ERROR_LOCAL, "fcntl: %s", strerror(-r));
        }
        if (r < 0) {
                connection_close(&t->monitor);
                return r;
        }
        t->monitor_ended = false;
        return 0;
}

static int varlink_event_fd(iommufd_broker *b) {
        VarlinkTransport *t = transport(b);
        int r;

        if (t->monitor.fd < 0) {
                r = monitor_open(b);
                if (r < 0)
                        return r;
        }
        return t->monitor.fd;
}

static int varlink_next_event(iommufd_broker *b, iommufd_broker_event *ret) {
        VarlinkTransport *t = transport(b);
        _cleanup_json_ json_t *reply = NULL, *params = NULL;
        int *fds = NULL;
        size_t n_fds = 0;
        int r;

        r = varlink_event_fd(b);
        if (r < 0)
                return r;
        r = connection_read(b, &t->monitor, 0, &reply, &fds, &n_fds);
        if (r == -ECONNRESET || (r == 0 && t->monitor_ended))
                return client_set_error(b, -ECONNRESET, CLIENT_ERROR_DISCONNECTED, "the broker ended the event stream");
        if (r <= 0)
                return r;

        /* Events carry no fds. */
        close_fd_array(fds, n_fds);
        if (!json_is_true(json_object_get(reply, "continues")))
                t->monitor_ended = true;
        r = reply_parameters(b, reply, NULL, 0, &params);
        if (r < 0)
                return r;
        r = client_event_from_json(params, ret);
        if (r < 0)
                return protocol_error(b, r, "Monitor");
        return 1;
}

const BrokerTransport broker_transport_varlink = {
        .name = "varlink",
        .connect = varlink_connect,
        .disconnect = varlink_disconnect,
        .list = varlink_list,
        .get = varlink_get,
        .acquire = varlink_acquire,
        .release = varlink_release,
        .revoke = varlink_revoke,
        .event_fd = varlink_event_fd,
        .next_event = varlink_next_event,
};
