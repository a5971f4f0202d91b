"""The load test's CPU figures count process trees: a gateway's or a store server's children
(running or already reaped) are its CPU, not "other processes"."""

import subprocess
import sys

from loadtest.report import ProcStats, process_tree

# A parent that starts a child which burns CPU (a fixed amount of work, not a time), prints
# the child's pid and CPU seconds, keeps it until a line on stdin, then reaps it and waits.
PARENT = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", '''
import sys, time
n = 0
for i in range(6_000_000):
    n += i * i
print(time.process_time(), flush=True)
sys.stdin.readline()
'''], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
cpu = child.stdout.readline().strip()
print(child.pid, cpu, flush=True)
sys.stdin.readline()
child.stdin.write("\n"); child.stdin.flush(); child.wait()
print("reaped", flush=True)
sys.stdin.readline()
"""

# /proc reports CPU in clock ticks (10 ms) for each of user and system time
TICKS_SLACK_S = 0.05


def test_tree_cpu_includes_running_and_reaped_children():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        child_pid, child_cpu = parent.stdout.readline().split()
        child_cpu = float(child_cpu)
        assert child_cpu > 0.2                      # the child did burn CPU
        assert set(process_tree([parent.pid])) == {parent.pid, int(child_pid)}
        # a root that is a descendant of another root is one process, not two
        assert sorted(process_tree([parent.pid, int(child_pid)])) == sorted(
            [parent.pid, int(child_pid)])
        alone = ProcStats([parent.pid], tree=False, sample_rss=False).cpu_s()
        assert alone < child_cpu / 2                # the parent itself did little
        tree = ProcStats([parent.pid], sample_rss=False)
        assert tree.cpu_s() >= child_cpu - TICKS_SLACK_S
        parent.stdin.write("\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "reaped"
        assert process_tree([parent.pid]) == [parent.pid]
        assert tree.cpu_s() >= child_cpu - TICKS_SLACK_S  # now the parent's cutime
    finally:
        parent.kill()
        parent.wait(10)
