/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Lease records (format, torn and partial files, atomic store) and the
 * reconciliation on start, over the fake kernel and a temp directory. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core-internal.h"
#include "lease-store.h"
#include "lease.h"
#include "manager.h"
#include "test.h"

static LeaseRecord sample(void) {
        LeaseRecord r = {
                .state = RECORD_LEASED, .dev_id = 3, .hwpt_id = 5, .devnum_major = 511, .devnum_minor = 2,
                .session_id = 42, .uid = 1001, .pid = 1234, .pid_starttime = 987654, .managed = true,
        };
        strcpy(r.address, "0000:00:04.0");
        strcpy(r.reason, "");
        strcpy(r.mode, "attached");
        strcpy(r.unit, "qemu@vm1.service");
        strcpy(r.original_driver, "e1000e");
        strcpy(r.original_override, "pci-stub");
        return r;
}

static char *format(const LeaseRecord *r) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        CHECK(lease_record_format(r, f) == 0);
        fclose(f);
        return text;
}

static void test_format(void) {
        LeaseRecord r = sample(), back;
        char *text = format(&r);

        printf("# record text round-trips\n");
        CHECK_INT(lease_record_parse(text, &back), 0);
        CHECK(memcmp(&r, &back, sizeof(r)) == 0);

        printf("# torn or partial records are refused\n");
        for (size_t cut = 0; cut < strlen(text) - 1; cut += 7) {
                char *part = strndup(text, cut);
                CHECK_MSG(lease_record_parse(part, &back) == -EBADMSG, "cut at %zu refused", cut);
                free(part);
        }
        char *junk;
        CHECK(asprintf(&junk, "%sADDRESS=0000:00:05.0\n", text) > 0);
        CHECK_INT(lease_record_parse(junk, &back), -EBADMSG);  /* something after END */
        free(junk);
        CHECK_INT(lease_record_parse(text + 1, &back), -EBADMSG);  /* no version line */
        CHECK_INT(lease_record_parse(NULL, &back), -EBADMSG);
        char *bad = strdup(text);
        char *state = strstr(bad, "STATE=leased");
        memcpy(state, "STATE=lolled", 12);
        CHECK_INT(lease_record_parse(bad, &back), -EBADMSG);
        free(bad);
        bad = strdup(text);
        memcpy(strstr(bad, "ADDRESS=0000:00:04.0"), "ADDRESS=0000:zz:04.0", 20);
        CHECK_INT(lease_record_parse(bad, &back), -EBADMSG);
        free(bad);

        printf("# values with control characters are never written\n");
        strcpy(r.unit, "evil\nSTATE=restoring");
        char *t = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&t, &size);
        CHECK_INT(lease_record_format(&r, f), -EINVAL);
        fclose(f);
        free(t);
        free(text);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void write_raw(const char *dir, const char *name, const char *text) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        fputs(text, f);
        fclose(f);
}

static bool exists(const char *dir, const char *name) {
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return access(path, F_OK) == 0;
}

