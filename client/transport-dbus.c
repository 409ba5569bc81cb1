/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus transport (protocol/io.iommufd.Broker1.xml) on sd-bus. The
 * session is the unique name of the call connection. Events come on a second
 * connection that only ever receives signals, so that nothing read during a
 * method call sits unseen in the call connection's queue while the caller
 * polls the fd.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <systemd/sd-bus.h>

#include "broker-errors.h"
#include "client-internal.h"

typedef struct DbusTransport {
        char *address;                  /* NULL: the system bus */
        sd_bus *bus;
        sd_bus *events;                 /* NULL until iommufd_broker_event_fd() */
        bool have_event;                /* one decoded by a signal handler, not yet returned */
        iommufd_broker_event event;
        bool broker_gone;               /* the broker's name lost its owner */
        /* What this connection leased, so that its lease events can name its
         * session as varlink's Monitor does: the broker's signals go to every
         * listener and carry session 0, and a lease going "releasing" (revoke,
         * unplug request) is only a State change of the device. */
        uint64_t session;
        char **held;                    /* addresses, until their LeaseEnded */
} DbusTransport;

static DbusTransport *transport(iommufd_broker *b) {
        return b->data;
}

/* Record a failed call: a D-Bus error reply, or a local failure. */
static int bus_error(iommufd_broker *b, int r, const sd_bus_error *error, const char *what) {
        /* sd-bus fails a reply whose fds it cannot install (MSG_CTRUNC) with
         * EXFULL (systemd 252) or ECHRNG (257), named System.Error.<E...>
         * (262 delivers it without them: fds_over_limit()):
         * say what it means. */
        if ((r == -EXFULL || r == -ECHRNG || r == -EMFILE) &&
            (!error || !sd_bus_error_is_set(error) ||
             sd_bus_error_has_names(error, "System.Error.EXFULL", "System.Error.ECHRNG", "System.Error.EMFILE")))
                return client_set_error(b, -EMFILE, CLIENT_ERROR_LOCAL,
                                        "cannot receive the file descriptors the broker sent: too many open "
                                        "files (RLIMIT_NOFILE)");
        if (error && sd_bus_error_is_set(error))
                return client_set_remote_error(b, error->name, error->message);
        if (r == -ENOMEM)
                return client_set_error(b, r, CLIENT_ERROR_NO_MEMORY, "out of memory");
        if (r == -ETIMEDOUT)
                return client_set_error(b, r, CLIENT_ERROR_TIMEOUT, "the broker did not answer in time");
        if (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE)
                return client_set_error(b, -ECONNRESET, CLIENT_ERROR_DISCONNECTED, "the bus connection was closed");
        if (r == -EBADMSG || r == -ENXIO || r == -EINVAL)
                return client_set_error(b, -EBADMSG, CLIENT_ERROR_PROTOCOL, "malformed %s reply from the broker", what);
        return client_set_error(b, r, CLIENT_ERROR_LOCAL, "%s: %s", what, strerror(-r));
}

/* sd-bus authenticates and says Hello lazily, on the first call. Done here
 * instead: a bus that refuses us fails connect(), as a dead varlink socket
 * does, and the first call (an Acquire) costs only its own round trip. */
static int bus_wait_running(sd_bus *bus) {
        const char *unique;

        return sd_bus_get_unique_name(bus, &unique);
}

