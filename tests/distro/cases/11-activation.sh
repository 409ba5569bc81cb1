#!/bin/bash
# timeout: 180
# The broker need not run until someone asks: a varlink call starts it
# through its socket, and a D-Bus call through dbus-daemon's activation
# (io.iommufd.Broker1.service names SystemdService=iommufd-broker.service).
source "$DISTRO_LIB"
on_exit broker_stop

systemctl is-active -q iommufd-broker.service && fail "the broker runs before the case"

# Socket activation.
systemctl start iommufd-broker.socket
systemctl is-active -q iommufd-broker.service && fail "starting the socket started the service"
[ -S "$BROKER_SOCKET" ] || fail "no socket at $BROKER_SOCKET"
run_as alice varlinkctl call "$BROKER_SOCKET" io.iommufd.Broker.ListDevices '{}' > list.json ||
        fail "varlinkctl call through the socket failed"
grep -q "\"$E1000E\"" list.json || fail "the socket-activated broker lists no $E1000E"
systemctl is-active -q iommufd-broker.service || fail "the varlink call did not start the service"
journal_grep -u iommufd-broker.socket 'iommufd-broker' || true
log "socket activation: $(systemctl show -P ActiveEnterTimestamp iommufd-broker.service)"

# D-Bus activation, from everything stopped.
broker_stop
systemctl is-active -q iommufd-broker.service && fail "the service did not stop"
busctl --system status "$BUS_NAME" >/dev/null 2>&1 && fail "$BUS_NAME still on the bus with the service stopped"
run_as alice busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" ListDevices > list.dbus ||
        fail "busctl call did not activate the broker"
grep -q "$E1000E" list.dbus || fail "the D-Bus-activated broker lists no $E1000E"
systemctl is-active -q iommufd-broker.service || fail "the D-Bus call did not start iommufd-broker.service"
journal_grep 'Activating via systemd: service name=.io\.iommufd\.Broker1' ||
        fail "dbus-daemon did not activate through systemd"
