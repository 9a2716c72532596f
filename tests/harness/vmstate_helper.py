"""A real org.qemu.VMState1 helper for the tests, on jeepney (pure Python).

It connects to a D-Bus bus, requests the name ``org.qemu.VMState1`` (queued, unless
``--do-not-queue``), and serves at ``/org/qemu/VMState1``:

  * property ``Id`` (``s``), through org.freedesktop.DBus.Properties Get and GetAll
    (QEMU's GDBusProxy reads it with GetAll);
  * ``Save() -> ay``: returns the bytes of ``--state-file`` (its "current state"; the test
    changes that file to change the helper's state);
  * ``Load(ay)``: writes what it received to ``--loaded-file`` and makes it the current
    state (``--state-file``).

Every call is appended to ``--log-file`` as one JSON line, for the test to read.
When its name request is done it prints ``READY <unique name> <primary|queued|exists>``
on stdout. It exits on SIGTERM/SIGINT or when the bus goes away.

Run: python3 vmstate_helper.py --address ADDR --id ID --state-file F --loaded-file L
"""

import argparse
import json
import os
import signal
import sys

from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_call, new_method_return
from jeepney.bus_messages import DBusNameFlags
from jeepney.io.blocking import open_dbus_connection

NAME = 'org.qemu.VMState1'
PATH = '/org/qemu/VMState1'
PROPS = 'org.freedesktop.DBus.Properties'
INTROSPECTABLE = 'org.freedesktop.DBus.Introspectable'

INTROSPECTION = '''<node>
  <interface name="org.qemu.VMState1">
    <property name="Id" type="s" access="read"/>
    <method name="Load"><arg type="ay" name="data" direction="in"/></method>
    <method name="Save"><arg type="ay" name="data" direction="out"/></method>
  </interface>
</node>
'''

REQUEST_NAME_RESULT = {1: 'primary', 2: 'queued', 3: 'exists', 4: 'primary'}


class Helper:

    def __init__(self, args):
        self.args = args

    # -- files the test reads and writes ------------------------------------------

    def log(self, **entry):
        if self.args.log_file:
            with open(self.args.log_file, 'a') as f:
                f.write(json.dumps(entry) + '\n')

    def current_state(self):
        with open(self.args.state_file, 'rb') as f:
            return f.read()

    def store(self, data):
        for path in (self.args.loaded_file, self.args.state_file):
            tmp = path + '.tmp'
            with open(tmp, 'wb') as f:
                f.write(data)
            os.replace(tmp, path)

    # -- D-Bus --------------------------------------------------------------------

    def handle(self, msg):
        """The reply to one method call (or None when no reply is due)."""
        fields = msg.header.fields
        path = fields.get(HeaderFields.path)
        iface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member)
        if path != PATH:
            return new_error(msg, 'org.freedesktop.DBus.Error.UnknownObject', 's',
                             (f'no object at {path}',))
        if iface == PROPS and member == 'GetAll':
            self.log(call='GetAll')
            if self.args.hang:
                return None
            wanted = msg.body[0] if msg.body else ''
            if self.args.no_id_property or wanted not in ('', NAME):
                return new_method_return(msg, 'a{sv}', ({},))
            return new_method_return(msg, 'a{sv}', ({'Id': ('s', self.args.id)},))
        if iface == PROPS and member == 'Get':
            self.log(call='Get')
            wanted_iface, prop = msg.body
            if self.args.no_id_property or wanted_iface not in ('', NAME) or prop != 'Id':
                return new_error(msg, 'org.freedesktop.DBus.Error.UnknownProperty', 's',
                                 (f'no property {wanted_iface}.{prop}',))
            return new_method_return(msg, 'v', (('s', self.args.id),))
        if iface == INTROSPECTABLE and member == 'Introspect':
            return new_method_return(msg, 's', (INTROSPECTION,))
        if iface in (NAME, None) and member == 'Save':
            if self.args.save_error:
                self.log(call='Save', error=True)
                return new_error(msg, 'org.qemu.VMState1.Error.Failed', 's', ('helper refuses to save',))
            data = self.current_state()
            self.log(call='Save', size=len(data))
            return new_method_return(msg, 'ay', (data,))
        if iface in (NAME, None) and member == 'Load':
            data = bytes(msg.body[0])
            self.log(call='Load', size=len(data))
            self.store(data)
            return new_method_return(msg)
        return new_error(msg, 'org.freedesktop.DBus.Error.UnknownMethod', 's',
                         (f'unknown method {iface}.{member}',))

    def run(self):
        conn = open_dbus_connection(bus=self.args.address, auth_timeout=10.0)
        flags = DBusNameFlags.do_not_queue if self.args.do_not_queue else 0
        bus = DBusAddress('/org/freedesktop/DBus', bus_name='org.freedesktop.DBus',
                          interface='org.freedesktop.DBus')
        reply = conn.send_and_get_reply(new_method_call(bus, 'RequestName', 'su', (NAME, flags)), timeout=10)
        outcome = REQUEST_NAME_RESULT.get(reply.body[0], str(reply.body[0]))
        sys.stdout.write(f'READY {conn.unique_name} {outcome}\n')
        sys.stdout.flush()
        while True:
            try:
                msg = conn.receive()
            except (ConnectionError, OSError):
                return 0
            if msg.header.message_type != MessageType.method_call:
                continue
            answer = self.handle(msg)
            if answer is not None and not msg.header.flags & 1:  # 1: NO_REPLY_EXPECTED
                conn.send(answer)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--address', required=True, help='D-Bus address of the bus')
    parser.add_argument('--id', required=True, help='the helper Id')
    parser.add_argument('--state-file', required=True, help='Save() returns these bytes')
    parser.add_argument('--loaded-file', required=True, help='Load() writes what it got here')
    parser.add_argument('--log-file', help='one JSON line per call')
    parser.add_argument('--do-not-queue', action='store_true',
                        help='request the name with DO_NOT_QUEUE (wrong: QEMU cannot see a non-owner)')
    parser.add_argument('--no-id-property', action='store_true', help='do not expose the Id property')
    parser.add_argument('--save-error', action='store_true', help='answer Save with an error')
    parser.add_argument('--hang', action='store_true', help='never answer Properties.GetAll (a wedged helper)')
    args = parser.parse_args(argv)

    def _stop(_signum, _frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return Helper(args).run()


if __name__ == '__main__':
    sys.exit(main())
