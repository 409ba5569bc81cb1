/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>

#include "core-internal.h"
#include "driver.h"
#include "log.h"
#include "rebind.h"

struct Rebind {
        Manager *manager;
        char address[16];
        char *original_driver;          /* NULL: none */
        char *original_override;        /* NULL: none */
        Worker *worker;                 /* NULL once its process is gone */
        RebindDone done;                /* NULL once called, or once the caller let go */
        void *userdata;
        bool dropped;                   /* the caller let go: free once the worker is gone */
        bool give_back;                 /* ... and restore the driver then */
};

const char *rebind_address(const Rebind *rb) {
        return rb->address;
}

void rebind_origin(const Rebind *rb, ManagedOrigin *ret) {
        *ret = (ManagedOrigin) {
                .address = rb->address,
                .driver = rb->original_driver,
                .override = rb->original_override,
        };
}

static void rebind_free(Rebind *rb) {
        free(rb->original_driver);
        free(rb->original_override);
        free(rb);
}

void rebind_unmark(Rebind *rb) {
        manager_set_rebinding(rb->manager, rb->address, false);
}

/* The worker is gone: hand the device to the restore path. */
static void give_back_now(Rebind *rb) {
        Manager *m = rb->manager;
        Device *d = inventory_find(manager_inventory(m), rb->address);

        rebind_unmark(rb);
        if (manager_is_shutting_down(m)) {
                /* Nothing new starts now; the "binding" record makes the next
                 * start restore it. */
                log_info("%s: stopping mid-rebind; the next start restores its driver", rb->address);
                return;
        }
        if (!d) {
                (void) lease_store_remove(manager_lease_store(m), rb->address);
                return;
        }
        log_info("%s: giving the device back to %s", rb->address, rb->original_driver ?: "no driver");
        manager_restore_driver(m, d, rb->original_driver, rb->original_override);
}

static void on_bind_done(int result, const char *output, void *userdata) {
        Rebind *rb = userdata;
        RebindDone done = rb->done;
        Device *d = inventory_find(manager_inventory(rb->manager), rb->address);

        if (result >= 0 && !d)
                result = -ENODEV;
        if (result >= 0) {
                (void) inventory_refresh(manager_inventory(rb->manager), d);
                if (!device_is_on_vfio(d))
                        result = -ENODEV;
        }
        if (result < 0)
                log_warning_errno(result, "%s: rebinding to vfio-pci failed: %m", rb->address);
        else
                log_info("%s: bound to vfio-pci (was %s)", rb->address, rb->original_driver ?: "no driver");
        rb->done = NULL;
        if (done)
                done(rb, result, rb->userdata);
}

static void on_bind_gone(bool exited, void *userdata) {
        Rebind *rb = userdata;

        rb->worker = NULL;
        if (!rb->dropped)
                return;         /* the caller has the result and still holds rb */
        /* At shutdown (!exited) nothing new starts: the "binding" record makes
         * the next start give the device back. */
        if (rb->give_back && exited)
                give_back_now(rb);
        rebind_free(rb);
}

static Rebind *rebind_drop(Rebind *rb, bool give_back) {
        if (!rb)
                return NULL;
        rb->dropped = true;
        rb->give_back = give_back;
        rb->done = NULL;
        if (rb->worker) {
                /* Killed if still running; on_bind_gone() finishes. */
                if (give_back)
                        worker_cancel(rb->worker);
                return NULL;
        }
        if (give_back)
                give_back_now(rb);
        else
                rebind_unmark(rb);
        rebind_free(rb);
        return NULL;
}

Rebind *rebind_keep(Rebind *rb) {
        if (rb)
                rebind_unmark(rb);
        return rebind_drop(rb, false);
}

Rebind *rebind_give_back(Rebind *rb) {
        return rebind_drop(rb, true);
}

int rebind_start(Manager *m, Device *d, RebindDone done, void *userdata, Rebind **ret) {
        Rebind *rb;
        int r;

        rb = calloc(1, sizeof(*rb));
        if (!rb)
                return -ENOMEM;
        *rb = (Rebind) { .manager = m, .done = done, .userdata = userdata };
        snprintf(rb->address, sizeof(rb->address), "%s", d->address);
        if (d->driver && !(rb->original_driver = strdup(d->driver))) {
                r = -ENOMEM;
                goto fail;
        }
        r = driver_read_override(d, &rb->original_override);
        if (r < 0)
                goto fail;

        /* Persist the way back first: a crash mid-rebind is undone on next start. */
        r = manager_record_rebind(m, d, rb->original_driver, rb->original_override);
        if (r < 0)
                goto fail;
        r = driver_bind_vfio_async(manager_event(m), d, on_bind_done, rb, &rb->worker);
        if (r < 0) {
                (void) lease_store_remove(manager_lease_store(m), rb->address);
                goto fail;
        }
        worker_set_gone(rb->worker, on_bind_gone);
        manager_set_rebinding(m, rb->address, true);
        log_info("%s: rebinding from %s to vfio-pci in a worker", rb->address, rb->original_driver ?: "no driver");
        *ret = rb;
        return 0;

fail:
        rebind_free(rb);
        return r;
}
