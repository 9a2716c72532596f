# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest control through the guest agent: filesystem freeze, power transitions, facts.

No Ansible imports: the modules qemu_guest_fsfreeze, qemu_guest_power and
qemu_guest_facts are thin wrappers around what is here.
"""

from __future__ import annotations

import datetime
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    QemuTimeoutError,
    QemuVMError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport import Deadline, classify_command_error

# -- what the agent offers --------------------------------------------------------------


def agent_version(qga):
    return qga.info().get('version') or 'unknown'


def fsfreeze_status(qga):
    """'thawed', 'frozen' or 'error' (a thaw failed), from guest-fsfreeze-status."""
    return qga.execute('guest-fsfreeze-status')


def is_frozen(qga):
    """Whether the agent is in frozen state; False when it cannot tell (no fsfreeze support)."""
    if qga.command_state('guest-fsfreeze-status') != 'enabled':
        return False
    return fsfreeze_status(qga) == 'frozen'


def command_unavailable(qga, name):
    """None when `name` can be run now, else the error the agent would give (not raised).

    A command guest-info lists as disabled while the agent is frozen gets the
    GuestFrozenError, which tells the user how to thaw.
    """
    state = qga.command_state(name)
    if state == 'enabled':
        return None
    if state == 'missing':
        return CommandNotFoundError(
            name, 'CommandNotFound', 'not offered by the agent',
            message='the guest agent (qemu-ga {0}) does not offer {1}: the agent is too old, or was '
                    'built without it for this guest OS'.format(agent_version(qga), name))
    if is_frozen(qga):
        return classify_command_error(
            name, 'CommandNotFound', 'Command {0} has been disabled: the agent is in frozen state'.format(name))
    return classify_command_error(name, 'CommandNotFound', 'Command {0} has been disabled'.format(name))


def require_command(qga, name):
    error = command_unavailable(qga, name)
    if error is not None:
        raise error


def _dashes_to_underscores(value):
    """Agent replies use dashed keys; Ansible facts use underscores."""
    if isinstance(value, dict):
        return dict((str(k).replace('-', '_'), _dashes_to_underscores(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_dashes_to_underscores(v) for v in value]
    return value


# -- filesystem freeze ------------------------------------------------------------------


def normalize_mountpoints(mountpoints):
    """Absolute paths without trailing slashes, duplicates dropped (the agent matches exactly).

    Raises ValueError naming the bad entry.
    """
    result = []
    for entry in mountpoints or ():
        if not isinstance(entry, str) or not entry.startswith('/'):
            raise ValueError('mountpoints: {0!r} is not an absolute path in the guest'.format(entry))
        path = entry.rstrip('/') or '/'
        if path not in result:
            result.append(path)
    return result


def guest_mountpoints(qga):
    """The guest's mounted filesystems (guest-get-fsinfo), or None when the agent cannot say."""
    if qga.command_state('guest-get-fsinfo') != 'enabled':
        return None
    try:
        return sorted(set(fs.get('mountpoint') for fs in qga.execute('guest-get-fsinfo') if fs.get('mountpoint')))
    except CommandError:
        return None


def check_mountpoints(qga, mountpoints):
    """Fail before freezing when a requested mountpoint is not mounted in the guest."""
    mounted = guest_mountpoints(qga)
    if mounted is None:
        return
    missing = [m for m in mountpoints if m not in mounted]
    if missing:
        raise VMStateError(
            'mountpoints: {0} {1} not a mounted filesystem in the guest (mounted: {2}); nothing was frozen'.format(
                ', '.join(missing), 'is' if len(missing) == 1 else 'are', ', '.join(mounted) or 'none'))


def require_freeze_support(qga, mountpoints):
    require_command(qga, 'guest-fsfreeze-status')
    require_command(qga, 'guest-fsfreeze-thaw')
    require_command(qga, 'guest-fsfreeze-freeze-list' if mountpoints else 'guest-fsfreeze-freeze')


