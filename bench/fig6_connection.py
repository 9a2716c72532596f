# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 6: the qemu.vm.qga connection against community.libvirt.libvirt_qemu (issue 18).

The same test guest runs twice at once: as a harness VM (tests/harness, QEMU with the agent on a
unix socket that qemu.vm.qga opens) and as a libvirt domain (bench/libvirt_guest.py, the agent
channel held by libvirtd, which libvirt_qemu reaches through virDomainQemuAgentCommand). Both have
the same kernel, initrd, disks, RAM and one TCG vCPU. Every play runs with the bench venv's
ansible-playbook (.venv-bench: the `ansible` package, so community.libvirt 2.0.0, on the same
ansible-core as the project), `-vvvv` into a log file whose millisecond timestamps give the raw
transfer spans. The guest's Python is a wrapper (TIMED_PYTHON) that records how long each module
ran inside the guest, so a task's time splits into the module's own run and the connection's rest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime

from harness.ansible import REPO, ensure_collection_link  # pylint: disable=import-error
from tools import MIB, median, random_file  # pylint: disable=import-error

#: The guest's "python": runs the real one and appends "<start> <end>" (uptime seconds, 10 ms
#: resolution; sh built-ins only, so it adds no process start of its own) to /tmp/bench/times.
TIMED_PYTHON = r'''#!/bin/sh
read s rest < /proc/uptime
/usr/bin/python3 "$@"
rc=$?
read e rest < /proc/uptime
echo "$s $e" >> /tmp/bench/times
exit $rc
'''
SIZES = (8 * MIB, 64 * MIB)
# (name in the results, inventory host, pipelining)
VARIANTS = (('qga', 'harness', False), ('qga_pipe', 'harness', True), ('libvirt', 'libvirt', False))
TRANSFER_VARIANTS = ('qga_pipe', 'libvirt')  # put_file/fetch_file do not depend on pipelining
LOG_LINE = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?<([^>]+)> (.*)$')


def bench_venv():
    return os.environ.get('BENCH_VENV') or os.path.join(REPO, '.venv-bench')


def inventory(path, qga_socket, domain):
    with open(path, 'w') as handle:
        handle.write(f'harness ansible_connection=qemu.vm.qga ansible_qemu_qga={qga_socket}\n')
        handle.write(f'libvirt ansible_connection=community.libvirt.libvirt_qemu ansible_host={domain} '
                     'ansible_libvirt_uri=qemu:///system\n')
        handle.write('[all:vars]\nansible_python_interpreter=/tmp/bench/timed-python\n')
    return path


def _play(tasks):
    return [{'hosts': 'all', 'gather_facts': False, 'tasks': tasks + [
        _raw('cat /tmp/bench/times; : > /tmp/bench/times')]}]


def _raw(command):
    # libvirt_qemu runs raw's words without a shell unless `executable` says which.
    return {'ansible.builtin.raw': command, 'args': {'executable': '/bin/sh'}}


def playbooks(workdir, data):
    """The measured plays (JSON is YAML): 1 and 10 commands, copy and fetch per size."""
    command = {'ansible.builtin.command': '/bin/true', 'changed_when': False}
    plays = {'cmd1': _play([command]), 'cmd10': _play([command] * 10)}
    for size in SIZES:
        mib = size // MIB
        plays[f'put{mib}'] = _play([
            {'ansible.builtin.copy': {'src': data[size], 'dest': '/tmp/bench/put.bin', 'mode': '0644'}},
            _raw('rm -f /tmp/bench/put.bin')])
        plays[f'get{mib}'] = _play([
            {'ansible.builtin.fetch': {'src': f'/tmp/bench/src{mib}.bin',
                                       'dest': os.path.join(workdir, 'fetched-{{ inventory_hostname }}.bin'),
                                       'flat': True}}])
    script = "'" + TIMED_PYTHON.replace("'", "'\\''") + "'"
    sources = ' && '.join(f'head -c {s} /dev/urandom > /tmp/bench/src{s // MIB}.bin' for s in SIZES)
    setup = [{'hosts': 'all', 'gather_facts': False, 'tasks': [_raw(
        "mkdir -p /tmp/bench && printf '%s' " + script + " > /tmp/bench/timed-python && "
        "chmod 755 /tmp/bench/timed-python && : > /tmp/bench/times && " + sources)]}]
    plays['setup'] = setup
    paths = {}
    for name, play in plays.items():
        paths[name] = os.path.join(workdir, name + '.yml')
        with open(paths[name], 'w') as handle:
            json.dump(play, handle, indent=1)
    return paths


