#!/usr/bin/python3
"""A minimal QMP client for distro tier cases.

    qmp.py SOCKET COMMAND [JSON-ARGUMENTS] [COMMAND [JSON-ARGUMENTS]]...

Connects (retrying for up to 60 s while QEMU starts), negotiates
capabilities, runs each command and prints each "return" value as one JSON
line. Exits 1 on an error reply or a closed connection, 2 on bad usage.
"""
import json
import socket
import sys
import time


def connect(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Qmp:
    def __init__(self, path):
        self.sock = connect(path)
        self.sock.settimeout(120)
        self.file = self.sock.makefile("r")
        greeting = self.read()
        if "QMP" not in greeting:
            raise RuntimeError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def read(self):
        line = self.file.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def execute(self, command, arguments=None):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self.read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")
            return reply.get("return")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    qmp = Qmp(argv[1])
    args = argv[2:]
    while args:
        command = args.pop(0)
        arguments = None
        if args and args[0].startswith("{"):
            arguments = json.loads(args.pop(0))
        try:
            result = qmp.execute(command, arguments)
        except EOFError:
            if command == "quit":       # QEMU may close before it answers
                result = {}
            else:
                raise
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, EOFError, RuntimeError, ValueError) as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        sys.exit(1)