static void test_store(const char *dir) {
        LeaseStore *s;
        LeaseRecord r = sample(), *loaded = NULL;
        size_t n = 0;

        printf("# atomic store: write, load, torn files and leftovers removed\n");
        CHECK_INT(lease_store_open(dir, &s), 0);
        CHECK_INT(lease_store_write(s, &r), 0);
        CHECK(exists(dir, "0000:00:04.0") && !exists(dir, ".0000:00:04.0.tmp"));
        write_raw(dir, ".0000:00:05.0.tmp", "IOMMUFD_BROKER_LEASE=1\nADDRESS=0000:00:05.0\n");
        write_raw(dir, "0000:00:06.0", "IOMMUFD_BROKER_LEASE=1\nADDRESS=0000:00:06.0\nSTATE=lea");
        write_raw(dir, "not-an-address", "hello");
        CHECK_INT(lease_store_load(s, &loaded, &n), 0);
        CHECK_INT(n, 1);
        CHECK(n == 1 && memcmp(&loaded[0], &r, sizeof(r)) == 0);
        CHECK(!exists(dir, ".0000:00:05.0.tmp") && !exists(dir, "0000:00:06.0") && !exists(dir, "not-an-address"));
        free(loaded);

        r.state = RECORD_RELEASING;
        strcpy(r.reason, "client-exited");
        CHECK_INT(lease_store_write(s, &r), 0);
        CHECK_INT(lease_store_load(s, &loaded, &n), 0);
        CHECK(n == 1 && loaded[0].state == RECORD_RELEASING && streq(loaded[0].reason, "client-exited"));
        free(loaded);
        CHECK_INT(lease_store_remove(s, "0000:00:04.0"), 0);
        CHECK_INT(lease_store_remove(s, "../etc/passwd"), -EINVAL);
        CHECK_INT(lease_store_load(s, &loaded, &n), 0);
        CHECK_INT(n, 0);
        free(loaded);
        CHECK_INT(lease_store_write(NULL, &r), 0);      /* no store: no-op */

        printf("# a new record is created whole under its name; an existing one is replaced\n");
        write_raw(dir, "0000:00:04.0", "IOMMUFD_BROKER_LEASE=1\nADDRESS=0000:00:04.0\nSTATE=bin");
        r.state = RECORD_LEASED;
        CHECK_INT(lease_store_write(s, &r), 0);         /* replaces, does not append or fail */
        CHECK(!exists(dir, ".0000:00:04.0.tmp"));
        CHECK_INT(lease_store_load(s, &loaded, &n), 0);
        CHECK(n == 1 && loaded[0].state == RECORD_LEASED);
        free(loaded);
        CHECK_INT(lease_store_remove(s, "0000:00:04.0"), 0);
        CHECK_INT(lease_store_write(s, &r), 0);         /* created afresh */
        CHECK_INT(lease_store_load(s, &loaded, &n), 0);
        CHECK(n == 1 && memcmp(&loaded[0], &r, sizeof(r)) == 0);
        free(loaded);
        CHECK_INT(lease_store_remove(s, "0000:00:04.0"), 0);
        lease_store_free(s);

        CHECK(pid_starttime(getpid()) > 0 && pid_starttime(0) == 0);
        {
                /* Field 22 of /proc/self/stat, counted another way. */
                char buf[1024], *p, *save = NULL;
                unsigned long long start = 0;
                FILE *f = fopen("/proc/self/stat", "re");
                CHECK(f && fgets(buf, sizeof(buf), f));
                fclose(f);
                p = strtok_r(strrchr(buf, ')') + 1, " ", &save);
                for (int field = 3; p && field < 22; field++)
                        p = strtok_r(NULL, " ", &save);
                if (p)
                        start = strtoull(p, NULL, 10);
                CHECK_INT(pid_starttime(getpid()), start);
        }
}

/* fsync() where it means something: not on tmpfs (no backing store). */
static void test_sync(const char *dir) {
        char shm[] = "/dev/shm/test-lease-store.XXXXXX";
        struct statfs sfs;
        LeaseStore *s;

        printf("# fsync only off tmpfs\n");
        CHECK_INT(lease_store_open(dir, &s), 0);
        CHECK(statfs(dir, &sfs) == 0);
        CHECK(lease_store_syncs(s) == ((unsigned long) sfs.f_type != TMPFS_MAGIC));
        lease_store_free(s);
        if (!mkdtemp(shm) || statfs(shm, &sfs) < 0 || (unsigned long) sfs.f_type != TMPFS_MAGIC) {
                printf("# no tmpfs at /dev/shm: skipped\n");
                (void) rmdir(shm);
                return;
        }
        CHECK_INT(lease_store_open(shm, &s), 0);
        CHECK(!lease_store_syncs(s));
        lease_store_free(s);
        (void) rmdir(shm);
}

static Device *make_device(const char *address, int minor) {
        Device *d = calloc(1, sizeof(*d));

        snprintf(d->address, sizeof(d->address), "%s", address);
        d->syspath = strdup("/nonexistent");
        d->driver = strdup("vfio-pci");
        d->iommu_group = minor + 1;
        d->vfio_cdev = strdup("vfio0");
        d->vfio_devnum = makedev(511, minor);
        strv_extend(&d->group_members, address);
        return d;
}

