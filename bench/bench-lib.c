/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-lib.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The children this process started and has not reaped: die() ends them,
 * so that no broker or bus outlives the bench holding its output pipe. */
static struct {
        pid_t owner;
        pid_t pids[8];
} children;

void children_add(pid_t pid) {
        if (children.owner != getpid()) {
                children.owner = getpid();
                memset(children.pids, 0, sizeof(children.pids));
        }
        for (size_t i = 0; i < ELEMENTSOF(children.pids); i++)
                if (children.pids[i] == 0) {
                        children.pids[i] = pid;
                        return;
                }
}

static void children_remove(pid_t pid) {
        for (size_t i = 0; i < ELEMENTSOF(children.pids); i++)
                if (children.pids[i] == pid)
                        children.pids[i] = 0;
}

void die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("bench: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        if (children.owner == getpid())
                for (size_t i = 0; i < ELEMENTSOF(children.pids); i++)
                        if (children.pids[i] > 0) {
                                kill(children.pids[i], SIGKILL);
                                waitpid(children.pids[i], NULL, 0);
                        }
        exit(1);
}

static void sockaddr_set(struct sockaddr_un *sa, const char *path) {
        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        if (strlen(path) >= sizeof(sa->sun_path))
                die("socket path too long: %s", path);
        strcpy(sa->sun_path, path);
}

bool child_exited(pid_t pid) {
        if (pid <= 0 || waitpid(pid, NULL, WNOHANG) != pid)
                return false;
        children_remove(pid);
        return true;
}

void kill_and_wait(pid_t pid) {
        if (pid <= 0)
                return;
        children_remove(pid);
        kill(pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return;
                usleep(getenv("BENCH_BROKER_WRAP") ? 100000 : 10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

/* --- the broker process --- */

static int notify_socket(const char *path) {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                die("socket: %m");
        unlink(path);
        sockaddr_set(&sa, path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                die("bind %s: %m", path);
        return fd;
}

/* The service manager's side of $NOTIFY_SOCKET after READY=1: keeps the fds
 * pushed into the store by name and closes them on FDSTOREREMOVE, as
 * systemd does, so that the broker's notifications cost what they cost
 * under systemd (at least on the broker's side). */
static void fd_store_run(int fd) {
        static struct { char name[64]; int fd; } stored[4096];
        size_t n_stored = 0;

        for (;;) {
                union {
                        struct cmsghdr header;
                        char buf[CMSG_SPACE(sizeof(int) * 16)];
                } control;
                char text[4096];
                struct iovec iov = { .iov_base = text, .iov_len = sizeof(text) - 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control) };
                const char *name;
                ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        _exit(1);
                text[n] = 0;
                name = strstr(text, "FDNAME=");
                name = name ? name + 7 : "stored";
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; c->cmsg_type == SCM_RIGHTS && i < k; i++) {
                                int passed;
                                memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                if (n_stored == ELEMENTSOF(stored)) {
                                        close(passed);
                                        continue;
                                }
                                snprintf(stored[n_stored].name, sizeof(stored[n_stored].name), "%.*s",
                                         (int) strcspn(name, "\n"), name);
                                stored[n_stored++].fd = passed;
                        }
                }
                for (size_t i = 0, len = strcspn(name, "\n"); strstr(text, "FDSTOREREMOVE=1") && i < n_stored;) {
                        if (strncmp(stored[i].name, name, len) == 0 && stored[i].name[len] == 0) {
                                close(stored[i].fd);
                                stored[i] = stored[--n_stored];
                        } else
                                i++;
                }
        }
}

static void exec_broker(const BrokerOptions *o, const char *socket_path, const char *notify_path) {
        char log[512], policy[512], dropins[512], maxconn[32], maxall[32], state[512];
        char *wrap = NULL;
        const char *argv[48];
        size_t n = 0;
        int fd;

        snprintf(log, sizeof(log), "%s/broker.log", o->tmpdir);
        snprintf(policy, sizeof(policy), "%s/none.json", o->tmpdir);
        snprintf(dropins, sizeof(dropins), "%s/none.d", o->tmpdir);
        snprintf(maxconn, sizeof(maxconn), "%u", o->max_connections_per_uid ?: 64);
        snprintf(state, sizeof(state), "%s/state", o->tmpdir);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
        }
        setenv("NOTIFY_SOCKET", notify_path, 1);
        if (o->preload)
                setenv("LD_PRELOAD", o->preload, 1);
        /* BENCH_BROKER_WRAP="valgrind --tool=callgrind": a profiler in front. */
        if (getenv("BENCH_BROKER_WRAP")) {
                wrap = strdup(getenv("BENCH_BROKER_WRAP"));
                for (char *w = strtok(wrap, " "); w && n < 32; w = strtok(NULL, " "))
                        argv[n++] = w;
        }
        argv[n++] = o->binary;
        argv[n++] = "--varlink-listen";
        argv[n++] = socket_path;
        if (o->bus_address) {
                argv[n++] = "--bus-address";
                argv[n++] = o->bus_address;
        } else
                argv[n++] = "--no-dbus";
        argv[n++] = "--policy";
        argv[n++] = policy;
        argv[n++] = "--policy-dir";
        argv[n++] = dropins;
        argv[n++] = "--max-connections-per-uid";
        argv[n++] = maxconn;
        if (o->max_connections > 0) {
                snprintf(maxall, sizeof(maxall), "%u", o->max_connections);
                argv[n++] = "--max-connections";
                argv[n++] = maxall;
        }
        /* Lease records, as the real daemon keeps them (on tmpfs here too). */
        argv[n++] = "--state-dir";
        argv[n++] = state;
        if (wrap)
                argv[n++] = "--no-seccomp";     /* valgrind makes syscalls the filter refuses */
        argv[n] = NULL;
        execvp(argv[0], (char **) argv);
        _exit(127);
}

