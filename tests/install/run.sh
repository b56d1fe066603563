#!/usr/bin/env bash
# shellcheck disable=SC2016 # in dpkg-query formats, ${...} is dpkg's, not the shell's
# Clean-system install test of the c2cd Debian package.
#
#   tests/install/run.sh [--deb FILE] [--keep]
#
# Without --deb, builds the package from this checkout (dpkg-buildpackage -b -us
# -uc) and tests the newest ../c2cd_*_amd64.deb; with --deb, tests FILE.
#
# Installs the package with dpkg into a fresh Debian 12 (bookworm) minbase root made
# by debootstrap from the mirror apt uses, and checks there: the c2cd user, the
# binary, the permissions and conffile status of /etc/c2cd, the man pages,
# check-config, the loopback-only default, the units and their enablement, a
# c2cd serve run as c2cd answering a signed demo XIP request, the DEP-8 smoke test
# (debian/tests/smoke), an upgrade keeping an operator's edit, remove and purge.
#
# Needs root, debootstrap, file, curl, zstd or gzip. No systemd runs in the root: a
# policy-rc.d forbids starting services, and the test plays systemd's part where it
# must (it runs the daemon itself, as c2cd, and makes its StateDirectory=).
#
# The debootstrapped root is cached as a tarball in ${C2CD_CACHE:-/var/cache/c2cd-install-test},
# named after the suite, architecture, variant and include list; every run unpacks
# a fresh copy. Delete the tarball to refresh it from the mirror. C2CD_MIRROR
# overrides the mirror.
#
# Each check prints "ok: ..." or "FAIL: ..."; the last line is
# "install test: N passed, M failed"; the exit status is 0 only when none failed.
# --keep leaves the root (and the logs) in place for inspection.
set -euo pipefail

SUITE=bookworm
ARCH=amd64
VARIANT=minbase
# Beyond minbase: the package's dependency, as the standalone sysusers (it conflicts
# with systemd, which a container does not run anyway, and keeps the root small),
# curl, which the DEP-8 smoke test run inside the root needs, and procps (kill, for
# ExecReload). Sorted: the cache tarball is named after this list.
INCLUDE=(curl procps systemd-standalone-sysusers)
CACHE_DIR=${C2CD_CACHE:-/var/cache/c2cd-install-test}

# The XIP seed's public demo partner and a request signed for it.
SECRET='B4n0ff13P13!_'
PARTNER=102821
REQUESTOR=16045551234
FULFILLMENT=16045550000
KNOWN_AUTH=742853c0131ab736ed1b2814789ea0cf   # README: c2cd sign for these values

WAIT_START=15   # seconds for c2cd serve to log "listening on"
WAIT_STOP=15    # seconds for c2cd serve to exit after SIGTERM

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
START=$SECONDS

usage() {
    echo "usage: $0 [--deb FILE] [--keep]" >&2
    exit 2
}

