/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "config.h"
#include "log.h"
#include "fmt.h"
#include "manager.h"
#include "core-internal.h"
#include "driver.h"
#include "lease.h"

struct Subscription {
        Manager *manager;
        BrokerEventHandler handler;
        void *userdata;
        Subscription *next;
};

/* An event kept while events are held, with copies of what it points to. */
typedef struct HeldEvent {
        BrokerEvent event;
        char address[16];
        char *reason;
} HeldEvent;

struct Manager {
        sd_event *event;
        Inventory *inventory;
        Policy *policy;
        PolkitClient *polkit;
        Quota *quota;                   /* clients of both front ends */
        const KernelOps *kernel;
        char *policy_path;
        char *policy_dropin_dir;
        unsigned max_devices_per_session;
        uint64_t next_session_id;
        Subscription *subscriptions;
        unsigned events_held;           /* manager_hold_events() depth */
        EventsDoneHandler events_done;
        void *events_done_userdata;
        HeldEvent *held;
        size_t n_held, n_held_allocated;
        PolicyReloadHandler policy_reloaded;
        void *policy_reloaded_userdata;
        char **restoring;               /* addresses whose driver a worker is restoring */
        char **rebinding;               /* addresses a worker moves to vfio-pci (rebind.c) */
        Lease *leases;                  /* every lease, in any state */
        LeaseStore *store;              /* NULL: leases do not survive a restart */
        bool shutting_down;             /* leases outlive the daemon from here on */
        char reason_buf[256];           /* backing store for a composed state reason */

        AccessCache *access;            /* what policy lets each recent principal do */
        const char *kernel_reason;      /* cached unsupported_reason(); see manager_recheck_kernel() */
        char kernel_reason_buf[256];
        uint64_t kernel_checked;         /* when, CLOCK_MONOTONIC */
};

static const char *const event_type_names[_BROKER_EVENT_MAX] = {
        [BROKER_EVENT_DEVICE_ADDED] = "device-added",
        [BROKER_EVENT_DEVICE_REMOVED] = "device-removed",
        [BROKER_EVENT_DEVICE_CHANGED] = "device-changed",
        [BROKER_EVENT_LEASE_ACQUIRED] = "lease-acquired",
        [BROKER_EVENT_LEASE_ENDED] = "lease-ended",
        [BROKER_EVENT_LEASE_RELEASING] = "lease-releasing",
};

const char *broker_event_type_to_string(BrokerEventType t) {
        return t >= 0 && t < _BROKER_EVENT_MAX ? event_type_names[t] : NULL;
}

static const char *const device_state_names[_DEVICE_STATE_MAX] = {
        [DEVICE_STATE_AVAILABLE] = "available",
        [DEVICE_STATE_LEASED] = "leased",
        [DEVICE_STATE_RELEASING] = "releasing",
        [DEVICE_STATE_BUSY] = "busy",
        [DEVICE_STATE_UNAVAILABLE] = "unavailable",
};

const char *device_state_to_string(DeviceState s) {
        return s >= 0 && s < _DEVICE_STATE_MAX ? device_state_names[s] : NULL;
}

/* --- events --- */

int manager_subscribe(Manager *m, BrokerEventHandler handler, void *userdata, Subscription **ret) {
        Subscription *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (Subscription) { .manager = m, .handler = handler, .userdata = userdata, .next = m->subscriptions };
        m->subscriptions = s;
        *ret = s;
        return 0;
}

