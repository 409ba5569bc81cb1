/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The transport floor of an Acquire+Release pair (bench-floor.c). */

#include <sys/types.h>

/* The D-Bus floor server's name; its object and interface are the broker's,
 * so one call site serves both. */
#define FLOOR_DBUS_NAME "io.iommufd.BenchFloor"
#define FLOOR_DBUS_PATH "/io/iommufd/Broker1"
#define FLOOR_DBUS_INTERFACE "io.iommufd.Broker1"

/* A varlink server on path answering Acquire and Release. Forked. */
pid_t floor_varlink_start(const char *path);
/* An sd-bus service on the bus, ready when this returns. Forked. */
pid_t floor_dbus_start(const char *bus_address);
