/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Decoding the reply shapes of protocol/io.iommufd.Broker.varlink into the
 * public structs. Strict on types (a mistyped field is a protocol error),
 * tolerant of absent optional fields and of fields we do not know.
 */
#include <limits.h>
#include <stdio.h>

#include "client-internal.h"

/* Optional fields may be absent or null. */
static const json_t *field(const json_t *obj, const char *key) {
        const json_t *v = json_object_get(obj, key);

        return json_is_null(v) ? NULL : v;
}

/* 1 and *ret if present, 0 if absent (and optional), -EBADMSG otherwise. */
static int get_uint(const json_t *obj, const char *key, bool required, uint64_t max, uint64_t *ret) {
        const json_t *v = field(obj, key);
        json_int_t i;

        if (!v)
                return required ? -EBADMSG : 0;
        if (!json_is_integer(v))
                return -EBADMSG;
        i = json_integer_value(v);
        if (i < 0 || (uint64_t) i > max)
                return -EBADMSG;
        *ret = (uint64_t) i;
        return 1;
}

static int get_string(const json_t *obj, const char *key, bool required, bool truncate, char *buf, size_t size) {
        const json_t *v = field(obj, key);

        buf[0] = 0;
        if (!v)
                return required ? -EBADMSG : 0;
        if (!json_is_string(v))
                return -EBADMSG;
        if (client_copy_string(buf, size, json_string_value(v), truncate) < 0)
                return -EBADMSG;
        return 1;
}

static int get_bool(const json_t *obj, const char *key, int *ret) {
        const json_t *v = field(obj, key);

        *ret = 0;
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return -EBADMSG;
        *ret = json_is_true(v);
        return 1;
}

#define TRY(expr)                       \
        do {                            \
                int _r_ = (expr);       \
                if (_r_ < 0)            \
                        return _r_;     \
        } while (0)

/* Space-separated; a group too big for the buffer keeps whole addresses only. */
static int decode_group_members(const json_t *obj, char *buf, size_t size) {
        const json_t *members = field(obj, "groupMembers");
        size_t len = 0, i;
        const json_t *m;

        buf[0] = 0;
        if (!members)
                return 0;
        if (!json_is_array(members))
                return -EBADMSG;
        json_array_foreach(members, i, m) {
                size_t n;

                if (!json_is_string(m))
                        return -EBADMSG;
                n = strlen(json_string_value(m));
                if (len + (len > 0) + n >= size)
                        break;
                len += snprintf(buf + len, size - len, "%s%s", len > 0 ? " " : "", json_string_value(m));
        }
        return 0;
}

static int decode_iommu(const json_t *obj, iommufd_broker_device *d) {
        const json_t *iommu = field(obj, "iommu");
        uint64_t caps = 0;

        if (!iommu)
                return 0;
        if (!json_is_object(iommu))
                return -EBADMSG;
        TRY(get_string(iommu, "type", false, true, d->iommu_type, sizeof(d->iommu_type)));
        TRY(get_uint(iommu, "capabilities", false, UINT64_MAX, &caps));
        d->iommu_capabilities = caps;
        return 0;
}

static int decode_holder(const json_t *obj, iommufd_broker_device *d) {
        const json_t *holder = field(obj, "holder");
        uint64_t session = 0, uid = 0, pid = 0;

        if (!holder)
                return 0;
        if (!json_is_object(holder))
                return -EBADMSG;
        TRY(get_uint(holder, "session", true, UINT64_MAX, &session));
        TRY(get_uint(holder, "uid", false, UINT32_MAX, &uid));
        TRY(get_uint(holder, "pid", false, INT_MAX, &pid));
        d->holder_session = session;
        d->holder_uid = (uid_t) uid;
        d->holder_pid = (pid_t) pid;
        return 0;
}

int client_device_from_json(const json_t *v, iommufd_broker_device *ret) {
        iommufd_broker_device d = { .iommu_group = -1 };
        uint64_t vendor = 0, device = 0, sub_vendor = 0, sub_device = 0, class = 0, group = 0;
        int r;

        if (!json_is_object(v))
                return -EBADMSG;
        TRY(get_string(v, "address", true, false, d.address, sizeof(d.address)));
        TRY(get_uint(v, "vendorId", true, UINT16_MAX, &vendor));
        TRY(get_uint(v, "deviceId", true, UINT16_MAX, &device));
        TRY(get_uint(v, "subsystemVendorId", false, UINT16_MAX, &sub_vendor));
        TRY(get_uint(v, "subsystemDeviceId", false, UINT16_MAX, &sub_device));
        TRY(get_uint(v, "class", true, 0xffffff, &class));
        TRY(get_string(v, "driver", false, false, d.driver, sizeof(d.driver)));
        r = get_uint(v, "iommuGroup", false, INT_MAX, &group);
        if (r < 0)
                return r;
        if (r > 0)
                d.iommu_group = (int) group;
        TRY(decode_group_members(v, d.group_members, sizeof(d.group_members)));
        TRY(get_string(v, "vfioCdev", false, false, d.vfio_cdev, sizeof(d.vfio_cdev)));
        TRY(get_bool(v, "noiommu", &d.noiommu));
        TRY(get_bool(v, "sriovVf", &d.sriov_vf));
        TRY(decode_iommu(v, &d));
        TRY(get_string(v, "state", true, false, d.state, sizeof(d.state)));
        TRY(get_string(v, "reason", false, true, d.reason, sizeof(d.reason)));
        TRY(decode_holder(v, &d));

        d.vendor_id = (uint16_t) vendor;
        d.device_id = (uint16_t) device;
        d.subsystem_vendor_id = (uint16_t) sub_vendor;
        d.subsystem_device_id = (uint16_t) sub_device;
        d.class_code = (uint32_t) class;
        *ret = d;
        return 0;
}

