#!/bin/sh
# Install and start what figures 6 and 7 compare against (issue 18), on Debian 12 as root:
# libvirtd (with virtlogd/virtlockd started by hand when systemd is not PID 1), virtnbdbackup,
# and a bench venv (BENCH_VENV, default .venv-bench) with the `ansible` package (it ships
# community.libvirt) and libvirt-python. Idempotent: a second run only checks and starts daemons.
# libvirt's default network is never started (the bench domain has no NIC).
set -eu
VENV=${BENCH_VENV:-$(pwd)/.venv-bench}
PYTHON=${PYTHON:-python3}

need_apt=
for pkg in libvirt-daemon-system libvirt-dev virtnbdbackup pkg-config gcc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt="$need_apt $pkg"
done
if [ -n "$need_apt" ]; then
    if [ "$(id -u)" != 0 ]; then echo "anchors: need root to install:$need_apt" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # The packages' own scripts do not start the daemons here (no systemd); they are started below.
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -q --no-install-recommends $need_apt
fi

# The daemons: under systemd use it; otherwise start each one by hand once.
if [ -d /run/systemd/system ]; then
    systemctl start virtlogd.socket virtlockd.socket libvirtd.service
else
    mkdir -p /run/libvirt
    for daemon in virtlogd virtlockd; do
        pidfile=/run/$daemon.pid
        if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
            "/usr/sbin/$daemon" -d -p "$pidfile"
        fi
    done
    if ! { [ -f /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; }; then
        /usr/sbin/libvirtd -d -p /run/libvirtd.pid
    fi
fi
# Wait for libvirtd's socket (at most 30 s).
i=0
until virsh -c qemu:///system version >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 60 ] || { echo "anchors: libvirtd does not answer" >&2; exit 1; }
    sleep 0.5
done
# No NAT or bridge: the default network stays down and is not autostarted.
virsh -q -c qemu:///system net-autostart default --disable >/dev/null 2>&1 || true
virsh -q -c qemu:///system net-destroy default >/dev/null 2>&1 || true

if ! "$VENV/bin/python" -c 'import libvirt, ansible_collections.community.libvirt, qemu.qmp' 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "ansible-core==2.19.14" "ansible>=12,<13" libvirt-python "qemu.qmp==0.0.6"
fi
"$VENV/bin/python" -c 'import libvirt; print("anchors: libvirt", libvirt.getVersion())'
