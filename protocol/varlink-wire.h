/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The varlink wire format, shared by the daemon and the client library:
 * each message is one JSON object followed by a NUL byte on a stream socket.
 * File descriptors ride as SCM_RIGHTS on the sendmsg() that carries the
 * message naming them (by index); a reader hands each message the fds that
 * arrived with its first byte.
 *
 * NOT WRITTEN YET beyond this contract: the varlink engineer owns it.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define VARLINK_WIRE_MAX_FDS 64

typedef struct VarlinkReader VarlinkReader;

/* max_message: largest accepted message in bytes (without the NUL). */
int varlink_reader_new(size_t max_message, VarlinkReader **ret);
VarlinkReader *varlink_reader_free(VarlinkReader *r);   /* closes fds not taken */

/* One recvmsg() from fd (which may be non-blocking). Returns bytes read (>0),
 * 0 on EOF, -EAGAIN, or another negative errno. */
int varlink_reader_fill(VarlinkReader *r, int fd);

/* Take the next complete message: 1 and *ret (+ its fds, caller owns) if one
 * is complete, 0 if more input is needed, -E2BIG if a message exceeds
 * max_message, -EBADMSG if it is not a JSON object. */
int varlink_reader_next(VarlinkReader *r, json_t **ret, int **ret_fds, size_t *ret_n_fds);

/* Serialise msg + NUL. Caller frees. */
char *varlink_wire_encode(const json_t *msg, size_t *ret_len);

/* Blocking send of a whole message with its fds in one sendmsg (the rest, if
 * the socket took only part, in further writes without fds). */
int varlink_wire_send(int fd, const json_t *msg, const int *fds, size_t n_fds);