DEB=
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) [ $# -ge 2 ] || usage; DEB=$2; shift 2 ;;
        --deb=*) DEB=${1#--deb=}; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done

PASSED=0
FAILED=0

summary() {
    echo "install test: $PASSED passed, $FAILED failed"
}

# A failure before the checks can run: counted as one failed check.
setup_fail() {
    echo "FAIL: $*" >&2
    FAILED=$((FAILED + 1))
    summary
    exit 1
}

note() { echo "== $*"; }

[ "$(id -u)" = 0 ] || setup_fail "setup: must run as root (debootstrap, chroot, mount)"
for cmd in debootstrap dpkg-deb file curl chroot mount umount tar flock; do
    command -v "$cmd" >/dev/null 2>&1 || setup_fail "setup: $cmd is not installed"
done
if command -v zstd >/dev/null 2>&1; then
    COMPRESS=(--zstd) EXT=tar.zst
else
    COMPRESS=(--gzip) EXT=tar.gz
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/c2cd-install-test.XXXXXX")
ROOT=$WORK/root

# --- cleanup: processes in the root, mounts, the root itself -----------------

# Mount points at or under $1, deepest first.
mounts_under() {
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Kills what still runs chrooted in $ROOT (only this run's processes can be there).
kill_in_root() {
    local p pid
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

unmount_all() {
    local m
    for _ in 1 2 3; do
        [ -n "$(mounts_under "$WORK")" ] || return 0
        for m in $(mounts_under "$WORK"); do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
    done
    [ -z "$(mounts_under "$WORK")" ]
}

cleanup() {
    local rc=$?
    set +e
    kill_in_root
    if ! unmount_all; then
        echo "warning: still mounted under $WORK, not removing it:" >&2
        mounts_under "$WORK" >&2
    elif [ "$KEEP" = 1 ]; then
        echo "kept: the root is $ROOT, the logs are in $WORK" >&2
    else
        # --one-file-system: never follow a mount that survived into the host's /dev.
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the package ---------------------------------------------------------------

if [ -z "$DEB" ]; then
    note "building the package: dpkg-buildpackage -b -us -uc (log: $WORK/build.log)"
    if ! (cd "$REPO" && dpkg-buildpackage -b -us -uc) >"$WORK/build.log" 2>&1; then
        tail -n 40 "$WORK/build.log" | sed 's/^/  | /' >&2
        setup_fail "setup: dpkg-buildpackage -b -us -uc failed (the end of its log is above)"
    fi
    best_v=
    for f in "$(dirname "$REPO")"/c2cd_*_"$ARCH".deb; do
        [ -e "$f" ] || continue
        v=$(dpkg-deb -f "$f" Version)
        if [ -z "$DEB" ] || dpkg --compare-versions "$v" gt "$best_v"; then
            DEB=$f best_v=$v
        fi
    done
    [ -n "$DEB" ] || setup_fail "setup: no $(dirname "$REPO")/c2cd_*_$ARCH.deb after the build"
fi
[ -f "$DEB" ] || setup_fail "setup: no such package file: $DEB"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
pkg=$(dpkg-deb -f "$DEB" Package 2>/dev/null) || setup_fail "setup: $DEB is not a Debian package"
[ "$pkg" = c2cd ] || setup_fail "setup: $DEB is package '$pkg', not c2cd"
VERSION=$(dpkg-deb -f "$DEB" Version)
note "package: $DEB (c2cd $VERSION)"

# --- the clean root -------------------------------------------------------------

mirror() {
    local m=
    if [ -n "${C2CD_MIRROR:-}" ]; then
        echo "$C2CD_MIRROR"
        return
    fi
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                               if ($i !~ /security/) { print $i; exit } }' /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

INCLUDE_CSV=$(IFS=,; echo "${INCLUDE[*]}")
TARBALL=$CACHE_DIR/$SUITE-$ARCH-$VARIANT-${INCLUDE_CSV//,/+}.$EXT

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
flock 9   # one debootstrap at a time per cache
if [ -s "$TARBALL" ]; then
    note "cached root: $TARBALL"
else
    MIRROR=$(mirror)
    note "debootstrap --variant=$VARIANT --include=$INCLUDE_CSV $SUITE from $MIRROR (log: $WORK/debootstrap.log)"
    t0=$SECONDS
    if ! debootstrap --variant="$VARIANT" --arch="$ARCH" --components=main --include="$INCLUDE_CSV" \
        "$SUITE" "$WORK/bootstrap" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" | sed 's/^/  | /' >&2
        [ -f "$WORK/bootstrap/debootstrap/debootstrap.log" ] &&
            tail -n 30 "$WORK/bootstrap/debootstrap/debootstrap.log" | sed 's/^/  | /' >&2
        setup_fail "setup: debootstrap failed (the end of its logs is above)"
    fi
    unmount_all || setup_fail "setup: debootstrap left mounts under $WORK/bootstrap"
    rm -f "$WORK"/bootstrap/var/cache/apt/archives/*.deb
    tar -C "$WORK/bootstrap" --numeric-owner --xattrs -cp "${COMPRESS[@]}" -f "$TARBALL.tmp.$$" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' . ||
        setup_fail "setup: could not write $TARBALL"
    mv "$TARBALL.tmp.$$" "$TARBALL"
    rm -rf --one-file-system "$WORK/bootstrap"
    note "cached the root as $TARBALL ($((SECONDS - t0))s)"
fi
flock -u 9
exec 9>&-

mkdir "$ROOT"
tar -C "$ROOT" --numeric-owner --xattrs -xp "${COMPRESS[@]}" -f "$TARBALL" ||
    setup_fail "setup: could not unpack $TARBALL (delete it to rebuild the cache)"
mount -t proc proc "$ROOT/proc" || setup_fail "setup: could not mount /proc in the root"
# The host's /dev, read-only: the root gets /dev/null and friends, and nothing in
# it can remove a host device node.
mount --bind /dev "$ROOT/dev" || setup_fail "setup: could not bind-mount /dev in the root"
mount -o remount,bind,ro "$ROOT/dev" || setup_fail "setup: could not make the root's /dev read-only"

# No systemd runs here: forbid starting services (deb-systemd-invoke honours this).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cp "$DEB" "$ROOT/tmp/c2cd.deb"

# Runs a command in the root, with a clean environment.
inroot() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C HOME=/root \
        DEBIAN_FRONTEND=noninteractive "$@"
}
# Runs a command in the root as c2cd, as the unit does (User=, Group=, no supplementary groups).
as_c2cd() {
    inroot setpriv --reuid=c2cd --regid=c2cd --clear-groups "$@"
}

# --- checks ---------------------------------------------------------------------

# Inside a check: report the failure and end the check.
fail() {
    echo "FAIL: $CHECK: $*" >&2
    exit 99
}
ok() {
    echo "ok: $*"
}
indent() {
    sed 's/^/  | /'
}

# check NAME FUNCTION: runs FUNCTION in a subshell under set -e; a command failing
# unexpectedly is reported with its text and status.
check() {
    CHECK=$1
    local rc=0
    set +e
    (
        set -eEuo pipefail
        level=$BASH_SUBSHELL
        trap 'rc=$?; [ "$BASH_SUBSHELL" = "$level" ] && echo "FAIL: $CHECK: command failed (exit $rc): $BASH_COMMAND" >&2; exit $rc' ERR
        "$2"
    )
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
    fi
    return 0
}

# Whether process $1 runs (a zombie does not count).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# "owner:group mode" of a path in the root, names as the root's passwd says.
mode_of() {
    inroot stat -c '%U:%G %a' "$1"
}

check_install() {
    local out
    if ! out=$(inroot dpkg -i /tmp/c2cd.deb </dev/null 2>&1); then
        echo "$out" | indent >&2
        fail "dpkg -i c2cd.deb failed (its output is above)"
    fi
    echo "$out" | indent
    local status
    status=$(inroot dpkg-query -W -f='${db:Status-Abbrev}' c2cd)
    [ "$status" = "ii " ] || fail "dpkg-query says '$status' after dpkg -i, expected 'ii '"
    ok "dpkg -i installs c2cd $VERSION into a clean $SUITE $VARIANT root"
}

check_user() {
    local pw gr uid gid home shell ggid
    pw=$(inroot getent passwd c2cd) || fail "no user c2cd in the root's passwd"
    gr=$(inroot getent group c2cd) || fail "no group c2cd in the root's group"
    IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
    IFS=: read -r _ _ ggid _ <<<"$gr"
    [ "$uid" -lt 1000 ] || fail "user c2cd has uid $uid, not a system id: $pw"
    [ "$ggid" -lt 1000 ] || fail "group c2cd has gid $ggid, not a system id: $gr"
    [ "$gid" = "$ggid" ] || fail "user c2cd's primary group is $gid, not c2cd ($ggid)"
    [ "$shell" = /usr/sbin/nologin ] || fail "user c2cd has shell $shell, expected /usr/sbin/nologin"
    [ "$home" = /var/lib/c2cd ] || fail "user c2cd has home $home, expected /var/lib/c2cd"
    local state
    state=$(inroot stat -c '%U:%G %a' /var/lib/c2cd) || fail "the package did not make /var/lib/c2cd"
    [ "$state" = "c2cd:c2cd 750" ] || fail "/var/lib/c2cd is $state, expected c2cd:c2cd 750"
    ok "user and group c2cd: uid $uid, gid $ggid, home $home (c2cd:c2cd 0750), shell $shell"
}

check_binary() {
    local f=$ROOT/usr/sbin/c2cd desc
    [ -f "$f" ] || fail "/usr/sbin/c2cd is missing"
    [ -x "$f" ] || fail "/usr/sbin/c2cd is not executable"
    desc=$(file -b "$f")
    case "$desc" in
        *"static-pie linked"* | *"statically linked"*) ;;
        *) fail "/usr/sbin/c2cd is not static: file says: $desc" ;;
    esac
    local v
    v=$(inroot /usr/sbin/c2cd --version) || fail "/usr/sbin/c2cd --version failed in the root"
    ok "/usr/sbin/c2cd is executable and static ($(grep -oE 'static-pie linked|statically linked' <<<"$desc")), runs: $v"
}

check_conffile() {
    local got conffiles
    got=$(mode_of /etc/c2cd)
    [ "$got" = "root:c2cd 750" ] || fail "/etc/c2cd is $got, expected root:c2cd 750"
    got=$(mode_of /etc/c2cd/c2cd.toml)
    [ "$got" = "root:c2cd 640" ] || fail "/etc/c2cd/c2cd.toml is $got, expected root:c2cd 640"
    conffiles=$(inroot dpkg-query -W -f='${Conffiles}\n' c2cd)
    grep -qE '^ /etc/c2cd/c2cd\.toml [0-9a-f]{32}$' <<<"$conffiles" ||
        fail "/etc/c2cd/c2cd.toml is not a conffile of c2cd; dpkg-query -W -f='\${Conffiles}' c2cd says: '$conffiles'"
    ok "/etc/c2cd is root:c2cd 0750, /etc/c2cd/c2cd.toml is root:c2cd 0640 and a conffile"
}

check_man() {
    local m
    for m in /usr/share/man/man8/c2cd.8.gz /usr/share/man/man5/c2cd.toml.5.gz; do
        [ -s "$ROOT$m" ] || fail "man page $m is missing"
        gzip -t "$ROOT$m" || fail "man page $m is not valid gzip"
        zcat "$ROOT$m" | grep -q '^\.TH' || fail "man page $m has no .TH header"
    done
    ok "man pages c2cd(8) and c2cd.toml(5) are installed"
}

check_check_config() {
    local out
    out=$(inroot /usr/sbin/c2cd check-config --config /etc/c2cd/c2cd.toml 2>&1) ||
        fail "c2cd check-config --config /etc/c2cd/c2cd.toml exits non-zero as root: $out"
    # The unit's ExecStartPre= runs as User=c2cd: the group must be able to read it.
    out=$(as_c2cd /usr/sbin/c2cd check-config --config /etc/c2cd/c2cd.toml 2>&1) ||
        fail "c2cd check-config --config /etc/c2cd/c2cd.toml exits non-zero as c2cd: $out"
    ok "c2cd check-config --config /etc/c2cd/c2cd.toml exits 0, as root and as c2cd ($out)"
}

check_loopback() {
    local lines addrs a
    lines=$(grep -E '^[[:space:]]*listen[[:space:]]*=' "$ROOT/etc/c2cd/c2cd.toml") ||
        fail "/etc/c2cd/c2cd.toml has no listen line"
    [ "$(wc -l <<<"$lines")" = 1 ] || fail "/etc/c2cd/c2cd.toml has more than one listen line: $lines"
    addrs=$(grep -oE '"[^"]*"' <<<"$lines" | tr -d '"')
    [ -n "$addrs" ] || fail "no address in: $lines"
    for a in $addrs; do
        [[ "$a" =~ ^(127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\]):[0-9]+$ ]] ||
            fail "the shipped config listens on $a, not on loopback: $lines"
    done
    ok "the shipped config listens on loopback only: $(paste -sd " " <<<"$addrs")"
}

check_units() {
    local u link target
    for u in c2cd.service c2cd-backup.service c2cd-backup.timer c2cd-export.service c2cd-export.timer; do
        [ -f "$ROOT/lib/systemd/system/$u" ] || fail "/lib/systemd/system/$u is missing"
    done
    for link in multi-user.target.wants/c2cd.service timers.target.wants/c2cd-backup.timer timers.target.wants/c2cd-export.timer; do
        [ -L "$ROOT/etc/systemd/system/$link" ] ||
            fail "/etc/systemd/system/$link is missing: the unit is not enabled"
        target=$(readlink "$ROOT/etc/systemd/system/$link")
        [ "$target" = "/lib/systemd/system/${link#*/}" ] ||
            fail "/etc/systemd/system/$link points to $target"
        # deb-systemd-helper's record of the symlink it made (purge removes what it lists).
        [ -e "$ROOT/var/lib/systemd/deb-systemd-helper-enabled/$link" ] ||
            fail "no deb-systemd-helper state for $link in /var/lib/systemd/deb-systemd-helper-enabled"
    done
    ok "units in /lib/systemd/system; c2cd.service (multi-user.target), c2cd-backup.timer and c2cd-export.timer (timers.target) enabled"
}

check_serve() {
    local cfg=/tmp/c2cd-install-test.toml log=$WORK/serve.log pid='' addr='' auth url code body i rc owner
    trap '[ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null; true' EXIT
    cat >"$ROOT$cfg" <<EOF
[server]
listen = ["127.0.0.1:0"]

[database]
path = "/var/lib/c2cd/c2cd.db"

[log]
target = "stderr"
level = "info"

[[partner]]
id = "$PARTNER"
name = "Demo vendor (XIP)"
secret = "$SECRET"
dialects = ["xip"]
provider = "sim"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
EOF
    inroot chown root:c2cd "$cfg"
    chmod 0640 "$ROOT$cfg"

    # exec all the way down: $! is c2cd itself. UMask=0077 as in the unit.
    (
        umask 077
        exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
            setpriv --reuid=c2cd --regid=c2cd --clear-groups \
            /usr/sbin/c2cd serve --config "$cfg" --listen 127.0.0.1:0
    ) </dev/null >/dev/null 2>"$log" &
    pid=$!
    for ((i = 0; ; i++)); do
        addr=$(sed -n 's|.*listening on http://\([0-9.]*:[0-9]*\).*|\1|p' "$log" | head -n 1)
        [ -n "$addr" ] && break
        alive "$pid" || { indent <"$log" >&2; fail "c2cd serve exited before listening (its log is above)"; }
        ((i < WAIT_START * 10)) || { indent <"$log" >&2; fail "no 'listening on http://' from c2cd serve within ${WAIT_START}s (its log is above)"; }
        sleep 0.1
    done

    auth=$(inroot /usr/sbin/c2cd sign --secret "$SECRET" --partner "$PARTNER" \
        --requestor "$REQUESTOR" --fulfillment "$FULFILLMENT")
    [ "$auth" = "$KNOWN_AUTH" ] || fail "c2cd sign printed '$auth', the README says $KNOWN_AUTH"
    url="http://$addr/request/call.php?PartnerID=$PARTNER&Requestor=$REQUESTOR&Fulfillment=$FULFILLMENT&Auth=$auth"
    code=$(curl --silent --show-error --noproxy '*' --max-time 10 -o "$WORK/body" -w '%{http_code}' "$url") ||
        { indent <"$log" >&2; fail "curl $url failed (the daemon's log is above)"; }
    body=$(cat "$WORK/body")
    [ "$code" = 200 ] || fail "GET $url answered HTTP $code: $body"
    [[ "$body" == Result=0\&* ]] || fail "GET $url answered '$body', expected Result=0&..."

    kill -TERM "$pid"
    for ((i = 0; ; i++)); do
        alive "$pid" || break
        ((i < WAIT_STOP * 10)) || fail "c2cd serve still runs ${WAIT_STOP}s after SIGTERM"
        sleep 0.1
    done
    rc=0
    wait "$pid" || rc=$?
    pid=
    [ "$rc" = 0 ] || { indent <"$log" >&2; fail "c2cd serve exited $rc after SIGTERM, expected 0 (its log is above)"; }
    [ -f "$ROOT/var/lib/c2cd/c2cd.db" ] || fail "no database /var/lib/c2cd/c2cd.db after serving"
    owner=$(inroot stat -c %U:%G /var/lib/c2cd/c2cd.db)
    [ "$owner" = c2cd:c2cd ] || fail "/var/lib/c2cd/c2cd.db is owned by $owner, expected c2cd:c2cd"
    ok "c2cd serve as c2cd on http://$addr answers a signed demo XIP request (HTTP $code, $body), exits 0 on SIGTERM; /var/lib/c2cd/c2cd.db is c2cd:c2cd"
}

check_smoke() {
    local out
    cp "$REPO/debian/tests/smoke" "$ROOT/tmp/smoke"
    if ! out=$(inroot sh /tmp/smoke 2>&1); then
        echo "$out" | indent >&2
        fail "the DEP-8 test debian/tests/smoke failed in the root (its output is above)"
    fi
    echo "$out" | indent
    ok "the DEP-8 test debian/tests/smoke passes in the root"
}

check_upgrade() {
    local uid_before uid_after out got leftovers
    echo '# operator edit' >>"$ROOT/etc/c2cd/c2cd.toml"
    uid_before=$(inroot id -u c2cd)
    # No --force-confold: the package's conffile is unchanged, so dpkg must keep
    # the edit without asking. stdin is /dev/null: a prompt would fail the install.
    if ! out=$(inroot dpkg -i /tmp/c2cd.deb </dev/null 2>&1); then
        echo "$out" | indent >&2
        fail "the upgrade (dpkg -i of the same package again) failed (its output is above)"
    fi
    echo "$out" | indent
    grep -qx '# operator edit' "$ROOT/etc/c2cd/c2cd.toml" ||
        fail "the operator's edit of /etc/c2cd/c2cd.toml is gone after the upgrade"
    leftovers=$(find "$ROOT/etc/c2cd" -mindepth 1 ! -name c2cd.toml -printf '%f ')
    [ -z "$leftovers" ] || fail "the upgrade left files in /etc/c2cd: $leftovers"
    got=$(mode_of /etc/c2cd/c2cd.toml)
    [ "$got" = "root:c2cd 640" ] || fail "after the upgrade /etc/c2cd/c2cd.toml is $got, expected root:c2cd 640"
    uid_after=$(inroot id -u c2cd)
    [ "$uid_before" = "$uid_after" ] || fail "the upgrade changed c2cd's uid from $uid_before to $uid_after"
    [ "$(inroot dpkg-query -W -f='${db:Status-Abbrev}' c2cd)" = "ii " ] || fail "c2cd is not installed after the upgrade"
    ok "an upgrade (dpkg -i again, no --force-confold, stdin /dev/null) keeps the operator's edit, the mode and the user"
}

check_remove_purge() {
    local out status f
    if ! out=$(inroot dpkg -r c2cd </dev/null 2>&1); then
        echo "$out" | indent >&2
        fail "dpkg -r c2cd failed (its output is above)"
    fi
    echo "$out" | indent
    status=$(inroot dpkg-query -W -f='${db:Status-Abbrev}' c2cd)
    [ "$status" = "rc " ] || fail "dpkg-query says '$status' after dpkg -r, expected 'rc '"
    [ ! -e "$ROOT/usr/sbin/c2cd" ] || fail "/usr/sbin/c2cd remains after dpkg -r"
    [ -d "$ROOT/var/lib/c2cd" ] || fail "dpkg -r removed /var/lib/c2cd (remove must keep the state)"
    [ -f "$ROOT/var/lib/c2cd/c2cd.db" ] || fail "dpkg -r removed /var/lib/c2cd/c2cd.db"
    [ -f "$ROOT/etc/c2cd/c2cd.toml" ] || fail "dpkg -r removed /etc/c2cd/c2cd.toml (remove must keep conffiles)"
    grep -qx '# operator edit' "$ROOT/etc/c2cd/c2cd.toml" || fail "the operator's edit is gone after dpkg -r"

    if ! out=$(inroot dpkg -P c2cd </dev/null 2>&1); then
        echo "$out" | indent >&2
        fail "dpkg -P c2cd failed (its output is above)"
    fi
    echo "$out" | indent
    [ ! -e "$ROOT/var/lib/c2cd" ] || fail "/var/lib/c2cd remains after dpkg -P: $(ls -lA "$ROOT/var/lib/c2cd")"
    [ ! -e "$ROOT/etc/c2cd" ] || fail "/etc/c2cd remains after dpkg -P: $(ls -lA "$ROOT/etc/c2cd")"
    for f in multi-user.target.wants/c2cd.service timers.target.wants/c2cd-backup.timer timers.target.wants/c2cd-export.timer; do
        if [ -e "$ROOT/etc/systemd/system/$f" ] || [ -L "$ROOT/etc/systemd/system/$f" ]; then
            fail "/etc/systemd/system/$f remains after dpkg -P"
        fi
    done
    ok "dpkg -r keeps /var/lib/c2cd and /etc/c2cd/c2cd.toml; dpkg -P removes /var/lib/c2cd, /etc/c2cd and the unit symlinks"
}

note "checks in $ROOT"
check "install" check_install
if [ "$FAILED" != 0 ]; then
    echo "FAIL: nothing else can be checked without the package installed" >&2
    summary
    exit 1
fi
check "user" check_user
check "binary" check_binary
check "/etc/c2cd" check_conffile
check "man pages" check_man
check "check-config" check_check_config
check "loopback" check_loopback
check "units" check_units
check "serve" check_serve
if [ -x "$ROOT/usr/bin/curl" ] && [ -f "$REPO/debian/tests/smoke" ]; then
    check "DEP-8 smoke" check_smoke
else
    echo "skip: DEP-8 smoke (no curl in the root or no debian/tests/smoke)"
fi
check "upgrade" check_upgrade
check "remove/purge" check_remove_purge

note "took $((SECONDS - START))s"
summary
[ "$FAILED" = 0 ]
