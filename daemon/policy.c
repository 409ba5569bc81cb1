/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "log.h"
#include "memlock.h"
#include "policy-internal.h"

#define HEX_CHARS "0123456789abcdef"
#define UNIT_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.@"

/* Where we are while loading, so every error line can say so. */
typedef struct Loader {
        FILE *errors;
        const char *file;               /* in error lines */
        const char *display;            /* in rule names */
        size_t rule;                    /* 1-based; 0 outside a rule */
        unsigned n_errors;
} Loader;

const char *const policy_mode_names[_ACQUIRE_MODE_MAX] = {
        [ACQUIRE_MODE_UNBOUND] = "unbound",
        [ACQUIRE_MODE_BOUND] = "bound",
        [ACQUIRE_MODE_ATTACHED] = "attached",
};

const char *acquire_mode_to_string(AcquireMode m) {
        if (m < 0 || m >= _ACQUIRE_MODE_MAX)
                return NULL;
        return policy_mode_names[m];
}

AcquireMode acquire_mode_from_string(const char *s) {
        for (int m = 0; s && m < _ACQUIRE_MODE_MAX; m++)
                if (streq(policy_mode_names[m], s))
                        return (AcquireMode) m;
        return _ACQUIRE_MODE_INVALID;
}

static void rule_done(Rule *r) {
        free(r->name);
        strv_free(r->addresses);
        strv_free(r->ids);
        strv_free(r->classes);
        free(r->iommu_groups.v);
        free(r->uids.v);
        free(r->gids.v);
        strv_free(r->units);
        free(r->polkit_action);
}

Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_rules; i++)
                rule_done(&p->rules[i]);
        free(p->rules);
        free(p);
        return NULL;
}

