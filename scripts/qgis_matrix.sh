#!/usr/bin/env bash
# The QGIS suite on the QGIS versions users run: each Debian suite's own QGIS, in a chroot.
#
#   scripts/qgis_matrix.sh [SUITE...]        (make test-qgis-matrix; default: trixie sid)
#
#   trixie  Debian 13: QGIS 3.40 LTR, Python 3.13, pytest 8.3
#   sid     Debian unstable: QGIS 3.44, Python 3.14, pytest 9
#
# Each suite gets a minimal root file system from the Debian package registry (debootstrap, kept
# in build/matrix/<suite> and reused on the next run), a fresh copy of this working tree (tracked
# and untracked files, not the ignored ones) in /root/tilewise, and a clean environment. Inside,
# the Makefile installs what it needs itself, as on a fresh machine, then runs MATRIX_TARGETS.
#
# Environment:
#   MATRIX_TARGETS  make targets to run inside (default: test-qgis)
#   MATRIX_DIR      where the root file systems live (default: build/matrix)
#   MIRROR          Debian mirror (default: the host's, from /etc/apt/sources.list*)
#   MATRIX_FRESH=1  rebuild the root file systems (otherwise they, the engine venv and the
#                   pip cache inside them are reused; the sources and numba's cache never are)
#   QT6_CHECKER     path to QGIS's scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py (not part of this
#                   repository): also run it, with this suite's QGIS for introspection, on a copy of
#                   the tree; it fails the suite if it would change a file or warns
#
# Nothing is mounted on the host: each command inside runs in mount and PID namespaces of its own,
# so its mounts and processes end with it, also on failure or Ctrl-C. Needs root (sudo).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MATRIX_DIR="$(realpath -m "${MATRIX_DIR:-$ROOT/build/matrix}")"
MATRIX_TARGETS="${MATRIX_TARGETS:-test-qgis}"
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie sid)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { printf '>> [%s] %s\n' "${CURRENT:-matrix}" "$*"; }
elapsed() { printf '%ds' $(( $(date +%s) - $1 )); }

host_mirror() {
    # The Debian mirror the host already uses (deb822 .sources or one-line .list), else the default.
    local uri
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
          | grep -E '/debian/?$' | head -n1)
    [ -n "$uri" ] || uri=$(grep -hsE '^deb +(\[[^]]*\] +)?https?://' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' | grep -E '/debian/?$' | head -n1)
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${MIRROR:-$(host_mirror)}"

# --- the chroot: a mount and PID namespace of its own per command ---------------------------------
# Each command runs in a fresh mount namespace (so nothing is mounted on the host, nothing needs
# unmounting, whatever happens) and PID namespace (so whatever it leaves running, a test's nginx or a
# stuck worker, is killed by the kernel when it ends). Inside, the root file system is bind-mounted
# onto itself and entered with pivot_root, not chroot: in a plain chroot "/" is not a mount point,
# so `unshare --mount --propagation private` fails with "cannot change root filesystem propagation:
# Invalid argument", and the kernel refuses a chrooted process a user namespace, so
# `unshare --map-root-user` fails with "Operation not permitted". The tests use both (tests/readonly.py,
# the full-disk tests), as the host can.
ENTER='set -e
root=$1 cmd=$2
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
# Python multiprocessing needs a POSIX shared-memory folder of its own.
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
mkdir -p "$root/.oldroot"
cd "$root"
pivot_root . .oldroot
umount -l /.oldroot
cd /
set +e
# not exec: this shell stays PID 1 of the namespace and reaps what is orphaned in it
/bin/bash -c "$cmd"'

in_chroot() {  # in_chroot ROOT COMMAND: a login-like clean environment, nothing from the host's
    local root=$1; shift
    $SUDO env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        unshare --mount --propagation private --pid --fork --kill-child \
        /bin/sh -c "$ENTER" enter "$root" "$*"
}
trap 'exit 130' INT TERM

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    log "installing debootstrap from Debian"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends debootstrap
}

make_rootfs() {  # make_rootfs SUITE ROOT: debootstrap once, reuse afterwards
    local suite=$1 root=$2 t
    if [ "${MATRIX_FRESH:-0}" = 1 ] && [ -e "$root" ]; then
        log "MATRIX_FRESH=1: removing $root"
        $SUDO rm -rf --one-file-system "$root"
    fi
    if [ -e "$root/.tilewise-rootfs" ]; then
        log "reusing the root file system in $root"
        return 0
    fi
    $SUDO rm -rf --one-file-system "$root"
    mkdir -p "$root"
    t=$(date +%s)
    log "debootstrap $suite from $MIRROR"
    $SUDO debootstrap --variant=minbase --include=ca-certificates,make,git,sudo \
        "$suite" "$root" "$MIRROR" >"$root.debootstrap.log" 2>&1 \
        || { echo "!! debootstrap failed, see $root.debootstrap.log" >&2; tail -n 20 "$root.debootstrap.log" >&2; return 1; }
    $SUDO touch "$root/.tilewise-rootfs"
    log "debootstrap took $(elapsed "$t")"
}

