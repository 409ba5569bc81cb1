/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>

#include "device-json.h"

/* --- TextBuf --- */

static bool text_grow(TextBuf *b, size_t size) {
        char *t = realloc(b->data, size);

        if (!t) {
                b->failed = true;
                return false;
        }
        b->data = t;
        b->size = size;
        return true;
}

void text_reserve(TextBuf *b, size_t n) {
        size_t need = b->len + n + 1;

        /* Geometric, so that reserving piece by piece stays linear. */
        if (!b->failed && need > b->size)
                (void) text_grow(b, need > b->size * 2 ? need : b->size * 2);
}

void text_append(TextBuf *b, const char *s, size_t n) {
        if (b->failed)
                return;
        if (b->len + n + 1 > b->size && !text_grow(b, (b->len + n + 1) * 2))
                return;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = 0;
}

void text_puts(TextBuf *b, const char *s) {
        text_append(b, s, strlen(s));
}

void text_done(TextBuf *b) {
        free(b->data);
        *b = (TextBuf) {};
}

/* --- jansson, for the cached part and for tests --- */

/* Setters that tolerate a NULL object, so one check at the end catches ENOMEM. */
static void set(json_t *o, const char *key, json_t *v) {
        if (o && v)
                json_object_set_new(o, key, v);
        else
                json_decref(v);
}

static void set_string(json_t *o, const char *key, const char *s) {
        if (s)
                set(o, key, json_string(s));
}