Subscription *subscription_free(Subscription *s) {
        if (!s)
                return NULL;
        for (Subscription **p = &s->manager->subscriptions; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        free(s);
        return NULL;
}

/* d's cached state, and its group mates' (their state depends on d's lease
 * and driver), no longer tell the truth. What sysfs or the kernel say about
 * a device is dropped where it is re-read (device.c, session.c). */
static void invalidate_device_and_group(Manager *m, Device *d) {
        device_invalidate_view(d);
        for (char **member = d->group_members; member && *member; member++)
                device_invalidate_view(inventory_find(m->inventory, *member));
}

static void invalidate_address(Manager *m, const char *address) {
        Device *d = address ? inventory_find(m->inventory, address) : NULL;

        if (d)
                invalidate_device_and_group(m, d);
}

static void invalidate_all(Manager *m) {
        size_t n;
        Device *const *devices = inventory_devices(m->inventory, &n);

        for (size_t i = 0; i < n; i++)
                device_invalidate_view(devices[i]);
}

static void deliver(Manager *m, const BrokerEvent *event) {
        Subscription *next;

        /* A handler may unsubscribe itself (its connection died while sending). */
        for (Subscription *s = m->subscriptions; s; s = next) {
                next = s->next;
                s->handler(m, event, s->userdata);
        }
}

/* False if there is no memory for it: then it is delivered at once. */
static bool hold(Manager *m, const BrokerEvent *event) {
        HeldEvent *h;

        if (m->n_held == m->n_held_allocated) {
                size_t n = m->n_held_allocated ? m->n_held_allocated * 2 : 8;
                HeldEvent *a = reallocarray(m->held, n, sizeof(*a));

                if (!a)
                        return false;
                m->held = a;
                m->n_held_allocated = n;
        }
        h = &m->held[m->n_held];
        *h = (HeldEvent) { .event = *event };
        if (event->reason && !(h->reason = strdup(event->reason)))
                return false;
        FmtBuf b = fmt_buf(h->address, sizeof(h->address));
        fmt_str(&b, event->address ?: "");      /* every call's events: no printf */
        h->event.address = event->address ? h->address : NULL;
        h->event.reason = h->reason;
        m->n_held++;
        return true;
}

void manager_emit(Manager *m, const BrokerEvent *event) {
        /* Every change of what a device looks like comes through here, before
         * anyone serializes the device again. */
        if (event->device)
                /* The manager's own device: no need to look it up again. */
                invalidate_device_and_group(m, (Device *) event->device);
        else
                invalidate_address(m, event->address);

        if (m->events_held > 0 && hold(m, event))
                return;
        deliver(m, event);
}

void manager_hold_events(Manager *m) {
        m->events_held++;
}

/* A device-changed carries the device as it is when delivered, so an
 * earlier one of the same device in the same batch says what the later one
 * says (a Release goes releasing, ended, available within one call). It is
 * left out, unless the device left or came back in between. */
static bool superseded(const HeldEvent *held, size_t n, size_t i) {
        if (held[i].event.type != BROKER_EVENT_DEVICE_CHANGED || !held[i].event.address)
                return false;
        for (size_t j = i + 1; j < n; j++) {
                const BrokerEvent *e = &held[j].event;

                if (!e->address || !streq(held[j].address, held[i].address))
                        continue;
                if (e->type == BROKER_EVENT_DEVICE_CHANGED)
                        return true;
                if (e->type == BROKER_EVENT_DEVICE_ADDED || e->type == BROKER_EVENT_DEVICE_REMOVED)
                        return false;
        }
        return false;
}

void manager_release_events(Manager *m) {
        HeldEvent *held = m->held;
        size_t n = m->n_held, allocated = m->n_held_allocated;

        assert(m->events_held > 0);
        if (--m->events_held > 0)
                return;
        /* Taken first: a handler may emit (and so deliver) events of its own. */
        m->held = NULL;
        m->n_held = m->n_held_allocated = 0;
        for (size_t i = 0; i < n; i++) {
                BrokerEvent *e = &held[i].event;

                /* Looked up again rather than trusted: it is the device now. */
                if (e->device)
                        e->device = inventory_find(m->inventory, held[i].address);
                if (!superseded(held, n, i))
                        deliver(m, e);
                free(held[i].reason);
        }
        /* Kept for the next call's events, unless a handler held some anew. */
        if (!m->held) {
                m->held = held;
                m->n_held_allocated = allocated;
        } else
                free(held);
        if (m->events_done)
                m->events_done(m, m->events_done_userdata);
}

void manager_set_events_done(Manager *m, EventsDoneHandler handler, void *userdata) {
        m->events_done = handler;
        m->events_done_userdata = userdata;
}

static void emit_device_event(Manager *m, BrokerEventType type, const Device *d, const char *address) {
        manager_emit(m, &(BrokerEvent) { .type = type, .address = address, .device = d });
}

/* --- devices being given back to their driver --- */

bool manager_is_restoring(Manager *m, const char *address) {
        return strv_contains(m->restoring, address);
}

static void strv_remove_all(char **l, const char *s) {
        size_t j = 0;

        for (size_t i = 0; l && l[i]; i++) {
                if (streq(l[i], s))
                        free(l[i]);
                else
                        l[j++] = l[i];
        }
        if (l)
                l[j] = NULL;
}

static void restoring_remove(Manager *m, const char *address) {
        strv_remove_all(m->restoring, address);
}

bool manager_is_rebinding(Manager *m, const char *address) {
        return strv_contains(m->rebinding, address);
}

void manager_set_rebinding(Manager *m, const char *address, bool on) {
        Device *d = inventory_find(m->inventory, address);

        if (on == manager_is_rebinding(m, address))
                return;
        if (!on)
                strv_remove_all(m->rebinding, address);
        else if (strv_extend(&m->rebinding, address) < 0)
                /* Not shown busy, but Acquire still refuses it: its
                 * check_device() cannot pass while the worker runs either. */
                log_warning("%s: out of memory; not shown as busy while rebinding", address);
        if (d)
                emit_device_event(m, BROKER_EVENT_DEVICE_CHANGED, d, d->address);
}

static void on_driver_restored(const char *address, int result, void *userdata) {
        Manager *m = userdata;
        Device *d;

        if (result < 0)
                log_warning_errno(result, "%s: could not give the device back to its driver: %m", address);
        else
                log_info("%s: original driver restored", address);

        restoring_remove(m, address);
        invalidate_address(m, address);
        /* A failed restore is not retried on the loop; the record goes, so a
         * restart does not retry it forever either. The log says what failed. */
        (void) lease_store_remove(m->store, address);
        d = inventory_find(m->inventory, address);
        if (!d)
                return;
        (void) inventory_refresh(m->inventory, d);
        emit_device_event(m, BROKER_EVENT_DEVICE_CHANGED, d, d->address);
}

static int record_driver_state(Manager *m, const Device *d, RecordState state, const char *original_driver,
                               const char *original_override) {
        LeaseRecord r = { .state = state, .managed = true };

        snprintf(r.address, sizeof(r.address), "%s", d->address);
        snprintf(r.mode, sizeof(r.mode), "none");
        snprintf(r.original_driver, sizeof(r.original_driver), "%s", original_driver ?: "");
        snprintf(r.original_override, sizeof(r.original_override), "%s", original_override ?: "");
        return lease_store_write(m->store, &r);
}

int manager_record_rebind(Manager *m, const Device *d, const char *original_driver, const char *original_override) {
        return record_driver_state(m, d, RECORD_BINDING, original_driver, original_override);
}

int manager_record_restoring(Manager *m, const Device *d, const char *original_driver,
                             const char *original_override) {
        return record_driver_state(m, d, RECORD_RESTORING, original_driver, original_override);
}

void manager_restore_driver(Manager *m, Device *d, const char *original_driver, const char *original_override) {
        int r;

        if (manager_is_restoring(m, d->address))
                return;
        r = strv_extend(&m->restoring, d->address);
        if (r < 0) {
                log_error("%s: out of memory; driver not restored", d->address);
                return;
        }
        invalidate_device_and_group(m, d);
        (void) record_driver_state(m, d, RECORD_RESTORING, original_driver, original_override);
        emit_device_event(m, BROKER_EVENT_DEVICE_CHANGED, d, d->address);
        r = driver_restore_async(m->event, d, original_driver, original_override, on_driver_restored, m);
        if (r < 0)
                on_driver_restored(d->address, r, m);
}

/* --- leases --- */

Lease *manager_leases(Manager *m) { return m->leases; }
LeaseStore *manager_lease_store(Manager *m) { return m->store; }

void manager_link_lease(Manager *m, Lease *l) {
        l->next = m->leases;
        m->leases = l;
        l->device->lease = l;
}

void manager_unlink_lease(Manager *m, Lease *l) {
        for (Lease **p = &m->leases; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        break;
                }
        if (l->session)
                session_forget_lease(l->session, l);
        if (l->device && l->device->lease == l)
                l->device->lease = NULL;
}

bool manager_is_shutting_down(Manager *m) { return m->shutting_down; }

void manager_begin_shutdown(Manager *m) {
        m->shutting_down = true;
}

/* --- inventory --- */

/* Whether iommufd can be used is decided at start and again when something
 * changes (a device event, a reload), not on every query: the real check opens
 * /dev/iommu, which allocates a context. While the answer is "no", it is
 * re-checked at most once a second, so loading the modules (which sends no PCI
 * event) is noticed. */
static void manager_recheck_kernel(Manager *m) {
        const char *reason = m->kernel->unsupported_reason();
        bool changed;

        changed = !streq_ptr(reason, m->kernel_reason);
        if (reason) {
                snprintf(m->kernel_reason_buf, sizeof(m->kernel_reason_buf), "%s", reason);
                m->kernel_reason = m->kernel_reason_buf;
        } else
                m->kernel_reason = NULL;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &m->kernel_checked);
        if (changed)
                invalidate_all(m);
}

