/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The interface files and the code agree: every IDL method is in the varlink
 * method table and nothing else is, the IDL's errors are exactly
 * BROKER_ERRORS, and device-json.c emits exactly the IDL's Device fields.
 * The IDL is read from $SOURCE_ROOT/protocol (set by daemon/meson.build),
 * else the copy embedded at build time. Then the real io.iommufd.Broker
 * server (varlink_broker_start on a path, a manager with a static inventory
 * and the fake kernel) is called over its socket to check replies, errors
 * and fd indices on the wire.
 */

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include "broker-errors.h"
#include "device-json.h"
#include "protocol-data.h"
#include "varlink-broker.h"
#include "varlink-wire.h"
#include "test.h"

static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t n = 0;

        if (!f)
                return NULL;
        if (getdelim(&buf, &n, '\0', f) < 0) {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        return buf;
}

static char *load_idl(void) {
        const char *root = getenv("SOURCE_ROOT");
        char path[4096];
        char *text;

        if (root) {
                snprintf(path, sizeof(path), "%s/protocol/io.iommufd.Broker.varlink", root);
                text = read_file(path);
                CHECK_MSG(text != NULL, "IDL read from %s", path);
                if (text) {
                        CHECK_MSG(streq(text, broker_varlink_idl), "embedded IDL is the source file");
                        return text;
                }
        }
        printf("note: SOURCE_ROOT unset, using the embedded IDL\n");
        return strdup(broker_varlink_idl);
}

/* Names following `keyword ` at the start of a line ("method X(", "error Y ("). */
static char **idl_names(const char *idl, const char *keyword) {
        char **names = NULL;
        size_t klen = strlen(keyword);

        for (const char *line = idl; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                const char *p = line, *start;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (strncmp(p, keyword, klen) != 0 || p[klen] != ' ')
                        continue;
                p += klen;
                while (*p == ' ')
                        p++;
                start = p;
                while (isalnum((unsigned char) *p))
                        p++;
                if (p > start) {
                        char *name = strndup(start, (size_t) (p - start));
                        if (!name || strv_extend(&names, name) < 0)
                                abort();
                        free(name);
                }
        }
        return names;
}

/* Field names of `type <name> (...)`, one per line, comments skipped. */
static char **idl_type_fields(const char *idl, const char *type) {
        char header[128], **fields = NULL;
        const char *p;

        snprintf(header, sizeof(header), "\ntype %s (", type);
        p = strstr(idl, header);
        if (!p)
                return NULL;
        p = strchr(p + 1, '\n');
        while (p && *++p && *p != ')') {
                const char *start, *end = strchr(p, '\n');

                while (*p == ' ')
                        p++;
                start = p;
                while (isalnum((unsigned char) *p))
                        p++;
                if (*start != '#' && p > start && *p == ':') {
                        char *name = strndup(start, (size_t) (p - start));
                        if (!name || strv_extend(&fields, name) < 0)
                                abort();
                        free(name);
                }
                p = end;
        }
        return fields;
}

static void check_same_set(char **idl, char **code, const char *what) {
        for (char **i = idl; i && *i; i++)
                CHECK_MSG(strv_contains(code, *i), "%s %s of the IDL is implemented", what, *i);
        for (char **i = code; i && *i; i++)
                CHECK_MSG(strv_contains(idl, *i), "%s %s of the code is in the IDL", what, *i);
        CHECK_MSG(strv_length(idl) > 0 && strv_length(idl) == strv_length(code), "%s count: IDL %zu, code %zu", what,
                  strv_length(idl), strv_length(code));
}

static void test_methods(const char *idl) {
        const VarlinkInterface *iface = varlink_broker_interface();
        _cleanup_strv_free_ char **in_idl = idl_names(idl, "method"), **in_code = NULL;

        CHECK_MSG(streq(iface->name, BROKER_VARLINK_INTERFACE), "table is for %s", BROKER_VARLINK_INTERFACE);
        CHECK_MSG(strstr(idl, "\ninterface " BROKER_VARLINK_INTERFACE "\n") != NULL, "IDL declares the interface");
        CHECK_MSG(iface->description == broker_varlink_idl, "GetInterfaceDescription serves the embedded IDL");

        for (const VarlinkMethod *m = iface->methods; m->name; m++) {
                if (strv_extend(&in_code, m->name) < 0)
                        abort();
                CHECK_MSG(m->handler != NULL, "method %s has a handler", m->name);
                /* Monitor is the one stream: the IDL says "call with more". */
                CHECK_MSG(!!(m->flags & VARLINK_METHOD_MORE) == streq(m->name, "Monitor"),
                          "method %s %s", m->name, streq(m->name, "Monitor") ? "streams" : "does not stream");
        }
        check_same_set(in_idl, in_code, "method");
}

