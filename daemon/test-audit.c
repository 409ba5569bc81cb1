/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "test.h"
#include "util.h"

static char *buf;
static size_t buf_size;
static FILE *stream;

static void capture(void) {
        free(buf);
        buf = NULL;
        stream = open_memstream(&buf, &buf_size);
        audit_set_stream(stream);
}

static const char *captured(void) {
        fflush(stream);
        fclose(stream);
        stream = NULL;
        audit_set_stream(NULL);
        return buf ?: "";
}

static const AuditLease lease = {
        .device = "0000:03:00.0",
        .session = 7,
        .uid = 1001,
        .pid = 4242,
        .unit = "vm-a.service",
        .mode = "unbound",
        .rule = "policy.json rule 2",
        .managed = 1,
};

static void check_line(const char *line, const char *id, const char *const *want) {
        /* Too short for a MESSAGE_ID (also tells gcc's sanitizer build that
         * line + 17 is inside it). */
        if (!line || strlen(line) < 17 + 32) {
                CHECK_MSG(false, "entry has MESSAGE_ID %s: \"%s\" is too short", id, line ?: "(null)");
                return;
        }
        CHECK_MSG(strncmp(line, "AUDIT MESSAGE_ID=", 17) == 0 && strncmp(line + 17, id, 32) == 0,
                  "entry has MESSAGE_ID %s: %.*s", id, (int) strcspn(line, "\n"), line);
        CHECK_MSG(strchr(line, '\n') == line + strlen(line) - 1, "one line: %.*s", (int) strcspn(line, "\n"), line);
        for (const char *const *w = want; *w; w++)
                CHECK_MSG(strstr(line, *w) != NULL, "\"%s\" in %.*s", *w, (int) strcspn(line, "\n"), line);
}

static void test_lease_entries(void) {
        static const char *const fields[] = { " DEVICE=0000:03:00.0", " HOLDER_UID=1001", " HOLDER_PID=4242",
                                              " HOLDER_UNIT=vm-a.service", " SESSION=7", " MODE=unbound",
                                              " RULE=policy.json rule 2", NULL };
        AuditLease no_unit = lease;

        capture();
        audit_grant(&lease);
        check_line(captured(), AUDIT_MESSAGE_GRANT, fields);
        CHECK(strstr(buf, ": 0000:03:00.0 granted to uid 1001") != NULL);

        capture();
        audit_release(&lease);
        check_line(captured(), AUDIT_MESSAGE_RELEASE, fields);

        capture();
        audit_lease_end(&lease, "client-exited");
        check_line(captured(), AUDIT_MESSAGE_LEASE_END, fields);
        CHECK(strstr(buf, " REASON=client-exited") != NULL);

        capture();
        audit_revoke(&lease, 0, "admin request");
        check_line(captured(), AUDIT_MESSAGE_REVOKE, fields);
        CHECK(strstr(buf, " REVOKED_BY_UID=0") != NULL);

        /* No unit: no HOLDER_UNIT= field at all. */
        no_unit.unit = NULL;
        no_unit.rule = NULL;
        capture();
        audit_grant(&no_unit);
        CHECK(strstr(captured(), "HOLDER_UNIT") == NULL);
        CHECK(strstr(buf, " RULE=unknown") != NULL);
}

static void test_policy_reload(void) {
        capture();
        audit_policy_reload(0, 3, NULL);
        check_line(captured(), AUDIT_MESSAGE_POLICY_RELOAD, (const char *const[]) { " RESULT=ok", " RULES=3", NULL });

        capture();
        audit_policy_reload(-EINVAL, 0, "a.json: rule 1: bad\nb.json: rule 2: worse\n");
        check_line(captured(), AUDIT_MESSAGE_POLICY_RELOAD,
                   (const char *const[]) { " RESULT=failed", "a.json: rule 1: bad; b.json: rule 2: worse", NULL });
}

/* Entries longer than the inline buffers: nothing is cut. */
static void test_long_entry(void) {
        char rule[5000], errors[6000], want[6000];
        AuditLease l = lease;

        memset(rule, 'r', sizeof(rule) - 1);
        rule[sizeof(rule) - 1] = 0;
        l.rule = rule;
        capture();
        audit_grant(&l);
        snprintf(want, sizeof(want), " RULE=%s MANAGED=yes: ", rule);
        check_line(captured(), AUDIT_MESSAGE_GRANT, (const char *const[]) { " DEVICE=0000:03:00.0", want, NULL });

        for (size_t i = 0; i + 1 < sizeof(errors); i++)
                errors[i] = i % 100 == 99 ? '\n' : 'e';
        errors[sizeof(errors) - 1] = 0;
        capture();
        audit_policy_reload(-EINVAL, 0, errors);
        CHECK_INT(strlen(captured()), strlen("AUDIT MESSAGE_ID=") + 32 + strlen(" RESULT=failed: ") +
                                              strlen("policy reload failed, keeping the previous policy: ") +
                                              59 * 101 + 99 + 1);
}

static void test_ids_distinct(void) {
        const char *ids[] = { AUDIT_MESSAGE_GRANT, AUDIT_MESSAGE_RELEASE, AUDIT_MESSAGE_REVOKE,
                              AUDIT_MESSAGE_LEASE_END, AUDIT_MESSAGE_POLICY_RELOAD };

        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                CHECK_MSG(strlen(ids[i]) == 32 && strspn(ids[i], "0123456789abcdef") == 32, "id %s is 128 bits hex",
                          ids[i]);
                for (size_t j = 0; j < i; j++)
                        CHECK(!streq(ids[i], ids[j]));
        }
}

int main(void) {
        test_lease_entries();
        test_policy_reload();
        test_long_entry();
        test_ids_distinct();
        free(buf);
        return test_result();
}
