/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The io.iommufd.Broker varlink interface over the core.
 *
 * From main():
 *
 *     VarlinkServer *varlink = NULL;
 *     r = varlink_broker_start(manager, arg_listen_path, NULL, &varlink);
 *     ... sd_event_loop() ...
 *     varlink_broker_free(varlink);     before manager_free(): closing the
 *                                       connections destroys their sessions
 *
 * listen_path NULL takes the sockets of sd_listen_fds() (socket activation;
 * -ENOENT if none were passed). Every connection gets one Session (created
 * at accept, destroyed on close), so leases live as long as the connection.
 * Connections are charged to manager_quota(), with the D-Bus sessions.
 */

#include "device-json.h"
#include "manager.h"
#include "session.h"
#include "varlink.h"

#define BROKER_VARLINK_MAX_DEVICES_PER_CALL 64

int varlink_broker_start(Manager *m, const char *listen_path /* NULL: sd_listen_fds */,
                         const VarlinkLimits *limits /* NULL: defaults */, VarlinkServer **ret);
VarlinkServer *varlink_broker_free(VarlinkServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkServer *, varlink_broker_free);

/* The method table, for tests that compare it with the IDL. */
const VarlinkInterface *varlink_broker_interface(void);

/* The text of an Acquire reply's parameters, appended to b (tests compare
 * it with what jansson makes of the same object). */
void varlink_broker_acquire_reply_text(TextBuf *b, AcquireMode mode, const AcquireReply *reply);

/* The wire name of an error: "io.iommufd.Broker.DeviceBusy". */
const char *varlink_broker_error_name(BrokerErrorCode code, char buf[static 96]);
