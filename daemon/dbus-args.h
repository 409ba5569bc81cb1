/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The arguments of D-Bus calls and what AcquireDevices returns. Decoding is
 * bounded while read (a hostile caller may send arrays of any length the bus
 * allows), linear, with a typed error in err for anything the caller got
 * wrong. Separate from dbus-broker.c so that tests/fuzz/ can drive the
 * decoding with raw messages.
 */

#include <systemd/sd-bus.h>

#include "error.h"
#include "session.h"

/* "as": at most BROKER_VARLINK_MAX_DEVICES_PER_CALL addresses (like
 * varlink). *ret is a NULL-terminated strv, never NULL. */
int dbus_read_devices(sd_bus_message *m, char ***ret, BrokerError *err);

/* "a{sv}" options of AcquireDevices: mode (s), managed (b), interactive (b);
 * at most 16 entries. */
int dbus_read_acquire_options(sd_bus_message *m, AcquireRequest *req, BrokerError *err);

/* AcquireDevices' out arguments, "ha(sha{sv})a{sv}" (docs/dbus.md), appended
 * to reply: the session's iommufd, each device's fd with dev_id and hwpt_id,
 * and session, ioas_id and (when policy raised it) memlock_limit. sd-bus
 * dups the fds; the caller closes its own. */
int dbus_append_acquire_reply(sd_bus_message *reply, const AcquireReply *a);