static void test_errors(const char *idl) {
        _cleanup_strv_free_ char **in_idl = idl_names(idl, "error"), **in_code = NULL;

#define ADD_NAME(id, name, errno_value) if (strv_extend(&in_code, name) < 0) abort();
        BROKER_ERRORS(ADD_NAME)
#undef ADD_NAME
        check_same_set(in_idl, in_code, "error");

        for (int c = BROKER_OK + 1; c < _BROKER_ERROR_MAX; c++) {
                char buf[96];
                CHECK_MSG(broker_error_from_name(broker_error_name(c)) == (BrokerErrorCode) c &&
                          strncmp(varlink_broker_error_name(c, buf), BROKER_VARLINK_INTERFACE ".", 18) == 0,
                          "error %s round-trips as %s", broker_error_name(c), buf);
        }
}

static void check_keys(json_t *o, char **fields, const char *type) {
        _cleanup_strv_free_ char **keys = NULL;
        const char *key;
        json_t *v;

        CHECK_MSG(json_is_object(o), "%s JSON built", type);
        json_object_foreach(o, key, v)
                if (strv_extend(&keys, key) < 0)
                        abort();
        check_same_set(fields, keys, type);
}

static void test_device_json(const char *idl) {
        _cleanup_strv_free_ char **device_fields = idl_type_fields(idl, "Device");
        _cleanup_strv_free_ char **holder_fields = idl_type_fields(idl, "Holder");
        _cleanup_strv_free_ char **iommu_fields = idl_type_fields(idl, "IommuInfo");
        char *members[] = { (char *) "0000:03:00.0", (char *) "0000:03:00.1", NULL };
        Device d = {
                .address = "0000:03:00.0",
                .vendor_id = 0x8086, .device_id = 0x1533,
                .subsystem_vendor_id = 0x15d9, .subsystem_device_id = 0x1533,
                .class = 0x020000,
                .driver = (char *) "vfio-pci",
                .iommu_group = 12,
                .group_members = members,
                .vfio_cdev = (char *) "vfio3",
                .hw_info = { .valid = true, .type = 1, .capabilities = 1 },
        };
        Holder h = { .session_id = 7, .uid = 1000, .pid = 4242, .unit = "vm.service" };
        /* Not a real combination, but every per-caller field at once. */
        DeviceAccess access = { .level = DEVICE_ACCESS_POLKIT, .modes = 5, .managed = true,
                                .reason = "why \"not\"", .polkit_action = "io.iommufd.broker.acquire" };
        json_t *o;

        /* Every optional field set: the keys must be exactly the IDL's. */
        o = device_json_build(&d, DEVICE_STATE_LEASED, "some reason", &h, &access);
        check_keys(o, device_fields, "Device");
        check_keys(json_object_get(o, "holder"), holder_fields, "Holder");
        check_keys(json_object_get(o, "iommu"), iommu_fields, "IommuInfo");
        CHECK_MSG(json_integer_value(json_object_get(o, "class")) == 0x020000 &&
                  json_integer_value(json_object_get(o, "iommuGroup")) == 12 &&
                  streq_ptr(json_string_value(json_object_get(o, "state")), "leased") &&
                  json_array_size(json_object_get(o, "groupMembers")) == 2, "Device values carried over");
        json_decref(o);

        /* Nothing optional: those keys are left out, groupMembers stays. */
        d = (Device) { .address = "0000:00:1f.0", .iommu_group = -1 };
        o = device_json_build(&d, DEVICE_STATE_UNAVAILABLE, NULL, NULL, NULL);
        CHECK_MSG(o && !json_object_get(o, "iommuGroup") && !json_object_get(o, "driver") &&
                  !json_object_get(o, "holder") && !json_object_get(o, "iommu") &&
                  json_is_array(json_object_get(o, "groupMembers")) &&
                  json_array_size(json_object_get(o, "groupMembers")) == 0,
                  "absent optional fields omitted, groupMembers an empty array");
        json_decref(o);
}

