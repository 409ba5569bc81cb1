/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * iommufdctl: look at the broker's devices, hold a lease from the shell, or
 * hand a lease to a VMM (`run`). Everything goes through libiommufd-broker,
 * so this is also its first consumer.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "broker-errors.h"
#include "config.h"
#include "iommufd-broker.h"
#include "iommufdctl.h"
#include "util.h"

static iommufd_broker_transport arg_transport = IOMMUFD_BROKER_TRANSPORT_VARLINK;
static const char *arg_address;

int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("iommufdctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'iommufdctl --help'.\n", stderr);
        return EXIT_USAGE;
}

/* "iommufdctl: <Name>: <message>", from the handle or, without one, from r. */
int broker_failed(const iommufd_broker *b, int r, const char *what) {
        const char *name = iommufd_broker_error_name(b);

        if (name)
                fprintf(stderr, "iommufdctl: %s: %s\n", name, iommufd_broker_error_message(b));
        else
                fprintf(stderr, "iommufdctl: %s: %s\n", what, strerror(-r));
        return EXIT_BROKER;
}

int connect_broker(iommufd_broker **ret) {
        const char *address = arg_address;
        int r;

        r = iommufd_broker_connect(arg_transport, address, ret);
        if (r >= 0)
                return 0;
        /* A failed connect hands back no handle, so describe it here. */
        if (arg_transport == IOMMUFD_BROKER_TRANSPORT_VARLINK && !address) {
                address = getenv("IOMMUFD_BROKER_SOCKET");
                if (!address || !*address)
                        address = BROKER_DEFAULT_SOCKET;
        }
        fprintf(stderr, "iommufdctl: ConnectFailed: cannot connect to %s: %s\n",
                address ?: "the system bus", strerror(-r));
        return EXIT_BROKER;
}

/* --- list, info --- */

static json_t *device_to_json(const iommufd_broker_device *d) {
        json_t *v, *members = json_array();
        _cleanup_free_ char *copy = strdup(d->group_members);
        char *save = NULL;

        if (!members || !copy) {
                json_decref(members);
                return NULL;
        }
        for (char *m = strtok_r(copy, " ", &save); m; m = strtok_r(NULL, " ", &save))
                json_array_append_new(members, json_string(m));

        /* Field names as in the varlink Device type, whatever the transport. */
        v = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:b, s:b, s:o, s:s, s:o, s:o}",
                      "address", d->address,
                      "vendorId", d->vendor_id,
                      "deviceId", d->device_id,
                      "subsystemVendorId", d->subsystem_vendor_id,
                      "subsystemDeviceId", d->subsystem_device_id,
                      "class", (int) d->class_code,
                      "driver", d->driver[0] ? json_string(d->driver) : json_null(),
                      "iommuGroup", d->iommu_group >= 0 ? json_integer(d->iommu_group) : json_null(),
                      "groupMembers", members,
                      "vfioCdev", d->vfio_cdev[0] ? json_string(d->vfio_cdev) : json_null(),
                      "noiommu", d->noiommu,
                      "sriovVf", d->sriov_vf,
                      "iommu", d->iommu_type[0] ? json_pack("{s:s, s:I}", "type", d->iommu_type,
                                                            "capabilities", (json_int_t) d->iommu_capabilities)
                                                : json_null(),
                      "state", d->state,
                      "reason", d->reason[0] ? json_string(d->reason) : json_null(),
                      "holder", d->holder_session ? json_pack("{s:I, s:I, s:I}",
                                                              "session", (json_int_t) d->holder_session,
                                                              "uid", (json_int_t) d->holder_uid,
                                                              "pid", (json_int_t) d->holder_pid)
                                                  : json_null());
        return v;
}

static int print_json(json_t *v) {
        if (!v || json_dumpf(v, stdout, JSON_INDENT(2)) < 0) {
                fprintf(stderr, "iommufdctl: out of memory\n");
                return EXIT_BROKER;
        }
        putchar('\n');
        return 0;
}

/* What the last column says: the holder if we may see it, else the reason. */
static void format_note(const iommufd_broker_device *d, char *buf, size_t size) {
        if (d->holder_session)
                snprintf(buf, size, "session %" PRIu64 " uid %u pid %d", d->holder_session,
                         (unsigned) d->holder_uid, (int) d->holder_pid);
        else
                snprintf(buf, size, "%s", d->reason[0] ? d->reason : "-");
}

