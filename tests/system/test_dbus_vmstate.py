"""qemu_dbus_vmstate and the dbus-vmstate preflight against real parts.

A private dbus-daemon per test, real org.qemu.VMState1 helper processes (tests/harness/
vmstate_helper.py, on jeepney), and one real QEMU for the whole file (the tests remove the
dbus-vmstate object after themselves). Snapshots are driven with the collection's QMP
transport (run_job), not with qemu_snapshot.
"""

import os
import uuid

import pytest

from harness.ansible import run_module, run_playbook
from harness.dbus import Bus
from harness.guest import VM

from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.errors import DBusVMStateError
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.vmstate import (
    check_helpers,
    preflight_dbus_vmstate,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import JobError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession

MODULE = 'qemu_dbus_vmstate'
OBJECT = 'dbus-vmstate0'


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def qemu(guest_images, tmp_path_factory):
    """One VM for the file; its guest agent is not needed."""
    machine = VM(tmp_path_factory.mktemp('dbusvm'), agent=False, images=guest_images)
    machine.start()
    try:
        yield machine
    finally:
        machine.stop()


@pytest.fixture
def vm(qemu):
    """The shared VM, alive, without any dbus-vmstate object before and after the test."""
    assert qemu.is_running(), 'QEMU died in an earlier test'
    _remove_objects(qemu)
    yield qemu
    if qemu.is_running():
        _remove_objects(qemu)


@pytest.fixture
def bus(tmp_path):
    with Bus(tmp_path / 'bus') as private_bus:
        yield private_bus


def _remove_objects(machine):
    for entry in machine.qmp('qom-list', path='/objects'):
        if entry['type'] == 'child<dbus-vmstate>':
            machine.qmp('object-del', id=entry['name'])


def dbus_objects(machine):
    """{id: {'addr', 'id-list'}} of the VM's dbus-vmstate objects, read with raw QMP."""
    found = {}
    for entry in machine.qmp('qom-list', path='/objects'):
        if entry['type'] == 'child<dbus-vmstate>':
            path = '/objects/' + entry['name']
            found[entry['name']] = {prop: machine.qmp('qom-get', path=path, property=prop)
                                    for prop in ('addr', 'id-list')}
    return found


def add_object(machine, addr, id_list=None):
    args = {'qom-type': 'dbus-vmstate', 'id': OBJECT, 'addr': addr}
    if id_list:
        args['id-list'] = ','.join(id_list)
    machine.qmp('object-add', **args)


def snapshot(machine, command, tag):
    """snapshot-save / snapshot-load of disk0 through the collection's transport."""
    with QMPSession(machine.qmp_path, timeout=120) as qmp:
        return qmp.run_job(command, {'tag': tag, 'vmstate': 'disk0', 'devices': ['disk0']})


def snapshot_tags(machine):
    nodes = {n['node-name']: n for n in machine.qmp('query-named-block-nodes', flat=True)}
    return [s['name'] for s in nodes['disk0']['image'].get('snapshots', [])]


def assert_alive(machine):
    assert machine.is_running(), f'QEMU exited with status {machine.proc.returncode}'
    assert machine.status() == 'running'


def unique_tag():
    return 'dbus-' + uuid.uuid4().hex[:8]


# -- present / absent ----------------------------------------------------------------------------

def test_present_and_absent_four_steps(vm, bus):
    net = bus.helper('net0', state=b'net state')
    args = {'qmp': vm.qmp_path, 'addr': bus.address, 'id_list': ['net0']}

    check = run_module(MODULE, args, check=True)
    assert check['rc'] == 0 and check.changed, check['output']
    assert check['commands'] == ['object-add']
    assert dbus_objects(vm) == {}, 'check mode changed the VM'

    real = run_module(MODULE, args)
    assert real.changed and real['commands'] == ['object-add'], real['output']
    assert dbus_objects(vm) == {OBJECT: {'addr': bus.address, 'id-list': 'net0'}}
    assert real['state'] == 'present' and real['id_list'] == ['net0'] and real['addr'] == bus.address
    assert real['helpers'] == [{'name': net.unique_name, 'id': 'net0', 'included': True}]

    again_check = run_module(MODULE, args, check=True)
    assert again_check['rc'] == 0 and not again_check.changed and again_check['commands'] == []
    again = run_module(MODULE, args)
    assert again['rc'] == 0 and not again.changed and again['commands'] == [], again['output']
    assert again['recreated'] is False

    gone_args = {'qmp': vm.qmp_path, 'state': 'absent'}
    check = run_module(MODULE, gone_args, check=True)
    assert check.changed and check['commands'] == ['object-del'], check['output']
    assert OBJECT in dbus_objects(vm), 'check mode removed the object'
    real = run_module(MODULE, gone_args)
    assert real.changed and real['state'] == 'absent', real['output']
    assert dbus_objects(vm) == {}
    assert not run_module(MODULE, gone_args, check=True).changed
    last = run_module(MODULE, gone_args)
    assert last['rc'] == 0 and not last.changed
    assert_alive(vm)


def test_id_list_changes_in_place_addr_change_recreates(vm, bus, tmp_path):
    bus.helper('a')
    bus.helper('b')
    base = {'qmp': vm.qmp_path, 'addr': bus.address}
    assert run_module(MODULE, dict(base, id_list=['a'])).changed

    grown = run_module(MODULE, dict(base, id_list=['b', 'a']))
    assert grown.changed and grown['commands'] == ['qom-set'] and grown['recreated'] is False, grown['output']
    assert dbus_objects(vm)[OBJECT]['id-list'] == 'b,a'
    # Same Ids in another order: nothing to do. Omitted id_list: not managed.
    assert not run_module(MODULE, dict(base, id_list=['a', 'b'])).changed
    assert not run_module(MODULE, base).changed

    with Bus(tmp_path / 'bus2') as other:
        other.helper('a')
        other.helper('b')
        moved_args = dict(base, addr=other.address)
        check = run_module(MODULE, moved_args, check=True)
        assert check.changed and check['commands'] == ['object-del', 'object-add'] and check['recreated']
        assert dbus_objects(vm)[OBJECT]['addr'] == bus.address
        moved = run_module(MODULE, moved_args)
        assert moved.changed and moved['recreated'], moved['output']
        # The id-list was not managed in this call, so the new object keeps it.
        assert dbus_objects(vm) == {OBJECT: {'addr': other.address, 'id-list': 'b,a'}}
        assert not run_module(MODULE, moved_args).changed

        # Removing the id-list cannot be done in place (an empty id-list means "save nobody").
        cleared = run_module(MODULE, dict(moved_args, id_list=[]))
        assert cleared.changed and cleared['commands'] == ['object-del', 'object-add'], cleared['output']
        assert dbus_objects(vm) == {OBJECT: {'addr': other.address, 'id-list': ''}}
        assert not run_module(MODULE, dict(moved_args, id_list=[])).changed
        run_module(MODULE, {'qmp': vm.qmp_path, 'state': 'absent'})
    assert_alive(vm)


def test_playbook_with_group_defaults_and_diff(vm, bus):
    bus.helper('net0')
    playbook = f'''
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/qemu.vm.qemu:
      qmp: {vm.qmp_path}
  tasks:
    - name: Add the object
      qemu.vm.qemu_dbus_vmstate:
        addr: "{bus.address}"
        id_list: [net0]
      register: added
    - name: Helpers and the diff are reported
      ansible.builtin.assert:
        that:
          - added is changed
          - added.helpers | selectattr('included') | map(attribute='id') | list == ['net0']
          - added.diff.before.state == 'absent'
          - added.diff.after.id_list == ['net0']
          - added.diff.after.addr == "{bus.address}"
    - name: Grow the id-list
      qemu.vm.qemu_dbus_vmstate:
        addr: "{bus.address}"
        id_list: [net0, tpm0]
        check_helpers: false
      register: grown
    - name: In place
      ansible.builtin.assert:
        that:
          - grown.commands == ['qom-set']
          - grown.diff.before.id_list == ['net0']
          - grown.diff.after.id_list == ['net0', 'tpm0']
    - name: Remove it
      qemu.vm.qemu_dbus_vmstate:
        state: absent
      register: removed
    - name: Removed
      ansible.builtin.assert:
        that:
          - removed is changed
          - removed.diff.after.state == 'absent'
'''
    proc = run_playbook(playbook, diff=True)
    assert proc.returncode == 0, proc.stdout
    assert 'failed=0' in proc.stdout
    assert dbus_objects(vm) == {}


# -- state round-trips through a snapshot ------------------------------------------------------------

def test_helper_state_round_trips_through_snapshot(vm, bus):
    alpha_saved = b'\x00alpha\xff\x00' + bytes(range(256))
    beta_saved = os.urandom(64 * 1024)
    alpha = bus.helper('alpha', state=alpha_saved)
    beta = bus.helper('beta', state=beta_saved)
    result = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address, 'id_list': ['alpha', 'beta']})
    assert result.changed, result['output']

    tag = unique_tag()
    with QMPSession(vm.qmp_path, timeout=60) as qmp:
        report = preflight_dbus_vmstate(qmp)
    assert report['object_id'] == OBJECT and report['id_list'] == ['alpha', 'beta']
    assert sorted(h['id'] for h in report['helpers'] if h['included']) == ['alpha', 'beta']
    snapshot(vm, 'snapshot-save', tag)
    try:
        assert [c['size'] for c in alpha.calls('Save')] == [len(alpha_saved)]
        assert [c['size'] for c in beta.calls('Save')] == [len(beta_saved)]
        assert alpha.loaded() is None and beta.loaded() is None

        alpha.set_state(b'alpha changed after the snapshot')
        beta.set_state(b'beta changed after the snapshot')
        snapshot(vm, 'snapshot-load', tag)

        assert alpha.loaded() == alpha_saved
        assert beta.loaded() == beta_saved
        assert alpha.state() == alpha_saved and beta.state() == beta_saved
        assert len(alpha.calls('Load')) == 1 and len(beta.calls('Load')) == 1
        assert_alive(vm)
    finally:
        with QMPSession(vm.qmp_path, timeout=60) as qmp:
            qmp.run_job('snapshot-delete', {'tag': tag, 'devices': ['disk0']})


