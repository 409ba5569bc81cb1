/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once
/* Not written yet: the varlink wire format, shared by daemon and client. */
