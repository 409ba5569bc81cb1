/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The interface files of protocol/, embedded at build time. */
extern const char broker_varlink_idl[];         /* io.iommufd.Broker.varlink */
extern const char broker_dbus_xml[];            /* io.iommufd.Broker1.xml */
