/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fnmatch.h>
#include <stdio.h>

#include "policy-internal.h"

static bool globs_match(char **globs, const char *s) {
        if (!globs)
                return true;
        for (char **g = globs; *g; g++)
                if (fnmatch(*g, s, 0) == 0)
                        return true;
        return false;
}

static bool nums_contain(const NumList *l, unsigned v) {
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i] == v)
                        return true;
        return false;
}

static bool rule_matches_device(const Rule *r, const Device *d) {
        char id[16], class[16];

        snprintf(id, sizeof(id), "%04x:%04x", d->vendor_id, d->device_id);
        snprintf(class, sizeof(class), "0x%06x", d->class & 0xffffffu);
        if (!globs_match(r->addresses, d->address) || !globs_match(r->ids, id) || !globs_match(r->classes, class))
                return false;
        if (r->iommu_groups.v && (d->iommu_group < 0 || !nums_contain(&r->iommu_groups, d->iommu_group)))
                return false;
        return true;
}

static bool rule_matches_principal(const Rule *r, const Principal *who) {
        if (nums_contain(&r->uids, who->uid))
                return true;
        for (size_t i = 0; i < r->gids.n; i++)
                if (principal_in_group(who, r->gids.v[i]))
                        return true;
        return who->unit && r->units && globs_match(r->units, who->unit);
}

static void format_modes(unsigned modes, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = 0;
        for (int m = 0; m < _ACQUIRE_MODE_MAX; m++)
                if (modes & MODE_BIT(m))
                        n += snprintf(buf + n, size - n, "%s%s", n ? "," : "", policy_mode_names[m]);
}

static void decide_by_rule(const Rule *r, const Principal *who, const Device *d, AcquireMode mode,
                           bool managed, PolicyDecision *ret) {
        char modes[64];

        ret->rule = r->name;
        if (!r->allow) {
                snprintf(ret->reason, sizeof(ret->reason), "%s denies uid %u access to %s", r->name,
                         (unsigned) who->uid, d->address);
                return;
        }
        if (!(r->modes & MODE_BIT(mode))) {
                format_modes(r->modes, modes, sizeof(modes));
                snprintf(ret->reason, sizeof(ret->reason), "%s allows modes %s; %s was asked", r->name, modes,
                         policy_mode_names[mode]);
                return;
        }
        if (managed && !r->managed) {
                snprintf(ret->reason, sizeof(ret->reason),
                         "%s does not allow managed acquire (driver rebinding) of %s", r->name, d->address);
                return;
        }
        ret->managed_allowed = r->managed;
        ret->polkit_action = r->polkit_default && managed ? DEFAULT_POLKIT_ACTION_MANAGED : r->polkit_action;
        ret->verdict = r->polkit_action ? POLICY_ALLOW_WITH_POLKIT : POLICY_ALLOW;
        ret->memlock = r->memlock;
}

void policy_check(const Policy *p, const Principal *who, const Device *d, AcquireMode mode, bool managed,
                  PolicyDecision *ret) {
        *ret = (PolicyDecision) { .verdict = POLICY_DENY, .rule = BUILTIN_RULE };

        if (!who || !d || mode < 0 || mode >= _ACQUIRE_MODE_MAX) {
                snprintf(ret->reason, sizeof(ret->reason), "invalid policy query");
                return;
        }
        for (size_t i = 0; p && i < p->n_rules; i++) {
                const Rule *r = &p->rules[i];

                if (rule_matches_device(r, d) && rule_matches_principal(r, who)) {
                        decide_by_rule(r, who, d, mode, managed, ret);
                        return;
                }
        }
        if (who->uid == 0) {
                ret->verdict = POLICY_ALLOW;
                ret->managed_allowed = true;
                return;
        }
        snprintf(ret->reason, sizeof(ret->reason), "no policy rule grants uid %u access to %s",
                 (unsigned) who->uid, d->address);
}
