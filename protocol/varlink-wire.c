/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "json-parse.h"
#include "util.h"
#include "varlink-wire.h"

#define READER_INITIAL_SIZE 4096

/* Fds of one recvmsg(), owned by the message containing stream offset
 * `offset`: the last byte of that recvmsg(). The kernel may return earlier
 * fd-less data together with an fd-carrying sendmsg(), but never anything
 * after it, so the last byte read always belongs to the message the sender
 * attached the fds to. */
typedef struct FdBatch {
        uint64_t offset;
        int *fds;
        size_t n_fds;
} FdBatch;

struct VarlinkReader {
        size_t max_message;
        char *buf;
        size_t allocated;
        size_t start;           /* first unconsumed byte */
        size_t end;             /* one past the last received byte */
        uint64_t buf_offset;    /* stream offset of buf[0] */
        bool too_big;           /* sticky: a message exceeded max_message */
        char bad_message[160];  /* why the last -EBADMSG: varlink_reader_bad_message() */

        size_t max_fds;         /* buffered at once; 0: closed on arrival */
        size_t n_fds;           /* buffered now, over all batches */
        FdBatch *batches;
        size_t n_batches;
};

static void close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                safe_close(fds[i]);
}

int varlink_reader_new(size_t max_message, VarlinkReader **ret) {
        VarlinkReader *r;

        if (max_message == 0 || max_message >= SIZE_MAX / 2 || !ret)
                return -EINVAL;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->max_message = max_message;
        r->max_fds = VARLINK_WIRE_MAX_FDS;
        *ret = r;
        return 0;
}

VarlinkReader *varlink_reader_free(VarlinkReader *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_batches; i++) {
                close_fds(r->batches[i].fds, r->batches[i].n_fds);
                free(r->batches[i].fds);
        }
        free(r->batches);
        free(r->buf);
        free(r);
        return NULL;
}

int varlink_reader_set_max_fds(VarlinkReader *r, size_t max_fds) {
        if (!r || max_fds > VARLINK_WIRE_MAX_FDS)
                return -EINVAL;
        r->max_fds = max_fds;
        return 0;
}

size_t varlink_reader_buffered_fds(const VarlinkReader *r) {
        return r ? r->n_fds : 0;
}

size_t varlink_reader_buffered(const VarlinkReader *r) {
        return r ? r->end - r->start : 0;
}

/* Move unconsumed bytes to the front and make room for more, growing the
 * buffer geometrically but never past max_message + 1 (message + NUL). */
static int reader_make_room(VarlinkReader *r) {
        size_t cap = r->max_message + 1, want;
        char *b;

        if (r->start > 0) {
                memmove(r->buf, r->buf + r->start, r->end - r->start);
                r->buf_offset += r->start;
                r->end -= r->start;
                r->start = 0;
        }
        if (r->end < r->allocated)
                return 0;
        if (r->allocated >= cap)
                return -E2BIG;

        want = r->allocated ? r->allocated * 2 : READER_INITIAL_SIZE;
        if (want > cap)
                want = cap;
        b = realloc(r->buf, want);
        if (!b)
                return -ENOMEM;
        r->buf = b;
        r->allocated = want;
        return 0;
}

static int reader_add_batch(VarlinkReader *r, uint64_t offset, int *fds, size_t n_fds) {
        FdBatch *b = realloc(r->batches, sizeof(FdBatch) * (r->n_batches + 1));
        int *copy = malloc(sizeof(int) * n_fds);

        if (!b || !copy) {
                if (b)
                        r->batches = b;
                free(copy);
                close_fds(fds, n_fds);
                return -ENOMEM;
        }
        memcpy(copy, fds, sizeof(int) * n_fds);
        r->batches = b;
        r->batches[r->n_batches++] = (FdBatch) { .offset = offset, .fds = copy, .n_fds = n_fds };
        r->n_fds += n_fds;
        return 0;
}

/* Collect the fds out of the control messages; every one gets closed if the
 * set is unusable, so a bad peer cannot leak descriptors into us. */