/* The cached-text path must say exactly what the jansson path says. */
static void check_text_matches(Device *d, DeviceState state, const char *reason, const Holder *h,
                               const DeviceAccess *a, const char *what) {
        TextBuf b = {};
        json_t *built = device_json_build(d, state, reason, h, a), *parsed;
        json_error_t error;

        CHECK_MSG(device_json_append_parts(&b, d, state, reason, h, a) >= 0, "%s: text built", what);
        parsed = b.data ? json_loads(b.data, 0, &error) : NULL;
        CHECK_MSG(parsed && built && json_equal(parsed, built), "%s: text equals the JSON object (%s)", what,
                  strna(b.data));
        {
                /* Byte for byte, key order included: the text is pieced together from runs. */
                _cleanup_free_ char *dumped = built ? json_dumps(built, JSON_COMPACT) : NULL;
                CHECK_MSG(dumped && b.data && streq(dumped, b.data), "%s: text is jansson's compact dump", what);
        }
        json_decref(parsed);
        json_decref(built);
        text_done(&b);
        device_invalidate_json(d);
}

static void test_device_text(void) {
        char *members[] = { (char *) "0000:03:00.0", NULL };
        Device d = {
                .address = "0000:03:00.0", .vendor_id = 0x8086, .device_id = 0x1533, .class = 0x020000,
                .driver = (char *) "vfio-pci", .iommu_group = 12, .group_members = members,
                .vfio_cdev = (char *) "vfio3", .hw_info = { .valid = true, .type = 1, .capabilities = 1 },
        };
        Holder h = { .session_id = 7, .uid = 1000, .pid = 4242, .unit = "vm\"x\\.service" };
        DeviceAccess allowed = { .level = DEVICE_ACCESS_ALLOWED, .modes = 7, .managed = true };
        DeviceAccess denied = { .level = DEVICE_ACCESS_DENIED, .reason = "no policy rule grants uid 1001 access" };
        DeviceAccess polkit = { .level = DEVICE_ACCESS_POLKIT, .modes = 4, .polkit_action = "io.iommufd.broker.acquire" };

        check_text_matches(&d, DEVICE_STATE_AVAILABLE, NULL, NULL, &allowed, "available, allowed");
        check_text_matches(&d, DEVICE_STATE_AVAILABLE, "bound to e1000e: acquire with managed", NULL, &denied,
                           "available, denied: unavailable with the policy's reason");
        check_text_matches(&d, DEVICE_STATE_LEASED, NULL, &h, &polkit, "leased, holder with quotes, polkit");
        check_text_matches(&d, DEVICE_STATE_UNAVAILABLE, "ctl \x01 byte", NULL, NULL,
                           "control bytes escaped, no access");
        d = (Device) { .address = "0000:00:1f.0", .iommu_group = -1 };
        check_text_matches(&d, DEVICE_STATE_UNAVAILABLE, NULL, NULL, &denied, "nothing optional");
}

