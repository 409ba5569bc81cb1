/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "run-args.h"
#include "util.h"

/* Length of a placeholder at s and its fd, 0 if s starts none. */
static int match_placeholder(const char *s, int iommufd, const int *dev_fds, size_t n_dev_fds,
                             size_t *ret_len, int *ret_fd) {
        const char *p;
        size_t index = 0;

        *ret_len = 0;
        if (strncmp(s, "{iommufd}", 9) == 0) {
                *ret_len = 9;
                *ret_fd = iommufd;
                return 0;
        }
        if (strncmp(s, "{dev", 4) != 0)
                return 0;
        for (p = s + 4; *p >= '0' && *p <= '9'; p++) {
                if (index > n_dev_fds)  /* already out of range; avoid overflow */
                        continue;
                index = index * 10 + (size_t) (*p - '0');
        }
        if (p == s + 4 || *p != '}')
                return 0;               /* "{dev}", "{device}": not ours */
        if (index >= n_dev_fds)
                return -ERANGE;
        *ret_len = (size_t) (p + 1 - s);
        *ret_fd = dev_fds[index];
        return 0;
}

int run_substitute(const char *arg, int iommufd, const int *dev_fds, size_t n_dev_fds, char **ret) {
        _cleanup_free_ char *out = NULL;
        size_t size = 0;
        FILE *f;
        int r = 0;

        f = open_memstream(&out, &size);
        if (!f)
                return -ENOMEM;
        for (const char *s = arg; *s && r >= 0;) {
                size_t len;
                int fd;

                r = match_placeholder(s, iommufd, dev_fds, n_dev_fds, &len, &fd);
                if (r < 0)
                        break;
                if (len > 0) {
                        fprintf(f, "%d", fd);
                        s += len;
                } else
                        fputc(*s++, f);
        }
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}

int run_substitute_argv(char *const *argv, int iommufd, const int *dev_fds, size_t n_dev_fds,
                        char ***ret, size_t *ret_bad_index) {
        size_t n = strv_length(argv);
        _cleanup_strv_free_ char **out = calloc(n + 1, sizeof(char *));

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = run_substitute(argv[i], iommufd, dev_fds, n_dev_fds, &out[i]);

                if (r < 0) {
                        if (ret_bad_index)
                                *ret_bad_index = i;
                        return r;
                }
        }
        *ret = TAKE_PTR(out);
        return 0;
}