int client_event_from_json(const json_t *params, iommufd_broker_event *ret) {
        iommufd_broker_event e = {};
        uint64_t session = 0;
        const json_t *device;

        if (!json_is_object(params))
                return -EBADMSG;
        TRY(get_string(params, "event", true, false, e.type, sizeof(e.type)));
        TRY(get_string(params, "address", false, false, e.address, sizeof(e.address)));
        TRY(get_uint(params, "session", false, UINT64_MAX, &session));
        TRY(get_string(params, "reason", false, true, e.reason, sizeof(e.reason)));
        e.session = session;

        /* Events about a device may name it only inside "device". */
        device = field(params, "device");
        if (!e.address[0] && device) {
                if (!json_is_object(device))
                        return -EBADMSG;
                TRY(get_string(device, "address", false, false, e.address, sizeof(e.address)));
        }
        *ret = e;
        return 0;
}

/* Index of a descriptor in the reply; each may be claimed once. */
static int claim_fd(const json_t *obj, const char *key, int *fds, size_t n_fds, int *ret) {
        uint64_t idx;

        TRY(get_uint(obj, key, true, INT_MAX, &idx));
        if (idx >= n_fds || fds[idx] < 0)
                return -EBADMSG;
        *ret = TAKE_FD(fds[idx]);
        return 0;
}

static void lease_freep(iommufd_broker_lease **l) {
        iommufd_broker_lease_free(*l);
}

static int decode_lease_device(const json_t *v, int *fds, size_t n_fds, iommufd_broker_lease_device *d) {
        uint64_t dev_id = 0, hwpt_id = 0;

        if (!json_is_object(v))
                return -EBADMSG;
        TRY(get_string(v, "address", true, false, d->address, sizeof(d->address)));
        TRY(get_uint(v, "devId", false, UINT32_MAX, &dev_id));
        TRY(get_uint(v, "hwptId", false, UINT32_MAX, &hwpt_id));
        d->dev_id = (uint32_t) dev_id;
        d->hwpt_id = (uint32_t) hwpt_id;
        return claim_fd(v, "fileDescriptor", fds, n_fds, &d->fd);
}

/* "memlockLimit": bytes, -1 for unlimited, absent when policy set none. */
static int get_memlock_limit(const json_t *params, uint64_t *ret) {
        const json_t *v = field(params, "memlockLimit");

        *ret = 0;
        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < -1)
                return -EBADMSG;
        *ret = json_integer_value(v) == -1 ? UINT64_MAX : (uint64_t) json_integer_value(v);
        return 0;
}

int client_lease_from_json(const json_t *params, int *fds, size_t n_fds, iommufd_broker_lease **ret) {
        _cleanup_(lease_freep) iommufd_broker_lease *l = NULL;
        uint64_t session = 0, ioas_id = 0;
        const json_t *devices, *v;
        size_t i;

        if (!json_is_object(params))
                return -EBADMSG;
        devices = field(params, "devices");
        if (!json_is_array(devices) || json_array_size(devices) == 0)
                return -EBADMSG;

        l = client_lease_new(json_array_size(devices));
        if (!l)
                return -ENOMEM;
        TRY(get_uint(params, "session", true, UINT64_MAX, &session));
        TRY(get_uint(params, "ioasId", false, UINT32_MAX, &ioas_id));
        l->session = session;
        l->ioas_id = (uint32_t) ioas_id;
        TRY(get_memlock_limit(params, &client_lease_extra(l)->memlock_limit));
        TRY(claim_fd(params, "iommuFileDescriptor", fds, n_fds, &l->iommufd));
        json_array_foreach(devices, i, v)
                TRY(decode_lease_device(v, fds, n_fds, &l->devices[i]));

        *ret = TAKE_PTR(l);
        return 0;
}

void client_error_message_from_json(const json_t *params, const char *fallback, char *buf, size_t size) {
        const char *s;

        s = json_string_value(json_object_get(params, "message"));
        if (s) {
                snprintf(buf, size, "%s", s);
                return;
        }
        /* org.varlink.service errors carry the offending name instead. */
        s = json_string_value(json_object_get(params, "parameter"));
        if (s) {
                snprintf(buf, size, "invalid parameter '%s'", s);
                return;
        }
        s = json_string_value(json_object_get(params, "method"));
        if (s) {
                snprintf(buf, size, "method '%s' not found", s);
                return;
        }
        s = json_string_value(json_object_get(params, "interface"));
        if (s) {
                snprintf(buf, size, "interface '%s' not found", s);
                return;
        }
        snprintf(buf, size, "%s", fallback);
}
