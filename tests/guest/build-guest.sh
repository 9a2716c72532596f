#!/usr/bin/env bash
# Build the tiny test guest used by the system tests (tests/harness/guest.py).
#
# Output, in ${QEMU_VM_CACHE:-<repo>/.cache}/guest/:
#   vmlinuz     Debian cloud kernel (extracted from its .deb, never installed)
#   initrd.img  gzip'd newc cpio: busybox-static, qemu-ga + its libraries, virtio modules, /init
#   data.qcow2  64 MiB ext4 data disk holding /hello.txt
#   python.qcow2  read-only ext4 disk (label qvmpython) with Debian's python3.11, mounted by the
#               init only with qemu_vm.python=1 on the kernel command line (VM(python=True))
#   stamp       cache key (sha256 of this script + kernel, qemu-guest-agent and busybox versions)
#
# Rebuilds only when the cache key changes. Needs: apt-get, dpkg, busybox-static,
# e2fsprogs (mkfs.ext4 with -d), qemu-utils (qemu-img), flock, gzip.
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT")/../.." && pwd)
CACHE_ROOT=${QEMU_VM_CACHE:-$REPO/.cache}
OUT=$CACHE_ROOT/guest
BUSYBOX=/bin/busybox
DATA_DISK_SIZE=64M

log() { printf 'guest: %s\n' "$*" >&2; }
die() { printf 'guest: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# One apt-cache call (it is slow when apt keeps no binary cache): the cloud metapackage's
# candidate pins the versioned kernel package, e.g.
# "Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)".
resolve_versions() {
    local info
    info=$(apt-cache show --no-all-versions linux-image-cloud-amd64 qemu-guest-agent 2>/dev/null) || true
    read -r KPKG KVER_PKG < <(awk '
        /^Package: / { pkg = $2 }
        pkg == "linux-image-cloud-amd64" && /^Depends: / {
            if (match($0, /linux-image-[^ ,]*-cloud-amd64 \(= [^)]*\)/)) {
                dep = substr($0, RSTART, RLENGTH); gsub(/[()=]/, "", dep); print dep; exit
            }
        }' <<<"$info") || true
    QGA_VER=$(awk '/^Package: / { pkg = $2 } pkg == "qemu-guest-agent" && /^Version: / { print $2; exit }' \
        <<<"$info")
    [ -n "${KPKG:-}" ] && [ -n "${KVER_PKG:-}" ] && [ -n "$QGA_VER" ]
}

if ! resolve_versions; then
    log "apt lists lack the kernel or qemu-guest-agent package, running apt-get update"
    as_root apt-get update -qq
    resolve_versions || die "cannot resolve linux-image-cloud-amd64 / qemu-guest-agent from apt"
fi
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
BB_VER=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)
[ -n "$BB_VER" ] || die "busybox-static is not installed"

# --- python disk: version (part of the cache key) ---
PY_PKGS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib)
PY_VER=$(apt-cache show --no-all-versions python3.11-minimal 2>/dev/null | awk '/^Version: / { print $2; exit }')
[ -n "$PY_VER" ] || die "cannot resolve python3.11-minimal from apt"

SCRIPT_SUM=$(sha256sum "$SCRIPT" | cut -d' ' -f1)
KEY=$(printf '%s\n' "$SCRIPT_SUM" "$KPKG=$KVER_PKG" "qemu-guest-agent=$QGA_VER" \
    "busybox-static=$BB_VER" "python3.11=$PY_VER" | sha256sum | cut -d' ' -f1)

