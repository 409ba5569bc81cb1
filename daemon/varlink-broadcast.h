/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Stream notifications shared by many streams (Monitor's fan-out): one log
 * of framed notifications per group of streams that see the same text, each
 * notification framed and stored once, and per stream nothing but a read
 * position. The server's flush gives each stream what it has not read in
 * one write: at the next loop iteration, or while notifications keep coming
 * at most once per flush interval (VARLINK_STREAM_FLUSH_USEC, doubling while
 * the burst lasts up to VARLINK_STREAM_FLUSH_MAX_USEC; varlink.h), so a
 * stream's notifications are late by at most that much.
 *
 * What a stream has not read counts as its queued output (and its uid's):
 * past max_stream_output, or with its uid past max_output_per_uid, the
 * streams furthest behind are dropped, as for any queued output (varlink.h).
 */

#include <stddef.h>

#include "varlink.h"

typedef struct VarlinkBroadcast VarlinkBroadcast;

int varlink_broadcast_new(VarlinkServer *s, VarlinkBroadcast **ret);
/* Streams still attached stop following it. */
VarlinkBroadcast *varlink_broadcast_free(VarlinkBroadcast *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkBroadcast *, varlink_broadcast_free);

/* The streaming call's connection gets everything appended from now on,
 * after whatever the connection was sent before. One broadcast per
 * connection: -EBUSY if it follows another one. */
int varlink_broadcast_attach(VarlinkBroadcast *b, VarlinkCall *call);
/* Stop following (the call ends); nothing if it does not follow b. */
void varlink_broadcast_detach(VarlinkBroadcast *b, VarlinkCall *call);
size_t varlink_broadcast_n_streams(const VarlinkBroadcast *b);

/* One "continues": true notification with parameters (a JSON object's text,
 * len bytes, no NUL) for every attached stream. */
int varlink_broadcast_append(VarlinkBroadcast *b, const char *parameters, size_t len);