/* Devices of one model on one driver keep one copy of what they share. */
static void test_device_text_shared(void) {
        char *members_a[] = { (char *) "0000:04:00.0", NULL }, *members_b[] = { (char *) "0000:04:01.0", NULL };
        Device a = {
                .address = "0000:04:00.0", .vendor_id = 0x1b36, .device_id = 0x10, .class = 0x010802,
                .driver = (char *) "vfio-pci", .iommu_group = 20, .group_members = members_a,
                .vfio_cdev = (char *) "vfio20", .hw_info = { .valid = true, .type = 1 },
        };
        Device b = a, c = a;
        TextBuf t = {};

        b.address[9] = '1';
        b.group_members = members_b;
        b.iommu_group = 21;
        b.vfio_cdev = (char *) "vfio21";
        c.driver = (char *) "nvme";
        CHECK(device_json_append_parts(&t, &a, DEVICE_STATE_AVAILABLE, NULL, NULL, NULL) >= 0);
        CHECK(device_json_append_parts(&t, &b, DEVICE_STATE_AVAILABLE, NULL, NULL, NULL) >= 0);
        CHECK(device_json_append_parts(&t, &c, DEVICE_STATE_AVAILABLE, NULL, NULL, NULL) >= 0);
        CHECK_MSG(a.json_common && a.json_common == b.json_common, "same model and driver: one common text");
        CHECK_MSG(c.json_common && c.json_common != a.json_common, "another driver: another common text");
        CHECK_MSG(a.json_iommu && a.json_iommu == b.json_iommu && a.json_iommu == c.json_iommu,
                  "one IOMMU: one text");
        CHECK_MSG(a.json_text && !strstr(a.json_text, "vendorId") && strstr(a.json_text, "\"iommuGroup\":20"),
                  "the device's own text has only its own members (%s)", strna(a.json_text));
        text_done(&t);
        device_invalidate_json(&a);
        device_invalidate_json(&b);
        device_invalidate_json(&c);

        /* Past the bound on shared texts, devices keep their own, and say the same. */
        unsigned mismatches = 0, unshared = 0;
        for (unsigned i = 0; i < 300; i++) {
                Device many = a;
                TextBuf m = {};
                json_t *built;
                _cleanup_free_ char *dumped = NULL;

                many.vendor_id = (uint16_t) (0x2000 + i);
                built = device_json_build(&many, DEVICE_STATE_AVAILABLE, NULL, NULL, NULL);
                dumped = built ? json_dumps(built, JSON_COMPACT) : NULL;
                if (device_json_append_parts(&m, &many, DEVICE_STATE_AVAILABLE, NULL, NULL, NULL) < 0 ||
                    !dumped || !m.data || !streq(dumped, m.data))
                        mismatches++;
                unshared += !many.json_common;
                json_decref(built);
                text_done(&m);
                device_invalidate_json(&many);
        }
        CHECK_MSG(mismatches == 0 && unshared > 0, "300 models: %u kept their own text, %u texts differ",
                  unshared, mismatches);
}

/*
 * HOOK for the D-Bus front end: check its vtable against
 * protocol/io.iommufd.Broker1.xml (broker_dbus_xml). Its engineer may fill
 * this in, or do it in a test of their own and leave this returning 0.
 * Return 0 when it agrees (or is not checked here), 1 when it does not.
 */
static int test_dbus_vtable_matches_xml(void) {
        return 0;
}

/* --- On the wire --- */

typedef struct Client {
        sd_event *event;
        int fd;
        VarlinkReader *reader;
        int *fds;
        size_t n_fds;
} Client;

#define USEC_PER_SEC_TEST 1000000ULL

static int *mfree_int(int *p) {
        free(p);
        return NULL;
}

static void client_drop_fds(Client *cl) {
        for (size_t i = 0; i < cl->n_fds; i++)
                safe_close(cl->fds[i]);
        cl->fds = mfree_int(cl->fds);
        cl->n_fds = 0;
}

/* Send a call (JSON text) and run the loop until a reply; NULL on EOF/timeout. */
static json_t *client_call(Client *cl, const char *call) {
        json_t *m = call ? json_loads(call, 0, NULL) : NULL, *reply = NULL;

        if (call && (!m || varlink_wire_send(cl->fd, m, NULL, 0) < 0))
                abort();
        json_decref(m);
        client_drop_fds(cl);
        for (int i = 0; i < 1000; i++) {
                int k = varlink_reader_next(cl->reader, &reply, &cl->fds, &cl->n_fds);
                if (k != 0)
                        return k > 0 ? reply : NULL;
                sd_event_run(cl->event, 1000);
                if (varlink_reader_fill(cl->reader, cl->fd) == 0)
                        return NULL;
        }
        return NULL;
}

