/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/sysmacros.h>

#include <assert.h>

#include "audit.h"
#include "core-internal.h"
#include "lease-store.h"
#include "lease.h"
#include "driver.h"
#include "fmt.h"
#include "log.h"

struct Session {
        Manager *manager;
        uint64_t id;
        SessionPin *pin;
        Principal *principal;
        uint32_t ioas_id;               /* allocated on first attached acquire */
        size_t n_leases;                /* leases in state leased; they sit in the manager's list */
};

uint64_t session_id(const Session *s) { return s->id; }
const Principal *session_principal(const Session *s) { return s->principal; }
size_t session_n_leases(const Session *s) { return s->n_leases; }

SessionPin *session_pin_ref(SessionPin *p) {
        if (p)
                p->n_ref++;
        return p;
}

/* The kept request eventfds, and their names in the fd store unless the
 * daemon stops. */
static void pin_drop_requests(SessionPin *p, bool remove_stored) {
        for (size_t i = 0; i < p->n_idle; i++) {
                char kind[FDSTORE_KIND_MAX];

                sd_event_source_disable_unref(p->idle[i].source);
                safe_close(p->idle[i].fd);
                fdstore_request_kind(kind, p->idle[i].address);
                if (remove_stored)
                        (void) fdstore_remove(kind, p->session_id);
        }
        p->n_idle = 0;
}

SessionPin *session_pin_unref(SessionPin *p, bool remove_stored) {
        if (!p || --p->n_ref > 0)
                return NULL;
        pin_drop_requests(p, remove_stored);
        sd_event_source_disable_unref(p->holder_source);
        safe_close(p->pidfd);
        safe_close(p->iommufd);
        if (remove_stored && p->pushed) {
                (void) fdstore_remove("iommufd", p->session_id);
                (void) fdstore_remove("pidfd", p->session_id);
        }
        free(p);
        return NULL;
}

static Lease *pin_first_leased(SessionPin *p) {
        for (Lease *l = manager_leases(p->manager); l; l = l->next)
                if (l->pin == p && l->state == LEASE_STATE_LEASED)
                        return l;
        return NULL;
}

static int on_holder_exit(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        SessionPin *p = session_pin_ref(userdata);      /* the last lease may end below */
        Lease *l;

        log_debug("session %" PRIu64 ": the holder exited", p->session_id);
        /* The pidfd stays readable now: off until another lease comes. */
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        p->holder_exited = true;
        while ((l = pin_first_leased(p)))
                lease_release(l, "client-exited");
        session_pin_unref(p, true);
        return 0;
}

int session_pin_watch_holder(SessionPin *p) {
        if (p->pidfd < 0)
                return 0;
        if (!p->holder_source)
                return sd_event_add_io(manager_event(p->manager), &p->holder_source, p->pidfd, EPOLLIN,
                                       on_holder_exit, p);
        /* A lease made after the holder exited (someone else has the
         * connection) is released at the next iteration, as before. */
        return p->holder_exited ? sd_event_source_set_enabled(p->holder_source, SD_EVENT_ON) : 0;
}

bool session_pin_keep_request(SessionPin *p, const char *address, int fd, sd_event_source *source) {
        uint64_t count;

        if (!p || p->session_gone || fd < 0 || p->n_idle >= SESSION_IDLE_REQUESTS)
                return false;
        /* A request that came as the device was let go means nothing now. */
        if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
                return false;
        if (source)
                (void) sd_event_source_set_userdata(source, NULL);     /* no lease: drain only */
        FmtBuf b = fmt_buf(p->idle[p->n_idle].address, sizeof(p->idle[0].address));
        fmt_str(&b, address);
        p->idle[p->n_idle].fd = fd;
        p->idle[p->n_idle++].source = source;
        return true;
}

/* A kept request eventfd for address and its source, or -EBADF. */
static int pin_take_request(SessionPin *p, const char *address, sd_event_source **ret_source) {
        for (size_t i = 0; i < p->n_idle; i++)
                if (streq(p->idle[i].address, address)) {
                        int fd = p->idle[i].fd;
                        *ret_source = p->idle[i].source;
                        p->idle[i] = p->idle[--p->n_idle];
                        return fd;
                }
        return -EBADF;
}