static int collect_fds(struct msghdr *mh, int *fds, size_t *n_fds) {
        bool overflow = false;

        *n_fds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                size_t n;
                int *p;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                p = (int *) CMSG_DATA(c);
                for (size_t i = 0; i < n; i++) {
                        int fd;

                        memcpy(&fd, p + i, sizeof(int));
                        if (*n_fds < VARLINK_WIRE_MAX_FDS)
                                fds[(*n_fds)++] = fd;
                        else {
                                safe_close(fd);
                                overflow = true;
                        }
                }
        }

        if (overflow || (mh->msg_flags & MSG_CTRUNC)) {
                /* Truncated with room to spare: the kernel could not install
                 * them (our RLIMIT_NOFILE), not a peer sending too many. */
                bool no_room = !overflow && *n_fds < VARLINK_WIRE_MAX_FDS;

                close_fds(fds, *n_fds);
                *n_fds = 0;
                return no_room ? -EMFILE : -EPROTO;
        }
        return 0;
}

int varlink_reader_fill(VarlinkReader *r, int fd) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * VARLINK_WIRE_MAX_FDS)];
        } control;
        int fds[VARLINK_WIRE_MAX_FDS];
        size_t n_fds = 0;
        struct iovec iov;
        struct msghdr mh;
        uint64_t last_byte;
        ssize_t n;
        int r_err;

        if (!r || fd < 0)
                return -EINVAL;
        if (r->too_big)
                return -E2BIG;

        r_err = reader_make_room(r);
        if (r_err < 0)
                return r_err;

        iov = (struct iovec) { .iov_base = r->buf + r->end, .iov_len = r->allocated - r->end };
        for (;;) {
                memset(&control, 0, sizeof(control));
                /* No room for fds when none are taken: the kernel then drops
                 * them, and they never enter our fd table. */
                mh = (struct msghdr) {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = r->max_fds > 0 ? &control : NULL,
                        .msg_controllen = r->max_fds > 0 ? sizeof(control) : 0,
                };
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (n >= 0)
                        break;
                if (errno != EINTR)
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }

        /* Dropped fds flag MSG_CTRUNC: expected when we take none. */
        if (r->max_fds == 0)
                mh.msg_flags &= ~MSG_CTRUNC;
        r_err = collect_fds(&mh, fds, &n_fds);
        if (r_err < 0)
                return r_err;

        /* Checked per recvmsg(), before anything waits for a message end. */
        if (r->n_fds + n_fds > r->max_fds) {
                close_fds(fds, n_fds);
                return -EPROTO;
        }
        /* Fds with no byte to belong to (EOF) have no message. */
        if (n == 0 && n_fds > 0) {
                close_fds(fds, n_fds);
                n_fds = 0;
        }

        r->end += (size_t) n;
        last_byte = r->buf_offset + r->end - 1;

        if (n_fds > 0) {
                r_err = reader_add_batch(r, last_byte, fds, n_fds);
                if (r_err < 0)
                        return r_err;
        }
        return (int) n;
}

/* Hand out (or close) every fd batch that belongs to the message ending
 * (with its NUL) at stream offset msg_end. Batches of earlier messages were
 * taken with them, so everything up to msg_end is this message's. */
static int reader_take_fds(VarlinkReader *r, uint64_t msg_end, int **ret_fds, size_t *ret_n_fds) {
        size_t n_batches = 0, total = 0;
        int *fds = NULL;
        bool oom = false;

        while (n_batches < r->n_batches && r->batches[n_batches].offset <= msg_end)
                total += r->batches[n_batches++].n_fds;

        /* On allocation failure the fds are closed like an unusable set. */
        if (total > 0 && total <= VARLINK_WIRE_MAX_FDS && ret_fds) {
                fds = malloc(sizeof(int) * total);
                oom = !fds;
        }

        total = 0;
        for (size_t i = 0; i < n_batches; i++) {
                FdBatch *b = &r->batches[i];

                if (fds)
                        memcpy(fds + total, b->fds, sizeof(int) * b->n_fds);
                else
                        close_fds(b->fds, b->n_fds);
                total += b->n_fds;
                r->n_fds -= b->n_fds;
                free(b->fds);
        }
        if (n_batches > 0) {
                memmove(r->batches, r->batches + n_batches, sizeof(FdBatch) * (r->n_batches - n_batches));
                r->n_batches -= n_batches;
        }

        if (oom)
                return -ENOMEM;
        if (total > VARLINK_WIRE_MAX_FDS)
                return -EPROTO;         /* all closed above */

        if (ret_fds)
                *ret_fds = fds;
        if (ret_n_fds)
                *ret_n_fds = fds ? total : 0;
        return 0;
}

