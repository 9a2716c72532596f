# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest power transitions: carry out a PowerPlan (power_plan.decide), ask the agent, confirm
through QMP or the agent. No Ansible imports: qemu_guest_power runs the steps.

How each outcome is confirmed:
  - poweroff / suspend to disk: the SHUTDOWN event, then QEMU's run state `shutdown`, or the
    monitor closing (QEMU started without -no-shutdown exits); without QMP, the agent falls silent.
  - halt: QEMU cannot see a halted guest; the agent falling silent is the signal.
  - reboot: the guest's boot id (/proc/sys/kernel/random/boot_id) changes; with QMP also the RESET
    event. The agent never falls silent reliably across a reboot: virtio-serial hands bytes sent
    meanwhile to the next agent, which answers them.
  - suspend to RAM: the SUSPEND event or run state `suspended`; wake-up: WAKEUP or `running`.
"""

from __future__ import annotations

import base64
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    CommandError,
    ConnectionLostError,
    QemuTimeoutError,
    SocketError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import command_unavailable, require_command
from ansible_collections.qemu.vm.plugins.module_utils._guest.power_plan import (
    AGENT_PROBE_SECONDS,
    BOOT_ID_COMMANDS,
    BOOT_ID_PATH,
    BOOT_PROBE_SECONDS,
    DOWN_STATES,
    NO_WAIT_LISTEN_SECONDS,
    REACHED,
    SLICE_SECONDS,
    TRANSITIONS,
    PowerResult,
    check_power_request,
    decide,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import AgentSession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import SMALL_REPLY_BYTES
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline, wait_until


def read_boot_id(qga, timeout=None):
    """The guest kernel's boot id, or None when the agent's file commands cannot read it."""
    if any(command_unavailable(qga, name) is not None for name in BOOT_ID_COMMANDS):
        return None
    handle = qga.execute('guest-file-open', {'path': BOOT_ID_PATH, 'mode': 'r'}, timeout=timeout)
    try:
        reply = qga.execute('guest-file-read', {'handle': handle, 'count': 64}, timeout=timeout)
    finally:
        qga.execute('guest-file-close', {'handle': handle}, timeout=timeout)
    return base64.b64decode(reply.get('buf-b64', '')).decode('ascii', 'replace').strip() or None


class GuestPower:
    """Bring a guest to a power state: decide from what QMP (or the agent) shows, act, confirm.

    `qmp` is an open QMPSession or None; `open_qga()` opens a QGASession on the agent
    socket `qga_address` (None when no agent socket was given); `wait_for_agent(address,
    timeout)` waits for the agent to answer; `open_probe(seconds)` opens a short-lived
    agent session for one boot-id probe (default: an AgentSession bounded by `seconds`).
    """

    def __init__(self, qmp, open_qga, qga_address, timeout, force=False, wait=True, check_mode=False,
                 wait_for_agent=None, open_probe=None):
        self.qmp = qmp
        self.open_qga = open_qga
        self.qga_address = qga_address
        self.timeout = timeout
        self.force = force
        self.wait = wait
        self.check_mode = check_mode
        self._wait_for_agent = wait_for_agent
        self._open_probe = open_probe or (lambda seconds: AgentSession(qga_address, timeout=seconds, max_reply=SMALL_REPLY_BYTES))
        self.result = PowerResult()
        self._started = None

    def _elapsed_ms(self):
        return int(round((time.monotonic() - self._started) * 1000)) if self._started else 0

    def _start_clock(self):
        if self._started is None:
            self._started = time.monotonic()

    def ensure(self, state):
        """check, ask, decide and act in one call (the module runs the steps itself)."""
        check_power_request(state, self.force, self.qmp is not None, self.qga_address is not None)
        return self.carry_out(decide(state, self.run_state(), self.qga_address is not None))

    def run_state(self):  # QEMU's, None without QMP
        return self.qmp.run_state() if self.qmp is not None else None

    def carry_out(self, plan):
        """Act on a PowerPlan (power_plan.decide); returns the PowerResult."""
        state, run_state, action = plan
        res = self.result
        res.state_before = run_state
        if action == 'none':
            res.state_after = run_state
        elif action == 'probe':
            with self.open_qga():
                pass
            res.state_before = res.state_after = 'running'
        elif action == 'wakeup':
            self._wake_up()
        elif action == 'escalate' and self.check_mode:
            res.changed, res.method, res.state_after = True, 'acpi', REACHED[state]
        elif action == 'escalate':
            res.changed = True
            self._start_clock()
            self._escalate(state, 'no agent socket (qga) was given')
        else:
            res.changed = True
            self._ask_agent_or_escalate(state)
        return res

    # -- running ----------------------------------------------------------------------------

    def _wake_up(self):
        res = self.result
        if not self.qmp.has_command('system_wakeup'):
            raise VMStateError('the guest is suspended but this QEMU has no system_wakeup command to wake it')
        res.changed, res.method = True, 'system_wakeup'
        if self.check_mode:
            res.state_after = 'running'
            return
        self._start_clock()
        with self.qmp.events('WAKEUP', 'RESET', 'SHUTDOWN') as watcher:
            self.qmp.execute('system_wakeup')
            if not self.wait:
                res.state_after = self.run_state()
                res.duration_ms = self._elapsed_ms()
                return

            def woken():
                if _wait_slice(watcher, ('WAKEUP',), SLICE_SECONDS) is not None:
                    return 'WAKEUP event'
                return 'query-status' if self.run_state() == 'running' else None
            res.confirmed_by = wait_until(
                woken, Deadline(self.timeout), 'waking the guest (system_wakeup)', interval=0,
                hint=lambda: f'QEMU still reports run state {self.run_state()!r}')
            res.events = _event_names(watcher.seen)
        if self.qga_address is not None:
            self._wait_for_agent(self.qga_address, self.timeout)
            res.confirmed_by += ', agent answers'
        res.state_after = 'running'
        res.duration_ms = self._elapsed_ms()

    # -- down / reboot / suspend ------------------------------------------------------------

    def _ask_agent_or_escalate(self, state):
        res = self.result
        try:
            self._ask_agent(state, TRANSITIONS[state])
        except (AgentNotRespondingError, CommandError, QemuTimeoutError) as exc:
            if not self.force:
                raise
            if self.check_mode:
                res.warnings.append(f'force: the agent cannot {_verb(state)} the guest ({exc}); would press the ACPI power '
                                    'button (system_powerdown), then quit QEMU')
                res.method, res.state_after = 'acpi', REACHED[state]
                return
            self._start_clock()
            self._escalate(state, str(exc))

    def _ask_agent(self, state, spec):
        res = self.result
        if spec.needs_wakeup:
            self._require_wakeup_support(state)
        with self.open_qga() as qga:
            if res.state_before is None:
                res.state_before = 'running'  # the agent answered the handshake
            require_command(qga, spec.command)
            res.method = 'agent'
            if self.check_mode:
                res.state_after = REACHED[state]
                return
            boot_id = read_boot_id(qga) if state == 'reboot' else None
            if state == 'reboot' and boot_id is None and self.qmp is None and self.wait:
                raise VMStateError(
                    f'state=reboot without qmp is confirmed by the guest\'s boot id ({BOOT_ID_PATH}), which the agent cannot '
                    'read (guest-file-open/read/close unavailable); give qmp so the RESET event confirms '
                    'it')
            self._start_clock()
            if self.qmp is not None:
                with self.qmp.events(*(spec.events + ('SHUTDOWN', 'RESET', 'SUSPEND'))) as watcher:
                    pending = qga.send_no_reply(spec.command, spec.arguments)
                    try:
                        how = self._confirm_qmp(state, spec, qga, pending, watcher) if self.wait else \
                            self._listen_briefly(pending)
                    finally:
                        res.events = _event_names(watcher.seen)
            else:
                pending = qga.send_no_reply(spec.command, spec.arguments)
                if not self.wait:
                    how = self._listen_briefly(pending)
                elif state == 'reboot':
                    how = self._agent_processed(qga, pending, boot_id)
                else:
                    how = self._confirm_agent_gone(state, qga, pending)
        res.confirmed_by = how
        if how is None:  # wait=false: not confirmed, report what QEMU shows right now
            res.state_after = self._state_or_exited() if self.qmp is not None else 'unknown'
        elif state == 'reboot':
            res.confirmed_by = self._confirm_new_boot(how, boot_id)
            res.state_after = 'running'
        elif how == 'QEMU exited':
            res.state_after = 'exited'
        elif how == 'agent went silent':
            res.state_after = 'halted' if self.qmp is not None and state == 'halt' else 'agent_gone'
        else:
            self._settle(state, how)
        res.duration_ms = self._elapsed_ms()

    def _settle(self, state, how):
        """state_after and confirmed_by once QEMU reported the transition.

        Right after the SHUTDOWN event QEMU may still say `running` for a moment (it sends
        the event, then stops the VM, or exits when started without -no-shutdown): wait for
        the run state the request leads to, or for the monitor to close.
        """
        res = self.result

        def settled():
            status = self._state_or_exited()
            if status == 'exited' or state not in DOWN_STATES or status in TRANSITIONS[state].done_status:
                return status
            return None
        res.state_after = wait_until(settled, Deadline(self.timeout), 'waiting for QEMU to stop or exit after '
                                     f'{how}', interval=0.05)
        res.confirmed_by = how if res.state_after != 'exited' else f'{how}, QEMU exited'

    def _state_or_exited(self):
        try:
            return self.run_state()
        except ConnectionLostError:
            return 'exited'

    def _require_wakeup_support(self, state):
        machine = self.qmp.execute('query-current-machine') if self.qmp.has_command('query-current-machine') else {}
        if not machine.get('wakeup-suspend-support'):
            raise VMStateError(
                f'state={state} refused: QEMU reports this machine cannot wake a guest suspended to RAM '
                '(query-current-machine wakeup-suspend-support is not true; with machine pc, S3 may be '
                'disabled by -global PIIX4_PM.disable_s3=1)')
        if not self.qmp.has_command('system_wakeup'):
            raise VMStateError(f'state={state} refused: this QEMU has no system_wakeup command, so a guest '
                               'suspended to RAM could never be woken')

    def _listen_briefly(self, pending):
        """wait=false: give the agent a moment to refuse; it says nothing on success."""
        def refused():
            pending.check()  # raises the agent's refusal, if one came
            return None

        wait_until(refused, Deadline(min(NO_WAIT_LISTEN_SECONDS, self.timeout)), 'the agent',
                   interval=0.05, default=None)
        pending.check()
        return None

    def _confirm_qmp(self, state, spec, qga, pending, watcher):
        deadline = Deadline(self.timeout)
        last = {}

        def reached():
            pending.check()
            event = _wait_slice(watcher, spec.events + ('SHUTDOWN',), min(SLICE_SECONDS, deadline.remaining()))
            if event is not None:
                if state == 'reboot' and event.get('event') == 'SHUTDOWN':
                    raise VMStateError(
                        f'the guest shut down instead of rebooting (QEMU {_event_text(event)}); is QEMU running with '
                        '-no-reboot?')
                if event.get('event') in spec.events:
                    return '{0} event'.format(event.get('event'))
            pending.check()
            try:
                last['status'] = self.run_state()
            except ConnectionLostError:
                if state in DOWN_STATES:
                    return 'QEMU exited'
                raise
            if last['status'] in spec.done_status:
                event = _sent_before(watcher, spec.events)
                return 'query-status {0}'.format(last['status']) if event is None else '{0} event'.format(event.get('event'))
            if spec.gone_ok and not _agent_answers(qga, min(AGENT_PROBE_SECONDS, max(deadline.remaining(), 0.5))):
                pending.check()
                return 'agent went silent'
            return None

        return wait_until(
            reached, deadline, f'waiting for the guest to reach {state} after {spec.command}',
            interval=0, hint=lambda: 'QEMU still reports run state {0!r}; the guest did not comply (force=true '
                                     'escalates to ACPI power-off, then quit)'.format(last.get('status')))

    def _confirm_agent_gone(self, state, qga, pending):
        """Without QMP, a powered-off guest's agent going silent is all there is to see."""
        def gone():
            pending.check()
            answers = _agent_answers(qga, min(AGENT_PROBE_SECONDS, max(deadline.remaining(), 0.5)))
            pending.check()
            return None if answers else 'agent went silent'
        deadline = Deadline(self.timeout)
        return wait_until(gone, deadline,
                          f'waiting for the guest agent to go away after {TRANSITIONS[state].command}',
                          hint=lambda: 'the agent still answers: the guest did not comply', interval=SLICE_SECONDS)

    def _agent_processed(self, qga, pending, boot_id):
        """Reboot without QMP: one probe on the same channel.

        The agent handles requests in order, so an answer to the probe means it has
        processed guest-shutdown, and any refusal arrived first (pending.check raises it).
        """
        try:
            seen = _boot_id_or_none(lambda: read_boot_id(qga, BOOT_PROBE_SECONDS))
        finally:
            pending.check()
        return 'boot id changed' if seen is not None and seen != boot_id else 'guest-shutdown accepted'

    def _confirm_new_boot(self, how, boot_id):
        """After the reboot request: the agent answers again from a new boot."""
        if how == 'boot id changed':
            return how
        if boot_id is None:  # RESET seen; the agent cannot read the boot id: any answer is the new agent
            self._wait_for_agent(self.qga_address, self.timeout)
            return f'{how}, agent answers again'
        deadline = Deadline(self.timeout)
        last_error = []

        def new_boot():
            with self._open_probe(max(min(BOOT_PROBE_SECONDS, deadline.remaining()), 0.5)) as probe:
                seen = _boot_id_or_none(lambda: read_boot_id(probe), last_error)
            return seen if seen is not None and seen != boot_id else None

        def hint():
            if last_error:
                return f'the guest agent could not read the boot id: {last_error[0]}'
            return f'the guest still reports boot id {boot_id}: it did not reboot'
        wait_until(lambda: _session_or_none(new_boot), deadline, 'waiting for the guest to boot again',
                   hint=hint, interval=0.2)
        return 'RESET event, new boot id' if how == 'RESET event' else 'new boot id'

    # -- force ------------------------------------------------------------------------------

    def _escalate(self, state, why):
        """ACPI power button, then quit: the destructive path, only with force=true."""
        res = self.result
        res.warnings.append(f'force: the guest did not {_verb(state)} through its agent ({why}); pressing the ACPI power '
                            'button (system_powerdown)')
        res.method = 'acpi'
        with self.qmp.events('SHUTDOWN', 'POWERDOWN') as watcher:
            def powered_down():
                if _wait_slice(watcher, ('SHUTDOWN',), SLICE_SECONDS) is not None:
                    return 'SHUTDOWN event'
                return 'query-status shutdown' if self.run_state() == 'shutdown' else None
            try:
                self.qmp.execute('system_powerdown')
                how = _poll_quietly(powered_down, Deadline(self.timeout))
                if how is not None:
                    self._settle(state, how)
            except ConnectionLostError:
                res.confirmed_by, res.state_after = 'QEMU exited', 'exited'
            finally:
                res.events = res.events + _event_names(watcher.seen)
        if res.state_after is None:
            res.warnings.append(f'force: the guest ignored the ACPI power button for {self.timeout:g} s; quitting QEMU '
                                '(like pulling the plug: unsynced guest data is lost)')
            res.method = 'quit'
            try:
                self.qmp.execute('quit')
            except ConnectionLostError:
                pass  # QEMU may close the monitor before the reply
            res.confirmed_by, res.state_after = 'QEMU quit', 'exited'
        res.duration_ms = self._elapsed_ms()