is_cached() {
    [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$KEY" ] \
        && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ -s "$OUT/data.qcow2" ] \
        && [ -s "$OUT/python.qcow2" ]
}

if is_cached; then
    echo "guest: cached"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# Serialise concurrent builds (parallel test runs).
exec 9>"$CACHE_ROOT/guest.lock"
flock 9
if is_cached; then
    echo "guest: cached"
    exit 0
fi

WORK=$(mktemp -d "$CACHE_ROOT/guest-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "building ($KPKG $KVER_PKG, qemu-guest-agent $QGA_VER, busybox $BB_VER)"

# --- download (no install) ---------------------------------------------------
DL=$WORK/dl
mkdir -p "$DL"
chmod 0755 "$WORK"
# Let apt's sandbox user write there; otherwise apt warns and downloads as root.
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$DL"; fi
download() {
    (cd "$DL" && apt-get download -q "$@")
}
if ! download "$KPKG=$KVER_PKG" "qemu-guest-agent=$QGA_VER"; then
    log "download failed, refreshing apt lists and retrying"
    as_root apt-get update -qq
    download "$KPKG=$KVER_PKG" "qemu-guest-agent=$QGA_VER"
fi
mkdir -p "$WORK/kernel" "$WORK/qga"
dpkg -x "$DL"/linux-image-*.deb "$WORK/kernel"
dpkg -x "$DL"/qemu-guest-agent_*.deb "$WORK/qga"

VMLINUZ=$(find "$WORK/kernel/boot" -name 'vmlinuz-*' | head -n1)
[ -n "$VMLINUZ" ] || die "no vmlinuz in $KPKG"
KVER=${VMLINUZ##*/vmlinuz-}
MODSRC=$WORK/kernel/lib/modules/$KVER/kernel

# --- initramfs tree ------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,data,home/alice,home/tester,var,lib64}
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
ln -s ../run "$R/var/run"

cp "$BUSYBOX" "$R/bin/busybox"
# Applet links (bin/sh, sbin/poweroff, usr/bin/sha256sum, ...).
"$BUSYBOX" --list-full | while read -r applet; do
    [ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done

# qemu-ga and the libraries it links, plus the dynamic loader.
QGA_BIN=$WORK/qga/usr/sbin/qemu-ga
[ -x "$QGA_BIN" ] || die "no usr/sbin/qemu-ga in the qemu-guest-agent package"
cp "$QGA_BIN" "$R/usr/sbin/qemu-ga"
LDD_OUT=$(ldd "$QGA_BIN") || die "ldd qemu-ga failed"
if grep -q 'not found' <<<"$LDD_OUT"; then
    die "qemu-ga libraries missing on this host: $(grep 'not found' <<<"$LDD_OUT" | tr '\n' ' ')"
fi
while read -r lib; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done < <(awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}' <<<"$LDD_OUT")

# Kernel modules, in load order (no modules.dep is shipped).
MODULES=(drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
    drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/char/virtio_console
    drivers/block/virtio_blk net/core/failover drivers/net/net_failover drivers/net/virtio_net
    drivers/acpi/button drivers/input/evdev)
for m in "${MODULES[@]}"; do
    src=$MODSRC/$m.ko
    [ -f "$src" ] || die "module $m.ko not in $KPKG"
    mkdir -p "$R/lib/modules/$KVER/kernel/$(dirname "$m")"
    cp "$src" "$R/lib/modules/$KVER/kernel/$m.ko"
done
printf '%s\n' "${MODULES[@]}" > "$R/etc/modules-order"

cat > "$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
alice:x:1000:1000:Alice:/home/alice:/bin/sh
tester:x:1001:1001:Tester:/home/tester:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$R/etc/group" <<'EOF'
root:x:0:
staff:x:50:alice
alice:x:1000:
tester:x:1001:
nogroup:x:65534:
EOF
# --- for the qemu.vm.qga connection tests: Ansible's become to an unprivileged user puts its
# files under /var/tmp, which every Linux has world-writable and sticky.
mkdir -p "$R/var/tmp"
chmod 1777 "$R/var/tmp"

cat > "$R/etc/os-release" <<'EOF'
NAME="qemu.vm test guest"
PRETTY_NAME="qemu.vm test guest"
ID=qemuvm
VERSION_ID="1"
EOF
echo qemuvm-guest > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 qemuvm-guest\n' > "$R/etc/hosts"
: > "$R/etc/fstab"
# Shadow entries without passwords ('!', '*'), for guest-set-user-password and readers of /etc/shadow.
cat > "$R/etc/shadow" <<'EOF'
root:*:20000:0:99999:7:::
alice:!:20000:0:99999:7:::
tester:!:20000:0:99999:7:::
nobody:*:20000:0:99999:7:::
EOF
chmod 0600 "$R/etc/shadow"

# /usr/sbin/chpasswd shim: busybox-static has no chpasswd applet, and qemu-ga's
# guest-set-user-password pipes "user:password" lines into `chpasswd` (`chpasswd -e` for a hash).
cat > "$R/usr/sbin/chpasswd" <<'EOF'
#!/bin/sh
encrypted=0
for arg in "$@"; do
    case "$arg" in
        -e|--encrypted) encrypted=1 ;;
        *) echo "chpasswd: unsupported option $arg" >&2; exit 2 ;;
    esac
done
status=0
while IFS= read -r line; do
    user=${line%%:*}
    pass=${line#*:}
    if [ "$user" = "$line" ] || [ -z "$user" ]; then
        echo "chpasswd: line without user:password" >&2; status=1; continue
    fi
    if [ "$encrypted" = 0 ]; then
        pass=$(printf '%s\n' "$pass" | mkpasswd -m sha512) || { status=1; continue; }
    fi
    if CHP_USER=$user CHP_PASS=$pass awk -F: -v OFS=: '
        $1 == ENVIRON["CHP_USER"] { $2 = ENVIRON["CHP_PASS"]; $3 = int(systime() / 86400); found = 1 }
        { print } END { exit !found }' /etc/shadow > /etc/shadow+; then
        chmod 0600 /etc/shadow+ && mv /etc/shadow+ /etc/shadow || status=1
    else
        rm -f /etc/shadow+
        echo "chpasswd: user '$user' not in /etc/shadow" >&2; status=1
    fi
done
exit $status
EOF
chmod 0755 "$R/usr/sbin/chpasswd"

# /sbin/shutdown shim: qemu-ga runs `/sbin/shutdown -P|-H|-r +0 "msg"` and waits for exit 0.
cat > "$R/sbin/shutdown" <<'EOF'
#!/bin/sh
action=poweroff
for arg in "$@"; do
    case "$arg" in
        -P|-h|--poweroff) action=poweroff ;;
        -H|--halt) action=halt ;;
        -r|--reboot) action=reboot ;;
    esac
