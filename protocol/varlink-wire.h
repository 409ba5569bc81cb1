/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The varlink wire format, shared by the daemon and the client library:
 * each message is one JSON object followed by a NUL byte on a stream socket.
 * File descriptors ride as SCM_RIGHTS on the sendmsg() that carries the
 * message naming them (by index); a reader hands each message the fds that
 * arrived with its first byte.
 *
 * Precisely: the fds of one recvmsg() belong to the message that the last
 * byte of that recvmsg() belongs to. The kernel may return earlier fd-less
 * data in the same recvmsg() as an fd-carrying sendmsg(), but never data sent
 * after it, so when a sender passes a message's fds with the sendmsg()
 * carrying its first byte (as varlink_wire_send() does), that is exactly the
 * message whose first byte came with the fds.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define VARLINK_WIRE_MAX_FDS 64

typedef struct VarlinkReader VarlinkReader;

/* max_message: largest accepted message in bytes (without the NUL). The
 * buffer grows on demand up to max_message + 1, never further. */
int varlink_reader_new(size_t max_message, VarlinkReader **ret);
VarlinkReader *varlink_reader_free(VarlinkReader *r);   /* closes fds not taken */

/* How many fds may wait in the reader for their message to complete, at
 * most VARLINK_WIRE_MAX_FDS (the default). 0: fds are closed as they arrive
 * (a server none of whose methods takes any), and the data goes on. More
 * than max_fds buffered: varlink_reader_fill() closes them and fails with
 * -EPROTO, so a message that never ends cannot hoard descriptors. */
int varlink_reader_set_max_fds(VarlinkReader *r, size_t max_fds);
/* Fds received and not yet taken with a message. */
size_t varlink_reader_buffered_fds(const VarlinkReader *r);

/* One recvmsg() from fd (which may be non-blocking; a blocking fd blocks).
 * Fds arrive with MSG_CMSG_CLOEXEC. Returns bytes read (>0), 0 on EOF,
 * -EAGAIN, -E2BIG if the buffer is already full with one incomplete message,
 * -EPROTO if the fds were truncated (MSG_CTRUNC) or were more than
 * VARLINK_WIRE_MAX_FDS or the max_fds buffered (they are closed), -EMFILE if
 * they were truncated with room left in the buffer (this process could not
 * install them: RLIMIT_NOFILE; those it could are closed), or another
 * negative errno.
 * EINTR is retried. */
int varlink_reader_fill(VarlinkReader *r, int fd);

/* Take the next complete message: 1 and *ret (+ its fds, caller owns; *ret_fds
 * is NULL when there are none) if one is complete, 0 if more input is needed,
 * -E2BIG if a message exceeds max_message, -EBADMSG if it is not a JSON object,
 * -EPROTO if more than VARLINK_WIRE_MAX_FDS fds belong to it. On -EBADMSG and
 * -EPROTO the offending message and its fds are dropped (fds closed), so the
 * caller may go on; -E2BIG is sticky (the stream cannot be resynchronised).
 * ret_fds and ret_n_fds may be NULL: the fds are then closed. */
int varlink_reader_next(VarlinkReader *r, json_t **ret, int **ret_fds, size_t *ret_n_fds);

/* Why the last -EBADMSG: "message is not a JSON object", or jansson's reason
 * the text is not valid JSON (a duplicate key, invalid UTF-8, ...). */
const char *varlink_reader_bad_message(const VarlinkReader *r);

/* Bytes received but not yet returned as a message. */
size_t varlink_reader_buffered(const VarlinkReader *r);

/* Serialise msg + NUL. Caller frees. *ret_len counts the NUL. NULL on ENOMEM. */
char *varlink_wire_encode(const json_t *msg, size_t *ret_len);

/* One sendmsg() (MSG_NOSIGNAL) of buf with fds (n_fds may be 0). Returns
 * bytes written (the fds went with them if > 0) or a negative errno (-EAGAIN
 * on a full non-blocking socket). For servers that queue output. */
ssize_t varlink_wire_write(int fd, const void *buf, size_t len, const int *fds, size_t n_fds);

/* Blocking send of a whole message with its fds in one sendmsg (the rest, if
 * the socket took only part, in further writes without fds). Works on
 * non-blocking sockets too (polls for POLLOUT). -EINVAL if n_fds exceeds
 * VARLINK_WIRE_MAX_FDS. Does not take the fds. */
int varlink_wire_send(int fd, const json_t *msg, const int *fds, size_t n_fds);