void broker_start(const BrokerOptions *o, Broker *ret) {
        char notify_path[256], buf[4096];
        struct pollfd p;
        double start;
        int fd;

        snprintf(ret->socket, sizeof(ret->socket), "%s/broker.sock", o->tmpdir);
        snprintf(notify_path, sizeof(notify_path), "%s/notify", o->tmpdir);
        unlink(ret->socket);
        fd = notify_socket(notify_path);

        start = now_sec();
        ret->pid = fork();
        if (ret->pid < 0)
                die("fork: %m");
        if (ret->pid == 0)
                exec_broker(o, ret->socket, notify_path);
        children_add(ret->pid);

        p = (struct pollfd) { .fd = fd, .events = POLLIN };
        for (;;) {
                ssize_t n;

                /* A profiler in front (BENCH_BROKER_WRAP) starts slowly. */
                if (poll(&p, 1, getenv("BENCH_BROKER_WRAP") ? 120000 : 10000) <= 0)
                        die("%s did not report READY=1 in time (see %s/broker.log)", o->binary, o->tmpdir);
                n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n < 0)
                        die("recv: %m");
                buf[n] = 0;
                if (strstr(buf, "READY=1"))
                        break;
        }
        ret->ready_sec = now_sec() - start;
        ret->manager_pid = fork();
        if (ret->manager_pid < 0)
                die("fork: %m");
        if (ret->manager_pid == 0)
                fd_store_run(fd);
        children_add(ret->manager_pid);
        close(fd);
}