done
echo "shutdown shim: $action" >/dev/console 2>/dev/null
sync
umount /data 2>/dev/null || mount -o remount,ro /data 2>/dev/null
sync
( sleep 0.2; sync; "$action" -f ) </dev/null >/dev/null 2>&1 &
exit 0
EOF
chmod 0755 "$R/sbin/shutdown"

# ACPI power button (qemu_vm.acpid=1 on the kernel command line): busybox acpid maps the button's
# KEY_POWER to /etc/acpi/PWRF/00000080 and runs it, and the guest powers off as `shutdown -P` does.
# Without it the guest ignores the button (system_powerdown), as the force/quit tests need.
mkdir -p "$R/etc/acpi/PWRF"
printf '#!/bin/sh\nexec /sbin/shutdown -P +0 "ACPI power button"\n' > "$R/etc/acpi/PWRF/00000080"
chmod 0755 "$R/etc/acpi/PWRF/00000080"

cat > "$R/init" <<'EOF'
#!/bin/sh
# PID 1 of the qemu.vm test guest. Never exits.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /run/qga-state
mount -t devpts devpts /dev/pts
hostname qemuvm-guest

kver=$(uname -r)
while read -r m; do
    insmod "/lib/modules/$kver/kernel/$m.ko" || echo "init: insmod $m failed"
done < /etc/modules-order

noagent=0
acpid=0
ga_block=
without=
for word in $(cat /proc/cmdline); do
    case "$word" in
        qemu_vm.noagent=1) noagent=1 ;;
        qemu_vm.acpid=1) acpid=1 ;;
        qemu_vm.ga_block=*) ga_block=${word#qemu_vm.ga_block=} ;;
        qemu_vm.without=*) without=${word#qemu_vm.without=} ;;
    esac
done
# qemu_vm.without=prog[,prog]: a guest lacking these programs (e.g. chpasswd, for error paths).
for prog in $(echo "$without" | tr ',' ' '); do
    rm -f "/sbin/$prog" "/bin/$prog" "/usr/sbin/$prog" "/usr/bin/$prog"
done
chown 1001:1001 /home/tester

# /dev/virtio-ports/<name> links, as udev would make them.
make_port_links() {
    mkdir -p /dev/virtio-ports
    for n in /sys/class/virtio-ports/*/name; do
        [ -r "$n" ] || continue
        name=$(cat "$n")
        dev=${n%/name}
        dev=${dev##*/}
        [ -n "$name" ] && [ -e "/dev/$dev" ] && ln -sf "../$dev" "/dev/virtio-ports/$name"
    done
}
port=/dev/virtio-ports/org.qemu.guest_agent.0
i=0
while :; do
    make_port_links
    [ -e "$port" ] && break
    i=$((i + 1))
    [ "$i" -ge 100 ] && { echo "init: no $port"; break; }
    sleep 0.1
done

i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 /dev/vda /data || echo "init: cannot mount /dev/vda on /data"

# --- python disk (VM(python=True)): link its tree into / without copying ---
link_tree() {  # link_tree SRC DST: symlink what DST lacks, descend where both are directories
    for entry in "$1"/* "$1"/.[!.]*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        target=$2/${entry##*/}
        if [ ! -e "$target" ] && [ ! -L "$target" ]; then
            ln -s "$entry" "$target"
        elif [ -d "$entry" ] && [ ! -L "$entry" ] && [ -d "$target" ] && [ ! -L "$target" ]; then
            link_tree "$entry" "$target"
        fi
    done
}
case " $(cat /proc/cmdline) " in
    *" qemu_vm.python=1 "*)
        i=0
        pydev=
        while [ -z "$pydev" ] && [ "$i" -lt 100 ]; do
            pydev=$(findfs LABEL=qvmpython 2>/dev/null) || pydev=
            [ -n "$pydev" ] || { sleep 0.1; i=$((i + 1)); }
        done
        mkdir -p /opt/qemu-vm-python
        if [ -n "$pydev" ] && mount -t ext4 -o ro "$pydev" /opt/qemu-vm-python; then
            link_tree /opt/qemu-vm-python ""
        else
            echo "init: no python disk (label qvmpython)"
        fi
        ;;