# -- the preflight refuses what QEMU would crash or fail on ------------------------------------------

def test_duplicate_ids_are_refused_and_qemu_survives(vm, bus):
    first = bus.helper('dup', state=b'one')
    add_object(vm, bus.address)  # no id-list: QEMU 7.2 would abort at the next save
    second = bus.helper('dup', state=b'two')

    tag = unique_tag()
    with QMPSession(vm.qmp_path, timeout=60) as qmp:
        with pytest.raises(DBusVMStateError) as caught:
            preflight_dbus_vmstate(qmp)
            qmp.run_job('snapshot-save', {'tag': tag, 'vmstate': 'disk0', 'devices': ['disk0']})
    error = caught.value
    assert [p['problem'] for p in error.problems] == ['duplicate_id']
    assert error.problems[0]['helpers'] == [first.unique_name, second.unique_name]
    assert "'dup'" in str(error) and first.unique_name in str(error) and second.unique_name in str(error)
    assert 'aborts' in str(error)
    assert error.details()['object_id'] == OBJECT

    assert_alive(vm)
    assert tag not in snapshot_tags(vm)
    assert first.calls('Save') == [] and second.calls('Save') == []

    # The module refuses it too, and says which helpers.
    failed = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address})
    assert failed.failed and failed['rc'] != 0
    assert first.unique_name in failed['msg'] and second.unique_name in failed['msg'], failed['output']
    assert failed['problems'][0]['problem'] == 'duplicate_id'
    assert failed['error_type'] == 'DBusVMStateError'
    assert_alive(vm)


