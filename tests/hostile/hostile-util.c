/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the hostile D-Bus and mixed-client cases share (hostile-util.h). */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hostile-util.h"

/* HOSTILE_LATENCY_MS: a sanitizer build is slower (dev.sh test sets it). */
double latency_ms(void) {
        const char *e = getenv("HOSTILE_LATENCY_MS");
        return e ? atof(e) : 100.0;
}

double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

int become(uid_t uid) {
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                return -errno;
        return 0;
}

int broker_fd_count(void) {
        char cmd[128];
        FILE *f;
        int n = -1;

        snprintf(cmd, sizeof(cmd), "ls /proc/%s/fd | wc -l", getenv("BROKER_PID") ?: "0");
        f = popen(cmd, "r");
        if (f) {
                if (fscanf(f, "%d", &n) != 1)
                        n = -1;
                pclose(f);
        }
        return n;
}

int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

long broker_rss_kib(void) {
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%s/status", getenv("BROKER_PID") ?: "0");
        f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

/* Waits out DeviceBusy: the previous round's lease ends once the broker
 * sees its fds closed. */
int acquire_release(sd_bus *bus, const char *address, char *ret_error, size_t size) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *devices[] = { (char *) address, NULL };
        Acquired a = { .iommufd = -EBADF };
        int r;

        for (int i = 0;; i++) {
                r = acquire_one(bus, address, "unbound", &error, &a);
                snprintf(ret_error, size, "%s", r < 0 ? strna(error.name) : "");
                if (r >= 0 || i >= 500 || !sd_bus_error_has_name(&error, ERR("DeviceBusy")))
                        break;
                sd_bus_error_free(&error);
                usleep(10000);
        }
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        acquired_done(&a);
        r = release(bus, devices, &error);
        if (r < 0)
                snprintf(ret_error, size, "release: %s", strna(error.name));
        sd_bus_error_free(&error);
        return r;
}

