/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers of the broker bench: processes, raw varlink, clocks. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

double now_sec(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A broker run: the binary, its sockets, and what it was started with. */
typedef struct Broker {
        pid_t pid;
        pid_t manager_pid;              /* the fd store's side of $NOTIFY_SOCKET */
        char socket[256];
        double ready_sec;               /* from fork to READY=1 */
} Broker;

typedef struct BrokerOptions {
        const char *binary;
        const char *tmpdir;
        const char *bus_address;        /* NULL: --no-dbus */
        const char *preload;            /* LD_PRELOAD, or NULL */
        unsigned max_connections_per_uid;
        unsigned max_connections;       /* 0: the broker's default */
} BrokerOptions;

/* Start and wait for READY=1 (the broker's own sd_notify). */
void broker_start(const BrokerOptions *o, Broker *ret);
void broker_stop(Broker *b);
/* Whether `binary --help` lists option (older builds lack newer options). */
bool broker_has_option(const char *binary, const char *option);

/* Nanoseconds the process has run on a CPU (/proc/PID/schedstat). */
uint64_t process_cpu_ns(pid_t pid);
/* VmRSS in KiB. */
long process_rss_kib(pid_t pid);

/* Raw varlink: NUL framing; received fds are closed. */
int vl_connect(const char *path);
/* Without dying: an fd or negative errno; 0 or negative errno (small replies). */
int vl_try_connect(const char *path);
int vl_try_call(int fd, const char *msg, char *buf, size_t size);
/* Send msg (a JSON text) and read the reply into *buf (grown as needed).
 * Returns the reply's length without its NUL. */
size_t vl_call(int fd, const char *msg, char **buf, size_t *size);
/* Read one NUL-terminated message; 0 on EOF. */
size_t vl_read(int fd, char **buf, size_t *size);

/* A listening unix socket (non-blocking) at path. */
int unix_listen(const char *path);

/* A forked epoll server on path: answer() gets what each read() of a
 * connection brought (whole messages when calls wait for their replies);
 * a negative return closes the connection. userdata is the child's copy. */
typedef int (*ServeAnswer)(int fd, const char *data, size_t len, void *userdata);
pid_t server_start(const char *path, ServeAnswer answer, void *userdata);

/* An epoll server answering every NUL-terminated message with reply (len
 * bytes, NUL included): the transport floor. Forked; returns its pid. */
pid_t echo_server_start(const char *path, const char *reply, size_t len);

/* A child holding n Monitor streams on the broker and reading them. */
pid_t monitors_start(const char *socket, unsigned n);
/* Events (frames after "ready") the subscribers read so far, all streams
 * together. */
uint64_t monitors_events(void);

/* The private bus: returns its pid, fills address. */
pid_t dbus_daemon_start(const char *tmpdir, char *address, size_t size);

void kill_and_wait(pid_t pid);
/* A child that kill_and_wait() and the exit handler know of. */
void children_add(pid_t pid);
/* Whether the child exited by itself (then it is reaped and forgotten). */
bool child_exited(pid_t pid);
