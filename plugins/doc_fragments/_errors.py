# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This doc fragment is PRIVATE to the qemu.vm collection.
# The error_type values a failed task shows: the class names of the QemuVMError family
# (plugins/module_utils/_errors.py and each package's errors.py), put in the result with their
# details() by run_module (plugins/module_utils/_common.py). One note per family line:
# "V(Name), V(Name): what it means. Details: C(field), C(field)." (or "No detail fields.").
# tests/unit/plugins/doc_fragments/test_errors.py checks every class a module can raise is here,
# with the fields its details() names.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options: {}
notes:
  - "When the module finds a problem, the failed task's result holds C(msg), C(error_type) (one of the values
    below, the name of the error) and the detail fields listed with it, so a task can react to one kind of
    failure, for example C(when: result.error_type == 'SocketBusyError') in a C(rescue) block.
    Failures found before the module starts (Ansible's own checks of the options, a missing Python library)
    have no C(error_type)."
  - "V(ParameterError): an option is invalid; the message names it and nothing was changed.
    Details: C(parameter) (the option)."
  - "V(SocketMissingError), V(SocketPermissionError), V(SocketRefusedError), V(SocketBusyError), V(SocketError):
    the QMP or guest agent socket cannot be used: nothing at that path, no permission, nobody listening (QEMU
    is not running), held by another client for longer than C(timeout), or another reason the message gives.
    Details: C(socket)."
  - "V(ConnectionLostError): QEMU or the guest agent closed the connection or sent something unreadable.
    Details: C(socket)."
  - "V(RuntimeFileError): a per-socket lock file, the freeze marker, or the private directory holding them
    (C(/run/qemu-vm) for root) is not what qemu.vm makes there: a symbolic link, a FIFO, another user's file, a
    directory open to others. Nothing was read or written through it; the message says what to remove.
    Details: C(runtime_path)."
  - "V(HypervisorError): raised by the C(qemu.vm.qga) connection and the C(qemu.vm.qemu) inventory only, never
    by a module: a hypervisor reached over SSH cannot be used (unreachable, authentication refused, unknown host
    key, no C(python3) there, the SSH connection failed). Details: C(hypervisor)."
  - "V(ReplyTooLargeError): QEMU or the guest agent sent a reply longer than the session accepts (64 MiB and the
    JSON around it for agent sessions, the largest C(guest-file-read) chunk; 1 MiB where only small answers are
    expected); the session was closed. Details: C(socket), C(reply_limit) (bytes)."
  - "V(AgentNotRespondingError): QEMU accepted the connection on the agent socket, but no guest agent answered
    (it is not installed, not running, or the guest is still booting). Details: C(socket)."
  - "V(CommandError), V(CommandNotFoundError), V(CommandDisabledError), V(GuestFrozenError): QEMU, the guest
    agent or C(qemu-img) on the host answered a command with an error; the command is unknown to it; the agent
    has it disabled or blocked (qemu-ga C(--block-rpcs) or C(--allow-rpcs)); the agent refused it because the
    guest filesystems are frozen. Details: C(command), C(error_class), C(error_desc)."
  - "V(JobError): a QMP job (a snapshot save, load or delete, a backup copy) ended with an error.
    Details: C(job_id), C(job_type), C(job_error)."
  - "V(QemuTimeoutError): a bounded wait ran out (C(timeout), or the bound the message names).
    Details: C(timed_out) (what was waited for), C(timeout) (its seconds)."
  - "V(ExecTimeoutError): a program in the guest ran past its bound and was killed there, with its children.
    Details: C(timed_out), C(timeout), C(pid), C(killed) (false when killing it failed: it may still run),
    and the output collected so far, C(stdout), C(stderr), C(stdout_truncated), C(stderr_truncated)."
  - "V(VMStateError): the VM, the guest or the host is not in a state that allows the request (for example
    the VM is not running, so its guest agent cannot answer; a snapshot is missing; C(qemu-img) is not
    installed); the message says which. No detail fields."
  - "V(QuiesceError): C(quiesce=required) and the guest filesystems could not be frozen; no snapshot or backup
    point was taken. No detail fields."
  - "V(ImageInUseError): C(qemu-img) could not take the lock of a disk image: a running QEMU has it open, and
    its image is never written. Details: C(image)."
  - "V(DBusBusError): the D-Bus bus that the VM's C(dbus-vmstate) object uses cannot be reached or read.
    Details: C(object_id), C(bus_address) (each when known)."
  - "V(DBusVMStateError): the C(dbus-vmstate) helpers on the VM's bus would make QEMU crash or fail the next
    snapshot save or load; QEMU was not asked. Details: C(object_id), C(bus_address), C(problems), C(helpers)."
  - "V(DBusCallError): a peer on the D-Bus bus answered a call with an error. Details: C(dbus_error)."
  - "V(ProgramNotFoundError): C(guest-exec) could not start a program in the guest (it is missing or not
    executable, or the guest is not POSIX). Details: C(program), C(error_desc)."
  - "V(QemuStartError): QEMU refused to start the VM (M(qemu.vm.qemu_vm)); nothing it or the module made is left
    behind. Details: C(qemu_message) (QEMU's own message), C(argv) (the command line tried)."
  - "V(MissingProgramError): a program the task needs is not installed on the host that runs the module; the
    message names its package. Details: C(program), C(package)."
  - "V(UntrustedPathError): something at or in a run directory is not what the module made (a symbolic link,
    another owner, open permissions); it was refused and left untouched. Details: C(path)."
  - "V(ProgramFailedError): the program that M(qemu.vm.qemu_guest_exec) ran in the guest exited non-zero or was
    killed by a signal. Details: the whole result that module returns when the program succeeds (C(cmd), C(rc),
    C(stdout), C(stderr) and the rest)."
  - "V(GuestFileMissingError), V(GuestDirectoryMissingError), V(GuestPermissionError), V(GuestIsADirectoryError),
    V(GuestNotADirectoryError), V(GuestNotAFileError), V(GuestDanglingLinkError), V(GuestReadOnlyError),
    V(GuestNoSpaceError), V(GuestExecUnavailableError), V(GuestFileChangedError), V(GuestFileTimeoutError),
    V(GuestFileError): a guest file cannot be used: it does not exist; the directory that would hold it does not
    exist; the guest forbids it (permissions, a security policy); the path is a directory; a component of it is
    not a directory; it is not a regular file (a device, a pipe); it is a symbolic link to nothing; the guest
    filesystem is read-only; it is full; the operation needs C(guest-exec), which the agent does not offer;
    something else (a guest user) changed the path while the task worked on it, and it was left as it is; the
    transfer ran past its bound (C(timeout) plus a second per MiB); another reason the message gives.
    Details: C(guest_path)."
  - "V(GuestFileTooLargeError): the guest file holds more than may be read (over C(max_size), or it reports no
    size, like C(/dev/zero) or a pseudo file, and holds more than the bound); nothing was written.
    Details: C(guest_path), C(size_limit) (the bound in bytes)."
  - "V(GuestToolMissingError): C(guest-exec) cannot start a POSIX tool the operation needs in the guest.
    Details: C(guest_path), C(program)."
  - "V(LocalFileError), V(SourceFileError): the file on the controller or managed host (C(dest), a fetched
    copy), or C(src), cannot be read or written. Details: C(guest_path)."
  - "V(LocalNoSpaceError): the filesystem where a fetched file goes has less free space than the guest file's
    size; nothing was written. Details: C(guest_path), C(bytes_needed), C(bytes_free)."
  - "V(BackupError): preparing or finishing a backup point failed (its target files, its jobs).
    No detail fields."
  - "V(ManifestError): the manifest of a backup chain cannot be read, written or removed. No detail fields."
  - "V(ChainInvalidError): C(mode=incremental), but there is no valid chain to add the point to.
    No detail fields."
  - "V(BackupCorruptError): a file of the backup chain is missing or does not match its manifest's size or
    sha256; nothing was restored. Details: C(file)."
  - "V(QemuVMError): any other problem with QEMU or its guest agent (for example guest output that is not
    base64); the message says what. No detail fields."
'''
