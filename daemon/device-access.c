/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>

#include "device-access.h"

/* A few principals at once is the common case (a VMM, an admin, a UI);
 * more just means re-evaluating, never a wrong answer. */
#define ACCESS_CACHE_ENTRIES 8

/* What a denial or a polkit rule says; devices under one rule say the same,
 * so an entry keeps each distinct one once. */
typedef struct Texts {
        const char *polkit_action;      /* owned by the policy: valid until the next flush */
        char *reason, *reason_json;
} Texts;

/* One device's answer, packed: a broker may have thousands of devices. */
typedef struct Slot {
        uint8_t known;
        uint8_t level;                  /* DeviceAccessLevel */
        uint8_t modes;
        uint8_t managed;
        uint32_t texts;                 /* index into Entry.texts, 0 = none */
} Slot;

typedef struct Entry {
        bool used;
        uint64_t last_use;
        Principal key;                  /* uid, gid, groups and unit copied; no pidfd */
        Slot *slots;
        size_t n_slots;
        Texts *texts;                   /* [0] unused */
        size_t n_texts;
} Entry;

struct AccessCache {
        Entry entries[ACCESS_CACHE_ENTRIES];
        uint64_t clock;
        Entry *recent;                  /* the last one used: a list asks for one principal n times */
};

static const char *const level_names[_DEVICE_ACCESS_MAX] = {
        [DEVICE_ACCESS_ALLOWED] = "allowed",
        [DEVICE_ACCESS_POLKIT] = "polkit",
        [DEVICE_ACCESS_DENIED] = "denied",
};

const char *device_access_level_to_string(DeviceAccessLevel l) {
        return l >= 0 && l < _DEVICE_ACCESS_MAX ? level_names[l] : NULL;
}

/* Appends one code point's worth of bytes at s if they are valid UTF-8;
 * returns how many, or 0 if they are not. */
static size_t utf8_sequence_length(const unsigned char *s) {
        size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;

        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

bool json_quote(const char *s, char *buf, size_t size) {
        size_t o = 0;

#define PUT(c) do { if (o + 1 >= size) return false; buf[o++] = (c); } while (0)
        PUT('"');
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                if (*p == '"' || *p == '\\') {
                        PUT('\\');
                        PUT((char) *p++);
                } else if (*p < 0x20) {
                        if (o + 7 >= size)
                                return false;
                        o += (size_t) snprintf(buf + o, size - o, "\\u%04x", *p++);
                } else if (*p < 0x80) {
                        PUT((char) *p++);
                } else {
                        size_t n = utf8_sequence_length(p);
                        if (n == 0) {
                                /* Not UTF-8: say so rather than send invalid JSON. */
                                for (const char *r = "\\ufffd"; *r; r++)
                                        PUT(*r);
                                p++;
                                continue;
                        }
                        for (size_t i = 0; i < n; i++)
                                PUT((char) *p++);
                }
        }
        PUT('"');
#undef PUT
        buf[o] = 0;
        return true;
}

void device_access_evaluate(const Policy *p, const Principal *who, const Device *d, DeviceAccess *ret,
                            DeviceAccessScratch *scratch) {
        unsigned allowed = 0, polkit = 0;
        bool managed_allowed = false, managed_polkit = false;
        const char *action = NULL;

        scratch->reason[0] = 0;
        for (AcquireMode mode = 0; mode < _ACQUIRE_MODE_MAX; mode++) {
                PolicyDecision dec;

                policy_check(p, who, d, mode, false, &dec);
                switch (dec.verdict) {
                case POLICY_ALLOW:
                        allowed |= 1u << mode;
                        managed_allowed = managed_allowed || dec.managed_allowed;
                        break;
                case POLICY_ALLOW_WITH_POLKIT:
                        polkit |= 1u << mode;
                        managed_polkit = managed_polkit || dec.managed_allowed;
                        action = dec.polkit_action;
                        break;
                default:
                        /* The default mode's reason is the one a client sees first. */
                        if (!scratch->reason[0] || mode == ACQUIRE_MODE_ATTACHED)
                                snprintf(scratch->reason, sizeof(scratch->reason), "%s",
                                         dec.reason[0] ? dec.reason : "policy does not allow it");
                        break;
                }
        }

        if (allowed)
                *ret = (DeviceAccess) { .level = DEVICE_ACCESS_ALLOWED, .modes = allowed, .managed = managed_allowed };
        else if (polkit)
                *ret = (DeviceAccess) { .level = DEVICE_ACCESS_POLKIT, .modes = polkit, .managed = managed_polkit,
                                        .polkit_action = action };
        else {
                *ret = (DeviceAccess) { .level = DEVICE_ACCESS_DENIED, .reason = scratch->reason };
                if (json_quote(scratch->reason, scratch->reason_json, sizeof(scratch->reason_json)))
                        ret->reason_json = scratch->reason_json;
        }
}

bool principal_same_to_policy(const Principal *a, const Principal *b) {
        if (a == b)
                return true;
        if (!a || !b)
                return false;
        return a->uid == b->uid && a->gid == b->gid && a->n_groups == b->n_groups &&
               (a->n_groups == 0 || memcmp(a->groups, b->groups, a->n_groups * sizeof(gid_t)) == 0) &&
               streq_ptr(a->unit, b->unit);
}

static void entry_clear(Entry *e) {
        for (size_t i = 1; i < e->n_texts; i++) {
                free(e->texts[i].reason);
                free(e->texts[i].reason_json);
        }
        free(e->texts);
        free(e->slots);
        free(e->key.groups);
        free(e->key.unit);
        *e = (Entry) {};
}