bool broker_has_option(const char *binary, const char *option) {
        char cmd[1024], line[512];
        bool found = false;
        FILE *f;

        snprintf(cmd, sizeof(cmd), "'%s' --help 2>/dev/null", binary);
        f = popen(cmd, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                found = found || strstr(line, option);
        pclose(f);
        return found;
}

void broker_stop(Broker *b) {
        kill_and_wait(b->pid);
        kill_and_wait(b->manager_pid);
        b->pid = b->manager_pid = 0;
}

uint64_t process_cpu_ns(pid_t pid) {
        char path[64];
        unsigned long long ns = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/schedstat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                die("%s: %m", path);
        if (fscanf(f, "%llu", &ns) != 1)
                die("%s: cannot parse", path);
        fclose(f);
        return ns;
}

long process_rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                die("%s: %m", path);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

/* --- raw varlink --- */

int vl_try_connect(const char *path) {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        sockaddr_set(&sa, path);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int vl_connect(const char *path) {
        int fd = vl_try_connect(path);

        if (fd < 0)
                die("connect %s: %s", path, strerror(-fd));
        return fd;
}

int vl_try_call(int fd, const char *msg, char *buf, size_t size) {
        size_t len = strlen(msg) + 1, got = 0;

        if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t) len)
                return -errno ?: -EIO;
        while (got == 0 || buf[got - 1] != 0) {
                ssize_t n = recv(fd, buf + got, size - got, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                got += (size_t) n;
                if (got == size)
                        return -E2BIG;
        }
        return 0;
}

static void close_passed_fds(struct msghdr *mh) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *fds = (int *) CMSG_DATA(c);
                        for (size_t i = 0; i < n; i++)
                                close(fds[i]);
                }
}

size_t vl_read(int fd, char **buf, size_t *size) {
        size_t len = 0;

        for (;;) {
                char control[CMSG_SPACE(sizeof(int) * 32)];
                struct iovec iov;
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                                     .msg_control = control, .msg_controllen = sizeof(control) };
                ssize_t n;

                if (*size - len < 65536) {
                        *size = *size * 2 + 65536;
                        *buf = realloc(*buf, *size);
                        if (!*buf)
                                die("out of memory");
                }
                iov = (struct iovec) { .iov_base = *buf + len, .iov_len = *size - len };
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        die("recvmsg: %m");
                close_passed_fds(&mh);
                if (n == 0)
                        return 0;
                len += (size_t) n;
                if ((*buf)[len - 1] == 0)
                        return len - 1;
        }
}

size_t vl_call(int fd, const char *msg, char **buf, size_t *size) {
        size_t len = strlen(msg) + 1, done = 0;
        size_t r;

        while (done < len) {
                ssize_t n = send(fd, msg + done, len - done, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        die("send: %m");
                done += (size_t) n;
        }
        r = vl_read(fd, buf, size);
        if (r == 0)
                die("the server hung up");
        return r;
}

/* --- the transport floor --- */

int unix_listen(const char *path) {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                die("socket: %m");
        unlink(path);
        sockaddr_set(&sa, path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0)
                die("listen %s: %m", path);
        return fd;
}

static void write_all(int fd, const char *p, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return;
                p += n;
                len -= (size_t) n;
        }
}

static void serve(int lfd, ServeAnswer answer, void *userdata) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, events[64];
        int ep = epoll_create1(EPOLL_CLOEXEC);
        char buf[65536];

        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        for (;;) {
                int n = epoll_wait(ep, events, 64, -1);
                for (int i = 0; i < n; i++) {
                        int fd = events[i].data.fd;
                        if (fd == lfd) {
                                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                                if (c < 0)
                                        continue;
                                ev = (struct epoll_event) { .events = EPOLLIN, .data.fd = c };
                                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                                continue;
                        }
                        ssize_t r = read(fd, buf, sizeof(buf));
                        if (r <= 0 || answer(fd, buf, (size_t) r, userdata) < 0)
                                close(fd);
                }
        }
}

pid_t server_start(const char *path, ServeAnswer answer, void *userdata) {
        int lfd = unix_listen(path);
        pid_t pid = fork();

        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                serve(lfd, answer, userdata);
                _exit(0);
        }
        children_add(pid);
        close(lfd);
        return pid;
}

typedef struct EchoReply {
        const char *text;
        size_t len;
} EchoReply;

/* The same reply for every NUL-terminated message the read brought. */
static int echo_answer(int fd, const char *data, size_t len, void *userdata) {
        const EchoReply *reply = userdata;

        for (size_t j = 0; j < len; j++)
                if (data[j] == 0)
                        write_all(fd, reply->text, reply->len);
        return 0;
}

pid_t echo_server_start(const char *path, const char *reply, size_t len) {
        EchoReply r = { reply, len };   /* the child has its own copy */

        return server_start(path, echo_answer, &r);
}

