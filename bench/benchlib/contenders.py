"""The backends (two nginx HTTP servers, one iperf3 server) and the contenders in front of them.

Every contender gets a private directory with its config, pid file and log, listens on its own
loopback port and is started in the foreground with equivalent settings: two threads or worker
processes where it has them, splice where it supports it, round robin over the backends.
"""
import os

from . import procs

BODY = ("<!DOCTYPE html>\n<html><head><title>bench</title></head><body>\n"
        + "<p>balance benchmark backend: a small static file.</p>\n" * 10 + "</body></html>\n")
FD_LIMIT = 20000          # the machine's hard RLIMIT_NOFILE; configs size themselves to it
START_TIMEOUT = 15.0


class Running:
    """A started contender: where to send the load, and the session to measure (None: direct)."""

    def __init__(self, name, port, proc):
        self.name, self.port, self.proc = name, port, proc

    @property
    def sid(self):
        return self.proc.pid if self.proc else None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def _await_listen(proc, port, log_path, what):
    if not procs.wait_until(lambda: procs.listening(port) or proc.poll() is not None,
                            START_TIMEOUT) or proc.poll() is not None:
        tail = open(log_path, errors="replace").read()[-2000:]
        raise RuntimeError(f"{what} did not start listening on {port}:\n{tail}")


# ---- backends ------------------------------------------------------------------------------

def start_http_backend(reg, workdir, port):
    """nginx with one worker serving a small static file from a cached descriptor, keep-alive
    on, holding idle peers."""
    d = os.path.join(workdir, f"backend-{port}")
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    _write(os.path.join(d, "www", "index.html"), BODY)
    conf = _write(os.path.join(d, "nginx.conf"), f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {FD_LIMIT};
events {{ worker_connections {FD_LIMIT - 100}; }}
http {{
  access_log off;
  default_type text/html;
  # The backends must not be what the proxies wait on. With sendfile and a file opened per
  # request, one worker spent 47 us of CPU per keep-alive request (80 % in the kernel) and
  # served 23k requests/s straight from wrk; a cached descriptor and a plain write of the
  # 627-byte file: 55k. Every contender is in front of the same backends.
  open_file_cache max=16;
  sendfile off;
  keepalive_timeout 900s;
  keepalive_requests 10000000;
  client_header_timeout 900s;
  client_body_temp_path {d}/tmp-body;
  proxy_temp_path {d}/tmp-proxy;
  fastcgi_temp_path {d}/tmp-fastcgi;
  uwsgi_temp_path {d}/tmp-uwsgi;
  scgi_temp_path {d}/tmp-scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {d}/www;
  }}
}}
""")
    log_path = os.path.join(d, "nginx.log")
    proc = reg.start(f"backend-{port}", ["nginx", "-e", f"{d}/error.log", "-p", d, "-c", conf],
                     log_path)
    _await_listen(proc, port, log_path, f"nginx backend {port}")
    return proc


def start_iperf_server(reg, workdir, port):
    d = os.path.join(workdir, f"iperf3-{port}")
    os.makedirs(d, exist_ok=True)
    log_path = os.path.join(d, "iperf3.log")
    proc = reg.start("iperf3-server", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port),
                                       "-I", f"{d}/iperf3.pid"], log_path)
    _await_listen(proc, port, log_path, "iperf3 server")
    return proc


# ---- contenders ----------------------------------------------------------------------------

def _argv_balance(d, port, backends, opts):
    return [opts["balance"], "-f", "--threads", "2", "-b", "127.0.0.1", str(port),
            *[f"127.0.0.1:{b}" for b in backends]]


def _argv_haproxy(d, port, backends, opts, splice="option splice-auto"):
    # maxconn 9400 and maxpipes 400 keep haproxy's own fd budget (2 per connection + 2 per pipe)
    # under the 20,000 hard limit: with the defaults it refuses to start or caps maxconn < 9000.
    servers = "\n".join(f"  server s{i} 127.0.0.1:{b}" for i, b in enumerate(backends, 1))
    conf = _write(os.path.join(d, "haproxy.cfg"), f"""
global
  nbthread 2
  maxconn 9400
  maxpipes 400