static int entry_init(Entry *e, const Principal *who, size_t n) {
        *e = (Entry) { .used = true, .n_slots = n };
        e->key = (Principal) { .uid = who->uid, .gid = who->gid, .pid = 0, .pidfd = -EBADF,
                               .n_groups = who->n_groups };
        e->slots = calloc(n ?: 1, sizeof(Slot));
        if (who->n_groups > 0) {
                e->key.groups = malloc(who->n_groups * sizeof(gid_t));
                if (e->key.groups)
                        memcpy(e->key.groups, who->groups, who->n_groups * sizeof(gid_t));
        }
        if (who->unit)
                e->key.unit = strdup(who->unit);
        if (!e->slots || (who->n_groups > 0 && !e->key.groups) || (who->unit && !e->key.unit)) {
                entry_clear(e);
                return -ENOMEM;
        }
        return 0;
}

AccessCache *access_cache_new(void) {
        return calloc(1, sizeof(AccessCache));
}

void access_cache_flush(AccessCache *c) {
        /* The answers change: so does every device's JSON. */
        device_json_changed();
        if (!c)
                return;
        for (size_t i = 0; i < ACCESS_CACHE_ENTRIES; i++)
                entry_clear(&c->entries[i]);
}

AccessCache *access_cache_free(AccessCache *c) {
        access_cache_flush(c);
        free(c);
        return NULL;
}

/* The entry for who, made (evicting the least recently used) if needed. */
static Entry *entry_for(AccessCache *c, const Principal *who, size_t n) {
        Entry *victim = &c->entries[0];

        if (c->recent && c->recent->used && c->recent->n_slots == n && principal_same_to_policy(&c->recent->key, who))
                return c->recent;
        for (size_t i = 0; i < ACCESS_CACHE_ENTRIES; i++) {
                Entry *e = &c->entries[i];

                if (e->used && e->n_slots == n && principal_same_to_policy(&e->key, who))
                        return e;
                if (!e->used || (victim->used && e->last_use < victim->last_use))
                        victim = e;
        }
        entry_clear(victim);
        return entry_init(victim, who, n) < 0 ? NULL : victim;
}

/* The index of a's texts in e, added if new; 0 if there are none or memory
 * is short (then the slot stays unknown). Compares with the last few added:
 * devices under one rule come in runs. */
static uint32_t entry_texts(Entry *e, const DeviceAccess *a, bool *ret_failed) {
        Texts *t;

        *ret_failed = false;
        if (!a->reason && !a->polkit_action)
                return 0;
        for (size_t i = e->n_texts; i > 1 && i + 4 > e->n_texts; i--) {
                t = &e->texts[i - 1];
                if (t->polkit_action == a->polkit_action && streq_ptr(t->reason, a->reason) &&
                    streq_ptr(t->reason_json, a->reason_json))
                        return (uint32_t) (i - 1);
        }
        if (e->n_texts >= UINT32_MAX || (e->n_texts & (e->n_texts - 1)) == 0) {
                /* Grow at powers of two (1, 2, 4, ...): [0] is the unused one. */
                size_t n = e->n_texts ? e->n_texts * 2 : 2;
                t = e->n_texts < UINT32_MAX ? reallocarray(e->texts, n, sizeof(Texts)) : NULL;
                if (!t)
                        goto fail;
                e->texts = t;
                if (e->n_texts == 0)
                        e->n_texts = 1;
        }
        t = &e->texts[e->n_texts];
        *t = (Texts) { .polkit_action = a->polkit_action };
        if ((a->reason && !(t->reason = strdup(a->reason))) ||
            (a->reason_json && !(t->reason_json = strdup(a->reason_json)))) {
                free(t->reason);
                goto fail;
        }
        return (uint32_t) e->n_texts++;
fail:
        *ret_failed = true;
        return 0;
}

static void slot_fill(Entry *e, Slot *s, const Policy *p, const Principal *who, const Device *d) {
        DeviceAccessScratch scratch;
        DeviceAccess a;
        bool failed;
        uint32_t texts;

        device_access_evaluate(p, who, d, &a, &scratch);
        texts = entry_texts(e, &a, &failed);
        if (failed)
                return;
        *s = (Slot) { .known = true, .level = (uint8_t) a.level, .modes = (uint8_t) a.modes,
                      .managed = a.managed, .texts = texts };
}

void access_cache_get(AccessCache *c, const Policy *p, const Principal *who, const Device *d, size_t index,
                      size_t n, DeviceAccess *ret) {
        static DeviceAccessScratch fallback;    /* single-threaded; valid until the next call */
        Entry *e = c && who && index < n ? entry_for(c, who, n) : NULL;
        Slot *s;

        if (!e) {
                device_access_evaluate(p, who, d, ret, &fallback);
                return;
        }
        e->last_use = ++c->clock;
        c->recent = e;
        s = &e->slots[index];
        if (!s->known)
                slot_fill(e, s, p, who, d);
        if (!s->known) {
                device_access_evaluate(p, who, d, ret, &fallback);
                return;
        }
        *ret = (DeviceAccess) { .level = s->level, .modes = s->modes, .managed = s->managed };
        if (s->texts > 0) {
                const Texts *t = &e->texts[s->texts];
                ret->reason = t->reason;
                ret->reason_json = t->reason_json;
                ret->polkit_action = t->polkit_action;
        }
}