def test_missing_helper_is_named_instead_of_operation_not_permitted(vm, bus):
    bus.helper('alpha')
    assert run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address, 'id_list': ['alpha']}).changed
    # check_helpers=false lets the object be configured before a helper runs; the id-list changes in place.
    result = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address, 'id_list': ['alpha', 'ghost'],
                                 'check_helpers': False})
    assert result.changed and result['commands'] == ['qom-set'], result['output']

    # What QEMU alone says about it (which also shows that the qom-set id-list is in force):
    with pytest.raises(JobError) as vague:
        snapshot(vm, 'snapshot-save', unique_tag())
    assert 'Operation not permitted' in str(vague.value) and 'ghost' not in str(vague.value)
    assert_alive(vm)

    # What the preflight says:
    with QMPSession(vm.qmp_path, timeout=60) as qmp:
        with pytest.raises(DBusVMStateError) as caught:
            preflight_dbus_vmstate(qmp)
    assert [(p['problem'], p['id']) for p in caught.value.problems] == [('missing_helper', 'ghost')]
    assert "'ghost'" in str(caught.value) and 'DO_NOT_QUEUE' not in str(caught.value)

    # A helper that asked for the name with DO_NOT_QUEUE is invisible to QEMU; the message names it.
    stray = bus.helper('ghost', do_not_queue=True)
    assert stray.request_result == 'exists'
    failed = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address, 'id_list': ['alpha', 'ghost']})
    assert failed.failed, failed['output']
    assert "'ghost'" in failed['msg'] and stray.unique_name in failed['msg'] and 'DO_NOT_QUEUE' in failed['msg']
    assert failed['problems'] == [{
        'problem': 'missing_helper', 'id': 'ghost', 'helpers': [stray.unique_name],
        'message': failed['problems'][0]['message']}]
    assert_alive(vm)


