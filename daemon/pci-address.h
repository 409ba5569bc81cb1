/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * PCI addresses as clients write them and as the broker names devices:
 * every address a client sends goes through here before anything is
 * looked up, and every lookup compares the normal form.
 */

/* Normalise "3:00.0", "03:00.0" or "0000:03:00.0" to "0000:03:00.0".
 * Returns 0, or -EINVAL if the string is not a PCI address. */
int pci_address_normalize(const char *s, char ret[static 16]);
