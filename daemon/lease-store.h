/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "fdstore.h"
#include "util.h"

/*
 * What must survive a restart or a crash, one record per device under
 * /run/iommufd-broker/leases/<address>, complete before any fd it covers is
 * handed out: a new record is created whole under its name (O_EXCL, one
 * write), an existing one replaced atomically (temporary file, rename).
 * fsync() only where it means something, i.e. not on tmpfs (see design.md). The fds that go with it (the
 * session's iommufd, the holder's pidfd) live in the service manager's fd
 * store under FDNAME=iommufd-<session> and pidfd-<session>, and each lease's
 * vfio request eventfd under request.<address>-<session>.
 *
 * A record is also written before a managed rebind starts ("binding") and
 * kept after the lease ended until the driver is back ("restoring"), so a
 * crash at any point leaves enough to put the device back as it was.
 */
typedef enum RecordState {
        RECORD_BINDING,         /* rebinding to vfio-pci; no fd handed out yet */
        RECORD_LEASED,
        RECORD_RELEASING,
        RECORD_RESTORING,       /* ended; the original driver is being restored */
        _RECORD_STATE_MAX,
} RecordState;

const char *record_state_to_string(RecordState s);
RecordState record_state_from_string(const char *s);

typedef struct LeaseRecord {
        char address[16];
        RecordState state;
        char reason[64];
        char mode[16];          /* acquire_mode_to_string() */
        uint32_t dev_id, hwpt_id;
        unsigned devnum_major, devnum_minor;
        uint64_t session_id;
        uid_t uid;
        pid_t pid;
        uint64_t pid_starttime; /* /proc/<pid>/stat field 22: tells a reused pid apart */
        char unit[256];
        char rule[128];         /* the policy rule that granted it ("" if unknown) */
        bool managed;
        char original_driver[64];       /* "" : none */
        char original_override[64];     /* "" : none */
} LeaseRecord;

/* Text form. Parsing refuses anything torn or partial (-EBADMSG): the
 * record must start with the version line and end with "END=1". */
int lease_record_format(const LeaseRecord *r, FILE *f);
int lease_record_parse(const char *text, LeaseRecord *ret);

typedef struct LeaseStore LeaseStore;

/* dir: NULL for /run/iommufd-broker/leases. Creates it. */
int lease_store_open(const char *dir, LeaseStore **ret);
LeaseStore *lease_store_free(LeaseStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(LeaseStore *, lease_store_free);

/* Whether writes are followed by fsync(): false on tmpfs and ramfs. */
bool lease_store_syncs(const LeaseStore *s);

/* All of these accept a NULL store and then do nothing. */
int lease_store_write(LeaseStore *s, const LeaseRecord *r);
int lease_store_remove(LeaseStore *s, const char *address);

/* Every valid record; torn, partial or misnamed ones are logged and removed,
 * leftover temporary files too. */
int lease_store_load(LeaseStore *s, LeaseRecord **ret, size_t *ret_n);

uint64_t pid_starttime(pid_t pid);     /* 0 if the process is gone */