static void print_table(const iommufd_broker_device *devices, size_t n) {
        int driver_width = 6;

        for (size_t i = 0; i < n; i++)
                if ((int) strlen(devices[i].driver) > driver_width)
                        driver_width = (int) strlen(devices[i].driver);

        printf("%-12s  %-13s  %-6s  %-*s  %-5s  %-8s  %-11s  %s\n", "ADDRESS", "VENDOR:DEVICE", "CLASS",
               driver_width, "DRIVER", "GROUP", "CDEV", "STATE", "REASON/HOLDER");
        for (size_t i = 0; i < n; i++) {
                const iommufd_broker_device *d = &devices[i];
                char id[16], group[16], note[300];

                snprintf(id, sizeof(id), "%04x:%04x", d->vendor_id, d->device_id);
                if (d->iommu_group >= 0)
                        snprintf(group, sizeof(group), "%d", d->iommu_group);
                else
                        snprintf(group, sizeof(group), "-");
                format_note(d, note, sizeof(note));
                printf("%-12s  %-13s  %06" PRIx32 "  %-*s  %-5s  %-8s  %-11s  %s\n", d->address, id,
                       d->class_code, driver_width, d->driver[0] ? d->driver : "-", group,
                       d->vfio_cdev[0] ? d->vfio_cdev : "-", d->state, note);
        }
}

static int parse_json_flag(int argc, char **argv, const char *command, bool *ret_json, int *ret_optind) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                {}
        };
        int c;

        *ret_json = false;
        optind = 0;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                if (c != 'j')
                        return usage_error("%s: unknown option", command);
                *ret_json = true;
        }
        *ret_optind = optind;
        return 0;
}

static int cmd_list(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        _cleanup_free_ iommufd_broker_device *devices = NULL;
        size_t n = 0;
        bool json;
        int r, next = 0;

        r = parse_json_flag(argc, argv, "list", &json, &next);
        if (r != 0)
                return r;
        if (next < argc)
                return usage_error("list: unexpected argument '%s'", argv[next]);
        r = connect_broker(&b);
        if (r != 0)
                return r;
        r = iommufd_broker_list(b, &devices, &n);
        if (r < 0)
                return broker_failed(b, r, "list");
        if (json) {
                _cleanup_(json_decrefp) json_t *a = json_array();

                for (size_t i = 0; a && i < n; i++)
                        if (json_array_append_new(a, device_to_json(&devices[i])) < 0)
                                return print_json(NULL);
                return print_json(a);
        }
        print_table(devices, n);
        return 0;
}

static void print_info(const iommufd_broker_device *d) {
        char note[300];

        printf("Address:       %s\n", d->address);
        printf("Vendor:Device: %04x:%04x\n", d->vendor_id, d->device_id);
        printf("Subsystem:     %04x:%04x\n", d->subsystem_vendor_id, d->subsystem_device_id);
        printf("Class:         %06" PRIx32 "\n", d->class_code);
        printf("Driver:        %s\n", d->driver[0] ? d->driver : "-");
        if (d->iommu_group >= 0)
                printf("IOMMU group:   %d (%s)\n", d->iommu_group, d->group_members);
        else
                printf("IOMMU group:   -\n");
        printf("VFIO cdev:     %s\n", d->vfio_cdev[0] ? d->vfio_cdev : "-");
        if (d->iommu_type[0])
                printf("IOMMU:         %s (capabilities 0x%" PRIx64 ")\n", d->iommu_type, d->iommu_capabilities);
        printf("noiommu:       %s\n", d->noiommu ? "yes" : "no");
        printf("SR-IOV VF:     %s\n", d->sriov_vf ? "yes" : "no");
        printf("State:         %s\n", d->state);
        format_note(d, note, sizeof(note));
        printf("%s %s\n", d->holder_session ? "Holder:       " : "Reason:       ", note);
        /* A releasing lease has both: the holder who made it, and why the
         * device is not free yet (its fds live on, maybe in another process). */
        if (d->holder_session && d->reason[0])
                printf("Reason:        %s\n", d->reason);
}

static int cmd_info(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        iommufd_broker_device d;
        bool json;
        int r, next = 0;

        r = parse_json_flag(argc, argv, "info", &json, &next);
        if (r != 0)
                return r;
        if (argc - next != 1)
                return usage_error("info: expects exactly one device");
        r = connect_broker(&b);
        if (r != 0)
                return r;
        r = iommufd_broker_get(b, argv[next], &d);
        if (r < 0)
                return broker_failed(b, r, "info");
        if (json) {
                _cleanup_(json_decrefp) json_t *v = device_to_json(&d);
                return print_json(v);
        }
        print_info(&d);
        return 0;
}

static const char *value_of(const char *arg, const char *option);

/* revoke DEV [--timeout S]: ask the holder to let go; waits until it did. */
static int cmd_revoke(int argc, char **argv) {
        _cleanup_(broker_freep) iommufd_broker *b = NULL;
        const char *device = NULL;
        unsigned long timeout = 30;
        int r;

        for (int i = 1; i < argc; i++) {
                const char *v = value_of(argv[i], "--timeout");

                if (streq(argv[i], "--timeout") || v) {
                        char *end;

                        if (!v && i + 1 >= argc)
                                return usage_error("revoke: --timeout needs seconds");
                        v = v ?: argv[++i];
                        errno = 0;
                        timeout = strtoul(v, &end, 10);
                        if (errno || end == v || *end || timeout == 0 || timeout > 3600)
                                return usage_error("revoke: --timeout takes 1..3600 seconds, not '%s'", v);
                } else if (argv[i][0] == '-')
                        return usage_error("revoke: unknown option '%s'", argv[i]);
                else if (device)
                        return usage_error("revoke: expects exactly one device");
                else
                        device = argv[i];
        }
        if (!device)
                return usage_error("revoke: expects a device");
        r = connect_broker(&b);
        if (r != 0)
                return r;
        r = iommufd_broker_revoke(b, device, (unsigned) timeout);
        if (r < 0)
                return broker_failed(b, r, "revoke");
        printf("%s: revoked\n", device);
        return 0;
}