/* A request eventfd the Acquire does not use after all: kept if it can be,
 * so that the one in the fd store under its name stays the one we use. */
static void request_fd_put_back(Session *s, const char *address, int *fd, sd_event_source **source) {
        char kind[FDSTORE_KIND_MAX];

        if (*fd < 0)
                return;
        if (session_pin_keep_request(s->pin, address, *fd, *source)) {
                *fd = -EBADF;
                *source = NULL;
                return;
        }
        *source = sd_event_source_disable_unref(*source);
        *fd = safe_close(*fd);
        fdstore_request_kind(kind, address);
        (void) fdstore_remove(kind, s->id);
}

void session_forget_lease(Session *s, Lease *l) {
        assert(l->session == s);
        l->session = NULL;
        s->n_leases--;
}

static Lease *session_first_lease(Session *s) {
        for (Lease *l = manager_leases(s->manager); l; l = l->next)
                if (l->session == s)
                        return l;
        return NULL;
}

/* Every lease goes to releasing: it ends once the kernel says its device is free. */
static void session_release_all(Session *s, const char *reason) {
        Lease *l;

        while ((l = session_first_lease(s)))
                lease_release(l, reason);
}

int session_new(Manager *m, Principal *principal, Session **ret) {
        Session *s;

        s = calloc(1, sizeof(*s));
        if (s)
                s->pin = calloc(1, sizeof(*s->pin));
        if (!s || !s->pin) {
                free(s);
                principal_free(principal);
                return -ENOMEM;
        }
        *s = (Session) {
                .manager = m,
                .id = manager_next_session_id(m),
                .pin = s->pin,
                .principal = principal,
        };
        *s->pin = (SessionPin) { .n_ref = 1, .manager = m, .session_id = s->id, .iommufd = -EBADF,
                                 .pidfd = -EBADF };
        *ret = s;
        return 0;
}

void session_destroy(Session *s) {
        Lease *l;

        if (!s)
                return;
        if (manager_is_shutting_down(s->manager))
                /* The daemon stops, the holder does not: its leases stay as
                 * they are, for the next start to re-adopt. */
                while ((l = session_first_lease(s)))
                        session_forget_lease(s, l);
        else
                session_release_all(s, "disconnected");
        /* Leases still releasing keep the pin; nobody can reuse these. */
        s->pin->session_gone = true;
        pin_drop_requests(s->pin, !manager_is_shutting_down(s->manager));
        session_pin_unref(s->pin, !manager_is_shutting_down(s->manager));
        principal_free(s->principal);
        free(s);
}

/* --- acquire --- */

/* Everything one device needs during an acquire, before it becomes a lease. */
typedef struct Pending {
        Device *device;
        int fd;
        uint32_t dev_id;
        uint32_t hwpt_id;
        bool rebound;
        char *original_driver;
        char *original_override;
        int request_fd;
        sd_event_source *request_source;        /* a kept one's, still in the epoll set */
        Lease *lease;                   /* allocated before anything is handed out */
} Pending;

static void pending_undo(Session *s, Pending *p) {
        p->fd = safe_close(p->fd);
        request_fd_put_back(s, p->device->address, &p->request_fd, &p->request_source);
        /* A device acquire-job.c rebound goes back through it. */
        free(p->original_driver);
        free(p->original_override);
        p->original_driver = p->original_override = NULL;
        p->lease = lease_free(p->lease);
}

static int resolve_devices(Session *s, const AcquireRequest *req, Pending *pending, size_t n,
                           char ***ret_addresses, BrokerError *err) {
        _cleanup_strv_free_ char **addresses = NULL;
        int r;

        for (size_t i = 0; i < n; i++) {
                Device *d;

                r = manager_get_device(s->manager, req->devices[i], &d, err);
                if (r < 0)
                        return r;
                if (strv_contains(addresses, d->address))
                        return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, d->address,
                                                "%s is listed twice", d->address);
                r = strv_extend(&addresses, d->address);
                if (r < 0)
                        return r;
                pending[i] = (Pending) { .device = d, .fd = -EBADF, .request_fd = -EBADF };
        }
        *ret_addresses = TAKE_PTR(addresses);
        return 0;
}

