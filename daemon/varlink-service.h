/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * org.varlink.service, which every varlink server implements (GetInfo,
 * GetInterfaceDescription), and the parameter checking that method handlers
 * share (varlink_check_parameters(), declared in varlink.h).
 */

#include "varlink.h"

/* The IDL of org.varlink.service as this server implements it. */
extern const char varlink_service_idl[];

extern const VarlinkInterface varlink_service_interface;
