/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "audit.h"
#include "fmt.h"
#include "util.h"

#define MAX_FIELDS 16

static FILE *test_stream;

void audit_set_stream(FILE *f) {
        test_stream = f;
}

/* The fields of one entry, each "NAME=value", formatted one after another
 * into one buffer: an entry costs no allocation unless it is unusually
 * long. Offsets, not pointers, because the buffer may move when it grows. */
typedef struct Entry {
        char *text;
        size_t used, size;
        size_t start[MAX_FIELDS], len[MAX_FIELDS];
        size_t n;
        bool oom;
        char inline_text[1024];
} Entry;

static void entry_init(Entry *e) {
        e->text = e->inline_text;
        e->size = sizeof(e->inline_text);
}

static bool entry_grow(Entry *e, size_t need) {
        size_t size = e->size * 2 > e->used + need ? e->size * 2 : e->used + need;
        char *text = e->text == e->inline_text ? malloc(size) : realloc(e->text, size);

        if (!text)
                return false;
        if (e->text == e->inline_text)
                memcpy(text, e->inline_text, e->used);
        e->text = text;
        e->size = size;
        return true;
}

_printf_(2, 3)
static void entry_add(Entry *e, const char *fmt, ...) {
        va_list ap;
        int n;

        if (e->oom || e->n >= MAX_FIELDS)
                return;
        for (int attempt = 0; attempt < 2; attempt++) {
                va_start(ap, fmt);
                n = vsnprintf(e->text + e->used, e->size - e->used, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        e->oom = true;
                        return;
                }
                if ((size_t) n < e->size - e->used) {
                        e->start[e->n] = e->used;
                        e->len[e->n++] = (size_t) n;
                        e->used += (size_t) n + 1;
                        return;
                }
                if (attempt > 0 || !entry_grow(e, (size_t) n + 1)) {
                        e->oom = true;
                        return;
                }
        }
}

/* NAME=value without printf; num is used when value is NULL. */
static void entry_add_field(Entry *e, const char *name, const char *value, bool negative, uint64_t num) {
        char digits[24];
        size_t name_len = strlen(name), value_len;

        if (e->oom || e->n >= MAX_FIELDS)
                return;
        if (!value) {
                FmtBuf b = fmt_buf(digits, sizeof(digits));
                if (negative)
                        fmt_mem(&b, "-", 1);
                fmt_u64(&b, num);
                value = digits;
        }
        value_len = strlen(value);
        if (name_len + value_len + 1 > e->size - e->used && !entry_grow(e, name_len + value_len + 1)) {
                e->oom = true;
                return;
        }
        memcpy(e->text + e->used, name, name_len);
        memcpy(e->text + e->used + name_len, value, value_len + 1);
        e->start[e->n] = e->used;
        e->len[e->n++] = name_len + value_len;
        e->used += name_len + value_len + 1;
}

static void entry_add_str(Entry *e, const char *name, const char *value) {
        entry_add_field(e, name, value ?: "", false, 0);
}

static void entry_add_u64(Entry *e, const char *name, uint64_t v) {
        entry_add_field(e, name, NULL, false, v);
}

static void entry_add_i64(Entry *e, const char *name, int64_t v) {
        entry_add_field(e, name, NULL, v < 0, v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v);
}

static void entry_done(Entry *e) {
        if (e->text != e->inline_text)
                free(e->text);
}

static const char *entry_field(const Entry *e, size_t i) {
        return e->text + e->start[i];
}

/* Under systemd our stderr is the journal; outside it there may be none. */
static bool use_journal(void) {
        static int journal = -1;

        if (journal < 0)
                journal = !!getenv("JOURNAL_STREAM");
        return !test_stream && journal;
}

/* Appends n bytes at *len, as far as they fit; *len counts them all. */
static void put(char *line, size_t size, size_t *len, const char *p, size_t n) {
        if (*len + 1 < size)
                memcpy(line + *len, p, n < size - 1 - *len ? n : size - 1 - *len);
        *len += n;
}

/* "AUDIT NAME=value ...: message", one line: the loader's error lines
 * become "; "-separated. Copied in spans, not a character at a time: every
 * Acquire and Release writes one. */