static int check_policy(Session *s, const AcquireRequest *req, const Device *d, BrokerError *err) {
        PolicyDecision decision = {};

        policy_check(manager_policy(s->manager), s->principal, d, req->mode, req->managed, &decision);
        switch (decision.verdict) {
        case POLICY_ALLOW:
                return 0;
        case POLICY_ALLOW_WITH_POLKIT:
                if (strv_contains(req->polkit_authorized, decision.polkit_action))
                        return 0;
                return broker_error_set(err, BROKER_ERROR_PERMISSION_DENIED, d->address,
                                        "%s: %s requires polkit action %s, which was not granted", d->address,
                                        strna(decision.rule), strna(decision.polkit_action));
        case POLICY_DENY:
        default:
                return broker_error_set(err, BROKER_ERROR_PERMISSION_DENIED, d->address, "%s: %s", d->address,
                                        decision.reason[0] ? decision.reason : "denied by policy");
        }
}

/* Every rule that needs no kernel call, checked for all devices before any is touched. */
static int check_device(Session *s, const AcquireRequest *req, const Device *d, char *const *requested,
                        BrokerError *err) {
        Manager *m = s->manager;
        const char *why;
        const Device *blocker;
        const Lease *group_lease;

        if (d->lease) {
                char state[256];

                lease_describe(d->lease, s->principal->uid == 0 || s->principal->uid == d->lease->uid, state,
                               sizeof(state));
                return broker_error_set(err, BROKER_ERROR_DEVICE_BUSY, d->address, "%s is %s%s: %s", d->address,
                                        lease_state_to_string(d->lease->state),
                                        d->lease->session == s ? " by this session" : "", state);
        }
        if ((why = manager_kernel_unsupported_reason(m)))
                return broker_error_set(err, BROKER_ERROR_KERNEL_UNSUPPORTED, d->address, "%s: %s", d->address, why);
        if (d->noiommu)
                return broker_error_set(err, BROKER_ERROR_NOIOMMU_REFUSED, d->address,
                                        "%s is in a vfio-noiommu group: without IOMMU protection it would give "
                                        "the client DMA access to all memory", d->address);
        if (d->iommu_group < 0)
                return broker_error_set(err, BROKER_ERROR_DEVICE_UNAVAILABLE, d->address,
                                        "%s has no IOMMU group: the IOMMU is off or does not translate it",
                                        d->address);
        if (d->bridge)
                return broker_error_set(err, BROKER_ERROR_DEVICE_UNAVAILABLE, d->address,
                                        "%s is %s, which is never passed through", d->address,
                                        device_bridge_kind(d->class));
        if (manager_is_restoring(m, d->address))
                return broker_error_set(err, BROKER_ERROR_DEVICE_BUSY, d->address,
                                        "%s is busy: still being given back to its original driver", d->address);
        if (manager_is_rebinding(m, d->address))
                return broker_error_set(err, BROKER_ERROR_DEVICE_BUSY, d->address,
                                        "%s is busy: rebinding to vfio-pci for a managed Acquire", d->address);
        if (req->managed && !device_is_on_vfio(d) && driver_sriov_numvfs(d) > 0)
                return broker_error_set(err, BROKER_ERROR_DEVICE_UNAVAILABLE, d->address,
                                        "%s is an SR-IOV physical function with VFs enabled: unbinding its "
                                        "driver would pull the VFs from their users; managed acquire refused",
                                        d->address);

        int r = check_policy(s, req, d, err);
        if (r < 0)
                return r;

        group_lease = manager_group_lease(m, d, s);
        if (group_lease)
                return broker_error_set(err, BROKER_ERROR_DEVICE_BUSY, d->address,
                                        "%s: IOMMU group %d is in use by another session (%s is %s); "
                                        "a group is never split", d->address, d->iommu_group,
                                        group_lease->address, lease_state_to_string(group_lease->state));
        blocker = manager_group_blocker(m, d, requested);
        if (blocker)
                return broker_error_set(err, BROKER_ERROR_GROUP_NOT_VIABLE, d->address,
                                        "%s: IOMMU group %d is not viable: member %s is bound to host driver %s; "
                                        "unbind it or acquire it too", d->address, d->iommu_group,
                                        blocker->address, blocker->driver);

        if (!device_is_on_vfio(d) && !req->managed) {
                if (streq_ptr(d->driver, "vfio-pci"))
                        return broker_error_set(err, BROKER_ERROR_KERNEL_UNSUPPORTED, d->address,
                                                "%s is on vfio-pci but has no vfio cdev: the kernel lacks "
                                                "CONFIG_VFIO_DEVICE_CDEV", d->address);
                return broker_error_set(err, BROKER_ERROR_DEVICE_UNAVAILABLE, d->address,
                                        "%s is bound to %s, not vfio-pci: acquire it with managed, or bind it "
                                        "to vfio-pci first", d->address, d->driver ?: "no driver");
        }
        return 0;
}