static int bus_open(const char *address, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        if (!address)
                r = sd_bus_open_system(&bus);
        else {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r >= 0)
                r = bus_wait_running(bus);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

static void dbus_disconnect(iommufd_broker *b) {
        DbusTransport *t = transport(b);

        if (!t)
                return;
        sd_bus_flush_close_unref(t->bus);
        sd_bus_flush_close_unref(t->events);
        strv_free(t->held);
        free(t->address);
        free(t);
        b->data = NULL;
}

static int dbus_connect(iommufd_broker *b, const char *address) {
        DbusTransport *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        b->data = t;
        if (address && !(t->address = strdup(address))) {
                dbus_disconnect(b);
                return -ENOMEM;
        }
        r = bus_open(t->address, &t->bus);
        if (r < 0) {
                client_set_error(b, r, CLIENT_ERROR_CONNECT_FAILED, "cannot connect to %s: %s",
                                 address ?: "the system bus", strerror(-r));
                dbus_disconnect(b);
                return r;
        }
        return 0;
}

static int copy_string(const char *s, char *buf, size_t size, bool truncate) {
        return client_copy_string(buf, size, s ?: "", truncate) < 0 ? -EBADMSG : 0;
}

/* "as" inside a variant, joined with spaces; whole addresses only. */
static int read_group_members(sd_bus_message *m, iommufd_broker_device *d) {
        size_t len = 0;
        const char *s;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "as");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "s");
        if (r < 0)
                return r;
        d->group_members[0] = 0;
        while ((r = sd_bus_message_read(m, "s", &s)) > 0) {
                size_t n = strlen(s);

                if (len + (len > 0) + n >= sizeof(d->group_members))
                        continue;
                len += snprintf(d->group_members + len, sizeof(d->group_members) - len, "%s%s",
                                len > 0 ? " " : "", s);
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* One a{sv} entry of the device interface; unknown names are skipped. */
static int read_device_property(sd_bus_message *m, const char *name, iommufd_broker_device *d) {
        static const struct {
                const char *name;
                char type;
                size_t offset, size;    /* strings: buffer; numbers: field */
                bool truncate;
        } props[] = {
#define P(n, t, f, tr) { n, t, offsetof(iommufd_broker_device, f), sizeof(((iommufd_broker_device *) 0)->f), tr }
                P("Address", 's', address, false),
                P("VendorId", 'q', vendor_id, false),
                P("DeviceId", 'q', device_id, false),
                P("SubsystemVendorId", 'q', subsystem_vendor_id, false),
                P("SubsystemDeviceId", 'q', subsystem_device_id, false),
                P("Class", 'u', class_code, false),
                P("Driver", 's', driver, false),
                P("IommuGroup", 'i', iommu_group, false),
                P("VfioCdev", 's', vfio_cdev, false),
                P("IommuType", 's', iommu_type, true),
                P("IommuCapabilities", 't', iommu_capabilities, false),
                P("NoIommu", 'b', noiommu, false),
                P("SriovVf", 'b', sriov_vf, false),
                P("State", 's', state, false),
                P("StateReason", 's', reason, true),
                P("HolderSession", 't', holder_session, false),
                P("HolderUid", 'u', holder_uid, false),
                P("HolderPid", 'u', holder_pid, false),
#undef P
        };
        char *base = (char *) d;

        if (streq(name, "GroupMembers"))
                return read_group_members(m, d);
        for (size_t i = 0; i < ELEMENTSOF(props); i++) {
                char sig[2] = { props[i].type, 0 };
                const char *s = NULL;
                int r;

                if (!streq(props[i].name, name))
                        continue;
                if (props[i].type != 's')
                        return sd_bus_message_read(m, "v", sig, base + props[i].offset);
                r = sd_bus_message_read(m, "v", "s", &s);
                if (r < 0)
                        return r;
                return copy_string(s, base + props[i].offset, props[i].size, props[i].truncate);
        }
        return sd_bus_message_skip(m, "v");
}

/* Walk an a{sv}: field() reads the value of a key it knows and returns 1,
 * or returns 0 to have it skipped. */
static int read_vardict(sd_bus_message *m, int (*field)(sd_bus_message *m, const char *key, void *userdata),
                        void *userdata) {
        const char *key;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0)
                        r = field(m, key, userdata);
                if (r == 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

static int read_device_field(sd_bus_message *m, const char *name, void *userdata) {
        int r = read_device_property(m, name, userdata);

        return r < 0 ? r : 1; /* it consumed (or skipped) the value itself */
}

/* A GetAll reply of the device interface. */
static int read_device(sd_bus_message *m, iommufd_broker_device *ret) {
        iommufd_broker_device d = { .iommu_group = -1 };
        int r;

        r = read_vardict(m, read_device_field, &d);
        if (r < 0)
                return r;
        if (!d.address[0] || !d.state[0])
                return -EBADMSG;
        *ret = d;
        return 0;
}

static int get_device_at(iommufd_broker *b, const char *path, iommufd_broker_device *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(transport(b)->bus, BROKER_DBUS_NAME, path, "org.freedesktop.DBus.Properties",
                               "GetAll", &error, &reply, "s", BROKER_DBUS_DEVICE_INTERFACE);
        if (r < 0) {
                r = bus_error(b, r, &error, "GetAll");
                sd_bus_error_free(&error);
                return r;
        }
        r = read_device(reply, ret);
        if (r < 0)
                return bus_error(b, -EBADMSG, NULL, "GetAll");
        return 0;
}

static int dbus_get(iommufd_broker *b, const char *address, iommufd_broker_device *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        int r;

        r = sd_bus_call_method(transport(b)->bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                               "GetDevice", &error, &reply, "s", address);
        if (r < 0) {
                r = bus_error(b, r, &error, "GetDevice");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return bus_error(b, -EBADMSG, NULL, "GetDevice");
        return get_device_at(b, path, ret);
}

/* A device that vanished between ListDevices and GetAll is left out. */
static bool is_vanished(const iommufd_broker *b) {
        const char *name = iommufd_broker_error_name(b);

        return name && (streq(name, "org.freedesktop.DBus.Error.UnknownObject") ||
                        streq(name, "org.freedesktop.DBus.Error.UnknownInterface") ||
                        streq(name, "DeviceNotFound"));
}

static int dbus_list(iommufd_broker *b, iommufd_broker_device **ret, size_t *ret_n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ iommufd_broker_device *devices = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        size_t n = 0, allocated = 0;
        const char *address, *path;
        int r;

        r = sd_bus_call_method(transport(b)->bus, BROKER_DBUS_NAME, BROKER_DBUS_PATH, BROKER_DBUS_INTERFACE,
                               "ListDevices", &error, &reply, "");
        if (r < 0) {
                r = bus_error(b, r, &error, "ListDevices");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(so)");
        if (r < 0)
                return bus_error(b, -EBADMSG, NULL, "ListDevices");
        while ((r = sd_bus_message_read(reply, "(so)", &address, &path)) > 0) {
                if (n == allocated) {
                        iommufd_broker_device *a;

                        allocated = allocated ? allocated * 2 : 32;
                        a = reallocarray(devices, allocated, sizeof(*devices));
                        if (!a)
                                return bus_error(b, -ENOMEM, NULL, "ListDevices");
                        devices = a;
                }
                r = get_device_at(b, path, &devices[n]);
                if (r < 0 && is_vanished(b)) {
                        client_clear_error(b);
                        continue;
                }
                if (r < 0)
                        return r;
                n++;
        }
        if (r < 0)
                return bus_error(b, -EBADMSG, NULL, "ListDevices");
        if (!devices && !(devices = calloc(1, sizeof(*devices))))
                return bus_error(b, -ENOMEM, NULL, "ListDevices");
        *ret = TAKE_PTR(devices);
        *ret_n = n;
        return 0;
}

static int append_devices(sd_bus_message *m, const char *const *devices, size_t n_devices) {
        int r = sd_bus_message_open_container(m, 'a', "s");

        for (size_t i = 0; r >= 0 && i < n_devices; i++)
                r = sd_bus_message_append(m, "s", devices[i]);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

static int append_acquire_options(sd_bus_message *m, iommufd_broker_mode mode, unsigned flags) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "mode", "s", iommufd_broker_mode_to_string(mode));
        if (r >= 0 && (flags & IOMMUFD_BROKER_ACQUIRE_MANAGED))
                r = sd_bus_message_append(m, "{sv}", "managed", "b", 1);
        if (r >= 0 && (flags & IOMMUFD_BROKER_ACQUIRE_INTERACTIVE))
                r = sd_bus_message_append(m, "{sv}", "interactive", "b", 1);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

/* sd-bus owns the fds of a message: keep a copy of our own. */
static int dup_fd(int fd) {
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);

        return copy < 0 ? -errno : copy;
}

/* The ids dict of one acquired device: "dev_id" and "hwpt_id". */
static int read_id_field(sd_bus_message *m, const char *key, void *userdata) {
        iommufd_broker_lease_device *d = userdata;

        if (streq(key, "dev_id"))
                return sd_bus_message_read(m, "v", "u", &d->dev_id);
        if (streq(key, "hwpt_id"))
                return sd_bus_message_read(m, "v", "u", &d->hwpt_id);
        return 0;
}

static int read_ids(sd_bus_message *m, iommufd_broker_lease_device *d) {
        return read_vardict(m, read_id_field, d);
}

/* The info dict of a lease: "session", "ioas_id" and "memlock_limit". */
static int read_info_field(sd_bus_message *m, const char *key, void *userdata) {
        iommufd_broker_lease *l = userdata;

        if (streq(key, "session"))
                return sd_bus_message_read(m, "v", "t", &l->session);
        if (streq(key, "ioas_id"))
                return sd_bus_message_read(m, "v", "u", &l->ioas_id);
        if (streq(key, "memlock_limit"))
                return sd_bus_message_read(m, "v", "t", &client_lease_extra(l)->memlock_limit);
        return 0;
}

static int read_info(sd_bus_message *m, iommufd_broker_lease *l) {
        return read_vardict(m, read_info_field, l);
}

static void lease_freep(iommufd_broker_lease **l) {
        iommufd_broker_lease_free(*l);
}

/* Whether `needed` more fds would take this process past RLIMIT_NOFILE.
 * sd-bus 262 delivers a reply whose fds the kernel could not install
 * (MSG_CTRUNC) without them, and reading them then fails as for a
 * malformed reply: this tells the two apart for the error message. */
static bool fds_over_limit(size_t needed) {
        struct rlimit rl;
        size_t open_fds = 0;
        DIR *d;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return false;
        d = opendir("/proc/self/fd");
        if (!d)
                return errno == EMFILE;         /* no room for even that fd */
        while (readdir(d))
                open_fds++;
        closedir(d);
        /* ".", ".." and the directory's own fd. */
        open_fds = open_fds > 3 ? open_fds - 3 : 0;
        return open_fds + needed > rl.rlim_cur;
}

static int read_acquire_reply(sd_bus_message *m, size_t n_devices, iommufd_broker_lease **ret) {
        _cleanup_(lease_freep) iommufd_broker_lease *l = client_lease_new(n_devices);
        size_t n = 0;
        int fd, r;

        if (!l)
                return -ENOMEM;
        r = sd_bus_message_read(m, "h", &fd);
        if (r < 0)
                return r;
        l->iommufd = dup_fd(fd);
        if (l->iommufd < 0)
                return l->iommufd;

        r = sd_bus_message_enter_container(m, 'a', "(sha{sv})");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'r', "sha{sv}")) > 0) {
                iommufd_broker_lease_device *d = &l->devices[n];
                const char *address;

                /* The broker answers one entry per requested device. */
                if (n >= n_devices)
                        return -EBADMSG;
                r = sd_bus_message_read(m, "sh", &address, &fd);
                if (r < 0)
                        return r;
                if (copy_string(address, d->address, sizeof(d->address), false) < 0)
                        return -EBADMSG;
                d->fd = dup_fd(fd);
                if (d->fd < 0)
                        return d->fd;
                r = read_ids(m, d);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                n++;
        }
        if (r < 0)
                return r;
        if (n != n_devices)
                return -EBADMSG;
        r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = read_info(m, l);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

static int dbus_acquire(iommufd_broker *b, const char *const *devices, size_t n_devices,
                        iommufd_broker_mode mode, unsigned flags, iommufd_broker_lease **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        bool interactive = flags & IOMMUFD_BROKER_ACQUIRE_INTERACTIVE;
        int r;

        r = sd_bus_message_new_method_call(transport(b)->bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH,
                                           BROKER_DBUS_INTERFACE, "AcquireDevices");
        if (r >= 0)
                r = append_devices(m, devices, n_devices);
        if (r >= 0)
                r = append_acquire_options(m, mode, flags);
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(m, interactive);
        if (r < 0)
                return bus_error(b, r, NULL, "AcquireDevices");

        r = sd_bus_call(transport(b)->bus, m,
                        interactive ? CLIENT_CALL_TIMEOUT_INTERACTIVE_USEC : CLIENT_CALL_TIMEOUT_USEC,
                        &error, &reply);
        if (r < 0) {
                if ((r == -EBADMSG || r == -ENXIO || r == -EBADF) && !sd_bus_error_is_set(&error) &&
                    fds_over_limit(n_devices + 1))
                        r = -EMFILE;
                r = bus_error(b, r, &error, "AcquireDevices");
                sd_bus_error_free(&error);
                return r;
        }
        r = read_acquire_reply(reply, n_devices, ret);
        /* Without its fds the reply reads as malformed (or its fds as -1). */
        if (r < 0 && r != -ENOMEM && r != -EMFILE && fds_over_limit(n_devices + 1))
                r = -EMFILE;
        if (r < 0)
                return bus_error(b, r == -ENOMEM || r == -EMFILE ? r : -EBADMSG, NULL, "AcquireDevices");
        /* One session per bus name: every acquire of this connection gets the same. */
        transport(b)->session = (*ret)->session;
        for (size_t i = 0; i < (*ret)->n_devices; i++)
                if (!strv_contains(transport(b)->held, (*ret)->devices[i].address))
                        (void) strv_extend(&transport(b)->held, (*ret)->devices[i].address);
        return 0;
}

static int dbus_revoke(iommufd_broker *b, const char *device, unsigned timeout_sec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* The broker answers once the lease ended or its timeout passed. */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

        r = sd_bus_message_new_method_call(transport(b)->bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH,
                                           BROKER_DBUS_INTERFACE, "Revoke");
        if (r >= 0)
                r = sd_bus_message_append(m, "su", device, (uint32_t) timeout_sec);
        if (r < 0)
                return bus_error(b, r, NULL, "Revoke");
        r = sd_bus_call(transport(b)->bus, m, (uint64_t) timeout_sec * 1000000ULL + CLIENT_CALL_TIMEOUT_USEC, &error,
                        &reply);
        if (r < 0) {
                r = bus_error(b, r, &error, "Revoke");
                sd_bus_error_free(&error);
                return r;
        }
        return 0;
}

static int dbus_release(iommufd_broker *b, const char *const *devices, size_t n_devices) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(transport(b)->bus, &m, BROKER_DBUS_NAME, BROKER_DBUS_PATH,
                                           BROKER_DBUS_INTERFACE, "ReleaseDevices");
        if (r >= 0)
                r = append_devices(m, devices, n_devices);
        if (r < 0)
                return bus_error(b, r, NULL, "ReleaseDevices");
        r = sd_bus_call(transport(b)->bus, m, CLIENT_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0) {
                r = bus_error(b, r, &error, "ReleaseDevices");
                sd_bus_error_free(&error);
                return r;
        }
        return 0;
}

