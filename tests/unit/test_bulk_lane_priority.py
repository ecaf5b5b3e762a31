"""The bulk lane yields the CPU to small forecasts (replica.priority.yield_cpu, TSFM_BULK_LANE_NICE)."""

import subprocess
import sys

SCRIPT = """
import os, threading
from serve_apps.replica.priority import yield_cpu
started, stop = threading.Event(), threading.Event()
ids = []
def work():
    ids.append(threading.get_native_id()); started.set(); stop.wait()
before = threading.Thread(target=work); before.start(); started.wait()
yield_cpu(7)
after = threading.Thread(target=lambda: ids.append(os.getpriority(os.PRIO_PROCESS, 0))); after.start(); after.join()
print(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, ids[0]), ids[1])
stop.set()
"""


def test_every_thread_and_later_ones_run_at_the_lane_priority():
    # In a child process: a nice value only rises without privileges, so the test runner keeps its own.
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["7", "7", "7"], out  # this thread, one started before, one started after