static void test_reconcile(sd_event *e, const char *dir) {
        LeaseStore *s;
        LeaseRecord alive = sample(), dead = sample(), binding = sample(), gone = sample();
        Inventory *inv;
        Manager *m;
        const char *why;

        printf("# reconciliation on start\n");
        CHECK_INT(lease_store_open(dir, &s), 0);
        /* held by this very process: re-adopted as leased, same holder */
        alive.pid = getpid();
        alive.pid_starttime = pid_starttime(getpid());
        alive.managed = false;
        strcpy(alive.mode, "unbound");
        alive.dev_id = 0;
        CHECK_INT(lease_store_write(s, &alive), 0);
        /* the holder is gone and nothing holds the device: ends at once */
        strcpy(dead.address, "0000:00:05.0");
        dead.pid = 999999;
        dead.pid_starttime = 1;
        dead.managed = false;
        dead.session_id = 77;
        strcpy(dead.mode, "unbound");
        dead.dev_id = 0;
        CHECK_INT(lease_store_write(s, &dead), 0);
        /* a crash mid-rebind: restore (fails on the fake tree), record dropped */
        strcpy(binding.address, "0000:00:06.0");
        binding.state = RECORD_BINDING;
        CHECK_INT(lease_store_write(s, &binding), 0);
        /* a device that is no more */
        strcpy(gone.address, "0000:00:1e.0");
        CHECK_INT(lease_store_write(s, &gone), 0);
        lease_store_free(s);

        inventory_new_static(&inv, NULL, NULL);
        inventory_add(inv, make_device("0000:00:04.0", 0));
        inventory_add(inv, make_device("0000:00:05.0", 1));
        inventory_add(inv, make_device("0000:00:06.0", 2));
        CHECK_INT(manager_new(e, &(ManagerConfig) { .kernel = &kernel_ops_fake, .inventory = inv,
                                                    .policy_path = "/nonexistent/policy.json",
                                                    .policy_dropin_dir = "/nonexistent/policy.d",
                                                    .lease_dir = dir }, &m), 0);
        Device *four = inventory_find(inv, "0000:00:04.0"), *five = inventory_find(inv, "0000:00:05.0");
        Device *six = inventory_find(inv, "0000:00:06.0");
        Holder h;
        CHECK(four->lease && four->lease->state == LEASE_STATE_LEASED);
        CHECK(manager_device_state(m, four, &why) == DEVICE_STATE_LEASED);
        CHECK(manager_device_holder(m, four, NULL, &h) && h.pid == getpid() && h.uid == 1001 && h.session_id == 42 &&
              streq_ptr(h.unit, "qemu@vm1.service"));
        CHECK(!exists(dir, "0000:00:1e.0"));
        CHECK(manager_next_session_id(m) > 77);

        for (int i = 0; i < 300 && (five->lease || manager_is_restoring(m, six->address)); i++)
                (void) sd_event_run(e, 10 * 1000);
        CHECK_MSG(!five->lease, "lease whose holder died while we were down ended");
        CHECK(!exists(dir, "0000:00:05.0"));
        CHECK_MSG(!manager_is_restoring(m, six->address) && !exists(dir, "0000:00:06.0"),
                  "cut-short rebind was restored and its record dropped");
        CHECK(exists(dir, "0000:00:04.0"));

        printf("# a stop keeps the leases for the next start\n");
        manager_begin_shutdown(m);
        manager_free(m);
        CHECK(exists(dir, "0000:00:04.0"));
}

int main(void) {
        char dir[] = "/tmp/test-lease-store.XXXXXX";
        char leases[600], leases2[600];
        sd_event *e;

        if (!mkdtemp(dir))
                return 1;
        snprintf(leases, sizeof(leases), "%s/leases", dir);
        snprintf(leases2, sizeof(leases2), "%s/leases2", dir);
        sd_event_new(&e);

        test_format();
        test_store(leases);
        test_sync(leases);
        test_reconcile(e, leases2);

        sd_event_unref(e);
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return test_result();
}