int policy_new_default(Policy **ret) {
        Policy *p = calloc(1, sizeof(Policy));

        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

size_t policy_n_rules(const Policy *p) {
        return p ? p->n_rules : 0;
}

MemlockAccounting policy_memlock_accounting(const Policy *p) {
        return p ? p->memlock_accounting : MEMLOCK_ACCOUNTING_PROCESS;
}

/* ---- loading ---- */

_printf_(2, 3)
static int report(Loader *l, const char *fmt, ...) {
        char msg[512], where[32] = "";
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        l->n_errors++;

        if (l->rule > 0)
                snprintf(where, sizeof(where), "rule %zu: ", l->rule);
        if (l->errors)
                fprintf(l->errors, "%s: %s%s\n", l->file, where, msg);
        else
                log_error("%s: %s%s", l->file, where, msg);
        return -EINVAL;
}

static bool has_glob(const char *s) {
        return strpbrk(s, "*?[") != NULL;
}

/* A fnmatch() pattern over `chars`, with *, ? and [...] classes. Rejects what
 * fnmatch would silently take literally (a lone "[" or "]") and backslashes. */
static bool glob_valid(const char *g, const char *chars) {
        if (!*g)
                return false;
        for (const char *p = g; *p; p++) {
                const char *start;

                if (*p == '*' || *p == '?')
                        continue;
                if (*p != '[') {
                        if (!strchr(chars, *p) || *p == '\\')
                                return false;
                        continue;
                }
                p++;
                if (*p == '!' || *p == '^')
                        p++;
                for (start = p; *p && *p != ']'; p++)
                        if ((!strchr(chars, *p) && *p != '-') || *p == '\\')
                                return false;
                if (*p != ']' || p == start)
                        return false;
        }
        return true;
}

static void ascii_lowercase(char *s) {
        for (; *s; s++)
                *s = (char) tolower((unsigned char) *s);
}

/* Each normalizer checks one list element, reports what is wrong, and returns
 * the form we match against (lowercase; a plain address in full form). */
typedef int (*normalize_fn)(Loader *l, const char *key, const char *in, char **ret);

static int normalize_address(Loader *l, const char *key, const char *in, char **ret) {
        _cleanup_free_ char *s = strdup(in);
        char full[16];

        if (!s)
                return -ENOMEM;
        ascii_lowercase(s);
        if (!has_glob(s)) {
                if (pci_address_normalize(s, full) < 0)
                        return report(l, "\"%s\": \"%s\" is not a PCI address", key, in);
                return free_and_strdup(ret, full);
        }
        if (!glob_valid(s, HEX_CHARS ":."))
                return report(l, "\"%s\": bad glob \"%s\" (expected e.g. \"0000:03:*\")", key, in);
        *ret = TAKE_PTR(s);
        return 0;
}

/* One hex field of an id or class glob: a glob, or exactly `digits` hex digits. */
static bool hex_field_valid(const char *s, size_t digits) {
        if (!glob_valid(s, HEX_CHARS))
                return false;
        return has_glob(s) || strlen(s) == digits;
}

static int normalize_id(Loader *l, const char *key, const char *in, char **ret) {
        _cleanup_free_ char *s = strdup(in);
        char *colon;

        if (!s)
                return -ENOMEM;
        ascii_lowercase(s);
        colon = strchr(s, ':');
        if (colon) {
                *colon = 0;
                if (hex_field_valid(s, 4) && hex_field_valid(colon + 1, 4)) {
                        *colon = ':';
                        *ret = TAKE_PTR(s);
                        return 0;
                }
        }
        return report(l, "\"%s\": \"%s\" is not vendor:device (e.g. \"8086:10d3\" or \"8086:*\")", key, in);
}

static int normalize_class(Loader *l, const char *key, const char *in, char **ret) {
        _cleanup_free_ char *s = strdup(in);

        if (!s)
                return -ENOMEM;
        ascii_lowercase(s);
        if (strncmp(s, "0x", 2) != 0 || !hex_field_valid(s + 2, 6))
                return report(l, "\"%s\": \"%s\" is not a class glob (e.g. \"0x020000\" or \"0x0200*\")",
                              key, in);
        *ret = TAKE_PTR(s);
        return 0;
}

static int normalize_unit(Loader *l, const char *key, const char *in, char **ret) {
        if (!glob_valid(in, UNIT_CHARS))
                return report(l, "\"%s\": bad unit glob \"%s\" (expected e.g. \"vm-*.service\")", key, in);
        return free_and_strdup(ret, in);
}

static int normalize_mode(Loader *l, const char *key, const char *in, char **ret) {
        if (acquire_mode_from_string(in) < 0)
                return report(l, "\"%s\": unknown mode \"%s\" (expected unbound, bound or attached)", key, in);
        return free_and_strdup(ret, in);
}

/* A string or a non-empty list of strings. */
static int parse_strings(Loader *l, const char *key, json_t *v, normalize_fn normalize, char ***ret) {
        _cleanup_strv_free_ char **list = NULL;
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        int r, bad = 0;

        if (!json_is_string(v) && !json_is_array(v))
                return report(l, "\"%s\" must be a string or a list of strings", key);
        if (n == 0)
                return report(l, "\"%s\" must not be an empty list", key);

        for (size_t i = 0; i < n; i++) {
                json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
                _cleanup_free_ char *s = NULL;

                if (!json_is_string(e)) {
                        bad = report(l, "\"%s\" must be a string or a list of strings", key);
                        break;
                }
                r = normalize(l, key, json_string_value(e), &s);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        bad = r;
                        continue;
                }
                r = strv_extend(&list, s);
                if (r < 0)
                        return r;
        }
        if (bad < 0)
                return bad;
        *ret = TAKE_PTR(list);
        return 0;
}

static int resolve_user(const char *name, unsigned *ret) {
        struct passwd *pw = getpwnam(name);

        if (!pw)
                return -ENOENT;
        *ret = pw->pw_uid;
        return 0;
}

static int resolve_group(const char *name, unsigned *ret) {
        struct group *gr = getgrnam(name);

        if (!gr)
                return -ENOENT;
        *ret = gr->gr_gid;
        return 0;
}

/* How to read one kind of number list. */
typedef struct NumKind {
        const char *key;
        const char *expected;           /* for type errors */
        const char *name_kind;          /* "user": in "unknown user" */
        long long max;
        int (*resolve)(const char *name, unsigned *ret);        /* NULL: names not allowed */
} NumKind;

static const NumKind kind_users = { "users", "user names or uids", "user", UINT32_MAX - 1, resolve_user };
static const NumKind kind_groups = { "groups", "group names or gids", "group", UINT32_MAX - 1, resolve_group };
static const NumKind kind_iommu_groups = { "iommu_group", "IOMMU group numbers", NULL, INT_MAX, NULL };

static int parse_number(Loader *l, const NumKind *k, json_t *e, unsigned *ret) {
        if (json_is_string(e) && k->resolve) {
                if (k->resolve(json_string_value(e), ret) < 0)
                        return report(l, "\"%s\": unknown %s \"%s\"", k->key, k->name_kind, json_string_value(e));
                return 0;
        }
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > k->max)
                return report(l, "\"%s\" must be one or a list of %s", k->key, k->expected);
        *ret = (unsigned) json_integer_value(e);
        return 0;
}