/* --- Events --- */

/* Whether address was ours; it is not any more. */
static bool held_forget(DbusTransport *t, const char *address) {
        size_t n = strv_length(t->held);

        for (size_t i = 0; i < n; i++)
                if (streq(t->held[i], address)) {
                        free(t->held[i]);
                        memmove(t->held + i, t->held + i + 1, (n - i) * sizeof(char *));
                        return true;
                }
        return false;
}

static int broker_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        DbusTransport *t = userdata;
        iommufd_broker_event e = {};
        const char *member = sd_bus_message_get_member(m), *address = NULL, *reason = NULL, *path;
        int r;

        if (streq_ptr(member, "DeviceAdded") || streq_ptr(member, "DeviceRemoved")) {
                r = sd_bus_message_read(m, "so", &address, &path);
                snprintf(e.type, sizeof(e.type), "%s", streq(member, "DeviceAdded") ? "device-added" : "device-removed");
        } else if (streq_ptr(member, "LeaseAcquired")) {
                r = sd_bus_message_read(m, "st", &address, &e.session);
                snprintf(e.type, sizeof(e.type), "lease-acquired");
        } else if (streq_ptr(member, "LeaseEnded")) {
                r = sd_bus_message_read(m, "sts", &address, &e.session, &reason);
                snprintf(e.type, sizeof(e.type), "lease-ended");
                if (r >= 0 && held_forget(t, address))
                        e.session = t->session;
        } else
                return 0;       /* a signal added later: not ours to report */
        if (r < 0 || copy_string(address, e.address, sizeof(e.address), false) < 0 ||
            copy_string(reason, e.reason, sizeof(e.reason), true) < 0)
                return 0;       /* malformed: drop it rather than report garbage */
        t->event = e;
        t->have_event = true;
        return 1;
}

