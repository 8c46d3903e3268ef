"""perf record -g on balance's processes while a workload runs, and a flat summary of it."""
import os
import signal
import subprocess

from . import procs


class Profiler:
    def __init__(self, outdir):
        self.outdir, self.proc, self.count = outdir, None, {}
        os.makedirs(outdir, exist_ok=True)

    def start(self, workload, running):
        n = self.count[workload] = self.count.get(workload, 0) + 1
        self.data = os.path.join(self.outdir, f"{workload}-{n}.data")
        pids = ",".join(map(str, procs.session_pids(running.sid)))
        self.proc = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-p", pids,
                                      "-o", self.data], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def stop(self):
        if not self.proc:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        summarize(self.data)


def summarize(data):
    """Writes data.txt: time by DSO (kernel vs balance vs libc), top symbols, kernel call chains."""
    out = data[:-len(".data")] + ".txt"
    reports = [
        ("by object (kernel = [kernel.kallsyms])", ["--sort", "dso", "-g", "none"]),
        ("top symbols (self time)", ["--sort", "dso,sym", "-g", "none", "--percent-limit", "0.7"]),
        ("call chains of the top symbols (callers)", ["--sort", "sym", "-g", "caller,0.5,callee",
                                                      "--percent-limit", "3"]),
    ]
    with open(out, "w") as f:
        f.write("== samples by thread (perf calls a thread a pid)\n"
                f"{_perf(data, ['--no-children', '--sort', 'pid', '-g', 'none', '--show-nr-samples'])}\n\n")
        f.write(f"== by syscall and softirq (inclusive time, % of all samples)\n{_by_syscall(data)}\n\n")
        for title, args in reports:
            f.write(f"== {title}\n{_perf(data, ['--no-children', *args])}\n\n")
    return out


def _perf(data, args):
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", *args],
                       capture_output=True, text=True, timeout=300)
    return "\n".join(line for line in r.stdout.splitlines() if line and not line.startswith("#"))


def _by_syscall(data):
    """The syscall entry points and the softirq, with the time spent under them (children)."""
    text = _perf(data, ["--children", "--sort", "sym", "-g", "none", "--percent-limit", "0.3"])
    keep = [line for line in text.splitlines()
            if "__x64_sys_" in line or "net_rx_action" in line
            or ("[.] " in line and "[.] 0x" not in line)]  # 0x...: a user frame perf lost
    return "\n".join(keep[:40])