static void client_connect(Client *cl, sd_event *e, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        *cl = (Client) { .event = e };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (cl->fd < 0 || connect(cl->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            varlink_reader_new(1 << 20, &cl->reader) < 0)
                abort();
}

static void client_close(Client *cl) {
        client_drop_fds(cl);
        cl->fd = safe_close(cl->fd);
        cl->reader = varlink_reader_free(cl->reader);
}

static const char *error_of(json_t *m) {
        return json_string_value(json_object_get(m, "error"));
}

static json_t *param(json_t *m, const char *key) {
        return json_object_get(json_object_get(m, "parameters"), key);
}

static bool fd_is_fake_device(int fd, const char *address) {
        char link[64], target[256], expect[64];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return false;
        target[n] = 0;
        snprintf(expect, sizeof(expect), "fake-vfio-%s", address);
        return strstr(target, expect) != NULL;
}

static Device *fake_device(const char *address, int group, const char *cdev, int minor) {
        Device *d = calloc(1, sizeof(*d));

        if (!d)
                abort();
        snprintf(d->address, sizeof(d->address), "%s", address);
        d->syspath = strdup("/nonexistent");
        d->driver = strdup("vfio-pci");
        d->iommu_group = group;
        d->vfio_cdev = strdup(cdev);
        d->vfio_devnum = makedev(511, minor);
        d->vendor_id = 0x1b36;
        d->device_id = 0x0010;
        d->class = 0x010802;
        strv_extend(&d->group_members, address);
        return d;
}

static void expect_error(Client *cl, const char *call, const char *error, const char *key, const char *value) {
        json_t *r = client_call(cl, call);
        bool ok = r && streq_ptr(error_of(r), error) &&
                  (!key || streq_ptr(json_string_value(param(r, key)), value));

        CHECK_MSG(ok, "wire: %s -> %s%s%s", call, error, key ? " " : "", key ? value : "");
        if (!ok && r) {
                char *t = json_dumps(r, 0);
                printf("   got %s\n", t);
                free(t);
        }
        json_decref(r);
}

/* What the Acquire reply was while jansson built it: the written text must
 * stay byte for byte the same. */
static json_t *acquire_reply_jansson(AcquireMode mode, const AcquireReply *reply) {
        json_t *devices = json_array(), *o;

        for (size_t i = 0; i < reply->n_devices; i++) {
                o = json_pack("{s:s, s:I}", "address", reply->devices[i].address, "fileDescriptor",
                              (json_int_t) (i + 1));
                if (mode != ACQUIRE_MODE_UNBOUND)
                        json_object_set_new(o, "devId", json_integer(reply->devices[i].dev_id));
                if (mode == ACQUIRE_MODE_ATTACHED)
                        json_object_set_new(o, "hwptId", json_integer(reply->devices[i].hwpt_id));
                json_array_append_new(devices, o);
        }
        o = json_pack("{s:I, s:i, s:o}", "session", (json_int_t) reply->session_id, "iommuFileDescriptor", 0,
                      "devices", devices);
        if (mode == ACQUIRE_MODE_ATTACHED)
                json_object_set_new(o, "ioasId", json_integer(reply->ioas_id));
        if (reply->memlock_limit != 0)
                json_object_set_new(o, "memlockLimit", json_integer(reply->memlock_limit >= (uint64_t) INT64_MAX
                                                                            ? -1 : (json_int_t) reply->memlock_limit));
        return o;
}

static void test_acquire_reply_text(void) {
        AcquiredDevice devices[3] = {
                { .address = "0000:00:02.0", .dev_id = 1, .hwpt_id = 4294967295u },
                { .address = "0000:03:00.1", .dev_id = 77, .hwpt_id = 78 },
                { .address = "ffff:ff:1f.7", .dev_id = 0, .hwpt_id = 0 },
        };
        const uint64_t memlocks[] = { 0, 1, 5ull << 30, (uint64_t) INT64_MAX - 1, (uint64_t) INT64_MAX, UINT64_MAX };

        for (AcquireMode mode = 0; mode < _ACQUIRE_MODE_MAX; mode++)
                for (size_t n = 1; n <= 3; n++)
                        for (size_t k = 0; k < ELEMENTSOF(memlocks); k++) {
                                AcquireReply reply = { .session_id = k == 3 ? (uint64_t) INT64_MAX : 42 + n,
                                                       .ioas_id = (uint32_t) (n * 1000), .memlock_limit = memlocks[k],
                                                       .n_devices = n, .devices = devices };
                                json_t *o = acquire_reply_jansson(mode, &reply);
                                char *want = json_dumps(o, JSON_COMPACT);
                                TextBuf b = {};

                                varlink_broker_acquire_reply_text(&b, mode, &reply);
                                CHECK_MSG(!b.failed && streq_ptr(b.data, want),
                                          "Acquire reply text, %s, %zu devices, memlock %llu: %s",
                                          acquire_mode_to_string(mode), n, (unsigned long long) memlocks[k],
                                          strna(b.data));
                                text_done(&b);
                                free(want);
                                json_decref(o);
                        }
}

static void test_wire(void) {
        char dir[] = "/tmp/test-protocol-XXXXXX", path[128];
        VarlinkServer *server = NULL;
        Inventory *inv = NULL;
        Manager *m = NULL;
        sd_event *e = NULL;
        Client a, mon;
        json_t *r;
        int base;

        if (getuid() != 0) {
                printf("skip: wire checks need root (the default policy)\n");
                return;
        }
        if (!mkdtemp(dir) || sd_event_new(&e) < 0 || inventory_new_static(&inv, NULL, NULL) < 0)
                abort();
        snprintf(path, sizeof(path), "%s/io.iommufd.Broker", dir);
        inventory_add(inv, fake_device("0000:00:02.0", 1, "vfio0", 0));
        inventory_add(inv, fake_device("0000:00:03.0", 2, "vfio1", 1));
        CHECK_MSG(manager_new(e, &(ManagerConfig) { .kernel = &kernel_ops_fake, .inventory = inv,
                                                    .policy_path = "/nonexistent/policy.json",
                                                    .policy_dropin_dir = "/nonexistent/policy.d" }, &m) == 0,
                  "wire: manager with a static inventory");
        if (!m)
                return;
        /* sd-event opens its timerfd with the first timer and keeps it. */
        {
                sd_event_source *t = NULL;
                sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, USEC_PER_SEC_TEST, 0, NULL, NULL);
                sd_event_source_unref(t);
        }
        base = test_count_open_fds();
        CHECK_MSG(varlink_broker_start(m, path, NULL, &server) == 0, "wire: varlink_broker_start on %s", path);

        client_connect(&a, e, path);
        r = client_call(&a, "{\"method\":\"org.varlink.service.GetInfo\"}");
        CHECK_MSG(streq_ptr(json_string_value(param(r, "vendor")), "iommufd-broker") &&
                  json_array_size(param(r, "interfaces")) == 2, "wire: GetInfo");
        json_decref(r);

        r = client_call(&a, "{\"method\":\"io.iommufd.Broker.ListDevices\"}");
        CHECK_MSG(json_array_size(param(r, "devices")) == 2 &&
                  streq_ptr(json_string_value(json_object_get(json_array_get(param(r, "devices"), 0), "state")),
                            "available"), "wire: ListDevices lists both, available");
        json_decref(r);

        r = client_call(&a, "{\"method\":\"io.iommufd.Broker.GetDevice\",\"parameters\":{\"address\":\"00:03.0\"}}");
        CHECK_MSG(streq_ptr(json_string_value(json_object_get(param(r, "device"), "address")), "0000:00:03.0"),
                  "wire: GetDevice by short address");
        json_decref(r);
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.GetDevice\",\"parameters\":{\"address\":\"0000:09:00.0\"}}",
                     "io.iommufd.Broker.DeviceNotFound", "device", "0000:09:00.0");
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.GetDevice\",\"parameters\":{\"address\":\"zz\"}}",
                     "io.iommufd.Broker.InvalidParameter", NULL, NULL);
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.GetDevice\",\"parameters\":{\"address\":3}}",
                     "org.varlink.service.InvalidParameter", "parameter", "address");

        expect_error(&a, "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[]}}",
                     "io.iommufd.Broker.InvalidParameter", NULL, NULL);
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[\"0000:00:02.0\",\"00:02.0\"]}}",
                     "io.iommufd.Broker.InvalidParameter", "device", "0000:00:02.0");
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[7]}}",
                     "io.iommufd.Broker.InvalidParameter", NULL, NULL);
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":{\"devices\":[\"0000:00:02.0\"],\"mode\":\"sideways\"}}",
                     "org.varlink.service.InvalidParameter", "parameter", "mode");
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.Monitor\"}", "org.varlink.service.ExpectedMore", NULL, NULL);

        client_connect(&mon, e, path);
        r = client_call(&mon, "{\"method\":\"io.iommufd.Broker.Monitor\",\"more\":true}");
        CHECK_MSG(streq_ptr(json_string_value(param(r, "event")), "ready") && json_is_true(json_object_get(r, "continues")),
                  "wire: Monitor starts with ready");
        json_decref(r);

        r = client_call(&a, "{\"method\":\"io.iommufd.Broker.Acquire\",\"parameters\":"
                            "{\"devices\":[\"0000:00:02.0\",\"0000:00:03.0\"],\"mode\":\"unbound\"}}");
        CHECK_MSG(r && !error_of(r) && a.n_fds == 3 && json_integer_value(param(r, "iommuFileDescriptor")) == 0,
                  "wire: Acquire of two devices carries 3 fds, iommufd at 0 (%zu)", a.n_fds);
        for (size_t i = 0; r && i < 2 && a.n_fds == 3; i++) {
                json_t *dev = json_array_get(param(r, "devices"), i);
                json_int_t idx = json_integer_value(json_object_get(dev, "fileDescriptor"));
                const char *addr = json_string_value(json_object_get(dev, "address"));
                CHECK_MSG(idx == (json_int_t) i + 1 && addr && fd_is_fake_device(a.fds[idx], addr) &&
                          !json_object_get(dev, "devId"), "wire: devices[%zu] is %s at fd index %lld", i,
                          strna(addr), (long long) idx);
        }
        json_decref(r);

        r = client_call(&mon, NULL);
        CHECK_MSG(streq_ptr(json_string_value(param(r, "event")), "lease-acquired") && param(r, "session"),
                  "wire: Monitor reports lease-acquired with the session (root viewer)");
        json_decref(r);
        r = client_call(&a, "{\"method\":\"io.iommufd.Broker.GetDevice\",\"parameters\":{\"address\":\"0000:00:02.0\"}}");
        CHECK_MSG(streq_ptr(json_string_value(json_object_get(param(r, "device"), "state")), "leased") &&
                  json_object_get(json_object_get(param(r, "device"), "holder"), "session"),
                  "wire: leased device shows its holder to root");
        json_decref(r);

        r = client_call(&a, "{\"method\":\"io.iommufd.Broker.Release\",\"parameters\":{\"devices\":[\"0000:00:02.0\"]}}");
        CHECK_MSG(r && !error_of(r), "wire: Release one device");
        json_decref(r);
        expect_error(&a, "{\"method\":\"io.iommufd.Broker.Release\",\"parameters\":{\"devices\":[\"0000:00:02.0\"]}}",
                     "io.iommufd.Broker.NotHeld", "device", "0000:00:02.0");
        do
                r = client_call(&mon, NULL);
        while (r && !streq_ptr(json_string_value(param(r, "event")), "lease-ended") && (json_decref(r), true));
        CHECK_MSG(r && streq_ptr(json_string_value(param(r, "reason")), "released") &&
                  streq_ptr(json_string_value(param(r, "address")), "0000:00:02.0"),
                  "wire: Monitor reports lease-ended, reason released");
        json_decref(r);

        /* Events may still be queued before the answer to a call made while streaming. */
        r = client_call(&mon, "{\"method\":\"io.iommufd.Broker.ListDevices\"}");
        while (r && json_is_true(json_object_get(r, "continues")) && (json_decref(r), true))
                r = client_call(&mon, NULL);
        CHECK_MSG(streq_ptr(error_of(r), "io.iommufd.Broker.LimitExceeded"),
                  "wire: call on a streaming connection is LimitExceeded");
        json_decref(r);

        client_close(&a);
        client_close(&mon);
        /* Leases end once the kernel (here the fake) says every fd is closed:
         * unbound ones after a /proc scan in a worker. */
        for (int i = 0; i < 300 && (i < 20 || test_count_open_fds() != base); i++)
                sd_event_run(e, 10 * 1000);
        CHECK_MSG(varlink_server_n_connections(server) == 0, "wire: both connections gone");
        varlink_broker_free(server);
        CHECK_MSG(test_count_open_fds() == base, "wire: no fd left behind (%d, before %d)", test_count_open_fds(), base);
        CHECK_MSG(access(path, F_OK) < 0, "wire: socket removed on free");
        manager_free(m);
        sd_event_unref(e);
        rmdir(dir);
}

int main(void) {
        _cleanup_free_ char *idl = load_idl();

        if (!idl)
                return 1;
        test_methods(idl);
        test_errors(idl);
        test_device_json(idl);
        test_device_text();
        test_device_text_shared();
        test_acquire_reply_text();
        test_wire();
        if (test_dbus_vtable_matches_xml() != 0)
                test_failures++;

        return test_result();
}