def test_ids_longer_than_255_bytes_are_refused(vm, bus):
    long_id = 'h' * 256
    bus.helper(long_id)
    bus.helper('x' * 255)  # the longest Id QEMU accepts
    add_object(vm, bus.address)
    with QMPSession(vm.qmp_path, timeout=60) as qmp:
        with pytest.raises(DBusVMStateError) as caught:
            preflight_dbus_vmstate(qmp)
    assert [(p['problem'], p['id']) for p in caught.value.problems] == [('invalid_id', long_id)]
    assert '256 bytes long' in str(caught.value)
    assert_alive(vm)
    _remove_objects(vm)

    # As a parameter: refused before QEMU is asked.
    failed = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address, 'id_list': ['x' * 300]})
    assert failed.failed and 'id_list' in failed['msg'] and '300 bytes' in failed['msg'], failed['output']
    assert dbus_objects(vm) == {}


# -- bad input and unusable set-ups ---------------------------------------------------------------------

def test_bad_input_is_refused_and_vm_untouched(vm, bus, tmp_path):
    cases = [
        ({'object_id': '0bad id'}, 'object_id'),
        ({'id_list': ['a,b']}, 'comma'),
        ({'id_list': ['a', 'a']}, 'twice'),
        ({'id_list': ['']}, 'empty'),
    ]
    for extra, word in cases:
        args = dict({'qmp': vm.qmp_path, 'addr': bus.address}, **extra)
        failed = run_module(MODULE, args)
        assert failed.failed and word in failed['msg'], (extra, failed['output'])
        assert failed['error_type'] == 'ParameterError', failed['output']
    missing_addr = run_module(MODULE, {'qmp': vm.qmp_path})
    assert missing_addr.failed and 'addr' in missing_addr['msg']

    nowhere = 'unix:path={0}'.format(tmp_path / 'no-bus-here')
    unreachable = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': nowhere})
    assert unreachable.failed and nowhere in unreachable['msg'] and 'check_helpers' in unreachable['msg']
    assert unreachable['error_type'] == 'DBusBusError'
    assert dbus_objects(vm) == {}

    # QEMU allows one dbus-vmstate object: a second id is refused by name.
    add_object(vm, bus.address)
    other = run_module(MODULE, {'qmp': vm.qmp_path, 'addr': bus.address, 'object_id': 'second'})
    assert other.failed and "'dbus-vmstate0'" in other['msg'], other['output']
    absent_other = run_module(MODULE, {'qmp': vm.qmp_path, 'state': 'absent', 'object_id': 'second'})
    assert not absent_other.changed and absent_other['rc'] == 0
    # Warnings are printed by the ad-hoc callback, not kept in its one-line result.
    assert "has no dbus-vmstate object 'second', but has 'dbus-vmstate0'" in absent_other['output']
    assert list(dbus_objects(vm)) == [OBJECT]
    assert_alive(vm)


def test_preflight_without_object_and_with_dead_bus(vm, tmp_path):
    with QMPSession(vm.qmp_path, timeout=30) as qmp:
        assert preflight_dbus_vmstate(qmp) is None

    dead = Bus(tmp_path / 'dead').start()
    add_object(vm, dead.address)
    dead.stop()
    with QMPSession(vm.qmp_path, timeout=30) as qmp:
        with pytest.raises(DBusBusError) as caught:
            preflight_dbus_vmstate(qmp)
    assert OBJECT in str(caught.value) and dead.address in str(caught.value)
    assert_alive(vm)


def test_wedged_and_id_less_helpers_are_reported_not_waited_for(bus):
    good = bus.helper('net0')
    wedged = bus.helper('wedged', hang=True)
    nameless = bus.helper('nameless', no_id_property=True)
    checked = check_helpers(bus.address, None, 30)
    by_name = {h['name']: h for h in checked['helpers']}
    assert by_name[good.unique_name] == {'name': good.unique_name, 'id': 'net0', 'included': True}
    assert by_name[wedged.unique_name]['id'] is None and 'did not answer' in by_name[wedged.unique_name]['error']
    assert by_name[nameless.unique_name]['id'] is None and not by_name[nameless.unique_name]['included']
    assert checked['problems'] == []
    assert sorted(w.split()[1] for w in checked['warnings']) == sorted([wedged.unique_name, nameless.unique_name])
    assert wedged.calls('GetAll')