static void on_inventory_event(Inventory *inv, Device *d, InventoryEvent event, void *userdata) {
        Manager *m = userdata;

        /* Indexes and what rules match may have moved. */
        access_cache_flush(m->access);
        manager_recheck_kernel(m);
        switch (event) {
        case INVENTORY_DEVICE_ADDED:
                emit_device_event(m, BROKER_EVENT_DEVICE_ADDED, d, d->address);
                break;
        case INVENTORY_DEVICE_CHANGED:
                emit_device_event(m, BROKER_EVENT_DEVICE_CHANGED, d, d->address);
                break;
        case INVENTORY_DEVICE_REMOVED:
                if (d->lease)
                        lease_end(d->lease, "device-removed");
                emit_device_event(m, BROKER_EVENT_DEVICE_REMOVED, NULL, d->address);
                break;
        }
}

/* --- lifecycle --- */

static int manager_load_policy(Manager *m, Policy **ret, char **ret_errors) {
        _cleanup_free_ char *errors = NULL;
        size_t errors_size = 0;
        FILE *f;
        int r;

        f = open_memstream(&errors, &errors_size);
        if (!f)
                return -ENOMEM;
        r = policy_load(m->policy_path, m->policy_dropin_dir, f, ret);
        fclose(f);
        if (r < 0 && errors && errors[0])
                log_error("policy: %s", errors);
        if (ret_errors)
                *ret_errors = TAKE_PTR(errors);
        return r;
}