def run_play(workdir, inv, playbook, host, pipelining, tag):
    """Run one play on one host; (wall seconds, module run seconds list, log path)."""
    log_path = os.path.join(workdir, 'logs', f'{tag}.log')
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    if os.path.exists(log_path):
        os.unlink(log_path)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=ensure_collection_link(), ANSIBLE_PIPELINING=str(pipelining),
               ANSIBLE_LOG_PATH=log_path, ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_RETRY_FILES_ENABLED='False',
               ANSIBLE_LOCALHOST_WARNING='False')
    env.pop('PYTHONPATH', None)
    argv = [os.path.join(bench_venv(), 'bin', 'ansible-playbook'), '-i', inv, '-l', host, '-vvvv', playbook]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                          check=False, timeout=1800)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f'{os.path.basename(playbook)} on {host} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}')
    return wall, module_times(proc.stdout, host), log_path


def module_times(stdout, host):
    """Seconds each module ran in the guest, from the last task's `times` output (json callback)."""
    # -vvvv lines come first; the json callback's document starts on a line of its own.
    result = json.JSONDecoder().raw_decode(stdout[stdout.rindex('\n{\n') + 1:])[0]
    last = result['plays'][-1]['tasks'][-1]['hosts'][host]
    out = []
    for line in last.get('stdout', '').splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append(float(parts[1]) - float(parts[0]))
    return out


def _stamp(text):
    return datetime.strptime(text, '%Y-%m-%d %H:%M:%S,%f').timestamp()


def transfer_span(log_path, verb, marker):
    """Seconds from the connection's `PUT <marker...>`/`FETCH <marker...>` line to the end of that transfer.

    The end is qemu.vm.qga's own `PUT|FETCH <n> bytes` line (-vvvv), or for libvirt_qemu the agent's
    reply to the `guest-file-close` that ends its transfer loop.
    """
    start = None
    closing = False
    with open(log_path, errors='replace') as handle:
        for raw in handle:
            match = LOG_LINE.match(raw.rstrip('\n'))
            if not match:
                continue
            stamp, message = _stamp(match.group(1)), match.group(3)
            if start is None:
                if message.startswith(verb + ' ') and marker in message:
                    start = stamp
                continue
            if re.match(rf'{verb} \d+ bytes', message):
                return stamp - start
            if message.startswith('GA send:') and 'guest-file-close' in message:
                closing = True
            elif closing and message.startswith('GA return:'):
                return stamp - start
    raise RuntimeError(f'no complete {verb} of {marker} in {log_path}')


def connection_seconds(log_path):
    """Seconds spent inside the connection's exec_command/put_file/fetch_file calls of a play.

    qemu.vm.qga says each call's time itself (`EXEC rc=.. in X s`, `PUT|FETCH <n> bytes in X s`, -vvvv);
    for libvirt_qemu a call runs from its `EXEC`/`PUT`/`FETCH` line to its `GA stderr:` line (exec) or
    to the agent's reply to its `guest-file-close` (transfers), at the log's timestamps.
    """
    total, start, closing = 0.0, None, False
    own = re.compile(r'^(?:EXEC rc=-?\d+|PUT \d+ bytes|FETCH \d+ bytes) in ([0-9.]+) s')
    with open(log_path, errors='replace') as handle:
        for raw in handle:
            match = LOG_LINE.match(raw.rstrip('\n'))
            if not match:
                continue
            stamp, message = _stamp(match.group(1)), match.group(3)
            mine = own.match(message)
            if mine:
                total += float(mine.group(1))
            elif start is None and message.startswith(('EXEC /', 'PUT /', 'FETCH /')):
                start, closing = stamp, False
            elif start is not None and message.startswith('GA stderr:'):
                total, start = total + stamp - start, None
            elif start is not None and message.startswith('GA send:') and 'guest-file-close' in message:
                closing = True
            elif closing and message.startswith('GA return:'):
                total, start, closing = total + stamp - start, None, False
    return total