/* A number (or name) or a non-empty list of them. */
static int parse_numbers(Loader *l, const NumKind *k, json_t *v, NumList *ret) {
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        _cleanup_free_ unsigned *nums = NULL;
        int bad = 0;

        if (n == 0)
                return report(l, "\"%s\" must not be an empty list", k->key);
        nums = calloc(n, sizeof(unsigned));
        if (!nums)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = parse_number(l, k, json_is_array(v) ? json_array_get(v, i) : v, &nums[i]);
                if (r < 0)
                        bad = r;
        }
        if (bad < 0)
                return bad;
        ret->v = TAKE_PTR(nums);
        ret->n = n;
        return 0;
}

static int parse_bool(Loader *l, const char *key, json_t *v, bool *ret) {
        if (!json_is_boolean(v))
                return report(l, "\"%s\" must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}

static int parse_modes(Loader *l, json_t *v, unsigned *ret) {
        _cleanup_strv_free_ char **modes = NULL;
        int r;

        r = parse_strings(l, "modes", v, normalize_mode, &modes);
        if (r < 0)
                return r;
        *ret = 0;
        for (char **m = modes; *m; m++)
                *ret |= MODE_BIT(acquire_mode_from_string(*m));
        return 0;
}

static bool polkit_action_valid(const char *s) {
        return *s && s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-")] == 0 && strchr(s, '.') &&
               s[0] != '.' && s[strlen(s) - 1] != '.';
}

static int parse_polkit(Loader *l, json_t *v, Rule *rule) {
        char **ret = &rule->polkit_action;

        rule->polkit_default = json_is_true(v);
        if (json_is_true(v))
                return free_and_strdup(ret, DEFAULT_POLKIT_ACTION);
        if (json_is_false(v))
                return free_and_strdup(ret, NULL);
        if (json_is_string(v) && polkit_action_valid(json_string_value(v)))
                return free_and_strdup(ret, json_string_value(v));
        return report(l, "\"polkit\" must be true, false or a polkit action id like \"%s\"",
                      DEFAULT_POLKIT_ACTION);
}

/* Bytes as a positive integer, or a string memlock_parse() takes. */
static int parse_memlock(Loader *l, json_t *v, uint64_t *ret) {
        int r;

        if (json_is_integer(v) && json_integer_value(v) > 0) {
                *ret = (uint64_t) json_integer_value(v);
                return 0;
        }
        if (json_is_string(v)) {
                r = memlock_parse(json_string_value(v), ret);
                if (r == -ERANGE)
                        return report(l, "\"memlock\": \"%s\" is too large (use \"unlimited\")",
                                      json_string_value(v));
                if (r >= 0)
                        return 0;
        }
        return report(l, "\"memlock\" must be a positive number of bytes, a size like \"512M\", \"16G\" "
                      "(suffixes K, M, G, T) or \"unlimited\"");
}

static int parse_comment(Loader *l, json_t *v) {
        if (!json_is_string(v))
                return report(l, "\"comment\" must be a string");
        return 0;
}

/* An object that must not be empty; its keys are checked by the caller. */
static int check_section(Loader *l, const char *key, json_t *v) {
        if (!json_is_object(v))
                return report(l, "\"%s\" must be an object", key);
        if (json_object_size(v) == 0)
                return report(l, "\"%s\" must not be empty (leave it out to match every device)", key);
        return 0;
}

static int parse_devices(Loader *l, json_t *o, Rule *rule) {
        const char *key;
        json_t *v;
        int r;

        r = check_section(l, "devices", o);
        if (r < 0)
                return r;
        json_object_foreach(o, key, v) {
                if (streq(key, "address"))
                        r = parse_strings(l, key, v, normalize_address, &rule->addresses);
                else if (streq(key, "id"))
                        r = parse_strings(l, key, v, normalize_id, &rule->ids);
                else if (streq(key, "class"))
                        r = parse_strings(l, key, v, normalize_class, &rule->classes);
                else if (streq(key, "iommu_group"))
                        r = parse_numbers(l, &kind_iommu_groups, v, &rule->iommu_groups);
                else
                        r = report(l, "unknown key \"%s\" in \"devices\" (expected address, id, class or iommu_group)",
                                   key);
                if (r == -ENOMEM)
                        return r;
        }
        return 0;
}

static int parse_principals(Loader *l, json_t *o, Rule *rule) {
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(o))
                return report(l, "\"principals\" must be an object");
        if (json_object_size(o) == 0)
                return report(l, "\"principals\" must not be empty: say whom the rule is for");
        json_object_foreach(o, key, v) {
                if (streq(key, "users"))
                        r = parse_numbers(l, &kind_users, v, &rule->uids);
                else if (streq(key, "groups"))
                        r = parse_numbers(l, &kind_groups, v, &rule->gids);
                else if (streq(key, "units"))
                        r = parse_strings(l, key, v, normalize_unit, &rule->units);
                else
                        r = report(l, "unknown key \"%s\" in \"principals\" (expected users, groups or units)", key);
                if (r == -ENOMEM)
                        return r;
        }
        return 0;
}

static int parse_rule_key(Loader *l, const char *key, json_t *v, Rule *rule) {
        if (streq(key, "comment"))
                return parse_comment(l, v);
        if (streq(key, "devices"))
                return parse_devices(l, v, rule);
        if (streq(key, "principals"))
                return parse_principals(l, v, rule);
        if (streq(key, "allow"))
                return parse_bool(l, key, v, &rule->allow);
        if (streq(key, "managed"))
                return parse_bool(l, key, v, &rule->managed);
        if (streq(key, "modes"))
                return parse_modes(l, v, &rule->modes);
        if (streq(key, "polkit"))
                return parse_polkit(l, v, rule);
        if (streq(key, "memlock"))
                return parse_memlock(l, v, &rule->memlock);
        return report(l, "unknown key \"%s\" (expected comment, devices, principals, allow, modes, managed, "
                      "polkit or memlock)", key);
}

static int parse_rule(Loader *l, json_t *o, Rule *rule) {
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(o))
                return report(l, "a rule must be an object");
        json_object_foreach(o, key, v) {
                r = parse_rule_key(l, key, v, rule);
                if (r == -ENOMEM)
                        return r;
        }
        if (!json_object_get(o, "principals"))
                return report(l, "no \"principals\": a rule must say whom it is for");
        return 0;
}

