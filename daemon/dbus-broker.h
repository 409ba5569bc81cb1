/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

/*
 * The D-Bus front end: owns io.iommufd.Broker1, serves the manager object
 * /io/iommufd/Broker1 (with an ObjectManager) and the device objects
 * (dbus-device.h), turns manager events into signals, and keeps one Session
 * per sender unique name, ended when the name leaves the bus.
 *
 * Each session holds an iommufd and a pidfd until its name leaves, and
 * users may open as many bus connections as dbus-daemon allows: sessions
 * are charged to manager_quota() with the varlink connections, so one uid's
 * varlink connections and D-Bus sessions together stay within
 * --max-connections-per-uid, everyone's within --max-connections. A session
 * past a cap is refused with Error.LimitExceeded; root never is.
 */
typedef struct DbusBroker DbusBroker;

/* Connect to bus_address (NULL: the system bus), attach to manager_event(m),
 * register the objects and request the name. Fails with -EEXIST (logged) if
 * another connection owns the name. */
int dbus_broker_start(Manager *m, const char *bus_address, DbusBroker **ret);

/* Ends every D-Bus session, then leaves the bus. NULL is fine. */
DbusBroker *dbus_broker_free(DbusBroker *b);

/* Who sent m, as policy sees it (uid, groups, unit, pidfd). */
int dbus_principal_from_message(sd_bus_message *m, Principal **ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(DbusBroker *, dbus_broker_free);