def freeze(qga, mountpoints=None):
    """Freeze the guest filesystems (or only `mountpoints`); return how many were frozen.

    The agent thaws everything itself when freezing fails; this checks that it
    did (and thaws if not) before raising, so a failed freeze never leaves the
    guest frozen. A freeze that outlives our bound is followed by a thaw too.
    """
    command = 'guest-fsfreeze-freeze-list' if mountpoints else 'guest-fsfreeze-freeze'
    arguments = {'mountpoints': list(mountpoints)} if mountpoints else None
    try:
        count = qga.execute(command, arguments)
    except QemuTimeoutError as exc:
        raise QemuTimeoutError(exc.what, exc.seconds, 'then {0}'.format(_thaw_after_failure(qga)))
    except (GuestFrozenError, CommandNotFoundError, CommandDisabledError):
        raise
    except CommandError as exc:
        raise CommandError(
            command, exc.error_class, exc.desc,
            message='{0} failed in the guest: {1} ({2}); {3}'.format(
                command, exc.desc, exc.error_class, _thaw_after_failure(qga)))
    if mountpoints and count == 0:
        # Nothing matched: the agent did not enter frozen state, but make sure.
        raise VMStateError('mountpoints: none of {0} could be frozen (the agent froze 0 filesystems: not '
                           'mounted, or not freezable); {1}'.format(', '.join(mountpoints), _thaw_after_failure(qga)))
    return count


def _thaw_after_failure(qga):
    """Make sure the guest is not left frozen; say what was found, for the error message."""
    try:
        status = fsfreeze_status(qga)
        if status == 'thawed':
            return 'the guest filesystems are thawed (guest-fsfreeze-status: thawed)'
        thawed = qga.execute('guest-fsfreeze-thaw', timeout=qga.timeout)
        return 'guest-fsfreeze-thaw was sent and thawed {0} filesystem(s)'.format(thawed)
    except QemuVMError as exc:
        return ('COULD NOT CONFIRM THE GUEST IS THAWED ({0}): run qemu.vm.qemu_guest_fsfreeze '
                'state=thawed'.format(exc))


def thaw(qga):
    """Thaw the guest filesystems; return how many were thawed."""
    return qga.execute('guest-fsfreeze-thaw')


# -- facts ------------------------------------------------------------------------------

#: gather_subset name -> (agent command, fact name). 'agent' (guest-info) is always read.
FACT_SUBSETS = (
    ('os', 'guest-get-osinfo', 'os'),
    ('hostname', 'guest-get-host-name', 'hostname'),
    ('network', 'guest-network-get-interfaces', 'network_interfaces'),
    ('filesystems', 'guest-get-fsinfo', 'filesystems'),
    ('disks', 'guest-get-disks', 'disks'),
    ('users', 'guest-get-users', 'users'),
    ('timezone', 'guest-get-timezone', 'timezone'),
    ('time', 'guest-get-time', 'time'),
    ('vcpus', 'guest-get-vcpus', 'vcpus'),
    ('fsfreeze', 'guest-fsfreeze-status', 'fsfreeze_status'),
)
SUBSET_NAMES = ('agent',) + tuple(s[0] for s in FACT_SUBSETS)
MIN_SUBSETS = ('agent', 'os', 'hostname', 'fsfreeze')


def resolve_gather_subset(requested):
    """The subsets to gather, in a stable order, from gather_subset as Ansible's setup reads it.

    `all`, `min`, subset names, and `!name` to leave one out. A list of only
    exclusions starts from `all`; `!all` starts from `min`. `agent` is always
    gathered. Raises ValueError naming an unknown entry.
    """
    valid = set(SUBSET_NAMES) | set(['all', 'min'])
    include, exclude = set(), set()
    exclude_all = False
    for raw in requested or ['all']:
        entry = str(raw).strip()
        negate = entry.startswith('!')
        name = entry[1:] if negate else entry
        if name not in valid:
            raise ValueError('gather_subset: unknown subset {0!r}; valid: {1}'.format(
                entry, ', '.join(['all', 'min'] + list(SUBSET_NAMES))))
        if negate:
            if name == 'all':
                exclude_all = True
            else:
                exclude.update(MIN_SUBSETS if name == 'min' else [name])
        else:
            include.update(SUBSET_NAMES if name == 'all' else MIN_SUBSETS if name == 'min' else [name])
    if exclude_all:
        include.update(MIN_SUBSETS)
    elif not include:
        include.update(SUBSET_NAMES)
    selected = (include - exclude) | set(['agent'])
    return [name for name in SUBSET_NAMES if name in selected]