def _poll_quietly(predicate, deadline):
    """predicate()'s first truthy answer within `deadline`, or None when it runs out."""
    try:
        return wait_until(predicate, deadline, 'poll', interval=0)
    except QemuTimeoutError:
        return None


def _boot_id_or_none(read, errors=None):
    """The boot id, or None while the agent cannot answer it (it is going down or coming up).

    A reboot can fall between the commands of one read: a handle opened by the old agent
    is unknown to the new one ("handle ... has not been found"), so agent errors mean
    "not yet" here too; the last one is kept in `errors` for the timeout's message.
    """
    try:
        seen = read()
    except (AgentNotRespondingError, ConnectionLostError, QemuTimeoutError, CommandError) as exc:
        if errors is not None:
            errors[:] = [exc]
        return None
    if errors is not None:
        errors[:] = []
    return seen


def _session_or_none(probe):
    """probe()'s answer, or None when the probe's own session could not be opened (guest rebooting)."""
    try:
        return probe()
    except (AgentNotRespondingError, ConnectionLostError, SocketError, QemuTimeoutError):
        return None


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


def _sent_before(watcher, names):
    """An event in `names` received but not waited for yet: QEMU sends SHUTDOWN or SUSPEND before query-status shows its state."""
    return _wait_slice(watcher, names, 0)


def _verb(state):
    return 'power off' if state == 'poweroff' else 'halt'


def _event_names(events):
    return [e.get('event') for e in events]


def _event_text(event):
    data = event.get('data') or {}
    return '{0}{1}'.format(event.get('event'), ' ({0})'.format(data.get('reason')) if data.get('reason') else '')
