/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by policy.c (loading) and policy-check.c (deciding) only. */

#include "policy.h"

#define MODE_BIT(m) (1u << (m))
#define ALL_MODES (MODE_BIT(ACQUIRE_MODE_UNBOUND) | MODE_BIT(ACQUIRE_MODE_BOUND) | MODE_BIT(ACQUIRE_MODE_ATTACHED))
#define DEFAULT_POLKIT_ACTION "io.iommufd.broker.acquire"
#define DEFAULT_POLKIT_ACTION_MANAGED "io.iommufd.broker.acquire-managed"
#define BUILTIN_RULE "built-in default"

/* uids, gids or IOMMU group numbers; NULL v means "not given". */
typedef struct NumList {
        unsigned *v;
        size_t n;
} NumList;

typedef struct Rule {
        char *name;                     /* "policy.d/10-vm.json rule 2" */
        char **addresses, **ids, **classes;     /* globs, NULL: any */
        NumList iommu_groups;
        NumList uids, gids;
        char **units;                   /* globs */
        bool allow, managed;
        unsigned modes;                 /* MODE_BIT()s */
        char *polkit_action;            /* NULL: no polkit check */
        bool polkit_default;            /* "polkit": true: the action depends on managed */
        uint64_t memlock;               /* least RLIMIT_MEMLOCK to give; 0: leave it alone */
} Rule;

struct Policy {
        Rule *rules;
        size_t n_rules;
        MemlockAccounting memlock_accounting;
};

extern const char *const policy_mode_names[_ACQUIRE_MODE_MAX];