static size_t format_line(const Entry *e, char *line, size_t size) {
        const char *message = "";
        size_t n = 0;

        put(line, size, &n, "AUDIT", 5);
        for (size_t i = 0; i < e->n; i++) {
                const char *f = entry_field(e, i);

                if (strncmp(f, "MESSAGE=", 8) == 0)
                        message = f + 8;
                else if (strncmp(f, "PRIORITY=", 9) != 0) {
                        put(line, size, &n, " ", 1);
                        put(line, size, &n, f, e->len[i]);
                }
        }
        put(line, size, &n, ": ", 2);
        for (const char *p = message, *nl; *p; p = nl + 1) {
                nl = strchrnul(p, '\n');
                put(line, size, &n, p, (size_t) (nl - p));
                if (!*nl)
                        break;
                if (nl[1])
                        put(line, size, &n, "; ", 2);
        }
        put(line, size, &n, "\n", 1);
        if (size > 0)
                line[n < size ? n : size - 1] = 0;
        return n;
}

/* One write per entry: stderr is unbuffered, and a character at a time
 * costs a system call each. */
static void write_line(FILE *f, const Entry *e) {
        char stack[2048];
        _cleanup_free_ char *heap = NULL;
        char *line = stack;
        size_t n = format_line(e, stack, sizeof(stack));

        if (n >= sizeof(stack)) {
                heap = malloc(n + 1);
                if (heap) {
                        line = heap;
                        (void) format_line(e, heap, n + 1);
                } else
                        n = sizeof(stack) - 1;  /* cut short rather than lost */
        }
        fwrite(line, 1, n, f);
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
                        iov[i] = (struct iovec) { .iov_base = e->text + e->start[i], .iov_len = e->len[i] };
                if (sd_journal_sendv(iov, (int) e->n) >= 0)
                        return;
        }
        write_line(test_stream ?: stderr, e);
}

static void add_lease_fields(Entry *e, const AuditLease *l) {
        entry_add_str(e, "DEVICE=", l->device);
        entry_add_u64(e, "HOLDER_UID=", (uint64_t) l->uid);
        entry_add_i64(e, "HOLDER_PID=", (int64_t) l->pid);
        if (l->unit)
                entry_add_str(e, "HOLDER_UNIT=", l->unit);
        entry_add_u64(e, "SESSION=", l->session);
        entry_add_str(e, "MODE=", l->mode ?: "unknown");
        entry_add_str(e, "RULE=", l->rule ?: "unknown");
        entry_add_str(e, "MANAGED=", l->managed ? "yes" : "no");
}

/* Every Acquire and Release writes one of these: no printf in it. */
static void audit_lease(const char *message_id, const AuditLease *l, const char *extra_field,
                        const char *message) {
        Entry e = {};

        entry_init(&e);
        entry_add_str(&e, "MESSAGE_ID=", message_id);
        entry_add_i64(&e, "PRIORITY=", LOG_NOTICE);
        entry_add_str(&e, "MESSAGE=", message);
        add_lease_fields(&e, l);
        if (extra_field)
                entry_add_str(&e, "", extra_field);
        entry_send(&e);
        entry_done(&e);
}

/* "uid U (pid P, session S)" */
static void fmt_holder(FmtBuf *b, const AuditLease *l) {
        fmt_str(b, "uid ");
        fmt_u64(b, (uint64_t) l->uid);
        fmt_str(b, " (pid ");
        fmt_i64(b, (int64_t) l->pid);
        fmt_str(b, ", session ");
        fmt_u64(b, l->session);
        fmt_str(b, ")");
}

void audit_grant(const AuditLease *l) {
        char message[256];
        FmtBuf b = fmt_buf(message, sizeof(message));

        fmt_str(&b, l->device);
        fmt_str(&b, " granted to ");
        fmt_holder(&b, l);
        fmt_str(&b, " in ");
        fmt_str(&b, l->mode ?: "unknown");
        fmt_str(&b, " mode by ");
        fmt_str(&b, l->rule ?: "an unknown rule");
        audit_lease(AUDIT_MESSAGE_GRANT, l, NULL, message);
}

void audit_release(const AuditLease *l) {
        char message[256];
        FmtBuf b = fmt_buf(message, sizeof(message));

        fmt_str(&b, l->device);
        fmt_str(&b, " released by ");
        fmt_holder(&b, l);
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

        entry_init(&e);
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
