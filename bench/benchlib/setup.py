"""Getting the machine ready: Debian packages, the balance binary, free ports, machine facts."""
import os
import platform
import random
import socket
import subprocess
import sys

# Debian 12 package -> the command it provides. nginx's stream proxy is the dynamic module in
# libnginx-mod-stream (nginx-light is only a transitional package in Debian 12).
REQUIRED = {
    "haproxy": "haproxy", "nginx": "nginx", "libnginx-mod-stream": None, "pen": "pen",
    "apache2-utils": "ab", "wrk": "wrk", "iperf3": "iperf3", "procps": "ps",
}
OPTIONAL = {"linux-perf": "perf"}
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
POLICY_RC = "/usr/sbin/policy-rc.d"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return "install ok installed" in r.stdout


def _apt_install(pkgs):
    """apt-get install, with services kept from starting (a policy-rc.d only if none exists)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    made_policy = not os.path.exists(POLICY_RC)
    if made_policy:
        with open(POLICY_RC, "w") as f:
            f.write("#!/bin/sh\n# written by balance's bench/run while it installs; removed after\nexit 101\n")
        os.chmod(POLICY_RC, 0o755)
    try:
        return subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs],
                              env=env, stdout=subprocess.DEVNULL, timeout=900).returncode == 0
    finally:
        if made_policy:
            os.unlink(POLICY_RC)


def ensure_packages():
    """Installs the peers, load generators and perf from Debian if any is missing."""
    missing = [p for p in REQUIRED if not _installed(p)]
    optional = [p for p in OPTIONAL if not _installed(p)]
    if not missing and not optional:
        return
    if os.geteuid() != 0:
        sys.exit(f"bench: missing packages {' '.join(missing + optional)}: run as root")
    log(f"installing {' '.join(missing + optional)}")
    subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, timeout=600)
    if missing and not _apt_install(missing):
        sys.exit(f"bench: apt-get install {' '.join(missing)} failed")
    for pkg in optional:
        if not _apt_install([pkg]):
            log(f"optional package {pkg} is not available: profiles need it")


def ensure_balance(repo, binary):
    """Builds balance with tools/build when the binary is missing; returns its path."""
    if os.access(binary, os.X_OK):
        return binary
    if binary != os.path.join(repo, "build", "balance"):
        sys.exit(f"bench: {binary} is not an executable")
    log("build/balance is missing: tools/install-deps && tools/build build")
    subprocess.run([os.path.join(repo, "tools", "install-deps")], check=True, timeout=1800)
    subprocess.run([os.path.join(repo, "tools", "build"), "build"], check=True, timeout=1800,
                   stdout=subprocess.DEVNULL)
    return binary


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit, for us and every process we start."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_ports(count):
    """count loopback ports, below the ephemeral range, that nobody uses now.

    Below it, no outgoing connection (of the load, of a proxy) can take one of them as its
    source port between two starts of a contender, and no client can connect to itself.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    rng = random.Random()
    ports = []
    for _ in range(200 * count):
        port = rng.randrange(max(1024, low - 12000), low - 100)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    sys.exit("bench: no free loopback ports below the ephemeral range")


def _version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "not installed"


def machine_facts(balance, repo):
    """What the table depends on: CPUs, kernel, versions of everything measured (balance: its
    binary, or None when it is not in the rotation)."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    facts = {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
             "debian": open("/etc/debian_version").read().strip()}
    versions = {pkg: _version(pkg) for pkg in ("haproxy", "nginx", "libnginx-mod-stream", "pen",
                                               "apache2-utils", "wrk", "iperf3")}
    if balance is None:  # not in the rotation
        return {**facts, "balance": "not run", **versions}
    ver = subprocess.run([balance, "--version"], capture_output=True, text=True).stdout.strip()
    if balance == os.path.join(repo, "build", "balance"):
        rev = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        where = f"tree {rev or 'not a git checkout'}"
    else:
        where = balance
    return {**facts, "balance": f"{ver or '?'} ({where})", **versions}