/* --- Monitor subscribers --- */

/* Events the subscribers read, all streams together (shared with the child). */
static volatile uint64_t *monitor_events;

static void count_frames(const char *buf, ssize_t n) {
        uint64_t k = 0;

        for (const char *p = buf; (p = memchr(p, 0, (size_t) (buf + n - p))); p++)
                k++;
        __atomic_add_fetch(monitor_events, k, __ATOMIC_RELAXED);
}

uint64_t monitors_events(void) {
        return monitor_events ? __atomic_load_n(monitor_events, __ATOMIC_RELAXED) : 0;
}

static void monitors_run(const char *socket, unsigned n, int ready_fd) {
        static const char call[] = "{\"method\":\"io.iommufd.Broker.Monitor\",\"more\":true}";
        struct epoll_event events[64];
        int ep = epoll_create1(EPOLL_CLOEXEC);
        char *buf = NULL, drain[65536];
        size_t size = 0;

        for (unsigned i = 0; i < n; i++) {
                int fd = vl_connect(socket);
                struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

                if (vl_call(fd, call, &buf, &size) == 0 || !strstr(buf, "ready"))
                        die("Monitor did not answer 'ready'");
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        write_all(ready_fd, "x", 1);
        close(ready_fd);
        for (;;) {
                int k = epoll_wait(ep, events, 64, -1);
                for (int i = 0; i < k; i++) {
                        ssize_t got = read(events[i].data.fd, drain, sizeof(drain));

                        if (got <= 0)
                                _exit(0);
                        count_frames(drain, got);
                }
        }
}

pid_t monitors_start(const char *socket, unsigned n) {
        int p[2];
        char c;
        pid_t pid;

        if (!monitor_events) {
                monitor_events = mmap(NULL, sizeof(*monitor_events), PROT_READ | PROT_WRITE,
                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
                if (monitor_events == MAP_FAILED)
                        die("mmap: %m");
        }
        *monitor_events = 0;
        if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe: %m");
        pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                close(p[0]);
                monitors_run(socket, n, p[1]);
                _exit(0);
        }
        children_add(pid);
        close(p[1]);
        if (read(p[0], &c, 1) != 1)
                die("the Monitor subscribers did not start");
        close(p[0]);
        return pid;
}

/* --- the private bus --- */

pid_t dbus_daemon_start(const char *tmpdir, char *address, size_t size) {
        char conf[512], sockarg[600];
        int p[2];
        pid_t pid;
        FILE *f;
        ssize_t n;

        snprintf(conf, sizeof(conf), "%s/bus.conf", tmpdir);
        f = fopen(conf, "we");
        if (!f)
                die("%s: %m", conf);
        fprintf(f, "<busconfig><listen>unix:path=%s/bus</listen><auth>EXTERNAL</auth>"
                   "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
                   "<allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy>"
                   "<limit name=\"max_completed_connections\">20000</limit></busconfig>\n", tmpdir);
        fclose(f);
        if (pipe2(p, 0) < 0)
                die("pipe: %m");
        pid = fork();
        if (pid < 0)
                die("fork: %m");
        if (pid == 0) {
                snprintf(sockarg, sizeof(sockarg), "--print-address=%d", p[1]);
                snprintf(conf, sizeof(conf), "%s/dbus-daemon.log", tmpdir);
                close(p[0]);
                if (!freopen(conf, "a", stderr) || dup2(fileno(stderr), 1) < 0)
                        _exit(127);
                snprintf(conf, sizeof(conf), "%s/bus.conf", tmpdir);
                execlp("dbus-daemon", "dbus-daemon", "--config-file", conf, "--nofork", sockarg, (char *) NULL);
                _exit(127);
        }
        children_add(pid);
        close(p[1]);
        n = read(p[0], address, size - 1);
        close(p[0]);
        if (n <= 0)
                die("dbus-daemon did not start");
        address[n] = 0;
        address[strcspn(address, "\n")] = 0;
        return pid;
}