int manager_reload_policy(Manager *m) {
        _cleanup_free_ char *errors = NULL;
        Policy *p;
        int r;

        r = manager_load_policy(m, &p, &errors);
        audit_policy_reload(r, r >= 0 ? policy_n_rules(p) : 0, errors);
        if (r < 0)
                return log_error_errno(r, "Keeping the previous policy: %m");
        policy_free(m->policy);
        m->policy = p;
        access_cache_flush(m->access);
        manager_recheck_kernel(m);
        log_info("policy reloaded: %zu rules", policy_n_rules(p));
        if (m->policy_reloaded)
                m->policy_reloaded(m, m->policy_reloaded_userdata);
        return 0;
}

void manager_set_policy_reload_handler(Manager *m, PolicyReloadHandler handler, void *userdata) {
        m->policy_reloaded = handler;
        m->policy_reloaded_userdata = userdata;
}

/* Open the lease records and re-adopt what they describe. Without a
 * store (tests, or /run not writable) leases end with the daemon. */
static int manager_start_leases(Manager *m, const ManagerConfig *config) {
        _cleanup_free_ bool *used = NULL;
        StoredFdSet set = { .fds = config->stored_fds, .names = config->stored_fd_names, .n = config->n_stored_fds };
        uint64_t max_id = 0;
        int r;

        if (config->lease_dir) {
                r = lease_store_open(config->lease_dir, &m->store);
                if (r < 0)
                        log_warning_errno(r, "Cannot open lease records in %s, leases will not survive a "
                                          "restart: %m", config->lease_dir);
        }
        used = calloc(set.n + 1, sizeof(bool));
        if (!used)
                return -ENOMEM;
        set.used = used;
        r = manager_adopt_leases(m, &set, &max_id);
        for (size_t i = 0; i < set.n; i++)
                safe_close(set.fds[i]);
        if (r < 0)
                return r;
        m->next_session_id = max_id + 1;
        return 0;
}

