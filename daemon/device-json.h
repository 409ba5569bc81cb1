/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The IDL's Device object (protocol/io.iommufd.Broker.varlink) for a Device.
 * Optional fields without a value are omitted rather than sent as null.
 *
 * Lists are answered from text: each device's caller-independent members are
 * serialized once and kept in the Device (Device.json_text) until the device
 * changes; only the few members that depend on who asks (state when policy
 * refuses them, holder, access) are written per call.
 */

#include <jansson.h>

#include "device-access.h"
#include "device.h"
#include "manager.h"

/* A growing string; after a failed append it stays failed (ENOMEM at the end). */
typedef struct TextBuf {
        char *data;
        size_t len, size;
        bool failed;
} TextBuf;

void text_append(TextBuf *b, const char *s, size_t n);
void text_puts(TextBuf *b, const char *s);
/* A string literal, without measuring it at run time. */
#define text_literal(b, s) text_append((b), "" s "", sizeof(s) - 1)
/* Room for n more bytes, so a list of known size grows once. */
void text_reserve(TextBuf *b, size_t n);
void text_done(TextBuf *b);

/* What a caller sees: policy refusing the caller makes an available device
 * "unavailable", with the policy's reason. */
DeviceState device_view_state(DeviceState state, const DeviceAccess *access);

/* From parts, without a manager (tests). holder: NULL unless it may be shown;
 * access: NULL to leave the per-caller fields out. */
json_t *device_json_build(const Device *d, DeviceState state, const char *reason, const Holder *holder,
                          const DeviceAccess *access);

/* The same object as text, appended to b, from d's cache (built if missing). */
int device_json_append_parts(TextBuf *b, Device *d, DeviceState state, const char *reason, const Holder *holder,
                             const DeviceAccess *access);

/* d as viewer sees it, state and reason from the manager (cached in d), holder
 * only if viewer may see it (root or the holder's own uid), access from policy.
 * index: d's place in inventory_devices(), or SIZE_MAX. Returns 1 if d's
 * cached text had to be built, 0 if it was there, or negative errno. */
int device_json_append(Manager *m, Device *d, size_t index, const Principal *viewer, TextBuf *b);