prepare_root() {  # name resolution, the host's CA certificates, apt settings
    local root=$1
    $SUDO cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    # The network's TLS may be inspected by a proxy whose CA only the host trusts: without it,
    # pip fails with CERTIFICATE_VERIFY_FAILED.
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        $SUDO mkdir -p "$root/usr/local/share/ca-certificates"
        $SUDO cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    fi
    in_chroot "$root" "update-ca-certificates >/dev/null 2>&1" || echo "!! update-ca-certificates failed" >&2
    # A mirror's (or snapshot's) Release file can be past its Valid-Until, which sid's always
    # nears; this root file system is a throw-away test bed, so accept it.
    echo 'Acquire::Check-Valid-Until "false";' | $SUDO tee "$root/etc/apt/apt.conf.d/99tilewise-matrix" >/dev/null
}

tree_to() {  # tree_to DIR: this working tree as it is (tracked and untracked files, not ignored ones)
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | $SUDO tar -xf - -C "$1"
}

copy_sources() {  # a fresh copy in /root/tilewise, keeping the previous run's engine venv and stamps
    local root=$1 dest="$1/root/tilewise"
    $SUDO mkdir -p "$dest"
    $SUDO find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv ! -name build -exec rm -rf {} +
    $SUDO rm -rf "$dest/build/plugins"
    tree_to "$dest"
}

qt6_check() {  # QGIS's Qt6 / QGIS 4 migration checker; it rewrites files, so it gets a copy
    local root=$1 out
    $SUDO rm -rf "$root/tmp/qt6-check" && $SUDO mkdir -p "$root/tmp/qt6-check/tree"
    $SUDO cp "$QT6_CHECKER" "$root/tmp/qt6-check/pyqt5_to_pyqt6.py"
    tree_to "$root/tmp/qt6-check/tree"
    out=$(in_chroot "$root" "set -e
        test -x /root/qt6-check-venv/bin/python || python3 -m venv --system-site-packages /root/qt6-check-venv
        /root/qt6-check-venv/bin/python -m pip install -q PyQt6 PyQt6-QScintilla tokenize-rt astpretty \
            >/tmp/qt6-check/pip.log 2>&1 || { cat /tmp/qt6-check/pip.log; exit 1; }
        cd /tmp/qt6-check/tree && git -c init.defaultBranch=main init -q && git add -A && git -c user.name=check -c user.email=check@invalid commit -qm tree
        QT_QPA_PLATFORM=offscreen /root/qt6-check-venv/bin/python /tmp/qt6-check/pyqt5_to_pyqt6.py . 2>&1 || true
        git diff --stat; git diff" 2>&1)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" | sed "s/^/   [$CURRENT qt6] /"
        log "pyqt5_to_pyqt6: NOT clean (it would change files or warned; see above)"
        return 1
    fi
    log "pyqt5_to_pyqt6: clean (no change, no warning, QGIS $(in_chroot "$root" "dpkg-query -W -f='\${Version}' qgis") enums introspected)"
}

run_suite() {
    local suite=$1 root="$MATRIX_DIR/$1" t t0 status
    CURRENT=$suite
    t0=$(date +%s)
    make_rootfs "$suite" "$root" || return 1
    prepare_root "$root"
    copy_sources "$root"
    t=$(date +%s)
    log "make deps (QGIS, GDAL, nginx from $suite; the engine venv from PyPI)"
    in_chroot "$root" "cd /root/tilewise && make --no-print-directory deps" >"$root.deps.log" 2>&1
    status=$?
    log "make deps took $(elapsed "$t") (log: $root.deps.log)"
    if [ $status -eq 0 ]; then
        in_chroot "$root" "dpkg-query -W -f='\${Package} \${Version}\n' qgis python3 python3-pytest 2>/dev/null" | sed "s/^/   [$suite] /"
        for target in $MATRIX_TARGETS; do
            t=$(date +%s)
            log "make $target"
            in_chroot "$root" "cd /root/tilewise && make --no-print-directory $target" 2>&1 | tee "$root.$target.log"
            status=${PIPESTATUS[0]}
            log "make $target: exit $status, took $(elapsed "$t") (log: $root.$target.log)"
            [ $status -eq 0 ] || break
        done
        if [ -n "${QT6_CHECKER:-}" ]; then
            qt6_check "$root" || status=1
        fi
    else
        tail -n 30 "$root.deps.log"
    fi
    log "$suite took $(elapsed "$t0") in all"
    return $status
}

main() {
    local suite failed=() passed=()
    ensure_debootstrap || return 1
    mkdir -p "$MATRIX_DIR"
    for suite in "${SUITES[@]}"; do
        if run_suite "$suite"; then passed+=("$suite"); else failed+=("$suite"); fi
    done
    CURRENT=""
    log "passed on: ${passed[*]:-none}; failed on: ${failed[*]:-none}"
    [ ${#failed[@]} -eq 0 ]
}

# On one line, so that bash has read all of it before it runs: editing this file during a run is safe.
main; exit $?