defaults
  mode tcp
  maxconn 9400
  timeout connect 5s
  timeout client 15m
  timeout server 15m
  {splice}
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
{servers}
""")
    return ["haproxy", "-db", "-f", conf, "-p", f"{d}/haproxy.pid"]


def _argv_nginx(d, port, backends, opts):
    servers = "\n".join(f"    server 127.0.0.1:{b};" for b in backends)
    conf = _write(os.path.join(d, "nginx.conf"), f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {FD_LIMIT};
events {{ worker_connections {FD_LIMIT - 100}; }}
stream {{
  upstream be {{
{servers}
  }}
  server {{
    # reuseport: a listening socket per worker, as balance has one per thread (and its backlog)
    listen 127.0.0.1:{port} reuseport backlog=4096;
    proxy_pass be;
  }}
}}
""")
    return ["nginx", "-e", f"{d}/error.log", "-p", d, "-c", conf]


def _argv_pen(d, port, backends, opts):
    # -r: plain round robin (pen otherwise sticks every client address, all 127.0.0.1 here, to
    # one backend); -x/-c: the connection and client tables (defaults 500/2048) sized for 9,000;
    # -O tcp_nodelay: Nagle off, as haproxy, nginx and balance have it (pen's default is on,
    # which stalled its keep-alive responses on delayed ACKs: p99 about 43 ms).
    return ["pen", "-f", "-r", "-O", "tcp_nodelay", "-x", "9500", "-c", "10000", "-p", f"{d}/pen.pid",
            f"127.0.0.1:{port}", *[f"127.0.0.1:{b}" for b in backends]]


def _argv_haproxy_splice(d, port, backends, opts):
    # splice-auto splices only once haproxy judges a stream fast; on loopback it never did (no
    # splice() call under strace for an iperf3 stream). This variant forces splice both ways.
    return _argv_haproxy(d, port, backends, opts,
                         splice="option splice-request\n  option splice-response")


def _argv_balance_b(d, port, backends, opts):
    # A second balance build (--balance-b), for A/B runs of a technique in the same rotation.
    return _argv_balance(d, port, backends, {"balance": opts["balance_b"]})


PROXIES = {"balance": _argv_balance, "haproxy": _argv_haproxy, "nginx": _argv_nginx,
           "pen": _argv_pen, "haproxy-splice": _argv_haproxy_splice, "balance-b": _argv_balance_b}
DEFAULT = ["direct", "haproxy", "nginx", "pen", "balance"]
ALL = DEFAULT + ["haproxy-splice", "balance-b"]  # the last ones only when asked for
# Whom balance is compared with: the other proxies in the rotation; another build of balance
# (balance-b) only when none of them is (--contenders balance,balance-b: the A/B ratio).
PEERS = ["haproxy", "nginx", "pen", "haproxy-splice"]
AB_PEERS = ["balance-b"]


def rotation(names, rnd):
    """The order of the contenders in round `rnd` (from 1): the rows of a Williams design, a
    Latin square in which each contender also runs right after each other one equally often.

    Row i is i, i+1, i-1, i+2, i-2, ... (mod n): over n rounds every contender takes every
    position once and, for an even n, runs right after every other one exactly once; for an odd
    n, rounds n+1..2n are the same rows reversed, and over 2n rounds each contender runs right
    after each other one exactly twice. So no contender always inherits the TIME_WAIT sockets
    and after-effects of the same predecessor (a plain cyclic shift, A B C then B C A, keeps
    every predecessor: B after A in every round where B is not first)."""
    n = len(names)
    first, step = [0], 1
    while len(first) < n:
        first.append(step)
        if len(first) < n:
            first.append(n - step)
        step += 1
    r = (rnd - 1) % (n if n % 2 == 0 else 2 * n)
    order = [names[(i + r % n) % n] for i in first]
    return order if r < n else order[::-1]


def start(reg, name, workdir, port, backends, opts):
    """Starts contender name on port in front of backends; direct means the first backend."""
    if name == "direct":
        return Running(name, backends[0], None)
    d = os.path.join(workdir, f"{name}-{port}")
    os.makedirs(d, exist_ok=True)
    argv = PROXIES[name](d, port, backends, opts)
    log_path = os.path.join(d, f"{name}.log")
    proc = reg.start(name, argv, log_path)
    if name == "balance":
        _write(os.path.join(d, "balance.pid"), f"{proc.pid}\n")
    _await_listen(proc, port, log_path, name)
    return Running(name, port, proc)
