/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The handler's side of a call: replies, errors, and the call's lifetime.
 * Receiving and dispatching calls is varlink.c's. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "varlink-internal.h"

void varlink_call_free(VarlinkCall *call) {
        if (!call)
                return;
        if (call->destroy)
                call->destroy(call, call->destroy_userdata);
        json_decref(call->message);
        free(call);
}

/* The final reply went out (or the call is finished without one). Inside the
 * handler, dispatch frees it on return; otherwise free now and resume the
 * calls that waited behind it. */
static void call_finish(VarlinkCall *call) {
        VarlinkConnection *c = call->conn;

        call->done = true;
        if (call->in_handler)
                return;
        if (c->current == call)
                c->current = NULL;
        varlink_call_free(call);
        if (!c->dead)
                (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
}

static int call_send(VarlinkCall *call, json_t *msg, const int *fds, size_t n_fds, bool final) {
        int r = 0;

        if (!msg)
                return -ENOMEM;
        if (call->done) {
                json_decref(msg);
                return -ESTALE;
        }
        if (call->oneway)
                json_decref(msg);
        else
                r = varlink_connection_send(call->conn, msg, fds, n_fds);
        if (final)
                call_finish(call);
        return r;
}

int varlink_call_reply_with_fds(VarlinkCall *call, json_t *parameters, const int *fds, size_t n_fds) {
        if (!call) {
                json_decref(parameters);
                return -EINVAL;
        }
        return call_send(call, json_pack("{s:o}", "parameters", parameters ?: json_object()), fds, n_fds, true);
}

int varlink_call_reply(VarlinkCall *call, json_t *parameters) {
        static const char empty[] = VARLINK_REPLY_PREFIX "{}}";
        char *data;

        if (parameters || !call)
                return varlink_call_reply_with_fds(call, parameters, NULL, 0);
        /* No parameters (Release, most of all): the bytes are known. */
        data = malloc(sizeof(empty));
        if (!data)
                return -ENOMEM;
        memcpy(data, empty, sizeof(empty));
        return varlink_call_reply_framed(call, data, sizeof(empty));
}

int varlink_call_reply_framed(VarlinkCall *call, char *data, size_t len) {
        return varlink_call_reply_framed_with_fds(call, data, len, NULL, 0);
}

int varlink_call_reply_framed_with_fds(VarlinkCall *call, char *data, size_t len, const int *fds, size_t n_fds) {
        int r = 0;

        if (!call || !data || len < 2 || data[len - 1] != 0 || data[len - 2] != '}') {
                free(data);
                return -EINVAL;
        }
        if (call->done) {
                free(data);
                return -ESTALE;
        }
        if (call->oneway)
                free(data);
        else
                r = varlink_connection_send_encoded(call->conn, data, len, fds, n_fds);
        call_finish(call);
        return r;
}

int varlink_call_notify(VarlinkCall *call, json_t *parameters) {
        if (!call || !call->streaming) {
                json_decref(parameters);
                return -EINVAL;
        }
        return call_send(call, json_pack("{s:b, s:o}", "continues", 1, "parameters", parameters ?: json_object()),
                         NULL, 0, false);
}

int varlink_call_error(VarlinkCall *call, const char *error, json_t *parameters) {
        if (!call || !error) {
                json_decref(parameters);
                return -EINVAL;
        }
        return call_send(call, varlink_error_message(error, parameters), NULL, 0, true);
}

int varlink_call_error_invalid_parameter(VarlinkCall *call, const char *parameter) {
        return varlink_call_error(call, VARLINK_SERVICE_INTERFACE ".InvalidParameter",
                                  json_pack("{s:s}", "parameter", parameter ?: ""));
}

int varlink_call_error_broker(VarlinkCall *call, BrokerErrorCode code, const char *device, const char *message) {
        char name[128];

        if (!broker_error_name(code))
                code = BROKER_ERROR_KERNEL_ERROR;
        snprintf(name, sizeof(name), "%s.%s", BROKER_VARLINK_INTERFACE, broker_error_name(code));
        return varlink_call_error(call, name, varlink_broker_error_parameters(code, device, message));
}

VarlinkConnection *varlink_call_get_connection(const VarlinkCall *call) {
        return call ? call->conn : NULL;
}

const char *varlink_call_get_method(const VarlinkCall *call) {
        return call ? call->method : NULL;
}

bool varlink_call_wants_more(const VarlinkCall *call) {
        return call && call->more;
}

bool varlink_call_is_oneway(const VarlinkCall *call) {
        return call && call->oneway;
}

void varlink_call_set_destroy(VarlinkCall *call, void (*destroy)(VarlinkCall *call, void *userdata),
                              void *userdata) {
        if (!call)
                return;
        call->destroy = destroy;
        call->destroy_userdata = userdata;
}
