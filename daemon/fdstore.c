/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "fdstore.h"
#include "fmt.h"
#include "log.h"
#include "util.h"

/* A name in the store now. */
typedef struct StoredName {
        uint64_t session_id;
        char kind[FDSTORE_KIND_MAX];
} StoredName;

static struct {
        int fd;                         /* connected to $NOTIFY_SOCKET, or -EBADF */
        StoredName *stored;
        size_t n_stored, n_allocated;
} store = { .fd = -EBADF };

bool fdstore_available(void) {
        const char *e = getenv("NOTIFY_SOCKET");
        return e && *e;
}

void fdstore_reset(void) {
        store.fd = safe_close(store.fd);
        free(store.stored);
        store.stored = NULL;
        store.n_stored = store.n_allocated = 0;
}

static bool kind_is_ours(const char *kind) {
        return streq(kind, "iommufd") || streq(kind, "pidfd") || strncmp(kind, "request.", 8) == 0;
}

/* A few per live session: a linear scan is cheaper than hashing. */
static ssize_t stored_find(const char *kind, uint64_t session_id) {
        for (size_t i = 0; i < store.n_stored; i++)
                if (store.stored[i].session_id == session_id && streq(store.stored[i].kind, kind))
                        return (ssize_t) i;
        return -1;
}

static void stored_add(const char *kind, uint64_t session_id) {
        if (store.n_stored == store.n_allocated) {
                size_t n = store.n_allocated ? store.n_allocated * 2 : 16;
                StoredName *grown = reallocarray(store.stored, n, sizeof(*grown));
                if (!grown)
                        return;         /* then it is pushed again next time: harmless */
                store.stored = grown;
                store.n_allocated = n;
        }
        store.stored[store.n_stored] = (StoredName) { .session_id = session_id };
        /* kind is shorter than FDSTORE_KIND_MAX (fdstore_push checked). */
        strcpy(store.stored[store.n_stored++].kind, kind);
}

static void stored_drop(const char *kind, uint64_t session_id) {
        ssize_t i = stored_find(kind, session_id);

        if (i >= 0)
                store.stored[i] = store.stored[--store.n_stored];
}

/* A socket connected to $NOTIFY_SOCKET if it is a path or an abstract name;
 * -EAFNOSUPPORT for anything else (vsock:...), which sd_notify handles. */
static int notify_connect(void) {
        const char *e = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = e ? strlen(e) : 0;
        int fd;

        if (len == 0 || (e[0] != '/' && e[0] != '@'))
                return -EAFNOSUPPORT;
        if (len > sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, e, len);
        if (e[0] == '@')
                sa.sun_path[0] = 0;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int notify_sendmsg(const char *msg, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr header;
                uint8_t buf[CMSG_SPACE(sizeof(int) * 2)];
        } control = {};
        struct iovec iov = { .iov_base = (char *) msg, .iov_len = strlen(msg) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (n_fds > 2)
                return -E2BIG;
        if (n_fds > 0) {
                struct cmsghdr *c;

                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        return sendmsg(store.fd, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int notify(const char *msg, const int *fds, size_t n_fds) {
        int r;

        for (int attempt = 0; attempt < 2; attempt++) {
                if (store.fd < 0) {
                        r = notify_connect();
                        if (r == -EAFNOSUPPORT)
                                return sd_pid_notify_with_fds(0, false, msg, fds, (unsigned) n_fds);
                        if (r < 0)
                                return r;
                        store.fd = r;
                }
                r = notify_sendmsg(msg, fds, n_fds);
                if (r >= 0)
                        return 0;
                /* The manager bound its socket anew (daemon-reexec): reconnect once. */
                store.fd = safe_close(store.fd);
                if (r != -ECONNREFUSED && r != -ENOTCONN && r != -EPIPE)
                        return r;
        }
        return r;
}

/* head, then "<kind>-<session>", then tail: no printf on every Acquire. */
static void fdstore_message(char *buf, size_t size, const char *head, const char *kind, uint64_t session_id,
                            const char *tail, const char **ret_name) {
        FmtBuf b = fmt_buf(buf, size);

        fmt_str(&b, head);
        *ret_name = b.p;
        fmt_str(&b, kind);
        fmt_str(&b, "-");
        fmt_u64(&b, session_id);
        fmt_str(&b, tail);
}

int fdstore_push(int fd, const char *kind, uint64_t session_id) {
        const char *name;
        char msg[128];
        int r;

        if (!fdstore_available() || fd < 0)
                return 0;
        if (!kind_is_ours(kind) || strlen(kind) >= FDSTORE_KIND_MAX)
                return -EINVAL;
        if (stored_find(kind, session_id) >= 0)
                return 0;
        /* FDPOLL=0: a pidfd turns readable when its process exits and must
         * not be dropped from the store for it. */
        fdstore_message(msg, sizeof(msg), "FDSTORE=1\nFDNAME=", kind, session_id, "\nFDPOLL=0", &name);
        r = notify(msg, &fd, 1);
        if (r < 0)
                return log_warning_errno(r, "Cannot put %.*s into the fd store: %m",
                                         (int) (strchr(name, '\n') - name), name);
        stored_add(kind, session_id);
        return 0;
}

int fdstore_remove(const char *kind, uint64_t session_id) {
        const char *name;
        char msg[128];

        if (!fdstore_available())
                return 0;
        stored_drop(kind, session_id);
        fdstore_message(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=", kind, session_id, "", &name);
        return notify(msg, NULL, 0);
}

int fdstore_parse_name(const char *name, char *kind, size_t kind_size, uint64_t *ret_session_id) {
        const char *dash = name ? strrchr(name, '-') : NULL;
        unsigned long long id;
        char *end;

        if (!dash || (size_t) (dash - name) >= kind_size || dash[1] < '0' || dash[1] > '9')
                return -EINVAL;
        errno = 0;
        id = strtoull(dash + 1, &end, 10);
        if (errno || *end)
                return -EINVAL;
        memcpy(kind, name, dash - name);
        kind[dash - name] = 0;
        if (!kind_is_ours(kind))
                return -EINVAL;
        *ret_session_id = id;
        return 0;
}

void fdstore_request_kind(char buf[static FDSTORE_KIND_MAX], const char *address) {
        FmtBuf b = fmt_buf(buf, FDSTORE_KIND_MAX);       /* twice per lease: no printf */

        fmt_str(&b, "request.");
        fmt_str(&b, address);
        for (char *p = buf; *p; p++)
                if (*p == ':')
                        *p = '_';
}