static int policy_add_rule(Policy *p, Rule *rule, const char *display, size_t index) {
        Rule *rules;

        if (asprintf(&rule->name, "%s rule %zu", display, index) < 0) {
                rule->name = NULL;
                return -ENOMEM;
        }
        rules = realloc(p->rules, sizeof(Rule) * (p->n_rules + 1));
        if (!rules)
                return -ENOMEM;
        p->rules = rules;
        p->rules[p->n_rules++] = *rule;
        *rule = (Rule) {};
        return 0;
}

static int parse_rules(Policy *p, Loader *l, json_t *rules) {
        size_t i;
        json_t *v;

        if (!json_is_array(rules))
                return report(l, "\"rules\" must be a list of rules");
        json_array_foreach(rules, i, v) {
                Rule rule = { .allow = true, .modes = ALL_MODES };
                unsigned before = l->n_errors;
                int r;

                l->rule = i + 1;
                r = parse_rule(l, v, &rule);
                if (r >= 0 && l->n_errors == before)
                        r = policy_add_rule(p, &rule, l->display, i + 1);
                rule_done(&rule);
                if (r == -ENOMEM)
                        return r;
        }
        l->rule = 0;
        return 0;
}

/* Host-wide, so the last file that says it wins (drop-ins come after the main file). */
static int parse_accounting(Policy *p, Loader *l, json_t *v) {
        MemlockAccounting a = memlock_accounting_from_string(json_string_value(v));

        if (a < 0)
                return report(l, "\"memlock_accounting\" must be \"process\" or \"user\"");
        p->memlock_accounting = a;
        return 0;
}

static int parse_document(Policy *p, Loader *l, json_t *root) {
        const char *key;
        json_t *v, *rules;
        int r;

        if (!json_is_object(root))
                return report(l, "the top level must be an object with a \"rules\" list");
        json_object_foreach(root, key, v) {
                if (streq(key, "comment"))
                        (void) parse_comment(l, v);
                else if (streq(key, "memlock_accounting"))
                        (void) parse_accounting(p, l, v);
                else if (!streq(key, "rules"))
                        (void) report(l, "unknown top-level key \"%s\" (expected rules, memlock_accounting or "
                                      "comment)", key);
        }

        rules = json_object_get(root, "rules");
        if (!rules)
                return report(l, "no \"rules\" list");
        r = parse_rules(p, l, rules);
        if (r < 0)
                return r;
        return l->n_errors > 0 ? -EINVAL : 0;
}