def prepare(workdir):
    data = {size: random_file(os.path.join(workdir, f'data-{size // MIB}m.bin'), size) for size in SIZES}
    return data, playbooks(workdir, data)


def _key(variant, metric):
    return f'{variant}_{metric}'


def measure_rounds(workdir, harness_vm, domain, runs, log, variants=VARIANTS, transfer_variants=TRANSFER_VARIANTS,
                   inv=None):
    """Interleaved rounds over the variants ((name, inventory host, pipelining)); a flat dict of sample
    lists ('<variant>_<metric>'). `inv`: an inventory naming the variants' hosts (default: figure 6's)."""
    data, paths = prepare(workdir)
    inv = inv or inventory(os.path.join(workdir, 'inventory.ini'), harness_vm.qga_path, domain.name)
    for host in sorted(set(host for _name, host, _pipelining in variants)):
        run_play(workdir, inv, paths['setup'], host, False, 'setup-' + host)
        run_play(workdir, inv, paths['cmd1'], host, False, 'warmup-' + host)
    fig = {}
    count = len(variants)
    for index in range(runs):
        order = variants[index % count:] + variants[:index % count]
        for name, host, pipelining in order:
            for play in ('cmd1', 'cmd10') if index % 2 == 0 else ('cmd10', 'cmd1'):
                wall, times, log_path = run_play(workdir, inv, paths[play], host, pipelining,
                                                 f'{name}-{play}-{index}')
                fig.setdefault(_key(name, play + '_s'), []).append(wall)
                fig.setdefault(_key(name, play + '_conn_s'), []).append(connection_seconds(log_path))
                if play == 'cmd10':
                    fig.setdefault(_key(name, 'module_s'), []).extend(times)
            fig.setdefault(_key(name, 'per_task_s'), []).append(
                (fig[_key(name, 'cmd10_s')][-1] - fig[_key(name, 'cmd1_s')][-1]) / 9.0)
        for name, host, pipelining in order:
            if name in transfer_variants:
                _transfers(fig, workdir, inv, paths, data, (name, host, pipelining), index)
        log(f'round {index + 1}/{runs}: {summary(fig, variants)}')
    for name, _host, _pipelining in variants:
        module = median(fig[_key(name, 'module_s')])
        fig[_key(name, 'overhead_s')] = [task - module for task in fig[_key(name, 'per_task_s')]]
        # Inside the connection's calls, per task, less the module's own run: the plugin's share.
        calls = [(ten - one) / 9.0 for ten, one in zip(fig[_key(name, 'cmd10_conn_s')], fig[_key(name, 'cmd1_conn_s')])]
        fig[_key(name, 'plugin_s')] = [value - module for value in calls]
        fig[_key(name, 'ansible_s')] = [task - value for task, value in zip(fig[_key(name, 'per_task_s')], calls)]
    return fig


def _transfers(fig, workdir, inv, paths, data, variant, index):
    name, host, pipelining = variant
    for size in SIZES:
        mib = size // MIB
        for verb, play in (('PUT', f'put{mib}'), ('FETCH', f'get{mib}')):
            fetched = os.path.join(workdir, f'fetched-{host}.bin')
            if os.path.exists(fetched):
                os.unlink(fetched)  # else fetch finds the same checksum and moves nothing
            wall, _times, log_path = run_play(workdir, inv, paths[play], host, pipelining,
                                              f'{name}-{play}-{index}')
            marker = os.path.basename(data[size]) if verb == 'PUT' else f'src{mib}.bin'
            span = transfer_span(log_path, verb, marker)
            fig.setdefault(_key(name, play + '_mbps'), []).append(size / 1e6 / span)
            fig.setdefault(_key(name, play + '_task_s'), []).append(wall)


def summary(fig, variants=VARIANTS):
    parts = []
    for name, _host, _pipelining in variants:
        if fig.get(_key(name, 'per_task_s')):
            parts.append('{0} {1:.2f} s/task (module {2:.2f})'.format(
                name, fig[_key(name, 'per_task_s')][-1], median(fig[_key(name, 'module_s')])))
        if fig.get(_key(name, 'put64_mbps')):
            parts.append('{0} put {1:.2f} get {2:.2f} MB/s'.format(
                name, fig[_key(name, 'put64_mbps')][-1], fig[_key(name, 'get64_mbps')][-1]))
    return '; '.join(parts)