static int ensure_iommufd(Session *s, BrokerError *err) {
        const KernelOps *k = manager_kernel(s->manager);
        int fd;

        if (s->pin->iommufd >= 0)
                return 0;
        fd = k->open_iommufd(policy_memlock_accounting(manager_policy(s->manager)));
        if (fd == -ENOENT || fd == -ENODEV)
                return broker_error_set(err, BROKER_ERROR_KERNEL_UNSUPPORTED, NULL,
                                        "cannot open /dev/iommu: the kernel has no iommufd");
        if (fd < 0)
                return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, NULL,
                                        "cannot set up an iommufd context with per-process memlock accounting: %s",
                                        strerror(-fd));
        s->pin->iommufd = fd;
        return 0;
}

static int ensure_ioas(Session *s, BrokerError *err) {
        int r;

        if (s->ioas_id != 0)
                return 0;
        r = manager_kernel(s->manager)->ioas_alloc(s->pin->iommufd, &s->ioas_id);
        if (r < 0)
                return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, NULL, "IOMMU_IOAS_ALLOC failed: %s",
                                        strerror(-r));
        return 0;
}

/* A managed device was moved to vfio-pci by acquire-job.c: the lease
 * remembers where it came from, to give it back when it ends. */
static int take_rebound(const AcquireRequest *req, Pending *p, BrokerError *err) {
        Device *d = p->device;

        if (!device_is_on_vfio(d))
                return broker_error_set(err, BROKER_ERROR_DRIVER_BIND_FAILED, d->address,
                                        "%s: bound to %s, not rebound to vfio-pci", d->address,
                                        d->driver ?: "no driver");
        for (size_t i = 0; i < req->n_rebound; i++) {
                const ManagedOrigin *o = &req->rebound[i];

                if (!streq(o->address, d->address))
                        continue;
                if ((o->driver && !(p->original_driver = strdup(o->driver))) ||
                    (o->override && !(p->original_override = strdup(o->override))))
                        return -ENOMEM;
                p->rebound = true;
        }
        return 0;
}

