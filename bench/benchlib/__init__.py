"""The benchmark's parts: processes, set-up, contenders, workloads, connection holder, report."""