def _transform(subset, reply):
    if subset == 'hostname':
        return reply.get('host-name')
    if subset == 'time':
        # guest-get-time: nanoseconds since the epoch, by the guest's clock.
        host_ns = time.time_ns()
        stamp = datetime.datetime.fromtimestamp(reply // 10 ** 9, tz=datetime.timezone.utc)
        return {
            'epoch_ns': reply,
            'iso8601': stamp.strftime('%Y-%m-%dT%H:%M:%SZ'),
            'offset_from_host_ms': int(round((reply - host_ns) / 1e6)),
        }
    return _dashes_to_underscores(reply)


def _skip_reason(error):
    if isinstance(error, GuestFrozenError):
        return 'frozen'
    if isinstance(error, CommandDisabledError):
        return 'disabled'
    if isinstance(error, CommandNotFoundError):
        return 'missing'
    return 'failed'


def gather_facts(qga, subsets):
    """The qemu_guest facts for `subsets` (from resolve_gather_subset).

    A command the agent lacks, has disabled, or refuses because the guest is
    frozen (or that fails in the guest) is skipped and listed in `skipped`.
    """
    info = qga.info()
    commands = info.get('supported_commands', [])
    facts = {
        'agent': {
            'version': info.get('version'),
            'enabled_commands': sorted(c['name'] for c in commands if c.get('enabled', True)),
            'disabled_commands': sorted(c['name'] for c in commands if not c.get('enabled', True)),
        },
        'gather_subset': list(subsets),
        'skipped': [],
    }
    for subset, command, fact in FACT_SUBSETS:
        if subset not in subsets:
            continue
        error = command_unavailable(qga, command)
        if error is None:
            try:
                facts[fact] = _transform(subset, qga.execute(command))
                continue
            except CommandError as exc:
                error = exc
        facts['skipped'].append({'subset': subset, 'command': command, 'reason': _skip_reason(error), 'msg': str(error)})
    return facts


# -- power ------------------------------------------------------------------------------

POWER_STATES = ('poweroff', 'halt', 'reboot', 'suspended_ram', 'suspended_disk', 'suspended_hybrid', 'running')


class _Transition(object):
    def __init__(self, command, arguments, events, done_status, gone_ok=False, needs_wakeup=False):
        self.command = command
        self.arguments = arguments
        self.events = events
        self.done_status = done_status
        self.gone_ok = gone_ok
        self.needs_wakeup = needs_wakeup


#: How each requested state is reached through the agent and recognised through QMP.
TRANSITIONS = {
    'poweroff': _Transition('guest-shutdown', {'mode': 'powerdown'}, ('SHUTDOWN',), ('shutdown',)),
    # A halted guest stops its CPUs without telling QEMU: only the agent going silent shows it.
    'halt': _Transition('guest-shutdown', {'mode': 'halt'}, ('SHUTDOWN',), ('shutdown',), gone_ok=True),
    'reboot': _Transition('guest-shutdown', {'mode': 'reboot'}, ('RESET',), ()),
    'suspended_ram': _Transition('guest-suspend-ram', None, ('SUSPEND',), ('suspended',), needs_wakeup=True),
    'suspended_hybrid': _Transition('guest-suspend-hybrid', None, ('SUSPEND',), ('suspended',), needs_wakeup=True),
    # Suspend to disk writes the image, then powers the guest off.
    'suspended_disk': _Transition('guest-suspend-disk', None, ('SHUTDOWN',), ('shutdown',)),
}

#: QEMU run states in which each requested state already holds.
ALREADY = {
    'poweroff': ('shutdown',),
    'halt': ('shutdown',),
    'reboot': (),
    'suspended_ram': ('suspended',),
    'suspended_hybrid': ('suspended',),
    'suspended_disk': ('shutdown',),
    'running': ('running',),
}

#: The module's name for each requested state once reached.
REACHED = {
    'poweroff': 'shutdown',
    'halt': 'halted',
    'reboot': 'running',
    'suspended_ram': 'suspended',
    'suspended_hybrid': 'suspended',
    'suspended_disk': 'shutdown',
    'running': 'running',
}

#: Bound on one "is the agent still there" probe, when the agent's silence is the signal.
AGENT_PROBE_SECONDS = 3.0
#: How long wait=false listens for an immediate refusal from the agent.
NO_WAIT_LISTEN_SECONDS = 1.0
_SLICE = 0.25


class PowerResult(object):
    def __init__(self):
        self.changed = False
        self.state_before = None
        self.state_after = None
        self.method = 'none'
        self.confirmed_by = None
        self.duration_ms = 0
        self.warnings = []
        self.events = []

    def as_dict(self):
        return {
            'changed': self.changed,
            'state_before': self.state_before,
            'state_after': self.state_after,
            'method': self.method,
            'confirmed_by': self.confirmed_by,
            'duration_ms': self.duration_ms,
            'events': self.events,
        }


class GuestPower(object):
    """Bring a guest to a power state: decide from what QMP (or the agent) shows, act, confirm.

    `qmp` is an open QMPSession or None; `open_qga` opens a QGASession on the
    agent socket (None when no agent socket was given).
    """

    def __init__(self, qmp, open_qga, qga_address, timeout, force=False, wait=True, check_mode=False,
                 wait_for_agent=None):
        self.qmp = qmp
        self.open_qga = open_qga
        self.qga_address = qga_address
        self.timeout = timeout
        self.force = force
        self.wait = wait
        self.check_mode = check_mode
        self._wait_for_agent = wait_for_agent
        self.result = PowerResult()
        self._started = None

    # -- observe ------------------------------------------------------------------------

    def qemu_state(self):
        return self.qmp.run_state()

    def _validate(self, state):
        if state not in POWER_STATES:
            raise ValueError('state: {0!r} is not one of {1}'.format(state, ', '.join(POWER_STATES)))
        if self.force and state not in ('poweroff', 'halt'):
            raise ValueError('force: only applies to state=poweroff and state=halt, not {0}'.format(state))
        if self.force and self.qmp is None:
            raise ValueError('force: needs qmp, the escalation (system_powerdown, then quit) goes through QMP')
        if state in ('suspended_ram', 'suspended_hybrid') and self.qmp is None:
            raise ValueError('qmp is required for state={0}: QEMU must be asked whether it can wake the guest '
                             'again before the guest suspends to RAM'.format(state))
        if state != 'running' and self.qga_address is None and not (self.force and self.qmp is not None):
            raise ValueError('qga is required for state={0}: the guest is asked through its agent'.format(state))
        if state == 'running' and self.qmp is None and self.qga_address is None:
            raise ValueError('state=running needs qmp (to wake a suspended guest) or qga (to see that it runs)')

    # -- entry point ----------------------------------------------------------------------

    def ensure(self, state):
        self._validate(state)
        if state == 'running':
            self._ensure_running()
        else:
            self._ensure_down(state)
        return self.result

    def _elapsed_ms(self):
        return int(round((time.monotonic() - self._started) * 1000)) if self._started else 0

    # -- running ----------------------------------------------------------------------------

    def _ensure_running(self):
        res = self.result
        if self.qmp is None:
            # Only the agent can be asked: it answering is the guest running.
            with self.open_qga():
                pass
            res.state_before = res.state_after = 'running'
            return
        before = self.qemu_state()
        res.state_before = before
        if before == 'running':
            res.state_after = 'running'
            return
        if before != 'suspended':
            raise VMStateError(_not_wakeable(before))
        if not self.qmp.has_command('system_wakeup'):
            raise VMStateError('the guest is suspended but this QEMU has no system_wakeup command to wake it')
        res.changed = True
        res.method = 'system_wakeup'
        if self.check_mode:
            res.state_after = 'running'
            return
        self._started = time.monotonic()
        with self.qmp.events('WAKEUP', 'RESET', 'SHUTDOWN') as watcher:
            self.qmp.execute('system_wakeup')
            if not self.wait:
                res.state_after = self.qemu_state()
                res.duration_ms = self._elapsed_ms()
                return
            deadline = Deadline(self.timeout)
            while True:
                event = _wait_slice(watcher, ('WAKEUP',), min(_SLICE, deadline.remaining()))
                status = self.qemu_state()
                if event is not None or status == 'running':
                    res.confirmed_by = 'WAKEUP event' if event is not None else 'query-status'
                    break
                if deadline.expired:
                    raise QemuTimeoutError('waking the guest (system_wakeup)', self.timeout,
                                           'QEMU still reports run state {0!r}'.format(status))
            res.events = _event_names(watcher.seen)
        if self.qga_address is not None:
            self._wait_agent_back()
            res.confirmed_by += ', agent answers'
        res.state_after = 'running'
        res.duration_ms = self._elapsed_ms()

    # -- down / reboot / suspend ------------------------------------------------------------

    def _ensure_down(self, state):
        res = self.result
        spec = TRANSITIONS[state]
        if self.qmp is not None:
            before = self.qemu_state()
            res.state_before = before
            if before in ALREADY[state]:
                res.state_after = before
                return
            if before != 'running':
                raise VMStateError(_cannot_act(state, before))
            if spec.needs_wakeup:
                self._require_wakeup_support(state)
        else:
            before = None
        res.changed = True
        if self.qga_address is None:
            # Only reachable with force and qmp: no agent to ask, escalate at once.
            res.state_before = before
            if self.check_mode:
                res.state_after = REACHED[state]
                res.method = 'acpi'
                return
            self._started = time.monotonic()
            self._escalate(state, 'no agent socket (qga) was given')
            return
        try:
            self._ask_agent(state, spec, before)
        except (AgentNotRespondingError, CommandError, QemuTimeoutError) as exc:
            if not self.force:
                raise
            if self.check_mode:
                res.warnings.append('force: the agent cannot {0} the guest ({1}); would press the ACPI power '
                                    'button (system_powerdown), then quit QEMU'.format(
                                        'power off' if state == 'poweroff' else 'halt', exc))
                res.method = 'acpi'
                res.state_after = REACHED[state]
                return
            if self._started is None:
                self._started = time.monotonic()
            self._escalate(state, str(exc))

    def _ask_agent(self, state, spec, before):
        res = self.result
        with self.open_qga() as qga:
            if res.state_before is None:
                res.state_before = 'running'  # the agent answered the handshake
            require_command(qga, spec.command)
            res.method = 'agent'
            if self.check_mode:
                res.state_after = REACHED[state]
                return
            self._started = time.monotonic()
            if self.qmp is not None:
                with self.qmp.events(*(spec.events + ('SHUTDOWN', 'RESET', 'SUSPEND'))) as watcher:
                    pending = qga.send_no_reply(spec.command, spec.arguments)
                    try:
                        if self.wait:
                            how = self._confirm_qmp(state, spec, qga, pending, watcher)
                        else:
                            how = self._listen_briefly(pending)
                    finally:
                        res.events = _event_names(watcher.seen)
            else:
                pending = qga.send_no_reply(spec.command, spec.arguments)
                how = self._confirm_agent_gone(state, qga, pending) if self.wait else self._listen_briefly(pending)
        res.confirmed_by = how
        if how is None:  # wait=false: not confirmed, report what QEMU shows right now
            res.state_after = self.qemu_state() if self.qmp is not None else 'unknown'
            res.duration_ms = self._elapsed_ms()
            return
        if state == 'reboot':
            self._wait_agent_back()
            res.confirmed_by += ', agent answers again'
            res.state_after = 'running'
        elif how == 'QEMU exited':
            res.state_after = 'exited'
        elif how == 'agent went silent':
            res.state_after = 'halted' if self.qmp is not None and state == 'halt' else 'agent_gone'
        else:
            res.state_after = self.qemu_state()
        res.duration_ms = self._elapsed_ms()

    def _require_wakeup_support(self, state):
        machine = self.qmp.execute('query-current-machine') if self.qmp.has_command('query-current-machine') else {}
        if not machine.get('wakeup-suspend-support'):
            raise VMStateError(
                'state={0} refused: QEMU reports this machine cannot wake a guest suspended to RAM '
                '(query-current-machine wakeup-suspend-support is not true; with machine pc, S3 may be '
                'disabled by -global PIIX4_PM.disable_s3=1)'.format(state))
        if not self.qmp.has_command('system_wakeup'):
            raise VMStateError('state={0} refused: this QEMU has no system_wakeup command, so a guest '
                               'suspended to RAM could never be woken'.format(state))

    def _listen_briefly(self, pending):
        """wait=false: give the agent a moment to refuse; it says nothing on success."""
        end = time.monotonic() + min(NO_WAIT_LISTEN_SECONDS, self.timeout)
        while time.monotonic() < end:
            pending.check()
            time.sleep(0.05)
        pending.check()
        return None

    def _confirm_qmp(self, state, spec, qga, pending, watcher):
        deadline = Deadline(self.timeout)
        while True:
            pending.check()
            event = _wait_slice(watcher, spec.events + ('SHUTDOWN',), min(_SLICE, deadline.remaining()))
            if event is not None:
                if state == 'reboot' and event.get('event') == 'SHUTDOWN':
                    raise VMStateError(
                        'the guest shut down instead of rebooting (QEMU {0}); is QEMU running with '
                        '-no-reboot?'.format(_event_text(event)))
                if event.get('event') in spec.events:
                    return '{0} event'.format(event.get('event'))
            pending.check()
            try:
                status = self.qemu_state()
            except ConnectionLostError:
                if state in ('poweroff', 'halt', 'suspended_disk'):
                    return 'QEMU exited'
                raise
            if status in spec.done_status:
                return 'query-status {0}'.format(status)
            if spec.gone_ok and not _agent_answers(qga, min(AGENT_PROBE_SECONDS, max(deadline.remaining(), 0.5))):
                pending.check()
                return 'agent went silent'
            if deadline.expired:
                raise QemuTimeoutError(
                    'waiting for the guest to reach {0} after {1}'.format(state, spec.command), self.timeout,
                    'QEMU still reports run state {0!r}; the guest did not comply (force=true escalates to '
                    'ACPI power-off, then quit)'.format(status))

    def _confirm_agent_gone(self, state, qga, pending):
        """Without QMP, the agent going silent is all there is to see."""
        deadline = Deadline(self.timeout)
        while True:
            pending.check()
            if not _agent_answers(qga, min(AGENT_PROBE_SECONDS, max(deadline.remaining(), 0.5))):
                pending.check()
                return 'agent went silent'
            pending.check()
            if deadline.expired:
                raise QemuTimeoutError(
                    'waiting for the guest agent to go away after {0}'.format(TRANSITIONS[state].command),
                    self.timeout, 'the agent still answers: the guest did not comply')
            time.sleep(_SLICE)

    def _wait_agent_back(self):
        seconds = self._wait_for_agent(self.qga_address, self.timeout)
        return seconds

    # -- force ------------------------------------------------------------------------------

    def _escalate(self, state, why):
        """ACPI power button, then quit: the destructive path, only with force=true."""
        res = self.result
        res.warnings.append('force: the guest did not {0} through its agent ({1}); pressing the ACPI power '
                            'button (system_powerdown)'.format('power off' if state == 'poweroff' else 'halt', why))
        res.method = 'acpi'
        with self.qmp.events('SHUTDOWN', 'POWERDOWN') as watcher:
            try:
                self.qmp.execute('system_powerdown')
                deadline = Deadline(self.timeout)
                while True:
                    event = _wait_slice(watcher, ('SHUTDOWN',), min(_SLICE, deadline.remaining()))
                    status = self.qemu_state()
                    if event is not None or status == 'shutdown':
                        res.confirmed_by = 'SHUTDOWN event' if event is not None else 'query-status shutdown'
                        res.state_after = 'shutdown'
                        res.duration_ms = self._elapsed_ms()
                        return
                    if deadline.expired:
                        break
            except ConnectionLostError:
                res.confirmed_by = 'QEMU exited'
                res.state_after = 'exited'
                res.duration_ms = self._elapsed_ms()
                return
            finally:
                res.events = res.events + _event_names(watcher.seen)
        res.warnings.append('force: the guest ignored the ACPI power button for {0:g} s; quitting QEMU '
                            '(like pulling the plug: unsynced guest data is lost)'.format(self.timeout))
        res.method = 'quit'
        try:
            self.qmp.execute('quit')
        except ConnectionLostError:
            pass  # QEMU may close the monitor before the reply
        res.confirmed_by = 'QEMU quit'
        res.state_after = 'exited'
        res.duration_ms = self._elapsed_ms()


def _agent_answers(qga, seconds):
    try:
        qga.execute('guest-ping', timeout=seconds)
        return True
    except (QemuTimeoutError, ConnectionLostError):
        return False


def _wait_slice(watcher, names, seconds):
    """The first event named in `names` within `seconds`, or None."""
    try:
        return watcher.wait(lambda e: e.get('event') in names, max(seconds, 0.01), what=' or '.join(names))
    except QemuTimeoutError:
        return None


def _event_names(events):
    return [e.get('event') for e in events]


def _event_text(event):
    data = event.get('data') or {}
    return '{0}{1}'.format(event.get('event'), ' ({0})'.format(data.get('reason')) if data.get('reason') else '')


def _cannot_act(state, status):
    if status == 'suspended':
        return ('state={0} refused: the guest is suspended (QEMU run state suspended) and its agent cannot '
                'answer; wake it first with state=running'.format(state))
    if status == 'shutdown':
        return ('state={0} refused: the guest is shut down (QEMU run state shutdown); this module does not '
                'start guests'.format(state))
    return ('state={0} refused: QEMU run state is {1!r}, the guest CPUs must be running for the agent to act '
            '(resume a paused VM with QMP cont)'.format(state, status))


def _not_wakeable(status):
    if status == 'shutdown':
        return ('state=running refused: the guest is shut down (QEMU run state shutdown); waking only works '
                'for a suspended guest, and this module does not start guests')
    return ('state=running refused: QEMU run state is {0!r}; state=running only wakes a suspended guest '
            '(resume a paused VM with QMP cont)'.format(status))
