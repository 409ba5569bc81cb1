/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Listening sockets: a path we bind, socket activation, or a given fd; each
 * accepted socket becomes a connection through varlink_server_add_connection(). */

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "varlink-internal.h"

/* A peer that connected and closed without sending anything (connection
 * churn) needs no identity lookup and no slot: one recv() tells. */
static bool peer_hung_up(int fd) {
        char c;

        return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* A bounded number per wakeup: the rest wait for the next loop iteration
 * (the listening socket stays readable), after the connections had a turn. */
static int on_listen_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        VarlinkServer *s = userdata;

        for (unsigned n = 0; n < VARLINK_ACCEPTS_PER_WAKEUP; n++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE) {
                                /* Wait for a connection to close rather than spin. */
                                log_warning("varlink: out of file descriptors, pausing accept().");
                                (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning("varlink: accept() failed: %s", strerror(errno));
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return 0;
                }
                if (peer_hung_up(cfd)) {
                        safe_close(cfd);
                        continue;
                }
                (void) varlink_server_add_connection(s, cfd, NULL);
        }
        return 0;
}

int varlink_server_listen_fd(VarlinkServer *s, int fd) {
        int r;

        if (!s || fd < 0)
                return -EINVAL;
        if (s->n_listeners >= MAX_LISTENERS)
                return -E2BIG;
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                return -errno;
        r = sd_event_add_io(s->event, &s->listen_sources[s->n_listeners], fd, EPOLLIN, on_listen_io, s);
        if (r < 0)
                return r;
        s->listen_fds[s->n_listeners++] = fd;
        return 0;
}

int varlink_passed_fds(void) {
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
        unsigned long p, n;
        char *end;

        if (!pid || !fds)
                return 0;
        errno = 0;
        p = strtoul(pid, &end, 10);
        if (errno || *end || p != (unsigned long) getpid())
                return 0;
        n = strtoul(fds, &end, 10);
        if (errno || *end || n > INT_MAX - SD_LISTEN_FDS_START)
                return -EINVAL;
        return (int) n;
}

int varlink_server_listen_fds(VarlinkServer *s) {
        int n, taken = 0;

        n = varlink_passed_fds();
        if (n < 0)
                return n;
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                int r;

                if (sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 1) <= 0)
                        continue;
                r = varlink_server_listen_fd(s, fd);
                if (r < 0)
                        return r;
                taken++;
        }
        return taken > 0 ? taken : -ENOENT;
}

/* Whether something still answers on path: then it is not ours to replace. */
static bool socket_is_live(const struct sockaddr_un *sa, socklen_t len) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return fd >= 0 && connect(fd, (const struct sockaddr *) sa, len) == 0;
}

int varlink_server_listen_path(VarlinkServer *s, const char *path) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_free_ char *dir = NULL;
        struct stat st;
        socklen_t len;
        char *slash;
        int r;

        if (!s || !path || !path[0] || s->bound_path)
                return -EINVAL;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return log_error_errno(errno, "varlink: cannot create %s: %m", dir);
        }

        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(EEXIST, "varlink: %s exists and is not a socket", path);
                if (socket_is_live(&sa, len))
                        return log_error_errno(EADDRINUSE, "varlink: %s is in use by a running service", path);
                (void) unlink(path);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (const struct sockaddr *) &sa, len) < 0)
                return log_error_errno(errno, "varlink: cannot bind %s: %m", path);
        /* A short queue: a connect storm then makes the stormers wait for
         * room (alongside everybody else) rather than queueing thousands
         * of connections ahead of a legitimate client. */
        if (chmod(path, 0666) < 0 || listen(fd, VARLINK_LISTEN_BACKLOG) < 0) {
                r = -errno;
                (void) unlink(path);
                return log_error_errno(r, "varlink: cannot listen on %s: %m", path);
        }
        r = varlink_server_listen_fd(s, fd);
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        TAKE_FD(fd);
        s->bound_path = strdup(path);
        return 0;
}

void varlink_server_resume_accept(VarlinkServer *s) {
        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_enabled(s->listen_sources[i], SD_EVENT_ON);
}

void varlink_server_close_listeners(VarlinkServer *s) {
        for (size_t i = 0; i < s->n_listeners; i++) {
                sd_event_source_disable_unref(s->listen_sources[i]);
                safe_close(s->listen_fds[i]);
        }
        if (s->bound_path)
                (void) unlink(s->bound_path);
        free(s->bound_path);
}