/* "State" and "StateReason" from a PropertiesChanged, if it names them. */
static int read_state_change(sd_bus_message *m, const char **ret_state, const char **ret_reason) {
        const char *iface, *key;
        int r;

        r = sd_bus_message_read(m, "s", &iface);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && (streq(key, "State") || streq(key, "StateReason")))
                        r = sd_bus_message_read(m, "v", "s", streq(key, "State") ? ret_state : ret_reason);
                else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return r;
}

/* The "revoked" of a StateReason "releasing (revoked): waiting for ...". */
static void releasing_reason(const char *state_reason, char *buf, size_t size) {
        const char *open = state_reason ? strchr(state_reason, '(') : NULL;
        const char *close = open ? strchr(open, ')') : NULL;

        if (close && (size_t) (close - open - 1) < size)
                snprintf(buf, size, "%.*s", (int) (close - open - 1), open + 1);
}

/* PropertiesChanged on a device object is a device-changed event, or for a
 * device this connection holds that went "releasing", lease-releasing. */
static int device_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        DbusTransport *t = userdata;
        _cleanup_free_ char *address = NULL;
        const char *state = NULL, *state_reason = NULL;
        iommufd_broker_event e = {};

        if (sd_bus_path_decode(sd_bus_message_get_path(m), BROKER_DBUS_DEVICE_PREFIX, &address) <= 0 ||
            copy_string(address, e.address, sizeof(e.address), false) < 0)
                return 0;
        snprintf(e.type, sizeof(e.type), "device-changed");
        if (strv_contains(t->held, e.address) && read_state_change(m, &state, &state_reason) >= 0 &&
            streq_ptr(state, "releasing")) {
                snprintf(e.type, sizeof(e.type), "lease-releasing");
                e.session = t->session;
                releasing_reason(state_reason, e.reason, sizeof(e.reason));
        }
        t->event = e;
        t->have_event = true;
        return 1;
}