def measure(ctx):
    """Figure 6: install the anchors, boot the guest under the harness and under libvirtd together,
    measure, stop both."""
    try:
        install_anchors(ctx.log)
    except (RuntimeError, OSError) as exc:
        # The figure then says why the anchor could not run, not "n/a".
        return {'anchor_failure': str(exc)[-1500:]}
    return connection(ctx.rounds, ctx.output, ctx.images, ctx.log)


def install_anchors(log):
    started = time.perf_counter()
    proc = subprocess.run(['sh', os.path.join(REPO, 'bench', 'anchors.sh')], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f'bench/anchors.sh failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}')
    log(f'anchors ready in {time.perf_counter() - started:.0f} s: {proc.stdout.strip().splitlines()[-1]}')


def connection(runs, output, images, log):
    """Boot the guest under the harness and under libvirtd together, measure, stop both."""
    from harness.guest import VM  # pylint: disable=import-error,import-outside-toplevel
    from libvirt_guest import LibvirtGuest  # pylint: disable=import-error,import-outside-toplevel

    workdir = os.path.join(output, 'fig6')
    os.makedirs(workdir, exist_ok=True)
    domain = LibvirtGuest('qemu-vm-bench', os.path.join(workdir, 'libvirt'), images, memory=512)
    vm = VM(os.path.join(workdir, 'harness'), name='bench-conn', memory=512, python=True, images=images)
    try:
        domain.start(wait=False)
        vm.start(timeout=300)
        domain.wait_agent(300)
        guest_agent = vm.qga('guest-info')['version']
        log('fig 6: both guests up')
        samples = measure_rounds(workdir, vm, domain, runs, log)
    finally:
        vm.stop()
        domain.destroy()
    samples['anchor_versions'] = versions()
    samples['guest_agent'] = guest_agent
    return samples