const char *varlink_reader_bad_message(const VarlinkReader *r) {
        return r && r->bad_message[0] ? r->bad_message : "message is not a JSON object";
}

int varlink_reader_next(VarlinkReader *r, json_t **ret, int **ret_fds, size_t *ret_n_fds) {
        _cleanup_free_ int *fds = NULL;
        size_t n_fds = 0, len;
        json_error_t error;
        json_t *v;
        char *nul;
        int k;

        if (!r || !ret)
                return -EINVAL;
        if (ret_fds)
                *ret_fds = NULL;
        if (ret_n_fds)
                *ret_n_fds = 0;
        if (r->too_big)
                return -E2BIG;

        nul = r->end > r->start ? memchr(r->buf + r->start, 0, r->end - r->start) : NULL;
        if (!nul) {
                if (r->end - r->start > r->max_message) {
                        r->too_big = true;
                        return -E2BIG;
                }
                return 0;
        }

        len = (size_t) (nul - (r->buf + r->start));
        if (len > r->max_message) {
                r->too_big = true;
                return -E2BIG;
        }

        k = reader_take_fds(r, r->buf_offset + r->start + len, &fds, &n_fds);
        /* The usual call takes the fast path; anything else, jansson. */
        if (k < 0)
                v = NULL;
        else if (json_parse_simple(r->buf + r->start, len, &v) <= 0)
                v = json_loadb(r->buf + r->start, len, JSON_REJECT_DUPLICATES, &error);
        r->start += len + 1;
        if (k < 0)
                return k;
        if (!json_is_object(v)) {
                /* jansson's own words ("duplicate object key", "invalid
                 * UTF-8", "too big integer") say more than "not an object". */
                snprintf(r->bad_message, sizeof(r->bad_message), "%s%.100s",
                         v ? "message is not a JSON object" : "message is not valid JSON: ", v ? "" : error.text);
                json_decref(v);
                close_fds(fds, n_fds);
                return -EBADMSG;
        }

        *ret = v;
        if (ret_fds) {
                *ret_fds = TAKE_PTR(fds);
                if (ret_n_fds)
                        *ret_n_fds = n_fds;
        } else
                close_fds(fds, n_fds);
        return 1;
}

char *varlink_wire_encode(const json_t *msg, size_t *ret_len) {
        char *s;

        if (!msg)
                return NULL;
        /* jansson escapes U+0000 inside strings, so the only NUL is the frame end. */
        s = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s && ret_len)
                *ret_len = strlen(s) + 1;
        return s;
}

ssize_t varlink_wire_write(int fd, const void *buf, size_t len, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * VARLINK_WIRE_MAX_FDS)];
        } control;
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (fd < 0 || (!buf && len > 0) || n_fds > VARLINK_WIRE_MAX_FDS || (n_fds > 0 && !fds))
                return -EINVAL;

        if (n_fds > 0) {
                struct cmsghdr *c;

                memset(&control, 0, sizeof(control));
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }

        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return n;
}

static int wait_writable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int k;

        do
                k = poll(&p, 1, -1);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        if (p.revents & POLLNVAL)
                return -EBADF;
        return 0;
}

int varlink_wire_send(int fd, const json_t *msg, const int *fds, size_t n_fds) {
        _cleanup_free_ char *s = NULL;
        size_t len = 0, done = 0;

        if (fd < 0 || !msg || n_fds > VARLINK_WIRE_MAX_FDS || (n_fds > 0 && !fds))
                return -EINVAL;

        s = varlink_wire_encode(msg, &len);
        if (!s)
                return -ENOMEM;

        while (done < len) {
                /* The fds go with the first byte only: the reader pairs them
                 * with the message starting in that recvmsg(). */
                ssize_t n = varlink_wire_write(fd, s + done, len - done,
                                               done == 0 ? fds : NULL, done == 0 ? n_fds : 0);
                if (n == -EAGAIN) {
                        int k = wait_writable(fd);
                        if (k < 0)
                                return k;
                        continue;
                }
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return -EPIPE;
                done += (size_t) n;
        }
        return 0;
}