static json_t *string_array(char *const *l) {
        json_t *a = json_array();

        for (char *const *i = l; a && i && *i; i++)
                if (json_array_append_new(a, json_string(*i)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *iommu_json(const IommuHwInfo *info) {
        return json_pack("{s:s, s:I}", "type", strna(iommu_hw_info_type_to_string(info->type)),
                         "capabilities", (json_int_t) info->capabilities);
}

static json_t *holder_json(const Holder *h) {
        json_t *o = json_pack("{s:I, s:I, s:I}", "session", (json_int_t) h->session_id,
                              "uid", (json_int_t) h->uid, "pid", (json_int_t) h->pid);
        set_string(o, "unit", h->unit);
        return o;
}

/* The members devices of one model on one driver have in common. */
static json_t *common_json(const Device *d) {
        json_t *o;

        o = json_pack("{s:i, s:i, s:i, s:i, s:I, s:b, s:b}",
                      "vendorId", (int) d->vendor_id,
                      "deviceId", (int) d->device_id,
                      "subsystemVendorId", (int) d->subsystem_vendor_id,
                      "subsystemDeviceId", (int) d->subsystem_device_id,
                      "class", (json_int_t) d->class,
                      "noiommu", d->noiommu,
                      "sriovVf", d->sriov_vf);
        set_string(o, "driver", d->driver);
        return o;
}

/* The device's own: its group and its cdev. */
static json_t *own_json(const Device *d) {
        json_t *o = json_object(), *members;

        if (d->iommu_group >= 0)
                set(o, "iommuGroup", json_integer(d->iommu_group));
        members = string_array(d->group_members);
        if (!members) {
                json_decref(o);
                return NULL;
        }
        set(o, "groupMembers", members);
        set_string(o, "vfioCdev", d->vfio_cdev);
        return o;
}

static json_t *iommu_member_json(const Device *d) {
        json_t *o = json_object();

        if (d->hw_info.valid)
                set(o, "iommu", iommu_json(&d->hw_info));
        return o;
}

/* Moves every member of from to the end of o. */
static int merge(json_t *o, json_t *from) {
        int r = from && o ? json_object_update(o, from) : -1;

        json_decref(from);
        return r;
}

/* Everything that does not depend on who asks or on leases, in the order the
 * cached text has it. */
static json_t *static_json(const Device *d) {
        json_t *o = json_pack("{s:s}", "address", d->address);

        if (merge(o, common_json(d)) < 0 || merge(o, own_json(d)) < 0 || merge(o, iommu_member_json(d)) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

DeviceState device_view_state(DeviceState state, const DeviceAccess *access) {
        if (state == DEVICE_STATE_AVAILABLE && access && access->level == DEVICE_ACCESS_DENIED)
                return DEVICE_STATE_UNAVAILABLE;
        return state;
}

static json_t *modes_json(unsigned modes) {
        json_t *a = json_array();

        for (AcquireMode mode = 0; a && mode < _ACQUIRE_MODE_MAX; mode++)
                if (modes & (1u << mode))
                        json_array_append_new(a, json_string(acquire_mode_to_string(mode)));
        return a;
}

json_t *device_json_build(const Device *d, DeviceState state, const char *reason, const Holder *holder,
                          const DeviceAccess *access) {
        DeviceState shown = device_view_state(state, access);
        json_t *o;

        if (!d)
                return NULL;
        o = static_json(d);
        set_string(o, "state", strna(device_state_to_string(shown)));
        set_string(o, "reason", shown != state ? access->reason : reason);
        if (holder)
                set(o, "holder", holder_json(holder));
        if (access) {
                set_string(o, "access", device_access_level_to_string(access->level));
                set(o, "allowedModes", modes_json(access->modes));
                set(o, "managedAllowed", json_boolean(access->managed));
                set_string(o, "accessReason", access->reason);
                set_string(o, "polkitAction", access->polkit_action);
        }
        return o;
}

/* --- text --- */

/* o's members as compact text without the braces ("" for {}); takes o. */
static int members_text(json_t *o, char **ret, size_t *ret_len) {
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        size_t n;

        json_decref(o);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        if (n < 2 || s[0] != '{' || s[n - 1] != '}') {
                free(s);
                return -EINVAL;
        }
        memmove(s, s + 1, n - 2);
        s[n - 2] = 0;
        *ret = s;
        *ret_len = n - 2;
        return 0;
}

/* Texts that many devices share, kept once for the broker's lifetime: their
 * number is bounded by the device models, drivers and IOMMUs seen; past the
 * bound each device keeps its own copy. */
#define SHARED_TEXTS_MAX 256
static const char *shared_text(const char *s, size_t len) {
        static char *texts[SHARED_TEXTS_MAX];
        static size_t lengths[SHARED_TEXTS_MAX], n_texts;

        for (size_t i = 0; i < n_texts; i++)
                if (lengths[i] == len && memcmp(texts[i], s, len) == 0)
                        return texts[i];
        if (n_texts == SHARED_TEXTS_MAX || !(texts[n_texts] = strndup(s, len)))
                return NULL;
        lengths[n_texts] = len;
        return texts[n_texts++];
}

/* The static members, serialized once: the shared runs interned, the rest in
 * d->json_text (everything there when a run cannot be shared). */
static int ensure_static_text(Device *d) {
        _cleanup_free_ char *common = NULL, *own = NULL, *iommu = NULL;
        size_t common_len, own_len, iommu_len;
        int r;

        if (d->json_text)
                return 0;
        r = members_text(common_json(d), &common, &common_len);
        if (r >= 0)
                r = members_text(own_json(d), &own, &own_len);
        if (r >= 0)
                r = members_text(iommu_member_json(d), &iommu, &iommu_len);
        if (r < 0)
                return r;
        if (common_len + own_len + iommu_len + 2 > UINT32_MAX)
                return -E2BIG;

        d->json_common = shared_text(common, common_len);
        d->json_iommu = iommu_len > 0 ? shared_text(iommu, iommu_len) : NULL;
        if (d->json_common && (iommu_len == 0 || d->json_iommu)) {
                d->json_common_len = (uint32_t) common_len;
                d->json_iommu_len = d->json_iommu ? (uint32_t) iommu_len : 0;
                d->json_len = (uint32_t) own_len;
                d->json_text = TAKE_PTR(own);
                return 0;
        }

        /* Not shared: one run with everything. */
        char *all = malloc(common_len + own_len + iommu_len + 3), *p = all;
        if (!all)
                return -ENOMEM;
        p = mempcpy(p, common, common_len);
        if (own_len > 0)
                p = mempcpy(mempcpy(p, ",", 1), own, own_len);
        if (iommu_len > 0)
                p = mempcpy(mempcpy(p, ",", 1), iommu, iommu_len);
        *p = 0;
        d->json_common = d->json_iommu = NULL;
        d->json_common_len = d->json_iommu_len = 0;
        d->json_len = (uint32_t) (p - all);
        d->json_text = all;
        return 0;
}

/* {"address":"...", the static members, no closing brace: five pieces per
 * device of a list, written with one bounds check. */
static void append_static(TextBuf *b, const Device *d) {
        size_t address_len = strnlen(d->address, sizeof(d->address));
        char *p;

        text_reserve(b, strlen("{\"address\":\"\"") + address_len + 3 + d->json_common_len + d->json_len +
                        d->json_iommu_len);
        if (b->failed)
                return;
        p = b->data + b->len;
        /* A normalized address needs no escaping. */
        p = mempcpy(p, "{\"address\":\"", strlen("{\"address\":\""));
        p = mempcpy(p, d->address, address_len);
        *p++ = '"';
        if (d->json_common) {
                *p++ = ',';
                p = mempcpy(p, d->json_common, d->json_common_len);
        }
        if (d->json_len > 0) {
                *p++ = ',';
                p = mempcpy(p, d->json_text, d->json_len);
        }
        if (d->json_iommu) {
                *p++ = ',';
                p = mempcpy(p, d->json_iommu, d->json_iommu_len);
        }
        *p = 0;
        b->len = (size_t) (p - b->data);
}

static void append_quoted(TextBuf *b, const char *s) {
        char buf[1024];

        if (json_quote(s, buf, sizeof(buf)))
                text_puts(b, buf);
        else
                text_literal(b, "\"\"");
}

static void append_holder(TextBuf *b, const Holder *h) {
        char buf[128];

        snprintf(buf, sizeof(buf), ",\"holder\":{\"session\":%" PRIu64 ",\"uid\":%u,\"pid\":%d", h->session_id,
                 (unsigned) h->uid, (int) h->pid);
        text_puts(b, buf);
        if (h->unit) {
                text_literal(b, ",\"unit\":");
                append_quoted(b, h->unit);
        }
        text_literal(b, "}");
}

/* A fragment of fixed text and its length, written out once. */
typedef struct Fragment {
        char text[112];
        size_t len;
} Fragment;

static void fragment_set(Fragment *f, const char *a, const char *b, const char *c) {
        int n = snprintf(f->text, sizeof(f->text), "%s%s%s", a, b, c);

        f->len = n > 0 && (size_t) n < sizeof(f->text) ? (size_t) n : 0;
}

/* ,"state":"<state>" for each state. */
static const Fragment *state_fragment(DeviceState s) {
        static Fragment table[_DEVICE_STATE_MAX + 1];  /* the last for a state without a name */

        if (s < 0 || s >= _DEVICE_STATE_MAX)
                s = _DEVICE_STATE_MAX;
        if (table[s].len == 0)
                fragment_set(&table[s], ",\"state\":\"", strna(device_state_to_string(s)), "\"");
        return &table[s];
}

/* ,"access":...,"allowedModes":[...],"managedAllowed":... for each level,
 * subset of the modes and managed flag: most devices look alike to a caller,
 * so a list copies one of these per device. */
static const Fragment *access_fragment(const DeviceAccess *a) {
        /* Every subset of the modes, in IDL order. */
        static const char *const modes[] = {
                "[]", "[\"unbound\"]", "[\"bound\"]", "[\"unbound\",\"bound\"]", "[\"attached\"]",
                "[\"unbound\",\"attached\"]", "[\"bound\",\"attached\"]", "[\"unbound\",\"bound\",\"attached\"]",
        };
        static Fragment table[_DEVICE_ACCESS_MAX + 1][ELEMENTSOF(modes)][2];
        unsigned level = a->level >= 0 && a->level < _DEVICE_ACCESS_MAX ? (unsigned) a->level : _DEVICE_ACCESS_MAX;
        Fragment *f = &table[level][a->modes & 7][a->managed];

        if (f->len == 0) {
                char head[64];

                snprintf(head, sizeof(head), ",\"access\":\"%s\",\"allowedModes\":",
                         strna(device_access_level_to_string(level)));
                fragment_set(f, head, modes[a->modes & 7],
                             a->managed ? ",\"managedAllowed\":true" : ",\"managedAllowed\":false");
        }
        return f;
}

static void append_fragment(TextBuf *b, const Fragment *f) {
        text_append(b, f->text, f->len);
}

static void append_access(TextBuf *b, const DeviceAccess *a) {
        append_fragment(b, access_fragment(a));
        if (a->reason) {
                text_literal(b, ",\"accessReason\":");
                if (a->reason_json)
                        text_puts(b, a->reason_json);
                else
                        append_quoted(b, a->reason);
        }
        if (a->polkit_action) {
                text_literal(b, ",\"polkitAction\":");
                append_quoted(b, a->polkit_action);
        }
}

/* The device as most callers see most devices (no reason, holder or access
 * texts): the fixed fragments after the static members, then "}". */
static void append_plain_tail(TextBuf *b, const Fragment *state, const Fragment *access) {
        char *p;

        text_reserve(b, state->len + access->len + 1);
        if (b->failed)
                return;
        p = mempcpy(b->data + b->len, state->text, state->len);
        p = mempcpy(p, access->text, access->len);
        *p++ = '}';
        *p = 0;
        b->len = (size_t) (p - b->data);
}

/* The members that follow the cached ones; reason_json already quoted. */
static int append_view(TextBuf *b, Device *d, DeviceState state, const char *reason_json, const Holder *holder,
                       const DeviceAccess *access) {
        DeviceState shown = device_view_state(state, access);

        append_static(b, d);
        if (shown == state && !reason_json && !holder && access && !access->reason && !access->polkit_action) {
                append_plain_tail(b, state_fragment(shown), access_fragment(access));
                return b->failed ? -ENOMEM : 0;
        }
        append_fragment(b, state_fragment(shown));
        if (shown != state) {
                text_literal(b, ",\"reason\":");
                if (access->reason_json)
                        text_puts(b, access->reason_json);
                else
                        append_quoted(b, access->reason);
        } else if (reason_json) {
                text_literal(b, ",\"reason\":");
                text_puts(b, reason_json);
        }
        if (holder)
                append_holder(b, holder);
        if (access)
                append_access(b, access);
        text_literal(b, "}");
        return b->failed ? -ENOMEM : 0;
}

int device_json_append_parts(TextBuf *b, Device *d, DeviceState state, const char *reason, const Holder *holder,
                             const DeviceAccess *access) {
        char quoted[1024];
        int r;

        r = ensure_static_text(d);
        if (r < 0)
                return r;
        if (reason && !json_quote(reason, quoted, sizeof(quoted)))
                return -EINVAL;
        return append_view(b, d, state, reason ? quoted : NULL, holder, access);
}

/* d->json_state and d->json_reason: cached with the text, dropped with it. */
static int ensure_cache(Manager *m, Device *d) {
        const char *reason = NULL;
        char quoted[1024];
        int r;

        if (d->json_text && d->json_state_valid)
                return 0;
        r = ensure_static_text(d);
        if (r < 0)
                return r;
        d->json_state = manager_device_state(m, d, &reason);
        d->json_state_valid = true;
        if (reason && json_quote(reason, quoted, sizeof(quoted))) {
                d->json_reason = strdup(quoted);
                if (!d->json_reason) {
                        device_invalidate_json(d);
                        return -ENOMEM;
                }
        }
        return 0;
}

int device_json_append(Manager *m, Device *d, size_t index, const Principal *viewer, TextBuf *b) {
        DeviceAccess access;
        Holder holder;
        bool shown, built;
        int r;

        if (!m || !d || !b)
                return -EINVAL;
        built = !d->json_text;
        r = ensure_cache(m, d);
        if (r < 0)
                return r;
        if (index == SIZE_MAX)
                manager_device_access(m, d, viewer, &access);
        else
                manager_device_access_at(m, d, index, viewer, &access);
        shown = manager_device_holder(m, d, viewer, &holder);
        r = append_view(b, d, d->json_state, d->json_reason, shown ? &holder : NULL, &access);
        return r < 0 ? r : built;
}
