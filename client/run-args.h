/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Placeholders of `iommufdctl run`: "{iommufd}" and "{dev0}", "{dev1}", ...
 * anywhere inside an argument ("fd={dev0}") become the fd numbers the child
 * inherits. Any other braces are left alone: QEMU's JSON syntax is full of
 * them.
 */

#include <stddef.h>

/* Substitute placeholders in arg into a new string. -ERANGE if a {devN}
 * names a device that was not requested (N >= n_dev_fds), -ENOMEM. */
int run_substitute(const char *arg, int iommufd, const int *dev_fds, size_t n_dev_fds, char **ret);

/* The same for a NULL-terminated argv; *ret is a new NULL-terminated array.
 * On failure *ret_bad_index (if not NULL) is the argument at fault. */
int run_substitute_argv(char *const *argv, int iommufd, const int *dev_fds, size_t n_dev_fds,
                        char ***ret, size_t *ret_bad_index);
