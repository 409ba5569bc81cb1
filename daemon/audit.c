/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "audit.h"
#include "util.h"

#define MAX_FIELDS 16

static FILE *test_stream;

void audit_set_stream(FILE *f) {
        test_stream = f;
}

/* The fields of one entry, each "NAME=value", built in place. */
typedef struct Entry {
        char *fields[MAX_FIELDS];
        size_t n;
        bool oom;
} Entry;

_printf_(2, 3)
static void entry_add(Entry *e, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (e->oom || e->n >= MAX_FIELDS)
                return;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                e->oom = true;
        else
                e->fields[e->n++] = s;
        va_end(ap);
}

static void entry_done(Entry *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->fields[i]);
}

/* Under systemd our stderr is the journal; outside it there may be none. */
static bool use_journal(void) {
        return !test_stream && getenv("JOURNAL_STREAM");
}

static void format_line(FILE *f, Entry *e) {
        const char *message = "";

        fputs("AUDIT", f);
        for (size_t i = 0; i < e->n; i++) {
                if (strncmp(e->fields[i], "MESSAGE=", 8) == 0)
                        message = e->fields[i] + 8;
                else if (strncmp(e->fields[i], "PRIORITY=", 9) != 0)
                        fprintf(f, " %s", e->fields[i]);
        }
        /* One line per entry: the loader's error lines become "; "-separated. */
        fputs(": ", f);
        for (const char *p = message; *p; p++)
                if (*p != '\n')
                        fputc(*p, f);
                else if (p[1])
                        fputs("; ", f);
        fputc('\n', f);
}

/* One write per entry: stderr is unbuffered, and a character at a time
 * costs a system call each (160 per lease in the fast-path bench). */
static void write_line(FILE *f, Entry *e) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&line, &size);

        if (!m) {
                format_line(f, e);
                fflush(f);
                return;
        }
        format_line(m, e);
        if (fclose(m) == 0 && line)
                fwrite(line, 1, size, f);
        fflush(f);
}

static void entry_send(Entry *e) {
        struct iovec iov[MAX_FIELDS];

        if (e->oom) {
                fprintf(stderr, "<3>AUDIT: out of memory, an audit entry was lost\n");
                return;
        }
        if (use_journal()) {
                for (size_t i = 0; i < e->n; i++)
                        iov[i] = (struct iovec) { .iov_base = e->fields[i], .iov_len = strlen(e->fields[i]) };
                if (sd_journal_sendv(iov, (int) e->n) >= 0)
                        return;
        }
        write_line(test_stream ?: stderr, e);
}

static void add_lease_fields(Entry *e, const AuditLease *l) {
        entry_add(e, "DEVICE=%s", l->device);
        entry_add(e, "HOLDER_UID=%u", (unsigned) l->uid);
        entry_add(e, "HOLDER_PID=%d", (int) l->pid);
        if (l->unit)
                entry_add(e, "HOLDER_UNIT=%s", l->unit);
        entry_add(e, "SESSION=%" PRIu64, l->session);
        entry_add(e, "MODE=%s", l->mode ?: "unknown");
        entry_add(e, "RULE=%s", l->rule ?: "unknown");
        entry_add(e, "MANAGED=%s", l->managed ? "yes" : "no");
}

static void audit_lease(const char *message_id, const AuditLease *l, const char *extra_field,
                        const char *message) {
        Entry e = {};

        entry_add(&e, "MESSAGE_ID=%s", message_id);
        entry_add(&e, "PRIORITY=%d", LOG_NOTICE);
        entry_add(&e, "MESSAGE=%s", message);
        add_lease_fields(&e, l);
        if (extra_field)
                entry_add(&e, "%s", extra_field);
        entry_send(&e);
        entry_done(&e);
}

void audit_grant(const AuditLease *l) {
        char message[256];

        snprintf(message, sizeof(message), "%s granted to uid %u (pid %d, session %" PRIu64 ") in %s mode by %s",
                 l->device, (unsigned) l->uid, (int) l->pid, l->session, l->mode ?: "unknown",
                 l->rule ?: "an unknown rule");
        audit_lease(AUDIT_MESSAGE_GRANT, l, NULL, message);
}

void audit_release(const AuditLease *l) {
        char message[256];

        snprintf(message, sizeof(message), "%s released by uid %u (pid %d, session %" PRIu64 ")", l->device,
                 (unsigned) l->uid, (int) l->pid, l->session);
        audit_lease(AUDIT_MESSAGE_RELEASE, l, NULL, message);
}

void audit_lease_end(const AuditLease *l, const char *reason) {
        char message[256], field[96];

        snprintf(message, sizeof(message), "lease of %s by uid %u (pid %d, session %" PRIu64 ") ended: %s",
                 l->device, (unsigned) l->uid, (int) l->pid, l->session, strna(reason));
        snprintf(field, sizeof(field), "REASON=%s", strna(reason));
        audit_lease(AUDIT_MESSAGE_LEASE_END, l, field, message);
}

void audit_revoke(const AuditLease *l, uid_t by_uid, const char *reason) {
        char message[320], field[64];

        snprintf(message, sizeof(message), "%s revoked from uid %u (pid %d, session %" PRIu64 ") by uid %u: %s",
                 l->device, (unsigned) l->uid, (int) l->pid, l->session, (unsigned) by_uid, strna(reason));
        snprintf(field, sizeof(field), "REVOKED_BY_UID=%u", (unsigned) by_uid);
        audit_lease(AUDIT_MESSAGE_REVOKE, l, field, message);
}

void audit_policy_reload(int result, size_t n_rules, const char *errors) {
        Entry e = {};

        entry_add(&e, "MESSAGE_ID=%s", AUDIT_MESSAGE_POLICY_RELOAD);
        entry_add(&e, "PRIORITY=%d", result < 0 ? LOG_ERR : LOG_NOTICE);
        if (result < 0)
                entry_add(&e, "MESSAGE=policy reload failed, keeping the previous policy: %s",
                          errors && *errors ? errors : strerror(-result));
        else
                entry_add(&e, "MESSAGE=policy reloaded: %zu rules", n_rules);
        entry_add(&e, "RESULT=%s", result < 0 ? "failed" : "ok");
        if (result >= 0)
                entry_add(&e, "RULES=%zu", n_rules);
        entry_send(&e);
        entry_done(&e);
}