esac

if [ "$acpid" = 1 ]; then
    i=0
    while [ ! -e /dev/input/event0 ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    acpid -c /etc/acpi -l /dev/console || echo "init: acpid failed"
fi

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.0.2.2 dev eth0 2>/dev/null
fi

echo "init: ready"
if [ "$noagent" = 1 ]; then
    echo "init: guest agent disabled"
    while :; do sleep 3600; done
fi
set -- -m virtio-serial -p "$port" -t /run/qga-state
[ -n "$ga_block" ] && set -- "$@" -b "$ga_block"
# Restart the agent whenever it exits; the waits also reap orphans re-parented to PID 1.
while :; do
    qemu-ga "$@"
    echo "init: qemu-ga exited ($?), restarting"
    sleep 1
    make_port_links
done
EOF
chmod 0755 "$R/init"

# --- python disk: Debian's python3.11 (from its .debs) and the host libraries it links ---
mkdir -p "$WORK/py"
download "${PY_PKGS[@]/%/=$PY_VER}" || { as_root apt-get update -qq; download "${PY_PKGS[@]/%/=$PY_VER}"; }
for pkg in "${PY_PKGS[@]}"; do dpkg -x "$DL/${pkg}_"*.deb "$WORK/py"; done
P=$WORK/py
rm -rf "${P:?}/usr/share" "$P/usr/lib/python3.11/ensurepip" "$P/usr/lib/python3.11/idlelib" \
    "$P/usr/lib/python3.11/lib2to3" "$P/usr/lib/python3.11/pydoc_data"
ln -sf python3.11 "$P/usr/bin/python3"
mkdir -p "$P/usr/lib/python3/dist-packages"
[ -x "$P/usr/bin/python3.11" ] || die "no usr/bin/python3.11 in python3.11-minimal"
# Libraries the interpreter and its extension modules link, from the host (same Debian),
# except those the initramfs already has (qemu-ga's). An extension whose library the host
# lacks is dropped: it is optional for Ansible.
for obj in "$P/usr/bin/python3.11" "$P"/usr/lib/python3.11/lib-dynload/*.so; do
    deps=$(ldd "$obj" 2>/dev/null) || continue
    if grep -q 'not found' <<<"$deps"; then
        log "python disk: dropping ${obj##*/} ($(grep 'not found' <<<"$deps" | awk '{print $1}' | tr '\n' ' '))"
        [ "${obj##*/}" = python3.11 ] && die "python3.11 itself links libraries this host lacks"
        rm -f "$obj"
        continue
    fi
    while read -r lib; do
        [ -e "$R$lib" ] || [ -e "$P$lib" ] && continue
        mkdir -p "$P$(dirname "$lib")"
        cp -L "$lib" "$P$lib"
    done < <(awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}' <<<"$deps")
done
# Debian compiles the .pyc files at install time; do it here (the disk is read-only in the
# guest), with hashes that are never checked, so Python does not recompile at every start.
python3.11 -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$P" -p /opt/qemu-vm-python \
    "$P/usr/lib/python3.11" >/dev/null || die "compileall failed (python3.11 on this host?)"
mkfs.ext4 -q -F -L qvmpython -E root_owner=0:0 -d "$P" "$WORK/python.raw" \
    "$(( $(du -sm "$P" | cut -f1) * 13 / 10 + 16 ))M" >/dev/null
# -d keeps the builder's uids; the tree is read-only and world-readable, so they do not matter.

# --- outputs ---------------------------------------------------------------------
NEW=$WORK/out
mkdir -p "$NEW"
cp "$VMLINUZ" "$NEW/vmlinuz"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) \
    | gzip -9 > "$NEW/initrd.img"

mkdir -p "$WORK/datafs"
printf 'hello from qemu.vm guest\n' > "$WORK/datafs/hello.txt"
mkfs.ext4 -q -F -L qvmdata -E root_owner=0:0 -d "$WORK/datafs" "$WORK/data.raw" "$DATA_DISK_SIZE" >/dev/null
# Files copied by -d keep the builder's uid/gid: make hello.txt root's even when not built as root.
for field in uid gid; do
    debugfs -w -R "set_inode_field /hello.txt $field 0" "$WORK/data.raw" >/dev/null 2>&1
done
qemu-img convert -q -f raw -O qcow2 "$WORK/data.raw" "$NEW/data.qcow2"
qemu-img convert -q -f raw -O qcow2 "$WORK/python.raw" "$NEW/python.qcow2"
echo "$KEY" > "$NEW/stamp"

rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$NEW" "$OUT"
rm -rf "$OUT.old"
log "built in $OUT ($(du -h "$OUT/initrd.img" | cut -f1) initrd)"