int manager_new(sd_event *event, const ManagerConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        driver_load_test_environment();
        m->kernel = config->kernel ?: &kernel_ops_real;
        m->max_devices_per_session = config->max_devices_per_session ?: 64;
        m->next_session_id = 1;
        m->policy_path = strdup(config->policy_path ?: POLICY_PATH);
        m->policy_dropin_dir = strdup(config->policy_dropin_dir ?: POLICY_DROPIN_DIR);
        m->access = access_cache_new();
        if (!m->policy_path || !m->policy_dropin_dir || !m->access)
                return -ENOMEM;
        r = quota_new(&config->quota, &m->quota);
        if (r < 0)
                return r;
        r = polkit_client_new(event, config->polkit_bus_address, config->polkit_timeout_usec, &m->polkit);
        if (r < 0)
                return r;

        if (config->policy)
                m->policy = config->policy;
        else {
                r = manager_load_policy(m, &m->policy, NULL);
                if (r < 0)
                        return r;
        }

        if (config->inventory) {
                m->inventory = config->inventory;
                inventory_set_handler(m->inventory, on_inventory_event, m);
        } else {
                r = inventory_new(&m->inventory, event, on_inventory_event, m);
                if (r < 0)
                        return log_error_errno(r, "Cannot enumerate PCI devices: %m");
        }

        manager_recheck_kernel(m);
        r = manager_start_leases(m, config);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        while (m->subscriptions)
                subscription_free(m->subscriptions);
        for (size_t i = 0; i < m->n_held; i++)
                free(m->held[i].reason);
        free(m->held);
        /* Leases outlive the daemon: their records and fds stay for the next
         * start. Only our memory goes. */
        while (m->leases) {
                Lease *l = m->leases;
                m->leases = l->next;
                if (l->device)
                        l->device->lease = NULL;
                lease_free(l);
        }
        (void) worker_kill_all(2 * 1000 * 1000);
        lease_store_free(m->store);
        inventory_free(m->inventory);
        policy_free(m->policy);
        access_cache_free(m->access);
        polkit_client_free(m->polkit);
        quota_free(m->quota);
        free(m->policy_path);
        free(m->policy_dropin_dir);
        strv_free(m->restoring);
        strv_free(m->rebinding);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

sd_event *manager_event(Manager *m) { return m->event; }
Inventory *manager_inventory(Manager *m) { return m->inventory; }
const Policy *manager_policy(Manager *m) { return m->policy; }
PolkitClient *manager_polkit(Manager *m) { return m->polkit; }
Quota *manager_quota(Manager *m) { return m->quota; }
const KernelOps *manager_kernel(Manager *m) { return m->kernel; }
unsigned manager_max_devices_per_session(Manager *m) { return m->max_devices_per_session; }
uint64_t manager_next_session_id(Manager *m) { return m->next_session_id++; }

const char *manager_kernel_unsupported_reason(Manager *m) {
        uint64_t now;

        if (m->kernel_reason && sd_event_now(m->event, CLOCK_MONOTONIC, &now) >= 0 &&
            now - m->kernel_checked >= 1000000)
                manager_recheck_kernel(m);
        return m->kernel_reason;
}

void manager_device_access(Manager *m, const Device *d, const Principal *viewer, DeviceAccess *ret) {
        size_t n;

        (void) inventory_devices(m->inventory, &n);
        access_cache_get(m->access, m->policy, viewer, d, inventory_index(m->inventory, d), n, ret);
}

void manager_device_access_at(Manager *m, const Device *d, size_t index, const Principal *viewer,
                              DeviceAccess *ret) {
        size_t n;

        (void) inventory_devices(m->inventory, &n);
        access_cache_get(m->access, m->policy, viewer, d, index, n, ret);
}

/* --- what a device looks like from outside --- */

/* The first member of d's group, other than d, that keeps the group from
 * being used through vfio. */
const Device *manager_group_blocker(Manager *m, const Device *d, char *const *also_requested) {
        for (char **member = d->group_members; member && *member; member++) {
                const Device *md;

                if (streq(*member, d->address) || strv_contains(also_requested, *member))
                        continue;
                md = inventory_find(m->inventory, *member);
                if (md && !device_driver_is_vfio_compatible(md))
                        return md;
        }
        return NULL;
}

/* The lease on any member of d's group, if another session holds one. */
const Lease *manager_group_lease(Manager *m, const Device *d, const Session *except) {
        for (char **member = d->group_members; member && *member; member++) {
                const Device *md = inventory_find(m->inventory, *member);

                if (md && md->lease && (!except || md->lease->session != except))
                        return md->lease;
        }
        return NULL;
}

DeviceState manager_device_state(Manager *m, const Device *d, const char **ret_reason) {
        const char *reason = NULL;
        const Device *blocker;
        DeviceState state = DEVICE_STATE_UNAVAILABLE;

        if (d->lease && d->lease->state == LEASE_STATE_LEASED)
                state = DEVICE_STATE_LEASED;
        else if (d->lease) {
                /* Seen by everyone: which processes hold it is for
                 * manager_device_lease_info() and a viewer allowed to know. */
                state = DEVICE_STATE_RELEASING;
                lease_describe(d->lease, false, m->reason_buf, sizeof(m->reason_buf));
                reason = m->reason_buf;
        } else if (manager_is_restoring(m, d->address)) {
                state = DEVICE_STATE_BUSY;
                reason = "the original driver is being restored";
        } else if (manager_is_rebinding(m, d->address)) {
                state = DEVICE_STATE_BUSY;
                reason = "rebinding to vfio-pci for a managed Acquire";
        }
        else if ((reason = manager_kernel_unsupported_reason(m)))
                ;
        else if (d->noiommu)
                reason = "noiommu group: the device has no IOMMU protection and is refused";
        else if (d->iommu_group < 0)
                reason = "no IOMMU group: the IOMMU is off or does not translate this device";
        else if (d->bridge) {
                snprintf(m->reason_buf, sizeof(m->reason_buf), "%s, which is never passed through",
                         device_bridge_kind(d->class));
                reason = m->reason_buf;
        }
        else if (manager_group_lease(m, d, NULL))
                reason = "another device of its IOMMU group is leased";
        else if ((blocker = manager_group_blocker(m, d, NULL))) {
                snprintf(m->reason_buf, sizeof(m->reason_buf),
                         "IOMMU group %d is not viable: %s is bound to %s", d->iommu_group, blocker->address,
                         blocker->driver);
                reason = m->reason_buf;
        } else {
                state = DEVICE_STATE_AVAILABLE;
                if (streq_ptr(d->driver, "vfio-pci") && !d->vfio_cdev)
                        reason = "vfio-pci without a cdev: the kernel lacks CONFIG_VFIO_DEVICE_CDEV";
                else if (!device_is_on_vfio(d)) {
                        snprintf(m->reason_buf, sizeof(m->reason_buf),
                                 "bound to %s: acquire with managed to rebind it to vfio-pci",
                                 d->driver ?: "no driver");
                        reason = m->reason_buf;
                }
        }

        if (ret_reason)
                *ret_reason = reason;
        return state;
}

bool manager_device_holder(Manager *m, const Device *d, const Principal *viewer, Holder *ret) {
        const Lease *l = d->lease;

        if (!l)
                return false;
        if (viewer && viewer->uid != 0 && viewer->uid != l->uid)
                return false;
        if (ret)
                *ret = (Holder) {
                        .session_id = l->session_id,
                        .uid = l->uid,
                        .pid = l->pid,
                        .unit = l->unit,
                };
        return true;
}

bool manager_device_lease_info(Manager *m, const Device *d, const Principal *viewer, LeaseInfo *ret) {
        const Lease *l = d->lease;
        bool show;

        if (!l)
                return false;
        show = !viewer || viewer->uid == 0 || viewer->uid == l->uid;
        *ret = (LeaseInfo) {
                .state = lease_state_to_string(l->state),
                .reason = l->state == LEASE_STATE_RELEASING ? l->reason : NULL,
                .held_by = show ? l->held_by : NULL,
        };
        return true;
}

int manager_get_device(Manager *m, const char *address, Device **ret, BrokerError *err) {
        char normalized[16];
        Device *d;

        if (!address || pci_address_normalize(address, normalized) < 0)
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                        "'%.64s' is not a PCI address (expected DDDD:BB:DD.F)", strna(address));
        d = inventory_find(m->inventory, normalized);
        if (!d)
                return broker_error_set(err, BROKER_ERROR_DEVICE_NOT_FOUND, normalized,
                                        "%s: no such PCI device", normalized);
        *ret = d;
        return 0;
}
