/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "device.h"
#include "memlock.h"
#include "principal.h"

/*
 * Static rules from /etc/iommufd-broker/policy.json and the *.json files of policy.d
 * (docs/policy.md describes the format). Rules are tried in order (the main
 * file, then drop-ins sorted by name); the first one that matches both the
 * device and the principal decides. Without a matching rule, root may do
 * everything and everyone else nothing.
 */
typedef struct Policy Policy;

typedef enum AcquireMode {
        ACQUIRE_MODE_UNBOUND,   /* device fd + iommufd; the VMM binds (QEMU, libvirt, CH) */
        ACQUIRE_MODE_BOUND,     /* VFIO_DEVICE_BIND_IOMMUFD done */
        ACQUIRE_MODE_ATTACHED,  /* bound and attached to the session's IOAS (default) */
        _ACQUIRE_MODE_MAX,
        _ACQUIRE_MODE_INVALID = -EINVAL,
} AcquireMode;

const char *acquire_mode_to_string(AcquireMode m);
AcquireMode acquire_mode_from_string(const char *s);

typedef enum PolicyVerdict {
        POLICY_DENY,
        POLICY_ALLOW,
        POLICY_ALLOW_WITH_POLKIT,       /* allowed if polkit action `polkit_action` passes */
} PolicyVerdict;

typedef struct PolicyDecision {
        PolicyVerdict verdict;
        bool managed_allowed;           /* may rebind drivers for this device */
        const char *polkit_action;      /* owned by the Policy (or static) */
        uint64_t memlock;               /* least RLIMIT_MEMLOCK to give the client; 0: none; MEMLOCK_UNLIMITED */
        const char *rule;               /* "policy.json rule 2", for messages; owned by the Policy */
        char reason[256];               /* why denied */
} PolicyDecision;

/* An empty policy: only the built-in default. */
int policy_new_default(Policy **ret);

/* Load a main file (may be missing) and a drop-in dir (may be missing).
 * Errors are written to `errors` (if not NULL) as "FILE: rule N: what is wrong"
 * lines; returns -EINVAL if anything was wrong. */
int policy_load(const char *path, const char *dropin_dir, FILE *errors, Policy **ret);

/* Parse one JSON text, for tests. */
int policy_load_string(const char *json, const char *name, FILE *errors, Policy **ret);

Policy *policy_free(Policy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Policy *, policy_free);

size_t policy_n_rules(const Policy *p);

/* "memlock_accounting" of the policy (process unless it says user). */
MemlockAccounting policy_memlock_accounting(const Policy *p);

/* Decide whether principal may acquire device in this mode (managed: with driver rebinding). */
void policy_check(const Policy *p, const Principal *who, const Device *d, AcquireMode mode, bool managed,
                  PolicyDecision *ret);
