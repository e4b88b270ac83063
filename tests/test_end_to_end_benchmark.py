"""benchmarks/end_to_end.py: the memory it reports is the CLI's, not its own."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.benchmark_scripts import load_benchmark

CHILD = ("import time\n"
         "block = bytearray(60 * 2**20)\n"
         "block[::4096] = b'x' * len(block[::4096])\n"
         "time.sleep(3)\n")


def test_a_child_group_is_measured_by_its_own_peak_not_the_parents():
    """Linux keeps ru_maxrss across fork and exec, so a 10 MB child of a 300 MB parent reported
    300 MB; the sampled high-water marks give the child's own ~70 MB."""
    bench = load_benchmark("end_to_end")
    parent_block = bytearray(300 * 2**20)
    parent_block[::4096] = b"x" * len(parent_block[::4096])
    child = subprocess.Popen([sys.executable, "-c", CHILD], start_new_session=True)
    peaks: dict[int, int] = {}
    rss = pss = 0.0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and max(peaks.values(), default=0) < 60 * 1024:
            rss, pss = bench.sample_group_memory(child.pid, peaks)
            time.sleep(0.05)
    finally:
        child.wait()
    assert list(peaks) == [child.pid]
    assert 60 <= peaks[child.pid] / 1024 < 200
    assert 60 <= rss < 200 and 0 < pss <= rss
    del parent_block