static int open_and_prepare(Session *s, const AcquireRequest *req, Pending *p, BrokerError *err) {
        const KernelOps *k = manager_kernel(s->manager);
        Device *d = p->device;
        int r;

        p->fd = k->open_device(d);
        if (p->fd == -ENXIO)
                return broker_error_set(err, BROKER_ERROR_DEVICE_UNAVAILABLE, d->address,
                                        "%s: its vfio cdev %s (%u:%u) is gone or now belongs to another "
                                        "device (rebound meanwhile?); not handed out", d->address,
                                        strna(d->vfio_cdev), major(d->vfio_devnum), minor(d->vfio_devnum));
        if (p->fd < 0)
                return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, d->address, "%s: cannot open %s: %s",
                                        d->address, strna(d->vfio_cdev), strerror(-p->fd));
        if (req->mode == ACQUIRE_MODE_UNBOUND)
                return 0;

        r = k->bind(p->fd, s->pin->iommufd, &p->dev_id);
        if (r == -EBUSY)
                return broker_error_set(err, BROKER_ERROR_DEVICE_BUSY, d->address,
                                        "%s: VFIO_DEVICE_BIND_IOMMUFD refused (EBUSY): its legacy group "
                                        "/dev/vfio/%d is open elsewhere", d->address, d->iommu_group);
        if (r == -EINVAL)
                return broker_error_set(err, BROKER_ERROR_DEVICE_BUSY, d->address,
                                        "%s: VFIO_DEVICE_BIND_IOMMUFD refused (EINVAL): another open file of "
                                        "the device is bound", d->address);
        if (r < 0)
                return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, d->address,
                                        "%s: VFIO_DEVICE_BIND_IOMMUFD failed: %s", d->address, strerror(-r));
        /* sysfs gave the IOMMU's kind before anyone acquired it; now that the
         * client's bind allows it, the kernel's own answer replaces it, once:
         * the IOMMU behind a device does not change. */
        if (!d->hw_info.from_kernel) {
                IommuHwInfo info;
                if (k->hw_info(s->pin->iommufd, p->dev_id, &info) >= 0 && info.valid) {
                        d->hw_info = info;
                        d->hw_info.from_kernel = true;
                        device_invalidate_json(d);
                }
        }

        /* Learn of hot unplug while the client holds the device. Not fatal:
         * the removal uevent ends the lease too, just later. */
        p->request_fd = pin_take_request(s->pin, d->address, &p->request_source);
        if (p->request_fd < 0)
                p->request_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->request_fd >= 0 && k->set_request_eventfd(p->fd, p->request_fd) < 0)
                request_fd_put_back(s, d->address, &p->request_fd, &p->request_source);

        if (req->mode == ACQUIRE_MODE_ATTACHED) {
                r = k->attach(p->fd, s->ioas_id, &p->hwpt_id);
                if (r < 0)
                        return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, d->address,
                                                "%s: VFIO_DEVICE_ATTACH_IOMMUFD_PT to IOAS %u failed: %s",
                                                d->address, s->ioas_id, strerror(-r));
        }
        return 0;
}

/* As snprintf("%s") would, without printf (every Acquire). */
static void copy_address(char *dst, size_t size, const char *src) {
        FmtBuf b = fmt_buf(dst, size);
        fmt_str(&b, src);
}

static Lease *lease_new(Session *s, const AcquireRequest *req, Pending *p) {
        PolicyDecision decision = {};
        Lease *l = calloc(1, sizeof(*l));

        if (!l)
                return NULL;
        *l = (Lease) {
                .manager = s->manager,
                .session = s,
                .device = p->device,
                .devnum = p->device->vfio_devnum,
                .state = LEASE_STATE_LEASED,
                .mode = req->mode,
                .dev_id = p->dev_id,
                .hwpt_id = p->hwpt_id,
                .session_id = s->id,
                .uid = s->principal->uid,
                .pid = s->principal->pid,
                .pidfd = -EBADF,
                .pin = session_pin_ref(s->pin),
                .iommufd = s->pin->iommufd,     /* the pin's: it outlives the session with the lease */
                .request_fd = -EBADF,
        };
        /* The rule's name is kept: a policy reload may drop the rule itself. */
        policy_check(manager_policy(s->manager), s->principal, p->device, req->mode, req->managed, &decision);
        if (decision.rule && !(l->rule = strdup(decision.rule)))
                return lease_free(l);      /* gives the pin back */
        copy_address(l->address, sizeof(l->address), p->device->address);
        /* A copy that outlives the session, made once for all its leases:
         * a lease may be releasing long after the connection is gone. */
        if (s->principal->pidfd >= 0 && s->pin->pidfd < 0)
                s->pin->pidfd = fcntl(s->principal->pidfd, F_DUPFD_CLOEXEC, 3);
        l->pidfd = s->pin->pidfd;
        if ((s->principal->pidfd >= 0 && l->pidfd < 0) ||
            (s->principal->unit && !(l->unit = strdup(s->principal->unit))))
                return lease_free(l);
        return l;
}

