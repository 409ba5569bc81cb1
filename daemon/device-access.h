/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What policy lets one caller do with each device, for ListDevices,
 * GetDevice, Monitor and the D-Bus properties. Evaluating the rules for every
 * device on every list would cost more than the list itself, so answers are
 * kept per principal (uid, gid, groups, unit: what rules can match) for the
 * few most recent principals, and dropped whenever the policy or the
 * inventory changes. Leases do not change them: policy does not look at
 * leases.
 */

#include "device.h"
#include "policy.h"
#include "principal.h"

typedef enum DeviceAccessLevel {
        DEVICE_ACCESS_ALLOWED,          /* policy allows at least one mode */
        DEVICE_ACCESS_POLKIT,           /* only after polkit authorization */
        DEVICE_ACCESS_DENIED,           /* no rule, or no mode allowed: see reason */
        _DEVICE_ACCESS_MAX,
} DeviceAccessLevel;

const char *device_access_level_to_string(DeviceAccessLevel l); /* "allowed", "polkit", "denied" */

typedef struct DeviceAccess {
        DeviceAccessLevel level;
        unsigned modes;                 /* 1 << AcquireMode for each mode allowed (at this level) */
        bool managed;                   /* managed acquire allowed too */
        const char *reason;             /* denied: why (plain text), else NULL */
        const char *reason_json;        /* the same as a JSON string, or NULL */
        const char *polkit_action;      /* polkit: the action, else NULL */
} DeviceAccess;

typedef struct AccessCache AccessCache;

AccessCache *access_cache_new(void);
AccessCache *access_cache_free(AccessCache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AccessCache *, access_cache_free);

/* Forget every answer: the policy was reloaded or the inventory changed. */
void access_cache_flush(AccessCache *c);

/* What who may do with d, the index-th device of an inventory of n. The
 * strings in *ret stay valid until the next flush. Falls back to evaluating
 * without caching when memory is short. */
void access_cache_get(AccessCache *c, const Policy *p, const Principal *who, const Device *d, size_t index,
                      size_t n, DeviceAccess *ret);

/* Whether two principals look the same to policy (so get the same answers). */
bool principal_same_to_policy(const Principal *a, const Principal *b);

/* Evaluate without a cache; reason/reason_json/polkit_action point into
 * *scratch (and the policy). */
typedef struct DeviceAccessScratch {
        char reason[256];
        char reason_json[600];
} DeviceAccessScratch;
void device_access_evaluate(const Policy *p, const Principal *who, const Device *d, DeviceAccess *ret,
                            DeviceAccessScratch *scratch);

/* s as a JSON string literal (quotes included) into buf; false if it does not fit. */
bool json_quote(const char *s, char *buf, size_t size);
