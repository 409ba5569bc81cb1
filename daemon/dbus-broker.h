/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

/*
 * The D-Bus front end: owns io.iommufd.Broker1, serves the manager object
 * /io/iommufd/Broker1 (with an ObjectManager) and the device objects
 * (dbus-device.h), turns manager events into signals, and keeps one Session
 * per sender unique name, ended when the name leaves the bus.
 */
typedef struct DbusBroker DbusBroker;

/* Sessions the broker keeps for D-Bus clients: each holds an iommufd and a
 * pidfd until its bus name leaves, and users may open as many bus
 * connections as dbus-daemon allows. The same numbers as varlink
 * connections (--max-connections-per-uid, --max-connections); root is never
 * counted nor refused. 0: the default. */
#define DBUS_DEFAULT_MAX_SESSIONS_PER_UID 64u
#define DBUS_DEFAULT_MAX_SESSIONS         1024u
typedef struct DbusLimits {
        unsigned max_sessions_per_uid;
        unsigned max_sessions;          /* all uids but root together */
} DbusLimits;

/* Connect to bus_address (NULL: the system bus), attach to manager_event(m),
 * register the objects and request the name. Fails with -EEXIST (logged) if
 * another connection owns the name. */
int dbus_broker_start(Manager *m, const char *bus_address, const DbusLimits *limits, DbusBroker **ret);

/* Ends every D-Bus session, then leaves the bus. NULL is fine. */
DbusBroker *dbus_broker_free(DbusBroker *b);

/* Who sent m, as policy sees it (uid, groups, unit, pidfd). */
int dbus_principal_from_message(sd_bus_message *m, Principal **ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(DbusBroker *, dbus_broker_free);
