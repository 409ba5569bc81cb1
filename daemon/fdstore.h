/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The service manager's fd store: each session's iommufd and its holder's
 * pidfd wait there under FDNAME=iommufd-<session> and pidfd-<session>, each
 * lease's vfio request eventfd under request.<address>-<session>, so leases
 * survive a restart. Everything is a no-op without $NOTIFY_SOCKET.
 *
 * Cheap enough for every Acquire and Release: one datagram per push or
 * removal on a socket connected once (sd_notify() makes a socket and eight
 * other system calls per message), and a name already in the store is not
 * pushed again (the manager would keep one copy anyway).
 */

bool fdstore_available(void);
/* Push fd (a duplicate goes to the manager) as <kind>-<session_id>. */
int fdstore_push(int fd, const char *kind, uint64_t session_id);
int fdstore_remove(const char *kind, uint64_t session_id);
/* Room for any kind of ours. */
#define FDSTORE_KIND_MAX 32
/* Parse an FDNAME of ours ("iommufd-12", "request.0000_03_00.0-12"); -EINVAL if not ours. */
int fdstore_parse_name(const char *name, char *kind, size_t kind_size, uint64_t *ret_session_id);
/* The kind of a lease's request eventfd: per device, since a session may
 * hold several ("request." and the address, ':' being no FDNAME character). */
void fdstore_request_kind(char buf[static FDSTORE_KIND_MAX], const char *address);

/* Tests: forget the connected socket and what was pushed. */
void fdstore_reset(void);