/* Cannot fail: everything that can was done before. */
static void lease_link(Lease *l, Pending *p) {
        Session *s = l->session;
        int r;

        l->managed = p->rebound;
        l->original_driver = TAKE_PTR(p->original_driver);
        l->original_override = TAKE_PTR(p->original_override);
        l->request_fd = TAKE_FD(p->request_fd);
        l->request_source = TAKE_PTR(p->request_source);
        if (l->request_source)
                (void) sd_event_source_set_userdata(l->request_source, l);
        p->rebound = false;
        r = lease_watch_request(l);
        if (r < 0)
                log_warning_errno(r, "%s: cannot watch unplug requests: %m", l->address);
        r = lease_watch_holder(l);
        if (r < 0)
                log_warning_errno(r, "%s: cannot watch the holder's pidfd: %m", l->address);
        manager_link_lease(s->manager, l);
        s->n_leases++;
        (void) lease_persist(l);
}

/* The largest "memlock" the deciding rules give, raised on the caller now
 * that everything else worked (so a failed Acquire changes no limit). */
static int grant_memlock(Session *s, const AcquireRequest *req, Pending *pending, size_t n, uint64_t *ret,
                         BrokerError *err) {
        uint64_t want = 0;
        char buf[32];
        int r;

        for (size_t i = 0; i < n; i++) {
                PolicyDecision decision = {};

                policy_check(manager_policy(s->manager), s->principal, pending[i].device, req->mode, req->managed,
                             &decision);
                if (decision.memlock > want)
                        want = decision.memlock;
        }
        *ret = 0;
        if (want == 0)
                return 0;
        r = memlock_raise(s->principal->pidfd, want, ret);
        if (r < 0)
                return broker_error_set(err, BROKER_ERROR_KERNEL_ERROR, NULL,
                                        "cannot raise the caller's RLIMIT_MEMLOCK to %s as policy says: %s",
                                        memlock_format(want, buf),
                                        r == -EBADF ? "no pidfd for the caller" : strerror(-r));
        log_info("session %" PRIu64 ": RLIMIT_MEMLOCK of pid %d raised to at least %s", s->id,
                 (int) s->principal->pid, memlock_format(want, buf));
        return 0;
}

static int build_reply(Session *s, Pending *pending, size_t n, AcquireReply *ret) {
        AcquiredDevice *devices;

        devices = calloc(n, sizeof(*devices));
        if (!devices)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                devices[i] = (AcquiredDevice) {
                        .fd = TAKE_FD(pending[i].fd),
                        .dev_id = pending[i].dev_id,
                        .hwpt_id = pending[i].hwpt_id,
                };
                copy_address(devices[i].address, sizeof(devices[i].address), pending[i].device->address);
        }
        *ret = (AcquireReply) {
                .session_id = s->id,
                .iommufd = s->pin->iommufd,    /* borrowed: both front ends send a copy */
                .ioas_id = s->ioas_id,
                .n_devices = n,
                .devices = devices,
        };
        return 0;
}

static int acquire_validate(Session *s, const AcquireRequest *req, size_t *ret_n, BrokerError *err) {
        size_t n = strv_length(req->devices);
        unsigned max = manager_max_devices_per_session(s->manager);

        if (n == 0)
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL, "no devices given");
        if (req->mode < 0 || req->mode >= _ACQUIRE_MODE_MAX)
                return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL, "unknown acquire mode");
        if (n > max || s->n_leases + n > max)
                return broker_error_set(err, BROKER_ERROR_LIMIT_EXCEEDED, NULL,
                                        "a session may hold at most %u devices (holds %zu, asked for %zu more)",
                                        max, s->n_leases, n);
        *ret_n = n;
        return 0;
}

/* Validate, resolve and check every device: into *ret_pending (n entries). */
static int acquire_check(Session *s, const AcquireRequest *req, Pending **ret_pending, size_t *ret_n,
                         BrokerError *err) {
        _cleanup_strv_free_ char **addresses = NULL;
        _cleanup_free_ Pending *pending = NULL;
        size_t n = 0;
        int r;

        r = acquire_validate(s, req, &n, err);
        if (r < 0)
                return r;
        pending = calloc(n, sizeof(*pending));
        if (!pending)
                return -ENOMEM;
        r = resolve_devices(s, req, pending, n, &addresses, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = check_device(s, req, pending[i].device, addresses, err);
                if (r < 0)
                        return r;
        }
        *ret_pending = TAKE_PTR(pending);
        *ret_n = n;
        return 0;
}

