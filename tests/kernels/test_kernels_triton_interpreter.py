"""The Triton kernels, run on CPU by Triton's interpreter, agree with their PyTorch twins.

TRITON_INTERPRET=1 must be set before Triton is imported and a bad mask can segfault the
interpreter, so each kernel family runs in a child pytest process: a crash fails one test here
(with its exit signal) instead of killing the whole run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _run_interpreted(case_file: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / case_file)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _describe(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode < 0:
        how = f"killed by {signal.Signals(-result.returncode).name} (interpreter crash: bad mask?)"
    else:
        how = f"exit code {result.returncode}"
    return f"{how}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("case_file", ["interpret_attention.py", "interpret_saliency.py"])
def test_triton_kernels_match_twins_under_interpreter(case_file: str) -> None:
    result = _run_interpreted(case_file)
    assert result.returncode == 0, _describe(result)
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
