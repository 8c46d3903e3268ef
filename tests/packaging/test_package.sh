#!/usr/bin/env bash
# Builds the Debian package from a configured and built tree, checks what it holds, unpacks it
# into a scratch root with dpkg -x and runs the unpacked program: --version, --help, and a short
# foreground run relaying bytes to a loopback backend. Runs the maintainer scripts (with a stub
# systemctl, in a mount namespace of their own), lints the man page and checks the systemd
# units and the bash completion that the package ships.
#
#   tests/packaging/test_package.sh BUILD_DIR
#
# Needs cmake/cpack, dpkg-dev (dpkg-shlibdeps), groff-base, python3; uses mandoc and
# systemd-analyze when they are installed, and unshare (util-linux) where user namespaces are
# allowed. Exits non-zero on any failure; leaves nothing behind.
set -uo pipefail

if (($# != 1)) || [[ ! -f $1/CPackConfig.cmake ]]; then
    echo "usage: $0 BUILD_DIR (a configured and built tree with CPackConfig.cmake)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/balance-pkgtest.XXXXXX")
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
fatal() {
    bad "$*"
    echo "package: $passed passed, $failed failed"
    exit 1
}
check() {  # check DESCRIPTION COMMAND...: runs COMMAND, ok or FAIL
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

for tool in cpack dpkg-deb dpkg-shlibdeps groff python3 timeout; do
    command -v "$tool" >/dev/null || fatal "$tool not found (packages: cmake, dpkg-dev, groff-base, python3, coreutils)"
done

# --- build the package, into the scratch directory
echo "=== cpack -G DEB"
if ! (cd "$build" && cpack -G DEB -B "$work/pkg") >"$work/cpack.log" 2>&1; then
    cat "$work/cpack.log" >&2
    fatal "cpack -G DEB"
fi
debs=("$work"/pkg/balance_*.deb)
if [[ ! -f ${debs[0]} ]] || ((${#debs[@]} != 1)); then
    fatal "cpack made no single balance_*.deb: ${debs[*]}"
fi
deb=${debs[0]}
ok "built $(basename "$deb")"

# --- the control fields
echo "=== dpkg-deb -I"
dpkg-deb -I "$deb" | sed 's/^/    /'
field() { dpkg-deb -f "$deb" "$1"; }
check "Package is balance" test "$(field Package)" = balance
check "Section is net" test "$(field Section)" = net
check "Maintainer is set" test -n "$(field Maintainer)"
check "Depends (from dpkg-shlibdeps) names libc6" grep -q 'libc6' <<<"$(field Depends)"
check "Description is set" test -n "$(field Description)"
version=$(field Version)

# --- the files
echo "=== dpkg-deb -c"
dpkg-deb -c "$deb" >"$work/listing" || fatal "dpkg-deb -c"
sed 's/^/    /' "$work/listing"
awk '{ print $NF }' "$work/listing" | sed 's|^\./|/|' >"$work/files"
for f in /usr/bin/balance \
    /usr/share/man/man1/balance.1.gz \
    /usr/lib/systemd/system/balance.service \
    /usr/lib/systemd/system/balance@.service \
    /usr/share/bash-completion/completions/balance \
    /usr/share/doc/balance/example.conf; do
    check "package holds $f" grep -qxF "$f" "$work/files"
done
check "no file outside /usr" test -z "$(grep -v '^/usr\(/\|$\)' "$work/files" | grep -v '^/$')"
check "/usr/bin/balance is executable" \
    grep -q '^-rwxr-xr-x .* \./usr/bin/balance$' "$work/listing"

# --- the maintainer scripts, run with a systemctl that records its arguments, in a mount
# namespace of their own where /run/systemd/system exists (as on a host booted with systemd)
echo "=== maintainer scripts"
dpkg-deb -e "$deb" "$work/control" || fatal "dpkg-deb -e"
for script in postinst prerm postrm; do
    check "the package has a $script" test -x "$work/control/$script"
done
mkdir -p "$work/stub"
printf '#!/bin/sh\necho "systemctl $*" >>"$SYSTEMCTL_LOG"\n' >"$work/stub/systemctl"
chmod 755 "$work/stub/systemctl"
maintainer_script() {  # maintainer_script SCRIPT ARG: the systemctl calls it makes
    : >"$work/systemctl.log"
    SYSTEMCTL_LOG=$work/systemctl.log PATH=$work/stub:$PATH unshare -rm sh -c '
        mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec sh "$1" "$2"' _ \
        "$work/control/$1" "$2" >/dev/null 2>&1 || echo "exit $?" >>"$work/systemctl.log"
    cat "$work/systemctl.log"
}
if unshare -rm true 2>/dev/null; then
    check "prerm remove stops every instance" \
        test "$(maintainer_script prerm remove)" = "systemctl stop balance.service balance@*.service"
    check "prerm upgrade leaves them running" test -z "$(maintainer_script prerm upgrade)"
    check "postinst configure reloads systemd" \
        test "$(maintainer_script postinst configure)" = "systemctl daemon-reload"
else
    echo "skipped: running the maintainer scripts (unshare -rm is not allowed here)"
fi

# --- unpack and run
root=$work/root
dpkg -x "$deb" "$root" || fatal "dpkg -x"
bin=$root/usr/bin/balance
export BALANCE_RUNDIR=$work/run  # the control files of this run stay in the scratch directory

echo "=== $bin --version"
out=$(timeout 10 "$bin" --version 2>&1)
rc=$?
echo "    $out"
check "--version exits 0" test "$rc" -eq 0
check "--version prints 'balance $version'" grep -qx "balance $version" <<<"$out"

out=$(timeout 10 "$bin" --help 2>&1)
rc=$?
check "--help exits 0" test "$rc" -eq 0
check "--help shows the usage" grep -q 'usage' <<<"$out"

timeout 10 "$bin" --no-such-option >/dev/null 2>&1
check "an unknown option exits 64" test $? -eq 64

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
backend_port=$(free_port)
listen_port=$(free_port)
while [[ $listen_port == "$backend_port" ]]; do listen_port=$(free_port); done

# An echo server: sends back whatever it reads, until the client ends its side.
python3 -c '
import socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
' "$backend_port" >"$work/backend.log" 2>&1 &
pids+=($!)

# Wait (bounded) until the backend listens, so balance's first connect cannot be refused.
timeout 15 python3 -c '
import socket, sys, time
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
' "$backend_port"
check "the echo backend listens" test $? -eq 0

echo "=== $bin -f --threads 2 $listen_port 127.0.0.1:$backend_port"
"$bin" -f --threads 2 "$listen_port" "127.0.0.1:$backend_port" >"$work/balance.log" 2>&1 &
balance_pid=$!
pids+=("$balance_pid")

# Sends 256 KiB of random bytes through balance and reads them back; bounded by socket timeouts.
roundtrip() {
    timeout 30 python3 -c '
import os, socket, sys, time
port = int(sys.argv[1])
deadline = time.monotonic() + 10
while True:  # wait until balance listens
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("balance does not listen on %d" % port)
        time.sleep(0.1)
s.settimeout(10)
data = os.urandom(256 * 1024)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
if bytes(got) != data:
    sys.exit("round trip: sent %d bytes, got %d back, %s" % (len(data), len(got),
             "equal length, different bytes" if len(got) == len(data) else "different length"))
' "$listen_port"
}
check "256 KiB round trip through the unpacked balance" roundtrip

out=$(timeout 10 "$bin" -c show "$listen_port" 2>&1)
rc=$?
awk '{ print "    " $0 }' <<<"$out"
check "-c show exits 0" test "$rc" -eq 0
check "-c show lists the backend" grep -qE "^ +0 +RR +0 ENA +127\.0\.0\.1 +$backend_port " <<<"$out"

kill -TERM "$balance_pid" 2>/dev/null
stopped=no
for _ in $(seq 100); do
    # Gone, or a zombie waiting for this script to collect its exit status.
    if ! kill -0 "$balance_pid" 2>/dev/null ||
        [[ $(sed 's/^.*) //' "/proc/$balance_pid/stat" 2>/dev/null) == Z* ]]; then
        stopped=yes
        break
    fi
    sleep 0.1
done
check "balance stops within 10 s of SIGTERM" test "$stopped" = yes
wait "$balance_pid" 2>/dev/null
rc=$?
check "balance exits 0 after SIGTERM (exit $rc)" test "$rc" -eq 0
if ((failed)); then
    echo "--- balance's output:" >&2
    sed 's/^/    /' "$work/balance.log" >&2
fi

# --- the man page as packaged
echo "=== man page"
gzip -dc "$root/usr/share/man/man1/balance.1.gz" >"$work/balance.1" || fatal "gunzip balance.1.gz"
# -wall leaves out undefined macros (mac): ask for them too.
warnings=$(groff -man -Tutf8 -wall -wmac -z "$work/balance.1" 2>&1)
expect_empty() {  # expect_empty DESCRIPTION TEXT
    if [[ -z $2 ]]; then ok "$1"; else bad "$1: $2"; fi
}
expect_empty "groff -man -wall -wmac: no warnings" "$warnings"
rendered=$(groff -man -Tascii -P-cbou "$work/balance.1" 2>/dev/null)  # plain text, no emphasis
for section in NAME SYNOPSIS DESCRIPTION OPTIONS "CONTROL COMMANDS" SIGNALS FILES ENVIRONMENT \
    "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    check "man page has $section" grep -q "^$section" <<<"$rendered"
done
if command -v mandoc >/dev/null; then
    warnings=$(mandoc -T lint -W warning "$work/balance.1" 2>&1)
    expect_empty "mandoc -T lint: no warnings" "$warnings"
fi

# --- systemd units (offline check, when systemd-analyze is installed)
units=$root/usr/lib/systemd/system
check "units start /usr/bin/balance -f" \
    grep -q '^ExecStart=/usr/bin/balance -f ' "$units/balance.service" "$units/balance@.service"
if command -v systemd-analyze >/dev/null; then
    # The same units, pointed at the unpacked program, with the packaged man page found by man.
    mkdir -p "$work/units"
    sed "s|/usr/bin/balance |$bin |" "$units/balance.service" >"$work/units/balance.service"
    sed "s|/usr/bin/balance |$bin |" "$units/balance@.service" >"$work/units/balance@.service"
    ln -s balance@.service "$work/units/balance@test.service"
    out=$(cd "$work/units" && MANPATH=$root/usr/share/man: SYSTEMD_LOG_LEVEL=notice \
        timeout 60 systemd-analyze verify balance.service balance@test.service 2>&1)
    rc=$?
    [[ $rc -eq 0 ]] || out="exit $rc${out:+: $out}"
    expect_empty "systemd-analyze verify" "$out"
fi

# --- bash completion
completion=$root/usr/share/bash-completion/completions/balance
check "bash completion parses" bash -n "$completion"
complete_words() {  # complete_words WORD...: what the completion offers for the last word
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
        _balance balance "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$@"
}
check "completion: balance -c sh -> show" test "$(complete_words balance -c sh)" = show
check "completion: balance --thr -> --threads" test "$(complete_words balance --thr)" = --threads
check "completion: balance --proxy-protocol v -> v1 v2" \
    test "$(complete_words balance --proxy-protocol v | tr '\n' ' ')" = "v1 v2 "
check "completion: balance --loopback-cc sys -> system" \
    test "$(complete_words balance --loopback-cc sys)" = system
check "completion: balance --loopback-cc r -> reno (always in the kernel)" \
    test "$(complete_words balance --loopback-cc r)" = reno
check "completion: balance --cp -> --cpus" test "$(complete_words balance --cp)" = --cpus
check "completion: balance --cpus a -> all" test "$(complete_words balance --cpus a)" = all

echo "package: $passed passed, $failed failed"
((failed == 0))