int session_check_acquire(Session *s, const AcquireRequest *req, BrokerError *err) {
        _cleanup_free_ Pending *pending = NULL;
        size_t n;

        return acquire_check(s, req, &pending, &n, err);
}

int session_acquire(Session *s, const AcquireRequest *req, AcquireReply *ret, BrokerError *err) {
        _cleanup_free_ Pending *pending = NULL;
        uint64_t memlock_limit = 0;
        size_t n = 0;
        int r;

        r = acquire_check(s, req, &pending, &n, err);
        if (r < 0)
                return r;

        r = ensure_iommufd(s, err);
        if (r >= 0 && req->mode == ACQUIRE_MODE_ATTACHED)
                r = ensure_ioas(s, err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (req->managed)
                        r = take_rebound(req, &pending[i], err);
                if (r >= 0)
                        r = open_and_prepare(s, req, &pending[i], err);
        }
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!(pending[i].lease = lease_new(s, req, &pending[i])))
                        r = -ENOMEM;
        if (r >= 0)
                r = grant_memlock(s, req, pending, n, &memlock_limit, err);
        if (r >= 0)
                r = build_reply(s, pending, n, ret);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        pending_undo(s, &pending[i]);
                return r;
        }

        ret->memlock_limit = memlock_limit;
        for (size_t i = 0; i < n; i++)
                lease_link(TAKE_PTR(pending[i].lease), &pending[i]);
        if (!fdstore_available())
                log_notice("session %" PRIu64 ": no fd store (not started by systemd): if the broker restarts, "
                           "these leases are recovered from their records only", s->id);
        for (size_t i = 0; i < n; i++) {
                Device *d = pending[i].device;

                AuditLease record = lease_audit_record(d->lease);

                /* The audit entry says the same, at notice level. */
                log_debug("%s: leased to session %" PRIu64 " (uid %u, pid %d) in %s mode", d->address, s->id,
                          (unsigned) s->principal->uid, (int) s->principal->pid, acquire_mode_to_string(req->mode));
                audit_grant(&record);
                manager_emit(s->manager, &(BrokerEvent) {
                        .type = BROKER_EVENT_LEASE_ACQUIRED,
                        .address = d->address,
                        .device = d,
                        .session_id = s->id,
                        .holder_uid = s->principal->uid,
                });
                manager_emit(s->manager, &(BrokerEvent) {
                        .type = BROKER_EVENT_DEVICE_CHANGED, .address = d->address, .device = d });
        }
        return 0;
}

void acquire_reply_done(AcquireReply *r) {
        if (!r)
                return;
        r->iommufd = -EBADF;            /* the session's */
        for (size_t i = 0; i < r->n_devices; i++)
                r->devices[i].fd = safe_close(r->devices[i].fd);
        free(r->devices);
        r->devices = NULL;
        r->n_devices = 0;
}

/* --- release --- */

static Lease *session_find_lease(Session *s, const char *address) {
        for (Lease *l = manager_leases(s->manager); l; l = l->next)
                if (l->session == s && streq(l->address, address))
                        return l;
        return NULL;
}

int session_release(Session *s, char **devices, BrokerError *err) {
        _cleanup_strv_free_ char **addresses = NULL;
        int r;

        /* No list and an empty list mean the same on both front ends: all. */
        if (!devices || !devices[0]) {
                session_release_all(s, "released");
                return 0;
        }

        /* Check everything first so that a bad entry releases nothing. */
        for (char **i = devices; *i; i++) {
                char address[16];

                if (pci_address_normalize(*i, address) < 0)
                        return broker_error_set(err, BROKER_ERROR_INVALID_PARAMETER, NULL,
                                                "'%.64s' is not a PCI address (expected DDDD:BB:DD.F)", *i);
                if (!session_find_lease(s, address))
                        return broker_error_set(err, BROKER_ERROR_NOT_HELD, address,
                                                "%s is not leased to this session", address);
                if (!strv_contains(addresses, address)) {
                        r = strv_extend(&addresses, address);
                        if (r < 0)
                                return r;
                }
        }
        for (char **a = addresses; a && *a; a++)
                lease_release(session_find_lease(s, *a), "released");
        return 0;
}