/* Parse a loaded (or failed) document into p; errors go through l. */
static int load_parsed(Policy *p, Loader *l, json_t *root, const json_error_t *err) {
        if (!root)
                return report(l, "line %d column %d: %s", err->line, err->column, err->text);
        return parse_document(p, l, root);
}

int policy_load_string(const char *json, const char *name, FILE *errors, Policy **ret) {
        _cleanup_(policy_freep) Policy *p = NULL;
        Loader l = { .errors = errors, .file = name ?: "policy", .display = name ?: "policy" };
        json_error_t err;
        json_t *root;
        int r;

        r = policy_new_default(&p);
        if (r < 0)
                return r;
        root = json_loads(json ?: "", JSON_REJECT_DUPLICATES, &err);
        r = load_parsed(p, &l, root, &err);
        json_decref(root);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

static void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/* Add the rules of one file. A missing file is no error: the built-in default applies. */
static int load_file(Policy *p, const char *path, const char *display, FILE *errors) {
        Loader l = { .errors = errors, .file = path, .display = display };
        _cleanup_(fclosep) FILE *f = NULL;
        json_error_t err;
        struct stat st;
        json_t *root;
        int fd, r;

        /* O_NONBLOCK: a FIFO (or a device) named *.json must not hang the
         * daemon on a reload; only regular files are read. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
                return 0;
        if (fd < 0) {
                r = -errno;
                report(&l, "cannot open: %s", strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                safe_close(fd);
                report(&l, "cannot read: not a regular file");
                return -EINVAL;
        }
        f = fdopen(fd, "re");
        if (!f) {
                r = -errno;
                safe_close(fd);
                report(&l, "cannot open: %s", strerror(-r));
                return r;
        }
        root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
        r = load_parsed(p, &l, root, &err);
        json_decref(root);
        return r;
}

static int cmp_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool is_dropin_name(const char *name) {
        size_t n = strlen(name);

        return name[0] != '.' && n > 5 && streq(name + n - 5, ".json");
}

/* Sorted *.json names in dir; NULL (no error) if dir does not exist. */
static int list_dropins(const char *dir, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        DIR *d = opendir(dir);
        struct dirent *de;
        int r = 0;

        *ret = NULL;
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (is_dropin_name(de->d_name) && (r = strv_extend(&names, de->d_name)) < 0)
                        break;
        closedir(d);
        if (r < 0)
                return r;
        if (names)
                qsort(names, strv_length(names), sizeof(char *), cmp_strings);
        *ret = TAKE_PTR(names);
        return 0;
}

/* Like systemd, a drop-in linked to /dev/null masks (disables) itself. */
static bool is_masked(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
}

static int load_dropin(Policy *p, const char *dir, const char *name, FILE *errors) {
        _cleanup_free_ char *path = NULL, *display = NULL;
        const char *base = strrchr(dir, '/');

        base = base && base[1] ? base + 1 : dir;
        if (asprintf(&path, "%s/%s", dir, name) < 0 || asprintf(&display, "%s/%s", base, name) < 0)
                return -ENOMEM;
        if (is_masked(path))
                return 0;
        return load_file(p, path, display, errors);
}

static int load_dir(Policy *p, const char *dir, FILE *errors) {
        _cleanup_strv_free_ char **names = NULL;
        int r, ret = 0;

        r = list_dropins(dir, &names);
        if (r < 0) {
                Loader l = { .errors = errors, .file = dir, .display = dir };
                report(&l, "cannot read directory: %s", strerror(-r));
                return r;
        }
        for (char **n = names; n && *n; n++) {
                r = load_dropin(p, dir, *n, errors);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

int policy_load(const char *path, const char *dropin_dir, FILE *errors, Policy **ret) {
        _cleanup_(policy_freep) Policy *p = NULL;
        int r, k = 0;

        r = policy_new_default(&p);
        if (r < 0)
                return r;
        if (path) {
                const char *base = strrchr(path, '/');
                k = load_file(p, path, base ? base + 1 : path, errors);
                if (k == -ENOMEM)
                        return k;
        }
        if (dropin_dir) {
                r = load_dir(p, dropin_dir, errors);
                if (r == -ENOMEM)
                        return r;
                if (k == 0)
                        k = r;
        }
        if (k < 0)
                return k;
        log_debug("policy: %zu rules", p->n_rules);
        *ret = TAKE_PTR(p);
        return 0;
}
