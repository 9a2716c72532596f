#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_file
short_description: Copy files into and out of a QEMU guest through the guest agent, byte-exact and idempotent
version_added: 0.2.0
description:
  - Puts a file into the guest (O(state=present)) from O(content) or from O(src), copies a guest file to the managed
    host (O(state=fetched)), or deletes a guest file (O(state=absent)), through the QEMU guest agent socket.
    The guest needs no network and no SSH.
  - Data streams in large chunks (O(chunk_size)) with the agent's C(guest-file-open), C(guest-file-read),
    C(guest-file-write) and C(guest-file-close) commands. Memory use is bounded by the chunk size, not by the file
    size, and guest file handles are closed on every path, failures included.
  - Idempotent by SHA-256. With O(state=present) a guest file of a different size is replaced without reading it;
    one of the same size is compared by checksum, computed in the guest with C(sha256sum) through C(guest-exec)
    when the agent offers it and the guest has the tool, else by streaming the file and hashing it on the managed
    host. O(state=fetched) always streams the guest file and hashes it while writing; the task is unchanged when
    O(dest) already holds the same bytes.
  - No half-written files. When the agent offers C(guest-exec), O(state=present) writes a temporary file in a
    private directory it makes beside O(path), sets its owner, group and mode, and renames it over O(path) with
    C(mv). Without C(guest-exec) the file can only be written in place (see O(follow)), so a failure part way (a
    full disk, a lost connection) leaves a truncated file behind; the task then fails and says so, and running it
    again repairs the file.
  - Nothing a guest user plants at O(path) is followed with root's rights. A symbolic link there is replaced by the
    file (unless O(follow=true)), a file with several hard links is replaced rather than changed, and the owner,
    group and mode are set on the new file before it is renamed, or on the file itself through a descriptor held
    open on it (C(/proc)). The path is checked again just before the rename; when something else changed it
    meanwhile (a user who can write its directory), the task fails with C(error_type=GuestFileChangedError) and
    leaves it as it is. The directories leading to O(path) are trusted, as M(ansible.builtin.copy) trusts them.
  - Reads are bounded. A guest file is read up to the size it has when the read begins (one that grows meanwhile
    is cut there, with a warning), within C(timeout) plus a second per MiB; a path that reports no size (a device
    such as C(/dev/zero), a pseudo file under C(/proc)) is read up to O(max_size), 1 MiB by default, and refused
    past it. O(state=fetched) checks first that the size fits in the free space where O(dest) goes; a failed fetch
    leaves nothing there.
  - The agent's file commands are not available on many RHEL-family guests, which block them in the agent
    configuration; the module then fails with an error naming the blocked commands.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  path:
    description:
      - Absolute path of the file in the guest.
      - With O(state=present), a symbolic link at O(path) is replaced by the file, as M(ansible.builtin.copy) does;
        see O(follow). O(state=fetched) reads the file a link points to; O(state=absent) deletes the link itself.
    type: str
    required: true
  state:
    description:
      - V(present) makes the guest file hold O(content) or the bytes of O(src).
      - V(fetched) copies the guest file to O(dest) on the managed host. To bring it to the controller, chain
        M(ansible.builtin.fetch) after this task.
      - V(absent) deletes the guest file. The agent has no delete command, so this needs C(guest-exec) (C(rm) in
        the guest); when the agent does not offer it, the task fails naming the missing command, unless the file
        is already absent.
    type: str
    choices: [present, fetched, absent]
    default: present
  content:
    description:
      - The text to put in the guest file, written as UTF-8. Use O(src) for binary data.
      - Mutually exclusive with O(src). Only with O(state=present).
    type: str
  src:
    description:
      - A file whose bytes go into the guest file. Only with O(state=present).
      - By default it is on the controller and found like the O(ansible.builtin.copy#module:src) of
        M(ansible.builtin.copy) (relative paths look in the role's or play's C(files/) directory, vault-encrypted
        files are decrypted); the action plugin transfers it to the managed host first. When the task runs on the
        controller itself (C(connection=local) without become) it is read in place, without a copy.
      - With O(remote_src=true) it is a file on the managed host.
    type: path
  remote_src:
    description:
      - Whether O(src) is on the managed host (V(true)) rather than on the controller.
    type: bool
    default: false
  dest:
    description:
      - With O(state=fetched), where to put the guest file on the managed host. Required then.
      - A relative O(dest) is resolved like the O(ansible.builtin.fetch#module:dest) of M(ansible.builtin.fetch),
        against the playbook's directory, or the current directory for ad-hoc commands. RV(dest_path) is the
        absolute path written.
      - When O(dest) is an existing directory, the file goes into it under the guest file's name.
      - The file is written to a temporary file C(.NAME.PID.RANDOM.qemu-vm.tmp) in the same directory and renamed
        over O(dest). A run that is killed leaves it behind; the next run for the same O(dest) deletes it.
    type: path
  chunk_size:
    description:
      - Bytes moved per agent command, with a unit (V(1M), V(512K)) or as a number of bytes.
      - Larger chunks are not faster (the agent parses every base64 character it receives); the default 1 MiB was the
        fastest size in a sweep from 64 KiB to 48 MiB, both ways, and keeps memory low.
      - Memory use on the managed host is a few times this size (base64 and JSON encoding), whatever the file size.
      - At most 48 MiB, the largest read the agent accepts. Writes use at most 48 MiB minus 4 KiB per command,
        because the agent refuses a request over 64 MiB of JSON, and 48 MiB is 64 MiB in base64.
    type: bytes
    default: 1048576
  mode:
    description:
      - With O(state=present), the permissions of the guest file, in octal (V('0644'), V('0755')). Symbolic modes are
        not supported for guest files.
      - With O(state=fetched), the permissions of O(dest), in any form M(ansible.builtin.file) accepts. The copy is
        private (V(0600)) from its first byte and gets its owner, group and mode before it is renamed over O(dest).
        Without O(mode), a new O(dest) stays V(0600) (it holds guest data) and a replaced one keeps its mode.
      - Without O(mode), a replaced guest file keeps its permissions, and a new one gets V(0666) minus the umask of
        the agent (usually V(0644)). Without C(guest-exec) a new file gets the mode the agent creates files with,
        which is V(0666) for qemu-ga 7.2 whatever its umask.
      - Guest attributes are set with C(chmod) and C(chown) through C(guest-exec); when the agent does not offer it, a
        task that sets O(mode), O(owner) or O(group) with O(state=present) fails.
    type: raw
  owner:
    description:
      - Owner (name or uid) of the guest file with O(state=present), of O(dest) with O(state=fetched).
      - Without O(owner), a replaced guest file keeps its owner, and a new one belongs to the user the agent runs as.
    type: str
  group:
    description:
      - Group (name or gid) of the guest file with O(state=present), of O(dest) with O(state=fetched).
    type: str
  follow:
    description:
      - With O(state=present), whether a symbolic link at O(path) is followed and the file it points to written
        (V(true)), or replaced by the file (V(false)), as the O(ansible.builtin.copy#module:follow) of
        M(ansible.builtin.copy).
      - Only for links you trust. Whoever can change the link (a guest user, in her home) chooses the file that is
        written as root. A dangling link is an error then.
      - Without C(guest-exec), or without the POSIX tools it runs (a Windows guest), nothing can tell a link from a
        file and the agent writes through links, so O(state=present) then needs O(follow=true), to say that O(path)
        is written in place, links followed.
    type: bool
    default: false
    version_added: 0.2.0
  max_size:
    description:
      - With O(state=fetched), the most bytes to fetch, with a unit (V(100M)) or as a number of bytes. A guest file
        larger than this is refused before anything is read.
      - A path that reports no size (a device, a pseudo file under C(/proc) or C(/sys)) is read up to O(max_size),
        and refused past it; 1 MiB when O(max_size) is not given. Other files are read up to the size they have
        when the read begins, whatever O(max_size).
    type: bytes
    version_added: 0.2.0
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: full
    details:
      - A guest file with the same SHA-256, owner, group and mode is unchanged; O(state=fetched) is unchanged when
        the local copy has the same SHA-256.
  check_mode:
    support: full
    details:
      - Changes nothing in the guest or on the managed host, and reports whether a change would happen.
      - The comparison is real, so it reads as much of the guest file as the real run would (all of it for
        O(state=fetched)).
      - A controller O(src) is still transferred to the managed host (not into the guest) to be compared.
  diff_mode:
    support: full
    details:
      - A text diff, like M(ansible.builtin.copy), when both sides are text (UTF-8, no NUL byte) and at most 104448
        bytes; binary and larger files are reported as skipped. Owner, group and mode changes are shown too.
      - O(content) is C(no_log), so Ansible masks the new text in the diff; a diff against O(src) shows it.
      - What a symbolic link at O(path) points to is never read for the diff (it is replaced like a missing file).
requirements:
  - The guest agent (C(qemu-ga)) running in the guest with its file commands enabled.
  - For atomic replacement, O(mode), O(owner), O(group), O(state=absent) and fast checksums, C(guest-exec) enabled
    in the agent and a POSIX guest.
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - O(qga) is required; O(qmp) is accepted and ignored.
  - The agent in the guest sets the pace (base64 over a virtio-serial port); under emulation (TCG) it moves only a
    few MB/s. The results RV(duration_ms) and RV(mb_per_s) tell what a transfer achieved.
  - Peak memory on the managed host is the Python process (about 30 MB) plus a few times O(chunk_size) (the base64
    text and the JSON copies made by the protocol library), whatever the file size; about 35 MB with the default,
    about 80 MB with V(8M).
  - While the guest filesystems are frozen the agent refuses file commands; the task fails and says how to thaw.
  - With C(guest-exec), O(state=present) makes a private directory C(.NAME.qemu-vm-XXXXXXXX.tmp) (mode V(0700))
    beside O(path) in the guest, writes a temporary file with a random name in it, created with mode V(0600)
    before the first byte, and renames that over O(path) once it has its content, owner and mode. A run that is
    killed leaves the directory behind; the next run for the same O(path) deletes it (and warns).
  - The guest tools used through C(guest-exec) are C(sh), C(stat), C(id), C(mkdir), C(rmdir), C(readlink),
    C(sha256sum), C(mv) (with C(-T)), C(rm), C(chmod) and C(chown) (with C(-h)), as found in coreutils or busybox,
    and C(/proc) to change the attributes of a file that is kept.
seealso:
  - module: ansible.builtin.copy
  - module: ansible.builtin.fetch
  - module: qemu.vm.qemu_guest_fsfreeze
'''

EXAMPLES = r'''
- name: Put a configuration file into the guest
  qemu.vm.qemu_guest_file:
    qga: /run/qemu/web1/qga.sock
    path: /etc/motd
    content: |
      Managed by Ansible through the QEMU guest agent.
    mode: '0644'

- name: Copy a tarball from the controller into the guest
  qemu.vm.qemu_guest_file:
    qga: /run/qemu/web1/qga.sock
    src: files/app-1.2.tar.gz
    path: /opt/app-1.2.tar.gz
    owner: app
    group: app
  register: copied

- name: Show how fast it went
  ansible.builtin.debug:
    msg: "{{ copied.transferred }} bytes in {{ copied.duration_ms }} ms ({{ copied.mb_per_s }} MB/s)"

- name: Copy a file that is already on the hypervisor
  qemu.vm.qemu_guest_file:
    qga: /run/qemu/web1/qga.sock
    src: /srv/images/seed.img
    remote_src: true
    path: /var/lib/seed.img

- name: Copy a guest log to the hypervisor
  qemu.vm.qemu_guest_file:
    qga: /run/qemu/web1/qga.sock
    path: /var/log/app.log
    state: fetched
    dest: /var/tmp/web1-app.log

- name: And from there to the controller
  ansible.builtin.fetch:
    src: /var/tmp/web1-app.log
    dest: logs/
    flat: false

- name: Delete a file in the guest
  qemu.vm.qemu_guest_file:
    qga: /run/qemu/web1/qga.sock
    path: /tmp/seed.img
    state: absent
'''

RETURN = r'''
guest_path:
  description: The guest path, O(path) as given.
  returned: always
  type: str
  sample: /etc/motd
guest_target:
  description: The file actually written when O(path) is a symbolic link and O(follow=true).
  returned: when O(path) is a symbolic link, O(follow=true) and O(state=present)
  type: str
dest_path:
  description: The absolute path of the file on the managed host, with the guest file name added when O(dest) is a directory.
  returned: when O(state=fetched)
  type: str
  sample: /var/tmp/web1-app.log
state:
  description: The state requested.
  returned: always
  type: str
checksum:
  description:
    - SHA-256 (hex) of the file, as the guest file now is (O(state=present)) or as fetched (O(state=fetched)).
    - In check mode with O(state=present), the checksum the guest file would have.
  returned: when O(state) is V(present) or V(fetched)
  type: str
  sample: 3b1f4d0e1f0c8e2a6c1f9a2b6d4e8f0a1b2c3d4e5f60718293a4b5c6d7e8f901
size:
  description: Size of the file in bytes (of the source for O(state=present), of the guest file for O(state=fetched)).
  returned: when O(state) is V(present) or V(fetched)
  type: int
  sample: 1048576
transferred:
  description:
    - File bytes moved through the agent by this task, in either direction, including bytes read only to compare
      checksums and, in diff mode, to show a diff.
    - V(0) when the guest computed the checksum itself or nothing had to move.
  returned: always
  type: int
  sample: 1048576
duration_ms:
  description: Milliseconds the task spent with the agent, from connecting to done.
  returned: always
  type: int
  sample: 1250
mb_per_s:
  description: RV(transferred) per second of RV(duration_ms), in MB/s (10^6 bytes); V(0) when nothing moved.
  returned: always
  type: float
  sample: 52.4
compared_by:
  description:
    - How O(state=present) decided whether the guest file already held the data.
    - V(missing) (no file), V(link) (a symbolic link, replaced without reading what it points to), V(size) (sizes
      differ, not read), V(sha256sum) (the guest's sha256sum through C(guest-exec)), V(stream) (read through the
      agent and hashed on the managed host).
  returned: when O(state=present)
  type: str
  sample: sha256sum
atomic:
  description:
    - Whether the new content was written to a temporary file and renamed over O(path) (V(true)), or written in place
      because the agent offers no C(guest-exec) (V(false)).
    - Also V(true) when only the owner, group or mode had to change but the file could not be changed where it is
      (it has several hard links, or the guest has no C(/proc)), so it was replaced by a new file with the same bytes.
  returned: when O(state=present) and the content was written
  type: bool
'''

import os

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.qemu.vm.plugins.module_utils._common import Stopwatch, build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.fetch import ensure_fetched, fetch_dest
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.request import parse_request
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.state import Desired, ensure_absent, ensure_present, throughput
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import LocalFileError, SourceFileError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import GuestFileSystem
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import Source
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import DEFAULT_CHUNK

ARGUMENT_SPEC = dict(
    path=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'fetched', 'absent']),
    content=dict(type='str', no_log=True),
    src=dict(type='path'),
    remote_src=dict(type='bool', default=False),
    dest=dict(type='path'),
    chunk_size=dict(type='bytes', default=DEFAULT_CHUNK),
    mode=dict(type='raw'),
    owner=dict(type='str'),
    group=dict(type='str'),
    follow=dict(type='bool', default=False),
    max_size=dict(type='bytes'),
)
MUTUALLY_EXCLUSIVE = [('content', 'src')]


def make_source(request):
    if request.content is not None:
        return Source(data=request.content.encode('utf-8'), label='content')
    return Source(path=request.src)


def fetch(module, request, guest):
    dest = fetch_dest(request.dest, request.path)
    owner, group, mode = request.owner, request.group, request.mode

    def finish(temp):  # the task's attributes, on the complete copy before it is renamed over dest
        module.set_owner_if_different(temp, owner, False)
        module.set_group_if_different(temp, group, False)
        module.set_mode_if_different(temp, mode, False)
    result = ensure_fetched(guest, request.path, dest, finish, request.max_size, module.check_mode, module._diff)
    if owner is not None or group is not None or mode is not None:
        attributes_changed = True  # check mode: dest is not there yet
        if os.path.exists(dest):
            attributes_changed = module.set_owner_if_different(dest, owner, False)
            attributes_changed = module.set_group_if_different(dest, group, attributes_changed)
            attributes_changed = module.set_mode_if_different(dest, mode, attributes_changed)
        result['changed'] = result['changed'] or attributes_changed
    return result


def run(module):
    # parse
    request = parse_request(module.params)
    clock = Stopwatch()
    source = make_source(request) if request.state == 'present' else None
    with qga_session(module) as qga:
        guest = GuestFileSystem(qga, request.chunk_size)
        # ask, decide and act: ensure_* read the guest's file, decide, and change it unless in check mode
        if request.state == 'present':
            desired = Desired(request.path, request.file_mode, request.owner, request.group, request.follow)
            try:
                result = ensure_present(guest, source, desired, module.check_mode, module._diff)
            except OSError as exc:
                raise SourceFileError(request.path, f'cannot read src {request.src} on the managed host: {to_native(exc)}')
        elif request.state == 'absent':
            result = ensure_absent(guest, request.path, module.check_mode, module._diff)
        else:
            try:
                result = fetch(module, request, guest)
            except OSError as exc:
                raise LocalFileError(request.path, f'cannot write dest {request.dest} on the managed host: {to_native(exc)}')
    # report
    for warning in guest.warnings:
        module.warn(warning)
    moved = guest.read_bytes + guest.written_bytes
    result['transferred'] = moved
    result['duration_ms'] = clock.ms
    result['mb_per_s'] = throughput(moved, result['duration_ms'])
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True, mutually_exclusive=MUTUALLY_EXCLUSIVE)
    run_module(module, run)


if __name__ == '__main__':
    main()