def versions():
    """The anchor's versions, from the bench venv."""
    code = ('import json, libvirt; from importlib.metadata import version as v; import ansible_collections.community'
            '.libvirt as c, os; m = json.load(open(os.path.join(list(c.__path__)[0], "MANIFEST.json")));'
            'print(json.dumps({"community.libvirt": m["collection_info"]["version"], "ansible": v("ansible"),'
            '"ansible_core": v("ansible-core"), "libvirt": libvirt.getVersion(), "libvirt_python": v("libvirt-python")}))')
    out = subprocess.run([os.path.join(bench_venv(), 'bin', 'python'), '-c', code], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    return json.loads(out)


NAMES = {'qga': 'qemu.vm.qga, pipelining off', 'qga_pipe': 'qemu.vm.qga, pipelining on',
         'libvirt': 'community.libvirt.libvirt_qemu'}


def rows(fig):
    from report import row  # pylint: disable=import-error,import-outside-toplevel
    if fig.get('anchor_failure'):
        return [row('6', 'Connection plugins (not measured: the anchor could not run)', None, 's',
                    fig['anchor_failure'].strip().splitlines()[-1][:200], None)]
    base = NAMES['libvirt']
    out = []
    for name, suffix in (('qga_pipe', ''), ('qga', 'off')):
        out.append(row('6conn' + suffix, 'Connection overhead per `command` task (in its calls, less the module), '
                       + NAMES[name], median(fig[_key(name, 'plugin_s')]), 's', base,
                       median(fig['libvirt_plugin_s']), 0.3))
    for name, suffix in (('qga_pipe', ''), ('qga', 'off')):
        out.append(row('6rest' + suffix, 'Per `command` task less the module run (Ansible\'s own work included), '
                       + NAMES[name], median(fig[_key(name, 'overhead_s')]), 's', base,
                       median(fig['libvirt_overhead_s'])))
    for name, suffix in (('qga_pipe', ''), ('qga', 'off')):
        out.append(row('6task' + suffix, 'Time per `command` task, ' + NAMES[name],
                       median(fig[_key(name, 'per_task_s')]), 's', base, median(fig['libvirt_per_task_s']), 0.8))
    out.append(row('6mod', 'The module\'s own run in the guest (`command`), qemu.vm.qga pipelining on',
                   median(fig['qga_pipe_module_s']), 's', base + ' (pipelining unsupported)',
                   median(fig['libvirt_module_s'])))
    for size in SIZES:
        mib = size // MIB
        for way, target, what in (('put', 1.5, 'upload (put_file)'), ('get', 1.0, 'download (fetch_file)')):
            key = f'{way}{mib}_mbps'
            out.append(row(f'6{way}{mib}', f'Raw {what}, {mib} MiB, qemu.vm.qga',
                           median(fig['qga_pipe_' + key]), 'MB/s', base, median(fig['libvirt_' + key]), target,
                           higher_is_better=True))
    return out


def details(fig):
    from report import paired, samples  # pylint: disable=import-error,import-outside-toplevel
    if fig.get('anchor_failure'):
        return ['The anchor could not run here; bench/anchors.sh or the libvirt domain failed with:', '',
                '```', fig['anchor_failure'].strip(), '```']
    out = ['Anchor: {0}; guest agent {1}.'.format(
        ', '.join(f'{k} {v}' for k, v in sorted(fig['anchor_versions'].items())), fig.get('guest_agent')),
        '', 'Samples (in run order; per task = (10-task play - 1-task play) / 9; overhead = per task - median '
        'module run in the guest):', '']
    for name, _host, _pipelining in VARIANTS:
        out.append('- {0}: 1-task play {1} s; 10-task play {2} s; per task {3} s; overhead {4} s; module runs '
                   '(median of {5}) {6:.2f} s'.format(
                       NAMES[name], samples(fig[_key(name, 'cmd1_s')], '{0:.1f}'),
                       samples(fig[_key(name, 'cmd10_s')], '{0:.1f}'), samples(fig[_key(name, 'per_task_s')], '{0:.2f}'),
                       samples(fig[_key(name, 'overhead_s')], '{0:.2f}'), len(fig[_key(name, 'module_s')]),
                       median(fig[_key(name, 'module_s')])))
    out.append('- split of a task (medians, s): ' + '; '.join(
        '{0}: module {1:.2f}, connection {2:.3f}, Ansible {3:.2f}'.format(
            NAMES[name], median(fig[_key(name, 'module_s')]), median(fig[_key(name, 'plugin_s')]),
            median(fig[_key(name, 'ansible_s')])) for name, _host, _pipelining in VARIANTS))
    out.append('- connection per task (in its calls, less the module), per round: ' + '; '.join(
        '{0} {1}'.format(NAMES[name], samples(fig[_key(name, 'plugin_s')], '{0:.3f}'))
        for name, _host, _pipelining in VARIANTS))
    for name in ('qga_pipe', 'qga'):
        out.append('- {0} / libvirt_qemu per round: per task {1}; connection {2}'.format(
            NAMES[name], samples(paired(fig[_key(name, 'per_task_s')], fig['libvirt_per_task_s']), '{0:.2f}'),
            samples(paired(fig[_key(name, 'plugin_s')], fig['libvirt_plugin_s']), '{0:.2f}')))
    for name in TRANSFER_VARIANTS:
        out.append('- {0}, raw MB/s: put 8 MiB {1}; put 64 MiB {2}; get 8 MiB {3}; get 64 MiB {4}; copy task '
                   '64 MiB {5} s; fetch task 64 MiB {6} s'.format(
                       NAMES[name], *[samples(fig[_key(name, k)], '{0:.2f}') for k in (
                           'put8_mbps', 'put64_mbps', 'get8_mbps', 'get64_mbps')],
                       samples(fig[_key(name, 'put64_task_s')], '{0:.1f}'),
                       samples(fig[_key(name, 'get64_task_s')], '{0:.1f}')))
    return out


try:
    from registry import Figure, register  # pylint: disable=import-error
except ImportError:  # the first edition's bench/run.py has no registry
    Figure = register = None
if register is not None:
    register(Figure(6, 'connection plugins: qemu.vm.qga and community.libvirt.libvirt_qemu', measure, rows, details,
                    rounds=lambda runs: max(2, (runs + 1) // 2)))