/* --- main --- */

static void help(void) {
        printf("Usage: iommufdctl [--socket PATH | --bus [ADDRESS]] COMMAND ...\n"
               "\n"
               "Ask iommufd-broker for VFIO devices and iommufd contexts.\n"
               "\n"
               "Commands:\n"
               "  list [--json]                    devices, their state and holder\n"
               "  info DEV [--json]                one device\n"
               "  acquire DEV... [--mode M] [--managed] [--interactive]\n"
               "                                   lease devices (default mode: attached), print\n"
               "                                   the fds and ids, hold until SIGINT/SIGTERM/HUP\n"
               "  monitor                          print device and lease events\n"
               "  run -d DEV [-d DEV]... [--mode M] [--managed] [--interactive] -- CMD ARGS...\n"
               "                                   lease devices (default mode: unbound) and run\n"
               "                                   CMD with the fds; {iommufd}, {dev0}, {dev1}...\n"
               "                                   in CMD ARGS become the fd numbers\n"
               "  revoke DEV [--timeout S]         take DEV back from its holder (root or polkit): asks\n"
               "                                   through vfio-pci's device request, waits until\n"
               "                                   it let go or S seconds (default 30) passed\n"
               "\n"
               "Options:\n"
               "  --socket PATH     varlink socket (default: $IOMMUFD_BROKER_SOCKET or\n"
               "                    " BROKER_DEFAULT_SOCKET ")\n"
               "  --bus [ADDRESS]   use D-Bus: the system bus, or ADDRESS (\"unix:path=...\")\n"
               "  -h, --help        this text\n"
               "  --version         the version\n"
               "\n"
               "Example:\n"
               "  iommufdctl run -d 0000:03:00.0 -- qemu-system-x86_64 \\\n"
               "      -object iommufd,id=iommufd0,fd={iommufd} \\\n"
               "      -device vfio-pci,iommufd=iommufd0,fd={dev0} ...\n"
               "\n"
               "Exit status: 0 ok, 1 broker error, 2 usage error; run: the command's status.\n");
}

static const char *value_of(const char *arg, const char *option) {
        size_t n = strlen(option);

        return strncmp(arg, option, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

/* Global options, by hand: --bus takes an optional separate argument. */
static int parse_global(int argc, char **argv, int *ret_index) {
        int i;

        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                const char *a = argv[i], *v = NULL;

                if (streq(a, "-h") || streq(a, "--help")) {
                        help();
                        return -1;
                } else if (streq(a, "--version")) {
                        printf("iommufdctl %s\n", PACKAGE_VERSION);
                        return -1;
                } else if (streq(a, "--socket") || (v = value_of(a, "--socket"))) {
                        if (streq(a, "--socket") && i + 1 >= argc)
                                return usage_error("--socket needs a path");
                        arg_address = streq(a, "--socket") ? argv[++i] : v;
                        arg_transport = IOMMUFD_BROKER_TRANSPORT_VARLINK;
                } else if (streq(a, "--bus")) {
                        arg_transport = IOMMUFD_BROKER_TRANSPORT_DBUS;
                        arg_address = NULL;
                        /* A D-Bus address always has a "transport:"; a command never does. */
                        if (i + 1 < argc && strchr(argv[i + 1], ':'))
                                arg_address = argv[++i];
                } else if ((v = value_of(a, "--bus"))) {
                        arg_transport = IOMMUFD_BROKER_TRANSPORT_DBUS;
                        arg_address = v;
                } else
                        return usage_error("unknown option '%s'", a);
        }
        if (arg_address && !*arg_address)
                return usage_error("empty address");
        *ret_index = i;
        return 0;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } commands[] = {
                { "list",    cmd_list },
                { "info",    cmd_info },
                { "acquire", cmd_acquire },
                { "monitor", cmd_monitor },
                { "run",     cmd_run },
                { "revoke",  cmd_revoke },
        };
        int r, i = 0;

        r = parse_global(argc, argv, &i);
        if (r != 0)
                return r < 0 ? 0 : r;
        if (i >= argc)
                return usage_error("no command given");
        for (size_t k = 0; k < ELEMENTSOF(commands); k++)
                if (streq(commands[k].name, argv[i]))
                        return commands[k].run(argc - i, argv + i);
        return usage_error("unknown command '%s'", argv[i]);
}
