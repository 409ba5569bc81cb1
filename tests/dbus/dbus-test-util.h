/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <systemd/sd-bus.h>

#include "broker-errors.h"
#include "util.h"
#include "test.h"

/* Helpers for the D-Bus integration tests (tests/dbus/), which run under
 * run-with-broker.sh: DBUS_TEST_ADDRESS names the private bus. */

#define DEVICE_IFACE BROKER_DBUS_DEVICE_INTERFACE
#define ERR(name) BROKER_DBUS_ERROR_PREFIX name

sd_bus *connect_bus(void);

/* Device properties; NULL / 0 (and a message on stderr) on failure. type: 't', 'u', 'i', 'q', 'b'. */
char *get_string(sd_bus *bus, const char *path, const char *property);
uint64_t get_number(sd_bus *bus, const char *path, const char *property, char type);
bool property_is(sd_bus *bus, const char *path, const char *property, const char *want);
/* Poll for up to 5 s. */
bool wait_property(sd_bus *bus, const char *path, const char *property, const char *want);

typedef struct Devices {
        char **addresses, **paths;
        char *free_a, *free_b;          /* two acquirable devices in different groups, or NULL */
        char *path_a, *path_b;
} Devices;

typedef struct Acquired {
        int iommufd;
        size_t n;
        char address[4][16];
        int fd[4];
        uint32_t dev_id[4], hwpt_id[4];
        uint64_t session;
        uint32_t ioas_id;
} Acquired;

int list_devices(sd_bus *bus, Devices *ret);
void devices_done(Devices *d);

/* AcquireDevices(devices, {key: <sig value>}); key NULL: no options. value
 * points to a string for sig "s", to an int otherwise. ret may be NULL. */
int acquire(sd_bus *bus, char **devices, const char *key, const char *sig, const void *value,
            sd_bus_error *error, Acquired *ret);
int acquire_one(sd_bus *bus, const char *address, const char *mode, sd_bus_error *error, Acquired *ret);
void acquired_done(Acquired *a);
int release(sd_bus *bus, char **devices, sd_bus_error *error);

/* Whether /proc/self/fd/FD points to want. */
bool fd_is(int fd, const char *want);
/* CHECK that r < 0 with error name want; frees error. */
void check_error(int r, sd_bus_error *error, const char *want, const char *what);

/* Signals under /io/iommufd/Broker1, one line each:
 *   "LeaseAcquired ADDRESS SESSION", "LeaseEnded ADDRESS SESSION REASON",
 *   "DeviceAdded ADDRESS PATH", "DeviceRemoved ADDRESS PATH",
 *   "InterfacesAdded PATH", "InterfacesRemoved PATH",
 *   "PropertiesChanged PATH State=VALUE" (or without State=). */
typedef struct Watch {
        sd_bus *bus;
        char **lines;
        uint64_t changed_usec;  /* CLOCK_MONOTONIC when the last PropertiesChanged line was read */
} Watch;

int watch_start(Watch *w);
void watch_done(Watch *w);
/* Wait up to 5 s for a line starting with prefix. */
bool watch_wait(Watch *w, const char *prefix);
/* Index of the first line from index from on starting with prefix, or -1. */
int watch_find(Watch *w, int from, const char *prefix);
/* Read signals for usec. */
void watch_pump(Watch *w, uint64_t usec);
/* Send m (made on w->bus) without waiting: its reply becomes the line
 * "Reply LABEL" (or "Error LABEL NAME") among the signals, in the order
 * they arrived on the connection. */
int watch_call(Watch *w, sd_bus_message *m, const char *label);

uint64_t now_usec(void);