static int name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        DbusTransport *t = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 && !*new_owner)
                t->broker_gone = true;
        return 1;
}

/* Install the matches synchronously: once this returns, no event is missed. */
static int events_subscribe(DbusTransport *t) {
        int r;

        r = sd_bus_add_match(t->events, NULL,
                             "type='signal',sender='" BROKER_DBUS_NAME "',path='" BROKER_DBUS_PATH "',"
                             "interface='" BROKER_DBUS_INTERFACE "'", broker_signal, t);
        if (r >= 0)
                r = sd_bus_add_match(t->events, NULL,
                                     "type='signal',sender='" BROKER_DBUS_NAME "',"
                                     "path_namespace='" BROKER_DBUS_DEVICE_PREFIX "',"
                                     "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
                                     device_changed, t);
        if (r >= 0)
                r = sd_bus_add_match(t->events, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" BROKER_DBUS_NAME "'", name_owner_changed, t);
        return r;
}

static int dbus_event_fd(iommufd_broker *b) {
        DbusTransport *t = transport(b);
        int r;

        if (!t->events) {
                r = bus_open(t->address, &t->events);
                if (r < 0)
                        return client_set_error(b, r, CLIENT_ERROR_CONNECT_FAILED, "cannot connect to %s: %s",
                                                t->address ?: "the system bus", strerror(-r));
                r = events_subscribe(t);
                if (r < 0) {
                        t->events = sd_bus_flush_close_unref(t->events);
                        return bus_error(b, r, NULL, "AddMatch");
                }
        }
        r = sd_bus_get_fd(t->events);
        return r < 0 ? bus_error(b, r, NULL, "sd_bus_get_fd") : r;
}

static int dbus_next_event(iommufd_broker *b, iommufd_broker_event *ret) {
        DbusTransport *t = transport(b);
        int r;

        r = dbus_event_fd(b);
        if (r < 0)
                return r;
        while (!t->have_event && !t->broker_gone) {
                r = sd_bus_process(t->events, NULL);
                if (r < 0)
                        return bus_error(b, r, NULL, "reading events");
                if (r == 0)
                        return 0;
        }
        if (t->have_event) {
                *ret = t->event;
                t->have_event = false;
                return 1;
        }
        return client_set_error(b, -ECONNRESET, CLIENT_ERROR_DISCONNECTED, "the broker left the bus");
}

const BrokerTransport broker_transport_dbus = {
        .name = "D-Bus",
        .connect = dbus_connect,
        .disconnect = dbus_disconnect,
        .list = dbus_list,
        .get = dbus_get,
        .acquire = dbus_acquire,
        .release = dbus_release,
        .revoke = dbus_revoke,
        .event_fd = dbus_event_fd,
        .next_event = dbus_next_event,
};
