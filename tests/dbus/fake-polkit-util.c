/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fake polkitd's side of the polkit tests: see fake-polkit-util.h. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dbus-test-util.h"
#include "fake-polkit-util.h"

static char polkit_dir[4096];
static pid_t fake_pid;

void fake_polkit_init(void) {
        snprintf(polkit_dir, sizeof(polkit_dir), "%s/polkit", getenv("DBUS_TEST_DIR"));
        (void) mkdir(polkit_dir, 0755);
}

void stop_fake_polkitd(void) {
        int status;

        if (fake_pid <= 0)
                return;
        kill(fake_pid, SIGTERM);
        (void) waitpid(fake_pid, &status, 0);
        fake_pid = 0;
}

void set_mode(const char *mode) {
        char path[4200];
        FILE *f;

        snprintf(path, sizeof(path), "%s/mode", polkit_dir);
        f = fopen(path, "we");
        if (f) {
                fprintf(f, "%s\n", mode);
                fclose(f);
        }
}

/* Lines of the fake's log starting with prefix. */
int count_log(const char *prefix) {
        char path[4200], line[512];
        int n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/log", polkit_dir);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                n += strncmp(line, prefix, strlen(prefix)) == 0;
        fclose(f);
        return n;
}

bool last_check_has(const char *what) {
        char path[4200], line[512], last[512] = "";
        FILE *f;

        snprintf(path, sizeof(path), "%s/log", polkit_dir);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "check ", 6) == 0)
                        snprintf(last, sizeof(last), "%s", line);
        fclose(f);
        if (!strstr(last, what))
                printf("# last check: %s", last);
        return strstr(last, what) != NULL;
}

bool wait_log(const char *prefix, int n) {
        for (int i = 0; i < 300; i++) {
                if (count_log(prefix) >= n)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

void start_fake_polkitd(void) {
        char path[4200], *exe = getenv("FAKE_POLKITD");
        int p[2];
        char buf[8] = "";

        snprintf(path, sizeof(path), "%s/log", polkit_dir);
        CHECK_MSG(exe && pipe(p) == 0, "FAKE_POLKITD is set");
        fake_pid = fork();
        if (fake_pid == 0) {
                dup2(p[1], STDOUT_FILENO);
                setenv("FAKE_POLKIT_DIR", polkit_dir, 1);
                execl(exe, exe, getenv("DBUS_TEST_ADDRESS"), (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        CHECK_MSG(read(p[0], buf, sizeof(buf) - 1) > 0 && strncmp(buf, "ready", 5) == 0, "fake polkitd is ready");
        close(p[0]);
}
