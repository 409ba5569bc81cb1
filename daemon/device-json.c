/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "device-json.h"

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

json_t *device_json_build(const Device *d, DeviceState state, const char *reason, const Holder *holder) {
        json_t *o, *members;

        if (!d)
                return NULL;

        o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:I, s:b, s:b, s:s}",
                      "address", d->address,
                      "vendorId", (int) d->vendor_id,
                      "deviceId", (int) d->device_id,
                      "subsystemVendorId", (int) d->subsystem_vendor_id,
                      "subsystemDeviceId", (int) d->subsystem_device_id,
                      "class", (json_int_t) d->class,
                      "noiommu", d->noiommu,
                      "sriovVf", d->sriov_vf,
                      "state", strna(device_state_to_string(state)));
        set_string(o, "driver", d->driver);
        if (d->iommu_group >= 0)
                set(o, "iommuGroup", json_integer(d->iommu_group));
        members = string_array(d->group_members);
        if (!members) {
                json_decref(o);
                return NULL;
        }
        set(o, "groupMembers", members);
        set_string(o, "vfioCdev", d->vfio_cdev);
        if (d->hw_info.valid)
                set(o, "iommu", iommu_json(&d->hw_info));
        set_string(o, "reason", reason);
        if (holder)
                set(o, "holder", holder_json(holder));
        return o;
}

json_t *device_json_new(Manager *m, const Device *d, const Principal *viewer) {
        const char *reason = NULL;
        DeviceState state;
        Holder holder;
        bool shown;

        if (!m || !d)
                return NULL;
        state = manager_device_state(m, d, &reason);
        shown = manager_device_holder(m, d, viewer, &holder);
        return device_json_build(d, state, reason, shown ? &holder : NULL);
}
