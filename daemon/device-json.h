/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The IDL's Device object (protocol/io.iommufd.Broker.varlink) for a Device.
 * Optional fields without a value are omitted rather than sent as null.
 */

#include <jansson.h>

#include "device.h"
#include "manager.h"

/* From parts, without a manager (tests). holder: NULL unless it may be shown. */
json_t *device_json_build(const Device *d, DeviceState state, const char *reason, const Holder *holder);

/* State, reason and holder from the manager; the holder only if viewer may see
 * it (root or the holder's own uid). NULL on ENOMEM. */
json_t *device_json_new(Manager *m, const Device *d, const Principal *viewer);
