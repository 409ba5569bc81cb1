/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seed corpus as a regression test, without clang: each file (or each
 * file in each directory) given is fed once to the target. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        uint8_t *buf = NULL;
        long n;

        if (!f)
                return -1;
        if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0 ||
            !(buf = malloc((size_t) n + 1)) || fread(buf, 1, (size_t) n, f) != (size_t) n) {
                fclose(f);
                free(buf);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t) n);
        free(buf);
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned n = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                DIR *d;

                if (stat(argv[i], &st) < 0)
                        return fprintf(stderr, "%s: missing\n", argv[i]), 1;
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return fprintf(stderr, "%s: unreadable\n", argv[i]), 1;
                        n++;
                        continue;
                }
                d = opendir(argv[i]);
                for (struct dirent *e; d && (e = readdir(d));) {
                        char path[4096];

                        if (e->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                        if (run_file(path) < 0)
                                return fprintf(stderr, "%s: unreadable\n", path), 1;
                        n++;
                }
                if (d)
                        closedir(d);
        }
        printf("%u inputs ran\n", n);
        return n > 0 ? 0 : 1;
}
