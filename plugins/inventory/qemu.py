# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: qemu
short_description: The QEMU VMs running on this host, found with no configuration
version_added: 0.2.0
description:
  - Lists the QEMU VMs of this host. With no option but O(plugin), it reads the command line of every
    running QEMU process of a trusted user (C(/proc/<pid>/cmdline)) and takes from it C(-name) (plain or
    C(guest=NAME), with C(process=)/C(debug-threads=)), C(-uuid), the QMP monitor (C(-qmp unix:PATH,server=on),
    C(-qmp-pretty), or C(-chardev socket,id=X,path=PATH,server=on) with C(-mon chardev=X,mode=control)) and the
    agent socket (the C(-chardev) behind C(-device virtserialport,...,name=org.qemu.guest_agent.0,chardev=X)).
    A process whose C(/proc) entry it may not read, or that exits during the scan, is skipped quietly.
  - "Whom it trusts: a process is considered only when all its user ids (real, effective, saved, filesystem) are
    root's, those of the user running the inventory, or listed in O(owners); any other process is not read at all,
    so another local user cannot plant a VM, steal a VM's name or stand in for its sockets by starting a process
    that looks like QEMU. QEMU told to switch user (C(-runas), C(-run-with user=)) runs as that user: list the
    user in O(owners)."
  - "A socket is a VM's only when its process really holds it: the process has the listening socket bound at
    that very file open (its C(/proc/<pid>/fd) against the kernel's socket table, read through C(sock_diag),
    else C(/proc/net/unix)), and the file belongs to the process' user. QEMU creates its sockets before it
    drops root, so a root-owned socket file is accepted for a process started with C(-runas) or C(-run-with
    user=), but only when the kernel's table names the socket's file (C(sock_diag)), not from
    C(/proc/net/unix), whose lines another user can forge. A command line that merely names a path proves
    nothing: such a socket is not used (C(-vvv) says why). Where the inventory may not read a process' open
    files (a non-root user and root's or C(-runas) VMs), that VM is listed without sockets. A socket that two
    processes hold is used for neither, with a warning."
  - With O(sockets) it lists the VMs of the QMP sockets those patterns match instead, for VMs whose processes
    it cannot see (in containers, on another host, of a user in O(owners) when C(/proc) hides them).
  - Then it asks each VM's QMP monitor (C(query-status), C(query-name), C(query-uuid), the greeting's version)
    and guest agent (C(guest-sync-delimited), C(guest-get-osinfo), C(guest-get-host-name),
    C(guest-network-get-interfaces)), every socket in parallel and each within O(timeout). It only reads;
    it never changes a VM.
  - A VM whose monitor is held by another client, or whose agent does not answer, costs at most O(timeout),
    does not hold up the others and does not fail the inventory; it is listed with what is known (the
    variables that could not be read are null). Run with C(-vvv) to see why a VM could not be asked.
  - "The host name is the VM's C(-name), else the name of the directory of its QMP socket (C(host_port) for a
    TCP socket), else C(qemu-<pid>). A name that several VMs claim is given to none of them, since which one a
    play means cannot be known (a lower pid is no proof: anybody may start a process first). Each gets
    C(NAME-pid<pid>) (C(NAME-<hash of the QMP socket path>) when its process is not visible), a play for
    C(NAME) matches no host instead of the wrong one, and a warning names every claimant with its pid, user and
    sockets."
  - "Host variables: C(qemu_qmp), C(qemu_qga) (socket addresses), C(qemu_name), C(qemu_uuid), C(qemu_pid)
    (null when the process is not visible), C(qemu_user) (the user QEMU runs as, else the owner of its QMP
    socket file; null for a TCP monitor of an invisible process), C(qemu_run_dir) (the run directory of a VM that
    M(qemu.vm.qemu_vm) started, found by its layout: C(-pidfile <dir>/qemu.pid) and first QMP monitor C(<dir>/qmp.sock);
    null for other VMs), C(qemu_status) (QMP C(query-status), for example C(running),
    C(paused), C(suspended); null when QMP did not answer), C(qemu_version), C(qemu_agent_available) (whether
    the agent answered), and when it answered C(qemu_guest_os) (C(guest-get-osinfo) with C(-) in keys
    replaced by C(_), for example C(pretty_name)), C(qemu_guest_hostname) and C(qemu_guest_ips)
    (addresses other than loopback and link-local)."
  - "C(qemu_guest_os), C(qemu_guest_hostname) and C(qemu_guest_ips) are what the guest says about itself: a
    guest, or anybody who is root in it, reports what it likes. Use them to inform, never to decide where to
    connect or whom to trust: an C(ansible_host) composed from C(qemu_guest_ips) lets the guest send the play,
    with its variables, secrets and files, to any address it chooses (another VM, the hypervisor, a host outside);
    a group keyed on C(qemu_guest_os) lets it pick its groups and their variables."
  - When the agent answers and O(use_qga_connection=true), the host gets C(ansible_connection=qemu.vm.qga) and
    C(ansible_qemu_qga) (its agent socket), so tasks reach the guest with no SSH.
  - "Default groups: C(qemu_running) and C(qemu_paused) (by C(qemu_status)), and C(qemu_agent) (VMs whose agent
    answered)."
  - "Remote hypervisors without SSH: the process scan only sees this host, and O(hypervisors) (below) needs SSH
    and C(python3) there. Otherwise give the sockets of another host in O(sockets) as C(host:port): QEMU listening
    on TCP (C(-qmp tcp:0.0.0.0:4444,server=on,wait=off); QMP and the agent have no authentication, so only on a
    trusted network)."
  - "Other hypervisors: with O(hypervisors), it scans each listed host over SSH, in parallel, with the system's
    OpenSSH client (C(~/.ssh/config) and host key checking as configured there, C(BatchMode=yes), one shared master
    connection per host). Each host needs only sshd and C(python3): the scan and a small relay per socket are sent
    in the command line and nothing stays running. The scan runs there as the SSH user, with the same rules as here
    (whom it trusts is decided there: root, the SSH user, O(owners)), and each socket is asked from here through the
    relay, which waits for the per-socket lock of that host as this plugin does here. A host that cannot be
    reached (or refuses the login, or whose host key is unknown, or that has no C(python3)) is a warning naming it,
    and the VMs of the others are listed; with O(strict=true) it fails the inventory instead."
  - "Each VM of O(hypervisors) gets C(qemu_hypervisor) (the entry's C(name): the inventory host to
    delegate modules to) and belongs to the group C(qemu_hypervisor_<name>) (characters other than letters, digits
    and C(_) replaced by C(_)). With O(use_qga_connection), a VM of a remote hypervisor also gets the variables
    that reach its agent through that host: C(ansible_qemu_host), and C(ansible_qemu_host_user),
    C(ansible_qemu_host_port), C(ansible_qemu_host_private_key_file), C(ansible_qemu_host_ssh_args) when the
    entry sets them."
  - "Host names with O(hypervisors): each hypervisor's VMs are named by the rule above, on their own. A name that
    VMs of two or more hypervisors get is given to none of them: each becomes C(NAME@HYPERVISOR) (the
    hypervisor's name), so adding a hypervisor can rename VMs of the others; give VMs names unique across hosts
    to keep them stable."
  - "What it cannot do: see processes of other hosts (without O(hypervisors)), or of other PID namespaces (containers) or users when
    C(/proc) is mounted with C(hidepid); read command lines given through C(-readconfig) files or passed file
    descriptors (libvirt's C(fd=) monitors); ask a monitor that another client keeps open (libvirt holds its
    VMs' monitors, so its VMs are listed with C(qemu_status=null): use community.libvirt's inventory for them);
    coordinate through the per-socket lock with tasks on other hosts (the lock is a file on this host); prove
    which sockets a process in another network namespace holds (the kernel's socket table is read in ours: such
    a VM is listed without its sockets)."
author:
  - qemu.vm maintainers (@qemu-vm)
requirements:
  - The C(qemu.qmp) Python library, version 0.0.6 exactly (C(qemu.qmp==0.0.6)), in the Python that runs Ansible
    on the controller. The collection overrides private parts of it, so it pins the version it was tested with;
    another version works with a warning.
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; the configuration file's name must end in C(.qemu.yml) or C(.qemu.yaml).
    type: str
    required: true
    choices: [qemu.vm.qemu]
  sockets:
    description:
      - The QMP sockets of the VMs to list, instead of scanning this host's processes.
      - A unix socket is listed only when its file belongs to root, the user running the inventory or a user of
        O(owners) (others are left out with a warning).
      - A trusted QEMU process that holds a matched socket (see the description) adds its pid, C(-name) and C(-uuid).
    type: list
    elements: dict
    default: []
    suboptions:
      qmp:
        description:
          - A glob pattern of QMP unix sockets (each matching socket is one VM; a pattern that matches nothing
            adds none), or C(host:port) of a TCP monitor (always added).
        type: str
        required: true
      qga:
        description:
          - The agent socket of each VM the O(sockets[].qmp) pattern matched, as a template with placeholders
            C({dir}) (the QMP socket's directory), C({dirname}) (that directory's name), C({file}) (the QMP
            socket's file name), C({stem}) (the file name without extension) and C({0}), C({1}), ... (what the
            first, second, ... wildcard matched); C({{) and C(}}) are literal braces.
          - For a TCP monitor, the agent's C(host:port).
          - An agent socket path that does not exist, whose file belongs to an untrusted user, or that the VM's
            visible process does not hold, is not used; the VM gets the agent socket its process holds, if any,
            else C(qemu_qga=null).
          - When omitted, the agent socket comes from the owning process' command line if it is visible and the
            process holds that socket.
        type: str
  owners:
    description:
      - Users besides root and the user running the inventory whose QEMU processes and socket files are trusted,
        as user names or uids.
      - Processes of other users are not read at all, and their socket files are not listed with O(sockets).
        List a user here only if you trust them with the name of every VM, since a trusted user's process may claim
        any name (a name claimed twice is given to neither, see the description).
      - The user QEMU runs as when started with C(-runas) or C(-run-with user=) belongs here.
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  hypervisors:
    description:
      - The hosts whose VMs to list, each scanned over SSH (see the description); V(localhost) is this host's own
        scan. When empty, only this host is scanned. O(sockets) and O(owners) apply on every hypervisor.
      - Each entry is a string C([user@]host[:port]) or a mapping with the keys C(host) (required, a host name or
        address as C(ssh) takes it, a C(Host) alias of C(~/.ssh/config) works), C(user) (the SSH user, by default
        C(ssh)'s; the scan runs as this user there), C(port), C(private_key_file) (C(ssh -i)), C(ssh_args)
        (arguments given to C(ssh) before the ones the plugin sets, as the C(qemu.vm.qga) connection's
        C(qemu_host_ssh_args); by default C(-o ControlMaster=auto -o ControlPersist=60s), one shared connection
        per host) and C(name) (the hypervisor's name in C(qemu_hypervisor), in its group name and in
        C(NAME@HYPERVISOR) host names; by default its C(host); names must be unique).
    type: list
    elements: raw
    default: []
    version_added: 0.3.0
  timeout:
    description:
      - Seconds each socket may take, including waiting for the per-socket lock that tasks of this collection
        hold while they use a socket. Sockets are asked in parallel (up to 64 at a time, 8 per remote
        hypervisor), so one VM that does not answer adds at most this much to the whole run.
      - With O(hypervisors), each host's scan over SSH is bounded by it too (connecting included); its sockets
        are asked after that scan, each through its own SSH session, whose connection gets this bound too before
        the socket's (plus a few seconds for the relay to start).
    type: float
    default: 3
  use_qga_connection:
    description:
      - Whether a VM whose agent answered gets C(ansible_connection=qemu.vm.qga) and C(ansible_qemu_qga).
      - Set to V(false) to reach the guests another way (SSH), for example through O(compose).
    type: bool
    default: true
notes:
  - "Tasks of this collection take a per-socket lock (a file in a private directory of the user they run as:
    C(/run/qemu-vm) for root, else C($XDG_RUNTIME_DIR/qemu-vm)); the inventory waits for it (within O(timeout))
    only when a task of the same user holds it, and never creates one. Otherwise it asks unlocked: it only reads,
    and QEMU serves one client per socket. Anything else at the lock's path (a FIFO, a symbolic link, another
    user's file) is not waited on: that socket is not asked, and C(-vvv) names the path. Agent replies over
    1 MiB end that agent's session (C(-vvv) says so)."
  - Values read from VMs and guests are marked unsafe, so a guest cannot inject templates.
'''

EXAMPLES = r'''
---
# vms.qemu.yml: every QEMU VM running on this host, no configuration
plugin: qemu.vm.qemu

---
# vms.qemu.yml: VMs started by a tool that keeps each VM's sockets in its own directory
plugin: qemu.vm.qemu
sockets:
  - qmp: /run/vms/*/qmp.sock
    qga: '{dir}/qga.sock'
timeout: 5
owners:
  - qemu   # the user the VMs run as (-runas qemu)
keyed_groups:
  # A grouping for convenience only: the guest says which OS it runs, so give these groups no secrets.
  - key: qemu_guest_os.id | default('unknown')
    prefix: os
groups:
  web: inventory_hostname.startswith('web')
compose:
  # Where SSH goes is decided here, from the host name the hypervisor's command line gave the VM (-name),
  # never from qemu_guest_ips: a guest reports whatever addresses it likes.
  ansible_host: inventory_hostname ~ '.vms.example.com'

---
# vms.qemu.yml: VMs whose sockets follow a pattern, on this host and another, cached for an hour
plugin: qemu.vm.qemu
hypervisors:
  - localhost
  - root@hv1.example.com
sockets:
  - qmp: /run/vms/*-qmp.sock
    qga: '/run/vms/{0}-qga.sock'
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/qemu-vm-inventory
cache_timeout: 3600

---
# vms.qemu.yml: the VMs of this host and of two others, over SSH
plugin: qemu.vm.qemu
hypervisors:
  - localhost
  - root@hv1.example.com
  - host: 192.0.2.17
    name: hv2            # qemu_hypervisor, the group qemu_hypervisor_hv2
    user: root
    port: 2222
    private_key_file: ~/.ssh/hypervisors
timeout: 5
'''

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display

try:
    from ansible.template import trust_as_template  # noqa: F401, pylint: disable=unused-import
    # ansible-core >= 2.19: values an inventory plugin sets are never templated unless trusted.
    wrap_var = None
except ImportError:
    from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.cmdline import describe_conflict
from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.discovery import discover
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.hypervisors import host_names, parse_hypervisors, scan_all
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import QMP_IMPORT_ERROR, qmp_version_warning

display = Display()

#: Host variable -> key of the discovered VM record.
HOST_VARS = (
    ('qemu_qmp', 'qmp'),
    ('qemu_qga', 'qga'),
    ('qemu_name', 'name'),
    ('qemu_uuid', 'uuid'),
    ('qemu_pid', 'pid'),
    ('qemu_user', 'user'),
    ('qemu_status', 'status'),
    ('qemu_version', 'version'),
    ('qemu_agent_available', 'agent_available'),
    ('qemu_run_dir', 'run_dir'),
)
#: Connection variable -> key of a `hypervisors` entry, for VMs of a remote hypervisor.
SSH_VARS = (
    ('ansible_qemu_host', 'host'),
    ('ansible_qemu_host_user', 'user'),
    ('ansible_qemu_host_port', 'port'),
    ('ansible_qemu_host_private_key_file', 'private_key_file'),
    ('ansible_qemu_host_ssh_args', 'ssh_args'),
)
GUEST_VARS = (
    ('qemu_guest_os', 'guest_os'),
    ('qemu_guest_hostname', 'guest_hostname'),
    ('qemu_guest_ips', 'guest_ips'),
)


def default_groups(vm):
    groups = []
    if vm.get('status') == 'running':
        groups.append('qemu_running')
    elif vm.get('status') == 'paused':
        groups.append('qemu_paused')
    if vm.get('agent_available'):
        groups.append('qemu_agent')
    return groups


def host_variables(vm, use_qga_connection):
    """The variables a discovered VM gets, before compose."""
    variables = dict((var, vm.get(key)) for var, key in HOST_VARS)
    variables['qemu_agent_available'] = bool(variables['qemu_agent_available'])
    if vm.get('agent_available'):
        variables.update((var, vm.get(key)) for var, key in GUEST_VARS)
        if use_qga_connection and vm.get('qga'):
            variables['ansible_connection'] = 'qemu.vm.qga'
            variables['ansible_qemu_qga'] = vm['qga']
            variables.update((var, vm['ssh'][key]) for var, key in SSH_VARS if vm.get('ssh') and vm['ssh'].get(key))
    if vm.get('hypervisor'):
        variables['qemu_hypervisor'] = vm['hypervisor']
    return variables


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'qemu.vm.qemu'

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('.qemu.yml', '.qemu.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        user_cache = self.get_option('cache')
        vms = None
        update_cache = user_cache and not cache
        if user_cache and cache:
            try:
                vms = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if vms is None:
            vms = self._discover()
        if update_cache:
            self._cache[cache_key] = vms
        self._populate(vms)

    def _discover(self):
        if QMP_IMPORT_ERROR is not None:
            raise AnsibleError('the qemu.vm.qemu inventory needs the qemu.qmp Python library on the controller, in '
                               'the Python that runs Ansible (pip install qemu.qmp==0.0.6)')
        if qmp_version_warning():
            display.warning('qemu.vm.qemu: ' + qmp_version_warning())
        timeout = self.get_option('timeout')
        if timeout is None or timeout <= 0:
            raise AnsibleParserError('qemu.vm.qemu: timeout must be a positive number of seconds')
        try:
            hypervisors = parse_hypervisors(self.get_option('hypervisors'))
            if hypervisors:
                vms, warnings, errors = scan_all(hypervisors, self.get_option('sockets'), timeout, self.get_option('owners'))
            else:
                vms, warnings = discover(self.get_option('sockets'), timeout, owners=self.get_option('owners'))
                errors = []
        except QemuVMError as exc:
            raise AnsibleParserError(f'qemu.vm.qemu: {exc}')
        if errors and self.get_option('strict'):
            raise AnsibleParserError('qemu.vm.qemu: ' + '; '.join(errors))
        for warning in errors + warnings:
            display.warning(f'qemu.vm.qemu: {warning}')
        for vm in vms:
            for note in vm.pop('notes', ()):
                display.vvv(f'qemu.vm.qemu: {note}')
        return vms

    def _populate(self, vms):
        names, conflicts = host_names(vms)
        for base, indices in conflicts:
            display.warning('qemu.vm.qemu: ' + describe_conflict(base, [vms[i] for i in indices], [names[i] for i in indices]))
        strict = self.get_option('strict')
        use_qga = self.get_option('use_qga_connection')
        for vm, name in zip(vms, names):
            self.inventory.add_host(name)
            for key, value in host_variables(vm, use_qga).items():
                self.inventory.set_variable(name, key, wrap_var(value) if wrap_var else value)
            groups = default_groups(vm)
            if vm.get('hypervisor'):
                groups.append(self._sanitize_group_name('qemu_hypervisor_' + vm['hypervisor']))
            for group in groups:
                self.inventory.add_group(group)
                self.inventory.add_child(group, name)
            hostvars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option('compose'), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, name, strict=strict)
