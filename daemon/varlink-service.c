/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "varlink-service.h"

/* --- Parameter checking --- */

static bool json_has_type(const json_t *v, VarlinkType t) {
        switch (t) {
        case VARLINK_TYPE_BOOL:
                return json_is_boolean(v);
        case VARLINK_TYPE_INT:
                return json_is_integer(v);
        case VARLINK_TYPE_STRING:
                return json_is_string(v);
        case VARLINK_TYPE_ARRAY:
                return json_is_array(v);
        case VARLINK_TYPE_OBJECT:
                return json_is_object(v);
        }
        return false;
}

int varlink_check_parameters(json_t *parameters, const VarlinkField *fields, const char **ret_bad) {
        const char *key;
        json_t *value;

        json_object_foreach(parameters, key, value) {
                const VarlinkField *f = fields;

                while (f && f->name && !streq(f->name, key))
                        f++;
                if (!f || !f->name || (!json_is_null(value) && !json_has_type(value, f->type))) {
                        if (ret_bad)
                                *ret_bad = key;
                        return -EINVAL;
                }
        }
        for (const VarlinkField *f = fields; f && f->name; f++) {
                json_t *v = json_object_get(parameters, f->name);
                if (!f->optional && (!v || json_is_null(v))) {
                        if (ret_bad)
                                *ret_bad = f->name;
                        return -EINVAL;
                }
        }
        return 0;
}

/* --- org.varlink.service --- */

const char varlink_service_idl[] =
        "# The Varlink Service Interface is provided by every varlink service. It\n"
        "# describes the service and the interfaces it implements.\n"
        "interface org.varlink.service\n"
        "\n"
        "# Get a list of all the interfaces a service provides and information\n"
        "# about the implementation.\n"
        "method GetInfo() -> (\n"
        "  vendor: string,\n"
        "  product: string,\n"
        "  version: string,\n"
        "  url: string,\n"
        "  interfaces: []string\n"
        ")\n"
        "\n"
        "# Get the description of an interface that is implemented by this service.\n"
        "method GetInterfaceDescription(interface: string) -> (description: string)\n"
        "\n"
        "# The requested interface was not found.\n"
        "error InterfaceNotFound (interface: string)\n"
        "\n"
        "# The requested method was not found\n"
        "error MethodNotFound (method: string)\n"
        "\n"
        "# The interface defines the requested method, but the service does not\n"
        "# implement it.\n"
        "error MethodNotImplemented (method: string)\n"
        "\n"
        "# One of the passed parameters is invalid.\n"
        "error InvalidParameter (parameter: string)\n"
        "\n"
        "# Client is denied access\n"
        "error PermissionDenied ()\n"
        "\n"
        "# Method is expected to be called with 'more' set to true, but wasn't\n"
        "error ExpectedMore ()\n";

static VarlinkServer *call_server(VarlinkCall *call) {
        return varlink_connection_get_server(varlink_call_get_connection(call));
}

static int method_get_info(VarlinkCall *call, json_t *parameters, void *userdata) {
        const char *bad;
        json_t *info;

        if (varlink_check_parameters(parameters, (const VarlinkField[]) { {} }, &bad) < 0)
                return varlink_call_error_invalid_parameter(call, bad);

        info = varlink_server_info_json(call_server(call));
        if (!info)
                return -ENOMEM;
        return varlink_call_reply(call, info);
}

static int method_get_interface_description(VarlinkCall *call, json_t *parameters, void *userdata) {
        static const VarlinkField fields[] = {
                { "interface", VARLINK_TYPE_STRING },
                {}
        };
        const VarlinkInterface *iface;
        const char *bad, *name;

        if (varlink_check_parameters(parameters, fields, &bad) < 0)
                return varlink_call_error_invalid_parameter(call, bad);

        name = json_string_value(json_object_get(parameters, "interface"));
        iface = varlink_server_find_interface(call_server(call), name);
        if (!iface)
                return varlink_call_error(call, VARLINK_SERVICE_INTERFACE ".InterfaceNotFound",
                                          json_pack("{s:s}", "interface", name));
        return varlink_call_reply(call, json_pack("{s:s}", "description", iface->description ?: ""));
}

static const VarlinkMethod service_methods[] = {
        { "GetInfo", method_get_info, 0 },
        { "GetInterfaceDescription", method_get_interface_description, 0 },
        {}
};

const VarlinkInterface varlink_service_interface = {
        .name = VARLINK_SERVICE_INTERFACE,
        .description = varlink_service_idl,
        .methods = service_methods,
};

