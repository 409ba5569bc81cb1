/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/*
 * Driving tests/dbus/fake-polkitd from a test run by run-with-broker.sh:
 * it keeps its mode and log in $DBUS_TEST_DIR/polkit, and logs one line per
 * CheckAuthorization ("check ACTION uid=.. pid=.. ... kind=..") and per
 * cancel ("cancel ...").
 */
void fake_polkit_init(void);
void start_fake_polkitd(void);          /* on $DBUS_TEST_ADDRESS, once it is ready */
void stop_fake_polkitd(void);
void set_mode(const char *mode);        /* allow, deny, challenge, hang, slow MS */
int count_log(const char *prefix);      /* lines of the log starting with prefix */
bool last_check_has(const char *what);  /* the last "check" line contains what */
bool wait_log(const char *prefix, int n); /* up to 15 s for n lines starting with prefix */
